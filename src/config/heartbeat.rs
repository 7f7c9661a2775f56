//! `heartbeat:` section: the dead-man's switch that leaves the host. Off when the
//! section is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Dur, EnvLookup, Secret, at_least, at_most, resolve_secret};

/// The environment variable that gives the heartbeat URL (it wins over the file).
pub const ENV_HEARTBEAT_URL: &str = "M4WATCH_HEARTBEAT_URL";

/// Shortest and longest `interval`: a dead-man's service is told every minute or so
/// (healthchecks.io, Cronitor and Better Stack take periods from a minute up); a
/// second is for tests on loopback, a day for the laziest schedule that still means
/// something.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Bounds of `timeout` (and it must be shorter than `interval`).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds of `max_delivery_delay`.
pub const MIN_DELIVERY_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELIVERY_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most extra headers.
pub const MAX_HEADERS: usize = 32;

/// GET or POST: what healthchecks.io, Cronitor and Better Stack accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HeartbeatMethod {
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    #[serde(rename = "POST", alias = "post")]
    Post,
}

impl HeartbeatMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatMethod::Get => "GET",
            HeartbeatMethod::Post => "POST",
        }
    }
}

/// One request every `interval` to a dead-man's service, sent only while the rule
/// engine evaluates and the notification outbox drains: a dead, hung or wedged
/// m4watch stops it alike, and the service pages from off the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The ping URL; a secret (it is the check's identity), so it is never printed.
    /// Env `M4WATCH_HEARTBEAT_URL` wins over `url` and `url_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    #[serde(default, skip_serializing)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub method: HeartbeatMethod,
    /// How often a beat is sent (1s..24h).
    #[serde(default = "d_interval")]
    pub interval: Dur,
    /// Deadline of one beat: connecting, sending and reading the answer (100ms..60s,
    /// shorter than `interval`).
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    /// Extra request headers (an API key, say). Every value is treated as a secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// Beats stop while a notification has waited longer than this for delivery
    /// (1s..24h): alerts that cannot get out are as bad as alerts never raised.
    #[serde(default = "d_max_delivery_delay")]
    pub max_delivery_delay: Dur,
}

fn d_interval() -> Dur {
    Dur(Duration::from_secs(60))
}
fn d_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn d_max_delivery_delay() -> Dur {
    Dur(Duration::from_secs(15 * 60))
}

type Invalid = (String, String);

impl HeartbeatConfig {
    /// Fills the URL from the environment or `url_file`, and checks every value.
    pub(crate) fn resolve(&mut self, base: &Path, env: EnvLookup<'_>) -> Result<(), Invalid> {
        let p = "heartbeat";
        self.url = resolve_secret(
            self.url.take(),
            self.url_file.as_deref(),
            &format!("{p}.url"),
            ENV_HEARTBEAT_URL,
            base,
            env,
        )?;
        let Some(url) = &self.url else {
            return Err((
                format!("{p}.url"),
                format!("required: set url, url_file or {ENV_HEARTBEAT_URL}"),
            ));
        };
        // Never echo the URL: it is the check's secret.
        match reqwest::Url::parse(url.expose()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err((
                    format!("{p}.url"),
                    "must be an http:// or https:// URL".into(),
                ));
            }
        }
        at_least(self.interval, MIN_INTERVAL, "heartbeat.interval")?;
        at_most(self.interval, MAX_INTERVAL, "heartbeat.interval")?;
        at_least(self.timeout, MIN_TIMEOUT, "heartbeat.timeout")?;
        at_most(self.timeout, MAX_TIMEOUT, "heartbeat.timeout")?;
        if self.timeout >= self.interval {
            return Err((
                "heartbeat.timeout".into(),
                format!(
                    "must be shorter than heartbeat.interval ({}), or beats would overlap",
                    self.interval
                ),
            ));
        }
        at_least(
            self.max_delivery_delay,
            MIN_DELIVERY_DELAY,
            "heartbeat.max_delivery_delay",
        )?;
        at_most(
            self.max_delivery_delay,
            MAX_DELIVERY_DELAY,
            "heartbeat.max_delivery_delay",
        )?;
        if self.headers.len() > MAX_HEADERS {
            return Err((
                "heartbeat.headers".into(),
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((
                    "heartbeat.headers".into(),
                    format!("{name:?} is not a valid HTTP header name"),
                ));
            }
            // The value is a secret: say which header, never what it holds.
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                return Err((
                    "heartbeat.headers".into(),
                    format!(
                        "the value of {name:?} is not a valid HTTP header value (printable ASCII, no line breaks)"
                    ),
                ));
            }
        }
        Ok(())
    }
}
