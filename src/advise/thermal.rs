//! Thermal pressure above nominal for most of the window.

use super::types::{Out, Recommendation, Severity, ev};
use super::window::window_mean;
use super::{Check, Ctx, THERMAL_PRESSURE_SUSTAINED};
use crate::collect::hardware::THERMAL_PRESSURE;

pub(super) const CHECK: Check = Check {
    kinds: &[THERMAL_PRESSURE_SUSTAINED],
    reads: &[THERMAL_PRESSURE.name],
    run: thermal,
};

fn thermal(cx: &Ctx<'_>, out: &mut Out) {
    const K: &str = THERMAL_PRESSURE_SUSTAINED;
    let (inp, window_ms, over) = (cx.inp, cx.window_ms, cx.over);
    let name = THERMAL_PRESSURE.name;
    if inp.families.samples(name).next().is_none() {
        return out.skip(K, "the host reports no thermal pressure");
    }
    let Some(ring) = cx.ring() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advise::testutil::*;

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
}
