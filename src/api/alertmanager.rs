//! Alertmanager's v2 API (its `api/v2/openapi.yaml`, release 0.25), enough for
//! `amtool` and other Alertmanager clients to use m4watch as an Alertmanager: the
//! firing alerts, silences and the status with the running notification config.
//! `POST /api/v2/alerts` lives with the notification routes.
//!
//! The answers have Alertmanager's shapes, every required field present, because
//! amtool's generated client validates them; its errors are a JSON string, as
//! Alertmanager's are and as that client decodes them (an answer of the auth layer
//! or the body extractor keeps m4watch's error body).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, middleware};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::alerts::{AlertError, Silence, StoredAlert};
use crate::clock::{rfc3339_ms, unix_now_ms as now_ms};
use crate::config::Dur;
use crate::model::alert::{
    Matcher, MatcherSpec, SilenceState, fingerprint, inhibited_by, is_label_name,
};

/// The Alertmanager routes: reads behind the read token, changes behind the write
/// token.
pub(crate) fn routes(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    let reads = OpenApiRouter::new()
        .routes(routes!(get_alerts))
        .routes(routes!(get_silences))
        .routes(routes!(get_silence))
        .routes(routes!(get_status))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            super::auth::require_read,
        ));
    let writes = super::writes(
        state,
        OpenApiRouter::new()
            .routes(routes!(post_silences))
            .routes(routes!(delete_silence)),
    );
    writes.merge(reads)
}

/// Go's zero time, `0001-01-01T00:00:00Z`, in Unix seconds.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

/// `t` unless it is Go's zero time, which Alertmanager's clients send for a time they
/// were not given (`amtool alert add` without `--start`/`--end`): that means unset.
pub(crate) fn unset_if_zero(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.filter(|t| !(t.timestamp() == GO_ZERO_UNIX_SECONDS && t.timestamp_subsec_nanos() == 0))
}

/// An error as Alertmanager answers it: a status and a JSON string.
#[derive(Debug)]
struct AmError(StatusCode, String);

impl AmError {
    fn bad_request(msg: impl Into<String>) -> Self {
        AmError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for AmError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<AlertError> for AmError {
    fn from(e: AlertError) -> Self {
        AmError(StatusCode::NOT_FOUND, e.to_string())
    }
}

impl From<PathRejection> for AmError {
    fn from(e: PathRejection) -> Self {
        AmError::bad_request(e.body_text())
    }
}

/// A JSON body's rejection: over the limit (413) and not JSON (415) keep m4watch's
/// error body, as every route documents them; a body that does not parse is
/// Alertmanager's 400.
fn body_rejected(e: JsonRejection) -> Response {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::from(e).into_response()
        }
        _ => AmError::bad_request(e.body_text()).into_response(),
    }
}

// --- query strings ----------------------------------------------------------------

/// Query of `GET /api/v2/alerts`. Keys may repeat (`filter`), so it is read from the
/// raw query; unknown keys are ignored, as Alertmanager ignores them.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AlertsQuery {
    /// Matchers (`alertname="X"`, `severity=~"crit.*"`, `a!=b`); an alert is listed
    /// when every one holds. Repeat the key for more.
    #[param(value_type = Option<Vec<String>>)]
    filter: Vec<Matcher>,
    /// List alerts neither silenced nor inhibited.
    #[param(value_type = Option<bool>, default = true)]
    active: bool,
    /// List silenced alerts.
    #[param(value_type = Option<bool>, default = true)]
    silenced: bool,
    /// List inhibited alerts.
    #[param(value_type = Option<bool>, default = true)]
    inhibited: bool,
    /// List unprocessed alerts (m4watch has none: it routes an alert as it takes it).
    #[param(value_type = Option<bool>, default = true)]
    unprocessed: bool,
    /// A regex (anchored) that one of an alert's receivers must match; empty: any.
    #[param(value_type = Option<String>)]
    receiver: Option<regex::Regex>,
}

/// Query of `GET /api/v2/silences`.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SilencesQuery {
    /// Matchers a silence's own matchers must satisfy, read as labels (`name` =
    /// `value`); repeat the key for more.
    #[param(value_type = Option<Vec<String>>)]
    filter: Vec<Matcher>,
}

/// The key/value pairs of a raw query string.
pub(crate) fn pairs(raw: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes()).map(|(k, v)| (k.into(), v.into()))
}

