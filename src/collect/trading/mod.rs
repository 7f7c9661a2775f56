//! Trading latency and throughput.
//!
//! Three ways in, one store: the StatsD listener ([`statsd`]), the HTTP batch ingest
//! and the start/end measurement API ([`ingest`], routes in `api::trading`) all write
//! into [`Trading`], a shared handle. Writers only touch a per-interval accumulator
//! under a short lock. The [`TradingCollector`] swaps that accumulator out once per
//! `trading.interval`, folds it into the sliding windows ([`latency`]), computes
//! quantiles and the weighted score ([`score`]) and publishes families; the JSON API
//! reads the [`View`] it leaves behind.

pub mod baseline;
pub mod hist;
pub mod ingest;
pub mod latency;
pub mod mapping;
pub mod score;
pub mod statsd;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use prometheus::{IntCounter, IntCounterVec, Opts};
use serde::Serialize;

use self::hist::Hist;
use self::latency::{Classic, CountWindow, LatencyWindow, QUANTILES};
use self::statsd::{Line, MetricType, ParseError};
use super::{BlockingCollector, CollectError};
use crate::config::{Dur, TradingConfig};
use crate::model::{MetricDef, def};
use crate::store::{Family, Kind};

/// Every family this module exports.
pub const TRADING_LATENCY_QUANTILE_SECONDS: MetricDef = def(
    "m4watch_trading_latency_quantile_seconds",
    Kind::Summary,
    &["operation", "window", "quantile"],
    "Latency quantiles (0.5, 0.95, 0.99, 0.999) of an operation over a sliding window, in seconds, from an HdrHistogram (within 1%), with the window's exact sum and count; absent when the window saw no observation.",
);

pub const TRADING_LATENCY_SECONDS: MetricDef = def(
    "m4watch_trading_latency_seconds",
    Kind::Histogram,
    &["operation"],
    "Latency of an operation since m4watch started, in seconds, as a classic histogram (25 µs to 10 s buckets) that aggregates across hosts.",
);

pub const TRADING_LATENCY_BASELINE_SECONDS: MetricDef = def(
    "m4watch_trading_latency_baseline_seconds",
    Kind::Gauge,
    &["operation", "quantile"],
    "Baseline latency of an operation (quantile 0.5 or 0.95), in seconds: the median of its per-period quantiles over the latest history.baseline_periods complete periods; absent until one period is complete.",
);

pub const TRADING_EVENTS_TOTAL: MetricDef = def(
    "m4watch_trading_events_total",
    Kind::Counter,
    &["stream"],
    "Events counted by a StatsD counter stream since m4watch started, scaled up by the sample rate.",
);

pub const TRADING_THROUGHPUT_PER_SECOND: MetricDef = def(
    "m4watch_trading_throughput_per_second",
    Kind::Gauge,
    &["stream", "window"],
    "Events per second of a StatsD counter stream over a sliding window.",
);

pub const TRADING_VALUE: MetricDef = def(
    "m4watch_trading_value",
    Kind::Gauge,
    &["name"],
    "Last value of a StatsD gauge, in the unit the sender uses.",
);

pub const TRADING_SET_UNIQUE_VALUES: MetricDef = def(
    "m4watch_trading_set_unique_values",
    Kind::Gauge,
    &["name"],
    "Distinct values a StatsD set received during the last trading interval.",
);

pub const TRADING_SERIES: MetricDef = def(
    "m4watch_trading_series",
    Kind::Gauge,
    &["type"],
    "Distinct trading series tracked, by StatsD type (timer, counter, gauge, set); together at most trading.max_series.",
);

pub const TRADING_SERIES_EXPIRED_TOTAL: MetricDef = def(
    "m4watch_trading_series_expired_total",
    Kind::Counter,
    &[],
    "Trading series removed after receiving nothing for trading.series_ttl (their slots are free again under trading.max_series).",
);

pub const TRADING_MEASUREMENTS_TOTAL: MetricDef = def(
    "m4watch_trading_measurements_total",
    Kind::Counter,
    &["outcome"],
    "Latency measurements of the start/end API by outcome: completed, or abandoned when never ended within trading.measurement_ttl.",
);

pub const STATSD_PACKETS_TOTAL: MetricDef = def(
    "m4watch_statsd_packets_total",
    Kind::Counter,
    &[],
    "UDP datagrams the StatsD listener received.",
);

pub const STATSD_LINES_TOTAL: MetricDef = def(
    "m4watch_statsd_lines_total",
    Kind::Counter,
    &[],
    "StatsD lines parsed successfully (dropped ones included, malformed ones not).",
);

pub const STATSD_PARSE_ERRORS_TOTAL: MetricDef = def(
    "m4watch_statsd_parse_errors_total",
    Kind::Counter,
    &["reason"],
    "Malformed StatsD lines dropped, by reason (encoding, format, name, value, type, sample_rate, tags, unsupported).",
);

