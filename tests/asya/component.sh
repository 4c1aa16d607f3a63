#!/usr/bin/env bash
# component.sh WRITE_MODE: Asya's state-proxy component tests (testing/component/state-proxy/
# tests, unmodified) against `asya-state serve`, driven through Asya's runtime (unmodified).
# Run by t_asya.sh inside a private mount namespace (unshare -rm) whose /run is a fresh
# tmpfs: the runtime and the tests use fixed paths there, as in Asya's pod
# (/var/run/asya/asya-runtime.sock, /var/run/asya/state/meta.sock), and nothing is left
# on the host. What replaces their docker compose (the one adaptation):
#   - the connector is `asya-state serve` on /var/run/asya/state/meta.sock, on the bucket
#     ASYA_BUCKET of NATS_URL (a server with max_payload raised, for the 1 MiB value);
#   - the runtime is asya_runtime.py with ASYA_HANDLER=asya_testing.handlers.state_ops.
#     state_ops_handler and ASYA_STATE_PROXY_MOUNTS=meta:/state/meta:write=WRITE_MODE, as
#     the compose profiles set (WRITE_MODE buffered for the CAS profiles, passthrough:
#     chunked PUTs).
# Environment: ASYA, NATS_URL, ASYA_BUCKET, ASYA_UPSTREAM, PY (a python3 with pytest), OUT
# (a directory for the logs). Prints pytest's output; exits with pytest's status.
set -u
mode=$1
mount -t tmpfs tmpfs /run || exit 90
mkdir -p /run/asya/state
sock=/var/run/asya/state/meta.sock
CONNECTOR_SOCKET=$sock NATS_KV_BUCKET=$ASYA_BUCKET STATE_PREFIX=component_$mode \
    "$ASYA" serve >"$OUT/serve-$mode.log" 2>&1 &
serve=$!
ASYA_HANDLER=asya_testing.handlers.state_ops.state_ops_handler \
    ASYA_STATE_PROXY_MOUNTS="meta:/state/meta:write=$mode" \
    PYTHONPATH=$ASYA_UPSTREAM/src/asya-testing \
    "$PY" "$ASYA_UPSTREAM/src/asya-runtime/asya_runtime.py" >"$OUT/runtime-$mode.log" 2>&1 &
runtime=$!
for _ in $(seq 200); do
    [ -S "$sock" ] && [ -S /var/run/asya/asya-runtime.sock ] && break
    sleep 0.05
done
cd "$ASYA_UPSTREAM/testing/component/state-proxy" || exit 91
CONNECTOR_PROFILE=nats-kv-$mode timeout 120 "$PY" -m pytest -p no:cacheprovider -rs -v tests/
rc=$?
kill -TERM "$runtime" "$serve"
wait "$serve"
src=$?
wait "$runtime"
echo "# serve exit status after SIGTERM: $src"
exit $rc
