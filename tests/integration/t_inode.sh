#!/usr/bin/env bash
# t_inode.sh: one open file per key in a process (shim/inode.h, issue 11). inode.py runs on a
# local directory and on a mount: every answer must be the local file's (two descriptors of
# one file, shared mappings after close, rename and unlink of an open file, O_CREAT without a
# write, a created file seen before its first close, temporary files). The bytes that land
# are then read by an independent client (kvtool), and real programs (bash, git) run in a
# mount.
. "$(dirname "$0")/lib.sh"

B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/ino STATE_PREFIX=in
PY=$(python3 -c 'import sys; print(sys.executable)')
run() { timeout -k 5 120 env LD_PRELOAD="$SHIM" "$@"; }

mkdir -p "$TMP/local"
"$PY" "$ROOT/tests/integration/inode.py" "$TMP/local" >"$TMP/local.out" 2>&1
run "$PY" "$ROOT/tests/integration/inode.py" /state/ino >"$TMP/mount.out" 2>"$TMP/mount.err"
n=$(wc -l <"$TMP/local.out")
if [ "$n" -ge 16 ]; then
    ok "inode: the local run printed all $n checks"
else
    fail "inode: the local run printed every check" "$n lines: $(head -c 300 "$TMP/local.out")"
fi
while IFS='|' read -r name want; do
    got=$(grep -m1 "^$name|" "$TMP/mount.out" | cut -d'|' -f2-)
    expect_eq "inode: $name on a mount answers as on a local file" "$want" "$got"
done <"$TMP/local.out"
check "inode: nothing on stderr" test ! -s "$TMP/mount.err"

# The bytes in the bucket, read by another client.
expect_eq "inode: two appending descriptors: the bucket holds both writes" \
    "$(printf 'orig\nA\nB\n' | od -c)" "$($KVTOOL get "$B" in.ap | od -c)"
expect_eq "inode: a shared mapping written after close: the bucket holds what munmap left" \
    "MAPped!!" "$($KVTOOL get "$B" in.mm)"
expect_eq "inode: an open file renamed: its bytes land under the new name only" \
    "after|" "$($KVTOOL get "$B" in.rn2)|$($KVTOOL get "$B" in.rn 2>/dev/null)"
expect_eq "inode: an open file unlinked is not resurrected at close" \
    "" "$($KVTOOL get "$B" in.ul 2>/dev/null)"
expect_eq "inode: a file opened \"w\" over a value, renamed while open: only the new name, new bytes" \
    "new|" "$($KVTOOL get "$B" in.tn5)|$($KVTOOL get "$B" in.tn4 2>/dev/null)"
expect_eq "inode: a new file opened \"w\", unlinked while open: no key" \
    "" "$($KVTOOL get "$B" in.tn1 2>/dev/null)"
expect_eq "inode: truncate by name of open files: the bucket holds the cut bytes" "he|XXX|XY" \
    "$($KVTOOL get "$B" in.tb1)|$($KVTOOL get "$B" in.tb2)|$($KVTOOL get "$B" in.tb3)"
expect_eq "inode: close(open(p, O_CREAT|O_RDONLY)) creates an empty value" \
    "0" "$($KVTOOL get "$B" in.lock1 | wc -c)"
expect_eq "inode: temporary files leave no key behind" \
    "" "$($KVTOOL keys "$B" 2>/dev/null | grep -E '^in\.tmp' | head -3)"

