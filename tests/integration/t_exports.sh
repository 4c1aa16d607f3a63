#!/usr/bin/env bash
# t_exports.sh: the preloaded library exports exactly the hooks listed in shim/hooks.def, does
# not link libnats, and the backend exports only kv_backend.
. "$(dirname "$0")/lib.sh"

listed=$(sed -n 's/^HOOK([^,]*, *\([A-Za-z0-9_]*\),.*/\1/p' "$ROOT/shim/hooks.def" | sort -u)
exported=$(nm -D --defined-only "$SHIM" | awk '$2 ~ /^[TWiV]$/ {print $3}' | sed 's/@.*//' | sort -u)
extra=$(comm -13 <(echo "$listed") <(echo "$exported") | tr '\n' ' ')
missing=$(comm -23 <(echo "$listed") <(echo "$exported") | tr '\n' ' ')
expect_eq "shim: no symbol exported beyond hooks.def" "" "$extra"
expect_eq "shim: every hook of hooks.def is exported" "" "$missing"
n=$(echo "$listed" | wc -l)
[ "$n" -gt 50 ] && ok "shim: hooks.def names $n hooks" || fail "shim: hooks.def" "only $n hooks"

if readelf -d "$SHIM" | grep -q 'NEEDED.*libnats'; then
    fail "shim: does not link libnats" "$(readelf -d "$SHIM" | grep NEEDED | tr '\n' ' ')"
else
    ok "shim: does not link libnats"
fi
backend=$(dirname "$SHIM")/libasya-state-kv.so
expect_eq "backend: exports only kv_backend" "kv_backend" \
    "$(nm -D --defined-only "$backend" | awk '$2 ~ /^[TWiV]$/ {print $3}' | sed 's/@.*//' | sort -u | tr '\n' ' ' | sed 's/ $//')"
