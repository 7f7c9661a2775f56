//! Health probes against real HTTP servers on loopback.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use common::{Daemon, config, series};

/// An engine stand-in: `/health` answers 200, `/sick` 503, `/slow` after 2 s.
async fn engine() -> std::net::SocketAddr {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/sick",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "db down") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn value(text: &str, family: &str, target: &str) -> Option<f64> {
    let needle = format!("{{target=\"{target}\"}}");
    series(text, family)
        .into_iter()
        .find(|l| l.contains(&needle))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn probes_report_success_status_and_duration_per_target() {
    let up = engine().await;
    // A port nothing listens on: bind one, then let it go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = Daemon::start(config(&format!(
        "probes:\n  interval: 1s\n  targets:\n\
         \x20   - {{name: risk-engine, url: \"http://{up}/health\", timeout: 500ms}}\n\
         \x20   - {{name: ml-engine, url: \"http://{up}/sick\", timeout: 500ms}}\n\
         \x20   - {{name: factor-engine, url: \"http://{up}/slow\", timeout: 300ms}}\n\
         \x20   - {{name: portfolio-engine, url: \"http://{closed}/health\", timeout: 500ms}}\n"
    )))
    .await;
    let text = d.scrape().await;
    let s = |t| value(&text, "m4watch_probe_success", t);
    let code = |t| value(&text, "m4watch_probe_http_status_code", t);
    let took = |t| value(&text, "m4watch_probe_duration_seconds", t).unwrap();
    assert_eq!(
        (s("risk-engine"), code("risk-engine")),
        (Some(1.0), Some(200.0)),
        "{text}"
    );
    assert_eq!(
        (s("ml-engine"), code("ml-engine")),
        (Some(0.0), Some(503.0))
    );
    assert_eq!(
        (s("factor-engine"), code("factor-engine")),
        (Some(0.0), None)
    );
    assert_eq!(
        (s("portfolio-engine"), code("portfolio-engine")),
        (Some(0.0), None)
    );
    let slow = took("factor-engine");
    assert!(
        (0.3..1.5).contains(&slow),
        "timed out after {slow} s, want about 0.3"
    );
    assert!(took("risk-engine") < 0.3);
    // One engine down is a label value, not a failed collector.
    assert!(
        text.contains("m4watch_collector_success{collector=\"probes\"} 1"),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test]
async fn nothing_is_probed_by_default() {
    let d = Daemon::start(config("")).await;
    let text = d.scrape().await;
    assert!(series(&text, "m4watch_probe_success").is_empty(), "{text}");
    assert!(!text.contains("collector=\"probes\""));
    d.stop().await;
}

/// A line server on loopback: reads one line and answers `PONG <line>`, then closes.
async fn line_server() -> std::net::SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                let mut line = String::new();
                if s.read_line(&mut line).await.is_ok() && !line.is_empty() {
                    let _ = s
                        .get_mut()
                        .write_all(format!("PONG {}", line.trim_end()).as_bytes())
                        .await;
                }
            });
        }
    });
    addr
}

/// A server that sends `x` without end to whoever connects.
async fn endless_server() -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = [b'x'; 4096];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_probes_connect_send_and_expect() {
    let up = line_server().await;
    let endless = endless_server().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = Daemon::start(config(&format!(
        "probes:\n  interval: 1s\n  targets:\n\
         \x20   - {{name: fix-gateway, kind: tcp, address: \"{up}\", send: \"PING 35=0\\n\", expect: \"^PONG PING 35=0$\", timeout: 500ms}}\n\
         \x20   - {{name: wrong-reply, kind: tcp, address: \"{up}\", send: \"PING\\n\", expect: \"^LOGON\", timeout: 500ms}}\n\
         \x20   - {{name: connect-only, kind: tcp, address: \"{up}\", timeout: 500ms}}\n\
         \x20   - {{name: silent, kind: tcp, address: \"{up}\", expect: PONG, timeout: 300ms}}\n\
         \x20   - {{name: refused, kind: tcp, address: \"{closed}\", timeout: 500ms}}\n\
         \x20   - {{name: endless, kind: tcp, address: \"{endless}\", expect: \"^PONG\", timeout: 900ms}}\n"
    )))
    .await;
    // Probes run on their own clock: wait for the first round of all six.
    let text = d
        .scrape_until(10, |t| series(t, "m4watch_probe_success").len() == 6)
        .await;
    let s = |t| value(&text, "m4watch_probe_success", t);
    let took = |t| value(&text, "m4watch_probe_duration_seconds", t).unwrap();
    assert_eq!(s("fix-gateway"), Some(1.0), "the reply matches\n{text}");
    assert_eq!(s("wrong-reply"), Some(0.0), "the reply does not match");
    assert_eq!(s("connect-only"), Some(1.0), "a connect alone is success");
    assert_eq!(s("silent"), Some(0.0), "nothing sent, nothing answered");
    assert_eq!(s("refused"), Some(0.0));
    // The timeout bounds a probe that waits for a reply that never comes.
    let silent = took("silent");
    assert!(
        (0.3..1.0).contains(&silent),
        "timed out after {silent} s, want about 0.3"
    );
    assert!(took("refused") < 0.3, "a refused connect fails at once");
    // An endless answer without a match: cut off at 64 KiB, long before the timeout.
    assert_eq!(s("endless"), Some(0.0));
    assert!(took("endless") < 0.5, "read to the cap, not to the timeout");
    // Neither HTTP nor TLS: no status code, no certificate.
    for t in ["fix-gateway", "refused"] {
        assert_eq!(value(&text, "m4watch_probe_http_status_code", t), None);
        assert_eq!(
            value(
                &text,
                "m4watch_probe_tls_certificate_expiry_timestamp_seconds",
                t
            ),
            None
        );
    }
    assert!(
        text.contains("m4watch_collector_success{collector=\"probes\"} 1"),
        "{text}"
    );
    d.stop().await;
}

