//! StatsD ingest load generator (`scripts/bench-statsd.sh` runs it).
//!
//! Sends StatsD timer lines over loopback to three receivers in one run and prints
//! one line per phase:
//! - `cpu`: the listener's parse-and-store work on datagrams in memory, no socket;
//! - `bare`: a receive loop that only counts datagrams, the physical limit here;
//! - `m4watch`: m4watch's real listener thread and trading store, with the trading
//!   collector folding windows every second beside it, flat out;
//! - `paced`: the same listener at a fixed offered rate (default 200 000 lines/s).
//!
//! Usage: `statsd-load [seconds] [paced_lines_per_second]`

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use m4watch::config::TradingConfig;
use m4watch::internals::collect::trading::statsd::{self, Listener};
use m4watch::internals::collect::trading::{Trading, TradingCollector};

/// Lines per datagram; ~1.4 kB, what StatsD clients send to stay under one MTU.
const LINES_PER_PACKET: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let paced: f64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000.0);
    let duration = Duration::from_secs_f64(secs);
    let packets = packets();
    cpu_only(&packets, duration);

    let bare = bare_receiver();
    let sent = send(bare.addr, &packets, duration, None);
    std::thread::sleep(Duration::from_millis(300));
    let got = bare.stop() * LINES_PER_PACKET as u64;
    report("bare", sent, got, duration);

    for (phase, rate) in [("m4watch", None), ("paced", Some(paced))] {
        let (trading, registry) = store();
        let listener = Listener::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&trading))
            .expect("bind loopback");
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (t, stop) = (Arc::clone(&trading), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut c = TradingCollector::new(t);
                while !stop.load(Ordering::Relaxed) {
                    c.run(Instant::now());
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        let sent = send(listener.addr(), &packets, duration, rate);
        std::thread::sleep(Duration::from_millis(300));
        let got = lines_total(&registry);
        stop.store(true, Ordering::Relaxed);
        listener.stop();
        let _ = collector.join();
        report(phase, sent, got, duration);
    }
}

/// The parse-and-store cost alone: the listener's work on datagrams already in
/// memory, on this thread, with no socket.
fn cpu_only(packets: &[Vec<u8>], d: Duration) {
    let (trading, registry) = store();
    let mut batch = trading.batch();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < d {
        for _ in 0..64 {
            trading.ingest_packet(&packets[i % packets.len()], &mut batch);
            i += 1;
        }
    }
    let took = start.elapsed().as_secs_f64();
    let lines = lines_total(&registry);
    println!(
        "phase=cpu seconds={took:.3} lines={lines} ns_per_line={:.1} lines_per_s_per_core={:.0}",
        took * 1e9 / lines as f64,
        lines as f64 / took
    );
}

fn report(phase: &str, sent: u64, received: u64, d: Duration) {
    let s = d.as_secs_f64();
    println!(
        "phase={phase} seconds={s} sent_lines={sent} received_lines={received} lost_lines={} offered_lines_per_s={:.0} ingested_lines_per_s={:.0}",
        sent.saturating_sub(received),
        sent as f64 / s,
        received as f64 / s,
    );
}

/// Distinct datagrams of timer lines over a few operations and venues.
fn packets() -> Vec<Vec<u8>> {
    let ops = [
        "order_execution",
        "risk_calculation",
        "market_data",
        "ml_inference",
    ];
    (0..64)
        .map(|p| {
            let mut s = String::new();
            for i in 0..LINES_PER_PACKET {
                let n = p * LINES_PER_PACKET + i;
                s.push_str(&format!(
                    "{}:{}.{:03}|ms|#venue:v{}\n",
                    ops[n % ops.len()],
                    n % 7,
                    (n * 37) % 1000,
                    n % 3
                ));
            }
            s.into_bytes()
        })
        .collect()
}

/// Sends for `d`, flat out or paced to `rate` lines/s; returns lines sent.
fn send(to: SocketAddr, packets: &[Vec<u8>], d: Duration, rate: Option<f64>) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(to).unwrap();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = 0;
    while start.elapsed() < d {
        if let Some(r) = rate {
            let due = (start.elapsed().as_secs_f64() * r) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        // A full socket buffer drops the datagram on loopback (ENOBUFS is rare);
        // a failed send is simply not counted as sent.
        if sock.send(&packets[i % packets.len()]).is_ok() {
            sent += LINES_PER_PACKET as u64;
        }
        i += 1;
    }
    sent
}

struct Bare {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Bare {
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.count.load(Ordering::Relaxed)
    }
}

/// The anchor: receive and count datagrams, nothing else.
fn bare_receiver() -> Bare {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // The same kernel buffer m4watch asks for, so loss compares like with like.
    statsd::grow_receive_buffer(&sock);
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let (s, c) = (Arc::clone(&stop), Arc::clone(&count));
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !s.load(Ordering::Relaxed) {
            if sock.recv(&mut buf).is_ok() {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Bare {
        addr,
        stop,
        count,
        thread,
    }
}

fn store() -> (Arc<Trading>, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let config = TradingConfig {
        label_tags: vec!["venue".into()],
        ..TradingConfig::default()
    };
    let trading = Trading::new(&config, &registry).expect("fresh registry");
    (trading, registry)
}

fn lines_total(registry: &prometheus::Registry) -> u64 {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == "m4watch_statsd_lines_total")
        .and_then(|f| {
            f.get_metric()
                .first()
                .map(|m| m.get_counter().get_value() as u64)
        })
        .unwrap_or(0)
}
