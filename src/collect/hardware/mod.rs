//! Hardware readings: platform-free sample types, P/E topology, and the arithmetic that
//! turns raw readings into metric families.
//!
//! A platform source ([`linux`], [`macos`], [`replay`]) only *reads*: it returns a
//! [`Reading`]. Everything computed from readings (tick deltas, utilisation, watts from
//! energy counters, thermal state from trip points) lives here and in [`apple`], and is
//! tested on fixtures.

pub(crate) mod apple;
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
// macOS selfcheck reads the tools through it; tested here
pub(crate) mod apple_tools;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
// the Linux source uses it; tested everywhere
pub(crate) mod linux;
pub(crate) mod macmon_window;
#[cfg(target_os = "macos")]
pub(crate) mod macos;
pub(crate) mod replay;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::collect::hardware::apple::{
    ANE_UTILIZATION_ESTIMATE_RATIO, CHIP_INFO, CPU_ACTIVE_RATIO, CPU_CLUSTER_FREQUENCY_HERTZ,
    CPU_FREQUENCY_HERTZ, FAN_SPEED_RPM, GPU_FREQUENCY_HERTZ, GPU_MEMORY_USED_BYTES,
    GPU_UTILIZATION_RATIO, MEMORY_PRESSURE_LEVEL,
};
use crate::config::TopologyOverride;
use crate::model::{Kind, MetricDef, def};
use crate::store::Family;

/// The hardware families every platform exports.
pub(crate) const CPU_INFO: MetricDef = def(
    "m4watch_cpu_info",
    Kind::Gauge,
    &["cpu", "type", "cluster"],
    "Always 1; labels give each logical CPU's core type (performance or efficiency) and cluster.",
);

pub(crate) const CPU_SECONDS_TOTAL: MetricDef = def(
    "m4watch_cpu_seconds_total",
    Kind::Counter,
    &["cpu", "mode"],
    "CPU time spent in each mode, per logical CPU, in seconds (node_cpu_seconds_total's shape; the core type is on m4watch_cpu_info).",
);

pub(crate) const CPU_UTILIZATION_RATIO: MetricDef = def(
    "m4watch_cpu_utilization_ratio",
    Kind::Gauge,
    &["cpu", "type"],
    "Busy share (0..1) of each logical CPU over the last collection interval.",
);

pub(crate) const CPU_CLUSTER_UTILIZATION_RATIO: MetricDef = def(
    "m4watch_cpu_cluster_utilization_ratio",
    Kind::Gauge,
    &["type"],
    "Busy share (0..1) of all CPUs of one core type over the last collection interval.",
);

pub(crate) const CPU_CORES: MetricDef = def(
    "m4watch_cpu_cores",
    Kind::Gauge,
    &["type"],
    "Number of logical CPUs of each core type.",
);

pub(crate) const MEMORY_TOTAL_BYTES: MetricDef = def(
    "m4watch_memory_total_bytes",
    Kind::Gauge,
    &[],
    "Physical memory installed, in bytes.",
);

pub(crate) const MEMORY_PARTITION_BYTES: MetricDef = def(
    "m4watch_memory_partition_bytes",
    Kind::Gauge,
    &["state"],
    "Physical memory by state, in bytes; the states do not overlap, so their sum is the memory the kernel accounts for (macOS: app, wired, compressed, cached, free; Linux: other, cached, free).",
);

pub(crate) const MEMORY_USED_BYTES: MetricDef = def(
    "m4watch_memory_used_bytes",
    Kind::Gauge,
    &[],
    "Memory in use, in bytes: what cannot be had without paging (macOS: app + wired + compressed, as Activity Monitor; Linux: total minus available).",
);

pub(crate) const MEMORY_AVAILABLE_BYTES: MetricDef = def(
    "m4watch_memory_available_bytes",
    Kind::Gauge,
    &[],
    "Memory that can be had without paging, in bytes (macOS: free + cached files; Linux: MemAvailable).",
);

pub(crate) const MEMORY_SWAP_TOTAL_BYTES: MetricDef = def(
    "m4watch_memory_swap_total_bytes",
    Kind::Gauge,
    &[],
    "Swap space, in bytes.",
);

pub(crate) const MEMORY_SWAP_USED_BYTES: MetricDef = def(
    "m4watch_memory_swap_used_bytes",
    Kind::Gauge,
    &[],
    "Swap space in use, in bytes.",
);

pub(crate) const MEMORY_PRESSURE_RATIO: MetricDef = def(
    "m4watch_memory_pressure_ratio",
    Kind::Gauge,
    &["window"],
    "Share of time (0..1) some task stalled waiting for memory, averaged over the window (Linux PSI).",
);

pub(crate) const TEMPERATURE_CELSIUS: MetricDef = def(
    "m4watch_temperature_celsius",
    Kind::Gauge,
    &["sensor"],
    "Temperature reported by a sensor, in degrees Celsius.",
);

pub(crate) const THERMAL_PRESSURE: MetricDef = def(
    "m4watch_thermal_pressure",
    Kind::Gauge,
    &["state"],
    "Thermal pressure as a state set: 1 for the current state (nominal, fair, serious, critical), 0 for the others.",
);

pub(crate) const POWER_WATTS: MetricDef = def(
    "m4watch_power_watts",
    Kind::Gauge,
    &["rail"],
    "Power drawn by a rail over the last collection interval, in watts (macOS rails: cpu, gpu, ane, dram, which do not overlap; Linux RAPL zones may nest, package-0 containing core).",
);

pub(crate) const SYSTEM_POWER_WATTS: MetricDef = def(
    "m4watch_system_power_watts",
    Kind::Gauge,
    &[],
    "Power drawn by the whole machine over the last collection interval, in watts (macOS SMC PSTR, Linux RAPL psys), the m4watch_power_watts rails included.",
);

pub(crate) const ENERGY_JOULES_TOTAL: MetricDef = def(
    "m4watch_energy_joules_total",
    Kind::Counter,
    &["rail"],
    "Energy used by a rail since m4watch started reading it, in joules (the rails of m4watch_power_watts).",
);

