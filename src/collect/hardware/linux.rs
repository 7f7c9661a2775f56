//! Linux hardware source: procfs and sysfs.
//!
//! Reading is kept apart from parsing: `read_*` functions touch the filesystem under
//! configurable roots (so tests point them at fixture trees), `parse_*` functions are
//! pure and tested on literal text.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{
    CpuTimes, EnergyCounter, Memory, MemoryPressure, Reading, Sensor, TopologyInputs, TripKind,
};
use crate::config::parse_cpu_list;

/// Reads the hardware of a Linux machine (or a fixture tree shaped like one).
pub(crate) struct LinuxSource {
    procfs: PathBuf,
    sysfs: PathBuf,
    clk_tck: f64,
}

impl LinuxSource {
    pub(crate) fn new(procfs: impl Into<PathBuf>, sysfs: impl Into<PathBuf>) -> Self {
        LinuxSource {
            procfs: procfs.into(),
            sysfs: sysfs.into(),
            clk_tck: clock_ticks(),
        }
    }

    /// One reading. Only `/proc/stat` is required; anything else that cannot be read
    /// is left out of the reading (and so absent from /metrics).
    pub(crate) fn read(&self) -> io::Result<Reading> {
        let stat = fs::read_to_string(self.procfs.join("stat"))?;
        let cpu = parse_proc_stat(&stat, self.clk_tck);
        if cpu.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no cpuN lines in /proc/stat",
            ));
        }
        let memory = read_opt(&self.procfs.join("meminfo")).map(|t| parse_meminfo(&t));
        let memory_pressure =
            read_opt(&self.procfs.join("pressure/memory")).and_then(|t| parse_psi(&t));
        let mut sensors = read_thermal_zones(&self.sysfs);
        sensors.extend(read_hwmon(&self.sysfs));
        dedupe_names(&mut sensors);
        Ok(Reading {
            cpu,
            memory,
            memory_pressure,
            sensors,
            thermal_pressure: None,
            energy: read_rapl(&self.sysfs),
            ..Default::default()
        })
    }

    /// What sysfs says about core types and clusters.
    pub(crate) fn topology_inputs(&self) -> TopologyInputs {
        let cpus_dir = self.sysfs.join("devices/system/cpu");
        let cpus = read_opt(&cpus_dir.join("online"))
            .and_then(|t| parse_cpu_list(&t).ok())
            .or_else(|| {
                // Without an `online` file, fall back to the CPUs /proc/stat lists.
                let stat = read_opt(&self.procfs.join("stat"))?;
                Some(parse_proc_stat(&stat, 100.0).into_keys().collect())
            })
            .unwrap_or_default();
        let list = |p: &str| read_opt(&self.sysfs.join(p)).and_then(|t| parse_cpu_list(&t).ok());
        let mut inputs = TopologyInputs {
            intel_core: list("devices/cpu_core/cpus"),
            intel_atom: list("devices/cpu_atom/cpus"),
            ..Default::default()
        };
        for &cpu in &cpus {
            let dir = cpus_dir.join(format!("cpu{cpu}"));
            if let Some(v) = read_u64(&dir.join("cpu_capacity")) {
                inputs.capacity.insert(cpu, v);
            }
            if let Some(v) = read_u64(&dir.join("cpufreq/cpuinfo_max_freq")) {
                inputs.max_freq_khz.insert(cpu, v);
            }
            // 65535 (and -1 on old kernels) means the platform has no cluster id.
            if let Some(id) = read_opt(&dir.join("topology/cluster_id"))
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty() && t != "65535" && t != "-1")
            {
                inputs.cluster.insert(cpu, id);
            }
        }
        inputs.cpus = cpus;
        inputs
    }
}

fn read_opt(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    read_opt(path)?.trim().parse().ok()
}

fn read_i64(path: &Path) -> Option<i64> {
    read_opt(path)?.trim().parse().ok()
}

