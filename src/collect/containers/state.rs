//! What the watcher task keeps and the collection cycle reads: one [`Known`] per
//! selected container, its newest stats frame and the task that streams it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::counters::Tracked;
use super::engine::REQUEST_TIMEOUT;
use super::sample::Usage;
use super::stream::{Endpoint, StatsStream};
use crate::store::views::containers::{ContainerSample, EngineInfo};

/// Longest wait between reconnection attempts (and between attempts at a failed
/// stats stream). A failed connect to an absent socket costs next to nothing, and a short
/// cap brings the data back soon after an Engine restart.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// A task that is aborted when its handle is dropped, so whatever owns it (a stats
/// stream in the shared state, the watcher in the collector) cannot outlive its owner.
pub(super) struct Task(tokio::task::JoinHandle<()>);

impl Task {
    pub(super) fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(f))
    }

    pub(super) fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The newest stats frame of a container, reduced to what a sample exports.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    pub(super) usage: Usage,
    pub(super) received: Instant,
}

/// One selected container as the watcher knows it.
pub(super) struct Known {
    /// From the last inspect, counters applied; usage comes from `frame` at cycle time.
    pub(super) sample: ContainerSample,
    pub(super) running: bool,
    pub(super) tracked: Tracked,
    /// Only the latest frame is kept: the usage counters are exported as totals and
    /// Prometheus takes the rates, so an older frame would be memory spent on nothing.
    pub(super) frame: Option<Frame>,
    pub(super) stream: Option<Task>,
    /// Which stream may write `frame`: a stream aborted on `die` may still be inside
    /// its last write, and must not give a stopped container usage again.
    stream_generation: u64,
    /// After a stream failed: when to try one again, and the wait after the next failure.
    pub(super) stream_retry_at: Option<Instant>,
    pub(super) stream_backoff: Duration,
}

impl Known {
    pub(super) fn new() -> Known {
        Known {
            sample: ContainerSample::default(),
            running: false,
            tracked: Tracked::default(),
            frame: None,
            stream: None,
            stream_generation: 0,
            stream_retry_at: None,
            stream_backoff: FIRST_BACKOFF,
        }
    }

    pub(super) fn detach(&mut self) {
        self.stream = None;
        self.frame = None;
        self.stream_generation += 1;
    }
}

/// What the watcher task keeps and the collection cycle reads.
#[derive(Default)]
pub(super) struct State {
    /// The Engine's description while a session is up (connected, first resync done).
    pub(super) engine: Option<EngineInfo>,
    /// Why there is no session, for the collector's error.
    pub(super) last_error: String,
    /// Whether the first connection attempt has finished, either way.
    pub(super) settled: bool,
    /// Selected containers by full id.
    pub(super) containers: HashMap<String, Known>,
    pub(super) fallbacks_total: u64,
    /// Running containers (any, selected or not) that match `containers.expected`
    /// entries: full id → the indexes of the entries matched. Only matching containers
    /// are kept, so it is empty without `containers.expected`.
    pub(super) expected: HashMap<String, Vec<usize>>,
}

impl State {
    pub(super) fn streams(&self) -> usize {
        self.containers
            .values()
            .filter(|k| k.stream.as_ref().is_some_and(|t| !t.is_finished()))
            .count()
    }
}

impl State {
    /// Notes what a container now is for `containers.expected`: it counts while it runs
    /// and matches an entry; otherwise it is forgotten.
    pub(super) fn note_expected(&mut self, id: &str, running: bool, matched: Vec<usize>) {
        if running && !matched.is_empty() {
            self.expected.insert(id.to_string(), matched);
        } else {
            self.expected.remove(id);
        }
    }

    /// Per entry of `containers.expected` (of `count`): whether a running container
    /// matches it.
    pub(super) fn expected_present(&self, count: usize) -> Vec<bool> {
        let mut present = vec![false; count];
        for i in self.expected.values().flatten() {
            if let Some(p) = present.get_mut(*i) {
                *p = true;
            }
        }
        present
    }
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the newest frame of one container's `stats?stream=true` until the Engine
/// closes the stream or the stream is detached (aborted).
async fn follow_stats(
    endpoint: Arc<Endpoint>,
    id: String,
    generation: u64,
    shared: Weak<Mutex<State>>,
) {
    let mut frames = match StatsStream::open(&endpoint, &id, REQUEST_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "stats stream not opened");
            return;
        }
    };
    loop {
        let st = match frames.next().await {
            Ok(st) => st,
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "stats stream ended");
                return;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = lock(&shared);
        match state.containers.get_mut(&id) {
            Some(k) if k.stream_generation == generation => {
                if let Some(usage) = Usage::of_frame(&st) {
                    k.frame = Some(Frame {
                        usage,
                        received: Instant::now(),
                    });
                }
            }
            // Detached or forgotten: this stream is no longer wanted.
            _ => return,
        }
    }
}

/// Starts the stats stream of a running container; false without an endpoint (the
/// container is then read one-shot).
pub(super) fn attach(
    k: &mut Known,
    endpoint: Option<&Arc<Endpoint>>,
    id: &str,
    shared: &Shared,
) -> bool {
    let Some(endpoint) = endpoint else {
        return false;
    };
    k.stream_generation += 1;
    k.stream = Some(Task::spawn(follow_stats(
        Arc::clone(endpoint),
        id.to_string(),
        k.stream_generation,
        Arc::downgrade(shared),
    )));
    true
}
