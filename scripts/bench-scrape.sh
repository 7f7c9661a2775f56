#!/usr/bin/env bash
# Scrape throughput, latency and memory: m4watch vs Debian's prometheus-node-exporter,
# side by side on loopback, both driven by wrk for the same time.
#   scripts/bench-scrape.sh [seconds-per-run] [runs]
# m4watch runs the embedded default (every part on: hardware, process, containers,
# trading, rules, history, notifier) with CONTAINERS idle containers on the running
# dockerd (default 20; 0 skips them) and StatsD traffic on 10 operations. Memory is
# read from /proc/PID/smaps_rollup (RSS, PSS, private dirty) once steady before the
# load and again after it. Prints medians over the runs and the ratios.
# Steady means SETTLE seconds after start (default 30). The rule engine's sample ring
# keeps up to rules.max_range (15 min) of what the rules read, so memory is at its
# steady state only after that: SETTLE=960 for the figure BENCHMARKS.md records.
# PROCESS_GROUPS (default 5, at most 5) trading-process groups are watched (dockerd,
# containerd, the StatsD sender, the idle containers' sleep, node_exporter), and
# m4watch's CPU share over the last CPU_WINDOW seconds (default 60) of the settle
# time, with no scrapes, is printed: the cost of its collectors at their default
# intervals.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/idle-containers.sh
DUR=${1:-10}
RUNS=${2:-3}
CONNS=${CONNS:-8}
CONTAINERS=${CONTAINERS:-20}
SETTLE=${SETTLE:-30}
PROCESS_GROUPS=${PROCESS_GROUPS:-5}
CPU_WINDOW=${CPU_WINDOW:-60}
[ "$CPU_WINDOW" -le "$SETTLE" ] || CPU_WINDOW=$SETTLE
for cmd in wrk prometheus-node-exporter; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd: apt-get install wrk prometheus-node-exporter" >&2; exit 1; }
done
# M4WATCH_BIN: a release binary built already (default: build ./target/release/m4watch).
if [ -z "${M4WATCH_BIN:-}" ]; then
  cargo build --release --locked -q --bin m4watch
  M4WATCH_BIN=./target/release/m4watch
fi
tmp=$(mktemp -d)
prefix="m4wscrape-$$-"
cleanup() {
  kill "${M4_PID:-}" "${NE_PID:-}" "${SD_PID:-}" 2>/dev/null || true
  idle_containers_remove "$prefix"
  rm -rf "$tmp"
}
trap cleanup EXIT
idle_containers_start "$prefix" "$CONTAINERS"

M4_URL=http://127.0.0.1:19977/metrics
NE_URL=http://127.0.0.1:19100/metrics
# The embedded default, plus the process groups.
"$M4WATCH_BIN" print-default-config | PROCESS_GROUPS=$PROCESS_GROUPS python3 -c '
import os, sys, yaml
c = yaml.safe_load(sys.stdin)
groups = [
    {"name": "dockerd", "process_name": "^dockerd$"},
    {"name": "containerd", "process_name": "^containerd"},
    {"name": "statsd-sender", "cmdline": "^python3 -$"},
    {"name": "idle-containers", "process_name": "^sleep$"},
    {"name": "node-exporter", "cmdline": "prometheus-node-exporter"},
]
c["processes"]["groups"] = groups[: int(os.environ["PROCESS_GROUPS"])]
yaml.safe_dump(c, sys.stdout)
' >"$tmp/m4watch.yml"
"$M4WATCH_BIN" --config "$tmp/m4watch.yml" --listen 127.0.0.1:19977 --data-dir "$tmp/data" 2>"$tmp/m4.log" &
M4_PID=$!
prometheus-node-exporter --web.listen-address=127.0.0.1:19100 2>"$tmp/ne.log" &
NE_PID=$!
for url in http://127.0.0.1:19977/-/ready $NE_URL; do
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$url" && break; sleep 0.1; done
done
# StatsD traffic on 10 operations, ~200 timer lines a second, for the whole run.
python3 - <<'PY' &
import random, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ops = [f"op{i}" for i in range(10)]
while True:
    lines = "\n".join(f"{op}:{random.uniform(0.2, 5):.3f}|ms" for op in ops for _ in range(2))
    s.sendto(lines.encode(), ("127.0.0.1", 8125))
    time.sleep(0.1)
PY
SD_PID=$!
# collectors, rules, history, streams and the sample ring settle; m4watch's CPU time
# (utime + stime, clock ticks) is read over the last CPU_WINDOW seconds of it.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleep $((SETTLE - CPU_WINDOW))
cpu0=$(ticks $M4_PID)
sleep "$CPU_WINDOW"
cpu1=$(ticks $M4_PID)
m4_cpu=$(echo "100 * ($cpu1 - $cpu0) / $(getconf CLK_TCK) / $CPU_WINDOW" | bc -l)

# RSS, PSS and private dirty (MiB) from smaps_rollup.
mem() { awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_Dirty:/ {d=$2} END {printf "%.1f %.1f %.1f", r/1024, p/1024, d/1024}' "/proc/$1/smaps_rollup"; }
m4_idle=$(mem $M4_PID); ne_idle=$(mem $NE_PID)

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
col() { awk -v c="$2" '{print $c}' "$1" | median; }
m4_load=$(mem $M4_PID); ne_load=$(mem $NE_PID)
hwm_mib() { awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

m4_rps=$(col "$tmp/m4" 1); ne_rps=$(col "$tmp/ne" 1)
m4_p50=$(col "$tmp/m4" 2); ne_p50=$(col "$tmp/ne" 2)
m4_p99=$(col "$tmp/m4" 3); ne_p99=$(col "$tmp/ne" 3)
m4_bytes=$(curl -fsS "$M4_URL" | wc -c); ne_bytes=$(curl -fsS "$NE_URL" | wc -c)
m4_containers=$(curl -fsS "$M4_URL" | grep -c '^m4watch_container_up{' || true)
m4_ops=$(curl -fsS "$M4_URL" | grep '^m4watch_trading' | grep -o 'operation="[^"]*"' | sort -u | wc -l)
m4_groups=$(curl -fsS "$M4_URL" | grep -c '^m4watch_process_group_up{.*} 1$' || true)

echo "machine: $(uname -srm), $(nproc) cores; wrk -t1 -c$CONNS -d${DUR}s, median of $RUNS runs"
echo "m4watch: embedded default, $m4_containers containers, $m4_ops StatsD operations, $m4_groups of $PROCESS_GROUPS process groups up; memory ${SETTLE} s after start"
printf 'm4watch CPU over %s s without scrapes: %.2f %% of one core\n' "$CPU_WINDOW" "$m4_cpu"
printf '%-16s %10s %8s %8s %8s | %-19s | %-19s | %8s\n' target "req/s" "p50 ms" "p99 ms" "body B" \
  "RSS/PSS/dirty idle" "RSS/PSS/dirty load" "peak MiB"
printf '%-16s %10s %8s %8s %8s | %-19s | %-19s | %8s\n' m4watch "$m4_rps" "$m4_p50" "$m4_p99" "$m4_bytes" \
  "$m4_idle" "$m4_load" "$(hwm_mib $M4_PID)"
printf '%-16s %10s %8s %8s %8s | %-19s | %-19s | %8s\n' node_exporter "$ne_rps" "$ne_p50" "$ne_p99" "$ne_bytes" \
  "$ne_idle" "$ne_load" "$(hwm_mib $NE_PID)"
printf 'ratio m4watch/node_exporter throughput: %.1fx\n' "$(echo "$m4_rps/$ne_rps" | bc -l)"
