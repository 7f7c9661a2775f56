//! The binary as a user runs it: exit codes, messages, signals.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn m4watch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_m4watch"))
}

#[test]
fn check_config_accepts_the_default_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let out = m4watch().arg("print-default-config").output().unwrap();
    assert!(out.status.success());
    std::fs::write(&good, &out.stdout).unwrap();
    let ok = m4watch()
        .args(["check-config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = format!(
        "{}/testdata/config/unknown_key.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = m4watch().args(["check-config", &bad]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":4:3: hardware.intervall: unknown field `intervall`"),
        "{err}"
    );
}

/// Item 8 of issue 14: `listen` and `data_dir` have defaults like every other key.
#[test]
fn check_config_accepts_a_file_with_only_a_trading_section() {
    let file = format!(
        "{}/testdata/config/partial/trading_only.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = m4watch().args(["check-config", &file]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{file}: ok\n")
    );
}

/// Runs the daemon on `config` with `--listen` (a free loopback port) and
/// `--data-dir data_dir`, from `cwd`, until the port accepts a connection and
/// `data_dir/m4watch.db` exists; then stops it.
fn serve_with_flags(config: &Path, data_dir: &Path, cwd: &Path) {
    let port = common::free_port();
    let mut child = m4watch()
        .arg("--config")
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .current_dir(cwd)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let db = data_dir.join("m4watch.db");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !db.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
            panic!("m4watch exited ({status}) before serving on {port}: {log}");
        }
        assert!(
            Instant::now() < deadline,
            "no listener on {port} or no {}",
            db.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());
}

#[test]
fn command_line_listen_and_data_dir_override_the_file_and_complete_a_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let flag_dir = dir.path().join("from-flag");

    // A file with only `trading:`: the flags say where to listen and keep state, and
    // the default ./data is never created in the working directory.
    let partial =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/partial/trading_only.yml");
    serve_with_flags(&partial, &flag_dir, dir.path());
    assert!(!dir.path().join("data").exists());

    // A file that names both: the flags win.
    let file_dir = dir.path().join("from-file");
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{}\ndata_dir: {}\ntrading:\n  statsd_listen: 127.0.0.1:0\n",
            common::free_port(),
            file_dir.display()
        ),
    )
    .unwrap();
    std::fs::remove_dir_all(&flag_dir).unwrap();
    serve_with_flags(&cfg, &flag_dir, dir.path());
    assert!(!file_dir.exists(), "the file's data_dir was used");
}

#[test]
fn a_bad_config_stops_the_daemon_with_the_reason() {
    let bad = format!(
        "{}/testdata/config/timeout_exceeds_interval.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = m4watch().args(["--config", &bad]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hardware.timeout: must not exceed hardware.interval (1s)"),
        "{err}"
    );
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The default StatsD port may be taken by a test running beside this one.
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:0\ndata_dir: ./data\ntrading:\n  statsd_listen: 127.0.0.1:0\n",
    )
    .unwrap();
    let mut child = m4watch()
        .arg("--config")
        .arg(&cfg)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.lines().all(|l| l.starts_with('{')), "json logs: {log}");
    assert!(log.contains("shutting down"), "{log}");
}

/// A loopback port nothing listens on (the moment it is asked for).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits up to 20 s until something accepts connections on loopback `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "daemon never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Spawns the daemon on `cfg` and waits until it answers on `port`.
fn spawn_on(cfg: &Path, port: u16) -> common::KillOnDrop {
    let child = m4watch()
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    common::KillOnDrop(child)
}

