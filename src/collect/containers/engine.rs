//! Talking to the Engine: where it listens, the client and its negotiated version,
//! and the single requests (version, info, list, inspect, one-shot stats) the watcher
//! makes. Each single request is read on a connection of its own through the one
//! bounded reader ([`crate::tls::read_bounded`], issue 25): [`REQUEST_TIMEOUT`] covers
//! connect, head and the whole body, and each answer has a size cap; on either bound
//! the connection is dropped, nothing more is read. bollard keeps the events stream.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use bollard::models::{
    ContainerInspectResponse, ContainerStatsResponse, ContainerSummary, SystemInfo, SystemVersion,
};
use bollard::{ClientVersion, Docker};
use serde::de::DeserializeOwned;

use super::counters::since_arg;
use super::sample::Usage;
use super::stream::{Endpoint, MAX_FRAME, StatsStream, StreamError};
use crate::collect::CollectError;
use crate::tls::BodyError;

/// Largest `GET /version` answer read (about 1 KB from any Engine).
const MAX_VERSION: usize = 64 * 1024;
/// Largest `GET /info` answer read (5–20 KB; plugins and registries lists grow it).
const MAX_INFO: usize = 1024 * 1024;
/// Largest `GET /containers/json?all=true` answer read: a summary is 1–4 KB (labels,
/// ports, mounts, networks), so 500 containers fit in about 2 MB; 8 MiB leaves room
/// for containers with hundreds of labels.
const MAX_LIST: usize = 8 * 1024 * 1024;
/// Largest `GET /containers/{id}/json` answer read: 10–30 KB for most, a container
/// with a large environment or many mounts stays far below 4 MiB.
const MAX_INSPECT: usize = 4 * 1024 * 1024;
/// Largest one-shot stats answer read: one frame, as a stream's ([`MAX_FRAME`]).
const MAX_ONE_SHOT: usize = MAX_FRAME;

/// Longest one request to the Engine (inspect, list, info, a one-shot stats read) may
/// take. These run in the watcher, off the collection cycle: a slow Engine makes the
/// data older (the stats age shows it), not the cycle slower.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why talking to the Engine failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    #[error("cannot connect to the Docker Engine at {host}: {source}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("Docker Engine at {host}: {what}: {source}")]
    Request {
        host: String,
        what: &'static str,
        source: bollard::errors::Error,
    },
    #[error("Docker Engine at {host} closed the events stream")]
    Ended { host: String },
    #[error("Docker Engine at {host}: {what}: {source}")]
    Read {
        host: String,
        what: &'static str,
        source: ReadError,
    },
    #[error("Docker Engine at {host}: not a unix://, tcp:// or http:// address")]
    Address { host: String },
}

/// Why one bounded request to the Engine failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Body(#[from] BodyError<StreamError>),
    #[error("not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

impl ReadError {
    /// The Engine answered 404 (the container is gone).
    fn not_found(&self) -> bool {
        matches!(self, ReadError::Stream(StreamError::Status(line)) if line.split(' ').nth(1) == Some("404"))
    }
}

/// `GET path` from the Engine, at most `cap` bytes of answer, all within
/// [`REQUEST_TIMEOUT`].
async fn get_json<T: DeserializeOwned>(
    endpoint: &Endpoint,
    path: &str,
    cap: usize,
) -> Result<T, ReadError> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let mut answer = tokio::time::timeout_at(deadline, StatsStream::get(endpoint, path))
        .await
        .map_err(|_| ReadError::TimedOut(REQUEST_TIMEOUT))??;
    let body = crate::tls::read_bounded(&mut answer, cap, deadline).await?;
    drop(answer);
    Ok(serde_json::from_slice(&body)?)
}

/// Whether `id` may go into a request path as it is (the Engine's hex ids and names).
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// One Engine: bollard's client for the events stream, and its address for the
/// bounded single requests.
pub(super) struct Engine {
    pub(super) docker: Docker,
    endpoint: Endpoint,
    host: String,
}

impl Engine {
    fn read_err(&self, what: &'static str) -> impl Fn(ReadError) -> DockerError {
        let host = self.host.clone();
        move |source| DockerError::Read {
            host: host.clone(),
            what,
            source,
        }
    }

    pub(super) async fn info(&self) -> Result<SystemInfo, DockerError> {
        get_json(&self.endpoint, "/info", MAX_INFO)
            .await
            .map_err(self.read_err("GET /info"))
    }

    pub(super) async fn list(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        get_json(&self.endpoint, "/containers/json?all=true", MAX_LIST)
            .await
            .map_err(self.read_err("GET /containers/json"))
    }
}

impl From<DockerError> for CollectError {
    fn from(e: DockerError) -> Self {
        CollectError(e.to_string())
    }
}

