//! Token issuers whose signing keys come from a JWKS (JSON Web Key Set): several issuers at once,
//! each with its audiences and the algorithms it signs with.
//!
//! A token names its issuer in `iss`; [`Issuers`] reads that claim from the *unverified*
//! payload only to pick the issuer (an exact, case-sensitive match), then the token's `kid`
//! picks the key from that issuer's current [`KeySet`], and jsonwebtoken checks the signature
//! and the claims — `iss` again, `aud`, `exp` — with that key alone. Nothing the token says can
//! choose an algorithm its key was not published for: every key carries exactly one algorithm,
//! derived from its type (`RSA` → RS256, `EC` on P-256 → ES256, `OKP` on Ed25519 → EdDSA),
//! and a JWK whose own `alg` disagrees, a symmetric (`oct`) key, or any other key is left out
//! of the set.
//!
//! This module holds keys and never fetches them: the JWKS client (feature `sync`,
//! `revbloom::sync::JwksClient`) keeps each issuer's set current from its URL, or a caller
//! sets them with [`Issuers::set_jwks`] (keys read from a file, a test).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Header, Validation};
use serde::Deserialize;
use thiserror::Error;

use super::error::VerifyError;

/// The algorithms an [`Issuer`] may allow: RS256, ES256 and EdDSA (Ed25519).
pub const SUPPORTED_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Smallest RSA modulus accepted from a JWKS, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// Longest `kid` kept in an error, bytes: a token's `kid` is the sender's text.
const MAX_KID_IN_ERROR: usize = 128;

/// One token issuer: its `iss`, where its keys are published, the audiences its tokens must
/// name, and the algorithms it signs with.
///
/// ```
/// use jsonwebtoken::Algorithm;
/// use revbloom::verify::Issuer;
///
/// let idp = Issuer::new("https://idp.example.com", "https://idp.example.com/.well-known/jwks.json")
///     .audience("orders-api")
///     .algorithms(&[Algorithm::RS256]);
/// assert_eq!(idp.iss(), "https://idp.example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    iss: String,
    jwks_url: Option<String>,
    audiences: Vec<String>,
    any_audience: bool,
    algorithms: Vec<Algorithm>,
    leeway: u64,
}

impl Issuer {
    /// Tokens whose `iss` is exactly `iss`, with keys published at `jwks_url`. Default: every
    /// algorithm of [`SUPPORTED_ALGORITHMS`], 60 s of leeway on `exp`/`nbf`, and no audience
    /// yet (add one, or say [`Issuer::any_audience`]).
    pub fn new(iss: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Self {
            jwks_url: Some(jwks_url.into()),
            ..Self::without_url(iss)
        }
    }

    /// An issuer whose keys the caller sets with [`Issuers::set_jwks`] (e.g. read from a file);
    /// the JWKS client leaves it alone.
    pub fn without_url(iss: impl Into<String>) -> Self {
        Self {
            iss: iss.into(),
            jwks_url: None,
            audiences: Vec::new(),
            any_audience: false,
            algorithms: SUPPORTED_ALGORITHMS.to_vec(),
            leeway: 60,
        }
    }

    /// Accept tokens whose `aud` names `aud` (call once per audience). A token without `aud`
    /// is refused.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        let aud = aud.into();
        if !self.audiences.contains(&aud) {
            self.audiences.push(aud);
        }
        self
    }

    /// [`Issuer::audience`] for each of `auds`.
    pub fn audiences<S: Into<String>>(self, auds: impl IntoIterator<Item = S>) -> Self {
        auds.into_iter().fold(self, Issuer::audience)
    }

    /// Do not check `aud` at all: any token of this issuer is for this service. An IdP that
    /// serves several services issues tokens a service must not accept for another; name the
    /// audiences instead whenever the IdP sets `aud`.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// The algorithms this issuer signs with (a subset of [`SUPPORTED_ALGORITHMS`]).
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// Seconds of leeway on `exp` and `nbf` (default 60).
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// The `iss` tokens must carry.
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// Where the keys are published, if the JWKS client fetches them.
    pub fn jwks_url(&self) -> Option<&str> {
        self.jwks_url.as_deref()
    }

    /// The audiences accepted (empty with [`Issuer::any_audience`]).
    pub fn accepted_audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The algorithms allowed.
    pub fn allowed_algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The validation of tokens signed with `alg`: jsonwebtoken wants the algorithms of one
    /// validation to be of one family, and one algorithm is what a key verifies anyway.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.set_issuer(&[&self.iss]);
        v.required_spec_claims.insert("iss".to_owned());
        if self.any_audience {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
            v.required_spec_claims.insert("aud".to_owned());
        }
        v
    }
}

