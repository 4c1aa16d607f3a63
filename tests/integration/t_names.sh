#!/usr/bin/env bash
# Issue 3, namespace part: rename (mv, os.replace, renameSync), EXDEV fallbacks, sed -i (a
# mkostemp file beside the target, renamed over it), the virtual working directory (cd in a
# shell, os.chdir, getcwd, inheritance by exec'd programs), find and rm -r through directory
# descriptors, mkdir -p, realpath, chmod/touch as no-ops, ln -s -> ENOTSUP, readlink -> EINVAL,
# truncate, scandir (os.scandir, os.walk, Node readdirSync), syscall() (Node's libuv closes
# and stats through it). Every result is checked in the bucket with kvtool, not the shim.
. "$(dirname "$0")/lib.sh"

if [ ! -f "$SHIM" ]; then
    fail "names: the shim is built" "$SHIM is missing"
    exit 1
fi

B=$(new_bucket) || { fail "names: bucket" "cannot create a bucket"; exit 1; }
M=/state/cache
PY=$(python3 -c 'import sys; print(sys.executable)') # the interpreter, not a pyenv wrapper
L=$TMP/local
mkdir -p "$L"

# Runs CMD under the shim with the mount /state/cache -> bucket $B (no prefix).
shimmed() {
    timeout -k 5 60 env -u ASYA_STATE_PROXY_MOUNTS NATS_KV_BUCKET="$B" STATE_MOUNT=$M \
        LD_PRELOAD="$SHIM" "$@"
}
sh_in() { shimmed bash -c "$1" 2>"$TMP/sh.err"; local rc=$?; sed 's/^/# stderr: /' "$TMP/sh.err" | head -n 5 >&2; return $rc; }
py() {
    local script=$1
    shift
    shimmed "$PY" -c "$script" "$@" 2>"$TMP/py.err"
    local rc=$?
    [ -s "$TMP/py.err" ] && sed 's/^/# stderr: /' "$TMP/py.err" | head -n 5 >&2
    return $rc
}
kv() { "$KVTOOL" "$@"; }
keys() { kv keys "$B" 2>/dev/null | sort | tr '\n' ' '; }

# --- mv within the mount, to /tmp and back -----------------------------------------------
kv put "$B" mv/src "moved value" >/dev/null
sh_in "mv $M/mv/src $M/mv/dst"
expect_eq "mv within the mount: destination holds the value" "moved value" "$(kv get "$B" mv/dst 2>&1)"
check "mv within the mount: source key gone" bash -c "! $KVTOOL get $B mv/src >/dev/null 2>&1"
sh_in "mv $M/mv/dst $L/out.txt"
expect_eq "mv mount -> local (EXDEV, copy fallback): local file" "moved value" "$(cat "$L/out.txt" 2>&1)"
check "mv mount -> local: key deleted" bash -c "! $KVTOOL get $B mv/dst >/dev/null 2>&1"
echo "from local" >"$L/in.txt"
sh_in "mv $L/in.txt $M/mv/in.txt"
expect_eq "mv local -> mount: key written" "from local" "$(kv get "$B" mv/in.txt 2>&1)"
check "mv local -> mount: local file removed" test ! -e "$L/in.txt"

