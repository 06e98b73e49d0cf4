//! The snapshot and delta feed: `GET /v1/snapshot` and `GET /v1/deltas`, with ETags and
//! long-polls that wake on the publisher's `watch` channel.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use headers::{ETag, HeaderMapExt, IfNoneMatch};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

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

/// Whether a client that sent `If-None-Match: inm` already holds `generation`: one of its
/// entity tags matches the generation's ETag under the weak comparison RFC 9110 prescribes
/// for `If-None-Match` (`W/"12"` matches `"12"`), or it sent `*`. A value that is not an
/// entity tag (such as an unquoted `12`) matches nothing, so that client gets the full answer.
fn client_has(inm: &IfNoneMatch, generation: u64) -> bool {
    // The tag is a quoted decimal number, which always parses; were it ever refused, the
    // client would get the full answer rather than a wrong 304.
    wire::etag(generation)
        .parse::<ETag>()
        .is_ok_and(|tag| !inm.precondition_passes(&tag))
}

/// A permit for a long-poll of `wait`, or a zero wait when [`ConnLimits::max_long_polls`]
/// are already waiting: the client is then answered at once, as if its wait had ended, and
/// polls again. Refusing with an error instead would make every verifier retry in step.
///
/// [`ConnLimits::max_long_polls`]: crate::limits::ConnLimits::max_long_polls
fn long_poll(st: &Inner, wait: Duration) -> (Duration, Option<OwnedSemaphorePermit>) {
    if wait.is_zero() {
        return (wait, None);
    }
    match Arc::clone(&st.long_polls).try_acquire_owned() {
        Ok(permit) => (wait, Some(permit)),
        Err(_) => {
            st.counters.long_polls_shed_total.fetch_add(1, Relaxed);
            (Duration::ZERO, None)
        }
    }
}

/// Wait until the client does not hold the current generation (`holds` is false for it), up
/// to `wait` or shutdown; returns the current generation either way.
async fn wait_for_newer(st: &Inner, wait: Duration, holds: impl Fn(u64) -> bool) -> Arc<Published> {
    let mut rx = st.hub.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let cur = Arc::clone(&rx.borrow_and_update());
        if !holds(cur.generation) || st.shutdown.is_cancelled() {
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

/// A snapshot or delta answer, written under a turn of
/// [`ConnLimits::max_feed_writes`](crate::limits::ConnLimits::max_feed_writes).
fn feed_body(st: &Inner, bytes: axum::body::Bytes) -> Body {
    Body::new(crate::limits::GatedBody::new(bytes, &st.feed_writes))
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
    let inm = headers.typed_get::<IfNoneMatch>();
    let cur = match &inm {
        Some(inm) => {
            let (wait, _permit) = long_poll(st, wait);
            wait_for_newer(st, wait, |g| client_has(inm, g)).await
        }
        None => st.hub.current(),
    };
    if inm.is_some_and(|inm| client_has(&inm, cur.generation)) {
        return Ok((StatusCode::NOT_MODIFIED, generation_headers(cur.generation)).into_response());
    }
    // `Bytes::clone` shares the generation's buffer: every waiter woken by one publication
    // is answered from the same bytes, whatever the size of the snapshot.
    Ok((
        generation_headers(cur.generation),
        [(header::CONTENT_TYPE, "application/octet-stream")],
        feed_body(st, cur.snapshot.clone()),
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
    let (wait, permit) = long_poll(st, wait);
    let cur = wait_for_newer(st, wait, |g| g == q.since).await;
    drop(permit);
    match st.hub.deltas_since(q.since, &cur) {
        DeltaChain::UpToDate => {
            Ok((StatusCode::NO_CONTENT, generation_headers(cur.generation)).into_response())
        }
        DeltaChain::Chain { bytes, generation } => Ok((
            generation_headers(generation),
            [(header::CONTENT_TYPE, "application/octet-stream")],
            feed_body(st, bytes),
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

    fn inm(value: &'static str) -> Option<IfNoneMatch> {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
        h.typed_get::<IfNoneMatch>()
    }

    #[test]
    fn etag_forms() {
        assert!(HeaderMap::new().typed_get::<IfNoneMatch>().is_none());
        let holds = |v, g| inm(v).is_some_and(|i| client_has(&i, g));
        // The tag the sync client sends, and its weak form: the same generation.
        assert_eq!(format!("\"{}\"", 7), wire::etag(7));
        assert!(holds("\"7\"", 7));
        assert!(holds("W/\"12\"", 12));
        assert!(holds(" \"12\" ", 12));
        assert!(!holds("\"7\"", 12));
        assert!(!holds("\"12\"", 7));
        // Any tag of a list; `*` is every generation.
        assert!(holds("\"3\", W/\"12\"", 12));
        assert!(!holds("\"3\", \"4\"", 12));
        assert!(holds("*", 12));
        // Not an entity tag: names no generation, so the client gets the full answer.
        assert!(!holds("12", 12));
        assert!(!holds("W/12", 12));
        assert!(!holds("\"12", 12));
    }
}
