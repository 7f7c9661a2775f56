//! Recommendations (`GET /api/v1/monitoring/performance/optimizations`): what a
//! person could change, with the numbers and series that show why.
//!
//! [`advise`] is a pure function of what m4watch already holds: the current
//! families, the rule engine's sample ring (for conditions that must hold over
//! `advice.window`), the container collector's report and the trading view. A check
//! whose inputs are unknown is listed under `skipped` with the reason, never guessed.
//! m4watch only advises: nothing here (or anywhere) changes affinity, updates or
//! stops a container.

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

use crate::collect::containers::CONTAINER_CPU_THROTTLED_SECONDS_TOTAL;
use crate::collect::containers::Report;
use crate::collect::hardware::apple::{GPU_UTILIZATION_RATIO, MEMORY_PRESSURE_LEVEL};
use crate::collect::hardware::{
    CPU_CLUSTER_UTILIZATION_RATIO, CPU_INFO, MEMORY_PRESSURE_RATIO, THERMAL_PRESSURE,
};
use crate::collect::trading::View;
use crate::config::AdviceConfig;
use crate::model::{MetricDef, def};
use crate::store::index::{Families, label};
use crate::store::ring::{Ring, is_stale};

/// How urgent a recommendation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One number behind a recommendation, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Evidence {
    /// The series (PromQL selector) or field the value was read from.
    pub series: String,
    pub value: f64,
    /// `ratio`, `seconds`, `bytes`, `seconds_per_second`, `cpus`.
    pub unit: &'static str,
    /// What the value is: `mean over 5m`, `current`, `target`.
    pub note: String,
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Recommendation {
    /// Stable id of the check: see [`KINDS`].
    pub kind: &'static str,
    pub severity: Severity,
    /// What it is about: a container name, a core type, the host.
    pub subject: String,
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// What a person should do; m4watch does none of it.
    pub action: String,
}

/// A check that could not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Skipped {
    pub kind: &'static str,
    pub reason: String,
}

/// Body of `GET /api/v1/monitoring/performance/optimizations`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Advice {
    /// Unix seconds.
    pub generated_at: f64,
    /// Worst first.
    pub recommendations: Vec<Recommendation>,
    pub skipped: Vec<Skipped>,
}

/// Every kind of recommendation.
pub const KINDS: &[&str] = &[
    LATENCY_CRITICAL_ON_E_CORES,
    E_CORES_SATURATED,
    P_CORES_SATURATED,
    CONTAINER_NEAR_MEMORY_LIMIT,
    CONTAINER_CPU_THROTTLED,
    THERMAL_PRESSURE_SUSTAINED,
    GPU_IDLE_ML_SLOW,
    MEMORY_PRESSURE,
];

pub const LATENCY_CRITICAL_ON_E_CORES: &str = "latency_critical_container_on_efficiency_cores";
pub const E_CORES_SATURATED: &str = "efficiency_cores_saturated_performance_idle";
pub const P_CORES_SATURATED: &str = "performance_cores_saturated_efficiency_idle";
pub const CONTAINER_NEAR_MEMORY_LIMIT: &str = "container_near_memory_limit";
pub const CONTAINER_CPU_THROTTLED: &str = "container_cpu_throttled";
pub const THERMAL_PRESSURE_SUSTAINED: &str = "thermal_pressure_sustained";
pub const GPU_IDLE_ML_SLOW: &str = "gpu_idle_while_ml_inference_misses_target";
pub const MEMORY_PRESSURE: &str = "memory_pressure";

/// The container label that marks a latency-critical container.
pub const TIER_LATENCY_CRITICAL: &str = "latency-critical";

/// What [`advise`] reads.
pub struct Inputs<'a> {
    pub now_ms: i64,
    pub families: &'a Families,
    /// The rule engine's sample ring; `None` when the rule engine is off.
    pub ring: Option<&'a Ring>,
    /// The container collector's last report; `None` when off or not read yet.
    pub containers: Option<&'a Report>,
    /// The trading view; `None` when trading is off.
    pub trading: Option<&'a View>,
    /// `trading.score.ml`'s target, in seconds.
    pub ml_target_seconds: Option<f64>,
    pub config: &'a AdviceConfig,
    /// Why container cpusets cannot be compared with the host's cores, if they
    /// cannot (Docker Desktop's VM on a Mac; a replayed recording).
    pub cpusets_not_host_cpus: Option<&'static str>,
}

/// Parses a Docker cpuset (`0-3,8,10-11`) into CPU numbers.
pub fn parse_cpuset(s: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out)
}

