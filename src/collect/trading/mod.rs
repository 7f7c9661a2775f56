//! Trading latency and throughput.
//!
//! Three ways in, one store: the StatsD listener ([`statsd`], parsing in [`line`]), the
//! HTTP batch ingest and the start/end measurement API ([`ingest`], routes in
//! `api::trading`) all write into [`Trading`], a shared handle, through the series
//! table ([`series`]). Writers only touch a per-interval accumulator under a short
//! lock. The [`TradingCollector`] ([`collector`]) swaps that accumulator out once per
//! `trading.interval`, folds it into the sliding windows ([`latency`]), computes
//! quantiles and the weighted score ([`score`]) and publishes the families
//! ([`metrics`]); the JSON API reads the [`View`] ([`view`]) it leaves behind.

pub(crate) mod baseline;
pub(crate) mod collector;
pub(crate) mod export;
pub(crate) mod hist;
pub(crate) mod ingest;
pub(crate) mod latency;
pub(crate) mod line;
pub(crate) mod mapping;
pub(crate) mod metrics;
pub(crate) mod operations;
pub(crate) mod score;
pub(crate) mod series;
pub(crate) mod statsd;
pub(crate) mod view;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use prometheus::{IntCounter, IntCounterVec, Opts};

use self::line::ParseError;
use self::series::Ingest;
use crate::config::TradingConfig;
use crate::model::MetricDef;

pub use self::collector::TradingCollector;
pub(crate) use self::metrics::*;

struct Instruments {
    packets: IntCounter,
    lines: IntCounter,
    parse_errors: Vec<IntCounter>,
    dropped_cardinality: IntCounter,
    dropped_set: IntCounter,
    /// Only where the kernel reports drops (Linux).
    kernel_drops: Option<IntCounter>,
    refused: IntCounter,
    completed: IntCounter,
    abandoned: IntCounter,
    expired: IntCounter,
    evicted: IntCounter,
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
            refused: counter(&STATSD_REFUSED_DATAGRAMS_TOTAL)?,
            completed: measured.with_label_values(&["completed"]),
            abandoned: measured.with_label_values(&["abandoned"]),
            expired: counter(&TRADING_SERIES_EXPIRED_TOTAL)?,
            evicted: counter(&TRADING_SERIES_EVICTED_TOTAL)?,
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

    /// Counts `n` more datagrams the kernel dropped for the StatsD socket.
    pub fn kernel_drops(&self, n: u64) {
        if let (Some(c), true) = (&self.instruments.kernel_drops, n > 0) {
            c.inc_by(n);
        }
    }

    /// Whether a StatsD datagram from `peer` is taken; a refused one is counted.
    pub fn statsd_admit(&self, peer: std::net::IpAddr) -> bool {
        let ok = self.config.statsd_allowed(peer);
        if !ok {
            self.instruments.refused.inc();
        }
        ok
    }

    /// Ends measurement `id`, records it with its outcome and returns it.
    pub fn end_measurement(&self, id: &str, outcome: line::Outcome) -> Option<ingest::Ended> {
        let ended = self.measurements.end(id, Instant::now())?;
        self.instruments.completed.inc();
        let nanos = u64::try_from(ended.latency.as_nanos()).unwrap_or(u64::MAX);
        // A full series table drops the sample and counts it; the caller still gets
        // its latency.
        let _ = self.record_operation(&ended.operation, &ended.labels, nanos, outcome);
        Some(ended)
    }
}
