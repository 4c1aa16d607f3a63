"""sidecar_limits.py: `asya-state serve` under hostile load (issue 13 case 9). Prints "ok"/"not
ok" lines. Environment: SOCK (a sidecar started with --header-timeout HEADER_S and
--max-body-total 2 MiB, --max-body 1 MiB), HEADER_S, KVTOOL, NATS_URL, BUCKET, PREFIX.

    slowloris   1,100 connections (more than the old limit of 1,024) send half a request line
                and drip a byte a second: a new client is still answered at once, and every
                dripping connection is closed by the server after the header deadline.
    budget      two PUTs whose bodies are half sent hold 2 x 900 KiB of the 2 MiB budget: a
                third PUT (Content-Length known) and a chunked one that grows past the budget
                get 503 unavailable with Retry-After; the two then complete (204) and their
                bytes are what kvtool reads; the refused PUT retried is stored.
    refused     a chunked PUT past --max-body whose sender goes on (slowly) holds no budget:
                two 900 KiB PUTs meanwhile are both stored (before, the refused one kept its
                1 MiB reservation until its sender finished, and one of them got 503).
    body rate   a PUT whose body drips a byte every 0.3 s after its headers is closed by the
                server within the header deadline (plus a tick), its budget given back.
    framing     a raw NUL in the target, two Content-Length headers, Content-Length with
                Transfer-Encoding, a Transfer-Encoding other than chunked: 400, the connection
                closed, nothing stored (kvtool).
"""

import os
import resource
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import Checks, read_answer, request  # noqa: E402

SOCK = os.environ["SOCK"]
HEADER_S = float(os.environ["HEADER_S"])
T = Checks("sidecar limits: ")


def kv_get(key):
    p = subprocess.run([os.environ["KVTOOL"], "-s", os.environ["NATS_URL"], "get",
                        os.environ["BUCKET"], f"{os.environ['PREFIX']}.{key}"],
                       capture_output=True)
    return p.stdout if p.returncode == 0 else None


def raw_connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    return s


def closed_by_server(s):
    try:
        s.settimeout(0.5)
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except (socket.timeout, BlockingIOError):
        return False


def t_slowloris():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = 1100
    conns = []
    for _ in range(n):
        s = raw_connect()
        s.sendall(b"GET /healthz HT")
        conns.append(s)
    t0 = time.monotonic()
    st, _, body = request(SOCK, "GET", "/healthz", timeout=5)
    T.eq(f"with {n} half-sent requests open, a new client is answered", 200, st)
    for s in conns:                       # a byte each: an idle timeout alone would be reset
        s.sendall(b"T")
    # every dripping connection must be gone one reaper tick after the header deadline
    time.sleep(max(0.0, HEADER_S + 2.5 - (time.monotonic() - t0)))
    closed = sum(closed_by_server(s) for s in conns)
    T.eq(f"the {n} dripping connections are closed after the {HEADER_S:g}s header deadline",
         n, closed)
    for s in conns:
        s.close()
    st, _, _ = request(SOCK, "GET", "/healthz", timeout=5)
    T.eq("the server answers afterwards", 200, st)


