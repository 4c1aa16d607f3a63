#!/usr/bin/env bash
# Issue 11, case 7 "Errors that come only at close are lost": everything a local disk checks at
# open is checked at open (SPEC, Operations: "open (any mode)"), also for a write-open with
# O_TRUNC, which reads nothing. `open(P, "w").write("hi")` discards the error of the implicit
# close in CPython, so a failure that only came at close went unseen: exit 0, nothing written.
# For each cause (no server, missing bucket, refused login, a name segment over NAME_MAX, a key
# over KV_KEY_MAX) the one-liner must exit non-zero with the contract's exception, and the
# `with` form must raise at the open line. Then: a normal O_TRUNC write still lands, and once
# bound a write-open sends nothing (the server's in_msgs counter, from its monitoring port).
. "$(dirname "$0")/lib.sh"
PY=$(python3 -c 'import sys; print(sys.executable)') # the real binary, not a pyenv wrapper

if [ ! -f "$SHIM" ]; then
    fail "open errors: the shim is built" "$SHIM is missing"
    exit 1
fi

# shimmed URL BUCKET CMD...: CMD under the shim, mount /state -> BUCKET at URL, bounded.
shimmed() {
    local url=$1 bucket=$2
    shift 2
    timeout -k 5 60 env NATS_URL="$url" NATS_KV_BUCKET="$bucket" STATE_MOUNT=/state \
        NATS_TIMEOUT_MS=3000 LD_PRELOAD="$SHIM" "$@"
}

# oneliner URL BUCKET PATH: runs python3 -c 'open(P, "w").write("hi")' and prints
# "exit <status> <the traceback's last line up to the errno>", e.g.
# "exit 1 ConnectionRefusedError: [Errno 111]".
oneliner() {
    local err=$TMP/oneliner.err rc
    shimmed "$1" "$2" "$PY" -c 'import sys; open(sys.argv[1], "w").write("hi")' "$3" 2>"$err"
    rc=$?
    sed 's/^/# stderr: /' "$err" | cut -c1-200 >&2
    echo "exit $rc $(tail -n 1 "$err" | sed 's/\].*/]/')"
}

# with_form URL BUCKET PATH: `with open(P, "w") as f: f.write("hi")`; prints the stage the
# exception came from (open, write, close; "done" when none), its class and errno name.
with_form() {
    shimmed "$1" "$2" "$PY" -c '
import errno, sys
stage = "open"
try:
    with open(sys.argv[1], "w") as f:
        stage = "write"
        f.write("hi")
        stage = "close"
    print("done")
except OSError as e:
    print(stage, type(e).__name__, errno.errorcode.get(e.errno))' "$3" 2>>"$TMP/with.err"
}

# expect_cause WHAT URL BUCKET PATH EXCEPTION ERRNO_NUMBER ERRNO_NAME
expect_cause() {
    local what=$1 url=$2 bucket=$3 path=$4 exc=$5 num=$6 name=$7
    expect_eq "open errors: $what: open(P, \"w\").write() exits non-zero with $exc ($name)" \
        "exit 1 $exc: [Errno $num]" "$(oneliner "$url" "$bucket" "$path")"
    expect_eq "open errors: $what: with open(P, \"w\") raises $exc ($name) at the open line" \
        "open $exc $name" "$(with_form "$url" "$bucket" "$path")"
}

BUCKET=$(new_bucket) || { fail "open errors: a bucket" "new_bucket failed"; exit 1; }

# --- no server reachable: a port nothing listens on ------------------------------------------
dead=nats://127.0.0.1:$(free_port)
expect_cause "no server" "$dead" "$BUCKET" /state/hello.txt \
    ConnectionRefusedError 111 ECONNREFUSED

