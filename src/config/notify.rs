//! The `notifications:` config section: receivers, the route tree, time intervals and
//! escalation. Parsed by serde with unknown keys refused; [`NotifyConfig::resolve`]
//! fills secrets from `*_file` keys and the environment and checks what serde cannot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::timeinterval::TimeInterval;
use super::yes;
use crate::config::{
    Dur, EnvLookup, MIN_SLOW_INTERVAL, Secret, at_least, positive, resolve_secret,
};
use crate::model::alert::{InhibitRule, Matcher};

/// The whole `notifications:` section. Every part is optional: with no receivers,
/// alerts go to the `default` receiver, which has no integrations until
/// `POST /api/v1/monitoring/notifications/configure` gives it some.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteConfig>,
    #[serde(default)]
    pub time_intervals: Vec<TimeInterval>,
    /// Critical alerts nobody acknowledged in time also go to another receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationConfig>,
    /// Alertmanager's inhibition: while a source alert fires, matching targets are
    /// not notified. Unset: the shipped pairs ([`shipped_inhibit_rules`]), so a
    /// critical suppresses its warning; `[]` turns inhibition off.
    #[serde(default = "shipped_inhibit_rules")]
    pub inhibit_rules: Vec<InhibitRule>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            receivers: Vec::new(),
            route: None,
            time_intervals: Vec::new(),
            escalation: None,
            inhibit_rules: shipped_inhibit_rules(),
            delivery: DeliveryConfig::default(),
        }
    }
}

/// Retry policy of the outbox workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(default = "d_initial_backoff")]
    pub initial_backoff: Dur,
    /// Longest delay between two attempts (a longer `Retry-After` is still honoured up
    /// to `max_age`).
    #[serde(default = "d_max_backoff")]
    pub max_backoff: Dur,
    /// A notification still undelivered this long after it was queued is given up.
    #[serde(default = "d_max_age")]
    pub max_age: Dur,
    /// Per-request timeout.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

fn d_initial_backoff() -> Dur {
    Dur(Duration::from_secs(1))
}
fn d_max_backoff() -> Dur {
    Dur(Duration::from_secs(300))
}
fn d_max_age() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}
fn d_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            initial_backoff: d_initial_backoff(),
            max_backoff: d_max_backoff(),
            max_age: d_max_age(),
            timeout: d_timeout(),
        }
    }
}

/// A named receiver: any of the integrations, each delivered on its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    /// Send a notice when an alert resolves (an alert's `m4watch_send_resolved`
    /// label overrides this).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Most notifications per second this receiver is sent (all integrations
    /// together); excess ones wait in the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDutyConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerConfig>,
}

/// Slack incoming webhook (env `M4WATCH_SLACK_WEBHOOK_URL` when neither key is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub webhook_url_file: Option<PathBuf>,
    /// Overrides the webhook's default channel, when the webhook allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (refuses servers without it).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption, for a relay on localhost.
    None,
}

/// The most recipients one email receiver may name: every notification is one SMTP
/// session with one `RCPT TO` per recipient, and a long list held a lane (and, built
/// on an async worker, the server) for minutes.
pub const MAX_EMAIL_RECIPIENTS: usize = 100;

/// Email over SMTP (password from env `M4WATCH_SMTP_PASSWORD` when neither key is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    #[serde(default)]
    pub tls: SmtpTls,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub password_file: Option<PathBuf>,
    /// Name sent in EHLO; the host name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<String>,
    /// A PEM CA certificate to trust besides the system's, for a relay with a
    /// private CA: the CA that issued the relay's certificate (rustls refuses a
    /// server certificate that is itself a CA, as a self-signed one usually is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ca_file: Option<PathBuf>,
}

