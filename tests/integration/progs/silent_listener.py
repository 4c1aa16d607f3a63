"""silent_listener.py PORTFILE SECONDS: a loopback TCP listener that accepts and never answers.

Writes its port to PORTFILE once listening; on exit (after SECONDS, or SIGTERM) prints
"accepted N", the number of connections it saw. A NATS client connecting here would hang
waiting for the server's INFO line.
"""
import os
import select
import signal
import socket
import sys
import time

portfile, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
held = []


def done(*_):
    print("accepted", len(held), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, done)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
end = time.time() + seconds
while time.time() < end:
    r, _, _ = select.select([s], [], [], 0.1)
    if r:
        held.append(s.accept()[0])
done()
