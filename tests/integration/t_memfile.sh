#!/usr/bin/env bash
# t_memfile.sh: in-memory mount files (shim/mem.h, issue 5). The same Python script
# (memfile.py: reads, seeks, positional and vector I/O, access modes, O_APPEND, truncate,
# mmap, fork, inheritance, /proc reopen, dup, SCM_RIGHTS, fadvise, a large value) runs on a
# local directory and on a mount: every answer must be the local file's, but flock's, which
# fails with ENOLCK on a mount (shim/lock.c; t_locks.sh tests locks in full). A raw system
# call, which no hook sees, must fail loudly on an in-memory file. ASYA_STATE_BUFFER=memfd
# turns them off.
. "$(dirname "$0")/lib.sh"

B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/mem STATE_PREFIX=mf
PY=$(python3 -c 'import sys; print(sys.executable)')
PROGS=$ROOT/tests/integration/progs
run() { timeout -k 5 60 env LD_PRELOAD="$SHIM" "$@"; }

mkdir -p "$TMP/local"
"$PY" "$ROOT/tests/integration/memfile.py" "$TMP/local" >"$TMP/local.out" 2>&1
run "$PY" "$ROOT/tests/integration/memfile.py" /state/mem >"$TMP/mount.out" 2>"$TMP/mount.err"
grep -v '^=' "$TMP/local.out" >"$TMP/local.cmp"
grep -v '^=' "$TMP/mount.out" >"$TMP/mount.cmp"
n=$(wc -l <"$TMP/local.cmp")
if [ "$n" -ge 16 ]; then
    ok "memfile: the local run printed all $n checks"
else
    fail "memfile: the local run printed every check" "$n lines: $(head -c 300 "$TMP/local.out")"
fi
while IFS='|' read -r name want; do
    got=$(grep -m1 "^$name|" "$TMP/mount.cmp" | cut -d'|' -f2-)
    expect_eq "memfile: $name on a mount answers as on a local file" "$want" "$got"
done <"$TMP/local.cmp"
LOCKWARN='locks on mount files fail with ENOLCK'
check "memfile: nothing on stderr but the lock warning" \
    test -z "$(grep -v "$LOCKWARN" "$TMP/mount.err")"
expect_eq "memfile: the lock warning is logged once" 1 "$(grep -c "$LOCKWARN" "$TMP/mount.err")"
expect_eq "memfile: flock on a local file locks" "locked, unlocked, b'0123456789'" \
    "$(grep '^=locked|' "$TMP/local.out" | cut -d'|' -f2)"
expect_eq "memfile: flock on a mount file fails with ENOLCK; the unlock succeeds" \
    "OSError ENOLCK, unlocked, b'0123456789'" \
    "$(grep '^=locked|' "$TMP/mount.out" | cut -d'|' -f2)"
expect_eq "memfile: an in-memory file's descriptor is a placeholder of an empty memfd" \
    "/memfd:asya-state (deleted)" "$(grep '^=link|' "$TMP/mount.out" | cut -d'|' -f2)"
expect_eq "memfile: the committed values equal the local files'" \
    "$(cat "$TMP/local/w1" "$TMP/local/ap" "$TMP/local/py" "$TMP/local/mm" | od -c)" \
    "$(for k in w1 ap py mm; do $KVTOOL get "$B" "mf.$k"; done | od -c)"

