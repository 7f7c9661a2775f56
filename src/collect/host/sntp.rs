//! Clock offset against NTP servers, on every OS: an SNTPv4 client (RFC 4330) that asks
//! each configured server (`host.clock.ntp_servers`) once per `host.clock.ntp_interval`
//! over UDP port 123 from an unprivileged ephemeral port, bounded by
//! `host.clock.ntp_timeout`.
//!
//! This is what makes the clock visible on macOS, whose kernel discipline `timed` does
//! not drive (see [`super::clock`]); on Linux it sits beside the kernel's `adjtimex` view.
//! One exchange gives the offset `((T2 - T1) + (T3 - T4)) / 2` and the round-trip delay
//! `(T4 - T1) - (T3 - T2)`; the true offset lies within `offset ± delay / 2`.
//!
//! A reply counts only if it is a server reply (mode 4) of version 3 or 4, echoes the
//! request's transmit timestamp as its originate timestamp, has a stratum of 1 to 15
//! (0 is a kiss-o'-death) and no alarm leap indicator, and a non-zero transmit time.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::model::{Kind, MetricDef, def};
use crate::store::Family;

pub(crate) const NTP_OFFSET_SECONDS: MetricDef = def(
    "m4watch_ntp_offset_seconds",
    Kind::Gauge,
    &["server"],
    "Offset of a configured NTP server's clock from the system clock, by one SNTP exchange (positive: the system clock is behind); the true offset lies within plus or minus half the round trip. Absent while the last probe of the server failed.",
);

pub(crate) const NTP_ROUND_TRIP_SECONDS: MetricDef = def(
    "m4watch_ntp_round_trip_seconds",
    Kind::Gauge,
    &["server"],
    "Round-trip delay of the last SNTP exchange with a configured NTP server, less the server's own processing time.",
);

pub(crate) const NTP_STRATUM: MetricDef = def(
    "m4watch_ntp_stratum",
    Kind::Gauge,
    &["server"],
    "Stratum a configured NTP server stated in its last reply (1: it reads a reference clock).",
);

pub(crate) const NTP_PROBE_FAILURES_TOTAL: MetricDef = def(
    "m4watch_ntp_probe_failures_total",
    Kind::Counter,
    &["server"],
    "SNTP probes of a configured NTP server that got no valid reply in time (timeout, unreachable, unresolvable, kiss-o'-death, unsynchronised, or a reply to another request).",
);

/// The SNTP families, for the catalogue.
pub(crate) const METRICS: &[MetricDef] = &[
    NTP_OFFSET_SECONDS,
    NTP_ROUND_TRIP_SECONDS,
    NTP_STRATUM,
    NTP_PROBE_FAILURES_TOTAL,
];

/// Seconds from the NTP era 0 (1900-01-01) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A time as NTP's 64-bit timestamp: seconds since 1900 in the high 32 bits, the
/// fraction in the low 32.
pub(crate) fn to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = (d.as_secs() + NTP_UNIX_OFFSET) & 0xFFFF_FFFF;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An NTP timestamp as seconds since the Unix epoch (era 0; valid until 2036).
pub(crate) fn ntp_seconds(ts: u64) -> f64 {
    let secs = (ts >> 32) as f64 - NTP_UNIX_OFFSET as f64;
    secs + (ts & 0xFFFF_FFFF) as f64 / 4_294_967_296.0
}

/// One valid exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SntpSample {
    pub offset_seconds: f64,
    pub round_trip_seconds: f64,
    pub stratum: u8,
}

/// Why a probe got no valid answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SntpError {
    #[error("{0}: cannot resolve")]
    Resolve(String),
    #[error("{server}: {source}")]
    Io {
        server: String,
        source: std::io::Error,
    },
    #[error("{server}: no reply within {timeout:?}")]
    Timeout { server: String, timeout: Duration },
    #[error("{server}: {why}")]
    Invalid { server: String, why: &'static str },
}

/// The request: LI 0, version 4, mode 3 (client), the transmit timestamp `t1`.
pub(crate) fn request(t1: u64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0x23;
    p[40..48].copy_from_slice(&t1.to_be_bytes());
    p
}

