//! macOS: `proc_listallpids`, then per process `proc_pidinfo` (`PROC_PIDTBSDINFO` for
//! its name and start, `PROC_PIDTASKINFO` for threads, `PROC_PIDLISTFDS` for
//! descriptors), `proc_pid_rusage(RUSAGE_INFO_V6)` for times, core types, delay and
//! energy, and `KERN_PROCARGS2` for the command line; [`super::darwin`] decodes the
//! rusage and argument bytes. Another user's process refuses most of these without
//! root: it is skipped.
//!
//! NOTE: compiled only for macOS; type-checked here by `../shared/darwin/check.sh`,
//! never run on a Mac in this repository's CI machines.

use std::ffi::{c_int, c_void};
use std::mem::{MaybeUninit, size_of};

use super::darwin::{RUSAGE_INFO_V6, RUSAGE_INFO_V6_LEN, Timebase, decode_rusage_v6};
use super::{ProcessSample, ProcessTable, Reading, Selector, Unit, groups};
use crate::collect::CollectError;
use crate::collect::hardware::macos::{sysctl_int, sysctl_mib};

pub(crate) fn read(selectors: &[Selector], max: usize) -> Result<Reading, CollectError> {
    let tb = timebase();
    // SAFETY: no preconditions.
    let now = tb.seconds(unsafe { mach2::mach_time::mach_absolute_time() });
    let efficiency_cores = sysctl_int("hw.nperflevels").is_some_and(|n| n > 1);
    let groups = groups(
        &mut Table {
            tb,
            efficiency_cores,
        },
        selectors,
        max,
    )?;
    Ok(Reading { now, groups })
}

/// The kernel's process table as [`ProcessTable`].
struct Table {
    tb: Timebase,
    efficiency_cores: bool,
}

impl ProcessTable for Table {
    type Error = CollectError;

    fn pids(&mut self) -> Result<Vec<u32>, CollectError> {
        all_pids()
    }

    fn name(&mut self, pid: u32) -> Option<String> {
        bsdinfo(pid).map(|b| name_of(&b))
    }

    fn cmdline(&mut self, pid: u32) -> Option<String> {
        procargs(pid)
    }

    fn exists(&mut self, pid: u32) -> bool {
        bsdinfo(pid).is_some()
    }

    fn read(&mut self, pid: u32) -> Result<Option<ProcessSample>, CollectError> {
        Ok(process(pid, self.tb, self.efficiency_cores))
    }
}

fn timebase() -> Timebase {
    let mut info = mach2::mach_time::mach_timebase_info { numer: 0, denom: 0 };
    // SAFETY: `info` is a valid out-pointer.
    let rc = unsafe { mach2::mach_time::mach_timebase_info(&mut info) };
    if rc != 0 || info.denom == 0 {
        return Timebase { numer: 1, denom: 1 };
    }
    Timebase {
        numer: info.numer,
        denom: info.denom,
    }
}

fn all_pids() -> Result<Vec<u32>, CollectError> {
    // SAFETY: a null buffer asks for the count.
    let n = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // Room for processes started between the two calls.
    let mut pids = vec![0 as c_int; n as usize + 64];
    let bytes = c_int::try_from(pids.len() * size_of::<c_int>()).unwrap_or(c_int::MAX);
    // SAFETY: `pids` holds `bytes` bytes.
    let n = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast::<c_void>(), bytes) };
    if n <= 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    pids.truncate(n as usize);
    Ok(pids
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0)
        .collect())
}

/// `proc_pidinfo(pid, flavor, 0, out, sizeof *out)`, `None` unless it filled `out`.
fn pidinfo<T>(pid: u32, flavor: c_int) -> Option<T> {
    let mut out = MaybeUninit::<T>::uninit();
    let size = c_int::try_from(size_of::<T>()).ok()?;
    // SAFETY: `out` has room for `size` bytes.
    let n = unsafe {
        libc::proc_pidinfo(
            c_int::try_from(pid).ok()?,
            flavor,
            0,
            out.as_mut_ptr().cast::<c_void>(),
            size,
        )
    };
    // SAFETY: the kernel filled all `size` bytes.
    (n == size).then(|| unsafe { out.assume_init() })
}

fn bsdinfo(pid: u32) -> Option<libc::proc_bsdinfo> {
    pidinfo(pid, libc::PROC_PIDTBSDINFO)
}

fn name_of(b: &libc::proc_bsdinfo) -> String {
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let name = field(&b.pbi_name);
    if name.is_empty() {
        field(&b.pbi_comm)
    } else {
        name
    }
}

/// The command line, from the `KERN_PROCARGS2` sysctl.
fn procargs(pid: u32) -> Option<String> {
    let mut mib = [
        libc::CTL_KERN,
        libc::KERN_PROCARGS2,
        c_int::try_from(pid).ok()?,
    ];
    // kern.argmax bounds the block; 256 KiB covers the default (1 MiB is rare).
    let mut buf = vec![0u8; 256 * 1024];
    let len = sysctl_mib(&mut mib, Some(&mut buf)).ok()?;
    buf.truncate(len);
    super::darwin::parse_procargs2(&buf)
}

fn open_fds(pid: u32) -> Option<u64> {
    let p = c_int::try_from(pid).ok()?;
    // SAFETY: a null buffer asks for the size needed.
    let need = unsafe { libc::proc_pidinfo(p, libc::PROC_PIDLISTFDS, 0, std::ptr::null_mut(), 0) };
    if need <= 0 {
        return None;
    }
    let room = need as usize / size_of::<libc::proc_fdinfo>() + 16;
    let mut fds: Vec<MaybeUninit<libc::proc_fdinfo>> = Vec::with_capacity(room);
    let bytes = c_int::try_from(room * size_of::<libc::proc_fdinfo>()).ok()?;
    // SAFETY: `fds` has capacity for `bytes` bytes.
    let got = unsafe {
        libc::proc_pidinfo(
            p,
            libc::PROC_PIDLISTFDS,
            0,
            fds.as_mut_ptr().cast::<c_void>(),
            bytes,
        )
    };
    (got > 0).then(|| got as u64 / size_of::<libc::proc_fdinfo>() as u64)
}

fn process(pid: u32, tb: Timebase, efficiency_cores: bool) -> Option<ProcessSample> {
    let bsd = bsdinfo(pid)?;
    let mut buf = vec![0u8; RUSAGE_INFO_V6_LEN];
    // SAFETY: `buf` has room for a `rusage_info_v6`, the flavour asked for.
    let rc = unsafe {
        libc::proc_pid_rusage(
            c_int::try_from(pid).ok()?,
            RUSAGE_INFO_V6,
            buf.as_mut_ptr().cast::<libc::rusage_info_t>(),
        )
    };
    if rc != 0 {
        return None;
    }
    let r = decode_rusage_v6(&buf, tb, efficiency_cores).ok()?;
    let task: Option<libc::proc_taskinfo> = pidinfo(pid, libc::PROC_PIDTASKINFO);
    Some(ProcessSample {
        pid,
        start_time_seconds: Some(bsd.pbi_start_tvsec as f64 + bsd.pbi_start_tvusec as f64 / 1e6),
        resident_bytes: Some(r.resident_bytes),
        threads: task.and_then(|t| u64::try_from(t.pti_threadnum).ok()),
        open_fds: open_fds(pid),
        units: vec![Unit {
            tid: 0,
            started: r.started,
            counters: r.counters,
        }],
    })
}
