//! The monitoring views built from what the store holds now: the M4 Max hardware
//! snapshot, per-core utilisation, system health, the status page and the dashboard
//! summary. Nothing here collects: every number comes from the families the
//! collectors last published, so the JSON and `/metrics` cannot disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::alerts::evaluate::RULES_LOADED;
use crate::collect::hardware::apple::{
    ANE_POWER_WATTS, ANE_UTILIZATION_ESTIMATE_RATIO, CHIP_INFO, CPU_ACTIVE_RATIO,
    CPU_FREQUENCY_HERTZ, FAN_SPEED_RPM, GPU_FREQUENCY_HERTZ, GPU_MEMORY_USED_BYTES,
    GPU_UTILIZATION_RATIO, MEMORY_PRESSURE_LEVEL,
};
use crate::collect::hardware::{
    CPU_CLUSTER_UTILIZATION_RATIO, CPU_CORES, CPU_INFO, CPU_UTILIZATION_RATIO, MEMORY_BYTES,
    MEMORY_PRESSURE_RATIO, MEMORY_TOTAL_BYTES, POWER_WATTS, TEMPERATURE_CELSIUS, THERMAL_PRESSURE,
};
use crate::collect::probes::ProbeResult;
use crate::model::alert::Severity;
use crate::store::CollectorStatus;
use crate::store::index::{Families, label};

/// Read routes; mounted behind the read check by [`super::api`].
pub fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(hardware_metrics))
        .routes(routes!(core_utilization))
        .routes(routes!(system_health))
        .routes(routes!(optimization_health))
        .routes(routes!(status))
        .routes(routes!(dashboard_summary))
}

// --- hardware snapshot ----------------------------------------------------------

/// One logical CPU.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoreView {
    pub cpu: u32,
    /// `performance` or `efficiency`.
    #[serde(rename = "type")]
    pub core_type: String,
    pub cluster: String,
    /// Busy share (0..1) over the last collection interval; absent before two readings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_hz: Option<f64>,
    /// Share of the window in an active frequency state (macOS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_ratio: Option<f64>,
}

/// All CPUs of one core type.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoreTypeView {
    #[serde(rename = "type")]
    pub core_type: String,
    pub cores: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
}

/// One CPU cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    pub cluster: String,
    #[serde(rename = "type")]
    pub core_type: String,
    pub cpus: Vec<u32>,
    /// Mean utilisation of the cluster's CPUs that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_hz: Option<f64>,
}

/// CPU: per core, per core type, per cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct CpuView {
    pub cores: Vec<CoreView>,
    pub types: Vec<CoreTypeView>,
    pub clusters: Vec<ClusterView>,
}

/// The chip, where the platform names it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChipView {
    pub chip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance_cores: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efficiency_cores: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_cores: Option<u32>,
}

/// Memory and its pressure.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<f64>,
    /// Bytes by state (`used`, `available`, `wired`, `compressed`, `swap_used`, ...);
    /// states the platform does not report are absent.
    pub bytes: BTreeMap<String, f64>,
    /// Linux PSI: share of time some task stalled on memory, per window (`10s`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pressure_ratio: BTreeMap<String, f64>,
    /// macOS memory pressure level: `normal`, `warn` or `critical`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pressure_level: Option<String>,
}

/// The GPU.
#[derive(Debug, Serialize, ToSchema)]
pub struct GpuView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_hz: Option<f64>,
}

/// The Neural Engine (no public API reports its utilisation: the ratio is an
/// estimate from power).
#[derive(Debug, Serialize, ToSchema)]
pub struct AneView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization_estimate: Option<f64>,
}