pub(crate) const SYSTEM_ENERGY_JOULES_TOTAL: MetricDef = def(
    "m4watch_system_energy_joules_total",
    Kind::Counter,
    &[],
    "Energy used by the whole machine since m4watch started reading it, in joules (macOS SMC PSTR, Linux RAPL psys).",
);

/// The rail that measures the whole machine (Apple's SMC `PSTR`, Linux RAPL's platform
/// zone): exported apart from the rails it contains.
fn is_system_rail(rail: &str) -> bool {
    rail == "system" || rail == "psys"
}

/// Core type of a logical CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CoreType {
    Performance,
    Efficiency,
}

impl CoreType {
    pub fn as_str(self) -> &'static str {
        match self {
            CoreType::Performance => "performance",
            CoreType::Efficiency => "efficiency",
        }
    }
}

/// One logical CPU's place in the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuDesc {
    pub core_type: CoreType,
    pub cluster: String,
}

/// Every logical CPU, by number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub cpus: BTreeMap<u32, CpuDesc>,
    /// How the split was decided, for logs and the status API.
    pub method: &'static str,
    /// Apple Silicon core tiers, lowest first (`E`, `P`, `S`), where the machine names
    /// them; empty elsewhere. Per-core residency is matched to CPUs through these.
    pub tiers: Vec<Tier>,
}

/// One core tier (an Apple `hw.perflevelN`) and its CPUs in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// macmon's letter for the tier: `E`, `P`, `S`, or `_` when its type is unknown.
    pub label: String,
    pub cpus: Vec<u32>,
}

impl Topology {
    /// The tiers, lowest first; without named tiers (a configured override, Linux), the
    /// efficiency CPUs (if any) then the performance CPUs.
    pub fn tier_cpus(&self) -> Vec<Tier> {
        if !self.tiers.is_empty() {
            return self.tiers.clone();
        }
        [(CoreType::Efficiency, "E"), (CoreType::Performance, "P")]
            .into_iter()
            .map(|(t, label)| Tier {
                label: label.into(),
                cpus: self
                    .cpus
                    .iter()
                    .filter(|(_, d)| d.core_type == t)
                    .map(|(&c, _)| c)
                    .collect(),
            })
            .filter(|t| !t.cpus.is_empty())
            .collect()
    }

    pub fn core_type(&self, cpu: u32) -> CoreType {
        self.cpus
            .get(&cpu)
            .map_or(CoreType::Performance, |d| d.core_type)
    }

    pub fn count(&self, t: CoreType) -> usize {
        self.cpus.values().filter(|d| d.core_type == t).count()
    }

    /// Whether the core counts are known: CPUs were described (not the every-CPU-a-P-core
    /// fallback) and no named tier lacks its CPUs (a macmon soc block that says 0 cores,
    /// macmon 0.7's cluster pairs without counts).
    pub fn counts_known(&self) -> bool {
        !self.cpus.is_empty()
            && self.method != "uniform"
            && self.tiers.iter().all(|t| !t.cpus.is_empty())
    }

    /// Core type of a cluster: its CPUs' type, else (a tier nobody counted) its tier's.
    pub fn cluster_type(&self, cluster: &str) -> CoreType {
        if let Some(d) = self.cpus.values().find(|d| d.cluster == cluster) {
            return d.core_type;
        }
        let efficiency = self
            .tiers
            .iter()
            .any(|t| t.label == "E" && t.cpus.is_empty() && cluster.starts_with('E'));
        if efficiency {
            CoreType::Efficiency
        } else {
            CoreType::Performance
        }
    }
}

/// What a platform knows about its CPUs, from which the topology is decided.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopologyInputs {
    /// Every logical CPU.
    pub cpus: Vec<u32>,
    /// Intel hybrid: CPUs of the `cpu_core` PMU (P-cores).
    pub intel_core: Option<Vec<u32>>,
    /// Intel hybrid: CPUs of the `cpu_atom` PMU (E-cores).
    pub intel_atom: Option<Vec<u32>>,
    /// ARM `cpu_capacity` per CPU.
    pub capacity: BTreeMap<u32, u64>,
    /// cpufreq `cpuinfo_max_freq` per CPU, in kHz.
    pub max_freq_khz: BTreeMap<u32, u64>,
    /// Cluster id per CPU where the platform reports one.
    pub cluster: BTreeMap<u32, String>,
}

/// Below this share of the fastest core's maximum frequency a core counts as an
/// efficiency core. Favoured-core boost on non-hybrid chips (Intel Turbo Boost Max 3.0)
/// spreads maxima by a few percent; real E-cores sit far lower.
const EFFICIENCY_FREQ_SHARE: f64 = 0.85;

