//! Containers: the Docker Engine API through bollard.
//!
//! The Engine answers a one-shot stats request only after it has taken a second CPU
//! sample (~0.7 s per container on Docker 20.10), so a cycle that asks for stats can
//! never be faster than `docker stats`. Instead a watcher task keeps the data current at
//! the Engine's own pace and a collection cycle only reads memory:
//!
//! - one `stats?stream=true` connection per running container (attached at start-up and
//!   on `start`, detached on `die`/`destroy`), each keeping only its newest frame; the
//!   frame's age is exported, so staleness is visible. At most `max_streams` are open;
//!   containers without a working stream get one-shot reads, which are counted;
//! - inspect data from the events stream (each event re-inspects its container) and a
//!   periodic resync (list and inspect everything), never one inspect per cycle. Events
//!   also count restarts and OOM kills that heal between two inspects; each inspect
//!   reconciles them with what Docker reports ([`Tracked::reconcile`]).
//!
//! When the Engine is absent, stopped or restarted, the events stream ends, every stream
//! goes with the session, the cycle fails (the scheduler turns that into
//! `m4watch_collector_success{collector="containers"} 0` and drops the families), and the
//! watcher reconnects with a short exponential backoff and re-attaches.
//!
//! Reading (bollard calls) is kept apart from the arithmetic: [`sample_from`],
//! [`Usage::of_frame`], [`families`], [`EventTally::apply`] and [`Tracked::reconcile`]

pub(crate) mod counters;
pub(crate) mod engine;
pub(crate) mod filter;
pub(crate) mod metrics;
pub(crate) mod sample;
mod state;
pub(crate) mod stream;
mod watcher;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

// Every item that was public here before the split keeps its path.
pub(crate) use self::engine::resolve_docker_host;
pub(crate) use self::metrics::*;
use self::state::{Shared, Task, lock};
use self::watcher::Watcher;
use super::{CollectError, Collector};
use crate::config::ContainersConfig;
use crate::store::Family;
pub(crate) use crate::store::views::containers::{ContainerSample, Report};

/// Collects every selected container of one Docker Engine. The cycle itself only reads
/// what the watcher task keeps; it never waits on the Engine.
pub(crate) struct ContainerCollector {
    host: String,
    /// How long the first cycle waits for the first connection attempt.
    first_wait: Duration,
    settings: Option<Watcher>,
    watcher: Option<Task>,
    settled: tokio::sync::watch::Receiver<bool>,
    shared: Shared,
    /// The last successful cycle's report; `None` after a failure.
    latest: Option<Arc<Report>>,
    /// The `expected` label of each `containers.expected` entry, in order.
    expected: Vec<String>,
}

impl ContainerCollector {
    /// A collector for `cfg`; nothing connects until the first cycle.
    pub(crate) fn new(cfg: &ContainersConfig) -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let host = resolve_docker_host(cfg.docker_host.as_deref(), home.as_deref(), |p| p.exists());
        let shared: Shared = Arc::default();
        let (tx, rx) = tokio::sync::watch::channel(false);
        ContainerCollector {
            first_wait: cfg.timeout.get() * 3 / 4,
            settings: Some(Watcher::new(cfg, &host, Arc::clone(&shared), tx)),
            watcher: None,
            settled: rx,
            shared,
            latest: None,
            expected: cfg.expected.iter().map(|e| e.selector()).collect(),
            host,
        }
    }

    /// The address in use, for logs and the API.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// One report, and per `containers.expected` entry its selector and presence.
    async fn cycle(&mut self) -> Result<(Report, Vec<(String, bool)>), CollectError> {
        if let Some(w) = self.settings.take() {
            self.watcher = Some(Task::spawn(w.run()));
            // The first cycle waits (briefly) for the first connection, so a daemon
            // that starts beside a running Engine does not begin with a failure.
            let _ = tokio::time::timeout(self.first_wait, self.settled.wait_for(|s| *s)).await;
        }
        let state = lock(&self.shared);
        let Some(engine) = state.engine.clone() else {
            let why = if state.settled {
                state.last_error.clone()
            } else {
                format!("connecting to the Docker Engine at {}", self.host)
            };
            return Err(CollectError(why));
        };
        let now = Instant::now();
        let mut containers: Vec<ContainerSample> = state
            .containers
            .values()
            .map(|k| {
                let mut s = k.sample.clone();
                if let Some(f) = k.frame.as_ref().filter(|_| k.running) {
                    f.usage.apply_to(&mut s);
                    s.stats_age_seconds = Some(now.duration_since(f.received).as_secs_f64());
                }
                s
            })
            .collect();
        let stats_streams = state.streams();
        let stats_fallbacks_total = state.fallbacks_total;
        let expected = self
            .expected
            .iter()
            .cloned()
            .zip(state.expected_present(self.expected.len()))
            .collect();
        drop(state);
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let report = Report {
            collected_at_unix: crate::clock::unix_now(),
            docker_host: self.host.clone(),
            engine,
            containers,
            stats_streams,
            stats_fallbacks_total,
        };
        Ok((report, expected))
    }
}

impl Drop for ContainerCollector {
    fn drop(&mut self) {
        // Stops the watcher, then every stream with the state that owns it.
        self.watcher = None;
        lock(&self.shared).containers.clear();
    }
}

impl Collector for ContainerCollector {
    fn name(&self) -> &'static str {
        super::CollectorKind::Containers.name()
    }

    fn publish_view(&self, views: &crate::store::views::Views) {
        views.containers.set(self.latest.clone());
    }

    async fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        match self.cycle().await {
            Ok((report, expected)) => {
                let mut fams = families(&report);
                if !expected.is_empty() {
                    fams.push(expected_family(&expected));
                }
                self.latest = Some(Arc::new(report));
                Ok(fams)
            }
            Err(e) => {
                self.latest = None;
                Err(e)
            }
        }
    }
}