/// Body of `GET /api/v1/monitoring/m4max/hardware/metrics`. Parts the platform does
/// not report are absent (a Linux host has no GPU or ANE section).
#[derive(Debug, Serialize, ToSchema)]
pub struct HardwareSnapshot {
    /// Unix time of the hardware collector's last successful run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chip: Option<ChipView>,
    pub cpu: CpuView,
    pub memory: MemoryView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ane: Option<AneView>,
    /// Watts per rail (`cpu`, `gpu`, `ane`, `dram`, `system`, `package-0`, ...).
    pub power_watts: BTreeMap<String, f64>,
    /// Degrees Celsius per sensor.
    pub temperatures_celsius: BTreeMap<String, f64>,
    /// `nominal`, `fair`, `serious` or `critical`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermal_pressure: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fans_rpm: BTreeMap<String, f64>,
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = xs.fold((0u32, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / f64::from(n))
}

/// Builds the hardware snapshot from the families.
pub fn hardware_snapshot(f: &Families, collected_at: Option<f64>) -> HardwareSnapshot {
    let util = f.by_label(CPU_UTILIZATION_RATIO.name, "cpu");
    let active = f.by_label(CPU_ACTIVE_RATIO.name, "cpu");
    let freq: BTreeMap<String, f64> = f
        .samples(CPU_FREQUENCY_HERTZ.name)
        .filter_map(|(l, v)| label(l, "cpu").map(|c| (c.to_string(), v)))
        .collect();
    let cluster_freq: BTreeMap<String, f64> = f
        .samples(CPU_FREQUENCY_HERTZ.name)
        .filter(|(l, _)| label(l, "cpu").is_none())
        .filter_map(|(l, v)| label(l, "cluster").map(|c| (c.to_string(), v)))
        .collect();
    let mut cores: Vec<CoreView> = f
        .samples(CPU_INFO.name)
        .filter_map(|(l, _)| {
            let cpu = label(l, "cpu")?;
            Some(CoreView {
                cpu: cpu.parse().ok()?,
                core_type: label(l, "type")?.to_string(),
                cluster: label(l, "cluster").unwrap_or_default().to_string(),
                utilization: util.get(cpu).copied(),
                frequency_hz: freq.get(cpu).copied(),
                active_ratio: active.get(cpu).copied(),
            })
        })
        .collect();
    cores.sort_by_key(|c| c.cpu);
    let type_util = f.by_label(CPU_CLUSTER_UTILIZATION_RATIO.name, "type");
    let mut types: Vec<CoreTypeView> = f
        .samples(CPU_CORES.name)
        .filter_map(|(l, n)| {
            let t = label(l, "type")?;
            Some(CoreTypeView {
                core_type: t.to_string(),
                cores: n as u32,
                utilization: type_util.get(t).copied(),
            })
        })
        .collect();
    types.sort_by(|a, b| a.core_type.cmp(&b.core_type));
    let mut clusters: BTreeMap<&str, ClusterView> = BTreeMap::new();
    for c in &cores {
        let v = clusters.entry(&c.cluster).or_insert_with(|| ClusterView {
            cluster: c.cluster.clone(),
            core_type: c.core_type.clone(),
            cpus: Vec::new(),
            utilization: None,
            frequency_hz: cluster_freq.get(&c.cluster).copied(),
        });
        v.cpus.push(c.cpu);
    }
    let clusters = clusters
        .into_values()
        .map(|mut cl| {
            cl.utilization = mean(
                cores
                    .iter()
                    .filter(|c| cl.cpus.contains(&c.cpu))
                    .filter_map(|c| c.utilization),
            );
            cl
        })
        .collect();

    let chip = f.samples(CHIP_INFO.name).next().map(|(l, _)| {
        let n = |k: &str| label(l, k).and_then(|v| v.parse().ok());
        ChipView {
            chip: label(l, "chip").unwrap_or_default().to_string(),
            performance_cores: n("performance_cores"),
            efficiency_cores: n("efficiency_cores"),
            gpu_cores: n("gpu_cores"),
        }
    });
    let gpu = GpuView {
        utilization: f.value(GPU_UTILIZATION_RATIO.name, &[]),
        memory_used_bytes: f.value(GPU_MEMORY_USED_BYTES.name, &[]),
        frequency_hz: f.value(GPU_FREQUENCY_HERTZ.name, &[]),
    };
    let gpu = (gpu.utilization.is_some()
        || gpu.memory_used_bytes.is_some()
        || gpu.frequency_hz.is_some())
    .then_some(gpu);
    let ane = AneView {
        power_watts: f.value(ANE_POWER_WATTS.name, &[]),
        utilization_estimate: f.value(ANE_UTILIZATION_ESTIMATE_RATIO.name, &[]),
    };
    let ane = (ane.power_watts.is_some() || ane.utilization_estimate.is_some()).then_some(ane);

    HardwareSnapshot {
        collected_at,
        chip,
        cpu: CpuView {
            cores,
            types,
            clusters,
        },
        memory: MemoryView {
            total_bytes: f.value(MEMORY_TOTAL_BYTES.name, &[]),
            bytes: f.by_label(MEMORY_BYTES.name, "state"),
            pressure_ratio: f.by_label(MEMORY_PRESSURE_RATIO.name, "window"),
            pressure_level: f.state(MEMORY_PRESSURE_LEVEL.name, "level"),
        },
        gpu,
        ane,
        power_watts: f.by_label(POWER_WATTS.name, "rail"),
        temperatures_celsius: f.by_label(TEMPERATURE_CELSIUS.name, "sensor"),
        thermal_pressure: f.state(THERMAL_PRESSURE.name, "state"),
        fans_rpm: f.by_label(FAN_SPEED_RPM.name, "fan"),
    }
}

fn hardware_on(s: &AppState) -> Result<Option<f64>, ApiError> {
    if !s.config.hardware.enabled {
        return Err(ApiError::not_found(
            "the hardware collector is disabled (hardware.enabled: false)",
        ));
    }
    Ok(s.store
        .collectors()
        .get("hardware")
        .and_then(|c| c.last_success_unix))
}

/// The current hardware snapshot: cores with type and utilisation, clusters, memory
/// and pressure, GPU, Neural Engine, power, temperatures, thermal state.
#[utoipa::path(get, path = "/api/v1/monitoring/m4max/hardware/metrics", tag = "hardware",
    responses(
        (status = 200, body = HardwareSnapshot),
        (status = 401, body = ErrorBody),
        (status = 404, description = "the hardware collector is disabled", body = ErrorBody),
    ))]
