//! Generic webhook: the Alertmanager webhook JSON (version 4), to any URL.

use serde_json::{Value, json};

use super::{AlertEvent, AlertState, Ctx, Notification, SendError, post_json};
use crate::config::Secret;
use crate::config::notify::WebhookConfig;

/// Posts the Alertmanager webhook payload to one URL.
pub(crate) struct Webhook {
    url: Secret,
    ctx: Ctx,
}

impl Webhook {
    pub(crate) fn new(cfg: &WebhookConfig, ctx: &Ctx) -> Webhook {
        Webhook {
            url: cfg.url.clone(),
            ctx: ctx.clone(),
        }
    }

    /// What a dry run checks: the payload renders; where it would go.
    pub(crate) fn dry_run(&self, n: &Notification) -> Vec<String> {
        let _ = payload(n, &self.ctx.identity.external_url);
        vec![self.url.expose().to_string()]
    }

    pub(crate) async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        let body = payload(n, &self.ctx.identity.external_url);
        post_json(&self.ctx, self.url.expose(), &body).await
    }
}

/// Alertmanager's zero time, used for `endsAt` of firing alerts.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn alert(a: &AlertEvent) -> Value {
    json!({
        "status": if a.state == AlertState::Resolved { "resolved" } else { "firing" },
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": a.starts_at.to_rfc3339(),
        "endsAt": a.ends_at.map_or(ZERO_TIME.to_string(), |e| e.to_rfc3339()),
        "generatorURL": a.generator_url.clone().unwrap_or_default(),
        "fingerprint": a.fingerprint,
    })
}

/// The webhook body, field for field as Alertmanager sends it; `externalURL` is
/// where people reach this m4watch.
pub(crate) fn payload(n: &Notification, external_url: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status(),
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": external_url,
        "alerts": n.alerts.iter().map(alert).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Kind;
    use crate::notify::tests::test_event;

    #[test]
    fn alertmanager_webhook_shape() {
        let n = Notification {
            receiver: "hook".into(),
            kind: Kind::Alert,
            group_key: "{}:{alertname=\"A\"}".into(),
            group_labels: [("alertname".to_string(), "A".to_string())].into(),
            alerts: vec![
                test_event("A", AlertState::Firing),
                test_event("A", AlertState::Resolved),
            ],
        };
        let p = payload(&n, "http://mac-07:9977");
        assert_eq!(p["version"], "4");
        assert_eq!(p["externalURL"], "http://mac-07:9977");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["alerts"][0]["status"], "firing");
        assert_eq!(p["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(p["alerts"][1]["status"], "resolved");
        assert_eq!(p["commonLabels"]["severity"], "critical");
    }
}
