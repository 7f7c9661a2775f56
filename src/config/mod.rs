//! Configuration: YAML -> typed, validated structs, with an embedded default.
//!
//! Unknown keys are errors, values are checked at load, and every error names the file,
//! the key path and what is wrong. Secrets come from the file, a `*_file` sibling or an
//! `M4WATCH_*` environment variable, and redact themselves wherever they are printed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The configuration m4watch runs on when no `--config` is given.
mod ceilings;
mod containers;
mod hardware;
pub mod heartbeat;
mod history;
mod host;
mod identity;
mod locate;
pub mod notify;
mod processes;
mod rules;
pub mod timeinterval;
mod trading;
mod values;

pub use ceilings::MAX_ANY_DURATION;
pub use containers::*;
pub use hardware::*;
pub use history::*;
pub use host::*;
pub use identity::{HOST_LABEL, Identity, hostname};
pub use processes::*;
pub use rules::*;
pub use trading::*;
pub use values::*;

/// The largest config file m4watch reads (1 MiB): a config is a few kilobytes, and a
/// larger file (or `/dev/zero`) is refused after reading at most this much.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

pub const DEFAULT_YAML: &str = include_str!("../../config/default.yml");

/// A configuration error, phrased for the person who wrote the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}: {path}: {reason}")]
    Invalid {
        file: String,
        path: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The whole configuration. Every key has a default (so a file may hold only the
/// sections it changes); the embedded default file spells them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address for /metrics and the API (`--listen` overrides it).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the SQLite database and other state, relative to the working
    /// directory (`--data-dir` overrides it).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Labels added to every alert this m4watch evaluates and to every alert it sends
    /// on, where the alert lacks them (Prometheus's `global.external_labels`). `host`
    /// (the machine's hostname) is always there unless set here; an empty value
    /// removes a label. After loading, the map holds the labels in force.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Where people reach this m4watch (links in notifications, `runbook_url`s that
    /// start with `/`). Default: `http://<hostname>:<port>` when listening on every
    /// interface, else `http://<listen>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
    /// Grafana's base URL: `dashboard_url` annotations that start with `/` are
    /// links below it. Without it, notifications carry no dashboard link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_url: Option<String>,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub hardware: HardwareConfig,
    #[serde(default)]
    pub process: ProcessConfig,
    /// The network stack's UDP/TCP counters and the watched feed sockets.
    #[serde(default)]
    pub host: HostConfig,
    /// The trading processes, in named groups.
    #[serde(default)]
    pub processes: ProcessesConfig,
    #[serde(default)]
    pub trading: TradingConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    /// Receivers, routes and delivery of alert notifications.
    #[serde(default)]
    pub notifications: notify::NotifyConfig,
    #[serde(default)]
    pub containers: ContainersConfig,
    #[serde(default)]
    pub probes: ProbesConfig,
    /// Hardware and container samples and latency baselines kept in SQLite.
    #[serde(default)]
    pub history: HistoryConfig,
    /// Thresholds of the recommendations (`performance/optimizations`).
    #[serde(default)]
    pub advice: AdviceConfig,
    /// The dead-man's switch: a request to a service off the host every interval,
    /// while the rules evaluate and notifications drain. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<heartbeat::HeartbeatConfig>,
    /// `--web.config.file` (exporter-toolkit format: TLS, basic auth, headers); set
    /// from the command line only, as Prometheus's exporters take it.
    #[serde(skip)]
    pub web_config_file: Option<PathBuf>,
}

/// API access control and the HTTP server's limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token every state-changing request must present
    /// (env `M4WATCH_API_TOKEN`). Without one, state-changing requests are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub token_file: Option<PathBuf>,
    /// When set, reads need this bearer token too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub read_token_file: Option<PathBuf>,
    /// A request's head must arrive complete within this from its first byte (the first
    /// request's from the connection's start), and a connection that has sent no
    /// request yet is closed after this; a slow client is disconnected.
    #[serde(default = "ApiConfig::default_header_read_timeout")]
    pub header_read_timeout: Dur,
    /// A connection with no request in progress (a kept-alive one waiting for its next
    /// request, or one that never sends a byte) is closed after this. Longer than
    /// Prometheus's default 1m scrape interval, so a scraper's connection is reused.
    #[serde(default = "ApiConfig::default_idle_timeout")]
    pub idle_timeout: Dur,
    /// Connections served at once; at the cap a newcomer is admitted by closing the
    /// connection doing least (no request yet or idle, then the slowest request head).
    #[serde(default = "ApiConfig::default_max_connections")]
    pub max_connections: usize,
    /// The longest a silence may last: `duration` and `ends_at` further ahead are
    /// refused with 400.
    #[serde(default = "ApiConfig::default_max_silence_duration")]
    pub max_silence_duration: Dur,
}

impl ApiConfig {
    fn default_header_read_timeout() -> Dur {
        Dur(Duration::from_secs(10))
    }
    fn default_idle_timeout() -> Dur {
        Dur(Duration::from_secs(120))
    }
    fn default_max_connections() -> usize {
        512
    }
    fn default_max_silence_duration() -> Dur {
        Dur(Duration::from_secs(31_557_600)) // 1y, 365.25 days
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            token_file: None,
            read_token: None,
            read_token_file: None,
            header_read_timeout: ApiConfig::default_header_read_timeout(),
            idle_timeout: ApiConfig::default_idle_timeout(),
            max_connections: ApiConfig::default_max_connections(),
            max_silence_duration: ApiConfig::default_max_silence_duration(),
        }
    }
}

/// The /metrics snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// How often the exposition is re-encoded even when no collector published
    /// (instruments such as ingest counters change between collector runs).
    pub snapshot_interval: Dur,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            snapshot_interval: Dur(Duration::from_secs(1)),
        }
    }
}

/// `listen` when the file names none: every interface, port 9977.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9977);

/// `data_dir` when the file names none.
pub const DEFAULT_DATA_DIR: &str = "./data";

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

fn yes() -> bool {
    true
}

impl Config {
    /// The embedded default, with environment overrides applied.
    pub fn embedded_default(env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_YAML, "<embedded default>", Path::new("."), env)
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = read_capped(path).map_err(|reason| ConfigError::Read {
            file: file.clone(),
            reason,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &file, base, env)
    }

