//! macOS: `net.inet.udp.stats` and `net.inet.tcp.stats` by `sysctlbyname`, decoded by
//! [`super::darwin`]. macOS lists no per-socket drop counter (its `netstat` shows none),
//! so the reading carries no sockets and the per-socket families are absent.
//!
//! NOTE: compiled only for macOS; type-checked here by `../shared/darwin/check.sh`,
//! never run on a Mac in this repository's CI machines.

use super::NetReading;
use crate::collect::CollectError;
use crate::collect::hardware::macos::sysctl_raw;

pub fn read() -> Result<NetReading, CollectError> {
    let get =
        |name: &str| sysctl_raw(name).ok_or_else(|| CollectError(format!("sysctl {name} failed")));
    let counters =
        super::darwin::counters(&get("net.inet.udp.stats")?, &get("net.inet.tcp.stats")?)
            .map_err(CollectError)?;
    Ok(NetReading {
        counters,
        sockets: None,
    })
}
