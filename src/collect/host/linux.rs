//! Linux: `/proc/net/snmp`, `/proc/net/snmp6`, `/proc/net/netstat` and
//! `/proc/net/udp{,6}`. Every parser reads the column names from the file's own
//! header, so kernels that add columns (`InCsumErrors` in 3.10, `IgnoredMulti` in 3.19,
//! the per-socket `drops` in 2.6.27) or move them parse alike; a column a kernel lacks
//! is `None`, never 0.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::*;
use crate::collect::CollectError;
use crate::model::MetricDef;

/// `(section, name) -> value` from a `/proc/net/snmp` or `/proc/net/netstat` text:
/// pairs of lines, `Udp: InDatagrams NoPorts ...` then `Udp: 53935 155 ...`.
pub(crate) fn parse_snmp_table(text: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((section, names)), Some((vsection, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if section != vsection {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            // Tcp MaxConn is -1 ("dynamic"): not a counter, and not one we read.
            if let Ok(v) = value.parse::<u64>() {
                out.insert((section.to_string(), name.to_string()), v);
            }
        }
    }
    out
}

/// `name -> value` from `/proc/net/snmp6` (`Udp6RcvbufErrors   12` per line).
pub(crate) fn parse_snmp6(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// Where each family is in the files: `(family, section, name)`. A `Udp` counter
/// adds its IPv6 twin from snmp6 (`Udp6<name>`), as macOS counts both in one; TCP's
/// MIB is shared by IPv4 and IPv6 already.
const SOURCES: &[(&MetricDef, &str, &str)] = &[
    (&UDP_DATAGRAMS_RECEIVED_TOTAL, "Udp", "InDatagrams"),
    (&UDP_DATAGRAMS_SENT_TOTAL, "Udp", "OutDatagrams"),
    (&UDP_RECEIVE_ERRORS_TOTAL, "Udp", "InErrors"),
    (&UDP_RECEIVE_BUFFER_ERRORS_TOTAL, "Udp", "RcvbufErrors"),
    (&UDP_SEND_BUFFER_ERRORS_TOTAL, "Udp", "SndbufErrors"),
    (&UDP_NO_PORT_ERRORS_TOTAL, "Udp", "NoPorts"),
    (&UDP_CHECKSUM_ERRORS_TOTAL, "Udp", "InCsumErrors"),
    (&TCP_RETRANSMITTED_SEGMENTS_TOTAL, "Tcp", "RetransSegs"),
    (&TCP_RESETS_SENT_TOTAL, "Tcp", "OutRsts"),
    (&TCP_ESTABLISHED_RESETS_TOTAL, "Tcp", "EstabResets"),
    (&TCP_LISTEN_OVERFLOWS_TOTAL, "TcpExt", "ListenOverflows"),
    (&TCP_LISTEN_DROPS_TOTAL, "TcpExt", "ListenDrops"),
];

/// The counters from the three files' contents; `snmp6` is `None` where IPv6 is off.
pub(crate) fn counters(snmp: &str, snmp6: Option<&str>, netstat: &str) -> NetCounters {
    let mut tables = parse_snmp_table(snmp);
    tables.extend(parse_snmp_table(netstat));
    let snmp6 = snmp6.map(parse_snmp6).unwrap_or_default();
    SOURCES
        .iter()
        .filter_map(|&(def, section, name)| {
            let v = *tables.get(&(section.to_string(), name.to_string()))?;
            let v6 = match section {
                "Udp" => snmp6.get(&format!("Udp6{name}")).copied().unwrap_or(0),
                _ => 0,
            };
            Some((def.name, v + v6))
        })
        .collect()
}

/// The sockets of a `/proc/net/udp` or `/proc/net/udp6` text. Columns are found by
/// the header's names; `local_address` is `ADDR:PORT` in hex, the address as the
/// kernel's 32-bit words printed in host byte order.
pub(crate) fn parse_udp_sockets(text: &str) -> Result<Vec<UdpSocket>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty file")?
        .split_whitespace()
        .collect();
    // The header names `tx_queue rx_queue` and `tr tm->when` as four columns, but each
    // pair is one `a:b` field in the rows: count the fields the way the rows do.
    let mut cols = BTreeMap::new();
    let mut i = 0;
    for name in &header {
        match *name {
            "rx_queue" | "tm->when" => continue,
            "tx_queue" => cols.insert("queues", i),
            n => cols.insert(n, i),
        };
        i += 1;
    }
    let col = |n: &str| cols.get(n).copied().ok_or(format!("no {n} column"));
    let (local, queues) = (col("local_address")?, col("queues")?);
    let drops = cols.get("drops").copied();
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("row {}: bad {what}: {line:?}", n + 1);
        let (addr, port) = fields
            .get(local)
            .and_then(|f| f.split_once(':'))
            .ok_or_else(|| bad("local_address"))?;
        let rx = fields
            .get(queues)
            .and_then(|f| f.split_once(':'))
            .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
            .ok_or_else(|| bad("rx_queue"))?;
        out.push(UdpSocket {
            local_address: hex_addr(addr).ok_or_else(|| bad("address"))?,
            port: u16::from_str_radix(port, 16).map_err(|_| bad("port"))?,
            rx_queue: rx,
            drops: match drops {
                None => None,
                Some(c) => Some(
                    fields
                        .get(c)
                        .and_then(|d| d.parse().ok())
                        .ok_or_else(|| bad("drops"))?,
                ),
            },
        });
    }
    Ok(out)
}

