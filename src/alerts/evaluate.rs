//! The rule loop inside the daemon: loads rules and saved alert state, then evaluates
//! every `rules.evaluation_interval` against the store's sample ring and publishes the
//! rule engine's own metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::alerts::Alerts;
use crate::clock::{self, unix_now_ms as now_ms};
use crate::config::RulesConfig;
use crate::model::alert::State;
use crate::model::{MetricDef, def};
use crate::rules::{Alert, Change, Engine, Group, RuleKind};
use crate::shutdown::Shutdown;
use crate::store::{Family, Kind, Store};

/// Metrics of the rule engine.
pub(crate) const ALERTS: MetricDef = def(
    "m4watch_alerts",
    Kind::Gauge,
    &["alertname", "severity", "state"],
    "Alerts by rule, severity and state (pending, firing); 0 for rules with none.",
);

pub(crate) const RULE_EVALUATION_DURATION_SECONDS: MetricDef = def(
    "m4watch_rule_evaluation_duration_seconds",
    Kind::Gauge,
    &[],
    "How long the last rule evaluation cycle took, in seconds.",
);

pub(crate) const RULE_EVALUATION_FAILURES_TOTAL: MetricDef = def(
    "m4watch_rule_evaluation_failures_total",
    Kind::Counter,
    &["group"],
    "Rule evaluations that failed, per rule group.",
);

pub(crate) const RULES_LOADED: MetricDef = def(
    "m4watch_rules_loaded",
    Kind::Gauge,
    &[],
    "Number of alerting and recording rules loaded.",
);

pub(crate) const METRICS: &[MetricDef] = &[
    ALERTS,
    RULE_EVALUATION_DURATION_SECONDS,
    RULE_EVALUATION_FAILURES_TOTAL,
    RULES_LOADED,
];

/// The running rule engine.
pub(crate) struct Running {
    pub alerts: Arc<Alerts>,
    /// Replaces the rule groups on a reload.
    pub rules: RulesHandle,
    pub task: tokio::task::JoinHandle<()>,
    /// Every transition from before the first evaluation on (restored alerts that
    /// resolved while m4watch was down included), for the notifier.
    pub transitions: tokio::sync::broadcast::Receiver<Arc<crate::alerts::Transition>>,
    /// When the last evaluation cycle finished: the heartbeat beats only while it is
    /// recent, so a wedged rule loop stops the beats.
    pub evaluated: clock::Stamp,
}

/// What the sample ring keeps: only what is read from it. Of each metric name a rule
/// selects, samples as far back as its longest range selector or another reader's
/// window (`readers`: the advisor's) reaches, and of a name only instant selectors
/// read, the newest few (`3 × interval`: an evaluation looks at the newest sample at
/// or before its time). Names nobody reads are not kept: kept whole, every series
/// held a sample per step for the ring's retention (15 minutes by default), about
/// 14 KB, for each of the hundreds a host with containers exports. Of the trading
/// families with a series per StatsD series, only the series some rule selects.
/// `None` (keep everything for the retention) when a selector names no metric and
/// so may pick any series.
pub fn ring_filter(
    engine: &Engine,
    readers: &[(&str, Duration)],
    interval: Duration,
) -> Option<crate::store::ring::Filter> {
    use crate::rules::promql;
    let selectors = engine.selectors();
    let instant = 3 * interval.as_millis() as i64;
    let mut reach = std::collections::HashMap::<String, i64>::new();
    for (v, range) in &selectors {
        let name = promql::selector_name(v)?;
        let r = reach.entry(name.to_string()).or_default();
        *r = (*r).max(*range).max(instant);
    }
    for (name, window) in readers {
        let r = reach.entry(name.to_string()).or_default();
        *r = (*r).max(window.as_millis() as i64).max(instant);
    }
    let selectors: Vec<_> = selectors.into_iter().map(|(v, _)| v.clone()).collect();
    Some(crate::store::ring::Filter {
        reach,
        families: crate::collect::trading::PER_SERIES
            .iter()
            .map(|d| d.name.to_string())
            .collect(),
        keep: Box::new(move |labels| selectors.iter().any(|v| promql::selects(v, labels))),
    })
}

