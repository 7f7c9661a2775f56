//! The host beneath the trading stack. Its network stack: the kernel's UDP and TCP
//! counters (the market-data loss signal); for the UDP ports named in
//! `host.udp_ports`, each socket's receive queue and drop counter (which feed is
//! dropping); and each interface's traffic, errors, drops, state and speed. Beside it
//! the clock's synchronisation ([`clock`]) and the disks and filesystems ([`storage`]),
//! each a section of this one collector with its own `host.*` switch.
//!
//! A platform source only reads: [`linux`] parses
//! `/proc/net/{snmp,snmp6,netstat,udp,udp6,dev}` and sysfs (pure parsers, tested on
//! fixture trees of two kernels), `macos` reads `net.inet.udp.stats`,
//! `net.inet.tcp.stats` and the `NET_RT_IFLIST2` interface list, and [`darwin`] decodes
//! those (pure, tested on Linux with captured-shape bytes). [`families`] turns either into
//! metric families. A counter the kernel does not keep is absent, never 0; macOS has no
//! per-socket drop counter, so the per-socket families are absent there.

pub(crate) mod clock;
#[cfg(any(target_os = "macos", test))]
pub(crate) mod darwin;
/// This collector against the running kernel (Linux): real sockets, processes, mounts.
#[cfg(test)]
mod kernel_tests;
#[cfg(any(target_os = "linux", test))]
pub(crate) mod linux;
#[cfg(target_os = "macos")]
mod macos;
pub(crate) mod sntp;
pub(crate) mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::{BlockingCollector, CollectError};
use crate::config::{HostConfig, Pattern};
use crate::model::{Kind, MetricDef, def};
use crate::store::Family;

pub(crate) const UDP_DATAGRAMS_RECEIVED_TOTAL: MetricDef = def(
    "m4watch_udp_datagrams_received_total",
    Kind::Counter,
    &[],
    "UDP datagrams the kernel delivered to sockets (IPv4 and IPv6).",
);

pub(crate) const UDP_DATAGRAMS_SENT_TOTAL: MetricDef = def(
    "m4watch_udp_datagrams_sent_total",
    Kind::Counter,
    &[],
    "UDP datagrams the kernel sent (IPv4 and IPv6).",
);

pub(crate) const UDP_RECEIVE_ERRORS_TOTAL: MetricDef = def(
    "m4watch_udp_receive_errors_total",
    Kind::Counter,
    &[],
    "UDP datagrams received but not delivered, for any reason (receive-buffer and checksum errors included; Linux InErrors); absent on macOS.",
);

pub(crate) const UDP_RECEIVE_BUFFER_ERRORS_TOTAL: MetricDef = def(
    "m4watch_udp_receive_buffer_errors_total",
    Kind::Counter,
    &[],
    "UDP datagrams dropped because the receiving socket's buffer was full (Linux RcvbufErrors, macOS udps_fullsock): the market-data loss signal.",
);

pub(crate) const UDP_SEND_BUFFER_ERRORS_TOTAL: MetricDef = def(
    "m4watch_udp_send_buffer_errors_total",
    Kind::Counter,
    &[],
    "UDP datagrams not sent because the sending socket's buffer was full (Linux SndbufErrors); absent on macOS.",
);

pub(crate) const UDP_NO_PORT_ERRORS_TOTAL: MetricDef = def(
    "m4watch_udp_no_port_errors_total",
    Kind::Counter,
    &[],
    "UDP datagrams that arrived for a port no socket listens on.",
);

pub(crate) const UDP_CHECKSUM_ERRORS_TOTAL: MetricDef = def(
    "m4watch_udp_checksum_errors_total",
    Kind::Counter,
    &[],
    "UDP datagrams dropped for a bad checksum; absent on kernels without the counter (Linux before 3.10).",
);

pub(crate) const TCP_RETRANSMITTED_SEGMENTS_TOTAL: MetricDef = def(
    "m4watch_tcp_retransmitted_segments_total",
    Kind::Counter,
    &[],
    "TCP segments retransmitted (Linux RetransSegs, macOS tcps_sndrexmitpack).",
);

pub(crate) const TCP_LISTEN_OVERFLOWS_TOTAL: MetricDef = def(
    "m4watch_tcp_listen_overflows_total",
    Kind::Counter,
    &[],
    "Connections refused because a listening socket's accept queue was full (Linux ListenOverflows, macOS tcps_listendrop).",
);

