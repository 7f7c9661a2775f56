//! Black-box tests of the daemon over HTTP.

mod common;

use common::{Daemon, config, fixture_config, series};

#[tokio::test]
async fn metrics_cover_every_cpu_of_this_machine_with_a_type() {
    let d = Daemon::start(config(
        "hardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: /proc\n  sysfs: /sys\n",
    ))
    .await;
    let r = d.get("/metrics").await;
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let user = series(&text, "m4watch_cpu_seconds_total")
        .into_iter()
        .filter(|l| l.contains("mode=\"user\""))
        .collect::<Vec<_>>();
    assert!(user.len() >= cpus, "{cpus} CPUs but only {user:?}");
    // node_cpu_seconds_total's shape: cpu and mode only; the core type is on cpu_info.
    assert!(user.iter().all(|l| !l.contains("type=")), "{user:?}");
    assert!(
        series(&text, "m4watch_cpu_info")
            .iter()
            .all(|l| l.contains("type=\"performance\"") || l.contains("type=\"efficiency\""))
    );
    assert_eq!(
        text.matches("# TYPE m4watch_cpu_seconds_total counter")
            .count(),
        1
    );
    assert_eq!(series(&text, "m4watch_build_info").len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn utilisation_appears_after_the_second_reading() {
    let d = Daemon::start(config(
        "hardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: /proc\n  sysfs: /sys\n",
    ))
    .await;
    let text = d
        .scrape_until(5, |t| {
            !series(t, "m4watch_cpu_cluster_utilization_ratio").is_empty()
        })
        .await;
    for line in series(&text, "m4watch_cpu_utilization_ratio") {
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&v), "{line}");
    }
    d.stop().await;
}

#[tokio::test]
async fn intel_hybrid_fixture_exports_types_temperatures_pressure_and_power() {
    let d = Daemon::start(fixture_config("intel-hybrid", "")).await;
    let text = d
        .scrape_until(5, |t| !series(t, "m4watch_power_watts").is_empty())
        .await;
    assert!(
        text.contains("m4watch_cpu_cores{type=\"performance\"} 4\n"),
        "{text}"
    );
    assert!(text.contains("m4watch_cpu_cores{type=\"efficiency\"} 4\n"));
    assert!(text.contains("m4watch_cpu_info{cpu=\"5\",type=\"efficiency\",cluster=\"E\"} 1\n"));
    assert!(text.contains("m4watch_temperature_celsius{sensor=\"x86_pkg_temp\"} 97\n"));
    assert!(text.contains("m4watch_thermal_pressure{state=\"serious\"} 1\n"));
    assert!(text.contains("m4watch_thermal_pressure{state=\"nominal\"} 0\n"));
    assert!(text.contains("m4watch_memory_pressure_ratio{window=\"10s\"} 0.021\n"));
    assert!(text.contains("m4watch_memory_total_bytes 32768000000\n"));
    // The fixture's counters do not move, so the rails draw 0 W: a measured zero.
    assert!(
        text.contains("m4watch_power_watts{rail=\"package-0\"} 0\n"),
        "{text}"
    );
    // RAPL's platform zone is the whole machine, apart from the zones it contains.
    assert!(
        text.contains("m4watch_system_energy_joules_total 0\n"),
        "{text}"
    );
    assert!(!text.contains("rail=\"psys\""), "{text}");
    d.stop().await;
}

#[tokio::test]
async fn a_machine_without_sensors_exports_no_temperature_series_not_zeros() {
    let d = Daemon::start(fixture_config("plain", "")).await;
    let text = d.scrape().await;
    for family in [
        "m4watch_temperature_celsius",
        "m4watch_thermal_pressure",
        "m4watch_power_watts",
        "m4watch_energy_joules_total",
        "m4watch_memory_pressure_ratio",
    ] {
        assert!(
            series(&text, family).is_empty(),
            "{family} must be absent:\n{text}"
        );
        assert!(
            !text.contains(&format!("# TYPE {family} ")),
            "{family} header without series"
        );
    }
    assert_eq!(series(&text, "m4watch_cpu_info").len(), 2);
    d.stop().await;
}

