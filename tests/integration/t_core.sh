#!/usr/bin/env bash
# Issue 2, "What it must show" 1-9: unmodified programs (Python, cat, ls, a C program) under
# LD_PRELOAD=$SHIM against the real server; the bucket is always inspected with kvtool, never
# through the shim. Every bucket here is single-replica (exact CAS on nats-server 2.9).
. "$(dirname "$0")/lib.sh"
PROGS=$ROOT/tests/integration/progs

if [ ! -f "$SHIM" ]; then
    # Without the library ld.so would only warn and run the program unshimmed.
    fail "core: the shim is built" "$SHIM is missing"
    exit 1
fi

B=$(new_bucket) || { fail "core: bucket" "cannot create a bucket"; exit 1; }
M=/state/cache
P=cp # STATE_PREFIX

# Runs CMD under the shim with the mount /state/cache -> bucket $B, prefix cp.
shimmed() {
    timeout -k 5 30 env NATS_KV_BUCKET="$B" STATE_PREFIX=$P ASYA_STATE_PROXY_MOUNTS="cache:$M" \
        LD_PRELOAD="$SHIM" "$@"
}
# py SCRIPT ARGS...: Python under the shim; sys.argv[1:] = ARGS.
py() {
    local script=$1
    shift
    shimmed python3 -c "$script" "$@" 2>"$TMP/py.err"
    local rc=$?
    [ -s "$TMP/py.err" ] && sed 's/^/# stderr: /' "$TMP/py.err" | head -n 5 >&2
    return $rc
}
kv() { "$KVTOOL" "$@"; }

# --- 1. writes land as cp.<name>; values put by another client read back -----------------
py 'open(__import__("sys").argv[1], "w").write("hello from python")' "$M/hello.txt"
expect_eq "1: Python open(p,'w') under $M with STATE_PREFIX=cp lands as key cp.hello.txt" \
    "hello from python" "$(kv get "$B" cp.hello.txt 2>&1)"

timeout -k 5 30 env -u ASYA_STATE_PROXY_MOUNTS NATS_KV_BUCKET="$B" STATE_PREFIX=$P STATE_MOUNT=$M \
    LD_PRELOAD="$SHIM" python3 -c 'open("/state/cache/via_state_mount", "w").write("sm")'
expect_eq "1: the same with STATE_MOUNT=$M (no ASYA_STATE_PROXY_MOUNTS)" \
    "sm" "$(kv get "$B" cp.via_state_mount 2>&1)"

kv put "$B" cp.from_other "value from kvtool" >/dev/null
expect_eq "1: a value put by kvtool reads back through cat" \
    "value from kvtool" "$(shimmed cat "$M/from_other" 2>&1)"
expect_eq "1: a value put by kvtool reads back through Python" \
    "value from kvtool" "$(py 'print(open(__import__("sys").argv[1]).read(), end="")' "$M/from_other")"
expect_eq "1: binary mode 'rb' reads the same bytes" "b'value from kvtool'" \
    "$(py 'print(open(__import__("sys").argv[1], "rb").read())' "$M/from_other")"

py 'open(__import__("sys").argv[1], "w").write("spaced")' "$M/we ird.txt"
expect_eq "1: a name outside [A-Za-z0-9_/-.] is escaped in the key (cp.we=20ird.txt)" \
    "spaced" "$(kv get "$B" 'cp.we=20ird.txt' 2>&1)"

# --- 2. missing key ---------------------------------------------------------------------
expect_eq "2: opening a missing key raises FileNotFoundError" "FileNotFoundError ENOENT" \
    "$(py '
import errno, sys
try:
    open(sys.argv[1]).read()
    print("no error")
except OSError as e:
    print(type(e).__name__, errno.errorcode.get(e.errno))' "$M/no_such_key")"
if shimmed cat "$M/no_such_key" >/dev/null 2>&1; then
    fail "2: cat of a missing key fails" "cat succeeded"
else
    ok "2: cat of a missing key fails"
fi

