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
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::config::Limits;
use super::limits::{ConnCounters, ConnLimits};
use super::metrics::{route_index, Metrics};
use super::publish::Hub;
use super::store::Store;
use revbloom::bounds::Bounds;
use revbloom::hash::normalize_issuer;

mod backchannel;
mod cutoffs;
mod deadline;
mod error;
mod extract;
mod feed;
mod health;
mod idp;
mod oauth_revoke;
mod revocations;

pub use backchannel::{BACKCHANNEL_LOGOUT, LOGOUT_EVENT};
pub use cutoffs::{MAX_BEFORE_AHEAD_SECS, MAX_CLAIM_BYTES};
pub use deadline::BodyTimedOut;
pub use error::ApiError;
pub use extract::Admin;
pub use feed::parse_wait;
pub use idp::{IdpError, IdpState, MAX_FORM_BYTES};
pub use oauth_revoke::OAUTH_REVOKE;

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
    pub(crate) conn: ConnLimits,
    pub(crate) counters: Arc<ConnCounters>,
    /// One permit per long-poll allowed to wait; see [`ConnLimits::max_long_polls`].
    pub(crate) long_polls: Arc<Semaphore>,
    /// One permit per snapshot or delta body being written; see
    /// [`ConnLimits::max_feed_writes`].
    pub(crate) feed_writes: Arc<Semaphore>,
    pub(crate) auth_log: extract::AuthLog,
    /// The identity-provider endpoints' state; `None` when none is configured.
    pub(crate) idp: Option<Arc<IdpState>>,
}

impl Inner {
    /// A copy sharing the store, hub, metrics, permits and identity-provider state, with an
    /// audit log of its own.
    fn copied(&self) -> Self {
        Self {
            store: self.store.clone(),
            hub: self.hub.clone(),
            metrics: Arc::clone(&self.metrics),
            limits: self.limits.clone(),
            bounds: self.bounds,
            admin_token: self.admin_token.clone(),
            shutdown: self.shutdown.clone(),
            conn: self.conn.clone(),
            counters: Arc::clone(&self.counters),
            long_polls: Arc::clone(&self.long_polls),
            feed_writes: Arc::clone(&self.feed_writes),
            auth_log: extract::AuthLog::default(),
            idp: self.idp.clone(),
        }
    }
}

impl AppState {
    /// State for [`router`] with the default [`ConnLimits`]. Cancelling `shutdown` ends
    /// pending long-polls early.
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
                conn: ConnLimits::default(),
                counters: Arc::default(),
                long_polls: Arc::new(Semaphore::new(ConnLimits::default().max_long_polls)),
                feed_writes: Arc::new(Semaphore::new(ConnLimits::default().max_feed_writes)),
                auth_log: extract::AuthLog::default(),
                idp: None,
            }),
        }
    }

    /// The same state serving the identity-provider endpoints with `idp` (see
    /// [`IdpState::start`]); without it they answer 404 `not_configured`.
    pub fn with_identity_providers(self, idp: Option<Arc<IdpState>>) -> Self {
        let mut inner = self.inner.copied();
        inner.idp = idp;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same state with connection limits `conn` (request size and body time, long-poll
    /// cap) and the listener's `counters`.
    pub fn with_conn_limits(self, conn: ConnLimits, counters: Arc<ConnCounters>) -> Self {
        let mut inner = self.inner.copied();
        inner.long_polls = Arc::new(Semaphore::new(conn.max_long_polls));
        inner.feed_writes = Arc::new(Semaphore::new(conn.max_feed_writes));
        inner.conn = conn;
        inner.counters = counters;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The counters of the listener, the long-poll cap and the admin audit log.
    pub fn counters(&self) -> &Arc<ConnCounters> {
        &self.inner.counters
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
        .merge(backchannel::router())
        .merge(oauth_revoke::router())
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
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuse request heads over our limits with our JSON (hyper's own, larger limits answer
/// without a body), and put the body-read deadline on the body.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let conn = &st.inner.conn;
    let (target, head) = crate::limits::head_sizes(&req);
    if target > conn.max_uri_bytes {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request target is {target} bytes; at most {} are accepted",
                conn.max_uri_bytes
            ),
        )
        .closing();
    }
    if head > conn.max_header_bytes || req.headers().len() > conn.max_headers {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request head is {head} bytes in {} fields; at most {} bytes in {} fields \
                 are accepted",
                req.headers().len(),
                conn.max_header_bytes,
                conn.max_headers
            ),
        )
        .closing();
    }
    let timeout = conn.body_read_timeout();
    let counters = Arc::clone(&st.inner.counters);
    next.run(req.map(|b| deadline::DeadlineBody::wrap(b, timeout, counters)))
        .await
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
    if let super::store::StoreError::TooManyClaims { .. } = e {
        return ApiError::new(
            StatusCode::CONFLICT,
            "too_many_cutoff_claims",
            e.to_string(),
        );
    }
    st.metrics.store_errors_total.fetch_add(1, Relaxed);
    tracing::error!(error = %e, "store write failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the revocation could not be stored and was NOT applied; retry",
    )
}

