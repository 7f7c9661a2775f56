//! `history:` and `advice:` sections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

/// Families written to the history database by default: the hardware and container
/// gauges a dashboard or post-mortem wants, plus the container CPU counter.
pub const DEFAULT_HISTORY_FAMILIES: &[&str] = &[
    "m4watch_cpu_utilization_ratio",
    "m4watch_cpu_cluster_utilization_ratio",
    "m4watch_memory_used_bytes",
    "m4watch_memory_available_bytes",
    "m4watch_memory_partition_bytes",
    "m4watch_memory_swap_used_bytes",
    "m4watch_memory_pressure_ratio",
    "m4watch_memory_pressure_level",
    "m4watch_gpu_utilization_ratio",
    "m4watch_gpu_memory_used_bytes",
    "m4watch_ane_utilization_estimate_ratio",
    "m4watch_power_watts",
    "m4watch_system_power_watts",
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
