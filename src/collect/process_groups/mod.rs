//! The trading processes: named groups of processes (`processes.groups`), selected by
//! process name, command line or pid file, and per group their count, CPU time by mode
//! and by core type, time runnable but waiting for a core, memory, threads, context
//! switches, file descriptors, start time and (macOS) energy.
//!
//! A platform source only reads: [`linux`] parses `/proc/PID/{stat,status,fd}` and
//! every thread's `/proc/PID/task/TID/{stat,schedstat,status}` (pure parsers, tested on
//! fixture trees in the shapes of Linux 5.4 and 6.8 and one captured on 6.18), `macos` calls `proc_listallpids`, `proc_pid_rusage`
//! (`RUSAGE_INFO_V6`) and `proc_pidinfo`, and [`darwin`] decodes what those return
//! (pure, tested on Linux with captured-shape bytes). This module turns readings into
//! families and keeps the group counters.
//!
//! **Counters never go backwards.** A group's counters are m4watch's own sums: each
//! collection adds, per process (and on Linux per thread), how much its kernel counter
//! grew since the previous collection. A member that exits takes nothing away; what it
//! used between the last collection and its exit is not counted. A member first seen
//! adds its whole count if it started after the previous collection (it all ran while
//! watched) and is only a baseline otherwise, so m4watch's start, or an old process
//! newly written into a pid file, is no jump.
//!
//! **Core types.** macOS measures them: the kernel keeps each process's time on
//! performance cores (`ri_user_ptime + ri_system_ptime`), and the rest of its CPU time
//! ran on efficiency cores (`method="measured"`). Linux keeps no such count, so each
//! thread's CPU time since the last collection is put on the core type of the CPU it
//! last ran on (`/proc/PID/task/TID/stat` field 39) through the hardware topology
//! (`method="sampled"`): exact for a pinned thread, an estimate for one that moves
//! between collections. On a machine whose cores are all one type (most x86 servers)
//! every second lands on `performance`.

#[cfg(any(target_os = "macos", test))]
pub(crate) mod darwin;
/// This collector against the running kernel (Linux): real sockets, processes, mounts.
#[cfg(test)]
mod kernel_tests;
#[cfg(any(target_os = "linux", test))]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
// the Linux source uses it; tested everywhere
pub(crate) mod linux;
#[cfg(target_os = "macos")]
mod macos;

use std::collections::{BTreeMap, HashMap};

use super::{BlockingCollector, CollectError};
use crate::collect::hardware::{CoreType, Topology};
use crate::config::{ProcessGroupConfig, ProcessesConfig, SelectorError, selector_regex};
use crate::model::{Kind, MetricDef, def};
use crate::store::Family;

pub(crate) const UP: MetricDef = def(
    "m4watch_process_group_up",
    Kind::Gauge,
    &["group"],
    "1 if at least one process of a watched group (processes.groups) runs, 0 if none does.",
);

pub(crate) const PROCESSES: MetricDef = def(
    "m4watch_process_group_processes",
    Kind::Gauge,
    &["group"],
    "Processes a watched group matches now (beyond processes.max_processes they are counted but not read).",
);

pub(crate) const CPU_SECONDS_TOTAL: MetricDef = def(
    "m4watch_process_group_cpu_seconds_total",
    Kind::Counter,
    &["group", "mode"],
    "CPU time a watched group's processes used while watched, by mode (user, system), in seconds.",
);

pub(crate) const CORE_TYPE_CPU_SECONDS_TOTAL: MetricDef = def(
    "m4watch_process_group_core_type_cpu_seconds_total",
    Kind::Counter,
    &["group", "type", "method"],
    "CPU time a watched group's threads used while watched, by core type, in seconds; method=\"measured\" where the kernel counts it (macOS), \"sampled\" where each thread's time since the last collection is put on the type of the CPU it last ran on (Linux).",
);

pub(crate) const SCHEDULING_DELAY_SECONDS_TOTAL: MetricDef = def(
    "m4watch_process_group_scheduling_delay_seconds_total",
    Kind::Counter,
    &["group"],
    "Time a watched group's threads spent runnable but waiting for a core while watched, in seconds (Linux schedstat run delay, macOS ri_runnable_time).",
);

