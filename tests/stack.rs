//! The shipped stack, checked against the real thing: every Grafana panel query parses
//! as PromQL, uses only metric names a live m4watch exports, and returns data when a
//! real Prometheus (Debian `prometheus`) with the shipped config scrapes m4watch.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, KillOnDrop, free_port, require_tool};
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};

/// One panel query of a shipped dashboard.
#[derive(Debug)]
struct PanelQuery {
    dashboard: String,
    panel: String,
    expr: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("grafana-dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", path.display()));
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 5,
        "expected the five dashboards, found {}",
        out.len()
    );
    out
}

fn panel_queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    dashboard: file.clone(),
                    panel: p["title"].as_str().unwrap_or("?").to_string(),
                    expr: t["expr"].as_str().unwrap().to_string(),
                });
            }
        }
    }
    out
}

/// Substitutes Grafana's variables as Grafana would for one host.
fn substitute(expr: &str, rate_interval: &str) -> String {
    expr.replace("$__rate_interval", rate_interval)
        .replace("$instance", ".*")
}

struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = ();
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
        match e {
            Expr::VectorSelector(vs) => self.0.extend(vs.name.clone()),
            Expr::MatrixSelector(ms) => self.0.extend(ms.vs.name.clone()),
            _ => {}
        }
        Ok(true)
    }
}

fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let ast = parser::parse(expr)?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast).unwrap();
    Ok(names.0)
}

#[test]
fn every_dashboard_has_host_and_datasource_variables_and_parsing_queries() {
    for (file, d) in dashboards() {
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"datasource") && vars.contains(&"instance"),
            "{file}: {vars:?}"
        );
    }
    let queries = panel_queries();
    assert!(queries.len() > 40, "only {} queries", queries.len());
    for q in &queries {
        assert!(
            q.expr.contains("$instance"),
            "{} / {}: query does not select $instance: {}",
            q.dashboard,
            q.panel,
            q.expr
        );
        metric_names(&substitute(&q.expr, "1m")).unwrap_or_else(|e| {
            panic!(
                "{} / {}: does not parse: {e}\n{}",
                q.dashboard, q.panel, q.expr
            )
        });
    }
}

