#!/usr/bin/env bash
# Renders every panel of the shipped Grafana dashboards into docs/dashboards/*.png from
# a real Prometheus (Debian `prometheus`, shipped config) scraping m4watch, so a person
# can see what Grafana will show. Grafana itself cannot be installed here.
#   scripts/render-dashboards.sh [minutes-of-data]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-3}
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
[ -f "$FONT" ] || apt-get install -y -qq fonts-dejavu-core >/dev/null
command -v prometheus >/dev/null || apt-get install -y -qq prometheus >/dev/null

cargo build --release --locked -q
CARGO_TARGET_DIR=${RENDER_TARGET_DIR:-target/render} \
  cargo build --release -q --manifest-path tools/render-dashboards/Cargo.toml
RENDER=${RENDER_TARGET_DIR:-target/render}/release/render-dashboards

tmp=$(mktemp -d)
cleanup() { kill "${M4_PID:-}" "${PROM_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

M4=127.0.0.1:19977
PROM=127.0.0.1:19090
echo "render-token" >"$tmp/m4watch_token"
M4WATCH_API_TOKEN=render-token ./target/release/m4watch demo --listen "$M4" --data-dir "$tmp/data" \
  >"$tmp/m4watch.log" 2>&1 &
M4_PID=$!

# The shipped config, pointed at this m4watch and Prometheus.
sed -e "s#m4watch:9977#$M4#g" -e "s#localhost:9090#$PROM#" \
    -e "s#/etc/prometheus/rules/\*.rules.yml#$PWD/alert-rules/*.rules.yml#" \
    -e "s#/etc/prometheus/secrets/m4watch_token#$tmp/m4watch_token#" \
    -e 's#"alertmanager:9093"#"127.0.0.1:1"#' \
    prometheus/prometheus.yml >"$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="$PROM" >"$tmp/prometheus.log" 2>&1 &
PROM_PID=$!

echo "collecting ${MINUTES} minute(s) of data..."
sleep $((MINUTES * 60))
"$RENDER" "http://$PROM" grafana-dashboards docs/dashboards "$MINUTES" "$FONT"
