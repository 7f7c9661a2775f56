//! The dashboard summary: everything a dashboard's first screen needs in one answer,
//! from the store, the alert state, the container report and the trading view.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ErrorBody;
use super::status::{active_alerts, health_with};
use crate::collect::hardware::apple::{ANE_UTILIZATION_ESTIMATE_RATIO, GPU_UTILIZATION_RATIO};
use crate::collect::hardware::{
    CPU_CLUSTER_UTILIZATION_RATIO, MEMORY_TOTAL_BYTES, MEMORY_USED_BYTES, POWER_WATTS,
    SYSTEM_POWER_WATTS, TEMPERATURE_CELSIUS, THERMAL_PRESSURE,
};
use crate::health::{HealthReason, HealthState};
use crate::store::index::Families;

/// Read routes; mounted behind the read check by [`super::api`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(dashboard_summary))
}

/// Hardware headline numbers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HardwareSummary {
    /// Mean utilisation per core type.
    pub cpu_utilization: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ane_utilization_estimate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_temperature_celsius: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermal_pressure: Option<String>,
}

/// Container headline numbers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ContainersSummary {
    pub running: usize,
    pub total: usize,
    pub unhealthy: Vec<String>,
}

/// Trading headline numbers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TradingSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance_score: Option<f64>,
    pub coverage_ratio: f64,
    pub operations: usize,
    /// Worst p99 over the shortest window, in milliseconds, with its operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_p99_operation: Option<String>,
}

/// Body of `GET /api/v1/monitoring/dashboard/summary`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DashboardSummary {
    pub generated_at: f64,
    pub health: HealthState,
    pub reasons: Vec<HealthReason>,
    /// Pending and firing alerts per state and severity (`firing/critical`: 2).
    pub alerts: BTreeMap<String, u64>,
    /// Absent when the hardware collector is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareSummary>,
    /// Absent when the container collector is off or has no report yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<ContainersSummary>,
    /// Absent when trading is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trading: Option<TradingSummary>,
    /// The five most severe recommendations (all of them at
    /// `/api/v1/monitoring/performance/optimizations`).
    pub recommendations: Vec<crate::advise::Recommendation>,
}

fn hardware_summary(f: &Families) -> HardwareSummary {
    let mem_total = f.value(MEMORY_TOTAL_BYTES.name, &[]);
    let mem_used = f.value(MEMORY_USED_BYTES.name, &[]);
    let rails = f.by_label(POWER_WATTS.name, "rail");
    // The whole-system rail where the platform has one, else the sum of the rails
    // (RAPL packages on Linux).
    let power = f
        .value(SYSTEM_POWER_WATTS.name, &[])
        .or_else(|| (!rails.is_empty()).then(|| rails.values().sum()));
    HardwareSummary {
        cpu_utilization: f.by_label(CPU_CLUSTER_UTILIZATION_RATIO.name, "type"),
        memory_used_ratio: match (mem_used, mem_total) {
            (Some(u), Some(t)) if t > 0.0 => Some(u / t),
            _ => None,
        },
        gpu_utilization: f.value(GPU_UTILIZATION_RATIO.name, &[]),
        ane_utilization_estimate: f.value(ANE_UTILIZATION_ESTIMATE_RATIO.name, &[]),
        power_watts: power,
        max_temperature_celsius: f
            .samples(TEMPERATURE_CELSIUS.name)
            .map(|(_, v)| v)
            .reduce(f64::max),
        thermal_pressure: f.state(THERMAL_PRESSURE.name, "state"),
    }
}

/// Everything a dashboard's first screen needs in one answer: health and its
/// reasons, alert counts, hardware, containers and trading headlines.
#[utoipa::path(get, path = "/api/v1/monitoring/dashboard/summary", tag = "monitoring",
    responses((status = 200, body = DashboardSummary), (status = 401, body = ErrorBody)))]
async fn dashboard_summary(State(s): State<Arc<AppState>>) -> Json<DashboardSummary> {
    // One merge of the store's families serves the headlines and the advice.
    let state = Arc::clone(&s);
    let (families, mut recommendations) = match tokio::task::spawn_blocking(move || {
        let families = Families::of(state.store.families());
        let advice = state.advisor.advise_on(&families);
        (families, advice.recommendations)
    })
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "working out the recommendations failed");
            (Families::of(s.store.families()), Vec::new())
        }
    };
    recommendations.truncate(5);
    let counts = active_alerts(&s);
    let health = health_with(&s, &counts);
    let alerts = counts
        .into_iter()
        .map(|((state, severity), n)| (format!("{state}/{severity}"), n))
        .collect();
    let containers = s
        .config
        .containers
        .enabled
        .then(|| s.store.views().containers.get())
        .flatten()
        .map(|r| ContainersSummary {
            running: r.containers.iter().filter(|c| c.up).count(),
            total: r.containers.len(),
            unhealthy: r
                .containers
                .iter()
                .filter(|c| c.health_status == "unhealthy")
                .map(|c| c.name.clone())
                .collect(),
        });
    let trading = s.store.views().trading.get().map(|view| {
        let first = view.windows.first().cloned().unwrap_or_default();
        let worst = view
            .operations
            .iter()
            .filter_map(|o| o.windows.get(&first).map(|w| (w.p99_ms, &o.operation)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        TradingSummary {
            performance_score: view.score.score,
            coverage_ratio: view.score.coverage_ratio,
            operations: view.operations.len(),
            worst_p99_ms: worst.map(|w| w.0),
            worst_p99_operation: worst.map(|w| w.1.clone()),
        }
    });
    Json(DashboardSummary {
        generated_at: crate::clock::unix_now(),
        health: health.status,
        reasons: health.reasons,
        alerts,
        hardware: s
            .config
            .hardware
            .enabled
            .then(|| hardware_summary(&families)),
        containers,
        trading,
        recommendations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::hardware::tests::fixture;

    #[test]
    fn summary_computes_ratios_only_from_known_values() {
        let h = hardware_summary(&fixture());
        assert_eq!(h.memory_used_ratio, Some(0.25));
        assert_eq!(h.power_watts, None);
        assert_eq!(h.max_temperature_celsius, None);
        assert_eq!(h.cpu_utilization["efficiency"], 0.9);
    }
}
