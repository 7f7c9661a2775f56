//! System health and the status page: the inputs of the health verdict
//! ([`crate::health`]) gathered from the running daemon, and the daemon's own summary
//! (version, configuration, collectors, rules, receivers).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ErrorBody;
use crate::alerts::evaluate::RULES_LOADED;
use crate::health::{HealthState, SystemHealth, system_health_of};
use crate::store::CollectorStatus;
use crate::store::index::Families;

/// Read routes; mounted behind the read check by [`super::api`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(system_health))
        .routes(routes!(optimization_health))
        .routes(routes!(status))
}

// --- system health --------------------------------------------------------------

/// Pending and firing alerts counted by state (`pending`, `firing`) and severity,
/// the watchdog left out ([`crate::health::active_counts`]).
pub(super) fn active_alerts(s: &AppState) -> BTreeMap<(&'static str, String), u64> {
    crate::health::active_counts(&s.alerts.active())
}

/// Firing alerts per severity, from [`active_alerts`].
fn firing_by_severity(counts: &BTreeMap<(&'static str, String), u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .filter(|((state, _), _)| *state == "firing")
        .map(|((_, severity), n)| (severity.clone(), *n))
        .collect()
}

fn score(s: &AppState) -> Option<f64> {
    s.store.views().trading.get().and_then(|v| v.score.score)
}

fn current_health(s: &AppState) -> SystemHealth {
    health_with(s, &active_alerts(s))
}

pub(super) fn health_with(
    s: &AppState,
    alerts: &BTreeMap<(&'static str, String), u64>,
) -> SystemHealth {
    let probes = s.store.views().probes.get().unwrap_or_default();
    crate::health::with_storage(
        system_health_of(
            s.store.collectors(),
            &probes,
            firing_by_severity(alerts),
            score(s),
        ),
        s.storage.fault(),
    )
}

/// `healthy`, `degraded` or `critical`, with the reasons: failing collectors, firing
/// alerts by severity, the performance score.
#[utoipa::path(get, path = "/api/v1/monitoring/system/health", tag = "monitoring",
    responses((status = 200, body = SystemHealth), (status = 401, body = ErrorBody)))]
async fn system_health(State(s): State<Arc<AppState>>) -> Json<SystemHealth> {
    Json(current_health(&s))
}

/// The original API's "current system health": the same answer as
/// `/api/v1/monitoring/system/health`.
#[utoipa::path(get, path = "/api/v1/optimization/health", tag = "monitoring",
    responses((status = 200, body = SystemHealth), (status = 401, body = ErrorBody)))]
async fn optimization_health(State(s): State<Arc<AppState>>) -> Json<SystemHealth> {
    Json(current_health(&s))
}

// --- status ---------------------------------------------------------------------

/// One collector as configured, with its last run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CollectorSummary {
    pub name: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// Absent until the collector has run once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<CollectorStatus>,
}

/// The rule engine.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RulesSummary {
    pub enabled: bool,
    /// Rule files; empty means the shipped rules embedded in the binary.
    pub files: Vec<String>,
    pub evaluation_interval_seconds: f64,
    /// Alerting and recording rules loaded; absent before the first evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<u64>,
    /// Every alerting rule running now, with the links its notifications carry;
    /// `m4watch validate` checks each `runbook_url` against the shipped runbooks.
    pub alerting: Vec<AlertingRule>,
}

/// One alerting rule and its links, as written in the rule (before templating).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertingRule {
    pub group: String,
    pub name: String,
    /// The `runbook_url` annotation; a relative one (`/runbooks#x`) is resolved
    /// against `external_url` when notifying. Absent when the rule has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// The `dashboard_url` annotation; a relative one (`/d/uid`) is resolved against
    /// `grafana_url` when notifying. Absent when the rule has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
}

fn alerting(s: &AppState) -> Vec<AlertingRule> {
    let Some(rules) = &s.rules else {
        return Vec::new();
    };
    rules
        .alerting_rules()
        .into_iter()
        .map(|mut r| AlertingRule {
            runbook_url: r.annotations.remove("runbook_url"),
            dashboard_url: r.annotations.remove("dashboard_url"),
            group: r.group,
            name: r.name,
        })
        .collect()
}

/// One notification receiver: its integrations, never their secrets.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReceiverSummary {
    pub name: String,
    pub integrations: Vec<&'static str>,
}

