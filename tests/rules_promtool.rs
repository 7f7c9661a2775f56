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
    let mut all = files("alert-rules/tests", ".test.yml");
    // Parity fixtures for what the shipped rules do not use (recording rules,
    // keep_firing_for, templated labels).
    all.extend(files("testdata/rules/parity", ".test.yml"));
    for f in all {
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

#[test]
fn every_shipped_alert_has_severity_annotations_and_a_firing_test() {
    let mut fired = std::collections::BTreeSet::new();
    for f in files("alert-rules/tests", ".test.yml") {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for t in doc["tests"].as_sequence().unwrap() {
            for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                if a["exp_alerts"].as_sequence().is_some_and(|e| !e.is_empty()) {
                    fired.insert(a["alertname"].as_str().unwrap().to_string());
                }
            }
        }
    }
    let groups = m4watch::internals::rules::load_embedded().unwrap();
    let mut alerting = 0;
    for g in &groups {
        for r in &g.rules {
            let m4watch::internals::rules::RuleKind::Alert { annotations, .. } = &r.kind else {
                continue;
            };
            alerting += 1;
            assert!(
                ["info", "warning", "critical", "emergency"].contains(&r.severity().as_str()),
                "{}: severity {:?}",
                r.name,
                r.severity()
            );
            for key in ["summary", "description"] {
                assert!(
                    annotations.iter().any(|(k, _)| k == key),
                    "{} has no {key}",
                    r.name
                );
            }
            assert!(
                fired.contains(&r.name),
                "{} has no test that fires it",
                r.name
            );
        }
    }
    assert!(alerting >= 20, "{alerting} alerting rules");
    let emergencies = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.severity() == "emergency")
        .count();
    assert!(emergencies >= 1);
}
