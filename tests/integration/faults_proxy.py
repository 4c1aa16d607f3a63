"""faults_proxy.py SERVER_PORT PORTS_FILE KVTOOL SERVER_URL: a NATS TCP proxy that loses
JetStream publish replies (or publishes) on command, for the unknown-outcome tests.

Listens on two free loopback ports and writes "PROXY_PORT CONTROL_PORT" to PORTS_FILE.
Every client connection is forwarded to 127.0.0.1:SERVER_PORT. Both directions are parsed as
NATS protocol (PUB/HPUB client->server, MSG/HMSG server->client) so whole messages can be
dropped without breaking the stream.

The control port takes one line per command and answers one line:
  arm MODE     the next HPUB to a "$KV." subject is the target commit; its Nats-Msg-Id
               identifies the resends of the same commit. Answers "armed".
  stats        "acks_dropped=A pubs_dropped=P other_writes=O target=ID" for the current target
  disarm       stats, then forgets the target
MODE:
  ack1         drop the first reply to the target (the commit lands, its ack is lost)
  ackall       drop every reply to the target (the resend's duplicate ack too)
  ack1_other   ack1, and another writer rewrites the key (directly to the server, with
               kvtool) just after the commit landed
  ackall_other ackall + the other writer
  pub1         drop the first publish of the target (never reaches the server)
  puball       drop every publish of the target
  conflict1    another writer rewrites the key just before the first publish reaches the
               server (a conflict), and that conflict reply is dropped
  late1        the reply to the next direct get ("$JS.API.DIRECT.GET.") is held back, and
               delivered just before the next reply to the same reply prefix (a lane of
               kv/lane.c): a reply that comes after its request timed out, then a fresh one
The other writer rewrites the key's current value unchanged (a new revision, same bytes), so a
counter stored in the key keeps counting only the shim's increments.
"""
import os
import socket
import subprocess
import sys
import threading

SERVER_PORT = int(sys.argv[1])
PORTS_FILE, KVTOOL, SERVER_URL = sys.argv[2], sys.argv[3], sys.argv[4]

lock = threading.Lock()
state = {"mode": None, "target": None, "replies": set(), "pubs": 0, "replies_seen": 0,
         "acks_dropped": 0, "pubs_dropped": 0, "other_writes": 0, "late": None, "held": None,
         "late_sent": 0}


def other_writer(subject):
    """Rewrites the key of subject "$KV.<bucket>.<key>" with its current value."""
    _, bucket, key = subject.split(".", 2)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    got = subprocess.run([KVTOOL, "-s", SERVER_URL, "get", bucket, key], env=env,
                         capture_output=True, timeout=10)
    if got.returncode != 0:
        print("# proxy: other writer: get failed:", got.stderr, file=sys.stderr, flush=True)
        return
    put = subprocess.run([KVTOOL, "-s", SERVER_URL, "put-stdin", bucket, key], env=env,
                         input=got.stdout, capture_output=True, timeout=10)
    if put.returncode == 0:
        state["other_writes"] += 1
    else:
        print("# proxy: other writer: put failed:", put.stderr, file=sys.stderr, flush=True)


def header_value(block, name):
    for line in block.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            return v.strip().decode()
    return None


