#!/usr/bin/env bash
# Issue 5, "Faster than the floor: the watch-fed read cache" (SPEC "Read cache"): with
# STATE_READ_CACHE=watch and with the mount option read=watch, reads through the cache return
# the right values (own writes, deletes, missing keys), an update by another client (kvtool)
# is visible within 100 ms, a 4 x 50 read-modify-write counter stays exact, the watcher is
# recreated after the server is killed and restarted on the same port and store, and a
# cached 1 KiB read cycle is at least 10x faster than a direct Get cycle (figures printed).
# Every process under the shim is the real Python binary (or a C loop), bounded by timeout.
. "$(dirname "$0")/lib.sh"
PROGS=$ROOT/tests/integration/progs
PY=$(python3 -c 'import sys; print(sys.executable)')

if [ ! -f "$SHIM" ]; then
    fail "cache: the shim is built" "$SHIM is missing"
    exit 1
fi

M=/state/cache
P=cp

# drv.py MODE ARGS...: the Python side, run under the shim. Knows nothing of NATS except
# that it runs kvtool (without the preload) as "another client". Prints "key value" lines.
cat >"$TMP/drv.py" <<'EOF'
import os, statistics, subprocess, sys, time

KVTOOL = os.environ["KVTOOL"]
CLEAN = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}

def kv(*args):
    return subprocess.run([KVTOOL, *args], env=CLEAN, check=True, capture_output=True,
                          text=True).stdout.strip()

def read(path):
    with open(path) as f:
        return f.read()

def read_or_missing(path):
    try:
        return read(path)
    except FileNotFoundError:
        return "<missing>"

def batch_us(path, n):
    t = time.perf_counter()
    for _ in range(n):
        with open(path, "rb") as f:
            f.read()
    return (time.perf_counter() - t) / n * 1e6

def cycles_us(cached, direct, n_cached, n_direct, batches=9):
    # microseconds per open + read + close: medians of interleaved batches, so both see the
    # same machine load
    c, d = [], []
    for _ in range(batches):
        c.append(batch_us(cached, n_cached))
        d.append(batch_us(direct, n_direct))
    return statistics.median(c), statistics.median(d)

def wait_value(path, want, secs):
    # polls path until it reads want; returns (seconds waited, reads made)
    t0 = time.perf_counter()
    reads = 0
    while time.perf_counter() - t0 < secs:
        reads += 1
        if read_or_missing(path) == want:
            return time.perf_counter() - t0, reads
        time.sleep(0.0005)
    return None, reads

def catch_up(path):
    # the first read is direct and starts the watcher; give it time to deliver its snapshot
    read_or_missing(path)
    time.sleep(0.5)

mode, args = sys.argv[1], sys.argv[2:]

