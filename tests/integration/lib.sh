# lib.sh: sourced by every tests/integration/t_* file (bash). The contract they rely on:
#
#   Environment from tests/integration/run: NATS_URL (the shared server), ASYA_TEST_SERVER_PID,
#   KVTOOL, SHIM, ASYA, ROOT. A test file may also be run alone (lib.sh then starts a private
#   server and builds nothing: run `make` first).
#
#   new_bucket [kvtool bucket-add options]   creates a uniquely named bucket, echoes its name
#   ok NAME                                  prints "ok - NAME"
#   fail NAME REASON                         prints "not ok - NAME: REASON"
#   check NAME CMD...                        ok when CMD exits 0, else fail with its output
#   expect_eq NAME EXPECTED ACTUAL           ok when equal, else fail showing both
#   start_server [nats-server args]          a private server (fault, auth, cluster tests):
#                                            sets SERVER_URL, SERVER_PID, SERVER_STORE,
#                                            SERVER_PORT; waits until it accepts
#   stop_server PID                          stops it (TERM, then KILL) and removes its store
#   free_port                                echoes a free loopback TCP port
#   wait_port PORT [SECONDS]                 waits until 127.0.0.1:PORT accepts
#   with_shim CMD...                         runs CMD with LD_PRELOAD=$SHIM (the rest of the
#                                            environment as set by the caller)
#   TMP                                      a per-file temporary directory, removed at exit
#                                            (moved into directory $KEEP_TMP when that is set)
#
# Every server started here is killed by an EXIT trap, so a failing test leaves nothing behind.
# Output lines other than "ok - " / "not ok - " are ignored by the runner: print diagnostics
# freely (prefix them with "# ").

set -u

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KVTOOL=${KVTOOL:-$ROOT/build/tools/kvtool}
SHIM=${SHIM:-$ROOT/build/libasya-state-nats-kv.so}
ASYA=${ASYA:-$ROOT/build/asya-state}
export ROOT KVTOOL SHIM ASYA

TMP=$(mktemp -d "${TMPDIR:-/tmp}/asya-it.XXXXXX")
_LIB_PIDS=()
_LIB_STORES=()

_lib_cleanup() {
    local p
    for p in "${_LIB_PIDS[@]}"; do
        kill "$p" 2>/dev/null && { sleep 0.1; kill -9 "$p" 2>/dev/null; }
    done
    for p in "${_LIB_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for p in "${_LIB_STORES[@]}"; do rm -rf "$p"; done
    if [ -n "${KEEP_TMP:-}" ] && mkdir -p "$KEEP_TMP" && mv "$TMP" "$KEEP_TMP/"; then
        echo "# kept in $KEEP_TMP/$(basename "$TMP")"
    fi
    rm -rf "$TMP"
}
trap _lib_cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok - $1"; }

fail() {
    local reason=${2:-failed}
    reason=${reason//$'\n'/ | }
    echo "not ok - $1: ${reason:0:600}"
}

check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$name"
    else
        fail "$name" "exit $?: $out"
    fi
}

expect_eq() {
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        fail "$1" "expected '$2', got '$3'"
    fi
}

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    local port=$1 secs=${2:-10}
    python3 - "$port" "$secs" <<'EOF'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

# start_server [extra nats-server args]: a private JetStream server on a free loopback port.
# Extra args come last, so a config file (-c) or auth flags can be added.
start_server() {
    local port store tries
    for tries in 1 2 3; do
        port=$(free_port)
        store=$(mktemp -d "${TMPDIR:-/tmp}/asya-it-js.XXXXXX")
        nats-server -a 127.0.0.1 -p "$port" -js -sd "$store" "$@" \
            >"$store.log" 2>&1 &
        SERVER_PID=$!
        _LIB_PIDS+=("$SERVER_PID")
        _LIB_STORES+=("$store" "$store.log")
        if wait_port "$port" 10 && kill -0 "$SERVER_PID" 2>/dev/null; then
            SERVER_PORT=$port
            SERVER_STORE=$store
            SERVER_URL=nats://127.0.0.1:$port
            export SERVER_URL SERVER_PID SERVER_STORE SERVER_PORT
            return 0
        fi
        echo "# start_server: port $port did not come up: $(tail -n 3 "$store.log")" >&2
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    done
    return 1
}

stop_server() {
    local pid=$1 i store=
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ "${SERVER_PID:-}" = "$pid" ] && store=${SERVER_STORE:-}
    [ -n "$store" ] && rm -rf "$store" "$store.log"
    return 0
}

# new_bucket [bucket-add options]: a unique bucket on $NATS_URL; echoes the name.
new_bucket() {
    # Usually called as $(new_bucket): a counter in a file survives the subshell.
    local name seq
    seq=$(($(cat "$TMP/.bucket_seq" 2>/dev/null || echo 0) + 1))
    echo "$seq" >"$TMP/.bucket_seq"
    name="t_$(basename "$0" | tr -c 'A-Za-z0-9_\n' '_')_$$_$seq"
    if ! "$KVTOOL" --wait bucket-add "$name" "$@" >/dev/null; then
        echo "# new_bucket: cannot create $name" >&2
        return 1
    fi
    echo "$name"
}

with_shim() {
    LD_PRELOAD=$SHIM "$@"
}

# Run alone (not from tests/integration/run): bring up a private server for this file.
if [ -z "${NATS_URL:-}" ] || [ -z "${ASYA_TEST_SERVER_PID:-}" ]; then
    start_server || { echo "not ok - lib.sh: cannot start nats-server"; exit 1; }
    NATS_URL=$SERVER_URL
    ASYA_TEST_SERVER_PID=$SERVER_PID
    export NATS_URL ASYA_TEST_SERVER_PID
fi
