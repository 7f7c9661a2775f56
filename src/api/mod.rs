//! HTTP: `/metrics`, readiness, the JSON API, and the pages for people (`/`, `/docs`).
//!
//! Reads go through [`auth::require_read`]; every state-changing route is mounted
//! behind [`auth::require_write`]. Errors are [`error::ApiError`] JSON bodies.

pub(crate) mod advice;
pub(crate) mod alertmanager;
pub(crate) mod alerts;
pub(crate) mod auth;
pub(crate) mod containers;
pub(crate) mod dashboard;
pub(crate) mod error;
pub(crate) mod hardware;
pub(crate) mod heartbeat;
pub(crate) mod history;
pub(crate) mod notifications;
pub(crate) mod pages;
pub(crate) mod server;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod trading;
pub(crate) mod web;

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

use crate::model::{MetricDef, def};
use crate::store::{CollectorStatus, Store};

/// Handler panics: each answered a JSON 500 instead of dropping the connection.
pub(crate) const HTTP_PANICS_TOTAL: MetricDef = def(
    "m4watch_http_panics_total",
    crate::store::Kind::Counter,
    &[],
    "HTTP requests whose handler panicked; each was answered with a JSON 500 and logged.",
);

/// The API's own metric families.
pub(crate) const METRICS: &[MetricDef] = &[HTTP_PANICS_TOTAL];

/// Content type of the Prometheus text exposition format 0.0.4.
pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What every handler can reach.
pub(crate) struct AppState {
    pub config: Arc<crate::config::Config>,
    pub store: Arc<Store>,
    pub started: Instant,
    /// Every collector as configured; the enabled ones must have run once before the
    /// instance reports ready.
    pub collectors: Vec<crate::collect::Entry>,
    /// The latency ingest (HTTP samples, start/end measurements), the one collector
    /// handle a route writes through; `None` when `trading.enabled` is false. Reads
    /// go through the store's views.
    pub trading_ingest: Option<Arc<crate::collect::trading::Trading>>,
    /// Alert state: the rule engine's alerts and those Prometheus posted.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The running rule groups (the status lists them); `None` when `rules.enabled`
    /// is false.
    pub rules: Option<crate::alerts::evaluate::RulesHandle>,
    /// Asks the wiring to re-read the config and rule files.
    pub reload: crate::reload::Reload,
    /// Alert notifications: submit events, configure receivers, delivery results.
    pub notifier: crate::notify::Notifier,
    /// The history database; `None` when `history.enabled` is false.
    pub samples: Option<crate::persist::samples::SampleDb>,
    /// The recommendations' inputs.
    pub advisor: Arc<crate::advise::Advisor>,
    /// The dead-man's switch (idle when `heartbeat:` is absent).
    pub heartbeat: crate::heartbeat::Heartbeat,
    /// The bearer tokens in force (a reload swaps them; `config.api`'s are the
    /// start-up ones).
    pub access: Arc<auth::Access>,
    /// `--web.config.file`: TLS, basic auth and response headers, as last (re)loaded.
    pub web: Arc<web::Web>,
    /// Whether the data directory takes writes: every write route asks it first and
    /// answers 503 while it does not.
    pub storage: crate::persist::storage::Storage,
}

/// Makes a change of alert state only while the data directory takes writes, then
/// waits until it is committed: a write route answers 2xx only for what is durable,
/// and 503 with the reason otherwise (before the change when a fault is known).
pub(crate) async fn durably<T>(
    s: &AppState,
    change: impl FnOnce() -> T,
) -> Result<T, error::ApiError> {
    s.storage
        .guard()
        .map_err(|f| error::ApiError::storage(&f))?;
    let out = change();
    s.alerts
        .commit()
        .await
        .map_err(|f| error::ApiError::storage(&f))?;
    Ok(out)
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
pub(crate) fn api(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    // Reads: open unless api.read_token is set.
    let reads = OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(monitoring_metrics))
        .routes(routes!(health))
        .merge(trading::reads())
        .merge(containers::reads())
        .merge(hardware::reads())
        .merge(status::reads())
        .merge(dashboard::reads())
        .merge(history::reads())
        .merge(advice::reads())
        .merge(stats::reads())
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            auth::require_read,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        // Probes for orchestrators stay open, and so do the API document and the pages
        // for people (`/`, `/docs`): they change nothing.
        .routes(routes!(ready))
        .routes(routes!(healthy))
        .routes(routes!(openapi_json))
        .merge(pages::routes())
        .merge(reads)
        .merge(trading::writes(state))
        .merge(alerts::routes(state))
        .merge(alertmanager::routes(state))
        .merge(notifications::routes(state))
        .merge(heartbeat::routes(state))
        .merge(writes(state, OpenApiRouter::new().routes(routes!(reload))))
}

