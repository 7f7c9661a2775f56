//! Containers: the Docker Engine API through bollard.
//!
//! The Engine answers a one-shot stats request only after it has taken a second CPU
//! sample (~0.7 s per container on Docker 20.10), so a cycle that asks for stats can
//! never be faster than `docker stats`. Instead a watcher task keeps the data current at
//! the Engine's own pace and a collection cycle only reads memory:
//!
//! - one `stats?stream=true` connection per running container (attached at start-up and
//!   on `start`, detached on `die`/`destroy`), each keeping only its newest frame; the
//!   frame's age is exported, so staleness is visible. At most `max_streams` are open;
//!   containers without a working stream get one-shot reads, which are counted;
//! - inspect data from the events stream (each event re-inspects its container) and a
//!   periodic resync (list and inspect everything), never one inspect per cycle. Events
//!   also count restarts and OOM kills that heal between two inspects; each inspect
//!   reconciles them with what Docker reports ([`Tracked::reconcile`]).
//!
//! When the Engine is absent, stopped or restarted, the events stream ends, every stream
//! goes with the session, the cycle fails (the scheduler turns that into
//! `m4watch_collector_success{collector="containers"} 0` and drops the families), and the
//! watcher reconnects with a short exponential backoff and re-attaches.
//!
//! Reading (bollard calls) is kept apart from the arithmetic: [`sample_from`],
//! [`Usage::of_frame`], [`families`], [`EventTally::apply`] and [`Tracked::reconcile`]
//! are pure and tested on literal API responses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerStatsResponse, EventMessage, HealthStatusEnum,
};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, StatsOptionsBuilder,
};
use futures_util::StreamExt;
use serde::Serialize;

use super::stats_stream::{Endpoint, StatsStream};
use super::{CollectError, Collector};
use crate::config::{ContainerMatch, ContainersConfig};
use crate::model::{MetricDef, def};
use crate::store::{Family, Kind, Store};

/// Labels every per-container series carries (the last three only when set).
const CONTAINER_LABELS: &[&str] = &["name", "compose_project", "compose_service", "tier"];

/// Every family this collector exports.
pub const DOCKER_INFO: MetricDef = def(
    "m4watch_docker_info",
    Kind::Gauge,
    &["server_version", "ncpu", "mem_total_bytes"],
    "Always 1 while the Docker Engine answers; labels give its version, CPUs and memory (on a Mac: Docker Desktop's VM, not the Mac).",
);

