//! Alert state: inactive -> pending -> firing -> resolved, acknowledgements, silences,
//! persisted through [`crate::persist::alerts`] so it survives restarts.
//!
//! The rule engine decides when an alert changes state; [`Alerts::apply`] records each
//! change as a [`Transition`], saves it, and broadcasts it. A notifier consumes
//! transitions from [`Alerts::subscribe`] (live) or the `alert_transitions` table
//! (durable, by `seq`), and should not notify a transition whose `silenced` is true,
//! nor repeat one whose `acknowledged` is true unless it goes to `resolved`.

pub(crate) mod evaluate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::alert::{AlertSource, Severity, SilenceState, State};
use crate::persist::alerts::History;
use crate::persist::storage::StorageFault;
use crate::rules::Change;

use crate::model::Labels;
pub(crate) use crate::model::alert::{Ack, Silence, StoredAlert, Transition};

/// Why an acknowledgement or silence request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AlertError {
    #[error("no alert with id {0}")]
    NoAlert(String),
    #[error("alert {0} is resolved; only pending or firing alerts can be acknowledged")]
    Resolved(String),
    #[error("no silence with id {0}")]
    NoSilence(String),
}

#[derive(Default)]
struct Inner {
    alerts: BTreeMap<String, StoredAlert>,
    silences: Vec<Silence>,
    next_silence: u64,
}

/// One alert as `POST /api/v2/alerts` delivers it, times in ms.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Sorted by name.
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub generator_url: Option<String>,
}

/// Alertmanager's `resolve_timeout`: a received firing alert without `endsAt` resolves
/// this long after its last post.
pub(crate) const RESOLVE_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// Every alert m4watch knows, with silences and the transition feed.
pub(crate) struct Alerts {
    inner: Mutex<Inner>,
    /// Transitions behind an `Arc`: the channel keeps 1024 slots for a lagging reader,
    /// and a slot holding a whole transition was 216 bytes (issue 17).
    tx: broadcast::Sender<Arc<Transition>>,
    history: Option<History>,
    /// How long resolved alerts stay listed (ms).
    resolved_retention_ms: i64,
    resolve_timeout_ms: i64,
}