/// Re-reads the config and rule files, as `POST /-/reload` does for Prometheus and
/// Alertmanager (SIGHUP does the same). Rules, notifications and the heartbeat take the new settings
/// at once; other changed sections are listed as needing a restart. An invalid config
/// is refused with the reason and the running one stays
/// (`m4watch_config_last_reload_successful` 0).
#[utoipa::path(post, path = "/-/reload", tag = "meta",
    security(("bearer" = [])),
    responses(
        (status = 200, body = crate::reload::Outcome),
        (status = 400, description = "the new config is invalid; the running one stays", body = error::ErrorBody),
        (status = 401, body = error::ErrorBody),
    ))]
async fn reload(
    State(s): State<Arc<AppState>>,
) -> Result<axum::Json<crate::reload::Outcome>, error::ApiError> {
    s.reload
        .request()
        .await
        .map(axum::Json)
        .map_err(|e| error::ApiError::bad_request(format!("reload failed: {e}")))
}

/// The OpenAPI document of every route.
pub(crate) fn openapi(state: &Arc<AppState>) -> utoipa::openapi::OpenApi {
    let mut spec = api(state).into_openapi();
    document_body_errors(&mut spec);
    document_collectors(&mut spec, state.store.groups().names());
    spec
}

/// `collect[]` and `exclude[]` take the catalogue's collector names, which the handler
/// reads at run time (the catalogue sits above this layer): the spec lists them.
fn document_collectors(spec: &mut utoipa::openapi::OpenApi, names: &[&str]) {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    for path in ["/metrics", "/api/v1/monitoring/metrics"] {
        let Some(op) = spec.paths.paths.get_mut(path).and_then(|i| i.get.as_mut()) else {
            continue;
        };
        for p in op.parameters.iter_mut().flatten() {
            if p.name == "collect[]" || p.name == "exclude[]" {
                let item = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(names.iter().copied()));
                p.schema = Some(ArrayBuilder::new().items(item).into());
            }
        }
    }
}

/// Every operation that takes a JSON body may also answer 413 (over the body limit)
/// and 415 (not `application/json`), with the JSON error body; the extractor decides
/// these before any handler runs, so they are declared here once.
fn document_body_errors(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in spec.paths.paths.values_mut() {
        for op in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            if op.request_body.is_none() {
                continue;
            }
            let r = &mut op.responses.responses;
            r.entry("413".into())
                .or_insert_with(|| error("the body is over the 2 MiB limit").into());
            r.entry("415".into())
                .or_insert_with(|| error("the body is not application/json").into());
        }
    }
}

/// The OpenAPI document as JSON and as the `/docs` page, each built on the first request
/// for it: most daemons never serve them, and holding the document from start-up cost
/// resident memory (issue 17).
#[derive(Default)]
struct LazySpec {
    json: std::sync::OnceLock<String>,
    docs: std::sync::OnceLock<String>,
}

impl LazySpec {
    /// The document as JSON, built now if no request has needed it yet.
    fn json(&self, state: &Arc<AppState>) -> &str {
        self.json.get_or_init(|| {
            openapi(state)
                .to_json()
                .expect("the OpenAPI document serialises")
        })
    }
}

/// Every route, ready to serve.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    // The document the routers carry is dropped here; `openapi_json` builds its own
    // on first request.
    let (router, _spec) = api(&state).split_for_parts();
    let registry = state.store.registry().clone();
    let router = router
        .fallback(unknown_path)
        .layer(axum::Extension(Arc::new(LazySpec::default())))
        // `--web.config.file`: basic auth in front of everything, its headers on every answer.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            web::gate,
        ))
        .with_state(state);
    guard(router, &registry)
}

/// The layers every answer passes through: client errors become the JSON error body,
/// and a handler that panics answers a JSON 500 and counts in
/// `m4watch_http_panics_total` (registered in `registry`).
pub fn guard(router: Router, registry: &prometheus::Registry) -> Router {
    let panics = prometheus::IntCounter::new(HTTP_PANICS_TOTAL.name, HTTP_PANICS_TOTAL.help)
        .expect("valid metric");
    // A second daemon in the same registry (tests) keeps counting, unregistered.
    let _ = registry.register(Box::new(panics.clone()));
    router
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn(move |req, next| {
            catch_panic(panics.clone(), req, next)
        }))
}

/// A handler that panics answers a JSON 500 (and counts), instead of the connection
/// dropping with no reply.
async fn catch_panic(
    panics: prometheus::IntCounter,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    use futures_util::FutureExt;
    let what = format!("{} {}", req.method(), req.uri().path());
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(payload) => {
            panics.inc();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tracing::error!(request = %what, panic = %msg, "a handler panicked");
            error::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request failed inside m4watch; the log has the details",
            )
            .into_response()
        }
    }
}

/// Unknown paths answer with the JSON error body too.
async fn unknown_path(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found(format!("no route {}; see /api/v1/openapi.json", uri.path()))
}

