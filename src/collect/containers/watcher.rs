//! The task that talks to the Engine: it follows the events stream, inspects the
//! containers the events name, resyncs everything periodically, and keeps one stats
//! stream per running container (one-shot reads where a stream is missing).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, EventMessage};
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;

use super::counters::EventTally;
use super::engine::{self, DockerError, Engine, Inspected, inspect, one_shot_stats};
use super::filter::{expected_indexes, selected};
use super::sample::{engine_info, inspect_counters, sample_from};
use super::state::{FIRST_BACKOFF, Frame, Known, MAX_BACKOFF, Shared, Task, attach, lock};
use super::stream::Endpoint;
use crate::config::{ContainerMatch, ContainersConfig, ExpectedContainer};

/// Events that change what inspect or the stats streams report.
const WATCHED_EVENTS: &[&str] = &[
    "create",
    "start",
    "die",
    "oom",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "update",
    "health_status",
];

/// The task that talks to the Engine: it follows the events stream, inspects the
/// containers the events name, resyncs everything periodically, and keeps one stats
/// stream per running container (one-shot reads where a stream is missing).
pub(super) struct Watcher {
    host: String,
    /// Where the stats streams connect (`None`: an address they cannot use, so every
    /// container is read one-shot).
    endpoint: Option<Arc<Endpoint>>,
    interval: Duration,
    resync: Duration,
    concurrency: usize,
    max_streams: usize,
    include: ContainerMatch,
    exclude: ContainerMatch,
    /// `containers.expected`: matched against every container, selected or not.
    expected: Vec<ExpectedContainer>,
    shared: Shared,
    settled: tokio::sync::watch::Sender<bool>,
    tally: EventTally,
    /// Ids whose inspect failed or timed out; bounded, an overflow forces a resync.
    retry: HashSet<String>,
}

/// Most ids kept for a retried inspect before the watcher resyncs everything instead.
const MAX_RETRY_IDS: usize = 1024;

impl Watcher {
    /// The watcher of `host` for `cfg`; it reports into `shared` and says on `settled`
    /// when the first connection attempt has finished.
    pub(super) fn new(
        cfg: &ContainersConfig,
        host: &str,
        shared: Shared,
        settled: tokio::sync::watch::Sender<bool>,
    ) -> Watcher {
        Watcher {
            endpoint: Endpoint::parse(host).map(Arc::new),
            host: host.to_string(),
            interval: cfg.interval.get(),
            resync: cfg.resync_interval.get(),
            concurrency: cfg.max_concurrent_requests.max(1),
            max_streams: cfg.max_streams,
            include: cfg.include.clone(),
            exclude: cfg.exclude.clone(),
            expected: cfg.expected.clone(),
            shared,
            settled,
            tally: EventTally::default(),
            retry: HashSet::new(),
        }
    }

