//! The weighted performance score of the original description: latency 40% (order
//! execution), risk 20% (risk calculation), ml 20% (ML inference), throughput 20%
//! (market data), with operations, targets, alert thresholds and weights from config.
//!
//! What it means (the README's "Performance score" section has a worked example):
//! - a latency component is 1 at or under its target and falls on one straight line
//!   through 0.5 at its alert threshold (the value the shipped rule alerts on) to 0 at
//!   `2 × alert − target`; so while every latency is under its alert threshold no
//!   component is under 0.5 and the score is at least 50 (never critical);
//! - the throughput component is the share of offered messages the desk handled,
//!   `handled / (handled + dropped)`, so a quiet market with nothing dropped scores 1;
//! - a component without data is no data: it is left out and the other weights are
//!   renormalised; the score is absent when less than `min_coverage` of the configured
//!   weight had data.
//!
//! Pure arithmetic over what the latency windows observed; no I/O.

use crate::config::ScoreConfig;

/// The four components, in export order.
pub(crate) const COMPONENTS: [&str; 4] = ["latency", "risk", "ml", "throughput"];

/// A latency component's score: 1 at or under `target`, 0.5 at `alert`, 0 at
/// `2 × alert − target`, linear between. `alert` must exceed `target`.
pub(crate) fn latency_score(observed: f64, target: f64, alert: f64) -> f64 {
    if observed <= target {
        return 1.0;
    }
    if observed >= 2.0 * alert - target {
        return 0.0;
    }
    (1.0 - 0.5 * (observed - target) / (alert - target)).clamp(0.0, 1.0)
}

/// The throughput component's score: the share of offered messages that were handled.
/// `None` when nothing was offered (no data, not bad performance).
pub(crate) fn throughput_score(handled: f64, dropped: f64) -> Option<f64> {
    let offered = handled + dropped;
    (offered > 0.0).then(|| (handled / offered).clamp(0.0, 1.0))
}

pub(crate) use crate::store::views::trading::{Component, Score};

/// What was observed for each component: a latency quantile in seconds for the first
/// three, the handled and dropped rates per second for throughput; `None` means no
/// data.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Observed {
    pub latency: Option<f64>,
    pub risk: Option<f64>,
    pub ml: Option<f64>,
    /// (handled, dropped) messages per second; `None` when the desk reports no drops.
    pub throughput: Option<(f64, f64)>,
}

