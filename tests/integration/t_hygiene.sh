#!/usr/bin/env bash
# Issue 4, "Process hygiene" (SPEC "Processes"): after the shim has connected, the program's
# signal dispositions, handlers, mask and rand() sequence are what they are without the shim;
# SIGPIPE still kills `cat /state/big | head -c1` quietly (plain and TLS); the library's threads
# block every signal; the shim's descriptors are close-on-exec and high, a shell's `exec 3>`
# never lands on the NATS socket, and 10k open/read/close cycles leak no descriptor.
# tests/integration/progs/hygiene_proc.c is the C program; it is run with and without the shim.
. "$(dirname "$0")/lib.sh"
PROGS=$ROOT/tests/integration/progs
PY=$(python3 -c 'import sys; print(sys.executable)')

if [ ! -f "$SHIM" ]; then
    fail "hygiene: the shim is built" "$SHIM is missing"
    exit 1
fi
B=$(new_bucket) || { fail "hygiene: bucket" "cannot create a bucket"; exit 1; }
M=/state

shimmed() {
    timeout -k 5 60 env NATS_KV_BUCKET="$B" STATE_MOUNT=$M LD_PRELOAD="$SHIM" "$@"
}
plain() { timeout -k 5 60 "$@"; }

HP=$TMP/hygiene_proc
if ! ${CC:-cc} -std=gnu11 -O1 -Wall -Wextra -Werror -pthread -o "$HP" "$PROGS/hygiene_proc.c" \
    2>"$TMP/cc.err"; then
    fail "hygiene: progs/hygiene_proc.c compiles" "$(cat "$TMP/cc.err")"
    exit 1
fi

# The lowest descriptor number the shim's own descriptors may use: high, out of the way of
# programs (shells dup2 onto 10..255).
lim=$(ulimit -n)
if [ "$lim" = unlimited ] || [ "$lim" -gt 1064 ]; then low=1000; else low=$((lim - 64)); fi

"$KVTOOL" put "$B" seed "seed value" >/dev/null

# --- signal state, rand(), threads, descriptors: one C program, with and without the shim ---
for mode in default ignore handler; do
    echo hello >"$TMP/local_$mode"
    plain "$HP" state "$TMP/local_$mode" "$mode" >"$TMP/plain_$mode.out" 2>"$TMP/plain_$mode.err"
    shimmed "$HP" state "$M/h_$mode" "$mode" >"$TMP/shim_$mode.out" 2>"$TMP/shim_$mode.err"
    rc=$?
    # The shim's first operation reads a missing key (ENOENT, -2) where the local run reads a
    # file: the op line is checked separately.
    grep '^cmp ' "$TMP/plain_$mode.out" | grep -v '^cmp ops' >"$TMP/plain_$mode.cmp"
    grep '^cmp ' "$TMP/shim_$mode.out" | grep -v '^cmp ops' >"$TMP/shim_$mode.cmp"
    expect_eq "signals ($mode SIGPIPE): the program's operations through the shim work" \
        "cmp ops read=-2 write=0 reread=0 | rc 0" \
        "$(grep '^cmp ops' "$TMP/shim_$mode.out") | rc $rc"
    if [ -s "$TMP/plain_$mode.cmp" ] && diff "$TMP/plain_$mode.cmp" "$TMP/shim_$mode.cmp" \
        >"$TMP/diff" 2>&1; then
        ok "signals ($mode SIGPIPE): every disposition, handler, flag, the mask and pending set after the connect equal the run without the shim ($(grep -c '^cmp sig ' "$TMP/shim_$mode.cmp") signals)"
    else
        fail "signals ($mode SIGPIPE): process state equals the run without the shim" \
            "$(head -n 8 "$TMP/diff")"
    fi
    r_plain=$(grep '^cmp rand' "$TMP/plain_$mode.out" | tr '\n' ' ')
    r_shim=$(grep '^cmp rand' "$TMP/shim_$mode.out" | tr '\n' ' ')
    if [ -n "$r_plain" ] && [ "$r_plain" = "$r_shim" ]; then
        ok "rand ($mode SIGPIPE): srand(42) then rand() across the connect, a commit and a reseed gives the sequence of the run without the shim"
    else
        fail "rand ($mode SIGPIPE): rand() sequence unchanged" "plain: $r_plain shim: $r_shim"
    fi
done
expect_eq "hygiene: the value written by the C program landed" "hygiene" \
    "$("$KVTOOL" get "$B" h_default 2>&1)"

out=$TMP/shim_default.out
others=$(sed -n 's/^threads others=//p' "$out")
bad=$(grep '^thread ' "$out" | grep -c 'NOT-all-blocked')
if [ "${others:-0}" -ge 1 ] && [ "$bad" -eq 0 ]; then
    ok "threads: each of the library's $others threads has SigBlk = every signal blocked ($(grep -m1 '^thread ' "$out" | sed 's/.*SigBlk=\([0-9a-f]*\).*/\1/'))"
else
    fail "threads: the library's threads block every signal" \
        "others=${others:-none}: $(grep '^thread ' "$out" | head -n 4)"
fi