if mode == "values":
    m, bucket = args
    catch_up(f"{m}/k1")
    print("k1", read(f"{m}/k1"))
    print("big", len(read(f"{m}/big")))
    print("missing", read_or_missing(f"{m}/nope"))
    with open(f"{m}/own", "w") as f:
        f.write("mine")
    print("own", read(f"{m}/own"))                 # own write, read back at once
    kv("del", bucket, "cp.k1")
    waited, _ = wait_value(f"{m}/k1", "<missing>", 2)
    print("deleted", "gone" if waited is not None else "still there")
    # a value written by this process, then overwritten by another client
    kv("put", bucket, "cp.own", "theirs")
    waited, _ = wait_value(f"{m}/own", "theirs", 2)
    print("own_overwritten", "seen" if waited is not None else "stale")
    # a forked child has no watcher thread (nor nats.c's library threads): it reads
    # directly and sees an update made after the fork
    kv("put", bucket, "cp.forked", "before-fork")
    wait_value(f"{m}/forked", "before-fork", 2)
    pid = os.fork()
    if pid == 0:
        try:
            first = read(f"{m}/forked")
            kv("put", bucket, "cp.forked", "after-fork")
            waited, _ = wait_value(f"{m}/forked", "after-fork", 2)
            os._exit(0 if first == "before-fork" and waited is not None else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    print("fork_child", "ok" if status == 0 else "status %d" % status)
    print("fork_parent", read(f"{m}/forked") if wait_value(f"{m}/forked", "after-fork", 2)[0] is not None else "stale")

elif mode == "latency":
    m, bucket, n = args[0], args[1], int(args[2])
    catch_up(f"{m}/lat")
    after_ack, from_start, reads = [], [], []
    for i in range(n):
        want = f"v{i}-{time.time_ns()}"
        t_start = time.perf_counter()
        kv("put", bucket, "cp.lat", want)
        t_ack = time.perf_counter()
        waited, r = wait_value(f"{m}/lat", want, 2)
        if waited is None:
            print("latency_fail", i)
            sys.exit(0)
        after_ack.append(waited * 1e3)
        from_start.append((t_ack - t_start + waited) * 1e3)
        reads.append(r)
    print("after_ack_max_ms %.2f" % max(after_ack))
    print("after_ack_median_ms %.2f" % statistics.median(after_ack))
    print("from_put_start_max_ms %.2f" % max(from_start))
    print("polls_median %d" % statistics.median(reads))

elif mode == "cycle":
    cached, direct, local = args
    read(direct)
    catch_up(cached)
    c, d = cycles_us(cached, direct, 400, 60)
    l, _ = cycles_us(local, local, 400, 1, 5)
    print("cached %.2f" % c)
    print("direct %.2f" % d)
    print("local %.2f" % l)

elif mode == "restart":
    # READY after the cache caught up; waits for a line on stdin (the server was killed and
    # restarted meanwhile), then makes updates with kvtool until one is seen through the cache.
    m, bucket, direct = args
    path = f"{m}/r"
    catch_up(path)
    print("before", read(path))
    c, d = cycles_us(path, direct, 200, 30, 5)
    print("before_us %.2f" % c)
    print("before_direct_us %.2f" % d, flush=True)
    print("READY", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    deadline = t0 + 30
    i = 0
    seen = None
    while time.perf_counter() < deadline and seen is None:
        i += 1
        want = f"after-restart-{i}"
        try:
            kv("put", bucket, "cp.r", want)
        except subprocess.CalledProcessError:
            time.sleep(0.1)          # JetStream still recovering
            continue
        # read through the shim, as a program would (it may still be reconnecting)
        try:
            waited, _ = wait_value(path, want, 1)
        except OSError:
            waited = None
        if waited is not None:
            seen = waited
    print("visible_after_restart", "yes" if seen is not None else "no")
    print("restart_updates %d" % i)
    # once the new watcher has caught up, a further update is seen within 100 ms and reads
    # are served from the mirror again (as fast as before the restart)
    time.sleep(1.0)
    want = "after-restart-final"
    kv("put", bucket, "cp.r", want)
    waited, _ = wait_value(path, want, 2)
    print("after_restart_ms %.2f" % (waited * 1e3 if waited is not None else -1))
    c, d = cycles_us(path, direct, 200, 30, 5)
    print("after_us %.2f" % c)
    print("after_direct_us %.2f" % d)
EOF

# A C loop: batches of N x (open + read all + close) of CACHED and N/8 of DIRECT, interleaved;
# prints the median microseconds per cycle of each.
cat >"$TMP/loop.c" <<'EOF'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static char buf[70000];
static double batch(const char *path, int n)
{
    double t = now();
    for (int i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) { perror(path); exit(1); }
        while (read(fd, buf, sizeof buf) > 0)
            ;
        close(fd);
    }
    return (now() - t) / n * 1e6;
}
int main(int argc, char **argv)
{
    enum { B = 9 };
    double c[B], d[B];
    int n = argc > 3 ? atoi(argv[3]) : 1000;
    batch(argv[2], 1);
    batch(argv[1], 1);                  /* the first read is direct: it starts the watcher */
    usleep(500000);
    for (int b = 0; b < B; b++) {
        c[b] = batch(argv[1], n);
        d[b] = batch(argv[2], n / 8);
    }
    qsort(c, B, sizeof c[0], cmp);
    qsort(d, B, sizeof d[0], cmp);
    printf("cached %.2f\ndirect %.2f\n", c[B / 2], d[B / 2]);
    return 0;
}
EOF
CLOOP=
if cc -O2 -o "$TMP/loop" "$TMP/loop.c" 2>"$TMP/cc.err"; then
    CLOOP=$TMP/loop
else
    echo "# cc failed: $(head -n 3 "$TMP/cc.err")"
fi

# under_shim MODE-ENV... -- CMD...: CMD under the shim with mount $M -> bucket $B, prefix cp.
#   MODE "env":   STATE_READ_CACHE=watch, mount without options
#   MODE "opt":   mount option read=watch
#   MODE "both":  $M with read=watch, and $D (prefix cq) without the cache (direct Gets)
D=/state/direct
under_shim() {
    local mode=$1 mounts=cache:$M
    shift
    local -a extra=(-u STATE_READ_CACHE)
    case $mode in
    env) extra=(STATE_READ_CACHE=watch) ;;
    opt) mounts=cache:$M:read=watch ;;
    both) mounts="cache:$M:read=watch;direct:$D:prefix=cq" ;;
    esac
    timeout -k 5 60 env "${extra[@]}" NATS_KV_BUCKET="$B" STATE_PREFIX=$P \
        ASYA_STATE_PROXY_MOUNTS="$mounts" KVTOOL="$KVTOOL" LD_PRELOAD="$SHIM" "$@"
}
field() { sed -n "s/^$1 //p" "$2" | head -n 1; }
errs() { [ -s "$1" ] && sed 's/^/# stderr: /' "$1" | head -n 5; }