/// Scheduler clock ticks per second (`USER_HZ`) that /proc/stat counts in.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Per-CPU times from /proc/stat (`cpuN` lines; the aggregate `cpu` line is skipped).
/// Guest time is already part of user time there, so it is not counted again.
pub(crate) fn parse_proc_stat(text: &str, clk_tck: f64) -> BTreeMap<u32, CpuTimes> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(head) = fields.next() else { continue };
        let Some(n) = head.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let v: Vec<f64> = fields
            .take(8)
            .map(|f| f.parse::<f64>().unwrap_or(0.0) / clk_tck)
            .collect();
        if v.len() < 4 {
            continue;
        }
        let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
        out.insert(
            n,
            CpuTimes {
                user: at(0),
                nice: at(1),
                system: at(2),
                idle: at(3),
                iowait: at(4),
                irq: at(5),
                softirq: at(6),
                steal: at(7),
            },
        );
    }
    out
}

/// Memory from /proc/meminfo. `used` is total minus available, the figure that
/// matches what applications can still get; `cached` is buffers + page cache +
/// reclaimable slab, as `free` reports buff/cache; `other` is the rest of the
/// partition (total − free − cached).
pub(crate) fn parse_meminfo(text: &str) -> Memory {
    let mut kv: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines() {
        let Some((k, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(n)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => n * 1024,
            _ => n,
        };
        kv.insert(k.trim(), bytes);
    }
    let get = |k: &str| kv.get(k).copied();
    let total = get("MemTotal");
    let available = get("MemAvailable");
    let cached = match (get("Buffers"), get("Cached")) {
        (Some(b), Some(c)) => Some(b + c + get("SReclaimable").unwrap_or(0)),
        _ => None,
    };
    let swap_total = get("SwapTotal");
    let free = get("MemFree");
    let other = match (total, free, cached) {
        (Some(t), Some(f), Some(c)) => Some(t.saturating_sub(f).saturating_sub(c)),
        _ => None,
    };
    Memory {
        total,
        used: total.zip(available).map(|(t, a)| t.saturating_sub(a)),
        available,
        free,
        cached,
        other,
        swap_used: swap_total
            .zip(get("SwapFree"))
            .map(|(t, f)| t.saturating_sub(f)),
        swap_total,
        ..Default::default()
    }
}

/// The `some` line of a PSI file (`/proc/pressure/memory`), as ratios 0..1.
pub(crate) fn parse_psi(text: &str) -> Option<MemoryPressure> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let field = |name: &str| {
        line.split_ascii_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|pct| pct / 100.0)
    };
    Some(MemoryPressure {
        avg10: field("avg10")?,
        avg60: field("avg60")?,
    })
}

/// Maps a thermal-zone trip point type.
pub(crate) fn parse_trip_kind(s: &str) -> Option<TripKind> {
    match s.trim() {
        "active" => Some(TripKind::Active),
        "passive" => Some(TripKind::Passive),
        "hot" => Some(TripKind::Hot),
        "critical" => Some(TripKind::Critical),
        _ => None,
    }
}

fn sorted_entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(u64, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(prefix)?.parse::<u64>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Thermal zones (`/sys/class/thermal/thermal_zoneN`), millidegrees to °C, with trips.
pub(crate) fn read_thermal_zones(sysfs: &Path) -> Vec<Sensor> {
    let mut out = Vec::new();
    for zone in sorted_entries(&sysfs.join("class/thermal"), "thermal_zone") {
        let Some(milli) = read_i64(&zone.join("temp")) else {
            continue;
        };
        let name = read_opt(&zone.join("type"))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| zone.file_name().unwrap().to_string_lossy().into_owned());
        let mut trips = Vec::new();
        for k in 0.. {
            let Some(kind) = read_opt(&zone.join(format!("trip_point_{k}_type"))) else {
                break;
            };
            if let (Some(kind), Some(t)) = (
                parse_trip_kind(&kind),
                read_i64(&zone.join(format!("trip_point_{k}_temp"))),
            ) {
                trips.push((kind, t as f64 / 1000.0));
            }
        }
        out.push(Sensor {
            name,
            celsius: milli as f64 / 1000.0,
            trips,
        });
    }
    out
}

