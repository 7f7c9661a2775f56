//! `host:` section: the network stack's counters, the interfaces and the watched UDP
//! feed sockets.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub interval: Dur,
    /// procfs root (Linux), so tests can point the collector at a fixture tree.
    #[serde(default = "default_procfs")]
    pub procfs: PathBuf,
    /// sysfs root (Linux: interface operstate and speed), likewise.
    #[serde(default = "default_sysfs")]
    pub sysfs: PathBuf,
    /// UDP ports whose sockets get their own receive-queue and drop series (the
    /// market-data feeds); empty: none. Linux only: macOS has no per-socket drops.
    pub udp_ports: Vec<u16>,
}

fn default_procfs() -> PathBuf {
    "/proc".into()
}

fn default_sysfs() -> PathBuf {
    "/sys".into()
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            enabled: true,
            interval: Dur(Duration::from_secs(1)),
            procfs: default_procfs(),
            sysfs: default_sysfs(),
            udp_ports: Vec::new(),
        }
    }
}