pub const STATSD_DROPPED_TOTAL: MetricDef = def(
    "m4watch_statsd_dropped_total",
    Kind::Counter,
    &["reason"],
    "Well-formed trading samples dropped: cardinality (a new series beyond trading.max_series) or set_limit (a set already holding its most distinct values this interval).",
);

pub const STATSD_KERNEL_DROPS_TOTAL: MetricDef = def(
    "m4watch_statsd_kernel_drops_total",
    Kind::Counter,
    &[],
    "UDP datagrams the kernel dropped for the StatsD listener's socket because its receive buffer was full (SO_RXQ_OVFL, counted as the next datagram arrives); absent where the platform does not report it (macOS).",
);

pub const TRADING_LATENCY_OBJECTIVE_SECONDS: MetricDef = def(
    "m4watch_trading_latency_objective_seconds",
    Kind::Gauge,
    &["operation", "objective"],
    "Latency objectives of the score's operations from trading.score: target (scores 1) and alert (scores 0.5; the shipped latency rules fire above it).",
);

pub const PERFORMANCE_SCORE: MetricDef = def(
    "m4watch_performance_score",
    Kind::Gauge,
    &[],
    "Weighted performance score (0..100) over the components with data; absent when less than trading.score.min_coverage of the weight has data.",
);

pub const PERFORMANCE_COMPONENT_SCORE: MetricDef = def(
    "m4watch_performance_component_score",
    Kind::Gauge,
    &["component"],
    "Score (0..1) of one performance component (latency, risk, ml, throughput); absent without data.",
);

pub const PERFORMANCE_COMPONENT_WEIGHT: MetricDef = def(
    "m4watch_performance_component_weight",
    Kind::Gauge,
    &["component"],
    "Weight (0..1) a component had in the last score, renormalised over the components with data.",
);

pub const PERFORMANCE_SCORE_COVERAGE_RATIO: MetricDef = def(
    "m4watch_performance_score_coverage_ratio",
    Kind::Gauge,
    &[],
    "Share (0..1) of the configured score weight whose component had data.",
);

pub const METRICS: &[MetricDef] = &[
    TRADING_LATENCY_QUANTILE_SECONDS,
    TRADING_LATENCY_OBJECTIVE_SECONDS,
    TRADING_LATENCY_SECONDS,
    TRADING_LATENCY_BASELINE_SECONDS,
    TRADING_EVENTS_TOTAL,
    TRADING_THROUGHPUT_PER_SECOND,
    TRADING_VALUE,
    TRADING_SET_UNIQUE_VALUES,
    TRADING_SERIES,
    TRADING_SERIES_EXPIRED_TOTAL,
    TRADING_MEASUREMENTS_TOTAL,
    STATSD_PACKETS_TOTAL,
    STATSD_LINES_TOTAL,
    STATSD_PARSE_ERRORS_TOTAL,
    STATSD_DROPPED_TOTAL,
    STATSD_KERNEL_DROPS_TOTAL,
    PERFORMANCE_SCORE,
    PERFORMANCE_COMPONENT_SCORE,
    PERFORMANCE_COMPONENT_WEIGHT,
    PERFORMANCE_SCORE_COVERAGE_RATIO,
];

/// The families with a series per StatsD series: their cardinality is the senders'
/// (up to `trading.max_series` names), so the rule engine's sample ring keeps only
/// the series a rule selects.
pub const PER_SERIES: &[MetricDef] = &[
    TRADING_LATENCY_QUANTILE_SECONDS,
    TRADING_LATENCY_SECONDS,
    TRADING_EVENTS_TOTAL,
    TRADING_THROUGHPUT_PER_SECOND,
    TRADING_VALUE,
    TRADING_SET_UNIQUE_VALUES,
];

/// Most distinct members one set keeps per interval, so a set cannot grow memory
/// without bound either.
pub const SET_LIMIT: usize = 10_000;

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
const TYPES: [(MetricType, &str); 4] = [
    (MetricType::Timer, "timer"),
    (MetricType::Counter, "counter"),
    (MetricType::Gauge, "gauge"),
    (MetricType::Set, "set"),
];

/// Identity of one series.
#[derive(Debug)]
pub struct SeriesMeta {
    pub kind: MetricType,
    pub name: String,
    /// Values of the allowed tags it carried (empty ones left out).
    pub labels: Vec<(String, String)>,
}

/// One interval's data of one series, as writers leave it for the collector.
#[derive(Default)]
struct Pending {
    hist: Option<Hist>,
    classic: Classic,
    events: f64,
    set: HashSet<u64>,
    /// The series received something (a gauge included) this interval: it is not
    /// stale under `trading.series_ttl`.
    touched: bool,
}