/// hwmon temperatures (`/sys/class/hwmon/hwmonN/tempK_input`), named
/// `<chip>/<label>`; `tempK_max` and `tempK_crit` act as hot and critical trips.
pub(crate) fn read_hwmon(sysfs: &Path) -> Vec<Sensor> {
    let mut out = Vec::new();
    for dir in sorted_entries(&sysfs.join("class/hwmon"), "hwmon") {
        let chip = read_opt(&dir.join("name"))
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|| dir.file_name().unwrap().to_string_lossy().into_owned());
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let mut inputs: Vec<(u64, String)> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let k = name
                    .strip_prefix("temp")?
                    .strip_suffix("_input")?
                    .parse()
                    .ok()?;
                Some((k, format!("temp{k}")))
            })
            .collect();
        inputs.sort();
        for (_, base) in inputs {
            let Some(milli) = read_i64(&dir.join(format!("{base}_input"))) else {
                continue;
            };
            let label = read_opt(&dir.join(format!("{base}_label")))
                .map(|t| t.trim().to_string())
                .unwrap_or_else(|| base.clone());
            let mut trips = Vec::new();
            if let Some(t) = read_i64(&dir.join(format!("{base}_max"))) {
                trips.push((TripKind::Hot, t as f64 / 1000.0));
            }
            if let Some(t) = read_i64(&dir.join(format!("{base}_crit"))) {
                trips.push((TripKind::Critical, t as f64 / 1000.0));
            }
            out.push(Sensor {
                name: format!("{chip}/{label}"),
                celsius: milli as f64 / 1000.0,
                trips,
            });
        }
    }
    out
}

/// Makes sensor names unique (two zones may share a type) by suffixing `_2`, `_3`...
fn dedupe_names(sensors: &mut [Sensor]) {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for s in sensors {
        let n = seen.entry(s.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            s.name = format!("{}_{}", s.name, n);
        }
    }
}

