//! RFC 7009 token revocation end to end: a configured client hands in RS256 and ES256 access
//! tokens signed by keys a real JWKS server publishes; each is stored with its own `(iss, jti,
//! exp)`, as the exact lookup shows. Foreign, forged and expired tokens get 200 and store
//! nothing; opaque tokens get `unsupported_token_type`; bad clients get 401; a token whose key
//! cannot be fetched yet gets 503 until it can.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::idp::{
    jwks, random_id, Idp, Key, CLIENT_ID, CLIENT_SECRET, ISS, ISS_EC, ISS_ROTATING,
};
use crate::support::{client, lookup_issued, metric, now};

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn revoke(
    url: &str,
    auth: Option<&str>,
    form: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .post(format!("{url}/v1/oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn token(key: &Key, iss: &str, jti: &str, exp: u64) -> String {
    key.access_token(&json!({
        "iss": iss, "aud": "some-api", "sub": "u", "iat": now() - 10, "exp": exp, "jti": jti,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_are_revoked_with_their_own_exp() {
    let idp = Idp::start("rfc7009-ok", |_| {}).await;
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let exp_rsa = now() + 900;
    let exp_ec = now() + 1800;
    let (jti_rsa, jti_ec) = (random_id(), random_id());
    for (key, iss, jti, exp) in [
        (&idp.rsa, ISS, &jti_rsa, exp_rsa),
        (&idp.ec, ISS_EC, &jti_ec, exp_ec),
    ] {
        let form = format!(
            "token={}&token_type_hint=access_token",
            token(key, iss, jti, exp)
        );
        let (s, h, b) = revoke(&idp.url, Some(&auth), &form).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(h["cache-control"], "no-store");
        let v = lookup_issued(&client(), &idp.url, jti, Some(iss)).await;
        assert_eq!(v["revoked"], true, "{v}");
        assert_eq!(v["exp"], exp, "stored with the token's own exp: {v}");
    }
    // Without `exp`: revoked by jti whatever its exp.
    let jti = random_id();
    let t = idp
        .rsa
        .access_token(&json!({"iss": ISS, "sub": "u", "iat": now(), "jti": jti}));
    let (s, _, b) = revoke(&idp.url, Some(&auth), &format!("token={t}")).await;
    assert_eq!(s, 200, "{b}");
    let v = lookup_issued(&client(), &idp.url, &jti, Some(ISS)).await;
    assert_eq!(v["revoked"], true, "{v}");
    assert!(v["revoked_before"].is_u64(), "{v}");
    let series = "revbloom_oauth_revocations_total{outcome=\"revoked\"}";
    assert_eq!(metric(&client(), &idp.url, series).await, 3);
    idp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_200_and_store_nothing_and_bad_clients_get_401() {
    let idp = Idp::start("rfc7009-bad", |_| {}).await;
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let stranger = Key::rsa(2, "rsa-1");
    let jti = random_id();
    let exp = now() + 900;
    let mut forged = token(&idp.rsa, ISS, &jti, exp);
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let ignored = [
        (
            "foreign issuer",
            token(&idp.rsa, "https://other.example.com", &jti, exp),
            "ignored_foreign_issuer",
        ),
        ("forged signature", forged, "ignored_invalid"),
        (
            "another key under a published kid",
            token(&stranger, ISS, &jti, exp),
            "ignored_invalid",
        ),
        (
            "expired",
            token(&idp.rsa, ISS, &jti, now() - 3600),
            "ignored_expired",
        ),
    ];
    for (name, t, outcome) in ignored {
        let (s, h, b) = revoke(&idp.url, Some(&auth), &format!("token={t}")).await;
        assert_eq!(s, 200, "{name}: {b}");
        assert_eq!(h["cache-control"], "no-store", "{name}");
        let series = format!("revbloom_oauth_revocations_total{{outcome=\"{outcome}\"}}");
        assert!(metric(&client(), &idp.url, &series).await >= 1, "{name}");
    }
    for iss in [None, Some(ISS), Some("https://other.example.com")] {
        let v = lookup_issued(&client(), &idp.url, &jti, iss).await;
        assert_eq!(v["revoked"], false, "{iss:?}: {v}");
    }
    // Opaque and encrypted tokens, and JWTs without jti: unsupported_token_type.
    let no_jti = idp
        .rsa
        .access_token(&json!({"iss": ISS, "sub": "u", "iat": now(), "exp": exp}));
    for t in ["2YotnFZFEjr1zCsicMWpAA", "a.b.c.d.e", no_jti.as_str()] {
        let (s, _, b) = revoke(&idp.url, Some(&auth), &format!("token={t}")).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("unsupported_token_type")),
            "{t}: {b}"
        );
    }
    // Missing token.
    let (s, _, b) = revoke(&idp.url, Some(&auth), "token_type_hint=access_token").await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // Client authentication: missing, wrong secret, unknown client, not Basic, garbage.
    let good = token(&idp.rsa, ISS, &random_id(), exp);
    let form = format!("token={good}");
    let wrong = basic(CLIENT_ID, "orders-secret-0123456780");
    let unknown = basic("someone", CLIENT_SECRET);
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(unknown.as_str()),
        Some("Bearer abc"),
        Some("Basic !!!"),
    ] {
        let (s, h, b) = revoke(&idp.url, auth, &form).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (401, Some("invalid_client")),
            "{auth:?}: {b}"
        );
        assert_eq!(
            h["www-authenticate"], "Basic realm=\"revbloom\"",
            "{auth:?}"
        );
    }
    // Only POST.
    let r = client()
        .get(format!("{}/v1/oauth/revoke", idp.url))
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
    idp.stop().await;
}

/// A token signed with a key its issuer has not published yet, while the issuer's JWKS URL
/// fails: the revocation cannot be verified, so it is answered 503 (retry), never 200 with
/// nothing stored; once the key is published, the client's retry revokes the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_not_yet_fetchable_gets_503_and_the_retry_revokes() {
    let old = Key::es256(11, "old");
    let new = Key::es256(12, "new");
    let (idp, jwks_server) = Idp::start_rotating("rfc7009-rotation", &[&old]).await;
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let exp = now() + 900;
    // The old key's tokens are revoked: the issuer's keys are loaded.
    let jti = random_id();
    let form = format!("token={}", token(&old, ISS_ROTATING, &jti, exp));
    let (s, _, b) = revoke(&idp.url, Some(&auth), &form).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        lookup_issued(&client(), &idp.url, &jti, Some(ISS_ROTATING)).await["revoked"],
        true
    );

    // The issuer rotates while its JWKS URL fails.
    jwks_server.set(None);
    let jti = random_id();
    let form = format!("token={}", token(&new, ISS_ROTATING, &jti, exp));
    let (s, h, b) = revoke(&idp.url, Some(&auth), &form).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{b}"
    );
    assert_eq!(h["cache-control"], "no-store");
    let v = lookup_issued(&client(), &idp.url, &jti, Some(ISS_ROTATING)).await;
    assert_eq!(v["revoked"], false, "{v}");
    let series = "revbloom_oauth_revocations_total{outcome=\"keys_unavailable\"}";
    assert_eq!(metric(&client(), &idp.url, series).await, 1);

    // The key is published: the client's retries succeed once the publisher refetches
    // (at most one refetch interval, 10 s, later).
    jwks_server.set(Some(&jwks(&[&old, &new])));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (s, _, b) = revoke(&idp.url, Some(&auth), &form).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 503, "{b}");
        assert!(std::time::Instant::now() < deadline, "never revoked: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let v = lookup_issued(&client(), &idp.url, &jti, Some(ISS_ROTATING)).await;
    assert_eq!(v["revoked"], true, "{v}");
    assert_eq!(v["exp"], exp, "{v}");

    // A kid the issuer never published, in a token issued an hour ago: the keys were fetched
    // after that, so the token is not the issuer's (200, nothing stored), however recently a
    // fetch ran.
    let stranger = Key::es256(13, "never-published");
    let jti = random_id();
    let t = stranger.access_token(&json!({
        "iss": ISS_ROTATING, "sub": "u", "iat": now() - 3600, "exp": exp, "jti": jti,
    }));
    let (s, _, b) = revoke(&idp.url, Some(&auth), &format!("token={t}")).await;
    assert_eq!(s, 200, "{b}");
    let v = lookup_issued(&client(), &idp.url, &jti, Some(ISS_ROTATING)).await;
    assert_eq!(v["revoked"], false, "{v}");
    idp.stop().await;
}
