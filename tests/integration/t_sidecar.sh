#!/usr/bin/env bash
# t_sidecar.sh: `asya-state serve` (issue 6, SPEC "Sidecar mode") against a real nats-server:
# the connector protocol endpoint by endpoint (sidecar_protocol.py), a handler in Asya's
# runtime style (sidecar_runtime.py), keys shared with the shim both ways, 503/504, the clean
# stop on SIGTERM with a request in flight, stale/live socket files, configuration errors.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENT=$HERE/sidecar_client.py

# serve_start NAME SOCKET [VAR=VALUE...] [-- serve args]: starts `asya-state serve` in the
# background with the environment given; sets SERVE_PID; waits until /healthz answers.
serve_start() {
    local name=$1 sock=$2 envs=() args=()
    shift 2
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    [ "${1:-}" = "--" ] && { shift; args=("$@"); }
    env CONNECTOR_SOCKET="$sock" "${envs[@]}" "$ASYA" serve "${args[@]}" \
        >"$TMP/$name.log" 2>&1 &
    SERVE_PID=$!
    _LIB_PIDS+=("$SERVE_PID") # lib.sh's EXIT trap stops it if the test dies first
    for _ in $(seq 100); do
        [ -S "$sock" ] && python3 "$CLIENT" "$sock" GET /healthz 2>/dev/null | grep -q '^200' &&
            return 0
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "# $name did not come up: $(tail -n 3 "$TMP/$name.log")"
    return 1
}

# serve_stop PID: SIGTERM, then waits; sets SERVE_RC to the exit status.
serve_stop() {
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    SERVE_RC=$?
}

# status SOCK METHOD PATH [BODY]: "STATUS ERROR-NAME" of one request.
status() { python3 "$CLIENT" "$@" | head -n 1; }

# healthz_becomes SOCK WANT: /healthz's status ("200 -", "503 unavailable") once it is WANT,
# or what it still is after 6 s.
healthz_becomes() {
    for _ in $(seq 60); do
        [ "$(status "$1" GET /healthz)" = "$2" ] && break
        sleep 0.1
    done
    status "$1" GET /healthz
}

[ -x "$ASYA" ] || { fail "sidecar: build" "$ASYA is missing (run make)"; exit 1; }

B=$(new_bucket) || exit 1
SMALL=$(new_bucket --max-value-size 1024) || exit 1
P=actor
S1=$TMP/s1.sock S2=$TMP/s2.sock S3=$TMP/s3.sock
serve_start s1 "$S1" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" STATE_PREFIX=$P || {
    fail "sidecar: starts" "$(tail -n 5 "$TMP/s1.log")"; exit 1; }
PID1=$SERVE_PID
ok "sidecar: starts and answers /healthz on CONNECTOR_SOCKET"
serve_start s2 "$S2" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" STATE_PREFIX=$P || exit 1
PID2=$SERVE_PID
serve_start s3 "$S3" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$SMALL" -- --max-body 4096 || exit 1
PID3=$SERVE_PID

S4=$TMP/s4.sock
serve_start s4 "$S4" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" STATE_PREFIX=$P \
    STATE_READ_CACHE=watch || exit 1
PID4=$SERVE_PID
S5=$TMP/s5.sock
serve_start s5 "$S5" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" STATE_PREFIX=$P \
    STATE_SIDECAR_CLIENTS=one || exit 1
PID5=$SERVE_PID
expect_eq "sidecar: the socket is created mode 0666 (another user in the pod connects)" 666 \
    "$(stat -c %a "$S1")"

export SOCK=$S1 SOCK2=$S2 SMALL_SOCK=$S3 QSOCK=$S4 BUCKET=$B SMALL_BUCKET=$SMALL PREFIX=$P KVTOOL
python3 "$HERE/sidecar_protocol.py"
python3 "$HERE/sidecar_runtime.py"
python3 "$HERE/sidecar_cas.py"
ONE_SOCK=$S5 python3 "$HERE/sidecar_clients.py"