/// Decides P/E types. A configured override wins; then Intel hybrid PMUs, ARM
/// capacities, distinct cpufreq maxima, and otherwise every CPU is a performance core.
pub(crate) fn detect_topology(
    inputs: &TopologyInputs,
    forced: Option<&TopologyOverride>,
) -> Topology {
    let mut types: BTreeMap<u32, CoreType> = BTreeMap::new();
    let method;
    if let Some((p, e)) = forced.and_then(|f| f.cpu_sets().ok()) {
        method = "config";
        for &cpu in &inputs.cpus {
            // A CPU the override leaves out takes the type of the set that *was* given
            // in full: naming only the E-cores makes the rest P-cores and vice versa.
            let t = if e.contains(&cpu) || (!p.is_empty() && !p.contains(&cpu) && e.is_empty()) {
                CoreType::Efficiency
            } else {
                CoreType::Performance
            };
            types.insert(cpu, t);
        }
    } else if let (Some(core), Some(atom)) = (&inputs.intel_core, &inputs.intel_atom) {
        method = "intel-hybrid";
        for &cpu in &inputs.cpus {
            let t = if atom.contains(&cpu) && !core.contains(&cpu) {
                CoreType::Efficiency
            } else {
                CoreType::Performance
            };
            types.insert(cpu, t);
        }
    } else if distinct(&inputs.capacity) > 1 {
        method = "cpu-capacity";
        let max = inputs.capacity.values().copied().max().unwrap_or(0);
        for &cpu in &inputs.cpus {
            let t = match inputs.capacity.get(&cpu) {
                Some(&c) if c < max => CoreType::Efficiency,
                _ => CoreType::Performance,
            };
            types.insert(cpu, t);
        }
    } else if heterogeneous_freq(&inputs.max_freq_khz) {
        method = "cpufreq-max";
        let max = inputs.max_freq_khz.values().copied().max().unwrap_or(0) as f64;
        for &cpu in &inputs.cpus {
            let t = match inputs.max_freq_khz.get(&cpu) {
                Some(&f) if (f as f64) < max * EFFICIENCY_FREQ_SHARE => CoreType::Efficiency,
                _ => CoreType::Performance,
            };
            types.insert(cpu, t);
        }
    } else {
        method = "uniform";
        types = inputs
            .cpus
            .iter()
            .map(|&c| (c, CoreType::Performance))
            .collect();
    }
    let cpus = types
        .into_iter()
        .map(|(cpu, core_type)| {
            let cluster = inputs.cluster.get(&cpu).cloned().unwrap_or_else(|| {
                // No cluster id from the platform: one cluster per core type.
                match core_type {
                    CoreType::Performance => "P".to_string(),
                    CoreType::Efficiency => "E".to_string(),
                }
            });
            (cpu, CpuDesc { core_type, cluster })
        })
        .collect();
    Topology {
        cpus,
        method,
        tiers: Vec::new(),
    }
}

fn distinct(m: &BTreeMap<u32, u64>) -> usize {
    let mut v: Vec<u64> = m.values().copied().collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}

fn heterogeneous_freq(m: &BTreeMap<u32, u64>) -> bool {
    let (Some(&min), Some(&max)) = (m.values().min(), m.values().max()) else {
        return false;
    };
    (min as f64) < (max as f64) * EFFICIENCY_FREQ_SHARE
}

/// Cumulative CPU time of one logical CPU, in seconds, by mode.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
}

impl CpuTimes {
    pub fn modes(&self) -> [(&'static str, f64); 8] {
        [
            ("user", self.user),
            ("nice", self.nice),
            ("system", self.system),
            ("idle", self.idle),
            ("iowait", self.iowait),
            ("irq", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
        ]
    }

    fn idle_total(&self) -> f64 {
        self.idle + self.iowait
    }

    fn total(&self) -> f64 {
        self.modes().iter().map(|(_, v)| v).sum()
    }
}

/// Busy share over an interval: `(busy, total)` time deltas. `None` when no time passed
/// or a counter went backwards (CPU hot-plugged, counters reset).
pub(crate) fn busy_delta(prev: &CpuTimes, cur: &CpuTimes) -> Option<(f64, f64)> {
    let total = cur.total() - prev.total();
    let idle = cur.idle_total() - prev.idle_total();
    if total <= 0.0 || idle < 0.0 || idle > total {
        return None;
    }
    Some((total - idle, total))
}

/// Memory by state, in bytes; a field the platform cannot read is `None`.
///
/// `app`, `wired`, `compressed`, `cached`, `free` and `other` do not overlap (the
/// partition); `used` and `available` are aggregates over them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    pub total: Option<u64>,
    pub used: Option<u64>,
    pub available: Option<u64>,
    pub free: Option<u64>,
    pub cached: Option<u64>,
    /// Anonymous pages that are not purgeable: Activity Monitor's App Memory (macOS).
    pub app: Option<u64>,
    /// What is neither free nor cache (Linux: anonymous pages, kernel, unreclaimable
    /// slab): total − free − cached.
    pub other: Option<u64>,
    /// Pages the kernel pinned (macOS).
    pub wired: Option<u64>,
    /// RAM the memory compressor occupies (macOS).
    pub compressed: Option<u64>,
    pub swap_used: Option<u64>,
    pub swap_total: Option<u64>,
}

impl Memory {
    /// The states that partition memory, each known one once; empty when the source
    /// states only aggregates (a macmon recording without VM counters).
    pub(crate) fn partition(&self) -> Vec<(&'static str, u64)> {
        [
            ("app", self.app),
            ("wired", self.wired),
            ("compressed", self.compressed),
            ("other", self.other),
            ("cached", self.cached),
            ("free", self.free),
        ]
        .into_iter()
        .filter_map(|(s, v)| v.map(|v| (s, v)))
        .collect()
    }
}

/// macOS memory pressure (`kern.memorystatus_vm_pressure_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryPressureLevel {
    Normal,
    Warn,
    Critical,
}

impl MemoryPressureLevel {
    pub const ALL: [MemoryPressureLevel; 3] = [
        MemoryPressureLevel::Normal,
        MemoryPressureLevel::Warn,
        MemoryPressureLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MemoryPressureLevel::Normal => "normal",
            MemoryPressureLevel::Warn => "warn",
            MemoryPressureLevel::Critical => "critical",
        }
    }
}

/// GPU readings; a field the platform cannot read is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gpu {
    /// Busy share 0..1.
    pub utilization: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    pub frequency_hz: Option<f64>,
}

/// A fan and its speed.
#[derive(Debug, Clone, PartialEq)]
pub struct Fan {
    pub name: String,
    pub rpm: f64,
}

/// The chip, for `m4watch_chip_info`; core counts come from the topology.
#[derive(Debug, Clone, PartialEq)]
pub struct ChipInfo {
    pub chip: String,
    pub gpu_cores: Option<u32>,
}

/// Share of time tasks stalled on memory, 0..1, over 10 s and 60 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryPressure {
    pub avg10: f64,
    pub avg60: f64,
}

/// Thermal pressure in the names macOS uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThermalPressure {
    Nominal,
    Fair,
    Serious,
    Critical,
}

impl ThermalPressure {
    pub const ALL: [ThermalPressure; 4] = [
        ThermalPressure::Nominal,
        ThermalPressure::Fair,
        ThermalPressure::Serious,
        ThermalPressure::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ThermalPressure::Nominal => "nominal",
            ThermalPressure::Fair => "fair",
            ThermalPressure::Serious => "serious",
            ThermalPressure::Critical => "critical",
        }
    }
}

