//! One container's `GET /containers/{id}/stats?stream=true` on a connection of its
//! own, read frame by frame.
//!
//! Through bollard each stream was a pooled hyper client connection: a dispatch
//! channel, a connection task, an 8 KiB read buffer, an 8 KiB write buffer and an
//! 8 KiB frame decoder, about 50 KB of heap per container before a frame was read
//! (issue 17). A stream only ever sends one request and then reads newline-delimited
//! JSON in an HTTP/1.1 body, so it is read here directly: one buffer for the bytes
//! read and one for the body, each as large as a frame (2–4 KB). Every other Engine
//! request (events, list, inspect, one-shot stats) still goes through bollard.
//!
//! Bounded: the response head is at most [`MAX_HEAD`] bytes, a frame at most
//! [`MAX_FRAME`]; a stream that sends nothing for [`IDLE`] is given up (the Engine
//! sends a frame a second), so the collector falls back to one-shot reads and attaches
//! again.
//!
//! The response head and the chunk-size lines are parsed by `httparse` (hyper's own
//! parser); what is written here is the request, the chunk loop and the bounds. Longer
//! than most files: over half of it is the tests of each bound.

use std::path::PathBuf;
use std::time::Duration;

use bollard::models::ContainerStatsResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Largest stats frame accepted (a container with hundreds of interfaces or block
/// devices stays far below it).
pub(crate) const MAX_FRAME: usize = 1024 * 1024;
/// A stream silent this long is given up.
pub(crate) const IDLE: Duration = Duration::from_secs(30);
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;
/// Most header lines accepted in a response head (the Engine sends about eight).
const MAX_HEADERS: usize = 32;
/// Longest chunk-size line accepted (the Engine writes a few hex digits).
const MAX_CHUNK_LINE: usize = 64;

/// Where the Engine listens, from a `unix://` or `tcp://` (or `http://`) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    pub(crate) fn parse(host: &str) -> Option<Endpoint> {
        if let Some(p) = host.strip_prefix("unix://") {
            return Some(Endpoint::Unix(PathBuf::from(p)));
        }
        let rest = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))?;
        let addr = rest.trim_end_matches('/');
        (!addr.is_empty() && !addr.contains('/')).then(|| Endpoint::Tcp(addr.to_string()))
    }
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the Engine answered {0}")]
    Status(String),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("malformed response head: {0}")]
    Head(#[from] httparse::Error),
    #[error("a frame is not stats JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no frame for {0:?}")]
    Idle(Duration),
    #[error("the Engine closed the stream")]
    Closed,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the body is framed.
enum Body {
    /// `Transfer-Encoding: chunked`: bytes left in the current chunk (`None` before a
    /// chunk-size line).
    Chunked(Option<usize>),
    /// `Content-Length`: bytes left.
    Length(usize),
    /// Until the connection closes.
    Raw,
    /// The last chunk has come.
    Ended,
}

/// An open stats stream.
pub(crate) struct StatsStream {
    io: Box<dyn Io>,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet split into frames.
    body: Vec<u8>,
    framing: Body,
    eof: bool,
}

impl StatsStream {
    /// Connects and sends the request; the response head is read with the first frame.
    pub(crate) async fn open(
        endpoint: &Endpoint,
        id: &str,
        timeout: Duration,
    ) -> Result<Self, StreamError> {
        // The id is the Engine's hex id (or a name); anything else is refused rather
        // than put in a request line.
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(StreamError::Malformed("container id"));
        }
        let io = tokio::time::timeout(timeout, connect(endpoint))
            .await
            .map_err(|_| StreamError::Connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(StreamError::Connect)?;
        Self::start(io, id).await
    }

    /// Sends a stats request on a connected `io` and reads the response head.
    async fn start(io: Box<dyn Io>, id: &str) -> Result<Self, StreamError> {
        Self::start_path(io, &format!("/containers/{id}/stats?stream=true"), false).await
    }

    /// One `GET path` on a connection of its own (closed by the Engine after the
    /// answer), up to its response head; the body is read through
    /// [`crate::tls::ChunkSource`], bounded by the caller. The caller bounds the time.
    pub(crate) async fn get(endpoint: &Endpoint, path: &str) -> Result<Self, StreamError> {
        let io = connect(endpoint).await.map_err(StreamError::Connect)?;
        Self::start_path(io, path, true).await
    }

    /// Sends `GET path` on a connected `io` and reads the response head.
    async fn start_path(mut io: Box<dyn Io>, path: &str, close: bool) -> Result<Self, StreamError> {
        let connection = if close { "Connection: close\r\n" } else { "" };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: m4watch\r\nAccept: application/json\r\n{connection}\r\n"
        );
        // Unversioned: the Engine answers in its own API version.
        io.write_all(req.as_bytes()).await?;
        io.flush().await?;
        let mut s = StatsStream {
            io,
            raw: Vec::new(),
            body: Vec::new(),
            framing: Body::Raw,
            eof: false,
        };
        s.read_head().await?;
        Ok(s)
    }

    /// Reads more bytes into `raw`; false at end of stream.
    async fn fill(&mut self) -> Result<bool, StreamError> {
        if self.eof {
            return Ok(false);
        }
        let start = self.raw.len();
        // Exactly: a leftover of a few bytes must not double the buffer.
        self.raw.reserve_exact(READ_CHUNK);
        self.raw.resize(start + READ_CHUNK, 0);
        let n = tokio::time::timeout(IDLE, self.io.read(&mut self.raw[start..]))
            .await
            .map_err(|_| StreamError::Idle(IDLE))??;
        self.raw.truncate(start + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// Reads the response head (at most [`MAX_HEAD`] bytes) and takes the body's
    /// framing from it; only a `200` opens the stream.
    async fn read_head(&mut self) -> Result<(), StreamError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut head = httparse::Response::new(&mut headers);
            let seen = self.raw.len().min(MAX_HEAD);
            match head.parse(&self.raw[..seen])? {
                httparse::Status::Complete(len) => {
                    if head.code != Some(200) {
                        return Err(StreamError::Status(status_line(&head)));
                    }
                    self.framing = if chunked(head.headers) {
                        Body::Chunked(None)
                    } else if let Some(n) = content_length(head.headers) {
                        if n == 0 { Body::Ended } else { Body::Length(n) }
                    } else {
                        Body::Raw
                    };
                    self.raw.drain(..len);
                    return Ok(());
                }
                httparse::Status::Partial if seen == MAX_HEAD => {
                    return Err(StreamError::Malformed("response head too long"));
                }
                httparse::Status::Partial => {
                    if !self.fill().await? {
                        return Err(StreamError::Closed);
                    }
                }
            }
        }
    }

    /// Moves what `raw` holds of the body into `body`; true once the body has ended.
    fn decode(&mut self) -> Result<bool, StreamError> {
        match &mut self.framing {
            Body::Ended => Ok(true),
            Body::Raw => {
                self.body.extend_from_slice(&self.raw);
                self.raw.clear();
                Ok(false)
            }
            Body::Length(left) => {
                let take = (*left).min(self.raw.len());
                self.body.extend_from_slice(&self.raw[..take]);
                self.raw.drain(..take);
                *left -= take;
                if *left == 0 {
                    self.framing = Body::Ended;
                }
                Ok(matches!(self.framing, Body::Ended))
            }
            Body::Chunked(left) => {
                let mut at = 0;
                let done = loop {
                    match left {
                        None => match httparse::parse_chunk_size(&self.raw[at..]) {
                            Ok(httparse::Status::Complete((line, 0))) => {
                                at += line;
                                break true;
                            }
                            Ok(httparse::Status::Complete((line, size))) => {
                                at += line;
                                // The data, then its CRLF.
                                let n = usize::try_from(size).ok().and_then(|s| s.checked_add(2));
                                *left = Some(n.ok_or(StreamError::Malformed("chunk size"))?);
                            }
                            Ok(httparse::Status::Partial) => {
                                if self.raw.len() - at > MAX_CHUNK_LINE {
                                    return Err(StreamError::Malformed("chunk size line"));
                                }
                                break false;
                            }
                            Err(httparse::InvalidChunkSize) => {
                                return Err(StreamError::Malformed("chunk size"));
                            }
                        },
                        Some(n) => {
                            let take = (*n).min(self.raw.len() - at);
                            if take == 0 {
                                break false;
                            }
                            // The last two bytes of a chunk are its CRLF, not data.
                            let data = take.min(n.saturating_sub(2));
                            self.body.extend_from_slice(&self.raw[at..at + data]);
                            at += take;
                            *n -= take;
                            if *n == 0 {
                                *left = None;
                            }
                        }
                    }
                };
                self.raw.drain(..at);
                if done {
                    self.framing = Body::Ended;
                }
                Ok(done)
            }
        }
    }

    /// The next frame; `Err(Closed)` when the Engine ends the stream.
    pub(crate) async fn next(&mut self) -> Result<ContainerStatsResponse, StreamError> {
        // Body bytes already searched for a newline.
        let mut scanned = 0;
        loop {
            if let Some(nl) = self.body[scanned..].iter().position(|&b| b == b'\n') {
                let nl = scanned + nl;
                if nl > MAX_FRAME {
                    return Err(StreamError::Malformed("frame too long"));
                }
                let frame = serde_json::from_slice(&self.body[..nl]);
                self.body.drain(..=nl);
                return Ok(frame?);
            }
            scanned = self.body.len();
            if scanned > MAX_FRAME {
                return Err(StreamError::Malformed("frame too long"));
            }
            let ended = self.decode()?;
            if self.body.len() > scanned {
                continue;
            }
            if ended || !self.fill().await? {
                return Err(StreamError::Closed);
            }
        }
    }
}

