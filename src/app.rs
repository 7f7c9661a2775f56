//! The wiring: loads the config with what only the top of the crate can check, builds
//! every part from the collector registry and the config, and runs them until shutdown.
//! Nothing below imports this module.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::collect::trading::baseline::Baselines;
use crate::collect::trading::statsd::Listener;
use crate::collect::trading::{Trading, TradingCollector};
use crate::collect::{self, Blocking, CollectorKind, Entry};
use crate::config::{Config, ConfigError, EnvLookup};
use crate::persist::samples::SampleDb;
use crate::reload::ReloadError;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::{advise, alerts, api, catalog, clock, heartbeat, history, notify, persist, rules};

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

/// A config checked as a whole: the rule files it names, loaded (once), and every
/// history family known.
pub struct Loaded {
    pub config: Config,
    /// The rule groups; empty when `rules.enabled` is false.
    pub rules: Vec<rules::Group>,
    /// Where a reload reads the config again.
    pub source: Source,
}

/// Where the running config came from, so a reload can read it again.
#[derive(Debug, Clone)]
pub enum Source {
    File(std::path::PathBuf),
    /// No `--config`: the embedded default.
    Embedded,
    /// Built in code (tests, `serve`): nothing to re-read.
    Given,
}

/// Loads and checks a config file, or the embedded default without one. Errors name
/// the file and the key, like every config error.
pub fn load_config(path: Option<&Path>, env: EnvLookup<'_>) -> Result<Loaded, ConfigError> {
    let mut loaded = match path {
        Some(p) => {
            let config = Config::load(p, env)?;
            // The text once more, only to name the line of an error found below.
            let text = crate::config::read_capped(p).unwrap_or_default();
            check(config, &p.display().to_string(), &text)?
        }
        None => check(
            Config::embedded_default(env)?,
            "<embedded default>",
            crate::config::DEFAULT_YAML,
        )?,
    };
    loaded.source = match path {
        Some(p) => Source::File(p.to_path_buf()),
        None => Source::Embedded,
    };
    Ok(loaded)
}

/// Checks what the config module cannot know, and everything start-up would refuse:
/// every `history.families` entry is a family m4watch exports, the rule files load,
/// and a replayed recording opens and parses. `text` is the config's YAML, for the
/// `file:line:col` of an error.
pub(crate) fn check(config: Config, file: &str, text: &str) -> Result<Loaded, ConfigError> {
    let invalid = |path: String, reason: String| ConfigError::Invalid {
        file: crate::config::at(text, file, &path),
        path,
        reason,
    };
    let hw = &config.hardware;
    if hw.enabled
        && hw.source == crate::config::HardwareSource::Replay
        && let Some(f) = &hw.replay_file
    {
        collect::hardware::replay::ReplaySource::open(f, hw.replay_loop)
            .map_err(|e| invalid("hardware.replay_file".into(), e.to_string()))?;
    }
    let rules = if config.rules.enabled {
        rules::load(&config.rules).map_err(|e| invalid("rules.files".into(), e.to_string()))?
    } else {
        Vec::new()
    };
    for (i, f) in config.history.families.iter().enumerate() {
        if catalog::lookup(f).is_none() {
            return Err(invalid(
                format!("history.families[{i}]"),
                format!("{f:?} is not a metric family m4watch exports"),
            ));
        }
    }
    Ok(Loaded {
        config,
        rules,
        source: Source::Given,
    })
}

/// What `check-config` says about `config.web_config_file` and the listeners: the
/// warnings (an HTTP listener on every interface without TLS or a login, StatsD open
/// to any sender), or why the web config is refused.
pub fn exposure(config: &Config) -> Result<Vec<String>, api::web::WebConfigError> {
    let web = api::web::Web::load(config.web_config_file.clone())?;
    Ok(api::web::exposure_warnings(config, &web.settings()))
}