newfds=$(grep '^newfd ' "$out")
sock=$(grep -c 'socket:' <<<"$newfds")
badfd=$(awk -v low="$low" '$1 == "newfd" && ($2 < low || $NF != "cloexec=1")' <<<"$newfds")
if [ "$sock" -ge 1 ] && [ -z "$badfd" ]; then
    ok "descriptors: after a mount operation the shim's $(wc -l <<<"$newfds") descriptors ($sock socket(s)) sit at >= $low and are O_CLOEXEC ($(awk '{printf "%s%s ", $2, ($3 ~ /socket/ ? "(socket)" : "")}' <<<"$newfds"))"
else
    fail "descriptors: the shim's descriptors are high and close-on-exec" \
        "low=$low sockets=$sock: $newfds"
fi

# ls /proc/self/fd exec'd by the program: the same list with and without the shim (the
# descriptors this script's shell passes down appear in both).
listing() { sed '/^newfd /d; /^cmp /d; /^thread/d' "$1" | sort -n | tr '\n' ' '; }
plain "$HP" state "$TMP/local_exec" default exec >"$TMP/exec_plain.out" 2>&1
shimmed "$HP" state "$M/h_exec" default exec >"$TMP/exec.out" 2>"$TMP/exec.err"
expect_eq "descriptors: a program exec'd after the connect inherits the descriptors it inherits without the shim (none of the shim's)" \
    "$(listing "$TMP/exec_plain.out")" "$(listing "$TMP/exec.out")"

# --- the shell: exec 3> /state/x after the connect never lands on the NATS socket ----------
"$KVTOOL" put "$B" sh_in "from kv" >/dev/null
cat >"$TMP/redir.sh" <<'EOF'
read -r v </state/sh_in # the value has no newline: read's status is 1
echo "read=$v"
for fd in 3 4 9 10 11 12 200; do
    eval "exec $fd>/state/sh_out_$fd" || { echo "exec $fd> failed"; exit 1; }
    echo "fd$fd=$(readlink /proc/$$/fd/$fd)"
    echo "value $fd" >&$fd
    eval "exec $fd>&-"
done
read -r w </state/sh_out_3 && echo "reread=$w"
exec 3>/state/sh_again && echo again >&3 && exec 3>&-
ls -l /proc/$$/fd | awk '/socket:/ {print "sock=" $9}'
EOF
shimmed bash "$TMP/redir.sh" >"$TMP/redir.out" 2>"$TMP/redir.err"
sh_sock=$(sed -n 's/^sock=//p' "$TMP/redir.out" | tr '\n' ' ')
landed=$(grep -c '^fd[0-9]*=socket' "$TMP/redir.out")
values=""
for fd in 3 4 9 10 11 12 200; do values+="$("$KVTOOL" get "$B" "sh_out_$fd" 2>&1)|"; done
if grep -q '^read=from kv' "$TMP/redir.out" && [ "$landed" -eq 0 ] &&
    [ "$values" = "value 3|value 4|value 9|value 10|value 11|value 12|value 200|" ] &&
    grep -q '^reread=value 3' "$TMP/redir.out" &&
    [ "$("$KVTOOL" get "$B" sh_again 2>&1)" = again ] && [ -n "$sh_sock" ]; then
    ok "bash: exec N> /state/x (N = 3 4 9 10 11 12 200) after the connect opens a state file, never the NATS socket (socket at fd $sh_sock); values land and the connection still works"
else
    fail "bash: exec N> /state/x never lands on the NATS socket" \
        "$(cat "$TMP/redir.out" "$TMP/redir.err" | head -n 20) values=$values"
fi

# --- SIGPIPE: cat /state/big | head -c1 dies quietly, exit 141 ------------------------------
head -c 1000000 /dev/urandom | base64 -w 100 | head -c 1000000 >"$TMP/big"
"$KVTOOL" put-stdin "$B" big <"$TMP/big" >/dev/null 2>"$TMP/put.err" ||
    echo "# put-stdin: $(cat "$TMP/put.err")"
sigpipe_check() { # sigpipe_check LABEL ENV...
    local label=$1
    shift
    set -o pipefail
    timeout -k 5 60 env "$@" LD_PRELOAD="$SHIM" cat $M/big 2>"$TMP/cat.err" | head -c1 >/dev/null
    local st=("${PIPESTATUS[@]}")
    set +o pipefail
    if [ "${st[0]}" -eq 141 ] && [ ! -s "$TMP/cat.err" ]; then
        ok "SIGPIPE$label: cat $M/big (1,000,000 bytes) | head -c1: cat dies of SIGPIPE (status 141), nothing on stderr"
    else
        fail "SIGPIPE$label: cat dies quietly of SIGPIPE" \
            "statuses ${st[*]}, stderr: $(head -c 300 "$TMP/cat.err")"
    fi
}
size=$(shimmed stat -c %s $M/big 2>&1)
expect_eq "SIGPIPE: the 1,000,000-byte value is in the bucket" 1000000 "$size"
sigpipe_check "" NATS_KV_BUCKET="$B" STATE_MOUNT=$M
# The same from Python (which ignores SIGPIPE itself): after the connect it is still SIG_IGN.
expect_eq "SIGPIPE: Python's own SIG_IGN is kept after the connect" "True 1000000" \
    "$(shimmed "$PY" -c '
