//! Trading routes: HTTP latency ingest, the start/end measurement API and the JSON
//! views of latency, throughput and the score.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use axum::Json;
use serde::{Deserialize, Serialize};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::collect::trading::line::Outcome;
use crate::collect::trading::statsd::valid_name;
use crate::collect::trading::{RecordError, Trading, ingest::StartError};
use crate::store::views::trading::{LatencyStats, View, window_name};

/// Read routes; mounted behind the read check by [`super::router`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(trading_metrics))
        .routes(routes!(latency_stats))
}

/// State-changing routes, behind the write token.
pub(crate) fn writes(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    super::writes(
        state,
        OpenApiRouter::new()
            .routes(routes!(ingest))
            .routes(routes!(start_measurement))
            .routes(routes!(end_measurement)),
    )
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "disabled",
        "trading is disabled (trading.enabled: false)",
    )
}

/// The latency ingest, the one write handle the trading routes hold.
fn writer(s: &AppState) -> Result<&Arc<Trading>, ApiError> {
    s.trading_ingest.as_ref().ok_or_else(disabled)
}

/// The trading collector's view, as the store holds it.
fn view(s: &AppState) -> Result<Arc<View>, ApiError> {
    s.store.views().trading.get().ok_or_else(disabled)
}

/// Body of `GET /api/v1/monitoring/trading/metrics`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TradingMetrics {
    /// Where the StatsD listener is bound; absent when it is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    statsd_listen: Option<String>,
    #[serde(flatten)]
    view: View,
}

/// Latency, throughput, gauges and the performance score, per configured window.
#[utoipa::path(get, path = "/api/v1/monitoring/trading/metrics", tag = "trading",
    responses(
        (status = 200, body = TradingMetrics),
        (status = 401, body = ErrorBody),
        (status = 404, description = "trading is disabled", body = ErrorBody),
    ))]
async fn trading_metrics(State(s): State<Arc<AppState>>) -> Result<Json<TradingMetrics>, ApiError> {
    let view = view(&s)?;
    Ok(Json(TradingMetrics {
        statsd_listen: view.statsd_listen.clone(),
        view: (*view).clone(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// Minutes of history wanted (default 5); answered by the shortest configured
    /// window at least that long.
    #[param(exclusive_minimum = 0)]
    duration_minutes: Option<f64>,
}

/// Latency statistics of one operation in one window.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct OperationStats {
    operation: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(flatten)]
    stats: LatencyStats,
}

/// Body of `GET /api/v1/optimization/latency-stats`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LatencyStatsBody {
    duration_minutes: f64,
    /// The configured window that answers: the shortest at least as long as asked.
    window: String,
    operations: Vec<OperationStats>,
}

/// Latency percentiles per operation over a window.
#[utoipa::path(get, path = "/api/v1/optimization/latency-stats", tag = "trading",
    params(StatsQuery),
    responses(
        (status = 200, body = LatencyStatsBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "trading is disabled", body = ErrorBody),
    ))]
async fn latency_stats(
    State(s): State<Arc<AppState>>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<LatencyStatsBody>, ApiError> {
    let view = view(&s)?;
    let Query(q) = query.map_err(ApiError::from)?;
    let minutes = q.duration_minutes.unwrap_or(5.0);
    if !(minutes > 0.0 && minutes.is_finite()) {
        return Err(ApiError::bad_request(
            "duration_minutes must be a number above 0",
        ));
    }
    let windows = &s.config.trading.windows;
    let Some(pos) = windows
        .iter()
        .position(|w| w.get().as_secs_f64() >= minutes * 60.0 - 1e-9)
    else {
        return Err(ApiError::bad_request(format!(
            "duration_minutes {minutes} is longer than the longest window ({}); see trading.windows",
            windows.last().map(|w| w.to_string()).unwrap_or_default()
        )));
    };
    let name = window_name(windows[pos]);
    let operations = view
        .operations
        .iter()
        .filter_map(|o| {
            o.windows.get(&name).map(|stats| OperationStats {
                operation: o.operation.clone(),
                labels: o.labels.clone(),
                stats: stats.clone(),
            })
        })
        .collect();
    Ok(Json(LatencyStatsBody {
        duration_minutes: minutes,
        window: name,
        operations,
    }))
}

/// One sample of `POST /api/v1/trading/latency`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Sample {
    /// Operation name: 1 to 200 bytes, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    operation: String,
    /// Latency in microseconds.
    #[schema(minimum = 0)]
    latency_us: f64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Whether the operation succeeded; `false` counts it under
    /// `m4watch_trading_operations_total{outcome="error"}` (its latency is recorded
    /// either way).
    #[serde(default = "yes")]
    #[schema(default = true)]
    success: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, utoipa::ToSchema)]
