#!/usr/bin/env bash
# Issue 3, "What it must show": real, unmodified programs (bash, coreutils, a C stdio program,
# Python, Node.js) do ordinary file work under LD_PRELOAD=$SHIM on the mount /state/cache;
# every result is checked against the bucket with kvtool (never through the shim), or, for
# what a program prints, against values kvtool put there. One ok/not ok line per check.
. "$(dirname "$0")/lib.sh"
PROGS=$ROOT/tests/integration/progs

if [ ! -f "$SHIM" ]; then
    fail "programs: the shim is built" "$SHIM is missing"
    exit 1
fi

B=$(new_bucket) || { fail "programs: bucket" "cannot create a bucket"; exit 1; }
M=/state/cache
P=pg # STATE_PREFIX: key = pg.<path below the mount>

# shimmed CMD...: CMD under the shim, mount $M -> bucket $B, prefix $P; stderr kept in
# $TMP/err (its first lines shown as diagnostics when the command fails).
shimmed() {
    timeout 30 env NATS_KV_BUCKET="$B" STATE_PREFIX=$P ASYA_STATE_PROXY_MOUNTS="cache:$M" \
        LD_PRELOAD="$SHIM" "$@" 2>"$TMP/err"
    local rc=$?
    if [ $rc -ne 0 ] && [ -s "$TMP/err" ]; then
        sed 's/^/# stderr: /' "$TMP/err" | head -n 4 >&2
    fi
    return $rc
}
sh_in() { shimmed bash -c "$1"; }        # a bash script under the shim
py() { shimmed python3 -c "$@"; }         # py SCRIPT ARGS... (sys.argv[1:] = ARGS)
kv() { "$KVTOOL" "$@" 2>/dev/null; }
# put KEY VALUE: as a well-behaved other client: the markers of KEY's directories first
# (a directory is its marker); put_bare leaves them out, as clients unaware of them do.
put_bare() { kv put "$B" "$P.$1" "$2" >/dev/null; }
put() {
    local d=$1
    while [ "${d%/*}" != "$d" ]; do
        d=${d%/*}
        kv get "$B" "$P.$d/" >/dev/null || kv put "$B" "$P.$d/" "" >/dev/null
    done
    put_bare "$1" "$2"
}
# val KEY: the value, each newline shown as \n (so a trailing one counts), "<missing>" when
# the key is absent.
val() {
    local v
    v=$(kv get "$B" "$P.$1" && echo .) || { echo "<missing>"; return; }
    v=${v%.}
    printf '%s' "${v//$'\n'/\\n}"
}
absent() { ! kv get "$B" "$P.$1" >/dev/null; }
# keys_under PREFIX: the bucket's keys below $P.PREFIX, sorted, one per line.
keys_under() { kv keys "$B" | grep -F "$P.$1" | sort; }
nl=$'\n'

# --- bash ----------------------------------------------------------------------------------
sh_in "echo x > $M/b1"
expect_eq "bash: echo x > f" "x\n" "$(val b1)"
sh_in "echo y >> $M/b1"
expect_eq "bash: echo y >> f appends" "x\ny\n" "$(val b1)"
sh_in "cat /etc/hostname > $M/b2"
expect_eq "bash: cat /etc/hostname > f (an exec'd child writes the shell's descriptor)" \
    "$(cat /etc/hostname)\n" "$(val b2)"
sh_in "cat > $M/b3 <<'EOF'
line one
line two
EOF"
expect_eq "bash: here-doc into cat > f" "line one\nline two\n" "$(val b3)"
sh_in "while read -r l; do echo \"<\$l>\"; done > $M/b3b <<EOF
a
b
EOF"
expect_eq "bash: here-doc read by a builtin loop, redirected to f" "<a>\n<b>\n" "$(val b3b)"
sh_in "echo first > $M/b4; exec 3> $M/b5; echo z >&3; exec 3>&-; echo after > $M/b6"
expect_eq "bash: exec 3> f; echo z >&3; exec 3>&- after an earlier commit in the same shell" \
    "first\n|z\n|after\n" "$(val b4)|$(val b5)|$(val b6)"
put cdf "in cwd"
out=$(sh_in "cd $M && cat cdf && echo && ls && pwd")
expect_eq "bash: cd $M && cat f && ls (virtual working directory)" \
    "in cwd$nl$(printf '%s\n' b1 b2 b3 b3b b4 b5 b6 cdf)$nl$M" "$out"

# --- coreutils -----------------------------------------------------------------------------
put c_in "hello cat"
expect_eq "coreutils: cat f" "hello cat" "$(shimmed cat "$M/c_in")"
printf 'local bytes\n' >"$TMP/local_src"
shimmed cp "$TMP/local_src" "$M/c_cp"
expect_eq "coreutils: cp local -> mount" "local bytes\n" "$(val c_cp)"
shimmed cp "$M/c_in" "$TMP/c_out"
expect_eq "coreutils: cp mount -> local" "hello cat" "$(cat "$TMP/c_out" 2>&1)"
shimmed cp "$M/c_in" "$M/c_in_copy"
expect_eq "coreutils: cp mount -> mount" "hello cat" "$(val c_in_copy)"
put mv_a "moving"
shimmed mv "$M/mv_a" "$M/mv_b"
rc=$?
expect_eq "coreutils: mv within the mount (exit 0, destination written, source deleted)" \
    "0|moving|gone" "$rc|$(val mv_b)|$(absent mv_a && echo gone)"
shimmed mv "$M/mv_b" "$TMP/mv_local"
expect_eq "coreutils: mv from the mount to /tmp (copy, then the key is deleted)" \
    "moving|gone" "$(cat "$TMP/mv_local" 2>&1)|$(absent mv_b && echo gone)"
echo "from tmp" >"$TMP/mv_in"
shimmed mv "$TMP/mv_in" "$M/mv_in"
expect_eq "coreutils: mv from /tmp into the mount" \
    "from tmp\n|gone" "$(val mv_in)|$([ -e "$TMP/mv_in" ] || echo gone)"
put rm1 "doomed"
shimmed rm "$M/rm1"
expect_eq "coreutils: rm f deletes the key" "gone" "$(absent rm1 && echo gone)"
put tree/a "1"
put tree/sub/b "2"
shimmed rm -r "$M/tree"
rc=$?
expect_eq "coreutils: rm -r dir exits 0 and deletes every key below it" "0|" "$rc|$(keys_under tree/)"
put ls/one "111"
put ls/two "22"
expect_eq "coreutils: ls dir" "one${nl}two" "$(shimmed ls "$M/ls")"
out=$(shimmed ls -l "$M/ls" | awk '$1 ~ /^-/ { print $5, $NF }')
expect_eq "coreutils: ls -l shows regular files with their sizes" "3 one${nl}2 two" "$out"
expect_eq "coreutils: find dir -type f" "$M/ls/one$nl$M/ls/two" \
    "$(shimmed find "$M/ls" -type f | sort)"
expect_eq "coreutils: find dir (directories and files)" "$M/ls$nl$M/ls/one$nl$M/ls/two" \
    "$(shimmed find "$M/ls" | sort)"
expect_eq "coreutils: wc -c f" "9 $M/c_in" "$(shimmed wc -c "$M/c_in")"
put unsorted "pear${nl}apple${nl}fig$nl"
shimmed sort -o "$M/sorted" "$M/unsorted"
expect_eq "coreutils: sort -o mount file from a mount file" "apple\nfig\npear\n" "$(val sorted)"
put lines "first${nl}middle${nl}last$nl"
expect_eq "coreutils: head -n 1 / tail -n 1" "first|last" \
    "$(shimmed head -n 1 "$M/lines")|$(shimmed tail -n 1 "$M/lines")"
echo teeval | shimmed tee "$M/tee1" >/dev/null
expect_eq "coreutils: tee f" "teeval\n" "$(val tee1)"
shimmed touch "$M/touched"
expect_eq "coreutils: touch creates an empty value" "" "$(val touched)"
put touched2 "keep me"
shimmed touch "$M/touched2"
expect_eq "coreutils: touch of an existing file keeps its bytes" "keep me" "$(val touched2)"
shimmed mkdir -p "$M/p/q/r"
expect_eq "coreutils: mkdir -p a/b/c makes the directory markers" \
    "$P.p/$nl$P.p/q/$nl$P.p/q/r/" "$(keys_under p/)"
put sedf "hello world$nl"
shimmed sed -i 's/world/there/' "$M/sedf"
rc=$?
expect_eq "coreutils: sed -i exits 0, edits in place and leaves no temporary key" \
    "0|hello there\n|$P.sedf" "$rc|$(val sedf)|$(kv keys "$B" | grep -E "^$P\.sed" | paste -sd, -)"
expect_eq "coreutils: stat -c %s f" "9" "$(shimmed stat -c %s "$M/c_in")"
expect_eq "coreutils: /usr/bin/test -f file, -d dir, ! -f dir, ! -e missing" "yes" \
    "$(shimmed bash -c "/usr/bin/test -f $M/c_in && /usr/bin/test -d $M/p/q && /usr/bin/test -d $M \
        && ! /usr/bin/test -f $M/p && ! /usr/bin/test -e $M/nope && echo yes")"
expect_eq "bash: builtin test -f / -d" "yes" \
    "$(sh_in "[ -f $M/c_in ] && [ -d $M/ls ] && ! [ -d $M/c_in ] && ! [ -e $M/nope ] && echo yes")"

# --- C stdio -------------------------------------------------------------------------------
SP=$TMP/stdio_prog
if ${CC:-cc} -O2 -Wall -Wextra -Werror -o "$SP" "$PROGS/stdio_prog.c" 2>"$TMP/cc.err"; then
    shimmed "$SP" write "$M/s1" "written by fprintf"
    expect_eq "stdio: fopen w / fprintf / fclose" "written by fprintf\n" "$(val s1)"
    put s2 "one${nl}two$nl"
    expect_eq "stdio: fopen r / fgets / fclose" "one${nl}two" "$(shimmed "$SP" read "$M/s2")"
    shimmed "$SP" append "$M/s2" "three"
    expect_eq "stdio: fopen a appends to the stored value" "one\ntwo\nthree\n" "$(val s2)"
    expect_eq "stdio: fseek / fputc / ftell / rewind on w+ (printed)" "10 012X456789" \
        "$(shimmed "$SP" seek "$M/s3")"
    expect_eq "stdio: fseek / fputc on w+ (stored)" "012X456789" "$(val s3)"
    shimmed "$SP" patch "$M/s3" 9 Z
    expect_eq "stdio: r+ overwrites one byte in place" "012X45678Z" "$(val s3)"
    shimmed "$SP" leave "$M/s4" "never closed"
    expect_eq "stdio: a stream left open at exit() is flushed and committed" \
        "never closed" "$(val s4)"
    out=$(shimmed "$SP" excl "$M/s1" "no" 2>&1)
    expect_eq "stdio: fopen wx of an existing key fails with EEXIST, the value stays" \
        "fopen: EEXIST|written by fprintf\n" "$(cat "$TMP/err")|$(val s1)"
    shimmed "$SP" reopen "$M/s5" "stdout redirected"
    expect_eq "stdio: freopen(f, w, stdout) / printf / fclose(stdout)" "stdout redirected\n" \
        "$(val s5)"
else
    fail "stdio: the test program compiles" "$(head -c 300 "$TMP/cc.err")"
fi

# --- Python --------------------------------------------------------------------------------
shimmed mkdir -p "$M/py"
py 'import pathlib, sys; pathlib.Path(sys.argv[1]).write_text("via pathlib")' "$M/py/pl.txt"
expect_eq "python: pathlib write_text" "via pathlib" "$(val py/pl.txt)"
put py/other "put by kvtool"
expect_eq "python: pathlib read_text" "put by kvtool" \
    "$(py 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).read_text(), end="")' "$M/py/other")"
py 'import json, sys; json.dump({"n": 1, "s": "x"}, open(sys.argv[1], "w"))' "$M/py/d.json"
expect_eq "python: json.dump" '{"n": 1, "s": "x"}' "$(val py/d.json)"
put py/in.json '{"a": [1, 2, 3]}'
expect_eq "python: json.load" "6" \
    "$(py 'import json, sys; print(sum(json.load(open(sys.argv[1]))["a"]))' "$M/py/in.json")"
put py/app "a$nl"
py 'import sys; f = open(sys.argv[1], "a"); f.write("b\n"); f.close()' "$M/py/app"
py 'import sys; f = open(sys.argv[1], "a"); f.seek(0); f.write("c\n"); f.close()' "$M/py/app"
expect_eq "python: append mode appends (also after a seek to 0)" "a\nb\nc\n" "$(val py/app)"
put py/rplus "0123456789"
py 'import sys
with open(sys.argv[1], "r+") as f:
    f.seek(2); f.write("XY")' "$M/py/rplus"
expect_eq "python: r+ overwrites in place" "01XY456789" "$(val py/rplus)"
put_bare py/implied/deep/k "v"
expect_eq "python: os.path.isdir (root, mkdir'd dir, marker-less dir before and after a listing, file, missing)" \
    "True True False True False False" \
    "$(py 'import os, sys; m = sys.argv[1]
a = [os.path.isdir(p) for p in (m, m + "/p/q", m + "/py/implied")]
os.listdir(m + "/py")
print(*a, *[os.path.isdir(p) for p in (m + "/py/implied", m + "/py/other", m + "/nope")])' "$M")"
py 'import os, sys
d = sys.argv[1]
with open(d + "/target.tmp", "w") as f:
    f.write("atomic"); f.flush(); os.fsync(f.fileno())
os.replace(d + "/target.tmp", d + "/target")' "$M/py"
expect_eq "python: os.replace (the atomic-write idiom)" "atomic|gone" \
    "$(val py/target)|$(absent py/target.tmp && echo gone)"
py 'import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])' "$M/py/other" "$M/py/copied"
expect_eq "python: shutil.copy mount -> mount" "put by kvtool" "$(val py/copied)"
echo "local for shutil" >"$TMP/sh_src"
py 'import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])' "$TMP/sh_src" "$M/py/from_local"
expect_eq "python: shutil.copy local -> mount" "local for shutil\n" "$(val py/from_local)"
py 'import shutil, sys; shutil.move(sys.argv[1], sys.argv[2])' "$M/py/copied" "$TMP/moved_out"
expect_eq "python: shutil.move mount -> /tmp" "put by kvtool|gone" \
    "$(cat "$TMP/moved_out" 2>&1)|$(absent py/copied && echo gone)"
py 'import shutil, sys; shutil.move(sys.argv[1], sys.argv[2])' "$M/py/from_local" "$M/py/moved"
expect_eq "python: shutil.move within the mount" "local for shutil\n|gone" \
    "$(val py/moved)|$(absent py/from_local && echo gone)"
expect_eq "python: os.scandir names and types" "deep:dir" \
    "$(py 'import os, sys
print(*sorted(e.name + ":" + ("dir" if e.is_dir() else "file" if e.is_file() else "?")
              for e in os.scandir(sys.argv[1])))' "$M/py/implied")"
put walk/a "1"
put walk/s/b "2"
put walk/s/t/c "3"
expect_eq "python: os.walk" ".:a:s s:b:t s/t:c:" \
    "$(py 'import os, sys
r = sys.argv[1]
print(*[(os.path.relpath(d, r) + ":" + ",".join(sorted(fs)) + ":" + ",".join(sorted(ds)))
        for d, ds, fs in sorted(os.walk(r))])' "$M/walk")"
py 'import subprocess, sys
with open(sys.argv[1], "w") as f:
    subprocess.run(["echo", "from a child"], stdout=f, check=True)' "$M/py/sub"
expect_eq "python: subprocess.run(..., stdout=f) into a state file" "from a child\n" \
    "$(val py/sub)"
put py/shared "steady"
out=$(py 'import os, sys, threading
d = sys.argv[1]
seen, stop = set(), threading.Event()
def reader():
    while not stop.is_set():
        with open(d + "/shared") as f:
            seen.add(f.read())
t = threading.Thread(target=reader); t.start()
pid = os.fork()
if pid == 0:
    with open(d + "/forked", "w") as f:
        f.write("from the forked child")
    os._exit(0)
_, status = os.waitpid(pid, 0)
stop.set(); t.join()
print(os.waitstatus_to_exitcode(status), *sorted(seen))' "$M/py")
expect_eq "python: a forked child writes a file while a parent thread reads state" \
    "0 steady|from the forked child" "$out|$(val py/forked)"

# --- Node.js -------------------------------------------------------------------------------
if command -v node >/dev/null; then
    shimmed mkdir -p "$M/nd"
    shimmed node -e 'require("fs").writeFileSync(process.argv[1], "from node")' "$M/nd/w"
    expect_eq "node: fs.writeFileSync" "from node" "$(val nd/w)"
    put nd/r "node reads this"
    expect_eq "node: fs.readFileSync" "node reads this" \
        "$(shimmed node -e 'process.stdout.write(require("fs").readFileSync(process.argv[1], "utf8"))' \
            "$M/nd/r")"
    expect_eq "node: fs.statSync (size, isFile, isDirectory of a file and a dir)" \
        "15 true false true" \
        "$(shimmed node -e 'const fs = require("fs"); const s = fs.statSync(process.argv[1]);
            console.log(s.size, s.isFile(), s.isDirectory(), fs.statSync(process.argv[2]).isDirectory())' \
            "$M/nd/r" "$M/nd")"
    expect_eq "node: fs.readdirSync" "r,w" \
        "$(shimmed node -e 'console.log(require("fs").readdirSync(process.argv[1]).sort().join())' "$M/nd")"
    shimmed node -e 'require("fs").renameSync(process.argv[1], process.argv[2])' "$M/nd/w" "$M/nd/w2"
    expect_eq "node: fs.renameSync" "from node|gone" "$(val nd/w2)|$(absent nd/w && echo gone)"
    shimmed node -e 'require("fs").unlinkSync(process.argv[1])' "$M/nd/w2"
    expect_eq "node: fs.unlinkSync" "gone" "$(absent nd/w2 && echo gone)"
else
    fail "node: installed" "node is not on PATH"
fi

# --- names NATS would refuse as keys -------------------------------------------------------
names=(".hidden" "with space" "star*" "gt>" "ünïcødé" "dots..in" "trailing.")
out=$(py 'import os, sys
d = sys.argv[1]
os.mkdir(d)
for n in sys.argv[2:]:
    with open(os.path.join(d, n), "w") as f:
        f.write("v:" + n)
print(sorted(os.listdir(d)) == sorted(sys.argv[2:]),
      all(open(os.path.join(d, n)).read() == "v:" + n for n in sys.argv[2:]))' "$M/odd" "${names[@]}")
expect_eq "names: leading dot, space, *, >, non-ASCII: write, list and read back unchanged" \
    "True True" "$out"
expect_eq "names: each is stored escaped (a dot after / needs none), readable by another client" \
    "v:.hidden|v:with space|v:star*|v:gt>|v:ünïcødé" \
    "$(val odd/.hidden)|$(val odd/with=20space)|$(val odd/star=2A)|$(val odd/gt=3E)|$(val odd/=C3=BCn=C3=AFc=C3=B8d=C3=A9)"
expect_eq "names: ls lists them unchanged" "$(printf '%s\n' "${names[@]}" | LC_ALL=C sort)" \
    "$(shimmed ls -A "$M/odd" | LC_ALL=C sort)"
py 'import sys; open(sys.argv[1], "w").write("root dot")' "$M/.hidden"
expect_eq "names: a leading dot at the mount root is stored as =2E, lists and reads back" \
    "root dot|True|root dot" "$(val =2Ehidden)|$(py 'import os, sys
print(".hidden" in os.listdir(sys.argv[1]), open(sys.argv[1] + "/.hidden").read(), sep="|")' "$M")"
