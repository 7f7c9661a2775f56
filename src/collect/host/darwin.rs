//! macOS's `struct udpstat` and `struct tcpstat` (XNU `bsd/netinet/udp_var.h`,
//! `tcp_var.h`), as `sysctlbyname("net.inet.udp.stats")` and `"net.inet.tcp.stats"`
//! return them, decoded from bytes; the `NET_RT_IFLIST2` interface list; a block
//! storage driver's `Statistics` dictionary; and `getfsstat`'s `struct statfs` array.
//! Platform-free so the layouts are tested on Linux.
//!
//! Only the fields m4watch exports are read, at their offsets: both structs are flat
//! arrays of `u_int32_t` counters that XNU extends only at the end, so a longer buffer
//! (a newer macOS) reads the same and a shorter one is refused. Both Apple targets
//! (arm64, x86_64) are little-endian. The counters are 32-bit and wrap; Prometheus's
//! `rate()` takes a wrap for a counter reset.

use std::collections::BTreeMap;

use super::*;
use crate::model::MetricDef;

/// Fields up to and including the last one read, per struct (`u_int32_t` each).
const UDPSTAT_MIN_FIELDS: usize = 10;
const TCPSTAT_MIN_FIELDS: usize = 61;

/// `(family, field index)` in `struct udpstat`.
const UDPSTAT: &[(&MetricDef, usize)] = &[
    (&UDP_DATAGRAMS_RECEIVED_TOTAL, 0), // udps_ipackets: total input packets
    (&UDP_CHECKSUM_ERRORS_TOTAL, 2),    // udps_badsum: checksum error
    (&UDP_NO_PORT_ERRORS_TOTAL, 4),     // udps_noport: no socket on port
    (&UDP_RECEIVE_BUFFER_ERRORS_TOTAL, 6), // udps_fullsock: input socket full
    (&UDP_DATAGRAMS_SENT_TOTAL, 9),     // udps_opackets: total output packets
];

/// `(family, field index)` in `struct tcpstat`.
const TCPSTAT: &[(&MetricDef, usize)] = &[
    (&TCP_RETRANSMITTED_SEGMENTS_TOTAL, 18), // tcps_sndrexmitpack: data packets retransmitted
    (&TCP_LISTEN_OVERFLOWS_TOTAL, 60),       // tcps_listendrop: listen queue overflows
];

