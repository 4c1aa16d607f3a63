#!/usr/bin/env bash
# t_cli.sh: the `asya-state` command (issues 7, 16): make install (man page, completion), run,
# check, bucket add|ls|info|edit|rm, ls/cat/rev/key/put/rm/history/revert/watch, getopt forms, exit
# statuses (0 ok, 1 not found/conflict, 2 usage, 3 server/configuration), the error texts and the
# man page rendered by man -l (the Docker image: t_image.sh).
. "$(dirname "$0")/lib.sh"

# ---- make install DESTDIR PREFIX: the library, its backend and the command ----
dest=$TMP/x
if out=$(make -C "$ROOT" -s install DESTDIR="$dest" PREFIX=/usr 2>&1); then
    for f in usr/lib/asya/libasya-state-nats-kv.so usr/lib/asya/libasya-state-kv.so \
             usr/bin/asya-state; do
        if [ -s "$dest/$f" ]; then ok "install: $f"; else fail "install: $f" "missing"; fi
    done
    for f in usr/share/man/man1/asya-state.1 usr/share/bash-completion/completions/asya-state; do
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
for c in run check bucket ls cat rev serve put rm key history revert watch; do
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

# ---- issue 16: the nats kv commands, getopt forms, exit statuses, error texts ----
# expect_rc NAME RC CMD...: CMD exits RC; its stderr is kept in $TMP/err, stdout in $TMP/out.
expect_rc() {
    local name=$1 want=$2 rc
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?
    if [ "$rc" -eq "$want" ]; then ok "$name"
    else fail "$name" "exit $rc (want $want): $(head -c 400 "$TMP/err")"; fi
}
# err_has NAME TEXT: the last command's stderr holds TEXT, in one line, and no nats.c
# location, and no bare strerror line.
err_has() {
    local e; e=$(cat "$TMP/err")
    if [[ $e == *"$2"* ]] && [[ $e != *".c:"[0-9]* ]] && ! grep -qx 'Input/output error' "$TMP/err" &&
       [ "$(grep -c . "$TMP/err")" -eq 1 ]; then ok "$1"
    else fail "$1" "stderr: $e"; fi
}
hb=$(new_bucket --history 5)
export NATS_KV_BUCKET=$hb STATE_PREFIX=p16

# put: from stdin, from a file, -, --create, --revision N (both option forms), --
printf one | "$ASYA" put /state/f.txt; check "put: from stdin" test "$("$KVTOOL" get "$hb" p16.f.txt)" = one
printf two >"$TMP/two"
check "put: from FILE" "$ASYA" put f.txt "$TMP/two"
expect_eq "put: FILE's bytes landed" two "$("$ASYA" cat f.txt)"
printf dash | "$ASYA" put -- f.txt -; expect_eq "put: - and -- " dash "$("$ASYA" cat f.txt)"
r=$("$ASYA" rev f.txt)
printf new | "$ASYA" put --revision="$r" f.txt; expect_eq "put --revision=N at N exits 0" 0 $?
expect_rc "put --revision N (stale) exits 1" 1 sh -c "printf x | '$ASYA' put --revision $r f.txt"
err_has "put --revision: says conflict" "revision conflict"
expect_rc "put --create on an existing value exits 1" 1 sh -c "printf x | '$ASYA' put --create f.txt"
err_has "put --create: says it exists" "already exists"
printf c | "$ASYA" put -c new/dir/c.txt; expect_eq "put -c: creates, with its directories" c \
    "$("$ASYA" cat new/dir/c.txt)"
expect_eq "put: the new directory is listed" "dir/" "$("$ASYA" ls new)"
expect_rc "put --revision=abc exits 2" 2 "$ASYA" put --revision=abc f.txt
expect_rc "put --create --revision exits 2" 2 "$ASYA" put --create --revision 3 f.txt
expect_rc "put to a directory exits 1" 1 sh -c "printf x | '$ASYA' put new"
err_has "put to a directory: Is a directory" "Is a directory"

