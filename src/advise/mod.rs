//! Recommendations (`GET /api/v1/monitoring/performance/optimizations`): what a
//! person could change, with the numbers and series that show why.
//!
//! [`advise`] is a pure function of what m4watch already holds: the current
//! families, the rule engine's sample ring (for conditions that must hold over
//! `advice.window`), the container collector's report and the trading view. A check
//! whose inputs are unknown is listed under `skipped` with the reason, never guessed.
//! m4watch only advises: nothing here (or anywhere) changes affinity, updates or
//! stops a container.

mod containers;
mod cores;
mod cpuset;
mod gpu_ml;
mod memory;
mod placement;
#[cfg(test)]
mod testutil;
mod thermal;
mod types;
mod window;

use std::collections::BTreeSet;

use crate::collect::hardware::CPU_INFO;
use crate::config::AdviceConfig;
use crate::model::{MetricDef, def};
use crate::store::index::{Families, label};
use crate::store::ring::Ring;
use crate::store::views::containers::Report;
use crate::store::views::trading::View;

pub(crate) use placement::cpuset_caveat;
use types::Out;
pub(crate) use types::{Advice, Recommendation};

/// Every kind of recommendation.
pub(crate) const KINDS: &[&str] = &[
    LATENCY_CRITICAL_ON_E_CORES,
    E_CORES_SATURATED,
    P_CORES_SATURATED,
    CONTAINER_NEAR_MEMORY_LIMIT,
    CONTAINER_CPU_THROTTLED,
    THERMAL_PRESSURE_SUSTAINED,
    GPU_IDLE_ML_SLOW,
    MEMORY_PRESSURE,
];

pub(crate) const LATENCY_CRITICAL_ON_E_CORES: &str =
    "latency_critical_container_on_efficiency_cores";
pub(crate) const E_CORES_SATURATED: &str = "efficiency_cores_saturated_performance_idle";
pub(crate) const P_CORES_SATURATED: &str = "performance_cores_saturated_efficiency_idle";
pub(crate) const CONTAINER_NEAR_MEMORY_LIMIT: &str = "container_near_memory_limit";
pub(crate) const CONTAINER_CPU_THROTTLED: &str = "container_cpu_throttled";
pub(crate) const THERMAL_PRESSURE_SUSTAINED: &str = "thermal_pressure_sustained";
pub(crate) const GPU_IDLE_ML_SLOW: &str = "gpu_idle_while_ml_inference_misses_target";
pub(crate) const MEMORY_PRESSURE: &str = "memory_pressure";

/// The container label that marks a latency-critical container.
pub(crate) const TIER_LATENCY_CRITICAL: &str = "latency-critical";

/// What [`advise`] reads.
pub(crate) struct Inputs<'a> {
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

/// One check: the kinds it can recommend, the series it reads from the sample ring,
/// and the function. The daemon keeps exactly the declared series in the ring for
/// `advice.window` ([`ring_reads`]); a check reads the ring only through [`Ctx::ring`],
/// which refuses (in debug builds and every test) a name its check did not declare,
/// so a new check cannot forget to declare what it reads.
struct Check {
    kinds: &'static [&'static str],
    /// Metric names (`__name__`) read from the ring, each over `advice.window`.
    reads: &'static [&'static str],
    run: fn(&Ctx<'_>, &mut Out),
}

/// Every check, in the order they run.
const CHECKS: &[&Check] = &[
    &placement::CHECK,
    &cores::CHECK,
    &containers::CHECK,
    &thermal::CHECK,
    &gpu_ml::CHECK,
    &memory::CHECK,
];

/// What a check works on: the inputs, the host's core types, the window, and the
/// series its [`Check`] declares.
struct Ctx<'a> {
    inp: &'a Inputs<'a>,
    e_cores: &'a BTreeSet<u32>,
    p_cores: &'a BTreeSet<u32>,
    window_ms: i64,
    /// `mean over <window>`, for evidence notes.
    over: &'a str,
    declared: &'static [&'static str],
}

impl<'a> Ctx<'a> {
    /// The sample ring, read only for the series this check declares; `None` when
    /// the rule engine is off.
    fn ring(&self) -> Option<window::Declared<'a>> {
        self.inp.ring.map(|ring| window::Declared {
            ring,
            names: self.declared,
        })
    }
}

/// Works out every recommendation from `inp`.
pub(crate) fn advise(inp: &Inputs<'_>) -> Advice {
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

    for check in CHECKS {
        let ctx = Ctx {
            inp,
            e_cores: &e_cores,
            p_cores: &p_cores,
            window_ms,
            over: &over,
            declared: check.reads,
        };
        let (recs, skipped) = (out.recs.len(), out.skipped.len());
        (check.run)(&ctx, &mut out);
        debug_assert!(
            out.recs[recs..]
                .iter()
                .map(|r| r.kind)
                .chain(out.skipped[skipped..].iter().map(|s| s.kind))
                .all(|k| check.kinds.contains(&k)),
            "a check wrote a kind it does not declare"
        );
    }

    out.recs
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(b.kind)));
    Advice {
        generated_at: inp.now_ms as f64 / 1000.0,
        recommendations: out.recs,
        skipped: out.skipped,
    }
}