out=$(py 'import os, errno
try:
    os.rename("/state/cache/mv/in.txt", "/tmp/never-here")
    print("renamed")
except OSError as e:
    print(errno.errorcode[e.errno])')
expect_eq "os.rename mount -> local is EXDEV" "EXDEV" "$out"

# RENAME_NOREPLACE through renameat2 (mv -n asks for it), onto an existing key
kv put "$B" nr/a "A" >/dev/null
kv put "$B" nr/b "B" >/dev/null
sh_in "mv -n $M/nr/a $M/nr/b"
expect_eq "mv -n keeps the existing destination" "B" "$(kv get "$B" nr/b 2>&1)"
expect_eq "mv -n keeps the source" "A" "$(kv get "$B" nr/a 2>&1)"

# --- the atomic-write idiom: os.replace over a key read before -------------------------
kv put "$B" cfg.json '{"v": 1}' >/dev/null
py 'import os, json
p = "/state/cache/cfg.json"
d = json.load(open(p))
d["v"] += 1
with open(p + ".tmp", "w") as f:
    json.dump(d, f)
os.replace(p + ".tmp", p)'
expect_eq "os.replace(tmp, target): target updated" '{"v": 2}' "$(kv get "$B" cfg.json 2>&1)"
check "os.replace: tmp key gone" bash -c "! $KVTOOL get $B cfg.json.tmp >/dev/null 2>&1"

# --- sed -i: mkostemp beside the target, then rename over it ---------------------------
kv put "$B" sed.txt $'one\ntwo' >/dev/null
sh_in "sed -i s/one/ONE/ $M/sed.txt"
expect_eq "sed -i rewrites the key" $'ONE\ntwo' "$(kv get "$B" sed.txt 2>&1)"
expect_eq "sed -i leaves no temporary key" "" "$(kv keys "$B" 2>/dev/null | grep -v -e '^sed.txt$' -e '/' -e '^cfg.json$')"

# --- mkdir -p, cd + ls + cat, inherited working directory -----------------------------
sh_in "mkdir -p $M/d1/d2/d3"
expect_eq "mkdir -p: markers for each level" "d1/ d1/d2/ d1/d2/d3/" \
    "$(kv keys "$B" 2>/dev/null | grep '^d1' | sort | tr '\n' ' ' | sed 's/ $//')"
kv put "$B" d1/f1 "f-one" >/dev/null
kv put "$B" d1/d2/f2 "f-two" >/dev/null
out=$(sh_in "cd $M/d1 && pwd && ls && cat f1 && echo && cat d2/f2 && echo && cd d2 && /bin/pwd")
expect_eq "cd into the mount: pwd, ls, cat relative, exec'd pwd" \
    "$M/d1|d2|f1|f-one|f-two|$M/d1/d2" "$(echo "$out" | tr '\n' '|' | sed 's/|$//')"
sh_in "cd $M/d1 && echo rel > rel.txt && cd - >/dev/null && echo back > back.txt" 
expect_eq "a relative write under the virtual cwd lands below it" "rel" "$(kv get "$B" d1/rel.txt 2>&1)"
check "cd - goes back to the kernel's directory" bash -c "! $KVTOOL get $B d1/back.txt >/dev/null 2>&1"
rm -f back.txt
out=$(sh_in "cd $M/d1 && cat ../../../etc/hostname")
expect_eq "a relative path climbing out of the mount reaches the local file" "$(cat /etc/hostname)" "$out"

# --- find, ls -l, realpath, chmod, touch, ln -s, readlink ------------------------------
out=$(sh_in "find $M/d1 | sort" | tr '\n' ' ')
expect_eq "find walks the mount through directory descriptors" \
    "$M/d1 $M/d1/d2 $M/d1/d2/d3 $M/d1/d2/f2 $M/d1/f1 $M/d1/rel.txt " "$out"
out=$(sh_in "find $M/d1 -type f -name 'f*' | sort" | tr '\n' ' ')
expect_eq "find -type f -name uses d_type/stat" "$M/d1/d2/f2 $M/d1/f1 " "$out"
out=$(sh_in "ls -l $M/d1" | awk 'NR>1 {print substr($1,1,1) $5 $9}' | tr '\n' ' ')
expect_eq "ls -l: types, sizes, names" "d0d2 -5f1 -4rel.txt " "$out"
expect_eq "realpath normalises a mount path lexically" "$M/d1/f1" "$(sh_in "realpath $M/d1/./d2/../f1")"
check "realpath -e of a missing mount path fails" bash -c "! LD_PRELOAD=$SHIM NATS_KV_BUCKET=$B STATE_MOUNT=$M realpath -e $M/d1/nope 2>/dev/null"
out=$(py 'import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.realpath.restype = ctypes.c_char_p
buf = ctypes.create_string_buffer(4096)
ok = libc.realpath(b"/state/cache/d1/d2/../f1", buf)
missing = libc.realpath(b"/state/cache/d1/nope", buf)
print(ok.decode(), missing, os.strerror(ctypes.get_errno()))')
expect_eq "libc realpath: lexical on the mount, ENOENT for a missing name" \
    "$M/d1/f1 None No such file or directory" "$out"
check "chmod on a mount path succeeds" sh_in "chmod 600 $M/d1/f1"
expect_eq "chmod changed nothing in the bucket" "f-one" "$(kv get "$B" d1/f1 2>&1)"
sh_in "touch $M/d1/touched"
expect_eq "touch creates an empty key" "" "$(kv get "$B" d1/touched 2>&1)"
check "touch creates it (key listed)" bash -c "$KVTOOL keys $B | grep -qx d1/touched"
sh_in "touch $M/d1/f1"
expect_eq "touch on an existing key keeps its value" "f-one" "$(kv get "$B" d1/f1 2>&1)"
out=$(sh_in "ln -s $M/d1/f1 $M/d1/lnk; echo rc=\$?" 2>/dev/null)
expect_eq "ln -s on the mount fails" "rc=1" "$out"
grep -q "not supported" "$TMP/sh.err" && ok "ln -s reports ENOTSUP" || fail "ln -s reports ENOTSUP" "$(cat "$TMP/sh.err")"
out=$(py 'import os, errno
r = []
for f in (lambda: os.readlink("/state/cache/d1/f1"), lambda: os.link("/state/cache/d1/f1", "/state/cache/d1/h"),
          lambda: os.mkfifo("/state/cache/d1/fifo"), lambda: os.readlink("/state/cache/d1/nope")):
    try:
        f(); r.append("ok")
    except OSError as e:
        r.append(errno.errorcode[e.errno])
print(" ".join(r))')
expect_eq "readlink EINVAL, link ENOTSUP, mkfifo ENOTSUP, readlink of missing ENOENT" \
    "EINVAL ENOTSUP ENOTSUP ENOENT" "$out"

# --- Python: scandir, walk, chdir + relative open, truncate, getcwd --------------------
out=$(py 'import os
M = "/state/cache/d1"
print(sorted((e.name, e.is_dir(), e.is_file()) for e in os.scandir(M)))
print(sorted((os.path.relpath(d, M), sorted(ds), sorted(fs)) for d, ds, fs in os.walk(M)))
os.chdir(M + "/d2")
print(os.getcwd(), open("f2").read(), os.path.isdir("d3"), os.path.realpath("f2"))
open("made.txt", "w").write("made in cwd")
os.truncate("f2", 3)
os.chdir("/")
print(os.getcwd())')
expect_eq "os.scandir, os.walk, os.chdir + relative open, realpath, getcwd back" \
    "[('d2', True, False), ('f1', False, True), ('rel.txt', False, True), ('touched', False, True)]|[('.', ['d2'], ['f1', 'rel.txt', 'touched']), ('d2', ['d3'], ['f2']), ('d2/d3', [], [])]|$M/d1/d2 f-two True $M/d1/d2/f2|/" \
    "$(echo "$out" | tr '\n' '|' | sed 's/|$//')"
expect_eq "Python relative write under os.chdir lands in the key" "made in cwd" "$(kv get "$B" d1/d2/made.txt 2>&1)"
expect_eq "os.truncate cuts the key" "f-t" "$(kv get "$B" d1/d2/f2 2>&1)"

# --- rm -r: fts with directory descriptors, unlinkat ----------------------------------
sh_in "rm -r $M/d1"
expect_eq "rm -r removes every key below" "" "$(kv keys "$B" 2>/dev/null | grep '^d1')"
check "rm -r: the directory is gone" bash -c "! LD_PRELOAD=$SHIM NATS_KV_BUCKET=$B STATE_MOUNT=$M test -e $M/d1"

# --- Node: writeFileSync, statSync, renameSync, readdirSync, unlinkSync ---------------
if command -v node >/dev/null; then
    cat >"$TMP/n.js" <<'EOF'
const fs = require('fs');
const M = '/state/cache/node';
fs.mkdirSync(M);
fs.writeFileSync(M + '/a.txt', 'node data');
const st = fs.statSync(M + '/a.txt');
fs.renameSync(M + '/a.txt', M + '/b.txt');
fs.writeFileSync(M + '/gone.txt', 'x');
fs.unlinkSync(M + '/gone.txt');
const names = fs.readdirSync(M, { withFileTypes: true }).map(d => d.name + (d.isFile() ? ':f' : ':d'));
console.log(st.size, st.isFile(), fs.statSync(M).isDirectory(), names.join(','), fs.readFileSync(M + '/b.txt', 'utf8'));
EOF
    out=$(shimmed node "$TMP/n.js" 2>"$TMP/node.err")
    [ -s "$TMP/node.err" ] && sed 's/^/# stderr: /' "$TMP/node.err" | head -n 5 >&2
    expect_eq "node: statSync (syscall statx), renameSync, readdirSync (scandir), unlinkSync" \
        "9 true true b.txt:f node data" "$out"
    expect_eq "node: renamed key in the bucket (closed through syscall(SYS_close))" "node data" "$(kv get "$B" node/b.txt 2>&1)"
    expect_eq "node: only b.txt and the marker remain" "node/ node/b.txt" \
        "$(kv keys "$B" 2>/dev/null | grep '^node' | sort | tr '\n' ' ' | sed 's/ $//')"
else
    echo "# node not installed: Node checks skipped"
fi

# --- mkstemp / mkdtemp in the mount (C, through Python's ctypes) -----------------------
out=$(py 'import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
t = ctypes.create_string_buffer(b"/state/cache/tmpXXXXXX")
fd = libc.mkstemp(t)
os.write(fd, b"temp data"); os.close(fd)
d = ctypes.create_string_buffer(b"/state/cache/dirXXXXXX")
r = libc.mkdtemp(d)
print(t.value.decode(), d.value.decode(), bool(r), os.path.isdir(d.value.decode()))')
tname=${out%% *}
rest=${out#* }
dname=${rest%% *}
expect_eq "mkstemp in the mount: a key with the data" "temp data" "$(kv get "$B" "${tname#$M/}" 2>&1)"
check "mkdtemp in the mount: a directory marker" bash -c "$KVTOOL keys $B | grep -qx '${dname#$M/}/'"
expect_eq "mkdtemp returns the template, a directory" "True True" "${rest#* }"