/// The configuration in short; secrets are reported only as set or not.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConfigSummary {
    pub listen: String,
    pub data_dir: String,
    pub write_token_set: bool,
    pub read_token_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd_listen: Option<String>,
    /// The Docker Engine address; absent when the container collector is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
    pub probe_targets: usize,
}

/// The dead-man's switch as it runs now (its URL and header values are secrets and
/// are never shown).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HeartbeatSummary {
    /// `GET` or `POST`.
    pub method: &'static str,
    pub interval_seconds: f64,
    /// Whether a beat would go now: the rule engine evaluated recently and the
    /// outbox drains.
    pub healthy: bool,
    /// Why a beat would be skipped now: `rules_stalled`, `outbox_stalled` or
    /// `delivery_backlog`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<&'static str>,
}

/// Body of `GET /api/v1/monitoring/status`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    pub version: &'static str,
    pub revision: &'static str,
    pub uptime_seconds: f64,
    pub started_at: f64,
    pub health: HealthState,
    pub config: ConfigSummary,
    pub collectors: Vec<CollectorSummary>,
    pub rules: RulesSummary,
    pub receivers: Vec<ReceiverSummary>,
    /// Absent when `heartbeat:` is not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatSummary>,
}

fn integrations(r: &crate::config::notify::ReceiverConfig) -> Vec<&'static str> {
    [
        ("slack", r.slack.is_some()),
        ("email", r.email.is_some()),
        ("pagerduty", r.pagerduty.is_some()),
        ("webhook", r.webhook.is_some()),
        ("alertmanager", r.alertmanager.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect()
}

/// Version, uptime, configuration summary (secrets redacted), collectors and their
/// last success, rules loaded, receivers.
#[utoipa::path(get, path = "/api/v1/monitoring/status", tag = "monitoring",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
async fn status(State(s): State<Arc<AppState>>) -> Json<Status> {
    let c = &s.config;
    let runs = s.store.collectors();
    let mut collectors = s
        .collectors
        .iter()
        .map(|e| CollectorSummary {
            name: e.name().to_string(),
            enabled: e.enabled,
            interval_seconds: Some(e.interval.as_secs_f64()),
            last_run: runs.get(e.name()).cloned(),
        })
        .collect::<Vec<_>>();
    // Runs outside the registry (the recommendations) still show up.
    for (name, run) in &runs {
        if !collectors.iter().any(|x| &x.name == name) {
            collectors.push(CollectorSummary {
                name: name.clone(),
                enabled: true,
                interval_seconds: None,
                last_run: Some(run.clone()),
            });
        }
    }
    let families = Families::of(s.store.families());
    let build = crate::store::BuildInfo::current();
    let uptime = s.started.elapsed().as_secs_f64();
    let tokens = s.access.tokens();
    Json(Status {
        version: build.version,
        revision: build.revision,
        uptime_seconds: uptime,
        started_at: crate::clock::unix_now() - uptime,
        health: current_health(&s).status,
        config: ConfigSummary {
            listen: c.listen.to_string(),
            data_dir: c.data_dir.display().to_string(),
            write_token_set: tokens.token.is_some(),
            read_token_set: tokens.read_token.is_some(),
            statsd_listen: s
                .store
                .views()
                .trading
                .get()
                .and_then(|v| v.statsd_listen.clone()),
            docker_host: c
                .containers
                .enabled
                .then(|| {
                    s.store
                        .views()
                        .containers
                        .get()
                        .map(|r| r.docker_host.clone())
                        .or_else(|| c.containers.docker_host.clone())
                })
                .flatten(),
            probe_targets: c.probes.targets.len(),
        },
        collectors,
        rules: RulesSummary {
            enabled: c.rules.enabled,
            files: c
                .rules
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            evaluation_interval_seconds: c.rules.evaluation_interval.get().as_secs_f64(),
            loaded: families.value(RULES_LOADED.name, &[]).map(|v| v as u64),
            alerting: alerting(&s),
        },
        receivers: s
            .notifier
            .receivers()
            .iter()
            .map(|r| ReceiverSummary {
                name: r.name.clone(),
                integrations: integrations(r),
            })
            .collect(),
        heartbeat: s
            .heartbeat
            .describe()
            .map(|(method, _, interval, gate)| HeartbeatSummary {
                method,
                interval_seconds: interval.as_secs_f64(),
                healthy: gate.is_ok(),
                skip_reason: gate.err().map(|s| s.as_str()),
            }),
    })
}
