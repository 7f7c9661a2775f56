//! Alert routes: list and acknowledge alerts, manage silences, and the original
//! `/api/v1/optimization/alerts` view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Json, middleware};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::alerts::{Ack, AlertError, Silence, StoredAlert};
use crate::clock::unix_now_ms as now_ms;
use crate::model::alert::State as AlertState;
use crate::model::alert::{AlertSource, MatcherSpec, Severity, SilenceState};

/// The alert routes: reads behind the read token, changes behind the write token.
pub(crate) fn routes(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    let reads = OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(list_silences))
        .routes(routes!(optimization))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            super::auth::require_read,
        ));
    let writes = super::writes(
        state,
        OpenApiRouter::new()
            .routes(routes!(acknowledge))
            .routes(routes!(add_silence))
            .routes(routes!(delete_silence)),
    );
    writes.merge(reads)
}

/// RFC 3339 time of a ms timestamp; never panics on stored data (a silence that ends
/// after year 9999 made humantime's formatter panic).
fn rfc3339(ms: i64) -> String {
    crate::clock::rfc3339_ms(ms)
}

/// One acknowledgement in JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AckView {
    pub by: String,
    pub comment: String,
    pub at: String,
}

/// One alert in JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertView {
    pub id: String,
    /// `m4watch` (its own rules) or `prometheus` (posted to `/api/v2/alerts`).
    pub source: AlertSource,
    /// Link back to the alert's origin (Prometheus's `generatorURL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    pub alertname: String,
    pub group: String,
    pub severity: Severity,
    pub state: AlertState,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub active_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<AckView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
}

fn view(a: StoredAlert, silenced_by: Option<String>) -> AlertView {
    AlertView {
        id: a.id,
        source: a.source,
        generator_url: a.generator_url,
        alertname: a.alertname,
        group: a.group,
        severity: a.severity,
        state: a.state,
        labels: a.labels.into_iter().collect(),
        annotations: a.annotations.into_iter().collect(),
        value: Some(a.value).filter(|v| v.is_finite()),
        active_at: rfc3339(a.active_at),
        fired_at: a.fired_at.map(rfc3339),
        resolved_at: a.resolved_at.map(rfc3339),
        acknowledgement: a.ack.map(|k: Ack| AckView {
            by: k.by,
            comment: k.comment,
            at: rfc3339(k.at),
        }),
        silenced_by,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `pending`, `firing` or `resolved`; all when absent.
    #[param(pattern = "^(pending|firing|resolved)?$")]
    state: Option<String>,
    /// Only alerts of this severity (`info`, `warning`, `critical`, `emergency`, or an
    /// alias of one).
    severity: Option<String>,
}

/// Body of `GET /api/v1/monitoring/alerts`.
#[derive(Serialize, utoipa::ToSchema)]
struct AlertList {
    alerts: Vec<AlertView>,
}

/// Alerts, newest first, with acknowledgements and the silence that mutes them.
#[utoipa::path(get, path = "/api/v1/monitoring/alerts", tag = "alerts",
    params(ListQuery),
    responses(
        (status = 200, body = AlertList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    ))]
async fn list(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let Query(q) = q.map_err(ApiError::from)?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => match AlertState::parse(s).filter(|s| *s != AlertState::Inactive) {
            Some(s) => Some(s),
            None => {
                return Err(ApiError::bad_request(format!(
                    "state must be pending, firing or resolved, not {s:?}"
                )));
            }
        },
    };
    let severity = match q.severity.as_deref() {
        None | Some("") => None,
        Some(word) => match Severity::parse(word) {
            Some(s) => Some(s),
            None => {
                return Err(ApiError::bad_request(format!(
                    "severity must be {}, not {word:?}",
                    Severity::WORDS
                )));
            }
        },
    };
    let alerts = s.alerts.list(state, severity, now_ms());
    Ok(Json(AlertList {
        alerts: alerts.into_iter().map(|(a, by)| view(a, by)).collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Who acknowledges.
    #[schema(pattern = "\\S")]
    by: String,
    #[serde(default)]
    comment: String,
}

/// Acknowledges an alert (and acknowledges its PagerDuty incident).
#[utoipa::path(post, path = "/api/v1/monitoring/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = String, Path, description = "alert id")),
    request_body = AckBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = AlertView),
        (status = 400, body = ErrorBody),
        (status = 404, description = "no such alert", body = ErrorBody),
        (status = 409, description = "the alert is resolved", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "not stored: the data directory does not take writes; retry", body = ErrorBody),
    ))]
async fn acknowledge(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<AckBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AlertView>, ApiError> {
    let Json(b) = body.map_err(ApiError::from)?;
    if b.by.trim().is_empty() {
        return Err(ApiError::bad_request("`by` must name who acknowledges"));
    }
    let a = super::durably(&s, || {
        s.alerts.acknowledge(&id, b.by.trim(), &b.comment, now_ms())
    })
    .await?
    .map_err(|e| match e {
        AlertError::Resolved(_) => ApiError::conflict(e.to_string()),
        _ => ApiError::not_found(e.to_string()),
    })?;
    Ok(Json(view(a, None)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    /// Every matcher must match for the silence to apply.
    #[schema(min_items = 1)]
    matchers: Vec<MatcherSpec>,
    /// RFC 3339 end time; or give `duration`.
    #[serde(default)]
    #[schema(format = DateTime)]
    ends_at: Option<String>,
    /// How long from now, like `2h` or `90m`.
    #[serde(default)]
    #[schema(pattern = "^\\s*([0-9]+\\s*[a-z]+\\s*)+$")]
    duration: Option<String>,
    /// Who silences.
    #[schema(pattern = "\\S")]
    created_by: String,
    #[serde(default)]
    comment: String,
}

/// One silence in JSON.
#[derive(Serialize, utoipa::ToSchema)]
struct SilenceView {
    id: String,
    matchers: Vec<MatcherSpec>,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
    /// `active`, `pending` (starts later: made through the Alertmanager API with a
    /// later `startsAt`) or `expired`.
    status: SilenceState,
}

fn silence_view(s: Silence, now: i64) -> SilenceView {
    SilenceView {
        status: s.state(now),
        matchers: s.specs(),
        id: s.id,
        starts_at: rfc3339(s.starts_at),
        ends_at: rfc3339(s.ends_at),
        created_by: s.created_by,
        comment: s.comment,
    }
}

/// Silences alerts matching every matcher until `ends_at` (or for `duration`).
#[utoipa::path(post, path = "/api/v1/monitoring/silences", tag = "alerts",
    request_body = SilenceBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = SilenceView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "not stored: the data directory does not take writes; retry", body = ErrorBody),
    ))]
