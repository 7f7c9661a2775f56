//! Memory pressure: Linux PSI, or the macOS kernel's pressure level.

use super::types::{Out, Recommendation, Severity, ev};
use super::window::window_mean;
use super::{Check, Ctx, MEMORY_PRESSURE};
use crate::collect::hardware::MEMORY_PRESSURE_RATIO;
use crate::collect::hardware::apple::MEMORY_PRESSURE_LEVEL;

pub(super) const CHECK: Check = Check {
    kinds: &[MEMORY_PRESSURE],
    reads: &[MEMORY_PRESSURE_LEVEL.name, MEMORY_PRESSURE_RATIO.name],
    run: memory_pressure,
};

fn memory_pressure(cx: &Ctx<'_>, out: &mut Out) {
    const K: &str = MEMORY_PRESSURE;
    let (inp, window_ms, over) = (cx.inp, cx.window_ms, cx.over);
    let Some(ring) = cx.ring() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::testutil::*;

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
}
