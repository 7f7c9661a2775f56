//! What a collector run publishes: the [`View`] the JSON API serves (with the
//! score's inputs) and the families, both read from the collector's windows.

use std::collections::BTreeMap;
use std::time::Instant;

use super::collector::{State, TradingCollector};
use super::hist::Hist;
use super::latency::{self, LatencyWindow, QUANTILES};
use super::metrics::*;
use super::score;
use super::series::TYPES;
use super::view::{OperationView, StreamView, ValueView, View};
use crate::store::Family;

impl TradingCollector {
    /// The view of this run at `now`; `gauges` is the run's copy of the gauge values.
    pub(super) fn view(&self, now: Instant, gauges: &[Option<f64>]) -> View {
        let mut view = View {
            updated_unix: Some(crate::clock::unix_now()),
            windows: self.window_names.clone(),
            series: self.meta.len(),
            max_series: self.trading.config.max_series,
            statsd_listen: self.trading.statsd_addr().map(|a| a.to_string()),
            ..super::view::empty_view()
        };
        for (id, (m, state)) in self.meta.iter().zip(&self.states).enumerate() {
            let labels: BTreeMap<String, String> = m.labels.iter().cloned().collect();
            match state {
                State::Timer {
                    windows, classic, ..
                } => view.operations.push(OperationView {
                    operation: m.name.clone(),
                    labels,
                    count: classic.count(),
                    windows: self
                        .window_names
                        .iter()
                        .zip(windows)
                        .filter_map(|(n, w)| {
                            w.histogram()
                                .map(|h| (n.clone(), super::view::latency_stats(h, w.rate(now))))
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

    pub(super) fn families(&self, view: &View, now: Instant) -> Vec<Family> {
        let mut quantiles = Family::new(&TRADING_LATENCY_QUANTILE_SECONDS);
        let mut observations = Family::new(&TRADING_LATENCY_WINDOW_OBSERVATIONS);
        let mut mean = Family::new(&TRADING_LATENCY_WINDOW_MEAN_SECONDS);
        let mut hist = Family::new(&TRADING_LATENCY_SECONDS);
        let mut events = Family::new(&TRADING_EVENTS_TOTAL);
        let mut throughput = Family::new(&TRADING_THROUGHPUT_PER_SECOND);
        let mut gauge = Family::new(&TRADING_VALUE);
        let mut sets = Family::new(&TRADING_SET_UNIQUE_VALUES);
        let mut series = Family::new(&TRADING_SERIES);
        let mut last = Family::new(&TRADING_LAST_SAMPLE_TIMESTAMP_SECONDS);
        let with = |first: (&str, &str), labels: &[(String, String)], rest: &[(&str, &str)]| {
            let mut l: Vec<(String, String)> = vec![(first.0.into(), first.1.into())];
            l.extend(labels.iter().cloned());
            l.extend(rest.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            l
        };
        for (m, state) in self.meta.iter().zip(&self.states) {
            match state {
                State::Timer {
                    windows,
                    classic,
                    last_sample,
                } => {
                    let op = ("operation", m.name.as_str());
                    if let Some(t) = last_sample {
                        last.push(with(op, &m.labels, &[]), *t);
                    }
                    for (name, w) in self.window_names.iter().zip(windows) {
                        let Some(h) = w.histogram() else { continue };
                        for (q, qs) in QUANTILES {
                            quantiles.push(
                                with(op, &m.labels, &[("window", name), ("quantile", qs)]),
                                latency::quantile_seconds(h, q),
                            );
                        }
                        // A summary's _sum and _count are counters: cumulative since
                        // start (as client libraries' summaries with a max age have them),
                        // the window's own count a gauge of its own (issue 29).
                        let labels = with(op, &m.labels, &[("window", name)]);
                        quantiles.push_part("_sum", labels.clone(), classic.sum_seconds);
                        quantiles.push_part("_count", labels.clone(), classic.count() as f64);
                        mean.push(labels.clone(), w.sum_seconds() / h.len() as f64);
                        observations.push(labels, h.len() as f64);
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
            quantiles,
            observations,
            mean,
            hist,
            events,
            throughput,
            gauge,
            sets,
            series,
            total,
            component,
            weight,
            coverage,
            objective,
        ];
        if let Some(b) = &self.baselines {
            out.push(b.family());
        }

        // Whether the sources still send (issue 29): each operation's last sample, the
        // market's hours and how long a silence may last.
        let mut open = Family::new(&TRADING_MARKET_OPEN);
        open.push_value(if self.market_open(chrono::Utc::now()) {
            1.0
        } else {
            0.0
        });
        let mut silence = Family::new(&TRADING_SILENCE_AFTER_SECONDS);
        silence.push_value(self.trading.config.silence_after.get().as_secs_f64());
        out.extend([last, open, silence]);
        out.extend(self.operation_families());
        out
    }
}

fn flat(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
