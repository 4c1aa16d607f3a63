#!/usr/bin/env bash
# Issue 4, "Bad input": hostile names, oversized values, broken configuration and `..` games,
# each through unmodified Python under the shim against a real server; the bucket is always
# inspected with kvtool, and the local disk is checked where a fall-through would land.
. "$(dirname "$0")/lib.sh"
HERE=$ROOT/tests/integration
PY=$(python3 -c 'import sys; print(sys.executable)') # the real binary, not a pyenv wrapper

if [ ! -f "$SHIM" ]; then
    fail "badinput: the shim is built" "$SHIM is missing"
    exit 1
fi

# shimmed ENV... -- CMD...: CMD under the shim with the given environment, bounded.
shimmed() {
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    timeout -k 5 60 env "${envs[@]}" LD_PRELOAD="$SHIM" "$@"
}

# --- 1. hostile names: round trip or ENAMETOOLONG, the connection survives -----------------
B=$(new_bucket) || { fail "badinput: bucket" "cannot create a bucket"; exit 1; }
shimmed NATS_KV_BUCKET="$B" STATE_PREFIX=bi STATE_MOUNT=/state/bad -- \
    "$PY" "$HERE/badinput_names.py" /state/bad "$B" bi 2>"$TMP/names.err"
rc=$?
[ $rc -le 1 ] || fail "badinput: names helper ran to the end" "exit $rc: $(tail -n 3 "$TMP/names.err")"

# --- 2. values over the bucket's and the server's limit: EFBIG at close, old value kept ------
cat >"$TMP/big.py" <<'PYEOF'
import errno, sys
path, size = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("old")
try:
    with open(path, "w") as f:
        f.write("z" * size)
    print("close succeeded")
except OSError as e:
    print("close", errno.errorcode.get(e.errno, e.errno), e.errno)
print("read", open(path).read()[:10])
with open(path + ".next", "w") as f:
    f.write("next write")
print("next", open(path + ".next").read())
PYEOF
# big_case NAME URL BUCKET SIZE: the over-limit write and what the process sees after it.
big_case() {
    local name=$1 url=$2 bucket=$3 size=$4 out
    out=$(shimmed NATS_URL="$url" NATS_KV_BUCKET="$bucket" STATE_MOUNT=/state/big -- \
        "$PY" "$TMP/big.py" /state/big/v "$size" 2>"$TMP/big.err")
    expect_eq "badinput: $name: a $size-byte value fails at close with EFBIG (errno 27)" \
        "close EFBIG 27" "$(sed -n 1p <<<"$out")"
    expect_eq "badinput: $name: the process still reads the old value" "read old" \
        "$(sed -n 2p <<<"$out")"
    expect_eq "badinput: $name: the bucket keeps the old value (kvtool)" "old" \
        "$("$KVTOOL" -s "$url" get "$bucket" v 2>&1)"
    expect_eq "badinput: $name: a following write in the same process works (kvtool)" \
        "next write" "$("$KVTOOL" -s "$url" get "$bucket" v.next 2>&1)"
    if grep -q "^asya-state: .*v: .*larger than" "$TMP/big.err"; then
        ok "badinput: $name: one stderr line names the key and the size limit"
    else
        fail "badinput: $name: one stderr line names the key and the size limit" \
            "$(cat "$TMP/big.err")"
    fi
}
LIMIT=1024
BS=$(new_bucket --max-value-size $LIMIT) || fail "badinput: bucket with a size limit" "cannot create"
[ -n "$BS" ] && big_case "bucket max value size $LIMIT" "$NATS_URL" "$BS" $((LIMIT * 4))

MAXP=4096
printf 'max_payload: %d\n' $MAXP >"$TMP/maxpayload.conf"
if start_server -c "$TMP/maxpayload.conf"; then
    if "$KVTOOL" -s "$SERVER_URL" --wait bucket-add bigp >/dev/null; then
        big_case "server max_payload $MAXP" "$SERVER_URL" bigp $((MAXP * 2))
        out=$(shimmed NATS_URL="$SERVER_URL" NATS_KV_BUCKET=bigp STATE_MOUNT=/state/big -- \
            "$PY" -c 'open("/state/big/half", "w").write("h" * int(__import__("sys").argv[1]))' \
            $((MAXP / 2)) 2>&1)
        expect_eq "badinput: server max_payload $MAXP: a $((MAXP / 2))-byte value still fits" \
            $((MAXP / 2)) "$("$KVTOOL" -s "$SERVER_URL" get bigp half 2>&1 | wc -c)"
    else
        fail "badinput: server max_payload $MAXP" "kvtool cannot create a bucket there"
    fi
    stop_server "$SERVER_PID"
else
    fail "badinput: server max_payload $MAXP" "nats-server did not start with $TMP/maxpayload.conf"
fi

