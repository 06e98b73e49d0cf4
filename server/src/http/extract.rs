//! Request extractors: the admin credentials, checked before any body is read.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use revbloom::bearer::bearer_token;
use revbloom::tower::DEFAULT_MAX_HEADER_BYTES;

/// Proof that the request carries the admin token: take it as a handler argument and the
/// handler runs only for admins. Parsed by the same defensive bearer parser as the tower layer
/// (one header, bounded, `b64token`), compared in constant time (for equal lengths; a length
/// mismatch is refused without comparing, which reveals only the length of a 32+ byte random
/// token).
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers, DEFAULT_MAX_HEADER_BYTES)?;
        if bool::from(token.as_bytes().ct_eq(st.inner.admin_token.as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the admin token is wrong",
            ))
        }
    }
}
