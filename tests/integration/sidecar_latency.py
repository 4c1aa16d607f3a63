"""sidecar_latency.py: the latency tail of `asya-state serve` with a fresh connection per
request (what Asya's runtime does), at several client counts.

    sidecar_latency.py SOCK [N] [CLIENTS...]     (default N=400 per client, clients 1 8)

Each client is its own process (no GIL shared between clients) and sends N requests, each on
a new connection: GET /healthz (the sidecar's own hop, no NATS) and GET of a small key (the
hop plus one KV read). Prints one line per figure:
"latency PATH clients=C p50_us=.. p99_us=.. max_us=.. n=..".
Measures, asserts nothing.
"""

import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import request  # noqa: E402


def client(args):
    sock, path, n, start_at = args
    while time.time() < start_at:  # every client starts together
        time.sleep(0.001)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, _, _ = request(sock, "GET", path)
        out.append((time.perf_counter() - t0) * 1e6)
        if st != 200:
            raise SystemExit(f"sidecar_latency: {path} answered {st}")
    return out


def run(sock, path, n, clients):
    with multiprocessing.Pool(clients) as pool:
        start_at = time.time() + 0.3
        res = pool.map(client, [(sock, path, n, start_at)] * clients)
    s = sorted(x for r in res for x in r)
    p = lambda q: s[min(len(s) - 1, int(len(s) * q))]  # noqa: E731
    print(f"latency {path} clients={clients} p50_us={p(0.5):.0f} p99_us={p(0.99):.0f} "
          f"max_us={s[-1]:.0f} n={len(s)}", flush=True)


def main():
    sock = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    counts = [int(c) for c in sys.argv[3:]] or [1, 8]
    request(sock, "PUT", "/keys/latency.json", body=b'{"v": 1}')
    for c in counts:
        for path in ("/healthz", "/keys/latency.json"):
            run(sock, path, n, c)


if __name__ == "__main__":
    main()