async fn hardware_metrics(
    State(s): State<Arc<AppState>>,
) -> Result<Json<HardwareSnapshot>, ApiError> {
    let at = hardware_on(&s)?;
    Ok(Json(hardware_snapshot(
        &Families::of(s.store.families()),
        at,
    )))
}

/// Body of `GET /api/v1/optimization/core-utilization`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoreUtilization {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected_at: Option<f64>,
    pub cores: Vec<CoreView>,
    pub types: Vec<CoreTypeView>,
}

/// Per-core CPU utilisation with each core's type (the original API's view).
#[utoipa::path(get, path = "/api/v1/optimization/core-utilization", tag = "hardware",
    responses(
        (status = 200, body = CoreUtilization),
        (status = 401, body = ErrorBody),
        (status = 404, description = "the hardware collector is disabled", body = ErrorBody),
    ))]
async fn core_utilization(
    State(s): State<Arc<AppState>>,
) -> Result<Json<CoreUtilization>, ApiError> {
    let at = hardware_on(&s)?;
    let snap = hardware_snapshot(&Families::of(s.store.families()), at);
    Ok(Json(CoreUtilization {
        collected_at: at,
        cores: snap.cpu.cores,
        types: snap.cpu.types,
    }))
}

// --- system health --------------------------------------------------------------

/// Below this performance score the system is degraded (the shipped
/// `PerformanceScoreLow` rule's threshold).
pub const SCORE_DEGRADED_BELOW: f64 = 85.0;
/// Below this performance score the system is critical.
pub const SCORE_CRITICAL_BELOW: f64 = 50.0;

/// Overall state, worst reason first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Healthy,
    Degraded,
    Critical,
}

/// One reason the system is not healthy.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReason {
    /// `collector_failing`, `alerts_firing`, `score_low`.
    pub kind: &'static str,
    pub severity: HealthState,
    pub detail: String,
}

