//! Feeds alert state into the notifier: the firing, resolved and acknowledged
//! transitions of [`crate::alerts::Alerts::subscribe`], one feed for the rule engine's
//! evaluations and the API's acknowledgements alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::broadcast::error::RecvError;

use super::{AlertEvent, AlertState, Notifier};
use crate::alerts::Transition;
use crate::model::alert::State;
use crate::shutdown::Shutdown;

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

fn map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

/// The notification for a transition, if it is one people hear about: pending and
/// inactive are not, a silenced alert is not, and an acknowledged alert only when it
/// resolves. An acknowledgement itself (`firing -> firing`, acknowledged) always is
/// (PagerDuty `acknowledge`, escalation stops).
///
/// `starts_at` is when the alert began firing, as the transition carries it: a resolve
/// sent late (a lagging feed, a restart) still names when its incident began.
pub(crate) fn event_from_transition(t: &Transition) -> Option<AlertEvent> {
    let (state, ends_at) = match (t.from, t.to) {
        (State::Firing, State::Firing) if t.acknowledged => (AlertState::Acknowledged, None),
        (_, State::Firing) if t.silenced || t.acknowledged => return None,
        (_, State::Firing) => (AlertState::Firing, None),
        (State::Firing, State::Resolved) if !t.silenced => (AlertState::Resolved, Some(at(t.at))),
        _ => return None,
    };
    Some(AlertEvent {
        fingerprint: t.id.clone(),
        labels: map(&t.labels),
        annotations: map(&t.annotations),
        state,
        starts_at: at(t.fired_at.unwrap_or(t.at)),
        ends_at,
        value: t.value.is_finite().then_some(t.value),
        source: t.source,
        generator_url: t.generator_url.clone(),
    })
}

