//! Health probes, every cycle, all targets at once, each under its own timeout:
//!
//! - `http`: a GET to the URL; a 2xx answer is healthy;
//! - `tcp` ([`tcp`]): a connect (with TLS when asked), then optionally `send` and
//!   `expect`.
//!
//! Anything else, or no answer, is `m4watch_probe_success 0`. For TLS targets (https
//! URLs, `tcp` with `tls: true`) the leaf certificate's `notAfter` is exported
//! ([`cert`]). The probe collector itself succeeds when it ran, so one engine being
//! down is one label value, never a failed collection.

mod cert;
mod tcp;

use std::time::{Duration, Instant};

use super::{CollectError, Collector};
use crate::config::{ProbeKind, ProbeTarget, ProbesConfig};
use crate::model::{MetricDef, def};
use crate::store::views::Views;
use crate::store::{Family, Kind};

/// Every family this collector exports.
pub(crate) const PROBE_SUCCESS: MetricDef = def(
    "m4watch_probe_success",
    Kind::Gauge,
    &["target"],
    "1 if the target's health endpoint answered 2xx within its timeout, else 0.",
);

pub(crate) const PROBE_DURATION_SECONDS: MetricDef = def(
    "m4watch_probe_duration_seconds",
    Kind::Gauge,
    &["target"],
    "How long the last probe of a target took, until its answer, error or timeout, in seconds.",
);

pub(crate) const PROBE_HTTP_STATUS_CODE: MetricDef = def(
    "m4watch_probe_http_status_code",
    Kind::Gauge,
    &["target"],
    "HTTP status of the target's last answer; absent when it did not answer.",
);

pub(crate) const PROBE_TLS_CERTIFICATE_EXPIRY: MetricDef = def(
    "m4watch_probe_tls_certificate_expiry_timestamp_seconds",
    Kind::Gauge,
    &["target"],
    "When the certificate the target presented in its last TLS handshake (the leaf) expires, in Unix seconds; absent for targets without TLS and while no handshake succeeds.",
);

pub(crate) const METRICS: &[MetricDef] = &[
    PROBE_SUCCESS,
    PROBE_DURATION_SECONDS,
    PROBE_HTTP_STATUS_CODE,
    PROBE_TLS_CERTIFICATE_EXPIRY,
];

pub(crate) use crate::store::views::ProbeResult;

/// How one target is probed.
enum Prober {
    /// GET the URL with this client (shared, or the target's own with its CA file).
    Http(reqwest::Client),
    Tcp(tcp::TcpProbe),
}

/// What one probe found, beside the view's [`ProbeResult`].
struct Outcome {
    success: bool,
    http_status_code: Option<u16>,
    error: Option<String>,
    /// The leaf certificate's notAfter, Unix seconds, when a TLS handshake succeeded.
    tls_expiry: Option<f64>,
}

/// Probes every configured target each cycle.
pub(crate) struct ProbeCollector {
    /// Built only for configured targets: a TLS-capable client loads the system's CA
    /// store (about 1 MiB resident), which the default config never needs.
    probers: Vec<(ProbeTarget, Prober)>,
    /// The last round, published as the store's probes view.
    latest: Option<std::sync::Arc<Vec<ProbeResult>>>,
}

