//! `m4watch validate --url URL [--token T]`: checks a running m4watch from the
//! outside, as CI or an operator would, and prints a table of checks.
//!
//! It reads the instance's own OpenAPI document and calls every read endpoint that
//! takes no path parameter, checks the metric families each enabled collector must
//! export, that every enabled collector's last run succeeded, that rules are loaded,
//! that every alerting rule it runs links to a section of the shipped runbooks
//! (`docs/runbooks.md`, embedded), that each receiver can reach its destinations (a
//! dry run: nothing is sent), that the heartbeat (when configured) can reach its
//! dead-man's service and would beat now (a dry run too), and that the performance
//! score is at or above its floor (`--min-score`) with enough
//! coverage, and reports the instance's own health verdict (`system/health`): a
//! `critical` one fails validate whatever `--min-pass-ratio` allows, unless
//! `--allow-unhealthy`. It changes nothing on the instance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::alerts::evaluate::{ALERTS, RULES_LOADED};
use crate::collect::containers::DOCKER_INFO;
use crate::collect::hardware::{
    CPU_CLUSTER_UTILIZATION_RATIO, CPU_CORES, CPU_INFO, CPU_UTILIZATION_RATIO, MEMORY_USED_BYTES,
};
use crate::collect::host::{TCP_RETRANSMITTED_SEGMENTS_TOTAL, UDP_DATAGRAMS_RECEIVED_TOTAL};
use crate::collect::probes::PROBE_SUCCESS;
use crate::collect::process::{PROCESS_CPU_SECONDS_TOTAL, PROCESS_RESIDENT_MEMORY_BYTES};
use crate::collect::process_groups as groups;
use crate::collect::trading::{
    PERFORMANCE_COMPONENT_SCORE, PERFORMANCE_SCORE, PERFORMANCE_SCORE_COVERAGE_RATIO,
    TRADING_SERIES,
};
use crate::store::{BUILD_INFO, COLLECTOR_DURATION_SECONDS, COLLECTOR_SUCCESS};
use serde::Deserialize;

/// Paths every m4watch must serve (issue 5's list, and issue 29's stats); the
/// instance's spec must name each of them.
pub const REQUIRED_PATHS: &[&str] = &[
    "/",
    "/docs",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/monitoring/health",
    "/api/v1/monitoring/status",
    "/api/v1/monitoring/metrics",
    "/api/v1/monitoring/system/health",
    "/api/v1/monitoring/dashboard/summary",
    "/api/v1/monitoring/m4max/hardware/metrics",
    "/api/v1/monitoring/m4max/hardware/history",
    "/api/v1/monitoring/containers/metrics",
    "/api/v1/monitoring/trading/metrics",
    "/api/v1/monitoring/performance/optimizations",
    "/api/v1/monitoring/alerts",
    "/api/v1/monitoring/alerts/{id}/acknowledge",
    "/api/v1/monitoring/notifications/configure",
    "/api/v1/optimization/health",
    "/api/v1/optimization/core-utilization",
    "/api/v1/optimization/alerts",
    "/api/v1/optimization/latency-stats",
    "/api/v1/optimization/stats",
    "/api/v1/optimization/start-latency-measurement",
    "/api/v1/optimization/end-latency-measurement/{id}",
];

/// The pages for people, which answer HTML.
const PAGES: &[&str] = &["/", "/docs", "/runbooks"];

/// Families that must be on /metrics whatever is enabled.
const ALWAYS: &[&str] = &[
    BUILD_INFO.name,
    COLLECTOR_SUCCESS.name,
    COLLECTOR_DURATION_SECONDS.name,
];

