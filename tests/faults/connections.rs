//! Connections a peer cannot exhaust (issue 25, item 5): 2000 connections that send
//! nothing, and connections that trickle a request head a byte at a time, do not keep
//! `/metrics` from answering a fresh scrape within 1 s; a connection that never sends a
//! request is let go after `api.header_read_timeout`, not `api.idle_timeout`.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{free_port, spawn_m4watch, wait_up};

/// Writes a config with the API's connection limits at their defaults plus `api_extra`.
fn write_config(path: &Path, port: u16, data: &Path, api_extra: &str) {
    std::fs::write(
        path,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\napi: {{token: test-write-token{api_extra}}}\n\
             containers: {{enabled: false}}\nrules: {{enabled: false}}\n\
             trading: {{statsd_listen: \"127.0.0.1:0\"}}\n",
            data = data.display(),
        ),
    )
    .unwrap();
}

/// The test process holds 2000+ sockets: its soft open-files limit goes up to the hard one.
fn raise_own_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit; setrlimit reads one.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    assert!(
        lim.rlim_cur >= 2600,
        "this test needs 2600 open files, the hard limit is {}",
        lim.rlim_max
    );
}

/// One fresh connection's `GET /metrics`: its status and how long the answer took.
async fn fresh_scrape(base: &str) -> (Result<u16, String>, Duration) {
    let client = m4watch::tls::http_client()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let t = Instant::now();
    let r = client.get(format!("{base}/metrics")).send().await;
    let status = match r {
        Ok(r) => {
            let s = r.status().as_u16();
            match r.bytes().await {
                Ok(_) => Ok(s),
                Err(e) => Err(format!("body: {e}")),
            }
        }
        Err(e) => Err(format!("{e}")),
    };
    (status, t.elapsed())
}

/// A slowloris: a request head sent one byte every 200 ms, never finished, until the
/// server closes the connection.
async fn trickle(addr: String) {
    let Ok(mut s) = TcpStream::connect(&addr).await else {
        return;
    };
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";
    if s.write_all(head).await.is_err() {
        return;
    }
    loop {
        for b in b"X-Slow: yes\r\n" {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// With the default `api.max_connections` (512), 2000 connections that send nothing
/// and 200 that trickle a head: every fresh `GET /metrics`, one a second for 12 s
/// (the window in which a slowloris took main offline, +5 s to +25 s), answers 200
/// within 1 s. On main the first 512 hold every slot until `idle_timeout` (120 s)
/// and the scrapes wait in the listen backlog past their 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_answers_within_a_second_under_2000_idle_connections_and_a_slowloris() {
    raise_own_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("m4watch.yml");
    write_config(&cfg, port, &dir.path().join("data"), "");
    let log = dir.path().join("m4watch.log");
    let _daemon = spawn_m4watch(&cfg, &log, "info", &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&m4watch::tls::client(), &base).await;

    let addr = format!("127.0.0.1:{port}");
    // 2000 silent connections, opened 100 at a time; each held for the whole test.
    let mut idle = Vec::new();
    let started = Instant::now();
    for _ in 0..20 {
        let batch: Vec<_> = (0..100)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await
                })
            })
            .collect();
        for h in batch {
            if let Ok(Ok(Ok(s))) = h.await {
                idle.push(s);
            }
        }
    }
    eprintln!(
        "opened {} silent connections in {:?}",
        idle.len(),
        started.elapsed()
    );
    let slow: Vec<_> = (0..200)
        .map(|_| tokio::spawn(trickle(addr.clone())))
        .collect();

    let mut results = Vec::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        results.push(fresh_scrape(&base).await);
    }
    eprintln!("fresh scrapes under load: {results:?}");
    for (status, took) in &results {
        assert_eq!(status, &Ok(200), "a scrape failed: {results:?}");
        assert!(
            *took < Duration::from_secs(1),
            "a scrape took {took:?}: {results:?}"
        );
    }
    for h in slow {
        h.abort();
    }
    drop(idle);
}

/// Waits for the server to close `s`: how long it took, or `None` within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 256];
    let end = t + limit;
    loop {
        match tokio::time::timeout_at(end.into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// With `header_read_timeout: 1s` and `idle_timeout: 60s`: a connection that never
/// sends a byte is closed after about 1 s (main waited the 60 s idle timeout), and one
/// trickling its head a byte every 200 ms is closed within about 1 s of its first
/// byte however long it keeps trickling.
#[tokio::test]
async fn a_silent_or_trickling_connection_is_let_go_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("m4watch.yml");
    write_config(
        &cfg,
        port,
        &dir.path().join("data"),
        ", header_read_timeout: 1s, idle_timeout: 60s",
    );
    let log = dir.path().join("m4watch.log");
    let _daemon = spawn_m4watch(&cfg, &log, "info", &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_up(&m4watch::tls::client(), &base).await;
    let addr = format!("127.0.0.1:{port}");

    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5)).await;
    eprintln!("silent connection closed after {took:?}");
    let took = took.expect("a silent connection was still open after 5 s");
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );

    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let t = Instant::now();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    let mut closed = false;
    'outer: for _ in 0..4 {
        for b in b"X-Slow: yes\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                closed = true;
                break 'outer;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let took = if closed {
        Some(t.elapsed())
    } else {
        closed_within(&mut slow, Duration::from_secs(1))
            .await
            .map(|_| t.elapsed())
    };
    eprintln!("trickling connection closed after {took:?}");
    let took = took.expect("a trickling connection was still open after 10 s");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
}