fn field(bytes: &[u8], index: usize) -> u64 {
    u32_at(bytes, index * 4).into()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A statistics struct shorter than the fields read: its layout is not the one known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{sysctl}: {len} bytes, expected at least {expected} (struct layout changed?)")]
pub(crate) struct ShortStruct {
    /// The sysctl that returned it.
    pub sysctl: &'static str,
    pub len: usize,
    pub expected: usize,
}

fn check(bytes: &[u8], fields: usize, sysctl: &'static str) -> Result<(), ShortStruct> {
    if bytes.len() < fields * 4 {
        return Err(ShortStruct {
            sysctl,
            len: bytes.len(),
            expected: fields * 4,
        });
    }
    Ok(())
}

/// The counters from the two structs' bytes. What XNU does not count (receive errors
/// as a whole, send-buffer errors, listen drops besides overflows, resets sent on
/// their own, established resets) stays `None`.
pub(crate) fn counters(udpstat: &[u8], tcpstat: &[u8]) -> Result<NetCounters, ShortStruct> {
    check(udpstat, UDPSTAT_MIN_FIELDS, "net.inet.udp.stats")?;
    check(tcpstat, TCPSTAT_MIN_FIELDS, "net.inet.tcp.stats")?;
    let udp = UDPSTAT.iter().map(|&(d, i)| (d.name, field(udpstat, i)));
    let tcp = TCPSTAT.iter().map(|&(d, i)| (d.name, field(tcpstat, i)));
    Ok(udp.chain(tcp).collect())
}

/// `rtm_type` of an interface message with 64-bit counters (`struct if_msghdr2`).
pub(crate) const RTM_IFINFO2: u8 = 0x12;
/// `sizeof(struct if_msghdr2)`: a 32-byte header, then `struct if_data64` (128 bytes).
const IF_MSGHDR2_LEN: usize = 160;
const IFM_DATA: usize = 32;
const IFF_UP: i32 = 0x1;
const IFF_RUNNING: i32 = 0x40;
/// `ifm_addrs` bit of the interface's link-level address (`struct sockaddr_dl`), the
/// first address of an `RTM_IFINFO2` message when it is the only one.
const RTA_IFP: i32 = 0x10;

/// `(family, byte offset)` of the `u_int64_t` counters in `struct if_data64`.
const IF_DATA64: &[(&MetricDef, usize)] = &[
    (&NETWORK_RECEIVE_PACKETS_TOTAL, 24),  // ifi_ipackets
    (&NETWORK_RECEIVE_ERRS_TOTAL, 32),     // ifi_ierrors
    (&NETWORK_TRANSMIT_PACKETS_TOTAL, 40), // ifi_opackets
    (&NETWORK_TRANSMIT_ERRS_TOTAL, 48),    // ifi_oerrors
    (&NETWORK_RECEIVE_BYTES_TOTAL, 64),    // ifi_ibytes
    (&NETWORK_TRANSMIT_BYTES_TOTAL, 72),   // ifi_obytes
    (&NETWORK_RECEIVE_DROP_TOTAL, 96),     // ifi_iqdrops
];
/// `ifi_baudrate` (bits per second) in `struct if_data64`.
const IFI_BAUDRATE: usize = 16;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The little-endian `u64` at byte `at` of a kernel struct (both darwin targets are
/// little-endian); the process-group decoder reads `rusage_info` with it too.
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The interfaces of a `sysctl {CTL_NET, PF_ROUTE, 0, 0, NET_RT_IFLIST2, 0}` buffer: a
/// sequence of routing messages, each starting with its length; the `RTM_IFINFO2`
/// ones carry an interface's flags and 64-bit counters and, after them, its
/// `sockaddr_dl` with the name. `name_of` names an interface by index when the
/// message carries no name.
pub(crate) fn interfaces(
    buf: &[u8],
    name_of: impl Fn(u16) -> Option<String>,
) -> Result<Vec<Interface>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16_at(buf, at) as usize;
        if len < 4 || at + len > buf.len() {
            return Err(format!("routing message at byte {at}: bad length {len}"));
        }
        let msg = &buf[at..at + len];
        at += len;
        if msg[3] != RTM_IFINFO2 {
            continue;
        }
        if len < IF_MSGHDR2_LEN {
            return Err(format!(
                "if_msghdr2 of {len} bytes, expected at least {IF_MSGHDR2_LEN}"
            ));
        }
        let (addrs, flags, index) = (i32_at(msg, 4), i32_at(msg, 8), u16_at(msg, 12));
        let data = &msg[IFM_DATA..IF_MSGHDR2_LEN];
        // sockaddr_dl: sdl_nlen at 5, the name at 8.
        let name = (addrs == RTA_IFP && len >= IF_MSGHDR2_LEN + 8)
            .then(|| {
                let nlen = msg[IF_MSGHDR2_LEN + 5] as usize;
                msg.get(IF_MSGHDR2_LEN + 8..IF_MSGHDR2_LEN + 8 + nlen)
                    .map(|n| String::from_utf8_lossy(n).into_owned())
            })
            .flatten()
            .filter(|n| !n.is_empty())
            .or_else(|| name_of(index))
            .ok_or(format!("interface index {index} has no name"))?;
        let mut counters: NetCounters = IF_DATA64
            .iter()
            .map(|&(d, off)| (d.name, u64_at(data, off)))
            .collect();
        // ifm_snd_drops: an int, drops in the send queue.
        counters.insert(
            NETWORK_TRANSMIT_DROP_TOTAL.name,
            i32_at(msg, 24).max(0) as u64,
        );
        let baud = u64_at(data, IFI_BAUDRATE);
        out.push(Interface {
            name,
            counters,
            up: Some(flags & IFF_UP != 0 && flags & IFF_RUNNING != 0),
            speed_bytes: (baud > 0).then_some(baud / 8),
        });
    }
    Ok(out)
}

/// `(family, key, units per base unit)` of an `IOBlockStorageDriver`'s `Statistics`
/// dictionary (IOKit `IOBlockStorageDriver.h`); times are nanoseconds. macOS keeps no time busy,
/// discard or flush count there, so those families are absent.
const BLOCK_STORAGE_STATISTICS: &[(&MetricDef, &str, f64)] = &[
    (
        &storage::DISK_READS_COMPLETED_TOTAL,
        "Operations (Read)",
        1.0,
    ),
    (
        &storage::DISK_WRITES_COMPLETED_TOTAL,
        "Operations (Write)",
        1.0,
    ),
    (&storage::DISK_READ_BYTES_TOTAL, "Bytes (Read)", 1.0),
    (&storage::DISK_WRITTEN_BYTES_TOTAL, "Bytes (Write)", 1.0),
    (
        &storage::DISK_READ_TIME_SECONDS_TOTAL,
        "Total Time (Read)",
        1e9,
    ),
    (
        &storage::DISK_WRITE_TIME_SECONDS_TOTAL,
        "Total Time (Write)",
        1e9,
    ),
];

