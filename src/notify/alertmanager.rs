//! Forwarding to real Alertmanagers (`POST /api/v2/alerts`), so several hosts can
//! share one Alertmanager cluster for dedup and silences.

use serde_json::{Value, json};

use super::{AlertState, Ctx, Notification, SendError, post_json};
use crate::config::notify::AlertmanagerConfig;

/// Posts alerts to every configured Alertmanager.
pub(crate) struct Alertmanager {
    urls: Vec<String>,
    ctx: Ctx,
}

impl Alertmanager {
    pub(crate) fn new(cfg: &AlertmanagerConfig, ctx: &Ctx) -> Alertmanager {
        Alertmanager {
            urls: cfg
                .urls
                .iter()
                .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
                .collect(),
            ctx: ctx.clone(),
        }
    }

    /// Succeeds only when every Alertmanager took the alerts; a retry reposts to all,
    /// which Alertmanager deduplicates.
    /// What a dry run checks: the payload renders; where it would go.
    pub(crate) fn dry_run(&self, n: &Notification) -> Vec<String> {
        let _ = payload(n);
        self.urls.clone()
    }

    pub(crate) async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        let body = payload(n);
        let mut first_err = None;
        for u in &self.urls {
            if let Err(e) = post_json(&self.ctx, u, &body).await {
                tracing::warn!(alertmanager = %u, error = %e, "forwarding failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The v2 `postableAlerts` body. Resolved alerts carry their `endsAt`; firing ones
/// leave it out so Alertmanager applies its resolve timeout.
pub(crate) fn payload(n: &Notification) -> Value {
    Value::Array(
        n.alerts
            .iter()
            .map(|a| {
                let mut v = json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": a.starts_at.to_rfc3339(),
                });
                if a.state == AlertState::Resolved {
                    v["endsAt"] = json!(a.ends_at.unwrap_or_else(chrono::Utc::now).to_rfc3339());
                }
                if let Some(g) = &a.generator_url {
                    v["generatorURL"] = json!(g);
                }
                v
            })
            .collect(),
    )
}