/// Writes CPU numbers as a cpuset (`0-3,8`).
pub fn format_cpuset(cpus: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().expect("peeked");
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// Mean of the samples of the series `name` whose labels include `want`, over the
/// last `window_ms` — only when the ring covers at least 90% of the window.
pub fn window_mean(
    ring: &Ring,
    name: &str,
    want: &[(&str, &str)],
    now_ms: i64,
    window_ms: i64,
) -> Option<f64> {
    let from = now_ms - window_ms;
    let mut sum = 0.0;
    let mut n = 0u32;
    let mut earliest = i64::MAX;
    for s in ring.named(name) {
        if !want.iter().all(|(k, v)| s.label(k) == *v) {
            continue;
        }
        for &(t, v) in s.range(from, now_ms) {
            if is_stale(v) || v.is_nan() {
                continue;
            }
            earliest = earliest.min(t);
            sum += v;
            n += 1;
        }
    }
    (n > 0 && earliest <= from + window_ms / 10).then(|| sum / f64::from(n))
}

/// Per-second increase of a counter series over the window (resets ignored:
/// increases only), with the same coverage rule as [`window_mean`].
fn window_rate(
    ring: &Ring,
    name: &str,
    want: &[(&str, &str)],
    now_ms: i64,
    window_ms: i64,
) -> Option<f64> {
    let from = now_ms - window_ms;
    let s = ring
        .named(name)
        .find(|s| want.iter().all(|(k, v)| s.label(k) == *v))?;
    let pts: Vec<(i64, f64)> = s
        .range(from, now_ms)
        .iter()
        .copied()
        .filter(|(_, v)| !is_stale(*v) && !v.is_nan())
        .collect();
    let (first, last) = (pts.first()?, pts.last()?);
    if first.0 > from + window_ms / 10 || last.0 <= first.0 {
        return None;
    }
    let inc: f64 = pts.windows(2).map(|w| (w[1].1 - w[0].1).max(0.0)).sum();
    Some(inc / ((last.0 - first.0) as f64 / 1000.0))
}

fn ev(
    series: impl Into<String>,
    value: f64,
    unit: &'static str,
    note: impl Into<String>,
) -> Evidence {
    Evidence {
        series: series.into(),
        value,
        unit,
        note: note.into(),
    }
}

struct Out {
    recs: Vec<Recommendation>,
    skipped: Vec<Skipped>,
}

impl Out {
    fn skip(&mut self, kind: &'static str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            kind,
            reason: reason.into(),
        });
    }
}

/// Works out every recommendation from `inp`.
pub fn advise(inp: &Inputs<'_>) -> Advice {
    let mut out = Out {
        recs: Vec::new(),
        skipped: Vec::new(),
    };
    let window = inp.config.window;
    let window_ms = window.get().as_millis() as i64;
    let over = format!("mean over {window}");

    // Topology: which CPUs are of which type.
    let mut e_cores = BTreeSet::new();
    let mut p_cores = BTreeSet::new();
    for (l, _) in inp.families.samples(CPU_INFO.name) {
        let Some(cpu) = label(l, "cpu").and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        match label(l, "type") {
            Some("efficiency") => e_cores.insert(cpu),
            Some("performance") => p_cores.insert(cpu),
            _ => false,
        };
    }

    latency_critical_placement(inp, &e_cores, &p_cores, &mut out);
    core_balance(inp, &e_cores, window_ms, &over, &mut out);
    containers(inp, window_ms, &over, &mut out);
    thermal(inp, window_ms, &over, &mut out);
    gpu_ml(inp, window_ms, &over, &mut out);
    memory_pressure(inp, window_ms, &over, &mut out);

    out.recs
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(b.kind)));
    Advice {
        generated_at: inp.now_ms as f64 / 1000.0,
        recommendations: out.recs,
        skipped: out.skipped,
    }
}

fn latency_critical_placement(
    inp: &Inputs<'_>,
    e_cores: &BTreeSet<u32>,
    p_cores: &BTreeSet<u32>,
    out: &mut Out,
) {
    const K: &str = LATENCY_CRITICAL_ON_E_CORES;
    let Some(report) = inp.containers else {
        return out.skip(
            K,
            "no container report (collector off, or Docker not read yet)",
        );
    };
    if let Some(why) = inp.cpusets_not_host_cpus {
        return out.skip(K, why);
    }
    if e_cores.is_empty() || p_cores.is_empty() {
        return out.skip(
            K,
            "the host's topology has no performance/efficiency split (m4watch_cpu_info)",
        );
    }
    let p_list = format_cpuset(p_cores);
    for c in report.containers.iter().filter(|c| c.up) {
        if c.tier.as_deref() != Some(TIER_LATENCY_CRITICAL) {
            continue;
        }
        let selector = format!("m4watch_container_info{{name=\"{}\"}}", c.name);
        let action = format!(
            "pin it to performance cores: docker update --cpuset-cpus={p_list} {} (and set the same cpuset in its compose file)",
            c.name
        );
        match c.cpuset.as_deref().filter(|s| !s.trim().is_empty()) {
            None => out.recs.push(Recommendation {
                kind: K,
                severity: Severity::Warning,
                subject: c.name.clone(),
                summary: format!(
                    "latency-critical container {} has no cpuset, so the scheduler may run it on any of {} efficiency cores",
                    c.name,
                    e_cores.len()
                ),
                evidence: vec![ev(
                    format!("{selector} cpuset"),
                    0.0,
                    "cpus",
                    "no cpuset: every CPU allowed",
                )],
                action,
            }),
            Some(set) => {
                let Some(cpus) = parse_cpuset(set) else {
                    out.skip(K, format!("container {}: cannot read cpuset {set:?}", c.name));
                    continue;
                };
                let on_e: BTreeSet<u32> = cpus.intersection(e_cores).copied().collect();
                if on_e.is_empty() {
                    continue;
                }
                out.recs.push(Recommendation {
                    kind: K,
                    severity: Severity::Critical,
                    subject: c.name.clone(),
                    summary: format!(
                        "latency-critical container {} may run on efficiency cores {} (cpuset {set})",
                        c.name,
                        format_cpuset(&on_e)
                    ),
                    evidence: vec![
                        ev(
                            format!("{selector} cpuset={set:?}"),
                            on_e.len() as f64,
                            "cpus",
                            format!("efficiency cores in the cpuset: {}", format_cpuset(&on_e)),
                        ),
                        ev(
                            "m4watch_cpu_info{type=\"efficiency\"}",
                            e_cores.len() as f64,
                            "cpus",
                            format!("efficiency cores: {}", format_cpuset(e_cores)),
                        ),
                    ],
                    action,
                });
            }
        }
    }
}

