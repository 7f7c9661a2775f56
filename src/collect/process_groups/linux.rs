//! Linux: each process's `/proc/PID/{comm,cmdline,stat,status,fd}` and each of its
//! threads' `/proc/PID/task/TID/{stat,schedstat,status}`.
//!
//! A process's own `schedstat` and `status` context switches are its main thread's
//! alone, so delays and switches are summed over the threads; its `stat` CPU times
//! include threads that have exited, so CPU by mode comes from there. A process or
//! thread that exits while it is read is skipped, never an error.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{
    CoreTime, Counters, MAX_THREADS, ProcessSample, ProcessTable, Reading, Selector, Unit, groups,
};

/// The fields of `/proc/PID/stat` (or a thread's) that m4watch reads; times in clock
/// ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub comm: String,
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Ticks after boot the task started.
    pub starttime: u64,
    /// Resident pages.
    pub rss_pages: u64,
    /// The CPU it last ran on (field 39, since Linux 2.2.8).
    pub processor: Option<u32>,
}

/// Parses a `stat` line. The name sits in parentheses and may itself hold spaces and
/// `)`, so the fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // rest[0] is field 3 (state).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        comm,
        utime: field(14)?,
        stime: field(15)?,
        num_threads: field(20)?,
        starttime: field(22)?,
        rss_pages: field(24)?,
        processor: field(39).and_then(|c| u32::try_from(c).ok()),
    })
}

/// The fields of `/proc/PID/status` that m4watch reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub resident_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
}

pub(crate) fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut words = value.split_whitespace();
        let n = words.next().and_then(|w| w.parse::<u64>().ok());
        match key {
            "VmRSS" => s.resident_bytes = n.map(|kb| kb * 1024),
            "Threads" => s.threads = n,
            "voluntary_ctxt_switches" => s.voluntary_switches = n,
            "nonvoluntary_ctxt_switches" => s.involuntary_switches = n,
            _ => {}
        }
    }
    s
}

/// The run delay of a `schedstat` line (`on-cpu-ns run-delay-ns timeslices`), in
/// nanoseconds.
pub(crate) fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A `cmdline` file's arguments joined by spaces.
pub(crate) fn parse_cmdline(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.trim_end_matches('\0').replace('\0', " ")
}

/// `btime` of `/proc/stat`: the Unix time of boot.
pub(crate) fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Seconds since boot, the first figure of `/proc/uptime`.
pub(crate) fn parse_uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Whether an error means the process or thread is gone (or was never there).
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// `Ok(None)` when the process is gone.
fn read_gone(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Numeric entries of a directory (pids of `/proc`, tids of `task`), unsorted.
fn numeric_entries(dir: &Path) -> io::Result<Vec<u32>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Reads process groups from a procfs tree.
pub(crate) struct Source {
    procfs: PathBuf,
    clk_tck: f64,
    page_size: u64,
    /// Boot time, read once: it only dates start times.
    btime: std::sync::OnceLock<Option<u64>>,
}

impl Source {
    pub(crate) fn new(procfs: &Path) -> Self {
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let (tck, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Source::with_units(
            procfs,
            if tck > 0 { tck as f64 } else { 100.0 },
            if page > 0 { page as u64 } else { 4096 },
        )
    }

    /// A source with given `USER_HZ` and page size (fixture trees carry their own).
    pub(crate) fn with_units(procfs: &Path, clk_tck: f64, page_size: u64) -> Self {
        Source {
            procfs: procfs.to_path_buf(),
            clk_tck,
            page_size,
            btime: std::sync::OnceLock::new(),
        }
    }

    /// One reading of every group, in `selectors` order.
    pub(crate) fn read(&self, selectors: &[Selector], max: usize) -> io::Result<Reading> {
        let now = fs::read_to_string(self.procfs.join("uptime"))
            .ok()
            .and_then(|t| parse_uptime(&t))
            .ok_or_else(|| io::Error::other("no uptime in the procfs root"))?;
        // Without a boot time, start times are absent.
        let btime = *self.btime.get_or_init(|| {
            fs::read_to_string(self.procfs.join("stat"))
                .ok()
                .and_then(|t| parse_btime(&t))
        });
        let groups = groups(
            &mut Table {
                source: self,
                btime,
            },
            selectors,
            max,
        )?;
        Ok(Reading { now, groups })
    }

    /// One process, or `None` if it is gone.
    fn read_process(&self, pid: u32, btime: Option<u64>) -> io::Result<Option<ProcessSample>> {
        let dir = self.procfs.join(pid.to_string());
        let Some(stat) = read_gone(&dir.join("stat"))? else {
            return Ok(None);
        };
        let stat = parse_stat(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unparsable {}/stat", dir.display()),
            )
        })?;
        let status = read_gone(&dir.join("status"))?
            .map(|t| parse_status(&t))
            .unwrap_or_default();
        let started = stat.starttime as f64 / self.clk_tck;
        let open_fds = match fs::read_dir(dir.join("fd")) {
            Ok(entries) => Some(entries.count() as u64),
            Err(_) => None,
        };
        let mut units = vec![Unit {
            tid: 0,
            started,
            counters: Counters {
                user_seconds: Some(stat.utime as f64 / self.clk_tck),
                system_seconds: Some(stat.stime as f64 / self.clk_tck),
                ..Counters::default()
            },
        }];
        let task = dir.join("task");
        let mut tids = match numeric_entries(&task) {
            Ok(t) => t,
            Err(e) if gone(&e) => return Ok(None),
            Err(_) => Vec::new(),
        };
        tids.sort_unstable();
        tids.truncate(MAX_THREADS);
        for tid in tids {
            if let Some(u) = self.read_thread(&task.join(tid.to_string()), tid) {
                units.push(u);
            }
        }
        Ok(Some(ProcessSample {
            pid,
            start_time_seconds: btime.map(|b| b as f64 + started),
            resident_bytes: status
                .resident_bytes
                .or(Some(stat.rss_pages * self.page_size)),
            threads: status.threads.or(Some(stat.num_threads)),
            open_fds,
            units,
        }))
    }

    /// One thread, or `None` if it is gone.
    fn read_thread(&self, dir: &Path, tid: u32) -> Option<Unit> {
        let stat = parse_stat(&fs::read_to_string(dir.join("stat")).ok()?)?;
        let delay = fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|t| parse_schedstat(&t));
        let status = fs::read_to_string(dir.join("status"))
            .map(|t| parse_status(&t))
            .unwrap_or_default();
        Some(Unit {
            tid,
            started: stat.starttime as f64 / self.clk_tck,
            counters: Counters {
                core: stat.processor.map(|cpu| CoreTime::OnCpu {
                    seconds: (stat.utime + stat.stime) as f64 / self.clk_tck,
                    cpu,
                }),
                scheduling_delay_seconds: delay.map(|ns| ns as f64 / 1e9),
                voluntary_switches: status.voluntary_switches.map(|v| v as f64),
                involuntary_switches: status.involuntary_switches.map(|v| v as f64),
                ..Counters::default()
            },
        })
    }
}