/// Kind of a thermal trip point, as Linux names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripKind {
    Active,
    Passive,
    Hot,
    Critical,
}

/// A sensor reading with its trip points (°C), if the platform has any.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub name: String,
    pub celsius: f64,
    pub trips: Vec<(TripKind, f64)>,
}

/// Thermal pressure of one sensor from its trip points: at or over `critical` is
/// critical, over `hot` serious, over `passive` (where the kernel starts throttling)
/// fair. `None` when the sensor has no trip point that says anything about pressure.
pub(crate) fn sensor_pressure(s: &Sensor) -> Option<ThermalPressure> {
    let mut known = false;
    let mut level = ThermalPressure::Nominal;
    for &(kind, at) in &s.trips {
        let reached = match kind {
            TripKind::Critical => ThermalPressure::Critical,
            TripKind::Hot => ThermalPressure::Serious,
            TripKind::Passive => ThermalPressure::Fair,
            TripKind::Active => continue, // fans spinning up is not pressure
        };
        known = true;
        if s.celsius >= at {
            level = level.max(reached);
        }
    }
    known.then_some(level)
}

/// Cumulative energy of one power rail.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyCounter {
    pub rail: String,
    pub joules: f64,
    /// Value at which the hardware counter wraps to 0, in joules.
    pub wraps_at: Option<f64>,
}

/// One read of the hardware.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub cpu: BTreeMap<u32, CpuTimes>,
    pub memory: Option<Memory>,
    pub memory_pressure: Option<MemoryPressure>,
    pub sensors: Vec<Sensor>,
    /// Pressure the platform reports directly (macOS); otherwise derived from sensors.
    pub thermal_pressure: Option<ThermalPressure>,
    pub energy: Vec<EnergyCounter>,
    /// Watts the platform measured over its own window, per rail; such a rail's
    /// `m4watch_power_watts` comes from here rather than from energy deltas.
    pub power_watts: BTreeMap<String, f64>,
    pub gpu: Option<Gpu>,
    /// Average frequency while active, per CPU, in hertz.
    pub cpu_frequency_hz: BTreeMap<u32, f64>,
    /// Per cluster (topology cluster names), in hertz.
    pub cluster_frequency_hz: BTreeMap<String, f64>,
    /// Share of the window each CPU spent in an active frequency state, 0..1.
    pub cpu_active: BTreeMap<u32, f64>,
    /// Busy share per core type as the source states it (a macmon recording's tier
    /// residency); where present it is `m4watch_cpu_cluster_utilization_ratio` instead of
    /// the mean over the CPUs the reading lists.
    pub cluster_utilization: BTreeMap<CoreType, f64>,
    pub fans: Vec<Fan>,
    pub chip: Option<ChipInfo>,
    pub memory_pressure_level: Option<MemoryPressureLevel>,
}

struct RailState {
    raw: f64,
    total: f64,
}

/// Turns successive readings into families: keeps what a delta needs.
pub(crate) struct Deriver {
    topology: Topology,
    prev_cpu: Option<(BTreeMap<u32, CpuTimes>, Instant)>,
    rails: BTreeMap<String, RailState>,
    prev_energy_at: Option<Instant>,
    ane_max_watts: f64,
}

impl Deriver {
    pub(crate) fn new(topology: Topology) -> Self {
        Deriver {
            topology,
            prev_cpu: None,
            rails: BTreeMap::new(),
            prev_energy_at: None,
            ane_max_watts: 6.0,
        }
    }

