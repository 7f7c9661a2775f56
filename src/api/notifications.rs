//! Notification routes: Prometheus's Alertmanager API (`POST /api/v2/alerts`), the
//! configure and test endpoints, and the delivery log.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Json, middleware};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::alertmanager::unset_if_zero;
use super::error::{ApiError, ErrorBody};
use super::{AppState, auth, writes};
use crate::alerts::Received;
use crate::config::notify::ReceiverConfig;
use crate::notify::handle::NotifyError;
use crate::notify::outbox::{Delivery, OutboxError};

/// The notification routes, each behind the right token check.
pub(crate) fn routes(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    let w = writes(
        state,
        OpenApiRouter::new()
            .routes(routes!(post_alerts))
            .routes(routes!(configure))
            .routes(routes!(test)),
    );
    let r = OpenApiRouter::new()
        .routes(routes!(list))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            auth::require_read,
        ));
    w.merge(r)
}

/// One alert of Alertmanager's v2 `postableAlerts`, as Prometheus sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PostableAlert {
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

/// A Prometheus alert as the alert store takes it: labels exactly as sent (so the
/// same label set from m4watch's rules is the same alert), times in ms. Go's zero
/// time, which `amtool alert add` sends for a time it was not given, is no time: no
/// start is now, and no end fires until the resolve timeout.
pub(crate) fn received(a: PostableAlert, now: DateTime<Utc>) -> Received {
    Received {
        labels: a.labels.into_iter().collect(),
        annotations: a.annotations.into_iter().collect(),
        starts_at: unset_if_zero(a.starts_at).unwrap_or(now).timestamp_millis(),
        ends_at: unset_if_zero(a.ends_at).map(|e| e.timestamp_millis()),
        generator_url: a.generator_url.filter(|u| !u.is_empty()),
    }
}

/// Alertmanager's v2 alert API, so Prometheus can send its alerts here.
#[utoipa::path(post, path = "/api/v2/alerts", tag = "notifications",
    request_body = Vec<PostableAlert>,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "accepted and committed to disk"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "not stored: the data directory does not take writes; retry", body = ErrorBody),
    ))]
async fn post_alerts(
    State(s): State<Arc<AppState>>,
    body: Result<Json<Vec<PostableAlert>>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(alerts) = body.map_err(ApiError::from)?;
    for (i, a) in alerts.iter().enumerate() {
        if a.labels.is_empty() {
            return Err(ApiError::bad_request(format!("alert {i} has no labels")));
        }
        if a.labels.contains_key("") {
            return Err(ApiError::bad_request(format!(
                "alert {i} has a label with an empty name"
            )));
        }
    }
    let now = Utc::now();
    let received: Vec<Received> = alerts.into_iter().map(|a| received(a, now)).collect();
    // Accepted means durable: the answer waits until the alert store's writer has the
    // change on disk, so a resolve acknowledged here survives a crash (the notifier
    // rebuilds its groups against the store on restart).
    // While the data directory takes no writes nothing is taken in (503), so the
    // sender's retry is the one that counts.
    super::durably(&s, || s.alerts.receive(received, now.timestamp_millis())).await?;
    Ok(StatusCode::OK)
}

fn notify_error(e: NotifyError) -> ApiError {
    match e {
        NotifyError::UnknownReceiver(_) => ApiError::not_found(e.to_string()),
        NotifyError::Invalid(_) => ApiError::bad_request(e.to_string()),
        NotifyError::Outbox(OutboxError::Storage(detail)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("not stored, nothing changed; retry later: {detail}"),
        ),
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
#[derive(Serialize, utoipa::ToSchema)]
struct Configured {
    status: &'static str,
    receiver: ReceiverConfig,
}

/// Adds or replaces a receiver's Slack, email or PagerDuty settings.
///
/// Without `"receiver"` the request configures `default`, but only when the configured
/// route tree delivers to `default`: there is no `notifications.route` (every alert goes
/// to `default`), or the root route, a route below it or the escalation names
/// `default`. Otherwise it answers 400 naming the receivers the tree does send to,
/// rather than configuring a receiver no alert reaches.
#[utoipa::path(post, path = "/api/v1/monitoring/notifications/configure", tag = "notifications",
    request_body = crate::notify::handle::ConfigureRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = Configured),
        (status = 400, description = "bad input, or no `receiver` while the route tree never reaches `default`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no receiver by that name", body = ErrorBody),
        (status = 500, description = "the outbox database failed; nothing changed", body = ErrorBody),
        (status = 503, description = "the data directory does not take writes; nothing changed", body = ErrorBody),
    ))]
