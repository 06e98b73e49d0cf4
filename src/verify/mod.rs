//! Verify JWTs and check them against revocation state (feature `verify`).
//!
//! [`Verifier`] wraps jsonwebtoken (backend `rust_crypto`): it decodes and validates the token,
//! then checks, against one consistent view of the revocation state,
//!
//! 1. the token id — `(iss, jti)` when issuer keying is on — in the Bloom window: a clear
//!    answer accepts with no further work, a positive goes to the exact source;
//! 2. the configured claims (default `sub`; e.g. `sid`, `client_id`) against claim cutoffs:
//!    "tokens with this claim value issued before T are revoked", checked against `iat`;
//! 3. only for filter positives, an [`ExactSource`] / [`AsyncExactSource`], usually behind a
//!    `CachedSource` (feature `cache`).
//!
//! The key is one static [`DecodingKey`](jsonwebtoken::DecodingKey) ([`Verifier::builder`]),
//! or the token's issuer's, chosen by `iss` and `kid` among several [`Issuers`] whose keys come
//! from their JWKS ([`Verifier::with_issuers`]; the `sync` feature's `JwksClient` fetches them).
//!
//! ```
//! use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
//! use revbloom::cutoff::{CutoffKey, CutoffSet};
//! use revbloom::verify::{MemoryExactSource, MemoryState, RevokedBy, Verifier, VerifyError};
//! use revbloom::{Window, WindowConfig};
//!
//! let now = jsonwebtoken::get_current_timestamp();
//! let mut window = Window::new(WindowConfig::default(), now)?;
//! let exact = MemoryExactSource::new();
//! // Revoke one token id, and every token of "mallory" issued before now.
//! window.insert("tok-1", Some(now + 600));
//! exact.revoke(None, "tok-1", Some(now + 600));
//! let mut cutoffs = CutoffSet::new();
//! cutoffs.insert(CutoffKey::new(window.hasher(), None, "sub", "mallory"), now);
//! let state = MemoryState::new(window, cutoffs, 1, now);
//!
//! let verifier = Verifier::builder(DecodingKey::from_secret(b"secret"), Validation::new(Algorithm::HS256))
//!     .state(state)
//!     .exact_source(exact)
//!     .build()?;
//!
//! let sign = |claims: serde_json::Value| {
//!     encode(&Header::default(), &claims, &EncodingKey::from_secret(b"secret")).unwrap()
//! };
//! let exp = now + 600;
//! let ok = sign(serde_json::json!({"jti": "tok-2", "sub": "alice", "exp": exp, "iat": now}));
//! let revoked = sign(serde_json::json!({"jti": "tok-1", "sub": "alice", "exp": exp, "iat": now}));
//! let cut = sign(serde_json::json!({"jti": "tok-3", "sub": "mallory", "exp": exp, "iat": now - 1}));
//!
//! let v = verifier.verify::<serde_json::Value>(&ok)?;
//! assert_eq!(v.claims["sub"], "alice");
//! assert!(matches!(verifier.verify::<serde_json::Value>(&revoked),
//!                  Err(VerifyError::Revoked { by: RevokedBy::Jti })));
//! assert!(matches!(verifier.verify::<serde_json::Value>(&cut),
//!                  Err(VerifyError::Revoked { by: RevokedBy::Cutoff { .. } })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crypto provider
//!
//! revbloom enables only jsonwebtoken's `rust_crypto` backend, and jsonwebtoken then picks it
//! by itself. If another crate in the build turns on `aws_lc_rs` too, jsonwebtoken can no
//! longer choose and panics at the first decode; the application (not this library) must
//! then install one provider at startup, before any token is verified:
//!
//! ```
//! // Err means a provider is already installed, which is fine.
//! let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
//! ```

#[cfg(feature = "cache")]
mod cache;
mod claims;
mod error;
mod exact;
#[cfg(feature = "sync")]
mod http;
mod issuers;
mod state;
mod verifier;

/// The staleness policy is the snapshot handle's; re-exported so a verifier built over any
/// state source is configured with the same type.
pub use crate::swap::StalenessPolicy;
#[cfg(feature = "cache")]
pub use cache::{CacheConfig, CacheStats, CachedSource};
pub use claims::MAX_CUTOFF_CLAIMS;
pub use error::{RevokedBy, Unavailable, VerifyError};
pub use exact::{
    covered, AsyncExactSource, ExactError, ExactFuture, ExactQuery, ExactSource, MemoryExactSource,
};
#[cfg(feature = "sync")]
pub use http::{HttpExactSource, HttpExactSourceError};
pub use issuers::{
    Issuer, Issuers, IssuersError, JwksError, KeyRefresh, KeySet, RefreshFuture, MIN_RSA_BITS,
    SUPPORTED_ALGORITHMS,
};
pub use state::{MemoryState, NoState, RevocationState, StateSource};
pub use verifier::{
    issuer_warnings, BuildError, Checked, ExactFailurePolicy, Verified, Verifier, VerifierBuilder,
    VerifierStats, DEFAULT_MAX_AGE,
};
