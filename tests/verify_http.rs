//! The HTTP exact source against a stand-in publisher speaking the lookup contract, driven
//! through the tower layer (async path), with a cache in front; and a dead publisher.

#[cfg(feature = "server")]
mod server_support;
mod verify_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
use verify_support::*;

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

/// Any jti a token can carry reaches the real publisher's lookup byte for byte: the source
/// percent-encodes every byte outside RFC 3986 unreserved, and the publisher decodes it back.
#[cfg(feature = "server")]
mod through_the_real_publisher {
    use std::cell::RefCell;
    use std::collections::HashSet;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use revbloom::verify::{AsyncExactSource, ExactError, ExactQuery, HttpExactSource};
    use serde_json::json;

    use super::server_support;

    /// Arbitrary strings, and strings made of the bytes URLs mangle most.
    fn jtis() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[\t\r\n/?#%+ .~&=;:@\\\\a-zé€😀\u{0}]{1,12}",
            Just(".".to_owned()),
            Just("..".to_owned()),
        ]
        .prop_filter("the API refuses an empty jti", |j| {
            !j.is_empty() && j.len() <= revbloom::bounds::MAX_JTI_BYTES
        })
    }

    /// The same length in chars, one char different.
    fn one_char_off(jti: &str) -> String {
        let mut chars: Vec<char> = jti.chars().collect();
        chars[0] = if chars[0] == 'a' { 'b' } else { 'a' };
        chars.into_iter().collect()
    }

    async fn ask(
        source: &HttpExactSource,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, ExactError> {
        let query = ExactQuery {
            iss: None,
            jti,
            exp: Some(exp),
            generation: 1,
            now,
            stale: false,
        };
        source.is_revoked_async(&query).await
    }

    #[test]
    fn any_jti_round_trips_through_the_lookup() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let srv = rt.block_on(server_support::start(server_support::config(
            server_support::temp_dir("http-any-jti"),
        )));
        let base = format!("http://{}", srv.local_addr());
        let source = HttpExactSource::new(&base).unwrap();
        let http = server_support::client();
        let now = server_support::now();
        let exp = now + 3600;
        let revoked = RefCell::new(HashSet::new());
        let source = &source;
        let mut runner = TestRunner::new(Config {
            cases: 96,
            ..Config::default()
        });
        let result = runner.run(&jtis(), |jti| {
            rt.block_on(async {
                let res = http
                    .post(format!("{base}/v1/revocations"))
                    .bearer_auth(server_support::TOKEN)
                    .json(&json!({"jti": jti, "exp": exp}))
                    .send()
                    .await
                    .unwrap();
                prop_assert_eq!(res.status().as_u16(), 200, "{:?}", res.text().await);
                revoked.borrow_mut().insert(jti.clone());
                let got = ask(source, &jti, exp, now).await;
                prop_assert!(matches!(got, Ok(true)), "jti {:?}: {:?}", jti, got);
                let other = one_char_off(&jti);
                if !revoked.borrow().contains(&other) {
                    let got = ask(source, &other, exp, now).await;
                    prop_assert!(matches!(got, Ok(false)), "jti {:?}: {:?}", other, got);
                }
                Ok(())
            })
        });
        // Once the publisher has pruned (its first tick), "not revoked" for a token older than
        // its watermark vouches for nothing.
        let old = rt.block_on(async {
            for _ in 0..100 {
                match ask(source, "never-revoked", now - 1000, now).await {
                    Ok(false) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                    other => return other,
                }
            }
            Ok(false)
        });
        srv.shutdown();
        rt.block_on(srv.wait()).unwrap();
        result.unwrap();
        assert!(
            matches!(old, Err(ExactError::NotCovered { exp: Some(e), pruned_before })
                if e == now - 1000 && pruned_before >= now - 65),
            "{old:?}"
        );
    }
}
