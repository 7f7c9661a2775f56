//! Config bounds both ways (issue 25, item 7), against the real binary: a huge
//! duration is refused by `check-config` and at start naming its key, a config file
//! over 1 MiB (or `/dev/zero`) is refused after reading at most 1 MiB, and a reload of
//! an emptied or truncated file, or one that would stall every notification, is
//! refused while the running receivers keep delivering.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{KillOnDrop, free_port, series, spawn_m4watch, wait_up};

const TOKEN: &str = "test-write-token";

fn m4watch() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_m4watch"))
}

/// `check-config` on `file`: exit code, stderr, and how long it took.
fn check_config(file: &Path) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = m4watch().arg("check-config").arg(file).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

/// The keys the issue found passing with `500000000000y` that break the daemon, as a
/// file sets them.
const HUGE: &[(&str, &str)] = &[
    ("api.idle_timeout", "api: {idle_timeout: 500000000000y}\n"),
    (
        "notifications.route.group_wait",
        "notifications:\n  receivers: [{name: ops, webhook: {url: \"http://127.0.0.1:9/\"}}]\n  route: {receiver: ops, group_wait: 500000000000y}\n",
    ),
    (
        "notifications.route.group_interval",
        "notifications:\n  receivers: [{name: ops, webhook: {url: \"http://127.0.0.1:9/\"}}]\n  route: {receiver: ops, group_interval: 500000000000y}\n",
    ),
    (
        "notifications.escalation.after",
        "notifications:\n  receivers: [{name: ops, webhook: {url: \"http://127.0.0.1:9/\"}}]\n  route: {receiver: ops}\n  escalation: {receiver: ops, after: 500000000000y}\n",
    ),
    ("history.retention", "history: {retention: 500000000000y}\n"),
    ("rules.max_range", "rules: {max_range: 500000000000y}\n"),
];

#[test]
fn check_config_and_start_refuse_a_huge_duration_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (key, yaml) in HUGE {
        let file = dir.path().join("m4watch.yml");
        std::fs::write(&file, yaml).unwrap();
        let (code, err, _) = check_config(&file);
        assert_eq!(code, Some(1), "{key}: {err}");
        assert!(
            err.contains(&format!("{key}: 500000000000y is above the limit of")),
            "{key}: {err}"
        );
        // Start-up refuses the same file with the same error, before it listens.
        let out = m4watch()
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{key}: the daemon started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{key}: 500000000000y")),
            "{key}: {err}"
        );
    }
    // One second over a key's own ceiling is refused too; the ceiling itself passes.
    let file = dir.path().join("m4watch.yml");
    std::fs::write(&file, "api: {idle_timeout: 1h 1s}\n").unwrap();
    let (code, err, _) = check_config(&file);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("api.idle_timeout: 1h 1s is above the limit of 1h"),
        "{err}"
    );
    std::fs::write(&file, "api: {idle_timeout: 1h}\n").unwrap();
    let (code, err, _) = check_config(&file);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_config_over_1_mib_or_dev_zero_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yml");
    let mut text = String::from("log_format: text\n");
    while text.len() <= 1024 * 1024 {
        text.push_str("# a comment line that pads the file past one mebibyte\n");
    }
    std::fs::write(&big, &text).unwrap();
    for file in [big.as_path(), Path::new("/dev/zero")] {
        let (code, err, took) = check_config(file);
        eprintln!("check-config {}: {took:?}", file.display());
        assert_eq!(code, Some(1), "{}: {err}", file.display());
        assert!(
            err.contains("larger than 1048576 bytes (1 MiB)"),
            "{}: {err}",
            file.display()
        );
        assert!(
            took < Duration::from_secs(5),
            "{}: {took:?}",
            file.display()
        );
    }
    // The daemon refuses /dev/zero at start as quickly, its memory never near the
    // 2.1 GB it once reached.
    let started = Instant::now();
    let out = m4watch()
        .args(["--config", "/dev/zero", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let took = started.elapsed();
    eprintln!("m4watch --config /dev/zero: {took:?}");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("larger than 1048576 bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A stand-in we wrote for a webhook receiver: logs each request's alert names before
/// answering 200.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&log);
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            for a in v["alerts"].as_array().into_iter().flatten() {
                let name = a["labels"]["alertname"].as_str().unwrap_or("").to_string();
                seen.lock().unwrap().push(name);
            }
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, log)
}

fn sighup(child: &KillOnDrop) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) }, 0);
}

