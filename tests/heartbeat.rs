//! The dead-man's switch (issue 27, item 5) against a stand-in for the dead-man's
//! service (healthchecks.io and the like cannot be reached from here): a local HTTP
//! server that logs each request before answering. A real m4watch process for what
//! only a process shows (`kill -STOP` / `-CONT`, a reload from its file); the daemon
//! in-process for the rest.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::sink::{Received, Sink};
use common::{Daemon, KillOnDrop, free_port, series, spawn_m4watch, wait_up};
use m4watch::config::Config;

const TOKEN: &str = "heartbeat-test-token";

/// A TCP listener that accepts connections and never answers: a receiver that hangs.
fn silent_listener() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
    addr
}

fn signal(child: &KillOnDrop, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, sig) }, 0);
}

/// The value of the one series of `family` whose line contains `labels`.
fn value(text: &str, family: &str, labels: &str) -> Option<f64> {
    series(text, family)
        .into_iter()
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The shipped defaults but the interval (and the timeout, which must be shorter):
/// beats arrive every interval; `kill -STOP` stops them at once (a hung process is as
/// silent as a dead host) and `kill -CONT` brings them back within two intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beats_follow_the_interval_stop_on_sigstop_and_resume_on_sigcont() {
    const INTERVAL: Duration = Duration::from_secs(2);
    let service = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\ntrading: {{statsd_listen: \"127.0.0.1:0\"}}\n\
             heartbeat:\n  url: {url}\n  interval: 2s\n  timeout: 1s\n",
            data = dir.path().join("data").display(),
            url = service.url("/ping/5bf3c0de-check")
        ),
    )
    .unwrap();
    let child = spawn_m4watch(&cfg, &dir.path().join("m4watch.log"), "info", &[]);
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    wait_up(&client, &base).await;

    let beats = service.wait_for("/ping/", 4, 20).await;
    assert!(beats.iter().all(|b| b.method == "GET"), "{beats:#?}");
    for pair in beats.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap > INTERVAL / 2 && gap < INTERVAL * 2,
            "beats {gap:?} apart at a {INTERVAL:?} interval: {beats:#?}"
        );
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        value(&metrics, "m4watch_heartbeat_interval_seconds", ""),
        Some(2.0)
    );
    assert!(value(&metrics, "m4watch_heartbeat_sent_total", "").unwrap() >= 3.0);
    assert!(
        value(
            &metrics,
            "m4watch_heartbeat_last_success_timestamp_seconds",
            ""
        )
        .is_some()
    );

    signal(&child, libc::SIGSTOP);
    let stopped = Instant::now();
    tokio::time::sleep(INTERVAL * 3).await;
    let after: Vec<Received> = service
        .received("/ping/")
        .into_iter()
        .filter(|b| b.at > stopped + Duration::from_millis(200))
        .collect();
    assert!(
        after.is_empty(),
        "beats after kill -STOP (three intervals waited): {after:#?}"
    );

    signal(&child, libc::SIGCONT);
    let resumed = Instant::now();
    let n = service.received("/ping/").len();
    // The missed tick fires at once; the rule loop gets a moment to mark again.
    let back = service.wait_for("/ping/", n + 2, 10).await;
    let first = back[n].at - resumed;
    assert!(
        first < INTERVAL * 2,
        "first beat {first:?} after kill -CONT, over two intervals"
    );
    drop(child);
}

/// A notification the receiver never answers stays in the outbox: once it has waited
/// longer than `max_delivery_delay`, beats stop and each skip is counted with its
/// reason. The receiver is the one route that names the Watchdog, which the shipped
/// rule raises at once; it does receive it (and hangs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_stops_the_beats_with_the_reason_counted() {
    let service = Sink::start().await;
    let hang = silent_listener();
    let d = Daemon::start(common::config(&format!(
        "notifications:\n  delivery: {{timeout: 300ms, initial_backoff: 100ms, max_backoff: 200ms}}\n  \
         receivers:\n    - name: deadman\n      webhook: {{url: \"http://{hang}/watchdog\"}}\n  \
         route:\n    receiver: default\n    routes:\n      - matchers: ['alertname=\"Watchdog\"']\n        receiver: deadman\n\
         heartbeat:\n  url: {url}\n  interval: 1s\n  timeout: 500ms\n  max_delivery_delay: 2s\n",
        url = service.url("/ping/stuck")
    )))
    .await;
    let text = d
        .scrape_until(20, |t| {
            value(t, "m4watch_heartbeat_skipped_total", "delivery_backlog").unwrap_or(0.0) >= 2.0
        })
        .await;
    assert_eq!(
        value(&text, "m4watch_heartbeat_skipped_total", "rules_stalled"),
        Some(0.0)
    );
    let failed = value(
        &text,
        "m4watch_notifications_failed_total",
        "integration=\"webhook\",reason=\"timeout\"",
    );
    assert!(failed.unwrap_or(0.0) >= 1.0, "{text}");
    let n = service.received("/ping/").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        service.received("/ping/").len(),
        n,
        "no beat while the outbox is stuck"
    );
    // The Watchdog fires and is no problem for health.
    let h: serde_json::Value = d
        .get("/api/v1/monitoring/system/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["firing_alerts"], serde_json::json!({}), "{h}");
    d.stop().await;
}

