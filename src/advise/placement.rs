//! A latency-critical container whose cpuset lets it run on efficiency cores, and
//! when container cpusets cannot be compared with the host's cores at all.

use std::collections::BTreeSet;

use super::cpuset::{format_cpuset, parse_cpuset};
use super::types::{Out, Recommendation, Severity, ev};
use super::{Check, Ctx, LATENCY_CRITICAL_ON_E_CORES, TIER_LATENCY_CRITICAL};

/// Whether a container's cpuset names this host's cores. On macOS, Docker Desktop
/// runs containers in a Linux VM: a cpuset names the VM's vCPUs, which the
/// hypervisor schedules on any core, so P/E placement cannot be read (or set) from
/// a cpuset there. A replayed recording's cores are not this host's either.
pub(crate) fn cpuset_caveat(hardware: &crate::config::HardwareConfig) -> Option<&'static str> {
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

/// Reads only the current families and the container report: nothing from the ring.
pub(super) const CHECK: Check = Check {
    kinds: &[LATENCY_CRITICAL_ON_E_CORES],
    reads: &[],
    run: latency_critical_placement,
};

fn latency_critical_placement(cx: &Ctx<'_>, out: &mut Out) {
    const K: &str = LATENCY_CRITICAL_ON_E_CORES;
    let (inp, e_cores, p_cores) = (cx.inp, cx.e_cores, cx.p_cores);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::testutil::*;

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
}