/// The status line of a refused response, as the Engine sent it (at most 200 characters).
fn status_line(head: &httparse::Response) -> String {
    let line = format!(
        "HTTP/1.{} {} {}",
        head.version.unwrap_or(1),
        head.code.unwrap_or_default(),
        head.reason.unwrap_or_default()
    );
    line.trim_end().chars().take(200).collect()
}

impl crate::tls::ChunkSource for StatsStream {
    type Error = StreamError;
    /// The next piece of a [`StatsStream::get`] body, as it comes off the socket.
    async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, StreamError> {
        loop {
            let ended = self.decode()?;
            if !self.body.is_empty() {
                return Ok(Some(bytes::Bytes::from(std::mem::take(&mut self.body))));
            }
            if ended {
                return Ok(None);
            }
            if !self.fill().await? {
                return match self.framing {
                    Body::Raw => Ok(None),
                    _ => Err(StreamError::Closed),
                };
            }
        }
    }
}

/// A connection to the Engine.
async fn connect(endpoint: &Endpoint) -> Result<Box<dyn Io>, std::io::Error> {
    Ok(match endpoint {
        #[cfg(unix)]
        Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        #[cfg(not(unix))]
        Endpoint::Unix(_) => {
            return Err(std::io::Error::other("unix sockets need a unix host"));
        }
        Endpoint::Tcp(a) => Box::new(tokio::net::TcpStream::connect(a.as_str()).await?),
    })
}

