#!/usr/bin/env bash
# t_readme.sh: README.md's shell blocks run in order, in one shell, as a reader on a fresh
# machine would (issue 16), so the README cannot drift from what works. readme_blocks.py
# extracts them (blocks marked `<!-- norun: reason -->` are left out: Docker, the suite itself)
# and moves the README's nats-server from port 4222 to a free one. The shell starts with an
# empty environment (PATH, HOME, TMPDIR only) in the repository root, and without a Docker
# engine, as on a fresh machine (DOCKER_HOST names no socket: demo/run would otherwise try
# Docker's nats image, which needs a registry; t_image.sh covers the Docker path). Afterwards the bytes are
# checked independently: the README's own server is gone (its last block stops it), so a
# server of this test is started on the JetStream store that server left behind, and kvtool
# reads the values the blocks wrote. Builds nothing: it runs `make demo` with what is built.
. "$(dirname "$0")/lib.sh"

port=$(free_port)
script=$TMP/readme.sh
if python3 "$ROOT/tests/integration/readme_blocks.py" "$ROOT/README.md" "$port" \
        >"$script" 2>"$TMP/norun"; then
    ok "every norun block of the README says why"
else
    fail "every norun block of the README says why" "$(cat "$TMP/norun")"
fi
sed 's/^norun /# left out: README line /' "$TMP/norun"

mkdir -p "$TMP/home" "$TMP/tmp"
start=$(date +%s)
(cd "$ROOT" && exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$TMP/home" TMPDIR="$TMP/tmp" LANG=C.UTF-8 DOCKER_HOST="unix://$TMP/no-docker.sock" \
    setsid timeout 240 bash "$script") >"$TMP/out" 2>&1 &
pid=$!
wait "$pid"
rc=$?
kill -- -"$pid" 2>/dev/null   # anything a block left running (its own process group)
echo "# README blocks: exit $rc after $(($(date +%s) - start)) s"

n=0
while read -r _ _ num _ _ line; do
    n=$((n + 1))
    line=${line%)}
    if grep -qx "readme-block $num done (line $line)" "$TMP/out"; then
        ok "README block $num (line $line) runs"
    else
        fail "README block $num (line $line) runs" "$(grep -v '^\[[0-9]*\] ' "$TMP/out" | tail -n 8)"
        break
    fi
done < <(grep -E '^# block [0-9]+ \(README line [0-9]+\)$' "$script")
[ "$n" -gt 0 ] || fail "README blocks" "none extracted"
expect_eq "the README's blocks exit 0" 0 "$rc"

# What the blocks printed: asya-state key shows the raw key of the example's file.
if grep -qx 'my-actor.hello.txt' "$TMP/out"; then ok "asya-state key prints the raw key"
else fail "asya-state key prints the raw key" "$(grep -v '^\[[0-9]*\] ' "$TMP/out" | tail -n 8)"; fi

# The README's server is stopped by its own last block.
if wait_port "$port" 1; then fail "the README's nats-server is stopped" "port $port answers"
else ok "the README's nats-server is stopped"; fi

# Its store, read back by a server of ours and kvtool.
store=$(find "$TMP/tmp" -mindepth 1 -maxdepth 1 -type d -name 'tmp.*' | head -n 1)
if [ -n "$store" ] && start_server -sd "$store"; then
    v=$("$KVTOOL" -s "$SERVER_URL" get state my-actor.hello.txt 2>&1)
    expect_eq "kvtool: bucket state holds my-actor.hello.txt = hi (preload example)" "hi" "$v"
    "$KVTOOL" -s "$SERVER_URL" get actor-state my-actor.hello.txt >"$TMP/v" 2>&1
    if printf 'bye\n' | cmp -s - "$TMP/v"; then
        ok "kvtool: actor-state holds 'bye\\n' (put --revision)"
    else fail "kvtool: actor-state holds 'bye\\n' (put --revision)" "$(od -c "$TMP/v" | head -3)"; fi
    h=$("$KVTOOL" -s "$SERVER_URL" history actor-state my-actor.hello.txt 2>&1 | grep -c ' PUT ')
    expect_eq "kvtool: actor-state keeps both revisions of hello.txt (--history 5)" 2 "$h"
else
    fail "the README's JetStream store" "no store under $TMP/tmp, or no server on it"
fi
