//! The families the container collector exports, and how a [`Report`] becomes them.

use std::collections::BTreeMap;

use crate::model::{MetricDef, def};
use crate::store::views::containers::Report;
use crate::store::{Family, Kind};

/// Labels every per-container series carries (the last three only when set).
const CONTAINER_LABELS: &[&str] = &["name", "compose_project", "compose_service", "tier"];

/// Every family this collector exports.
pub(crate) const DOCKER_INFO: MetricDef = def(
    "m4watch_docker_info",
    Kind::Gauge,
    &["server_version", "ncpu", "mem_total_bytes"],
    "Always 1 while the Docker Engine answers; labels give its version, CPUs and memory (on a Mac: Docker Desktop's VM, not the Mac).",
);

pub(crate) const CONTAINER_INFO: MetricDef = def(
    "m4watch_container_info",
    Kind::Gauge,
    &[
        "name",
        "compose_project",
        "compose_service",
        "tier",
        "id",
        "image",
        "cpuset",
        "restart_policy",
    ],
    "Always 1; labels identify a container (short id, image, cpuset and restart policy when set).",
);

pub(crate) const CONTAINER_UP: MetricDef = def(
    "m4watch_container_up",
    Kind::Gauge,
    CONTAINER_LABELS,
    "1 if the container is running (or paused), 0 if it is created, restarting, exited or dead.",
);

pub(crate) const CONTAINER_START_TIME_SECONDS: MetricDef = def(
    "m4watch_container_start_time_seconds",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Unix time the container last started; absent if it never started.",
);

pub(crate) const CONTAINER_CPU_USAGE_SECONDS_TOTAL: MetricDef = def(
    "m4watch_container_cpu_usage_seconds_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "CPU time consumed by the container since it started, in seconds.",
);

pub(crate) const CONTAINER_CPU_THROTTLED_SECONDS_TOTAL: MetricDef = def(
    "m4watch_container_cpu_throttled_seconds_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Time the container's CPU quota held it back since it started, in seconds.",
);

pub(crate) const CONTAINER_CPU_LIMIT_CORES: MetricDef = def(
    "m4watch_container_cpu_limit_cores",
    Kind::Gauge,
    CONTAINER_LABELS,
    "CPU limit (--cpus or quota/period) in cores; absent when unlimited.",
);

pub(crate) const CONTAINER_MEMORY_USAGE_BYTES: MetricDef = def(
    "m4watch_container_memory_usage_bytes",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Memory charged to the container's cgroup, page cache included, in bytes.",
);

pub(crate) const CONTAINER_MEMORY_WORKING_SET_BYTES: MetricDef = def(
    "m4watch_container_memory_working_set_bytes",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Memory usage minus inactive file cache, in bytes: what the OOM killer looks at.",
);

pub(crate) const CONTAINER_MEMORY_LIMIT_BYTES: MetricDef = def(
    "m4watch_container_memory_limit_bytes",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Memory limit of the container, in bytes; absent when unlimited.",
);

pub(crate) const CONTAINER_NETWORK_RECEIVE_BYTES_TOTAL: MetricDef = def(
    "m4watch_container_network_receive_bytes_total",
    Kind::Counter,
    &[
        "name",
        "compose_project",
        "compose_service",
        "tier",
        "interface",
    ],
    "Bytes received on a network interface of the container.",
);

pub(crate) const CONTAINER_NETWORK_TRANSMIT_BYTES_TOTAL: MetricDef = def(
    "m4watch_container_network_transmit_bytes_total",
    Kind::Counter,
    &[
        "name",
        "compose_project",
        "compose_service",
        "tier",
        "interface",
    ],
    "Bytes sent on a network interface of the container.",
);

pub(crate) const CONTAINER_BLKIO_READ_BYTES_TOTAL: MetricDef = def(
    "m4watch_container_blkio_read_bytes_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Bytes the container read from block devices.",
);

pub(crate) const CONTAINER_BLKIO_WRITE_BYTES_TOTAL: MetricDef = def(
    "m4watch_container_blkio_write_bytes_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Bytes the container wrote to block devices.",
);

pub(crate) const CONTAINER_PIDS: MetricDef = def(
    "m4watch_container_pids",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Processes and threads running in the container.",
);

pub(crate) const CONTAINER_RESTARTS_TOTAL: MetricDef = def(
    "m4watch_container_restarts_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Times the container started again after it had exited (restart policy, docker restart or docker start), from events and inspect.",
);

pub(crate) const CONTAINER_OOM_KILLS_TOTAL: MetricDef = def(
    "m4watch_container_oom_kills_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Times the kernel OOM killer hit the container, from events and inspect.",
);

pub(crate) const CONTAINER_LAST_EXIT_CODE: MetricDef = def(
    "m4watch_container_last_exit_code",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Exit code of the container's last exit; absent until it has exited once.",
);

pub(crate) const CONTAINER_HEALTH_STATUS: MetricDef = def(
    "m4watch_container_health_status",
    Kind::Gauge,
    &[
        "name",
        "compose_project",
        "compose_service",
        "tier",
        "status",
    ],
    "Docker HEALTHCHECK state as a state set: 1 for the current status (healthy, unhealthy, starting, none), 0 for the others.",
);