pub(crate) const CONTEXT_SWITCHES_TOTAL: MetricDef = def(
    "m4watch_process_group_context_switches_total",
    Kind::Counter,
    &["group", "kind"],
    "Context switches of a watched group's threads while watched, voluntary (the thread blocked) or involuntary (it was preempted); absent on macOS, which keeps no split.",
);

pub(crate) const ENERGY_JOULES_TOTAL: MetricDef = def(
    "m4watch_process_group_energy_joules_total",
    Kind::Counter,
    &["group"],
    "Energy the kernel billed to a watched group's processes while watched, in joules (macOS ri_energy_nj); absent on Linux.",
);

pub(crate) const RESIDENT_MEMORY_BYTES: MetricDef = def(
    "m4watch_process_group_resident_memory_bytes",
    Kind::Gauge,
    &["group"],
    "Resident memory of a watched group's processes, summed, in bytes.",
);

pub(crate) const THREADS: MetricDef = def(
    "m4watch_process_group_threads",
    Kind::Gauge,
    &["group"],
    "Threads of a watched group's processes, summed.",
);

pub(crate) const OPEN_FDS: MetricDef = def(
    "m4watch_process_group_open_fds",
    Kind::Gauge,
    &["group"],
    "File descriptors a watched group's processes have open, summed; absent when any member's cannot be read (another user's process).",
);

pub(crate) const OLDEST_START_TIME_SECONDS: MetricDef = def(
    "m4watch_process_group_oldest_start_time_seconds",
    Kind::Gauge,
    &["group"],
    "Unix time the longest-running process of a watched group started.",
);

/// The process group collector's families, for the catalogue.
pub(crate) const METRICS: &[MetricDef] = &[
    UP,
    PROCESSES,
    CPU_SECONDS_TOTAL,
    CORE_TYPE_CPU_SECONDS_TOTAL,
    SCHEDULING_DELAY_SECONDS_TOTAL,
    CONTEXT_SWITCHES_TOTAL,
    ENERGY_JOULES_TOTAL,
    RESIDENT_MEMORY_BYTES,
    THREADS,
    OPEN_FDS,
    OLDEST_START_TIME_SECONDS,
];

/// Most threads of one process read each collection; a process with more has the
/// rest left out of its core-type, delay and context-switch counts.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it; tested everywhere
pub(crate) const MAX_THREADS: usize = 4096;

/// How a group picks its processes.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// Every process whose name and command line match the regexes given.
    Match {
        name: Option<regex::Regex>,
        cmdline: Option<regex::Regex>,
    },
    /// The process whose pid the file holds.
    PidFile(std::path::PathBuf),
}

impl Selector {
    /// The selector of a validated group.
    pub(crate) fn from_config(g: &ProcessGroupConfig) -> Result<Self, SelectorError> {
        if let Some(f) = &g.pid_file {
            return Ok(Selector::PidFile(f.clone()));
        }
        let re = |p: &Option<String>| p.as_deref().map(selector_regex).transpose();
        Ok(Selector::Match {
            name: re(&g.process_name)?,
            cmdline: re(&g.cmdline)?,
        })
    }

    /// Whether a process with this name and command line belongs (pid-file groups
    /// match by pid, not here).
    pub(crate) fn matches(&self, name: &str, cmdline: Option<&str>) -> bool {
        match self {
            Selector::Match {
                name: n,
                cmdline: c,
            } => {
                n.as_ref().is_none_or(|r| r.is_match(name))
                    && c.as_ref()
                        .is_none_or(|r| cmdline.is_some_and(|l| r.is_match(l)))
            }
            Selector::PidFile(_) => false,
        }
    }

    pub(crate) fn needs_cmdline(&self) -> bool {
        matches!(
            self,
            Selector::Match {
                cmdline: Some(_),
                ..
            }
        )
    }
}

/// A process's CPU time by core type, cumulative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CoreTime {
    /// The kernel's own split (macOS), in seconds.
    #[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS source reads it
    Measured { performance: f64, efficiency: f64 },
    /// A thread's CPU seconds and the CPU it last ran on (Linux).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
    OnCpu { seconds: f64, cpu: u32 },
}

