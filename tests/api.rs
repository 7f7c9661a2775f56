//! Black-box tests of the monitoring API (issue 5): the OpenAPI document covers every
//! route, the hardware snapshot, system health, status, the dashboard summary, and
//! `m4watch validate` against a live instance.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Daemon, config, fixture_config};
use serde_json::Value;

fn replay(extra: &str) -> m4watch::config::Config {
    config(&format!(
        "hardware:\n  source: replay\n  replay_file: {}/demo/m4max-synthetic.jsonl\n  interval: 20ms\n  timeout: 20ms\n{extra}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

async fn json(d: &Daemon, path: &str) -> Value {
    let r = d.get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "GET {path}"
    );
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_openapi_document_names_every_required_path_and_each_answers() {
    let d = Daemon::start(fixture_config("intel-hybrid", "")).await;
    let spec = json(&d, "/api/v1/openapi.json").await;
    assert_eq!(spec["openapi"], "3.1.0");
    let paths: BTreeSet<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in m4watch::validate::REQUIRED_PATHS {
        assert!(paths.contains(p), "{p} is not in the OpenAPI document");
    }
    // Each documented read without parameters answers with a status it documents.
    for (path, ops) in spec["paths"].as_object().unwrap() {
        let Some(get) = ops.get("get") else { continue };
        if path.contains('{') {
            continue;
        }
        let status = d.get(path).await.status().as_u16().to_string();
        assert!(
            get["responses"].get(&status).is_some(),
            "GET {path} answered {status}, not documented"
        );
    }
    // Write routes declare the bearer scheme.
    let ack = &spec["paths"]["/api/v1/monitoring/alerts/{id}/acknowledge"]["post"];
    assert_eq!(ack["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    d.stop().await;
}

/// Routes are registered only through utoipa-axum's `routes!`, so none can be
/// missing from the spec: a plain `.route(` call in the API would bypass it.
#[test]
fn no_route_is_registered_outside_the_spec() {
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api")];
    let mut files = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(".route("),
                "{} registers a route outside the OpenAPI document",
                path.display()
            );
            files += 1;
        }
    }
    assert!(files > 10, "{files} files read under src/api");
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_json_errors() {
    let d = Daemon::start(fixture_config("plain", "")).await;
    let r = d.get("/api/v1/monitoring/nope").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/monitoring/nope")
    );
    let r = d
        .client
        .delete(d.url("/api/v1/monitoring/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET,HEAD");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    d.stop().await;
}

#[tokio::test]
async fn hardware_snapshot_of_a_replayed_m4_max() {
    let d = Daemon::start(replay("")).await;
    // Utilisation needs two readings.
    d.scrape_until(5, |t| t.contains("m4watch_cpu_utilization_ratio{"))
        .await;
    let h = json(&d, "/api/v1/monitoring/m4max/hardware/metrics").await;
    assert_eq!(h["chip"]["chip"], "Apple M4 Max");
    let cores = h["cpu"]["cores"].as_array().unwrap();
    let p = cores.iter().filter(|c| c["type"] == "performance").count();
    let e = cores.iter().filter(|c| c["type"] == "efficiency").count();
    assert_eq!((p, e), (12, 4), "{h}");
    assert!(cores.iter().all(|c| c["utilization"].as_f64().is_some()));
    let types: Vec<&str> = h["cpu"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["efficiency", "performance"]);
    assert!(!h["cpu"]["clusters"].as_array().unwrap().is_empty());
    assert!(h["gpu"]["utilization"].as_f64().is_some(), "{h}");
    assert!(h["ane"]["power_watts"].as_f64().is_some(), "{h}");
    assert!(h["power_watts"]["cpu"].as_f64().is_some(), "{h}");
    assert!(!h["temperatures_celsius"].as_object().unwrap().is_empty());
    assert!(h["thermal_pressure"].as_str().is_some());
    assert!(h["memory"]["total_bytes"].as_f64().unwrap() > 0.0);

    let cu = json(&d, "/api/v1/optimization/core-utilization").await;
    assert_eq!(cu["cores"].as_array().unwrap().len(), 16);
    d.stop().await;
}

#[tokio::test]
async fn a_linux_host_has_no_gpu_or_ane_section() {
    let d = Daemon::start(fixture_config("intel-hybrid", "")).await;
    let h = json(&d, "/api/v1/monitoring/m4max/hardware/metrics").await;
    assert!(h.get("gpu").is_none(), "unknown is absent: {h}");
    assert!(h.get("ane").is_none(), "unknown is absent: {h}");
    assert!(h.get("chip").is_none(), "{h}");
    let types: BTreeSet<&str> = h["cpu"]["cores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, BTreeSet::from(["efficiency", "performance"]));
    d.stop().await;
}

#[tokio::test]
async fn a_disabled_collector_answers_404_with_a_json_error() {
    let d = Daemon::start(config("hardware:\n  enabled: false\n")).await;
    let r = d.get("/api/v1/monitoring/m4max/hardware/metrics").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["detail"].as_str().unwrap().contains("disabled"));
    d.stop().await;
}

#[tokio::test]
async fn system_health_names_the_failing_collector_and_the_summary_agrees() {
    let d = Daemon::start(config(
        "hardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: /nonexistent/proc\n  sysfs: /nonexistent/sys\n",
    ))
    .await;
    let h = json(&d, "/api/v1/monitoring/system/health").await;
    assert_eq!(h["status"], "degraded", "{h}");
    let reason = h["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "collector_failing")
        .unwrap_or_else(|| panic!("{h}"));
    assert!(
        reason["detail"]
            .as_str()
            .unwrap()
            .contains("collector hardware failed"),
        "{h}"
    );
    let o = json(&d, "/api/v1/optimization/health").await;
    assert_eq!(o["status"], h["status"]);
    let s = json(&d, "/api/v1/monitoring/dashboard/summary").await;
    assert_eq!(s["health"], "degraded");
    // No CPU readings: no made-up utilisation.
    assert!(
        s["hardware"]["cpu_utilization"]
            .as_object()
            .unwrap()
            .is_empty(),
        "{s}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_quiet_fixture_host_is_not_critical() {
    let d = Daemon::start(fixture_config("intel-hybrid", "")).await;
    let h = json(&d, "/api/v1/monitoring/system/health").await;
    // The fixture host is quiet; the only shipped alerts that could fire are about
    // its fixture temperatures, which are below every threshold.
    assert_ne!(h["status"], "critical", "{h}");
    assert!(h["firing_alerts"].get("critical").is_none(), "{h}");
    d.stop().await;
}

#[tokio::test]
async fn status_summarises_the_config_without_secrets() {
    let c = fixture_config(
        "plain",
        "api:\n  token: s3cret-token-value\nnotifications:\n  receivers:\n    - name: desk\n      slack:\n        webhook_url: https://hooks.slack.com/services/T000/B000/s3cretpath\n",
    );
    let d = Daemon::start(c).await;
    let r = d.get("/api/v1/monitoring/status").await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("s3cret"), "a secret leaked: {text}");
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(s["config"]["write_token_set"], true);
    assert_eq!(s["config"]["read_token_set"], false);
    let desk = s["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "desk")
        .unwrap();
    assert_eq!(desk["integrations"], serde_json::json!(["slack"]));
    let hw = s["collectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hardware")
        .unwrap();
    assert_eq!(hw["enabled"], true);
    assert_eq!(hw["last_run"]["success"], true);
    // Rules are loaded at the first evaluation.
    for _ in 0..100 {
        let s = json(&d, "/api/v1/monitoring/status").await;
        if s["rules"]["loaded"].as_u64().is_some_and(|n| n > 0) {
            d.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("status never reported rules loaded");
}

#[tokio::test]
async fn trading_summary_reports_the_worst_p99() {
    let d = Daemon::start(fixture_config("plain", "api:\n  token: t\n")).await;
    let r = d
        .client
        .post(d.url("/api/v1/trading/latency"))
        .bearer_auth("t")
        .json(&serde_json::json!([
            {"operation": "order_execution", "latency_us": 200.0},
            {"operation": "risk_calculation", "latency_us": 4000.0}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..100 {
        let s = json(&d, "/api/v1/monitoring/dashboard/summary").await;
        if s["trading"]["operations"] == 2 {
            assert_eq!(s["trading"]["worst_p99_operation"], "risk_calculation");
            let ms = s["trading"]["worst_p99_ms"].as_f64().unwrap();
            assert!((ms - 4.0).abs() < 0.1, "{s}");
            d.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the summary never showed the operations");
}

// --- m4watch validate ------------------------------------------------------------

/// A TCP listener that accepts and drops connections: the destination of a receiver
/// dry run (which connects and sends nothing).
fn accepting_listener() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    addr
}

/// Runs the `m4watch validate` binary against `d` (off the async workers: the
/// daemon under test runs on them).
async fn validate(d: &Daemon, args: &[&str]) -> (bool, String) {
    let (ok, _, table) = validate_full(d, args).await;
    (ok, table)
}

/// As [`validate`], with its standard error too: success, stderr, stdout.
async fn validate_full(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_m4watch"));
    cmd.args(["validate", "--url", &d.url("")])
        .args(args)
        .env_remove("M4WATCH_API_TOKEN");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn send_latency(d: &Daemon, token: &str) {
    let r = d
        .client
        .post(d.url("/api/v1/trading/latency"))
        .bearer_auth(token)
        .json(&serde_json::json!([{"operation": "order_execution", "latency_us": 300.0}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    d.scrape_until(5, |t| t.contains("\nm4watch_performance_score "))
        .await;
}

fn receiver_yaml(dest: std::net::SocketAddr) -> String {
    format!(
        "api:\n  token: tok\nnotifications:\n  receivers:\n    - name: desk\n      webhook:\n        url: http://{dest}/hook\n"
    )
}

/// A replayed instance with a receiver (its destination), a score and its rules
/// loaded: one every check of validate passes on.
async fn complete_instance(cfg: m4watch::config::Config) -> Daemon {
    let d = Daemon::start(cfg).await;
    send_latency(&d, "tok").await;
    // Rules report their count at the first evaluation.
    for _ in 0..100 {
        let s = json(&d, "/api/v1/monitoring/status").await;
        if s["rules"]["loaded"].as_u64().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_passes_on_a_complete_instance() {
    let dest = accepting_listener();
    let d = complete_instance(replay(&receiver_yaml(dest))).await;
    let (ok, table) = validate(&d, &["--token", "tok"]).await;
    assert!(ok, "validate failed:\n{table}");
    assert!(table.contains("pass   collector hardware"), "{table}");
    assert!(
        table.contains(&format!("dry run reached http://{dest}")),
        "{table}"
    );
    assert!(table.contains("pass   performance score"), "{table}");
    assert!(table.contains("pass   system health"), "{table}");
    assert!(
        table.contains("pass   GET /api/v1/monitoring/status"),
        "{table}"
    );
    assert!(table.contains("pass   GET /runbooks"), "{table}");
    let line = table
        .lines()
        .find(|l| l.contains("rules: runbooks"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.starts_with("pass") && line.contains("each with a section of docs/runbooks.md"),
        "{table}"
    );
    d.stop().await;
}

/// A rule the desk added without a runbook, and one whose link names no section, are
/// what validate reports; a link to the desk's own wiki is not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_the_rules_whose_runbook_url_leads_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("desk.rules.yml");
    std::fs::write(
        &file,
        "# Written for this test: three rules, one link each way.\n\
         groups:\n  - name: desk\n    rules:\n\
         \x20     - alert: DeskNoRunbook\n        expr: vector(1) > 2\n\
         \x20     - alert: DeskTypo\n        expr: vector(1) > 2\n        annotations:\n          runbook_url: /runbooks#containerdwn\n\
         \x20     - alert: DeskWiki\n        expr: vector(1) > 2\n        annotations:\n          runbook_url: https://wiki.example/desk\n",
    )
    .unwrap();
    let dest = accepting_listener();
    let d = Daemon::start(replay(&format!(
        "rules:\n  files: [{}]\n{}",
        file.display(),
        receiver_yaml(dest)
    )))
    .await;
    let status = json(&d, "/api/v1/monitoring/status").await;
    let names: Vec<&str> = status["rules"]["alerting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["DeskNoRunbook", "DeskTypo", "DeskWiki"]);
    let (ok, table) = validate(&d, &["--token", "tok", "--min-pass-ratio", "0"]).await;
    assert!(ok, "{table}");
    let line = table
        .lines()
        .find(|l| l.contains("rules: runbooks"))
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>().join(" "),
        "FAIL rules: runbooks 2 of 3 alerting rules: DeskNoRunbook: no runbook_url annotation; \
         DeskTypo: docs/runbooks.md has no section #containerdwn",
        "{table}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_fails_with_a_clear_table_when_a_collector_is_broken() {
    let dest = accepting_listener();
    let d = Daemon::start(config(&format!(
        "hardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: /nonexistent/proc\n  sysfs: /nonexistent/sys\n{}",
        receiver_yaml(dest)
    )))
    .await;
    send_latency(&d, "tok").await;
    let (ok, table) = validate(&d, &["--token", "tok"]).await;
    assert!(!ok, "validate passed with a broken collector:\n{table}");
    let line = table
        .lines()
        .find(|l| l.contains("collector hardware"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.starts_with("FAIL"), "{table}");
    assert!(line.contains("No such file"), "{table}");
    assert!(table.contains("checks passed"), "{table}");
    assert!(table.trim_end().ends_with("FAILED"), "{table}");
    d.stop().await;
}

/// Issue 29: validate reports the health verdict, and a critical one fails it whatever
/// the pass ratio, naming the critical components, unless `--allow-unhealthy`. The
/// fault is real: the data directory is moved away under the running instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_fails_on_a_critical_instance_unless_unhealthy_is_allowed() {
    let dest = accepting_listener();
    let cfg = replay(&receiver_yaml(dest));
    let data = cfg.data_dir.clone();
    let d = complete_instance(cfg).await;
    // Healthy first: the verdict is reported and passes.
    let (ok, table) = validate(&d, &["--token", "tok"]).await;
    assert!(ok, "validate failed before the fault:\n{table}");
    let line = table
        .lines()
        .find(|l| l.contains("system health"))
        .unwrap_or_else(|| panic!("no health line:\n{table}"));
    assert!(line.starts_with("pass"), "{table}");

    let moved = data.with_extension("moved");
    std::fs::rename(&data, &moved).unwrap();
    let mut health = Value::Null;
    for _ in 0..200 {
        health = json(&d, "/api/v1/monitoring/system/health").await;
        if health["status"] == "critical" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health["status"], "critical", "{health}");
    assert_eq!(health["reasons"][0]["kind"], "storage_failing", "{health}");

    // Even a pass ratio of 0 does not let a critical instance through.
    let (ok, stderr, table) = validate_full(&d, &["--token", "tok", "--min-pass-ratio", "0"]).await;
    assert!(!ok, "validate passed a critical instance:\n{table}");
    let line = table
        .lines()
        .find(|l| l.contains("system health"))
        .unwrap_or_else(|| panic!("no health line:\n{table}"));
    assert!(
        line.starts_with("FAIL") && line.contains("critical: storage_failing: the data directory"),
        "{table}"
    );
    assert!(
        table
            .trim_end()
            .contains("FAILED whatever the ratio: system health"),
        "{table}"
    );
    assert!(
        stderr.contains("system health is critical: storage_failing")
            && stderr.contains("--allow-unhealthy"),
        "{stderr}"
    );

    // Allowed: reported, and validate passes on its other checks (the fault also fails
    // the read of the delivery log, which answers 503 while storage fails).
    let (ok, _, table) = validate_full(
        &d,
        &[
            "--token",
            "tok",
            "--allow-unhealthy",
            "--min-pass-ratio",
            "0.9",
        ],
    )
    .await;
    assert!(ok, "validate --allow-unhealthy failed:\n{table}");
    assert!(
        table.contains("pass   system health")
            && table.contains("critical, allowed by --allow-unhealthy: storage_failing"),
        "{table}"
    );
    std::fs::rename(&moved, &data).ok();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_without_a_token_cannot_dry_run_receivers() {
    let dest = accepting_listener();
    let d = Daemon::start(replay(&receiver_yaml(dest))).await;
    let (ok, table) = validate(&d, &["--min-pass-ratio", "0.5"]).await;
    assert!(ok, "most checks pass, so 50% is met:\n{table}");
    assert!(table.contains("FAIL   receiver desk (webhook)"), "{table}");
    assert!(table.contains("needs --token"), "{table}");
    d.stop().await;
}

#[test]
fn validate_reports_an_unreachable_instance() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["validate", "--url", "http://127.0.0.1:9", "--timeout", "2s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("FAIL   GET /api/v1/openapi.json"), "{table}");
    assert!(table.contains("is m4watch running at"), "{table}");
}

/// Issue 15: a silence ending after year 9999 was stored, and from then on every GET
/// and DELETE on silences panicked (an empty reply), after restarts too.
#[tokio::test]
async fn silences_are_bounded_where_parsed_and_an_absurd_stored_one_lists_and_deletes() {
    const TOKEN: &str = "silence-t0ken";
    let mut c = config(&format!("api:\n  token: {TOKEN}\n"));
    let data = c.data_dir.clone();
    let d = Daemon::start(c.clone()).await;
    let post = |body: Value| {
        d.client
            .post(d.url("/api/v1/monitoring/silences"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let m = serde_json::json!([{"name": "alertname", "value": "X"}]);
    for (what, body) in [
        (
            "duration",
            serde_json::json!({"matchers": m, "duration": "7974y", "created_by": "eve"}),
        ),
        (
            "duration",
            serde_json::json!({"matchers": m, "duration": "2y", "created_by": "eve"}),
        ),
        (
            "ends_at",
            serde_json::json!({"matchers": m, "ends_at": "9999-12-31T23:59:59Z", "created_by": "eve"}),
        ),
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            e["detail"], "a silence may last at most 1year (api.max_silence_duration)",
            "{what}"
        );
    }
    let r = post(serde_json::json!({"matchers": m, "duration": "30d", "created_by": "bob"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    d.stop().await;

    // Rows an older version (or a hand) wrote: past year 9999, and the largest ms.
    let db = rusqlite::Connection::open(data.join("m4watch.db")).unwrap();
    db.execute("UPDATE silences SET ends_at = 300000000000000", [])
        .unwrap();
    db.execute(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment)
         SELECT 'absurd', matchers, starts_at, 9223372036854775807, created_by, comment FROM silences",
        [],
    )
    .unwrap();
    drop(db);

    c.data_dir = data;
    let d = Daemon::start(c).await;
    let list = json(&d, "/api/v1/monitoring/silences").await;
    let silences = list["silences"].as_array().unwrap();
    assert_eq!(silences.len(), 2, "{list}");
    for s in silences {
        assert_eq!(s["status"], "active");
        assert!(s["ends_at"].as_str().unwrap().ends_with('Z'), "{s}");
        let r = d
            .client
            .delete(d.url(&format!(
                "/api/v1/monitoring/silences/{}",
                s["id"].as_str().unwrap()
            )))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let list = json(&d, "/api/v1/monitoring/silences").await;
    assert_eq!(list["silences"].as_array().unwrap().len(), 0);
    d.stop().await;
}

/// POSTs `body` as JSON with the write token.
async fn post_json(
    d: &Daemon,
    token: &str,
    path: &str,
    body: Value,
) -> reqwest::Result<reqwest::Response> {
    d.client
        .post(d.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
}

fn nulls_in(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Null => out.push(at.to_string()),
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                nulls_in(x, &format!("{at}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                nulls_in(x, &format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// The README: fields that are not known are absent, never null. Every read the
/// OpenAPI document lists, with alerts, a silence, a delivery and latency samples in
/// place so the views have something to show.
#[tokio::test]
async fn no_answer_of_the_api_contains_a_null() {
    const TOKEN: &str = "null-t0ken";
    let d = Daemon::start(replay(&format!(
        "api:\n  token: {TOKEN}\nnotifications:\n  receivers:\n    - name: pd\n      pagerduty:\n        routing_key: k3y\n        url: \"https://user:PASSSECRET@pd.invalid/enqueue?token=QUERYSECRET\"\n"
    )))
    .await;
    let post = |path: &'static str, body: Value| post_json(&d, TOKEN, path, body);
    let r = post(
        "/api/v2/alerts",
        serde_json::json!([{"labels": {"alertname": "Posted", "severity": "warning"}, "annotations": {"summary": "s"}}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(
        "/api/v1/monitoring/silences",
        serde_json::json!({"matchers": [{"name": "alertname", "value": "Nothing"}], "duration": "1h", "created_by": "bob"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(
        "/api/v1/trading/latency",
        serde_json::json!([{"operation": "order_execution", "latency_us": 250}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let spec = json(&d, "/api/v1/openapi.json").await;
    let mut checked = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        if ops.get("get").is_none() || path.contains('{') {
            continue;
        }
        let r = d.get(path).await;
        let is_json = r
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("application/json"));
        if !is_json {
            continue;
        }
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("PASSSECRET") && !text.contains("QUERYSECRET"),
            "GET {path} shows a URL's credentials: {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut nulls = Vec::new();
        nulls_in(&v, "", &mut nulls);
        assert!(nulls.is_empty(), "GET {path} has null at {nulls:?}: {v}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} JSON reads");
    let receivers = json(&d, "/api/v1/monitoring/notifications").await;
    assert!(
        receivers
            .to_string()
            .contains("https://<redacted>@pd.invalid/enqueue?<redacted>"),
        "{receivers}"
    );
    d.stop().await;
}

#[tokio::test]
async fn requests_that_change_nothing_or_name_no_label_are_refused() {
    const TOKEN: &str = "refuse-t0ken";
    let d = Daemon::start(config(&format!("api:\n  token: {TOKEN}\n"))).await;
    let post = |path: &'static str, body: Value| post_json(&d, TOKEN, path, body);
    for body in [
        serde_json::json!({}),
        serde_json::json!({"receiver": "default"}),
        serde_json::json!({"slack_webhook": null}),
    ] {
        let r = post("/api/v1/monitoring/notifications/configure", body.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .starts_with("the body changes nothing"),
            "{e}"
        );
    }
    let r = post(
        "/api/v2/alerts",
        serde_json::json!([{"labels": {"alertname": "A", "": "x"}}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["detail"], "alert 0 has a label with an empty name");
    d.stop().await;
}

/// A value of any JSON shape, biased towards what breaks parsers of times and
/// durations: absurd durations and dates, huge and negative numbers, empty names.
fn arbitrary_json(rng: &mut fastrand::Rng, depth: u32) -> Value {
    const STRINGS: &[&str] = &[
        "",
        " ",
        "7974y",
        "8000y",
        "100000y",
        "584942417355y",
        "1ns",
        "0s",
        "99999999999999999999y",
        "1h",
        "-1h",
        "9999-12-31T23:59:59Z",
        "+275760-09-13T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-11-26T00:00:00Z",
        "alertname",
        "severity",
        "critical",
        "order_execution",
        "default",
        "\u{0}",
        "é\u{202e}",
        ".*",
        "(",
        "{{ .Labels }}",
    ];
    let pick_key = |rng: &mut fastrand::Rng| -> String {
        const KEYS: &[&str] = &[
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "matchers",
            "name",
            "value",
            "is_regex",
            "is_equal",
            "duration",
            "ends_at",
            "created_by",
            "comment",
            "by",
            "receiver",
            "slack_channel",
            "email",
            "pagerduty_routing_key",
            "dry_run",
            "operation",
            "latency_us",
            "alertname",
            "",
        ];
        KEYS[rng.usize(..KEYS.len())].to_string()
    };
    let leaf = rng.u8(..7);
    if depth == 0 || leaf < 3 {
        return match rng.u8(..8) {
            0 => Value::Null,
            1 => Value::Bool(rng.bool()),
            2 => serde_json::json!(rng.i64(..)),
            3 => {
                serde_json::json!([0.0, -1.0, 1e308, -1e308, 1e-300, 250.0, 9.2e18][rng.usize(..7)])
            }
            4 => serde_json::json!(rng.u64(..)),
            _ => Value::String(STRINGS[rng.usize(..STRINGS.len())].to_string()), // 3 in 8
        };
    }
    if rng.bool() {
        Value::Array(
            (0..rng.usize(..4))
                .map(|_| arbitrary_json(rng, depth - 1))
                .collect(),
        )
    } else {
        Value::Object(
            (0..rng.usize(..5))
                .map(|_| (pick_key(rng), arbitrary_json(rng, depth - 1)))
                .collect(),
        )
    }
}

/// Issue 15 item 3, in the spirit of the fuzz targets (`fuzz/`): every route that
/// takes a JSON body, fed arbitrary JSON, answers a JSON 4xx or a 2xx; never a 5xx
/// and never a dropped connection.
#[tokio::test]
async fn arbitrary_json_bodies_never_break_a_route() {
    const TOKEN: &str = "fuzz-t0ken";
    let d = Daemon::start(config(&format!("api:\n  token: {TOKEN}\n"))).await;
    let spec = json(&d, "/api/v1/openapi.json").await;
    let posts: Vec<String> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, ops)| {
            ops.get("post").is_some()
                && ops["post"].get("requestBody").is_some()
                // Sends to the configured receivers; none is configured here.
                && !p.ends_with("/notifications/test")
        })
        .map(|(p, _)| p.replace("{id}", "x"))
        .collect();
    assert!(posts.len() >= 5, "{posts:?}");
    let documented = |path: &str, status: u16| {
        let key = path.replace("/x/", "/{id}/");
        // A path that ends in its id (end-latency-measurement/{id}).
        let key = key
            .strip_suffix("/x")
            .map_or(key.clone(), |k| format!("{k}/{{id}}"));
        spec["paths"][&key]["post"]["responses"]
            .get(status.to_string())
            .is_some()
    };
    // Valid bodies to mutate one field of, so the fuzzing reaches past the first check.
    let seeds = [
        (
            "/api/v2/alerts",
            serde_json::json!([{"labels": {"alertname": "A", "severity": "warning"}, "annotations": {"summary": "s"}, "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z"}]),
        ),
        (
            "/monitoring/silences",
            serde_json::json!({"matchers": [{"name": "alertname", "value": "A", "is_regex": false}], "duration": "1h", "created_by": "bob", "comment": "c"}),
        ),
        (
            "/monitoring/silences",
            serde_json::json!({"matchers": [{"name": "alertname", "value": "A"}], "ends_at": "2030-01-01T00:00:00Z", "created_by": "bob"}),
        ),
        (
            "/api/v2/silences",
            serde_json::json!({"matchers": [{"name": "alertname", "value": "A", "isRegex": false, "isEqual": true}], "startsAt": "0001-01-01T00:00:00Z", "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(), "createdBy": "bob", "comment": "c"}),
        ),
        (
            "/acknowledge",
            serde_json::json!({"by": "bob", "comment": "c"}),
        ),
        (
            "/configure",
            serde_json::json!({"receiver": "default", "slack_channel": "#x"}),
        ),
        (
            "/trading/latency",
            serde_json::json!([{"operation": "order_execution", "latency_us": 250, "labels": {"venue": "x"}}]),
        ),
        (
            "/start-latency-measurement",
            serde_json::json!({"operation": "order_execution"}),
        ),
        (
            "/end-latency-measurement/x",
            serde_json::json!({"success": false}),
        ),
    ];
    let mut rng = fastrand::Rng::with_seed(15);
    for path in &posts {
        let mine: Vec<&Value> = seeds
            .iter()
            .filter(|(p, _)| path.ends_with(p))
            .map(|(_, v)| v)
            .collect();
        for i in 0..1000 {
            let body = if i % 2 == 0 || mine.is_empty() {
                arbitrary_json(&mut rng, 4)
            } else {
                let mut body = mine[rng.usize(..mine.len())].clone();
                let target = match &mut body {
                    Value::Array(items) => &mut items[0],
                    other => other,
                };
                if let Value::Object(m) = target {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    let key = keys[rng.usize(..keys.len())].clone();
                    let depth = rng.u32(..3);
                    m.insert(key, arbitrary_json(&mut rng, depth));
                }
                body
            };
            let r = d
                .client
                .post(d.url(path))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {path} {body}: no answer: {e}"));
            let status = r.status();
            assert!(!status.is_server_error(), "POST {path} {body}: {status}");
            assert!(
                documented(path, status.as_u16()),
                "POST {path} {body}: {status} is not in the OpenAPI document"
            );
            if status.is_client_error() {
                let e: Value = r
                    .json()
                    .await
                    .unwrap_or_else(|_| panic!("POST {path} {body}: a non-JSON {status}"));
                // Alertmanager's silence route answers a JSON string, as Alertmanager
                // does and as amtool decodes it.
                if path.starts_with("/api/v2/silence") {
                    assert!(e.is_string(), "POST {path} {body}: {e}");
                } else {
                    assert!(e["error"].is_string(), "POST {path} {body}: {e}");
                }
            }
        }
    }
    // What the body extractor refuses before a handler runs: documented, JSON.
    for path in &posts {
        assert!(documented(path, 413) && documented(path, 415), "{path}");
        let r = d
            .client
            .post(d.url(path))
            .bearer_auth(TOKEN)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{path}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "unsupported_media_type", "{path}");
    }
    // The server is whole: every read still answers.
    let list = json(&d, "/api/v1/monitoring/silences").await;
    assert!(list["silences"].is_array());
    json(&d, "/api/v1/monitoring/alerts").await;
    d.stop().await;
}

// --- pages for people: / and /docs (issue 19) --------------------------------------

/// The values of every `href` and `src` attribute in `html`.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').expect("a quoted attribute ends");
            out.push(rest[..end].replace("&amp;", "&"));
            rest = &rest[end..];
        }
    }
    out
}

/// Fetches `path` as an HTML page: 200, HTML, and the headers that keep the browser
/// from loading anything from anywhere.
async fn page(d: &Daemon, path: &str) -> String {
    let r = d.get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8", "GET {path}");
    assert_eq!(h["x-content-type-options"], "nosniff", "GET {path}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none';"), "GET {path}: {csp}");
    assert!(!csp.contains("script-src"), "GET {path}: {csp}");
    r.text().await.unwrap()
}

/// Follows every link of the page at `path`: in-page ones must name an element of
/// the page, the others must stay on the daemon and answer 200.
async fn follow_links(d: &Daemon, path: &str, html: &str) -> usize {
    let base = reqwest::Url::parse(&d.url(path)).unwrap();
    let hrefs = links(html);
    for href in &hrefs {
        if let Some(id) = href.strip_prefix('#') {
            assert!(
                html.contains(&format!("id=\"{id}\"")),
                "{path}: link {href} names no element"
            );
            continue;
        }
        let url = base.join(href).unwrap();
        assert_eq!(
            (url.scheme(), url.host_str(), url.port()),
            ("http", Some("127.0.0.1"), Some(d.addr.port())),
            "{path}: link {href} leaves the daemon"
        );
        let r = d.client.get(url.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}: link {href} ({url})");
    }
    hrefs.len()
}

/// Nothing on the page comes from anywhere: no script, no CSS import or `url()`, and
/// no link with a scheme or a host of its own (text may still mention a URL).
fn assert_self_contained(path: &str, html: &str) {
    for bad in ["<script", "@import", "url("] {
        assert!(!html.contains(bad), "{path} contains {bad}");
    }
    for l in links(html) {
        assert!(
            !l.starts_with("//") && !l.contains(':'),
            "{path} links off the daemon: {l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_landing_page_shows_the_version_and_every_link_answers() {
    let d = Daemon::start(fixture_config("plain", "")).await;
    let html = page(&d, "/").await;
    assert!(
        html.contains(&format!(
            "<td id=\"version\">{}</td>",
            env!("CARGO_PKG_VERSION")
        )),
        "{html}"
    );
    let hrefs = links(&html);
    for want in [
        "metrics",
        "docs",
        "runbooks",
        "api/v1/openapi.json",
        "api/v1/monitoring/health",
        "-/ready",
        "-/healthy",
    ] {
        assert!(
            hrefs.iter().any(|h| h == want),
            "no link to {want}: {hrefs:?}"
        );
    }
    assert_eq!(follow_links(&d, "/", &html).await, hrefs.len());
    assert_self_contained("/", &html);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_render_every_operation_of_the_openapi_document() {
    let d = Daemon::start(fixture_config("plain", "")).await;
    let spec = json(&d, "/api/v1/openapi.json").await;
    let html = page(&d, "/docs").await;
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = m4watch::internals::api::operation_anchor(method, path);
            let heading = format!(
                "<section class=\"op\" id=\"{id}\">\n<h3><span class=\"m {method}\">{}</span> <code>{}</code></h3>",
                method.to_uppercase(),
                m4watch::internals::api::escape(path)
            );
            assert!(html.contains(&heading), "/docs lacks {method} {path}");
            assert!(
                html.contains(&format!("href=\"#{id}\"")),
                "no contents link to {method} {path}"
            );
            if let Some(summary) = op["summary"].as_str() {
                assert!(
                    html.contains(&m4watch::internals::api::escape(summary)),
                    "{method} {path}: summary"
                );
            }
            operations += 1;
        }
    }
    assert!(operations > 30, "only {operations} operations rendered");
    // What an operation says: its token, its body's schema, its answers.
    let ack = m4watch::internals::api::operation_anchor(
        "post",
        "/api/v1/monitoring/alerts/{id}/acknowledge",
    );
    let section = &html[html.find(&format!("id=\"{ack}\"")).unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert!(section.contains("<b>token</b>"), "{section}");
    assert!(section.contains("<h4>Parameters</h4>"), "{section}");
    assert!(section.contains("<h4>Request body"), "{section}");
    assert!(section.contains("<td>401</td>"), "{section}");
    // Every schema the operations name has its own section.
    for name in spec["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            html.contains(&format!("id=\"schema-{name}\"")),
            "schema {name}"
        );
    }
    assert!(follow_links(&d, "/docs", &html).await > operations);
    assert_self_contained("/docs", &html);
    d.stop().await;
}

#[tokio::test]
async fn the_pages_stay_open_when_reads_need_a_token() {
    let d = Daemon::start(fixture_config("plain", "api:\n  read_token: r3ad\n")).await;
    assert_eq!(d.get("/api/v1/monitoring/health").await.status(), 401);
    let landing = page(&d, "/").await;
    assert!(landing.contains("api.read_token"), "{landing}");
    page(&d, "/docs").await;
    page(&d, "/runbooks").await;
    d.stop().await;
}

/// Issue 27: every rule the instance runs links to a section of `/runbooks` and to a
/// shipped dashboard, and the page stands alone like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbooks_have_a_section_for_every_rule_the_instance_runs() {
    let d = Daemon::start(fixture_config("plain", "")).await;
    let html = page(&d, "/runbooks").await;
    let status = json(&d, "/api/v1/monitoring/status").await;
    let rules = status["rules"]["alerting"].as_array().unwrap();
    assert!(rules.len() >= 38, "{} alerting rules listed", rules.len());
    for r in rules {
        let name = r["name"].as_str().unwrap();
        let url = r["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let id = url
            .strip_prefix("/runbooks#")
            .unwrap_or_else(|| panic!("{name}: {url}"));
        assert_eq!(id, name.to_lowercase(), "{name}");
        assert!(
            html.contains(&format!("<h2 id=\"{id}\">{name}</h2>")),
            "{name}: /runbooks has no section #{id}"
        );
        assert!(
            html.contains(&format!("href=\"#{id}\"")),
            "{name}: not in the contents"
        );
        let dashboard = r["dashboard_url"].as_str().unwrap_or_default();
        assert!(
            dashboard.starts_with("/d/m4watch-"),
            "{name}: {dashboard:?}"
        );
    }
    assert!(follow_links(&d, "/runbooks", &html).await > rules.len());
    assert_self_contained("/runbooks", &html);
    d.stop().await;
}

/// Issue 29: `GET /api/v1/optimization/stats` (seed 000's "comprehensive statistics")
/// answers uptime, collector runs, alerts, recommendations, the score and the ingest
/// with the figures m4watch has; what it does not know is absent, never 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimization_stats_answers_what_m4watch_counts() {
    const TOKEN: &str = "stats-t0ken";
    let d = Daemon::start(replay(&format!("api:\n  token: {TOKEN}\n"))).await;
    // Before any latency sample: no score, and the ingest counts nothing yet.
    let early = json(&d, "/api/v1/optimization/stats").await;
    assert!(early.get("performance_score").is_none(), "{early}");
    let r = post_json(
        &d,
        TOKEN,
        "/api/v1/trading/latency",
        serde_json::json!([
            {"operation": "order_execution", "latency_us": 250},
            {"operation": "order_execution", "latency_us": 260},
            {"operation": "risk_calculation", "latency_us": 900}
        ]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = post_json(
        &d,
        TOKEN,
        "/api/v2/alerts",
        serde_json::json!([{"labels": {"alertname": "StatsCritical", "severity": "critical"}}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    d.scrape_until(5, |t| t.contains("\nm4watch_performance_score "))
        .await;

    let st = json(&d, "/api/v1/optimization/stats").await;
    let uptime = st["uptime_seconds"].as_f64().unwrap();
    assert!(uptime > 0.0 && uptime < 60.0, "{st}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (st["started_at"].as_f64().unwrap() - (now - uptime)).abs() < 5.0,
        "{st}"
    );
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    // The collectors' runs, as the status counts them.
    let c = &st["collections"];
    let hardware = &c["collectors"]["hardware"];
    assert!(hardware["runs"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(hardware["last_success"], true, "{st}");
    let sum: u64 = c["collectors"]
        .as_object()
        .unwrap()
        .values()
        .map(|x| x["runs"].as_u64().unwrap())
        .sum();
    assert_eq!(c["runs_total"].as_u64().unwrap(), sum, "{st}");
    // The posted alert, and the verdict it makes.
    assert!(
        st["alerts"]["firing"]["critical"].as_u64().unwrap() >= 1,
        "{st}"
    );
    assert!(st["alerts"]["rules"].as_u64().unwrap() > 10, "{st}");
    assert_eq!(st["health"], "critical", "{st}");
    // The ingest: three observations of two operations; the score beside its coverage.
    assert_eq!(st["trading"]["observations_total"], 3, "{st}");
    assert_eq!(st["trading"]["operations"], 2, "{st}");
    let score = st["performance_score"].as_f64().unwrap();
    let view = json(&d, "/api/v1/monitoring/trading/metrics").await;
    assert!(
        (score - view["score"]["score"].as_f64().unwrap()).abs() < 1e-9,
        "{st}"
    );
    // The recommendations add up, and are the optimizations route's.
    let rec = &st["recommendations"];
    let total = rec["total"].as_u64().unwrap();
    for key in ["by_kind", "by_severity"] {
        let n: u64 = rec[key]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(n, total, "{st}");
    }
    // Both are worked out per request from live data: the same answer within a few tries.
    let mut same = None;
    for _ in 0..20 {
        let advice = json(&d, "/api/v1/monitoring/performance/optimizations").await;
        let st = json(&d, "/api/v1/optimization/stats").await;
        let len = |k: &str| advice[k].as_array().unwrap().len() as u64;
        let got = (
            st["recommendations"]["total"].as_u64().unwrap(),
            st["recommendations"]["skipped"].as_u64().unwrap(),
        );
        if got == (len("recommendations"), len("skipped")) {
            same = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, skipped) = same.expect("stats and optimizations never agreed");
    assert!(
        skipped > 0,
        "a replayed machine without containers skips some checks"
    );
    d.stop().await;

    // Trading off: no ingest figures and no score, rather than zeros.
    let d = Daemon::start(replay("trading:\n  enabled: false\n")).await;
    let st = json(&d, "/api/v1/optimization/stats").await;
    assert!(st.get("trading").is_none(), "{st}");
    assert!(st.get("performance_score").is_none(), "{st}");
    assert!(
        st["collections"]["runs_total"].as_u64().unwrap() >= 1,
        "{st}"
    );
    d.stop().await;
}
