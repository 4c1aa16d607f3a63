#!/usr/bin/env bash
# t_asya.sh: Asya's own tests of the connector protocol, unmodified, against `asya-state serve`
# (issue 14): its server tests (src/asya-state-proxy/tests/test_server.py) and its state-proxy
# component tests (testing/component/state-proxy/tests: CRUD, streaming a 1 MiB value,
# /query), the latter driven through Asya's runtime (src/asya-runtime/asya_runtime.py) in
# both write modes of its profiles. Asya's files are not in this repository: they are read
# from ASYA_UPSTREAM (default: asya-upstream beside the repository, or beside the local
# repository it was cloned from; tests/asya/README.md
# says what it holds and where it comes from). Each upstream test is one ok/not ok line here;
# the ones skipped say why (tests/asya/asya_skips.py); the counts end the output.
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")/../asya" && pwd)
# A fresh clone (CI's: `git clone . $(mktemp -d)`) looks beside the repository it came from.
UP=${ASYA_UPSTREAM:-$ROOT/../asya-upstream}
if [ -z "${ASYA_UPSTREAM:-}" ] && [ ! -d "$UP" ]; then
    origin=$(git -C "$ROOT" remote get-url origin 2>/dev/null)
    case $origin in /*) UP=$origin/../asya-upstream ;; esac
fi
PY=/usr/bin/python3 # Debian's, with python3-pytest (scripts/deps.sh)

need=("$UP/src/asya-state-proxy/tests/test_server.py" "$UP/src/asya-runtime/asya_runtime.py"
      "$UP/src/asya-testing/asya_testing/handlers/state_ops.py"
      "$UP/testing/component/state-proxy/tests/conftest.py")
for f in "${need[@]}"; do
    if [ ! -f "$f" ]; then
        ok "asya upstream tests (skipped: $f is missing; see tests/asya/README.md)"
        exit 0
    fi
done
"$PY" -c 'import pytest' 2>/dev/null || {
    fail "asya upstream tests" "$PY has no pytest (scripts/deps.sh installs python3-pytest)"; exit 1; }
[ -x "$ASYA" ] || { fail "asya upstream tests" "$ASYA is missing (run make)"; exit 1; }

# report LABEL LOG: one ok/not ok line per test of a `pytest -v -rs` log; adds to the counts.
PASSED=0 FAILED=0 SKIPPED=0
report() {
    local label=$1 log=$2 line id verdict
    while IFS= read -r line; do
        case $line in
        *" PASSED"*|*" FAILED"*|*" ERROR"*|*" SKIPPED"*) ;;
        *) continue ;;
        esac
        [[ $line == *"::"* ]] || continue
        id=${line%% *}
        verdict=${line#"$id "}
        verdict=${verdict%% *}
        case $verdict in
        PASSED) ok "asya $label: $id"; PASSED=$((PASSED + 1)) ;;
        SKIPPED) echo "# asya $label: skipped $id"; SKIPPED=$((SKIPPED + 1)) ;;
        *) fail "asya $label: $id" "$verdict (see below)"; FAILED=$((FAILED + 1)) ;;
        esac
    done <"$log"
    grep -E '^(SKIPPED|FAILED|ERROR) ' "$log" | sed 's/^/# /'
    grep -qE '^E ' "$log" && grep -E '^(E |____)' "$log" | head -n 40 | sed 's/^/# /'
    local last
    last=$(grep -E '^=+ .* in [0-9.]+s' "$log" | tail -n 1)
    echo "# $label: $last"
    # a collection error or a crash leaves no per-test line: pytest's own summary must agree
    case $last in
    *failed*|*error*|"") fail "asya $label: pytest's summary" "${last:-none: $(tail -n 3 "$log")}" ;;
    esac
}

# ---- server tests: each test's fixture starts a sidecar (tests/asya/asya_state_proxy) -------
B=$(new_bucket) || exit 1
(cd "$UP/src/asya-state-proxy" &&
    NATS_URL=$NATS_URL ASYA_BUCKET=$B PYTHONPATH=$HERE timeout 120 \
        "$PY" -m pytest -p no:cacheprovider -p asya_skips -v -rs --basetemp="$TMP/pt" \
        tests/test_server.py) >"$TMP/server.log" 2>&1
report "server tests" "$TMP/server.log"

# ---- component tests, through the runtime, on a server taking 1 MiB values ----------------
echo 'max_payload: 8388608' >"$TMP/payload.conf"
if ! start_server -c "$TMP/payload.conf"; then
    fail "asya component tests" "cannot start a nats-server with max_payload 8 MiB"
elif ! unshare -rm true 2>/dev/null; then
    ok "asya component tests (skipped: no private mount namespace here: unshare -rm failed)"
else
    "$KVTOOL" -s "$SERVER_URL" bucket-add asya_component >/dev/null
    for mode in buffered passthrough; do
        NATS_URL=$SERVER_URL ASYA_BUCKET=asya_component ASYA_UPSTREAM=$UP PY=$PY OUT=$TMP \
            PYTEST_ADDOPTS="--basetemp=$TMP/pt-$mode" \
            unshare -rm "$HERE/component.sh" "$mode" >"$TMP/component-$mode.log" 2>&1
        report "component tests ($mode)" "$TMP/component-$mode.log"
        expect_eq "asya component tests ($mode): the sidecar exits 0 on SIGTERM after them" \
            "# serve exit status after SIGTERM: 0" \
            "$(grep '^# serve exit status' "$TMP/component-$mode.log")"
        # bytes checked by another client: the 1 MiB value test_write_and_read_1mb wrote
        # (and read back through the sidecar) is stored whole in NATS
        big=0
        for k in $("$KVTOOL" -s "$SERVER_URL" keys asya_component | grep "^component_$mode\..*stream-"); do
            [ "$("$KVTOOL" -s "$SERVER_URL" get asya_component "$k" | wc -c)" = 1048576 ] &&
                big=$((big + 1))
        done
        expect_eq "asya component tests ($mode): kvtool finds the 1 MiB value stored whole" 1 "$big"
    done
    stop_server "$SERVER_PID"
fi

echo "# Asya's upstream tests: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$PASSED" -gt 0 ] || fail "asya upstream tests" "none ran"
