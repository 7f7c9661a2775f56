//! Disks and filesystems: each block device's I/O counters, and each mounted
//! filesystem's size, free space and inodes.
//!
//! Linux reads `/proc/diskstats` and `/proc/self/mountinfo` ([`super::linux`], pure
//! parsers tested on fixture trees of three kernels) and asks `statvfs` per mount; macOS
//! reads each whole disk's `IOBlockStorageDriver` "Statistics" from the IORegistry and
//! the mounts with `getfsstat(MNT_NOWAIT)` (decoded by [`super::darwin`]).
//!
//! `statvfs` on a mount whose server is gone blocks without end, so on Linux each mount
//! is asked on its own thread and given `host.filesystems.stat_timeout` ([`stat_all`]);
//! one that does not answer is reported as an error and not asked again until its
//! stuck call returns. macOS's `getfsstat(MNT_NOWAIT)` answers from the kernel's cache
//! and never blocks on the network.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::config::Pattern;
use crate::model::{Kind, MetricDef, def};
use crate::store::Family;

pub(crate) const DISK_READS_COMPLETED_TOTAL: MetricDef = def(
    "m4watch_disk_reads_completed_total",
    Kind::Counter,
    &["device"],
    "Reads a block device completed.",
);

pub(crate) const DISK_WRITES_COMPLETED_TOTAL: MetricDef = def(
    "m4watch_disk_writes_completed_total",
    Kind::Counter,
    &["device"],
    "Writes a block device completed.",
);

pub(crate) const DISK_READ_BYTES_TOTAL: MetricDef = def(
    "m4watch_disk_read_bytes_total",
    Kind::Counter,
    &["device"],
    "Bytes read from a block device.",
);

pub(crate) const DISK_WRITTEN_BYTES_TOTAL: MetricDef = def(
    "m4watch_disk_written_bytes_total",
    Kind::Counter,
    &["device"],
    "Bytes written to a block device.",
);

pub(crate) const DISK_READ_TIME_SECONDS_TOTAL: MetricDef = def(
    "m4watch_disk_read_time_seconds_total",
    Kind::Counter,
    &["device"],
    "Time the reads of a block device took, summed over reads (overlapping reads each count).",
);

pub(crate) const DISK_WRITE_TIME_SECONDS_TOTAL: MetricDef = def(
    "m4watch_disk_write_time_seconds_total",
    Kind::Counter,
    &["device"],
    "Time the writes of a block device took, summed over writes (overlapping writes each count).",
);

pub(crate) const DISK_IO_TIME_SECONDS_TOTAL: MetricDef = def(
    "m4watch_disk_io_time_seconds_total",
    Kind::Counter,
    &["device"],
    "Time a block device had I/O in flight (its rate is the share of time busy); Linux only.",
);

pub(crate) const DISK_DISCARDS_COMPLETED_TOTAL: MetricDef = def(
    "m4watch_disk_discards_completed_total",
    Kind::Counter,
    &["device"],
    "Discards (TRIM) a block device completed; Linux 4.18 and later.",
);

pub(crate) const DISK_IO_TIME_WEIGHTED_SECONDS_TOTAL: MetricDef = def(
    "m4watch_disk_io_time_weighted_seconds_total",
    Kind::Counter,
    &["device"],
    "Time requests to a block device spent queued or in service, summed over the requests, in seconds (its rate is the average queue length); absent on macOS.",
);

pub(crate) const DISK_FLUSH_REQUESTS_TOTAL: MetricDef = def(
    "m4watch_disk_flush_requests_total",
    Kind::Counter,
    &["device"],
    "Cache flushes a block device completed (each fsync that reaches the device is one); Linux 5.5 and later.",
);

pub(crate) const FILESYSTEM_SIZE_BYTES: MetricDef = def(
    "m4watch_filesystem_size_bytes",
    Kind::Gauge,
    &["device", "mountpoint", "fstype"],
    "Size of a mounted filesystem.",
);

pub(crate) const FILESYSTEM_FREE_BYTES: MetricDef = def(
    "m4watch_filesystem_free_bytes",
    Kind::Gauge,
    &["device", "mountpoint", "fstype"],
    "Free space of a mounted filesystem, the blocks reserved for root included.",
);

pub(crate) const FILESYSTEM_AVAIL_BYTES: MetricDef = def(
    "m4watch_filesystem_avail_bytes",
    Kind::Gauge,
    &["device", "mountpoint", "fstype"],
    "Space of a mounted filesystem that an unprivileged process can still write.",
);

