//! The library's integration tests, one binary: the window against an exact model, the
//! measured false-positive rate, snapshot and delta files (golden fixtures, round trips,
//! tampering, hot swap), and the verifier (tokens, cutoffs, exact sources, staleness, the
//! tower layer). The counting-allocator tests are binaries of their own: a global allocator
//! is per binary.

mod check_probe;
mod cutoff_index;
mod fp_rate;
mod snapshot_basic;
mod snapshot_fixtures;
mod snapshot_roundtrip;
mod snapshot_swap;
mod snapshot_tamper;
mod support;
#[cfg(feature = "sync")]
mod sync_refusals;
#[cfg(feature = "verify")]
mod verify_claims_listed;
#[cfg(feature = "verify")]
mod verify_cutoff_spaces;
#[cfg(feature = "verify")]
mod verify_exact;
#[cfg(feature = "verify")]
mod verify_garbage;
#[cfg(all(feature = "tower", feature = "sync"))]
mod verify_http;
#[cfg(all(feature = "tower", feature = "sync"))]
mod verify_jwks;
#[cfg(feature = "verify")]
mod verify_snapshot;
#[cfg(feature = "tower")]
mod verify_staleness;
#[cfg(feature = "tower")]
mod verify_tokens;
#[cfg(feature = "verify")]
mod verify_trusted;
mod window_model;