impl Alerts {
    /// Alert state seeded with what the database held; `history` persists changes.
    pub(crate) fn new(
        saved: Vec<StoredAlert>,
        silences: Vec<Silence>,
        history: Option<History>,
        resolved_retention_ms: i64,
    ) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let next_silence = silences.len() as u64;
        Alerts {
            inner: Mutex::new(Inner {
                alerts: saved.into_iter().map(|a| (a.id.clone(), a)).collect(),
                silences,
                next_silence,
            }),
            tx,
            history,
            resolved_retention_ms,
            resolve_timeout_ms: RESOLVE_TIMEOUT_MS,
        }
    }

    /// Live transitions, for a notifier.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Transition>> {
        self.tx.subscribe()
    }

    /// Alerts that were pending or firing when state was saved, for the engine to
    /// continue from.
    pub(crate) fn active(&self) -> Vec<StoredAlert> {
        let inner = self.inner.lock().expect("alerts lock");
        inner
            .alerts
            .values()
            .filter(|a| matches!(a.state, State::Pending | State::Firing))
            .cloned()
            .collect()
    }

    /// Every firing alert as the transition that made it fire, silenced and
    /// acknowledged as of `now`: what a notifier starting up takes for the alerts
    /// whose announcement a crash may have cut off (the store commits the state
    /// before the API answers; the notifier's group is saved after).
    pub(crate) fn firing_as_transitions(&self, now: i64) -> Vec<Transition> {
        let inner = self.inner.lock().expect("alerts lock");
        inner
            .alerts
            .values()
            .filter(|a| a.state == State::Firing)
            .map(|a| Transition {
                id: a.id.clone(),
                source: a.source,
                generator_url: a.generator_url.clone(),
                alertname: a.alertname.clone(),
                severity: a.severity,
                from: State::Pending,
                to: State::Firing,
                at: a.fired_at.unwrap_or(now),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                value: a.value,
                fired_at: a.fired_at,
                acknowledged: a.ack.is_some(),
                silenced: inner.silences.iter().any(|s| s.silences(&a.labels, now)),
            })
            .collect()
    }

    /// Records one evaluation cycle: the changes the engine reported, and the current
    /// value and annotations of every active alert.
    pub(crate) fn apply<'a>(
        &self,
        changes: &[Change],
        current: impl Iterator<Item = (&'a str, &'a crate::rules::Alert)>,
        severity_of: impl Fn(&str) -> String,
        now: i64,
    ) {
        let mut inner = self.inner.lock().expect("alerts lock");
        for c in changes {
            let a = &c.alert;
            let alertname = crate::store::ring::label_of(&a.labels, "alertname").to_string();
            // Stored in the model's word: an alias or an unknown templated word
            // becomes the severity it is treated as.
            let severity = match crate::store::ring::label_of(&a.labels, "severity") {
                "" => Severity::of_label(Some(&severity_of(&alertname))),
                s => Severity::of_label(Some(s)),
            };
            let prev_ack = inner.alerts.get(&a.id).and_then(|s| s.ack.clone());
            let silenced = inner.silences.iter().any(|s| s.silences(&a.labels, now));
            let t = Transition {
                id: a.id.clone(),
                source: AlertSource::Rules,
                generator_url: None,
                alertname: alertname.clone(),
                severity,
                from: c.from,
                to: a.state,
                at: now,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                value: a.value,
                fired_at: a.fired_at,
                acknowledged: prev_ack.is_some(),
                silenced,
            };
            if let Some(h) = &self.history {
                h.transition(&t);
            }
            let _ = self.tx.send(Arc::new(t));
            if a.state == State::Inactive {
                // A pending alert that never fired leaves nothing to show.
                inner.alerts.remove(&a.id);
                if let Some(h) = &self.history {
                    h.delete_alert(&a.id);
                }
                continue;
            }
            let stored = StoredAlert {
                source: AlertSource::Rules,
                expires_at: None,
                generator_url: None,
                id: a.id.clone(),
                alertname,
                group: c.group.clone(),
                severity,
                state: a.state,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                value: a.value,
                active_at: a.active_at,
                fired_at: a.fired_at,
                resolved_at: a.resolved_at,
                // An acknowledgement lasts until the alert resolves.
                ack: if a.state == State::Resolved {
                    None
                } else {
                    prev_ack
                },
            };
            if let Some(h) = &self.history {
                h.save_alert(&stored);
            }
            inner.alerts.insert(a.id.clone(), stored);
        }
        for (_, a) in current {
            if let Some(s) = inner.alerts.get_mut(&a.id) {
                s.value = a.value;
                s.annotations.clone_from(&a.annotations);
            }
        }
        // Forget resolved alerts past the retention, and expired silences.
        let cutoff = now - self.resolved_retention_ms;
        let old: Vec<String> = inner
            .alerts
            .values()
            .filter(|a| a.state == State::Resolved && a.resolved_at.is_some_and(|r| r < cutoff))
            .map(|a| a.id.clone())
            .collect();
        for id in old {
            inner.alerts.remove(&id);
            if let Some(h) = &self.history {
                h.delete_alert(&id);
            }
        }
        let expired: Vec<String> = inner
            .silences
            .iter()
            .filter(|s| s.ends_at < cutoff)
            .map(|s| s.id.clone())
            .collect();
        inner.silences.retain(|s| s.ends_at >= cutoff);
        for id in expired {
            if let Some(h) = &self.history {
                h.delete_silence(&id);
            }
        }
    }

    /// Takes alerts posted to `POST /api/v2/alerts` into the same list as the rule
    /// engine's, so they show in the API, health and the summary and notify through the
    /// same feed. A received alert fires until its `endsAt` (Prometheus re-posts firing
    /// alerts and moves it on); one whose `endsAt` has passed resolves. An id that
    /// m4watch's own rules hold active stays theirs: the same label set from both
    /// sources is one alert and notifies once.
    pub(crate) fn receive(&self, received: Vec<Received>, now: i64) {
        let mut inner = self.inner.lock().expect("alerts lock");
        for r in received {
            let id = crate::model::alert::fingerprint(&r.labels);
            let existing = inner.alerts.get(&id);
            if existing.is_some_and(|a| {
                a.source == AlertSource::Rules && matches!(a.state, State::Pending | State::Firing)
            }) {
                continue;
            }
            let firing_before = existing.is_some_and(|a| a.state == State::Firing);
            let resolved = r.ends_at.is_some_and(|e| e <= now);
            let alertname = crate::store::ring::label_of(&r.labels, "alertname").to_string();
            let label = crate::store::ring::label_of(&r.labels, "severity");
            let severity = Severity::of_label((!label.is_empty()).then_some(label));
            let (from, to) = match (firing_before, resolved) {
                (false, true) => continue, // a resolve for an alert never seen firing
                (true, true) => (State::Firing, State::Resolved),
                (true, false) => {
                    // Still firing: move its expiry on and keep its annotations fresh.
                    let a = inner.alerts.get_mut(&id).expect("present");
                    a.expires_at = Some(r.ends_at.unwrap_or(now + self.resolve_timeout_ms));
                    a.annotations = r.annotations;
                    if let Some(h) = &self.history {
                        h.save_alert(a);
                    }
                    continue;
                }
                (false, false) => (State::Inactive, State::Firing),
            };
            let prev_ack = existing.and_then(|a| a.ack.clone());
            let starts_at = r.starts_at.min(now);
            let stored = StoredAlert {
                source: AlertSource::Prometheus,
                expires_at: (to == State::Firing)
                    .then(|| r.ends_at.unwrap_or(now + self.resolve_timeout_ms)),
                generator_url: r.generator_url.clone(),
                id: id.clone(),
                alertname: alertname.clone(),
                group: AlertSource::Prometheus.as_str().into(),
                severity,
                state: to,
                labels: r.labels.clone(),
                annotations: r.annotations.clone(),
                value: f64::NAN,
                active_at: existing.map_or(starts_at, |a| a.active_at),
                fired_at: Some(existing.and_then(|a| a.fired_at).unwrap_or(starts_at)),
                resolved_at: (to == State::Resolved).then(|| r.ends_at.unwrap_or(now)),
                ack: if to == State::Resolved {
                    None
                } else {
                    prev_ack.clone()
                },
            };
            self.record(&mut inner, stored, from, now, prev_ack.is_some());
        }
    }

    /// Resolves received alerts whose `endsAt` has passed without a new post.
    pub(crate) fn expire(&self, now: i64) {
        let mut inner = self.inner.lock().expect("alerts lock");
        let due: Vec<StoredAlert> = inner
            .alerts
            .values()
            .filter(|a| a.source == AlertSource::Prometheus && a.state == State::Firing)
            .filter(|a| a.expires_at.is_some_and(|e| e <= now))
            .cloned()
            .collect();
        for mut a in due {
            let acked = a.ack.is_some();
            a.state = State::Resolved;
            a.resolved_at = a.expires_at;
            a.expires_at = None;
            a.ack = None;
            self.record(&mut inner, a, State::Firing, now, acked);
        }
    }

    /// Stores a received alert's new state and announces the change on the feed.
    fn record(&self, inner: &mut Inner, a: StoredAlert, from: State, now: i64, acked: bool) {
        let t = Transition {
            id: a.id.clone(),
            source: a.source,
            generator_url: a.generator_url.clone(),
            alertname: a.alertname.clone(),
            severity: a.severity,
            from,
            to: a.state,
            at: now,
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            value: a.value,
            fired_at: a.fired_at,
            acknowledged: acked,
            silenced: inner.silences.iter().any(|s| s.silences(&a.labels, now)),
        };
        if let Some(h) = &self.history {
            h.transition(&t);
            h.save_alert(&a);
        }
        let _ = self.tx.send(Arc::new(t));
        inner.alerts.insert(a.id.clone(), a);
    }

    /// Alerts, optionally filtered by state and severity, with the silence covering
    /// each (if any) at `now`: the worst severity first, then the newest.
    pub(crate) fn list(
        &self,
        state: Option<State>,
        severity: Option<Severity>,
        now: i64,
    ) -> Vec<(StoredAlert, Option<String>)> {
        let inner = self.inner.lock().expect("alerts lock");
        let mut out: Vec<_> = inner
            .alerts
            .values()
            .filter(|a| state.is_none_or(|s| a.state == s))
            .filter(|a| severity.is_none_or(|s| a.severity == s))
            .map(|a| {
                let by = inner
                    .silences
                    .iter()
                    .find(|s| s.silences(&a.labels, now))
                    .map(|s| s.id.clone());
                (a.clone(), by)
            })
            .collect();
        out.sort_by(|a, b| {
            b.0.severity
                .cmp(&a.0.severity)
                .then(b.0.active_at.cmp(&a.0.active_at))
                .then(a.0.id.cmp(&b.0.id))
        });
        out
    }

    /// Acknowledges a pending or firing alert.
    pub(crate) fn acknowledge(
        &self,
        id: &str,
        by: &str,
        comment: &str,
        now: i64,
    ) -> Result<StoredAlert, AlertError> {
        let mut inner = self.inner.lock().expect("alerts lock");
        let inner = &mut *inner;
        let a = inner
            .alerts
            .get_mut(id)
            .ok_or_else(|| AlertError::NoAlert(id.to_string()))?;
        if a.state == State::Resolved {
            return Err(AlertError::Resolved(id.to_string()));
        }
        a.ack = Some(Ack {
            by: by.to_string(),
            comment: comment.to_string(),
            at: now,
        });
        if let Some(h) = &self.history {
            h.save_alert(a);
        }
        if a.state == State::Firing {
            // The notifier hears of it the way it hears of evaluations: as a transition
            // on the same feed (firing -> firing, acknowledged). It is not stored as a
            // transition; the alert row keeps who acknowledged it and when.
            let _ = self.tx.send(Arc::new(Transition {
                id: a.id.clone(),
                source: a.source,
                generator_url: a.generator_url.clone(),
                alertname: a.alertname.clone(),
                severity: a.severity,
                from: State::Firing,
                to: State::Firing,
                at: now,
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                value: a.value,
                fired_at: a.fired_at,
                acknowledged: true,
                silenced: inner.silences.iter().any(|s| s.silences(&a.labels, now)),
            }));
        }
        Ok(a.clone())
    }

    /// Adds a silence and returns it with its id.
    pub(crate) fn add_silence(&self, s: Silence) -> Silence {
        let mut inner = self.inner.lock().expect("alerts lock");
        self.insert_silence(&mut inner, s)
    }

    /// Gives `s` a new id, stores it and returns it.
    fn insert_silence(&self, inner: &mut Inner, mut s: Silence) -> Silence {
        inner.next_silence += 1;
        s.id = format!(
            "{}-{}",
            crate::model::alert::fingerprint(&vec![("t".to_string(), s.starts_at.to_string())]),
            inner.next_silence
        );
        if let Some(h) = &self.history {
            h.save_silence(&s);
        }
        inner.silences.push(s.clone());
        s
    }

    /// Alertmanager's create-or-update of a silence (`POST /api/v2/silences`). With no
    /// `id`, `s` is a new silence. With the `id` of a known silence, that silence is
    /// changed in place when only what Alertmanager lets change differs: the same
    /// matchers, and for an active silence the same start and an end not in the past,
    /// for a pending one a start not in the past; otherwise the old one is expired (if
    /// it was not already) and `s` replaces it under a new id. A new silence that
    /// would start in the past starts at `now`. Returns the silence as stored.
    pub(crate) fn put_silence(
        &self,
        id: Option<&str>,
        mut s: Silence,
        now: i64,
    ) -> Result<Silence, AlertError> {
        let mut inner = self.inner.lock().expect("alerts lock");
        s.updated_at = now;
        if let Some(id) = id {
            let i = inner
                .silences
                .iter()
                .position(|x| x.id == id)
                .ok_or_else(|| AlertError::NoSilence(id.to_string()))?;
            let prev = &inner.silences[i];
            let updatable = prev.matchers == s.matchers
                && match prev.state(now) {
                    SilenceState::Active => s.starts_at == prev.starts_at && s.ends_at >= now,
                    SilenceState::Pending => s.starts_at >= now,
                    SilenceState::Expired => false,
                };
            if updatable {
                s.id = id.to_string();
                if let Some(h) = &self.history {
                    h.save_silence(&s);
                }
                inner.silences[i] = s.clone();
                return Ok(s);
            }
            expire(&mut inner.silences[i], now, self.history.as_ref());
        }
        s.starts_at = s.starts_at.max(now);
        Ok(self.insert_silence(&mut inner, s))
    }

    /// One silence by id.
    pub(crate) fn silence(&self, id: &str) -> Option<Silence> {
        let inner = self.inner.lock().expect("alerts lock");
        inner.silences.iter().find(|s| s.id == id).cloned()
    }

    /// Expires a silence at `now`, as Alertmanager's delete does: an active one ends
    /// now, a pending one starts and ends now, an expired one stays as it is. It stays
    /// listed (expired) for `rules.resolved_retention`.
    pub(crate) fn expire_silence(&self, id: &str, now: i64) -> Result<Silence, AlertError> {
        let mut inner = self.inner.lock().expect("alerts lock");
        let s = inner
            .silences
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| AlertError::NoSilence(id.to_string()))?;
        expire(s, now, self.history.as_ref());
        Ok(s.clone())
    }

    /// Every silence still known (active, pending or recently expired).
    pub(crate) fn silences(&self) -> Vec<Silence> {
        self.inner.lock().expect("alerts lock").silences.clone()
    }

    /// The firing alerts whose end (a received alert's `endsAt`) has not passed, each
    /// with the ids of every silence covering it at `now`: what an Alertmanager holds.
    pub(crate) fn firing(&self, now: i64) -> Vec<(StoredAlert, Vec<String>)> {
        let inner = self.inner.lock().expect("alerts lock");
        inner
            .alerts
            .values()
            .filter(|a| a.state == State::Firing && a.expires_at.is_none_or(|e| e > now))
            .map(|a| {
                let by = inner
                    .silences
                    .iter()
                    .filter(|s| s.silences(&a.labels, now))
                    .map(|s| s.id.clone())
                    .collect();
                (a.clone(), by)
            })
            .collect()
    }

    /// Removes a silence.
    pub(crate) fn delete_silence(&self, id: &str) -> Result<(), AlertError> {
        let mut inner = self.inner.lock().expect("alerts lock");
        let before = inner.silences.len();
        inner.silences.retain(|s| s.id != id);
        if inner.silences.len() == before {
            return Err(AlertError::NoSilence(id.to_string()));
        }
        if let Some(h) = &self.history {
            h.delete_silence(id);
        }
        Ok(())
    }

    /// Counts of pending and firing alerts by (alertname, severity, state).
    pub(crate) fn counts(&self) -> BTreeMap<(String, String, &'static str), u64> {
        let inner = self.inner.lock().expect("alerts lock");
        let mut out = BTreeMap::new();
        for a in inner.alerts.values() {
            if matches!(a.state, State::Pending | State::Firing) {
                *out.entry((
                    a.alertname.clone(),
                    a.severity.to_string(),
                    a.state.as_str(),
                ))
                .or_default() += 1;
            }
        }
        out
    }

    /// Waits, off the async workers, until every change so far is committed, or says
    /// why it is not: what a write request awaits before it answers 2xx.
    pub(crate) async fn commit(&self) -> Result<(), StorageFault> {
        let Some(h) = self.history.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || h.commit())
            .await
            .unwrap_or_else(|e| {
                Err(StorageFault {
                    reason: crate::persist::storage::Reason::Io,
                    detail: format!("the alert-state writer failed: {e}"),
                })
            })
    }

    /// Waits until every change so far is on disk. Blocking.
    pub(crate) fn flush(&self) {
        if let Some(h) = &self.history {
            h.flush();
        }
    }
}

