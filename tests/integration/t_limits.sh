#!/usr/bin/env bash
# t_limits.sh: values the server cannot store are refused, not acknowledged (issue 13).
# nats-server 2.9.10 acknowledges a message whose stored record passes 32 MiB without keeping
# it; with max_payload raised to 64 MiB, a 31 MiB value must land, 32 and 40 MiB ones must
# fail with EFBIG and leave the old value. The limit is known at open (kv_ops.limit), so the
# EFBIG comes from the write() that passes it, as on a local disk (issue 11), and the close
# then fails the same way and commits nothing. Below: the same at a bucket's max value size
# and at the default server's max_payload (1 MiB), for write() and ftruncate().
. "$(dirname "$0")/lib.sh"
SHARED_URL=$NATS_URL

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
stage = "open"
try:
    with open(p, "wb") as f:
        stage = "write"
        f.write(b"x" * (mb << 20))
        stage = "close"
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno], stage)
PY
)
    stored=$($KVTOOL get "$B" "lim.v$mb" 2>/dev/null | wc -c)
    if [ "$mb" = 31 ]; then
        expect_eq "limits: a 31 MiB value is stored" "ok $((31 << 20))" "$out $stored"
    else
        expect_eq "limits: a $mb MiB value is refused with EFBIG at write(), the old value kept" \
            "EFBIG write 3" "$out $stored"
    fi
done

# edge URL BUCKET MAX: a file holding "old" is opened O_TRUNC; MAX bytes are written (ok), one
# more byte is EFBIG at write(), ftruncate(MAX + 1) is EFBIG, the close is EFBIG; prints the
# four outcomes
edge() {
    timeout -k 5 60 env NATS_URL="$1" NATS_KV_BUCKET="$2" STATE_MOUNT=/state/edge \
        STATE_PREFIX= LD_PRELOAD="$SHIM" "$PY" - "$3" <<'PY' 2>/dev/null
import errno, os, sys
mx = int(sys.argv[1])
p = "/state/edge/k"
with open(p, "w") as f:
    f.write("old")
out = []
def step(fn):
    try:
        fn()
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
step(lambda: os.write(fd, b"x" * mx))
step(lambda: os.write(fd, b"x"))
step(lambda: os.ftruncate(fd, mx + 1))
step(lambda: os.close(fd))
print(" ".join(out))
PY
}
B2=$(NATS_URL=$SHARED_URL new_bucket --max-value-size 1000)
expect_eq "limits: a bucket's max value size (1000): write to it ok, one more byte EFBIG at write(), ftruncate past it EFBIG, close EFBIG" \
    "ok EFBIG EFBIG EFBIG" "$(edge "$SHARED_URL" "$B2" 1000)"
expect_eq "limits: ... and the old value kept (kvtool)" "old" "$($KVTOOL -s "$SHARED_URL" get "$B2" k 2>&1)"
B3=$(NATS_URL=$SHARED_URL new_bucket)
# 1 MiB max_payload less the 256 bytes kept for our headers
expect_eq "limits: the server's max_payload (1 MiB): the same at 1 MiB - 256" \
    "ok EFBIG EFBIG EFBIG" "$(edge "$SHARED_URL" "$B3" $(((1 << 20) - 256)))"
expect_eq "limits: ... and the old value kept (kvtool)" "old" "$($KVTOOL -s "$SHARED_URL" get "$B3" k 2>&1)"
