#!/usr/bin/env bash
# Notifier latency: the time from an alert POSTed to /api/v2/alerts (the Alertmanager
# v2 API, as Prometheus sends it) until a webhook sink receives the notification.
# m4watch (release build, group_wait 0s, outbox in SQLite) against Debian's
# prometheus-alertmanager with its default group_wait (30s) and with group_wait 0s,
# same alerts, same sink, on loopback.
#   scripts/bench-notify-latency.sh [alerts]
# Prints the median and p90 per target and the ratios.
# This is the notifier's leg only; the end-to-end figure (StatsD -> rule engine ->
# Slack) needs the rule engine (scripts/bench-alert-latency.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
command -v prometheus-alertmanager >/dev/null || { echo "missing prometheus-alertmanager: apt-get install prometheus-alertmanager" >&2; exit 1; }
cargo build --release --locked -q
BIN=${CARGO_TARGET_DIR:-target}/release/m4watch
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK=$(free_port); M4=$(free_port); AM30=$(free_port); AM0=$(free_port)

# The sink: one line "target alertname unix-time" per alert it receives.
cat >"$tmp/sink.py" <<'PY'
import http.server, json, sys, time
out = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.time()
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        for a in body.get("alerts", []):
            if a["status"] == "firing":
                out.write(f"{self.path.strip('/')} {a['labels']['alertname']} {t:.6f}\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
/usr/bin/python3 "$tmp/sink.py" "$SINK" "$tmp/recv" & pids+=($!)

cat >"$tmp/m4watch.yml" <<YML
listen: 127.0.0.1:$M4
data_dir: $tmp/data
api: {token: bench}
notifications:
  receivers:
    - name: sink
      webhook: {url: "http://127.0.0.1:$SINK/m4watch"}
  route: {receiver: sink}
YML
"$BIN" --config "$tmp/m4watch.yml" 2>"$tmp/m4.log" & pids+=($!)
for gw in 30 0; do
  port=$([ "$gw" = 30 ] && echo "$AM30" || echo "$AM0")
  cat >"$tmp/am$gw.yml" <<YML
route:
  receiver: sink
  group_by: [alertname]
$([ "$gw" = 0 ] && echo "  group_wait: 0s")
receivers:
  - name: sink
    webhook_configs: [{url: "http://127.0.0.1:$SINK/am$gw", send_resolved: false}]
YML
  prometheus-alertmanager --config.file="$tmp/am$gw.yml" --storage.path="$tmp/am$gw" \
    --web.listen-address=127.0.0.1:$port --cluster.listen-address= 2>"$tmp/am$gw.log" & pids+=($!)
done
for url in http://127.0.0.1:$M4/-/ready http://127.0.0.1:$AM30/-/ready http://127.0.0.1:$AM0/-/ready; do
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done
done

: >"$tmp/sent"
for i in $(seq 1 "$N"); do
  name="Bench$i"
  body="[{\"labels\":{\"alertname\":\"$name\",\"severity\":\"critical\"},\"annotations\":{\"summary\":\"bench\"}}]"
  for target in m4watch am30 am0; do
    case $target in
      m4watch) url=http://127.0.0.1:$M4/api/v2/alerts; auth=(-H "Authorization: Bearer bench") ;;
      am30) url=http://127.0.0.1:$AM30/api/v2/alerts; auth=() ;;
      am0) url=http://127.0.0.1:$AM0/api/v2/alerts; auth=() ;;
    esac
    echo "$target $name $(date +%s.%N)" >>"$tmp/sent"
    curl -fsS -o /dev/null "${auth[@]}" -H 'Content-Type: application/json' -d "$body" "$url"
  done
  sleep 0.2
done
for _ in $(seq 1 600); do
  [ "$(wc -l <"$tmp/recv")" -ge $((3 * N)) ] && break
  sleep 0.1
done

/usr/bin/python3 - "$tmp/sent" "$tmp/recv" "$N" <<'PY'
import sys, statistics
sent = {(t, n): float(s) for t, n, s in (l.split() for l in open(sys.argv[1]))}
recv = {}
for l in open(sys.argv[2]):
    t, n, s = l.split()
    recv.setdefault((t, n), float(s))
res = {}
for t in ("m4watch", "am0", "am30"):
    d = sorted(recv[k] - sent[k] for k in sent if k[0] == t and k in recv)
    res[t] = d
    if not d:
        print(f"{t}: nothing received"); continue
    p90 = d[min(len(d) - 1, int(0.9 * len(d)))]
    print(f"{t:8} received {len(d)}/{sys.argv[3]}  median {statistics.median(d)*1000:9.1f} ms  p90 {p90*1000:9.1f} ms")
m = statistics.median(res["m4watch"])
for t, label in (("am0", "group_wait 0s"), ("am30", "default group_wait 30s")):
    if res[t]:
        print(f"Alertmanager ({label}) / m4watch median: {statistics.median(res[t]) / m:.1f}x")
PY
echo "machine: $(uname -srm), $(nproc) cores; $N alerts"
