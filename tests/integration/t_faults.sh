#!/usr/bin/env bash
# Issue 4, "Faults" (single server): no server, a server killed with SIGKILL and restarted,
# unknown commit outcomes through a reply-losing proxy, a connection nats.c closes for good, and
# exact counters under concurrency. Programs run unmodified under LD_PRELOAD=$SHIM on the real
# Python binary; what landed is always read with kvtool, directly from the server.
. "$(dirname "$0")/lib.sh"
HERE=$ROOT/tests/integration
PY=$(python3 -c 'import sys; print(sys.executable)')
M=/state/f

if [ ! -f "$SHIM" ]; then
    fail "faults: the shim is built" "$SHIM is missing"
    exit 1
fi

# shimmed URL BUCKET CMD...: CMD under the shim, mount $M -> BUCKET at URL, bounded.
shimmed() {
    local url=$1 bucket=$2
    shift 2
    timeout -k 5 60 env NATS_URL="$url" NATS_KV_BUCKET="$bucket" ASYA_STATE_PROXY_MOUNTS="f:$M" \
        LD_PRELOAD="$SHIM" "$@"
}
kv() { "$KVTOOL" "$@"; }

# --- 1. no server reachable -------------------------------------------------------------------
port=$(free_port)
secret=s3cr3tT0kenXYZ
out=$(shimmed "nats://$secret@127.0.0.1:$port" nobucket env NATS_TIMEOUT_MS=2000 "$PY" -c '
import errno, sys, time
for what in ("read", "write"):
    t = time.monotonic()
    try:
        if what == "read":
            open(sys.argv[1]).read()
        else:
            with open(sys.argv[1], "w") as f:
                f.write("x")
        print(what, "no-error", 0)
    except OSError as e:
        print(what, type(e).__name__, errno.errorcode.get(e.errno), "%.2f" % (time.monotonic() - t))
' "$M/x" 2>"$TMP/nosrv.err")
echo "$out" | sed 's/^/# /'
sed 's/^/# stderr: /' "$TMP/nosrv.err"
for what in read write; do
    line=$(echo "$out" | grep "^$what ")
    expect_eq "1: no server: a $what gets ConnectionRefusedError (ECONNREFUSED)" \
        "ConnectionRefusedError ECONNREFUSED" "$(echo "$line" | awk '{print $2, $3}')"
    secs=$(echo "$line" | awk '{print $4}')
    if awk -v s="${secs:-99}" 'BEGIN { exit !(s < 3.0) }'; then
        ok "1: no server: the $what fails within the 2 s timeout (${secs}s)"
    else
        fail "1: no server: the $what fails within the 2 s timeout" "took ${secs:-?}s"
    fi
done
if grep -q "NATS.*127\.0\.0\.1:$port" "$TMP/nosrv.err"; then
    ok "1: no server: a stderr line names NATS and the URL"
else
    fail "1: no server: a stderr line names NATS and the URL" "$(cat "$TMP/nosrv.err")"
fi
if grep -q "$secret" "$TMP/nosrv.err" || echo "$out" | grep -q "$secret"; then
    fail "1: no server: the URL's token is never printed" "$(grep "$secret" "$TMP/nosrv.err")"
else
    ok "1: no server: the URL's token is never printed"
fi

# --- 2. the server killed with SIGKILL mid-run and restarted on the same store ---------------
if start_server; then
    U2=$SERVER_URL P2=$SERVER_PORT S2=$SERVER_STORE PID2=$SERVER_PID
    kv -s "$U2" --wait bucket-add kill >/dev/null && kv -s "$U2" put kill counter "0 init" >/dev/null
    rm -f "$TMP/stop"
    shimmed "$U2" kill env NATS_TIMEOUT_MS=1000 "$PY" "$HERE/faults_writer.py" "$M" \
        "$TMP/writer.log" "$TMP/stop" 60 0.005 2>"$TMP/writer.err" &
    WPID=$!
    kills=0
    restarted_ok=1
    for cycle in 1 2; do
        sleep 2
        kill -9 "$PID2"
        wait "$PID2" 2>/dev/null
        kills=$((kills + 1))
        sleep 2.5 # longer than NATS_TIMEOUT_MS: operations in flight fail meanwhile
        nats-server -a 127.0.0.1 -p "$P2" -js -sd "$S2" >>"$S2.log" 2>&1 &
        PID2=$!
        _LIB_PIDS+=("$PID2")
        wait_port "$P2" 10 || restarted_ok=0
        acks_at_restart=$(grep -c '^ack ' "$TMP/writer.log")
    done
    sleep 3
    touch "$TMP/stop"
    wait "$WPID"
    rc=$?
    done_line=$(grep '^done ' "$TMP/writer.log")
    echo "# writer: $done_line; $(grep -c . "$TMP/writer.err") stderr lines"
    sort "$TMP/writer.err" | uniq -c | sort -rn | head -n 5 | sed 's/^/# stderr: /'
    expect_eq "2: SIGKILL: the server restarted on the same port and store twice" 1 "$restarted_ok"
    if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
        ok "2: SIGKILL x$kills: the long-running Python writer finished without a restart"
    else
        fail "2: SIGKILL: the writer finished" "exit $rc, log tail: $(tail -n 3 "$TMP/writer.log")"
    fi
    errnos=$(echo "$done_line" | sed -n 's/.*errnos=\([^ ]*\).*/\1/p')
    bad=$(echo "$errnos" | tr ',' '\n' | grep -v -e '^ETIMEDOUT$' -e '^ECONNREFUSED$' -e '^-$')
    if [ -n "$done_line" ] && [ -z "$bad" ]; then
        ok "2: SIGKILL: failed operations failed with ETIMEDOUT or ECONNREFUSED only ($errnos)"
    else
        fail "2: SIGKILL: failures are ETIMEDOUT or ECONNREFUSED" "errnos: $errnos"
    fi
    acks=$(grep -c '^ack ' "$TMP/writer.log")
    if [ "$acks" -gt "${acks_at_restart:-0}" ]; then
        ok "2: SIGKILL: writes succeed after the last restart ($((acks - acks_at_restart)) of $acks)"
    else
        fail "2: SIGKILL: writes succeed after the last restart" "$acks acks, $acks_at_restart before"
    fi
    missing=0 first_missing=
    while read -r tag key value; do
        [ "$tag" = ack ] || continue
        got=$(kv -s "$U2" get kill "$key" 2>&1)
        if [ "$got" != "$value" ]; then
            missing=$((missing + 1))
            first_missing=${first_missing:-"$key: want '$value', got '$got'"}
        fi
    done <"$TMP/writer.log"
    if [ "$acks" -gt 0 ] && [ "$missing" -eq 0 ]; then
        ok "2: SIGKILL: all $acks acknowledged writes are in the bucket with their values"
    else
        fail "2: SIGKILL: every acknowledged write is in the bucket" \
            "$missing of $acks missing; first: $first_missing"
    fi
    incs=$(grep -c '^inc ' "$TMP/writer.log")
    landed=$(grep -c '^landed ' "$TMP/writer.log")
    counter=$(kv -s "$U2" get kill counter 2>&1 | awk '{print $1}')
    expect_eq "2: SIGKILL: the read-modify-write counter is exact (acknowledged $incs + resolved $landed)" \
        "$((incs + landed))" "$counter"
    stop_server "$PID2"
else
    fail "2: SIGKILL: private server" "cannot start nats-server"
fi

# --- 3. unknown outcomes: a proxy loses the commit's reply (or the commit) -------------------
B3=$(new_bucket) || { fail "3: unknown outcomes: bucket" "cannot create a bucket"; exit 1; }
kv put "$B3" n "0 init" >/dev/null
timeout -k 5 200 "$PY" "$HERE/faults_proxy.py" "${NATS_URL##*:}" "$TMP/proxy.ports" "$KVTOOL" \
    "$NATS_URL" 2>"$TMP/proxy.err" &
PROXY=$!
for _ in $(seq 100); do [ -s "$TMP/proxy.ports" ] && break; sleep 0.05; done
read -r PPORT CPORT <"$TMP/proxy.ports"
unknown_run() { # MODES REPEAT -> one line per commit
    shimmed "nats://127.0.0.1:$PPORT" "$B3" env NATS_TIMEOUT_MS=500 KVTOOL="$KVTOOL" \
        SERVER_URL="$NATS_URL" BUCKET="$B3" KEY=n \
        "$PY" "$HERE/faults_unknown.py" "$M/n" "$CPORT" "$1" "$2" 2>>"$TMP/unknown.err"
}
counter3() { kv get "$B3" n | awk '{print $1}'; }

# Checks the commit lines in $1 (file); $2 is the phase's name.
check_commits() {
    local f=$1 phase=$2 n liars hidden fired
    n=$(grep -c '^commit ' "$f")
    # success reported only for a write that landed; a definite failure only for one that did not
    liars=$(grep '^commit ' "$f" | awk '$4 == "OK" && $5 != "landed=1"' | head -n 3)
    hidden=$(grep '^commit ' "$f" | awk '$4 != "OK" && $4 != "ETIMEDOUT" && $5 != "landed=0"' | head -n 3)
    if [ "$n" -gt 0 ] && [ -z "$liars" ] && [ -z "$hidden" ]; then
        ok "3: $phase: each of $n commits reports success exactly when its write landed"
    else
        fail "3: $phase: success exactly when the write landed" "$n commits; $liars $hidden"
    fi
    # the fault really happened on every commit
    fired=$(grep '^commit ' "$f" | awk '
        { split($6, a, "="); split($7, p, "="); split($8, o, "="); ack = a[2]; pub = p[2]; oth = o[2] }
        $3 == "ack1" && ack != 1 { print } $3 == "ackall" && ack < 2 { print }
        $3 == "ack1_other" && (ack != 1 || oth != 1) { print }
        $3 == "ackall_other" && (ack < 2 || oth != 1) { print }
        $3 == "pub1" && pub != 1 { print } $3 == "puball" && pub < 2 { print }
        $3 == "conflict1" && (ack != 1 || oth != 1) { print }' | head -n 3)
    if [ "$n" -gt 0 ] && [ -z "$fired" ]; then
        ok "3: $phase: the proxy lost a reply or a publish on every commit"
    else
        fail "3: $phase: the fault fired on every commit" "$fired"
    fi
}
outcomes() { # FILE MODE -> "OUTCOME xCOUNT ..." for that mode
    grep '^commit ' "$1" | awk -v m="$2" '$3 == m { c[$4]++ } END { for (k in c) printf "%s x%d ", k, c[k] }'
}

# Phase A: nothing in doubt. The lost ack is recovered by the resend (duplicate ack) or by the
# key's last message; a lost publish is resent. A conflict whose reply is lost is ETIMEDOUT:
# the resend's conflict proves nothing (a restarted server forgets its duplicate window, so
# our landed copy, overwritten since, conflicts like an absent one: issue 13), and the key's
# last message is not ours.
before=$(counter3)
unknown_run ack1,ackall,ack1_other,pub1,conflict1 6 >"$TMP/phaseA"
after=$(counter3)
sed 's/^/# /' "$TMP/phaseA" | head -n 40
check_commits "$TMP/phaseA" "no doubt (30 commits)"
for m in ack1 ackall ack1_other pub1; do
    expect_eq "3: no doubt: $m commits all succeed" "OK x6 " "$(outcomes "$TMP/phaseA" $m)"
done
expect_eq "3: no doubt: a conflict whose reply is lost is ETIMEDOUT (unknown), never EEXIST" \
    "ETIMEDOUT x6 " "$(outcomes "$TMP/phaseA" conflict1)"
succ=$(grep -c '^commit .* OK ' "$TMP/phaseA")
tmo=$(grep -v ' conflict1 ' "$TMP/phaseA" | grep -c '^commit .* ETIMEDOUT ')
expect_eq "3: no doubt: no other ETIMEDOUT and counter == successes ($succ)" "0 $succ" \
    "$tmo $((after - before))"

# Phase B: every mode, including the two the shim cannot resolve: the ack and the resend's ack
# lost with another writer's commit in between (ours landed), and every publish lost (ours
# did not). Those must be ETIMEDOUT, never a guess.
before=$(counter3)
unknown_run ack1,ackall,ack1_other,ackall_other,pub1,puball,conflict1 5 >"$TMP/phaseB"
after=$(counter3)
check_commits "$TMP/phaseB" "with doubt (35 commits)"
succ=$(grep -c '^commit .* OK ' "$TMP/phaseB")
tmo=$(grep -c '^commit .* ETIMEDOUT ' "$TMP/phaseB")
delta=$((after - before))
echo "# phase B: successes $succ, ETIMEDOUT $tmo, counter +$delta"
if [ "$tmo" -gt 0 ] && [ "$succ" -le "$delta" ] && [ "$delta" -le $((succ + tmo)) ]; then
    ok "3: with doubt: successes $succ <= counter +$delta <= successes + ETIMEDOUTs $((succ + tmo))"
else
    fail "3: with doubt: successes <= counter <= successes + ETIMEDOUTs" \
        "successes $succ, counter +$delta, ETIMEDOUT $tmo"
fi
expect_eq "3: with doubt: ack and resend-ack lost, another commit in between: ETIMEDOUT" \
    "ETIMEDOUT x5 " "$(outcomes "$TMP/phaseB" ackall_other)"
expect_eq "3: with doubt: every publish lost: ETIMEDOUT" "ETIMEDOUT x5 " \
    "$(outcomes "$TMP/phaseB" puball)"
if grep -q 'outcome unknown' "$TMP/unknown.err"; then
    ok "3: with doubt: the shim logs the unknown outcome on stderr"
else
    fail "3: with doubt: the unknown outcome is logged" "$(head -n 3 "$TMP/unknown.err")"
fi
# Phase C: after a commit whose outcome is unknown (ours landed, its acks lost, another
# writer after it), the thread's next blind write ("w", nothing read) is a put as the contract
# says for nothing remembered, and its next read-modify-write is based on that read: neither
# is refused with a false EEXIST from the timed-out commit's revision (kv/revmem.c).
out=$(shimmed "nats://127.0.0.1:$PPORT" "$B3" env NATS_TIMEOUT_MS=500 "$PY" -c '
import errno, socket, sys
path, port = sys.argv[1], int(sys.argv[2])
cf = socket.create_connection(("127.0.0.1", port), 5).makefile("rwb", buffering=0)
def control(cmd):
    cf.write((cmd + "\n").encode())
    return cf.readline().decode().strip()
def attempt(fn):
    try:
        fn()
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def rmw():
    n = int(open(path).read().split()[0])
    with open(path, "w") as f:
        f.write("%d c" % (n + 1))
def blind():
    with open(path, "w") as f:
        f.write("%d c" % (n + 1))
n = int(open(path).read().split()[0])
control("arm ackall_other")
first = attempt(rmw)
control("disarm")
n += 1  # what the timed-out commit wrote (it landed): no read here, the blind write reads nothing
print(first, attempt(blind), attempt(rmw))
' "$M/n" "$CPORT" 2>>"$TMP/unknown.err")
expect_eq "3: after ETIMEDOUT: a blind write and a read-modify-write succeed (no false EEXIST)" \
    "ETIMEDOUT OK OK" "$out"
# A read's reply that comes after the read timed out (kv/lane.c): the proxy holds it back and
# delivers it just before the next read's reply on the same lane. The read times out; the next
# one gives the value written meanwhile, not the late reply's older one.
out=$(shimmed "nats://127.0.0.1:$PPORT" "$B3" env NATS_TIMEOUT_MS=500 KVTOOL="$KVTOOL" \
        SERVER_URL="$NATS_URL" BUCKET="$B3" "$PY" -c '
import errno, os, socket, subprocess, sys
path, cport = sys.argv[1], int(sys.argv[2])
cf = socket.create_connection(("127.0.0.1", cport)).makefile("rwb", buffering=0)
def control(cmd):
    cf.write((cmd + "\n").encode())
    return cf.readline().decode().strip()
def read():
    try:
        return open(path).read()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
with open(path, "w") as f:  # a commit reads the bucket limits: reads are direct gets after it
    f.write("old")
control("arm late1")
first = read()
subprocess.run([os.environ["KVTOOL"], "-s", os.environ["SERVER_URL"], "put",
                os.environ["BUCKET"], "late", "new"], env=env, check=True, capture_output=True)
second = read()
print(first, second, control("disarm").split()[-1])
' "$M/late" "$CPORT" 2>>"$TMP/unknown.err")
expect_eq "3: a read whose reply comes late times out; the next read gets the newer value" \
    "ETIMEDOUT new late_sent=1" "$out"
kill "$PROXY" 2>/dev/null
wait "$PROXY" 2>/dev/null

# --- 4. nats.c closes the connection for good on a server error: the next operation reconnects
# A server with a small max_control_line answers a long subject with
# -ERR 'Maximum Control Line Exceeded'; nats.c 3.4.1 then closes the connection (no reconnect).
printf 'max_control_line: 512\n' >"$TMP/mcl.conf"
if start_server -c "$TMP/mcl.conf"; then
    kv -s "$SERVER_URL" --wait bucket-add closed >/dev/null
    # Two mounts: /state/g's keys carry a 400-byte prefix, so a 200-byte file name there
    # (under every name and key limit of the shim) makes a subject over 512 bytes.
    longp=$(printf 'P%.0s' $(seq 400))
    out=$(timeout -k 5 60 env NATS_URL="$SERVER_URL" NATS_KV_BUCKET=closed NATS_TIMEOUT_MS=2000 \
        ASYA_STATE_LOG=info ASYA_STATE_PROXY_MOUNTS="f:$M:prefix=s;g:/state/g:prefix=$longp" \
        LD_PRELOAD="$SHIM" "$PY" -c '
import errno, sys
for path in (sys.argv[1] + "/before", "/state/g/" + "N" * 200, sys.argv[1] + "/after",
             sys.argv[1] + "/again"):
    try:
        with open(path, "w") as f:
            f.write("v-" + path.rsplit("/", 1)[1][:10])
        print("OK", flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno), flush=True)
' "$M" 2>"$TMP/closed.err" | tr '\n' ' ')
    sed 's/^/# stderr: /' "$TMP/closed.err" | cut -c1-200 | head -n 12
    echo "# outcomes: $out"
    first=$(echo "$out" | awk '{print $1}') second=$(echo "$out" | awk '{print $2}')
    expect_eq "4: closed: a write before the server error succeeds" OK "$first"
    if [ -n "$second" ] && [ "$second" != OK ] && [ "$second" != ENAMETOOLONG ] &&
        grep -qi "maximum control line" "$SERVER_STORE.log"; then
        ok "4: closed: the server rejects the long subject with an -ERR and the write fails ($second)"
    else
        fail "4: closed: the rejected write fails" "got '$second'"
    fi
    if grep -q "connection was closed; connecting again" "$TMP/closed.err"; then
        ok "4: closed: the shim saw nats.c close the connection and connected again"
    else
        fail "4: closed: the shim connected again" "$(tr '\n' ' ' <"$TMP/closed.err" | cut -c1-300)"
    fi
    expect_eq "4: closed: the next writes in the same process succeed and land" \
        "OK OK v-after v-again" \
        "$(echo "$out" | awk '{print $3, $4}') $(kv -s "$SERVER_URL" get closed s.after) $(kv -s "$SERVER_URL" get closed s.again)"
    stop_server "$SERVER_PID"
else
    fail "4: closed: private server" "cannot start nats-server with max_control_line"
fi

# --- 5. concurrency on a single-replica bucket: 8 processes and 8 threads x 50 increments ----
B5=$(new_bucket) || { fail "5: concurrency: bucket" "cannot create a bucket"; exit 1; }
kv put "$B5" procs 0 >/dev/null
kv put "$B5" threads 0 >/dev/null
pids=()
for w in $(seq 8); do
    shimmed "$NATS_URL" "$B5" "$PY" "$HERE/progs/counter_worker.py" "$M/procs" 50 "$TMP/go" \
        >"$TMP/worker.$w" 2>"$TMP/worker.$w.err" &
    pids+=($!)
done
sleep 0.5
touch "$TMP/go"
failed_workers=0
for p in "${pids[@]}"; do wait "$p" || failed_workers=$((failed_workers + 1)); done
conflicts=$(cat "$TMP"/worker.[0-9] | awk '/^conflicts/ { s += $2 } END { print s + 0 }')
expect_eq "5: 8 processes x 50 increments, released together: counter is 400, all workers done" \
    "400 0" "$(kv get "$B5" procs) $failed_workers"
if [ "$conflicts" -gt 0 ]; then
    ok "5: 8 processes: $conflicts compare-and-set conflicts observed and retried"
else
    fail "5: 8 processes: conflicts observed" "none: the workers did not overlap"
fi
tout=$(shimmed "$NATS_URL" "$B5" "$PY" "$HERE/faults_threads.py" "$M/threads" 50 8 2>"$TMP/threads.err")
echo "# threads: $tout"
expect_eq "5: 8 threads x 50 increments in one process, barrier: counter is 400, no errors" \
    "400 0" "$(kv get "$B5" threads) $(echo "$tout" | awk '{print $4}')"
tconf=$(echo "$tout" | awk '{print $2}')
if [ "${tconf:-0}" -gt 0 ]; then
    ok "5: 8 threads: $tconf compare-and-set conflicts observed and retried"
else
    fail "5: 8 threads: conflicts observed" "output '$tout'"
fi