pub const CONTAINER_INFO: MetricDef = def(
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

pub const CONTAINER_UP: MetricDef = def(
    "m4watch_container_up",
    Kind::Gauge,
    CONTAINER_LABELS,
    "1 if the container is running (or paused), 0 if it is created, restarting, exited or dead.",
);

pub const CONTAINER_START_TIME_SECONDS: MetricDef = def(
    "m4watch_container_start_time_seconds",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Unix time the container last started; absent if it never started.",
);

pub const CONTAINER_CPU_USAGE_SECONDS_TOTAL: MetricDef = def(
    "m4watch_container_cpu_usage_seconds_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "CPU time consumed by the container since it started, in seconds.",
);

pub const CONTAINER_CPU_THROTTLED_SECONDS_TOTAL: MetricDef = def(
    "m4watch_container_cpu_throttled_seconds_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Time the container's CPU quota held it back since it started, in seconds.",
);

pub const CONTAINER_CPU_LIMIT_CORES: MetricDef = def(
    "m4watch_container_cpu_limit_cores",
    Kind::Gauge,
    CONTAINER_LABELS,
    "CPU limit (--cpus or quota/period) in cores; absent when unlimited.",
);

pub const CONTAINER_MEMORY_USAGE_BYTES: MetricDef = def(
    "m4watch_container_memory_usage_bytes",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Memory charged to the container's cgroup, page cache included, in bytes.",
);

pub const CONTAINER_MEMORY_WORKING_SET_BYTES: MetricDef = def(
    "m4watch_container_memory_working_set_bytes",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Memory usage minus inactive file cache, in bytes: what the OOM killer looks at.",
);

pub const CONTAINER_MEMORY_LIMIT_BYTES: MetricDef = def(
    "m4watch_container_memory_limit_bytes",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Memory limit of the container, in bytes; absent when unlimited.",
);

pub const CONTAINER_NETWORK_RECEIVE_BYTES_TOTAL: MetricDef = def(
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

pub const CONTAINER_NETWORK_TRANSMIT_BYTES_TOTAL: MetricDef = def(
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

pub const CONTAINER_BLKIO_READ_BYTES_TOTAL: MetricDef = def(
    "m4watch_container_blkio_read_bytes_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Bytes the container read from block devices.",
);

pub const CONTAINER_BLKIO_WRITE_BYTES_TOTAL: MetricDef = def(
    "m4watch_container_blkio_write_bytes_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Bytes the container wrote to block devices.",
);

pub const CONTAINER_PIDS: MetricDef = def(
    "m4watch_container_pids",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Processes and threads running in the container.",
);

pub const CONTAINER_RESTARTS_TOTAL: MetricDef = def(
    "m4watch_container_restarts_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Times the container started again after it had exited (restart policy, docker restart or docker start), from events and inspect.",
);

pub const CONTAINER_OOM_KILLS_TOTAL: MetricDef = def(
    "m4watch_container_oom_kills_total",
    Kind::Counter,
    CONTAINER_LABELS,
    "Times the kernel OOM killer hit the container, from events and inspect.",
);

pub const CONTAINER_LAST_EXIT_CODE: MetricDef = def(
    "m4watch_container_last_exit_code",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Exit code of the container's last exit; absent until it has exited once.",
);

pub const CONTAINER_HEALTH_STATUS: MetricDef = def(
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

pub const CONTAINER_HEALTH_FAILING_STREAK: MetricDef = def(
    "m4watch_container_health_failing_streak",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Consecutive failed HEALTHCHECK runs; absent for containers without a healthcheck.",
);

pub const CONTAINER_STATS_AGE_SECONDS: MetricDef = def(
    "m4watch_container_stats_age_seconds",
    Kind::Gauge,
    CONTAINER_LABELS,
    "Seconds since the container's usage figures (CPU, memory, network, block I/O, pids) arrived from the Engine; absent while none has.",
);

pub const CONTAINER_STATS_STREAMS: MetricDef = def(
    "m4watch_container_stats_streams",
    Kind::Gauge,
    &[],
    "Stats streams open to the Docker Engine, one per running container up to containers.max_streams.",
);

pub const CONTAINER_STATS_FALLBACKS_TOTAL: MetricDef = def(
    "m4watch_container_stats_fallbacks_total",
    Kind::Counter,
    &[],
    "One-shot stats reads made for running containers without a working stats stream (the stream failed, or more containers run than containers.max_streams).",
);

pub const METRICS: &[MetricDef] = &[
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
];

/// HEALTHCHECK states, in the order the state set is written.
pub const HEALTH_STATES: [&str; 4] = ["healthy", "unhealthy", "starting", "none"];

/// Container label naming the tier (the `tier` metric label).
pub const TIER_LABEL: &str = "m4watch.tier";
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// Longest wait between reconnection attempts (and between attempts at a failed
/// stats stream). A failed connect to an absent socket costs next to nothing, and a short
/// cap brings the data back soon after an Engine restart.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest one request to the Engine (inspect, list, info, a one-shot stats read) may
/// take. These run in the watcher, off the collection cycle: a slow Engine makes the
/// data older (the stats age shows it), not the cycle slower.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why talking to the Engine failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to the Docker Engine at {host}: {source}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("Docker Engine at {host}: {what}: {source}")]
    Request {
        host: String,
        what: &'static str,
        source: bollard::errors::Error,
    },
    #[error("Docker Engine at {host}: {what} timed out")]
    TimedOut { host: String, what: &'static str },
    #[error("Docker Engine at {host} closed the events stream")]
    Ended { host: String },
}

impl From<DockerError> for CollectError {
    fn from(e: DockerError) -> Self {
        CollectError(e.to_string())
    }
}

/// What the Engine says about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EngineInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ncpu: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<i64>,
}

/// Bytes through one network interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NetworkBytes {
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
}

/// Everything known about one container after a cycle; unknown fields are `None`.
/// The metrics and `GET /api/v1/monitoring/containers/metrics` are both made from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ContainerSample {
    /// Short (12 hex digit) id.
    pub id: String,
    pub name: String,
    pub image: String,
    /// Docker's state: created, running, paused, restarting, exited, dead.
    pub state: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_usage_seconds_total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttled_seconds_total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limit_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// By interface; empty with `--network none`.
    pub networks: BTreeMap<String, NetworkBytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_read_bytes_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio_write_bytes_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    pub restarts_total: u64,
    pub oom_kills_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i64>,
    /// healthy, unhealthy, starting, or none without a HEALTHCHECK.
    pub health_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_failing_streak: Option<i64>,
    /// Seconds since the usage figures arrived; absent while there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_age_seconds: Option<f64>,
}

/// One successful cycle, as the JSON API serves it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub collected_at_unix: f64,
    pub docker_host: String,
    pub engine: EngineInfo,
    pub containers: Vec<ContainerSample>,
    /// Stats streams open to the Engine.
    pub stats_streams: usize,
    /// One-shot stats reads made for containers without a working stream.
    pub stats_fallbacks_total: u64,
}

/// The container collector's latest [`Report`], as the store holds it; absent until a
/// collection succeeds and after one fails.
pub fn latest(store: &Store) -> Option<Arc<Report>> {
    let _ = store; // TEMP(merge): the containers view moves to store::views
    None
}

// ---------------------------------------------------------------------------------
// Filters

/// `*` matches any run of characters, `?` exactly one; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn matches(m: &ContainerMatch, name: &str, labels: &HashMap<String, String>) -> bool {
    m.names.iter().any(|p| glob(p, name))
        || m.labels.iter().any(|spec| match spec.split_once('=') {
            Some((k, v)) => labels.get(k.trim()).is_some_and(|have| glob(v, have)),
            None => labels.contains_key(spec.trim()),
        })
}

/// Whether a container is watched: included (or no include rule) and not excluded.
pub fn selected(
    include: &ContainerMatch,
    exclude: &ContainerMatch,
    name: &str,
    labels: &HashMap<String, String>,
) -> bool {
    (include.is_empty() || matches(include, name, labels)) && !matches(exclude, name, labels)
}

// ---------------------------------------------------------------------------------
// Events and counters

/// What the events stream saw for one container since the last cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    pub restarts: u64,
    pub oom_kills: u64,
    pub last_exit_code: Option<i64>,
    /// A `die` was seen and no `start` since: the next `start` is a restart.
    died: bool,
}

