//! Assembling and running the publisher: store → publisher task → HTTP listener, and the
//! orderly shutdown that keeps every acknowledged revocation durable.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{ConfigFileError, ServerConfig};
use super::http::{router, AppState};
use super::metrics::Metrics;
use super::publish::{Hub, PublishError, Publisher};
use super::store::{Store, StoreError};

/// Errors starting or running the publisher.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The first generation could not be produced.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The signing key could not be read.
    #[error(transparent)]
    SigningKey(#[from] revbloom::snapshot::KeyFileError),
    /// The listen address could not be bound, or serving failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running publisher. Dropping it does not stop it; call [`Running::shutdown`] then
/// [`Running::wait`].
pub struct Running {
    addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The publisher's read side (current generation, deltas).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Begin a graceful shutdown: stop accepting connections, end long-polls, let in-flight
    /// requests finish.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait until the server has stopped and the store's writer has committed its last
    /// queued write.
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Listen {
                addr: self.addr,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

/// Start the publisher described by `config` with `admin_token` (see
/// [`resolve_admin_token`](super::config::resolve_admin_token)). Returns once the first
/// generation is published and the listener is bound.
pub async fn start(config: ServerConfig, admin_token: String) -> Result<Running, ServeError> {
    config.validate()?;
    let signing_key = match &config.signing_key {
        Some(path) => Some(revbloom::snapshot::read_signing_key(path)?),
        None => None,
    };
    let (commit_tx, commit_rx) = mpsc::unbounded_channel();
    let (store, writer) = Store::open(&config.data_dir, Some(commit_tx))?;
    let store = store.with_default_issuer(config.default_issuer());
    let metrics = Arc::new(Metrics::default());
    let (publisher, hub) =
        Publisher::start(store.clone(), &config, signing_key, Arc::clone(&metrics)).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let state = AppState::new(
        store,
        hub.clone(),
        metrics,
        config.limits.clone(),
        config.window.bounds(),
        admin_token,
        shutdown.clone(),
    );
    let app = router(state);
    let publisher_task = tokio::spawn(publisher.run(commit_rx, shutdown.clone()));
    let signal = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { signal.cancelled().await })
            .await;
        // Every in-flight request has finished, so every acknowledged write is committed.
        // The publisher saw the same signal; once it and the router are dropped, the last
        // Store handles are gone and the writer drains and exits.
        let _ = publisher_task.await;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        served.map_err(|source| ServeError::Listen { addr, source })
    });
    Ok(Running {
        addr,
        hub,
        shutdown,
        task,
    })
}

/// Resolve on ctrl-c or SIGTERM: the signals a service manager or a terminal sends.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