#[test]
fn dashboards_are_generated_from_the_panel_lists() {
    let out = Command::new("python3")
        .arg(repo().join("scripts/gen-dashboards.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Config for a daemon that exports every family the dashboards use.
/// The hardware families come from the shipped synthetic M4 Max recording (replay), the
/// only source on Linux that publishes the GPU, ANE, fan and frequency series.
fn stack_config(probe: &str) -> m4watch::config::Config {
    common::config(&format!(
        "hardware:\n  source: replay\n  replay_file: {}/demo/m4max-synthetic.jsonl\n  interval: 100ms\n  timeout: 100ms\n\
         containers:\n  interval: 2s\n  timeout: 2s\n\
         probes:\n  interval: 1s\n  targets:\n    - {{name: risk-engine, url: \"{probe}\", timeout: 500ms}}\n\
         notifications:\n  receivers:\n    - name: desk\n      webhook: {{url: \"http://127.0.0.1:9/hook\"}}\n  route: {{receiver: desk}}\n",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// A real container for the container panels (Debian's docker.io and the test image
/// scripts/test.sh builds), removed when dropped.
struct Container(String);

impl Container {
    fn start() -> Container {
        require_tool("docker");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("m4watch-stack-{}-{n}", std::process::id());
        let out = Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--memory",
                "64m",
                "--label",
                "m4watch.tier=latency-critical",
            ])
            .args([
                "m4watch-test-busybox",
                "sh",
                "-c",
                "while true; do echo tick > /tmp/x; sleep 0.2; done",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker run failed (scripts/test.sh starts dockerd and builds the image): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container(name)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// A stand-in engine health endpoint: answers 200 to everything.
async fn health_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    format!("http://{addr}/health")
}

/// Every hardware family is there once utilisation is (it needs a second reading),
/// the trading families once the demo's StatsD load has been folded in, and the rule
/// engine's duration once it has evaluated once.
fn hardware_ready(text: &str) -> bool {
    text.contains("m4watch_cpu_utilization_ratio")
        && text.contains("m4watch_trading_latency_quantile_seconds{")
        && text.contains("m4watch_trading_throughput_per_second{")
        && text.contains("m4watch_performance_score ")
        && text.contains("m4watch_rule_evaluation_duration_seconds")
        && text.contains("m4watch_container_memory_working_set_bytes{")
        && text.contains("m4watch_probe_success{")
}

/// Sends the demo's StatsD load (timers per operation, a tick counter) to the
/// daemon's listener, found through its JSON API, until the trigger fires.
async fn trading_load(d: &Daemon) -> m4watch::shutdown::Trigger {
    let v: serde_json::Value = d
        .get("/api/v1/monitoring/trading/metrics")
        .await
        .json()
        .await
        .unwrap();
    let addr = v["statsd_listen"].as_str().unwrap().parse().unwrap();
    let (trigger, shutdown) = m4watch::shutdown::channel();
    tokio::spawn(m4watch::demo::statsd_load(addr, shutdown));
    trigger
}

/// Family names in an exposition, with a histogram's `_bucket`/`_sum`/`_count` series.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            names.insert(name.to_string());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
        }
    }
    names
}

#[tokio::test]
async fn panels_use_only_metric_names_a_live_m4watch_exports() {
    let _container = Container::start();
    let d = Daemon::start(stack_config(&health_endpoint().await)).await;
    let _load = trading_load(&d).await;
    let text = d.scrape_until(30, hardware_ready).await;
    let mut exported = exported_names(&text);
    // The dashboards serve Macs and Linux hosts: names only the Linux source exports
    // (PSI memory pressure) come from a second m4watch on a Linux fixture machine.
    let linux = Daemon::start(common::fixture_config("intel-hybrid", "")).await;
    exported.extend(exported_names(&linux.scrape().await));
    linux.stop().await;
    let mut missing = Vec::new();
    for q in panel_queries() {
        for name in metric_names(&substitute(&q.expr, "1m")).unwrap() {
            if !exported.contains(&name) {
                missing.push(format!("{} / {}: {name}", q.dashboard, q.panel));
            }
        }
    }
    assert!(missing.is_empty(), "not exported:\n{}", missing.join("\n"));
    d.stop().await;
}

/// The shipped prometheus.yml pointed at the test's m4watch and Prometheus, with the
/// 5 s job sped up to 1 s so the test needs seconds, not minutes.
fn test_prometheus_config(shipped: &Path, m4watch: &str, prom: &str) -> String {
    let mut cfg: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
    cfg["global"]["scrape_interval"] = "1s".into();
    cfg["rule_files"] = serde_yaml_ng::Value::Sequence(vec![
        repo()
            .join("prometheus/stack.rules.yml")
            .display()
            .to_string()
            .into(),
    ]);
    // No Alertmanager here: the panels need none (the shipped stack's notifications
    // are tested in tests/notify.rs).
    cfg["alerting"] = serde_yaml_ng::Value::Null;
    for job in cfg["scrape_configs"].as_sequence_mut().unwrap() {
        let target = if job["job_name"] == "prometheus" {
            prom
        } else {
            m4watch
        };
        job["static_configs"][0]["targets"][0] = target.into();
        if job["scrape_interval"] == "5s" {
            job["scrape_interval"] = "1s".into();
        }
    }
    serde_yaml_ng::to_string(&cfg).unwrap()
}

/// An instant query; a Prometheus that is not up yet answers `null`.
async fn prom_query(client: &reqwest::Client, prom: &str, q: &str) -> serde_json::Value {
    let sent = client
        .get(format!("http://{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await;
    match sent {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

fn has_data(v: &serde_json::Value) -> bool {
    v["status"] == "success"
        && match v["data"]["resultType"].as_str() {
            Some("vector") | Some("matrix") => v["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            Some("scalar") => true,
            _ => false,
        }
}

#[tokio::test]
async fn every_panel_returns_data_from_a_real_prometheus_scraping_m4watch() {
    let prometheus = require_tool("prometheus");
    let _container = Container::start();
    let mut config = stack_config(&health_endpoint().await);
    config.api.token = Some(m4watch::config::Secret::new("stack-test-token"));
    let d = Daemon::start(config).await;
    let _load = trading_load(&d).await;
    d.scrape_until(30, hardware_ready).await;

    let dir = tempfile::tempdir().unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg_path,
        test_prometheus_config(
            &repo().join("prometheus/prometheus.yml"),
            &d.addr.to_string(),
            &prom,
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = KillOnDrop(
        Command::new(prometheus)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    // Wait until both jobs have scraped m4watch a few times.
    let mut ready = false;
    for _ in 0..120 {
        let v = prom_query(
            &client,
            &prom,
            "min(count_over_time(up{job=~\"m4watch.*\"}[1m])) >= 6",
        )
        .await;
        if has_data(&v) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let prom_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(ready, "Prometheus never scraped m4watch:\n{}", prom_log());

    let mut empty = Vec::new();
    for q in panel_queries() {
        let v = prom_query(&client, &prom, &substitute(&q.expr, "5s")).await;
        if !has_data(&v) {
            empty.push(format!("{} / {}: {} -> {v}", q.dashboard, q.panel, q.expr));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    d.stop().await;
}
