#!/usr/bin/env bash
# Regenerates the EXAMPLE secrets used by examples/config/*.yaml (self-signed, for trying tcpmap
# locally; never use them for anything real). Layout = a mounted Kubernetes TLS secret:
#   secrets/supersecret/tls.crt + tls.key   (termination for my-host-1, my-host-2)
#   secrets/othersecret/tls.crt + tls.key   (client certificate for origination)
# Usage: examples/config/gen-secrets.sh   (needs the openssl CLI)
set -euo pipefail
cd "$(dirname "$0")"
gen() { # name, common name, subjectAltNames
  mkdir -p "secrets/$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=$2" -addext "subjectAltName=$3" \
    -keyout "secrets/$1/tls.key" -out "secrets/$1/tls.crt" 2>/dev/null
  chmod 600 "secrets/$1/tls.key"
}
gen supersecret my-host-1 "DNS:my-host-1,DNS:my-host-2"
gen othersecret tcpmap-client "DNS:tcpmap-client"
echo "wrote $(pwd)/secrets"
