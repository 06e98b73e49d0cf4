//! The HTTP exact source against a stand-in publisher speaking the lookup contract, driven
//! through the tower layer (async path), with a cache in front; and a dead publisher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::support::tokens::*;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use revbloom::tower::BearerLayer;
use revbloom::verify::{
    CachedSource, ExactError, HttpExactSource, RevokedBy, Unavailable, Verifier, VerifyError,
};
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};

#[derive(Clone)]
struct Publisher {
    revoked: Arc<Vec<(Option<String>, String)>>,
    calls: Arc<AtomicU64>,
}

async fn lookup(
    State(p): State<Publisher>,
    Path(jti): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    p.calls.fetch_add(1, Ordering::Relaxed);
    let iss = q.get("iss").cloned();
    let revoked = p.revoked.iter().any(|(i, j)| *i == iss && *j == jti);
    Json(json!({"revoked": revoked, "jti": jti, "iss": iss, "exp": null}))
}

async fn start(revoked: Vec<(Option<String>, String)>) -> (String, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/v1/revocations/{jti}", get(lookup))
        .with_state(Publisher {
            revoked: Arc::new(revoked),
            calls: Arc::clone(&calls),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

async fn call(verifier: &Arc<Verifier>, token: &str) -> Response<String> {
    let svc = BearerLayer::<Value>::new(Arc::clone(verifier)).layer(tower::service_fn(
        |_r: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new("ok".to_owned()))
        },
    ));
    let mut req = Request::new(String::new());
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    svc.oneshot(req).await.unwrap()
}

#[tokio::test]
async fn http_source_confirms_positives_and_the_cache_absorbs_retries() {
    let t = now();
    // The filter holds a revoked jti with a '/' in it and a false positive stand-in: a jti in
    // the filter that the publisher says is not revoked.
    let state = state(&[("a/revoked", t + 600), ("fp-good", t + 600)], &[]);
    let (url, calls) = start(vec![(None, "a/revoked".to_owned())]).await;
    let source = Arc::new(CachedSource::new(HttpExactSource::new(&url).unwrap()));
    let verifier = Arc::new(
        Verifier::builder(hs256_key(), hs256_validation())
            .state(state)
            .async_exact_source(Arc::clone(&source))
            .build()
            .unwrap(),
    );
    let revoked = hs256(&claims("a/revoked", "u", 1));
    let fp = hs256(&claims("fp-good", "u", 1));
    let clear = hs256(&claims("never-revoked", "u", 1));
    for _ in 0..5 {
        let res = call(&verifier, &revoked).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("revoked"));
        assert_eq!(call(&verifier, &fp).await.status(), StatusCode::OK);
        assert_eq!(call(&verifier, &clear).await.status(), StatusCode::OK);
    }
    // One lookup per distinct positive; clear tokens never reach the publisher.
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(source.stats().hits, 8);
    // The synchronous path cannot await the HTTP source and says so.
    assert!(matches!(
        verifier.verify::<Value>(&fp),
        Err(VerifyError::Unavailable(Unavailable::ExactSourceIsAsync))
    ));
    assert!(matches!(
        verifier.verify_async::<Value>(&revoked).await,
        Err(VerifyError::Revoked { by: RevokedBy::Jti })
    ));
}

#[tokio::test]
async fn a_dead_publisher_fails_closed_with_503() {
    let t = now();
    let state = state(&[("in-filter", t + 600)], &[]);
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let source = HttpExactSource::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let verifier = Arc::new(
        Verifier::builder(hs256_key(), hs256_validation())
            .state(state)
            .async_exact_source(source)
            .build()
            .unwrap(),
    );
    let tok = hs256(&claims("in-filter", "u", 1));
    match verifier.verify_async::<Value>(&tok).await {
        Err(VerifyError::Unavailable(Unavailable::ExactSource(
            ExactError::Unreachable(_) | ExactError::Timeout,
        ))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        call(&verifier, &tok).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Tokens the filter clears do not need the publisher.
    let clear = hs256(&claims("other", "u", 1));
    assert_eq!(call(&verifier, &clear).await.status(), StatusCode::OK);
}
