//! The dead-man's switch that leaves the host: one GET or POST every
//! `heartbeat.interval` to a service elsewhere (healthchecks.io, Cronitor, Better
//! Stack), which pages when the beats stop.
//!
//! A beat says more than "the process exists": it is sent only while the rule engine
//! has finished an evaluation within the last few evaluation intervals and the
//! notification outbox drains (the delivery worker read it recently and no
//! notification has waited longer than `max_delivery_delay`). So a host that loses
//! power, a process stopped or hung, and a daemon whose rule loop or notifier is
//! wedged all go quiet alike. Each skipped beat is counted with its reason and logged
//! (once per reason, then at most every [`LOG_EVERY`]); each failed one too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::{Stamp, unix_now_ms};
use crate::config::Secret;
use crate::config::heartbeat::{HeartbeatConfig, HeartbeatMethod};
use crate::model::{MetricDef, def};
use crate::notify::worker::{POLL, Progress};
use crate::notify::{Reason, SendError, check_status, transport_error};
use crate::shutdown::Shutdown;
use crate::store::{Family, Kind, Store};

pub(crate) const HEARTBEAT_SENT_TOTAL: MetricDef = def(
    "m4watch_heartbeat_sent_total",
    Kind::Counter,
    &[],
    "Heartbeats the dead-man's service accepted (2xx).",
);

pub(crate) const HEARTBEAT_FAILURES_TOTAL: MetricDef = def(
    "m4watch_heartbeat_failures_total",
    Kind::Counter,
    &["reason"],
    "Heartbeats sent that failed, per bounded reason (timeout, connection, server_error, ...).",
);

pub(crate) const HEARTBEAT_SKIPPED_TOTAL: MetricDef = def(
    "m4watch_heartbeat_skipped_total",
    Kind::Counter,
    &["reason"],
    "Heartbeats not sent because m4watch was not healthy: rules_stalled (no rule evaluation finished recently), outbox_stalled (the delivery worker stopped reading the outbox), delivery_backlog (a notification waited longer than heartbeat.max_delivery_delay).",
);

pub(crate) const HEARTBEAT_LAST_SUCCESS_TIMESTAMP_SECONDS: MetricDef = def(
    "m4watch_heartbeat_last_success_timestamp_seconds",
    Kind::Gauge,
    &[],
    "When the last heartbeat was accepted, in Unix seconds; absent until the first.",
);

pub(crate) const HEARTBEAT_INTERVAL_SECONDS: MetricDef = def(
    "m4watch_heartbeat_interval_seconds",
    Kind::Gauge,
    &[],
    "The configured heartbeat interval, in seconds; absent when the heartbeat is off.",
);

/// The heartbeat's metric families.
pub(crate) const METRICS: &[MetricDef] = &[
    HEARTBEAT_SENT_TOTAL,
    HEARTBEAT_FAILURES_TOTAL,
    HEARTBEAT_SKIPPED_TOTAL,
    HEARTBEAT_LAST_SUCCESS_TIMESTAMP_SECONDS,
    HEARTBEAT_INTERVAL_SECONDS,
];

/// A skip or failure that repeats is logged again at most this often.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(600);

/// Most of an answer read (and thrown away): a ping answers `OK`.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The delivery worker reads the outbox at least every [`POLL`]; this many polls
/// without a read is a stalled outbox.
const OUTBOX_STALL: Duration = Duration::from_secs(10 * POLL.as_secs());

/// Why a beat was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Skip {
    /// No rule evaluation finished within [`Signals::rules_stale_after`].
    RulesStalled,
    /// The delivery worker has not read the outbox within [`OUTBOX_STALL`].
    OutboxStalled,
    /// A notification has waited longer than `max_delivery_delay`.
    DeliveryBacklog,
}

impl Skip {
    pub(crate) const ALL: [Skip; 3] = [
        Skip::RulesStalled,
        Skip::OutboxStalled,
        Skip::DeliveryBacklog,
    ];

    /// The `reason` label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Skip::RulesStalled => "rules_stalled",
            Skip::OutboxStalled => "outbox_stalled",
            Skip::DeliveryBacklog => "delivery_backlog",
        }
    }
}

/// What the heartbeat watches: the rule loop's and the delivery worker's own marks.
#[derive(Debug, Clone)]
pub(crate) struct Signals {
    /// When the last evaluation finished; `None` with `rules.enabled: false` (then
    /// only the outbox is watched).
    pub evaluated: Option<Stamp>,
    pub evaluation_interval: Duration,
    pub outbox: Progress,
}

