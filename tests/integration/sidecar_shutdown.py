"""sidecar_shutdown.py PID SOCK: SIGTERM arrives while a chunked PUT is half sent; the request
must still complete (204) and be stored, a new request on an already open keep-alive
connection gets 503, a new connection is refused, and the server then exits.
Prints "ok"/"not ok" lines; the caller checks the exit status and the stored value."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import Checks, UnixHTTPConnection, read_answer, request  # noqa: E402

pid, sock = int(sys.argv[1]), sys.argv[2]
T = Checks("sidecar stop: ")

idle = UnixHTTPConnection(sock)          # a keep-alive connection, used once before the signal
idle.request("GET", "/healthz")
r = idle.getresponse()
r.read()

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sock)
s.sendall(b"PUT /keys/inflight HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"5\r\nhello\r\n")
time.sleep(0.3)
os.kill(pid, signal.SIGTERM)
time.sleep(0.5)

try:
    request(sock, "GET", "/healthz", timeout=2)
    refused = "answered"
except OSError as e:
    refused = type(e).__name__
T.true("a new connection after SIGTERM is refused", refused != "answered", refused)

idle.request("GET", "/healthz")
r = idle.getresponse()
r.read()
T.eq("a new request on an open connection after SIGTERM: 503", 503, r.status)
idle.close()

s.sendall(b"6\r\n world\r\n0\r\n\r\n")
status = read_answer(s)[0]
s.close()
T.eq("the request in flight at SIGTERM completes with 204", 204, status)
sys.exit(1 if T.failures else 0)