/// Families an enabled collector (or the rule engine) must export.
const BY_COLLECTOR: &[(&str, &[&str])] = &[
    (
        "hardware",
        &[
            CPU_INFO.name,
            CPU_UTILIZATION_RATIO.name,
            CPU_CLUSTER_UTILIZATION_RATIO.name,
            CPU_CORES.name,
            MEMORY_USED_BYTES.name,
        ],
    ),
    (
        "process",
        &[
            PROCESS_RESIDENT_MEMORY_BYTES.name,
            PROCESS_CPU_SECONDS_TOTAL.name,
        ],
    ),
    (
        "host",
        &[
            UDP_DATAGRAMS_RECEIVED_TOTAL.name,
            TCP_RETRANSMITTED_SEGMENTS_TOTAL.name,
        ],
    ),
    (
        "process_groups",
        &[groups::UP.name, groups::CPU_SECONDS_TOTAL.name],
    ),
    ("containers", &[DOCKER_INFO.name]),
    ("probes", &[PROBE_SUCCESS.name]),
    (
        "trading",
        &[PERFORMANCE_SCORE_COVERAGE_RATIO.name, TRADING_SERIES.name],
    ),
    ("rules", &[RULES_LOADED.name, ALERTS.name]),
];

/// What to check and how strictly.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL of the instance, like `http://127.0.0.1:9977`.
    pub url: String,
    /// Bearer token: sent on every request; the receiver dry runs need it.
    pub token: Option<String>,
    /// Least share of checks (0..1) that must pass.
    pub min_pass_ratio: f64,
    /// The performance score passes at or above this (0..100).
    pub min_score: f64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// A `critical` health verdict is reported but does not fail validate.
    pub allow_unhealthy: bool,
}

/// The shipped `PerformanceScoreLow` rule's threshold: validate's default floor.
pub const DEFAULT_MIN_SCORE: f64 = 85.0;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
    /// Failed, it fails validate whatever `--min-pass-ratio` allows (a `critical`
    /// health verdict).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocking: bool,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            passed: true,
            detail: detail.into(),
            blocking: false,
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            passed: false,
            detail: detail.into(),
            blocking: false,
        }
    }
}

/// The name of the check that reports the instance's health verdict.
pub const HEALTH_CHECK: &str = "system health";

/// The parts of `/api/v1/monitoring/system/health` validate reads.
#[derive(Debug, Deserialize)]
struct Health {
    status: String,
    #[serde(default)]
    reasons: Vec<HealthReason>,
}

#[derive(Debug, Deserialize)]
struct HealthReason {
    kind: String,
    severity: String,
    detail: String,
}