/// An [`Issuers`] that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IssuersError {
    /// No issuer was given.
    #[error("no issuer configured: add at least one Issuer")]
    Empty,
    /// Two issuers have the same `iss`.
    #[error("issuer {iss:?} is configured twice: give each iss once, with all its audiences")]
    Duplicate {
        /// The repeated issuer.
        iss: String,
    },
    /// An issuer allows no algorithm.
    #[error("issuer {iss:?} allows no algorithm: allow RS256, ES256 or EdDSA")]
    NoAlgorithm {
        /// The issuer.
        iss: String,
    },
    /// An issuer allows an algorithm keys from a JWKS cannot be used with.
    #[error("issuer {iss:?} allows {alg:?}, which JWKS issuers do not support: allow only RS256, ES256 or EdDSA")]
    UnsupportedAlgorithm {
        /// The issuer.
        iss: String,
        /// The algorithm.
        alg: Algorithm,
    },
    /// An issuer names no audience and was not told to accept any.
    #[error("issuer {iss:?} names no audience: add the audiences this service accepts (Issuer::audience), or call Issuer::any_audience")]
    NoAudience {
        /// The issuer.
        iss: String,
    },
}

/// A JWKS document that cannot be used; the issuer keeps the key set it had.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The document is not a JSON object with a `keys` array.
    #[error("the JWKS is not a JSON object with a \"keys\" array: {0}")]
    Json(#[source] serde_json::Error),
    /// No key of the document can verify tokens of this issuer.
    #[error("the JWKS holds {total} keys, none usable (RS256 RSA of at least {MIN_RSA_BITS} bits, ES256 P-256, EdDSA Ed25519, for signatures, with an algorithm the issuer allows)")]
    NoUsableKey {
        /// Keys in the document.
        total: usize,
    },
    /// The issuer is not configured.
    #[error("issuer {iss:?} is not configured")]
    UnknownIssuer {
        /// The issuer named.
        iss: String,
    },
}

/// One verification key of a set: the algorithm it verifies, its `kid` if any.
#[derive(Clone)]
struct SetKey {
    kid: Option<Box<str>>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The usable keys of one JWKS document, each bound to one algorithm.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<SetKey>,
    skipped: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (k.kid.as_deref(), k.alg))
                    .collect::<Vec<_>>(),
            )
            .field("skipped", &self.skipped)
            .finish()
    }
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The keys of the JWKS document `json` usable with `allowed`; the others are skipped.
    pub fn from_jwks(json: &[u8], allowed: &[Algorithm]) -> Result<Self, JwksError> {
        let doc: Document = serde_json::from_slice(json).map_err(JwksError::Json)?;
        let total = doc.keys.len();
        let keys: Vec<SetKey> = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| usable(&jwk, allowed))
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey { total });
        }
        Ok(Self {
            skipped: total - keys.len(),
            keys,
        })
    }

    /// Usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No usable key (never true of a set [`KeySet::from_jwks`] returns).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys of the document left out (unsupported type, curve or algorithm, not for
    /// signatures, a weak RSA key, unparsable).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The `kid` and algorithm of each usable key.
    pub fn keys(&self) -> impl Iterator<Item = (Option<&str>, Algorithm)> {
        self.keys.iter().map(|k| (k.kid.as_deref(), k.alg))
    }

    /// The key for a token signed with `alg` naming `kid`; without a `kid`, the only key for
    /// `alg`, if there is exactly one.
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<usize, Miss> {
        let mut found = None;
        for (i, k) in self.keys.iter().enumerate() {
            if k.alg != alg {
                continue;
            }
            match kid {
                Some(kid) if k.kid.as_deref() == Some(kid) => return Ok(i),
                Some(_) => {}
                None if found.is_some() => return Err(Miss::Ambiguous),
                None => found = Some(i),
            }
        }
        found.ok_or(Miss::Unknown)
    }
}

enum Miss {
    Unknown,
    Ambiguous,
}