/// An address as /proc/net/udp{,6} prints it: 8 or 32 hex digits, each 32-bit word
/// the kernel's in-memory (network-order) bytes read as a host-order integer.
fn hex_addr(hex: &str) -> Option<IpAddr> {
    let words = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<Vec<u32>>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match (hex.len(), bytes.len()) {
        (8, 4) => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        (32, 16) => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// `(family, direction, column)` of `/proc/net/dev`; the columns are found by the
/// header's names under `Receive` and `Transmit`.
const DEV_COLUMNS: &[(&MetricDef, usize, &str)] = &[
    (&NETWORK_RECEIVE_BYTES_TOTAL, 0, "bytes"),
    (&NETWORK_RECEIVE_PACKETS_TOTAL, 0, "packets"),
    (&NETWORK_RECEIVE_ERRS_TOTAL, 0, "errs"),
    (&NETWORK_RECEIVE_DROP_TOTAL, 0, "drop"),
    (&NETWORK_TRANSMIT_BYTES_TOTAL, 1, "bytes"),
    (&NETWORK_TRANSMIT_PACKETS_TOTAL, 1, "packets"),
    (&NETWORK_TRANSMIT_ERRS_TOTAL, 1, "errs"),
    (&NETWORK_TRANSMIT_DROP_TOTAL, 1, "drop"),
];

/// The interfaces of a `/proc/net/dev` text, their counters only (state and speed
/// come from sysfs).
pub(crate) fn parse_net_dev(text: &str) -> Result<Vec<Interface>, String> {
    let mut lines = text.lines();
    lines.next().ok_or("empty file")?;
    // ` face |bytes packets ...|bytes packets ...`: receive, then transmit columns.
    let header = lines.next().ok_or("no column header")?;
    let groups: Vec<Vec<&str>> = header
        .split('|')
        .skip(1)
        .map(|g| g.split_whitespace().collect())
        .collect();
    if groups.len() != 2 {
        return Err(format!("unexpected header {header:?}"));
    }
    let mut out = Vec::new();
    for line in lines {
        let Some((name, values)) = line.split_once(':') else {
            continue;
        };
        let values: Vec<u64> = values
            .split_whitespace()
            .map(|v| v.parse().map_err(|_| format!("bad value in {line:?}")))
            .collect::<Result<_, _>>()?;
        let counters = DEV_COLUMNS
            .iter()
            .filter_map(|&(def, dir, col)| {
                let i = groups[dir].iter().position(|c| *c == col)?;
                let i = if dir == 1 { groups[0].len() + i } else { i };
                Some((def.name, *values.get(i)?))
            })
            .collect();
        out.push(Interface {
            name: name.trim().to_string(),
            counters,
            up: None,
            speed_bytes: None,
        });
    }
    Ok(out)
}

/// Up from sysfs `operstate`: `up` is up, `unknown` (loopback, some virtual devices)
/// unknown, anything else (down, lowerlayerdown, dormant, ...) not up.
pub(crate) fn parse_operstate(text: &str) -> Option<bool> {
    match text.trim() {
        "unknown" | "" => None,
        s => Some(s == "up"),
    }
}

/// Bytes per second from sysfs `speed` (megabits per second; -1 or unreadable when
/// the driver does not know, as for a link that is down or a virtual device).
pub(crate) fn parse_speed(text: &str) -> Option<u64> {
    let mbit: i64 = text.trim().parse().ok()?;
    (mbit > 0).then(|| mbit as u64 * 125_000)
}

/// One reading from the procfs at `root` and the sysfs at `sys`; the socket tables
/// only when `sockets`.
pub(crate) fn read(root: &Path, sys: &Path, sockets: bool) -> Result<NetReading, CollectError> {
    let file = |name: &str| {
        let p = root.join("net").join(name);
        std::fs::read_to_string(&p).map_err(|e| CollectError(format!("{}: {e}", p.display())))
    };
    let snmp6 = file("snmp6").ok();
    let counters = counters(&file("snmp")?, snmp6.as_deref(), &file("netstat")?);
    let sockets = if sockets {
        let mut all = parse_udp_sockets(&file("udp")?).map_err(CollectError)?;
        // Without IPv6 there is no udp6 file, and no IPv6 socket to list.
        if let Ok(t) = file("udp6") {
            all.extend(parse_udp_sockets(&t).map_err(CollectError)?);
        }
        Some(all)
    } else {
        None
    };
    let mut interfaces = parse_net_dev(&file("dev")?).map_err(CollectError)?;
    for i in &mut interfaces {
        let dir = sys.join("class/net").join(&i.name);
        let attr = |a: &str| std::fs::read_to_string(dir.join(a)).ok();
        i.up = attr("operstate").as_deref().and_then(parse_operstate);
        i.speed_bytes = attr("speed").as_deref().and_then(parse_speed);
    }
    Ok(NetReading {
        counters,
        sockets,
        interfaces,
    })
}

/// `/proc/diskstats` counts in 512-byte sectors whatever the device's sector size.
const SECTOR_BYTES: f64 = 512.0;

/// `(family, column after the name, scale)` of `/proc/diskstats`: 11 columns since
/// 2.6, 15 with the discard columns (4.18), 17 with the flush columns (5.5). Times are
/// milliseconds.
const DISKSTATS_COLUMNS: &[(&MetricDef, usize, f64)] = &[
    (&storage::DISK_READS_COMPLETED_TOTAL, 0, 1.0),
    (&storage::DISK_READ_BYTES_TOTAL, 2, SECTOR_BYTES),
    (&storage::DISK_READ_TIME_SECONDS_TOTAL, 3, 1e-3),
    (&storage::DISK_WRITES_COMPLETED_TOTAL, 4, 1.0),
    (&storage::DISK_WRITTEN_BYTES_TOTAL, 6, SECTOR_BYTES),
    (&storage::DISK_WRITE_TIME_SECONDS_TOTAL, 7, 1e-3),
    (&storage::DISK_IO_TIME_SECONDS_TOTAL, 9, 1e-3),
    (&storage::DISK_IO_TIME_WEIGHTED_SECONDS_TOTAL, 10, 1e-3),
    (&storage::DISK_DISCARDS_COMPLETED_TOTAL, 11, 1.0),
    (&storage::DISK_FLUSH_REQUESTS_TOTAL, 15, 1.0),
];

/// The devices of a `/proc/diskstats` text: `major minor name` and then the counters.
/// A column the kernel does not print is absent; rows of the 4-column partition format
/// of kernels before 2.6.25 are skipped (their disk's row has the totals).
pub(crate) fn parse_diskstats(text: &str) -> Result<Vec<storage::Disk>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() < 3 {
            return Err(format!("line {}: too few fields: {line:?}", n + 1));
        }
        let values: Vec<u64> = fields[3..]
            .iter()
            .map(|v| v.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("line {}: bad counter: {line:?}", n + 1))?;
        if values.len() < 11 {
            continue;
        }
        let counters = DISKSTATS_COLUMNS
            .iter()
            .filter_map(|&(d, col, scale)| Some((d.name, *values.get(col)? as f64 * scale)))
            .collect();
        out.push(storage::Disk {
            device: fields[2].to_string(),
            counters,
        });
    }
    Ok(out)
}

