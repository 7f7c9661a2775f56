//! Delivery: takes the head of each outbox lane (receiver x integration) when it is
//! due, sends it, and records the outcome. Retries back off exponentially with
//! jitter, never sooner than a `Retry-After`; each receiver has an optional rate
//! limit. Retry policy lives here once, not in the integrations.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::metrics::Metrics;
use super::outbox::{Outbox, Pending};
use super::receiver::Receivers;
use super::{Reason, SendError};
use crate::clock::unix_now;
use crate::config::notify::DeliveryConfig;
use crate::shutdown::Shutdown;

/// Longest the worker sleeps without looking at the outbox.
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// Failed attempts after which the head of a lane is moved aside, so the
/// notifications behind it go out: a head holds its lane for at most this many
/// attempts (each bounded by `delivery.timeout`) and the backoffs between them.
pub(crate) const MOVE_ASIDE_AFTER: i64 = 3;

/// A delivery lane: receiver, integration, and whether it is the lane's rows moved
/// aside (delivered in order among themselves, beside the lane's main queue).
type Lane = (String, String, bool);

/// Whether the outbox drains, as the worker last saw it; the heartbeat reads it, so a
/// worker that stops reading the outbox, or notifications that cannot get out, stop
/// the beats.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// The worker's last complete read of the outbox (at least every [`POLL`]).
    pub pass: crate::clock::Stamp,
    /// When the oldest notification still waiting for delivery was queued; `None`
    /// when none waits.
    pub oldest_pending: crate::clock::Stamp,
}

/// The delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`,
/// capped, then scaled by a random factor in [0.5, 1) so many failing lanes do not
/// retry in step.
pub(crate) fn backoff(attempt: i64, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.clamp(1, 32) - 1;
    let raw = initial.as_secs_f64() * 2f64.powi(exp as i32);
    let capped = raw.min(max.as_secs_f64());
    Duration::from_secs_f64(capped * (0.5 + jitter.clamp(0.0, 1.0) / 2.0))
}