/// The one algorithm `jwk` verifies, when it is a usable signature key.
fn usable(jwk: &Jwk, allowed: &[Algorithm]) -> Option<SetKey> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Symmetric keys never verify a token from a JWKS: a published "secret" is public.
        _ => return None,
    };
    if common
        .key_algorithm
        .is_some_and(|a| a != KeyAlgorithm::from(alg))
    {
        return None;
    }
    if !allowed.contains(&alg) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let well_formed = match (alg, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, .. }) => {
            let leading = n.iter().take_while(|b| **b == 0).count();
            let bytes = n.len() - leading;
            let bits = bytes * 8 - n.get(leading).map_or(8, |b| b.leading_zeros() as usize);
            bits >= MIN_RSA_BITS
        }
        // 0x04 || x || y, and the raw 32-byte Ed25519 point.
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(b)) => b.len() == 65,
        (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(b)) => b.len() == 32,
        _ => false,
    };
    well_formed.then(|| SetKey {
        kid: common.key_id.as_deref().map(Box::from),
        alg,
        key,
    })
}

/// Fetches an issuer's keys again on demand; the JWKS client (feature `sync`) is one.
pub trait KeyRefresh: Send + Sync {
    /// A token of `iss` named a key its set does not hold (or no set is loaded). Starts a
    /// fetch if the refresher's rate limit allows, without blocking. The future resolves once
    /// a fetch that was started now or already running has finished, at once when none was
    /// (the rate limit refused), and within a bounded time in any case.
    fn unknown_key(&self, iss: &str) -> RefreshFuture;
}

/// What [`KeyRefresh::unknown_key`] returns.
pub type RefreshFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

struct Entry {
    issuer: Issuer,
    /// One per allowed algorithm.
    validations: Vec<(Algorithm, Validation)>,
    keys: ArcSwapOption<KeySet>,
}

/// Several token issuers, each with its keys; share it (`Arc`) between a
/// [`Verifier`](super::Verifier) ([`Verifier::with_issuers`](super::Verifier::with_issuers))
/// and whatever keeps the keys current.
pub struct Issuers {
    entries: HashMap<Box<str>, Entry>,
    refresh: RwLock<Option<Arc<dyn KeyRefresh>>>,
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuers")
            .field("issuers", &self.entries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The key and the validation chosen for one token.
pub(super) struct Chosen<'a> {
    set: Arc<KeySet>,
    index: usize,
    pub(super) validation: &'a Validation,
}

impl Chosen<'_> {
    pub(super) fn key(&self) -> &DecodingKey {
        &self.set.keys[self.index].key
    }
}

/// The only claim read before the signature is checked.
#[derive(Deserialize)]
struct IssOnly {
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

impl Issuers {
    /// The issuers, none with keys yet.
    pub fn new(issuers: impl IntoIterator<Item = Issuer>) -> Result<Self, IssuersError> {
        let mut entries = HashMap::new();
        for issuer in issuers {
            let iss = issuer.iss.clone();
            if issuer.algorithms.is_empty() {
                return Err(IssuersError::NoAlgorithm { iss });
            }
            if let Some(&alg) = issuer
                .algorithms
                .iter()
                .find(|a| !SUPPORTED_ALGORITHMS.contains(a))
            {
                return Err(IssuersError::UnsupportedAlgorithm { iss, alg });
            }
            if issuer.audiences.is_empty() && !issuer.any_audience {
                return Err(IssuersError::NoAudience { iss });
            }
            let entry = Entry {
                validations: issuer
                    .algorithms
                    .iter()
                    .map(|&alg| (alg, issuer.validation(alg)))
                    .collect(),
                issuer,
                keys: ArcSwapOption::empty(),
            };
            if entries.insert(Box::from(iss.as_str()), entry).is_some() {
                return Err(IssuersError::Duplicate { iss });
            }
        }
        if entries.is_empty() {
            return Err(IssuersError::Empty);
        }
        Ok(Self {
            entries,
            refresh: RwLock::new(None),
        })
    }

    /// The configured issuers, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Issuer> {
        self.entries.values().map(|e| &e.issuer)
    }

    /// The issuer configured for `iss`.
    pub fn get(&self, iss: &str) -> Option<&Issuer> {
        self.entries.get(iss).map(|e| &e.issuer)
    }

    /// `iss`'s current key set, `None` until one was loaded.
    pub fn key_set(&self, iss: &str) -> Option<Arc<KeySet>> {
        self.entries.get(iss)?.keys.load_full()
    }