    /// Neural Engine watts taken as 100% by the utilisation estimate.
    pub(crate) fn set_ane_max_watts(&mut self, w: f64) {
        self.ane_max_watts = w;
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Families for one reading taken at `at`. Values that need a previous reading
    /// (utilisation, watts) are absent on the first call.
    pub(crate) fn families(&mut self, r: &Reading, at: Instant) -> Vec<Family> {
        let mut out = Vec::new();
        self.cpu_families(r, at, &mut out);
        memory_families(r, &mut out);
        thermal_families(r, &mut out);
        self.power_families(r, at, &mut out);
        self.apple_families(r, &mut out);
        out
    }

    /// Series only Apple Silicon sources (live or replayed) fill.
    fn apple_families(&self, r: &Reading, out: &mut Vec<Family>) {
        let mut gpu_util = Family::new(&GPU_UTILIZATION_RATIO);
        let mut gpu_mem = Family::new(&GPU_MEMORY_USED_BYTES);
        let mut gpu_freq = Family::new(&GPU_FREQUENCY_HERTZ);
        if let Some(g) = &r.gpu {
            if let Some(v) = g.utilization {
                gpu_util.push_value(v);
            }
            if let Some(v) = g.memory_used_bytes {
                gpu_mem.push_value(v);
            }
            if let Some(v) = g.frequency_hz {
                gpu_freq.push_value(v);
            }
        }
        let mut freq = Family::new(&CPU_FREQUENCY_HERTZ);
        for (&cpu, &hz) in &r.cpu_frequency_hz {
            let t = self.topology.core_type(cpu).as_str();
            freq.push([("cpu", cpu.to_string().as_str()), ("type", t)], hz);
        }
        let mut cluster_freq = Family::new(&CPU_CLUSTER_FREQUENCY_HERTZ);
        for (cl, &hz) in &r.cluster_frequency_hz {
            let t = self.topology.cluster_type(cl);
            cluster_freq.push([("cluster", cl.as_str()), ("type", t.as_str())], hz);
        }
        let mut active = Family::new(&CPU_ACTIVE_RATIO);
        for (&cpu, &v) in &r.cpu_active {
            let t = self.topology.core_type(cpu).as_str();
            active.push([("cpu", cpu.to_string().as_str()), ("type", t)], v);
        }
        let mut ane_est = Family::new(&ANE_UTILIZATION_ESTIMATE_RATIO);
        if let Some(&w) = r.power_watts.get("ane") {
            if let Some(e) = apple::ane_estimate(w, self.ane_max_watts) {
                ane_est.push_value(e);
            }
        }
        let mut fans = Family::new(&FAN_SPEED_RPM);
        for f in &r.fans {
            fans.push([("fan", f.name.as_str())], f.rpm);
        }
        let mut chip = Family::new(&CHIP_INFO);
        if let Some(c) = &r.chip {
            // Unknown counts are empty labels, never 0 (as unknown GPU cores are).
            let count = |t| {
                if self.topology.counts_known() {
                    self.topology.count(t).to_string()
                } else {
                    String::new()
                }
            };
            let p = count(CoreType::Performance);
            let e = count(CoreType::Efficiency);
            let g = c.gpu_cores.map(|g| g.to_string()).unwrap_or_default();
            chip.push(
                [
                    ("chip", c.chip.as_str()),
                    ("performance_cores", p.as_str()),
                    ("efficiency_cores", e.as_str()),
                    ("gpu_cores", g.as_str()),
                ],
                1.0,
            );
        }
        let mut level = Family::new(&MEMORY_PRESSURE_LEVEL);
        if let Some(l) = r.memory_pressure_level {
            for s in MemoryPressureLevel::ALL {
                level.push([("level", s.as_str())], if s == l { 1.0 } else { 0.0 });
            }
        }
        out.extend([
            gpu_util,
            gpu_mem,
            gpu_freq,
            freq,
            cluster_freq,
            active,
            ane_est,
            fans,
            chip,
            level,
        ]);
    }

    fn cpu_families(&mut self, r: &Reading, at: Instant, out: &mut Vec<Family>) {
        let mut info = Family::new(&CPU_INFO);
        let mut cores = Family::new(&CPU_CORES);
        let mut seconds = Family::new(&CPU_SECONDS_TOTAL);
        let mut util = Family::new(&CPU_UTILIZATION_RATIO);
        let mut cluster = Family::new(&CPU_CLUSTER_UTILIZATION_RATIO);
        let mut per_type: BTreeMap<CoreType, (f64, f64)> = BTreeMap::new();
        // A reading without CPU times (a recording of macmon 0.7's cluster pairs, whose
        // CPUs only a soc block or the configured topology counts): the topology's CPUs.
        let described: Vec<u32> = if r.cpu.is_empty() && self.topology.counts_known() {
            self.topology.cpus.keys().copied().collect()
        } else {
            Vec::new()
        };
        for t in [CoreType::Performance, CoreType::Efficiency] {
            let n = r
                .cpu
                .keys()
                .chain(&described)
                .filter(|&&c| self.topology.core_type(c) == t)
                .count();
            if n > 0 {
                cores.push([("type", t.as_str())], n as f64);
            }
        }
        for &cpu in &described {
            let d = &self.topology.cpus[&cpu];
            let cpu_s = cpu.to_string();
            info.push(
                [
                    ("cpu", cpu_s.as_str()),
                    ("type", d.core_type.as_str()),
                    ("cluster", d.cluster.as_str()),
                ],
                1.0,
            );
        }
        for (&cpu, times) in &r.cpu {
            let t = self.topology.core_type(cpu);
            let cpu_s = cpu.to_string();
            let cl = self
                .topology
                .cpus
                .get(&cpu)
                .map_or("P", |d| d.cluster.as_str());
            info.push(
                [
                    ("cpu", cpu_s.as_str()),
                    ("type", t.as_str()),
                    ("cluster", cl),
                ],
                1.0,
            );
            for (mode, v) in times.modes() {
                seconds.push([("cpu", cpu_s.as_str()), ("mode", mode)], v);
            }
            let delta = self
                .prev_cpu
                .as_ref()
                .and_then(|(prev, _)| prev.get(&cpu))
                .and_then(|p| busy_delta(p, times));
            if let Some((busy, total)) = delta {
                util.push(
                    [("cpu", cpu_s.as_str()), ("type", t.as_str())],
                    busy / total,
                );
                let acc = per_type.entry(t).or_default();
                acc.0 += busy;
                acc.1 += total;
            }
        }
        for (t, (busy, total)) in per_type {
            if !r.cluster_utilization.contains_key(&t) {
                cluster.push([("type", t.as_str())], busy / total);
            }
        }
        for (t, &v) in &r.cluster_utilization {
            cluster.push([("type", t.as_str())], v.clamp(0.0, 1.0));
        }
        if !r.cpu.is_empty() {
            self.prev_cpu = Some((r.cpu.clone(), at));
        }
        out.extend([info, cores, seconds, util, cluster]);
    }

    fn power_families(&mut self, r: &Reading, at: Instant, out: &mut Vec<Family>) {
        let mut watts = RailFamilies::new(&POWER_WATTS, &SYSTEM_POWER_WATTS);
        let mut joules = RailFamilies::new(&ENERGY_JOULES_TOTAL, &SYSTEM_ENERGY_JOULES_TOTAL);
        let elapsed = self
            .prev_energy_at
            .map(|p| at.duration_since(p).as_secs_f64());
        for c in &r.energy {
            let state = self.rails.get_mut(&c.rail);
            match state {
                Some(s) => {
                    let mut delta = c.joules - s.raw;
                    if delta < 0.0 {
                        // The hardware counter wrapped; without its range we cannot
                        // know how far it went, so skip this interval.
                        delta = c.wraps_at.map_or(0.0, |w| w - s.raw + c.joules);
                    }
                    s.total += delta;
                    s.raw = c.joules;
                    if r.power_watts.contains_key(&c.rail) {
                        // Measured by the platform over its own window: pushed below.
                    } else if let Some(dt) = elapsed.filter(|&d| d > 0.0) {
                        watts.push(&c.rail, delta / dt);
                    }
                    joules.push(&c.rail, s.total);
                }
                None => {
                    self.rails.insert(
                        c.rail.clone(),
                        RailState {
                            raw: c.joules,
                            total: 0.0,
                        },
                    );
                    joules.push(&c.rail, 0.0);
                }
            }
        }
        if !r.energy.is_empty() {
            self.prev_energy_at = Some(at);
        }
        for (rail, &w) in &r.power_watts {
            watts.push(rail, w);
        }
        out.extend([watts.rails, watts.system, joules.rails, joules.system]);
    }
}

/// A per-rail family and its whole-machine counterpart: the system rail contains the
/// others, so it stays out of the family whose `sum` is meaningful.
struct RailFamilies {
    rails: Family,
    system: Family,
}

impl RailFamilies {
    fn new(rails: &MetricDef, system: &MetricDef) -> Self {
        RailFamilies {
            rails: Family::new(rails),
            system: Family::new(system),
        }
    }

