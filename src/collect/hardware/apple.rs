//! Apple Silicon readings without the Mac: the plain data the macOS source returns
//! (also m4watch's `dump-raw` format, which the replay source plays), and every formula
//! and parser that turns it into a [`Reading`].
//!
//! Nothing here calls macOS. `macos.rs` fills [`RawSample`] and [`MachineInfo`] through
//! FFI; the replay source reads them from a file; both hand them to [`AppleState`]. So
//! tick deltas, topology, energy, frequency, memory and level mappings, and the text
//! fallbacks (`sysctl -n`, `vm_stat`, `ioreg -a`, `powermetrics -f plist`) are all tested
//! on Linux with fixtures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    ChipInfo, CoreType, CpuDesc, CpuTimes, Fan, Gpu, Memory, MemoryPressureLevel, Reading,
    ThermalPressure, Topology,
};

/// `format` of a dump's header line.
pub const DUMP_FORMAT: &str = "m4watch-dump";
/// Version of the dump format this build writes and reads.
pub const DUMP_VERSION: u32 = 1;

/// Scheduler ticks per second of `host_processor_info` counters (`CLK_TCK` on macOS).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// First line of a dump: what machine the samples come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpHeader {
    pub format: String,
    pub version: u32,
    /// True for generated recordings (the demo), false for captures from a real Mac.
    #[serde(default)]
    pub synthetic: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub machine: MachineInfo,
}

/// What does not change while m4watch runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    /// `machdep.cpu.brand_string`, e.g. `Apple M4 Max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip: Option<String>,
    /// `hw.perflevelN.*`; index 0 is the highest-performance core type.
    #[serde(default)]
    pub perflevels: Vec<PerfLevel>,
    /// IORegistry `cpuN` nodes with their `cluster-type`, where readable.
    #[serde(default)]
    pub cpu_nodes: Vec<CpuNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_cores: Option<u32>,
    /// `hw.memsize`, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Kernel page size, bytes (16384 on Apple Silicon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
}

/// One `hw.perflevelN`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PerfLevel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub logical_cpus: u32,
}

/// One IORegistry `cpuN` node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpuNode {
    pub cpu: u32,
    /// `E`, `P`, or on M5 and later also `M`.
    pub cluster_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<u32>,
}

/// One raw sample: what the Mac said over one window, before any arithmetic.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RawSample {
    /// Length of the window the rates were measured over, seconds.
    pub elapsed_s: f64,
    /// `host_processor_info` ticks per CPU: `[user, system, idle, nice]` (u32, they wrap).
    #[serde(default)]
    pub ticks: Vec<[u32; 4]>,
    /// IOReport residency per core type, lowest tier first (macmon `cpu_tiers`).
    #[serde(default)]
    pub tiers: Vec<TierSample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_freq_mhz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_active_ratio: Option<f64>,
    /// IOAccelerator `PerformanceStatistics`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_stats: BTreeMap<String, i64>,
    /// Watts per rail (`cpu`, `gpu`, `ane`, `dram`, `system`) over the window.
    #[serde(default)]
    pub power_w: BTreeMap<String, f64>,
    #[serde(default)]
    pub temps_c: BTreeMap<String, f64>,
    #[serde(default)]
    pub fans: Vec<FanSample>,
    /// `notify_get_state` of `com.apple.system.thermalpressurelevel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal_state: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmCounters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Swap>,
    /// `kern.memorystatus_vm_pressure_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure_level: Option<i64>,
}

