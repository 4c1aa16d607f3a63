#!/usr/bin/env bash
# t_cas.sh: no interleaving of reads and commits in one process loses an update (issue 13):
# a read in one thread and the write in another (asyncio with run_in_executor), and threads
# each doing their own read-modify-write, end exact; the value is read back by kvtool.
. "$(dirname "$0")/lib.sh"

B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/cas STATE_PREFIX=cas
PY=$(python3 -c 'import sys; print(sys.executable)')
run() { timeout -k 5 120 env LD_PRELOAD="$SHIM" "$@"; }

out=$(run "$PY" "$ROOT/tests/integration/cas_threads.py" /state/cas/ctr 8 50 2>"$TMP/ctr.err")
expect_eq "cas: 8 asyncio tasks x 50, read in the loop, write in an executor: none lost" \
    "400 400" "$out"
# a conflict at close is said on stderr (programs that ignore close's error, shells, would
# lose the write silently), once per file: a retry loop's conflicts are its own to handle
expect_eq "cas: ... the first conflict at close said on stderr, once, naming the file" \
    "1|1" "$(grep -c 'ctr: not stored: another writer changed it' "$TMP/ctr.err")|$(grep -c . "$TMP/ctr.err")"
expect_eq "cas: ... and the bucket holds 400" "400" "$($KVTOOL get "$B" cas.ctr)"

out=$(run "$PY" - <<'PY' 2>"$TMP/ctr2.err"
import threading
P = "/state/cas/ctr2"
with open(P, "w") as f:
    f.write("0")
acked = [0]
lock = threading.Lock()
def worker():
    for _ in range(50):
        while True:
            try:
                with open(P, "r+") as f:
                    n = int(f.read())
                    f.seek(0); f.truncate(); f.write(str(n + 1))
                with lock:
                    acked[0] += 1
                break
            except FileExistsError:
                continue
ts = [threading.Thread(target=worker) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(acked[0], open(P).read())
PY
)
expect_eq "cas: 8 threads x 50 read-modify-write with r+: none lost" "400 400" "$out"

# A failed write, truncate or commit poisons the open file: its close returns the error and
# commits nothing; the old value stays (issue 13). The refusal says so in one stderr line.
out=$(run "$PY" - "$KVTOOL" "$B" <<'PY' 2>"$TMP/poison.err"
import errno, os, subprocess, sys
kvtool, bucket = sys.argv[1], sys.argv[2]
P = "/state/cas/poison"
def err(fn):
    try:
        fn(); return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
with open(P, "w") as f:
    f.write("old value")
fd = os.open(P, os.O_WRONLY | os.O_TRUNC)
a = err(lambda: os.write(fd, b"x" * (65 << 20)))
b = err(lambda: os.close(fd))
c = open(P).read()
fd = os.open(P, os.O_RDWR)
os.read(fd, 100)
subprocess.run([kvtool, "put", bucket, "cas.poison", "other"], check=True,
               stdout=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
os.write(fd, b"!")
d = err(lambda: os.fsync(fd))
e = err(lambda: os.close(fd))
print(a, b, c, d, e, open(P).read())
PY
)
expect_eq "cas: a 65 MiB write fails at write() and at close, the old value stays; a conflict at fsync fails the close too, nothing more committed" \
    "EFBIG EFBIG old value EEXIST EEXIST other" "$out"
expect_eq "cas: the refused write says so in one stderr line" 1 \
    "$(grep -c 'write refused: value larger than the bucket or server allows' "$TMP/poison.err")"

# An open file renamed after another process updated it: the rename carries the update to
# the new name, and the stale open file's commit there conflicts instead of overwriting it.
out=$(run "$PY" - "$KVTOOL" "$B" <<'PY' 2>"$TMP/rb.err"
import os, subprocess, sys
kvtool, bucket = sys.argv[1], sys.argv[2]
with open("/state/cas/ra", "w") as f:
    f.write("mine")
fd = os.open("/state/cas/ra", os.O_RDWR)
os.read(fd, 100)
subprocess.run([kvtool, "put", bucket, "cas.ra", "theirs"], check=True, stdout=subprocess.DEVNULL,
               env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
os.rename("/state/cas/ra", "/state/cas/rb")
os.write(fd, b"!")
try:
    os.close(fd)
    r = "close ok"
except FileExistsError:
    r = "close EEXIST"
print(r, open("/state/cas/rb").read())
PY
)
expect_eq "cas: a stale open file renamed: its commit under the new name conflicts, the update kept" \
    "close EEXIST theirs" "$out"
expect_eq "cas: ... and stderr says so, naming the new name" 1 \
    "$(grep -c '^asya-state: rb: not stored' "$TMP/rb.err")"
