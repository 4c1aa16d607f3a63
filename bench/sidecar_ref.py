"""sidecar_ref.py: the reference hop for `make bench` (issue 14). A sidecar in the shape of
Asya's own connector server (asya_state_proxy/server.py: http.server's single-threaded
HTTPServer on a Unix socket, BaseHTTPRequestHandler, one request per connection) that answers
GET/PUT /keys/{key} and GET /healthz from a dict in memory: no store behind it, so its whole
cycle is the hop a Python sidecar adds.

    sidecar_ref.py SOCK       serves until SIGTERM
"""

import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

STORE = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body=b"", ctype=None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            return self._send(200, json.dumps({"status": "ready"}).encode(), "application/json")
        if path.startswith("/keys/") and path[6:] in STORE:
            return self._send(200, STORE[path[6:]])
        self._send(404, json.dumps({"error": "key_not_found"}).encode(), "application/json")

    def do_PUT(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n > 0 else b""
        if not path.startswith("/keys/"):
            return self._send(404, b'{"error": "not_found"}', "application/json")
        STORE[path[6:]] = body
        self._send(204)


class Server(HTTPServer):
    address_family = socket.AF_UNIX
    request_queue_size = 128  # http.server's 5 refuses 8 clients' connects (EAGAIN)


def main():
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    srv = Server(path, Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
        os.unlink(path)


if __name__ == "__main__":
    main()
