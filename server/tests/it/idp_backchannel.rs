//! OIDC Back-Channel Logout end to end: Keycloak-shaped logout tokens with real RS256 and
//! ES256 signatures, keys fetched from a real JWKS server, posted to an in-process publisher
//! over a socket. Accepted tokens become `sid`/`sub` cutoffs that a `Verifier` fed the
//! published snapshot enforces; every invalid variant §2.6 lists is refused and stores
//! nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use revbloom::verify::{RevokedBy, Verifier, VerifyError};
use serde_json::{json, Value};

use crate::support::idp::{
    keycloak_logout_claims, random_id, Idp, JwksServer, Key, ISS, ISS_EC, ISS_ROTATING,
};
use crate::support::{client, fetch_snapshot, metric, now, open_published};

async fn post_logout(url: &str, token: &str) -> (u16, Option<String>, Value) {
    let body = format!("logout_token={token}");
    post_raw(url, "application/x-www-form-urlencoded", body).await
}

async fn post_raw(url: &str, content_type: &str, body: String) -> (u16, Option<String>, Value) {
    let r = client()
        .post(format!("{url}/v1/backchannel-logout"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cc = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    (
        status,
        cc,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn cutoffs_stored(url: &str) -> u64 {
    metric(&client(), url, "revbloom_cutoffs_total").await
}

/// The first published snapshot that lists a cutoff on `claim` (polled, bounded).
async fn snapshot_with(
    idp: &Idp,
    claim: &str,
) -> revbloom::SnapshotView<revbloom::snapshot::AlignedBytes> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bytes = fetch_snapshot(&client(), &idp.url).await;
        let view = open_published(&idp.data_dir(), &bytes);
        if view.cutoff_claims().iter().any(|c| &**c == claim) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot lists a {claim} cutoff"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A verifier of `key`'s access tokens (issuer `iss`, audience "orders") against `view`, its
/// clock `at`.
fn verifier(
    key: &Key,
    iss: &str,
    view: revbloom::SnapshotView<revbloom::snapshot::AlignedBytes>,
    at: u64,
) -> Verifier {
    let public = DecodingKey::from_jwk(&serde_json::from_value(key.jwk.clone()).unwrap()).unwrap();
    let mut v = Validation::new(key.alg);
    v.set_issuer(&[iss]);
    v.set_audience(&["orders"]);
    v.validate_exp = false;
    Verifier::builder(public, v)
        .state(Arc::new(view))
        .staleness(None, revbloom::StalenessPolicy::FailClosed)
        .clock(move || at)
        .build()
        .unwrap()
}

fn access(key: &Key, iss: &str, sub: &str, sid: &str, iat: u64) -> String {
    key.access_token(&json!({
        "iss": iss, "aud": "orders", "sub": sub, "sid": sid,
        "iat": iat, "exp": iat + 600, "jti": random_id(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_logout_tokens_cut_off_their_session() {
    let idp = Idp::start("bcl-ok", |_| {}).await;
    let t0 = now();
    // RS256, Keycloak-shaped: sid and sub; only the session is cut off.
    let logout = idp
        .rsa
        .logout_token(&keycloak_logout_claims(ISS, "user-1", "session-1", t0));
    let (status, cc, body) = post_logout(&idp.url, &logout).await;
    assert_eq!((status, cc.as_deref()), (200, Some("no-store")), "{body}");
    assert_eq!(cutoffs_stored(&idp.url).await, 1);
    let view = snapshot_with(&idp, "sid").await;
    let later = t0 + 30;
    let v = verifier(&idp.rsa, ISS, view, later);
    // Issued before the logout, of that session: refused by the sid cutoff.
    let before = access(&idp.rsa, ISS, "user-1", "session-1", t0 - 60);
    match v.verify::<Value>(&before) {
        Err(VerifyError::Revoked {
            by: RevokedBy::Cutoff { claim },
        }) => assert_eq!(claim, "sid"),
        other => panic!("a token of the logged-out session: {other:?}"),
    }
    // Another session of the same user, and a new login after the cutoff, pass.
    let other = access(&idp.rsa, ISS, "user-1", "session-2", t0 - 60);
    v.verify::<Value>(&other)
        .expect("another session of the user");
    let after = access(&idp.rsa, ISS, "user-1", "session-1", t0 + 20);
    v.verify::<Value>(&after)
        .expect("a token issued after the cutoff");
    // The cutoff is keyed on the issuer: the same sid of another issuer is not cut off.
    let foreign = access(
        &idp.rsa,
        "https://elsewhere",
        "user-1",
        "session-1",
        t0 - 60,
    );
    let mut vf = Validation::new(Algorithm::RS256);
    vf.set_audience(&["orders"]);
    vf.validate_exp = false;
    let view = snapshot_with(&idp, "sid").await;
    let v2 = Verifier::builder(
        DecodingKey::from_jwk(&serde_json::from_value(idp.rsa.jwk.clone()).unwrap()).unwrap(),
        vf,
    )
    .state(Arc::new(view))
    .staleness(None, revbloom::StalenessPolicy::FailClosed)
    .clock(move || later)
    .build()
    .unwrap();
    v2.verify::<Value>(&foreign)
        .expect("another issuer's session of the same id");

    // ES256, `sub` only (no sid): every session of the user is cut off.
    let mut claims = keycloak_logout_claims(ISS_EC, "user-2", "unused", t0);
    claims.as_object_mut().unwrap().remove("sid");
    let (status, _, body) = post_logout(&idp.url, &idp.ec.logout_token(&claims)).await;
    assert_eq!(status, 200, "{body}");
    let view = snapshot_with(&idp, "sub").await;
    let v = verifier(&idp.ec, ISS_EC, view, later);
    let before = access(&idp.ec, ISS_EC, "user-2", "any-session", t0 - 60);
    assert!(
        matches!(v.verify::<Value>(&before), Err(VerifyError::Revoked { .. })),
        "a token of a user logged out by sub"
    );
    let after = access(&idp.ec, ISS_EC, "user-2", "any-session", t0 + 20);
    v.verify::<Value>(&after).expect("a login after the logout");
    assert_eq!(
        metric(
            &client(),
            &idp.url,
            "revbloom_backchannel_logouts_total{outcome=\"accepted\"}"
        )
        .await,
        2
    );
    idp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_logout_tokens_are_refused_and_change_nothing() {
    let idp = Idp::start("bcl-bad", |_| {}).await;
    let t0 = now();
    let good = || keycloak_logout_claims(ISS, "user-9", &random_id(), t0);
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = good();
        f(c.as_object_mut().unwrap());
        idp.rsa.logout_token(&c)
    };
    let stranger = Key::rsa(2, "rsa-1"); // same kid, another key
    let replayed = idp.rsa.logout_token(&good());
    let (s, _, b) = post_logout(&idp.url, &replayed).await;
    assert_eq!(s, 200, "{b}");
    let stored = cutoffs_stored(&idp.url).await;
    let ev = "http://schemas.openid.net/event/backchannel-logout";
    let mut forged = idp.rsa.logout_token(&good());
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let alg_none = format!(
        "{}.{}.",
        crate::support::idp::b64(br#"{"alg":"none","typ":"logout+jwt"}"#),
        crate::support::idp::b64(good().to_string().as_bytes())
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad signature", forged, "signature"),
        (
            "another key, same kid",
            stranger.logout_token(&good()),
            "signature",
        ),
        (
            "wrong aud",
            with(&|c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
            "aud",
        ),
        (
            "nonce",
            with(&|c| {
                c.insert("nonce".into(), json!("n-1"));
            }),
            "nonce",
        ),
        (
            "no event member",
            with(&|c| {
                c.insert("events".into(), json!({"http://example.com/other": {}}));
            }),
            "events",
        ),
        (
            "event not an object",
            with(&|c| {
                c.insert("events".into(), json!({ev: true}));
            }),
            "not a JSON object",
        ),
        (
            "no events",
            with(&|c| {
                c.remove("events");
            }),
            "events",
        ),
        ("replayed jti", replayed, "already received"),
        (
            "iat too old",
            with(&|c| {
                c.insert("iat".into(), json!(t0 - 3600));
                c.insert("exp".into(), json!(t0 + 120));
            }),
            "older",
        ),
        (
            "iat in the future",
            with(&|c| {
                c.insert("iat".into(), json!(t0 + 3600));
                c.insert("exp".into(), json!(t0 + 3720));
            }),
            "ahead",
        ),
        (
            "exp past",
            with(&|c| {
                c.insert("iat".into(), json!(t0 - 200));
                c.insert("exp".into(), json!(t0 - 100));
            }),
            "exp",
        ),
        (
            "no sid, no sub",
            with(&|c| {
                c.remove("sid");
                c.remove("sub");
            }),
            "neither",
        ),
        (
            "no jti",
            with(&|c| {
                c.remove("jti");
            }),
            "jti",
        ),
        (
            "unknown issuer",
            with(&|c| {
                c.insert("iss".into(), json!("https://evil.example.com/realms/acme"));
            }),
            "trusted",
        ),
        ("alg none", alg_none, "none"),
        (
            "wrong typ",
            idp.rsa.sign_with_header(json!({"typ": "at+jwt"}), &good()),
            "typ",
        ),
        ("JWE", "a.b.c.d.e".into(), "encrypted"),
        ("garbage", "not-a-token".into(), "JWS"),
    ];
    for (name, token, why) in cases {
        let (status, cc, body) = post_logout(&idp.url, &token).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(cc.as_deref(), Some("no-store"), "{name}");
        assert_eq!(body["error"], "invalid_request", "{name}: {body}");
        let d = body["error_description"].as_str().unwrap();
        assert!(d.contains(why), "{name}: {d}");
    }
    // `application/logout+jwt`, `JWT` and no `typ` are accepted (fresh jtis).
    for header in [
        json!({"typ": "application/Logout+JWT"}),
        json!({"typ": "JWT"}),
        json!({}),
    ] {
        let t = idp.rsa.sign_with_header(header, &good());
        let (s, _, b) = post_logout(&idp.url, &t).await;
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(
        cutoffs_stored(&idp.url).await,
        stored + 3,
        "a refusal stored something"
    );
    let series = "revbloom_backchannel_logouts_total{outcome=\"replayed\"}";
    assert_eq!(metric(&client(), &idp.url, series).await, 1);
    idp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_publisher_stays_ready() {
    let idp = Idp::start("bcl-req", |_| {}).await;
    let token = idp
        .rsa
        .logout_token(&keycloak_logout_claims(ISS, "u", "s", now()));
    let form = "application/x-www-form-urlencoded";
    let huge = format!("logout_token={}", "a".repeat(20 * 1024));
    let cases = [
        (form, huge, 413),
        (
            "application/json",
            format!("{{\"logout_token\":\"{token}\"}}"),
            415,
        ),
        (form, "token=abc".to_owned(), 400),
        (
            form,
            format!("logout_token={token}&logout_token={token}"),
            400,
        ),
        (form, "logout_token=%FF%FE".to_owned(), 400),
        (form, String::new(), 400),
    ];
    for (ct, body, status) in cases {
        let (s, _, b) = post_raw(&idp.url, ct, body).await;
        assert_eq!(s, status, "{ct}: {b}");
        assert!(
            b["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{b}"
        );
    }
    // Other methods: 405 in JSON.
    let r = client()
        .get(format!("{}/v1/backchannel-logout", idp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = client()
        .get(format!("{}/readyz", idp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _, b) = post_logout(&idp.url, &token).await;
    assert_eq!(s, 200, "{b}");
    idp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_identity_providers_the_endpoints_say_what_to_configure() {
    let data = crate::support::temp_dir("bcl-off");
    let running = crate::support::start(crate::support::config(data.clone())).await;
    let url = running.url();
    for path in ["/v1/backchannel-logout", "/v1/oauth/revoke"] {
        let r = client()
            .post(format!("{url}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_configured", "{path}");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("identity_providers"));
    }
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_keys_is_reported_and_refused_with_503_not_400() {
    // The EC issuer's JWKS URL answers 500. (A port freed for the occasion could be taken by
    // another test's JWKS server, which publishes this very key.)
    let dead = JwksServer::start(&json!({"keys": []})).await;
    dead.set(None);
    let idp = Idp::start("bcl-nokeys", |c| {
        c.identity_providers.issuers[1].jwks_url = dead.url.clone();
    })
    .await;
    let http = client();
    let readyz = |http: reqwest::Client, url: String| async move {
        let r = http.get(format!("{url}/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    // The RS256 issuer's keys arrive; the EC issuer's never do. The publisher stays ready
    // (storing and publishing revocations is unaffected) and says which issuer lacks keys.
    let t = Instant::now();
    let body = loop {
        let (status, body) = readyz(http.clone(), idp.url.clone()).await;
        assert_eq!(status, 200, "{body}");
        let missing = body["identity_provider_keys_missing"]
            .as_array()
            .unwrap()
            .clone();
        if missing.len() == 1 {
            break body;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let missing = &body["identity_provider_keys_missing"][0];
    assert_eq!(missing["iss"], ISS_EC, "{body}");
    // A logout token of that issuer: its validity cannot be known, so 503, never 400 or 200.
    let logout = idp
        .ec
        .logout_token(&keycloak_logout_claims(ISS_EC, "u", "s", now()));
    let (status, _, b) = post_logout(&idp.url, &logout).await;
    assert_eq!(status, 503, "{b}");
    // The other issuer works.
    let logout = idp
        .rsa
        .logout_token(&keycloak_logout_claims(ISS, "u", "s", now()));
    let (status, _, b) = post_logout(&idp.url, &logout).await;
    assert_eq!(status, 200, "{b}");
    idp.stop().await;
}

/// A logout token signed with a key its issuer has not published, while the issuer's JWKS URL
/// fails: whether the token is valid cannot be known, so 503 (the IdP retries), not 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_not_yet_fetchable_gets_503_not_400() {
    let old = Key::es256(21, "old");
    let new = Key::es256(22, "new");
    let (idp, jwks_server) = Idp::start_rotating("bcl-rotation", &[&old]).await;
    // The old key's logout tokens are accepted: the issuer's keys are loaded.
    let logout = old.logout_token(&keycloak_logout_claims(ISS_ROTATING, "u", "s1", now()));
    let (status, _, b) = post_logout(&idp.url, &logout).await;
    assert_eq!(status, 200, "{b}");
    let before = cutoffs_stored(&idp.url).await;
    // The issuer rotates while its JWKS URL fails.
    jwks_server.set(None);
    let logout = new.logout_token(&keycloak_logout_claims(ISS_ROTATING, "u", "s2", now()));
    let (status, _, b) = post_logout(&idp.url, &logout).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{b}"
    );
    assert_eq!(cutoffs_stored(&idp.url).await, before);
    let series = "revbloom_backchannel_logouts_total{outcome=\"keys_unavailable\"}";
    assert_eq!(metric(&client(), &idp.url, series).await, 1);
    idp.stop().await;
}