async fn post_reload(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .post(format!("{base}/-/reload"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
}

/// Waits until the exposition (a snapshot, refreshed every second) shows `want`.
async fn wait_metric(client: &reqwest::Client, base: &str, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = metric(client, base, name).await;
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: {got:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    common::series(&text, name)
        .first()
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// SIGHUP and `POST /-/reload` re-read the config and rule files like Prometheus's:
/// a new rule is evaluated without a restart, an invalid config is refused with the
/// reason while the old one keeps running, and the reload gauges say so.
#[tokio::test]
async fn sighup_and_post_reload_re_read_config_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let rules = dir.path().join("desk.rules.yml");
    let rule = |name: &str| {
        format!(
            "groups:\n  - name: desk\n    rules:\n      - alert: {name}\n        expr: vector(1)\n        labels: {{severity: info}}\n"
        )
    };
    std::fs::write(&rules, rule("Before")).unwrap();
    let cfg = dir.path().join("m4watch.yml");
    let good = format!(
        "listen: 127.0.0.1:{port}\ndata_dir: {}\napi: {{token: tok}}\ncontainers: {{enabled: false}}\ntrading: {{statsd_listen: 127.0.0.1:0}}\nrules:\n  files: [\"{}\"]\n",
        dir.path().join("data").display(),
        rules.display()
    );
    std::fs::write(&cfg, &good).unwrap();
    let child = spawn_on(&cfg, port);
    let base = format!("http://127.0.0.1:{port}");
    let client = m4watch::tls::client();
    let names = || async {
        let v: serde_json::Value = client
            .get(format!("{base}/api/v1/monitoring/alerts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut n: Vec<String> = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] != "resolved")
            .map(|a| a["alertname"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let wait_for = |want: Vec<&'static str>| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = names().await;
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "alerts {got:?}, want {want:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for(vec!["Before"]).await;

    // SIGHUP with a changed rule file: the daemon lives on and evaluates the new rule.
    std::fs::write(&rules, rule("After")).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) }, 0);
    wait_for(vec!["After"]).await;
    wait_metric(&client, &base, "m4watch_config_last_reload_successful", 1.0).await;

    // An invalid config: 400 with the reason, the running config stays.
    std::fs::write(&cfg, format!("{good}hardware: {{interval: nonsense}}\n")).unwrap();
    let r = post_reload(&client, &base).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("hardware.interval"),
        "{body}"
    );
    wait_metric(&client, &base, "m4watch_config_last_reload_successful", 0.0).await;
    wait_for(vec!["After"]).await;

    // Fixed, with a section that only a restart can change.
    std::fs::write(&cfg, format!("{good}process: {{interval: 2s}}\n")).unwrap();
    let r = post_reload(&client, &base).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["applied"],
        serde_json::json!([
            "api.token, api.read_token",
            "rules",
            "notifications",
            "heartbeat"
        ])
    );
    assert_eq!(body["restart_required"], serde_json::json!(["process"]));
    wait_metric(&client, &base, "m4watch_config_last_reload_successful", 1.0).await;
    // Without the token: refused.
    let r = client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Two daemons on one data directory: the second refuses to start, naming the
/// directory and the first one's pid, and the first keeps running.
#[test]
fn a_second_instance_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = |port: u16| {
        let p = dir.path().join(format!("m4watch-{port}.yml"));
        std::fs::write(
            &p,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\ncontainers: {{enabled: false}}\ntrading: {{statsd_listen: 127.0.0.1:0}}\n",
                data.display()
            ),
        )
        .unwrap();
        p
    };
    let first_port = common::free_port();
    let mut first = spawn_on(&cfg(first_port), first_port);
    let out = m4watch()
        .arg("--config")
        .arg(cfg(common::free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: the data directory is in use by another m4watch (pid {})",
            data.display(),
            first.0.id()
        )),
        "{err}"
    );
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first still runs"
    );
}

/// `check-config` on `yaml`, written as `m4watch.yml` in a fresh directory: the exit
/// code and standard error, with the directory's path cut to `DIR`.
fn check_config(yaml: &str) -> (Option<i32>, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m4watch.yml");
    std::fs::write(&file, yaml).unwrap();
    let started = Instant::now();
    let out = m4watch().arg("check-config").arg(&file).output().unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr)
        .replace(&dir.path().display().to_string(), "DIR")
        .trim()
        .to_string();
    (out.status.code(), err, took)
}

#[test]
fn intervals_and_timeouts_have_a_lower_bound_named_in_the_error() {
    let base = "listen: 127.0.0.1:9977\ndata_dir: ./data\n";
    for (yaml, want) in [
        (
            "hardware:\n  interval: 1ns\n  timeout: 1ns\n",
            "DIR/m4watch.yml:4:13: hardware.interval: must be at least 10ms (got 1ns)",
        ),
        (
            "rules:\n  evaluation_interval: 1ms\n",
            "DIR/m4watch.yml:4:24: rules.evaluation_interval: must be at least 100ms (got 1ms)",
        ),
        (
            "history:\n  interval: 1us\n",
            "DIR/m4watch.yml:4:13: history.interval: must be at least 100ms (got 1us)",
        ),
        (
            "api:\n  header_read_timeout: 1ns\n",
            "DIR/m4watch.yml:4:24: api.header_read_timeout: must be at least 100ms (got 1ns)",
        ),
        (
            "notifications:\n  delivery:\n    timeout: 1ns\n",
            "DIR/m4watch.yml:5:14: notifications.delivery.timeout: must be at least 10ms (got 1ns)",
        ),
        (
            "notifications:\n  route:\n    receiver: default\n    group_interval: 1ns\n",
            "DIR/m4watch.yml:6:21: notifications.route.group_interval: must be at least 100ms (got 1ns)",
        ),
    ] {
        let (code, err, _) = check_config(&format!("{base}{yaml}"));
        assert_eq!(code, Some(1), "{yaml}");
        assert_eq!(err, want, "{yaml}");
    }
}