/// Body of `GET /api/v1/monitoring/system/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemHealth {
    pub status: HealthState,
    pub reasons: Vec<HealthReason>,
    /// Firing alerts per severity label.
    pub firing_alerts: BTreeMap<String, u64>,
    /// The performance score (0..100); absent when no component has data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance_score: Option<f64>,
    pub collectors: BTreeMap<String, CollectorStatus>,
}

/// Works out the system's health from collector runs, engine probes, firing alerts
/// and the score. A failing collector, a failing probe or a firing warning degrades; a
/// firing critical or emergency alert, or a score below [`SCORE_CRITICAL_BELOW`],
/// makes it critical. Firing info alerts and an absent score (no data) change nothing.
pub fn system_health_of(
    collectors: BTreeMap<String, CollectorStatus>,
    probes: &[ProbeResult],
    firing_alerts: BTreeMap<String, u64>,
    performance_score: Option<f64>,
) -> SystemHealth {
    let mut reasons = Vec::new();
    for (name, c) in &collectors {
        if !c.success {
            reasons.push(HealthReason {
                kind: "collector_failing",
                severity: HealthState::Degraded,
                detail: format!(
                    "collector {name} failed its last run: {}",
                    c.last_error.as_deref().unwrap_or("no detail")
                ),
            });
        }
    }
    for p in probes.iter().filter(|p| !p.success) {
        reasons.push(HealthReason {
            kind: "probe_failing",
            severity: HealthState::Degraded,
            detail: format!(
                "probe {} failed: {}",
                p.target,
                p.error.as_deref().unwrap_or("no detail")
            ),
        });
    }
    // Worst severity first, so the reasons read in order of urgency.
    let mut by_severity: Vec<(Severity, &String, &u64)> = firing_alerts
        .iter()
        .map(|(word, n)| (Severity::of_label(Some(word)), word, n))
        .collect();
    by_severity.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (severity, word, n) in by_severity {
        let level = match severity {
            Severity::Emergency | Severity::Critical => HealthState::Critical,
            Severity::Warning => HealthState::Degraded,
            Severity::Info => continue,
        };
        reasons.push(HealthReason {
            kind: "alerts_firing",
            severity: level,
            detail: format!("{n} {word} alert(s) firing"),
        });
    }
    if let Some(score) = performance_score {
        let level = if score < SCORE_CRITICAL_BELOW {
            Some((HealthState::Critical, SCORE_CRITICAL_BELOW))
        } else if score < SCORE_DEGRADED_BELOW {
            Some((HealthState::Degraded, SCORE_DEGRADED_BELOW))
        } else {
            None
        };
        if let Some((level, below)) = level {
            reasons.push(HealthReason {
                kind: "score_low",
                severity: level,
                detail: format!("performance score {score:.1} is below {below}"),
            });
        }
    }
    reasons.sort_by_key(|r| std::cmp::Reverse(r.severity));
    SystemHealth {
        status: reasons
            .iter()
            .map(|r| r.severity)
            .max()
            .unwrap_or(HealthState::Healthy),
        reasons,
        firing_alerts,
        performance_score,
        collectors,
    }
}

/// Pending and firing alerts counted by state (`pending`, `firing`) and severity.
fn active_alerts(s: &AppState) -> BTreeMap<(&'static str, String), u64> {
    let mut out = BTreeMap::new();
    for a in s.alerts.active() {
        let state = match a.state {
            crate::model::alert::State::Firing => "firing",
            crate::model::alert::State::Pending => "pending",
            _ => continue,
        };
        *out.entry((state, a.severity.to_string())).or_insert(0) += 1;
    }
    out
}

/// Firing alerts per severity, from [`active_alerts`].
fn firing_by_severity(counts: &BTreeMap<(&'static str, String), u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .filter(|((state, _), _)| *state == "firing")
        .map(|((_, severity), n)| (severity.clone(), *n))
        .collect()
}

fn score(s: &AppState) -> Option<f64> {
    s.trading.as_ref().and_then(|t| t.view().score.score)
}

fn current_health(s: &AppState) -> SystemHealth {
    health_with(s, &active_alerts(s))
}

fn health_with(s: &AppState, alerts: &BTreeMap<(&'static str, String), u64>) -> SystemHealth {
    let probes = s.store.views().probes.get().unwrap_or_default();
    system_health_of(
        s.store.collectors(),
        &probes,
        firing_by_severity(alerts),
        score(s),
    )
}

/// `healthy`, `degraded` or `critical`, with the reasons: failing collectors, firing
/// alerts by severity, the performance score.
#[utoipa::path(get, path = "/api/v1/monitoring/system/health", tag = "monitoring",
    responses((status = 200, body = SystemHealth), (status = 401, body = ErrorBody)))]
