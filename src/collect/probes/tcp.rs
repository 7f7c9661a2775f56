//! TCP probes, like blackbox_exporter's `tcp` prober: connect to `host:port`, with TLS
//! when asked, then optionally write `send` and read until `expect` (a regular
//! expression over the bytes read so far) matches. Everything, the name lookup
//! included, runs under the target's timeout; at most [`MAX_EXPECT_READ`] bytes are
//! read.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Outcome;
use crate::collect::CollectError;
use crate::config::ProbeTarget;

/// Most bytes read while waiting for `expect` to match: a banner or a short reply
/// fits; past it the probe fails rather than buffer an endless stream.
pub(crate) const MAX_EXPECT_READ: usize = 64 * 1024;

/// One configured TCP target, ready to run.
pub(super) struct TcpProbe {
    address: String,
    send: Option<Vec<u8>>,
    expect: Option<regex::bytes::Regex>,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: std::time::Duration,
}

impl TcpProbe {
    /// Built from a validated target.
    pub(super) fn new(t: &ProbeTarget) -> Result<TcpProbe, CollectError> {
        let address = t.address.clone().unwrap_or_default();
        let expect = match &t.expect {
            Some(e) => Some(
                regex::bytes::RegexBuilder::new(e)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| CollectError(format!("{}: expect: {e}", t.name)))?,
            ),
            None => None,
        };
        let tls = if t.tls {
            let host = t
                .tls_server_name
                .as_deref()
                .or_else(|| crate::config::probe_host(&address))
                .unwrap_or_default()
                .to_string();
            let name = ServerName::try_from(host)
                .map_err(|e| CollectError(format!("{}: server name: {e}", t.name)))?;
            let config = crate::tls::client_config(t.tls_ca_file.as_deref())
                .map_err(|e| CollectError(format!("{}: {e}", t.name)))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(TcpProbe {
            address,
            send: t.send.as_ref().map(|s| s.as_bytes().to_vec()),
            expect,
            tls,
            timeout: t.timeout.get(),
        })
    }

    /// Runs the probe once; the outcome's error says which step failed.
    pub(super) async fn run(&self) -> Outcome {
        let mut expiry = None;
        let done = tokio::time::timeout(self.timeout, self.exchange(&mut expiry)).await;
        let error = match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!("timed out after {:?}", self.timeout)),
        };
        Outcome {
            success: error.is_none(),
            http_status_code: None,
            error,
            tls_expiry: expiry,
        }
    }

    async fn exchange(&self, expiry: &mut Option<f64>) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &self.tls {
            None => self.converse(stream).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                *expiry = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| super::cert::not_after(leaf))
                    .map(|t| t as f64);
                self.converse(stream).await
            }
        }
    }

    /// `send`, then read until `expect` matches.
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) -> Result<(), String> {
        if let Some(send) = &self.send {
            s.write_all(send).await.map_err(|e| format!("send: {e}"))?;
            s.flush().await.map_err(|e| format!("send: {e}"))?;
        }
        let Some(expect) = &self.expect else {
            return Ok(());
        };
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if expect.is_match(&got) {
                return Ok(());
            }
            if got.len() >= MAX_EXPECT_READ {
                return Err(format!(
                    "expect: no match in the first {MAX_EXPECT_READ} bytes"
                ));
            }
            let want = buf.len().min(MAX_EXPECT_READ - got.len());
            let n = s
                .read(&mut buf[..want])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "expect: connection closed after {} bytes without a match",
                    got.len()
                ));
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
}
