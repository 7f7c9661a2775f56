//! The system-health verdict: a pure function from collector runs, engine probes,
//! firing alerts and the performance score to `healthy`, `degraded` or `critical`,
//! with the reasons. The API gathers the inputs and serves the answer
//! (`/api/v1/monitoring/system/health`, the status page, the dashboard summary).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::alert::{Severity, State, StoredAlert, is_watchdog};
use crate::persist::storage::StorageFault;
use crate::store::CollectorStatus;
use crate::store::views::ProbeResult;

/// Below this performance score the system is degraded (the shipped
/// `PerformanceScoreLow` rule's threshold).
pub(crate) const SCORE_DEGRADED_BELOW: f64 = 85.0;
/// Below this performance score the system is critical.
pub(crate) const SCORE_CRITICAL_BELOW: f64 = 50.0;

/// Overall state, worst reason first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthState {
    Healthy,
    Degraded,
    Critical,
}

/// One reason the system is not healthy.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthReason {
    /// `storage_failing`, `collector_failing`, `probe_failing`, `alerts_firing`,
    /// `score_low`.
    pub kind: &'static str,
    pub severity: HealthState,
    pub detail: String,
}

/// Body of `GET /api/v1/monitoring/system/health`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SystemHealth {
    pub status: HealthState,
    pub reasons: Vec<HealthReason>,
    /// Firing alerts per severity label.
    pub firing_alerts: BTreeMap<String, u64>,
    /// The performance score (0..100); absent when no component has data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance_score: Option<f64>,
    pub collectors: BTreeMap<String, CollectorStatus>,
}

/// Pending and firing alerts counted by state (`pending`, `firing`) and severity: the
/// health verdict's and the dashboard summary's input. A watchdog alert (the shipped
/// `Watchdog` rule, [`crate::model::alert::WATCHDOG_LABEL`]) fires all the time on
/// purpose, to prove the pipeline works: it is no problem and is not counted.
pub(crate) fn active_counts(alerts: &[StoredAlert]) -> BTreeMap<(&'static str, String), u64> {
    let mut out = BTreeMap::new();
    for a in alerts.iter().filter(|a| !is_watchdog(&a.labels)) {
        let state = match a.state {
            State::Firing => "firing",
            State::Pending => "pending",
            _ => continue,
        };
        *out.entry((state, a.severity.to_string())).or_insert(0) += 1;
    }
    out
}

/// Works out the system's health from collector runs, engine probes, firing alerts
/// and the score. A failing collector, a failing probe or a firing warning degrades; a
/// firing critical or emergency alert, or a score below [`SCORE_CRITICAL_BELOW`],
/// makes it critical. Firing info alerts and an absent score (no data) change nothing.
pub(crate) fn system_health_of(
    collectors: BTreeMap<String, CollectorStatus>,
    probes: &[ProbeResult],
    firing_alerts: BTreeMap<String, u64>,
    performance_score: Option<f64>,
) -> SystemHealth {
    let mut reasons = Vec::new();
    for (name, c) in &collectors {
        if !c.success {
            reasons.push(HealthReason {
                kind: "collector_failing",
                severity: HealthState::Degraded,
                detail: format!(
                    "collector {name} failed its last run: {}",
                    c.last_error.as_deref().unwrap_or("no detail")
                ),
            });
        }
    }
    for p in probes.iter().filter(|p| !p.success) {
        reasons.push(HealthReason {
            kind: "probe_failing",
            severity: HealthState::Degraded,
            detail: format!(
                "probe {} failed: {}",
                p.target,
                p.error.as_deref().unwrap_or("no detail")
            ),
        });
    }
    // Worst severity first, so the reasons read in order of urgency.
    let mut by_severity: Vec<(Severity, &String, &u64)> = firing_alerts
        .iter()
        .map(|(word, n)| (Severity::of_label(Some(word)), word, n))
        .collect();
    by_severity.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (severity, word, n) in by_severity {
        let level = match severity {
            Severity::Emergency | Severity::Critical => HealthState::Critical,
            Severity::Warning => HealthState::Degraded,
            Severity::Info => continue,
        };
        reasons.push(HealthReason {
            kind: "alerts_firing",
            severity: level,
            detail: format!("{n} {word} alert(s) firing"),
        });
    }
    if let Some(score) = performance_score {
        let level = if score < SCORE_CRITICAL_BELOW {
            Some((HealthState::Critical, SCORE_CRITICAL_BELOW))
        } else if score < SCORE_DEGRADED_BELOW {
            Some((HealthState::Degraded, SCORE_DEGRADED_BELOW))
        } else {
            None
        };
        if let Some((level, below)) = level {
            reasons.push(HealthReason {
                kind: "score_low",
                severity: level,
                detail: format!("performance score {score:.1} is below {below}"),
            });
        }
    }
    reasons.sort_by_key(|r| std::cmp::Reverse(r.severity));
    SystemHealth {
        status: reasons
            .iter()
            .map(|r| r.severity)
            .max()
            .unwrap_or(HealthState::Healthy),
        reasons,
        firing_alerts,
        performance_score,
        collectors,
    }
}

