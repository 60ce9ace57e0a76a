#!/usr/bin/env bash
# 10,000 concurrent connections through one plain mapping (not part of `cargo test`).
#
# Builds tcpmap and the stress driver in release mode, starts an echo upstream and
# `tcpmap run` on a plain TCPMapping, opens N connections that are all open at once, checks
# every one echoes its own message, closes them all, and reports the proxy's memory (RSS and
# PSS from /proc/PID/smaps_rollup) before, at the peak and after.
#
# Usage: scripts/stress-10k.sh [N]     (default N=10000; needs `ulimit -n` of about 3N)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "ulimit -n: $(ulimit -n)"
# The proxy holds two descriptors per relayed connection (client + upstream) plus a few.
if [ "$(ulimit -n)" -lt $((2 * N + 64)) ]; then
  echo "WARNING: ulimit -n $(ulimit -n) < 2*N+64: the proxy will run out of descriptors" \
       "(raise the hard limit, e.g. as root: prlimit --nofile=65536 --pid \$\$, or lower N)"
fi
cargo build --release --bin tcpmap --example stress
BIN=target/release/tcpmap
STRESS=target/release/examples/stress
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

"$STRESS" echo > "$WORK/echo.out" &
PIDS+=($!)
for _ in $(seq 50); do grep -q listening "$WORK/echo.out" 2>/dev/null && break; sleep 0.1; done
UPSTREAM="$(awk '/listening/ {print $2}' "$WORK/echo.out")"
PORT="$("$STRESS" free-port)"
cat > "$WORK/stress.yaml" <<YAML
apiVersion: ambassador/v1
kind: TCPMapping
name: stress
address: 127.0.0.1
port: $PORT
service: $UPSTREAM
YAML
RUST_LOG="${RUST_LOG:-info}" "$BIN" run --config "$WORK/stress.yaml" 2> "$WORK/tcpmap.log" &
PROXY=$!
PIDS+=("$PROXY")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

mem() { awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {printf "rss=%s KiB pss=%s KiB", r, p}' "/proc/$PROXY/smaps_rollup"; }
echo "upstream $UPSTREAM, proxy pid $PROXY on 127.0.0.1:$PORT"
echo "proxy memory before: $(mem)"
STATUS=0
# Two rounds: memory that the allocator keeps after round 1 is reused by round 2 (no growth
# then means no leak).
for round in $(seq "${ROUNDS:-2}"); do
  echo "round $round"
  "$STRESS" client "127.0.0.1:$PORT" "$N" "$PROXY" || STATUS=$?
  sleep 2
  echo "proxy memory after round $round (2 s later): $(mem), open fds: $(ls /proc/$PROXY/fd | wc -l)"
done
echo "proxy CPU time (utime+stime ticks): $(awk '{print $14+$15}' "/proc/$PROXY/stat")"
if grep -qiE "panic" "$WORK/tcpmap.log"; then
  echo "proxy log has a panic:"; cat "$WORK/tcpmap.log"; exit 1
fi
echo "proxy warnings: $(grep -c WARN "$WORK/tcpmap.log" || true)"
echo "connection ends (from the access log):"
grep -o 'end="\?[a-z_]*' "$WORK/tcpmap.log" | sort | uniq -c || true
grep -E 'WARN|ERROR' "$WORK/tcpmap.log" | head -5 || true
[ "$STATUS" -eq 0 ] && echo "ok" || { echo "FAILED (client exit $STATUS)"; exit "$STATUS"; }
