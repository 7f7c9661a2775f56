#!/usr/bin/env bash
# Memory of two m4watch binaries side by side over time, same load:
#   scripts/bench-footprint-ab.sh BIN_A BIN_B [containers] [seconds...]
# Both run the embedded default (StatsD moved to 18125/28125, HTTP to 19971/19972) on
# the running dockerd with CONTAINERS idle containers (default 20) and StatsD timers on
# 10 operations each. Prints RSS, PSS, private dirty and anonymous memory (MiB, from
# /proc/PID/smaps_rollup) at each time (default 30 120 300 600 900 1000 s: the rule
# engine's sample ring keeps up to 15 minutes, so memory is steady only after that).
# A binary may be a wrapper script that execs m4watch (e.g. to set GLIBC_TUNABLES).
set -euo pipefail
. "$(dirname "$0")/lib/idle-containers.sh"
A=$1; B=$2; N=${3:-20}; shift 2; [ $# -gt 0 ] && shift
TIMES=${*:-30 120 300 600 900 1000}
tmp=$(mktemp -d); prefix="m4wab-$$-"
cleanup() {
  kill "${PA:-}" "${PB:-}" "${SD:-}" 2>/dev/null || true
  idle_containers_remove "$prefix"
  rm -rf "$tmp"
}
trap cleanup EXIT
idle_containers_start "$prefix" "$N"
"$A" print-default-config | sed 's/0.0.0.0:8125/127.0.0.1:18125/' >"$tmp/a.yml"
"$B" print-default-config | sed 's/0.0.0.0:8125/127.0.0.1:28125/' >"$tmp/b.yml"
"$A" --config "$tmp/a.yml" --listen 127.0.0.1:19971 --data-dir "$tmp/da" 2>"$tmp/a.log" &
PA=$!
"$B" --config "$tmp/b.yml" --listen 127.0.0.1:19972 --data-dir "$tmp/db" 2>"$tmp/b.log" &
PB=$!
python3 - <<'PY' &
import random, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ops = [f"op{i}" for i in range(10)]
while True:
    lines = "\n".join(f"{op}:{random.uniform(0.2, 5):.3f}|ms" for op in ops for _ in range(2)).encode()
    s.sendto(lines, ("127.0.0.1", 18125)); s.sendto(lines, ("127.0.0.1", 28125))
    time.sleep(0.1)
PY
SD=$!
mem() { awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_Dirty:/ {d=$2} /^Anonymous:/ {a=$2} END {printf "RSS %.1f PSS %.1f dirty %.1f anon %.1f", r/1024, p/1024, d/1024, a/1024}' "/proc/$1/smaps_rollup"; }
echo "machine: $(uname -srm), $(nproc) cores; $N containers; A=$A B=$B"
start=$(date +%s)
for at in $TIMES; do
  while [ $(($(date +%s) - start)) -lt "$at" ]; do sleep 5; done
  curl -fsS -o /dev/null http://127.0.0.1:19971/metrics
  curl -fsS -o /dev/null http://127.0.0.1:19972/metrics
  echo "t=${at}s  A: $(mem $PA)  |  B: $(mem $PB)"
done
for p in 19971 19972; do
  echo "port $p: $(curl -fsS http://127.0.0.1:$p/metrics | grep -vc '^#') series"
done