/// Every client error is the JSON error body, whoever produced it: axum's rejections
/// (a path that is not UTF-8, a body over the limit, a wrong content type) answer in
/// plain text, and a known path with the wrong method answers 405 with an `Allow`
/// header but no body. Their text becomes the `detail`; headers are kept.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|a| a.to_str().ok())
            .unwrap_or("see /api/v1/openapi.json");
        format!("method not allowed here; allowed: {allowed}")
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("client error")
            .to_string()
    } else {
        text
    };
    let fresh = error::ApiError::new(status, error::kind_of(status), detail).into_response();
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        fresh_parts.headers[header::CONTENT_TYPE].clone(),
    );
    Response::from_parts(parts, body)
}

/// The OpenAPI 3.1 document describing this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json(
    State(state): State<Arc<AppState>>,
    axum::Extension(spec): axum::Extension<Arc<LazySpec>>,
) -> Response {
    let json = spec.json(&state).to_string();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// Puts `routes` behind the write token; every state-changing route is mounted
/// through this (axum refuses a route layer on a router with no routes, so each
/// feature wraps its own).
pub(crate) fn writes(
    state: &Arc<AppState>,
    routes: OpenApiRouter<Arc<AppState>>,
) -> OpenApiRouter<Arc<AppState>> {
    routes.route_layer(middleware::from_fn_with_state(
        Arc::clone(state),
        auth::require_write,
    ))
}

/// The Prometheus exposition of every metric m4watch exports, or of the named
/// collectors' families only (`collect[]`, node_exporter's parameter; or all but the
/// named ones with `exclude[]`), cut from the same snapshot: no collector runs and
/// nothing is encoded again.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    params(
        ("collect[]" = Option<Vec<String>>, Query, explode = true,
            description = "Serve only these collectors' families (repeat the key for more; \
                the README's metrics reference names each section's collector). Without it \
                (and without exclude[]), every family."),
        ("exclude[]" = Option<Vec<String>>, Query, explode = true,
            description = "Serve every collector's families but these (repeat the key for \
                more); not together with collect[]."),
    ),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 400, description = "an unknown collector name, or collect[] together with exclude[]", body = error::ErrorBody),
        (status = 503, description = "no snapshot yet", body = String, content_type = "text/plain"),
    ))]
async fn metrics(
    State(s): State<Arc<AppState>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let body = match scrape_selection(&s.store, raw.as_deref()) {
        Ok(None) => s.store.snapshot(),
        Ok(Some(sel)) => s.store.snapshot_of(sel),
        Err(e) => return e.into_response(),
    };
    match body {
        Some(body) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n").into_response(),
    }
}

/// The collectors a scrape's query selects: `None` for every family (no `collect[]`
/// and no `exclude[]`). Other keys are ignored, as node_exporter ignores them; an
/// unknown collector is a 400 naming the known ones, as node_exporter answers.
fn scrape_selection(
    store: &Store,
    raw: Option<&str>,
) -> Result<Option<crate::store::Selection>, error::ApiError> {
    let (mut collect, mut exclude) = (Vec::new(), Vec::new());
    for (k, v) in alertmanager::pairs(raw) {
        match k.as_str() {
            "collect[]" => collect.push(v),
            "exclude[]" => exclude.push(v),
            _ => {}
        }
    }
    if collect.is_empty() && exclude.is_empty() {
        return Ok(None);
    }
    if !collect.is_empty() && !exclude.is_empty() {
        return Err(error::ApiError::bad_request(
            "collect[] and exclude[] cannot be combined: name the collectors to serve, or those to leave out",
        ));
    }
    let groups = store.groups();
    let named = if collect.is_empty() {
        &exclude
    } else {
        &collect
    };
    let sel = groups
        .select(named.iter().map(String::as_str))
        .map_err(|unknown| {
            let key = if collect.is_empty() {
                "exclude[]"
            } else {
                "collect[]"
            };
            error::ApiError::bad_request(format!(
                "{key}: unknown collector {unknown:?}; the collectors are: {}",
                groups.names().join(", ")
            ))
        })?;
    Ok(Some(if collect.is_empty() {
        groups.complement(sel)
    } else {
        sel
    }))
}

/// The same exposition as `/metrics`, under the monitoring API prefix (the same
/// `collect[]` and `exclude[]`).
#[utoipa::path(get, path = "/api/v1/monitoring/metrics", tag = "metrics",
    params(
        ("collect[]" = Option<Vec<String>>, Query, explode = true,
            description = "As for /metrics: only these collectors' families."),
        ("exclude[]" = Option<Vec<String>>, Query, explode = true,
            description = "As for /metrics: every collector's families but these."),
    ),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 400, description = "an unknown collector name, or collect[] together with exclude[]", body = error::ErrorBody),
        (status = 503, description = "no snapshot yet", body = String, content_type = "text/plain"),
    ))]
async fn monitoring_metrics(s: State<Arc<AppState>>, q: axum::extract::RawQuery) -> Response {
    metrics(s, q).await
}

fn is_ready(s: &AppState) -> bool {
    let ran = s.store.collectors();
    s.store.snapshot().is_some()
        && s.collectors
            .iter()
            .filter(|c| c.enabled)
            .all(|c| ran.contains_key(c.name()))
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
pub(crate) struct Health {
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
