#!/usr/bin/env bash
# t_cli.sh: the `asya-state` command (issue 7): make install, run, check, bucket add, ls/cat/rev,
# --help/--version (the Docker image: t_image.sh).
. "$(dirname "$0")/lib.sh"

# ---- make install DESTDIR PREFIX: the library, its backend and the command ----
dest=$TMP/x
if out=$(make -C "$ROOT" -s install DESTDIR="$dest" PREFIX=/usr 2>&1); then
    for f in usr/lib/asya/libasya-state-nats-kv.so usr/lib/asya/libasya-state-kv.so \
             usr/bin/asya-state; do
        if [ -s "$dest/$f" ]; then ok "install: $f"; else fail "install: $f" "missing"; fi
    done
    [ -x "$dest/usr/bin/asya-state" ] && ok "install: asya-state is executable" ||
        fail "install: asya-state is executable" "mode $(stat -c %a "$dest/usr/bin/asya-state")"
else
    fail "install" "$out"
fi

# ---- --help, --version, usage errors ----
v=$("$ASYA" --version)
expect_eq "--version" "asya-state 0.1.0" "$v"
for c in run check bucket ls cat rev serve; do
    out=$("$ASYA" $c --help 2>&1)
    case $out in usage:*) ok "$c --help";; *) fail "$c --help" "$out";; esac
done
"$ASYA" frobnicate >/dev/null 2>&1; expect_eq "unknown command exits 2" 2 $?
"$ASYA" cat >/dev/null 2>&1; expect_eq "cat without PATH exits 2" 2 $?

# ---- run ----
b=$(new_bucket)
out=$(env -u NATS_URL NATS_KV_BUCKET=$b "$ASYA" run -- true 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ $out == *NATS_URL* ]]; then ok "run: names a missing NATS_URL"
else fail "run: names a missing NATS_URL" "rc $rc: $out"; fi
out=$(env -u NATS_KV_BUCKET "$ASYA" run -- true 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ $out == *NATS_KV_BUCKET* ]]; then ok "run: names a missing NATS_KV_BUCKET"
else fail "run: names a missing NATS_KV_BUCKET" "rc $rc: $out"; fi

export NATS_KV_BUCKET=$b STATE_PREFIX=cli
# the build directory's library (beside build/asya-state)
env -u ASYA_STATE_LIB "$ASYA" run -- python3 -c \
    'open("/state/hello.txt", "w").write("from python")' 2>"$TMP/run.err"
v=$("$KVTOOL" get "$b" cli.hello.txt 2>&1)
expect_eq "run (build dir): python3 wrote a state file" "from python" "$v"
# the installed copy finds the installed library
if [ -x "$dest/usr/bin/asya-state" ]; then
    env -u ASYA_STATE_LIB "$dest/usr/bin/asya-state" run -- python3 -c \
        'open("/state/installed.txt", "w").write("installed")' 2>"$TMP/run2.err"
    v=$("$KVTOOL" get "$b" cli.installed.txt 2>&1)
    expect_eq "run (installed): finds ../lib/asya and writes" "installed" "$v"
fi
ASYA_STATE_LIB=$SHIM "$ASYA" run -- sh -c 'echo -n via-lib > /state/sh.txt'
v=$("$KVTOOL" get "$b" cli.sh.txt 2>&1)
expect_eq "run: ASYA_STATE_LIB is preloaded" "via-lib" "$v"
out=$(ASYA_STATE_LIB=$TMP/none.so "$ASYA" run -- true 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ $out == *ASYA_STATE_LIB* ]]; then ok "run: a bad ASYA_STATE_LIB is named"
else fail "run: a bad ASYA_STATE_LIB is named" "rc $rc: $out"; fi
"$ASYA" run -- /nonexistent/cmd 2>/dev/null; expect_eq "run: missing command exits 127" 127 $?
"$ASYA" run -- python3 -c 'import sys; sys.exit(7)'; expect_eq "run: exit status passes" 7 $?