/// PagerDuty Events API v2 (routing key from env `M4WATCH_PAGERDUTY_ROUTING_KEY`
/// when neither key is set).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub routing_key_file: Option<PathBuf>,
    /// Shown with its credentials and query redacted (a query may carry a token).
    #[serde(default = "d_pd_url", serialize_with = "redacted_url")]
    pub url: String,
    /// `dedup_key` template: `{{ fingerprint }}`, `{{ labels.NAME }}`,
    /// `{{ group_key }}`. One PagerDuty incident per alert by default.
    #[serde(default = "d_dedup")]
    pub dedup_key: String,
    /// `payload.source`; the alert's `instance` label, else the host name, when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn d_pd_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}
fn d_dedup() -> String {
    "{{ fingerprint }}".into()
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        PagerDutyConfig {
            routing_key: None,
            routing_key_file: None,
            url: d_pd_url(),
            dedup_key: d_dedup(),
            source: None,
        }
    }
}

/// The Alertmanager webhook JSON, POSTed to any URL.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: Secret,
}

/// Forwarding to real Alertmanagers (`/api/v2/alerts` is appended to each base URL).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Shown with their credentials and queries redacted.
    #[serde(serialize_with = "redacted_urls")]
    pub urls: Vec<String>,
    /// Every firing alert is posted again this often (Prometheus's
    /// `--rules.alert.resend-delay`), with `endsAt` four of these (or four evaluation
    /// intervals, if longer) ahead, so Alertmanager keeps it while it fires and
    /// resolves it soon after this host stops posting.
    #[serde(default = "AlertmanagerConfig::default_resend_delay")]
    #[schema(value_type = String)]
    pub resend_delay: Dur,
}

impl AlertmanagerConfig {
    fn default_resend_delay() -> Dur {
        Dur(std::time::Duration::from_secs(60))
    }
}

/// `u` with the password, user name, query and fragment replaced by `<redacted>`:
/// what a view may show of a URL that can carry credentials.
pub fn redact_url(u: &str) -> String {
    const R: &str = "<redacted>";
    let Ok(mut url) = reqwest::Url::parse(u) else {
        return R.to_string();
    };
    let mut text = String::new();
    let userinfo = !url.username().is_empty() || url.password().is_some();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let query = url.query().is_some();
    let fragment = url.fragment().is_some();
    url.set_query(None);
    url.set_fragment(None);
    let plain = url.to_string();
    match plain.split_once("://") {
        Some((scheme, rest)) if userinfo => {
            text.push_str(&format!("{scheme}://{R}@{rest}"));
        }
        _ => text.push_str(&plain),
    }
    if query {
        text.push_str(&format!("?{R}"));
    }
    if fragment {
        text.push_str(&format!("#{R}"));
    }
    text
}

fn redacted_url<S: serde::Serializer>(u: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(u))
}

fn redacted_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| redact_url(u)))
}

/// One node of the route tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Inherited from the parent when unset; the root needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// `label="value"`, `label!="value"`, `label=~"regex"`, `label!~"regex"`; all
    /// must hold.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Labels that split alerts into groups; `["..."]` makes one group per alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<Dur>,
    /// Keep trying the following sibling routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// Escalation of unacknowledged alerts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    pub receiver: String,
    pub after: Dur,
    /// Which alerts escalate; the paging severities (`severity=~"critical|emergency"`)
    /// when unset.
    #[serde(default = "d_escalate_matchers")]
    pub matchers: Vec<Matcher>,
}

fn d_escalate_matchers() -> Vec<Matcher> {
    vec![
        "severity=~\"critical|emergency\""
            .parse()
            .expect("valid matcher"),
    ]
}

/// The shipped rules' escalation pairs, worse over milder on the same host:
/// `(sources, target)`. `prometheus/alertmanager.yml` carries the same list (a test
/// keeps the two equal).
pub const SHIPPED_INHIBITIONS: &[(&str, &str)] = &[
    ("PerformanceCoresSaturated", "PerformanceCoresBusy"),
    ("PerformanceCoresSaturated", "PerformanceCoreSaturated"),
    ("NeuralEngineSaturated", "NeuralEngineBusy"),
    (
        "MemoryUsedCritical|MemoryExhaustionImminent",
        "MemoryUsedHigh",
    ),
    ("MemoryExhaustionImminent", "MemoryUsedCritical"),
    (
        "ThermalPressureCritical|ThermalEmergency",
        "ThermalPressureSerious",
    ),
    ("ThermalEmergency", "ThermalPressureCritical"),
    ("OrderExecutionErrorRateCritical", "OrderExecutionErrorRate"),
];