impl Pending {
    /// Empties the accumulator after the collector has folded it. A series that had
    /// data keeps its buffers for the next interval (a busy series allocates nothing
    /// per interval); one that had none frees them, so a series gone quiet holds no
    /// histogram or set in either of the two accumulators that take turns.
    fn clear(&mut self) {
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

/// The series index hashes every StatsD line's key, so it uses a multiply-rotate hash
/// (the Fx hash of rustc) instead of SipHash: about twice as fast on short keys. A
/// per-process seed keeps keys from colliding the same way on every host; and the
/// table never holds more than `trading.max_series` keys, which bounds the cost of
/// deliberate collisions.
#[derive(Clone)]
struct FastHash(u64);

impl Default for FastHash {
    fn default() -> Self {
        use std::hash::BuildHasher;
        FastHash(std::collections::hash_map::RandomState::new().hash_one(0x006d_3477_6174_6368_u64))
    }
}

impl std::hash::BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(self.0)
    }
}

struct FxHasher(u64);

impl FxHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, b: u8) {
        self.mix(u64::from(b));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
struct Ingest {
    /// Key as sent (type, name, the values of the label keys' tags) -> series id.
    index: HashMap<Box<str>, usize, FastHash>,
    /// With mappings only: key as mapped -> series id, so names that map to one
    /// series share it (and each gets an entry in `index`, up to [`ALIASES_PER_SERIES`]
    /// times `max_series` of them).
    mapped: HashMap<Box<str>, usize, FastHash>,
    meta: Vec<Arc<SeriesMeta>>,
    gauges: Vec<Option<f64>>,
    pending: Vec<Pending>,
}

/// Counts a writer gathers while holding the lock and adds to the instruments after.
pub struct Batch {
    key: String,
    lines: u64,
    errors: [u64; ParseError::ALL.len()],
    dropped_cardinality: u64,
    dropped_set: u64,
}

struct Instruments {
    packets: IntCounter,
    lines: IntCounter,
    parse_errors: Vec<IntCounter>,
    dropped_cardinality: IntCounter,
    dropped_set: IntCounter,
    /// Only where the kernel reports drops (Linux).
    kernel_drops: Option<IntCounter>,
    completed: IntCounter,
    abandoned: IntCounter,
    expired: IntCounter,
}

impl Instruments {
    fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let counter = |d: &MetricDef| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(d.name, d.help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let vec = |d: &MetricDef, label: &str| -> Result<IntCounterVec, prometheus::Error> {
            let v = IntCounterVec::new(Opts::new(d.name, d.help), &[label])?;
            registry.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let errors = vec(&STATSD_PARSE_ERRORS_TOTAL, "reason")?;
        let dropped = vec(&STATSD_DROPPED_TOTAL, "reason")?;
        let measured = vec(&TRADING_MEASUREMENTS_TOTAL, "outcome")?;
        // with_label_values pre-creates every series at 0.
        Ok(Instruments {
            packets: counter(&STATSD_PACKETS_TOTAL)?,
            lines: counter(&STATSD_LINES_TOTAL)?,
            parse_errors: ParseError::ALL
                .iter()
                .map(|e| errors.with_label_values(&[e.reason()]))
                .collect(),
            dropped_cardinality: dropped.with_label_values(&["cardinality"]),
            dropped_set: dropped.with_label_values(&["set_limit"]),
            kernel_drops: if cfg!(target_os = "linux") {
                Some(counter(&STATSD_KERNEL_DROPS_TOTAL)?)
            } else {
                None
            },
            completed: measured.with_label_values(&["completed"]),
            abandoned: measured.with_label_values(&["abandoned"]),
            expired: counter(&TRADING_SERIES_EXPIRED_TOTAL)?,
        })
    }
}

/// Why an HTTP latency sample was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("operation must be 1 to 200 characters without control characters")]
    Operation,
    #[error("trading.max_series ({0}) reached: new series are dropped")]
    Cardinality(usize),
}

/// The shared trading store: writers on one side, the collector on the other.
pub struct Trading {
    config: TradingConfig,
    /// `config.label_keys()`: the tags and mapping labels a series keeps, in order.
    label_keys: Vec<String>,
    mapper: mapping::Mapper,
    ingest: Mutex<Ingest>,
    instruments: Instruments,
    view: RwLock<Arc<View>>,
    measurements: ingest::Measurements,
    statsd_addr: OnceLock<SocketAddr>,
}

impl Trading {
    /// A store for `config` whose counters live in `registry`.
    pub fn new(
        config: &TradingConfig,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Trading>, prometheus::Error> {
        let mapper = mapping::Mapper::new(&config.mappings)
            .map_err(|e| prometheus::Error::Msg(format!("trading.mappings: {e}")))?;
        Ok(Arc::new(Trading {
            config: config.clone(),
            label_keys: config.label_keys(),
            mapper,
            ingest: Mutex::new(Ingest::default()),
            instruments: Instruments::register(registry)?,
            view: RwLock::new(Arc::new(View::default())),
            measurements: ingest::Measurements::new(
                config.measurement_ttl.get(),
                config.max_open_measurements,
            ),
            statsd_addr: OnceLock::new(),
        }))
    }

    pub fn config(&self) -> &TradingConfig {
        &self.config
    }

    /// Where the StatsD listener is bound, once it is.
    pub fn statsd_addr(&self) -> Option<SocketAddr> {
        self.statsd_addr.get().copied()
    }

    pub fn set_statsd_addr(&self, addr: SocketAddr) {
        let _ = self.statsd_addr.set(addr);
    }

    /// The open start/end measurements.
    pub fn measurements(&self) -> &ingest::Measurements {
        &self.measurements
    }

    /// The view the collector computed last.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().expect("view lock"))
    }

