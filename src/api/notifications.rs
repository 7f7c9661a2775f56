//! Notification routes: Prometheus's Alertmanager API (`POST /api/v2/alerts`), the
//! configure and test endpoints, and the delivery log.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{AppState, auth, writes};
use crate::notify::config::ReceiverConfig;
use crate::notify::dispatch::NotifyError;
use crate::notify::outbox::Delivery;
use crate::notify::{AlertEvent, AlertState, fingerprint};

/// The notification routes, each behind the right token check.
pub fn routes(state: &Arc<AppState>) -> utoipa_axum::router::OpenApiRouter<Arc<AppState>> {
    let w = writes(
        state,
        utoipa_axum::router::OpenApiRouter::from(
            Router::new()
                .route("/api/v2/alerts", post(post_alerts))
                .route(
                    "/api/v1/monitoring/notifications/configure",
                    post(configure),
                )
                .route("/api/v1/monitoring/notifications/test", post(test)),
        ),
    );
    let r = Router::new()
        .route("/api/v1/monitoring/notifications", get(list))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            auth::require_read,
        ));
    w.merge(r.into())
}

/// One alert of Alertmanager's v2 `postableAlerts`, as Prometheus sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

/// Turns a Prometheus alert into an event: resolved once its `endsAt` has passed,
/// labelled `source="prometheus"`.
pub fn from_prometheus(a: PostableAlert, now: DateTime<Utc>) -> AlertEvent {
    let mut labels = a.labels;
    labels.insert("source".into(), "prometheus".into());
    let resolved = a.ends_at.is_some_and(|e| e <= now);
    AlertEvent {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: a.annotations,
        state: if resolved {
            AlertState::Resolved
        } else {
            AlertState::Firing
        },
        starts_at: a.starts_at.unwrap_or(now),
        ends_at: if resolved { a.ends_at } else { None },
        value: None,
        source: "prometheus".into(),
        generator_url: a.generator_url.filter(|u| !u.is_empty()),
    }
}

async fn post_alerts(
    State(s): State<Arc<AppState>>,
    body: Result<Json<Vec<PostableAlert>>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(alerts) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    for (i, a) in alerts.iter().enumerate() {
        if a.labels.is_empty() {
            return Err(ApiError::bad_request(format!("alert {i} has no labels")));
        }
    }
    let now = Utc::now();
    for a in alerts {
        s.notifier.submit(from_prometheus(a, now)).await;
    }
    Ok(StatusCode::OK)
}

fn notify_error(e: NotifyError) -> ApiError {
    match e {
        NotifyError::UnknownReceiver(_) => ApiError::not_found(e.to_string()),
        NotifyError::Invalid(_) => ApiError::bad_request(e.to_string()),
        NotifyError::Outbox(_) => {
            tracing::error!(error = %e, "notification outbox");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the notification outbox is unavailable",
            )
        }
    }
}

/// Answer of the configure endpoint: the receiver as it now is, secrets redacted.
#[derive(Serialize)]
struct Configured {
    status: &'static str,
    receiver: ReceiverConfig,
}

async fn configure(
    State(s): State<Arc<AppState>>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Configured>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let receiver = s.notifier.configure(body).await.map_err(notify_error)?;
    Ok(Json(Configured {
        status: "configured",
        receiver,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    #[serde(default)]
    receiver: Option<String>,
}

#[derive(Serialize)]
struct TestOutcome {
    integration: &'static str,
    delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct TestResult {
    receiver: String,
    results: Vec<TestOutcome>,
}

async fn test(
    State(s): State<Arc<AppState>>,
    body: Option<Json<TestRequest>>,
) -> Result<Json<TestResult>, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let name = req
        .receiver
        .unwrap_or_else(|| crate::notify::config::DEFAULT_RECEIVER.to_string());
    let results = s.notifier.test(&name).await.map_err(notify_error)?;
    if results.is_empty() {
        return Err(ApiError::conflict(format!(
            "receiver {name:?} has no integrations: configure one first"
        )));
    }
    Ok(Json(TestResult {
        receiver: name,
        results: results
            .into_iter()
            .map(|(integration, r)| match r {
                Ok(()) => TestOutcome {
                    integration,
                    delivered: true,
                    reason: None,
                    retryable: None,
                    error: None,
                },
                Err(e) => TestOutcome {
                    integration,
                    delivered: false,
                    reason: Some(e.reason.as_str()),
                    retryable: Some(e.retryable),
                    error: Some(e.message),
                },
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default = "d_limit")]
    limit: i64,
}

fn d_limit() -> i64 {
    100
}

#[derive(Serialize)]
struct List {
    receivers: Vec<ReceiverConfig>,
    deliveries: Vec<Delivery>,
}

async fn list(
    State(s): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List>, ApiError> {
    let deliveries = s
        .notifier
        .deliveries(q.limit.clamp(1, 1000))
        .await
        .map_err(notify_error)?;
    Ok(Json(List {
        receivers: s.notifier.receivers(),
        deliveries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_alerts_become_events() {
        let now = Utc::now();
        let firing: Vec<PostableAlert> = serde_json::from_str(&format!(
            r#"[{{"labels":{{"alertname":"HighCpu","severity":"critical"}},
                "annotations":{{"summary":"CPU high"}},
                "startsAt":"2026-11-22T09:00:00Z","endsAt":"{}",
                "generatorURL":"http://prom/graph"}}]"#,
            (now + chrono::Duration::minutes(4)).to_rfc3339()
        ))
        .unwrap();
        let ev = from_prometheus(firing.into_iter().next().unwrap(), now);
        assert_eq!(ev.state, AlertState::Firing);
        assert_eq!(ev.labels["source"], "prometheus");
        assert_eq!(ev.ends_at, None);
        assert_eq!(ev.generator_url.as_deref(), Some("http://prom/graph"));
        let resolved = PostableAlert {
            labels: [("alertname".to_string(), "HighCpu".to_string())].into(),
            annotations: Default::default(),
            starts_at: None,
            ends_at: Some(now - chrono::Duration::seconds(1)),
            generator_url: None,
        };
        assert_eq!(from_prometheus(resolved, now).state, AlertState::Resolved);
    }
}
