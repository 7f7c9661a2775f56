//! The JSON view of the trading store: plain serde types the collector fills in
//! (in [`super::export`]) and the API serves.

use serde::Serialize;
use std::collections::BTreeMap;

use super::hist::Hist;
use super::score;
use crate::config::Dur;

/// Latency statistics of one window, in milliseconds (the unit of the original API).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LatencyStats {
    pub count: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencyStats {
    pub(super) fn of(h: &Hist, per_second: f64) -> Self {
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
}

/// One operation (timer series) in the JSON view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OperationView {
    pub operation: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Observations since m4watch started.
    pub count: u64,
    /// Per window name; a window without observations is absent.
    pub windows: BTreeMap<String, LatencyStats>,
}

/// One counter stream in the JSON view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    pub stream: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub events_total: f64,
    /// Events per second, per window name.
    pub throughput_per_second: BTreeMap<String, f64>,
}

/// A gauge or set in the JSON view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ValueView {
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What the collector computed last; the JSON API serves it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct View {
    /// Unix time of the computation; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_unix: Option<f64>,
    pub windows: Vec<String>,
    pub operations: Vec<OperationView>,
    pub streams: Vec<StreamView>,
    pub gauges: Vec<ValueView>,
    pub sets: Vec<ValueView>,
    pub series: usize,
    pub max_series: usize,
    pub score: score::Score,
}

impl Default for View {
    fn default() -> Self {
        View {
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
}

/// Window name as configured (`1m`, `5m`).
pub fn window_name(d: Dur) -> String {
    d.to_string()
}