async fn configure(
    State(s): State<Arc<AppState>>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Configured>, ApiError> {
    let Json(body) = body.map_err(ApiError::from)?;
    // serde would read a struct from a JSON array too; the API takes objects only.
    let Some(fields) = body.as_object() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    // `{}` or a receiver name alone would change nothing and answer "configured".
    if !fields.iter().any(|(k, v)| k != "receiver" && !v.is_null()) {
        return Err(ApiError::bad_request(
            "the body changes nothing: give at least one of slack_webhook, slack_channel, email, pagerduty_routing_key, pagerduty_url",
        ));
    }
    let receiver = s.notifier.configure(body).await.map_err(|e| {
        // A write that failed on the disk says so, as every write route does.
        match (&e, s.storage.fault()) {
            (NotifyError::Outbox(OutboxError::Sql(_) | OutboxError::Secrets(..)), Some(f)) => {
                ApiError::storage(&f)
            }
            _ => notify_error(e),
        }
    })?;
    Ok(Json(Configured {
        status: "configured",
        receiver,
    }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    /// Receiver to test; `default` when absent.
    #[serde(default)]
    receiver: Option<String>,
    /// Send nothing: render each integration's message and open (then close) a TCP
    /// connection to each destination.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TestOutcome {
    integration: &'static str,
    /// Sent and accepted (false on a dry run, which sends nothing).
    delivered: bool,
    /// Dry run: the message rendered and every destination accepted a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    reachable: Option<bool>,
    /// Dry run: scheme, host and port of each destination checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    destinations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TestResult {
    receiver: String,
    results: Vec<TestOutcome>,
}

/// Sends a test notification through every integration of a receiver (default
/// `default`) and reports each result; with `dry_run` sends nothing and checks each
/// integration renders and can reach its destination.
#[utoipa::path(post, path = "/api/v1/monitoring/notifications/test", tag = "notifications",
    request_body(content = Option<TestRequest>, description = "optional: an empty body or `null` tests `default`"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TestResult),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such receiver", body = ErrorBody),
        (status = 409, description = "the receiver has no integrations", body = ErrorBody),
        (status = 500, description = "the outbox database failed", body = ErrorBody),
    ))]
async fn test(
    State(s): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Json<TestResult>, ApiError> {
    // An empty body or null means the default receiver; anything else must be a
    // TestRequest object.
    let req: TestRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TestRequest::default()
    } else {
        serde_json::from_slice::<Option<TestRequest>>(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
            .unwrap_or_default()
    };
    let name = req
        .receiver
        .unwrap_or_else(|| crate::config::notify::DEFAULT_RECEIVER.to_string());
    let dry = req.dry_run;
    let results = s.notifier.test(&name, dry).await.map_err(notify_error)?;
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
                Ok(destinations) => TestOutcome {
                    integration,
                    delivered: !dry,
                    reachable: dry.then_some(true),
                    destinations,
                    reason: None,
                    retryable: None,
                    error: None,
                },
                Err(e) => TestOutcome {
                    integration,
                    delivered: false,
                    reachable: dry.then_some(false),
                    destinations: Vec::new(),
                    reason: Some(e.reason.as_str()),
                    retryable: Some(e.retryable),
                    error: Some(e.message),
                },
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Most deliveries to show (1..1000, default 100).
    #[serde(default = "d_limit")]
    limit: i64,
}

fn d_limit() -> i64 {
    100
}

#[derive(Serialize, utoipa::ToSchema)]
struct List {
    receivers: Vec<ReceiverConfig>,
    deliveries: Vec<Delivery>,
}

/// Receivers (secrets redacted) and the latest deliveries.
#[utoipa::path(get, path = "/api/v1/monitoring/notifications", tag = "notifications",
    params(ListQuery),
    responses(
        (status = 200, body = List),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 500, description = "the outbox database failed", body = ErrorBody),
    ))]
async fn list(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<List>, ApiError> {
    let Query(q) = q.map_err(ApiError::from)?;
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
    fn prometheus_alerts_keep_their_labels_and_times() {
        let now = Utc::now();
        let firing: Vec<PostableAlert> = serde_json::from_str(&format!(
            r#"[{{"labels":{{"severity":"critical","alertname":"HighCpu"}},
                "annotations":{{"summary":"CPU high"}},
                "startsAt":"2026-11-22T09:00:00Z","endsAt":"{}",
                "generatorURL":"http://prom/graph"}}]"#,
            (now + chrono::Duration::minutes(4)).to_rfc3339()
        ))
        .unwrap();
        let r = received(firing.into_iter().next().unwrap(), now);
        assert_eq!(
            r.labels,
            vec![
                ("alertname".to_string(), "HighCpu".to_string()),
                ("severity".to_string(), "critical".to_string())
            ],
            "sorted, and no label added"
        );
        assert_eq!(r.starts_at, 1_795_338_000_000);
        assert!(r.ends_at.unwrap() > now.timestamp_millis());
        assert_eq!(r.generator_url.as_deref(), Some("http://prom/graph"));
    }

    #[test]
    fn go_zero_times_from_amtool_mean_unset() {
        let now = Utc::now();
        // What `amtool alert add Hot` posts: no --start, no --end.
        let posted: Vec<PostableAlert> = serde_json::from_str(
            r#"[{"labels":{"alertname":"Hot"},"annotations":{},
                "startsAt":"0001-01-01T00:00:00.000Z","endsAt":"0001-01-01T00:00:00.000Z",
                "generatorURL":""}]"#,
        )
        .unwrap();
        let r = received(posted.into_iter().next().unwrap(), now);
        assert_eq!(r.starts_at, now.timestamp_millis(), "starts now");
        assert_eq!(r.ends_at, None, "fires until the resolve timeout");
        assert_eq!(r.generator_url, None);
    }
}
