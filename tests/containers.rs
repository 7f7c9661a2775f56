//! The container collector against a real Docker Engine (Debian `docker.io`).
//!
//! The scenarios run on the Engine that `scripts/test.sh` starts; every container a test
//! starts carries a per-run name prefix and label, and a guard removes them all when the
//! test ends, failed or not. The fault test starts a private `dockerd` (own socket, data
//! root and network namespace) so that stopping it disturbs nothing else.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{IDLE, IMAGE, Run, docker, ensure_image, shared_engine, try_docker};
use common::{Daemon, config, require_tool, series};

/// The value of the series of `family` for container `name` whose labels include
/// `extra` (e.g. `status="healthy"`), if exported.
fn value(text: &str, family: &str, name: &str, extra: &str) -> Option<f64> {
    let needle = format!("name=\"{name}\"");
    series(text, family)
        .into_iter()
        .find(|l| l.contains(&needle) && l.contains(extra))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Scrapes until `unmet` finds nothing missing; on timeout fails with what was still
/// missing and the last scrape.
async fn wait_for(d: &Daemon, secs: u64, unmet: impl Fn(&str) -> Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = d.scrape().await;
        let missing = unmet(&text);
        if missing.is_empty() {
            return text;
        }
        if Instant::now() > deadline {
            let health = d.get("/api/v1/monitoring/health").await.text().await;
            panic!(
                "after {secs} s still not true:\n  {}\ncollectors: {health:?}\nlast scrape:\n{text}",
                missing.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One expectation: `family{name=..,extra}` equals `want` (`None`: absent).
fn expect(
    text: &str,
    out: &mut Vec<String>,
    family: &str,
    name: &str,
    extra: &str,
    want: Option<f64>,
) {
    let got = value(text, family, name, extra);
    if got != want {
        out.push(format!(
            "{family}{{name={name:?} {extra}}}: want {want:?}, got {got:?}"
        ));
    }
}

fn collector_success(text: &str) -> Option<f64> {
    series(text, "m4watch_collector_success")
        .into_iter()
        .find(|l| l.contains("collector=\"containers\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_containers_show_health_restarts_ooms_limits_and_exits() {
    let host = shared_engine();
    let run = Run::new(host, "scen");
    let d = Daemon::start(config(&format!(
        "containers:\n  interval: 500ms\n  timeout: 500ms\n  \
         include:\n    names: [\"{p}*\"]\n  exclude:\n    labels: [\"m4watch.test.hidden=yes\"]\n",
        p = run.prefix
    )))
    .await;

    let healthy = run.start(
        "healthy",
        &[
            "--label",
            "m4watch.tier=engine",
            "--label",
            "com.docker.compose.project=nautilus",
            "--label",
            "com.docker.compose.service=risk-engine",
            "--health-cmd",
            "true",
            "--health-interval",
            "200ms",
        ],
        IDLE,
    );
    let sick = run.start(
        "sick",
        &[
            "--network",
            "none",
            "--health-cmd",
            "false",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
        IDLE,
    );
    let crash = run.start(
        "crash",
        &["--network", "none", "--restart", "on-failure:2"],
        &["sh", "-c", "exit 1"],
    );
    // Killed by its limit twice: once, restarted by the policy, and again. Inspect only
    // ever shows the last kill; the events stream sees both.
    let oom = run.start(
        "oom",
        &[
            "--network",
            "none",
            "--memory",
            "8m",
            "--memory-swap",
            "8m",
            "--restart",
            "on-failure:1",
        ],
        &["sh", "-c", "tail /dev/zero"],
    );
    let limited = run.start(
        "limited",
        &[
            "--network",
            "none",
            "--memory",
            "64m",
            "--cpuset-cpus",
            "0",
            "--cpus",
            "0.5",
        ],
        IDLE,
    );
    // Plain sleep as PID 1 ignores SIGTERM, so `stop -t 0` kills it: exit 137.
    let stopped = run.start("stopped", &["--network", "none"], &["sleep", "600"]);
    docker(host, &["stop", "-t", "0", &stopped]);
    let bounce = run.start("bounce", &["--network", "none"], IDLE);
    let hidden = run.start(
        "hidden",
        &["--network", "none", "--label", "m4watch.test.hidden=yes"],
        IDLE,
    );

    // Manual restarts leave Docker's RestartCount at 0: only events can count them.
    wait_for(&d, 30, |t| {
        let mut m = vec![];
        expect(t, &mut m, "m4watch_container_up", &bounce, "", Some(1.0));
        m
    })
    .await;
    docker(host, &["restart", "-t", "5", &bounce]);
    docker(host, &["restart", "-t", "5", &bounce]);

    let text = wait_for(&d, 30, |t| {
        let mut m = vec![];
        let up = "m4watch_container_up";
        // Healthy, labelled, on the default bridge network.
        expect(t, &mut m, up, &healthy, "", Some(1.0));
        expect(
            t,
            &mut m,
            "m4watch_container_health_status",
            &healthy,
            "status=\"healthy\"",
            Some(1.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_health_status",
            &healthy,
            "status=\"unhealthy\"",
            Some(0.0),
        );
        expect(
            t,
            &mut m,
            up,
            &healthy,
            "compose_project=\"nautilus\",compose_service=\"risk-engine\",tier=\"engine\"",
            Some(1.0),
        );
        if value(
            t,
            "m4watch_container_network_receive_bytes_total",
            &healthy,
            "interface=\"eth0\"",
        )
        .is_none()
        {
            m.push(format!("{healthy}: no eth0 receive counter"));
        }
        expect(
            t,
            &mut m,
            "m4watch_container_memory_limit_bytes",
            &healthy,
            "",
            None,
        );
        expect(
            t,
            &mut m,
            "m4watch_container_cpu_limit_cores",
            &healthy,
            "",
            None,
        );
        // Failing HEALTHCHECK.
        expect(
            t,
            &mut m,
            "m4watch_container_health_status",
            &sick,
            "status=\"unhealthy\"",
            Some(1.0),
        );
        match value(t, "m4watch_container_health_failing_streak", &sick, "") {
            Some(v) if v >= 2.0 => {}
            other => m.push(format!("{sick}: failing streak {other:?}, want >= 2")),
        }
        expect(
            t,
            &mut m,
            "m4watch_container_health_status",
            &limited,
            "status=\"none\"",
            Some(1.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_health_failing_streak",
            &limited,
            "",
            None,
        );
        // exit 1 under on-failure:2: two restarts, then it stays down.
        expect(t, &mut m, up, &crash, "", Some(0.0));
        expect(
            t,
            &mut m,
            "m4watch_container_restarts_total",
            &crash,
            "",
            Some(2.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_last_exit_code",
            &crash,
            "",
            Some(1.0),
        );
        // OOM-killed, restarted once by the policy, and killed again. Whether Docker
        // reports both kills as `oom` events depends on how fast the two come (cgroup v2
        // coalesces close memory.events), so the count is checked below as 1 or 2.
        expect(t, &mut m, up, &oom, "", Some(0.0));
        expect(
            t,
            &mut m,
            "m4watch_container_restarts_total",
            &oom,
            "",
            Some(1.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_last_exit_code",
            &oom,
            "",
            Some(137.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_memory_limit_bytes",
            &oom,
            "",
            Some(8.0 * 1024.0 * 1024.0),
        );
        // Memory limit and cpuset.
        expect(t, &mut m, up, &limited, "", Some(1.0));
        expect(
            t,
            &mut m,
            "m4watch_container_memory_limit_bytes",
            &limited,
            "",
            Some(64.0 * 1024.0 * 1024.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_cpu_limit_cores",
            &limited,
            "",
            Some(0.5),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_info",
            &limited,
            "cpuset=\"0\"",
            Some(1.0),
        );
        for family in [
            "m4watch_container_memory_usage_bytes",
            "m4watch_container_memory_working_set_bytes",
            "m4watch_container_cpu_usage_seconds_total",
            "m4watch_container_pids",
            "m4watch_container_start_time_seconds",
        ] {
            if value(t, family, &limited, "").is_none() {
                m.push(format!("{limited}: {family} missing"));
            }
        }
        // Stopped: down, exit code of the kill, no usage.
        expect(t, &mut m, up, &stopped, "", Some(0.0));
        expect(
            t,
            &mut m,
            "m4watch_container_last_exit_code",
            &stopped,
            "",
            Some(137.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_restarts_total",
            &stopped,
            "",
            Some(0.0),
        );
        expect(
            t,
            &mut m,
            "m4watch_container_cpu_usage_seconds_total",
            &stopped,
            "",
            None,
        );
        // Restarted twice by hand.
        expect(
            t,
            &mut m,
            "m4watch_container_restarts_total",
            &bounce,
            "",
            Some(2.0),
        );
        expect(t, &mut m, up, &bounce, "", Some(1.0));
        // Excluded by label.
        expect(t, &mut m, up, &hidden, "", None);
        if series(t, "m4watch_docker_info").len() != 1 {
            m.push("m4watch_docker_info missing".into());
        }
        m
    })
    .await;
    let ooms = value(&text, "m4watch_container_oom_kills_total", &oom, "");
    assert!(
        matches!(ooms, Some(v) if v == 1.0 || v == 2.0),
        "OOM kills of {oom}: {ooms:?}"
    );

    // The exposition is valid for Prometheus.
    let report = common::promtool_check_metrics(&text);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");

    // The JSON API carries the same values; unknown fields are absent.
    let r = d.get("/api/v1/monitoring/containers/metrics").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let by_name = |n: &str| {
        body["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n} not in {body}"))
            .clone()
    };
    let lim = by_name(&limited);
    assert_eq!(lim["memory_limit_bytes"], 64 * 1024 * 1024, "{lim}");
    assert_eq!(lim["cpuset"], "0");
    assert_eq!(lim["cpu_limit_cores"], 0.5);
    assert_eq!(lim["state"], "running");
    let h = by_name(&healthy);
    assert!(h.get("memory_limit_bytes").is_none(), "{h}");
    assert_eq!(h["health_status"], "healthy");
    assert_eq!(h["tier"], "engine");
    let o = by_name(&oom);
    assert_eq!(o["last_exit_code"], 137);
    assert_eq!(
        o["oom_kills_total"].as_f64(),
        ooms,
        "JSON and /metrics agree: {o}"
    );
    assert!(body["engine"]["server_version"].is_string(), "{body}");

    // A removed container vanishes from /metrics.
    docker(host, &["rm", "-f", &stopped]);
    wait_for(&d, 10, |t| {
        t.lines()
            .filter(|l| l.contains(&format!("name=\"{stopped}\"")))
            .map(|l| format!("still exported: {l}"))
            .collect()
    })
    .await;
    d.stop().await;
}

/// A `dockerd` of the test's own, in its own network namespace (so its bridge setup
/// cannot touch the host's `docker0`), on a socket and data root in a temp dir.
struct PrivateEngine {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateEngine {
    fn new() -> PrivateEngine {
        require_tool("dockerd");
        require_tool("unshare");
        // Short path: the containerd socket below it must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("m4wt")
            .tempdir_in("/tmp")
            .unwrap();
        PrivateEngine { dir, child: None }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn start(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let child = Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg("dockerd")
            .arg(format!("--host={}", self.host()))
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("docker.pid").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while try_docker(&self.host(), &["info"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "private dockerd did not start: {}",
                std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Connections open to the Engine's API socket from this network namespace (the
    /// Engine runs in its own): the kernel creates the accepted end of a unix
    /// connection in the client's namespace, with the listener's path, so these are the
    /// connected sockets at that path in `/proc/self/net/unix` (state 03). Clients of
    /// the other Engines that parallel tests in this process use do not count.
    fn connections(&self) -> usize {
        let path = self.socket();
        std::fs::read_to_string("/proc/self/net/unix")
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 8 && f[5] == "03" && std::path::Path::new(f[7]) == path
            })
            .count()
    }

    /// The connection count once it is at most `max` (the sockets of `docker` commands
    /// that just exited close on the Engine's side a moment later), or after `secs`.
    fn connections_settled(&self, max: usize, secs: u64) -> usize {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let n = self.connections();
            if n <= max || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as a service manager stops it; waits until it is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = try_docker(&self.host(), &["rm", "-f", "fault-idle"]);
        }
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_absent_stopped_and_restarted_fails_the_collector_then_recovers() {
    require_tool("docker");
    let mut engine = PrivateEngine::new();
    // Absent at startup: the collector fails, everything else serves.
    let d = Daemon::start(config(&format!(
        "containers:\n  docker_host: {}\n  \
         interval: 200ms\n  timeout: 200ms\n  expected:\n    - name: fault-idle\n",
        engine.host()
    )))
    .await;
    let text = d.scrape().await;
    assert_eq!(collector_success(&text), Some(0.0), "{text}");
    // No Engine: whether the expected container runs is unknown, so absent (not 0).
    assert_eq!(expected_present(&text, "fault-idle"), None, "{text}");
    assert!(
        text.contains("m4watch_collector_success{collector=\"hardware\"} 1"),
        "{text}"
    );
    let r = d.get("/api/v1/monitoring/containers/metrics").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "docker_unavailable", "{body}");

    engine.start();
    ensure_image(&engine.host());
    docker(
        &engine.host(),
        &[
            "run",
            "-d",
            "--name",
            "fault-idle",
            "--network",
            "none",
            "--restart",
            "always",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 600 & wait",
        ],
    );
    let up = |t: &str| value(t, "m4watch_container_up", "fault-idle", "");
    wait_for(&d, 30, |t| {
        let mut m = vec![];
        if collector_success(t) != Some(1.0) {
            m.push("containers collector not back after the Engine started".into());
        }
        if up(t) != Some(1.0) {
            m.push("fault-idle not up".into());
        }
        if expected_present(t, "fault-idle") != Some(1.0) {
            m.push("expected fault-idle not present".into());
        }
        m
    })
    .await;

    // Stopped: success 0, the container's series vanish, the rest keeps serving.
    engine.stop();
    let text = wait_for(&d, 15, |t| {
        let mut m = vec![];
        if collector_success(t) != Some(0.0) {
            m.push("collector still succeeds with the Engine stopped".into());
        }
        if up(t).is_some() {
            m.push("fault-idle still exported".into());
        }
        if expected_present(t, "fault-idle").is_some() {
            m.push("expected fault-idle still exported with the Engine stopped".into());
        }
        m
    })
    .await;
    assert!(series(&text, "m4watch_docker_info").is_empty(), "{text}");
    assert!(
        text.contains("m4watch_collector_success{collector=\"hardware\"} 1"),
        "{text}"
    );
    assert_eq!(
        d.get("/api/v1/monitoring/containers/metrics")
            .await
            .status(),
        503
    );

    // Started again: reconnects (with backoff) and the container is back.
    engine.start();
    wait_for(&d, 30, |t| {
        let mut m = vec![];
        if collector_success(t) != Some(1.0) {
            m.push("collector not back after the Engine restarted".into());
        }
        if up(t).is_none() {
            m.push("fault-idle not exported again".into());
        }
        m
    })
    .await;
    assert_eq!(
        d.get("/api/v1/monitoring/containers/metrics")
            .await
            .status(),
        200
    );
    d.stop().await;
}

fn gauge(text: &str, family: &str) -> Option<f64> {
    series(text, family)
        .first()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Every container in `running` has usage figures at most `max_age` s old, and every
/// one in `down` is exported as down without usage.
fn stats_unmet(text: &str, running: &[String], down: &[String], max_age: f64) -> Vec<String> {
    let mut m = vec![];
    for c in running {
        expect(text, &mut m, "m4watch_container_up", c, "", Some(1.0));
        if value(text, "m4watch_container_memory_usage_bytes", c, "").is_none() {
            m.push(format!("{c}: no memory usage"));
        }
        match value(text, "m4watch_container_stats_age_seconds", c, "") {
            Some(age) if age <= max_age => {}
            other => m.push(format!("{c}: stats age {other:?}, want <= {max_age}")),
        }
    }
    for c in down {
        expect(text, &mut m, "m4watch_container_up", c, "", Some(0.0));
        expect(
            text,
            &mut m,
            "m4watch_container_memory_usage_bytes",
            c,
            "",
            None,
        );
        expect(
            text,
            &mut m,
            "m4watch_container_stats_age_seconds",
            c,
            "",
            None,
        );
    }
    m
}

/// Streams at shipped speed (1 s interval) against a private Engine: ten containers,
/// three stopped and three removed while m4watch runs, then the Engine restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_streams_follow_stops_removals_and_an_engine_restart_without_leaks() {
    require_tool("docker");
    let mut engine = PrivateEngine::new();
    engine.start();
    let host = engine.host();
    ensure_image(&host);
    let interval = 1.0;
    // Before m4watch runs, nothing holds a connection to the private Engine.
    let before = engine.connections_settled(0, 5);
    // Two requests in flight at most, so idle pooled connections stay few and a leaked
    // stream shows in the count.
    let d = Daemon::start(config(&format!(
        "containers:\n  docker_host: {host}\n  interval: 1s\n  timeout: 1s\n  \
         max_concurrent_requests: 2\n"
    )))
    .await;
    let names: Vec<String> = (1..=10).map(|i| format!("streams-{i}")).collect();
    for n in &names {
        docker(
            &host,
            &[
                "run",
                "-d",
                "--name",
                n,
                "--network",
                "none",
                "--restart",
                "unless-stopped",
                IMAGE,
                "sh",
                "-c",
                "trap 'exit 0' TERM; sleep 600 & wait",
            ],
        );
    }
    let text = wait_for(&d, 30, |t| {
        let mut m = stats_unmet(t, &names, &[], 2.0 * interval);
        if gauge(t, "m4watch_container_stats_streams") != Some(10.0) {
            m.push("not 10 streams".into());
        }
        m
    })
    .await;
    let with_ten = engine.connections_settled(before + 11 + 2, 5);
    assert!(
        (before + 11..=before + 11 + 2).contains(&with_ten),
        "10 streams, the events stream and at most 2 idle: {before} connections before \
         m4watch, {with_ten} with ten"
    );

    // Three stopped, three removed.
    let (stopped, rest) = names.split_at(3);
    let (removed, running) = rest.split_at(3);
    for n in stopped {
        docker(&host, &["stop", "-t", "5", n]);
    }
    let mut args = vec!["rm", "-f"];
    args.extend(removed.iter().map(String::as_str));
    docker(&host, &args);
    let removed_at = Instant::now();
    wait_for(&d, 10, |t| {
        removed
            .iter()
            .filter(|n| t.contains(&format!("name=\"{n}\"")))
            .map(|n| format!("{n} still exported"))
            .collect()
    })
    .await;
    let took = removed_at.elapsed().as_secs_f64();
    eprintln!("removed containers left /metrics {took:.2} s after docker rm");
    // One interval, and the scrape loop's own step.
    assert!(
        took <= interval + 0.25,
        "removed containers left /metrics after {took:.2} s"
    );
    let text2 = wait_for(&d, 10, |t| {
        let mut m = stats_unmet(t, running, stopped, 2.0 * interval);
        if gauge(t, "m4watch_container_stats_streams") != Some(4.0) {
            m.push(format!(
                "streams {:?}, want 4",
                gauge(t, "m4watch_container_stats_streams")
            ));
        }
        m
    })
    .await;
    let with_four = engine.connections_settled(before + 4 + 1 + 2, 5);
    assert!(
        with_four <= before + 4 + 1 + 2,
        "stopped and removed containers' streams are closed: {with_four} connections \
         (before {before}, with ten {with_ten}); want at most 4 streams, the events stream \
         and 2 idle"
    );

    // The Engine restarts under m4watch; unless-stopped brings the four back.
    engine.stop();
    wait_for(&d, 15, |t| {
        if collector_success(t) == Some(0.0) {
            vec![]
        } else {
            vec!["collector still succeeds with the Engine stopped".into()]
        }
    })
    .await;
    engine.start();
    let back = wait_for(&d, 15, |t| {
        if collector_success(t) == Some(1.0) {
            vec![]
        } else {
            vec!["collector not back after the Engine restarted".into()]
        }
    })
    .await;
    let reconnected = Instant::now();
    let text3 = wait_for(&d, 10, |t| {
        let mut m = stats_unmet(t, running, stopped, 2.0 * interval);
        if gauge(t, "m4watch_container_stats_streams") != Some(4.0) {
            m.push("not 4 streams".into());
        }
        m
    })
    .await;
    let took = reconnected.elapsed().as_secs_f64();
    eprintln!(
        "stats of every running container {took:.2} s after m4watch reconnected; \
         connections: {before} before m4watch, {with_ten} with ten streams, {with_four} with four, \
         {} after the restart",
        engine.connections()
    );
    assert!(
        took <= 2.0 * interval + 0.25,
        "running containers had stats {took:.2} s after m4watch reconnected"
    );
    for n in removed {
        assert!(
            !text3.contains(&format!("name=\"{n}\"")),
            "{n} is back:\n{text3}"
        );
    }
    let after = engine.connections_settled(before + 4 + 1 + 2, 5);
    assert!(
        after <= before + 4 + 1 + 2,
        "after the restart: {after} connections (before {before}, with four {with_four})"
    );
    let report = common::promtool_check_metrics(&text);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
    drop((text2, back));

    // Shut down: every stream and the events stream close with the collector.
    d.stop().await;
    assert_eq!(
        engine.connections_settled(before, 5),
        before,
        "connections left after shutdown"
    );
    let mut args = vec!["rm", "-f"];
    args.extend(
        names
            .iter()
            .filter(|n| !removed.contains(n))
            .map(String::as_str),
    );
    let _ = try_docker(&host, &args);
}

/// The value of `m4watch_container_expected_present{expected=<selector>}`, if exported.
fn expected_present(text: &str, selector: &str) -> Option<f64> {
    let needle = format!("{{expected=\"{selector}\"}}");
    series(text, "m4watch_container_expected_present")
        .into_iter()
        .find(|l| l.contains(&needle))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// m4watch's own alert `alertname` for `expected=<selector>`, as the alerts API lists it.
async fn expected_alert(d: &Daemon, selector: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = d
        .get("/api/v1/monitoring/alerts")
        .await
        .json()
        .await
        .unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["alertname"] == "ExpectedContainerMissing" && a["labels"]["expected"] == selector
        })
        .cloned()
}

/// `containers.expected` against the real Engine: an entry keeps its series when its
/// container is removed (0, not gone), matches by labels a container that include/exclude
/// leave out, and the shipped ExpectedContainerMissing fires through m4watch's own rule
/// engine after its 30 s `for`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expected_container_that_is_removed_reads_0_and_pages() {
    let host = shared_engine();
    let run = Run::new(host, "expect");
    let gateway = run.start("gateway", &["--network", "none"], IDLE);
    let role = format!("{}fix", run.prefix);
    let fix = run.start(
        "fix",
        &[
            "--network",
            "none",
            "--label",
            &format!("m4watch.test.role={role}"),
            "--label",
            "m4watch.test.hidden=yes",
        ],
        IDLE,
    );
    let never = run.name("never");
    let by_label = format!("m4watch.test.role={role}");
    let d = Daemon::start(config(&format!(
        "containers:\n  interval: 500ms\n  timeout: 500ms\n  \
         include:\n    names: [\"{p}*\"]\n  exclude:\n    labels: [\"m4watch.test.hidden=yes\"]\n  \
         expected:\n    - name: {gateway}\n    - labels: {{m4watch.test.role: \"{role}\"}}\n    \
         - name: {never}\n",
        p = run.prefix
    )))
    .await;
    let started = Instant::now();
    let text = wait_for(&d, 20, |t| {
        let mut m = vec![];
        for (sel, want) in [(&gateway, 1.0), (&by_label, 1.0), (&never, 0.0)] {
            let got = expected_present(t, sel);
            if got != Some(want) {
                m.push(format!(
                    "expected_present{{expected={sel:?}}}: want {want}, got {got:?}"
                ));
            }
        }
        m
    })
    .await;
    // The labelled one is excluded from the per-container series, yet expected.
    assert_eq!(
        value(&text, "m4watch_container_up", &fix, ""),
        None,
        "{text}"
    );
    assert_eq!(
        value(&text, "m4watch_container_up", &gateway, ""),
        Some(1.0)
    );

    // Removed: its per-container series go, the entry stays and reads 0.
    docker(host, &["rm", "-f", &gateway]);
    let removed = Instant::now();
    // Stopped (not removed): 0 as well.
    docker(host, &["stop", "-t", "5", &fix]);
    let text = wait_for(&d, 15, |t| {
        let mut m = vec![];
        for sel in [&gateway, &by_label] {
            let got = expected_present(t, sel);
            if got != Some(0.0) {
                m.push(format!(
                    "expected_present{{expected={sel:?}}}: want 0, got {got:?}"
                ));
            }
        }
        if value(t, "m4watch_container_up", &gateway, "").is_some() {
            m.push(format!("{gateway} still has m4watch_container_up"));
        }
        m
    })
    .await;
    assert_eq!(collector_success(&text), Some(1.0), "{text}");

    // The shipped rule, on m4watch's own engine: pending first, firing once the
    // entry has read 0 for its 30 s `for`.
    let deadline = removed + Duration::from_secs(60);
    let firing = loop {
        match expected_alert(&d, &gateway).await {
            Some(a) if a["state"] == "firing" => break a,
            Some(a) => assert_eq!(a["state"], "pending", "{a}"),
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "ExpectedContainerMissing never fired for {gateway}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let waited = removed.elapsed();
    assert!(
        waited >= Duration::from_secs(29),
        "fired {waited:?} after the removal: the rule's for is 30 s"
    );
    assert_eq!(firing["severity"], "critical", "{firing}");
    assert_eq!(
        firing["annotations"]["runbook_url"], "/runbooks#expectedcontainermissing",
        "{firing}"
    );
    // The entry no container ever matched pages too (0 since the first listing).
    let never_alert = expected_alert(&d, &never)
        .await
        .expect("never-started entry alerts");
    assert_eq!(never_alert["state"], "firing", "{never_alert}");
    assert!(started.elapsed() >= Duration::from_secs(30));
    d.stop().await;
}
