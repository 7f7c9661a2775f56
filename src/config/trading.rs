//! `trading:` section: StatsD, windows and the performance score.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

/// Trading latency and throughput: the StatsD listener, HTTP ingest, latency windows
/// and the weighted performance score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TradingConfig {
    pub enabled: bool,
    /// UDP address of the StatsD/DogStatsD listener; `null` turns the listener off
    /// (HTTP ingest keeps working).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd_listen: Option<SocketAddr>,
    /// Senders the StatsD listener takes datagrams from (CIDRs); others are dropped
    /// and counted in `m4watch_statsd_refused_datagrams_total`. Default: loopback and
    /// the Docker ranges (bridge networks 172.16.0.0/12, Docker Desktop's VM
    /// 192.168.65.0/24), so a LAN neighbour cannot move the score.
    pub statsd_allow: Vec<ipnet::IpNet>,
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
    /// A series that receives nothing for this long leaves `/metrics` and frees its
    /// slot under `max_series`; `1h` by default ([`DEFAULT_SERIES_TTL`]); `0s` keeps
    /// series for the life of the process (a full table still evicts the least
    /// recently updated). Expiry restarts a counter's total when the series
    /// comes back, which Prometheus reads as a counter reset.
    pub series_ttl: Dur,
    /// statsd_exporter-style mapping rules, first match wins: a dotted Graphite-style
    /// name matching `match` becomes the series `name` with `labels` (`$1`…`$9` are
    /// the parts the `*`s matched). Names matching no rule are kept as sent.
    pub mappings: Vec<Mapping>,
    /// Least rate per operation (operations per second, counted in
    /// `m4watch_trading_operations_total`) while the market is open, e.g.
    /// `{order_execution: 5, market_data: 1000}`; exported as
    /// `m4watch_trading_throughput_objective_per_second`, which the shipped
    /// `TradingThroughputLow` rule holds the 1-minute rate against. Empty (the
    /// default): no throughput targets.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub throughput: BTreeMap<String, f64>,
    pub score: ScoreConfig,
    /// Names of `notifications.time_intervals` during which the market is open
    /// (`m4watch_trading_market_open` is 1 while any of them holds). Empty: always open.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub market_hours: Vec<String>,
    /// An operation that reported in the last hour and has sent nothing for this long
    /// while the market is open is silent (the shipped `TradingSourceSilent`), exported
    /// as `m4watch_trading_silence_after_seconds`.
    pub silence_after: Dur,
}

/// `trading.silence_after` by default, and its bounds: at least [`MIN_SILENCE_AFTER`]
/// (and `trading.interval`, the resolution of the last sample's time); the ceiling
/// (30 min) stays under the rule's one-hour horizon.
pub const DEFAULT_SILENCE_AFTER: Duration = Duration::from_secs(30);
pub const MIN_SILENCE_AFTER: Duration = Duration::from_secs(2);

/// One mapping rule (README, "StatsD names and labels").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Glob over the dotted name: `*` matches one or more characters of one
    /// dot-separated part (never a dot); everything else matches itself.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Only lines of this StatsD type match; absent: any type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<StatsdType>,
    /// The series name (operation, stream or name label) the line is counted under.
    pub name: String,
    /// Labels added to the series; a mapping's label overrides a tag of the same key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A StatsD metric type, as a mapping rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatsdType {
    Timer,
    Counter,
    Gauge,
    Set,
}

/// Most mapping rules, and the longest pattern, name or label value one may have.
pub const MAX_MAPPINGS: usize = 256;
const MAX_MAPPING_TEXT: usize = 200;
/// Most label keys (tags and mapping labels together) a series may carry.
const MAX_LABEL_KEYS: usize = 16;

impl Mapping {
    /// How many `*`s the pattern has: the highest `$n` its name and labels may use.
    pub fn captures(&self) -> usize {
        self.pattern.matches('*').count()
    }
}