/// Runs until shutdown. A send in flight at shutdown (or at a crash) stays pending in
/// the outbox and goes out after the restart: delivery is at least once.
pub(crate) async fn run(
    outbox: Outbox,
    receivers: Receivers,
    metrics: Metrics,
    delivery: DeliveryConfig,
    wake: Arc<Notify>,
    progress: Progress,
    mut shutdown: Shutdown,
) {
    // Lanes with a send in flight. A finished send hands its lane back through
    // `finished`, and the lane is freed only before the next outbox read: a read taken
    // while the send was still recording its result would otherwise see the row as
    // pending and send it twice.
    let mut busy: HashSet<Lane> = HashSet::new();
    let finished: Arc<Mutex<Vec<Lane>>> = Arc::default();
    let mut next_allowed: HashMap<String, Instant> = HashMap::new();
    // Outcomes sent but not recorded (the disk took no writes): their rows still read
    // as pending, and sending them again every pass would flood the receiver. At most
    // one per lane, since the lane waits behind it.
    let unrecorded: Unrecorded = Arc::default();
    loop {
        for lane in std::mem::take(&mut *finished.lock().expect("finished")) {
            busy.remove(&lane);
        }
        let waiting = std::mem::take(&mut *unrecorded.lock().expect("unrecorded"));
        for (id, outcome) in waiting {
            if outcome.record(&outbox, id).await.is_err() {
                unrecorded.lock().expect("unrecorded").insert(id, outcome);
            }
        }
        // A delivered one is never sent again; a failed one waits for its retry time
        // and is then sent again as its row says.
        let skip: HashSet<i64> = {
            let mut u = unrecorded.lock().expect("unrecorded");
            let now = unix_now();
            u.retain(|_, o| !matches!(o, Outcome::Failed { next: Some(at), .. } if *at <= now));
            u.keys().copied().collect()
        };
        let mut sleep_for = POLL;
        match outbox.heads().await {
            Ok(heads) => {
                let now = unix_now();
                match heads.iter().map(|h| h.created_at).min_by(f64::total_cmp) {
                    Some(at) => progress.oldest_pending.set((at * 1000.0) as i64),
                    None => progress.oldest_pending.clear(),
                }
                progress.pass.mark();
                for h in heads {
                    let lane = (h.receiver.clone(), h.integration.clone(), h.aside);
                    if busy.contains(&lane) || skip.contains(&h.id) {
                        continue;
                    }
                    if h.behind_aside {
                        // An older notification of its group was moved aside: this one
                        // follows it there, so the group's order holds.
                        move_aside(
                            &outbox,
                            &metrics,
                            &h,
                            "its group's earlier notification was moved aside",
                        )
                        .await;
                        sleep_for = Duration::ZERO;
                        continue;
                    }
                    if h.next_attempt_at > now {
                        sleep_for = sleep_for.min(Duration::from_secs_f64(h.next_attempt_at - now));
                        continue;
                    }
                    let rate = receivers
                        .read()
                        .expect("receivers")
                        .get(&h.receiver)
                        .and_then(|r| r.config.rate_limit_per_second);
                    if let Some(rate) = rate {
                        let t = Instant::now();
                        if let Some(at) = next_allowed.get(&h.receiver)
                            && *at > t
                        {
                            sleep_for = sleep_for.min(*at - t);
                            continue;
                        }
                        next_allowed
                            .insert(h.receiver.clone(), t + Duration::from_secs_f64(1.0 / rate));
                    }
                    busy.insert(lane.clone());
                    let (outbox, receivers, metrics, delivery, wake, finished, unrecorded) = (
                        outbox.clone(),
                        Arc::clone(&receivers),
                        metrics.clone(),
                        delivery.clone(),
                        Arc::clone(&wake),
                        Arc::clone(&finished),
                        Arc::clone(&unrecorded),
                    );
                    tokio::spawn(async move {
                        let id = h.id;
                        let head = h.clone();
                        let outcome = deliver(&receivers, &metrics, &delivery, h).await;
                        match outcome.record(&outbox, id).await {
                            Err(e) => {
                                tracing::error!(id, error = %e,
                                    "cannot record a delivery result; kept in memory, not sent again");
                                unrecorded.lock().expect("unrecorded").insert(id, outcome);
                            }
                            Ok(()) => {
                                if let Outcome::Failed {
                                    attempts,
                                    next: Some(_),
                                    ..
                                } = outcome
                                    && !head.aside
                                    && attempts >= MOVE_ASIDE_AFTER
                                {
                                    move_aside(
                                        &outbox,
                                        &metrics,
                                        &head,
                                        "it failed its first attempts",
                                    )
                                    .await;
                                }
                            }
                        }
                        finished.lock().expect("finished").push(lane);
                        wake.notify_one();
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
        }
        if let Ok(n) = outbox.pending_count().await {
            metrics.queue.set(n);
        }
        tokio::select! {
            _ = shutdown.recv() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// Sent notifications whose outcome could not be recorded yet, by outbox id.
type Unrecorded = Arc<Mutex<HashMap<i64, Outcome>>>;

/// What one attempt came to, as the outbox records it.
enum Outcome {
    Delivered {
        attempts: i64,
    },
    Failed {
        attempts: i64,
        next: Option<f64>,
        reason: &'static str,
        error: String,
    },
}

impl Outcome {
    async fn record(&self, outbox: &Outbox, id: i64) -> Result<(), super::outbox::OutboxError> {
        match self {
            Outcome::Delivered { attempts } => outbox.delivered(id, *attempts).await,
            Outcome::Failed {
                attempts,
                next,
                reason,
                error,
            } => {
                outbox
                    .failed(id, *attempts, *next, reason, error.clone())
                    .await
            }
        }
    }
}

async fn deliver(
    receivers: &Receivers,
    metrics: &Metrics,
    delivery: &DeliveryConfig,
    h: Pending,
) -> Outcome {
    let receiver = receivers
        .read()
        .expect("receivers")
        .get(&h.receiver)
        .cloned();
    let attempts = h.attempts + 1;
    let started = Instant::now();
    let result = match receiver
        .as_ref()
        .and_then(|r| r.integration(&h.integration))
    {
        Some(i) => {
            metrics
                .total
                .with_label_values(&[&h.receiver, &h.integration])
                .inc();
            let r = i.notify(&h.notification).await;
            metrics
                .latency
                .with_label_values(&[&h.integration])
                .observe(started.elapsed().as_secs_f64());
            r
        }
        None => Err(SendError::fatal(
            Reason::Invalid,
            "the receiver or integration is no longer configured",
        )),
    };
    match result {
        Ok(()) => {
            tracing::info!(id = h.id, receiver = %h.receiver, integration = %h.integration,
                attempts, "notification delivered");
            Outcome::Delivered { attempts }
        }
        Err(e) => {
            metrics
                .failed
                .with_label_values(&[&h.receiver, &h.integration, e.reason.as_str()])
                .inc();
            let now = unix_now();
            let mut next = None;
            if e.retryable {
                let wait = backoff(
                    attempts,
                    delivery.initial_backoff.get(),
                    delivery.max_backoff.get(),
                    fastrand::f64(),
                )
                .max(e.retry_after.unwrap_or_default());
                let at = now + wait.as_secs_f64();
                if at - h.created_at <= delivery.max_age.get().as_secs_f64() {
                    next = Some(at);
                }
            }
            match next {
                Some(at) => tracing::warn!(id = h.id, receiver = %h.receiver,
                    integration = %h.integration, attempts, error = %e,
                    retry_in_seconds = at - now, "notification failed; will retry"),
                None => tracing::error!(id = h.id, receiver = %h.receiver,
                    integration = %h.integration, attempts, error = %e,
                    "notification failed; giving up"),
            }
            Outcome::Failed {
                attempts,
                next,
                reason: e.reason.as_str(),
                error: e.message,
            }
        }
    }
}

/// Moves a lane's head aside (still pending, retried on its own), counted and logged.
async fn move_aside(outbox: &Outbox, metrics: &Metrics, h: &Pending, why: &str) {
    match outbox.move_aside(h.id).await {
        Ok(()) => {
            metrics
                .moved_aside
                .with_label_values(&[&h.receiver, &h.integration])
                .inc();
            tracing::warn!(id = h.id, receiver = %h.receiver, integration = %h.integration,
                attempts = h.attempts, "notification moved aside so later ones go out: {why}");
        }
        Err(e) => tracing::error!(error = %e, "cannot move a notification aside"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1), s(60), 1.0), s(1));
        assert_eq!(backoff(2, s(1), s(60), 1.0), s(2));
        assert_eq!(backoff(4, s(1), s(60), 1.0), s(8));
        assert_eq!(backoff(30, s(1), s(60), 1.0), s(60));
        assert_eq!(backoff(4, s(1), s(60), 0.0), s(4));
        assert_eq!(backoff(0, s(1), s(60), 1.0), s(1));
    }
}
