#!/usr/bin/env bash
# t_sidecar_limits.sh: `asya-state serve` under hostile load (issue 13 case 9): the header
# deadline against slowloris with more connections than the old limit, the body budget
# (503 + Retry-After, nothing stored, the holders complete). sidecar_limits.py does the work.
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
kill -TERM "$PID"
wait "$PID"
expect_eq "sidecar limits: exits 0 on SIGTERM" 0 "$?"