#[cfg(test)]
mod tests {
    //! Handler tests through `Router::oneshot`: no socket, the real store and publisher.

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::{Publisher, ServerConfig};

    const TOKEN: &str = "handler-test-admin-token";

    /// The router over a fresh store, with the store's writer and the publisher, which the
    /// caller keeps alive: dropping the publisher closes the channel long-polls wait on.
    async fn app(dir: &std::path::Path) -> (Router, crate::StoreWriter, Publisher) {
        let (router, writer, publisher, _) = app_with(dir, ConnLimits::default()).await;
        (router, writer, publisher)
    }

    /// [`app`] with connection limits `conn`, and the state to look into.
    async fn app_with(
        dir: &std::path::Path,
        conn: ConnLimits,
    ) -> (Router, crate::StoreWriter, Publisher, AppState) {
        let config = ServerConfig {
            data_dir: dir.to_path_buf(),
            ..ServerConfig::default()
        };
        let (store, writer) = Store::open(dir, None).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (publisher, hub) = Publisher::start(store.clone(), &config, None, metrics.clone())
            .await
            .unwrap();
        let state = AppState::new(
            store,
            hub,
            metrics,
            config.limits.clone(),
            config.window.bounds(),
            TOKEN.into(),
            CancellationToken::new(),
        )
        .with_conn_limits(conn, Arc::default());
        (router(state.clone()), writer, publisher, state)
    }

