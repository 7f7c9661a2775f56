//! Installing without a toolchain (issue 28): `scripts/release.sh` makes the versioned
//! source and binary archives with checksums; the Homebrew formula parses, installs
//! from the source archive and passes its own `test do`, and its `service do` command
//! line runs the daemon.
//!
//! Both tests run the real script with `M4WATCH_RELEASE_BINARY` set to this test
//! build's (debug) binary, so no release build is made here. The formula runs under
//! `tests/support/brew_formula.rb` (our stand-in for Homebrew's DSL; only `cargo
//! install` is replaced, by that same binary) with the system's `ruby`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is it installed? scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// This machine's target triple, as release.sh names the binary archive.
fn host_target() -> String {
    run(Command::new("rustc").arg("-vV"))
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_string()
}

/// `scripts/release.sh OUT` with the test binary; returns OUT's archives' paths
/// (source, binary).
fn release(out: &Path) -> (PathBuf, PathBuf) {
    run(Command::new(root().join("scripts/release.sh"))
        .arg(out)
        .env("M4WATCH_RELEASE_BINARY", env!("CARGO_BIN_EXE_m4watch")));
    (
        out.join(format!("m4watch-{VERSION}.tar.gz")),
        out.join(format!("m4watch-{VERSION}-{}.tar.gz", host_target())),
    )
}

#[test]
fn release_script_makes_versioned_archives_with_checksums() {
    let out = tempfile::tempdir().unwrap();
    let (source, binary) = release(out.path());
    assert!(source.is_file() && binary.is_file());
    // SHA256SUMS names both archives and matches them.
    let sums = std::fs::read_to_string(out.path().join("SHA256SUMS")).unwrap();
    let names: Vec<&str> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            source.file_name().unwrap().to_str().unwrap(),
            binary.file_name().unwrap().to_str().unwrap()
        ]
    );
    let check = run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(out.path()));
    assert_eq!(check.matches(": OK").count(), 2, "{check}");
    // A changed byte is caught.
    let mut bytes = std::fs::read(&source).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&source, &bytes).unwrap();
    let bad = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(out.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&source, &bytes).unwrap();

    // The source archive: one versioned top directory, buildable files, and the
    // commit in REVISION (git archive's export-subst), which build.rs reads without .git.
    let x = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&source)
        .arg("-C")
        .arg(x.path()));
    let top = x.path().join(format!("m4watch-{VERSION}"));
    let entries: Vec<_> = std::fs::read_dir(x.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src/main.rs",
        "m4watch.example.yml",
    ] {
        assert!(top.join(f).is_file(), "{f} missing from the source archive");
    }
    assert!(!top.join(".git").exists() && !top.join("target").exists());
    let head = run(Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root()));
    assert_eq!(
        std::fs::read_to_string(top.join("REVISION"))
            .unwrap()
            .trim(),
        head.trim()
    );

    // The binary archive: the binary (it runs) and what a host needs beside it.
    let y = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&binary)
        .arg("-C")
        .arg(y.path()));
    let dir = y
        .path()
        .join(format!("m4watch-{VERSION}-{}", host_target()));
    let version = run(Command::new(dir.join("m4watch")).arg("--version"));
    assert!(
        version.starts_with(&format!("m4watch {VERSION}\n")),
        "{version}"
    );
    for f in [
        "README.md",
        "m4watch.example.yml",
        "alert-rules/exporter.rules.yml",
        "grafana-dashboards/overview.json",
        "packaging/macos/com.m4watch.daemon.plist",
        "packaging/macos/m4watch.newsyslog.conf",
        "packaging/homebrew/m4watch.rb",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing from the binary archive");
    }
    run(Command::new(dir.join("m4watch"))
        .arg("check-config")
        .arg(dir.join("m4watch.example.yml")));
}

#[test]
fn homebrew_formula_parses_installs_from_the_source_archive_and_passes_its_test() {
    let formula = root().join("packaging/homebrew/m4watch.rb");
    // `brew style` needs Homebrew; Ruby's own syntax check runs anywhere.
    let syntax = run(Command::new("ruby").arg("-c").arg(&formula));
    assert_eq!(syntax.trim(), "Syntax OK");
    let text = std::fs::read_to_string(&formula).unwrap();
    for needed in [
        "depends_on \"rust\" => :build",
        "service do",
        "test do",
        "\"check-config\"",
    ] {
        assert!(text.contains(needed), "the formula lacks {needed}");
    }

    let out = tempfile::tempdir().unwrap();
    let (source, _) = release(out.path());
    let src = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&source)
        .arg("-C")
        .arg(src.path()));
    let prefix = tempfile::tempdir().unwrap();
    let said = run(Command::new("ruby")
        .arg(root().join("tests/support/brew_formula.rb"))
        .arg(&formula)
        .arg(src.path().join(format!("m4watch-{VERSION}")))
        .arg(prefix.path())
        .arg(env!("CARGO_BIN_EXE_m4watch"))
        .arg(VERSION));
    // `test do` ran check-config on the installed example and matched the version.
    assert!(said.contains("m4watch.example.yml: ok\n"), "{said}");
    assert!(said.trim_end().ends_with("test do: ok"), "{said}");
    let p = prefix.path();
    for f in [
        "bin/m4watch",
        "etc/m4watch/m4watch.yml",
        "share/m4watch/m4watch.example.yml",
        "share/m4watch/grafana-dashboards/overview.json",
        "share/m4watch/alert-rules/hardware.rules.yml",
        "share/m4watch/prometheus/prometheus.yml",
        "share/m4watch/macos/com.m4watch.daemon.plist",
    ] {
        assert!(p.join(f).is_file(), "{f} not installed");
    }
    assert!(p.join("var/m4watch").is_dir() && p.join("var/log").is_dir());

    // The service block: kept alive, in var/m4watch, and its command line starts the
    // daemon, which logs to the file it names.
    let service: serde_json::Value = serde_json::from_str(
        said.lines()
            .find_map(|l| l.strip_prefix("service: "))
            .expect("the service block"),
    )
    .unwrap();
    assert_eq!(service["keep_alive"], "true");
    let working = p.join("var/m4watch");
    assert_eq!(service["working_dir"], working.display().to_string());
    let argv: Vec<String> = service["run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], p.join("bin/m4watch").display().to_string());
    let log = p.join("var/log/m4watch.log");
    assert_eq!(argv.last().unwrap(), &log.display().to_string());
    // The example config listens on the default port and StatsD's; this instance must
    // not take them from tests running beside it, so both are overridden.
    let config = p.join("etc/m4watch/m4watch.yml");
    let mut yml = std::fs::read_to_string(&config).unwrap();
    assert!(yml.contains("\n  statsd_listen: 127.0.0.1:8125\n"), "{yml}");
    yml = yml.replace(
        "\n  statsd_listen: 127.0.0.1:8125\n",
        "\n  statsd_listen: 127.0.0.1:0\n",
    );
    std::fs::write(&config, yml).unwrap();
    let port = common::free_port();
    let _daemon = common::KillOnDrop(
        Command::new(&argv[0])
            .args(&argv[1..])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .current_dir(&working)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("m4watch starting") && working.join("data/m4watch.db").exists() {
            assert!(text.contains(&config.display().to_string()), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service never started:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