fn core_balance(
    inp: &Inputs<'_>,
    e_cores: &BTreeSet<u32>,
    window_ms: i64,
    over: &str,
    out: &mut Out,
) {
    let name = CPU_CLUSTER_UTILIZATION_RATIO.name;
    let kinds = [E_CORES_SATURATED, P_CORES_SATURATED];
    let Some(ring) = inp.ring else {
        for k in kinds {
            out.skip(
                k,
                "needs the rule engine's sample ring (rules.enabled: false)",
            );
        }
        return;
    };
    if e_cores.is_empty() {
        for k in kinds {
            out.skip(k, "the host has no efficiency cores");
        }
        return;
    }
    let e = window_mean(ring, name, &[("type", "efficiency")], inp.now_ms, window_ms);
    let p = window_mean(
        ring,
        name,
        &[("type", "performance")],
        inp.now_ms,
        window_ms,
    );
    let (Some(e), Some(p)) = (e, p) else {
        for k in kinds {
            out.skip(
                k,
                format!("less than {} of CPU history so far", inp.config.window),
            );
        }
        return;
    };
    let (sat, idle) = (inp.config.saturated_ratio, inp.config.idle_ratio);
    let evidence = || {
        vec![
            ev(format!("{name}{{type=\"efficiency\"}}"), e, "ratio", over),
            ev(format!("{name}{{type=\"performance\"}}"), p, "ratio", over),
        ]
    };
    if e >= sat && p <= idle {
        out.recs.push(Recommendation {
            kind: E_CORES_SATURATED,
            severity: Severity::Warning,
            subject: "efficiency cores".into(),
            summary: format!(
                "efficiency cores are {:.0}% busy while performance cores are {:.0}% busy",
                e * 100.0,
                p * 100.0
            ),
            evidence: evidence(),
            action: "move CPU-heavy work to performance cores: check cpusets and QoS classes \
                     (on macOS, background QoS keeps threads on efficiency cores)"
                .into(),
        });
    }
    if p >= sat && e <= idle {
        out.recs.push(Recommendation {
            kind: P_CORES_SATURATED,
            severity: Severity::Warning,
            subject: "performance cores".into(),
            summary: format!(
                "performance cores are {:.0}% busy while efficiency cores are {:.0}% busy",
                p * 100.0,
                e * 100.0
            ),
            evidence: evidence(),
            action: "move background work (batch, logging, analytics) to efficiency cores so \
                     latency-critical work keeps the performance cores"
                .into(),
        });
    }
}