/// The highest `$n` (or `${n}`) reference in `s`, if any; `Err` for a `$` not followed
/// by a digit 1 to 9 (write `$$` for a literal dollar).
pub fn highest_reference(s: &str) -> Result<Option<usize>, String> {
    let mut max = None;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let n = match (b.get(i + 1), b.get(i + 2), b.get(i + 3)) {
            (Some(b'$'), ..) => {
                i += 2;
                continue;
            }
            (Some(d @ b'1'..=b'9'), ..) => {
                i += 2;
                d - b'0'
            }
            (Some(b'{'), Some(d @ b'1'..=b'9'), Some(b'}')) => {
                i += 4;
                d - b'0'
            }
            _ => return Err(format!("{s:?}: `$` must be followed by 1 to 9, or `$$`")),
        };
        max = max.max(Some(usize::from(n)));
    }
    Ok(max)
}

/// Loopback (v4 and v6) and the Docker ranges: bridge networks (docker0 is
/// 172.17.0.0/16, user-defined ones come from the rest of 172.16.0.0/12) and Docker
/// Desktop's VM network (192.168.65.0/24).
pub fn default_statsd_allow() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128", "172.16.0.0/12", "192.168.65.0/24"]
        .iter()
        .map(|n| n.parse().expect("valid CIDR"))
        .collect()
}

impl TradingConfig {
    /// Whether the StatsD listener takes a datagram from `ip` (an IPv4 address mapped
    /// into IPv6, as a dual-stack socket reports it, is matched as IPv4).
    pub fn statsd_allowed(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.statsd_allow.iter().any(|n| n.contains(&ip))
    }
}

/// `trading.series_ttl` by default (issue 25): an hour is twelve times the longest
/// default window (5 m), so a series is never removed while its windows still hold
/// data, and an operation quiet over a lunch break keeps its series; yet what a flood
/// of one-off names (or a retired operation) holds is freed within the hour, not kept
/// until restart. A full table evicts the least recently updated series in any case.
pub const DEFAULT_SERIES_TTL: Duration = Duration::from_secs(3600);

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            enabled: true,
            statsd_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8125))),
            statsd_allow: default_statsd_allow(),
            interval: Dur(Duration::from_secs(1)),
            windows: vec![Dur(Duration::from_secs(60)), Dur(Duration::from_secs(300))],
            max_series: 1000,
            label_tags: Vec::new(),
            measurement_ttl: Dur(Duration::from_secs(300)),
            max_open_measurements: 10_000,
            series_ttl: Dur(DEFAULT_SERIES_TTL),
            mappings: Vec::new(),
            throughput: BTreeMap::new(),
            score: ScoreConfig::default(),
            market_hours: Vec::new(),
            silence_after: Dur(DEFAULT_SILENCE_AFTER),
        }
    }
}

/// The weighted performance score (README, "Performance score"): a latency component
/// scores 1 at or under its target, 0.5 at its alert threshold (which the shipped rule
/// alerts on, through `m4watch_trading_latency_objective_seconds`) and 0 at
/// `2 × alert − target`; throughput scores the share of offered messages handled.
/// Components without data are left out; the score is absent under `min_coverage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreConfig {
    /// Which of `trading.windows` the score reads.
    pub window: Dur,
    /// Which latency quantile is held against the targets.
    pub quantile: f64,
    /// Least share (0..1) of the configured weight that must have data for there to be
    /// a score; under it the score is absent, never low.
    pub min_coverage: f64,
    pub latency: LatencyTarget,
    pub risk: LatencyTarget,
    pub ml: LatencyTarget,
    pub throughput: ThroughputTarget,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        let ms = |m: u64| Dur(Duration::from_millis(m));
        ScoreConfig {
            window: Dur(Duration::from_secs(60)),
            quantile: 0.95,
            min_coverage: 0.4,
            latency: LatencyTarget {
                operation: "order_execution".into(),
                target: ms(1),
                alert: ms(10),
                weight: 0.4,
            },
            risk: LatencyTarget {
                operation: "risk_calculation".into(),
                target: ms(10),
                alert: ms(100),
                weight: 0.2,
            },
            ml: LatencyTarget {
                operation: "ml_inference".into(),
                target: ms(20),
                alert: ms(50),
                weight: 0.2,
            },
            throughput: ThroughputTarget {
                stream: "market_data".into(),
                dropped_stream: "market_data_dropped".into(),
                weight: 0.2,
            },
        }
    }
}

