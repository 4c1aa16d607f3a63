"""sidecar_clients.py: which revision a PUT without If-Match expects, in both of the sidecar's
STATE_SIDECAR_CLIENTS modes (README "Sidecar mode", cli/serve.c, kv/revmem.c). Run by
t_sidecar.sh with SOCK (a sidecar in the default mode, many), ONE_SOCK (one with
STATE_SIDECAR_CLIENTS=one; both on BUCKET under PREFIX) and KVTOOL in the environment. Values
are checked with kvtool, an independent client. Prints ok/not ok lines.

    many   a read nobody writes after (the handler that only looks) keeps PUTs of the newer
           revision refused, and only for about READ_TTL (10 s) after that read: the bound
           the README states, and the counter exact after it; a refused If-Match PUT and a
           DELETE leave the reads of other clients guarding their PUTs (409, not a lost update)
    one    the same reads then 5 increments: no 409 at all; PUTs without reads in a row all
           land; another writer between a GET and its PUT: 409, the other's value kept, the
           retry lands; two clients that read the same revision both land (the README's
           stated cost of this mode)
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import Checks, request  # noqa: E402

SOCK, ONE = os.environ["SOCK"], os.environ["ONE_SOCK"]
BUCKET, PREFIX, KVTOOL = os.environ["BUCKET"], os.environ["PREFIX"], os.environ["KVTOOL"]
T = Checks("sidecar clients: ")


def kv_get(key):
    p = subprocess.run([KVTOOL, "get", BUCKET, f"{PREFIX}.{key}"], capture_output=True)
    return p.stdout.decode() if p.returncode == 0 else None


def kv_put(key, value):
    subprocess.run([KVTOOL, "put", BUCKET, f"{PREFIX}.{key}", value], check=True,
                   capture_output=True)


def get(sock, key):
    st, _, body = request(sock, "GET", "/keys/" + key)
    return st, body


def put(sock, key, body):
    return request(sock, "PUT", "/keys/" + key, body=body)[0]


def increments(sock, key, n, deadline_s):
    """n read-modify-write increments, each retried on 409 until deadline_s; returns
    (conflicts, seconds, done)."""
    conflicts, done, t0 = 0, 0, time.monotonic()
    while done < n and time.monotonic() - t0 < deadline_s:
        _, body = get(sock, key)
        if put(sock, key, str(int(body) + 1).encode()) == 204:
            done += 1
        else:
            conflicts += 1
            time.sleep(0.01)
    return conflicts, time.monotonic() - t0, done


def many():
    key = "clients/many"
    put(SOCK, key, b"0")
    for _ in range(3):
        get(SOCK, key)  # a handler that only looks
    c1, _, d1 = increments(SOCK, key, 1, 5)  # expects the revision those reads had: lands
    c2, secs, d2 = increments(SOCK, key, 1, 20)  # those reads are of a replaced revision now
    T.eq("many: after reads nobody wrote after, the first increment lands at once",
         (0, 1), (c1, d1))
    T.true("many: the next is refused (409) until about 10 s after those reads, then lands "
           "(the README's bound)", c2 >= 1 and d2 == 1 and secs < 12,
           f"{c2} conflicts, {d2} done in {secs:.1f} s")
    T.eq("many: the counter is exact after it (kvtool)", "2", kv_get(key))


def many_named():
    key = "clients/named"
    put(SOCK, key, b"0")
    st, _, body = request(SOCK, "GET", "/meta/" + key + "?attr=version")
    rev = json.loads(body)["value"]
    a, b = get(SOCK, key)[1], get(SOCK, key)[1]  # clients A and B read the same revision
    pa = put(SOCK, key, a + b"+A")
    pc = request(SOCK, "PUT", "/keys/" + key, body=b"C", headers={"If-Match": str(rev)})[0]
    pb = put(SOCK, key, b + b"+B")
    T.eq("many: a refused If-Match PUT (412) leaves the other clients' reads alone: A 204, "
         "B 409, A's value kept", (204, 412, 409, "0+A"), (pa, pc, pb, kv_get(key)))

    key = "clients/deleted"
    put(SOCK, key, b"0")
    a, b = get(SOCK, key)[1], get(SOCK, key)[1]
    st = request(SOCK, "DELETE", "/keys/" + key)[0]
    T.eq("many: a DELETE after two reads: both PUTs from what they read get 409, the key "
         "stays deleted", (204, 409, 409, None),
         (st, put(SOCK, key, a + b"+A"), put(SOCK, key, b + b"+B"), kv_get(key)))


def one():
    key = "clients/one"
    put(ONE, key, b"0")
    for _ in range(20):
        get(ONE, key)
    conflicts, secs, done = increments(ONE, key, 5, 20)
    T.eq("one: 20 reads, then 5 increments: no 409, counter 5 (kvtool)", (0, 5, "5"),
         (conflicts, done, kv_get(key)))
    T.eq("one: PUTs without reads in a row all land, the last one stored",
         [204, 204, 204, "c"], [put(ONE, key, v) for v in (b"a", b"b", b"c")] + [kv_get(key)])

    get(ONE, key)
    kv_put(key, "other")  # another writer (another pod) between the GET and the PUT
    st, _, body = request(ONE, "PUT", "/keys/" + key, body=b"mine")
    T.eq("one: another writer between GET and PUT: 409 CAS conflict, the other's value kept",
         (409, True, "other"), (st, b"CAS conflict" in body, kv_get(key)))
    T.eq("one: PUTs retried without a read stay refused (as Asya's kept ETag), never a blind "
         "overwrite of the other's value", ([409, 409], "other"),
         ([put(ONE, key, b"mine2"), put(ONE, key, b"mine3")], kv_get(key)))
    _, body = get(ONE, key)
    T.eq("one: the retry (GET, PUT) lands", (b"other", 204, "mine"),
         (body, put(ONE, key, b"mine"), kv_get(key)))

    # /query reads its documents, as Asya's does (through the connector's read, which keeps
    # their ETags): a PUT of a queried document after another pod changed it is refused
    put(ONE, "clients/q/doc.json", b'{"id": 1}')
    st, _, _ = request(ONE, "POST", "/query", body=b'{"prefix": "clients/q/"}')
    kv_put("clients/q/doc.json", '{"id": 2}')
    T.eq("one: /query, another pod's write, then a PUT of the document: 409, its value kept",
         (200, 409, '{"id": 2}'), (st, put(ONE, "clients/q/doc.json", b'{"id": 3}'),
                                   kv_get("clients/q/doc.json")))

    get(ONE, key)  # A
    get(ONE, key)  # B, the same revision
    T.eq("one: two clients that read the same revision both land (the mode's stated cost)",
         (204, 204, "B"), (put(ONE, key, b"A"), put(ONE, key, b"B"), kv_get(key)))


T.run("many", many)
T.run("many, named revisions and deletes", many_named)
T.run("one", one)
raise SystemExit(1 if T.failures else 0)