#[test]
fn check_config_refuses_what_start_up_refuses_with_the_line() {
    let (code, err, _) = check_config(
        "listen: 127.0.0.1:9977\ndata_dir: ./data\nhardware:\n  source: replay\n  replay_file: no-such-recording.jsonl\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(
            "DIR/m4watch.yml:5:16: hardware.replay_file: replay file DIR/no-such-recording.jsonl: "
        ),
        "{err}"
    );
    // A check after deserialising keeps its position too.
    let (code, err, _) = check_config(
        "listen: 127.0.0.1:9977\ndata_dir: ./data\nprobes:\n  interval: 1s\n  targets:\n    - name: a\n      url: http://localhost:1/health\n      timeout: 2s\n",
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "DIR/m4watch.yml:8:16: probes.targets[0].timeout: must not exceed probes.interval (1s), or probes would overlap"
    );
}

#[test]
fn deeply_nested_yaml_fails_fast_with_a_clear_error() {
    let deep = format!(
        "listen: 127.0.0.1:9977\ndata_dir: ./data\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (code, err, took) = check_config(&deep);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "DIR/m4watch.yml:3:68: (top level): nested deeper than 64 levels; a config needs a handful"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// The daemon runs as itself: `pgrep -x m4watch`, `top` and `ps -o comm` find it under
/// its own name (a self-restart through `/proc/self/exe` once showed `exe`), and it
/// leaves the allocator's environment as it was given: tunables belong to the
/// deployment (`packaging/systemd/m4watch.service`, the `Dockerfile`), not to the daemon.
#[cfg(target_os = "linux")]
#[test]
fn the_running_daemon_is_named_m4watch_and_keeps_the_environment_it_was_given() {
    let environ = |pid: u32| {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        raw.split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .find_map(|v| v.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))
    };
    for given in [None, Some("glibc.malloc.tcache_count=0")] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("m4watch.yml");
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: ./data\ntrading:\n  statsd_listen: 127.0.0.1:0\n"
            ),
        )
        .unwrap();
        let mut cmd = m4watch();
        cmd.current_dir(dir.path())
            .arg("--config")
            .arg(&cfg)
            .env_remove("GLIBC_TUNABLES")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(g) = given {
            cmd.env("GLIBC_TUNABLES", g);
        }
        let child = common::KillOnDrop(cmd.spawn().unwrap());
        wait_listening(port);
        let pid = child.0.id();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim_end(), "m4watch", "given {given:?}");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(
            exe.file_name().and_then(|n| n.to_str()),
            Some("m4watch"),
            "{exe:?}"
        );
        assert_eq!(environ(pid).as_deref(), given, "given {given:?}");
    }
}