for mode in env opt; do
    case $mode in
    env) what="STATE_READ_CACHE=watch" ;;
    opt) what="read=watch" ;;
    esac
    B=$(new_bucket) || { fail "cache $what: bucket" "cannot create a bucket"; continue; }

    # --- values: kvtool's values, own writes, deletes, missing keys -------------------------
    "$KVTOOL" put "$B" cp.k1 one >/dev/null
    head -c 1024 /dev/zero | tr '\0' x | "$KVTOOL" put-stdin "$B" cp.big >/dev/null
    under_shim $mode "$PY" "$TMP/drv.py" values "$M" "$B" >"$TMP/out" 2>"$TMP/err"
    errs "$TMP/err"
    expect_eq "cache $what: a value put by kvtool reads back" one "$(field k1 "$TMP/out")"
    expect_eq "cache $what: a 1 KiB value reads back whole" 1024 "$(field big "$TMP/out")"
    expect_eq "cache $what: a missing key is FileNotFoundError" "<missing>" \
        "$(field missing "$TMP/out")"
    expect_eq "cache $what: a process reads its own write at once" mine "$(field own "$TMP/out")"
    expect_eq "cache $what: a delete by kvtool makes the key missing" gone \
        "$(field deleted "$TMP/out")"
    expect_eq "cache $what: kvtool overwriting an own write is seen" seen \
        "$(field own_overwritten "$TMP/out")"
    expect_eq "cache $what: the own write landed in the bucket (kvtool)" theirs \
        "$("$KVTOOL" get "$B" cp.own 2>&1)"
    expect_eq "cache $what: a forked child reads, and sees an update made after the fork" ok \
        "$(field fork_child "$TMP/out")"
    expect_eq "cache $what: the parent's cache keeps working after the fork" after-fork \
        "$(field fork_parent "$TMP/out")"

    # --- visibility latency of another client's update --------------------------------------
    "$KVTOOL" put "$B" cp.lat start >/dev/null
    under_shim $mode "$PY" "$TMP/drv.py" latency "$M" "$B" 20 >"$TMP/out" 2>"$TMP/err"
    errs "$TMP/err"
    max=$(field after_ack_max_ms "$TMP/out")
    echo "# cache $what: kvtool update -> visible through the cache: median" \
        "$(field after_ack_median_ms "$TMP/out") ms, max $max ms after kvtool's ack" \
        "(max $(field from_put_start_max_ms "$TMP/out") ms from starting kvtool)," \
        "median $(field polls_median "$TMP/out") polls"
    if [ -n "$max" ] && python3 -c "import sys; sys.exit(not float('$max') < 100)"; then
        ok "cache $what: 20 updates by kvtool each visible within 100 ms (max $max ms)"
    else
        fail "cache $what: 20 updates by kvtool each visible within 100 ms" \
            "$(tr '\n' ' ' <"$TMP/out")"
    fi

    # --- read-modify-write counter, 4 processes x 50 ----------------------------------------
    "$KVTOOL" put "$B" cp.counter 0 >/dev/null
    rm -f "$TMP/go"
    pids=()
    for w in 1 2 3 4; do
        under_shim $mode "$PY" "$PROGS/counter_worker.py" "$M/counter" 50 "$TMP/go" \
            >"$TMP/w$w.out" 2>"$TMP/w$w.err" &
        pids+=($!)
    done
    sleep 0.3
    touch "$TMP/go"
    wfail=0
    for p in "${pids[@]}"; do wait "$p" || wfail=1; done
    conflicts=$(cat "$TMP"/w?.out | awk '/^conflicts/ {s += $2} END {print s + 0}')
    echo "# cache $what: counter 4 x 50: $conflicts conflicts (retried)"
    [ $wfail = 0 ] || errs "$TMP/w1.err"
    expect_eq "cache $what: 4 x 50 read-modify-write increments stay exact (kvtool)" 200 \
        "$("$KVTOOL" get "$B" cp.counter 2>&1)"