/// Opens the data directory as start-up does, for `check-config`: creates it (0700)
/// where missing, takes its lock (held by a running m4watch is fine: that one uses
/// it) and writes, syncs and removes a file in it. An unusable directory (not
/// creatable, read-only, full, not a directory) is an error naming it.
pub fn check_data_dir(dir: &Path) -> Result<(), String> {
    let held = match persist::DataDirLock::acquire(dir) {
        Ok(lock) => Some(lock),
        Err(persist::LockError::Held { .. }) => None,
        #[cfg(target_os = "linux")]
        Err(persist::LockError::HeldByPath { .. }) => None,
        Err(e) => return Err(format!("data_dir: {e}")),
    };
    let probe = dir.join(format!(".m4watch-check-{}", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(&[0u8; 4096])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    drop(held);
    written.map_err(|e| {
        format!(
            "data_dir: {}: cannot write in the data directory: {e}",
            dir.display()
        )
    })
}

/// Binds `config.listen` and runs until `shutdown` fires.
pub async fn run(loaded: Loaded, shutdown: Shutdown) -> Result<(), Error> {
    let listener = TcpListener::bind(loaded.config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: loaded.config.listen,
            source,
        })?;
    serve_loaded(loaded, listener, shutdown).await
}

/// Checks `config` ([`check`]) and runs every part of m4watch on an already bound
/// listener until `shutdown` fires.
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let loaded = check(config, "config", "").map_err(|e| Error::Startup(e.to_string()))?;
    serve_loaded(loaded, listener, shutdown).await
}

