//! Replay of a recording (`hardware.source: replay`): `macmon pipe` JSON lines (0.7
//! aliases, 0.8/0.9 per-core lists, 0.10 tiers) or m4watch's own `dump-raw` format, one
//! sample per collection, through the same arithmetic as the live macOS source (macmon
//! lines through [`super::macmon_window`], every sample through
//! [`super::apple::AppleState`]), so a Linux box publishes every Apple Silicon series.
//! Lines starting with `#` are comments (fixtures say there where they come from).

use std::path::Path;

use super::apple::{
    AppleState, DUMP_FORMAT, DUMP_VERSION, DumpHeader, MachineInfo, PerfLevel, RawSample,
    level_name, tick_delta, tier_utilization,
};
use super::macmon_window::{Soc, Window};
use super::{CpuTimes, Memory, Reading, Source, Topology};

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
    /// Ticks each CPU advanced over this sample's window: `[user, system, idle, nice]`
    /// (a dump; empty for macmon lines).
    pub tick_deltas: Vec<[u32; 4]>,
    /// Busy and idle seconds of each CPU over this window, from macmon's residency (not
    /// rounded to ticks), lowest tier first; empty for a dump.
    pub busy_idle_s: Vec<[f64; 2]>,
    /// Memory as the recording states it (macmon), where it has no VM counters.
    pub memory: Option<Memory>,
    /// Whether the window's length is known (a dump; macmon lines with timestamps, or an
    /// interval the recording states). Where it is not, the energy counter is not
    /// integrated: a guessed second per line would count energy at the wrong rate.
    pub window_known: bool,
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

/// macmon's `--interval` when the command does not name one, milliseconds.
const MACMON_DEFAULT_INTERVAL_MS: f64 = 1000.0;

/// The window length a pasted `macmon` command states: a line such as
/// `$ macmon pipe -i 500 | jq` (a shell prompt as users paste it; in a fixture also
/// `# $ macmon pipe …`). `Some(None)` is a macmon command whose interval cannot be read.
fn macmon_command_interval(line: &str) -> Option<Option<f64>> {
    let t = line.trim_start().trim_start_matches('#').trim_start();
    if t.starts_with('{') || t.starts_with('"') {
        return None;
    }
    let (_, cmd) = t.split_once("$ macmon")?;
    let cmd = cmd.split('|').next().unwrap_or("");
    let mut words = cmd.split_whitespace();
    let mut interval = Some(MACMON_DEFAULT_INTERVAL_MS);
    while let Some(w) = words.next() {
        let value = match w {
            "-i" | "--interval" => words.next(),
            _ => w
                .strip_prefix("--interval=")
                .or_else(|| w.strip_prefix("-i").filter(|v| !v.is_empty())),
        };
        if let Some(v) = value {
            interval = v.parse::<f64>().ok().filter(|ms| *ms > 0.0);
        }
    }
    Some(interval.map(|ms| ms / 1000.0))
}

/// A JSON value of a recording (or the error that ends it) and the line it starts on.
type Located = (usize, Result<serde_json::Value, serde_json::Error>);