# C probes (progs/memprobe.c).
MP=$TMP/memprobe
if ${CC:-cc} -O2 -pthread -Wall -Wextra -Werror -o "$MP" "$PROGS/memprobe.c" 2>"$TMP/cc.err"; then
    # A raw system call reaches the placeholder: EBADF, never wrong bytes.
    expect_eq "memfile: a raw read(2) the shim cannot see fails with EBADF; libc's read works" \
        "raw: errno EBADF|libc: 0123456789" "$(run "$MP" raw /state/mem/base | paste -sd'|')"
    expect_eq "memfile: with ASYA_STATE_BUFFER=memfd the raw read gets the bytes" \
        "raw: 10 bytes|libc: 0123456789" \
        "$(ASYA_STATE_BUFFER=memfd run "$MP" raw /state/mem/base | paste -sd'|')"
    # Descriptors 0-2 are used by stdio past the hooks: a file opened there is a memfd.
    run "$MP" stdout /state/mem/viastdout
    rc=$?
    expect_eq "memfile: a state file opened as stdout keeps what printf wrote" \
        "rc 0|through stdio 1" "rc $rc|$($KVTOOL get "$B" mf.viastdout)"
    # closefrom closes behind the descriptor table's back: the number's next file is local.
    expect_eq "memfile: after closefrom, a local file on the same number reads its own bytes" \
        "same number 1, read: $(cat /etc/hostname)" "$(run "$MP" closefrom /state/mem/base)"
    run "$MP" closeall /state/mem/closeall
    rc=$?
    expect_eq "memfile: closefrom(-1) commits an open file as close does" \
        "rc 0|by closefrom" "rc $rc|$($KVTOOL get "$B" mf.closeall)"
    # A fork while another thread commits: no child inherits a held buffer lock.
    expect_eq "memfile: 300 forks while a thread fsyncs: no child hangs in close" \
        "forks 300 hung 0" "$(T=120 run "$MP" forkclose /state/mem/forked 300)"
else
    fail "memfile: progs/memprobe.c compiles" "$(cat "$TMP/cc.err")"
fi

# ASYA_STATE_BUFFER=memfd: every descriptor is a memfd at once; the data answers stay right.
ASYA_STATE_BUFFER=memfd run "$PY" "$ROOT/tests/integration/memfile.py" /state/mem >"$TMP/memfd.out" 2>&1
for name in positional writes seeks duplicated forked inherited reopened mapped; do
    expect_eq "memfile: ASYA_STATE_BUFFER=memfd: $name as on a local file" \
        "$(grep -m1 "^$name|" "$TMP/local.cmp")" "$(grep -m1 "^$name|" "$TMP/memfd.out")"
done
expect_eq "memfile: ASYA_STATE_BUFFER=memfd: the descriptor is the memfd itself" \
    "/memfd:asya-state (deleted)" "$(grep '^=link|' "$TMP/memfd.out" | cut -d'|' -f2)"

# Threads sharing one in-memory descriptor: concurrent reads on the shared offset hand out
# every byte exactly once, as the kernel does, while another thread forks (which settles the
# file mid-read) and a third opens and closes files of its own.
out=$(run "$PY" - <<'PY' 2>&1
import os, threading
data = bytes(range(256)) * 64                      # 16 KiB, every byte value 64 times
with open("/state/mem/shared", "wb") as f:
    f.write(data)
rounds, bad = 30, []
for r in range(rounds):
    fd = os.open("/state/mem/shared", os.O_RDONLY)
    got = [[] for _ in range(4)]
    def reader(i):
        while True:
            b = os.read(fd, 97)
            if not b:
                return
            got[i].append(b)
    def forker():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    def churn():
        for k in range(5):
            with open(f"/state/mem/churn{k}", "w") as f:
                f.write(str(k))
    ts = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    ts += [threading.Thread(target=forker if r % 2 else churn)]
    for t in ts: t.start()
    for t in ts: t.join()
    os.close(fd)
    allb = b"".join(b"".join(g) for g in got)
    if len(allb) != len(data) or sorted(allb) != sorted(data):
        bad.append(r)
print("rounds", rounds, "bad", bad)
PY
)
expect_eq "memfile: 4 threads reading one descriptor (and a fork) get every byte once" \
    "rounds 30 bad []" "$out"

# Shell and coreutils through in-memory files: redirections (dup2), read builtin, pipes.
out=$(run bash -c 'printf "a\nb\nc\n" > /state/mem/sh; { read -r x; cat; } < /state/mem/sh |
    tr "\n" ","; exec 3</state/mem/sh; read -r y <&3; echo "|$y"; exec 3<&-')
expect_eq "memfile: bash: redirection, read builtin then cat on the shared offset, exec 3<" \
    "b,c,|a" "$out"

