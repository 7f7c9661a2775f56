//! The [`Notifier`] handle: what the alert state machine, `POST /api/v2/alerts` and
//! the API hold. It opens the outbox, starts the dispatcher and the delivery worker,
//! submits events, and configures and tests receivers.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc, oneshot};

use super::dispatch::{Dispatcher, Msg};
use super::metrics::Metrics;
use super::outbox::{Delivery, Outbox, OutboxError};
use super::receiver::{Integration, Receiver, Receivers};
use super::route::Route;
use super::{AlertEvent, AlertSource, AlertState, Ctx, Kind, Notification, SendError, worker};
use crate::config::notify::{
    DEFAULT_RECEIVER, EmailConfig, NotifyConfig, PagerDutyConfig, ReceiverConfig, SlackConfig,
};
use crate::config::{Identity, Secret};
use crate::model::alert::{InhibitRule, fingerprint};
use crate::shutdown::Shutdown;

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
    /// The receivers as the config file has them (a reload replaces them).
    base: RwLock<BTreeMap<String, ReceiverConfig>>,
    metrics: Metrics,
    ctx: Ctx,
    wake: Arc<Notify>,
    /// The receivers the route tree can deliver to ([`NotifyConfig::routed_receivers`]).
    routed: RwLock<std::collections::BTreeSet<String>>,
    /// Whether the outbox drains ([`worker::Progress`]).
    progress: worker::Progress,
    /// The running `notifications:` section and its route tree, for the Alertmanager
    /// API's views (the dispatcher keeps its own copy).
    running: RwLock<Arc<Running>>,
}

/// The `notifications:` section in force, with its route tree built.
struct Running {
    config: NotifyConfig,
    root: Route,
}

impl Running {
    fn of(config: &NotifyConfig) -> Arc<Running> {
        Arc::new(Running {
            root: Route::build(&config.route.clone().unwrap_or_default(), None, &mut 0),
            config: config.clone(),
        })
    }
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
/// keys given replace the stored ones, keys left out keep theirs. Without `receiver`
/// the request configures `default`, and is refused when the configured route tree
/// never delivers to `default` (see [`NotifyConfig::routed_receivers`]).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigureRequest {
    /// Receiver to change; `default` when unset, refused (400) when the configured
    /// route tree never delivers to `default`.
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
    /// Applies settings stored by the configure API to the receivers, restores the
    /// groups that notified before a restart, and starts the dispatcher and the
    /// delivery worker on `outbox` (the wiring opens it).
    pub async fn start(
        config: &NotifyConfig,
        identity: &Identity,
        outbox: Outbox,
        alive: &std::collections::HashSet<String>,
        registry: &prometheus::Registry,
        shutdown: Shutdown,
    ) -> Result<(Notifier, Vec<tokio::task::JoinHandle<()>>), NotifyError> {
        let metrics = Metrics::new(registry);
        let mut ctx = Ctx::new(config.delivery.timeout.get()).with_identity(identity.clone());
        ctx.alertmanagers = Some(metrics.alertmanagers.clone());
        let base = config.receivers_with_default();
        let mut map = BTreeMap::new();
        for (name, rc) in &base {
            map.insert(name.clone(), Arc::new(Receiver::new(rc.clone(), &ctx)));
        }
        // Where an HTTP integration is configured, the client is built now, so the
        // first delivery is not the one that pays for it (and rate limits space the
        // deliveries as sent).
        let http = |i: &Integration| !matches!(i, Integration::Email(_));
        if map.values().any(|r| r.integrations.iter().any(http)) {
            ctx.http();
        }
        let (tx, rx) = mpsc::channel(SUBMIT_QUEUE);
        let notifier = Notifier {
            inner: Arc::new(Inner {
                tx,
                outbox: outbox.clone(),
                receivers: Arc::new(RwLock::new(map)),
                base: RwLock::new(base),
                metrics: metrics.clone(),
                ctx,
                wake: Arc::new(Notify::new()),
                routed: RwLock::new(config.routed_receivers()),
                progress: worker::Progress::default(),
                running: RwLock::new(Running::of(config)),
            }),
        };
        notifier.apply_stored().await?;
        let _ = outbox.prune(7.0 * 86400.0).await;
        let mut dispatcher = Dispatcher::new(
            config,
            Arc::clone(&notifier.inner.receivers),
            outbox.clone(),
            Arc::clone(&notifier.inner.wake),
        )
        .with_direct(super::dispatch::Direct::new(
            metrics.clone(),
            config.delivery.clone(),
        ));
        dispatcher.restore(outbox.groups().await?, alive);
        let tasks = vec![
            tokio::spawn(dispatcher.run(rx, shutdown.clone())),
            tokio::spawn(worker::run(
                outbox,
                Arc::clone(&notifier.inner.receivers),
                metrics,
                config.delivery.clone(),
                Arc::clone(&notifier.inner.wake),
                notifier.inner.progress.clone(),
                shutdown,
            )),
        ];
        Ok((notifier, tasks))
    }

