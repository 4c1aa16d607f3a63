"""bench.py: the figures of `make bench` (issue 5). Run by bench/run, which provides a
nats-server (NATS_URL) and the build directory (BUILD). Prints human-readable lines and, for
each figure, one machine line

    BENCH <section> | <figure> | <measured> | <target> | <met|MISSED|->

which bench/readme_table.py turns into the table of docs/performance.md. Measures, asserts nothing.
"""

import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("BUILD", os.path.join(ROOT, "build")))
URL = os.environ["NATS_URL"]
SHIM = os.path.join(BUILD, "libasya-state-nats-kv.so")
KVTOOL = os.path.join(BUILD, "tools", "kvtool")
SHIMPROG = os.path.join(BUILD, "bench", "shimprog")
DIRECTPROG = os.path.join(BUILD, "bench", "directprog")
PEER = os.path.join(BUILD, "bench", "peer")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "120"))
BATCH = int(os.environ.get("BENCH_BATCH", "20"))
PYTHON = os.path.realpath(sys.executable)


def out(line=""):
    print(line, flush=True)


def figure(section, name, measured, target="", met="-"):
    out(f"BENCH {section} | {name} | {measured} | {target} | {met}")


def verdict(ratio, limit):
    return "met" if ratio <= limit else "MISSED"


