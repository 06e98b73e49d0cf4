//! What the identity-provider endpoints share: the trusted issuers and their keys (kept
//! current by the JWKS client), the revocation clients' secrets, the OAuth-shaped error, the
//! bounded form reader, and the logout-token replay cache.
//!
//! These endpoints speak OAuth's error format (`{"error": ..., "error_description": ...}`,
//! `Cache-Control: no-store`), which identity providers and OAuth clients expect, rather than
//! the admin API's `{"error", "message"}`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::config::{BackchannelSettings, ClientSecretError, IdpSettings};
use revbloom::sync::{ClientTls, JwksClient, JwksClientError, JwksConfig};
use revbloom::verify::{Issuer, Issuers, IssuersError, VerifyError};

/// Largest form body accepted by the identity-provider endpoints, bytes. A Keycloak logout
/// token is under 2 KiB; an access token with many claims rarely passes 8 KiB.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Errors setting up the identity-provider endpoints at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdpError {
    /// The issuers cannot be used as configured.
    #[error("identity_providers.issuers: {0}")]
    Issuers(#[from] IssuersError),
    /// The JWKS client cannot start (a bad URL, the CA file).
    #[error("identity_providers: {0}")]
    Jwks(#[from] JwksClientError),
    /// A client secret cannot be read.
    #[error(transparent)]
    Secret(#[from] ClientSecretError),
}

/// The identity-provider endpoints' state, built once at start.
pub struct IdpState {
    pub(crate) issuers: Arc<Issuers>,
    /// `(client_id, secret)` of each revocation client.
    pub(crate) clients: Vec<(String, String)>,
    pub(crate) backchannel: BackchannelSettings,
    pub(crate) replay: ReplayCache,
    /// Kept alive for its background fetches (dropping it stops them); its status feeds
    /// `/readyz`.
    jwks: Option<JwksClient>,
    /// Before any of `jwks`'s fetches started.
    created: Instant,
}

impl std::fmt::Debug for IdpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpState")
            .field("issuers", &self.issuers)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl IdpState {
    /// The state `settings` describe, `None` when no issuer is configured (the endpoints are
    /// off). Reads the client secrets now and starts fetching every issuer's keys in the
    /// background (on the current tokio runtime).
    pub fn start(settings: &IdpSettings) -> Result<Option<Arc<Self>>, IdpError> {
        if settings.issuers.is_empty() {
            return Ok(None);
        }
        let clients = settings
            .revocation_clients
            .iter()
            .map(|c| Ok((c.client_id.clone(), c.secret()?)))
            .collect::<Result<Vec<_>, ClientSecretError>>()?;
        let b = &settings.backchannel_logout;
        let issuers = Arc::new(Issuers::new(settings.issuers.iter().map(|i| {
            // `exp` leeway is the allowed clock skew; each endpoint adjusts the rest.
            Issuer::new(&i.issuer, &i.jwks_url)
                .audiences(i.audiences.iter().cloned())
                .leeway(b.clock_skew_secs)
        }))?);
        let tls = match &settings.jwks_ca_file {
            Some(path) => ClientTls::ca_file(path),
            None => ClientTls::system_roots(),
        };
        let created = Instant::now();
        let jwks = JwksClient::start(Arc::clone(&issuers), JwksConfig::default().tls(tls))?;
        Ok(Some(Arc::new(Self {
            issuers,
            clients,
            backchannel: b.clone(),
            replay: ReplayCache::new(b.replay_cache_size),
            jwks: Some(jwks),
            created,
        })))
    }

    /// [`Issuers::decode`], except that a `kid` missing from the issuer's keys is
    /// [`VerifyError::KeysUnavailable`] (503, retry), not [`VerifyError::UnknownKey`] (an
    /// invalid token), unless those keys come from a fetch that started after the token
    /// existed. An issuer publishes a key before it signs with it, so a set fetched after
    /// the token was made holds its key if the token is genuine; a set fetched earlier may
    /// predate a rotation (the JWKS URL failing since, or the refetch interval holding the
    /// refetch back), and calling the token invalid then would answer 200 to a revocation
    /// request, or refuse a logout, that a retry would have applied.
    ///
    /// "After the token existed" is after this request arrived, or after the token's `iat`
    /// plus the allowed clock skew (unverified: a forged `iat` can only get a forged token
    /// called invalid). The second lets a client that keeps retrying get its answer once
    /// one fetch has started past that moment, even while every fetch is one its own earlier
    /// demands set off.
    pub async fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        adjust: impl Fn(&mut jsonwebtoken::Validation),
    ) -> Result<jsonwebtoken::TokenData<C>, VerifyError> {
        let arrived = Instant::now();
        match self.issuers.decode(token, adjust).await {
            Err(VerifyError::UnknownKey { iss, .. })
                if !self.unknown_kid_settled(&iss, token, arrived) =>
            {
                Err(VerifyError::KeysUnavailable { iss })
            }
            other => other,
        }
    }

    /// Whether `iss`'s keys were fetched after `token` existed (see [`IdpState::decode`]).
    fn unknown_kid_settled(&self, iss: &str, token: &str, arrived: Instant) -> bool {
        let Some(jwks) = &self.jwks else {
            // Keys that are not fetched cannot change.
            return true;
        };
        if jwks.keys_fetched_since(iss, arrived) {
            return true;
        }
        #[derive(serde::Deserialize)]
        struct IatOnly {
            iat: Option<serde_json::Value>,
        }
        let iat = jsonwebtoken::dangerous::insecure_decode_claims::<IatOnly>(token)
            .ok()
            .and_then(|c| c.iat)
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)));
        let Some(iat) = iat else {
            return false;
        };
        let made_by = iat.saturating_add(self.backchannel.clock_skew_secs);
        let ago = revbloom::bounds::unix_now().checked_sub(made_by);
        // `iat` + skew still ahead: only a fetch after the request arrived settles it.
        let Some(ago) = ago else {
            return false;
        };
        // A moment before this client started (or before the monotonic clock's origin) is
        // before every fetch.
        let since = arrived
            .checked_sub(std::time::Duration::from_secs(ago))
            .map_or(self.created, |t| t.max(self.created));
        jwks.keys_fetched_since(iss, since)
    }

    /// The answer to [`VerifyError::KeysUnavailable`] from [`IdpState::decode`]: the token's
    /// validity cannot be known yet, so 503 and a retry, never 200 or 400.
    pub(crate) fn keys_unavailable(iss: &str) -> OAuthError {
        OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            format!(
                "the signing keys of {iss:?} could not be fetched yet, or not since this token \
                 was issued; retry"
            ),
        )
    }

    /// The configured issuers whose keys have not been fetched yet, with the last fetch error:
    /// their logout tokens and RFC 7009 requests are answered 503 until the keys arrive.
    pub fn issuers_without_keys(&self) -> Vec<serde_json::Value> {
        let missing = self.jwks.as_ref().map(JwksClient::without_keys);
        missing
            .into_iter()
            .flatten()
            .map(|s| serde_json::json!({"iss": s.iss, "last_error": s.last_error}))
            .collect()
    }

    /// How long a logout token's `jti` must be remembered after it was accepted: any later
    /// request carrying it again with an `iat` still inside the window is a replay.
    pub(crate) fn replay_ttl_secs(&self) -> u64 {
        let b = &self.backchannel;
        b.max_token_age_secs
            .saturating_add(b.clock_skew_secs.saturating_mul(2))
            .saturating_add(1)
    }
}

