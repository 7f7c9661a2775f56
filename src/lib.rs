//! m4watch: a monitoring sidecar for Apple M4 Max trading hosts.
//!
//! Data flows one way: sources -> store -> consumers.
//!
//! - [`config`]: YAML config -> typed, validated structs; the embedded default.
//! - [`catalog`]: every exported metric family (name, type, labels, help).
//! - [`store`]: metric families from collectors, instruments, the encoded snapshot.
//! - [`collect`]: the collector contract, the scheduler, and the collectors.
//! - [`rules`]: Prometheus rule files evaluated against the store's sample ring.
//! - [`advise`]: recommendations from what the store holds (it only advises).
//! - [`alerts`], [`history`]: alert state, acknowledgements, silences, SQLite.
//! - [`notify`]: routes alert events to Slack, email, PagerDuty, webhooks and
//!   Alertmanager through a durable SQLite outbox.
//! - [`api`]: HTTP routes (`/metrics`, readiness, the JSON API).
//! - [`shutdown`]: the graceful-shutdown signal tasks race against.
//! - [`demo`]: `m4watch demo`, a synthetic M4 Max recording and a StatsD load generator.
//! - [`launchd`]: the macOS launchd agent (`install-launchd`).
//! - [`validate`]: `m4watch validate`, checks a running instance from the outside.

pub mod advise;
pub mod alerts;
pub mod api;
pub mod catalog;
pub mod clock;
pub mod collect;
pub mod config;
pub mod demo;
pub mod history;
pub mod launchd;
pub mod model;
pub mod notify;
pub mod rules;
pub mod shutdown;
pub mod store;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::collect::Blocking;
use crate::collect::trading::statsd::Listener;
use crate::collect::trading::{Trading, TradingCollector};
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for StatsD on UDP {addr}: {source}")]
    BindUdp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Startup(String),
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

/// Binds `config.listen` and runs until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    serve(config, listener, shutdown).await
}

