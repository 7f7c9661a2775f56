//! The notifier: alert events in, notifications out, none lost.
//!
//! ```text
//! AlertEvent ─> Notifier::submit ─> dispatch (routes, groups, timers, escalation)
//!            ─> outbox (SQLite, written before the first send) ─> workers (retry,
//!               backoff, rate limit) ─> slack | email | pagerduty | webhook | alertmanager
//! ```
//!
//! - [`config`]: the `notifications:` section.
//! - [`matcher`], [`timeinterval`]: route matchers and named time intervals.
//! - [`dispatch`]: route tree, grouping, repeat, escalation.
//! - [`outbox`]: the durable queue and delivery results.
//! - [`worker`]: delivery with backoff, `Retry-After` and per-receiver rate limits.
//! - one file per integration, each with `X::new(&XConfig, &Ctx)` and
//!   `X::notify(&Notification) -> Result<(), SendError>`.

pub(crate) mod alertmanager;
pub(crate) mod bridge;
pub(crate) mod dispatch;
pub(crate) mod email;
pub(crate) mod handle;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod pagerduty;
pub(crate) mod receiver;
pub(crate) mod route;
pub(crate) mod slack;
pub(crate) mod webhook;
pub(crate) mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::config::Identity;
pub(crate) use crate::model::alert::{AlertSource, Severity};
pub use handle::Notifier;
pub(crate) use metrics::METRICS;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
    /// Still firing, and someone took it (through the m4watch API): PagerDuty gets
    /// `acknowledge`, escalation stops.
    Acknowledged,
}

/// One alert transition, the notifier's only input. The rule engine's state machine
/// and `POST /api/v2/alerts` both produce these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable identity of the alert (its label set); PagerDuty's default `dedup_key`.
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub starts_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    /// The value that crossed the threshold, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Where the alert came from: `m4watch` rules or `prometheus`.
    pub source: AlertSource,
    /// Link back to the alert's origin (Prometheus's generatorURL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

impl AlertEvent {
    /// `alertname`, or `alert` when the label is missing.
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert")
    }

    /// The alert's place in the severity model: its `severity` label, a warning when
    /// the label is missing or names no severity.
    pub fn severity(&self) -> Severity {
        Severity::of_label(self.labels.get("severity").map(String::as_str))
    }

    /// The one-line summary: the `summary` annotation, else the alert name.
    pub fn summary(&self) -> String {
        self.annotations
            .get("summary")
            .cloned()
            .unwrap_or_else(|| self.name().to_string())
    }

    /// When a resolved alert's input went silent instead of recovering: the time in
    /// its `resolved_reason` annotation (`no data since T`, set by the rule engine).
    /// The integrations say "no data since T" for it, never "resolved".
    pub fn no_data_since(&self) -> Option<&str> {
        if self.state != AlertState::Resolved {
            return None;
        }
        self.annotations
            .get(crate::rules::RESOLVED_REASON)
            .and_then(|r| r.strip_prefix(crate::rules::NO_DATA_SINCE))
    }

    /// Whether this alert wants a resolved notice: label `m4watch_send_resolved`
    /// overrides the receiver's setting.
    pub fn wants_resolved(&self, receiver_default: bool) -> bool {
        match self.labels.get("m4watch_send_resolved").map(String::as_str) {
            Some("true") => true,
            Some("false") => false,
            _ => receiver_default,
        }
    }

    /// Named links to show beside the alert (runbook, dashboard, source).
    pub fn links(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, text) in [
            ("runbook_url", "Runbook"),
            ("dashboard_url", "Dashboard"),
            ("grafana_url", "Grafana"),
        ] {
            if let Some(u) = self.annotations.get(key) {
                out.push((text, u.clone()));
            }
        }
        if let Some(u) = &self.generator_url {
            out.push(("Source", u.clone()));
        }
        out
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Firing and resolved alerts of one group.
    Alert,
    /// An acknowledgement (PagerDuty only).
    Acknowledge,
    /// An unacknowledged alert sent on to the escalation receiver.
    Escalation,
    /// `POST /api/v1/monitoring/notifications/test`.
    Test,
}