/// The JSON values of a recording with the line each starts on. Comment lines (`#`) and
/// pasted `$ macmon …` prompts are blanked (line numbers stay), and a value may span
/// lines: `macmon pipe | jq` prints each sample pretty, over many lines.
fn json_values(text: &str) -> (Vec<Located>, Option<Option<f64>>) {
    let mut interval = None;
    let cleaned: Vec<&str> = text
        .lines()
        .map(|l| {
            if let Some(i) = macmon_command_interval(l) {
                interval = Some(i);
                ""
            } else if l.trim_start().starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect();
    let cleaned = cleaned.join("\n");
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(&cleaned).into_iter::<serde_json::Value>();
    loop {
        let from = stream.byte_offset();
        let rest = &cleaned[from..];
        let start = from + (rest.len() - rest.trim_start().len());
        let line = cleaned[..start].matches('\n').count() + 1;
        match stream.next() {
            None => break,
            Some(Ok(v)) => out.push((line, Ok(v))),
            Some(Err(e)) => {
                out.push((e.line().max(line), Err(e)));
                break;
            }
        }
    }
    (out, interval)
}

/// Parses a recording: a dump (first line is a `m4watch-dump` header) or macmon samples,
/// one JSON object a line or pretty-printed (`macmon pipe | jq`).
pub(crate) fn parse_recording(text: &str) -> Result<Recording, RecordingError> {
    let (values, stated) = json_values(text);
    let mut values = values.into_iter();
    let Some((first_line, first)) = values.next() else {
        return Err(RecordingError::Empty);
    };
    let head = first.map_err(|source| RecordingError::NotJson {
        line: first_line,
        source,
    })?;
    let mut rest = Vec::new();
    for (line, v) in values {
        rest.push((line, v.map_err(sample_error(line))?));
    }
    if head.get("format").and_then(|f| f.as_str()) == Some(DUMP_FORMAT) {
        let header: DumpHeader =
            serde_json::from_value(head).map_err(|source| RecordingError::Header {
                line: first_line,
                source,
            })?;
        if header.version != DUMP_VERSION {
            return Err(RecordingError::Version {
                line: first_line,
                found: header.version,
            });
        }
        let mut raws = Vec::new();
        for (line, v) in rest {
            let s: RawSample = serde_json::from_value(v).map_err(sample_error(line))?;
            raws.push(s);
        }
        let deltas = deltas_from_ticks(&raws);
        let n = raws.len();
        return Ok(Recording {
            machine: header.machine,
            synthetic: header.synthetic,
            samples: frames(raws, deltas, vec![Vec::new(); n], Vec::new(), vec![true; n]),
        });
    }
    // macmon pipe: every value is a sample; `pipe --soc-info` adds the chip and the DVFS
    // tables to each.
    let mut soc: Option<Soc> = None;
    let mut windows = Vec::new();
    for (line, v) in std::iter::once((first_line, head)).chain(rest) {
        let w: Window = serde_json::from_value(v).map_err(sample_error(line))?;
        if w.soc.is_some() {
            soc.clone_from(&w.soc);
        }
        windows.push(w);
    }
    // Window lengths: the gap between two timestamps; the first line repeats the next
    // gap; else the interval the pasted command states (macmon's default where it names
    // none); else unknown.
    let times: Vec<Option<f64>> = windows
        .iter()
        .map(|w| w.timestamp.as_deref().and_then(seconds_of_day))
        .collect();
    let gap = |i: usize| -> Option<f64> {
        let (a, b) = (
            times.get(i.checked_sub(1)?).copied()??,
            times.get(i).copied()??,
        );
        Some((b - a).rem_euclid(86_400.0)).filter(|d| *d > 0.0)
    };
    let stated = stated.flatten();
    let elapsed: Vec<Option<f64>> = (0..windows.len())
        .map(|i| {
            let own = if i == 0 { gap(1) } else { gap(i) };
            own.or(stated)
        })
        .collect();
    let mut raws = Vec::new();
    let mut mems = Vec::new();
    for (w, e) in windows.iter().zip(&elapsed) {
        raws.push(w.raw_sample(soc.as_ref(), e.unwrap_or(1.0)));
        mems.push(w.memory());
    }
    // The tiers the lines carry, highest first (as sysctl lists them), counted from the
    // per-core lists: 0 where a line has only macmon 0.7's cluster pairs.
    let line_levels = || -> Vec<PerfLevel> {
        raws.first()
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
            .unwrap_or_default()
    };
    let machine = match &soc {
        Some(s) => {
            let mut m = s.machine();
            // A soc block that says 0 cores (macmon on a chip it does not know) leaves
            // the counts unknown; the lines still say which tiers there are.
            if m.perflevels.is_empty() {
                m.perflevels = line_levels();
            }
            m
        }
        None => MachineInfo {
            perflevels: line_levels(),
            ..Default::default()
        },
    };
    let busy = busy_idle_from_residency(&raws);
    let known = elapsed.iter().map(Option::is_some).collect();
    let n = raws.len();
    Ok(Recording {
        machine,
        synthetic: false,
        samples: frames(raws, vec![Vec::new(); n], busy, mems, known),
    })
}

/// The error of a sample that does not parse, starting on `line` (from 1).
fn sample_error(line: usize) -> impl FnOnce(serde_json::Error) -> RecordingError {
    move |source| RecordingError::Sample { line, source }
}

fn frames(
    raws: Vec<RawSample>,
    deltas: Vec<Vec<[u32; 4]>>,
    busy: Vec<Vec<[f64; 2]>>,
    mems: Vec<Option<Memory>>,
    known: Vec<bool>,
) -> Vec<Frame> {
    let mut mems = mems.into_iter();
    raws.into_iter()
        .zip(deltas)
        .zip(busy)
        .zip(known)
        .map(|(((raw, tick_deltas), busy_idle_s), window_known)| Frame {
            raw,
            tick_deltas,
            busy_idle_s,
            memory: mems.next().flatten(),
            window_known,
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
/// `t` seconds was busy `a·t` and idle `(1-a)·t` seconds (not rounded: a tick is 1/100 of
/// the window's second, too coarse for residency).
fn busy_idle_from_residency(raws: &[RawSample]) -> Vec<Vec<[f64; 2]>> {
    raws.iter()
        .map(|r| {
            let t = r.elapsed_s.max(0.0);
            // CPU order: lowest tier first, as the topology numbers them.
            r.tiers
                .iter()
                .flat_map(|t| &t.cores)
                .map(|c| {
                    let a = c.active_ratio.clamp(0.0, 1.0);
                    [a * t, (1.0 - a) * t]
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
    ncpu: u32,
    /// A dump's accumulated ticks.
    ticks: Vec<[u32; 4]>,
    /// A macmon recording's accumulated busy and idle seconds per CPU.
    seconds: Vec<[f64; 2]>,
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
        let first = &rec.samples[0];
        let ticks = first.tick_deltas.len();
        let per_core = first.busy_idle_s.len();
        // macmon 0.7's cluster pairs list no cores: the CPUs are the ones the machine's
        // description counts (a soc block), or none.
        let ncpu = if ticks > 0 || per_core > 0 {
            (ticks + per_core) as u32
        } else {
            rec.machine.perflevels.iter().map(|l| l.logical_cpus).sum()
        };
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
            ncpu,
            ticks: vec![[0; 4]; ticks],
            seconds: vec![[0.0; 2]; per_core],
            state: AppleState::default(),
            topology: Topology::default(),
        })
    }

    pub(crate) fn machine(&self) -> &MachineInfo {
        &self.rec.machine
    }

    pub(crate) fn cpu_count(&self) -> u32 {
        self.ncpu
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
        if frame.busy_idle_s.len() == self.seconds.len() {
            for (t, d) in self.seconds.iter_mut().zip(&frame.busy_idle_s) {
                t[0] += d[0];
                t[1] += d[1];
            }
        }
        let mut raw = frame.raw.clone();
        raw.ticks = self.ticks.clone();
        if !frame.window_known {
            // No energy over a window of unknown length (cleared below as well).
            raw.elapsed_s = 0.0;
            raw.energy_j.clear();
        }
        let mut r = self.state.reading(&self.rec.machine, &self.topology, &raw);
        if !self.seconds.is_empty() {
            r.cpu = self
                .seconds
                .iter()
                .enumerate()
                .map(|(i, [busy, idle])| {
                    let times = CpuTimes {
                        user: *busy,
                        idle: *idle,
                        ..Default::default()
                    };
                    (i as u32, times)
                })
                .collect();
            // macmon states each tier's residency: the cluster figure is its, not a mean
            // of the cores a recording happens to list.
            r.cluster_utilization = tier_utilization(&self.topology, &raw);
        }
        if !frame.window_known {
            r.energy.clear();
        }
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
        assert_eq!(
            rec.samples[0].raw.elapsed_s, 2.0,
            "no predecessor: the next gap, never a guessed second"
        );
        assert!(rec.samples.iter().all(|f| f.window_known));
        assert_eq!(s.raw.power_w["system"], 40.0);
        assert!(!rec.samples[0].raw.power_w.contains_key("system"));
        assert_eq!(s.raw.power_w["dram"], 0.9);
        // 0.25 of 2 s.
        assert_eq!(s.busy_idle_s[0], [0.5, 1.5]);
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

    const BESZEL: &str = include_str!("../../../testdata/replay/macmon-0.7-beszel1796-real.jsonl");
    const M4_AIR: &str = include_str!("../../../testdata/replay/macmon-m4-air-issue51-closed.json");

    /// The real 0.7 line's stated `-i 1000` is its window; the same line recorded at
    /// `-i 500` counts half the energy per line; without timestamps or a stated interval
    /// the window is unknown and no energy is counted (issue 26: each line was taken as
    /// one second, so a 500 ms recording ran the counter at twice the power).
    #[test]
    fn the_window_is_the_recordings_own_or_no_energy_is_counted() {
        let cpu_joules = |text: &str| {
            let rec = parse_recording(text).unwrap();
            let n = rec.samples[0].busy_idle_s.len() as u32;
            let mut src = ReplaySource::new("t".into(), rec, true).unwrap();
            let topo = super::super::apple::build_topology(src.machine(), n).unwrap();
            src.set_topology(topo);
            let r = src.next_reading().unwrap();
            r.energy.iter().find(|e| e.rail == "cpu").map(|e| e.joules)
        };
        let watts = 0.25233203172683716;
        assert_eq!(cpu_joules(BESZEL), Some(watts));
        let at_500 = BESZEL.replace("# $ macmon pipe -i 1000", "$ macmon pipe -i 500");
        assert_eq!(cpu_joules(&at_500), Some(watts * 0.5));
        let at_500 = BESZEL.replace(
            "# $ macmon pipe -i 1000",
            "$ macmon pipe --interval=500 | jq -c",
        );
        assert_eq!(cpu_joules(&at_500), Some(watts * 0.5));
        let unstated = BESZEL.replace("# $ macmon pipe -i 1000", "");
        // One timestamp, no second line to measure a gap against, no command.
        assert_eq!(cpu_joules(&unstated), None);
        let rec = parse_recording(&unstated).unwrap();
        assert!(!rec.samples[0].window_known);
        // The M4 Air paste names `macmon pipe --samples 1 --soc-info`: macmon's default.
        assert_eq!(
            parse_recording(M4_AIR).unwrap().samples[0].raw.elapsed_s,
            1.0
        );
    }

    #[test]
    fn pasted_commands_state_the_interval() {
        assert_eq!(
            macmon_command_interval(
                "[~ (ERROR CODE: 1)] $ macmon pipe --samples 1 --soc-info | jq"
            ),
            Some(Some(1.0))
        );
        assert_eq!(
            macmon_command_interval("$ macmon pipe -i250"),
            Some(Some(0.25))
        );
        assert_eq!(macmon_command_interval("# $ macmon pipe -i x"), Some(None));
        assert_eq!(macmon_command_interval("{\"a\": \"$ macmon\"}"), None);
        assert_eq!(macmon_command_interval("# source: somewhere"), None);
    }

    /// `macmon pipe | jq` prints each sample over many lines (the M4 Air capture): read
    /// as one sample, where each line was refused (`line 1: not JSON`).
    #[test]
    fn pretty_printed_samples_are_read() {
        let rec = parse_recording(M4_AIR).unwrap();
        assert_eq!(rec.samples.len(), 1);
        assert_eq!(rec.machine.chip.as_deref(), Some("Apple M4"));
        let two = format!("{M4_AIR}\n{M4_AIR}");
        assert_eq!(parse_recording(&two).unwrap().samples.len(), 2);
        // An error inside a pretty sample names the line it is on.
        let bad = M4_AIR.replace("\"ane_power\": 0.0,", "\"ane_power\": ,");
        let err = parse_recording(&bad).unwrap_err().to_string();
        let line = M4_AIR
            .lines()
            .position(|l| l.contains("ane_power"))
            .unwrap()
            + 1;
        assert!(err.starts_with(&format!("line {line}:")), "{err}");
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