/// [`SHIPPED_INHIBITIONS`] as inhibition rules, equal on `instance`; then a silent
/// trading source over every other alert about the same operation on the same host
/// (issue 29): its latency alerts are stale, and their resolve would read as recovery.
pub fn shipped_inhibit_rules() -> Vec<InhibitRule> {
    let m = |s: &str| -> Matcher { s.parse().expect("valid matcher") };
    let mut rules: Vec<InhibitRule> = SHIPPED_INHIBITIONS
        .iter()
        .map(|(source, target)| InhibitRule {
            source: vec![m(&format!("alertname=~\"{source}\""))],
            target: vec![m(&format!("alertname=\"{target}\""))],
            equal: vec!["instance".into()],
        })
        .collect();
    rules.push(InhibitRule {
        source: vec![m("alertname=\"TradingSourceSilent\"")],
        target: vec![
            m("alertname!=\"TradingSourceSilent\""),
            m("operation=~\".+\""),
        ],
        equal: vec!["operation".into(), "host".into(), "instance".into()],
    });
    rules
}

/// Secret environment variables of the integrations.
pub const ENV_SLACK: &str = "M4WATCH_SLACK_WEBHOOK_URL";
pub const ENV_SMTP_PASSWORD: &str = "M4WATCH_SMTP_PASSWORD";
pub const ENV_PAGERDUTY: &str = "M4WATCH_PAGERDUTY_ROUTING_KEY";

/// The receiver alerts go to when the config names no route.
pub const DEFAULT_RECEIVER: &str = "default";

type Invalid = (String, String);

/// A secret that may come from the config, a `*_file` key or (only when neither is
/// set) the environment: a shared variable cannot tell receivers apart, so it fills
/// the gaps instead of overriding explicit settings.
fn fill_secret(
    inline: Option<Secret>,
    file: Option<&Path>,
    key: &str,
    env_var: &str,
    base: &Path,
    env: EnvLookup<'_>,
) -> Result<Option<Secret>, Invalid> {
    let explicit = inline.is_some() || file.is_some();
    let no_env = |_: &str| None;
    let lookup: EnvLookup<'_> = if explicit { &no_env } else { env };
    resolve_secret(inline, file, key, env_var, base, lookup)
}

