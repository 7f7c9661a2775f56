#!/usr/bin/env bash
# Issue 4 benchmark: rule evaluation over an M4 Max-sized store (16 cores,
# 20 containers, 10 trading operations, 15 minutes of 1 s samples).
#
# 1. `cargo bench --bench rules`: one evaluation cycle of the shipped rules against the
#    sample ring, 280 steady-state cycles; goal: median < 5 ms.
# 2. Anchor: the same host shape as a promtool unit-test file (901 evaluations at 1 s
#    steps over the 15 minutes), run by `promtool test rules` and by
#    `m4watch test-rules` (release build); wall time of each, best of N runs.
#
# Usage: scripts/bench-rules.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
echo "machine: $(uname -srm), $(nproc) CPUs, $(date -u +%F)"
cargo bench --locked --bench rules 2>/dev/null | grep '^rules='

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --locked --release -q
# A private copy: a shared CARGO_TARGET_DIR may be rebuilt by someone else meanwhile.
cp "${CARGO_TARGET_DIR:-target}/release/m4watch" "$dir/m4watch"
bin=$dir/m4watch
python3 - "$dir/host.test.yml" "$PWD" <<'PY'
import sys
out, root = sys.argv[1], sys.argv[2]
S = []
def s(name, labels, values):
    l = ",".join(f'{k}="{v}"' for k, v in labels.items())
    S.append((f"{name}{{{l}}}" if l else name, values))
N = 900
for cpu in range(16):
    ty = "efficiency" if cpu < 4 else "performance"
    s("m4watch_cpu_utilization_ratio", {"cpu": cpu, "type": ty}, f"0.5x{N}")
    for mode in ["user", "system", "idle", "nice", "iowait", "irq", "softirq", "steal"]:
        s("m4watch_cpu_seconds_total", {"cpu": cpu, "mode": mode}, f"0+0.1x{N}")
for ty in ["performance", "efficiency"]:
    s("m4watch_cpu_cluster_utilization_ratio", {"type": ty}, f"0.5x{N}")
for st in ["used", "available", "swap_used", "swap_total"]:
    s(f"m4watch_memory_{st}_bytes", {}, f"40e9x{N}")
for st in ["app", "wired", "compressed", "cached", "free"]:
    s("m4watch_memory_partition_bytes", {"state": st}, f"20e9x{N}")
s("m4watch_memory_total_bytes", {}, f"128e9x{N}")
for i, st in enumerate(["nominal", "fair", "serious", "critical"]):
    s("m4watch_thermal_pressure", {"state": st}, f"{1 if i == 0 else 0}x{N}")
s("m4watch_gpu_utilization_ratio", {}, f"0.5x{N}")
s("m4watch_ane_utilization_estimate_ratio", {}, f"0.5x{N}")
for c in ["hardware", "process", "docker", "trading"]:
    s("m4watch_collector_success", {"collector": c}, f"1x{N}")
for g in ["m4watch-hardware", "m4watch-containers", "m4watch-trading", "m4watch-exporter"]:
    s("m4watch_rule_evaluation_failures_total", {"group": g}, f"0x{N}")
for n in range(20):
    name = {"name": f"service-{n}"}
    s("m4watch_container_up", name, f"1x{N}")
    s("m4watch_container_restarts_total", name, f"0x{N}")
    s("m4watch_container_oom_kills_total", name, f"0x{N}")
    s("m4watch_container_memory_working_set_bytes", name, f"1e9x{N}")
    s("m4watch_container_memory_limit_bytes", name, f"4e9x{N}")
    s("m4watch_container_cpu_throttled_seconds_total", name, f"0+0.01x{N}")
    s("m4watch_container_cpu_usage_seconds_total", name, f"0+0.5x{N}")
    for st in ["healthy", "unhealthy", "starting", "none"]:
        s("m4watch_container_health_status", dict(name, status=st), f"{1 if st == 'healthy' else 0}x{N}")
ops = ["order_execution", "market_data", "risk_calculation", "ml_inference", "position_update",
       "order_cancel", "quote_update", "pnl_calculation", "hedge", "settlement"]
for op in ops:
    for w in ["1m", "5m"]:
        for q in ["0.5", "0.95", "0.99", "0.999"]:
            s("m4watch_trading_latency_quantile_seconds", {"operation": op, "window": w, "quantile": q}, f"0.0005x{N}")
    for le in range(20):
        s("m4watch_trading_latency_seconds_bucket", {"operation": op, "le": 25e-6 * 2 ** le}, f"0+{le + 1}x{N}")
s("m4watch_performance_score", {}, f"90x{N}")
with open(out, "w") as f:
    f.write("rule_files:\n")
    for r in ["hardware", "containers", "trading", "exporter"]:
        f.write(f"  - {root}/alert-rules/{r}.rules.yml\n")
    f.write("evaluation_interval: 1s\ntests:\n  - interval: 1s\n    input_series:\n")
    for name, values in S:
        f.write(f"      - series: '{name}'\n        values: '{values}'\n")
    f.write("    alert_rule_test:\n      - eval_time: 15m\n        alertname: GpuBusy\n        exp_alerts: []\n")
print(f"anchor file: {len(S)} series x {N + 1} samples, 901 evaluations", file=sys.stderr)
PY
best() {
  local b=
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null
    e=$(date +%s.%N)
    b=$(python3 -c "print(min(float('${b:-1e9}'), $e - $s))")
  done
  echo "$b"
}
p=$(best promtool test rules "$dir/host.test.yml")
m=$(best "$bin" test-rules "$dir/host.test.yml")
python3 -c "print(f'anchor: promtool_s={$p:.2f} m4watch_s={$m:.2f} promtool/m4watch={$p/$m:.1f}x (best of $runs, 901 evaluations each)')"
