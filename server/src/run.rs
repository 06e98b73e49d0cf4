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
//!
//! When every slot is taken, a newly accepted connection makes room by closing the
//! connections idle longest, as nginx does when it runs out of connections: a connection is
//! *idle* while no request is in flight on it (it has not completed a request head yet, it
//! waits between keep-alive requests, or its TLS handshake runs), from the moment the last
//! response was flushed to the socket. A connection with a request in flight — a long-poll
//! included — is never closed for room. At start the soft `RLIMIT_NOFILE` is raised to the
//! hard limit and the cap is clamped below it ([`effective_max_connections`]), so the cap,
//! not `EMFILE`, is what a flood meets.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::{JoinHandle, JoinSet};

use super::config::{resolve_publisher_keys, ConfigFileError, ServerConfig};
use super::distribute::{Destination, ObjectPublisher};
use super::http::{router, AppState};
pub use super::limits::effective_max_connections;
use super::limits::{
    ConnCounters, ConnLimits, LimitsError, ACCEPT_ERROR_BACKOFF, DESCRIPTOR_RESERVE,
    HYPER_MAX_BUF_BYTES, HYPER_MAX_HEADERS, SHED_BATCH_MAX, SHED_MIN_HANDSHAKE, SHED_MIN_IDLE,
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
    /// The object store of `publish_to` is unusable: a bad URL, or it cannot be written.
    #[error(transparent)]
    PublishTo(#[from] super::distribute::DistributeError),
    /// The identity providers cannot be set up (a client secret file, the JWKS CA file).
    #[error(transparent)]
    IdentityProviders(#[from] super::http::IdpError),
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
    let mut conn = conn;
    let nofile = raise_nofile_limit();
    let configured = conn.max_connections;
    conn.max_connections = effective_max_connections(configured, nofile);
    let descriptors = nofile.map_or("unlimited".into(), |n| n.to_string());
    if conn.max_connections < configured {
        tracing::warn!(
            cap = conn.max_connections,
            configured,
            descriptors = %descriptors,
            reserve = DESCRIPTOR_RESERVE,
            "connection cap clamped to the descriptor limit minus a reserve; raise the hard RLIMIT_NOFILE (LimitNOFILE=, ulimit -Hn) to serve more"
        );
    } else {
        tracing::info!(cap = conn.max_connections, descriptors = %descriptors, "connection cap");
    }
    let signing_key = match &config.signing_key {
        Some(path) => Some(revbloom::snapshot::read_signing_key(path)?),
        None => None,
    };
    // Before the store is opened: a wrong path is a one-line error naming the file.
    let tls = match &config.tls {
        Some(settings) => Some(ServerTls::load(settings)?),
        None => None,
    };
    // Before the store opens: a bucket the credentials cannot write is a start-up error, not
    // a silent gap in what mirrors serve.
    let objects = match &config.publish_to {
        Some(to) => {
            let dest = Destination::parse_with(&to.url, &to.options)?;
            // The same files the publisher reads (generated now if this is the first start).
            let keys = resolve_publisher_keys(&mut config.clone()).map_err(PublishError::from)?;
            let objects = ObjectPublisher::new(dest, keys.signing)
                .manifest_cache_control(format!("public, max-age={}", to.manifest_max_age_secs))
                .max_chain(to.max_chain)
                .sweep_grace(Duration::from_secs(to.sweep_grace_secs));
            objects.check_writable().await?;
            tracing::info!(destination = %objects.destination().display(), "publishing generations to the object store");
            Some(objects)
        }
        None => None,
    };
    // Before the store opens: a missing client secret is a start-up error naming the file.
    let idp = super::http::IdpState::start(&config.identity_providers)?;
    let metrics = Arc::new(Metrics::default());
    let listener_metrics = Arc::clone(&metrics);
    let shutdown = CancellationToken::new();
    // The embedded store feeds its publisher from its writer; replicas of a shared store
    // elect one builder, which tails the database (see `replica`).
    let (store, writer, hub, publisher_task) = match &config.store {
        Some(url) => {
            let tls = match &config.store_ca_file {
                Some(path) => revbloom::sync::ClientTls::ca_file(path),
                None => revbloom::sync::ClientTls::system_roots(),
            };
            let (store, writer) = Store::connect_postgres_with(url, &tls).await?;
            let store = store.with_default_issuer(config.default_issuer());
            let replica = super::replica::start(
                store.clone(),
                &config,
                signing_key,
                Arc::clone(&metrics),
                shutdown.clone(),
            )
            .await?;
            (store, writer, replica.hub, replica.task)
        }
        None => {
            let (commit_tx, commit_rx) = mpsc::unbounded_channel();
            let (store, writer) = Store::open(&config.data_dir, Some(commit_tx))?;
            let store = store.with_default_issuer(config.default_issuer());
            let (publisher, hub) =
                Publisher::start(store.clone(), &config, signing_key, Arc::clone(&metrics)).await?;
            let task = tokio::spawn(publisher.run(commit_rx, shutdown.clone()));
            (store, writer, hub, task)
        }
    };
    let upload_task = objects.map(|objects| {
        super::upload::spawn(
            hub.clone(),
            objects,
            Arc::clone(&metrics),
            UPLOAD_RETRY,
            shutdown.clone(),
        )
    });
    let listener = bind(config.listen).map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
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
    counters.max.store(conn.max_connections as u64, Relaxed);
    let app = router(
        state
            .with_identity_providers(idp)
            .with_conn_limits(conn.clone(), Arc::clone(&counters)),
    );
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
        if let Some(t) = upload_task {
            let _ = t.await;
        }
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

/// Pause before a failed upload to the object store is tried again.
const UPLOAD_RETRY: Duration = Duration::from_secs(1);

/// Listen backlog asked of the kernel, which caps it at `net.core.somaxconn` (4096 by default
/// since Linux 5.4). `TcpListener::bind` asks for 128 (std's and mio's value): a burst of
/// connects beyond that overflows the accept queue, and the kernel drops handshakes that the
/// clients already consider complete, instead of letting them wait for a connection slot.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does at start: the soft
/// limit (often 1024) is a compatibility default for `select(2)`, which nothing here uses.
/// Returns the soft limit in force afterwards (`None`: unlimited or unknown), logging what
/// was done.
#[cfg(unix)]
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current.is_none() || before.current == before.maximum {
        return before.current;
    }
    let raised = Rlimit {
        current: before.maximum,
        maximum: before.maximum,
    };
    let show = |v: Option<u64>| v.map_or("unlimited".into(), |n| n.to_string());
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(
                from = %show(before.current),
                to = %show(before.maximum),
                "raised the soft RLIMIT_NOFILE to the hard limit"
            );
            getrlimit(Resource::Nofile).current
        }
        Err(e) => {
            tracing::warn!(
                soft = %show(before.current),
                hard = %show(before.maximum),
                error = %e,
                "cannot raise the soft RLIMIT_NOFILE to the hard limit"
            );
            before.current
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    None
}

/// Bind `addr` as `TcpListener::bind` does (`SO_REUSEADDR` on Unix), with [`LISTEN_BACKLOG`].
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
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

/// [`serve`] on a plain TCP listener (no TLS): the `revbloom authz` listeners get the same
/// header-read timeout, connection cap with idle shedding, and shutdown deadline as the
/// publisher's.
pub(crate) async fn serve_plain(
    tcp: TcpListener,
    app: Router,
    conn: ConnLimits,
    counters: Arc<ConnCounters>,
    shutdown: CancellationToken,
) {
    let listener = Listener {
        tcp,
        tls: None,
        metrics: Arc::default(),
    };
    serve(listener, app, conn, counters, shutdown).await;
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
    let idle = Arc::new(Registry::default());
    loop {
        while tasks.try_join_next().is_some() {}
        // A free slot is taken before `accept`, so that connections over the cap wait in the
        // kernel's backlog. When there is none, one connection is accepted anyway and makes
        // room (below): only one is held that way at a time.
        let free = match Arc::clone(&slots).try_acquire_owned() {
            Ok(s) => Some(s),
            Err(TryAcquireError::NoPermits) => None,
            Err(TryAcquireError::Closed) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    counters.accept_errors_total.fetch_add(1, Relaxed);
                    if is_resource_exhaustion(&e) {
                        // Out of descriptors: closing idle connections frees some at once.
                        let shed = idle.shed(Instant::now(), &counters);
                        let backoff = if shed { SHED_RETRY } else { ACCEPT_ERROR_BACKOFF };
                        if !shed {
                            tracing::error!(error = %e, ?backoff, "accept failed: out of resources; pausing");
                        }
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
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
        let slot = match free {
            Some(s) => s,
            None => match make_room(&slots, &idle, &counters, &shutdown).await {
                Some(s) => s,
                None => break,
            },
        };
        // Small JSON answers; Nagle would hold them back waiting for an ACK.
        let _ = stream.set_nodelay(true);
        counters.accepted_total.fetch_add(1, Relaxed);
        counters.open.fetch_add(1, Relaxed);
        let open = OpenGuard(Arc::clone(&counters));
        let conn = idle.register(if acceptor.is_some() {
            SHED_MIN_HANDSHAKE
        } else {
            SHED_MIN_IDLE
        });
        let app = app.clone();
        let svc_conn = Arc::clone(&conn);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = svc_conn.request_started();
            let response = tower::ServiceExt::oneshot(app.clone(), req);
            async move {
                let res = response.await?;
                Ok::<_, std::convert::Infallible>(res.map(|body| InFlightBody {
                    body,
                    _in_flight: in_flight,
                }))
            }
        });
        let stop = shutdown.clone();
        let http = http.clone();
        let acceptor = acceptor.clone();
        let metrics = Arc::clone(&metrics);
        tasks.spawn(async move {
            let _slot = slot;
            let _open = open;
            let Some((acceptor, limit)) = acceptor else {
                let io = Tracked::new(stream, Arc::clone(&conn));
                return serve_http(&http, io, service, peer, &stop, &conn).await;
            };
            let handshake = tokio::select! {
                r = tokio::time::timeout(limit, acceptor.accept(stream)) => r,
                () = stop.cancelled() => return,
                () = conn.shed.cancelled() => return,
            };
            match handshake {
                Ok(Ok(tls)) => {
                    conn.idle_from_now(SHED_MIN_IDLE);
                    let io = Tracked::new(tls, Arc::clone(&conn));
                    serve_http(&http, io, service, peer, &stop, &conn).await
                }
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
    conn: &Conn,
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
        // The connection first: when the shed signal wakes this task, a request head already
        // in the socket is read (and the request started) before the shed is confirmed, so a
        // request delayed by a busy runtime is answered rather than cut off.
        biased;
        r = connection.as_mut() => r,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = conn.shed.cancelled() => {
            if conn.confirm_shed() {
                // Nothing in flight: drop the connection (a partly sent head included).
                tracing::debug!(%peer, "idle connection closed to make room");
                return;
            }
            // A request arrived since it was picked: answer it, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Pause after closing idle connections for an `EMFILE`, so their descriptors are freed.
const SHED_RETRY: Duration = Duration::from_millis(5);

/// Wait for a connection slot for a connection already accepted, closing the connections
/// idle longest to make room. `None` on shutdown.
async fn make_room(
    slots: &Arc<Semaphore>,
    idle: &Registry,
    counters: &ConnCounters,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(s) = Arc::clone(slots).try_acquire_owned() {
            return Some(s);
        }
        // Until a slot frees: shed again once the next idle connection may be shed, or
        // every SHED_MIN_IDLE (a connection busy now may go idle).
        let retry = match idle.next_sheddable() {
            Some(at) if at <= Instant::now() => {
                idle.shed(Instant::now(), counters);
                Instant::now() + SHED_MIN_IDLE
            }
            Some(at) => at,
            None => Instant::now() + SHED_MIN_IDLE,
        };
        tokio::select! {
            s = Arc::clone(slots).acquire_owned() => return s.ok(),
            () = tokio::time::sleep_until(retry) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

/// The connections with no request in flight, by the time from which each may be shed
/// (when it went idle plus [`SHED_MIN_IDLE`], or its accept plus [`SHED_MIN_HANDSHAKE`]
/// while a TLS handshake runs): the first is the one idle longest.
#[derive(Default)]
struct Registry {
    inner: Mutex<Connections>,
}

#[derive(Default)]
struct Connections {
    next_id: u64,
    conns: HashMap<u64, ConnState>,
    /// `(sheddable from, id)` of every idle connection.
    idle: BTreeSet<(Instant, u64)>,
}

struct ConnState {
    /// Requests in flight: from the service call to the drop of the response body.
    busy: u32,
    /// A response body ended and the connection has not flushed since.
    unflushed: bool,
    /// The connection's key in [`Connections::idle`] while idle.
    idle_key: Option<Instant>,
    /// Cancelled when the connection is picked to be shed.
    shed: CancellationToken,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Connections> {
        // The critical sections only move keys between maps and cannot panic half-way.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection, idle from now; sheddable after `min_idle`.
    fn register(self: &Arc<Self>, min_idle: Duration) -> Arc<Conn> {
        let mut c = self.lock();
        c.next_id += 1;
        let id = c.next_id;
        let key = Instant::now() + min_idle;
        let shed = CancellationToken::new();
        c.idle.insert((key, id));
        c.conns.insert(
            id,
            ConnState {
                busy: 0,
                unflushed: false,
                idle_key: Some(key),
                shed: shed.clone(),
            },
        );
        Arc::new(Conn {
            id,
            registry: Arc::clone(self),
            shed,
            unflushed: AtomicBool::new(false),
        })
    }

    /// When the idle connection idle longest may be shed, if any is idle.
    fn next_sheddable(&self) -> Option<Instant> {
        self.lock().idle.first().map(|(at, _)| *at)
    }

    /// Close the connections idle longest that may be shed at `now`: an eighth of the idle
    /// ones, at least one and at most [`SHED_BATCH_MAX`]. Whether any was closed.
    fn shed(&self, now: Instant, counters: &ConnCounters) -> bool {
        let mut tokens = Vec::new();
        {
            let mut c = self.lock();
            let n = (c.idle.len() / 8).clamp(1, SHED_BATCH_MAX);
            while tokens.len() < n {
                match c.idle.first() {
                    Some(&(at, id)) if at <= now => {
                        c.idle.remove(&(at, id));
                        if let Some(s) = c.conns.get_mut(&id) {
                            s.idle_key = None;
                            tokens.push(s.shed.clone());
                        }
                    }
                    _ => break,
                }
            }
        }
        if tokens.is_empty() {
            return false;
        }
        counters
            .connections_shed_total
            .fetch_add(tokens.len() as u64, Relaxed);
        for t in tokens {
            t.cancel();
        }
        true
    }
}

/// One connection's entry in the [`Registry`]; removed when the connection ends.
struct Conn {
    id: u64,
    registry: Arc<Registry>,
    /// Cancelled when the connection is picked to be shed.
    shed: CancellationToken,
    /// Mirrors [`ConnState::unflushed`], so a flush costs no lock when nothing ended.
    unflushed: AtomicBool,
}

impl Conn {
    /// Idle from now, sheddable after `min_idle` (a TLS handshake just completed).
    fn idle_from_now(&self, min_idle: Duration) {
        let mut c = self.registry.lock();
        let Connections { conns, idle, .. } = &mut *c;
        if let Some(s) = conns.get_mut(&self.id) {
            if let Some(old) = s.idle_key.take() {
                idle.remove(&(old, self.id));
                let key = Instant::now() + min_idle;
                idle.insert((key, self.id));
                s.idle_key = Some(key);
            }
        }
    }

    /// A request head was read: busy until the returned guard (held by the response body)
    /// is dropped and the response flushed.
    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut c = self.registry.lock();
        let Connections { conns, idle, .. } = &mut *c;
        if let Some(s) = conns.get_mut(&self.id) {
            s.busy += 1;
            if let Some(old) = s.idle_key.take() {
                idle.remove(&(old, self.id));
            }
        }
        InFlight(Arc::clone(self))
    }

    /// The connection flushed its output: idle if no request is in flight.
    fn flushed(&self) {
        if !self.unflushed.swap(false, Relaxed) {
            return;
        }
        let mut c = self.registry.lock();
        let Connections { conns, idle, .. } = &mut *c;
        if let Some(s) = conns.get_mut(&self.id) {
            if s.busy == 0 && s.unflushed && s.idle_key.is_none() && !self.shed.is_cancelled() {
                let key = Instant::now() + SHED_MIN_IDLE;
                idle.insert((key, self.id));
                s.idle_key = Some(key);
            }
            s.unflushed = false;
        }
    }

    /// The connection was picked to be shed: whether it may be dropped outright, which is
    /// when no request arrived since (else it is closed after answering it).
    fn confirm_shed(&self) -> bool {
        let c = self.registry.lock();
        c.conns
            .get(&self.id)
            .is_none_or(|s| s.busy == 0 && !s.unflushed)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut c = self.registry.lock();
        if let Some(s) = c.conns.remove(&self.id) {
            if let Some(key) = s.idle_key {
                c.idle.remove(&(key, self.id));
            }
        }
    }
}

/// A request in flight on a [`Conn`]; dropped with the response body.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        let mut c = conn.registry.lock();
        if let Some(s) = c.conns.get_mut(&conn.id) {
            s.busy = s.busy.saturating_sub(1);
            if s.busy == 0 {
                // Idle once hyper has flushed the response's last bytes to the socket.
                s.unflushed = true;
                conn.unflushed.store(true, Relaxed);
            }
        }
    }
}

/// A response body that keeps its request in flight until hyper drops it.
struct InFlightBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket (or TLS stream) that tells its [`Conn`] when a flush completes:
/// hyper flushes once a response's bytes are all written.
struct Tracked<I> {
    io: I,
    conn: Arc<Conn>,
}

impl<I> Tracked<I> {
    fn new(io: I, conn: Arc<Conn>) -> Self {
        Self { io, conn }
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.conn.flushed();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