impl NotifyConfig {
    /// Fills secrets and checks references, names and values.
    pub fn resolve(&mut self, base: &Path, env: EnvLookup<'_>) -> Result<(), Invalid> {
        let err = |p: String, r: &str| Err((p, r.to_string()));
        let mut names = BTreeSet::new();
        for (i, r) in self.receivers.iter_mut().enumerate() {
            let p = format!("notifications.receivers[{i}]");
            if r.name.is_empty() {
                return err(format!("{p}.name"), "must not be empty");
            }
            if !names.insert(r.name.clone()) {
                return Err((
                    format!("{p}.name"),
                    format!("receiver {:?} is defined twice", r.name),
                ));
            }
            if let Some(rate) = r.rate_limit_per_second
                && !(rate > 0.0 && rate.is_finite())
            {
                return err(
                    format!("{p}.rate_limit_per_second"),
                    "must be a number greater than 0",
                );
            }
            if let Some(s) = &mut r.slack {
                s.webhook_url = fill_secret(
                    s.webhook_url.take(),
                    s.webhook_url_file.as_deref(),
                    &format!("{p}.slack.webhook_url"),
                    ENV_SLACK,
                    base,
                    env,
                )?;
                match &s.webhook_url {
                    None => {
                        return err(
                            format!("{p}.slack.webhook_url"),
                            "required: set webhook_url, webhook_url_file or M4WATCH_SLACK_WEBHOOK_URL",
                        );
                    }
                    Some(u) => check_url(u.expose(), &format!("{p}.slack.webhook_url"))?,
                }
            }
            if let Some(e) = &mut r.email {
                e.password = fill_secret(
                    e.password.take(),
                    e.password_file.as_deref(),
                    &format!("{p}.email.password"),
                    ENV_SMTP_PASSWORD,
                    base,
                    env,
                )?;
                if let Some(ca) = &mut e.ca_file {
                    *ca = base.join(&*ca);
                }
                e.check(&format!("{p}.email"))?;
            }
            if let Some(pd) = &mut r.pagerduty {
                pd.routing_key = fill_secret(
                    pd.routing_key.take(),
                    pd.routing_key_file.as_deref(),
                    &format!("{p}.pagerduty.routing_key"),
                    ENV_PAGERDUTY,
                    base,
                    env,
                )?;
                if pd.routing_key.is_none() {
                    return err(
                        format!("{p}.pagerduty.routing_key"),
                        "required: set routing_key, routing_key_file or M4WATCH_PAGERDUTY_ROUTING_KEY",
                    );
                }
                check_url(&pd.url, &format!("{p}.pagerduty.url"))?;
                check_template(&pd.dedup_key)
                    .map_err(|e| (format!("{p}.pagerduty.dedup_key"), e.to_string()))?;
            }
            if let Some(w) = &r.webhook {
                check_url(w.url.expose(), &format!("{p}.webhook.url"))?;
            }
            if let Some(a) = &r.alertmanager {
                if a.urls.is_empty() {
                    return err(format!("{p}.alertmanager.urls"), "name at least one URL");
                }
                for (j, u) in a.urls.iter().enumerate() {
                    check_url(u, &format!("{p}.alertmanager.urls[{j}]"))?;
                }
                let key = format!("{p}.alertmanager.resend_delay");
                at_least(a.resend_delay, std::time::Duration::from_secs(1), &key)?;
                if a.resend_delay.get() > std::time::Duration::from_secs(3600) {
                    return Err((
                        key,
                        format!(
                            "{} is above the limit of 1h: Alertmanager resolves an alert four resend delays after its last post",
                            a.resend_delay
                        ),
                    ));
                }
            }
        }
        let mut intervals = BTreeSet::new();
        for (i, t) in self.time_intervals.iter().enumerate() {
            let p = format!("notifications.time_intervals[{i}]");
            if !intervals.insert(t.name.clone()) {
                return Err((
                    format!("{p}.name"),
                    format!("time interval {:?} is defined twice", t.name),
                ));
            }
            t.check().map_err(|(k, r)| (format!("{p}.{k}"), r))?;
        }
        let known = |n: &str| names.contains(n) || n == DEFAULT_RECEIVER;
        if let Some(root) = &self.route {
            if root.receiver.is_none() {
                return err(
                    "notifications.route.receiver".into(),
                    "the root route needs a receiver",
                );
            }
            check_route(root, "notifications.route", &known, &intervals)?;
        }
        if let Some(e) = &self.escalation {
            if !known(&e.receiver) {
                return Err((
                    "notifications.escalation.receiver".into(),
                    format!("no receiver named {:?}", e.receiver),
                ));
            }
            at_least(e.after, MIN_SLOW_INTERVAL, "notifications.escalation.after")?;
        }
        let d = &self.delivery;
        for (v, k) in [
            (d.initial_backoff, "initial_backoff"),
            (d.max_backoff, "max_backoff"),
            (d.timeout, "timeout"),
        ] {
            positive(v, &format!("notifications.delivery.{k}"))?;
        }
        at_least(
            d.max_age,
            Duration::from_secs(1),
            "notifications.delivery.max_age",
        )?;
        Ok(())
    }

