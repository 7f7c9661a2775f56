//! macOS: `net.inet.udp.stats` and `net.inet.tcp.stats` by `sysctlbyname`, and the
//! interfaces from the `NET_RT_IFLIST2` routing sysctl (64-bit counters), all decoded
//! by [`super::darwin`]. macOS lists no per-socket drop counter (its `netstat` shows
//! none), so the reading carries no sockets and the per-socket families are absent.
//! Disks from the IORegistry (each whole `IOMedia` and its `IOBlockStorageDriver`'s
//! statistics, as `iostat` reads them), filesystems from `getfsstat(MNT_NOWAIT)`.
//!
//! NOTE: compiled only for macOS; type-checked here by `../shared/darwin/check.sh`,
//! never run on a Mac in this repository's CI machines.

use std::ffi::{CStr, c_char};

use core_foundation::boolean::CFBoolean;
use core_foundation::string::CFString;
use io_kit_sys::keys::kIOServicePlane;
use io_kit_sys::types::io_registry_entry_t;
use io_kit_sys::{IOObjectConformsTo, IOObjectRelease, IORegistryEntryGetParentEntry};

use super::NetReading;
use super::storage::{Disk, FsStat, Mount};
use crate::collect::CollectError;
use crate::collect::hardware::macos::{
    for_each_service, integer_dictionary, property, sysctl_mib, sysctl_raw,
};

pub(crate) fn read() -> Result<NetReading, CollectError> {
    let get =
        |name: &str| sysctl_raw(name).ok_or_else(|| CollectError(format!("sysctl {name} failed")));
    let counters =
        super::darwin::counters(&get("net.inet.udp.stats")?, &get("net.inet.tcp.stats")?)
            .map_err(|e| CollectError(e.to_string()))?;
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

/// Every whole disk with its driver's statistics. A partition's IOMedia shares its
/// disk's driver, so whole media only (`Whole` = true) count each driver once.
pub(crate) fn disks() -> Result<Vec<Disk>, CollectError> {
    let mut out = Vec::new();
    let listed = for_each_service(c"IOMedia", |media| {
        let whole = property(media, "Whole")
            .and_then(|p| p.downcast::<CFBoolean>())
            .is_some_and(bool::from);
        let name = property(media, "BSD Name")
            .and_then(|p| p.downcast::<CFString>())
            .map(|s| s.to_string());
        let (true, Some(name)) = (whole, name) else {
            return;
        };
        let mut driver: io_registry_entry_t = 0;
        // SAFETY: a live entry and the service plane's name; the parent is released
        // below.
        if unsafe { IORegistryEntryGetParentEntry(media, kIOServicePlane, &mut driver) } != 0 {
            return;
        }
        // SAFETY: a live entry and a C class name.
        if unsafe { IOObjectConformsTo(driver, c"IOBlockStorageDriver".as_ptr()) } != 0 {
            out.push(super::darwin::disk(
                &name,
                &integer_dictionary(driver, "Statistics"),
            ));
        }
        // SAFETY: the parent came from IORegistryEntryGetParentEntry, released once.
        unsafe { IOObjectRelease(driver) };
    });
    if !listed {
        return Err(CollectError(
            "IOServiceGetMatchingServices(IOMedia) failed".into(),
        ));
    }
    Ok(out)
}

/// Every mounted filesystem with its sizes. `MNT_NOWAIT` answers from the kernel's
/// cache, so a dead network server cannot block the call.
pub(crate) fn filesystems() -> Result<Vec<(Mount, Option<FsStat>)>, CollectError> {
    const _: () = assert!(std::mem::size_of::<libc::statfs>() == super::darwin::STATFS_LEN);
    for _ in 0..2 {
        // SAFETY: a null buffer asks for the number of mounts.
        let n = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // Room for mounts that appear between the two calls.
        let room = n as usize + 4;
        // SAFETY: statfs is plain data; all-zero is a valid value.
        let mut buf: Vec<libc::statfs> = vec![unsafe { std::mem::zeroed() }; room];
        let bytes = (room * super::darwin::STATFS_LEN) as libc::c_int;
        // SAFETY: `buf` holds `bytes` bytes of statfs records.
        let got = unsafe { libc::getfsstat(buf.as_mut_ptr(), bytes, libc::MNT_NOWAIT) };
        if got < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if (got as usize) < room {
            // SAFETY: the first `got` records were written; statfs has no padding
            // the decoder reads, and u8 has no alignment.
            let raw = unsafe {
                std::slice::from_raw_parts(
                    buf.as_ptr().cast::<u8>(),
                    got as usize * super::darwin::STATFS_LEN,
                )
            };
            return super::darwin::filesystems(raw).map_err(CollectError);
        }
    }
    Err(CollectError(
        "getfsstat: the mount table kept growing".into(),
    ))
}