    /// Applies the settings the configure API stored on top of the config file's
    /// receivers, and creates every integration's series.
    async fn apply_stored(&self) -> Result<(), NotifyError> {
        for (receiver, stored) in self.inner.outbox.settings().await? {
            match serde_json::from_str::<ConfigureRequest>(&stored) {
                Ok(req) => {
                    if let Err(e) = self.apply(&receiver, &req) {
                        tracing::warn!(%receiver, error = %e, "stored notification settings ignored");
                    }
                }
                Err(e) => {
                    tracing::warn!(%receiver, error = %e, "stored notification settings unreadable")
                }
            }
        }
        for r in self.inner.receivers.read().expect("receivers").values() {
            for i in &r.integrations {
                self.inner.metrics.precreate(&r.config.name, i.name());
                if let Some(am) = i.as_alertmanager() {
                    am.precreate();
                }
            }
        }
        Ok(())
    }

    /// A reload of the `notifications:` section: receivers (with the configure API's
    /// stored settings on top again), route tree, time intervals, escalation and
    /// inhibition. `delivery` is read at start-up only. Returns once the dispatcher
    /// routes by the new tree.
    pub async fn reconfigure(&self, config: &NotifyConfig) -> Result<(), NotifyError> {
        let base = config.receivers_with_default();
        let map: BTreeMap<String, Arc<Receiver>> = base
            .iter()
            .map(|(name, rc)| {
                (
                    name.clone(),
                    Arc::new(Receiver::new(rc.clone(), &self.inner.ctx)),
                )
            })
            .collect();
        *self.inner.base.write().expect("base") = base;
        *self.inner.routed.write().expect("routed") = config.routed_receivers();
        *self.inner.running.write().expect("running") = Running::of(config);
        *self.inner.receivers.write().expect("receivers") = map;
        self.apply_stored().await?;
        let (done, wait) = oneshot::channel();
        let msg = Msg::Reconfigure {
            config: Box::new(config.clone()),
            done,
        };
        if self.inner.tx.send(msg).await.is_ok() {
            let _ = wait.await;
        }
        Ok(())
    }

    /// Whether the outbox drains: the delivery worker's last pass and the oldest
    /// notification waiting.
    pub(crate) fn progress(&self) -> worker::Progress {
        self.inner.progress.clone()
    }

    /// Counts alert transitions the bridge missed because it fell behind the feed.
    pub fn record_missed(&self, n: u64) {
        self.inner.metrics.transitions_missed.inc_by(n);
    }