pub(crate) const FILESYSTEM_FILES: MetricDef = def(
    "m4watch_filesystem_files",
    Kind::Gauge,
    &["device", "mountpoint", "fstype"],
    "Inodes (file slots) of a mounted filesystem; 0 where the filesystem has no fixed number.",
);

pub(crate) const FILESYSTEM_FILES_FREE: MetricDef = def(
    "m4watch_filesystem_files_free",
    Kind::Gauge,
    &["device", "mountpoint", "fstype"],
    "Free inodes of a mounted filesystem.",
);

pub(crate) const FILESYSTEM_READONLY: MetricDef = def(
    "m4watch_filesystem_readonly",
    Kind::Gauge,
    &["device", "mountpoint", "fstype"],
    "1 if a filesystem is mounted read-only, 0 if writable.",
);

pub(crate) const FILESYSTEM_DEVICE_ERROR: MetricDef = def(
    "m4watch_filesystem_device_error",
    Kind::Gauge,
    &["device", "mountpoint", "fstype"],
    "1 if a mounted filesystem could not be asked for its size (statvfs failed or did not answer within host.filesystems.stat_timeout; its other series are then absent), 0 if it answered.",
);

/// The disk and filesystem families, for the catalogue.
pub(crate) const METRICS: &[MetricDef] = &[
    DISK_READS_COMPLETED_TOTAL,
    DISK_WRITES_COMPLETED_TOTAL,
    DISK_READ_BYTES_TOTAL,
    DISK_WRITTEN_BYTES_TOTAL,
    DISK_READ_TIME_SECONDS_TOTAL,
    DISK_WRITE_TIME_SECONDS_TOTAL,
    DISK_IO_TIME_SECONDS_TOTAL,
    DISK_IO_TIME_WEIGHTED_SECONDS_TOTAL,
    DISK_DISCARDS_COMPLETED_TOTAL,
    DISK_FLUSH_REQUESTS_TOTAL,
    FILESYSTEM_SIZE_BYTES,
    FILESYSTEM_FREE_BYTES,
    FILESYSTEM_AVAIL_BYTES,
    FILESYSTEM_FILES,
    FILESYSTEM_FILES_FREE,
    FILESYSTEM_READONLY,
    FILESYSTEM_DEVICE_ERROR,
];

/// One block device: its counters by family name, in base units (bytes, seconds); a
/// counter the platform does not keep has no entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Disk {
    pub device: String,
    pub counters: BTreeMap<&'static str, f64>,
}

/// One mounted filesystem as the mount table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// What `statvfs`/`statfs` says of one filesystem, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsStat {
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub available_bytes: u64,
    pub files: u64,
    pub files_free: u64,
    pub readonly: bool,
}

/// The disks `ignore` does not match, in the order given.
pub(crate) fn keep_disks(disks: Vec<Disk>, ignore: &Pattern) -> Vec<Disk> {
    disks
        .into_iter()
        .filter(|d| !ignore.matches(&d.device))
        .collect()
}

/// The mounts neither pattern matches, one per mount point: where mounts are stacked on
/// one point, the last (the one a path there reaches) wins.
pub(crate) fn keep_mounts(
    mounts: Vec<Mount>,
    ignore_types: &Pattern,
    ignore_mounts: &Pattern,
) -> Vec<Mount> {
    let mut by_point: BTreeMap<String, Mount> = BTreeMap::new();
    for m in mounts {
        if ignore_types.matches(&m.fstype) || ignore_mounts.matches(&m.mountpoint) {
            continue;
        }
        by_point.insert(m.mountpoint.clone(), m);
    }
    by_point.into_values().collect()
}

/// The disk families of `disks`.
pub(crate) fn disk_families(disks: &[Disk]) -> Vec<Family> {
    METRICS
        .iter()
        .filter(|d| d.labels == ["device"])
        .map(|d| {
            let mut f = Family::new(d);
            for disk in disks {
                if let Some(&v) = disk.counters.get(d.name) {
                    f.push([("device", disk.device.as_str())], v);
                }
            }
            f
        })
        .collect()
}