/// The shipped systemd unit runs the daemon hardened, with the allocator settings the
/// footprint figures were measured with, and its command line is one the binary takes.
#[test]
fn the_shipped_systemd_unit_is_hardened_and_its_command_line_is_valid() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/m4watch.service"),
    )
    .unwrap();
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
            .collect()
    };
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
        ("StateDirectory", "m4watch"),
        ("SystemCallFilter", "@system-service adjtimex clock_adjtime"),
        ("SystemCallErrorNumber", "EPERM"),
        ("PrivateMounts", "yes"),
        ("UMask", "0077"),
    ] {
        assert_eq!(value(key), [want], "{key}");
    }
    // systemd's own reading of it: valid (no unknown key, a runnable ExecStart), and
    // its exposure score (0 best, 10 worst) at most 2.5; it was 3.3 before issue 28.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m4watch.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/m4watch", env!("CARGO_BIN_EXE_m4watch")),
    )
    .unwrap();
    let analyze = common::require_tool("systemd-analyze");
    let verify = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for m4watch.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure <= 2.5, "exposure {exposure}:\n{report}");
    let env = value("Environment").join(" ");
    assert!(env.contains("MALLOC_ARENA_MAX=1"), "{env}");
    assert!(
        env.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=0"),
        "{env}"
    );
    // ExecStart, with the config it names replaced by the shipped example, must be
    // accepted by `check-config`.
    let exec = value("ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let mut args: Vec<String> = exec[0].split_whitespace().map(str::to_string).collect();
    assert_eq!(args.remove(0), "/usr/local/bin/m4watch");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("m4watch.example.yml");
    let data = tempfile::tempdir().unwrap();
    for (i, a) in args.clone().iter().enumerate() {
        if a == "/etc/m4watch/m4watch.yml" {
            args[i] = example.display().to_string();
        } else if a == "/var/lib/m4watch" {
            args[i] = data.path().display().to_string();
        }
    }
    let out = m4watch()
        .args(&args)
        .arg("check-config")
        .arg(&example)
        .env("M4WATCH_API_TOKEN", "unit-test-token")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 28: the flags node_exporter, statsd_exporter, Prometheus and Alertmanager
/// take, with the old names as aliases; the start-up line names what runs.
#[test]
fn ecosystem_flags_run_the_daemon_and_the_start_up_line_says_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("m4watch.yml");
    std::fs::write(&cfg, "trading:\n  statsd_listen: 127.0.0.1:0\n").unwrap();
    let data = dir.path().join("d");
    let mut child = common::KillOnDrop(
        m4watch()
            .arg("--config.file")
            .arg(&cfg)
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--log.format",
                "json",
                "--log.level",
                "info",
                "--data-dir",
            ])
            .arg(&data)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let out = child.0.wait_with_output_or_kill();
    let line = out
        .lines()
        .find(|l| l.contains("m4watch starting"))
        .unwrap_or_else(|| panic!("no start-up line: {out}"));
    let first: serde_json::Value = serde_json::from_str(line).unwrap();
    let f = &first["fields"];
    assert_eq!(f["message"], "m4watch starting", "{out}");
    assert_eq!(f["version"], env!("CARGO_PKG_VERSION"));
    assert!(f["revision"].as_str().is_some_and(|r| !r.is_empty()), "{f}");
    assert_eq!(f["config"], cfg.display().to_string());
    assert_eq!(f["data_dir"], data.display().to_string());
    assert_eq!(f["listen"], format!("http://127.0.0.1:{port}"));
    assert_eq!(f["statsd"], "udp://127.0.0.1:0");
    let collectors = f["collectors"].as_str().unwrap();
    for c in ["hardware", "trading"] {
        assert!(collectors.split(',').any(|x| x == c), "{collectors}");
    }

    // --log.level error: not even the start-up line; the old spellings still parse.
    let port = free_port();
    let mut child = common::KillOnDrop(
        m4watch()
            .arg("--config")
            .arg(&cfg)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "text",
                "--log.level",
                "error",
                "--data-dir",
            ])
            .arg(&data)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let out = child.0.wait_with_output_or_kill();
    assert_eq!(out, "", "nothing at level error on a clean start and stop");

    let bad = m4watch().args(["--log.level", "verbose"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("possible values: debug, info, warn, error")
    );
}

trait WaitOrKill {
    /// Waits up to 10 s for the process to exit (then kills it and fails) and
    /// returns its standard error.
    fn wait_with_output_or_kill(&mut self) -> String;
}

impl WaitOrKill for std::process::Child {
    fn wait_with_output_or_kill(&mut self) -> String {
        let started = Instant::now();
        while self.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = self.kill();
                panic!("no exit within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut log = String::new();
        if let Some(mut e) = self.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut log).unwrap();
        }
        log
    }
}

/// `--version`: version, git revision, build date, rustc and target.
#[test]
fn version_names_revision_build_date_rustc_and_target() {
    let out = m4watch().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], concat!("m4watch ", env!("CARGO_PKG_VERSION")));
    let value = |i: usize, key: &str| {
        let (k, v) = lines[i].trim().split_once(':').unwrap();
        assert_eq!(k, key, "{text}");
        v.trim().to_string()
    };
    let rev = value(1, "revision");
    // From a git checkout, the commit; from a release source archive, its REVISION
    // file; from anything else, "unknown".
    let hex = rev.len() == 12 && rev.chars().all(|c| c.is_ascii_hexdigit());
    if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() {
        assert!(hex, "{text}");
    } else {
        assert!(hex || rev == "unknown", "{text}");
    }
    let date = value(2, "build date");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{text}"
    );
    let rustc = value(3, "rustc");
    assert!(rustc.starts_with("rustc 1."), "{text}");
    let target = value(4, "target");
    assert!(
        target.starts_with(std::env::consts::ARCH) && target.contains(std::env::consts::OS),
        "{text}"
    );
    // -V stays the short form.
    let short = m4watch().arg("-V").output().unwrap();
    assert_eq!(
        String::from_utf8(short.stdout).unwrap(),
        concat!("m4watch ", env!("CARGO_PKG_VERSION"), "\n")
    );
}

