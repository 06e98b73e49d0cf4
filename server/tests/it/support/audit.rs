//! Helpers for `tests/audit_false_negatives.rs`: an in-process publisher driven through its
//! HTTP admin API, and a gateway built like `examples/gateway.rs` (sync client → snapshot
//! handle → `Verifier` behind the tower `BearerLayer`), driven with `ServiceExt::oneshot`.

pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Json, Router};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use revbloom::sync::{SyncClient, SyncConfig};
use revbloom::tower::BearerLayer;
use revbloom::verify::{CachedSource, HttpExactSource, Verifier, VerifierBuilder};
use revbloom::{OpenOptions, SnapshotHandle, StalenessPolicy};
use revbloom_server::{run, Running, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The admin token of the in-process publishers.
pub const ADMIN: &str = "audit-admin-token-0123456789";
/// The HS256 secret every test token is signed with.
pub const SECRET: &[u8] = b"audit-secret-of-reasonable-length";
/// An issuer.
pub const ISS: &str = "https://issuer.example";

/// Longest any wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub use super::{client, now, temp_dir};

/// A publisher config on an ephemeral loopback port over `data` (the server tests' config):
/// small buckets, a generation at least every second, quick coalescing.
pub fn config(data: PathBuf) -> ServerConfig {
    let mut c = super::config(data);
    c.refresh_secs = 1;
    c.window.expected_per_bucket = 16;
    c
}

/// Sign `claims` with HS256.
pub fn token(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// An in-process publisher, reached over real HTTP.
pub struct Publisher {
    pub running: Running,
    pub base: String,
    pub config: ServerConfig,
    http: reqwest::Client,
}

impl Publisher {
    pub async fn start(config: ServerConfig) -> Publisher {
        let running = run::start(config.clone(), ADMIN.to_string()).await.unwrap();
        let base = format!("http://{}", running.local_addr());
        data_dirs()
            .lock()
            .unwrap()
            .insert(base.clone(), config.data_dir.clone());
        Publisher {
            running,
            base,
            config,
            http: client(),
        }
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.running.hub().current().generation
    }

    async fn admin(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/revocations` as an operator would. Returns the status, the answer, and a
    /// generation that certainly contains the change when it was accepted (the commit may
    /// race one publication, so two generations past the one current at the answer).
    pub async fn revoke(&self, body: Value) -> (u16, Value, u64) {
        let (s, v) = self.admin("/v1/revocations", &body).await;
        (s, v, self.generation() + 2)
    }

    /// `POST /v1/cutoffs`, like [`Publisher::revoke`].
    pub async fn cutoff(&self, body: Value) -> (u16, Value, u64) {
        let (s, v) = self.admin("/v1/cutoffs", &body).await;
        (s, v, self.generation() + 2)
    }

    /// `GET /v1/revocations/{jti}` (the jti percent-encoded as one segment).
    pub async fn lookup(&self, jti: &str, iss: Option<&str>) -> Value {
        super::lookup_issued_as(&self.http, &self.base, jti, iss, ADMIN).await
    }

    /// Stop and wait until the store has committed everything.
    pub async fn stop(self) -> ServerConfig {
        let addr = self.running.local_addr();
        self.running.shutdown();
        self.running.wait().await.unwrap();
        let mut c = self.config;
        c.listen = addr;
        c
    }
}

/// The data folder of every publisher started here, by base URL: a gateway pointed at one
/// is given that publisher's keys (`DATA/verifier.key`, `DATA/signing.pub`) as a deployed
/// verifier would be.
fn data_dirs() -> &'static std::sync::Mutex<std::collections::HashMap<String, PathBuf>> {
    static DIRS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> =
        std::sync::OnceLock::new();
    DIRS.get_or_init(Default::default)
}

/// The seal key and (when it generated one) the public signing key of the publisher at `base`.
fn keys_of(
    base: &str,
) -> Option<(
    revbloom::snapshot::SealKey,
    Option<ed25519_dalek::VerifyingKey>,
)> {
    let dir = data_dirs().lock().unwrap().get(base).cloned()?;
    let seal = revbloom::snapshot::SealKey::from_file(&dir.join("verifier.key")).ok()?;
    let public = revbloom::snapshot::read_verifying_key(&dir.join("signing.pub")).ok();
    Some((seal, public))
}

/// How a gateway is set up, as `examples/gateway.rs`'s flags do.
pub struct GatewayOpts {
    /// `--issuer`
    pub issuer: Option<String>,
    /// `--exact-url`: the lookup endpoint at this base URL (defaults to the publisher); none
    /// refuses every filter positive.
    pub exact: Option<String>,
    /// `--policy`
    pub policy: StalenessPolicy,
    /// `--max-age`
    pub max_age: Duration,
    /// `--snapshot-public-key`
    pub open: OpenOptions,
    /// `--cache`
    pub cache: Option<PathBuf>,
    /// The verifier's clock (tests pin it).
    pub clock: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
    /// Verifier staleness override (max age, policy).
    pub staleness: Option<(Option<Duration>, StalenessPolicy)>,
    /// Last-minute builder changes (spec helpers).
    pub tweak: Option<fn(VerifierBuilder) -> VerifierBuilder>,
}

impl GatewayOpts {
    /// The gateway's defaults against publisher `base`: exact source = publisher,
    /// fail-closed, max age 300 s.
    pub fn new(base: &str) -> GatewayOpts {
        GatewayOpts {
            issuer: None,
            exact: Some(base.to_owned()),
            policy: StalenessPolicy::FailClosed,
            max_age: Duration::from_secs(300),
            open: OpenOptions::new(),
            cache: None,
            clock: None,
            staleness: None,
            tweak: None,
        }
    }
}

/// A gateway: sync client → handle → verifier → `BearerLayer` around an axum router.
pub struct Gateway {
    pub handle: SnapshotHandle,
    pub sync: Option<SyncClient>,
    pub verifier: Arc<Verifier>,
    app: Router,
}

impl Gateway {
    /// A gateway syncing from `publisher_base` (long-poll, short backoff).
    pub fn start(publisher_base: &str, o: GatewayOpts) -> Gateway {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        if let Some(iss) = &o.issuer {
            validation.set_issuer(&[iss]);
        }
        let handle = SnapshotHandle::new(o.policy, o.max_age);
        let mut b =
            Verifier::builder(DecodingKey::from_secret(SECRET), validation).state(handle.clone());
        if let Some(url) = &o.exact {
            let mut source = HttpExactSource::new(url).unwrap();
            if let Some((seal, _)) = keys_of(url) {
                source = source.seal_key(&seal);
            }
            b = b.async_exact_source(CachedSource::new(source));
        }
        if let Some(clock) = o.clock.clone() {
            b = b.clock(move || clock());
        }
        if let Some((age, policy)) = o.staleness {
            b = b.staleness(age, policy);
        }
        if let Some(t) = o.tweak {
            b = t(b);
        }
        let verifier = Arc::new(b.build().unwrap());
        let mut open = o.open;
        let mut sync = SyncConfig::url(publisher_base)
            .long_poll(Duration::from_secs(5))
            .backoff(Duration::from_millis(20), Duration::from_millis(100));
        match keys_of(publisher_base) {
            Some((seal, public)) => {
                sync = sync.seal_key(seal);
                if let (false, Some(public)) = (open.has_verifying_key(), public) {
                    open = open.verifying_key(public);
                }
            }
            // Not a publisher of these tests (a dead port): nothing will be accepted anyway.
            None => sync = sync.allow_unsigned(true),
        }
        let mut sync = sync.open_options(open);
        if let Some(c) = &o.cache {
            sync = sync.cache_file(c);
        }
        let sync = SyncClient::start(sync, handle.clone()).unwrap();
        let app = Router::new()
            .route(
                "/whoami",
                get(|Extension(claims): Extension<Value>| async { Json(claims) }),
            )
            .layer(BearerLayer::<Value>::new(Arc::clone(&verifier)));
        Gateway {
            handle,
            sync: Some(sync),
            verifier,
            app,
        }
    }

    /// The status the gateway answers for `GET /whoami` with `token`.
    pub async fn status(&self, token: &str) -> u16 {
        let req = axum::http::Request::builder()
            .uri("/whoami")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.app
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Wait (bounded) until the verifier's handle holds generation `g` or later.
    pub async fn wait_generation(&self, g: u64) {
        wait_until(&format!("the gateway reaching generation {g}"), || {
            self.handle.generation().is_some_and(|h| h >= g)
        })
        .await;
    }

    /// Stop syncing; the handle keeps what it holds.
    pub fn stop_sync(&mut self) {
        if let Some(s) = self.sync.take() {
            s.stop();
        }
    }
}

/// Poll `cond` every 5 ms until it holds; panic with `what` after [`WAIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Refused: 401 (invalid, expired, revoked) or 503 (cannot vouch). Never 200.
pub fn refused(status: u16) -> bool {
    status == 401 || status == 503
}

/// Collects a test's findings so one run reports every status seen, then fails once.
#[derive(Default)]
pub struct Findings(Vec<String>);

impl Findings {
    /// A token that must be refused.
    pub fn refused(&mut self, what: &str, status: u16) {
        eprintln!("{what}: {status}");
        if !refused(status) {
            self.0
                .push(format!("{what}: expected 401/503, got {status}"));
        }
    }

    /// A token that must pass.
    pub fn passes(&mut self, what: &str, status: u16) {
        eprintln!("{what}: {status}");
        if status != 200 {
            self.0.push(format!("{what}: expected 200, got {status}"));
        }
    }

    /// Any other expectation.
    pub fn check(&mut self, what: &str, ok: bool, seen: impl std::fmt::Debug) {
        eprintln!("{what}: {seen:?}");
        if !ok {
            self.0.push(format!("{what}: saw {seen:?}"));
        }
    }

    /// Fail with everything found.
    pub fn finish(self) {
        assert!(self.0.is_empty(), "\n  {}", self.0.join("\n  "));
    }
}

/// Remove a temp folder.
pub fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// `json!` helper for a revocation body.
pub fn rev(jti: &str, exp: u64) -> Value {
    json!({"jti": jti, "exp": exp})
}
