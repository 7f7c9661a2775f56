//! The trading collector's view: latency statistics per operation and window, counter
//! throughput, gauges and sets, and the performance score, as the JSON API serves them
//! and the recommendations read them.

use std::collections::BTreeMap;

use serde::Serialize;

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
    /// Where the StatsD listener is bound; absent when it is off. The JSON routes show it
    /// beside the view (`statsd_listen`).
    #[serde(skip)]
    pub statsd_listen: Option<String>,
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
    pub score: Score,
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
    /// What it was scored on: the latency quantile in seconds, or for throughput the
    /// handled messages per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
}

/// The whole score.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Score {
    /// 0..100; absent when less than `min_coverage` of the configured weight had data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Share (0..1) of the configured weight that had data.
    pub coverage_ratio: f64,
    pub components: Vec<Component>,
}

/// A window's name, as configured (`1m`, `5m`): the key of [`OperationView::windows`]
/// and [`StreamView::throughput_per_second`].
pub(crate) fn window_name(d: Dur) -> String {
    d.to_string()
}