    async fn call(app: &Router, req: Request<Body>) -> (StatusCode, serde_json::Value, bool) {
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let challenge = res.headers().contains_key(header::WWW_AUTHENTICATE);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, body, challenge)
    }

    fn post(body: &str, auth: &[&str], content_type: &str) -> Request<Body> {
        let mut b =
            Request::post(revbloom::wire::REVOCATIONS).header(header::CONTENT_TYPE, content_type);
        for a in auth {
            b = b.header(header::AUTHORIZATION, *a);
        }
        b.body(Body::from(body.to_owned())).unwrap()
    }

    #[tokio::test]
    async fn admin_credentials_are_checked_before_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher) = app(dir.path()).await;
        let ok = format!("Bearer {TOKEN}");
        let cases: [(&[&str], StatusCode, &str); 5] = [
            (&[], StatusCode::UNAUTHORIZED, "missing_token"),
            (&["Basic abc"], StatusCode::UNAUTHORIZED, "missing_token"),
            (
                &["Bearer wrong-token"],
                StatusCode::UNAUTHORIZED,
                "invalid_token",
            ),
            (&["Bearer "], StatusCode::UNAUTHORIZED, "invalid_token"),
            (&[&ok, &ok], StatusCode::UNAUTHORIZED, "invalid_token"),
        ];
        for (auth, status, code) in cases {
            // A body that would be refused too: the credentials are judged first.
            let (s, body, challenge) = call(&app, post("{", auth, "application/json")).await;
            assert_eq!(
                (s, body["error"].as_str()),
                (status, Some(code)),
                "{auth:?}"
            );
            assert!(challenge, "{auth:?}: 401 without WWW-Authenticate");
        }
    }

    #[tokio::test]
    async fn body_rejections_become_the_documented_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher) = app(dir.path()).await;
        let auth = format!("Bearer {TOKEN}");
        let exp = revbloom::bounds::unix_now() + 600;
        let cases = [
            (
                "{}",
                "text/plain",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                "{",
                "application/json",
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                r#"{"jti":"a","Exp":1}"#,
                "application/json",
                StatusCode::BAD_REQUEST,
                "invalid_body",
            ),
            (
                "[]",
                "application/json",
                StatusCode::BAD_REQUEST,
                "empty_batch",
            ),
        ];
        for (body, ct, status, code) in cases {
            let (s, v, _) = call(&app, post(body, &[&auth], ct)).await;
            assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{body}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        // A bad item of a batch is named by its index, and nothing of the batch is stored.
        let batch = format!(r#"[{{"jti":"b1","exp":{exp}}},{{"jti":"","exp":{exp}}}]"#);
        let (s, v, _) = call(&app, post(&batch, &[&auth], "application/json")).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("empty_field"))
        );
        assert!(v["message"].as_str().unwrap().starts_with("item 1:"), "{v}");
        // The lookup takes the admin token (or the read token).
        let lookup = Request::get("/v1/revocations/b1")
            .header(header::AUTHORIZATION, &auth)
            .body(Body::empty())
            .unwrap();
        let (_, v, _) = call(&app, lookup).await;
        assert_eq!(v["revoked"], false);
        // One object and a batch are both accepted.
        let one = format!(r#"{{"jti":"c1","exp":{exp}}}"#);
        let (s, v, _) = call(&app, post(&one, &[&auth], "application/json")).await;
        assert_eq!((s, v["accepted"].as_u64()), (StatusCode::OK, Some(1)));
        let by_query = || Request::get("/v1/revocations?jti=c1");
        let req = by_query()
            .header(header::AUTHORIZATION, &auth)
            .body(Body::empty())
            .unwrap();
        let (_, v, _) = call(&app, req).await;
        assert_eq!(v["revoked"], true);
        // Without a token the lookup tells nothing.
        let (s, v, challenge) = call(&app, by_query().body(Body::empty()).unwrap()).await;
        assert_eq!((s, v.get("revoked")), (StatusCode::UNAUTHORIZED, None));
        assert!(challenge);
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_in_json() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher) = app(dir.path()).await;
        let (s, v, _) = call(&app, Request::get("/v2/x").body(Body::empty()).unwrap()).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let delete = Request::delete("/v1/cutoffs").body(Body::empty()).unwrap();
        let (s, v, _) = call(&app, delete).await;
        let expected = (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"));
        assert_eq!((s, v["error"].as_str()), expected);
        let no_since = Request::get("/v1/deltas").body(Body::empty()).unwrap();
        let (s, v, _) = call(&app, no_since).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query"))
        );
    }

    fn get(uri: &str, if_none_match: Option<&str>) -> Request<Body> {
        let mut b = Request::get(uri);
        if let Some(v) = if_none_match {
            b = b.header(header::IF_NONE_MATCH, v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn snapshot_is_not_modified_for_the_current_tag_in_any_form() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher) = app(dir.path()).await;
        let res = app
            .clone()
            .oneshot(get("/v1/snapshot", None))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
        let generation: u64 = etag.trim_matches('"').parse().unwrap();
        assert_eq!(etag, revbloom::wire::etag(generation));
        let older = revbloom::wire::etag(generation - 1);
        let cases = [
            (etag.clone(), StatusCode::NOT_MODIFIED),
            (format!("W/{etag}"), StatusCode::NOT_MODIFIED),
            (format!("{older}, {etag}"), StatusCode::NOT_MODIFIED),
            ("*".to_owned(), StatusCode::NOT_MODIFIED),
            (older.clone(), StatusCode::OK),
            (revbloom::wire::etag(generation + 1), StatusCode::OK),
            // Unquoted: not an entity tag, so it names no generation.
            (generation.to_string(), StatusCode::OK),
        ];
        for (inm, status) in cases {
            let res = app
                .clone()
                .oneshot(get("/v1/snapshot", Some(&inm)))
                .await
                .unwrap();
            assert_eq!(res.status(), status, "If-None-Match: {inm}");
            assert_eq!(res.headers()[header::ETAG], etag.as_str(), "{inm}");
        }
        // The long-poll waits while the client holds the current generation, then answers
        // 304; a client naming another generation (or none) is answered at once.
        let wait = std::time::Duration::from_millis(200);
        for inm in [etag.clone(), format!("W/{etag}")] {
            let t = Instant::now();
            let uri = "/v1/snapshot?wait=200ms";
            let res = app.clone().oneshot(get(uri, Some(&inm))).await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{inm}");
            assert!(t.elapsed() >= wait, "{inm}: answered before the wait ended");
        }
        for inm in [older, generation.to_string()] {
            let uri = "/v1/snapshot?wait=1h";
            let res = app.clone().oneshot(get(uri, Some(&inm))).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{inm}");
        }
    }

    #[tokio::test]
    async fn long_polls_over_the_cap_are_answered_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher, state) = app_with(
            dir.path(),
            ConnLimits {
                max_long_polls: 1,
                ..ConnLimits::default()
            },
        )
        .await;
        let res = app
            .clone()
            .oneshot(get("/v1/snapshot", None))
            .await
            .unwrap();
        let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
        let generation: u64 = etag.trim_matches('"').parse().unwrap();
        // The one allowed long-poll: it waits a minute (the test never awaits its end).
        let first = tokio::spawn(
            app.clone()
                .oneshot(get("/v1/snapshot?wait=60s", Some(&etag))),
        );
        let t = Instant::now();
        while state.inner.long_polls.available_permits() > 0 {
            assert!(
                t.elapsed().as_secs() < 10,
                "the first long-poll never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Beyond the cap: answered as if the wait had ended.
        let bound = std::time::Duration::from_secs(10);
        let snap = tokio::time::timeout(
            bound,
            app.clone()
                .oneshot(get("/v1/snapshot?wait=60s", Some(&etag))),
        )
        .await
        .expect("a long-poll over the cap waited")
        .unwrap();
        assert_eq!(snap.status(), StatusCode::NOT_MODIFIED);
        let uri = format!("/v1/deltas?since={generation}&wait=60s");
        let deltas = tokio::time::timeout(bound, app.clone().oneshot(get(&uri, None)))
            .await
            .expect("a long-poll over the cap waited")
            .unwrap();
        assert_eq!(deltas.status(), StatusCode::NO_CONTENT);
        assert_eq!(state.counters().long_polls_shed_total.load(Relaxed), 2);
        first.abort();
    }

    #[tokio::test]
    async fn snapshot_bodies_share_the_generations_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher, state) = app_with(dir.path(), ConnLimits::default()).await;
        let cur = state.inner.hub.current();
        let older = revbloom::wire::etag(cur.generation - 1);
        for inm in [None, Some(older.as_str())] {
            let res = app
                .clone()
                .oneshot(get("/v1/snapshot?wait=1s", inm))
                .await
                .unwrap();
            // Written in slices (see `limits::GatedBody`), each one a view of the same buffer.
            let mut body = res.into_body();
            let mut offset = 0;
            while let Some(frame) = std::future::poll_fn(|cx| {
                http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)
            })
            .await
            {
                let data = frame.unwrap().into_data().unwrap();
                let at = cur.snapshot[offset..].as_ptr();
                assert_eq!(data.as_ptr(), at, "{inm:?}: copied at {offset}");
                offset += data.len();
            }
            assert_eq!(offset, cur.snapshot.len());
        }
    }

    /// A `tracing` writer into a shared buffer, to read what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn failed_admin_auth_is_logged_with_the_peer_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher, state) = app_with(dir.path(), ConnLimits::default()).await;
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        // The test runtime is single-threaded, so the handlers log under this default.
        let _guard = tracing::subscriber::set_default(subscriber);
        let peer: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
        for _ in 0..50 {
            let mut req = post("{}", &["Bearer wrong-token"], "application/json");
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let (s, _, _) = call(&app, req).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED);
        }
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text
            .lines()
            .filter(|l| l.contains("admin authentication failed"))
            .collect();
        // 50 failures well inside a second on any machine but a stalled one: one line, or two
        // if a second boundary fell between them; never one per failure.
        assert!((1..=2).contains(&lines.len()), "{text}");
        assert!(lines[0].contains("peer=192.0.2.7:40000"), "{text}");
        assert_eq!(state.counters().admin_auth_failures_total.load(Relaxed), 50);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text_with_bounded_route_labels() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _writer, _publisher) = app(dir.path()).await;
        for uri in ["/healthz", "/wp-admin/setup.php", "/v1/nope"] {
            app.clone().oneshot(get(uri, None)).await.unwrap();
        }
        let res = app.clone().oneshot(get("/metrics", None)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains(
            "revbloom_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1\n"
        ), "{text}");
        assert!(
            text.contains(
                "revbloom_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("wp-admin") && !text.contains("/v1/nope"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE revbloom_revocations_total counter\n"),
            "{text}"
        );
    }
}
