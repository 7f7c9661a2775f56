//! Any body to any route that takes JSON: m4watch answers a 2xx or a JSON 4xx, never
//! a 5xx and never a dropped connection, and its reads keep answering afterwards.
//!
//! One daemon (loopback, ephemeral port, a temporary data dir) serves every input;
//! the first byte picks the route, the rest is the body. `tests/api.rs`
//! (`arbitrary_json_bodies_never_break_a_route`) runs the same property with generated
//! JSON in the ordinary test suite.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-t0ken";

const ROUTES: &[&str] = &[
    "/api/v2/alerts",
    "/api/v1/monitoring/silences",
    "/api/v2/silences",
    "/api/v1/monitoring/alerts/x/acknowledge",
    "/api/v1/monitoring/notifications/configure",
    "/api/v1/trading/latency",
    "/api/v1/optimization/start-latency-measurement",
];

fn daemon() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let data = std::env::temp_dir().join(format!("m4watch-fuzz-{}", std::process::id()));
        let yaml = format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\napi:\n  token: {TOKEN}\ntrading:\n  statsd_listen: 127.0.0.1:0\ncontainers:\n  enabled: false\n",
            data.display()
        );
        let config = m4watch::config::Config::parse(&yaml, "<fuzz>", Path::new("."), &|_| None)
            .expect("the fuzz config is valid");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let (trigger, shutdown) = m4watch::shutdown::channel();
                std::mem::forget(trigger);
                m4watch::serve(config, listener, shutdown).await.unwrap();
            });
        });
        rx.recv().expect("the daemon binds")
    })
}

/// One request over a fresh connection; the status code.
fn post(addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("the daemon accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("an answer, not a reset");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 "), "no answer to POST {path}: {text:?}");
    let status: u16 = text[9..12].parse().unwrap();
    if status >= 400 {
        assert!(
            text.to_ascii_lowercase().contains("content-type: application/json"),
            "a non-JSON {status} to POST {path}: {text}"
        );
    }
    status
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let addr = daemon();
    let path = ROUTES[pick as usize % ROUTES.len()];
    let status = post(addr, path, body);
    assert!(status < 500, "POST {path} answered {status}");
});
