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
