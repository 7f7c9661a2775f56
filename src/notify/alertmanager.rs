//! Forwarding to real Alertmanagers (`POST /api/v2/alerts`), so several hosts can
//! share one Alertmanager cluster for dedup and silences.
//!
//! Like Prometheus's notifier: every firing alert carries `endsAt` a few intervals
//! ahead and is posted again every `resend_delay` while it fires (the dispatcher's
//! re-post), so Alertmanager neither resolves it at its `resolve_timeout` nor keeps
//! it for long after this host dies; a resolve carries its real `endsAt`. Every
//! configured Alertmanager gets every post (a cluster deduplicates).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{AlertState, Ctx, Notification, SendError, post_json};
use crate::config::notify::AlertmanagerConfig;

/// Posts alerts to every configured Alertmanager.
pub(crate) struct Alertmanager {
    /// `(the v2 alerts URL, the label that names it in metrics)`.
    urls: Vec<(String, String)>,
    resend_delay: Duration,
    ctx: Ctx,
}

impl Alertmanager {
    pub(crate) fn new(cfg: &AlertmanagerConfig, ctx: &Ctx) -> Alertmanager {
        Alertmanager {
            urls: cfg
                .urls
                .iter()
                .map(|u| {
                    (
                        format!("{}/api/v2/alerts", u.trim_end_matches('/')),
                        origin(u),
                    )
                })
                .collect(),
            resend_delay: cfg.resend_delay.get(),
            ctx: ctx.clone(),
        }
    }

    /// How often a firing alert is posted again.
    pub(crate) fn resend_delay(&self) -> Duration {
        self.resend_delay
    }

    /// How long a posted firing alert stays valid at Alertmanager without another
    /// post: four evaluation intervals or four resend delays, whichever is longer (as
    /// Prometheus computes it).
    pub(crate) fn validity(&self) -> Duration {
        4 * self.resend_delay.max(self.ctx.identity.evaluation_interval)
    }

    /// What a dry run checks: the payload renders; where it would go.
    pub(crate) fn dry_run(&self, n: &Notification) -> Vec<String> {
        let _ = payload(n, Utc::now(), self.validity());
        self.urls.iter().map(|(u, _)| u.clone()).collect()
    }

    /// Succeeds only when every Alertmanager took the alerts; a retry reposts to all,
    /// which Alertmanager deduplicates. `endsAt` of firing alerts is reckoned from
    /// the moment of sending, so a notice retried from the outbox is not born stale.
    pub(crate) async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        let body = payload(n, Utc::now(), self.validity());
        let mut first_err = None;
        for (u, label) in &self.urls {
            let counters = self.ctx.alertmanagers.as_ref();
            if let Some(c) = counters {
                c.posts.with_label_values(&[label]).inc();
            }
            if let Err(e) = post_json(&self.ctx, u, &body).await {
                if let Some(c) = counters {
                    c.failures.with_label_values(&[label]).inc();
                }
                tracing::warn!(alertmanager = %label, error = %e, "forwarding failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Creates the per-Alertmanager series at zero.
    pub(crate) fn precreate(&self) {
        if let Some(c) = &self.ctx.alertmanagers {
            for (_, label) in &self.urls {
                c.posts.with_label_values(&[label]);
                c.failures.with_label_values(&[label]);
            }
        }
    }
}

/// `scheme://host:port` of a URL: what a metric label may show of it (a path or
/// userinfo can carry credentials).
fn origin(u: &str) -> String {
    match reqwest::Url::parse(u) {
        Ok(url) => match (url.host_str(), url.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
            _ => "<invalid>".into(),
        },
        Err(_) => "<invalid>".into(),
    }
}

/// The v2 `postableAlerts` body at `now`. Resolved alerts carry their real `endsAt`;
/// firing ones `now + validity`.
pub(crate) fn payload(n: &Notification, now: DateTime<Utc>, validity: Duration) -> Value {
    let valid_until = now + chrono::Duration::from_std(validity).unwrap_or(chrono::Duration::MAX);
    Value::Array(
        n.alerts
            .iter()
            .map(|a| {
                let ends_at = if a.state == AlertState::Resolved {
                    a.ends_at.unwrap_or(now)
                } else {
                    valid_until
                };
                let mut v = json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": a.starts_at.to_rfc3339(),
                    "endsAt": ends_at.to_rfc3339(),
                });
                if let Some(g) = &a.generator_url {
                    v["generatorURL"] = json!(g);
                }
                v
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Kind;
    use crate::notify::tests::test_event;

    fn n(state: AlertState) -> Notification {
        Notification {
            receiver: "am".into(),
            kind: Kind::Alert,
            group_key: "g".into(),
            group_labels: Default::default(),
            alerts: vec![test_event("A", state)],
        }
    }

    #[test]
    fn firing_alerts_are_valid_for_a_while_and_resolves_end_when_they_ended() {
        let now = Utc::now();
        let p = payload(&n(AlertState::Firing), now, Duration::from_secs(240));
        let ends: DateTime<Utc> = p[0]["endsAt"].as_str().unwrap().parse().unwrap();
        assert_eq!((ends - now).num_seconds(), 240);
        let mut r = n(AlertState::Resolved);
        let end = now - chrono::Duration::seconds(30);
        r.alerts[0].ends_at = Some(end);
        let p = payload(&r, now, Duration::from_secs(240));
        let ends: DateTime<Utc> = p[0]["endsAt"].as_str().unwrap().parse().unwrap();
        assert_eq!(ends.timestamp(), end.timestamp());
    }

    #[test]
    fn validity_is_four_of_the_longer_interval() {
        let cfg = |resend: u64| AlertmanagerConfig {
            urls: vec!["http://am:9093".into()],
            resend_delay: crate::config::Dur(Duration::from_secs(resend)),
        };
        let ctx = Ctx::new(Duration::from_secs(5));
        assert_eq!(
            Alertmanager::new(&cfg(60), &ctx).validity(),
            Duration::from_secs(240)
        );
        let mut id = crate::config::Identity::of_this_host();
        id.evaluation_interval = Duration::from_secs(120);
        let slow = ctx.with_identity(id);
        assert_eq!(
            Alertmanager::new(&cfg(60), &slow).validity(),
            Duration::from_secs(480)
        );
    }

    #[test]
    fn metric_labels_show_no_credentials_or_paths() {
        assert_eq!(
            origin("http://u:secret@am-1:9093/x?t=1"),
            "http://am-1:9093"
        );
        assert_eq!(origin("https://am"), "https://am:443");
    }
}