# --- 3. broken configuration: one stderr line naming it, the contract's errno, no local disk --
OPS="write read stat listdir mkdir unlink write_again"
# cfg_case NAME ERRNO CULPRIT DIR ENV...: DIR (a mount path, created locally and empty) gets
# the everyday operations; each must fail with ERRNO; stderr holds exactly one asya-state
# line, containing CULPRIT; nothing appears in DIR.
cfg_case() {
    local name=$1 want=$2 culprit=$3 dir=$4 out got n line
    shift 4
    mkdir -p "$dir"
    out=$(shimmed NATS_KV_BUCKET="$B" "$@" -- "$PY" "$HERE/badinput_ops.py" "$dir" \
        2>"$TMP/cfg.err")
    got=$(awk '{print $2}' <<<"$out" | sort -u | tr '\n' ' ')
    expect_eq "badinput: $name: every operation ($OPS) fails with $want" "$want " "$got"
    n=$(grep -c '^asya-state:' "$TMP/cfg.err")
    line=$(grep '^asya-state:' "$TMP/cfg.err" | head -n 1)
    if [ "$n" -eq 1 ] && [[ $line == *"$culprit"* ]]; then
        ok "badinput: $name: exactly one stderr line, naming $culprit"
    else
        fail "badinput: $name: exactly one stderr line, naming $culprit" \
            "$n lines: $(head -c 400 "$TMP/cfg.err")"
    fi
    expect_eq "badinput: $name: nothing written to the local directory $dir" "" \
        "$(ls -A "$dir")"
}
L=$TMP/local
MISSING=t_missing_bucket_$$
cfg_case "missing bucket" EIO "'$MISSING'" "$L/m1" NATS_KV_BUCKET=$MISSING STATE_MOUNT="$L/m1"
cfg_case "malformed mounts (bad bucket name)" EIO "ASYA_STATE_PROXY_MOUNTS" "$L/m2" \
    ASYA_STATE_PROXY_MOUNTS="c:$L/m2:bucket=bad!name"
cfg_case "malformed mounts (bad key prefix)" EIO "prefix '..x'" "$L/m3" \
    ASYA_STATE_PROXY_MOUNTS="c:$L/m3:prefix=..x"
cfg_case "mounts write=direct" ENOTSUP "write=direct" "$L/m4" \
    ASYA_STATE_PROXY_MOUNTS="c:$L/m4:write=direct"
cfg_case "overlapping prefixes a and a.b" EIO "prefixes a and a.b" "$L/m5" \
    ASYA_STATE_PROXY_MOUNTS="c:$L/m5:prefix=a;d:$L/m5b:prefix=a.b"
[ -z "$(ls -A "$L/m5b" 2>/dev/null)" ] || fail "badinput: overlap: second mount untouched" \
    "$(ls -A "$L/m5b")"
cfg_case "overlapping mounts without prefix" EIO "share key space" "$L/m6" \
    ASYA_STATE_PROXY_MOUNTS="c:$L/m6;d:$L/m6b"
cfg_case "unreadable creds file (missing)" EIO "NATS_CREDS_FILE" "$L/m7" STATE_MOUNT="$L/m7" \
    NATS_CREDS_FILE="$TMP/no-such.creds"
mkdir -p "$TMP/creds-dir"
cfg_case "unreadable creds file (a directory)" EIO "NATS_CREDS_FILE" "$L/m8" \
    STATE_MOUNT="$L/m8" NATS_CREDS_FILE="$TMP/creds-dir"
echo "this is not a creds file" >"$TMP/garbage.creds"
cfg_case "creds file without JWT and seed" EIO "NATS_CREDS_FILE" "$L/m9" STATE_MOUNT="$L/m9" \
    NATS_CREDS_FILE="$TMP/garbage.creds"
cfg_case "missing NATS_URL" EIO "NATS_URL" "$L/m10" STATE_MOUNT="$L/m10" NATS_URL=
cfg_case "malformed NATS_URL" EIO "NATS_URL" "$L/m11" STATE_MOUNT="$L/m11" NATS_URL="bogus://x"
# No usable entry at all: the contract's fallback is /state, which must fail with EIO (a
# fall-through to the local disk would give ENOENT: there is no local /state/noentry).
out=$(shimmed ASYA_STATE_PROXY_MOUNTS="garbage" -- "$PY" "$HERE/badinput_ops.py" \
    /state/noentry 2>"$TMP/cfg.err")
expect_eq "badinput: mounts with no usable entry: operations under /state fail with EIO" \
    "EIO " "$(awk '{print $2}' <<<"$out" | sort -u | tr '\n' ' ')"
# mounts.c reports the bad entry and then the fallback: both lines name the variable.
if [ "$(grep -c '^asya-state:' "$TMP/cfg.err")" -ge 1 ] &&
    ! grep '^asya-state:' "$TMP/cfg.err" | grep -qv ASYA_STATE_PROXY_MOUNTS &&
    grep -q "'garbage'" "$TMP/cfg.err"; then
    ok "badinput: mounts with no usable entry: stderr names ASYA_STATE_PROXY_MOUNTS and the entry"
