//! The series table the writers fill: the index from a StatsD key to a series id,
//! each series' identity ([`SeriesMeta`]) and the interval's accumulator ([`Pending`])
//! that the collector swaps out; and the writer side of [`Trading`] (StatsD packets,
//! HTTP latencies) that parses, maps and counts into it under one short lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::hist::Hist;
use super::latency::{self, Classic};
use super::line::{self, Line, MetricType, Outcome, ParseError};
use super::{RecordError, Trading};

/// Most distinct members one set keeps per interval, so a set cannot grow memory
/// without bound either.
pub(crate) const SET_LIMIT: usize = 10_000;

/// With mappings, how many names as sent the index remembers per series slot; beyond
/// that a new name is mapped on every line instead of remembered.
const ALIASES_PER_SERIES: usize = 4;

fn type_char(kind: MetricType) -> char {
    match kind {
        MetricType::Timer => 't',
        MetricType::Counter => 'c',
        MetricType::Gauge => 'g',
        MetricType::Set => 's',
    }
}

/// The StatsD type names used in the `type` label.
pub(super) const TYPES: [(MetricType, &str); 4] = [
    (MetricType::Timer, "timer"),
    (MetricType::Counter, "counter"),
    (MetricType::Gauge, "gauge"),
    (MetricType::Set, "set"),
];

/// Identity of one series.
#[derive(Debug)]
pub(crate) struct SeriesMeta {
    pub kind: MetricType,
    pub name: String,
    /// Values of the allowed tags it carried (empty ones left out).
    pub labels: Vec<(String, String)>,
}

/// One interval's data of one series, as writers leave it for the collector.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) hist: Option<Hist>,
    pub(super) classic: Classic,
    pub(super) events: f64,
    pub(super) set: HashSet<u64>,
    /// The series received something (a gauge included) this interval: it is not
    /// stale under `trading.series_ttl`.
    pub(super) touched: bool,
}

impl Pending {
    /// Empties the accumulator after the collector has folded it. A series that had
    /// data keeps its buffers for the next interval (a busy series allocates nothing
    /// per interval); one that had none frees them, so a series gone quiet holds no
    /// histogram or set in either of the two accumulators that take turns.
    pub(super) fn clear(&mut self) {
        match &mut self.hist {
            Some(h) if !h.is_empty() => h.reset(),
            _ => self.hist = None,
        }
        if self.set.is_empty() {
            self.set = HashSet::new();
        } else {
            self.set.clear();
        }
        self.classic = Classic::default();
        self.events = 0.0;
        self.touched = false;
    }
}

/// The series index hashes every StatsD line's key, so it uses foldhash instead of
/// SipHash: about twice as fast on short keys. Its seed is random per process (and
/// per map), so keys do not collide the same way on every host; and the table never
/// holds more than `trading.max_series` keys, which bounds the cost of deliberate
/// collisions.
type FastHash = foldhash::fast::RandomState;

#[derive(Default)]
pub(super) struct Ingest {
    /// Key as sent (type, name, the values of the label keys' tags) -> series id.
    pub(super) index: HashMap<Box<str>, usize, FastHash>,
    /// With mappings only: key as mapped -> series id, so names that map to one
    /// series share it (and each gets an entry in `index`, up to [`ALIASES_PER_SERIES`]
    /// times `max_series` of them).
    pub(super) mapped: HashMap<Box<str>, usize, FastHash>,
    pub(super) meta: Vec<Arc<SeriesMeta>>,
    pub(super) gauges: Vec<Option<f64>>,
    pub(super) pending: Vec<Pending>,
    /// When each series was last updated, as `clock` read then: the least recently
    /// updated is evicted when the table is full and a new series comes.
    pub(super) stamps: Vec<u64>,
    /// Ticks once per line applied.
    pub(super) clock: u64,
}

/// Counts a writer gathers while holding the lock and adds to the instruments after.
pub struct Batch {
    key: String,
    lines: u64,
    errors: [u64; ParseError::ALL.len()],
    dropped_cardinality: u64,
    dropped_set: u64,
    evicted: u64,
}

impl Trading {
    /// Scratch space for one writer.
    pub fn batch(&self) -> Batch {
        Batch {
            key: String::with_capacity(256),
            lines: 0,
            errors: [0; ParseError::ALL.len()],
            dropped_cardinality: 0,
            dropped_set: 0,
            evicted: 0,
        }
    }

