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
