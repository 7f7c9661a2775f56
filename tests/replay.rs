//! Black-box tests of the replay source: the daemon plays the shipped synthetic M4 Max
//! recording and a macmon recording, and /metrics carries every M4 Max series.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, config, series};

fn replay_config(file: &str, extra: &str) -> m4watch::config::Config {
    config(&format!(
        "hardware:\n  source: replay\n  replay_file: {}/{file}\n  interval: 20ms\n  timeout: 20ms\n{extra}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// The value of the one series `line_prefix` (name and labels) starts.
fn value(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn shipped_recording_publishes_every_m4_max_series_and_its_hard_states() {
    let d = Daemon::start(replay_config("demo/m4max-synthetic.jsonl", "")).await;
    let first = d
        .scrape_until(5, |t| {
            !series(t, "m4watch_cpu_utilization_ratio").is_empty()
        })
        .await;
    assert!(first.contains(
        "m4watch_chip_info{chip=\"Apple M4 Max\",performance_cores=\"12\",efficiency_cores=\"4\",gpu_cores=\"40\"} 1\n"
    ), "{first}");
    assert!(first.contains("m4watch_cpu_cores{type=\"performance\"} 12\n"));
    assert!(first.contains("m4watch_cpu_cores{type=\"efficiency\"} 4\n"));
    // Efficiency cores first, as Apple Silicon numbers them; two P clusters.
    for cpu in 0..4 {
        assert!(first.contains(&format!(
            "m4watch_cpu_info{{cpu=\"{cpu}\",type=\"efficiency\",cluster=\"E0\"}} 1\n"
        )));
    }
    assert!(first.contains("m4watch_cpu_info{cpu=\"4\",type=\"performance\",cluster=\"P0\"} 1\n"));
    assert!(first.contains("m4watch_cpu_info{cpu=\"15\",type=\"performance\",cluster=\"P1\"} 1\n"));
    for family in [
        "m4watch_cpu_seconds_total",
        "m4watch_cpu_utilization_ratio",
        "m4watch_cpu_cluster_utilization_ratio",
        "m4watch_cpu_frequency_hertz",
        "m4watch_cpu_cluster_frequency_hertz",
        "m4watch_cpu_active_ratio",
        "m4watch_gpu_utilization_ratio",
        "m4watch_gpu_memory_used_bytes",
        "m4watch_gpu_frequency_hertz",
        "m4watch_ane_utilization_estimate_ratio",
        "m4watch_power_watts",
        "m4watch_system_power_watts",
        "m4watch_energy_joules_total",
        "m4watch_system_energy_joules_total",
        "m4watch_fan_speed_rpm",
        "m4watch_temperature_celsius",
        "m4watch_thermal_pressure",
        "m4watch_memory_total_bytes",
        "m4watch_memory_partition_bytes",
        "m4watch_memory_used_bytes",
        "m4watch_memory_available_bytes",
        "m4watch_memory_swap_total_bytes",
        "m4watch_memory_swap_used_bytes",
        "m4watch_memory_pressure_level",
    ] {
        assert!(
            !series(&first, family).is_empty(),
            "{family} missing:\n{first}"
        );
    }
    // The rails do not overlap; the whole machine is apart from them.
    assert!(value(&first, "m4watch_power_watts{rail=\"system\"}").is_none());
    for rail in ["cpu", "gpu", "ane", "dram"] {
        assert!(
            value(&first, &format!("m4watch_power_watts{{rail=\"{rail}\"}}")).is_some(),
            "rail {rail}"
        );
        assert!(
            value(
                &first,
                &format!("m4watch_energy_joules_total{{rail=\"{rail}\"}}")
            )
            .is_some()
        );
    }
    assert_eq!(series(&first, "m4watch_cpu_frequency_hertz").len(), 16);
    assert_eq!(
        series(&first, "m4watch_cpu_cluster_frequency_hertz").len(),
        3
    );
    assert!(
        first.contains("m4watch_cpu_cluster_frequency_hertz{cluster=\"P1\",type=\"performance\"} ")
    );
    assert_eq!(
        series(&first, "m4watch_cpu_utilization_ratio")
            .iter()
            .filter(|l| l.contains("type=\"efficiency\""))
            .count(),
        4
    );

    // The loop's hard part: P-cores saturated, thermal pressure serious, then critical,
    // the Neural Engine estimate over 85%, memory pressure warn.
    let hot = d
        .scrape_until(10, |t| {
            t.contains("m4watch_thermal_pressure{state=\"serious\"} 1\n")
                && value(
                    t,
                    "m4watch_cpu_cluster_utilization_ratio{type=\"performance\"}",
                )
                .is_some_and(|v| v > 0.98)
        })
        .await;
    assert!(hot.contains("m4watch_thermal_pressure{state=\"nominal\"} 0\n"));
    assert!(value(&hot, "m4watch_gpu_utilization_ratio").unwrap() > 0.95);
    let critical = d
        .scrape_until(10, |t| {
            t.contains("m4watch_thermal_pressure{state=\"critical\"} 1\n")
        })
        .await;
    // Critical pressure caps the P-cores' frequency in the recording.
    assert!(
        value(
            &critical,
            "m4watch_cpu_cluster_frequency_hertz{cluster=\"P0\""
        )
        .unwrap()
            <= 3.6e9,
        "{critical}"
    );
    d.scrape_until(10, |t| {
        value(t, "m4watch_ane_utilization_estimate_ratio").is_some_and(|v| v > 0.85)
            && t.contains("m4watch_memory_pressure_level{level=\"warn\"} 1\n")
    })
    .await;
    // And it loops back to calm.
    d.scrape_until(15, |t| {
        t.contains("m4watch_thermal_pressure{state=\"nominal\"} 1\n")
            && value(
                t,
                "m4watch_cpu_cluster_utilization_ratio{type=\"performance\"}",
            )
            .is_some_and(|v| v < 0.6)
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn replayed_families_are_catalogued_and_pass_promtool() {
    let d = Daemon::start(replay_config("demo/m4max-synthetic.jsonl", "")).await;
    let text = d
        .scrape_until(5, |t| {
            !series(t, "m4watch_cpu_utilization_ratio").is_empty()
        })
        .await;
    for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
        let (name, help) = line["# HELP ".len()..].split_once(' ').unwrap();
        let def = m4watch::catalog::lookup(name)
            .unwrap_or_else(|| panic!("{name} is exported but not in the catalog"));
        assert_eq!(def.help, help, "{name}");
    }
    let report = common::promtool_check_metrics(&text);
    assert!(report.is_empty(), "{report}");
    d.stop().await;
}

#[tokio::test]
async fn a_macmon_recording_publishes_what_macmon_measures() {
    let d = Daemon::start(replay_config("testdata/replay/macmon-m4max.jsonl", "")).await;
    let text = d
        .scrape_until(5, |t| {
            !series(t, "m4watch_cpu_utilization_ratio").is_empty()
        })
        .await;
    assert!(text.contains(
        "m4watch_chip_info{chip=\"Apple M4 Max\",performance_cores=\"12\",efficiency_cores=\"4\",gpu_cores=\"40\"} 1\n"
    ), "{text}");
    assert!(text.contains("m4watch_cpu_info{cpu=\"3\",type=\"efficiency\",cluster=\"E\"} 1\n"));
    let p = value(
        &text,
        "m4watch_cpu_cluster_utilization_ratio{type=\"performance\"}",
    )
    .unwrap();
    assert!((p - 0.97).abs() < 0.011, "{p}");
    for (line, want) in [
        ("m4watch_power_watts{rail=\"cpu\"}", 48.25),
        ("m4watch_power_watts{rail=\"gpu\"}", 20.5),
        ("m4watch_power_watts{rail=\"ane\"}", 4.5),
        ("m4watch_power_watts{rail=\"dram\"}", 3.25),
        ("m4watch_system_power_watts", 95.0),
        ("m4watch_ane_utilization_estimate_ratio", 0.75),
        ("m4watch_gpu_utilization_ratio", 0.62),
        ("m4watch_gpu_frequency_hertz", 1.3e9),
        (
            "m4watch_cpu_frequency_hertz{cpu=\"4\",type=\"performance\"}",
            3.8e9,
        ),
        (
            "m4watch_cpu_active_ratio{cpu=\"15\",type=\"performance\"}",
            0.97,
        ),
        ("m4watch_fan_speed_rpm{fan=\"fan1\"}", 2500.0),
        ("m4watch_temperature_celsius{sensor=\"gpu\"}", 55.0),
        ("m4watch_memory_total_bytes", 137438953472.0),
    ] {
        assert_eq!(value(&text, line), Some(want), "{line}\n{text}");
    }
    // macmon records no thermal pressure and no GPU memory: absent, not zero.
    assert!(series(&text, "m4watch_thermal_pressure").is_empty());
    assert!(series(&text, "m4watch_gpu_memory_used_bytes").is_empty());
    d.stop().await;
}

/// The exposition text of the hardware collector replaying `file` (under
/// testdata/replay/), after `reads` collections: the path the daemon takes, minus HTTP.
fn replayed(file: &str, reads: usize) -> String {
    replay_reads(file, "  replay_loop: false\n", reads)
}

/// As [`replayed`], with `extra` hardware config.
fn replay_reads(file: &str, extra: &str, reads: usize) -> String {
    use m4watch::internals::collect::BlockingCollector;
    let cfg = replay_config(&format!("testdata/replay/{file}"), extra);
    let mut c =
        m4watch::internals::collect::hardware::HardwareCollector::from_config(&cfg.hardware)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut families = Vec::new();
    for _ in 0..reads {
        families = c.collect().unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    m4watch::internals::store::encode(&families)
}

/// `(performance, efficiency)` CPUs in `m4watch_cpu_info`.
fn cpu_types(text: &str) -> (usize, usize) {
    let info = series(text, "m4watch_cpu_info");
    let n = |t: &str| {
        info.iter()
            .filter(|l| l.contains(&format!("type=\"{t}\"")))
            .count()
    };
    (n("performance"), n("efficiency"))
}

fn util(text: &str, cpu: u32) -> Option<f64> {
    series(text, "m4watch_cpu_utilization_ratio")
        .into_iter()
        .find(|l| l.contains(&format!("{{cpu=\"{cpu}\",")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn close(a: Option<f64>, b: f64, tol: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= tol)
}

#[test]
fn a_macmon_0_9_recording_replays_per_core() {
    // Hand-written in macmon 0.9's shape (ecpu_cores / pcpu_cores, no cpu_tiers), M4 Max.
    let text = replayed("macmon-0.9-m4max.jsonl", 2);
    assert_eq!(cpu_types(&text), (12, 4), "{text}");
    for cpu in 0..4 {
        assert!(text.contains(&format!(
            "m4watch_cpu_info{{cpu=\"{cpu}\",type=\"efficiency\",cluster=\"E\"}} 1\n"
        )));
    }
    // Each core's utilisation is its recorded active residency: E 0.1..0.4, then P
    // 0.05, 0.10, … 0.50 and two idle cores.
    let e = [0.10, 0.20, 0.30, 0.40];
    for (cpu, want) in e.iter().enumerate() {
        assert!(
            close(util(&text, cpu as u32), *want, 1e-9),
            "cpu{cpu}\n{text}"
        );
    }
    for k in 0..12u32 {
        let want = if k < 10 { 0.05 * f64::from(k + 1) } else { 0.0 };
        assert!(
            close(util(&text, 4 + k), want, 1e-9),
            "cpu{}\n{text}",
            4 + k
        );
        let active = value(
            &text,
            &format!(
                "m4watch_cpu_active_ratio{{cpu=\"{}\",type=\"performance\"}}",
                4 + k
            ),
        );
        assert!(close(active, want, 1e-9), "cpu{}", 4 + k);
    }
    // The replayed P cluster is the whole P tier: its frequency is macmon's own figure
    // for the tier (`pcpu_freq_mhz`, from the cluster residency it reads), not one
    // derived from the cores listed (issue 26). No DVFS table without --soc-info, so an
    // idle core's frequency is unknown: absent, never 0.
    let p = value(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"P\",type=\"performance\"}",
    );
    assert!(close(p, 3573e6, 1.0), "{p:?}\n{text}");
    assert!(value(&text, "m4watch_cpu_frequency_hertz{cpu=\"15\"").is_none());
    assert!(value(&text, "m4watch_cpu_frequency_hertz{cpu=\"13\"").is_some());
    // An idle GPU without a table and a temperature 0.9 writes as 0.0: absent.
    assert!(
        series(&text, "m4watch_gpu_frequency_hertz").is_empty(),
        "{text}"
    );
    assert!(value(&text, "m4watch_temperature_celsius{sensor=\"gpu\"}").is_none());
    assert_eq!(
        value(&text, "m4watch_temperature_celsius{sensor=\"cpu\"}"),
        Some(52.5)
    );
}

#[test]
fn a_macmon_0_8_m1_recording_floors_idle_clocks_at_the_lowest_step() {
    let text = replayed("macmon-0.8-m1.jsonl", 2);
    assert_eq!(cpu_types(&text), (4, 4), "{text}");
    assert!(text.contains(
        "m4watch_chip_info{chip=\"Apple M1\",performance_cores=\"4\",efficiency_cores=\"4\",gpu_cores=\"8\"} 1\n"
    ), "{text}");
    // The E cluster is idle: its lowest step (600 MHz), not 0 Hz.
    assert_eq!(
        value(
            &text,
            "m4watch_cpu_cluster_frequency_hertz{cluster=\"E\",type=\"efficiency\"}"
        ),
        Some(600e6),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "m4watch_cpu_frequency_hertz{cpu=\"7\",type=\"performance\"}"
        ),
        Some(600e6)
    );
    let p = value(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"P\",type=\"performance\"}",
    );
    assert!(
        close(p, (3204.0 * 0.5 + 1500.0 * 0.25) / 0.75 * 1e6, 1.0),
        "{p:?}"
    );
    assert!(close(util(&text, 4), 0.5, 1e-9) && close(util(&text, 5), 0.25, 1e-9));
    // The idle GPU: the lowest step of its table (entry 0 is the OFF state).
    assert_eq!(value(&text, "m4watch_gpu_frequency_hertz"), Some(396e6));
    // 0.8 writes 0.0 for "no temperature sensor".
    assert!(
        series(&text, "m4watch_temperature_celsius").is_empty(),
        "{text}"
    );
}

#[test]
fn an_m5_max_style_recording_has_two_performance_tiers_and_no_efficiency_cores() {
    let text = replayed("macmon-0.10-m5max.jsonl", 2);
    assert_eq!(cpu_types(&text), (18, 0), "{text}");
    assert!(text.contains("performance_cores=\"18\",efficiency_cores=\"0\""));
    assert!(value(&text, "m4watch_cpu_cores{type=\"efficiency\"}").is_none());
    // The S tier's residency lands on the S CPUs (12-17), the P tier's on 0-11.
    for cpu in 0..12 {
        assert!(close(util(&text, cpu), 0.2, 1e-9), "cpu{cpu}\n{text}");
    }
    for cpu in 12..18 {
        assert!(close(util(&text, cpu), 0.9, 1e-9), "cpu{cpu}\n{text}");
        assert!(text.contains(&format!(
            "m4watch_cpu_info{{cpu=\"{cpu}\",type=\"performance\",cluster=\"S\"}} 1\n"
        )));
    }
    assert_eq!(
        value(
            &text,
            "m4watch_cpu_cluster_frequency_hertz{cluster=\"S\",type=\"performance\"}"
        ),
        Some(4.6e9)
    );
}

#[test]
fn an_ultra_recording_covers_both_dies() {
    let text = replayed("macmon-0.10-m2ultra.jsonl", 2);
    assert_eq!(cpu_types(&text), (16, 8), "{text}");
    // macmon lists die 0 then die 1; replayed CPUs are numbered tier by tier.
    assert!(close(util(&text, 0), 0.3, 1e-9));
    assert!(close(util(&text, 4), 0.0, 1e-9), "die 1's first E core");
    assert_eq!(
        value(
            &text,
            "m4watch_cpu_frequency_hertz{cpu=\"4\",type=\"efficiency\"}"
        ),
        Some(912e6),
        "an idle core reads the lowest step"
    );
    // The replayed P cluster is the whole P tier of both dies: macmon's own figure for
    // the tier (`cpu_tiers[].freq_mhz`), as the recording states it (issue 26).
    let p = value(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"P\",type=\"performance\"}",
    );
    assert!(close(p, 1752e6, 1.0), "{p:?}");
    assert!(close(util(&text, 23), 0.0, 1e-9) && close(util(&text, 8), 0.6, 1e-9));
}

#[test]
fn an_intel_mac_has_no_apple_only_series() {
    let text = replayed("dump-intel-macbookpro.jsonl", 2);
    assert_eq!(cpu_types(&text), (16, 0), "{text}");
    // macmon's 0 W and 0 MHz on a machine without IOReport counters: absent, never 0.
    for family in [
        "m4watch_power_watts",
        "m4watch_energy_joules_total",
        "m4watch_ane_utilization_estimate_ratio",
        "m4watch_gpu_frequency_hertz",
        "m4watch_cpu_frequency_hertz",
        "m4watch_cpu_cluster_frequency_hertz",
        "m4watch_cpu_active_ratio",
    ] {
        assert!(series(&text, family).is_empty(), "{family}:\n{text}");
    }
    // What the Mac does measure is there: the discrete GPU's utilisation, temperatures,
    // fans, memory, ticks.
    assert_eq!(value(&text, "m4watch_gpu_utilization_ratio"), Some(0.71));
    assert_eq!(
        value(&text, "m4watch_temperature_celsius{sensor=\"cpu\"}"),
        Some(64.0)
    );
    assert!(close(util(&text, 3), 0.23, 1e-9), "{text}");
    // Available memory, Activity Monitor's way: free + file-backed + purgeable pages
    // (inactive anonymous pages are not available without paging).
    assert_eq!(
        value(&text, "m4watch_memory_available_bytes"),
        Some((1_500_000u64 + 1_800_000 + 50_000) as f64 * 4096.0)
    );
}

#[tokio::test]
async fn a_replay_that_does_not_loop_stops_at_the_end() {
    let d = Daemon::start(replay_config(
        "testdata/replay/macmon-m4max.jsonl",
        "  replay_loop: false\n",
    ))
    .await;
    let text = d
        .scrape_until(5, |t| {
            t.contains("m4watch_collector_success{collector=\"hardware\"} 0\n")
        })
        .await;
    assert!(series(&text, "m4watch_chip_info").is_empty());
    d.stop().await;
}

/// A plain HTTP/1.0 GET: the body, if the server answered 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

#[test]
fn demo_runs_the_daemon_on_the_synthetic_recording() {
    run_demo(&[], "demo-m4max-synthetic.jsonl", 12);
}

/// Issue 26: the binned 14-core M4 Max (4 E + 5 P + 5 P, as a real Mac16,6 lists its
/// clusters) has a demo of its own.
#[test]
fn demo_runs_the_14_core_part_on_request_and_refuses_other_counts() {
    run_demo(&["--cores", "14"], "demo-m4max-14-synthetic.jsonl", 10);
    let out = Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["demo", "--cores", "12"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[possible values: 14, 16]"), "{err}");
}

/// Runs `m4watch demo` with `extra` arguments until its hardware and trading series
/// show, and checks it replays `file` with `p_cores` performance cores.
fn run_demo(extra: &[&str], file: &str, p_cores: u32) {
    let dir = tempfile::tempdir().unwrap();
    // The default StatsD port may be taken by a test running beside this one: give
    // the demo a free one (its load generator follows the config).
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!("listen: 127.0.0.1:0\ndata_dir: ./data\ntrading:\n  statsd_listen: {statsd}\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["demo", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(extra)
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr on a thread that keeps draining it, so the daemon never writes into a
    // closed pipe.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("m4watch demo:") {
                let _ = tx.send(("banner", line));
            } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(a) = v["fields"]["addr"].as_str() {
                    let _ = tx.send(("addr", a.to_string()));
                }
            }
        }
    });
    let mut banner = String::new();
    let mut addr = None;
    while let Ok((kind, text)) = rx.recv_timeout(Duration::from_secs(10)) {
        if kind == "banner" {
            banner = text;
        } else {
            addr = Some(text);
            break;
        }
    }
    let addr = addr.expect("the demo logs the address it serves on");
    assert!(banner.contains("SYNTHETIC M4 Max"), "{banner}");
    assert!(
        banner.contains(&format!("({p_cores} P + 4 E cores)")),
        "{banner}"
    );
    assert!(dir.path().join(file).is_file());
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        if let Some(t) = http_get(&addr, "/metrics") {
            if t.contains("m4watch_chip_info") {
                break t;
            }
        }
        assert!(Instant::now() < deadline, "no M4 Max series from the demo");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        text.contains(&format!(
            "performance_cores=\"{p_cores}\",efficiency_cores=\"4\""
        )),
        "{}",
        common::series(&text, "m4watch_chip_info").join("\n")
    );
    // The demo's StatsD load reaches the trading listener and becomes quantiles.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(&addr, "/metrics").is_some_and(|t| {
        t.contains("m4watch_trading_latency_quantile_seconds{operation=\"order_execution\"")
    }) {
        assert!(
            Instant::now() < deadline,
            "no trading series from the demo's load"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[cfg(not(target_os = "macos"))]
#[test]
fn macos_only_commands_say_so_elsewhere() {
    for (cmd, want) in [
        ("dump-raw", "dump-raw reads the Mac's hardware"),
        (
            "install-launchd",
            "install-launchd manages a macOS launchd agent",
        ),
        (
            "uninstall-launchd",
            "uninstall-launchd manages a macOS launchd agent",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_m4watch"))
            .arg(cmd)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{cmd}: {err}");
    }
}

/// A real `macmon pipe` line (macmon 0.8.0, an M1 Max, published by a project unrelated
/// to m4watch; its per-core lists trimmed by their author to 2 E and 1 P core): every
/// figure m4watch takes from it as it stands agrees with the capture. Each core's
/// identity (`die_id`, `core_id`) is in the line and not read; the core's figures are.
/// What m4watch derives differently from such a line (the cluster figures beside
/// macmon's own `pcpu_active_ratio`, utilisation rounded to the tick) is issue 26's.
#[test]
fn a_real_macmon_0_8_line_from_an_m1_max_replays_as_captured() {
    let text = replayed("macmon-0.8-m1max-real.jsonl", 1);
    let near = |line: &str, want: f64| {
        let got = value(&text, line);
        assert!(
            close(got, want, want.abs() * 1e-6),
            "{line}: {got:?}, want {want}\n{text}"
        );
    };
    assert_eq!(cpu_types(&text), (1, 2), "{text}");
    // ecpu_cores[0..2], pcpu_cores[0]: active_ratio and freq_mhz.
    near(
        "m4watch_cpu_active_ratio{cpu=\"0\",type=\"efficiency\"}",
        0.23338988423347473,
    );
    near(
        "m4watch_cpu_active_ratio{cpu=\"1\",type=\"efficiency\"}",
        0.20647208392620087,
    );
    near(
        "m4watch_cpu_active_ratio{cpu=\"2\",type=\"performance\"}",
        0.5556453466415405,
    );
    near(
        "m4watch_cpu_frequency_hertz{cpu=\"0\",type=\"efficiency\"}",
        1399e6,
    );
    near(
        "m4watch_cpu_frequency_hertz{cpu=\"1\",type=\"efficiency\"}",
        1420e6,
    );
    near(
        "m4watch_cpu_frequency_hertz{cpu=\"2\",type=\"performance\"}",
        1805e6,
    );
    // gpu_freq_mhz, gpu_active_ratio.
    near("m4watch_gpu_frequency_hertz", 388e6);
    near("m4watch_gpu_utilization_ratio", 0.6921621561050415);
    // The rails: cpu_power, gpu_power, ram_power, sys_power, ane_power.
    near("m4watch_power_watts{rail=\"cpu\"}", 1.3708608150482178);
    near("m4watch_power_watts{rail=\"gpu\"}", 1.1298161745071411);
    near("m4watch_power_watts{rail=\"dram\"}", 1.7497817277908325);
    near("m4watch_system_power_watts", 18.952476501464844);
    assert_eq!(value(&text, "m4watch_power_watts{rail=\"ane\"}"), Some(0.0));
    // temp, fans, memory.
    near(
        "m4watch_temperature_celsius{sensor=\"cpu\"}",
        55.03165054321289,
    );
    near(
        "m4watch_temperature_celsius{sensor=\"gpu\"}",
        52.1805419921875,
    );
    near("m4watch_fan_speed_rpm{fan=\"fan0\"}", 2311.0);
    near("m4watch_fan_speed_rpm{fan=\"fan1\"}", 2514.0);
    near("m4watch_memory_total_bytes", 68719476736.0);
    near("m4watch_memory_used_bytes", 28706603008.0);
    near("m4watch_memory_swap_total_bytes", 7516192768.0);
    near("m4watch_memory_swap_used_bytes", 5701894144.0);
}

/// The exposition text after `reads` collections of a *looping* replay of `file` with
/// `extra` hardware config (a one-line capture needs two reads for a delta).
fn replayed_looping(file: &str, extra: &str, reads: usize) -> String {
    replay_reads(file, &format!("  replay_loop: true\n{extra}"), reads)
}

fn assert_near(text: &str, line: &str, want: f64) {
    let got = value(text, line);
    assert!(
        close(got, want, want.abs() * 1e-6),
        "{line}: {got:?}, want {want}\n{text}"
    );
}

/// Issue 26, the real M1 Max line (macmon 0.8.0, per-core lists trimmed by its author to
/// 2 E cores and 1 P core): each CPU's utilisation is its core's residency to the digit,
/// not rounded to a tick of a one-second window; the cluster figures are the ones macmon
/// states for its whole tiers, not means of the three cores the author kept; and without
/// timestamps between lines or a stated interval no energy is counted.
#[test]
fn a_real_m1_max_line_keeps_residency_exact_and_macmon_cluster_figures() {
    let text = replayed_looping("macmon-0.8-m1max-real.jsonl", "", 2);
    // ecpu_cores[0].active_ratio: 0.2334, where ticks made it 0.23.
    assert_near(
        &text,
        "m4watch_cpu_utilization_ratio{cpu=\"0\",type=\"efficiency\"}",
        0.23338988423347473,
    );
    assert_near(
        &text,
        "m4watch_cpu_utilization_ratio{cpu=\"2\",type=\"performance\"}",
        0.5556453466415405,
    );
    // pcpu_active_ratio / ecpu_active_ratio, not the one listed P core's 0.56.
    assert_near(
        &text,
        "m4watch_cpu_cluster_utilization_ratio{type=\"performance\"}",
        0.18293659389019012,
    );
    assert_near(
        &text,
        "m4watch_cpu_cluster_utilization_ratio{type=\"efficiency\"}",
        0.2199309766292572,
    );
    // pcpu_freq_mhz / ecpu_freq_mhz, not the listed cores' 1805 and 1409.
    assert_near(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"P\",type=\"performance\"}",
        1829e6,
    );
    assert_near(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"E\",type=\"efficiency\"}",
        1408e6,
    );
    // One timestamp and no stated interval: the window is unknown, so macmon's watts
    // are published but no energy is integrated over a guessed second.
    assert_near(
        &text,
        "m4watch_power_watts{rail=\"cpu\"}",
        1.3708608150482178,
    );
    assert!(
        series(&text, "m4watch_energy_joules_total").is_empty(),
        "{text}"
    );
}

/// Issue 26, the real 0.7-era line (beszel#1796, `macmon pipe -i 1000`, M1-class, 16 GB):
/// `[MHz, ratio]` cluster pairs and no per-core lists. Each pair is a cluster frequency;
/// its ratio is frequency-scaled usage, not residency, so no utilisation; no core counts,
/// so none published; `ram_power: 0.0` is no DRAM sensor; the window is the stated 1 s.
#[test]
fn a_real_macmon_0_7_line_publishes_its_cluster_frequencies() {
    let text = replayed_looping("macmon-0.7-beszel1796-real.jsonl", "", 2);
    assert_near(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"E\",type=\"efficiency\"}",
        1172e6,
    );
    assert_near(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"P\",type=\"performance\"}",
        2098e6,
    );
    assert!(
        series(&text, "m4watch_cpu_cluster_utilization_ratio").is_empty(),
        "a scaled ratio is not utilisation:\n{text}"
    );
    assert!(series(&text, "m4watch_cpu_cores").is_empty(), "{text}");
    assert!(
        value(&text, "m4watch_power_watts{rail=\"dram\"}").is_none(),
        "ram_power 0.0 is no sensor:\n{text}"
    );
    assert!(value(&text, "m4watch_energy_joules_total{rail=\"dram\"}").is_none());
    assert_near(
        &text,
        "m4watch_power_watts{rail=\"cpu\"}",
        0.25233203172683716,
    );
    assert_near(&text, "m4watch_system_power_watts", 9.391488075256348);
    // Two reads of a 1000 ms window: one window's energy since the first read.
    assert_near(
        &text,
        "m4watch_energy_joules_total{rail=\"cpu\"}",
        0.25233203172683716,
    );
    assert_near(&text, "m4watch_gpu_frequency_hertz", 198e6);
    assert!(series(&text, "m4watch_gpu_utilization_ratio").is_empty());
    assert_near(
        &text,
        "m4watch_temperature_celsius{sensor=\"cpu\"}",
        44.509185791015625,
    );
    assert!(value(&text, "m4watch_temperature_celsius{sensor=\"gpu\"}").is_none());
    assert_near(&text, "m4watch_memory_total_bytes", 17179869184.0);
    assert_near(&text, "m4watch_memory_used_bytes", 10585292800.0);
    assert_near(&text, "m4watch_memory_swap_used_bytes", 1027801088.0);
}

/// Issue 26, the real M4 MacBook Air capture (macmon#51, `macmon pipe --samples 1
/// --soc-info | jq`, pretty-printed, closed by hand where the stored copy is cut): the
/// soc block says 0 cores, which is unknown, never 0; the pasted prompt names no
/// interval, so the window is macmon's default 1000 ms.
#[test]
fn a_real_m4_soc_block_of_zero_cores_leaves_the_counts_unknown() {
    let text = replayed_looping("macmon-m4-air-issue51-closed.json", "", 2);
    assert!(
        text.contains(
            "m4watch_chip_info{chip=\"Apple M4\",performance_cores=\"\",efficiency_cores=\"\",gpu_cores=\"\"} 1\n"
        ),
        "{text}"
    );
    assert!(series(&text, "m4watch_cpu_cores").is_empty(), "{text}");
    assert_near(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"E\",type=\"efficiency\"}",
        1848e6,
    );
    assert_near(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"P\",type=\"performance\"}",
        3848e6,
    );
    // A DRAM rail that reads (0.47 W) is published.
    assert_near(
        &text,
        "m4watch_power_watts{rail=\"dram\"}",
        0.46787330508232117,
    );
    assert_near(
        &text,
        "m4watch_energy_joules_total{rail=\"cpu\"}",
        7.494035720825195,
    );
    assert_near(&text, "m4watch_memory_used_bytes", 13823524864.0);
}

/// Issue 26: counts supplied (the configured topology, here the reporter's 4 P + 6 E)
/// build the real P/E topology for a recording that counts no CPUs.
#[test]
fn supplied_core_counts_build_the_topology_of_a_pairs_recording() {
    let text = replayed_looping(
        "macmon-m4-air-issue51-closed.json",
        "  topology:\n    efficiency: \"0-5\"\n    performance: \"6-9\"\n",
        2,
    );
    assert!(
        text.contains(
            "m4watch_chip_info{chip=\"Apple M4\",performance_cores=\"4\",efficiency_cores=\"6\",gpu_cores=\"\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("m4watch_cpu_cores{type=\"performance\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("m4watch_cpu_cores{type=\"efficiency\"} 6\n"),
        "{text}"
    );
    assert_eq!(cpu_types(&text), (4, 6), "{text}");
    assert_near(
        &text,
        "m4watch_cpu_cluster_frequency_hertz{cluster=\"E\",type=\"efficiency\"}",
        1848e6,
    );
}

/// The stored copy of the M4 Air capture ends inside the soc block: refused, and the
/// error names the file and says where the JSON ends.
#[test]
fn a_cut_capture_is_refused_with_where_it_ends() {
    let cfg = replay_config(
        "testdata/replay/macmon-m4-air-issue51-real-truncated.txt",
        "  replay_loop: false\n",
    );
    let err = match m4watch::internals::collect::hardware::HardwareCollector::from_config(
        &cfg.hardware,
    ) {
        Ok(_) => panic!("a cut capture replays"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("macmon-m4-air-issue51-real-truncated.txt") && err.contains("EOF"),
        "{err}"
    );
}
