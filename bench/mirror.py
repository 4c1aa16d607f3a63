"""mirror.py: the read cache's mirror at scale (issue 12, `make bench` section "mirror"). Run by
bench/run after bench.py, against its nats-server (NATS_URL) and build (BUILD). Measures,
asserts nothing; prints BENCH lines as bench.py does (bench/readme_table.py reads them).

- listdir of a 10-entry directory beside 100,000 keys (1 KiB values, one prefix): read=meta
  (caught up: from the mirror's per-directory index) against no cache (one headers-only pass
  over the prefix), medians of interleaved rounds in two long-lived processes;
- memory of the mirror per key: a process's RSS (VmRSS) once its mirror has caught up, over
  100,000 keys minus over 0 keys (both with the 10-entry directory), divided by 100,000;
  read=meta flat (u<N>.json) and nested (users/u<N>/state.json: a file and its directory per
  key), and read=watch flat (values held too).

`python3 mirror.py worker DIR LOG` is the measuring process (run under the shim): waits for
"caught up" in LOG (its own stderr) when a cache is on, then answers stdin lines
"list N" (N listing times in us) and "rss" (VmRSS in KiB).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

KEYS = int(os.environ.get("BENCH_MIRROR_KEYS", "100000"))


def worker(d, log):
    os.listdir(d)  # connects (and starts the mirror)
    if os.environ.get("STATE_READ_CACHE"):
        deadline = time.time() + 300
        while "caught up" not in open(log).read():
            if time.time() > deadline:
                sys.exit("mirror.py: the read cache never caught up")
            time.sleep(0.05)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "list":
            t = []
            for _ in range(int(cmd[1])):
                t0 = time.perf_counter_ns()
                n = len(os.listdir(d))
                t.append((time.perf_counter_ns() - t0) / 1000)
                assert n == 10, n
            print(*("%.1f" % x for x in t), flush=True)
        elif cmd[0] == "rss":
            with open("/proc/self/status") as f:
                print(next(l.split()[1] for l in f if l.startswith("VmRSS:")), flush=True)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build = os.path.abspath(os.environ.get("BUILD", os.path.join(root, "build")))
    kvtool = os.path.join(build, "tools", "kvtool")
    shim = os.path.join(build, "libasya-state-nats-kv.so")
    py = os.path.realpath(sys.executable)
    tmp = tempfile.mkdtemp(prefix="bench-mirror.")

    def out(line):
        print(line, flush=True)

    def figure(name, measured, target="", met="-"):
        out(f"BENCH mirror | {name} | {measured} | {target} | {met}")

    def kv(*args):
        subprocess.run([kvtool, *args], check=True, capture_output=True)

    buckets = []

    def bucket(fmt, n):
        b = f"bench_mirror_{os.getpid()}_{len(buckets)}"
        buckets.append(b)
        kv("--wait", "bucket-add", b)
        kv("fill", b, "m.d/f%d", "10", "1024")
        if n:
            kv("fill", b, fmt, str(n), "1024")
        return b

    def spawn(b, cache):
        log = os.path.join(tmp, f"{b}-{cache}.err")
        env = dict(os.environ, LD_PRELOAD=shim, NATS_KV_BUCKET=b, STATE_MOUNT="/state/m",
                   STATE_PREFIX="m", ASYA_STATE_LOG="info")
        env.pop("ASYA_STATE_PROXY_MOUNTS", None)
        env.pop("STATE_READ_CACHE", None)
        if cache:
            env["STATE_READ_CACHE"] = cache
        p = subprocess.Popen([py, os.path.abspath(__file__), "worker", "/state/m/d", log],
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=open(log, "w"), text=True, bufsize=1)
        return p

    def ask(p, cmd):
        p.stdin.write(cmd + "\n")
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"mirror.py: the worker died ({p.args})")
        return [float(x) for x in line.split()]

    def stop(p):
        p.stdin.close()
        p.wait(timeout=60)

    out(f"## mirror: the read cache's mirror at {KEYS:,} keys (read=meta / read=watch)")
    try:
        flat = bucket("m.u%d.json", KEYS)
        # listdir: interleaved rounds, the first of each discarded
        meta, direct = spawn(flat, "meta"), spawn(flat, "")
        t = {"meta": [], "direct": []}
        for r in range(6):
            for side, p, n in (("meta", meta, 200), ("direct", direct, 2))[::1 if r % 2 else -1]:
                v = ask(p, f"list {n}")
                if r:
                    t[side] += v
        rss_meta_flat = ask(meta, "rss")[0]
        stop(meta)
        stop(direct)
        a, b = statistics.median(t["meta"]) / 1000, statistics.median(t["direct"]) / 1000
        met = "met" if a <= 1.0 else "MISSED"
        out(f"listdir 10 entries beside {KEYS:,} keys: read=meta {a:.3f} ms  no cache {b:.1f} ms"
            f"  ({b / a:,.0f}x)  (target read=meta <= 1 ms: {met})")
        figure(f"listdir of 10 entries beside {KEYS:,} keys: ms read=meta / no cache",
               f"{a:.3f} / {b:.1f} ({b / a:,.0f}x)", "<= 1 ms", met)

        # memory: the same process over an empty key space, then the others
        empty = bucket("", 0)
        def rss(b, cache):
            p = spawn(b, cache)
            v = ask(p, "rss")[0]
            stop(p)
            return v
        base_meta, base_watch = rss(empty, "meta"), rss(empty, "watch")
        nested = bucket("m.users/u%d/state.json", KEYS)
        rows = [("read=meta, flat", rss_meta_flat - base_meta),
                ("read=meta, nested (a file and its directory per key)",
                 rss(nested, "meta") - base_meta),
                ("read=watch, flat, 1 KiB values", rss(flat, "watch") - base_watch)]
        for name, kib in rows:
            per = kib * 1024 / KEYS
            target, met = ("<= 200", "met" if per <= 200 else "MISSED") if "meta" in name \
                else ("", "-")
            out(f"mirror memory, {name}: {kib / 1024:.1f} MiB RSS for {KEYS:,} keys = "
                f"{per:.0f} bytes per key" + (f" (target {target}: {met})" if target else ""))
            figure(f"mirror memory per key, {name} (RSS delta / {KEYS:,})", f"{per:.0f} bytes",
                   target and target + " bytes", met)
    finally:
        for b in buckets:
            subprocess.run([kvtool, "bucket-del", b], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