/// One message to one receiver: what the outbox stores (never a secret: those are
/// looked up from the receiver at send time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub receiver: String,
    pub kind: Kind,
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub alerts: Vec<AlertEvent>,
}

impl Notification {
    /// `firing` when any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        if self.alerts.iter().any(|a| a.state != AlertState::Resolved) {
            "firing"
        } else {
            "resolved"
        }
    }

    /// The worst severity among the alerts still firing (among all when none fires).
    pub fn severity(&self) -> Severity {
        let firing = self
            .alerts
            .iter()
            .filter(|a| a.state != AlertState::Resolved)
            .map(AlertEvent::severity)
            .max();
        firing
            .or_else(|| self.alerts.iter().map(AlertEvent::severity).max())
            .unwrap_or(Severity::Warning)
    }

    /// Labels every alert shares.
    pub fn common_labels(&self) -> BTreeMap<String, String> {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Annotations every alert shares.
    pub fn common_annotations(&self) -> BTreeMap<String, String> {
        common(self.alerts.iter().map(|a| &a.annotations))
    }

    /// The headline: `[FIRING:2] HighCpu` style, as Alertmanager users know it.
    pub fn title(&self) -> String {
        let firing = self
            .alerts
            .iter()
            .filter(|a| a.state != AlertState::Resolved)
            .count();
        let name = self.alerts.first().map_or("alert", |a| a.name());
        let prefix = match self.kind {
            Kind::Test => "[TEST] ".to_string(),
            Kind::Escalation => "[ESCALATED] ".to_string(),
            Kind::Acknowledge => "[ACKNOWLEDGED] ".to_string(),
            Kind::Alert => String::new(),
        };
        // A fleet shares channels: the headline names the host when the alerts
        // share one.
        let on = self.host().map(|h| format!(" on {h}")).unwrap_or_default();
        if firing > 0 {
            format!("{prefix}[FIRING:{firing}] {name}{on}")
        } else if self.alerts.iter().any(|a| a.no_data_since().is_some()) {
            // Silence is not recovery: never headline it as resolved.
            format!("{prefix}[NO DATA] {name}{on}")
        } else {
            format!("{prefix}[RESOLVED] {name}{on}")
        }
    }

    /// The host the alerts are about, when they share one.
    pub fn host(&self) -> Option<String> {
        self.common_labels().remove(crate::config::HOST_LABEL)
    }
}

fn common<'a>(
    mut sets: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out = sets.next().cloned().unwrap_or_default();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// Why a delivery failed, as a bounded label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx, SMTP 4xx.
    ServerError,
    /// HTTP 4xx other than 429.
    ClientError,
    /// Could not connect, or the connection broke.
    Connection,
    Timeout,
    /// TLS or STARTTLS failed.
    Tls,
    /// SMTP authentication failed.
    Auth,
    /// The server refused the message for good (SMTP 5xx on an address or the data).
    Rejected,
    /// The notification itself cannot be built (bad address, bad template).
    Invalid,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::RateLimited,
        Reason::ServerError,
        Reason::ClientError,
        Reason::Connection,
        Reason::Timeout,
        Reason::Tls,
        Reason::Auth,
        Reason::Rejected,
        Reason::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RateLimited => "rate_limited",
            Reason::ServerError => "server_error",
            Reason::ClientError => "client_error",
            Reason::Connection => "connection",
            Reason::Timeout => "timeout",
            Reason::Tls => "tls",
            Reason::Auth => "auth",
            Reason::Rejected => "rejected",
            Reason::Invalid => "invalid",
        }
    }
}

/// A failed delivery: whether trying again can help, and why, in words that never
/// contain a secret (URLs are stripped from HTTP errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {message}", reason = reason.as_str())]
pub struct SendError {
    pub retryable: bool,
    pub reason: Reason,
    /// The server asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl SendError {
    pub fn retry(reason: Reason, message: impl Into<String>) -> Self {
        SendError {
            retryable: true,
            reason,
            retry_after: None,
            message: message.into(),
        }
    }

