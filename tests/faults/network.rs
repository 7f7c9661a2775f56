//! Hostile or broken peers (issue 25, items 4 and 6), against the real m4watch binary:
//! a stand-in Docker Engine (written here, on a unix socket) and an HTTP target that
//! answer endless bodies, and StatsD floods over real UDP. Memory is the process's
//! resident set, read from /proc/PID/status.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The real binary on `cfg`, killed when dropped.
struct M4watch {
    child: std::process::Child,
    base: String,
}

impl Drop for M4watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts m4watch on `yaml` (listen and data_dir added) and waits until it answers.
fn start(dir: &Path, yaml: &str) -> M4watch {
    let port = free_port();
    let cfg = dir.join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n{yaml}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("m4watch.log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let m = M4watch {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let until = Instant::now() + Duration::from_secs(30);
    while scrape_opt(&m).is_none() {
        assert!(Instant::now() < until, "m4watch never answered /metrics");
        std::thread::sleep(Duration::from_millis(50));
    }
    m
}

/// `/metrics`, by hand (one GET over a plain TCP connection).
fn scrape_opt(m: &M4watch) -> Option<String> {
    let addr = m.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

fn scrape(m: &M4watch) -> String {
    scrape_opt(m).expect("/metrics answers")
}

/// Scrapes until `pred` holds (at most `secs`); the last scrape.
fn scrape_until(m: &M4watch, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = scrape(m);
        if pred(&t) || Instant::now() > until {
            return t;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The process's resident set in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// The highest resident set over `secs`, sampled every 250 ms.
fn peak_rss(pid: u32, secs: u64) -> u64 {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(250));
    }
    peak
}

const MIB: u64 = 1024 * 1024;

/// Answers every connection with a 200 head and then `body` forever, as fast as the
/// peer reads (until it hangs up). `first` answers the paths it knows normally.
fn endless_server<S: Read + Write + Send + 'static>(
    mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
    first: fn(&str) -> Option<String>,
) {
    std::thread::spawn(move || {
        loop {
            let Ok(mut c) = accept() else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                if let Some(body) = first(&path) {
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"Id\r\n",
                );
                let piece = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                while c.write_all(piece.as_bytes()).is_ok() {}
            });
        }
    });
}

/// The stand-in Engine's normal answers: its version and info; everything else
/// (`/containers/json` first) is endless.
fn engine_answers(path: &str) -> Option<String> {
    let now = humantime::format_rfc3339(std::time::SystemTime::now());
    match path.split('?').next() {
        Some(p) if p.ends_with("/version") => {
            Some(r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#.into())
        }
        Some(p) if p.ends_with("/info") => Some(format!(
            r#"{{"ServerVersion":"20.10.24","SystemTime":"{now}","Containers":1,"ContainersRunning":1}}"#
        )),
        _ => None,
    }
}

fn containers_success(text: &str) -> Option<&str> {
    text.lines()
        .find(|l| l.starts_with("m4watch_collector_success{collector=\"containers\"}"))
        .and_then(|l| l.rsplit(' ').next())
}

/// Item 4: a Docker Engine whose `/containers/json` never ends. Every read of it stops
/// at its cap and deadline: the daemon's resident set stays bounded over 10 s (today's
/// main grew to gigabytes), and the containers collector reports failure.
#[test]
fn an_endless_docker_body_is_cut_off_and_fails_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    endless_server(move || listener.accept().map(|(c, _)| c), engine_answers);
    let m = start(
        dir.path(),
        &format!(
            "trading: {{statsd_listen: \"127.0.0.1:0\"}}\ncontainers:\n  docker_host: unix://{}\n  interval: 1s\n  timeout: 1s\n",
            sock.display()
        ),
    );
    let before = rss(m.child.id());
    let peak = peak_rss(m.child.id(), 10);
    let text = scrape_until(&m, 10, |t| containers_success(t) == Some("0"));
    eprintln!(
        "endless Docker body: RSS {} MiB before, peak {} MiB over 10 s",
        before / MIB,
        peak / MIB
    );
    assert!(peak < 100 * MIB, "RSS grew to {} MiB", peak / MIB);
    assert_eq!(containers_success(&text), Some("0"), "{text}");
    let log = std::fs::read_to_string(dir.path().join("m4watch.log")).unwrap();
    drop(m);
    assert!(
        log.contains("larger than") || text.contains("larger than"),
        "the cap is not named in the log:\n{log}"
    );
}

