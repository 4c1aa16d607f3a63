"""The connector types test_server.py builds its StubConnector from. The stub is created by the
test's fixture and handed to ConnectorServer, which does not use it: the requests go to
`asya-state serve`, not to the stub."""

from dataclasses import dataclass, field


@dataclass
class KeyMeta:
    size: int
    is_file: bool = True


@dataclass
class ListResult:
    keys: list = field(default_factory=list)
    prefixes: list = field(default_factory=list)


class StateProxyConnector:
    """Base of the stub; no behaviour here."""
