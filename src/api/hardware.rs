//! The M4 Max hardware snapshot and per-core utilisation, built from what the store
//! holds now. Nothing here collects: every number comes from the families the
//! hardware collector last published, so the JSON and `/metrics` cannot disagree.

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
use crate::collect::hardware::apple::{
    ANE_UTILIZATION_ESTIMATE_RATIO, CHIP_INFO, CPU_ACTIVE_RATIO, CPU_CLUSTER_FREQUENCY_HERTZ,
    CPU_FREQUENCY_HERTZ, FAN_SPEED_RPM, GPU_FREQUENCY_HERTZ, GPU_MEMORY_USED_BYTES,
    GPU_UTILIZATION_RATIO, MEMORY_PRESSURE_LEVEL,
};
use crate::collect::hardware::{
    CPU_CLUSTER_UTILIZATION_RATIO, CPU_CORES, CPU_INFO, CPU_UTILIZATION_RATIO,
    MEMORY_AVAILABLE_BYTES, MEMORY_PARTITION_BYTES, MEMORY_PRESSURE_RATIO, MEMORY_SWAP_TOTAL_BYTES,
    MEMORY_SWAP_USED_BYTES, MEMORY_TOTAL_BYTES, MEMORY_USED_BYTES, POWER_WATTS, SYSTEM_POWER_WATTS,
    TEMPERATURE_CELSIUS, THERMAL_PRESSURE,
};
use crate::store::index::{Families, label};

/// Read routes; mounted behind the read check by [`super::api`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(hardware_metrics))
        .routes(routes!(core_utilization))
}

/// One logical CPU.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoreView {
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
pub(crate) struct CoreTypeView {
    #[serde(rename = "type")]
    pub core_type: String,
    pub cores: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
}

/// One CPU cluster.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClusterView {
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
pub(crate) struct CpuView {
    pub cores: Vec<CoreView>,
    pub types: Vec<CoreTypeView>,
    pub clusters: Vec<ClusterView>,
}

/// The chip, where the platform names it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChipView {
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
pub(crate) struct MemoryView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<f64>,
    /// Bytes by state: the partition's (`app`, `wired`, `compressed`, `cached`, `free`,
    /// `other`) and the aggregates `used`, `available`, `swap_used`, `swap_total`;
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
pub(crate) struct GpuView {
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
pub(crate) struct AneView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization_estimate: Option<f64>,
}

/// Body of `GET /api/v1/monitoring/m4max/hardware/metrics`. Parts the platform does
/// not report are absent (a Linux host has no GPU or ANE section).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HardwareSnapshot {
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
pub(crate) fn hardware_snapshot(f: &Families, collected_at: Option<f64>) -> HardwareSnapshot {
    let util = f.by_label(CPU_UTILIZATION_RATIO.name, "cpu");
    let active = f.by_label(CPU_ACTIVE_RATIO.name, "cpu");
    let freq: BTreeMap<String, f64> = f
        .samples(CPU_FREQUENCY_HERTZ.name)
        .filter_map(|(l, v)| label(l, "cpu").map(|c| (c.to_string(), v)))
        .collect();
    let cluster_freq = f.by_label(CPU_CLUSTER_FREQUENCY_HERTZ.name, "cluster");
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
        power_watts: f.value(POWER_WATTS.name, &[("rail", "ane")]),
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
            bytes: memory_bytes(f),
            pressure_ratio: f.by_label(MEMORY_PRESSURE_RATIO.name, "window"),
            pressure_level: f.state(MEMORY_PRESSURE_LEVEL.name, "level"),
        },
        gpu,
        ane,
        power_watts: power_watts(f),
        temperatures_celsius: f.by_label(TEMPERATURE_CELSIUS.name, "sensor"),
        thermal_pressure: f.state(THERMAL_PRESSURE.name, "state"),
        fans_rpm: f.by_label(FAN_SPEED_RPM.name, "fan"),
    }
}

/// The memory states of the JSON answer: the partition's states and the aggregates
/// (`used`, `available`, `swap_used`, `swap_total`), as before the families split.
fn memory_bytes(f: &Families) -> BTreeMap<String, f64> {
    let mut bytes = f.by_label(MEMORY_PARTITION_BYTES.name, "state");
    for (state, def) in [
        ("used", MEMORY_USED_BYTES),
        ("available", MEMORY_AVAILABLE_BYTES),
        ("swap_used", MEMORY_SWAP_USED_BYTES),
        ("swap_total", MEMORY_SWAP_TOTAL_BYTES),
    ] {
        if let Some(v) = f.value(def.name, &[]) {
            bytes.insert(state.to_string(), v);
        }
    }
    bytes
}

/// Watts by rail, the whole machine as rail `system` (the JSON answer's shape).
fn power_watts(f: &Families) -> BTreeMap<String, f64> {
    let mut rails = f.by_label(POWER_WATTS.name, "rail");
    if let Some(w) = f.value(SYSTEM_POWER_WATTS.name, &[]) {
        rails.insert("system".to_string(), w);
    }
    rails
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
pub(crate) struct CoreUtilization {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    use crate::store::index::family as fam;

    /// Three CPUs (one efficiency, two performance), thermal state `fair`, a quarter
    /// of memory used, and a GPU whose utilisation is unknown (NaN).
    pub(in crate::api) fn fixture() -> Families {
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
            fam(&crate::collect::hardware::MEMORY_USED_BYTES, &[(&[], 25.0)]),
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
}
