//! One macmon window as plain data, in every shape macmon has written it, and the one
//! conversion into a [`RawSample`] that both the live macOS source and the replay use.
//!
//! The shapes, read from macmon's source (`Metrics`, `SocInfo`, the `pipe` command):
//! - 0.10: `cpu_tiers` (`label`, `freq_mhz`, `active_ratio`, `cores`), lowest tier first;
//!   `soc.cpu_tiers` (`label`, `cores`, `freqs`); temperatures may be `null`.
//! - 0.8 / 0.9: `ecpu_cores` / `pcpu_cores` (each core: `die_id`, `core_id`, `freq_mhz`,
//!   `usage_ratio` or `scaled_ratio`, `active_ratio`) for the lowest and the highest
//!   tier, beside the cluster fields `ecpu_freq_mhz`, `ecpu_active_ratio`, …;
//!   `soc.ecpu_cores`, `ecpu_label`, `ecpu_freqs`, … (0.10 still writes these too, so
//!   `cpu_tiers` wins where both are present); temperatures are 0 when unknown.
//! - 0.7 aliases, still written by 0.8–0.10: `ecpu_usage: [mhz, ratio]`, where the ratio
//!   is frequency-scaled usage, not active residency, so it is not read as residency.
//!
//! Core frequencies are macmon's (0 MHz for a core with no active residency); what an
//! idle core, cluster or GPU reads is decided in [`super::apple::AppleState`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Memory;
use super::apple::{
    CoreSample, FanSample, MachineInfo, PerfLevel, RawSample, TierSample, level_name,
};