/// Restores saved alerts into the rule engine, turns on the store's sample ring, and
/// spawns the evaluation loop. `expected` collectors must have run once before the
/// first evaluation, so restored alerts are not resolved for lack of data. `readers`
/// are what else reads the ring: metric names and how far back (the advisor's).
pub(crate) fn start(
    rc: &RulesConfig,
    (groups, external_labels): (Vec<Group>, crate::model::Labels),
    alerts: Arc<Alerts>,
    store: Arc<Store>,
    shutdown: Shutdown,
    expected: Vec<&'static str>,
    readers: Vec<(&'static str, Duration)>,
) -> Running {
    let interval = rc.evaluation_interval.get();
    let transitions = alerts.subscribe();
    let mut engine =
        Engine::new(groups, interval.as_millis() as i64).with_external_labels(external_labels);
    let mut orphans = Vec::new();
    // Received alerts are Prometheus's to resolve (or to expire): not the engine's.
    let own: Vec<_> = alerts
        .active()
        .into_iter()
        .filter(|a| a.source == crate::model::alert::AlertSource::Rules)
        .collect();
    for a in &own {
        let alert = Alert::restored(
            a.id.clone(),
            a.labels.clone(),
            a.annotations.clone(),
            a.value,
            a.state,
            a.active_at,
            a.fired_at,
        );
        if !engine.restore(&a.alertname, alert.clone()) {
            orphans.push(orphaned(&a.group, alert));
        }
    }
    let restored = own.len() - orphans.len();
    if !orphans.is_empty() {
        alerts.apply(&orphans, std::iter::empty(), |_| String::new(), now_ms());
    }
    tracing::info!(rules = engine.rule_count(), restored, "rules loaded");
    let lookback = Duration::from_millis(crate::rules::promql::LOOKBACK_MS as u64);
    // The readers' windows too: a filter of `None` keeps everything for the retention.
    let reach = readers
        .iter()
        .map(|(_, w)| *w)
        .fold(lookback, Duration::max);
    store.keep_ring(rc.max_range.get().max(reach) + interval, interval);
    store
        .ring_mut()
        .set_filter(ring_filter(&engine, &readers, interval));
    // The rule families exist from the start (at 0), not from the first evaluation.
    store.publish(
        "rules",
        metrics(&families_shape(&engine), &alerts, &Default::default(), None),
    );
    let evaluated = clock::Stamp::default();
    let cycle = Arc::new(Cycle {
        engine: Mutex::new(engine),
        evaluated: evaluated.clone(),
        alerts: Arc::clone(&alerts),
        store,
        failures: Mutex::default(),
        readers,
        interval,
    });
    let task = tokio::spawn(run(Arc::clone(&cycle), interval, shutdown, expected));
    Running {
        alerts,
        rules: RulesHandle {
            cycle,
            interval_ms: interval.as_millis() as i64,
        },
        task,
        transitions,
        evaluated,
    }
}

/// The change that ends an alert whose rule is gone: it can never fire again, so a
/// firing one resolves and a pending one goes quietly.
fn orphaned(group: &str, alert: Alert) -> Change {
    let from = alert.state;
    let mut gone = alert;
    gone.state = if from == State::Firing {
        State::Resolved
    } else {
        State::Inactive
    };
    gone.resolved_at = Some(now_ms());
    Change {
        group: group.to_string(),
        from,
        alert: gone,
    }
}

/// What a reload uses to swap the rule groups under the running loop, and the API
/// to list them.
#[derive(Clone)]
pub(crate) struct RulesHandle {
    cycle: Arc<Cycle>,
    interval_ms: i64,
}

impl RulesHandle {
    /// The alerting rules running now, as written.
    pub(crate) fn alerting_rules(&self) -> Vec<crate::rules::AlertingRuleText> {
        self.cycle
            .engine
            .lock()
            .expect("engine lock")
            .alerting_rules()
    }

    /// Puts `groups` in place of the running ones between two evaluations. Pending
    /// and firing alerts of rules that still exist (by name) carry over, so `for`
    /// keeps counting and nothing fires twice; those of rules that are gone resolve.
    /// Returns the number of rules now loaded.
    pub(crate) fn replace(&self, groups: Vec<Group>) -> usize {
        let mut orphans = Vec::new();
        {
            let mut engine = self.cycle.engine.lock().expect("engine lock");
            let mut next = Engine::new(groups, self.interval_ms)
                .with_external_labels(engine.external_labels().clone());
            for (g, r, a) in engine.active() {
                if !next.restore(&r.name, a.clone()) {
                    orphans.push(orphaned(&g.name, a.clone()));
                }
            }
            // The new rules may select series the old ones did not: the ring keeps
            // what they name from now on (their history builds up from here).
            let filter = ring_filter(&next, &self.cycle.readers, self.cycle.interval);
            self.cycle.store.ring_mut().set_filter(filter);
            *engine = next;
        }
        if !orphans.is_empty() {
            self.cycle
                .alerts
                .apply(&orphans, std::iter::empty(), |_| String::new(), now_ms());
        }
        self.cycle.engine.lock().expect("engine lock").rule_count()
    }
}

/// What one evaluation cycle works on, shared by every cycle.
struct Cycle {
    engine: Mutex<Engine>,
    /// Marked at the end of every evaluation ([`Running::evaluated`]).
    evaluated: clock::Stamp,
    alerts: Arc<Alerts>,
    store: Arc<Store>,
    /// Failed evaluations per group since start-up.
    failures: Mutex<BTreeMap<String, u64>>,
    /// What else reads the sample ring ([`ring_filter`]).
    readers: Vec<(&'static str, Duration)>,
    interval: Duration,
}

async fn run(
    cycle: Arc<Cycle>,
    interval: Duration,
    mut shutdown: Shutdown,
    expected: Vec<&'static str>,
) {
    // Wait until every expected collector has run, then put their samples in the ring.
    loop {
        let ran = cycle.store.collectors();
        if expected.iter().all(|c| ran.contains_key(*c)) {
            cycle.store.append_ring_now();
            break;
        }
        tokio::select! {
            _ = shutdown.recv() => { flush(&cycle.alerts).await; return; }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    clock::every(interval, shutdown, || Arc::clone(&cycle).evaluate()).await;
    flush(&cycle.alerts).await;
}

impl Cycle {
    /// One evaluation: rules against the ring (off the async workers), changes into
    /// alert state, the rule engine's metrics into the store.
    async fn evaluate(self: Arc<Self>) {
        let c = Arc::clone(&self);
        let result = tokio::task::spawn_blocking(move || {
            let began = Instant::now();
            let mut engine = c.engine.lock().expect("engine lock");
            let t = now_ms();
            let cycle = engine.eval(&mut c.store.ring_mut(), t);
            let took = began.elapsed();
            let severities: HashMap<String, String> = engine
                .groups
                .iter()
                .flat_map(|g| g.rules.iter())
                .map(|r| (r.name.clone(), r.severity()))
                .collect();
            c.alerts.apply(
                &cycle.changes,
                engine.active().map(|(g, _, al)| (g.name.as_str(), al)),
                |name| severities.get(name).cloned().unwrap_or_default(),
                t,
            );
            (cycle, took, families_shape(&engine))
        })
        .await;
        let Ok((cycle, took, shape)) = result else {
            tracing::error!("rule evaluation panicked");
            return;
        };
        let failures = {
            let mut f = self.failures.lock().expect("failures lock");
            for (g, _) in &cycle.failures {
                *f.entry(g.clone()).or_default() += 1;
            }
            f.clone()
        };
        self.store.publish(
            "rules",
            metrics(&shape, &self.alerts, &failures, Some(took)),
        );
        self.evaluated.mark();
    }
}

async fn flush(alerts: &Arc<Alerts>) {
    let a = Arc::clone(alerts);
    let _ = tokio::task::spawn_blocking(move || a.flush()).await;
}

/// What the metrics need to know about the loaded rules.
struct Shape {
    rules: usize,
    groups: Vec<String>,
    alerting: Vec<(String, String)>,
}

fn families_shape(engine: &Engine) -> Shape {
    let mut alerting: Vec<(String, String)> = engine
        .groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter(|r| matches!(r.kind, RuleKind::Alert { .. }))
        .map(|r| (r.name.clone(), r.severity()))
        .collect();
    alerting.sort();
    alerting.dedup();
    Shape {
        rules: engine.rule_count(),
        groups: engine.groups.iter().map(|g| g.name.clone()).collect(),
        alerting,
    }
}

fn metrics(
    shape: &Shape,
    alerts: &Alerts,
    failures: &BTreeMap<String, u64>,
    took: Option<Duration>,
) -> Vec<Family> {
    let mut counts = alerts.counts();
    let mut by_state = Family::new(&ALERTS);
    for (name, sev) in &shape.alerting {
        for state in ["pending", "firing"] {
            let n = counts
                .remove(&(name.clone(), sev.clone(), state))
                .unwrap_or(0);
            by_state.push(
                [
                    ("alertname", name.as_str()),
                    ("severity", sev.as_str()),
                    ("state", state),
                ],
                n as f64,
            );
        }
    }
    // Alerts whose severity label came from a template rather than the rule.
    for ((name, sev, state), n) in counts {
        by_state.push(
            [
                ("alertname", name.as_str()),
                ("severity", sev.as_str()),
                ("state", state),
            ],
            n as f64,
        );
    }
    let mut duration = Family::new(&RULE_EVALUATION_DURATION_SECONDS);
    if let Some(took) = took {
        duration.push_value(took.as_secs_f64());
    }
    let mut fails = Family::new(&RULE_EVALUATION_FAILURES_TOTAL);
    for g in &shape.groups {
        fails.push(
            [("group", g.as_str())],
            failures.get(g).copied().unwrap_or(0) as f64,
        );
    }
    let mut loaded = Family::new(&RULES_LOADED);
    loaded.push_value(shape.rules as f64);
    vec![by_state, duration, fails, loaded]
}
