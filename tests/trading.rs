//! Black-box tests of trading latency and throughput: real UDP packets on loopback into
//! the StatsD listener, real HTTP requests into the ingest and measurement API.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{Daemon, config, series};
use serde_json::{Value, json};

const TOKEN: &str = "tr4de";

/// Plain fixture hardware, a fast trading interval, a write token, and `extra`
/// lines under `trading:`.
fn trading_config(extra: &str) -> m4watch::config::Config {
    let root = common::fixture("plain");
    config(&format!(
        "api:\n  token: {TOKEN}\nhardware:\n  interval: 1s\n  timeout: 1s\n  procfs: {root}/proc\n  sysfs: {root}/sys\n\
         trading:\n  interval: 100ms\n{extra}"
    ))
}

/// Where the daemon's StatsD listener is bound, as its JSON API reports it.
async fn statsd_addr(d: &Daemon) -> SocketAddr {
    let v = trading_json(d).await;
    v["statsd_listen"]
        .as_str()
        .unwrap_or_else(|| panic!("no statsd_listen in {v}"))
        .parse()
        .unwrap()
}

async fn trading_json(d: &Daemon) -> Value {
    let r = d.get("/api/v1/monitoring/trading/metrics").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn send(to: SocketAddr, packets: &[&str]) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in packets {
        assert_eq!(sock.send_to(p.as_bytes(), to).unwrap(), p.len());
    }
}

/// The value of the one series line starting with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

