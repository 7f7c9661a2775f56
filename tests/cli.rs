//! The binary as a user runs it: exit codes, messages, signals.

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
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "daemon never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
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
