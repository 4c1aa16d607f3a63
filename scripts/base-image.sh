#!/usr/bin/env bash
# scripts/base-image.sh [--engine]: makes `docker build` of this project's Dockerfile possible
# on a Debian machine with no container registry, only Debian's mirror (what `make image` and
# tests/integration/t_image.sh run first). Idempotent; quiet when all is there.
#
#   1. scripts/deps.sh --docker: Debian's docker.io, docker-compose and debootstrap.
#   2. When no Docker engine answers: starts `dockerd --storage-driver=vfs` (in its own session,
#      so it outlives the caller; log in $ASYA_DOCKERD_LOG, default /var/log/asya-dockerd.log)
#      with no bridge and no iptables rules: containers use `--network host`.
#   3. When the image debian:12 is missing (skipped with --engine): `debootstrap
#      --variant=minbase bookworm` from the mirror apt already uses (scripts/debian-root.sh),
#      imported as debian:12 and tagged debian:12-slim, the two names the Dockerfile builds FROM.
#
# Exit 0 when ready; 3 when no engine can be started (the last line says why); 1 on any other
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "base-image: $*" >&2; }
engine_up() { timeout 20 docker info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null ||
    ! command -v docker-compose >/dev/null; then
    if ! ./scripts/deps.sh --docker </dev/null; then
        command -v docker >/dev/null && engine_up || { say "no engine: cannot install docker.io"; exit 3; }
    fi
fi

if ! engine_up; then
    [ "$(id -u)" -eq 0 ] || { say "no engine: no Docker engine answers and only root can start dockerd"; exit 3; }
    command -v dockerd >/dev/null || { say "no engine: dockerd is not installed"; exit 3; }
    log=${ASYA_DOCKERD_LOG:-/var/log/asya-dockerd.log}
    say "starting dockerd --storage-driver=vfs (log $log)"
    # TMPDIR is the caller's (the test runner's, removed when it ends): runc keeps its
    # process files there, so the engine that outlives the caller gets its own.
    mkdir -p /var/lib/docker/tmp
    TMPDIR=/var/lib/docker/tmp setsid dockerd --storage-driver=vfs --bridge=none --iptables=false --ip-masq=false \
        </dev/null >>"$log" 2>&1 &
    pid=$!
    for _ in $(seq 60); do
        engine_up && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    engine_up || { say "no engine: dockerd did not come up: $(tail -n 3 "$log" | tr '\n' ' ')"; exit 3; }
fi
[ "${1:-}" = "--engine" ] && exit 0

have() { docker image inspect "$1" >/dev/null 2>&1; }
if ! have debian:12; then
    root=$(mktemp -d "${TMPDIR:-/tmp}/asya-debian12.XXXXXX")
    trap 'rm -rf "$root" "$root.log"' EXIT
    say "debootstrap --variant=minbase bookworm (scripts/debian-root.sh, a few minutes)"
    ./scripts/debian-root.sh bookworm "$root" || exit 1
    # What an image needs no copy of: downloaded packages, package lists, logs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
    # apt's download directories, as apt makes them (no "unsandboxed as root" warnings).
    mkdir -p "$root/var/lib/apt/lists/partial" "$root/var/cache/apt/archives/partial"
    chroot "$root" chown _apt:root /var/lib/apt/lists/partial /var/cache/apt/archives/partial || true
    chmod 0700 "$root/var/lib/apt/lists/partial" "$root/var/cache/apt/archives/partial"
    # As Docker's debian images: apt keeps no downloaded packages and installs no recommends.
    printf '%s\n' 'APT::Install-Recommends "false";' 'APT::Install-Suggests "false";' \
        >"$root/etc/apt/apt.conf.d/90asya-image"
    printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };' \
        >"$root/etc/apt/apt.conf.d/90asya-clean"
    chmod 0755 "$root" # mktemp's 0700 would become the image's /: no other user could run anything
    # PATH as Docker's debian images set it: an imported image has no environment at all.
    tar -C "$root" -c . | docker import -c 'CMD ["bash"]' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - debian:12 >/dev/null
    rm -rf "$root"
    trap - EXIT
    say "made debian:12 ($(docker image inspect -f '{{.Size}}' debian:12) bytes)"
fi
have debian:12-slim || docker tag debian:12 debian:12-slim