fn ts_at(p: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Checks a reply to the request sent at `t1` (its transmit timestamp) and received at
/// `t4`, and computes the offset and the delay.
pub(crate) fn evaluate(reply: &[u8], t1: u64, t4: u64) -> Result<SntpSample, &'static str> {
    if reply.len() < 48 {
        return Err("short reply");
    }
    let (li, vn, mode) = (reply[0] >> 6, (reply[0] >> 3) & 7, reply[0] & 7);
    if mode != 4 {
        return Err("not a server reply");
    }
    if !(3..=4).contains(&vn) {
        return Err("unknown NTP version");
    }
    if ts_at(reply, 24) != t1 {
        return Err("the reply answers another request");
    }
    let stratum = reply[1];
    if stratum == 0 {
        return Err("kiss-o'-death");
    }
    if li == 3 || stratum > 15 {
        return Err("the server is not synchronised");
    }
    let (t2, t3) = (ts_at(reply, 32), ts_at(reply, 40));
    if t3 == 0 {
        return Err("no transmit timestamp");
    }
    let (t1, t2, t3, t4) = (
        ntp_seconds(t1),
        ntp_seconds(t2),
        ntp_seconds(t3),
        ntp_seconds(t4),
    );
    Ok(SntpSample {
        offset_seconds: ((t2 - t1) + (t3 - t4)) / 2.0,
        round_trip_seconds: ((t4 - t1) - (t3 - t2)).max(0.0),
        stratum,
    })
}

/// `host[:port]` (port 123 unless given) as socket addresses; `[v6]:port` too.
fn addresses(server: &str) -> Option<Vec<SocketAddr>> {
    let with_port = if server.parse::<SocketAddr>().is_ok()
        || server
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
        server.to_string()
    } else if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]:123")
    } else {
        format!("{server}:123")
    };
    with_port.to_socket_addrs().ok().map(Iterator::collect)
}

/// One SNTP exchange with `server`, waiting at most `timeout` for the reply.
pub(crate) fn query(server: &str, timeout: Duration) -> Result<SntpSample, SntpError> {
    let io = |source| SntpError::Io {
        server: server.to_string(),
        source,
    };
    let addr = addresses(server)
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| SntpError::Resolve(server.to_string()))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(io)?;
    sock.connect(addr).map_err(io)?;
    let deadline = Instant::now() + timeout;
    let t1 = to_ntp(SystemTime::now());
    sock.send(&request(t1)).map_err(io)?;
    let mut buf = [0u8; 128];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SntpError::Timeout {
                server: server.to_string(),
                timeout,
            });
        }
        sock.set_read_timeout(Some(left)).map_err(io)?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let t4 = to_ntp(SystemTime::now());
                match evaluate(&buf[..n], t1, t4) {
                    Ok(s) => return Ok(s),
                    // A stray datagram: keep waiting for the reply until the deadline.
                    Err("the reply answers another request") => continue,
                    Err(why) => {
                        return Err(SntpError::Invalid {
                            server: server.to_string(),
                            why,
                        });
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(io(e)),
        }
    }
}

/// What the probes last found, per configured server.
#[derive(Debug, Default)]
struct ProbeState {
    last: BTreeMap<String, Option<SntpSample>>,
    failures: BTreeMap<String, u64>,
}