/// Forwards transitions from `rx` to the notifier until shutdown. The rule engine
/// subscribes `rx` before its first evaluation, so the transitions a restart produces
/// (an alert that resolved while m4watch was down) are sent too.
pub(crate) fn spawn(
    mut rx: tokio::sync::broadcast::Receiver<Arc<Transition>>,
    notifier: Notifier,
    mut shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let t = tokio::select! {
                _ = shutdown.recv() => break,
                t = rx.recv() => t,
            };
            match t {
                Ok(t) => {
                    if let Some(ev) = event_from_transition(&t) {
                        notifier.submit(ev).await;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "notifier fell behind the alert transitions");
                    notifier.record_missed(n);
                }
                Err(RecvError::Closed) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Alerts;
    use crate::model::alert::{AlertSource, Severity};

    fn transition(from: State, to: State) -> Transition {
        Transition {
            id: "abc".into(),
            source: AlertSource::Rules,
            generator_url: None,
            alertname: "PCoreHigh".into(),
            severity: Severity::Warning,
            from,
            to,
            at: 1_700_000_000_000,
            labels: vec![("alertname".into(), "PCoreHigh".into())],
            annotations: vec![("summary".into(), "hot".into())],
            value: 0.97,
            fired_at: None,
            acknowledged: false,
            silenced: false,
        }
    }

    #[test]
    fn only_firing_and_resolved_reach_people() {
        let fire = event_from_transition(&transition(State::Pending, State::Firing)).unwrap();
        assert_eq!((fire.state, fire.value), (AlertState::Firing, Some(0.97)));
        assert_eq!(fire.fingerprint, "abc");
        let res = event_from_transition(&transition(State::Firing, State::Resolved)).unwrap();
        assert_eq!(res.state, AlertState::Resolved);
        assert!(res.ends_at.is_some());
        assert!(event_from_transition(&transition(State::Inactive, State::Pending)).is_none());
        // A pending alert that clears was never announced: nothing to resolve.
        assert!(event_from_transition(&transition(State::Pending, State::Resolved)).is_none());
    }

    #[test]
    fn silenced_and_acknowledged_repeats_stay_quiet_but_resolves_go_out() {
        let mut t = transition(State::Pending, State::Firing);
        t.silenced = true;
        assert!(event_from_transition(&t).is_none());
        let mut t = transition(State::Pending, State::Firing);
        t.acknowledged = true;
        assert!(event_from_transition(&t).is_none());
        let mut t = transition(State::Firing, State::Resolved);
        t.acknowledged = true;
        assert_eq!(
            event_from_transition(&t).unwrap().state,
            AlertState::Resolved
        );
    }

    #[test]
    fn an_acknowledgement_is_announced_even_when_silenced() {
        let mut t = transition(State::Firing, State::Firing);
        t.acknowledged = true;
        t.silenced = true;
        t.fired_at = Some(1_600_000_000_000);
        let ev = event_from_transition(&t).unwrap();
        assert_eq!(ev.state, AlertState::Acknowledged);
        assert_eq!(ev.starts_at.timestamp_millis(), 1_600_000_000_000);
        assert!(ev.ends_at.is_none());
    }

    /// Issue 24: a bridge that reads a fire and its resolve only after both happened
    /// (it lagged, or the alert flapped within one evaluation of the bridge) still
    /// names when the incident began, in both events. It used to look the start up
    /// among the active alerts, where a resolved alert no longer is.
    #[test]
    fn a_fire_and_resolve_seen_late_both_carry_the_firing_time() {
        let alerts = Alerts::new(Vec::new(), Vec::new(), None, 60_000);
        let mut rx = alerts.subscribe();
        let received = |ends_at: Option<i64>| crate::alerts::Received {
            labels: vec![("alertname".into(), "DiskFull".into())],
            annotations: Vec::new(),
            starts_at: 1_000,
            ends_at,
            generator_url: None,
        };
        alerts.receive(vec![received(None)], 5_000);
        alerts.receive(vec![received(Some(6_000))], 6_000);
        let events: Vec<AlertEvent> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|t| event_from_transition(&t))
            .collect();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.state, e.starts_at.timestamp_millis()))
            .collect();
        assert_eq!(
            seen,
            [(AlertState::Firing, 1_000), (AlertState::Resolved, 1_000)]
        );
        assert_eq!(events[1].ends_at.unwrap().timestamp_millis(), 6_000);
    }

    #[tokio::test]
    async fn transitions_missed_by_a_lagging_bridge_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let registry = prometheus::Registry::new();
        let (trigger, shutdown) = crate::shutdown::channel();
        let (notifier, _tasks) = Notifier::start(
            &Default::default(),
            &crate::config::Identity::of_this_host(),
            crate::notify::outbox::Outbox::open(&dir.path().join("m4watch.db")).unwrap(),
            &Default::default(),
            &registry,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let alerts = Arc::new(Alerts::new(Vec::new(), Vec::new(), None, 60_000));
        let rx = alerts.subscribe();
        // 1100 transitions before the bridge reads one: the feed keeps the last 1024.
        let changes: Vec<crate::rules::Change> = (0..1100)
            .map(|i| crate::rules::Change {
                group: "g".into(),
                from: State::Inactive,
                alert: crate::rules::Alert::restored(
                    format!("id{i}"),
                    vec![("alertname".into(), format!("A{i}"))],
                    Vec::new(),
                    1.0,
                    State::Pending,
                    1000,
                    None,
                ),
            })
            .collect();
        alerts.apply(&changes, std::iter::empty(), |_| String::new(), 1000);
        let task = spawn(rx, notifier, shutdown);
        let missed = || {
            registry
                .gather()
                .iter()
                .find(|f| f.name() == "m4watch_notification_transitions_missed_total")
                .map(|f| f.get_metric()[0].get_counter().get_value())
        };
        for _ in 0..100 {
            if missed() == Some(76.0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(missed(), Some(76.0));
        trigger.fire();
        task.await.unwrap();
    }
}
