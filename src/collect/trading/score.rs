//! The weighted performance score of the original description: latency 40% (order
//! execution), risk 20% (risk calculation), ml 20% (ML inference), throughput 20%
//! (market data), with operation names, targets, maxima and weights from config.
//!
//! Pure arithmetic over what the latency windows observed; no I/O.

use serde::Serialize;

use crate::config::ScoreConfig;

/// The four components, in export order.
pub const COMPONENTS: [&str; 4] = ["latency", "risk", "ml", "throughput"];

/// A latency component's score: 1 at or under `target`, falling linearly to 0 at `max`.
pub fn latency_score(observed: f64, target: f64, max: f64) -> f64 {
    if observed <= target {
        1.0
    } else if observed >= max {
        0.0
    } else {
        (max - observed) / (max - target)
    }
}

/// The throughput component's score: observed over target, capped at 1.
pub fn throughput_score(observed: f64, target: f64) -> f64 {
    (observed / target).clamp(0.0, 1.0)
}

/// One component: its score when there was data, and the weight it got.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Component {
    pub component: &'static str,
    /// 0..1; absent when the component had no data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The configured weight, renormalised over the components with data (0 for the
    /// ones without).
    pub weight: f64,
    /// The observed quantile in seconds or rate per second it was scored on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
}

/// The whole score.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Score {
    /// 0..100; absent when no component had data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Share (0..1) of the configured weight that had data.
    pub coverage_ratio: f64,
    pub components: Vec<Component>,
}

/// What was observed for each component: a latency quantile in seconds for the first
/// three, events per second for throughput; `None` means no data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    pub latency: Option<f64>,
    pub risk: Option<f64>,
    pub ml: Option<f64>,
    pub throughput: Option<f64>,
}

/// Scores `observed` against `cfg`. Components without data are left out and the
/// remaining weights renormalised, so a host that runs no ML model is not punished
/// for it; the coverage ratio says how much of the score was measured.
pub fn compute(cfg: &ScoreConfig, observed: &Observed) -> Score {
    let lat = |t: &crate::config::LatencyTarget, o: Option<f64>| {
        (
            t.weight,
            o,
            o.map(|v| latency_score(v, t.target.get().as_secs_f64(), t.max.get().as_secs_f64())),
        )
    };
    let parts = [
        lat(&cfg.latency, observed.latency),
        lat(&cfg.risk, observed.risk),
        lat(&cfg.ml, observed.ml),
        (
            cfg.throughput.weight,
            observed.throughput,
            observed
                .throughput
                .map(|r| throughput_score(r, cfg.throughput.target_per_second)),
        ),
    ];
    let configured: f64 = parts.iter().map(|p| p.0).sum();
    let measured: f64 = parts.iter().filter(|p| p.2.is_some()).map(|p| p.0).sum();
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
    let score = (measured > 0.0).then(|| {
        100.0
            * components
                .iter()
                .filter_map(|c| c.score.map(|s| s * c.weight))
                .sum::<f64>()
    });
    Score {
        score,
        // `+ 0.0`: an empty f64 sum is -0.0, which JSON would show as `-0.0`.
        coverage_ratio: if configured > 0.0 {
            measured / configured + 0.0
        } else {
            0.0
        },
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
        // Default order execution: target 0.5 ms, max 1 ms.
        assert_eq!(latency_score(0.0, 0.0005, 0.001), 1.0);
        assert_eq!(latency_score(0.0005, 0.0005, 0.001), 1.0, "at target");
        assert!((latency_score(0.00075, 0.0005, 0.001) - 0.5).abs() < 1e-12);
        assert!((latency_score(0.0009, 0.0005, 0.001) - 0.2).abs() < 1e-9);
        assert_eq!(latency_score(0.001, 0.0005, 0.001), 0.0, "at max");
        assert_eq!(latency_score(5.0, 0.0005, 0.001), 0.0, "beyond max");
    }

    #[test]
    fn throughput_component_edges() {
        assert_eq!(throughput_score(0.0, 50_000.0), 0.0);
        assert_eq!(throughput_score(25_000.0, 50_000.0), 0.5);
        assert_eq!(throughput_score(50_000.0, 50_000.0), 1.0);
        assert_eq!(throughput_score(90_000.0, 50_000.0), 1.0, "capped at 1");
    }

    #[test]
    fn all_components_at_target_score_100_with_the_original_weights() {
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.0004),
                risk: Some(0.004),
                ml: Some(0.03),
                throughput: Some(60_000.0),
            },
        );
        assert_eq!(s.score, Some(100.0));
        assert_eq!(s.coverage_ratio, 1.0);
        let w: Vec<f64> = s.components.iter().map(|c| c.weight).collect();
        assert_eq!(w, vec![0.4, 0.2, 0.2, 0.2]);
    }

    #[test]
    fn weights_apply_per_component() {
        // latency halfway (0.5), risk at max (0), ml at target (1), throughput half.
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.00075),
                risk: Some(0.010),
                ml: Some(0.05),
                throughput: Some(25_000.0),
            },
        );
        let expected = 100.0 * (0.4 * 0.5 + 0.2 * 0.0 + 0.2 * 1.0 + 0.2 * 0.5);
        assert!((s.score.unwrap() - expected).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn missing_components_are_left_out_and_weights_renormalised() {
        let s = compute(
            &cfg(),
            &Observed {
                latency: Some(0.00075),     // 0.5
                throughput: Some(50_000.0), // 1.0
                ..Observed::default()
            },
        );
        // Weights 0.4 and 0.2 of 0.6 measured: 2/3 and 1/3.
        let expected = 100.0 * (0.5 * 2.0 / 3.0 + 1.0 / 3.0);
        assert!((s.score.unwrap() - expected).abs() < 1e-9, "{s:?}");
        assert!((s.coverage_ratio - 0.6).abs() < 1e-12);
        let risk = &s.components[1];
        assert_eq!((risk.score, risk.weight), (None, 0.0));
        let total: f64 = s.components.iter().map(|c| c.weight).sum();
        assert!((total - 1.0).abs() < 1e-12);
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
