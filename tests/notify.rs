//! Notifier tests against real components: a local HTTP server standing in for Slack
//! and PagerDuty (which cannot be reached) that checks their published schemas and
//! answers as scripted, a real SMTP server (aiosmtpd), and a real Alertmanager.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sink::Sink;
use common::{Daemon, KillOnDrop, free_port, require_tool, series, spawn_m4watch, wait_up};
use m4watch::config::Config;
use serde_json::{Value, json};

pub const TOKEN: &str = "test-write-token";

/// A headline as a host that sets no `external_labels` sends it: naming the host by
/// its hostname (issue 27).
fn on_host(title: &str) -> String {
    format!("{title} on {}", m4watch::config::hostname())
}

/// A config with its own data dir and a write token.
pub fn config(dir: &Path, yaml: &str) -> Config {
    let text = format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\napi:\n  token: {TOKEN}\nprocess:\n  interval: 1s\n{yaml}",
        dir.display()
    );
    let mut c =
        Config::parse(&text, "<test>", Path::new("."), &|_| None).expect("test config is valid");
    common::ephemeral_statsd(&mut c);
    c
}

/// A Prometheus-style alert; `resolved` sets `endsAt` in the past.
pub fn alert(name: &str, severity: &str, resolved: bool) -> Value {
    let ends = if resolved {
        chrono::Utc::now() - chrono::Duration::seconds(1)
    } else {
        chrono::Utc::now() + chrono::Duration::minutes(5)
    };
    json!({
        "labels": {"alertname": name, "severity": severity, "instance": "m4max-01"},
        "annotations": {
            "summary": format!("{name} on m4max-01"),
            "description": "P-core utilisation above 95% for 1m",
            "runbook_url": "https://runbooks.example/cpu"
        },
        "startsAt": "2026-11-22T09:00:00Z",
        "endsAt": ends.to_rfc3339(),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x"
    })
}

pub async fn post_alerts(client: &reqwest::Client, base: &str, alerts: Value) {
    let r = client
        .post(format!("{base}/api/v2/alerts"))
        .bearer_auth(TOKEN)
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// Asserts the Block Kit shape Slack documents for incoming webhooks.
fn assert_block_kit(body: &Value) {
    assert!(body["text"].is_string(), "fallback text: {body}");
    let att = &body["attachments"][0];
    assert!(
        att["color"].as_str().unwrap().starts_with('#'),
        "colour: {body}"
    );
    let blocks = att["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 150);
            }
            "section" => {
                assert!(b.get("text").is_some() || b.get("fields").is_some());
                if let Some(t) = b.get("text") {
                    assert!(matches!(t["type"].as_str(), Some("mrkdwn" | "plain_text")));
                    assert!(t["text"].as_str().unwrap().chars().count() <= 3000);
                }
                if let Some(f) = b.get("fields") {
                    let f = f.as_array().unwrap();
                    assert!(f.len() <= 10);
                    for x in f {
                        assert!(x["text"].as_str().unwrap().chars().count() <= 2000);
                    }
                }
            }
            "context" => {
                let e = b["elements"].as_array().unwrap();
                assert!(!e.is_empty() && e.len() <= 10);
            }
            "actions" => {
                for e in b["elements"].as_array().unwrap() {
                    assert_eq!(e["type"], "button");
                    assert_eq!(e["text"]["type"], "plain_text");
                    assert!(e["url"].as_str().unwrap().starts_with("http"));
                }
            }
            other => panic!("unexpected block type {other}"),
        }
    }
}

/// Asserts the required fields of a PagerDuty Events API v2 event.
fn assert_pd_event(ev: &Value, routing_key: &str) {
    assert_eq!(ev["routing_key"], routing_key);
    let action = ev["event_action"].as_str().unwrap();
    assert!(matches!(action, "trigger" | "acknowledge" | "resolve"));
    assert!(!ev["dedup_key"].as_str().unwrap().is_empty());
    if action == "trigger" {
        let p = &ev["payload"];
        assert!(!p["summary"].as_str().unwrap().is_empty());
        assert!(p["summary"].as_str().unwrap().chars().count() <= 1024);
        assert!(!p["source"].as_str().unwrap().is_empty());
        assert!(matches!(
            p["severity"].as_str(),
            Some("critical" | "error" | "warning" | "info")
        ));
    }
}