done

# --- hygiene with the cache on: the watcher thread blocks every signal, rand() untouched ----
HP=$TMP/hygiene_proc
if cc -std=gnu11 -O1 -pthread -o "$HP" "$PROGS/hygiene_proc.c" 2>"$TMP/cc.err"; then
    B=$(new_bucket) || fail "cache hygiene: bucket" "cannot create a bucket"
    echo hello >"$TMP/local_h"
    timeout -k 5 60 "$HP" state "$TMP/local_h" default >"$TMP/plain.out" 2>&1
    under_shim env "$HP" state "$M/h" default >"$TMP/shim.out" 2>"$TMP/err"
    errs "$TMP/err"
    others=$(sed -n 's/^threads others=//p' "$TMP/shim.out")
    # A thread caught between clone() and its first instruction still has glibc's creation
    # mask, which blocks even glibc's internal signals: a superset of "every signal" counts.
    bad=$(grep '^thread ' "$TMP/shim.out" | sed 's/.*SigBlk=\([0-9a-f]*\) full=\([0-9a-f]*\).*/\1 \2/' |
        while read -r blk full; do
            [ $(( 0x$blk & 0x$full )) = $(( 0x$full )) ] || echo bad
        done | grep -c bad)
    if [ "${others:-0}" -ge 1 ] && [ "$bad" -eq 0 ]; then
        ok "cache hygiene: every one of the $others library threads (watcher included) blocks every signal"
    else
        fail "cache hygiene: library threads block every signal" "$(grep '^thread' "$TMP/shim.out" | tr '\n' ' ')"
    fi
    expect_eq "cache hygiene: rand() after srand(42) keeps the program's sequence" \
        "$(grep '^cmp rand' "$TMP/plain.out" | tr '\n' ' ')" \
        "$(grep '^cmp rand' "$TMP/shim.out" | tr '\n' ' ')"
    grep '^cmp ' "$TMP/plain.out" | grep -v '^cmp ops' >"$TMP/plain.cmp"
    grep '^cmp ' "$TMP/shim.out" | grep -v '^cmp ops' >"$TMP/shim.cmp"
    if [ -s "$TMP/plain.cmp" ] && diff "$TMP/plain.cmp" "$TMP/shim.cmp" >"$TMP/diff" 2>&1; then
        ok "cache hygiene: signal dispositions, mask and pending set equal the run without the shim"
    else
        fail "cache hygiene: process state equals the run without the shim" "$(head -n 8 "$TMP/diff")"
    fi
