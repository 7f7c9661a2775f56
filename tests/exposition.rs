//! Issue 29, item 4: an exposition that obeys its types. A family declared `counter`,
//! `summary` or `histogram` is read by Prometheus as counters (`_total`, `_sum`,
//! `_count`, `_bucket`): `rate()` and `increase()` take any decrease for a restart. So
//! no such sample of the real binary may go down between two scrapes, whatever the
//! traffic between them: StatsD on loopback and the HTTP ingest, a burst, then sliding
//! windows that roll over and a small second burst.
//!
//! The check is generic: it reads the `# TYPE` lines of the exposition, so every
//! family added later is covered without a list to keep.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{free_port, spawn_m4watch, wait_up};

const TOKEN: &str = "exposition-token";

/// One sample line: its series (name and labels as written) and value.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    series: &'a str,
    value: f64,
}

/// Splits a sample line into name, `name{labels}` and value; `None` for a line the
/// text format does not allow (a label value may hold spaces, `}` and escaped quotes).
fn sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut end = name_end;
    if line[name_end..].starts_with('{') {
        let mut quoted = false;
        let mut escaped = false;
        let mut close = None;
        for (i, c) in line[name_end..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    close = Some(name_end + i);
                    break;
                }
                _ => {}
            }
        }
        end = close? + 1;
    }
    let value = line[end..].split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        series: &line[..end],
        value,
    })
}

/// The samples Prometheus treats as counters, by series, from the `# TYPE` lines:
/// every sample of a `counter` family (`_created` aside), and the `_sum`, `_count` and
/// `_bucket` of a `summary` or `histogram` (a summary's quantiles may go either way).
fn counter_samples(text: &str) -> BTreeMap<String, f64> {
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                kinds.insert(name, kind);
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let s = sample(line).unwrap_or_else(|| panic!("unparsable sample line: {line}"));
        let family = |suffix: &'static str| {
            s.name
                .strip_suffix(suffix)
                .and_then(|base| kinds.get(base).map(|k| (suffix, *k)))
        };
        let (suffix, kind) = kinds
            .get(s.name)
            .map(|k| ("", *k))
            .or_else(|| {
                ["_total", "_sum", "_count", "_bucket", "_created"]
                    .into_iter()
                    .find_map(family)
            })
            .unwrap_or_else(|| panic!("{} has no # TYPE line", s.name));
        let counts = match kind {
            "counter" => suffix != "_created",
            "summary" | "histogram" => matches!(suffix, "_sum" | "_count" | "_bucket"),
            _ => false,
        };
        if counts {
            out.insert(s.series.to_string(), s.value);
        }
    }
    out
}