/// Runs every part of a checked config on an already bound listener until `shutdown`
/// fires.
pub(crate) async fn serve_loaded(
    loaded: Loaded,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let Loaded {
        config,
        rules,
        source,
    } = loaded;
    // One owner per data directory, claimed before any database is opened.
    let dir = config.data_dir.clone();
    let lock = blocking(move || persist::DataDirLock::acquire(&dir))
        .await?
        .map_err(|e| Error::Startup(e.to_string()))?;
    let web = Arc::new(
        api::web::Web::load(config.web_config_file.clone())
            .map_err(|e| Error::Startup(e.to_string()))?,
    );
    for warning in api::web::exposure_warnings(&config, &web.settings()) {
        tracing::warn!("{warning}");
    }
    let access = Arc::new(api::auth::Access::new(&config.api));
    let storage = persist::storage::Storage::of_lock(&lock);
    let store = Arc::new(Store::with_groups(catalog::family_groups()));
    let mut tasks = vec![spawn_storage_check(
        storage.clone(),
        Arc::clone(&store),
        shutdown.clone(),
    )];
    let registry = collect::registry(&config);
    let expected: Vec<&'static str> = registry
        .iter()
        .filter(|e| e.enabled)
        .map(|e| e.name())
        .collect();
    startup_line(&config, &source, &listener, &expected);

    let samples = if config.history.enabled {
        let dir = config.data_dir.clone();
        let retention = config.history.retention.get();
        let st = storage.clone();
        let db = blocking(move || SampleDb::open_with(&dir, retention, Some(st)))
            .await?
            .map_err(|e| Error::Startup(format!("history: {e}")))?;
        tasks.push(history::spawn_sampler(
            Arc::clone(&store),
            db.clone(),
            &config.history,
            shutdown.clone(),
        ));
        Some(db)
    } else {
        None
    };

    let mut trading = None;
    for entry in registry.iter().filter(|e| e.enabled) {
        match entry.kind {
            CollectorKind::Hardware => {
                let hw = collect::hardware::HardwareCollector::from_config(&config.hardware)
                    .map_err(|e| Error::Startup(e.to_string()))?;
                tasks.push(entry.spawn(Blocking::new(hw), &store, &shutdown));
            }
            CollectorKind::Process => {
                let p =
                    collect::process::ProcessCollector::new().map_err(|e| Error::Startup(e.0))?;
                tasks.push(entry.spawn(Blocking::new(p), &store, &shutdown));
            }
            CollectorKind::Host => {
                let h = collect::host::HostCollector::new(&config.host);
                tasks.push(entry.spawn(Blocking::new(h), &store, &shutdown));
            }
            CollectorKind::ProcessGroups => {
                let p = collect::process_groups::ProcessGroupCollector::new(
                    &config.processes,
                    collect::process_groups::topology(&config.hardware),
                )
                .map_err(|e| Error::Startup(e.0))?;
                tasks.push(entry.spawn(Blocking::new(p), &store, &shutdown));
            }
            CollectorKind::Containers => {
                let c = collect::containers::ContainerCollector::new(&config.containers);
                tracing::info!(host = c.host(), "watching Docker containers");
                tasks.push(entry.spawn(c, &store, &shutdown));
            }
            CollectorKind::Probes => {
                let p = collect::probes::ProbeCollector::new(&config.probes)
                    .map_err(|e| Error::Startup(e.0))?;
                tasks.push(entry.spawn(p, &store, &shutdown));
            }
            CollectorKind::Trading => {
                let baselines = baselines(&config, samples.clone()).await?;
                let (t, mut trading_tasks) =
                    start_trading(&config, entry, &store, &shutdown, baselines)?;
                tasks.append(&mut trading_tasks);
                trading = Some(t);
            }
        }
    }

    // The alert store holds the rule engine's alerts and those Prometheus posts, so it
    // exists with the rules off too.
    let dir = config.data_dir.clone();
    let st = storage.clone();
    let (db, saved) = blocking(move || persist::alerts::open_with(&dir, st))
        .await?
        .map_err(|e| Error::Startup(e.to_string()))?;
    let alerts = Arc::new(alerts::Alerts::new(
        saved.alerts,
        saved.silences,
        Some(db),
        config.rules.resolved_retention.get().as_millis() as i64,
    ));
    tasks.push(alerts::spawn_expiry(Arc::clone(&alerts), shutdown.clone()));
    let (alerts, transitions, rules_handle, evaluated) = if config.rules.enabled {
        let running = alerts::evaluate::start(
            &config.rules,
            (rules, config.identity().external_labels),
            alerts,
            Arc::clone(&store),
            shutdown.clone(),
            expected.clone(),
            advise::ring_reads(&config.advice),
        );
        tasks.push(running.task);
        (
            running.alerts,
            running.transitions,
            Some(running.rules),
            Some(running.evaluated),
        )
    } else {
        let transitions = alerts.subscribe();
        (alerts, transitions, None, None)
    };
    let advisor = Arc::new(advise::Advisor {
        store: Arc::clone(&store),
        ml_target_seconds: trading
            .is_some()
            .then(|| config.trading.score.ml.target.get().as_secs_f64()),
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

    let path = config.data_dir.join("m4watch.db");
    let outbox = blocking(move || notify::outbox::Outbox::open(&path))
        .await?
        .map_err(|e| Error::Startup(e.to_string()))?
        .with_storage(storage.clone());
    let probed = outbox.clone();
    tasks.push(tokio::spawn(clock::every(
        STORAGE_CHECK,
        shutdown.clone(),
        move || {
            let o = probed.clone();
            async move { o.probe().await }
        },
    )));
    // What the alert store holds active now: a saved notification group's firing
    // alert outside it was resolved while its notice was in flight.
    let alive: std::collections::HashSet<String> =
        alerts.active().into_iter().map(|a| a.id).collect();
    let (notifier, notify_tasks) = notify::Notifier::start(
        &config.notifications,
        &config.identity(),
        outbox,
        &alive,
        store.registry(),
        shutdown.clone(),
    )
    .await
    .map_err(|e| Error::Startup(e.to_string()))?;
    tasks.extend(notify_tasks);
    // Firing alerts whose notification group a crash kept from being saved are
    // announced now, before the live feed (which the transitions buffer meanwhile).
    notifier
        .adopt(
            alerts
                .firing_as_transitions(crate::clock::unix_now_ms())
                .iter()
                .filter_map(notify::bridge::event_from_transition)
                .collect(),
        )
        .await;
    tasks.push(notify::bridge::spawn(
        transitions,
        notifier.clone(),
        shutdown.clone(),
    ));
    let (heartbeat, heartbeat_task) = heartbeat::Heartbeat::start(
        config.heartbeat.clone(),
        heartbeat::Signals {
            evaluated,
            evaluation_interval: config.rules.evaluation_interval.get(),
            outbox: notifier.progress(),
        },
        Arc::clone(&store),
        shutdown.clone(),
    );
    tasks.push(heartbeat_task);

    let (reload, requests) = crate::reload::channel();
    store.publish("reload", crate::reload::families(true, clock::unix_now()));
    tasks.push(tokio::spawn(reloader(
        Reloader {
            source,
            running: config.clone(),
            rules: rules_handle.clone(),
            notifier: notifier.clone(),
            heartbeat: heartbeat.clone(),
            store: Arc::clone(&store),
            access: Arc::clone(&access),
            web: Arc::clone(&web),
        },
        requests,
        shutdown.clone(),
    )));
    #[cfg(unix)]
    tasks.push(tokio::spawn(reload_on_sighup(
        reload.clone(),
        shutdown.clone(),
    )));
    let state = Arc::new(api::AppState {
        reload,
        config: Arc::new(config),
        store,
        started: Instant::now(),
        collectors: registry,
        trading_ingest: trading,
        alerts,
        rules: rules_handle,
        notifier,
        samples,
        advisor,
        heartbeat,
        access,
        web: Arc::clone(&web),
        storage,
    });
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let settings = web.settings();
    tracing::info!(
        %addr,
        tls = settings.tls.is_some(),
        client_certificates = settings.client_certs,
        basic_auth = settings.basic_auth(),
        "serving /metrics and the API"
    );
    drop(settings);
    let limits = api::server::Limits::of(&state.config.api);
    api::server::serve_with(
        listener,
        api::router(state),
        limits,
        shutdown.clone(),
        move || web.settings().tls.clone(),
    )
    .await
    .map_err(Error::Serve)?;
    for t in tasks {
        let _ = t.await;
    }
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

/// The one INFO line that says what runs: version, revision, config file, data
/// directory, listen addresses and the collectors; then each config warning.
fn startup_line(config: &Config, source: &Source, listener: &TcpListener, collectors: &[&str]) {
    let file = match source {
        Source::File(p) => p.display().to_string(),
        Source::Embedded => "<embedded default>".into(),
        Source::Given => "<given>".into(),
    };
    let http = listener
        .local_addr()
        .map_or_else(|_| config.listen.to_string(), |a| a.to_string());
    let statsd = match config.trading.statsd_listen {
        Some(a) if config.trading.enabled => format!("udp://{a}"),
        _ => "off".into(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        revision = env!("M4WATCH_REVISION"),
        config = %file,
        data_dir = %config.data_dir.display(),
        listen = %format!("http://{http}"),
        statsd = %statsd,
        collectors = %collectors.join(","),
        "m4watch starting"
    );
    for w in config.warnings() {
        tracing::warn!("config: {w}");
    }
}

/// How often the data directory is compared with the one locked at start-up.
const STORAGE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks every [`STORAGE_CHECK`] that the data directory is still the one locked
/// (each write checks too), and publishes the storage families.
fn spawn_storage_check(
    storage: persist::storage::Storage,
    store: Arc<Store>,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    store.publish("storage", storage.families());
    tokio::spawn(async move {
        clock::every(STORAGE_CHECK, shutdown, move || {
            let (storage, store) = (storage.clone(), Arc::clone(&store));
            async move {
                let s = storage.clone();
                let _ = tokio::task::spawn_blocking(move || s.check_directory()).await;
                store.publish("storage", storage.families());
            }
        })
        .await
    })
}

/// Runs blocking start-up work (opening a database) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Startup(e.to_string()))
}

/// The latency-baseline tracker, seeded with the baselines earlier runs stored (none
/// without the history database), handing finished periods to the history writer.
async fn baselines(config: &Config, samples: Option<SampleDb>) -> Result<Baselines, Error> {
    let period = config.history.baseline_period.get().as_millis() as i64;
    let keep = config.history.baseline_periods;
    let stored = match samples.clone() {
        Some(db) => {
            let since = clock::unix_now_ms() - period * (i64::from(keep) + 1);
            blocking(move || db.baselines(since))
                .await?
                .map_err(|e| Error::Startup(format!("history: reading baselines: {e}")))?
        }
        None => Vec::new(),
    };
    Ok(Baselines::new(
        period,
        keep as usize,
        samples.map(history::baseline_sink),
        stored,
    ))
}

/// The trading store, its collector and (unless `statsd_listen` is null) the StatsD
/// listener thread, stopped on shutdown.
fn start_trading(
    config: &Config,
    entry: &Entry,
    store: &Arc<Store>,
    shutdown: &Shutdown,
    baselines: Baselines,
) -> Result<(Arc<Trading>, Vec<JoinHandle<()>>), Error> {
    let trading = Trading::new(&config.trading, store.registry())
        .map_err(|e| Error::Startup(e.to_string()))?;
    let mut tasks = Vec::new();
    if let Some(addr) = config.trading.statsd_listen {
        let listener = Listener::start(addr, Arc::clone(&trading))
            .map_err(|source| Error::BindUdp { addr, source })?;
        trading.set_statsd_addr(listener.addr());
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            stop.recv().await;
            let _ = tokio::task::spawn_blocking(move || listener.stop()).await;
        }));
    }
    // The JSON routes read the view from the store from the start: an empty one until
    // the collector's first run replaces it.
    let collector = TradingCollector::new(Arc::clone(&trading))
        .with_baselines(baselines)
        .with_market_hours(config.market_hours());
    collect::BlockingCollector::publish_view(&collector, store.views());
    tasks.push(entry.spawn(Blocking::new(collector), store, shutdown));
    Ok((trading, tasks))
}

