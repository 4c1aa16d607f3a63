#!/usr/bin/env bash
# t_image.sh: the connector image for real (issue 15). Builds it with `make image` (which
# starts a Docker engine and makes the debian:12 base image from Debian's mirror when they are
# missing: scripts/base-image.sh), checks its user, socket directory, version and label; runs
# `asya-state serve` in it as its non-root user on the host's network against the test
# nats-server, with the socket directory bind-mounted from the host, and speaks to the socket
# from the host as another user (nobody: PUT then GET, the key checked with kvtool); checks the
# HEALTHCHECK command and the engine's health status; and runs the compose demo
# (docker-compose -f compose.yaml, every container on the host's network) to its
# "demo: all results correct". Skipped, with the reason, only when no engine can be started.
# it-timeout: 900
. "$(dirname "$0")/lib.sh"

t0=$(date +%s)
VERSION=$(cat "$ROOT/VERSION")
IMG=asya-state-proxy-nats-kv-buffered-cas:$VERSION
name=asya-img-$$
proj=asyaimg$$
sockdir=
cleanup_image() {
    docker rm -f "$name" "$name-plain" >/dev/null 2>&1
    if [ -n "${NATS_PORT:-}" ]; then
        docker-compose -f "$ROOT/compose.yaml" -p "$proj" down --remove-orphans >/dev/null 2>&1
    fi
    [ -n "$sockdir" ] && rm -rf "$sockdir"
    _lib_cleanup
}
trap cleanup_image EXIT

# ---- the engine (installed and started when possible) and the base image ----
out=$("$ROOT/scripts/base-image.sh" 2>&1)
rc=$?
if [ $rc -eq 3 ]; then
    ok "image (skipped: $(tail -n 1 <<<"$out"))"
    exit 0
elif [ $rc -ne 0 ]; then
    fail "base image: scripts/base-image.sh" "exit $rc: $(tail -n 5 <<<"$out")"
    exit 1
fi
ok "engine answers and debian:12 exists (scripts/base-image.sh, $(($(date +%s) - t0))s)"

# ---- make image ----
t=$(date +%s)
if ! out=$(make -C "$ROOT" -s image 2>&1); then
    fail "make image" "$(tail -n 15 <<<"$out")"
    exit 1
fi
ok "make image builds $IMG ($(($(date +%s) - t))s)"

# The compose demo's image, built meanwhile (the checks below wait on the engine, not the CPU)
# with the same builder as make image, so the build stage is reused (docker-compose's own
# build sends the context differently: a second build stage); compose then builds nothing.
DOCKER_BUILDKIT=0 docker build -q --network host --target demo -t "${IMG%:*}:demo" "$ROOT" \
    >"$TMP/demo-build.log" 2>&1 &
demo_build=$!
_LIB_PIDS+=("$demo_build")

