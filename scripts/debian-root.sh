#!/usr/bin/env bash
# scripts/debian-root.sh SUITE DIR [debootstrap options]: a minimal Debian root file system
# (`debootstrap --variant=minbase`) of SUITE in DIR, from the mirror apt already uses (the first
# bookworm "deb" source of /etc/apt/sources.list.d/*.sources, then *.list and sources.list;
# deb.debian.org when none). Used by scripts/base-image.sh (bookworm, the image's base) and
# tests/integration/t_trixie.sh (the preload in a Debian 13 root). Needs root and debootstrap
# (scripts/deps.sh --docker). Exit status: debootstrap's; its log is DIR.log, kept on failure.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/debian-root.sh SUITE DIR [debootstrap options]" >&2; exit 2; }
suite=$1 dir=$2
shift 2
mirror=$(
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             { t = ""; u = ""; s = ""
               for (i = 1; i <= NF; i++) {
                   if ($i ~ /^Types:/) t = $i
                   if ($i ~ /^URIs:/) { u = $i; sub(/^URIs:[ \t]*/, "", u); sub(/[ \t].*/, "", u) }
                   if ($i ~ /^Suites:/) s = " " $i " " }
               if (t ~ /[ \t]deb([ \t]|$)/ && s ~ /[ \t]bookworm[ \t]/ && u != "") print u }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
        [ -f "$f" ] || continue
        sed -nE 's/^deb[ \t]+(\[[^]]*\][ \t]+)?([a-z]+:[^ \t]+)[ \t]+bookworm([ \t].*)?$/\2/p' "$f"
    done
)
mirror=$(head -n 1 <<<"$mirror")
mirror=${mirror:-http://deb.debian.org/debian}
echo "debian-root: debootstrap --variant=minbase $* $suite $dir $mirror" >&2
if ! debootstrap --variant=minbase "$@" "$suite" "$dir" "$mirror" >"$dir.log" 2>&1; then
    echo "debian-root: debootstrap failed: $(tail -n 3 "$dir.log" | tr '\n' ' ')" >&2
    exit 1
fi
rm -f "$dir.log"