/// Recommendation counts per kind for `m4watch_recommendations`; skipped kinds are
/// absent (unknown), the others present, 0 when nothing is recommended.
pub(crate) fn families(advice: &Advice) -> Vec<crate::store::Family> {
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
pub(crate) const RECOMMENDATIONS: MetricDef = def(
    "m4watch_recommendations",
    crate::store::Kind::Gauge,
    &["kind"],
    "Active recommendations per kind (see /api/v1/monitoring/performance/optimizations); absent for a kind whose inputs are unknown.",
);

pub(crate) const METRICS: &[crate::model::MetricDef] = &[RECOMMENDATIONS];

/// Everything the recommendations read, held by the daemon.
pub(crate) struct Advisor {
    pub store: std::sync::Arc<crate::store::Store>,
    /// `trading.score.ml`'s target in seconds; `None` when trading is off. The trading
    /// view and the container report come from the store's views.
    pub ml_target_seconds: Option<f64>,
    pub config: AdviceConfig,
    /// Whether the store keeps the sample ring (the rule engine is on).
    pub ring: bool,
    /// See [`Inputs::cpusets_not_host_cpus`]; [`cpuset_caveat`] works it out.
    pub cpusets_not_host_cpus: Option<&'static str>,
}

impl Advisor {
    /// The recommendations now.
    pub(crate) fn current(&self) -> Advice {
        self.advise_on(&Families::of(self.store.families()))
    }

    /// The recommendations on `families` (the store's, merged by the caller) and the
    /// other inputs as they are now.
    pub(crate) fn advise_on(&self, families: &Families) -> Advice {
        // Each view is absent while its collector is off (or has not run yet).
        let views = self.store.views();
        let report = views.containers.get();
        let view = views.trading.get();
        let ring = self.store.ring();
        advise(&Inputs {
            now_ms: crate::clock::unix_now_ms(),
            families,
            ring: self.ring.then_some(&*ring),
            containers: report.as_deref(),
            trading: view.as_deref(),
            ml_target_seconds: self.ml_target_seconds,
            config: &self.config,
            cpusets_not_host_cpus: self.cpusets_not_host_cpus,
        })
    }
}

/// What [`advise`] reads from the sample ring: every name a [`Check`] declares, each
/// over `advice.window`. The daemon hands this to the rule engine, which keeps these
/// series in the ring (at start and on every rule reload).
pub fn ring_reads(config: &AdviceConfig) -> Vec<(&'static str, std::time::Duration)> {
    let window = config.window.get();
    let names: BTreeSet<&'static str> = CHECKS.iter().flat_map(|c| c.reads).copied().collect();
    names.into_iter().map(|n| (n, window)).collect()
}

/// Publishes `m4watch_recommendations` on the collector schedule.
pub(crate) struct AdviceCollector(pub std::sync::Arc<Advisor>);

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
    use super::testutil::*;
    use crate::collect::containers::CONTAINER_CPU_THROTTLED_SECONDS_TOTAL;
    use crate::collect::hardware::apple::{GPU_UTILIZATION_RATIO, MEMORY_PRESSURE_LEVEL};
    use crate::collect::hardware::{
        CPU_CLUSTER_UTILIZATION_RATIO, MEMORY_PRESSURE_RATIO, THERMAL_PRESSURE,
    };

    #[test]
    fn every_kind_belongs_to_exactly_one_check() {
        let mut declared: Vec<&str> = CHECKS.iter().flat_map(|c| c.kinds).copied().collect();
        declared.sort_unstable();
        let mut kinds = KINDS.to_vec();
        kinds.sort_unstable();
        assert_eq!(declared, kinds);
    }

    /// What each ring-reading check needs, written by hand: if a check stops
    /// declaring one of these, the daemon stops keeping it and this test fails.
    #[test]
    fn every_series_a_check_reads_is_declared() {
        let mut declared: Vec<&str> = ring_reads(&cfg()).into_iter().map(|(n, _)| n).collect();
        declared.sort_unstable();
        let mut read = vec![
            CPU_CLUSTER_UTILIZATION_RATIO.name,
            CONTAINER_CPU_THROTTLED_SECONDS_TOTAL.name,
            THERMAL_PRESSURE.name,
            GPU_UTILIZATION_RATIO.name,
            MEMORY_PRESSURE_LEVEL.name,
            MEMORY_PRESSURE_RATIO.name,
        ];
        read.sort_unstable();
        assert_eq!(declared, read);
        for (_, w) in ring_reads(&cfg()) {
            assert_eq!(w, cfg().window.get());
        }
    }

    /// The ring as the daemon sets it up (the shipped rules and the advisor's reads,
    /// through the rule engine's own filter) keeps every series a check reads for the
    /// whole window: the names only instant selectors of the shipped rules read
    /// (thermal pressure, memory pressure, GPU) were kept for three evaluation
    /// intervals only, so their checks never had a window of history (issue 29).
    #[test]
    fn the_daemons_ring_keeps_every_declared_series_for_the_window() {
        let config = AdviceConfig::default();
        let interval = std::time::Duration::from_secs(1);
        let engine = crate::rules::Engine::new(
            crate::rules::load_embedded().unwrap(),
            interval.as_millis() as i64,
        );
        let filter = crate::alerts::evaluate::ring_filter(&engine, &ring_reads(&config), interval)
            .expect("the shipped rules name their metrics");
        let window = config.window.get().as_millis() as i64;
        for check in CHECKS {
            for name in check.reads {
                let reach = filter.reach.get(*name).copied().unwrap_or(0);
                assert!(
                    reach >= window,
                    "{name} ({:?}) is kept {reach} ms, less than the {window} ms window",
                    check.kinds
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "without declaring it")]
    #[cfg(debug_assertions)]
    fn reading_an_undeclared_series_panics_in_debug_builds() {
        let ring = Ring::new(0);
        let d = super::window::Declared {
            ring: &ring,
            names: &[],
        };
        let _ = d.named(THERMAL_PRESSURE.name).count();
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
