#!/usr/bin/env bash
# t_markers_tombs.sh: delete marker removal (kv/tombs.c) against its hazards. On a server
# that denies purges, as least-privilege KV rights do ($JS.API.STREAM.PURGE.> denied):
#  - 300 unlinks, then two listings in one process: the first waits only briefly for purge
#    replies that never come (< the timeout), the second does not try again (no second WARN,
#    < the timeout); the markers stay (kvtool history).
#  - `asya-state check --fix` as that user exits 3 and names the reason; as a user allowed to
#    purge it removes them (kvtool history: gone).
#  - A bucket's history raised (`bucket edit --history 5`) while a process runs: its next
#    listing leaves the markers (the setting is read again before every automatic sweep).
#  - A client clock 60 s ahead of the server's (progs/clockahead.c): a listing right after
#    the deletes removes no marker (ages are on the server's clock).
. "$(dirname "$0")/lib.sh"

GRACE=5   # TOMBS_GRACE_S in kv/internal.h
TIMEOUT_MS=8000
APW=a$(openssl rand -hex 12) KPW=k$(openssl rand -hex 12)
conf=$TMP/denied.conf
cat >"$conf" <<CONF
authorization { users = [
  { user: admin, password: "$APW" },
  { user: kv, password: "$KPW",
    permissions: { publish: { allow: ">", deny: "\$JS.API.STREAM.PURGE.>" } } }
] }
CONF
start_server -c "$conf" || { fail "denied: a server denying purges starts" "no server"; exit 1; }
AURL=nats://admin:$APW@127.0.0.1:$SERVER_PORT
export NATS_URL=nats://127.0.0.1:$SERVER_PORT NATS_USER=kv NATS_PASSWORD=$KPW
export NATS_TIMEOUT_MS=$TIMEOUT_MS
"$KVTOOL" -s "$AURL" --wait bucket-add den >/dev/null || fail "denied: bucket" "kvtool"
"$KVTOOL" -s "$AURL" fill den 'dn.f%d' 300 4
"$KVTOOL" -s "$AURL" put den 'dn.keep' 'v' >/dev/null
export NATS_KV_BUCKET=den STATE_MOUNT=/state/dn STATE_PREFIX=dn

