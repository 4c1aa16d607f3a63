"""Stand-in for Asya's `asya_state_proxy` package, so that its server tests
(src/asya-state-proxy/tests/test_server.py, unmodified) drive `asya-state serve`.

Only what those tests import is here: interface.KeyMeta/ListResult/StateProxyConnector
(the types their in-memory StubConnector is built from) and server.ConnectorServer, which
starts our sidecar on the socket path the test's fixture gives it. See tests/asya/README.md.
"""
