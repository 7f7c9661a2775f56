//! The [`Notifier`] handle and its dispatcher task: routes each alert event through
//! the route tree, keeps groups with their `group_wait` / `group_interval` /
//! `repeat_interval` timers, applies time intervals and `send_resolved`, escalates
//! unacknowledged alerts, and writes every notification to the outbox.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::metrics::Metrics;
use super::outbox::{Delivery, Outbox, OutboxError, StoredGroup};
use super::receiver::{Receiver, Receivers};
use super::{AlertEvent, AlertState, Ctx, Kind, Notification, SendError, worker};
use crate::config::Secret;
use crate::config::notify::{
    DEFAULT_RECEIVER, EmailConfig, NotifyConfig, PagerDutyConfig, ReceiverConfig, RouteConfig,
    SlackConfig,
};
use crate::config::timeinterval::TimeInterval;
use crate::model::alert::{Matcher, all_match, fingerprint};
use crate::shutdown::Shutdown;

/// Group timing defaults: a sidecar's point is speed, so nothing waits by default.
const DEFAULT_GROUP_WAIT: Duration = Duration::ZERO;
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// Handle the alert state machine (and `POST /api/v2/alerts`) submits events to.
/// Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

/// Alert events waiting for the dispatcher; a full queue makes submitters wait.
const SUBMIT_QUEUE: usize = 1024;

struct Inner {
    tx: mpsc::Sender<Msg>,
    outbox: Outbox,
    receivers: Receivers,
    base: BTreeMap<String, ReceiverConfig>,
    metrics: Metrics,
    ctx: Ctx,
    wake: Arc<Notify>,
}

struct Msg {
    event: AlertEvent,
    done: oneshot::Sender<()>,
}

/// Why the notifier could not do what the API asked.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("no receiver named {0:?}")]
    UnknownReceiver(String),
    #[error("{0}")]
    Invalid(String),
}

/// Body of `POST /api/v1/monitoring/notifications/configure`. Every key is optional;
/// keys given replace the stored ones, keys left out keep theirs.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureRequest {
    /// Receiver to change; `default` when unset.
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default)]
    pub slack_webhook: Option<Secret>,
    #[serde(default)]
    pub slack_channel: Option<String>,
    #[serde(default)]
    pub email: Option<EmailConfig>,
    #[serde(default)]
    pub pagerduty_routing_key: Option<Secret>,
    #[serde(default)]
    pub pagerduty_url: Option<String>,
}

impl Notifier {
    /// Opens the outbox in `<data_dir>/m4watch.db`, applies settings stored by the
    /// configure API, and starts the dispatcher and the delivery worker.
    pub async fn start(
        config: &NotifyConfig,
        data_dir: &Path,
        registry: &prometheus::Registry,
        shutdown: Shutdown,
    ) -> Result<(Notifier, Vec<tokio::task::JoinHandle<()>>), NotifyError> {
        let path = data_dir.join("m4watch.db");
        let outbox = tokio::task::spawn_blocking(move || Outbox::open(&path))
            .await
            .map_err(|_| OutboxError::Join)??;
        let ctx = Ctx::new(config.delivery.timeout.get());
        let metrics = Metrics::new(registry);
        let base = config.receivers_with_default();
        let mut map = BTreeMap::new();
        for (name, rc) in &base {
            map.insert(name.clone(), Arc::new(Receiver::new(rc.clone(), &ctx)));
        }
        let (tx, rx) = mpsc::channel(SUBMIT_QUEUE);
        let notifier = Notifier {
            inner: Arc::new(Inner {
                tx,
                outbox: outbox.clone(),
                receivers: Arc::new(RwLock::new(map)),
                base,
                metrics: metrics.clone(),
                ctx,
                wake: Arc::new(Notify::new()),
            }),
        };
        for (receiver, stored) in outbox.settings().await? {
            match serde_json::from_str::<ConfigureRequest>(&stored) {
                Ok(req) => {
                    if let Err(e) = notifier.apply(&receiver, &req) {
                        tracing::warn!(%receiver, error = %e, "stored notification settings ignored");
                    }
                }
                Err(e) => {
                    tracing::warn!(%receiver, error = %e, "stored notification settings unreadable")
                }
            }
        }
        for r in notifier.inner.receivers.read().expect("receivers").values() {
            for i in &r.integrations {
                metrics.precreate(&r.config.name, i.name());
            }
        }
        let _ = outbox.prune(7.0 * 86400.0).await;
        let mut dispatcher = Dispatcher::new(config, notifier.clone());
        dispatcher.restore(outbox.groups().await?);
        let tasks = vec![
            tokio::spawn(dispatcher.run(rx, shutdown.clone())),
            tokio::spawn(worker::run(
                outbox,
                Arc::clone(&notifier.inner.receivers),
                metrics,
                config.delivery.clone(),
                Arc::clone(&notifier.inner.wake),
                shutdown,
            )),
        ];
        Ok((notifier, tasks))
    }

