#!/usr/bin/env bash
# t_scale.sh: every single-name lookup costs the same requests whatever the key space holds
# (issue 12): a directory is its marker, never a scan. requests.py counts the messages the
# shim's connection sends (nats-server's monitoring /connz) for each operation, at 100 and at
# 10,000 keys under the mount's prefix, flat and nested; the counts must be equal. Again with
# the read cache (read=watch and read=meta) caught up: stat, exists, isdir, a missing open and
# a listing cost no request, and another client's put and delete show in listings and stat
# within the staleness bound (mirror_stale.py). Then the
# directory rules: a listing repairs a directory written without markers, rmdir after it,
# concurrent creators of one directory, and listings after 5,000 unlinks (nats.c's watcher
# timed out after a few thousand delete markers).
. "$(dirname "$0")/lib.sh"

MPORT=$(free_port)
start_server -m "$MPORT" || { fail "scale: a server with monitoring starts" "no server"; exit 1; }
export NATS_URL=$SERVER_URL
MON=http://127.0.0.1:$MPORT
PY=$(python3 -c 'import sys; print(sys.executable)')
run() { timeout -k 5 120 env LD_PRELOAD="$SHIM" "$@"; }

# cache: none (direct requests), or the read cache's mirror (read=watch: keys and values;
# read=meta: keys and metadata), counted once it has caught up: every lookup and a listing
# then cost no request at all.
for cache in none watch meta; do
  for layout in flat nested; do
    for n in 100 10000; do
        B=$(new_bucket)
        if [ "$layout" = flat ]; then fmt='sc.u%d.json'; else fmt='sc.users/u%d/state.json'; fi
        $KVTOOL fill "$B" "$fmt" "$n" 1024 || fail "scale: fill $n keys" "kvtool fill failed"
        err=$TMP/req-$cache-$layout-$n.err
        cenv=()
        [ "$cache" = none ] || cenv=(STATE_READ_CACHE=$cache ASYA_STATE_LOG=info)
        env "${cenv[@]}" NATS_KV_BUCKET="$B" STATE_MOUNT=/state/sc STATE_PREFIX=sc \
            timeout -k 5 120 env LD_PRELOAD="$SHIM" \
            "$PY" "$ROOT/tests/integration/requests.py" "$MON" /state/sc "$err" \
            >"$TMP/req-$cache-$layout-$n.out" 2>"$err"
    done
    a=$(cat "$TMP/req-$cache-$layout-100.out")
    b=$(cat "$TMP/req-$cache-$layout-10000.out")
    t="scale: $layout"
    [ "$cache" = none ] || t="scale: read=$cache: $layout"
    if [ "$(echo "$a" | wc -l)" -ge 7 ]; then
        ok "$t: requests.py counted every operation ($(echo "$a" | paste -sd' '))"
    else
        fail "$t: requests.py counted every operation" "$a $(cat "$TMP/req-$cache-$layout-100.err")"
    fi
    expect_eq "$t: the same requests per operation at 100 and at 10,000 keys" "$a" "$b"
    while read -r op c; do
        case $cache/$op in
        */create-in-seen-dir|*/create-at-root) max=1 ;;  # the commit only
        none/makedirs-new) max=7 ;; # Python: exists(d/x) 2, exists(d) 1 (a seen directory:
                                    # its marker first), mkdir of x and of y 2 each
        */makedirs-new) max=2 ;;    # the two markers' creates; every lookup from the mirror
        none/*) max=3 ;;
        *) max=0 ;;                 # stat, exists, isdir, missing open, listdir: the mirror
        esac
        if [ "$c" -le "$max" ]; then
            ok "$t: $op costs $c requests (at most $max)"
        else
            fail "$t: $op costs at most $max requests" "$c"
        fi
    done <<<"$b"
  done
done

# The mirror follows other clients: a listing (and stat) after kvtool's put and delete in a
# 10-entry directory reflects each within the staleness bound (the mirror's delivery: ms on
# loopback; 5 s allowed here), still without a request.
for cache in watch meta; do
    B=$(new_bucket)
    $KVTOOL fill "$B" 'st.d/f%d' 10 64 || fail "scale: fill 10 keys" "kvtool fill failed"
    err=$TMP/stale-$cache.err
    out=$(NATS_KV_BUCKET=$B STATE_MOUNT=/state/st STATE_PREFIX=st STATE_READ_CACHE=$cache \
          ASYA_STATE_LOG=info run "$PY" "$ROOT/tests/integration/mirror_stale.py" "$MON" \
          "$err" "$KVTOOL" "$B" 2>"$err")
    echo "# read=$cache: $(echo "$out" | paste -sd' ')"
    put=$(echo "$out" | awk '$1 == "put" { print $3 }')
    del=$(echo "$out" | awk '$1 == "del" { print $3 }')
    expect_eq "scale: read=$cache: another client's put and delete reflected by listdir and stat" \
        "stat 1|exists False|names f0 f1 f2 f3 f4 f5 f6 f7 f8 f9" \
        "$(echo "$out" | grep -E '^(stat|exists|names) ' | paste -sd'|')"
    if echo "$out" | grep -qE '^(put|del) never'; then
        fail "scale: read=$cache: each change listed within 5 s" "$out $(tail -3 "$err")"
    else
        ok "scale: read=$cache: each change listed within 5 s ($(echo "$out" | awk '$1 == "put" || $1 == "del" { printf "%s %s ms ", $1, $2 }'))"
    fi
    expect_eq "scale: read=$cache: polling listdir while waiting sent no request" "0 0" "$put $del"
done

# A directory written by another client without markers: invisible to stat until a listing
# finds it and writes its marker; then rmdir works once it is empty.
B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/mk STATE_PREFIX=mk
$KVTOOL put "$B" 'mk.users/1.json' '{}' >/dev/null
out=$(run "$PY" -c '
import os
r = "/state/mk"
a = os.path.isdir(r + "/users")
b = os.listdir(r)
c = os.path.isdir(r + "/users")
os.unlink(r + "/users/1.json")
os.rmdir(r + "/users")
print(a, b, c, os.path.exists(r + "/users"))' 2>&1)
expect_eq "scale: a marker-less directory: not a directory, listed, repaired, removable" \
    "False ['users'] True False" "$out"
expect_eq "scale: ... and the listing wrote its marker (rmdir removed it again)" \
    "" "$($KVTOOL get "$B" 'mk.users/' 2>/dev/null)"

# Concurrent creators of one directory: one mkdir wins, every makedirs(exist_ok) succeeds.
out=$(run "$PY" -c '
import os, threading, errno
res = []
def mk():
    try:
        os.mkdir("/state/mk/race"); res.append("made")
    except FileExistsError:
        res.append("EEXIST")
ts = [threading.Thread(target=mk) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(res.count("made"), res.count("EEXIST"))' 2>&1)
expect_eq "scale: 8 threads mkdir one directory: one makes it, 7 get EEXIST" "1 7" "$out"
pids=()
for i in 1 2 3 4; do
    run "$PY" -c 'import os; os.makedirs("/state/mk/p/q/r", exist_ok=True); open("/state/mk/p/q/r/f'$i'", "w").close()' &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
expect_eq "scale: 4 processes makedirs(exist_ok) one tree and create in it" \
    "0|f1 f2 f3 f4" "$rc|$(run "$PY" -c 'import os; print(*sorted(os.listdir("/state/mk/p/q/r")))')"

# 5,000 unlinks, then listings, mkdir and rmdir still work (delete markers are skipped by us).
B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/del STATE_PREFIX=del
$KVTOOL fill "$B" 'del.t/f%d' 5000 16
$KVTOOL put "$B" 'del.t/' '' >/dev/null
out=$(run "$PY" -c '
import os, time
d = "/state/del/t"
for n in os.listdir(d):
    os.unlink(os.path.join(d, n))
t = time.time()
left = os.listdir(d)
os.mkdir(d + "/sub"); os.rmdir(d + "/sub")
os.rmdir(d)
print(len(left), os.path.exists(d))' 2>&1)
expect_eq "scale: after 5,000 unlinks: listdir, mkdir, rmdir work" "0 False" "$out"
