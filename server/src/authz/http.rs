//! The sidecar's two HTTP routers.
//!
//! The **check router** answers every path and method with a decision: NGINX `auth_request`
//! and Traefik `forwardAuth` call one configured URL, Envoy's HTTP ext_authz forwards the
//! original path, so no path may mean anything else here. 200 (empty body, the forwarded
//! claims as headers) allows; 401 with an RFC 6750 `WWW-Authenticate` denies; 503 with
//! `Retry-After` fails closed.
//!
//! A malformed `Authorization` header is denied with **401** `invalid_request`, not the 400
//! RFC 6750 §3.1 names: NGINX `auth_request` understands only 2xx, 401 and 403 from its
//! subrequest and turns anything else into a 500, which would hide the client's mistake
//! behind a server error. The challenge still says `error="invalid_request"`.
//!
//! The **admin router** (`/healthz`, `/readyz`, `/metrics`) lives on its own listener: on the
//! check listener, a request for `/healthz` forwarded by the proxy must be checked like any
//! other, never answered 200 (which the proxy would read as "allow").

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use revbloom::bounds::unix_now;
use serde_json::json;

use super::check::{Checker, Decision};
use super::metrics;
use super::state::AuthzState;
use crate::limits::ConnCounters;

/// `Retry-After` of a 503: long enough for a sync retry, short enough for a client to come
/// back while the sidecar recovers.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Largest request head (request line and headers) the check listener reads, bytes: room for
/// what a proxy forwards (NGINX's default `large_client_header_buffers` allow 4 × 8 KiB lines),
/// and no more. Larger heads are answered 431, which a proxy treats as an error: never an allow.
pub const MAX_CHECK_HEAD_BYTES: usize = crate::limits::HYPER_MAX_BUF_BYTES;
/// Most header fields in one check request (hyper's own limit is higher, see
/// [`crate::limits::HYPER_MAX_HEADERS`]).
pub const MAX_CHECK_HEADERS: usize = 100;

/// The check router: every request is a check of its `Authorization` header.
pub fn check_router(checker: Checker) -> Router {
    Router::new()
        .fallback(check)
        .layer(axum::middleware::from_fn(head_limit))
        .with_state(checker)
}

/// Refuse heads over [`MAX_CHECK_HEAD_BYTES`] or [`MAX_CHECK_HEADERS`] before any check, and
/// close the connection.
async fn head_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (_, head) = crate::limits::head_sizes(&req);
    if head > MAX_CHECK_HEAD_BYTES || req.headers().len() > MAX_CHECK_HEADERS {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            [
                (header::CONNECTION, HeaderValue::from_static("close")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            Json(json!({
                "error": "headers_too_large",
                "message": format!(
                    "the request head is {head} bytes in {} fields; at most {MAX_CHECK_HEAD_BYTES} bytes in {MAX_CHECK_HEADERS} fields are read",
                    req.headers().len()
                ),
            })),
        )
            .into_response();
    }
    next.run(req).await
}

async fn check(State(checker): State<Checker>, headers: HeaderMap) -> Response {
    http_answer(checker.check_headers(&headers).await)
}

/// A [`Decision`] as the HTTP check endpoint answers it.
pub fn http_answer(decision: Decision) -> Response {
    // Never cached: a proxy cache in front of the sidecar must not replay an allow after a
    // revocation.
    let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match decision {
        Decision::Allow { headers } => {
            let mut res = Response::new(Body::empty());
            let h = res.headers_mut();
            h.insert(no_store.0, no_store.1);
            for (name, value) in headers {
                h.insert(name, value);
            }
            res
        }
        Decision::Deny {
            status,
            www_authenticate,
            reason,
        } => {
            // 400 (a malformed header) becomes 401: see the module documentation.
            let status = if status == StatusCode::BAD_REQUEST {
                StatusCode::UNAUTHORIZED
            } else {
                status
            };
            let error = if status == StatusCode::UNAUTHORIZED
                && www_authenticate.as_bytes().starts_with(b"Bearer error=")
            {
                error_code(&www_authenticate)
            } else {
                "unauthorized"
            };
            (
                status,
                [(header::WWW_AUTHENTICATE, www_authenticate), no_store],
                Json(json!({"error": error, "message": reason})),
            )
                .into_response()
        }
        Decision::Unavailable { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS)),
                no_store,
            ],
            Json(json!({"error": "unavailable", "message": reason})),
        )
            .into_response(),
    }
}

/// The `error="…"` code of a challenge we made (`invalid_token`, `invalid_request`).
fn error_code(challenge: &HeaderValue) -> &'static str {
    let text = challenge.as_bytes();
    if text.starts_with(b"Bearer error=\"invalid_request\"") {
        "invalid_request"
    } else {
        "invalid_token"
    }
}

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    /// The live state.
    pub state: Arc<AuthzState>,
    /// The checker shared by every front end (its decision counts).
    pub checker: Checker,
    /// The check listener's counters.
    pub check_conns: Arc<ConnCounters>,
}

/// The admin router: `/healthz`, `/readyz`, `/metrics`; anything else 404 in JSON.
pub fn admin_router(st: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not_found", "message": "the admin listener serves /healthz, /readyz and /metrics; checks go to the check listener"})),
            )
        })
        .with_state(st)
}

/// Liveness: 200 whenever the process answers.
async fn healthz(State(st): State<AdminState>) -> Response {
    let h = st.state.handle();
    let body = json!({
        "status": "ok",
        "generation": h.generation(),
        "snapshot_age_secs": h.age(unix_now()),
    });
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

/// Readiness: 200 only with a verified snapshot within the maximum age and, with JWKS
/// issuers, every issuer's keys loaded; else 503 with the reasons.
async fn readyz(State(st): State<AdminState>) -> Response {
    let now = unix_now();
    let reasons = st.state.not_ready_reasons(now);
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = st.state.readiness_body(now, &reasons);
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn metrics_text(State(st): State<AdminState>) -> Response {
    match metrics::render(&st.state, st.checker.counts(), &st.check_conns) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "internal", "message": "the metrics could not be encoded"})),
            )
                .into_response()
        }
    }
}
