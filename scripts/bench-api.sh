#!/usr/bin/env bash
# JSON API cost against the scrape, on one m4watch (replayed M4 Max, so every
# hardware section is filled), driven by wrk for the same time each:
#   scripts/bench-api.sh [seconds-per-run] [runs]
# Prints medians over the runs and each endpoint's req/s as a ratio of /metrics'.
# The JSON views are built from the store on request; /metrics copies a snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
RUNS=${2:-3}
CONNS=${CONNS:-8}
command -v wrk >/dev/null || { echo "missing wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked -q
tmp=$(mktemp -d)
cleanup() { kill "${M4_PID:-}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
cat >"$tmp/m4watch.yml" <<YAML
listen: 127.0.0.1:19978
data_dir: $tmp/data
hardware:
  source: replay
  replay_file: $PWD/demo/m4max-synthetic.jsonl
containers:
  enabled: false
trading:
  statsd_listen: null
YAML
./target/release/m4watch --config "$tmp/m4watch.yml" 2>"$tmp/m4.log" &
M4_PID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null http://127.0.0.1:19978/-/ready && break; sleep 0.1; done
sleep 12 # a few history samples, so the history query has rows

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # url -> "rps p50ms p99ms"
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$1")
  echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out" | to_ms) $(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)"
}
paths=(/metrics /api/v1/monitoring/m4max/hardware/metrics /api/v1/monitoring/system/health
  /api/v1/monitoring/dashboard/summary /api/v1/monitoring/performance/optimizations
  "/api/v1/monitoring/m4max/hardware/history?minutes=1&step=10s")
for i in "${!paths[@]}"; do : >"$tmp/r$i"; done
for _ in $(seq 1 "$RUNS"); do
  for i in "${!paths[@]}"; do run "http://127.0.0.1:19978${paths[$i]}" >>"$tmp/r$i"; done
done
col() { awk -v c="$2" '{print $c}' "$1" | median; }
base=$(col "$tmp/r0" 1)
echo "machine: $(uname -srm), $(nproc) cores; wrk -t1 -c$CONNS -d${DUR}s, median of $RUNS runs"
printf '%-62s %10s %8s %8s %8s\n' path "req/s" "p50 ms" "p99 ms" "x/metrics"
for i in "${!paths[@]}"; do
  rps=$(col "$tmp/r$i" 1)
  printf '%-62s %10s %8s %8s %8.2f\n' "${paths[$i]}" "$rps" "$(col "$tmp/r$i" 2)" "$(col "$tmp/r$i" 3)" \
    "$(awk -v a="$rps" -v b="$base" 'BEGIN {print a/b}')"
done
echo "RSS after the run: $(awk '/^VmRSS:/ {printf "%.1f MiB", $2/1024}' /proc/$M4_PID/status)"
