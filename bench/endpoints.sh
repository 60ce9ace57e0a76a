#!/usr/bin/env bash
# Short connections through tcpmap to ONE endpoint vs a THREE-endpoint service (issue 14):
# the short-connection row of bench/run.sh (wrk, Connection: close, 64 connections, 1 thread)
# against two mappings of one tcpmap process:
#   single: service 127.0.0.1:PORT                      (an IP literal: one endpoint)
#   three:  service svc3.test:PORT, dnsmasq → 127.0.0.1, 127.0.0.2, 127.0.0.3 (round robin)
# The upstream is one nginx listening on the three addresses. Rows alternate, REPS times each,
# and the medians are printed with tcpmap's CPU per connection. Loopback only; stops by itself.
# Usage: [BENCH_WORKERS=N] bench/endpoints.sh [REPS] [SECS]   (default --workers 1; needs target/release/tcpmap, nginx, wrk, dnsmasq)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
reps="${1:-5}"; secs="${2:-5}"
bin="${BENCH_TCPMAP:-target/release/tcpmap}"
for tool in nginx wrk dnsmasq python3 "$bin"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 2; }
done
out="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free); single=$(free); three=$(free); dns=$(free); adm=$(free)

cat > "$out/nginx.conf" <<CONF
worker_processes 1;
pid $out/nginx.pid;
error_log /dev/null crit;
worker_rlimit_nofile 20000;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off; keepalive_timeout 0;
  server {
    listen 127.0.0.1:$up backlog=4096; listen 127.0.0.2:$up backlog=4096; listen 127.0.0.3:$up backlog=4096;
    location / { return 200 "ok\n"; }
  }
}
CONF
nginx -p "$out" -e /dev/null -g 'daemon off;' -c "$out/nginx.conf" & pids+=($!)
printf '127.0.0.1 svc3.test\n127.0.0.2 svc3.test\n127.0.0.3 svc3.test\n' > "$out/records"
user=(); [ "$(id -u)" = 0 ] && user=(--user=root)
dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --listen-address=127.0.0.1 \
  --bind-interfaces --pid-file= --local=/test/ --port="$dns" --addn-hosts="$out/records" --local-ttl=300 "${user[@]}" & pids+=($!)
printf 'nameserver 127.0.0.1:%s\nsearch test\n' "$dns" > "$out/resolv.conf"
cat > "$out/tcpmap.yaml" <<CONF
---
apiVersion: getambassador.io/v2
kind: TCPMapping
name: single
address: 127.0.0.1
port: $single
service: 127.0.0.1:$up
---
apiVersion: getambassador.io/v2
kind: TCPMapping
name: three
address: 127.0.0.1
port: $three
service: svc3.test:$up
CONF
ulimit -n 65536 2>/dev/null || true
workers="${BENCH_WORKERS:-1}"
ASYNC_STD_THREAD_COUNT=1 RUST_LOG=warn "$bin" run --workers "$workers" --config "$out/tcpmap.yaml" --resolv-conf "$out/resolv.conf" \
  --admin "127.0.0.1:$adm" 2>"$out/tcpmap.log" & tp=$!; pids+=($tp)
sleep 1
for port in $single $three; do
  curl -s --max-time 3 "http://127.0.0.1:$port/" | grep -q ok || { echo "port $port does not serve; see $out/tcpmap.log" >&2; cat "$out/tcpmap.log" >&2; exit 1; }
done
# CPU of the proxy: the process and, with --workers N > 1, its worker processes.
cpu() { for p in $tp $(pgrep -P "$tp"); do cat "/proc/$p/stat"; done 2>/dev/null | awk '{s+=$14+$15} END {print s}'; }
tick=$(getconf CLK_TCK)
run() {  # port → "conn/s cpu_us_per_conn"
  local c0 c1 o reqs rps
  c0=$(cpu)
  o=$(wrk -H 'Connection: close' -c64 -t1 -d"${secs}s" --timeout 5s "http://127.0.0.1:$1/")
  c1=$(cpu)
  reqs=$(echo "$o" | awk '/requests in/ {print $1}')
  rps=$(echo "$o" | awk '/Requests\/sec/ {print $2}')
  echo "$rps $(python3 -c "print(round(($c1-$c0)/$tick*1e6/max($reqs,1),1))")"
}
declare -a s_rps s_cpu t_rps t_cpu
for i in $(seq 1 "$reps"); do
  read -r a b < <(run "$single"); s_rps+=("$a"); s_cpu+=("$b")
  read -r a b < <(run "$three"); t_rps+=("$a"); t_cpu+=("$b")
  echo "rep $i: single ${s_rps[-1]} conn/s ${s_cpu[-1]} µs/conn | three ${t_rps[-1]} conn/s ${t_cpu[-1]} µs/conn"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "median single: $(median "${s_rps[@]}") conn/s, $(median "${s_cpu[@]}") µs CPU/conn"
echo "median three:  $(median "${t_rps[@]}") conn/s, $(median "${t_cpu[@]}") µs CPU/conn"
echo "connect attempts per mapping:"
curl -s "http://127.0.0.1:$adm/metrics" | grep '^tcpmap_upstream_connect_attempts_total' || true
echo "endpoints of 'three' (address, state):"
curl -s "http://127.0.0.1:$adm/config" | python3 -c 'import json,sys; d=json.load(sys.stdin); [print(" ", e["address"], e["state"]) for s in d["endpoints"] if s["mapping"]=="three" for e in s["endpoints"]]' 
