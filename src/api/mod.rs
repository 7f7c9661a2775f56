//! HTTP: `/metrics`, readiness, and the JSON API.
//!
//! Reads go through [`auth::require_read`]; every state-changing route is mounted
//! behind [`auth::require_write`]. Errors are [`error::ApiError`] JSON bodies.

pub mod alerts;
pub mod auth;
pub mod containers;
pub mod error;
pub mod notifications;
pub mod trading;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::store::{CollectorStatus, Store};

/// Content type of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<crate::config::Config>,
    pub store: Arc<Store>,
    pub started: Instant,
    /// Collectors that must have run once before the instance reports ready.
    pub expected_collectors: Vec<&'static str>,
    /// The trading store; `None` when `trading.enabled` is false.
    pub trading: Option<Arc<crate::collect::trading::Trading>>,
    /// Alert state; `None` when the rule engine is off.
    pub alerts: Option<Arc<crate::alerts::Alerts>>,
    /// Alert notifications: submit events, configure receivers, delivery results.
    pub notifier: crate::notify::Notifier,
    /// The container collector's latest report.
    pub containers: Arc<crate::collect::containers::Latest>,
}

/// Every route.
pub fn router(state: Arc<AppState>) -> Router {
    // Reads: open unless api.read_token is set.
    let reads = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/monitoring/health", get(health))
        .merge(trading::reads())
        .route(
            "/api/v1/monitoring/containers/metrics",
            get(containers::metrics),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_read,
        ));
    Router::new()
        // Probes for orchestrators stay open.
        .route("/-/ready", get(ready))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .merge(reads)
        .merge(trading::writes(&state))
        .merge(alerts::routes(&state))
        .merge(notifications::routes(&state))
        .with_state(state)
}

/// Puts `routes` behind the write token; every state-changing route is mounted
/// through this (axum refuses a route layer on a router with no routes, so each
/// feature wraps its own).
pub fn writes(state: &Arc<AppState>, routes: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    routes.route_layer(middleware::from_fn_with_state(
        Arc::clone(state),
        auth::require_write,
    ))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    match s.store.snapshot() {
        Some(body) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n").into_response(),
    }
}

fn is_ready(s: &AppState) -> bool {
    let ran = s.store.collectors();
    s.store.snapshot().is_some() && s.expected_collectors.iter().all(|c| ran.contains_key(*c))
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    if is_ready(&s) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "collectors have not all run yet\n",
        )
            .into_response()
    }
}

/// Body of `GET /api/v1/monitoring/health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `healthy` when every collector's last run succeeded, else `degraded`.
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub ready: bool,
    pub collectors: std::collections::BTreeMap<String, CollectorStatus>,
}

async fn health(State(s): State<Arc<AppState>>) -> axum::Json<Health> {
    let collectors = s.store.collectors();
    let all_ok = collectors.values().all(|c| c.success);
    axum::Json(Health {
        status: if all_ok { "healthy" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: s.started.elapsed().as_secs_f64(),
        ready: is_ready(&s),
        collectors,
    })
}
