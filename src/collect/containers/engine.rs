//! Talking to the Engine through bollard: where it listens, the client and its
//! negotiated version, and the single requests (inspect, one-shot stats) the watcher
//! makes. Every call is bounded by [`REQUEST_TIMEOUT`].

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::StreamExt;

use super::counters::since_arg;
use super::sample::Usage;
use crate::collect::CollectError;

/// Longest one request to the Engine (inspect, list, info, a one-shot stats read) may
/// take. These run in the watcher, off the collection cycle: a slow Engine makes the
/// data older (the stats age shows it), not the cycle slower.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why talking to the Engine failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
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
    #[error("Docker Engine at {host}: {what} timed out")]
    TimedOut { host: String, what: &'static str },
    #[error("Docker Engine at {host} closed the events stream")]
    Ended { host: String },
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

/// How an Engine request failed, for `what` at `host`.
pub(super) fn request_err(
    host: &str,
    what: &'static str,
) -> impl Fn(bollard::errors::Error) -> DockerError {
    let host = host.to_string();
    move |source| DockerError::Request {
        host: host.clone(),
        what,
        source,
    }
}

/// A client for `host` with its version negotiated, and the Engine's clock as an events
/// `since`.
pub(super) async fn connect(host: &str) -> Result<(Docker, Option<String>), DockerError> {
    let secs = REQUEST_TIMEOUT.as_secs();
    let connect_err = |source| DockerError::Connect {
        host: host.to_string(),
        source,
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, secs, bollard::API_DEFAULT_VERSION)
    } else {
        Docker::connect_with_http(host, secs, bollard::API_DEFAULT_VERSION)
    }
    .map_err(connect_err)?;
    // An older Engine (Debian's 20.10 speaks API 1.41) refuses newer paths.
    let docker = docker.negotiate_version().await.map_err(connect_err)?;
    let info = docker
        .info()
        .await
        .map_err(request_err(host, "GET /info"))?;
    // Ask for events from the Engine's own clock at connect time, so a restart
    // that happens before the subscription lands is still replayed to us.
    let engine_now = info
        .system_time
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| since_arg(d.as_nanos() as i64));
    tracing::info!(host = %host, version = ?info.server_version, "connected to the Docker Engine");
    Ok((docker, engine_now))
}

/// One-shot stats of a running container, the fallback when it has no stream.
pub(super) async fn one_shot_stats(docker: &Docker, id: &str) -> Option<Usage> {
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stats = docker.stats(id, Some(opts));
    match tokio::time::timeout(REQUEST_TIMEOUT, stats.next()).await {
        Ok(Some(Ok(st))) => Usage::of_frame(&st),
        Ok(Some(Err(e))) => {
            tracing::debug!(container = %id, error = %e, "one-shot stats failed");
            None
        }
        Ok(None) | Err(_) => None,
    }
}

/// How an inspect went.
pub(super) enum Inspected {
    Found(Box<ContainerInspectResponse>),
    Gone,
    /// Timed out or failed otherwise: try again on the next tick.
    Retry,
}

pub(super) async fn inspect(docker: &Docker, id: &str) -> Inspected {
    match tokio::time::timeout(REQUEST_TIMEOUT, docker.inspect_container(id, None)).await {
        Ok(Ok(ins)) => Inspected::Found(Box::new(ins)),
        Ok(Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        })) => Inspected::Gone,
        Ok(Err(e)) => {
            tracing::debug!(container = %id, error = %e, "inspect failed");
            Inspected::Retry
        }
        Err(_) => {
            tracing::debug!(container = %id, "inspect timed out");
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