# ls: FILE prints the file, -l, --json, --, several PATHs
expect_eq "ls FILE prints it, as ls does" "f.txt" "$("$ASYA" ls f.txt)"
expect_eq "ls -- FILE" "/state/f.txt" "$("$ASYA" ls -- /state/f.txt)"
out=$("$ASYA" ls -l new/dir)
if [[ $out =~ ^-\ +1\ +[0-9]+\ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\ c\.txt$ ]]; then
    ok "ls -l: type, size, revision, time, name"
else fail "ls -l: type, size, revision, time, name" "$out"; fi
out=$("$ASYA" ls --long new)
case $out in d*dir/) ok "ls --long: a directory";; *) fail "ls --long: a directory" "$out";; esac
out=$("$ASYA" ls --json new/dir | python3 -c 'import json,sys; e=json.load(sys.stdin)[0]
print(e["name"], e["path"], e["type"], e["size"], e["revision"] > 0, e["time"][-1])')
expect_eq "ls --json" "c.txt /state/new/dir/c.txt file 1 True Z" "$out"
expect_eq "ls --json FILE" "file" "$("$ASYA" ls --json f.txt | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["type"])')"
out=$("$ASYA" ls new new/dir)
expect_eq "ls: several PATHs, with headers" $'new:\ndir/\n\nnew/dir:\nc.txt' "$out"
expect_rc "ls: a missing PATH exits 1" 1 "$ASYA" ls nowhere
err_has "ls: a missing PATH says so" "nowhere: No such file or directory"
expect_rc "ls --bogus exits 2" 2 "$ASYA" ls --bogus
grep -q "unknown option '--bogus'" "$TMP/err" && ok "ls --bogus: names the option" ||
    fail "ls --bogus: names the option" "$(cat "$TMP/err")"

# cat: a directory, a missing file, several files
expect_rc "cat DIR exits 1" 1 "$ASYA" cat new
err_has "cat DIR: Is a directory" "new: Is a directory"
expect_rc "cat: missing exits 1" 1 "$ASYA" cat /state/missing
err_has "cat: missing says so" "/state/missing: No such file or directory"
expect_eq "cat: several PATHs" "newc" "$("$ASYA" cat f.txt new/dir/c.txt)"
expect_eq "cat -- PATH" "new" "$("$ASYA" cat -- f.txt)"
expect_eq "rev -- PATH" "$("$KVTOOL" rev "$hb" p16.f.txt)" "$("$ASYA" rev -- f.txt)"

# key: the raw key of a path, escaped; a directory's marker
expect_eq "key: escaped" "p16.a=20b/c.txt" "$("$ASYA" key '/state/a b/c.txt')"
expect_eq "key: a directory's marker" "p16.new/dir/" "$("$ASYA" key new/dir/)"
printf sp | "$ASYA" put 'sp ace/x y'
expect_eq "key: the key put wrote" "sp" "$("$KVTOOL" get "$hb" "$("$ASYA" key 'sp ace/x y')")"
expect_eq "ls: the same path, decoded" "x y" "$("$ASYA" ls 'sp ace')"

# history, revert
out=$("$ASYA" history f.txt | awk '{print $3, $4}' | tr '\n' ' ')
expect_eq "history: every kept revision, oldest first" "put 3 put 3 put 4 put 3 " "$out"
first=$("$ASYA" history --json f.txt | python3 -c 'import json,sys; h=json.load(sys.stdin)
print(h[0]["revision"], len(h), h[-1]["op"])')
expect_eq "history --json" "4" "$(echo "$first" | cut -d' ' -f2)"
r1=${first%% *}
check "revert PATH REV" "$ASYA" revert f.txt "$r1"
expect_eq "revert: the old value is back" one "$("$ASYA" cat f.txt)"
expect_rc "revert: a revision not kept exits 1" 1 "$ASYA" revert f.txt 999999
expect_rc "revert: REV not a number exits 2" 2 "$ASYA" revert f.txt abc
expect_rc "history: missing exits 1" 1 "$ASYA" history none.txt

# rm: a value, missing, -f, a directory, -d
check "rm PATH" "$ASYA" rm f.txt
expect_rc "cat after rm exits 1" 1 "$ASYA" cat f.txt
expect_eq "history: the delete is kept" "delete" "$("$ASYA" history f.txt | tail -1 | awk '{print $3}')"
expect_rc "rm: missing exits 1" 1 "$ASYA" rm f.txt
check "rm -f: missing is fine" "$ASYA" rm -f f.txt
expect_rc "rm DIR exits 1" 1 "$ASYA" rm new/dir
err_has "rm DIR: Is a directory" "Is a directory"
expect_rc "rm -d: a non-empty directory exits 1" 1 "$ASYA" rm -d new/dir
err_has "rm -d: not empty, said once" "Directory not empty"
check "rm then rm -d" sh -c "'$ASYA' rm new/dir/c.txt && '$ASYA' rm --dir new/dir"
expect_eq "rm -d: the directory is gone" "" "$("$ASYA" ls new)"

# watch: one line per change, decoded paths, --json; a path filter
"$ASYA" watch sp\ ace >"$TMP/watch.out" 2>"$TMP/watch.err" & wpid=$!
"$ASYA" watch --json >"$TMP/watchj.out" 2>&1 & wjpid=$!
sleep 1
printf 1 | "$ASYA" put 'sp ace/w'; printf 2 | "$ASYA" put 'sp ace/w'; "$ASYA" rm 'sp ace/w'
printf o | "$ASYA" put other.txt
for _ in $(seq 50); do [ "$(grep -c . "$TMP/watchj.out")" -ge 4 ] && break; sleep 0.1; done
kill "$wpid" "$wjpid" 2>/dev/null; wait "$wpid" "$wjpid" 2>/dev/null
out=$(sed -E 's/^([a-z]+) +[0-9]+ +[^ ]+ +/\1 /' "$TMP/watch.out" | tr '\n' ' ')
expect_eq "watch PATH: one line per change below PATH" "put /state/sp ace/w put /state/sp ace/w delete /state/sp ace/w " "$out"
out=$(python3 -c 'import json,sys
for l in open(sys.argv[1]): e=json.loads(l); print(e["op"], e["path"], e["revision"] > 0)' "$TMP/watchj.out" | tail -1)
expect_eq "watch --json: one object per line" "put /state/other.txt True" "$out"
# a watch survives a server restart (nats.c 3.4.1 watchers go silent after a reconnect)
if start_server; then
    wurl=$SERVER_URL wport=$SERVER_PORT wstore=$SERVER_STORE
    NATS_URL=$wurl "$KVTOOL" --wait bucket-add wb >/dev/null
    NATS_URL=$wurl NATS_KV_BUCKET=wb "$ASYA" watch >"$TMP/watchr.out" 2>&1 & wpid=$!
    sleep 1
    printf a | NATS_URL=$wurl NATS_KV_BUCKET=wb "$ASYA" put before
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
    nats-server -a 127.0.0.1 -p "$wport" -js -sd "$wstore" >"$wstore.log2" 2>&1 & SERVER_PID=$!
    _LIB_PIDS+=("$SERVER_PID")
    wait_port "$wport" 10
    for _ in $(seq 30); do
        printf b | NATS_URL=$wurl NATS_KV_BUCKET=wb NATS_TIMEOUT_MS=1000 "$ASYA" put after 2>/dev/null && break
        sleep 0.5
    done
    for _ in $(seq 100); do grep -q /state/after "$TMP/watchr.out" && break; sleep 0.1; done
    kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
    if grep -q /state/before "$TMP/watchr.out" && grep -q /state/after "$TMP/watchr.out"; then
        ok "watch: survives a server restart"
    else fail "watch: survives a server restart" "$(cat "$TMP/watchr.out")"; fi
    stop_server "$SERVER_PID"
else
    fail "watch: survives a server restart" "cannot start a private server"
fi

# exit statuses and the texts of server, configuration and usage errors
port=$(free_port)
expect_rc "server down: exit 3" 3 env NATS_URL=nats://127.0.0.1:$port NATS_TIMEOUT_MS=1000 "$ASYA" ls
err_has "server down: names the server, once" "cannot connect to NATS at nats://127.0.0.1:$port"
grep -q "ls: : " "$TMP/err" && fail "server down: no empty key" "$(cat "$TMP/err")" || ok "server down: no empty key"
expect_rc "server down: cat exits 3" 3 env NATS_URL=nats://127.0.0.1:$port NATS_TIMEOUT_MS=1000 "$ASYA" cat x
err_has "server down: cat says it once" "cannot connect to NATS"
expect_rc "no bucket set: exit 3" 3 env -u NATS_KV_BUCKET "$ASYA" ls
err_has "no bucket set: names NATS_KV_BUCKET" "NATS_KV_BUCKET"
grep -q STATE_MOUNT "$TMP/err" && fail "no bucket set: does not blame STATE_MOUNT" "$(cat "$TMP/err")" ||
    ok "no bucket set: does not blame STATE_MOUNT"
expect_rc "missing bucket: exit 3" 3 env NATS_KV_BUCKET=t_cli_nobucket_$$ "$ASYA" ls
err_has "missing bucket: says so and how to create it" "bucket add t_cli_nobucket_$$"
expect_rc "no NATS_URL: exit 3" 3 env -u NATS_URL "$ASYA" cat x
err_has "no NATS_URL: names it" "NATS_URL is not set"
expect_rc "unknown command: exit 2" 2 "$ASYA" frobnicate
expect_rc "missing PATH: exit 2" 2 "$ASYA" rev
expect_rc "global --server=URL" 0 "$ASYA" --server="$NATS_URL" ls
expect_rc "global --bucket NAME" 0 env -u NATS_KV_BUCKET "$ASYA" --bucket "$hb" ls
for c in ls cat put rm rev key history revert watch check bucket; do
    "$ASYA" $c --help | grep -q "exit status: 0 ok; 1 not found or conflict; 2 usage error; 3 server" &&
        ok "$c --help documents the exit statuses" || fail "$c --help documents the exit statuses" "missing"
done
"$ASYA" --help | grep -q "3 server or" && ok "--help documents the exit statuses" ||
    fail "--help documents the exit statuses" "missing"

# bucket add (--opt=value, Go durations), ls, info, rm
nb2=t_cli_b16_$$
check "bucket add: --replicas=1 --ttl 1h30m --history=3" "$ASYA" bucket add "$nb2" --replicas=1 --ttl 1h30m --history=3
out=$("$ASYA" bucket info --json "$nb2" | python3 -c 'import json,sys; b=json.load(sys.stdin)
print(b["ttl"], b["history"], b["replicas"], b["storage"])')
expect_eq "bucket info --json: ttl 1h30m, history 3" "1h30m0s 3 1 file" "$out"
out=$("$ASYA" bucket info "$nb2" | grep '^ttl:' | awk '{print $2}')
expect_eq "bucket info: ttl" "1h30m0s" "$out"
nb3=t_cli_b16h_$$
check "bucket add: --ttl 0.5s" "$ASYA" bucket add "$nb3" --ttl 0.5s --storage=memory
expect_eq "bucket add: --ttl 0.5s is half a second" "0.5s" \
    "$("$ASYA" bucket info --json "$nb3" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ttl"])')"
for bad in 90 1x 1h30 .s 5m-1s; do
    expect_rc "bucket add: --ttl $bad is refused (exit 2)" 2 "$ASYA" bucket add "$nb3" --ttl "$bad"
    grep -q "is not a duration" "$TMP/err" && ok "bucket add: --ttl $bad says why" ||
        fail "bucket add: --ttl $bad says why" "$(cat "$TMP/err")"
done
expect_rc "bucket add: --replicas=9 exits 2" 2 "$ASYA" bucket add x --replicas=9
expect_rc "bucket add: other settings exit 1" 1 "$ASYA" bucket add "$nb2" --history 7
err_has "bucket add: other settings, said without nats.c internals" "exists with other settings"
out=$("$ASYA" bucket ls)
if echo "$out" | grep -qx "$nb2" && echo "$out" | grep -qx "$hb"; then ok "bucket ls"
else fail "bucket ls" "$out"; fi
out=$("$ASYA" bucket ls --json | python3 -c 'import json,sys; print(sorted(b["name"] for b in json.load(sys.stdin)))')
[[ $out == *"'$nb2'"* ]] && ok "bucket ls --json" || fail "bucket ls --json" "$out"
"$ASYA" bucket ls -l | grep -q "^$nb2 " && ok "bucket ls -l" || fail "bucket ls -l" "missing"

# bucket edit: history, ttl, max value size, max bytes of an existing bucket (its stream's
# configuration updated); what the server then does is checked with kvtool
kv() { "$KVTOOL" "$@"; }
kv put "$nb2" k v0 >/dev/null
check "bucket edit: --history=4 --ttl 2h --max-value-size 1KiB --max-bytes 1MiB" \
    "$ASYA" bucket edit "$nb2" --history=4 --ttl 2h --max-value-size 1KiB --max-bytes 1MiB
out=$("$ASYA" bucket info --json "$nb2" | python3 -c 'import json,sys; b=json.load(sys.stdin)
print(b["ttl"], b["history"], b["max_value_size"], b["max_bytes"], b["storage"])')
expect_eq "bucket edit: bucket info shows the new settings" "2h0m0s 4 1024 1048576 file" "$out"
expect_eq "bucket edit: the values are kept (kvtool)" v0 "$(kv get "$nb2" k)"
for i in 1 2 3 4 5 6; do kv put "$nb2" k "v$i" >/dev/null; done
expect_eq "bucket edit --history 4: the server keeps 4 revisions (kvtool)" 4 \
    "$(kv history "$nb2" k | grep -c ' PUT ')"
head -c 2048 /dev/zero | tr '\0' x >"$TMP/big"
if kv put-stdin "$nb2" big <"$TMP/big" >/dev/null 2>&1; then
    fail "bucket edit --max-value-size 1KiB: the server refuses kvtool's 2 KiB put" "stored"
else ok "bucket edit --max-value-size 1KiB: the server refuses kvtool's 2 KiB put"; fi
expect_rc "bucket edit --max-value-size 1KiB: put of 2 KiB exits 1" 1 \
    env STATE_PREFIX= "$ASYA" --bucket "$nb2" put big "$TMP/big"
out=$("$ASYA" bucket edit --json "$nb2" --ttl=none --max-value-size none --max-bytes=none |
    python3 -c 'import json,sys; b=json.load(sys.stdin)
print(b["ttl"], b["history"], b["max_value_size"], b["max_bytes"])')
expect_eq "bucket edit --json: none removes the limits, history kept" "0s 4 -1 -1" "$out"
check "bucket edit: a 2 KiB value fits again (kvtool)" sh -c "'$KVTOOL' put-stdin '$nb2' big <'$TMP/big'"
check "bucket edit --ttl 1s" "$ASYA" bucket edit "$nb2" --ttl 1s
kv put "$nb2" short v >/dev/null
for _ in $(seq 50); do kv get "$nb2" short >/dev/null 2>&1 || break; sleep 0.1; done
if kv get "$nb2" short >/dev/null 2>&1; then fail "bucket edit --ttl 1s: a value expires (kvtool)" "still there after 5 s"
else ok "bucket edit --ttl 1s: a value expires (kvtool)"; fi
expect_rc "bucket edit: nothing to change exits 2" 2 "$ASYA" bucket edit "$nb2"
grep -q "nothing to change (--history, --ttl, --max-value-size, --max-bytes)" "$TMP/err" &&
    ok "bucket edit: nothing to change says what can" ||
    fail "bucket edit: nothing to change says what can" "$(cat "$TMP/err")"
expect_rc "bucket edit: --history 99 exits 2" 2 "$ASYA" bucket edit "$nb2" --history 99
expect_rc "bucket edit: --max-bytes abc exits 2" 2 "$ASYA" bucket edit "$nb2" --max-bytes abc
expect_rc "bucket edit: missing bucket exits 1" 1 "$ASYA" bucket edit "t_cli_nob_$$" --history 2
err_has "bucket edit: missing bucket says so" "no bucket 't_cli_nob_$$'"
dead=$(free_port)
expect_rc "bucket edit: server down exits 3" 3 \
    env NATS_URL=nats://127.0.0.1:$dead NATS_TIMEOUT_MS=1000 "$ASYA" bucket edit "$nb2" --history 2
err_has "bucket edit: server down names the server" "cannot connect to NATS at nats://127.0.0.1:$dead"
expect_rc "bucket edit --help exits 0" 0 "$ASYA" bucket edit --help
grep -q 'usage: asya-state bucket edit NAME' "$TMP/out" && ok "bucket edit --help: usage" ||
    fail "bucket edit --help: usage" "$(head -3 "$TMP/out")"
check "bucket rm" "$ASYA" bucket rm "$nb2"
check "bucket rm (second)" "$ASYA" bucket rm "$nb3"
expect_rc "bucket rm: gone exits 1" 1 "$ASYA" bucket rm "$nb2"
err_has "bucket rm: says no bucket" "no bucket '$nb2'"
expect_rc "bucket info: missing exits 1" 1 "$ASYA" bucket info "$nb2"
expect_rc "bucket: unknown subcommand exits 2" 2 "$ASYA" bucket frob

# unknown mount options and log levels: warned once, problems for check
expect_rc "unknown mount option: still works" 0 env ASYA_STATE_PROXY_MOUNTS="c:/state:prefx=x" "$ASYA" ls
expect_eq "unknown mount option: warned once" 1 "$(grep -c "unknown option 'prefx'" "$TMP/err")"
out=$(ASYA_STATE_PROXY_MOUNTS="c:/state:prefx=x" "$ASYA" check 2>&1); rc=$?
if [ $rc -eq 3 ] && echo "$out" | grep -q "^problem.*setting ignored"; then
    ok "check: an unknown mount option is a problem"
else fail "check: an unknown mount option is a problem" "rc $rc: $out"; fi
expect_rc "ASYA_STATE_LOG=verbose: still works" 0 env ASYA_STATE_LOG=verbose "$ASYA" ls
expect_eq "ASYA_STATE_LOG=verbose: warned once" 1 "$(grep -c 'ASYA_STATE_LOG=verbose is not a level' "$TMP/err")"
out=$(ASYA_STATE_LOG=verbose "$ASYA" check 2>&1); rc=$?
if [ $rc -eq 3 ] && echo "$out" | grep -q "^problem.*ASYA_STATE_LOG=verbose"; then
    ok "check: a bad ASYA_STATE_LOG is a problem"
else fail "check: a bad ASYA_STATE_LOG is a problem" "rc $rc: $out"; fi
out=$(ASYA_STATE_LOG=verbose with_shim python3 -c '
import os
os.path.exists("/state/none"); os.path.exists("/state/none2")' 2>&1)
expect_eq "shim: a bad ASYA_STATE_LOG is warned once" 1 "$(echo "$out" | grep -c 'is not a level')"

# check --read-only writes nothing
before=$("$KVTOOL" keys "$hb" | sort | md5sum)
out=$("$ASYA" check --read-only 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == *"read-only"* ]] && [[ $out != *probe* ]]; then ok "check --read-only"
else fail "check --read-only" "rc $rc: $out"; fi
after=$("$KVTOOL" keys "$hb" | sort | md5sum)
expect_eq "check --read-only: the bucket is unchanged" "$before" "$after"

# NATS_USER/NATS_PASSWORD and NATS_TOKEN, masked in every line
conf=$TMP/auth.conf
printf 'authorization { users = [ { user: alice, password: "s3cr3t-pw" } ] }\n' >"$conf"
if start_server -c "$conf"; then
    aurl=$SERVER_URL apid=$SERVER_PID
    out=$(NATS_URL=$aurl NATS_USER=alice NATS_PASSWORD=s3cr3t-pw "$ASYA" bucket add ub 2>&1)
    check "NATS_USER/NATS_PASSWORD: logs in" test $? -eq 0
    expect_rc "NATS_USER with a wrong password: exit 3" 3 env NATS_URL=$aurl NATS_USER=alice \
        NATS_PASSWORD=wrong NATS_KV_BUCKET=ub "$ASYA" ls
    # a password that appears in a line (here: the server's address) is masked there too
    expect_rc "NATS_PASSWORD is masked" 3 env NATS_URL=$aurl NATS_USER=alice \
        NATS_PASSWORD=127.0.0.1 NATS_KV_BUCKET=ub ASYA_STATE_LOG=debug "$ASYA" ls
    grep -q 127.0.0.1 "$TMP/err" && fail "NATS_PASSWORD never printed" "$(cat "$TMP/err")" ||
        ok "NATS_PASSWORD never printed"
    expect_rc "NATS_PASSWORD without NATS_USER: exit 3" 3 env NATS_URL=$aurl NATS_PASSWORD=x "$ASYA" ls
    err_has "NATS_PASSWORD without NATS_USER: names NATS_USER" "NATS_USER"
    stop_server "$apid"
fi
printf 'authorization { token: "t0k3n-value" }\n' >"$conf"
if start_server -c "$conf"; then
    turl=$SERVER_URL tpid=$SERVER_PID
    check "NATS_TOKEN: logs in" env NATS_URL=$turl NATS_TOKEN=t0k3n-value "$ASYA" bucket add tb
    expect_rc "NATS_TOKEN wrong: exit 3" 3 env NATS_URL=$turl NATS_TOKEN=wr0ngT0ken \
        ASYA_STATE_LOG=debug NATS_KV_BUCKET=tb "$ASYA" ls
    grep -q "wr0ngT0ken" "$TMP/err" && fail "NATS_TOKEN never printed" "$(cat "$TMP/err")" ||
        ok "NATS_TOKEN never printed"
    stop_server "$tpid"
fi
export NATS_KV_BUCKET=$b STATE_PREFIX=cli

# the man page renders, and its completion script loads
if command -v man >/dev/null; then
    out=$(MANWIDTH=80 man --warnings -l "$ROOT/docs/asya-state.1" 2>"$TMP/man.err")
    if [[ $out == *"EXIT STATUS"* ]] && [[ $out == *"revert PATH REV"* ]] && [ ! -s "$TMP/man.err" ]; then
        ok "man -l renders asya-state.1 without warnings"
    else fail "man -l renders asya-state.1 without warnings" "$(head -c 300 "$TMP/man.err")"; fi
    # every command of `asya-state --help` and every bucket subcommand of `bucket --help`
    # has its entry (a line of its own, as the man page's command list renders them)
    missing=
    for c in $("$ASYA" --help | sed -n '/^commands:/,/^$/p' | awk 'NF > 1 && $1 != "commands:" {print $1}') \
             $("$ASYA" bucket --help | grep -oE 'asya-state bucket [a-z]+' | awk '{print "bucket_" $3}'); do
        grep -qE "^       ${c/_/ +}( |$)" <<<"$out" || missing+=" ${c/_/ }"
    done
    if [ -z "$missing" ]; then ok "man page: an entry for every command of --help and bucket --help"
    else fail "man page: an entry for every command of --help and bucket --help" "missing:$missing"; fi
else
    fail "man -l renders asya-state.1" "man is not installed (scripts/deps.sh installs man-db)"
fi
out=$(bash -c ". '$ROOT/docs/asya-state.bash'; COMP_WORDS=(asya-state bucket i); COMP_CWORD=2
      _asya_state; echo \"\${COMPREPLY[*]}\"" 2>&1)
expect_eq "completion: bucket subcommands" "info" "$out"
out=$(bash -c ". '$ROOT/docs/asya-state.bash'; COMP_WORDS=(asya-state bucket edit --max); COMP_CWORD=3
      _asya_state; echo \"\${COMPREPLY[*]}\"" 2>&1)
expect_eq "completion: bucket edit options" "--max-value-size --max-bytes" "$out"
out=$(PATH=$(dirname "$ASYA"):$PATH NATS_KV_BUCKET=$hb STATE_PREFIX=p16 bash -c ". '$ROOT/docs/asya-state.bash'
      COMP_WORDS=(asya-state cat 'sp'); COMP_CWORD=2; _asya_state; echo \"\${COMPREPLY[*]}\"" 2>&1)
expect_eq "completion: state paths" "sp ace/" "$out"

# The Docker image: tests/integration/t_image.sh (it builds, runs and checks it).
