//! Slack incoming webhook: a Block Kit message in an attachment coloured by severity.

use serde_json::{Value, json};

use super::{AlertState, Ctx, Notification, SendError, Severity, post_json};
use crate::config::Secret;
use crate::config::notify::SlackConfig;

/// Posts to one Slack incoming webhook.
pub(crate) struct Slack {
    url: Secret,
    channel: Option<String>,
    ctx: Ctx,
}

/// Slack's limit on a section's text.
const SECTION_TEXT_MAX: usize = 3000;
/// Slack's limit on a header's text.
const HEADER_TEXT_MAX: usize = 150;

impl Slack {
    pub(crate) fn new(cfg: &SlackConfig, ctx: &Ctx) -> Slack {
        Slack {
            url: cfg.webhook_url.clone().unwrap_or_else(|| Secret::new("")),
            channel: cfg.channel.clone(),
            ctx: ctx.clone(),
        }
    }

    /// What a dry run checks: the payload renders; where it would go.
    pub(crate) fn dry_run(&self, n: &Notification) -> Vec<String> {
        let _ = payload(n, self.channel.as_deref());
        vec![self.url.expose().to_string()]
    }

    pub(crate) async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        post_json(
            &self.ctx,
            self.url.expose(),
            &payload(n, self.channel.as_deref()),
        )
        .await
    }
}

/// Hex colour of the attachment bar: green when resolved, else by the worst firing
/// severity.
pub(crate) fn colour(n: &Notification) -> &'static str {
    if n.status() == "resolved" {
        // Grey for a resolve without data: unknown, not recovered.
        if n.alerts.iter().any(|a| a.no_data_since().is_some()) {
            return "#8c8c8c";
        }
        return "#2eb886";
    }
    match n.severity() {
        Severity::Emergency => "#6f0000",
        Severity::Critical => "#d00000",
        Severity::Warning => "#daa038",
        Severity::Info => "#439fe0",
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// The webhook body: `text` as the notification fallback, the blocks in one attachment
/// so Slack shows the severity colour beside them.
pub(crate) fn payload(n: &Notification, channel: Option<&str>) -> Value {
    let title = n.title();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&title, HEADER_TEXT_MAX), "emoji": true}
    })];
    for a in n.alerts.iter().take(20) {
        let no_data = a.no_data_since().map(|t| format!("no data since {t}"));
        let state = match a.state {
            AlertState::Firing => "firing",
            AlertState::Resolved => no_data.as_deref().unwrap_or("resolved"),
            AlertState::Acknowledged => "acknowledged",
        };
        let mut text = format!("*{}* ({state})", a.summary());
        if let Some(d) = a.annotations.get("description") {
            text.push_str(&format!("\n{d}"));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&text, SECTION_TEXT_MAX)}
        }));
        let mut fields = vec![
            json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", a.severity())}),
            json!({"type": "mrkdwn", "text": format!("*Since*\n{}", a.starts_at.format("%Y-%m-%d %H:%M:%S UTC"))}),
        ];
        if let Some(v) = a.value {
            fields.push(json!({"type": "mrkdwn", "text": format!("*Value*\n{v}")}));
        }
        fields.push(json!({"type": "mrkdwn", "text": format!("*Source*\n{}", a.source)}));
        if let Some(t) = a.no_data_since() {
            fields.push(json!({"type": "mrkdwn", "text": format!("*No data since*\n{t}")}));
        } else if a.state == AlertState::Resolved
            && let Some(end) = a.ends_at
        {
            fields.push(json!({"type": "mrkdwn", "text": format!("*Resolved*\n{}", end.format("%Y-%m-%d %H:%M:%S UTC"))}));
        }
        blocks.push(json!({"type": "section", "fields": fields}));
        let labels = a
            .labels
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect::<Vec<_>>()
            .join(" ");
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": clip(&labels, SECTION_TEXT_MAX)}]
        }));
        let links = a.links();
        if !links.is_empty() {
            let buttons: Vec<Value> = links
                .iter()
                .take(5)
                .map(|(text, url)| {
                    json!({"type": "button", "text": {"type": "plain_text", "text": text}, "url": url})
                })
                .collect();
            blocks.push(json!({"type": "actions", "elements": buttons}));
        }
    }
    if n.alerts.len() > 20 {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("and {} more", n.alerts.len() - 20)}]
        }));
    }
    let mut body = json!({
        "text": title,
        "attachments": [{"color": colour(n), "blocks": blocks}]
    });
    if let Some(c) = channel {
        body["channel"] = json!(c);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::test_event;
    use crate::notify::{AlertState, Kind};

    fn notification(state: AlertState) -> Notification {
        let mut a = test_event("HighCpu", state);
        a.annotations
            .insert("runbook_url".into(), "https://runbooks/cpu".into());
        Notification {
            receiver: "slack".into(),
            kind: Kind::Alert,
            group_key: "g".into(),
            group_labels: Default::default(),
            alerts: vec![a],
        }
    }

    #[test]
    fn firing_message_is_red_with_links() {
        let p = payload(&notification(AlertState::Firing), None);
        assert_eq!(p["text"], "[FIRING:1] HighCpu");
        assert_eq!(p["attachments"][0]["color"], "#d00000");
        let blocks = p["attachments"][0]["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        assert_eq!(actions["elements"][0]["url"], "https://runbooks/cpu");
        assert!(p.to_string().contains("*Value*\\n0.97"));
    }

    #[test]
    fn resolved_message_is_green() {
        let p = payload(&notification(AlertState::Resolved), Some("#ops"));
        assert_eq!(p["text"], "[RESOLVED] HighCpu");
        assert_eq!(p["attachments"][0]["color"], "#2eb886");
        assert_eq!(p["channel"], "#ops");
    }

    /// Issue 29: a resolve for lack of data is never worded or coloured as a recovery.
    #[test]
    fn a_resolve_without_data_says_no_data_since() {
        let mut n = notification(AlertState::Resolved);
        n.alerts[0].annotations.insert(
            "resolved_reason".into(),
            "no data since 2027-01-15T08:00:00Z".into(),
        );
        let p = payload(&n, None);
        assert_eq!(p["text"], "[NO DATA] HighCpu");
        assert_eq!(p["attachments"][0]["color"], "#8c8c8c");
        let body = p.to_string();
        assert!(
            body.contains("(no data since 2027-01-15T08:00:00Z)"),
            "{body}"
        );
        assert!(body.contains("*No data since*"), "{body}");
        assert!(
            !body.contains("resolved)") && !body.contains("*Resolved*"),
            "{body}"
        );
    }

    #[test]
    fn colour_follows_the_worst_firing_severity() {
        let with = |sevs: &[&str]| {
            let mut n = notification(AlertState::Firing);
            n.alerts = sevs
                .iter()
                .map(|sev| {
                    let mut a = test_event("X", AlertState::Firing);
                    a.labels.insert("severity".into(), sev.to_string());
                    a
                })
                .collect();
            colour(&n)
        };
        assert_eq!(with(&["info"]), "#439fe0");
        assert_eq!(with(&["warning", "info"]), "#daa038");
        assert_eq!(with(&["warning", "critical"]), "#d00000");
        // Emergency is the worst, not the unknown-word-is-info of before.
        assert_eq!(with(&["critical", "emergency"]), "#6f0000");
        assert_eq!(with(&["fatal"]), "#6f0000");
    }
}