/// Scores `observed` against `cfg`. Components without data are left out and the
/// remaining weights renormalised, so a host that runs no ML model is not punished
/// for it; the coverage ratio says how much of the score was measured, and below
/// `cfg.min_coverage` there is no score.
pub(crate) fn compute(cfg: &ScoreConfig, observed: &Observed) -> Score {
    let lat = |t: &crate::config::LatencyTarget, o: Option<f64>| {
        (
            t.weight,
            o,
            o.map(|v| latency_score(v, t.target.get().as_secs_f64(), t.alert.get().as_secs_f64())),
        )
    };
    let parts = [
        lat(&cfg.latency, observed.latency),
        lat(&cfg.risk, observed.risk),
        lat(&cfg.ml, observed.ml),
        (
            cfg.throughput.weight,
            observed.throughput.map(|(handled, _)| handled),
            observed
                .throughput
                .and_then(|(handled, dropped)| throughput_score(handled, dropped)),
        ),
    ];
    let configured: f64 = parts.iter().map(|p| p.0).sum();
    let measured: f64 = parts.iter().filter(|p| p.2.is_some()).map(|p| p.0).sum();
    let coverage = if configured > 0.0 {
        // `+ 0.0`: an empty f64 sum is -0.0, which JSON would show as `-0.0`.
        measured / configured + 0.0
    } else {
        0.0
    };
    let components = COMPONENTS
        .iter()
        .zip(parts)
        .map(|(name, (weight, obs, score))| Component {
            component: name,
            score,
            weight: if score.is_some() && measured > 0.0 {
                weight / measured
            } else {
                0.0
            },
            observed: obs,
        })
        .collect::<Vec<_>>();
    // A tiny tolerance: 0.4 of 1.0 measured must count as 0.4 however it was summed.
    let score = (measured > 0.0 && coverage + 1e-9 >= cfg.min_coverage).then(|| {
        100.0
            * components
                .iter()
                .filter_map(|c| c.score.map(|s| s * c.weight))
                .sum::<f64>()
    });
    Score {
        score,
        coverage_ratio: coverage,
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScoreConfig {
        ScoreConfig::default()
    }

    #[test]
    fn latency_component_edges() {
        // Target 1 ms, alert 10 ms: 0 at 19 ms.
        let (t, a) = (0.001, 0.010);
        assert_eq!(latency_score(0.0, t, a), 1.0);
        assert_eq!(latency_score(0.001, t, a), 1.0, "at target");
        assert!((latency_score(0.0055, t, a) - 0.75).abs() < 1e-12);
        assert!(
            (latency_score(0.010, t, a) - 0.5).abs() < 1e-12,
            "at the alert"
        );
        assert!(latency_score(0.0099, t, a) > 0.5, "under the alert");
        assert_eq!(latency_score(0.019, t, a), 0.0);
        assert_eq!(latency_score(5.0, t, a), 0.0, "far beyond");
    }

    #[test]
    fn throughput_is_the_share_handled_and_a_quiet_market_scores_full() {
        assert_eq!(
            throughput_score(20.0, 0.0),
            Some(1.0),
            "20 msg/s, nothing dropped"
        );
        assert_eq!(throughput_score(50_000.0, 0.0), Some(1.0));
        assert_eq!(throughput_score(75.0, 25.0), Some(0.75));
        assert_eq!(throughput_score(0.0, 10.0), Some(0.0));
        assert_eq!(
            throughput_score(0.0, 0.0),
            None,
            "nothing offered is no data"
        );
    }

    #[test]
    fn a_healthy_desk_scores_100() {
        // The healthy desk: 0.3 ms, 3 ms, 20 ms, 20 messages/s, no drops.
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.0003),
                risk: Some(0.003),
                ml: Some(0.020),
                throughput: Some((20.0, 0.0)),
            },
        );
        assert_eq!(s.score, Some(100.0));
        assert_eq!(s.coverage_ratio, 1.0);
        let w: Vec<f64> = s.components.iter().map(|c| c.weight).collect();
        assert_eq!(w, vec![0.4, 0.2, 0.2, 0.2]);
    }

    #[test]
    fn latencies_under_their_alert_thresholds_never_score_below_50() {
        // Everything just under its shipped alert threshold, the worst non-alerting
        // case: 10 ms, 100 ms and 50 ms are the shipped rules' thresholds.
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.00999),
                risk: Some(0.0999),
                ml: Some(0.0499),
                throughput: None,
            },
        );
        let v = s.score.unwrap();
        assert!((50.0..55.0).contains(&v), "{v}");
    }

    #[test]
    fn weights_apply_per_component() {
        // latency 0.75, risk at its alert (0.5), ml at target (1), 3/4 handled.
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.0055),
                risk: Some(0.100),
                ml: Some(0.02),
                throughput: Some((75.0, 25.0)),
            },
        );
        let expected = 100.0 * (0.4 * 0.75 + 0.2 * 0.5 + 0.2 * 1.0 + 0.2 * 0.75);
        assert!((s.score.unwrap() - expected).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn missing_components_are_left_out_and_weights_renormalised() {
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.0055),        // 0.75
                throughput: Some((1.0, 0.0)), // 1.0
                ..Observed::default()
            },
        );
        // Weights 0.4 and 0.2 of 0.6 measured: 2/3 and 1/3.
        let expected = 100.0 * (0.75 * 2.0 / 3.0 + 1.0 / 3.0);
        assert!((s.score.unwrap() - expected).abs() < 1e-9, "{s:?}");
        assert!((s.coverage_ratio - 0.6).abs() < 1e-12);
        let risk = &s.components[1];
        assert_eq!((risk.score, risk.weight), (None, 0.0));
        let total: f64 = s.components.iter().map(|c| c.weight).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn too_little_coverage_means_no_score() {
        // Throughput alone is 0.2 of the weight, under the default minimum of 0.4.
        let s = compute(
            &cfg(),
            &Observed {
                throughput: Some((0.0, 5.0)),
                ..Observed::default()
            },
        );
        assert_eq!(s.score, None);
        assert!((s.coverage_ratio - 0.2).abs() < 1e-12);
        assert_eq!(s.components[3].score, Some(0.0));
        // Order execution alone (0.4) is enough.
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.0003),
                ..Observed::default()
            },
        );
        assert_eq!(s.score, Some(100.0));
    }

    #[test]
    fn no_data_means_no_score() {
        let s = compute(&cfg(), &Observed::default());
        assert_eq!(s.score, None);
        assert_eq!(s.coverage_ratio, 0.0);
        assert!(s.coverage_ratio.is_sign_positive());
        assert!(s.components.iter().all(|c| c.weight == 0.0));
    }

    #[test]
    fn a_zero_weight_component_with_data_counts_for_nothing() {
        let mut c = cfg();
        c.ml.weight = 0.0;
        let s = compute(
            &c,
            &Observed {
                ml: Some(10.0),
                latency: Some(0.0001),
                ..Observed::default()
            },
        );
        assert_eq!(s.score, Some(100.0));
        assert_eq!(s.components[2].score, Some(0.0));
        assert_eq!(s.components[2].weight, 0.0);
    }

    #[test]
    fn only_zero_weight_data_gives_no_score() {
        let mut c = cfg();
        c.ml.weight = 0.0;
        c.min_coverage = 0.0;
        let s = compute(
            &c,
            &Observed {
                ml: Some(0.01),
                ..Observed::default()
            },
        );
        assert_eq!(s.score, None);
    }
}