    /// Parses YAML text; `file` names it in errors, `base` anchors relative `*_file`
    /// paths.
    pub fn parse(
        text: &str,
        file: &str,
        base: &Path,
        env: EnvLookup<'_>,
    ) -> Result<Config, ConfigError> {
        if let Some((line, col)) = locate::too_deep(text) {
            return Err(ConfigError::Invalid {
                file: format!("{file}:{line}:{col}"),
                path: "(top level)".into(),
                reason: format!(
                    "nested deeper than {} levels; a config needs a handful",
                    locate::MAX_DEPTH
                ),
            });
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Invalid {
                file: match inner.location() {
                    Some(l) => format!("{file}:{}:{}", l.line(), l.column()),
                    None => file.to_string(),
                },
                path: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                reason: bare_yaml_message(&inner.to_string()),
            }
        })?;
        let invalid = |path: &str, reason: String| ConfigError::Invalid {
            file: at(text, file, path),
            path: path.to_string(),
            reason,
        };
        config.api.token = resolve_secret(
            config.api.token.take(),
            config.api.token_file.as_deref(),
            "api.token",
            "M4WATCH_API_TOKEN",
            base,
            env,
        )
        .map_err(|(p, r)| invalid(&p, r))?;
        config.api.read_token = resolve_secret(
            config.api.read_token.take(),
            config.api.read_token_file.as_deref(),
            "api.read_token",
            "M4WATCH_API_READ_TOKEN",
            base,
            env,
        )
        .map_err(|(p, r)| invalid(&p, r))?;
        config
            .notifications
            .resolve(base, env)
            .map_err(|(p, r)| invalid(&p, r))?;
        if let Some(h) = &mut config.heartbeat {
            h.resolve(base, env).map_err(|(p, r)| invalid(&p, r))?;
        }
        for t in &mut config.probes.targets {
            if let Some(ca) = &mut t.tls_ca_file {
                // Relative to the config file, like the `*_file` secrets.
                *ca = base.join(&*ca);
            }
        }
        config.validate().map_err(|(p, r)| invalid(&p, r))?;
        config.external_labels = identity::external_labels(Some(&config.external_labels))
            .map_err(|(p, r)| invalid(&p, r))?
            .into_iter()
            .collect();
        for (key, url) in [
            ("external_url", &mut config.external_url),
            ("grafana_url", &mut config.grafana_url),
        ] {
            if let Some(u) = url.as_deref() {
                *url = Some(identity::base_url(u, key).map_err(|(p, r)| invalid(&p, r))?);
            }
        }
        if let Some(f) = &config.hardware.replay_file {
            // Relative to the config file, like the `*_file` secrets.
            config.hardware.replay_file = Some(base.join(f));
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
        ceilings::check(self)?;
        positive(self.metrics.snapshot_interval, "metrics.snapshot_interval")?;
        positive(self.hardware.interval, "hardware.interval")?;
        positive(self.hardware.timeout, "hardware.timeout")?;
        if self.hardware.timeout > self.hardware.interval {
            return err(
                "hardware.timeout",
                format!(
                    "must not exceed hardware.interval ({}), or runs would overlap",
                    self.hardware.interval
                ),
            );
        }
        positive(self.process.interval, "process.interval")?;
        positive(self.host.interval, "host.interval")?;
        if self.host.udp_ports.contains(&0) {
            return err(
                "host.udp_ports",
                "port 0 is not a port a socket is bound to".into(),
            );
        }
        self.host.clock.validate()?;
        let fs = &self.host.filesystems;
        positive(fs.stat_timeout, "host.filesystems.stat_timeout")?;
        if fs.stat_timeout >= self.host.interval {
            return err(
                "host.filesystems.stat_timeout",
                format!(
                    "must be shorter than host.interval ({}), or one stuck filesystem would time the whole host collector out",
                    self.host.interval
                ),
            );
        }
        self.processes.validate()?;
        self.trading.validate()?;
        for (i, name) in self.trading.market_hours.iter().enumerate() {
            if !self
                .notifications
                .time_intervals
                .iter()
                .any(|t| &t.name == name)
            {
                return err(
                    &format!("trading.market_hours[{i}]"),
                    format!(
                        "no time interval named {name:?}: define it under notifications.time_intervals"
                    ),
                );
            }
        }
        at_least(
            self.rules.evaluation_interval,
            MIN_SLOW_INTERVAL,
            "rules.evaluation_interval",
        )?;
        at_least(
            self.rules.max_range,
            Duration::from_secs(1),
            "rules.max_range",
        )?;
        at_least(
            self.rules.resolved_retention,
            Duration::from_secs(1),
            "rules.resolved_retention",
        )?;
        let api = &self.api;
        at_least(
            api.header_read_timeout,
            MIN_SLOW_INTERVAL,
            "api.header_read_timeout",
        )?;
        at_least(api.idle_timeout, MIN_SLOW_INTERVAL, "api.idle_timeout")?;
        at_least(
            api.max_silence_duration,
            Duration::from_secs(60),
            "api.max_silence_duration",
        )?;
        if !(1..=1_000_000).contains(&api.max_connections) {
            return err(
                "api.max_connections",
                "must be between 1 and 1000000".into(),
            );
        }
        self.validate_containers()?;
        self.validate_history_and_advice()?;
        self.validate_probes()?;
        if let Some(t) = &self.hardware.topology {
            t.cpu_sets()?;
        }
        if self.hardware.source == HardwareSource::Replay && self.hardware.replay_file.is_none() {
            return err(
                "hardware.replay_file",
                "source: replay needs the recording to play, e.g. replay_file: recording.jsonl"
                    .into(),
            );
        }
        if !(self.hardware.ane_max_watts > 0.0 && self.hardware.ane_max_watts.is_finite()) {
            return err(
                "hardware.ane_max_watts",
                "must be a number of watts greater than 0".into(),
            );
        }
        #[cfg(not(target_os = "macos"))]
        if self.hardware.source == HardwareSource::Macos {
            return err(
                "hardware.source",
                "macos is only available when m4watch runs on macOS".into(),
            );
        }
        Ok(())
    }
}

