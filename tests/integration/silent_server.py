#!/usr/bin/env python3
"""silent_server.py MODE PORTFILE [PORT]: a NATS server that hangs (issue 13, case 6).

Listens on loopback PORT (a free one when omitted: a real server's port once it was killed, for
a hang during a reconnect), writes the port to PORTFILE, then for every connection:
  info  sends an INFO line, as nats-server does, and then nothing (the client's CONNECT and
        PING are read and ignored: no PONG ever comes);
  mute  accepts and never sends a byte.
Connections are kept open until the process is killed, so the client sees silence, never EOF.
"""
import json
import os
import socket
import sys
import threading

mode, portfile = sys.argv[1], sys.argv[2]
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[3]) if len(sys.argv) > 3 else 0))
ls.listen(64)
with open(portfile + ".tmp", "w") as f:
    f.write(str(ls.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)

INFO = {"server_id": "SILENT", "version": "2.9.10", "go": "go1.19", "host": "127.0.0.1",
        "port": ls.getsockname()[1], "headers": True, "max_payload": 1048576, "proto": 1,
        "jetstream": True}
held = []


def serve(c):
    if mode == "info":
        c.sendall(b"INFO " + json.dumps(INFO).encode() + b"\r\n")
    try:
        while c.recv(4096):
            pass
    except OSError:
        pass


while True:
    c, _ = ls.accept()
    held.append(c)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
