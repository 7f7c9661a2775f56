//! HTTP: `/metrics`, readiness, and the JSON API.
//!
//! Reads go through [`auth::require_read`]; every state-changing route is mounted
//! behind [`auth::require_write`]. Errors are [`error::ApiError`] JSON bodies.

pub mod advice;
pub mod alerts;
pub mod auth;
pub mod containers;
pub mod error;
pub mod history;
pub mod monitoring;
pub mod notifications;
pub mod trading;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};

use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::{CollectorStatus, Store};

/// Content type of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<crate::config::Config>,
    pub store: Arc<Store>,
    pub started: Instant,
    /// Every collector as configured; the enabled ones must have run once before the
    /// instance reports ready.
    pub collectors: Vec<crate::collect::Entry>,
    /// The trading store; `None` when `trading.enabled` is false.
    pub trading: Option<Arc<crate::collect::trading::Trading>>,
    /// Alert state: the rule engine's alerts and those Prometheus posted.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// Alert notifications: submit events, configure receivers, delivery results.
    pub notifier: crate::notify::Notifier,
    /// The history database; `None` when `history.enabled` is false.
    pub samples: Option<crate::persist::samples::SampleDb>,
    /// The recommendations' inputs.
    pub advisor: Arc<crate::advise::Advisor>,
}

/// The spec's fixed parts; paths and schemas come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "m4watch",
        description = "Monitoring sidecar for Apple M4 Max trading hosts: hardware, containers, trading latency, alerts.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

/// Declares the bearer token scheme that state-changing routes require.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every documented route, with its spec. Routes are registered only through
/// `routes!` on handlers annotated with `#[utoipa::path]`, so a route cannot exist
/// without its entry in the spec (a test greps for plain axum route calls).
pub fn api(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    // Reads: open unless api.read_token is set.
    let reads = OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(monitoring_metrics))
        .routes(routes!(health))
        .merge(trading::reads())
        .merge(containers::reads())
        .merge(monitoring::reads())
        .merge(history::reads())
        .merge(advice::reads())
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            auth::require_read,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        // Probes for orchestrators stay open.
        .routes(routes!(ready))
        .routes(routes!(healthy))
        .routes(routes!(openapi_json))
        .merge(reads)
        .merge(trading::writes(state))
        .merge(alerts::routes(state))
        .merge(notifications::routes(state))
}

/// The OpenAPI document of every route.
pub fn openapi(state: &Arc<AppState>) -> utoipa::openapi::OpenApi {
    api(state).into_openapi()
}

/// The OpenAPI document as JSON, built on the first request for it: most daemons never
/// serve it, and holding it from start-up cost resident memory (issue 17).
#[derive(Default)]
struct LazySpec(std::sync::OnceLock<String>);

/// Every route, ready to serve.
pub fn router(state: Arc<AppState>) -> Router {
    // The document the routers carry is dropped here; `openapi_json` builds its own.
    let (router, _spec) = api(&state).split_for_parts();
    router
        .fallback(unknown_path)
        .layer(middleware::map_response(json_method_not_allowed))
        .layer(axum::Extension(Arc::new(LazySpec::default())))
        .with_state(state)
}

/// Unknown paths answer with the JSON error body too.
async fn unknown_path(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found(format!("no route {}; see /api/v1/openapi.json", uri.path()))
}

/// axum answers a known path with the wrong method 405 and an `Allow` header but no
/// body; give it the JSON error body, keeping the header.
async fn json_method_not_allowed(resp: Response) -> Response {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let allowed = allow
        .as_ref()
        .and_then(|a| a.to_str().ok())
        .unwrap_or("see /api/v1/openapi.json")
        .to_string();
    let mut out = error::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method not allowed here; allowed: {allowed}"),
    )
    .into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// The OpenAPI 3.1 document describing this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json(
    State(state): State<Arc<AppState>>,
    axum::Extension(spec): axum::Extension<Arc<LazySpec>>,
) -> Response {
    let json = spec.0.get_or_init(|| {
        openapi(&state)
            .to_json()
            .expect("the OpenAPI document serialises")
    });
    ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
}

/// Puts `routes` behind the write token; every state-changing route is mounted
/// through this (axum refuses a route layer on a router with no routes, so each
/// feature wraps its own).
pub fn writes(
    state: &Arc<AppState>,
    routes: OpenApiRouter<Arc<AppState>>,
) -> OpenApiRouter<Arc<AppState>> {
    routes.route_layer(middleware::from_fn_with_state(
        Arc::clone(state),
        auth::require_write,
    ))
}

/// The Prometheus exposition of every metric m4watch exports.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 503, description = "no snapshot yet", body = String, content_type = "text/plain"),
    ))]
async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    match s.store.snapshot() {
        Some(body) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n").into_response(),
    }
}

/// The same exposition as `/metrics`, under the monitoring API prefix.
#[utoipa::path(get, path = "/api/v1/monitoring/metrics", tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 503, description = "no snapshot yet", body = String, content_type = "text/plain"),
    ))]
async fn monitoring_metrics(s: State<Arc<AppState>>) -> Response {
    metrics(s).await
}

fn is_ready(s: &AppState) -> bool {
    let ran = s.store.collectors();
    s.store.snapshot().is_some()
        && s.collectors
            .iter()
            .filter(|c| c.enabled)
            .all(|c| ran.contains_key(c.name))
}

/// Readiness: 200 once every enabled collector has run once.
#[utoipa::path(get, path = "/-/ready", tag = "meta",
    responses(
        (status = 200, description = "ready", body = String, content_type = "text/plain"),
        (status = 503, description = "collectors have not all run yet", body = String, content_type = "text/plain"),
    ))]
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

/// Liveness: 200 while the process serves HTTP.
#[utoipa::path(get, path = "/-/healthy", tag = "meta",
    responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
async fn healthy() -> &'static str {
    "OK\n"
}

/// Body of `GET /api/v1/monitoring/health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy` when every collector's last run succeeded, else `degraded`.
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub ready: bool,
    pub collectors: std::collections::BTreeMap<String, CollectorStatus>,
}

/// Collector health: `healthy` when every collector's last run succeeded.
#[utoipa::path(get, path = "/api/v1/monitoring/health", tag = "monitoring",
    responses((status = 200, body = Health), (status = 401, body = error::ErrorBody)))]
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