# Two descriptors of one file: a close that returns 0 has landed its bytes, whatever a later
# close meets (another writer in between: its conflict cannot take them back).
out=$(run "$PY" - "$KVTOOL" "$B" <<'PY' 2>"$TMP/shared.err"
import os, subprocess, sys
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
kv = lambda *a: subprocess.run([sys.argv[1], *a], env=env, capture_output=True, text=True).stdout
a = os.open("/state/ino/sh2", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
b = os.open("/state/ino/sh2", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(a, b"A-acked\n")
os.close(a)
landed = kv("get", sys.argv[2], "in.sh2")
kv("put", sys.argv[2], "in.sh2", "other")
os.write(b, b"B\n")
try:
    os.close(b)
    r = "close b ok"
except FileExistsError:
    r = "close b EEXIST"
print(repr(landed), r)
PY
)
expect_eq "inode: two descriptors, the first closed (0), another writer, the second closed" \
    "'A-acked\n' close b EEXIST" "$out"

# bash: two appending redirections of one file in one shell.
out=$(run bash -c 'echo orig >/state/ino/sh; exec 3>>/state/ino/sh 4>>/state/ino/sh
    echo A >&3; echo B >&4; exec 3>&- 4>&-; cat /state/ino/sh' | paste -sd,)
expect_eq "inode: bash: exec 3>>f 4>>f keeps both lines, as a local disk does" "orig,A,B" "$out"
expect_eq "inode: bash: ... and the bucket holds them" \
    "orig,A,B" "$($KVTOOL get "$B" in.sh | paste -sd,)"

# git: init, add and commit inside a mount (lock files are created, chmod-ed and renamed
# while open).
if command -v git >/dev/null; then
    out=$(cd / && run bash -c 'set -e; mkdir -p /state/ino/repo; cd /state/ino/repo
        git init -q . && git config user.email t@example.com && git config user.name t
        echo hello >README && git add README && git commit -qm first && git log --format=%s' 2>&1)
    expect_eq "inode: git init, add and commit in a mount" "first" "$out"
fi

# Races on one key's open file (progs/inode_race.c), each interleaving forced by a test-only
# preload after the shim (progs/inject.c: a delay or a failure in one thread of the shim's own
# calls to libc). The bytes that land are read with kvtool.
PROGS=$ROOT/tests/integration/progs
if ${CC:-cc} -std=gnu11 -O1 -Wall -Wextra -Werror -fPIC -shared -o "$TMP/inject.so" \
        "$PROGS/inject.c" -ldl 2>"$TMP/cc.err" &&
    ${CC:-cc} -std=gnu11 -O1 -Wall -Wextra -Werror -pthread -o "$TMP/inode_race" \
        "$PROGS/inode_race.c" -ldl 2>>"$TMP/cc.err"; then
    race() { timeout -k 5 60 env LD_PRELOAD="$SHIM $TMP/inject.so" "$TMP/inode_race" "$@"; }

    # 1. a dup in one thread while another opens the key again and moves its bytes to the
    # master: the copy made by the kernel before the move is moved too
    $KVTOOL put "$B" in.race_dup base >/dev/null
    expect_eq "inode: a dup racing a second open: the copy writes into the shared buffer" \
        "dup|second descriptor reads DUPe, close 0" "$(race dup /state/ino/race_dup 2>&1)"
    expect_eq "inode: ... and the bucket holds its write" "DUPe" "$($KVTOOL get "$B" in.race_dup)"

    # 2. the move to the master fails half-way (a record's second descriptor): nothing moved
    $KVTOOL put "$B" in.race_split base >/dev/null
    expect_eq "inode: a move to the master failing half-way moves nothing (both writes kept)" \
        "split|second open EBUSY, a reads XYse, close 0 0" \
        "$(ASYA_STATE_BUFFER=memfd race split /state/ino/race_split 2>/dev/null)"
    expect_eq "inode: ... and the bucket holds both" "XYse" "$($KVTOOL get "$B" in.race_split)"

    # ... and closes the shim does see, by close_range() and syscall(SYS_close_range), commit
    expect_eq "inode: close_range and syscall(SYS_close_range) of written files succeed" \
        "closerange|0 0" "$(race closerange /state/ino/race_cr1 /state/ino/race_cr2 2>/dev/null)"
    expect_eq "inode: ... and each committed" "by close_range|by syscall" \
        "$($KVTOOL get "$B" in.race_cr1)|$($KVTOOL get "$B" in.race_cr2)"

    # 4. a shared mapping (its descriptor closed) unmapped a page at a time, the middle one
    # first; a mapping moved and grown by mremap, unmapped at its new address: the munmap that
    # takes the last byte commits (the program then dies by SIGKILL: nothing at exit)
    bytes_at() { python3 -c 'import sys; d = sys.stdin.buffer.read(); p = int(sys.argv[1])
print(len(d) // p, d[:5].rstrip(b"\0").decode(), *(d[i * p:i * p + 1].decode() for i in (1, 2) if len(d) > i * p))' "$(getconf PAGESIZE)"; }
    $KVTOOL put "$B" in.race_unmap base >/dev/null
    expect_eq "inode: a mapping unmapped in pieces: munmap succeeds" "unmap|munmap 0 0 0" \
        "$(race unmap /state/ino/race_unmap 2>/dev/null)"
    expect_eq "inode: ... the last piece's munmap committed every page's write" "3 Aase B C" \
        "$($KVTOOL get "$B" in.race_unmap | bytes_at)"
    $KVTOOL put "$B" in.race_mremap base >/dev/null
    expect_eq "inode: a mapping moved by mremap: munmap at its new address succeeds" \
        "mremap|moved yes, munmap 0" "$(race mremap /state/ino/race_mremap 2>/dev/null)"
    expect_eq "inode: ... and committed what was written there" "2 MOVED T" \
        "$($KVTOOL get "$B" in.race_mremap | bytes_at)"

    # 3. a written file closed by a raw system call (no libc: no hook sees it), its number
    # reused by a local file the program then closes: one stderr line, and the local file's
    # bytes never become the key's value (the key keeps its old one: the memfd is gone)
    $KVTOOL put "$B" in.race_raw base >/dev/null
    echo LOCALDATA >"$TMP/localdata"
    out=$(ASYA_STATE_BUFFER=memfd race rawclose /state/ino/race_raw "$TMP/localdata" 2>"$TMP/raw.err")
    expect_eq "inode: a raw close, the number reused by a local file: its close succeeds" \
        "rawclose|number reused yes, close 0" "$out"
    expect_eq "inode: ... the key keeps its value (never the local file's bytes)" "base" \
        "$($KVTOOL get "$B" in.race_raw)"
    expect_eq "inode: ... and one stderr line says the bytes are lost" "1" \
        "$(grep -c 'race_raw: descriptor [0-9]* was closed without the shim seeing it.*lost' "$TMP/raw.err")"

    # 5. stat of an open file whose descriptor another thread closes, its number reused by a
    # local file of another size meanwhile: the key's size, never the local file's
    $KVTOOL put "$B" in.race_size 12345 >/dev/null
    head -c 7777 /dev/zero >"$TMP/local7777"
    expect_eq "inode: stat while the descriptor is closed and its number reused: the key's size" \
        "size|every stat gave the key's size" \
        "$(ASYA_STATE_BUFFER=memfd race size /state/ino/race_size "$TMP/local7777" 20 2>/dev/null)"

    # 6. a stat of an open file paused between its two looks at it, a commit of that file
    # starting in the pause and waiting on a stopped server (a private one), and a read of
    # another open mount file in a third thread: the read never waits for the commit
    if start_server; then
        $KVTOOL -s "$SERVER_URL" bucket-add stall >/dev/null
        $KVTOOL -s "$SERVER_URL" put stall k base >/dev/null
        $KVTOOL -s "$SERVER_URL" put stall o other >/dev/null
        expect_eq "inode: a commit waiting on the server stalls no other file's read" \
            "stall|reads stalled by another file's commit: 0 of 2, close 0" \
            "$(NATS_URL=$SERVER_URL NATS_KV_BUCKET=stall STATE_PREFIX= race stall \
                /state/ino/k /state/ino/o "$SERVER_PID" 2 2>/dev/null)"
        stop_server "$SERVER_PID"
    else
        fail "inode: stall: private server" "cannot start nats-server"
    fi
else
    fail "inode: progs/inject.c and progs/inode_race.c compile" "$(head -n 3 "$TMP/cc.err")"
fi
