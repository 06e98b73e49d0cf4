//! The publisher (`revbloom serve`): a durable revocation store, an HTTP API, and the
//! producer of signed snapshots and deltas that verifiers sync from.
//!
//! Data flows one way: [`store`] (durable, group-committed) → [`publish`] (window, cutoffs,
//! generations; with a shared PostgreSQL store, [`replica`] elects the one builder) → [`http`] (one router per resource: revocations, cutoffs, the snapshot and
//! delta feed with its long-polls, health and metrics); [`run`] assembles them. See
//! `docs/API.md` for the endpoints and `docs/DESIGN.md` (section *Publisher*) for the why.
//!
//! This package also builds the `revbloom` binary. Services that only verify tokens depend on
//! the `revbloom` library, which pulls in none of this.
//!
//! ```no_run
//! # async fn demo() -> Result<(), revbloom_server::ServeError> {
//! use revbloom_server::{config::resolve_admin_token, run, ServerConfig};
//!
//! let config = ServerConfig::default(); // 127.0.0.1:8750, ./revbloom-data
//! let (token, _) = resolve_admin_token(&config)?;
//! let running = run::start(config, token).await?;
//! run::shutdown_signal().await;
//! running.shutdown();
//! running.wait().await
//! # }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod authz;
pub mod config;
pub mod distribute;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod publish;
pub mod replica;
pub mod run;
pub mod sizing;
pub mod store;
pub mod tls;
pub mod upload;

pub use config::ServerConfig;
pub use publish::{Hub, Published, Publisher};
pub use run::{start, Running, ServeError};
pub use store::{Committed, Cutoff, Revocation, Store, StoreError, StoreWriter};