/// Cumulative counters of one process or one thread, as the kernel keeps them; what
/// the platform does not count is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counters {
    pub user_seconds: Option<f64>,
    pub system_seconds: Option<f64>,
    pub core: Option<CoreTime>,
    pub scheduling_delay_seconds: Option<f64>,
    pub voluntary_switches: Option<f64>,
    pub involuntary_switches: Option<f64>,
    pub energy_joules: Option<f64>,
}

/// One counted unit: a process, or one thread of it (Linux counts core types, delays
/// and switches per thread, because a process's own files hold only its main thread's).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Unit {
    /// 0 for the process itself, else the thread id.
    pub tid: u32,
    /// When it started, in seconds on the reading's monotonic clock.
    pub started: f64,
    pub counters: Counters,
}

/// One process as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProcessSample {
    pub pid: u32,
    /// Unix time it started.
    pub start_time_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub threads: Option<u64>,
    /// `None` where the descriptors cannot be listed (permissions).
    pub open_fds: Option<u64>,
    /// The process first, then its threads (Linux).
    pub units: Vec<Unit>,
}

/// One group's reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GroupReading {
    /// Processes that matched, read or not.
    pub matched: usize,
    /// The processes read (at most `processes.max_processes`).
    pub processes: Vec<ProcessSample>,
}

/// One collection's readings, in config order, and the monotonic clock they share
/// (seconds since boot on Linux, since an arbitrary origin on macOS).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reading {
    pub now: f64,
    pub groups: Vec<GroupReading>,
}

/// Counter sums of one group; a counter is `None` until some member has it.
#[derive(Debug, Clone, Default)]
struct Totals {
    user: f64,
    system: f64,
    performance: f64,
    efficiency: f64,
    delay: Option<f64>,
    voluntary: Option<f64>,
    involuntary: Option<f64>,
    energy: Option<f64>,
}

/// One group's counter state across collections.
#[derive(Debug, Default)]
struct GroupState {
    totals: Totals,
    /// Last counters per `(pid, started, tid)`; units not seen this time are dropped.
    last: HashMap<(u32, u64, u32), Counters>,
}

/// Turns readings into families and keeps each group's counters.
pub(crate) struct Accountant {
    names: Vec<String>,
    states: Vec<GroupState>,
    topology: Topology,
    method: &'static str,
    /// The previous reading's clock; `None` before the first.
    last_now: Option<f64>,
}

/// How much a cumulative value grew; a value that went down (a reused id the start
/// time did not tell apart) counts from zero.
fn grew(cur: Option<f64>, prev: Option<f64>) -> Option<f64> {
    let c = cur?;
    Some(match prev {
        Some(p) if c >= p => c - p,
        Some(_) => 0.0,
        None => c,
    })
}

fn add(total: &mut Option<f64>, delta: Option<f64>) {
    if let Some(d) = delta {
        *total = Some(total.unwrap_or(0.0) + d);
    }
}

impl Accountant {
    /// `method` labels the core-type counters: `measured` or `sampled`.
    pub(crate) fn new(names: Vec<String>, topology: Topology, method: &'static str) -> Self {
        let states = names.iter().map(|_| GroupState::default()).collect();
        Accountant {
            names,
            states,
            topology,
            method,
            last_now: None,
        }
    }

    fn core_split(&self, cur: Option<CoreTime>, prev: Option<CoreTime>) -> (f64, f64) {
        match cur {
            Some(CoreTime::Measured {
                performance,
                efficiency,
            }) => {
                let (pp, pe) = match prev {
                    Some(CoreTime::Measured {
                        performance: p,
                        efficiency: e,
                    }) => (Some(p), Some(e)),
                    _ => (None, None),
                };
                (
                    grew(Some(performance), pp).unwrap_or(0.0),
                    grew(Some(efficiency), pe).unwrap_or(0.0),
                )
            }
            Some(CoreTime::OnCpu { seconds, cpu }) => {
                let prev = match prev {
                    Some(CoreTime::OnCpu { seconds: s, .. }) => Some(s),
                    _ => None,
                };
                let d = grew(Some(seconds), prev).unwrap_or(0.0);
                match self.topology.core_type(cpu) {
                    CoreType::Performance => (d, 0.0),
                    CoreType::Efficiency => (0.0, d),
                }
            }
            None => (0.0, 0.0),
        }
    }

