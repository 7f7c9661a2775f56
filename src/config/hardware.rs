//! `hardware:` and `process:` sections.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<String>,
    /// CPU list such as `0-3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologyOverride>,
    /// The recording `source: replay` plays, one sample per interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
