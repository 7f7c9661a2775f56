//! Configuration: YAML -> typed, validated structs, with an embedded default.
//!
//! Unknown keys are errors, values are checked at load, and every error names the file,
//! the key path and what is wrong. Secrets come from the file, a `*_file` sibling or an
//! `M4WATCH_*` environment variable, and redact themselves wherever they are printed.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The configuration m4watch runs on when no `--config` is given.
pub const DEFAULT_YAML: &str = include_str!("../config/default.yml");

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

/// A secret value. Debug, Display and Serialize print `<redacted>`; only
/// [`Secret::expose`] gives the value, at the point of use.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one call that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// In the OpenAPI document a secret is a string (always `<redacted>` in answers).
impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Secret {}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A duration written as `1s`, `500ms`, `15m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Parses `1s`, `500ms`, `2m30s`; a bare number is rejected because its unit would be a
/// guess.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|_| {
        format!("invalid duration {s:?}: write a number with a unit, like 1s, 500ms or 5m")
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The whole configuration. Every section has defaults; the embedded default file
/// spells them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address for /metrics and the API.
    pub listen: SocketAddr,
    /// Directory for the SQLite database and other state.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub hardware: HardwareConfig,
    #[serde(default)]
    pub process: ProcessConfig,
    #[serde(default)]
    pub trading: TradingConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    /// Receivers, routes and delivery of alert notifications.
    #[serde(default)]
    pub notifications: crate::notify::config::NotifyConfig,
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
}

/// Families written to the history database by default: the hardware and container
/// gauges a dashboard or post-mortem wants, plus the container CPU counter.
pub const DEFAULT_HISTORY_FAMILIES: &[&str] = &[
    "m4watch_cpu_utilization_ratio",
    "m4watch_cpu_cluster_utilization_ratio",
    "m4watch_memory_bytes",
    "m4watch_memory_pressure_ratio",
    "m4watch_memory_pressure_level",
    "m4watch_gpu_utilization_ratio",
    "m4watch_gpu_memory_used_bytes",
    "m4watch_ane_power_watts",
    "m4watch_ane_utilization_estimate_ratio",
    "m4watch_power_watts",
    "m4watch_temperature_celsius",
    "m4watch_thermal_pressure",
    "m4watch_container_up",
    "m4watch_container_cpu_usage_seconds_total",
    "m4watch_container_memory_working_set_bytes",
    "m4watch_container_memory_limit_bytes",
];

/// The history database (`data_dir/history.db`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    pub enabled: bool,
    /// One sample per series per interval: the downsampling step.
    pub interval: Dur,
    /// Samples and baselines older than this are deleted.
    pub retention: Dur,
    /// Metric families written; `m4watch_container_*` ones feed the containers history.
    pub families: Vec<String>,
    /// Length of one latency baseline period, aligned to the Unix epoch (UTC
    /// midnight for the default 1d).
    pub baseline_period: Dur,
    /// The baseline exported is the median over this many latest complete periods.
    pub baseline_periods: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            interval: Dur(Duration::from_secs(10)),
            retention: Dur(Duration::from_secs(30 * 86400)),
            families: DEFAULT_HISTORY_FAMILIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            baseline_period: Dur(Duration::from_secs(86400)),
            baseline_periods: 7,
        }
    }
}

/// Thresholds of the recommendations. Ratios are 0..1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdviceConfig {
    /// How long a condition must hold (read from the rule engine's sample ring).
    pub window: Dur,
    /// A core type at or above this mean utilisation is saturated...
    pub saturated_ratio: f64,
    /// ...while the other type at or below this one is idle.
    pub idle_ratio: f64,
    /// Working set over limit at or above this is near the memory limit.
    pub memory_limit_ratio: f64,
    /// Throttled CPU seconds per second at or above this is throttled.
    pub throttled_seconds_per_second: f64,
    /// GPU utilisation at or below this is idle.
    pub gpu_idle_ratio: f64,
    /// Linux PSI `some` share (10s window) at or above this is memory pressure.
    pub memory_pressure_ratio: f64,
}

impl AdviceConfig {
    /// How often the `m4watch_recommendations` gauge is recomputed: a tenth of the
    /// window, between 1 s and 30 s.
    pub fn interval(&self) -> Duration {
        (self.window.get() / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Default for AdviceConfig {
    fn default() -> Self {
        AdviceConfig {
            window: Dur(Duration::from_secs(300)),
            saturated_ratio: 0.85,
            idle_ratio: 0.30,
            memory_limit_ratio: 0.90,
            throttled_seconds_per_second: 0.10,
            gpu_idle_ratio: 0.10,
            memory_pressure_ratio: 0.10,
        }
    }
}

/// API access control.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token every state-changing request must present
    /// (env `M4WATCH_API_TOKEN`). Without one, state-changing requests are refused.
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub token_file: Option<PathBuf>,
    /// When set, reads need this bearer token too.
    #[serde(default)]
    pub read_token: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub read_token_file: Option<PathBuf>,
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

/// Where hardware readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HardwareSource {
    /// The native source of the platform m4watch was built for.
    #[default]
    Auto,
    Linux,
    Macos,
    /// Plays back a recording (`hardware.replay_file`): `macmon pipe` JSON lines or
    /// m4watch's own `dump-raw` format.
    Replay,
}

/// A forced P/E core assignment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopologyOverride {
    /// CPU list such as `4-15`.
    #[serde(default)]
    pub performance: Option<String>,
    /// CPU list such as `0-3`.
    #[serde(default)]
    pub efficiency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardwareConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub source: HardwareSource,
    pub interval: Dur,
    pub timeout: Dur,
    /// procfs root, so tests can point the collector at a fixture tree.
    #[serde(default = "default_procfs")]
    pub procfs: PathBuf,
    /// sysfs root, likewise.
    #[serde(default = "default_sysfs")]
    pub sysfs: PathBuf,
    /// Forces the P/E assignment instead of detecting it.
    #[serde(default)]
    pub topology: Option<TopologyOverride>,
    /// The recording `source: replay` plays, one sample per interval.
    #[serde(default)]
    pub replay_file: Option<PathBuf>,
    /// Start the recording again at its end (true) or stop publishing (false).
    #[serde(default = "yes")]
    pub replay_loop: bool,
    /// Neural Engine power taken as 100% for `m4watch_ane_utilization_estimate_ratio`;
    /// no public API measures ANE utilisation, so the estimate is power / this.
    #[serde(default = "default_ane_max_watts")]
    pub ane_max_watts: f64,
}

fn default_procfs() -> PathBuf {
    "/proc".into()
}

fn default_sysfs() -> PathBuf {
    "/sys".into()
}

/// exelban/stats uses 6 W as the M4 Max Neural Engine maximum (asitop guesses 8 W for
/// older chips); it is a guess either way, hence configurable.
fn default_ane_max_watts() -> f64 {
    6.0
}

impl Default for HardwareConfig {
    fn default() -> Self {
        HardwareConfig {
            enabled: true,
            source: HardwareSource::Auto,
            interval: Dur(Duration::from_secs(1)),
            timeout: Dur(Duration::from_millis(800)),
            procfs: default_procfs(),
            sysfs: default_sysfs(),
            topology: None,
            replay_file: None,
            replay_loop: true,
            ane_max_watts: default_ane_max_watts(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub interval: Dur,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            enabled: true,
            interval: Dur(Duration::from_secs(5)),
        }
    }
}

/// The rule engine (issue 4). Every key is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Rule files in Prometheus format; a `*` in the file name is a glob. Relative
    /// paths are relative to the working directory. Empty: the shipped
    /// `alert-rules/*.rules.yml`, embedded in the binary.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    pub evaluation_interval: Dur,
    /// Longest range selector a rule may use; the sample ring keeps this much history
    /// (and at least the 5m look-back of instant selectors).
    pub max_range: Dur,
    /// How long resolved alerts stay listed in the API.
    pub resolved_retention: Dur,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            enabled: true,
            files: Vec::new(),
            evaluation_interval: Dur(Duration::from_secs(1)),
            max_range: Dur(Duration::from_secs(15 * 60)),
            resolved_retention: Dur(Duration::from_secs(3600)),
        }
    }
}

/// The Docker Engine collector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `unix:///path`, a bare socket path, `tcp://host:port` or `http://host:port`.
    /// Unset: `/var/run/docker.sock`, or on macOS Docker Desktop's
    /// `~/.docker/run/docker.sock` when the former is absent.
    #[serde(default)]
    pub docker_host: Option<String>,
    pub interval: Dur,
    pub timeout: Dur,
    /// Inspect and stats requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Only containers matching one of these (all when empty).
    #[serde(default)]
    pub include: ContainerMatch,
    /// Containers matching one of these are skipped, even when included.
    #[serde(default)]
    pub exclude: ContainerMatch,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        ContainersConfig {
            enabled: true,
            docker_host: None,
            interval: Dur(Duration::from_secs(5)),
            timeout: Dur(Duration::from_secs(4)),
            max_concurrent_requests: 8,
            include: ContainerMatch::default(),
            exclude: ContainerMatch::default(),
        }
    }
}

impl RulesConfig {
    /// The rule files the globs name, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .flat_map(|f| crate::rules::expand_glob(f))
            .collect()
    }

    /// Loads the configured rule files (or the embedded ones).
    pub fn load(&self) -> Result<Vec<crate::rules::Group>, String> {
        let groups = if self.files.is_empty() {
            crate::rules::load_embedded().map_err(|e| e.0)?
        } else {
            for f in &self.files {
                if crate::rules::expand_glob(f).is_empty() {
                    return Err(format!("{} matches no file", f.display()));
                }
            }
            crate::rules::load_files(&self.paths()).map_err(|e| e.0)?
        };
        crate::rules::check_max_range(&groups, self.max_range.get().as_millis() as i64)
            .map_err(|e| e.0)?;
        Ok(groups)
    }
}

/// Container name patterns (`*` and `?` wildcards) and labels (`key` or `key=value`,
/// the value may use wildcards).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContainerMatch {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

impl ContainerMatch {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.labels.is_empty()
    }
}

/// HTTP health probes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbesConfig {
    pub interval: Dur,
    /// Nothing is probed unless listed here.
    #[serde(default)]
    pub targets: Vec<ProbeTarget>,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            interval: Dur(Duration::from_secs(5)),
            targets: Vec::new(),
        }
    }
}

/// One HTTP endpoint that answers 2xx when healthy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProbeTarget {
    /// The `target` label.
    pub name: String,
    pub url: String,
    #[serde(default = "default_probe_timeout")]
    pub timeout: Dur,
}

fn default_probe_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}

fn yes() -> bool {
    true
}

/// Trading latency and throughput: the StatsD listener, HTTP ingest, latency windows
/// and the weighted performance score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TradingConfig {
    pub enabled: bool,
    /// UDP address of the StatsD/DogStatsD listener; `null` turns the listener off
    /// (HTTP ingest keeps working).
    pub statsd_listen: Option<SocketAddr>,
    /// How often windows, quantiles and the score are recomputed.
    pub interval: Dur,
    /// Sliding windows for quantiles and throughput, shortest first.
    pub windows: Vec<Dur>,
    /// Most distinct series (name plus label values, all types together); new ones
    /// beyond it are dropped and counted.
    pub max_series: usize,
    /// DogStatsD tag keys (and HTTP ingest label keys) kept as Prometheus labels;
    /// every other tag is ignored, so senders cannot multiply series by accident.
    pub label_tags: Vec<String>,
    /// A started latency measurement never ended is dropped after this long and
    /// counted as abandoned.
    pub measurement_ttl: Dur,
    /// Most measurements open at once; further starts are refused (429).
    pub max_open_measurements: usize,
    pub score: ScoreConfig,
}

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            enabled: true,
            statsd_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8125))),
            interval: Dur(Duration::from_secs(1)),
            windows: vec![Dur(Duration::from_secs(60)), Dur(Duration::from_secs(300))],
            max_series: 1000,
            label_tags: Vec::new(),
            measurement_ttl: Dur(Duration::from_secs(300)),
            max_open_measurements: 10_000,
            score: ScoreConfig::default(),
        }
    }
}

/// The weighted performance score: latency components score 1 at or under their
/// target falling linearly to 0 at their max; throughput scores observed/target
/// capped at 1. Defaults are the figures of the original description.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreConfig {
    /// Which of `trading.windows` the score reads.
    pub window: Dur,
    /// Which latency quantile is held against the targets.
    pub quantile: f64,
    pub latency: LatencyTarget,
    pub risk: LatencyTarget,
    pub ml: LatencyTarget,
    pub throughput: ThroughputTarget,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        let ms = |m: u64| Dur(Duration::from_micros(m));
        ScoreConfig {
            window: Dur(Duration::from_secs(60)),
            quantile: 0.95,
            latency: LatencyTarget {
                operation: "order_execution".into(),
                target: ms(500),
                max: ms(1_000),
                weight: 0.4,
            },
            risk: LatencyTarget {
                operation: "risk_calculation".into(),
                target: ms(5_000),
                max: ms(10_000),
                weight: 0.2,
            },
            ml: LatencyTarget {
                operation: "ml_inference".into(),
                target: ms(50_000),
                max: ms(100_000),
                weight: 0.2,
            },
            throughput: ThroughputTarget {
                stream: "market_data".into(),
                target_per_second: 50_000.0,
                weight: 0.2,
            },
        }
    }
}

/// One latency component of the score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTarget {
    /// Operation (StatsD timer name) the component reads.
    pub operation: String,
    /// At or under this the component scores 1.
    pub target: Dur,
    /// At or over this the component scores 0.
    pub max: Dur,
    pub weight: f64,
}

/// The throughput component of the score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputTarget {
    /// StatsD counter stream (or, without one, the operation of that name).
    pub stream: String,
    /// Events per second that score 1.
    pub target_per_second: f64,
    pub weight: f64,
}

/// Reads one environment variable; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// The embedded default, with environment overrides applied.
    pub fn embedded_default(env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_YAML, "<embedded default>", Path::new("."), env)
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            reason: e.to_string(),
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
            file: file.to_string(),
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
        config.validate().map_err(|(p, r)| invalid(&p, r))?;
        if let Some(f) = &config.hardware.replay_file {
            // Relative to the config file, like the `*_file` secrets.
            config.hardware.replay_file = Some(base.join(f));
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
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
        self.trading.validate()?;
        positive(self.rules.evaluation_interval, "rules.evaluation_interval")?;
        positive(self.rules.max_range, "rules.max_range")?;
        if self.rules.enabled {
            self.rules
                .load()
                .map_err(|e| ("rules.files".to_string(), e))?;
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

/// Label names the trading families use themselves, so a tag may not take them.
const RESERVED_LABELS: &[&str] = &[
    "operation",
    "stream",
    "name",
    "window",
    "quantile",
    "le",
    "component",
    "job",
    "instance",
];

impl TradingConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
        positive(self.interval, "trading.interval")?;
        positive(self.measurement_ttl, "trading.measurement_ttl")?;
        if self.windows.is_empty() || self.windows.len() > 8 {
            return err(
                "trading.windows",
                "list 1 to 8 windows, e.g. [1m, 5m]".into(),
            );
        }
        for (i, w) in self.windows.iter().enumerate() {
            if *w < self.interval {
                return err(
                    &format!("trading.windows[{i}]"),
                    format!("must be at least trading.interval ({})", self.interval),
                );
            }
            if i > 0 && *w <= self.windows[i - 1] {
                return err(
                    &format!("trading.windows[{i}]"),
                    "windows must be listed shortest first, without repeats".into(),
                );
            }
        }
        if self.max_series == 0 {
            return err("trading.max_series", "must be greater than 0".into());
        }
        if self.max_open_measurements == 0 {
            return err(
                "trading.max_open_measurements",
                "must be greater than 0".into(),
            );
        }
        for (i, tag) in self.label_tags.iter().enumerate() {
            let valid = tag
                .chars()
                .enumerate()
                .all(|(j, c)| c == '_' || c.is_ascii_alphabetic() || (j > 0 && c.is_ascii_digit()));
            if tag.is_empty() || !valid || tag.starts_with("__") {
                return err(
                    &format!("trading.label_tags[{i}]"),
                    format!("{tag:?} is not a Prometheus label name"),
                );
            }
            if RESERVED_LABELS.contains(&tag.as_str()) {
                return err(
                    &format!("trading.label_tags[{i}]"),
                    format!("{tag:?} is a label m4watch sets itself"),
                );
            }
        }
        let s = &self.score;
        if !self.windows.contains(&s.window) {
            return err(
                "trading.score.window",
                format!("{} is not one of trading.windows", s.window),
            );
        }
        if !(s.quantile > 0.0 && s.quantile < 1.0) {
            return err("trading.score.quantile", "must be between 0 and 1".into());
        }
        for (key, c) in [("latency", &s.latency), ("risk", &s.risk), ("ml", &s.ml)] {
            if c.target >= c.max {
                return err(
                    &format!("trading.score.{key}.max"),
                    format!("must be greater than target ({})", c.target),
                );
            }
            if !(c.weight >= 0.0 && c.weight.is_finite()) {
                return err(
                    &format!("trading.score.{key}.weight"),
                    "must be 0 or more".into(),
                );
            }
        }
        if !(s.throughput.target_per_second > 0.0 && s.throughput.target_per_second.is_finite()) {
            return err(
                "trading.score.throughput.target_per_second",
                "must be greater than 0".into(),
            );
        }
        if !(s.throughput.weight >= 0.0 && s.throughput.weight.is_finite()) {
            return err(
                "trading.score.throughput.weight",
                "must be 0 or more".into(),
            );
        }
        if s.latency.weight + s.risk.weight + s.ml.weight + s.throughput.weight <= 0.0 {
            return err(
                "trading.score",
                "at least one weight must be above 0".into(),
            );
        }
        Ok(())
    }
}

impl Config {
    fn validate_history_and_advice(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
        let h = &self.history;
        positive(h.interval, "history.interval")?;
        positive(h.baseline_period, "history.baseline_period")?;
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
        for (i, f) in h.families.iter().enumerate() {
            if crate::catalog::lookup(f).is_none() {
                return err(
                    &format!("history.families[{i}]"),
                    format!("{f:?} is not a metric family m4watch exports"),
                );
            }
        }
        let a = &self.advice;
        positive(a.window, "advice.window")?;
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
            let scheme_ok = t
                .url
                .split_once("://")
                .is_some_and(|(s, rest)| (s == "http" || s == "https") && !rest.is_empty());
            if !scheme_ok {
                return Err((
                    at("url"),
                    format!("{:?} is not an http:// or https:// URL", t.url),
                ));
            }
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

impl TopologyOverride {
    /// The performance and efficiency CPU sets, checked for syntax and overlap.
    pub fn cpu_sets(&self) -> Result<(BTreeSet<u32>, BTreeSet<u32>), (String, String)> {
        let parse = |v: &Option<String>, key: &str| match v {
            None => Ok(BTreeSet::new()),
            Some(s) => parse_cpu_list(s)
                .map(|l| l.into_iter().collect())
                .map_err(|e| (format!("hardware.topology.{key}"), e)),
        };
        let p = parse(&self.performance, "performance")?;
        let e = parse(&self.efficiency, "efficiency")?;
        if p.is_empty() && e.is_empty() {
            return Err((
                "hardware.topology".into(),
                "name the performance or the efficiency CPUs (or both), e.g. performance: \"4-15\""
                    .into(),
            ));
        }
        if let Some(cpu) = p.intersection(&e).next() {
            return Err((
                "hardware.topology".into(),
                format!("CPU {cpu} is listed as both performance and efficiency"),
            ));
        }
        Ok((p, e))
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

fn positive(d: Dur, path: &str) -> Result<(), (String, String)> {
    if d.0.is_zero() {
        Err((path.to_string(), "must be greater than 0".into()))
    } else {
        Ok(())
    }
}

/// Resolves a secret from (in order of precedence) the environment, the `*_file`
/// sibling key, or the inline value.
pub(crate) fn resolve_secret(
    inline: Option<Secret>,
    file: Option<&Path>,
    key: &str,
    env_var: &str,
    base: &Path,
    env: EnvLookup<'_>,
) -> Result<Option<Secret>, (String, String)> {
    if inline.is_some() && file.is_some() {
        return Err((
            key.to_string(),
            format!("set either {key} or {key}_file, not both"),
        ));
    }
    if let Some(v) = env(env_var) {
        return Ok(Some(Secret::new(v)));
    }
    if let Some(f) = file {
        let path = base.join(f);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            (
                format!("{key}_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let value = text.trim_end_matches(['\r', '\n']).to_string();
        if value.is_empty() {
            return Err((
                format!("{key}_file"),
                format!("{} is empty", path.display()),
            ));
        }
        return Ok(Some(Secret::new(value)));
    }
    Ok(inline.filter(|s| !s.0.is_empty()))
}

/// Parses a Linux CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(out);
    }
    let bad = || format!("invalid CPU list {s:?}: write ranges like \"0-3,8-11\"");
    for part in s.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
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
    fn a_section_given_in_part_keeps_the_defaults_of_the_rest() {
        let text = "listen: 127.0.0.1:1\ndata_dir: d\nhardware:\n  enabled: false\nmetrics: {}\nprocess:\n  enabled: false\n";
        let c = Config::parse(text, "<t>", Path::new("."), &no_env).unwrap();
        assert!(!c.hardware.enabled);
        assert_eq!(c.hardware.interval, HardwareConfig::default().interval);
        assert!(!c.process.enabled);
        assert_eq!(c.process.interval, ProcessConfig::default().interval);
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default(&no_env).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9977");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
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
            "testdata/config/timeout_exceeds_interval.yml: hardware.timeout: must not exceed hardware.interval (1s), or runs would overlap"
        );
    }

    #[test]
    fn error_zero_interval() {
        assert_eq!(
            error_of("zero_interval"),
            "testdata/config/zero_interval.yml: process.interval: must be greater than 0"
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
            "testdata/config/topology_overlap.yml: hardware.topology: CPU 3 is listed as both performance and efficiency"
        );
    }

    #[test]
    fn error_topology_syntax() {
        assert_eq!(
            error_of("topology_syntax"),
            "testdata/config/topology_syntax.yml: hardware.topology.performance: invalid CPU list \"4-x\": write ranges like \"0-3,8-11\""
        );
    }

    #[test]
    fn error_token_and_token_file() {
        assert_eq!(
            error_of("token_and_file"),
            "testdata/config/token_and_file.yml: api.token: set either api.token or api.token_file, not both"
        );
    }

    #[test]
    fn error_missing_token_file() {
        let msg = error_of("missing_token_file");
        assert!(
            msg.starts_with("testdata/config/missing_token_file.yml: api.token_file: cannot read testdata/config/./no-such-token: "),
            "{msg}"
        );
    }

    #[test]
    fn error_rules_unsupported_construct() {
        assert_eq!(
            error_of("rules_unsupported"),
            "testdata/config/rules_unsupported.yml: rules.files: testdata/rules/bad/unsupported.rules.yml: group \"bad\": rule \"TopCpu\": expr: unsupported construct: aggregation `topk`"
        );
    }

    #[test]
    fn error_replay_without_file() {
        assert_eq!(
            error_of("replay_without_file"),
            "testdata/config/replay_without_file.yml: hardware.replay_file: source: replay needs the recording to play, e.g. replay_file: recording.jsonl"
        );
    }

    #[test]
    fn error_rules_no_match() {
        assert_eq!(
            error_of("rules_no_match"),
            "testdata/config/rules_no_match.yml: rules.files: testdata/rules/none-*.rules.yml matches no file"
        );
    }

    #[test]
    fn error_ane_max_watts() {
        assert_eq!(
            error_of("ane_max_watts_zero"),
            "testdata/config/ane_max_watts_zero.yml: hardware.ane_max_watts: must be a number of watts greater than 0"
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
            "testdata/config/trading_score_window.yml: trading.score.window: 1m is not one of trading.windows"
        );
    }

    #[test]
    fn error_containers_bad_docker_host() {
        assert_eq!(
            error_of("containers_bad_docker_host"),
            "testdata/config/containers_bad_docker_host.yml: containers.docker_host: unsupported address \"docker.example.com:2375\": write unix:///path/to/docker.sock, tcp://host:port or http://host:port"
        );
    }

    #[test]
    fn error_trading_target_over_max() {
        assert_eq!(
            error_of("trading_target_over_max"),
            "testdata/config/trading_target_over_max.yml: trading.score.risk.max: must be greater than target (10ms)"
        );
    }

    #[test]
    fn error_history_retention_not_above_interval() {
        assert_eq!(
            error_of("history_retention_short"),
            "testdata/config/history_retention_short.yml: history.retention: must be longer than history.interval (10s), or nothing would be kept"
        );
    }

    #[test]
    fn error_history_unknown_family() {
        assert_eq!(
            error_of("history_unknown_family"),
            "testdata/config/history_unknown_family.yml: history.families[1]: \"m4watch_cpu_utilisation\" is not a metric family m4watch exports"
        );
    }

    #[test]
    fn error_advice_idle_above_saturated() {
        assert_eq!(
            error_of("advice_idle_above_saturated"),
            "testdata/config/advice_idle_above_saturated.yml: advice.idle_ratio: must be below advice.saturated_ratio (0.5)"
        );
    }

    #[test]
    fn error_containers_zero_concurrency() {
        assert_eq!(
            error_of("containers_zero_concurrency"),
            "testdata/config/containers_zero_concurrency.yml: containers.max_concurrent_requests: must be at least 1"
        );
    }

    #[test]
    fn error_trading_label_tag_reserved() {
        assert_eq!(
            error_of("trading_label_tag"),
            "testdata/config/trading_label_tag.yml: trading.label_tags[1]: \"quantile\" is a label m4watch sets itself"
        );
    }

    #[test]
    fn error_containers_label_without_key() {
        assert_eq!(
            error_of("containers_label_without_key"),
            "testdata/config/containers_label_without_key.yml: containers.exclude.labels[0]: \"=x\" has no label key: write key or key=value"
        );
    }

    #[test]
    fn trading_defaults_are_the_original_figures() {
        let c = Config::embedded_default(&no_env).unwrap().trading;
        assert_eq!(c.statsd_listen, Some("0.0.0.0:8125".parse().unwrap()));
        assert_eq!(c.max_series, 1000);
        assert_eq!(c.score.latency.target.get(), Duration::from_micros(500));
        assert_eq!(c.score.latency.max.get(), Duration::from_millis(1));
        assert_eq!(c.score.latency.weight, 0.4);
        assert_eq!(c.score.throughput.target_per_second, 50_000.0);
        // The embedded file and the code's defaults agree.
        let d = TradingConfig::default();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
    }

    #[test]
    fn error_probes_duplicate_name() {
        assert_eq!(
            error_of("probes_duplicate_name"),
            "testdata/config/probes_duplicate_name.yml: probes.targets[1].name: \"risk-engine\" is listed twice"
        );
    }

    #[test]
    fn error_probes_bad_url() {
        assert_eq!(
            error_of("probes_bad_url"),
            "testdata/config/probes_bad_url.yml: probes.targets[0].url: \"localhost:8400/health\" is not an http:// or https:// URL"
        );
    }

    #[test]
    fn error_probes_timeout_exceeds_interval() {
        assert_eq!(
            error_of("probes_timeout_exceeds_interval"),
            "testdata/config/probes_timeout_exceeds_interval.yml: probes.targets[0].timeout: must not exceed probes.interval (1s), or probes would overlap"
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
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_duration("10").is_err());
    }
}
