//! A local HTTP server standing in for the SaaS receivers (Slack, PagerDuty, a
//! webhook, a dead-man's service): it records every request before answering, and
//! answers as scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub at: Instant,
}

/// Scripted answers: a status and an optional `Retry-After`.
type Answers = VecDeque<(u16, Option<String>)>;

#[derive(Default)]
struct SinkState {
    received: Vec<Received>,
    /// Answers to give, per path prefix, before falling back to `standing`.
    script: Vec<(String, Answers)>,
    /// The status of every unscripted answer (202 unless set).
    standing: Option<u16>,
}

/// A local HTTP server that records JSON POSTs and answers as scripted.
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(s): State<Arc<Mutex<SinkState>>>,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Logged before answering, so a test's output shows what arrived when.
    eprintln!("sink: {method} {path}");
    let mut st = s.lock().unwrap();
    st.received.push(Received {
        method: method.to_string(),
        path: path.clone(),
        body,
        at: Instant::now(),
    });
    let answer = st
        .script
        .iter_mut()
        .find(|(p, _)| path.starts_with(p.as_str()))
        .and_then(|(_, q)| q.pop_front());
    match answer {
        Some((code, retry_after)) => {
            let mut h = HeaderMap::new();
            if let Some(r) = retry_after {
                h.insert("retry-after", r.parse().unwrap());
            }
            (StatusCode::from_u16(code).unwrap(), h, "scripted").into_response()
        }
        None => (
            StatusCode::from_u16(st.standing.unwrap_or(202)).unwrap(),
            "ok",
        )
            .into_response(),
    }
}

impl Sink {
    pub async fn start() -> Sink {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Sink::on(l).await
    }

    pub async fn on(l: tokio::net::TcpListener) -> Sink {
        let addr = l.local_addr().unwrap();
        let state = Arc::new(Mutex::new(SinkState::default()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            axum::serve(l, app).await.unwrap();
        });
        Sink { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests under `prefix` with these statuses (and
    /// `Retry-After` values) before answering 202.
    pub fn script(&self, prefix: &str, answers: &[(u16, Option<&str>)]) {
        self.state.lock().unwrap().script.push((
            prefix.to_string(),
            answers
                .iter()
                .map(|(c, r)| (*c, r.map(str::to_string)))
                .collect(),
        ));
    }

    /// Answers every unscripted request with `status` from now on.
    pub fn answer(&self, status: u16) {
        self.state.lock().unwrap().standing = Some(status);
    }

    /// Forgets the scripted answers: everything is answered 202 from now on.
    pub fn clear_script(&self) {
        self.state.lock().unwrap().script.clear();
    }

    pub fn received(&self, prefix: &str) -> Vec<Received> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The `text` field of every body received under `prefix` (Slack's headline).
    pub fn texts(&self, prefix: &str) -> Vec<String> {
        self.received(prefix)
            .iter()
            .map(|r| r.body["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Waits until `n` requests under `prefix` arrived.
    pub async fn wait_for(&self, prefix: &str, n: usize, secs: u64) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received(prefix);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{prefix}: wanted {n} requests, got {}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