fn matcher(text: &str) -> Result<Matcher, AmError> {
    text.parse()
        .map_err(|e: crate::model::alert::MatcherError| AmError::bad_request(e.to_string()))
}

/// A boolean as Alertmanager's server reads one (Go's `strconv.ParseBool`).
fn boolean(key: &str, v: &str) -> Result<bool, AmError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(AmError::bad_request(format!(
            "{key} must be true or false, not {v:?}"
        ))),
    }
}

impl AlertsQuery {
    fn parse(raw: Option<&str>) -> Result<AlertsQuery, AmError> {
        let mut q = AlertsQuery {
            filter: Vec::new(),
            active: true,
            silenced: true,
            inhibited: true,
            unprocessed: true,
            receiver: None,
        };
        for (k, v) in pairs(raw) {
            match k.as_str() {
                "filter" => q.filter.push(matcher(&v)?),
                "active" => q.active = boolean(&k, &v)?,
                "silenced" => q.silenced = boolean(&k, &v)?,
                "inhibited" => q.inhibited = boolean(&k, &v)?,
                "unprocessed" => q.unprocessed = boolean(&k, &v)?,
                "receiver" if v.is_empty() => q.receiver = None,
                "receiver" => {
                    let re = regex::Regex::new(&format!("^(?:{v})$")).map_err(|e| {
                        AmError::bad_request(format!("failed to parse receiver param: {e}"))
                    })?;
                    q.receiver = Some(re);
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

impl SilencesQuery {
    fn parse(raw: Option<&str>) -> Result<SilencesQuery, AmError> {
        let mut filter = Vec::new();
        for (k, v) in pairs(raw) {
            if k == "filter" {
                filter.push(matcher(&v)?);
            }
        }
        Ok(SilencesQuery { filter })
    }
}

// --- alerts -------------------------------------------------------------------------

/// A receiver, by name.
#[derive(Serialize, utoipa::ToSchema)]
struct ReceiverName {
    name: String,
}

/// Where an alert stands in Alertmanager's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum AmAlertState {
    /// Firing, and neither silenced nor inhibited.
    Active,
    /// Firing, but silenced or inhibited.
    Suppressed,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AmAlertStatus {
    state: AmAlertState,
    /// Ids of the silences covering the alert.
    silenced_by: Vec<String>,
    /// Fingerprints of the firing alerts that inhibit it.
    inhibited_by: Vec<String>,
}

/// One firing alert as Alertmanager lists it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct GettableAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// The receivers the route tree sends it to.
    receivers: Vec<ReceiverName>,
    /// m4watch's alert id (the fingerprint of its label set).
    fingerprint: String,
    /// When it began firing.
    #[schema(format = DateTime)]
    starts_at: String,
    /// When it began firing (m4watch keeps no later update time of an alert).
    #[schema(format = DateTime)]
    updated_at: String,
    /// When it resolves unless it is still firing by then: a posted alert's `endsAt`
    /// (or 5 minutes after its last post); for m4watch's own rules, four evaluation
    /// intervals from now, as Prometheus sets it.
    #[schema(format = DateTime)]
    ends_at: String,
    status: AmAlertStatus,
    /// Link back to the alert's origin, when it was posted with one.
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    generator_url: Option<String>,
}

/// The firing alerts as Alertmanager lists them (sorted by fingerprint), filtered as
/// asked: `amtool alert query` asks for the active ones, `--silenced` for the silenced
/// ones. m4watch's own rules' firing alerts and those posted to `POST /api/v2/alerts`
/// are listed; pending and resolved alerts are not (Alertmanager holds neither).
#[utoipa::path(get, path = "/api/v2/alerts", tag = "alertmanager",
    params(AlertsQuery),
    responses(
        (status = 200, body = Vec<GettableAlert>),
        (status = 400, description = "a bad matcher, boolean or receiver regex", body = String, content_type = "application/json"),
        (status = 401, body = ErrorBody),
    ))]
async fn get_alerts(
    State(s): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<GettableAlert>>, AmError> {
    let q = AlertsQuery::parse(raw.as_deref())?;
    let now = now_ms();
    let firing = s.alerts.firing(now);
    let rules = s.notifier.inhibit_rules();
    let eval_ms =
        i64::try_from(s.config.rules.evaluation_interval.get().as_millis()).unwrap_or(i64::MAX / 8);
    let mut out = Vec::new();
    for (a, silenced_by) in &firing {
        let labels: BTreeMap<String, String> = a.labels.iter().cloned().collect();
        if !q.filter.iter().all(|m| m.matches(&labels)) {
            continue;
        }
        let receivers = s.notifier.receivers_for(&labels);
        if let Some(re) = &q.receiver {
            if !receivers.iter().any(|r| re.is_match(r)) {
                continue;
            }
        }
        let inhibited_by: Vec<String> =
            inhibited_by(&rules, firing.iter().map(|(f, _)| &f.labels), &a.labels)
                .map(fingerprint)
                .into_iter()
                .collect();
        let state = if silenced_by.is_empty() && inhibited_by.is_empty() {
            AmAlertState::Active
        } else {
            AmAlertState::Suppressed
        };
        let shown = (q.active || state != AmAlertState::Active)
            && (q.silenced || silenced_by.is_empty())
            && (q.inhibited || inhibited_by.is_empty());
        if !shown {
            continue;
        }
        out.push(gettable_alert(
            a,
            labels,
            receivers,
            AmAlertStatus {
                state,
                silenced_by: silenced_by.clone(),
                inhibited_by,
            },
            now.saturating_add(eval_ms.saturating_mul(4)),
        ));
    }
    out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    Ok(Json(out))
}

/// An alert in Alertmanager's shape; `rule_ends_at` is the end shown for an alert of
/// m4watch's own rules.
fn gettable_alert(
    a: &StoredAlert,
    labels: BTreeMap<String, String>,
    receivers: Vec<String>,
    status: AmAlertStatus,
    rule_ends_at: i64,
) -> GettableAlert {
    let started = a.fired_at.unwrap_or(a.active_at);
    GettableAlert {
        labels,
        annotations: a.annotations.iter().cloned().collect(),
        receivers: receivers
            .into_iter()
            .map(|name| ReceiverName { name })
            .collect(),
        fingerprint: a.id.clone(),
        starts_at: rfc3339_ms(started),
        updated_at: rfc3339_ms(started),
        ends_at: rfc3339_ms(a.expires_at.unwrap_or(rule_ends_at)),
        status,
        // A client that checks the `uri` format would refuse the whole list over one
        // unparsable link, so only a URL that parses is shown.
        generator_url: a
            .generator_url
            .clone()
            .filter(|u| reqwest::Url::parse(u).is_ok()),
    }
}

// --- silences -----------------------------------------------------------------------

/// A matcher in Alertmanager's shape.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AmMatcher {
    /// Label name.
    name: String,
    value: String,
    is_regex: bool,
    /// `false` negates the matcher (`!=`, `!~`).
    #[serde(default = "yes")]
    #[schema(default = true)]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

impl From<MatcherSpec> for AmMatcher {
    fn from(m: MatcherSpec) -> Self {
        AmMatcher {
            name: m.name,
            value: m.value,
            is_regex: m.is_regex,
            is_equal: m.is_equal,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct SilenceStatus {
    state: SilenceState,
}

/// One silence as Alertmanager lists it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct GettableSilence {
    id: String,
    status: SilenceStatus,
    /// When it was made or last changed.
    #[schema(format = DateTime)]
    updated_at: String,
    matchers: Vec<AmMatcher>,
    #[schema(format = DateTime)]
    starts_at: String,
    #[schema(format = DateTime)]
    ends_at: String,
    created_by: String,
    comment: String,
}

fn gettable_silence(s: Silence, now: i64) -> GettableSilence {
    GettableSilence {
        status: SilenceStatus {
            state: s.state(now),
        },
        updated_at: rfc3339_ms(s.updated_at),
        matchers: s.specs().into_iter().map(AmMatcher::from).collect(),
        starts_at: rfc3339_ms(s.starts_at),
        ends_at: rfc3339_ms(s.ends_at),
        id: s.id,
        created_by: s.created_by,
        comment: s.comment,
    }
}

/// Every silence still known (active, pending, and expired ones for
/// `rules.resolved_retention`), as Alertmanager orders them: active ones ending
/// soonest first, then pending ones starting soonest, then expired ones, the latest
/// to end first. With `filter`, only silences whose matchers, read as labels, satisfy
/// every filter matcher.
#[utoipa::path(get, path = "/api/v2/silences", tag = "alertmanager",
    params(SilencesQuery),
    responses(
        (status = 200, body = Vec<GettableSilence>),
        (status = 400, description = "a bad matcher", body = String, content_type = "application/json"),
        (status = 401, body = ErrorBody),
    ))]
async fn get_silences(
    State(s): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<GettableSilence>>, AmError> {
    let q = SilencesQuery::parse(raw.as_deref())?;
    let now = now_ms();
    let mut silences: Vec<Silence> = s
        .alerts
        .silences()
        .into_iter()
        .filter(|x| {
            let as_labels: BTreeMap<String, String> =
                x.specs().into_iter().map(|m| (m.name, m.value)).collect();
            q.filter.iter().all(|m| m.matches(&as_labels))
        })
        .collect();
    silences.sort_by_key(|x| match x.state(now) {
        SilenceState::Active => (0, x.ends_at),
        SilenceState::Pending => (1, x.starts_at),
        SilenceState::Expired => (2, -x.ends_at),
    });
    Ok(Json(
        silences
            .into_iter()
            .map(|x| gettable_silence(x, now))
            .collect(),
    ))
}

/// One silence.
#[utoipa::path(get, path = "/api/v2/silence/{silenceID}", tag = "alertmanager",
    params(("silenceID" = String, Path, description = "silence id")),
    responses(
        (status = 200, body = GettableSilence),
        (status = 400, description = "a path that cannot be read", body = String, content_type = "application/json"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such silence", body = String, content_type = "application/json"),
    ))]
async fn get_silence(
    State(s): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<GettableSilence>, AmError> {
    let Path(id) = id?;
    let silence = s.alerts.silence(&id).ok_or(AlertError::NoSilence(id))?;
    Ok(Json(gettable_silence(silence, now_ms())))
}

/// Body of `POST /api/v2/silences`: Alertmanager's `postableSilence`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    /// An existing silence to change (or, where Alertmanager would not change it in
    /// place, to expire and replace); absent or empty: a new silence.
    #[serde(default)]
    id: Option<String>,
    /// Every matcher must hold for the silence to apply; at least one must not match
    /// the empty string.
    #[schema(min_items = 1)]
    matchers: Vec<AmMatcher>,
    /// When it starts; absent, Go's zero time or a past time: now.
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
    /// When it ends: after now and after `startsAt`, at most
    /// `api.max_silence_duration` from now.
    ends_at: DateTime<Utc>,
    /// Who silences.
    #[schema(pattern = "\\S")]
    created_by: String,
    #[serde(default)]
    comment: String,
}

/// Answer of `POST /api/v2/silences`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PostedSilence {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

/// Creates a silence, or changes the one `id` names as Alertmanager does (`amtool
/// silence add`, `amtool silence update`). A silence lasts at most
/// `api.max_silence_duration` from now.
#[utoipa::path(post, path = "/api/v2/silences", tag = "alertmanager",
    request_body = PostableSilence,
    security(("bearer" = [])),
    responses(
        (status = 200, body = PostedSilence),
        (status = 400, description = "an invalid silence", body = String, content_type = "application/json"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no silence with that id", body = String, content_type = "application/json"),
        (status = 503, description = "not stored: the data directory does not take writes; retry", body = ErrorBody),
    ))]
async fn post_silences(
    State(s): State<Arc<AppState>>,
    body: Result<Json<PostableSilence>, JsonRejection>,
) -> Response {
    let b = match body {
        Ok(Json(b)) => b,
        Err(e) => return body_rejected(e),
    };
    let now = now_ms();
    let max = s.config.api.max_silence_duration;
    let silence = match silence_of(b.matchers, b.starts_at, b.ends_at, now, max) {
        Ok(x) => Silence {
            created_by: b.created_by.trim().to_string(),
            comment: b.comment,
            ..x
        },
        Err(msg) => return AmError::bad_request(msg).into_response(),
    };
    if silence.created_by.is_empty() {
        return AmError::bad_request("createdBy must name who silences").into_response();
    }
    let id = b.id.filter(|id| !id.is_empty());
    let put = super::durably(&s, || s.alerts.put_silence(id.as_deref(), silence, now)).await;
    let put = match put {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match put {
        Ok(x) => Json(PostedSilence { silence_id: x.id }).into_response(),
        Err(e) => AmError::from(e).into_response(),
    }
}

/// The silence a postable silence describes (no id, author or comment yet), or why it
/// is refused; it may last at most `max` (`api.max_silence_duration`) from `now`.
fn silence_of(
    matchers: Vec<AmMatcher>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: DateTime<Utc>,
    now: i64,
    max: Dur,
) -> Result<Silence, String> {
    if matchers.is_empty() {
        return Err("a silence needs at least one matcher".into());
    }
    let mut compiled = Vec::with_capacity(matchers.len());
    for m in matchers {
        if !is_label_name(&m.name) {
            return Err(format!("invalid label name {:?} in a matcher", m.name));
        }
        let spec = MatcherSpec {
            name: m.name,
            value: m.value,
            is_regex: m.is_regex,
            is_equal: m.is_equal,
        };
        compiled.push(spec.compile().map_err(|e| e.to_string())?);
    }
    let nothing: BTreeMap<String, String> = BTreeMap::new();
    if compiled.iter().all(|m| m.matches(&nothing)) {
        return Err(
            "at least one matcher must not match the empty string (this silence would silence every alert)"
                .into(),
        );
    }
    let Some(ends_at) = unset_if_zero(Some(ends_at)) else {
        return Err("endsAt is required".into());
    };
    let ends_at = ends_at.timestamp_millis();
    let starts_at = unset_if_zero(starts_at).map_or(now, |t| t.timestamp_millis());
    if starts_at >= ends_at {
        return Err("start time must be before end time".into());
    }
    if ends_at <= now {
        return Err("end time can't be in the past".into());
    }
    if ends_at - now > i64::try_from(max.get().as_millis()).unwrap_or(i64::MAX) {
        return Err(format!(
            "a silence may last at most {max} (api.max_silence_duration)"
        ));
    }
    Ok(Silence {
        id: String::new(),
        matchers: compiled,
        starts_at,
        ends_at,
        updated_at: now,
        created_by: String::new(),
        comment: String::new(),
    })
}

/// Expires a silence (`amtool silence expire`): an active one ends now, a pending one
/// never starts; it stays listed as expired. Expiring an expired silence changes
/// nothing.
#[utoipa::path(delete, path = "/api/v2/silence/{silenceID}", tag = "alertmanager",
    params(("silenceID" = String, Path, description = "silence id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "expired"),
        (status = 400, description = "a path that cannot be read", body = String, content_type = "application/json"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such silence", body = String, content_type = "application/json"),
        (status = 503, description = "not stored: the data directory does not take writes; retry", body = ErrorBody),
    ))]
async fn delete_silence(
    State(s): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(p) => p,
        Err(e) => return AmError::from(e).into_response(),
    };
    match super::durably(&s, || s.alerts.expire_silence(&id, now_ms())).await {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(e)) => AmError::from(e).into_response(),
        Err(e) => e.into_response(),
    }
}

// --- status -------------------------------------------------------------------------

/// m4watch is no cluster: always `disabled`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum ClusterState {
    Disabled,
}

