//! `m4watch selfcheck`: m4watch's own readings beside the figures the system's tools
//! print, as a table of agree / differ / not comparable with both numbers, and a capture
//! bundle (the readings, the tools' output, on macOS `dump-raw` lines) a user can attach
//! to an issue and that becomes a fixture.
//!
//! The comparisons are platform-free and tested on Linux against the real captures in
//! `testdata/apple/`; only running the tools is per OS. Linux: `nproc --all`, `free -b`,
//! `/proc/meminfo`, `/proc/cpuinfo`. macOS: `sysctl hw`, `vm_stat`, `ioreg -rn cpus`,
//! `pmset -g therm`, `sntp` and, as root, `powermetrics -n 1`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::collect::hardware::apple::memory_breakdown;
use crate::collect::hardware::apple_tools::{
    machine_from_sysctl, parse_powermetrics_clusters, parse_sysctl, parse_vm_stat,
};

/// The outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Agree,
    Differ,
    NotComparable,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::Differ => "DIFFER",
            Verdict::NotComparable => "not comparable",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub what: String,
    pub ours: Option<f64>,
    pub theirs: Option<f64>,
    /// The tool and field the figure came from, or why there is none.
    pub source: String,
    pub verdict: Verdict,
}

/// Compares `ours` with `theirs`: agreement within `tolerance` (absolute, in the
/// figure's unit); not comparable when either is missing.
pub(crate) fn compare(
    what: &str,
    ours: Option<f64>,
    theirs: Option<f64>,
    tolerance: f64,
    source: &str,
) -> Row {
    let verdict = match (ours, theirs) {
        (Some(a), Some(b)) if (a - b).abs() <= tolerance => Verdict::Agree,
        (Some(_), Some(_)) => Verdict::Differ,
        _ => Verdict::NotComparable,
    };
    Row {
        what: what.to_string(),
        ours,
        theirs,
        source: source.to_string(),
        verdict,
    }
}

/// The table as text.
pub fn render(rows: &[Row]) -> String {
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v}"));
    let mut out = format!(
        "{:<34} {:>20} {:>20}  {:<15} {}\n",
        "figure", "m4watch", "system tool", "verdict", "source"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<34} {:>20} {:>20}  {:<15} {}",
            r.what,
            fmt(r.ours),
            fmt(r.theirs),
            r.verdict.as_str(),
            r.source
        );
    }
    out
}

/// m4watch's readings: the exposition text's samples, `name{labels}` to value.
#[derive(Debug, Default)]
pub(crate) struct Readings(BTreeMap<String, f64>);

impl Readings {
    pub(crate) fn parse(text: &str) -> Self {
        Readings(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        self.0.get(key).copied()
    }

    /// Samples of family `name` whose labels contain every `labels` pair.
    pub(crate) fn count(&self, name: &str, labels: &[&str]) -> usize {
        self.0
            .keys()
            .filter(|k| k.starts_with(&format!("{name}{{")))
            .filter(|k| labels.iter().all(|l| k.contains(l)))
            .count()
    }
}

#[cfg_attr(target_os = "macos", allow(dead_code))] // the Linux check uses it; tested everywhere
fn first_number(s: &str) -> Option<f64> {
    s.split_whitespace().find_map(|w| w.parse().ok())
}

/// A memory figure read twice (ours, then the tool's) moves between the reads: within
/// 2% of the total, or 64 MiB, they agree.
fn memory_tolerance(total: Option<f64>) -> f64 {
    total.map_or(64.0 * 1048576.0, |t| (t * 0.02).max(64.0 * 1048576.0))
}

/// Linux: the CPUs and the memory m4watch reads beside `nproc --all`, `free -b`,
/// `/proc/meminfo` and `/proc/cpuinfo`.
#[cfg_attr(target_os = "macos", allow(dead_code))] // the Linux check uses it; tested everywhere
pub(crate) fn linux_rows(
    r: &Readings,
    nproc: &str,
    free: &str,
    meminfo: &str,
    cpuinfo: &str,
) -> Vec<Row> {
    let cpus = Some(r.count("m4watch_cpu_info", &[]) as f64).filter(|n| *n > 0.0);
    let total = r.get("m4watch_memory_total_bytes");
    let available = r.get("m4watch_memory_available_bytes");
    let free_line = |label: &str| {
        free.lines().find(|l| l.starts_with(label)).map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
    };
    let mem = free_line("Mem:");
    let swap = free_line("Swap:");
    let kb = |key: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| first_number(&l[key.len()..]))
            .map(|v| v * 1024.0)
    };
    let processors = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let tol = memory_tolerance(total);
    vec![
        compare(
            "logical CPUs",
            cpus,
            first_number(nproc),
            0.0,
            "nproc --all",
        ),
        compare(
            "logical CPUs",
            cpus,
            Some(processors as f64).filter(|n| *n > 0.0),
            0.0,
            "/proc/cpuinfo processor lines",
        ),
        compare(
            "memory total (bytes)",
            total,
            mem.as_ref().and_then(|m| m.first().copied()),
            0.0,
            "free -b: Mem total",
        ),
        compare(
            "memory total (bytes)",
            total,
            kb("MemTotal:"),
            0.0,
            "/proc/meminfo MemTotal",
        ),
        compare(
            "memory available (bytes)",
            available,
            mem.as_ref().and_then(|m| m.get(5).copied()),
            tol,
            "free -b: Mem available",
        ),
        compare(
            "memory available (bytes)",
            available,
            kb("MemAvailable:"),
            tol,
            "/proc/meminfo MemAvailable",
        ),
        compare(
            "swap total (bytes)",
            r.get("m4watch_memory_swap_total_bytes"),
            swap.as_ref().and_then(|s| s.first().copied()),
            0.0,
            "free -b: Swap total",
        ),
    ]
}

