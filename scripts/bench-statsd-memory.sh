#!/usr/bin/env bash
# StatsD memory: RSS of the daemon (embedded default config: windows 1m and 5m, the
# shipped rules and their sample ring) before and after a burst of one-sample timer
# series, and again once the windows have expired. Without further input nothing but
# the windows' expiry and the ring's retention changes what is held.
#   scripts/bench-statsd-memory.sh [series] [seconds-after] [runs]
# M4WATCH_BIN picks the binary (default: a release build of this tree), so an older
# build can be measured the same way. Prints every run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-1000}
AFTER=${2:-320}
RUNS=${3:-1}
if [ -z "${M4WATCH_BIN:-}" ]; then
  cargo build --release --locked -q --bin m4watch
  M4WATCH_BIN=${CARGO_TARGET_DIR:-target}/release/m4watch
fi
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
rss() { awk '/^VmRSS:/ {printf "%.1f\n", $2/1024}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
out="$dir/runs"
for run in $(seq 1 "$RUNS"); do
  http=$(free_port)
  udp=$(free_port)
  mkdir -p "$dir/data$run"
  cat >"$dir/m4watch.yml" <<YML
listen: 127.0.0.1:$http
data_dir: $dir/data$run
trading:
  statsd_listen: 127.0.0.1:$udp
  max_series: $SERIES
YML
  "$M4WATCH_BIN" --config "$dir/m4watch.yml" >"$dir/log$run" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$http/metrics" >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep 5
  before=$(rss "$pid")
  python3 - "$udp" "$SERIES" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(b"bench_%05d:1.5|ms" % i, ("127.0.0.1", port))
    if i % 100 == 99:
        time.sleep(0.001)
PY
  sleep 5
  burst=$(rss "$pid")
  series=$(curl -fs "http://127.0.0.1:$http/metrics" | awk 'index($0, "m4watch_trading_series{type=\"timer\"} ") == 1 {print $2}')
  sleep "$((AFTER - 5))"
  after=$(rss "$pid")
  echo "run=$run series=$series rss_before_mib=$before rss_burst_mib=$burst rss_after_${AFTER}s_mib=$after" | tee -a "$out"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { awk -v k="$1=" '{for (i=1;i<=NF;i++) if (index($i,k)==1) print substr($i,length(k)+1)}' "$out"; }
b=$(field rss_before_mib | median)
u=$(field rss_burst_mib | median)
a=$(field "rss_after_${AFTER}s_mib" | median)
echo
echo "medians of $RUNS runs, $SERIES one-sample timer series ($(uname -srm), $(nproc) cores, $M4WATCH_BIN):"
printf '| RSS before MiB | after the burst MiB | %ss later MiB | per series KiB (burst) |\n| ---: | ---: | ---: | ---: |\n' "$AFTER"
printf '| %s | %s | %s | %s |\n' "$b" "$u" "$a" "$(awk -v b="$b" -v u="$u" -v n="$SERIES" 'BEGIN {printf "%.1f", (u-b)*1024/n}')"
