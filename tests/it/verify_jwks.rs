//! Issuers by JWKS URL, end to end: real RS256, ES256 and EdDSA signatures, keys served by a
//! real HTTP server on loopback, fetched by the JWKS client; fetches counted at the server.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use revbloom::sync::{JwksClient, JwksClientError, JwksConfig};
use revbloom::verify::{
    Checked, Issuer, Issuers, MemoryExactSource, RevokedBy, Verifier, VerifyError,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::support::tokens::{now, window};

// ---- keys -------------------------------------------------------------------------------

/// A signing key with its public JWK (carrying `kid`).
#[derive(Clone)]
struct Key {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl Key {
    fn new(alg: Algorithm, kid: &str, encoding: EncodingKey) -> Self {
        let mut jwk: Jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self::with_jwk(alg, kid, encoding, serde_json::to_value(jwk).unwrap())
    }

    fn with_jwk(alg: Algorithm, kid: &str, encoding: EncodingKey, jwk: Value) -> Self {
        Self {
            alg,
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        encode(&h, claims, &self.encoding).unwrap()
    }

    /// Signed by this key with its own algorithm, the header saying `alg` and `kid` (none
    /// when `None`) whatever the key is.
    fn sign_claiming(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{message}.{sig}")
    }
}

fn rsa(n: u8, kid: &str) -> Key {
    let pem = std::fs::read(format!(
        "{}/tests/data/jwks-rsa-{n}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    Key::new(
        Algorithm::RS256,
        kid,
        EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
}

fn es256(seed: u8, kid: &str) -> Key {
    let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    let pem = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
    Key::new(
        Algorithm::ES256,
        kid,
        EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
}

fn eddsa(seed: u8, kid: &str) -> Key {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let der = sk.to_pkcs8_der().unwrap();
    // jsonwebtoken derives JWKs only from v1 PKCS#8 (no public key inside); write it here.
    let x = b64(sk.verifying_key().as_bytes());
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x});
    Key::with_jwk(
        Algorithm::EdDSA,
        kid,
        EncodingKey::from_ed_der(der.as_bytes()),
        jwk,
    )
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn jwks(keys: &[&Key]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

// ---- the JWKS server ----------------------------------------------------------------------

struct Served {
    body: String,
    cache_control: Option<String>,
    status: StatusCode,
}

/// A JWKS endpoint on 127.0.0.1 that counts its requests.
struct JwksServer {
    url: String,
    served: Arc<Mutex<Served>>,
    hits: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(doc: &Value, cache_control: Option<&str>) -> Self {
        let served = Arc::new(Mutex::new(Served {
            body: doc.to_string(),
            cache_control: cache_control.map(str::to_owned),
            status: StatusCode::OK,
        }));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (Arc::clone(&served), Arc::clone(&hits));
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                let (s, h) = (Arc::clone(&s), Arc::clone(&h));
                async move {
                    h.fetch_add(1, SeqCst);
                    let s = s.lock().unwrap();
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    if let Some(cc) = &s.cache_control {
                        headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
                    }
                    (s.status, headers, s.body.clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            served,
            hits,
            stop: Some(stop),
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(SeqCst)
    }

    fn publish(&self, doc: &Value) {
        self.served.lock().unwrap().body = doc.to_string();
    }

    fn answer(&self, status: StatusCode) {
        self.served.lock().unwrap().status = status;
    }

    /// Stop listening: connections are refused from now on.
    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Poll `cond` every 20 ms until it holds, at most `secs`.
async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- tokens -------------------------------------------------------------------------------

const ISS_A: &str = "https://idp-a.example";
const ISS_B: &str = "https://idp-b.example";

fn claims(iss: &str, aud: &str, jti: &str) -> Value {
    let t = now();
    json!({"iss": iss, "aud": aud, "jti": jti, "sub": "alice", "iat": t, "exp": t + 600})
}

fn loopback(config: JwksConfig) -> JwksConfig {
    config.timeouts(Duration::from_secs(2), Duration::from_secs(1))
}

async fn verify(v: &Verifier, token: &str) -> Result<Checked, VerifyError> {
    v.verify_async::<Value>(token).await.map(|ok| ok.checked)
}

fn invalid(r: Result<Checked, VerifyError>) -> jsonwebtoken::errors::ErrorKind {
    match r {
        Err(VerifyError::Invalid(kind)) => kind,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- tests --------------------------------------------------------------------------------

#[tokio::test]
async fn two_issuers_each_with_its_audiences_and_algorithms() {
    let (ra, eb, db) = (rsa(1, "a-rsa"), es256(7, "b-ec"), eddsa(9, "b-ed"));
    let a = JwksServer::start(&jwks(&[&ra]), Some("max-age=3600")).await;
    let b = JwksServer::start(&jwks(&[&eb, &db]), None).await;
    let issuers = Arc::new(
        Issuers::new([
            Issuer::new(ISS_A, &a.url).audience("orders"),
            Issuer::new(ISS_B, &b.url).audiences(["orders", "admin"]),
        ])
        .unwrap(),
    );
    // No refetch for unknown kids during the test: the fetch counts below stay exact.
    let config = JwksConfig::default().refetch_interval(Duration::from_secs(3600));
    let client = JwksClient::start(Arc::clone(&issuers), loopback(config)).unwrap();
    client.wait_loaded(Duration::from_secs(10)).await.unwrap();
    let v = Verifier::with_issuers(Arc::clone(&issuers))
        .build()
        .unwrap();

    // Each issuer with its own keys and audiences; the sync path too.
    for token in [
        ra.sign(&claims(ISS_A, "orders", "t1")),
        eb.sign(&claims(ISS_B, "admin", "t2")),
        db.sign(&claims(ISS_B, "orders", "t3")),
    ] {
        assert_eq!(verify(&v, &token).await.unwrap(), Checked::NotApplicable);
        assert!(v.verify::<Value>(&token).is_ok());
    }
    // Audience of the other issuer, no audience, wrong issuer, issuer with another case or a
    // trailing slash (exact match), no issuer.
    use jsonwebtoken::errors::ErrorKind;
    assert_eq!(
        invalid(verify(&v, &ra.sign(&claims(ISS_A, "admin", "t4"))).await),
        ErrorKind::InvalidAudience
    );
    let mut no_aud = claims(ISS_A, "x", "t5");
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        invalid(verify(&v, &ra.sign(&no_aud)).await),
        ErrorKind::MissingRequiredClaim("aud".into())
    );
    for iss in [
        "https://idp-c.example",
        "https://IDP-A.example",
        "https://idp-a.example/",
    ] {
        assert!(matches!(
            verify(&v, &ra.sign(&claims(iss, "orders", "t6"))).await,
            Err(VerifyError::UnknownIssuer)
        ));
    }
    let mut no_iss = claims(ISS_A, "orders", "t7");
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        invalid(verify(&v, &ra.sign(&no_iss)).await),
        ErrorKind::MissingRequiredClaim("iss".into())
    );
    // B's key, claiming to be A: A's set has no such key.
    assert!(matches!(
        verify(&v, &eb.sign(&claims(ISS_A, "orders", "t8"))).await,
        Err(VerifyError::UnknownKey { ref iss, kid: Some(ref kid) }) if iss == ISS_A && kid == "b-ec"
    ));
    // A's kid, signed by another RSA key: the signature is what counts.
    let forged = Key {
        kid: "a-rsa".into(),
        ..rsa(2, "x")
    };
    assert_eq!(
        invalid(verify(&v, &forged.sign(&claims(ISS_A, "orders", "t9"))).await),
        ErrorKind::InvalidSignature
    );
    // Without a kid: A has one RS256 key, so it is that one; B has one key per algorithm too.
    assert!(verify(
        &v,
        &ra.sign_claiming(Algorithm::RS256, None, &claims(ISS_A, "orders", "t10"))
    )
    .await
    .is_ok());
    assert!(verify(
        &v,
        &db.sign_claiming(Algorithm::EdDSA, None, &claims(ISS_B, "orders", "t11"))
    )
    .await
    .is_ok());
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn alg_confusion_is_refused() {
    use jsonwebtoken::errors::ErrorKind;
    let (ra, ec) = (rsa(1, "rsa"), es256(7, "ec"));
    // The set also publishes a symmetric key: it must never verify anything.
    let mut doc = jwks(&[&ra, &ec]);
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "oct", "alg": "HS256", "k": b64(b"published-secret")}));
    let server = JwksServer::start(&doc, None).await;
    let issuers =
        Arc::new(Issuers::new([Issuer::new(ISS_A, &server.url).audience("orders")]).unwrap());
    let client = JwksClient::start(Arc::clone(&issuers), loopback(JwksConfig::default())).unwrap();
    client.wait_loaded(Duration::from_secs(10)).await.unwrap();
    assert_eq!(issuers.key_set(ISS_A).unwrap().len(), 2);
    let v = Verifier::with_issuers(Arc::clone(&issuers))
        .build()
        .unwrap();
    let c = claims(ISS_A, "orders", "j");

    // Controls: the genuine tokens pass.
    verify(&v, &ra.sign(&c)).await.unwrap();
    verify(&v, &ec.sign(&c)).await.unwrap();

    // HS256 with the RSA public key as the HMAC secret (n bytes, the PEM, the JWK text).
    let Some(n) = ra.jwk["n"].as_str() else {
        panic!("no n")
    };
    for secret in [n.as_bytes().to_vec(), ra.jwk.to_string().into_bytes()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa".into());
        let token = encode(&h, &c, &EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(
            invalid(verify(&v, &token).await),
            ErrorKind::InvalidAlgorithm
        );
    }
    // HS256 with the published symmetric key.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("oct".into());
    let token = encode(&h, &c, &EncodingKey::from_secret(b"published-secret")).unwrap();
    assert_eq!(
        invalid(verify(&v, &token).await),
        ErrorKind::InvalidAlgorithm
    );
    // alg none, with and without a signature.
    let payload = b64(c.to_string().as_bytes());
    for header in [json!({"alg": "none"}), json!({"alg": "none", "kid": "rsa"})] {
        let head = b64(header.to_string().as_bytes());
        for token in [
            format!("{head}.{payload}."),
            format!("{head}.{payload}.AAAA"),
        ] {
            assert!(
                matches!(verify(&v, &token).await, Err(VerifyError::Invalid(_))),
                "{token}"
            );
        }
    }
    // An ES256 signature under a header claiming RS256 (with either kid), and the reverse.
    for kid in ["ec", "rsa"] {
        let token = ec.sign_claiming(Algorithm::RS256, Some(kid), &c);
        let r = verify(&v, &token).await;
        assert!(
            matches!(r, Err(VerifyError::UnknownKey { .. }))
                || matches!(r, Err(VerifyError::Invalid(ErrorKind::InvalidSignature))),
            "{kid}: {r:?}"
        );
        let token = ra.sign_claiming(Algorithm::ES256, Some(kid), &c);
        let r = verify(&v, &token).await;
        assert!(
            matches!(r, Err(VerifyError::UnknownKey { .. }))
                || matches!(r, Err(VerifyError::Invalid(_))),
            "{kid}: {r:?}"
        );
    }
    // An algorithm of the RSA family the issuer does not allow.
    let token = ra.sign_claiming(Algorithm::PS256, Some("rsa"), &c);
    assert_eq!(
        invalid(verify(&v, &token).await),
        ErrorKind::InvalidAlgorithm
    );
    // An issuer that allows only ES256 refuses RS256 tokens even with a valid RSA key.
    let only_ec = Arc::new(
        Issuers::new([Issuer::new(ISS_A, &server.url)
            .audience("orders")
            .algorithms(&[Algorithm::ES256])])
        .unwrap(),
    );
    only_ec.set_jwks(ISS_A, doc.to_string().as_bytes()).unwrap();
    let v2 = Verifier::with_issuers(only_ec).build().unwrap();
    assert_eq!(
        invalid(verify(&v2, &ra.sign(&c)).await),
        ErrorKind::InvalidAlgorithm
    );
    assert!(verify(&v2, &ec.sign(&c)).await.is_ok());
}

#[tokio::test]
async fn a_rotated_key_verifies_after_the_rate_limited_refresh() {
    let (old, new) = (rsa(1, "2026-01"), rsa(2, "2026-02"));
    let server = JwksServer::start(&jwks(&[&old]), Some("max-age=86400")).await;
    let issuers =
        Arc::new(Issuers::new([Issuer::new(ISS_A, &server.url).audience("orders")]).unwrap());
    let interval = Duration::from_millis(500);
    let client = JwksClient::start(
        Arc::clone(&issuers),
        loopback(JwksConfig::default().refetch_interval(interval)),
    )
    .unwrap();
    client.wait_loaded(Duration::from_secs(10)).await.unwrap();
    let v = Verifier::with_issuers(Arc::clone(&issuers))
        .build()
        .unwrap();
    let c = claims(ISS_A, "orders", "r");
    assert!(verify(&v, &old.sign(&c)).await.is_ok());

    // The IdP rotates: the new key is published, tokens are signed with it.
    server.publish(&jwks(&[&old, &new]));
    let token = new.sign(&c);
    let started = Instant::now();
    // The synchronous path never waits: it asks for the refresh and refuses for now.
    let mut refused = 0;
    loop {
        match v.verify::<Value>(&token) {
            Ok(_) => break,
            Err(VerifyError::UnknownKey { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refreshed = Instant::now();
    assert!(
        refused >= 1,
        "the new key cannot be known before the refresh"
    );
    // One fetch at start, one (deferred to the end of the interval) for the new kid.
    assert_eq!(server.hits(), 2);
    assert!(verify(&v, &old.sign(&c)).await.is_ok());

    // The async path awaits the refresh: after the interval, a third key verifies at once.
    let third = es256(3, "2026-03");
    server.publish(&jwks(&[&new, &third]));
    eventually(10, "the interval to pass", || {
        refreshed.elapsed() > interval
    })
    .await;
    assert!(verify(&v, &third.sign(&c)).await.is_ok());
    assert_eq!(server.hits(), 3);
    // The retired key is gone with the set that held it.
    assert!(matches!(
        verify(&v, &old.sign(&c)).await,
        Err(VerifyError::UnknownKey { .. })
    ));
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_interval() {
    let key = eddsa(9, "real");
    let server = JwksServer::start(&jwks(&[&key]), Some("max-age=86400")).await;
    let issuers =
        Arc::new(Issuers::new([Issuer::new(ISS_A, &server.url).audience("orders")]).unwrap());
    let interval = Duration::from_secs(1);
    let client = JwksClient::start(
        Arc::clone(&issuers),
        loopback(JwksConfig::default().refetch_interval(interval)),
    )
    .unwrap();
    client.wait_loaded(Duration::from_secs(10)).await.unwrap();
    let v = Arc::new(
        Verifier::with_issuers(Arc::clone(&issuers))
            .build()
            .unwrap(),
    );
    let started = Instant::now();
    let c = claims(ISS_A, "orders", "f");
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let token =
                    key.sign_claiming(Algorithm::EdDSA, Some(&format!("random-{sent}-{i}")), &c);
                let v = Arc::clone(&v);
                tokio::spawn(async move { v.verify_async::<Value>(&token).await.map(|_| ()) })
            })
            .collect();
        for t in batch {
            assert!(matches!(
                t.await.unwrap(),
                Err(VerifyError::UnknownKey { .. })
            ));
        }
        sent += 1;
        // The real key keeps passing meanwhile, without a fetch.
        assert!(verify(&v, &key.sign(&c)).await.is_ok());
    }
    // Read before the clock: a fetch after this reading only makes the bound looser.
    let hits = server.hits();
    let elapsed = started.elapsed();
    // At start, then at most one per interval (plus one whose interval began before `started`).
    let bound = 2 + (elapsed.as_millis() / interval.as_millis()) as usize;
    assert!(
        hits <= bound,
        "{hits} fetches in {elapsed:?}, at most {bound}"
    );
    // Control: the demands did reach the server, and most were held back.
    assert!(hits >= 2, "unknown kids never asked for a fetch");
    let stats = client.stats();
    assert!(stats.rate_limited > 0 && stats.demanded > 0, "{stats:?}");
    assert!(sent * 50 > 100);
}

#[tokio::test]
async fn cache_control_max_age_decides_when_keys_are_fetched_again() {
    let key = es256(7, "k");
    let short = JwksServer::start(&jwks(&[&key]), Some("public, max-age=1")).await;
    let long = JwksServer::start(&jwks(&[&key]), Some("public, max-age=3600")).await;
    let none = JwksServer::start(&jwks(&[&key]), Some("no-store")).await;
    let issuers = Arc::new(
        Issuers::new([
            Issuer::new(ISS_A, &short.url).any_audience(),
            Issuer::new(ISS_B, &long.url).any_audience(),
            Issuer::new("https://idp-c.example", &none.url).any_audience(),
        ])
        .unwrap(),
    );
    let config = JwksConfig::default().max_age(
        Duration::from_secs(3600),
        Duration::from_secs(1),
        Duration::from_secs(86400),
    );
    let started = Instant::now();
    let client = JwksClient::start(Arc::clone(&issuers), loopback(config)).unwrap();
    client.wait_loaded(Duration::from_secs(10)).await.unwrap();
    // max-age=1 (refreshed at 0.9 s): at least three fetches soon.
    eventually(15, "the short-lived set to be fetched again", || {
        short.hits() >= 3
    })
    .await;
    let elapsed = started.elapsed();
    // max-age=3600: fetched once; no-store: held to the 1 s minimum, not hammered.
    assert_eq!(long.hits(), 1);
    let bound = 2 + (elapsed.as_millis() / 900) as usize;
    assert!(none.hits() <= bound, "{} in {elapsed:?}", none.hits());
    assert!(short.hits() <= bound, "{} in {elapsed:?}", short.hits());
}

#[tokio::test]
async fn an_idp_that_goes_down_leaves_the_last_keys_in_force() {
    let key = rsa(1, "k");
    let server = JwksServer::start(&jwks(&[&key]), Some("max-age=1")).await;
    let issuers =
        Arc::new(Issuers::new([Issuer::new(ISS_A, &server.url).audience("orders")]).unwrap());
    let config = JwksConfig::default()
        .max_age(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .backoff(Duration::from_millis(100), Duration::from_millis(200));
    let client = JwksClient::start(Arc::clone(&issuers), loopback(config)).unwrap();
    client.wait_loaded(Duration::from_secs(10)).await.unwrap();
    let v = Verifier::with_issuers(Arc::clone(&issuers))
        .build()
        .unwrap();
    let token = key.sign(&claims(ISS_A, "orders", "d"));
    assert!(verify(&v, &token).await.is_ok());

    // Errors first, then a document with nothing usable, then nobody listening at all.
    server.answer(StatusCode::SERVICE_UNAVAILABLE);
    eventually(10, "a failed fetch", || client.stats().failures >= 1).await;
    assert!(verify(&v, &token).await.is_ok());
    assert!(client.status()[0]
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("503")));
    server.answer(StatusCode::OK);
    server.publish(&json!({"keys": [{"kty": "oct", "k": "AAAA"}]}));
    eventually(10, "a refused document", || {
        client.status()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("none usable"))
    })
    .await;
    assert!(verify(&v, &token).await.is_ok());
    let failures = client.stats().failures;
    server.shut_down().await;
    eventually(10, "a refused connection", || {
        client.stats().failures >= failures + 2
    })
    .await;
    assert!(verify(&v, &token).await.is_ok());
    assert!(v.verify::<Value>(&token).is_ok());
    assert_eq!(client.status()[0].keys, 1);
}

#[tokio::test]
async fn no_keys_ever_loaded_is_a_typed_error_and_a_503() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let issuers = Arc::new(Issuers::new([Issuer::new(ISS_A, &url).audience("orders")]).unwrap());
    let client = JwksClient::start(Arc::clone(&issuers), loopback(JwksConfig::default())).unwrap();
    let err = client
        .wait_loaded(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, JwksClientError::NotLoaded { ref issuers } if issuers == &[ISS_A]));
    let v = Verifier::with_issuers(Arc::clone(&issuers))
        .build()
        .unwrap();
    let token = rsa(1, "k").sign(&claims(ISS_A, "orders", "n"));
    let err = verify(&v, &token).await.unwrap_err();
    assert!(matches!(err, VerifyError::KeysUnavailable { ref iss } if iss == ISS_A));
    assert!(err.to_string().contains("JWKS URL"), "{err}");
    let res = revbloom::tower::error_response::<String>(&err);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Plain http to a host that is not loopback is refused up front.
    let remote = Arc::new(
        Issuers::new([Issuer::new(ISS_A, "http://idp.example/jwks").audience("orders")]).unwrap(),
    );
    assert!(matches!(
        JwksClient::start(remote, JwksConfig::default()),
        Err(JwksClientError::InsecureUrl { .. })
    ));
}

#[tokio::test]
async fn an_oversized_jwks_is_refused() {
    let key = eddsa(9, "k");
    let mut doc = jwks(&[&key]);
    doc["padding"] = json!("x".repeat(5000));
    let server = JwksServer::start(&doc, None).await;
    let issuers =
        Arc::new(Issuers::new([Issuer::new(ISS_A, &server.url).audience("orders")]).unwrap());
    let client = JwksClient::start(
        Arc::clone(&issuers),
        loopback(JwksConfig::default().max_bytes(4096)),
    )
    .unwrap();
    eventually(10, "the refused fetch", || client.stats().failures >= 1).await;
    assert!(issuers.key_set(ISS_A).is_none());
    assert!(client.status()[0]
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("larger than 4096")));
    // Control: the same document within the limit loads. The client started second is the
    // issuers' refresher, and stays so when the first one stops.
    let second = JwksClient::start(
        Arc::clone(&issuers),
        loopback(JwksConfig::default().max_bytes(8192)),
    )
    .unwrap();
    drop(client);
    second.wait_loaded(Duration::from_secs(10)).await.unwrap();
    let v = Verifier::with_issuers(Arc::clone(&issuers))
        .build()
        .unwrap();
    let unknown = key.sign_claiming(
        Algorithm::EdDSA,
        Some("other"),
        &claims(ISS_A, "orders", "o"),
    );
    assert!(v.verify::<Value>(&unknown).is_err());
    let s = second.stats();
    assert_eq!(s.demanded + s.rate_limited, 1, "{s:?}");
    // The default limit is 1 MiB.
    let mut doc = jwks(&[&key]);
    doc["padding"] = json!("x".repeat(1 << 20));
    let big = JwksServer::start(&doc, None).await;
    let issuers =
        Arc::new(Issuers::new([Issuer::new(ISS_B, &big.url).audience("orders")]).unwrap());
    let client = JwksClient::start(Arc::clone(&issuers), loopback(JwksConfig::default())).unwrap();
    eventually(10, "the refused fetch", || client.stats().failures >= 1).await;
    assert!(issuers.key_set(ISS_B).is_none());
}

#[tokio::test]
async fn a_revoked_token_of_a_jwks_issuer_is_refused() {
    let key = rsa(1, "k");
    let server = JwksServer::start(&jwks(&[&key]), None).await;
    let issuers =
        Arc::new(Issuers::new([Issuer::new(ISS_A, &server.url).audience("orders")]).unwrap());
    let client = JwksClient::start(Arc::clone(&issuers), loopback(JwksConfig::default())).unwrap();
    client.wait_loaded(Duration::from_secs(10)).await.unwrap();

    let exp = now() + 600;
    let mut w = window();
    // Revoked under this issuer, without an issuer (applies to every issuer), and under
    // another issuer. The filter keys on the jti alone; the exact source knows the issuer.
    for jti in ["revoked-a", "revoked-any", "revoked-b"] {
        w.insert(jti, Some(exp));
    }
    let exact = Arc::new(MemoryExactSource::new());
    exact.revoke(Some(ISS_A), "revoked-a", Some(exp));
    exact.revoke(None, "revoked-any", Some(exp));
    exact.revoke(Some(ISS_B), "revoked-b", Some(exp));
    let state = revbloom::verify::MemoryState::new(w, revbloom::CutoffSet::new(), 1, now());
    let v = Verifier::with_issuers(Arc::clone(&issuers))
        .state(state)
        .exact_source(Arc::clone(&exact))
        .build()
        .unwrap();
    let sign = |jti: &str| {
        let mut c = claims(ISS_A, "orders", jti);
        c["exp"] = json!(exp);
        key.sign(&c)
    };
    for jti in ["revoked-a", "revoked-any"] {
        let r = verify(&v, &sign(jti)).await;
        assert!(
            matches!(r, Err(VerifyError::Revoked { by: RevokedBy::Jti })),
            "{jti}: {r:?}"
        );
        assert!(matches!(
            verify(&v, &sign(jti)).await,
            Err(VerifyError::Revoked { by: RevokedBy::Jti })
        ));
        assert!(matches!(
            v.verify::<Value>(&sign(jti)),
            Err(VerifyError::Revoked { by: RevokedBy::Jti })
        ));
    }
    // Another issuer's revocation of the same jti: the filter matches, the exact source clears.
    assert!(matches!(
        verify(&v, &sign("revoked-b")).await,
        Ok(Checked::ExactSource)
    ));
    // Control: another jti of the same issuer passes on the filter's word.
    assert!(matches!(
        verify(&v, &sign("fine")).await,
        Ok(Checked::Filter { generation: 1 })
    ));
    // A token without jti is refused: state is configured, so jti is required.
    let mut c = claims(ISS_A, "orders", "x");
    c.as_object_mut().unwrap().remove("jti");
    assert!(matches!(
        verify(&v, &key.sign(&c)).await,
        Err(VerifyError::MissingJti)
    ));
}
