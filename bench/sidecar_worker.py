"""sidecar_worker.py: one client process of `make bench`'s sidecar section (bench.py). Reads
commands on stdin, one per line, answers each with one line of samples in microseconds:

    cycle SOCK N     N read-modify-write cycles through a sidecar (GET then PUT of a counter,
                     a fresh connection per request, as Asya's runtime opens them)
    shim DIR N       the same N cycles through the shim (open/read/close, open/write/close),
                     in a process started with LD_PRELOAD
    get SOCK N       N GETs of a small key, a fresh connection each

The key of a worker is its own (argv[1]), so concurrent workers never conflict.
Measures, asserts nothing.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "integration"))
from sidecar_client import request  # noqa: E402

NAME = sys.argv[1] if len(sys.argv) > 1 else "w"


def cycle(sock, n):
    key = f"/keys/bench/{NAME}"
    request(sock, "PUT", key, body=b"0")
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, _, body = request(sock, "GET", key)
        st2, _, _ = request(sock, "PUT", key, body=str(int(body) + 1).encode())
        out.append((time.perf_counter() - t0) * 1e6)
        if (st, st2) != (200, 204):
            raise SystemExit(f"sidecar_worker: statuses {st} {st2}")
    return out


def shim(d, n):
    path = os.path.join(d, f"bench_{NAME}")
    with open(path, "w") as f:
        f.write("0")
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with open(path) as f:
            v = int(f.read())
        with open(path, "w") as f:
            f.write(str(v + 1))
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def get(sock, n):
    key = f"/keys/bench/get_{NAME}.json"
    request(sock, "PUT", key, body=b'{"v": 1}')
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, _, _ = request(sock, "GET", key)
        out.append((time.perf_counter() - t0) * 1e6)
        if st != 200:
            raise SystemExit(f"sidecar_worker: GET answered {st}")
    return out


for line in sys.stdin:
    op, where, n = line.split()
    res = {"cycle": cycle, "shim": shim, "get": get}[op](where, int(n))
    print(" ".join(f"{x:.1f}" for x in res), flush=True)