def t_budget():
    body = [bytes([65 + i]) * (900 << 10) for i in range(3)]
    held = []
    for i in range(2):                    # headers + half the body: the budget is reserved
        s = raw_connect()
        s.sendall(f"PUT /keys/budget/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                  f"{len(body[i])}\r\n\r\n".encode() + body[i][:len(body[i]) // 2])
        held.append(s)
    time.sleep(0.3)
    st, hdrs, resp = request(SOCK, "PUT", "/keys/budget/2", body=body[2])
    T.eq("a PUT past the body budget: 503 unavailable with Retry-After",
         (503, b'"unavailable"', "1"),
         (st, b'"unavailable"' if b'"unavailable"' in resp else resp[:80],
          hdrs.get("retry-after")))
    s = raw_connect()                     # chunked: refused once it grows past the budget
    s.sendall(b"PUT /keys/budget/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
              b"\r\n\r\n")
    for _ in range(4):
        s.sendall(b"40000\r\n" + b"c" * 0x40000 + b"\r\n")
    s.sendall(b"0\r\n\r\n")
    st, hdrs = read_answer(s)
    s.close()
    T.eq("a chunked PUT growing past the budget: 503 with Retry-After", (503, "1"),
         (st, hdrs.get("retry-after")))
    got = []
    for i, s in enumerate(held):
        s.sendall(body[i][len(body[i]) // 2:])
        got.append(read_answer(s)[0])
        s.close()
    T.eq("the two PUTs holding the budget complete: 204 204", [204, 204], got)
    T.eq("their bytes, as kvtool reads them", [body[0], body[1]],
         [kv_get("budget/0"), kv_get("budget/1")])
    T.eq("nothing was stored for the refused PUTs", (None, None),
         (kv_get("budget/2"), kv_get("budget/chunked")))
    st, _, _ = request(SOCK, "PUT", "/keys/budget/2", body=body[2])
    T.eq("the refused PUT retried once the budget is free: 204, its bytes stored",
         (204, body[2]), (st, kv_get("budget/2")))


def t_refused():
    s = raw_connect()                     # grows to --max-body (1 MiB), then past it: 413
    s.sendall(b"PUT /keys/refused/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
              b"\r\n\r\n")
    for _ in range(5):
        s.sendall(b"40000\r\n" + b"r" * 0x40000 + b"\r\n")
    time.sleep(0.3)                       # the sender is still sending: no final chunk yet
    body = [bytes([97 + i]) * (900 << 10) for i in range(2)]
    got = []
    for i in range(2):
        h = raw_connect()
        h.sendall(f"PUT /keys/refused/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                  f"{len(body[i])}\r\n\r\n".encode() + body[i][:1000])
        got.append(h)
    for i, h in enumerate(got):
        h.sendall(body[i][1000:])
    got = [read_answer(h)[0] for h in got]
    T.eq("while a refused body is still arriving, two 900 KiB PUTs within the budget: 204 204",
         [204, 204], got)
    s.sendall(b"0\r\n\r\n")
    T.eq("the refused PUT: 413 once its sender has finished, nothing stored",
         (413, None), (read_answer(s)[0], kv_get("refused/big")))
    s.close()


def t_body_rate():
    s = raw_connect()
    s.sendall(b"PUT /keys/drip HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
              b"d" * 1000)
    t0 = time.monotonic()
    closed = None
    while time.monotonic() - t0 < HEADER_S + 6:
        try:
            s.sendall(b"d")
        except OSError:
            closed = time.monotonic() - t0
            break
        if closed_by_server(s):
            closed = time.monotonic() - t0
            break
    s.close()
    T.true("a body dripped a byte at a time: the server closes it after the deadline",
           closed is not None and HEADER_S <= closed <= HEADER_S + 3,
           f"closed after {closed} s (deadline {HEADER_S} s)")
    T.eq("nothing was stored for it", None, kv_get("drip"))


def t_framing():
    cases = [
        ("a raw NUL in the target", "victim",
         b"PUT /keys/victim\x00/../../evil HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"),
        ("two Content-Length headers", "dupcl",
         b"PUT /keys/dupcl HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
         b"Content-Length: 5\r\n\r\nhihel"),
        ("Content-Length and Transfer-Encoding", "clte",
         b"PUT /keys/clte HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
        ("a Transfer-Encoding other than chunked", "gz",
         b"PUT /keys/gz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         b"2\r\nhi\r\n0\r\n\r\n"),
    ]
    for name, key, req in cases:
        s = raw_connect()
        s.sendall(req)
        st, hdrs = read_answer(s)
        gone = closed_by_server(s)
        s.close()
        T.eq(f"{name}: 400, the connection closed, nothing stored", (400, True, None),
             (st, gone, kv_get(key)))
    s = raw_connect()                     # the same shapes, well framed, still work
    s.sendall(b"PUT /keys/fine HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"2\r\nhi\r\n0\r\n\r\n")
    T.eq("a well-framed chunked PUT: 204, stored", (204, b"hi"),
         (read_answer(s)[0], kv_get("fine")))
    s.close()


def t_query_kept():
    """/query keeps parsed documents between queries: a changed value (same length, or written
    by another client) is read anew, a deleted one disappears, one no longer JSON is skipped."""
    import json

    def q():
        st, _, b = request(SOCK, "POST", "/query", body=json.dumps(
            {"prefix": "qk/", "filter": {"g": "x"}, "sort": ["v"]}).encode())
        return [r["v"] for r in json.loads(b)["rows"]] if st == 200 else (st, b[:100])
    request(SOCK, "PUT", "/keys/qk/a.json", body=b'{"v": 1, "g": "x"}')
    request(SOCK, "PUT", "/keys/qk/b.json", body=b'{"v": 2, "g": "x"}')
    first = q()
    request(SOCK, "PUT", "/keys/qk/a.json", body=b'{"v": 3, "g": "x"}')   # same length
    second = q()
    subprocess.run([os.environ["KVTOOL"], "-s", os.environ["NATS_URL"], "put",
                    os.environ["BUCKET"], f"{os.environ['PREFIX']}.qk/b.json",
                    '{"v": 5, "g": "x"}'], check=True, capture_output=True)
    third = q()
    request(SOCK, "DELETE", "/keys/qk/b.json")
    fourth = q()
    request(SOCK, "PUT", "/keys/qk/a.json", body=b'{"v": 3, "g": "x"')   # no longer JSON
    T.eq("/query after a same-length change, another client's write, a delete, a value that "
         "is no longer JSON", [[1, 2], [2, 3], [3, 5], [3], []], [first, second, third, fourth, q()])


T.run("framing", t_framing)
T.run("query keeps parses exactly", t_query_kept)
T.run("slowloris", t_slowloris)
T.run("body budget", t_budget)
T.run("refused body holds no budget", t_refused)
T.run("body rate", t_body_rate)
sys.exit(1 if T.failures else 0)
