//! promtool is the oracle: every shipped rule file passes `promtool check rules`, every
//! shipped unit-test file passes both `promtool test rules` and `m4watch test-rules`,
//! and every must-fail file fails in both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no {suffix} files in {dir}");
    v
}

fn run(tool: &Path, args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn shipped_rules_pass_promtool_check() {
    let promtool = common::require_tool("promtool");
    for f in files("alert-rules", ".rules.yml") {
        let (ok, text) = run(&promtool, &["check", "rules"], &f);
        assert!(ok, "promtool check rules {}:\n{text}", f.display());
    }
}

#[test]
fn shipped_unit_tests_pass_in_promtool_and_m4watch() {
    let promtool = common::require_tool("promtool");
    let m4watch = PathBuf::from(env!("CARGO_BIN_EXE_m4watch"));
    for f in files("alert-rules/tests", ".test.yml") {
        let (ok, text) = run(&promtool, &["test", "rules"], &f);
        assert!(ok, "promtool test rules {}:\n{text}", f.display());
        let (ok, text) = run(&m4watch, &["test-rules"], &f);
        assert!(ok, "m4watch test-rules {}:\n{text}", f.display());
        assert!(text.contains("SUCCESS"), "{text}");
    }
}

#[test]
fn must_fail_files_fail_in_both() {
    let promtool = common::require_tool("promtool");
    let m4watch = PathBuf::from(env!("CARGO_BIN_EXE_m4watch"));
    for f in files("testdata/rules/must-fail", ".test.yml") {
        let (ok, text) = run(&promtool, &["test", "rules"], &f);
        assert!(!ok, "promtool passed must-fail {}:\n{text}", f.display());
        let (ok, text) = run(&m4watch, &["test-rules"], &f);
        assert!(!ok, "m4watch passed must-fail {}:\n{text}", f.display());
        assert!(text.contains("FAILED"), "{text}");
    }
}
