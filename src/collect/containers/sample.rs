//! From Engine responses to samples: inspect and stats frames become a
//! [`ContainerSample`] and its [`Usage`]. Pure, tested on literal API responses.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use bollard::models::{ContainerInspectResponse, ContainerStatsResponse, HealthStatusEnum};

use super::counters::{InspectCounters, Tracked};
use crate::store::views::containers::{ContainerSample, EngineInfo, NetworkBytes};

/// Container label naming the tier (the `tier` metric label).
pub(crate) const TIER_LABEL: &str = "m4watch.tier";
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// Seconds since the epoch of an RFC 3339 timestamp in UTC as Docker writes them;
/// `None` for Docker's zero time (`0001-01-01T00:00:00Z`) and anything unparsable.
pub(crate) fn unix_seconds(ts: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339(ts).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    (d.as_secs() > 0).then_some(d.as_secs_f64())
}

/// Counter inputs of an inspect response.
pub(crate) fn inspect_counters(ins: &ContainerInspectResponse) -> InspectCounters {
    let state = ins.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let finished_at = state
        .and_then(|s| s.finished_at.as_deref())
        .filter(|f| unix_seconds(f).is_some())
        .map(str::to_string);
    InspectCounters {
        restart_count: ins.restart_count.unwrap_or(0).max(0) as u64,
        oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
        exit_code: if running || finished_at.is_none() {
            None
        } else {
            state.and_then(|s| s.exit_code)
        },
        finished_at,
    }
}

/// One container's sample from its inspect and (when running) stats responses, with
/// the counters kept across cycles.
pub(crate) fn sample_from(
    ins: &ContainerInspectResponse,
    stats: Option<&ContainerStatsResponse>,
    counters: &Tracked,
) -> ContainerSample {
    let labels = ins
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    let state = ins.state.as_ref();
    let host = ins.host_config.as_ref();
    let status = state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let health = state.and_then(|s| s.health.as_ref());
    let health_status = match health.and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        Some(HealthStatusEnum::STARTING) => "starting",
        _ => "none",
    };
    let cpu_limit = host.and_then(|h| {
        let nano = h.nano_cpus.unwrap_or(0);
        let quota = h.cpu_quota.unwrap_or(0);
        if nano > 0 {
            Some(nano as f64 / 1e9)
        } else if quota > 0 {
            let period = h.cpu_period.filter(|p| *p > 0).unwrap_or(100_000);
            Some(quota as f64 / period as f64)
        } else {
            None
        }
    });
    let mut s = ContainerSample {
        id: ins.id.as_deref().unwrap_or("").chars().take(12).collect(),
        name: ins
            .name
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string(),
        image: ins
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        up: matches!(status.as_str(), "running" | "paused"),
        state: status,
        compose_project: label(COMPOSE_PROJECT),
        compose_service: label(COMPOSE_SERVICE),
        tier: label(TIER_LABEL),
        cpuset: host
            .and_then(|h| h.cpuset_cpus.clone())
            .filter(|c| !c.is_empty()),
        restart_policy: host
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .filter(|n| !n.is_empty() && n != "no"),
        start_time_seconds: state
            .and_then(|s| s.started_at.as_deref())
            .and_then(unix_seconds),
        cpu_limit_cores: cpu_limit,
        memory_limit_bytes: host
            .and_then(|h| h.memory)
            .filter(|m| *m > 0)
            .map(|m| m as u64),
        restarts_total: counters.restarts(),
        oom_kills_total: counters.oom_kills(),
        last_exit_code: counters.last_exit_code(),
        health_status: health_status.to_string(),
        health_failing_streak: health
            .filter(|_| health_status != "none")
            .and_then(|h| h.failing_streak),
        ..ContainerSample::default()
    };
    if let Some(st) = stats {
        apply_stats(&mut s, st);
    }
    s
}

fn apply_stats(s: &mut ContainerSample, st: &ContainerStatsResponse) {
    Usage::of(st).apply_to(s);
}

/// The usage figures of one stats frame: what a sample takes from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Usage {
    cpu_usage_seconds_total: Option<f64>,
    cpu_throttled_seconds_total: Option<f64>,
    memory_usage_bytes: Option<u64>,
    memory_working_set_bytes: Option<u64>,
    networks: BTreeMap<String, NetworkBytes>,
    blkio_read_bytes_total: Option<u64>,
    blkio_write_bytes_total: Option<u64>,
    pids: Option<u64>,
}

impl Usage {
    /// The usage of a frame the Engine actually sampled; `None` for the zeroed frame it
    /// sends for a container that is not running (`read` at Docker's zero time), whose
    /// zeros are unknowns, not measurements.
    pub(crate) fn of_frame(st: &ContainerStatsResponse) -> Option<Usage> {
        unix_seconds(st.read.as_deref()?).map(|_| Usage::of(st))
    }

