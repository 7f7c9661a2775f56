//! Collectors and their scheduler.
//!
//! A collector is a one-method contract: produce this cycle's families. Each runs in
//! its own task on its own interval, under a timeout; a failure becomes
//! `m4watch_collector_success{collector} 0` and its families vanish (unknown is absent),
//! while every other collector and `/metrics` carry on.

pub(crate) mod containers;
pub(crate) mod hardware;
pub(crate) mod host;
pub(crate) mod probes;
pub(crate) mod process;
pub(crate) mod process_groups;
pub(crate) mod trading;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::clock::every;
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::store::views::Views;
use crate::store::{Family, Store};

/// Why one collection failed; the message is one line for logs and the status API.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CollectError(pub String);

impl From<std::io::Error> for CollectError {
    fn from(e: std::io::Error) -> Self {
        CollectError(e.to_string())
    }
}

/// An asynchronous source of metric families.
pub(crate) trait Collector: Send + 'static {
    /// Name used in the `collector` label and logs.
    fn name(&self) -> &'static str;
    /// One collection.
    fn collect(&mut self) -> impl Future<Output = Result<Vec<Family>, CollectError>> + Send;
    /// Puts the last collection's typed view, if the source keeps one beside its
    /// families, into its slot of the store; the scheduler calls it after every run.
    fn publish_view(&self, _views: &Views) {}
}

/// A source whose reads block (files, syscalls): run on the blocking pool by
/// [`Blocking`] so it never stalls the async workers.
pub trait BlockingCollector: Send + 'static {
    fn name(&self) -> &'static str;
    fn collect(&mut self) -> Result<Vec<Family>, CollectError>;
    /// As [`Collector::publish_view`].
    fn publish_view(&self, _views: &Views) {}
}

/// Adapts a [`BlockingCollector`] to [`Collector`].
pub(crate) struct Blocking<C> {
    name: &'static str,
    inner: Arc<Mutex<C>>,
}

impl<C: BlockingCollector> Blocking<C> {
    pub(crate) fn new(c: C) -> Self {
        Blocking {
            name: c.name(),
            inner: Arc::new(Mutex::new(c)),
        }
    }
}

impl<C: BlockingCollector> Collector for Blocking<C> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A run that outlived its timeout may still hold the lock: report the
            // overlap instead of queueing behind it.
            let mut c = inner
                .try_lock()
                .map_err(|_| CollectError("previous collection is still running".to_string()))?;
            c.collect()
        })
        .await
        .map_err(|e| CollectError(format!("collector task failed: {e}")))?
    }

    fn publish_view(&self, views: &Views) {
        // A run that outlived its timeout still holds the lock: its view comes with
        // the next run.
        if let Ok(c) = self.inner.try_lock() {
            c.publish_view(views);
        }
    }
}

/// Every collector m4watch has: a closed set, so start-up wires each one by an
/// exhaustive `match` and a collector cannot be listed without being wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum CollectorKind {
    Hardware,
    Process,
    Host,
    ProcessGroups,
    Containers,
    Probes,
    Trading,
}

impl CollectorKind {
    /// Every kind, in start-up order.
    pub(crate) const ALL: [CollectorKind; 7] = [
        CollectorKind::Hardware,
        CollectorKind::Process,
        CollectorKind::Host,
        CollectorKind::ProcessGroups,
        CollectorKind::Containers,
        CollectorKind::Probes,
        CollectorKind::Trading,
    ];

    /// The name `m4watch_collector_success{collector}` and the logs use.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            CollectorKind::Hardware => "hardware",
            CollectorKind::Process => "process",
            CollectorKind::Host => "host",
            CollectorKind::ProcessGroups => "process_groups",
            CollectorKind::Containers => "containers",
            CollectorKind::Probes => "probes",
            CollectorKind::Trading => "trading",
        }
    }
}

/// One collector as configured. [`registry`] is the one list of collectors: start-up
/// builds the enabled ones from it, the status endpoint shows it, and readiness and the
/// rule engine wait for the enabled ones to have run once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub kind: CollectorKind,
    pub enabled: bool,
    pub interval: Duration,
    /// How long one run may take before it counts as failed.
    pub timeout: Duration,
}

