//! Apple Silicon readings without the Mac: the plain data the macOS source returns
//! (also m4watch's `dump-raw` format, which the replay source plays), and every formula
//! and parser that turns it into a [`Reading`].
//!
//! Nothing here calls macOS. `macos.rs` fills [`RawSample`] and [`MachineInfo`] through
//! FFI (macmon's windows through [`super::macmon_window`], as the replay does); the replay
//! source reads them from a file; both hand them to [`AppleState`]. So tick deltas,
//! topology and tiers, window merging, energy, frequency floors, memory, the GPU choice
//! and level mappings are all tested on Linux with fixtures.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{
    ChipInfo, CoreType, CpuDesc, CpuTimes, Fan, Gpu, Memory, MemoryPressureLevel, Reading,
    ThermalPressure, Tier, Topology,
};

/// `format` of a dump's header line.
pub(crate) const DUMP_FORMAT: &str = "m4watch-dump";
/// Version of the dump format this build writes and reads.
pub(crate) const DUMP_VERSION: u32 = 1;

/// Scheduler ticks per second of `host_processor_info` counters (`CLK_TCK` on macOS).
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// First line of a dump: what machine the samples come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct DumpHeader {
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
    /// Whether the machine has Apple Silicon's IOReport counters (energy per rail, CPU
    /// and GPU residency): false on an Intel Mac (`hw.optional.arm64` is not 1) and in a
    /// macOS VM; absent (older dumps) is taken as true. Where false, the power rails
    /// cpu/gpu/ane/dram, the residency and the GPU frequency are absent, never 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ioreport_counters: Option<bool>,
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
    /// `E`, `P`, or on M5 Pro/Max and later also `M` (their Performance tier, below the
    /// `P` Super tier).
    pub cluster_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<u32>,
}

/// One raw sample: what the Mac said over one window, before any arithmetic.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct RawSample {
    /// Length of the window the rates were measured over, seconds.
    pub elapsed_s: f64,
    /// `host_processor_info` ticks per CPU: `[user, system, idle, nice]` (u32, they wrap).
    #[serde(default)]
    pub ticks: Vec<[u32; 4]>,
    /// IOReport residency per core type, lowest tier first (macmon `cpu_tiers`).
    #[serde(default)]
    pub tiers: Vec<TierSample>,
    /// macmon's GPU frequency, averaged over active residency: 0 when the GPU was idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_freq_mhz: Option<f64>,
    /// The GPU's lowest DVFS step, where the sampler knows its table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_min_mhz: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_active_ratio: Option<f64>,
    /// IOAccelerator `PerformanceStatistics`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gpu_stats: BTreeMap<String, i64>,
    /// Watts per rail (`cpu`, `gpu`, `ane`, `dram`, `system`) over the window.
    #[serde(default)]
    pub power_w: BTreeMap<String, f64>,
    /// Joules per rail over the window where several sampler windows were merged into
    /// this sample ([`PendingWindows`]); otherwise a rail's energy is watts × `elapsed_s`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub energy_j: BTreeMap<String, f64>,
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
pub(crate) struct TierSample {
    /// `E`, `P`, `S`, or `_` when unknown.
    pub label: String,
    /// macmon's figure for the whole tier (0 when it has none); used where the tier has
    /// no per-core data, and as the floor of an idle tier without a DVFS table.
    pub freq_mhz: f64,
    /// Mean active residency of the tier's cores; absent where the recording only has
    /// macmon 0.7's frequency-scaled usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_ratio: Option<f64>,
    /// The tier's lowest DVFS step, where the sampler knows its table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_mhz: Option<f64>,
    #[serde(default)]
    pub cores: Vec<CoreSample>,
}

/// One core's window: macmon reports 0 MHz for a core with no active residency.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct CoreSample {
    pub freq_mhz: f64,
    pub active_ratio: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct FanSample {
    pub name: String,
    pub rpm: f64,
}

/// `vm_statistics64` counters, in pages.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct VmCounters {
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
pub(crate) struct Swap {
    pub total: u64,
    pub used: u64,
}

use crate::model::{MetricDef, def};
use crate::store::Kind::Gauge;

/// Families only Apple Silicon sources fill (live on macOS, or replayed anywhere).
pub(crate) const CHIP_INFO: MetricDef = def(
    "m4watch_chip_info",
    Gauge,
    &["chip", "performance_cores", "efficiency_cores", "gpu_cores"],
    "Always 1; labels name the chip and count its performance, efficiency and GPU cores.",
);

pub(crate) const CPU_FREQUENCY_HERTZ: MetricDef = def(
    "m4watch_cpu_frequency_hertz",
    Gauge,
    &["cpu", "type"],
    "Average frequency of a logical CPU while active over the last window, in hertz; an idle CPU reads its lowest frequency step.",
);

pub(crate) const CPU_CLUSTER_FREQUENCY_HERTZ: MetricDef = def(
    "m4watch_cpu_cluster_frequency_hertz",
    Gauge,
    &["cluster", "type"],
    "Average frequency of a CPU cluster while active over the last window, in hertz; an idle cluster reads its lowest frequency step.",
);

pub(crate) const CPU_ACTIVE_RATIO: MetricDef = def(
    "m4watch_cpu_active_ratio",
    Gauge,
    &["cpu", "type"],
    "Share (0..1) of the last window a CPU spent in an active frequency state (IOReport residency).",
);

pub(crate) const GPU_UTILIZATION_RATIO: MetricDef = def(
    "m4watch_gpu_utilization_ratio",
    Gauge,
    &[],
    "GPU busy share (0..1): the driver's Device Utilization, or GPU active residency where that is not available.",
);

pub(crate) const GPU_MEMORY_USED_BYTES: MetricDef = def(
    "m4watch_gpu_memory_used_bytes",
    Gauge,
    &[],
    "Unified memory the GPU driver has in use, in bytes.",
);

pub(crate) const GPU_FREQUENCY_HERTZ: MetricDef = def(
    "m4watch_gpu_frequency_hertz",
    Gauge,
    &[],
    "Average GPU frequency while active over the last window, in hertz; an idle GPU reads its lowest frequency step.",
);

pub(crate) const ANE_UTILIZATION_ESTIMATE_RATIO: MetricDef = def(
    "m4watch_ane_utilization_estimate_ratio",
    Gauge,
    &[],
    "Estimated Neural Engine utilisation (0..1): ANE power divided by hardware.ane_max_watts; an estimate, since no public API measures ANE utilisation.",
);

pub(crate) const FAN_SPEED_RPM: MetricDef = def(
    "m4watch_fan_speed_rpm",
    Gauge,
    &["fan"],
    "Fan speed, in revolutions per minute.",
);

pub(crate) const MEMORY_PRESSURE_LEVEL: MetricDef = def(
    "m4watch_memory_pressure_level",
    Gauge,
    &["level"],
    "macOS memory pressure as a state set: 1 for the current level (normal, warn, critical), 0 for the others.",
);