    /// Adds one reading to the counters and returns every family.
    pub(crate) fn families(&mut self, r: &Reading) -> Vec<Family> {
        let since = self.last_now;
        for (i, g) in r.groups.iter().enumerate().take(self.states.len()) {
            let mut last = std::mem::take(&mut self.states[i].last);
            let mut next = HashMap::with_capacity(last.len());
            let mut d = Totals::default();
            for p in &g.processes {
                for u in &p.units {
                    let key = (p.pid, u.started.to_bits(), u.tid);
                    let prev = last.remove(&key);
                    // First seen: all of it ran while watched only if it started after
                    // the previous collection; otherwise it is a baseline.
                    let counted = match (&prev, since) {
                        (Some(_), _) => true,
                        (None, Some(t)) => u.started > t,
                        (None, None) => false,
                    };
                    if counted {
                        let (c, pr) = (&u.counters, prev.clone().unwrap_or_default());
                        d.user += grew(c.user_seconds, pr.user_seconds).unwrap_or(0.0);
                        d.system += grew(c.system_seconds, pr.system_seconds).unwrap_or(0.0);
                        let (pe, ef) = self.core_split(c.core, pr.core);
                        d.performance += pe;
                        d.efficiency += ef;
                        add(
                            &mut d.delay,
                            grew(c.scheduling_delay_seconds, pr.scheduling_delay_seconds),
                        );
                        add(
                            &mut d.voluntary,
                            grew(c.voluntary_switches, pr.voluntary_switches),
                        );
                        add(
                            &mut d.involuntary,
                            grew(c.involuntary_switches, pr.involuntary_switches),
                        );
                        add(&mut d.energy, grew(c.energy_joules, pr.energy_joules));
                    } else {
                        // A baseline still tells which counters this platform keeps.
                        let c = &u.counters;
                        add(&mut d.delay, c.scheduling_delay_seconds.map(|_| 0.0));
                        add(&mut d.voluntary, c.voluntary_switches.map(|_| 0.0));
                        add(&mut d.involuntary, c.involuntary_switches.map(|_| 0.0));
                        add(&mut d.energy, c.energy_joules.map(|_| 0.0));
                    }
                    next.insert(key, u.counters.clone());
                }
            }
            let t = &mut self.states[i].totals;
            t.user += d.user;
            t.system += d.system;
            t.performance += d.performance;
            t.efficiency += d.efficiency;
            add(&mut t.delay, d.delay);
            add(&mut t.voluntary, d.voluntary);
            add(&mut t.involuntary, d.involuntary);
            add(&mut t.energy, d.energy);
            self.states[i].last = next;
        }
        self.last_now = Some(r.now);
        self.encode(r)
    }

