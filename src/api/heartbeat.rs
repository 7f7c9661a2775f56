//! The heartbeat's dry run: `POST /api/v1/monitoring/heartbeat/test`, what
//! `m4watch validate` calls to check the dead-man's switch without beating.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::{AppState, writes};

/// The heartbeat route, behind the write token (it opens a connection off the host).
pub(crate) fn routes(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    writes(state, OpenApiRouter::new().routes(routes!(test)))
}

/// Body of `POST /api/v1/monitoring/heartbeat/test`.
#[derive(Serialize, utoipa::ToSchema)]
struct HeartbeatTest {
    /// `GET` or `POST`.
    method: &'static str,
    /// Scheme, host and port of the ping URL (its path identifies the check and is
    /// never shown); absent when it could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
    /// Names of the extra headers; their values are secrets.
    headers: Vec<String>,
    interval_seconds: f64,
    /// The request was built and the destination accepted a TCP connection (nothing
    /// was sent).
    reachable: bool,
    /// Why not, when not reachable: a bounded reason and a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Whether a beat would go now: the rule engine evaluated recently and the
    /// outbox drains.
    healthy: bool,
    /// Why a beat would be skipped now: `rules_stalled`, `outbox_stalled` or
    /// `delivery_backlog`.
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<&'static str>,
}

/// Dry-runs the heartbeat: builds the request and opens (then closes) a TCP
/// connection to the ping URL's host and port, sending nothing; and says whether a
/// beat would go now. 404 when `heartbeat:` is not configured.
#[utoipa::path(post, path = "/api/v1/monitoring/heartbeat/test", tag = "monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, body = HeartbeatTest),
        (status = 401, body = ErrorBody),
        (status = 404, description = "the heartbeat is disabled in the config", body = ErrorBody),
    ))]
async fn test(State(s): State<Arc<AppState>>) -> Result<Json<HeartbeatTest>, ApiError> {
    let Some((method, headers, interval, gate)) = s.heartbeat.describe() else {
        return Err(ApiError::not_found(
            "the heartbeat is disabled in the config: add a heartbeat: section",
        ));
    };
    let checked = s.heartbeat.dry_run().await;
    let (destination, reason, error) = match checked {
        Some(Ok(destination)) => (Some(destination), None, None),
        Some(Err(e)) => (None, Some(e.reason.as_str()), Some(e.message)),
        // Turned off by a reload in between.
        None => (
            None,
            Some("invalid"),
            Some("the heartbeat was turned off".into()),
        ),
    };
    Ok(Json(HeartbeatTest {
        method,
        reachable: destination.is_some(),
        destination,
        headers,
        interval_seconds: interval.as_secs_f64(),
        reason,
        error,
        healthy: gate.is_ok(),
        skip_reason: gate.err().map(|s| s.as_str()),
    }))
}
