#!/usr/bin/env bash
# What each scrape job of the shipped prometheus/prometheus.yml fetches from m4watch
# (issue 30 item 4): `m4watch demo` (the synthetic M4 Max recording with its StatsD
# load) is scraped in full and as each m4watch job asks (its `params`, collect[] or
# exclude[], sent as Prometheus sends them), and each body's bytes and share of the
# full one are printed; then wrk drives each URL for the same time and prints
# throughput and latency, so the filtered scrape's cost is read beside the full one's.
#   scripts/bench-scrape-jobs.sh [seconds-per-run] [runs]
# M4WATCH_BIN: a release binary built already (default: build ./target/release/m4watch).
# SETTLE: seconds after start before measuring (default 20: utilisation needs a second
# hardware reading, the quantiles the StatsD load). Needs wrk, curl and python3-yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
RUNS=${2:-3}
CONNS=${CONNS:-8}
SETTLE=${SETTLE:-20}
command -v wrk >/dev/null || { echo "missing wrk: apt-get install wrk" >&2; exit 1; }
if [ -z "${M4WATCH_BIN:-}" ]; then
  cargo build --release --locked -q --bin m4watch
  M4WATCH_BIN=./target/release/m4watch
fi
tmp=$(mktemp -d)
cleanup() {
  kill "${M4_PID:-}" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
port=19978
statsd=18126
printf 'trading:\n  statsd_listen: 127.0.0.1:%s\n' "$statsd" >"$tmp/m4watch.yml"
"$M4WATCH_BIN" --config "$tmp/m4watch.yml" --listen "127.0.0.1:$port" --data-dir "$tmp/data" demo \
  >"$tmp/m4.log" 2>&1 &
M4_PID=$!
base="http://127.0.0.1:$port/metrics"
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.1; done
sleep "$SETTLE"

# "name<TAB>query" for the full scrape and each m4watch job of the shipped config.
python3 - >"$tmp/jobs" <<'PY'
import urllib.parse, yaml
cfg = yaml.safe_load(open("prometheus/prometheus.yml"))
print("full (no params)\t")
for job in cfg["scrape_configs"]:
    params = job.get("params")
    if params is None:
        continue
    q = urllib.parse.urlencode([(k, v) for k, vs in params.items() for v in vs])
    interval = job.get("scrape_interval", cfg["global"]["scrape_interval"])
    print(f"{job['job_name']} ({interval})\t?{q}")
PY

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

full=0
echo "machine: $(uname -srm), $(nproc) cores; m4watch demo ${SETTLE} s after start; wrk -t1 -c$CONNS -d${DUR}s, median of $RUNS runs"
printf '%-26s %-44s %8s %7s %10s %8s %8s\n' job query "body B" "share" "req/s" "p50 ms" "p99 ms"
while IFS=$'\t' read -r name query; do
  # Bytes: the median of five scrapes (series come and go with the StatsD load).
  bytes=$(for _ in 1 2 3 4 5; do curl -fsS "$base$query" | wc -c; done | median)
  [ "$full" -eq 0 ] && full=$bytes
  : >"$tmp/runs"
  for _ in $(seq 1 "$RUNS"); do
    out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$base$query")
    echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out" | to_ms) $(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)" >>"$tmp/runs"
  done
  col() { awk -v c="$1" '{print $c}' "$tmp/runs" | median; }
  printf '%-26s %-44s %8s %6.1f%% %10s %8s %8s\n' "$name" "${query:-}" "$bytes" \
    "$(echo "100 * $bytes / $full" | bc -l)" "$(col 1)" "$(col 2)" "$(col 3)"
done <"$tmp/jobs"
