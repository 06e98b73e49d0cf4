//! The publisher's HTTP API (axum 0.8), specified in `docs/API.md`.
//!
//! Every failure is a JSON body `{"error": "<code>", "message": "..."}` with a 4xx/5xx status;
//! input is validated in full before anything is written, and a batch is one transaction, so
//! nothing is ever half-written.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::config::Limits;
use super::feed;
use super::metrics::{route_index, Metrics};
use super::publish::{unix_now, Hub};
use super::store::{Cutoff, Revocation, Store};
use crate::bounds::{canonical_exp, Bounds};
use crate::cutoff::DEFAULT_CLAIM;
use crate::hash::normalize_issuer;
use crate::wire;

/// Longest claim name accepted (`sub`, `sid`, `client_id`, ...).
pub const MAX_CLAIM_BYTES: usize = 64;
/// How far in the future a cutoff's `before` may lie: the clock-skew allowance. A cutoff far
/// in the future would lock the user out of every new login until then.
pub const MAX_BEFORE_AHEAD_SECS: u64 = 300;

/// A JSON error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with an HTTP status, a stable machine-readable code and a human message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(wire::ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        });
        let mut res = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let v = format!("Bearer realm=\"revbloom\", error=\"{}\"", self.code);
            if let Ok(v) = HeaderValue::from_str(&v) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        res
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: Store,
    pub(super) hub: Hub,
    pub(super) metrics: Arc<Metrics>,
    pub(super) limits: Limits,
    bounds: Bounds,
    admin_token: String,
    pub(super) shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// State for [`router`]. `shutdown` turning true ends pending long-polls early.
    pub fn new(
        store: Store,
        hub: Hub,
        metrics: Arc<Metrics>,
        limits: Limits,
        bounds: Bounds,
        admin_token: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hub,
                metrics,
                limits,
                bounds,
                admin_token,
                shutdown,
            }),
        }
    }
}

/// The API's routes, with the body limit, metrics and JSON 404/405 answers.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.limits.max_body_bytes;
    Router::new()
        .route(wire::REVOCATIONS, post(revoke).get(lookup_by_query))
        .route(wire::REVOCATION, get(lookup))
        .route(wire::CUTOFFS, post(cutoff))
        .route(wire::SNAPSHOT, get(feed::snapshot))
        .route(wire::DELTAS, get(feed::deltas))
        .route(wire::HEALTHZ, get(healthz))
        .route(wire::METRICS, get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see docs/API.md",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see docs/API.md",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Count and time every request by matched route.
async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = route_index(req.extensions().get::<MatchedPath>().map(|p| p.as_str()));
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let start = Instant::now();
    let res = next.run(req).await;
    st.inner
        .metrics
        .observe(route, method, res.status().as_u16(), start.elapsed());
    res
}

/// Check the admin bearer token in constant time (for equal lengths; a length mismatch is
/// refused without comparing, which reveals only the length of a 32+ byte random token).
fn authorize(st: &Inner, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |code, msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, msg);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing_token",
            "this endpoint needs `Authorization: Bearer <admin token>`",
        ));
    };
    let value = value.as_bytes();
    let token = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| value.get(7..))
        .ok_or_else(|| {
            unauthorized(
                "invalid_token",
                "the Authorization header must be `Bearer <admin token>`",
            )
        })?;
    if bool::from(token.ct_eq(st.admin_token.as_bytes())) {
        Ok(())
    } else {
        Err(unauthorized("invalid_token", "the admin token is wrong"))
    }
}