/// Residency of one core type and its cores (in `host_processor_info` order of that type).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TierSample {
    /// `E`, `P`, `S`, or `_` when unknown.
    pub label: String,
    pub freq_mhz: f64,
    pub active_ratio: f64,
    #[serde(default)]
    pub cores: Vec<CoreSample>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CoreSample {
    pub freq_mhz: f64,
    pub active_ratio: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FanSample {
    pub name: String,
    pub rpm: f64,
}

/// `vm_statistics64` counters, in pages.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VmCounters {
    pub free: u64,
    pub active: u64,
    pub inactive: u64,
    pub speculative: u64,
    pub wired: u64,
    /// Pages the compressor occupies (physical RAM).
    pub compressor: u64,
    /// Anonymous pages.
    pub internal: u64,
    /// File-backed pages.
    pub external: u64,
    pub purgeable: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Swap {
    pub total: u64,
    pub used: u64,
}

use crate::model::{MetricDef, def};
use crate::store::Kind::Gauge;

/// Families only Apple Silicon sources fill (live on macOS, or replayed anywhere).
pub const CHIP_INFO: MetricDef = def(
    "m4watch_chip_info",
    Gauge,
    &["chip", "performance_cores", "efficiency_cores", "gpu_cores"],
    "Always 1; labels name the chip and count its performance, efficiency and GPU cores.",
);

pub const CPU_FREQUENCY_HERTZ: MetricDef = def(
    "m4watch_cpu_frequency_hertz",
    Gauge,
    &["cpu", "cluster", "type"],
    "Average frequency while active over the last window, in hertz: per logical CPU (label cpu) and per cluster (label cluster).",
);

pub const CPU_ACTIVE_RATIO: MetricDef = def(
    "m4watch_cpu_active_ratio",
    Gauge,
    &["cpu", "type"],
    "Share (0..1) of the last window a CPU spent in an active frequency state (IOReport residency).",
);

pub const GPU_UTILIZATION_RATIO: MetricDef = def(
    "m4watch_gpu_utilization_ratio",
    Gauge,
    &[],
    "GPU busy share (0..1): the driver's Device Utilization, or GPU active residency where that is not available.",
);

pub const GPU_MEMORY_USED_BYTES: MetricDef = def(
    "m4watch_gpu_memory_used_bytes",
    Gauge,
    &[],
    "Unified memory the GPU driver has in use, in bytes.",
);

pub const GPU_FREQUENCY_HERTZ: MetricDef = def(
    "m4watch_gpu_frequency_hertz",
    Gauge,
    &[],
    "Average GPU frequency while active over the last window, in hertz.",
);

pub const ANE_POWER_WATTS: MetricDef = def(
    "m4watch_ane_power_watts",
    Gauge,
    &[],
    "Neural Engine power over the last window, in watts.",
);

pub const ANE_UTILIZATION_ESTIMATE_RATIO: MetricDef = def(
    "m4watch_ane_utilization_estimate_ratio",
    Gauge,
    &[],
    "Estimated Neural Engine utilisation (0..1): ANE power divided by hardware.ane_max_watts; an estimate, since no public API measures ANE utilisation.",
);

pub const FAN_SPEED_RPM: MetricDef = def(
    "m4watch_fan_speed_rpm",
    Gauge,
    &["fan"],
    "Fan speed, in revolutions per minute.",
);

pub const MEMORY_PRESSURE_LEVEL: MetricDef = def(
    "m4watch_memory_pressure_level",
    Gauge,
    &["level"],
    "macOS memory pressure as a state set: 1 for the current level (normal, warn, critical), 0 for the others.",
);

pub const METRICS: &[MetricDef] = &[
    CHIP_INFO,
    CPU_FREQUENCY_HERTZ,
    CPU_ACTIVE_RATIO,
    GPU_UTILIZATION_RATIO,
    GPU_MEMORY_USED_BYTES,
    GPU_FREQUENCY_HERTZ,
    ANE_POWER_WATTS,
    ANE_UTILIZATION_ESTIMATE_RATIO,
    FAN_SPEED_RPM,
    MEMORY_PRESSURE_LEVEL,
];

// --- topology -----------------------------------------------------------------

/// P/E topology from the IORegistry `cpuN` cluster types, cross-checked against the
/// perflevel counts; without the device tree, the lowest tier is taken to be the first
/// CPUs (every observed Apple layout through M4 lists it first). Never a fixed guess.
pub fn build_topology(machine: &MachineInfo, ncpu: u32) -> Result<Topology, String> {
    let lowest_count = match machine.perflevels.as_slice() {
        [] => None,
        [_] => Some(0),
        levels => levels.last().map(|l| l.logical_cpus),
    };
    if !machine.cpu_nodes.is_empty() {
        let mut cpus = BTreeMap::new();
        // Cluster names are the type letter and the cluster's ordinal within its type,
        // so `logical-cluster-id`s 0,1,2 on an M4 Max read E0, P0, P1.
        let mut ids: BTreeMap<CoreType, Vec<u32>> = BTreeMap::new();
        for n in &machine.cpu_nodes {
            let t = node_type(&n.cluster_type)?;
            let id = n.cluster_id.unwrap_or(0);
            let seen = ids.entry(t).or_default();
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        for n in &machine.cpu_nodes {
            let t = node_type(&n.cluster_type)?;
            let id = n.cluster_id.unwrap_or(0);
            let ord = ids[&t].iter().position(|&i| i == id).unwrap_or(0);
            let letter = if t == CoreType::Efficiency { "E" } else { "P" };
            cpus.insert(
                n.cpu,
                CpuDesc {
                    core_type: t,
                    cluster: format!("{letter}{ord}"),
                },
            );
        }
        let efficiency = cpus
            .values()
            .filter(|d| d.core_type == CoreType::Efficiency)
            .count() as u32;
        if let Some(expected) = lowest_count {
            if expected != efficiency {
                return Err(format!(
                    "IORegistry lists {efficiency} efficiency CPUs but hw.perflevel{}.logicalcpu says {expected}",
                    machine.perflevels.len() - 1
                ));
            }
        }
        return Ok(Topology {
            cpus,
            method: "iodevicetree",
        });
    }
    let Some(lowest) = lowest_count else {
        return Err("neither hw.perflevel* nor IORegistry cpu nodes are readable".into());
    };
    let total: u32 = machine.perflevels.iter().map(|l| l.logical_cpus).sum();
    if total != ncpu {
        return Err(format!(
            "hw.perflevel* count {total} CPUs but the kernel reports {ncpu}"
        ));
    }
    let cpus = (0..ncpu)
        .map(|c| {
            let (t, cl) = if c < lowest {
                (CoreType::Efficiency, "E")
            } else {
                (CoreType::Performance, "P")
            };
            (
                c,
                CpuDesc {
                    core_type: t,
                    cluster: cl.into(),
                },
            )
        })
        .collect();
    Ok(Topology {
        cpus,
        method: "perflevels-prefix",
    })
}

fn node_type(cluster_type: &str) -> Result<CoreType, String> {
    match cluster_type.trim_end_matches('\0') {
        "E" => Ok(CoreType::Efficiency),
        // M5 Pro/Max call their tiers M (Performance) and P (Super): both are P-cores
        // in m4watch's two-type model.
        "P" | "M" | "S" => Ok(CoreType::Performance),
        other => Err(format!("unknown IORegistry cluster-type {other:?}")),
    }
}

/// Performance or efficiency for a macmon tier label.
pub fn tier_type(label: &str) -> CoreType {
    if label == "E" {
        CoreType::Efficiency
    } else {
        CoreType::Performance
    }
}

// --- CPU ticks ----------------------------------------------------------------

/// Ticks elapsed between two reads of one CPU; the kernel's counters are u32 and wrap.
pub fn tick_delta(prev: [u32; 4], cur: [u32; 4]) -> [u64; 4] {
    std::array::from_fn(|i| u64::from(cur[i].wrapping_sub(prev[i])))
}

/// Turns wrapping u32 tick counters into ever-growing per-CPU seconds.
#[derive(Debug, Default)]
pub struct TickAccumulator {
    last: Vec<[u32; 4]>,
    totals: Vec<[u64; 4]>,
}

impl TickAccumulator {
    /// Cumulative CPU time per CPU. The first read starts from the raw counters; a change
    /// in the number of CPUs starts over (counters may reset, which counters allow).
    pub fn update(&mut self, ticks: &[[u32; 4]]) -> BTreeMap<u32, CpuTimes> {
        if ticks.len() != self.last.len() {
            self.totals = ticks.iter().map(|t| t.map(u64::from)).collect();
        } else {
            for (i, t) in ticks.iter().enumerate() {
                let d = tick_delta(self.last[i], *t);
                for (k, dk) in d.iter().enumerate() {
                    self.totals[i][k] += dk;
                }
            }
        }
        self.last = ticks.to_vec();
        self.totals
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let s = |k: usize| t[k] as f64 / TICKS_PER_SECOND;
                (
                    i as u32,
                    CpuTimes {
                        user: s(0),
                        system: s(1),
                        idle: s(2),
                        nice: s(3),
                        ..Default::default()
                    },
                )
            })
            .collect()
    }
}