impl Signals {
    /// An evaluation older than this is a stalled rule engine: three evaluation
    /// intervals, and never under 5 s, so one slow cycle on a busy host is no stall.
    pub(crate) fn rules_stale_after(&self) -> Duration {
        (3 * self.evaluation_interval).max(Duration::from_secs(5))
    }

    /// Whether a beat may go now (`now` in Unix ms), or why not.
    pub(crate) fn verdict(&self, max_delivery_delay: Duration, now: i64) -> Result<(), Skip> {
        let older = |at: Option<i64>, limit: Duration| {
            at.is_none_or(|at| now - at > limit.as_millis() as i64)
        };
        if let Some(evaluated) = &self.evaluated
            && older(evaluated.get(), self.rules_stale_after())
        {
            return Err(Skip::RulesStalled);
        }
        if older(self.outbox.pass.get(), OUTBOX_STALL) {
            return Err(Skip::OutboxStalled);
        }
        if let Some(queued) = self.outbox.oldest_pending.get()
            && now - queued > max_delivery_delay.as_millis() as i64
        {
            return Err(Skip::DeliveryBacklog);
        }
        Ok(())
    }

    /// How long to wait before looking again at a signal that was stale: after the
    /// whole process was stopped (`kill -STOP`, a laptop lid) every task wakes at
    /// once, and the rule loop and the worker need a moment to mark again.
    fn recheck_after(&self) -> Duration {
        (2 * self.evaluation_interval).max(2 * POLL)
    }
}

/// The counters behind the metric families.
#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    failures: BTreeMap<&'static str, u64>,
    skipped: BTreeMap<&'static str, u64>,
    last_success: Option<f64>,
    interval: Option<f64>,
}

impl Counts {
    fn families(&self) -> Vec<Family> {
        let mut sent = Family::new(&HEARTBEAT_SENT_TOTAL);
        sent.push_value(self.sent as f64);
        let mut failures = Family::new(&HEARTBEAT_FAILURES_TOTAL);
        for r in Reason::ALL {
            let n = self.failures.get(r.as_str()).copied().unwrap_or(0);
            failures.push([("reason", r.as_str())], n as f64);
        }
        let mut skipped = Family::new(&HEARTBEAT_SKIPPED_TOTAL);
        for s in Skip::ALL {
            let n = self.skipped.get(s.as_str()).copied().unwrap_or(0);
            skipped.push([("reason", s.as_str())], n as f64);
        }
        let mut last = Family::new(&HEARTBEAT_LAST_SUCCESS_TIMESTAMP_SECONDS);
        if let Some(t) = self.last_success {
            last.push_value(t);
        }
        let mut interval = Family::new(&HEARTBEAT_INTERVAL_SECONDS);
        if let Some(i) = self.interval {
            interval.push_value(i);
        }
        vec![sent, failures, skipped, last, interval]
    }
}

/// Logs a repeating outcome once, then at most every [`LOG_EVERY`], and again
/// whenever it changes: a skip or failure every 10 s for an hour is a few lines,
/// not 360.
#[derive(Debug, Default)]
struct Quiet {
    last: Option<(&'static str, Instant)>,
    /// Beats not sent (skipped or failed) since the last success.
    missed: u64,
}

impl Quiet {
    fn should_log(&mut self, what: &'static str, now: Instant) -> bool {
        self.missed += 1;
        let due = match self.last {
            Some((w, at)) => w != what || now.duration_since(at) >= LOG_EVERY,
            None => true,
        };
        if due {
            self.last = Some((what, now));
        }
        due
    }