impl Config {
    /// The time intervals `trading.market_hours` names, in its order.
    pub fn market_hours(&self) -> Vec<timeinterval::TimeInterval> {
        self.trading
            .market_hours
            .iter()
            .filter_map(|n| {
                self.notifications
                    .time_intervals
                    .iter()
                    .find(|t| &t.name == n)
                    .cloned()
            })
            .collect()
    }

    /// What is legal but probably not meant: `check-config` prints these and still
    /// passes; the daemon logs them at start-up. One sentence each.
    pub fn warnings(&self) -> Vec<String> {
        self.notifications
            .unrouted_receivers()
            .into_iter()
            .map(|r| {
                format!(
                    "receiver {r:?} is unreachable: no route of notifications.route (nor the escalation) names it, so nothing is sent to it"
                )
            })
            .collect()
    }

    /// Who this m4watch is to the outside (external labels, URLs), as loaded.
    pub fn identity(&self) -> Identity {
        Identity {
            external_labels: self
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            external_url: self
                .external_url
                .clone()
                .unwrap_or_else(|| identity::default_external_url(self.listen)),
            grafana_url: self.grafana_url.clone(),
            evaluation_interval: self.rules.evaluation_interval.get(),
        }
    }

    fn validate_history_and_advice(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
        let h = &self.history;
        at_least(h.interval, MIN_SLOW_INTERVAL, "history.interval")?;
        at_least(
            h.baseline_period,
            Duration::from_secs(1),
            "history.baseline_period",
        )?;
        if h.retention <= h.interval {
            return err(
                "history.retention",
                format!(
                    "must be longer than history.interval ({}), or nothing would be kept",
                    h.interval
                ),
            );
        }
        if h.baseline_periods == 0 {
            return err("history.baseline_periods", "must be at least 1".into());
        }
        let a = &self.advice;
        at_least(a.window, Duration::from_secs(1), "advice.window")?;
        for (name, v) in [
            ("saturated_ratio", a.saturated_ratio),
            ("idle_ratio", a.idle_ratio),
            ("memory_limit_ratio", a.memory_limit_ratio),
            ("gpu_idle_ratio", a.gpu_idle_ratio),
            ("memory_pressure_ratio", a.memory_pressure_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(&format!("advice.{name}"), "must be between 0 and 1".into());
            }
        }
        if a.idle_ratio >= a.saturated_ratio {
            return err(
                "advice.idle_ratio",
                format!(
                    "must be below advice.saturated_ratio ({})",
                    a.saturated_ratio
                ),
            );
        }
        if a.throttled_seconds_per_second.is_nan() || a.throttled_seconds_per_second < 0.0 {
            return err(
                "advice.throttled_seconds_per_second",
                "must be 0 or more".into(),
            );
        }
        Ok(())
    }

