//! Reading a bearer token (RFC 6750) from request headers: one parser for the tower layer that
//! guards a service and for the publisher's admin endpoints.

use http::header::AUTHORIZATION;
use http::HeaderMap;

/// Why an `Authorization` header yields no bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerProblem {
    /// No bearer credentials at all: a plain challenge (RFC 6750 §3.1).
    Missing,
    /// Credentials present but unusable (`invalid_request`), and why.
    Malformed(&'static str),
}

/// The bearer token of `headers` (RFC 6750 §2.1), read defensively: exactly one
/// `Authorization` header of at most `max` bytes, text, scheme `Bearer` (any case), a
/// `b64token`. Another scheme or no header is [`BearerProblem::Missing`]; anything broken is
/// [`BearerProblem::Malformed`] with a reason fit to send back.
pub fn bearer_token(headers: &HeaderMap, max: usize) -> Result<&str, BearerProblem> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(BearerProblem::Missing);
    };
    if values.next().is_some() {
        return Err(BearerProblem::Malformed(
            "more than one Authorization header",
        ));
    }
    let bytes = value.as_bytes();
    if bytes.len() > max {
        return Err(BearerProblem::Malformed(
            "the Authorization header is too long",
        ));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(BearerProblem::Malformed(
            "the Authorization header is not text",
        ));
    };
    let text = text.trim();
    if text.is_empty() {
        // Present but without even a scheme: not "no credentials", but broken ones.
        return Err(BearerProblem::Malformed(
            "the Authorization header is empty",
        ));
    }
    let (scheme, rest) = match text.split_once(' ') {
        Some((s, r)) => (s, r.trim_start()),
        None => (text, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerProblem::Missing);
    }
    if rest.is_empty() {
        return Err(BearerProblem::Malformed("the Bearer credentials are empty"));
    }
    if !is_b64token(rest) {
        return Err(BearerProblem::Malformed(
            "the Bearer token has invalid characters",
        ));
    }
    Ok(rest)
}

/// Whether `token` is a `b64token` (RFC 6750 §2.1): what [`bearer_token`] can ever return, so
/// a configured secret outside this alphabet could never be presented.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}
