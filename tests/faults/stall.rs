//! No request can stall the server (issue 25, item 8): a receiver that hangs on one
//! notification does not hold back the later ones for more than a bounded time, an
//! email receiver names at most 100 recipients, and a test send to 100 recipients
//! leaves the API answering.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{free_port, spawn_m4watch, wait_up};

const TOKEN: &str = "test-write-token";

/// A stand-in we wrote for a webhook receiver that hangs on every request about the
/// alert `Stuck` and answers the others at once; it logs each request (alert name and
/// when) before answering.
async fn hanging_receiver() -> (String, Arc<Mutex<Vec<(String, Instant)>>>) {
    let log: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let seen = Arc::clone(&log);
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = Arc::clone(&seen);
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let name = v["groupLabels"]["alertname"]
                .as_str()
                .unwrap_or("")
                .to_string();
            seen.lock().unwrap().push((name.clone(), Instant::now()));
            if name == "Stuck" {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, log)
}

fn write_config(path: &Path, port: u16, data: &Path, receivers: &str) {
    std::fs::write(
        path,
        format!(
            r#"listen: 127.0.0.1:{port}
data_dir: {data}
api: {{token: {TOKEN}}}
containers: {{enabled: false}}
rules: {{enabled: false}}
trading: {{statsd_listen: "127.0.0.1:0"}}
notifications:
  delivery: {{timeout: 1s, initial_backoff: 100ms, max_backoff: 200ms}}
{receivers}  route: {{receiver: ops, group_by: [alertname], group_wait: 0s}}
"#,
            data = data.display(),
        ),
    )
    .unwrap();
}

fn alert(name: &str) -> Value {
    json!({"labels": {"alertname": name, "severity": "critical"}})
}

