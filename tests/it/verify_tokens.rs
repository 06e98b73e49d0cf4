//! Real HS256/ES256 tokens through the tower layer: what passes, what is refused and how.

use std::convert::Infallible;
use std::sync::Arc;

use crate::support::tokens::*;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use revbloom::tower::BearerLayer;
use revbloom::verify::{Checked, MemoryExactSource, MemoryState, RevokedBy, Verifier, VerifyError};
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};

/// Echoes the claims the layer put into the request extensions.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let claims = req
        .extensions()
        .get::<Value>()
        .cloned()
        .unwrap_or(Value::Null);
    Ok(Response::new(claims.to_string()))
}

fn request(auth: Option<HeaderValue>) -> Request<String> {
    let mut r = Request::new(String::new());
    if let Some(v) = auth {
        r.headers_mut().insert(AUTHORIZATION, v);
    }
    r
}

fn bearer(token: &str) -> Option<HeaderValue> {
    Some(HeaderValue::from_str(&format!("Bearer {token}")).unwrap())
}

async fn call(verifier: &Arc<Verifier>, auth: Option<HeaderValue>) -> Response<String> {
    let svc = BearerLayer::<Value>::new(Arc::clone(verifier)).layer(tower::service_fn(echo));
    svc.oneshot(request(auth)).await.unwrap()
}