/// The mounts of a `/proc/PID/mountinfo` text:
/// `id parent major:minor root mountpoint options [optional...] - fstype source super`.
/// Paths have space, tab, newline and backslash escaped as octal (`\040`).
pub(crate) fn parse_mountinfo(text: &str) -> Result<Vec<storage::Mount>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || format!("line {}: not a mountinfo line: {line:?}", n + 1);
        let (head, tail) = line.split_once(" - ").ok_or_else(bad)?;
        let mountpoint = head.split(' ').nth(4).ok_or_else(bad)?;
        let mut tail = tail.split(' ');
        let (fstype, source) = (tail.next().ok_or_else(bad)?, tail.next().ok_or_else(bad)?);
        out.push(storage::Mount {
            device: unescape_octal(source),
            mountpoint: unescape_octal(mountpoint),
            fstype: fstype.to_string(),
        });
    }
    Ok(out)
}

/// `\ooo` (three octal digits) to its byte; anything else as it is.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The disks of the procfs at `root`.
pub(crate) fn read_disks(root: &Path) -> Result<Vec<storage::Disk>, CollectError> {
    let p = root.join("diskstats");
    let text =
        std::fs::read_to_string(&p).map_err(|e| CollectError(format!("{}: {e}", p.display())))?;
    parse_diskstats(&text).map_err(|e| CollectError(format!("{}: {e}", p.display())))
}

