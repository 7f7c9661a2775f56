//! PagerDuty Events API v2: `trigger`, `acknowledge`, `resolve`, one event per alert
//! with a `dedup_key` per alert fingerprint by default (Alertmanager keys per group,
//! so separate alerts of one group merge into one incident: its #2874).

use serde_json::{Value, json};

use super::{
    AlertEvent, AlertState, Ctx, Kind, Notification, Reason, SendError, Severity, post_json,
};
use crate::config::Secret;
use crate::config::notify::PagerDutyConfig;

/// Sends to one PagerDuty service (routing key).
pub(crate) struct PagerDuty {
    routing_key: Secret,
    url: String,
    dedup_key: String,
    source: Option<String>,
    ctx: Ctx,
}

/// PagerDuty truncates longer summaries.
const SUMMARY_MAX: usize = 1024;

impl PagerDuty {
    pub(crate) fn new(cfg: &PagerDutyConfig, ctx: &Ctx) -> PagerDuty {
        PagerDuty {
            routing_key: cfg.routing_key.clone().unwrap_or_else(|| Secret::new("")),
            url: cfg.url.clone(),
            dedup_key: cfg.dedup_key.clone(),
            source: cfg.source.clone(),
            ctx: ctx.clone(),
        }
    }

    /// One event per alert; a retry resends them all, which the dedup keys make
    /// harmless.
    /// What a dry run checks: every event renders with a routing key; where they
    /// would go.
    pub(crate) fn dry_run(&self, n: &Notification) -> Result<Vec<String>, SendError> {
        if self.routing_key.expose().is_empty() {
            return Err(SendError::fatal(Reason::Invalid, "no routing key"));
        }
        for a in &n.alerts {
            let _ = event(
                a,
                n,
                self.routing_key.expose(),
                &self.dedup_key,
                self.source.as_deref(),
                &self.ctx.hostname,
            );
        }
        Ok(vec![self.url.clone()])
    }

    pub(crate) async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        for a in &n.alerts {
            let ev = event(
                a,
                n,
                self.routing_key.expose(),
                &self.dedup_key,
                self.source.as_deref(),
                &self.ctx.hostname,
            );
            post_json(&self.ctx, &self.url, &ev).await?;
        }
        Ok(())
    }
}

