//! Time: the wall clock as Prometheus timestamps it, and the one periodic-task loop every
//! ticking part of m4watch runs on.
//!
//! Loops tick on tokio's clock, so a test that pauses time (`tokio::time::pause`) drives
//! them without sleeping.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use crate::shutdown::Shutdown;

/// Seconds since the Unix epoch, as Prometheus timestamps them.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    (unix_now() * 1000.0) as i64
}

/// RFC 3339 UTC time, to the millisecond, of a Unix ms timestamp. Never panics: a
/// time before 1970 reads as the epoch, and one beyond what a calendar can hold (a
/// row written by an older version or by hand) as the latest time it can show.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms.max(0))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// When something last happened (Unix ms), shared cheaply between the part that does
/// it and the parts that watch it: the rule loop marks each finished evaluation, the
/// delivery worker each outbox pass, and the heartbeat reads both. Never marked reads
/// as `None`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stamp(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Stamp {
    /// Records that it happened now.
    pub(crate) fn mark(&self) {
        self.set(unix_now_ms());
    }

    /// Records that it happened at `ms`.
    pub(crate) fn set(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets it: reads `None` again.
    pub(crate) fn clear(&self) {
        self.set(0);
    }

    /// When it last happened, if ever.
    pub(crate) fn get(&self) -> Option<i64> {
        Some(self.0.load(std::sync::atomic::Ordering::Relaxed)).filter(|&ms| ms > 0)
    }
}

/// Runs `f` at once and then every `interval` until `shutdown` fires. A run in progress
/// when shutdown fires finishes first (a run that may be cut short races the shutdown
/// itself); a run longer than `interval` delays the next one rather than bunching ticks
/// up.
pub(crate) async fn every<F, Fut>(interval: Duration, shutdown: Shutdown, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    every_or_when(interval, None, shutdown, f).await
}

/// As [`every`], and also whenever `wake` is notified.
pub(crate) async fn every_or_when<F, Fut>(
    interval: Duration,
    wake: Option<&Notify>,
    mut shutdown: Shutdown,
    mut f: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            _ = ticker.tick() => {}
            _ = woken(wake) => {}
        }
        f().await;
    }
}

/// Resolves when `wake` is notified; never without one.
async fn woken(wake: Option<&Notify>) {
    match wake {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn runs_at_once_then_every_interval_until_shutdown() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let task = tokio::spawn(every(Duration::from_secs(10), shutdown, move || {
            let r = Arc::clone(&r);
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "first run is immediate");
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "then one run per 10 s");
        trigger.fire();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "nothing runs after shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_runs_between_ticks() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let wake = Arc::new(Notify::new());
        let runs = Arc::new(AtomicU32::new(0));
        let (w, r) = (Arc::clone(&wake), Arc::clone(&runs));
        let task = tokio::spawn(async move {
            every_or_when(Duration::from_secs(60), Some(&w), shutdown, move || {
                let r = Arc::clone(&r);
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        trigger.fire();
        task.await.unwrap();
    }
}
