//! A receiver at run time: its config and the integrations built from it.

use super::alertmanager::Alertmanager;
use super::config::ReceiverConfig;
use super::email::Email;
use super::pagerduty::PagerDuty;
use super::slack::Slack;
use super::webhook::Webhook;
use super::{Ctx, Kind, Notification, SendError};

/// One delivery channel of a receiver.
pub enum Integration {
    Slack(Slack),
    Email(Email),
    PagerDuty(PagerDuty),
    Webhook(Webhook),
    Alertmanager(Alertmanager),
}

impl Integration {
    /// The `integration` label value and outbox lane name.
    pub fn name(&self) -> &'static str {
        match self {
            Integration::Slack(_) => "slack",
            Integration::Email(_) => "email",
            Integration::PagerDuty(_) => "pagerduty",
            Integration::Webhook(_) => "webhook",
            Integration::Alertmanager(_) => "alertmanager",
        }
    }

    /// Acknowledgements only mean something to PagerDuty.
    pub fn accepts(&self, kind: Kind) -> bool {
        kind != Kind::Acknowledge || matches!(self, Integration::PagerDuty(_))
    }

    /// Alertmanager must hear every resolve to clear its own state, whatever the
    /// receiver's `send_resolved` says.
    pub fn needs_every_resolve(&self) -> bool {
        matches!(self, Integration::Alertmanager(_))
    }

    pub async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        match self {
            Integration::Slack(i) => i.notify(n).await,
            Integration::Email(i) => i.notify(n).await,
            Integration::PagerDuty(i) => i.notify(n).await,
            Integration::Webhook(i) => i.notify(n).await,
            Integration::Alertmanager(i) => i.notify(n).await,
        }
    }
}

/// A configured receiver.
pub struct Receiver {
    pub config: ReceiverConfig,
    pub integrations: Vec<Integration>,
}

impl Receiver {
    pub fn new(config: ReceiverConfig, ctx: &Ctx) -> Receiver {
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

    pub fn integration(&self, name: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.name() == name)
    }
}