#[test]
fn the_parser_reads_types_labels_and_values() {
    let text = "# TYPE a_total counter\na_total{x=\"} \\\" y\"} 3\n\
                # TYPE l summary\nl{quantile=\"0.5\"} 0.1\nl_sum 2.5\nl_count 7 1700000000000\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 4\nh_sum 1\nh_count 4\n\
                # TYPE g gauge\ng 5\n";
    let got = counter_samples(text);
    let want: BTreeMap<String, f64> = [
        ("a_total{x=\"} \\\" y\"}", 3.0),
        ("l_sum", 2.5),
        ("l_count", 7.0),
        ("h_bucket{le=\"+Inf\"}", 4.0),
        ("h_sum", 1.0),
        ("h_count", 4.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
}

/// Sends `n` timer samples of `ms` milliseconds for `order_execution` and a counter
/// increment over StatsD, and `n` samples of `risk_calculation` over the HTTP ingest.
async fn traffic(client: &reqwest::Client, base: &str, statsd: &str, n: usize, ms: f64) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in 0..n.div_ceil(50) {
        let lines: Vec<String> = (0..50.min(n - chunk * 50))
            .map(|i| format!("order_execution:{}|ms|#venue:xnys", ms + i as f64 * 0.01))
            .chain(std::iter::once("orders_filled:3|c".to_string()))
            .collect();
        sock.send_to(lines.join("\n").as_bytes(), statsd).unwrap();
    }
    let batch: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"operation": "risk_calculation", "latency_us": 800 + i}))
        .collect();
    let r = client
        .post(format!("{base}/api/v1/trading/latency"))
        .bearer_auth(TOKEN)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_counter_summary_or_histogram_sample_decreases_between_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let cfg = dir.path().join("m4watch.yml");
    // Short windows (2 s and 4 s) so that they roll over within the test.
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\ncontainers: {{enabled: false}}\n\
             trading:\n  statsd_listen: {statsd}\n  interval: 200ms\n  windows: [2s, 4s]\n  \
             label_tags: [venue]\n  score: {{window: 2s}}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let _m4watch = spawn_m4watch(
        &cfg,
        &dir.path().join("log"),
        "warn",
        &[("M4WATCH_API_TOKEN", TOKEN)],
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    wait_up(&client, &base).await;

    // A burst, then the first scrape once both operations are in their windows.
    traffic(&client, &base, &statsd, 400, 0.5).await;
    let summary_count =
        "m4watch_trading_latency_quantile_seconds_count{operation=\"order_execution\"";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        let text = scrape(&client, &base).await;
        let seen = |op: &str| {
            text.lines().any(|l| {
                l.starts_with(&format!(
                    "m4watch_trading_latency_quantile_seconds_count{{operation=\"{op}\""
                ))
            })
        };
        if seen("order_execution") && seen("risk_calculation") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst never showed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Both windows roll past the burst; a small second burst arrives.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    traffic(&client, &base, &statsd, 10, 0.7).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = scrape(&client, &base).await;

    let before = counter_samples(&first);
    let after = counter_samples(&second);
    let mut decreased = Vec::new();
    let mut compared = Vec::new();
    for (series, was) in &before {
        if let Some(now) = after.get(series) {
            compared.push(series.as_str());
            if now < was {
                decreased.push(format!("{series}: {was} -> {now}"));
            }
        }
    }
    assert!(
        decreased.is_empty(),
        "samples Prometheus reads as counters went down:\n{}",
        decreased.join("\n")
    );
    // The comparison covered the families the traffic moved, of each type.
    for want in [
        summary_count,
        "m4watch_trading_latency_quantile_seconds_sum{operation=\"risk_calculation\"",
        "m4watch_trading_latency_seconds_bucket{operation=\"order_execution\"",
        "m4watch_trading_events_total{stream=\"orders_filled\"",
        "m4watch_statsd_packets_total",
        "process_cpu_seconds_total",
    ] {
        assert!(
            compared.iter().any(|s| s.starts_with(want)),
            "{want} was not compared; compared: {compared:#?}"
        );
    }
    assert!(
        compared.len() > 50,
        "only {} series compared",
        compared.len()
    );
    // The second burst counted on top of the first: these moved, not merely held.
    let grew = |prefix: &str| {
        before
            .iter()
            .filter(|(s, _)| s.starts_with(prefix))
            .any(|(s, was)| after.get(s).is_some_and(|now| now > was))
    };
    assert!(grew(summary_count), "{second}");
    assert!(grew("m4watch_statsd_packets_total"), "{second}");
    // The windows' own figures are gauges now: the 2 s window holds the second burst only.
    let window = |text: &str, family: &str| -> Option<f64> {
        let prefix = format!("{family}{{operation=\"risk_calculation\",window=\"2s\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str())?.parse().ok())
    };
    let observations = "m4watch_trading_latency_window_observations";
    assert_eq!(window(&first, observations), Some(400.0), "{first}");
    assert_eq!(window(&second, observations), Some(10.0), "{second}");
    let mean = window(&second, "m4watch_trading_latency_window_mean_seconds").unwrap();
    assert!((mean - 0.0008045).abs() < 1e-9, "{mean}");
    let report = common::promtool_check_metrics(&second);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
}