/// The health check from the body of `system/health`: `healthy` and `degraded` pass
/// (a degraded one with its reasons), `critical` fails naming its critical reasons and
/// blocks, unless `allow_unhealthy`.
fn health_check(body: &str, allow_unhealthy: bool) -> Check {
    let h = match serde_json::from_str::<Health>(body) {
        Ok(h) => h,
        Err(e) => return Check::fail(HEALTH_CHECK, format!("unexpected body: {e}")),
    };
    let reasons = |severity: &str| {
        h.reasons
            .iter()
            .filter(|r| r.severity == severity)
            .map(|r| format!("{}: {}", r.kind, r.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match h.status.as_str() {
        "healthy" => Check::pass(HEALTH_CHECK, "healthy"),
        "degraded" => Check::pass(HEALTH_CHECK, format!("degraded: {}", reasons("degraded"))),
        "critical" if allow_unhealthy => Check::pass(
            HEALTH_CHECK,
            format!(
                "critical, allowed by --allow-unhealthy: {}",
                reasons("critical")
            ),
        ),
        "critical" => Check {
            blocking: true,
            ..Check::fail(HEALTH_CHECK, format!("critical: {}", reasons("critical")))
        },
        other => Check::fail(HEALTH_CHECK, format!("unknown status {other:?}")),
    }
}

/// The parts of `/api/v1/monitoring/status` validate reads.
#[derive(Debug, Deserialize)]
struct Status {
    collectors: Vec<CollectorSummary>,
    rules: RulesSummary,
    receivers: Vec<ReceiverSummary>,
    #[serde(default)]
    heartbeat: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct CollectorSummary {
    name: String,
    enabled: bool,
    #[serde(default)]
    last_run: Option<LastRun>,
}

#[derive(Debug, Deserialize)]
struct LastRun {
    success: bool,
    #[serde(default)]
    last_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RulesSummary {
    enabled: bool,
    #[serde(default)]
    loaded: Option<u64>,
    #[serde(default)]
    alerting: Vec<AlertingRule>,
}

#[derive(Debug, Deserialize)]
struct AlertingRule {
    name: String,
    #[serde(default)]
    runbook_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReceiverSummary {
    name: String,
    integrations: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TestResult {
    results: Vec<TestOutcome>,
}

#[derive(Debug, Deserialize)]
struct TestOutcome {
    integration: String,
    #[serde(default)]
    reachable: Option<bool>,
    #[serde(default)]
    destinations: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Client {
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, String> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    async fn get(&self, path: &str) -> Result<Answer, String> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }
}

/// Why a body is not what a JSON endpoint must answer, if it is not.
fn json_problem(a: &Answer) -> Option<String> {
    if !a.content_type.starts_with("application/json") {
        return Some(format!("content type {:?}, not JSON", a.content_type));
    }
    serde_json::from_str::<serde_json::Value>(&a.body)
        .err()
        .map(|e| format!("body is not JSON: {e}"))
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Family names declared by `# TYPE` lines of an exposition.
pub fn exposed_families(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// The value of an unlabelled sample `name` in an exposition.
fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The performance score against the floor, from a /metrics text: a score under the
/// floor fails naming its weakest component; no score fails with the coverage that
/// kept it absent.
fn score_check(metrics: &str, min_score: f64) -> Check {
    const NAME: &str = "performance score";
    let coverage = sample_value(metrics, PERFORMANCE_SCORE_COVERAGE_RATIO.name);
    let Some(score) = sample_value(metrics, PERFORMANCE_SCORE.name) else {
        return Check::fail(
            NAME,
            match coverage {
                Some(c) => format!(
                    "no score: only {:.0}% of the score's weight has data, under the instance's trading.score.min_coverage",
                    c * 100.0
                ),
                None => "m4watch_performance_score and its coverage ratio are absent".into(),
            },
        );
    };
    let coverage = coverage.map_or_else(String::new, |c| format!(", coverage {c:.2}"));
    if score + 1e-9 >= min_score {
        return Check::pass(NAME, format!("{score:.1} (floor {min_score}{coverage})"));
    }
    let prefix = format!("{}{{component=\"", PERFORMANCE_COMPONENT_SCORE.name);
    let weakest = metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (component, value) = rest.split_once("\"} ")?;
            Some((component, value.trim().parse::<f64>().ok()?))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or_else(String::new, |(c, v)| {
            format!("; weakest component: {c} at {v:.2}")
        });
    Check::fail(
        NAME,
        format!("{score:.1} is below the floor {min_score}{coverage}{weakest}"),
    )
}

/// Every alerting rule the instance runs must link to its runbook: a `runbook_url` that
/// names a section of the shipped `docs/runbooks.md` (the copy in this binary), or
/// one elsewhere (a desk's own runbooks, not checked here).
fn runbook_check(rules: &[AlertingRule]) -> Check {
    use crate::rules::runbooks::{Link, check_link};
    const NAME: &str = "rules: runbooks";
    if rules.is_empty() {
        return Check::fail(NAME, "the status lists no alerting rule");
    }
    let mut external = 0;
    let mut bad = Vec::new();
    for r in rules {
        match check_link(r.runbook_url.as_deref()) {
            Ok(Link::Section(_)) => {}
            Ok(Link::External) => external += 1,
            Err(e) => bad.push(format!("{}: {e}", r.name)),
        }
    }
    if !bad.is_empty() {
        let shown = bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        let more = bad.len().saturating_sub(3);
        return Check::fail(
            NAME,
            format!(
                "{} of {} alerting rules: {shown}{}",
                bad.len(),
                rules.len(),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        );
    }
    Check::pass(
        NAME,
        match external {
            0 => format!(
                "{} rules, each with a section of docs/runbooks.md",
                rules.len()
            ),
            n => format!(
                "{} rules: {} with a section of docs/runbooks.md, {n} linking elsewhere (not checked)",
                rules.len(),
                rules.len() - n
            ),
        },
    )
}

/// Runs every check against the instance at `opts.url`.
pub async fn run(opts: &Options) -> Vec<Check> {
    let http = match crate::tls::http_client().timeout(opts.timeout).build() {
        Ok(h) => h,
        Err(e) => return vec![Check::fail("http client", e.to_string())],
    };
    let c = Client {
        http,
        base: opts.url.trim_end_matches('/').to_string(),
        token: opts.token.clone(),
    };
    let mut checks = Vec::new();

    // The spec: which paths exist, and the required ones among them.
    let spec = match c.get("/api/v1/openapi.json").await {
        Ok(a) if a.status == 200 => serde_json::from_str::<serde_json::Value>(&a.body).ok(),
        Ok(a) => {
            checks.push(Check::fail(
                "GET /api/v1/openapi.json",
                format!("HTTP {}: {}", a.status, short(&a.body)),
            ));
            None
        }
        Err(e) => {
            checks.push(Check::fail(
                "GET /api/v1/openapi.json",
                format!("{e} (is m4watch running at {}?)", c.base),
            ));
            return checks;
        }
    };
    let paths: BTreeMap<String, Vec<String>> = spec
        .as_ref()
        .and_then(|s| s.get("paths"))
        .and_then(|p| p.as_object())
        .map(|p| {
            p.iter()
                .map(|(k, v)| {
                    let methods = v
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                    (k.clone(), methods)
                })
                .collect()
        })
        .unwrap_or_default();
    if spec.is_some() {
        let missing: Vec<&str> = REQUIRED_PATHS
            .iter()
            .copied()
            .filter(|p| !paths.contains_key(*p))
            .collect();
        checks.push(if missing.is_empty() {
            Check::pass(
                "openapi: required paths",
                format!("{} paths documented", paths.len()),
            )
        } else {
            Check::fail(
                "openapi: required paths",
                format!("missing: {}", missing.join(", ")),
            )
        });
    }

    // Every read endpoint without path parameters.
    for (path, methods) in &paths {
        if !methods.iter().any(|m| m == "get") || path.contains('{') {
            continue;
        }
        let name = format!("GET {path}");
        let a = match c.get(path).await {
            Ok(a) => a,
            Err(e) => {
                checks.push(Check::fail(name, e));
                continue;
            }
        };
        let text =
            path == "/metrics" || path.ends_with("/monitoring/metrics") || path.starts_with("/-/");
        let page = PAGES.contains(&path.as_str());
        checks.push(match a.status {
            200 if text => Check::pass(name, format!("200, {} bytes", a.body.len())),
            200 if page && a.content_type.starts_with("text/html") => {
                Check::pass(name, format!("200, HTML, {} bytes", a.body.len()))
            }
            200 if page => {
                Check::fail(name, format!("content type {:?}, not HTML", a.content_type))
            }
            200 => match json_problem(&a) {
                None => Check::pass(name, "200, JSON"),
                Some(p) => Check::fail(name, p),
            },
            // A feature turned off in the config answers 404 with a JSON error that
            // says so; that is the documented answer, not a failure.
            404 if a.body.contains("disabled") && json_problem(&a).is_none() => {
                Check::pass(name, "404: disabled in the config")
            }
            s => Check::fail(name, format!("HTTP {s}: {}", short(&a.body))),
        });
    }

    // Status: collectors, rules, receivers.
    let status = match c.get("/api/v1/monitoring/status").await {
        Ok(a) if a.status == 200 => match serde_json::from_str::<Status>(&a.body) {
            Ok(s) => Some(s),
            Err(e) => {
                checks.push(Check::fail("status", format!("unexpected body: {e}")));
                None
            }
        },
        Ok(a) => {
            checks.push(Check::fail("status", format!("HTTP {}", a.status)));
            None
        }
        Err(e) => {
            checks.push(Check::fail("status", e));
            None
        }
    };
    let mut enabled: BTreeSet<String> = BTreeSet::new();
    if let Some(st) = &status {
        for col in st.collectors.iter().filter(|c| c.enabled) {
            enabled.insert(col.name.clone());
            let name = format!("collector {}", col.name);
            checks.push(match &col.last_run {
                None => Check::fail(name, "has not run yet"),
                Some(r) if r.success => Check::pass(name, "last run succeeded"),
                Some(r) => Check::fail(
                    name,
                    format!(
                        "last run failed: {}",
                        r.last_error.as_deref().unwrap_or("no detail")
                    ),
                ),
            });
        }
        if st.rules.enabled {
            enabled.insert("rules".into());
            checks.push(match st.rules.loaded {
                Some(n) if n > 0 => Check::pass("rules loaded", format!("{n} rules")),
                Some(_) => Check::fail("rules loaded", "0 rules loaded"),
                None => Check::fail("rules loaded", "no evaluation has run yet"),
            });
            checks.push(runbook_check(&st.rules.alerting));
        }
        let configured: Vec<&ReceiverSummary> = st
            .receivers
            .iter()
            .filter(|r| !r.integrations.is_empty())
            .collect();
        if configured.is_empty() {
            checks.push(Check::fail(
                "receivers configured",
                "no receiver has an integration: alerts would notify no one",
            ));
        }
        for r in configured {
            checks.push(dry_run(&c, r).await);
        }
        checks.push(match &st.heartbeat {
            None => Check::pass(
                "heartbeat",
                "not configured: nothing off the host notices if this host dies",
            ),
            Some(_) => heartbeat_dry_run(&c).await,
        });
    }

    // The instance's own verdict.
    checks.push(match c.get("/api/v1/monitoring/system/health").await {
        Ok(a) if a.status == 200 => health_check(&a.body, opts.allow_unhealthy),
        Ok(a) => Check::fail(
            HEALTH_CHECK,
            format!("HTTP {}: {}", a.status, short(&a.body)),
        ),
        Err(e) => Check::fail(HEALTH_CHECK, e),
    });

    // /metrics: content type, families, the score.
    match c.get("/metrics").await {
        Ok(a) if a.status == 200 => {
            let families = exposed_families(&a.body);
            checks.push(if a.content_type.starts_with("text/plain") {
                Check::pass("metrics: content type", a.content_type.clone())
            } else {
                Check::fail("metrics: content type", a.content_type.clone())
            });
            let mut want: Vec<&str> = ALWAYS.to_vec();
            for (collector, names) in BY_COLLECTOR {
                if enabled.contains(*collector) {
                    want.extend(names.iter());
                }
            }
            let missing: Vec<&str> = want
                .iter()
                .copied()
                .filter(|n| !families.contains(n))
                .collect();
            checks.push(if missing.is_empty() {
                Check::pass(
                    "metrics: required families",
                    format!("{} of {} present", want.len(), want.len()),
                )
            } else {
                Check::fail(
                    "metrics: required families",
                    format!("missing: {}", missing.join(", ")),
                )
            });
            if enabled.contains("trading") {
                checks.push(score_check(&a.body, opts.min_score));
            }
        }
        Ok(a) => checks.push(Check::fail("metrics", format!("HTTP {}", a.status))),
        Err(e) => checks.push(Check::fail("metrics", e)),
    }
    checks
}

/// Dry-runs one receiver: renders and connects, sends nothing.
async fn dry_run(c: &Client, r: &ReceiverSummary) -> Check {
    let name = format!("receiver {} ({})", r.name, r.integrations.join(", "));
    if c.token.is_none() {
        return Check::fail(name, "the dry run needs --token (a write endpoint)");
    }
    let body = serde_json::json!({ "receiver": r.name, "dry_run": true });
    let req = c
        .http
        .post(format!("{}/api/v1/monitoring/notifications/test", c.base))
        .json(&body);
    let a = match c.send(req).await {
        Ok(a) => a,
        Err(e) => return Check::fail(name, e),
    };
    if a.status != 200 {
        return Check::fail(name, format!("HTTP {}: {}", a.status, short(&a.body)));
    }
    match serde_json::from_str::<TestResult>(&a.body) {
        Ok(t) => {
            let bad: Vec<String> = t
                .results
                .iter()
                .filter(|o| o.reachable != Some(true))
                .map(|o| {
                    format!(
                        "{}: {}",
                        o.integration,
                        o.error.as_deref().unwrap_or("not checked")
                    )
                })
                .collect();
            if bad.is_empty() {
                let to: Vec<&str> = t
                    .results
                    .iter()
                    .flat_map(|o| o.destinations.iter().map(String::as_str))
                    .collect();
                Check::pass(name, format!("dry run reached {}", to.join(", ")))
            } else {
                Check::fail(name, bad.join("; "))
            }
        }
        Err(e) => Check::fail(name, format!("unexpected body: {e}")),
    }
}

#[derive(Debug, Deserialize)]
struct HeartbeatTest {
    method: String,
    #[serde(default)]
    destination: Option<String>,
    reachable: bool,
    #[serde(default)]
    error: Option<String>,
    healthy: bool,
    #[serde(default)]
    skip_reason: Option<String>,
}

/// Dry-runs the heartbeat: builds the request and connects to the dead-man's
/// service, sends nothing; fails when it cannot connect or when a beat would be
/// skipped now.
async fn heartbeat_dry_run(c: &Client) -> Check {
    const NAME: &str = "heartbeat";
    if c.token.is_none() {
        return Check::fail(NAME, "the dry run needs --token (a write endpoint)");
    }
    let req = c
        .http
        .post(format!("{}/api/v1/monitoring/heartbeat/test", c.base));
    let a = match c.send(req).await {
        Ok(a) => a,
        Err(e) => return Check::fail(NAME, e),
    };
    if a.status != 200 {
        return Check::fail(NAME, format!("HTTP {}: {}", a.status, short(&a.body)));
    }
    heartbeat_check(&a.body)
}

/// The heartbeat check from the dry run's answer.
fn heartbeat_check(body: &str) -> Check {
    const NAME: &str = "heartbeat";
    let t = match serde_json::from_str::<HeartbeatTest>(body) {
        Ok(t) => t,
        Err(e) => return Check::fail(NAME, format!("unexpected body: {e}")),
    };
    let to = t.destination.as_deref().unwrap_or("its destination");
    match (t.reachable, t.healthy) {
        (true, true) => Check::pass(NAME, format!("dry run: {} {to} reachable", t.method)),
        (false, _) => Check::fail(
            NAME,
            format!(
                "dry run: cannot reach the dead-man's service: {}",
                t.error.as_deref().unwrap_or("no detail")
            ),
        ),
        (true, false) => Check::fail(
            NAME,
            format!(
                "dry run: {} {to} reachable, but beats are being skipped: {}",
                t.method,
                t.skip_reason.as_deref().unwrap_or("no reason given")
            ),
        ),
    }
}

/// Why `m4watch healthcheck` failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: answered {status}")]
    Unhealthy { url: String, status: u16 },
}

/// One GET of `url` (the image's `HEALTHCHECK` asks `/-/healthy`): Ok on 2xx. The
/// image has no curl or wget; the binary asks for itself.
pub async fn healthcheck(url: &str, timeout: std::time::Duration) -> Result<(), HealthcheckError> {
    let unreachable = |reason: String| HealthcheckError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let http = crate::tls::http_client()
        .timeout(timeout)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(HealthcheckError::Unhealthy {
            url: url.to_string(),
            status: r.status().as_u16(),
        })
    }
}

/// Share of checks that passed (1 when there are none).
pub fn pass_ratio(checks: &[Check]) -> f64 {
    if checks.is_empty() {
        return 1.0;
    }
    checks.iter().filter(|c| c.passed).count() as f64 / checks.len() as f64
}

/// Whether validate passes: at least `min_pass_ratio` of the checks passed and no
/// blocking check failed.
pub fn passed(checks: &[Check], min_pass_ratio: f64) -> bool {
    pass_ratio(checks) + 1e-12 >= min_pass_ratio && blocked(checks).is_empty()
}

/// The failed blocking checks.
pub fn blocked(checks: &[Check]) -> Vec<&Check> {
    checks.iter().filter(|c| c.blocking && !c.passed).collect()
}

/// The checks as an aligned text table, then a summary line.
pub fn table(checks: &[Check], min_pass_ratio: f64) -> String {
    let w = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:<6} {:<w$}  DETAIL\n", "RESULT", "CHECK");
    for c in checks {
        out.push_str(&format!(
            "{:<6} {:<w$}  {}\n",
            if c.passed { "pass" } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    let ok = passed(checks, min_pass_ratio);
    let passed = checks.iter().filter(|c| c.passed).count();
    let ratio = pass_ratio(checks);
    out.push_str(&format!(
        "\n{passed}/{} checks passed ({:.1}%); required {:.1}%: {}\n",
        checks.len(),
        ratio * 100.0,
        min_pass_ratio * 100.0,
        if ok { "OK" } else { "FAILED" }
    ));
    for c in blocked(checks) {
        out.push_str(&format!(
            "FAILED whatever the ratio: {}: {}\n",
            c.name, c.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_values_come_from_the_exposition() {
        let text = "# HELP m4watch_performance_score x\n# TYPE m4watch_performance_score gauge\n\
                    m4watch_performance_score 91.5\n# TYPE m4watch_performance_score_coverage_ratio gauge\n\
                    m4watch_performance_score_coverage_ratio 1\n";
        let f = exposed_families(text);
        assert!(f.contains("m4watch_performance_score"));
        assert!(f.contains("m4watch_performance_score_coverage_ratio"));
        assert_eq!(sample_value(text, "m4watch_performance_score"), Some(91.5));
        assert_eq!(sample_value(text, "m4watch_performance"), None);
    }

    #[test]
    fn table_reports_failures_and_the_ratio() {
        let checks = vec![
            Check::pass("GET /metrics", "200"),
            Check::fail("collector hardware", "last run failed: boom"),
        ];
        assert_eq!(pass_ratio(&checks), 0.5);
        let t = table(&checks, 1.0);
        assert!(
            t.contains("FAIL   collector hardware  last run failed: boom"),
            "{t}"
        );
        assert!(
            t.contains("1/2 checks passed (50.0%); required 100.0%: FAILED"),
            "{t}"
        );
        assert!(table(&checks, 0.5).ends_with("OK\n"));
    }

    #[test]
    fn the_health_check_blocks_on_critical_unless_allowed() {
        let critical = r#"{"status":"critical","reasons":[
            {"kind":"storage_failing","severity":"critical","detail":"the data directory takes no writes: gone"},
            {"kind":"alerts_firing","severity":"critical","detail":"1 critical alert(s) firing"},
            {"kind":"collector_failing","severity":"degraded","detail":"collector host failed"}]}"#;
        let c = health_check(critical, false);
        assert!(!c.passed && c.blocking, "{c:?}");
        assert_eq!(
            c.detail,
            "critical: storage_failing: the data directory takes no writes: gone; \
             alerts_firing: 1 critical alert(s) firing"
        );
        let checks = vec![Check::pass("GET /metrics", "200"), c];
        assert!(
            !passed(&checks, 0.0),
            "a ratio of 0 does not let it through"
        );
        assert!(table(&checks, 0.0).contains("FAILED whatever the ratio: system health"));
        let allowed = health_check(critical, true);
        assert!(allowed.passed && !allowed.blocking, "{allowed:?}");
        assert!(
            allowed
                .detail
                .starts_with("critical, allowed by --allow-unhealthy: storage_failing")
        );
        let degraded = health_check(
            r#"{"status":"degraded","reasons":[{"kind":"probe_failing","severity":"degraded","detail":"probe x failed"}]}"#,
            false,
        );
        assert!(degraded.passed, "{degraded:?}");
        assert_eq!(degraded.detail, "degraded: probe_failing: probe x failed");
        assert!(health_check(r#"{"status":"healthy","reasons":[]}"#, false).passed);
        assert!(!health_check("not json", false).passed);
        // Only a blocking failure is said in the JSON output.
        let json = serde_json::to_value(&checks).unwrap();
        assert_eq!(json[1]["blocking"], true);
        assert!(json[0].get("blocking").is_none());
    }

    #[test]
    fn the_heartbeat_check_reads_the_dry_run() {
        let ok = heartbeat_check(
            r#"{"method":"GET","destination":"https://hc-ping.com:443","headers":[],"interval_seconds":60,"reachable":true,"healthy":true}"#,
        );
        assert!(ok.passed, "{ok:?}");
        assert_eq!(ok.detail, "dry run: GET https://hc-ping.com:443 reachable");
        let down = heartbeat_check(
            r#"{"method":"POST","headers":[],"interval_seconds":60,"reachable":false,"reason":"connection","error":"cannot connect to 127.0.0.1:9: Connection refused (os error 111)","healthy":true}"#,
        );
        assert!(!down.passed);
        assert_eq!(
            down.detail,
            "dry run: cannot reach the dead-man's service: cannot connect to 127.0.0.1:9: Connection refused (os error 111)"
        );
        let skipping = heartbeat_check(
            r#"{"method":"GET","destination":"http://127.0.0.1:8080","headers":[],"interval_seconds":60,"reachable":true,"healthy":false,"skip_reason":"delivery_backlog"}"#,
        );
        assert!(!skipping.passed);
        assert_eq!(
            skipping.detail,
            "dry run: GET http://127.0.0.1:8080 reachable, but beats are being skipped: delivery_backlog"
        );
    }

    #[test]
    fn the_runbook_check_names_rules_without_a_section() {
        let rule = |name: &str, url: Option<&str>| AlertingRule {
            name: name.into(),
            runbook_url: url.map(str::to_string),
        };
        let ok = runbook_check(&[
            rule("ContainerDown", Some("/runbooks#containerdown")),
            rule("DeskRule", Some("https://wiki.example/desk")),
        ]);
        assert!(ok.passed, "{ok:?}");
        assert_eq!(
            ok.detail,
            "2 rules: 1 with a section of docs/runbooks.md, 1 linking elsewhere (not checked)"
        );
        let bad = runbook_check(&[
            rule("ContainerDown", Some("/runbooks#containerdown")),
            rule("Mine", None),
            rule("Typo", Some("/runbooks#containerdwn")),
        ]);
        assert!(!bad.passed);
        assert_eq!(
            bad.detail,
            "2 of 3 alerting rules: Mine: no runbook_url annotation; \
             Typo: docs/runbooks.md has no section #containerdwn"
        );
        assert!(!runbook_check(&[]).passed);
    }

    #[test]
    fn the_score_check_fails_a_low_score_or_low_coverage_with_the_reason() {
        let m = |body: &str| format!("# TYPE x gauge\n{body}");
        let ok = score_check(
            &m("m4watch_performance_score 91.5\nm4watch_performance_score_coverage_ratio 1\n"),
            85.0,
        );
        assert!(ok.passed, "{ok:?}");
        let low = score_check(
            &m(
                "m4watch_performance_score 29\nm4watch_performance_score_coverage_ratio 0.6\n\
                m4watch_performance_component_score{component=\"latency\"} 0.2\n\
                m4watch_performance_component_score{component=\"risk\"} 0.9\n",
            ),
            85.0,
        );
        assert!(!low.passed);
        assert_eq!(
            low.detail,
            "29.0 is below the floor 85, coverage 0.60; weakest component: latency at 0.20"
        );
        let thin = score_check(&m("m4watch_performance_score_coverage_ratio 0.2\n"), 85.0);
        assert!(!thin.passed);
        assert!(
            thin.detail.contains("only 20% of the score's weight"),
            "{}",
            thin.detail
        );
        let zero = score_check(&m("m4watch_performance_score 0\n"), 85.0);
        assert!(!zero.passed, "a score of 0 no longer passes");
    }
}