/// A procfs tree as [`ProcessTable`].
struct Table<'a> {
    source: &'a Source,
    btime: Option<u64>,
}

impl Table<'_> {
    fn dir(&self, pid: u32) -> PathBuf {
        self.source.procfs.join(pid.to_string())
    }
}

impl ProcessTable for Table<'_> {
    type Error = io::Error;

    fn pids(&mut self) -> io::Result<Vec<u32>> {
        numeric_entries(&self.source.procfs)
    }

    fn name(&mut self, pid: u32) -> Option<String> {
        let comm = fs::read_to_string(self.dir(pid).join("comm")).ok()?;
        Some(comm.trim_end_matches('\n').to_string())
    }

    fn cmdline(&mut self, pid: u32) -> Option<String> {
        fs::read(self.dir(pid).join("cmdline"))
            .ok()
            .map(|b| parse_cmdline(&b))
    }

    fn exists(&mut self, pid: u32) -> bool {
        self.dir(pid).join("stat").exists()
    }

    fn read(&mut self, pid: u32) -> io::Result<Option<ProcessSample>> {
        self.source.read_process(pid, self.btime)
    }
}

/// The pids of every process a fixture or live tree lists, for tests.
#[cfg(test)]
fn pids(procfs: &Path) -> std::collections::BTreeSet<u32> {
    numeric_entries(procfs).unwrap().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcessGroupConfig;

    fn fixture(kernel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/linux/processes")
            .join(kernel)
    }

    fn selector(name: Option<&str>, cmdline: Option<&str>, pid_file: Option<PathBuf>) -> Selector {
        Selector::from_config(&ProcessGroupConfig {
            name: "g".into(),
            process_name: name.map(String::from),
            cmdline: cmdline.map(String::from),
            pid_file,
        })
        .unwrap()
    }

    #[test]
    fn stat_is_parsed_from_the_last_parenthesis() {
        let s = parse_stat(
            "4242 (md (feed) 1) S 1 4242 4242 0 -1 4194560 120 0 0 0 1500 250 0 0 20 0 3 0 98765 \
             104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 5 0 0 0 0 0",
        )
        .unwrap();
        assert_eq!(s.comm, "md (feed) 1");
        assert_eq!(
            (
                s.utime,
                s.stime,
                s.num_threads,
                s.starttime,
                s.rss_pages,
                s.processor
            ),
            (1500, 250, 3, 98765, 2560, Some(5))
        );
        // A 2.6-era line that stops before `processor` still parses.
        let old = parse_stat("7 (a) S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 50 0 9").unwrap();
        assert_eq!((old.utime, old.processor), (3, None));
        assert_eq!(parse_stat("7 (a) S 1"), None);
    }

    #[test]
    fn small_files() {
        assert_eq!(
            parse_schedstat("203311830 15993069 864\n"),
            Some(15_993_069)
        );
        assert_eq!(
            parse_cmdline(b"/opt/engine\0--venue=XNAS\0"),
            "/opt/engine --venue=XNAS"
        );
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_uptime("29085.17 11252.10\n"), Some(29085.17));
    }

    /// Both kernels' trees hold the same processes: `md feed (1)` (pid 4242, three
    /// threads, on CPUs 2, 3 and 3), `risk` (pid 5100, one thread), `bash`.
    fn read_fixture(kernel: &str) -> Reading {
        let root = fixture(kernel);
        assert_eq!(pids(&root), [4242, 5100, 6000].into(), "{kernel}");
        let s = Source::with_units(&root, 100.0, 4096);
        let pid_file = root.join("risk.pid");
        s.read(
            &[
                selector(Some("^md "), Some("--venue=XNAS"), None),
                selector(None, None, Some(pid_file)),
                selector(Some("^absent$"), None, None),
                selector(None, None, Some(root.join("missing.pid"))),
            ],
            64,
        )
        .unwrap()
    }

    /// A tree captured on Linux 6.18 (Firecracker guest, `USER_HZ` 100): a Python
    /// process whose two extra threads each spun on their own CPU (0 and 1) before the
    /// copy; `/proc/stat` trimmed to its `btime` line, descriptors as empty files.
    #[test]
    fn a_tree_captured_on_6_18_reads_as_the_kernel_wrote_it() {
        let root = fixture("6.18-captured");
        let r = Source::with_units(&root, 100.0, 4096)
            .read(&[selector(Some("^python3$"), None, None)], 64)
            .unwrap();
        assert_eq!(r.now, 32162.49);
        let p = &r.groups[0].processes[0];
        assert_eq!(p.pid, 25054);
        assert_eq!((p.threads, p.open_fds), (Some(3), Some(6)));
        assert_eq!(p.resident_bytes, Some(10_368 * 1024));
        assert_eq!(
            p.start_time_seconds,
            Some(1_795_641_152.0 + 3_216_160.0 / 100.0)
        );
        let u = &p.units[0].counters;
        assert_eq!((u.user_seconds, u.system_seconds), (Some(0.2), Some(0.01)));
        let threads: Vec<_> = p.units[1..]
            .iter()
            .map(|u| (u.tid, u.counters.core, u.counters.scheduling_delay_seconds))
            .collect();
        let on = |seconds, cpu| Some(CoreTime::OnCpu { seconds, cpu });
        assert_eq!(
            threads,
            vec![
                (25054, on(0.02, 1), Some(0.01711962)),
                (25055, on(0.08, 0), Some(0.079729632)),
                (25056, on(0.09, 1), Some(0.075039837)),
            ]
        );
        let switches = |f: fn(&Counters) -> Option<f64>| -> f64 {
            p.units[1..].iter().map(|u| f(&u.counters).unwrap()).sum()
        };
        assert_eq!(
            (
                switches(|c| c.voluntary_switches),
                switches(|c| c.involuntary_switches)
            ),
            (142.0, 43.0)
        );
    }

    #[test]
    fn fixture_trees_of_two_kernels_read_alike() {
        for kernel in ["5.4", "6.8"] {
            let r = read_fixture(kernel);
            assert_eq!(r.now, 2000.5, "{kernel}");
            let md = &r.groups[0];
            assert_eq!(md.matched, 1, "{kernel}");
            let p = &md.processes[0];
            assert_eq!(p.pid, 4242);
            assert_eq!(p.start_time_seconds, Some(1_700_000_000.0 + 987.65));
            assert_eq!(p.resident_bytes, Some(10_240 * 1024), "{kernel}: VmRSS");
            assert_eq!((p.threads, p.open_fds), (Some(3), Some(3)), "{kernel}");
            let u = &p.units[0].counters;
            assert_eq!((u.user_seconds, u.system_seconds), (Some(15.0), Some(2.5)));
            let threads: Vec<_> = p.units[1..]
                .iter()
                .map(|u| (u.tid, u.counters.core, u.counters.scheduling_delay_seconds))
                .collect();
            assert_eq!(
                threads,
                vec![
                    (
                        4242,
                        Some(CoreTime::OnCpu {
                            seconds: 10.0,
                            cpu: 2
                        }),
                        Some(0.5)
                    ),
                    (
                        4243,
                        Some(CoreTime::OnCpu {
                            seconds: 5.0,
                            cpu: 3
                        }),
                        Some(0.25)
                    ),
                    (
                        4244,
                        Some(CoreTime::OnCpu {
                            seconds: 2.5,
                            cpu: 3
                        }),
                        Some(0.125)
                    ),
                ],
                "{kernel}"
            );
            let switches: f64 = p.units[1..]
                .iter()
                .map(|u| u.counters.voluntary_switches.unwrap())
                .sum();
            assert_eq!(switches, 600.0, "{kernel}: summed over threads");
            assert_eq!(r.groups[1].processes[0].pid, 5100, "{kernel}: pid file");
            assert_eq!((r.groups[2].matched, r.groups[3].matched), (0, 0));
        }
    }
}