pub(crate) const TCP_LISTEN_DROPS_TOTAL: MetricDef = def(
    "m4watch_tcp_listen_drops_total",
    Kind::Counter,
    &[],
    "Connection attempts a listening socket dropped for any reason, overflows included (Linux ListenDrops); absent on macOS.",
);

pub(crate) const TCP_RESETS_SENT_TOTAL: MetricDef = def(
    "m4watch_tcp_resets_sent_total",
    Kind::Counter,
    &[],
    "TCP segments sent with the RST flag (Linux OutRsts); absent on macOS, which counts RSTs together with SYNs and FINs.",
);

pub(crate) const TCP_ESTABLISHED_RESETS_TOTAL: MetricDef = def(
    "m4watch_tcp_established_resets_total",
    Kind::Counter,
    &[],
    "TCP connections reset from the established or close-wait state (Linux EstabResets); absent on macOS.",
);

pub(crate) const UDP_SOCKET_RECEIVE_QUEUE_BYTES: MetricDef = def(
    "m4watch_udp_socket_receive_queue_bytes",
    Kind::Gauge,
    &["port", "local_address"],
    "Bytes waiting in the receive queues of the UDP sockets bound to a watched port (host.udp_ports) and address; absent on macOS.",
);

pub(crate) const UDP_SOCKET_DROPS_TOTAL: MetricDef = def(
    "m4watch_udp_socket_drops_total",
    Kind::Counter,
    &["port", "local_address"],
    "Datagrams the kernel dropped for the UDP sockets bound to a watched port (host.udp_ports) and address, summed over the sockets open now (Linux /proc/net/udp drops); absent on macOS.",
);

pub(crate) const NETWORK_RECEIVE_BYTES_TOTAL: MetricDef = def(
    "m4watch_network_receive_bytes_total",
    Kind::Counter,
    &["device"],
    "Bytes received on a network interface.",
);

pub(crate) const NETWORK_TRANSMIT_BYTES_TOTAL: MetricDef = def(
    "m4watch_network_transmit_bytes_total",
    Kind::Counter,
    &["device"],
    "Bytes sent on a network interface.",
);

pub(crate) const NETWORK_RECEIVE_PACKETS_TOTAL: MetricDef = def(
    "m4watch_network_receive_packets_total",
    Kind::Counter,
    &["device"],
    "Packets received on a network interface.",
);

pub(crate) const NETWORK_TRANSMIT_PACKETS_TOTAL: MetricDef = def(
    "m4watch_network_transmit_packets_total",
    Kind::Counter,
    &["device"],
    "Packets sent on a network interface.",
);

pub(crate) const NETWORK_RECEIVE_ERRS_TOTAL: MetricDef = def(
    "m4watch_network_receive_errs_total",
    Kind::Counter,
    &["device"],
    "Receive errors the driver counted on a network interface (bad frames, CRC, overruns).",
);

pub(crate) const NETWORK_TRANSMIT_ERRS_TOTAL: MetricDef = def(
    "m4watch_network_transmit_errs_total",
    Kind::Counter,
    &["device"],
    "Transmit errors the driver counted on a network interface.",
);

pub(crate) const NETWORK_RECEIVE_DROP_TOTAL: MetricDef = def(
    "m4watch_network_receive_drop_total",
    Kind::Counter,
    &["device"],
    "Received packets a network interface dropped before the protocol stack (Linux rx drop, macOS ifi_iqdrops).",
);

pub(crate) const NETWORK_TRANSMIT_DROP_TOTAL: MetricDef = def(
    "m4watch_network_transmit_drop_total",
    Kind::Counter,
    &["device"],
    "Packets to send that a network interface dropped (Linux tx drop, macOS send-queue drops).",
);

pub(crate) const NETWORK_UP: MetricDef = def(
    "m4watch_network_up",
    Kind::Gauge,
    &["device"],
    "1 if a network interface is up and running (Linux operstate up; macOS IFF_UP and IFF_RUNNING), 0 if not; absent when the kernel does not know (Linux operstate unknown, as for loopback).",
);

pub(crate) const NETWORK_SPEED_BYTES: MetricDef = def(
    "m4watch_network_speed_bytes",
    Kind::Gauge,
    &["device"],
    "Link speed of a network interface, in bytes per second; absent where the driver reports none.",
);

