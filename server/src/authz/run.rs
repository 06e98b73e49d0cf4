//! Running the sidecar: the live state, the check listener, the admin listener and, when
//! given, one extra front end (the Envoy ext_authz gRPC service) sharing the same [`Checker`]
//! and shutdown signal.
//!
//! Both HTTP listeners are served by the publisher's own listener loop
//! ([`crate::run`]): a header-read timeout that also bounds idle keep-alive connections, a
//! connection cap that sheds the connections idle longest, and a shutdown deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::check::Checker;
use super::config::AuthzConfig;
use super::http::{admin_router, check_router, AdminState};
use super::state::{AuthzError, AuthzState};
use crate::limits::{effective_max_connections, ConnCounters, ConnLimits};

/// Connections the admin listener serves at once: probes and one scraper, not traffic.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// An extra front end started with the sidecar: given the shared [`Checker`] and the shutdown
/// token, it serves until the token is cancelled. [`start`] uses it for the Envoy ext_authz
/// gRPC listener of [`AuthzConfig::grpc_listen`]; another front end plugs in the same way:
///
/// ```no_run
/// # use revbloom_server::authz::{self, AuthzConfig, Checker, ExtraServer};
/// # use tokio_util::sync::CancellationToken;
/// # async fn my_front_end(
/// #     listener: tokio::net::TcpListener,
/// #     checker: Checker,
/// #     stop: CancellationToken,
/// # ) -> std::io::Result<()> {
/// #     Ok(())
/// # }
/// # async fn run(config: AuthzConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8770").await?;
/// let extra: ExtraServer = Box::new(move |checker, stop| {
///     Box::pin(async move { my_front_end(listener, checker, stop).await })
/// });
/// let running = authz::start_with(config, Some(extra)).await?;
/// # drop(running);
/// # Ok(())
/// # }
/// ```
///
/// An error it returns is logged and shuts the whole sidecar down (a supervisor restarts it),
/// and [`RunningAuthz::wait`] returns it.
pub type ExtraServer = Box<
    dyn FnOnce(
            Checker,
            CancellationToken,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'static>>
        + Send,
>;

/// A running sidecar. Call [`RunningAuthz::shutdown`], then [`RunningAuthz::wait`].
pub struct RunningAuthz {
    check_addr: SocketAddr,
    admin_addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    checker: Checker,
    state: Arc<AuthzState>,
    check_conns: Arc<ConnCounters>,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), AuthzError>>,
}

impl std::fmt::Debug for RunningAuthz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAuthz")
            .field("check_addr", &self.check_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl RunningAuthz {
    /// The check listener's bound address.
    pub fn check_addr(&self) -> SocketAddr {
        self.check_addr
    }

    /// The admin listener's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The gRPC (Envoy ext_authz) listener's bound address, when one is configured.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// The checker every front end shares.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// The live state (snapshot handle, sync and JWKS clients).
    pub fn state(&self) -> &Arc<AuthzState> {
        &self.state
    }

    /// The check listener's counters.
    pub fn check_conns(&self) -> &Arc<ConnCounters> {
        &self.check_conns
    }

    /// A token cancelled when the sidecar shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Begin a graceful shutdown: stop accepting, let in-flight checks finish within the
    /// shutdown grace period, then drop what remains.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait until every listener has stopped; the first error of any front end.
    pub async fn wait(mut self) -> Result<(), AuthzError> {
        let mut first = Ok(());
        while let Some(done) = self.tasks.join_next().await {
            let r = done.unwrap_or_else(|e| Err(AuthzError::Server(std::io::Error::other(e))));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Start the sidecar of `config`: bind both listeners, start following revocations and keys,
/// and serve. Returns once the listeners are bound (the state may still lack a snapshot;
/// checks then answer as the staleness policy says and `/readyz` says why).
pub async fn start(config: AuthzConfig) -> Result<RunningAuthz, AuthzError> {
    let Some(addr) = config.grpc_listen else {
        return start_with(config, None).await;
    };
    let listener = bind(addr)?;
    let grpc_addr = listener
        .local_addr()
        .map_err(|source| AuthzError::Listen { addr, source })?;
    let options = config.grpc.clone();
    let extra: ExtraServer = Box::new(move |checker, stop| {
        Box::pin(async move {
            super::grpc::serve(listener, checker, options, stop)
                .await
                .map_err(std::io::Error::other)
        })
    });
    let mut running = start_with(config, Some(extra)).await?;
    running.grpc_addr = Some(grpc_addr);
    Ok(running)
}

/// [`start`], with an extra front end sharing the checker and the shutdown signal.
pub async fn start_with(
    config: AuthzConfig,
    extra: Option<ExtraServer>,
) -> Result<RunningAuthz, AuthzError> {
    config.conn.validate()?;
    let mut conn = config.conn.clone();
    conn.max_connections =
        effective_max_connections(conn.max_connections, crate::run::raise_nofile_limit());
    let admin_conn = ConnLimits {
        max_connections: ADMIN_MAX_CONNECTIONS.min(conn.max_connections),
        ..conn.clone()
    };
    // Bound before anything starts, so a taken port is a start-up error with nothing to undo.
    let check_listener = bind(config.listen)?;
    let admin_listener = bind(config.admin_listen)?;
    let local = |l: &TcpListener, addr| {
        l.local_addr()
            .map_err(|source| AuthzError::Listen { addr, source })
    };
    let check_addr = local(&check_listener, config.listen)?;
    let admin_addr = local(&admin_listener, config.admin_listen)?;

    let state = Arc::new(AuthzState::start(&config)?);
    let checker = Checker::new(Arc::clone(state.verifier()), config.forward.clone());
    let shutdown = CancellationToken::new();
    let check_conns = Arc::new(ConnCounters::default());
    check_conns.max.store(conn.max_connections as u64, Relaxed);
    let admin_conns = Arc::new(ConnCounters::default());
    admin_conns
        .max
        .store(admin_conn.max_connections as u64, Relaxed);

    let mut tasks = JoinSet::new();
    tasks.spawn(crate::run::serve_plain(
        check_listener,
        check_router(checker.clone()),
        conn,
        Arc::clone(&check_conns),
        shutdown.clone(),
    ));
    let admin = admin_router(AdminState {
        state: Arc::clone(&state),
        checker: checker.clone(),
        check_conns: Arc::clone(&check_conns),
    });
    tasks.spawn(crate::run::serve_plain(
        admin_listener,
        admin,
        admin_conn,
        admin_conns,
        shutdown.clone(),
    ));
    let mut tasks = {
        let mut out = JoinSet::new();
        // The two HTTP listeners cannot fail once bound; wrap them to the common result type.
        out.spawn(async move {
            while tasks.join_next().await.is_some() {}
            Ok(())
        });
        out
    };
    if let Some(extra) = extra {
        let fut = extra(checker.clone(), shutdown.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let r = fut.await;
            if let Err(e) = &r {
                tracing::error!(error = %e, "a front end failed; shutting the sidecar down");
                stop.cancel();
            }
            r.map_err(AuthzError::Server)
        });
    }
    Ok(RunningAuthz {
        check_addr,
        admin_addr,
        grpc_addr: None,
        checker,
        state,
        check_conns,
        shutdown,
        tasks,
    })
}

fn bind(addr: SocketAddr) -> Result<TcpListener, AuthzError> {
    crate::run::bind(addr).map_err(|source| AuthzError::Listen { addr, source })
}
