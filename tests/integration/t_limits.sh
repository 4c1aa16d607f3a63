#!/usr/bin/env bash
# t_limits.sh: values the server cannot store are refused, not acknowledged (issue 13).
# nats-server 2.9.10 acknowledges a message whose stored record passes 32 MiB without keeping
# it; with max_payload raised to 64 MiB, a 31 MiB value must land, 32 and 40 MiB ones must
# fail with EFBIG at close and leave the old value.
. "$(dirname "$0")/lib.sh"

conf=$TMP/big.conf
printf 'max_payload: 67108864\nmax_pending: 268435456\n' >"$conf"
start_server -c "$conf" || { fail "limits: a server with max_payload 64 MiB starts" "no server"; exit 1; }
export NATS_URL=$SERVER_URL
B=$(new_bucket)
export NATS_KV_BUCKET=$B STATE_MOUNT=/state/big STATE_PREFIX=lim
PY=$(python3 -c 'import sys; print(sys.executable)')
for mb in 31 32 40; do
    out=$(timeout -k 5 120 env LD_PRELOAD="$SHIM" "$PY" - "$mb" <<'PY' 2>/dev/null
import errno, sys
mb = int(sys.argv[1])
p = "/state/big/v%d" % mb
with open(p, "w") as f:
    f.write("old")
try:
    with open(p, "wb") as f:
        f.write(b"x" * (mb << 20))
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
PY
)
    stored=$($KVTOOL get "$B" "lim.v$mb" 2>/dev/null | wc -c)
    if [ "$mb" = 31 ]; then
        expect_eq "limits: a 31 MiB value is stored" "ok $((31 << 20))" "$out $stored"
    else
        expect_eq "limits: a $mb MiB value is refused with EFBIG, the old value kept" "EFBIG 3" "$out $stored"
    fi
done
