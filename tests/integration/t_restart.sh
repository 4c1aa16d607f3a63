#!/usr/bin/env bash
# Issue 13, case 3 "EEXIST for a commit that landed": A's commit lands and its ack is lost
# (faults_proxy.py), B overwrites the key at once, the server is killed and restarted on the
# same store (forgetting A's id: B's message replaced A's), A's resend conflicts. A's close
# must be ETIMEDOUT (unknown): never EEXIST (A landed), never success (nothing proves it: the
# key's last message, the one kv/ops.c reads for A's id, is B's). (With 5 revisions kept the
# same held when measured: A's message is in the history but no longer the last one; left
# out of the run for time.)
. "$(dirname "$0")/lib.sh"
PY=$(python3 -c 'import sys; print(sys.executable)')
HERE=$ROOT/tests/integration

run_case() { # HISTORY EXPECTED
    local history=$1 want=$2 out pport cport proxy newpid
    if ! start_server; then
        fail "restart: history $history: a private server starts" "see above"
        return
    fi
    "$KVTOOL" -s "$SERVER_URL" --wait bucket-add r --history "$history" >/dev/null
    "$KVTOOL" -s "$SERVER_URL" put r n "0 init" >/dev/null
    rm -f "$TMP/proxy.ports" "$TMP/new.pid"
    timeout -k 5 60 "$PY" "$HERE/faults_proxy.py" "$SERVER_PORT" "$TMP/proxy.ports" "$KVTOOL" \
        "$SERVER_URL" 2>"$TMP/proxy.err" &
    proxy=$!
    for _ in $(seq 100); do [ -s "$TMP/proxy.ports" ] && break; sleep 0.05; done
    read -r pport cport <"$TMP/proxy.ports"
    out=$(timeout -k 5 60 env NATS_URL="nats://127.0.0.1:$pport" NATS_KV_BUCKET=r \
        STATE_MOUNT=/state NATS_TIMEOUT_MS=2000 LD_PRELOAD="$SHIM" \
        "$PY" "$HERE/faults_restart.py" /state/n "$cport" "$SERVER_PID" "$TMP/new.pid" \
        nats-server -a 127.0.0.1 -p "$SERVER_PORT" -js -sd "$SERVER_STORE" 2>"$TMP/a.err")
    newpid=$(cat "$TMP/new.pid" 2>/dev/null)
    [ -n "$newpid" ] && _LIB_PIDS+=("$newpid")
    echo "# history $history: $out; value now: $("$KVTOOL" -s "$SERVER_URL" get r n 2>&1)"
    sed 's/^/# stderr: /' "$TMP/a.err" | head -n 4
    expect_eq "restart: history $history: B overwrote and the server restarted during A's commit" \
        "other_writes=1 restarted=1" "$(echo "$out" | awk '{print $3, $4}')"
    got=$(echo "$out" | awk '{print $2}')
    if [[ " ${want//or/} " == *" $got "* ]]; then
        ok "restart: history $history: A's close is $got ($want; never EEXIST)"
    else
        fail "restart: history $history: A's close is $want (never EEXIST)" "$out"
    fi
    check "restart: history $history: A's commit did land (its bytes, B rewrote them)" \
        grep -q "^1 A-" <("$KVTOOL" -s "$SERVER_URL" get r n)
    kill "$proxy" 2>/dev/null
    wait "$proxy" 2>/dev/null
    [ -n "$newpid" ] && stop_server "$newpid"
}

run_case 1 ETIMEDOUT
