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