/// Decodes `host_processor_info`'s flat `integer_t` array (stride `CPU_STATE_MAX` = 4,
/// order user, system, idle, nice) into rows.
pub fn decode_cpu_load_info(flat: &[i32]) -> Vec<[u32; 4]> {
    flat.chunks_exact(4)
        .map(|c| [c[0] as u32, c[1] as u32, c[2] as u32, c[3] as u32])
        .collect()
}

// --- power and frequency ------------------------------------------------------

/// Watts from an IOReport energy delta in its unit label (`mJ`, `uJ`, `nJ`) over `dt_s`.
pub fn watts_from_energy(delta: f64, unit: &str, dt_s: f64) -> Option<f64> {
    let scale = match unit.trim() {
        "mJ" => 1e-3,
        "uJ" | "µJ" => 1e-6,
        "nJ" => 1e-9,
        "J" => 1.0,
        _ => return None,
    };
    (dt_s > 0.0).then(|| delta * scale / dt_s)
}

/// Average frequency (MHz) while active and active ratio from IOReport residencies.
/// Leading `IDLE`/`DOWN`/`OFF` states are inactive; the rest map in order onto `dvfs_mhz`.
pub fn freq_from_residencies(states: &[(&str, i64)], dvfs_mhz: &[u32]) -> Option<(f64, f64)> {
    let skip = states
        .iter()
        .take_while(|(n, _)| matches!(*n, "IDLE" | "DOWN" | "OFF"))
        .count();
    let total: f64 = states.iter().map(|(_, r)| *r as f64).sum();
    if total <= 0.0 {
        return None;
    }
    let mut active = 0.0;
    let mut weighted = 0.0;
    for ((_, r), f) in states[skip..].iter().zip(dvfs_mhz) {
        active += *r as f64;
        weighted += *r as f64 * f64::from(*f);
    }
    let avg = if active > 0.0 { weighted / active } else { 0.0 };
    Some((avg, active / total))
}

/// Decodes a pmgr `voltage-states*` blob: little-endian `(u32 freq, u32 mV)` pairs.
/// `divisor` turns the table's unit into MHz (1_000 for kHz tables on M4, 1_000_000 for Hz).
pub fn decode_dvfs(bytes: &[u8], divisor: u32) -> Vec<u32> {
    bytes
        .chunks_exact(8)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) / divisor)
        .collect()
}

/// Integrates per-window watts into per-rail joule counters.
#[derive(Debug, Default)]
pub struct EnergyIntegrator {
    joules: BTreeMap<String, f64>,
}

impl EnergyIntegrator {
    pub fn add(&mut self, watts: &BTreeMap<String, f64>, elapsed_s: f64) -> &BTreeMap<String, f64> {
        for (rail, w) in watts {
            let e = self.joules.entry(rail.clone()).or_insert(0.0);
            if elapsed_s > 0.0 && w.is_finite() && *w >= 0.0 {
                *e += w * elapsed_s;
            }
        }
        &self.joules
    }
}

/// ANE utilisation *estimate*: power over the configured maximum, clamped to 0..1.
pub fn ane_estimate(watts: f64, max_watts: f64) -> Option<f64> {
    (max_watts > 0.0 && watts.is_finite()).then(|| (watts / max_watts).clamp(0.0, 1.0))
}

// --- GPU ----------------------------------------------------------------------

/// GPU busy share from `PerformanceStatistics` (0..1); Apple's key first, then the one
/// other vendors' drivers use. Values over 100 are clamped (a known driver quirk).
pub fn gpu_utilization(stats: &BTreeMap<String, i64>) -> Option<f64> {
    [
        "Device Utilization %",
        "Device Utilization",
        "GPU Activity(%)",
    ]
    .iter()
    .find_map(|k| stats.get(*k))
    .map(|&v| (v as f64).clamp(0.0, 100.0) / 100.0)
}

