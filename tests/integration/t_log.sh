#!/usr/bin/env bash
# t_log.sh: ASYA_STATE_LOG=debug traces each state operation (path, key, revision, result,
# time); the default level prints nothing for a program that succeeds.
. "$(dirname "$0")/lib.sh"

B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/logs STATE_PREFIX=lg
run() { timeout -k 5 60 env LD_PRELOAD="$SHIM" "$@"; }

run sh -c 'echo one > /state/logs/t1; cat /state/logs/t1 >/dev/null' 2>"$TMP/quiet.err"
expect_eq "default level: a succeeding program prints nothing" "" "$(cat "$TMP/quiet.err")"

ASYA_STATE_LOG=debug run sh -c 'echo two > /state/logs/t1; cat /state/logs/t1 >/dev/null' \
    2>"$TMP/debug.err"
rev=$($KVTOOL rev "$B" lg.t1)
grep -qE "^asya-state: commit 't1' key $B/lg\.t1 rev $rev: ok \([0-9.]+ ms\)$" "$TMP/debug.err" &&
    ok "debug: the commit line names path, key, new revision, result and time" ||
    fail "debug: commit line" "$(tr '\n' '|' <"$TMP/debug.err")"
grep -qE "^asya-state: get 't1' key $B/lg\.t1 rev $rev: ok \([0-9.]+ ms\)$" "$TMP/debug.err" &&
    ok "debug: the read is traced with the revision it read" ||
    fail "debug: get line" "$(tr '\n' '|' <"$TMP/debug.err")"
ASYA_STATE_LOG=debug run cat /state/logs/missing 2>"$TMP/miss.err" >/dev/null
grep -qE "^asya-state: get 'missing' key $B/lg\.missing rev 0: No such file or directory" "$TMP/miss.err" &&
    ok "debug: a failed read is traced with its errno" ||
    fail "debug: missing" "$(tr '\n' '|' <"$TMP/miss.err")"