    /// Hands the dispatcher the firing alerts the alert store held at start-up; those
    /// no restored group holds are announced (a crash came between the store's commit
    /// and the notifier's). Call once, after [`Notifier::start`] and before the live
    /// feed; returns once they are routed and their groups saved.
    pub async fn adopt(&self, events: Vec<AlertEvent>) {
        if events.is_empty() {
            return;
        }
        let events = events
            .into_iter()
            .map(|e| super::outward(e, &self.inner.ctx.identity))
            .collect();
        let (done, wait) = oneshot::channel();
        if self
            .inner
            .tx
            .send(Msg::Adopt { events, done })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    /// Submits one alert transition. Returns once the dispatcher has handled it: any
    /// notification it causes at once (`group_wait: 0s`) is in the outbox by then.
    pub async fn submit(&self, event: AlertEvent) {
        let event = super::outward(event, &self.inner.ctx.identity);
        let (done, wait) = oneshot::channel();
        // Bounded: a submitter waits for room rather than an event being dropped, and
        // every wait is counted, so a dispatcher falling behind is visible.
        let sent = match self.inner.tx.try_send(Msg::Event { event, done }) {
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

    /// The receivers the route tree sends an alert with `labels` to, in route order
    /// (Alertmanager's `receivers` of an alert).
    pub fn receivers_for(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let running = Arc::clone(&self.inner.running.read().expect("running"));
        let mut routes = Vec::new();
        running.root.matching(labels, &mut routes);
        routes.into_iter().map(|r| r.receiver.clone()).collect()
    }

    /// The inhibition rules in force.
    pub fn inhibit_rules(&self) -> Vec<InhibitRule> {
        let running = self.inner.running.read().expect("running");
        running.config.inhibit_rules.clone()
    }

    /// The `notifications:` section in force: the config file's (as last loaded or
    /// reloaded) with each receiver as it now is, the configure API's settings on top.
    /// Secrets stay inside; its `Serialize` redacts them.
    pub fn running_config(&self) -> NotifyConfig {
        let mut config = self.inner.running.read().expect("running").config.clone();
        config.receivers = self.receivers();
        config
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
        let name = match &req.receiver {
            Some(r) => r.clone(),
            None if self
                .inner
                .routed
                .read()
                .expect("routed")
                .contains(DEFAULT_RECEIVER) =>
            {
                DEFAULT_RECEIVER.to_string()
            }
            // Configuring `default` here would look like success and deliver nothing.
            None => {
                let routed: Vec<String> = self
                    .inner
                    .routed
                    .read()
                    .expect("routed")
                    .iter()
                    .map(|r| format!("{r:?}"))
                    .collect();
                return Err(NotifyError::Invalid(format!(
                    "receiver: required, because the configured route tree never sends to {DEFAULT_RECEIVER:?}; name one it sends to ({})",
                    routed.join(", ")
                )));
            }
        };
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
        // Built and checked first, stored next, and only then put in place: a request
        // that cannot be stored changes nothing.
        let (rc, receiver) = self.build(&name, &merged_req)?;
        self.inner
            .outbox
            .put_settings(name.clone(), merged.to_string())
            .await?;
        self.install(&name, receiver);
        Ok(rc)
    }

    /// Rebuilds receiver `name` from its config file settings plus `req`, and puts it
    /// in place.
    fn apply(&self, name: &str, req: &ConfigureRequest) -> Result<ReceiverConfig, NotifyError> {
        let (rc, receiver) = self.build(name, req)?;
        self.install(name, receiver);
        Ok(rc)
    }

    /// Puts a built receiver in place, its series created.
    fn install(&self, name: &str, receiver: Receiver) {
        for i in &receiver.integrations {
            self.inner.metrics.precreate(name, i.name());
        }
        self.inner
            .receivers
            .write()
            .expect("receivers")
            .insert(name.to_string(), Arc::new(receiver));
    }

    /// Builds receiver `name` from its config file settings plus `req`, changing
    /// nothing yet.
    fn build(
        &self,
        name: &str,
        req: &ConfigureRequest,
    ) -> Result<(ReceiverConfig, Receiver), NotifyError> {
        let mut rc = self
            .inner
            .base
            .read()
            .expect("base")
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
        Ok((rc, receiver))
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
            alerts: vec![super::outward(
                AlertEvent {
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
                    source: AlertSource::Rules,
                    generator_url: None,
                },
                &self.inner.ctx.identity,
            )],
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
}

fn check_url(u: &str, key: &str) -> Result<(), NotifyError> {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(NotifyError::Invalid(format!(
            "{key}: must be an http:// or https:// URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::notify::tests::test_event;

    /// A notifier whose receivers point at a closed port: deliveries fail, but every
    /// notification is in the outbox, which is what these tests read.
    async fn notifier(yaml: &str) -> (Notifier, Outbox, crate::shutdown::Trigger) {
        let dir = tempfile::tempdir().unwrap().keep();
        let config: NotifyConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let outbox = Outbox::open(&dir.join("m4watch.db")).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let (n, _tasks) = Notifier::start(
            &config,
            &Identity::of_this_host(),
            outbox.clone(),
            &Default::default(),
            &prometheus::Registry::new(),
            shutdown,
        )
        .await
        .unwrap();
        (n, outbox, trigger)
    }

    async fn receivers_notified(outbox: &Outbox) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = outbox
            .recent(100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.receiver, d.kind))
            .collect();
        v.sort();
        v
    }

    const ESCALATING: &str = "receivers:
  - name: desk
    webhook: {url: 'http://127.0.0.1:9/desk'}
  - name: oncall
    webhook: {url: 'http://127.0.0.1:9/oncall'}
route: {receiver: desk}
escalation: {receiver: oncall, after: 30m}
";

    /// The shipped kind of escalation delay (minutes, not the milliseconds a
    /// wall-clock test could afford), on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn an_unacknowledged_critical_alert_escalates_after_the_delay_and_not_before() {
        let (n, outbox, trigger) = notifier(ESCALATING).await;
        n.submit(test_event("Latency", AlertState::Firing)).await;
        tokio::time::sleep(Duration::from_secs(29 * 60)).await;
        assert_eq!(
            receivers_notified(&outbox).await,
            [("desk".to_string(), "alert".to_string())],
            "29 minutes: the desk only"
        );
        tokio::time::sleep(Duration::from_secs(2 * 60)).await;
        let got = receivers_notified(&outbox).await;
        assert!(
            got.iter().any(|(r, _)| r == "oncall"),
            "31 minutes: escalated to oncall: {got:?}"
        );
        trigger.fire();
    }

    #[tokio::test(start_paused = true)]
    async fn an_acknowledged_alert_never_escalates() {
        let (n, outbox, trigger) = notifier(ESCALATING).await;
        let mut ev = test_event("Latency", AlertState::Firing);
        n.submit(ev.clone()).await;
        tokio::time::sleep(Duration::from_secs(10 * 60)).await;
        ev.state = AlertState::Acknowledged;
        n.submit(ev).await;
        tokio::time::sleep(Duration::from_secs(4 * 3600)).await;
        let got = receivers_notified(&outbox).await;
        assert!(!got.is_empty());
        assert!(
            got.iter().all(|(r, _)| r == "desk"),
            "four hours on, still nothing for oncall: {got:?}"
        );
        trigger.fire();
    }
}
