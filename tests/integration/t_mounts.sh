#!/usr/bin/env bash
# t_mounts.sh: several mounts from ASYA_STATE_PROXY_MOUNTS (bucket= and prefix= per mount),
# reached by absolute paths in unusual spellings and by relative ones; paths that only look
# similar stay local.
. "$(dirname "$0")/lib.sh"

B1=$(new_bucket)
B2=$(new_bucket)
PY=$(python3 -c 'import sys; print(sys.executable)')
mkdir -p "$TMP/data/xy" "$TMP/work"
export NATS_KV_BUCKET=$B1 STATE_PREFIX=one
export ASYA_STATE_PROXY_MOUNTS="cache:/state/cache;x:$TMP/data/x:bucket=$B2,prefix=two,write=buffered"

run() { timeout -k 5 60 env LD_PRELOAD="$SHIM" "$@"; }

run sh -c 'echo a > /state/cache/f1'
expect_eq "mount 1: key in its bucket with its prefix" "a" "$($KVTOOL get "$B1" one.f1)"
run sh -c "echo b > $TMP/data/x/f2"
expect_eq "mount 2: bucket= and prefix= options" "b" "$($KVTOOL get "$B2" two.f2)"
run sh -c "echo c > /$TMP/data/./x/../x/f3"
expect_eq "mount 2 reached through //, /./ and /../" "c" "$($KVTOOL get "$B2" two.f3)"
run sh -c "cd $TMP/data && echo d > x/f4"
expect_eq "mount 2 reached by a relative path from its parent" "d" "$($KVTOOL get "$B2" two.f4)"
run sh -c "echo e > $TMP/data/xy/local"
expect_eq "a sibling with a longer name stays local" "e" "$(cat "$TMP/data/xy/local")"
expect_eq "... and is no key" "" "$($KVTOOL keys "$B2" | grep -c local | sed 's/^0$//')"
run "$PY" -c "import os; os.chdir('$TMP/work'); open('../data/x/f5','w').write('f')"
expect_eq "Python: relative path climbing into a mount" "f" "$($KVTOOL get "$B2" two.f5)"
got=$(run sh -c 'cat /state/cache/../cache/f1 /state/cache//f1')
expect_eq "mount 1 read back through .. and //" "a
a" "$got"
run "$PY" - "$TMP" <<'PY'
import os, sys
tmp = sys.argv[1]
d = os.open(tmp + "/data", os.O_RDONLY | os.O_DIRECTORY)        # a real ancestor of a mount
fd = os.open("x/f6", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd=d)
os.write(fd, b"g"); os.close(fd)
s = os.open(tmp + "/data/xy", os.O_RDONLY | os.O_DIRECTORY)     # a sibling: only via ".."
fd = os.open("../x/f7", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd=s)
os.write(fd, b"h"); os.close(fd)
fd = os.open("local2", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd=s)  # stays local
os.write(fd, b"i"); os.close(fd)
PY
expect_eq "*at() from a real directory that is a mount's parent reaches the mount" "g" \
    "$($KVTOOL get "$B2" two.f6 2>&1)"
expect_eq "*at() from a sibling directory reaches the mount through .." "h" \
    "$($KVTOOL get "$B2" two.f7 2>&1)"
expect_eq "*at() from a sibling directory without .. stays local" "i" \
    "$(cat "$TMP/data/xy/local2" 2>&1)"
