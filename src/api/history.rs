//! History reads: `GET /api/v1/monitoring/m4max/hardware/history` and
//! `GET /api/v1/monitoring/containers/history`, from the SQLite history.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::persist::samples::Aggregation;

/// Read routes; mounted behind the read check by [`super::api`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(hardware_history))
        .routes(routes!(containers_history))
}

/// Most points one series may have in an answer (Prometheus's limit).
pub(crate) const MAX_POINTS: f64 = 11_000.0;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// How far back, in minutes (default 60; at most history.retention).
    #[param(exclusive_minimum = 0)]
    minutes: Option<f64>,
    /// Bucket width: seconds (`30`) or a duration (`30s`, `5m`); default and least
    /// history.interval.
    step: Option<String>,
    /// Only this metric family.
    family: Option<String>,
}

/// One point: bucket start (Unix seconds) and value.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Point {
    pub t: f64,
    pub v: f64,
}

/// One series.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistorySeries {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub aggregation: Aggregation,
    pub points: Vec<Point>,
}

/// Body of the history routes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryAnswer {
    /// Unix seconds.
    pub from: f64,
    pub to: f64,
    pub step_seconds: f64,
    pub series: Vec<HistorySeries>,
}

/// `step` as seconds or a duration string.
fn parse_step(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) => Ok(v),
        Err(_) => crate::config::parse_duration(s)
            .map(|d| d.as_secs_f64())
            .map_err(|e| e.to_string()),
    }
}

async fn answer(
    s: &AppState,
    q: Result<Query<HistoryQuery>, QueryRejection>,
    containers: bool,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let Some(db) = s.samples.clone() else {
        return Err(ApiError::not_found(
            "history is disabled (history.enabled: false)",
        ));
    };
    let Query(q) = q.map_err(ApiError::from)?;
    let cfg = &s.config.history;
    let interval = cfg.interval.get().as_secs_f64();
    let retention_minutes = cfg.retention.get().as_secs_f64() / 60.0;
    let minutes = q.minutes.unwrap_or(60.0_f64.min(retention_minutes));
    if !(minutes > 0.0 && minutes.is_finite()) {
        return Err(ApiError::bad_request("minutes must be a number above 0"));
    }
    if minutes > retention_minutes + 1e-9 {
        return Err(ApiError::bad_request(format!(
            "minutes {minutes} reaches past history.retention ({})",
            cfg.retention
        )));
    }
    let step = match q.step.as_deref() {
        None | Some("") => interval,
        Some(st) => parse_step(st).map_err(ApiError::bad_request)?,
    };
    if !(step.is_finite() && step >= interval - 1e-9) {
        return Err(ApiError::bad_request(format!(
            "step must be at least history.interval ({}): nothing finer is stored",
            cfg.interval
        )));
    }
    if minutes * 60.0 / step > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "{minutes} minutes at a {step} s step is more than {MAX_POINTS} points per series; raise step"
        )));
    }
    let mut names: Vec<String> = cfg
        .families
        .iter()
        .filter(|f| f.starts_with("m4watch_container_") == containers)
        .cloned()
        .collect();
    if let Some(f) = q.family.as_deref().filter(|f| !f.is_empty()) {
        if !names.iter().any(|n| n == f) {
            return Err(ApiError::bad_request(format!(
                "{f:?} is not kept in this history; it keeps {}",
                names.join(", ")
            )));
        }
        names = vec![f.to_string()];
    }
    let to = crate::clock::unix_now();
    let from = to - minutes * 60.0;
    let (from_ms, to_ms, step_ms) = (
        (from * 1000.0) as i64,
        (to * 1000.0) as i64,
        (step * 1000.0).round() as i64,
    );
    let series = tokio::task::spawn_blocking(move || db.query(&names, from_ms, to_ms, step_ms))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| {
            tracing::error!(error = %e, "history query");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the history database failed",
            )
        })?;
    Ok(Json(HistoryAnswer {
        from,
        to,
        step_seconds: step,
        series: series
            .into_iter()
            .map(|s| HistorySeries {
                name: s.name,
                labels: s.labels,
                aggregation: s.aggregation,
                points: s
                    .points
                    .into_iter()
                    .map(|(t, v)| Point {
                        t: t as f64 / 1000.0,
                        v,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// Hardware history: every configured hardware family, one point per step (gauges
/// averaged over the step, counters at their last value).
#[utoipa::path(get, path = "/api/v1/monitoring/m4max/hardware/history", tag = "hardware",
    params(HistoryQuery),
    responses(
        (status = 200, body = HistoryAnswer),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "history is disabled", body = ErrorBody),
        (status = 500, description = "the history database failed", body = ErrorBody),
    ))]
async fn hardware_history(
    State(s): State<Arc<AppState>>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    answer(&s, q, false).await
}

/// Container history: the configured `m4watch_container_*` families.
#[utoipa::path(get, path = "/api/v1/monitoring/containers/history", tag = "containers",
    params(HistoryQuery),
    responses(
        (status = 200, body = HistoryAnswer),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "history is disabled", body = ErrorBody),
        (status = 500, description = "the history database failed", body = ErrorBody),
    ))]
async fn containers_history(
    State(s): State<Arc<AppState>>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    answer(&s, q, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_is_seconds_or_a_duration() {
        assert_eq!(parse_step("30"), Ok(30.0));
        assert_eq!(parse_step("2.5"), Ok(2.5));
        assert_eq!(parse_step("5m"), Ok(300.0));
        assert!(parse_step("soon").is_err());
    }
}