/// macOS: `sysctl hw` beside m4watch's core counts and memory size.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS check uses it; tested here
pub(crate) fn sysctl_rows(r: &Readings, sysctl: &str) -> Vec<Row> {
    let machine = machine_from_sysctl(&parse_sysctl(sysctl)).ok();
    let level = |name: &str| {
        machine.as_ref().map(|m| {
            m.perflevels
                .iter()
                .filter(|l| l.name.as_deref() == Some(name))
                .map(|l| f64::from(l.logical_cpus))
                .sum::<f64>()
        })
    };
    let cores = |t: &str| {
        r.get(&format!("m4watch_cpu_cores{{type=\"{t}\"}}"))
            .or(Some(0.0))
            .filter(|_| r.count("m4watch_cpu_cores", &[]) > 0)
    };
    vec![
        compare(
            "performance CPUs",
            cores("performance"),
            level("Performance").zip(level("Super")).map(|(p, s)| p + s),
            0.0,
            "sysctl hw.perflevelN.logicalcpu (Performance + Super)",
        ),
        compare(
            "efficiency CPUs",
            cores("efficiency"),
            level("Efficiency"),
            0.0,
            "sysctl hw.perflevelN.logicalcpu (Efficiency)",
        ),
        compare(
            "memory total (bytes)",
            r.get("m4watch_memory_total_bytes"),
            machine.and_then(|m| m.memory_bytes).map(|b| b as f64),
            0.0,
            "sysctl hw.memsize",
        ),
    ]
}

/// macOS: `ioreg -rn cpus`' `p-core-count` / `e-core-count` beside m4watch's counts.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS check uses it; tested here
pub(crate) fn ioreg_rows(r: &Readings, ioreg: &str) -> Vec<Row> {
    let ours = |t: &str| r.get(&format!("m4watch_cpu_cores{{type=\"{t}\"}}"));
    let theirs =
        |k: &str| crate::collect::hardware::apple_tools::ioreg_u32(ioreg, k).map(f64::from);
    vec![
        compare(
            "performance CPUs",
            ours("performance"),
            theirs("p-core-count"),
            0.0,
            "ioreg -rn cpus: p-core-count",
        ),
        compare(
            "efficiency CPUs",
            ours("efficiency"),
            theirs("e-core-count"),
            0.0,
            "ioreg -rn cpus: e-core-count",
        ),
    ]
}

/// macOS: `vm_stat`, through Activity Monitor's definitions, beside m4watch's memory.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS check uses it; tested here
pub(crate) fn vm_stat_rows(r: &Readings, vm_stat: &str) -> Vec<Row> {
    let total = r.get("m4watch_memory_total_bytes");
    let m = parse_vm_stat(vm_stat)
        .ok()
        .map(|v| memory_breakdown(&v.counters, v.page_size, total.map(|t| t as u64), None));
    let tol = memory_tolerance(total);
    let pick = |f: fn(&crate::collect::hardware::Memory) -> Option<u64>| {
        m.as_ref().and_then(f).map(|b| b as f64)
    };
    let ours = |s: &str| match s {
        "used" | "available" => r.get(&format!("m4watch_memory_{s}_bytes")),
        _ => r.get(&format!("m4watch_memory_partition_bytes{{state=\"{s}\"}}")),
    };
    vec![
        compare(
            "memory used (bytes)",
            ours("used"),
            pick(|m| m.used),
            tol,
            "vm_stat: app + wired + compressor pages",
        ),
        compare(
            "memory available (bytes)",
            ours("available"),
            pick(|m| m.available),
            tol,
            "vm_stat: free + file-backed + purgeable pages",
        ),
        compare(
            "memory wired (bytes)",
            ours("wired"),
            pick(|m| m.wired),
            tol,
            "vm_stat: Pages wired down",
        ),
        compare(
            "memory compressed (bytes)",
            ours("compressed"),
            pick(|m| m.compressed),
            tol,
            "vm_stat: Pages occupied by compressor",
        ),
    ]
}