/// The filesystem families: every series of a filesystem that answered, only
/// `device_error 1` for one that did not.
pub(crate) fn filesystem_families(fs: &[(Mount, Option<FsStat>)]) -> Vec<Family> {
    let fam = |d: &MetricDef| Family::new(d);
    let (mut size, mut free, mut avail) = (
        fam(&FILESYSTEM_SIZE_BYTES),
        fam(&FILESYSTEM_FREE_BYTES),
        fam(&FILESYSTEM_AVAIL_BYTES),
    );
    let (mut files, mut files_free, mut ro, mut error) = (
        fam(&FILESYSTEM_FILES),
        fam(&FILESYSTEM_FILES_FREE),
        fam(&FILESYSTEM_READONLY),
        fam(&FILESYSTEM_DEVICE_ERROR),
    );
    for (m, stat) in fs {
        let labels = [
            ("device", m.device.as_str()),
            ("mountpoint", m.mountpoint.as_str()),
            ("fstype", m.fstype.as_str()),
        ];
        error.push(labels, if stat.is_some() { 0.0 } else { 1.0 });
        let Some(s) = stat else { continue };
        size.push(labels, s.size_bytes as f64);
        free.push(labels, s.free_bytes as f64);
        avail.push(labels, s.available_bytes as f64);
        files.push(labels, s.files as f64);
        files_free.push(labels, s.files_free as f64);
        ro.push(labels, if s.readonly { 1.0 } else { 0.0 });
    }
    vec![size, free, avail, files, files_free, ro, error]
}

/// Mount points whose `statvfs` call has not returned yet, shared with the threads
/// that make the calls.
pub(crate) type Stuck = Arc<Mutex<BTreeSet<String>>>;

/// Asks `stat` about every mount, each on its own thread, and waits at most `timeout`
/// for all of them together. A mount that has not answered by then is `None`; while its
/// call is still blocked it is not asked again (a dead NFS server would otherwise pile
/// up a blocked thread every interval) and stays `None`.
///
/// A mount point enters `stuck` before its thread starts and leaves it when the call
/// returns, so whatever is in it at the next collection is still blocked, without a
/// race between the deadline and a late answer.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it; tested everywhere
pub(crate) fn stat_all<F>(
    mounts: Vec<Mount>,
    timeout: Duration,
    stuck: &Stuck,
    stat: F,
) -> Vec<(Mount, Option<FsStat>)>
where
    F: Fn(&str) -> std::io::Result<FsStat> + Clone + Send + 'static,
{
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::channel();
    let mut out: Vec<(Mount, Option<FsStat>)> = Vec::with_capacity(mounts.len());
    let mut asked = 0;
    for (i, m) in mounts.into_iter().enumerate() {
        if lock(stuck).insert(m.mountpoint.clone()) {
            let (tx, stat, held) = (tx.clone(), stat.clone(), Arc::clone(stuck));
            let point = m.mountpoint.clone();
            let spawned = std::thread::Builder::new()
                .name("m4watch-statvfs".into())
                // One syscall: the default 2 MiB stack would only be mapped and dropped.
                .stack_size(64 * 1024)
                .spawn(move || {
                    let r = stat(&point).ok();
                    lock(&held).remove(&point);
                    // The collection may have moved on: nobody listens then.
                    let _ = tx.send((i, r));
                });
            match spawned {
                Ok(_) => asked += 1,
                Err(_) => {
                    lock(stuck).remove(&m.mountpoint);
                }
            }
        }
        out.push((m, None));
    }
    drop(tx);
    while asked > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((i, r)) = rx.recv_timeout(left) else {
            break;
        };
        out[i].1 = r;
        asked -= 1;
    }
    out
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it; tested everywhere
fn lock(stuck: &Stuck) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    // The set stays consistent whichever thread panicked while holding it.
    stuck.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the collector's filesystem settings come together.
pub(crate) struct FilesystemWatch {
    pub ignore_types: Pattern,
    pub ignore_mounts: Pattern,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
    pub stat_timeout: Duration,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux source uses it
    pub stuck: Stuck,
}

