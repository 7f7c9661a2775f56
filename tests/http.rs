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
    assert!(
        user.iter()
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
    assert!(text.contains("m4watch_energy_joules_total{rail=\"psys\"} 0\n"));
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
