//! Trading routes: HTTP latency ingest, the start/end measurement API and the JSON
//! views of latency, throughput and the score.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::collect::trading::statsd::valid_name;
use crate::collect::trading::{LatencyStats, RecordError, Trading, View, ingest::StartError};

/// Read routes; mounted behind the read check by [`super::router`].
pub fn reads() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/monitoring/trading/metrics", get(trading_metrics))
        .route("/api/v1/optimization/latency-stats", get(latency_stats))
}

/// State-changing routes, behind the write token.
pub fn writes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    super::writes(
        state,
        Router::new()
            .route("/api/v1/trading/latency", post(ingest))
            .route(
                "/api/v1/optimization/start-latency-measurement",
                post(start_measurement),
            )
            .route(
                "/api/v1/optimization/end-latency-measurement/{id}",
                post(end_measurement),
            ),
    )
}

fn trading(s: &AppState) -> Result<&Arc<Trading>, ApiError> {
    s.trading.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "disabled",
            "trading is disabled (trading.enabled: false)",
        )
    })
}

/// Body of `GET /api/v1/monitoring/trading/metrics`.
#[derive(Serialize)]
struct TradingMetrics<'a> {
    /// Where the StatsD listener is bound; absent when it is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    statsd_listen: Option<String>,
    #[serde(flatten)]
    view: &'a View,
}

fn to_json(body: impl Serialize) -> Result<Json<serde_json::Value>, ApiError> {
    serde_json::to_value(body)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

async fn trading_metrics(
    State(s): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = trading(&s)?;
    let view = t.view();
    to_json(TradingMetrics {
        statsd_listen: t.statsd_addr().map(|a| a.to_string()),
        view: &view,
    })
}

#[derive(Deserialize)]
struct StatsQuery {
    duration_minutes: Option<f64>,
}

#[derive(Serialize)]
struct OperationStats<'a> {
    operation: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(flatten)]
    stats: &'a LatencyStats,
}

#[derive(Serialize)]
struct LatencyStatsBody<'a> {
    duration_minutes: f64,
    /// The configured window that answers: the shortest at least as long as asked.
    window: &'a str,
    operations: Vec<OperationStats<'a>>,
}

async fn latency_stats(
    State(s): State<Arc<AppState>>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = trading(&s)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let minutes = q.duration_minutes.unwrap_or(5.0);
    if !(minutes > 0.0 && minutes.is_finite()) {
        return Err(ApiError::bad_request(
            "duration_minutes must be a number above 0",
        ));
    }
    let windows = &t.config().windows;
    let Some(pos) = windows
        .iter()
        .position(|w| w.get().as_secs_f64() >= minutes * 60.0 - 1e-9)
    else {
        return Err(ApiError::bad_request(format!(
            "duration_minutes {minutes} is longer than the longest window ({}); see trading.windows",
            windows.last().map(|w| w.to_string()).unwrap_or_default()
        )));
    };
    let name = crate::collect::trading::window_name(windows[pos]);
    let view = t.view();
    let body = LatencyStatsBody {
        duration_minutes: minutes,
        window: &name,
        operations: view
            .operations
            .iter()
            .filter_map(|o| {
                o.windows.get(&name).map(|stats| OperationStats {
                    operation: &o.operation,
                    labels: &o.labels,
                    stats,
                })
            })
            .collect(),
    };
    to_json(body)
}

/// One sample of `POST /api/v1/trading/latency`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    operation: String,
    latency_us: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct IngestReply {
    accepted: usize,
    /// Samples of new series dropped by trading.max_series.
    dropped: usize,
}

fn json_error(e: JsonRejection) -> ApiError {
    ApiError::bad_request(e.body_text())
}

async fn ingest(
    State(s): State<Arc<AppState>>,
    body: Result<Json<Vec<Sample>>, JsonRejection>,
) -> Result<Json<IngestReply>, ApiError> {
    let t = trading(&s)?;
    let Json(samples) = body.map_err(json_error)?;
    // Check the whole batch first, so a bad item records nothing.
    for (i, x) in samples.iter().enumerate() {
        if !(x.latency_us >= 0.0 && x.latency_us.is_finite()) {
            return Err(ApiError::bad_request(format!(
                "item {i}: latency_us must be a finite number of microseconds, 0 or more"
            )));
        }
        if !valid_name(&x.operation) {
            return Err(ApiError::bad_request(format!(
                "item {i}: {}",
                RecordError::Operation
            )));
        }
    }
    let mut reply = IngestReply {
        accepted: 0,
        dropped: 0,
    };
    for x in &samples {
        match t.record_latency(&x.operation, &x.labels, (x.latency_us * 1e3).round() as u64) {
            Ok(()) => reply.accepted += 1,
            Err(_) => reply.dropped += 1,
        }
    }
    Ok(Json(reply))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    operation: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Started {
    id: String,
    operation: String,
}

async fn start_measurement(
    State(s): State<Arc<AppState>>,
    body: Result<Json<StartBody>, JsonRejection>,
) -> Result<Json<Started>, ApiError> {
    let t = trading(&s)?;
    let Json(b) = body.map_err(json_error)?;
    if !valid_name(&b.operation) {
        return Err(ApiError::bad_request(RecordError::Operation.to_string()));
    }
    let id = t
        .measurements()
        .start(b.operation.clone(), b.labels, Instant::now())
        .map_err(|e @ StartError::Full(_)| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_measurements",
                e.to_string(),
            )
        })?;
    Ok(Json(Started {
        id,
        operation: b.operation,
    }))
}

#[derive(Serialize)]
struct EndedBody {
    id: String,
    operation: String,
    latency_ms: f64,
}

async fn end_measurement(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EndedBody>, ApiError> {
    let t = trading(&s)?;
    let ended = t.end_measurement(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no open measurement {id:?}: never started, already ended, or expired after trading.measurement_ttl"
        ))
    })?;
    Ok(Json(EndedBody {
        id,
        operation: ended.operation,
        latency_ms: ended.latency.as_secs_f64() * 1e3,
    }))
}