/// Re-encodes the snapshot whenever a collector publishes, and at least every
/// `interval` for instruments that change in between.
fn spawn_snapshotter(
    store: Arc<Store>,
    interval: std::time::Duration,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let s = Arc::clone(&store);
        clock::every_or_when(interval, Some(store.change_signal()), shutdown, move || {
            s.refresh_snapshot();
            std::future::ready(())
        })
        .await
    })
}

/// What a reload needs: where the config came from, what runs now, and the parts
/// that take a new config while running.
struct Reloader {
    source: Source,
    /// The running config, with the reloadable parts as last applied.
    running: Config,
    rules: Option<alerts::evaluate::RulesHandle>,
    notifier: notify::Notifier,
    heartbeat: heartbeat::Heartbeat,
    store: Arc<Store>,
    /// The API's tokens in force.
    access: Arc<api::auth::Access>,
    /// `--web.config.file`, re-read on every reload.
    web: Arc<api::web::Web>,
}

/// Config sections read at start-up only, by name, with a way to compare them. Sections
/// are compared by value, secrets included (a rotated secret is a change; its
/// `<redacted>` rendering would hide it). The API's tokens are applied by a reload, so
/// they are left out of the `api` comparison.
fn restart_sections(a: &Config, b: &Config) -> Vec<&'static str> {
    use crate::config::differ_by_value as differ;
    let without_tokens = |api: &crate::config::ApiConfig| crate::config::ApiConfig {
        token: None,
        read_token: None,
        ..api.clone()
    };
    let mut out = Vec::new();
    let pairs: [(&'static str, bool); 14] = [
        (
            "external_labels, external_url, grafana_url",
            a.external_labels != b.external_labels
                || a.external_url != b.external_url
                || a.grafana_url != b.grafana_url,
        ),
        (
            "api",
            differ(&without_tokens(&a.api), &without_tokens(&b.api)),
        ),
        ("metrics", differ(&a.metrics, &b.metrics)),
        ("hardware", differ(&a.hardware, &b.hardware)),
        ("process", differ(&a.process, &b.process)),
        ("host", differ(&a.host, &b.host)),
        ("processes", differ(&a.processes, &b.processes)),
        (
            "trading",
            differ(&a.trading, &b.trading) || differ(&a.market_hours(), &b.market_hours()),
        ),
        ("containers", differ(&a.containers, &b.containers)),
        ("probes", differ(&a.probes, &b.probes)),
        ("history", differ(&a.history, &b.history)),
        ("advice", differ(&a.advice, &b.advice)),
        (
            "rules.enabled, rules.evaluation_interval, rules.max_range",
            a.rules.enabled != b.rules.enabled
                || a.rules.evaluation_interval != b.rules.evaluation_interval
                || a.rules.max_range != b.rules.max_range,
        ),
        (
            "notifications.delivery",
            differ(&a.notifications.delivery, &b.notifications.delivery),
        ),
    ];
    for (name, changed) in pairs {
        if changed {
            out.push(name);
        }
    }
    out
}

