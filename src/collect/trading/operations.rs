//! The operation counts by outcome and the throughput objectives: what the shipped
//! error-rate, throughput and drop rules read (`alert-rules/trading.rules.yml`).

use super::collector::{State, TradingCollector};
use super::line::Outcome;
use super::metrics::*;
use crate::store::Family;

impl TradingCollector {
    /// `m4watch_trading_operations_total` (both outcomes of every timer series, from
    /// its first sample), the throughput objectives of `trading.throughput` and the
    /// score's streams.
    pub(super) fn operation_families(&self) -> Vec<Family> {
        let mut ops = Family::new(&TRADING_OPERATIONS_TOTAL);
        for (m, state) in self.meta.iter().zip(&self.states) {
            let State::Timer { classic, .. } = state else {
                continue;
            };
            let errors = classic.errors;
            for outcome in Outcome::ALL {
                let n = match outcome {
                    Outcome::Success => classic.count().saturating_sub(errors),
                    Outcome::Error => errors,
                };
                let mut labels = vec![("operation".to_string(), m.name.clone())];
                labels.extend(m.labels.iter().cloned());
                labels.push(("outcome".into(), outcome.label().into()));
                ops.push(labels, n as f64);
            }
        }
        let cfg = &self.trading.config;
        let mut objective = Family::new(&TRADING_THROUGHPUT_OBJECTIVE_PER_SECOND);
        for (op, rate) in &cfg.throughput {
            objective.push([("operation", op.as_str())], *rate);
        }
        let mut streams = Family::new(&TRADING_SCORE_STREAM_INFO);
        let t = &cfg.score.throughput;
        streams.push([("stream", t.stream.as_str()), ("role", "handled")], 1.0);
        streams.push(
            [("stream", t.dropped_stream.as_str()), ("role", "dropped")],
            1.0,
        );
        vec![ops, objective, streams]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::collect::trading::Trading;
    use crate::config::TradingConfig;

    fn samples(families: &[Family], name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        families
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.samples.iter().map(|s| (s.labels.clone(), s.value)))
            .collect()
    }

    fn count(families: &[Family], op: &str, outcome: &str) -> Option<f64> {
        samples(families, "m4watch_trading_operations_total")
            .into_iter()
            .find(|(l, _)| {
                l.contains(&("operation".into(), op.into()))
                    && l.contains(&("outcome".into(), outcome.into()))
            })
            .map(|(_, v)| v)
    }

    #[test]
    fn operations_are_counted_by_outcome_from_every_path() {
        let t = Trading::new(&TradingConfig::default(), &prometheus::Registry::new()).unwrap();
        let mut c = TradingCollector::new(Arc::clone(&t));
        let mut b = t.batch();
        // StatsD: two successes (one untagged), one error standing for 4 (sampled).
        t.ingest_packet(
            b"order_execution:1|ms\norder_execution:2|ms|#outcome:success\n\
              order_execution:9|ms|@0.25|#outcome:error\nmarket_data:1|ms",
            &mut b,
        );
        // HTTP ingest: one error, one success.
        let none = BTreeMap::new();
        t.record_operation("order_execution", &none, 1_000, Outcome::Error)
            .unwrap();
        t.record_latency("order_execution", &none, 1_000).unwrap();
        // Start/end: one error.
        let id = t
            .measurements()
            .start("order_execution".into(), BTreeMap::new(), Instant::now())
            .unwrap();
        t.end_measurement(&id, Outcome::Error).unwrap();
        let f = c.run(Instant::now());
        assert_eq!(count(&f, "order_execution", "success"), Some(3.0));
        assert_eq!(count(&f, "order_execution", "error"), Some(6.0));
        // An operation seen only succeeding has its error series at 0 (rate() works).
        assert_eq!(count(&f, "market_data", "success"), Some(1.0));
        assert_eq!(count(&f, "market_data", "error"), Some(0.0));
        // Errors are latencies too: in the histogram's count.
        let view = c.latest_view();
        let op = view
            .operations
            .iter()
            .find(|o| o.operation == "order_execution")
            .unwrap();
        assert_eq!(op.count, 9);
        // Cumulative: the next interval adds, never restarts.
        t.ingest_packet(b"order_execution:1|ms|#outcome:error", &mut b);
        let f = c.run(Instant::now());
        assert_eq!(count(&f, "order_execution", "error"), Some(7.0));
        assert_eq!(count(&f, "order_execution", "success"), Some(3.0));
        // A bad outcome tag is refused and counted, not recorded.
        t.ingest_packet(b"order_execution:1|ms|#outcome:rejected", &mut b);
        let f = c.run(Instant::now());
        assert_eq!(count(&f, "order_execution", "error"), Some(7.0));
        assert_eq!(
            t.instruments.parse_errors[crate::collect::trading::line::ParseError::Outcome.index()]
                .get(),
            1
        );
    }

    #[test]
    fn throughput_objectives_are_exported_only_where_configured() {
        let config = TradingConfig {
            throughput: [
                ("order_execution".to_string(), 5.0),
                ("market_data".into(), 1000.0),
            ]
            .into(),
            ..TradingConfig::default()
        };
        let t = Trading::new(&config, &prometheus::Registry::new()).unwrap();
        let f = TradingCollector::new(t).run(Instant::now());
        let mut got = samples(&f, "m4watch_trading_throughput_objective_per_second");
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let l = |op: &str| vec![("operation".to_string(), op.to_string())];
        assert_eq!(
            got,
            [(l("market_data"), 1000.0), (l("order_execution"), 5.0)]
        );
        let t = Trading::new(&TradingConfig::default(), &prometheus::Registry::new()).unwrap();
        let f = TradingCollector::new(t).run(Instant::now());
        assert!(samples(&f, "m4watch_trading_throughput_objective_per_second").is_empty());
        let streams = samples(&f, "m4watch_trading_score_stream_info");
        assert!(streams.contains(&(
            vec![
                ("stream".into(), "market_data_dropped".into()),
                ("role".into(), "dropped".into())
            ],
            1.0
        )));
    }
}
