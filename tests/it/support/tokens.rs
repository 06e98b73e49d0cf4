//! Shared helpers for the verifier integration tests: keys, token signing, state building.

use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
#[cfg(feature = "tower")]
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use revbloom::cutoff::{CutoffKey, CutoffSet};
use revbloom::verify::MemoryState;
use revbloom::{Window, WindowConfig};
use serde_json::{json, Value};

pub const SECRET: &[u8] = b"test-secret-of-reasonable-length";
pub const SEED: u64 = 0x5eed;

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

pub fn hs256(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[cfg(feature = "tower")] // used by the tower-layer tests only
pub fn hs256_with(secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub fn hs256_validation() -> Validation {
    Validation::new(Algorithm::HS256)
}

pub fn hs256_key() -> DecodingKey {
    DecodingKey::from_secret(SECRET)
}

/// A fixed P-256 key pair (PKCS#8 private PEM, SPKI public PEM).
#[cfg(feature = "tower")] // used by the tower-layer tests only
pub fn es256_pems() -> (String, String) {
    let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = sk
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    (private, public)
}

#[cfg(feature = "tower")] // used by the tower-layer tests only
pub fn es256(claims: &Value) -> String {
    let (private, _) = es256_pems();
    let key = EncodingKey::from_ec_pem(private.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

#[cfg(feature = "tower")] // used by the tower-layer tests only
pub fn es256_key() -> DecodingKey {
    let (_, public) = es256_pems();
    DecodingKey::from_ec_pem(public.as_bytes()).unwrap()
}

/// Claims of a token issued `age` seconds ago, valid for 10 minutes.
pub fn claims(jti: &str, sub: &str, age: u64) -> Value {
    let t = now();
    json!({"jti": jti, "sub": sub, "iat": t - age, "exp": t + 600})
}

pub fn window() -> Window {
    Window::with_seed(WindowConfig::default(), now(), SEED).unwrap()
}

/// A state with `revoked` (jti, exp) and `cutoffs` (claim, value, before), created now.
pub fn state(revoked: &[(&str, u64)], cutoffs: &[(&str, &str, u64)]) -> MemoryState {
    let mut w = window();
    for (jti, exp) in revoked {
        w.insert(jti, Some(*exp));
    }
    let mut set = CutoffSet::new();
    for (claim, value, before) in cutoffs {
        set.insert(CutoffKey::new(w.hasher(), None, claim, value), *before);
    }
    MemoryState::new(w, set, 1, now())
}