pub(crate) const CONTAINER_HEALTH_FAILING_STREAK: MetricDef = def(
    "m4watch_container_health_failing_streak",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Consecutive failed HEALTHCHECK runs; absent for containers without a healthcheck.",
);

pub(crate) const CONTAINER_STATS_AGE_SECONDS: MetricDef = def(
    "m4watch_container_stats_age_seconds",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Seconds since the container's usage figures (CPU, memory, network, block I/O, pids) arrived from the Engine; absent while none has.",
);

pub(crate) const CONTAINER_STATS_STREAMS: MetricDef = def(
    "m4watch_container_stats_streams",
    Kind::Gauge,
    &[],
    "Stats streams open to the Docker Engine, one per running container up to containers.max_streams.",
);

pub(crate) const CONTAINER_STATS_FALLBACKS_TOTAL: MetricDef = def(
    "m4watch_container_stats_fallbacks_total",
    Kind::Counter,
    &[],
    "One-shot stats reads made for running containers without a working stats stream (the stream failed, or more containers run than containers.max_streams).",
);

pub(crate) const CONTAINER_EXPECTED_PRESENT: MetricDef = def(
    "m4watch_container_expected_present",
    Kind::Gauge,
    &["expected"],
    "1 if a running container matches the containers.expected entry (its name and/or key=value labels in the expected label), 0 if none does; absent while the Docker Engine does not answer.",
);

pub(crate) const METRICS: &[MetricDef] = &[
    DOCKER_INFO,
    CONTAINER_INFO,
    CONTAINER_UP,
    CONTAINER_START_TIME_SECONDS,
    CONTAINER_CPU_USAGE_SECONDS_TOTAL,
    CONTAINER_CPU_THROTTLED_SECONDS_TOTAL,
    CONTAINER_CPU_LIMIT_CORES,
    CONTAINER_MEMORY_USAGE_BYTES,
    CONTAINER_MEMORY_WORKING_SET_BYTES,
    CONTAINER_MEMORY_LIMIT_BYTES,
    CONTAINER_NETWORK_RECEIVE_BYTES_TOTAL,
    CONTAINER_NETWORK_TRANSMIT_BYTES_TOTAL,
    CONTAINER_BLKIO_READ_BYTES_TOTAL,
    CONTAINER_BLKIO_WRITE_BYTES_TOTAL,
    CONTAINER_PIDS,
    CONTAINER_RESTARTS_TOTAL,
    CONTAINER_OOM_KILLS_TOTAL,
    CONTAINER_LAST_EXIT_CODE,
    CONTAINER_HEALTH_STATUS,
    CONTAINER_HEALTH_FAILING_STREAK,
    CONTAINER_STATS_AGE_SECONDS,
    CONTAINER_STATS_STREAMS,
    CONTAINER_STATS_FALLBACKS_TOTAL,
    CONTAINER_EXPECTED_PRESENT,
];

/// HEALTHCHECK states, in the order the state set is written.
pub(crate) const HEALTH_STATES: [&str; 4] = ["healthy", "unhealthy", "starting", "none"];

/// `containers.expected`: each entry's selector beside whether it is present.
pub(crate) fn expected_family(expected: &[(String, bool)]) -> Family {
    let mut f = Family::new(&CONTAINER_EXPECTED_PRESENT);
    for (selector, present) in expected {
        f.push(
            [("expected", selector.as_str())],
            f64::from(u8::from(*present)),
        );
    }
    f
}