fn containers(inp: &Inputs<'_>, window_ms: i64, over: &str, out: &mut Out) {
    let Some(report) = inp.containers else {
        out.skip(
            CONTAINER_NEAR_MEMORY_LIMIT,
            "no container report (collector off, or Docker not read yet)",
        );
        out.skip(
            CONTAINER_CPU_THROTTLED,
            "no container report (collector off, or Docker not read yet)",
        );
        return;
    };
    for c in report.containers.iter().filter(|c| c.up) {
        if let (Some(ws), Some(limit)) = (c.memory_working_set_bytes, c.memory_limit_bytes)
            && limit > 0
        {
            let ratio = ws as f64 / limit as f64;
            if ratio >= inp.config.memory_limit_ratio {
                out.recs.push(Recommendation {
                    kind: CONTAINER_NEAR_MEMORY_LIMIT,
                    severity: if ratio >= 0.97 {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    subject: c.name.clone(),
                    summary: format!(
                        "container {} uses {:.0}% of its memory limit; at 100% the kernel OOM-kills it",
                        c.name,
                        ratio * 100.0
                    ),
                    evidence: vec![
                        ev(
                            format!("m4watch_container_memory_working_set_bytes{{name=\"{}\"}}", c.name),
                            ws as f64,
                            "bytes",
                            "current",
                        ),
                        ev(
                            format!("m4watch_container_memory_limit_bytes{{name=\"{}\"}}", c.name),
                            limit as f64,
                            "bytes",
                            "current",
                        ),
                    ],
                    action: format!(
                        "raise its limit (docker update --memory=... {}) or find what grows",
                        c.name
                    ),
                });
            }
        }
        let Some(ring) = inp.ring else { continue };
        let series = CONTAINER_CPU_THROTTLED_SECONDS_TOTAL.name;
        if let Some(rate) = window_rate(ring, series, &[("name", &c.name)], inp.now_ms, window_ms)
            && rate >= inp.config.throttled_seconds_per_second
        {
            let mut evidence = vec![ev(
                format!("rate({series}{{name=\"{}\"}})", c.name),
                rate,
                "seconds_per_second",
                over,
            )];
            if let Some(l) = c.cpu_limit_cores {
                evidence.push(ev(
                    format!("m4watch_container_cpu_limit_cores{{name=\"{}\"}}", c.name),
                    l,
                    "cpus",
                    "current",
                ));
            }
            out.recs.push(Recommendation {
                kind: CONTAINER_CPU_THROTTLED,
                severity: if c.tier.as_deref() == Some(TIER_LATENCY_CRITICAL) {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                subject: c.name.clone(),
                summary: format!(
                    "container {} is CPU-throttled {:.2} s per second by its CPU limit",
                    c.name, rate
                ),
                evidence,
                action: format!(
                    "raise its CPU limit (docker update --cpus=... {}) or reduce its load",
                    c.name
                ),
            });
        }
    }
    if inp.ring.is_none() {
        out.skip(
            CONTAINER_CPU_THROTTLED,
            "needs the rule engine's sample ring (rules.enabled: false)",
        );
    }
}

fn thermal(inp: &Inputs<'_>, window_ms: i64, over: &str, out: &mut Out) {
    const K: &str = THERMAL_PRESSURE_SUSTAINED;
    let name = THERMAL_PRESSURE.name;
    if inp.families.samples(name).next().is_none() {
        return out.skip(K, "the host reports no thermal pressure");
    }
    let Some(ring) = inp.ring else {
        return out.skip(
            K,
            "needs the rule engine's sample ring (rules.enabled: false)",
        );
    };
    let Some(nominal) = window_mean(ring, name, &[("state", "nominal")], inp.now_ms, window_ms)
    else {
        return out.skip(
            K,
            format!("less than {} of thermal history so far", inp.config.window),
        );
    };
    // Sustained: out of nominal for at least 80% of the window.
    if nominal > 0.2 {
        return;
    }
    let now = inp.families.state(name, "state").unwrap_or_default();
    let hot = matches!(now.as_str(), "serious" | "critical");
    out.recs.push(Recommendation {
        kind: K,
        severity: if hot { Severity::Critical } else { Severity::Warning },
        subject: "host".into(),
        summary: format!(
            "thermal pressure has been above nominal for {:.0}% of the last {} (now {now}); the chip lowers its clocks",
            (1.0 - nominal) * 100.0,
            inp.config.window
        ),
        evidence: vec![ev(
            format!("{name}{{state=\"nominal\"}}"),
            nominal,
            "ratio",
            format!("{over} (share of time nominal)"),
        )],
        action: "check airflow and ambient temperature, and move heavy batch work (GPU, ML \
                 training) off the trading host or out of trading hours"
            .into(),
    });
}

fn gpu_ml(inp: &Inputs<'_>, window_ms: i64, over: &str, out: &mut Out) {
    const K: &str = GPU_IDLE_ML_SLOW;
    let gpu = GPU_UTILIZATION_RATIO.name;
    if inp.families.samples(gpu).next().is_none() {
        return out.skip(K, "the host reports no GPU utilisation");
    }
    let (Some(view), Some(target)) = (inp.trading, inp.ml_target_seconds) else {
        return out.skip(K, "trading is off");
    };
    let Some(ml) = view
        .score
        .components
        .iter()
        .find(|c| c.component == "ml")
        .and_then(|c| c.observed)
    else {
        return out.skip(K, "no ML inference latency recorded in the score window");
    };
    let Some(ring) = inp.ring else {
        return out.skip(
            K,
            "needs the rule engine's sample ring (rules.enabled: false)",
        );
    };
    let Some(util) = window_mean(ring, gpu, &[], inp.now_ms, window_ms) else {
        return out.skip(
            K,
            format!("less than {} of GPU history so far", inp.config.window),
        );
    };
    if ml > target && util <= inp.config.gpu_idle_ratio {
        out.recs.push(Recommendation {
            kind: K,
            severity: Severity::Warning,
            subject: "ML inference".into(),
            summary: format!(
                "ML inference takes {:.2} ms against a {:.2} ms target while the GPU is {:.0}% busy",
                ml * 1e3,
                target * 1e3,
                util * 100.0
            ),
            evidence: vec![
                ev(
                    "m4watch_performance_component_score{component=\"ml\"} observed",
                    ml,
                    "seconds",
                    "score window quantile",
                ),
                ev("trading.score.ml.target", target, "seconds", "target"),
                ev(gpu, util, "ratio", over),
            ],
            action: "run inference on the GPU (Metal Performance Shaders / MLX) or the Neural \
                     Engine (Core ML) instead of the CPU"
                .into(),
        });
    }
}

fn memory_pressure(inp: &Inputs<'_>, window_ms: i64, over: &str, out: &mut Out) {
    const K: &str = MEMORY_PRESSURE;
    let Some(ring) = inp.ring else {
        return out.skip(
            K,
            "needs the rule engine's sample ring (rules.enabled: false)",
        );
    };
    let action = "find the largest consumers (containers' working sets, the trading engines) \
                  and reduce them or add memory; swapping adds latency to everything";
    if inp
        .families
        .samples(MEMORY_PRESSURE_LEVEL.name)
        .next()
        .is_some()
    {
        // macOS: the kernel's level. Sustained: not normal for 80% of the window.
        let name = MEMORY_PRESSURE_LEVEL.name;
        let Some(normal) = window_mean(ring, name, &[("level", "normal")], inp.now_ms, window_ms)
        else {
            return out.skip(
                K,
                format!("less than {} of memory history so far", inp.config.window),
            );
        };
        if normal <= 0.2 {
            let now = inp.families.state(name, "level").unwrap_or_default();
            out.recs.push(Recommendation {
                kind: K,
                severity: if now == "critical" {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                subject: "host".into(),
                summary: format!(
                    "memory pressure has been above normal for {:.0}% of the last {} (now {now})",
                    (1.0 - normal) * 100.0,
                    inp.config.window
                ),
                evidence: vec![ev(
                    format!("{name}{{level=\"normal\"}}"),
                    normal,
                    "ratio",
                    format!("{over} (share of time normal)"),
                )],
                action: action.into(),
            });
        }
        return;
    }
    let name = MEMORY_PRESSURE_RATIO.name;
    if inp.families.samples(name).next().is_none() {
        return out.skip(K, "the host reports no memory pressure");
    }
    let Some(psi) = window_mean(ring, name, &[("window", "10s")], inp.now_ms, window_ms) else {
        return out.skip(
            K,
            format!("less than {} of memory history so far", inp.config.window),
        );
    };
    if psi >= inp.config.memory_pressure_ratio {
        out.recs.push(Recommendation {
            kind: K,
            severity: if psi >= 0.5 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            subject: "host".into(),
            summary: format!(
                "tasks stalled on memory {:.0}% of the time over the last {}",
                psi * 100.0,
                inp.config.window
            ),
            evidence: vec![ev(format!("{name}{{window=\"10s\"}}"), psi, "ratio", over)],
            action: action.into(),
        });
    }
}

/// Recommendation counts per kind for `m4watch_recommendations`; skipped kinds are
/// absent (unknown), the others present, 0 when nothing is recommended.
pub fn families(advice: &Advice) -> Vec<crate::store::Family> {
    let mut f = crate::store::Family::new(&RECOMMENDATIONS);
    let skipped: BTreeSet<&str> = advice.skipped.iter().map(|s| s.kind).collect();
    for k in KINDS {
        let n = advice
            .recommendations
            .iter()
            .filter(|r| r.kind == *k)
            .count();
        if n == 0 && skipped.contains(k) {
            continue;
        }
        f.push([("kind", *k)], n as f64);
    }
    vec![f]
}

/// Catalogue of the family this module exports.
pub const RECOMMENDATIONS: MetricDef = def(
    "m4watch_recommendations",
    crate::store::Kind::Gauge,
    &["kind"],
    "Active recommendations per kind (see /api/v1/monitoring/performance/optimizations); absent for a kind whose inputs are unknown.",
);

pub const METRICS: &[crate::model::MetricDef] = &[RECOMMENDATIONS];

/// Everything the recommendations read, held by the daemon.
pub struct Advisor {
    pub store: std::sync::Arc<crate::store::Store>,
    /// Whether the container collector is on (its report comes from the store).
    pub containers: bool,
    pub trading: Option<std::sync::Arc<crate::collect::trading::Trading>>,
    pub config: AdviceConfig,
    /// Whether the store keeps the sample ring (the rule engine is on).
    pub ring: bool,
    /// See [`Inputs::cpusets_not_host_cpus`]; [`cpuset_caveat`] works it out.
    pub cpusets_not_host_cpus: Option<&'static str>,
}

/// Whether a container's cpuset names this host's cores. On macOS, Docker Desktop
/// runs containers in a Linux VM: a cpuset names the VM's vCPUs, which the
/// hypervisor schedules on any core, so P/E placement cannot be read (or set) from
/// a cpuset there. A replayed recording's cores are not this host's either.
pub fn cpuset_caveat(hardware: &crate::config::HardwareConfig) -> Option<&'static str> {
    if hardware.source == crate::config::HardwareSource::Replay {
        return Some("the hardware source is a replayed recording: its cores are not this host's");
    }
    if cfg!(target_os = "macos") {
        return Some(
            "Docker Desktop runs containers in a VM: a cpuset names the VM's CPUs, which macOS schedules on any core",
        );
    }
    None
}

impl Advisor {
    /// The recommendations now.
    pub fn current(&self) -> Advice {
        self.advise_on(&Families::of(self.store.families()))
    }

    /// The recommendations on `families` (the store's, merged by the caller) and the
    /// other inputs as they are now.
    pub fn advise_on(&self, families: &Families) -> Advice {
        let report = self
            .containers
            .then(|| crate::collect::containers::latest(&self.store))
            .flatten();
        let view = self.trading.as_ref().map(|t| t.view());
        let ml_target = self
            .trading
            .as_ref()
            .map(|t| t.config().score.ml.target.get().as_secs_f64());
        let ring = self.store.ring();
        advise(&Inputs {
            now_ms: crate::clock::unix_now_ms(),
            families,
            ring: self.ring.then_some(&*ring),
            containers: report.as_deref(),
            trading: view.as_deref(),
            ml_target_seconds: ml_target,
            config: &self.config,
            cpusets_not_host_cpus: self.cpusets_not_host_cpus,
        })
    }
}

/// What [`advise`] reads from the sample ring: metric names and how far back.
pub fn ring_reads(config: &AdviceConfig) -> Vec<(&'static str, std::time::Duration)> {
    let window = config.window.get();
    vec![
        (CPU_CLUSTER_UTILIZATION_RATIO.name, window),
        (CONTAINER_CPU_THROTTLED_SECONDS_TOTAL.name, window),
    ]
}

/// Publishes `m4watch_recommendations` on the collector schedule.
pub struct AdviceCollector(pub std::sync::Arc<Advisor>);

impl crate::collect::BlockingCollector for AdviceCollector {
    fn name(&self) -> &'static str {
        "advice"
    }

    fn collect(&mut self) -> Result<Vec<crate::store::Family>, crate::collect::CollectError> {
        Ok(families(&self.0.current()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::containers::ContainerSample;
    use crate::store::Family;

    use crate::store::index::family as fam;

    /// 4 CPUs: 0-1 efficiency, 2-3 performance.
    fn topology() -> Vec<Family> {
        let (e, p) = ("efficiency", "performance");
        vec![fam(
            &crate::collect::hardware::CPU_INFO,
            &[
                (&[("cpu", "0"), ("type", e), ("cluster", "E")], 1.0),
                (&[("cpu", "1"), ("type", e), ("cluster", "E")], 1.0),
                (&[("cpu", "2"), ("type", p), ("cluster", "P")], 1.0),
                (&[("cpu", "3"), ("type", p), ("cluster", "P")], 1.0),
            ],
        )]
    }

    /// A ring holding `families` at every second of the last 10 s.
    fn ring_of(families: &[Family], now_ms: i64) -> Ring {
        let mut r = Ring::new(0);
        for i in (0..=10).rev() {
            r.append_families(families, now_ms - i * 1000);
        }
        r
    }

    fn cfg() -> AdviceConfig {
        AdviceConfig {
            window: crate::config::Dur(std::time::Duration::from_secs(5)),
            ..Default::default()
        }
    }

    fn container(name: &str, tier: Option<&str>, cpuset: Option<&str>) -> ContainerSample {
        ContainerSample {
            name: name.into(),
            up: true,
            tier: tier.map(String::from),
            cpuset: cpuset.map(String::from),
            ..Default::default()
        }
    }

    fn run(
        fams: Vec<Family>,
        ring: Option<&Ring>,
        containers: Option<&Report>,
        trading: Option<&View>,
    ) -> Advice {
        let now = 1_000_000;
        let families = Families::of(fams);
        let c = cfg();
        advise(&Inputs {
            now_ms: now,
            families: &families,
            ring,
            containers,
            trading,
            ml_target_seconds: Some(0.005),
            config: &c,
            cpusets_not_host_cpus: None,
        })
    }

    fn kinds(a: &Advice) -> Vec<&str> {
        a.recommendations.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn cpusets_parse_and_format() {
        assert_eq!(
            parse_cpuset("0-2, 5,7-8").unwrap(),
            BTreeSet::from([0, 1, 2, 5, 7, 8])
        );
        assert_eq!(parse_cpuset(""), Some(BTreeSet::new()));
        assert_eq!(parse_cpuset("3-1"), None);
        assert_eq!(parse_cpuset("a"), None);
        assert_eq!(
            format_cpuset(&BTreeSet::from([0, 1, 2, 5, 7, 8])),
            "0-2,5,7-8"
        );
    }

    #[test]
    fn latency_critical_container_on_e_cores() {
        let report = Report {
            containers: vec![
                container("engine", Some("latency-critical"), Some("1-2")),
                container("pinned", Some("latency-critical"), Some("2-3")),
                container("loose", Some("latency-critical"), None),
                container("batch", None, Some("0")),
            ],
            ..Default::default()
        };
        let a = run(topology(), None, Some(&report), None);
        let recs: Vec<&Recommendation> = a
            .recommendations
            .iter()
            .filter(|r| r.kind == LATENCY_CRITICAL_ON_E_CORES)
            .collect();
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(recs[0].subject, "engine");
        assert_eq!(recs[0].severity, Severity::Critical);
        assert!(
            recs[0].summary.contains("efficiency cores 1"),
            "{}",
            recs[0].summary
        );
        assert_eq!(recs[0].evidence[0].value, 1.0);
        assert!(recs[0].action.contains("--cpuset-cpus=2-3 engine"));
        assert_eq!(recs[1].subject, "loose");
        assert_eq!(recs[1].severity, Severity::Warning);
    }

    #[test]
    fn cpusets_that_are_not_host_cpus_skip_the_placement_check() {
        let report = Report {
            containers: vec![container("engine", Some("latency-critical"), Some("0"))],
            ..Default::default()
        };
        let families = Families::of(topology());
        let c = cfg();
        let a = advise(&Inputs {
            now_ms: 1_000_000,
            families: &families,
            ring: None,
            containers: Some(&report),
            trading: None,
            ml_target_seconds: None,
            config: &c,
            cpusets_not_host_cpus: Some("in a VM"),
        });
        assert!(kinds(&a).is_empty(), "{a:?}");
        assert!(
            a.skipped
                .iter()
                .any(|s| s.kind == LATENCY_CRITICAL_ON_E_CORES && s.reason == "in a VM")
        );
        let hw = crate::config::HardwareConfig {
            source: crate::config::HardwareSource::Replay,
            ..Default::default()
        };
        assert!(cpuset_caveat(&hw).is_some());
    }

    #[test]
    fn no_split_topology_skips_the_placement_check() {
        let report = Report {
            containers: vec![container("engine", Some("latency-critical"), Some("0"))],
            ..Default::default()
        };
        let a = run(vec![], None, Some(&report), None);
        assert!(kinds(&a).is_empty());
        assert!(
            a.skipped
                .iter()
                .any(|s| s.kind == LATENCY_CRITICAL_ON_E_CORES)
        );
    }

    fn util(e: f64, p: f64) -> Family {
        fam(
            &crate::collect::hardware::CPU_CLUSTER_UTILIZATION_RATIO,
            &[
                (&[("type", "efficiency")], e),
                (&[("type", "performance")], p),
            ],
        )
    }

    #[test]
    fn saturated_e_cores_with_idle_p_cores_and_the_reverse() {
        let now = 1_000_000;
        let ring = ring_of(&[util(0.95, 0.1)], now);
        let a = run(topology(), Some(&ring), None, None);
        assert_eq!(kinds(&a), [E_CORES_SATURATED]);
        let r = &a.recommendations[0];
        assert!((r.evidence[0].value - 0.95).abs() < 1e-9);
        assert!(r.evidence[0].series.contains("type=\"efficiency\""));

        let ring = ring_of(&[util(0.1, 0.9)], now);
        assert_eq!(
            kinds(&run(topology(), Some(&ring), None, None)),
            [P_CORES_SATURATED]
        );

        // Both busy: nothing to move.
        let ring = ring_of(&[util(0.9, 0.9)], now);
        assert!(kinds(&run(topology(), Some(&ring), None, None)).is_empty());

        // Too little history: skipped, not guessed.
        let mut short = Ring::new(0);
        short.append_families(&[util(0.95, 0.1)], now - 1000);
        let a = run(topology(), Some(&short), None, None);
        assert!(kinds(&a).is_empty());
        assert!(
            a.skipped
                .iter()
                .any(|s| s.kind == E_CORES_SATURATED && s.reason.contains("history"))
        );
    }

    #[test]
    fn container_memory_and_throttling() {
        let now = 1_000_000;
        let mut near = container("api", None, None);
        near.memory_working_set_bytes = Some(95);
        near.memory_limit_bytes = Some(100);
        let mut roomy = container("db", None, None);
        roomy.memory_working_set_bytes = Some(50);
        roomy.memory_limit_bytes = Some(100);
        let mut unlimited = container("cache", None, None);
        unlimited.memory_working_set_bytes = Some(50);
        let report = Report {
            containers: vec![near, roomy, unlimited],
            ..Default::default()
        };
        // api throttled 0.5 s/s over 10 s.
        let mut ring = Ring::new(0);
        for i in 0..=10 {
            let f = fam(
                &crate::collect::containers::CONTAINER_CPU_THROTTLED_SECONDS_TOTAL,
                &[
                    (&[("name", "api")], 0.5 * i as f64),
                    (&[("name", "db")], 0.01 * i as f64),
                ],
            );
            ring.append_families(&[f], now - (10 - i) * 1000);
        }
        let a = run(vec![], Some(&ring), Some(&report), None);
        assert_eq!(
            kinds(&a),
            [CONTAINER_CPU_THROTTLED, CONTAINER_NEAR_MEMORY_LIMIT],
            "{a:?}"
        );
        let t = &a.recommendations[0];
        assert_eq!(t.subject, "api");
        assert!((t.evidence[0].value - 0.5).abs() < 1e-9);
        let m = &a.recommendations[1];
        assert_eq!(m.subject, "api");
        assert_eq!(m.evidence[0].value, 95.0);
    }

    fn thermal_state(state: &str) -> Family {
        let states = ["nominal", "fair", "serious", "critical"];
        let mut f = Family::new(&crate::collect::hardware::THERMAL_PRESSURE);
        for s in states {
            f.push([("state", s)], if s == state { 1.0 } else { 0.0 });
        }
        f
    }

    #[test]
    fn sustained_thermal_pressure() {
        let now = 1_000_000;
        let ring = ring_of(&[thermal_state("serious")], now);
        let a = run(vec![thermal_state("serious")], Some(&ring), None, None);
        assert_eq!(kinds(&a), [THERMAL_PRESSURE_SUSTAINED]);
        assert_eq!(a.recommendations[0].severity, Severity::Critical);
        assert_eq!(a.recommendations[0].evidence[0].value, 0.0);

        let ring = ring_of(&[thermal_state("nominal")], now);
        let a = run(vec![thermal_state("nominal")], Some(&ring), None, None);
        assert!(kinds(&a).is_empty());

        // A Linux host without thermal data: skipped.
        let a = run(vec![], Some(&ring), None, None);
        assert!(
            a.skipped
                .iter()
                .any(|s| s.kind == THERMAL_PRESSURE_SUSTAINED)
        );
    }

    fn view_with_ml(observed: Option<f64>) -> View {
        let mut v = View::default();
        for c in &mut v.score.components {
            if c.component == "ml" {
                c.observed = observed;
            }
        }
        v
    }

    #[test]
    fn idle_gpu_while_ml_inference_is_slow() {
        let now = 1_000_000;
        let gpu = fam(
            &crate::collect::hardware::apple::GPU_UTILIZATION_RATIO,
            &[(&[], 0.02)],
        );
        let ring = ring_of(std::slice::from_ref(&gpu), now);
        let slow = view_with_ml(Some(0.012));
        let a = run(vec![gpu.clone()], Some(&ring), None, Some(&slow));
        assert_eq!(kinds(&a), [GPU_IDLE_ML_SLOW]);
        assert_eq!(a.recommendations[0].evidence[0].value, 0.012);

        let fast = view_with_ml(Some(0.001));
        assert!(kinds(&run(vec![gpu.clone()], Some(&ring), None, Some(&fast))).is_empty());

        let busy = fam(
            &crate::collect::hardware::apple::GPU_UTILIZATION_RATIO,
            &[(&[], 0.8)],
        );
        let busy_ring = ring_of(std::slice::from_ref(&busy), now);
        assert!(kinds(&run(vec![busy], Some(&busy_ring), None, Some(&slow))).is_empty());

        // No GPU metric (Linux): skipped with the reason.
        let a = run(vec![], Some(&ring), None, Some(&slow));
        assert!(
            a.skipped
                .iter()
                .any(|s| s.kind == GPU_IDLE_ML_SLOW && s.reason.contains("no GPU"))
        );
    }

    #[test]
    fn memory_pressure_from_psi_and_from_the_macos_level() {
        let now = 1_000_000;
        let psi = fam(
            &crate::collect::hardware::MEMORY_PRESSURE_RATIO,
            &[(&[("window", "10s")], 0.3), (&[("window", "60s")], 0.2)],
        );
        let ring = ring_of(std::slice::from_ref(&psi), now);
        let a = run(vec![psi], Some(&ring), None, None);
        assert_eq!(kinds(&a), [MEMORY_PRESSURE]);
        assert_eq!(a.recommendations[0].severity, Severity::Warning);

        let calm = fam(
            &crate::collect::hardware::MEMORY_PRESSURE_RATIO,
            &[(&[("window", "10s")], 0.0)],
        );
        let ring = ring_of(std::slice::from_ref(&calm), now);
        assert!(kinds(&run(vec![calm], Some(&ring), None, None)).is_empty());

        let mut level = Family::new(&crate::collect::hardware::apple::MEMORY_PRESSURE_LEVEL);
        for (l, v) in [("normal", 0.0), ("warn", 0.0), ("critical", 1.0)] {
            level.push([("level", l)], v);
        }
        let ring = ring_of(std::slice::from_ref(&level), now);
        let a = run(vec![level], Some(&ring), None, None);
        assert_eq!(kinds(&a), [MEMORY_PRESSURE]);
        assert_eq!(a.recommendations[0].severity, Severity::Critical);
    }

    #[test]
    fn the_gauge_counts_per_kind_and_leaves_skipped_kinds_absent() {
        let report = Report {
            containers: vec![container("engine", Some("latency-critical"), Some("0-3"))],
            ..Default::default()
        };
        let a = run(topology(), None, Some(&report), None);
        let f = &families(&a)[0];
        let get = |k: &str| {
            f.samples
                .iter()
                .find(|s| s.labels.iter().any(|(_, v)| v == k))
                .map(|s| s.value)
        };
        assert_eq!(get(LATENCY_CRITICAL_ON_E_CORES), Some(1.0));
        assert_eq!(get(CONTAINER_NEAR_MEMORY_LIMIT), Some(0.0));
        // No ring: unknown, so absent rather than 0.
        assert_eq!(get(E_CORES_SATURATED), None);
    }
}
