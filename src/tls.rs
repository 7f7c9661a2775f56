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
