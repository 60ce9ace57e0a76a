#!/usr/bin/env bash
# Runs a few tlsfuzzer scripts (ClientHello parsing, SNI, record layer) against tcpmap and
# against a bare rustls server with the same rustls settings (examples/bare_rustls.rs), and
# prints the pass counts side by side. Not part of the test run; see docs/fuzzing.md. Several
# scripts draw their case sizes at random, so counts move by a few between runs.
#
#   TLSFUZZER_DIR=/path/to/tlsfuzzer scripts/tlsfuzzer.sh [SCRIPT ...]
#
# TLSFUZZER_DIR: a checkout of github.com/tlsfuzzer/tlsfuzzer. Its Python dependency,
# tlslite-ng (the version in its requirements.txt), is installed from PyPI into a venv
# (VENV, default target/tlsfuzzer-venv) on the first run. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TLSFUZZER_DIR:?set TLSFUZZER_DIR to a tlsfuzzer checkout}"
VENV=${VENV:-target/tlsfuzzer-venv}
SCRIPTS=("$@")
if [ ${#SCRIPTS[@]} -eq 0 ]; then
  SCRIPTS=(test-large-hello.py test-truncating-of-client-hello.py
    test-invalid-server-name-extension.py test-record-layer-fragmentation.py
    test-tls13-unrecognised-groups.py)
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  req=$(grep -i '^tlslite-ng' "$TLSFUZZER_DIR/requirements.txt" 2>/dev/null || echo tlslite-ng)
  "$VENV/bin/pip" install -q "$req"
fi
VENV=$(cd "$VENV" && pwd)
cargo build -q --bin tcpmap --example bare_rustls

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/secrets/cert"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost \
  -keyout "$work/secrets/cert/tls.key" -out "$work/secrets/cert/tls.crt" 2>/dev/null

up=$(free_port); proxy=$(free_port); bare=$(free_port)
# The upstream behind tcpmap answers each request as the bare server does, in one write.
target/debug/examples/bare_rustls --http "127.0.0.1:$up" >/dev/null 2>&1 &
pids+=($!)
# tcpmap terminates for `localhost` and, like the bare server's single certificate, any other
# name or none (`host: "*"`).
cat > "$work/config.yaml" <<YAML
---
apiVersion: ambassador/v1
kind: TLSContext
name: tlsfuzzer
hosts: [localhost, "*"]
secret: cert
---
apiVersion: ambassador/v1
kind: TCPMapping
name: named
address: 127.0.0.1
port: $proxy
host: localhost
service: 127.0.0.1:$up
---
apiVersion: ambassador/v1
kind: TCPMapping
name: any
address: 127.0.0.1
port: $proxy
host: "*"
service: 127.0.0.1:$up
YAML
RUST_LOG=warn target/debug/tcpmap run --config "$work/config.yaml" \
  --secrets-dir "$work/secrets" 2>"$work/tcpmap.log" &
pids+=($!)
target/debug/examples/bare_rustls "$work/secrets/cert/tls.crt" "$work/secrets/cert/tls.key" \
  "127.0.0.1:$bare" >/dev/null 2>&1 &
pids+=($!)
sleep 1

# The scripts' defaults are RSA key exchange and CBC suites, which rustls does not offer:
# ask for ECDHE and an AES-GCM suite where the script takes the option.
opts() {
  case "$1" in
    test-truncating-of-client-hello.py | test-record-layer-fragmentation.py)
      echo "-d -C TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" ;;
    test-large-hello.py | test-invalid-server-name-extension.py) echo "-d" ;;
    *) echo "" ;;
  esac
}

# PASS/TOTAL of one tlsfuzzer script against one port.
run() {
  local out
  # shellcheck disable=SC2046 # the options are words
  out=$(cd "$TLSFUZZER_DIR" && timeout 1200 "$VENV/bin/python" "scripts/$1" \
    -h localhost -p "$2" $(opts "$1") 2>&1 || true)
  local pass total
  pass=$(printf '%s\n' "$out" | sed -n 's/^PASS: //p' | tail -1)
  total=$(printf '%s\n' "$out" | sed -n 's/^TOTAL: //p' | tail -1)
  printf '%s/%s' "${pass:-?}" "${total:-?}"
}

printf '%-42s %10s %10s\n' script tcpmap rustls
for s in "${SCRIPTS[@]}"; do
  printf '%-42s %10s %10s\n' "$s" "$(run "$s" "$proxy")" "$(run "$s" "$bare")"
done
