//! The snapshot and delta feed: `GET /v1/snapshot` and `GET /v1/deltas`, with ETags and
//! long-polls that wake on the publisher's `watch` channel.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{ApiError, AppState, Inner};
use crate::config::parse_duration;
use crate::publish::{DeltaChain, Published};
use revbloom::wire;

/// The snapshot and delta routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(wire::SNAPSHOT, get(snapshot))
        .route(wire::DELTAS, get(deltas))
}

/// Parse a long-poll wait with [`parse_duration`] (`500ms`, `30s`, `2m`, bare seconds) and
/// cap it at `max_secs`: a longer wait is shortened, not refused, so a client need not know
/// the server's limit.
pub fn parse_wait(s: &str, max_secs: u64) -> Result<Duration, ApiError> {
    let wait =
        parse_duration(s).map_err(|e| ApiError::bad("invalid_wait", format!("wait: {e}")))?;
    Ok(wait.min(Duration::from_secs(max_secs)))
}

/// The generation named by an `If-None-Match` header (`"12"`, `W/"12"` or `12`).
fn if_none_match(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.trim_matches('"').parse().ok()
}

/// Wait until the generation differs from `known`, up to `wait` or shutdown; returns the
/// current generation either way.
async fn wait_for_newer(st: &Inner, known: u64, wait: Duration) -> Arc<Published> {
    let mut rx = st.hub.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let cur = Arc::clone(&rx.borrow_and_update());
        if cur.generation != known || st.shutdown.is_cancelled() {
            return cur;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return cur },
            _ = tokio::time::sleep_until(deadline) => return cur,
            _ = st.shutdown.cancelled() => return cur,
        }
    }
}

fn generation_headers(generation: u64) -> [(header::HeaderName, String); 3] {
    [
        (header::ETAG, revbloom::wire::etag(generation)),
        (header::CACHE_CONTROL, "no-cache".into()),
        (
            header::HeaderName::from_static(revbloom::wire::GENERATION_HEADER),
            generation.to_string(),
        ),
    ]
}

/// Query of the snapshot endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<String>,
}

async fn snapshot(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let st = &st.inner;
    let Query(q) = query?;
    let wait = match &q.wait {
        Some(w) => parse_wait(w, st.limits.max_wait_secs)?,
        None => Duration::ZERO,
    };
    let cur = match if_none_match(&headers) {
        Some(known) => wait_for_newer(st, known, wait).await,
        None => st.hub.current(),
    };
    if Some(cur.generation) == if_none_match(&headers) {
        return Ok((StatusCode::NOT_MODIFIED, generation_headers(cur.generation)).into_response());
    }
    Ok((
        generation_headers(cur.generation),
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(cur.snapshot.clone()),
    )
        .into_response())
}

/// Query of the deltas endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeltaQuery {
    since: u64,
    wait: Option<String>,
}

async fn deltas(
    State(st): State<AppState>,
    query: Result<Query<DeltaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let st = &st.inner;
    let Query(q) = query.map_err(|e| {
        ApiError::bad(
            "invalid_query",
            format!(
                "{}; `since` (a generation number) is required",
                e.body_text()
            ),
        )
    })?;
    let wait = match &q.wait {
        Some(w) => parse_wait(w, st.limits.max_wait_secs)?,
        None => Duration::ZERO,
    };
    let cur = wait_for_newer(st, q.since, wait).await;
    match st.hub.deltas_since(q.since, &cur) {
        DeltaChain::UpToDate => {
            Ok((StatusCode::NO_CONTENT, generation_headers(cur.generation)).into_response())
        }
        DeltaChain::Chain { bytes, generation } => Ok((
            generation_headers(generation),
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Body::from(bytes),
        )
            .into_response()),
        DeltaChain::Gone => Err(ApiError::new(
            StatusCode::GONE,
            "delta_chain_gone",
            format!(
                "no delta chain from generation {} to {}: fetch GET /v1/snapshot",
                q.since, cur.generation
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn wait_parsing() {
        assert_eq!(parse_wait("30s", 60).unwrap(), Duration::from_secs(30));
        assert_eq!(parse_wait("500ms", 60).unwrap(), Duration::from_millis(500));
        assert_eq!(parse_wait("5", 60).unwrap(), Duration::from_secs(5));
        assert_eq!(parse_wait("10m", 60).unwrap(), Duration::from_secs(60));
        // Longer than the limit: capped, not refused.
        assert_eq!(parse_wait("3h", 60).unwrap(), Duration::from_secs(60));
        assert_eq!(parse_wait("1h", 3600).unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_wait("0", 60).unwrap(), Duration::ZERO);
        for bad in [
            "",
            "-1s",
            "99999999999999999999999s",
            "forever",
            "30 parsecs",
        ] {
            let e = parse_wait(bad, 60).unwrap_err();
            let res = axum::response::IntoResponse::into_response(e);
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn etag_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(if_none_match(&h), None);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"12\""));
        assert_eq!(if_none_match(&h), Some(12));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"7\""));
        assert_eq!(if_none_match(&h), Some(7));
    }
}