pub(crate) const METRICS: &[MetricDef] = &[
    CHIP_INFO,
    CPU_FREQUENCY_HERTZ,
    CPU_CLUSTER_FREQUENCY_HERTZ,
    CPU_ACTIVE_RATIO,
    GPU_UTILIZATION_RATIO,
    GPU_MEMORY_USED_BYTES,
    GPU_FREQUENCY_HERTZ,
    ANE_UTILIZATION_ESTIMATE_RATIO,
    FAN_SPEED_RPM,
    MEMORY_PRESSURE_LEVEL,
];

// --- topology -----------------------------------------------------------------

/// macmon's tier letter for a `hw.perflevelN.name`.
fn level_label(name: Option<&str>) -> Option<&'static str> {
    match name? {
        "Efficiency" => Some("E"),
        "Performance" => Some("P"),
        "Super" => Some("S"),
        _ => None,
    }
}

/// Tier letters, lowest first, for `machine.perflevels` (given highest first). The
/// perflevel names decide where all are known (Performance/Efficiency through M4,
/// Super/Performance on an M5 Pro/Max, Super/Efficiency on the base M5); without them
/// (macOS releases before the names), the chip: E/P through M4, P/S on a later two-tier
/// chip, E/P/S for three tiers, `_` (type unknown) for a single tier such as a VM's.
fn tier_labels(machine: &MachineInfo) -> Vec<String> {
    let n = machine.perflevels.len();
    let named: Option<Vec<&str>> = machine
        .perflevels
        .iter()
        .rev()
        .map(|l| level_label(l.name.as_deref()))
        .collect();
    if let Some(named) = named.filter(|v| v.len() == n && n > 1) {
        return named.into_iter().map(String::from).collect();
    }
    let chip = machine.chip.as_deref().unwrap_or("");
    let through_m4 = ["M1", "M2", "M3", "M4"].iter().any(|m| chip.contains(m));
    let labels: &[&str] = match n {
        1 => &["_"],
        2 if through_m4 => &["E", "P"],
        2 => &["P", "S"],
        3 => &["E", "P", "S"],
        _ => &[],
    };
    (0..n)
        .map(|i| labels.get(i).copied().unwrap_or("_").to_string())
        .collect()
}

fn label_type(label: &str) -> CoreType {
    if label == "E" {
        CoreType::Efficiency
    } else {
        CoreType::Performance
    }
}

/// The letter a tier's clusters are named with (`_`, a type nobody knows, reads `P`).
fn cluster_letter(label: &str) -> &str {
    if label == "_" { "P" } else { label }
}

/// Why the machine's description gives no core topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TopologyError {
    #[error("unknown IORegistry cluster-type {0:?}")]
    UnknownClusterType(String),
    #[error("IORegistry lists {iokit} core types but hw.nperflevels is {perflevels}")]
    TierCount { iokit: usize, perflevels: usize },
    #[error(
        "IORegistry lists {iokit} {tier} CPUs but hw.perflevel{level}.logicalcpu says {perflevel}"
    )]
    TierSize {
        tier: String,
        iokit: usize,
        level: usize,
        perflevel: u32,
    },
    #[error("neither hw.perflevel* nor IORegistry cpu nodes are readable")]
    Unreadable,
    #[error("hw.perflevel* count {perflevels} CPUs but the kernel reports {kernel}")]
    CpuCount { perflevels: u32, kernel: u32 },
}

/// Rank of an IORegistry `cluster-type`: `E` < `M` (M5 Pro/Max Performance) < `P`.
fn node_rank(cluster_type: &str) -> Result<u8, TopologyError> {
    match cluster_type.trim_end_matches('\0') {
        "E" => Ok(0),
        "M" => Ok(1),
        "P" => Ok(2),
        other => Err(TopologyError::UnknownClusterType(other.to_string())),
    }
}

/// Core tiers and P/E topology. With the IORegistry `cpuN` nodes, each CPU's tier is the
/// rank of its `cluster-type` (E < M < P; the cpuN order differs by chip), and each
/// tier's count is checked against its `hw.perflevelN.logicalcpu`. Without the device
/// tree, the tiers are taken to be contiguous, lowest first (every layout observed
/// through M4). A tier labelled `E` is efficiency; every other tier is performance, so
/// an M5 Pro/Max (P and S tiers) has no efficiency CPUs. Never a fixed guess.
pub(crate) fn build_topology(machine: &MachineInfo, ncpu: u32) -> Result<Topology, TopologyError> {
    let levels = &machine.perflevels;
    if !machine.cpu_nodes.is_empty() {
        let mut ranks: Vec<u8> = Vec::new();
        for n in &machine.cpu_nodes {
            let r = node_rank(&n.cluster_type)?;
            if !ranks.contains(&r) {
                ranks.push(r);
            }
        }
        ranks.sort_unstable();
        let labels: Vec<String> = if levels.is_empty() {
            // No perflevels: the letters alone. An `M` tier exists only beside `P` Super.
            let has_m = ranks.contains(&1);
            ranks
                .iter()
                .map(|r| match (r, has_m) {
                    (0, _) => "E",
                    (1, _) | (2, false) => "P",
                    _ => "S",
                })
                .map(String::from)
                .collect()
        } else {
            if levels.len() != ranks.len() {
                return Err(TopologyError::TierCount {
                    iokit: ranks.len(),
                    perflevels: levels.len(),
                });
            }
            tier_labels(machine)
        };
        let mut tiers: Vec<Tier> = labels
            .iter()
            .map(|l| Tier {
                label: l.clone(),
                cpus: Vec::new(),
            })
            .collect();
        // Cluster names: the tier letter and the cluster's ordinal within its tier, so
        // `logical-cluster-id`s 0,1,2 on an M4 Max read E0, P0, P1.
        let mut cluster_ids: Vec<Vec<u32>> = vec![Vec::new(); tiers.len()];
        let mut cpus = BTreeMap::new();
        let mut nodes: Vec<&CpuNode> = machine.cpu_nodes.iter().collect();
        nodes.sort_by_key(|n| n.cpu);
        for n in nodes {
            let rank = node_rank(&n.cluster_type)?;
            let t = ranks.iter().position(|&r| r == rank).unwrap_or(0);
            let id = n.cluster_id.unwrap_or(0);
            if !cluster_ids[t].contains(&id) {
                cluster_ids[t].push(id);
            }
            let ord = cluster_ids[t].iter().position(|&i| i == id).unwrap_or(0);
            let label = &tiers[t].label;
            cpus.insert(
                n.cpu,
                CpuDesc {
                    core_type: label_type(label),
                    cluster: format!("{}{ord}", cluster_letter(label)),
                },
            );
            tiers[t].cpus.push(n.cpu);
        }
        for (i, tier) in tiers.iter().enumerate() {
            let level = levels.len().checked_sub(i + 1);
            if let Some(l) = level.and_then(|k| levels.get(k)) {
                if l.logical_cpus as usize != tier.cpus.len() {
                    return Err(TopologyError::TierSize {
                        tier: tier.label.clone(),
                        iokit: tier.cpus.len(),
                        level: level.unwrap_or(0),
                        perflevel: l.logical_cpus,
                    });
                }
            }
        }
        return Ok(Topology {
            cpus,
            method: "iodevicetree",
            tiers,
        });
    }
    if levels.is_empty() {
        return Err(TopologyError::Unreadable);
    }
    let total: u32 = levels.iter().map(|l| l.logical_cpus).sum();
    if total != ncpu {
        return Err(TopologyError::CpuCount {
            perflevels: total,
            kernel: ncpu,
        });
    }
    let mut cpus = BTreeMap::new();
    let mut tiers = Vec::new();
    let mut next = 0;
    for (label, level) in tier_labels(machine).into_iter().zip(levels.iter().rev()) {
        let members: Vec<u32> = (next..next + level.logical_cpus).collect();
        next += level.logical_cpus;
        for &c in &members {
            cpus.insert(
                c,
                CpuDesc {
                    core_type: label_type(&label),
                    cluster: cluster_letter(&label).to_string(),
                },
            );
        }
        tiers.push(Tier {
            label,
            cpus: members,
        });
    }
    Ok(Topology {
        cpus,
        method: "perflevels-prefix",
        tiers,
    })
}

