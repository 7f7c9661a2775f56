//! Fixtures the checks' tests share: a 4-CPU topology, a ring, the config, a
//! container, and [`run`], which advises on them.

pub(super) use crate::config::AdviceConfig;
pub(super) use crate::store::Family;
pub(super) use crate::store::index::Families;
pub(super) use crate::store::index::family as fam;
pub(super) use crate::store::ring::Ring;
pub(super) use crate::store::views::containers::{ContainerSample, Report};
pub(super) use crate::store::views::trading::View;

pub(super) use super::*;

/// 4 CPUs: 0-1 efficiency, 2-3 performance.
pub(super) fn topology() -> Vec<Family> {
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

/// A ring holding `families` at every second of the last 10 s, keeping only what the
/// daemon keeps for the advisor: the series the checks declare ([`ring_reads`]).
pub(super) fn ring_of(families: &[Family], now_ms: i64) -> Ring {
    let mut r = Ring::new(0);
    r.set_filter(Some(crate::store::ring::Filter {
        reach: ring_reads(&cfg())
            .into_iter()
            .map(|(n, w)| (n.to_string(), w.as_millis() as i64))
            .collect(),
        families: Default::default(),
        keep: Box::new(|_| true),
    }));
    for i in (0..=10).rev() {
        r.append_families(families, now_ms - i * 1000);
    }
    r
}

pub(super) fn cfg() -> AdviceConfig {
    AdviceConfig {
        window: crate::config::Dur(std::time::Duration::from_secs(5)),
        ..Default::default()
    }
}

pub(super) fn container(name: &str, tier: Option<&str>, cpuset: Option<&str>) -> ContainerSample {
    ContainerSample {
        name: name.into(),
        up: true,
        tier: tier.map(String::from),
        cpuset: cpuset.map(String::from),
        ..Default::default()
    }
}

pub(super) fn run(
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

pub(super) fn kinds(a: &Advice) -> Vec<&str> {
    a.recommendations.iter().map(|r| r.kind).collect()
}