/// One `get_metrics` result or one `macmon pipe` line (fields missing in a version are
/// absent, never 0).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Window {
    pub timestamp: Option<String>,
    #[serde(default)]
    pub temp: Temps,
    pub memory: Option<Mem>,
    #[serde(default)]
    pub fans: Vec<Fan>,
    /// 0.10.
    #[serde(default)]
    pub cpu_tiers: Vec<Tier>,
    /// 0.8 / 0.9: the lowest tier's and the highest tier's cores.
    #[serde(default)]
    pub ecpu_cores: Vec<Core>,
    #[serde(default)]
    pub pcpu_cores: Vec<Core>,
    pub ecpu_freq_mhz: Option<f64>,
    pub ecpu_active_ratio: Option<f64>,
    pub pcpu_freq_mhz: Option<f64>,
    pub pcpu_active_ratio: Option<f64>,
    /// 0.7: `[MHz, frequency-scaled usage]`.
    pub ecpu_usage: Option<(f64, f64)>,
    pub pcpu_usage: Option<(f64, f64)>,
    pub gpu_usage: Option<(f64, f64)>,
    pub gpu_freq_mhz: Option<f64>,
    pub gpu_active_ratio: Option<f64>,
    pub cpu_power: Option<f64>,
    pub gpu_power: Option<f64>,
    pub ane_power: Option<f64>,
    pub ram_power: Option<f64>,
    pub sys_power: Option<f64>,
    /// `pipe --soc-info`.
    pub soc: Option<Soc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Temps {
    pub cpu_temp_avg: Option<f64>,
    pub gpu_temp_avg: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct Mem {
    pub ram_total: u64,
    pub ram_usage: u64,
    pub swap_total: u64,
    pub swap_usage: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Fan {
    pub name: String,
    pub rpm: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Tier {
    pub label: String,
    #[serde(default)]
    pub freq_mhz: f64,
    pub active_ratio: Option<f64>,
    #[serde(default)]
    pub cores: Vec<Core>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Core {
    pub freq_mhz: f64,
    pub active_ratio: f64,
}

/// macmon's `SocInfo`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Soc {
    pub chip_name: Option<String>,
    pub memory_gb: Option<u64>,
    pub gpu_cores: Option<u32>,
    /// 0.10, lowest first.
    #[serde(default)]
    pub cpu_tiers: Vec<SocTier>,
    /// 0.8 / 0.9 (and 0.10's deprecated copies).
    pub ecpu_cores: Option<u32>,
    pub pcpu_cores: Option<u32>,
    pub ecpu_label: Option<String>,
    pub pcpu_label: Option<String>,
    #[serde(default)]
    pub ecpu_freqs: Vec<f64>,
    #[serde(default)]
    pub pcpu_freqs: Vec<f64>,
    /// GPU DVFS table in MHz; the first entry is the OFF state (0) on real machines.
    #[serde(default)]
    pub gpu_freqs: Vec<f64>,
    /// A macOS VM: no power counters, frequency tables or residency.
    #[serde(default)]
    pub vm: bool,
}

/// One CPU tier of [`Soc`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct SocTier {
    pub label: String,
    pub cores: u32,
    #[serde(default)]
    pub freqs: Vec<f64>,
}

fn lowest_step(freqs: &[f64]) -> Option<f64> {
    freqs
        .iter()
        .copied()
        .filter(|f| f.is_finite() && *f > 0.0)
        .reduce(f64::min)
}

impl Soc {
    /// The CPU tiers, lowest first, in whichever shape the version wrote.
    pub(crate) fn tiers(&self) -> Vec<SocTier> {
        if !self.cpu_tiers.is_empty() {
            return self.cpu_tiers.clone();
        }
        [
            (self.ecpu_cores, &self.ecpu_label, &self.ecpu_freqs, "E"),
            (self.pcpu_cores, &self.pcpu_label, &self.pcpu_freqs, "P"),
        ]
        .into_iter()
        .filter_map(|(cores, label, freqs, default)| {
            Some(SocTier {
                label: label.clone().unwrap_or_else(|| default.to_string()),
                cores: cores.filter(|&c| c > 0)?,
                freqs: freqs.clone(),
            })
        })
        .collect()
    }

    /// The machine this SoC describes (perflevels highest first, as sysctl lists them).
    pub(crate) fn machine(&self) -> MachineInfo {
        MachineInfo {
            chip: self.chip_name.clone(),
            perflevels: self
                .tiers()
                .iter()
                .rev()
                .map(|t| PerfLevel {
                    name: level_name(&t.label).map(String::from),
                    logical_cpus: t.cores,
                })
                .collect(),
            gpu_cores: self.gpu_cores.filter(|&g| g > 0),
            memory_bytes: self.memory_gb.map(|g| g << 30),
            ioreport_counters: Some(!self.vm),
            ..Default::default()
        }
    }
}

fn cores(list: &[Core]) -> Vec<CoreSample> {
    list.iter()
        .map(|c| CoreSample {
            freq_mhz: c.freq_mhz,
            active_ratio: c.active_ratio,
        })
        .collect()
}

/// macmon's temperature: 0.8/0.9 write 0 for "no sensor"; macmon itself only trusts
/// readings in (0, 150] °C.
fn temperature(v: Option<f64>) -> Option<f64> {
    v.filter(|c| *c > 0.0 && *c <= 150.0)
}

impl Window {
    /// The window's CPU tiers, lowest first: 0.10's `cpu_tiers`, else 0.8/0.9's two
    /// per-core lists, else 0.7's cluster pairs (frequency only).
    fn tiers(&self, soc: Option<&Soc>) -> Vec<TierSample> {
        if !self.cpu_tiers.is_empty() {
            return self
                .cpu_tiers
                .iter()
                .map(|t| TierSample {
                    label: t.label.clone(),
                    freq_mhz: t.freq_mhz,
                    active_ratio: t.active_ratio,
                    min_mhz: None,
                    cores: cores(&t.cores),
                })
                .collect();
        }
        let soc_tiers = soc.map(Soc::tiers).unwrap_or_default();
        let label = |i: usize, default: &str| {
            soc_tiers
                .get(i)
                .filter(|_| soc_tiers.len() == 2)
                .map_or_else(|| default.to_string(), |t| t.label.clone())
        };
        let two = [
            (
                &self.ecpu_cores,
                self.ecpu_freq_mhz,
                self.ecpu_active_ratio,
                self.ecpu_usage,
                label(0, "E"),
            ),
            (
                &self.pcpu_cores,
                self.pcpu_freq_mhz,
                self.pcpu_active_ratio,
                self.pcpu_usage,
                label(1, "P"),
            ),
        ];
        two.into_iter()
            .filter_map(|(list, freq, active, pair, label)| {
                let freq = freq.or(pair.map(|p| p.0));
                (!list.is_empty() || freq.is_some()).then(|| TierSample {
                    label,
                    freq_mhz: freq.unwrap_or(0.0),
                    active_ratio: active,
                    min_mhz: None,
                    cores: cores(list),
                })
            })
            .collect()
    }

    /// The plain IOReport/SMC part of a [`RawSample`] over a window of `elapsed_s`; `soc`
    /// adds the DVFS tables (the lowest steps) and the tier labels of 0.8/0.9.
    pub(crate) fn raw_sample(&self, soc: Option<&Soc>, elapsed_s: f64) -> RawSample {
        let mut tiers = self.tiers(soc);
        if let Some(soc) = soc {
            let soc_tiers = soc.tiers();
            let by_position = soc_tiers.len() == tiers.len();
            for (i, t) in tiers.iter_mut().enumerate() {
                let info = if by_position {
                    soc_tiers.get(i)
                } else {
                    soc_tiers.iter().find(|s| s.label == t.label)
                };
                t.min_mhz = info.and_then(|s| lowest_step(&s.freqs));
            }
        }
        let mut power_w = BTreeMap::new();
        // macmon writes `ram_power: 0.0` where the machine has no DRAM rail in its
        // Energy Model (M1-class machines): DRAM never draws 0 W while the Mac runs, so
        // 0 is no sensor, as `sys_power`'s 0 is.
        for (rail, w) in [
            ("cpu", self.cpu_power),
            ("gpu", self.gpu_power),
            ("ane", self.ane_power),
            ("dram", self.ram_power.filter(|w| *w > 0.0)),
        ] {
            if let Some(w) = w {
                power_w.insert(rail.to_string(), w);
            }
        }
        // macmon reports 0 where the SMC has no system power reading.
        if let Some(w) = self.sys_power.filter(|w| *w > 0.0) {
            power_w.insert("system".into(), w);
        }
        let mut temps_c = BTreeMap::new();
        if let Some(t) = temperature(self.temp.cpu_temp_avg) {
            temps_c.insert("cpu".to_string(), t);
        }
        if let Some(t) = temperature(self.temp.gpu_temp_avg) {
            temps_c.insert("gpu".to_string(), t);
        }
        RawSample {
            elapsed_s,
            tiers,
            gpu_freq_mhz: self.gpu_freq_mhz.or(self.gpu_usage.map(|p| p.0)),
            gpu_min_mhz: soc.and_then(|s| lowest_step(&s.gpu_freqs)),
            gpu_active_ratio: self.gpu_active_ratio,
            power_w,
            temps_c,
            fans: self
                .fans
                .iter()
                .map(|f| FanSample {
                    name: f.name.clone(),
                    rpm: f.rpm,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Memory as macmon states it (used = its own formula), where a recording has no VM
    /// counters.
    pub(crate) fn memory(&self) -> Option<Memory> {
        self.memory.map(|m| Memory {
            total: Some(m.ram_total),
            used: Some(m.ram_usage),
            available: Some(m.ram_total.saturating_sub(m.ram_usage)),
            swap_used: Some(m.swap_usage),
            swap_total: Some(m.swap_total),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Window {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn v0_9_per_core_lists_become_two_tiers_with_their_tables() {
        let w = parse(
            r#"{"ecpu_freq_mhz":1020,"ecpu_active_ratio":0.1,"pcpu_freq_mhz":3000,"pcpu_active_ratio":0.5,
            "ecpu_cores":[{"die_id":0,"core_id":0,"freq_mhz":0,"usage_ratio":0,"active_ratio":0}],
            "pcpu_cores":[{"die_id":0,"core_id":0,"freq_mhz":3000,"usage_ratio":0.3,"active_ratio":0.5}],
            "ecpu_usage":[1020,0.01],"pcpu_usage":[3000,0.3],"gpu_usage":[0,0.0],"gpu_freq_mhz":0,"gpu_active_ratio":0,
            "temp":{"cpu_temp_avg":0.0,"gpu_temp_avg":41.5},"cpu_power":1.5,"sys_power":0.0}"#,
        );
        let soc = Soc {
            ecpu_cores: Some(1),
            pcpu_cores: Some(1),
            ecpu_label: Some("E".into()),
            pcpu_label: Some("P".into()),
            ecpu_freqs: vec![1020.0, 2592.0],
            pcpu_freqs: vec![1260.0, 4512.0],
            gpu_freqs: vec![0.0, 338.0, 1578.0],
            ..Default::default()
        };
        let raw = w.raw_sample(Some(&soc), 1.0);
        assert_eq!(raw.tiers.len(), 2);
        assert_eq!(raw.tiers[0].min_mhz, Some(1020.0));
        assert_eq!(raw.tiers[1].cores[0].active_ratio, 0.5);
        assert_eq!(raw.tiers[1].active_ratio, Some(0.5));
        assert_eq!(raw.gpu_min_mhz, Some(338.0), "the OFF state is not a step");
        assert!(!raw.temps_c.contains_key("cpu"), "0 °C is no sensor");
        assert_eq!(raw.temps_c["gpu"], 41.5);
        assert!(!raw.power_w.contains_key("system"));
    }

    #[test]
    fn v0_7_pairs_give_frequency_but_no_residency() {
        let w = parse(r#"{"ecpu_usage":[1200,0.1],"pcpu_usage":[3000,0.6],"gpu_usage":[500,0.2]}"#);
        let raw = w.raw_sample(None, 1.0);
        assert_eq!(raw.tiers[1].freq_mhz, 3000.0);
        assert_eq!(
            raw.tiers[1].active_ratio, None,
            "a scaled ratio is not residency"
        );
        assert_eq!(
            (raw.gpu_freq_mhz, raw.gpu_active_ratio),
            (Some(500.0), None)
        );
    }

    /// The real `pcpu_usage` pairs of 7 consecutive lines of an M4 Pro (macmon#46, as
    /// `jq .pcpu_usage` printed them): each is the P tier's frequency; the ratio stays
    /// unread (frequency-scaled usage, not residency).
    #[test]
    fn real_m4_pro_pcpu_pairs_are_the_p_tier_frequency() {
        let text = include_str!("../../../testdata/replay/macmon-m4pro-issue46-pcpu-pairs.txt");
        let pairs: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with('['))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(pairs.len(), 7);
        let mhz: Vec<f64> = pairs
            .iter()
            .map(|p| {
                let w = Window {
                    pcpu_usage: Some(*p),
                    ..Default::default()
                };
                let raw = w.raw_sample(None, 1.0);
                assert_eq!(raw.tiers.len(), 1);
                assert_eq!(raw.tiers[0].label, "P");
                assert_eq!(raw.tiers[0].active_ratio, None);
                raw.tiers[0].freq_mhz
            })
            .collect();
        assert_eq!(
            mhz,
            [1812.0, 1355.0, 1270.0, 1482.0, 1260.0, 1260.0, 1356.0]
        );
    }

    #[test]
    fn ram_power_zero_is_no_dram_sensor() {
        let w = parse(r#"{"ram_power":0.0,"cpu_power":0.0,"sys_power":0.0}"#);
        let raw = w.raw_sample(None, 1.0);
        assert!(!raw.power_w.contains_key("dram"));
        assert_eq!(
            raw.power_w.get("cpu"),
            Some(&0.0),
            "an idle CPU rail is 0 W"
        );
        let w = parse(r#"{"ram_power":0.25}"#);
        assert_eq!(w.raw_sample(None, 1.0).power_w["dram"], 0.25);
    }

    #[test]
    fn a_v0_10_soc_describes_the_machine() {
        let soc: Soc = serde_json::from_str(
            r#"{"chip_name":"Apple M5 Max","memory_gb":128,"gpu_cores":40,"vm":false,
            "cpu_tiers":[{"label":"P","cores":12,"freqs":[1260,4200]},{"label":"S","cores":6,"freqs":[1500,4600]}],
            "ecpu_cores":12,"pcpu_cores":6,"ecpu_label":"P","pcpu_label":"S"}"#,
        )
        .unwrap();
        let m = soc.machine();
        assert_eq!(m.perflevels[0].name.as_deref(), Some("Super"));
        assert_eq!(m.perflevels[1].logical_cpus, 12);
        assert_eq!(m.ioreport_counters, Some(true));
        assert_eq!(m.memory_bytes, Some(128 << 30));
    }
}
