//! Builds the trading view's plain types (defined in [`crate::store::views::trading`],
//! where the JSON API and the recommendations read them).

use super::hist::Hist;
use super::score;
pub(crate) use crate::store::views::trading::{
    LatencyStats, OperationView, StreamView, ValueView, View,
};

/// Latency statistics of one window of `h`, with its rate.
pub(super) fn latency_stats(h: &Hist, per_second: f64) -> LatencyStats {
    let ms = |ns: u64| ns as f64 / 1e6;
    LatencyStats {
        count: h.len(),
        per_second,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        min_ms: ms(h.min()),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1e6,
    }
}

/// The view before the first run: nothing observed, the score without data.
pub(crate) fn empty_view() -> View {
    View {
        statsd_listen: None,
        updated_unix: None,
        windows: Vec::new(),
        operations: Vec::new(),
        streams: Vec::new(),
        gauges: Vec::new(),
        sets: Vec::new(),
        series: 0,
        max_series: 0,
        score: score::compute(&Default::default(), &Default::default()),
    }
}