    pub fn fatal(reason: Reason, message: impl Into<String>) -> Self {
        SendError {
            retryable: false,
            reason,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// What every integration gets at construction.
#[derive(Clone)]
pub struct Ctx {
    /// Built on the first delivery: building it initialises the TLS library and reads
    /// the system's CA bundle, resident memory a daemon without HTTP receivers (the
    /// embedded default) never needs (issue 17).
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    pub timeout: Duration,
    /// This host's name, for the SMTP greeting and PagerDuty's `source` when the
    /// alert names no host.
    pub hostname: String,
    /// External labels and URLs (`external_labels`, `external_url`, `grafana_url`).
    pub identity: Arc<Identity>,
    /// Posts and failures per Alertmanager, when the notifier counts them.
    pub(crate) alertmanagers: Option<metrics::AlertmanagerCounters>,
}

impl Ctx {
    pub fn new(timeout: Duration) -> Ctx {
        Ctx {
            http: Arc::default(),
            timeout,
            hostname: crate::config::hostname(),
            identity: Arc::new(Identity::of_this_host()),
            alertmanagers: None,
        }
    }

    /// The same context for an m4watch with this identity.
    pub fn with_identity(mut self, identity: Identity) -> Ctx {
        self.identity = Arc::new(identity);
        self
    }

    /// The HTTP client every integration shares.
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            crate::tls::http_client()
                .timeout(self.timeout)
                .user_agent(concat!("m4watch/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("HTTP client")
        })
    }
}

/// An event as it leaves this m4watch: the external labels it lacks added (an alert
/// keeps the labels it was sent or evaluated with), and its relative `runbook_url` /
/// `dashboard_url` made absolute against `external_url` / `grafana_url` (dropped when
/// there is no base to resolve against).
pub(crate) fn outward(mut ev: AlertEvent, id: &Identity) -> AlertEvent {
    id.label(&mut ev.labels);
    for (key, base) in [
        ("runbook_url", Some(id.external_url.as_str())),
        ("dashboard_url", id.grafana_url.as_deref()),
    ] {
        if let Some(v) = ev.annotations.get(key) {
            match Identity::resolve(base, v) {
                Some(abs) => {
                    ev.annotations.insert(key.to_string(), abs);
                }
                None => {
                    ev.annotations.remove(key);
                }
            }
        }
    }
    ev
}

/// The one HTTP status policy: 2xx delivered, 429 and 5xx retried (honouring
/// `Retry-After`), every other status fatal.
pub(crate) fn check_status(status: StatusCode, headers: &HeaderMap) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    let message = format!("HTTP {status}");
    if status == StatusCode::TOO_MANY_REQUESTS {
        Err(SendError {
            retry_after,
            ..SendError::retry(Reason::RateLimited, message)
        })
    } else if status.is_server_error() {
        Err(SendError {
            retry_after,
            ..SendError::retry(Reason::ServerError, message)
        })
    } else {
        Err(SendError::fatal(Reason::ClientError, message))
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Maps a transport error without echoing its URL (a webhook URL is a secret).
pub(crate) fn transport_error(e: reqwest::Error) -> SendError {
    let reason = if e.is_timeout() {
        Reason::Timeout
    } else {
        Reason::Connection
    };
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    SendError::retry(reason, text)
}

/// Most bytes of a receiver's answer read (issue 25): Slack answers `ok`, PagerDuty and
/// Alertmanager a few hundred bytes of JSON; a peer that sends more (or never stops) is
/// cut off and its connection dropped, the send judged by the status alone.
pub(crate) const MAX_RECEIVER_ANSWER: usize = 64 * 1024;

/// POSTs JSON and applies [`check_status`]. The whole exchange, answer included, ends
/// within `ctx.timeout`; at most [`MAX_RECEIVER_ANSWER`] bytes of the answer are read.
pub(crate) async fn post_json<T: Serialize + ?Sized>(
    ctx: &Ctx,
    url: &str,
    body: &T,
) -> Result<(), SendError> {
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    let mut resp = ctx
        .http()
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(transport_error)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    // Drained (bounded) so the connection can be reused; cut off, it is dropped.
    match crate::tls::read_bounded(&mut resp, MAX_RECEIVER_ANSWER, deadline).await {
        Err(crate::tls::BodyError::Deadline(_)) if status.is_success() => {
            return Err(SendError::retry(
                Reason::Timeout,
                format!("no complete answer within {:?}", ctx.timeout),
            ));
        }
        Ok(_) | Err(_) => {}
    }
    check_status(status, &headers)
}

/// Label pairs as a map, for tests.
#[cfg(test)]
pub(crate) fn test_labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::fingerprint;

    fn status(code: u16, retry_after: Option<&str>) -> Result<(), SendError> {
        let mut h = HeaderMap::new();
        if let Some(r) = retry_after {
            h.insert(reqwest::header::RETRY_AFTER, r.parse().unwrap());
        }
        check_status(StatusCode::from_u16(code).unwrap(), &h)
    }

    #[test]
    fn http_status_policy() {
        assert!(status(200, None).is_ok());
        assert!(status(202, None).is_ok());
        let e = status(429, Some("7")).unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.reason, Reason::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = status(503, None).unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.reason, Reason::ServerError);
        for code in [400, 401, 403, 404, 413] {
            let e = status(code, None).unwrap_err();
            assert!(!e.retryable, "{code}");
            assert_eq!(e.reason, Reason::ClientError);
        }
    }

    #[test]
    fn retry_after_as_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a: BTreeMap<String, String> = [("alertname".into(), "A".into())].into();
        let b: BTreeMap<String, String> = [("alertname".into(), "B".into())].into();
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
    }