impl Entry {
    /// The collector's name, as its `collector` label reads.
    pub(crate) fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Runs `collector` on this entry's interval and timeout until `shutdown` fires.
    pub(crate) fn spawn<C: Collector>(
        &self,
        collector: C,
        store: &Arc<Store>,
        shutdown: &Shutdown,
    ) -> JoinHandle<()> {
        spawn(
            collector,
            self.interval,
            self.timeout,
            Arc::clone(store),
            shutdown.clone(),
        )
    }
}

/// Every collector m4watch has, in start-up order, as `config` sets them.
pub(crate) fn registry(config: &Config) -> Vec<Entry> {
    CollectorKind::ALL
        .into_iter()
        .map(|kind| {
            let (enabled, interval, timeout) = match kind {
                CollectorKind::Hardware => (
                    config.hardware.enabled,
                    config.hardware.interval,
                    config.hardware.timeout,
                ),
                CollectorKind::Process => (
                    config.process.enabled,
                    config.process.interval,
                    config.process.interval,
                ),
                CollectorKind::Host => (
                    config.host.enabled,
                    config.host.interval,
                    config.host.interval,
                ),
                CollectorKind::ProcessGroups => (
                    config.processes.enabled && !config.processes.groups.is_empty(),
                    config.processes.interval,
                    config.processes.interval,
                ),
                CollectorKind::Containers => (
                    config.containers.enabled,
                    config.containers.interval,
                    config.containers.timeout,
                ),
                CollectorKind::Probes => (
                    !config.probes.targets.is_empty(),
                    config.probes.interval,
                    config.probes.interval,
                ),
                CollectorKind::Trading => (
                    config.trading.enabled,
                    config.trading.interval,
                    config.trading.interval,
                ),
            };
            Entry {
                kind,
                enabled,
                interval: interval.get(),
                timeout: timeout.get(),
            }
        })
        .collect()
}

/// Runs `collector` every `interval` with `timeout` until `shutdown` fires; a run in
/// progress when shutdown fires is cut short.
pub(crate) fn spawn<C: Collector>(
    collector: C,
    interval: Duration,
    timeout: Duration,
    store: Arc<Store>,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let name = collector.name();
    let collector = Arc::new(tokio::sync::Mutex::new(collector));
    tokio::spawn(every(interval, shutdown.clone(), move || {
        let (collector, store, mut shutdown) =
            (Arc::clone(&collector), Arc::clone(&store), shutdown.clone());
        async move {
            let mut collector = collector.lock().await;
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = shutdown.recv() => return,
                r = tokio::time::timeout(timeout, collector.collect()) => r,
            };
            let took = started.elapsed();
            let result = match outcome {
                Ok(Ok(families)) => {
                    store.publish(name, families);
                    Ok(())
                }
                Ok(Err(e)) => Err(e.0),
                Err(_) => Err(format!("timed out after {timeout:?}")),
            };
            if let Err(e) = &result {
                tracing::warn!(collector = name, error = %e, "collection failed");
                store.publish(name, Vec::new());
            }
            collector.publish_view(store.views());
            store.record_run(name, result, took);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flaky {
        calls: u32,
    }

    impl Collector for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
            self.calls += 1;
            match self.calls {
                1 => {
                    let mut f = Family::new(&crate::collect::hardware::TEMPERATURE_CELSIUS);
                    f.push([("sensor", "a")], 1.0);
                    Ok(vec![f])
                }
                2 => Err(CollectError("sensor bus gone".into())),
                _ => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(vec![])
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_and_timeouts_are_recorded_and_clear_the_families() {
        let store = Arc::new(Store::new());
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = spawn(
            Flaky { calls: 0 },
            Duration::from_secs(1),
            Duration::from_millis(500),
            Arc::clone(&store),
            shutdown,
        );
        let temps = |s: &Store| {
            s.families()
                .iter()
                .find(|f| f.name == "m4watch_temperature_celsius")
                .map_or(0, |f| f.samples.len())
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(temps(&store), 1);
        assert!(store.collectors()["flaky"].success);

        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = &store.collectors()["flaky"];
        assert_eq!(
            (s.success, s.last_error.as_deref()),
            (false, Some("sensor bus gone"))
        );
        assert_eq!(temps(&store), 0, "a failed source's series must vanish");

        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = &store.collectors()["flaky"];
        assert!(
            s.last_error.as_deref().unwrap().starts_with("timed out"),
            "{s:?}"
        );
        assert!(
            s.last_success_unix.is_some(),
            "last success survives failures"
        );
        trigger.fire();
        task.await.unwrap();
    }
}