    /// Parses and applies one StatsD datagram.
    pub fn ingest_packet(&self, packet: &[u8], batch: &mut Batch) {
        {
            let mut g = self.ingest.lock().expect("trading lock");
            line::parse_packet(packet, |parsed| match parsed {
                Ok(line) => {
                    batch.lines += 1;
                    self.apply(&mut g, &line, batch);
                }
                Err(e) => batch.errors[e.index()] += 1,
            });
        }
        self.instruments.packets.inc();
        self.flush(batch);
    }

    /// Records one successful operation's latency from HTTP ingest.
    pub fn record_latency(
        &self,
        operation: &str,
        labels: &BTreeMap<String, String>,
        nanos: u64,
    ) -> Result<(), RecordError> {
        self.record_operation(operation, labels, nanos, Outcome::Success)
    }

    /// Records one operation's latency and outcome, from HTTP ingest or an ended
    /// measurement.
    pub fn record_operation(
        &self,
        operation: &str,
        labels: &BTreeMap<String, String>,
        nanos: u64,
        outcome: Outcome,
    ) -> Result<(), RecordError> {
        if !line::valid_name(operation) {
            return Err(RecordError::Operation);
        }
        let mut batch = self.batch();
        let mut g = self.ingest.lock().expect("trading lock");
        let tags = labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let Some(id) = self.series(&mut g, MetricType::Timer, operation, tags, &mut batch) else {
            drop(g);
            self.flush(&mut batch);
            return Err(RecordError::Cardinality(self.config.max_series));
        };
        let p = &mut g.pending[id];
        latency::record(p.hist.get_or_insert_with(latency::histogram), nanos, 1);
        p.classic.observe(nanos as f64 / 1e9, 1);
        p.classic.errors += u64::from(outcome == Outcome::Error);
        Ok(())
    }

    fn flush(&self, b: &mut Batch) {
        let i = &self.instruments;
        if b.lines > 0 {
            i.lines.inc_by(std::mem::take(&mut b.lines));
        }
        for (n, c) in b.errors.iter_mut().zip(&i.parse_errors) {
            if *n > 0 {
                c.inc_by(std::mem::take(n));
            }
        }
        if b.dropped_cardinality > 0 {
            i.dropped_cardinality
                .inc_by(std::mem::take(&mut b.dropped_cardinality));
        }
        if b.dropped_set > 0 {
            i.dropped_set.inc_by(std::mem::take(&mut b.dropped_set));
        }
        if b.evicted > 0 {
            i.evicted.inc_by(std::mem::take(&mut b.evicted));
        }
    }

