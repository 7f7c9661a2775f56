//! Latency baselines: p50 and p95 per trading operation per period (a UTC day by
//! default), stored in the history database, and the exported baseline
//! `m4watch_trading_latency_baseline_seconds{operation,quantile}`: the median of
//! the latest `history.baseline_periods` complete periods' values, so one bad day
//! neither hides nor becomes the norm.
//!
//! The per-period quantiles come from an HdrHistogram merged from every interval's
//! observations (the same 1% histogram as the windows), not from averaging window
//! quantiles, which would be wrong for percentiles.

use std::collections::BTreeMap;

use super::hist::Hist;

use super::latency;
use crate::collect::trading::TRADING_LATENCY_BASELINE_SECONDS;
use crate::persist::samples::Baseline;

/// Where finished periods go (the wiring hands them to the history writer); a source
/// never writes to a database itself.
pub(crate) type Sink = Box<dyn Fn(Vec<Baseline>) + Send + Sync>;
use crate::store::Family;

/// The quantiles kept, as labelled.
pub(crate) const QUANTILES: [(&str, f64); 2] = [("0.5", 0.5), ("0.95", 0.95)];

type Key = (String, Vec<(String, String)>);

/// Accumulates the current period and holds the complete ones.
pub struct Baselines {
    period_ms: i64,
    keep: usize,
    sink: Option<Sink>,
    /// Start of the period being accumulated (ms, a multiple of the period).
    current: Option<i64>,
    hists: BTreeMap<Key, Hist>,
    /// Complete periods per key: (period start, p50 s, p95 s), oldest first.
    done: BTreeMap<Key, Vec<(i64, f64, f64)>>,
}

impl Baselines {
    /// Tracks periods of `period_ms`, exporting the median of the latest `keep`
    /// complete ones; `stored` are the baselines the database already holds.
    pub fn new(period_ms: i64, keep: usize, sink: Option<Sink>, stored: Vec<Baseline>) -> Self {
        let mut b = Baselines {
            period_ms: period_ms.max(1),
            keep: keep.max(1),
            sink,
            current: None,
            hists: BTreeMap::new(),
            done: BTreeMap::new(),
        };
        let mut by_period: BTreeMap<(Key, i64), (Option<f64>, Option<f64>)> = BTreeMap::new();
        for s in stored {
            let key = (s.operation, s.labels.into_iter().collect());
            let e = by_period.entry((key, s.period_start)).or_default();
            match s.quantile.as_str() {
                "0.5" => e.0 = Some(s.seconds),
                "0.95" => e.1 = Some(s.seconds),
                _ => {}
            }
        }
        for ((key, start), (p50, p95)) in by_period {
            if let (Some(p50), Some(p95)) = (p50, p95) {
                b.push_done(key, start, p50, p95);
            }
        }
        b
    }

    fn push_done(&mut self, key: Key, start: i64, p50: f64, p95: f64) {
        let v = self.done.entry(key).or_default();
        v.retain(|(s, _, _)| *s != start);
        v.push((start, p50, p95));
        v.sort_by_key(|(s, _, _)| *s);
        let extra = v.len().saturating_sub(self.keep);
        v.drain(..extra);
    }

    /// Adds one interval's observations of an operation, seen at `now_ms`.
    pub fn add(&mut self, now_ms: i64, operation: &str, labels: &[(String, String)], h: &Hist) {
        self.roll(now_ms);
        if h.is_empty() {
            return;
        }
        let key = (operation.to_string(), labels.to_vec());
        let acc = self.hists.entry(key).or_insert_with(latency::histogram);
        acc.add(h);
    }

