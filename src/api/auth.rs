//! Bearer-token checks. Every state-changing route sits behind [`require_write`];
//! reads sit behind [`require_read`], which lets everything through unless
//! `api.read_token` is set (or a `basic_auth_users` login vouched for the request:
//! [`super::web`]).
//!
//! The tokens live in [`Access`], which a reload swaps at once: a rotated `api.token`
//! is in force as soon as the reload answers, and the old one is refused.

use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::config::{ApiConfig, Secret};

/// The bearer tokens in force.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tokens {
    /// `api.token`: writes, and reads too.
    pub token: Option<Secret>,
    /// `api.read_token`: reads.
    pub read_token: Option<Secret>,
}

/// The tokens in force, swapped whole by a reload.
#[derive(Debug)]
pub(crate) struct Access(RwLock<Arc<Tokens>>);

impl Access {
    pub(crate) fn new(api: &ApiConfig) -> Access {
        Access(RwLock::new(Arc::new(Tokens::of(api))))
    }

    /// The tokens now.
    pub(crate) fn tokens(&self) -> Arc<Tokens> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `api`'s tokens in force; true when they differ from the ones before.
    pub(crate) fn set(&self, api: &ApiConfig) -> bool {
        let next = Tokens::of(api);
        let mut cur = self.0.write().unwrap_or_else(|e| e.into_inner());
        let changed = cur.token != next.token || cur.read_token != next.read_token;
        *cur = Arc::new(next);
        changed
    }

    /// Whether `headers` carry a bearer token in force (write or read).
    pub(crate) fn any_bearer(&self, headers: &HeaderMap) -> bool {
        let t = self.tokens();
        [&t.token, &t.read_token]
            .into_iter()
            .flatten()
            .any(|tok| check(headers, tok).is_ok())
    }
}

impl Tokens {
    fn of(api: &ApiConfig) -> Tokens {
        Tokens {
            token: api.token.clone(),
            read_token: api.read_token.clone(),
        }
    }
}

/// Set on a request by the web gate when a `basic_auth_users` login checked out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BasicLogin;

/// Middleware for state-changing routes: needs `Authorization: Bearer <api.token>`.
/// With no token configured every such request is refused: m4watch never accepts
/// unauthenticated writes.
pub(crate) async fn require_write(
    State(s): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &s.access.tokens().token {
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
/// accepted for reads too, and so is a `basic_auth_users` login.
pub(crate) async fn require_read(
    State(s): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = s.access.tokens();
    if let Some(read) = &tokens.read_token
        && req.extensions().get::<BasicLogin>().is_none()
    {
        let write_ok = tokens
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
