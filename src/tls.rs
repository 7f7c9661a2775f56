//! TLS for outgoing connections: rustls with the ring provider, verifying against the
//! platform's trust store (the system CA bundle on Linux, Security.framework on
//! macOS), so a desk's own roots work as they did with the system TLS library.
//!
//! rustls is built without a default provider (ring is chosen here, not aws-lc-rs),
//! and reqwest panics when a client is built before a process-wide provider is
//! installed. Every HTTP client in m4watch is therefore built through [`http_client`],
//! which installs it first; lettre takes the same provider.

use std::sync::Once;

/// Installs ring as the process-wide rustls provider. Idempotent; a provider someone
/// else installed first is kept.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder, after [`init`].
pub fn http_client() -> reqwest::ClientBuilder {
    init();
    reqwest::Client::builder()
}

/// A reqwest client with the defaults, after [`init`] (what `reqwest::Client::new`
/// would give, which panics without a provider).
pub fn client() -> reqwest::Client {
    http_client()
        .build()
        .expect("a default reqwest client always builds once a provider is installed")
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(std::path::PathBuf),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// The PEM certificates of `path` (a CA bundle), at least one.
pub(crate) fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ClientConfigError> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|source| ClientConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(ClientConfigError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// A rustls client configuration for connections m4watch makes itself (TCP probes
/// with TLS): ring, verification against the platform's trust store as for the HTTP
/// clients, and the CAs of `extra_ca` trusted beside it.
pub(crate) fn client_config(
    extra_ca: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, ClientConfigError> {
    init();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match extra_ca {
        Some(path) => rustls_platform_verifier::Verifier::new_with_extra_roots(
            read_ca_file(path)?,
            std::sync::Arc::clone(&provider),
        )?,
        None => rustls_platform_verifier::Verifier::new(std::sync::Arc::clone(&provider))?,
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth())
}

/// Why a bounded read of a response body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum BodyError<E: std::error::Error> {
    /// The peer sent more than the cap: the connection is dropped unread.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The whole body had not come by the deadline: the connection is dropped.
    #[error("no complete answer within {0:?}")]
    Deadline(std::time::Duration),
    #[error(transparent)]
    Read(E),
}

/// A response body read piece by piece (a reqwest response, the Docker Engine's raw
/// connection).
pub(crate) trait ChunkSource {
    type Error: std::error::Error;
    /// The next piece, `None` at the end of the body.
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<bytes::Bytes>, Self::Error>> + Send;
}

impl ChunkSource for reqwest::Response {
    type Error = reqwest::Error;
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<bytes::Bytes>, reqwest::Error>> + Send
    {
        self.chunk()
    }
}

/// The one bounded read of every HTTP response m4watch reads (issue 25): pieces are
/// read until the body ends, at most `cap` bytes are kept, and the whole read stops at
/// `deadline`, whatever the peer does (an endless body, a trickle). On either bound the
/// caller drops `src` and with it the connection; nothing more is read.
pub(crate) async fn read_bounded<S: ChunkSource + Send>(
    src: &mut S,
    cap: usize,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, BodyError<S::Error>> {
    let read = async {
        let mut body = Vec::new();
        while let Some(c) = src.next_chunk().await.map_err(BodyError::Read)? {
            if body.len() + c.len() > cap {
                return Err(BodyError::TooLarge(cap));
            }
            body.extend_from_slice(&c);
        }
        Ok(body)
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or(Err(BodyError::Deadline(left)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An endless source of 4 KiB pieces, or a finite one.
    struct Pieces(Option<usize>);
    impl ChunkSource for Pieces {
        type Error = std::io::Error;
        async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, std::io::Error> {
            tokio::task::yield_now().await;
            match &mut self.0 {
                Some(0) => Ok(None),
                Some(n) => {
                    *n -= 1;
                    Ok(Some(bytes::Bytes::from(vec![b'x'; 4096])))
                }
                None => Ok(Some(bytes::Bytes::from(vec![b'x'; 4096]))),
            }
        }
    }

    /// Never answers.
    struct Silent;
    impl ChunkSource for Silent {
        type Error = std::io::Error;
        async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, std::io::Error> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_bounded_read_stops_at_the_cap_the_deadline_or_the_end() {
        let later = tokio::time::Instant::now() + Duration::from_secs(5);
        let body = read_bounded(&mut Pieces(Some(3)), 64 * 1024, later).await;
        assert_eq!(body.unwrap().len(), 3 * 4096);
        let endless = read_bounded(&mut Pieces(None), 64 * 1024, later).await;
        assert!(
            matches!(endless, Err(BodyError::TooLarge(65536))),
            "{endless:?}"
        );
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        let silent = read_bounded(&mut Silent, 64 * 1024, soon).await;
        assert!(matches!(silent, Err(BodyError::Deadline(_))), "{silent:?}");
    }
}
