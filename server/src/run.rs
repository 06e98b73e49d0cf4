//! Assembling and running the publisher: store → publisher task → HTTP listener, and the
//! orderly shutdown that keeps every acknowledged revocation durable.
//!
//! The listener serves HTTP/1.1 with hyper directly rather than through `axum::serve`, which
//! exposes no header-read timeout, connection cap or shutdown deadline. Its bounds are
//! [`ConnLimits`]: a connection slot is taken *before* `accept`, so connections over the cap
//! wait in the kernel's backlog instead of being accepted and dropped.
//!
//! With TLS configured ([`crate::tls`]), each accepted connection first completes a TLS
//! handshake within [`TlsSettings::handshake_timeout`](crate::tls::TlsSettings) — in its own
//! task, holding its connection slot, so a client that never sends a ClientHello costs one slot
//! for that long and never delays the accept loop — and then meets the same HTTP bounds as a
//! plain connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::config::{ConfigFileError, ServerConfig};
use super::http::{router, AppState};
use super::limits::{
    ConnCounters, ConnLimits, LimitsError, ACCEPT_ERROR_BACKOFF, HYPER_MAX_BUF_BYTES,
    HYPER_MAX_HEADERS,
};
use super::metrics::Metrics;
use super::publish::{Hub, PublishError, Publisher};
use super::store::{Store, StoreError};
use super::tls::{ServerTls, TlsError};

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
    /// A connection limit is out of range.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The signing key could not be read.
    #[error(transparent)]
    SigningKey(#[from] revbloom::snapshot::KeyFileError),
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
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
    tls: bool,
    hub: Hub,
    counters: Arc<ConnCounters>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listener's base URL: `https://ADDR` when it serves TLS, else `http://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The publisher's read side (current generation, deltas).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The listener's counters (connections, long-polls shed, body timeouts, failed admin
    /// authentications).
    pub fn counters(&self) -> &Arc<ConnCounters> {
        &self.counters
    }

    /// Begin a graceful shutdown: stop accepting connections, end long-polls, let in-flight
    /// requests finish within [`ConnLimits::shutdown_grace_ms`], then drop what remains.
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
/// [`resolve_admin_token`](super::config::resolve_admin_token)) and the connection limits of
/// `config.connections`. Returns once the first generation is published and the listener is bound.
pub async fn start(config: ServerConfig, admin_token: String) -> Result<Running, ServeError> {
    let conn = config.connections.clone();
    start_with_limits(config, admin_token, conn).await
}

/// [`start`] with connection limits `conn` instead of `config.connections`.
pub async fn start_with_limits(
    config: ServerConfig,
    admin_token: String,
    conn: ConnLimits,
) -> Result<Running, ServeError> {
    config.validate()?;
    conn.validate()?;
    let signing_key = match &config.signing_key {
        Some(path) => Some(revbloom::snapshot::read_signing_key(path)?),
        None => None,
    };
    // Before the store is opened: a wrong path is a one-line error naming the file.
    let tls = match &config.tls {
        Some(settings) => Some(ServerTls::load(settings)?),
        None => None,
    };
    let (commit_tx, commit_rx) = mpsc::unbounded_channel();
    let (store, writer) = Store::open(&config.data_dir, Some(commit_tx))?;
    let store = store.with_default_issuer(config.default_issuer());
    let metrics = Arc::new(Metrics::default());
    let listener_metrics = Arc::clone(&metrics);
    let (publisher, hub) =
        Publisher::start(store.clone(), &config, signing_key, Arc::clone(&metrics)).await?;
    let listener = bind(config.listen).map_err(|source| ServeError::Listen {
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
    let counters = Arc::new(ConnCounters::default());
    let app = router(state.with_conn_limits(conn.clone(), Arc::clone(&counters)));
    let publisher_task = tokio::spawn(publisher.run(commit_rx, shutdown.clone()));
    let reload_task = tls.clone().map(|tls| {
        tokio::spawn(super::tls::watch(
            tls,
            Arc::clone(&listener_metrics),
            shutdown.clone(),
        ))
    });
    let is_tls = tls.is_some();
    let listener = Listener {
        tcp: listener,
        tls,
        metrics: listener_metrics,
    };
    let serve = serve(listener, app, conn, Arc::clone(&counters), shutdown.clone());
    let task = tokio::spawn(async move {
        serve.await;
        if let Some(t) = reload_task {
            let _ = t.await;
        }
        // Every connection is closed or dropped, and with them the router and its Store
        // handles. A request cut off by the grace deadline was never acknowledged; every
        // acknowledged write is committed. The publisher saw the same signal; once it is gone
        // too, the writer drains what is queued and exits.
        let _ = publisher_task.await;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        Ok(())
    });
    Ok(Running {
        addr,
        tls: is_tls,
        hub,
        counters,
        shutdown,
        task,
    })
}

/// Listen backlog asked of the kernel, which caps it at `net.core.somaxconn` (4096 by default
/// since Linux 5.4). `TcpListener::bind` asks for 128 (std's and mio's value): a burst of
/// connects beyond that overflows the accept queue, and the kernel drops handshakes that the
/// clients already consider complete, instead of letting them wait for a connection slot.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Bind `addr` as `TcpListener::bind` does (`SO_REUSEADDR` on Unix), with [`LISTEN_BACKLOG`].
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Decrements the open-connection gauge when a connection task ends, also when it is aborted
/// at the shutdown deadline.
struct OpenGuard(Arc<ConnCounters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// The bound socket, and what a connection goes through before HTTP.
struct Listener {
    tcp: TcpListener,
    tls: Option<ServerTls>,
    metrics: Arc<Metrics>,
}

/// Accept and serve connections until `shutdown`, then give in-flight requests
/// `conn.shutdown_grace()` and drop the connections that remain.
async fn serve(
    listener: Listener,
    app: Router,
    conn: ConnLimits,
    counters: Arc<ConnCounters>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(conn.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper starts this timer whenever the connection waits for a request head: it bounds a
    // slow head, an idle keep-alive connection and a connection that never sends anything.
    http.timer(TokioTimer::new())
        .header_read_timeout(conn.header_read_timeout())
        .max_buf_size(HYPER_MAX_BUF_BYTES)
        .max_headers(HYPER_MAX_HEADERS);
    let Listener {
        tcp: listener,
        tls,
        metrics,
    } = listener;
    let acceptor = tls
        .as_ref()
        .map(|t| (t.acceptor(), t.settings.handshake_timeout()));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    counters.accept_errors_total.fetch_add(1, Relaxed);
                    if is_resource_exhaustion(&e) {
                        tracing::error!(error = %e, backoff = ?ACCEPT_ERROR_BACKOFF, "accept failed: out of resources; pausing");
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                            () = shutdown.cancelled() => break,
                        }
                    } else {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Small JSON answers; Nagle would hold them back waiting for an ACK.
        let _ = stream.set_nodelay(true);
        counters.accepted_total.fetch_add(1, Relaxed);
        counters.open.fetch_add(1, Relaxed);
        let open = OpenGuard(Arc::clone(&counters));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let stop = shutdown.clone();
        let http = http.clone();
        let acceptor = acceptor.clone();
        let metrics = Arc::clone(&metrics);
        tasks.spawn(async move {
            let _slot = slot;
            let _open = open;
            let Some((acceptor, limit)) = acceptor else {
                return serve_http(&http, stream, service, peer, &stop).await;
            };
            let handshake = tokio::select! {
                r = tokio::time::timeout(limit, acceptor.accept(stream)) => r,
                () = stop.cancelled() => return,
            };
            match handshake {
                Ok(Ok(tls)) => serve_http(&http, tls, service, peer, &stop).await,
                Ok(Err(e)) => {
                    // A port scanner, a plain-HTTP client or a client that distrusts our
                    // certificate: the client's business, so debug only, and counted.
                    metrics.tls_handshake_failures_total.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    metrics.tls_handshake_timeouts_total.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, timeout = ?limit, "TLS handshake timed out");
                }
            }
        });
    }
    drop(listener);
    let grace = conn.shutdown_grace();
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            () = &mut deadline => {
                let left = tasks.len() as u64;
                counters.dropped_at_shutdown_total.fetch_add(left, Relaxed);
                tracing::warn!(connections = left, ?grace, "shutdown grace period over; dropping connections");
                tasks.shutdown().await;
                break;
            }
        }
    }
}

/// Serve HTTP/1.1 on `io` until the client is done or `stop` asks for a graceful end.
async fn serve_http<I, S, B>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    peer: SocketAddr,
    stop: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        r = connection.as_mut() => r,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Whether an accept error means the process or system is out of a resource (file
/// descriptors, buffers, memory), which retrying at once cannot fix.
pub fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux and the BSDs share these meanings; the numbers
    // differ, so they are matched by the portable kinds where std has one.
    matches!(e.kind(), std::io::ErrorKind::OutOfMemory)
        || matches!(e.raw_os_error(), Some(n) if RESOURCE_ERRNOS.contains(&n))
}

#[cfg(target_os = "linux")]
const RESOURCE_ERRNOS: [i32; 4] = [24, 23, 105, 12]; // EMFILE, ENFILE, ENOBUFS, ENOMEM
#[cfg(all(unix, not(target_os = "linux")))]
const RESOURCE_ERRNOS: [i32; 4] = [24, 23, 55, 12]; // EMFILE, ENFILE, ENOBUFS, ENOMEM
#[cfg(not(unix))]
const RESOURCE_ERRNOS: [i32; 0] = [];

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