    /// Closes the current period when `now_ms` is past it: computes, stores and
    /// keeps each operation's p50 and p95.
    pub fn roll(&mut self, now_ms: i64) {
        let start = now_ms - now_ms.rem_euclid(self.period_ms);
        let Some(current) = self.current else {
            self.current = Some(start);
            return;
        };
        if start == current {
            return;
        }
        self.current = Some(start);
        let hists = std::mem::take(&mut self.hists);
        let mut rows = Vec::new();
        for (key, h) in hists {
            if h.is_empty() {
                continue;
            }
            let p50 = latency::quantile_seconds(&h, 0.5);
            let p95 = latency::quantile_seconds(&h, 0.95);
            for (q, v) in [("0.5", p50), ("0.95", p95)] {
                rows.push(Baseline {
                    period_start: current,
                    operation: key.0.clone(),
                    labels: key.1.iter().cloned().collect(),
                    quantile: q.into(),
                    seconds: v,
                    count: h.len(),
                });
            }
            self.push_done(key, current, p50, p95);
        }
        if let Some(sink) = &self.sink
            && !rows.is_empty()
        {
            sink(rows);
        }
    }

    /// The exported baseline of every operation with a complete period.
    pub fn family(&self) -> Family {
        let mut f = Family::new(&TRADING_LATENCY_BASELINE_SECONDS);
        for ((op, labels), periods) in &self.done {
            if periods.is_empty() {
                continue;
            }
            for (i, (q, _)) in QUANTILES.iter().enumerate() {
                let vals: Vec<f64> = periods
                    .iter()
                    .map(|p| if i == 0 { p.1 } else { p.2 })
                    .collect();
                let mut l: Vec<(String, String)> = vec![("operation".into(), op.clone())];
                l.extend(labels.iter().cloned());
                l.push(("quantile".into(), (*q).into()));
                f.push(l, median(vals));
            }
        }
        f
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values_us: &[u64]) -> Hist {
        let mut h = latency::histogram();
        for v in values_us {
            latency::record(&mut h, v * 1000, 1);
        }
        h
    }

    fn value(f: &Family, op: &str, q: &str) -> Option<f64> {
        f.samples
            .iter()
            .find(|s| {
                s.labels.contains(&("operation".into(), op.into()))
                    && s.labels.contains(&("quantile".into(), q.into()))
            })
            .map(|s| s.value)
    }

    #[test]
    fn a_period_closes_into_p50_and_p95() {
        let mut b = Baselines::new(1000, 3, None, Vec::new());
        // Period [0, 1000): 1..=100 µs over two intervals.
        let lo: Vec<u64> = (1..=50).collect();
        let hi: Vec<u64> = (51..=100).collect();
        b.add(100, "order", &[], &hist(&lo));
        b.add(600, "order", &[], &hist(&hi));
        assert!(b.family().samples.is_empty(), "no complete period yet");
        b.roll(1000);
        let f = b.family();
        let p50 = value(&f, "order", "0.5").unwrap();
        let p95 = value(&f, "order", "0.95").unwrap();
        assert!((p50 - 50e-6).abs() / 50e-6 < 0.02, "{p50}");
        assert!((p95 - 95e-6).abs() / 95e-6 < 0.02, "{p95}");
    }

    #[test]
    fn the_export_is_the_median_of_the_latest_periods() {
        let mut b = Baselines::new(1000, 3, None, Vec::new());
        for (period, us) in [(0, 100u64), (1, 900), (2, 200), (3, 300)] {
            b.add(period * 1000 + 10, "order", &[], &hist(&[us]));
        }
        b.roll(4000);
        // Kept: periods 1..=3 (900, 200, 300) -> median 300.
        let p50 = value(&b.family(), "order", "0.5").unwrap();
        assert!((p50 - 300e-6).abs() / 300e-6 < 0.02, "{p50}");
    }

    #[test]
    fn stored_baselines_are_loaded() {
        let stored = vec![
            Baseline {
                period_start: 0,
                operation: "risk".into(),
                labels: Default::default(),
                quantile: "0.5".into(),
                seconds: 0.001,
                count: 10,
            },
            Baseline {
                period_start: 0,
                operation: "risk".into(),
                labels: Default::default(),
                quantile: "0.95".into(),
                seconds: 0.004,
                count: 10,
            },
        ];
        let b = Baselines::new(1000, 3, None, stored);
        assert_eq!(value(&b.family(), "risk", "0.95"), Some(0.004));
    }

    #[test]
    fn an_empty_period_changes_nothing() {
        let mut b = Baselines::new(1000, 3, None, Vec::new());
        b.roll(10);
        b.roll(5000);
        assert!(b.family().samples.is_empty());
    }
}