    /// The receivers alerts can be delivered to: `default` alone when no `route` is
    /// configured (every alert goes there); otherwise each receiver a route of the tree
    /// names (the root's, which takes every alert no child route takes, and each child
    /// route's own; a route without one inherits its parent's and adds none), plus the
    /// escalation receiver. Matchers are not analysed: a route that names a receiver
    /// counts as reaching it.
    pub fn routed_receivers(&self) -> BTreeSet<String> {
        fn walk(r: &RouteConfig, out: &mut BTreeSet<String>) {
            out.extend(r.receiver.iter().cloned());
            for child in &r.routes {
                walk(child, out);
            }
        }
        let mut out = BTreeSet::new();
        match &self.route {
            None => {
                out.insert(DEFAULT_RECEIVER.to_string());
            }
            Some(root) => walk(root, &mut out),
        }
        out.extend(self.escalation.iter().map(|e| e.receiver.clone()));
        out
    }

    /// The receivers the config defines that no route reaches ([`Self::routed_receivers`]):
    /// nothing is ever delivered to them, though the config is valid.
    pub fn unrouted_receivers(&self) -> Vec<String> {
        let routed = self.routed_receivers();
        self.receivers
            .iter()
            .filter(|r| !routed.contains(&r.name))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Every receiver the config defines, plus the `default` one (empty unless the
    /// config defines it).
    pub fn receivers_with_default(&self) -> BTreeMap<String, ReceiverConfig> {
        let mut out: BTreeMap<String, ReceiverConfig> = self
            .receivers
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        out.entry(DEFAULT_RECEIVER.to_string())
            .or_insert_with(|| ReceiverConfig {
                name: DEFAULT_RECEIVER.into(),
                send_resolved: true,
                ..Default::default()
            });
        out
    }
}

impl EmailConfig {
    /// Checks addresses and the smarthost; used for the config file and the API.
    pub fn check(&self, p: &str) -> Result<(), Invalid> {
        if smarthost(&self.smarthost).is_none() {
            return Err((
                format!("{p}.smarthost"),
                format!("{:?} is not host:port", self.smarthost),
            ));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err((
                format!("{p}.from"),
                format!("{:?} is not an email address", self.from),
            ));
        }
        if self.to.is_empty() {
            return Err((format!("{p}.to"), "name at least one recipient".into()));
        }
        if self.to.len() > MAX_EMAIL_RECIPIENTS {
            return Err((
                format!("{p}.to"),
                format!(
                    "{} recipients: at most {MAX_EMAIL_RECIPIENTS} per receiver (use a mailing list for more)",
                    self.to.len()
                ),
            ));
        }
        for (i, t) in self.to.iter().enumerate() {
            if t.parse::<lettre::message::Mailbox>().is_err() {
                return Err((
                    format!("{p}.to[{i}]"),
                    format!("{t:?} is not an email address"),
                ));
            }
        }
        if let Some(ca) = &self.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                (
                    format!("{p}.ca_file"),
                    format!("cannot read {}: {e}", ca.display()),
                )
            })?;
            if lettre::transport::smtp::client::Certificate::from_pem(&pem).is_err() {
                return Err((
                    format!("{p}.ca_file"),
                    format!("{} is not a PEM certificate", ca.display()),
                ));
            }
        }
        if self.password.is_some() && self.username.is_none() {
            return Err((
                format!("{p}.username"),
                "required when a password is set".into(),
            ));
        }
        Ok(())
    }
}

/// Splits `host:port`.
pub fn smarthost(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port = p.parse().ok()?;
    let host = h.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

fn check_url(u: &str, path: &str) -> Result<(), Invalid> {
    // Never echo the URL: a webhook URL is a secret.
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err((
            path.to_string(),
            "must be an http:// or https:// URL".into(),
        )),
    }
}

