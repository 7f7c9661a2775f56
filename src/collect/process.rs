//! m4watch's own process: memory, CPU time, file descriptors, start time, as the
//! standard unprefixed `process_*` families every Prometheus client library exports
//! (the `prometheus` crate's process collector reads Linux's procfs only; this one
//! reads the same figures on Linux and macOS).

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::{BlockingCollector, CollectError};
use crate::model::{Kind, MetricDef, def};
use crate::store::Family;

pub(crate) const PROCESS_RESIDENT_MEMORY_BYTES: MetricDef = def(
    "process_resident_memory_bytes",
    Kind::Gauge,
    &[],
    "Resident memory of the m4watch process, in bytes.",
);

pub(crate) const PROCESS_VIRTUAL_MEMORY_BYTES: MetricDef = def(
    "process_virtual_memory_bytes",
    Kind::Gauge,
    &[],
    "Virtual memory of the m4watch process, in bytes.",
);

pub(crate) const PROCESS_CPU_SECONDS_TOTAL: MetricDef = def(
    "process_cpu_seconds_total",
    Kind::Counter,
    &[],
    "CPU time (user and system) used by the m4watch process, in seconds.",
);

pub(crate) const PROCESS_OPEN_FDS: MetricDef = def(
    "process_open_fds",
    Kind::Gauge,
    &[],
    "File descriptors the m4watch process has open.",
);

pub(crate) const PROCESS_MAX_FDS: MetricDef = def(
    "process_max_fds",
    Kind::Gauge,
    &[],
    "Limit on open file descriptors of the m4watch process (its soft limit); absent when unlimited.",
);

pub(crate) const PROCESS_START_TIME_SECONDS: MetricDef = def(
    "process_start_time_seconds",
    Kind::Gauge,
    &[],
    "Unix time the m4watch process started, in seconds.",
);

pub(crate) struct ProcessCollector {
    system: System,
    pid: Pid,
}

impl ProcessCollector {
    pub(crate) fn new() -> Result<Self, CollectError> {
        let pid = sysinfo::get_current_pid().map_err(|e| CollectError(e.to_string()))?;
        Ok(ProcessCollector {
            system: System::new().map_err(|e| CollectError(e.to_string()))?,
            pid,
        })
    }
}

impl BlockingCollector for ProcessCollector {
    fn name(&self) -> &'static str {
        "process"
    }

    fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            true,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        let p = self
            .system
            .process(self.pid)
            .ok_or_else(|| CollectError("own process not found".into()))?;
        let mut rss = Family::new(&PROCESS_RESIDENT_MEMORY_BYTES);
        rss.push_value(p.memory() as f64);
        let mut vms = Family::new(&PROCESS_VIRTUAL_MEMORY_BYTES);
        vms.push_value(p.virtual_memory() as f64);
        let mut cpu = Family::new(&PROCESS_CPU_SECONDS_TOTAL);
        cpu.push_value(p.accumulated_cpu_time() as f64 / 1000.0);
        let mut start = Family::new(&PROCESS_START_TIME_SECONDS);
        start.push_value(p.start_time() as f64);
        let mut open = Family::new(&PROCESS_OPEN_FDS);
        if let Some(n) = open_fds() {
            open.push_value(n as f64);
        }
        let mut max = Family::new(&PROCESS_MAX_FDS);
        if let Some(n) = max_fds() {
            max.push_value(n as f64);
        }
        let out = vec![rss, vms, cpu, start, open, max];
        Ok(out)
    }
}

/// Open file descriptors: the entries of the process's own descriptor directory
/// (Linux procfs, macOS fdescfs), less the one reading it holds.
fn open_fds() -> Option<usize> {
    #[cfg(target_os = "linux")]
    const DIR: &str = "/proc/self/fd";
    #[cfg(not(target_os = "linux"))]
    const DIR: &str = "/dev/fd";
    let n = std::fs::read_dir(DIR).ok()?.count();
    Some(n.saturating_sub(1))
}

/// The soft limit on open files; `None` when unlimited or unreadable.
#[cfg(target_os = "linux")]
fn max_fds() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| parse_max_open_files(&t))
}

/// The soft limit on open files; `None` when unlimited or unreadable.
#[cfg(target_os = "macos")]
fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Elsewhere the limit is not read.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn max_fds() -> Option<u64> {
    None
}

/// The soft limit on open files from /proc/self/limits; `None` when unlimited.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it; tested everywhere
pub(crate) fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_file() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(text), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn reads_own_process() {
        let mut c = ProcessCollector::new().unwrap();
        let fams = c.collect().unwrap();
        let rss = fams
            .iter()
            .find(|f| f.name == "process_resident_memory_bytes")
            .unwrap();
        assert!(rss.samples[0].value > 1_000_000.0, "{rss:?}");
    }
}