/// A receiver no route reaches is legal but receives nothing: check-config says so
/// and passes.
#[test]
fn check_config_warns_about_a_receiver_no_route_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m4watch.yml");
    let receivers = "notifications:\n  receivers:\n    - {name: desk, webhook: {url: 'http://127.0.0.1:1/d'}}\n    - {name: oncall, webhook: {url: 'http://127.0.0.1:1/o'}}\n";
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:9977\ndata_dir: {}\n{receivers}  route:\n    receiver: desk\n    routes:\n      - {{matchers: ['team=\"fx\"']}}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = m4watch().arg("check-config").arg(&cfg).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "{}: warning: receiver \"oncall\" is unreachable: no route of notifications.route (nor the escalation) names it, so nothing is sent to it\n",
            cfg.display()
        )
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: ok\n", cfg.display())
    );
    // Routed, it is quiet.
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:9977\ndata_dir: {}\n{receivers}  route:\n    receiver: desk\n    routes:\n      - {{matchers: ['severity=\"critical\"'], receiver: oncall}}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = m4watch().arg("check-config").arg(&cfg).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// A config whose containers collector fails every 200 ms (no Engine at the socket),
/// serving on loopback only.
fn failing_docker_config(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("m4watch.yml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: ./data\ntrading:\n  statsd_listen: 127.0.0.1:0\ncontainers:\n  docker_host: unix://{}/no-docker.sock\n  interval: 200ms\n  timeout: 200ms\n",
            dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// Docker stopped used to log the same warning every interval, in colour even into a
/// file. Now: stderr is a pipe, so no ESC byte; the warning is written once and the
/// run summarised when the next different line (shutting down) comes.
#[test]
fn identical_warnings_collapse_and_a_piped_log_has_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = failing_docker_config(dir.path());
    let port = free_port();
    let mut child = common::KillOnDrop(
        m4watch()
            .arg("--config.file")
            .arg(&cfg)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            // A terminal-less pipe, whatever the test runner's environment says.
            .env_remove("NO_COLOR")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    std::thread::sleep(Duration::from_secs(3));
    // No Engine (Docker Desktop before login) reads as a failing collector, which the
    // shipped CollectorFailing rule turns into an alert (alert-rules/tests/exporter.test.yml).
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("m4watch_collector_success{collector=\"containers\"} 0\n"),
        "{metrics}"
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let log = child.0.wait_with_output_or_kill();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log:\n{log}"
    );
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("collection failed") && l.contains("containers"))
        .collect();
    // Start-up lines between the first runs' warnings break the run (order is kept),
    // so at most two are written in full; then one summary, when shutting down.
    let (summaries, written): (Vec<&str>, Vec<&str>) =
        failed.iter().partition(|l| l.contains("… repeated "));
    assert!((1..=2).contains(&written.len()), "{log}");
    assert_eq!(summaries.len(), 1, "{log}");
    let n: u32 = summaries[0]
        .split("… repeated ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", summaries[0]));
    // 3 s at 200 ms: about 15 failed runs after the first.
    assert!(n >= 8, "{log}");
    assert!(summaries[0].contains(" WARN "), "{log}");
    let summary_at = log.find(summaries[0]).unwrap();
    assert!(log[summary_at..].contains("shutting down"), "{log}");
}

/// The body of a plain HTTP/1.0 GET on loopback `port`.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out)
}

/// `--log.file`: the log goes to the file, and after the file is moved away (what
/// newsyslog does on the Mac) the next lines go to a new file at the same path.
#[test]
fn the_log_file_is_reopened_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = failing_docker_config(dir.path());
    let log = dir.path().join("m4watch.log");
    let rotated = dir.path().join("m4watch.log.0");
    let port = free_port();
    let mut child = common::KillOnDrop(
        m4watch()
            .arg("--config.file")
            .arg(&cfg)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .arg("--log.file")
            .arg(&log)
            .current_dir(dir.path())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(read(&log).contains("m4watch starting"), "{}", read(&log));
    std::fs::rename(&log, &rotated).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.exists() {
        assert!(Instant::now() < deadline, "not reopened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read(&log).contains("config reloaded") {
        assert!(Instant::now() < deadline, "{}", read(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let stderr = child.0.wait_with_output_or_kill();
    assert_eq!(stderr, "", "everything went to the file");
    let (old, new) = (read(&rotated), read(&log));
    assert!(
        old.contains("m4watch starting") && !old.contains("SIGHUP"),
        "{old}"
    );
    assert!(
        new.contains("SIGHUP: reloading") && new.contains("shutting down"),
        "{new}"
    );
    assert!(!new.contains("m4watch starting"), "{new}");
}
