#!/usr/bin/env bash
# Symbol coverage (issue 3): every file-I/O symbol (tests/symbols/fileio.txt) that python3,
# bash, node and the coreutils of the program matrix import - from the binaries and from the
# shared libraries they load (ldd, libc's own family excluded: its internal calls never reach
# the hooks) and Python's extension modules - is either hooked (shim/hooks.def, read through
# the C preprocessor as the Makefile does) or passed through with a reason
# (tests/symbols/passthrough.txt, `symbol<TAB>reason`). Path-taking symbols are never
# passed through; a descriptor-taking one only when its reason says why the kernel's answer
# is right for a memfd. Missing symbols are printed with the binaries that import them.
. "$(dirname "$0")/lib.sh"

FILEIO=$ROOT/tests/symbols/fileio.txt
PASS=$ROOT/tests/symbols/passthrough.txt
W=$TMP/sym
mkdir -p "$W"

# --- the three lists ----------------------------------------------------------------------
${CC:-cc} -E -P -x c -D'HOOK(r,n,p)=n' "$ROOT/shim/hooks.def" | tr -s ' ;\n' '\n' |
    grep -E '^[A-Za-z_][A-Za-z0-9_]*$' | sort -u >"$W/hooked"
grep -v '^#' "$FILEIO" | awk -F'\t' 'NF >= 2 && $1 != "" { print $1 "\t" $2 }' |
    sort -u >"$W/fileio"
grep -v -e '^#' -e '^$' "$PASS" >"$W/pass.raw"

if [ "$(wc -l <"$W/hooked")" -lt 20 ]; then
    fail "symbols: the hook list is read from shim/hooks.def" "only $(wc -l <"$W/hooked") names"
    exit 1
fi
ok "symbols: $(wc -l <"$W/hooked") hooks in shim/hooks.def, $(wc -l <"$W/fileio") file-I/O symbols defined"

# Every passthrough line: a symbol of the file-I/O list, a tab, a reason; not also hooked;
# never a path-taking one; a descriptor one only with a reason about the memfd.
bad=$(awk -F'\t' -v fileio="$W/fileio" -v hooked="$W/hooked" '
    BEGIN {
        while ((getline l < fileio) > 0) { split(l, a, "\t"); kind[a[1]] = a[2] }
        while ((getline l < hooked) > 0) hook[l] = 1
    }
    {
        if (NF < 2 || length($2) < 10) { print $1 ": no reason"; next }
        if (!($1 in kind)) { print $1 ": not in fileio.txt"; next }
        if ($1 in hook) { print $1 ": hooked, the passthrough line is stale"; next }
        if (kind[$1] == "path") { print $1 ": takes a path, it must be hooked"; next }
        if ((kind[$1] == "fd" || kind[$1] == "stream") && $2 !~ /memfd/)
            print $1 ": the reason does not say why the answer is right for a memfd"
    }' "$W/pass.raw")
if [ -z "$bad" ]; then
    ok "symbols: passthrough.txt: $(wc -l <"$W/pass.raw") entries, each with a valid reason"
else
    fail "symbols: passthrough.txt entries are valid" "$(echo "$bad" | tr '\n' ';')"
fi
cut -f1 "$W/pass.raw" | sort -u >"$W/passed"

# --- the programs and what they load -----------------------------------------------------
progs=()
add_prog() { # add_prog LABEL PATH
    if [ -n "$2" ] && [ -x "$2" ]; then
        progs+=("$1=$(readlink -f "$2")")
    else
        echo "# $1 is not installed: skipped"
    fi
}
py=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)
add_prog python3 "$py"
add_prog bash "$(type -P bash)"
add_prog node "$(type -P node)"
for c in cat cp mv rm ls find wc sort head tail tee touch mkdir sed stat test; do
    add_prog "$c" "$(type -P "$c")"
