#!/usr/bin/env bash
# The metric schema two m4watch binaries export, side by side: the families and label
# names of `metrics-reference`, and of a scrape of `m4watch demo` (a synthetic M4 Max
# plus StatsD load, every family a Mac publishes) after SECONDS (default 20).
#   scripts/diff-schema.sh BIN_A BIN_B [seconds]
# Prints the differences (none: "same families and labels") and exits 1 when there are any.
set -euo pipefail
A=$1; B=$2; WAIT=${3:-20}
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# family{label,label,...} per series, label values dropped, sorted and unique.
shape() {
  grep -v '^#' | sed -E 's/ [^ ]+$//' | python3 -c '
import re, sys
out = set()
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?$", line)
    if not m:
        continue
    names = sorted(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"(?:[^\"\\\\]|\\\\.)*\"", m.group(3) or ""))
    out.add(m.group(1) + "{" + ",".join(names) + "}")
print("\n".join(sorted(out)))'
}
for side in A B; do
  bin=${!side}
  "$bin" metrics-reference >"$tmp/$side.reference"
  port=$(free_port)
  # StatsD on a free port of its own: the demo's load generator follows the config.
  "$bin" print-default-config | sed "s/0.0.0.0:8125/127.0.0.1:$(free_port)/" >"$tmp/$side.yml"
  "$bin" --config "$tmp/$side.yml" demo --listen "127.0.0.1:$port" --data-dir "$tmp/$side.data" >"$tmp/$side.log" 2>&1 &
  pids+=($!)
  echo "$side $port" >>"$tmp/ports"
done
sleep "$WAIT"
while read -r side port; do
  curl -fsS "http://127.0.0.1:$port/metrics" | shape >"$tmp/$side.scrape"
  echo "$side: $(wc -l <"$tmp/$side.scrape") family/label-set shapes in the demo scrape, $(grep -c '^| `' "$tmp/$side.reference") families in metrics-reference"
done <"$tmp/ports"
status=0
diff -u "$tmp/A.reference" "$tmp/B.reference" || status=1
diff -u "$tmp/A.scrape" "$tmp/B.scrape" || status=1
[ $status -eq 0 ] && echo "same families and labels"
exit $status