/// A cluster peer (m4watch has none).
#[derive(Serialize, utoipa::ToSchema)]
struct PeerStatus {
    name: String,
    address: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ClusterStatus {
    status: ClusterState,
    /// Always empty.
    peers: Vec<PeerStatus>,
}

/// The build, in Alertmanager's fields; what m4watch does not record (branch, build
/// user and date, Go version) is an empty string, which the shape requires.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct VersionInfo {
    version: &'static str,
    /// The git revision, `unknown` when built outside a checkout.
    revision: &'static str,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AmConfig {
    /// The running `notifications:` section as YAML, secrets redacted.
    original: String,
}

/// Body of `GET /api/v2/status`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerStatus {
    cluster: ClusterStatus,
    version_info: VersionInfo,
    config: AmConfig,
    /// When this m4watch started (Alertmanager's field name).
    #[schema(format = DateTime)]
    uptime: String,
}

/// The running `notifications:` section, rendered as it would be written in
/// `m4watch.yml`.
#[derive(Serialize)]
struct Notifications {
    notifications: crate::config::notify::NotifyConfig,
}

/// Version, start time and the running notification config, secrets redacted (`amtool
/// config show`): the config file's `notifications:` section as last (re)loaded, each
/// receiver with the configure API's settings on top.
#[utoipa::path(get, path = "/api/v2/status", tag = "alertmanager",
    responses(
        (status = 200, body = AlertmanagerStatus),
        (status = 401, body = ErrorBody),
    ))]
