//! The check and admin routers through `Router::oneshot`: real verifiers, real HS256 tokens,
//! real snapshot files followed by a real sync client; no socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use revbloom::snapshot::{encode_to_vec, SnapshotMeta};
use revbloom::verify::{MemoryState, Verifier};
use revbloom::{CutoffSet, OpenOptions, SnapshotHandle, StalenessPolicy, Window, WindowConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::config::{parse_forward_claim, AuthzConfig, RevocationSource, TokenKeys};
use super::http::{admin_router, check_router, AdminState};
use super::{AuthzState, Checker};
use crate::limits::{ConnCounters, ConnLimits};

const SECRET: &[u8] = b"authz-test-secret";

fn now() -> u64 {
    revbloom::bounds::unix_now()
}

fn window() -> Window {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(24 * 3600))
        .expected_per_bucket(1000);
    Window::with_seed(config, now(), 7).unwrap()
}

fn token(jti: &str, sub: &str) -> String {
    let t = now();
    let claims = json!({"jti": jti, "sub": sub, "iat": t - 1, "exp": t + 600});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    v
}

/// A checker whose state has `r-1` revoked (no exact source: a filter match is refused),
/// forwarding `sub` as `x-auth-sub`.
fn checker() -> Checker {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let mut w = window();
    w.insert("r-1", Some(now() + 600));
    let state = MemoryState::new(w, CutoffSet::new(), 1, now());
    let verifier = Verifier::builder(DecodingKey::from_secret(SECRET), validation())
        .state(state)
        .build()
        .unwrap();
    Checker::new(
        Arc::new(verifier),
        vec![parse_forward_claim("sub=x-auth-sub").unwrap()],
    )
}

async fn call(app: &Router, method: &str, path: &str, auth: Option<&[u8]>) -> Response {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn body(res: Response) -> Vec<u8> {
    axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_valid_token_is_allowed_on_any_path_and_method_with_its_forwarded_claim() {
    let app = check_router(checker());
    let auth = format!("Bearer {}", token("ok-1", "alice"));
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/api/orders?x=1"),
        ("HEAD", "/_authz"),
        ("DELETE", "/healthz"),
    ] {
        let res = call(&app, method, path, Some(auth.as_bytes())).await;
        assert_eq!(res.status(), StatusCode::OK, "{method} {path}");
        assert_eq!(header(&res, "x-auth-sub"), "alice");
        assert_eq!(header(&res, "cache-control"), "no-store");
        assert!(body(res).await.is_empty());
    }
}

#[tokio::test]
async fn a_revoked_token_is_denied_with_an_invalid_token_challenge() {
    let app = check_router(checker());
    let auth = format!("Bearer {}", token("r-1", "mallory"));
    let res = call(&app, "GET", "/", Some(auth.as_bytes())).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let www = header(&res, "www-authenticate");
    assert!(www.starts_with("Bearer error=\"invalid_token\""), "{www}");
    assert!(www.contains("revoked"), "{www}");
    assert!(header(&res, "x-auth-sub").is_empty());
    let v: Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["error"], "invalid_token");
}

#[tokio::test]
async fn healthz_on_the_check_listener_is_a_check_like_any_other() {
    let app = check_router(checker());
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = call(&app, "GET", path, None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(header(&res, "www-authenticate"), "Bearer");
    }
}

#[tokio::test]
async fn malformed_authorization_headers_get_401_invalid_request_never_400() {
    let app = check_router(checker());
    let long = format!("Bearer {}", "a".repeat(20_000));
    let malformed: [&[u8]; 6] = [
        b"Bearer",
        b"Bearer   ",
        b"Bearer a b",
        b"Bearer tok%en",
        b"Bearer \xff\xfe",
        long.as_bytes(),
    ];
    for auth in malformed {
        let res = call(&app, "GET", "/", Some(auth)).await;
        let shown = String::from_utf8_lossy(&auth[..auth.len().min(20)]).into_owned();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{shown}");
        let www = header(&res, "www-authenticate");
        assert!(
            www.starts_with("Bearer error=\"invalid_request\", error_description="),
            "{shown}: {www}"
        );
    }
    // No bearer credentials at all: a plain challenge.
    for auth in [&b"abc"[..], b"Basic dXNlcjpwYXNz"] {
        let res = call(&app, "GET", "/", Some(auth)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&res, "www-authenticate"), "Bearer");
    }
    // Bearer, well formed, but not a JWT.
    for auth in [&b"Bearer abc"[..], b"Bearer a.b.c", b"Bearer e30.e30.e30"] {
        let res = call(&app, "GET", "/", Some(auth)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&res, "www-authenticate").contains("invalid_token"));
    }
}

