//! The host collector against this machine's kernel: a UDP socket on loopback that
//! does not read while a bounded burst overflows its receive buffer. The watched
//! socket's drop counter must equal what the kernel lists for that socket, and the
//! kernel-wide receive-buffer errors must have grown by at least as much, and the
//! loopback interface must have received every byte of the burst. Beside it: the
//! clock as `adjtimex` reports it here, this machine's disks against `/proc/diskstats`,
//! and a tmpfs the test mounts, filled and remounted read-only.

#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use crate::collect::BlockingCollector;
use crate::collect::host::clock::{
    CLOCK_ESTIMATED_ERROR_SECONDS, CLOCK_FREQUENCY_ADJUSTMENT_RATIO, CLOCK_MAX_ERROR_SECONDS,
    CLOCK_OFFSET_SECONDS, CLOCK_SYNCHRONIZED,
};
use crate::collect::host::storage::{
    DISK_READS_COMPLETED_TOTAL, FILESYSTEM_AVAIL_BYTES, FILESYSTEM_DEVICE_ERROR,
    FILESYSTEM_FILES_FREE, FILESYSTEM_READONLY, FILESYSTEM_SIZE_BYTES,
};
use crate::collect::host::{
    HostCollector, NETWORK_RECEIVE_BYTES_TOTAL, UDP_RECEIVE_BUFFER_ERRORS_TOTAL,
    UDP_SOCKET_DROPS_TOTAL, UDP_SOCKET_RECEIVE_QUEUE_BYTES,
};
use crate::config::HostConfig;
use crate::store::Family;

/// The value of `name`'s one series whose labels include `port`, or its only series.
fn value(fams: &[Family], name: &str, port: Option<u16>) -> Option<f64> {
    labelled(fams, name, port.map(|p| ("port", p.to_string())))
}

/// The value of `name`'s series with `label`, or its first series.
fn labelled(fams: &[Family], name: &str, label: Option<(&str, String)>) -> Option<f64> {
    let f = fams.iter().find(|f| f.name == name)?;
    f.samples
        .iter()
        .find(|s| match &label {
            None => true,
            Some((k, v)) => s.labels.contains(&(k.to_string(), v.clone())),
        })
        .map(|s| s.value)
}

