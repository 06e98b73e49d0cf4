//! `POST /v1/oauth/revoke`: OAuth 2.0 Token Revocation (RFC 7009). A configured client
//! (HTTP Basic, RFC 6749 §2.3.1) hands in a token; a JWT of a trusted issuer with a valid
//! signature is revoked by its `(iss, jti, exp)`, read from the token itself, through the same
//! durable path as `POST /v1/revocations`.
//!
//! As §2.2 says, a token that is invalid — a foreign issuer, a bad signature, already
//! expired — is answered 200 and nothing is stored. A token that is not a JWT, or a JWT
//! without `jti`, cannot be revoked here and is answered `unsupported_token_type` (§2.2.1), so
//! the client knows nothing was revoked.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::idp::{ok_no_store, read_form, IdpState, OAuthError};
use super::{ApiError, AppState, Inner};
use crate::store::{Cutoff, Revocation};
use revbloom::bounds::{canonical_exp, unix_now};
use revbloom::cutoff::JTI_CLAIM;
use revbloom::hash::normalize_issuer;
use revbloom::verify::VerifyError;

/// The route.
pub const OAUTH_REVOKE: &str = "/v1/oauth/revoke";

/// The RFC 7009 route.
pub(super) fn router() -> Router<AppState> {
    Router::new().route(OAUTH_REVOKE, post(revoke))
}

async fn revoke(State(st): State<AppState>, req: Request) -> Response {
    let st = &st.inner;
    let Some(idp) = st.idp.as_deref().filter(|i| !i.clients.is_empty()) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "no revocation client is configured: list trusted issuers in \
             identity_providers.issuers and clients (client_id, client_secret_file) in \
             identity_providers.revocation_clients of the config file; see docs/API.md",
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    let (outcome, answer) = match handle(st, idp, &parts.headers, body).await {
        Ok(outcome) => (outcome, ok_no_store()),
        Err((outcome, e)) => (outcome, e.into_response()),
    };
    st.metrics.oauth_revoke(outcome);
    answer
}

type Outcome = &'static str;

async fn handle(
    st: &Inner,
    idp: &IdpState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Outcome, (Outcome, OAuthError)> {
    // Credentials first: nothing of the body is read for an unknown client.
    let client = authenticate(idp, headers).map_err(|e| ("invalid_client", e))?;
    let form = read_form(headers, body)
        .await
        .map_err(|e| ("invalid_request", e))?;
    let Some(token) = form
        .get("token")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    else {
        return Err((
            "invalid_request",
            OAuthError::invalid_request("the form has no token parameter"),
        ));
    };
    let unsupported = |why: &str| {
        (
            "unsupported_token_type",
            OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_token_type",
                why.to_owned(),
            ),
        )
    };
    if !looks_like_jwt(token) {
        return Err(unsupported(
            "only JWTs (signed, header.payload.signature) can be revoked here; this token is \
             opaque or encrypted",
        ));
    }
    let decoded = idp
        .decode::<Map<String, Value>>(token, |v| {
            // The client revokes a token it holds, issued to it or not; `exp` is judged below
            // against the deployment's leeway, not the issuer's.
            v.validate_aud = false;
            v.validate_exp = false;
            v.required_spec_claims.clear();
        })
        .await;
    let claims = match decoded {
        Ok(d) => d.claims,
        Err(VerifyError::KeysUnavailable { iss }) => {
            // We cannot tell whether the token is valid: a 200 would tell the client it is
            // revoked when it may not be.
            return Err(("keys_unavailable", IdpState::keys_unavailable(&iss)));
        }
        Err(e) => {
            let outcome = match e {
                VerifyError::UnknownIssuer => "ignored_foreign_issuer",
                _ => "ignored_invalid",
            };
            tracing::info!(client, error = %e, "RFC 7009: an invalid token was handed in; nothing stored");
            return Ok(outcome);
        }
    };
    let Some(Value::String(iss)) = claims.get("iss") else {
        return Ok("ignored_invalid");
    };
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= st.limits.max_jti_bytes => j,
        _ => {
            tracing::info!(client, %iss, "RFC 7009: a token without a usable jti was handed in");
            return Err(unsupported(
                "the token has no jti (a non-empty string of at most 1024 bytes), by which \
                 revbloom revokes tokens; cut off its sub with POST /v1/cutoffs instead",
            ));
        }
    };
    let iss = normalize_issuer(iss).to_owned();
    let now = unix_now();
    let exp = match claims.get("exp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().and_then(canonical_exp)),
        // A signed token with an `exp` no verifier can read: revoked whatever its `exp`.
        Some(_) => None,
    };
    if exp.is_some_and(|e| e < st.bounds.earliest_useful_exp(now)) {
        return Ok("ignored_expired");
    }
    let (revocations, jti_cutoffs) = match exp {
        Some(exp) if exp.saturating_sub(now) <= st.limits.max_exp_ahead_secs => (
            vec![Revocation {
                iss: Some(iss),
                jti: jti.clone(),
                exp,
            }],
            Vec::new(),
        ),
        // No `exp` (or one further ahead than any accepted token lives): revoked by `jti`
        // whatever its `exp`, as `POST /v1/revocations` does without one.
        _ => (
            Vec::new(),
            vec![Cutoff {
                iss: Some(iss),
                claim: JTI_CLAIM.to_owned(),
                value: jti.clone(),
                before: st.bounds.default_cutoff_before(now),
            }],
        ),
    };
    match st.store.revoke_with(revocations, jti_cutoffs).await {
        Ok(_) => {
            st.metrics.revocations_total.fetch_add(1, Relaxed);
            Ok("revoked")
        }
        Err(e) => {
            let api = super::store_error(st, e);
            Err((
                "store_error",
                OAuthError::new(
                    api.status(),
                    "temporarily_unavailable",
                    "the revocation could not be stored and was NOT applied; retry",
                ),
            ))
        }
    }
}