def kvtool(*args):
    return subprocess.run([KVTOOL, "-s", URL, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def shim_env(bucket, mount="/state/bench"):
    env = dict(os.environ, LD_PRELOAD=SHIM, STATE_MOUNT=mount, NATS_KV_BUCKET=bucket)
    env.pop("ASYA_STATE_PROXY_MOUNTS", None)
    env.pop("STATE_PREFIX", None)
    return env


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ns = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout
    out(f"MACHINE nproc={os.cpu_count()} cpu={cpu} kernel={platform.release()} "
        f"{ns.strip()}")
    out(f"DATE {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")


# ---- 1. cycles ------------------------------------------------------------------------------
class Worker:
    def __init__(self, argv, env):
        self.argv = argv
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)

    def batch(self, op, size, n):
        self.p.stdin.write(f"{op} {size} {n}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit(f"bench: worker {' '.join(self.argv[:2])} died during {op} {size}")
        return [float(x) for x in line.split()]

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


EPOCHS = int(os.environ.get("BENCH_EPOCHS", "12"))


def cycle_workers(bucket):
    """The cycle workers, each a fresh process: the shim, the floor, the floor publishing as
    the shim does, a second copy of the floor (the A/A pair that shows the method's own
    noise) and, when node and its packages are present, the peer."""
    w = [("shim", Worker([SHIMPROG, "cycles", "/state/bench"], shim_env(bucket))),
         ("direct", Worker([DIRECTPROG, "cycles", URL, bucket], dict(os.environ))),
         # each write published as the shim publishes it (expected revision and a
         # Nats-Msg-Id header): splits the shim's distance into protocol and shim
         ("direct_id", Worker([DIRECTPROG, "cycles-id", URL, bucket], dict(os.environ))),
         ("direct_aa", Worker([DIRECTPROG, "cycles", URL, bucket, "a"], dict(os.environ)))]
    if shutil.which("node") and os.path.isdir(os.path.join(PEER, "node_modules", "@nats-io", "kv")):
        w.append(("peer", Worker(["node", os.path.join(PEER, "peer.mjs"), URL, bucket],
                                 dict(os.environ))))
    return w


def cycles(bucket):
    per = max(1, ROUNDS // EPOCHS)
    out("## 1. cycles: shim (open/read/write/close on /state) vs direct nats.c "
        f"(kvStore_Get/Update) [and the peer @nats-io/kv], median us, {EPOCHS} sets of fresh "
        f"processes x {per} interleaved rounds x {BATCH}")
    sizes = (1024, 65536)
    ops = ("read", "write", "rmw")
    samples = {}
    # Each batch's order is shuffled: a batch runs in the wake of the one before it (that
    # process's threads winding down, node's collector), and a fixed rotation gave every
    # worker the same predecessor throughout (two identical direct programs read 0.93-0.96
    # that way). And each set of processes lives for a few rounds only: what a process
    # keeps for its life (where its threads and pages landed) moved the ratio of two
    # identical programs by +-5% from run to run; the median over several sets evens it.
    rng = random.Random(1)
    peer = False
    for _ in range(EPOCHS):
        workers = cycle_workers(bucket)
        peer = any(side == "peer" for side, _ in workers)
        for _, w in workers:
            for s in sizes:
                w.batch("init", s, 1)
        for r in range(per + 1):          # round 0 is warm-up, discarded
            for op in ops:
                for s in sizes:
                    for side, w in rng.sample(workers, len(workers)):
                        t = w.batch(op, s, BATCH)
                        if r:
                            samples.setdefault((side, op, s), []).extend(t)
        for _, w in workers:
            w.close()
    if os.environ.get("BENCH_SAMPLES"):      # every sample, for a closer look
        import json
        with open(os.environ["BENCH_SAMPLES"], "w") as f:
            json.dump({f"{k[0]} {k[1]} {k[2]}": v for k, v in samples.items()}, f)
    for s in sizes:
        limit = 1.10 if s == 1024 else 1.25
        for op in ops:
            a = statistics.median(samples[("shim", op, s)])
            b = statistics.median(samples[("direct", op, s)])
            ratio = a / b
            label = {"read": "read", "write": "blind write", "rmw": "read-modify-write"}[op]
            out(f"{label:18} {s // 1024:3} KiB: shim {a:8.1f} us  direct {b:8.1f} us  "
                f"ratio {ratio:.3f}  (target <= {limit:.2f}: {verdict(ratio, limit)})")
            figure("cycles", f"{label} {s // 1024} KiB: shim / direct (us)",
                   f"{a:.0f} / {b:.0f} = {ratio:.2f}", f"<= {limit:.2f}",
                   verdict(ratio, limit))
            aa = statistics.median(samples[("direct_aa", op, s)])
            out(f"{'':18} {'':3}      a second copy of direct {aa:8.1f} us  copy/direct "
                f"{aa / b:.3f} (the method's noise)")
            figure("noise", f"{label} {s // 1024} KiB: direct, a second copy / direct (us)",
                   f"{aa:.0f} / {b:.0f} = {aa / b:.2f}")
            if op != "read":
                d = statistics.median(samples[("direct_id", op, s)])
                out(f"{'':18} {'':3}      direct with message id {d:8.1f} us  shim/that {a / d:.3f}  "
                    f"(the id alone: direct x {d / b:.3f})")
                figure("protocol", f"{label} {s // 1024} KiB: direct with the shim's message id / "
                       "direct (us)", f"{d:.0f} / {b:.0f} = {d / b:.2f}")
                figure("protocol", f"{label} {s // 1024} KiB: shim / direct with its message id (us)",
                       f"{a:.0f} / {d:.0f} = {a / d:.2f}")
            if peer:
                c = statistics.median(samples[("peer", op, s)])
                out(f"{'':18} {'':3}      peer @nats-io/kv {c:8.1f} us  shim/peer {a / c:.3f}")
                figure("peer", f"{label} {s // 1024} KiB: shim / @nats-io/kv (us)",
                       f"{a:.0f} / {c:.0f} = {a / c:.2f}")
    if not peer:
        out("peer (@nats-io/kv): skipped: node or the npm packages are missing "
            f"({PEER}/node_modules)")
        figure("peer", "@nats-io/kv cycles", "skipped (node/npm packages missing)")


# ---- 2. foreign paths -----------------------------------------------------------------------
def callgrind_ir(argv, env):
    with tempfile.NamedTemporaryFile(prefix="bench-cg.") as f:
        p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={f.name}",
                            *argv], env=env, capture_output=True, text=True)
        m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
        if not m:
            raise SystemExit(f"bench: no callgrind total for {argv}: {p.stderr[-500:]}")
        return int(m.group(1))


def foreign(bucket):
    out("## 2. foreign paths (never a mount): instructions (callgrind Ir) and a wall-time loop")
    base = dict(os.environ, NATS_KV_BUCKET=bucket)
    pre = shim_env(bucket)
    for name, argv, limit in (("python3 -c pass", [PYTHON, "-c", "pass"], 1.02),
                              ("cat /etc/hostname", ["cat", "/etc/hostname"], 1.10)):
        a = callgrind_ir(argv, pre)
        b = callgrind_ir(argv, base)
        ratio = a / b
        out(f"{name:20}: with {a:,} Ir  without {b:,} Ir  ratio {ratio:.4f}  "
            f"(target <= {limit:.2f}: {verdict(ratio, limit)})")
        figure("foreign", f"{name}: Ir with / without preload", f"{a:,} / {b:,} = {ratio:.3f}",
               f"<= {limit:.2f}", verdict(ratio, limit))
    # The loop in pairs (one run with the preload, one without, in alternating order), 50k
    # iterations a run; the figure is the median of the pairs' ratios, so that a slow spell
    # of the machine (runs here vary by +-10%) falls on both sides of a pair.
    n, pairs = 50000, 31
    with tempfile.NamedTemporaryFile(prefix="bench-local.") as f:
        f.write(b"x" * 100)
        f.flush()

        def run(env):
            return float(subprocess.run([SHIMPROG, "loop", f.name, str(n)], env=env, check=True,
                                        capture_output=True, text=True).stdout)
        w, wo, ratios = [], [], []
        for i in range(pairs):
            if i % 2 == 0:
                a, b = run(pre), run(base)
            else:
                b, a = run(base), run(pre)
            w.append(a)
            wo.append(b)
            ratios.append(a / b)
        # Interference only ever adds time to a fixed loop: the fastest run of each side is
        # its cost. The pairs' median ratio is printed beside it.
        a, b = min(w) * 100000 / n, min(wo) * 100000 / n
        ratio = a / b
        out(f"100k open/read/close local: fastest of {pairs}: with {a * 1000:.1f} ms  without "
            f"{b * 1000:.1f} ms  ratio {ratio:.3f}  (target <= 1.03: {verdict(ratio, 1.03)}); "
            f"pairs' median ratio {statistics.median(ratios):.3f}, range "
            f"{min(ratios):.3f}-{max(ratios):.3f}")
        figure("foreign", f"100k open/read/close, local file: ms with / without (fastest of "
               f"{pairs} runs each, paired)", f"{a * 1000:.0f} / {b * 1000:.0f} = {ratio:.3f}",
               "<= 1.03", verdict(ratio, 1.03))


# ---- 3. first touch -------------------------------------------------------------------------
def first_touch(bucket):
    out("## 3. first touch: process start (just before exec) to the first state read done")
    kvtool("put", bucket, "ft", "x" * 1024)
    runs = {"shim": [], "direct": []}
    for i in range(15):
        for side in (("shim", "direct") if i % 2 == 0 else ("direct", "shim")):
            if side == "shim":
                argv, env = [SHIMPROG, "first", "/state/bench/ft"], shim_env(bucket)
            else:
                argv, env = [DIRECTPROG, "first", URL, bucket, "ft"], dict(os.environ)
            env["BENCH_T0_NS"] = str(time.monotonic_ns())
            p = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
            runs[side].append(float(p.stdout))
    a, b = statistics.median(runs["shim"]), statistics.median(runs["direct"])
    d = (a - b) / 1000
    met = "met" if d <= 1.0 else "MISSED"
    out(f"first read: shim {a / 1000:.2f} ms  direct {b / 1000:.2f} ms  "
        f"difference {d:+.2f} ms  (target <= +1 ms: {met})")
    figure("first touch", "start to first 1 KiB read: ms shim / direct",
           f"{a / 1000:.2f} / {b / 1000:.2f} ({d:+.2f})", "<= +1 ms", met)


# ---- 4. memory ------------------------------------------------------------------------------
def memory(bucket):
    out("## 4. memory: peak RSS (VmHWM: ru_maxrss keeps the spawning Python's peak across exec) "
        "holding 100 open 64 KiB files, each read whole")
    pre = shim_env(bucket)
    subprocess.run([SHIMPROG, "mkhold", "/state/bench/hold", "100", "65536"], env=pre,
                   check=True)
    with tempfile.TemporaryDirectory(prefix="bench-hold.") as d:
        subprocess.run([SHIMPROG, "mkhold", d, "100", "65536"], check=True)

        def rss(path, env):
            return int(subprocess.run([SHIMPROG, "hold", path, "100"], env=env, check=True,
                                      capture_output=True, text=True).stdout.split()[0])
        state = rss("/state/bench/hold", pre)
        local_pre = rss(d, pre)
        local = rss(d, dict(os.environ))
    out(f"state files (shim): {state} KiB  local files with preload: {local_pre} KiB  "
        f"local files without: {local} KiB  (state - local: {state - local} KiB)")
    figure("memory", "peak RSS (VmHWM), 100 open 64 KiB files: KiB state / local",
           f"{state:,} / {local:,} (+{(state - local) / 1024:.1f} MiB)",
           "one copy + < 8 MiB", "met" if state - local < 8192 + 6400 else "MISSED")


# ---- 5. sidecar -----------------------------------------------------------------------------
def wait_socket(path, proc):
    deadline = time.time() + 10
    while time.time() < deadline and proc.poll() is None:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing answers on {path}")


def proc_cost(pid):
    """(CPU seconds, context switches) of a process so far, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    sw = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                sw += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except OSError:
            pass
    return cpu, sw


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))]


def sidecar(bucket):
    """The sidecar's own hop and its latency tail (issue 14), each against a reference measured
    in the same run: bench/sidecar_ref.py, a Python http.server sidecar in the shape of Asya's
    own connector server that answers from memory (its whole cycle is the hop a Python sidecar
    adds). Hop: the sidecar's read-modify-write cycle minus the shim's (the same GET+PUT, the
    same store), a fresh connection per request. Tail: p99 / p50 of GETs with 1 and 8 client
    processes, fresh connections. Rounds interleave the servers in shuffled order, so a busy
    spell of the machine falls on all of them. BENCH_SIDECAR_OTHER=PATH (another build's
    asya-state, e.g. main's) adds it as a third server in the same rounds and prints its rows
    too: two builds compared under the same load, which two runs cannot be on a shared
    machine."""
    out("## 5. sidecar: hop (sidecar cycle - shim cycle) against a Python http.server sidecar "
        "answering from memory; p50/p99 at 1 and 8 clients (fresh connection per request)")
    rounds = int(os.environ.get("BENCH_SIDECAR_ROUNDS", "15"))
    d = tempfile.mkdtemp(prefix="bench-sc.")
    bins = {"serve": os.path.join(BUILD, "asya-state")}
    if os.environ.get("BENCH_SIDECAR_OTHER"):
        bins["other"] = os.environ["BENCH_SIDECAR_OTHER"]
    socks = {k: os.path.join(d, f"{k}.sock") for k in list(bins) + ["ref"]}
    procs = {k: subprocess.Popen([b, "serve"], stderr=subprocess.DEVNULL,
                                 env=dict(os.environ, CONNECTOR_SOCKET=socks[k],
                                          NATS_KV_BUCKET=bucket, STATE_PREFIX=f"sc_{k}"))
             for k, b in bins.items()}
    procs["ref"] = subprocess.Popen([PYTHON, os.path.join(ROOT, "bench", "sidecar_ref.py"),
                                     socks["ref"]])
    worker = os.path.join(ROOT, "bench", "sidecar_worker.py")
    clients, shim = [], None
    try:
        for k in socks:
            wait_socket(socks[k], procs[k])
        clients = [Worker([PYTHON, worker, f"c{i}"], dict(os.environ)) for i in range(8)]
        shim = Worker([PYTHON, worker, "shim"], shim_env(bucket))
        rng = random.Random(3)
        cyc = {k: [] for k in list(socks) + ["shim"]}
        for r in range(rounds + 1):                 # round 0 is warm-up, discarded
            for side in rng.sample(list(cyc), len(cyc)):
                t = (shim.batch("shim", "/state/bench", 20) if side == "shim"
                     else clients[0].batch("cycle", socks[side], 20))
                if r:
                    cyc[side] += t
        tail = {(k, c): [] for k in socks for c in (1, 8)}
        cost = {k: [0.0, 0, 0] for k in socks}      # CPU s, switches, requests
        for r in range(rounds + 1):
            for k in rng.sample(list(socks), len(socks)):
                for c in (1, 8):
                    c0 = proc_cost(procs[k].pid)
                    for w in clients[:c]:
                        w.p.stdin.write(f"get {socks[k]} 25\n")
                        w.p.stdin.flush()
                    t = []
                    for w in clients[:c]:
                        t += [float(x) for x in w.p.stdout.readline().split()]
                    c1 = proc_cost(procs[k].pid)
                    if r:
                        tail[(k, c)] += t
                        cost[k][0] += c1[0] - c0[0]
                        cost[k][1] += c1[1] - c0[1]
                        cost[k][2] += len(t)
    finally:
        for w in clients + ([shim] if shim else []):
            w.close()
        for p in procs.values():
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)

    a, sh, ref = (statistics.median(cyc[k]) for k in ("serve", "shim", "ref"))
    hop = a - sh
    met = verdict(hop / ref, 1.0)
    out(f"cycle p50: sidecar {a:.0f} us  shim {sh:.0f} us  hop {hop:.0f} us;  reference "
        f"Python sidecar from memory {ref:.0f} us;  hop/reference {hop / ref:.2f} "
        f"(target <= 1.00: {met}); {len(cyc['serve'])} cycles each")
    figure("sidecar", "hop: (sidecar cycle - shim cycle) / Python http.server cycle from "
           "memory, p50 us", f"({a:.0f} - {sh:.0f}) / {ref:.0f} = {hop / ref:.2f}", "<= 1.00",
           met)
    if "other" in cyc:
        o = statistics.median(cyc["other"])
        x, y = tail[("other", 1)], tail[("other", 8)]
        out(f"other build ({bins['other']}), same rounds: cycle p50 {o:.0f} us  hop "
            f"{o - sh:.0f} us  hop/reference {(o - sh) / ref:.2f};  GET p50/p99 us: 1 client "
            f"{pct(x, .5):.0f}/{pct(x, .99):.0f} ({pct(x, .99) / pct(x, .5):.2f}), 8 clients "
            f"{pct(y, .5):.0f}/{pct(y, .99):.0f} ({pct(y, .99) / pct(y, .5):.2f})")
    for c in (1, 8):
        x, y = tail[("serve", c)], tail[("ref", c)]
        r_x, r_y = pct(x, .99) / pct(x, .5), pct(y, .99) / pct(y, .5)
        met = verdict(r_x, 3.0)
        out(f"GET, {c} client(s): sidecar p50 {pct(x, .5):.0f} p99 {pct(x, .99):.0f} us  "
            f"p99/p50 {r_x:.2f} (target <= 3: {met});  reference p50 {pct(y, .5):.0f} p99 "
            f"{pct(y, .99):.0f} us p99/p50 {r_y:.2f}; {len(x)} requests each")
        figure("sidecar", f"tail, GET with {c} client(s): p99 / p50 us (reference's ratio)",
               f"{pct(x, .99):.0f} / {pct(x, .5):.0f} = {r_x:.2f} ({r_y:.2f})", "<= 3", met)
    for k in socks:
        cpu, sw, n = cost[k]
        out(f"server cost per GET ({k}): {cpu / n * 1e6:.0f} us CPU, {sw / n:.1f} context "
            "switches (all its threads)")
    figure("sidecar", "server CPU per GET: sidecar / reference (us; context switches)",
           f"{cost['serve'][0] / cost['serve'][2] * 1e6:.0f} / "
           f"{cost['ref'][0] / cost['ref'][2] * 1e6:.0f} "
           f"({cost['serve'][1] / cost['serve'][2]:.1f}; "
           f"{cost['ref'][1] / cost['ref'][2]:.1f})")
    load = os.getloadavg()[0]
    out(f"load average during the section: {load:.1f} on {os.cpu_count()} CPUs")


# ---- 5b. /query ------------------------------------------------------------------------------
def query(bucket):
    """POST /query over 10,000 1 KiB JSON documents (issue 14): from the read cache's mirror,
    and without the cache against reading the same documents with direct libnats calls
    (directprog scan: the ordered consumer /query uses, values counted, nothing parsed)."""
    n, size = 10000, 1024
    out(f"## 5b. /query over {n:,} {size // 1024} KiB JSON documents: from the mirror, and "
        "without the cache against a direct libnats read of the same documents")
    qb = f"{bucket}_q"
    url_env = dict(os.environ)
    kvtool("--wait", "bucket-add", qb)
    subprocess.run([DIRECTPROG, "jsonfill", URL, qb, "qy.docs/d%d.json", str(n), str(size)],
                   check=True)
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from sidecar_client import request
    d = tempfile.mkdtemp(prefix="bench-q.")
    socks = {"mirror": os.path.join(d, "m.sock"), "direct": os.path.join(d, "d.sock")}
    procs = {}
    body = b'{"prefix": "docs/", "filter": {"group": 7}}'   # 1% of the documents match
    times = {"mirror": [], "direct": [], "libnats": []}
    try:
        for k, sock in socks.items():
            env = dict(url_env, CONNECTOR_SOCKET=sock, NATS_KV_BUCKET=qb, STATE_PREFIX="qy")
            if k == "mirror":
                env["STATE_READ_CACHE"] = "watch"
            procs[k] = subprocess.Popen([os.path.join(BUILD, "asya-state"), "serve"], env=env,
                                        stderr=subprocess.DEVNULL)
            wait_socket(sock, procs[k])
        total = None
        for k in socks:                      # warm-up: starts the mirror, binds the bucket
            st, _, b = request(socks[k], "POST", "/query", body=body, timeout=120)
            if st != 200:
                raise SystemExit(f"bench: /query answered {st}: {b[:200]!r}")
            total = json.loads(b)["total"]
        time.sleep(3)                        # the mirror catches up
        for _ in range(7):
            for k in ("mirror", "direct", "libnats"):
                t0 = time.perf_counter()
                if k == "libnats":
                    times[k].append(float(subprocess.run(
                        [DIRECTPROG, "scan", URL, qb, "qy.>"], check=True, capture_output=True,
                        text=True).stdout.split()[0]))
                    continue
                st, _, b = request(socks[k], "POST", "/query", body=body, timeout=120)
                times[k].append((time.perf_counter() - t0) * 1e3)
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)
        kvtool("bucket-del", qb)
    m, q, dn = (statistics.median(times[k]) for k in ("mirror", "direct", "libnats"))
    met_m, met_q = ("met" if m < 50 else "MISSED"), verdict(q / dn, 1.2)
    out(f"/query (total {total}): from the mirror {m:.0f} ms (target < 50: {met_m}); without "
        f"the cache {q:.0f} ms, direct libnats read {dn:.0f} ms, ratio {q / dn:.2f} (target "
        f"<= 1.20: {met_q}); medians of 7")
    figure("query", f"/query over {n:,} 1 KiB documents from the mirror: ms", f"{m:.0f}",
           "< 50", met_m)
    figure("query", "/query without the cache / direct libnats read of the same documents (ms)",
           f"{q:.0f} / {dn:.0f} = {q / dn:.2f}", "<= 1.20", met_q)


# ---- 6. read cache --------------------------------------------------------------------------
def cache(bucket):
    out("## 6. read cache (STATE_READ_CACHE=watch): a cached 1 KiB read cycle against a direct "
        "Get, and how soon another client's update is read through the cache")
    env = dict(shim_env(bucket), STATE_READ_CACHE="watch")
    per = max(1, ROUNDS // EPOCHS)
    samples = {"cached": [], "direct": []}
    rng = random.Random(2)
    for _ in range(3):
        workers = [("cached", Worker([SHIMPROG, "cycles", "/state/bench"], env)),
                   ("direct", Worker([DIRECTPROG, "cycles", URL, bucket, "c"],
                                     dict(os.environ)))]
        for _, w in workers:
            w.batch("init", 1024, 1)
        # The shim's first read starts the watcher; reads are direct Gets (hundreds of us)
        # until it has caught up: wait for one served from the mirror, 5 s at most.
        deadline = time.time() + 5
        while min(workers[0][1].batch("read", 1024, 5)) > 50 and time.time() < deadline:
            time.sleep(0.05)
        for r in range(per + 1):         # round 0 is warm-up, discarded
            for side, w in rng.sample(workers, len(workers)):
                t = w.batch("read", 1024, BATCH)
                if r:
                    samples[side] += t
        for _, w in workers:
            w.close()
    a, b = statistics.median(samples["cached"]), statistics.median(samples["direct"])
    met = "met" if b / a >= 10 else "MISSED"
    out(f"read 1 KiB: cached {a:.1f} us  direct Get {b:.1f} us  direct/cached {b / a:.1f}x  "
        f"(target >= 10x: {met})")
    figure("cache", "read 1 KiB: direct Get / cached (us)", f"{b:.0f} / {a:.1f} = {b / a:.0f}x",
           ">= 10x", met)

    # Another client (directprog, its own connection) puts a new value; a process reading
    # through the cache polls until it reads it. Lag: the put's start to that read.
    def spawn(argv, e):
        return subprocess.Popen(argv, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, bufsize=1)
    watcher = spawn([SHIMPROG, "watch", "/state/bench/lag"], env)
    putter = spawn([DIRECTPROG, "puts", URL, bucket, "lag"], dict(os.environ))
    lags = []
    try:
        for i in range(201):
            for p in (watcher, putter):
                p.stdin.write(f"v{i}\n")
                p.stdin.flush()
            t0 = putter.stdout.readline()
            t1 = watcher.stdout.readline() if t0 else ""   # the watcher gives up after 5 s
            if not t0 or not t1:
                raise SystemExit("bench: the cache's watch probe died")
            if i == 0:
                time.sleep(0.3)          # the first read started the watcher: let it catch up
            else:
                lags.append((int(t1) - int(t0)) / 1e6)
    finally:
        for p in (watcher, putter):
            try:
                p.stdin.close()
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
                p.wait()
    lags.sort()
    p99 = lags[int(len(lags) * 0.99) - 1]
    met = "met" if lags[-1] <= 100 else "MISSED"
    out(f"update by another client read through the cache after: median {statistics.median(lags):.2f} ms "
        f"p99 {p99:.2f} ms  max {lags[-1]:.2f} ms over {len(lags)} updates (target <= 100 ms: {met})")
    figure("cache", f"another client's update read through the cache: ms median / p99 / max "
           f"({len(lags)} updates)", f"{statistics.median(lags):.2f} / {p99:.2f} / {lags[-1]:.2f}",
           "<= 100 ms", met)


# ---- 7. scale --------------------------------------------------------------------------------
# Each shim operation against its direct floor: what a direct libnats client pays for the
# same answer (bench/directprog.c scale).
SCALE_OPS = (("open-missing", "getmiss", "open of a missing file", "Get miss"),
             ("exists-missing", "getmiss", "exists of a missing path", "Get miss"),
             ("isdir", "get", "isdir of a directory", "Get"),
             ("stat-dir", "get", "stat of a directory", "Get"),
             ("makedirs-new", "create", "makedirs of a new directory", "create"),
             ("listdir", "scan", "listdir of a 10-entry directory", "headers-only scan"))


def scale(_bucket):
    """At 100, 10,000 and 100,000 keys (BENCH_SCALE_SIZES; BENCH_SCALE_QUICK=1: 100 and
    10,000), flat (sc.u<i>.json) and nested (sc.users/u<i>/state.json), 1 KiB values filled
    by kvtool: every single-name operation under the shim (Python, bench/scale_shim.py)
    against its direct floor, interleaved batch by batch in one run. Medians."""
    quick = os.environ.get("BENCH_SCALE_QUICK") == "1"
    sizes = [int(x) for x in os.environ.get(
        "BENCH_SCALE_SIZES", "100,10000" if quick else "100,10000,100000").split(",")]
    rounds = 3 if quick else 6
    out(f"## 7. scale: single-name operations under the shim (Python) vs the direct floor, at "
        f"{', '.join(f'{n:,}' for n in sizes)} keys, flat and nested; median ms of {rounds} "
        "interleaved rounds")
    med = {}
    for layout, fmt in (("flat", "sc.u%d.json"), ("nested", "sc.users/u%d/state.json")):
        for n in sizes:
            b = f"scale_{layout}_{n}_{os.getpid()}"
            kvtool("--wait", "bucket-add", b)
            kvtool("fill", b, fmt, str(n), "1024")
            for k in ("sc.d/", "sc.m/"):
                kvtool("put", b, k, "")
            kvtool("fill", b, "sc.d/f%d", "10", "1024")
            env = dict(shim_env(b, "/state/sc"), STATE_PREFIX="sc", NATS_TIMEOUT_MS="30000")
            workers = {"shim": Worker([PYTHON, os.path.join(ROOT, "bench", "scale_shim.py"),
                                       "/state/sc"], env),
                       "direct": Worker([DIRECTPROG, "scale", URL, b, "sc"], dict(os.environ))}
            samples = {}
            rng = random.Random(3)
            try:
                for r in range(rounds + 1):      # round 0 is warm-up, discarded
                    for op, floor, _, _ in SCALE_OPS:
                        batch = (1 if n >= 100000 else 2 if n >= 10000 else 10) \
                            if op == "listdir" else 10
                        pairs = [("shim", op), ("direct", floor)]
                        for side, o in rng.sample(pairs, 2):
                            t = workers[side].batch(o, 0, batch)
                            if r:
                                samples.setdefault((side, op), []).extend(t)
            finally:
                for w in workers.values():
                    w.close()
                kvtool("bucket-del", b)
            for op, _, _, _ in SCALE_OPS:
                med[(layout, n, op)] = (statistics.median(samples[("shim", op)]) / 1000,
                                        statistics.median(samples[("direct", op)]) / 1000)
        for op, _, label, floor_name in SCALE_OPS:
            single = op != "listdir"
            for n in sizes:
                a, b = med[(layout, n, op)]
                ratio = a / b
                met = verdict(ratio, 3.0) if single else "-"
                out(f"{layout:6} {n:>7,} keys  {label:32} shim {a:8.3f} ms  {floor_name} "
                    f"{b:8.3f} ms  ratio {ratio:5.2f}" + (f"  (target <= 3: {met})" if single else ""))
                figure("scale", f"{label}, {layout}, {n:,} keys: ms shim / {floor_name}",
                       f"{a:.3f} / {b:.3f} = {ratio:.2f}", "<= 3" if single else "", met)
            # Growth: the shim's time at the largest size over the smallest, divided by the
            # floor's own growth (the server's, and this shared machine's drift between the
            # two sizes, which moved the raw figure by up to 2x either way).
            (lo, flo), (hi, fhi) = med[(layout, sizes[0], op)], med[(layout, sizes[-1], op)]
            growth = (hi / lo) / (fhi / flo)
            met = verdict(growth, 1.3) if single else "-"
            out(f"{layout:6} {label:32} growth {sizes[0]:,} -> {sizes[-1]:,} keys: shim "
                f"{hi / lo:.2f}, floor {fhi / flo:.2f}, shim/floor {growth:.2f}"
                + (f"  (target <= 1.3: {met})" if single else ""))
            figure("scale", f"{label}, {layout}: growth {sizes[0]:,} -> {sizes[-1]:,} keys, "
                   "shim / floor", f"{hi / lo:.2f} / {fhi / flo:.2f} = {growth:.2f}",
                   "<= 1.3" if single else "", met)


def main():
    machine()
    bucket = f"bench_{os.getpid()}"
    kvtool("--wait", "bucket-add", bucket)
    # BENCH_ONLY=cycles,memory...: some sections only (for a quick look; the table of
    # docs/performance.md is written from a whole run)
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
    for section in (cycles, foreign, first_touch, memory, sidecar, query, cache, scale):
        if not only or section.__name__ in only:
            section(bucket)


if __name__ == "__main__":
    main()