impl FilesystemWatch {
    pub(crate) fn new(c: &crate::config::FilesystemsConfig) -> Self {
        FilesystemWatch {
            ignore_types: c.ignore_types.clone(),
            ignore_mounts: c.ignore_mounts.clone(),
            stat_timeout: c.stat_timeout.get(),
            stuck: Stuck::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(point: &str, fstype: &str) -> Mount {
        Mount {
            device: format!("dev{}", point.len()),
            mountpoint: point.into(),
            fstype: fstype.into(),
        }
    }

    fn stat(size: u64) -> FsStat {
        FsStat {
            size_bytes: size,
            free_bytes: size / 2,
            available_bytes: size / 4,
            files: 10,
            files_free: 5,
            readonly: false,
        }
    }

    #[test]
    fn default_patterns_keep_real_filesystems_and_whole_disks() {
        let c = crate::config::FilesystemsConfig::default();
        let kept = keep_mounts(
            vec![
                mount("/", "ext4"),
                mount("/proc", "proc"),
                mount("/sys/fs/cgroup", "tmpfs"),
                mount("/var/lib/docker/overlay2/abc/merged", "overlay"),
                mount("/var/lib/docker", "ext4"),
                mount("/run", "tmpfs"),
                mount("/data", "xfs"),
                mount("/data", "nfs4"),
                mount("/System/Volumes/VM", "apfs"),
                mount("/System/Volumes/Data", "apfs"),
            ],
            &c.ignore_types,
            &c.ignore_mounts,
        );
        let points: Vec<(&str, &str)> = kept
            .iter()
            .map(|m| (m.mountpoint.as_str(), m.fstype.as_str()))
            .collect();
        assert_eq!(
            points,
            vec![
                ("/", "ext4"),
                ("/System/Volumes/Data", "apfs"),
                ("/data", "nfs4"),
                ("/run", "tmpfs"),
                ("/var/lib/docker", "ext4"),
            ]
        );
        let d = crate::config::DisksConfig::default();
        let disk = |n: &str| Disk {
            device: n.into(),
            counters: BTreeMap::new(),
        };
        let names: Vec<String> = keep_disks(
            [
                "sda",
                "sda1",
                "nvme0n1",
                "nvme0n1p2",
                "loop3",
                "dm-0",
                "vdb",
                "vdb1",
                "disk0",
                "mmcblk0",
                "mmcblk0p1",
                "sr0",
            ]
            .map(disk)
            .to_vec(),
            &d.ignore,
        )
        .into_iter()
        .map(|d| d.device)
        .collect();
        assert_eq!(names, ["sda", "nvme0n1", "dm-0", "vdb", "disk0", "mmcblk0"]);
    }

    #[test]
    fn a_filesystem_that_failed_has_only_its_error_series() {
        let fams = filesystem_families(&[
            (mount("/", "ext4"), Some(stat(1000))),
            (mount("/mnt/nfs", "nfs"), None),
        ]);
        let series = |name: &str| -> Vec<(String, f64)> {
            let f = fams.iter().find(|f| f.name == name).unwrap();
            f.samples
                .iter()
                .map(|s| {
                    let point = s.labels.iter().find(|(k, _)| k == "mountpoint").unwrap();
                    (point.1.clone(), s.value)
                })
                .collect()
        };
        assert_eq!(
            series("m4watch_filesystem_device_error"),
            vec![("/".into(), 0.0), ("/mnt/nfs".into(), 1.0)]
        );
        assert_eq!(
            series("m4watch_filesystem_size_bytes"),
            vec![("/".into(), 1000.0)]
        );
        assert_eq!(
            series("m4watch_filesystem_readonly"),
            vec![("/".into(), 0.0)]
        );
    }

    #[test]
    fn a_stat_that_hangs_times_out_is_not_asked_again_and_recovers() {
        let stuck = Stuck::default();
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let calls = Arc::new(Mutex::new(Vec::<String>::new()));
        let slow_stat = {
            let (gate, calls) = (Arc::clone(&gate), Arc::clone(&calls));
            move |p: &str| {
                calls.lock().unwrap().push(p.to_string());
                if p == "/mnt/dead" {
                    // Blocks like a dead NFS server until the test lets it go.
                    let _ = gate.lock().unwrap().recv();
                }
                Ok(stat(4096))
            }
        };
        let mounts = || vec![mount("/", "ext4"), mount("/mnt/dead", "nfs")];
        let started = Instant::now();
        let r = stat_all(
            mounts(),
            Duration::from_millis(200),
            &stuck,
            slow_stat.clone(),
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded by the timeout"
        );
        assert_eq!(r[0].1, Some(stat(4096)));
        assert_eq!(r[1].1, None, "the hanging mount is an error");
        assert!(lock(&stuck).contains("/mnt/dead"));

        // Still stuck: reported as an error without a second blocked thread.
        let r = stat_all(
            mounts(),
            Duration::from_millis(200),
            &stuck,
            slow_stat.clone(),
        );
        assert_eq!(r[1].1, None);
        let dead_calls = || {
            calls
                .lock()
                .unwrap()
                .iter()
                .filter(|p| *p == "/mnt/dead")
                .count()
        };
        assert_eq!(dead_calls(), 1);

        // The server comes back: the stuck call returns and the mount is asked again.
        release.send(()).unwrap();
        drop(release);
        let until = Instant::now() + Duration::from_secs(5);
        while lock(&stuck).contains("/mnt/dead") {
            assert!(Instant::now() < until, "the stuck call never cleared");
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = stat_all(mounts(), Duration::from_secs(2), &stuck, slow_stat);
        assert_eq!(r[1].1, Some(stat(4096)));
        assert_eq!(dead_calls(), 2);
    }
}