    /// Scratch space for one writer.
    pub fn batch(&self) -> Batch {
        Batch {
            key: String::with_capacity(256),
            lines: 0,
            errors: [0; ParseError::ALL.len()],
            dropped_cardinality: 0,
            dropped_set: 0,
        }
    }

    /// Parses and applies one StatsD datagram.
    pub fn ingest_packet(&self, packet: &[u8], batch: &mut Batch) {
        {
            let mut g = self.ingest.lock().expect("trading lock");
            statsd::parse_packet(packet, |parsed| match parsed {
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

    /// Counts `n` more datagrams the kernel dropped for the StatsD socket.
    pub fn kernel_drops(&self, n: u64) {
        if let (Some(c), true) = (&self.instruments.kernel_drops, n > 0) {
            c.inc_by(n);
        }
    }

    /// Records one latency from HTTP ingest or an ended measurement.
    pub fn record_latency(
        &self,
        operation: &str,
        labels: &BTreeMap<String, String>,
        nanos: u64,
    ) -> Result<(), RecordError> {
        if !statsd::valid_name(operation) {
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
        Ok(())
    }

    /// Ends measurement `id`, records it and returns it.
    pub fn end_measurement(&self, id: &str) -> Option<ingest::Ended> {
        let ended = self.measurements.end(id, Instant::now())?;
        self.instruments.completed.inc();
        let nanos = u64::try_from(ended.latency.as_nanos()).unwrap_or(u64::MAX);
        // A full series table drops the sample and counts it; the caller still gets
        // its latency.
        let _ = self.record_latency(&ended.operation, &ended.labels, nanos);
        Some(ended)
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
        g.pending[id].touched = true;
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
            batch.dropped_cardinality += 1;
            return None;
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

/// Latency statistics of one window, in milliseconds (the unit of the original API).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LatencyStats {
    pub count: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencyStats {
    fn of(h: &Hist, per_second: f64) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencyStats {
            count: h.len(),
            per_second,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            min_ms: ms(h.min()),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
        }
    }
}

/// One operation (timer series) in the JSON view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OperationView {
    pub operation: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Observations since m4watch started.
    pub count: u64,
    /// Per window name; a window without observations is absent.
    pub windows: BTreeMap<String, LatencyStats>,
}

/// One counter stream in the JSON view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    pub stream: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub events_total: f64,
    /// Events per second, per window name.
    pub throughput_per_second: BTreeMap<String, f64>,
}

/// A gauge or set in the JSON view.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ValueView {
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What the collector computed last; the JSON API serves it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct View {
    /// Unix time of the computation; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_unix: Option<f64>,
    pub windows: Vec<String>,
    pub operations: Vec<OperationView>,
    pub streams: Vec<StreamView>,
    pub gauges: Vec<ValueView>,
    pub sets: Vec<ValueView>,
    pub series: usize,
    pub max_series: usize,
    pub score: score::Score,
}

impl Default for View {
    fn default() -> Self {
        View {
            updated_unix: None,
            windows: Vec::new(),
            operations: Vec::new(),
            streams: Vec::new(),
            gauges: Vec::new(),
            sets: Vec::new(),
            series: 0,
            max_series: 0,
            score: score::compute(&Default::default(), &Default::default()),
        }
    }
}

/// Window name as configured (`1m`, `5m`).
pub fn window_name(d: Dur) -> String {
    d.to_string()
}

enum State {
    Timer {
        windows: Vec<LatencyWindow>,
        classic: Classic,
    },
    Counter {
        windows: Vec<CountWindow>,
        total: f64,
    },
    Gauge,
    Set {
        last: usize,
    },
}

/// Turns the trading store into families, windows and the score, once per interval.
pub struct TradingCollector {
    trading: Arc<Trading>,
    /// The accumulator swapped with the writers' one each run, reused to avoid
    /// reallocating histograms.
    spare: Vec<Pending>,
    meta: Vec<Arc<SeriesMeta>>,
    states: Vec<State>,
    /// When each series last received something (for `trading.series_ttl`).
    last_seen: Vec<Instant>,
    window_names: Vec<String>,
    last_run: Option<Instant>,
    baselines: Option<baseline::Baselines>,
}

impl TradingCollector {
    /// Also tracks per-period baselines (see [`baseline`]).
    pub fn with_baselines(mut self, b: baseline::Baselines) -> Self {
        self.baselines = Some(b);
        self
    }

    pub fn new(trading: Arc<Trading>) -> Self {
        let window_names = trading
            .config
            .windows
            .iter()
            .map(|w| window_name(*w))
            .collect();
        TradingCollector {
            trading,
            spare: Vec::new(),
            meta: Vec::new(),
            states: Vec::new(),
            last_seen: Vec::new(),
            window_names,
            last_run: None,
            baselines: None,
        }
    }

    /// One run at `now`: fold, compute, publish the view, return the families.
    pub fn run(&mut self, now: Instant) -> Vec<Family> {
        let mut gauges = {
            let mut g = self.trading.ingest.lock().expect("trading lock");
            std::mem::swap(&mut g.pending, &mut self.spare);
            self.meta.extend(g.meta[self.meta.len()..].iter().cloned());
            g.gauges.clone()
        };
        let widths: Vec<_> = self
            .trading
            .config
            .windows
            .iter()
            .map(|w| w.get())
            .collect();
        // A new series' first data arrived during the interval that ends now, so its
        // windows start when that interval began (else its first rate would be 0/0).
        let began = self.last_run.unwrap_or_else(|| {
            now.checked_sub(self.trading.config.interval.get())
                .unwrap_or(now)
        });
        self.last_run = Some(now);
        for m in &self.meta[self.states.len()..] {
            self.states.push(match m.kind {
                MetricType::Timer => State::Timer {
                    windows: widths
                        .iter()
                        .map(|w| LatencyWindow::new(*w, began))
                        .collect(),
                    classic: Classic::default(),
                },
                MetricType::Counter => State::Counter {
                    windows: widths.iter().map(|w| CountWindow::new(*w, began)).collect(),
                    total: 0.0,
                },
                MetricType::Gauge => State::Gauge,
                MetricType::Set => State::Set { last: 0 },
            });
        }
        self.last_seen.resize(self.states.len(), now);
        for (seen, p) in self.last_seen.iter_mut().zip(&self.spare) {
            if p.touched {
                *seen = now;
            }
        }
        for (id, state) in self.states.iter_mut().enumerate() {
            let p = self.spare.get_mut(id);
            match state {
                State::Timer { windows, classic } => {
                    for w in windows.iter_mut() {
                        match p.as_ref().and_then(|p| p.hist.as_ref()) {
                            Some(h) => {
                                w.add(h, p.as_ref().map_or(0.0, |p| p.classic.sum_seconds), now)
                            }
                            None => w.advance(now),
                        }
                    }
                    if let Some(p) = &p {
                        classic.add(&p.classic);
                    }
                }
                State::Counter { windows, total } => {
                    let n = p.as_ref().map_or(0.0, |p| p.events);
                    *total += n;
                    for w in windows.iter_mut() {
                        w.add(n, now);
                    }
                }
                State::Gauge => {}
                State::Set { last } => *last = p.as_ref().map_or(0, |p| p.set.len()),
            }
        }
        if let Some(b) = &mut self.baselines {
            let now_ms = crate::clock::unix_now_ms();
            b.roll(now_ms);
            for (m, p) in self.meta.iter().zip(&self.spare) {
                if let (MetricType::Timer, Some(h)) = (m.kind, &p.hist) {
                    b.add(now_ms, &m.name, &m.labels, h);
                }
            }
        }
        for p in &mut self.spare {
            p.clear();
        }
        self.expire(now, &mut gauges);
        let abandoned = self.trading.measurements.expire(now);
        if abandoned > 0 {
            self.trading.instruments.abandoned.inc_by(abandoned as u64);
        }
        let view = self.view(now, &gauges);
        let families = self.families(&view, now);
        *self.trading.view.write().expect("view lock") = Arc::new(view);
        families
    }

    /// Removes the series that received nothing for `trading.series_ttl`, here and in
    /// the writers' index, freeing their slots. Ids are positions, so the survivors
    /// move down and both indexes are renumbered; that costs one pass over the series,
    /// and only in a run that expires something.
    /// `gauges` is the run's copy of the gauge values, renumbered alike.
    fn expire(&mut self, now: Instant, gauges: &mut Vec<Option<f64>>) {
        let ttl = self.trading.config.series_ttl.get();
        if ttl.is_zero()
            || !self
                .last_seen
                .iter()
                .any(|t| now.saturating_duration_since(*t) >= ttl)
        {
            return;
        }
        let mut guard = self.trading.ingest.lock().expect("trading lock");
        let g = &mut *guard;
        // Series created since this run began are not in `last_seen` yet: kept. So is
        // one a writer touched since the swap.
        let keep: Vec<bool> = (0..g.meta.len())
            .map(|id| {
                let touched = g.pending.get(id).is_some_and(|p| p.touched);
                touched
                    || self
                        .last_seen
                        .get(id)
                        .is_none_or(|t| now.saturating_duration_since(*t) < ttl)
            })
            .collect();
        let mut renumber = vec![usize::MAX; keep.len()];
        let mut next = 0;
        for (id, k) in keep.iter().enumerate() {
            if *k {
                renumber[id] = next;
                next += 1;
            }
        }
        let expired = keep.len() - next;
        fn retain<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep.get(i - 1).copied().unwrap_or(true)
            });
        }
        retain(&mut g.meta, &keep);
        retain(&mut g.gauges, &keep);
        retain(&mut g.pending, &keep);
        for index in [&mut g.index, &mut g.mapped] {
            index.retain(|_, id| keep[*id]);
            for id in index.values_mut() {
                *id = renumber[*id];
            }
        }
        drop(guard);
        retain(gauges, &keep);
        retain(&mut self.meta, &keep);
        retain(&mut self.states, &keep);
        retain(&mut self.last_seen, &keep);
        retain(&mut self.spare, &keep);
        self.trading.instruments.expired.inc_by(expired as u64);
    }

    fn view(&self, now: Instant, gauges: &[Option<f64>]) -> View {
        let mut view = View {
            updated_unix: Some(crate::clock::unix_now()),
            windows: self.window_names.clone(),
            series: self.meta.len(),
            max_series: self.trading.config.max_series,
            ..View::default()
        };
        for (id, (m, state)) in self.meta.iter().zip(&self.states).enumerate() {
            let labels: BTreeMap<String, String> = m.labels.iter().cloned().collect();
            match state {
                State::Timer { windows, classic } => view.operations.push(OperationView {
                    operation: m.name.clone(),
                    labels,
                    count: classic.count(),
                    windows: self
                        .window_names
                        .iter()
                        .zip(windows)
                        .filter_map(|(n, w)| {
                            w.histogram()
                                .map(|h| (n.clone(), LatencyStats::of(h, w.rate(now))))
                        })
                        .collect(),
                }),
                State::Counter { windows, total } => view.streams.push(StreamView {
                    stream: m.name.clone(),
                    labels,
                    events_total: *total,
                    throughput_per_second: self
                        .window_names
                        .iter()
                        .zip(windows)
                        .map(|(n, w)| (n.clone(), w.rate(now)))
                        .collect(),
                }),
                State::Gauge => {
                    if let Some(v) = gauges.get(id).copied().flatten() {
                        view.gauges.push(ValueView {
                            name: m.name.clone(),
                            labels,
                            value: v,
                        });
                    }
                }
                State::Set { last } => view.sets.push(ValueView {
                    name: m.name.clone(),
                    labels,
                    value: *last as f64,
                }),
            }
        }
        view.score = score::compute(&self.trading.config.score, &self.observed(now));
        view
    }

    /// Window `w` of every timer series named `op`, whatever its labels.
    fn timer_windows<'s>(
        &'s self,
        op: &'s str,
        w: usize,
    ) -> impl Iterator<Item = &'s LatencyWindow> + 's {
        self.meta
            .iter()
            .zip(&self.states)
            .filter(move |(m, _)| m.name == op)
            .filter_map(move |(_, s)| match s {
                State::Timer { windows, .. } => Some(&windows[w]),
                _ => None,
            })
    }

