#!/usr/bin/env bash
# t_reads.sh: the read of a value (kv/lane.c), on a bucket with direct gets (what nats.c 3.4.1,
# the nats CLI and `asya-state bucket add` create: a direct get whose reply comes straight to
# the reading thread) and on one without (as older clients made them: the stream's own get).
# On each, through the shim and through the sidecar, against what kvtool wrote and reads:
# binary bytes, an empty value, the revision (user.asya.version), the time (st_mtime,
# Last-Modified), a deleted key, mkdir over a value (its check for a value goes out with the
# marker's create: kv/ahead.c), and 16 threads reading at once (as many lanes).
. "$(dirname "$0")/lib.sh"
M=/state/rd

if [ ! -f "$SHIM" ] || [ ! -x "$ASYA" ]; then
    fail "reads: the shim and asya-state are built" "missing"
    exit 1
fi

head -c 70000 /dev/urandom >"$TMP/blob"
SUM=$(sha256sum <"$TMP/blob" | cut -d' ' -f1)

for direct in 1 0; do
    B=$(new_bucket --direct $direct) || { fail "reads: bucket (direct $direct)" "cannot create"; continue; }
    rev=$("$KVTOOL" put-stdin "$B" blob <"$TMP/blob")
    "$KVTOOL" put "$B" empty "" >/dev/null
    "$KVTOOL" put "$B" gone "x" >/dev/null
    "$KVTOOL" del "$B" gone
    "$KVTOOL" put "$B" file "v" >/dev/null
    tns=$("$KVTOOL" time "$B" blob)
    out=$(timeout -k 5 60 env NATS_KV_BUCKET="$B" ASYA_STATE_PROXY_MOUNTS="rd:$M" \
        LD_PRELOAD="$SHIM" python3 -c '
import errno, hashlib, os, sys, threading
m, tns = sys.argv[1], int(sys.argv[2])
def err(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
data = open(m + "/blob", "rb").read()
print("sha", hashlib.sha256(data).hexdigest())
print("rev", os.getxattr(m + "/blob", "user.asya.version").decode())
print("mtime_ns_off", abs(os.stat(m + "/blob").st_mtime_ns - tns) < 1000)
print("empty", repr(open(m + "/empty", "rb").read()))
print("gone", err(lambda: open(m + "/gone")))
print("mkdir_over_value", err(lambda: os.mkdir(m + "/file")))
print("mkdir_new", err(lambda: os.mkdir(m + "/d")))
# a commit (mkdir) has read the bucket limits: on a bucket with direct gets, lanes from here
print("after", repr(open(m + "/empty", "rb").read()), err(lambda: open(m + "/gone")),
      os.getxattr(m + "/blob", "user.asya.version").decode(),
      abs(os.stat(m + "/blob").st_mtime_ns - tns) < 1000)
got = []
def reader():
    for _ in range(20):
        got.append(hashlib.sha256(open(m + "/blob", "rb").read()).hexdigest())
ts = [threading.Thread(target=reader) for _ in range(16)]
for t in ts: t.start()
for t in ts: t.join()
print("threads", len(got), len(set(got)) == 1 and got[0] == hashlib.sha256(data).hexdigest())
' "$M" "$tns" 2>&1)
    expect_eq "reads (direct $direct): shim: bytes, revision, time, empty, deleted, mkdir, 16 threads" \
        "sha $SUM
rev $rev
mtime_ns_off True
empty b''
gone ENOENT
mkdir_over_value EEXIST
mkdir_new ok
after b'' ENOENT $rev True
threads 320 True" "$out"
    check "reads (direct $direct): mkdir left its marker and none over the value" \
        test "$("$KVTOOL" keys "$B" | grep -c '/$')" = 1 -a "$("$KVTOOL" keys "$B" | grep -cx 'd/')" = 1

    sock=$TMP/rd$direct.sock
    NATS_KV_BUCKET="$B" CONNECTOR_SOCKET=$sock timeout -k 5 60 "$ASYA" serve 2>"$TMP/serve$direct.err" &
    pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    out=$(python3 - "$sock" "$tns" <<'PY' 2>&1
import email.utils, hashlib, os, sys
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tests", "integration"))
from sidecar_client import request
sock, tns = sys.argv[1], int(sys.argv[2])
st, h, body = request(sock, "GET", "/keys/blob")
lm = email.utils.parsedate_to_datetime(h["last-modified"])
print(st, hashlib.sha256(body).hexdigest(), int(lm.timestamp()) == tns // 10**9)
print(request(sock, "GET", "/keys/empty")[0:3:2], request(sock, "GET", "/keys/gone")[0])
PY
)
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    expect_eq "reads (direct $direct): sidecar: bytes and Last-Modified, empty, deleted" \
        "200 $SUM True
(200, b'') 404" "$out"
done