async fn get_status(State(s): State<Arc<AppState>>) -> Result<Json<AlertmanagerStatus>, ApiError> {
    let running = Notifications {
        notifications: s.notifier.running_config(),
    };
    let original = serde_yaml_ng::to_string(&running).map_err(|e| {
        tracing::error!(error = %e, "rendering the notification config");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the notification config could not be rendered",
        )
    })?;
    let build = crate::store::BuildInfo::current();
    let up_ms = i64::try_from(s.started.elapsed().as_millis()).unwrap_or(0);
    Ok(Json(AlertmanagerStatus {
        cluster: ClusterStatus {
            status: ClusterState::Disabled,
            peers: Vec::new(),
        },
        version_info: VersionInfo {
            version: build.version,
            revision: build.revision,
            branch: "",
            build_user: "",
            build_date: "",
            go_version: "",
        },
        config: AmConfig { original },
        uptime: rfc3339_ms(now_ms() - up_ms),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_time_is_unset() {
        let zero: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(unset_if_zero(Some(zero)), None);
        let amtool: DateTime<Utc> = serde_json::from_str("\"0001-01-01T00:00:00.000Z\"").unwrap();
        assert_eq!(unset_if_zero(Some(amtool)), None, "as amtool sends it");
        let just_after: DateTime<Utc> = "0001-01-01T00:00:00.001Z".parse().unwrap();
        assert_eq!(unset_if_zero(Some(just_after)), Some(just_after));
        let epoch = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        assert_eq!(
            unset_if_zero(Some(epoch)),
            Some(epoch),
            "the Unix epoch is a time"
        );
    }

    #[test]
    fn alert_query_reads_repeated_filters_and_go_booleans() {
        let q = AlertsQuery::parse(Some(
            "filter=alertname%3D%22Hot%22&filter=severity%3D~%22crit.*%22&active=false&silenced=1&receiver=desk%7Cops&other=x",
        ))
        .unwrap();
        assert_eq!(q.filter.len(), 2);
        assert!(!q.active && q.silenced && q.inhibited && q.unprocessed);
        let re = q.receiver.unwrap();
        assert!(re.is_match("desk") && !re.is_match("desk2"), "anchored");
        assert!(AlertsQuery::parse(Some("active=yes")).is_err());
        assert!(AlertsQuery::parse(Some("filter=nope")).is_err());
        assert!(AlertsQuery::parse(Some("receiver=(")).is_err());
        let all = AlertsQuery::parse(None).unwrap();
        assert!(all.active && all.silenced && all.inhibited && all.receiver.is_none());
    }

    fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> AmMatcher {
        AmMatcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        }
    }

    #[test]
    fn postable_silences_are_checked_as_alertmanager_checks_them() {
        let now = 1_800_000_000_000;
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
        let zero: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
        let hour = 3_600_000;
        let max = Dur(std::time::Duration::from_secs(2 * 3600));
        let ok = silence_of(
            vec![m("alertname", "Hot", false, true)],
            Some(zero),
            at(now + hour),
            now,
            max,
        )
        .unwrap();
        assert_eq!(
            (ok.starts_at, ok.ends_at),
            (now, now + hour),
            "zero start: now"
        );
        let later = silence_of(
            vec![m("a", "b", false, true)],
            Some(at(now + 10)),
            at(now + hour),
            now,
            max,
        )
        .unwrap();
        assert_eq!(later.state(now), SilenceState::Pending);
        let refused = |ms: Vec<AmMatcher>, start: Option<DateTime<Utc>>, end: DateTime<Utc>| {
            silence_of(ms, start, end, now, max).unwrap_err()
        };
        let hot = || vec![m("alertname", "Hot", false, true)];
        assert!(refused(vec![], None, at(now + hour)).contains("at least one matcher"));
        assert!(
            refused(vec![m("a", "", false, true)], None, at(now + hour)).contains("empty string")
        );
        assert!(
            refused(vec![m("a", ".*", true, true)], None, at(now + hour)).contains("empty string")
        );
        assert!(
            refused(vec![m("1a", "b", false, true)], None, at(now + hour)).contains("label name")
        );
        assert!(refused(vec![m("a", "(", true, true)], None, at(now + hour)).contains("regex"));
        assert_eq!(refused(hot(), None, zero), "endsAt is required");
        assert_eq!(
            refused(hot(), Some(at(now - 10)), at(now - 1)),
            "end time can't be in the past"
        );
        assert!(refused(hot(), Some(at(now + hour)), at(now + hour)).contains("before end"));
        assert_eq!(
            refused(hot(), None, at(now + 3 * hour)),
            "a silence may last at most 2h (api.max_silence_duration)"
        );
        // `a!=""` matches only alerts that have the label, so it may stand alone.
        assert!(
            silence_of(
                vec![m("a", "", false, false)],
                None,
                at(now + hour),
                now,
                max
            )
            .is_ok()
        );
    }
}