async fn reload_metrics(client: &reqwest::Client, base: &str) -> (f64, f64) {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        series(&text, name)
            .first()
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    (
        value("m4watch_config_last_reload_successful"),
        value("m4watch_config_last_reload_success_timestamp_seconds"),
    )
}

async fn receivers(client: &reqwest::Client, base: &str) -> Vec<String> {
    let v: Value = client
        .get(format!("{base}/api/v1/monitoring/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

async fn delivered(log: &Arc<Mutex<Vec<String>>>, name: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if log.lock().unwrap().iter().any(|n| n == name) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn an_emptied_or_truncated_config_reload_is_refused_and_receivers_still_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (url, log) = receiver().await;
    let head = format!(
        "listen: 127.0.0.1:{port}\ndata_dir: {}\napi: {{token: {TOKEN}}}\ncontainers: {{enabled: false}}\nrules: {{enabled: false}}\ntrading: {{statsd_listen: null}}\n",
        dir.path().join("data").display()
    );
    let notifications = format!(
        "notifications:\n  delivery: {{timeout: 1s, initial_backoff: 100ms, max_backoff: 200ms}}\n  receivers: [{{name: ops, webhook: {{url: \"{url}\"}}}}]\n  route: {{receiver: ops, group_by: [alertname], group_wait: 0s}}\n"
    );
    let full = format!("{head}{notifications}");
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(&cfg, &full).unwrap();
    let child = spawn_m4watch(&cfg, &dir.path().join("m4watch.log"), "info", &[]);
    let client = m4watch::tls::client();
    wait_up(&client, &base).await;
    assert!(receivers(&client, &base).await.contains(&"ops".to_string()));
    let post_reload = || {
        client
            .post(format!("{base}/-/reload"))
            .bearer_auth(TOKEN)
            .send()
    };

    // Each is what an editor's crash, a full disk or a half-copied deploy leaves.
    let cut = full.find("  receivers:").unwrap();
    let cases = [
        ("empty", String::new()),
        ("without notifications:", head.clone()),
        ("truncated mid-notifications", full[..cut].to_string()),
        (
            "huge group_wait",
            full.replace("group_wait: 0s", "group_wait: 500000000000y"),
        ),
    ];
    for (i, (what, text)) in cases.iter().enumerate() {
        std::fs::write(&cfg, text).unwrap();
        let r = post_reload().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let body = r.text().await.unwrap();
        if what.starts_with("huge") {
            assert!(
                body.contains("notifications.route.group_wait: 500000000000y is above the limit"),
                "{what}: {body}"
            );
        } else {
            assert!(body.contains("no notification receivers"), "{what}: {body}");
        }
        // The scrape serves the snapshot the store encodes next: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ok = reload_metrics(&client, &base).await.0;
        while ok != 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ok = reload_metrics(&client, &base).await.0;
        }
        assert_eq!(ok, 0.0, "{what}");
        assert!(
            receivers(&client, &base).await.contains(&"ops".to_string()),
            "{what}"
        );
        // The running receiver still delivers.
        let name = format!("StillPaged{i}");
        let r = client
            .post(format!("{base}/api/v2/alerts"))
            .bearer_auth(TOKEN)
            .json(&json!([{"labels": {"alertname": name, "severity": "critical"}}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            delivered(&log, &name, 10).await,
            "{what}: {name} never reached the receiver"
        );
    }

    // SIGHUP with an emptied file: refused the same way.
    std::fs::write(&cfg, &full).unwrap();
    assert_eq!(post_reload().await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while reload_metrics(&client, &base).await.0 != 1.0 {
        assert!(
            Instant::now() < deadline,
            "a good reload never read as successful"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&cfg, "").unwrap();
    sighup(&child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reload_metrics(&client, &base).await.0 != 0.0 {
        assert!(Instant::now() < deadline, "SIGHUP reload never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receivers(&client, &base).await.contains(&"ops".to_string()));
    let r = client
        .post(format!("{base}/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .json(&json!([{"labels": {"alertname": "AfterSighup", "severity": "critical"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(delivered(&log, "AfterSighup", 10).await);
    let log_text = std::fs::read_to_string(dir.path().join("m4watch.log")).unwrap();
    assert!(
        log_text.contains("no notification receivers"),
        "the refusal is not logged"
    );
}