# ---- ls, cat, rev ----
"$ASYA" run -- python3 -c '
import os
os.makedirs("/state/dir", exist_ok=True)
open("/state/dir/a name.txt", "w").write("spaced")
open("/state/dir/b.txt", "w").write("b")'
out=$("$ASYA" ls /state/dir 2>&1)
expect_eq "ls: decoded names (with a space)" $'a name.txt\nb.txt' "$out"
out=$("$ASYA" ls 2>&1)
case $out in *dir/*hello.txt*) ok "ls: root lists files and dir/";;
    *) fail "ls: root lists files and dir/" "$out";; esac
out=$("$ASYA" cat "/state/dir/a name.txt" 2>&1)
expect_eq "cat: absolute path under the mount" "spaced" "$out"
out=$("$ASYA" cat hello.txt 2>&1)
expect_eq "cat: path relative to the default mount" "from python" "$out"
r1=$("$KVTOOL" rev "$b" cli.hello.txt 2>&1)
r2=$("$ASYA" rev /state/hello.txt 2>&1)
expect_eq "rev: the key's revision" "$r1" "$r2"
"$ASYA" cat /state/missing >/dev/null 2>&1; expect_eq "cat: missing file exits 1" 1 $?
out=$("$ASYA" cat /elsewhere/x 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ $out == *"under no mount"* ]]; then ok "cat: a path outside the mounts"
else fail "cat: a path outside the mounts" "rc $rc: $out"; fi
out=$(ASYA_STATE_PROXY_MOUNTS="c:/state/cache:prefix=pc;d:/data:prefix=pd" \
      "$ASYA" run -- sh -c 'echo -n m > /data/k.txt' 2>&1 &&
      ASYA_STATE_PROXY_MOUNTS="c:/state/cache:prefix=pc;d:/data:prefix=pd" \
      "$ASYA" cat /data/k.txt 2>&1)
expect_eq "cat: resolved with ASYA_STATE_PROXY_MOUNTS" "m" "$out"

# ---- check ----
out=$("$ASYA" check 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == *"all checks passed"* ]] && [[ $out != *problem* ]]; then
    ok "check: passes on a healthy setup"
else fail "check: passes on a healthy setup" "rc $rc: $out"; fi
v=$("$KVTOOL" keys "$b" 2>&1 | grep -c check)
expect_eq "check: leaves no probe key" 0 "$v"
missing=t_cli_missing_$$
out=$(NATS_KV_BUCKET=$missing "$ASYA" check 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "^problem.*$missing.*does not exist.*bucket add"; then
    ok "check: names a missing bucket"
else fail "check: names a missing bucket" "rc $rc: $out"; fi
out=$(ASYA_STATE_PROXY_MOUNTS="a:/s/a:prefix=x;b:/s/b:prefix=x.y" "$ASYA" check 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "^problem.*mount /s/a"; then
    ok "check: reports overlapping mounts"
else fail "check: reports overlapping mounts" "rc $rc: $out"; fi
port=$(free_port)
out=$(NATS_URL=nats://127.0.0.1:$port NATS_TIMEOUT_MS=1000 "$ASYA" check 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "^problem.*server.*unreachable"; then
    ok "check: reports an unreachable server"
else fail "check: reports an unreachable server" "rc $rc: $out"; fi
out=$(env -u NATS_URL "$ASYA" check 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "^problem.*NATS_URL"; then ok "check: names NATS_URL"
else fail "check: names NATS_URL" "rc $rc: $out"; fi

# ---- bucket add, then check accepts it ----
nb=t_cli_new_$$
out=$("$ASYA" bucket add "$nb" --history 5 --ttl 1h --max-value-size 1MiB --storage memory 2>&1)
check "bucket add: creates $nb" test $? -eq 0
out=$(NATS_KV_BUCKET=$nb "$ASYA" check 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == *"bucket $nb: exists"* ]]; then ok "check: accepts the new bucket"
else fail "check: accepts the new bucket" "rc $rc: $out"; fi
check "bucket add: again with the same settings" \
    "$ASYA" bucket add "$nb" --history 5 --ttl 1h --max-value-size 1MiB --storage memory
"$ASYA" bucket add "$nb" --history 9 >/dev/null 2>&1
expect_eq "bucket add: other settings on an existing bucket fail" 1 $?
"$ASYA" bucket add bad.name >/dev/null 2>&1; expect_eq "bucket add: bad name exits 2" 2 $?
"$ASYA" bucket add x --ttl soon >/dev/null 2>&1; expect_eq "bucket add: bad --ttl exits 2" 2 $?
NATS_KV_BUCKET=$nb "$ASYA" run -- sh -c 'echo -n small > /state/v'
out=$(NATS_KV_BUCKET=$nb "$ASYA" run -- python3 -c '
import errno
try:
    with open("/state/big", "w") as f:
        f.write("x" * 2000000)
    print("written")
except OSError as e:
    print(errno.errorcode[e.errno])' 2>/dev/null)
expect_eq "bucket add: --max-value-size is enforced" EFBIG "$out"
out=$(NATS_KV_BUCKET=$nb "$ASYA" cat /state/v 2>&1)
expect_eq "bucket add: the new bucket holds a value" small "$out"
"$KVTOOL" bucket-del "$nb" >/dev/null 2>&1

# The Docker image: tests/integration/t_image.sh (it builds, runs and checks it).