/// A failing dead-man's service: each failure counted with its bounded reason, no
/// success recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_beats_are_counted_with_their_reason() {
    let service = Sink::start().await;
    service.answer(503);
    let closed = free_port();
    let d = Daemon::start(common::config(&format!(
        "heartbeat:\n  url: {url}\n  method: POST\n  interval: 1s\n  timeout: 500ms\n",
        url = service.url("/ping/failing")
    )))
    .await;
    let text = d
        .scrape_until(10, |t| {
            value(t, "m4watch_heartbeat_failures_total", "server_error").unwrap_or(0.0) >= 2.0
        })
        .await;
    assert_eq!(value(&text, "m4watch_heartbeat_sent_total", ""), Some(0.0));
    assert_eq!(
        value(
            &text,
            "m4watch_heartbeat_last_success_timestamp_seconds",
            ""
        ),
        None,
        "absent until the first success"
    );
    assert!(
        service
            .received("/ping/")
            .iter()
            .all(|b| b.method == "POST")
    );
    d.stop().await;

    // Nobody listening: connection failures.
    let d = Daemon::start(common::config(&format!(
        "heartbeat:\n  url: http://127.0.0.1:{closed}/ping\n  interval: 1s\n  timeout: 500ms\n"
    )))
    .await;
    d.scrape_until(10, |t| {
        value(t, "m4watch_heartbeat_failures_total", "connection").unwrap_or(0.0) >= 1.0
    })
    .await;
    d.stop().await;
}

fn with_token(yaml: &str) -> Config {
    common::config(&format!("api: {{token: {TOKEN}}}\n{yaml}"))
}