struct IngestReply {
    accepted: usize,
    /// Samples of new series dropped by trading.max_series.
    dropped: usize,
}

fn json_error(e: JsonRejection) -> ApiError {
    ApiError::from(e)
}

/// Records a batch of latency samples; a bad item records nothing.
#[utoipa::path(post, path = "/api/v1/trading/latency", tag = "trading",
    request_body = Vec<Sample>,
    security(("bearer" = [])),
    responses(
        (status = 200, body = IngestReply),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "trading is disabled", body = ErrorBody),
    ))]
async fn ingest(
    State(s): State<Arc<AppState>>,
    body: Result<Json<Vec<Sample>>, JsonRejection>,
) -> Result<Json<IngestReply>, ApiError> {
    let t = writer(&s)?;
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
        let nanos = (x.latency_us * 1e3).round() as u64;
        match t.record_operation(
            &x.operation,
            &x.labels,
            nanos,
            Outcome::from_success(x.success),
        ) {
            Ok(()) => reply.accepted += 1,
            Err(_) => reply.dropped += 1,
        }
    }
    Ok(Json(reply))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Operation name: 1 to 200 bytes, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    operation: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Started {
    id: String,
    operation: String,
}

/// Starts timing an operation; end it with its id.
#[utoipa::path(post, path = "/api/v1/optimization/start-latency-measurement", tag = "trading",
    request_body = StartBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = Started),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "trading is disabled", body = ErrorBody),
        (status = 429, description = "too many open measurements", body = ErrorBody),
    ))]
async fn start_measurement(
    State(s): State<Arc<AppState>>,
    body: Result<Json<StartBody>, JsonRejection>,
) -> Result<Json<Started>, ApiError> {
    let t = writer(&s)?;
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

#[derive(Serialize, utoipa::ToSchema)]
struct EndedBody {
    id: String,
    operation: String,
    latency_ms: f64,
    success: bool,
}

/// Optional body of `end-latency-measurement`: no body (or an empty one) is a success.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EndBody {
    /// Whether the operation succeeded; `false` counts it under
    /// `m4watch_trading_operations_total{outcome="error"}` (its latency is recorded
    /// either way).
    #[serde(default = "yes")]
    #[schema(default = true)]
    success: bool,
}

/// The `success` of an `end-latency-measurement` body. No body (or a blank one) is a
/// success whatever its Content-Type, as the original clients send none; a body that is
/// there goes through the JSON extractor like every other route's (415 without a JSON
/// Content-Type, 400 when it is not the object).
async fn end_body(
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<bool, ApiError> {
    use axum::extract::FromRequest;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(true);
    }
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut req = axum::extract::Request::new(axum::body::Body::from(body));
    *req.headers_mut() = headers;
    let Json(b) = Json::<EndBody>::from_request(req, &())
        .await
        .map_err(json_error)?;
    // serde takes `[]` for the struct too; only the object is documented.
    if !object {
        return Err(ApiError::bad_request(
            "body: expected a JSON object such as {\"success\": false}, or no body",
        ));
    }
    Ok(b.success)
}

/// Ends a measurement and records its latency and outcome.
#[utoipa::path(post, path = "/api/v1/optimization/end-latency-measurement/{id}", tag = "trading",
    params(("id" = String, Path, description = "the id start-latency-measurement returned")),
    request_body(content = Option<EndBody>, content_type = "application/json",
        description = "optional: `{\"success\": false}` records a failed operation; no body is a success"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = EndedBody),
        (status = 400, description = "a body that is not the JSON object described", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such open measurement, or trading is disabled", body = ErrorBody),
    ))]
async fn end_measurement(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<EndedBody>, ApiError> {
    let t = writer(&s)?;
    let success = end_body(headers, body).await?;
    let ended = t.end_measurement(&id, Outcome::from_success(success)).ok_or_else(|| {
        ApiError::not_found(format!(
            "no open measurement {id:?}: never started, already ended, or expired after trading.measurement_ttl"
        ))
    })?;
    Ok(Json(EndedBody {
        id,
        operation: ended.operation,
        latency_ms: ended.latency.as_secs_f64() * 1e3,
        success,
    }))
}