async fn add_silence(
    State(s): State<Arc<AppState>>,
    body: Result<Json<SilenceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SilenceView>), ApiError> {
    let Json(b) = body.map_err(ApiError::from)?;
    let now = now_ms();
    if b.matchers.is_empty() {
        return Err(ApiError::bad_request(
            "a silence needs at least one matcher",
        ));
    }
    let matchers = b
        .matchers
        .iter()
        .map(MatcherSpec::compile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if b.created_by.trim().is_empty() {
        return Err(ApiError::bad_request("`created_by` must name who silences"));
    }
    let max = s.config.api.max_silence_duration;
    let too_long = || {
        ApiError::bad_request(format!(
            "a silence may last at most {max} (api.max_silence_duration)"
        ))
    };
    let max_ms = i64::try_from(max.get().as_millis()).unwrap_or(i64::MAX);
    let ends_at = match (&b.ends_at, &b.duration) {
        (Some(e), None) => {
            let t = humantime::parse_rfc3339_weak(e).map_err(|_| {
                ApiError::bad_request(format!("ends_at {e:?} is not an RFC 3339 time"))
            })?;
            match t.duration_since(UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_millis()).map_err(|_| too_long())?,
                Err(_) => 0,
            }
        }
        (None, Some(d)) => {
            let d = crate::config::parse_duration(d)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if d > max.get() {
                return Err(too_long());
            }
            now.saturating_add(i64::try_from(d.as_millis()).map_err(|_| too_long())?)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of ends_at and duration",
            ));
        }
    };
    if ends_at <= now {
        return Err(ApiError::bad_request("the silence would end in the past"));
    }
    if ends_at - now > max_ms {
        return Err(too_long());
    }
    let silence = super::durably(&s, || {
        s.alerts.add_silence(Silence {
            id: String::new(),
            matchers,
            starts_at: now,
            ends_at,
            updated_at: now,
            created_by: b.created_by.trim().to_string(),
            comment: b.comment,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(silence_view(silence, now))))
}

/// Body of `GET /api/v1/monitoring/silences`.
#[derive(Serialize, utoipa::ToSchema)]
struct SilenceList {
    silences: Vec<SilenceView>,
}

/// Every silence, active or expired.
#[utoipa::path(get, path = "/api/v1/monitoring/silences", tag = "alerts",
    responses(
        (status = 200, body = SilenceList),
        (status = 401, body = ErrorBody),
    ))]
async fn list_silences(State(s): State<Arc<AppState>>) -> Result<Json<SilenceList>, ApiError> {
    let now = now_ms();
    Ok(Json(SilenceList {
        silences: s
            .alerts
            .silences()
            .into_iter()
            .map(|x| silence_view(x, now))
            .collect(),
    }))
}

/// Removes a silence.
#[utoipa::path(delete, path = "/api/v1/monitoring/silences/{id}", tag = "alerts",
    params(("id" = String, Path, description = "silence id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such silence", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "not stored: the data directory does not take writes; retry", body = ErrorBody),
    ))]
async fn delete_silence(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::durably(&s, || s.alerts.delete_silence(&id))
        .await?
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// One entry of the original `/api/v1/optimization/alerts` list.
#[derive(Serialize, utoipa::ToSchema)]
struct OptimizationAlert {
    id: String,
    level: Severity,
    alertname: String,
    message: String,
    state: AlertState,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    since: String,
    acknowledged: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct OptimizationAlerts {
    count: usize,
    alerts: Vec<OptimizationAlert>,
}

/// The original API's "active performance alerts": every pending or firing alert.
#[utoipa::path(get, path = "/api/v1/optimization/alerts", tag = "alerts",
    responses(
        (status = 200, body = OptimizationAlerts),
        (status = 401, body = ErrorBody),
    ))]
async fn optimization(
    State(s): State<Arc<AppState>>,
) -> Result<Json<OptimizationAlerts>, ApiError> {
    let alerts: Vec<OptimizationAlert> = s
        .alerts
        .list(None, None, now_ms())
        .into_iter()
        .filter(|(a, _)| matches!(a.state, AlertState::Pending | AlertState::Firing))
        .map(|(a, _)| OptimizationAlert {
            message: crate::store::ring::label_of(&a.annotations, "summary").to_string(),
            id: a.id,
            level: a.severity,
            alertname: a.alertname,
            state: a.state,
            value: Some(a.value).filter(|v| v.is_finite()),
            since: rfc3339(a.active_at),
            acknowledged: a.ack.is_some(),
        })
        .collect();
    Ok(Json(OptimizationAlerts {
        count: alerts.len(),
        alerts,
    }))
}
