"""sidecar_revmem.py: the sidecar's revision memory is bounded (kv/revmem.c, issue 13 case 9)
and an evicted memory never makes a PUT blind. Prints "ok"/"not ok" lines. Environment: SOCK
(a sidecar started with ASYA_STATE_REVMEM_MAX=BOUND), PID (its process), BOUND, GETS,
KVTOOL, NATS_URL, BUCKET, PREFIX.

    evicted     GET A, GET 2 x BOUND other keys (A's memory evicted), another client changes
                A, PUT A without If-Match: 409, and A keeps the other client's value
                (kvtool); GET A then PUT A: 204, stored.
    rss         GETS GETs of distinct missing keys (2 clients, kept-alive connections, 64 requests pipelined): the
                sidecar's VmRSS after them is within 16 MiB of its VmRSS after the first
                tenth (before the bound, each key read added about 1.1 KiB).
"""

import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import Checks, request  # noqa: E402

SOCK = os.environ["SOCK"]
PID = int(os.environ["PID"])
BOUND = int(os.environ["BOUND"])
GETS = int(os.environ["GETS"])
T = Checks("sidecar revision memory: ")


def kvtool(*args):
    p = subprocess.run([os.environ["KVTOOL"], "-s", os.environ["NATS_URL"], *args],
                       capture_output=True)
    return p.stdout if p.returncode == 0 else None


def full(key):
    return f"{os.environ['PREFIX']}.{key}"


def rss_kib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get_many(names, clients=2, batch=64):
    """GETs every name on clients kept-alive connections, batch requests pipelined at a time;
    returns the (name, status) of the answers that were not 404."""
    bad = []

    def run(part):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(SOCK)
        f = s.makefile("rb")
        try:
            for i in range(0, len(part), batch):
                chunk = part[i:i + batch]
                s.sendall(b"".join(b"GET /keys/%s HTTP/1.1\r\nHost: x\r\n\r\n" % n.encode()
                                   for n in chunk))
                for n in chunk:
                    status = int(f.readline().split()[1])
                    length = 0
                    while True:
                        line = f.readline()
                        if line in (b"\r\n", b""):
                            break
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v)
                    f.read(length)
                    if status != 404:
                        bad.append((n, status))
        finally:
            f.close()
            s.close()

    ts = [threading.Thread(target=run, args=(names[i::clients],)) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return bad


def t_evicted():
    st, _, _ = request(SOCK, "PUT", "/keys/ev/a", body=b"v1")
    T.eq("PUT A", 204, st)
    st, _, body = request(SOCK, "GET", "/keys/ev/a")
    T.eq("GET A", (200, b"v1"), (st, body))
    T.eq("GET of other keys answered 404", [], get_many([f"ev/other{i}" for i in range(2 * BOUND)]))
    T.true("another client changes A", kvtool("put", os.environ["BUCKET"], full("ev/a"),
                                               "theirs") is not None)
    st, _, body = request(SOCK, "PUT", "/keys/ev/a", body=b"mine, based on v1")
    T.true("PUT A after its memory was evicted: a conflict, not a blind put",
           st in (409, 412), f"status {st} {body!r}")
    T.eq("A keeps the other client's value", b"theirs", kvtool("get", os.environ["BUCKET"],
                                                                full("ev/a")))
    st, _, body = request(SOCK, "GET", "/keys/ev/a")
    T.eq("GET A again", (200, b"theirs"), (st, body))
    st, _, _ = request(SOCK, "PUT", "/keys/ev/a", body=b"mine, based on theirs")
    T.eq("PUT A after the new read", 204, st)
    T.eq("stored", b"mine, based on theirs", kvtool("get", os.environ["BUCKET"], full("ev/a")))


def t_rss():
    names = [f"miss/{i}" for i in range(GETS)]
    tenth = GETS // 10
    before = rss_kib()
    T.eq("first tenth answered 404", [], get_many(names[:tenth]))
    warm = rss_kib()
    T.eq("the rest answered 404", [], get_many(names[tenth:]))
    after = rss_kib()
    print(f"# sidecar VmRSS: {before} KiB at start, {warm} KiB after {tenth} GETs, {after} KiB "
          f"after {GETS} GETs of distinct missing keys (bound {BOUND} entries)", flush=True)
    T.true(f"VmRSS after {GETS} GETs within 16 MiB of after {tenth}", after - warm < 16 * 1024,
           f"{warm} -> {after} KiB")


print(f"# sidecar VmRSS at start: {rss_kib()} KiB", flush=True)
T.run("an evicted memory is a conflict", t_evicted)
T.run("memory stays bounded", t_rss)
sys.exit(1 if T.failures else 0)
