#!/usr/bin/env bash
# Issue 13, cases 4 and 5: nothing escapes the mount.
#  4. Keys planted by another client (kvtool) whose names decode to '..', '.', an empty name,
#     or hold '/' or NUL: a listing never returns them as names (skipped, one warning each),
#     so a cleanup loop over os.listdir/os.walk cannot reach a local file; opening or
#     unlinking what a naive join of the raw name would give touches no local file.
#  5. 17 mounts (past the old limit of 16) are all served; 65 (past MOUNTS_MAX 64) are
#     refused whole: every mount fails with EIO and nothing falls through to the local disk.
. "$(dirname "$0")/lib.sh"
PY=$(python3 -c 'import sys; print(sys.executable)')

# --- 4. planted names ----------------------------------------------------------------------
bucket=$(new_bucket)
root=$TMP/pod
mkdir -p "$root/state" "$root/runs"
echo "precious" >"$root/runs/victim2"
echo "precious" >"$root/victim"
kv() { "$KVTOOL" "$@" >/dev/null; }
kv put "$bucket" "p.d/" ""                                  # the directory d (its marker)
kv put "$bucket" "p.d/ok" "fine"                            # a plain file beside the plants
kv put "$bucket" "p.d/=2E=2E=2F=2E=2E=2Fruns=2Fvictim2" "x" # ../../runs/victim2
kv put "$bucket" "p.d/=2E=2E" "x"                           # ..
kv put "$bucket" "p.d/=2E" "x"                              # .
kv put "$bucket" "p.d/a=2Fb" "x"                            # a/b in one segment
kv put "$bucket" "p.d/=2E=2E=2F=2E=2E=2Fvictim" "x"         # ../../victim
kv put "$bucket" "p.d/nul=00x" "x"                          # NUL inside
kv put "$bucket" "p.d//empty" "x"                           # an empty name (d/ + /empty)
kv put "$bucket" "p.=2E=2E=2Fvictim" "x"                    # ../victim at the mount's root
planted=8
out=$(cd "$root" && timeout -k 5 60 env NATS_URL="$NATS_URL" NATS_KV_BUCKET="$bucket" \
    STATE_PREFIX=p STATE_MOUNT="$root/state" LD_PRELOAD="$SHIM" "$PY" -c '
import os, sys
root = sys.argv[1]
d = os.path.join(root, "state", "d")
names = sorted(os.listdir(d))
top = sorted(os.listdir(os.path.join(root, "state")))
walked = sorted(os.path.join(dp, n) for dp, dns, fns in os.walk(os.path.join(root, "state"))
                for n in dns + fns)
print("names", names)
print("top", top)
bad = [p for p in walked if not os.path.normpath(p).startswith(os.path.join(root, "state") + "/")]
print("outside", bad)
# the cleanup loop of the report: unlink everything listed
for n in names:
    try:
        os.unlink(os.path.join(d, n))
    except OSError as e:
        print("unlink", n, e.errno)
# what a naive join of the raw decoded names would reach: the mount path itself keeps them
# as mount paths or the local files they name lexically; neither may be changed by the shim
for raw in ("../../runs/victim2", "../../victim"):
    p = os.path.join(d, raw)
    try:
        print("read", raw, open(p).read().strip())
    except OSError as e:
        print("read", raw, e.errno)
' "$root" 2>"$TMP/plant.err")
echo "$out" | sed 's/^/# /'
sed 's/^/# stderr: /' "$TMP/plant.err" | head -n 10
expect_eq "escape: planted names are not listed; the plain file is" "names ['ok']" \
    "$(echo "$out" | grep '^names')"
expect_eq "escape: the mount root lists d only (its ../victim plant skipped)" "top ['d']" \
    "$(echo "$out" | grep '^top')"
expect_eq "escape: os.walk yields nothing outside the mount" "outside []" \
    "$(echo "$out" | grep '^outside')"
expect_eq "escape: the local files a naive join would reach are untouched" "precious precious" \
    "$(cat "$root/runs/victim2" "$root/victim" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "escape: the cleanup loop deleted the plain file only (kvtool)" "not found: p.d/ok" \
    "$("$KVTOOL" get "$bucket" p.d/ok 2>&1 | sed 's/^kvtool: //')"
expect_eq "escape: the planted keys are still in the bucket, untouched" "x" \
    "$("$KVTOOL" get "$bucket" "p.d/=2E=2E=2F=2E=2E=2Fruns=2Fvictim2" 2>&1)"
warns=$(grep -c "not listed" "$TMP/plant.err")
if [ "$warns" -ge "$planted" ] && [ "$warns" -le $((planted * 2)) ]; then
    ok "escape: each skipped name is warned about ($warns lines for $planted plants, two listings)"
else
    fail "escape: the skipped names are warned about" "$warns lines: $(head -n 3 "$TMP/plant.err")"
fi

# --- 5. many mounts --------------------------------------------------------------------------
bucket=$(new_bucket)
mounts() { # N -> ASYA_STATE_PROXY_MOUNTS with N mounts under $TMP/mnt, prefixes m1..mN
    local i spec=
    for i in $(seq "$1"); do
        mkdir -p "$TMP/mnt/m$i"
        spec+="${spec:+;}m$i:$TMP/mnt/m$i:bucket=$bucket,prefix=m$i"
    done
    echo "$spec"
}
write_each() { # N SPEC: writes file f in mounts 1, N/2 and N; prints the errno name or ok
    timeout -k 5 60 env NATS_URL="$NATS_URL" ASYA_STATE_PROXY_MOUNTS="$2" LD_PRELOAD="$SHIM" \
        "$PY" -c '
import errno, sys
n = int(sys.argv[1])
out = []
for i in (1, n // 2, n):
    try:
        with open("%s/m%d/f" % (sys.argv[2], i), "w") as f:
            f.write("v%d" % i)
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(" ".join(out))' "$1" "$TMP/mnt" 2>"$TMP/mounts.err"
}
expect_eq "escape: 17 mounts: the first, the middle and the 17th are served" "ok ok ok" \
    "$(write_each 17 "$(mounts 17)")"
expect_eq "escape: 17 mounts: the 17th's file is in the bucket under its prefix (kvtool)" "v17" \
    "$("$KVTOOL" get "$bucket" m17.f 2>&1)"
expect_eq "escape: 64 mounts: the 64th is served" "ok ok ok" "$(write_each 64 "$(mounts 64)")"
rm -f "$TMP"/mnt/m*/f
expect_eq "escape: 65 mounts: refused whole, every mount EIO" "EIO EIO EIO" \
    "$(write_each 65 "$(mounts 65)")"
sed 's/^/# stderr: /' "$TMP/mounts.err" | head -n 3
expect_eq "escape: 65 mounts: nothing fell through to the local disk" "0" \
    "$(find "$TMP/mnt" -type f | wc -l)"
check "escape: 65 mounts: the refusal is reported" grep -qi "mount" "$TMP/mounts.err"
