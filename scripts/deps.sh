#!/usr/bin/env bash
# Installs what building, testing and running the project needs, from Debian's packages.
# Used by the README's quick start, .ci/run, the Dockerfile and scripts/base-image.sh.
# Idempotent; quiet when all is there.
#   (no argument)  everything: build, tests, tools (the README's quick start, .ci/run)
#   --build        only what `make all` needs (the Dockerfile's build stage: few, small layers)
#   --runtime      only what the installed programs load (the image's runtime stage)
#   --docker       a Docker engine, Compose and debootstrap (make image, t_image.sh)
set -euo pipefail
pkgs=(build-essential pkg-config libnats-dev uthash-dev libcriterion-dev nats-server
      libmicrohttpd-dev libjansson-dev python3 strace valgrind clang cppcheck clang-tidy
      libclang-rt-14-dev openssl procps iproute2 libpython3.11-testsuite man-db groff-base python3-pytest)
# The Node.js tests need node; a node that is already there (from any source) is kept.
command -v node >/dev/null || pkgs+=(nodejs)
case "${1:-}" in
  "") ;;
  --build) pkgs=(gcc libc6-dev make pkg-config libnats-dev uthash-dev libmicrohttpd-dev libjansson-dev) ;;
  --runtime) pkgs=(libnats3.4 libmicrohttpd12 libjansson4 ca-certificates) ;;
  --docker) pkgs=(docker.io docker-compose debootstrap) ;;
  *) echo "usage: scripts/deps.sh [--build|--runtime|--docker]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