/// `hw.perflevelN.name` for a macmon tier label.
pub(crate) fn level_name(label: &str) -> Option<&'static str> {
    match label {
        "E" => Some("Efficiency"),
        "P" => Some("Performance"),
        "S" => Some("Super"),
        _ => None,
    }
}

// --- CPU ticks ----------------------------------------------------------------

/// Ticks elapsed between two reads of one CPU; the kernel's counters are u32 and wrap.
pub(crate) fn tick_delta(prev: [u32; 4], cur: [u32; 4]) -> [u64; 4] {
    std::array::from_fn(|i| u64::from(cur[i].wrapping_sub(prev[i])))
}

/// Turns wrapping u32 tick counters into ever-growing per-CPU seconds.
#[derive(Debug, Default)]
pub(crate) struct TickAccumulator {
    last: Vec<[u32; 4]>,
    totals: Vec<[u64; 4]>,
}

impl TickAccumulator {
    /// Cumulative CPU time per CPU. The first read starts from the raw counters; a change
    /// in the number of CPUs starts over (counters may reset, which counters allow).
    pub(crate) fn update(&mut self, ticks: &[[u32; 4]]) -> BTreeMap<u32, CpuTimes> {
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
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS source uses it; tested here
pub(crate) fn decode_cpu_load_info(flat: &[i32]) -> Vec<[u32; 4]> {
    flat.chunks_exact(4)
        .map(|c| [c[0] as u32, c[1] as u32, c[2] as u32, c[3] as u32])
        .collect()
}

// --- sampler windows and energy -------------------------------------------------

/// The IOReport window each macmon `get_metrics` call measured. macmon keeps its last
/// IOReport sample as the next window's baseline, so consecutive windows run from the
/// end of one call to the end of the next; only the first starts when its call does.
/// (The time a call blocked is shorter whenever the caller was late.)
#[derive(Debug, Default)]
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS source uses it; tested here
pub(crate) struct WindowClock {
    last_end: Option<Instant>,
}

#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
impl WindowClock {
    /// Seconds of the window of a call that ran from `started` to `ended`. A failed call
    /// also ends a window (macmon moved its baseline): call this for it and drop the value.
    pub(crate) fn window(&mut self, started: Instant, ended: Instant) -> f64 {
        let from = self.last_end.unwrap_or(started);
        self.last_end = Some(ended);
        ended.saturating_duration_since(from).as_secs_f64()
    }
}

/// Joules per rail over a sample's window: what a merge counted, else watts × window.
pub(crate) fn window_joules(s: &RawSample) -> BTreeMap<String, f64> {
    if !s.energy_j.is_empty() {
        return s.energy_j.clone();
    }
    s.power_w
        .iter()
        .map(|(rail, w)| (rail.clone(), w * s.elapsed_s.max(0.0)))
        .collect()
}

/// Sampler windows that finished since the last read, merged so none is lost: their
/// energy adds up, the window is their sum, watts are energy over time, and the rest
/// (residency, temperatures, fans) is the newest window's.
#[derive(Debug, Default)]
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS source uses it; tested here
pub(crate) struct PendingWindows {
    merged: Option<RawSample>,
    /// Seconds of the merged windows that carried each rail.
    rail_s: BTreeMap<String, f64>,
}

#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
impl PendingWindows {
    pub(crate) fn push(&mut self, w: RawSample) {
        let joules = window_joules(&w);
        for rail in joules.keys() {
            *self.rail_s.entry(rail.clone()).or_default() += w.elapsed_s.max(0.0);
        }
        let merged = match self.merged.take() {
            None => RawSample {
                energy_j: joules,
                ..w
            },
            Some(prev) => {
                let mut energy = prev.energy_j;
                for (rail, j) in joules {
                    *energy.entry(rail).or_default() += j;
                }
                let power_w = energy
                    .iter()
                    .filter_map(|(rail, j)| {
                        let t = *self.rail_s.get(rail)?;
                        (t > 0.0).then(|| (rail.clone(), j / t))
                    })
                    .collect();
                RawSample {
                    elapsed_s: prev.elapsed_s + w.elapsed_s.max(0.0),
                    energy_j: energy,
                    power_w,
                    ..w
                }
            }
        };
        self.merged = Some(merged);
    }

    /// Everything since the last take, or `None` when no window finished.
    pub(crate) fn take(&mut self) -> Option<RawSample> {
        self.rail_s.clear();
        self.merged.take()
    }
}

/// Integrates per-window joules into per-rail counters.
#[derive(Debug, Default)]
pub(crate) struct EnergyIntegrator {
    joules: BTreeMap<String, f64>,
}

impl EnergyIntegrator {
    pub(crate) fn add(&mut self, joules: &BTreeMap<String, f64>) -> &BTreeMap<String, f64> {
        for (rail, j) in joules {
            let e = self.joules.entry(rail.clone()).or_insert(0.0);
            if j.is_finite() && *j >= 0.0 {
                *e += j;
            }
        }
        &self.joules
    }
}

/// ANE utilisation *estimate*: power over the configured maximum, clamped to 0..1.
pub(crate) fn ane_estimate(watts: f64, max_watts: f64) -> Option<f64> {
    (max_watts > 0.0 && watts.is_finite()).then(|| (watts / max_watts).clamp(0.0, 1.0))
}

// --- frequency ------------------------------------------------------------------

fn positive(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

fn core_active(c: &CoreSample) -> bool {
    c.active_ratio > 0.0 && c.freq_mhz > 0.0
}

/// The frequency an idle core or cluster of `tier` sits at: the lowest DVFS step where the
/// table is known; otherwise macmon's tier figure when every core of the tier was idle
/// (macmon floors its tier figure at that step). `None` when neither says.
fn idle_floor_mhz(tier: &TierSample) -> Option<f64> {
    tier.min_mhz.and_then(positive).or_else(|| {
        (!tier.cores.is_empty() && !tier.cores.iter().any(core_active))
            .then_some(tier.freq_mhz)
            .and_then(positive)
    })
}

/// A core's frequency while active: macmon's figure when it was active, the idle floor
/// when it was not, never 0.
pub(crate) fn core_mhz(core: &CoreSample, tier: &TierSample) -> Option<f64> {
    if core_active(core) {
        Some(core.freq_mhz)
    } else {
        idle_floor_mhz(tier)
    }
}

/// A cluster's average frequency while active: its cores' frequencies weighted by their
/// active residency; an idle cluster reads the tier's idle floor, never 0.
pub(crate) fn cluster_mhz(cores: &[&CoreSample], tier: &TierSample) -> Option<f64> {
    let (weighted, active, lo, hi) = cores.iter().filter(|c| core_active(c)).fold(
        (0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY),
        |(w, a, lo, hi), c| {
            (
                w + c.freq_mhz * c.active_ratio,
                a + c.active_ratio,
                lo.min(c.freq_mhz),
                hi.max(c.freq_mhz),
            )
        },
    );
    if active > 0.0 {
        // A weighted mean lies between its values; rounding must not put twelve cores
        // at 3600 MHz above 3600 MHz.
        Some((weighted / active).clamp(lo, hi))
    } else {
        idle_floor_mhz(tier)
    }
}

/// GPU frequency while active: macmon's figure when the GPU was active (or its activity
/// is unknown), else the lowest DVFS step where known; never 0.
pub(crate) fn gpu_mhz(freq: Option<f64>, active: Option<f64>, min: Option<f64>) -> Option<f64> {
    match freq.and_then(positive) {
        Some(f) if active.is_none_or(|a| a > 0.0) => Some(f),
        _ => min.and_then(positive),
    }
}

// --- GPU ----------------------------------------------------------------------

/// GPU busy share from `PerformanceStatistics` (0..1); Apple's key first, then the one
/// other vendors' drivers use. Values over 100 are clamped (a known driver quirk).
pub(crate) fn gpu_utilization(stats: &BTreeMap<String, i64>) -> Option<f64> {
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
pub(crate) fn gpu_memory_used(stats: &BTreeMap<String, i64>) -> Option<f64> {
    stats
        .get("In use system memory")
        .filter(|&&v| v >= 0)
        .map(|&v| v as f64)
}

/// One IORegistry `IOAccelerator` entry.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS source uses it; tested here
pub(crate) struct Accelerator {
    /// IORegistry class, e.g. `AGXAcceleratorG16X`, `IntelAccelerator`,
    /// `AMDRadeonX6000_AMDNavi14GraphicsAccelerator`.
    pub class: String,
    /// Integer `PerformanceStatistics`.
    pub stats: BTreeMap<String, i64>,
    /// `gpu-core-count` (Apple GPUs).
    pub gpu_cores: Option<u32>,
}

/// The GPU m4watch reports: among accelerators with statistics, a discrete one before
/// Intel's integrated GPU (a dual-GPU Intel Mac lists both, integrated often first, and
/// the discrete GPU carries the heavy work); otherwise the first with statistics. Apple
/// Silicon has one.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))] // the macOS source uses it; tested here
pub(crate) fn choose_accelerator(list: &[Accelerator]) -> Option<&Accelerator> {
    let useful = || {
        list.iter()
            .filter(|a| gpu_utilization(&a.stats).is_some() || gpu_memory_used(&a.stats).is_some())
    };
    useful()
        .find(|a| !a.class.contains("Intel"))
        .or_else(|| useful().next())
}

// --- levels -------------------------------------------------------------------

/// macOS thermal pressure (`OSThermalNotification.h`): 0 nominal, 1 moderate, 2 heavy,
/// 3 trapping, 4 sleeping, in m4watch's (and `NSProcessInfo.thermalState`'s) four names.
pub(crate) fn thermal_from_notify(state: u64) -> Option<ThermalPressure> {
    match state {
        0 => Some(ThermalPressure::Nominal),
        1 => Some(ThermalPressure::Fair),
        2 => Some(ThermalPressure::Serious),
        3 | 4 => Some(ThermalPressure::Critical),
        _ => None,
    }
}

/// `kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical.
pub(crate) fn memory_pressure_level(v: i64) -> Option<MemoryPressureLevel> {
    match v {
        1 => Some(MemoryPressureLevel::Normal),
        2 => Some(MemoryPressureLevel::Warn),
        4 => Some(MemoryPressureLevel::Critical),
        _ => None,
    }
}

// --- memory -------------------------------------------------------------------

/// Memory by state as Activity Monitor defines it:
/// - App Memory = anonymous pages − purgeable ones; used = App Memory + Wired +
///   Compressed (the compressor's own pages);
/// - Cached Files (`cached`) = file-backed pages + purgeable pages: the kernel drops or
///   purges them without writing anything out;
/// - available = free + Cached Files: what can be had without paging. Inactive
///   *anonymous* pages are not available (they must be compressed or swapped first);
///   counting every inactive page, as before, counted them in used too.
///
/// Both are bounded by the pages the kernel accounts for (free, active, inactive,
/// speculative, wired, compressor) and by `total` (`hw.memsize`), so `used + available <=
/// total` holds even for counters read at slightly different moments.
pub(crate) fn memory_breakdown(
    vm: &VmCounters,
    page: u64,
    total: Option<u64>,
    swap: Option<Swap>,
) -> Memory {
    let b = |pages: u64| pages.saturating_mul(page);
    let sum = |pages: &[u64]| pages.iter().fold(0u64, |a, p| a.saturating_add(*p));
    let accounted = b(sum(&[
        vm.free,
        vm.active,
        vm.inactive,
        vm.speculative,
        vm.wired,
        vm.compressor,
    ]));
    let cap = total.map_or(accounted, |t| t.min(accounted));
    let app = vm.internal.saturating_sub(vm.purgeable);
    let cached = vm.external.saturating_add(vm.purgeable);
    let used = b(sum(&[app, vm.wired, vm.compressor])).min(cap);
    // The partition's own figures stay unclamped: each is a page count as read.
    let available = b(vm.free.saturating_add(cached)).min(cap - used);
    Memory {
        total,
        used: Some(used),
        available: Some(available),
        free: Some(b(vm.free)),
        cached: Some(b(cached)),
        app: Some(b(app)),
        other: None,
        wired: Some(b(vm.wired)),
        compressed: Some(b(vm.compressor)),
        swap_used: swap.map(|s| s.used),
        swap_total: swap.map(|s| s.total),
    }
}

// --- readings -------------------------------------------------------------------

/// Rails only Apple Silicon's IOReport `Energy Model` measures.
const IOREPORT_RAILS: [&str; 4] = ["cpu", "gpu", "ane", "dram"];

/// The topology tier each of a sample's tiers belongs to: by position (both lowest
/// first) when there are as many, else by label.
fn match_tiers<'a>(topo_tiers: &'a [Tier], s: &RawSample) -> Vec<Option<&'a Tier>> {
    let by_position = topo_tiers.len() == s.tiers.len();
    s.tiers
        .iter()
        .enumerate()
        .map(|(i, tier)| {
            if by_position {
                topo_tiers.get(i)
            } else {
                topo_tiers.iter().find(|t| t.label == tier.label)
            }
        })
        .collect()
}

/// Busy share per core type from the residency a sample states for each whole tier
/// (macmon's `ecpu_active_ratio`, `pcpu_active_ratio`, `cpu_tiers[].active_ratio`),
/// tiers of one type weighted by their CPUs. A type with a tier that states none (macmon
/// 0.7's pairs carry frequency-scaled usage, not residency) is left out.
pub(crate) fn tier_utilization(topo: &Topology, s: &RawSample) -> BTreeMap<CoreType, f64> {
    let topo_tiers = topo.tier_cpus();
    let mut acc: BTreeMap<CoreType, Option<(f64, f64)>> = BTreeMap::new();
    for (tier, found) in s.tiers.iter().zip(match_tiers(&topo_tiers, s)) {
        let Some(found) = found else {
            continue;
        };
        let weight = found.cpus.len().max(1) as f64;
        let e = acc
            .entry(label_type(&found.label))
            .or_insert(Some((0.0, 0.0)));
        *e = match (*e, tier.active_ratio.filter(|a| a.is_finite())) {
            (Some((w, n)), Some(a)) => Some((w + a.clamp(0.0, 1.0) * weight, n + weight)),
            _ => None,
        };
    }
    acc.into_iter()
        .filter_map(|(t, v)| v.map(|(w, n)| (t, w / n)))
        .collect()
}

/// What turning raw samples into readings needs to remember.
#[derive(Debug, Default)]
pub(crate) struct AppleState {
    ticks: TickAccumulator,
    energy: EnergyIntegrator,
}

impl AppleState {
    /// One [`Reading`] from one raw sample. Per-core residency is matched to CPU numbers
    /// by tier: the k-th core macmon lists for a tier (by die, then core) is the k-th CPU
    /// of that tier. Tiers pair up by position (both lowest first) when the sample and the
    /// topology have as many, else by label.
    pub(crate) fn reading(
        &mut self,
        machine: &MachineInfo,
        topo: &Topology,
        s: &RawSample,
    ) -> Reading {
        let apple = machine.ioreport_counters != Some(false);
        let mut r = Reading {
            cpu: if s.ticks.is_empty() {
                BTreeMap::new()
            } else {
                self.ticks.update(&s.ticks)
            },
            ..Default::default()
        };
        let topo_tiers = topo.tier_cpus();
        let matched = match_tiers(&topo_tiers, s);
        for (tier, found) in s.tiers.iter().zip(matched).filter(|_| apple) {
            let Some(found) = found else {
                continue;
            };
            let cpus = &found.cpus;
            let mut clusters: BTreeMap<&str, Vec<&CoreSample>> = BTreeMap::new();
            for (core, &cpu) in tier.cores.iter().zip(cpus) {
                if let Some(mhz) = core_mhz(core, tier) {
                    r.cpu_frequency_hz.insert(cpu, mhz * 1e6);
                }
                r.cpu_active.insert(cpu, core.active_ratio.clamp(0.0, 1.0));
                if let Some(d) = topo.cpus.get(&cpu) {
                    clusters.entry(d.cluster.as_str()).or_default().push(core);
                }
            }
            // Where the tier is one cluster (a replay's tiers; a live tier of one
            // cluster), macmon's own figure for the tier is the cluster's: it covers every
            // core, where a recording may list only some. A tier whose CPUs nobody
            // counted (macmon 0.7's pairs, a soc block that says 0 cores) is one cluster
            // named by its letter.
            let mut names: Vec<&str> = cpus
                .iter()
                .filter_map(|c| topo.cpus.get(c).map(|d| d.cluster.as_str()))
                .collect();
            names.dedup();
            let single = match names.as_slice() {
                [one] => Some(one.to_string()),
                [] if cpus.is_empty() => Some(cluster_letter(&found.label).to_string()),
                _ => None,
            };
            let stated = positive(tier.freq_mhz)
                .filter(|_| tier.cores.is_empty() || tier.cores.iter().any(core_active));
            if let (Some(cl), Some(f)) = (single, stated) {
                r.cluster_frequency_hz.insert(cl, f * 1e6);
                continue;
            }
            for (cl, cores) in clusters {
                if let Some(mhz) = cluster_mhz(&cores, tier) {
                    r.cluster_frequency_hz.insert(cl.to_string(), mhz * 1e6);
                }
            }
        }
        let util = gpu_utilization(&s.gpu_stats).or(s.gpu_active_ratio.filter(|_| apple));
        let mem = gpu_memory_used(&s.gpu_stats);
        let freq = gpu_mhz(s.gpu_freq_mhz, s.gpu_active_ratio, s.gpu_min_mhz)
            .filter(|_| apple)
            .map(|m| m * 1e6);
        if util.is_some() || mem.is_some() || freq.is_some() {
            r.gpu = Some(Gpu {
                utilization: util.map(|u| u.clamp(0.0, 1.0)),
                memory_used_bytes: mem,
                frequency_hz: freq,
            });
        }
        let measured = |rail: &String| apple || !IOREPORT_RAILS.contains(&rail.as_str());
        r.power_watts = s
            .power_w
            .iter()
            .filter(|(rail, _)| measured(rail))
            .map(|(rail, w)| (rail.clone(), *w))
            .collect();
        let mut joules = window_joules(s);
        joules.retain(|rail, _| measured(rail));
        for (rail, j) in self.energy.add(&joules) {
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
    use std::time::Duration;

    fn level(name: &str, n: u32) -> PerfLevel {
        PerfLevel {
            name: Some(name.into()),
            logical_cpus: n,
        }
    }

    fn m4max_levels() -> Vec<PerfLevel> {
        vec![level("Performance", 12), level("Efficiency", 4)]
    }

    /// IORegistry nodes from `(cluster-type, logical-cluster-id, CPUs)` runs, numbered
    /// in order.
    fn nodes(runs: &[(&str, u32, u32)]) -> Vec<CpuNode> {
        let mut cpu = 0;
        let mut out = Vec::new();
        for &(kind, id, n) in runs {
            for _ in 0..n {
                out.push(CpuNode {
                    cpu,
                    cluster_type: kind.into(),
                    cluster_id: Some(id),
                });
                cpu += 1;
            }
        }
        out
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

    fn clusters(t: &Topology) -> Vec<String> {
        t.cpus.values().map(|d| d.cluster.clone()).collect()
    }

    fn tier_of(t: &Topology, label: &str) -> Vec<u32> {
        t.tiers
            .iter()
            .find(|x| x.label == label)
            .map(|x| x.cpus.clone())
            .unwrap_or_default()
    }

    #[test]
    fn m4_max_device_tree_has_one_e_and_two_p_clusters() {
        // M4 Max: cpu0-3 E (cluster 0), cpu4-9 P0 (cluster 1), cpu10-15 P1 (cluster 2).
        let m = MachineInfo {
            perflevels: m4max_levels(),
            cpu_nodes: nodes(&[("E", 0, 4), ("P", 1, 6), ("P", 2, 6)]),
            ..Default::default()
        };
        let t = build_topology(&m, 16).unwrap();
        assert_eq!(types(&t), "EEEEPPPPPPPPPPPP");
        assert_eq!(t.method, "iodevicetree");
        assert_eq!(t.cpus[&0].cluster, "E0");
        assert_eq!(t.cpus[&9].cluster, "P0");
        assert_eq!(t.cpus[&10].cluster, "P1");
        assert_eq!(tier_of(&t, "E"), vec![0, 1, 2, 3]);
        assert_eq!(tier_of(&t, "P"), (4..16).collect::<Vec<_>>());
    }

    #[test]
    fn m5_max_has_performance_and_super_tiers_and_no_efficiency_cores() {
        // SiliconScope's M5 Max reading: cpu0-11 `M` (Performance, two clusters),
        // cpu12-17 `P` (Super), perflevel0 Super (6), perflevel1 Performance (12).
        let m = MachineInfo {
            chip: Some("Apple M5 Max".into()),
            perflevels: vec![level("Super", 6), level("Performance", 12)],
            cpu_nodes: nodes(&[("M\0", 0, 6), ("M", 1, 6), ("P", 2, 6)]),
            ..Default::default()
        };
        let t = build_topology(&m, 18).unwrap();
        assert_eq!(types(&t), "P".repeat(18));
        assert_eq!(tier_of(&t, "P"), (0..12).collect::<Vec<_>>());
        assert_eq!(tier_of(&t, "S"), (12..18).collect::<Vec<_>>());
        assert_eq!(t.cpus[&6].cluster, "P1");
        assert_eq!(t.cpus[&12].cluster, "S0");
        // Without the device tree the named levels still say: no efficiency cores.
        let prefix = MachineInfo {
            cpu_nodes: Vec::new(),
            ..m.clone()
        };
        let t = build_topology(&prefix, 18).unwrap();
        assert_eq!((types(&t), t.method), ("P".repeat(18), "perflevels-prefix"));
        assert_eq!(tier_of(&t, "S"), (12..18).collect::<Vec<_>>());
        // Unnamed levels on a chip after M4: P and S, as macmon labels them.
        let unnamed = MachineInfo {
            perflevels: vec![
                PerfLevel {
                    name: None,
                    logical_cpus: 6,
                },
                PerfLevel {
                    name: None,
                    logical_cpus: 12,
                },
            ],
            ..prefix
        };
        assert_eq!(
            types(&build_topology(&unnamed, 18).unwrap()),
            "P".repeat(18)
        );
    }

    #[test]
    fn three_tiers_follow_the_cluster_type_not_the_cpu_order() {
        // macmon#80 / exelban/stats#3668: an M6 lists E, then Super (`P`), then
        // Performance (`M`) CPUs.
        let m = MachineInfo {
            perflevels: vec![
                level("Super", 2),
                level("Performance", 4),
                level("Efficiency", 6),
            ],
            cpu_nodes: nodes(&[("E", 0, 6), ("P", 1, 2), ("M", 2, 4)]),
            ..Default::default()
        };
        let t = build_topology(&m, 12).unwrap();
        assert_eq!(tier_of(&t, "E"), (0..6).collect::<Vec<_>>());
        assert_eq!(tier_of(&t, "S"), vec![6, 7]);
        assert_eq!(tier_of(&t, "P"), vec![8, 9, 10, 11]);
        assert_eq!(
            t.tiers.iter().map(|x| x.label.as_str()).collect::<String>(),
            "EPS"
        );
    }

    #[test]
    fn ultra_lists_each_die_efficiency_first() {
        // M2 Ultra (graelo/pumas powermetrics): E0 0-3, P0 4-7, P1 8-11, E1 12-15,
        // P2 16-19, P3 20-23.
        let m = MachineInfo {
            perflevels: vec![level("Performance", 16), level("Efficiency", 8)],
            cpu_nodes: nodes(&[
                ("E", 0, 4),
                ("P", 1, 4),
                ("P", 2, 4),
                ("E", 3, 4),
                ("P", 4, 4),
                ("P", 5, 4),
            ]),
            ..Default::default()
        };
        let t = build_topology(&m, 24).unwrap();
        assert_eq!(tier_of(&t, "E"), vec![0, 1, 2, 3, 12, 13, 14, 15]);
        assert_eq!(t.cpus[&12].cluster, "E1");
        assert_eq!(t.cpus[&23].cluster, "P3");
        assert_eq!(
            clusters(&t).iter().filter(|c| c.starts_with('P')).count(),
            16
        );
    }

    #[test]
    fn counts_that_disagree_with_the_perflevels_are_refused() {
        let m = MachineInfo {
            perflevels: m4max_levels(),
            cpu_nodes: nodes(&[("E", 0, 2), ("P", 1, 14)]),
            ..Default::default()
        };
        let err = build_topology(&m, 16).unwrap_err().to_string();
        assert!(err.contains("2 E CPUs") && err.contains("says 4"), "{err}");
        let one_type = MachineInfo {
            cpu_nodes: nodes(&[("P", 0, 16)]),
            ..m
        };
        assert!(
            build_topology(&one_type, 16)
                .unwrap_err()
                .to_string()
                .contains("1 core types")
        );
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
        // M1 (4E + 4P) without names: the chip says E/P.
        let m1 = MachineInfo {
            chip: Some("Apple M1".into()),
            perflevels: vec![
                PerfLevel {
                    name: None,
                    logical_cpus: 4,
                },
                PerfLevel {
                    name: None,
                    logical_cpus: 4,
                },
            ],
            ..Default::default()
        };
        assert_eq!(types(&build_topology(&m1, 8).unwrap()), "EEEEPPPP");
        let vm = MachineInfo {
            perflevels: vec![level("Standard", 4)],
            ..Default::default()
        };
        let t = build_topology(&vm, 4).unwrap();
        assert_eq!(
            (types(&t).as_str(), t.tiers[0].label.as_str()),
            ("PPPP", "_")
        );
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
    }

    #[test]
    fn the_window_is_the_ioreport_window_not_the_blocking_time() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut clock = WindowClock::default();
        // First call: the baseline is taken when it starts.
        assert_eq!(clock.window(at(0), at(1000)), 1.0);
        // The caller came back 300 ms late: the call blocked 700 ms, but macmon's window
        // ran from the end of the previous call.
        assert_eq!(clock.window(at(1300), at(2000)), 1.0);
        // A failed call still ends its window; the next starts there.
        clock.window(at(2000), at(3000));
        assert_eq!(clock.window(at(3000), at(4500)), 1.5);
    }

    fn window(elapsed_s: f64, watts: &[(&str, f64)], cpu_temp: f64) -> RawSample {
        RawSample {
            elapsed_s,
            power_w: watts.iter().map(|(r, w)| (r.to_string(), *w)).collect(),
            temps_c: [("cpu".to_string(), cpu_temp)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn windows_that_finish_between_reads_all_reach_the_energy_counter() {
        let mut pending = PendingWindows::default();
        assert_eq!(pending.take(), None);
        pending.push(window(1.0, &[("cpu", 10.0), ("system", 50.0)], 40.0));
        // The SMC had no system power in the second window.
        pending.push(window(0.5, &[("cpu", 30.0)], 45.0));
        let merged = pending.take().unwrap();
        assert_eq!(merged.elapsed_s, 1.5);
        assert_eq!(merged.energy_j["cpu"], 25.0);
        assert_eq!(merged.energy_j["system"], 50.0);
        assert!((merged.power_w["cpu"] - 25.0 / 1.5).abs() < 1e-12);
        assert_eq!(merged.power_w["system"], 50.0);
        assert_eq!(merged.temps_c["cpu"], 45.0, "the newest window's reading");
        assert_eq!(pending.take(), None, "taken once");

        // Through the state: the counter holds every joule of both windows.
        let machine = MachineInfo::default();
        let topo = Topology::default();
        let mut st = AppleState::default();
        let r = st.reading(&machine, &topo, &merged);
        let cpu = r.energy.iter().find(|e| e.rail == "cpu").unwrap();
        assert_eq!(cpu.joules, 25.0);
        // A read with no new window adds nothing and loses nothing.
        let stale = RawSample {
            elapsed_s: 0.0,
            energy_j: BTreeMap::new(),
            ..merged
        };
        let r = st.reading(&machine, &topo, &stale);
        assert_eq!(
            r.energy.iter().find(|e| e.rail == "cpu").unwrap().joules,
            25.0
        );
    }

    #[test]
    fn energy_integrates_joules_and_skips_garbage() {
        let mut e = EnergyIntegrator::default();
        let j: BTreeMap<String, f64> = [("cpu".to_string(), 5.0)].into();
        e.add(&j);
        assert_eq!(e.add(&j)["cpu"], 10.0);
        let bad: BTreeMap<String, f64> = [("cpu".to_string(), f64::NAN)].into();
        assert_eq!(e.add(&bad)["cpu"], 10.0);
        let s = window(2.0, &[("ane", 3.0)], 40.0);
        assert_eq!(window_joules(&s)["ane"], 6.0);
    }

    fn core(freq_mhz: f64, active_ratio: f64) -> CoreSample {
        CoreSample {
            freq_mhz,
            active_ratio,
        }
    }

    #[test]
    fn idle_cores_and_clusters_read_the_lowest_step_never_zero() {
        let tier = TierSample {
            label: "P".into(),
            freq_mhz: 1260.0,
            active_ratio: Some(0.3),
            min_mhz: Some(1260.0),
            cores: vec![core(4000.0, 0.5), core(3000.0, 0.1), core(0.0, 0.0)],
        };
        let c: Vec<&CoreSample> = tier.cores.iter().collect();
        // Weighted by active residency: (4000·0.5 + 3000·0.1) / 0.6.
        let want = (4000.0 * 0.5 + 3000.0 * 0.1) / 0.6;
        assert!((cluster_mhz(&c, &tier).unwrap() - want).abs() < 1e-9);
        // Six cores at one frequency average to exactly it (the demo's critical frames:
        // unclamped, this sum rounds to 3600.0000000000005).
        let capped = TierSample {
            cores: [0.996, 0.992, 0.994, 1.0, 0.991, 0.994]
                .map(|a| core(3600.0, a))
                .to_vec(),
            ..tier.clone()
        };
        let c6: Vec<&CoreSample> = capped.cores.iter().collect();
        assert_eq!(cluster_mhz(&c6, &capped), Some(3600.0));
        assert_eq!(cluster_mhz(&c[2..], &tier), Some(1260.0));
        assert_eq!(core_mhz(&tier.cores[2], &tier), Some(1260.0));
        // No table: an all-idle tier's macmon figure is its floor; a partly idle tier
        // leaves the idle core's frequency unknown.
        let no_table = TierSample {
            min_mhz: None,
            ..tier.clone()
        };
        assert_eq!(core_mhz(&no_table.cores[2], &no_table), None);
        let idle = TierSample {
            min_mhz: None,
            freq_mhz: 1020.0,
            cores: vec![core(0.0, 0.0), core(0.0, 0.0)],
            ..tier
        };
        let c: Vec<&CoreSample> = idle.cores.iter().collect();
        assert_eq!(cluster_mhz(&c, &idle), Some(1020.0));
        let unknown = TierSample {
            freq_mhz: 0.0,
            ..idle.clone()
        };
        assert_eq!(cluster_mhz(&c, &unknown), None);
    }

    #[test]
    fn gpu_frequency_is_absent_or_the_lowest_step_when_idle() {
        assert_eq!(gpu_mhz(Some(1300.0), Some(0.6), Some(338.0)), Some(1300.0));
        assert_eq!(gpu_mhz(Some(0.0), Some(0.0), Some(338.0)), Some(338.0));
        assert_eq!(gpu_mhz(Some(0.0), Some(0.0), None), None);
        assert_eq!(gpu_mhz(Some(500.0), None, None), Some(500.0));
    }

    #[test]
    fn a_dual_gpu_intel_mac_reports_its_discrete_gpu() {
        let acc = |class: &str, stats: &[(&str, i64)]| Accelerator {
            class: class.into(),
            stats: stats.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            gpu_cores: None,
        };
        // A 16-inch MacBook Pro (2019) lists the integrated GPU first.
        let list = vec![
            acc("IntelAccelerator", &[("Device Utilization %", 3)]),
            acc(
                "AMDRadeonX6000_AMDNavi14GraphicsAccelerator",
                &[("GPU Activity(%)", 71)],
            ),
        ];
        assert_eq!(
            choose_accelerator(&list).unwrap().class,
            "AMDRadeonX6000_AMDNavi14GraphicsAccelerator"
        );
        // An entry without statistics is never chosen; Intel alone is still reported.
        let list = vec![
            acc("AMDRadeonX6000_AMDNavi14GraphicsAccelerator", &[]),
            acc("IntelAccelerator", &[("Device Utilization %", 3)]),
        ];
        assert_eq!(choose_accelerator(&list).unwrap().class, "IntelAccelerator");
        assert_eq!(choose_accelerator(&[]), None);
    }

    #[test]
    fn available_memory_does_not_count_purgeable_pages_twice() {
        let vm = VmCounters {
            free: 10_000,
            active: 400_000,
            inactive: 390_000,
            speculative: 5_000,
            wired: 200_000,
            compressor: 100_000,
            internal: 500_000,
            external: 295_000,
            purgeable: 20_000,
        };
        let m = memory_breakdown(&vm, 16384, Some(128 << 30), None);
        // Inactive anonymous pages are not available: free + file-backed + purgeable.
        assert_eq!(m.available, Some((10_000 + 295_000 + 20_000) * 16384));
        assert_eq!(m.cached, Some((295_000 + 20_000) * 16384));
        assert_eq!(m.used, Some((480_000 + 200_000 + 100_000) * 16384));
        assert_eq!(m.wired, Some(200_000 * 16384));
        assert_eq!(m.swap_used, None);
    }

    /// A small deterministic generator (xorshift64*), so the property test needs no crate.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
        }
    }

    #[test]
    fn used_plus_available_never_exceeds_total_for_random_page_counts() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            // Counters as a racing read may return them: unrelated to each other, some
            // huge, some zero; and the total below, at or above what they account for.
            let mut pick = || match rng.below(8) {
                0 => 0,
                1 => rng.below(u64::MAX),
                _ => rng.below(4_000_000),
            };
            let vm = VmCounters {
                free: pick(),
                active: pick(),
                inactive: pick(),
                speculative: pick(),
                wired: pick(),
                compressor: pick(),
                internal: pick(),
                external: pick(),
                purgeable: pick(),
            };
            let page = [4096, 16384][rng.below(2) as usize];
            let total = match rng.below(3) {
                0 => None,
                _ => Some(rng.below(1 << 40)),
            };
            let m = memory_breakdown(&vm, page, total, None);
            let (used, avail) = (m.used.unwrap(), m.available.unwrap());
            // The oracle in wide integers: every page the kernel accounts for.
            let pages: u128 = u128::from(vm.free)
                + u128::from(vm.active)
                + u128::from(vm.inactive)
                + u128::from(vm.speculative)
                + u128::from(vm.wired)
                + u128::from(vm.compressor);
            let accounted = u64::try_from(pages * u128::from(page)).unwrap_or(u64::MAX);
            let bound = total.map_or(accounted, |t| t.min(accounted));
            assert!(
                used.checked_add(avail).is_some_and(|s| s <= bound),
                "round {round}: {vm:?} page {page} total {total:?}: used {used} + available {avail} > {bound}"
            );
        }
    }

    fn m4max_machine() -> MachineInfo {
        MachineInfo {
            chip: Some("Apple M4 Max".into()),
            perflevels: m4max_levels(),
            cpu_nodes: nodes(&[("E", 0, 4), ("P", 1, 6), ("P", 2, 6)]),
            gpu_cores: Some(40),
            memory_bytes: Some(128 << 30),
            page_size: Some(16384),
            ..Default::default()
        }
    }

    #[test]
    fn raw_sample_becomes_a_reading() {
        let machine = m4max_machine();
        let topo = build_topology(&machine, 16).unwrap();
        let mut p = vec![core(4000.0, 0.5); 3];
        p.extend(vec![core(3000.0, 0.25); 3]);
        p.extend(vec![core(0.0, 0.0); 6]); // P1 idle
        let s = RawSample {
            elapsed_s: 2.0,
            ticks: vec![[0, 0, 100, 0]; 16],
            tiers: vec![
                TierSample {
                    label: "E".into(),
                    freq_mhz: 1500.0,
                    active_ratio: Some(0.2),
                    min_mhz: Some(1020.0),
                    cores: vec![
                        core(1000.0, 0.25),
                        core(2000.0, 0.25),
                        core(2000.0, 0.5),
                        core(1000.0, 0.0),
                    ],
                },
                TierSample {
                    label: "P".into(),
                    freq_mhz: 2630.0,
                    active_ratio: Some(0.45),
                    min_mhz: Some(1260.0),
                    cores: p,
                },
            ],
            gpu_active_ratio: Some(0.0),
            gpu_freq_mhz: Some(0.0),
            gpu_min_mhz: Some(338.0),
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
        assert_eq!(r.cpu_active[&4], 0.5);
        assert_eq!(r.cpu_active[&15], 0.0);
        assert_eq!(r.cpu_frequency_hz[&15], 1.26e9, "idle core: lowest step");
        // E0 is the whole E tier: macmon's own figure for the tier (1500 MHz), which covers
        // every core, not a figure derived from the cores listed.
        assert_eq!(r.cluster_frequency_hz["E0"], 1.5e9);
        // P0 is half the P tier: weighted by active residency (the idle cores count for
        // nothing): (4000·0.5·3 + 3000·0.25·3) / 2.25 = 3666.7 MHz; the plain mean of
        // macmon's per-core figures would say 3500.
        let p0 = r.cluster_frequency_hz["P0"];
        assert!((p0 - 3.6667e9).abs() < 1e5, "{p0}");
        assert_eq!(
            r.cluster_frequency_hz["P1"], 1.26e9,
            "idle cluster: lowest step"
        );
        let gpu = r.gpu.as_ref().unwrap();
        assert_eq!(
            (gpu.utilization, gpu.frequency_hz, gpu.memory_used_bytes),
            (Some(0.0), Some(338e6), None)
        );
        assert_eq!(r.thermal_pressure, Some(ThermalPressure::Serious));
        assert_eq!(r.memory_pressure_level, Some(MemoryPressureLevel::Warn));
        assert_eq!(r.memory.unwrap().wired, Some(16384));
        assert_eq!(r.chip.as_ref().unwrap().gpu_cores, Some(40));
        assert_eq!(r.energy[0].joules, 6.0); // ane: 3 W over 2 s
        let r2 = st.reading(&machine, &topo, &s);
        assert_eq!(r2.energy[1].joules, 80.0); // cpu: 20 W over 2 × 2 s
    }

    #[test]
    fn two_performance_tiers_land_on_their_own_cpus() {
        // M5 Max-style: 12 P (cpu0-11) and 6 S (cpu12-17), no E.
        let machine = MachineInfo {
            chip: Some("Apple M5 Max".into()),
            perflevels: vec![level("Super", 6), level("Performance", 12)],
            cpu_nodes: nodes(&[("M", 0, 6), ("M", 1, 6), ("P", 2, 6)]),
            ..Default::default()
        };
        let topo = build_topology(&machine, 18).unwrap();
        let s = RawSample {
            tiers: vec![
                TierSample {
                    label: "P".into(),
                    cores: vec![core(3000.0, 0.25); 12],
                    ..Default::default()
                },
                TierSample {
                    label: "S".into(),
                    cores: vec![core(4600.0, 0.75); 6],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let r = AppleState::default().reading(&machine, &topo, &s);
        assert_eq!(r.cpu_active.len(), 18);
        for cpu in 0..12 {
            assert_eq!(r.cpu_active[&cpu], 0.25, "cpu{cpu}");
        }
        for cpu in 12..18 {
            assert_eq!(r.cpu_active[&cpu], 0.75, "cpu{cpu}");
            assert_eq!(r.cpu_frequency_hz[&cpu], 4.6e9);
        }
        assert_eq!(r.cluster_frequency_hz["S0"], 4.6e9);
        assert_eq!(r.cluster_frequency_hz["P1"], 3.0e9);
    }

    #[test]
    fn without_ioreport_counters_apple_only_readings_are_absent() {
        // An Intel Mac where macmon's sampler opened: it reports 0 W and 0 MHz.
        let machine = MachineInfo {
            chip: Some("Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz".into()),
            ioreport_counters: Some(false),
            ..Default::default()
        };
        let topo = Topology {
            cpus: (0..4)
                .map(|c| {
                    let d = CpuDesc {
                        core_type: CoreType::Performance,
                        cluster: "P".into(),
                    };
                    (c, d)
                })
                .collect(),
            method: "uniform",
            tiers: Vec::new(),
        };
        let s = RawSample {
            elapsed_s: 1.0,
            tiers: vec![TierSample {
                label: "P".into(),
                cores: vec![core(0.0, 0.0); 4],
                ..Default::default()
            }],
            gpu_freq_mhz: Some(0.0),
            gpu_active_ratio: Some(0.0),
            gpu_stats: [("GPU Activity(%)".to_string(), 40)].into(),
            power_w: [
                ("cpu".to_string(), 0.0),
                ("gpu".to_string(), 0.0),
                ("ane".to_string(), 0.0),
                ("dram".to_string(), 0.0),
                ("system".to_string(), 35.0),
            ]
            .into(),
            ..Default::default()
        };
        let r = AppleState::default().reading(&machine, &topo, &s);
        assert_eq!(r.power_watts.keys().collect::<Vec<_>>(), vec!["system"]);
        assert_eq!(r.energy.len(), 1);
        assert!(r.cpu_active.is_empty() && r.cpu_frequency_hz.is_empty());
        let gpu = r.gpu.unwrap();
        assert_eq!((gpu.utilization, gpu.frequency_hz), (Some(0.4), None));
    }
}