    fn of(st: &ContainerStatsResponse) -> Usage {
        let ns = |v: u64| v as f64 / 1e9;
        let mut u = Usage::default();
        if let Some(cpu) = &st.cpu_stats {
            u.cpu_usage_seconds_total = cpu.cpu_usage.as_ref().and_then(|c| c.total_usage).map(ns);
            u.cpu_throttled_seconds_total = cpu
                .throttling_data
                .as_ref()
                .and_then(|t| t.throttled_time)
                .map(ns);
        }
        if let Some(mem) = &st.memory_stats {
            u.memory_usage_bytes = mem.usage;
            // cgroup v1 reports total_inactive_file, v2 inactive_file.
            let inactive = mem.stats.as_ref().and_then(|m| {
                m.get("total_inactive_file")
                    .or_else(|| m.get("inactive_file"))
                    .copied()
            });
            u.memory_working_set_bytes = match (mem.usage, inactive) {
                (Some(used), Some(i)) => Some(used.saturating_sub(i)),
                _ => None,
            };
        }
        if let Some(nets) = &st.networks {
            for (iface, n) in nets {
                if let (Some(rx), Some(tx)) = (n.rx_bytes, n.tx_bytes) {
                    u.networks.insert(
                        iface.clone(),
                        NetworkBytes {
                            receive_bytes: rx,
                            transmit_bytes: tx,
                        },
                    );
                }
            }
        }
        if let Some(entries) = st
            .blkio_stats
            .as_ref()
            .and_then(|b| b.io_service_bytes_recursive.as_ref())
        {
            // An empty list is a measured zero: the cgroup has done no block I/O.
            let sum = |op: &str| {
                entries
                    .iter()
                    .filter(|e| e.op.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(op)))
                    .filter_map(|e| e.value)
                    .sum::<u64>()
            };
            u.blkio_read_bytes_total = Some(sum("read"));
            u.blkio_write_bytes_total = Some(sum("write"));
        }
        u.pids = st.pids_stats.as_ref().and_then(|p| p.current);
        u
    }

    pub(super) fn apply_to(&self, s: &mut ContainerSample) {
        s.cpu_usage_seconds_total = self.cpu_usage_seconds_total;
        s.cpu_throttled_seconds_total = self.cpu_throttled_seconds_total;
        s.memory_usage_bytes = self.memory_usage_bytes;
        s.memory_working_set_bytes = self.memory_working_set_bytes;
        s.networks.clone_from(&self.networks);
        s.blkio_read_bytes_total = self.blkio_read_bytes_total;
        s.blkio_write_bytes_total = self.blkio_write_bytes_total;
        s.pids = self.pids;
    }
}