#[tokio::test]
async fn configured_topology_overrides_detection() {
    let d = Daemon::start(fixture_config("plain", "  topology: {efficiency: \"0\"}\n")).await;
    let text = d.scrape().await;
    assert!(
        text.contains("m4watch_cpu_info{cpu=\"0\",type=\"efficiency\",cluster=\"E\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("m4watch_cpu_info{cpu=\"1\",type=\"performance\",cluster=\"P\"} 1\n"));
    d.stop().await;
}

#[tokio::test]
async fn a_failing_collector_is_one_label_value_not_a_failed_scrape() {
    let d = Daemon::start(config(
        "hardware:\n  interval: 100ms\n  timeout: 100ms\n  procfs: /nonexistent/proc\n  sysfs: /nonexistent/sys\n",
    ))
    .await;
    let text = d
        .scrape_until(5, |t| {
            t.contains("m4watch_collector_success{collector=\"hardware\"} 0")
        })
        .await;
    assert!(
        text.contains("m4watch_collector_success{collector=\"process\"} 1"),
        "{text}"
    );
    assert!(series(&text, "m4watch_cpu_seconds_total").is_empty());
    let health: serde_json::Value = d
        .get("/api/v1/monitoring/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["collectors"]["hardware"]["success"], false);
    assert!(
        health["collectors"]["hardware"]["last_error"]
            .as_str()
            .unwrap()
            .contains("No such file"),
        "{health}"
    );
    assert!(
        health["collectors"]["hardware"]
            .get("last_success_unix")
            .is_none(),
        "unknown is absent"
    );
    d.stop().await;
}

#[tokio::test]
async fn health_endpoint_reports_collectors() {
    let d = Daemon::start(fixture_config("plain", "")).await;
    let r = d.get("/api/v1/monitoring/health").await;
    assert_eq!(r.status(), 200);
    let h: serde_json::Value = r.json().await.unwrap();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["ready"], true);
    assert_eq!(h["collectors"]["hardware"]["success"], true);
    assert_eq!(h["collectors"]["process"]["success"], true);
    d.stop().await;
}

#[tokio::test]
async fn read_token_guards_reads_but_not_probes() {
    let d = Daemon::start(fixture_config("plain", "api:\n  read_token: r34d\n")).await;
    assert_eq!(d.get("/metrics").await.status(), 401);
    let body: serde_json::Value = d
        .get("/api/v1/monitoring/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(d.get("/-/ready").await.status(), 200);
    let ok = d
        .client
        .get(d.url("/metrics"))
        .bearer_auth("r34d")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    d.stop().await;
}

#[tokio::test]
async fn every_exported_family_is_catalogued_with_its_help_and_type() {
    let d = Daemon::start(fixture_config("intel-hybrid", "")).await;
    let text = d
        .scrape_until(5, |t| !series(t, "m4watch_power_watts").is_empty())
        .await;
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
        let rest = &line["# HELP ".len()..];
        let (name, help) = rest.split_once(' ').unwrap();
        let def = m4watch::catalog::lookup(name)
            .unwrap_or_else(|| panic!("{name} is exported but not in the catalog"));
        assert_eq!(def.help, help, "{name}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} families");
    d.stop().await;
}

#[tokio::test]
async fn promtool_finds_nothing_wrong_with_a_live_scrape() {
    let d = Daemon::start(fixture_config("intel-hybrid", "")).await;
    let text = d
        .scrape_until(5, |t| !series(t, "m4watch_power_watts").is_empty())
        .await;
    let report = common::promtool_check_metrics(&text);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
    d.stop().await;
}

// --- limits (issue 15 item 5) ---------------------------------------------------

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes); returns what
/// arrived and whether it closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response's head and body (bodies here are small and Content-Length'd).
async fn read_response(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(i) = text.find("\r\n\r\n") {
            let len = text[..i]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= i + 4 + len {
                return Some(text);
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_after_the_header_read_timeout() {
    let d = Daemon::start(fixture_config(
        "plain",
        "api:\n  header_read_timeout: 300ms\n  idle_timeout: 10s\n",
    ))
    .await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header byte every 100 ms: always sending, never finishing.
    let mut closed = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(
        closed,
        "a client trickling its headers was held for {took:?}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    d.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let d = Daemon::start(fixture_config(
        "plain",
        "api:\n  idle_timeout: 400ms\n  header_read_timeout: 1s\n",
    ))
    .await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let answered = Instant::now();
    // Kept alive: still open well inside the timeout, and serves a second request.
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, Duration::from_secs(2)).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let answered_again = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    let idle = answered_again.elapsed();
    assert!(closed, "an idle connection stayed open");
    assert!(
        idle >= Duration::from_millis(350) && idle < Duration::from_secs(2),
        "closed after {idle:?} idle"
    );
    assert!(answered.elapsed() > idle);
    // A connection that never sends a byte is let go after the header-read timeout.
    let mut silent = TcpStream::connect(d.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(closed, "a silent connection stayed open");
    d.stop().await;
}

#[tokio::test]
async fn at_the_cap_a_newcomer_closes_the_slowest_head_and_is_served() {
    let d = Daemon::start(fixture_config(
        "plain",
        "api:\n  max_connections: 2\n  idle_timeout: 300ms\n  header_read_timeout: 10s\n",
    ))
    .await;
    // The harness's own kept-alive connection is closed by the idle timeout.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Two connections mid-head hold both slots; `a` started first.
    let mut a = TcpStream::connect(d.addr).await.unwrap();
    a.write_all(b"GET /-/healthy HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut b = TcpStream::connect(d.addr).await.unwrap();
    b.write_all(b"GET /-/healthy HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is served at once: the connection whose head has been arriving longest
    // (`a`) is closed to make room for it.
    let mut c = TcpStream::connect(d.addr).await.unwrap();
    c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut c, Duration::from_secs(2))
        .await
        .expect("a connection at the cap is served");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let (_, closed) = read_until_closed(&mut a, Duration::from_secs(2)).await;
    assert!(closed, "the oldest unfinished head was not closed");
    // The other keeps working.
    b.write_all(b"Host: x\r\n\r\n").await.unwrap();
    let r = read_response(&mut b, Duration::from_secs(2)).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    d.stop().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413_json_and_a_lower_case_bearer_is_accepted() {
    let d = Daemon::start(fixture_config("plain", "api:\n  token: t0k3n\n")).await;
    let url = d.url("/api/v1/trading/latency");
    let ok = d
        .client
        .post(&url)
        .header("authorization", "bearer t0k3n")
        .json(&serde_json::json!([{"operation": "order_execution", "latency_us": 250}]))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    let big = format!(
        "[{}]",
        vec![r#"{"operation":"order_execution","latency_us":250}"#; 60_000].join(",")
    );
    assert!(big.len() > 2 << 20);
    let r = d
        .client
        .post(&url)
        .header("authorization", "BEARER t0k3n")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large", "{body}");
    // A missing content type: 415, JSON too.
    let r = d
        .client
        .post(&url)
        .bearer_auth("t0k3n")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_media_type", "{body}");
    // A path id that is not UTF-8.
    let r = d
        .client
        .delete(d.url("/api/v1/monitoring/silences/%FF%FE"))
        .bearer_auth("t0k3n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_request", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("UTF-8"), "{body}");
    d.stop().await;
}

#[tokio::test]
async fn a_handler_that_panics_answers_a_json_500_and_counts() {
    let registry = prometheus::Registry::new();
    let router = m4watch::internals::api::guard(
        axum::Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                if true {
                    panic!("kaboom");
                }
                "unreachable"
            }),
        ),
        &registry,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = m4watch::shutdown::channel();
    let limits = m4watch::internals::api::Limits::of(&m4watch::config::ApiConfig::default());
    let server = tokio::spawn(m4watch::internals::api::serve(
        listener, router, limits, shutdown,
    ));
    let client = m4watch::tls::client();
    for _ in 0..2 {
        let r = client
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .expect("a panic answers, it does not drop the connection");
        assert_eq!(r.status(), 500);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "internal", "{body}");
        assert!(body["detail"].is_string());
    }
    let panics = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "m4watch_http_panics_total")
        .expect("the panic counter is registered");
    assert_eq!(panics.get_metric()[0].get_counter().get_value(), 2.0);
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops on shutdown")
        .unwrap()
        .unwrap();
}

// --- filtered scrapes (issue 30 item 4) --------------------------------------------

/// Family names (`# TYPE` lines) of an exposition.
fn family_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn collect_serves_only_the_named_collectors_families_and_refuses_unknown_names() {
    let d = Daemon::start(fixture_config("intel-hybrid", "")).await;
    let full = d
        .scrape_until(5, |t| !series(t, "m4watch_power_watts").is_empty())
        .await;
    let scrape = |q: &'static str| {
        let r = d.get(q);
        async move {
            let r = r.await;
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (status, ct, r.text().await.unwrap())
        }
    };
    // Each collector's families, as the catalogue lists them.
    let of = |collector: &str| -> std::collections::BTreeSet<String> {
        m4watch::catalog::SECTIONS
            .iter()
            .filter(|s| s.1 == collector)
            .flat_map(|s| s.2.iter().map(|d| d.name.to_string()))
            .collect()
    };

    let (status, ct, hw) = scrape("/metrics?collect[]=hardware").await;
    assert_eq!(status, 200);
    assert_eq!(
        ct.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let got = family_names(&hw);
    assert!(got.contains("m4watch_power_watts"), "{got:?}");
    assert!(got.is_subset(&of("hardware")), "{got:?}");
    assert!(!hw.contains("m4watch_build_info"));
    let report = common::promtool_check_metrics(&hw);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");

    // Repeated, and as Prometheus sends it (brackets percent-encoded): the union.
    let (status, _, two) = scrape("/metrics?collect%5B%5D=hardware&collect%5B%5D=exporter").await;
    assert_eq!(status, 200);
    let got = family_names(&two);
    assert!(got.contains("m4watch_power_watts") && got.contains("m4watch_build_info"));
    let mut both = of("hardware");
    both.extend(of("exporter"));
    assert!(got.is_subset(&both), "{got:?}");

    // The trading collector: the objectives are there, the ingest's counters are not.
    let (_, _, trading) = scrape("/metrics?collect[]=trading").await;
    let got = family_names(&trading);
    assert!(
        got.contains("m4watch_trading_latency_objective_seconds"),
        "{got:?}"
    );
    assert!(got.is_subset(&of("trading")), "{got:?}");
    assert!(!trading.contains("m4watch_statsd_"));

    // exclude[]: everything but; collect[] of every collector: everything.
    let (_, _, rest) = scrape("/metrics?exclude[]=trading").await;
    let rest = family_names(&rest);
    assert!(rest.is_disjoint(&of("trading")));
    assert!(rest.contains("m4watch_statsd_packets_total") && rest.contains("m4watch_build_info"));
    let every: String = m4watch::catalog::collectors()
        .iter()
        .map(|c| format!("collect[]={c}&"))
        .collect();
    let (_, _, all) = scrape(Box::leak(format!("/metrics?{every}").into_boxed_str())).await;
    assert_eq!(family_names(&all), family_names(&full));

    // node_exporter answers an unknown collector with 400 and its name: so does m4watch,
    // naming the ones it has.
    for (q, says) in [
        ("/metrics?collect[]=gpu", "unknown collector \"gpu\""),
        ("/metrics?collect[]=", "unknown collector \"\""),
        (
            "/metrics?collect[]=hardware&collect[]=Trading",
            "\"Trading\"",
        ),
        (
            "/metrics?exclude[]=nope",
            "exclude[]: unknown collector \"nope\"",
        ),
        (
            "/api/v1/monitoring/metrics?collect[]=gpu",
            "unknown collector",
        ),
        (
            "/metrics?collect[]=trading&exclude[]=host",
            "cannot be combined",
        ),
    ] {
        let (status, _, body) = scrape(q).await;
        assert_eq!(status, 400, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{q}: {detail}");
        if !says.contains("combined") {
            assert!(detail.contains("hardware, host"), "{q}: {detail}");
        }
    }
    // Other keys are ignored, as node_exporter ignores them.
    let (status, _, _) = scrape("/metrics?format=text").await;
    assert_eq!(status, 200);
    d.stop().await;
}
