//! Graceful shutdown: one trigger, any number of listeners.

use tokio::sync::watch;

/// Fires shutdown for every [`Shutdown`] made from the same channel.
pub struct Trigger(watch::Sender<bool>);

/// A listener tasks race their work against with `select!`.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its first listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Resolves once shutdown has fired (at once if it already has, or if the trigger
    /// was dropped).
    pub async fn recv(&mut self) {
        let _ = self.0.wait_for(|&fired| fired).await;
    }

    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}