/// A whole disk (`device` is its IOMedia's BSD name) from its driver's statistics; a
/// key the driver does not list is absent.
pub(crate) fn disk(device: &str, statistics: &BTreeMap<String, i64>) -> storage::Disk {
    storage::Disk {
        device: device.to_string(),
        counters: BLOCK_STORAGE_STATISTICS
            .iter()
            .filter_map(|&(d, key, per)| {
                let v = *statistics.get(key)?;
                (v >= 0).then(|| (d.name, v as f64 / per))
            })
            .collect(),
    }
}

/// `sizeof(struct statfs)` with 64-bit inodes (`_DARWIN_FEATURE_64_BIT_INODE`, the only
/// layout on arm64 and the default on x86_64 since 10.6), the same on both targets.
pub(crate) const STATFS_LEN: usize = 2168;
/// Offsets in `struct statfs` (`sys/mount.h`).
const F_BSIZE: usize = 0;
const F_BLOCKS: usize = 8;
const F_BFREE: usize = 16;
const F_BAVAIL: usize = 24;
const F_FILES: usize = 32;
const F_FFREE: usize = 40;
const F_FLAGS: usize = 64;
const F_FSTYPENAME: (usize, usize) = (72, 16);
const F_MNTONNAME: (usize, usize) = (88, 1024);
const F_MNTFROMNAME: (usize, usize) = (1112, 1024);
const MNT_RDONLY: u32 = 0x1;

