#!/usr/bin/env bash
# The harness itself: kvtool (the independent client every other test trusts) and lib.sh.
# No shim here: if these fail, every other result is meaningless.
. "$(dirname "$0")/lib.sh"

b=$(new_bucket) || { fail "kvtool: bucket-add" "new_bucket failed"; exit 1; }
ok "kvtool: bucket-add makes a bucket ($b)"

r1=$("$KVTOOL" put "$b" greeting hello 2>&1)
case "$r1" in
    '' | *[!0-9]*) fail "kvtool: put prints a revision" "got '$r1'" ;;
    *) ok "kvtool: put prints a revision ($r1)" ;;
esac
expect_eq "kvtool: get returns the raw value" hello "$("$KVTOOL" get "$b" greeting)"
expect_eq "kvtool: rev equals put's revision" "$r1" "$("$KVTOOL" rev "$b" greeting)"

r2=$("$KVTOOL" put "$b" greeting "hello again")
expect_eq "kvtool: a second put advances the revision by one" "$((r1 + 1))" "$r2"
expect_eq "kvtool: get sees the second value" "hello again" "$("$KVTOOL" get "$b" greeting)"

# Binary-safe put-stdin and a value with a trailing newline come back byte for byte.
head -c 3000 /dev/urandom >"$TMP/blob"
"$KVTOOL" put-stdin "$b" blob <"$TMP/blob" >/dev/null
"$KVTOOL" get "$b" blob >"$TMP/blob.out"
check "kvtool: put-stdin/get round-trip 3000 random bytes" cmp "$TMP/blob" "$TMP/blob.out"

"$KVTOOL" put "$b" zeta z >/dev/null
"$KVTOOL" put "$b" alpha a >/dev/null
"$KVTOOL" put "$b" dir/x x >/dev/null
expect_eq "kvtool: keys lists every key, sorted" "alpha blob dir/x greeting zeta" \
    "$("$KVTOOL" keys "$b" | tr '\n' ' ' | sed 's/ $//')"

err=$("$KVTOOL" get "$b" missing 2>&1 >/dev/null)
rc=$?
expect_eq "kvtool: get of a missing key exits 1" 1 "$rc"
case "$err" in
    *"not found"*) ok "kvtool: get of a missing key says 'not found' on stderr" ;;
    *) fail "kvtool: get of a missing key says 'not found' on stderr" "stderr '$err'" ;;
esac
expect_eq "kvtool: one stderr line on failure" 1 "$(printf '%s\n' "$err" | wc -l)"

check "kvtool: del" "$KVTOOL" del "$b" zeta
if "$KVTOOL" get "$b" zeta >/dev/null 2>&1; then
    fail "kvtool: a deleted key is not found" "get still succeeds"
else
    ok "kvtool: a deleted key is not found"
fi
expect_eq "kvtool: keys omits deleted keys" "alpha blob dir/x greeting" \
    "$("$KVTOOL" keys "$b" | tr '\n' ' ' | sed 's/ $//')"

# CAS as the server does it (single replica): create on an existing key and a stale update fail.
if "$KVTOOL" create "$b" alpha again >/dev/null 2>&1; then
    fail "kvtool: create on an existing key fails" "it succeeded"
else
    ok "kvtool: create on an existing key fails"
fi
ra=$("$KVTOOL" rev "$b" alpha)
check "kvtool: update expecting the current revision succeeds" \
    "$KVTOOL" update "$b" alpha a2 "$ra"
if out=$("$KVTOOL" update "$b" alpha a3 "$ra" 2>&1); then
    fail "kvtool: update expecting a stale revision fails" "it succeeded"
else
    case "$out" in
        *"wrong last sequence"*) ok "kvtool: update expecting a stale revision fails (wrong last sequence)" ;;
        *) fail "kvtool: update expecting a stale revision fails (wrong last sequence)" "$out" ;;
    esac
fi
expect_eq "kvtool: the winning value stays" a2 "$("$KVTOOL" get "$b" alpha)"

e=$(new_bucket --history 5 --max-value-size 100 --storage memory)
"$KVTOOL" put "$e" k one >/dev/null
"$KVTOOL" put "$e" k two >/dev/null
expect_eq "kvtool: history lists every revision" "PUT one|PUT two" \
    "$("$KVTOOL" history "$e" k | cut -d' ' -f2- | paste -sd'|')"
if "$KVTOOL" put "$e" big "$(head -c 200 /dev/zero | tr '\0' x)" >/dev/null 2>&1; then
    fail "kvtool: --max-value-size is enforced" "a 200-byte value was accepted"
else
    ok "kvtool: --max-value-size is enforced"
fi
expect_eq "kvtool: keys of an empty bucket prints nothing" "" "$("$KVTOOL" keys "$(new_bucket)")"
check "kvtool: bucket-del" "$KVTOOL" bucket-del "$e"
if "$KVTOOL" keys "$e" >/dev/null 2>&1; then
    fail "kvtool: a deleted bucket is gone" "keys still works"
else
    ok "kvtool: a deleted bucket is gone"
fi

# lib.sh's private server: start, use, stop by pid.
if start_server; then
    pid=$SERVER_PID
    check "lib.sh: start_server gives a working private server" \
        "$KVTOOL" -s "$SERVER_URL" bucket-add private
    stop_server "$pid"
    if kill -0 "$pid" 2>/dev/null; then
        fail "lib.sh: stop_server stops it" "pid $pid still alive"
    else
        ok "lib.sh: stop_server stops it"
    fi
    if "$KVTOOL" -s "$SERVER_URL" keys private >/dev/null 2>&1; then
        fail "lib.sh: a stopped server refuses" "kvtool still connects"
    else
        ok "lib.sh: a stopped server refuses"
    fi
else
    fail "lib.sh: start_server gives a working private server" "start_server failed"
fi