    /// Submits one alert transition. Returns once the dispatcher has handled it: any
    /// notification it causes at once (`group_wait: 0s`) is in the outbox by then.
    pub async fn submit(&self, event: AlertEvent) {
        let (done, wait) = oneshot::channel();
        // Bounded: a submitter waits for room rather than an event being dropped, and
        // every wait is counted, so a dispatcher falling behind is visible.
        let sent = match self.inner.tx.try_send(Msg { event, done }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.inner.metrics.submit_waits.inc();
                self.inner.tx.send(msg).await.is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if sent {
            let _ = wait.await;
        }
    }

    /// The delivery records, newest first.
    pub async fn deliveries(&self, limit: i64) -> Result<Vec<Delivery>, NotifyError> {
        Ok(self.inner.outbox.recent(limit).await?)
    }

    /// Every receiver's config, secrets redacted by their own `Serialize`.
    pub fn receivers(&self) -> Vec<ReceiverConfig> {
        self.inner
            .receivers
            .read()
            .expect("receivers")
            .values()
            .map(|r| r.config.clone())
            .collect()
    }

    /// Applies and persists a configure request; returns the receiver as it now is.
    pub async fn configure(&self, body: serde_json::Value) -> Result<ReceiverConfig, NotifyError> {
        let req: ConfigureRequest = serde_json::from_value(body.clone())
            .map_err(|e| NotifyError::Invalid(e.to_string()))?;
        let name = req
            .receiver
            .clone()
            .unwrap_or_else(|| DEFAULT_RECEIVER.to_string());
        // Merge with what earlier calls stored, key by key.
        let stored = self
            .inner
            .outbox
            .settings()
            .await?
            .into_iter()
            .find(|(r, _)| *r == name)
            .and_then(|(_, s)| serde_json::from_str::<serde_json::Value>(&s).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let mut merged = stored;
        if let (Some(m), Some(b)) = (merged.as_object_mut(), body.as_object()) {
            for (k, v) in b {
                if k != "receiver" {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        let merged_req: ConfigureRequest = serde_json::from_value(merged.clone())
            .map_err(|e| NotifyError::Invalid(e.to_string()))?;
        let rc = self.apply(&name, &merged_req)?;
        self.inner
            .outbox
            .put_settings(name, merged.to_string())
            .await?;
        Ok(rc)
    }

    /// Rebuilds receiver `name` from its config file settings plus `req`.
    fn apply(&self, name: &str, req: &ConfigureRequest) -> Result<ReceiverConfig, NotifyError> {
        let mut rc = self
            .inner
            .base
            .get(name)
            .cloned()
            .ok_or_else(|| NotifyError::UnknownReceiver(name.to_string()))?;
        let invalid = |(p, r): (String, String)| NotifyError::Invalid(format!("{p}: {r}"));
        if let Some(url) = &req.slack_webhook {
            check_url(url.expose(), "slack_webhook")?;
            rc.slack = Some(SlackConfig {
                webhook_url: Some(url.clone()),
                webhook_url_file: None,
                channel: req
                    .slack_channel
                    .clone()
                    .or_else(|| rc.slack.as_ref().and_then(|s| s.channel.clone())),
            });
        }
        if let Some(e) = &req.email {
            e.check("email").map_err(invalid)?;
            rc.email = Some(e.clone());
        }
        if let Some(key) = &req.pagerduty_routing_key {
            let mut pd = rc
                .pagerduty
                .clone()
                .unwrap_or_else(PagerDutyConfig::default);
            pd.routing_key = Some(key.clone());
            if let Some(u) = &req.pagerduty_url {
                check_url(u, "pagerduty_url")?;
                pd.url = u.clone();
            }
            rc.pagerduty = Some(pd);
        }
        let receiver = Receiver::new(rc.clone(), &self.inner.ctx);
        for i in &receiver.integrations {
            self.inner.metrics.precreate(name, i.name());
        }
        self.inner
            .receivers
            .write()
            .expect("receivers")
            .insert(name.to_string(), Arc::new(receiver));
        Ok(rc)
    }

    /// Sends a test alert through every integration of `receiver` now, past the
    /// outbox, and reports each outcome.
    pub async fn test(
        &self,
        receiver: &str,
        dry_run: bool,
    ) -> Result<Vec<(&'static str, Result<Vec<String>, SendError>)>, NotifyError> {
        let r = self
            .inner
            .receivers
            .read()
            .expect("receivers")
            .get(receiver)
            .cloned()
            .ok_or_else(|| NotifyError::UnknownReceiver(receiver.to_string()))?;
        let labels: BTreeMap<String, String> = [
            ("alertname".to_string(), "M4watchTestAlert".to_string()),
            ("severity".to_string(), "info".to_string()),
        ]
        .into();
        let n = Notification {
            receiver: receiver.to_string(),
            kind: Kind::Test,
            group_key: "test".into(),
            group_labels: labels.clone(),
            alerts: vec![AlertEvent {
                fingerprint: fingerprint(&labels),
                labels,
                annotations: [(
                    "summary".to_string(),
                    "Test notification from m4watch".to_string(),
                )]
                .into(),
                state: AlertState::Firing,
                starts_at: Utc::now(),
                ends_at: None,
                value: None,
                source: "m4watch".into(),
                generator_url: None,
            }],
        };
        let mut out = Vec::new();
        for i in &r.integrations {
            let result = if dry_run {
                i.dry_run(&n, self.inner.ctx.timeout).await
            } else {
                i.notify(&n).await.map(|()| Vec::new())
            };
            out.push((i.name(), result));
        }
        Ok(out)
    }

    /// Writes notifications for every integration of `receiver` that accepts them.
    async fn enqueue(&self, n: Notification, resolves_for_all: Option<Notification>) {
        let rows = {
            let map = self.inner.receivers.read().expect("receivers");
            let Some(r) = map.get(&n.receiver) else {
                tracing::warn!(receiver = %n.receiver, "no such receiver; notification dropped");
                return;
            };
            r.integrations
                .iter()
                .filter(|i| i.accepts(n.kind))
                .filter_map(|i| {
                    let chosen = match (&resolves_for_all, i.needs_every_resolve()) {
                        (Some(all), true) => all,
                        _ => &n,
                    };
                    (!chosen.alerts.is_empty())
                        .then(|| (n.receiver.clone(), i.name(), chosen.clone()))
                })
                .collect::<Vec<_>>()
        };
        if rows.is_empty() {
            return;
        }
        match self.inner.outbox.enqueue(rows).await {
            Ok(_) => self.inner.wake.notify_one(),
            Err(e) => tracing::error!(error = %e, "cannot write notifications to the outbox"),
        }
    }
}

fn check_url(u: &str, key: &str) -> Result<(), NotifyError> {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(NotifyError::Invalid(format!(
            "{key}: must be an http:// or https:// URL"
        ))),
    }
}

/// A route with its inherited settings filled in.
struct Route {
    id: usize,
    receiver: String,
    matchers: Vec<Matcher>,
    /// `None`: one group per alert.
    group_by: Option<Vec<String>>,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
    continue_: bool,
    active: Vec<String>,
    mute: Vec<String>,
    children: Vec<Route>,
}

impl Route {
    fn build(c: &RouteConfig, parent: Option<&Route>, next_id: &mut usize) -> Route {
        let id = *next_id;
        *next_id += 1;
        let group_by = match &c.group_by {
            Some(g) if g.iter().any(|l| l == "...") => None,
            Some(g) => Some(g.clone()),
            None => parent.and_then(|p| p.group_by.clone()),
        };
        let mut r = Route {
            id,
            receiver: c
                .receiver
                .clone()
                .or_else(|| parent.map(|p| p.receiver.clone()))
                .unwrap_or_else(|| DEFAULT_RECEIVER.into()),
            matchers: c.matchers.clone(),
            group_by,
            group_wait: c
                .group_wait
                .map(|d| d.get())
                .or(parent.map(|p| p.group_wait))
                .unwrap_or(DEFAULT_GROUP_WAIT),
            group_interval: c
                .group_interval
                .map(|d| d.get())
                .or(parent.map(|p| p.group_interval))
                .unwrap_or(DEFAULT_GROUP_INTERVAL),
            repeat_interval: c
                .repeat_interval
                .map(|d| d.get())
                .or(parent.map(|p| p.repeat_interval))
                .unwrap_or(DEFAULT_REPEAT_INTERVAL),
            continue_: c.continue_,
            active: c.active_time_intervals.clone(),
            mute: c.mute_time_intervals.clone(),
            children: Vec::new(),
        };
        r.children = c
            .routes
            .iter()
            .map(|child| Route::build(child, Some(&r), next_id))
            .collect();
        r
    }

    /// The routes an alert goes to: the deepest matching ones, siblings after a match
    /// only with `continue`.
    fn matching<'a>(&'a self, labels: &BTreeMap<String, String>, out: &mut Vec<&'a Route>) {
        let mut child_matched = false;
        for c in &self.children {
            if all_match(&c.matchers, labels) {
                c.matching(labels, out);
                child_matched = true;
                if !c.continue_ {
                    break;
                }
            }
        }
        if !child_matched {
            out.push(self);
        }
    }

    fn find(&self, id: usize) -> Option<&Route> {
        if self.id == id {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(id))
    }
}

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

struct Dispatcher {
    notifier: Notifier,
    root: Route,
    intervals: HashMap<String, TimeInterval>,
    escalation: Option<(String, Duration, Vec<Matcher>)>,
    groups: HashMap<String, Group>,
    escalations: HashMap<String, Escalation>,
}

impl Dispatcher {
    fn new(config: &NotifyConfig, notifier: Notifier) -> Dispatcher {
        let root_cfg = config.route.clone().unwrap_or_default();
        let mut id = 0;
        Dispatcher {
            notifier,
            root: Route::build(&root_cfg, None, &mut id),
            intervals: config
                .time_intervals
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            escalation: config
                .escalation
                .as_ref()
                .map(|e| (e.receiver.clone(), e.after.get(), e.matchers.clone())),
            groups: HashMap::new(),
            escalations: HashMap::new(),
        }
    }

    /// Rebuilds the groups that had notified firing alerts before a restart, so their
    /// resolves are still sent (Alertmanager loses them: its #2370). Groups whose
    /// route changed with the config are dropped.
    fn restore(&mut self, stored: Vec<StoredGroup>) {
        let now = Instant::now();
        for g in stored {
            let Some(route) = self.root.find(g.route) else {
                continue;
            };
            if route.receiver != g.receiver {
                continue;
            }
            self.groups.insert(
                g.key,
                Group {
                    route: g.route,
                    receiver: g.receiver,
                    labels: g.labels,
                    notified: g.alerts.iter().map(|a| a.fingerprint.clone()).collect(),
                    alerts: g
                        .alerts
                        .into_iter()
                        .map(|a| (a.fingerprint.clone(), a))
                        .collect(),
                    next_flush: now + route.group_interval,
                    last_sent: Some(now),
                },
            );
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, mut shutdown: Shutdown) {
        loop {
            let next = self
                .groups
                .values()
                .map(|g| g.next_flush)
                .chain(self.escalations.values().map(|e| e.deadline))
                .min();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.recv() => break,
                msg = rx.recv() => match msg {
                    Some(m) => {
                        self.handle(m.event).await;
                        self.flush_due().await;
                        let _ = m.done.send(());
                    }
                    None => break,
                },
                _ = sleep => self.flush_due().await,
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
            for g in self.groups.values_mut() {
                if let Some(a) = g.alerts.get_mut(&ev.fingerprint) {
                    a.state = AlertState::Acknowledged;
                }
            }
            for receiver in receivers {
                let n = Notification {
                    receiver,
                    kind: Kind::Acknowledge,
                    group_key: ev.fingerprint.clone(),
                    group_labels: BTreeMap::new(),
                    alerts: vec![ev.clone()],
                };
                self.notifier.enqueue(n, None).await;
            }
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
        for r in routes {
            let labels: BTreeMap<String, String> = match &r.group_by {
                None => ev.labels.clone(),
                Some(keys) => keys
                    .iter()
                    .filter_map(|k| ev.labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
            };
            let key = format!("{}:{}:{:?}", r.id, r.receiver, labels);
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
            self.notifier.enqueue(n, None).await;
        }
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
            return;
        }
        let send_resolved = self
            .notifier
            .inner
            .receivers
            .read()
            .expect("receivers")
            .get(&g.receiver)
            .is_none_or(|r| r.config.send_resolved);
        let firing: Vec<AlertEvent> = g
            .alerts
            .values()
            .filter(|a| a.state != AlertState::Resolved)
            .cloned()
            .collect();
        let newly_resolved: Vec<AlertEvent> = g
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Resolved && g.notified.contains(&a.fingerprint))
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
        if send_base || send_every {
            let base = if send_base {
                base
            } else {
                Notification {
                    alerts: Vec::new(),
                    ..base
                }
            };
            self.notifier.enqueue(base, Some(every)).await;
        }
        let g = self.groups.get_mut(key).expect("group");
        if send_base || send_every {
            g.last_sent = Some(now);
        }
        let notified: std::collections::HashSet<String> =
            firing.iter().map(|a| a.fingerprint.clone()).collect();
        if notified != g.notified {
            let stored = StoredGroup {
                key: key.to_string(),
                route: g.route,
                receiver: g.receiver.clone(),
                labels: g.labels.clone(),
                alerts: firing.clone(),
            };
            if let Err(e) = self.notifier.inner.outbox.save_group(stored).await {
                tracing::error!(error = %e, "cannot store notification group state");
            }
        }
        let g = self.groups.get_mut(key).expect("group");
        g.notified = notified;
        g.alerts.retain(|_, a| a.state != AlertState::Resolved);
        if g.alerts.is_empty() {
            self.groups.remove(key);
        } else {
            g.next_flush = now + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::notify::test_labels as labels;

    #[test]
    fn route_tree_with_continue() {
        let cfg: RouteConfig = serde_yaml_ng::from_str(
            r#"
receiver: email
routes:
  - matchers: ['severity="critical"']
    receiver: pagerduty
    continue: true
  - matchers: ['severity=~"critical|warning"']
    receiver: slack
  - matchers: ['tier="trading"']
    receiver: never
"#,
        )
        .unwrap();
        let mut id = 0;
        let root = Route::build(&cfg, None, &mut id);
        let names = |l: &[(&str, &str)]| {
            let mut out = Vec::new();
            root.matching(&labels(l), &mut out);
            out.iter().map(|r| r.receiver.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            names(&[("severity", "critical"), ("tier", "trading")]),
            ["pagerduty", "slack"]
        );
        assert_eq!(names(&[("severity", "warning")]), ["slack"]);
        assert_eq!(names(&[("severity", "info")]), ["email"]);
        assert_eq!(names(&[("tier", "trading")]), ["never"]);
    }

    #[test]
    fn children_inherit_timing() {
        let cfg: RouteConfig = serde_yaml_ng::from_str(
            "receiver: a\ngroup_interval: 10s\ngroup_by: [alertname]\nroutes:\n  - receiver: b\n    group_by: ['...']\n",
        )
        .unwrap();
        let mut id = 0;
        let root = Route::build(&cfg, None, &mut id);
        assert_eq!(root.group_wait, Duration::ZERO);
        assert_eq!(root.children[0].group_interval, Duration::from_secs(10));
        assert_eq!(root.group_by, Some(vec!["alertname".to_string()]));
        assert_eq!(root.children[0].group_by, None);
    }
}
