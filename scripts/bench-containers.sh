#!/usr/bin/env bash
# Container collector: the time one cycle takes (list, inspect and one-shot stats of
# every container, from m4watch_collector_duration_seconds{collector="containers"})
# with N idle containers, next to `docker stats --no-stream` on the same containers,
# the anchor, in the same run. Goal: one cycle for 20 containers < 250 ms.
#   scripts/bench-containers.sh [containers] [cycles] [docker-stats-runs] [concurrency]
# Needs a running dockerd and the m4watch-test-busybox image (scripts/test.sh makes
# both). Removes every container it starts, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
CYCLES=${2:-30}
RUNS=${3:-5}
CONC=${4:-8}
IMAGE=m4watch-test-busybox

cargo build --release --locked -q --bin m4watch
BIN=${CARGO_TARGET_DIR:-target}/release/m4watch
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
  interval: 3s
  timeout: 3s
  max_concurrent_requests: $CONC
  include:
    names: ["$prefix*"]
EOF
"$BIN" --config "$work/m4watch.yml" >"$work/m4watch.log" 2>&1 &
pid=$!

# One duration per completed cycle: a new last-success timestamp marks a new cycle.
scrape() { curl -sf "http://127.0.0.1:$port/metrics" || true; }
metric() { awk -v m="$1{collector=\"containers\"}" '$1==m {print $2}'; }
seen=
durations=()
deadline=$((SECONDS + CYCLES * 4 + 30))
while [ ${#durations[@]} -lt "$CYCLES" ] && [ $SECONDS -lt $deadline ]; do
  text=$(scrape)
  ts=$(metric m4watch_collector_last_success_timestamp_seconds <<<"$text")
  up=$(grep -c '^m4watch_container_up{' <<<"$text" || true)
  if [ -n "$ts" ] && [ "$ts" != "$seen" ] && [ "$up" -eq "$N" ]; then
    seen=$ts
    # The first cycle connects (version negotiation, /info): not a steady-state cycle.
    [ -n "${first_done:-}" ] && durations+=("$(metric m4watch_collector_duration_seconds <<<"$text")")
    first_done=1
  fi
  sleep 0.25
done
[ ${#durations[@]} -ge "$CYCLES" ] || { echo "only ${#durations[@]} cycles with all $N containers; log:" >&2; tail "$work/m4watch.log" >&2; exit 1; }

stats=()
for _ in $(seq 1 "$RUNS"); do
  t0=$(date +%s.%N)
  docker stats --no-stream "${names[@]}" >/dev/null
  t1=$(date +%s.%N)
  stats+=("$(echo "$t1 - $t0" | bc -l)")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p90() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {i=int(NR*0.9); if (i<1) i=1; print a[i]}'; }
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s*1000}'; }
m_cycle=$(median "${durations[@]}")
m_stats=$(median "${stats[@]}")
echo "$N containers, $(docker version --format '{{.Server.Version}}') ($(uname -srm), $(nproc) cores), concurrency $CONC"
printf '| what | runs | median ms | p90 ms |\n| --- | ---: | ---: | ---: |\n'
printf '| m4watch containers cycle | %s | %s | %s |\n' "${#durations[@]}" "$(ms "$m_cycle")" "$(ms "$(p90 "${durations[@]}")")"
printf '| docker stats --no-stream | %s | %s | %s |\n' "$RUNS" "$(ms "$m_stats")" "$(ms "$(p90 "${stats[@]}")")"
awk -v a="$m_stats" -v b="$m_cycle" 'BEGIN {printf "docker stats / m4watch cycle: %.1fx\n", a/b}'