fn www(res: &Response<String>) -> String {
    res.headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

struct Fixture {
    verifier: Arc<Verifier>,
    exact: Arc<MemoryExactSource>,
}

/// A verifier with one revoked jti, a `sub` cutoff on "mallory" and a `sid` cutoff on
/// "sess-9", both at `now`.
fn fixture(key: DecodingKey, validation: Validation) -> Fixture {
    let t = now();
    let exp = t + 600;
    let state = state(
        &[("revoked-1", exp)],
        &[("sub", "mallory", t), ("sid", "sess-9", t)],
    );
    let exact = Arc::new(MemoryExactSource::new());
    exact.revoke(None, "revoked-1", Some(exp));
    let verifier = Verifier::builder(key, validation)
        .state(state)
        .exact_source(Arc::clone(&exact))
        .cutoff_claims(&["sub", "sid"])
        .build()
        .unwrap();
    Fixture {
        verifier: Arc::new(verifier),
        exact,
    }
}

fn revoked_token_cases(sign: fn(&Value) -> String) -> Vec<(Value, bool)> {
    let t = now();
    vec![
        // (claims, expect pass)
        (
            json!({"jti": "ok-1", "sub": "alice", "iat": t, "exp": t + 600}),
            true,
        ),
        (
            json!({"jti": "revoked-1", "sub": "alice", "iat": t, "exp": t + 600}),
            false,
        ),
        (
            json!({"jti": "m-old", "sub": "mallory", "iat": t - 10, "exp": t + 600}),
            false,
        ),
        (
            json!({"jti": "m-noiat", "sub": "mallory", "exp": t + 600}),
            false,
        ),
        (
            json!({"jti": "m-new", "sub": "mallory", "iat": t, "exp": t + 600}),
            true,
        ),
        (
            json!({"jti": "s-old", "sub": "bob", "sid": "sess-9", "iat": t - 1, "exp": t + 600}),
            false,
        ),
        (
            json!({"jti": "s-new", "sub": "bob", "sid": "sess-9", "iat": t + 1, "exp": t + 600}),
            true,
        ),
        (
            json!({"jti": "s-other", "sub": "bob", "sid": "sess-8", "iat": t - 1, "exp": t + 600}),
            true,
        ),
    ]
    .into_iter()
    .map(|(c, ok)| {
        let _ = sign(&c);
        (c, ok)
    })
    .collect()
}

async fn check_matrix(f: &Fixture, sign: fn(&Value) -> String) {
    for (claims, pass) in revoked_token_cases(sign) {
        let res = call(&f.verifier, bearer(&sign(&claims))).await;
        if pass {
            assert_eq!(res.status(), StatusCode::OK, "{claims}");
            let body: Value = serde_json::from_str(res.body()).unwrap();
            assert_eq!(body, claims);
        } else {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{claims}");
            assert_eq!(
                www(&res),
                "Bearer error=\"invalid_token\", error_description=\"the access token has been revoked\""
            );
            assert!(res.body().is_empty());
        }
    }
    // Only the revoked jti reached the exact source: cutoffs and newer logins are local.
    assert_eq!(f.exact.calls(), 1);
    assert_eq!(f.verifier.stats().exact_calls, 1);
}

#[tokio::test]
async fn hs256_valid_revoked_and_cutoffs() {
    let f = fixture(hs256_key(), hs256_validation());
    check_matrix(&f, hs256).await;
}

#[tokio::test]
async fn es256_valid_revoked_and_cutoffs() {
    let f = fixture(es256_key(), Validation::new(Algorithm::ES256));
    check_matrix(&f, es256).await;
}

#[test]
fn revocation_reasons_are_typed() {
    let f = fixture(hs256_key(), hs256_validation());
    let t = now();
    let v = |c: Value| f.verifier.verify::<Value>(&hs256(&c));
    assert!(matches!(
        v(json!({"jti": "revoked-1", "sub": "a", "iat": t, "exp": t + 600})),
        Err(VerifyError::Revoked { by: RevokedBy::Jti })
    ));
    match v(json!({"jti": "x", "sub": "b", "sid": "sess-9", "iat": t - 1, "exp": t + 600})) {
        Err(VerifyError::Revoked {
            by: RevokedBy::Cutoff { claim },
        }) => assert_eq!(claim, "sid"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn invalid_tokens_are_401_with_the_reason_class() {
    let t = now();
    let mut validation = hs256_validation();
    validation.set_audience(&["api"]);
    let f = fixture(hs256_key(), validation);
    let good = json!({"jti": "a", "sub": "u", "aud": "api", "iat": t, "exp": t + 600});
    let res = call(&f.verifier, bearer(&hs256(&good))).await;
    assert_eq!(res.status(), StatusCode::OK);

    let cases = [
        (
            hs256_with(b"wrong-secret", &good),
            "the access token is invalid",
        ),
        (
            hs256(&json!({"jti": "b", "sub": "u", "aud": "api", "iat": t - 900, "exp": t - 300})),
            "the access token expired",
        ),
        (
            hs256(&json!({"jti": "c", "sub": "u", "aud": "other", "iat": t, "exp": t + 600})),
            "the access token is invalid",
        ),
        (
            hs256(&json!({"sub": "u", "aud": "api", "iat": t, "exp": t + 600})),
            "the access token has no jti claim",
        ),
        (es256(&good), "the access token is invalid"),
        ("a.b.c".to_owned(), "the access token is invalid"),
    ];
    for (token, description) in cases {
        let res = call(&f.verifier, bearer(&token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(
            www(&res),
            format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
        );
        assert!(res.body().is_empty());
    }
    assert_eq!(f.exact.calls(), 0);
}

#[tokio::test]
async fn garbage_authorization_headers_never_reach_the_verifier() {
    let f = fixture(hs256_key(), hs256_validation());
    let huge = format!("Bearer {}", "a".repeat(10 * 1024 * 1024));
    let cases: Vec<(Option<HeaderValue>, StatusCode, &str)> = vec![
        (None, StatusCode::UNAUTHORIZED, "Bearer"),
        (
            Some(HeaderValue::from_static("Basic dXNlcjpwdw==")),
            StatusCode::UNAUTHORIZED,
            "Bearer",
        ),
        (
            Some(HeaderValue::from_static("")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some(HeaderValue::from_static("Bearer")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some(HeaderValue::from_static("Bearer    ")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some(HeaderValue::from_static("Bearer a\"b")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some(HeaderValue::from_str(&huge).unwrap()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some(HeaderValue::from_bytes(b"Bearer \xff\xfe\x80token").unwrap()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Some(HeaderValue::from_static("Bearer not-a-jwt")),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            Some(HeaderValue::from_static("Bearer ....")),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
    ];
    for (header, status, marker) in cases {
        let res = call(&f.verifier, header.clone()).await;
        assert_eq!(res.status(), status, "{header:?}");
        assert!(www(&res).contains(marker), "{header:?}: {}", www(&res));
        assert!(res.body().is_empty());
    }
    assert_eq!(f.exact.calls(), 0);
}

#[tokio::test]
async fn a_filter_positive_without_exact_source_is_refused() {
    let t = now();
    let state: MemoryState = state(&[("revoked-1", t + 600)], &[]);
    let verifier = Arc::new(
        Verifier::builder(hs256_key(), hs256_validation())
            .state(state)
            .build()
            .unwrap(),
    );
    let token = hs256(&claims("revoked-1", "alice", 0));
    assert!(matches!(
        verifier.verify::<Value>(&token),
        Err(VerifyError::Revoked {
            by: RevokedBy::JtiUnconfirmed
        })
    ));
    let res = call(&verifier, bearer(&token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(www(&res).contains("revoked"));
}

/// Two issuers sharing a jti: the filter (keyed on the jti alone) matches both, and the exact
/// source, which compares issuers, clears the other issuer's token. Cutoffs are per issuer.
#[test]
fn issuers_are_kept_apart_by_the_exact_source_and_cutoffs() {
    let t = now();
    let mut w = window();
    let h = *w.hasher();
    w.insert_hash(h.hash("j-1"), Some(t + 600));
    let mut cutoffs = revbloom::CutoffSet::new();
    cutoffs.insert(
        revbloom::CutoffKey::new(&h, Some(b"https://a"), "sub", "eve"),
        t,
    );
    let state = MemoryState::new(w, cutoffs, 1, t);
    let exact = Arc::new(MemoryExactSource::new());
    exact.revoke(Some("https://a"), "j-1", Some(t + 600));
    let mut validation = hs256_validation();
    validation.set_issuer(&["https://a", "https://b"]);
    let verifier = Verifier::builder(hs256_key(), validation)
        .state(state)
        .exact_source(Arc::clone(&exact))
        .build()
        .unwrap();
    let tok = |iss: &str, jti: &str, sub: &str| {
        hs256(&json!({"iss": iss, "jti": jti, "sub": sub, "iat": t - 1, "exp": t + 600}))
    };
    assert!(matches!(
        verifier.verify::<Value>(&tok("https://a", "j-1", "x")),
        Err(VerifyError::Revoked { by: RevokedBy::Jti })
    ));
    assert_eq!(
        verifier
            .verify::<Value>(&tok("https://b", "j-1", "x"))
            .unwrap()
            .checked,
        Checked::ExactSource
    );
    assert!(matches!(
        verifier.verify::<Value>(&tok("https://a", "j-2", "eve")),
        Err(VerifyError::Revoked {
            by: RevokedBy::Cutoff { .. }
        })
    ));
    assert!(verifier
        .verify::<Value>(&tok("https://b", "j-2", "eve"))
        .is_ok());
    // iss becomes required when keying on it.
    let no_iss = hs256(&claims("j-3", "x", 1));
    assert!(matches!(
        verifier.verify::<Value>(&no_iss),
        Err(VerifyError::Invalid(_))
    ));
}

#[test]
fn the_filters_expired_verdict_is_an_expired_error() {
    // With jsonwebtoken's own exp check off, a token older than anything the window covers
    // is still refused: the filter no longer knows about it.
    let t = now();
    let mut validation = hs256_validation();
    validation.validate_exp = false;
    let verifier = Verifier::builder(hs256_key(), validation)
        .state(state(&[], &[]))
        .build()
        .unwrap();
    let old = hs256(&json!({"jti": "old", "sub": "a", "iat": t - 100_000, "exp": t - 90_000}));
    assert!(matches!(
        verifier.verify::<Value>(&old),
        Err(VerifyError::Expired)
    ));
}

#[test]
fn without_required_jti_only_cutoffs_apply() {
    let t = now();
    let verifier = Verifier::builder(hs256_key(), hs256_validation())
        .state(state(&[], &[("sub", "mallory", t)]))
        .require_jti(false)
        .build()
        .unwrap();
    let ok = hs256(&json!({"sub": "alice", "iat": t - 1, "exp": t + 600}));
    let cut = hs256(&json!({"sub": "mallory", "iat": t - 1, "exp": t + 600}));
    assert_eq!(
        verifier.verify::<Value>(&ok).unwrap().checked,
        revbloom::verify::Checked::NotApplicable
    );
    assert!(matches!(
        verifier.verify::<Value>(&cut),
        Err(VerifyError::Revoked {
            by: RevokedBy::Cutoff { .. }
        })
    ));
}
