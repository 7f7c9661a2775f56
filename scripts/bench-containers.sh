#!/usr/bin/env bash
# Container collector with stats streams: the time one cycle takes (from
# m4watch_collector_duration_seconds{collector="containers"}), the age of the stats at
# scrape time (the largest m4watch_container_stats_age_seconds of each scrape) and
# m4watch's CPU share while it only holds the streams (no scrapes, a quiet window),
# with N idle containers, next to `docker stats --no-stream` on the same containers,
# the anchor, in the same run. Shipped settings: interval 1 s.
# Goals (issue 17): cycle < 50 ms for 50 containers and >= 40x faster than docker
# stats; stats age <= interval + 1 s; CPU < 2 % of one core for 50 streams.
#   [BIN=path] scripts/bench-containers.sh [containers] [cycles] [docker-stats-runs] [cpu-seconds]
# Needs a running dockerd and the m4watch-test-busybox image (scripts/test.sh makes
# both). Removes every container it starts, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
CYCLES=${2:-30}
RUNS=${3:-5}
CPU_SECS=${4:-30}
IMAGE=m4watch-test-busybox

# BIN=path runs that binary (or a wrapper that execs one) instead of building this tree.
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q --bin m4watch
  BIN=${CARGO_TARGET_DIR:-target}/release/m4watch
fi
docker info >/dev/null 2>&1 || { echo "no Docker Engine: run scripts/test.sh first" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "no $IMAGE image: run scripts/test.sh first" >&2; exit 1; }

prefix="m4wbench-$$-"
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ids=$(docker ps -aq --filter "label=m4watch.bench=$prefix")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

names=()
for i in $(seq 1 "$N"); do
  names+=("${prefix}$i")
  docker run -d --name "${prefix}$i" --label "m4watch.bench=$prefix" --network none \
    "$IMAGE" sh -c "trap 'exit 0' TERM; sleep 3600 & wait" >/dev/null
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/m4watch.yml" <<EOF
listen: 127.0.0.1:$port
data_dir: $work/data
hardware:
  enabled: false
  interval: 1s
  timeout: 800ms
  procfs: /proc
  sysfs: /sys
process:
  enabled: false
  interval: 5s
trading:
  enabled: false
rules:
  enabled: false
containers:
  interval: 1s
  timeout: 1s
  include:
    names: ["$prefix*"]
EOF
"$BIN" --config "$work/m4watch.yml" >"$work/m4watch.log" 2>&1 &
pid=$!

scrape() { curl -sf "http://127.0.0.1:$port/metrics" || true; }
metric() { awk -v m="$1{collector=\"containers\"}" '$1==m {print $2}'; }
# One duration per completed cycle: a new last-success timestamp marks a new cycle;
# the largest stats age of that scrape is the staleness a scraper saw.
seen=
durations=()
ages=()
deadline=$((SECONDS + CYCLES * 2 + 30))
while [ ${#durations[@]} -lt "$CYCLES" ] && [ $SECONDS -lt $deadline ]; do
  text=$(scrape)
  ts=$(metric m4watch_collector_last_success_timestamp_seconds <<<"$text")
  up=$(grep -c '^m4watch_container_up{' <<<"$text" || true)
  aged=$(grep -c '^m4watch_container_stats_age_seconds{' <<<"$text" || true)
  if [ -n "$ts" ] && [ "$ts" != "$seen" ] && [ "$up" -eq "$N" ] && [ "$aged" -eq "$N" ]; then
    seen=$ts
    # The first cycles run while the streams attach: not steady state.
    if [ -n "${first_done:-}" ]; then
      durations+=("$(metric m4watch_collector_duration_seconds <<<"$text")")
      ages+=("$(awk '/^m4watch_container_stats_age_seconds\{/ {if ($2 > m) m = $2} END {print m+0}' <<<"$text")")
    fi
    first_done=1
  fi
  sleep 0.25
done
[ ${#durations[@]} -ge "$CYCLES" ] || { echo "only ${#durations[@]} cycles with all $N containers streaming; log:" >&2; tail "$work/m4watch.log" >&2; exit 1; }
streams=$(scrape | awk '$1=="m4watch_container_stats_streams" {print $2}')
fallbacks=$(scrape | awk '$1=="m4watch_container_stats_fallbacks_total" {print $2}')

# CPU while idle-streaming: utime + stime over a quiet window without scrapes.
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks); t0=$(date +%s.%N)
sleep "$CPU_SECS"
c1=$(ticks); t1=$(date +%s.%N)
cpu=$(awk -v c="$((c1 - c0))" -v hz="$hz" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", 100 * c / hz / (b - a)}')

stats=()
for _ in $(seq 1 "$RUNS"); do
  t0=$(date +%s.%N)
  docker stats --no-stream "${names[@]}" >/dev/null
  t1=$(date +%s.%N)
  stats+=("$(echo "$t1 - $t0" | bc -l)")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p90() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {i=int(NR*0.9); if (i<1) i=1; print a[i]}'; }
ms() { awk -v s="$1" 'BEGIN {printf "%.2f", s*1000}'; }
m_cycle=$(median "${durations[@]}")
m_stats=$(median "${stats[@]}")
echo "$N containers, Docker $(docker version --format '{{.Server.Version}}') ($(uname -srm), $(nproc) cores); $streams streams, $fallbacks one-shot fallbacks"
printf '| what | runs | median | p90 |\n| --- | ---: | ---: | ---: |\n'
printf '| m4watch containers cycle (ms) | %s | %s | %s |\n' "${#durations[@]}" "$(ms "$m_cycle")" "$(ms "$(p90 "${durations[@]}")")"
printf '| stats age at scrape, oldest container (s) | %s | %s | %s |\n' "${#ages[@]}" "$(median "${ages[@]}")" "$(p90 "${ages[@]}")"
printf '| docker stats --no-stream (ms) | %s | %s | %s |\n' "$RUNS" "$(ms "$m_stats")" "$(ms "$(p90 "${stats[@]}")")"
awk -v a="$m_stats" -v b="$m_cycle" 'BEGIN {printf "docker stats / m4watch cycle: %.0fx\n", a/b}'
echo "m4watch CPU while idle-streaming ($CPU_SECS s, no scrapes): $cpu % of one core"