/// The body's length, when the head gives one.
fn content_length(headers: &[httparse::Header]) -> Option<usize> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether the body comes in `Transfer-Encoding: chunked`.
fn chunked(headers: &[httparse::Header]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value.trim_ascii().eq_ignore_ascii_case(b"chunked")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock"),
            Some(Endpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375"),
            Some(Endpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            Endpoint::parse("http://engine:2375/"),
            Some(Endpoint::Tcp("engine:2375".into()))
        );
        assert_eq!(Endpoint::parse("ssh://x"), None);
        assert_eq!(Endpoint::parse("tcp://"), None);
    }

    const FRAME: &str = r#"{"read":"2026-11-26T08:00:00.000000001Z","pids_stats":{"current":3},"cpu_stats":{"cpu_usage":{"total_usage":1500000000}},"memory_stats":{"usage":4096,"stats":{"inactive_file":1024}}}"#;

    /// A loopback Engine that answers one request with `reply`, split into pieces of
    /// `piece` bytes, then closes.
    async fn engine(reply: Vec<u8>, piece: usize) -> Endpoint {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            assert!(
                std::str::from_utf8(&req[..n])
                    .unwrap()
                    .starts_with("GET /containers/abc123/stats?stream=true HTTP/1.1\r\n")
            );
            for p in reply.chunks(piece) {
                s.write_all(p).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        Endpoint::Tcp(addr.to_string())
    }

    fn chunked(frames: &[&str]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for f in frames {
            let data = format!("{f}\n");
            // Split each frame over two chunks, as the Engine's writes may fall.
            let (a, b) = data.split_at(data.len() / 2);
            for part in [a, b] {
                out.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
            }
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn frames_come_out_whole_however_the_bytes_are_split() {
        for piece in [1, 7, 100, 100_000] {
            let ep = engine(chunked(&[FRAME, FRAME]), piece).await;
            let mut s = StatsStream::open(&ep, "abc123", Duration::from_secs(5))
                .await
                .unwrap();
            for _ in 0..2 {
                let f = s.next().await.unwrap();
                assert_eq!(
                    f.pids_stats.and_then(|p| p.current),
                    Some(3),
                    "piece {piece}"
                );
                assert_eq!(f.memory_stats.and_then(|m| m.usage), Some(4096));
            }
            let end = s.next().await.map(|_| ());
            assert!(
                matches!(end, Err(StreamError::Closed)),
                "piece {piece}: {end:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_without_chunks_reads_to_the_end() {
        let reply = format!("HTTP/1.0 200 OK\r\n\r\n{FRAME}\n{FRAME}\n").into_bytes();
        let ep = engine(reply, 50).await;
        let mut s = StatsStream::open(&ep, "abc123", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(s.next().await.is_ok());
        assert!(s.next().await.is_ok());
        assert!(matches!(s.next().await, Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn errors_are_clear() {
        let ep = engine(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            1000,
        )
        .await;
        let e = StatsStream::open(&ep, "abc123", Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "the Engine answered HTTP/1.1 404 Not Found");
        let ep = engine(chunked(&["{not json"]), 1000).await;
        let mut s = StatsStream::open(&ep, "abc123", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(s.next().await, Err(StreamError::Json(_))));
        let ep = engine(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            1000,
        )
        .await;
        let mut s = StatsStream::open(&ep, "abc123", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(
            s.next().await,
            Err(StreamError::Malformed("chunk size"))
        ));
        let e = StatsStream::open(
            &Endpoint::Tcp("127.0.0.1:1".into()),
            "abc123",
            Duration::from_secs(5),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, StreamError::Connect(_)), "{e}");
        let e = StatsStream::open(&ep, "../x", Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, StreamError::Malformed("container id")), "{e}");
    }

    #[tokio::test]
    async fn a_frame_past_the_limit_is_refused() {
        let big = format!("{{\"read\":\"{}\"", "x".repeat(MAX_FRAME + 10));
        let ep = engine(chunked(&[&big]), 64 * 1024).await;
        let mut s = StatsStream::open(&ep, "abc123", Duration::from_secs(5))
            .await
            .unwrap();
        // The frame's first half ends without a newline and then the body grows past
        // MAX_FRAME.
        assert!(matches!(
            s.next().await,
            Err(StreamError::Malformed("frame too long"))
        ));
    }

    /// The reader's end of an in-memory Engine connection, and the Engine's end.
    fn pipe() -> (Box<dyn Io>, tokio::io::DuplexStream) {
        let (reader, engine) = tokio::io::duplex(64 * 1024);
        (Box::new(reader), engine)
    }

    #[tokio::test]
    async fn a_malformed_head_is_refused() {
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        for head in [
            "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            "HTTX/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            many.as_str(),
        ] {
            let (io, mut engine) = pipe();
            engine.write_all(head.as_bytes()).await.unwrap();
            let e = StatsStream::start(io, "abc123").await.err().unwrap();
            assert!(matches!(e, StreamError::Head(_)), "{head:?}: {e}");
        }
    }

    /// A head of exactly `len` bytes: one header padded to the length.
    fn head_of(len: usize) -> Vec<u8> {
        let frame = "HTTP/1.1 200 OK\r\nX-Pad: \r\n\r\n";
        let mut head = frame.replace(
            "X-Pad: ",
            &format!("X-Pad: {}", "a".repeat(len - frame.len())),
        );
        head.push_str(FRAME);
        head.push('\n');
        head.into_bytes()
    }

    #[tokio::test]
    async fn a_head_past_the_limit_is_refused() {
        let (io, mut engine) = pipe();
        engine.write_all(&head_of(MAX_HEAD)).await.unwrap();
        let mut s = StatsStream::start(io, "abc123").await.unwrap();
        assert!(s.next().await.is_ok(), "a head of MAX_HEAD bytes is read");

        let (io, mut engine) = pipe();
        engine.write_all(&head_of(MAX_HEAD + 1)).await.unwrap();
        let e = StatsStream::start(io, "abc123").await.err().unwrap();
        assert!(
            matches!(e, StreamError::Malformed("response head too long")),
            "{e}"
        );

        // A head that never ends is cut at the same length.
        let (io, mut engine) = pipe();
        let writer = tokio::spawn(async move {
            engine
                .write_all(b"HTTP/1.1 200 OK\r\nX-Pad: ")
                .await
                .unwrap();
            while engine.write_all(&[b'a'; 1024]).await.is_ok() {}
        });
        let e = StatsStream::start(io, "abc123").await.err().unwrap();
        assert!(
            matches!(e, StreamError::Malformed("response head too long")),
            "{e}"
        );
        writer.await.unwrap();
    }

    /// Sends `head`, then `piece` over and over until the reader hangs up; returns how
    /// many body bytes went out.
    async fn endless(head: &'static [u8], piece: Vec<u8>) -> usize {
        let (io, mut engine) = pipe();
        let writer = tokio::spawn(async move {
            engine.write_all(head).await.unwrap();
            let mut sent = 0;
            while engine.write_all(&piece).await.is_ok() {
                sent += piece.len();
            }
            sent
        });
        let mut s = StatsStream::start(io, "abc123").await.unwrap();
        let e = s.next().await.map(|_| ());
        assert!(
            matches!(e, Err(StreamError::Malformed("frame too long"))),
            "{e:?}"
        );
        drop(s);
        writer.await.unwrap()
    }

    #[tokio::test]
    async fn an_endless_body_without_a_newline_is_cut_at_the_frame_limit() {
        // Whatever the framing, the reader stops once a frame passes MAX_FRAME: what
        // the Engine got out is the frame, a read and the pipe's buffer.
        let bound = MAX_FRAME + READ_CHUNK + 64 * 1024 + 8 * 1024;
        let raw = endless(b"HTTP/1.1 200 OK\r\n\r\n", vec![b'x'; 8 * 1024]).await;
        assert!(raw > MAX_FRAME && raw <= bound, "{raw}");
        let mut chunk = b"2000\r\n".to_vec();
        chunk.extend_from_slice(&[b'x'; 8 * 1024]);
        chunk.extend_from_slice(b"\r\n");
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let chunked = endless(head, chunk).await;
        assert!(chunked > MAX_FRAME && chunked <= bound, "{chunked}");
    }

    #[tokio::test]
    async fn a_chunk_size_line_past_its_limit_is_refused() {
        let (io, mut engine) = pipe();
        let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10;".to_vec();
        reply.extend_from_slice(&[b'e'; MAX_CHUNK_LINE]);
        engine.write_all(&reply).await.unwrap();
        let mut s = StatsStream::start(io, "abc123").await.unwrap();
        let e = s.next().await.map(|_| ());
        assert!(
            matches!(e, Err(StreamError::Malformed("chunk size line"))),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_engine_is_given_up_after_the_idle_time() {
        let (io, mut engine) = pipe();
        engine
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let mut s = StatsStream::start(io, "abc123").await.unwrap();
        let start = tokio::time::Instant::now();
        let e = s.next().await.map(|_| ());
        assert!(matches!(e, Err(StreamError::Idle(d)) if d == IDLE), "{e:?}");
        assert!(start.elapsed() >= IDLE);
        // The Engine kept the connection open all along.
        drop(engine);
    }
}
