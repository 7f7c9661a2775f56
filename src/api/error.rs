//! The JSON error body every API route answers with: `{"error": ..., "detail": ...}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: a status, a short machine-readable kind, and a sentence for people.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    detail: &'a str,
}

/// The error body as the OpenAPI spec describes it (what [`ApiError`] serialises to).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// Short machine-readable kind: `bad_request`, `unauthorized`, `not_found`, ...
    pub error: String,
    /// A sentence for people.
    pub detail: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }

    /// 400: the request body or query is wrong.
    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 404: nothing by that id.
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 503: the data directory does not take writes (disk full, read-only, permission
    /// denied, moved or replaced): what was asked is not durable, so it is not
    /// acknowledged. The sender retries; Prometheus does on its own.
    pub(crate) fn storage(fault: &crate::persist::storage::StorageFault) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("not stored, retry later: {fault}"),
        )
    }

    /// 409: the request conflicts with the current state.
    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", detail)
    }
}

/// The `error` kind of a status: `bad_request`, `payload_too_large`, ...
pub(crate) fn kind_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "client_error",
    }
}

impl ApiError {
    /// An extractor's rejection: 413 for a body over the limit and 415 for a missing or
    /// wrong content type keep their status; every other malformed request is a 400.
    pub(crate) fn rejected(status: StatusCode, text: String) -> Self {
        let status = match status {
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => status,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, kind_of(status), text)
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::rejected(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::rejected(e.status(), e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(Body {
            error: self.error,
            detail: &self.detail,
        });
        (self.status, body).into_response()
    }
}