impl Reloader {
    /// Re-reads the config and rule files. An invalid config changes nothing. The
    /// rules, the notifications and the heartbeat take the new settings at once; other changed
    /// sections are reported as needing a restart. `listen`, `data_dir` and
    /// `log_format` (which the command line may override) keep their running values.
    async fn reload(&mut self) -> Result<crate::reload::Outcome, ReloadError> {
        let source = self.source.clone();
        let loaded = blocking(move || match &source {
            Source::File(p) => load_config(Some(p), &crate::config::process_env),
            Source::Embedded => load_config(None, &crate::config::process_env),
            Source::Given => Err(ConfigError::Read {
                file: "<config given in code>".into(),
                reason:
                    "this m4watch was not started from a config file; there is nothing to re-read"
                        .into(),
            }),
        })
        .await
        .map_err(|e| ReloadError::Interrupted(e.to_string()))?
        .map_err(|e| ReloadError::Config(e.into()))?;
        let Loaded {
            config: mut next,
            rules,
            ..
        } = loaded;
        let running = self.running.notifications.receivers.len();
        if running > 0 && next.notifications.receivers.is_empty() {
            return Err(ReloadError::ReceiversDropped(running));
        }
        next.listen = self.running.listen;
        next.data_dir = self.running.data_dir.clone();
        next.log_format = self.running.log_format;
        next.web_config_file = self.running.web_config_file.clone();
        let restart_required = restart_sections(&self.running, &next);
        let mut applied = Vec::new();
        // The web config and its certificates first: a bad one refuses the whole
        // reload before anything else changes.
        let web = Arc::clone(&self.web);
        let web_reloaded = blocking(move || web.reload())
            .await
            .map_err(|e| ReloadError::Interrupted(e.to_string()))?
            .map_err(|e| ReloadError::Web(e.into()))?;
        if web_reloaded {
            tracing::info!("reload: web config and certificates re-read");
            applied.push("web_config");
        }
        if self.access.set(&next.api) {
            tracing::info!("reload: API tokens replaced");
        }
        self.running.api.token = next.api.token.clone();
        self.running.api.read_token = next.api.read_token.clone();
        applied.push("api.token, api.read_token");
        if let Some(handle) = &self.rules
            && next.rules.enabled
        {
            let n = handle.replace(rules);
            tracing::info!(rules = n, "reload: rules replaced");
            self.running.rules.files = next.rules.files.clone();
            self.running.rules.resolved_retention = next.rules.resolved_retention;
            applied.push("rules");
        }
        self.notifier
            .reconfigure(&next.notifications)
            .await
            .map_err(|e| ReloadError::Notifications(e.into()))?;
        let delivery = self.running.notifications.delivery.clone();
        self.running.notifications = next.notifications;
        self.running.notifications.delivery = delivery;
        applied.push("notifications");
        if self.heartbeat.reconfigure(next.heartbeat.clone()) {
            tracing::info!(on = next.heartbeat.is_some(), "reload: heartbeat replaced");
        }
        self.running.heartbeat = next.heartbeat;
        applied.push("heartbeat");
        Ok(crate::reload::Outcome {
            status: "reloaded",
            applied,
            restart_required,
        })
    }
}

