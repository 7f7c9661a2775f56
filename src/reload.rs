//! The reload request channel: SIGHUP and `POST /-/reload` ask the wiring to re-read
//! the config and rule files, as Prometheus and Alertmanager users expect. The parts
//! that ask (the API) and the part that answers (the wiring) share only this.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::model::{Family, Kind, MetricDef, def};

pub(crate) const CONFIG_LAST_RELOAD_SUCCESSFUL: MetricDef = def(
    "m4watch_config_last_reload_successful",
    Kind::Gauge,
    &[],
    "1 if the last reload of the config and rule files succeeded (or none was asked for since start-up), 0 if it failed and the previous config still runs.",
);

pub(crate) const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: MetricDef = def(
    "m4watch_config_last_reload_success_timestamp_seconds",
    Kind::Gauge,
    &[],
    "When the running config was last loaded successfully (start-up or reload), Unix seconds.",
);

/// The two reload families.
pub(crate) fn families(successful: bool, success_at: f64) -> Vec<Family> {
    let mut ok = Family::new(&CONFIG_LAST_RELOAD_SUCCESSFUL);
    ok.push_value(f64::from(u8::from(successful)));
    let mut at = Family::new(&CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS);
    at.push_value(success_at);
    vec![ok, at]
}

/// What a successful reload changed, and what it could not.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct Outcome {
    /// Always `reloaded`.
    pub status: &'static str,
    /// Parts the running daemon took at once.
    pub applied: Vec<&'static str>,
    /// Config sections that changed but are read at start-up only: they take effect
    /// at the next restart.
    pub restart_required: Vec<&'static str>,
}

/// One request; the answer comes back on `reply`: the outcome, or why the new config
/// was refused.
pub(crate) struct Request {
    pub reply: oneshot::Sender<Result<Outcome, ReloadError>>,
}

/// Why a reload did not happen. Every case but [`ReloadError::ShuttingDown`] leaves
/// the running config in place. The wiring's own error types sit on higher layers
/// than this channel, so they travel boxed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The new config or its rule files are invalid (or there is no file to re-read):
    /// the config error, `file:line:col: key.path: reason`.
    #[error(transparent)]
    Config(Box<dyn std::error::Error + Send + Sync>),
    /// The new config names no receiver while the running one has some: an emptied or
    /// truncated file (or one without `notifications:`) would silence every page.
    /// Removing every receiver takes a restart with the new file.
    #[error(
        "the new config has no notification receivers while {0} are running (an empty or truncated file, or no `notifications:` section?); the running config stays; to remove every receiver, restart m4watch"
    )]
    ReceiversDropped(usize),
    /// `--web.config.file` (or a certificate or key it names) is invalid.
    #[error(transparent)]
    Web(Box<dyn std::error::Error + Send + Sync>),
    /// The notifier refused the new notification settings.
    #[error("notifications: {0}")]
    Notifications(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The re-read did not finish (its blocking task panicked or was cancelled).
    #[error("{0}")]
    Interrupted(String),
    /// The reloader is gone: the daemon is stopping.
    #[error("m4watch is shutting down")]
    ShuttingDown,
}

/// The asking side. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Reload {
    tx: mpsc::Sender<Request>,
}

impl Reload {
    /// Asks for a reload and waits for its outcome; an invalid new config is an
    /// error and leaves the running one in place.
    pub(crate) async fn request(&self) -> Result<Outcome, ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { reply })
            .await
            .map_err(|_| ReloadError::ShuttingDown)?;
        answer.await.map_err(|_| ReloadError::ShuttingDown)?
    }
}

/// A reload channel: requests queue (at most a few; a reload re-reads everything,
/// so there is no point in more).
pub(crate) fn channel() -> (Reload, mpsc::Receiver<Request>) {
    let (tx, rx) = mpsc::channel(4);
    (Reload { tx }, rx)
}