async fn post(client: &reqwest::Client, base: &str, alerts: Value) {
    let r = client
        .post(format!("{base}/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The first notification hangs at the receiver on every attempt; the three queued
/// behind it in the same lane arrive once it is moved aside (after 3 attempts of at
/// most `delivery.timeout` 1 s each), within 10 s, and it is counted and still retried.
/// Before, they waited for its `max_age` (24 h by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_notification_is_moved_aside_and_later_ones_flow() {
    let (hook, seen) = hanging_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("m4watch.yml");
    write_config(
        &cfg,
        port,
        &dir.path().join("data"),
        &format!("  receivers:\n    - name: ops\n      webhook: {{url: \"{hook}\"}}\n"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    let _d = spawn_m4watch(&cfg, &dir.path().join("m4watch.log"), "info", &[]);
    wait_up(&client, &base).await;
    post(&client, &base, json!([alert("Stuck")])).await;
    let start = Instant::now();
    while !seen.lock().unwrap().iter().any(|(n, _)| n == "Stuck") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Stuck never sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    post(
        &client,
        &base,
        json!([alert("Later1"), alert("Later2"), alert("Later3")]),
    )
    .await;
    let queued = Instant::now();
    let arrived = |n: &str| seen.lock().unwrap().iter().any(|(m, _)| m == n);
    while !["Later1", "Later2", "Later3"].iter().all(|n| arrived(n)) {
        assert!(
            queued.elapsed() < Duration::from_secs(10),
            "later notifications held back behind the stuck one: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = queued.elapsed();
    println!("later notifications arrived {waited:?} after they were queued");
    // /metrics is a snapshot, refreshed every few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let moved = metrics
            .lines()
            .find(|l| {
                l.starts_with("m4watch_notifications_moved_aside_total{")
                    && l.contains("integration=\"webhook\"")
            })
            .unwrap_or_else(|| panic!("no moved-aside series:\n{metrics}"))
            .to_string();
        if moved.ends_with(" 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{moved}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still retried after it was moved aside: never dropped.
    let attempts = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == "Stuck")
            .count()
    };
    let before = attempts();
    let deadline = Instant::now() + Duration::from_secs(10);
    while attempts() <= before {
        assert!(
            Instant::now() < deadline,
            "the stuck notification is no longer retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = client
        .get(format!("{base}/api/v1/monitoring/notifications"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pending.contains("\"status\":\"pending\""), "{pending}");
}

fn recipients(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ops{i}@example.com")).collect()
}

/// 10 000 recipients are refused with the limit named, by `check-config` and by the
/// configure API; 100 are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_recipients_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m4watch.yml");
    let mail = |n: usize| {
        format!(
            "  receivers:\n    - name: ops\n      email: {{smarthost: \"127.0.0.1:25\", tls: none, from: m4watch@example.com, to: {}}}\n",
            serde_json::to_string(&recipients(n)).unwrap()
        )
    };
    let port = free_port();
    write_config(&cfg, port, &dir.path().join("data"), &mail(10_000));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("receivers[0].email.to") && text.contains("at most 100"),
        "{text}"
    );
    write_config(&cfg, port, &dir.path().join("data"), &mail(100));
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["check-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    let _d = spawn_m4watch(&cfg, &dir.path().join("m4watch.log"), "info", &[]);
    wait_up(&client, &base).await;
    let r = client
        .post(format!("{base}/api/v1/monitoring/notifications/configure"))
        .bearer_auth(TOKEN)
        .json(&json!({"receiver": "ops", "email": {
            "smarthost": "127.0.0.1:25", "tls": "none", "from": "m4watch@example.com",
            "to": recipients(10_000)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("at most 100"), "{body}");
}

/// A test send to 100 recipients through a real SMTP server (aiosmtpd) while the API
/// is asked for its health every 20 ms: every answer comes within 1 s, and the mail
/// reaches all 100. (Building the message runs off the async workers, once per send,
/// in O(n); 10 000 recipients used to take every route offline for minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_during_a_test_send_to_100_recipients() {
    let python = std::path::PathBuf::from("/usr/bin/python3");
    assert!(
        std::process::Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success()),
        "python3-aiosmtpd is not installed: run scripts/test.sh, which installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let mails = dir.path().join("mail");
    std::fs::create_dir_all(&mails).unwrap();
    let smtp_port = free_port();
    let mut smtp = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/smtp_sink.py"
        ))
        .arg(smtp_port.to_string())
        .arg(&mails)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(smtp.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _smtp = crate::common::KillOnDrop(smtp);
    assert_eq!(line.trim(), "ready");
    let cfg = dir.path().join("m4watch.yml");
    let port = free_port();
    write_config(
        &cfg,
        port,
        &dir.path().join("data"),
        &format!(
            "  receivers:\n    - name: ops\n      email: {{smarthost: \"127.0.0.1:{smtp_port}\", tls: none, from: m4watch@example.com, to: {}}}\n",
            serde_json::to_string(&recipients(100)).unwrap()
        ),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    let _d = spawn_m4watch(&cfg, &dir.path().join("m4watch.log"), "info", &[]);
    wait_up(&client, &base).await;
    let send = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            client
                .post(format!("{base}/api/v1/monitoring/notifications/test"))
                .bearer_auth(TOKEN)
                .json(&json!({"receiver": "ops"}))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let mut slowest = Duration::ZERO;
    while !send.is_finished() {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            client.get(format!("{base}/-/healthy")).send(),
        )
        .await
        .expect("the API did not answer within 1 s during the send")
        .unwrap();
        assert!(r.status().is_success());
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let result = send.await.unwrap();
    assert!(result.contains("\"delivered\":true"), "{result}");
    println!("slowest health answer during the send: {slowest:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mail = loop {
        let got: Vec<_> = std::fs::read_dir(&mails).unwrap().flatten().collect();
        if let Some(m) = got.first() {
            break std::fs::read_to_string(m.path()).unwrap();
        }
        assert!(Instant::now() < deadline, "no mail arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let envelope = mail
        .lines()
        .find(|l| l.starts_with("X-Envelope-To:"))
        .unwrap_or_default()
        .to_string();
    assert_eq!(envelope.matches('@').count(), 100, "{envelope}");
}
