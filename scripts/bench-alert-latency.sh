#!/usr/bin/env bash
# Time from "order execution latency goes bad" to "a person's Slack gets the POST":
# m4watch alone (StatsD -> trading windows -> rule engine -> notifier -> Slack sink)
# next to Prometheus + Alertmanager with common settings (1 s scrape, 1 s rule
# evaluation, Alertmanager's default group_wait 30 s) on the same StatsD load, the same
# rule expression and the same sink, in the same run.
#   scripts/bench-alert-latency.sh [runs]      (default 3)
# The rule is the shipped OrderExecutionLatencyHigh with `for: 0s`: its `for: 1m` is a
# deliberate wait that both systems would add alike, so it is left out of the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
for cmd in prometheus prometheus-alertmanager; do
  command -v "$cmd" >/dev/null || { echo "missing $cmd (apt-get install prometheus prometheus-alertmanager)" >&2; exit 1; }
done
cargo build --release --locked -q
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

M4=127.0.0.1:19977; STATSD_PORT=18125; PROM=127.0.0.1:19090; AM=127.0.0.1:19093; SINK_PORT=19400

cat >"$tmp/bench.rules.yml" <<'YML'
groups:
  - name: bench
    rules:
      - alert: OrderExecutionLatencyHigh
        expr: m4watch_trading_latency_quantile_seconds{operation="order_execution",window="1m",quantile="0.95"} > 0.010
        for: 0s
        labels: {severity: critical}
        annotations: {summary: order execution slow, description: p95 above 10ms}
YML

# A Slack stand-in that notes when each path first receives a POST.
cat >"$tmp/sink.py" <<'PY'
import http.server, sys, time
out = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.time()
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "a") as f:
            f.write(f"{self.path} {t:.6f}\n")
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

first_post() { awk -v p="$1" '$1 ~ p {print $2; exit}' "$tmp/sink.log" 2>/dev/null; }
now() { date +%s.%N; }
results=()
for run in $(seq 1 "$RUNS"); do
  rm -rf "$tmp/data" "$tmp/tsdb" "$tmp/am"; : >"$tmp/sink.log"
  python3 "$tmp/sink.py" $SINK_PORT "$tmp/sink.log" & pids+=($!)
  cat >"$tmp/m4watch.yml" <<YML
listen: $M4
data_dir: $tmp/data
trading: {statsd_listen: "127.0.0.1:$STATSD_PORT"}
rules: {files: ["$tmp/bench.rules.yml"]}
notifications:
  receivers:
    - name: desk
      slack: {webhook_url: "http://127.0.0.1:$SINK_PORT/m4watch"}
  route: {receiver: desk}
YML
  ./target/release/m4watch --config "$tmp/m4watch.yml" 2>"$tmp/m4watch.log" & pids+=($!)
  cat >"$tmp/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$tmp/bench.rules.yml"]
alerting:
  alertmanagers: [{static_configs: [{targets: ["$AM"]}]}]
scrape_configs:
  - job_name: m4watch
    static_configs: [{targets: ["$M4"]}]
YML
  cat >"$tmp/alertmanager.yml" <<YML
route: {receiver: desk}
receivers:
  - name: desk
    slack_configs: [{api_url: "http://127.0.0.1:$SINK_PORT/alertmanager", channel: "#desk"}]
YML
  prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address=$PROM >"$tmp/prom.log" 2>&1 & pids+=($!)
  prometheus-alertmanager --config.file="$tmp/alertmanager.yml" --storage.path="$tmp/am" \
    --web.listen-address=$AM --cluster.listen-address= >"$tmp/am.log" 2>&1 & pids+=($!)
  for url in http://$M4/-/ready http://$PROM/-/ready http://$AM/-/ready; do
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "$url" && break; sleep 0.1; done
  done
  sleep 3 # Prometheus has scraped m4watch a few times

  t0=$(now)
  # 50 ms order executions (5x the 10 ms threshold), 100 a second, until both alerted.
  while :; do
    for _ in $(seq 1 10); do printf 'order_execution:50|ms\n' >/dev/udp/127.0.0.1/$STATSD_PORT; done
    sleep 0.1
    m=$(first_post /m4watch); a=$(first_post /alertmanager)
    [ -n "$m" ] && [ -n "$a" ] && break
    if (( $(echo "$(now) - $t0 > 120" | bc) )); then echo "run $run: timed out (m4watch=${m:-none} am=${a:-none})" >&2; break; fi
  done
  dm=$(echo "${m:-0} - $t0" | bc -l); da=$(echo "${a:-0} - $t0" | bc -l)
  printf 'run %d: m4watch %.2f s, prometheus+alertmanager %.2f s\n' "$run" "$dm" "$da"
  results+=("$dm $da")
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=()
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mm=$(printf '%s\n' "${results[@]}" | awk '{print $1}' | median)
ma=$(printf '%s\n' "${results[@]}" | awk '{print $2}' | median)
echo "machine: $(uname -srm), $(nproc) cores; median of $RUNS runs"
printf 'm4watch: %.2f s   prometheus+alertmanager (defaults): %.2f s   ratio %.1fx\n' "$mm" "$ma" "$(echo "$ma/$mm" | bc -l)"