async fn system_health(State(s): State<Arc<AppState>>) -> Json<SystemHealth> {
    Json(current_health(&s))
}

/// The original API's "current system health": the same answer as
/// `/api/v1/monitoring/system/health`.
#[utoipa::path(get, path = "/api/v1/optimization/health", tag = "monitoring",
    responses((status = 200, body = SystemHealth), (status = 401, body = ErrorBody)))]
async fn optimization_health(State(s): State<Arc<AppState>>) -> Json<SystemHealth> {
    Json(current_health(&s))
}

// --- status ---------------------------------------------------------------------

/// One collector as configured, with its last run.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectorSummary {
    pub name: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// Absent until the collector has run once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<CollectorStatus>,
}

/// The rule engine.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesSummary {
    pub enabled: bool,
    /// Rule files; empty means the shipped rules embedded in the binary.
    pub files: Vec<String>,
    pub evaluation_interval_seconds: f64,
    /// Alerting and recording rules loaded; absent before the first evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<u64>,
}

/// One notification receiver: its integrations, never their secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverSummary {
    pub name: String,
    pub integrations: Vec<&'static str>,
}

/// The configuration in short; secrets are reported only as set or not.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigSummary {
    pub listen: String,
    pub data_dir: String,
    pub write_token_set: bool,
    pub read_token_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statsd_listen: Option<String>,
    /// The Docker Engine address; absent when the container collector is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
    pub probe_targets: usize,
}

/// Body of `GET /api/v1/monitoring/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub version: &'static str,
    pub revision: &'static str,
    pub uptime_seconds: f64,
    pub started_at: f64,
    pub health: HealthState,
    pub config: ConfigSummary,
    pub collectors: Vec<CollectorSummary>,
    pub rules: RulesSummary,
    pub receivers: Vec<ReceiverSummary>,
}

fn integrations(r: &crate::config::notify::ReceiverConfig) -> Vec<&'static str> {
    [
        ("slack", r.slack.is_some()),
        ("email", r.email.is_some()),
        ("pagerduty", r.pagerduty.is_some()),
        ("webhook", r.webhook.is_some()),
        ("alertmanager", r.alertmanager.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect()
}

/// Version, uptime, configuration summary (secrets redacted), collectors and their
/// last success, rules loaded, receivers.
#[utoipa::path(get, path = "/api/v1/monitoring/status", tag = "monitoring",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
async fn status(State(s): State<Arc<AppState>>) -> Json<Status> {
    let c = &s.config;
    let runs = s.store.collectors();
    let mut collectors = s
        .collectors
        .iter()
        .map(|e| CollectorSummary {
            name: e.name().to_string(),
            enabled: e.enabled,
            interval_seconds: Some(e.interval.as_secs_f64()),
            last_run: runs.get(e.name()).cloned(),
        })
        .collect::<Vec<_>>();
    // Runs outside the registry (the recommendations) still show up.
    for (name, run) in &runs {
        if !collectors.iter().any(|x| &x.name == name) {
            collectors.push(CollectorSummary {
                name: name.clone(),
                enabled: true,
                interval_seconds: None,
                last_run: Some(run.clone()),
            });
        }
    }
    let families = Families::of(s.store.families());
    let build = crate::store::BuildInfo::current();
    let uptime = s.started.elapsed().as_secs_f64();
    Json(Status {
        version: build.version,
        revision: build.revision,
        uptime_seconds: uptime,
        started_at: crate::clock::unix_now() - uptime,
        health: current_health(&s).status,
        config: ConfigSummary {
            listen: c.listen.to_string(),
            data_dir: c.data_dir.display().to_string(),
            write_token_set: c.api.token.is_some(),
            read_token_set: c.api.read_token.is_some(),
            statsd_listen: s
                .trading
                .as_ref()
                .and_then(|t| t.statsd_addr())
                .map(|a| a.to_string()),
            docker_host: c
                .containers
                .enabled
                .then(|| {
                    crate::collect::containers::latest(&s.store)
                        .map(|r| r.docker_host.clone())
                        .or_else(|| c.containers.docker_host.clone())
                })
                .flatten(),
            probe_targets: c.probes.targets.len(),
        },
        collectors,
        rules: RulesSummary {
            enabled: c.rules.enabled,
            files: c
                .rules
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            evaluation_interval_seconds: c.rules.evaluation_interval.get().as_secs_f64(),
            loaded: families.value(RULES_LOADED.name, &[]).map(|v| v as u64),
        },
        receivers: s
            .notifier
            .receivers()
            .iter()
            .map(|r| ReceiverSummary {
                name: r.name.clone(),
                integrations: integrations(r),
            })
            .collect(),
    })
}

// --- dashboard summary ----------------------------------------------------------

/// Hardware headline numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct HardwareSummary {
    /// Mean utilisation per core type.
    pub cpu_utilization: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ane_utilization_estimate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_temperature_celsius: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermal_pressure: Option<String>,
}