/// The drops column of `port`'s row in /proc/net/udp, read here without the
/// collector's parser: the row whose local address ends in `:PORT` (hex), last field.
fn kernel_drops(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap();
    let needle = format!("0100007F:{port:04X}");
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
        .unwrap_or_else(|| panic!("no row for {needle} in /proc/net/udp"));
    row.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn an_unread_socket_overflowing_its_buffer_is_counted_per_socket_and_kernel_wide() {
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The smallest receive buffer the kernel allows (it doubles and floors the value).
    let size: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            feed.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    let port = feed.local_addr().unwrap().port();

    let mut collector = HostCollector::new(&HostConfig {
        udp_ports: vec![port],
        ..HostConfig::default()
    });
    let before = collector.collect().unwrap();
    assert_eq!(
        value(&before, UDP_SOCKET_DROPS_TOTAL.name, Some(port)),
        Some(0.0),
        "a fresh socket has dropped nothing"
    );
    let rcvbuf_before = value(&before, UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, None)
        .expect("this kernel counts RcvbufErrors");
    let lo = || Some(("device", "lo".to_string()));
    let lo_before = labelled(&before, NETWORK_RECEIVE_BYTES_TOTAL.name, lo()).unwrap();

    // Loopback delivers synchronously: when send returns, the datagram is queued or
    // dropped. 500 datagrams of 1 KiB are far beyond a few-KiB buffer.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let burst = 500u64;
    for _ in 0..burst {
        sender.send_to(&[0x5a; 1024], ("127.0.0.1", port)).unwrap();
    }

    let after = collector.collect().unwrap();
    let kernel = kernel_drops(port);
    let drops = value(&after, UDP_SOCKET_DROPS_TOTAL.name, Some(port)).unwrap();
    assert!(
        kernel > burst / 2,
        "the burst should overflow the buffer: the kernel shows {kernel} drops of {burst}"
    );
    assert_eq!(
        drops, kernel as f64,
        "the watched socket's drops are the kernel's"
    );
    let queued = value(&after, UDP_SOCKET_RECEIVE_QUEUE_BYTES.name, Some(port)).unwrap();
    assert!(
        queued > 0.0,
        "the datagrams that fit are still queued, unread"
    );
    let rcvbuf_after = value(&after, UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, None).unwrap();
    assert!(
        rcvbuf_after - rcvbuf_before >= drops,
        "RcvbufErrors grew by {} but the socket alone dropped {drops}",
        rcvbuf_after - rcvbuf_before
    );
    // Every datagram crossed the loopback interface, dropped at the socket or not.
    let lo_after = labelled(&after, NETWORK_RECEIVE_BYTES_TOTAL.name, lo()).unwrap();
    assert!(
        lo_after - lo_before >= (burst * 1024) as f64,
        "lo received {} bytes during a burst of {burst} KiB",
        lo_after - lo_before
    );
    drop(feed);
}

#[test]
fn an_unwatched_port_has_no_per_socket_series() {
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut collector = HostCollector::new(&HostConfig::default());
    let fams = collector.collect().unwrap();
    let port = feed.local_addr().unwrap().port();
    assert_eq!(value(&fams, UDP_SOCKET_DROPS_TOTAL.name, Some(port)), None);
    assert!(
        value(&fams, "m4watch_udp_datagrams_received_total", None).is_some(),
        "kernel-wide counters are read without watched ports"
    );
}

/// The interfaces /proc/net/dev lists on this machine.
fn kernel_interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn ignored_interfaces_have_no_series_and_the_rest_all_do() {
    let exported = |config: &HostConfig| -> Vec<String> {
        let fams = HostCollector::new(config).collect().unwrap();
        let f = fams
            .iter()
            .find(|f| f.name == NETWORK_RECEIVE_BYTES_TOTAL.name)
            .unwrap();
        f.samples
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .find(|(k, _)| k == "device")
                    .unwrap()
                    .1
                    .clone()
            })
            .collect()
    };
    // Other tests start containers (veths, bridges) meanwhile: what the kernel listed
    // both before and after must be there, and nothing it listed neither time.
    let check = |config: &HostConfig, ignored: &dyn Fn(&str) -> bool| {
        let before = kernel_interfaces();
        let got = exported(config);
        let after = kernel_interfaces();
        for n in before.iter().filter(|n| after.contains(n) && !ignored(n)) {
            assert!(got.contains(n), "{n} missing from {got:?}");
        }
        for n in &got {
            assert!(!ignored(n), "{n} is ignored but exported");
            assert!(
                before.contains(n) || after.contains(n),
                "{n} is not the kernel's"
            );
        }
        got
    };
    let veth = |n: &str| n.starts_with("veth");
    assert!(check(&HostConfig::default(), &veth).contains(&"lo".to_string()));
    let mut config = HostConfig::default();
    config.interfaces.ignore = crate::config::Pattern::new("lo|veth.+").unwrap();
    check(&config, &|n| n == "lo" || veth(n));
    // Kernel-wide counters still cover every interface.
    let fams = HostCollector::new(&config).collect().unwrap();
    assert!(value(&fams, "m4watch_udp_datagrams_received_total", None).is_some());
}

#[test]
fn the_clock_reads_what_adjtimex_says_here() {
    let fams = HostCollector::new(&HostConfig::default())
        .collect()
        .unwrap();
    // The same call, made here without the collector.
    // SAFETY: a zeroed timex with modes 0 only reads.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut t) };
    assert!(state >= 0, "adjtimex: {}", std::io::Error::last_os_error());
    let get = |name: &str| value(&fams, name, None).unwrap_or_else(|| panic!("{name} absent"));
    let synced = state != libc::TIME_ERROR && t.status & libc::STA_UNSYNC == 0;
    assert_eq!(get(CLOCK_SYNCHRONIZED.name), if synced { 1.0 } else { 0.0 });
    // The kernel's own bounds (kernel/time/ntp.c): the offset is clamped to
    // ±0.5 s (MAXPHASE), the error bounds to 16 s (NTP_PHASE_LIMIT), the frequency to
    // ±500 ppm (MAXFREQ).
    let offset = get(CLOCK_OFFSET_SECONDS.name);
    assert!(offset.abs() <= 0.5, "offset {offset}");
    let max = get(CLOCK_MAX_ERROR_SECONDS.name);
    let est = get(CLOCK_ESTIMATED_ERROR_SECONDS.name);
    assert!((0.0..=16.0).contains(&max), "max error {max}");
    assert!((0.0..=16.0).contains(&est), "estimated error {est}");
    assert!(
        (max - t.maxerror as f64 * 1e-6).abs() <= 0.01,
        "max error {max} s, adjtimex says {} us (it grows 500 us a second)",
        t.maxerror
    );
    let freq = get(CLOCK_FREQUENCY_ADJUSTMENT_RATIO.name);
    assert!(freq.abs() <= 500e-6, "frequency adjustment {freq}");
    assert_eq!(freq, t.freq as f64 / 65536.0 * 1e-6);
}

