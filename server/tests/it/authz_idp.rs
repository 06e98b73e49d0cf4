//! From the identity provider to the sidecar, end to end: an RS256 token (keys from a real
//! JWKS server) is allowed by `revbloom authz`; revoked through the publisher's RFC 7009
//! endpoint — by the token alone, its `exp` read from it — it is refused by the sidecar; a
//! Keycloak-shaped back-channel logout of another session cuts that session off there too.
//! The binary's Envoy ext_authz gRPC listener answers as its HTTP check listener does.
//! The time each takes to reach the sidecar is printed: it is the freshness of one verifier
//! long-polling the publisher.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::json;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

use crate::authz_grpc::{check as check_grpc, code, with_auth};
use crate::authz_nginx::spawn_authz_with;
use crate::support::idp::{keycloak_logout_claims, Idp, CLIENT_ID, CLIENT_SECRET, ISS};
use crate::support::{client, now};

/// How long polling goes on before a test fails outright.
const DEADLINE: Duration = Duration::from_secs(20);
/// Freshness asserted for one sidecar long-polling the publisher (20 ms coalescing): each
/// change typically arrives in tens of milliseconds; two seconds leaves a loaded debug build
/// room, and still fails if the long-poll is not doing its job (the sync client would then
/// only learn of changes on its retry schedule).
const FRESH: Duration = Duration::from_secs(2);

async fn check(http: &reqwest::Client, base: &str, token: &str) -> (StatusCode, String) {
    let r = http
        .get(format!("{base}/api/orders"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    (r.status(), www)
}

/// Poll the sidecar until it refuses `token`; how long that took.
async fn until_refused(http: &reqwest::Client, base: &str, token: &str, what: &str) -> Duration {
    let t = Instant::now();
    loop {
        let (status, www) = check(http, base, token).await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(www.contains("invalid_token"), "{what}: {www}");
            return t.elapsed();
        }
        assert_eq!(status, StatusCode::OK, "{what}: only allow or refuse");
        assert!(
            t.elapsed() < DEADLINE,
            "{what}: still allowed after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7009_and_backchannel_logout_reach_the_sidecar() {
    let idp = Idp::start("authz-idp", |_| {}).await;
    let dir = crate::support::temp_dir("authz-idp-sidecar");
    let authz = spawn_authz_with(
        &idp.url,
        &idp.data_dir(),
        &dir,
        vec![
            "--jwks".into(),
            format!("{ISS}={}", idp.rsa_jwks_url).into(),
            "--jwks-allow-http".into(),
            "--audience".into(),
            "some-api".into(),
            "--grpc-listen".into(),
            "127.0.0.1:0".into(),
        ],
    );
    let http = client();
    // Ready: a verified snapshot and the issuer's keys.
    let t = Instant::now();
    while http
        .get(format!("{}/readyz", authz.admin))
        .send()
        .await
        .map(|r| r.status())
        .ok()
        != Some(StatusCode::OK)
    {
        assert!(t.elapsed() < DEADLINE, "the sidecar never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let t0 = now();
    let access = |jti: &str, sid: &str| {
        idp.rsa.access_token(&json!({
            "iss": ISS, "aud": "some-api", "sub": "user-1", "sid": sid,
            "iat": t0 - 10, "exp": t0 + 900, "jti": jti,
        }))
    };
    let revoked = access("rfc7009-1", "session-1");
    let logged_out = access("bcl-1", "session-2");
    let untouched = access("other-1", "session-3");
    for t in [&revoked, &logged_out, &untouched] {
        assert_eq!(check(&http, &authz.check, t).await.0, StatusCode::OK);
    }

    // RFC 7009: the client hands in the token alone.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let sent = Instant::now();
    let r = http
        .post(format!("{}/v1/oauth/revoke", idp.url))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={revoked}&token_type_hint=access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let acked = sent.elapsed();
    let took = until_refused(&http, &authz.check, &revoked, "RFC 7009").await + acked;
    assert!(took < FRESH, "RFC 7009 took {took:?} to reach the sidecar");
    println!(
        "RFC 7009: acknowledged in {acked:?}, refused by the sidecar {took:?} after the request"
    );

    // The Envoy ext_authz front end of the same sidecar says the same.
    let grpc_url = authz.grpc.clone().expect("the gRPC listener");
    let mut grpc = AuthorizationClient::connect(grpc_url).await.unwrap();
    let r = check_grpc(&mut grpc, with_auth(Some(&format!("Bearer {revoked}")))).await;
    assert_eq!(code(&r), tonic::Code::Unauthenticated as i32, "{r:?}");
    let r = check_grpc(&mut grpc, with_auth(Some(&format!("Bearer {untouched}")))).await;
    assert_eq!(code(&r), tonic::Code::Ok as i32, "{r:?}");

    // Back-channel logout of session-2, Keycloak-shaped.
    let logout = idp
        .rsa
        .logout_token(&keycloak_logout_claims(ISS, "user-1", "session-2", now()));
    let r = http
        .post(format!("{}/v1/backchannel-logout", idp.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={logout}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let took = until_refused(&http, &authz.check, &logged_out, "back-channel logout").await;
    assert!(
        took < FRESH,
        "the back-channel logout took {took:?} to reach the sidecar"
    );
    println!("back-channel logout: session refused by the sidecar {took:?} after the answer");
    // Nothing else was refused: another session of the same user still passes.
    assert_eq!(
        check(&http, &authz.check, &untouched).await.0,
        StatusCode::OK
    );
    drop(authz);
    idp.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