    fn validate_containers(&self) -> Result<(), (String, String)> {
        let c = &self.containers;
        let err = |p: &str, r: String| Err((p.to_string(), r));
        positive(c.interval, "containers.interval")?;
        positive(c.timeout, "containers.timeout")?;
        positive(c.resync_interval, "containers.resync_interval")?;
        if c.timeout > c.interval {
            return err(
                "containers.timeout",
                format!(
                    "must not exceed containers.interval ({}), or runs would overlap",
                    c.interval
                ),
            );
        }
        if c.max_concurrent_requests == 0 {
            return err(
                "containers.max_concurrent_requests",
                "must be at least 1".into(),
            );
        }
        if let Some(host) = &c.docker_host {
            let ok = ["unix://", "tcp://", "http://"]
                .iter()
                .any(|p| host.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
                || host.starts_with('/');
            if !ok {
                return err(
                    "containers.docker_host",
                    format!(
                        "unsupported address {host:?}: write unix:///path/to/docker.sock, tcp://host:port or http://host:port"
                    ),
                );
            }
        }
        self.validate_expected_containers()?;
        for (which, m) in [("include", &c.include), ("exclude", &c.exclude)] {
            for (i, l) in m.labels.iter().enumerate() {
                if l.split('=').next().unwrap_or("").trim().is_empty() {
                    return err(
                        &format!("containers.{which}.labels[{i}]"),
                        format!("{l:?} has no label key: write key or key=value"),
                    );
                }
            }
        }
        Ok(())
    }

    fn validate_expected_containers(&self) -> Result<(), (String, String)> {
        let c = &self.containers;
        if c.expected.is_empty() {
            return Ok(());
        }
        if !c.enabled {
            return Err((
                "containers.expected".into(),
                "needs containers.enabled: true; nothing would be watched".into(),
            ));
        }
        if c.expected.len() > containers::MAX_EXPECTED_CONTAINERS {
            return Err((
                "containers.expected".into(),
                format!(
                    "{} entries; at most {} are allowed",
                    c.expected.len(),
                    containers::MAX_EXPECTED_CONTAINERS
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, e) in c.expected.iter().enumerate() {
            let at = |key: &str| format!("containers.expected[{i}]{key}");
            if e.name.is_none() && e.labels.is_empty() {
                return Err((
                    at(""),
                    "names nothing: write name: <container name> or labels: {key: value}".into(),
                ));
            }
            if e.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err((at(".name"), "must not be empty".into()));
            }
            if e.labels.len() > containers::MAX_EXPECTED_LABELS {
                return Err((
                    at(".labels"),
                    format!(
                        "{} labels; at most {} are allowed",
                        e.labels.len(),
                        containers::MAX_EXPECTED_LABELS
                    ),
                ));
            }
            if e.labels.keys().any(|k| k.trim().is_empty()) {
                return Err((at(".labels"), "a label key is empty".into()));
            }
            let sel = e.selector();
            if !seen.insert(sel.clone()) {
                return Err((at(""), format!("{sel:?} is listed twice")));
            }
        }
        Ok(())
    }

    fn validate_probes(&self) -> Result<(), (String, String)> {
        let p = &self.probes;
        positive(p.interval, "probes.interval")?;
        let mut names = BTreeSet::new();
        for (i, t) in p.targets.iter().enumerate() {
            let at = |key: &str| format!("probes.targets[{i}].{key}");
            if t.name.trim().is_empty() {
                return Err((at("name"), "must not be empty".into()));
            }
            if !names.insert(t.name.as_str()) {
                return Err((at("name"), format!("{:?} is listed twice", t.name)));
            }
            probe_target(t, &at)?;
            positive(t.timeout, &at("timeout"))?;
            if t.timeout > p.interval {
                return Err((
                    at("timeout"),
                    format!(
                        "must not exceed probes.interval ({}), or probes would overlap",
                        p.interval
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What one `probes.targets[]` entry asks for, by kind.
fn probe_target(t: &ProbeTarget, at: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
    let refuse = |key: &str, reason: String| Err((at(key), reason));
    match t.kind {
        ProbeKind::Http => {
            let scheme_ok = t
                .url
                .split_once("://")
                .is_some_and(|(s, rest)| (s == "http" || s == "https") && !rest.is_empty());
            if !scheme_ok {
                return refuse(
                    "url",
                    format!("{:?} is not an http:// or https:// URL", t.url),
                );
            }
            let tcp_only = [
                ("address", t.address.is_some()),
                ("send", t.send.is_some()),
                ("expect", t.expect.is_some()),
                ("tls", t.tls),
                ("tls_server_name", t.tls_server_name.is_some()),
            ];
            if let Some((key, _)) = tcp_only.iter().find(|(_, set)| *set) {
                return refuse(
                    key,
                    "only for kind: tcp (an http probe's TLS follows its https:// URL)".into(),
                );
            }
            if t.tls_ca_file.is_some() && !t.uses_tls() {
                return refuse("tls_ca_file", "only for an https:// URL".into());
            }
        }
        ProbeKind::Tcp => {
            if !t.url.is_empty() {
                return refuse(
                    "url",
                    "kind: tcp connects to address: host:port, not a URL".into(),
                );
            }
            let Some(address) = &t.address else {
                return refuse("address", "required with kind: tcp, as host:port".into());
            };
            let Some(host) = probe_host(address) else {
                return refuse(
                    "address",
                    format!(
                        "{address:?} is not host:port with a port from 1 to 65535 ([v6]:port for IPv6)"
                    ),
                );
            };
            if let Some(send) = &t.send
                && send.len() > MAX_PROBE_SEND
            {
                return refuse(
                    "send",
                    format!("{} bytes; at most {MAX_PROBE_SEND}", send.len()),
                );
            }
            if let Some(expect) = &t.expect {
                if expect.len() > MAX_PROBE_EXPECT {
                    return refuse(
                        "expect",
                        format!("{} characters; at most {MAX_PROBE_EXPECT}", expect.len()),
                    );
                }
                if let Err(e) = regex::bytes::RegexBuilder::new(expect)
                    .size_limit(1 << 20)
                    .build()
                {
                    return refuse("expect", format!("not a regular expression: {e}"));
                }
            }
            if !t.tls {
                if t.tls_server_name.is_some() || t.tls_ca_file.is_some() {
                    let key = if t.tls_server_name.is_some() {
                        "tls_server_name"
                    } else {
                        "tls_ca_file"
                    };
                    return refuse(key, "only with tls: true".into());
                }
            } else {
                let (key, name) = match &t.tls_server_name {
                    Some(n) => ("tls_server_name", n.as_str()),
                    None => ("address", host),
                };
                if rustls_pki_types::ServerName::try_from(name).is_err() {
                    return refuse(
                        key,
                        format!("{name:?} is not a DNS name or IP address a certificate can carry"),
                    );
                }
            }
        }
    }
    if let Some(ca) = &t.tls_ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            (
                at("tls_ca_file"),
                format!("cannot read {}: {e}", ca.display()),
            )
        })?;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        if !certs.is_ok_and(|c| !c.is_empty()) {
            return refuse(
                "tls_ca_file",
                format!("{} holds no PEM certificate", ca.display()),
            );
        }
    }
    Ok(())
}

/// The host of a probe's `host:port` (`[v6]:port`), when the port is one.
pub fn probe_host(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then_some(host)
}

/// Reads a config file of at most [`MAX_CONFIG_BYTES`], never more: a larger file, or
/// one without end, is refused once the cap is passed.
pub fn read_capped(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "larger than {MAX_CONFIG_BYTES} bytes (1 MiB); a config is a few kilobytes"
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// `file:line:col` of the key path `path` in `text` (of its nearest written ancestor
/// when the key is left at its default); `file` alone when none of it is written.
pub fn at(text: &str, file: &str, path: &str) -> String {
    match locate::locate(text, path) {
        Some((line, col)) => format!("{file}:{line}:{col}"),
        None => file.to_string(),
    }
}

/// The YAML library's message without the key path and position it appends, since
/// the error already names both.
fn bare_yaml_message(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    };
    match msg.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') && !prefix.is_empty() => rest.to_string(),
        _ => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Loads `testdata/config/<name>.yml` and returns its error message.
    fn error_of(name: &str) -> String {
        let path = PathBuf::from(format!(
            "{}/testdata/config/{name}.yml",
            env!("CARGO_MANIFEST_DIR")
        ));
        let err = Config::load(&path, &no_env).expect_err("config must be rejected");
        // Errors name the file as given; make the assertion independent of checkout path.
        err.to_string()
            .replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), "")
    }

    #[test]
    fn tcp_and_tls_probes_are_validated() {
        let parse = |target: &str| {
            let text = format!(
                "listen: 127.0.0.1:1\ndata_dir: d\nprobes:\n  targets:\n    - {{name: gw, {target}}}\n"
            );
            Config::parse(&text, "<t>", Path::new("."), &no_env).map_err(|e| e.to_string())
        };
        let err = |target: &str| parse(target).expect_err("must be rejected");
        let ok = |target: &str| parse(target).unwrap_or_else(|e| panic!("{target}: {e}"));
        let c = ok("kind: tcp, address: \"fix.example:9878\", expect: \"^8=FIX\"");
        assert_eq!(c.probes.targets[0].kind, ProbeKind::Tcp);
        // expect without send is a banner check.
        assert!(c.probes.targets[0].send.is_none());
        ok("kind: tcp, address: \"[::1]:443\", tls: true");
        ok("kind: tcp, address: \"10.0.0.5:443\", tls: true, tls_server_name: fix.example");
        ok("url: \"https://risk.example/health\"");
        assert!(
            err("kind: udp, address: \"a:1\"")
                .contains("unknown variant `udp`, expected `http` or `tcp`")
        );
        assert!(
            err("kind: tcp")
                .contains("probes.targets[0].address: required with kind: tcp, as host:port")
        );
        for bad in [
            "fix.example",
            "fix.example:0",
            "fix.example:70000",
            ":443",
            "::1:443",
        ] {
            assert!(
                err(&format!("kind: tcp, address: \"{bad}\"")).contains("is not host:port"),
                "{bad}"
            );
        }
        assert!(err("kind: tcp, address: \"a:1\", url: \"http://a/\"").contains("not a URL"));
        assert!(
            err("kind: tcp, address: \"a:1\", expect: \"(\"")
                .contains("expect: not a regular expression")
        );
        let long = "x".repeat(MAX_PROBE_SEND + 1);
        assert!(
            err(&format!("kind: tcp, address: \"a:1\", send: {long}")).contains("at most 4096")
        );
        assert!(
            err("kind: tcp, address: \"a:1\", tls_server_name: a").contains("only with tls: true")
        );
        assert!(err("url: \"http://a/\", send: x").contains("send: only for kind: tcp"));
        assert!(err("url: \"http://a/\", tls: true").contains("tls: only for kind: tcp"));
        assert!(
            err("url: \"http://a/\", tls_ca_file: ca.pem")
                .contains("tls_ca_file: only for an https:// URL")
        );
        assert!(
            err("url: \"https://a/\", tls_ca_file: no-such-ca.pem")
                .contains("tls_ca_file: cannot read"),
        );
        assert!(
            err("kind: tcp, address: \"a:1\", tls: true, tls_server_name: \"not a name\"")
                .contains("is not a DNS name or IP address")
        );
        assert!(err("kind: tcp, address: \"a:1\", timeout: 6m").contains("timeout"));
    }

    #[test]
    fn expected_containers_are_validated() {
        let err = |expected: &str| {
            let text =
                format!("listen: 127.0.0.1:1\ndata_dir: d\ncontainers:\n  expected:\n{expected}");
            Config::parse(&text, "<t>", Path::new("."), &no_env)
                .expect_err("must be rejected")
                .to_string()
        };
        assert_eq!(
            err("    - {}\n"),
            "<t>:5:7: containers.expected[0]: names nothing: write name: <container name> or labels: {key: value}"
        );
        assert_eq!(
            err("    - name: a\n    - labels: {app: x}\n    - {name: a}\n"),
            "<t>:7:7: containers.expected[2]: \"a\" is listed twice"
        );
        assert!(
            err("    - name: \" \"\n").contains("containers.expected[0].name: must not be empty")
        );
        assert!(err("    - labels: {\"\": x}\n").contains("a label key is empty"));
        assert!(err("    - nmae: a\n").contains("unknown field `nmae`"));
        let many: String = (0..=MAX_EXPECTED_CONTAINERS)
            .map(|i| format!("    - name: c{i}\n"))
            .collect();
        assert!(err(&many).contains("257 entries; at most 256 are allowed"));
        let text = "listen: 127.0.0.1:1\ndata_dir: d\ncontainers:\n  enabled: false\n  expected: [{name: a}]\n";
        let e = Config::parse(text, "<t>", Path::new("."), &no_env).unwrap_err();
        assert!(
            e.to_string().contains("needs containers.enabled: true"),
            "{e}"
        );
        let text = "listen: 127.0.0.1:1\ndata_dir: d\ncontainers:\n  expected:\n    - name: gw-*\n      labels: {venue: xlon, app: fix}\n";
        let c = Config::parse(text, "<t>", Path::new("."), &no_env).unwrap();
        assert_eq!(
            c.containers.expected[0].selector(),
            "gw-*,app=fix,venue=xlon"
        );
    }

    #[test]
    fn a_section_given_in_part_keeps_the_defaults_of_the_rest() {
        let text = "listen: 127.0.0.1:1\ndata_dir: d\nhardware:\n  enabled: false\nmetrics: {}\nprocess:\n  enabled: false\n";
        let c = Config::parse(text, "<t>", Path::new("."), &no_env).unwrap();
        assert!(!c.hardware.enabled);
        assert_eq!(c.hardware.interval, HardwareConfig::default().interval);
        assert!(!c.process.enabled);
        assert_eq!(c.process.interval, ProcessConfig::default().interval);
    }

    #[test]
    fn a_file_with_only_a_trading_section_gets_every_other_default() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/config/partial/trading_only.yml"
        ));
        let c = Config::load(&path, &no_env).unwrap();
        assert_eq!(
            c.trading.statsd_listen,
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(c.trading.windows.len(), 1);
        // Everything the file leaves out is what the embedded default says.
        let mut expected = Config::embedded_default(&no_env).unwrap();
        expected.trading.statsd_listen = c.trading.statsd_listen;
        expected.trading.windows = c.trading.windows.clone();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default(&no_env).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9977");
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.hardware.interval.get(), Duration::from_secs(1));
        assert!(c.api.token.is_none());
    }

    #[test]
    fn error_unknown_key() {
        assert_eq!(
            error_of("unknown_key"),
            "testdata/config/unknown_key.yml:4:3: hardware.intervall: unknown field `intervall`, expected one of `enabled`, `source`, `interval`, `timeout`, `procfs`, `sysfs`, `topology`, `replay_file`, `replay_loop`, `ane_max_watts`"
        );
    }

    #[test]
    fn error_bad_duration() {
        assert_eq!(
            error_of("bad_duration"),
            "testdata/config/bad_duration.yml:4:3: hardware.interval: invalid duration \"1\": write a number with a unit, like 1s, 500ms or 5m"
        );
    }

    #[test]
    fn error_timeout_exceeds_interval() {
        assert_eq!(
            error_of("timeout_exceeds_interval"),
            "testdata/config/timeout_exceeds_interval.yml:5:12: hardware.timeout: must not exceed hardware.interval (1s), or runs would overlap"
        );
    }

    #[test]
    fn error_zero_interval() {
        assert_eq!(
            error_of("zero_interval"),
            "testdata/config/zero_interval.yml:4:13: process.interval: must be at least 10ms (got 0s)"
        );
    }

    #[test]
    fn error_host_port_zero() {
        assert_eq!(
            error_of("host_port_zero"),
            "testdata/config/host_port_zero.yml:3:14: host.udp_ports: port 0 is not a port a socket is bound to"
        );
    }

    #[test]
    fn error_host_bad_ignore_regex() {
        assert_eq!(
            error_of("host_bad_ignore_regex"),
            "testdata/config/host_bad_ignore_regex.yml:3:5: host.filesystems.ignore_types: invalid regular expression \"nfs|(cifs\": unclosed group"
        );
    }

    #[test]
    fn error_host_stat_timeout_exceeds_interval() {
        assert_eq!(
            error_of("host_stat_timeout_exceeds_interval"),
            "testdata/config/host_stat_timeout_exceeds_interval.yml:4:19: host.filesystems.stat_timeout: must be shorter than host.interval (1s), or one stuck filesystem would time the whole host collector out"
        );
    }

    #[test]
    fn error_bad_listen() {
        assert_eq!(
            error_of("bad_listen"),
            "testdata/config/bad_listen.yml:1:9: listen: invalid socket address syntax"
        );
    }

    #[test]
    fn error_bad_log_format() {
        assert_eq!(
            error_of("bad_log_format"),
            "testdata/config/bad_log_format.yml:3:13: log_format: unknown variant `xml`, expected `text` or `json`"
        );
    }

    #[test]
    fn error_topology_overlap() {
        assert_eq!(
            error_of("topology_overlap"),
            "testdata/config/topology_overlap.yml:8:13: hardware.topology: CPU 3 is listed as both performance and efficiency"
        );
    }

    #[test]
    fn error_topology_syntax() {
        assert_eq!(
            error_of("topology_syntax"),
            "testdata/config/topology_syntax.yml:8:27: hardware.topology.performance: invalid CPU list \"4-x\": write ranges like \"0-3,8-11\""
        );
    }

    #[test]
    fn error_token_and_token_file() {
        assert_eq!(
            error_of("token_and_file"),
            "testdata/config/token_and_file.yml:4:10: api.token: set either api.token or api.token_file, not both"
        );
    }

    #[test]
    fn error_missing_token_file() {
        let msg = error_of("missing_token_file");
        assert!(
            msg.starts_with("testdata/config/missing_token_file.yml:4:15: api.token_file: cannot read testdata/config/./no-such-token: "),
            "{msg}"
        );
    }

    #[test]
    fn error_replay_without_file() {
        assert_eq!(
            error_of("replay_without_file"),
            "testdata/config/replay_without_file.yml:4:3: hardware.replay_file: source: replay needs the recording to play, e.g. replay_file: recording.jsonl"
        );
    }

    #[test]
    fn error_ane_max_watts() {
        assert_eq!(
            error_of("ane_max_watts_zero"),
            "testdata/config/ane_max_watts_zero.yml:6:18: hardware.ane_max_watts: must be a number of watts greater than 0"
        );
    }

    #[test]
    fn error_wrong_type() {
        assert_eq!(
            error_of("wrong_type"),
            "testdata/config/wrong_type.yml:4:12: hardware.enabled: invalid type: string \"sometimes\", expected a boolean"
        );
    }

    #[test]
    fn error_trading_score_window_not_a_window() {
        assert_eq!(
            error_of("trading_score_window"),
            "testdata/config/trading_score_window.yml:4:3: trading.score.window: 1m is not one of trading.windows"
        );
    }

    #[test]
    fn error_containers_bad_docker_host() {
        assert_eq!(
            error_of("containers_bad_docker_host"),
            "testdata/config/containers_bad_docker_host.yml:4:16: containers.docker_host: unsupported address \"docker.example.com:2375\": write unix:///path/to/docker.sock, tcp://host:port or http://host:port"
        );
    }

    #[test]
    fn error_trading_target_over_alert() {
        assert_eq!(
            error_of("trading_target_over_alert"),
            "testdata/config/trading_target_over_alert.yml:5:62: trading.score.risk.alert: must be greater than target (10ms)"
        );
    }

    #[test]
    fn error_trading_market_hours_and_silence_after() {
        assert_eq!(
            error_of("trading_market_hours_unknown"),
            "testdata/config/trading_market_hours_unknown.yml:3:38: trading.market_hours[1]: no time interval named \"nyse_extended\": define it under notifications.time_intervals"
        );
        assert_eq!(
            error_of("trading_silence_after_short"),
            "testdata/config/trading_silence_after_short.yml:3:18: trading.silence_after: must be at least 2s (got 1s)"
        );
        assert_eq!(
            error_of("trading_silence_after_long"),
            "testdata/config/trading_silence_after_long.yml:3:18: trading.silence_after: 2h is above the limit of 30m"
        );
    }

    #[test]
    fn error_history_retention_not_above_interval() {
        assert_eq!(
            error_of("history_retention_short"),
            "testdata/config/history_retention_short.yml:5:14: history.retention: must be longer than history.interval (10s), or nothing would be kept"
        );
    }

    #[test]
    fn error_advice_idle_above_saturated() {
        assert_eq!(
            error_of("advice_idle_above_saturated"),
            "testdata/config/advice_idle_above_saturated.yml:5:15: advice.idle_ratio: must be below advice.saturated_ratio (0.5)"
        );
    }

    #[test]
    fn error_containers_zero_concurrency() {
        assert_eq!(
            error_of("containers_zero_concurrency"),
            "testdata/config/containers_zero_concurrency.yml:4:28: containers.max_concurrent_requests: must be at least 1"
        );
    }

    #[test]
    fn error_trading_label_tag_reserved() {
        assert_eq!(
            error_of("trading_label_tag"),
            "testdata/config/trading_label_tag.yml:4:23: trading.label_tags[1]: \"quantile\" is a label m4watch sets itself"
        );
    }

    #[test]
    fn error_trading_throughput() {
        assert_eq!(
            error_of("trading_throughput_negative"),
            "testdata/config/trading_throughput_negative.yml:6:18: trading.throughput.market_data: -1 is not a rate: operations per second, 0 to 1e9"
        );
        assert_eq!(
            error_of("trading_throughput_nan"),
            "testdata/config/trading_throughput_nan.yml:4:33: trading.throughput.order_execution: NaN is not a rate: operations per second, 0 to 1e9"
        );
        assert_eq!(
            error_of("trading_throughput_empty_name"),
            "testdata/config/trading_throughput_empty_name.yml:5:5: trading.throughput: \"\" is not an operation name: 1 to 200 bytes without control characters"
        );
        // The outcome label is m4watch's own (m4watch_trading_operations_total).
        assert_eq!(
            error_of("trading_label_tag_outcome"),
            "testdata/config/trading_label_tag_outcome.yml:4:23: trading.label_tags[1]: \"outcome\" is a label m4watch sets itself"
        );
    }

    #[test]
    fn trading_throughput_targets_load() {
        let text = "trading:\n  throughput: {order_execution: 5, market_data: 1000, idle: 0}\n";
        let c = Config::parse(text, "<t>", Path::new("."), &no_env).unwrap();
        assert_eq!(c.trading.throughput.get("order_execution"), Some(&5.0));
        assert_eq!(c.trading.throughput.get("market_data"), Some(&1000.0));
        assert_eq!(c.trading.throughput.get("idle"), Some(&0.0));
    }

    #[test]
    fn error_trading_mappings_and_ttl() {
        assert_eq!(
            error_of("trading_mapping_bad_ref"),
            "testdata/config/trading_mapping_bad_ref.yml:6:13: trading.mappings[0].name: \"order_$2\" uses $2 but \"orders.*.execution\" has 1 `*`"
        );
        assert_eq!(
            error_of("trading_series_ttl_short"),
            "testdata/config/trading_series_ttl_short.yml:4:15: trading.series_ttl: must be 0s (keep series) or at least the longest window (5m): a series must outlive the windows its quantiles are computed over"
        );
        assert_eq!(
            error_of("trading_mapping_reserved_label"),
            "testdata/config/trading_mapping_reserved_label.yml:7:15: trading.mappings[0].labels: \"window\" is a label m4watch sets itself"
        );
    }

    #[test]
    fn error_containers_label_without_key() {
        assert_eq!(
            error_of("containers_label_without_key"),
            "testdata/config/containers_label_without_key.yml:5:14: containers.exclude.labels[0]: \"=x\" has no label key: write key or key=value"
        );
    }

    #[test]
    fn heartbeat_errors_name_the_key_and_never_the_secret() {
        let want = [
            (
                "heartbeat_no_url",
                "3:3: heartbeat.url: required: set url, url_file or M4WATCH_HEARTBEAT_URL",
            ),
            (
                "heartbeat_bad_url",
                "3:8: heartbeat.url: must be an http:// or https:// URL",
            ),
            (
                "heartbeat_interval_short",
                "4:13: heartbeat.interval: must be at least 1s (got 500ms)",
            ),
            (
                "heartbeat_interval_long",
                "4:13: heartbeat.interval: 2days is above the limit of 1day",
            ),
            (
                "heartbeat_timeout_not_below_interval",
                "5:12: heartbeat.timeout: must be shorter than heartbeat.interval (10s), or beats would overlap",
            ),
            (
                "heartbeat_timeout_long",
                "5:12: heartbeat.timeout: 2m is above the limit of 1m",
            ),
            (
                "heartbeat_bad_method",
                "4:11: heartbeat.method: unknown variant `PUT`, expected one of `GET`, `get`, `POST`, `post`",
            ),
            (
                "heartbeat_bad_header",
                "5:5: heartbeat.headers: the value of \"X-Api-Key\" is not a valid HTTP header value (printable ASCII, no line breaks)",
            ),
            (
                "heartbeat_url_and_file",
                "3:8: heartbeat.url: set either heartbeat.url or heartbeat.url_file, not both",
            ),
            (
                "heartbeat_delivery_delay_short",
                "4:23: heartbeat.max_delivery_delay: must be at least 1s (got 500ms)",
            ),
        ];
        for (file, msg) in want {
            let e = error_of(file);
            assert_eq!(e, format!("testdata/config/{file}.yml:{msg}"));
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    /// The shipped defaults of the section: only a URL given.
    #[test]
    fn a_heartbeat_with_only_a_url_takes_the_shipped_defaults() {
        let text = "heartbeat:\n  url: https://hc-ping.com/0b7e1c2d-SECRET\n";
        let c = Config::parse(text, "<t>", Path::new("."), &no_env).unwrap();
        let h = c.heartbeat.expect("on");
        assert_eq!(h.method, heartbeat::HeartbeatMethod::Get);
        assert_eq!(h.interval.get(), Duration::from_secs(60));
        assert_eq!(h.timeout.get(), Duration::from_secs(10));
        assert_eq!(h.max_delivery_delay.get(), Duration::from_secs(15 * 60));
        assert!(h.headers.is_empty());
        assert!(
            Config::embedded_default(&no_env)
                .unwrap()
                .heartbeat
                .is_none(),
            "off unless configured"
        );
    }

    #[test]
    fn the_heartbeat_url_comes_from_a_file_or_the_environment_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hb"), "https://hc-ping.com/FILE-SECRET\n").unwrap();
        let cfg = dir.path().join("m4watch.yml");
        std::fs::write(
            &cfg,
            "heartbeat:\n  url_file: hb\n  method: POST\n  headers: {X-Api-Key: HEADER-SECRET}\n",
        )
        .unwrap();
        let c = Config::load(&cfg, &no_env).unwrap();
        let h = c.heartbeat.clone().unwrap();
        assert_eq!(
            h.url.as_ref().unwrap().expose(),
            "https://hc-ping.com/FILE-SECRET"
        );
        assert_eq!(h.headers["X-Api-Key"].expose(), "HEADER-SECRET");
        for text in [
            format!("{c:?}"),
            serde_yaml_ng::to_string(&c).unwrap(),
            serde_json::to_string(&c).unwrap(),
        ] {
            assert!(!text.contains("SECRET"), "secret leaked: {text}");
        }
        let env = |k: &str| {
            (k == heartbeat::ENV_HEARTBEAT_URL).then(|| "https://hc-ping.com/ENV".to_string())
        };
        let c = Config::load(&cfg, &env).unwrap();
        assert_eq!(
            c.heartbeat.unwrap().url.unwrap().expose(),
            "https://hc-ping.com/ENV"
        );
    }

    #[test]
    fn trading_defaults_are_the_original_figures() {
        let c = Config::embedded_default(&no_env).unwrap().trading;
        assert_eq!(c.statsd_listen, Some("0.0.0.0:8125".parse().unwrap()));
        assert_eq!(c.max_series, 1000);
        assert_eq!(c.score.latency.target.get(), Duration::from_millis(1));
        assert_eq!(c.score.latency.alert.get(), Duration::from_millis(10));
        assert_eq!(c.score.latency.weight, 0.4);
        assert_eq!(c.score.throughput.dropped_stream, "market_data_dropped");
        assert_eq!(c.score.min_coverage, 0.4);
        // The embedded file and the code's defaults agree.
        let d = TradingConfig::default();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
    }

    #[test]
    fn error_processes_bad_regex() {
        assert_eq!(
            error_of("processes_bad_regex"),
            "testdata/config/processes_bad_regex.yml:6:16: processes.groups[1].cmdline: invalid regex \"md --venue=(XNAS\": unclosed group"
        );
    }

    #[test]
    fn error_processes_group_selects_nothing() {
        assert_eq!(
            error_of("processes_no_selector"),
            "testdata/config/processes_no_selector.yml:3:13: processes.groups[0].name: group \"risk-engine\" selects nothing: give process_name, cmdline or pid_file"
        );
    }

    #[test]
    fn error_processes_pid_file_beside_a_regex() {
        assert_eq!(
            error_of("processes_pid_file_and_regex"),
            "testdata/config/processes_pid_file_and_regex.yml:5:17: processes.groups[0].pid_file: pid_file names one process: use it without process_name and cmdline"
        );
    }

    #[test]
    fn error_processes_max_processes_zero() {
        assert_eq!(
            error_of("processes_too_many"),
            "testdata/config/processes_too_many.yml:2:18: processes.max_processes: must be between 1 and 4096"
        );
    }

    #[test]
    fn error_probes_duplicate_name() {
        assert_eq!(
            error_of("probes_duplicate_name"),
            "testdata/config/probes_duplicate_name.yml:6:14: probes.targets[1].name: \"risk-engine\" is listed twice"
        );
    }

    #[test]
    fn error_probes_bad_url() {
        assert_eq!(
            error_of("probes_bad_url"),
            "testdata/config/probes_bad_url.yml:5:30: probes.targets[0].url: \"localhost:8400/health\" is not an http:// or https:// URL"
        );
    }

    #[test]
    fn error_probes_timeout_exceeds_interval() {
        assert_eq!(
            error_of("probes_timeout_exceeds_interval"),
            "testdata/config/probes_timeout_exceeds_interval.yml:6:71: probes.targets[0].timeout: must not exceed probes.interval (1s), or probes would overlap"
        );
    }

    #[test]
    fn example_config_is_valid_and_probes_the_nine_engines() {
        let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/m4watch.example.yml"));
        let c = Config::load(&path, &no_env).unwrap();
        let ports: Vec<&str> = c.probes.targets.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(ports.len(), 9, "{ports:?}");
        for (i, url) in ports.iter().enumerate() {
            assert_eq!(*url, format!("http://localhost:8{}00/health", i + 1));
        }
        assert!(c.containers.enabled);
        // A desk binds loopback only (issue 28).
        assert!(c.listen.ip().is_loopback(), "{}", c.listen);
        assert!(c.trading.statsd_listen.unwrap().ip().is_loopback());
        assert!(
            Config::embedded_default(&no_env)
                .unwrap()
                .probes
                .targets
                .is_empty()
        );
    }

    #[test]
    fn error_unreadable_file() {
        let err = Config::load(Path::new("/nonexistent/m4watch.yml"), &no_env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/m4watch.yml: cannot read: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn secret_comes_from_file_then_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret-from-file\n").unwrap();
        let cfg = dir.path().join("m4watch.yml");
        std::fs::write(
            &cfg,
            "listen: 127.0.0.1:0\ndata_dir: ./data\napi:\n  token_file: token\n",
        )
        .unwrap();
        let c = Config::load(&cfg, &no_env).unwrap();
        assert_eq!(c.api.token.as_ref().unwrap().expose(), "s3cret-from-file");
        let env = |k: &str| (k == "M4WATCH_API_TOKEN").then(|| "from-env".to_string());
        let c = Config::load(&cfg, &env).unwrap();
        assert_eq!(c.api.token.as_ref().unwrap().expose(), "from-env");
    }

    #[test]
    fn secrets_never_print() {
        let env = |k: &str| (k == "M4WATCH_API_TOKEN").then(|| "hunter2-token".to_string());
        let c = Config::embedded_default(&env).unwrap();
        let debug = format!("{c:?}");
        let yaml = serde_yaml_ng::to_string(&c).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        for text in [&debug, &yaml, &json] {
            assert!(!text.contains("hunter2"), "secret leaked: {text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        assert_eq!(c.api.token.unwrap().expose(), "hunter2-token");
    }

    #[test]
    fn yaml_messages_lose_their_own_path_and_position() {
        assert_eq!(
            bare_yaml_message(
                "hardware.enabled: invalid type: string \"x\", expected a boolean at line 4 column 12"
            ),
            "invalid type: string \"x\", expected a boolean"
        );
        assert_eq!(bare_yaml_message("invalid type: map"), "invalid type: map");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<u32>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn a_config_over_1_mib_or_without_end_is_refused_after_reading_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yml");
        let mut text = String::from("log_format: text\n");
        while text.len() as u64 <= MAX_CONFIG_BYTES {
            text.push_str("# padding padding padding padding padding padding padding\n");
        }
        std::fs::write(&big, &text).unwrap();
        let err = Config::load(&big, &no_env).unwrap_err().to_string();
        assert!(err.contains("larger than 1048576 bytes (1 MiB)"), "{err}");
        let started = std::time::Instant::now();
        let err = Config::load(Path::new("/dev/zero"), &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        text.truncate(MAX_CONFIG_BYTES as usize);
        std::fs::write(&big, &text).unwrap();
        Config::load(&big, &no_env).expect("exactly 1 MiB is read");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_duration("10").is_err());
    }
}