async fn reloader(
    mut r: Reloader,
    mut requests: tokio::sync::mpsc::Receiver<crate::reload::Request>,
    mut shutdown: Shutdown,
) {
    let mut last_success = clock::unix_now();
    loop {
        let req = tokio::select! {
            _ = shutdown.recv() => return,
            req = requests.recv() => match req {
                Some(req) => req,
                None => return,
            },
        };
        let outcome = r.reload().await;
        match &outcome {
            Ok(o) => {
                last_success = clock::unix_now();
                tracing::info!(applied = ?o.applied, restart_required = ?o.restart_required, "config reloaded");
            }
            Err(e) => tracing::error!(error = %e, "reload failed; the running config stays"),
        }
        r.store.publish(
            "reload",
            crate::reload::families(outcome.is_ok(), last_success),
        );
        let _ = req.reply.send(outcome);
    }
}

/// SIGHUP asks for a reload, as it does of Prometheus and Alertmanager (instead of
/// ending the process, the default action).
#[cfg(unix)]
async fn reload_on_sighup(reload: crate::reload::Reload, mut shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler; reload through POST /-/reload");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = reload.request().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn error_of(name: &str) -> String {
        let path = PathBuf::from(format!(
            "{}/testdata/config/{name}.yml",
            env!("CARGO_MANIFEST_DIR")
        ));
        let err = match load_config(Some(&path), &|_| None) {
            Ok(_) => panic!("config must be rejected"),
            Err(e) => e,
        };
        // Errors name the file as given; make the assertion independent of checkout path.
        err.to_string()
            .replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), "")
    }

    #[test]
    fn error_rules_unsupported_construct() {
        assert_eq!(
            error_of("rules_unsupported"),
            "testdata/config/rules_unsupported.yml:4:10: rules.files: testdata/rules/bad/unsupported.rules.yml: group \"bad\": rule \"TopCpu\": expr: unsupported construct: aggregation `topk`"
        );
    }

    #[test]
    fn error_rules_no_match() {
        assert_eq!(
            error_of("rules_no_match"),
            "testdata/config/rules_no_match.yml:4:10: rules.files: testdata/rules/none-*.rules.yml matches no file"
        );
    }

    #[test]
    fn error_history_unknown_family() {
        assert_eq!(
            error_of("history_unknown_family"),
            "testdata/config/history_unknown_family.yml:6:7: history.families[1]: \"m4watch_cpu_utilisation\" is not a metric family m4watch exports"
        );
    }

    /// Issue 27: a reload that changes who the host is says it needs a restart
    /// rather than half-applying it.
    #[test]
    fn changed_external_labels_or_urls_need_a_restart() {
        let parse = |yaml: &str| {
            Config::parse(yaml, "<test>", std::path::Path::new("."), &|_| None).unwrap()
        };
        let a = parse("external_labels: {host: mac-a}\n");
        assert!(restart_sections(&a, &parse("external_labels: {host: mac-a}\n")).is_empty());
        for changed in [
            "external_labels: {host: mac-b}\n",
            "external_labels: {host: mac-a}\ngrafana_url: http://g:3000\n",
            "external_labels: {host: mac-a}\nexternal_url: http://mac-a:9977\n",
        ] {
            assert_eq!(
                restart_sections(&a, &parse(changed)),
                ["external_labels, external_url, grafana_url"],
                "{changed}"
            );
        }
    }

    /// Issue 28: sections are compared by value, secrets included; the API's tokens
    /// are applied by the reload, so they alone are no restart.
    #[test]
    fn secrets_are_compared_by_value_and_tokens_need_no_restart() {
        let parse = |yaml: &str| {
            Config::parse(yaml, "<test>", std::path::Path::new("."), &|_| None).unwrap()
        };
        let a = parse("api: {token: one, read_token: r1}\n");
        assert!(restart_sections(&a, &parse("api: {token: two, read_token: r2}\n")).is_empty());
        assert_eq!(
            restart_sections(&a, &parse("api: {token: two, max_connections: 8}\n")),
            ["api"]
        );
        // The redacted renderings are equal; the values are not.
        let (x, y) = (
            crate::config::Secret::new("old"),
            crate::config::Secret::new("new"),
        );
        assert_eq!(
            serde_json::to_value(&x).unwrap(),
            serde_json::to_value(&y).unwrap()
        );
        assert!(crate::config::differ_by_value(&x, &y));
        assert!(!crate::config::differ_by_value(&x, &x.clone()));
        // And the rendering stays redacted after a comparison.
        assert_eq!(serde_json::to_value(&x).unwrap(), "<redacted>");
    }

    #[test]
    fn the_embedded_default_loads_the_shipped_rules_once() {
        let loaded = load_config(None, &|_| None).unwrap();
        assert!(loaded.config.rules.enabled);
        assert_eq!(
            loaded.rules.iter().map(|g| g.rules.len()).sum::<usize>(),
            rules::load(&loaded.config.rules)
                .unwrap()
                .iter()
                .map(|g| g.rules.len())
                .sum::<usize>()
        );
        assert!(!loaded.rules.is_empty());
    }
}