done
if [ ${#progs[@]} -lt 3 ]; then
    fail "symbols: the programs are installed" "only ${#progs[@]} found"
    exit 1
fi

# imports OBJECT: its undefined dynamic symbols, versions stripped.
imports() { nm -D --undefined-only "$1" 2>/dev/null | awk '{ print $NF }' | sed 's/@.*//'; }
# libs OBJECT: the shared libraries it loads, without libc's own family.
libs() {
    ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' |
        grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*)\.so'
}

: >"$W/uses" # symbol<TAB>program<TAB>object
for entry in "${progs[@]}"; do
    label=${entry%%=*}
    bin=${entry#*=}
    objs=("$bin")
    while read -r l; do objs+=("$l"); done < <(libs "$bin")
    if [ "$label" = python3 ]; then
        # Extension modules Python loads on import (test and GUI modules left out).
        dyn=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("DESTSHARED"))')
        for m in "$dyn"/*.so; do
            case "$(basename "$m")" in
            _test* | xx* | _ctypes_test* | _tkinter* | _curses* | ossaudiodev*) continue ;;
            esac
            objs+=("$m")
        done
    fi
    for o in "${objs[@]}"; do
        imports "$o" | awk -v p="$label" -v o="$(basename "$o")" '{ print $1 "\t" p "\t" o }'
    done >>"$W/uses"
done
echo "# scanned: ${progs[*]%%=*}"

# --- the check, per program and overall --------------------------------------------------
cut -f1 "$W/fileio" | sort -u >"$W/fileio.names"
sort -u "$W/hooked" "$W/passed" >"$W/covered"
awk -F'\t' 'NR == FNR { io[$1] = 1; next } ($1 in io)' "$W/fileio.names" "$W/uses" |
    sort -u >"$W/io_uses"
total_missing=0
for entry in "${progs[@]}"; do
    label=${entry%%=*}
    used=$(awk -F'\t' -v p="$label" '$2 == p { print $1 }' "$W/io_uses" | sort -u)
    n=$(echo "$used" | grep -c .)
    missing=$(comm -23 <(echo "$used" | grep .) "$W/covered")
    if [ -z "$missing" ]; then
        ok "symbols: $label: all $n file-I/O symbols it imports are hooked or passed through"
    else
        total_missing=$((total_missing + $(echo "$missing" | wc -l)))
        where=$(for s in $missing; do
            printf '%s (%s) ' "$s" "$(awk -F'\t' -v p="$label" -v s="$s" \
                '$1 == s && $2 == p { print $3 }' "$W/io_uses" | sort -u | paste -sd, -)"
        done)
        fail "symbols: $label: all $n file-I/O symbols it imports are hooked or passed through" \
            "missing $(echo "$missing" | wc -l): $where"
    fi
done

all_missing=$(comm -23 <(cut -f1 "$W/io_uses" | sort -u) "$W/covered")
if [ -z "$all_missing" ]; then
    ok "symbols: no file-I/O symbol imported by any of them is missing"
else
    echo "# missing symbols (add a hook in shim/hooks.def, or a reason in passthrough.txt):"
    for s in $all_missing; do
        printf '#   %-28s %-8s imported by %s\n' "$s" "$(awk -F'\t' -v s="$s" '$1 == s { print $2 }' \
            "$W/fileio")" "$(awk -F'\t' -v s="$s" '$1 == s { print $2 }' "$W/io_uses" | sort -u |
            paste -sd' ' -)"
    done
    fail "symbols: no file-I/O symbol imported by any of them is missing" \
        "$(echo "$all_missing" | wc -l) missing: $(echo "$all_missing" | paste -sd' ' -)"
fi

# The list of hooks also has to be what the library exports (a hook never compiled in would
# pass the check above while doing nothing).
if [ -f "$SHIM" ]; then
    nm -D --defined-only "$SHIM" | awk '$2 ~ /^[TW]$/ { print $3 }' | sed 's/@.*//' |
        sort -u >"$W/exported"
    notexp=$(comm -23 "$W/hooked" "$W/exported")
    if [ -z "$notexp" ]; then
        ok "symbols: every hook in hooks.def is exported by $(basename "$SHIM")"
    else
        fail "symbols: every hook in hooks.def is exported by $(basename "$SHIM")" \
            "not exported: $(echo "$notexp" | paste -sd' ' -)"
    fi
fi
