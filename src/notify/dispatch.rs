//! The dispatcher task: routes each alert event through the route tree, keeps groups
//! with their `group_wait` / `group_interval` / `repeat_interval` timers, applies time
//! intervals and `send_resolved`, escalates unacknowledged alerts, and writes every
//! notification to the outbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::outbox::{Outbox, StoredGroup};
use super::receiver::Receivers;
use super::route::Route;
use super::{AlertEvent, AlertSource, AlertState, Kind, Notification};
use crate::config::notify::NotifyConfig;
use crate::config::timeinterval::TimeInterval;
use crate::model::alert::{InhibitRule, Matcher, all_match, fingerprint, inhibited_by};
use crate::shutdown::Shutdown;

/// What the dispatcher is asked to do; `done` fires once it has.
pub(super) enum Msg {
    /// Route one alert event.
    Event {
        event: AlertEvent,
        done: oneshot::Sender<()>,
    },
    /// Take a reloaded `notifications:` section (route tree, time intervals,
    /// escalation, inhibition).
    Reconfigure {
        config: Box<NotifyConfig>,
        done: oneshot::Sender<()>,
    },
    /// Firing alerts the alert store held at start-up (see [`Dispatcher::adopt`]).
    Adopt {
        events: Vec<AlertEvent>,
        done: oneshot::Sender<()>,
    },
}