/// Adds the storage verdict to `h`: a data directory that takes no writes (a standing
/// [`StorageFault`]) is critical, first of the reasons: write requests are refused
/// and nothing new survives a restart.
pub(crate) fn with_storage(mut h: SystemHealth, fault: Option<StorageFault>) -> SystemHealth {
    if let Some(f) = fault {
        h.reasons.insert(
            0,
            HealthReason {
                kind: "storage_failing",
                severity: HealthState::Critical,
                detail: format!("the data directory takes no writes: {f}"),
            },
        );
        h.status = HealthState::Critical;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ok: bool) -> CollectorStatus {
        CollectorStatus {
            success: ok,
            last_error: (!ok).then(|| "boom".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn health_takes_the_worst_reason() {
        let ok = system_health_of(
            [("hardware".to_string(), run(true))].into(),
            &[],
            BTreeMap::new(),
            Some(95.0),
        );
        assert_eq!(ok.status, HealthState::Healthy);
        assert!(ok.reasons.is_empty());

        let degraded = system_health_of(
            [("hardware".to_string(), run(false))].into(),
            &[],
            [("info".to_string(), 3)].into(),
            Some(95.0),
        );
        assert_eq!(degraded.status, HealthState::Degraded);
        assert_eq!(degraded.reasons.len(), 1);
        assert!(degraded.reasons[0].detail.contains("boom"));

        let critical = system_health_of(
            BTreeMap::new(),
            &[],
            [("warning".to_string(), 1), ("critical".to_string(), 2)].into(),
            Some(70.0),
        );
        assert_eq!(critical.status, HealthState::Critical);
        assert_eq!(critical.reasons[0].severity, HealthState::Critical);
        assert_eq!(critical.reasons.len(), 3);

        let low = system_health_of(BTreeMap::new(), &[], BTreeMap::new(), Some(40.0));
        assert_eq!(low.status, HealthState::Critical);
        assert_eq!(low.reasons[0].kind, "score_low");
        assert_eq!(low.reasons[0].detail, "performance score 40.0 is below 50");

        // No score (no data) is no reason.
        let quiet = system_health_of(BTreeMap::new(), &[], BTreeMap::new(), None);
        assert_eq!(quiet.status, HealthState::Healthy);
    }

    #[test]
    fn emergency_alerts_are_critical_and_info_alerts_change_nothing() {
        let h = system_health_of(
            BTreeMap::new(),
            &[],
            [("emergency".to_string(), 1), ("info".to_string(), 4)].into(),
            None,
        );
        assert_eq!(h.status, HealthState::Critical);
        assert_eq!(h.reasons.len(), 1);
        assert_eq!(h.reasons[0].detail, "1 emergency alert(s) firing");
    }

    /// The always-firing Watchdog is no problem: it is not counted and leaves the
    /// system healthy, while a real warning beside it still degrades.
    #[test]
    fn the_watchdog_is_not_counted_as_a_firing_alert() {
        let alert = |name: &str, severity: Severity, watchdog: bool| {
            let mut labels = vec![("alertname".to_string(), name.to_string())];
            if watchdog {
                labels.push(("m4watch_watchdog".into(), "true".into()));
            }
            StoredAlert {
                source: crate::model::alert::AlertSource::Rules,
                expires_at: None,
                generator_url: None,
                id: name.into(),
                alertname: name.into(),
                group: "g".into(),
                severity,
                state: State::Firing,
                labels,
                annotations: Vec::new(),
                value: 1.0,
                active_at: 0,
                fired_at: Some(0),
                resolved_at: None,
                ack: None,
            }
        };
        // Even were its severity a warning, the label keeps it out.
        let only = active_counts(&[alert("Watchdog", Severity::Warning, true)]);
        assert!(only.is_empty(), "{only:?}");
        let h = system_health_of(BTreeMap::new(), &[], firing_by(&only), None);
        assert_eq!(h.status, HealthState::Healthy);
        let both = active_counts(&[
            alert("Watchdog", Severity::Info, true),
            alert("MemoryUsedHigh", Severity::Warning, false),
        ]);
        assert_eq!(both, [(("firing", "warning".to_string()), 1)].into());
        let h = system_health_of(BTreeMap::new(), &[], firing_by(&both), None);
        assert_eq!(h.status, HealthState::Degraded);
    }

    fn firing_by(c: &BTreeMap<(&'static str, String), u64>) -> BTreeMap<String, u64> {
        c.iter().map(|((_, sev), n)| (sev.clone(), *n)).collect()
    }

    #[test]
    fn a_failing_probe_degrades_health() {
        let probe = |target: &str, success: bool| ProbeResult {
            target: target.into(),
            success,
            duration_seconds: 0.01,
            http_status_code: success.then_some(200),
            error: (!success).then(|| "connection refused".to_string()),
        };
        let h = system_health_of(
            BTreeMap::new(),
            &[probe("risk", false), probe("ml", true)],
            BTreeMap::new(),
            Some(99.0),
        );
        assert_eq!(h.status, HealthState::Degraded);
        assert_eq!(h.reasons.len(), 1);
        assert_eq!(h.reasons[0].kind, "probe_failing");
        assert_eq!(h.reasons[0].detail, "probe risk failed: connection refused");
    }
}
