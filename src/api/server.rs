//! The HTTP server: an accept loop with a connection cap, and per connection a
//! header-read timeout and an idle timeout, so that no client can hold the server's
//! memory by opening connections and saying nothing (or saying it one byte at a time).
//!
//! `axum::serve` has no such knobs, so connections are served with hyper's HTTP/1
//! builder here. At `api.max_connections` a new connection is still accepted, and
//! the open connection doing least is closed to make room for it: the one waiting
//! longest with no request (never sent one, or idle between requests), else the one
//! whose request head has been arriving longest (a slowloris). A connection whose
//! request is being answered is never closed for a newcomer; when every connection
//! is answering one, the newcomer waits until one ends. So idle or trickling peers
//! cannot lock out a scrape: the newest connection is the last to be closed.
//!
//! Until its first request a connection gets `api.header_read_timeout` (from the
//! connection's start) rather than `api.idle_timeout`, and a request head must be
//! complete within `api.header_read_timeout` of its first byte however slowly it
//! trickles in.
//!
//! With `tls_server_config` in `--web.config.file` every connection is TLS: the
//! acceptor in force when it arrives (a reload swaps it, so new connections get a
//! rotated certificate) shakes hands within the header-read timeout.

use std::collections::HashMap;
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
    /// Connections served at once; at the cap a newcomer closes the one doing least.
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
    let pool = Pool::default();
    let mut stop = shutdown.clone();
    loop {
        // Accept even at the cap: a newcomer is made room for (below), not refused.
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
        let permit = loop {
            if let Ok(p) = Arc::clone(&permits).try_acquire_owned() {
                break Some(p);
            }
            // At the cap: close the connection doing least, then take its slot. If
            // every connection is answering a request, wait for one to end; look again
            // now and then, as one may fall idle meanwhile.
            pool.evict_one();
            tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => {
                    break Some(p.expect("the semaphore is never closed"));
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.recv() => break None,
            }
        };
        let Some(permit) = permit else { break };
        let slot = pool.join(permit);
        let router = router.clone();
        let shutdown = shutdown.clone();
        let acceptor = tls();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match acceptor {
                None => connection(stream, router, limits, shutdown, &slot).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(tls)) => connection(tls, router, limits, shutdown, &slot).await,
                            Ok(Err(err)) => {
                                tracing::debug!(error = %err, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        },
                        _ = slot.evict.notified() => {
                            tracing::debug!("closing a TLS handshake to make room for a newer connection");
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    // Every connection gives its slot back when it ends.
    let _ = permits.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// The connections open now, so that at the cap the one doing least can be closed.
#[derive(Default, Clone)]
struct Pool(Arc<Mutex<PoolInner>>);

#[derive(Default)]
struct PoolInner {
    next: u64,
    open: HashMap<u64, Member>,
}

struct Member {
    activity: Shared,
    evict: Arc<tokio::sync::Notify>,
    /// Already told to close: not picked again.
    evicted: bool,
}

/// One connection's place in the pool and its share of the cap; dropping it gives both back.
struct Slot {
    id: u64,
    pool: Pool,
    activity: Shared,
    evict: Arc<tokio::sync::Notify>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.inner().open.remove(&self.id);
    }
}

impl Pool {
    fn inner(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(&self, permit: tokio::sync::OwnedSemaphorePermit) -> Slot {
        let now = Instant::now();
        let activity: Shared = Arc::new(Mutex::new(Activity {
            phase: Phase::Fresh,
            since: now,
            last_io: now,
            in_flight: 0,
        }));
        let evict = Arc::new(tokio::sync::Notify::new());
        let mut p = self.inner();
        let id = p.next;
        p.next += 1;
        p.open.insert(
            id,
            Member {
                activity: Arc::clone(&activity),
                evict: Arc::clone(&evict),
                evicted: false,
            },
        );
        Slot {
            id,
            pool: self.clone(),
            activity,
            evict,
            _permit: permit,
        }
    }

    /// Tells the connection doing least to close; false when every one is answering a
    /// request (or already closing).
    fn evict_one(&self) -> bool {
        let mut p = self.inner();
        let victim = p
            .open
            .iter()
            .filter(|(_, m)| !m.evicted)
            .filter_map(|(id, m)| {
                let a = lock(&m.activity);
                // Waiting with no request first (rank 0), then a head still arriving
                // (rank 1); oldest first within each.
                let rank = match a.phase {
                    Phase::Fresh | Phase::Idle => 0,
                    Phase::Head => 1,
                    Phase::Busy => return None,
                };
                Some(((rank, a.since), *id))
            })
            .min()
            .map(|(_, id)| id);
        let Some(m) = victim.and_then(|id| p.open.get_mut(&id)) else {
            return false;
        };
        m.evicted = true;
        // A stored permit: the connection sees it even if not waiting right now.
        m.evict.notify_one();
        true
    }
}

/// Where a connection stands, as the timeouts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request yet since the connection started at `since`.
    Fresh,
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
            // Until its first request a connection has the header-read timeout, not
            // the idle timeout: a peer that connects and says nothing is let go soon.
            Phase::Fresh => self.since + l.header_read_timeout,
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
            match s.phase {
                Phase::Idle => {
                    s.phase = Phase::Head;
                    s.since = now;
                    self.head_started.notify_one();
                }
                // The first head's deadline counts from the connection's start.
                Phase::Fresh => s.phase = Phase::Head,
                Phase::Head | Phase::Busy => {}
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

/// Serves one connection until the client closes it, a timeout passes, it is closed to
/// make room for a newer one, or shutdown has fired and the request in flight is answered.
async fn connection<S>(
    stream: S,
    router: Router,
    limits: Limits,
    mut shutdown: Shutdown,
    slot: &Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::clone(&slot.activity);
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
            _ = slot.evict.notified(), if !stopping => {
                if lock(&activity).phase != Phase::Busy {
                    tracing::debug!("closing an http connection to make room for a newer one");
                    return;
                }
                // It started a request since it was picked: answer it, then close.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