    fn encode(&self, r: &Reading) -> Vec<Family> {
        let mut fams: BTreeMap<&'static str, Family> =
            METRICS.iter().map(|d| (d.name, Family::new(d))).collect();
        let mut push = |d: &MetricDef, labels: Vec<(&str, &str)>, v: f64| {
            fams.get_mut(d.name)
                .expect("family of METRICS")
                .push(labels, v);
        };
        for (i, name) in self.names.iter().enumerate() {
            let g = r.groups.get(i).cloned().unwrap_or_default();
            let t = &self.states[i].totals;
            let group = ("group", name.as_str());
            push(&UP, vec![group], f64::from(u8::from(g.matched > 0)));
            push(&PROCESSES, vec![group], g.matched as f64);
            push(&CPU_SECONDS_TOTAL, vec![group, ("mode", "user")], t.user);
            push(
                &CPU_SECONDS_TOTAL,
                vec![group, ("mode", "system")],
                t.system,
            );
            for (ty, v) in [
                (CoreType::Performance, t.performance),
                (CoreType::Efficiency, t.efficiency),
            ] {
                push(
                    &CORE_TYPE_CPU_SECONDS_TOTAL,
                    vec![group, ("type", ty.as_str()), ("method", self.method)],
                    v,
                );
            }
            if let Some(v) = t.delay {
                push(&SCHEDULING_DELAY_SECONDS_TOTAL, vec![group], v);
            }
            if let Some(v) = t.voluntary {
                push(
                    &CONTEXT_SWITCHES_TOTAL,
                    vec![group, ("kind", "voluntary")],
                    v,
                );
            }
            if let Some(v) = t.involuntary {
                push(
                    &CONTEXT_SWITCHES_TOTAL,
                    vec![group, ("kind", "involuntary")],
                    v,
                );
            }
            if let Some(v) = t.energy {
                push(&ENERGY_JOULES_TOTAL, vec![group], v);
            }
            if g.processes.is_empty() {
                continue;
            }
            // A sum is known only when every member's part is.
            let sum = |f: fn(&ProcessSample) -> Option<u64>| -> Option<f64> {
                g.processes
                    .iter()
                    .map(f)
                    .sum::<Option<u64>>()
                    .map(|v| v as f64)
            };
            if let Some(v) = sum(|p| p.resident_bytes) {
                push(&RESIDENT_MEMORY_BYTES, vec![group], v);
            }
            if let Some(v) = sum(|p| p.threads) {
                push(&THREADS, vec![group], v);
            }
            if let Some(v) = sum(|p| p.open_fds) {
                push(&OPEN_FDS, vec![group], v);
            }
            if let Some(v) = g
                .processes
                .iter()
                .filter_map(|p| p.start_time_seconds)
                .min_by(f64::total_cmp)
            {
                push(&OLDEST_START_TIME_SECONDS, vec![group], v);
            }
        }
        METRICS
            .iter()
            .map(|d| fams.remove(d.name).expect("family of METRICS"))
            .collect()
    }
}

/// The value of family `name`'s series that carries every label of `want` (its first
/// series for none); `None` when the family has no such series. Panics when `families`
/// lacks the family: every collection lists all of [`METRICS`].
#[cfg(test)]
pub(crate) fn value(families: &[Family], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .samples
        .iter()
        .find(|s| {
            want.iter()
                .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
}

/// Reads the watched groups of the machine m4watch runs on.
pub(crate) struct ProcessGroupCollector {
    selectors: Vec<Selector>,
    #[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(dead_code))]
    max_processes: usize,
    accountant: Accountant,
    #[cfg(target_os = "linux")]
    source: linux::Source,
}

impl ProcessGroupCollector {
    /// The collector for a validated config; `topology` maps CPUs to core types for
    /// Linux's sampled attribution (macOS measures instead).
    pub(crate) fn new(config: &ProcessesConfig, topology: Topology) -> Result<Self, CollectError> {
        let selectors = config
            .groups
            .iter()
            .map(Selector::from_config)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CollectError(e.to_string()))?;
        let names = config.groups.iter().map(|g| g.name.clone()).collect();
        let method = if cfg!(target_os = "macos") {
            "measured"
        } else {
            "sampled"
        };
        Ok(ProcessGroupCollector {
            selectors,
            max_processes: config.max_processes,
            accountant: Accountant::new(names, topology, method),
            #[cfg(target_os = "linux")]
            source: linux::Source::new(&config.procfs),
        })
    }

    /// One reading, as the platform gives it.
    pub(crate) fn read(&mut self) -> Result<Reading, CollectError> {
        #[cfg(target_os = "linux")]
        {
            self.source
                .read(&self.selectors, self.max_processes)
                .map_err(CollectError::from)
        }
        #[cfg(target_os = "macos")]
        {
            macos::read(&self.selectors, self.max_processes)
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        {
            Err(CollectError(
                "the process group collector supports Linux and macOS only".into(),
            ))
        }
    }
}

impl BlockingCollector for ProcessGroupCollector {
    fn name(&self) -> &'static str {
        super::CollectorKind::ProcessGroups.name()
    }

    fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        let r = self.read()?;
        Ok(self.accountant.families(&r))
    }
}