#[tokio::test]
async fn without_a_snapshot_checks_fail_closed_with_503_and_retry_after() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let handle: SnapshotHandle =
        SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(60));
    let verifier = Verifier::builder(DecodingKey::from_secret(SECRET), validation())
        .state(handle)
        .build()
        .unwrap();
    let checker = Checker::new(Arc::new(verifier), Vec::new());
    let app = check_router(checker.clone());
    let auth = format!("Bearer {}", token("ok-1", "alice"));
    let res = call(&app, "GET", "/", Some(auth.as_bytes())).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, "retry-after"), "5");
    let v: Value = serde_json::from_slice(&body(res).await).unwrap();
    assert_eq!(v["error"], "unavailable");
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(checker.counts().unavailable.load(Relaxed), 1);
    assert_eq!(checker.counts().allow.load(Relaxed), 0);
}

/// A config following the snapshot file `path`, with the HS256 secret and `max_age`.
fn file_config(path: std::path::PathBuf, max_age: Duration) -> AuthzConfig {
    AuthzConfig {
        grpc_listen: None,
        grpc: crate::authz::GrpcOptions::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        source: RevocationSource::File(path),
        cache: None,
        keys: TokenKeys::Static {
            key: DecodingKey::from_secret(SECRET),
            algorithm: Algorithm::HS256,
        },
        issuer: None,
        audience: None,
        exact_url: None,
        open: OpenOptions::new(),
        seal: None,
        allow_unsigned: true,
        max_age,
        policy: StalenessPolicy::FailClosed,
        forward: Vec::new(),
        jwks: revbloom::sync::JwksConfig::default(),
        conn: ConnLimits::default(),
    }
}

fn write_snapshot(path: &std::path::Path, created_at: u64) {
    let meta = SnapshotMeta {
        created_at,
        coverage: created_at,
        ..SnapshotMeta::first(created_at)
    };
    let bytes = encode_to_vec(&window(), &CutoffSet::new(), &meta, None).unwrap();
    revbloom::sync::write_file_atomically(path, &bytes).unwrap();
}

async fn readyz(app: &Router) -> (StatusCode, Value) {
    let res = call(app, "GET", "/readyz", None).await;
    let status = res.status();
    (status, serde_json::from_slice(&body(res).await).unwrap())
}

fn admin(state: AuthzState) -> Router {
    let state = Arc::new(state);
    let checker = Checker::new(Arc::clone(state.verifier()), Vec::new());
    admin_router(AdminState {
        state,
        checker,
        check_conns: Arc::new(ConnCounters::default()),
    })
}

#[tokio::test]
async fn readyz_is_503_without_a_snapshot_200_once_one_loads_and_503_when_it_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.rbs");
    let app =
        admin(AuthzState::start(&file_config(path.clone(), Duration::from_secs(300))).unwrap());
    let (status, v) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["reasons"], json!(["no_snapshot"]), "{v}");
    assert_eq!(v["ready"], false);
    let res = call(&app, "GET", "/healthz", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = String::from_utf8(body(call(&app, "GET", "/metrics", None).await).await).unwrap();
    assert!(text.contains("revbloom_authz_ready 0\n"), "{text}");
    assert!(
        text.contains("revbloom_authz_not_ready_reason{reason=\"no_snapshot\"} 1\n"),
        "{text}"
    );

    write_snapshot(&path, now());
    let t = Instant::now();
    loop {
        let (status, v) = readyz(&app).await;
        if status == StatusCode::OK {
            assert_eq!(v["ready"], true);
            assert_eq!(v["generation"], 1);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "never ready: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = String::from_utf8(body(call(&app, "GET", "/metrics", None).await).await).unwrap();
    for line in [
        "revbloom_authz_ready 1\n",
        "revbloom_snapshot_generation 1.0\n",
        "revbloom_authz_decisions_total{outcome=\"allow\"} 0\n",
        "revbloom_sync_snapshots_total 1\n",
    ] {
        assert!(text.contains(line), "{line:?} missing in\n{text}");
    }

    // A snapshot older than the maximum age: loaded, but not ready.
    let stale_path = dir.path().join("stale.rbs");
    write_snapshot(&stale_path, now() - 1000);
    let app = admin(AuthzState::start(&file_config(stale_path, Duration::from_secs(300))).unwrap());
    let t = Instant::now();
    loop {
        let (status, v) = readyz(&app).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        if v["reasons"] == json!(["snapshot_stale"]) {
            assert_eq!(v["generation"], 1);
            break;
        }
        assert_eq!(v["reasons"], json!(["no_snapshot"]), "{v}");
        assert!(t.elapsed() < Duration::from_secs(20), "never loaded: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = call(&app, "GET", "/nope", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