/// macOS, as root: `powermetrics`' clusters beside the clusters m4watch puts its CPUs
/// in (`m4watch_cpu_info{cluster}`), by size in listing order.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS check uses it; tested here
pub(crate) fn powermetrics_rows(r: &Readings, powermetrics: &str) -> Vec<Row> {
    let clusters = parse_powermetrics_clusters(powermetrics);
    if clusters.is_empty() {
        return vec![compare(
            "CPU clusters",
            None,
            None,
            0.0,
            "powermetrics: no processor section (not root?)",
        )];
    }
    clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // powermetrics names E, P0, P1; m4watch E0, P0, P1.
            let ours_name = if c.name.chars().any(|ch| ch.is_ascii_digit()) {
                c.name.clone()
            } else {
                format!("{}0", c.name)
            };
            let ours = r.count("m4watch_cpu_info", &[&format!("cluster=\"{ours_name}\"")]);
            let mut row = compare(
                &format!("CPUs in cluster {ours_name}"),
                Some(ours as f64).filter(|n| *n > 0.0),
                Some(c.cpus.len() as f64),
                0.0,
                &format!("powermetrics: {}-Cluster (cluster {i})", c.name),
            );
            // Which CPU numbers: the first and last of the cluster must be ours too.
            let numbered = c.cpus.iter().all(|cpu| {
                r.count(
                    "m4watch_cpu_info",
                    &[
                        &format!("cpu=\"{}\"", cpu.cpu),
                        &format!("cluster=\"{ours_name}\""),
                    ],
                ) == 1
            });
            if row.verdict == Verdict::Agree && !numbered {
                row.verdict = Verdict::Differ;
                row.source.push_str(" (same size, other CPU numbers)");
            }
            row
        })
        .collect()
}

/// `sntp`'s offset (`+0.001234 +/- 0.000321 host address`), seconds.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS check uses it; tested here
pub(crate) fn sntp_offset(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.contains("+/-"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

/// Why the self-check could not run or write its bundle.
#[derive(Debug, thiserror::Error)]
pub enum SelfcheckError {
    #[error("reading the hardware: {0}")]
    Hardware(String),
    #[error("writing the capture bundle {path}: {source}", path = path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs `cmd args`, bounded by `timeout` and 1 MiB of output; the output, or why none.
fn run_tool(cmd: &str, args: &[&str], timeout: Duration) -> Result<String, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut out).take(1 << 20).read_to_end(&mut buf);
        buf
    });
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd}: no answer within {timeout:?}"));
            }
        }
    }
    let buf = reader.join().map_err(|_| "reader panicked".to_string())?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// m4watch's hardware readings as exposition text: two collections 1 s apart (the
/// second has the utilisation deltas).
fn readings_text() -> Result<String, SelfcheckError> {
    use crate::collect::BlockingCollector;
    let cfg = crate::config::HardwareConfig::default();
    let mut c = crate::collect::hardware::HardwareCollector::from_config(&cfg)
        .map_err(|e| SelfcheckError::Hardware(e.to_string()))?;
    c.collect()
        .map_err(|e| SelfcheckError::Hardware(e.to_string()))?;
    std::thread::sleep(Duration::from_secs(1));
    let families = c
        .collect()
        .map_err(|e| SelfcheckError::Hardware(e.to_string()))?;
    Ok(crate::store::encode(&families))
}