/// The Engine address m4watch talks to: the configured one, else
/// `/var/run/docker.sock`, else (macOS) Docker Desktop's per-user socket.
pub(crate) fn resolve_docker_host(
    configured: Option<&str>,
    home: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> String {
    if let Some(h) = configured {
        return match h.strip_prefix('/') {
            Some(_) => format!("unix://{h}"),
            None => h.to_string(),
        };
    }
    let system = Path::new("/var/run/docker.sock");
    if !exists(system) && cfg!(target_os = "macos") {
        if let Some(desktop) = home.map(|h| h.join(".docker/run/docker.sock")) {
            if exists(&desktop) {
                return format!("unix://{}", desktop.display());
            }
        }
    }
    format!("unix://{}", system.display())
}

/// A client for `host` with its version negotiated, and the Engine's clock as an events
/// `since`.
pub(super) async fn connect(host: &str) -> Result<(Engine, Option<String>), DockerError> {
    let secs = REQUEST_TIMEOUT.as_secs();
    let endpoint = Endpoint::parse(host).ok_or_else(|| DockerError::Address {
        host: host.to_string(),
    })?;
    let read_err = |what| {
        move |source| DockerError::Read {
            host: host.to_string(),
            what,
            source,
        }
    };
    // An older Engine (Debian's 20.10 speaks API 1.41) refuses newer paths: the lower
    // of its version and bollard's.
    let version: SystemVersion = get_json(&endpoint, "/version", MAX_VERSION)
        .await
        .map_err(read_err("GET /version"))?;
    let ours = bollard::API_DEFAULT_VERSION;
    let theirs = version
        .api_version
        .as_deref()
        .and_then(|v| v.split_once('.'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    let client = match theirs {
        Some((major, minor)) if (major, minor) < (ours.major_version, ours.minor_version) => {
            ClientVersion {
                major_version: major,
                minor_version: minor,
            }
        }
        _ => *ours,
    };
    let connect_err = |source| DockerError::Connect {
        host: host.to_string(),
        source,
    };
    let docker = match &endpoint {
        Endpoint::Unix(path) => Docker::connect_with_unix(&path.to_string_lossy(), secs, &client),
        Endpoint::Tcp(_) => Docker::connect_with_http(host, secs, &client),
    }
    .map_err(connect_err)?;
    let engine = Engine {
        docker,
        endpoint,
        host: host.to_string(),
    };
    let info = engine.info().await?;
    // Ask for events from the Engine's own clock at connect time, so a restart
    // that happens before the subscription lands is still replayed to us.
    let engine_now = info
        .system_time
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| since_arg(d.as_nanos() as i64));
    tracing::info!(host = %host, version = ?info.server_version, "connected to the Docker Engine");
    Ok((engine, engine_now))
}

/// One-shot stats of a running container, the fallback when it has no stream.
pub(super) async fn one_shot_stats(engine: &Engine, id: &str) -> Option<Usage> {
    if !plain_id(id) {
        return None;
    }
    let path = format!("/containers/{id}/stats?stream=false&one-shot=true");
    match get_json::<ContainerStatsResponse>(&engine.endpoint, &path, MAX_ONE_SHOT).await {
        Ok(st) => Usage::of_frame(&st),
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "one-shot stats failed");
            None
        }
    }
}

/// How an inspect went.
pub(super) enum Inspected {
    Found(Box<ContainerInspectResponse>),
    Gone,
    /// Timed out or failed otherwise: try again on the next tick.
    Retry,
}

pub(super) async fn inspect(engine: &Engine, id: &str) -> Inspected {
    if !plain_id(id) {
        return Inspected::Gone;
    }
    let path = format!("/containers/{id}/json");
    match get_json::<ContainerInspectResponse>(&engine.endpoint, &path, MAX_INSPECT).await {
        Ok(ins) => Inspected::Found(Box::new(ins)),
        Err(e) if e.not_found() => Inspected::Gone,
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "inspect failed");
            Inspected::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_defaults_and_desktop_fallback() {
        let never = |_: &Path| false;
        assert_eq!(
            resolve_docker_host(Some("tcp://10.0.0.2:2375"), None, never),
            "tcp://10.0.0.2:2375"
        );
        assert_eq!(
            resolve_docker_host(Some("/run/user/1000/docker.sock"), None, never),
            "unix:///run/user/1000/docker.sock"
        );
        assert_eq!(
            resolve_docker_host(None, None, never),
            "unix:///var/run/docker.sock"
        );
        let desktop_only = |p: &Path| p.ends_with(".docker/run/docker.sock");
        let want = if cfg!(target_os = "macos") {
            "unix:///Users/trader/.docker/run/docker.sock"
        } else {
            "unix:///var/run/docker.sock"
        };
        assert_eq!(
            resolve_docker_host(None, Some(Path::new("/Users/trader")), desktop_only),
            want
        );
    }
}