/// RAPL energy counters (`/sys/class/powercap/intel-rapl:N[:M]`), µJ to J. Subzones
/// are named after their parent: `package-0/core`.
pub(crate) fn read_rapl(sysfs: &Path) -> Vec<EnergyCounter> {
    let base = sysfs.join("class/powercap");
    let Ok(rd) = fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut zones: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("intel-rapl:"))
        .collect();
    zones.sort();
    let name_of =
        |zone: &str| read_opt(&base.join(zone).join("name")).map(|n| n.trim().to_string());
    let mut out = Vec::new();
    for zone in &zones {
        let dir = base.join(zone);
        let Some(uj) = read_u64(&dir.join("energy_uj")) else {
            continue;
        };
        let Some(name) = name_of(zone) else { continue };
        let id = &zone["intel-rapl:".len()..];
        let rail = match id.split_once(':') {
            Some((parent, _)) => match name_of(&format!("intel-rapl:{parent}")) {
                Some(p) => format!("{p}/{name}"),
                None => name,
            },
            None => name,
        };
        out.push(EnergyCounter {
            rail,
            joules: uj as f64 / 1e6,
            wraps_at: read_u64(&dir.join("max_energy_range_uj")).map(|m| m as f64 / 1e6),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::hardware::{CoreType, ThermalPressure, detect_topology};

    fn fixture(name: &str) -> LinuxSource {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/linux")
            .join(name);
        let mut s = LinuxSource::new(root.join("proc"), root.join("sys"));
        s.clk_tck = 100.0;
        s
    }

    #[test]
    fn proc_stat_lines() {
        let text = "cpu  16594 0 3315 51253 317 0 54 26 0 0\n\
                    cpu0 8016 5 1489 26142 106 1 5 12 7 0\n\
                    cpu1 8577 0 1825 25111 210 0 49 13\n\
                    intr 123 4\nctxt 99\n";
        let m = parse_proc_stat(text, 100.0);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&0].user, 80.16);
        assert_eq!(m[&0].nice, 0.05);
        assert_eq!(m[&0].steal, 0.12);
        assert_eq!(m[&1].softirq, 0.49);
    }

    #[test]
    fn meminfo_fields() {
        let text = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    9000000 kB\n\
                    Buffers:          100000 kB\nCached:          5000000 kB\nSReclaimable:     400000 kB\n\
                    SwapTotal:       2000000 kB\nSwapFree:        1500000 kB\n";
        let m = parse_meminfo(text);
        assert_eq!(m.total, Some(16_000_000 * 1024));
        assert_eq!(m.used, Some(7_000_000 * 1024));
        assert_eq!(m.cached, Some(5_500_000 * 1024));
        assert_eq!(m.swap_used, Some(500_000 * 1024));
        // The partition: other, cached, free, which add up to the total.
        assert_eq!(
            m.partition(),
            [
                ("other", 9_500_000 * 1024),
                ("cached", 5_500_000 * 1024),
                ("free", 1_000_000 * 1024)
            ]
        );
        let partial = parse_meminfo("MemTotal: 1000 kB\n");
        assert_eq!((partial.used, partial.available), (None, None));
        assert!(partial.partition().is_empty());
    }

    #[test]
    fn psi_some_line() {
        let p = parse_psi("some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=10\n").unwrap();
        assert_eq!((p.avg10, p.avg60), (0.015, 0.0025));
        assert_eq!(parse_psi("garbage"), None);
    }

    #[test]
    fn intel_hybrid_fixture() {
        let s = fixture("intel-hybrid");
        let t = detect_topology(&s.topology_inputs(), None);
        assert_eq!(t.method, "intel-hybrid");
        assert_eq!(t.count(CoreType::Performance), 4);
        assert_eq!(t.count(CoreType::Efficiency), 4);
        assert_eq!(t.core_type(5), CoreType::Efficiency);
        let r = s.read().unwrap();
        assert_eq!(r.cpu.len(), 8);
        let names: Vec<&str> = r.sensors.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "x86_pkg_temp",
                "acpitz",
                "coretemp/Package id 0",
                "coretemp/Core 0"
            ]
        );
        assert_eq!(r.sensors[0].celsius, 97.0);
        // 97 °C is over the zone's hot trip (95) and under its critical one (105).
        let worst = r
            .sensors
            .iter()
            .filter_map(crate::collect::hardware::sensor_pressure)
            .max();
        assert_eq!(worst, Some(ThermalPressure::Serious));
        let rails: Vec<&str> = r.energy.iter().map(|e| e.rail.as_str()).collect();
        assert_eq!(rails, ["package-0", "package-0/core", "psys"]);
        assert_eq!(r.energy[0].joules, 12345.678901);
        assert_eq!(r.energy[0].wraps_at, Some(262143.328850));
        assert_eq!(r.memory_pressure.unwrap().avg10, 0.021);
    }

    #[test]
    fn arm_big_little_fixture() {
        let s = fixture("arm-biglittle");
        let t = detect_topology(&s.topology_inputs(), None);
        assert_eq!(t.method, "cpu-capacity");
        let types: Vec<CoreType> = t.cpus.values().map(|d| d.core_type).collect();
        assert_eq!(
            types,
            [CoreType::Efficiency; 4]
                .into_iter()
                .chain([CoreType::Performance; 4])
                .collect::<Vec<_>>()
        );
        assert_eq!(t.cpus[&0].cluster, "0");
        assert_eq!(t.cpus[&7].cluster, "1");
        let r = s.read().unwrap();
        assert_eq!(r.sensors.len(), 2);
        assert!(r.energy.is_empty());
        assert!(r.memory_pressure.is_none(), "no PSI file in this fixture");
    }

    #[test]
    fn plain_fixture_has_no_sensors_and_is_uniform() {
        let s = fixture("plain");
        let t = detect_topology(&s.topology_inputs(), None);
        assert_eq!(t.method, "uniform");
        assert_eq!(t.count(CoreType::Performance), 2);
        let r = s.read().unwrap();
        assert!(r.sensors.is_empty());
        assert!(r.energy.is_empty());
        assert_eq!(r.memory.unwrap().total, Some(2_048_000 * 1024));
    }

    #[test]
    fn missing_proc_stat_is_an_error() {
        let s = LinuxSource::new("/nonexistent/proc", "/nonexistent/sys");
        assert!(s.read().is_err());
    }
}
