#!/usr/bin/env bash
# Scrape throughput, latency and memory: m4watch vs Debian's prometheus-node-exporter,
# side by side on loopback, both driven by wrk for the same time.
#   scripts/bench-scrape.sh [seconds-per-run] [runs]
# Prints medians over the runs and the m4watch/node_exporter ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
RUNS=${2:-3}
CONNS=${CONNS:-8}
for cmd in wrk prometheus-node-exporter; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install wrk prometheus-node-exporter" >&2; exit 1; }
done
cargo build --release --locked -q
tmp=$(mktemp -d)
cleanup() { kill "${M4_PID:-}" "${NE_PID:-}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

M4_URL=http://127.0.0.1:19977/metrics
NE_URL=http://127.0.0.1:19100/metrics
./target/release/m4watch --listen 127.0.0.1:19977 --data-dir "$tmp/data" 2>"$tmp/m4.log" &
M4_PID=$!
prometheus-node-exporter --web.listen-address=127.0.0.1:19100 2>"$tmp/ne.log" &
NE_PID=$!
for url in http://127.0.0.1:19977/-/ready $NE_URL; do
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$url" && break; sleep 0.1; done
done
sleep 2 # let m4watch's collectors run twice so the exposition is complete

# wrk latency figures come as 812.00us / 1.23ms / 1.02s: convert to ms.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() { # url -> "rps p50ms p99ms"
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$1")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
  echo "$rps $p50 $p99"
}

: >"$tmp/m4" ; : >"$tmp/ne"
for i in $(seq 1 "$RUNS"); do
  run "$M4_URL" >>"$tmp/m4"
  run "$NE_URL" >>"$tmp/ne"
done
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
col() { awk -v c="$2" '{print $c}' "$1" | median; }

m4_rps=$(col "$tmp/m4" 1); ne_rps=$(col "$tmp/ne" 1)
m4_p50=$(col "$tmp/m4" 2); ne_p50=$(col "$tmp/ne" 2)
m4_p99=$(col "$tmp/m4" 3); ne_p99=$(col "$tmp/ne" 3)
m4_bytes=$(curl -fsS "$M4_URL" | wc -c); ne_bytes=$(curl -fsS "$NE_URL" | wc -c)

echo "machine: $(uname -srm), $(nproc) cores; wrk -t1 -c$CONNS -d${DUR}s, median of $RUNS runs"
printf '%-16s %12s %10s %10s %10s %10s %10s\n' target "req/s" "p50 ms" "p99 ms" "RSS MiB" "peak MiB" "body B"
printf '%-16s %12s %10s %10s %10.1f %10.1f %10s\n' m4watch "$m4_rps" "$m4_p50" "$m4_p99" \
  "$(echo "$(rss_kb $M4_PID)/1024" | bc -l)" "$(echo "$(hwm_kb $M4_PID)/1024" | bc -l)" "$m4_bytes"
printf '%-16s %12s %10s %10s %10.1f %10.1f %10s\n' node_exporter "$ne_rps" "$ne_p50" "$ne_p99" \
  "$(echo "$(rss_kb $NE_PID)/1024" | bc -l)" "$(echo "$(hwm_kb $NE_PID)/1024" | bc -l)" "$ne_bytes"
printf 'ratio m4watch/node_exporter throughput: %.1fx\n' "$(echo "$m4_rps/$ne_rps" | bc -l)"
