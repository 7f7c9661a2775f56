//! `GET /api/v1/monitoring/containers/metrics`: the container collector's latest
//! cycle, one typed object per container (fields absent when unknown).

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::error::ApiError;
use crate::store::views::containers::Report;

/// Read routes; mounted behind the read check by [`super::api`].
pub(crate) fn reads() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The latest report; 503 while the Engine is unreachable or before the first cycle,
/// 404 when the collector is disabled.
#[utoipa::path(get, path = "/api/v1/monitoring/containers/metrics", tag = "containers",
    responses(
        (status = 200, body = Report),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, description = "the collector is disabled", body = super::error::ErrorBody),
        (status = 503, description = "the Engine is unreachable or has not been read yet", body = super::error::ErrorBody),
    ))]
pub(crate) async fn metrics(State(s): State<Arc<AppState>>) -> Result<Json<Report>, ApiError> {
    if !s.config.containers.enabled {
        return Err(ApiError::not_found(
            "the containers collector is disabled (containers.enabled: false)",
        ));
    }
    let unavailable = |detail: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "docker_unavailable",
            detail,
        )
    };
    match s.store.collectors().get("containers") {
        None => Err(unavailable("no container collection has run yet".into())),
        Some(st) if !st.success => {
            Err(unavailable(st.last_error.clone().unwrap_or_else(|| {
                "the last container collection failed".into()
            })))
        }
        Some(_) => s
            .store
            .views()
            .containers
            .get()
            .map(|r| Json((*r).clone()))
            .ok_or_else(|| unavailable("no container collection has run yet".into())),
    }
}