    /// A success: how many beats were missed before it (0: nothing to report).
    fn success(&mut self) -> u64 {
        self.last = None;
        std::mem::take(&mut self.missed)
    }
}

/// The handle the wiring and the API hold: swaps the config on a reload, dry-runs.
#[derive(Clone)]
pub(crate) struct Heartbeat {
    config: watch::Sender<Option<HeartbeatConfig>>,
    signals: Signals,
}

/// The heartbeat as configured, short of its secrets: method, header names,
/// interval, and whether a beat would go now (or why not).
pub(crate) type Description = (&'static str, Vec<String>, Duration, Result<(), Skip>);

impl Heartbeat {
    /// Starts the heartbeat task; with `config` `None` it idles until a reload turns
    /// it on.
    pub(crate) fn start(
        config: Option<HeartbeatConfig>,
        signals: Signals,
        store: Arc<Store>,
        shutdown: Shutdown,
    ) -> (Heartbeat, JoinHandle<()>) {
        let (tx, rx) = watch::channel(config);
        let task = tokio::spawn(run(rx, signals.clone(), store, shutdown));
        (
            Heartbeat {
                config: tx,
                signals,
            },
            task,
        )
    }

    /// Applies the heartbeat of a reloaded config; returns whether it changed (a
    /// change restarts the schedule).
    pub(crate) fn reconfigure(&self, next: Option<HeartbeatConfig>) -> bool {
        self.config.send_if_modified(|c| {
            if *c == next {
                false
            } else {
                *c = next;
                true
            }
        })
    }

    /// What runs now, secrets left out; `None` when the heartbeat is off.
    pub(crate) fn describe(&self) -> Option<Description> {
        let config = self.config.borrow();
        let c = config.as_ref()?;
        Some((
            c.method.as_str(),
            c.headers.keys().cloned().collect(),
            c.interval.get(),
            self.signals
                .verdict(c.max_delivery_delay.get(), unix_now_ms()),
        ))
    }

    /// Everything short of sending a beat: builds the request and opens (then closes)
    /// a TCP connection to its host and port. Returns `scheme://host:port`; `None`
    /// when the heartbeat is off.
    pub(crate) async fn dry_run(&self) -> Option<Result<String, SendError>> {
        let config = self.config.borrow().clone()?;
        let checked = async {
            let client = client(&config)?;
            request(&client, &config)?
                .build()
                .map_err(|e| SendError::fatal(Reason::Invalid, e.without_url().to_string()))?;
            let url = config.url.as_ref().map(Secret::expose).unwrap_or_default();
            crate::notify::receiver::reach(url, config.timeout.get()).await
        };
        Some(checked.await)
    }
}

/// The client of one configuration: its timeout as the whole request's deadline, no
/// redirects (a ping URL answers, it does not move).
fn client(config: &HeartbeatConfig) -> Result<reqwest::Client, SendError> {
    crate::tls::http_client()
        .timeout(config.timeout.get())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("m4watch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SendError::fatal(Reason::Invalid, e.to_string()))
}

/// The beat's request: method, URL, headers, and for POST a one-line body the
/// services show in their event log.
fn request(
    client: &reqwest::Client,
    config: &HeartbeatConfig,
) -> Result<reqwest::RequestBuilder, SendError> {
    let url = config
        .url
        .as_ref()
        .ok_or_else(|| SendError::fatal(Reason::Invalid, "no heartbeat URL"))?;
    let mut req = match config.method {
        HeartbeatMethod::Get => client.get(url.expose()),
        HeartbeatMethod::Post => client
            .post(url.expose())
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(concat!(
                "m4watch ",
                env!("CARGO_PKG_VERSION"),
                ": rules evaluating, notifications draining\n"
            )),
    };
    for (name, value) in &config.headers {
        req = req.header(name.as_str(), value.expose());
    }
    Ok(req)
}

/// Sends one beat within `config.timeout` in all (connect, send, answer), reading at
/// most [`MAX_ANSWER_BYTES`] of the answer.
async fn send(client: &reqwest::Client, config: &HeartbeatConfig) -> Result<(), SendError> {
    let req = request(client, config)?;
    let deadline = tokio::time::Instant::now() + config.timeout.get();
    let mut resp = tokio::time::timeout_at(deadline, req.send())
        .await
        .map_err(|_| no_answer(config))?
        .map_err(transport_error)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    match crate::tls::read_bounded(&mut resp, MAX_ANSWER_BYTES, deadline).await {
        Err(crate::tls::BodyError::Deadline(_)) => return Err(no_answer(config)),
        Err(crate::tls::BodyError::Read(e)) => return Err(transport_error(e)),
        // Longer than a ping service's answer: judged by its status, the rest unread.
        Ok(_) | Err(crate::tls::BodyError::TooLarge(_)) => {}
    }
    check_status(status, &headers)
}

fn no_answer(config: &HeartbeatConfig) -> SendError {
    SendError::retry(
        Reason::Timeout,
        format!("no complete answer within {:?}", config.timeout.get()),
    )
}

/// What became of one beat.
enum Outcome {
    Sent,
    Skipped(Skip),
    Failed(SendError),
}

/// The heartbeat loop: idles while off, otherwise checks the signals every interval
/// and beats when they allow. A config change restarts the schedule.
async fn run(
    mut config: watch::Receiver<Option<HeartbeatConfig>>,
    signals: Signals,
    store: Arc<Store>,
    mut shutdown: Shutdown,
) {
    let mut counts = Counts::default();
    let mut quiet = Quiet::default();
    loop {
        let current = config.borrow_and_update().clone();
        counts.interval = current.as_ref().map(|h| h.interval.get().as_secs_f64());
        store.publish("heartbeat", counts.families());
        let client = match current.as_ref().map(client) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                tracing::error!(error = %e, "heartbeat: cannot build the HTTP client; no beats until a reload");
                None
            }
            None => None,
        };
        let (Some(cfg), Some(client)) = (current, client) else {
            tokio::select! {
                _ = shutdown.recv() => return,
                changed = config.changed() => if changed.is_err() { return },
            }
            continue;
        };
        tracing::info!(method = cfg.method.as_str(), interval = %cfg.interval,
            "heartbeat on (its URL is a secret and is not logged)");
        let every = cfg.interval.get();
        // The first beat one interval after start: by then the rules have evaluated.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.recv() => return,
                changed = config.changed() => {
                    if changed.is_err() { return }
                    break;
                }
                _ = ticker.tick() => {}
            }
            let max_delay = cfg.max_delivery_delay.get();
            let mut gate = signals.verdict(max_delay, unix_now_ms());
            if gate.is_err() {
                tokio::select! {
                    _ = shutdown.recv() => return,
                    _ = tokio::time::sleep(signals.recheck_after()) => {}
                }
                gate = signals.verdict(max_delay, unix_now_ms());
            }
            let outcome = match gate {
                Err(skip) => Outcome::Skipped(skip),
                Ok(()) => match send(&client, &cfg).await {
                    Ok(()) => Outcome::Sent,
                    Err(e) => Outcome::Failed(e),
                },
            };
            match outcome {
                Outcome::Sent => {
                    counts.sent += 1;
                    counts.last_success = Some(crate::clock::unix_now());
                    match quiet.success() {
                        0 => tracing::debug!("heartbeat sent"),
                        missed => tracing::info!(missed, "heartbeat: beating again"),
                    }
                }
                Outcome::Skipped(skip) => {
                    *counts.skipped.entry(skip.as_str()).or_default() += 1;
                    if quiet.should_log(skip.as_str(), Instant::now()) {
                        tracing::warn!(
                            reason = skip.as_str(),
                            detail = skip_detail(skip, &signals, max_delay),
                            "heartbeat skipped: m4watch is not healthy, so the dead-man's service hears nothing"
                        );
                    }
                }
                Outcome::Failed(e) => {
                    let reason = e.reason.as_str();
                    *counts.failures.entry(reason).or_default() += 1;
                    if quiet.should_log(reason, Instant::now()) {
                        tracing::warn!(reason, error = %e, "heartbeat failed");
                    }
                }
            }
            store.publish("heartbeat", counts.families());
        }
    }
}