/// The CPU-to-core-type map for Linux's sampled attribution: the hardware collector's
/// (`hardware.topology` when set, else detected from sysfs). macOS measures core types
/// and needs none.
pub(crate) fn topology(hw: &crate::config::HardwareConfig) -> Topology {
    #[cfg(target_os = "linux")]
    {
        let src = crate::collect::hardware::linux::LinuxSource::new(&hw.procfs, &hw.sysfs);
        crate::collect::hardware::detect_topology(&src.topology_inputs(), hw.topology.as_ref())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = hw;
        Topology::default()
    }
}

/// The pids of `matched` to read: the lowest `max` (a stable choice across
/// collections, so counters follow the same processes).
pub(crate) fn bounded(mut matched: Vec<u32>, max: usize) -> (usize, Vec<u32>) {
    matched.sort_unstable();
    matched.dedup();
    let n = matched.len();
    matched.truncate(max);
    (n, matched)
}

/// What a platform lists about its processes; [`groups`] does the selecting.
pub(crate) trait ProcessTable {
    type Error;
    /// Every pid.
    fn pids(&mut self) -> Result<Vec<u32>, Self::Error>;
    /// The process name; `None` when the process is gone.
    fn name(&mut self, pid: u32) -> Option<String>;
    /// The arguments joined by spaces; `None` when unreadable.
    fn cmdline(&mut self, pid: u32) -> Option<String>;
    /// Whether the process exists.
    fn exists(&mut self, pid: u32) -> bool;
    /// One process; `Ok(None)` when it is gone.
    fn read(&mut self, pid: u32) -> Result<Option<ProcessSample>, Self::Error>;
}

