//! One evaluation cycle of the shipped rules over a store the size of an M4 Max host:
//! 16 cores, 20 containers, 10 trading operations, 15 minutes of 1 s samples.
//! Run with `scripts/bench-rules.sh` (or `cargo bench --bench rules`).

use std::time::Instant;

use m4watch::internals::rules::{Engine, load_embedded};
use m4watch::internals::store::Ring;

const SECONDS: i64 = 15 * 60;

fn labels(name: &str, pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    l.push(("__name__".into(), name.into()));
    l.sort();
    l
}

/// A deterministic wobble in 0..1.
fn wobble(i: usize, t: i64) -> f64 {
    (((i as i64 * 7919 + t * 104_729) % 1000) as f64) / 1000.0
}

/// A series' value at second `t`.
type Gen = Box<dyn Fn(i64) -> f64>;

fn host() -> (Ring, usize) {
    let mut series: Vec<(Vec<(String, String)>, Gen)> = Vec::new();
    for cpu in 0..16usize {
        let ty = if cpu < 4 { "efficiency" } else { "performance" };
        series.push((
            labels(
                "m4watch_cpu_utilization_ratio",
                &[("cpu", cpu.to_string()), ("type", ty.into())],
            ),
            Box::new(move |t| wobble(cpu, t)),
        ));
        for mode in [
            "user", "system", "idle", "nice", "iowait", "irq", "softirq", "steal",
        ] {
            series.push((
                labels(
                    "m4watch_cpu_seconds_total",
                    &[("cpu", cpu.to_string()), ("mode", mode.into())],
                ),
                Box::new(move |t| t as f64 * 0.1),
            ));
        }
    }
    for ty in ["performance", "efficiency"] {
        series.push((
            labels(
                "m4watch_cpu_cluster_utilization_ratio",
                &[("type", ty.into())],
            ),
            Box::new(|t| wobble(99, t)),
        ));
    }
    for (i, name) in [
        "m4watch_memory_used_bytes",
        "m4watch_memory_available_bytes",
        "m4watch_memory_swap_used_bytes",
        "m4watch_memory_swap_total_bytes",
    ]
    .into_iter()
    .enumerate()
    {
        series.push((
            labels(name, &[]),
            Box::new(move |t| 40e9 + 1e9 * wobble(i, t)),
        ));
    }
    for (i, state) in ["app", "wired", "compressed", "cached", "free"]
        .into_iter()
        .enumerate()
    {
        series.push((
            labels("m4watch_memory_partition_bytes", &[("state", state.into())]),
            Box::new(move |t| 20e9 + 1e9 * wobble(i, t)),
        ));
    }
    series.push((
        labels("m4watch_memory_total_bytes", &[]),
        Box::new(|_| 128e9),
    ));
    for (i, state) in ["nominal", "fair", "serious", "critical"]
        .into_iter()
        .enumerate()
    {
        series.push((
            labels("m4watch_thermal_pressure", &[("state", state.into())]),
            Box::new(move |_| if i == 0 { 1.0 } else { 0.0 }),
        ));
    }
    series.push((
        labels("m4watch_gpu_utilization_ratio", &[]),
        Box::new(|t| wobble(5, t)),
    ));
    series.push((
        labels("m4watch_ane_utilization_estimate_ratio", &[]),
        Box::new(|t| wobble(6, t)),
    ));
    for c in ["hardware", "process", "docker", "trading"] {
        series.push((
            labels("m4watch_collector_success", &[("collector", c.into())]),
            Box::new(|_| 1.0),
        ));
    }
    for g in [
        "m4watch-hardware",
        "m4watch-containers",
        "m4watch-trading",
        "m4watch-exporter",
    ] {
        series.push((
            labels(
                "m4watch_rule_evaluation_failures_total",
                &[("group", g.into())],
            ),
            Box::new(|_| 0.0),
        ));
    }
    for n in 0..20usize {
        let name = format!("service-{n}");
        let l = |metric: &str| labels(metric, &[("name", name.clone())]);
        series.push((l("m4watch_container_up"), Box::new(|_| 1.0)));
        series.push((l("m4watch_container_restarts_total"), Box::new(|_| 0.0)));
        series.push((l("m4watch_container_oom_kills_total"), Box::new(|_| 0.0)));
        series.push((
            l("m4watch_container_memory_working_set_bytes"),
            Box::new(move |t| 1e9 * (1.0 + wobble(n, t))),
        ));
        series.push((l("m4watch_container_memory_limit_bytes"), Box::new(|_| 4e9)));
        series.push((
            l("m4watch_container_cpu_throttled_seconds_total"),
            Box::new(|t| t as f64 * 0.01),
        ));
        series.push((
            l("m4watch_container_cpu_usage_seconds_total"),
            Box::new(|t| t as f64 * 0.5),
        ));
        for status in ["healthy", "unhealthy", "starting", "none"] {
            series.push((
                labels(
                    "m4watch_container_health_status",
                    &[("name", name.clone()), ("status", status.into())],
                ),
                Box::new(move |_| if status == "healthy" { 1.0 } else { 0.0 }),
            ));
        }
    }
    let ops = [
        "order_execution",
        "market_data",
        "risk_calculation",
        "ml_inference",
        "position_update",
        "order_cancel",
        "quote_update",
        "pnl_calculation",
        "hedge",
        "settlement",
    ];
    for (i, op) in ops.into_iter().enumerate() {
        for window in ["1m", "5m"] {
            for q in ["0.5", "0.95", "0.99", "0.999"] {
                series.push((
                    labels(
                        "m4watch_trading_latency_quantile_seconds",
                        &[
                            ("operation", op.into()),
                            ("window", window.into()),
                            ("quantile", q.into()),
                        ],
                    ),
                    Box::new(move |t| 0.001 * wobble(i, t)),
                ));
            }
        }
        for le in 0..20 {
            series.push((
                labels(
                    "m4watch_trading_latency_seconds_bucket",
                    &[
                        ("operation", op.into()),
                        ("le", format!("{}", 25e-6 * 2f64.powi(le))),
                    ],
                ),
                Box::new(move |t| (t * (le as i64 + 1)) as f64),
            ));
        }
    }
    series.push((
        labels("m4watch_performance_score", &[]),
        Box::new(|t| 90.0 + wobble(1, t)),
    ));
    let mut ring = Ring::new(0);
    for t in 0..=SECONDS {
        for (l, f) in &series {
            ring.append(l.clone(), t * 1000, f(t));
        }
    }
    (ring, series.len())
}

fn main() {
    let (mut ring, n) = host();
    let groups = load_embedded().expect("shipped rules load");
    let mut engine = Engine::new(groups, 1000);
    let rules = engine.rule_count();
    let mut times = Vec::new();
    for i in 0..300 {
        let t = SECONDS * 1000 + i * 1000;
        let began = Instant::now();
        let cycle = engine.eval(&mut ring, t);
        times.push(began.elapsed().as_secs_f64() * 1000.0);
        assert!(cycle.failures.is_empty(), "{:?}", cycle.failures);
    }
    // The first cycles warm caches; report the steady state.
    let mut steady: Vec<f64> = times[20..].to_vec();
    steady.sort_by(f64::total_cmp);
    let pct = |p: f64| steady[((steady.len() - 1) as f64 * p) as usize];
    println!(
        "rules={rules} series={n} samples={} cycles={} median_ms={:.3} p90_ms={:.3} min_ms={:.3} max_ms={:.3} goal_ms=5",
        n * (SECONDS as usize + 1),
        steady.len(),
        pct(0.5),
        pct(0.9),
        steady[0],
        steady[steady.len() - 1]
    );
}
