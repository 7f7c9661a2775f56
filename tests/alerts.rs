//! Black-box: a real hardware collector reads a fixture tree the test rewrites, a rule
//! on memory used crosses its threshold, and the alert goes pending -> firing ->
//! resolved through the API; state survives restarts through SQLite.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

const TOKEN: &str = "alerts-test-token";
const LOW: &str = "MemTotal:        2048000 kB\nMemFree:          100000 kB\nMemAvailable:    1000000 kB\nBuffers:           10000 kB\nCached:           500000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n";

/// A copy of the `plain` fixture machine the test can change, a rule file and a data dir.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let src = PathBuf::from(common::fixture("plain"));
        copy_tree(&src, dir.path());
        std::fs::write(
            dir.path().join("test.rules.yml"),
            "groups:\n- name: test\n  rules:\n  - alert: MemoryHigh\n    expr: m4watch_memory_used_bytes > 1.5e9\n    for: 2s\n    labels: {severity: critical}\n    annotations:\n      summary: '{{ $value | humanize }}B used'\n",
        )
        .unwrap();
        let m = Machine { dir };
        m.memory(false);
        m
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// High: 1.99 GB used of 2 GB; low: 1.07 GB.
    fn memory(&self, high: bool) {
        let text = if high {
            LOW.replace("MemAvailable:    1000000 kB", "MemAvailable:     100000 kB")
        } else {
            LOW.to_string()
        };
        std::fs::write(self.root().join("proc/meminfo"), text).unwrap();
    }

    fn config(&self) -> m4watch::config::Config {
        let root = self.root().display();
        let mut c = common::config(&format!(
            "api:\n  token: {TOKEN}\nhardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: {root}/proc\n  sysfs: {root}/sys\nprocess:\n  enabled: false\n  interval: 5s\nrules:\n  files: [{root}/test.rules.yml]\n  evaluation_interval: 100ms\n"
        ));
        c.data_dir = self.root().join("data");
        c
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

async fn alerts(d: &common::Daemon, query: &str) -> Vec<Value> {
    let r = d.get(&format!("/api/v1/monitoring/alerts{query}")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["alerts"].as_array().unwrap().clone()
}

/// Polls until the MemoryHigh alert is in `state`, for at most 10 s.
async fn wait_state(d: &common::Daemon, state: &str) -> Value {
    for _ in 0..400 {
        if let Some(a) = alerts(d, "")
            .await
            .into_iter()
            .find(|a| a["state"] == state)
        {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("alert never became {state}: {:?}", alerts(d, "").await);
}

fn post(
    d: &common::Daemon,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let r = d.client.post(d.url(path)).json(&body);
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_crossing_goes_pending_firing_resolved() {
    let m = Machine::new();
    let d = common::Daemon::start(m.config()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alerts(&d, "").await.is_empty(),
        "no alert while memory is low"
    );

    m.memory(true);
    let pending = wait_state(&d, "pending").await;
    assert_eq!(pending["alertname"], "MemoryHigh");
    assert_eq!(pending["severity"], "critical");
    assert_eq!(
        pending["source"], "m4watch",
        "the source's word, not the enum's name"
    );
    // The series' own labels: m4watch_memory_used_bytes has none (issue 30).
    assert!(pending["labels"].get("state").is_none(), "{pending}");
    assert!(pending.get("fired_at").is_none());
    let firing = wait_state(&d, "firing").await;
    assert_eq!(firing["id"], pending["id"]);
    assert_eq!(firing["active_at"], pending["active_at"]);
    assert_eq!(firing["annotations"]["summary"], "1.995GB used");
    let id = firing["id"].as_str().unwrap().to_string();

    // Filters.
    assert_eq!(alerts(&d, "?state=firing&severity=critical").await.len(), 1);
    assert!(alerts(&d, "?severity=warning").await.is_empty());
    assert_eq!(
        d.get("/api/v1/monitoring/alerts?state=bogus")
            .await
            .status(),
        400
    );
    let text = d
        .scrape_until(5, |t| {
            t.contains("m4watch_alerts{alertname=\"MemoryHigh\",severity=\"critical\",state=\"firing\"} 1\n")
        })
        .await;
    assert!(text.contains("m4watch_rules_loaded 1\n"), "{text}");
    assert!(
        text.contains("m4watch_rule_evaluation_failures_total{group=\"test\"} 0\n"),
        "{text}"
    );
    let opt: Value = d
        .get("/api/v1/optimization/alerts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(opt["count"], 1);
    assert_eq!(opt["alerts"][0]["level"], "critical");

    // Acknowledge: token required, then recorded.
    let ack_path = format!("/api/v1/monitoring/alerts/{id}/acknowledge");
    let body = json!({"by": "alice", "comment": "looking at it"});
    assert_eq!(
        post(&d, &ack_path, body.clone(), None)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = post(&d, &ack_path, body, Some(TOKEN)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let acked: Value = r.json().await.unwrap();
    assert_eq!(acked["acknowledgement"]["by"], "alice");
    let r = post(
        &d,
        "/api/v1/monitoring/alerts/nope/acknowledge",
        json!({"by": "a"}),
        Some(TOKEN),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);

    // Silence by matcher, see it applied, delete it.
    let r = post(
        &d,
        "/api/v1/monitoring/silences",
        json!({"matchers": [{"name": "alertname", "value": "Memory.*", "is_regex": true}], "duration": "1h", "created_by": "bob", "comment": "maintenance"}),
        Some(TOKEN),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let silence: Value = r.json().await.unwrap();
    let sid = silence["id"].as_str().unwrap().to_string();
    assert_eq!(silence["status"], "active");
    assert_eq!(alerts(&d, "").await[0]["silenced_by"], sid.as_str());
    let list: Value = d
        .get("/api/v1/monitoring/silences")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["silences"].as_array().unwrap().len(), 1);
    let del = |tok: Option<&'static str>| {
        let r = d
            .client
            .delete(d.url(&format!("/api/v1/monitoring/silences/{sid}")));
        match tok {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    assert_eq!(del(None).send().await.unwrap().status(), 401);
    assert_eq!(del(Some(TOKEN)).send().await.unwrap().status(), 204);
    assert_eq!(del(Some(TOKEN)).send().await.unwrap().status(), 404);
    assert!(alerts(&d, "").await[0].get("silenced_by").is_none());
    let bad = post(
        &d,
        "/api/v1/monitoring/silences",
        json!({"matchers": [], "duration": "1h", "created_by": "bob"}),
        Some(TOKEN),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);

    m.memory(false);
    let resolved = wait_state(&d, "resolved").await;
    assert_eq!(resolved["id"], id.as_str());
    assert_eq!(resolved["active_at"], firing["active_at"]);
    assert!(resolved["resolved_at"].is_string());
    assert!(
        resolved.get("acknowledgement").is_none(),
        "an ack ends with the alert"
    );
    d.stop().await;

    // The durable transition feed a notifier reads.
    let rows = m4watch::internals::persist::transitions_since(&m.root().join("data"), 0).unwrap();
    let states: Vec<(String, String)> = rows
        .into_iter()
        .filter(|r| r.1 == id)
        .map(|r| (r.2, r.3))
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        states,
        vec![
            s("inactive", "pending"),
            s("pending", "firing"),
            s("firing", "resolved")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart_and_resolves_while_down() {
    let m = Machine::new();
    m.memory(true);
    let d = common::Daemon::start(m.config()).await;
    let firing = wait_state(&d, "firing").await;
    d.stop().await;

    // Restarted with the condition still true: firing at once, original start kept.
    let d = common::Daemon::start(m.config()).await;
    let now = alerts(&d, "").await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["state"], "firing");
    assert_eq!(now[0]["active_at"], firing["active_at"]);
    assert_eq!(now[0]["fired_at"], firing["fired_at"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = alerts(&d, "").await;
    assert_eq!(later[0]["state"], "firing");
    assert_eq!(later[0]["active_at"], firing["active_at"]);
    d.stop().await;

    // The condition cleared while m4watch was down: resolved, not lost.
    m.memory(false);
    let d = common::Daemon::start(m.config()).await;
    let resolved = wait_state(&d, "resolved").await;
    assert_eq!(resolved["id"], firing["id"]);
    assert_eq!(resolved["active_at"], firing["active_at"]);
    d.stop().await;
}