/// Item 4: an HTTP probe target that answers 200 and then an endless body, and one
/// that trickles its body past the probe's timeout. The first is read to its cap and
/// let go (memory bounded); the second fails as timed out (today's main read neither
/// body and called both healthy).
#[test]
fn an_endless_probe_body_is_cut_off_and_a_trickle_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let endless = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endless_addr = endless.local_addr().unwrap();
    endless_server(move || endless.accept().map(|(c, _)| c), |_| None);
    let trickle = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trickle_addr = trickle.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in trickle.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
                while c.write_all(b"x").is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    let m = start(
        dir.path(),
        &format!(
            "trading: {{statsd_listen: \"127.0.0.1:0\"}}\nprobes:\n  interval: 2s\n  targets:\n    - {{name: endless, url: \"http://{endless_addr}/health\", timeout: 2s}}\n    - {{name: trickle, url: \"http://{trickle_addr}/health\", timeout: 1s}}\n"
        ),
    );
    let peak = peak_rss(m.child.id(), 10);
    eprintln!("endless probe body: peak RSS {} MiB over 10 s", peak / MIB);
    assert!(peak < 100 * MIB, "RSS grew to {} MiB", peak / MIB);
    let text = scrape_until(&m, 10, |t| {
        t.contains("m4watch_probe_success{target=\"trickle\"} 0")
    });
    assert!(
        text.contains("m4watch_probe_success{target=\"trickle\"} 0"),
        "a body trickling past the timeout passed:\n{text}"
    );
    assert!(
        text.contains("m4watch_probe_success{target=\"endless\"}"),
        "{text}"
    );
}

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends each datagram over real UDP, pausing every 200 so loopback's buffer keeps up.
fn send_udp(port: u16, datagrams: impl IntoIterator<Item = String>) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, d) in datagrams.into_iter().enumerate() {
        s.send_to(d.as_bytes(), ("127.0.0.1", port)).unwrap();
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn value_of(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Item 6: 4000 datagrams with new names fill the 1000-series table; a new operation
/// sent after them still gets in (today's main dropped it until restart), the
/// evictions are counted, and a negative counter increment is refused and counted.
#[test]
fn a_statsd_name_flood_cannot_lock_a_new_operation_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let m = start(
        dir.path(),
        &format!("trading: {{statsd_listen: \"127.0.0.1:{port}\"}}\n"),
    );
    send_udp(port, (0..4000).map(|i| format!("stranger_{i}:1|c")));
    std::thread::sleep(Duration::from_millis(500));
    send_udp(
        port,
        [
            "order_submit:1.5|ms".to_string(),
            "fills:-5|c".into(),
            "fills:2|c".into(),
        ],
    );
    let text = scrape_until(&m, 10, |t| {
        t.contains("operation=\"order_submit\"") && t.contains("stream=\"fills\"")
    });
    assert!(
        text.contains("m4watch_trading_latency_quantile_seconds{operation=\"order_submit\""),
        "the new operation was locked out:\n{text}"
    );
    let evicted = value_of(&text, "m4watch_trading_series_evicted_total ").unwrap();
    assert!(evicted >= 2000.0, "evicted {evicted}");
    assert_eq!(
        value_of(
            &text,
            "m4watch_statsd_parse_errors_total{reason=\"negative_counter\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let fills = text
        .lines()
        .find(|l| l.starts_with("m4watch_trading_events_total{") && l.contains("stream=\"fills\""))
        .unwrap_or_else(|| panic!("no fills series:\n{text}"));
    assert!(
        fills.ends_with(" 2"),
        "a negative increment was applied: {fills}"
    );
}

/// Item 6: 300 datagrams, each a new timer whose values spread from 100 ns to 100 s.
/// What each series keeps is bounded by the histogram's precision, not the spread:
/// the resident set grows by at most a bounded amount (figures printed).
#[test]
fn a_statsd_spread_values_flood_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let m = start(
        dir.path(),
        &format!("trading: {{statsd_listen: \"127.0.0.1:{port}\"}}\n"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = rss(m.child.id());
    let values: Vec<String> = (0..120)
        .map(|k| format!("{:.4}", 1e-4 * 10f64.powf(f64::from(k) * 9.0 / 119.0)))
        .collect();
    send_udp(
        port,
        (0..300).map(|i| format!("spread_{i}:{}|ms", values.join(":"))),
    );
    // The collector folds them into every window within a few intervals.
    let text = scrape_until(&m, 10, |t| t.contains("operation=\"spread_299\""));
    assert!(text.contains("operation=\"spread_299\""), "{text}");
    std::thread::sleep(Duration::from_secs(3));
    let after = rss(m.child.id());
    let grown = after.saturating_sub(before);
    eprintln!(
        "spread-values flood: RSS {} MiB before, {} MiB after ({} MiB grown)",
        before / MIB,
        after / MIB,
        grown / MIB
    );
    assert!(
        grown < 60 * MIB,
        "300 spread series grew RSS by {} MiB",
        grown / MIB
    );
}