fn check_route(
    r: &RouteConfig,
    p: &str,
    known: &dyn Fn(&str) -> bool,
    intervals: &BTreeSet<String>,
) -> Result<(), Invalid> {
    if let Some(name) = &r.receiver
        && !known(name)
    {
        return Err((
            format!("{p}.receiver"),
            format!("no receiver named {name:?}"),
        ));
    }
    // group_wait may be 0 (notify at once); the flushes after it may not spin.
    for (key, d) in [
        ("group_interval", r.group_interval),
        ("repeat_interval", r.repeat_interval),
    ] {
        if let Some(d) = d {
            at_least(d, MIN_SLOW_INTERVAL, &format!("{p}.{key}"))?;
        }
    }
    for (key, list) in [
        ("active_time_intervals", &r.active_time_intervals),
        ("mute_time_intervals", &r.mute_time_intervals),
    ] {
        for (i, n) in list.iter().enumerate() {
            if !intervals.contains(n) {
                return Err((
                    format!("{p}.{key}[{i}]"),
                    format!("no time interval named {n:?}"),
                ));
            }
        }
    }
    for (i, c) in r.routes.iter().enumerate() {
        check_route(c, &format!("{p}.routes[{i}]"), known, intervals)?;
    }
    Ok(())
}

/// Why a `dedup_key` template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed {{{{ in {template:?}")]
    Unclosed { template: String },
    #[error("unknown variable {0:?}: use fingerprint, group_key or labels.NAME")]
    UnknownVariable(String),
}