/// TLS targets against a real TLS server with a certificate made here (valid for a
/// day): the leaf's notAfter is exported for tcp with `tls: true` and for https, a
/// client that does not trust the CA fails, and the shipped
/// ProbeCertificateExpiringSoon fires through m4watch's own rule engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_probes_export_the_certificate_expiry_and_warn_before_it() {
    let tls = common::tls::tls_server(1).await;
    let (addr, ca) = (tls.addr, tls.ca.display());
    let d = Daemon::start(config(&format!(
        "probes:\n  interval: 1s\n  targets:\n\
         \x20   - {{name: gw-tls, kind: tcp, address: \"{addr}\", tls: true, tls_ca_file: \"{ca}\", send: \"PING\\n\", expect: \"^PONG\", timeout: 900ms}}\n\
         \x20   - {{name: api-https, url: \"https://{addr}/health\", tls_ca_file: \"{ca}\", timeout: 900ms}}\n\
         \x20   - {{name: untrusted, kind: tcp, address: \"{addr}\", tls: true, timeout: 900ms}}\n\
         \x20   - {{name: named, kind: tcp, address: \"{addr}\", tls: true, tls_server_name: other.example, tls_ca_file: \"{ca}\", timeout: 900ms}}\n"
    )))
    .await;
    let text = d
        .scrape_until(10, |t| series(t, "m4watch_probe_success").len() == 4)
        .await;
    let s = |t| value(&text, "m4watch_probe_success", t);
    let expiry = |t| {
        value(
            &text,
            "m4watch_probe_tls_certificate_expiry_timestamp_seconds",
            t,
        )
    };
    assert_eq!(s("gw-tls"), Some(1.0), "{text}");
    assert_eq!(s("api-https"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "m4watch_probe_http_status_code", "api-https"),
        Some(200.0)
    );
    let want = Some(tls.not_after as f64);
    assert_eq!(expiry("gw-tls"), want, "{text}");
    assert_eq!(expiry("api-https"), want, "{text}");
    // Not verified (unknown CA, or a name the certificate does not carry): failed,
    // and no certificate is reported from a handshake that did not complete.
    for t in ["untrusted", "named"] {
        assert_eq!(s(t), Some(0.0), "{t}\n{text}");
        assert_eq!(expiry(t), None, "{t}");
    }

    // The certificate expires within a day, under the rule's 14 days: pending at once,
    // firing after its 1 m `for`.
    let started = std::time::Instant::now();
    let firing = loop {
        let v: serde_json::Value = d
            .get("/api/v1/monitoring/alerts")
            .await
            .json()
            .await
            .unwrap();
        let found = v["alerts"].as_array().unwrap().iter().find(|a| {
            a["alertname"] == "ProbeCertificateExpiringSoon" && a["labels"]["target"] == "gw-tls"
        });
        if let Some(a) = found
            && a["state"] == "firing"
        {
            break a.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "ProbeCertificateExpiringSoon never fired: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_secs(55),
        "fired before its for"
    );
    assert_eq!(firing["severity"], "warning", "{firing}");
    d.stop().await;
}
