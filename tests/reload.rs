//! Reload applies what it says it applies (issue 28): the real binary, its config file
//! rewritten, SIGHUP. A rotated `api.token` / `api.read_token` is in force at once and
//! the old one gets 401; the notifications and the heartbeat take their new settings;
//! a section read at start-up only is reported. The secrets never reach the log.

mod common;

use std::time::{Duration, Instant};

fn sighup(child: &common::KillOnDrop) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) }, 0);
}

#[tokio::test]
async fn sighup_applies_rotated_tokens_receivers_and_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let head = format!(
        "listen: 127.0.0.1:{port}\ndata_dir: {}\ncontainers: {{enabled: false}}\ntrading: {{statsd_listen: null}}\n",
        dir.path().join("data").display()
    );
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!("{head}api: {{token: old-write, read_token: old-read}}\n"),
    )
    .unwrap();
    let log_path = dir.path().join("m4watch.log");
    let child = common::spawn_m4watch(&cfg, &log_path, "info", &[]);
    let client = m4watch::tls::client();
    common::wait_up(&client, &base).await;
    let get = |path: &'static str, token: &'static str| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let status = |token: &'static str| {
        let get = &get;
        async move {
            let r = get("/api/v1/monitoring/status", token).await;
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    assert_eq!(get("/metrics", "old-read").await.status(), 200);
    let before = status("old-read").await;
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!names(&before).contains(&"desk".to_string()), "{before}");
    assert!(before.get("heartbeat").is_none(), "{before}");

    // Rotate both tokens, add a receiver and a heartbeat; then SIGHUP.
    std::fs::write(
        &cfg,
        format!(
            "{head}api: {{token: new-write, read_token: new-read}}\nnotifications:\n  receivers:\n    - name: desk\n      webhook: {{url: \"http://127.0.0.1:9/hook\"}}\n  route: {{receiver: desk}}\nheartbeat:\n  url: http://127.0.0.1:9/beat\n  interval: 1h\n  timeout: 1s\n"
        ),
    )
    .unwrap();
    sighup(&child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get("/metrics", "new-read").await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "the rotated read token never worked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old tokens are refused at once, for reads and for writes.
    assert_eq!(get("/metrics", "old-read").await.status(), 401);
    assert_eq!(get("/metrics", "old-write").await.status(), 401);
    let post = |token: &'static str| {
        client
            .post(format!("{base}/-/reload"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(post("old-write").await.unwrap().status(), 401);
    let r = post("new-write").await.unwrap();
    assert_eq!(r.status(), 200);
    let outcome: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!([]),
        "{outcome}"
    );
    // The new write token reads too.
    assert_eq!(get("/metrics", "new-write").await.status(), 200);

    // What the status says runs now: the receiver and the heartbeat.
    let after = status("new-read").await;
    assert_eq!(after["config"]["write_token_set"], true);
    let desk = after["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "desk")
        .unwrap_or_else(|| panic!("no desk receiver after the reload: {after}"));
    assert_eq!(desk["integrations"], serde_json::json!(["webhook"]));
    assert_eq!(after["heartbeat"]["interval_seconds"], 3600.0, "{after}");

    // A section read at start-up only is reported; dropping the read token opens
    // reads again at once.
    std::fs::write(
        &cfg,
        // desk is replaced by ops (dropping every receiver is refused: tests/faults).
        format!(
            "{head}api: {{token: new-write, max_connections: 64}}\nnotifications:\n  receivers:\n    - name: ops\n      webhook: {{url: \"http://127.0.0.1:9/hook\"}}\n  route: {{receiver: ops}}\n"
        ),
    )
    .unwrap();
    let r = post("new-write").await.unwrap();
    assert_eq!(r.status(), 200);
    let outcome: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        outcome["restart_required"],
        serde_json::json!(["api"]),
        "{outcome}"
    );
    let after = status("nobody").await;
    assert!(after.get("heartbeat").is_none(), "{after}");
    assert!(!names(&after).contains(&"desk".to_string()), "{after}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    for secret in ["old-write", "new-write", "old-read", "new-read"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