/// Checks a `dedup_key` template: only `{{ fingerprint }}`, `{{ group_key }}` and
/// `{{ labels.NAME }}` are known.
pub fn check_template(t: &str) -> Result<(), TemplateError> {
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let j = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
            template: t.to_string(),
        })?;
        let var = after[..j].trim();
        let known = var == "fingerprint"
            || var == "group_key"
            || var.strip_prefix("labels.").is_some_and(|l| !l.is_empty());
        if !known {
            return Err(TemplateError::UnknownVariable(var.to_string()));
        }
        rest = &after[j + 2..];
    }
    Ok(())
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries_in_every_view() {
        assert_eq!(
            redact_url("https://events.pagerduty.com/v2/enqueue"),
            "https://events.pagerduty.com/v2/enqueue"
        );
        assert_eq!(
            redact_url("https://user:pa55@pd.example:8443/v2/enqueue?token=s3cret#x"),
            "https://<redacted>@pd.example:8443/v2/enqueue?<redacted>#<redacted>"
        );
        assert_eq!(redact_url("not a url s3cret"), "<redacted>");
        let pd = PagerDutyConfig {
            url: "https://pd.example/enqueue?routing_key=s3cret".into(),
            ..PagerDutyConfig::default()
        };
        let am = AlertmanagerConfig {
            urls: vec!["http://admin:s3cret@am:9093".into()],
            resend_delay: AlertmanagerConfig::default_resend_delay(),
        };
        let text = format!(
            "{}{}",
            serde_json::to_string(&pd).unwrap(),
            serde_json::to_string(&am).unwrap()
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("https://pd.example/enqueue?<redacted>"),
            "{text}"
        );
        assert!(text.contains("http://<redacted>@am:9093/"), "{text}");
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Loads `testdata/config/<name>.yml` and returns its error message.
    fn error_of(name: &str) -> String {
        let path = std::path::PathBuf::from(format!(
            "{}/testdata/config/{name}.yml",
            env!("CARGO_MANIFEST_DIR")
        ));
        let err = Config::load(&path, &no_env).expect_err("config must be rejected");
        let msg = err
            .to_string()
            .replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), "");
        assert!(!msg.contains("SECRETVALUE"), "a secret leaked: {msg}");
        msg
    }

    fn routed(notifications: &str) -> Vec<String> {
        let text = format!("notifications:\n{notifications}");
        Config::parse(&text, "<t>", std::path::Path::new("."), &no_env)
            .unwrap()
            .notifications
            .routed_receivers()
            .into_iter()
            .collect()
    }

    #[test]
    fn routed_receivers_are_the_ones_the_route_tree_names() {
        let receivers = "  receivers:\n    - {name: desk, webhook: {url: 'http://127.0.0.1:1/d'}}\n    - {name: oncall, webhook: {url: 'http://127.0.0.1:1/o'}}\n";
        // No route: everything goes to `default`, whatever receivers exist.
        assert_eq!(routed(receivers), ["default"]);
        // A root naming another receiver takes everything the children do not.
        assert_eq!(
            routed(&format!(
                "{receivers}  route:\n    receiver: desk\n    routes:\n      - {{matchers: ['severity=\"critical\"'], receiver: oncall}}\n      - {{matchers: ['team=\"fx\"']}}\n"
            )),
            ["desk", "oncall"]
        );
        // A child route (at any depth) or the escalation naming `default` reaches it.
        assert_eq!(
            routed(&format!(
                "{receivers}  route:\n    receiver: desk\n    routes:\n      - matchers: ['team=\"fx\"']\n        routes: [{{matchers: ['severity=\"info\"'], receiver: default}}]\n"
            )),
            ["default", "desk"]
        );
        assert_eq!(
            routed(&format!(
                "{receivers}  route: {{receiver: desk}}\n  escalation: {{receiver: default, after: 15m}}\n"
            )),
            ["default", "desk"]
        );
    }

    #[test]
    fn receivers_no_route_names_are_unrouted() {
        let parse = |n: &str| {
            Config::parse(
                &format!("notifications:\n{n}"),
                "<t>",
                std::path::Path::new("."),
                &no_env,
            )
            .unwrap()
            .notifications
        };
        let receivers = "  receivers:\n    - {name: desk, webhook: {url: 'http://127.0.0.1:1/d'}}\n    - {name: oncall, webhook: {url: 'http://127.0.0.1:1/o'}}\n";
        // No route: only `default` gets anything; both defined receivers are idle.
        assert_eq!(parse(receivers).unrouted_receivers(), ["desk", "oncall"]);
        let tree = format!(
            "{receivers}  route:\n    receiver: desk\n    routes:\n      - {{matchers: ['severity=\"critical\"'], receiver: oncall}}\n"
        );
        assert!(parse(&tree).unrouted_receivers().is_empty());
        let escalation = format!(
            "{receivers}  route: {{receiver: desk}}\n  escalation: {{receiver: oncall, after: 15m}}\n"
        );
        assert!(parse(&escalation).unrouted_receivers().is_empty());
    }

    #[test]
    fn error_messages() {
        let cases = [
            (
                "notify_unknown_receiver",
                "testdata/config/notify_unknown_receiver.yml:10:19: notifications.route.routes[0].receiver: no receiver named \"pager\"",
            ),
            (
                "notify_slack_without_url",
                "testdata/config/notify_slack_without_url.yml:6:14: notifications.receivers[0].slack.webhook_url: required: set webhook_url, webhook_url_file or M4WATCH_SLACK_WEBHOOK_URL",
            ),
            (
                "notify_bad_matcher",
                "testdata/config/notify_bad_matcher.yml:6:15: notifications.route.matchers[0]: invalid matcher \"severity\": write label=\"value\", !=, =~ or !~",
            ),
            (
                "notify_bad_time_zone",
                "testdata/config/notify_bad_time_zone.yml:6:18: notifications.time_intervals[0].time_zone: unknown time zone \"America/NewYork\": use an IANA name like America/New_York",
            ),
            (
                "notify_unknown_time_interval",
                "testdata/config/notify_unknown_time_interval.yml:6:29: notifications.route.active_time_intervals[0]: no time interval named \"market_hours\"",
            ),
            (
                "notify_duplicate_receiver",
                "testdata/config/notify_duplicate_receiver.yml:7:13: notifications.receivers[1].name: receiver \"ops\" is defined twice",
            ),
            (
                "notify_bad_email",
                "testdata/config/notify_bad_email.yml:9:14: notifications.receivers[0].email.to[0]: \"ops-at-example.com\" is not an email address",
            ),
            (
                "notify_bad_dedup_key",
                "testdata/config/notify_bad_dedup_key.yml:8:20: notifications.receivers[0].pagerduty.dedup_key: unknown variable \"alert.name\": use fingerprint, group_key or labels.NAME",
            ),
            (
                "notify_unknown_key",
                "testdata/config/notify_unknown_key.yml:6:15: notifications.receivers[0].slack.webhook: unknown field `webhook`, expected one of `webhook_url`, `webhook_url_file`, `channel`",
            ),
            (
                "notify_url_and_file",
                "testdata/config/notify_url_and_file.yml:7:22: notifications.receivers[0].slack.webhook_url: set either notifications.receivers[0].slack.webhook_url or notifications.receivers[0].slack.webhook_url_file, not both",
            ),
            (
                "notify_bad_url",
                "testdata/config/notify_bad_url.yml:6:28: notifications.receivers[0].slack.webhook_url: must be an http:// or https:// URL",
            ),
            (
                "notify_unknown_escalation",
                "testdata/config/notify_unknown_escalation.yml:4:26: notifications.escalation.receiver: no receiver named \"nobody\"",
            ),
            (
                "notify_missing_ca_file",
                "testdata/config/notify_missing_ca_file.yml:10:18: notifications.receivers[0].email.ca_file: cannot read testdata/config/no-such-ca.pem: No such file or directory (os error 2)",
            ),
        ];
        for (file, want) in cases {
            assert_eq!(error_of(file), want);
        }
    }

    #[test]
    fn environment_fills_missing_secrets_only() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("m4watch.yml");
        std::fs::write(
            &cfg,
            "listen: 127.0.0.1:0\ndata_dir: ./data\nnotifications:\n  receivers:\n    - name: a\n      slack: {}\n      pagerduty: {}\n    - name: b\n      slack: {webhook_url: \"https://hooks.example/b\"}\n      email: {smarthost: \"smtp:587\", from: a@example.com, to: [b@example.com], username: u}\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "M4WATCH_SLACK_WEBHOOK_URL" => Some("https://hooks.example/env".to_string()),
            "M4WATCH_PAGERDUTY_ROUTING_KEY" => Some("pd-env".to_string()),
            "M4WATCH_SMTP_PASSWORD" => Some("smtp-env".to_string()),
            _ => None,
        };
        let c = Config::load(&cfg, &env).unwrap();
        let r = &c.notifications.receivers;
        let url = |i: usize| {
            r[i].slack
                .as_ref()
                .unwrap()
                .webhook_url
                .as_ref()
                .unwrap()
                .expose()
                .to_string()
        };
        assert_eq!(url(0), "https://hooks.example/env");
        assert_eq!(url(1), "https://hooks.example/b", "explicit settings win");
        assert_eq!(
            r[0].pagerduty
                .as_ref()
                .unwrap()
                .routing_key
                .as_ref()
                .unwrap()
                .expose(),
            "pd-env"
        );
        assert_eq!(
            r[1].email
                .as_ref()
                .unwrap()
                .password
                .as_ref()
                .unwrap()
                .expose(),
            "smtp-env"
        );
        let printed = format!("{c:?}{}", serde_json::to_string(&c).unwrap());
        assert!(
            !printed.contains("env") || !printed.contains("pd-env"),
            "{printed}"
        );
        assert!(!printed.contains("smtp-env") && !printed.contains("hooks.example/env"));
    }

    #[test]
    fn embedded_default_has_no_receivers() {
        let c = Config::embedded_default(&no_env).unwrap();
        assert!(c.notifications.receivers.is_empty());
        assert!(c.notifications.route.is_none());
    }

    #[test]
    fn the_shipped_alertmanager_inhibits_the_same_pairs() {
        use crate::config::notify::{NotifyConfig, shipped_inhibit_rules};
        use crate::model::alert::InhibitRule;
        #[derive(serde::Deserialize)]
        struct Am {
            inhibit_rules: Vec<InhibitRule>,
        }
        let am: Am = serde_yaml_ng::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/prometheus/alertmanager.yml"
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(am.inhibit_rules, shipped_inhibit_rules());
        assert_eq!(
            NotifyConfig::default().inhibit_rules,
            shipped_inhibit_rules()
        );
    }
}
