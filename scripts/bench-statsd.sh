#!/usr/bin/env bash
# StatsD ingest: lines/s m4watch's listener takes, and lines lost, against a bare UDP
# receive loop (counts datagrams, nothing else) in the same run, plus a paced run at
# a fixed offered rate, and the parse-and-store cost alone. The load generator is src/bin/statsd-load.rs.
#   scripts/bench-statsd.sh [seconds-per-phase] [runs] [paced-lines-per-second]
# Prints every run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-3}
RUNS=${2:-5}
PACED=${3:-200000}
cargo build --release --locked -q --bin statsd-load
BIN=${CARGO_TARGET_DIR:-target}/release/statsd-load
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$RUNS"); do
  "$BIN" "$DUR" "$PACED" | tee -a "$out"
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { # phase key
  awk -v p="phase=$1" -v k="$2=" '$1==p {for (i=1;i<=NF;i++) if (index($i,k)==1) print substr($i,length(k)+1)}' "$out"
}
echo
echo "medians of $RUNS runs, ${DUR}s per phase ($(uname -srm), $(nproc) cores):"
printf '| phase | offered lines/s | ingested lines/s | lines lost | loss %% |\n| --- | ---: | ---: | ---: | ---: |\n'
for phase in bare m4watch paced; do
  offered=$(field "$phase" offered_lines_per_s | median)
  ingested=$(field "$phase" ingested_lines_per_s | median)
  lost=$(field "$phase" lost_lines | median)
  loss=$(paste <(field "$phase" lost_lines) <(field "$phase" sent_lines) | awk '{printf "%.4f\n", 100*$1/$2}' | median)
  printf '| %s | %s | %s | %s | %s |\n' "$phase" "$offered" "$ingested" "$lost" "$loss"
done
ratio=$(paste <(field m4watch ingested_lines_per_s) <(field bare ingested_lines_per_s) | awk '{printf "%.3f\n", $1/$2}' | median)
echo "median per-run ratio m4watch/bare ingested: $ratio"
echo "parse-and-store cost without a socket: $(field cpu ns_per_line | median) ns/line, $(field cpu lines_per_s_per_core | median) lines/s on one core"
