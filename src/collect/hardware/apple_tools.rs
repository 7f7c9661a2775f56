//! The text macOS's own tools print (`vm_stat`, `sysctl hw`, `ioreg`, `powermetrics`),
//! parsed into the plain data m4watch computes with: so a capture of a real Mac (pasted
//! in an issue, or written by `m4watch selfcheck`) feeds the same arithmetic as the live
//! source, and m4watch's figures can be set beside the tool's. Platform-free; nothing
//! here runs a tool.

use std::collections::BTreeMap;

#[cfg(test)]
use super::apple::CpuNode;
use super::apple::{MachineInfo, PerfLevel, VmCounters};

/// Why a tool's output cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ToolOutputError {
    #[error("{tool}: no {what} in the output")]
    Missing {
        tool: &'static str,
        what: &'static str,
    },
    #[error("{tool}: {key}: {value:?} is not a number")]
    NotANumber {
        tool: &'static str,
        key: String,
        value: String,
    },
}

fn number(tool: &'static str, key: &str, v: &str) -> Result<u64, ToolOutputError> {
    let t = v.trim().trim_end_matches('.');
    t.parse().map_err(|_| ToolOutputError::NotANumber {
        tool,
        key: key.to_string(),
        value: v.trim().to_string(),
    })
}

/// `vm_stat`: the page size and the counters m4watch reads through `host_statistics64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VmStat {
    pub page_size: u64,
    pub counters: VmCounters,
    /// `Pages throttled` (accounted for by the kernel beside the other queues).
    pub throttled: u64,
}

/// Parses `vm_stat` output: `Mach Virtual Memory Statistics: (page size of N bytes)`
/// then `Label:   value.` lines. Every counter m4watch uses must be present.
pub(crate) fn parse_vm_stat(text: &str) -> Result<VmStat, ToolOutputError> {
    const TOOL: &str = "vm_stat";
    let page_size = text
        .lines()
        .find_map(|l| {
            let rest = l.split_once("page size of ")?.1;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or(ToolOutputError::Missing {
            tool: TOOL,
            what: "page size",
        })?;
    let mut values: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        if k.starts_with("Mach Virtual Memory") {
            continue;
        }
        if let Ok(n) = number(TOOL, k, v) {
            values.insert(k.to_string(), n);
        }
    }
    let get = |what: &'static str| {
        values
            .get(what)
            .copied()
            .ok_or(ToolOutputError::Missing { tool: TOOL, what })
    };
    Ok(VmStat {
        page_size,
        counters: VmCounters {
            free: get("Pages free")?,
            active: get("Pages active")?,
            inactive: get("Pages inactive")?,
            speculative: get("Pages speculative")?,
            wired: get("Pages wired down")?,
            compressor: get("Pages occupied by compressor")?,
            internal: get("Anonymous pages")?,
            external: get("File-backed pages")?,
            purgeable: get("Pages purgeable")?,
        },
        throttled: get("Pages throttled").unwrap_or(0),
    })
}

/// `sysctl` output (`name: value` lines) as a map.
pub(crate) fn parse_sysctl(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            let k = k.trim();
            (k.contains('.') && !k.contains(' ')).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The machine `sysctl hw` describes: `hw.perflevelN.logicalcpu` and `.name` (highest
/// level first, as the kernel numbers them) and `hw.memsize`.
pub(crate) fn machine_from_sysctl(
    map: &BTreeMap<String, String>,
) -> Result<MachineInfo, ToolOutputError> {
    const TOOL: &str = "sysctl";
    let mut perflevels = Vec::new();
    for n in 0.. {
        let key = format!("hw.perflevel{n}.logicalcpu");
        let Some(v) = map.get(&key) else {
            break;
        };
        perflevels.push(PerfLevel {
            name: map.get(&format!("hw.perflevel{n}.name")).cloned(),
            logical_cpus: number(TOOL, &key, v)? as u32,
        });
    }
    if perflevels.is_empty() {
        return Err(ToolOutputError::Missing {
            tool: TOOL,
            what: "hw.perflevel0.logicalcpu",
        });
    }
    let memory_bytes = map
        .get("hw.memsize")
        .map(|v| number(TOOL, "hw.memsize", v))
        .transpose()?;
    Ok(MachineInfo {
        chip: map.get("machdep.cpu.brand_string").cloned(),
        perflevels,
        memory_bytes,
        ..Default::default()
    })
}

/// An IORegistry property printed as `"key" = <hex bytes>`, as a little-endian u32
/// (`ioreg -rn cpus`' `p-core-count` and `e-core-count`).
pub(crate) fn ioreg_u32(text: &str, key: &str) -> Option<u32> {
    let needle = format!("\"{key}\" = <");
    let line = text.lines().find(|l| l.contains(&needle))?;
    let hex = line.split_once(&needle)?.1.split('>').next()?;
    if hex.len() < 8 {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok();
    Some(u32::from_le_bytes([byte(0)?, byte(1)?, byte(2)?, byte(3)?]))
}

/// One CPU in `powermetrics`' processor section.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PmCpu {
    pub cpu: u32,
    pub mhz: f64,
    /// Active residency, 0..1.
    pub active: f64,
}

/// One cluster in `powermetrics`' processor section (`E-Cluster`, `P0-Cluster`, …).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PmCluster {
    pub name: String,
    pub hw_active_mhz: Option<f64>,
    pub cpus: Vec<PmCpu>,
}

fn after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    Some(line.split_once(key)?.1.trim())
}

