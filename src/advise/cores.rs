//! Efficiency cores saturated while performance cores idle, and the reverse.

use super::types::{Out, Recommendation, Severity, ev};
use super::window::window_mean;
use super::{Check, Ctx, E_CORES_SATURATED, P_CORES_SATURATED};
use crate::collect::hardware::CPU_CLUSTER_UTILIZATION_RATIO;

pub(super) const CHECK: Check = Check {
    kinds: &[E_CORES_SATURATED, P_CORES_SATURATED],
    reads: &[CPU_CLUSTER_UTILIZATION_RATIO.name],
    run: core_balance,
};

fn core_balance(cx: &Ctx<'_>, out: &mut Out) {
    let (inp, e_cores, window_ms, over) = (cx.inp, cx.e_cores, cx.window_ms, cx.over);
    let name = CPU_CLUSTER_UTILIZATION_RATIO.name;
    let kinds = [E_CORES_SATURATED, P_CORES_SATURATED];
    let Some(ring) = cx.ring() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::testutil::*;

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
}
