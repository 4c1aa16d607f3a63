"""sidecar_bench.py: latency of one read-modify-write cycle (GET, then PUT of the new value,
one connection per request as Asya's runtime opens them) through `asya-state serve`, and the
same cycle through the shim (open/read/close, open/write/close of a mount path) for
comparison. Prints one line per figure: "NAME p50_us p99_us mean_us N".

    sidecar_bench.py SOCK [N]                  the sidecar cycle
    LD_PRELOAD=$SHIM STATE_MOUNT=/state/bench NATS_URL=... NATS_KV_BUCKET=... \\
        sidecar_bench.py --shim /state/bench [N]   the shim cycle

Measures, asserts nothing: `make bench` and the tests decide what to do with the numbers.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import request  # noqa: E402


def report(name, samples):
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    print(f"{name} p50_us={s[len(s) // 2]:.0f} p99_us={p99:.0f} "
          f"mean_us={statistics.mean(s):.0f} n={len(s)}", flush=True)


def sidecar_samples(sock, n, key="/keys/bench/counter"):
    """n cycles through the sidecar on key: (GET, PUT, cycle) times in us."""
    request(sock, "PUT", key, body=b"0")
    get_t, put_t, cycle_t = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        st, _, body = request(sock, "GET", key)
        t1 = time.perf_counter()
        st2, _, _ = request(sock, "PUT", key, body=str(int(body) + 1).encode())
        t2 = time.perf_counter()
        if (st, st2) != (200, 204):
            raise SystemExit(f"sidecar_bench: unexpected statuses {st} {st2}")
        get_t.append((t1 - t0) * 1e6)
        put_t.append((t2 - t1) * 1e6)
        cycle_t.append((t2 - t0) * 1e6)
    return get_t, put_t, cycle_t


def shim_samples(mount, n, name="bench_counter"):
    """n cycles through the shim on mount/name: cycle times in us."""
    path = os.path.join(mount, name)
    with open(path, "w") as f:
        f.write("0")
    cycle_t = []
    for _ in range(n):
        t0 = time.perf_counter()
        with open(path) as f:
            v = int(f.read())
        with open(path, "w") as f:
            f.write(str(v + 1))
        cycle_t.append((time.perf_counter() - t0) * 1e6)
    return cycle_t


def sidecar_cycle(sock, n):
    get_t, put_t, cycle_t = sidecar_samples(sock, n)
    report("sidecar_get", get_t)
    report("sidecar_put", put_t)
    report("sidecar_cycle", cycle_t)


def shim_cycle(mount, n):
    report("shim_cycle", shim_samples(mount, n))


if __name__ == "__main__":
    if sys.argv[1] == "--shim":
        shim_cycle(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 500)
    else:
        sidecar_cycle(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500)
