//! The publisher (`revbloom serve`): a durable revocation store, an HTTP API, and the
//! producer of signed snapshots and deltas that verifiers sync from.
//!
//! Data flows one way: [`store`] (durable, group-committed) → [`publish`] (window, cutoffs,
//! generations) → [`api`] (bytes over HTTP; the snapshot and delta feed with its long-polls
//! lives in `feed`); [`run`] assembles them. See `docs/API.md` for the
//! endpoints and `docs/DESIGN.md` (section *Publisher*) for the why.
//!
//! ```no_run
//! # async fn demo() -> Result<(), revbloom::server::ServeError> {
//! use revbloom::server::{config::resolve_admin_token, run, ServerConfig};
//!
//! let config = ServerConfig::default(); // 127.0.0.1:8750, ./revbloom-data
//! let (token, _) = resolve_admin_token(&config)?;
//! let running = run::start(config, token).await?;
//! run::shutdown_signal().await;
//! running.shutdown();
//! running.wait().await
//! # }
//! ```

pub mod config;
pub mod http;
pub mod metrics;
pub mod publish;
pub mod run;
pub mod store;

pub use config::ServerConfig;
pub use publish::{Hub, Published, Publisher};
pub use run::{start, Running, ServeError};
pub use store::{Committed, Cutoff, Revocation, Store, StoreError, StoreWriter};