/// Read the body as JSON bytes: content type, size limit.
async fn json_body(req: Request) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`",
        ));
    }
    Bytes::from_request(req, &())
        .await
        .map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is over the size limit; split the batch",
                )
            } else {
                ApiError::bad("unreadable_body", e.body_text())
            }
        })
}

/// Parse JSON, telling syntax errors apart from well-formed JSON of the wrong shape.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_data() {
            "invalid_body"
        } else {
            "malformed_json"
        };
        ApiError::bad(code, e.to_string())
    })
}

fn check_string(
    field: &'static str,
    v: &str,
    max: usize,
    code: &'static str,
) -> Result<(), ApiError> {
    if v.is_empty() {
        return Err(ApiError::bad(
            "empty_field",
            format!("`{field}` must not be empty"),
        ));
    }
    if v.len() > max {
        return Err(ApiError::bad(
            code,
            format!("`{field}` is {} bytes; at most {max} are accepted", v.len()),
        ));
    }
    Ok(())
}

pub use crate::wire::{CutoffItem, RevokeItem};

/// An issuer from a request, normalised; empty (also after normalising) is refused.
fn issuer(iss: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(iss) = iss else {
        return Ok(None);
    };
    check_string("iss", &iss, max, "iss_too_long")?;
    let normal = normalize_issuer(&iss);
    if normal.is_empty() {
        return Err(ApiError::bad(
            "empty_field",
            "`iss` must not be empty (trailing `/` are removed); omit it to mean every issuer",
        ));
    }
    Ok(Some(normal.to_owned()))
}

/// A JSON `exp` as the integer verifiers compare ([`canonical_exp`]).
fn exp_seconds(exp: &serde_json::Number) -> Result<u64, ApiError> {
    exp.as_u64()
        .or_else(|| exp.as_f64().and_then(canonical_exp))
        .ok_or_else(|| {
            ApiError::bad(
                "invalid_body",
                format!("exp {exp} is not a unix time in seconds (a non-negative number)"),
            )
        })
}

fn to_revocation(st: &Inner, item: RevokeItem, now: u64) -> Result<Revocation, ApiError> {
    let l = &st.limits;
    check_string("jti", &item.jti, l.max_jti_bytes, "jti_too_long")?;
    let iss = issuer(item.iss, l.max_string_bytes)?;
    let exp = exp_seconds(&item.exp)?;
    let earliest = st.bounds.earliest_useful_exp(now);
    if exp < earliest {
        return Err(ApiError::bad(
            "exp_in_past",
            format!(
                "exp {exp} is before {earliest} (now {now} minus leeway and clock skew): \
                 verifiers already refuse this token as expired, so it needs no revocation"
            ),
        ));
    }
    if exp.saturating_sub(now) > l.max_exp_ahead_secs {
        return Err(ApiError::bad(
            "exp_too_far",
            format!(
                "exp {exp} is more than {} s ahead; is it in milliseconds? exp is unix seconds",
                l.max_exp_ahead_secs
            ),
        ));
    }
    Ok(Revocation {
        iss,
        jti: item.jti,
        exp,
    })
}

async fn revoke(State(st): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let st = &st.inner;
    authorize(st, req.headers())?;
    let body = json_body(req).await?;
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let items: Vec<RevokeItem> = if batch {
        parse(&body)?
    } else {
        vec![parse(&body)?]
    };
    if items.is_empty() {
        return Err(ApiError::bad(
            "empty_batch",
            "the batch holds no revocations",
        ));
    }
    if items.len() > st.limits.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "the batch holds {} revocations; at most {} are accepted per request",
                items.len(),
                st.limits.max_batch
            ),
        ));
    }
    let now = unix_now();
    let revs = items
        .into_iter()
        .enumerate()
        .map(|(i, it)| {
            to_revocation(st, it, now).map_err(|mut e| {
                if batch {
                    e.message = format!("item {i}: {}", e.message);
                }
                e
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = revs.len();
    match st.store.revoke(revs).await {
        Ok(o) => {
            st.metrics.revocations_total.fetch_add(n as u64, Relaxed);
            Ok(Json(wire::RevokeReply {
                accepted: n,
                duplicates: o.duplicates,
                new: o.new,
            })
            .into_response())
        }
        Err(e) => Err(store_error(st, e)),
    }
}

fn store_error(st: &Inner, e: super::store::StoreError) -> ApiError {
    st.metrics.store_errors_total.fetch_add(1, Relaxed);
    tracing::error!(error = %e, "store write failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the revocation could not be stored and was NOT applied; retry",
    )
}

async fn cutoff(State(st): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let st = &st.inner;
    authorize(st, req.headers())?;
    let body = json_body(req).await?;
    let item: CutoffItem = parse(&body)?;
    let l = &st.limits;
    check_string("value", &item.value, l.max_string_bytes, "value_too_long")?;
    let claim = item.claim.unwrap_or_else(|| DEFAULT_CLAIM.to_owned());
    check_string("claim", &claim, MAX_CLAIM_BYTES, "claim_too_long")?;
    let iss = issuer(item.iss, l.max_string_bytes)?;
    let now = unix_now();
    let before = item
        .before
        .unwrap_or_else(|| st.bounds.default_cutoff_before(now));
    let latest = now
        .saturating_add(MAX_BEFORE_AHEAD_SECS)
        .max(st.bounds.default_cutoff_before(now));
    if before > latest {
        return Err(ApiError::bad(
            "before_in_future",
            format!("before {before} is in the future (now {now}); it would revoke logins that have not happened yet"),
        ));
    }
    let c = Cutoff {
        iss,
        claim,
        value: item.value,
        before,
    };
    let (claim, value, iss) = (c.claim.clone(), c.value.clone(), c.iss.clone());
    match st.store.cutoff(c).await {
        Ok(changed) => {
            st.metrics.cutoffs_total.fetch_add(1, Relaxed);
            Ok(Json(wire::CutoffReply {
                before,
                changed,
                claim,
                iss,
                value,
            })
            .into_response())
        }
        Err(e) => Err(store_error(st, e)),
    }
}

/// Query of the exact lookup.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    iss: Option<String>,
}

/// Query of the exact lookup with the `jti` in the query: the form for the `jti`s `.` and
/// `..`, which URL clients resolve away as dot segments in a path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupByQuery {
    jti: String,
    iss: Option<String>,
}

async fn lookup(
    State(st): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(jti) = path.map_err(|e| ApiError::bad("invalid_jti", e.body_text()))?;
    let Query(q) = query.map_err(|e| ApiError::bad("invalid_query", e.body_text()))?;
    answer_lookup(&st.inner, jti, q.iss)
}

async fn lookup_by_query(
    State(st): State<AppState>,
    query: Result<Query<LookupByQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad("invalid_query", e.body_text()))?;
    answer_lookup(&st.inner, q.jti, q.iss)
}

fn answer_lookup(st: &Inner, jti: String, iss: Option<String>) -> Result<Response, ApiError> {
    check_string("jti", &jti, st.limits.max_jti_bytes, "jti_too_long")?;
    let iss = issuer(iss, st.limits.max_string_bytes)?;
    let found = st.store.lookup_covered(iss.as_deref(), &jti).map_err(|e| {
        st.metrics.store_errors_total.fetch_add(1, Relaxed);
        tracing::error!(error = %e, "store read failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store could not be read; retry",
        )
    })?;
    let body = wire::LookupAnswer {
        exp: found.exp,
        iss,
        jti,
        pruned_before: found.pruned_before,
        revoked: found.exp.is_some(),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

async fn healthz(State(st): State<AppState>) -> Response {
    let cur = st.inner.hub.current();
    let age = unix_now().saturating_sub(cur.created_at);
    let store_ok = st.inner.store.generation().is_ok();
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if store_ok { "ok" } else { "store_unavailable" },
        "generation": cur.generation,
        "snapshot_age_secs": age,
        "entries": cur.entries,
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.inner.metrics.render(),
    )
        .into_response()
}
