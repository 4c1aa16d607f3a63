#!/usr/bin/env bash
# Issue 4, "Security": token, user/password, NKey seed file and TLS (server certificate, then
# client certificate) against private servers configured for each; a refused login is EACCES
# (PermissionError); no token, password or seed appears in any stderr of these runs, at
# ASYA_STATE_LOG=debug. Values are checked with kvtool (a second, plain login where the server
# needs one) or, for the TLS-only paths, with a second shimmed process.
. "$(dirname "$0")/lib.sh"
HERE=$ROOT/tests/integration
PY=$(python3 -c 'import sys; print(sys.executable)') # the real binary, not a pyenv wrapper

if [ ! -f "$SHIM" ]; then
    fail "auth: the shim is built" "$SHIM is missing"
    exit 1
fi
mkdir -p "$TMP/err"
SECRETS=()   # every secret used below; none may appear in $TMP/err/*

# try URL BUCKET VALUE [ENV...]: under the shim (debug log, stderr kept), writes VALUE to
# /state/sec/k and reads it back. Prints "OK <value>" or "<ExceptionClass> <errno>".
try() {
    local url=$1 bucket=$2 value=$3
    shift 3
    local err
    err=$(mktemp "$TMP/err/run.XXXXXX") # called in $(...): a counter would not survive
    timeout -k 5 60 env NATS_URL="$url" NATS_KV_BUCKET="$bucket" STATE_MOUNT=/state/sec \
        NATS_TIMEOUT_MS=3000 ASYA_STATE_LOG=debug "$@" LD_PRELOAD="$SHIM" "$PY" -c '
import sys
try:
    with open("/state/sec/k", "w") as f:
        f.write(sys.argv[1])
    print("OK", open("/state/sec/k").read())
except OSError as e:
    print(type(e).__name__, e.errno)' "$value" 2>"$err"
}
# readback URL BUCKET [ENV...]: a second shimmed process reads /state/sec/k.
readback() {
    local url=$1 bucket=$2
    shift 2
    local err
    err=$(mktemp "$TMP/err/run.XXXXXX")
    timeout -k 5 60 env NATS_URL="$url" NATS_KV_BUCKET="$bucket" STATE_MOUNT=/state/sec \
        ASYA_STATE_LOG=debug "$@" LD_PRELOAD="$SHIM" "$PY" -c \
        'print(open("/state/sec/k").read())' 2>"$err"
}
rnd() { openssl rand -hex 12; }
EACCES="PermissionError 13"

# --- token --------------------------------------------------------------------------------
TOKEN=tok$(rnd)
SECRETS+=("$TOKEN")
if start_server --auth "$TOKEN"; then
    url=nats://$TOKEN@127.0.0.1:$SERVER_PORT
    "$KVTOOL" -s "$url" --wait bucket-add sec >/dev/null || fail "auth: token: bucket" "kvtool"
    v=v$(rnd)
    expect_eq "auth: token in NATS_URL: write and read back" "OK $v" "$(try "$url" sec "$v")"
    expect_eq "auth: token: kvtool sees the value" "$v" "$("$KVTOOL" -s "$url" get sec k 2>&1)"
    expect_eq "auth: a wrong token is EACCES (PermissionError)" "$EACCES" \
        "$(try "nats://wrong$(rnd)@127.0.0.1:$SERVER_PORT" sec x)"
    expect_eq "auth: no token at all is EACCES (PermissionError)" "$EACCES" \
        "$(try "nats://127.0.0.1:$SERVER_PORT" sec x)"
    expect_eq "auth: token: a refused login changed nothing (kvtool)" "$v" \
        "$("$KVTOOL" -s "$url" get sec k 2>&1)"
    stop_server "$SERVER_PID"
else
    fail "auth: token" "nats-server --auth did not start"
fi