/// One outbox row to write: receiver, integration, notification.
type Row = (String, &'static str, Notification);

struct Group {
    route: usize,
    receiver: String,
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<String, AlertEvent>,
    /// Fingerprints last notified as firing.
    notified: std::collections::HashSet<String>,
    next_flush: Instant,
    last_sent: Option<Instant>,
}

struct Escalation {
    deadline: Instant,
    event: AlertEvent,
}

/// A stored alert with the id it gets today. Alerts Prometheus posted used to be keyed
/// by a second fingerprint (another pair terminator); a group saved then is re-keyed on
/// restore, so the resolve Prometheus sends after the upgrade still finds its alert.
/// m4watch's own alerts, and every alert saved since, keep the id the alert store gave
/// them (their labels now carry the external labels, which the id does not cover).
fn rekeyed(mut a: AlertEvent) -> AlertEvent {
    if a.source == AlertSource::Prometheus {
        let before = legacy_fingerprint(&a.labels);
        // Releases before this one also added a `source="prometheus"` label; the alert
        // store keys received alerts by the labels as Prometheus sent them.
        if a.labels.get("source").map(String::as_str) == Some(AlertSource::Prometheus.as_str()) {
            a.labels.remove("source");
        }
        if a.fingerprint == before || a.fingerprint == legacy_fingerprint(&a.labels) {
            a.fingerprint = fingerprint(&a.labels);
        }
    }
    a
}

/// The fingerprint the notifier computed for Prometheus's alerts before there was
/// one fingerprint: the same FNV-1a, with 0xfe ending each pair.
fn legacy_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Routes events into groups and writes their notifications to the outbox.
pub(super) struct Dispatcher {
    receivers: Receivers,
    outbox: Outbox,
    /// Wakes the delivery worker after a write.
    wake: Arc<Notify>,
    root: Route,
    intervals: HashMap<String, TimeInterval>,
    escalation: Option<(String, Duration, Vec<Matcher>)>,
    groups: HashMap<String, Group>,
    escalations: HashMap<String, Escalation>,
    inhibit_rules: Vec<InhibitRule>,
    /// When each receiver with an `alertmanager` integration next re-posts its
    /// firing alerts, and the re-post still in flight (one at a time per receiver).
    resends: HashMap<String, Resend>,
    /// Where notifications go that the outbox cannot store; `None` only in unit tests.
    direct: Option<Direct>,
}

/// How many notifications may be in flight from memory at once; the dispatcher waits
/// for room beyond that (as submitters wait for it), so none is dropped.
const DIRECT_IN_FLIGHT: usize = 256;
/// Attempts of a notification sent from memory.
const DIRECT_ATTEMPTS: i64 = 5;

/// Sends the notifications the outbox could not store straight from memory: a disk
/// that fills or a directory that vanished must not silence the pages that say so.
#[derive(Clone)]
pub(super) struct Direct {
    pub metrics: super::metrics::Metrics,
    pub delivery: crate::config::notify::DeliveryConfig,
    pub permits: Arc<tokio::sync::Semaphore>,
}

impl Direct {
    pub(super) fn new(
        metrics: super::metrics::Metrics,
        delivery: crate::config::notify::DeliveryConfig,
    ) -> Direct {
        Direct {
            metrics,
            delivery,
            permits: Arc::new(tokio::sync::Semaphore::new(DIRECT_IN_FLIGHT)),
        }
    }

    /// Sends each row in its own task, retrying with the outbox's backoff up to
    /// [`DIRECT_ATTEMPTS`] times.
    async fn send(&self, receivers: &Receivers, rows: Vec<(String, &'static str, Notification)>) {
        for (receiver, integration, n) in rows {
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                return;
            };
            self.metrics
                .unqueued
                .with_label_values(&[&receiver, integration])
                .inc();
            let (d, receivers) = (self.clone(), Arc::clone(receivers));
            tokio::spawn(async move {
                let _permit = permit;
                for attempt in 1..=DIRECT_ATTEMPTS {
                    let r = receivers.read().expect("receivers").get(&receiver).cloned();
                    let Some(i) = r.as_ref().and_then(|r| r.integration(integration)) else {
                        tracing::error!(%receiver, integration, "notification sent from memory: the receiver is no longer configured; dropped");
                        return;
                    };
                    d.metrics
                        .total
                        .with_label_values(&[&receiver, integration])
                        .inc();
                    match i.notify(&n).await {
                        Ok(()) => {
                            tracing::warn!(%receiver, integration, attempt,
                                "notification delivered from memory (the outbox could not store it)");
                            return;
                        }
                        Err(e) => {
                            d.metrics
                                .failed
                                .with_label_values(&[&receiver, integration, e.reason.as_str()])
                                .inc();
                            if !e.retryable || attempt == DIRECT_ATTEMPTS {
                                tracing::error!(%receiver, integration, attempt, error = %e,
                                    "notification sent from memory failed; giving up");
                                return;
                            }
                            tracing::warn!(%receiver, integration, attempt, error = %e,
                                "notification sent from memory failed; will retry");
                            let wait = super::worker::backoff(
                                attempt,
                                d.delivery.initial_backoff.get(),
                                d.delivery.max_backoff.get(),
                                fastrand::f64(),
                            )
                            .max(e.retry_after.unwrap_or_default());
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            });
        }
    }
}

struct Resend {
    at: Instant,
    every: Duration,
    in_flight: Option<tokio::task::JoinHandle<()>>,
}

impl Dispatcher {
    pub(super) fn new(
        config: &NotifyConfig,
        receivers: Receivers,
        outbox: Outbox,
        wake: Arc<Notify>,
    ) -> Dispatcher {
        let mut d = Dispatcher {
            receivers,
            outbox,
            wake,
            root: Route::build(&Default::default(), None, &mut 0),
            intervals: HashMap::new(),
            escalation: None,
            groups: HashMap::new(),
            escalations: HashMap::new(),
            inhibit_rules: Vec::new(),
            resends: HashMap::new(),
            direct: None,
        };
        d.configure(config);
        d
    }

    /// Sends what the outbox cannot store from memory through `direct`.
    pub(super) fn with_direct(mut self, direct: Direct) -> Dispatcher {
        self.direct = Some(direct);
        self
    }

    /// Takes the route tree, time intervals, escalation and inhibition of `config`.
    fn configure(&mut self, config: &NotifyConfig) {
        let root_cfg = config.route.clone().unwrap_or_default();
        self.root = Route::build(&root_cfg, None, &mut 0);
        self.intervals = config
            .time_intervals
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        self.escalation = config
            .escalation
            .as_ref()
            .map(|e| (e.receiver.clone(), e.after.get(), e.matchers.clone()));
        self.inhibit_rules = config.inhibit_rules.clone();
        self.schedule_resends();
    }

    /// A re-post timer for every receiver with an `alertmanager` integration (the
    /// shortest `resend_delay` among them), kept across a reload where it still fits.
    fn schedule_resends(&mut self) {
        let now = Instant::now();
        let delays: HashMap<String, Duration> = self
            .receivers
            .read()
            .expect("receivers")
            .iter()
            .filter_map(|(name, r)| {
                r.integrations
                    .iter()
                    .filter_map(|i| i.as_alertmanager().map(|a| a.resend_delay()))
                    .min()
                    .map(|d| (name.clone(), d))
            })
            .collect();
        self.resends.retain(|name, _| delays.contains_key(name));
        for (name, every) in delays {
            let r = self.resends.entry(name).or_insert(Resend {
                at: now + every,
                every,
                in_flight: None,
            });
            if r.every != every {
                r.every = every;
                r.at = now + every;
            }
        }
    }

    /// Posts every announced firing alert again to the Alertmanagers of each receiver
    /// whose `resend_delay` has come, past the outbox: a lost re-post is followed by
    /// the next one, and the first notice and the resolve went through the outbox.
    fn resend_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .resends
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for name in due {
            let Some(receiver) = self
                .receivers
                .read()
                .expect("receivers")
                .get(&name)
                .cloned()
            else {
                continue;
            };
            let mut alerts: Vec<AlertEvent> = Vec::new();
            for g in self.groups.values().filter(|g| g.receiver == name) {
                let muted = self.root.find(g.route).is_none_or(|r| self.muted(r));
                if muted {
                    continue;
                }
                alerts.extend(
                    g.alerts
                        .values()
                        .filter(|a| a.state != AlertState::Resolved)
                        .filter(|a| g.notified.contains(&a.fingerprint))
                        .cloned(),
                );
            }
            alerts.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
            alerts.dedup_by(|a, b| a.fingerprint == b.fingerprint);
            let r = self.resends.get_mut(&name).expect("due resend");
            r.at = now + r.every;
            let busy = r.in_flight.as_ref().is_some_and(|h| !h.is_finished());
            if alerts.is_empty() || busy {
                continue;
            }
            let n = Notification {
                receiver: name.clone(),
                kind: Kind::Alert,
                group_key: format!("resend:{name}"),
                group_labels: BTreeMap::new(),
                alerts,
            };
            r.in_flight = Some(tokio::spawn(async move {
                for am in receiver
                    .integrations
                    .iter()
                    .filter_map(|i| i.as_alertmanager())
                {
                    // Failures are logged and counted per Alertmanager by the integration.
                    let _ = am.notify(&n).await;
                }
            }));
        }
    }

    /// A reload: the new settings apply to every event from now on. Groups whose
    /// route still exists with the same receiver keep their state (pending resolves
    /// included); the others are flushed under the old tree first, so nothing owed is
    /// lost, and then dropped.
    async fn reconfigure(&mut self, config: &NotifyConfig) {
        let now = Instant::now();
        let mut next = Route::build(&config.route.clone().unwrap_or_default(), None, &mut 0);
        std::mem::swap(&mut self.root, &mut next);
        let gone: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                self.root
                    .find(g.route)
                    .is_none_or(|r| r.receiver != g.receiver)
            })
            .map(|(k, _)| k.clone())
            .collect();
        std::mem::swap(&mut self.root, &mut next);
        for key in &gone {
            self.flush(key, now).await;
            self.groups.remove(key);
            self.persist(std::slice::from_ref(key)).await;
        }
        self.configure(config);
        if !gone.is_empty() {
            tracing::info!(
                groups = gone.len(),
                "reload: notification groups of changed routes closed"
            );
        }
    }

    /// Rebuilds the groups saved before a restart: their alerts, which of them were
    /// notified, and the resolves still waiting for `group_interval`, so those are
    /// sent (Alertmanager loses them: its #2370). `alive` holds the ids the alert
    /// store has pending or firing now: a stored firing alert not among them resolved
    /// while the notice was in flight, so it is resolved here rather than repeated as
    /// firing. Groups whose route changed with the config are dropped.
    pub(super) fn restore(&mut self, stored: Vec<StoredGroup>, alive: &HashSet<String>) {
        let now = Instant::now();
        for g in stored {
            let Some(route) = self.root.find(g.route) else {
                continue;
            };
            if route.receiver != g.receiver {
                continue;
            }
            let mut alerts: Vec<AlertEvent> = g.alerts.into_iter().map(rekeyed).collect();
            let notified: HashSet<String> = match g.notified {
                Some(n) => n.into_iter().collect(),
                None => alerts.iter().map(|a| a.fingerprint.clone()).collect(),
            };
            for a in &mut alerts {
                if a.state != AlertState::Resolved && !alive.contains(&a.fingerprint) {
                    a.state = AlertState::Resolved;
                    a.ends_at = Some(Utc::now());
                }
            }
            // Anything owed (a resolve, a firing alert never announced) goes out now.
            let owed = alerts
                .iter()
                .any(|a| (a.state == AlertState::Resolved) == notified.contains(&a.fingerprint));
            self.groups.insert(
                g.key,
                Group {
                    route: g.route,
                    receiver: g.receiver,
                    labels: g.labels,
                    notified,
                    alerts: alerts
                        .into_iter()
                        .map(|a| (a.fingerprint.clone(), a))
                        .collect(),
                    next_flush: if owed {
                        now
                    } else {
                        now + route.group_interval
                    },
                    last_sent: Some(now),
                },
            );
        }
    }

    /// A group's whole state, or its absence, as the outbox database keeps it.
    fn stored(&self, key: &str) -> StoredGroup {
        match self.groups.get(key) {
            Some(g) => StoredGroup {
                key: key.to_string(),
                route: g.route,
                receiver: g.receiver.clone(),
                labels: g.labels.clone(),
                alerts: g.alerts.values().cloned().collect(),
                notified: Some({
                    let mut n: Vec<String> = g.notified.iter().cloned().collect();
                    n.sort();
                    n
                }),
            },
            None => StoredGroup {
                key: key.to_string(),
                route: 0,
                receiver: String::new(),
                labels: BTreeMap::new(),
                alerts: Vec::new(),
                notified: None,
            },
        }
    }

    /// Writes the groups' whole state to the outbox database in one transaction, so
    /// what a notification depends on survives a crash from the moment it was accepted.
    async fn persist(&self, keys: &[String]) {
        self.write(Vec::new(), keys).await;
    }

    /// Writes notification rows and the state of the groups they leave behind in one
    /// transaction (see [`Outbox::enqueue_with_groups`]), and wakes the worker when there are rows.
    async fn write(&self, rows: Vec<Row>, keys: &[String]) {
        if rows.is_empty() && keys.is_empty() {
            return;
        }
        let groups = keys.iter().map(|k| self.stored(k)).collect();
        let any = !rows.is_empty();
        match self.outbox.enqueue_with_groups(rows.clone(), groups).await {
            Ok(_) if any => self.wake.notify_one(),
            Ok(_) => {}
            Err(e) if any => {
                tracing::error!(error = %e, notifications = rows.len(),
                    "cannot write notifications to the outbox; sending them from memory");
                if let Some(d) = &self.direct {
                    d.send(&self.receivers, rows).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the notification groups' state")
            }
        }
    }

    /// Takes the firing alerts the alert store holds at start-up that no restored group
    /// holds: their state was committed (the API answered 200, or the rule engine
    /// recorded the transition) but the crash came before the notifier saved its
    /// group. They are routed as new, so they are announced once; those already in a
    /// group were announced, or will be, from the saved group.
    async fn adopt(&mut self, events: Vec<AlertEvent>) {
        let mut adopted = 0usize;
        for ev in events {
            let held = self
                .groups
                .values()
                .any(|g| g.alerts.contains_key(&ev.fingerprint));
            if !held {
                adopted += 1;
                self.handle(ev).await;
            }
        }
        if adopted > 0 {
            tracing::info!(
                alerts = adopted,
                "firing alerts stored before the restart but never grouped are announced now"
            );
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Msg>, mut shutdown: Shutdown) {
        loop {
            let next = self
                .groups
                .values()
                .map(|g| g.next_flush)
                .chain(self.escalations.values().map(|e| e.deadline))
                .chain(self.resends.values().map(|r| r.at))
                .min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.recv() => {
                    // What is due goes to the outbox (durable) before stopping; the rest
                    // is in the saved groups and goes out after the restart.
                    self.flush_due().await;
                    break;
                }
                msg = rx.recv() => match msg {
                    Some(Msg::Event { event, done }) => {
                        self.handle(event).await;
                        self.flush_due().await;
                        let _ = done.send(());
                    }
                    Some(Msg::Reconfigure { config, done }) => {
                        self.reconfigure(&config).await;
                        let _ = done.send(());
                    }
                    Some(Msg::Adopt { events, done }) => {
                        self.adopt(events).await;
                        self.flush_due().await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = sleep => {
                    self.flush_due().await;
                    self.resend_due();
                }
            }
        }
    }

    async fn handle(&mut self, ev: AlertEvent) {
        let mut routes = Vec::new();
        self.root.matching(&ev.labels, &mut routes);
        let now = Instant::now();
        if ev.state == AlertState::Acknowledged {
            self.escalations.remove(&ev.fingerprint);
            let mut receivers: Vec<String> = routes.iter().map(|r| r.receiver.clone()).collect();
            receivers.dedup();
            let mut touched = Vec::new();
            for (key, g) in self.groups.iter_mut() {
                if let Some(a) = g.alerts.get_mut(&ev.fingerprint) {
                    a.state = AlertState::Acknowledged;
                    touched.push(key.clone());
                }
            }
            let mut rows = Vec::new();
            for receiver in receivers {
                let n = Notification {
                    receiver,
                    kind: Kind::Acknowledge,
                    group_key: ev.fingerprint.clone(),
                    group_labels: BTreeMap::new(),
                    alerts: vec![ev.clone()],
                };
                rows.extend(self.rows(n, None));
            }
            self.write(rows, &touched).await;
            return;
        }
        if let Some((_, after, matchers)) = &self.escalation {
            match ev.state {
                AlertState::Firing if all_match(matchers, &ev.labels) => {
                    self.escalations
                        .entry(ev.fingerprint.clone())
                        .or_insert_with(|| Escalation {
                            deadline: now + *after,
                            event: ev.clone(),
                        });
                }
                _ => {
                    self.escalations.remove(&ev.fingerprint);
                }
            }
        }
        let mut touched = Vec::new();
        for r in routes {
            let labels: BTreeMap<String, String> = match &r.group_by {
                None => ev.labels.clone(),
                Some(keys) => keys
                    .iter()
                    .filter_map(|k| ev.labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            };
            let key = format!("{}:{}:{:?}", r.id, r.receiver, labels);
            touched.push(key.clone());
            let group = self.groups.entry(key).or_insert_with(|| Group {
                route: r.id,
                receiver: r.receiver.clone(),
                labels,
                alerts: BTreeMap::new(),
                notified: Default::default(),
                next_flush: now + r.group_wait,
                last_sent: None,
            });
            let mut ev = ev.clone();
            // An acknowledged alert that fires again stays acknowledged.
            if ev.state == AlertState::Firing
                && group
                    .alerts
                    .get(&ev.fingerprint)
                    .is_some_and(|a| a.state == AlertState::Acknowledged)
            {
                ev.state = AlertState::Acknowledged;
            }
            group.alerts.insert(ev.fingerprint.clone(), ev);
        }
        self.persist(&touched).await;
    }

    async fn flush_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.flush(&key, now).await;
        }
        let expired: Vec<String> = self
            .escalations
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for fp in expired {
            let Some(e) = self.escalations.remove(&fp) else {
                continue;
            };
            let Some((receiver, _, _)) = &self.escalation else {
                continue;
            };
            tracing::info!(fingerprint = %fp, %receiver, "escalating an unacknowledged alert");
            let n = Notification {
                receiver: receiver.clone(),
                kind: Kind::Escalation,
                group_key: format!("escalation:{fp}"),
                group_labels: BTreeMap::new(),
                alerts: vec![e.event],
            };
            let rows = self.rows(n, None);
            self.write(rows, &[]).await;
        }
    }

    /// Whether an alert with `labels` is inhibited now, by an alert firing in any group.
    fn inhibited(&self, labels: &BTreeMap<String, String>) -> bool {
        let firing_anywhere = self
            .groups
            .values()
            .flat_map(|g| g.alerts.values())
            .filter(|s| s.state != AlertState::Resolved)
            .map(|s| &s.labels);
        inhibited_by(&self.inhibit_rules, firing_anywhere, labels).is_some()
    }

    fn muted(&self, route: &Route) -> bool {
        let now = Utc::now();
        let inside = |name: &String| self.intervals.get(name).is_some_and(|t| t.contains(now));
        route.mute.iter().any(inside)
            || (!route.active.is_empty() && !route.active.iter().any(inside))
    }

    async fn flush(&mut self, key: &str, now: Instant) {
        let Some(g) = self.groups.get(key) else {
            return;
        };
        let Some(route) = self.root.find(g.route) else {
            return;
        };
        let (interval, repeat) = (route.group_interval, route.repeat_interval);
        if self.muted(route) {
            // Like Alertmanager: muted notifications are not sent later, but the
            // group stays and is looked at again next interval.
            let g = self.groups.get_mut(key).expect("group");
            g.next_flush = now + interval;
            g.alerts.retain(|_, a| a.state != AlertState::Resolved);
            g.notified.retain(|fp| g.alerts.contains_key(fp));
            if g.alerts.is_empty() {
                self.groups.remove(key);
            }
            self.persist(&[key.to_string()]).await;
            return;
        }
        let send_resolved = self
            .receivers
            .read()
            .expect("receivers")
            .get(&g.receiver)
            .is_none_or(|r| r.config.send_resolved);
        // Inhibition, as Alertmanager applies it: at flush time, against every alert
        // still firing in any group.
        let inhibited: std::collections::HashSet<String> = g
            .alerts
            .values()
            .filter(|a| a.state != AlertState::Resolved)
            .filter(|a| self.inhibited(&a.labels))
            .map(|a| a.fingerprint.clone())
            .collect();
        let firing: Vec<AlertEvent> = g
            .alerts
            .values()
            .filter(|a| a.state != AlertState::Resolved && !inhibited.contains(&a.fingerprint))
            .cloned()
            .collect();
        // A resolve for lack of data that a firing alert inhibits is held back, as
        // Alertmanager holds back every inhibited alert: it announces nothing, and the
        // inhibiting alert (TradingSourceSilent) already speaks for it. A real
        // recovery still goes out, so an open PagerDuty incident closes.
        let silent_inhibited =
            |a: &AlertEvent| a.no_data_since().is_some() && self.inhibited(&a.labels);
        let newly_resolved: Vec<AlertEvent> = g
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Resolved && g.notified.contains(&a.fingerprint))
            .filter(|a| !silent_inhibited(a))
            .cloned()
            .collect();
        let new_firing = firing.iter().any(|a| !g.notified.contains(&a.fingerprint));
        let repeat_due =
            !firing.is_empty() && g.last_sent.is_some_and(|t| now.duration_since(t) >= repeat);
        let wanted: Vec<AlertEvent> = newly_resolved
            .iter()
            .filter(|a| a.wants_resolved(send_resolved))
            .cloned()
            .collect();
        let base = Notification {
            receiver: g.receiver.clone(),
            kind: Kind::Alert,
            group_key: key.to_string(),
            group_labels: g.labels.clone(),
            alerts: firing.iter().chain(&wanted).cloned().collect(),
        };
        let every = Notification {
            alerts: firing.iter().chain(&newly_resolved).cloned().collect(),
            ..base.clone()
        };
        let send_base = new_firing || !wanted.is_empty() || repeat_due;
        let send_every = new_firing || !newly_resolved.is_empty() || repeat_due;
        let mut rows = Vec::new();
        if send_base || send_every {
            let base = if send_base {
                base
            } else {
                Notification {
                    alerts: Vec::new(),
                    ..base
                }
            };
            rows = self.rows(base, Some(every));
        }
        let g = self.groups.get_mut(key).expect("group");
        if send_base || send_every {
            g.last_sent = Some(now);
        }
        let g = &*g;
        // An alert notified before it was inhibited stays notified, so its resolve
        // still goes out (an open PagerDuty incident must close).
        let notified: std::collections::HashSet<String> = firing
            .iter()
            .map(|a| a.fingerprint.clone())
            .chain(
                g.notified
                    .iter()
                    .filter(|fp| inhibited.contains(*fp))
                    .cloned(),
            )
            .collect();

        let g = self.groups.get_mut(key).expect("group");
        g.notified = notified;
        g.alerts.retain(|_, a| a.state != AlertState::Resolved);
        if g.alerts.is_empty() {
            self.groups.remove(key);
        } else {
            g.next_flush = now + interval;
        }
        // The rows and the group's new `notified` in one transaction.
        self.write(rows, &[key.to_string()]).await;
    }

    /// The outbox rows of a notification: one for every integration of its receiver
    /// that accepts it.
    fn rows(&self, n: Notification, resolves_for_all: Option<Notification>) -> Vec<Row> {
        let map = self.receivers.read().expect("receivers");
        let Some(r) = map.get(&n.receiver) else {
            tracing::warn!(receiver = %n.receiver, "no such receiver; notification dropped");
            return Vec::new();
        };
        r.integrations
            .iter()
            .filter(|i| i.accepts(n.kind))
            .filter_map(|i| {
                let chosen = match (&resolves_for_all, i.needs_every_resolve()) {
                    (Some(all), true) => all,
                    _ => &n,
                };
                (!chosen.alerts.is_empty()).then(|| (n.receiver.clone(), i.name(), chosen.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::test_event;

    fn dispatcher(dir: &tempfile::TempDir) -> Dispatcher {
        Dispatcher::new(
            &NotifyConfig::default(),
            Receivers::default(),
            Outbox::open(&dir.path().join("m4watch.db")).unwrap(),
            Arc::new(Notify::new()),
        )
    }

    #[test]
    fn groups_saved_with_the_old_prometheus_fingerprint_are_rekeyed_on_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(&dir);
        let mut from_prometheus = test_event("DiskFull", AlertState::Firing);
        from_prometheus.source = AlertSource::Prometheus;
        from_prometheus.fingerprint = legacy_fingerprint(&from_prometheus.labels);
        let own = test_event("CpuHot", AlertState::Firing);
        let new_id = fingerprint(&from_prometheus.labels);
        d.restore(
            vec![StoredGroup {
                key: "g".into(),
                route: 0,
                receiver: d.root.receiver.clone(),
                labels: BTreeMap::new(),
                alerts: vec![from_prometheus.clone(), own.clone()],
                notified: None,
            }],
            &[new_id.clone(), own.fingerprint.clone()].into(),
        );
        let g = &d.groups["g"];
        assert_ne!(new_id, from_prometheus.fingerprint);
        assert_eq!(g.alerts[&new_id].fingerprint, new_id);
        assert!(g.notified.contains(&new_id), "its resolve still goes out");
        assert!(!g.alerts.contains_key(&from_prometheus.fingerprint));
        assert!(
            g.alerts.contains_key(&own.fingerprint),
            "m4watch's ids are kept"
        );
    }

    /// Issue 27: a received alert saved with its external labels added keeps the id
    /// the alert store gave it (the labels as Prometheus sent them), so its resolve
    /// after a restart finds it.
    #[test]
    fn groups_saved_with_external_labels_keep_their_ids_on_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(&dir);
        let mut received = test_event("DiskFull", AlertState::Firing);
        received.source = AlertSource::Prometheus;
        let id = received.fingerprint.clone();
        received.labels.insert("host".into(), "mac-07".into());
        d.restore(
            vec![StoredGroup {
                key: "g".into(),
                route: 0,
                receiver: d.root.receiver.clone(),
                labels: BTreeMap::new(),
                alerts: vec![received],
                notified: None,
            }],
            &[id.clone()].into(),
        );
        assert!(d.groups["g"].alerts.contains_key(&id));
    }

    /// A resolve waiting for group_interval when m4watch stopped is sent after the
    /// restart; an alert the store no longer holds active is resolved, not repeated as
    /// firing; a firing alert never announced is announced.
    #[test]
    fn restore_owes_pending_resolves_and_resolves_what_the_store_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(&dir);
        let pending_resolve = test_event("A", AlertState::Resolved);
        let resolved_meanwhile = test_event("B", AlertState::Firing);
        let still_firing = test_event("C", AlertState::Firing);
        let group = |alerts: Vec<AlertEvent>, notified: Vec<String>| StoredGroup {
            key: format!("g{}", alerts[0].name()),
            route: 0,
            receiver: d.root.receiver.clone(),
            labels: BTreeMap::new(),
            alerts,
            notified: Some(notified),
        };
        let stored = vec![
            group(
                vec![pending_resolve.clone()],
                vec![pending_resolve.fingerprint.clone()],
            ),
            group(
                vec![resolved_meanwhile.clone()],
                vec![resolved_meanwhile.fingerprint.clone()],
            ),
            group(
                vec![still_firing.clone()],
                vec![still_firing.fingerprint.clone()],
            ),
        ];
        let before = Instant::now();
        d.restore(stored, &[still_firing.fingerprint.clone()].into());
        let a = &d.groups["gA"];
        assert_eq!(
            a.alerts[&pending_resolve.fingerprint].state,
            AlertState::Resolved
        );
        assert!(a.next_flush <= Instant::now(), "the resolve is owed now");
        let b = &d.groups["gB"];
        assert_eq!(
            b.alerts[&resolved_meanwhile.fingerprint].state,
            AlertState::Resolved,
            "not re-fired"
        );
        assert!(b.next_flush <= Instant::now());
        let c = &d.groups["gC"];
        assert_eq!(
            c.alerts[&still_firing.fingerprint].state,
            AlertState::Firing
        );
        assert!(
            c.next_flush > before,
            "nothing owed: the next flush is a group_interval away"
        );
    }
}
