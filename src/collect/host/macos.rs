//! macOS: `net.inet.udp.stats` and `net.inet.tcp.stats` by `sysctlbyname`, and the
//! interfaces from the `NET_RT_IFLIST2` routing sysctl (64-bit counters), all decoded
//! by [`super::darwin`]. macOS lists no per-socket drop counter (its `netstat` shows
//! none), so the reading carries no sockets and the per-socket families are absent.
//!
//! NOTE: compiled only for macOS; type-checked here by `../shared/darwin/check.sh`,
//! never run on a Mac in this repository's CI machines.

use std::ffi::{CStr, c_char};

use super::NetReading;
use crate::collect::CollectError;
use crate::collect::hardware::macos::{sysctl_mib, sysctl_raw};

pub fn read() -> Result<NetReading, CollectError> {
    let get =
        |name: &str| sysctl_raw(name).ok_or_else(|| CollectError(format!("sysctl {name} failed")));
    let counters =
        super::darwin::counters(&get("net.inet.udp.stats")?, &get("net.inet.tcp.stats")?)
            .map_err(CollectError)?;
    let iflist = iflist2()?;
    let interfaces = super::darwin::interfaces(&iflist, if_name).map_err(CollectError)?;
    Ok(NetReading {
        counters,
        sockets: None,
        interfaces,
    })
}

/// The `NET_RT_IFLIST2` buffer. Interfaces can appear between the size query and the
/// read, so the buffer gets some room and the read is retried once on ENOMEM.
fn iflist2() -> Result<Vec<u8>, CollectError> {
    let mut mib = [libc::CTL_NET, libc::PF_ROUTE, 0, 0, libc::NET_RT_IFLIST2, 0];
    for _ in 0..2 {
        let len = sysctl_mib(&mut mib, None)?;
        let mut buf = vec![0u8; len + len / 8 + 512];
        match sysctl_mib(&mut mib, Some(&mut buf)) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CollectError(
        "sysctl NET_RT_IFLIST2: the interface list kept growing".into(),
    ))
}

fn if_name(index: u16) -> Option<String> {
    let mut buf = [0 as c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index.into(), buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the name is NUL-terminated within `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