    fn push(&mut self, rail: &str, v: f64) {
        if is_system_rail(rail) {
            self.system.push_value(v);
        } else {
            self.rails.push([("rail", rail)], v);
        }
    }
}

fn memory_families(r: &Reading, out: &mut Vec<Family>) {
    let mut total = Family::new(&MEMORY_TOTAL_BYTES);
    let mut partition = Family::new(&MEMORY_PARTITION_BYTES);
    let mut used = Family::new(&MEMORY_USED_BYTES);
    let mut available = Family::new(&MEMORY_AVAILABLE_BYTES);
    let mut swap_total = Family::new(&MEMORY_SWAP_TOTAL_BYTES);
    let mut swap_used = Family::new(&MEMORY_SWAP_USED_BYTES);
    let mut pressure = Family::new(&MEMORY_PRESSURE_RATIO);
    if let Some(m) = &r.memory {
        for (state, v) in m.partition() {
            partition.push([("state", state)], v as f64);
        }
        for (family, v) in [
            (&mut total, m.total),
            (&mut used, m.used),
            (&mut available, m.available),
            (&mut swap_total, m.swap_total),
            (&mut swap_used, m.swap_used),
        ] {
            if let Some(v) = v {
                family.push_value(v as f64);
            }
        }
    }
    if let Some(p) = r.memory_pressure {
        pressure.push([("window", "10s")], p.avg10);
        pressure.push([("window", "60s")], p.avg60);
    }
    out.extend([
        total, partition, used, available, swap_total, swap_used, pressure,
    ]);
}

fn thermal_families(r: &Reading, out: &mut Vec<Family>) {
    let mut temp = Family::new(&TEMPERATURE_CELSIUS);
    let mut state = Family::new(&THERMAL_PRESSURE);
    for s in &r.sensors {
        temp.push([("sensor", s.name.as_str())], s.celsius);
    }
    let level = r
        .thermal_pressure
        .or_else(|| r.sensors.iter().filter_map(sensor_pressure).max());
    if let Some(level) = level {
        for s in ThermalPressure::ALL {
            state.push([("state", s.as_str())], if s == level { 1.0 } else { 0.0 });
        }
    }
    out.extend([temp, state]);
}

/// A platform source of hardware readings.
pub trait Source: Send + 'static {
    fn read(&mut self) -> std::io::Result<Reading>;
}

impl Source for linux::LinuxSource {
    fn read(&mut self) -> std::io::Result<Reading> {
        linux::LinuxSource::read(self)
    }
}

/// Why the configured hardware source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("hardware.replay_file is not set")]
    NoReplayFile,
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    /// The macOS source could not open its kernel interfaces.
    #[error(transparent)]
    Platform(std::io::Error),
    #[error("the linux hardware source only runs on Linux")]
    LinuxOnly,
    #[error("the macos hardware source is not built in")]
    MacosNotBuiltIn,
}

/// Why `m4watch dump-raw` stopped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(
        "dump-raw reads the Mac's hardware (IOReport, SMC, host_processor_info) and only runs on macOS; this system is {os}. Here, play a recording with hardware.source: replay, or run `m4watch demo`"
    )]
    NotMacos { os: &'static str },
    /// The hardware source could not open its kernel interfaces.
    #[error(transparent)]
    Source(std::io::Error),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Write(std::io::Error),
}

/// The hardware collector: a platform source plus the [`Deriver`].
pub struct HardwareCollector {
    source: Box<dyn Source>,
    deriver: Deriver,
}

impl HardwareCollector {
    pub fn new(source: Box<dyn Source>, topology: Topology) -> Self {
        HardwareCollector {
            source,
            deriver: Deriver::new(topology),
        }
    }

    /// The configured source: native for this platform, or a replayed recording.
    pub fn from_config(cfg: &crate::config::HardwareConfig) -> Result<Self, HardwareError> {
        let mut c = Self::source_from_config(cfg)?;
        c.deriver.set_ane_max_watts(cfg.ane_max_watts);
        Ok(c)
    }

    fn source_from_config(cfg: &crate::config::HardwareConfig) -> Result<Self, HardwareError> {
        use crate::config::HardwareSource;
        match cfg.source {
            HardwareSource::Replay => {
                let path = cfg
                    .replay_file
                    .as_deref()
                    .ok_or(HardwareError::NoReplayFile)?;
                let mut src = replay::ReplaySource::open(path, cfg.replay_loop)?;
                let topology = apple_topology(src.machine(), src.cpu_count(), cfg);
                src.set_topology(topology.clone());
                Ok(HardwareCollector::new(Box::new(src), topology))
            }
            #[cfg(target_os = "macos")]
            HardwareSource::Auto | HardwareSource::Macos => {
                let mut src =
                    macos::MacSource::new(cfg.interval.get()).map_err(HardwareError::Platform)?;
                let topology = apple_topology(src.machine(), src.cpu_count(), cfg);
                src.set_topology(topology.clone());
                Ok(HardwareCollector::new(Box::new(src), topology))
            }
            #[cfg(target_os = "macos")]
            HardwareSource::Linux => Err(HardwareError::LinuxOnly),
            #[cfg(not(target_os = "macos"))]
            HardwareSource::Auto | HardwareSource::Linux => {
                let src = linux::LinuxSource::new(&cfg.procfs, &cfg.sysfs);
                let topology = detect_topology(&src.topology_inputs(), cfg.topology.as_ref());
                tracing::info!(
                    method = topology.method,
                    performance = topology.count(CoreType::Performance),
                    efficiency = topology.count(CoreType::Efficiency),
                    "cpu topology"
                );
                Ok(HardwareCollector::new(Box::new(src), topology))
            }
            #[cfg(not(target_os = "macos"))]
            HardwareSource::Macos => Err(HardwareError::MacosNotBuiltIn),
        }
    }