# --- 3. read, another client updates, write: EEXIST at close, the other value stays --------
kv put "$B" cp.k3 original >/dev/null
out=$(py '
import errno, os, subprocess, sys
path, bucket = sys.argv[1], sys.argv[2]
print("read", open(path).read())
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
subprocess.run([os.environ["KVTOOL"], "put", bucket, "cp.k3", "theirs"], env=env,
               check=True, stdout=subprocess.DEVNULL)
try:
    f = open(path, "w")
    f.write("mine")
    print("opened and wrote")
    f.close()
    print("close: no error")
except OSError as e:
    print("close:", type(e).__name__, errno.errorcode.get(e.errno))' "$M/k3" "$B")
echo "$out" | sed 's/^/# /'
expect_eq "3: read, kvtool update, write: FileExistsError (EEXIST) from close" \
    "read original|opened and wrote|close: FileExistsError EEXIST" "$(echo "$out" | paste -sd'|')"
expect_eq "3: the other client's value stays" "theirs" "$(kv get "$B" cp.k3 2>&1)"

# The same from C: close(2) itself returns -1 with errno EEXIST.
if cc -std=gnu11 -Wall -Wextra -Werror -o "$TMP/rw" "$PROGS/rw.c" 2>"$TMP/cc.err"; then
    ok "C: tests/integration/progs/rw.c compiles"
    check "C: open(O_CREAT|O_TRUNC)/write/close all succeed" \
        shimmed "$TMP/rw" write "$M/c_file" "written by C"
    expect_eq "C: ... and the value lands as cp.c_file" "written by C" \
        "$(kv get "$B" cp.c_file 2>&1)"
    kv put "$B" cp.c_other "from kvtool to C" >/dev/null
    expect_eq "C: open/read/close returns the value kvtool put" "from kvtool to C" \
        "$(shimmed "$TMP/rw" read "$M/c_other" 2>&1)"
    out=$(shimmed "$TMP/rw" conflict "$M/c_other" \
        "env -u LD_PRELOAD $KVTOOL put $B cp.c_other changed >/dev/null" 2>&1)
    expect_eq "C: read, kvtool update, write: close() fails with EEXIST, one stderr line says so" \
        "from kvtool to C|asya-state: c_other: not stored|close: EEXIST" \
        "$(echo "$out" | sed 's/\(not stored\).*/\1/' | paste -sd'|')"
    expect_eq "C: after the C conflict kvtool still sees the other value" "changed" \
        "$(kv get "$B" cp.c_other 2>&1)"
else
    fail "C: tests/integration/progs/rw.c compiles" "$(cat "$TMP/cc.err")"
fi

# --- 4. read, then write twice: no false conflict ---------------------------------------
kv put "$B" cp.k4 start >/dev/null
r0=$(kv rev "$B" cp.k4)
expect_eq "4: read then write twice in one process: both commits succeed" "start|ok" \
    "$(py '
import sys
path = sys.argv[1]
print(open(path).read())
with open(path, "w") as f:
    f.write("one")
with open(path, "w") as f:
    f.write("two")
print("ok")' "$M/k4" 2>&1 | paste -sd'|')"
expect_eq "4: the key holds the second write" "two" "$(kv get "$B" cp.k4 2>&1)"
expect_eq "4: the revision advanced by exactly two" "$((r0 + 2))" "$(kv rev "$B" cp.k4 2>&1)"

# --- 5. open(p, "x") ----------------------------------------------------------------------
kv put "$B" cp.k5 existing >/dev/null
expect_eq "5: open(p,'x') on an existing key raises FileExistsError" "FileExistsError EEXIST" \
    "$(py '
import errno, sys
try:
    with open(sys.argv[1], "x") as f:
        f.write("clobber")
    print("no error")
except OSError as e:
    print(type(e).__name__, errno.errorcode.get(e.errno))' "$M/k5")"
expect_eq "5: the existing value is untouched" "existing" "$(kv get "$B" cp.k5 2>&1)"
py 'open(__import__("sys").argv[1], "x").write("fresh")' "$M/k5_new"
expect_eq "5: open(p,'x') on a new key creates it" "fresh" "$(kv get "$B" cp.k5_new 2>&1)"

# --- 6. getxattr user.asya.version ----------------------------------------------------------
kv put "$B" cp.k6 a >/dev/null
kv put "$B" cp.k6 b >/dev/null
x6=$(py 'import os, sys; print(os.getxattr(sys.argv[1], "user.asya.version").decode())' "$M/k6")
expect_eq "6: os.getxattr(p,'user.asya.version') equals kvtool rev" "$(kv rev "$B" cp.k6)" "$x6"
kv put "$B" cp.k6 c >/dev/null
x6=$(py 'import os, sys; print(os.getxattr(sys.argv[1], "user.asya.version").decode())' "$M/k6")
expect_eq "6: after another client's put it is the new revision" "$(kv rev "$B" cp.k6)" "$x6"

# --- 7. exists, stat, listdir, remove, makedirs/isdir -----------------------------------------
kv put "$B" cp.ls/one 1 >/dev/null
kv put "$B" cp.ls/two 22 >/dev/null
kv put "$B" cp.ls/sub/three 333 >/dev/null
kv put "$B" cp.k7 "seven bytes" >/dev/null
out=$(py '
import os, sys
m = sys.argv[1]
print("exists", os.path.exists(m + "/k7"), os.path.exists(m + "/k7_missing"))
print("size", os.stat(m + "/k7").st_size)
print("listdir", sorted(os.listdir(m + "/ls")))
print("isdir", os.path.isdir(m + "/ls/sub"), os.path.isdir(m + "/k7"))
os.remove(m + "/k7")
print("after remove", os.path.exists(m + "/k7"))
os.makedirs(m + "/made/deep")
print("made")' "$M")
echo "$out" | sed 's/^/# /'
line() { echo "$out" | grep "^$1" | head -n 1; }
expect_eq "7: os.path.exists: True for a key, False for a missing one" "exists True False" "$(line exists)"
expect_eq "7: os.stat().st_size is the value's length" "size 11" "$(line size)"
expect_eq "7: os.listdir gives the names one level below" "listdir ['one', 'sub', 'two']" \
    "$(line listdir)"
expect_eq "7: os.path.isdir: True for a key prefix, False for a value" "isdir True False" \
    "$(line isdir)"
expect_eq "7: os.remove, then exists is False" "after remove False" "$(line 'after remove')"
if kv get "$B" cp.k7 >/dev/null 2>&1; then
    fail "7: os.remove deleted the key (kvtool)" "kvtool still finds cp.k7"
else
    ok "7: os.remove deleted the key (kvtool)"
fi
expect_eq "7: os.makedirs succeeded" "made" "$(line made)"
expect_eq "7: os.path.isdir is True in another process after os.makedirs" "True True" \
    "$(py 'import os, sys; print(os.path.isdir(sys.argv[1] + "/made"), os.path.isdir(sys.argv[1] + "/made/deep"))' "$M")"
if kv keys "$B" | grep -qx 'cp.made/deep/'; then
    ok "7: os.makedirs left the marker key cp.made/deep/"
else
    fail "7: os.makedirs left the marker key cp.made/deep/" "keys: $(kv keys "$B" | paste -sd' ')"
fi
expect_eq "7: os.listdir of the mount root decodes escaped names" "True" \
    "$(py 'import os, sys; print("we ird.txt" in os.listdir(sys.argv[1]))' "$M")"
expect_eq "7: ls lists the directory" "one sub two" \
    "$(shimmed ls "$M/ls" 2>&1 | paste -sd' ')"

# --- 8. a program that never touches a mount: no libnats, no socket ---------------------
python3 "$PROGS/silent_listener.py" "$TMP/lport" 60 >"$TMP/listener.out" 2>&1 &
lpid=$!
for _ in $(seq 100); do [ -s "$TMP/lport" ] && break; sleep 0.05; done
lurl=nats://127.0.0.1:$(cat "$TMP/lport")
quiet_env=(NATS_URL="$lurl" NATS_KV_BUCKET="$B" ASYA_STATE_PROXY_MOUNTS="cache:$M")
t0=$(date +%s%N)
got=$(timeout -k 5 10 env "${quiet_env[@]}" LD_PRELOAD="$SHIM" cat /etc/hostname 2>&1)
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "8: cat /etc/hostname under the preload prints the file" "$(cat /etc/hostname)" "$got"
if [ "$ms" -lt 1000 ]; then
    ok "8: ... and returns at once with NATS_URL at a silent listener (${ms} ms)"
else
    fail "8: ... and returns at once with NATS_URL at a silent listener" "took ${ms} ms"
fi
timeout -k 5 30 strace -f -o "$TMP/st.cat" -e trace=connect,openat -E LD_PRELOAD="$SHIM" \
    -E NATS_URL="$lurl" -E NATS_KV_BUCKET="$B" -E ASYA_STATE_PROXY_MOUNTS="cache:$M" \
    cat /etc/hostname >/dev/null 2>&1
timeout -k 5 30 strace -f -o "$TMP/st.py" -e trace=connect,openat -E LD_PRELOAD="$SHIM" \
    -E NATS_URL="$lurl" -E NATS_KV_BUCKET="$B" -E ASYA_STATE_PROXY_MOUNTS="cache:$M" \
    python3 -c 'import os, json; print(json.dumps(sorted(os.listdir("/etc"))[:3]))' >/dev/null 2>&1
for t in cat py; do
    if ! grep -qF "$(basename "$SHIM")" "$TMP/st.$t"; then
        fail "8: strace ($t): the shim was preloaded" "no openat of the shim in the trace"
        continue
    fi
    # Network connects only: a name-service lookup (nscd, systemd-userdb) may connect() to
    # a Unix socket in some environments, and is not ours.
    n_conn=$(grep -E 'connect\(' "$TMP/st.$t" | grep -cE 'AF_INET6?\b')
    n_lib=$(grep -cE 'libnats|libasya-state-kv' "$TMP/st.$t")
    expect_eq "8: strace -f ($t, shim preloaded): no network connect() and no libnats/backend load" \
        "0 connect, 0 loads" "$n_conn connect, $n_lib loads"
done
kill "$lpid" 2>/dev/null
wait "$lpid" 2>/dev/null
expect_eq "8: the silent listener saw no connection" "accepted 0" "$(cat "$TMP/listener.out")"
# Control: the same trace on a program that does touch a mount shows both, so the checks
# above can fail.
timeout -k 5 30 strace -f -o "$TMP/st.mount" -e trace=connect,openat -E LD_PRELOAD="$SHIM" \
    -E NATS_KV_BUCKET="$B" -E STATE_PREFIX=$P -E ASYA_STATE_PROXY_MOUNTS="cache:$M" \
    timeout -k 5 30 cat "$M/hello.txt" >"$TMP/st.mount.out" 2>&1
if grep -q 'libnats' "$TMP/st.mount" && grep -E 'connect\(' "$TMP/st.mount" | grep -qE 'AF_INET6?\b'; then
    ok "8: control: touching a mount loads libnats and connects (the trace can see it)"
else
    fail "8: control: touching a mount loads libnats and connects (the trace can see it)" \
        "libnats: $(grep -c libnats "$TMP/st.mount"), connect: $(grep -c 'connect(' "$TMP/st.mount")"
fi

# --- 9. four processes, 100 increments each, released by a barrier ---------------------
kv put "$B" cp.counter 0 >/dev/null
rm -f "$TMP/go"
pids=()
for w in 1 2 3 4; do
    timeout -k 5 180 env NATS_KV_BUCKET="$B" STATE_PREFIX=$P ASYA_STATE_PROXY_MOUNTS="cache:$M" \
        LD_PRELOAD="$SHIM" python3 "$PROGS/counter_worker.py" "$M/counter" 100 "$TMP/go" \
        >"$TMP/w$w.out" 2>"$TMP/w$w.err" &
    pids+=($!)
done
sleep 0.5 # every worker is up and polling the barrier
t0=$(date +%s%N)
touch "$TMP/go"
wrc=0
for p in "${pids[@]}"; do wait "$p" || wrc=$?; done
ms=$((($(date +%s%N) - t0) / 1000000))
conflicts=$(cat "$TMP"/w?.out | awk '$1 == "conflicts" {s += $2; n++} END {print s + 0, n + 0}')
echo "# 9: 4 workers x 100 increments in ${ms} ms; conflicts, workers reporting: $conflicts"
[ "$wrc" -ne 0 ] && { echo "# 9: a worker exited $wrc:"; tail -n 2 "$TMP"/w?.err | sed 's/^/# /'; }
expect_eq "9: four workers x 100 read-modify-write increments: the counter is exactly 400" \
    400 "$(kv get "$B" cp.counter 2>&1)"
expect_eq "9: all four workers finished" "0 4" "$wrc ${conflicts#* }"
if [ "${conflicts%% *}" -ge 1 ]; then
    ok "9: conflicts were seen and retried (${conflicts%% *} FileExistsError)"
else
    fail "9: conflicts were seen and retried" "no worker reported a conflict"
fi