/// The host collector's families, for the catalogue.
pub(crate) const METRICS: &[MetricDef] = &[
    UDP_DATAGRAMS_RECEIVED_TOTAL,
    UDP_DATAGRAMS_SENT_TOTAL,
    UDP_RECEIVE_ERRORS_TOTAL,
    UDP_RECEIVE_BUFFER_ERRORS_TOTAL,
    UDP_SEND_BUFFER_ERRORS_TOTAL,
    UDP_NO_PORT_ERRORS_TOTAL,
    UDP_CHECKSUM_ERRORS_TOTAL,
    TCP_RETRANSMITTED_SEGMENTS_TOTAL,
    TCP_LISTEN_OVERFLOWS_TOTAL,
    TCP_LISTEN_DROPS_TOTAL,
    TCP_RESETS_SENT_TOTAL,
    TCP_ESTABLISHED_RESETS_TOTAL,
    UDP_SOCKET_RECEIVE_QUEUE_BYTES,
    UDP_SOCKET_DROPS_TOTAL,
    NETWORK_RECEIVE_BYTES_TOTAL,
    NETWORK_TRANSMIT_BYTES_TOTAL,
    NETWORK_RECEIVE_PACKETS_TOTAL,
    NETWORK_TRANSMIT_PACKETS_TOTAL,
    NETWORK_RECEIVE_ERRS_TOTAL,
    NETWORK_TRANSMIT_ERRS_TOTAL,
    NETWORK_RECEIVE_DROP_TOTAL,
    NETWORK_TRANSMIT_DROP_TOTAL,
    NETWORK_UP,
    NETWORK_SPEED_BYTES,
];

/// The kernel's protocol counters by family name (the unlabelled [`METRICS`]); a
/// counter this kernel does not keep has no entry.
pub(crate) type NetCounters = BTreeMap<&'static str, u64>;

/// One UDP socket as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpSocket {
    pub local_address: std::net::IpAddr,
    pub port: u16,
    /// Bytes in the receive queue.
    pub rx_queue: u64,
    /// Datagrams dropped for this socket; `None` on kernels without the column.
    pub drops: Option<u64>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interface {
    pub name: String,
    /// Per-interface counters by family name (the `_total` families labelled by
    /// interface); one the platform does not count has no entry.
    pub counters: NetCounters,
    /// Up and running; `None` where the kernel does not know.
    pub up: Option<bool>,
    /// Link speed in bytes per second; `None` where the driver reports none.
    pub speed_bytes: Option<u64>,
}

/// One reading of the network stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetReading {
    pub counters: NetCounters,
    /// `None` where the platform cannot list sockets (macOS): the per-socket families
    /// are then absent rather than empty-but-known.
    pub sockets: Option<Vec<UdpSocket>>,
    pub interfaces: Vec<Interface>,
}

/// The families of one reading; per-socket series only for `ports`, summed per port
/// and local address (`SO_REUSEPORT` groups share both).
pub(crate) fn families(r: &NetReading, ports: &BTreeSet<u16>) -> Vec<Family> {
    // Every unlabelled family is one kernel counter, every counter labelled by
    // interface one interface counter.
    let mut out: Vec<Family> = METRICS
        .iter()
        .filter(|d| d.labels.is_empty())
        .map(|d| {
            let mut f = Family::new(d);
            if let Some(&v) = r.counters.get(d.name) {
                f.push_value(v as f64);
            }
            f
        })
        .collect();
    for d in METRICS
        .iter()
        .filter(|d| d.labels == ["device"] && d.kind == Kind::Counter)
    {
        let mut f = Family::new(d);
        for i in &r.interfaces {
            if let Some(&v) = i.counters.get(d.name) {
                f.push([("device", i.name.as_str())], v as f64);
            }
        }
        out.push(f);
    }
    let mut up = Family::new(&NETWORK_UP);
    let mut speed = Family::new(&NETWORK_SPEED_BYTES);
    for i in &r.interfaces {
        let l = [("device", i.name.as_str())];
        if let Some(u) = i.up {
            up.push(l, if u { 1.0 } else { 0.0 });
        }
        if let Some(b) = i.speed_bytes {
            speed.push(l, b as f64);
        }
    }
    out.extend([up, speed]);
    let mut queue = Family::new(&UDP_SOCKET_RECEIVE_QUEUE_BYTES);
    let mut drops = Family::new(&UDP_SOCKET_DROPS_TOTAL);
    if let Some(sockets) = &r.sockets {
        // (port, address) -> (queued bytes, drops; None if any socket lacks the column)
        let mut by_key: BTreeMap<(u16, String), (u64, Option<u64>)> = BTreeMap::new();
        for s in sockets.iter().filter(|s| ports.contains(&s.port)) {
            let e = by_key
                .entry((s.port, s.local_address.to_string()))
                .or_insert((0, Some(0)));
            e.0 += s.rx_queue;
            e.1 = e.1.zip(s.drops).map(|(a, b)| a + b);
        }
        for ((port, addr), (q, d)) in by_key {
            let labels = [("port", port.to_string()), ("local_address", addr)];
            queue.push(labels.clone(), q as f64);
            if let Some(d) = d {
                drops.push(labels, d as f64);
            }
        }
    }
    out.extend([queue, drops]);
    out
}