/// Events per container id, drained by each cycle.
#[derive(Debug, Default)]
pub struct EventTally {
    by_id: HashMap<String, Pending>,
    /// `timeNano` of the newest event applied, so a resubscription asks for what it
    /// missed (`since`) and skips what it already counted.
    last_time_nano: Option<i64>,
}

impl EventTally {
    /// Applies one container event.
    pub fn apply(&mut self, ev: &EventMessage) {
        let (Some(action), Some(actor)) = (ev.action.as_deref(), ev.actor.as_ref()) else {
            return;
        };
        let Some(id) = actor.id.as_deref() else {
            return;
        };
        if let Some(t) = ev.time_nano {
            if self.last_time_nano.is_some_and(|last| t <= last) {
                return;
            }
            self.last_time_nano = Some(t);
        }
        match action {
            "die" => {
                let p = self.by_id.entry(id.to_string()).or_default();
                p.died = true;
                let code = actor
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("exitCode"))
                    .and_then(|c| c.parse().ok());
                if code.is_some() {
                    p.last_exit_code = code;
                }
            }
            "start" => {
                let p = self.by_id.entry(id.to_string()).or_default();
                if p.died {
                    p.restarts += 1;
                    p.died = false;
                }
            }
            "oom" => self.by_id.entry(id.to_string()).or_default().oom_kills += 1,
            "destroy" => {
                self.by_id.remove(id);
            }
            _ => {}
        }
    }

    /// Takes the counts gathered for `id` since the last call, keeping whether it died.
    pub fn take(&mut self, id: &str) -> Pending {
        match self.by_id.get_mut(id) {
            Some(p) => Pending {
                restarts: std::mem::take(&mut p.restarts),
                oom_kills: std::mem::take(&mut p.oom_kills),
                last_exit_code: p.last_exit_code.take(),
                died: p.died,
            },
            None => Pending::default(),
        }
    }

    fn since(&self) -> Option<String> {
        self.last_time_nano.map(since_arg)
    }
}

/// What inspect says about the counters of one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InspectCounters {
    /// Docker's own count of restart-policy restarts (reset by a manual start).
    pub restart_count: u64,
    pub oom_killed: bool,
    /// `FinishedAt` of the last exit, if it ever exited.
    pub finished_at: Option<String>,
    /// Exit code, when the container is not running (Docker zeroes it on start).
    pub exit_code: Option<i64>,
}

/// Counters of one container kept across cycles.
///
/// Events and inspect see the same policy restarts and OOM kills, but not at the same
/// moment: an event may already be applied when the inspect read in the same cycle
/// still shows the older count. So each source keeps its own running total and the
/// exported counter is the larger of the two: events catch restarts and kills that
/// healed before an inspect (and manual restarts, which Docker's `RestartCount` leaves
/// out), inspect catches those that happened while the events stream was down. Both
/// totals only grow, so their maximum is a proper counter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracked {
    restarts_by_events: u64,
    restarts_by_inspect: u64,
    ooms_by_events: u64,
    ooms_by_inspect: u64,
    last_exit_code: Option<i64>,
    seen_restart_count: u64,
    seen_finished_at: Option<String>,
}

impl Tracked {
    /// Folds one cycle's events and inspect into the totals. The first reconciliation
    /// of a container starts from Docker's own counts.
    pub fn reconcile(&mut self, ev: &Pending, ins: &InspectCounters) {
        self.restarts_by_events += ev.restarts;
        self.restarts_by_inspect += if ins.restart_count >= self.seen_restart_count {
            ins.restart_count - self.seen_restart_count
        } else {
            // A manual start resets Docker's count.
            ins.restart_count
        };
        self.seen_restart_count = ins.restart_count;

        self.ooms_by_events += ev.oom_kills;
        let new_exit = ins.finished_at.is_some() && ins.finished_at != self.seen_finished_at;
        self.ooms_by_inspect += u64::from(new_exit && ins.oom_killed);
        if ins.finished_at.is_some() {
            self.seen_finished_at = ins.finished_at.clone();
        }

        if let Some(code) = ev.last_exit_code.or(ins.exit_code) {
            self.last_exit_code = Some(code);
        }
    }

    pub fn restarts(&self) -> u64 {
        self.restarts_by_events.max(self.restarts_by_inspect)
    }

    pub fn oom_kills(&self) -> u64 {
        self.ooms_by_events.max(self.ooms_by_inspect)
    }

    pub fn last_exit_code(&self) -> Option<i64> {
        self.last_exit_code
    }
}

// ---------------------------------------------------------------------------------
// API responses -> samples -> families

/// Seconds since the epoch of an RFC 3339 timestamp in UTC as Docker writes them;
/// `None` for Docker's zero time (`0001-01-01T00:00:00Z`) and anything unparsable.
pub fn unix_seconds(ts: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339(ts).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    (d.as_secs() > 0).then_some(d.as_secs_f64())
}