/// Runs the check: reads the hardware, runs the tools, writes the bundle into `dir`
/// (created) and returns the rows.
pub fn run(dir: &Path) -> Result<Vec<Row>, SelfcheckError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| SelfcheckError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| SelfcheckError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let text = readings_text()?;
    write("readings.prom", &text)?;
    let r = Readings::parse(&text);
    let t = Duration::from_secs(15);
    let tool = |name: &str, cmd: &str, args: &[&str]| -> Result<String, SelfcheckError> {
        let out = run_tool(cmd, args, t).unwrap_or_else(|e| format!("# not run: {e}\n"));
        write(&format!("{name}.txt"), &out)?;
        Ok(out)
    };
    let rows;
    #[cfg(target_os = "macos")]
    {
        let sysctl = tool("sysctl-hw", "sysctl", &["hw", "machdep.cpu.brand_string"])?;
        let vm_stat = tool("vm_stat", "vm_stat", &[])?;
        let ioreg = tool("ioreg-cpus", "ioreg", &["-rn", "cpus"])?;
        tool("pmset-therm", "pmset", &["-g", "therm"])?;
        let sntp = tool("sntp", "sntp", &["time.apple.com"])?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let pm = if root {
            tool(
                "powermetrics",
                "powermetrics",
                &["-n", "1", "-i", "1000", "--samplers", "cpu_power,gpu_power"],
            )?
        } else {
            String::new()
        };
        let mut v = sysctl_rows(&r, &sysctl);
        v.extend(ioreg_rows(&r, &ioreg));
        v.extend(vm_stat_rows(&r, &vm_stat));
        if root {
            v.extend(powermetrics_rows(&r, &pm));
        } else {
            v.push(compare(
                "CPU clusters",
                None,
                None,
                0.0,
                "powermetrics needs root: run with sudo",
            ));
        }
        let ours = crate::collect::host::sntp::query("time.apple.com", Duration::from_secs(2)).ok();
        v.push(compare(
            "clock offset (s)",
            ours.map(|s| s.offset_seconds),
            sntp_offset(&sntp),
            0.005,
            "sntp time.apple.com (m4watch's SNTP probe of the same server)",
        ));
        let mut dump = Vec::new();
        if crate::collect::hardware::dump_raw(3, Duration::from_secs(1), &mut dump).is_ok() {
            write("dump-raw.jsonl", &String::from_utf8_lossy(&dump))?;
        }
        rows = v;
    }
    #[cfg(not(target_os = "macos"))]
    {
        let nproc = tool("nproc", "nproc", &["--all"])?;
        let free = tool("free", "free", &["-b"])?;
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let (meminfo, cpuinfo) = (read("/proc/meminfo"), read("/proc/cpuinfo"));
        write("proc-meminfo.txt", &meminfo)?;
        rows = linux_rows(&r, &nproc, &free, &meminfo, &cpuinfo);
    }
    write("table.txt", &render(&rows))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSCTL: &str = include_str!("../testdata/apple/sysctl-hw-m4pro-archspec201.txt");
    const VM_STAT: &str = include_str!("../testdata/apple/vm_stat-applesilicon-hmcl4876.txt");
    const POWERMETRICS: &str =
        include_str!("../testdata/apple/powermetrics-m4max-mac16-6-powermetricsgo.txt");

    #[test]
    fn verdicts_and_table() {
        let rows = [
            compare("a", Some(1.0), Some(1.0), 0.0, "x"),
            compare("b", Some(1.0), Some(2.0), 0.5, "y"),
            compare("c", None, Some(2.0), 0.5, "z"),
        ];
        let v: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
        assert_eq!(v, [Verdict::Agree, Verdict::Differ, Verdict::NotComparable]);
        let t = render(&rows);
        assert!(t.lines().nth(2).unwrap().contains("DIFFER"), "{t}");
        assert!(t.lines().nth(3).unwrap().contains(" - "), "{t}");
    }

    /// The real M4 Pro `sysctl hw` against readings of that machine (8 P + 4 E, 24 GiB),
    /// and against readings of a machine counted wrong.
    #[test]
    fn sysctl_rows_on_a_real_capture() {
        let ok = Readings::parse(
            "m4watch_cpu_cores{type=\"performance\"} 8\nm4watch_cpu_cores{type=\"efficiency\"} 4\nm4watch_memory_total_bytes 25769803776\n",
        );
        let rows = sysctl_rows(&ok, SYSCTL);
        assert!(
            rows.iter().all(|r| r.verdict == Verdict::Agree),
            "{}",
            render(&rows)
        );
        let wrong = Readings::parse(
            "m4watch_cpu_cores{type=\"performance\"} 12\nm4watch_memory_total_bytes 25769803776\n",
        );
        let rows = sysctl_rows(&wrong, SYSCTL);
        assert_eq!(rows[0].verdict, Verdict::Differ);
        assert_eq!((rows[1].ours, rows[1].theirs), (Some(0.0), Some(4.0)));
        assert_eq!(rows[1].verdict, Verdict::Differ);
    }

    /// The real `vm_stat`: readings that add up as Activity Monitor's agree; the old
    /// available (free + inactive + speculative) differs by 2.17 GB.
    #[test]
    fn vm_stat_rows_on_a_real_capture() {
        let p = 16384.0;
        let good = format!(
            "m4watch_memory_used_bytes {}\nm4watch_memory_available_bytes {}\n",
            1_202_469.0 * p,
            316_091.0 * p
        );
        let rows = vm_stat_rows(&Readings::parse(&good), VM_STAT);
        assert_eq!(rows[0].verdict, Verdict::Agree, "{}", render(&rows));
        assert_eq!(rows[1].verdict, Verdict::Agree);
        assert_eq!(rows[2].verdict, Verdict::NotComparable, "no wired reading");
        let old = format!(
            "m4watch_memory_available_bytes {}\n",
            (3857.0 + 443_760.0 + 1075.0) * p
        );
        let rows = vm_stat_rows(&Readings::parse(&old), VM_STAT);
        assert_eq!(rows[1].verdict, Verdict::Differ, "{}", render(&rows));
    }

    /// The real 14-core M4 Max `powermetrics`: m4watch's clusters E0 (cpu 0-3), P0 (4-8)
    /// and P1 (9-13) agree; a 16-core layout put on it does not.
    #[test]
    fn powermetrics_rows_on_a_real_capture() {
        let info = |layout: &[(&str, std::ops::Range<u32>)]| {
            let mut t = String::new();
            for (cl, cpus) in layout {
                for c in cpus.clone() {
                    t.push_str(&format!(
                        "m4watch_cpu_info{{cpu=\"{c}\",type=\"x\",cluster=\"{cl}\"}} 1\n"
                    ));
                }
            }
            Readings::parse(&t)
        };
        let right = info(&[("E0", 0..4), ("P0", 4..9), ("P1", 9..14)]);
        let rows = powermetrics_rows(&right, POWERMETRICS);
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter().all(|r| r.verdict == Verdict::Agree),
            "{}",
            render(&rows)
        );
        let sixteen = info(&[("E0", 0..4), ("P0", 4..10), ("P1", 10..16)]);
        let rows = powermetrics_rows(&sixteen, POWERMETRICS);
        assert_eq!(rows[1].verdict, Verdict::Differ, "{}", render(&rows));
    }

    /// Hand-written in the shape `free -b` and `/proc` print (the live run in
    /// scripts/test.sh compares the real ones).
    #[test]
    fn linux_rows_compare_free_and_proc() {
        let r = Readings::parse(
            "m4watch_cpu_info{cpu=\"0\",type=\"performance\",cluster=\"P\"} 1\nm4watch_cpu_info{cpu=\"1\",type=\"performance\",cluster=\"P\"} 1\nm4watch_memory_total_bytes 8388608000\nm4watch_memory_available_bytes 4194304000\nm4watch_memory_swap_total_bytes 0\n",
        );
        let free = "               total        used        free      shared  buff/cache   available\nMem:      8388608000   1000000000  3000000000    10000000  4000000000  4200000000\nSwap:              0           0           0\n";
        let meminfo = "MemTotal:        8192000 kB\nMemAvailable:    4100000 kB\n";
        let rows = linux_rows(&r, "2\n", free, meminfo, "processor\t: 0\nprocessor\t: 1\n");
        assert!(
            rows.iter().all(|r| r.verdict == Verdict::Agree),
            "{}",
            render(&rows)
        );
        let rows = linux_rows(&r, "4\n", free, meminfo, "");
        assert_eq!(rows[0].verdict, Verdict::Differ);
        assert_eq!(rows[1].verdict, Verdict::NotComparable);
    }

    /// The real A18 Pro `ioreg -rn cpus` (2 P + 4 E).
    #[test]
    fn ioreg_rows_on_a_real_capture() {
        let ioreg =
            include_str!("../testdata/apple/ioreg-pmgr-voltage-states-a18pro-stats3625.txt");
        let r = Readings::parse(
            "m4watch_cpu_cores{type=\"performance\"} 2\nm4watch_cpu_cores{type=\"efficiency\"} 4\n",
        );
        let rows = ioreg_rows(&r, ioreg);
        assert!(
            rows.iter().all(|r| r.verdict == Verdict::Agree),
            "{}",
            render(&rows)
        );
    }

    #[test]
    fn sntp_output_offset() {
        // Hand-written in the shape macOS's sntp prints (no real capture here yet).
        assert_eq!(
            sntp_offset("+0.004335 +/- 0.022156 time.apple.com 17.253.4.253\n"),
            Some(0.004335)
        );
        assert_eq!(sntp_offset("sntp: no reply\n"), None);
    }
}