/// Reads the network stack, the clock, the disks and the filesystems of the machine
/// m4watch runs on.
pub(crate) struct HostCollector {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    procfs: PathBuf,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    sysfs: PathBuf,
    ports: BTreeSet<u16>,
    /// Interfaces left out of the per-interface families.
    interfaces_ignore: Pattern,
    clock: bool,
    /// The SNTP probe of `host.clock.ntp_servers`; `None` when none are configured.
    sntp: Option<sntp::SntpProbe>,
    /// The devices left out; `None`: the disks section is off.
    disks: Option<Pattern>,
    /// `None`: the filesystems section is off.
    filesystems: Option<storage::FilesystemWatch>,
}

impl HostCollector {
    pub(crate) fn new(config: &HostConfig) -> Self {
        HostCollector {
            procfs: config.procfs.clone(),
            sysfs: config.sysfs.clone(),
            ports: config.udp_ports.iter().copied().collect(),
            interfaces_ignore: config.interfaces.ignore.clone(),
            clock: config.clock.enabled,
            sntp: (config.clock.enabled && !config.clock.ntp_servers.is_empty()).then(|| {
                sntp::SntpProbe::new(
                    config.clock.ntp_servers.clone(),
                    config.clock.ntp_timeout.0,
                    config.clock.ntp_interval.0,
                )
            }),
            disks: config.disks.enabled.then(|| config.disks.ignore.clone()),
            filesystems: config
                .filesystems
                .enabled
                .then(|| storage::FilesystemWatch::new(&config.filesystems)),
        }
    }

