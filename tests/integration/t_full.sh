#!/usr/bin/env bash
# Issue 13, case 10: errno as a local disk gives it. A full bucket (its max_bytes) and a full
# server store (JetStream's max_file_store) are ENOSPC at the commit, with the server's
# reason in the log line, and the old value kept; running out of descriptors at the first
# touch of a mount is EMFILE (not ECONNREFUSED or a latched EIO), and the next operation,
# once descriptors are free, works.
. "$(dirname "$0")/lib.sh"
PY=$(python3 -c 'import sys; print(sys.executable)')

# shimmed URL BUCKET CMD...
shimmed() {
    local url=$1 bucket=$2
    shift 2
    timeout -k 5 60 env NATS_URL="$url" NATS_KV_BUCKET="$bucket" STATE_MOUNT=/state \
        NATS_TIMEOUT_MS=3000 LD_PRELOAD="$SHIM" "$@"
}

# fill_py: writes k = "old", then 40 KB values to f0..f5 until one is refused, then 40 KB
# to k; prints each outcome ("ok" or the errno name), the fills joined by commas
fill_py='
import errno
def w(p, v):
    try:
        with open(p, "w") as f:
            f.write(v)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
big = "b" * 40000
out = [w("/state/k", "old")]
fills = []
for i in range(6):
    fills.append(w("/state/f%d" % i, big))
    if fills[-1] != "ok":
        break
out += [",".join(fills), w("/state/k", big)]
print(" ".join(out))
'

full_case() { # WHAT URL BUCKET REASON
    local what=$1 url=$2 bucket=$3 reason=$4 out
    out=$(shimmed "$url" "$bucket" "$PY" -c "$fill_py" 2>"$TMP/full.err")
    echo "# $what: $out"
    sed 's/^/# stderr: /' "$TMP/full.err" | head -2
    expect_eq "full: $what: fills stop at ENOSPC, and an update of k past the limit is ENOSPC at close" \
        "ok ENOSPC ENOSPC" "$(echo "$out" | awk '{ n = split($2, f, ","); print $1, f[n], $3 }')"
    check "full: $what: the log line names the key and the server's reason ($reason)" \
        grep -q "k: commit failed: .*$reason" "$TMP/full.err"
    expect_eq "full: $what: the old value is kept (kvtool)" "old" \
        "$("$KVTOOL" -s "$url" get "$bucket" k 2>&1 | cut -c1-20)"
}

# A bucket of 64 KiB (history 1): one 40 KB value fits, the second does not.
bucket=$(new_bucket --max-bytes 65536 --history 1)
full_case "bucket max_bytes" "$NATS_URL" "$bucket" "maximum bytes exceeded"

# A server whose JetStream store is 64 KiB, a bucket without limits.
printf 'jetstream { max_file_store: 65536, max_memory_store: 65536 }\n' >"$TMP/small.conf"
if start_server -c "$TMP/small.conf"; then
    "$KVTOOL" -s "$SERVER_URL" bucket-add small >/dev/null
    full_case "server store full" "$SERVER_URL" small "insufficient resources"
else
    fail "full: a server with a 64 KiB store starts" "see the log above"
fi

# Descriptors: RLIMIT_NOFILE 64, every descriptor taken, then FREE of them released before the
# first touch of the mount; then 20 more released and a write that must land.
emfile_py='
import errno, os, resource, sys
free = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
for fd in held[len(held) - free:]:
    os.close(fd)
del held[len(held) - free:]
out = []
try:
    open("/state/fd", "w").write("x")
    out.append("ok")
except OSError as e:
    out.append(errno.errorcode.get(e.errno, str(e.errno)))
for fd in held[-20:]:
    os.close(fd)
try:
    with open("/state/fd", "w") as f:
        f.write("y")
    out.append("ok")
except OSError as e:
    out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(" ".join(out))
'
bucket=$(new_bucket)
for free in 0 1; do
    out=$(shimmed "$NATS_URL" "$bucket" "$PY" -c "$emfile_py" $free 2>"$TMP/fd.err")
    sed 's/^/# stderr: /' "$TMP/fd.err" | head -2
    expect_eq "full: $free descriptors free at the first touch: EMFILE; once some are free, a write lands" \
        "EMFILE ok" "$out"
done
expect_eq "full: the write after EMFILE is stored (kvtool)" "y" \
    "$("$KVTOOL" -s "$NATS_URL" get "$bucket" fd 2>&1)"
