//! `host:` section: the network stack's counters, the interfaces and the watched UDP
//! feed sockets; clock synchronisation; disks and filesystems.

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
    pub interfaces: InterfacesConfig,
    pub clock: ClockConfig,
    pub disks: DisksConfig,
    pub filesystems: FilesystemsConfig,
}

/// `host.interfaces`: which interfaces get per-interface series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterfacesConfig {
    /// Interfaces left out, by whole name: by default the host ends of containers'
    /// veth pairs, one per container (their traffic is the container collector's).
    pub ignore: Pattern,
}

/// Docker's and Podman's host-side veth interfaces.
pub const DEFAULT_INTERFACES_IGNORE: &str = "veth.+";

impl Default for InterfacesConfig {
    fn default() -> Self {
        InterfacesConfig {
            ignore: Pattern::new(DEFAULT_INTERFACES_IGNORE).expect("the default pattern compiles"),
        }
    }
}

/// `host.clock`: the kernel's clock discipline (Linux `adjtimex`), and on every OS the
/// offset against NTP servers by SNTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    pub enabled: bool,
    /// NTP servers (`host` or `host:port`, port 123 by default) asked by an SNTP probe
    /// for the clock's offset; empty (the default): no probe.
    pub ntp_servers: Vec<String>,
    /// How long a probe waits for a server's reply.
    pub ntp_timeout: Dur,
    /// How often the servers are asked (RFC 4330: never more often than every 15 s).
    pub ntp_interval: Dur,
}

/// Most servers the probe asks.
pub const MAX_NTP_SERVERS: usize = 8;

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            enabled: true,
            ntp_servers: Vec::new(),
            ntp_timeout: Dur(Duration::from_millis(500)),
            ntp_interval: Dur(Duration::from_secs(64)),
        }
    }
}

impl ClockConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let err = |p: &str, r: String| Err((p.to_string(), r));
        if self.ntp_servers.len() > MAX_NTP_SERVERS {
            return err(
                "host.clock.ntp_servers",
                format!("list at most {MAX_NTP_SERVERS} servers"),
            );
        }
        for s in &self.ntp_servers {
            if s.is_empty()
                || s.len() > 255
                || s.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return err(
                    "host.clock.ntp_servers",
                    format!("{s:?} is not a host or host:port"),
                );
            }
        }
        let bounded = |d: Dur, lo: Duration, hi: Duration, path: &str| {
            if d.0 < lo || d.0 > hi {
                err(
                    path,
                    format!("must be between {} and {} (got {d})", Dur(lo), Dur(hi)),
                )
            } else {
                Ok(())
            }
        };
        bounded(
            self.ntp_timeout,
            Duration::from_millis(10),
            Duration::from_secs(5),
            "host.clock.ntp_timeout",
        )?;
        bounded(
            self.ntp_interval,
            Duration::from_secs(15),
            Duration::from_secs(86_400),
            "host.clock.ntp_interval",
        )
    }
}

/// `host.disks`: per-device I/O counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisksConfig {
    pub enabled: bool,
    /// Devices left out, by whole name: partitions (their disk already counts their
    /// I/O) and RAM, loop, floppy and optical devices.
    pub ignore: Pattern,
}

/// Partitions of sd/hd/vd/xvd, NVMe and MMC disks, and the virtual devices.
pub const DEFAULT_DISKS_IGNORE: &str =
    r"(ram|zram|loop|fd|sr)\d+|(h|s|v|xv)d[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+";

impl Default for DisksConfig {
    fn default() -> Self {
        DisksConfig {
            enabled: true,
            ignore: Pattern::new(DEFAULT_DISKS_IGNORE).expect("the default pattern compiles"),
        }
    }
}

/// `host.filesystems`: size, free space and inodes of the mounted filesystems.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemsConfig {
    pub enabled: bool,
    /// Filesystem types left out, by whole name: the kernel's pseudo filesystems,
    /// container layers and read-only images.
    pub ignore_types: Pattern,
    /// Mount points left out, by whole path.
    pub ignore_mounts: Pattern,
    /// How long one filesystem may take to answer `statvfs` (a dead NFS server never
    /// answers); one that does not is reported as an error and not asked again until
    /// its stuck call returns. Must be shorter than `host.interval`.
    pub stat_timeout: Dur,
}

/// Pseudo filesystems (Linux and macOS), container layers and images.
pub const DEFAULT_FILESYSTEMS_IGNORE_TYPES: &str = "autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devfs|devpts|devtmpfs|efivarfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|nullfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs";

/// The kernel's trees, what container runtimes mount below their own directories, and
/// the macOS system volumes that are not user data.
pub const DEFAULT_FILESYSTEMS_IGNORE_MOUNTS: &str = "/(dev|proc|sys)(/.*)?|/run/credentials/.+|/var/lib/docker/.+|/var/lib/containers/storage/.+|/System/Volumes/(VM|Preboot|Update|xarts|iSCPreboot|Hardware)";

impl Default for FilesystemsConfig {
    fn default() -> Self {
        FilesystemsConfig {
            enabled: true,
            ignore_types: Pattern::new(DEFAULT_FILESYSTEMS_IGNORE_TYPES)
                .expect("the default pattern compiles"),
            ignore_mounts: Pattern::new(DEFAULT_FILESYSTEMS_IGNORE_MOUNTS)
                .expect("the default pattern compiles"),
            stat_timeout: Dur(Duration::from_millis(500)),
        }
    }
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
            interfaces: InterfacesConfig::default(),
            clock: ClockConfig::default(),
            disks: DisksConfig::default(),
            filesystems: FilesystemsConfig::default(),
        }
    }
}