fn leading_number(s: &str) -> Option<f64> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s[..end].parse().ok()
}

/// The clusters of `powermetrics --samplers cpu_power` and their CPUs, in the order
/// printed: each `CPU N` belongs to the cluster header above it.
pub(crate) fn parse_powermetrics_clusters(text: &str) -> Vec<PmCluster> {
    let mut out: Vec<PmCluster> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some((name, rest)) = line.split_once("-Cluster ") {
            if !name.contains(' ') && out.last().is_none_or(|c| c.name != name) {
                out.push(PmCluster {
                    name: name.to_string(),
                    hw_active_mhz: None,
                    cpus: Vec::new(),
                });
            }
            if let (Some(c), Some(v)) = (out.last_mut(), after(rest, "HW active frequency:")) {
                c.hw_active_mhz = leading_number(v);
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("CPU ") else {
            continue;
        };
        let Some((n, rest)) = rest.split_once(' ') else {
            continue;
        };
        let (Ok(cpu), Some(cluster)) = (n.parse::<u32>(), out.last_mut()) else {
            continue;
        };
        if cluster.cpus.last().is_none_or(|c| c.cpu != cpu) {
            cluster.cpus.push(PmCpu {
                cpu,
                mhz: 0.0,
                active: 0.0,
            });
        }
        let Some(c) = cluster.cpus.last_mut() else {
            continue;
        };
        if let Some(v) = after(rest, "frequency:") {
            c.mhz = leading_number(v).unwrap_or(0.0);
        } else if let Some(v) = after(rest, "active residency:") {
            c.active = leading_number(v).unwrap_or(0.0) / 100.0;
        }
    }
    out
}

/// The IORegistry-style `cpuN` nodes the clusters describe: the cluster's letter (`E`,
/// `P`, `M`) as its type, its position in the listing as its `logical-cluster-id`.
#[cfg(test)]
pub(crate) fn cpu_nodes_of(clusters: &[PmCluster]) -> Vec<CpuNode> {
    let mut out = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        let letter: String = c
            .name
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        for cpu in &c.cpus {
            out.push(CpuNode {
                cpu: cpu.cpu,
                cluster_type: letter.clone(),
                cluster_id: Some(i as u32),
            });
        }
    }
    out
}