/// A sentence for the log: what is stale, and since when.
fn skip_detail(skip: Skip, s: &Signals, max_delay: Duration) -> String {
    let now = unix_now_ms();
    let ago = |at: Option<i64>| match at {
        Some(at) => format!("{:.1}s ago", (now - at) as f64 / 1000.0),
        None => "never".to_string(),
    };
    match skip {
        Skip::RulesStalled => format!(
            "the last rule evaluation finished {} (limit {:?})",
            ago(s.evaluated.as_ref().and_then(Stamp::get)),
            s.rules_stale_after()
        ),
        Skip::OutboxStalled => format!(
            "the delivery worker last read the outbox {} (limit {OUTBOX_STALL:?})",
            ago(s.outbox.pass.get())
        ),
        Skip::DeliveryBacklog => format!(
            "the oldest undelivered notification was queued {} (limit {max_delay:?})",
            ago(s.outbox.oldest_pending.get())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn signals(rules: bool) -> Signals {
        Signals {
            evaluated: rules.then(Stamp::default),
            evaluation_interval: Duration::from_secs(1),
            outbox: Progress::default(),
        }
    }

    const DELAY: Duration = Duration::from_secs(60);

    #[test]
    fn a_beat_goes_only_while_every_signal_is_fresh() {
        let now = 1_000_000_000;
        let s = signals(true);
        assert_eq!(
            s.verdict(DELAY, now),
            Err(Skip::RulesStalled),
            "never evaluated"
        );
        s.evaluated.as_ref().unwrap().set(now - 1000);
        assert_eq!(
            s.verdict(DELAY, now),
            Err(Skip::OutboxStalled),
            "worker never read"
        );
        s.outbox.pass.set(now - 500);
        assert_eq!(s.verdict(DELAY, now), Ok(()));
        // Three evaluation intervals, at least 5 s.
        assert_eq!(s.verdict(DELAY, now + 4_000), Ok(()));
        assert_eq!(s.verdict(DELAY, now + 6_000), Err(Skip::RulesStalled));
        // The worker reads at least every second; ten seconds without is a stall.
        s.evaluated.as_ref().unwrap().set(now + 9_000);
        assert_eq!(s.verdict(DELAY, now + 9_400), Ok(()));
        assert_eq!(s.verdict(DELAY, now + 10_600), Err(Skip::OutboxStalled));
        // A notification waiting longer than max_delivery_delay.
        s.outbox.pass.set(now + 9_000);
        s.outbox.oldest_pending.set(now + 10_000 - 61_000);
        assert_eq!(s.verdict(DELAY, now + 10_000), Err(Skip::DeliveryBacklog));
        s.outbox.oldest_pending.set(now + 10_000 - 59_000);
        assert_eq!(s.verdict(DELAY, now + 10_000), Ok(()));
        s.outbox.oldest_pending.clear();
        assert_eq!(s.verdict(DELAY, now + 10_000), Ok(()));
        // With rules off, only the outbox counts.
        let off = signals(false);
        off.outbox.pass.set(now);
        assert_eq!(off.verdict(DELAY, now), Ok(()));
    }

    #[test]
    fn a_repeating_skip_is_logged_once_then_every_ten_minutes_or_when_it_changes() {
        let t = Instant::now();
        let mut q = Quiet::default();
        assert!(q.should_log("rules_stalled", t));
        for i in 1..60 {
            assert!(!q.should_log("rules_stalled", t + Duration::from_secs(i * 10)));
        }
        assert!(q.should_log("rules_stalled", t + LOG_EVERY));
        assert!(q.should_log("timeout", t + LOG_EVERY));
        assert_eq!(q.success(), 62, "every missed beat counted");
        assert!(
            q.should_log("timeout", t + LOG_EVERY),
            "a new streak logs at once"
        );
    }

    /// The real rule loop marks each evaluation; one that never starts (a collector
    /// it waits for never runs) leaves the heartbeat skipping.
    #[tokio::test]
    async fn a_rule_loop_that_does_not_evaluate_stops_the_beats() {
        let start = |expected: Vec<&'static str>| {
            let alerts = Arc::new(crate::alerts::Alerts::new(
                Vec::new(),
                Vec::new(),
                None,
                60_000,
            ));
            let (trigger, shutdown) = crate::shutdown::channel();
            let rc = crate::config::RulesConfig {
                evaluation_interval: crate::config::Dur(Duration::from_millis(100)),
                ..Default::default()
            };
            let running = crate::alerts::evaluate::start(
                &rc,
                (Vec::new(), Vec::new()),
                alerts,
                Arc::new(Store::new()),
                shutdown,
                expected,
                Vec::new(),
            );
            (running.evaluated, trigger)
        };
        let (stuck, _t1) = start(vec!["hardware"]);
        let (live, _t2) = start(Vec::new());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let outbox = Progress::default();
        outbox.pass.mark();
        let s = |evaluated: Stamp| Signals {
            evaluated: Some(evaluated),
            evaluation_interval: Duration::from_millis(100),
            outbox: outbox.clone(),
        };
        let now = unix_now_ms();
        assert_eq!(s(live.clone()).verdict(DELAY, now), Ok(()));
        assert!(live.get().is_some_and(|t| now - t < 1000));
        assert_eq!(stuck.get(), None);
        assert_eq!(s(stuck).verdict(DELAY, now), Err(Skip::RulesStalled));
    }

    /// The real delivery worker marks each outbox read; while the outbox's database
    /// does not answer (its connection held, as behind a hung disk) the marks stop
    /// and, ten seconds on, the heartbeat skips; once it answers again they resume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wedged_outbox_stops_the_beats_until_it_drains_again() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = crate::notify::outbox::Outbox::open(&dir.path().join("m4watch.db")).unwrap();
        let (_trigger, shutdown) = crate::shutdown::channel();
        let (notifier, _tasks) = crate::notify::Notifier::start(
            &Default::default(),
            &crate::config::Identity::of_this_host(),
            outbox.clone(),
            &Default::default(),
            &prometheus::Registry::new(),
            shutdown,
        )
        .await
        .unwrap();
        let s = Signals {
            evaluated: None,
            evaluation_interval: Duration::from_secs(1),
            outbox: notifier.progress(),
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(s.verdict(DELAY, unix_now_ms()), Ok(()), "draining");
        // A thread holds the connection until released, as a hung disk would.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let o = outbox.clone();
        let holder = std::thread::spawn(move || {
            let _wedged = o.wedge();
            let _ = held.recv();
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = s.outbox.pass.get();
        tokio::time::sleep(OUTBOX_STALL).await;
        assert_eq!(s.outbox.pass.get(), before, "no outbox read while wedged");
        assert_eq!(s.verdict(DELAY, unix_now_ms()), Err(Skip::OutboxStalled));
        drop(release);
        holder.join().unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(s.verdict(DELAY, unix_now_ms()), Ok(()), "draining again");
    }

    /// A stand-in for a dead-man's service on loopback: answers each connection with
    /// `answer` (after logging the request line), or never when `None`.
    fn stand_in(answer: Option<Vec<u8>>) -> (String, std::sync::mpsc::Receiver<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ping/SECRET-UUID", l.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in l.incoming() {
                let mut c = conn.unwrap();
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let _ = tx.send(head);
                match &answer {
                    Some(a) => {
                        let _ = c.write_all(a);
                    }
                    None => held.push(c),
                }
            }
        });
        (url, rx)
    }

    fn config(url: &str, method: HeartbeatMethod, timeout: Duration) -> HeartbeatConfig {
        HeartbeatConfig {
            url: Some(Secret::new(url)),
            url_file: None,
            method,
            interval: crate::config::Dur(Duration::from_secs(60)),
            timeout: crate::config::Dur(timeout),
            headers: [("X-Api-Key".to_string(), Secret::new("HDR-SECRET"))].into(),
            max_delivery_delay: crate::config::Dur(DELAY),
        }
    }

    #[tokio::test]
    async fn a_beat_is_the_configured_request_and_failures_have_bounded_reasons() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK".to_vec();
        let (url, seen) = stand_in(Some(ok));
        let c = config(&url, HeartbeatMethod::Post, Duration::from_secs(2));
        send(&client(&c).unwrap(), &c).await.unwrap();
        let head = seen.recv().unwrap();
        assert!(
            head.starts_with("POST /ping/SECRET-UUID HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase().contains("x-api-key: hdr-secret"),
            "{head}"
        );

        let (url, _) = stand_in(Some(
            b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ));
        let c = config(&url, HeartbeatMethod::Get, Duration::from_secs(2));
        let e = send(&client(&c).unwrap(), &c).await.unwrap_err();
        assert_eq!(e.reason, Reason::ServerError);
        assert!(!e.to_string().contains("SECRET"), "{e}");

        // Nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = config(
            &format!("http://127.0.0.1:{port}/SECRET"),
            HeartbeatMethod::Get,
            Duration::from_secs(2),
        );
        let e = send(&client(&c).unwrap(), &c).await.unwrap_err();
        assert_eq!(e.reason, Reason::Connection);
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[tokio::test]
    async fn a_beat_never_outlives_its_timeout_nor_reads_an_endless_answer() {
        // Accepts, reads the request, never answers.
        let (url, _) = stand_in(None);
        let c = config(&url, HeartbeatMethod::Get, Duration::from_millis(300));
        let t = Instant::now();
        let e = send(&client(&c).unwrap(), &c).await.unwrap_err();
        assert_eq!(e.reason, Reason::Timeout);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

        // 200 with a body that never ends: the beat counts once 64 KiB are read.
        let mut endless = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', 256 * 1024));
        let (url, _) = stand_in(Some(endless));
        let c = config(&url, HeartbeatMethod::Get, Duration::from_secs(5));
        let t = Instant::now();
        send(&client(&c).unwrap(), &c).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}
