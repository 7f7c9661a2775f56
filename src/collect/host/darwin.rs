//! macOS's `struct udpstat` and `struct tcpstat` (XNU `bsd/netinet/udp_var.h`,
//! `tcp_var.h`), as `sysctlbyname("net.inet.udp.stats")` and `"net.inet.tcp.stats"`
//! return them, decoded from bytes. Platform-free so the layouts are tested on Linux.
//!
//! Only the fields m4watch exports are read, at their offsets: both structs are flat
//! arrays of `u_int32_t` counters that XNU extends only at the end, so a longer buffer
//! (a newer macOS) reads the same and a shorter one is refused. Both Apple targets
//! (arm64, x86_64) are little-endian. The counters are 32-bit and wrap; Prometheus's
//! `rate()` takes a wrap for a counter reset.

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
    let at = index * 4;
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]).into()
}

fn check(bytes: &[u8], fields: usize, name: &str) -> Result<(), String> {
    if bytes.len() < fields * 4 {
        return Err(format!(
            "{name}: {} bytes, expected at least {} (struct layout changed?)",
            bytes.len(),
            fields * 4
        ));
    }
    Ok(())
}

/// The counters from the two structs' bytes. What XNU does not count (receive errors
/// as a whole, send-buffer errors, listen drops besides overflows, resets sent on
/// their own, established resets) stays `None`.
pub fn counters(udpstat: &[u8], tcpstat: &[u8]) -> Result<NetCounters, String> {
    check(udpstat, UDPSTAT_MIN_FIELDS, "net.inet.udp.stats")?;
    check(tcpstat, TCPSTAT_MIN_FIELDS, "net.inet.tcp.stats")?;
    let udp = UDPSTAT.iter().map(|&(d, i)| (d.name, field(udpstat, i)));
    let tcp = TCPSTAT.iter().map(|&(d, i)| (d.name, field(tcpstat, i)));
    Ok(udp.chain(tcp).collect())
}

/// `rtm_type` of an interface message with 64-bit counters (`struct if_msghdr2`).
pub const RTM_IFINFO2: u8 = 0x12;
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
    (&NETWORK_RECEIVE_ERRORS_TOTAL, 32),   // ifi_ierrors
    (&NETWORK_TRANSMIT_PACKETS_TOTAL, 40), // ifi_opackets
    (&NETWORK_TRANSMIT_ERRORS_TOTAL, 48),  // ifi_oerrors
    (&NETWORK_RECEIVE_BYTES_TOTAL, 64),    // ifi_ibytes
    (&NETWORK_TRANSMIT_BYTES_TOTAL, 72),   // ifi_obytes
    (&NETWORK_RECEIVE_DROPS_TOTAL, 96),    // ifi_iqdrops
];
/// `ifi_baudrate` (bits per second) in `struct if_data64`.
const IFI_BAUDRATE: usize = 16;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The interfaces of a `sysctl {CTL_NET, PF_ROUTE, 0, 0, NET_RT_IFLIST2, 0}` buffer: a
/// sequence of routing messages, each starting with its length; the `RTM_IFINFO2`
/// ones carry an interface's flags and 64-bit counters and, after them, its
/// `sockaddr_dl` with the name. `name_of` names an interface by index when the
/// message carries no name.
pub fn interfaces(
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
            NETWORK_TRANSMIT_DROPS_TOTAL.name,
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
                        (NETWORK_RECEIVE_ERRORS_TOTAL.name, 2),
                        (NETWORK_TRANSMIT_PACKETS_TOTAL.name, 800),
                        (NETWORK_TRANSMIT_ERRORS_TOTAL.name, 1),
                        (NETWORK_RECEIVE_BYTES_TOTAL.name, 1 << 40),
                        (NETWORK_TRANSMIT_BYTES_TOTAL.name, 5555),
                        (NETWORK_RECEIVE_DROPS_TOTAL.name, 17),
                        (NETWORK_TRANSMIT_DROPS_TOTAL.name, 3),
                    ]),
                    up: Some(true),
                    speed_bytes: Some(1_250_000_000),
                },
                Interface {
                    name: "utun2".into(),
                    counters: IF_DATA64
                        .iter()
                        .map(|(d, _)| (d.name, 0))
                        .chain([(NETWORK_TRANSMIT_DROPS_TOTAL.name, 0)])
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
            e,
            "net.inet.udp.stats: 36 bytes, expected at least 40 (struct layout changed?)"
        );
        let e = counters(&captured(22, &[]), &captured(60, &[])).unwrap_err();
        assert_eq!(
            e,
            "net.inet.tcp.stats: 240 bytes, expected at least 244 (struct layout changed?)"
        );
    }
}