else
    fail "cache hygiene: progs/hygiene_proc.c compiles" "$(head -n 3 "$TMP/cc.err")"
fi

# --- cached vs direct 1 KiB read cycle ------------------------------------------------------
# One process, two mounts on one bucket: $M (read=watch, key cp.v1k) and $D (no cache, key
# cq.v1k, the same 1 KiB); batches of each interleaved so both see the same machine load.
B=$(new_bucket) || fail "cache: speed bucket" "cannot create a bucket"
head -c 1024 /dev/zero | tr '\0' y | "$KVTOOL" put-stdin "$B" cp.v1k >/dev/null
head -c 1024 /dev/zero | tr '\0' y | "$KVTOOL" put-stdin "$B" cq.v1k >/dev/null
ratio_check() { # NAME OUTFILE MIN
    local ratio cached direct
    cached=$(field cached "$2")
    direct=$(field direct "$2")
    ratio=$(python3 -c "print('%.1f' % (float('$direct') / float('$cached')))" 2>/dev/null)
    echo "# cache: $1 1 KiB read cycle: cached $cached us, direct $direct us, ratio ${ratio:-?}x"
    if [ -n "$ratio" ] && python3 -c "import sys; sys.exit(not float('$ratio') >= $3)"; then
        ok "cache: $1 cached 1 KiB read cycle at least ${3}x faster than a direct Get (${ratio}x)"
    else
        fail "cache: $1 cached 1 KiB read cycle at least ${3}x faster than a direct Get" \
            "cached ${cached:-?} us, direct ${direct:-?} us, ratio ${ratio:-?}x"
    fi
}
if [ -n "$CLOOP" ]; then
    under_shim both "$CLOOP" "$M/v1k" "$D/v1k" 1600 >"$TMP/out" 2>"$TMP/err"
    errs "$TMP/err"
    ratio_check "C loop:" "$TMP/out" 10
fi
# Python: the same, plus Python's own cycle on a local 1 KiB file (its floor). The 10x target
# is checked on the C loop above; Python's interpreter cost (~the local figure) sits inside
# both sides of its ratio, which lands around 10x on a quiet machine (9-15x measured on a
# loaded 2-CPU one), so here the check is that reads are served from the mirror (>= 5x) and
# the figure is reported against the 10x target.
head -c 1024 /dev/zero | tr '\0' y >"$TMP/local1k"
under_shim both "$PY" "$TMP/drv.py" cycle "$M/v1k" "$D/v1k" "$TMP/local1k" >"$TMP/out" 2>"$TMP/err"
errs "$TMP/err"
echo "# cache: Python: a local 1 KiB file cycle (no mount) takes $(field local "$TMP/out") us"
ratio_check "Python:" "$TMP/out" 5
pyr=$(python3 -c "print(float('$(field direct "$TMP/out")') / float('$(field cached "$TMP/out")'))" 2>/dev/null)
if [ -n "$pyr" ] && python3 -c "import sys; sys.exit(not $pyr >= 10)"; then
    echo "# cache: Python: the 10x target is met in this run"
else
    echo "# cache: Python: the 10x target is NOT met in this run (see the figures above)"
fi

