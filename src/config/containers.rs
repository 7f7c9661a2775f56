//! `containers:` and `probes:` sections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

/// The Docker Engine collector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `unix:///path`, a bare socket path, `tcp://host:port` or `http://host:port`.
    /// Unset: `/var/run/docker.sock`, or on macOS Docker Desktop's
    /// `~/.docker/run/docker.sock` when the former is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
    pub interval: Dur,
    pub timeout: Dur,
    /// Inspect and one-shot stats requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Most stats streams kept open (one per running container); running containers
    /// beyond it get one-shot reads each interval. 0: one-shot reads only.
    pub max_streams: usize,
    /// How often every container is listed and inspected again, beside the events.
    pub resync_interval: Dur,
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
            interval: Dur(Duration::from_secs(1)),
            timeout: Dur(Duration::from_secs(1)),
            max_concurrent_requests: 8,
            max_streams: 256,
            resync_interval: Dur(Duration::from_secs(30)),
            include: ContainerMatch::default(),
            exclude: ContainerMatch::default(),
        }
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