async fn post(d: &Daemon, path: &str, body: Value) -> reqwest::Response {
    d.client
        .post(d.url(path))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn statsd_packets_become_quantiles_histograms_counters_gauges_and_sets() {
    let d = Daemon::start(trading_config("  label_tags: [venue]\n")).await;
    let to = statsd_addr(&d).await;
    // 1..=100 ms, twenty lines per packet, tagged; plus every other StatsD type.
    let timers: Vec<String> = (0..5)
        .map(|p| {
            (1..=20)
                .map(|i| format!("order_execution:{}|ms|#venue:xnys,desk:a\n", p * 20 + i))
                .collect()
        })
        .collect();
    let mut packets: Vec<&str> = timers.iter().map(String::as_str).collect();
    packets.extend([
        "market_data:5|c|@0.1\nmarket_data:7|c",
        "queue_depth:42|g",
        "fills:1:2:3|d",
    ]);
    send(to, &packets);
    // Gauge deltas apply in arrival order, after the set above. A set counts the values
    // of one trading interval, so its lines ride in the packet that completes the
    // gauge: the scrape that sees 45 sees the set's interval too.
    std::thread::sleep(Duration::from_millis(50));
    send(
        to,
        &["queue_depth:+3|g\nusers:alice|s\nusers:bob|s\nusers:alice|s"],
    );

    let op =
        "m4watch_trading_latency_quantile_seconds{operation=\"order_execution\",venue=\"xnys\"";
    let text = d
        .scrape_until(5, |t| {
            value(t, "m4watch_trading_value{name=\"queue_depth\"}") == Some(45.0)
                && value(
                    t,
                    "m4watch_trading_latency_seconds_count{operation=\"fills\"}",
                ) == Some(3.0)
                && value(t, "m4watch_trading_set_unique_values{name=\"users\"}") == Some(2.0)
        })
        .await;
    let p50 = value(&text, &format!("{op},window=\"1m\",quantile=\"0.5\"}}")).unwrap();
    assert!(close(p50, 0.050, 0.01), "p50 {p50}\n{text}");
    let p99 = value(&text, &format!("{op},window=\"5m\",quantile=\"0.99\"}}")).unwrap();
    assert!(close(p99, 0.099, 0.01), "p99 {p99}");
    // The untagged `desk` tag is not a label: one series, 100 observations.
    let count =
        "m4watch_trading_latency_seconds_count{operation=\"order_execution\",venue=\"xnys\"}";
    assert_eq!(value(&text, count), Some(100.0), "{text}");
    let le =
        "m4watch_trading_latency_seconds_bucket{operation=\"order_execution\",venue=\"xnys\",le=";
    assert_eq!(value(&text, &format!("{le}\"0.01\"}}")), Some(10.0));
    assert_eq!(value(&text, &format!("{le}\"0.1\"}}")), Some(100.0));
    assert_eq!(value(&text, &format!("{le}\"+Inf\"}}")), Some(100.0));
    // 5 sampled at 1/10 count as 50, plus 7.
    assert_eq!(
        value(
            &text,
            "m4watch_trading_events_total{stream=\"market_data\"}"
        ),
        Some(57.0)
    );
    assert!(
        value(
            &text,
            "m4watch_trading_throughput_per_second{stream=\"market_data\",window=\"1m\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(&text, "m4watch_trading_set_unique_values{name=\"users\"}"),
        Some(2.0)
    );
    assert_eq!(value(&text, "m4watch_statsd_lines_total"), Some(108.0));
    for reason in ["format", "value", "cardinality"] {
        let family = if reason == "cardinality" {
            "m4watch_statsd_dropped_total"
        } else {
            "m4watch_statsd_parse_errors_total"
        };
        assert_eq!(
            value(&text, &format!("{family}{{reason=\"{reason}\"}}")),
            Some(0.0),
            "{reason} is pre-created at 0"
        );
    }

    let v = trading_json(&d).await;
    let ops = v["operations"].as_array().unwrap();
    let oe = ops
        .iter()
        .find(|o| o["operation"] == "order_execution")
        .unwrap();
    assert_eq!(oe["labels"]["venue"], "xnys");
    assert_eq!(oe["count"], 100);
    assert_eq!(oe["windows"]["1m"]["count"], 100);
    assert!(close(
        oe["windows"]["1m"]["p50_ms"].as_f64().unwrap(),
        50.0,
        0.01
    ));
    d.stop().await;
}

#[tokio::test]
async fn malformed_lines_are_counted_by_reason_and_survived() {
    let d = Daemon::start(trading_config("")).await;
    let to = statsd_addr(&d).await;
    // 65 000 bytes of non-UTF-8, a packet of 2000 bad lines, one of each reason.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&[0xff; 65_000], to).unwrap();
    send(
        to,
        &[
            &"bad\n".repeat(2000),
            "no_separator\na:abc|ms\na:1|zz\na:1|c|@2\na:1|c|#\n:1|c\n_e{1,1}:a|b",
            "ok_after_garbage:1|c",
        ],
    );
    let text = d
        .scrape_until(5, |t| {
            value(
                t,
                "m4watch_trading_events_total{stream=\"ok_after_garbage\"}",
            ) == Some(1.0)
        })
        .await;
    let errors = |reason: &str| {
        value(
            &text,
            &format!("m4watch_statsd_parse_errors_total{{reason=\"{reason}\"}}"),
        )
    };
    for (reason, n) in [
        ("encoding", 1.0),
        ("format", 2001.0),
        ("value", 1.0),
        ("type", 1.0),
        ("sample_rate", 1.0),
        ("tags", 1.0),
        ("name", 1.0),
        ("unsupported", 1.0),
    ] {
        assert_eq!(errors(reason), Some(n), "{reason}\n{text}");
    }
    assert_eq!(value(&text, "m4watch_statsd_packets_total"), Some(4.0));
    assert_eq!(value(&text, "m4watch_statsd_lines_total"), Some(1.0));
    d.stop().await;
}

#[tokio::test]
async fn a_flood_of_random_names_is_capped_at_max_series_and_evicts_the_oldest() {
    let d = Daemon::start(trading_config("  max_series: 50\n")).await;
    let to = statsd_addr(&d).await;
    let mut x: u64 = 0x1234_5678;
    let mut packets = Vec::new();
    for _ in 0..100 {
        let mut p = String::new();
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = ["ms", "c", "g", "s"][(x % 4) as usize];
            p.push_str(&format!("flood_{x:016x}:1|{kind}\n"));
        }
        packets.push(p);
    }
    let refs: Vec<&str> = packets.iter().map(String::as_str).collect();
    // Paced so the kernel's receive buffer cannot be what limits the count.
    for chunk in refs.chunks(10) {
        send(to, chunk);
        std::thread::sleep(Duration::from_millis(5));
    }
    let tracked = |t: &str| -> f64 {
        series(t, "m4watch_trading_series")
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    // The drop counter moves as lines arrive; the series gauge with the collector's
    // next run (every trading.interval), so wait for both.
    let text = d
        .scrape_until(10, |t| {
            value(t, "m4watch_trading_series_evicted_total") == Some(1950.0) && tracked(t) == 50.0
        })
        .await;
    assert_eq!(tracked(&text), 50.0);
    assert!(series(&text, "m4watch_trading_latency_seconds_count").len() <= 50);
    assert_eq!(
        value(
            &text,
            "m4watch_statsd_dropped_total{reason=\"cardinality\"}"
        ),
        Some(0.0)
    );
    // A new name still gets in, in the least recently updated series' slot.
    let last = packets[99].lines().last().unwrap().to_string();
    send(to, &[&last, "brand_new:1|c"]);
    let text = d
        .scrape_until(5, |t| {
            t.contains("m4watch_trading_events_total{stream=\"brand_new\"} 1\n")
        })
        .await;
    assert_eq!(
        value(&text, "m4watch_trading_series_evicted_total"),
        Some(1951.0)
    );
    assert_eq!(value(&text, "m4watch_statsd_lines_total"), Some(2002.0));
    let v = trading_json(&d).await;
    assert_eq!(
        (v["series"].as_u64(), v["max_series"].as_u64()),
        (Some(50), Some(50))
    );
    d.stop().await;
}

#[tokio::test]
async fn http_ingest_needs_the_token_and_gives_percentiles_within_one_percent() {
    let d = Daemon::start(trading_config("")).await;
    let open = d
        .client
        .post(d.url("/api/v1/trading/latency"))
        .json(&json!([{"operation": "x", "latency_us": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 401);

    // A uniform distribution 1..=20000 µs: exact p50 10 ms, p99 19.8 ms, p999 19.98 ms.
    for half in 0..2u64 {
        let batch: Vec<Value> = (1..=10_000u64)
            .map(|i| json!({"operation": "risk_calculation", "latency_us": half * 10_000 + i}))
            .collect();
        let r = post(&d, "/api/v1/trading/latency", Value::Array(batch)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["accepted"], 10_000);
    }
    let bad = post(
        &d,
        "/api/v1/trading/latency",
        json!([{"operation": "x", "latency_us": -1}]),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(body["detail"].as_str().unwrap().starts_with("item 0:"));

    let stats = loop {
        let v: Value = d
            .get("/api/v1/optimization/latency-stats?duration_minutes=1")
            .await
            .json()
            .await
            .unwrap();
        if v["operations"][0]["count"] == 20_000 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats["window"], "1m");
    let op = &stats["operations"][0];
    assert_eq!(op["operation"], "risk_calculation");
    for (key, exact) in [("p50_ms", 10.0), ("p99_ms", 19.8), ("p999_ms", 19.98)] {
        let got = op[key].as_f64().unwrap();
        assert!(close(got, exact, 0.01), "{key}: {got} vs {exact}");
    }
    let five: Value = d
        .get("/api/v1/optimization/latency-stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(five["window"], "5m", "default is 5 minutes");
    let too_long = d
        .get("/api/v1/optimization/latency-stats?duration_minutes=60")
        .await;
    assert_eq!(too_long.status(), 400);
    d.stop().await;
}

#[tokio::test]
async fn start_and_end_a_measurement_and_abandon_another() {
    let d = Daemon::start(trading_config("  measurement_ttl: 300ms\n")).await;
    let r = post(
        &d,
        "/api/v1/optimization/start-latency-measurement",
        json!({"operation": "order_execution"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let end = format!("/api/v1/optimization/end-latency-measurement/{id}");
    let r = post(&d, &end, json!({"success": true})).await;
    assert_eq!(r.status(), 200);
    let ended: Value = r.json().await.unwrap();
    let ms = ended["latency_ms"].as_f64().unwrap();
    assert!((20.0..5_000.0).contains(&ms), "{ended}");
    assert_eq!(ended["operation"], "order_execution");
    assert_eq!(post(&d, &end, json!({})).await.status(), 404, "ends once");

    let r = post(
        &d,
        "/api/v1/optimization/start-latency-measurement",
        json!({"operation": "order_execution"}),
    )
    .await;
    let lost = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let text = d
        .scrape_until(5, |t| {
            value(
                t,
                "m4watch_trading_measurements_total{outcome=\"abandoned\"}",
            ) == Some(1.0)
        })
        .await;
    assert_eq!(
        value(
            &text,
            "m4watch_trading_measurements_total{outcome=\"completed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "m4watch_trading_latency_seconds_count{operation=\"order_execution\"}"
        ),
        Some(1.0)
    );
    let late = format!("/api/v1/optimization/end-latency-measurement/{lost}");
    assert_eq!(post(&d, &late, json!({})).await.status(), 404);
    let unauth = d
        .client
        .post(d.url("/api/v1/optimization/start-latency-measurement"))
        .json(&json!({"operation": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    d.stop().await;
}

#[tokio::test]
async fn the_score_follows_the_formula_over_the_components_with_data() {
    let d = Daemon::start(trading_config("")).await;
    let to = statsd_addr(&d).await;
    // Order execution at 250 µs (under its 1 ms target: 1.0); risk at 55 ms, halfway
    // between its 10 ms target (1.0) and its 100 ms alert threshold (0.5): 0.75. No
    // ML, no market data.
    let oe: String = (0..50).map(|_| "order_execution:0.25|ms\n").collect();
    let risk: String = (0..50).map(|_| "risk_calculation:55|ms\n").collect();
    send(to, &[&oe, &risk]);
    let text = d
        .scrape_until(5, |t| {
            value(t, "m4watch_performance_score_coverage_ratio").is_some_and(|c| c > 0.5)
        })
        .await;
    // (0.4 * 1.0 + 0.2 * 0.75) / 0.6
    let want = 100.0 * (0.4 + 0.15) / 0.6;
    let got = value(&text, "m4watch_performance_score").unwrap();
    assert!(close(got, want, 0.01), "score {got}, want {want}\n{text}");
    assert_eq!(
        value(
            &text,
            "m4watch_performance_component_score{component=\"latency\"}"
        ),
        Some(1.0)
    );
    let risk = value(
        &text,
        "m4watch_performance_component_score{component=\"risk\"}",
    )
    .unwrap();
    assert!(close(risk, 0.75, 0.02), "{risk}");
    assert!(
        value(
            &text,
            "m4watch_performance_component_score{component=\"ml\"}"
        )
        .is_none(),
        "no data is absent"
    );
    assert_eq!(
        value(
            &text,
            "m4watch_performance_component_weight{component=\"ml\"}"
        ),
        Some(0.0)
    );
    let w = value(
        &text,
        "m4watch_performance_component_weight{component=\"latency\"}",
    )
    .unwrap();
    assert!(close(w, 2.0 / 3.0, 1e-9));
    let cov = value(&text, "m4watch_performance_score_coverage_ratio").unwrap();
    assert!(close(cov, 0.6, 1e-9));
    let v = trading_json(&d).await;
    assert!(
        close(v["score"]["score"].as_f64().unwrap(), want, 0.01),
        "{v}"
    );
    assert_eq!(v["score"]["components"][2]["component"], "ml");
    assert!(v["score"]["components"][2].get("score").is_none());
    d.stop().await;
}

async fn system_health(d: &Daemon) -> serde_json::Value {
    d.get("/api/v1/monitoring/system/health")
        .await
        .json()
        .await
        .unwrap()
}

/// The issue's healthy desk on a quiet market: 0.3 ms, 3 ms, 20 ms, 20 messages a
/// second and nothing dropped. It scores 100 and health stays healthy; the message
/// rate alone (a market with no latencies reported) gives no score at all.
#[tokio::test]
async fn a_healthy_desk_on_a_quiet_market_scores_high_and_stays_healthy() {
    let d = Daemon::start(trading_config("")).await;
    let to = statsd_addr(&d).await;
    let mut lines = String::new();
    for _ in 0..20 {
        lines.push_str("order_execution:0.3|ms\nrisk_calculation:3|ms\nml_inference:20|ms\n");
    }
    send(to, &[&lines, "market_data:20|c\nmarket_data_dropped:0|c"]);
    let text = d
        .scrape_until(5, |t| {
            value(t, "m4watch_performance_score_coverage_ratio").is_some_and(|c| c > 0.99)
        })
        .await;
    let score = value(&text, "m4watch_performance_score").unwrap();
    assert!(score >= 85.0, "healthy desk scored {score}\n{text}");
    assert_eq!(
        value(
            &text,
            "m4watch_performance_component_score{component=\"throughput\"}"
        ),
        Some(1.0),
        "20 messages a second with none dropped is full marks"
    );
    // The alert thresholds the shipped rules compare against are exported.
    assert_eq!(
        value(
            &text,
            "m4watch_trading_latency_objective_seconds{operation=\"order_execution\",objective=\"alert\"}"
        ),
        Some(0.01)
    );
    let health = system_health(&d).await;
    assert_eq!(health["status"], "healthy", "{health}");
    d.stop().await;

    // Only market data, and little of it: too little coverage for a score, which is
    // absent rather than low, and health is not touched by it.
    let d = Daemon::start(trading_config("")).await;
    let to = statsd_addr(&d).await;
    send(to, &["market_data:3|c\nmarket_data_dropped:0|c"]);
    let text = d
        .scrape_until(5, |t| {
            value(t, "m4watch_performance_score_coverage_ratio").is_some_and(|c| c > 0.1)
        })
        .await;
    assert!(
        value(&text, "m4watch_performance_score").is_none(),
        "no score under min_coverage\n{text}"
    );
    let health = system_health(&d).await;
    assert!(health.get("performance_score").is_none(), "{health}");
    assert!(
        !health["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "score_low"),
        "{health}"
    );
    d.stop().await;
}

#[tokio::test]
async fn the_listener_can_be_off_and_trading_disabled() {
    let d = Daemon::start(trading_config("  statsd_listen: null\n")).await;
    let v = trading_json(&d).await;
    assert!(v.get("statsd_listen").is_none(), "{v}");
    // HTTP ingest still works without the listener.
    let r = post(
        &d,
        "/api/v1/trading/latency",
        json!([{"operation": "a", "latency_us": 5}]),
    )
    .await;
    assert_eq!(r.status(), 200);
    d.stop().await;

    let d = Daemon::start(config("trading:\n  enabled: false\n")).await;
    assert_eq!(
        d.get("/api/v1/monitoring/trading/metrics").await.status(),
        404
    );
    let text = d.scrape().await;
    assert!(series(&text, "m4watch_statsd_packets_total").is_empty());
    d.stop().await;
}

#[tokio::test]
async fn promtool_accepts_a_scrape_with_trading_data() {
    let d = Daemon::start(trading_config("  label_tags: [venue]\n")).await;
    let to = statsd_addr(&d).await;
    send(
        to,
        &["order_execution:0.3|ms|#venue:x\nmarket_data:10|c\nq:1|g\nu:a|s\nrisk_calculation:6|h"],
    );
    let text = d
        .scrape_until(5, |t| value(t, "m4watch_performance_score").is_some())
        .await;
    let report = common::promtool_check_metrics(&text);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
    d.stop().await;
}

/// The kernel's drop count of the UDP socket bound to 127.0.0.1:`port`
/// (`/proc/net/udp`, last column).
#[cfg(target_os = "linux")]
fn proc_udp_drops(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) == Some(&local.as_str()) {
            f.last()?.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(target_os = "linux")]
fn kernel_drops_counter(registry: &prometheus::Registry) -> Option<f64> {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == "m4watch_statsd_kernel_drops_total")
        .map(|f| f.get_metric()[0].get_counter().get_value())
}

#[cfg(target_os = "linux")]
#[test]
fn the_kernel_drops_of_the_listeners_socket_are_counted_as_the_kernel_counts_them() {
    use m4watch::internals::collect::trading::Trading;
    use m4watch::internals::collect::trading::statsd::Listener;

    let registry = prometheus::Registry::new();
    let trading = Trading::new(&Default::default(), &registry).unwrap();
    assert_eq!(
        kernel_drops_counter(&registry),
        Some(0.0),
        "present from the start"
    );
    // The smallest receive buffer the kernel allows holds a couple of datagrams.
    let listener = Listener::start_with_buffer(
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::clone(&trading),
        1,
    )
    .unwrap();
    let to = listener.addr();
    // A burst of 1 KB datagrams, each 40 timer lines: sent far faster than parsed.
    let packet: String = (0..40)
        .map(|i| format!("burst_{i:02}:1.{i}|ms\n"))
        .collect();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..20_000 {
        let _ = sock.send_to(packet.as_bytes(), to);
    }
    std::thread::sleep(Duration::from_millis(300));
    let kernel = proc_udp_drops(to.port()).expect("the listener's socket in /proc/net/udp");
    assert!(kernel > 0, "the burst overflowed the receive buffer");
    // The kernel hands its count over with the next datagram it queues.
    send(to, &["after_burst:1|c"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while kernel_drops_counter(&registry) != Some(kernel as f64)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        kernel_drops_counter(&registry),
        Some(kernel as f64),
        "m4watch_statsd_kernel_drops_total against /proc/net/udp"
    );
    assert_eq!(proc_udp_drops(to.port()), Some(kernel), "no drop since");
    listener.stop();
}

#[tokio::test]
async fn dotted_names_map_to_labelled_series_and_quiet_series_leave_metrics() {
    let d = Daemon::start(trading_config(
        "  windows: [1s, 4s]\n  score: {window: 1s}\n  series_ttl: 4s\n  max_series: 3\n  mappings:\n    \
         - match: \"orders.*.execution\"\n      match_type: timer\n      name: order_execution\n      \
         labels: {venue: \"$1\"}\n",
    ))
    .await;
    let to = statsd_addr(&d).await;
    send(
        to,
        &["orders.nyse.execution:2|ms\norders.cme.execution:3|ms\norders.cme.fills:1|c"],
    );
    let nyse =
        "m4watch_trading_latency_seconds_count{operation=\"order_execution\",venue=\"nyse\"}";
    let cme = "m4watch_trading_latency_seconds_count{operation=\"order_execution\",venue=\"cme\"}";
    let text = d
        .scrape_until(5, |t| value(t, nyse).is_some() && value(t, cme).is_some())
        .await;
    assert_eq!(value(&text, nyse), Some(1.0));
    assert!(text.contains("m4watch_trading_events_total{stream=\"orders.cme.fills\"} 1\n"));
    // Keep cme busy; nyse and the counter go quiet and leave after the 4 s TTL (long
    // enough that the table is still full when `late` arrives on a loaded machine).
    let text = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            send(to, &["orders.cme.execution:3|ms"]);
            let t = d.scrape().await;
            if value(&t, nyse).is_none() || std::time::Instant::now() > deadline {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(value(&text, nyse), None, "{text}");
    assert!(!text.contains("stream=\"orders.cme.fills\""), "{text}");
    assert!(value(&text, cme).unwrap() > 1.0, "the busy series stayed");
    assert_eq!(
        value(&text, "m4watch_trading_series_expired_total"),
        Some(2.0)
    );
    // Their slots are free again.
    send(to, &["late:1|c"]);
    d.scrape_until(5, |t| {
        t.contains("m4watch_trading_events_total{stream=\"late\"} 1\n")
    })
    .await;
    d.stop().await;
}

/// Issue 28: a datagram from a sender outside `trading.statsd_allow` is counted and
/// never ingested; one from an allowed sender is. The refused one comes from a second
/// loopback address, 127.0.0.2.
#[tokio::test]
async fn statsd_datagrams_from_refused_senders_are_counted_not_ingested() {
    let d = Daemon::start(trading_config("  statsd_allow: [127.0.0.1/32]\n")).await;
    let to = statsd_addr(&d).await;
    let refused = "m4watch_statsd_refused_datagrams_total";
    let text = d.scrape().await;
    assert_eq!(value(&text, refused), Some(0.0), "{text}");
    let packets_before = value(&text, "m4watch_statsd_packets_total").unwrap();

    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    for _ in 0..3 {
        stranger
            .send_to(b"order_execution:5|ms\nintruder_counter:1|c\n", to)
            .unwrap();
    }
    let text = d.scrape_until(10, |t| value(t, refused) == Some(3.0)).await;
    assert_eq!(
        value(&text, "m4watch_statsd_packets_total"),
        Some(packets_before),
        "a refused datagram was parsed"
    );
    assert!(!text.contains("intruder_counter"), "{text}");

    // From the allowed address the same datagram is ingested.
    send(to, &["order_execution:5|ms\nallowed_counter:1|c\n"]);
    let text = d.scrape_until(10, |t| t.contains("allowed_counter")).await;
    assert_eq!(value(&text, refused), Some(3.0));
    assert!(!text.contains("intruder_counter"), "{text}");
    d.stop().await;
}

/// Every series of `family` in an exposition, as (name and labels, value).
fn samples_of(text: &str, family: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

const OPS_ERR: &str =
    "m4watch_trading_operations_total{operation=\"order_execution\",outcome=\"error\"}";
const OPS_OK: &str =
    "m4watch_trading_operations_total{operation=\"order_execution\",outcome=\"success\"}";

/// Issue 29: failures reach `m4watch_trading_operations_total{outcome="error"}` through
/// all three ways in (StatsD tag, HTTP ingest, the end of a start/end measurement), a
/// bad outcome tag is refused and counted, the counter never decreases between
/// scrapes, and `trading.throughput` is exported as objectives.
#[tokio::test]
async fn outcomes_from_statsd_http_and_start_end_are_counted_and_never_decrease() {
    let d = Daemon::start(trading_config(
        "  throughput: {order_execution: 5, market_data: 1000}\n",
    ))
    .await;
    let to = statsd_addr(&d).await;
    // StatsD: one success, one error, one error sampled at 0.5 (stands for two), and a
    // line with an outcome m4watch does not take.
    send(
        to,
        &[
            "order_execution:1|ms\norder_execution:2|ms|#outcome:error\nmarket_data:1|ms|#outcome:success",
            "order_execution:3|ms|@0.5|#venue:x,outcome:error",
            "order_execution:4|ms|#outcome:rejected",
        ],
    );
    // HTTP ingest: one failure, one success by default.
    let r = post(
        &d,
        "/api/v1/trading/latency",
        json!([
            {"operation": "order_execution", "latency_us": 300, "success": false},
            {"operation": "order_execution", "latency_us": 300}
        ]),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 2);
    // Start/end: ended once as a failure, once without a body (a success).
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = post(
            &d,
            "/api/v1/optimization/start-latency-measurement",
            json!({"operation": "order_execution"}),
        )
        .await;
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let end = |id: &str| format!("/api/v1/optimization/end-latency-measurement/{id}");
    // A body that is not the object is refused and leaves the measurement open.
    for bad in [
        json!({"success": "no"}),
        json!({"sucess": false}),
        json!([]),
    ] {
        let r = post(&d, &end(&ids[0]), bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    // A body without a JSON Content-Type, as on every route.
    let r = d
        .client
        .post(d.url(&end(&ids[0])))
        .bearer_auth(TOKEN)
        .body(r#"{"success": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = post(&d, &end(&ids[0]), json!({"success": false})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["success"], false);
    let r = d
        .client
        .post(d.url(&end(&ids[1])))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["success"], true);

    // Errors: StatsD 1 + 2 (sampled), HTTP 1, start/end 1. Successes: one each.
    let text = d
        .scrape_until(5, |t| {
            value(t, OPS_ERR).is_some_and(|e| e >= 5.0)
                && value(t, "m4watch_trading_operations_total{operation=\"order_execution\",outcome=\"success\"}")
                    .is_some_and(|s| s >= 3.0)
        })
        .await;
    let ops = samples_of(&text, "m4watch_trading_operations_total");
    let sum = |outcome: &str| -> f64 {
        ops.iter()
            .filter(|(k, _)| {
                k.contains("operation=\"order_execution\"")
                    && k.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(sum("error"), 5.0, "{ops:?}");
    assert_eq!(sum("success"), 3.0, "{ops:?}");
    assert_eq!(
        value(
            &text,
            "m4watch_trading_operations_total{operation=\"market_data\",outcome=\"error\"}"
        ),
        Some(0.0),
        "the error series exists from the first sample"
    );
    assert_eq!(
        value(
            &text,
            "m4watch_statsd_parse_errors_total{reason=\"outcome\"}"
        ),
        Some(1.0)
    );
    // Failed operations are latencies too.
    assert_eq!(
        value(
            &text,
            "m4watch_trading_latency_seconds_count{operation=\"order_execution\"}"
        ),
        Some(8.0),
        "every operation, the 5 failed ones included"
    );
    assert!(text.contains("# TYPE m4watch_trading_operations_total counter"));

    // The objectives, and none for an operation without a target.
    let objective = |op: &str| {
        value(
            &text,
            &format!("m4watch_trading_throughput_objective_per_second{{operation=\"{op}\"}}"),
        )
    };
    assert_eq!(objective("order_execution"), Some(5.0));
    assert_eq!(objective("market_data"), Some(1000.0));
    assert_eq!(
        samples_of(&text, "m4watch_trading_throughput_objective_per_second").len(),
        2
    );

    // Scraped again and again while the windows move and more arrives: no series of the
    // counter ever goes down.
    let mut last = ops;
    for i in 0..6 {
        if i % 2 == 0 {
            send(
                to,
                &["order_execution:1|ms|#outcome:error\norder_execution:1|ms"],
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = samples_of(&d.scrape().await, "m4watch_trading_operations_total");
        for (k, before) in &last {
            let after = now.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
            assert!(
                after.is_some_and(|a| a >= *before),
                "{k} went from {before} to {after:?}"
            );
        }
        last = now;
    }
    assert_eq!(value(&d.scrape().await, OPS_ERR), Some(5.0 + 3.0));
    assert_eq!(value(&d.scrape().await, OPS_OK), Some(3.0 + 3.0));
    d.stop().await;
}

async fn firing(d: &Daemon) -> Vec<Value> {
    let r = d.get("/api/v1/monitoring/alerts?state=firing").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["alerts"].as_array().unwrap().clone()
}

/// Issue 29, through m4watch's own rule engine with the shipped rules and their
/// shipped `for:` (no speed-up): 20 orders a second, one in ten rejected, against a
/// target of 100 a second, with the feed reporting drops. Both error-rate severities,
/// TradingThroughputLow and MarketDataDropping fire, each with its own labels; the
/// operation that meets its target and the error-free one do not. About 2.5 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_outcome_and_throughput_rules_fire_in_the_daemon() {
    let d = Daemon::start(trading_config(
        "  throughput: {order_execution: 100, market_data: 1}\n",
    ))
    .await;
    let to = statsd_addr(&d).await;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for i in 0u64.. {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tick.tick() => {}
            }
            let outcome = if i % 10 == 0 { "|#outcome:error" } else { "" };
            let p =
                format!("order_execution:2|ms{outcome}\nmarket_data:1|ms\nmarket_data_dropped:1|c");
            sock.send_to(p.as_bytes(), to).await.unwrap();
        }
    });
    let want = [
        "OrderExecutionErrorRate",
        "OrderExecutionErrorRateCritical",
        "TradingThroughputLow",
        "MarketDataDropping",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(200);
    let alerts = loop {
        let a = firing(&d).await;
        if want.iter().all(|w| a.iter().any(|x| x["alertname"] == *w)) {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all of {want:?} fired: {a:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let _ = stop.send(());
    sender.await.unwrap();
    let one =
        |name: &str| -> Vec<&Value> { alerts.iter().filter(|a| a["alertname"] == name).collect() };
    let crit = one("OrderExecutionErrorRateCritical");
    assert_eq!(crit.len(), 1, "{alerts:?}");
    assert_eq!(crit[0]["severity"], "critical");
    assert_eq!(crit[0]["labels"]["operation"], "order_execution");
    // One in ten, as the 1-minute rates see it at evaluation time.
    let summary = crit[0]["annotations"]["summary"].as_str().unwrap();
    let pct: f64 = summary
        .strip_prefix("Order execution errors ")
        .and_then(|s| s.strip_suffix("% of orders"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!((8.0..12.0).contains(&pct), "{summary}");
    assert_eq!(one("OrderExecutionErrorRate")[0]["severity"], "warning");
    let low = one("TradingThroughputLow");
    assert_eq!(low.len(), 1, "market_data meets its target: {alerts:?}");
    assert_eq!(low[0]["labels"]["operation"], "order_execution");
    let drops = one("MarketDataDropping");
    assert_eq!(drops[0]["labels"]["stream"], "market_data_dropped");
    assert!(
        one("TradingErrorRateHigh").is_empty(),
        "no risk or ML errors: {alerts:?}"
    );
    d.stop().await;
}