/// GPU memory in use (bytes) from `PerformanceStatistics`.
pub fn gpu_memory_used(stats: &BTreeMap<String, i64>) -> Option<f64> {
    stats
        .get("In use system memory")
        .filter(|&&v| v >= 0)
        .map(|&v| v as f64)
}

// --- levels -------------------------------------------------------------------

/// macOS thermal pressure (`OSThermalNotification.h`): 0 nominal, 1 moderate, 2 heavy,
/// 3 trapping, 4 sleeping, in m4watch's (and `NSProcessInfo.thermalState`'s) four names.
pub fn thermal_from_notify(state: u64) -> Option<ThermalPressure> {
    match state {
        0 => Some(ThermalPressure::Nominal),
        1 => Some(ThermalPressure::Fair),
        2 => Some(ThermalPressure::Serious),
        3 | 4 => Some(ThermalPressure::Critical),
        _ => None,
    }
}

/// `kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical.
pub fn memory_pressure_level(v: i64) -> Option<MemoryPressureLevel> {
    match v {
        1 => Some(MemoryPressureLevel::Normal),
        2 => Some(MemoryPressureLevel::Warn),
        4 => Some(MemoryPressureLevel::Critical),
        _ => None,
    }
}

// --- memory -------------------------------------------------------------------

/// Memory by state, Activity Monitor's way: used = app (anonymous − purgeable) + wired +
/// compressed; available = free + inactive + speculative (+ purgeable, reclaimable).
pub fn memory_breakdown(
    vm: &VmCounters,
    page: u64,
    total: Option<u64>,
    swap: Option<Swap>,
) -> Memory {
    let b = |pages: u64| pages.saturating_mul(page);
    let app = vm.internal.saturating_sub(vm.purgeable);
    Memory {
        total,
        used: Some(b(app + vm.wired + vm.compressor)),
        available: Some(b(vm.free + vm.inactive + vm.speculative + vm.purgeable)),
        free: Some(b(vm.free)),
        cached: Some(b(vm.external)),
        wired: Some(b(vm.wired)),
        compressed: Some(b(vm.compressor)),
        swap_used: swap.map(|s| s.used),
        swap_total: swap.map(|s| s.total),
    }
}

// --- text fallbacks -------------------------------------------------------------

/// `sysctl -n` output as an integer.
pub fn parse_sysctl_int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// `vm_stat` output: page size and counters. Keys as macOS prints them.
pub fn parse_vm_stat(text: &str) -> Option<(u64, VmCounters)> {
    let page = text
        .split("page size of ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let mut vm = VmCounters::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let Ok(v) = v.trim().trim_end_matches('.').parse::<u64>() else {
            continue;
        };
        let slot = match k.trim() {
            "Pages free" => &mut vm.free,
            "Pages active" => &mut vm.active,
            "Pages inactive" => &mut vm.inactive,
            "Pages speculative" => &mut vm.speculative,
            "Pages wired down" => &mut vm.wired,
            "Pages occupied by compressor" => &mut vm.compressor,
            "Anonymous pages" => &mut vm.internal,
            "File-backed pages" => &mut vm.external,
            "Pages purgeable" => &mut vm.purgeable,
            _ => continue,
        };
        *slot = v;
    }
    Some((page, vm))
}

/// `sysctl vm.swapusage` (with or without the name): `total = 2048.00M  used = …`.
pub fn parse_swapusage(text: &str) -> Option<Swap> {
    let field = |name: &str| -> Option<u64> {
        let rest = text.split(&format!("{name} = ")).nth(1)?;
        let tok = rest.split_whitespace().next()?;
        let (num, unit) = tok.split_at(tok.len() - 1);
        let mult = match unit {
            "K" => 1u64 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return None,
        };
        Some((num.parse::<f64>().ok()? * mult as f64).round() as u64)
    };
    Some(Swap {
        total: field("total")?,
        used: field("used")?,
    })
}

/// An accelerator's IORegistry class and its integer `PerformanceStatistics`.
pub type Accelerator = (String, BTreeMap<String, i64>);

/// `ioreg -a -r -d 1 -c IOAccelerator`: each accelerator's class and integer
/// `PerformanceStatistics`.
pub fn parse_ioreg_accelerators(xml: &[u8]) -> Result<Vec<Accelerator>, String> {
    let v = plist::Value::from_reader_xml(xml).map_err(|e| format!("ioreg plist: {e}"))?;
    let entries = match v {
        plist::Value::Array(a) => a,
        d @ plist::Value::Dictionary(_) => vec![d],
        _ => return Err("ioreg plist: expected an array of registry entries".into()),
    };
    let mut out = Vec::new();
    for e in entries {
        let Some(d) = e.as_dictionary() else { continue };
        let class = d
            .get("IOClass")
            .and_then(|c| c.as_string())
            .unwrap_or_default()
            .to_string();
        let mut stats = BTreeMap::new();
        if let Some(ps) = d
            .get("PerformanceStatistics")
            .and_then(|p| p.as_dictionary())
        {
            for (k, v) in ps {
                if let Some(n) = v.as_signed_integer() {
                    stats.insert(k.clone(), n);
                }
            }
        }
        out.push((class, stats));
    }
    Ok(out)
}