/// The mounts m4watch's own mount namespace sees, from the procfs at `root`.
pub(crate) fn read_mounts(root: &Path) -> Result<Vec<storage::Mount>, CollectError> {
    let p = root.join("self/mountinfo");
    let text =
        std::fs::read_to_string(&p).map_err(|e| CollectError(format!("{}: {e}", p.display())))?;
    parse_mountinfo(&text).map_err(|e| CollectError(format!("{}: {e}", p.display())))
}

/// `statvfs` of one mount point.
#[cfg(target_os = "linux")]
pub(crate) fn statvfs(point: &str) -> std::io::Result<storage::FsStat> {
    let c = std::ffi::CString::new(point)?;
    // SAFETY: all-zero is a valid statvfs to be overwritten.
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut v) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = v.f_frsize as u64;
    Ok(storage::FsStat {
        size_bytes: v.f_blocks as u64 * frsize,
        free_bytes: v.f_bfree as u64 * frsize,
        available_bytes: v.f_bavail as u64 * frsize,
        files: v.f_files as u64,
        files_free: v.f_ffree as u64,
        readonly: v.f_flag & libc::ST_RDONLY != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(kernel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/net")
            .join(kernel)
            .join("proc")
    }

    fn sys(kernel: &str) -> std::path::PathBuf {
        fixture(kernel).with_file_name("sys")
    }

    fn iface(r: &NetReading, name: &str) -> Interface {
        r.interfaces
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} in {:?}", r.interfaces))
            .clone()
    }

    #[test]
    fn kernel_6_18_interfaces_with_state_and_speed() {
        let r = read(&fixture("linux-6.18"), &sys("linux-6.18"), false).unwrap();
        assert_eq!(r.interfaces.len(), 3);
        let eth0 = iface(&r, "eth0");
        assert_eq!(
            eth0,
            Interface {
                name: "eth0".into(),
                counters: NetCounters::from([
                    (NETWORK_RECEIVE_BYTES_TOTAL.name, 918273645),
                    (NETWORK_RECEIVE_PACKETS_TOTAL.name, 812345),
                    (NETWORK_RECEIVE_ERRS_TOTAL.name, 7),
                    (NETWORK_RECEIVE_DROP_TOTAL.name, 112),
                    (NETWORK_TRANSMIT_BYTES_TOTAL.name, 55443322),
                    (NETWORK_TRANSMIT_PACKETS_TOTAL.name, 401234),
                    (NETWORK_TRANSMIT_ERRS_TOTAL.name, 1),
                    (NETWORK_TRANSMIT_DROP_TOTAL.name, 2),
                ]),
                up: Some(true),
                speed_bytes: Some(1_250_000_000),
            }
        );
        let lo = iface(&r, "lo");
        assert_eq!((lo.up, lo.speed_bytes), (None, None));
        let docker0 = iface(&r, "docker0");
        assert_eq!((docker0.up, docker0.speed_bytes), (Some(false), None));
    }

    #[test]
    fn kernel_3_2_interfaces_without_sysfs_state() {
        // A name glued to its first value (`eth0:1234`), as old kernels print large
        // counters, and no sysfs tree: state and speed unknown.
        let r = read(&fixture("linux-3.2"), &sys("linux-3.2"), false).unwrap();
        let eth0 = iface(&r, "eth0");
        assert_eq!(
            eth0.counters[NETWORK_RECEIVE_BYTES_TOTAL.name],
            4123456789012
        );
        assert_eq!(eth0.counters[NETWORK_TRANSMIT_DROP_TOTAL.name], 0);
        assert_eq!(eth0.counters[NETWORK_RECEIVE_DROP_TOTAL.name], 301);
        assert_eq!((eth0.up, eth0.speed_bytes), (None, None));
    }

    #[test]
    fn operstate_and_speed() {
        assert_eq!(parse_operstate("up\n"), Some(true));
        assert_eq!(parse_operstate("lowerlayerdown\n"), Some(false));
        assert_eq!(parse_operstate("unknown\n"), None);
        assert_eq!(parse_speed("10000\n"), Some(1_250_000_000));
        assert_eq!(parse_speed("-1\n"), None);
    }

    #[test]
    fn kernel_6_18_counters_sum_ipv4_and_ipv6_udp() {
        let r = read(&fixture("linux-6.18"), &sys("linux-6.18"), true).unwrap();
        assert_eq!(
            r.counters,
            NetCounters::from([
                (UDP_DATAGRAMS_RECEIVED_TOTAL.name, 53935 + 120),
                (UDP_DATAGRAMS_SENT_TOTAL.name, 169625 + 80),
                (UDP_RECEIVE_ERRORS_TOTAL.name, 115511 + 4),
                (UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, 115511 + 3),
                (UDP_SEND_BUFFER_ERRORS_TOTAL.name, 2),
                (UDP_NO_PORT_ERRORS_TOTAL.name, 155 + 1),
                (UDP_CHECKSUM_ERRORS_TOTAL.name, 1),
                (TCP_RETRANSMITTED_SEGMENTS_TOTAL.name, 2423),
                (TCP_LISTEN_OVERFLOWS_TOTAL.name, 4),
                (TCP_LISTEN_DROPS_TOTAL.name, 6),
                (TCP_RESETS_SENT_TOTAL.name, 1733),
                (TCP_ESTABLISHED_RESETS_TOTAL.name, 663),
            ])
        );
    }

    #[test]
    fn kernel_3_2_lacks_checksum_errors_and_ipv6() {
        // No InCsumErrors column (added in 3.10): the family is absent, not 0.
        let r = read(&fixture("linux-3.2"), &sys("linux-3.2"), true).unwrap();
        assert_eq!(
            r.counters,
            NetCounters::from([
                (UDP_DATAGRAMS_RECEIVED_TOTAL.name, 8801234),
                (UDP_DATAGRAMS_SENT_TOTAL.name, 1204),
                (UDP_RECEIVE_ERRORS_TOTAL.name, 5120),
                (UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, 5117),
                (UDP_SEND_BUFFER_ERRORS_TOTAL.name, 0),
                (UDP_NO_PORT_ERRORS_TOTAL.name, 42),
                (TCP_RETRANSMITTED_SEGMENTS_TOTAL.name, 311),
                (TCP_LISTEN_OVERFLOWS_TOTAL.name, 12),
                (TCP_LISTEN_DROPS_TOTAL.name, 12),
                (TCP_RESETS_SENT_TOTAL.name, 97),
                (TCP_ESTABLISHED_RESETS_TOTAL.name, 8),
            ])
        );
        let s = r.sockets.unwrap();
        assert_eq!(
            s,
            vec![
                UdpSocket {
                    local_address: "0.0.0.0".parse().unwrap(),
                    port: 30001,
                    rx_queue: 0x1c900,
                    drops: Some(5117),
                },
                UdpSocket {
                    local_address: "10.1.2.3".parse().unwrap(),
                    port: 123,
                    rx_queue: 0,
                    drops: Some(0),
                },
            ]
        );
    }

    #[test]
    fn kernel_6_18_sockets_v4_and_v6() {
        let s = read(&fixture("linux-6.18"), &sys("linux-6.18"), true)
            .unwrap()
            .sockets
            .unwrap();
        let find = |addr: &str, port| {
            s.iter()
                .find(|x| x.local_address == addr.parse::<IpAddr>().unwrap() && x.port == port)
                .unwrap_or_else(|| panic!("{addr}:{port} in {s:?}"))
        };
        assert_eq!(find("127.0.0.1", 18125).rx_queue, 0);
        assert_eq!(find("239.1.1.1", 30001).drops, Some(37));
        assert_eq!(find("239.1.1.1", 30001).rx_queue, 0x34000);
        assert_eq!(find("::", 30002).drops, Some(9));
        assert_eq!(find("::1", 30003).rx_queue, 0x300);
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn a_socket_table_without_the_drops_column_has_unknown_drops() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer\n\
                    0: 00000000:7531 00000000:0000 07 00000000:00000010 00:00000000 00000000     0        0 1 2 ffff8800\n";
        let s = parse_udp_sockets(text).unwrap();
        assert_eq!(
            s,
            vec![UdpSocket {
                local_address: "0.0.0.0".parse().unwrap(),
                port: 30001,
                rx_queue: 16,
                drops: None,
            }]
        );
    }

    #[test]
    fn malformed_rows_name_the_row() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                    0: 0000000:7531 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff8800 0\n";
        let e = parse_udp_sockets(text).unwrap_err();
        assert!(e.starts_with("row 1: bad address"), "{e}");
    }

    #[test]
    fn a_missing_procfs_is_an_error_naming_the_file() {
        let e = read(Path::new("/nonexistent"), Path::new("/nonexistent"), false).unwrap_err();
        assert!(e.0.starts_with("/nonexistent/net/snmp: "), "{}", e.0);
    }

    fn disk_fixture(kernel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/disk")
            .join(kernel)
            .join("proc")
    }

    fn disk(disks: &[storage::Disk], name: &str) -> BTreeMap<&'static str, f64> {
        disks
            .iter()
            .find(|d| d.device == name)
            .unwrap_or_else(|| panic!("{name} in {disks:?}"))
            .counters
            .clone()
    }

    #[test]
    fn kernel_6_18_diskstats_have_discards_and_flushes() {
        let disks = read_disks(&disk_fixture("linux-6.18")).unwrap();
        assert_eq!(disks.len(), 7);
        assert_eq!(
            disk(&disks, "vda"),
            BTreeMap::from([
                (storage::DISK_READS_COMPLETED_TOTAL.name, 4253206.0),
                (storage::DISK_READ_BYTES_TOTAL.name, 147070298.0 * 512.0),
                (storage::DISK_READ_TIME_SECONDS_TOTAL.name, 24651.714),
                (storage::DISK_WRITES_COMPLETED_TOTAL.name, 856600.0),
                (storage::DISK_WRITTEN_BYTES_TOTAL.name, 581310048.0 * 512.0),
                (storage::DISK_WRITE_TIME_SECONDS_TOTAL.name, 13043.808),
                (storage::DISK_IO_TIME_SECONDS_TOTAL.name, 1250.612),
                (storage::DISK_IO_TIME_WEIGHTED_SECONDS_TOTAL.name, 38373.363),
                (storage::DISK_DISCARDS_COMPLETED_TOTAL.name, 421268.0),
                (storage::DISK_FLUSH_REQUESTS_TOTAL.name, 111683.0),
            ])
        );
    }

    #[test]
    fn kernel_4_18_diskstats_have_discards_but_no_flushes() {
        let disks = read_disks(&disk_fixture("linux-4.18")).unwrap();
        let sda = disk(&disks, "sda");
        assert_eq!(sda[storage::DISK_DISCARDS_COMPLETED_TOTAL.name], 5021.0);
        assert_eq!(
            sda[storage::DISK_WRITTEN_BYTES_TOTAL.name],
            18874368.0 * 512.0
        );
        assert!(!sda.contains_key(storage::DISK_FLUSH_REQUESTS_TOTAL.name));
        assert_eq!(disks.len(), 5);
    }

    #[test]
    fn kernel_3_10_diskstats_have_neither_and_old_partition_rows_are_skipped() {
        let disks = read_disks(&disk_fixture("linux-3.10")).unwrap();
        let names: Vec<&str> = disks.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names, ["sda", "sda1", "sdb", "sr0"]);
        let sdb = disk(&disks, "sdb");
        assert_eq!(sdb.len(), 8, "no discard or flush counters: {sdb:?}");
        assert_eq!(sdb[storage::DISK_READ_TIME_SECONDS_TOTAL.name], 1.3);
    }

    #[test]
    fn a_bad_diskstats_counter_names_the_line() {
        let e = parse_diskstats("   8 0 sda 1 2 x 4 5 6 7 8 9 10 11\n").unwrap_err();
        assert!(e.starts_with("line 1: bad counter"), "{e}");
    }

    #[test]
    fn mountinfo_of_three_kernels() {
        let m = read_mounts(&disk_fixture("linux-6.18")).unwrap();
        assert_eq!(m.len(), 12);
        let find = |p: &str| m.iter().find(|x| x.mountpoint == p).unwrap().clone();
        assert_eq!(
            find("/srv/market data"),
            storage::Mount {
                device: "/dev/mapper/vg0-md".into(),
                mountpoint: "/srv/market data".into(),
                fstype: "xfs".into(),
            }
        );
        assert_eq!(find("/mnt/archive").device, "nas.example:/archive");
        assert_eq!(find("/").fstype, "ext4");
        let m = read_mounts(&disk_fixture("linux-4.18")).unwrap();
        assert_eq!(m[2].device, "/dev/mapper/rhel-root");
        let m = read_mounts(&disk_fixture("linux-3.10")).unwrap();
        assert_eq!(m[3].mountpoint, "/data");
        assert_eq!(unescape_octal(r"a\134b\011c\0"), "a\\b\tc\\0");
    }

    #[test]
    fn a_line_without_the_separator_is_not_mountinfo() {
        let e = parse_mountinfo("/dev/sda1 / ext4 rw 0 0\n").unwrap_err();
        assert!(e.starts_with("line 1: not a mountinfo line"), "{e}");
    }
}