fn value_of(metrics: &str, family: &str, labels: &str) -> f64 {
    series(metrics, family)
        .into_iter()
        .find(|l| l.contains(labels))
        .unwrap_or_else(|| panic!("no {family}{{{labels}}} in\n{metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn slack_and_pagerduty_retry_as_told_and_never_retry_a_400() {
    let sink = Sink::start().await;
    // Slack: rate limited with Retry-After 1, then a 500, then accepted.
    sink.script("/slack", &[(429, Some("1")), (500, None)]);
    // PagerDuty: the first event is refused as malformed: never retried.
    sink.script("/pd", &[(400, None)]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &format!(
            r#"notifications:
  delivery: {{initial_backoff: 100ms, max_backoff: 500ms}}
  receivers:
    - name: ops
      slack: {{webhook_url: "{}"}}
      pagerduty: {{routing_key: pd-key-123, url: "{}"}}
  route:
    receiver: ops
    group_interval: 200ms
"#,
            sink.url("/slack/T0/B0/secret"),
            sink.url("/pd/enqueue")
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([alert("HighCpu", "critical", false)]),
    )
    .await;

    let slack = sink.wait_for("/slack", 3, 15).await;
    assert_eq!(slack.len(), 3, "429, 500, then delivered");
    assert!(
        slack[1].at - slack[0].at >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {:?}",
        slack[1].at - slack[0].at
    );
    assert_eq!(
        slack[0].body, slack[2].body,
        "a retry sends the same message"
    );
    assert_block_kit(&slack[2].body);
    let text = slack[2].body.to_string();
    for want in [
        "[FIRING:1] HighCpu",
        "HighCpu on m4max-01",
        "P-core utilisation above 95% for 1m",
        "https://runbooks.example/cpu",
        "severity=critical",
        "#d00000",
    ] {
        assert!(text.contains(want), "Slack message lacks {want:?}: {text}");
    }

    let pd = sink.wait_for("/pd", 1, 5).await;
    assert_pd_event(&pd[0].body, "pd-key-123");
    assert_eq!(pd[0].body["event_action"], "trigger");
    assert_eq!(pd[0].body["payload"]["severity"], "critical");

    // Resolve: Slack gets a green message, PagerDuty a resolve with the same key as
    // the trigger (which PagerDuty refused, so this is the next event on that lane).
    post_alerts(
        &d.client,
        &base,
        json!([alert("HighCpu", "critical", true)]),
    )
    .await;
    let slack = sink.wait_for("/slack", 4, 10).await;
    assert_eq!(slack[3].body["text"], on_host("[RESOLVED] HighCpu"));
    assert_eq!(slack[3].body["attachments"][0]["color"], "#2eb886");
    let pd = sink.wait_for("/pd", 2, 10).await;
    assert_eq!(pd[1].body["event_action"], "resolve");
    assert_eq!(pd[1].body["dedup_key"], pd[0].body["dedup_key"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received("/pd").len(), 2, "the 400 was not retried");

    // Delivery results are kept and shown.
    let list: Value = d
        .get("/api/v1/monitoring/notifications")
        .await
        .json()
        .await
        .unwrap();
    let deliveries = list["deliveries"].as_array().unwrap();
    let failed: Vec<_> = deliveries
        .iter()
        .filter(|x| x["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{list:#}");
    assert_eq!(failed[0]["integration"], "pagerduty");
    assert_eq!(failed[0]["last_reason"], "client_error");
    assert_eq!(failed[0]["attempts"], 1);
    let text = list.to_string();
    assert!(
        !text.contains("pd-key-123") && !text.contains("/slack/T0"),
        "{text}"
    );

    let m = d
        .scrape_until(5, |m| {
            // The snapshot is re-encoded on its own clock: wait until it holds the
            // last (fourth) Slack attempt, not just the failed ones.
            m.contains("m4watch_notifications_failed_total{integration=\"slack\",reason=\"server_error\",receiver=\"ops\"} 1")
                && m.contains("m4watch_notification_latency_seconds_count{integration=\"slack\"} 4")
        })
        .await;
    let f = "m4watch_notifications_failed_total";
    assert_eq!(
        value_of(
            &m,
            f,
            "integration=\"slack\",reason=\"rate_limited\",receiver=\"ops\""
        ),
        1.0
    );
    assert_eq!(
        value_of(
            &m,
            f,
            "integration=\"pagerduty\",reason=\"client_error\",receiver=\"ops\""
        ),
        1.0
    );
    assert_eq!(
        value_of(
            &m,
            f,
            "integration=\"slack\",reason=\"auth\",receiver=\"ops\""
        ),
        0.0,
        "pre-created"
    );
    assert_eq!(
        value_of(
            &m,
            "m4watch_notifications_total",
            "integration=\"slack\",receiver=\"ops\""
        ),
        4.0
    );
    assert_eq!(value_of(&m, "m4watch_notification_queue_length", ""), 0.0);
    assert!(m.contains("m4watch_notification_latency_seconds_count{integration=\"slack\"} 4"));
    d.stop().await;
}

#[tokio::test]
async fn routes_continue_group_and_honour_send_resolved() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &format!(
            r#"notifications:
  receivers:
    - name: page
      webhook: {{url: "{}"}}
    - name: chat
      send_resolved: false
      webhook: {{url: "{}"}}
    - name: mail
      webhook: {{url: "{}"}}
  route:
    receiver: mail
    group_by: [alertname]
    group_interval: 300ms
    routes:
      - matchers: ['severity="critical"']
        receiver: page
        continue: true
      - matchers: ['severity=~"critical|warning"']
        receiver: chat
"#,
            sink.url("/page"),
            sink.url("/chat"),
            sink.url("/mail")
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([alert("DiskFull", "critical", false)]),
    )
    .await;
    let page = sink.wait_for("/page", 1, 5).await;
    let chat = sink.wait_for("/chat", 1, 5).await;
    assert_eq!(page[0].body["version"], "4");
    assert_eq!(page[0].body["status"], "firing");
    assert_eq!(
        page[0].body["groupLabels"],
        json!({"alertname": "DiskFull"})
    );
    assert!(
        chat[0].body["alerts"][0]["labels"].get("source").is_none(),
        "labels stay as Prometheus sent them"
    );
    assert!(
        sink.received("/mail").is_empty(),
        "mail is only the fallback"
    );

    // group_wait 0s: the first alert went out at once; a second alert of the same
    // group waits for group_interval and then comes with the first.
    let mut second = alert("DiskFull", "critical", false);
    second["labels"]["instance"] = json!("m4max-02");
    post_alerts(&d.client, &base, json!([second])).await;
    let page = sink.wait_for("/page", 2, 5).await;
    assert_eq!(page[1].body["alerts"].as_array().unwrap().len(), 2);
    assert!(page[1].at - page[0].at >= Duration::from_millis(250));

    // Info goes to the fallback.
    post_alerts(&d.client, &base, json!([alert("Note", "info", false)])).await;
    sink.wait_for("/mail", 1, 5).await;

    // Resolve both: page (send_resolved default true) hears it, chat does not...
    let mut second = alert("DiskFull", "critical", true);
    second["labels"]["instance"] = json!("m4max-02");
    post_alerts(
        &d.client,
        &base,
        json!([alert("DiskFull", "critical", true), second]),
    )
    .await;
    let page = sink.wait_for("/page", 3, 5).await;
    assert_eq!(page[2].body["status"], "resolved", "{:#?}", page);
    // ...unless the alert asks for it with m4watch_send_resolved="true".
    let mut loud = alert("Loud", "warning", false);
    loud["labels"]["m4watch_send_resolved"] = json!("true");
    post_alerts(&d.client, &base, json!([loud.clone()])).await;
    // chat so far: DiskFull, DiskFull with its second alert, Loud.
    sink.wait_for("/chat", 3, 5).await;
    loud["endsAt"] = json!((chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339());
    post_alerts(&d.client, &base, json!([loud])).await;
    let chat = sink.wait_for("/chat", 4, 5).await;
    assert_eq!(
        chat[3].body["status"],
        "resolved",
        "{:#?}",
        chat.iter()
            .map(|c| (
                c.body["status"].clone(),
                c.body["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| (
                        a["labels"]["alertname"].clone(),
                        a["labels"]["instance"].clone(),
                        a["status"].clone()
                    ))
                    .collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(chat[3].body["alerts"][0]["labels"]["alertname"], "Loud");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        sink.received("/chat").len(),
        4,
        "DiskFull's resolve never reached chat"
    );
    d.stop().await;
}

#[tokio::test]
async fn unacknowledged_critical_alerts_escalate() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &format!(
            r#"notifications:
  receivers:
    - name: chat
      webhook: {{url: "{}"}}
    - name: oncall
      pagerduty: {{routing_key: k, url: "{}"}}
  route: {{receiver: chat}}
  escalation: {{receiver: oncall, after: 500ms}}
"#,
            sink.url("/chat"),
            sink.url("/pd")
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([
            alert("Latency", "critical", false),
            alert("Minor", "warning", false)
        ]),
    )
    .await;
    sink.wait_for("/chat", 2, 5).await;
    let pd = sink.wait_for("/pd", 1, 5).await;
    assert!(
        pd[0].body["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[ESCALATED] Latency")
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        sink.received("/pd").len(),
        1,
        "only the critical one escalates, once"
    );
    d.stop().await;
}

#[tokio::test]
async fn kill_9_loses_no_notification_and_no_secret_leaks() {
    const SLACK_SECRET: &str = "XOXSLACKSECRET42";
    const PD_SECRET: &str = "PDROUTINGSECRET42";
    const SMTP_SECRET: &str = "SMTPPASSWORDSECRET42";
    let dir = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let port = free_port();
    let smtp_port = free_port(); // nothing listens: email fails, retryably
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"listen: 127.0.0.1:{port}
data_dir: {data}
api: {{token: {TOKEN}}}
process: {{interval: 1s}}
trading: {{statsd_listen: "127.0.0.1:0"}}
notifications:
  delivery: {{initial_backoff: 100ms, max_backoff: 300ms}}
  receivers:
    - name: ops
      slack: {{}}
      pagerduty: {{url: "http://127.0.0.1:{sink_port}/pd"}}
      email:
        smarthost: 127.0.0.1:{smtp_port}
        tls: none
        from: m4watch@example.com
        to: [ops@example.com]
        username: m4watch
  route: {{receiver: ops}}
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("m4watch.log");
    let slack_url = format!("http://127.0.0.1:{sink_port}/slack/{SLACK_SECRET}");
    let env = [
        ("M4WATCH_SLACK_WEBHOOK_URL", slack_url.as_str()),
        ("M4WATCH_PAGERDUTY_ROUTING_KEY", PD_SECRET),
        ("M4WATCH_SMTP_PASSWORD", SMTP_SECRET),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();

    let mut first = spawn_m4watch(&cfg, &log, "debug", &env);
    wait_up(&client, &base).await;
    let names: Vec<String> = (0..5).map(|i| format!("Crash{i}")).collect();
    for n in &names {
        post_alerts(&client, &base, json!([alert(n, "critical", false)])).await;
    }
    // Let a few attempts fail against the missing sink, then kill -9.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = client
        .get(format!("{base}/api/v1/monitoring/notifications"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let pending = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "pending")
        .count();
    assert_eq!(
        pending, 15,
        "5 alerts x 3 integrations pending before the kill: {v:#}"
    );

    // Restart on the same data dir, then bring the sink up.
    let _second = spawn_m4watch(&cfg, &log, "debug", &env);
    wait_up(&client, &base).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", sink_port))
        .await
        .expect("sink port still free");
    let sink = Sink::on(listener).await;
    let slack = sink.wait_for("/slack", 5, 15).await;
    let pd = sink.wait_for("/pd", 5, 15).await;
    let mut got: Vec<String> = slack
        .iter()
        .map(|r| r.body["text"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    got.dedup();
    let want: Vec<String> = names
        .iter()
        .map(|n| on_host(&format!("[FIRING:1] {n}")))
        .collect();
    assert_eq!(got, want, "every Slack notification arrived");
    for r in &pd {
        assert_pd_event(&r.body, PD_SECRET);
    }

    // Secrets stay out of logs, errors and API answers.
    let api = client
        .get(format!("{base}/api/v1/monitoring/notifications"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        api.contains("\"email\"") && api.contains("<redacted>"),
        "{api}"
    );
    let configured = client
        .post(format!("{base}/api/v1/monitoring/notifications/configure"))
        .bearer_auth(TOKEN)
        .json(&json!({"receiver": "ops", "slack_webhook": slack_url}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tested = client
        .post(format!("{base}/api/v1/monitoring/notifications/test"))
        .bearer_auth(TOKEN)
        .json(&json!({"receiver": "ops"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(tested.contains("\"integration\":\"email\""), "{tested}");
    assert!(tested.contains("\"reason\":\"connection\""), "{tested}");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("notification failed; will retry"), "{logs}");
    for (what, text) in [
        ("logs", &logs),
        ("list", &api),
        ("configure", &configured),
        ("test", &tested),
    ] {
        for s in [SLACK_SECRET, PD_SECRET, SMTP_SECRET] {
            assert!(!text.contains(s), "{s} leaked into the {what}: {text}");
        }
    }
}

/// The real SMTP server (aiosmtpd) on loopback.
struct Smtp {
    port: u16,
    dir: PathBuf,
    _proc: KillOnDrop,
}

fn start_smtp(root: &Path) -> Smtp {
    start_smtp_with(root, "mail", &[])
}

/// `extra`: `starttls|tls CERT KEY` for a TLS server that offers AUTH.
fn start_smtp_with(root: &Path, name: &str, extra: &[&Path]) -> Smtp {
    let python = PathBuf::from("/usr/bin/python3");
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3-aiosmtpd is not installed: run scripts/test.sh, which installs it"
    );
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut child = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/smtp_sink.py"
        ))
        .arg(port.to_string())
        .arg(&dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "SMTP sink did not start");
    Smtp {
        port,
        dir,
        _proc: KillOnDrop(child),
    }
}

fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Waits (up to 10 s) until `n` mails arrived; returns them with quoted-printable
/// soft breaks and CRLFs unfolded.
async fn wait_mails(dir: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = mails(dir);
        if got.len() >= n {
            return got
                .iter()
                .map(|m| m.replace("=\r\n", "").replace("\r\n", "\n"))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "wanted {n} mails, got {}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 24: a resolve names when its incident began, in every integration. The
/// notifier used to look the start up among the active alerts, and a resolved alert
/// is not one of them: the resolve said it had begun when it ended.
#[tokio::test]
async fn a_resolve_carries_the_firings_starts_at_to_slack_email_and_webhook() {
    let sink = Sink::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let smtp = start_smtp(tmp.path());
    let d = Daemon::start(config(
        tmp.path(),
        &format!(
            r#"notifications:
  receivers:
    - name: ops
      slack: {{webhook_url: "{}"}}
      webhook: {{url: "{}"}}
      email:
        smarthost: 127.0.0.1:{}
        tls: none
        from: "m4watch <m4watch@example.com>"
        to: [ops@example.com]
  route: {{receiver: ops, group_by: ["..."], group_interval: 300ms}}
"#,
            sink.url("/slack"),
            sink.url("/hook"),
            smtp.port
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    // `alert` posts startsAt 2026-11-22T09:00:00Z.
    post_alerts(
        &d.client,
        &base,
        json!([alert("DiskFull", "warning", false)]),
    )
    .await;
    sink.wait_for("/slack", 1, 10).await;
    sink.wait_for("/hook", 1, 10).await;
    wait_mails(&smtp.dir, 1).await;
    post_alerts(
        &d.client,
        &base,
        json!([alert("DiskFull", "warning", true)]),
    )
    .await;

    let hook = sink.wait_for("/hook", 2, 10).await;
    for (i, status) in [(0, "firing"), (1, "resolved")] {
        let a = &hook[i].body["alerts"][0];
        assert_eq!(a["status"], status, "{}", hook[i].body);
        assert_eq!(a["startsAt"], "2026-11-22T09:00:00+00:00", "{status}: {a}");
    }
    let slack = sink.wait_for("/slack", 2, 10).await;
    assert!(slack[1].body["text"].as_str().unwrap().contains("RESOLVED"));
    for s in &slack {
        let text = s.body.to_string();
        assert!(text.contains("*Since*\\n2026-11-22 09:00:00 UTC"), "{text}");
    }
    let mail = wait_mails(&smtp.dir, 2).await;
    assert!(
        mail[1].contains("RESOLVED: DiskFull on m4max-01"),
        "{}",
        mail[1]
    );
    for m in &mail {
        assert!(m.contains("since: 2026-11-22T09:00:00+00:00"), "{m}");
    }
    d.stop().await;
}

/// Issue 27: every message names the host and links to the runbook (on this
/// m4watch) and the dashboard (on the configured Grafana): Slack buttons, the email's
/// links, PagerDuty's `source` and `links`, the webhook's labels and `externalURL`.
#[tokio::test]
async fn every_message_names_its_host_and_links_to_runbook_and_dashboard() {
    let sink = Sink::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let smtp = start_smtp(tmp.path());
    let d = Daemon::start(config(
        tmp.path(),
        &format!(
            r#"external_labels: {{host: mac-07, desk: fx}}
external_url: http://mac-07.desk.example:9977/
grafana_url: http://grafana.desk.example:3000
notifications:
  receivers:
    - name: ops
      slack: {{webhook_url: "{}"}}
      webhook: {{url: "{}"}}
      pagerduty: {{routing_key: k, url: "{}"}}
      email:
        smarthost: 127.0.0.1:{}
        tls: none
        from: "m4watch <m4watch@example.com>"
        to: [ops@example.com]
  route: {{receiver: ops, group_interval: 300ms}}
"#,
            sink.url("/slack"),
            sink.url("/hook"),
            sink.url("/pd"),
            smtp.port
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    let runbook = "http://mac-07.desk.example:9977/runbooks#pcorehigh";
    let dashboard = "http://grafana.desk.example:3000/d/m4watch-hardware";
    post_alerts(
        &d.client,
        &base,
        json!([{
            "labels": {"alertname": "PCoreHigh", "severity": "warning"},
            "annotations": {
                "summary": "P-cores busy",
                "runbook_url": "/runbooks#pcorehigh",
                "dashboard_url": "/d/m4watch-hardware"
            },
            "startsAt": "2026-11-22T09:00:00Z"
        }]),
    )
    .await;
    let slack = sink.wait_for("/slack", 1, 10).await;
    let body = &slack[0].body;
    assert_eq!(body["text"], "[FIRING:1] PCoreHigh on mac-07");
    let text = body.to_string();
    assert!(
        text.contains("`host=mac-07`") && text.contains("`desk=fx`"),
        "{text}"
    );
    let buttons: Vec<&Value> = body["attachments"][0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap())
        .collect();
    let urls: Vec<&str> = buttons.iter().map(|b| b["url"].as_str().unwrap()).collect();
    assert_eq!(urls, [runbook, dashboard], "{text}");

    let pd = sink.wait_for("/pd", 1, 10).await;
    let p = &pd[0].body["payload"];
    assert_eq!(p["source"], "mac-07");
    assert_eq!(p["custom_details"]["host"], "mac-07");
    let links: Vec<&str> = pd[0].body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["href"].as_str().unwrap())
        .collect();
    assert_eq!(links, [runbook, dashboard]);

    let hook = sink.wait_for("/hook", 1, 10).await;
    assert_eq!(
        hook[0].body["externalURL"],
        "http://mac-07.desk.example:9977"
    );
    let a = &hook[0].body["alerts"][0];
    assert_eq!(a["labels"]["host"], "mac-07");
    assert_eq!(a["annotations"]["runbook_url"], runbook);
    assert_eq!(a["annotations"]["dashboard_url"], dashboard);

    let mail = wait_mails(&smtp.dir, 1).await;
    // Quoted-printable writes `=` as `=3D`.
    let m = mail[0].replace("=3D", "=");
    assert!(m.contains("[FIRING:1] PCoreHigh on mac-07"), "{m}");
    assert!(m.contains("host=mac-07"), "{m}");
    assert!(m.contains(&format!("Runbook: {runbook}")), "{m}");
    assert!(m.contains(&format!("Dashboard: {dashboard}")), "{m}");
    d.stop().await;
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_with_both_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = start_smtp(tmp.path());
    let d = Daemon::start(config(
        tmp.path(),
        &format!(
            r#"notifications:
  receivers:
    - name: mail
      email:
        smarthost: 127.0.0.1:{}
        tls: none
        from: "m4watch <m4watch@example.com>"
        to: [ops@example.com, desk@example.com]
  route: {{receiver: mail}}
"#,
            smtp.port
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([alert("HighCpu", "critical", false)]),
    )
    .await;
    let unfolded = wait_mails(&smtp.dir, 1).await.remove(0);
    for want in [
        "X-Envelope-From: m4watch@example.com",
        "X-Envelope-To: ops@example.com,desk@example.com",
        "From: m4watch <m4watch@example.com>",
        "To: ops@example.com, desk@example.com",
        "Subject: [CRITICAL] [FIRING:1] HighCpu",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
        "FIRING: HighCpu on m4max-01",
        "<h3>FIRING: HighCpu on m4max-01</h3>",
        "https://runbooks.example/cpu",
    ] {
        assert!(unfolded.contains(want), "mail lacks {want:?}:\n{unfolded}");
    }
    assert!(unfolded.contains("Message-ID: <") && unfolded.contains("Date: "));
    d.stop().await;
}

/// One firing alert named `alertname`, for the `mail` receiver.
fn mail_notification(alertname: &str) -> m4watch::internals::notify::Notification {
    use m4watch::internals::notify::{AlertEvent, AlertSource, AlertState, Kind, Notification};
    let labels: std::collections::BTreeMap<String, String> =
        [("alertname".to_string(), alertname.to_string())].into();
    Notification {
        receiver: "mail".into(),
        kind: Kind::Alert,
        group_key: "g".into(),
        group_labels: Default::default(),
        alerts: vec![AlertEvent {
            fingerprint: m4watch::internals::model::fingerprint(&labels),
            labels,
            annotations: Default::default(),
            state: AlertState::Firing,
            starts_at: chrono::Utc::now(),
            ends_at: None,
            value: None,
            source: AlertSource::Rules,
            generator_url: None,
        }],
    }
}

#[tokio::test]
async fn smtp_steps_are_classified() {
    use m4watch::config::notify::{EmailConfig, SmtpTls};
    use m4watch::internals::notify::Email;
    use m4watch::internals::notify::{Ctx, Reason};
    let tmp = tempfile::tempdir().unwrap();
    let smtp = start_smtp(tmp.path());
    let ctx = Ctx::new(Duration::from_secs(5));
    let n = mail_notification("A");
    let cfg = |port: u16, tls: SmtpTls, to: &str, user: Option<&str>| EmailConfig {
        smarthost: format!("127.0.0.1:{port}"),
        tls,
        from: "m4watch@example.com".into(),
        to: vec![to.into()],
        username: user.map(str::to_string),
        password: user.map(|_| m4watch::config::Secret::new("pw")),
        ..Default::default()
    };
    // Delivered in plain mode.
    Email::new(
        &cfg(smtp.port, SmtpTls::None, "ops@example.com", None),
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap();
    // A refused recipient is permanent: never retried.
    let e = Email::new(&cfg(smtp.port, SmtpTls::None, "x@reject.test", None), &ctx)
        .notify(&n)
        .await
        .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Rejected, false), "{e}");
    // STARTTLS on a server without it: retryable.
    let e = Email::new(
        &cfg(smtp.port, SmtpTls::Starttls, "ops@example.com", None),
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Tls, true), "{e}");
    // Auth the server does not offer: retryable.
    let e = Email::new(
        &cfg(smtp.port, SmtpTls::None, "ops@example.com", Some("u")),
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Auth, true), "{e}");
    // Nobody listening: retryable.
    let e = Email::new(
        &cfg(free_port(), SmtpTls::None, "ops@example.com", None),
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Connection, true), "{e}");
    assert_eq!(mails(&smtp.dir).len(), 1);
}

#[tokio::test]
async fn alerts_are_forwarded_to_a_real_alertmanager() {
    let am = require_tool("prometheus-alertmanager");
    let tmp = tempfile::tempdir().unwrap();
    let am_cfg = tmp.path().join("alertmanager.yml");
    std::fs::write(
        &am_cfg,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am_port = free_port();
    let _am = KillOnDrop(
        Command::new(am)
            .arg(format!("--config.file={}", am_cfg.display()))
            .arg(format!(
                "--storage.path={}",
                tmp.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let am_base = format!("http://127.0.0.1:{am_port}");
    let client = m4watch::tls::client();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !client
        .get(format!("{am_base}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "Alertmanager never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = Daemon::start(config(
        tmp.path(),
        &format!(
            "notifications:\n  receivers:\n    - name: am\n      alertmanager: {{urls: [\"{am_base}\"]}}\n  route: {{receiver: am, group_interval: 200ms}}\n"
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([alert("HighCpu", "critical", false)]),
    )
    .await;
    let active = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == "HighCpu")
            .cloned()
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let v: Value = client
            .get(format!("{am_base}/api/v2/alerts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let a = active(&v);
        if !a.is_empty() {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager never got the alert"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        got[0]["labels"].get("source").is_none(),
        "forwarded as sent"
    );
    assert_eq!(got[0]["labels"]["instance"], "m4max-01");
    assert_eq!(got[0]["annotations"]["summary"], "HighCpu on m4max-01");
    assert_eq!(got[0]["status"]["state"], "active");

    // The resolve reaches Alertmanager too, which then stops listing it as active.
    post_alerts(
        &d.client,
        &base,
        json!([alert("HighCpu", "critical", true)]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = client
            .get(format!("{am_base}/api/v2/alerts?active=true"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if active(&v).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager still lists the alert: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.stop().await;
}

#[tokio::test]
async fn configure_api_sets_persists_and_redacts_receivers() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(dir.path(), "")).await;
    let url = |p: &str| d.url(p);
    let secret_hook = sink.url("/slack/T1/B1/CONFIGSECRET");

    // Needs the token.
    let r = d
        .client
        .post(url("/api/v1/monitoring/notifications/configure"))
        .json(&json!({"slack_webhook": secret_hook}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Bad input names the key and never echoes the value.
    let r = d
        .client
        .post(url("/api/v1/monitoring/notifications/configure"))
        .bearer_auth(TOKEN)
        .json(&json!({"slack_webhook": "not a url CONFIGSECRET"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("slack_webhook: must be an http") && !body.contains("CONFIGSECRET"),
        "{body}"
    );

    // The original description's body.
    let r = d
        .client
        .post(url("/api/v1/monitoring/notifications/configure"))
        .bearer_auth(TOKEN)
        .json(&json!({"slack_webhook": secret_hook}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["receiver"]["name"], "default");
    assert_eq!(v["receiver"]["slack"]["webhook_url"], "<redacted>");
    // The PagerDuty key through the same endpoint keeps the Slack setting.
    let r = d
        .client
        .post(url("/api/v1/monitoring/notifications/configure"))
        .bearer_auth(TOKEN)
        .json(&json!({"pagerduty_routing_key": "PDCONFIGSECRET", "pagerduty_url": sink.url("/pd")}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["receiver"]["slack"]["webhook_url"], "<redacted>", "{v}");
    assert_eq!(v["receiver"]["pagerduty"]["routing_key"], "<redacted>");

    // The test endpoint goes through both.
    let r = d
        .client
        .post(url("/api/v1/monitoring/notifications/test"))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["delivered"] == true),
        "{v}"
    );
    let slack = sink.wait_for("/slack", 1, 5).await;
    assert!(
        slack[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("[TEST]")
    );
    assert_pd_event(&sink.wait_for("/pd", 1, 5).await[0].body, "PDCONFIGSECRET");
    d.stop().await;

    // Persisted: a restart on the same data dir still delivers to the webhook.
    let d = Daemon::start(config(dir.path(), "")).await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([alert("AfterRestart", "warning", false)]),
    )
    .await;
    let slack = sink.wait_for("/slack", 2, 5).await;
    assert_eq!(slack[1].body["text"], on_host("[FIRING:1] AfterRestart"));
    let list = d
        .get("/api/v1/monitoring/notifications")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !list.contains("CONFIGSECRET") && list.contains("<redacted>"),
        "{list}"
    );
    d.stop().await;
}

/// Item 9 of issue 14: configuring `default` is refused when no alert can reach it.
#[tokio::test]
async fn configure_without_a_receiver_is_refused_when_the_route_tree_never_reaches_default() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Receivers `desk` and `oncall`; the root sends to `desk`, `child` to whom it names.
    let start = |child: &str| {
        let yaml = format!(
            "notifications:\n  receivers:\n    - {{name: desk, webhook: {{url: \"{}\"}}}}\n    - {{name: oncall, webhook: {{url: \"{}\"}}}}\n  route:\n    receiver: desk\n    routes: [{child}]\n",
            sink.url("/desk"),
            sink.url("/oncall")
        );
        Daemon::start(config(dir.path(), &yaml))
    };
    let configure = |d: &Daemon, body: Value| {
        d.client
            .post(d.url("/api/v1/monitoring/notifications/configure"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let hook = sink.url("/slack/T1/B1/X");

    // Critical alerts to `oncall`, the rest to `desk`: `default` gets nothing.
    let d = start("{matchers: ['severity=\"critical\"'], receiver: oncall}").await;
    let r = configure(&d, json!({"slack_webhook": hook})).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["detail"],
        "receiver: required, because the configured route tree never sends to \"default\"; name one it sends to (\"desk\", \"oncall\")",
        "{v}"
    );
    // Nothing was stored for `default`.
    let list: Value = d
        .get("/api/v1/monitoring/notifications")
        .await
        .json()
        .await
        .unwrap();
    let default = list["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "default")
        .unwrap();
    assert!(default.get("slack").is_none_or(Value::is_null), "{default}");
    // Naming a receiver the tree sends to works.
    let r = configure(&d, json!({"receiver": "desk", "slack_webhook": hook}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["receiver"]["name"], "desk");
    d.stop().await;

    // A route below the root naming `default` reaches it: configuring it is fine.
    let d = start("{matchers: ['severity=\"info\"'], receiver: default}").await;
    let r = configure(&d, json!({"slack_webhook": hook})).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["receiver"]["name"],
        "default"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_real_prometheus_alerts_through_m4watch_to_slack() {
    let prom = require_tool("prometheus");
    let sink = Sink::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(
        tmp.path(),
        &format!(
            "notifications:\n  receivers:\n    - name: chat\n      slack: {{webhook_url: \"{}\"}}\n  route: {{receiver: chat}}\n",
            sink.url("/slack")
        ),
    ))
    .await;
    std::fs::write(
        tmp.path().join("rules.yml"),
        "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: OrderLatencyHigh\n        expr: vector(1)\n        labels: {severity: critical}\n        annotations: {summary: \"order latency above threshold\"}\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("prometheus.yml"),
        format!(
            "global: {{evaluation_interval: 1s}}\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - api_version: v2\n      authorization: {{credentials: {TOKEN}}}\n      static_configs: [{{targets: [\"{}\"]}}]\n",
            d.addr
        ),
    )
    .unwrap();
    let _prom = KillOnDrop(
        Command::new(prom)
            .arg(format!(
                "--config.file={}",
                tmp.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            // Prometheus evaluates before it has discovered its Alertmanagers and
            // drops that first send; the resend then comes after this delay.
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let got = sink.wait_for("/slack", 1, 30).await;
    let text = got[0].body.to_string();
    assert_eq!(got[0].body["text"], on_host("[FIRING:1] OrderLatencyHigh"));
    assert!(text.contains("order latency above threshold"), "{text}");
    assert!(text.contains("*Source*\\nprometheus"), "{text}");
    assert_block_kit(&got[0].body);
    // Prometheus re-sends firing alerts; they are the same alert, not new ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received("/slack").len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn acknowledgement_reaches_pagerduty_and_stops_escalation() {
    use m4watch::config::notify::NotifyConfig;
    use m4watch::internals::model::fingerprint;
    use m4watch::internals::notify::{AlertEvent, AlertSource, AlertState, Notifier};
    let sink = Sink::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg: NotifyConfig = serde_yaml_ng::from_str(&format!(
        "receivers:\n  - name: pd\n    pagerduty: {{routing_key: k, url: \"{}\"}}\n  - name: boss\n    webhook: {{url: \"{}\"}}\nroute: {{receiver: pd}}\nescalation: {{receiver: boss, after: 400ms}}\n",
        sink.url("/pd"),
        sink.url("/boss")
    ))
    .unwrap();
    let (_trigger, shutdown) = m4watch::shutdown::channel();
    let registry = prometheus::Registry::new();
    let outbox = m4watch::internals::notify::Outbox::open(&tmp.path().join("m4watch.db")).unwrap();
    let (notifier, _tasks) = Notifier::start(
        &cfg,
        &m4watch::config::Identity::of_this_host(),
        outbox,
        &Default::default(),
        &registry,
        shutdown,
    )
    .await
    .unwrap();
    let labels: std::collections::BTreeMap<String, String> = [
        ("alertname".to_string(), "Latency".to_string()),
        ("severity".to_string(), "critical".to_string()),
    ]
    .into();
    let mut ev = AlertEvent {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: Default::default(),
        state: AlertState::Firing,
        starts_at: chrono::Utc::now(),
        ends_at: None,
        value: Some(0.0042),
        source: AlertSource::Rules,
        generator_url: None,
    };
    notifier.submit(ev.clone()).await;
    ev.state = AlertState::Acknowledged;
    notifier.submit(ev.clone()).await;
    let pd = sink.wait_for("/pd", 2, 5).await;
    assert_eq!(pd[0].body["event_action"], "trigger");
    assert_eq!(pd[1].body["event_action"], "acknowledge");
    assert_eq!(pd[0].body["dedup_key"], ev.fingerprint.as_str());
    assert_eq!(pd[1].body["dedup_key"], ev.fingerprint.as_str());
    assert_eq!(pd[0].body["payload"]["custom_details"]["value"], 0.0042);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        sink.received("/boss").is_empty(),
        "acknowledged: no escalation"
    );
}

#[tokio::test]
async fn mute_intervals_rate_limits_and_repeats() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &format!(
            r#"notifications:
  receivers:
    - name: muted
      webhook: {{url: "{}"}}
    - name: slow
      rate_limit_per_second: 2
      webhook: {{url: "{}"}}
  time_intervals:
    - name: always
  route:
    receiver: slow
    group_interval: 100ms
    repeat_interval: 600ms
    routes:
      - receiver: muted
        mute_time_intervals: [always]
        continue: true
      - receiver: slow
"#,
            sink.url("/muted"),
            sink.url("/slow")
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([
            alert("A", "warning", false),
            alert("B", "warning", false),
            alert("C", "warning", false)
        ]),
    )
    .await;
    let slow = sink.wait_for("/slow", 3, 5).await;
    for w in slow.windows(2) {
        assert!(
            w[1].at - w[0].at >= Duration::from_millis(450),
            "2 per second at most: {:?}",
            w[1].at - w[0].at
        );
    }
    // The alerts keep firing: each is repeated after repeat_interval.
    let slow = sink.wait_for("/slow", 6, 10).await;
    assert_eq!(slow[3].body["alerts"][0]["status"], "firing");
    assert!(sink.received("/muted").is_empty(), "muted all the time");
    d.stop().await;
}

#[tokio::test]
async fn smtp_over_starttls_and_implicit_tls_with_auth() {
    use m4watch::config::notify::{EmailConfig, SmtpTls};
    use m4watch::internals::notify::Email;
    use m4watch::internals::notify::{Ctx, Reason};
    let tmp = tempfile::tempdir().unwrap();
    // A private CA and a server certificate it issued for 127.0.0.1, as a desk runs
    // its own relay; ca_file names the CA.
    common::tls::ca_and_server_cert(tmp.path(), 1);
    let openssl_ok = |args: &[&str]| {
        common::tls::openssl(tmp.path(), args);
    };
    let ec = common::tls::EC_KEY;
    let (ca_pem, cert, key) = (
        tmp.path().join("ca.pem"),
        tmp.path().join("cert.pem"),
        tmp.path().join("key.pem"),
    );
    let starttls = start_smtp_with(
        tmp.path(),
        "starttls",
        &[Path::new("starttls"), &cert, &key],
    );
    let implicit = start_smtp_with(tmp.path(), "tls", &[Path::new("tls"), &cert, &key]);
    let ctx = Ctx::new(Duration::from_secs(5));
    let n = mail_notification("Tls");
    let cfg = |port: u16, tls: SmtpTls, password: &str, ca: bool| EmailConfig {
        smarthost: format!("127.0.0.1:{port}"),
        tls,
        from: "m4watch@example.com".into(),
        to: vec!["ops@example.com".into()],
        username: Some("m4watch".into()),
        password: Some(m4watch::config::Secret::new(password)),
        ca_file: ca.then(|| ca_pem.clone()),
        ..Default::default()
    };
    Email::new(
        &cfg(starttls.port, SmtpTls::Starttls, "s3cret-smtp", true),
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap();
    Email::new(&cfg(implicit.port, SmtpTls::Tls, "s3cret-smtp", true), &ctx)
        .notify(&n)
        .await
        .unwrap();
    for dir in [&starttls.dir, &implicit.dir] {
        let m = mails(dir);
        assert_eq!(m.len(), 1, "{dir:?}: {m:#?}");
        assert!(
            m[0].contains("X-Sink-TLS: True") && m[0].contains("X-Sink-Auth: True"),
            "{}",
            m[0]
        );
    }
    // A wrong password: retryable (someone can fix it while the outbox keeps the mail).
    let e = Email::new(&cfg(starttls.port, SmtpTls::Starttls, "wrong", true), &ctx)
        .notify(&n)
        .await
        .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Auth, true), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");
    // A certificate nobody vouches for: a TLS failure, retryable.
    let e = Email::new(
        &cfg(implicit.port, SmtpTls::Tls, "s3cret-smtp", false),
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Tls, true), "{e}");
    let e = Email::new(
        &cfg(starttls.port, SmtpTls::Starttls, "s3cret-smtp", false),
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Tls, true), "{e}");
    // A self-signed server certificate made the `openssl req -x509` way is itself a
    // CA: rustls refuses it even when ca_file names it, and the error says what to do.
    openssl_ok(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                "self-key.pem",
                "-out",
                "self.pem",
            ],
        ]
        .concat(),
    );
    let own = start_smtp_with(
        tmp.path(),
        "own",
        &[
            Path::new("starttls"),
            &tmp.path().join("self.pem"),
            &tmp.path().join("self-key.pem"),
        ],
    );
    let e = Email::new(
        &EmailConfig {
            ca_file: Some(tmp.path().join("self.pem")),
            ..cfg(own.port, SmtpTls::Starttls, "s3cret-smtp", false)
        },
        &ctx,
    )
    .notify(&n)
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.retryable), (Reason::Tls, true), "{e}");
    assert!(
        e.to_string()
            .contains(m4watch::internals::notify::CA_AS_SERVER_HINT),
        "{e}"
    );
}

#[tokio::test]
async fn a_resolve_after_a_restart_still_reaches_the_receiver() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = || {
        config(
            dir.path(),
            &format!(
                "notifications:\n  receivers:\n    - name: hook\n      webhook: {{url: \"{}\"}}\n  route: {{receiver: hook, group_interval: 100ms}}\n",
                sink.url("/hook")
            ),
        )
    };
    let d = Daemon::start(cfg()).await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([alert("Survivor", "critical", false)]),
    )
    .await;
    sink.wait_for("/hook", 1, 5).await;
    d.stop().await;

    let d = Daemon::start(cfg()).await;
    let base = format!("http://{}", d.addr);
    // Prometheus re-sends the firing alert: already notified, nothing new.
    post_alerts(
        &d.client,
        &base,
        json!([alert("Survivor", "critical", false)]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        sink.received("/hook").len(),
        1,
        "no duplicate after a restart"
    );
    post_alerts(
        &d.client,
        &base,
        json!([alert("Survivor", "critical", true)]),
    )
    .await;
    let hook = sink.wait_for("/hook", 2, 5).await;
    assert_eq!(hook[1].body["status"], "resolved");
    assert_eq!(hook[1].body["alerts"][0]["labels"]["alertname"], "Survivor");
    d.stop().await;
}

/// The whole path inside one daemon: a rule of the rule engine fires, the alert
/// reaches PagerDuty as `trigger`, an acknowledgement through the m4watch API sends
/// `acknowledge`, and when the condition clears the `resolve` follows, all with the
/// alert's id as dedup key.
#[tokio::test]
async fn rule_engine_alerts_reach_pagerduty_with_acknowledge_and_resolve() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The rule fires while the fixture machine has two CPUs; the test adds a third.
    let root = dir.path().join("machine");
    copy_tree(&PathBuf::from(common::fixture("plain")), &root);
    let rules = dir.path().join("test.rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: e2e\n    rules:\n      - alert: TwoCpus\n        expr: m4watch_cpu_cores{type=\"performance\"} == 2\n        labels: {severity: critical}\n        annotations: {summary: two CPUs, description: the fixture machine has two CPUs}\n",
    )
    .unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &format!(
            "hardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: {m}/proc\n  sysfs: {m}/sys\nrules:\n  files: [\"{r}\"]\n  evaluation_interval: 100ms\nnotifications:\n  receivers:\n    - name: pd\n      pagerduty: {{routing_key: k, url: \"{pd}\"}}\n  route: {{receiver: pd, group_interval: 1s}}\n",
            m = root.display(),
            r = rules.display(),
            pd = sink.url("/pd"),
        ),
    ))
    .await;
    let trigger = sink.wait_for("/pd", 1, 10).await;
    assert_eq!(trigger[0].body["event_action"], "trigger");
    assert_eq!(trigger[0].body["payload"]["severity"], "critical");
    let key = trigger[0].body["dedup_key"].as_str().unwrap().to_string();

    let alerts: Value = d
        .get("/api/v1/monitoring/alerts?state=firing")
        .await
        .json()
        .await
        .unwrap();
    let id = alerts["alerts"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, key, "PagerDuty dedups on the alert's id");
    let r = d
        .client
        .post(d.url(&format!("/api/v1/monitoring/alerts/{id}/acknowledge")))
        .bearer_auth(TOKEN)
        .json(&json!({"by": "oncall", "comment": "looking"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked = sink.wait_for("/pd", 2, 10).await;
    assert_eq!(acked[1].body["event_action"], "acknowledge");

    // A third CPU appears: the condition clears and the alert resolves.
    let stat = root.join("proc/stat");
    let mut text = std::fs::read_to_string(&stat).unwrap();
    text.push_str("cpu2 100 0 10 1000 0 0 0 0 0 0\n");
    std::fs::write(&stat, text).unwrap();
    let resolved = sink.wait_for("/pd", 3, 10).await;
    assert_eq!(resolved[2].body["event_action"], "resolve");
    assert_eq!(resolved[2].body["dedup_key"], key.as_str());
    d.stop().await;
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// One ordered severity model, seen in what the stand-ins receive: an emergency pages
/// PagerDuty as `critical` (not `info`) and Slack shows it in the emergency colour; a
/// warning is a PagerDuty warning in the warning colour; the alert list puts the
/// emergency first.
#[tokio::test]
async fn emergency_alerts_page_as_critical_in_the_emergency_colour() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &format!(
            r#"notifications:
  inhibit_rules: []
  receivers:
    - name: ops
      slack: {{webhook_url: "{}"}}
      pagerduty: {{routing_key: pd-key, url: "{}"}}
  route: {{receiver: ops, group_by: ["..."]}}
"#,
            sink.url("/slack"),
            sink.url("/pd")
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    post_alerts(
        &d.client,
        &base,
        json!([alert("ThermalEmergency", "emergency", false)]),
    )
    .await;
    let pd = sink.wait_for("/pd", 1, 10).await;
    assert_pd_event(&pd[0].body, "pd-key");
    assert_eq!(pd[0].body["payload"]["severity"], "critical");
    let slack = sink.wait_for("/slack", 1, 10).await;
    assert_block_kit(&slack[0].body);
    assert_eq!(slack[0].body["attachments"][0]["color"], "#6f0000");

    post_alerts(
        &d.client,
        &base,
        json!([alert("GpuBusy", "warning", false)]),
    )
    .await;
    let pd = sink.wait_for("/pd", 2, 10).await;
    assert_eq!(pd[1].body["payload"]["severity"], "warning");
    let slack = sink.wait_for("/slack", 2, 10).await;
    assert_eq!(slack[1].body["attachments"][0]["color"], "#daa038");

    let list: Value = d
        .get("/api/v1/monitoring/alerts")
        .await
        .json()
        .await
        .unwrap();
    // Only the posted ones: the shipped rules watch this (busy) host too.
    let names: Vec<&str> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["source"] == "prometheus")
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ThermalEmergency", "GpuBusy"], "worst first");
    let health: Value = d
        .get("/api/v1/monitoring/system/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "critical", "{health}");
    d.stop().await;
}

/// Alertmanager's inhibition with the shipped pairs: while PerformanceCoresSaturated
/// fires, PerformanceCoresBusy on the same instance is not notified; with inhibition
/// turned off both are.
#[tokio::test]
async fn a_critical_inhibits_its_warning() {
    for (inhibit, want) in [("", 1), ("  inhibit_rules: []\n", 2)] {
        let sink = Sink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(config(
            dir.path(),
            &format!(
                "notifications:\n{inhibit}  receivers:\n    - name: chat\n      slack: {{webhook_url: \"{}\"}}\n  route: {{receiver: chat, group_by: [\"...\"], group_wait: 200ms}}\n",
                sink.url("/slack")
            ),
        ))
        .await;
        let base = format!("http://{}", d.addr);
        post_alerts(
            &d.client,
            &base,
            json!([
                alert("PerformanceCoresSaturated", "critical", false),
                alert("PerformanceCoresBusy", "warning", false)
            ]),
        )
        .await;
        let got = sink.wait_for("/slack", want, 10).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let got_now = sink.received("/slack");
        assert_eq!(got_now.len(), want, "inhibit {inhibit:?}: {got:#?}");
        assert!(
            got_now
                .iter()
                .any(|r| r.body["text"] == on_host("[FIRING:1] PerformanceCoresSaturated"))
        );
        d.stop().await;
    }
}

/// Alerts Prometheus posts are in the one alert list, with their source; the same
/// label set reported by m4watch's rules and by Prometheus is one alert and notifies
/// once.
#[tokio::test]
async fn posted_alerts_join_the_alert_list_and_duplicates_notify_once() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("test.rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: e2e\n    rules:\n      - alert: OrderGatewayDown\n        expr: vector(1)\n        labels: {severity: critical}\n        annotations: {summary: gateway down}\n",
    )
    .unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &format!(
            "containers: {{enabled: false}}\nrules:\n  files: [\"{}\"]\n  evaluation_interval: 100ms\nnotifications:\n  receivers:\n    - name: chat\n      slack: {{webhook_url: \"{}\"}}\n  route: {{receiver: chat, group_by: [\"...\"], group_interval: 300ms}}\n",
            rules.display(),
            sink.url("/slack")
        ),
    ))
    .await;
    let base = format!("http://{}", d.addr);
    sink.wait_for("/slack", 1, 10).await;
    // Prometheus evaluating the same rule, with the host as its external label,
    // posts the same label set.
    let same = json!([{
        "labels": {
            "alertname": "OrderGatewayDown",
            "severity": "critical",
            "host": m4watch::config::hostname()
        },
        "annotations": {"summary": "gateway down"},
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": (chrono::Utc::now() + chrono::Duration::minutes(4)).to_rfc3339(),
    }]);
    post_alerts(&d.client, &base, same.clone()).await;
    // A different alert only Prometheus has.
    post_alerts(
        &d.client,
        &base,
        json!([alert("DiskFull", "warning", false)]),
    )
    .await;
    sink.wait_for("/slack", 2, 10).await;
    post_alerts(&d.client, &base, same).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        sink.texts("/slack"),
        [
            on_host("[FIRING:1] OrderGatewayDown"),
            on_host("[FIRING:1] DiskFull")
        ],
        "one notification per alert"
    );
    let list: Value = d
        .get("/api/v1/monitoring/alerts?state=firing")
        .await
        .json()
        .await
        .unwrap();
    let rows: Vec<(String, String)> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| ["OrderGatewayDown", "DiskFull"].contains(&a["alertname"].as_str().unwrap()))
        .map(|a| {
            (
                a["alertname"].as_str().unwrap().to_string(),
                a["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("OrderGatewayDown".to_string(), "m4watch".to_string()),
            ("DiskFull".to_string(), "prometheus".to_string())
        ]
    );
    let summary: Value = d
        .get("/api/v1/monitoring/dashboard/summary")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["alerts"]["firing/warning"], 1, "{summary}");
    assert_eq!(summary["alerts"]["firing/critical"], 1, "{summary}");

    // Prometheus resolves its alert: the resolve goes out and the list shows it.
    post_alerts(
        &d.client,
        &base,
        json!([alert("DiskFull", "warning", true)]),
    )
    .await;
    let got = sink.wait_for("/slack", 3, 10).await;
    assert_eq!(got[2].body["text"], on_host("[RESOLVED] DiskFull"));
    d.stop().await;
}

/// The bind mounts of a service in the shipped docker-compose.yml: (host path,
/// container path), shortest container path first.
fn compose_mounts(repo: &Path, service: &str) -> Vec<(PathBuf, String)> {
    let compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo.join("docker-compose.yml")).unwrap())
            .unwrap();
    let mut out: Vec<(PathBuf, String)> = compose["services"][service]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let mut parts = v.as_str()?.split(':');
            let (host, container) = (parts.next()?, parts.next()?);
            let host = host.strip_prefix("./")?;
            Some((repo.join(host), container.to_string()))
        })
        .collect();
    out.sort_by_key(|(_, c)| c.len());
    out
}

fn yaml_at<'a>(v: &'a mut serde_yaml_ng::Value, path: &[&str]) -> &'a mut serde_yaml_ng::Value {
    path.iter().fold(v, |v, k| &mut v[*k])
}

/// The shipped stack notifies once per incident: the shipped `prometheus.yml` (real
/// Prometheus, shipped scrape and evaluation intervals) scrapes m4watch and sends
/// what it evaluates to the shipped `alertmanager.yml` (real Alertmanager), whose
/// receivers post to the same stand-ins as m4watch's. One crossing — memory about to
/// run out on the fixture machine, which also crosses the milder memory rules — must
/// reach each of m4watch's receivers once and Alertmanager's not at all (m4watch
/// owns the host rules; Prometheus evaluates only the stack rules).
#[tokio::test]
async fn the_shipped_stack_notifies_once_per_incident() {
    let prometheus = require_tool("prometheus");
    let alertmanager = require_tool("prometheus-alertmanager");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sink = Sink::start().await;
    let tmp = tempfile::tempdir().unwrap();

    // The crossing: MemAvailable under 2% of MemTotal.
    let machine = tmp.path().join("machine");
    copy_tree(&PathBuf::from(common::fixture("plain")), &machine);
    let meminfo = machine.join("proc/meminfo");
    let text = std::fs::read_to_string(&meminfo).unwrap();
    std::fs::write(
        &meminfo,
        text.replace("MemAvailable:    1000000 kB", "MemAvailable:      20000 kB"),
    )
    .unwrap();

    // Alertmanager with the shipped config; its secrets point at the stand-ins.
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("slack_webhook_url"), sink.url("/am/slack")).unwrap();
    std::fs::write(secrets.join("pagerduty_routing_key"), "am-key").unwrap();
    std::fs::write(secrets.join("smtp_password"), "unused").unwrap();
    let mut am_cfg: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo.join("prometheus/alertmanager.yml")).unwrap(),
    )
    .unwrap();
    let text = serde_yaml_ng::to_string(&am_cfg)
        .unwrap()
        .replace("/etc/alertmanager/secrets", &secrets.display().to_string());
    am_cfg = serde_yaml_ng::from_str(&text).unwrap();
    *yaml_at(&mut am_cfg, &["global", "smtp_smarthost"]) =
        format!("127.0.0.1:{}", free_port()).into();
    *yaml_at(&mut am_cfg, &["global", "smtp_require_tls"]) = false.into();
    for r in am_cfg["receivers"].as_sequence_mut().unwrap() {
        if let Some(pd) = r.get_mut("pagerduty_configs") {
            pd[0]["url"] = sink.url("/am/pd").into();
        }
    }
    let am_path = tmp.path().join("alertmanager.yml");
    std::fs::write(&am_path, serde_yaml_ng::to_string(&am_cfg).unwrap()).unwrap();
    let am = format!("127.0.0.1:{}", free_port());
    let _am = KillOnDrop(
        Command::new(alertmanager)
            .arg(format!("--config.file={}", am_path.display()))
            .arg(format!(
                "--storage.path={}",
                tmp.path().join("am").display()
            ))
            .arg(format!("--web.listen-address={am}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // m4watch on its shipped rules, with a chat and a paging receiver.
    let d = Daemon::start(config(
        tmp.path(),
        &format!(
            r#"hardware:
  procfs: {m}/proc
  sysfs: {m}/sys
containers:
  enabled: false
notifications:
  receivers:
    - name: chat
      slack: {{webhook_url: "{slack}"}}
    - name: page
      pagerduty: {{routing_key: m4w-key, url: "{pd}"}}
  route:
    receiver: chat
    routes:
      - matchers: ['severity=~"critical|emergency"']
        receiver: page
        continue: true
      - matchers: ['severity=~"warning|critical|emergency"']
        receiver: chat
"#,
            m = machine.display(),
            slack = sink.url("/m4watch/slack"),
            pd = sink.url("/m4watch/pd"),
        ),
    ))
    .await;

    // Prometheus with the shipped config: host names become the test's addresses and
    // container paths the files docker-compose.yml mounts there.
    let prom = format!("127.0.0.1:{}", free_port());
    std::fs::write(secrets.join("m4watch_token"), TOKEN).unwrap();
    let mut text = std::fs::read_to_string(repo.join("prometheus/prometheus.yml"))
        .unwrap()
        .replace("alertmanager:9093", &am)
        .replace("m4watch:9977", &d.addr.to_string())
        .replace("localhost:9090", &prom);
    // The container's view of its files: each mount linked at its container path
    // under a scratch root.
    let root = tmp.path().join("prometheus-root");
    for (host, container) in compose_mounts(&repo, "prometheus") {
        let host = if host.ends_with("secrets") {
            secrets.clone()
        } else {
            host
        };
        let at = root.join(container.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&host, &at).unwrap();
    }
    text = text.replace(
        "/etc/prometheus/",
        &format!("{}/etc/prometheus/", root.display()),
    );
    let cfg: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let prom_path = tmp.path().join("prometheus.yml");
    std::fs::write(&prom_path, serde_yaml_ng::to_string(&cfg).unwrap()).unwrap();
    let started = Instant::now();
    let _prom = KillOnDrop(
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // m4watch pages after the rule's `for: 30s`.
    sink.wait_for("/m4watch/pd", 1, 60).await;
    // Give Prometheus the time it would need to evaluate the same rule (30 s pending
    // at a 5 s evaluation interval) and Alertmanager its group_wait.
    let settle = Duration::from_secs(55);
    if let Some(rest) = settle.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let names = |path: &str, field: fn(&Value) -> Vec<String>| -> Vec<String> {
        sink.received(path)
            .iter()
            .flat_map(|r| field(&r.body))
            .collect()
    };
    let slack_titles = |b: &Value| vec![b["text"].as_str().unwrap_or("").to_string()];
    let pd_events = |b: &Value| {
        vec![format!(
            "{} {}",
            b["event_action"].as_str().unwrap_or(""),
            b["payload"]["class"].as_str().unwrap_or("")
        )]
    };
    assert_eq!(
        names("/m4watch/slack", slack_titles),
        [on_host("[FIRING:1] MemoryExhaustionImminent")],
        "chat hears the incident once; its milder memory alerts are inhibited"
    );
    assert_eq!(
        names("/m4watch/pd", pd_events),
        ["trigger MemoryExhaustionImminent"],
        "the pager hears it once"
    );
    assert!(
        sink.received("/am").is_empty(),
        "Alertmanager notified a host alert too: {:#?}",
        sink.received("/am")
    );
    // Who evaluates what: Prometheus has only the stack rules.
    let rules: Value = reqwest::get(format!("http://{prom}/api/v1/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut loaded: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    loaded.sort();
    // And the always-firing Watchdog, which Alertmanager routes to the `deadman`
    // placeholder alone (tests/heartbeat.rs asks amtool).
    assert_eq!(
        loaded,
        [
            "M4watchDown",
            "M4watchNotificationsFailing",
            "M4watchStorageFailing",
            "Watchdog"
        ]
    );
    d.stop().await;
}

/// Where a stop can catch a resolve.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// Accepted, its group waiting for `group_interval`.
    WaitingForGroupInterval,
    /// In the outbox, both receivers answering 500 to it.
    QueuedAgainst500s,
}

/// A resolve caught by `kill -9` or SIGTERM — waiting for `group_interval`, or queued
/// against receivers answering 500 — reaches Slack and PagerDuty after the restart,
/// after its trigger and with the trigger's dedup key, and the resolved alert is not
/// repeated as firing when `repeat_interval` comes round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_caught_by_kill_9_or_sigterm_is_delivered_after_the_restart() {
    async fn round(signal: i32, moment: Moment) {
        let sink = Sink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("m4watch.yml");
        let group_interval = match moment {
            Moment::WaitingForGroupInterval => "5s",
            Moment::QueuedAgainst500s => "100ms",
        };
        std::fs::write(
            &cfg,
            format!(
                r#"listen: 127.0.0.1:{port}
data_dir: {data}
api: {{token: {TOKEN}}}
containers: {{enabled: false}}
trading: {{statsd_listen: "127.0.0.1:0"}}
notifications:
  delivery: {{initial_backoff: 200ms, max_backoff: 400ms}}
  receivers:
    - name: ops
      slack: {{webhook_url: "{slack}"}}
      pagerduty: {{routing_key: k, url: "{pd}"}}
  route: {{receiver: ops, group_interval: {group_interval}, repeat_interval: 10s}}
"#,
                data = dir.path().join("data").display(),
                slack = sink.url("/slack"),
                pd = sink.url("/pd"),
            ),
        )
        .unwrap();
        let log = dir.path().join("m4watch.log");
        let base = format!("http://127.0.0.1:{port}");
        let client = m4watch::tls::client();
        let mut first = spawn_m4watch(&cfg, &log, "debug", &[]);
        wait_up(&client, &base).await;
        post_alerts(&client, &base, json!([alert("Flapper", "critical", false)])).await;
        sink.wait_for("/slack", 1, 10).await;
        sink.wait_for("/pd", 1, 10).await;
        let failed = match moment {
            Moment::WaitingForGroupInterval => 0,
            Moment::QueuedAgainst500s => {
                let five_hundreds = [(500, None); 50];
                sink.script("/slack", &five_hundreds);
                sink.script("/pd", &five_hundreds);
                1
            }
        };
        post_alerts(&client, &base, json!([alert("Flapper", "critical", true)])).await;
        // Stop inside the moment: the resolve waiting for its flush, or refused once.
        sink.wait_for("/slack", 1 + failed, 10).await;
        sink.wait_for("/pd", 1 + failed, 10).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(first.0.id() as i32, signal) };
        first.0.wait().unwrap();
        if failed == 0 {
            assert_eq!(
                sink.received("/slack").len(),
                1,
                "the resolve was still waiting"
            );
        }
        sink.clear_script();

        let _second = spawn_m4watch(&cfg, &log, "debug", &[]);
        wait_up(&client, &base).await;
        // Past repeat_interval: nothing more, in particular no FIRING again.
        tokio::time::sleep(Duration::from_secs(12)).await;
        // The distinct messages in the order they came: a retry repeats its body.
        let delivered = |prefix: &str| -> Vec<Value> {
            let mut out: Vec<Value> = sink.received(prefix).into_iter().map(|r| r.body).collect();
            out.dedup();
            out
        };
        let slack: Vec<String> = delivered("/slack")
            .iter()
            .map(|b| b["text"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            slack,
            [on_host("[FIRING:1] Flapper"), on_host("[RESOLVED] Flapper")],
            "{moment:?}, signal {signal}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pd = delivered("/pd");
        let actions: Vec<&str> = pd
            .iter()
            .map(|b| b["event_action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["trigger", "resolve"],
            "{moment:?}, signal {signal}"
        );
        assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);
    }
    tokio::join!(
        round(libc::SIGKILL, Moment::WaitingForGroupInterval),
        round(libc::SIGTERM, Moment::WaitingForGroupInterval),
        round(libc::SIGKILL, Moment::QueuedAgainst500s),
        round(libc::SIGTERM, Moment::QueuedAgainst500s),
    );
}

/// A trigger in flight to a receiver that accepted the connection and never answers
/// when m4watch is killed (or stopped) is sent again after the restart, and its
/// resolve follows it: at-least-once, in order, one dedup key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_flight_to_a_hanging_receiver_is_retried_after_the_restart() {
    async fn round(signal: i32) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let sink_port = free_port();
        let cfg = dir.path().join("m4watch.yml");
        std::fs::write(
            &cfg,
            format!(
                r#"listen: 127.0.0.1:{port}
data_dir: {data}
api: {{token: {TOKEN}}}
containers: {{enabled: false}}
trading: {{statsd_listen: "127.0.0.1:0"}}
notifications:
  delivery: {{initial_backoff: 200ms, max_backoff: 400ms, timeout: 30s}}
  receivers:
    - name: ops
      slack: {{webhook_url: "http://127.0.0.1:{sink_port}/slack"}}
      pagerduty: {{routing_key: k, url: "http://127.0.0.1:{sink_port}/pd"}}
  route: {{receiver: ops, group_interval: 100ms}}
"#,
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        // A receiver that takes the connection and the request and never answers.
        let hang = tokio::net::TcpListener::bind(("127.0.0.1", sink_port))
            .await
            .unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&held);
        let hanging = tokio::spawn(async move {
            while let Ok((s, _)) = hang.accept().await {
                keep.lock().unwrap().push(s);
            }
        });
        let log = dir.path().join("m4watch.log");
        let base = format!("http://127.0.0.1:{port}");
        let client = m4watch::tls::client();
        let mut first = spawn_m4watch(&cfg, &log, "debug", &[]);
        wait_up(&client, &base).await;
        post_alerts(&client, &base, json!([alert("Stuck", "critical", false)])).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while held.lock().unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "both sends never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(first.0.id() as i32, signal) };
        first.0.wait().unwrap();
        hanging.abort();
        held.lock().unwrap().clear();
        let _ = hanging.await;

        let sink = Sink::on(
            tokio::net::TcpListener::bind(("127.0.0.1", sink_port))
                .await
                .unwrap(),
        )
        .await;
        let _second = spawn_m4watch(&cfg, &log, "debug", &[]);
        wait_up(&client, &base).await;
        sink.wait_for("/slack", 1, 15).await;
        sink.wait_for("/pd", 1, 15).await;
        post_alerts(&client, &base, json!([alert("Stuck", "critical", true)])).await;
        let slack = sink.wait_for("/slack", 2, 15).await;
        let pd = sink.wait_for("/pd", 2, 15).await;
        assert_eq!(
            slack[0].body["text"],
            on_host("[FIRING:1] Stuck"),
            "signal {signal}"
        );
        assert_eq!(
            slack[1].body["text"],
            on_host("[RESOLVED] Stuck"),
            "signal {signal}"
        );
        assert_eq!(pd[0].body["event_action"], "trigger");
        assert_eq!(pd[1].body["event_action"], "resolve");
        assert_eq!(pd[0].body["dedup_key"], pd[1].body["dedup_key"]);
    }
    tokio::join!(round(libc::SIGKILL), round(libc::SIGTERM));
}