/// The metric families of one report (`containers.expected` is [`expected_family`]).
pub(crate) fn families(report: &Report) -> Vec<Family> {
    let mut by_name: BTreeMap<&'static str, Family> =
        METRICS.iter().map(|d| (d.name, Family::new(d))).collect();
    let mut push = |name: &'static str, labels: Vec<(String, String)>, v: f64| {
        by_name
            .get_mut(name)
            .expect("family is in METRICS")
            .push(labels, v);
    };
    push(
        CONTAINER_STATS_STREAMS.name,
        Vec::new(),
        report.stats_streams as f64,
    );
    push(
        CONTAINER_STATS_FALLBACKS_TOTAL.name,
        Vec::new(),
        report.stats_fallbacks_total as f64,
    );
    let e = &report.engine;
    push(
        DOCKER_INFO.name,
        vec![
            (
                "server_version".into(),
                e.server_version.clone().unwrap_or_default(),
            ),
            (
                "ncpu".into(),
                e.ncpu.map(|n| n.to_string()).unwrap_or_default(),
            ),
            (
                "mem_total_bytes".into(),
                e.mem_total_bytes.map(|n| n.to_string()).unwrap_or_default(),
            ),
        ],
        1.0,
    );
    for c in &report.containers {
        let mut base = vec![("name".to_string(), c.name.clone())];
        for (k, v) in [
            ("compose_project", &c.compose_project),
            ("compose_service", &c.compose_service),
            ("tier", &c.tier),
        ] {
            if let Some(v) = v {
                base.push((k.to_string(), v.clone()));
            }
        }
        let with = |extra: &[(&str, &str)]| {
            let mut l = base.clone();
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l
        };
        let mut info = with(&[("id", &c.id), ("image", &c.image)]);
        if let Some(cpuset) = &c.cpuset {
            info.push(("cpuset".into(), cpuset.clone()));
        }
        if let Some(p) = &c.restart_policy {
            info.push(("restart_policy".into(), p.clone()));
        }
        push(CONTAINER_INFO.name, info, 1.0);
        push(CONTAINER_UP.name, base.clone(), f64::from(u8::from(c.up)));
        let optional = [
            (CONTAINER_START_TIME_SECONDS.name, c.start_time_seconds),
            (
                CONTAINER_CPU_USAGE_SECONDS_TOTAL.name,
                c.cpu_usage_seconds_total,
            ),
            (
                CONTAINER_CPU_THROTTLED_SECONDS_TOTAL.name,
                c.cpu_throttled_seconds_total,
            ),
            (CONTAINER_CPU_LIMIT_CORES.name, c.cpu_limit_cores),
            (
                CONTAINER_MEMORY_USAGE_BYTES.name,
                c.memory_usage_bytes.map(|v| v as f64),
            ),
            (
                CONTAINER_MEMORY_WORKING_SET_BYTES.name,
                c.memory_working_set_bytes.map(|v| v as f64),
            ),
            (
                CONTAINER_MEMORY_LIMIT_BYTES.name,
                c.memory_limit_bytes.map(|v| v as f64),
            ),
            (
                CONTAINER_BLKIO_READ_BYTES_TOTAL.name,
                c.blkio_read_bytes_total.map(|v| v as f64),
            ),
            (
                CONTAINER_BLKIO_WRITE_BYTES_TOTAL.name,
                c.blkio_write_bytes_total.map(|v| v as f64),
            ),
            (CONTAINER_PIDS.name, c.pids.map(|v| v as f64)),
            (CONTAINER_RESTARTS_TOTAL.name, Some(c.restarts_total as f64)),
            (
                CONTAINER_OOM_KILLS_TOTAL.name,
                Some(c.oom_kills_total as f64),
            ),
            (
                CONTAINER_LAST_EXIT_CODE.name,
                c.last_exit_code.map(|v| v as f64),
            ),
            (
                CONTAINER_HEALTH_FAILING_STREAK.name,
                c.health_failing_streak.map(|v| v as f64),
            ),
            (CONTAINER_STATS_AGE_SECONDS.name, c.stats_age_seconds),
        ];
        for (name, v) in optional {
            if let Some(v) = v {
                push(name, base.clone(), v);
            }
        }
        for (iface, n) in &c.networks {
            let l = with(&[("interface", iface)]);
            push(
                CONTAINER_NETWORK_RECEIVE_BYTES_TOTAL.name,
                l.clone(),
                n.receive_bytes as f64,
            );
            push(
                CONTAINER_NETWORK_TRANSMIT_BYTES_TOTAL.name,
                l,
                n.transmit_bytes as f64,
            );
        }
        for state in HEALTH_STATES {
            push(
                CONTAINER_HEALTH_STATUS.name,
                with(&[("status", state)]),
                f64::from(u8::from(c.health_status == state)),
            );
        }
    }
    by_name.remove(CONTAINER_EXPECTED_PRESENT.name);
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expected_entry_has_a_series_present_or_not() {
        let text = crate::store::encode(&[expected_family(&[
            ("order-gateway".into(), true),
            ("app=fix-gateway".into(), false),
        ])]);
        assert!(
            text.contains("m4watch_container_expected_present{expected=\"order-gateway\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("m4watch_container_expected_present{expected=\"app=fix-gateway\"} 0\n"),
            "{text}"
        );
    }
    use crate::store::views::containers::ContainerSample;

    #[test]
    fn stream_figures_and_the_age_of_each_containers_stats_are_exported() {
        let report = Report {
            containers: vec![
                ContainerSample {
                    name: "fresh".into(),
                    up: true,
                    memory_usage_bytes: Some(4096),
                    stats_age_seconds: Some(0.25),
                    ..Default::default()
                },
                ContainerSample {
                    name: "waiting".into(),
                    up: true,
                    ..Default::default()
                },
            ],
            stats_streams: 2,
            stats_fallbacks_total: 3,
            ..Default::default()
        };
        let text = crate::store::encode(&families(&report));
        assert!(
            text.contains("m4watch_container_stats_streams 2\n"),
            "{text}"
        );
        assert!(
            text.contains("m4watch_container_stats_fallbacks_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("m4watch_container_stats_age_seconds{name=\"fresh\"} 0.25\n"),
            "{text}"
        );
        assert!(
            !text.contains("m4watch_container_stats_age_seconds{name=\"waiting\"}"),
            "no frame yet: the age is unknown, not 0\n{text}"
        );
    }
}
