//! The publisher's HTTP API (axum 0.8), specified in `docs/API.md`: one router per resource
//! (revocations, cutoffs, the snapshot and delta feed, health), merged here with the shared
//! layers.
//!
//! Every failure is an [`ApiError`]: a JSON body `{"error": "<code>", "message": "..."}` with a
//! 4xx/5xx status. Input is validated in full before anything is written, and a batch is one
//! transaction, so nothing is ever half-written. Admin endpoints take the [`Admin`] extractor.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::config::Limits;
use super::metrics::{route_index, Metrics};
use super::publish::Hub;
use super::store::Store;
use crate::bounds::Bounds;
use crate::hash::normalize_issuer;

mod cutoffs;
mod error;
mod extract;
mod feed;
mod health;
mod revocations;

pub use cutoffs::{MAX_BEFORE_AHEAD_SECS, MAX_CLAIM_BYTES};
pub use error::ApiError;
pub use extract::Admin;
pub use feed::parse_wait;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

/// The shared state behind [`AppState`].
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) hub: Hub,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    pub(crate) bounds: Bounds,
    pub(crate) admin_token: String,
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    /// State for [`router`]. Cancelling `shutdown` ends pending long-polls early.
    pub fn new(
        store: Store,
        hub: Hub,
        metrics: Arc<Metrics>,
        limits: Limits,
        bounds: Bounds,
        admin_token: String,
        shutdown: CancellationToken,
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
        .merge(revocations::router())
        .merge(cutoffs::router())
        .merge(feed::router())
        .merge(health::router())
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

/// A string field's length limits: not empty, at most `max` bytes (else `code`).
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

/// A failed store write: counted, logged, and a 503 that says nothing was applied.
fn store_error(st: &Inner, e: super::store::StoreError) -> ApiError {
    st.metrics.store_errors_total.fetch_add(1, Relaxed);
    tracing::error!(error = %e, "store write failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the revocation could not be stored and was NOT applied; retry",
    )
}