    #[test]
    fn per_alert_send_resolved_overrides_the_receiver() {
        let mut e = test_event("A", AlertState::Resolved);
        assert!(e.wants_resolved(true));
        e.labels
            .insert("m4watch_send_resolved".into(), "false".into());
        assert!(!e.wants_resolved(true));
        e.labels
            .insert("m4watch_send_resolved".into(), "true".into());
        assert!(e.wants_resolved(false));
    }

    /// Issue 27: what leaves the host names it and links somewhere real.
    #[test]
    fn outward_events_name_their_host_and_carry_absolute_links() {
        let id = Identity {
            external_labels: vec![
                ("desk".into(), "fx".into()),
                ("host".into(), "mac-07".into()),
            ],
            external_url: "http://mac-07:9977".into(),
            grafana_url: Some("http://grafana:3000".into()),
            evaluation_interval: Duration::from_secs(1),
        };
        let mut ev = test_event("PCoreHigh", AlertState::Firing);
        ev.annotations
            .insert("runbook_url".into(), "/runbooks#pcorehigh".into());
        ev.annotations
            .insert("dashboard_url".into(), "/d/m4watch-hardware".into());
        let fp = ev.fingerprint.clone();
        let out = outward(ev.clone(), &id);
        assert_eq!(out.labels["host"], "mac-07");
        assert_eq!(out.labels["desk"], "fx");
        assert_eq!(out.fingerprint, fp, "the alert's identity is the store's");
        assert_eq!(
            out.links(),
            vec![
                (
                    "Runbook",
                    "http://mac-07:9977/runbooks#pcorehigh".to_string()
                ),
                (
                    "Dashboard",
                    "http://grafana:3000/d/m4watch-hardware".to_string()
                ),
            ]
        );
        let n = Notification {
            receiver: "r".into(),
            kind: Kind::Alert,
            group_key: "g".into(),
            group_labels: Default::default(),
            alerts: vec![out],
        };
        assert_eq!(n.title(), "[FIRING:1] PCoreHigh on mac-07");
        // Without Grafana, the relative dashboard link is dropped, not sent broken;
        // a label the alert was sent with is kept.
        ev.labels.insert("host".into(), "prometheus-named".into());
        let out = outward(
            ev,
            &Identity {
                grafana_url: None,
                ..id
            },
        );
        assert_eq!(out.labels["host"], "prometheus-named");
        assert!(!out.annotations.contains_key("dashboard_url"));
        assert_eq!(out.links().len(), 1);
    }

    /// An event for tests.
    pub(crate) fn test_event(name: &str, state: AlertState) -> AlertEvent {
        let labels: BTreeMap<String, String> = [
            ("alertname".to_string(), name.to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]
        .into();
        AlertEvent {
            fingerprint: fingerprint(&labels),
            labels,
            annotations: [("summary".to_string(), format!("{name} is high"))].into(),
            state,
            starts_at: Utc::now(),
            ends_at: None,
            value: Some(0.97),
            source: AlertSource::Rules,
            generator_url: None,
        }
    }
}
