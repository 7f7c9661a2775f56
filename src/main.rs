//! The `m4watch` binary: parses the command line, sets up logging, loads the config and
//! hands over to [`m4watch::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use m4watch::config::{self, LogFormat};

/// `m4watch --version`: what was built, from what, with what (build.rs).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\n  revision:   ",
    env!("M4WATCH_REVISION"),
    "\n  build date: ",
    env!("M4WATCH_BUILD_DATE"),
    "\n  rustc:      ",
    env!("M4WATCH_RUSTC_VERSION"),
    "\n  target:     ",
    env!("M4WATCH_TARGET"),
);

/// The flags carry the names node_exporter, statsd_exporter, Prometheus and
/// Alertmanager use (`--config.file`, `--web.listen-address`, `--log.level`,
/// `--log.format`); m4watch's earlier names stay as aliases.
#[derive(Parser)]
#[command(
    name = "m4watch",
    version,
    long_version = LONG_VERSION,
    about = "Monitoring sidecar for Apple M4 Max trading hosts"
)]
struct Cli {
    /// Config file (YAML). Without one, m4watch runs on its embedded default.
    #[arg(
        long = "config.file",
        visible_alias = "config",
        global = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// HTTP listen address (overrides the config).
    #[arg(
        long = "web.listen-address",
        visible_alias = "listen",
        global = true,
        value_name = "ADDR"
    )]
    listen: Option<SocketAddr>,
    /// Data directory (overrides the config).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format (overrides the config's log_format).
    #[arg(
        long = "log.format",
        visible_alias = "log-format",
        global = true,
        value_enum
    )]
    log_format: Option<LogFormatArg>,
    /// Least severe log level written (default info, or the M4WATCH_LOG filter).
    #[arg(
        long = "log.level",
        visible_alias = "log-level",
        global = true,
        value_enum
    )]
    log_level: Option<LogLevelArg>,
    /// Write the log (standard output and error) to this file, appended, and reopen
    /// it when it is rotated away (newsyslog on macOS, logrotate without copytruncate).
    #[arg(long = "log.file", global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// TLS, basic auth and response headers for /metrics and the API, in Prometheus
    /// exporter-toolkit's web config format; re-read on reload.
    #[arg(long = "web.config.file", global = true, value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Print the embedded default config and exit.
    #[arg(long, hide = true)]
    print_default_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogLevelArg {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevelArg {
    fn directive(self) -> &'static str {
        match self {
            LogLevelArg::Debug => "debug",
            LogLevelArg::Info => "info",
            LogLevelArg::Warn => "warn",
            LogLevelArg::Error => "error",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Check a config file and exit 0 if it is valid, 1 with the reason if not.
    CheckConfig { file: PathBuf },
    /// Print the embedded default config.
    PrintDefaultConfig,
    /// Print the metrics reference (Markdown), as the README embeds it.
    MetricsReference,
    /// Run promtool-format rule unit tests; exit 0 when all pass, 1 otherwise.
    TestRules {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run on a synthetic M4 Max recording plus a StatsD load generator (any OS), with
    /// a fresh data directory unless --data-dir is given.
    Demo {
        /// Which M4 Max: 16 cores (12 P + 4 E) or the binned 14 (10 P + 4 E).
        #[arg(long, default_value_t = 16, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["14", "16"]), |s| s.parse::<u8>().unwrap_or(16)))]
        cores: u8,
    },
    /// macOS: write raw hardware readings as JSON lines (the replay format) for fixtures.
    DumpRaw {
        /// Number of samples after the header.
        #[arg(long, default_value_t = 5)]
        samples: u32,
        /// Time between samples.
        #[arg(long, default_value = "1s", value_parser = config::parse_duration)]
        interval: std::time::Duration,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Compare m4watch's hardware readings with the system's own tools (Linux: nproc,
    /// free, /proc; macOS: sysctl, vm_stat, ioreg, pmset, sntp, and powermetrics as
    /// root), print agree / differ / not comparable, write a capture bundle; exits 1 on
    /// a disagreement.
    Selfcheck {
        /// Directory for the capture bundle (created).
        #[arg(long, value_name = "DIR", default_value = "m4watch-selfcheck")]
        output: PathBuf,
    },
    /// macOS: install and start the launchd agent (~/Library/LaunchAgents, runs while
    /// you are logged in) running this binary with --config.file, if given; with
    /// --system, the daemon (/Library/LaunchDaemons, runs from boot without a login;
    /// needs sudo).
    InstallLaunchd {
        /// Install the system daemon instead of the per-user agent.
        #[arg(long)]
        system: bool,
        /// The account the daemon runs as (default: the user who ran sudo; root only
        /// when named).
        #[arg(long, requires = "system", value_name = "NAME")]
        user: Option<String>,
    },
    /// macOS: stop and remove the launchd agent (with --system, the daemon; its data
    /// and logs stay).
    UninstallLaunchd {
        /// Remove the system daemon instead of the per-user agent.
        #[arg(long)]
        system: bool,
    },
    /// GET a URL once and exit 0 on 2xx, 1 otherwise: the image's HEALTHCHECK (it has
    /// no curl or wget).
    Healthcheck {
        #[arg(
            env = "M4WATCH_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:9977/-/healthy"
        )]
        url: String,
        /// The whole request.
        #[arg(long, default_value = "5s", value_parser = config::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Check a running m4watch: every endpoint, the required metric families, the
    /// collectors, rules, receivers (dry run), the score and the health verdict. Prints
    /// a table; exits 1 when fewer checks than --min-pass-ratio pass, or when the
    /// health is critical (unless --allow-unhealthy).
    Validate {
        /// Base URL of the instance.
        #[arg(long, default_value = "http://127.0.0.1:9977")]
        url: String,
        /// Bearer token (env M4WATCH_API_TOKEN); the receiver dry runs need it.
        #[arg(long, env = "M4WATCH_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Least share of checks (0..1) that must pass.
        #[arg(long, default_value_t = 1.0)]
        min_pass_ratio: f64,
        /// The performance score check passes at or above this (the shipped
        /// PerformanceScoreLow threshold by default).
        #[arg(long, default_value_t = m4watch::validate::DEFAULT_MIN_SCORE)]
        min_score: f64,
        /// Per-request timeout.
        #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
        timeout: std::time::Duration,
        /// Print the checks as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Report a `critical` health verdict (system/health) without failing; by
        /// default it fails validate whatever --min-pass-ratio allows.
        #[arg(long)]
        allow_unhealthy: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::DEFAULT_YAML);
        return ExitCode::SUCCESS;
    }
    match cli.command {
        Some(Command::PrintDefaultConfig) => {
            print!("{}", config::DEFAULT_YAML);
            ExitCode::SUCCESS
        }
        Some(Command::MetricsReference) => {
            print!("{}", m4watch::catalog::reference_markdown());
            ExitCode::SUCCESS
        }
        Some(Command::CheckConfig { ref file }) => {
            match m4watch::load_config(Some(file), &config::process_env) {
                Ok(mut loaded) => {
                    loaded.config.web_config_file = cli.web_config_file.clone();
                    // Legal but probably not meant: said, and the check still passes.
                    for w in loaded.config.warnings() {
                        eprintln!("{}: warning: {w}", file.display());
                    }
                    match m4watch::exposure(&loaded.config) {
                        Ok(warnings) => {
                            for w in warnings {
                                eprintln!("{}: warning: {w}", file.display());
                            }
                            // The data directory opened as start-up opens it.
                            if let Err(e) = m4watch::check_data_dir(&loaded.config.data_dir) {
                                eprintln!("{e}");
                                return ExitCode::FAILURE;
                            }
                            println!("{}: ok", file.display());
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::TestRules { ref files }) => {
            let mut out = String::new();
            let ok = m4watch::run_rule_tests(files, &mut out);
            print!("{out}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(Command::DumpRaw {
            samples,
            interval,
            ref output,
        }) => dump_raw(samples, interval, output.as_deref()),
        Some(Command::Selfcheck { ref output }) => match m4watch::selfcheck::run(output) {
            Ok(rows) => {
                print!("{}", m4watch::selfcheck::render(&rows));
                println!("capture bundle: {}", output.display());
                let differ = rows
                    .iter()
                    .any(|r| r.verdict == m4watch::selfcheck::Verdict::Differ);
                if differ {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("m4watch: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::InstallLaunchd {
            system: true,
            ref user,
        }) => {
            // The daemon's data directory is the config's, made the daemon user's.
            let data_dir = match m4watch::load_config(cli.config.as_deref(), &config::process_env) {
                Ok(l) => l.config.data_dir,
                Err(e) => {
                    eprintln!("m4watch: {e}");
                    return ExitCode::FAILURE;
                }
            };
            launchd_done(
                m4watch::launchd::install_system(cli.config.as_deref(), &data_dir, user.as_deref())
                    .map(|p| format!("installed and started {}", p.display())),
            )
        }
        Some(Command::InstallLaunchd { system: false, .. }) => launchd_done(
            m4watch::launchd::install(cli.config.as_deref())
                .map(|p| format!("installed and started {}", p.display())),
        ),
        Some(Command::UninstallLaunchd { system: true }) => {
            launchd_done(m4watch::launchd::uninstall_system().map(|gone| {
                let gone: Vec<String> = gone.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "stopped the daemon; removed: {}; its data and logs stay",
                    if gone.is_empty() {
                        "nothing".into()
                    } else {
                        gone.join(", ")
                    }
                )
            }))
        }
        Some(Command::UninstallLaunchd { system: false }) => launchd_done(
            m4watch::launchd::uninstall().map(|p| format!("stopped and removed {}", p.display())),
        ),
        Some(Command::Validate {
            url,
            token,
            min_pass_ratio,
            min_score,
            timeout,
            json,
            allow_unhealthy,
        }) => validate(
            m4watch::validate::Options {
                url,
                token,
                min_pass_ratio,
                min_score,
                timeout,
                allow_unhealthy,
            },
            json,
        ),
        Some(Command::Healthcheck { ref url, timeout }) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt.map(|rt| rt.block_on(m4watch::validate::healthcheck(url, timeout))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("m4watch: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("m4watch: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Demo { cores }) => {
            let part =
                m4watch::demo::Part::with_cores(cores).unwrap_or(m4watch::demo::Part::Cores16);
            run(cli, Some(part))
        }
        None | Some(Command::Run) => run(cli, None),
    }
}

/// Prints what a launchd command did, or why it failed.
fn launchd_done(r: Result<String, m4watch::launchd::LaunchdError>) -> ExitCode {
    match r {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("m4watch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(opts: m4watch::validate::Options, json: bool) -> ExitCode {
    if !(0.0..=1.0).contains(&opts.min_pass_ratio) {
        eprintln!("m4watch: --min-pass-ratio must be between 0 and 1");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("m4watch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let checks = rt.block_on(m4watch::validate::run(&opts));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).expect("checks serialise")
        );
    } else {
        print!("{}", m4watch::validate::table(&checks, opts.min_pass_ratio));
    }
    for c in m4watch::validate::blocked(&checks) {
        eprintln!(
            "m4watch: {} is {} (pass --allow-unhealthy to validate an unhealthy instance)",
            c.name, c.detail
        );
    }
    if m4watch::validate::passed(&checks, opts.min_pass_ratio) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn dump_raw(
    samples: u32,
    interval: std::time::Duration,
    output: Option<&std::path::Path>,
) -> ExitCode {
    let mut out: Box<dyn std::io::Write> = match output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("m4watch: {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    match m4watch::dump_raw(samples, interval, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("m4watch: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the daemon; `demo` names the M4 Max part `m4watch demo` replays.
/// Raises the soft limit on open files to the hard limit (macOS: at most `OPEN_MAX`,
/// 10240), so that `api.max_connections` sockets plus the data files fit even where
/// the soft limit is 256 or 1024. Logged; a failure is a warning, not fatal.
#[cfg(unix)]
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let mut want = lim.rlim_max;
    if cfg!(target_os = "macos") && (want == libc::RLIM_INFINITY || want > 10240) {
        want = 10240;
    }
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= want {
        return;
    }
    let before = lim.rlim_cur;
    lim.rlim_cur = want;
    // SAFETY: setrlimit reads the rlimit it is given; raising the soft limit up to the
    // hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::info!(from = before, to = want, "raised the open-files soft limit");
    } else {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            soft = before,
            "cannot raise the open-files soft limit"
        );
    }
}

fn run(cli: Cli, demo: Option<m4watch::demo::Part>) -> ExitCode {
    let text = match &cli.config {
        Some(path) => config::read_capped(path).unwrap_or_default(),
        None => config::DEFAULT_YAML.to_string(),
    };
    let mut loaded = match m4watch::load_config(cli.config.as_deref(), &config::process_env) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("m4watch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = &mut loaded.config;
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    config.web_config_file = cli.web_config_file.clone();
    let fresh_data_dir = cli.data_dir.is_none();
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    if let Some(f) = cli.log_format {
        config.log_format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    let filter = match cli.log_level {
        Some(l) => l.directive().to_string(),
        None => std::env::var("M4WATCH_LOG")
            .ok()
            .filter(|f| tracing_subscriber::EnvFilter::try_new(f).is_ok())
            .unwrap_or_else(|| "info".into()),
    };
    let format = match config.log_format {
        LogFormat::Text => m4watch::logging::Format::Text,
        LogFormat::Json => m4watch::logging::Format::Json,
    };
    #[cfg(unix)]
    if let Some(f) = &cli.log_file
        && let Err(e) = m4watch::logging::log_to_file(f)
    {
        eprintln!("m4watch: --log.file {}: {e}", f.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = m4watch::logging::init(&filter, format, m4watch::logging::stderr_wants_colour())
    {
        eprintln!("m4watch: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    #[cfg(unix)]
    raise_open_files_limit();
    install_panic_hook();
    let statsd = demo.map(|_| m4watch::demo::statsd_target(&text));
    if let Some(part) = demo {
        if fresh_data_dir {
            config.data_dir =
                std::env::temp_dir().join(format!("m4watch-demo-{}", std::process::id()));
        }
        if let Err(e) = m4watch::demo::prepare(config, part) {
            eprintln!("m4watch: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!(
            "m4watch demo: replaying a SYNTHETIC M4 Max recording ({} P + 4 E cores) and sending StatsD load to {}\n  metrics: http://{}/metrics\n  data dir: {}",
            part.cpus() - 4,
            statsd.expect("demo has a target"),
            config.listen,
            config.data_dir.display()
        );
    }

    // Tokio's default is a worker per core: 16 on an M4 Max, each with its stack and
    // queues, for a sidecar whose work fits in one core with room to spare (a scrape
    // takes under a millisecond) and that must leave the cores to the desk. The
    // blocking pool (SQLite, file reads) is bounded too.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("m4watch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (trigger, shutdown) = m4watch::shutdown::channel();
        // Handlers are installed before the listener binds, so a signal sent as soon
        // as the port answers is never missed.
        let signals = signal_handlers();
        tokio::spawn(async move {
            signals.await;
            tracing::info!("shutting down");
            trigger.fire();
        });
        if let Some(target) = statsd {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = m4watch::demo::statsd_load(target, stop).await {
                    tracing::warn!(error = %e, "demo StatsD load generator stopped");
                }
            });
        }
        match m4watch::run(loaded, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "m4watch failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Logs a panic, in any thread, with its cause and place where the log goes (not
/// only to stderr), then handles it as before.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let cause = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        tracing::error!(%cause, %place, %thread, "m4watch panicked");
        default(info);
    }));
}

/// Installs the SIGINT/SIGTERM handlers now and returns a future that resolves on
/// the first signal.
fn signal_handlers() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // SIGHUP reloads (the daemon's own handler); registering it now also keeps
        // its default action, ending the process, away during start-up.
        drop(signal(SignalKind::hangup()).expect("SIGHUP handler"));
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