/// An OAuth-shaped error answer (RFC 6749 §5.2, used by RFC 7009 and by OIDC Back-Channel
/// Logout §2.8): `{"error": CODE, "error_description": TEXT}` with `Cache-Control: no-store`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

#[derive(Serialize)]
struct OAuthBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(OAuthBody {
            error: self.error,
            error_description: &self.description,
        });
        let mut res = (self.status, body).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"revbloom\""),
            );
        }
        if self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::PAYLOAD_TOO_LARGE
        {
            // The body was not read in full: the connection cannot carry another request.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// 200 with an empty body and `Cache-Control: no-store`: what both specifications answer on
/// success.
pub(crate) fn ok_no_store() -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response()
}

/// The parameters of an `application/x-www-form-urlencoded` body of at most
/// [`MAX_FORM_BYTES`]. A parameter given twice is refused (RFC 6749 §3.1); the reason of
/// every refusal is in the error, with 415 for another content type, 413 for a body too
/// large and 408 for one that does not arrive in time.
pub(crate) async fn read_form(
    headers: &HeaderMap,
    body: Body,
) -> Result<HashMap<String, String>, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(OAuthError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "send the parameters as Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let too_large = || {
        OAuthError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the request body is over {MAX_FORM_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(e) if super::deadline::is_body_timeout(&e) => {
            return Err(OAuthError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the request body was not received in time; send it at once",
            ))
        }
        Err(e) if is_length_limit(&e) => return Err(too_large()),
        Err(_) => {
            return Err(OAuthError::invalid_request(
                "the request body could not be read",
            ))
        }
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| OAuthError::invalid_request("the form body is not UTF-8"))?;
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        if v.contains('\u{FFFD}') || k.contains('\u{FFFD}') {
            return Err(OAuthError::invalid_request(
                "a form parameter is not percent-encoded UTF-8",
            ));
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "the parameter {k:?} is given more than once"
            )));
        }
    }
    Ok(out)
}

fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The `(iss, jti)` of accepted logout tokens, each kept for a fixed time after it was
/// accepted, at most `capacity` of them. Per process: replicas behind one load balancer do
/// not share it (see `docs/DESIGN.md`).
#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    /// Key → when it leaves the cache (unix seconds).
    until: HashMap<(String, String), u64>,
    /// Keys in the order they were added: also the order they expire in, since every entry
    /// lives equally long.
    order: VecDeque<((String, String), u64)>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayInner> {
        // A poisoned lock only means a panic elsewhere while updating two collections that
        // are consistent after every statement.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `(iss, jti)` was accepted and has not left the cache by `now`.
    pub(crate) fn seen(&self, iss: &str, jti: &str, now: u64) -> bool {
        let g = self.lock();
        g.until
            .get(&(iss.to_owned(), jti.to_owned()))
            .is_some_and(|&until| until > now)
    }

    /// Remember `(iss, jti)` until `now + ttl`. Returns how many unexpired entries were
    /// dropped to make room (0 or 1).
    pub(crate) fn insert(&self, iss: &str, jti: &str, now: u64, ttl: u64) -> usize {
        let mut g = self.lock();
        let g = &mut *g;
        while let Some((key, until)) = g.order.front() {
            if *until > now {
                break;
            }
            if g.until.get(key) == Some(until) {
                g.until.remove(key);
            }
            g.order.pop_front();
        }
        let mut evicted = 0;
        while g.until.len() >= self.capacity {
            let Some((key, until)) = g.order.pop_front() else {
                break;
            };
            if g.until.get(&key) == Some(&until) {
                g.until.remove(&key);
                evicted += 1;
            }
        }
        let key = (iss.to_owned(), jti.to_owned());
        let until = now.saturating_add(ttl);
        g.until.insert(key.clone(), until);
        g.order.push_back((key, until));
        evicted
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_forgets_after_its_ttl_and_stays_bounded() {
        let c = ReplayCache::new(3);
        assert!(!c.seen("i", "a", 100));
        assert_eq!(c.insert("i", "a", 100, 10), 0);
        assert!(c.seen("i", "a", 109));
        assert!(!c.seen("i", "a", 110));
        assert!(!c.seen("j", "a", 105), "keyed by issuer too");
        c.insert("i", "b", 101, 10);
        c.insert("i", "c", 102, 10);
        // Full: the oldest entry makes room.
        assert_eq!(c.insert("i", "d", 103, 10), 1);
        assert!(!c.seen("i", "a", 103) && c.seen("i", "b", 103));
        assert_eq!(c.len(), 3);
        // Expired entries leave before anything unexpired is dropped.
        assert_eq!(c.insert("i", "e", 112, 10), 0);
        assert_eq!(c.len(), 2);
        assert!(c.seen("i", "d", 112) && c.seen("i", "e", 112));
    }
}
