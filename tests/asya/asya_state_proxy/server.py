"""ConnectorServer(socket_path, connector): the one adaptation of Asya's server tests.

Upstream it is an http.server on a Unix socket answering from `connector`. Here it starts
`asya-state serve` on the same socket path, with its own STATE_PREFIX in the bucket
ASYA_BUCKET on NATS_URL, so each test starts from an empty store as it does upstream with a
fresh StubConnector. serve_forever() blocks until shutdown(); shutdown() stops the sidecar
with SIGTERM; server_close() waits for it and checks that it exited 0.

Environment: ASYA (the asya-state binary), NATS_URL, ASYA_BUCKET.
"""

import http.client
import itertools
import os
import signal
import socket
import subprocess
import threading
import time

_seq = itertools.count(1)


class _Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self._path)
        self.sock = s


def _healthy(path):
    c = _Unix(path)
    try:
        c.request("GET", "/healthz")
        return c.getresponse().status == 200
    except OSError:
        return False
    finally:
        c.close()


class ConnectorServer:
    def __init__(self, socket_path, connector):
        self._stopped = threading.Event()
        prefix = f"srv{os.getpid()}_{next(_seq)}_{time.monotonic_ns()}"
        env = dict(os.environ, CONNECTOR_SOCKET=socket_path, NATS_KV_BUCKET=os.environ["ASYA_BUCKET"],
                   STATE_PREFIX=prefix)
        self._log = open(f"{socket_path}.log", "wb")
        self._proc = subprocess.Popen([os.environ["ASYA"], "serve"], env=env,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _healthy(socket_path):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._proc.kill()
                raise RuntimeError(f"asya-state serve did not come up on {socket_path}")
            time.sleep(0.02)

    def serve_forever(self):
        self._stopped.wait()

    def shutdown(self):
        self._proc.send_signal(signal.SIGTERM)
        self._stopped.set()

    def server_close(self):
        rc = self._proc.wait(timeout=10)
        self._log.close()
        if rc != 0:
            raise RuntimeError(f"asya-state serve exited {rc}")
