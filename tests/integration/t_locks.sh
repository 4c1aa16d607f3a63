#!/usr/bin/env bash
# t_locks.sh: advisory locks on mount files (issue 11, case 2; shim/lock.c). NATS holds no
# lease yet, so every lock or lock test on a mount descriptor fails with ENOLCK (fcntl record
# and OFD locks, flock, lockf, and the same through syscall()) and an unlock succeeds; a local
# file's locks stay the kernel's. SQLite, which locks, must never report a transaction
# committed that the database does not hold: two processes inserting at once, and one alone.
. "$(dirname "$0")/lib.sh"

if [ ! -f "$SHIM" ]; then
    fail "locks: the shim is built" "$SHIM is missing"
    exit 1
fi
B=$(new_bucket) || { fail "locks: bucket" "cannot create a bucket"; exit 1; }
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/lk STATE_PREFIX=lk
run() { timeout -k 5 60 env LD_PRELOAD="$SHIM" "$@"; }

# Every lock call on a mount file and on a local file, in one process: "NAME|ERRNO or ok".
mkdir -p "$TMP/local"
run python3 - /state/lk/f "$TMP/local/f" >"$TMP/calls.out" 2>"$TMP/calls.err" <<'PY'
import ctypes, errno, fcntl, os, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
F_OFD_GETLK, F_OFD_SETLK = getattr(fcntl, "F_OFD_GETLK", 36), getattr(fcntl, "F_OFD_SETLK", 37)
SYS_fcntl, SYS_flock = 72, 73  # x86_64
F_ULOCK, F_LOCK, F_TLOCK, F_TEST = 0, 1, 2, 3

def fl(t):  # struct flock: short l_type, l_whence; off_t l_start, l_len; pid_t l_pid
    return struct.pack("hhqqi4x", t, os.SEEK_SET, 0, 0, 0)

def c_call(fn, *a):
    ctypes.set_errno(0)
    if fn(*a) != 0:
        raise OSError(ctypes.get_errno(), "")

def probe(where, path):
    with open(path, "wb") as f:
        f.write(b"0123456789")
    fd = os.open(path, os.O_RDWR)
    ro = os.open(path, os.O_RDONLY)
    buf = ctypes.create_string_buffer(fl(fcntl.F_WRLCK))
    calls = [
        ("flock LOCK_EX", lambda: fcntl.flock(fd, fcntl.LOCK_EX)),
        ("flock LOCK_SH+LOCK_NB", lambda: fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)),
        ("flock LOCK_UN", lambda: fcntl.flock(fd, fcntl.LOCK_UN)),
        ("flock bad op", lambda: fcntl.flock(fd, fcntl.LOCK_NB)),
        ("python lockf LOCK_EX", lambda: fcntl.lockf(fd, fcntl.LOCK_EX)),
        ("python lockf LOCK_UN", lambda: fcntl.lockf(fd, fcntl.LOCK_UN)),
        ("F_SETLK F_WRLCK", lambda: fcntl.fcntl(fd, fcntl.F_SETLK, fl(fcntl.F_WRLCK))),
        ("F_SETLKW F_RDLCK", lambda: fcntl.fcntl(fd, fcntl.F_SETLKW, fl(fcntl.F_RDLCK))),
        ("F_SETLK F_UNLCK", lambda: fcntl.fcntl(fd, fcntl.F_SETLK, fl(fcntl.F_UNLCK))),
        ("F_SETLK F_WRLCK read-only", lambda: fcntl.fcntl(ro, fcntl.F_SETLK, fl(fcntl.F_WRLCK))),
        ("F_SETLK bad type", lambda: fcntl.fcntl(fd, fcntl.F_SETLK, fl(9))),
        ("F_GETLK", lambda: fcntl.fcntl(fd, fcntl.F_GETLK, fl(fcntl.F_WRLCK))),
        ("F_OFD_SETLK F_WRLCK", lambda: fcntl.fcntl(fd, F_OFD_SETLK, fl(fcntl.F_WRLCK))),
        ("F_OFD_SETLK F_UNLCK", lambda: fcntl.fcntl(fd, F_OFD_SETLK, fl(fcntl.F_UNLCK))),
        ("F_OFD_GETLK", lambda: fcntl.fcntl(fd, F_OFD_GETLK, fl(fcntl.F_WRLCK))),
        ("lockf F_TLOCK", lambda: c_call(libc.lockf, fd, F_TLOCK, ctypes.c_long(0))),
        ("lockf F_TEST", lambda: c_call(libc.lockf, fd, F_TEST, ctypes.c_long(0))),
        ("lockf F_ULOCK", lambda: c_call(libc.lockf, fd, F_ULOCK, ctypes.c_long(0))),
        ("lockf bad cmd", lambda: c_call(libc.lockf, fd, 9, ctypes.c_long(0))),
        ("syscall flock LOCK_EX", lambda: c_call(libc.syscall, SYS_flock, fd, fcntl.LOCK_EX)),
        ("syscall flock LOCK_UN", lambda: c_call(libc.syscall, SYS_flock, fd, fcntl.LOCK_UN)),
        ("syscall fcntl F_SETLK", lambda: c_call(libc.syscall, SYS_fcntl, fd, fcntl.F_SETLK,
                                                 buf)),
    ]
    for name, fn in calls:
        try:
            fn()
            r = "ok"
        except OSError as e:
            r = errno.errorcode.get(e.errno, str(e.errno))
        print(f"{where} {name}|{r}")
    print(f"{where} reads on|{os.pread(fd, 10, 0)!r}")
    os.close(ro)
    os.close(fd)

