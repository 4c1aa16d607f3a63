#!/usr/bin/env bash
# t_trixie.sh: the preload in an actor image that is not Debian 12 (issue 15). A Debian 13
# (trixie) root made with debootstrap (scripts/debian-root.sh, with python3 and libssl3t64, as
# python:3.13-slim has; kept in build/trixie-root between runs), no libnats in it; `make
# install-bundle` puts the library, the backend and the backend's own libnats and libprotobuf-c
# in its /opt/asya/lib/asya/; the demo programs run in a plain chroot (no Docker) under
# LD_PRELOAD against the test nats-server on the host's loopback, every result checked with
# kvtool from the host. Needs root (chroot, debootstrap): skipped, with the reason, otherwise.
# it-timeout: 600
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
    ok "trixie (skipped: chroot and debootstrap need root)"
    exit 0
fi
root=$ROOT/build/trixie-root
if [ ! -x "$root/usr/bin/python3" ]; then
    command -v debootstrap >/dev/null || "$ROOT/scripts/deps.sh" --docker >/dev/null
    rm -rf "$root"
    t=$(date +%s)
    if ! out=$("$ROOT/scripts/debian-root.sh" trixie "$root" --include=python3,libssl3t64 2>&1); then
        fail "trixie root: debootstrap" "$out"
        rm -rf "$root"
        exit 1
    fi
    ok "trixie root made with debootstrap ($(($(date +%s) - t))s)"
fi
expect_eq "trixie root: Debian 13" 13 "$(cut -d. -f1 "$root/etc/debian_version")"
expect_eq "trixie root: no libnats, no libprotobuf-c of its own" "" \
    "$(cd "$root" && ls usr/lib/*/libnats* usr/lib/*/libprotobuf-c* 2>/dev/null)"

rm -rf "$root/opt/asya" "$root/demo"
if ! out=$(make -C "$ROOT" -s install-bundle DESTDIR="$root" PREFIX=/opt/asya 2>&1); then
    fail "make install-bundle" "$out"
    exit 1
fi
ok "make install-bundle: $(cd "$root/opt/asya/lib/asya" && ls | paste -sd' ')"
cp -r "$ROOT/demo" "$root/demo"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null; _lib_cleanup' EXIT

b=$(new_bucket)
in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 \
        LD_PRELOAD=/opt/asya/lib/asya/libasya-state-nats-kv.so NATS_URL="$NATS_URL" \
        NATS_KV_BUCKET="$b" STATE_PREFIX=trixie STATE_MOUNT=/state timeout 120 "$@"
}
pids=()
for _ in 1 2 3; do
    in_root python3 /demo/counter.py /state/counter 20 >"$TMP/counter.$_" 2>&1 &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
[ $rc -eq 0 ] || echo "# counter.py: $(cat "$TMP"/counter.*)"
expect_eq "trixie: 3 counter.py at once, 20 increments each (kvtool)" 60 \
    "$("$KVTOOL" get "$b" trixie.counter 2>&1)"
out=$(in_root bash /demo/notes.sh /state 2>&1) || echo "# notes.sh: $out"
expect_eq "trixie: notes.sh (kvtool)" $'call Alice\nwater the plants' \
    "$("$KVTOOL" get "$b" trixie.notes/tuesday.txt 2>&1)"
out=$(in_root python3 /demo/conflict.py /state/shared.txt 2>&1)
expect_eq "trixie: conflict.py sees FileExistsError" "0 changed by another writer" \
    "$? $("$KVTOOL" get "$b" trixie.shared.txt 2>&1)"
out=$(chroot "$root" /usr/bin/env -i LD_DEBUG=libs LD_PRELOAD=/opt/asya/lib/asya/libasya-state-nats-kv.so \
    NATS_URL="$NATS_URL" NATS_KV_BUCKET="$b" STATE_PREFIX=trixie /usr/bin/cat /state/counter 2>&1)
expect_eq "trixie: the backend loads the bundled libnats and libprotobuf-c" \
    "/opt/asya/lib/asya/libnats.so.3.4 /opt/asya/lib/asya/libprotobuf-c.so.1" \
    "$(grep -oE 'calling init: /opt/asya/lib/asya/lib(nats|protobuf-c)[^ ]*' <<<"$out" | awk '{print $3}' | sort -u | paste -sd' ')"
