//! Replay of a recording (`hardware.source: replay`): `macmon pipe` JSON lines (0.7
//! aliases, 0.8/0.9 per-core lists, 0.10 tiers) or m4watch's own `dump-raw` format, one
//! sample per collection, through the same arithmetic as the live macOS source (macmon
//! lines through [`super::macmon_window`], every sample through
//! [`super::apple::AppleState`]), so a Linux box publishes every Apple Silicon series.
//! Lines starting with `#` are comments (fixtures say there where they come from).

use std::path::Path;

use super::apple::{
    AppleState, DUMP_FORMAT, DUMP_VERSION, DumpHeader, MachineInfo, PerfLevel, RawSample,
    level_name, tick_delta,
};
use super::macmon_window::{Soc, Window};
use super::{Memory, Reading, Source, Topology};

/// A recording loaded in memory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recording {
    pub machine: MachineInfo,
    pub synthetic: bool,
    pub samples: Vec<Frame>,
}

/// One sample of a recording, ready to play.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub raw: RawSample,
    /// Ticks each CPU advanced over this sample's window: `[user, system, idle, nice]`.
    pub tick_deltas: Vec<[u32; 4]>,
    /// Memory as the recording states it (macmon), where it has no VM counters.
    pub memory: Option<Memory>,
}

/// Why a recording's text cannot be played; `line` counts from 1, comments included.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("the recording is empty")]
    Empty,
    #[error("line {line}: not JSON: {source}")]
    NotJson {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: dump header: {source}")]
    Header {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: dump format version {found} (this m4watch reads {DUMP_VERSION})")]
    Version { line: usize, found: u32 },
    /// A sample line that is not a sample of the recording's format.
    #[error("line {line}: {source}")]
    Sample {
        line: usize,
        source: serde_json::Error,
    },
}

/// Why a replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("replay file {path}: {source}", path = path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}", path = path.display())]
    Recording {
        path: std::path::PathBuf,
        source: RecordingError,
    },
    #[error("{name}: the recording has no samples")]
    NoSamples { name: String },
}