/// Probes `servers` at once (one thread each), each bounded by `timeout`, and records
/// the results in `state`.
fn probe_round(servers: &[String], timeout: Duration, state: &Mutex<ProbeState>) {
    let results: Vec<(String, Result<SntpSample, SntpError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = servers
            .iter()
            .map(|srv| s.spawn(move || (srv.clone(), query(srv, timeout))))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut st = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (srv, r) in results {
        match r {
            Ok(sample) => {
                st.last.insert(srv, Some(sample));
            }
            Err(e) => {
                tracing::debug!(error = %e, "sntp probe failed");
                st.last.insert(srv.clone(), None);
                *st.failures.entry(srv).or_default() += 1;
            }
        }
    }
}

/// The SNTP probe of the host collector: probes in the background once per interval
/// (never two rounds at once: a round whose name lookups hang holds the next back), and
/// publishes the last results.
pub(crate) struct SntpProbe {
    servers: Vec<String>,
    timeout: Duration,
    interval: Duration,
    next: Option<Instant>,
    state: Arc<Mutex<ProbeState>>,
    in_flight: Arc<AtomicBool>,
}

impl SntpProbe {
    pub(crate) fn new(servers: Vec<String>, timeout: Duration, interval: Duration) -> Self {
        let state = ProbeState {
            last: BTreeMap::new(),
            failures: servers.iter().map(|s| (s.clone(), 0)).collect(),
        };
        SntpProbe {
            servers,
            timeout,
            interval,
            next: None,
            state: Arc::new(Mutex::new(state)),
            in_flight: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts a round in the background when one is due and none is running.
    pub(crate) fn poll(&mut self, now: Instant) {
        if self.next.is_some_and(|n| now < n) || self.in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next = Some(now + self.interval);
        let (servers, timeout) = (self.servers.clone(), self.timeout);
        let (state, flag) = (self.state.clone(), self.in_flight.clone());
        let started = std::thread::Builder::new()
            .name("sntp-probe".into())
            .spawn(move || {
                probe_round(&servers, timeout, &state);
                flag.store(false, Ordering::Release);
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the sntp probe");
            self.in_flight.store(false, Ordering::Release);
        }
    }

    /// Whether a round is running.
    #[cfg(test)]
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn families(&self) -> Vec<Family> {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut offset = Family::new(&NTP_OFFSET_SECONDS);
        let mut rtt = Family::new(&NTP_ROUND_TRIP_SECONDS);
        let mut stratum = Family::new(&NTP_STRATUM);
        let mut failures = Family::new(&NTP_PROBE_FAILURES_TOTAL);
        for srv in &self.servers {
            let l = [("server", srv.as_str())];
            if let Some(Some(s)) = st.last.get(srv) {
                offset.push(l, s.offset_seconds);
                rtt.push(l, s.round_trip_seconds);
                stratum.push(l, f64::from(s.stratum));
            }
            failures.push(l, st.failures.get(srv).copied().unwrap_or(0) as f64);
        }
        vec![offset, rtt, stratum, failures]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real SNTP responder on loopback whose clock runs `offset` seconds ahead of the
    /// system clock, answering as stratum 2 after `hold`; it serves until the test ends.
    fn responder(offset: f64, hold: Duration) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 128];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if n < 48 || buf[0] & 7 != 3 {
                    continue;
                }
                let shifted = |t: SystemTime| {
                    let s = Duration::from_secs_f64(offset.abs());
                    to_ntp(if offset >= 0.0 { t + s } else { t - s })
                };
                let t2 = shifted(SystemTime::now());
                std::thread::sleep(hold);
                let mut r = [0u8; 48];
                r[0] = 0x24; // LI 0, version 4, mode 4 (server)
                r[1] = 2;
                r[24..32].copy_from_slice(&buf[40..48]);
                r[32..40].copy_from_slice(&t2.to_be_bytes());
                let t3 = shifted(SystemTime::now());
                r[40..48].copy_from_slice(&t3.to_be_bytes());
                let _ = sock.send_to(&r, from);
            }
        });
        addr
    }

    #[test]
    fn timestamps_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_765_000_000_250);
        assert!((ntp_seconds(to_ntp(t)) - 1_765_000_000.25).abs() < 1e-6);
        assert_eq!(request(7)[0], 0x23);
        assert_eq!(
            u64::from_be_bytes(request(7)[40..48].try_into().unwrap()),
            7
        );
    }

    /// RFC 4330's arithmetic on a hand-built exchange: server 0.5 s ahead, 0.1 s each
    /// way, 0.05 s inside the server.
    #[test]
    fn offset_and_delay_follow_rfc_4330() {
        let base = UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        let at = |s: f64| to_ntp(base + Duration::from_secs_f64(s));
        let (t1, t2, t3, t4) = (at(0.0), at(0.6), at(0.65), at(0.25));
        let mut r = [0u8; 48];
        r[0] = 0x24;
        r[1] = 1;
        r[24..32].copy_from_slice(&t1.to_be_bytes());
        r[32..40].copy_from_slice(&t2.to_be_bytes());
        r[40..48].copy_from_slice(&t3.to_be_bytes());
        let s = evaluate(&r, t1, t4).unwrap();
        assert!((s.offset_seconds - 0.5).abs() < 1e-6, "{s:?}");
        assert!((s.round_trip_seconds - 0.2).abs() < 1e-6, "{s:?}");
        assert_eq!(s.stratum, 1);
        let mut kod = r;
        kod[1] = 0;
        assert_eq!(evaluate(&kod, t1, t4), Err("kiss-o'-death"));
        let mut alarm = r;
        alarm[0] = 0xE4;
        assert_eq!(
            evaluate(&alarm, t1, t4),
            Err("the server is not synchronised")
        );
        assert_eq!(
            evaluate(&r, t1 + 1, t4),
            Err("the reply answers another request")
        );
        let mut client = r;
        client[0] = 0x23;
        assert_eq!(evaluate(&client, t1, t4), Err("not a server reply"));
        assert_eq!(evaluate(&r[..40], t1, t4), Err("short reply"));
    }

    /// Against a real responder on loopback whose clock is 0.25 s ahead, and one that is
    /// 1.5 s behind and holds each request 20 ms.
    #[test]
    fn a_loopback_server_with_a_known_offset_is_measured() {
        let ahead = responder(0.25, Duration::ZERO);
        let s = query(&ahead.to_string(), Duration::from_secs(2)).unwrap();
        assert!((s.offset_seconds - 0.25).abs() < 0.01, "{s:?}");
        assert!(s.round_trip_seconds < 0.01, "{s:?}");
        assert_eq!(s.stratum, 2);
        let behind = responder(-1.5, Duration::from_millis(20));
        let s = query(&behind.to_string(), Duration::from_secs(2)).unwrap();
        assert!((s.offset_seconds + 1.5).abs() < 0.02, "{s:?}");
        // The server's 20 ms inside it are not round trip.
        assert!(s.round_trip_seconds < 0.015, "{s:?}");
    }

    /// A server that never answers: the probe gives up at the timeout, counts a failure
    /// and publishes no offset for it; the answering server's series are there.
    #[test]
    fn a_server_that_never_answers_times_out_and_is_counted() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let ahead = responder(0.25, Duration::ZERO).to_string();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = query(&silent_addr, timeout).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, SntpError::Timeout { .. }), "{err}");
        assert!(took >= timeout && took < timeout * 3, "{took:?}");
        let mut probe = SntpProbe::new(
            vec![ahead.clone(), silent_addr.clone()],
            timeout,
            Duration::from_secs(3600),
        );
        probe.poll(Instant::now());
        let deadline = Instant::now() + Duration::from_secs(5);
        while probe.busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!probe.busy(), "the round ends at its timeout");
        let text = crate::store::encode(&probe.families());
        let line = |name: &str, srv: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{server=\"{srv}\"}}")))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        let off = line("m4watch_ntp_offset_seconds", &ahead).unwrap();
        assert!((off - 0.25).abs() < 0.01, "{text}");
        assert_eq!(line("m4watch_ntp_stratum", &ahead), Some(2.0));
        assert_eq!(line("m4watch_ntp_probe_failures_total", &ahead), Some(0.0));
        assert_eq!(
            line("m4watch_ntp_offset_seconds", &silent_addr),
            None,
            "{text}"
        );
        assert_eq!(line("m4watch_ntp_round_trip_seconds", &silent_addr), None);
        assert_eq!(
            line("m4watch_ntp_probe_failures_total", &silent_addr),
            Some(1.0),
            "{text}"
        );
        // Not due again for an hour: no second round, the failure stays counted once.
        probe.poll(Instant::now());
        assert!(!probe.busy());
        drop(silent);
    }

    #[test]
    fn server_names_take_port_123_by_default() {
        let a = addresses("127.0.0.1").unwrap();
        assert_eq!(a[0].port(), 123);
        assert_eq!(addresses("127.0.0.1:1123").unwrap()[0].port(), 1123);
        assert_eq!(addresses("::1").unwrap()[0].port(), 123);
        assert_eq!(addresses("[::1]:9").unwrap()[0].port(), 9);
    }
}