/// The events API's `since` for a time in nanoseconds since the epoch.
fn since_arg(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Counter inputs of an inspect response.
pub fn inspect_counters(ins: &ContainerInspectResponse) -> InspectCounters {
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
pub fn sample_from(
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
pub struct Usage {
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
    pub fn of_frame(st: &ContainerStatsResponse) -> Option<Usage> {
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

    fn apply_to(&self, s: &mut ContainerSample) {
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

fn engine_info(info: &bollard::models::SystemInfo) -> EngineInfo {
    EngineInfo {
        server_version: info.server_version.clone(),
        ncpu: info.ncpu,
        mem_total_bytes: info.mem_total,
    }
}

/// The metric families of one report.
pub fn families(report: &Report) -> Vec<Family> {
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
    by_name.into_values().collect()
}

// ---------------------------------------------------------------------------------
// The collector

/// The Engine address m4watch talks to: the configured one, else
/// `/var/run/docker.sock`, else (macOS) Docker Desktop's per-user socket.
pub fn resolve_docker_host(
    configured: Option<&str>,
    home: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> String {
    if let Some(h) = configured {
        return match h.strip_prefix('/') {
            Some(_) => format!("unix://{h}"),
            None => h.to_string(),
        };
    }
    let system = Path::new("/var/run/docker.sock");
    if !exists(system) && cfg!(target_os = "macos") {
        if let Some(desktop) = home.map(|h| h.join(".docker/run/docker.sock")) {
            if exists(&desktop) {
                return format!("unix://{}", desktop.display());
            }
        }
    }
    format!("unix://{}", system.display())
}
/// A task that is aborted when its handle is dropped, so whatever owns it (a stats
/// stream in the shared state, the watcher in the collector) cannot outlive its owner.
struct Task(tokio::task::JoinHandle<()>);

impl Task {
    fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(f))
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The newest stats frame of a container, reduced to what a sample exports.
#[derive(Debug, Clone)]
struct Frame {
    usage: Usage,
    received: Instant,
}

/// One selected container as the watcher knows it.
struct Known {
    /// From the last inspect, counters applied; usage comes from `frame` at cycle time.
    sample: ContainerSample,
    running: bool,
    tracked: Tracked,
    /// Only the latest frame is kept: the usage counters are exported as totals and
    /// Prometheus takes the rates, so an older frame would be memory spent on nothing.
    frame: Option<Frame>,
    stream: Option<Task>,
    /// Which stream may write `frame`: a stream aborted on `die` may still be inside
    /// its last write, and must not give a stopped container usage again.
    stream_generation: u64,
    /// After a stream failed: when to try one again, and the wait after the next failure.
    stream_retry_at: Option<Instant>,
    stream_backoff: Duration,
}

impl Known {
    fn new() -> Known {
        Known {
            sample: ContainerSample::default(),
            running: false,
            tracked: Tracked::default(),
            frame: None,
            stream: None,
            stream_generation: 0,
            stream_retry_at: None,
            stream_backoff: FIRST_BACKOFF,
        }
    }

    fn detach(&mut self) {
        self.stream = None;
        self.frame = None;
        self.stream_generation += 1;
    }
}

/// What the watcher task keeps and the collection cycle reads.
#[derive(Default)]
struct State {
    /// The Engine's description while a session is up (connected, first resync done).
    engine: Option<EngineInfo>,
    /// Why there is no session, for the collector's error.
    last_error: String,
    /// Whether the first connection attempt has finished, either way.
    settled: bool,
    /// Selected containers by full id.
    containers: HashMap<String, Known>,
    fallbacks_total: u64,
}

impl State {
    fn streams(&self) -> usize {
        self.containers
            .values()
            .filter(|k| k.stream.as_ref().is_some_and(|t| !t.is_finished()))
            .count()
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the newest frame of one container's `stats?stream=true` until the Engine
/// closes the stream or the stream is detached (aborted).
async fn follow_stats(
    endpoint: Arc<Endpoint>,
    id: String,
    generation: u64,
    shared: Weak<Mutex<State>>,
) {
    let mut frames = match StatsStream::open(&endpoint, &id, REQUEST_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "stats stream not opened");
            return;
        }
    };
    loop {
        let st = match frames.next().await {
            Ok(st) => st,
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "stats stream ended");
                return;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = lock(&shared);
        match state.containers.get_mut(&id) {
            Some(k) if k.stream_generation == generation => {
                if let Some(usage) = Usage::of_frame(&st) {
                    k.frame = Some(Frame {
                        usage,
                        received: Instant::now(),
                    });
                }
            }
            // Detached or forgotten: this stream is no longer wanted.
            _ => return,
        }
    }
}

/// One-shot stats of a running container, the fallback when it has no stream.
async fn one_shot_stats(docker: &Docker, id: &str) -> Option<Usage> {
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stats = docker.stats(id, Some(opts));
    match tokio::time::timeout(REQUEST_TIMEOUT, stats.next()).await {
        Ok(Some(Ok(st))) => Usage::of_frame(&st),
        Ok(Some(Err(e))) => {
            tracing::debug!(container = %id, error = %e, "one-shot stats failed");
            None
        }
        Ok(None) | Err(_) => None,
    }
}

/// How an inspect went.
enum Inspected {
    Found(Box<ContainerInspectResponse>),
    Gone,
    /// Timed out or failed otherwise: try again on the next tick.
    Retry,
}

async fn inspect(docker: &Docker, id: &str) -> Inspected {
    match tokio::time::timeout(REQUEST_TIMEOUT, docker.inspect_container(id, None)).await {
        Ok(Ok(ins)) => Inspected::Found(Box::new(ins)),
        Ok(Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        })) => Inspected::Gone,
        Ok(Err(e)) => {
            tracing::debug!(container = %id, error = %e, "inspect failed");
            Inspected::Retry
        }
        Err(_) => {
            tracing::debug!(container = %id, "inspect timed out");
            Inspected::Retry
        }
    }
}

/// Events that change what inspect or the stats streams report.
const WATCHED_EVENTS: &[&str] = &[
    "create",
    "start",
    "die",
    "oom",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "update",
    "health_status",
];

/// The task that talks to the Engine: it follows the events stream, inspects the
/// containers the events name, resyncs everything periodically, and keeps one stats
/// stream per running container (one-shot reads where a stream is missing).
struct Watcher {
    host: String,
    /// Where the stats streams connect (`None`: an address they cannot use, so every
    /// container is read one-shot).
    endpoint: Option<Arc<Endpoint>>,
    interval: Duration,
    resync: Duration,
    concurrency: usize,
    max_streams: usize,
    include: ContainerMatch,
    exclude: ContainerMatch,
    shared: Shared,
    settled: tokio::sync::watch::Sender<bool>,
    tally: EventTally,
    /// Ids whose inspect failed or timed out; bounded, an overflow forces a resync.
    retry: HashSet<String>,
}

/// Most ids kept for a retried inspect before the watcher resyncs everything instead.
const MAX_RETRY_IDS: usize = 1024;

impl Watcher {
    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let err = match self.connect().await {
                Ok((docker, since)) => {
                    backoff = FIRST_BACKOFF;
                    self.session(&docker, since).await
                }
                Err(e) => e,
            };
            tracing::debug!(host = %self.host, error = %err, "Docker Engine session ended");
            {
                let mut state = lock(&self.shared);
                state.engine = None;
                state.last_error = err.to_string();
                state.settled = true;
                // Every stream goes with its container; a new session attaches anew.
                state.containers.clear();
            }
            self.retry.clear();
            self.settled.send_replace(true);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn request_err(&self, what: &'static str) -> impl Fn(bollard::errors::Error) -> DockerError {
        let host = self.host.clone();
        move |source| DockerError::Request {
            host: host.clone(),
            what,
            source,
        }
    }

    /// A client with its version negotiated, and the Engine's clock as an events
    /// `since`.
    async fn connect(&self) -> Result<(Docker, Option<String>), DockerError> {
        let secs = REQUEST_TIMEOUT.as_secs();
        let connect_err = |source| DockerError::Connect {
            host: self.host.clone(),
            source,
        };
        let docker = if let Some(path) = self.host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, secs, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(&self.host, secs, bollard::API_DEFAULT_VERSION)
        }
        .map_err(connect_err)?;
        // An older Engine (Debian's 20.10 speaks API 1.41) refuses newer paths.
        let docker = docker.negotiate_version().await.map_err(connect_err)?;
        let info = docker.info().await.map_err(self.request_err("GET /info"))?;
        // Ask for events from the Engine's own clock at connect time, so a restart
        // that happens before the subscription lands is still replayed to us.
        let engine_now = info
            .system_time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| since_arg(d.as_nanos() as i64));
        tracing::info!(host = %self.host, version = ?info.server_version, "connected to the Docker Engine");
        Ok((docker, engine_now))
    }

    /// Runs until the Engine is lost; returns why.
    async fn session(&mut self, docker: &Docker, engine_now: Option<String>) -> DockerError {
        // Subscribe before the first list, so nothing that happens in between is lost.
        let since = self.tally.since().or(engine_now);
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", WATCHED_EVENTS.to_vec()),
        ]);
        let mut opts = EventsOptionsBuilder::new().filters(&filters);
        if let Some(s) = &since {
            opts = opts.since(s);
        }
        let mut events = docker.events(Some(opts.build()));
        if let Err(e) = self.resync(docker).await {
            return e;
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut resync =
            tokio::time::interval_at(tokio::time::Instant::now() + self.resync, self.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => self.on_event(docker, &ev).await,
                    Some(Err(source)) => {
                        return DockerError::Request { host: self.host.clone(), what: "events stream", source };
                    }
                    None => return DockerError::Ended { host: self.host.clone() },
                },
                _ = tick.tick() => self.maintain(docker).await,
                _ = resync.tick() => {
                    if let Err(e) = self.resync(docker).await {
                        return e;
                    }
                }
            }
        }
    }

    async fn on_event(&mut self, docker: &Docker, ev: &EventMessage) {
        self.tally.apply(ev);
        let Some(id) = ev.actor.as_ref().and_then(|a| a.id.clone()) else {
            return;
        };
        match ev.action.as_deref() {
            Some("destroy") => {
                lock(&self.shared).containers.remove(&id);
                self.retry.remove(&id);
            }
            Some("die") => {
                // Its stream ends with it; stale usage must not outlive the process.
                if let Some(k) = lock(&self.shared).containers.get_mut(&id) {
                    k.running = false;
                    k.detach();
                }
                self.refresh(docker, &id).await;
            }
            _ => self.refresh(docker, &id).await,
        }
    }

    /// Inspects one container and folds the answer into the state.
    async fn refresh(&mut self, docker: &Docker, id: &str) {
        let got = inspect(docker, id).await;
        self.apply(id, got);
    }

    fn apply(&mut self, id: &str, got: Inspected) {
        let ins = match got {
            Inspected::Found(ins) => ins,
            Inspected::Gone => {
                lock(&self.shared).containers.remove(id);
                self.retry.remove(id);
                return;
            }
            Inspected::Retry => {
                if self.retry.len() < MAX_RETRY_IDS {
                    self.retry.insert(id.to_string());
                }
                return;
            }
        };
        self.retry.remove(id);
        let name = ins.name.as_deref().unwrap_or("").trim_start_matches('/');
        let labels = ins
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .cloned()
            .unwrap_or_default();
        let mut state = lock(&self.shared);
        if !selected(&self.include, &self.exclude, name, &labels) {
            state.containers.remove(id);
            return;
        }
        let pending = self.tally.take(id);
        let streams = state.streams();
        let k = state
            .containers
            .entry(id.to_string())
            .or_insert_with(Known::new);
        k.tracked.reconcile(&pending, &inspect_counters(&ins));
        k.sample = sample_from(&ins, None, &k.tracked);
        k.running = ins.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !k.running {
            k.detach();
        } else if k.stream.is_none() && streams < self.max_streams {
            attach(k, self.endpoint.as_ref(), id, &self.shared);
        }
    }

    /// Lists every container, inspects the selected ones (a bounded number at once),
    /// forgets those that are gone, and re-reads the Engine's description.
    async fn resync(&mut self, docker: &Docker) -> Result<(), DockerError> {
        let info = tokio::time::timeout(REQUEST_TIMEOUT, docker.info()).await;
        let info = match info {
            Ok(r) => r.map_err(self.request_err("GET /info"))?,
            Err(_) => return Err(self.timed_out("GET /info")),
        };
        let list = tokio::time::timeout(
            REQUEST_TIMEOUT,
            docker.list_containers(Some(ListContainersOptionsBuilder::new().all(true).build())),
        )
        .await;
        let list = match list {
            Ok(r) => r.map_err(self.request_err("GET /containers/json"))?,
            Err(_) => return Err(self.timed_out("GET /containers/json")),
        };
        let ids: Vec<String> = list
            .into_iter()
            .filter(|c| {
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map_or("", |n| n.trim_start_matches('/'));
                let empty = HashMap::new();
                selected(
                    &self.include,
                    &self.exclude,
                    name,
                    c.labels.as_ref().unwrap_or(&empty),
                )
            })
            .filter_map(|c| c.id)
            .collect();
        let listed: HashSet<&String> = ids.iter().collect();
        lock(&self.shared)
            .containers
            .retain(|id, _| listed.contains(id));
        let reads = each_bounded(ids, self.concurrency, |id| async move {
            let got = inspect(docker, &id).await;
            (id, got)
        })
        .await;
        for (id, got) in reads {
            self.apply(&id, got);
        }
        let mut state = lock(&self.shared);
        state.engine = Some(engine_info(&info));
        state.settled = true;
        drop(state);
        self.settled.send_replace(true);
        Ok(())
    }

    fn timed_out(&self, what: &'static str) -> DockerError {
        DockerError::TimedOut {
            host: self.host.clone(),
            what,
        }
    }

    /// Once per interval: retries failed inspects, re-attaches failed streams after
    /// their backoff, and reads one-shot stats for running containers without a stream.
    async fn maintain(&mut self, docker: &Docker) {
        if self.retry.len() >= MAX_RETRY_IDS {
            self.retry.clear();
            if let Err(e) = self.resync(docker).await {
                tracing::debug!(error = %e, "resync after too many failed inspects");
            }
        }
        for id in std::mem::take(&mut self.retry) {
            self.refresh(docker, &id).await;
        }
        let now = Instant::now();
        let poll: Vec<String> = {
            let mut state = lock(&self.shared);
            let mut streams = state.streams();
            let mut poll = Vec::new();
            for (id, k) in state.containers.iter_mut().filter(|(_, k)| k.running) {
                if k.stream.as_ref().is_some_and(Task::is_finished) {
                    // The Engine closed a running container's stream: back off before
                    // the next one and read one-shot meanwhile.
                    tracing::debug!(container = %id, "stats stream failed; falling back to one-shot reads");
                    k.detach();
                    k.stream_retry_at = Some(now + k.stream_backoff);
                    k.stream_backoff = (k.stream_backoff * 2).min(MAX_BACKOFF);
                }
                if k.stream.is_some() {
                    continue;
                }
                if k.stream_retry_at.is_none_or(|at| at <= now)
                    && streams < self.max_streams
                    && attach(k, self.endpoint.as_ref(), id, &self.shared)
                {
                    streams += 1;
                } else {
                    poll.push(id.clone());
                }
            }
            poll
        };
        if poll.is_empty() {
            return;
        }
        let reads = each_bounded(poll, self.concurrency, |id| async move {
            let got = one_shot_stats(docker, &id).await;
            (id, got)
        })
        .await;
        let mut state = lock(&self.shared);
        state.fallbacks_total += reads.len() as u64;
        for (id, usage) in reads {
            if let (Some(k), Some(usage)) = (state.containers.get_mut(&id), usage) {
                if k.running && k.stream.is_none() {
                    k.frame = Some(Frame {
                        usage,
                        received: Instant::now(),
                    });
                }
            }
        }
    }
}