/// Runs every part of m4watch on an already bound listener until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let store = Arc::new(Store::new());
    let mut expected = Vec::new();
    let mut tasks = Vec::new();

    if config.hardware.enabled {
        let hw = collect::hardware::HardwareCollector::from_config(&config.hardware)
            .map_err(Error::Startup)?;
        expected.push("hardware");
        tasks.push(collect::spawn(
            Blocking::new(hw),
            config.hardware.interval.get(),
            config.hardware.timeout.get(),
            Arc::clone(&store),
            shutdown.clone(),
        ));
    }
    if config.process.enabled {
        let p = collect::process::ProcessCollector::new().map_err(|e| Error::Startup(e.0))?;
        expected.push("process");
        let interval = config.process.interval.get();
        tasks.push(collect::spawn(
            Blocking::new(p),
            interval,
            interval,
            Arc::clone(&store),
            shutdown.clone(),
        ));
    }
    let containers = Arc::new(collect::containers::Latest::default());
    if config.containers.enabled {
        let c = collect::containers::ContainerCollector::new(
            &config.containers,
            Arc::clone(&containers),
        );
        tracing::info!(host = c.host(), "watching Docker containers");
        expected.push("containers");
        tasks.push(collect::spawn(
            c,
            config.containers.interval.get(),
            config.containers.timeout.get(),
            Arc::clone(&store),
            shutdown.clone(),
        ));
    }
    if !config.probes.targets.is_empty() {
        let p = collect::probes::ProbeCollector::new(&config.probes)
            .map_err(|e| Error::Startup(e.0))?;
        expected.push("probes");
        let interval = config.probes.interval.get();
        tasks.push(collect::spawn(
            p,
            interval,
            interval,
            Arc::clone(&store),
            shutdown.clone(),
        ));
    }
    let samples = if config.history.enabled {
        let dir = config.data_dir.clone();
        let retention = config.history.retention.get();
        let db =
            tokio::task::spawn_blocking(move || history::samples::SampleDb::open(&dir, retention))
                .await
                .map_err(|e| Error::Startup(e.to_string()))?
                .map_err(|e| Error::Startup(format!("history: {e}")))?;
        tasks.push(history::samples::spawn_sampler(
            Arc::clone(&store),
            db.clone(),
            &config.history,
            shutdown.clone(),
        ));
        Some(db)
    } else {
        None
    };
    let trading = if config.trading.enabled {
        let period = config.history.baseline_period.get().as_millis() as i64;
        let keep = config.history.baseline_periods;
        // Baselines stored by earlier runs; none without the history database.
        let stored = match samples.clone() {
            Some(db) => {
                let since = (store::unix_now() * 1000.0) as i64 - period * (i64::from(keep) + 1);
                tokio::task::spawn_blocking(move || db.baselines(since))
                    .await
                    .map_err(|e| Error::Startup(e.to_string()))?
                    .map_err(|e| Error::Startup(format!("history: reading baselines: {e}")))?
            }
            None => Vec::new(),
        };
        let baselines = collect::trading::baseline::Baselines::new(
            period,
            keep as usize,
            samples.clone(),
            stored,
        );
        let (t, mut trading_tasks) = start_trading(&config.trading, &store, &shutdown, baselines)?;
        expected.push("trading");
        tasks.append(&mut trading_tasks);
        Some(t)
    } else {
        None
    };
    let alerts = if config.rules.enabled {
        let running = rules::task::start(
            &config,
            Arc::clone(&store),
            shutdown.clone(),
            expected.clone(),
        )
        .await
        .map_err(Error::Startup)?;
        tasks.push(running.task);
        Some((running.alerts, running.transitions))
    } else {
        None
    };
    let advisor = Arc::new(advise::Advisor {
        store: Arc::clone(&store),
        containers: config.containers.enabled.then(|| Arc::clone(&containers)),
        trading: trading.clone(),
        config: config.advice.clone(),
        ring: config.rules.enabled,
        cpusets_not_host_cpus: advise::cpuset_caveat(&config.hardware),
    });
    tasks.push(collect::spawn(
        Blocking::new(advise::AdviceCollector(Arc::clone(&advisor))),
        config.advice.interval(),
        config.advice.interval(),
        Arc::clone(&store),
        shutdown.clone(),
    ));
    tasks.push(spawn_snapshotter(
        Arc::clone(&store),
        config.metrics.snapshot_interval.get(),
        shutdown.clone(),
    ));

    let (notifier, notify_tasks) = notify::Notifier::start(
        &config.notifications,
        &config.data_dir,
        store.registry(),
        shutdown.clone(),
    )
    .await
    .map_err(|e| Error::Startup(e.to_string()))?;
    tasks.extend(notify_tasks);
    let alerts = alerts.map(|(alerts, transitions)| {
        tasks.push(notify::bridge::spawn(
            Arc::clone(&alerts),
            transitions,
            notifier.clone(),
            shutdown.clone(),
        ));
        alerts
    });

    let state = Arc::new(api::AppState {
        config: Arc::new(config),
        store,
        started: Instant::now(),
        expected_collectors: expected,
        trading,
        alerts,
        notifier,
        containers,
        samples,
        advisor,
    });
    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(%addr, "serving /metrics and the API");
    let mut stop = shutdown.clone();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move { stop.recv().await })
        .await
        .map_err(Error::Serve)?;
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The trading store, its collector and (unless `statsd_listen` is null) the StatsD
/// listener thread, stopped on shutdown.
fn start_trading(
    config: &config::TradingConfig,
    store: &Arc<Store>,
    shutdown: &Shutdown,
    baselines: collect::trading::baseline::Baselines,
) -> Result<(Arc<Trading>, Vec<tokio::task::JoinHandle<()>>), Error> {
    let trading =
        Trading::new(config, store.registry()).map_err(|e| Error::Startup(e.to_string()))?;
    let interval = config.interval.get();
    let mut tasks = vec![collect::spawn(
        Blocking::new(TradingCollector::new(Arc::clone(&trading)).with_baselines(baselines)),
        interval,
        interval,
        Arc::clone(store),
        shutdown.clone(),
    )];
    if let Some(addr) = config.statsd_listen {
        let listener = Listener::start(addr, Arc::clone(&trading))
            .map_err(|source| Error::BindUdp { addr, source })?;
        trading.set_statsd_addr(listener.addr());
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            stop.recv().await;
            let _ = tokio::task::spawn_blocking(move || listener.stop()).await;
        }));
    }
    Ok((trading, tasks))
}

/// Re-encodes the snapshot whenever a collector publishes, and at least every
/// `interval` for instruments that change in between.
fn spawn_snapshotter(
    store: Arc<Store>,
    interval: std::time::Duration,
    mut shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            store.refresh_snapshot();
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = ticker.tick() => {}
                _ = store.changed() => {}
            }
        }
    })
}