/// `Machine model: Mac16,6` of a powermetrics header.
#[cfg(test)]
pub(crate) fn powermetrics_model(text: &str) -> Option<&str> {
    text.lines().find_map(|l| after(l, "Machine model:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::hardware::CoreType;
    use crate::collect::hardware::apple::{build_topology, memory_breakdown};

    const VM_STAT: &str = include_str!("../../../testdata/apple/vm_stat-applesilicon-hmcl4876.txt");
    const SYSCTL: &str = include_str!("../../../testdata/apple/sysctl-hw-m4pro-archspec201.txt");
    const POWERMETRICS: &str =
        include_str!("../../../testdata/apple/powermetrics-m4max-mac16-6-powermetricsgo.txt");
    const IOREG_A18: &str =
        include_str!("../../../testdata/apple/ioreg-pmgr-voltage-states-a18pro-stats3625.txt");
    const IOREG_M5MAX: &str =
        include_str!("../../../testdata/apple/ioreg-cpu-cluster-types-m5max-siliconscope30.txt");

    /// Issue 26: on the real `vm_stat` (HMCL#4876) used + available was 2.17 GB more than
    /// the 24.88 GB of pages the Mac accounts for (inactive anonymous pages counted as
    /// both). Activity Monitor's definitions add up.
    #[test]
    fn memory_adds_up_on_a_real_vm_stat() {
        let v = parse_vm_stat(VM_STAT).unwrap();
        assert_eq!(v.page_size, 16384);
        let c = v.counters;
        assert_eq!(
            (c.free, c.active, c.inactive, c.speculative, c.wired),
            (3857, 446_206, 443_760, 1075, 181_483)
        );
        assert_eq!(
            (c.compressor, c.internal, c.external, c.purgeable),
            (442_179, 596_147, 294_894, 17_340)
        );
        assert_eq!(v.throttled, 0);
        let accounted_pages: u64 = 3857 + 446_206 + 443_760 + 1075 + 181_483 + 442_179;
        let accounted = accounted_pages * 16384;
        assert_eq!(
            accounted, 24_880_087_040,
            "the 24.88 GB the Mac accounts for"
        );
        let m = memory_breakdown(&c, v.page_size, None, None);
        // App Memory (596147 − 17340) + Wired 181483 + Compressed 442179 pages.
        assert_eq!(m.used, Some(1_202_469 * 16384));
        // Free 3857 + Cached Files (file-backed 294894 + purgeable 17340) pages.
        assert_eq!(m.available, Some(316_091 * 16384));
        assert_eq!(m.cached, Some(312_234 * 16384));
        // Here the capture's own figures are consistent (anonymous + file-backed pages =
        // active + inactive + speculative), so used + available is exactly what it
        // accounts for; never more.
        assert_eq!(m.used.unwrap() + m.available.unwrap(), accounted);
        // Issue 30: the partition family's states do not overlap and cover every page
        // the Mac accounts for, so `sum(m4watch_memory_partition_bytes)` is that whole.
        let states: Vec<&str> = m.partition().iter().map(|(s, _)| *s).collect();
        assert_eq!(states, ["app", "wired", "compressed", "cached", "free"]);
        let parts: u64 = m.partition().iter().map(|(_, v)| v).sum();
        assert_eq!(parts, accounted);
        let old_available = (c.free + c.inactive + c.speculative) * 16384;
        assert!(
            m.used.unwrap() + old_available > accounted,
            "the old figure"
        );
    }

    #[test]
    fn vm_stat_without_a_counter_is_refused() {
        let cut = VM_STAT.replace("Anonymous pages:", "Anon:");
        assert_eq!(
            parse_vm_stat(&cut).unwrap_err().to_string(),
            "vm_stat: no Anonymous pages in the output"
        );
    }

    /// The real M4 Pro `sysctl hw` (archspec#201): perflevel 0 is 8 Performance, 1 is 4
    /// Efficiency, 24 GiB; m4watch's topology from it puts the efficiency CPUs first.
    #[test]
    fn a_real_m4_pro_sysctl_builds_its_topology() {
        let map = parse_sysctl(SYSCTL);
        assert_eq!(map["hw.ncpu"], "12");
        let m = machine_from_sysctl(&map).unwrap();
        assert_eq!(m.memory_bytes, Some(25_769_803_776));
        assert_eq!(m.perflevels.len(), 2);
        assert_eq!(m.perflevels[0].name.as_deref(), Some("Performance"));
        assert_eq!(m.perflevels[0].logical_cpus, 8);
        assert_eq!(m.perflevels[1].name.as_deref(), Some("Efficiency"));
        let t = build_topology(&m, 12).unwrap();
        assert_eq!(t.count(CoreType::Performance), 8);
        assert_eq!(t.count(CoreType::Efficiency), 4);
        assert_eq!(t.core_type(0), CoreType::Efficiency);
        assert_eq!(t.core_type(4), CoreType::Performance);
    }

    /// The real 14-core M4 Max (Mac16,6, powermetrics-go): 4 E + 5 P + 5 P. powermetrics
    /// numbers CPU 0-3 under the E cluster, 4-8 under P0, 9-13 under P1; m4watch's
    /// topology of the part (perflevels 10 P + 4 E, and its clusters) agrees.
    #[test]
    fn the_14_core_m4_max_has_clusters_of_4_5_and_5() {
        assert_eq!(powermetrics_model(POWERMETRICS), Some("Mac16,6"));
        let cl = parse_powermetrics_clusters(POWERMETRICS);
        let names: Vec<&str> = cl.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["E", "P0", "P1"]);
        let cpus = |i: usize| cl[i].cpus.iter().map(|c| c.cpu).collect::<Vec<_>>();
        assert_eq!(cpus(0), [0, 1, 2, 3]);
        assert_eq!(cpus(1), [4, 5, 6, 7, 8]);
        assert_eq!(cpus(2), [9, 10, 11, 12, 13]);
        assert_eq!(cl[0].hw_active_mhz, Some(1293.0));
        assert_eq!(
            cl[0].cpus[0],
            PmCpu {
                cpu: 0,
                mhz: 1338.0,
                active: 0.5511
            }
        );
        assert_eq!(cl[1].cpus[3].mhz, 0.0, "CPU 7 printed 0 MHz");
        let machine = MachineInfo {
            chip: Some("Apple M4 Max".into()),
            perflevels: vec![
                PerfLevel {
                    name: Some("Performance".into()),
                    logical_cpus: 10,
                },
                PerfLevel {
                    name: Some("Efficiency".into()),
                    logical_cpus: 4,
                },
            ],
            ..Default::default()
        };
        // Without the device tree: efficiency first, as powermetrics numbers them.
        let prefix = build_topology(&machine, 14).unwrap();
        for c in &cl[0].cpus {
            assert_eq!(
                prefix.core_type(c.cpu),
                CoreType::Efficiency,
                "cpu {}",
                c.cpu
            );
        }
        for c in cl[1].cpus.iter().chain(&cl[2].cpus) {
            assert_eq!(
                prefix.core_type(c.cpu),
                CoreType::Performance,
                "cpu {}",
                c.cpu
            );
        }
        // With the clusters: E0, P0 and P1 of 4, 5 and 5 CPUs.
        let t = build_topology(
            &MachineInfo {
                cpu_nodes: cpu_nodes_of(&cl),
                ..machine
            },
            14,
        )
        .unwrap();
        let in_cluster = |n: &str| t.cpus.values().filter(|d| d.cluster == n).count();
        assert_eq!(
            (in_cluster("E0"), in_cluster("P0"), in_cluster("P1")),
            (4, 5, 5)
        );
    }

    /// The real A18 Pro `ioreg -rn cpus` (stats#3625): 2 P and 4 E cores.
    #[test]
    fn a_real_ioreg_core_count_is_little_endian() {
        assert_eq!(ioreg_u32(IOREG_A18, "p-core-count"), Some(2));
        assert_eq!(ioreg_u32(IOREG_A18, "e-core-count"), Some(4));
        assert_eq!(ioreg_u32(IOREG_A18, "x-core-count"), None);
    }

    /// The real M5 Max cluster types (SiliconScope#30, the reporter's table of the
    /// IORegistry cpuN `cluster-type`): cpu0-11 type M, cpu12-17 type P. m4watch puts the
    /// Super tier on the *last* six CPUs and has no efficiency cores.
    #[test]
    fn a_real_m5_max_cluster_type_table_gives_super_on_the_last_six() {
        let mut nodes = Vec::new();
        for line in IOREG_M5MAX.lines().filter(|l| l.starts_with("cpu")) {
            // `cpu0–5    cluster 0  type M   (…)`
            let w: Vec<&str> = line.split_whitespace().collect();
            let (lo, hi) = w[0].trim_start_matches("cpu").split_once('–').unwrap();
            for cpu in lo.parse::<u32>().unwrap()..=hi.parse().unwrap() {
                nodes.push(CpuNode {
                    cpu,
                    cluster_type: w[4].to_string(),
                    cluster_id: w[2].parse().ok(),
                });
            }
        }
        assert_eq!(nodes.len(), 18);
        let machine = MachineInfo {
            chip: Some("Apple M5 Max".into()),
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
        let t = build_topology(&machine, 18).unwrap();
        assert_eq!(t.count(CoreType::Efficiency), 0);
        let tiers = t.tier_cpus();
        assert_eq!(tiers[1].label, "S");
        assert_eq!(tiers[1].cpus, (12..18).collect::<Vec<_>>());
        assert_eq!(t.cpus[&0].cluster, "P0");
        assert_eq!(t.cpus[&6].cluster, "P1");
        assert_eq!(t.cpus[&12].cluster, "S0");
    }
}