# --- server killed and restarted on the same port and store: the watcher is recreated -------
if start_server; then
    RS_PID=$SERVER_PID RS_PORT=$SERVER_PORT RS_STORE=$SERVER_STORE
    B=$(NATS_URL=$SERVER_URL new_bucket) || fail "cache restart: bucket" "cannot create"
    NATS_URL=$SERVER_URL "$KVTOOL" put "$B" cp.r before >/dev/null
    NATS_URL=$SERVER_URL "$KVTOOL" put "$B" cq.r direct >/dev/null
    mkfifo "$TMP/go.fifo"
    NATS_URL=$SERVER_URL ASYA_STATE_LOG=info under_shim both "$PY" "$TMP/drv.py" restart "$M" "$B" "$D/r" \
        <"$TMP/go.fifo" >"$TMP/out" 2>"$TMP/err" &
    drv=$!
    exec 7>"$TMP/go.fifo"
    for _ in $(seq 100); do grep -q READY "$TMP/out" && break; sleep 0.1; done
    kill -9 "$RS_PID"
    wait "$RS_PID" 2>/dev/null
    sleep 0.5
    nats-server -a 127.0.0.1 -p "$RS_PORT" -js -sd "$RS_STORE" >>"$RS_STORE.log" 2>&1 &
    RS_PID=$!
    _LIB_PIDS+=("$RS_PID")
    if wait_port "$RS_PORT" 10; then
        echo go >&7
    else
        fail "cache restart: the server comes back on port $RS_PORT" "$(tail -n 3 "$RS_STORE.log")"
    fi
    exec 7>&-
    wait "$drv"
    errs "$TMP/err"
    grep -h "read cache" "$TMP/err" | sed 's/^/# log: /' | head -n 8
    expect_eq "cache restart: read through the cache before the restart" before \
        "$(field before "$TMP/out")"
    expect_eq "cache restart: updates by kvtool after the restart become visible" yes \
        "$(field visible_after_restart "$TMP/out")"
    ms=$(field after_restart_ms "$TMP/out")
    echo "# cache restart: $(field restart_updates "$TMP/out") kvtool update(s) until the first" \
        "was seen; then a further update visible in $ms ms; cycle before" \
        "$(field before_us "$TMP/out") us (direct $(field before_direct_us "$TMP/out") us)," \
        "after $(field after_us "$TMP/out") us (direct $(field after_direct_us "$TMP/out") us)"
    if [ -n "$ms" ] && python3 -c "import sys; sys.exit(not 0 <= float('$ms') < 100)"; then
        ok "cache restart: once caught up again, an update is visible within 100 ms ($ms ms)"
    else
        fail "cache restart: once caught up again, an update is visible within 100 ms" \
            "$(tr '\n' ' ' <"$TMP/out")"
    fi
    n=$(grep -c "caught up" "$TMP/err")
    if [ "$n" -ge 2 ] && grep -q "watcher dropped" "$TMP/err"; then
        ok "cache restart: the watcher was dropped and a new one caught up ($n catch-ups logged)"
    else
        fail "cache restart: the watcher was dropped and a new one caught up" \
            "$(grep -h 'read cache' "$TMP/err" | tr '\n' ' ')"
    fi
    # Served from the mirror again, not by direct Gets: at least 3x faster than the direct
    # mount measured interleaved in the same process.
    if python3 -c "import sys; sys.exit(not 3 * float('$(field after_us "$TMP/out")') < float('$(field after_direct_us "$TMP/out")'))" 2>/dev/null; then
        ok "cache restart: reads are served from the new mirror (cycle 3x+ faster than direct)"
    else
        fail "cache restart: reads are served from the new mirror" "$(tr '\n' ' ' <"$TMP/out")"
    fi
    kill "$RS_PID" 2>/dev/null
    wait "$RS_PID" 2>/dev/null
else
    fail "cache restart: a private server" "start_server failed"
fi

# Failures are reported by the "not ok" lines; the status of the last kill/wait is not one.
exit 0