out=$(timeout -k 5 120 env LD_PRELOAD="$SHIM" python3 -c '
import os
for i in range(300):
    os.unlink("/state/dn/f%d" % i)
print("done")' 2>&1)
expect_eq "denied: 300 unlinks under the shim (user kv)" "done" "$out"
sleep $((GRACE + 1))

out=$(timeout -k 5 120 env LD_PRELOAD="$SHIM" python3 -c '
import os, time
for n in (1, 2):
    t0 = time.monotonic()
    names = os.listdir("/state/dn")
    print("listing%d %s %d" % (n, names, (time.monotonic() - t0) * 1000))' 2>"$TMP/denied.err")
echo "# $(echo $out | tr '\n' ' ')"
l1=$(awk '$1 == "listing1" {print $3}' <<<"$out")
l2=$(awk '$1 == "listing2" {print $3}' <<<"$out")
if grep -q "^listing1 \['keep'\] " <<<"$out" && grep -q "^listing2 \['keep'\] " <<<"$out"; then
    ok "denied: both listings show the one file left"
else fail "denied: both listings show the one file left" "$out $(cat "$TMP/denied.err")"; fi
if [ -n "$l1" ] && [ "$l1" -lt "$TIMEOUT_MS" ] && [ -n "$l2" ] && [ "$l2" -lt "$TIMEOUT_MS" ]; then
    ok "denied: neither listing waits the timeout for purge replies ($l1 ms, $l2 ms < $TIMEOUT_MS ms)"
else fail "denied: neither listing waits the timeout for purge replies" "$l1 ms, $l2 ms"; fi
warns=$(grep -c "removing delete markers" "$TMP/denied.err")
if [ "$warns" -eq 1 ] && grep -q "removing delete markers.*0 of 300 removed" "$TMP/denied.err"; then
    ok "denied: one WARN for the refusal, the second listing does not try again"
else fail "denied: one WARN for the refusal, the second listing does not try again" \
    "$warns: $(cat "$TMP/denied.err")"; fi
expect_eq "denied: the markers stay (kvtool history of one key)" "1" \
    "$("$KVTOOL" -s "$AURL" history den 'dn.f7' 2>&1 | grep -ci 'del')"

out=$("$ASYA" check --fix 2>&1); rc=$?
if [ $rc -eq 3 ] && grep -q "^problem.*30[0-9] delete markers, 0 of 300 old enough removed: no reply to purge requests.*Permissions Violation" <<<"$out"; then
    ok "denied: check --fix exits 3 naming the reason"
else fail "denied: check --fix exits 3 naming the reason" "rc $rc: $out"; fi
echo "# $(grep "delete marker" <<<"$out")"
out=$(NATS_USER=admin NATS_PASSWORD=$APW "$ASYA" check --fix 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "^ok.*30[0-9] delete markers, 300 removed" <<<"$out"; then
    ok "denied: check --fix as a user allowed to purge removes them"
else fail "denied: check --fix as a user allowed to purge removes them" "rc $rc: $out"; fi
expect_eq "denied: ... gone for another client (kvtool history)" "0" \
    "$("$KVTOOL" -s "$AURL" history den 'dn.f7' 2>&1 | grep -ci 'del')"

# history raised while a process runs: its listings then leave the markers (the setting is
# read again before every sweep), the deleted keys keep their older revisions
export NATS_USER=admin NATS_PASSWORD=$APW NATS_KV_BUCKET=hist STATE_MOUNT=/state/hi STATE_PREFIX=hi
"$KVTOOL" -s "$AURL" --wait bucket-add hist >/dev/null || fail "history: bucket" "kvtool"
"$KVTOOL" -s "$AURL" fill hist 'hi.f%d' 300 4
out=$(timeout -k 5 120 env LD_PRELOAD="$SHIM" python3 -c '
import os, subprocess, sys, time
for i in range(300):
    os.unlink("/state/hi/f%d" % i)
r = subprocess.run([sys.argv[1], "bucket", "edit", "hist", "--history", "5"],
                   env=dict(os.environ, LD_PRELOAD=""), capture_output=True)
time.sleep(int(sys.argv[2]) + 1)
print(r.returncode, os.listdir("/state/hi"))' "$ASYA" "$GRACE" 2>&1)
expect_eq "history: 300 unlinks (history 1), bucket edit --history 5, a listing" "0 []" "$out"
expect_eq "history: that listing left the markers (kvtool history: the delete)" \
    "1" "$("$KVTOOL" -s "$AURL" history hist 'hi.f7' 2>&1 | grep -ci del)"

# a client clock 60 s ahead of the server's: marker ages are on the server's clock, so a
# listing right after the deletes removes none (all younger than the grace on the server)
export NATS_KV_BUCKET=ahead STATE_MOUNT=/state/ah STATE_PREFIX=ah
"$KVTOOL" -s "$AURL" --wait bucket-add ahead >/dev/null || fail "ahead: bucket" "kvtool"
"$KVTOOL" -s "$AURL" fill ahead 'ah.f%d' 300 4
if ${CC:-cc} -std=gnu11 -O1 -Wall -Wextra -Werror -fPIC -shared -o "$TMP/clockahead.so" \
        "$(dirname "$0")/progs/clockahead.c" -ldl 2>"$TMP/cc.err"; then
    out=$(timeout -k 5 120 env LD_PRELOAD="$SHIM $TMP/clockahead.so" CLOCK_AHEAD_S=60 python3 -c '
import os, time
for i in range(300):
    os.unlink("/state/ah/f%d" % i)
print(os.listdir("/state/ah"), int(time.time()))' 2>&1)
    skew=$(( ${out##* } - $(date +%s) ))
    expect_eq "ahead: 300 unlinks and a listing (the client's clock ${skew} s ahead)" "[] 1" \
        "${out% *} $(( skew >= 55 ))"
    expect_eq "ahead: the listing removed no marker (kvtool history: the delete)" "1" \
        "$("$KVTOOL" -s "$AURL" history ahead 'ah.f7' 2>&1 | grep -ci del)"
else fail "ahead: progs/clockahead.c compiles" "$(head -n 3 "$TMP/cc.err")"; fi
stop_server "$SERVER_PID"