else
    fail "badinput: mounts with no usable entry: stderr names ASYA_STATE_PROXY_MOUNTS" \
        "$(cat "$TMP/cfg.err")"
fi
# Programs that never touch a mount see nothing of a broken configuration.
out=$(shimmed ASYA_STATE_PROXY_MOUNTS="garbage" NATS_URL= -- "$PY" -c 'print("quiet")' 2>&1)
expect_eq "badinput: broken configuration, no mount touched: no stderr at all" "quiet" "$out"

# --- 4. `..` games: no key outside the mount's prefix, local files where lexically due -------
G=$(new_bucket) || fail "badinput: dotdot bucket" "cannot create"
D=$TMP/dd
mkdir -p "$D/state/a" "$D/state/b" "$D/state/a2" "$D/etc"
cat >"$TMP/dotdot.py" <<'PYEOF'
import os, sys
D = sys.argv[1]
def w(p, v):
    with open(p, "w") as f:
        f.write(v)
w(D + "/state/a/../b/x1", "x1")                 # mount b's key pb.x1
w(D + "/state/a/x/../../../state/a/y", "y")     # out and back: pa.y
w(D + "/state/a/../../etc/passwd", "local")     # outside both mounts: the local file
w(D + "/state/a/../a2/z", "local z")            # a2 is no mount: the local file
w(D + "/state/b/../../state/b/../a/w", "w")     # pa.w
os.mkdir(D + "/state/a/sub")                    # marker pa.sub/
os.chdir(D + "/state/a/sub")                    # the shim's virtual cwd
w("../../b/r1", "r1")                           # pb.r1
w("../r2", "r2")                                # pa.r2
w("../../../etc/rel", "local rel")              # local D/etc/rel
w("../../a/../../state/b/r3", "r3")             # pb.r3
w("./../sub/../../b/./r4", "r4")                # pb.r4
print("cwd", os.getcwd())
print("listing", sorted(os.listdir("..")))
PYEOF
out=$(shimmed NATS_KV_BUCKET="$G" ASYA_STATE_PROXY_MOUNTS="a:$D/state/a:prefix=pa;b:$D/state/b:prefix=pb" \
    -- "$PY" "$TMP/dotdot.py" "$D" 2>"$TMP/dd.err")
rc=$?
expect_eq "badinput: dotdot: the Python program ran without error" "0 " "$rc $(cat "$TMP/dd.err")"
keys=$("$KVTOOL" keys "$G" 2>&1 | tr '\n' ' ')
expect_eq "badinput: dotdot: exactly the lexically due keys, all under pa. or pb. (kvtool keys)" \
    "pa.r2 pa.sub/ pa.w pa.y pb.r1 pb.r3 pb.r4 pb.x1 " "$keys"
bad=
for k in pb.x1 pa.y pa.w pb.r1 pa.r2 pb.r3 pb.r4; do
    v=$("$KVTOOL" get "$G" "$k" 2>&1)
    [ "$v" = "${k#p?.}" ] || bad+="$k=$v "
done
expect_eq "badinput: dotdot: every key holds the value written through its .. path" "" "$bad"
expect_eq "badinput: dotdot: nothing written into the local mount directories" "" \
    "$(ls -A "$D/state/a" "$D/state/b" | grep -v ':$' | grep -v '^$')"
expect_eq "badinput: dotdot: paths outside the mounts went to their local files" \
    "local|local z|local rel" "$(cat "$D/etc/passwd"; echo -n "|"; cat "$D/state/a2/z"; echo -n "|"; cat "$D/etc/rel")"
expect_eq "badinput: dotdot: getcwd shows the virtual cwd" "cwd $D/state/a/sub" \
    "$(sed -n 1p <<<"$out")"
expect_eq "badinput: dotdot: listing '..' from the virtual cwd shows mount a's names" \
    "listing ['r2', 'sub', 'w', 'y']" "$(sed -n 2p <<<"$out")"
# /state/cache/../../etc/passwd is not below the mount: it goes to libc unchanged, so the
# program sees exactly what it sees without the shim (the kernel resolves it), and no key.
readpw='import sys
try:
    sys.stdout.write(open("/state/cache/../../etc/passwd").read())
except OSError as e:
    print(type(e).__name__, e.errno)'
G2=$(new_bucket) || fail "badinput: dotdot bucket 2" "cannot create"
want=$(timeout -k 5 60 "$PY" -c "$readpw" 2>&1)
out=$(shimmed NATS_KV_BUCKET="$G2" STATE_PREFIX=cache ASYA_STATE_PROXY_MOUNTS="cache:/state/cache" -- \
    "$PY" -c "$readpw" 2>&1)
expect_eq "badinput: dotdot: /state/cache/../../etc/passwd gives what it gives without the shim" \
    "$want" "$out"
expect_eq "badinput: dotdot: /state/cache/../../etc/passwd made no key" "" \
    "$("$KVTOOL" keys "$G2" 2>&1)"
