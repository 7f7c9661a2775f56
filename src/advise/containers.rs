//! Containers near their memory limit, and containers throttled by their CPU limit.

use super::types::{Out, Recommendation, Severity, ev};
use super::window::window_rate;
use super::{
    CONTAINER_CPU_THROTTLED, CONTAINER_NEAR_MEMORY_LIMIT, Check, Ctx, TIER_LATENCY_CRITICAL,
};
use crate::collect::containers::CONTAINER_CPU_THROTTLED_SECONDS_TOTAL;

pub(super) const CHECK: Check = Check {
    kinds: &[CONTAINER_NEAR_MEMORY_LIMIT, CONTAINER_CPU_THROTTLED],
    reads: &[CONTAINER_CPU_THROTTLED_SECONDS_TOTAL.name],
    run: containers,
};

fn containers(cx: &Ctx<'_>, out: &mut Out) {
    let (inp, window_ms, over) = (cx.inp, cx.window_ms, cx.over);
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
        let Some(ring) = cx.ring() else { continue };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::testutil::*;

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
}
