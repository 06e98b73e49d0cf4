//! # revbloom
//!
//! JWT revocation without a per-request database lookup. Revoked token ids (`jti`) go into a
//! ring of cache-line-blocked Bloom filters bucketed by the token's `exp`; a check touches one
//! bucket and one 64-byte block, allocates nothing, and never answers [`Verdict::Clear`] for a
//! revoked token. A positive is only [`Verdict::MaybeRevoked`]: ask an exact source before
//! rejecting, so a false positive never rejects a good token. Buckets whose tokens have all
//! expired fall away as the window advances.
//!
//! ```
//! use revbloom::{Verdict, Window, WindowConfig};
//!
//! let now = 1_767_225_600; // 2026-01-01T00:00:00Z
//! let mut window = Window::new(WindowConfig::default(), now)?;
//!
//! window.insert("token-42", Some(now + 3600)); // revoke until the token's exp
//! assert_eq!(window.check("token-42", Some(now + 3600)), Verdict::MaybeRevoked);
//! assert_eq!(window.check("token-43", Some(now + 3600)), Verdict::Clear); // never inserted
//!
//! window.advance(now + 2 * 3600 + 120); // an hour after exp, past the 60 s leeway
//! assert_eq!(window.check("token-42", Some(now + 3600)), Verdict::Expired);
//! # Ok::<(), revbloom::ConfigError>(())
//! ```
//!
//! ## What is where
//!
//! - The crate root: [`Window`] (build and check a revocation filter), [`SnapshotView`] and
//!   [`DeltaView`] (signed files verifiers open in place), [`SnapshotHandle`] (hot swap with a
//!   staleness policy), [`Verdict`], [`Bounds`].
//! - [`snapshot`] and [`delta`]: writing files (`encode`, `encode_delta`) and the key loaders.
//! - `verify` (feature `verify`): the JWT `Verifier` with claim
//!   cutoffs and an exact source for filter positives, keyed by one static key or by
//!   `Issuers` (several issuers, keys from their JWKS); `CachedSource` with feature `cache`.
//! - `tower` (feature `tower`): `BearerLayer`, the middleware that answers RFC 6750 errors.
//! - `sync` (feature `sync`): `SyncClient` keeps a handle current from a publisher or a file;
//!   `HttpExactSource` asks the publisher about positives; `JwksClient` keeps JWKS issuers'
//!   keys current. `wire` is the protocol both use.
//!
//! The publisher and the `revbloom` binary are the `revbloom-server` package. See
//! `docs/DESIGN.md` for how and why, and `docs/BENCHMARKS.md` for measured figures.

#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "tower")]
pub mod bearer;
pub mod bloom;
pub mod bounds;
mod config;
pub mod cutoff;
pub mod delta;
mod error;
pub mod hash;
pub mod snapshot;
pub mod swap;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "verify")]
pub mod verify;
mod window;
#[cfg(feature = "verify")]
pub mod wire;

#[cfg(feature = "sync")]
pub mod sync;

pub use bounds::{Bounds, OutOfBounds, MAX_JTI_BYTES};
pub use config::{BucketDivisor, Geometry, WindowConfig, MAX_BUCKETS, MIN_FP_RATE};
pub use cutoff::{CutoffKey, CutoffSet};
pub use delta::{DeltaError, DeltaView};
pub use error::ConfigError;
pub use hash::{KeyHash, KeyHasher};
pub use snapshot::{OpenOptions, SnapshotError, SnapshotMeta, SnapshotView};
pub use swap::{Decision, SnapshotHandle, StalenessPolicy};
pub use window::{BucketId, BucketStats, InsertOutcome, Journal, LayoutMismatch, Verdict, Window};

/// The README's examples (the core, the middleware) run as doctests.
#[cfg(all(doctest, feature = "tower", feature = "sync"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
