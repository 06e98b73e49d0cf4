//! The publisher (`revbloom serve`): a durable revocation store, an HTTP API, and the
//! producer of signed snapshots and deltas that verifiers sync from.
//!
//! Data flows one way: [`store`] (durable, group-committed) → [`publish`] (window, cutoffs,
//! generations) → [`api`] (bytes over HTTP). See `docs/API.md` for the endpoints and
//! `docs/DESIGN.md` (section *Publisher*) for the why.

pub mod config;
pub mod metrics;
pub mod store;

pub use config::ServerConfig;
pub use store::{Committed, Cutoff, Revocation, Store, StoreError, StoreWriter};