/// Container headline numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainersSummary {
    pub running: usize,
    pub total: usize,
    pub unhealthy: Vec<String>,
}

/// Trading headline numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradingSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance_score: Option<f64>,
    pub coverage_ratio: f64,
    pub operations: usize,
    /// Worst p99 over the shortest window, in milliseconds, with its operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_p99_operation: Option<String>,
}

/// Body of `GET /api/v1/monitoring/dashboard/summary`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardSummary {
    pub generated_at: f64,
    pub health: HealthState,
    pub reasons: Vec<HealthReason>,
    /// Pending and firing alerts per state and severity (`firing/critical`: 2).
    pub alerts: BTreeMap<String, u64>,
    /// Absent when the hardware collector is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareSummary>,
    /// Absent when the container collector is off or has no report yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<ContainersSummary>,
    /// Absent when trading is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trading: Option<TradingSummary>,
    /// The five most severe recommendations (all of them at
    /// `/api/v1/monitoring/performance/optimizations`).
    pub recommendations: Vec<crate::advise::Recommendation>,
}

fn hardware_summary(f: &Families) -> HardwareSummary {
    let mem_total = f.value(MEMORY_TOTAL_BYTES.name, &[]);
    let mem_used = f.value(MEMORY_BYTES.name, &[("state", "used")]);
    let rails = f.by_label(POWER_WATTS.name, "rail");
    // The whole-system rail where the platform has one, else the sum of the rails
    // (RAPL packages on Linux).
    let power = rails
        .get("system")
        .copied()
        .or_else(|| (!rails.is_empty()).then(|| rails.values().sum()));
    HardwareSummary {
        cpu_utilization: f.by_label(CPU_CLUSTER_UTILIZATION_RATIO.name, "type"),
        memory_used_ratio: match (mem_used, mem_total) {
            (Some(u), Some(t)) if t > 0.0 => Some(u / t),
            _ => None,
        },
        gpu_utilization: f.value(GPU_UTILIZATION_RATIO.name, &[]),
        ane_utilization_estimate: f.value(ANE_UTILIZATION_ESTIMATE_RATIO.name, &[]),
        power_watts: power,
        max_temperature_celsius: f
            .samples(TEMPERATURE_CELSIUS.name)
            .map(|(_, v)| v)
            .reduce(f64::max),
        thermal_pressure: f.state(THERMAL_PRESSURE.name, "state"),
    }
}

/// Everything a dashboard's first screen needs in one answer: health and its
/// reasons, alert counts, hardware, containers and trading headlines.
#[utoipa::path(get, path = "/api/v1/monitoring/dashboard/summary", tag = "monitoring",
    responses((status = 200, body = DashboardSummary), (status = 401, body = ErrorBody)))]