/// Ends a silence at `now` unless it has ended already (a pending one starts and ends
/// now), and saves the change.
fn expire(s: &mut Silence, now: i64, history: Option<&History>) {
    match s.state(now) {
        SilenceState::Expired => return,
        SilenceState::Pending => s.starts_at = now,
        SilenceState::Active => {}
    }
    s.ends_at = now;
    s.updated_at = now;
    if let Some(h) = history {
        h.save_silence(s);
    }
}

/// Resolves expired received alerts once a second until shutdown.
pub(crate) fn spawn_expiry(
    alerts: Arc<Alerts>,
    shutdown: crate::shutdown::Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(crate::clock::every(
        std::time::Duration::from_secs(1),
        shutdown,
        move || {
            alerts.expire(crate::clock::unix_now_ms());
            std::future::ready(())
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::MatcherSpec;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn change(from: State, to: State, t: i64) -> Change {
        let mut a = crate::rules::Alert::restored(
            "id1".into(),
            labels(&[("alertname", "Hot"), ("severity", "critical")]),
            labels(&[("summary", "hot")]),
            2.0,
            to,
            1000,
            (to == State::Firing).then_some(2000),
        );
        if to == State::Resolved {
            a.resolved_at = Some(t);
        }
        Change {
            group: "g".into(),
            from,
            alert: a,
        }
    }

    #[test]
    fn transitions_carry_ack_and_silence_and_acks_end_at_resolve() {
        let alerts = Alerts::new(Vec::new(), Vec::new(), None, 60_000);
        let mut rx = alerts.subscribe();
        let none = |_: &str| String::new();
        alerts.apply(
            &[change(State::Inactive, State::Pending, 1000)],
            std::iter::empty(),
            none,
            1000,
        );
        assert_eq!(
            alerts.acknowledge("nope", "a", "", 1500),
            Err(AlertError::NoAlert("nope".into()))
        );
        alerts.acknowledge("id1", "alice", "on it", 1500).unwrap();
        alerts.add_silence(Silence {
            id: String::new(),
            matchers: vec![
                MatcherSpec {
                    name: "alertname".into(),
                    value: "Hot".into(),
                    is_regex: false,
                    is_equal: true,
                }
                .compile()
                .unwrap(),
            ],
            starts_at: 0,
            ends_at: 10_000,
            updated_at: 0,
            created_by: "bob".into(),
            comment: String::new(),
        });
        alerts.apply(
            &[change(State::Pending, State::Firing, 2000)],
            std::iter::empty(),
            none,
            2000,
        );
        let listed = alerts.list(Some(State::Firing), Some(Severity::Critical), 2000);
        assert_eq!(listed.len(), 1);
        assert!(listed[0].1.is_some(), "silenced");
        assert_eq!(listed[0].0.ack.as_ref().unwrap().by, "alice");
        alerts.apply(
            &[change(State::Firing, State::Resolved, 3000)],
            std::iter::empty(),
            none,
            3000,
        );
        let resolved = &alerts.list(Some(State::Resolved), None, 3000)[0].0;
        assert!(
            resolved.ack.is_none(),
            "an ack lasts until the alert resolves"
        );
        assert_eq!(
            alerts.acknowledge("id1", "a", "", 3500),
            Err(AlertError::Resolved("id1".into()))
        );
        let seen: Vec<(State, State, bool, bool)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|t| (t.from, t.to, t.acknowledged, t.silenced))
            .collect();
        assert_eq!(
            seen,
            vec![
                (State::Inactive, State::Pending, false, false),
                (State::Pending, State::Firing, true, true),
                (State::Firing, State::Resolved, true, true),
            ]
        );
        // Past the retention, a resolved alert is forgotten.
        alerts.apply(&[], std::iter::empty(), none, 3000 + 60_001);
        assert!(alerts.list(None, None, 70_000).is_empty());
    }

    #[test]
    fn acknowledging_a_firing_alert_is_a_transition_on_the_same_feed() {
        let alerts = Alerts::new(Vec::new(), Vec::new(), None, 60_000);
        let none = |_: &str| String::new();
        alerts.apply(
            &[change(State::Inactive, State::Firing, 2000)],
            std::iter::empty(),
            none,
            2000,
        );
        let mut rx = alerts.subscribe();
        alerts.acknowledge("id1", "alice", "on it", 2500).unwrap();
        let t = rx.try_recv().expect("the acknowledgement is broadcast");
        assert_eq!(
            (t.from, t.to, t.acknowledged, t.at, t.id.as_str()),
            (State::Firing, State::Firing, true, 2500, "id1")
        );
        assert!(rx.try_recv().is_err(), "one transition per acknowledgement");
    }

    fn silence(matcher: &str, starts_at: i64, ends_at: i64) -> Silence {
        Silence {
            id: String::new(),
            matchers: vec![matcher.parse().unwrap()],
            starts_at,
            ends_at,
            updated_at: starts_at,
            created_by: "alice".into(),
            comment: "first".into(),
        }
    }

    #[test]
    fn silences_are_updated_replaced_and_expired_as_alertmanager_does() {
        let alerts = Alerts::new(Vec::new(), Vec::new(), None, 60_000);
        // A new silence that would start in the past starts now.
        let first = alerts
            .put_silence(None, silence("alertname=\"Hot\"", 500, 5_000), 1_000)
            .unwrap();
        assert_eq!((first.starts_at, first.updated_at), (1_000, 1_000));
        assert_eq!(
            alerts.put_silence(Some("nope"), silence("a=\"b\"", 1_000, 2_000), 1_000),
            Err(AlertError::NoSilence("nope".into()))
        );
        // Same matchers and start, a later end: changed in place, same id.
        let mut longer = silence("alertname=\"Hot\"", 1_000, 9_000);
        longer.comment = "longer".into();
        let same = alerts.put_silence(Some(&first.id), longer, 2_000).unwrap();
        assert_eq!(same.id, first.id);
        assert_eq!((same.ends_at, same.updated_at), (9_000, 2_000));
        assert_eq!(alerts.silences().len(), 1);
        // Other matchers: the old one expires now and a new one replaces it.
        let other = alerts
            .put_silence(
                Some(&first.id),
                silence("alertname=\"Cold\"", 1_000, 9_000),
                3_000,
            )
            .unwrap();
        assert_ne!(other.id, first.id);
        let old = alerts.silence(&first.id).unwrap();
        assert_eq!(
            (old.ends_at, old.state(3_000)),
            (3_000, SilenceState::Expired)
        );
        assert_eq!(other.state(3_000), SilenceState::Active);
        // A pending silence expired never starts; an expired one stays as it was.
        let pending = alerts
            .put_silence(None, silence("a=\"b\"", 8_000, 9_000), 3_000)
            .unwrap();
        assert_eq!(pending.state(3_000), SilenceState::Pending);
        let gone = alerts.expire_silence(&pending.id, 4_000).unwrap();
        assert_eq!((gone.starts_at, gone.ends_at), (4_000, 4_000));
        let again = alerts.expire_silence(&pending.id, 5_000).unwrap();
        assert_eq!((again.ends_at, again.updated_at), (4_000, 4_000));
        assert_eq!(
            alerts.expire_silence("nope", 5_000),
            Err(AlertError::NoSilence("nope".into()))
        );
    }

    #[test]
    fn firing_lists_every_covering_silence() {
        let alerts = Alerts::new(Vec::new(), Vec::new(), None, 60_000);
        let none = |_: &str| String::new();
        alerts.apply(
            &[change(State::Inactive, State::Pending, 1000)],
            std::iter::empty(),
            none,
            1000,
        );
        assert!(alerts.firing(1000).is_empty(), "pending is not firing");
        alerts.apply(
            &[change(State::Pending, State::Firing, 2000)],
            std::iter::empty(),
            none,
            2000,
        );
        let a = alerts.add_silence(silence("alertname=\"Hot\"", 0, 10_000));
        let b = alerts.add_silence(silence("severity=~\"crit.*\"", 0, 10_000));
        alerts.add_silence(silence("severity=\"info\"", 0, 10_000));
        let firing = alerts.firing(2000);
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].1, vec![a.id, b.id]);
        assert!(
            alerts.firing(20_000)[0].1.is_empty(),
            "the silences ran out"
        );
    }

    #[test]
    fn matchers_and_silence_window() {
        let s = Silence {
            id: "s".into(),
            matchers: [
                MatcherSpec {
                    name: "alertname".into(),
                    value: "Cpu.*".into(),
                    is_regex: true,
                    is_equal: true,
                },
                MatcherSpec {
                    name: "severity".into(),
                    value: "critical".into(),
                    is_regex: false,
                    is_equal: false,
                },
            ]
            .iter()
            .map(|m| m.compile().unwrap())
            .collect(),
            starts_at: 0,
            ends_at: 100,
            updated_at: 0,
            created_by: "me".into(),
            comment: String::new(),
        };
        let l = labels(&[("alertname", "CpuBusy"), ("severity", "warning")]);
        assert!(s.silences(&l, 50));
        assert!(!s.silences(&l, 100));
        assert!(!s.silences(
            &labels(&[("alertname", "CpuBusy"), ("severity", "critical")]),
            50
        ));
        assert!(!s.silences(&labels(&[("alertname", "XCpuBusy")]), 50));
        assert!(
            MatcherSpec {
                name: "a".into(),
                value: "(".into(),
                is_regex: true,
                is_equal: true
            }
            .compile()
            .is_err()
        );
    }
}
