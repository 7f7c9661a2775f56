//! The container collector's view: what one collection cycle knows, the [`Report`]
//! the JSON API and the recommendations read and the metrics are made from.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the Engine says about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EngineInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ncpu: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<i64>,
}

/// Bytes through one network interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NetworkBytes {
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
}

/// Everything known about one container after a cycle; unknown fields are `None`.
/// The metrics and `GET /api/v1/monitoring/containers/metrics` are both made from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ContainerSample {
    /// Short (12 hex digit) id.
    pub id: String,
    pub name: String,
    pub image: String,
    /// Docker's state: created, running, paused, restarting, exited, dead.
    pub state: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_usage_seconds_total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttled_seconds_total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limit_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// By interface; empty with `--network none`.
    pub networks: BTreeMap<String, NetworkBytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_read_bytes_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_write_bytes_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    pub restarts_total: u64,
    pub oom_kills_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i64>,
    /// healthy, unhealthy, starting, or none without a HEALTHCHECK.
    pub health_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_failing_streak: Option<i64>,
    /// Seconds since the usage figures arrived; absent while there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_age_seconds: Option<f64>,
}

/// One successful cycle, as the JSON API serves it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub collected_at_unix: f64,
    pub docker_host: String,
    pub engine: EngineInfo,
    pub containers: Vec<ContainerSample>,
    /// Stats streams open to the Engine.
    pub stats_streams: usize,
    /// One-shot stats reads made for containers without a working stream.
    pub stats_fallbacks_total: u64,
}
