//! What the advice is made of: a recommendation with its evidence, a skipped check,
//! the whole answer; and `Out`, where each check writes what it found or why it
//! skipped.

use serde::Serialize;
use utoipa::ToSchema;

#[cfg(doc)]
use super::KINDS;

/// How urgent a recommendation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// In the published schema; no check raises it today.
    #[allow(dead_code)]
    Info,
    Warning,
    Critical,
}

/// One number behind a recommendation, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Evidence {
    /// The series (PromQL selector) or field the value was read from.
    pub series: String,
    pub value: f64,
    /// `ratio`, `seconds`, `bytes`, `seconds_per_second`, `cpus`.
    pub unit: &'static str,
    /// What the value is: `mean over 5m`, `current`, `target`.
    pub note: String,
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Recommendation {
    /// Stable id of the check: see [`KINDS`].
    pub kind: &'static str,
    pub severity: Severity,
    /// What it is about: a container name, a core type, the host.
    pub subject: String,
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// What a person should do; m4watch does none of it.
    pub action: String,
}

/// A check that could not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Skipped {
    pub kind: &'static str,
    pub reason: String,
}

/// Body of `GET /api/v1/monitoring/performance/optimizations`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Advice {
    /// Unix seconds.
    pub generated_at: f64,
    /// Worst first.
    pub recommendations: Vec<Recommendation>,
    pub skipped: Vec<Skipped>,
}

pub(super) fn ev(
    series: impl Into<String>,
    value: f64,
    unit: &'static str,
    note: impl Into<String>,
) -> Evidence {
    Evidence {
        series: series.into(),
        value,
        unit,
        note: note.into(),
    }
}

/// What the checks found so far: each check pushes its recommendations, or says why
/// it skipped.
pub(super) struct Out {
    pub(super) recs: Vec<Recommendation>,
    pub(super) skipped: Vec<Skipped>,
}

impl Out {
    pub(super) fn skip(&mut self, kind: &'static str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            kind,
            reason: reason.into(),
        });
    }
}