/// One `powermetrics -f plist` sample (needs root; an optional cross-check).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowermetricsSample {
    pub thermal: Option<ThermalPressure>,
    /// Rail -> watts (`cpu`, `gpu`, `ane`).
    pub power_w: BTreeMap<String, f64>,
    /// Cluster name -> frequency in Hz.
    pub cluster_hz: BTreeMap<String, f64>,
}

/// `powermetrics -f plist` output: plist documents separated by NUL bytes.
pub fn parse_powermetrics(stream: &[u8]) -> Result<Vec<PowermetricsSample>, String> {
    let mut out = Vec::new();
    for doc in stream.split(|&b| b == 0) {
        if doc.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = plist::Value::from_reader_xml(doc).map_err(|e| format!("powermetrics: {e}"))?;
        let d = v.as_dictionary().ok_or("powermetrics: not a dictionary")?;
        let mut s = PowermetricsSample {
            thermal: d
                .get("thermal_pressure")
                .and_then(|t| t.as_string())
                .and_then(parse_thermal_name),
            ..Default::default()
        };
        if let Some(p) = d.get("processor").and_then(|p| p.as_dictionary()) {
            for (key, rail) in [
                ("cpu_power", "cpu"),
                ("gpu_power", "gpu"),
                ("ane_power", "ane"),
            ] {
                if let Some(mw) = p.get(key).and_then(number) {
                    s.power_w.insert(rail.into(), mw / 1000.0);
                }
            }
            for c in p
                .get("clusters")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
            {
                let Some(c) = c.as_dictionary() else { continue };
                if let (Some(name), Some(hz)) = (
                    c.get("name").and_then(|n| n.as_string()),
                    c.get("freq_hz").and_then(number),
                ) {
                    s.cluster_hz.insert(name.to_string(), hz);
                }
            }
        }
        out.push(s);
    }
    Ok(out)
}

fn number(v: &plist::Value) -> Option<f64> {
    v.as_real()
        .or_else(|| v.as_signed_integer().map(|i| i as f64))
}

/// powermetrics' and `pmset`'s words for thermal pressure.
pub fn parse_thermal_name(s: &str) -> Option<ThermalPressure> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nominal" => Some(ThermalPressure::Nominal),
        "moderate" | "fair" => Some(ThermalPressure::Fair),
        "heavy" | "serious" => Some(ThermalPressure::Serious),
        "trapping" | "sleeping" | "critical" => Some(ThermalPressure::Critical),
        _ => None,
    }
}

// --- readings -------------------------------------------------------------------

/// What turning raw samples into readings needs to remember.
#[derive(Debug, Default)]
pub struct AppleState {
    ticks: TickAccumulator,
    energy: EnergyIntegrator,
}