# ---- the same keys through the shim, both ways ------------------------------------------
# Each shim run is bounded and writes to a file (no pipe a stray child could hold open), and
# runs the Python binary itself: `python3` may be a wrapper script (pyenv) that would put a
# shell under the shim too.
PY=$(python3 -c 'import sys; print(sys.executable)')
shim_env=(NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" STATE_PREFIX=$P STATE_MOUNT=/state/cache)
shim_py() { timeout -k 5 30 env "${shim_env[@]}" LD_PRELOAD="$SHIM" "$PY" "$@" >"$TMP/shim.out" 2>&1; }
if [ -f "$SHIM" ]; then
    status "$S1" PUT /keys/both/from_sidecar.json '{"via": "sidecar"}' >/dev/null
    shim_py -c 'print(open("/state/cache/both/from_sidecar.json").read())'
    expect_eq "sidecar: a key written through the sidecar reads back through the shim" \
        '{"via": "sidecar"}' "$(cat "$TMP/shim.out")"
    shim_py -c 'open("/state/cache/both/from_shim.txt", "w").write("via shim")'
    got=$(python3 "$CLIENT" "$S1" GET /keys/both/from_shim.txt | tail -n 1)
    expect_eq "sidecar: a key written through the shim reads back through the sidecar" \
        "via shim" "$got"
    shim_py -c 'import os; print(sorted(os.listdir("/state/cache/both")))'
    expect_eq "sidecar: the shim lists what both wrote" \
        "['from_shim.txt', 'from_sidecar.json']" "$(cat "$TMP/shim.out")"
else
    fail "sidecar: shim round trip" "$SHIM is missing (run make)"
fi

# ---- latency figures (sidecar_bench.py), checked by the counter they leave -------------------
python3 "$HERE/sidecar_bench.py" "$S1" 200 | sed 's/^/# /'
expect_eq "sidecar: 200 read-modify-write cycles through the sidecar count to 200" 200 \
    "$("$KVTOOL" get "$B" "$P.bench/counter" 2>&1)"
if [ -f "$SHIM" ]; then
    shim_py "$HERE/sidecar_bench.py" --shim /state/cache 200
    sed 's/^/# /' "$TMP/shim.out"
    expect_eq "sidecar: the same 200 cycles through the shim count to 200" 200 \
        "$("$KVTOOL" get "$B" "$P.bench_counter" 2>&1)"
fi

python3 "$HERE/sidecar_latency.py" "$S1" 200 1 8 | sed 's/^/# /'

# ---- readiness, 503, 500 and 504 ------------------------------------------------------------
# serve_up NAME SOCK VAR=VALUE...: starts serve, waits for the socket only (not /healthz).
serve_up() {
    local name=$1 sock=$2
    shift 2
    env CONNECTOR_SOCKET="$sock" "$@" "$ASYA" serve >"$TMP/$name.log" 2>&1 &
    SERVE_PID=$!
    _LIB_PIDS+=("$SERVE_PID")
    for _ in $(seq 200); do [ -S "$sock" ] && return 0; sleep 0.05; done
    return 1
}
dead_port=$(free_port)
serve_up s_dead "$TMP/dead.sock" NATS_URL="nats://127.0.0.1:$dead_port" \
    NATS_KV_BUCKET="$B" NATS_TIMEOUT_MS=1000 || fail "sidecar: starts without a server" "no socket"
expect_eq "sidecar: no NATS server: one line at start saying so" 1 \
    "$(grep -c 'not ready: cannot reach the NATS server' "$TMP/s_dead.log")"
expect_eq "sidecar: no NATS server: /healthz 503 unavailable" "503 unavailable" \
    "$(status "$TMP/dead.sock" GET /healthz)"
expect_eq "sidecar: no NATS server reachable: 503 unavailable" "503 unavailable" \
    "$(status "$TMP/dead.sock" GET /keys/anything)"
serve_stop "$SERVE_PID"
expect_eq "sidecar: exits 0 on SIGTERM" 0 "$SERVE_RC"

serve_up s_nobucket "$TMP/nobucket.sock" NATS_URL="$NATS_URL" NATS_KV_BUCKET=no-such-bucket-$$ ||
    fail "sidecar: starts without its bucket" "no socket"
expect_eq "sidecar: missing bucket: one line at start naming it" 1 \
    "$(grep -c "not ready: cannot use bucket no-such-bucket-$$" "$TMP/s_nobucket.log")"
expect_eq "sidecar: missing bucket: /healthz 503" "503 unavailable" \
    "$(status "$TMP/nobucket.sock" GET /healthz)"
expect_eq "sidecar: missing bucket (EIO): 500 internal_error, not 503" "500 internal_error" \
    "$(status "$TMP/nobucket.sock" GET /keys/anything)"
"$KVTOOL" bucket-add "no-such-bucket-$$" >/dev/null
expect_eq "sidecar: keeps retrying: /healthz 200 once the bucket exists" "200 -" \
    "$(healthz_becomes "$TMP/nobucket.sock" "200 -")"
serve_stop "$SERVE_PID"

# The bucket deleted under a running sidecar: a missing bucket is EIO (500), not "server
# unreachable" (503, which the runtime retries) nor a timeout (504); only the first get waits
# out NATS_TIMEOUT_MS (a deleted stream's direct get is not answered), then each asks the
# server at once; all is well again once the bucket is back.
GONE=$(new_bucket) || exit 1
serve_start s_gone "$TMP/gone.sock" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$GONE" \
    NATS_TIMEOUT_MS=1000 || exit 1
status "$TMP/gone.sock" PUT /keys/k v1 >/dev/null
"$KVTOOL" bucket-del "$GONE" >/dev/null
gone=$(python3 - "$CLIENT" "$TMP/gone.sock" <<'PY'
import sys, time
sys.path.insert(0, __import__("os").path.dirname(sys.argv[1]))
from sidecar_client import request
out = []
for method, body in [("GET", None), ("GET", None), ("HEAD", None), ("PUT", b"v2"),
                     ("DELETE", None)]:
    t0 = time.monotonic()
    st, _, _ = request(sys.argv[2], method, "/keys/k", body=body)
    out.append(f"{method} {st} {'fast' if time.monotonic() - t0 < 0.5 else 'slow'}")
print(", ".join(out))
PY
)
expect_eq "sidecar: bucket deleted while serving: 500 for every operation, only the first waits" \
    "GET 500 slow, GET 500 fast, HEAD 500 fast, PUT 500 fast, DELETE 500 fast" "$gone"
expect_eq "sidecar: bucket deleted: one line says so" 1 \
    "$(grep -c "bucket '$GONE' has been deleted" "$TMP/s_gone.log")"
expect_eq "sidecar: bucket deleted: /healthz 503" "503 unavailable" \
    "$(healthz_becomes "$TMP/gone.sock" "503 unavailable")"
"$KVTOOL" bucket-add "$GONE" >/dev/null
expect_eq "sidecar: the bucket made again: PUT 204, GET gives it" "204 -|v3" \
    "$(status "$TMP/gone.sock" PUT /keys/k v3)|$("$KVTOOL" get "$GONE" k)"
expect_eq "sidecar: the bucket made again: /healthz 200" "200 -" \
    "$(healthz_becomes "$TMP/gone.sock" "200 -")"
serve_stop "$SERVE_PID"
serve_up s_mode "$TMP/mode.sock" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" \
    CONNECTOR_SOCKET_MODE=0660 || fail "sidecar: CONNECTOR_SOCKET_MODE" "no socket"
expect_eq "sidecar: CONNECTOR_SOCKET_MODE=0660 sets the socket's mode" 660 \
    "$(stat -c %a "$TMP/mode.sock")"
serve_stop "$SERVE_PID"

if start_server; then
    "$KVTOOL" -s "$SERVER_URL" bucket-add stopme >/dev/null
    serve_start s_stop "$TMP/stop.sock" NATS_URL="$SERVER_URL" NATS_KV_BUCKET=stopme \
        NATS_TIMEOUT_MS=2500 || exit 1
    spid=$SERVE_PID
    expect_eq "sidecar: private server: PUT 204" "204 -" \
        "$(status "$TMP/stop.sock" PUT /keys/k v)"
    kill -STOP "$SERVER_PID"
    expect_eq "sidecar: server frozen (SIGSTOP): 504 timeout" "504 timeout" \
        "$(status "$TMP/stop.sock" GET /keys/k)"
    # A GET alone in flight is answered on the libmicrohttpd thread that read it; held there
    # by the frozen server (2.5 s), it must not hold what arrives meanwhile: the standby
    # acceptor (serve_standby.c) takes new connections to the spare daemon, so /healthz is
    # answered at once and a second GET times out on its own clock (queued behind the first
    # they would take >= 2.2 s and >= 4.7 s).
    expect_eq "sidecar: server frozen: a GET held 2.5 s holds neither /healthz nor another GET" \
        "first 504; healthz prompt; second 504 on its own clock" \
        "$(python3 - "$TMP/stop.sock" "$HERE" <<'PY'
import sys, threading, time
sys.path.insert(0, sys.argv[2])
from sidecar_client import request
sock, res = sys.argv[1], {}


def timed(name, path):
    t0 = time.monotonic()
    res[name] = (request(sock, "GET", path)[0], time.monotonic() - t0)


first = threading.Thread(target=timed, args=("first", "/keys/k"))
first.start()
time.sleep(0.3)
timed("healthz", "/healthz")
timed("second", "/keys/k")
first.join()
hz, second = res["healthz"], res["second"]
print(f"first {res['first'][0]}; "
      + ("healthz prompt" if hz[0] in (200, 503) and hz[1] < 1.0 else f"healthz {hz}") + "; "
      + ("second 504 on its own clock" if second[0] == 504 and second[1] < 3.7
         else f"second {second}"))
PY
)"
    kill -CONT "$SERVER_PID"
    serve_stop "$spid"
    stop_server "$SERVER_PID"