    pub fn topology(&self) -> &Topology {
        self.deriver.topology()
    }
}

/// `m4watch dump-raw`: a header and `samples` raw readings of this Mac as JSON lines,
/// the format the replay source plays.
pub fn dump_raw(
    samples: u32,
    interval: std::time::Duration,
    out: &mut dyn std::io::Write,
) -> Result<(), DumpError> {
    #[cfg(target_os = "macos")]
    {
        macos::dump_raw(samples, interval, out)
    }
    #[cfg(not(target_os = "macos"))]
    {
        let _ = (samples, interval, out);
        Err(DumpError::NotMacos {
            os: std::env::consts::OS,
        })
    }
}

/// Topology of an Apple machine: a configured override wins, then the machine's own
/// description ([`apple::build_topology`]).
fn apple_topology(
    machine: &apple::MachineInfo,
    ncpu: u32,
    cfg: &crate::config::HardwareConfig,
) -> Topology {
    let mut cpus: Vec<u32> = (0..ncpu).collect();
    if let (0, Some(Ok((p, e)))) = (ncpu, cfg.topology.as_ref().map(|t| t.cpu_sets())) {
        // A recording that counts no CPUs (macmon 0.7's cluster pairs): the configured
        // topology names them.
        cpus = p.union(&e).copied().collect();
    }
    let inputs = TopologyInputs {
        cpus,
        ..Default::default()
    };
    let topology = match &cfg.topology {
        Some(forced) => detect_topology(&inputs, Some(forced)),
        None => apple::build_topology(machine, ncpu).unwrap_or_else(|e| {
            // A macOS VM or an unknown chip: keep running, every CPU a P-core, and say why.
            tracing::warn!(error = %e, "cannot tell performance from efficiency cores");
            detect_topology(&inputs, None)
        }),
    };
    tracing::info!(
        method = topology.method,
        performance = topology.count(CoreType::Performance),
        efficiency = topology.count(CoreType::Efficiency),
        "cpu topology"
    );
    topology
}