/// Three base64url parts, the first a JSON object: a JWS. Anything else (opaque tokens, JWEs
/// with five parts) is not a token revbloom can revoke.
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().take(2).any(|p| p.is_empty()) {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .ok()
        .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
        .is_some()
}

/// The client the request authenticates as, by HTTP Basic with the `client_id` and secret
/// form-urlencoded before base64 (RFC 6749 §2.3.1). The secret is compared in constant time
/// with every configured client's, whatever the `client_id`, so timing tells nothing.
fn authenticate<'a>(idp: &'a IdpState, headers: &HeaderMap) -> Result<&'a str, OAuthError> {
    let refuse =
        |why: &str| OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", why.to_owned());
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(refuse(
            "authenticate the client with HTTP Basic (client_id:client_secret), once",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| refuse("the Authorization header is not ASCII"))?;
    let Some((scheme, creds)) = value.split_once(' ') else {
        return Err(refuse("the Authorization header is not HTTP Basic"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refuse("authenticate the client with HTTP Basic"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .map_err(|_| refuse("the Basic credentials are not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| refuse("the Basic credentials are not UTF-8"))?;
    let Some((id, secret)) = decoded.split_once(':') else {
        return Err(refuse("the Basic credentials have no ':'"));
    };
    let id = form_decode(id);
    let secret = form_decode(secret);
    let mut found = None;
    for (cid, csecret) in &idp.clients {
        let same_secret = secret.as_bytes().ct_eq(csecret.as_bytes());
        if bool::from(same_secret) && cid == &id {
            found = Some(cid.as_str());
        }
    }
    found.ok_or_else(|| refuse("unknown client or wrong secret"))
}

/// `application/x-www-form-urlencoded` decoding of one credential (`+` is a space).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_are_told_from_opaque_tokens() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"));
        assert!(!looks_like_jwt("2YotnFZFEjr1zCsicMWpAA"));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.e30.c2ln.x.y"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9..c2ln"));
    }

    #[test]
    fn credentials_are_form_decoded() {
        assert_eq!(form_decode("my%3Aclient"), "my:client");
        assert_eq!(form_decode("a+b%2Bc"), "a b+c");
    }
}