    pub(super) async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let err = match engine::connect(&self.host).await {
                Ok((docker, since)) => {
                    backoff = FIRST_BACKOFF;
                    self.session(&docker, since).await
                }
                Err(e) => e,
            };
            tracing::debug!(host = %self.host, error = %err, "Docker Engine session ended");
            {
                let mut state = lock(&self.shared);
                state.engine = None;
                state.last_error = err.to_string();
                state.settled = true;
                // Every stream goes with its container; a new session attaches anew.
                state.containers.clear();
                state.expected.clear();
            }
            self.retry.clear();
            self.settled.send_replace(true);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Runs until the Engine is lost; returns why.
    async fn session(&mut self, docker: &Engine, engine_now: Option<String>) -> DockerError {
        // Subscribe before the first list, so nothing that happens in between is lost.
        let since = self.tally.since().or(engine_now);
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", WATCHED_EVENTS.to_vec()),
        ]);
        let mut opts = EventsOptionsBuilder::new().filters(&filters);
        if let Some(s) = &since {
            opts = opts.since(s);
        }
        let mut events = docker.docker.events(Some(opts.build()));
        if let Err(e) = self.resync(docker).await {
            return e;
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut resync =
            tokio::time::interval_at(tokio::time::Instant::now() + self.resync, self.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => self.on_event(docker, &ev).await,
                    Some(Err(source)) => {
                        return DockerError::Request { host: self.host.clone(), what: "events stream", source };
                    }
                    None => return DockerError::Ended { host: self.host.clone() },
                },
                _ = tick.tick() => self.maintain(docker).await,
                _ = resync.tick() => {
                    if let Err(e) = self.resync(docker).await {
                        return e;
                    }
                }
            }
        }
    }

    async fn on_event(&mut self, docker: &Engine, ev: &EventMessage) {
        self.tally.apply(ev);
        let Some(id) = ev.actor.as_ref().and_then(|a| a.id.clone()) else {
            return;
        };
        match ev.action.as_deref() {
            Some("destroy") => {
                let mut state = lock(&self.shared);
                state.containers.remove(&id);
                state.expected.remove(&id);
                drop(state);
                self.retry.remove(&id);
            }
            Some("die") => {
                // Its stream ends with it; stale usage must not outlive the process.
                if let Some(k) = lock(&self.shared).containers.get_mut(&id) {
                    k.running = false;
                    k.detach();
                }
                self.refresh(docker, &id).await;
            }
            _ => self.refresh(docker, &id).await,
        }
    }

    /// Inspects one container and folds the answer into the state.
    async fn refresh(&mut self, docker: &Engine, id: &str) {
        let got = inspect(docker, id).await;
        self.apply(id, got);
    }

    fn apply(&mut self, id: &str, got: Inspected) {
        let ins = match got {
            Inspected::Found(ins) => ins,
            Inspected::Gone => {
                let mut state = lock(&self.shared);
                state.containers.remove(id);
                state.expected.remove(id);
                drop(state);
                self.retry.remove(id);
                return;
            }
            Inspected::Retry => {
                if self.retry.len() < MAX_RETRY_IDS {
                    self.retry.insert(id.to_string());
                }
                return;
            }
        };
        self.retry.remove(id);
        let name = ins.name.as_deref().unwrap_or("").trim_start_matches('/');
        let labels = ins
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .cloned()
            .unwrap_or_default();
        let running = ins.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let mut state = lock(&self.shared);
        state.note_expected(id, running, expected_indexes(&self.expected, name, &labels));
        if !selected(&self.include, &self.exclude, name, &labels) {
            state.containers.remove(id);
            return;
        }
        let pending = self.tally.take(id);
        let streams = state.streams();
        let k = state
            .containers
            .entry(id.to_string())
            .or_insert_with(Known::new);
        k.tracked.reconcile(&pending, &inspect_counters(&ins));
        k.sample = sample_from(&ins, None, &k.tracked);
        k.running = running;
        if !k.running {
            k.detach();
        } else if k.stream.is_none() && streams < self.max_streams {
            attach(k, self.endpoint.as_ref(), id, &self.shared);
        }
    }

    /// Lists every container, inspects the selected ones (a bounded number at once),
    /// forgets those that are gone, and re-reads the Engine's description.
    async fn resync(&mut self, docker: &Engine) -> Result<(), DockerError> {
        let info = docker.info().await?;
        let list = docker.list().await?;
        let empty = HashMap::new();
        let name_labels = |c: &ContainerSummary| {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map_or("", |n| n.trim_start_matches('/'));
            (
                name.to_string(),
                c.labels.as_ref().unwrap_or(&empty).clone(),
            )
        };
        // `containers.expected` is read off the list of every container; the inspects
        // below and the events keep it current between resyncs.
        let mut expected = HashMap::new();
        if !self.expected.is_empty() {
            for c in &list {
                let (name, labels) = name_labels(c);
                let running = matches!(
                    c.state,
                    Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::PAUSED)
                );
                let matched = expected_indexes(&self.expected, &name, &labels);
                if let (true, false, Some(id)) = (running, matched.is_empty(), &c.id) {
                    expected.insert(id.clone(), matched);
                }
            }
        }
        let ids: Vec<String> = list
            .into_iter()
            .filter(|c| {
                let (name, labels) = name_labels(c);
                selected(&self.include, &self.exclude, &name, &labels)
            })
            .filter_map(|c| c.id)
            .collect();
        let listed: HashSet<&String> = ids.iter().collect();
        {
            let mut state = lock(&self.shared);
            state.containers.retain(|id, _| listed.contains(id));
            state.expected = expected;
        }
        let reads = each_bounded(ids, self.concurrency, |id| async move {
            let got = inspect(docker, &id).await;
            (id, got)
        })
        .await;
        for (id, got) in reads {
            self.apply(&id, got);
        }
        let mut state = lock(&self.shared);
        state.engine = Some(engine_info(&info));
        state.settled = true;
        drop(state);
        self.settled.send_replace(true);
        Ok(())
    }

    /// Once per interval: retries failed inspects, re-attaches failed streams after
    /// their backoff, and reads one-shot stats for running containers without a stream.
    async fn maintain(&mut self, docker: &Engine) {
        if self.retry.len() >= MAX_RETRY_IDS {
            self.retry.clear();
            if let Err(e) = self.resync(docker).await {
                tracing::debug!(error = %e, "resync after too many failed inspects");
            }
        }
        for id in std::mem::take(&mut self.retry) {
            self.refresh(docker, &id).await;
        }
        let now = Instant::now();
        let poll: Vec<String> = {
            let mut state = lock(&self.shared);
            let mut streams = state.streams();
            let mut poll = Vec::new();
            for (id, k) in state.containers.iter_mut().filter(|(_, k)| k.running) {
                if k.stream.as_ref().is_some_and(Task::is_finished) {
                    // The Engine closed a running container's stream: back off before
                    // the next one and read one-shot meanwhile.
                    tracing::debug!(container = %id, "stats stream failed; falling back to one-shot reads");
                    k.detach();
                    k.stream_retry_at = Some(now + k.stream_backoff);
                    k.stream_backoff = (k.stream_backoff * 2).min(MAX_BACKOFF);
                }
                if k.stream.is_some() {
                    continue;
                }
                if k.stream_retry_at.is_none_or(|at| at <= now)
                    && streams < self.max_streams
                    && attach(k, self.endpoint.as_ref(), id, &self.shared)
                {
                    streams += 1;
                } else {
                    poll.push(id.clone());
                }
            }
            poll
        };
        if poll.is_empty() {
            return;
        }
        let reads = each_bounded(poll, self.concurrency, |id| async move {
            let got = one_shot_stats(docker, &id).await;
            (id, got)
        })
        .await;
        let mut state = lock(&self.shared);
        state.fallbacks_total += reads.len() as u64;
        for (id, usage) in reads {
            if let (Some(k), Some(usage)) = (state.containers.get_mut(&id), usage) {
                if k.running && k.stream.is_none() {
                    k.frame = Some(Frame {
                        usage,
                        received: Instant::now(),
                    });
                }
            }
        }
    }
}

/// `read` for every id, at most `concurrency` at a time, each answer beside its id.
async fn each_bounded<T, F>(
    ids: Vec<String>,
    concurrency: usize,
    read: impl Fn(String) -> F,
) -> Vec<(String, T)>
where
    F: std::future::Future<Output = (String, T)>,
{
    futures_util::stream::iter(ids)
        .map(read)
        .buffer_unordered(concurrency)
        .collect()
        .await
}