/// `read` for every id, at most `concurrency` at a time, each answer beside its id.
async fn each_bounded<T, F>(
    ids: Vec<String>,
    concurrency: usize,
    read: impl Fn(String) -> F,
) -> Vec<(String, T)>
where
    F: std::future::Future<Output = (String, T)>,
{
    futures_util::stream::iter(ids)
        .map(read)
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Starts the stats stream of a running container; false without an endpoint (the
/// container is then read one-shot).
fn attach(k: &mut Known, endpoint: Option<&Arc<Endpoint>>, id: &str, shared: &Shared) -> bool {
    let Some(endpoint) = endpoint else {
        return false;
    };
    k.stream_generation += 1;
    k.stream = Some(Task::spawn(follow_stats(
        Arc::clone(endpoint),
        id.to_string(),
        k.stream_generation,
        Arc::downgrade(shared),
    )));
    true
}

/// Collects every selected container of one Docker Engine. The cycle itself only reads
/// what the watcher task keeps; it never waits on the Engine.
pub struct ContainerCollector {
    host: String,
    /// How long the first cycle waits for the first connection attempt.
    first_wait: Duration,
    settings: Option<Watcher>,
    watcher: Option<Task>,
    settled: tokio::sync::watch::Receiver<bool>,
    shared: Shared,
    /// The last successful cycle's report; `None` after a failure.
    latest: Option<Arc<Report>>,
}

impl ContainerCollector {
    /// A collector for `cfg`; nothing connects until the first cycle.
    pub fn new(cfg: &ContainersConfig) -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let host = resolve_docker_host(cfg.docker_host.as_deref(), home.as_deref(), |p| p.exists());
        let shared: Shared = Arc::default();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let watcher = Watcher {
            endpoint: Endpoint::parse(&host).map(Arc::new),
            host: host.clone(),
            interval: cfg.interval.get(),
            resync: cfg.resync_interval.get(),
            concurrency: cfg.max_concurrent_requests.max(1),
            max_streams: cfg.max_streams,
            include: cfg.include.clone(),
            exclude: cfg.exclude.clone(),
            shared: Arc::clone(&shared),
            settled: tx,
            tally: EventTally::default(),
            retry: HashSet::new(),
        };
        ContainerCollector {
            host,
            first_wait: cfg.timeout.get() * 3 / 4,
            settings: Some(watcher),
            watcher: None,
            settled: rx,
            shared,
            latest: None,
        }
    }

    /// The address in use, for logs and the API.
    pub fn host(&self) -> &str {
        &self.host
    }

    async fn cycle(&mut self) -> Result<Report, CollectError> {
        if let Some(w) = self.settings.take() {
            self.watcher = Some(Task::spawn(w.run()));
            // The first cycle waits (briefly) for the first connection, so a daemon
            // that starts beside a running Engine does not begin with a failure.
            let _ = tokio::time::timeout(self.first_wait, self.settled.wait_for(|s| *s)).await;
        }
        let state = lock(&self.shared);
        let Some(engine) = state.engine.clone() else {
            let why = if state.settled {
                state.last_error.clone()
            } else {
                format!("connecting to the Docker Engine at {}", self.host)
            };
            return Err(CollectError(why));
        };
        let now = Instant::now();
        let mut containers: Vec<ContainerSample> = state
            .containers
            .values()
            .map(|k| {
                let mut s = k.sample.clone();
                if let Some(f) = k.frame.as_ref().filter(|_| k.running) {
                    f.usage.apply_to(&mut s);
                    s.stats_age_seconds = Some(now.duration_since(f.received).as_secs_f64());
                }
                s
            })
            .collect();
        let stats_streams = state.streams();
        let stats_fallbacks_total = state.fallbacks_total;
        drop(state);
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Report {
            collected_at_unix: crate::clock::unix_now(),
            docker_host: self.host.clone(),
            engine,
            containers,
            stats_streams,
            stats_fallbacks_total,
        })
    }
}