    /// What the score components observed in the score window.
    fn observed(&self, now: Instant) -> score::Observed {
        let cfg = &self.trading.config.score;
        let w = self
            .trading
            .config
            .windows
            .iter()
            .position(|w| *w == cfg.window)
            .unwrap_or(0);
        let quantile = |op: &str| {
            let mut merged: Option<Hist> = None;
            for h in self
                .timer_windows(op, w)
                .filter_map(LatencyWindow::histogram)
            {
                match &mut merged {
                    None => merged = Some(h.clone()),
                    Some(m) => m.add(h),
                }
            }
            merged.map(|h| latency::quantile_seconds(&h, cfg.quantile))
        };
        let rate_of = |stream: &str| -> Option<f64> {
            let counters: Vec<f64> = self
                .meta
                .iter()
                .zip(&self.states)
                .filter(|(m, _)| m.name == stream)
                .filter_map(|(_, s)| match s {
                    State::Counter { windows, .. } => Some(windows[w].rate(now)),
                    _ => None,
                })
                .collect();
            (!counters.is_empty()).then(|| counters.iter().sum())
        };
        let handled = rate_of(&cfg.throughput.stream).or_else(|| {
            // No counter stream of that name: the rate of the operation's observations.
            let rates: Vec<f64> = self
                .timer_windows(&cfg.throughput.stream, w)
                .map(|t| t.rate(now))
                .collect();
            (!rates.is_empty()).then(|| rates.iter().sum())
        });
        // Throughput is judged only where the desk reports its drops: a low rate alone
        // is the market, not the machine.
        let throughput = rate_of(&cfg.throughput.dropped_stream)
            .map(|dropped| (handled.unwrap_or(0.0), dropped));
        score::Observed {
            latency: quantile(&cfg.latency.operation),
            risk: quantile(&cfg.risk.operation),
            ml: quantile(&cfg.ml.operation),
            throughput,
        }
    }

