//! `GET /api/v1/optimization/stats`: the original optimizer's "comprehensive
//! statistics" (seed 000), answered with what m4watch counts: uptime, collector runs,
//! alerts, recommendations, the performance score and the latency ingest.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::status::{active_alerts, health_with};
use crate::health::HealthState;

/// Read routes; mounted behind the read check by [`super::api`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(optimization_stats))
}

/// One collector's runs since start.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CollectionStats {
    pub runs: u64,
    pub failures: u64,
    /// Whether the last run succeeded.
    pub last_success: bool,
    pub last_duration_seconds: f64,
    /// Unix time of the last successful run; absent until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_unix: Option<f64>,
}

/// Collector runs since start.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Collections {
    pub runs_total: u64,
    pub failures_total: u64,
    /// Per collector that has run at least once.
    pub collectors: BTreeMap<String, CollectionStats>,
}

/// Alerts now (the rule engine's and those Prometheus posted), the watchdog left out.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertStats {
    /// Firing alerts per severity.
    pub firing: BTreeMap<String, u64>,
    /// Pending alerts (condition true, `for:` not yet over) per severity.
    pub pending: BTreeMap<String, u64>,
    /// Alerting rules the engine runs; absent when the rule engine is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<u64>,
}

/// The recommendations now (`/api/v1/monitoring/performance/optimizations`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecommendationStats {
    pub total: u64,
    /// Per severity (`info`, `warning`, `critical`).
    pub by_severity: BTreeMap<String, u64>,
    /// Per kind of check.
    pub by_kind: BTreeMap<String, u64>,
    /// Checks that could not run for want of data.
    pub skipped: u64,
}

/// The latency ingest since start; the JSON view at
/// `/api/v1/monitoring/trading/metrics` has the figures per operation and window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TradingStats {
    /// Latency observations since start, all operations together.
    pub observations_total: u64,
    /// Timer series (operation and label set) tracked now.
    pub operations: u64,
    /// Series of every StatsD type tracked now, and the most kept.
    pub series: u64,
    pub max_series: u64,
    /// Share (0..1) of the score's configured weight that had data.
    pub score_coverage_ratio: f64,
}

/// Body of `GET /api/v1/optimization/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OptimizationStats {
    pub version: &'static str,
    pub uptime_seconds: f64,
    /// Unix time m4watch started.
    pub started_at: f64,
    pub health: HealthState,
    pub collections: Collections,
    pub alerts: AlertStats,
    pub recommendations: RecommendationStats,
    /// The performance score (0..100); absent without enough data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance_score: Option<f64>,
    /// Absent when trading is disabled or before its first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trading: Option<TradingStats>,
}

/// Uptime, collector runs, alerts, recommendations, the performance score and the
/// latency ingest in one answer: the original optimizer's statistics, from what
/// m4watch counts (no figure it does not have is shown, none as 0).
#[utoipa::path(get, path = "/api/v1/optimization/stats", tag = "monitoring",
    responses(
        (status = 200, body = OptimizationStats),
        (status = 401, body = ErrorBody),
        (status = 500, description = "working out the recommendations failed", body = ErrorBody),
    ))]
async fn optimization_stats(
    State(s): State<Arc<AppState>>,
) -> Result<Json<OptimizationStats>, ApiError> {
    let advice = super::advice::current(&s).await?;
    let mut recommendations = RecommendationStats {
        total: advice.recommendations.len() as u64,
        by_severity: BTreeMap::new(),
        by_kind: BTreeMap::new(),
        skipped: advice.skipped.len() as u64,
    };
    for r in &advice.recommendations {
        let severity = serde_json::to_value(r.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *recommendations.by_severity.entry(severity).or_insert(0) += 1;
        *recommendations
            .by_kind
            .entry(r.kind.to_string())
            .or_insert(0) += 1;
    }

    let runs = s.store.collectors();
    let collections = Collections {
        runs_total: runs.values().map(|r| r.runs).sum(),
        failures_total: runs.values().map(|r| r.failures).sum(),
        collectors: runs
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    CollectionStats {
                        runs: r.runs,
                        failures: r.failures,
                        last_success: r.success,
                        last_duration_seconds: r.duration_seconds,
                        last_success_unix: r.last_success_unix,
                    },
                )
            })
            .collect(),
    };

    let counts = active_alerts(&s);
    let by_state = |state: &str| -> BTreeMap<String, u64> {
        counts
            .iter()
            .filter(|((st, _), _)| *st == state)
            .map(|((_, severity), n)| (severity.clone(), *n))
            .collect()
    };
    let alerts = AlertStats {
        firing: by_state("firing"),
        pending: by_state("pending"),
        rules: s.rules.as_ref().map(|r| r.alerting_rules().len() as u64),
    };

    let view = s.store.views().trading.get();
    let trading = view.as_deref().map(|v| TradingStats {
        observations_total: v.operations.iter().map(|o| o.count).sum(),
        operations: v.operations.len() as u64,
        series: v.series as u64,
        max_series: v.max_series as u64,
        score_coverage_ratio: v.score.coverage_ratio,
    });
    let uptime = s.started.elapsed().as_secs_f64();
    Ok(Json(OptimizationStats {
        version: crate::store::BuildInfo::current().version,
        uptime_seconds: uptime,
        started_at: crate::clock::unix_now() - uptime,
        health: health_with(&s, &counts).status,
        collections,
        alerts,
        recommendations,
        performance_score: view.as_deref().and_then(|v| v.score.score),
        trading,
    }))
}