impl AppleState {
    /// One [`Reading`] from one raw sample. Per-core residency is matched to CPU numbers
    /// by core type: the k-th core of a tier is the k-th CPU of that type.
    pub fn reading(&mut self, machine: &MachineInfo, topo: &Topology, s: &RawSample) -> Reading {
        let mut r = Reading {
            cpu: if s.ticks.is_empty() {
                BTreeMap::new()
            } else {
                self.ticks.update(&s.ticks)
            },
            ..Default::default()
        };
        for tier in &s.tiers {
            let t = tier_type(&tier.label);
            let cpus: Vec<u32> = topo
                .cpus
                .iter()
                .filter(|(_, d)| d.core_type == t)
                .map(|(&c, _)| c)
                .collect();
            for (core, &cpu) in tier.cores.iter().zip(&cpus) {
                r.cpu_frequency_hz.insert(cpu, core.freq_mhz * 1e6);
                r.cpu_active.insert(cpu, core.active_ratio.clamp(0.0, 1.0));
            }
        }
        // Clusters from the topology: the mean of member cores, macmon's cluster formula.
        let mut clusters: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
        for (cpu, hz) in &r.cpu_frequency_hz {
            if let Some(d) = topo.cpus.get(cpu) {
                let e = clusters.entry(d.cluster.as_str()).or_default();
                e.0 += hz;
                e.1 += 1;
            }
        }
        for (cl, (sum, n)) in clusters {
            r.cluster_frequency_hz
                .insert(cl.to_string(), sum / f64::from(n));
        }
        let util = gpu_utilization(&s.gpu_stats).or(s.gpu_active_ratio);
        let mem = gpu_memory_used(&s.gpu_stats);
        let freq = s.gpu_freq_mhz.map(|m| m * 1e6);
        if util.is_some() || mem.is_some() || freq.is_some() {
            r.gpu = Some(Gpu {
                utilization: util.map(|u| u.clamp(0.0, 1.0)),
                memory_used_bytes: mem,
                frequency_hz: freq,
            });
        }
        r.power_watts = s.power_w.clone();
        for (rail, j) in self.energy.add(&s.power_w, s.elapsed_s) {
            r.energy.push(super::EnergyCounter {
                rail: rail.clone(),
                joules: *j,
                wraps_at: None,
            });
        }
        r.sensors = s
            .temps_c
            .iter()
            .map(|(n, c)| super::Sensor {
                name: n.clone(),
                celsius: *c,
                trips: Vec::new(),
            })
            .collect();
        r.fans = s
            .fans
            .iter()
            .map(|f| Fan {
                name: f.name.clone(),
                rpm: f.rpm,
            })
            .collect();
        r.thermal_pressure = s.thermal_state.and_then(thermal_from_notify);
        r.memory_pressure_level = s.memory_pressure_level.and_then(memory_pressure_level);
        if let Some(vm) = &s.vm {
            let page = machine.page_size.unwrap_or(16384);
            r.memory = Some(memory_breakdown(vm, page, machine.memory_bytes, s.swap));
        }
        r.chip = machine.chip.as_ref().map(|c| ChipInfo {
            chip: c.clone(),
            gpu_cores: machine.gpu_cores,
        });
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m4max_levels() -> Vec<PerfLevel> {
        vec![
            PerfLevel {
                name: Some("Performance".into()),
                logical_cpus: 12,
            },
            PerfLevel {
                name: Some("Efficiency".into()),
                logical_cpus: 4,
            },
        ]
    }

    fn types(t: &Topology) -> String {
        t.cpus
            .values()
            .map(|d| match d.core_type {
                CoreType::Performance => 'P',
                CoreType::Efficiency => 'E',
            })
            .collect()
    }

    #[test]
    fn topology_from_the_device_tree_names_clusters() {
        // M4 Max: cpu0-3 E (cluster 0), cpu4-9 P0 (cluster 1), cpu10-15 P1 (cluster 2).
        let nodes = (0..16)
            .map(|c| CpuNode {
                cpu: c,
                cluster_type: if c < 4 { "E" } else { "P" }.into(),
                cluster_id: Some(if c < 4 {
                    0
                } else if c < 10 {
                    1
                } else {
                    2
                }),
            })
            .collect();
        let m = MachineInfo {
            perflevels: m4max_levels(),
            cpu_nodes: nodes,
            ..Default::default()
        };
        let t = build_topology(&m, 16).unwrap();
        assert_eq!(types(&t), "EEEEPPPPPPPPPPPP");
        assert_eq!(t.method, "iodevicetree");
        assert_eq!(t.cpus[&0].cluster, "E0");
        assert_eq!(t.cpus[&9].cluster, "P0");
        assert_eq!(t.cpus[&10].cluster, "P1");
    }

    #[test]
    fn m5_max_middle_and_super_tiers_are_both_performance() {
        let nodes = (0..18)
            .map(|c| CpuNode {
                cpu: c,
                cluster_type: if c < 12 { "M\0" } else { "P" }.into(),
                cluster_id: Some(c / 6),
            })
            .collect();
        let m = MachineInfo {
            perflevels: vec![
                PerfLevel {
                    name: Some("Super".into()),
                    logical_cpus: 6,
                },
                PerfLevel {
                    name: Some("Performance".into()),
                    logical_cpus: 12,
                },
            ],
            cpu_nodes: nodes,
            ..Default::default()
        };
        // perflevel1 (the lowest tier) has 12 CPUs, but the tree lists no E cluster.
        let err = build_topology(&m, 18).unwrap_err();
        assert!(err.contains("0 efficiency CPUs"), "{err}");
    }

    #[test]
    fn topology_falls_back_to_a_lowest_tier_prefix_and_checks_counts() {
        let m = MachineInfo {
            perflevels: m4max_levels(),
            ..Default::default()
        };
        let t = build_topology(&m, 16).unwrap();
        assert_eq!(
            (types(&t).as_str(), t.method),
            ("EEEEPPPPPPPPPPPP", "perflevels-prefix")
        );
        assert!(build_topology(&m, 14).is_err());
        let vm = MachineInfo {
            perflevels: vec![PerfLevel {
                name: Some("Standard".into()),
                logical_cpus: 4,
            }],
            ..Default::default()
        };
        assert_eq!(types(&build_topology(&vm, 4).unwrap()), "PPPP");
        assert!(build_topology(&MachineInfo::default(), 4).is_err());
    }

    #[test]
    fn ticks_wrap_and_accumulate() {
        assert_eq!(
            tick_delta([0xFFFF_FFF0, 0, 0, 0], [0x10, 0, 0, 0]),
            [32, 0, 0, 0]
        );
        let mut acc = TickAccumulator::default();
        let first = acc.update(&[[100, 50, 850, 0]]);
        assert_eq!(first[&0].user, 1.0);
        let second = acc.update(&[[160, 70, 920, 0]]);
        let (busy, total) = super::super::busy_delta(&first[&0], &second[&0]).unwrap();
        assert!((busy / total - 80.0 / 150.0).abs() < 1e-9);
        // Wrap: the running total keeps growing.
        acc.update(&[[u32::MAX - 5, 70, 920, 0]]);
        let wrapped = acc.update(&[[4, 70, 930, 0]]);
        assert_eq!(
            wrapped[&0].user,
            (160 + (u32::MAX - 5 - 160) as u64 + 10) as f64 / 100.0
        );
        // Zero delta: no busy share, not a division by zero.
        let same = acc.update(&[[4, 70, 930, 0]]);
        assert_eq!(super::super::busy_delta(&wrapped[&0], &same[&0]), None);
        // A different CPU count starts over.
        assert_eq!(acc.update(&[[1, 0, 0, 0], [2, 0, 0, 0]]).len(), 2);
    }

    #[test]
    fn load_info_rows() {
        assert_eq!(
            decode_cpu_load_info(&[1, 2, 3, 4, -1, 0, 0, 0]),
            vec![[1, 2, 3, 4], [u32::MAX, 0, 0, 0]]
        );
    }

    #[test]
    fn energy_units_and_residency() {
        let w = watts_from_energy(1_000_000.0, "uJ", 0.2505).unwrap();
        assert!((w - 3.992016).abs() < 1e-6, "{w}");
        assert_eq!(watts_from_energy(500.0, "mJ ", 0.5), Some(1.0));
        assert_eq!(watts_from_energy(1.0, "nJ", 0.0), None);
        assert_eq!(watts_from_energy(1.0, "furlongs", 1.0), None);
        let (f, active) = freq_from_residencies(
            &[("DOWN", 0), ("IDLE", 500), ("V0P5", 100), ("V1P4", 400)],
            &[1000, 2000],
        )
        .unwrap();
        assert_eq!((f, active), (1800.0, 0.5));
        assert_eq!(freq_from_residencies(&[("IDLE", 0)], &[1000]), None);
    }

    #[test]
    fn dvfs_tables_decode() {
        // M4 Pro voltage-states1-sram (exelban/stats#2285): kHz on M4.
        let bytes = [
            0x60, 0x90, 0x0F, 0x00, 0x16, 0x03, 0x00, 0x00, 0x60, 0x6C, 0x15, 0x00, 0x20, 0x03,
            0x00, 0x00,
        ];
        assert_eq!(decode_dvfs(&bytes, 1000), vec![1020, 1404]);
    }

    #[test]
    fn energy_integrates_watts_over_the_window() {
        let mut e = EnergyIntegrator::default();
        let w: BTreeMap<String, f64> = [("cpu".to_string(), 10.0)].into();
        e.add(&w, 0.5);
        assert_eq!(e.add(&w, 1.5)["cpu"], 20.0);
        let bad: BTreeMap<String, f64> = [("cpu".to_string(), f64::NAN)].into();
        assert_eq!(e.add(&bad, 1.0)["cpu"], 20.0);
    }

    #[test]
    fn ane_estimate_is_power_over_the_configured_max() {
        assert_eq!(ane_estimate(3.0, 6.0), Some(0.5));
        assert_eq!(ane_estimate(9.0, 6.0), Some(1.0));
        assert_eq!(ane_estimate(1.0, 0.0), None);
    }

    #[test]
    fn gpu_statistics() {
        let stats: BTreeMap<String, i64> = [
            ("Device Utilization %".to_string(), 37),
            ("In use system memory".to_string(), 340_983_808),
        ]
        .into();
        assert_eq!(gpu_utilization(&stats), Some(0.37));
        assert_eq!(gpu_memory_used(&stats), Some(340_983_808.0));
        let other: BTreeMap<String, i64> = [("GPU Activity(%)".to_string(), 140)].into();
        assert_eq!(gpu_utilization(&other), Some(1.0));
        assert_eq!(gpu_utilization(&BTreeMap::new()), None);
    }

    #[test]
    fn level_mappings() {
        let t: Vec<_> = (0..6).map(thermal_from_notify).collect();
        use ThermalPressure::*;
        assert_eq!(
            t,
            vec![
                Some(Nominal),
                Some(Fair),
                Some(Serious),
                Some(Critical),
                Some(Critical),
                None
            ]
        );
        assert_eq!(memory_pressure_level(1), Some(MemoryPressureLevel::Normal));
        assert_eq!(memory_pressure_level(2), Some(MemoryPressureLevel::Warn));
        assert_eq!(
            memory_pressure_level(4),
            Some(MemoryPressureLevel::Critical)
        );
        assert_eq!(memory_pressure_level(3), None);
        assert_eq!(parse_thermal_name("Heavy"), Some(Serious));
        assert_eq!(parse_thermal_name("Nominal\n"), Some(Nominal));
        assert_eq!(parse_thermal_name("hot"), None);
    }

    const VM_STAT: &str = "Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               10000.
Pages active:                            400000.
Pages inactive:                          390000.
Pages speculative:                         5000.
Pages throttled:                              0.
Pages wired down:                        200000.
Pages purgeable:                          20000.
\"Translation faults\":                 123456789.
Pages copy-on-write:                    1234567.
Anonymous pages:                         500000.
File-backed pages:                       300000.
Pages occupied by compressor:            100000.
";

    #[test]
    fn vm_stat_and_breakdown() {
        let (page, vm) = parse_vm_stat(VM_STAT).unwrap();
        assert_eq!(page, 16384);
        assert_eq!(
            vm,
            VmCounters {
                free: 10000,
                active: 400000,
                inactive: 390000,
                speculative: 5000,
                wired: 200000,
                compressor: 100000,
                internal: 500000,
                external: 300000,
                purgeable: 20000,
            }
        );
        let m = memory_breakdown(&vm, page, Some(128 << 30), None);
        assert_eq!(m.used, Some((480000 + 200000 + 100000) * 16384));
        assert_eq!(m.available, Some((10000 + 390000 + 5000 + 20000) * 16384));
        assert_eq!(m.wired, Some(200000 * 16384));
        assert_eq!(m.compressed, Some(100000 * 16384));
        assert_eq!(m.swap_used, None);
        assert_eq!(parse_vm_stat("no header"), None);
    }

    #[test]
    fn swapusage_and_sysctl() {
        let s = parse_swapusage(
            "vm.swapusage: total = 2048.00M  used = 1017.50M  free = 1030.50M  (encrypted)",
        )
        .unwrap();
        assert_eq!(
            s,
            Swap {
                total: 2048 << 20,
                used: (1017.5 * 1048576.0) as u64
            }
        );
        let g = parse_swapusage("total = 4.00G  used = 0.00M  free = 4.00G  (encrypted)").unwrap();
        assert_eq!(g.total, 4 << 30);
        assert_eq!(parse_swapusage("total = lots"), None);
        assert_eq!(parse_sysctl_int("2\n"), Some(2));
        assert_eq!(parse_sysctl_int("Apple M4 Max"), None);
    }

    const IOREG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<array>
	<dict>
		<key>IOClass</key>
		<string>AGXAcceleratorG16X</string>
		<key>gpu-core-count</key>
		<integer>40</integer>
		<key>PerformanceStatistics</key>
		<dict>
			<key>Alloc system memory</key>
			<integer>1214005248</integer>
			<key>Device Utilization %</key>
			<integer>42</integer>
			<key>In use system memory</key>
			<integer>340983808</integer>
			<key>Renderer Utilization %</key>
			<integer>40</integer>
		</dict>
	</dict>
</array>
</plist>
"#;

    #[test]
    fn ioreg_accelerators() {
        let a = parse_ioreg_accelerators(IOREG.as_bytes()).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].0, "AGXAcceleratorG16X");
        assert_eq!(gpu_utilization(&a[0].1), Some(0.42));
        assert_eq!(gpu_memory_used(&a[0].1), Some(340983808.0));
        assert!(parse_ioreg_accelerators(b"not xml").is_err());
    }

    fn powermetrics_doc(pressure: &str, cpu_mw: f64) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0">