# --- user and password --------------------------------------------------------------------
USR=u$(rnd)
PASS=p$(rnd)
SECRETS+=("$PASS")
if start_server --user "$USR" --pass "$PASS"; then
    url=nats://$USR:$PASS@127.0.0.1:$SERVER_PORT
    "$KVTOOL" -s "$url" --wait bucket-add sec >/dev/null || fail "auth: user: bucket" "kvtool"
    v=v$(rnd)
    expect_eq "auth: user:pass in NATS_URL: write and read back" "OK $v" "$(try "$url" sec "$v")"
    expect_eq "auth: user:pass: kvtool sees the value" "$v" "$("$KVTOOL" -s "$url" get sec k 2>&1)"
    expect_eq "auth: a wrong password is EACCES (PermissionError)" "$EACCES" \
        "$(try "nats://$USR:wrong$(rnd)@127.0.0.1:$SERVER_PORT" sec x)"
    expect_eq "auth: an unknown user is EACCES (PermissionError)" "$EACCES" \
        "$(try "nats://nobody:$PASS@127.0.0.1:$SERVER_PORT" sec x)"
    stop_server "$SERVER_PID"
else
    fail "auth: user/password" "nats-server --user/--pass did not start"
fi

# --- NKey seed file -----------------------------------------------------------------------
# The server knows the NKey's public key (and a plain user for kvtool, same account).
openssl genpkey -algorithm ed25519 -out "$TMP/nk.pem" 2>/dev/null &&
    openssl genpkey -algorithm ed25519 -out "$TMP/nk_other.pem" 2>/dev/null
{ read -r SEED; read -r NPUB; } < <(python3 "$HERE/auth_nkey.py" "$TMP/nk.pem")
{ read -r SEED2; read -r _; } < <(python3 "$HERE/auth_nkey.py" "$TMP/nk_other.pem")
SECRETS+=("$SEED" "$SEED2")
printf '%s\n' "$SEED" >"$TMP/user.nk"
printf '%s\n' "$SEED2" >"$TMP/other.nk"
KPASS=k$(rnd)
SECRETS+=("$KPASS")
cat >"$TMP/nkey.conf" <<CONF
authorization { users = [ { nkey: $NPUB }, { user: kvtool, password: $KPASS } ] }
CONF
if [ -n "$NPUB" ] && [[ $NPUB == U* ]] && start_server -c "$TMP/nkey.conf"; then
    ok "auth: nkey: an Ed25519 key from openssl encodes as a NATS user NKey the server takes"
    kurl=nats://kvtool:$KPASS@127.0.0.1:$SERVER_PORT
    url=nats://127.0.0.1:$SERVER_PORT
    "$KVTOOL" -s "$kurl" --wait bucket-add sec >/dev/null || fail "auth: nkey: bucket" "kvtool"
    v=v$(rnd)
    expect_eq "auth: NATS_NKEY_SEED_FILE: write and read back" "OK $v" \
        "$(try "$url" sec "$v" NATS_NKEY_SEED_FILE="$TMP/user.nk")"
    expect_eq "auth: nkey: kvtool (as another user) sees the value" "$v" \
        "$("$KVTOOL" -s "$kurl" get sec k 2>&1)"
    expect_eq "auth: an NKey the server does not know is EACCES (PermissionError)" "$EACCES" \
        "$(try "$url" sec x NATS_NKEY_SEED_FILE="$TMP/other.nk")"
    expect_eq "auth: nkey server, no credentials: EACCES (PermissionError)" "$EACCES" \
        "$(try "$url" sec x)"
    stop_server "$SERVER_PID"
else
    fail "auth: nkey" "no NKey ($NPUB) or nats-server did not start with $TMP/nkey.conf"
fi

# --- TLS ----------------------------------------------------------------------------------
T=$TMP/tls
mkdir -p "$T"
# cert NAME CN: a certificate signed by the test CA (server and client alike).
cert() {
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$T/$1.key" -out "$T/$1.csr" \
        2>/dev/null &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/$1.ext" &&
        openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
            -days 2 -extfile "$T/$1.ext" -out "$T/$1.pem" 2>/dev/null
}
if openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=asya-test-ca \
    -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null && cert server 127.0.0.1 &&
    cert client asya-client; then
    ok "auth: tls: a CA, a server and a client certificate made with openssl"
else
    fail "auth: tls: certificates" "openssl failed"