    /// One reading, as the platform gives it.
    pub(crate) fn read(&self) -> Result<NetReading, CollectError> {
        #[cfg(target_os = "linux")]
        {
            linux::read(&self.procfs, &self.sysfs, !self.ports.is_empty())
        }
        #[cfg(target_os = "macos")]
        {
            macos::read()
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        {
            Err(CollectError(
                "the host collector supports Linux and macOS only".into(),
            ))
        }
    }

    /// The clock as the kernel's discipline reports it; `None` where the platform has
    /// no trustworthy reading (macOS, see [`clock`]).
    pub(crate) fn read_clock(&self) -> Result<Option<clock::ClockReading>, CollectError> {
        #[cfg(target_os = "linux")]
        {
            let t = clock::read().map_err(|e| CollectError(format!("adjtimex: {e}")))?;
            Ok(Some(clock::ClockReading::from_timex(&t)))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(None)
        }
    }

    /// Every block device, before `host.disks.ignore`.
    pub(crate) fn read_disks(&self) -> Result<Vec<storage::Disk>, CollectError> {
        #[cfg(target_os = "linux")]
        {
            linux::read_disks(&self.procfs)
        }
        #[cfg(target_os = "macos")]
        {
            macos::disks()
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        {
            Ok(Vec::new())
        }
    }

    /// The filesystems `watch` keeps, each with its answer (`None`: failed or timed
    /// out).
    pub(crate) fn read_filesystems(
        &self,
        watch: &storage::FilesystemWatch,
    ) -> Result<Vec<(storage::Mount, Option<storage::FsStat>)>, CollectError> {
        #[cfg(target_os = "linux")]
        {
            let mounts = storage::keep_mounts(
                linux::read_mounts(&self.procfs)?,
                &watch.ignore_types,
                &watch.ignore_mounts,
            );
            Ok(storage::stat_all(
                mounts,
                watch.stat_timeout,
                &watch.stuck,
                linux::statvfs,
            ))
        }
        #[cfg(target_os = "macos")]
        {
            let all = macos::filesystems()?;
            let keep = storage::keep_mounts(
                all.iter().map(|(m, _)| m.clone()).collect(),
                &watch.ignore_types,
                &watch.ignore_mounts,
            );
            Ok(all.into_iter().filter(|(m, _)| keep.contains(m)).collect())
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        {
            let _ = watch;
            Ok(Vec::new())
        }
    }
}

impl BlockingCollector for HostCollector {
    fn name(&self) -> &'static str {
        super::CollectorKind::Host.name()
    }

    fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        let mut net = self.read()?;
        net.interfaces
            .retain(|i| !self.interfaces_ignore.matches(&i.name));
        let mut out = families(&net, &self.ports);
        if self.clock {
            out.extend(clock::families(self.read_clock()?.as_ref()));
        }
        if let Some(p) = &mut self.sntp {
            p.poll(std::time::Instant::now());
            out.extend(p.families());
        }
        if let Some(ignore) = &self.disks {
            out.extend(storage::disk_families(&storage::keep_disks(
                self.read_disks()?,
                ignore,
            )));
        }
        if let Some(watch) = &self.filesystems {
            out.extend(storage::filesystem_families(&self.read_filesystems(watch)?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(fams: &[Family], name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        fams.iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .samples
            .iter()
            .map(|s| (s.labels.clone().into_iter().collect(), s.value))
            .collect()
    }

    fn sock(addr: &str, port: u16, rx_queue: u64, drops: Option<u64>) -> UdpSocket {
        UdpSocket {
            local_address: addr.parse().unwrap(),
            port,
            rx_queue,
            drops,
        }
    }

    #[test]
    fn unknown_counters_are_absent_and_watched_sockets_are_summed_per_port_and_address() {
        let r = NetReading {
            counters: NetCounters::from([(UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, 7)]),
            sockets: Some(vec![
                sock("0.0.0.0", 30001, 100, Some(2)),
                sock("0.0.0.0", 30001, 50, Some(3)),
                sock("::", 30001, 0, Some(0)),
                sock("127.0.0.1", 30002, 9, Some(1)),
            ]),
            ..NetReading::default()
        };
        let fams = families(&r, &BTreeSet::from([30001]));
        assert_eq!(
            value(&fams, "m4watch_udp_receive_buffer_errors_total"),
            vec![(vec![], 7.0)]
        );
        assert!(value(&fams, "m4watch_udp_checksum_errors_total").is_empty());
        let l = |a: &str| {
            vec![
                ("local_address".to_string(), a.to_string()),
                ("port".to_string(), "30001".to_string()),
            ]
        };
        let mut drops = value(&fams, "m4watch_udp_socket_drops_total");
        drops.iter_mut().for_each(|(l, _)| l.sort());
        assert_eq!(drops, vec![(l("0.0.0.0"), 5.0), (l("::"), 0.0)]);
        let mut queue = value(&fams, "m4watch_udp_socket_receive_queue_bytes");
        queue.iter_mut().for_each(|(l, _)| l.sort());
        assert_eq!(queue, vec![(l("0.0.0.0"), 150.0), (l("::"), 0.0)]);
    }

    #[test]
    fn interfaces_export_what_is_known() {
        let r = NetReading {
            interfaces: vec![
                Interface {
                    name: "en0".into(),
                    counters: NetCounters::from([(NETWORK_RECEIVE_ERRS_TOTAL.name, 3)]),
                    up: Some(true),
                    speed_bytes: Some(1_250_000_000),
                },
                Interface {
                    name: "lo".into(),
                    counters: NetCounters::new(),
                    up: None,
                    speed_bytes: None,
                },
            ],
            ..NetReading::default()
        };
        let fams = families(&r, &BTreeSet::new());
        let en0 = vec![("device".to_string(), "en0".to_string())];
        assert_eq!(
            value(&fams, "m4watch_network_receive_errs_total"),
            vec![(en0.clone(), 3.0)]
        );
        assert!(value(&fams, "m4watch_network_transmit_errs_total").is_empty());
        assert_eq!(value(&fams, "m4watch_network_up"), vec![(en0.clone(), 1.0)]);
        assert_eq!(
            value(&fams, "m4watch_network_speed_bytes"),
            vec![(en0, 1.25e9)]
        );
    }

    #[test]
    fn without_a_socket_list_the_per_socket_families_are_empty() {
        let fams = families(&NetReading::default(), &BTreeSet::from([30001]));
        assert!(value(&fams, "m4watch_udp_socket_drops_total").is_empty());
        assert!(value(&fams, "m4watch_udp_socket_receive_queue_bytes").is_empty());
    }
}