impl crate::collect::BlockingCollector for HardwareCollector {
    fn name(&self) -> &'static str {
        "hardware"
    }

    fn collect(&mut self) -> Result<Vec<Family>, crate::collect::CollectError> {
        let reading = self.source.read()?;
        Ok(self.deriver.families(&reading, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn inputs(cpus: u32) -> TopologyInputs {
        TopologyInputs {
            cpus: (0..cpus).collect(),
            ..Default::default()
        }
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
    fn override_wins_and_fills_the_rest() {
        let mut i = inputs(6);
        i.capacity = (0..6)
            .map(|c| (c, if c < 2 { 512 } else { 1024 }))
            .collect();
        let forced = TopologyOverride {
            performance: None,
            efficiency: Some("4-5".into()),
        };
        let t = detect_topology(&i, Some(&forced));
        assert_eq!((types(&t).as_str(), t.method), ("PPPPEE", "config"));
        let forced = TopologyOverride {
            performance: Some("0-1".into()),
            efficiency: None,
        };
        assert_eq!(types(&detect_topology(&i, Some(&forced))), "PPEEEE");
    }

    #[test]
    fn apple_like_capacity_lists_efficiency_cores_first() {
        let mut i = inputs(16);
        i.capacity = (0..16)
            .map(|c| (c, if c < 4 { 400 } else { 1024 }))
            .collect();
        let t = detect_topology(&i, None);
        assert_eq!(types(&t), "EEEEPPPPPPPPPPPP");
        assert_eq!(
            (
                t.count(CoreType::Performance),
                t.count(CoreType::Efficiency)
            ),
            (12, 4)
        );
    }

    #[test]
    fn favoured_core_boost_is_not_a_hybrid_split() {
        let mut i = inputs(4);
        i.max_freq_khz = [
            (0, 4_700_000),
            (1, 4_700_000),
            (2, 4_500_000),
            (3, 4_500_000),
        ]
        .into();
        assert_eq!(detect_topology(&i, None).method, "uniform");
        i.max_freq_khz = [
            (0, 4_700_000),
            (1, 4_700_000),
            (2, 3_000_000),
            (3, 3_000_000),
        ]
        .into();
        let t = detect_topology(&i, None);
        assert_eq!((types(&t).as_str(), t.method), ("PPEE", "cpufreq-max"));
    }

    #[test]
    fn busy_share_from_tick_deltas() {
        let prev = CpuTimes {
            user: 1.0,
            system: 0.5,
            idle: 8.5,
            ..Default::default()
        };
        let cur = CpuTimes {
            user: 1.6,
            system: 0.7,
            idle: 9.2,
            ..Default::default()
        };
        let (busy, total) = busy_delta(&prev, &cur).unwrap();
        assert!((busy / total - 0.8 / 1.5).abs() < 1e-9);
        assert_eq!(busy_delta(&cur, &cur), None);
        assert_eq!(busy_delta(&cur, &prev), None);
    }

    #[test]
    fn trip_points_give_pressure() {
        let s = |c: f64| Sensor {
            name: "x".into(),
            celsius: c,
            trips: vec![
                (TripKind::Active, 50.0),
                (TripKind::Passive, 80.0),
                (TripKind::Hot, 95.0),
                (TripKind::Critical, 105.0),
            ],
        };
        assert_eq!(sensor_pressure(&s(60.0)), Some(ThermalPressure::Nominal));
        assert_eq!(sensor_pressure(&s(85.0)), Some(ThermalPressure::Fair));
        assert_eq!(sensor_pressure(&s(96.0)), Some(ThermalPressure::Serious));
        assert_eq!(sensor_pressure(&s(105.0)), Some(ThermalPressure::Critical));
        let only_active = Sensor {
            name: "y".into(),
            celsius: 99.0,
            trips: vec![(TripKind::Active, 40.0)],
        };
        assert_eq!(sensor_pressure(&only_active), None);
    }

    fn family<'a>(fams: &'a [Family], name: &str) -> &'a Family {
        fams.iter().find(|f| f.name == name).unwrap()
    }

    #[test]
    fn deriver_reports_rates_only_from_the_second_reading() {
        let mut i = inputs(2);
        i.capacity = [(0, 512), (1, 1024)].into();
        let mut d = Deriver::new(detect_topology(&i, None));
        let t0 = Instant::now();
        let mut r = Reading::default();
        r.cpu.insert(
            0,
            CpuTimes {
                user: 1.0,
                idle: 9.0,
                ..Default::default()
            },
        );
        r.cpu.insert(
            1,
            CpuTimes {
                user: 5.0,
                idle: 5.0,
                ..Default::default()
            },
        );
        r.energy.push(EnergyCounter {
            rail: "package-0".into(),
            joules: 100.0,
            wraps_at: Some(262_143.0),
        });
        let first = d.families(&r, t0);
        assert!(
            family(&first, "m4watch_cpu_utilization_ratio")
                .samples
                .is_empty()
        );
        assert!(family(&first, "m4watch_power_watts").samples.is_empty());
        assert_eq!(
            family(&first, "m4watch_cpu_seconds_total").samples.len(),
            16
        );

        r.cpu.insert(
            0,
            CpuTimes {
                user: 2.0,
                idle: 10.0,
                ..Default::default()
            },
        ); // 50% busy
        r.cpu.insert(
            1,
            CpuTimes {
                user: 5.5,
                idle: 6.5,
                ..Default::default()
            },
        ); // 25% busy
        r.energy[0].joules = 130.0;
        let second = d.families(&r, t0 + Duration::from_secs(2));
        let util = family(&second, "m4watch_cpu_utilization_ratio");
        assert_eq!(
            util.samples[0].labels,
            vec![
                ("cpu".to_string(), "0".to_string()),
                ("type".to_string(), "efficiency".to_string())
            ]
        );
        assert_eq!(util.samples[0].value, 0.5);
        assert_eq!(util.samples[1].value, 0.25);
        let watts = family(&second, "m4watch_power_watts");
        assert_eq!(watts.samples[0].value, 15.0);

        // The hardware counter wraps: the delta continues across the wrap.
        r.energy[0].joules = 10.0;
        let third = d.families(&r, t0 + Duration::from_secs(4));
        let joules = family(&third, "m4watch_energy_joules_total");
        assert_eq!(joules.samples[0].value, 30.0 + (262_143.0 - 130.0) + 10.0);
    }

    #[test]
    fn apple_readings_give_their_families() {
        let mut i = inputs(2);
        i.capacity = [(0, 512), (1, 1024)].into();
        let mut d = Deriver::new(detect_topology(&i, None));
        d.set_ane_max_watts(4.0);
        let t0 = Instant::now();
        let mut r = Reading {
            power_watts: [
                ("ane".to_string(), 3.0),
                ("cpu".to_string(), 20.0),
                ("system".to_string(), 40.0),
            ]
            .into(),
            cpu_frequency_hz: [(1, 4.0e9)].into(),
            cluster_frequency_hz: [("E".to_string(), 1.0e9)].into(),
            memory_pressure_level: Some(MemoryPressureLevel::Warn),
            chip: Some(ChipInfo {
                chip: "Apple M4 Max".into(),
                gpu_cores: None,
            }),
            ..Default::default()
        };
        r.energy.push(EnergyCounter {
            rail: "cpu".into(),
            joules: 100.0,
            wraps_at: None,
        });
        d.families(&r, t0);
        r.energy[0].joules = 110.0;
        // Ten seconds of wall clock, but the platform measured 20 W over its own window:
        // the measured watts win over the energy delta (1 W).
        let f = d.families(&r, t0 + Duration::from_secs(10));
        let watts = family(&f, "m4watch_power_watts");
        // The system rail contains the others: it has a family of its own.
        assert_eq!(watts.samples.len(), 2, "{watts:?}");
        assert_eq!(
            family(&f, "m4watch_system_power_watts").samples[0].value,
            40.0
        );
        assert!(
            watts
                .samples
                .iter()
                .any(|s| s.labels[0].1 == "cpu" && s.value == 20.0)
        );
        assert_eq!(
            family(&f, "m4watch_energy_joules_total").samples[0].value,
            10.0
        );
        assert_eq!(
            family(&f, "m4watch_ane_utilization_estimate_ratio").samples[0].value,
            0.75
        );
        let freq = family(&f, "m4watch_cpu_frequency_hertz");
        assert_eq!(
            freq.samples[0].labels,
            vec![
                ("cpu".to_string(), "1".to_string()),
                ("type".to_string(), "performance".to_string())
            ]
        );
        assert_eq!(freq.samples.len(), 1, "per CPU only: {freq:?}");
        let cluster = family(&f, "m4watch_cpu_cluster_frequency_hertz");
        assert_eq!(
            cluster.samples[0].labels,
            vec![
                ("cluster".to_string(), "E".to_string()),
                ("type".to_string(), "efficiency".to_string())
            ]
        );
        let level = family(&f, "m4watch_memory_pressure_level");
        assert_eq!(
            level.samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            vec![0.0, 1.0, 0.0]
        );
        let chip = &family(&f, "m4watch_chip_info").samples[0];
        assert_eq!(chip.labels[1], ("performance_cores".into(), "1".into()));
        assert!(
            family(&f, "m4watch_gpu_utilization_ratio")
                .samples
                .is_empty()
        );
    }

    #[test]
    fn unknown_readings_give_no_series() {
        let mut d = Deriver::new(Topology::default());
        let fams = d.families(&Reading::default(), Instant::now());
        let total: usize = fams.iter().map(|f| f.samples.len()).sum();
        assert_eq!(total, 0, "{fams:?}");
    }
}