pub(super) fn engine_info(info: &bollard::models::SystemInfo) -> EngineInfo {
    EngineInfo {
        server_version: info.server_version.clone(),
        ncpu: info.ncpu,
        mem_total_bytes: info.mem_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::containers::counters::Pending;
    use crate::collect::containers::metrics::families;
    use crate::store::views::containers::Report;

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{}/testdata/docker/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn docker_times() {
        assert_eq!(unix_seconds("2026-11-22T09:13:02Z"), Some(1795338782.0));
        let t = unix_seconds("2026-11-22T09:13:02.680707446Z").unwrap();
        assert!((t - 1_795_338_782.680_707_4).abs() < 1e-6, "{t}");
        assert_eq!(unix_seconds("0001-01-01T00:00:00Z"), None);
        assert_eq!(unix_seconds(""), None);
    }

    #[test]
    fn a_running_container_with_limits_from_real_cgroup_v1_responses() {
        let ins: ContainerInspectResponse = fixture("inspect-limited-v1.json");
        let stats: ContainerStatsResponse = fixture("stats-limited-v1.json");
        let mut t = Tracked::default();
        t.reconcile(&Pending::default(), &inspect_counters(&ins));
        let s = sample_from(&ins, Some(&stats), &t);
        assert_eq!(s.id, "c18a3d2aaca4");
        assert_eq!(s.name, "fixture-limited");
        assert_eq!((s.state.as_str(), s.up), ("running", true));
        assert_eq!(s.tier.as_deref(), Some("engine"));
        assert_eq!(s.compose_project.as_deref(), Some("nautilus"));
        assert_eq!(s.compose_service.as_deref(), Some("risk-engine"));
        assert_eq!(s.cpuset.as_deref(), Some("0"));
        assert_eq!(s.restart_policy.as_deref(), Some("on-failure"));
        assert_eq!(s.cpu_limit_cores, Some(0.5));
        assert_eq!(s.memory_limit_bytes, Some(64 << 20));
        assert_eq!(s.cpu_usage_seconds_total, Some(0.049205291));
        assert_eq!(s.cpu_throttled_seconds_total, Some(0.0));
        assert_eq!(s.memory_usage_bytes, Some(798720));
        assert_eq!(
            s.memory_working_set_bytes,
            Some(798720),
            "total_inactive_file is 0"
        );
        assert_eq!(
            s.blkio_read_bytes_total,
            Some(0),
            "an empty list is a measured zero"
        );
        assert_eq!(s.pids, Some(1));
        assert_eq!(
            s.networks["eth0"],
            NetworkBytes {
                receive_bytes: 736,
                transmit_bytes: 0
            }
        );
        assert_eq!(
            (s.health_status.as_str(), s.health_failing_streak),
            ("healthy", Some(0))
        );
        assert_eq!(s.last_exit_code, None, "never exited");
        assert!((s.start_time_seconds.unwrap() - 1795338782.680707).abs() < 1e-3);
    }

    #[test]
    fn an_exited_container_has_its_exit_code_and_no_usage() {
        let ins: ContainerInspectResponse = fixture("inspect-exited-v1.json");
        let mut t = Tracked::default();
        t.reconcile(&Pending::default(), &inspect_counters(&ins));
        let s = sample_from(&ins, None, &t);
        assert_eq!((s.state.as_str(), s.up), ("exited", false));
        assert_eq!(s.last_exit_code, Some(3));
        assert_eq!(
            (s.memory_limit_bytes, s.cpu_limit_cores),
            (None, None),
            "unlimited"
        );
        assert_eq!(s.cpu_usage_seconds_total, None);
        assert_eq!(
            (s.health_status.as_str(), s.health_failing_streak),
            ("none", None)
        );
        let text = crate::store::encode(&families(&Report {
            containers: vec![s],
            ..Default::default()
        }));
        assert!(
            text.contains("m4watch_container_up{name=\"fixture-exited\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("m4watch_container_last_exit_code{name=\"fixture-exited\"} 3\n"));
        assert!(text.contains(
            "m4watch_container_health_status{name=\"fixture-exited\",status=\"none\"} 1\n"
        ));
        assert!(
            !text.contains("m4watch_container_memory_limit_bytes"),
            "{text}"
        );
        assert!(
            !text.contains("m4watch_container_cpu_usage_seconds_total"),
            "{text}"
        );
    }

    #[test]
    fn cgroup_v2_stats_use_inactive_file_and_lowercase_blkio_ops() {
        let stats: ContainerStatsResponse = serde_json::from_str(
            r#"{"memory_stats": {"usage": 10000, "stats": {"inactive_file": 4000, "anon": 6000}},
                "blkio_stats": {"io_service_bytes_recursive": [
                    {"major": 254, "minor": 0, "op": "read", "value": 4096},
                    {"major": 254, "minor": 0, "op": "write", "value": 8192},
                    {"major": 254, "minor": 16, "op": "read", "value": 1}]},
                "pids_stats": {"current": 7, "limit": 100},
                "cpu_stats": {"cpu_usage": {"total_usage": 2500000000},
                              "throttling_data": {"throttled_time": 1500000000}}}"#,
        )
        .unwrap();
        let mut s = ContainerSample::default();
        apply_stats(&mut s, &stats);
        assert_eq!(s.memory_working_set_bytes, Some(6000));
        assert_eq!(
            (s.blkio_read_bytes_total, s.blkio_write_bytes_total),
            (Some(4097), Some(8192))
        );
        assert_eq!(
            (s.cpu_usage_seconds_total, s.cpu_throttled_seconds_total),
            (Some(2.5), Some(1.5))
        );
        assert_eq!(s.pids, Some(7));
        assert!(s.networks.is_empty(), "--network none");
    }

    #[test]
    fn a_zeroed_frame_is_no_usage_and_a_sampled_one_carries_its_figures() {
        // What the Engine streams for a container that stopped: zeros at Docker's zero
        // time. Those are unknowns, not a container that used nothing.
        let zeroed: ContainerStatsResponse = serde_json::from_str(
            r#"{"read": "0001-01-01T00:00:00Z", "pids_stats": {},
                "cpu_stats": {"cpu_usage": {"total_usage": 0}}, "memory_stats": {}}"#,
        )
        .unwrap();
        assert_eq!(Usage::of_frame(&zeroed), None);
        let stats: ContainerStatsResponse = fixture("stats-limited-v1.json");
        let u = Usage::of_frame(&stats).expect("a sampled frame");
        let mut s = ContainerSample::default();
        u.apply_to(&mut s);
        assert_eq!(s.cpu_usage_seconds_total, Some(0.049205291));
        assert_eq!(s.memory_usage_bytes, Some(798720));
    }
}
