//! The collector: once per `trading.interval` it swaps the writers' accumulator out of
//! the series table, folds it into each series' sliding windows, expires quiet series,
//! and publishes the view and the families (built in [`super::export`]).

use std::sync::Arc;
use std::time::Instant;

use super::Trading;
use super::baseline;
use super::latency::{Classic, CountWindow, LatencyWindow};
use super::line::MetricType;
use super::series::{Pending, SeriesMeta};
use crate::collect::{BlockingCollector, CollectError};
use crate::config::timeinterval::TimeInterval;
use crate::store::Family;
use crate::store::views::Views;
use crate::store::views::trading::{View, window_name};

/// What the collector keeps of one series between runs.
pub(super) enum State {
    Timer {
        windows: Vec<LatencyWindow>,
        classic: Classic,
        /// Unix seconds of the run that last found a sample of it.
        last_sample: Option<f64>,
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
    pub(super) trading: Arc<Trading>,
    /// The accumulator swapped with the writers' one each run, reused to avoid
    /// reallocating histograms.
    spare: Vec<Pending>,
    pub(super) meta: Vec<Arc<SeriesMeta>>,
    pub(super) states: Vec<State>,
    /// When each series last received something (for `trading.series_ttl`).
    last_seen: Vec<Instant>,
    pub(super) window_names: Vec<String>,
    last_run: Option<Instant>,
    pub(super) baselines: Option<baseline::Baselines>,
    /// The last run's view (an empty one before the first), published to the store.
    latest: Arc<View>,
    /// The time intervals `trading.market_hours` names; empty: always open.
    pub(super) market_hours: Vec<TimeInterval>,
}

impl TradingCollector {
    /// Also tracks per-period baselines (see [`baseline`]).
    pub fn with_baselines(mut self, b: baseline::Baselines) -> Self {
        self.baselines = Some(b);
        self
    }

    /// The market is open while any of `intervals` holds (`trading.market_hours`).
    pub fn with_market_hours(mut self, intervals: Vec<TimeInterval>) -> Self {
        self.market_hours = intervals;
        self
    }

    /// Whether the market is open at `at`: always, without `trading.market_hours`.
    pub(super) fn market_open(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        self.market_hours.is_empty() || self.market_hours.iter().any(|t| t.contains(at))
    }

    pub fn new(trading: Arc<Trading>) -> Self {
        // Before the first run: nothing observed, the listener's address already known.
        let latest = Arc::new(View {
            statsd_listen: trading.statsd_addr().map(|a| a.to_string()),
            ..super::view::empty_view()
        });
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
            latest,
            market_hours: Vec::new(),
        }
    }

    /// The last run's view (an empty one before the first run).
    pub fn latest_view(&self) -> Arc<View> {
        Arc::clone(&self.latest)
    }

