//! Liveness and metrics: `GET /healthz`, `GET /metrics` (Prometheus text format).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use revbloom::bounds::unix_now;
use revbloom::wire;

/// The health and metrics routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(wire::HEALTHZ, get(healthz))
        .route(wire::METRICS, get(metrics))
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