    fn families(&self, view: &View, now: Instant) -> Vec<Family> {
        let mut quantiles = Family::new(&TRADING_LATENCY_QUANTILE_SECONDS);
        let mut hist = Family::new(&TRADING_LATENCY_SECONDS);
        let mut events = Family::new(&TRADING_EVENTS_TOTAL);
        let mut throughput = Family::new(&TRADING_THROUGHPUT_PER_SECOND);
        let mut gauge = Family::new(&TRADING_VALUE);
        let mut sets = Family::new(&TRADING_SET_UNIQUE_VALUES);
        let mut series = Family::new(&TRADING_SERIES);
        let with = |first: (&str, &str), labels: &[(String, String)], rest: &[(&str, &str)]| {
            let mut l: Vec<(String, String)> = vec![(first.0.into(), first.1.into())];
            l.extend(labels.iter().cloned());
            l.extend(rest.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l
        };
        for (m, state) in self.meta.iter().zip(&self.states) {
            match state {
                State::Timer { windows, classic } => {
                    let op = ("operation", m.name.as_str());
                    for (name, w) in self.window_names.iter().zip(windows) {
                        let Some(h) = w.histogram() else { continue };
                        for (q, qs) in QUANTILES {
                            quantiles.push(
                                with(op, &m.labels, &[("window", name), ("quantile", qs)]),
                                latency::quantile_seconds(h, q),
                            );
                        }
                        let labels = with(op, &m.labels, &[("window", name)]);
                        quantiles.push_part("_sum", labels.clone(), w.sum_seconds());
                        quantiles.push_part("_count", labels, h.len() as f64);
                    }
                    for (le, n) in classic.cumulative() {
                        let le = crate::store::format_value(le);
                        hist.push_part("_bucket", with(op, &m.labels, &[("le", &le)]), n as f64);
                    }
                    hist.push_part("_sum", with(op, &m.labels, &[]), classic.sum_seconds);
                    hist.push_part("_count", with(op, &m.labels, &[]), classic.count() as f64);
                }
                State::Counter { windows, total } => {
                    let stream = ("stream", m.name.as_str());
                    events.push(with(stream, &m.labels, &[]), *total);
                    for (name, w) in self.window_names.iter().zip(windows) {
                        throughput.push(with(stream, &m.labels, &[("window", name)]), w.rate(now));
                    }
                }
                State::Gauge | State::Set { .. } => {}
            }
        }
        for g in &view.gauges {
            gauge.push(with(("name", &g.name), &flat(&g.labels), &[]), g.value);
        }
        for s in &view.sets {
            sets.push(with(("name", &s.name), &flat(&s.labels), &[]), s.value);
        }
        for (kind, name) in TYPES {
            let n = self.meta.iter().filter(|m| m.kind == kind).count();
            series.push([("type", name)], n as f64);
        }
        let mut total = Family::new(&PERFORMANCE_SCORE);
        let mut component = Family::new(&PERFORMANCE_COMPONENT_SCORE);
        let mut weight = Family::new(&PERFORMANCE_COMPONENT_WEIGHT);
        let mut coverage = Family::new(&PERFORMANCE_SCORE_COVERAGE_RATIO);
        if let Some(s) = view.score.score {
            total.push_value(s);
        }
        for c in &view.score.components {
            if let Some(s) = c.score {
                component.push([("component", c.component)], s);
            }
            weight.push([("component", c.component)], c.weight);
        }
        coverage.push_value(view.score.coverage_ratio);
        let mut objective = Family::new(&TRADING_LATENCY_OBJECTIVE_SECONDS);
        let cfg = &self.trading.config.score;
        for c in [&cfg.latency, &cfg.risk, &cfg.ml] {
            let op = ("operation", c.operation.as_str());
            objective.push([op, ("objective", "target")], c.target.get().as_secs_f64());
            objective.push([op, ("objective", "alert")], c.alert.get().as_secs_f64());
        }
        let mut out = vec![
            quantiles, hist, events, throughput, gauge, sets, series, total, component, weight,
            coverage, objective,
        ];
        if let Some(b) = &self.baselines {
            out.push(b.family());
        }
        out
    }
}

fn flat(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl BlockingCollector for TradingCollector {
    fn name(&self) -> &'static str {
        "trading"
    }

    fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        Ok(self.run(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Mapping, StatsdType};

    fn store(config: TradingConfig) -> (Arc<Trading>, TradingCollector) {
        let t = Trading::new(&config, &prometheus::Registry::new()).unwrap();
        (Arc::clone(&t), TradingCollector::new(t))
    }

    fn send(t: &Trading, packet: &str) {
        let mut b = t.batch();
        t.ingest_packet(packet.as_bytes(), &mut b);
    }

    fn names(v: &View) -> Vec<String> {
        let mut n: Vec<String> = v
            .operations
            .iter()
            .map(|o| o.operation.clone())
            .chain(v.streams.iter().map(|s| s.stream.clone()))
            .chain(v.gauges.iter().map(|g| g.name.clone()))
            .collect();
        n.sort();
        n
    }

    #[test]
    fn quiet_series_expire_free_their_slot_and_keep_the_rest_intact() {
        let s = Dur(Duration::from_secs(1));
        let (t, mut c) = store(TradingConfig {
            windows: vec![s],
            interval: s,
            series_ttl: Dur(Duration::from_secs(3)),
            max_series: 3,
            ..TradingConfig::default()
        });
        let t0 = Instant::now();
        send(&t, "old:1|c\nkept:5|ms\nlevel:7|g");
        c.run(t0);
        // A fourth series does not fit until one expires.
        send(&t, "new:1|c");
        send(&t, "kept:6|ms\nlevel:+1|g");
        c.run(t0 + Duration::from_secs(2));
        assert_eq!(names(&t.view()), ["kept", "level", "old"]);
        assert_eq!(t.instruments.dropped_cardinality.get(), 1);
        send(&t, "kept:7|ms");
        c.run(t0 + Duration::from_secs(3));
        // `old` was last touched at t0: gone at t0 + ttl; `level` (t0 + 2 s) stays.
        let v = t.view();
        assert_eq!(names(&v), ["kept", "level"]);
        assert_eq!(v.series, 2);
        assert_eq!(t.instruments.expired.get(), 1);
        assert_eq!(
            v.gauges[0].value, 8.0,
            "the gauge kept its value through renumbering"
        );
        // The freed slot takes a new series; the survivors keep their own data.
        send(&t, "new:2|c\nkept:9|ms\nlevel:+1|g");
        c.run(t0 + Duration::from_secs(4));
        let v = t.view();
        assert_eq!(names(&v), ["kept", "level", "new"]);
        assert_eq!(v.gauges[0].value, 9.0);
        let new = v.streams.iter().find(|s| s.stream == "new").unwrap();
        assert_eq!(new.events_total, 2.0, "a returning series starts again");
        let kept = v.operations.iter().find(|o| o.operation == "kept").unwrap();
        assert_eq!(kept.count, 4);
        // With nothing more, everything goes.
        c.run(t0 + Duration::from_secs(8));
        assert!(names(&t.view()).is_empty());
        assert_eq!(t.instruments.expired.get(), 4);
    }

    #[test]
    fn zero_ttl_keeps_every_series() {
        let (t, mut c) = store(TradingConfig::default());
        let t0 = Instant::now();
        send(&t, "a:1|c\nb:1|g");
        c.run(t0);
        c.run(t0 + Duration::from_secs(86_400));
        assert_eq!(names(&t.view()), ["a", "b"]);
    }

    #[test]
    fn mapped_names_become_labelled_series_and_share_them() {
        let (t, mut c) = store(TradingConfig {
            label_tags: vec!["desk".into()],
            mappings: vec![Mapping {
                pattern: "orders.*.execution".into(),
                match_type: Some(StatsdType::Timer),
                name: "order_execution".into(),
                labels: [("venue".to_string(), "$1".to_string())].into(),
            }],
            ..TradingConfig::default()
        });
        send(
            &t,
            "orders.nyse.execution:2|ms|#desk:a\norders.nyse.execution:4|ms|#desk:a,venue:x\n\
             orders.cme.execution:8|ms\norders.cme.execution:1|c",
        );
        c.run(Instant::now());
        let v = t.view();
        let ops: Vec<(String, BTreeMap<String, String>, u64)> = v
            .operations
            .iter()
            .map(|o| (o.operation.clone(), o.labels.clone(), o.count))
            .collect();
        let l = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // The mapping's label overrides the tag of the same key, so both nyse lines
        // are one series.
        assert_eq!(
            ops,
            [
                (
                    "order_execution".into(),
                    l(&[("desk", "a"), ("venue", "nyse")]),
                    2
                ),
                ("order_execution".into(), l(&[("venue", "cme")]), 1),
            ]
        );
        // The rule is for timers: the counter keeps its name.
        assert_eq!(v.streams[0].stream, "orders.cme.execution");
        assert_eq!(v.series, 3);
    }
}