/// An HTTP client for the probes: the leaf certificate kept for its expiry, and the
/// CAs of `ca_file` trusted beside the platform's.
fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, CollectError> {
    let mut b = crate::tls::http_client()
        .user_agent(concat!("m4watch/", env!("CARGO_PKG_VERSION")))
        .tls_info(true);
    if let Some(path) = ca_file {
        let certs = crate::tls::read_ca_file(path).map_err(|e| CollectError(e.to_string()))?;
        let certs = certs
            .iter()
            .map(|c| reqwest::Certificate::from_der(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CollectError(format!("{}: {e}", path.display())))?;
        b = b.tls_certs_merge(certs);
    }
    b.build()
        .map_err(|e| CollectError(format!("cannot build the HTTP client: {e}")))
}

impl ProbeCollector {
    pub(crate) fn new(cfg: &ProbesConfig) -> Result<Self, CollectError> {
        let mut shared: Option<reqwest::Client> = None;
        let mut probers = Vec::with_capacity(cfg.targets.len());
        for t in &cfg.targets {
            let p = match (t.kind, &t.tls_ca_file) {
                (ProbeKind::Tcp, _) => Prober::Tcp(tcp::TcpProbe::new(t)?),
                (ProbeKind::Http, Some(ca)) => Prober::Http(http_client(Some(ca))?),
                (ProbeKind::Http, None) => Prober::Http(match &shared {
                    Some(c) => c.clone(),
                    None => shared.insert(http_client(None)?).clone(),
                }),
            };
            probers.push((t.clone(), p));
        }
        Ok(ProbeCollector {
            probers,
            latest: None,
        })
    }
}

/// Most bytes of a probed body read (issue 25): a health endpoint answers a few
/// bytes; past this the target has answered, the rest is left unread and the
/// connection dropped.
pub(crate) const MAX_PROBE_BODY: usize = 1024 * 1024;

/// One probe of one target, timed.
async fn probe(t: &ProbeTarget, p: &Prober) -> (ProbeResult, Option<f64>) {
    let started = Instant::now();
    let o = match p {
        Prober::Http(client) => http_probe(client, t, started).await,
        Prober::Tcp(tcp) => tcp.run().await,
    };
    let took: Duration = started.elapsed();
    let result = ProbeResult {
        target: t.name.clone(),
        success: o.success,
        duration_seconds: took.as_secs_f64(),
        http_status_code: o.http_status_code,
        error: o.error,
    };
    (result, o.tls_expiry)
}

async fn http_probe(client: &reqwest::Client, t: &ProbeTarget, started: Instant) -> Outcome {
    let deadline = tokio::time::Instant::from_std(started) + t.timeout.get();
    let timed_out = || format!("timed out after {:?}", t.timeout.get());
    let outcome = client.get(&t.url).timeout(t.timeout.get()).send().await;
    let mut tls_expiry = None;
    let (success, code, error) = match outcome {
        Ok(mut r) => {
            tls_expiry = r
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|i| i.peer_certificate())
                .and_then(cert::not_after)
                .map(|t| t as f64);
            let s = r.status();
            // The body too within the timeout, read at most to its cap.
            match crate::tls::read_bounded(&mut r, MAX_PROBE_BODY, deadline).await {
                Err(crate::tls::BodyError::Deadline(_)) => {
                    (false, Some(s.as_u16()), Some(timed_out()))
                }
                Err(crate::tls::BodyError::Read(e)) if e.is_timeout() => {
                    (false, Some(s.as_u16()), Some(timed_out()))
                }
                Err(crate::tls::BodyError::Read(e)) => {
                    (false, Some(s.as_u16()), Some(one_line(&e)))
                }
                Ok(_) | Err(crate::tls::BodyError::TooLarge(_)) => {
                    let err = (!s.is_success()).then(|| format!("HTTP {s}"));
                    (s.is_success(), Some(s.as_u16()), err)
                }
            }
        }
        Err(e) if e.is_timeout() => (false, None, Some(timed_out())),
        Err(e) => (false, None, Some(one_line(&e))),
    };
    Outcome {
        success,
        http_status_code: code,
        error,
        tls_expiry,
    }
}

/// The error and its causes on one line ("error sending request: connection refused").
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The families of one round of probes: each result beside its certificate's expiry.
fn families(results: &[(ProbeResult, Option<f64>)]) -> Vec<Family> {
    let mut success = Family::new(&PROBE_SUCCESS);
    let mut duration = Family::new(&PROBE_DURATION_SECONDS);
    let mut status = Family::new(&PROBE_HTTP_STATUS_CODE);
    let mut expiry = Family::new(&PROBE_TLS_CERTIFICATE_EXPIRY);
    for (r, not_after) in results {
        let l = [("target", r.target.as_str())];
        success.push(l, f64::from(u8::from(r.success)));
        duration.push(l, r.duration_seconds);
        if let Some(c) = r.http_status_code {
            status.push(l, f64::from(c));
        }
        if let Some(t) = not_after {
            expiry.push(l, *t);
        }
    }
    vec![success, duration, status, expiry]
}

impl Collector for ProbeCollector {
    fn name(&self) -> &'static str {
        super::CollectorKind::Probes.name()
    }

    fn publish_view(&self, views: &Views) {
        views.probes.set(self.latest.clone());
    }

    async fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        let results =
            futures_util::future::join_all(self.probers.iter().map(|(t, p)| probe(t, p))).await;
        for (r, _) in results.iter().filter(|(r, _)| !r.success) {
            tracing::debug!(target = %r.target, error = ?r.error, "probe failed");
        }
        let fams = families(&results);
        self.latest = Some(std::sync::Arc::new(
            results.into_iter().map(|(r, _)| r).collect(),
        ));
        Ok(fams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_is_absent_when_nothing_answered() {
        let text = crate::store::encode(&families(&[
            (
                ProbeResult {
                    target: "risk".into(),
                    success: true,
                    duration_seconds: 0.002,
                    http_status_code: Some(200),
                    error: None,
                },
                Some(1_796_639_400.0),
            ),
            (
                ProbeResult {
                    target: "ml".into(),
                    success: false,
                    duration_seconds: 2.0,
                    http_status_code: None,
                    error: Some("timed out".into()),
                },
                None,
            ),
        ]));
        assert!(text.contains(
            "m4watch_probe_tls_certificate_expiry_timestamp_seconds{target=\"risk\"} 1796639400\n"
        ));
        assert!(
            !text.contains("m4watch_probe_tls_certificate_expiry_timestamp_seconds{target=\"ml\"}")
        );
        assert!(text.contains("m4watch_probe_success{target=\"risk\"} 1\n"));
        assert!(text.contains("m4watch_probe_success{target=\"ml\"} 0\n"));
        assert!(text.contains("m4watch_probe_http_status_code{target=\"risk\"} 200\n"));
        assert!(!text.contains("m4watch_probe_http_status_code{target=\"ml\"}"));
        assert!(text.contains("m4watch_probe_duration_seconds{target=\"ml\"} 2\n"));
    }
}