    /// One run at `now`: fold, compute, keep the view, return the families.
    pub fn run(&mut self, now: Instant) -> Vec<Family> {
        let mut replaced = Vec::new();
        let mut gauges = {
            let mut g = self.trading.ingest.lock().expect("trading lock");
            std::mem::swap(&mut g.pending, &mut self.spare);
            // A slot whose series was evicted (a new identity in it) starts afresh.
            for (id, (ours, theirs)) in self.meta.iter_mut().zip(&g.meta).enumerate() {
                if !Arc::ptr_eq(ours, theirs) {
                    *ours = Arc::clone(theirs);
                    replaced.push(id);
                }
            }
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
        let fresh = |kind: MetricType| match kind {
            MetricType::Timer => State::Timer {
                windows: widths
                    .iter()
                    .map(|w| LatencyWindow::new(*w, began))
                    .collect(),
                classic: Classic::default(),
                last_sample: None,
            },
            MetricType::Counter => State::Counter {
                windows: widths.iter().map(|w| CountWindow::new(*w, began)).collect(),
                total: 0.0,
            },
            MetricType::Gauge => State::Gauge,
            MetricType::Set => State::Set { last: 0 },
        };
        for id in replaced {
            if let Some(st) = self.states.get_mut(id) {
                *st = fresh(self.meta[id].kind);
            }
            if let Some(seen) = self.last_seen.get_mut(id) {
                *seen = now;
            }
        }
        for m in &self.meta[self.states.len()..] {
            self.states.push(fresh(m.kind));
        }
        self.last_seen.resize(self.states.len(), now);
        for (seen, p) in self.last_seen.iter_mut().zip(&self.spare) {
            if p.touched {
                *seen = now;
            }
        }
        let unix_now = crate::clock::unix_now();
        for (id, state) in self.states.iter_mut().enumerate() {
            let p = self.spare.get_mut(id);
            match state {
                State::Timer {
                    windows,
                    classic,
                    last_sample,
                } => {
                    if p.as_ref().is_some_and(|p| p.touched) {
                        *last_sample = Some(unix_now);
                    }
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
        self.latest = Arc::new(view);
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
        retain(&mut g.stamps, &keep);
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
}

impl BlockingCollector for TradingCollector {
    fn name(&self) -> &'static str {
        "trading"
    }

    fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        Ok(self.run(Instant::now()))
    }

    fn publish_view(&self, views: &Views) {
        views.trading.set(Some(self.latest_view()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use std::collections::BTreeMap;

    use crate::config::{Dur, Mapping, StatsdType, TradingConfig};
    use crate::store::views::trading::View;

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
        send(&t, "kept:6|ms\nlevel:+1|g");
        c.run(t0 + Duration::from_secs(2));
        assert_eq!(names(&c.latest_view()), ["kept", "level", "old"]);
        send(&t, "kept:7|ms");
        c.run(t0 + Duration::from_secs(3));
        // `old` was last touched at t0: gone at t0 + ttl; `level` (t0 + 2 s) stays.
        let v = c.latest_view();
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
        let v = c.latest_view();
        assert_eq!(names(&v), ["kept", "level", "new"]);
        assert_eq!(v.gauges[0].value, 9.0);
        let new = v.streams.iter().find(|s| s.stream == "new").unwrap();
        assert_eq!(new.events_total, 2.0, "a returning series starts again");
        let kept = v.operations.iter().find(|o| o.operation == "kept").unwrap();
        assert_eq!(kept.count, 4);
        // With nothing more, everything goes.
        c.run(t0 + Duration::from_secs(8));
        assert!(names(&c.latest_view()).is_empty());
        assert_eq!(t.instruments.expired.get(), 4);
    }

    /// A full table makes room for a new series by evicting the least recently
    /// updated one (counted); the slot starts afresh, the others keep their data.
    #[test]
    fn a_full_table_evicts_the_least_recently_updated_series() {
        let s = Dur(Duration::from_secs(1));
        let (t, mut c) = store(TradingConfig {
            windows: vec![s],
            interval: s,
            max_series: 3,
            ..TradingConfig::default()
        });
        let t0 = Instant::now();
        send(&t, "a:5|c\nb:1|c\nc:1|c");
        c.run(t0);
        // `b` and `c` are updated again: `a` is the least recently updated.
        send(&t, "b:1|c\nc:1|c");
        send(&t, "new:2|c");
        c.run(t0 + Duration::from_secs(1));
        let v = c.latest_view();
        assert_eq!(names(&v), ["b", "c", "new"]);
        assert_eq!(t.instruments.evicted.get(), 1);
        assert_eq!(t.instruments.dropped_cardinality.get(), 0);
        let new = v.streams.iter().find(|s| s.stream == "new").unwrap();
        assert_eq!(
            new.events_total, 2.0,
            "the slot starts afresh, not at a's 5"
        );
        let b = v.streams.iter().find(|s| s.stream == "b").unwrap();
        assert_eq!(b.events_total, 2.0);
        // A flood of new names keeps getting in, each evicting the oldest.
        for i in 0..50 {
            send(&t, &format!("flood{i}:1|c"));
        }
        send(&t, "order_submit:3|ms");
        c.run(t0 + Duration::from_secs(2));
        let v = c.latest_view();
        assert!(
            names(&v).contains(&"order_submit".to_string()),
            "{:?}",
            names(&v)
        );
        assert_eq!(v.series, 3);
        assert_eq!(t.instruments.evicted.get(), 1 + 51);
    }

    /// Issue 29, item 1: per operation the time of its last sample (any path), the
    /// market's state from `trading.market_hours`, and `trading.silence_after`.
    #[test]
    fn last_sample_market_open_and_silence_after_are_exported() {
        let (t, c) = store(TradingConfig::default());
        let value = |fams: &[Family], name: &str| -> Vec<(Vec<(String, String)>, f64)> {
            fams.iter()
                .filter(|f| f.name == name)
                .flat_map(|f| f.samples.iter().map(|s| (s.labels.clone(), s.value)))
                .collect()
        };
        let mut c = c;
        let t0 = Instant::now();
        // Nothing seen: no last sample, the market open (no market_hours), 30 s.
        let f = c.run(t0);
        assert!(value(&f, "m4watch_trading_last_sample_timestamp_seconds").is_empty());
        assert_eq!(value(&f, "m4watch_trading_market_open")[0].1, 1.0);
        assert_eq!(
            value(&f, "m4watch_trading_silence_after_seconds")[0].1,
            30.0
        );
        send(&t, "order_execution:25|ms\nfills:1|c");
        t.record_latency("risk_calculation", &BTreeMap::new(), 5_000_000)
            .unwrap();
        let before = crate::clock::unix_now();
        let f = c.run(t0 + Duration::from_secs(1));
        let last = value(&f, "m4watch_trading_last_sample_timestamp_seconds");
        let ops: Vec<&str> = last.iter().map(|(l, _)| l[0].1.as_str()).collect();
        assert_eq!(ops, ["order_execution", "risk_calculation"], "timers only");
        assert!(last.iter().all(|(_, v)| (*v - before).abs() < 5.0));
        // A quiet run keeps the time of the last sample.
        std::thread::sleep(Duration::from_millis(20));
        let f = c.run(t0 + Duration::from_secs(2));
        assert_eq!(
            value(&f, "m4watch_trading_last_sample_timestamp_seconds"),
            last
        );

        // A market that is never open now: an interval for a year long past.
        let closed: crate::config::timeinterval::TimeInterval =
            serde_yaml_ng::from_str("name: closed\ntime_intervals: [{years: ['2000']}]").unwrap();
        let (_, c) = store(TradingConfig::default());
        let mut c = c.with_market_hours(vec![closed.clone()]);
        assert_eq!(value(&c.run(t0), "m4watch_trading_market_open")[0].1, 0.0);
        let always: crate::config::timeinterval::TimeInterval =
            serde_yaml_ng::from_str("name: always").unwrap();
        let (_, c) = store(TradingConfig::default());
        let mut c = c.with_market_hours(vec![closed, always]);
        assert_eq!(value(&c.run(t0), "m4watch_trading_market_open")[0].1, 1.0);
    }

    #[test]
    fn zero_ttl_keeps_every_series() {
        let (t, mut c) = store(TradingConfig {
            series_ttl: Dur(Duration::ZERO),
            ..TradingConfig::default()
        });
        let t0 = Instant::now();
        send(&t, "a:1|c\nb:1|g");
        c.run(t0);
        c.run(t0 + Duration::from_secs(86_400));
        assert_eq!(names(&c.latest_view()), ["a", "b"]);
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
        let v = c.latest_view();
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
