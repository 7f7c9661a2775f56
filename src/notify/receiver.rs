//! A receiver at run time: its config and the integrations built from it.

use super::alertmanager::Alertmanager;
use super::email::Email;
use super::pagerduty::PagerDuty;
use super::slack::Slack;
use super::webhook::Webhook;
use crate::config::notify::ReceiverConfig;
use std::time::Duration;

use super::{Ctx, Kind, Notification, Reason, SendError};

/// One delivery channel of a receiver.
pub(crate) enum Integration {
    Slack(Slack),
    Email(Email),
    PagerDuty(PagerDuty),
    Webhook(Webhook),
    Alertmanager(Alertmanager),
}

impl Integration {
    /// The `integration` label value and outbox lane name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Integration::Slack(_) => "slack",
            Integration::Email(_) => "email",
            Integration::PagerDuty(_) => "pagerduty",
            Integration::Webhook(_) => "webhook",
            Integration::Alertmanager(_) => "alertmanager",
        }
    }

    /// The Alertmanager forwarding, for the dispatcher's re-posts.
    pub(crate) fn as_alertmanager(&self) -> Option<&Alertmanager> {
        match self {
            Integration::Alertmanager(a) => Some(a),
            _ => None,
        }
    }

    /// Acknowledgements only mean something to PagerDuty.
    pub(crate) fn accepts(&self, kind: Kind) -> bool {
        kind != Kind::Acknowledge || matches!(self, Integration::PagerDuty(_))
    }

    /// Alertmanager must hear every resolve to clear its own state, whatever the
    /// receiver's `send_resolved` says.
    pub(crate) fn needs_every_resolve(&self) -> bool {
        matches!(self, Integration::Alertmanager(_))
    }

    /// Everything short of sending: renders what would be sent (templates, addresses,
    /// keys) and opens a TCP connection to each destination, then closes it without
    /// writing a byte. Returns the destinations checked.
    pub(crate) async fn dry_run(
        &self,
        n: &Notification,
        timeout: Duration,
    ) -> Result<Vec<String>, SendError> {
        let destinations = match self {
            Integration::Slack(i) => i.dry_run(n),
            Integration::Email(i) => i.dry_run(n)?,
            Integration::PagerDuty(i) => i.dry_run(n)?,
            Integration::Webhook(i) => i.dry_run(n),
            Integration::Alertmanager(i) => i.dry_run(n),
        };
        let mut checked = Vec::new();
        for d in destinations {
            checked.push(reach(&d, timeout).await?);
        }
        Ok(checked)
    }

    pub(crate) async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        match self {
            Integration::Slack(i) => i.notify(n).await,
            Integration::Email(i) => i.notify(n).await,
            Integration::PagerDuty(i) => i.notify(n).await,
            Integration::Webhook(i) => i.notify(n).await,
            Integration::Alertmanager(i) => i.notify(n).await,
        }
    }
}

/// Opens a TCP connection to the host and port of URL `d` within `timeout`, then
/// closes it without writing a byte: a dry run's check that a destination is
/// reachable. Returns `scheme://host:port`, never the path or query (a webhook's path
/// may carry a token).
pub(crate) async fn reach(d: &str, timeout: Duration) -> Result<String, SendError> {
    let url = reqwest::Url::parse(d)
        .map_err(|e| SendError::fatal(Reason::Invalid, format!("bad URL: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| SendError::fatal(Reason::Invalid, "the URL has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| SendError::fatal(Reason::Invalid, "the URL has no port"))?;
    // Bracketed IPv6 hosts come back with their brackets, as connect wants them.
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(format!("{}://{addr}", url.scheme())),
        Ok(Err(e)) => Err(SendError::retry(
            Reason::Connection,
            format!("cannot connect to {addr}: {e}"),
        )),
        Err(_) => Err(SendError::retry(
            Reason::Timeout,
            format!("connecting to {addr} took longer than {timeout:?}"),
        )),
    }
}

/// A configured receiver.
pub(crate) struct Receiver {
    pub config: ReceiverConfig,
    pub integrations: Vec<Integration>,
}

impl Receiver {
    pub(crate) fn new(config: ReceiverConfig, ctx: &Ctx) -> Receiver {
        let mut integrations = Vec::new();
        if let Some(c) = &config.slack {
            integrations.push(Integration::Slack(Slack::new(c, ctx)));
        }
        if let Some(c) = &config.email {
            integrations.push(Integration::Email(Email::new(c, ctx)));
        }
        if let Some(c) = &config.pagerduty {
            integrations.push(Integration::PagerDuty(PagerDuty::new(c, ctx)));
        }
        if let Some(c) = &config.webhook {
            integrations.push(Integration::Webhook(Webhook::new(c, ctx)));
        }
        if let Some(c) = &config.alertmanager {
            integrations.push(Integration::Alertmanager(Alertmanager::new(c, ctx)));
        }
        Receiver {
            config,
            integrations,
        }
    }

    pub(crate) fn integration(&self, name: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.name() == name)
    }
}
/// Receivers by name; replaced whole when the configure API changes one.
pub(crate) type Receivers =
    std::sync::Arc<std::sync::RwLock<std::collections::BTreeMap<String, std::sync::Arc<Receiver>>>>;