# --- bucket missing ---------------------------------------------------------------------------
missing=nobucket_$$
expect_cause "bucket missing" "$NATS_URL" "$missing" /state/hello.txt OSError 5 EIO
# The missing bucket is configuration: one error line per process, however many opens fail.
out=$(shimmed "$NATS_URL" "$missing" "$PY" -c '
import sys
for i in range(3):
    try:
        open("/state/k%d" % i, "w")
    except OSError as e:
        print(e.errno)' 2>"$TMP/missing.err")
expect_eq "open errors: bucket missing: every open fails (EIO)" "5 5 5" "$(echo $out)"
expect_eq "open errors: bucket missing: reported once per process" "1" \
    "$(grep -c "bucket '$missing' does not exist" "$TMP/missing.err")"

# --- authorisation refused: a wrong password --------------------------------------------------
USR=u$$
PASS=p$(openssl rand -hex 8)
if start_server --user "$USR" --pass "$PASS"; then
    good=nats://$USR:$PASS@127.0.0.1:$SERVER_PORT
    "$KVTOOL" -s "$good" --wait bucket-add sec >/dev/null || fail "open errors: auth: bucket" kvtool
    expect_cause "wrong password" "nats://$USR:wrong@127.0.0.1:$SERVER_PORT" sec /state/hello.txt \
        PermissionError 13 EACCES
    expect_eq "open errors: wrong password: nothing was written (kvtool)" "" \
        "$("$KVTOOL" -s "$good" get sec hello.txt 2>/dev/null)"
    stop_server "$SERVER_PID"
else
    fail "open errors: wrong password" "nats-server --user/--pass did not start"
fi

# --- names: a segment over NAME_MAX, a key over KV_KEY_MAX ------------------------------------
long_seg=/state/$(printf 'n%.0s' $(seq 256))
expect_cause "a 256-byte name segment" "$NATS_URL" "$BUCKET" "$long_seg" OSError 36 ENAMETOOLONG
seg=$(printf 'k%.0s' $(seq 250))
long_key=/state/$seg/$seg/$seg/$seg/$seg   # 1254 bytes of key, every segment under 256
expect_cause "a key over 1024 bytes" "$NATS_URL" "$BUCKET" "$long_key" OSError 36 ENAMETOOLONG
# Names are checked before anything is sent: the same answer with no server at all.
expect_eq "open errors: a 256-byte segment is ENAMETOOLONG even with no server" \
    "open OSError ENAMETOOLONG" "$(with_form "$dead" "$BUCKET" "$long_seg")"

# --- the ordinary cases still work ------------------------------------------------------------
expect_eq "open errors: an O_TRUNC write (with) lands" "done" \
    "$(with_form "$NATS_URL" "$BUCKET" /state/hello.txt)"
expect_eq "open errors: ... kvtool reads it" "hi" "$("$KVTOOL" get "$BUCKET" hello.txt 2>&1)"
check "open errors: the one-liner O_TRUNC write exits 0" \
    shimmed "$NATS_URL" "$BUCKET" "$PY" -c 'open("/state/one.txt", "w").write("one")'
expect_eq "open errors: ... kvtool reads it" "one" "$("$KVTOOL" get "$BUCKET" one.txt 2>&1)"

# --- once bound, a write-open sends nothing ---------------------------------------------------
# A private server (nothing else publishes to it) with its monitoring port: in_msgs counts
# every message clients sent. A read-open (one Get) shows that the counter moves.
MPORT=$(free_port)
if start_server -m "$MPORT" && wait_port "$MPORT" 10; then
    "$KVTOOL" -s "$SERVER_URL" --wait bucket-add cheap >/dev/null || fail "open errors: cheap" kvtool
    out=$(shimmed "$SERVER_URL" cheap "$PY" -c '
import json, sys, urllib.request
def in_msgs():
    return json.load(urllib.request.urlopen(sys.argv[1] + "/varz"))["in_msgs"]
with open("/state/a", "w") as f:   # the first open connects and binds
    f.write("1")
n0 = in_msgs()
f = open("/state/b", "w")           # bound: no request
n1 = in_msgs()
g = open("/state/a")                # one Get
n2 = in_msgs()
g.close()
f.close()
print(n1 - n0, n2 - n1)' "http://127.0.0.1:$MPORT" 2>&1)
    expect_eq "open errors: a second write-open sends nothing; a read-open sends one Get" \
        "0 1" "$out"
    stop_server "$SERVER_PID"
else
    fail "open errors: a private server with monitoring" "nats-server -m did not start"
fi

# --- the bucket deleted under a running program ---------------------------------------------
# EIO, as a missing bucket at the first open: only the first get waits out NATS_TIMEOUT_MS (a
# deleted stream's direct get is not answered); the next opens and commits learn it at once.
GONE=$(new_bucket) || exit 1
out=$(shimmed "$NATS_URL" "$GONE" "$PY" -c '
import errno, os, subprocess, sys, time
open("/state/g", "w").write("1")
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
subprocess.run([sys.argv[1], "bucket-del", sys.argv[2]], env=env, check=True)
out = []
for name, mode in [("g", "r"), ("g", "r"), ("h", "w")]:
    t0 = time.monotonic()
    try:
        with open("/state/" + name, mode) as f:
            f.write("x") if mode == "w" else f.read()
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode[e.errno] + (" fast" if time.monotonic() - t0 < 1 else " slow"))
print(", ".join(out))' "$KVTOOL" "$GONE" 2>"$TMP/gone.err")
expect_eq "open errors: bucket deleted while running: EIO, the first read waits, then at once" \
    "EIO slow, EIO fast, EIO fast" "$out"
expect_eq "open errors: ... one line says the bucket was deleted" 1 \
    "$(grep -c "bucket '$GONE' has been deleted" "$TMP/gone.err")"