    /// The id of a series, creating it when there is room; `None` (and a count) when
    /// the cardinality guard drops it. A name seen before is one hash lookup; a new one
    /// goes through the mapping rules once.
    fn series<'t>(
        &self,
        g: &mut Ingest,
        kind: MetricType,
        name: &str,
        tags: impl Iterator<Item = (&'t str, &'t str)> + Clone,
        batch: &mut Batch,
    ) -> Option<usize> {
        let tag = |k: &str| tags.clone().find(|(t, _)| *t == k).map(|(_, v)| v);
        let key = &mut batch.key;
        key.clear();
        key.push(type_char(kind));
        key.push_str(name);
        for k in &self.label_keys {
            key.push('\u{1f}');
            key.push_str(tag(k).unwrap_or(""));
        }
        let id = match g.index.get(key.as_str()) {
            Some(&id) => id,
            None => self.new_series(g, kind, name, &tag, batch)?,
        };
        if g.pending.len() <= id {
            g.pending.resize_with(id + 1, Pending::default);
        }
        if g.stamps.len() <= id {
            g.stamps.resize(id + 1, 0);
        }
        g.pending[id].touched = true;
        g.clock += 1;
        g.stamps[id] = g.clock;
        Some(id)
    }

    /// The series of a key `index` does not know yet (`batch.key`): mapped, then found
    /// among the mapped keys or created.
    fn new_series<'t>(
        &self,
        g: &mut Ingest,
        kind: MetricType,
        name: &str,
        tag: &dyn Fn(&str) -> Option<&'t str>,
        batch: &mut Batch,
    ) -> Option<usize> {
        let (name, set) = self
            .mapper
            .map(kind, name)
            .unwrap_or_else(|| (name.to_string(), Vec::new()));
        let labels: Vec<(String, String)> = self
            .label_keys
            .iter()
            .filter_map(|k| {
                let v = set
                    .iter()
                    .find(|(s, _)| s == k)
                    .map(|(_, v)| v.as_str())
                    .or_else(|| tag(k))?;
                (!v.is_empty()).then(|| (k.clone(), v.to_string()))
            })
            .collect();
        let mapped_key = (!self.mapper.is_empty()).then(|| {
            let mut k = String::with_capacity(batch.key.len() + 16);
            k.push(type_char(kind));
            k.push_str(&name);
            for key in &self.label_keys {
                k.push('\u{1f}');
                if let Some((_, v)) = labels.iter().find(|(l, _)| l == key) {
                    k.push_str(v);
                }
            }
            k
        });
        if let Some(&id) = mapped_key.as_ref().and_then(|k| g.mapped.get(k.as_str())) {
            if g.index.len() < ALIASES_PER_SERIES * self.config.max_series {
                g.index.insert(batch.key.as_str().into(), id);
            }
            return Some(id);
        }
        if g.meta.len() >= self.config.max_series {
            // Full: the least recently updated series makes room, so a stranger's
            // flood of names cannot lock a new operation out (issue 25).
            let Some(id) = evict(g) else {
                batch.dropped_cardinality += 1;
                return None;
            };
            batch.evicted += 1;
            g.meta[id] = Arc::new(SeriesMeta { kind, name, labels });
            g.index.insert(batch.key.as_str().into(), id);
            if let Some(k) = mapped_key {
                g.mapped.insert(k.into(), id);
            }
            return Some(id);
        }
        let id = g.meta.len();
        g.meta.push(Arc::new(SeriesMeta { kind, name, labels }));
        g.gauges.push(None);
        g.index.insert(batch.key.as_str().into(), id);
        if let Some(k) = mapped_key {
            g.mapped.insert(k.into(), id);
        }
        Some(id)
    }

    fn apply(&self, g: &mut Ingest, line: &Line<'_>, batch: &mut Batch) {
        let Some(id) = self.series(g, line.kind, line.name, line.tag_pairs(), batch) else {
            return;
        };
        match line.kind {
            MetricType::Timer => {
                // A sampled observation stands for 1/rate of them.
                let n = if line.sample_rate == 1.0 {
                    1
                } else {
                    (1.0 / line.sample_rate).round().max(1.0) as u64
                };
                let p = &mut g.pending[id];
                let h = p.hist.get_or_insert_with(latency::histogram);
                for ms in line.values() {
                    // Non-negative by parsing, so adding 0.5 rounds.
                    latency::record(h, (ms * 1e6 + 0.5) as u64, n);
                    p.classic.observe(ms / 1e3, n);
                    if line.outcome == Outcome::Error {
                        p.classic.errors += n;
                    }
                }
            }
            MetricType::Counter => {
                g.pending[id].events += line.value / line.sample_rate;
            }
            MetricType::Gauge => {
                let v = line.value;
                let slot = &mut g.gauges[id];
                *slot = Some(if line.delta {
                    slot.unwrap_or(0.0) + v
                } else {
                    v
                });
            }
            MetricType::Set => {
                let set = &mut g.pending[id].set;
                for member in line.set_members() {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    member.hash(&mut h);
                    if set.len() < SET_LIMIT {
                        set.insert(h.finish());
                    } else if !set.contains(&h.finish()) {
                        batch.dropped_set += 1;
                    }
                }
            }
        }
    }
}

/// Empties the least recently updated series' slot for a new series: its keys leave
/// the indexes and its data is dropped (the collector sees the new identity and starts
/// the slot afresh). `None` when there is no series. One pass over the table and its
/// indexes, only when the table is full.
fn evict(g: &mut Ingest) -> Option<usize> {
    let id = (0..g.meta.len()).min_by_key(|&id| g.stamps.get(id).copied().unwrap_or(0))?;
    g.index.retain(|_, v| *v != id);
    g.mapped.retain(|_, v| *v != id);
    g.gauges[id] = None;
    if let Some(p) = g.pending.get_mut(id) {
        *p = Pending::default();
    }
    Some(id)
}
