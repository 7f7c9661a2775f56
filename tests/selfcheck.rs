//! `m4watch selfcheck` on this (Linux) machine: every figure agrees with nproc, free and
//! /proc, and the capture bundle holds the readings and the tools' output.

use std::process::Command;

#[test]
fn selfcheck_agrees_with_the_kernels_tools_and_writes_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let out = Command::new(env!("CARGO_BIN_EXE_m4watch"))
        .args(["selfcheck", "--output"])
        .arg(&bundle)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter(|l| l.contains(" agree "))
        .collect();
    assert!(rows.len() >= 7, "{stdout}");
    assert!(
        !stdout.contains("DIFFER") && !stdout.contains("not comparable"),
        "{stdout}"
    );
    for f in [
        "readings.prom",
        "table.txt",
        "nproc.txt",
        "free.txt",
        "proc-meminfo.txt",
    ] {
        let text = std::fs::read_to_string(bundle.join(f)).unwrap_or_default();
        assert!(!text.is_empty(), "{f} missing from the bundle");
    }
    let readings = std::fs::read_to_string(bundle.join("readings.prom")).unwrap();
    assert!(
        readings.contains("m4watch_memory_total_bytes "),
        "{readings}"
    );
}