async fn post_alert(d: &Daemon, name: &str) {
    let body = serde_json::json!([{
        "labels": {"alertname": name, "severity": "warning"},
        "annotations": {"summary": format!("{name} fires")},
        "endsAt": (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339(),
    }]);
    let r = d
        .client
        .post(d.url("/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// m4watch's own notifier never pages people with the Watchdog: a desk with only a
/// Slack receiver never gets it; a route that names `alertname="Watchdog"` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_reaches_only_a_route_that_names_it() {
    let sink = Sink::start().await;
    let slack_only = format!(
        "notifications:\n  receivers:\n    - name: desk\n      slack: {{webhook_url: \"{}\"}}\n  route: {{receiver: desk}}\n",
        sink.url("/slack-only/T0/B0/x")
    );
    let d = Daemon::start(with_token(&slack_only)).await;
    // The Watchdog fires from the first evaluation on.
    for _ in 0..100 {
        let a: serde_json::Value = d
            .get("/api/v1/monitoring/alerts")
            .await
            .json()
            .await
            .unwrap();
        if a.to_string().contains("\"Watchdog\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post_alert(&d, "RealProblem").await;
    sink.wait_for("/slack-only/", 1, 10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = sink.received("/slack-only/");
    assert_eq!(got.len(), 1, "only the real alert reaches Slack: {got:#?}");
    d.stop().await;

    let routed = format!(
        "notifications:\n  receivers:\n    - name: desk\n      slack: {{webhook_url: \"{}\"}}\n    - name: deadman\n      webhook: {{url: \"{}\"}}\n  \
         route:\n    receiver: desk\n    routes:\n      - matchers: ['alertname=\"Watchdog\"']\n        receiver: deadman\n",
        sink.url("/slack-routed/T0/B0/x"),
        sink.url("/deadman")
    );
    let d = Daemon::start(with_token(&routed)).await;
    sink.wait_for("/deadman", 1, 10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        sink.received("/slack-routed/").is_empty(),
        "Slack got the Watchdog"
    );
    d.stop().await;
}

/// A reload applies a changed heartbeat (a new URL, beats move there) and refuses an
/// invalid one with the reason, the running heartbeat going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_changed_heartbeat_and_refuses_a_bad_one() {
    let service = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("m4watch.yml");
    let head = format!(
        "listen: 127.0.0.1:{port}\ndata_dir: {}\napi: {{token: {TOKEN}}}\ntrading: {{statsd_listen: \"127.0.0.1:0\"}}\n",
        dir.path().join("data").display()
    );
    let heartbeat = |path: &str, timeout: &str| {
        format!(
            "{head}heartbeat:\n  url: {}\n  interval: 1s\n  timeout: {timeout}\n",
            service.url(path)
        )
    };
    std::fs::write(&cfg, heartbeat("/a", "500ms")).unwrap();
    let _child = spawn_m4watch(&cfg, &dir.path().join("m4watch.log"), "info", &[]);
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    wait_up(&client, &base).await;
    service.wait_for("/a", 1, 15).await;

    let reload = || async {
        client
            .post(format!("{base}/-/reload"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    };
    std::fs::write(&cfg, heartbeat("/b", "500ms")).unwrap();
    let r = reload().await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    service.wait_for("/b", 2, 10).await;
    let a = service.received("/a").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        service.received("/a").len(),
        a,
        "beats moved to the new URL"
    );

    std::fs::write(&cfg, heartbeat("/c", "1s")).unwrap();
    let r = reload().await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("heartbeat.timeout: must be shorter than heartbeat.interval (1s)"),
        "{body}"
    );
    let b = service.received("/b").len();
    service.wait_for("/b", b + 2, 10).await;
    assert!(service.received("/c").is_empty());
}

/// `m4watch validate` dry-runs the heartbeat (the shipped 1m interval): it connects
/// to the dead-man's service and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_dry_runs_the_heartbeat_and_sends_nothing() {
    let service = Sink::start().await;
    let d = Daemon::start(with_token(&format!(
        "heartbeat:\n  url: {}\n  headers: {{X-Api-Key: HEADER-SECRET}}\n",
        service.url("/ping/SECRET-UUID")
    )))
    .await;
    let status: serde_json::Value = d
        .get("/api/v1/monitoring/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["heartbeat"]["interval_seconds"], 60.0, "{status}");
    assert_eq!(status["heartbeat"]["method"], "GET", "{status}");
    let url = d.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_m4watch"))
            .args([
                "validate",
                "--url",
                &url,
                "--token",
                TOKEN,
                "--min-pass-ratio",
                "0",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.contains(" heartbeat "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.starts_with("pass"), "{table}");
    assert!(
        line.contains(&format!("dry run: GET http://{} reachable", service.addr)),
        "{table}"
    );
    assert!(!table.contains("SECRET"), "{table}");
    let answer: serde_json::Value = d
        .client
        .post(d.url("/api/v1/monitoring/heartbeat/test"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["headers"],
        serde_json::json!(["X-Api-Key"]),
        "{answer}"
    );
    assert!(!answer.to_string().contains("SECRET"), "{answer}");
    assert!(service.received("").is_empty(), "a dry run sends nothing");

    // Not configured: the route says so; validate passes it with a word of warning.
    d.stop().await;
    let d = Daemon::start(with_token("")).await;
    let r = d
        .client
        .post(d.url("/api/v1/monitoring/heartbeat/test"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    d.stop().await;
}

/// The shipped Alertmanager config, asked with the real amtool: the Watchdog goes to
/// the dead-man's receiver alone; other alerts route as before.
#[test]
fn the_shipped_alertmanager_routes_the_watchdog_to_the_deadman_receiver_alone() {
    let amtool = common::require_tool("amtool");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus/alertmanager.yml");
    let route = |labels: &[&str]| {
        let out = Command::new(&amtool)
            .args(["config", "routes", "test", "--config.file", config])
            .args(labels)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        route(&[
            "alertname=Watchdog",
            "severity=info",
            "m4watch_watchdog=true"
        ]),
        "deadman"
    );
    assert_eq!(
        route(&["alertname=M4watchDown", "severity=critical"]),
        "pagerduty,slack"
    );
    assert_eq!(route(&["alertname=Other", "severity=info"]), "email");
}