else
    fail "sidecar: 504" "cannot start a private nats-server"
fi

# ---- clean stop with a request in flight --------------------------------------------------
serve_start s_inflight "$TMP/inflight.sock" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" \
    STATE_PREFIX=$P || exit 1
python3 "$HERE/sidecar_shutdown.py" "$SERVE_PID" "$TMP/inflight.sock"
expect_eq "sidecar: the request in flight at SIGTERM is stored" "hello world" \
    "$("$KVTOOL" get "$B" "$P.inflight" 2>&1)"
wait "$SERVE_PID" 2>/dev/null
expect_eq "sidecar: exits 0 after the in-flight request" 0 "$?"
check "sidecar: socket file removed at exit" test ! -e "$TMP/inflight.sock"

# ---- socket files --------------------------------------------------------------------------
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' \
    "$TMP/stale.sock"
serve_start s_stale "$TMP/stale.sock" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" &&
    ok "sidecar: a stale socket file is replaced" ||
    fail "sidecar: a stale socket file is replaced" "$(tail -n 3 "$TMP/s_stale.log")"
stale_pid=$SERVE_PID
CONNECTOR_SOCKET=$TMP/stale.sock NATS_URL=$NATS_URL NATS_KV_BUCKET=$B timeout 10 "$ASYA" serve \
    >"$TMP/second.log" 2>&1
