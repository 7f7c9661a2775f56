//! `GET /api/v1/monitoring/performance/optimizations`: the recommendations.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::advise::Advice;

/// Read routes; mounted behind the read check by [`super::api`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(optimizations))
}

/// Recommendations, worst first, each with its evidence and a suggested action, and
/// the checks skipped for want of data. m4watch only advises: it changes nothing.
#[utoipa::path(get, path = "/api/v1/monitoring/performance/optimizations", tag = "monitoring",
    responses(
        (status = 200, body = Advice),
        (status = 401, body = ErrorBody),
        (status = 500, description = "working out the recommendations failed", body = ErrorBody),
    ))]
async fn optimizations(State(s): State<Arc<AppState>>) -> Result<Json<Advice>, ApiError> {
    current(&s).await.map(Json)
}

/// The recommendations now, worked out off the async workers (the ring read and family
/// merge are short, but blocking).
pub(super) async fn current(s: &AppState) -> Result<Advice, ApiError> {
    let advisor = Arc::clone(&s.advisor);
    tokio::task::spawn_blocking(move || advisor.current())
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("working out the recommendations failed: {e}"),
            )
        })
}