<dict>
	<key>is_delta</key><true/>
	<key>elapsed_ns</key><integer>1000000000</integer>
	<key>thermal_pressure</key><string>{pressure}</string>
	<key>processor</key>
	<dict>
		<key>clusters</key>
		<array>
			<dict><key>name</key><string>E-Cluster</string><key>freq_hz</key><real>1020000000</real></dict>
			<dict><key>name</key><string>P0-Cluster</string><key>freq_hz</key><real>4056000000</real></dict>
		</array>
		<key>cpu_power</key><real>{cpu_mw}</real>
		<key>gpu_power</key><real>250</real>
		<key>ane_power</key><integer>0</integer>
	</dict>
</dict>
</plist>
"#
        )
    }

    #[test]
    fn powermetrics_stream_split_on_nul() {
        let stream = format!(
            "{}\0{}\0",
            powermetrics_doc("Nominal", 3200.0),
            powermetrics_doc("Heavy", 44.0773)
        );
        let s = parse_powermetrics(stream.as_bytes()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].thermal, Some(ThermalPressure::Nominal));
        assert_eq!(s[0].power_w["cpu"], 3.2);
        assert_eq!(s[0].power_w["ane"], 0.0);
        assert_eq!(s[0].cluster_hz["P0-Cluster"], 4.056e9);
        assert_eq!(s[1].thermal, Some(ThermalPressure::Serious));
        assert!(parse_powermetrics(b"<plist>").is_err());
    }

    #[test]
    fn raw_sample_becomes_a_reading() {
        let machine = MachineInfo {
            chip: Some("Apple M4 Max".into()),
            perflevels: m4max_levels(),
            gpu_cores: Some(40),
            memory_bytes: Some(128 << 30),
            page_size: Some(16384),
            ..Default::default()
        };
        let topo = build_topology(&machine, 16).unwrap();
        let core = |f: f64, a: f64| CoreSample {
            freq_mhz: f,
            active_ratio: a,
        };
        let s = RawSample {
            elapsed_s: 2.0,
            ticks: vec![[0, 0, 100, 0]; 16],
            tiers: vec![
                TierSample {
                    label: "E".into(),
                    freq_mhz: 1500.0,
                    active_ratio: 0.2,
                    cores: vec![core(1000.0, 0.1), core(2000.0, 0.3)],
                },
                TierSample {
                    label: "P".into(),
                    freq_mhz: 4000.0,
                    active_ratio: 0.9,
                    cores: vec![core(4000.0, 0.9)],
                },
            ],
            gpu_active_ratio: Some(0.5),
            gpu_freq_mhz: Some(1400.0),
            power_w: [("cpu".to_string(), 20.0), ("ane".to_string(), 3.0)].into(),
            fans: vec![FanSample {
                name: "fan0".into(),
                rpm: 2400.0,
            }],
            thermal_state: Some(2),
            memory_pressure_level: Some(2),
            vm: Some(VmCounters {
                wired: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut st = AppleState::default();
        let r = st.reading(&machine, &topo, &s);
        assert_eq!(r.cpu.len(), 16);
        assert_eq!(r.cpu_frequency_hz[&1], 2.0e9);
        assert_eq!(r.cpu_active[&4], 0.9);
        assert_eq!(r.cluster_frequency_hz["E"], 1.5e9);
        assert_eq!(r.cluster_frequency_hz["P"], 4.0e9);
        let gpu = r.gpu.as_ref().unwrap();
        assert_eq!(
            (gpu.utilization, gpu.frequency_hz, gpu.memory_used_bytes),
            (Some(0.5), Some(1.4e9), None)
        );
        assert_eq!(r.thermal_pressure, Some(ThermalPressure::Serious));
        assert_eq!(r.memory_pressure_level, Some(MemoryPressureLevel::Warn));
        assert_eq!(r.memory.unwrap().wired, Some(16384));
        assert_eq!(r.chip.as_ref().unwrap().gpu_cores, Some(40));
        assert_eq!(r.energy[0].joules, 6.0); // ane: 3 W over 2 s
        let r2 = st.reading(&machine, &topo, &s);
        assert_eq!(r2.energy[1].joules, 80.0); // cpu: 20 W over 2 × 2 s
    }
}