/// One latency component of the score, and the threshold its shipped rule alerts on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTarget {
    /// Operation (StatsD timer name) the component reads.
    pub operation: String,
    /// At or under this the component scores 1.
    pub target: Dur,
    /// The alert threshold: the component scores 0.5 here, and the shipped rule fires
    /// when the 1-minute p95 stays above it (exported as
    /// `m4watch_trading_latency_objective_seconds{objective="alert"}`).
    pub alert: Dur,
    pub weight: f64,
}

/// The throughput component of the score: the share of offered messages handled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputTarget {
    /// StatsD counter of handled messages (or, without one, the timer of that name,
    /// one observation per message).
    pub stream: String,
    /// StatsD counter of messages the desk dropped or could not keep up with. Without
    /// it the component has no data: m4watch cannot tell a quiet market from a slow
    /// desk by the message rate alone.
    pub dropped_stream: String,
    pub weight: f64,
}

/// Most operations `trading.throughput` may name, and the highest rate it may ask for
/// (a billion a second is beyond any one host's StatsD intake).
pub const MAX_THROUGHPUT_TARGETS: usize = 256;
pub const MAX_THROUGHPUT_PER_SECOND: f64 = 1e9;

/// Label names the trading families use themselves, so a tag may not take them.
const RESERVED_LABELS: &[&str] = &[
    "operation",
    "outcome",
    "stream",
    "name",
    "window",
    "quantile",
    "le",
    "component",
    "job",
    "instance",
];

/// Why a name cannot be a label a tag or mapping sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelNameError {
    #[error("{0:?} is not a Prometheus label name")]
    Invalid(String),
    #[error("{0:?} is a label m4watch sets itself")]
    Reserved(String),
}

/// Why `name` cannot be a label a tag or mapping sets; `Ok` when it can.
fn label_name(name: &str) -> Result<(), LabelNameError> {
    let valid = name
        .chars()
        .enumerate()
        .all(|(j, c)| c == '_' || c.is_ascii_alphabetic() || (j > 0 && c.is_ascii_digit()));
    if name.is_empty() || !valid || name.starts_with("__") {
        return Err(LabelNameError::Invalid(name.to_string()));
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(LabelNameError::Reserved(name.to_string()));
    }
    Ok(())
}

impl Mapping {
    /// `Err((key, reason))` for the first thing wrong with this rule.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let p = &self.pattern;
        if p.is_empty() || p.len() > MAX_MAPPING_TEXT {
            return Err((
                "match",
                format!("must be 1 to {MAX_MAPPING_TEXT} characters"),
            ));
        }
        if p.split('.').any(str::is_empty) {
            return Err((
                "match",
                format!("{p:?} has an empty part (a leading, trailing or doubled dot)"),
            ));
        }
        if p.chars()
            .any(|c| c.is_control() || c == '|' || c == ':' || c == '#' || c == '@')
        {
            return Err((
                "match",
                format!("{p:?} holds a character a StatsD name cannot (|, :, #, @ or a control)"),
            ));
        }
        if self.captures() > 9 {
            return Err(("match", format!("{p:?} has more than 9 `*`s")));
        }
        let refs = |k: &'static str, s: &str| -> Result<(), (&'static str, String)> {
            if s.is_empty() || s.len() > MAX_MAPPING_TEXT {
                return Err((k, format!("must be 1 to {MAX_MAPPING_TEXT} characters")));
            }
            if s.chars().any(char::is_control) {
                return Err((k, format!("{s:?} holds a control character")));
            }
            match highest_reference(s).map_err(|r| (k, r))? {
                Some(n) if n > self.captures() => Err((
                    k,
                    format!("{s:?} uses ${n} but {p:?} has {} `*`", self.captures()),
                )),
                _ => Ok(()),
            }
        };
        refs("name", &self.name)?;
        for (k, v) in &self.labels {
            label_name(k).map_err(|r| ("labels", r.to_string()))?;
            refs("labels", v)?;
        }
        Ok(())
    }
}