/// Each selector's group, read from `table`: a pass over every process when some group
/// matches by regex (reading only the names and command lines some selector looks at:
/// that pass is most of the collector's cost), the pid files, then each group's
/// lowest `max` pids, each process read once however many groups hold it.
pub(crate) fn groups<T: ProcessTable>(
    table: &mut T,
    selectors: &[Selector],
    max: usize,
) -> Result<Vec<GroupReading>, T::Error> {
    let mut matched = vec![Vec::new(); selectors.len()];
    let is_match = |s: &Selector| matches!(s, Selector::Match { .. });
    if selectors.iter().any(is_match) {
        let by_name = selectors
            .iter()
            .any(|s| matches!(s, Selector::Match { name: Some(_), .. }));
        for pid in table.pids()? {
            let name = if by_name {
                match table.name(pid) {
                    Some(n) => n,
                    None => continue,
                }
            } else {
                String::new()
            };
            let mut cmdline: Option<Option<String>> = None;
            for (i, s) in selectors.iter().enumerate().filter(|(_, s)| is_match(s)) {
                let line = if s.needs_cmdline() {
                    cmdline.get_or_insert_with(|| table.cmdline(pid)).as_deref()
                } else {
                    None
                };
                if s.matches(&name, line) {
                    matched[i].push(pid);
                }
            }
        }
    }
    for (i, s) in selectors.iter().enumerate() {
        if let Selector::PidFile(f) = s {
            // A missing or garbled pid file is a group with no process.
            let pid = std::fs::read_to_string(f)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .filter(|&p| p > 0);
            if let Some(pid) = pid
                && table.exists(pid)
            {
                matched[i].push(pid);
            }
        }
    }
    let mut cache: BTreeMap<u32, Option<ProcessSample>> = BTreeMap::new();
    let mut out = Vec::with_capacity(selectors.len());
    for pids in matched {
        let (count, pids) = bounded(pids, max);
        let mut g = GroupReading {
            matched: count,
            processes: Vec::with_capacity(pids.len()),
        };
        for pid in pids {
            let read = match cache.entry(pid) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(table.read(pid)?),
            };
            match read {
                Some(p) => g.processes.push(p.clone()),
                // Exited between the scan and the read.
                None => g.matched -= 1,
            }
        }
        out.push(g);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::hardware::{CpuDesc, Topology};

    fn topology() -> Topology {
        // CPU 0 an efficiency core, CPU 1 a performance core.
        let cpus = [(0, CoreType::Efficiency), (1, CoreType::Performance)]
            .into_iter()
            .map(|(c, t)| {
                (
                    c,
                    CpuDesc {
                        core_type: t,
                        cluster: "0".into(),
                    },
                )
            })
            .collect();
        Topology {
            cpus,
            method: "config",
            tiers: vec![],
        }
    }

    fn process(pid: u32, started: f64, user: f64, threads: &[(u32, f64, u32)]) -> ProcessSample {
        let mut units = vec![Unit {
            tid: 0,
            started,
            counters: Counters {
                user_seconds: Some(user),
                system_seconds: Some(0.0),
                ..Counters::default()
            },
        }];
        units.extend(threads.iter().map(|&(tid, seconds, cpu)| Unit {
            tid,
            started,
            counters: Counters {
                core: Some(CoreTime::OnCpu { seconds, cpu }),
                scheduling_delay_seconds: Some(seconds / 10.0),
                voluntary_switches: Some(5.0),
                involuntary_switches: Some(1.0),
                ..Counters::default()
            },
        }));
        ProcessSample {
            pid,
            start_time_seconds: Some(1_700_000_000.0 + started),
            resident_bytes: Some(1000),
            threads: Some(threads.len() as u64),
            open_fds: Some(4),
            units,
        }
    }

    fn reading(now: f64, processes: Vec<ProcessSample>) -> Reading {
        Reading {
            now,
            groups: vec![GroupReading {
                matched: processes.len(),
                processes,
            }],
        }
    }

    #[test]
    fn counters_start_at_a_baseline_and_grow_by_each_units_deltas() {
        let mut a = Accountant::new(vec!["engine".into()], topology(), "sampled");
        let g = ("group", "engine");
        let f = a.families(&reading(
            100.0,
            vec![process(7, 10.0, 50.0, &[(7, 40.0, 1)])],
        ));
        assert_eq!(
            value(&f, CPU_SECONDS_TOTAL.name, &[g, ("mode", "user")]),
            Some(0.0)
        );
        assert_eq!(
            value(&f, SCHEDULING_DELAY_SECONDS_TOTAL.name, &[g]),
            Some(0.0)
        );
        // The thread ran 2 s on CPU 1 (performance), then 3 s on CPU 0 (efficiency).
        a.families(&reading(
            101.0,
            vec![process(7, 10.0, 52.0, &[(7, 42.0, 1)])],
        ));
        let f = a.families(&reading(
            102.0,
            vec![process(7, 10.0, 55.0, &[(7, 45.0, 0)])],
        ));
        assert_eq!(
            value(&f, CPU_SECONDS_TOTAL.name, &[g, ("mode", "user")]),
            Some(5.0)
        );
        let core = |t| {
            value(
                &f,
                CORE_TYPE_CPU_SECONDS_TOTAL.name,
                &[g, ("type", t), ("method", "sampled")],
            )
        };
        assert_eq!(
            (core("performance"), core("efficiency")),
            (Some(2.0), Some(3.0))
        );
        assert_eq!(value(&f, UP.name, &[g]), Some(1.0));
        assert_eq!(value(&f, THREADS.name, &[g]), Some(1.0));
        assert_eq!(
            value(&f, OLDEST_START_TIME_SECONDS.name, &[g]),
            Some(1_700_000_010.0)
        );
    }

    #[test]
    fn an_exit_never_takes_back_and_a_new_member_counts_only_what_ran_while_watched() {
        let mut a = Accountant::new(vec!["engine".into()], topology(), "sampled");
        let g = ("group", "engine");
        let user = |f: &[Family]| value(f, CPU_SECONDS_TOTAL.name, &[g, ("mode", "user")]);
        a.families(&reading(100.0, vec![process(7, 10.0, 50.0, &[])]));
        let f = a.families(&reading(101.0, vec![process(7, 10.0, 51.0, &[])]));
        assert_eq!(user(&f), Some(1.0));
        // The process exits: the group is down, its counters stay.
        let f = a.families(&reading(102.0, vec![]));
        assert_eq!(user(&f), Some(1.0));
        assert_eq!(value(&f, UP.name, &[g]), Some(0.0));
        assert_eq!(value(&f, PROCESSES.name, &[g]), Some(0.0));
        assert_eq!(value(&f, RESIDENT_MEMORY_BYTES.name, &[g]), None);
        // A restart at 102.5 counts all of its 0.4 s; an old process newly matched
        // (started at 5) is a baseline, not a 900 s jump; pid 7 reused with another
        // start time is a new process.
        let f = a.families(&reading(
            103.0,
            vec![process(7, 102.5, 0.4, &[]), process(9, 5.0, 900.0, &[])],
        ));
        assert!((user(&f).unwrap() - 1.4).abs() < 1e-9, "{:?}", user(&f));
        assert_eq!(value(&f, PROCESSES.name, &[g]), Some(2.0));
    }

    #[test]
    fn a_group_that_matches_nothing_is_down_not_absent() {
        let mut a = Accountant::new(vec!["gateway".into()], topology(), "measured");
        let f = a.families(&reading(1.0, vec![]));
        let g = ("group", "gateway");
        assert_eq!(value(&f, UP.name, &[g]), Some(0.0));
        assert_eq!(
            value(&f, CPU_SECONDS_TOTAL.name, &[g, ("mode", "system")]),
            Some(0.0)
        );
        // What the platform was never seen to count stays absent.
        assert_eq!(value(&f, ENERGY_JOULES_TOTAL.name, &[g]), None);
        assert_eq!(value(&f, CONTEXT_SWITCHES_TOTAL.name, &[g]), None);
    }

    #[test]
    fn measured_core_time_is_split_as_the_kernel_counted_it() {
        let mut a = Accountant::new(vec!["engine".into()], topology(), "measured");
        let unit = |p: f64, e: f64, j: f64| ProcessSample {
            pid: 3,
            units: vec![Unit {
                tid: 0,
                started: 1.0,
                counters: Counters {
                    core: Some(CoreTime::Measured {
                        performance: p,
                        efficiency: e,
                    }),
                    energy_joules: Some(j),
                    ..Counters::default()
                },
            }],
            ..ProcessSample::default()
        };
        a.families(&reading(10.0, vec![unit(5.0, 1.0, 100.0)]));
        let f = a.families(&reading(11.0, vec![unit(5.5, 1.25, 101.5)]));
        let g = ("group", "engine");
        let core = |t| {
            value(
                &f,
                CORE_TYPE_CPU_SECONDS_TOTAL.name,
                &[g, ("type", t), ("method", "measured")],
            )
        };
        assert_eq!(
            (core("performance"), core("efficiency")),
            (Some(0.5), Some(0.25))
        );
        assert_eq!(value(&f, ENERGY_JOULES_TOTAL.name, &[g]), Some(1.5));
        // A member whose fds or memory cannot be read makes the sum unknown.
        assert_eq!(value(&f, OPEN_FDS.name, &[g]), None);
    }

    #[test]
    fn selectors_need_every_regex_given() {
        let g = |name: Option<&str>, cmdline: Option<&str>| ProcessGroupConfig {
            name: "x".into(),
            process_name: name.map(String::from),
            cmdline: cmdline.map(String::from),
            pid_file: None,
        };
        let s = Selector::from_config(&g(Some("^engine$"), Some("--venue=XNAS"))).unwrap();
        assert!(s.matches("engine", Some("/opt/engine --venue=XNAS")));
        assert!(!s.matches("engine", Some("/opt/engine --venue=XLON")));
        assert!(
            !s.matches("engine", None),
            "an unreadable cmdline does not match"
        );
        assert!(!s.matches("engine2", Some("--venue=XNAS")));
        let s = Selector::from_config(&g(Some("gate"), None)).unwrap();
        assert!(s.matches("gateway", None) && !s.needs_cmdline());
    }

    #[test]
    fn bounded_keeps_the_lowest_pids_and_counts_all() {
        assert_eq!(bounded(vec![9, 3, 7, 3], 2), (3, vec![3, 7]));
    }
}
