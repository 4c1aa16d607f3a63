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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "integration"))
from sidecar_bench import shim_samples, sidecar_samples  # noqa: E402
from sidecar_client import request  # noqa: E402
from sidecar_latency import client  # noqa: E402

NAME = sys.argv[1] if len(sys.argv) > 1 else "w"


def cycle(sock, n):
    return sidecar_samples(sock, n, f"/keys/bench/{NAME}")[2]


def shim(d, n):
    return shim_samples(d, n, f"bench_{NAME}")


def get(sock, n):
    key = f"/keys/bench/get_{NAME}.json"
    request(sock, "PUT", key, body=b'{"v": 1}')
    return client((sock, key, n, 0))


for line in sys.stdin:
    op, where, n = line.split()
    res = {"cycle": cycle, "shim": shim, "get": get}[op](where, int(n))
    print(" ".join(f"{x:.1f}" for x in res), flush=True)