# ---- what the image is ----
# One name and one version everywhere: every manifest's connector image is this one.
refs=$(grep -ho 'image: [^ ]*asya-state[^ ]*' "$ROOT"/deploy/*.yaml | sort -u | paste -sd' ')
expect_eq "deploy/: every connector image is ghcr.io/deliveryhero/$IMG" \
    "image: ghcr.io/deliveryhero/$IMG" "$refs"
expect_eq "image: runs as 10001:10001" "10001:10001" "$(docker image inspect -f '{{.Config.User}}' "$IMG")"
expect_eq "image: the user and its group exist" "uid=10001(asya) gid=10001(asya) groups=10001(asya)" \
    "$(docker run --rm --network none "$IMG" id 2>&1)"
expect_eq "image: socket directory owned by the user" "asya:asya 755 /var/run/asya/state/connector.sock" \
    "$(docker run --rm --network none "$IMG" sh -c 'stat -L -c "%U:%G %a" /var/run/asya/state; echo $CONNECTOR_SOCKET' | paste -sd' ')"
expect_eq "image: asya-state --version is VERSION" "asya-state $VERSION" \
    "$(docker run --rm --network none "$IMG" asya-state --version 2>&1)"
expect_eq "image: version label is VERSION" "$VERSION" \
    "$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMG")"
expect_eq "image: HEALTHCHECK is asya-state health" "[CMD asya-state health --timeout 3]" \
    "$(docker image inspect -f '{{.Config.Healthcheck.Test}}' "$IMG")"
for f in /usr/lib/asya/libasya-state-nats-kv.so /usr/lib/asya/libasya-state-kv.so \
         /usr/lib/asya/libnats.so.3.4 /usr/lib/asya/libprotobuf-c.so.1; do
    check "image: carries $f" docker run --rm --network none "$IMG" test -s "$f"
done
out=$(docker run --rm --network none "$IMG" asya-state health 2>&1)
rc=$?
if [ $rc -eq 1 ] && [[ $out == unhealthy:* ]]; then ok "health: exit 1 with no sidecar"
else fail "health: exit 1 with no sidecar" "exit $rc: $out"; fi

# ---- the sidecar in the image, socket directory bind-mounted, a client as another user ----
b=$(new_bucket)
# The directory must be reachable by nobody (lib.sh's TMP is private to root) and writable by
# the image's user, as Asya's emptyDir is.
sockdir=$(mktemp -d /tmp/asya-img-sock.XXXXXX)
chmod 0755 "$sockdir"
chown 10001:10001 "$sockdir"
sock=$sockdir/connector.sock
if ! out=$(docker run -d --name "$name" --network host -v "$sockdir:/var/run/asya/state" \
        -e NATS_URL="$NATS_URL" -e NATS_KV_BUCKET="$b" -e STATE_PREFIX=img "$IMG" 2>&1); then
    fail "sidecar: docker run" "$out"
else
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    expect_eq "sidecar: socket created by 10001, mode 0666" "10001 srw-rw-rw-" \
        "$(stat -c '%u %A' "$sock" 2>&1)"
    out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 - "$sock" 2>&1 <<'EOF'
import http.client, os, socket, sys

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)

def req(method, url, body=None):
    c = Unix(sys.argv[1])
    c.request(method, url, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data

print("uid", os.getuid())
for _ in range(100):  # /healthz says 503 until the server and the bucket answer
    if req("GET", "/healthz")[0] == 200:
        break
    import time; time.sleep(0.1)
print("PUT", req("PUT", "/keys/image/hello.txt", b"hello from nobody")[0])
st, data = req("GET", "/keys/image/hello.txt")
print("GET", st, data.decode())
EOF
)
    expect_eq "sidecar: nobody PUTs and GETs through the container's socket" \
        "uid $(id -u nobody) | PUT 204 | GET 200 hello from nobody" "$(paste -sd'|' <<<"$out" | sed 's/|/ | /g')"
    expect_eq "sidecar: the value is in the bucket (kvtool)" "hello from nobody" \
        "$("$KVTOOL" get "$b" img.image/hello.txt 2>&1)"
    check "health: docker exec asya-state health" docker exec "$name" asya-state health
    st=
    for _ in $(seq 60); do
        st=$(docker inspect -f '{{.State.Health.Status}}' "$name" 2>&1)
        [ "$st" = healthy ] && break
        sleep 1
    done
    expect_eq "health: the engine's HEALTHCHECK says healthy" healthy "$st"
    docker stop -t 10 "$name" >/dev/null 2>&1
    expect_eq "sidecar: stops on TERM with status 0" 0 "$(docker inspect -f '{{.State.ExitCode}}' "$name")"
    [ ! -e "$sock" ] && ok "sidecar: socket removed at exit" ||
        fail "sidecar: socket removed at exit" "$(ls -l "$sock")"
    [ "$(docker inspect -f '{{.State.ExitCode}}' "$name")" = 0 ] ||
        echo "# sidecar log: $(docker logs "$name" 2>&1 | tail -n 5)"
fi
# No volume: the image's own socket directory works for a plain `docker run`.
out=$(docker run --rm --name "$name-plain" --network host -e NATS_URL="$NATS_URL" \
    -e NATS_KV_BUCKET="$b" "$IMG" sh -c 'asya-state serve & for i in $(seq 100); do
        asya-state health >/dev/null && { asya-state health; kill $!; wait $!; exit $?; }; sleep 0.1
    done; exit 1' 2>&1)
rc=$?
if [ $rc -eq 0 ] && [[ $out == *"healthy: HTTP/1.1 200"* ]]; then
    ok "sidecar: a plain docker run listens on the default CONNECTOR_SOCKET"
else
    fail "sidecar: a plain docker run listens on the default CONNECTOR_SOCKET" "exit $rc: $out"
fi

# ---- the compose demo ----
NATS_PORT=$(free_port)
export NATS_PORT
t=$(date +%s)
if ! wait "$demo_build"; then
    fail "compose demo: docker build --target demo" "$(tail -n 15 "$TMP/demo-build.log")"
    exit 1
fi
ok "compose demo: its image built (waited $(($(date +%s) - t))s more)"
t=$(date +%s)
out=$(cd "$ROOT" && timeout 480 docker-compose -f compose.yaml -p "$proj" up \
    --abort-on-container-exit --exit-code-from demo 2>&1)
rc=$?
if [ $rc -eq 0 ] && grep -q 'demo: all results correct' <<<"$out"; then
    ok "compose demo: all results correct ($(($(date +%s) - t))s)"
else
    fail "compose demo" "exit $rc: $(grep -E 'WRONG|ERROR|rror|demo: ' <<<"$out" | tail -n 15)"
    echo "$out" | tail -n 40 | sed 's/^/# /'
fi
echo "# t_image.sh: $(($(date +%s) - t0))s"
