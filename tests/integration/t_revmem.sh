#!/usr/bin/env bash
# t_revmem.sh: the revision memory is bounded (ASYA_STATE_REVMEM_MAX) and an evicted memory is
# a conflict, never a blind put (kv/revmem.c; issue 13 case 9): the sidecar with a bound of
# 1,000 entries, sidecar_revmem.py does the requests and measures its VmRSS.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

[ -x "$ASYA" ] || { fail "revmem: build" "$ASYA is missing (run make)"; exit 1; }
B=$(new_bucket) || exit 1
SOCK=$TMP/revmem.sock PREFIX=rm BUCKET=$B BOUND=${REVMEM_BOUND:-1000} GETS=${REVMEM_GETS:-100000}
CONNECTOR_SOCKET=$SOCK NATS_KV_BUCKET=$B STATE_PREFIX=$PREFIX ASYA_STATE_REVMEM_MAX=$BOUND \
    "$ASYA" serve >"$TMP/serve.log" 2>&1 &
PID=$!
_LIB_PIDS+=("$PID")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
export SOCK PID BOUND GETS PREFIX BUCKET KVTOOL NATS_URL
python3 "$HERE/sidecar_revmem.py"
kill -TERM "$PID"
wait "$PID"
expect_eq "revmem: the sidecar exits 0 on SIGTERM" 0 "$?"

# ---- the shim: a thread's read evicted, then its write; VmRSS over many reads ----------------
B2=$(new_bucket) || exit 1
export B2
SHIM_GETS=${REVMEM_SHIM_GETS:-20000}
PY=$(python3 -c 'import sys; print(sys.executable)')
out=$(NATS_KV_BUCKET=$B2 STATE_MOUNT=/state/rm STATE_PREFIX=rm ASYA_STATE_REVMEM_MAX=$BOUND \
      timeout -k 5 120 env LD_PRELOAD="$SHIM" "$PY" - "$BOUND" "$SHIM_GETS" <<'PY' 2>&1
import os, subprocess, sys, threading
bound, gets = int(sys.argv[1]), int(sys.argv[2])
P = "/state/rm/a"
def read_missing(names):
    for n in names:
        try:
            open(n).close()
        except FileNotFoundError:
            pass
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
with open(P, "w") as f:
    f.write("v1")
base = open(P).read()                      # this thread's read of A
read_missing([f"/state/rm/other{i}" for i in range(2 * bound)])   # ... evicted
subprocess.run([os.environ["KVTOOL"], "put", os.environ["B2"], "rm.a", "theirs"],
               check=True, capture_output=True, env={**os.environ, "LD_PRELOAD": ""})
try:
    with open(P, "w") as f:
        f.write(base + " mine")
    print("blind-put")
except FileExistsError:
    print("conflict")
print(open(P).read())                      # the retry's read
with open(P, "w") as f:
    f.write("mine after theirs")
names = [f"/state/rm/miss/{i}" for i in range(gets)]
tenth = gets // 10
ts = [threading.Thread(target=read_missing, args=(names[i:tenth:2],)) for i in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
warm = rss()
ts = [threading.Thread(target=read_missing, args=(names[tenth + i::2],)) for i in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
after = rss()
print(f"# shim VmRSS: {warm} KiB after {tenth} opens of missing files, {after} KiB after "
      f"{gets} (2 threads, bound {bound} entries)", file=sys.stderr)
print("bounded" if after - warm < 8 * 1024 else f"grew {warm} -> {after} KiB")
PY
)
grep '^# ' <<<"$out"
expect_eq "revmem: shim: a write after the thread's read was evicted is EEXIST, A kept, the retry stored, VmRSS bounded" \
    "conflict theirs bounded" "$(grep -v '^# \|^asya-state: a: not stored' <<<"$out" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "revmem: shim: the bucket holds the retry's value" "mine after theirs" \
    "$("$KVTOOL" get "$B2" rm.a)"
