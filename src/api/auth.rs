//! Bearer-token checks. Every state-changing route sits behind [`require_write`];
//! reads sit behind [`require_read`], which lets everything through unless
//! `api.read_token` is set.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::config::Secret;

/// Middleware for state-changing routes: needs `Authorization: Bearer <api.token>`.
/// With no token configured every such request is refused: m4watch never accepts
/// unauthenticated writes.
pub(crate) async fn require_write(
    State(s): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &s.config.api.token {
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "state-changing requests are disabled: set api.token (or M4WATCH_API_TOKEN)",
        )),
        Some(token) => {
            check(req.headers(), token)?;
            Ok(next.run(req).await)
        }
    }
}

/// Middleware for reads: open unless `api.read_token` is set; the write token is
/// accepted for reads too.
pub(crate) async fn require_read(
    State(s): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(read) = &s.config.api.read_token {
        let write_ok = s
            .config
            .api
            .token
            .as_ref()
            .is_some_and(|t| check(req.headers(), t).is_ok());
        if !write_ok {
            check(req.headers(), read)?;
        }
    }
    Ok(next.run(req).await)
}

fn check(headers: &HeaderMap, token: &Secret) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing Authorization: Bearer <token> header",
            )
        })?;
    if constant_time_eq(presented.trim().as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid bearer token",
        ))
    }
}

/// The credentials of a `Bearer` header value; the scheme is case-insensitive
/// (RFC 9110 §11.1), so `bearer x` and `BEARER x` are the same as `Bearer x`.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

/// Compares without an early exit, so response time does not leak a token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check() {
        let t = Secret::new("abc123");
        let mut h = HeaderMap::new();
        assert_eq!(check(&h, &t).unwrap_err().status, StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, "Bearer abc124".parse().unwrap());
        assert_eq!(check(&h, &t).unwrap_err().detail, "invalid bearer token");
        h.insert(header::AUTHORIZATION, "Bearer abc123".parse().unwrap());
        assert!(check(&h, &t).is_ok());
        h.insert(header::AUTHORIZATION, "Basic abc123".parse().unwrap());
        assert!(check(&h, &t).is_err());
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            h.insert(
                header::AUTHORIZATION,
                format!("{scheme} abc123").parse().unwrap(),
            );
            assert!(check(&h, &t).is_ok(), "{scheme}");
        }
        h.insert(header::AUTHORIZATION, "Bearerabc123".parse().unwrap());
        assert!(check(&h, &t).is_err());
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sama"));
        assert!(!constant_time_eq(b"same", b"samey"));
    }
}