fn c_string(b: &[u8], (at, len): (usize, usize)) -> String {
    let field = &b[at..at + len];
    let end = field.iter().position(|&c| c == 0).unwrap_or(len);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The filesystems of a `getfsstat` buffer: `struct statfs` records back to back.
pub(crate) fn filesystems(
    buf: &[u8],
) -> Result<Vec<(storage::Mount, Option<storage::FsStat>)>, String> {
    if buf.len() % STATFS_LEN != 0 {
        return Err(format!(
            "getfsstat: {} bytes is not a whole number of {STATFS_LEN}-byte statfs records (struct layout changed?)",
            buf.len()
        ));
    }
    Ok(buf
        .chunks_exact(STATFS_LEN)
        .map(|r| {
            let bsize = u64::from(u32_at(r, F_BSIZE));
            let flags = u32_at(r, F_FLAGS);
            let mount = storage::Mount {
                device: c_string(r, F_MNTFROMNAME),
                mountpoint: c_string(r, F_MNTONNAME),
                fstype: c_string(r, F_FSTYPENAME),
            };
            let stat = storage::FsStat {
                size_bytes: u64_at(r, F_BLOCKS) * bsize,
                free_bytes: u64_at(r, F_BFREE) * bsize,
                available_bytes: u64_at(r, F_BAVAIL) * bsize,
                files: u64_at(r, F_FILES),
                files_free: u64_at(r, F_FFREE),
                readonly: flags & MNT_RDONLY != 0,
            };
            (mount, Some(stat))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct of `n` u32 counters as the kernel lays it out, field i = base + i,
    /// with `set` overriding some.
    fn captured(n: usize, set: &[(usize, u32)]) -> Vec<u8> {
        let mut v: Vec<u32> = (0..n as u32).map(|i| 1000 + i).collect();
        for &(i, x) in set {
            v[i] = x;
        }
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_the_fields_at_their_xnu_offsets() {
        // macOS 14's udpstat has 22 fields (88 bytes); tcpstat is much longer.
        let u = captured(22, &[(0, 5_000_000), (2, 3), (4, 17), (6, 4242), (9, 77)]);
        let t = captured(200, &[(18, 901), (60, 12), (24, 999_999)]);
        let c = counters(&u, &t).unwrap();
        assert_eq!(
            c,
            NetCounters::from([
                (UDP_DATAGRAMS_RECEIVED_TOTAL.name, 5_000_000),
                (UDP_DATAGRAMS_SENT_TOTAL.name, 77),
                (UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, 4242),
                (UDP_NO_PORT_ERRORS_TOTAL.name, 17),
                (UDP_CHECKSUM_ERRORS_TOTAL.name, 3),
                (TCP_RETRANSMITTED_SEGMENTS_TOTAL.name, 901),
                (TCP_LISTEN_OVERFLOWS_TOTAL.name, 12),
            ])
        );
    }

    #[test]
    fn a_counter_at_u32_max_is_not_negative() {
        let u = captured(22, &[(6, u32::MAX)]);
        let t = captured(61, &[]);
        assert_eq!(
            counters(&u, &t).unwrap()[UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name],
            u32::MAX as u64
        );
    }

    /// An RTM_IFINFO2 message as the kernel writes it: if_msghdr2, then (when named)
    /// a sockaddr_dl padded to 4 bytes.
    fn ifinfo2(
        index: u16,
        name: Option<&str>,
        flags: i32,
        data: &[(usize, u64)],
        snd_drops: i32,
    ) -> Vec<u8> {
        let mut m = vec![0u8; IF_MSGHDR2_LEN];
        m[2] = 7; // RTM_VERSION
        m[3] = RTM_IFINFO2;
        m[4..8].copy_from_slice(&(if name.is_some() { RTA_IFP } else { 0 }).to_le_bytes());
        m[8..12].copy_from_slice(&flags.to_le_bytes());
        m[12..14].copy_from_slice(&index.to_le_bytes());
        m[24..28].copy_from_slice(&snd_drops.to_le_bytes());
        for &(off, v) in data {
            m[IFM_DATA + off..IFM_DATA + off + 8].copy_from_slice(&v.to_le_bytes());
        }
        if let Some(n) = name {
            let mut sdl = vec![0u8; 8 + n.len() + 6];
            sdl[0] = sdl.len() as u8;
            sdl[1] = 18; // AF_LINK
            sdl[2..4].copy_from_slice(&index.to_le_bytes());
            sdl[5] = n.len() as u8;
            sdl[6] = 6; // a MAC address follows the name
            sdl[8..8 + n.len()].copy_from_slice(n.as_bytes());
            m.extend(&sdl);
            m.resize(m.len().div_ceil(4) * 4, 0);
        }
        let len = m.len() as u16;
        m[0..2].copy_from_slice(&len.to_le_bytes());
        m
    }

    #[test]
    fn iflist2_interfaces_with_names_counters_state_and_speed() {
        let mut buf = ifinfo2(
            4,
            Some("en0"),
            IFF_UP | IFF_RUNNING | 0x8800,
            &[
                (16, 10_000_000_000),
                (24, 900),
                (32, 2),
                (40, 800),
                (48, 1),
                (64, 1 << 40),
                (72, 5555),
                (96, 17),
            ],
            3,
        );
        // An address message in between (RTM_NEWMADDR2, 0x13) is skipped.
        buf.extend([8, 0, 7, 0x13, 0, 0, 0, 0]);
        buf.extend(ifinfo2(9, None, IFF_UP, &[], 0));
        let got = interfaces(&buf, |i| (i == 9).then(|| "utun2".to_string())).unwrap();
        assert_eq!(
            got,
            vec![
                Interface {
                    name: "en0".into(),
                    counters: NetCounters::from([
                        (NETWORK_RECEIVE_PACKETS_TOTAL.name, 900),
                        (NETWORK_RECEIVE_ERRS_TOTAL.name, 2),
                        (NETWORK_TRANSMIT_PACKETS_TOTAL.name, 800),
                        (NETWORK_TRANSMIT_ERRS_TOTAL.name, 1),
                        (NETWORK_RECEIVE_BYTES_TOTAL.name, 1 << 40),
                        (NETWORK_TRANSMIT_BYTES_TOTAL.name, 5555),
                        (NETWORK_RECEIVE_DROP_TOTAL.name, 17),
                        (NETWORK_TRANSMIT_DROP_TOTAL.name, 3),
                    ]),
                    up: Some(true),
                    speed_bytes: Some(1_250_000_000),
                },
                Interface {
                    name: "utun2".into(),
                    counters: IF_DATA64
                        .iter()
                        .map(|(d, _)| (d.name, 0))
                        .chain([(NETWORK_TRANSMIT_DROP_TOTAL.name, 0)])
                        .collect(),
                    up: Some(false),
                    speed_bytes: None,
                },
            ]
        );
    }

    #[test]
    fn a_truncated_routing_message_is_refused() {
        let mut buf = ifinfo2(4, Some("en0"), IFF_UP, &[], 0);
        buf.truncate(100);
        let e = interfaces(&buf, |_| None).unwrap_err();
        assert!(
            e.starts_with("routing message at byte 0: bad length"),
            "{e}"
        );
    }

    #[test]
    fn a_short_struct_is_refused() {
        let e = counters(&captured(9, &[]), &captured(200, &[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "net.inet.udp.stats: 36 bytes, expected at least 40 (struct layout changed?)"
        );
        let e = counters(&captured(22, &[]), &captured(60, &[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "net.inet.tcp.stats: 240 bytes, expected at least 244 (struct layout changed?)"
        );
    }

    #[test]
    fn a_block_storage_driver_s_statistics() {
        // The shape `ioreg -c IOBlockStorageDriver -r -w0` shows for an M4 Max's SSD.
        let stats: BTreeMap<String, i64> = [
            ("Operations (Read)", 8_912_345),
            ("Operations (Write)", 4_120_002),
            ("Bytes (Read)", 301_234_567_168),
            ("Bytes (Write)", 220_111_998_976),
            ("Total Time (Read)", 1_523_000_000_000),
            ("Total Time (Write)", 987_654_321_000),
            ("Latency Time (Read)", 0),
            ("Errors (Read)", 0),
            ("Retries (Write)", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let d = disk("disk0", &stats);
        assert_eq!(d.device, "disk0");
        assert_eq!(
            d.counters,
            BTreeMap::from([
                (storage::DISK_READS_COMPLETED_TOTAL.name, 8_912_345.0),
                (storage::DISK_WRITES_COMPLETED_TOTAL.name, 4_120_002.0),
                (storage::DISK_READ_BYTES_TOTAL.name, 301_234_567_168.0),
                (storage::DISK_WRITTEN_BYTES_TOTAL.name, 220_111_998_976.0),
                (storage::DISK_READ_TIME_SECONDS_TOTAL.name, 1523.0),
                (storage::DISK_WRITE_TIME_SECONDS_TOTAL.name, 987.654321),
            ])
        );
        // A driver that lists nothing (an ejected disk image) has no counters at all.
        assert!(disk("disk9", &BTreeMap::new()).counters.is_empty());
    }

    /// One `struct statfs` as getfsstat writes it.
    fn statfs(
        bsize: u32,
        blocks: [u64; 5],
        flags: u32,
        fstype: &str,
        on: &str,
        from: &str,
    ) -> Vec<u8> {
        let mut r = vec![0u8; STATFS_LEN];
        r[0..4].copy_from_slice(&bsize.to_le_bytes());
        r[4..8].copy_from_slice(&1_048_576i32.to_le_bytes()); // f_iosize
        for (i, v) in blocks.iter().enumerate() {
            r[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        r[F_FLAGS..F_FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
        for (s, (at, _)) in [
            (fstype, F_FSTYPENAME),
            (on, F_MNTONNAME),
            (from, F_MNTFROMNAME),
        ] {
            r[at..at + s.len()].copy_from_slice(s.as_bytes());
        }
        r
    }

    #[test]
    fn getfsstat_records() {
        // The sealed system volume (read-only, MNT_RDONLY | MNT_LOCAL | MNT_ROOTFS ...)
        // and the data volume of an M4 Max, 4 KiB blocks.
        let mut buf = statfs(
            4096,
            [
                242_837_545,
                58_000_000,
                57_000_000,
                2_400_000_000,
                2_399_000_000,
            ],
            0x4801_5001,
            "apfs",
            "/",
            "/dev/disk3s1s1",
        );
        buf.extend(statfs(
            4096,
            [
                242_837_545,
                58_000_000,
                57_000_000,
                2_400_000_000,
                2_398_000_000,
            ],
            0x0400_1080,
            "apfs",
            "/System/Volumes/Data",
            "/dev/disk3s5",
        ));
        let fs = filesystems(&buf).unwrap();
        assert_eq!(fs.len(), 2);
        let (m, s) = &fs[1];
        assert_eq!(
            m,
            &storage::Mount {
                device: "/dev/disk3s5".into(),
                mountpoint: "/System/Volumes/Data".into(),
                fstype: "apfs".into(),
            }
        );
        assert_eq!(
            s.unwrap(),
            storage::FsStat {
                size_bytes: 242_837_545 * 4096,
                free_bytes: 58_000_000 * 4096,
                available_bytes: 57_000_000 * 4096,
                files: 2_400_000_000,
                files_free: 2_398_000_000,
                readonly: false,
            }
        );
        assert!(fs[0].1.unwrap().readonly);
        let e = filesystems(&buf[..STATFS_LEN + 8]).unwrap_err();
        assert!(e.contains("not a whole number"), "{e}");
    }
}