/// Events API v2 severity (critical, error, warning or info) of a model severity:
/// PagerDuty has no level above critical, so an emergency pages as critical.
pub(crate) fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Emergency | Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// Fills a checked template.
pub(crate) fn render(t: &str, a: &AlertEvent, group_key: &str) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            break;
        };
        let var = after[..j].trim();
        match var {
            "fingerprint" => out.push_str(&a.fingerprint),
            "group_key" => out.push_str(group_key),
            _ => {
                if let Some(l) = var.strip_prefix("labels.") {
                    out.push_str(a.labels.get(l).map(String::as_str).unwrap_or(""));
                }
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

/// The Events API v2 body for one alert.
pub(crate) fn event(
    a: &AlertEvent,
    n: &Notification,
    routing_key: &str,
    dedup_template: &str,
    configured_source: Option<&str>,
    own_name: &str,
) -> Value {
    // A resolve for lack of data does not close the incident: it updates it (a
    // trigger with the same dedup key adds to the open alert, it pages no one again)
    // with "no data since T", and someone closes it who knows the source is back.
    let no_data = a.no_data_since();
    let action = match (n.kind, a.state) {
        (_, AlertState::Resolved) if no_data.is_some() => "trigger",
        (_, AlertState::Resolved) => "resolve",
        (Kind::Acknowledge, _) | (_, AlertState::Acknowledged) => "acknowledge",
        _ => "trigger",
    };
    let dedup_key = render(dedup_template, a, &n.group_key);
    let mut ev = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key,
    });
    if action == "trigger" {
        let mut summary = a.summary();
        if let Some(t) = no_data {
            summary = format!("no data since {t}: {summary}");
        }
        if n.kind == Kind::Escalation {
            summary = format!("[ESCALATED] {summary}");
        } else if n.kind == Kind::Test {
            summary = format!("[TEST] {summary}");
        }
        if summary.chars().count() > SUMMARY_MAX {
            summary = summary.chars().take(SUMMARY_MAX).collect();
        }
        let mut details = serde_json::Map::new();
        for (k, v) in &a.labels {
            details.insert(k.clone(), json!(v));
        }
        if let Some(d) = a.annotations.get("description") {
            details.insert("description".into(), json!(d));
        }
        if let Some(v) = a.value {
            details.insert("value".into(), json!(v));
        }
        // `source` is the receiver's configured one; else the alert's host (the
        // external label, or what its sender named) or scrape target, which say which
        // machine it is about; else this m4watch's own name. The component: what on
        // that machine (a container's `name`, a probe's `target`, a trading
        // `operation`, a process `group`).
        let source = configured_source
            .or_else(|| a.labels.get(crate::config::HOST_LABEL).map(String::as_str))
            .or_else(|| a.labels.get("instance").map(String::as_str))
            .unwrap_or(own_name);
        let component = ["component", "name", "target", "operation", "group", "job"]
            .iter()
            .find_map(|k| a.labels.get(*k))
            .map_or("m4watch", String::as_str);
        ev["payload"] = json!({
            "summary": summary,
            "source": source,
            "severity": severity(a.severity()),
            "timestamp": a.starts_at.to_rfc3339(),
            "component": component,
            "group": a.labels.get("tier").or_else(|| a.labels.get("group")),
            "class": a.name(),
            "custom_details": details,
        });
        let links: Vec<Value> = a
            .links()
            .into_iter()
            .map(|(text, href)| json!({"href": href, "text": text}))
            .collect();
        if !links.is_empty() {
            ev["links"] = json!(links);
        }
        ev["client"] = json!("m4watch");
        if let Some(u) = &a.generator_url {
            ev["client_url"] = json!(u);
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notify::check_template;
    use crate::notify::tests::test_event;

    fn n(kind: Kind, state: AlertState) -> Notification {
        Notification {
            receiver: "pd".into(),
            kind,
            group_key: "grp".into(),
            group_labels: Default::default(),
            alerts: vec![test_event("HighCpu", state)],
        }
    }

    #[test]
    fn trigger_ack_resolve() {
        let t = n(Kind::Alert, AlertState::Firing);
        let ev = event(&t.alerts[0], &t, "KEY", "{{ fingerprint }}", None, "host");
        assert_eq!(ev["event_action"], "trigger");
        assert_eq!(ev["dedup_key"], t.alerts[0].fingerprint);
        assert_eq!(ev["payload"]["severity"], "critical");
        assert_eq!(ev["payload"]["summary"], "HighCpu is high");
        assert_eq!(ev["payload"]["source"], "host");
        let a = n(Kind::Acknowledge, AlertState::Acknowledged);
        let ev = event(&a.alerts[0], &a, "KEY", "{{ fingerprint }}", None, "host");
        assert_eq!(ev["event_action"], "acknowledge");
        assert!(ev.get("payload").is_none());
        let r = n(Kind::Alert, AlertState::Resolved);
        let ev = event(&r.alerts[0], &r, "KEY", "{{ fingerprint }}", None, "host");
        assert_eq!(ev["event_action"], "resolve");
    }

    /// Issue 29: a resolve for lack of data leaves the incident open, updated.
    #[test]
    fn a_resolve_without_data_updates_the_incident_instead_of_closing_it() {
        let mut r = n(Kind::Alert, AlertState::Resolved);
        r.alerts[0].annotations.insert(
            "resolved_reason".into(),
            "no data since 2027-01-15T08:00:00Z".into(),
        );
        let ev = event(&r.alerts[0], &r, "KEY", "{{ fingerprint }}", None, "host");
        assert_eq!(ev["event_action"], "trigger");
        assert_eq!(ev["dedup_key"], r.alerts[0].fingerprint);
        assert_eq!(
            ev["payload"]["summary"],
            "no data since 2027-01-15T08:00:00Z: HighCpu is high"
        );
    }

    /// Issue 27: the incident names the machine it is about and the part of it.
    #[test]
    fn source_is_the_alerts_host_and_component_the_part_of_it() {
        let mut t = n(Kind::Alert, AlertState::Firing);
        t.alerts[0].labels.insert("host".into(), "mac-07".into());
        t.alerts[0]
            .labels
            .insert("name".into(), "risk-engine".into());
        let ev = event(&t.alerts[0], &t, "KEY", "{{ fingerprint }}", None, "m4w");
        assert_eq!(ev["payload"]["source"], "mac-07");
        assert_eq!(ev["payload"]["component"], "risk-engine");
        let ev = event(
            &t.alerts[0],
            &t,
            "KEY",
            "{{ fingerprint }}",
            Some("desk-1"),
            "m4w",
        );
        assert_eq!(
            ev["payload"]["source"], "desk-1",
            "a configured source wins"
        );
        t.alerts[0].labels.clear();
        let ev = event(&t.alerts[0], &t, "KEY", "{{ fingerprint }}", None, "m4w");
        assert_eq!(ev["payload"]["source"], "m4w");
        assert_eq!(ev["payload"]["component"], "m4watch");
    }

    #[test]
    fn severities() {
        let of = |word: &str| severity(Severity::of_label(Some(word)));
        assert_eq!(
            of("emergency"),
            "critical",
            "PagerDuty has nothing above critical"
        );
        assert_eq!(of("fatal"), "critical");
        assert_eq!(of("critical"), "critical");
        assert_eq!(of("ERROR"), "critical");
        assert_eq!(of("warning"), "warning");
        assert_eq!(of("info"), "info");
        assert_eq!(of("whatever"), "warning", "never paged as info");
    }

    #[test]
    fn dedup_templates() {
        let a = test_event("HighCpu", AlertState::Firing);
        assert_eq!(
            render("m4w-{{ labels.alertname }}-{{group_key}}", &a, "g1"),
            "m4w-HighCpu-g1"
        );
        assert!(check_template("{{ labels.alertname }}").is_ok());
        assert_eq!(
            check_template("{{ nope }}").unwrap_err().to_string(),
            "unknown variable \"nope\": use fingerprint, group_key or labels.NAME"
        );
        assert!(check_template("{{ fingerprint").is_err());
    }
}
