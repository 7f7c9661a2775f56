//! The HTTP server: an accept loop with a connection cap, and per connection a
//! header-read timeout and an idle timeout, so that no client can hold the server's
//! memory by opening connections and saying nothing (or saying it one byte at a time).
//!
//! `axum::serve` has no such knobs, so connections are served with hyper's HTTP/1
//! builder here. Connections beyond `api.max_connections` are *queued*: the loop
//! stops accepting until one closes, so they wait in the kernel's listen backlog
//! (as in mini-redis) and are served in turn; the ones already open keep working.
//!
//! With `tls_server_config` in `--web.config.file` every connection is TLS: the
//! acceptor in force when it arrives (a reload swaps it, so new connections get a
//! rotated certificate) shakes hands within the header-read timeout.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::ApiConfig;
use crate::shutdown::Shutdown;

/// The limits one connection lives under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a request's first byte (or the connection's start) to its complete head.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no bytes moving is closed after this.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Limits {
    pub fn of(api: &ApiConfig) -> Limits {
        Limits {
            header_read_timeout: api.header_read_timeout.get(),
            idle_timeout: api.idle_timeout.get(),
            max_connections: api.max_connections,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight requests
/// finish (idle connections close at once) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_with(listener, router, limits, shutdown, || None).await
}

/// [`serve`], with each connection taken over TLS when `tls` (asked at each accept)
/// gives an acceptor.
pub(crate) async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: Shutdown,
    tls: impl Fn() -> Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut stop = shutdown.clone();
    loop {
        // Take a slot before accepting: at the cap, new connections wait in the backlog.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.recv() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // EMFILE and friends: one bad accept never ends the loop.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.recv() => break,
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let acceptor = tls();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match acceptor {
                None => connection(stream, router, limits, shutdown).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls)) => connection(tls, router, limits, shutdown).await,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    // Every connection gives its slot back when it ends.
    let _ = permits.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// Where a connection stands, as the timeouts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress since `since`.
    Idle,
    /// A request's head started arriving at `since`.
    Head,
    /// A request is being handled or its body read.
    Busy,
}

#[derive(Debug)]
struct Activity {
    phase: Phase,
    since: Instant,
    last_io: Instant,
    in_flight: usize,
}

type Shared = Arc<Mutex<Activity>>;

/// Wakes the connection's timer when a request's head starts: the one change that
/// brings its deadline closer.
type HeadStarted = Arc<tokio::sync::Notify>;

fn lock(a: &Shared) -> std::sync::MutexGuard<'_, Activity> {
    a.lock().unwrap_or_else(|e| e.into_inner())
}

impl Activity {
    fn deadline(&self, l: &Limits) -> Instant {
        match self.phase {
            Phase::Idle => self.since + l.idle_timeout,
            Phase::Head => self.since + l.header_read_timeout,
            Phase::Busy => self.last_io + l.idle_timeout,
        }
    }
}

/// Marks a request in progress for as long as it lives.
struct Busy(Shared);

impl Busy {
    fn new(a: &Shared) -> Busy {
        let mut s = lock(a);
        s.in_flight += 1;
        s.phase = Phase::Busy;
        drop(s);
        Busy(Arc::clone(a))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = lock(&self.0);
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.phase = Phase::Idle;
            s.since = Instant::now();
        }
    }
}

/// A stream that records when bytes move and when a request's head starts.
struct Watched<S> {
    inner: S,
    activity: Shared,
    head_started: HeadStarted,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = Instant::now();
            let mut s = lock(&self.activity);
            s.last_io = now;
            if s.phase == Phase::Idle {
                s.phase = Phase::Head;
                s.since = now;
                self.head_started.notify_one();
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            lock(&self.activity).last_io = Instant::now();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection until the client closes it, a timeout passes, or shutdown
/// has fired and the request in flight is answered.
async fn connection<S>(stream: S, router: Router, limits: Limits, mut shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let now = Instant::now();
    let activity: Shared = Arc::new(Mutex::new(Activity {
        phase: Phase::Idle,
        since: now,
        last_io: now,
        in_flight: 0,
    }));
    let head_started = HeadStarted::default();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
        head_started: Arc::clone(&head_started),
    });
    let seen = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::new(&seen);
        let router = router.clone();
        async move {
            let resp = router.oneshot(req.map(Body::new)).await;
            drop(busy);
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // The timeouts are ours (below): hyper's header timer also runs while a
        // kept-alive connection waits for its next request, which is the idle timeout's job.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = lock(&activity).deadline(&limits);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(err) = r {
                    tracing::debug!(error = %err, "http connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let s = lock(&activity);
                if Instant::now() >= s.deadline(&limits) {
                    tracing::debug!(phase = ?s.phase, "closing an http connection that timed out");
                    // Dropping the connection closes the socket.
                    return;
                }
            }
            // Recompute the deadline.
            _ = head_started.notified() => {}
            _ = shutdown.recv(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
