//! Recommendations against a real Docker Engine (issue 5): a latency-critical
//! container whose cpuset includes an efficiency core is flagged, with its evidence
//! and the cpuset to use; one pinned to performance cores is not. And m4watch only
//! advises: no code path changes a container or signals a process.

mod common;

use std::time::Duration;

use common::docker::{IDLE, Run, shared_engine};
use common::{Daemon, config};
use serde_json::Value;

const KIND: &str = "latency_critical_container_on_efficiency_cores";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_critical_container_on_an_efficiency_core_is_flagged() {
    let host = shared_engine();
    let run = Run::new(host, "advice");
    let on_e = run.start(
        "on-e",
        &[
            "--cpuset-cpus",
            "0",
            "--label",
            "m4watch.tier=latency-critical",
        ],
        IDLE,
    );
    let on_p = run.start(
        "on-p",
        &[
            "--cpuset-cpus",
            "1",
            "--label",
            "m4watch.tier=latency-critical",
        ],
        IDLE,
    );
    // This machine's CPUs, declared one efficiency (0) and one performance (1).
    let d = Daemon::start(config(&format!(
        "hardware:\n  procfs: /proc\n  sysfs: /sys\n  topology: {{efficiency: \"0\", performance: \"1\"}}\n\
         advice:\n  window: 10s\n\
         containers:\n  interval: 2s\n  timeout: 2s\n  include:\n    names: [\"{}*\"]\n",
        run.prefix
    )))
    .await;

    let mut last = Value::Null;
    for _ in 0..100 {
        let r = d.get("/api/v1/monitoring/performance/optimizations").await;
        assert_eq!(r.status(), 200);
        last = r.json().await.unwrap();
        let recs: Vec<&Value> = last["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == KIND)
            .collect();
        if recs.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(recs.len(), 1, "only the container on an E-core: {last}");
        let r = recs[0];
        assert_eq!(r["subject"], on_e.as_str());
        assert_eq!(r["severity"], "critical");
        assert!(
            r["summary"]
                .as_str()
                .unwrap()
                .contains("efficiency cores 0"),
            "{r}"
        );
        let evidence = r["evidence"].as_array().unwrap();
        assert!(evidence[0]["series"].as_str().unwrap().contains(&on_e));
        assert_eq!(evidence[0]["value"], 1.0);
        assert_eq!(evidence[0]["unit"], "cpus");
        assert_eq!(
            r["action"].as_str().unwrap(),
            format!(
                "pin it to performance cores: docker update --cpuset-cpus=1 {on_e} (and set the same cpuset in its compose file)"
            )
        );
        assert!(
            !last
                .to_string()
                .contains(&format!("\"subject\":\"{on_p}\""))
        );
        // The dashboard summary lists it too.
        let summary: Value = d
            .get("/api/v1/monitoring/dashboard/summary")
            .await
            .json()
            .await
            .unwrap();
        assert!(
            summary["recommendations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["kind"] == KIND && r["subject"] == on_e.as_str()),
            "{summary}"
        );
        // The gauge agrees.
        let text = d
            .scrape_until(10, |t| {
                t.contains(&format!("m4watch_recommendations{{kind=\"{KIND}\"}} 1"))
            })
            .await;
        assert!(text.contains("# TYPE m4watch_recommendations gauge"));
        // Advice changed nothing: the cpuset is as it was.
        let cpuset = common::docker::docker(
            host,
            &["inspect", "--format", "{{.HostConfig.CpusetCpus}}", &on_e],
        );
        assert_eq!(cpuset, "0");
        d.stop().await;
        return;
    }
    panic!("no placement recommendation appeared: {last}");
}

#[tokio::test]
async fn without_containers_or_a_ring_the_checks_say_why_they_were_skipped() {
    let d = Daemon::start(config("rules:\n  enabled: false\n")).await;
    let a: Value = d
        .get("/api/v1/monitoring/performance/optimizations")
        .await
        .json()
        .await
        .unwrap();
    let skipped = a["skipped"].as_array().unwrap();
    let reason = |kind: &str| {
        skipped
            .iter()
            .find(|s| s["kind"] == kind)
            .and_then(|s| s["reason"].as_str())
            .unwrap_or_else(|| panic!("{kind} not skipped: {a}"))
            .to_string()
    };
    assert!(reason(KIND).contains("no container report"));
    assert!(reason("memory_pressure").contains("rules.enabled: false"));
    assert!(a["recommendations"].as_array().unwrap().is_empty());
    // Unknown is absent: skipped kinds have no gauge series.
    let text = d.scrape().await;
    assert!(!text.contains(&format!("m4watch_recommendations{{kind=\"{KIND}\"}}")));
    d.stop().await;
}

/// m4watch only advises. The Docker client is used read-only, and nothing sends a
/// signal to another process.
#[test]
fn no_code_path_changes_a_container_or_signals_a_process() {
    let forbidden = [
        "update_container",
        "kill_container",
        "stop_container",
        "remove_container",
        "restart_container",
        "pause_container",
        "start_container",
        "create_container",
        "libc::kill",
        "nix::sys::signal",
        "Command::new(\"docker\")",
        "Command::new(\"kill\")",
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for f in forbidden {
                assert!(!text.contains(f), "{} uses {f}", path.display());
            }
        }
    }
}