import signal
n = len(open("/state/big", "rb").read())
print(signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN, n)' 2>&1)"

# --- the same over TLS, against a private TLS server --------------------------------------
if command -v openssl >/dev/null &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$TMP/tls.key" -out "$TMP/tls.crt" >/dev/null 2>&1 &&
    start_server --tls --tlscert "$TMP/tls.crt" --tlskey "$TMP/tls.key"; then
    TLS_ENV=(NATS_URL="tls://127.0.0.1:$SERVER_PORT" NATS_TLS_CA="$TMP/tls.crt")
    TB=tlsbig
    if timeout -k 5 60 env "${TLS_ENV[@]}" "$ASYA" bucket add "$TB" >"$TMP/tb.out" 2>&1 &&
        timeout -k 5 60 env "${TLS_ENV[@]}" NATS_KV_BUCKET=$TB STATE_MOUNT=$M \
            LD_PRELOAD="$SHIM" cp "$TMP/big" $M/big 2>"$TMP/tcp.err"; then
        size=$(timeout -k 5 60 env "${TLS_ENV[@]}" NATS_KV_BUCKET=$TB STATE_MOUNT=$M \
            LD_PRELOAD="$SHIM" stat -c %s $M/big 2>&1)
        expect_eq "SIGPIPE (TLS): the value went in over TLS" 1000000 "$size"
        sigpipe_check " (TLS)" "${TLS_ENV[@]}" NATS_KV_BUCKET=$TB STATE_MOUNT=$M
        timeout -k 5 60 env "${TLS_ENV[@]}" NATS_KV_BUCKET=$TB LD_PRELOAD="$SHIM" \
            "$HP" state "$M/h_tls" default >"$TMP/tls.out" 2>"$TMP/tls.err"
        grep '^cmp ' "$TMP/tls.out" | grep -v '^cmp ops' >"$TMP/tls.cmp"
        if diff "$TMP/plain_default.cmp" "$TMP/tls.cmp" >"$TMP/diff" 2>&1 &&
            grep -q '^cmp ops read=-2 write=0 reread=0' "$TMP/tls.out"; then
            ok "signals (TLS): dispositions, mask and rand() after a TLS connect equal the run without the shim"
        else
            fail "signals (TLS): process state unchanged" \
                "$(head -n 6 "$TMP/diff") $(head -c 300 "$TMP/tls.err")"
        fi
        tb=$(grep -c 'NOT-all-blocked' "$TMP/tls.out")
        to=$(sed -n 's/^threads others=//p' "$TMP/tls.out")
        [ "${to:-0}" -ge 1 ] && [ "$tb" -eq 0 ] &&
            ok "threads (TLS): the library's $to threads block every signal" ||
            fail "threads (TLS): the library's threads block every signal" \
                "$(grep '^thread' "$TMP/tls.out" | head -n 4)"
    else
        fail "SIGPIPE (TLS): bucket and value over TLS" \
            "$(cat "$TMP/tb.out" "$TMP/tcp.err" 2>/dev/null | head -c 400)"
    fi
    stop_server "$SERVER_PID"
else
    fail "SIGPIPE (TLS): a TLS nats-server with a self-signed certificate starts" \
        "openssl or nats-server --tls failed"
fi

# --- no descriptor leaks: 10k open/read/close cycles (+1k writes, 1k fopen, 1k ENOENT) ------
"$KVTOOL" put "$B" leak "leak-check" >/dev/null
leak=$(shimmed "$HP" leak $M/leak 10000 $M/leak_missing 2>"$TMP/leak.err")
before=$(sed -n 's/.*before=\([0-9]*\).*/\1/p' <<<"$leak")
after=$(sed -n 's/.*after=\([0-9]*\).*/\1/p' <<<"$leak")
if [ -n "$before" ] && [ "$before" = "$after" ] && grep -q 'errors=0' <<<"$leak"; then
    ok "leaks: 10000 open/read/close, 1000 write, 1000 fopen/fclose and 1000 ENOENT cycles on a state file: /proc/self/fd count $before before and after"
else
    fail "leaks: no descriptor leaks after 10k cycles" "$leak $(head -c 300 "$TMP/leak.err")"
fi
# The same from Python: os.open/os.read/os.close.
leak_py=$(shimmed "$PY" -c '
import os
p = "/state/leak"
open(p).read()
before = len(os.listdir("/proc/self/fd"))
for _ in range(10000):
    fd = os.open(p, os.O_RDONLY)
    os.read(fd, 100)
    os.close(fd)
for _ in range(1000):
    with open(p) as f:
        f.read()
print(before, len(os.listdir("/proc/self/fd")))' 2>&1)
set -- $leak_py
if [ $# -eq 2 ] && [ "$1" = "$2" ]; then
    ok "leaks (Python): 10000 os.open/os.read/os.close + 1000 with-open cycles: $1 descriptors before and after"
else
    fail "leaks (Python): no descriptor leaks" "$leak_py"
fi