probe("mount", sys.argv[1])
probe("local", sys.argv[2])
PY
# name|mount|local: the local answer is the kernel's (the lock is free: only this process).
while IFS='|' read -r name mount local; do
    expect_eq "locks: $name: mount $mount, local $local" "$mount|$local" \
        "$(grep -m1 "^mount $name|" "$TMP/calls.out" | cut -d'|' -f2)|$(grep -m1 "^local $name|" "$TMP/calls.out" | cut -d'|' -f2)"
done <<'EOF'
flock LOCK_EX|ENOLCK|ok
flock LOCK_SH+LOCK_NB|ENOLCK|ok
flock LOCK_UN|ok|ok
flock bad op|EINVAL|EINVAL
python lockf LOCK_EX|ENOLCK|ok
python lockf LOCK_UN|ok|ok
F_SETLK F_WRLCK|ENOLCK|ok
F_SETLKW F_RDLCK|ENOLCK|ok
F_SETLK F_UNLCK|ok|ok
F_SETLK F_WRLCK read-only|EBADF|EBADF
F_SETLK bad type|EINVAL|EINVAL
F_GETLK|ENOLCK|ok
F_OFD_SETLK F_WRLCK|ENOLCK|ok
F_OFD_SETLK F_UNLCK|ok|ok
F_OFD_GETLK|ENOLCK|ok
lockf F_TLOCK|ENOLCK|ok
lockf F_TEST|ENOLCK|ok
lockf F_ULOCK|ok|ok
lockf bad cmd|EINVAL|EINVAL
syscall flock LOCK_EX|ENOLCK|ok
syscall flock LOCK_UN|ok|ok
syscall fcntl F_SETLK|ENOLCK|ok
reads on|b'0123456789'|b'0123456789'
EOF
LOCKWARN='asya-state: locks on mount files fail with ENOLCK'
expect_eq "locks: one warning per process, nothing else on stderr" "1|" \
    "$(grep -c "$LOCKWARN" "$TMP/calls.err")|$(grep -v "$LOCKWARN" "$TMP/calls.err")"

# SQLite: whatever it reports committed must be in the database; everything else an error.
# writer.py WHO DB: 40 one-row autocommit transactions, no retry; prints JSON: the committed
# rows' numbers, how many failed, and the distinct errors.
cat >"$TMP/writer.py" <<'PY'
import json, sqlite3, sys
who, db = sys.argv[1], sys.argv[2]
done, failed, errors = [], 0, set()
try:
    c = sqlite3.connect(db, isolation_level=None, timeout=0)
    for i in range(40):
        try:
            c.execute("create table if not exists t(who text, i int)")
            c.execute("insert into t values(?, ?)", (who, i))
            done.append(i)
        except sqlite3.Error as e:
            failed += 1
            errors.add(str(e))
    c.close()
except sqlite3.Error as e:
    errors.add("connect/close: " + str(e))
print(json.dumps({"who": who, "done": done, "failed": failed, "errors": sorted(errors)}))
PY
# reader.py DB: every (who, i) row, read without locks (immutable=1: a shared lock would
# fail with ENOLCK too); an empty file (no table) holds none.
cat >"$TMP/reader.py" <<'PY'
import json, sqlite3, sys
try:
    c = sqlite3.connect(f"file:{sys.argv[1]}?immutable=1", uri=True)
    rows = c.execute("select who, i from t").fetchall()
except sqlite3.Error as e:
    rows = [] if "no such table" in str(e) else [["error", str(e)]]
print(json.dumps(rows))
PY
# verdict DB WRITER_OUT...: "reported R, committed C, stored S, missing M" (R: committed plus
# failed, which must be 40 per writer), with each writer's errors on stderr.
verdict() {
    local db=$1
    shift
    run python3 "$TMP/reader.py" "$db" >"$TMP/rows.json" 2>>"$TMP/sql.err"
    python3 - "$TMP/rows.json" "$@" <<'PY'
import json, sys
rows = {tuple(r) for r in json.load(open(sys.argv[1]))}
committed, reported = set(), 0
for path in sys.argv[2:]:
    out = json.load(open(path))
    committed |= {(out["who"], i) for i in out["done"]}
    reported += len(out["done"]) + out["failed"]
    print(f"# {out['who']}: {len(out['done'])} committed, {out['failed']} failed: "
          f"{out['errors']}", file=sys.stderr)
print(f"reported {reported}, committed {len(committed)}, stored {len(rows)}, "
      f"missing {len(committed - rows)}")
PY
}

run python3 "$TMP/writer.py" a /state/lk/two.db >"$TMP/a.json" 2>>"$TMP/sql.err" &
pa=$!
run python3 "$TMP/writer.py" b /state/lk/two.db >"$TMP/b.json" 2>>"$TMP/sql.err" &
pb=$!
wait $pa $pb
v=$(verdict /state/lk/two.db "$TMP/a.json" "$TMP/b.json")
echo "# two processes: $v"
check "locks: sqlite, 2 processes x 40 transactions: each one committed or an error" \
    grep -q '^reported 80,' <<<"$v"
check "locks: sqlite, 2 processes: every transaction reported committed is stored" \
    grep -q ', missing 0$' <<<"$v"

# One process alone: its first statement needs a lock, so it reports an error ("database is
# locked": SQLite takes ENOLCK for SQLITE_BUSY) and the database holds nothing.
run python3 "$TMP/writer.py" solo /state/lk/one.db >"$TMP/solo.json" 2>>"$TMP/sql.err"
v=$(verdict /state/lk/one.db "$TMP/solo.json")
echo "# one process: $v"
expect_eq "locks: sqlite, 1 process: nothing reported committed, nothing stored" \
    "reported 40, committed 0, stored 0, missing 0" "$v"
expect_eq "locks: sqlite, 1 process: the error it reports" '["database is locked"]' \
    "$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["errors"]))' \
        "$TMP/solo.json")"