rc=$?
expect_eq "sidecar: a live socket is not taken over (exit 1)" 1 "$rc"
expect_eq "sidecar: the live server still answers" "200 -" \
    "$(status "$TMP/stale.sock" GET /healthz)"
serve_stop "$stale_pid"
echo keep >"$TMP/regular"
CONNECTOR_SOCKET=$TMP/regular NATS_URL=$NATS_URL NATS_KV_BUCKET=$B timeout 10 "$ASYA" serve \
    >"$TMP/regular.log" 2>&1
expect_eq "sidecar: a regular file at CONNECTOR_SOCKET is refused and kept" "1 keep" \
    "$? $(cat "$TMP/regular")"

# ---- configuration and the command --------------------------------------------------------
out=$(env -u CONNECTOR_SOCKET NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" "$ASYA" serve 2>&1)
expect_eq "sidecar: without CONNECTOR_SOCKET: exit 1 naming it" "1 yes" \
    "$? $(grep -q CONNECTOR_SOCKET <<<"$out" && echo yes)"
out=$(env -u NATS_KV_BUCKET CONNECTOR_SOCKET="$TMP/x.sock" NATS_URL="$NATS_URL" "$ASYA" serve 2>&1)
expect_eq "sidecar: without NATS_KV_BUCKET: exit 1 naming it" "1 yes" \
    "$? $(grep -q NATS_KV_BUCKET <<<"$out" && echo yes)"
out=$(env -u NATS_URL CONNECTOR_SOCKET="$TMP/x.sock" NATS_KV_BUCKET="$B" "$ASYA" serve 2>&1)
expect_eq "sidecar: without NATS_URL: exit 1 naming it" "1 yes" \
    "$? $(grep -q NATS_URL <<<"$out" && echo yes)"
out=$(CONNECTOR_SOCKET="$TMP/x.sock" NATS_URL="$NATS_URL" NATS_KV_BUCKET="$B" \
    STATE_SIDECAR_CLIENTS=two "$ASYA" serve 2>&1)
expect_eq "sidecar: STATE_SIDECAR_CLIENTS neither one nor many: exit 1, one line naming it" \
    "1 1" "$? $(grep -c STATE_SIDECAR_CLIENTS <<<"$out")"
check "sidecar: asya-state --version" sh -c "'$ASYA' --version | grep -q '^asya-state [0-9]'"
check "sidecar: asya-state --help lists serve" sh -c "'$ASYA' --help | grep -q serve"
check "sidecar: asya-state serve --help" sh -c "'$ASYA' serve --help | grep -q CONNECTOR_SOCKET"
"$ASYA" nonsense >/dev/null 2>&1
expect_eq "sidecar: unknown command exits 2" 2 "$?"

# ---- the long-running sidecars stop cleanly -------------------------------------------------
for p in "$PID1" "$PID2" "$PID3" "$PID4" "$PID5"; do
    serve_stop "$p"
    expect_eq "sidecar: pid $p exits 0 on SIGTERM" 0 "$SERVE_RC"
done