/// Parses a recording: a dump (first line is a `m4watch-dump` header) or macmon lines.
pub(crate) fn parse_recording(text: &str) -> Result<Recording, RecordingError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((first_i, first)) = lines.next() else {
        return Err(RecordingError::Empty);
    };
    let head: serde_json::Value =
        serde_json::from_str(first).map_err(|source| RecordingError::NotJson {
            line: first_i + 1,
            source,
        })?;
    if head.get("format").and_then(|f| f.as_str()) == Some(DUMP_FORMAT) {
        let header: DumpHeader =
            serde_json::from_value(head).map_err(|source| RecordingError::Header {
                line: first_i + 1,
                source,
            })?;
        if header.version != DUMP_VERSION {
            return Err(RecordingError::Version {
                line: first_i + 1,
                found: header.version,
            });
        }
        let mut raws = Vec::new();
        for (i, l) in lines {
            let s: RawSample = serde_json::from_str(l).map_err(sample_error(i))?;
            raws.push(s);
        }
        let deltas = deltas_from_ticks(&raws);
        return Ok(Recording {
            machine: header.machine,
            synthetic: header.synthetic,
            samples: frames(raws, deltas, Vec::new()),
        });
    }
    // macmon pipe: every line is a sample; `pipe --soc-info` adds the chip and the DVFS
    // tables to each line.
    let mut soc: Option<Soc> = None;
    let mut raws = Vec::new();
    let mut mems = Vec::new();
    let mut prev_time: Option<f64> = None;
    for (i, l) in std::iter::once((first_i, first)).chain(lines) {
        let w: Window = serde_json::from_str(l).map_err(sample_error(i))?;
        let t = w.timestamp.as_deref().and_then(seconds_of_day);
        let elapsed = match (prev_time, t) {
            (Some(a), Some(b)) => Some((b - a).rem_euclid(86_400.0)).filter(|d| *d > 0.0),
            _ => None,
        };
        prev_time = t;
        if w.soc.is_some() {
            soc.clone_from(&w.soc);
        }
        raws.push(w.raw_sample(soc.as_ref(), elapsed.unwrap_or(1.0)));
        mems.push(w.memory());
    }
    let machine = match &soc {
        Some(s) => s.machine(),
        // No --soc-info: the core counts come from the per-core lists, highest tier first.
        None => MachineInfo {
            perflevels: raws
                .first()
                .map(|s| {
                    s.tiers
                        .iter()
                        .rev()
                        .map(|t| PerfLevel {
                            name: level_name(&t.label).map(String::from),
                            logical_cpus: t.cores.len() as u32,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        },
    };
    let deltas = deltas_from_residency(&raws);
    Ok(Recording {
        machine,
        synthetic: false,
        samples: frames(raws, deltas, mems),
    })
}

/// The error of a sample that does not parse at (0-based) line index `i`.
fn sample_error(i: usize) -> impl FnOnce(serde_json::Error) -> RecordingError {
    move |source| RecordingError::Sample {
        line: i + 1,
        source,
    }
}

fn frames(
    raws: Vec<RawSample>,
    deltas: Vec<Vec<[u32; 4]>>,
    mems: Vec<Option<Memory>>,
) -> Vec<Frame> {
    let mut mems = mems.into_iter();
    raws.into_iter()
        .zip(deltas)
        .map(|(raw, tick_deltas)| Frame {
            raw,
            tick_deltas,
            memory: mems.next().flatten(),
        })
        .collect()
}

/// Per-window tick deltas of a dump. The first sample has no predecessor: it repeats
/// the next window, so a looping replay's utilisation never has a gap.
fn deltas_from_ticks(raws: &[RawSample]) -> Vec<Vec<[u32; 4]>> {
    let mut out: Vec<Vec<[u32; 4]>> = raws
        .windows(2)
        .map(|w| {
            w[0].ticks
                .iter()
                .zip(&w[1].ticks)
                .map(|(a, b)| tick_delta(*a, *b).map(|d| d as u32))
                .collect()
        })
        .collect();
    let first = out
        .first()
        .cloned()
        .unwrap_or_else(|| vec![[0; 4]; raws.first().map_or(0, |r| r.ticks.len())]);
    out.insert(0, first);
    out
}

/// macmon records residency, not ticks: a core active for a share `a` of a window of
/// `t` seconds is taken as `a·t` busy and `(1-a)·t` idle.
fn deltas_from_residency(raws: &[RawSample]) -> Vec<Vec<[u32; 4]>> {
    raws.iter()
        .map(|r| {
            let ticks = r.elapsed_s * super::apple::TICKS_PER_SECOND;
            // CPU order: lowest tier first, as the topology numbers them.
            r.tiers
                .iter()
                .flat_map(|t| &t.cores)
                .map(|c| {
                    let busy = (c.active_ratio.clamp(0.0, 1.0) * ticks).round() as u32;
                    let idle = (ticks.round() as u32).saturating_sub(busy);
                    [busy, 0, idle, 0]
                })
                .collect()
        })
        .collect()
}

/// Seconds since midnight of an RFC 3339 time (`2025-02-24T20:38:15.427569+00:00`):
/// enough for the gap between two samples, across midnight too.
pub(crate) fn seconds_of_day(ts: &str) -> Option<f64> {
    let time = ts.split_once('T')?.1;
    let end = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let mut parts = time[..end].split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Plays a [`Recording`], one frame per read.
pub(crate) struct ReplaySource {
    name: String,
    rec: Recording,
    pos: usize,
    looping: bool,
    ticks: Vec<[u32; 4]>,
    state: AppleState,
    topology: Topology,
}

impl ReplaySource {
    /// Loads `path`; `looping` starts again at the end instead of stopping.
    pub(crate) fn open(path: &Path, looping: bool) -> Result<Self, ReplayError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let rec = parse_recording(&text).map_err(|source| ReplayError::Recording {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(path.display().to_string(), rec, looping)
    }

    /// Plays `rec` under `name` (the file it came from, in logs and errors).
    pub(crate) fn new(name: String, rec: Recording, looping: bool) -> Result<Self, ReplayError> {
        if rec.samples.is_empty() {
            return Err(ReplayError::NoSamples { name });
        }
        let ncpu = rec.samples[0].tick_deltas.len();
        tracing::info!(
            file = %name,
            samples = rec.samples.len(),
            cpus = ncpu,
            synthetic = rec.synthetic,
            chip = rec.machine.chip.as_deref().unwrap_or("unknown"),
            "replaying a recording"
        );
        Ok(ReplaySource {
            name,
            rec,
            pos: 0,
            looping,
            ticks: vec![[0; 4]; ncpu],
            state: AppleState::default(),
            topology: Topology::default(),
        })
    }

    pub(crate) fn machine(&self) -> &MachineInfo {
        &self.rec.machine
    }

    pub(crate) fn cpu_count(&self) -> u32 {
        self.ticks.len() as u32
    }

    /// The topology per-core residency is matched against.
    pub(crate) fn set_topology(&mut self, t: Topology) {
        self.topology = t;
    }

    /// The next frame as a [`Reading`]; `None` at the end of a non-looping recording.
    pub(crate) fn next_reading(&mut self) -> Option<Reading> {
        if self.pos >= self.rec.samples.len() {
            if !self.looping {
                return None;
            }
            self.pos = 0;
        }
        let frame = &self.rec.samples[self.pos];
        self.pos += 1;
        if frame.tick_deltas.len() == self.ticks.len() {
            for (t, d) in self.ticks.iter_mut().zip(&frame.tick_deltas) {
                for k in 0..4 {
                    t[k] = t[k].wrapping_add(d[k]);
                }
            }
        }
        let mut raw = frame.raw.clone();
        raw.ticks = self.ticks.clone();
        let mut r = self.state.reading(&self.rec.machine, &self.topology, &raw);
        if r.memory.is_none() {
            r.memory = frame.memory;
        }
        Some(r)
    }
}

impl Source for ReplaySource {
    fn read(&mut self) -> std::io::Result<Reading> {
        self.next_reading().ok_or_else(|| {
            std::io::Error::other(format!(
                "replay of {} reached its end (hardware.replay_loop is false)",
                self.name
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::hardware::ThermalPressure;

    /// Two lines in the shape macmon 0.10 documents for `pipe --soc-info` (values made up).
    const MACMON: &str = r#"{"timestamp":"2026-01-05T23:59:59.500000+00:00","temp":{"cpu_temp_avg":48.5,"gpu_temp_avg":null},"memory":{"ram_total":137438953472,"ram_usage":68719476736,"swap_total":0,"swap_usage":0},"fans":[{"name":"fan0","rpm":1850,"max_rpm":5000}],"cpu_scaled_ratio":0.3,"cpu_active_ratio":0.4,"cpu_tiers":[{"label":"E","freq_mhz":1800,"scaled_ratio":0.2,"active_ratio":0.5,"cores":[{"die_id":0,"core_id":0,"freq_mhz":1800,"scaled_ratio":0.2,"active_ratio":0.5},{"die_id":0,"core_id":1,"freq_mhz":1800,"scaled_ratio":0.2,"active_ratio":0.5}]},{"label":"P","freq_mhz":4000,"scaled_ratio":0.8,"active_ratio":1.0,"cores":[{"die_id":0,"core_id":0,"freq_mhz":4000,"scaled_ratio":0.8,"active_ratio":1.0}]}],"gpu_freq_mhz":1200,"gpu_scaled_ratio":0.3,"gpu_active_ratio":0.45,"cpu_power":12.5,"gpu_power":3.0,"ane_power":1.5,"all_power":17.0,"sys_power":0.0,"ram_power":0.9,"gpu_ram_power":0.01,"soc":{"mac_model":"Mac16,5","chip_name":"Apple M4 Max","memory_gb":128,"cpu_tiers":[{"label":"E","cores":2,"freqs":[1020,2592]},{"label":"P","cores":1,"freqs":[1260,4512]}],"gpu_cores":40,"gpu_freqs":[338,1578],"vm":false}}
{"timestamp":"2026-01-06T00:00:01.500000+00:00","temp":{"cpu_temp_avg":49.0,"gpu_temp_avg":40.0},"memory":{"ram_total":137438953472,"ram_usage":68719476736,"swap_total":0,"swap_usage":0},"fans":[],"cpu_tiers":[{"label":"E","freq_mhz":1800,"active_ratio":0.25,"cores":[{"freq_mhz":1800,"active_ratio":0.25},{"freq_mhz":1800,"active_ratio":0.25}]},{"label":"P","freq_mhz":4000,"active_ratio":0.75,"cores":[{"freq_mhz":4000,"active_ratio":0.75}]}],"gpu_freq_mhz":1200,"gpu_active_ratio":0.45,"cpu_power":10.0,"gpu_power":3.0,"ane_power":1.5,"sys_power":40.0,"ram_power":0.9}
"#;

    #[test]
    fn macmon_pipe_lines_become_frames() {
        let rec = parse_recording(MACMON).unwrap();
        assert_eq!(rec.machine.chip.as_deref(), Some("Apple M4 Max"));
        assert_eq!(rec.machine.gpu_cores, Some(40));
        assert_eq!(rec.machine.perflevels[0].logical_cpus, 1);
        assert_eq!(rec.machine.perflevels[1].logical_cpus, 2);
        assert_eq!(rec.samples.len(), 2);
        let s = &rec.samples[1];
        assert_eq!(s.raw.elapsed_s, 2.0, "across midnight");
        assert_eq!(rec.samples[0].raw.elapsed_s, 1.0, "no predecessor: 1 s");
        assert_eq!(s.raw.power_w["system"], 40.0);
        assert!(!rec.samples[0].raw.power_w.contains_key("system"));
        assert_eq!(s.raw.power_w["dram"], 0.9);
        // 0.25 of 2 s at 100 ticks/s.
        assert_eq!(s.tick_deltas[0], [50, 0, 150, 0]);
        assert_eq!(s.memory.unwrap().used, Some(68719476736));
    }

    #[test]
    fn old_macmon_usage_pairs_are_read() {
        let line = r#"{"timestamp":"2024-05-01T10:00:00Z","temp":{"cpu_temp_avg":40.0,"gpu_temp_avg":35.0},"memory":{"ram_total":1,"ram_usage":1,"swap_total":0,"swap_usage":0},"ecpu_usage":[1200,0.1],"pcpu_usage":[3000,0.6],"gpu_usage":[500,0.2],"cpu_power":1.0,"gpu_power":0.1,"ane_power":0.0,"all_power":1.1,"sys_power":5.0,"ram_power":0.2,"gpu_ram_power":0.0}"#;
        let rec = parse_recording(line).unwrap();
        let raw = &rec.samples[0].raw;
        assert_eq!(raw.tiers.len(), 2);
        assert_eq!(raw.tiers[1].freq_mhz, 3000.0);
        // The pairs' ratio is frequency-scaled usage, not active residency.
        assert_eq!(
            (raw.gpu_freq_mhz, raw.gpu_active_ratio),
            (Some(500.0), None)
        );
        assert_eq!(raw.tiers[1].active_ratio, None);
    }

    #[test]
    fn errors_name_the_line() {
        let err =
            parse_recording("{\"format\":\"m4watch-dump\",\"version\":1,\"machine\":{}}\n{bad\n")
                .unwrap_err();
        assert!(
            matches!(err, RecordingError::Sample { line: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = parse_recording("{\"format\":\"m4watch-dump\",\"version\":9,\"machine\":{}}\n")
            .unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
        assert_eq!(
            parse_recording("\n\n").unwrap_err().to_string(),
            "the recording is empty"
        );
    }

    #[test]
    fn dump_replays_with_wrapping_ticks_and_stops_or_loops() {
        let header = r#"{"format":"m4watch-dump","version":1,"machine":{"chip":"Apple M4 Max","perflevels":[{"logical_cpus":1},{"logical_cpus":1}]}}"#;
        let s = |user: u32, idle: u32, state: u64| {
            serde_json::to_string(&RawSample {
                elapsed_s: 1.0,
                ticks: vec![[user, 0, idle, 0], [user, 0, idle, 0]],
                thermal_state: Some(state),
                ..Default::default()
            })
            .unwrap()
        };
        let text = format!(
            "{header}\n{}\n{}\n{}\n",
            s(u32::MAX - 49, 0, 0),
            s((u32::MAX - 49).wrapping_add(100), 0, 2),
            s((u32::MAX - 49).wrapping_add(150), 50, 3)
        );
        let rec = parse_recording(&text).unwrap();
        assert_eq!(rec.samples[1].tick_deltas[0], [100, 0, 0, 0]);
        assert_eq!(rec.samples[0].tick_deltas, rec.samples[1].tick_deltas);
        let mut src = ReplaySource::new("t".into(), rec.clone(), false).unwrap();
        let topo = super::super::apple::build_topology(src.machine(), 2).unwrap();
        src.set_topology(topo);
        let states: Vec<_> = std::iter::from_fn(|| src.next_reading())
            .map(|r| r.thermal_pressure.unwrap())
            .collect();
        assert_eq!(
            states,
            vec![
                ThermalPressure::Nominal,
                ThermalPressure::Serious,
                ThermalPressure::Critical
            ]
        );
        assert!(src.read().is_err(), "stops at the end");
        let mut looping = ReplaySource::new("t".into(), rec, true).unwrap();
        let total: f64 = (0..7)
            .map(|_| looping.next_reading().unwrap().cpu[&0].user)
            .last()
            .unwrap();
        // 7 frames: deltas 100,100,50 repeated: 100+100+50+100+100+50+100 ticks.
        assert_eq!(total, 6.0);
    }

    #[test]
    fn midnight_and_zones() {
        assert_eq!(seconds_of_day("2025-02-24T20:38:15.5+00:00"), Some(74295.5));
        assert_eq!(seconds_of_day("2025-02-24T00:00:01Z"), Some(1.0));
        assert_eq!(seconds_of_day("yesterday"), None);
    }
}
