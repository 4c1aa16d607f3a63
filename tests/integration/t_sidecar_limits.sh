#!/usr/bin/env bash
# t_sidecar_limits.sh: `asya-state serve` under hostile load (issue 13 case 9): the header
# deadline against slowloris with more connections than the old limit, the body budget
# (503 + Retry-After, nothing stored, the holders complete), ambiguous framing (400), and
# /healthz following a private server frozen, thawed and killed. sidecar_limits.py does most.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

[ -x "$ASYA" ] || { fail "sidecar limits: build" "$ASYA is missing (run make)"; exit 1; }
B=$(new_bucket) || exit 1
SOCK=$TMP/limits.sock HEADER_S=2 PREFIX=lim BUCKET=$B
export SOCK HEADER_S PREFIX BUCKET KVTOOL NATS_URL
CONNECTOR_SOCKET=$SOCK NATS_KV_BUCKET=$B STATE_PREFIX=$PREFIX ASYA_STATE_LOG=info \
    "$ASYA" serve --header-timeout "$HEADER_S" --max-body $((1 << 20)) \
    --max-body-total $((2 << 20)) >"$TMP/serve.log" 2>&1 &
PID=$!
_LIB_PIDS+=("$PID")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
python3 "$HERE/sidecar_limits.py"
expect_eq "sidecar limits: the log says the late connections were closed" yes \
    "$(grep -q 'sent no complete request headers within 2s' "$TMP/serve.log" && echo yes)"
expect_eq "sidecar limits: the log says the slow body's connection was closed" yes \
    "$(grep -q 'request body came slower than 64 KiB/s after 2s' "$TMP/serve.log" && echo yes)"
kill -TERM "$PID"
wait "$PID"
expect_eq "sidecar limits: exits 0 on SIGTERM" 0 "$?"

# ---- /healthz follows the backend: a private server frozen, thawed, killed -----------------
# health_is SOCK WANT [SECONDS]: polls /healthz until its "STATUS ERROR" line is WANT.
health_is() {
    local got= i
    for i in $(seq $(( ${3:-12} * 5 ))); do
        got=$(python3 "$HERE/sidecar_client.py" "$1" GET /healthz 2>/dev/null | head -n 1)
        [ "$got" = "$2" ] && break
        sleep 0.2
    done
    echo "$got"
}
if start_server; then
    "$KVTOOL" -s "$SERVER_URL" --wait bucket-add hb >/dev/null
    HS=$TMP/health.sock
    CONNECTOR_SOCKET=$HS NATS_URL=$SERVER_URL NATS_KV_BUCKET=hb NATS_TIMEOUT_MS=1000 \
        "$ASYA" serve >"$TMP/health.log" 2>&1 &
    HPID=$!
    _LIB_PIDS+=("$HPID")
    expect_eq "sidecar health: 200 while the server answers" "200 -" "$(health_is "$HS" "200 -")"
    kill -STOP "$SERVER_PID"
    expect_eq "sidecar health: 503 once the server is frozen" "503 unavailable" \
        "$(health_is "$HS" "503 unavailable")"
    kill -CONT "$SERVER_PID"
    expect_eq "sidecar health: 200 again once it answers" "200 -" "$(health_is "$HS" "200 -")"
    stop_server "$SERVER_PID"
    expect_eq "sidecar health: 503 once the server is gone" "503 unavailable" \
        "$(health_is "$HS" "503 unavailable")"
    expect_eq "sidecar health: each change logged once" "2 1" \
        "$(grep -c 'serve: not ready' "$TMP/health.log") $(grep -c 'serve: ready' "$TMP/health.log")"
    kill -TERM "$HPID"
    wait "$HPID"
else
    fail "sidecar health" "cannot start a private nats-server"
fi
