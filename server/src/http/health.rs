//! Liveness and metrics: `GET /healthz`, `GET /metrics` (Prometheus text format 0.0.4).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, AppState};
use crate::metrics;
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

async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
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