fi
# kvtool has no TLS options: the bucket is made with `asya-state bucket add` and values are
# checked by a second shimmed process. A tls:// URL makes the shim insist on TLS; the refusals
# without the CA / the client certificate show the handshake and its checks really happen.
tls_server() {
    cat >"$TMP/tls.conf" <<CONF
tls { cert_file: "$T/server.pem", key_file: "$T/server.key", ca_file: "$T/ca.pem"$1 }
CONF
    start_server -c "$TMP/tls.conf"
}
CA=NATS_TLS_CA=$T/ca.pem
CC=(NATS_TLS_CERT="$T/client.pem" NATS_TLS_KEY="$T/client.key")
if tls_server ""; then
    url=tls://127.0.0.1:$SERVER_PORT
    check "auth: TLS: asya-state bucket add over TLS" \
        timeout -k 5 60 env NATS_URL="$url" "$CA" "$ASYA" bucket add sec
    v=v$(rnd)
    expect_eq "auth: TLS with NATS_TLS_CA: write and read back" "OK $v" \
        "$(try "$url" sec "$v" "$CA")"
    expect_eq "auth: TLS: a second process reads the value over TLS" "$v" \
        "$(readback "$url" sec "$CA")"
    expect_eq "auth: TLS without NATS_TLS_CA: the server certificate is refused (EIO)" "OSError 5" \
        "$(try "$url" sec x)"
    expect_eq "auth: TLS: nats:// to a TLS-only server without the CA is refused too (EIO)" \
        "OSError 5" "$(try "nats://127.0.0.1:$SERVER_PORT" sec x)"
    expect_eq "auth: TLS: the refused attempts changed nothing" "$v" "$(readback "$url" sec "$CA")"
    stop_server "$SERVER_PID"
else
    fail "auth: tls" "nats-server did not start with TLS"
fi
if tls_server ", verify: true"; then
    url=tls://127.0.0.1:$SERVER_PORT
    check "auth: mTLS: asya-state bucket add with a client certificate" \
        timeout -k 5 60 env NATS_URL="$url" "$CA" "${CC[@]}" "$ASYA" bucket add sec
    v=v$(rnd)
    expect_eq "auth: TLS verify:true with NATS_TLS_CERT/KEY: write and read back" "OK $v" \
        "$(try "$url" sec "$v" "$CA" "${CC[@]}")"
    expect_eq "auth: mTLS: a second process reads the value" "$v" \
        "$(readback "$url" sec "$CA" "${CC[@]}")"
    r=$(try "$url" sec x "$CA")
    case $r in
    "OSError 5" | "$EACCES") ok "auth: TLS verify:true without a client certificate is refused ($r)" ;;
    *) fail "auth: TLS verify:true without a client certificate is refused" "$r" ;;
    esac
    expect_eq "auth: mTLS: the refused attempt changed nothing" "$v" \
        "$(readback "$url" sec "$CA" "${CC[@]}")"
    stop_server "$SERVER_PID"
else
    fail "auth: mtls" "nats-server did not start with TLS verify"
fi

# --- no secret in any stderr ----------------------------------------------------------------
leaks=
for s in "${SECRETS[@]}"; do
    [ -n "$s" ] || continue
    f=$(grep -lF -- "$s" "$TMP"/err/run.* 2>/dev/null | head -n 3 | tr '\n' ' ')
    [ -z "$f" ] || leaks+="${s:0:4}... in $f; "
done
lines=$(cat "$TMP"/err/run.* | grep -c '^asya-state:')
runs=$(ls "$TMP"/err/run.* | wc -l)
empty=0
for s in "${SECRETS[@]}"; do [ -n "$s" ] || empty=1; done
if [ -z "$leaks" ] && [ $empty -eq 0 ] && [ "$lines" -gt "$runs" ]; then
    ok "auth: no token, password or seed (${#SECRETS[@]} secrets) in the stderr of $runs runs ($lines asya-state lines at debug)"
else
    fail "auth: no secret in stderr" "secrets ${#SECRETS[@]} (empty: $empty), runs $runs, lines $lines, leaks: $leaks"
fi
# The URL is still named (without its credentials) so a refused login can be diagnosed.
if grep -qh "127.0.0.1" "$TMP"/err/run.*; then
    ok "auth: the stderr lines name the server (credentials redacted)"
else
    fail "auth: the stderr lines name the server" "$(cat "$TMP"/err/run.* | head -c 300)"
fi