    /// Every issuer has a key set.
    pub fn all_loaded(&self) -> bool {
        self.entries.values().all(|e| e.keys.load().is_some())
    }

    /// Replace `iss`'s keys with those of the JWKS document `json`; returns the new set. On
    /// error the issuer keeps its keys.
    pub fn set_jwks(&self, iss: &str, json: &[u8]) -> Result<Arc<KeySet>, JwksError> {
        let entry = self
            .entries
            .get(iss)
            .ok_or_else(|| JwksError::UnknownIssuer {
                iss: iss.to_owned(),
            })?;
        let set = Arc::new(KeySet::from_jwks(json, &entry.issuer.algorithms)?);
        entry.keys.store(Some(Arc::clone(&set)));
        Ok(set)
    }

    /// Ask `refresh` for newer keys when a token names a key no set holds. One refresher at a
    /// time; the JWKS client installs itself here when it starts.
    pub fn set_refresh(&self, refresh: Option<Arc<dyn KeyRefresh>>) {
        // A poisoned lock only means a panic elsewhere while swapping an `Option`.
        let mut slot = self.refresh.write().unwrap_or_else(|e| e.into_inner());
        *slot = refresh;
    }

    /// Remove `refresh` if it is the one installed (a refresher stopping leaves a newer one
    /// alone).
    pub fn remove_refresh(&self, refresh: &Arc<dyn KeyRefresh>) {
        let mut slot = self.refresh.write().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|r| Arc::ptr_eq(r, refresh)) {
            *slot = None;
        }
    }

    /// Verify `token`'s signature with its issuer's key (chosen as for a
    /// [`Verifier`](super::Verifier): the issuer by its exact `iss`, the key by `kid` and
    /// `alg`), and its claims with the issuer's validation after `adjust` changed it (e.g. to
    /// require other claims, or not to check `aud`). A token naming a key the set does not hold
    /// awaits one refresh of the issuer's keys, as
    /// [`Verifier::verify_async`](super::Verifier::verify_async) does, then is decoded again.
    ///
    /// For tokens that are not access tokens of this service (an OIDC logout token, a token
    /// handed in to be revoked); errors are those of the verifier, `exp` past its leeway
    /// being [`VerifyError::Expired`].
    pub async fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        adjust: impl Fn(&mut Validation),
    ) -> Result<jsonwebtoken::TokenData<C>, VerifyError> {
        let once = || {
            let chosen = self.choose(token)?;
            let mut validation = chosen.validation.clone();
            adjust(&mut validation);
            jsonwebtoken::decode::<C>(token, chosen.key(), &validation).map_err(|e| {
                match e.into_kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => VerifyError::Expired,
                    kind => VerifyError::Invalid(kind),
                }
            })
        };
        match once() {
            Err(e) => match Self::refreshable(&e) {
                Some(iss) => {
                    self.unknown_key(iss).await;
                    once()
                }
                None => Err(e),
            },
            ok => ok,
        }
    }

    /// Tell the refresher `iss` needs its keys again; the future resolves when that fetch is
    /// done (see [`KeyRefresh::unknown_key`]), at once without a refresher.
    pub(super) fn unknown_key(&self, iss: &str) -> RefreshFuture {
        let refresh = self
            .refresh
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match refresh {
            Some(r) => r.unknown_key(iss),
            None => Box::pin(std::future::ready(())),
        }
    }

    /// Whether refreshing might change the answer for this error.
    pub(super) fn refreshable(err: &VerifyError) -> Option<&str> {
        match err {
            VerifyError::UnknownKey { iss, .. } | VerifyError::KeysUnavailable { iss } => Some(iss),
            _ => None,
        }
    }

    /// The validation rules of issuer `iss` (exact match), if configured. Every algorithm's
    /// validation of one issuer has the same leeway and required claims.
    pub(super) fn validation_of(&self, iss: &str) -> Option<&Validation> {
        self.entries.get(iss)?.validations.first().map(|(_, v)| v)
    }

    /// The key and validation for `token`: its issuer by the unverified `iss` (exact match),
    /// its key by `kid` and `alg`.
    pub(super) fn choose(&self, token: &str) -> Result<Chosen<'_>, VerifyError> {
        use jsonwebtoken::errors::ErrorKind;
        let header: Header =
            jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Invalid(e.into_kind()))?;
        let claims: IssOnly = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| VerifyError::Invalid(e.into_kind()))?;
        let iss = match claims.iss {
            Some(serde_json::Value::String(s)) => s,
            None | Some(serde_json::Value::Null) => {
                return Err(VerifyError::Invalid(ErrorKind::MissingRequiredClaim(
                    "iss".to_owned(),
                )))
            }
            Some(_) => return Err(VerifyError::Invalid(ErrorKind::InvalidIssuer)),
        };
        let entry = self
            .entries
            .get(iss.as_str())
            .ok_or(VerifyError::UnknownIssuer)?;
        let Some((_, validation)) = entry.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(VerifyError::Invalid(ErrorKind::InvalidAlgorithm));
        };
        let Some(set) = entry.keys.load_full() else {
            return Err(VerifyError::KeysUnavailable {
                iss: entry.issuer.iss.clone(),
            });
        };
        match set.select(header.alg, header.kid.as_deref()) {
            Ok(index) => Ok(Chosen {
                set,
                index,
                validation,
            }),
            Err(Miss::Unknown) => Err(VerifyError::UnknownKey {
                iss: entry.issuer.iss.clone(),
                kid: header.kid.map(|k| truncate(k, MAX_KID_IN_ERROR)),
            }),
            Err(Miss::Ambiguous) => Err(VerifyError::AmbiguousKey {
                iss: entry.issuer.iss.clone(),
            }),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ed_jwk(kid: &str, alg: Option<&str>) -> serde_json::Value {
        let mut v = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        if let Some(a) = alg {
            v["alg"] = json!(a);
        }
        v
    }

    #[test]
    fn keys_are_bound_to_one_algorithm() {
        let doc = json!({"keys": [
            ed_jwk("a", None),
            ed_jwk("b", Some("EdDSA")),
            ed_jwk("c", Some("RS256")),             // disagrees with its type
            {"kty": "oct", "k": "c2VjcmV0", "kid": "d"}, // symmetric
            {"kty": "OKP", "crv": "Ed25519", "kid": "e", "use": "enc",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "RSA", "kid": "f", "n": "AQAB", "e": "AQAB"}, // 17-bit modulus
            {"kty": "EC", "crv": "P-384", "kid": "g", "x": "AA", "y": "AA"},
            {"kty": "weird"},
            "not even an object",
        ]});
        let set = KeySet::from_jwks(doc.to_string().as_bytes(), &SUPPORTED_ALGORITHMS).unwrap();
        let kids: Vec<_> = set.keys().collect();
        assert_eq!(
            kids,
            [(Some("a"), Algorithm::EdDSA), (Some("b"), Algorithm::EdDSA)]
        );
        assert_eq!(set.skipped(), 7);
        assert!(set.select(Algorithm::EdDSA, Some("a")).is_ok());
        assert!(matches!(
            set.select(Algorithm::RS256, Some("a")),
            Err(Miss::Unknown)
        ));
        assert!(matches!(
            set.select(Algorithm::EdDSA, None),
            Err(Miss::Ambiguous)
        ));
        // Not allowed by the issuer: nothing usable.
        assert!(matches!(
            KeySet::from_jwks(doc.to_string().as_bytes(), &[Algorithm::RS256]),
            Err(JwksError::NoUsableKey { total: 9 })
        ));
        assert!(matches!(
            KeySet::from_jwks(b"[]", &SUPPORTED_ALGORITHMS),
            Err(JwksError::Json(_))
        ));
    }

    #[test]
    fn issuers_refuse_what_cannot_work() {
        let ok = || Issuer::new("i", "https://i/jwks").audience("a");
        assert_eq!(Issuers::new([]).unwrap_err(), IssuersError::Empty);
        assert!(matches!(
            Issuers::new([ok(), ok()]),
            Err(IssuersError::Duplicate { .. })
        ));
        assert!(matches!(
            Issuers::new([Issuer::new("i", "u")]),
            Err(IssuersError::NoAudience { .. })
        ));
        assert!(matches!(
            Issuers::new([ok().algorithms(&[Algorithm::HS256])]),
            Err(IssuersError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            Issuers::new([ok().algorithms(&[])]),
            Err(IssuersError::NoAlgorithm { .. })
        ));
        assert!(Issuers::new([ok(), Issuer::without_url("j").any_audience()]).is_ok());
    }

    #[test]
    fn kids_in_errors_are_bounded() {
        assert_eq!(truncate("é".repeat(100), 5), "éé");
        assert_eq!(truncate("abc".to_owned(), 5), "abc");
    }
}
