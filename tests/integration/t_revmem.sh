#!/usr/bin/env bash
# t_revmem.sh: the revision memory is bounded (ASYA_STATE_REVMEM_MAX) and an evicted memory is
# a conflict, never a blind put (kv/revmem.c; issue 13 case 9): the sidecar with a bound of
# 1,000 entries, sidecar_revmem.py does the requests and measures its VmRSS.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

[ -x "$ASYA" ] || { fail "revmem: build" "$ASYA is missing (run make)"; exit 1; }
B=$(new_bucket) || exit 1
SOCK=$TMP/revmem.sock PREFIX=rm BUCKET=$B BOUND=${REVMEM_BOUND:-1000} GETS=${REVMEM_GETS:-100000}
CONNECTOR_SOCKET=$SOCK NATS_KV_BUCKET=$B STATE_PREFIX=$PREFIX ASYA_STATE_REVMEM_MAX=$BOUND \
    "$ASYA" serve >"$TMP/serve.log" 2>&1 &
PID=$!
_LIB_PIDS+=("$PID")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
export SOCK PID BOUND GETS PREFIX BUCKET KVTOOL NATS_URL
python3 "$HERE/sidecar_revmem.py"
kill -TERM "$PID"
wait "$PID"
expect_eq "revmem: the sidecar exits 0 on SIGTERM" 0 "$?"