class Reader:
    """Reads NATS protocol units (a control line, or a line plus its payload) from a socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def unit(self, sizes):
        """Returns (line_parts, raw_bytes). sizes(parts) gives the payload size or None."""
        while b"\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n") + 2
        parts = self.buf[:end - 2].split()
        n = sizes(parts) if parts else None
        total = end if n is None else end + n + 2
        while len(self.buf) < total:
            self._fill()
        raw, self.buf = self.buf[:total], self.buf[total:]
        return parts, raw


def c2s_size(parts):
    op = parts[0].upper()
    if op == b"PUB":
        return int(parts[-1])
    if op == b"HPUB":
        return int(parts[-1])
    return None


def s2c_size(parts):
    op = parts[0].upper()
    if op in (b"MSG", b"HMSG"):
        return int(parts[-1])
    return None


def client_to_server(cli, srv):
    r = Reader(cli)
    while True:
        parts, raw = r.unit(c2s_size)
        forward = True
        if parts and parts[0].upper() == b"HPUB" and parts[1].startswith(b"$KV."):
            subject = parts[1].decode()
            reply = parts[2].decode() if len(parts) == 5 else None
            hdr_len = int(parts[-2])
            payload = raw[raw.index(b"\r\n") + 2:]
            msgid = header_value(payload[:hdr_len], "Nats-Msg-Id")
            with lock:
                mode = state["mode"]
                if mode and state["target"] is None and msgid:
                    state["target"] = msgid
                if mode and msgid and msgid == state["target"]:
                    first = state["pubs"] == 0
                    state["pubs"] += 1
                    state["subject"] = subject
                    if reply:
                        state["replies"].add(reply)
                    if mode == "puball" or (mode == "pub1" and first):
                        forward = False
                        state["pubs_dropped"] += 1
                    elif mode == "conflict1" and first:
                        other_writer(subject)
        if parts and parts[0].upper() == b"PUB" and len(parts) == 4 and \
                parts[1].startswith(b"$JS.API.DIRECT.GET."):
            with lock:
                if state["mode"] == "late1" and state["late"] is None:
                    state["late"] = parts[2].decode()
        if forward:
            srv.sendall(raw)


def server_to_client(srv, cli):
    r = Reader(srv)
    while True:
        parts, raw = r.unit(s2c_size)
        forward = True
        if parts and parts[0].upper() in (b"MSG", b"HMSG"):
            subject = parts[1].decode()
            with lock:
                late = state["late"]
                if late and subject == late and state["held"] is None:
                    state["held"], forward = raw, False
                elif late and state["held"] and \
                        subject.rsplit(".", 1)[0] == late.rsplit(".", 1)[0]:
                    cli.sendall(state["held"])
                    state["held"], state["late_sent"] = b"", state["late_sent"] + 1
                if subject in state["replies"]:
                    mode = state["mode"]
                    first = state["replies_seen"] == 0
                    state["replies_seen"] += 1
                    if mode in ("ackall", "ackall_other") or (
                            mode in ("ack1", "ack1_other", "conflict1") and first):
                        forward = False
                        state["acks_dropped"] += 1
                        if mode in ("ack1_other", "ackall_other") and first:
                            other_writer(state["subject"])
        if forward:
            cli.sendall(raw)


def pump(fn, a, b):
    try:
        fn(a, b)
    except (EOFError, OSError):
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve_clients(lsock):
    while True:
        cli, _ = lsock.accept()
        try:
            srv = socket.create_connection(("127.0.0.1", SERVER_PORT), 5)
            srv.settimeout(None)
        except OSError:
            cli.close()
            continue
        threading.Thread(target=pump, args=(client_to_server, cli, srv), daemon=True).start()
        threading.Thread(target=pump, args=(server_to_client, srv, cli), daemon=True).start()


def stats():
    return "acks_dropped=%d pubs_dropped=%d other_writes=%d target=%s late_sent=%d" % (
        state["acks_dropped"], state["pubs_dropped"], state["other_writes"], state["target"],
        state["late_sent"])


def serve_control(csock):
    while True:
        conn, _ = csock.accept()
        f = conn.makefile("rwb", buffering=0)
        for line in f:
            words = line.decode().split()
            with lock:
                if words[:1] == ["arm"]:
                    state.update(mode=words[1], target=None, replies=set(), pubs=0,
                                 replies_seen=0, acks_dropped=0, pubs_dropped=0,
                                 other_writes=0, late=None, held=None, late_sent=0)
                    answer = "armed"
                elif words[:1] == ["stats"]:
                    answer = stats()
                elif words[:1] == ["disarm"]:
                    answer = stats()
                    state.update(mode=None, target=None, replies=set(), late=None, held=None)
                else:
                    answer = "error unknown command"
            f.write((answer + "\n").encode())
        conn.close()


def main():
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    csock = socket.socket()
    csock.bind(("127.0.0.1", 0))
    csock.listen(4)
    threading.Thread(target=serve_control, args=(csock,), daemon=True).start()
    tmp = PORTS_FILE + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (lsock.getsockname()[1], csock.getsockname()[1]))
    os.rename(tmp, PORTS_FILE)
    serve_clients(lsock)


main()
