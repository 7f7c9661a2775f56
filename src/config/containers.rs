//! `containers:` and `probes:` sections.

use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// Containers that must be running: each entry is exported as
    /// `m4watch_container_expected_present{expected="<selector>"}`, 1 while a running
    /// container matches it, 0 while none does (also after it was destroyed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<ExpectedContainer>,
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
            expected: Vec::new(),
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

/// Most entries of `containers.expected`.
pub const MAX_EXPECTED_CONTAINERS: usize = 256;
/// Most labels one expected entry may require.
pub const MAX_EXPECTED_LABELS: usize = 16;

/// One container that must be running, by name and/or labels (`*` and `?` wildcards
/// in the name and the label values, as in `include`). A container matches when its
/// name matches `name` (when given) and it carries every label of `labels` with a
/// matching value; it is present while it runs (or is paused).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedContainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ExpectedContainer {
    /// The `expected` label: the name, the `key=value` pairs in key order, or both,
    /// comma-separated (`order-gateway`, `app=fix-gateway`, `gw-*,app=fix-gateway`).
    pub fn selector(&self) -> String {
        self.name
            .iter()
            .cloned()
            .chain(self.labels.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Health probes: HTTP GETs and TCP connects.
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

/// Most bytes of `send`.
pub const MAX_PROBE_SEND: usize = 4096;
/// Most characters of an `expect` regex.
pub const MAX_PROBE_EXPECT: usize = 1024;

/// What a probe does.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// GET `url`; healthy on a 2xx answer.
    #[default]
    Http,
    /// Connect to `address` (TLS with `tls: true`), then optionally `send` and `expect`.
    Tcp,
}

/// One probed endpoint: an HTTP URL that answers 2xx when healthy, or a TCP port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProbeTarget {
    /// The `target` label.
    pub name: String,
    #[serde(default)]
    pub kind: ProbeKind,
    /// `kind: http`: the `http://` or `https://` URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// `kind: tcp`: `host:port` (`[v6]:port` for an IPv6 address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default = "default_probe_timeout")]
    pub timeout: Dur,
    /// `kind: tcp`: bytes written once connected (YAML escapes such as `\r\n` work in
    /// double quotes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// `kind: tcp`: a regular expression the bytes read (at most 64 KiB, within the
    /// timeout) must match; without it, a connect (and TLS handshake) is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// `kind: tcp`: TLS over the connection (verified as for https URLs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// The name the certificate must carry; default: the host of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// PEM certificate(s) of a CA trusted beside the platform's trust store (a desk's
    /// private CA), for https URLs and `tls: true`; relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
}

impl ProbeTarget {
    /// Whether the probe speaks TLS (an https URL, or tcp with `tls: true`).
    pub fn uses_tls(&self) -> bool {
        match self.kind {
            ProbeKind::Http => self.url.starts_with("https://"),
            ProbeKind::Tcp => self.tls,
        }
    }
}

fn default_probe_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}
