//! `trading:` section: StatsD, windows and the performance score.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

/// Trading latency and throughput: the StatsD listener, HTTP ingest, latency windows
/// and the weighted performance score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TradingConfig {
    pub enabled: bool,
    /// UDP address of the StatsD/DogStatsD listener; `null` turns the listener off
    /// (HTTP ingest keeps working).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd_listen: Option<SocketAddr>,
    /// How often windows, quantiles and the score are recomputed.
    pub interval: Dur,
    /// Sliding windows for quantiles and throughput, shortest first.
    pub windows: Vec<Dur>,
    /// Most distinct series (name plus label values, all types together); new ones
    /// beyond it are dropped and counted.
    pub max_series: usize,
    /// DogStatsD tag keys (and HTTP ingest label keys) kept as Prometheus labels;
    /// every other tag is ignored, so senders cannot multiply series by accident.
    pub label_tags: Vec<String>,
    /// A started latency measurement never ended is dropped after this long and
    /// counted as abandoned.
    pub measurement_ttl: Dur,
    /// Most measurements open at once; further starts are refused (429).
    pub max_open_measurements: usize,
    pub score: ScoreConfig,
}

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            enabled: true,
            statsd_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8125))),
            interval: Dur(Duration::from_secs(1)),
            windows: vec![Dur(Duration::from_secs(60)), Dur(Duration::from_secs(300))],
            max_series: 1000,
            label_tags: Vec::new(),
            measurement_ttl: Dur(Duration::from_secs(300)),
            max_open_measurements: 10_000,
            score: ScoreConfig::default(),
        }
    }
}

/// The weighted performance score (README, "Performance score"): a latency component
/// scores 1 at or under its target, 0.5 at its alert threshold (which the shipped rule
/// alerts on, through `m4watch_trading_latency_objective_seconds`) and 0 at
/// `2 × alert − target`; throughput scores the share of offered messages handled.
/// Components without data are left out; the score is absent under `min_coverage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreConfig {
    /// Which of `trading.windows` the score reads.
    pub window: Dur,
    /// Which latency quantile is held against the targets.
    pub quantile: f64,
    /// Least share (0..1) of the configured weight that must have data for there to be
    /// a score; under it the score is absent, never low.
    pub min_coverage: f64,
    pub latency: LatencyTarget,
    pub risk: LatencyTarget,
    pub ml: LatencyTarget,
    pub throughput: ThroughputTarget,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        let ms = |m: u64| Dur(Duration::from_millis(m));
        ScoreConfig {
            window: Dur(Duration::from_secs(60)),
            quantile: 0.95,
            min_coverage: 0.4,
            latency: LatencyTarget {
                operation: "order_execution".into(),
                target: ms(1),
                alert: ms(10),
                weight: 0.4,
            },
            risk: LatencyTarget {
                operation: "risk_calculation".into(),
                target: ms(10),
                alert: ms(100),
                weight: 0.2,
            },
            ml: LatencyTarget {
                operation: "ml_inference".into(),
                target: ms(20),
                alert: ms(50),
                weight: 0.2,
            },
            throughput: ThroughputTarget {
                stream: "market_data".into(),
                dropped_stream: "market_data_dropped".into(),
                weight: 0.2,
            },
        }
    }
}

/// One latency component of the score, and the threshold its shipped rule alerts on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTarget {
    /// Operation (StatsD timer name) the component reads.
    pub operation: String,
    /// At or under this the component scores 1.
    pub target: Dur,
    /// The alert threshold: the component scores 0.5 here, and the shipped rule fires
    /// when the 1-minute p95 stays above it (exported as
    /// `m4watch_trading_latency_objective_seconds{objective="alert"}`).
    pub alert: Dur,
    pub weight: f64,
}

/// The throughput component of the score: the share of offered messages handled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputTarget {
    /// StatsD counter of handled messages (or, without one, the timer of that name,
    /// one observation per message).
    pub stream: String,
    /// StatsD counter of messages the desk dropped or could not keep up with. Without
    /// it the component has no data: m4watch cannot tell a quiet market from a slow
    /// desk by the message rate alone.
    pub dropped_stream: String,
    pub weight: f64,
}

/// Label names the trading families use themselves, so a tag may not take them.
const RESERVED_LABELS: &[&str] = &[
    "operation",
    "stream",
    "name",
    "window",
    "quantile",
    "le",
    "component",
    "job",
    "instance",
];

impl TradingConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
        positive(self.interval, "trading.interval")?;
        positive(self.measurement_ttl, "trading.measurement_ttl")?;
        if self.windows.is_empty() || self.windows.len() > 8 {
            return err(
                "trading.windows",
                "list 1 to 8 windows, e.g. [1m, 5m]".into(),
            );
        }
        for (i, w) in self.windows.iter().enumerate() {
            if *w < self.interval {
                return err(
                    &format!("trading.windows[{i}]"),
                    format!("must be at least trading.interval ({})", self.interval),
                );
            }
            if i > 0 && *w <= self.windows[i - 1] {
                return err(
                    &format!("trading.windows[{i}]"),
                    "windows must be listed shortest first, without repeats".into(),
                );
            }
        }
        if self.max_series == 0 {
            return err("trading.max_series", "must be greater than 0".into());
        }
        if self.max_open_measurements == 0 {
            return err(
                "trading.max_open_measurements",
                "must be greater than 0".into(),
            );
        }
        for (i, tag) in self.label_tags.iter().enumerate() {
            let valid = tag
                .chars()
                .enumerate()
                .all(|(j, c)| c == '_' || c.is_ascii_alphabetic() || (j > 0 && c.is_ascii_digit()));
            if tag.is_empty() || !valid || tag.starts_with("__") {
                return err(
                    &format!("trading.label_tags[{i}]"),
                    format!("{tag:?} is not a Prometheus label name"),
                );
            }
            if RESERVED_LABELS.contains(&tag.as_str()) {
                return err(
                    &format!("trading.label_tags[{i}]"),
                    format!("{tag:?} is a label m4watch sets itself"),
                );
            }
        }
        let s = &self.score;
        if !self.windows.contains(&s.window) {
            return err(
                "trading.score.window",
                format!("{} is not one of trading.windows", s.window),
            );
        }
        if !(s.quantile > 0.0 && s.quantile < 1.0) {
            return err("trading.score.quantile", "must be between 0 and 1".into());
        }
        if !(0.0..=1.0).contains(&s.min_coverage) {
            return err(
                "trading.score.min_coverage",
                "must be between 0 and 1".into(),
            );
        }
        for (key, c) in [("latency", &s.latency), ("risk", &s.risk), ("ml", &s.ml)] {
            if c.target >= c.alert {
                return err(
                    &format!("trading.score.{key}.alert"),
                    format!("must be greater than target ({})", c.target),
                );
            }
            if !(c.weight >= 0.0 && c.weight.is_finite()) {
                return err(
                    &format!("trading.score.{key}.weight"),
                    "must be 0 or more".into(),
                );
            }
        }
        if s.throughput.stream == s.throughput.dropped_stream {
            return err(
                "trading.score.throughput.dropped_stream",
                "must differ from stream".into(),
            );
        }
        if !(s.throughput.weight >= 0.0 && s.throughput.weight.is_finite()) {
            return err(
                "trading.score.throughput.weight",
                "must be 0 or more".into(),
            );
        }
        if s.latency.weight + s.risk.weight + s.ml.weight + s.throughput.weight <= 0.0 {
            return err(
                "trading.score",
                "at least one weight must be above 0".into(),
            );
        }
        Ok(())
    }
}