/// `device`'s reads completed, from /proc/diskstats read here.
fn kernel_reads(device: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/diskstats").unwrap();
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(device))
        .unwrap_or_else(|| panic!("no {device} in /proc/diskstats"));
    row.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn disks_are_this_machine_s_whole_disks_with_the_kernel_s_counts() {
    let text = std::fs::read_to_string("/proc/diskstats").unwrap();
    let config = HostConfig::default();
    let expected: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|d| !config.disks.ignore.matches(d))
        .map(str::to_string)
        .collect();
    assert!(
        !expected.is_empty(),
        "this machine has no block device but loop and RAM devices:\n{text}"
    );
    let disk = &expected[0];
    let mut collector = HostCollector::new(&config);
    let before = kernel_reads(disk);
    let fams = collector.collect().unwrap();
    let after = kernel_reads(disk);
    let f = fams
        .iter()
        .find(|f| f.name == DISK_READS_COMPLETED_TOTAL.name)
        .unwrap();
    let mut got: Vec<String> = f
        .samples
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .find(|(k, _)| k == "device")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want, "the devices the default ignore pattern keeps");
    let reads = labelled(
        &fams,
        DISK_READS_COMPLETED_TOTAL.name,
        Some(("device", disk.clone())),
    )
    .unwrap();
    assert!(
        (before..=after).contains(&reads),
        "{disk}: {reads} reads, the kernel counted {before} before and {after} after"
    );
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},nr_inodes=1000"),
                "m4watch-test",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN), as scripts/test.sh runs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn point(&self) -> String {
        self.dir.path().to_str().unwrap().to_string()
    }

    fn remount(&self, options: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_mounted_tmpfs_reports_its_size_what_was_written_and_read_only() {
    let fs = Tmpfs::mount("4m");
    let mut collector = HostCollector::new(&HostConfig::default());
    let at = |fams: &[Family], name: &str| {
        labelled(fams, name, Some(("mountpoint", fs.point())))
            .unwrap_or_else(|| panic!("{name} has no series for {}", fs.point()))
    };
    let empty = collector.collect().unwrap();
    assert_eq!(
        at(&empty, FILESYSTEM_SIZE_BYTES.name),
        4.0 * 1024.0 * 1024.0
    );
    assert_eq!(
        at(&empty, FILESYSTEM_AVAIL_BYTES.name),
        4.0 * 1024.0 * 1024.0
    );
    assert_eq!(at(&empty, FILESYSTEM_READONLY.name), 0.0);
    assert_eq!(at(&empty, FILESYSTEM_DEVICE_ERROR.name), 0.0);
    let f = empty
        .iter()
        .find(|f| f.name == FILESYSTEM_SIZE_BYTES.name)
        .unwrap();
    let labels = &f
        .samples
        .iter()
        .find(|s| s.labels.contains(&("mountpoint".to_string(), fs.point())))
        .unwrap()
        .labels;
    assert!(
        labels.contains(&("device".into(), "m4watch-test".into())),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("fstype".into(), "tmpfs".into())),
        "{labels:?}"
    );

    // 1 MiB in three files: a quarter of the space and three inodes go.
    for i in 0..3 {
        std::fs::write(
            fs.dir.path().join(format!("f{i}")),
            vec![7u8; 1024 * 1024 / 4 * if i == 0 { 2 } else { 1 }],
        )
        .unwrap();
    }
    let written = collector.collect().unwrap();
    assert_eq!(
        at(&empty, FILESYSTEM_AVAIL_BYTES.name) - at(&written, FILESYSTEM_AVAIL_BYTES.name),
        1024.0 * 1024.0
    );
    assert_eq!(
        at(&empty, FILESYSTEM_FILES_FREE.name) - at(&written, FILESYSTEM_FILES_FREE.name),
        3.0
    );

    fs.remount("ro");
    let ro = collector.collect().unwrap();
    assert_eq!(at(&ro, FILESYSTEM_READONLY.name), 1.0);
    fs.remount("rw");
}