impl Drop for ContainerCollector {
    fn drop(&mut self) {
        // Stops the watcher, then every stream with the state that owns it.
        self.watcher = None;
        lock(&self.shared).containers.clear();
    }
}

impl Collector for ContainerCollector {
    fn name(&self) -> &'static str {
        super::CONTAINERS
    }

    async fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        match self.cycle().await {
            Ok(report) => {
                let fams = families(&report);
                self.latest = Some(Arc::new(report));
                Ok(fams)
            }
            Err(e) => {
                self.latest = None;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, EventMessage};

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{}/testdata/docker/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn event(action: &str, id: &str, t: i64, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            time_nano: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn globs() {
        assert!(glob("nautilus-*", "nautilus-risk-engine"));
        assert!(glob("*engine", "nautilus-ml-engine"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(!glob("nautilus-*", "grafana"));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn include_and_exclude_by_name_and_label() {
        let labels: HashMap<String, String> = [
            ("m4watch.tier".to_string(), "engine".to_string()),
            (
                "com.docker.compose.project".to_string(),
                "nautilus".to_string(),
            ),
        ]
        .into();
        let m = |names: &[&str], labels: &[&str]| ContainerMatch {
            names: names.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        };
        let none = ContainerMatch::default();
        assert!(selected(&none, &none, "anything", &HashMap::new()));
        assert!(selected(
            &m(&["nautilus-*"], &[]),
            &none,
            "nautilus-redis",
            &labels
        ));
        assert!(!selected(
            &m(&["nautilus-*"], &[]),
            &none,
            "redis",
            &HashMap::new()
        ));
        assert!(selected(
            &m(&[], &["m4watch.tier=eng*"]),
            &none,
            "x",
            &labels
        ));
        assert!(selected(&m(&[], &["m4watch.tier"]), &none, "x", &labels));
        assert!(!selected(
            &m(&[], &["m4watch.tier=db"]),
            &none,
            "x",
            &labels
        ));
        assert!(!selected(
            &none,
            &m(&[], &["com.docker.compose.project=nautilus"]),
            "x",
            &labels
        ));
        assert!(!selected(
            &m(&["*"], &[]),
            &m(&["*-test"], &[]),
            "a-test",
            &labels
        ));
    }

    #[test]
    fn a_start_after_a_die_is_a_restart_and_replays_are_skipped() {
        let mut t = EventTally::default();
        t.apply(&event("start", "c1", 1, &[]));
        assert_eq!(t.take("c1").restarts, 0, "a first start is no restart");
        t.apply(&event("die", "c1", 2, &[("exitCode", "1")]));
        t.apply(&event("start", "c1", 3, &[]));
        t.apply(&event("oom", "c1", 4, &[]));
        t.apply(&event("die", "c1", 5, &[("exitCode", "137")]));
        t.apply(&event("start", "c1", 6, &[]));
        // A resubscription replays from `since`: already counted events are skipped.
        t.apply(&event("start", "c1", 6, &[]));
        t.apply(&event("die", "c1", 5, &[("exitCode", "137")]));
        let p = t.take("c1");
        assert_eq!(
            (p.restarts, p.oom_kills, p.last_exit_code),
            (2, 1, Some(137))
        );
        assert_eq!(t.take("c1"), Pending::default(), "taken counts reset");
        assert_eq!(t.since().as_deref(), Some("0.000000006"));
        t.apply(&event("die", "c1", 7, &[]));
        t.apply(&event("destroy", "c1", 8, &[]));
        assert_eq!(
            t.take("c1"),
            Pending::default(),
            "destroy forgets the container"
        );
    }

    fn ins(
        restart_count: u64,
        oom_killed: bool,
        finished: Option<&str>,
        exit: Option<i64>,
    ) -> InspectCounters {
        InspectCounters {
            restart_count,
            oom_killed,
            finished_at: finished.map(str::to_string),
            exit_code: exit,
        }
    }

    #[test]
    fn counters_take_the_larger_of_events_and_inspect_without_double_counting() {
        let mut t = Tracked::default();
        // First sight of a container Docker has restarted 3 times already.
        t.reconcile(
            &Pending::default(),
            &ins(3, false, Some("2026-01-01T00:00:01Z"), None),
        );
        assert_eq!(t.restarts(), 3);
        // Events saw two restarts; the inspect of this cycle was read before the second.
        let two = Pending {
            restarts: 2,
            ..Default::default()
        };
        t.reconcile(&two, &ins(4, false, None, None));
        assert_eq!(t.restarts(), 4);
        // Next cycle inspect catches up: nothing counted twice.
        t.reconcile(&Pending::default(), &ins(5, false, None, None));
        assert_eq!(t.restarts(), 5);
        // A manual restart: Docker resets nothing and counts nothing, events do.
        let manual = Pending {
            restarts: 1,
            ..Default::default()
        };
        t.reconcile(&manual, &ins(5, false, None, None));
        assert_eq!(
            t.restarts(),
            5,
            "events total 3 stays below inspect total 5"
        );
    }

    #[test]
    fn an_oom_that_healed_between_cycles_is_counted_from_events() {
        let mut t = Tracked::default();
        t.reconcile(&Pending::default(), &ins(0, false, None, None));
        // Killed and restarted by the policy between two cycles: inspect shows a
        // running container with OOMKilled cleared.
        let ev = Pending {
            restarts: 1,
            oom_kills: 1,
            last_exit_code: Some(137),
            ..Default::default()
        };
        t.reconcile(&ev, &ins(1, false, Some("2026-01-01T00:00:02Z"), None));
        assert_eq!(
            (t.restarts(), t.oom_kills(), t.last_exit_code()),
            (1, 1, Some(137))
        );
        // Killed again and left down: inspect and events report the same kill.
        let ev = Pending {
            oom_kills: 1,
            last_exit_code: Some(137),
            ..Default::default()
        };
        t.reconcile(&ev, &ins(1, true, Some("2026-01-01T00:00:03Z"), Some(137)));
        assert_eq!(t.oom_kills(), 2);
        // Nothing new: the same FinishedAt is not a new kill.
        t.reconcile(
            &Pending::default(),
            &ins(1, true, Some("2026-01-01T00:00:03Z"), Some(137)),
        );
        assert_eq!(t.oom_kills(), 2);
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

    #[test]
    fn docker_host_defaults_and_desktop_fallback() {
        let never = |_: &Path| false;
        assert_eq!(
            resolve_docker_host(Some("tcp://10.0.0.2:2375"), None, never),
            "tcp://10.0.0.2:2375"
        );
        assert_eq!(
            resolve_docker_host(Some("/run/user/1000/docker.sock"), None, never),
            "unix:///run/user/1000/docker.sock"
        );
        assert_eq!(
            resolve_docker_host(None, None, never),
            "unix:///var/run/docker.sock"
        );
        let desktop_only = |p: &Path| p.ends_with(".docker/run/docker.sock");
        let want = if cfg!(target_os = "macos") {
            "unix:///Users/trader/.docker/run/docker.sock"
        } else {
            "unix:///var/run/docker.sock"
        };
        assert_eq!(
            resolve_docker_host(None, Some(Path::new("/Users/trader")), desktop_only),
            want
        );
    }
}
