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
