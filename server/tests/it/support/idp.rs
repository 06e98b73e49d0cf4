//! An identity provider for the back-channel logout and RFC 7009 tests: real RS256 and ES256
//! keys, their JWKS served by a real HTTP server on loopback, and tokens signed with them
//! (header written by hand, so a test can say any `typ` or `alg`).

use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use revbloom_server::config::{RevocationClient, TrustedIssuer};
use revbloom_server::{Running, ServerConfig};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The realm's issuer, Keycloak-style.
pub const ISS: &str = "http://127.0.0.1/realms/acme";
/// A second trusted issuer, signing with ES256.
pub const ISS_EC: &str = "http://127.0.0.1/realms/ec";
/// The `client_id` under which the identity provider knows the publisher.
pub const AUD: &str = "revbloom-publisher";
/// The issuer of [`Idp::start_rotating`].
pub const ISS_ROTATING: &str = "https://rotating.example.com";
/// The RFC 7009 client.
pub const CLIENT_ID: &str = "orders-service";
/// Its secret.
pub const CLIENT_SECRET: &str = "orders-secret-0123456789";

/// A signing key with its public JWK.
#[derive(Clone)]
pub struct Key {
    pub alg: Algorithm,
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl Key {
    fn new(alg: Algorithm, kid: &str, encoding: EncodingKey) -> Self {
        let mut jwk: Jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            alg,
            kid: kid.to_owned(),
            encoding,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    /// The RSA key of `tests/data/jwks-rsa-{n}.pem`.
    pub fn rsa(n: u8, kid: &str) -> Self {
        let path = format!(
            "{}/../tests/data/jwks-rsa-{n}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let pem = std::fs::read(path).unwrap();
        Self::new(
            Algorithm::RS256,
            kid,
            EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
    }

    /// A P-256 key from a fixed seed.
    pub fn es256(seed: u8, kid: &str) -> Self {
        let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let pem = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
        Self::new(
            Algorithm::ES256,
            kid,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
    }

    /// `header` (alg and kid added unless present) and `claims`, signed with this key.
    pub fn sign_with_header(&self, mut header: Value, claims: &Value) -> String {
        let alg = serde_json::to_value(self.alg).unwrap();
        header.as_object_mut().unwrap().entry("alg").or_insert(alg);
        header
            .as_object_mut()
            .unwrap()
            .entry("kid")
            .or_insert(json!(self.kid));
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{message}.{sig}")
    }

    /// A logout token as Keycloak types it (`typ: logout+jwt`).
    pub fn logout_token(&self, claims: &Value) -> String {
        self.sign_with_header(json!({"typ": "logout+jwt"}), claims)
    }

    /// An access token (`typ: JWT`).
    pub fn access_token(&self, claims: &Value) -> String {
        self.sign_with_header(json!({"typ": "JWT"}), claims)
    }
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of a logout token as Keycloak builds it (`TokenManager.initLogoutToken`): a
/// random `jti`, `iat` now, `exp` two minutes on, the client as `aud`, the back-channel
/// event (an empty object), `sid` when "Backchannel logout session required" is on, `sub`
/// the user's id, and Keycloak's own `typ` claim.
pub fn keycloak_logout_claims(iss: &str, sub: &str, sid: &str, now: u64) -> Value {
    json!({
        "iat": now,
        "exp": now + 120,
        "jti": format!("{}-{}", now, random_id()),
        "iss": iss,
        "aud": AUD,
        "sub": sub,
        "typ": "Logout",
        "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    })
}

/// A random hex id.
pub fn random_id() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&Key]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// A JWKS endpoint on 127.0.0.1, stopped when dropped.
pub struct JwksServer {
    pub url: String,
    /// What `/certs` answers: the document, or `None` for a 500.
    body: Arc<Mutex<Option<String>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl JwksServer {
    pub async fn start(doc: &Value) -> Self {
        let body = Arc::new(Mutex::new(Some(doc.to_string())));
        let serve = Arc::clone(&body);
        let app = Router::new().route(
            "/certs",
            get(move || {
                let body = serve.lock().unwrap().clone();
                async move {
                    match body {
                        Some(b) => (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, "application/json")],
                            b,
                        ),
                        None => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(header::CONTENT_TYPE, "text/plain")],
                            "down".to_owned(),
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            url,
            body,
            stop: Some(stop),
        }
    }

    /// Serve `doc` from now on, or fail every fetch with a 500 (`None`).
    pub fn set(&self, doc: Option<&Value>) {
        *self.body.lock().unwrap() = doc.map(Value::to_string);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The identity provider of a test: its keys, JWKS servers and a publisher trusting it.
pub struct Idp {
    pub rsa: Key,
    pub ec: Key,
    pub running: Running,
    pub url: String,
    pub data: std::path::PathBuf,
    /// The JWKS URL of [`ISS`] (the RS256 key).
    pub rsa_jwks_url: String,
    _servers: (JwksServer, JwksServer),
}

impl Idp {
    /// A publisher trusting [`ISS`] (RS256) and [`ISS_EC`] (ES256) with audience [`AUD`],
    /// and the RFC 7009 client [`CLIENT_ID`]; `tweak` changes the config before start.
    pub async fn start(name: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let rsa = Key::rsa(1, "rsa-1");
        let ec = Key::es256(7, "ec-1");
        let rsa_jwks = JwksServer::start(&jwks(&[&rsa])).await;
        let ec_jwks = JwksServer::start(&jwks(&[&ec])).await;
        let data = super::temp_dir(name);
        let secret_file = data.join("client.secret");
        std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
        let mut c = super::config(data.join("data"));
        c.identity_providers.issuers = vec![
            TrustedIssuer {
                issuer: ISS.into(),
                jwks_url: rsa_jwks.url.clone(),
                audiences: vec![AUD.into()],
            },
            TrustedIssuer {
                issuer: ISS_EC.into(),
                jwks_url: ec_jwks.url.clone(),
                audiences: vec![AUD.into()],
            },
        ];
        c.identity_providers.revocation_clients = vec![RevocationClient {
            client_id: CLIENT_ID.into(),
            client_secret_file: Some(secret_file),
            client_secret_env: None,
        }];
        tweak(&mut c);
        c.validate().unwrap();
        let running = super::start(c).await;
        let url = running.url();
        Self {
            rsa,
            ec,
            running,
            url,
            data,
            rsa_jwks_url: rsa_jwks.url.clone(),
            _servers: (rsa_jwks, ec_jwks),
        }
    }

    /// [`Idp::start`], also trusting [`ISS_ROTATING`], whose JWKS server (publishing `keys` at
    /// first) the test controls.
    pub async fn start_rotating(name: &str, keys: &[&Key]) -> (Self, JwksServer) {
        let server = JwksServer::start(&jwks(keys)).await;
        let url = server.url.clone();
        let idp = Self::start(name, |c| {
            c.identity_providers.issuers.push(TrustedIssuer {
                issuer: ISS_ROTATING.into(),
                jwks_url: url,
                audiences: vec![AUD.into()],
            });
        })
        .await;
        (idp, server)
    }

    /// The publisher's data folder.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.data.join("data")
    }

    pub async fn stop(self) {
        self.running.shutdown();
        self.running.wait().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
