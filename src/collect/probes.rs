//! HTTP health probes: a GET to each configured URL every cycle, all targets at once,
//! each under its own timeout. A 2xx answer is healthy; anything else, or no answer, is
//! `m4watch_probe_success 0`. The probe collector itself succeeds when it ran, so one
//! engine being down is one label value, never a failed collection.

use std::time::{Duration, Instant};

use super::{CollectError, Collector};
use crate::config::{ProbeTarget, ProbesConfig};
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

pub(crate) const METRICS: &[MetricDef] = &[
    PROBE_SUCCESS,
    PROBE_DURATION_SECONDS,
    PROBE_HTTP_STATUS_CODE,
];

pub(crate) use crate::store::views::ProbeResult;

/// Probes every configured target each cycle.
pub(crate) struct ProbeCollector {
    /// Built only when there is something to probe: a TLS-capable client loads the
    /// system's CA store (about 1 MiB resident), which the default config never needs.
    client: Option<reqwest::Client>,
    targets: Vec<ProbeTarget>,
    /// The last round, published as the store's probes view.
    latest: Option<std::sync::Arc<Vec<ProbeResult>>>,
}

impl ProbeCollector {
    pub(crate) fn new(cfg: &ProbesConfig) -> Result<Self, CollectError> {
        let client = if cfg.targets.is_empty() {
            None
        } else {
            Some(
                crate::tls::http_client()
                    .user_agent(concat!("m4watch/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| CollectError(format!("cannot build the HTTP client: {e}")))?,
            )
        };
        Ok(ProbeCollector {
            client,
            targets: cfg.targets.clone(),
            latest: None,
        })
    }
}

/// Most bytes of a probed body read (issue 25): a health endpoint answers a few
/// bytes; past this the target has answered, the rest is left unread and the
/// connection dropped.
pub(crate) const MAX_PROBE_BODY: usize = 1024 * 1024;

async fn probe(client: &reqwest::Client, t: &ProbeTarget) -> ProbeResult {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started) + t.timeout.get();
    let timed_out = || format!("timed out after {:?}", t.timeout.get());
    let outcome = client.get(&t.url).timeout(t.timeout.get()).send().await;
    let (success, code, error) = match outcome {
        Ok(mut r) => {
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
    let took: Duration = started.elapsed();
    ProbeResult {
        target: t.name.clone(),
        success,
        duration_seconds: took.as_secs_f64(),
        http_status_code: code,
        error,
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

/// The families of one round of probes.
pub(crate) fn families(results: &[ProbeResult]) -> Vec<Family> {
    let mut success = Family::new(&PROBE_SUCCESS);
    let mut duration = Family::new(&PROBE_DURATION_SECONDS);
    let mut status = Family::new(&PROBE_HTTP_STATUS_CODE);
    for r in results {
        let l = [("target", r.target.as_str())];
        success.push(l, f64::from(u8::from(r.success)));
        duration.push(l, r.duration_seconds);
        if let Some(c) = r.http_status_code {
            status.push(l, f64::from(c));
        }
    }
    vec![success, duration, status]
}

impl Collector for ProbeCollector {
    fn name(&self) -> &'static str {
        super::CollectorKind::Probes.name()
    }

    fn publish_view(&self, views: &Views) {
        views.probes.set(self.latest.clone());
    }

    async fn collect(&mut self) -> Result<Vec<Family>, CollectError> {
        let results = match &self.client {
            Some(client) => {
                futures_util::future::join_all(self.targets.iter().map(|t| probe(client, t))).await
            }
            None => Vec::new(),
        };
        for r in results.iter().filter(|r| !r.success) {
            tracing::debug!(target = %r.target, error = ?r.error, "probe failed");
        }
        let fams = families(&results);
        self.latest = Some(std::sync::Arc::new(results));
        Ok(fams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_is_absent_when_nothing_answered() {
        let text = crate::store::encode(&families(&[
            ProbeResult {
                target: "risk".into(),
                success: true,
                duration_seconds: 0.002,
                http_status_code: Some(200),
                error: None,
            },
            ProbeResult {
                target: "ml".into(),
                success: false,
                duration_seconds: 2.0,
                http_status_code: None,
                error: Some("timed out".into()),
            },
        ]));
        assert!(text.contains("m4watch_probe_success{target=\"risk\"} 1\n"));
        assert!(text.contains("m4watch_probe_success{target=\"ml\"} 0\n"));
        assert!(text.contains("m4watch_probe_http_status_code{target=\"risk\"} 200\n"));
        assert!(!text.contains("m4watch_probe_http_status_code{target=\"ml\"}"));
        assert!(text.contains("m4watch_probe_duration_seconds{target=\"ml\"} 2\n"));
    }
}
