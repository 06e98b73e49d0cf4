//! Liveness, readiness and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus
//! text format 0.0.4).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;

use super::{ApiError, AppState};
use crate::metrics;
use crate::store::StoreFault;
use revbloom::bounds::unix_now;
use revbloom::wire;

/// The health and metrics routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(wire::HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
        .route(wire::METRICS, get(metrics))
}

/// The readiness route: 200 when the publisher can do its job now, else 503 with reasons.
pub const READYZ: &str = "/readyz";

/// Why the publisher cannot do its job now: members of [`metrics::NOT_READY_REASONS`], empty
/// when ready. Recorded in the metrics as a side effect, so `/metrics` and `/readyz` agree.
pub(crate) fn not_ready_reasons(st: &AppState) -> Vec<&'static str> {
    let inner = &st.inner;
    let mut reasons = Vec::new();
    match inner.store.fault() {
        Some(StoreFault::Replaced) => reasons.push("store_replaced"),
        Some(_) => reasons.push("store_write_failing"),
        None => {}
    }
    if inner.hub.publish_failing() {
        reasons.push("publish_failing");
    }
    let age = unix_now().saturating_sub(inner.hub.current().created_at);
    if age > 2 * inner.hub.refresh().as_secs().max(1) {
        reasons.push("snapshot_stale");
    }
    // Verifiers reading the bucket's mirrors get nothing new while uploads fail.
    if inner.hub.is_builder() && inner.metrics.upload_failing.load(Relaxed) != 0 {
        reasons.push("upload_failing");
    }
    inner.metrics.set_readiness(&reasons);
    reasons
}

async fn readyz(State(st): State<AppState>) -> Response {
    let reasons = not_ready_reasons(&st);
    let cur = st.inner.hub.current();
    let age = unix_now().saturating_sub(cur.created_at);
    let ready = reasons.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "ready": ready,
        "reasons": reasons,
        "generation": cur.generation,
        "snapshot_age_secs": age,
    });
    // Issuers whose keys are missing stop only their own endpoints (503 there), not the
    // publisher's job of storing and publishing revocations: reported, not a reason.
    if let Some(idp) = &st.inner.idp {
        body["identity_provider_keys_missing"] = idp.issuers_without_keys().into();
    }
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Liveness: 200 whenever the process answers, so a supervisor restarts only a hung
/// process; whether it can do its job is `/readyz`'s answer.
async fn healthz(State(st): State<AppState>) -> Response {
    let cur = st.inner.hub.current();
    let age = unix_now().saturating_sub(cur.created_at);
    let role = if st.inner.hub.is_builder() {
        "builder"
    } else {
        "follower"
    };
    let body = json!({
        "status": "ok",
        "role": role,
        "generation": cur.generation,
        "snapshot_age_secs": age,
        "entries": cur.entries,
    });
    (StatusCode::OK, Json(body)).into_response()
}

async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    not_ready_reasons(&st);
    st.inner.metrics.mirror_connections(st.counters());
    // Encoding into a `String` fails only if a metric's own encoder does; none of ours can.
    let text = st.inner.metrics.render().map_err(|e| {
        tracing::error!(error = %e, "encoding the metrics failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be encoded",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}
