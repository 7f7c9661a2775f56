//! The process group collector against this machine's kernel: two busy processes, each
//! pinned with `taskset` to one CPU, in two groups (one by command line, one by pid
//! file), with a topology that makes CPU 0 a performance core and CPU 1 an efficiency
//! core. Each group's CPU seconds must grow as the kernel's own count of its process
//! did, all of it on its CPU's core type; a group matching nothing is up 0; a member
//! that exits leaves the counters where they were.

#![cfg(target_os = "linux")]

use std::process::{Child, Command};
use std::time::Duration;

use crate::collect::BlockingCollector;
use crate::collect::hardware::{CoreType, CpuDesc, Topology};
use crate::collect::process_groups::{
    CORE_TYPE_CPU_SECONDS_TOTAL, CPU_SECONDS_TOTAL, OLDEST_START_TIME_SECONDS, OPEN_FDS,
    ProcessGroupCollector, RESIDENT_MEMORY_BYTES, SCHEDULING_DELAY_SECONDS_TOTAL, THREADS, UP,
    value,
};
use crate::config::{ProcessGroupConfig, ProcessesConfig};
use crate::store::Family;

fn cpu_seconds(fams: &[Family], group: &str) -> f64 {
    ["user", "system"]
        .iter()
        .map(|m| {
            value(
                fams,
                CPU_SECONDS_TOTAL.name,
                &[("group", group), ("mode", m)],
            )
            .unwrap()
        })
        .sum()
}

fn core_seconds(fams: &[Family], group: &str, t: CoreType) -> f64 {
    value(
        fams,
        CORE_TYPE_CPU_SECONDS_TOTAL.name,
        &[
            ("group", group),
            ("type", t.as_str()),
            ("method", "sampled"),
        ],
    )
    .unwrap()
}

/// utime + stime of `pid` in seconds, read here without the collector's parser.
fn kernel_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / hz
}

/// A shell spinning on `cpu`, its command line marked with `tag`.
struct Busy(Child);

impl Busy {
    fn start(cpu: u32, tag: &str) -> Busy {
        let taskset = std::path::Path::new("/usr/bin/taskset");
        assert!(
            taskset.exists(),
            "taskset (util-linux) is needed to pin the busy processes"
        );
        Busy(
            Command::new(taskset)
                .args([
                    "-c",
                    &cpu.to_string(),
                    "sh",
                    "-c",
                    "while :; do :; done",
                    tag,
                ])
                .spawn()
                .expect("spawn taskset"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pinned_processes_are_counted_as_the_kernel_counts_them_on_their_cpus_core_type() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(
        cpus >= 2,
        "the test pins to CPUs 0 and 1; this machine has {cpus}"
    );
    let tag = format!("m4watch-busy-{}", std::process::id());
    let on_e = Busy::start(1, &format!("{tag}-e"));
    let on_p = Busy::start(0, &format!("{tag}-p"));
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("p.pid");
    std::fs::write(&pid_file, format!("{}\n", on_p.pid())).unwrap();
    // Let taskset exec the shell, so the command line is the shell's.
    std::thread::sleep(Duration::from_millis(300));

    let group = |name: &str, cmdline: Option<String>, pid_file: Option<_>| ProcessGroupConfig {
        name: name.into(),
        process_name: None,
        cmdline,
        pid_file,
    };
    let config = ProcessesConfig {
        groups: vec![
            group("on-e", Some(format!("{tag}-e$")), None),
            group("on-p", None, Some(pid_file)),
            group("absent", Some(format!("{tag}-nothing")), None),
        ],
        ..ProcessesConfig::default()
    };
    let desc = |core_type| CpuDesc {
        core_type,
        cluster: "0".into(),
    };
    let mut topology = Topology {
        cpus: (0..cpus as u32)
            .map(|c| (c, desc(CoreType::Performance)))
            .collect(),
        method: "config",
        tiers: vec![],
    };
    topology.cpus.insert(1, desc(CoreType::Efficiency));
    let mut collector = ProcessGroupCollector::new(&config, topology).unwrap();

    let (e0, p0) = (
        kernel_cpu_seconds(on_e.pid()),
        kernel_cpu_seconds(on_p.pid()),
    );
    let before = collector.collect().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (e1, p1) = (
        kernel_cpu_seconds(on_e.pid()),
        kernel_cpu_seconds(on_p.pid()),
    );
    let after = collector.collect().unwrap();

    for (g, k0, k1, on, off) in [
        ("on-e", e0, e1, CoreType::Efficiency, CoreType::Performance),
        ("on-p", p0, p1, CoreType::Performance, CoreType::Efficiency),
    ] {
        assert_eq!(value(&after, UP.name, &[("group", g)]), Some(1.0), "{g}");
        let counted = cpu_seconds(&after, g) - cpu_seconds(&before, g);
        let kernel = k1 - k0;
        // Other builds may share this machine's CPUs: a tenth of a second is enough
        // to show where the time went.
        assert!(
            kernel > 0.1,
            "{g}: the busy process barely ran ({kernel} s)"
        );
        // The collector read the kernel's counter just after the test did: a few ticks
        // apart at most.
        assert!(
            (counted - kernel).abs() < 0.1,
            "{g}: counted {counted} s, the kernel {kernel} s"
        );
        let on_type = core_seconds(&after, g, on) - core_seconds(&before, g, on);
        let off_type = core_seconds(&after, g, off) - core_seconds(&before, g, off);
        assert!(
            (on_type - counted).abs() < 0.1 && off_type == 0.0,
            "{g}: {counted} s on its pinned CPU's {on:?} type, got {on_type} s there and {off_type} s on {off:?}"
        );
        assert_eq!(value(&after, THREADS.name, &[("group", g)]), Some(1.0));
        assert!(value(&after, OPEN_FDS.name, &[("group", g)]).unwrap() >= 1.0);
        assert!(value(&after, RESIDENT_MEMORY_BYTES.name, &[("group", g)]).unwrap() > 0.0);
        assert!(
            value(&after, SCHEDULING_DELAY_SECONDS_TOTAL.name, &[("group", g)]).is_some(),
            "{g}: this kernel keeps schedstat"
        );
        let started = value(&after, OLDEST_START_TIME_SECONDS.name, &[("group", g)]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (now - 60.0..=now + 2.0).contains(&started),
            "{g}: started at {started}, now {now}"
        );
    }
    assert_eq!(value(&after, UP.name, &[("group", "absent")]), Some(0.0));

    // The pinned-to-E process exits: its group is down, its counters stay.
    let counted = cpu_seconds(&after, "on-e");
    drop(on_e);
    let gone = collector.collect().unwrap();
    assert_eq!(value(&gone, UP.name, &[("group", "on-e")]), Some(0.0));
    assert_eq!(cpu_seconds(&gone, "on-e"), counted);
    drop(on_p);
}