async fn dashboard_summary(State(s): State<Arc<AppState>>) -> Json<DashboardSummary> {
    // One merge of the store's families serves the headlines and the advice.
    let state = Arc::clone(&s);
    let (families, mut recommendations) = match tokio::task::spawn_blocking(move || {
        let families = Families::of(state.store.families());
        let advice = state.advisor.advise_on(&families);
        (families, advice.recommendations)
    })
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "working out the recommendations failed");
            (Families::of(s.store.families()), Vec::new())
        }
    };
    recommendations.truncate(5);
    let counts = active_alerts(&s);
    let health = health_with(&s, &counts);
    let alerts = counts
        .into_iter()
        .map(|((state, severity), n)| (format!("{state}/{severity}"), n))
        .collect();
    let containers = s
        .config
        .containers
        .enabled
        .then(|| crate::collect::containers::latest(&s.store))
        .flatten()
        .map(|r| ContainersSummary {
            running: r.containers.iter().filter(|c| c.up).count(),
            total: r.containers.len(),
            unhealthy: r
                .containers
                .iter()
                .filter(|c| c.health_status == "unhealthy")
                .map(|c| c.name.clone())
                .collect(),
        });
    let trading = s.trading.as_ref().map(|t| {
        let view = t.view();
        let first = view.windows.first().cloned().unwrap_or_default();
        let worst = view
            .operations
            .iter()
            .filter_map(|o| o.windows.get(&first).map(|w| (w.p99_ms, &o.operation)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        TradingSummary {
            performance_score: view.score.score,
            coverage_ratio: view.score.coverage_ratio,
            operations: view.operations.len(),
            worst_p99_ms: worst.map(|w| w.0),
            worst_p99_operation: worst.map(|w| w.1.clone()),
        }
    });
    Json(DashboardSummary {
        generated_at: crate::clock::unix_now(),
        health: health.status,
        reasons: health.reasons,
        alerts,
        hardware: s
            .config
            .hardware
            .enabled
            .then(|| hardware_summary(&families)),
        containers,
        trading,
        recommendations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::index::family as fam;

    fn fixture() -> Families {
        let p = "performance";
        let e = "efficiency";
        Families::of(vec![
            fam(
                &crate::collect::hardware::CPU_INFO,
                &[
                    (&[("cpu", "0"), ("type", e), ("cluster", "E")], 1.0),
                    (&[("cpu", "1"), ("type", p), ("cluster", "P0")], 1.0),
                    (&[("cpu", "2"), ("type", p), ("cluster", "P0")], 1.0),
                ],
            ),
            fam(
                &crate::collect::hardware::CPU_UTILIZATION_RATIO,
                &[
                    (&[("cpu", "0"), ("type", e)], 0.9),
                    (&[("cpu", "1"), ("type", p)], 0.2),
                    (&[("cpu", "2"), ("type", p)], 0.4),
                ],
            ),
            fam(
                &crate::collect::hardware::CPU_CORES,
                &[(&[("type", e)], 1.0), (&[("type", p)], 2.0)],
            ),
            fam(
                &crate::collect::hardware::CPU_CLUSTER_UTILIZATION_RATIO,
                &[(&[("type", e)], 0.9), (&[("type", p)], 0.3)],
            ),
            fam(
                &crate::collect::hardware::THERMAL_PRESSURE,
                &[
                    (&[("state", "nominal")], 0.0),
                    (&[("state", "fair")], 1.0),
                    (&[("state", "serious")], 0.0),
                ],
            ),
            fam(
                &crate::collect::hardware::MEMORY_TOTAL_BYTES,
                &[(&[], 100.0)],
            ),
            fam(
                &crate::collect::hardware::MEMORY_BYTES,
                &[(&[("state", "used")], 25.0)],
            ),
            fam(
                &crate::collect::hardware::apple::GPU_UTILIZATION_RATIO,
                &[(&[], f64::NAN)],
            ),
        ])
    }

    #[test]
    fn snapshot_groups_cores_by_type_and_cluster() {
        let s = hardware_snapshot(&fixture(), Some(1.0));
        assert_eq!(s.cpu.cores.len(), 3);
        assert_eq!(s.cpu.cores[0].core_type, "efficiency");
        assert_eq!(s.cpu.cores[2].utilization, Some(0.4));
        let p0 = s.cpu.clusters.iter().find(|c| c.cluster == "P0").unwrap();
        assert_eq!(p0.cpus, vec![1, 2]);
        assert!((p0.utilization.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(s.thermal_pressure.as_deref(), Some("fair"));
        // NaN is unknown: no GPU section rather than a made-up number.
        assert!(s.gpu.is_none());
        assert!(s.ane.is_none());
        assert!(s.chip.is_none());
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("gpu").is_none());
        assert_eq!(json["cpu"]["cores"][0]["type"], "efficiency");
    }

    #[test]
    fn summary_computes_ratios_only_from_known_values() {
        let h = hardware_summary(&fixture());
        assert_eq!(h.memory_used_ratio, Some(0.25));
        assert_eq!(h.power_watts, None);
        assert_eq!(h.max_temperature_celsius, None);
        assert_eq!(h.cpu_utilization["efficiency"], 0.9);
    }

    fn run(ok: bool) -> CollectorStatus {
        CollectorStatus {
            success: ok,
            last_error: (!ok).then(|| "boom".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn health_takes_the_worst_reason() {
        let ok = system_health_of(
            [("hardware".to_string(), run(true))].into(),
            &[],
            BTreeMap::new(),
            Some(95.0),
        );
        assert_eq!(ok.status, HealthState::Healthy);
        assert!(ok.reasons.is_empty());

        let degraded = system_health_of(
            [("hardware".to_string(), run(false))].into(),
            &[],
            [("info".to_string(), 3)].into(),
            Some(95.0),
        );
        assert_eq!(degraded.status, HealthState::Degraded);
        assert_eq!(degraded.reasons.len(), 1);
        assert!(degraded.reasons[0].detail.contains("boom"));

        let critical = system_health_of(
            BTreeMap::new(),
            &[],
            [("warning".to_string(), 1), ("critical".to_string(), 2)].into(),
            Some(70.0),
        );
        assert_eq!(critical.status, HealthState::Critical);
        assert_eq!(critical.reasons[0].severity, HealthState::Critical);
        assert_eq!(critical.reasons.len(), 3);

        let low = system_health_of(BTreeMap::new(), &[], BTreeMap::new(), Some(40.0));
        assert_eq!(low.status, HealthState::Critical);
        assert_eq!(low.reasons[0].kind, "score_low");
        assert_eq!(low.reasons[0].detail, "performance score 40.0 is below 50");

        // No score (no data) is no reason.
        let quiet = system_health_of(BTreeMap::new(), &[], BTreeMap::new(), None);
        assert_eq!(quiet.status, HealthState::Healthy);
    }

    #[test]
    fn emergency_alerts_are_critical_and_info_alerts_change_nothing() {
        let h = system_health_of(
            BTreeMap::new(),
            &[],
            [("emergency".to_string(), 1), ("info".to_string(), 4)].into(),
            None,
        );
        assert_eq!(h.status, HealthState::Critical);
        assert_eq!(h.reasons.len(), 1);
        assert_eq!(h.reasons[0].detail, "1 emergency alert(s) firing");
    }

    #[test]
    fn a_failing_probe_degrades_health() {
        let probe = |target: &str, success: bool| ProbeResult {
            target: target.into(),
            success,
            duration_seconds: 0.01,
            http_status_code: success.then_some(200),
            error: (!success).then(|| "connection refused".to_string()),
        };
        let h = system_health_of(
            BTreeMap::new(),
            &[probe("risk", false), probe("ml", true)],
            BTreeMap::new(),
            Some(99.0),
        );
        assert_eq!(h.status, HealthState::Degraded);
        assert_eq!(h.reasons.len(), 1);
        assert_eq!(h.reasons[0].kind, "probe_failing");
        assert_eq!(h.reasons[0].detail, "probe risk failed: connection refused");
    }
}
