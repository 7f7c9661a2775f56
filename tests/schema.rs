//! Issue 30: the metric schema a Prometheus user expects, checked on real scrapes.
//!
//! Two scrapes: `m4watch demo` (the synthetic M4 Max, every Apple family) and the
//! embedded default config on this Linux machine (real /proc, /sys, disks, interfaces).
//! On both, `promtool check metrics` finds nothing and every family's series share one
//! label set, the catalogue's. Then node_exporter's own node-mixin recording rules,
//! vendored in testdata/node-mixin with their source, run in real Prometheus against
//! m4watch with the prefix swapped: every rule returns series.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, free_port, require_tool};

/// A free UDP port on loopback, for a StatsD listener that must not meet another test's.
fn free_udp() -> String {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// A running m4watch and where it serves.
struct Running {
    _child: KillOnDrop,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Running {
    /// `m4watch demo` on its shipped recording.
    fn demo() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("m4watch.yml");
        let yaml = format!("trading:\n  statsd_listen: {}\n", free_udp());
        std::fs::write(&cfg, yaml).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_m4watch"))
            .args(["demo", "--listen", &addr, "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Running {
            _child: KillOnDrop(child),
            addr,
            _dir: dir,
        }
    }

    /// The daemon on the embedded default config: this machine's real collectors.
    fn linux() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("m4watch.yml");
        let yaml = format!(
            "listen: {addr}\ndata_dir: {}\ntrading:\n  statsd_listen: {}\n",
            dir.path().display(),
            free_udp()
        );
        std::fs::write(&cfg, yaml).unwrap();
        let child = common::spawn_m4watch(&cfg, &dir.path().join("log"), "warn", &[]);
        Running {
            _child: child,
            addr,
            _dir: dir,
        }
    }

    /// Scrapes until every family in `want` has series (30 s at most).
    async fn scrape_with(&self, want: &[&str]) -> String {
        let client = m4watch::tls::client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = match client
                .get(format!("http://{}/metrics", self.addr))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let missing: Vec<&&str> = want
                .iter()
                .filter(|f| common::series(&text, f).is_empty())
                .collect();
            if missing.is_empty() {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{} never exported {missing:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Families the demo exports once its second hardware reading and first StatsD packets
/// are in.
const DEMO_FAMILIES: &[&str] = &[
    "m4watch_cpu_utilization_ratio",
    "m4watch_cpu_frequency_hertz",
    "m4watch_cpu_cluster_frequency_hertz",
    "m4watch_memory_partition_bytes",
    "m4watch_memory_used_bytes",
    "m4watch_power_watts",
    "m4watch_system_power_watts",
    "m4watch_trading_latency_seconds_bucket",
    "process_resident_memory_bytes",
];

/// Families the Linux scrape has once the hardware, host and process collectors ran.
const LINUX_FAMILIES: &[&str] = &[
    "m4watch_cpu_seconds_total",
    "m4watch_cpu_utilization_ratio",
    "m4watch_memory_partition_bytes",
    "m4watch_memory_available_bytes",
    "m4watch_network_receive_bytes_total",
    "m4watch_disk_io_time_weighted_seconds_total",
    "m4watch_filesystem_avail_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_start_time_seconds",
];

fn check(text: &str, what: &str) {
    let report = common::promtool_check_metrics(text);
    assert!(
        report.is_empty(),
        "promtool check metrics ({what}):\n{report}"
    );
    let errors = m4watch::catalog::label_set_errors(text);
    assert!(
        errors.is_empty(),
        "{what}: families with more than one label set:\n{}",
        errors.join("\n")
    );
    // The self-metrics are the standard unprefixed ones; the private names are gone.
    assert!(!text.contains("m4watch_process_resident_memory_bytes"));
    assert!(!common::series(text, "process_resident_memory_bytes").is_empty());
}

#[tokio::test]
async fn a_demo_scrape_passes_promtool_and_keeps_one_label_set_per_family() {
    let demo = Running::demo();
    let text = demo.scrape_with(DEMO_FAMILIES).await;
    check(&text, "demo");
    // The memory partition adds up to no more than the memory installed (issue 26).
    let total: f64 = common::series(&text, "m4watch_memory_total_bytes")[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let parts: f64 = common::series(&text, "m4watch_memory_partition_bytes")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(parts > 0.5 * total && parts <= total, "{parts} of {total}");
}

#[tokio::test]
async fn a_linux_scrape_passes_promtool_and_keeps_one_label_set_per_family() {
    let linux = Running::linux();
    let text = linux.scrape_with(LINUX_FAMILIES).await;
    check(&text, "linux");
}

/// The vendored node-mixin rules with node_exporter's prefix swapped for m4watch's and
/// its job selector for `job`.
fn swapped_node_mixin_rules(job: &str) -> (String, Vec<String>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/node-mixin/node-exporter.rules.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let swapped = text
        .replace("node_", "m4watch_")
        .replace("job=\"node\"", &format!("job=\"{job}\""));
    let records: Vec<String> = swapped
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect();
    (swapped, records)
}

#[tokio::test]
async fn node_mixin_recording_rules_return_series_on_a_m4watch_scrape() {
    let prometheus = require_tool("prometheus");
    let linux = Running::linux();
    linux.scrape_with(LINUX_FAMILIES).await;

    let dir = tempfile::tempdir().unwrap();
    let (rules, records) = swapped_node_mixin_rules("m4watch");
    assert_eq!(records.len(), 12, "{records:?}");
    assert!(!rules.contains("node_"), "a name was not swapped:\n{rules}");
    let rules_path = dir.path().join("node-mixin.rules.yml");
    std::fs::write(&rules_path, rules).unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: m4watch\n    static_configs:\n      - targets: ['{}']\n",
        rules_path.display(),
        linux.addr
    );
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
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
    let client = m4watch::tls::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut empty = records.clone();
    while !empty.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut still = Vec::new();
        for r in &empty {
            let answer: serde_json::Value = match client
                .get(format!("http://{prom}/api/v1/query"))
                .query(&[("query", r.as_str())])
                .send()
                .await
            {
                Ok(resp) => resp.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            let has = answer["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if !has {
                still.push(r.clone());
            }
        }
        empty = still;
    }
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(
        empty.is_empty(),
        "node-mixin rules without series: {empty:?}\nprometheus log:\n{log}"
    );
}