impl TradingConfig {
    /// The label keys a series may carry, in the order its labels are kept: the
    /// `label_tags`, then the mappings' label keys not among them.
    pub fn label_keys(&self) -> Vec<String> {
        let mut keys = self.label_tags.clone();
        for m in &self.mappings {
            for k in m.labels.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        keys
    }

    /// `trading.throughput`: operation names as a sender may send them, rates finite,
    /// 0 or more and at most [`MAX_THROUGHPUT_PER_SECOND`].
    fn validate_throughput(&self) -> Result<(), (String, String)> {
        if self.throughput.len() > MAX_THROUGHPUT_TARGETS {
            return Err((
                "trading.throughput".into(),
                format!(
                    "{} operations, at most {MAX_THROUGHPUT_TARGETS}",
                    self.throughput.len()
                ),
            ));
        }
        for (op, rate) in &self.throughput {
            let at = format!("trading.throughput.{op}");
            // The rule a StatsD name follows (collect::trading::line::valid_name).
            if op.is_empty() || op.len() > 200 || op.chars().any(char::is_control) {
                return Err((
                    "trading.throughput".into(),
                    format!(
                        "{op:?} is not an operation name: 1 to 200 bytes without control characters"
                    ),
                ));
            }
            if !(rate.is_finite() && (0.0..=MAX_THROUGHPUT_PER_SECOND).contains(rate)) {
                return Err((
                    at,
                    format!(
                        "{rate} is not a rate: operations per second, 0 to {MAX_THROUGHPUT_PER_SECOND:e}"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
        positive(self.interval, "trading.interval")?;
        positive(self.measurement_ttl, "trading.measurement_ttl")?;
        at_least(
            self.silence_after,
            MIN_SILENCE_AFTER.max(self.interval.get()),
            "trading.silence_after",
        )?;
        if self.statsd_allow.len() > 256 {
            return err(
                "trading.statsd_allow",
                format!("{} networks, at most 256", self.statsd_allow.len()),
            );
        }
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
            label_name(tag).map_err(|r| (format!("trading.label_tags[{i}]"), r.to_string()))?;
        }
        let longest = self
            .windows
            .iter()
            .max()
            .copied()
            .unwrap_or(Dur(Duration::ZERO));
        if !self.series_ttl.get().is_zero() && self.series_ttl < longest {
            return err(
                "trading.series_ttl",
                format!(
                    "must be 0s (keep series) or at least the longest window ({longest}): a \
                     series must outlive the windows its quantiles are computed over"
                ),
            );
        }
        if self.mappings.len() > MAX_MAPPINGS {
            return err("trading.mappings", format!("at most {MAX_MAPPINGS} rules"));
        }
        for (i, m) in self.mappings.iter().enumerate() {
            let at = |k: &str| format!("trading.mappings[{i}].{k}");
            m.validate().map_err(|(k, r)| (at(k), r))?;
        }
        if self.label_keys().len() > MAX_LABEL_KEYS {
            return err(
                "trading.mappings",
                format!(
                    "label_tags and the mappings' labels name more than {MAX_LABEL_KEYS} label keys"
                ),
            );
        }
        self.validate_throughput()?;
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
        if !(0.0..=1.0).contains(&s.min_coverage) {
            return err(
                "trading.score.min_coverage",
                "must be between 0 and 1".into(),
            );
        }
        for (key, c) in [("latency", &s.latency), ("risk", &s.risk), ("ml", &s.ml)] {
            if c.target >= c.alert {
                return err(
                    &format!("trading.score.{key}.alert"),
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
        if s.throughput.stream == s.throughput.dropped_stream {
            return err(
                "trading.score.throughput.dropped_stream",
                "must differ from stream".into(),
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
