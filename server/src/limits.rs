//! Connection-level limits of the publisher's listener: how long a client may take to send a
//! request, how many connections and long-polls are served at once, and how long a shutdown
//! waits for in-flight requests. Each default is a `pub const` so documentation and tests
//! name the same number; [`ConnLimits`] deserializes with every key optional.
//!
//! The counters in [`ConnCounters`] are plain atomics read by the `/metrics` renderer and the
//! tests, so the listener does not depend on the metrics registry.

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

/// Default for [`ConnLimits::header_read_timeout_ms`]: 10 s to send a request head, which is
/// also how long a keep-alive connection may stay idle between requests.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default for [`ConnLimits::body_read_timeout_ms`]: 30 s to send a whole request body.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Default for [`ConnLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default for [`ConnLimits::max_long_polls`].
pub const DEFAULT_MAX_LONG_POLLS: usize = 2048;
/// Default for [`ConnLimits::max_feed_writes`].
pub const DEFAULT_MAX_FEED_WRITES: usize = 32;
/// Default for [`ConnLimits::shutdown_grace_ms`]: 10 s for in-flight requests after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Default for [`ConnLimits::max_uri_bytes`].
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// Default for [`ConnLimits::max_header_bytes`]: the request line and headers together.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default for [`ConnLimits::max_headers`].
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// hyper's own head buffer: four times our header limit, so that a head over our limit but
/// under this one is answered by our JSON 431/414 and only grossly oversized heads meet
/// hyper's bodiless answer. Also bounds the memory of one connection's read buffer.
pub const HYPER_MAX_BUF_BYTES: usize = 4 * DEFAULT_MAX_HEADER_BYTES;
/// hyper's own header count limit, above [`DEFAULT_MAX_HEADERS`] for the same reason.
pub const HYPER_MAX_HEADERS: usize = 128;
/// Pause after an accept error that signals resource exhaustion (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM): retrying at once would spin a core while nothing can be accepted anyway.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(500);
/// File descriptors kept out of the connection cap: [`ConnLimits::max_connections`] is
/// clamped to the process's `RLIMIT_NOFILE` minus this many (or minus a quarter of the limit,
/// when that is fewer), for the store, the log, standard streams, the runtime's own
/// descriptors, TLS and snapshot files, and the one connection the accept loop holds while it
/// makes room.
pub const DESCRIPTOR_RESERVE: u64 = 64;
/// How long a connection must have been idle (no request in flight: waiting for its first
/// request head, or between keep-alive requests) before it may be closed to make room for a
/// new one. A newcomer's head is normally in the socket before it is accepted; this keeps a
/// flood of newcomers from closing each other before any is read.
pub const SHED_MIN_IDLE: Duration = Duration::from_millis(100);
/// How long a TLS handshake may run before its connection may be closed to make room for a
/// new one: a handshake waits for the client's round trips, which on a distant link take
/// far longer than [`SHED_MIN_IDLE`].
pub const SHED_MIN_HANDSHAKE: Duration = Duration::from_secs(1);
/// Most connections closed at once to make room, as nginx drains reusable connections: an
/// eighth of the sheddable ones, at least one and at most this many.
pub const SHED_BATCH_MAX: usize = 32;
/// Snapshot and delta bodies are handed to the connection in slices of this size, so that a
/// body holds its write permit (see [`ConnLimits::max_feed_writes`]) until its last slice is
/// taken, about as long as the socket takes to accept it. Bodies no larger are written
/// without a permit.
pub const FEED_WRITE_CHUNK: usize = 16 * 1024;

/// Connection limits of the listener. Every key is optional in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnLimits {
    /// Time a client has to send a request's line and headers, ms. It starts as soon as the
    /// connection waits for a request, so it also closes a keep-alive connection left idle
    /// this long, and a connection that never sends anything (hyper bounds both with one
    /// timer). A slowloris client sending a byte every few seconds is closed when it runs out.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a whole request body once its headers are read, ms;
    /// answered `408 body_timeout`.
    pub body_read_timeout_ms: u64,
    /// Connections served at once, clamped at start to the process's descriptor limit minus
    /// [`DESCRIPTOR_RESERVE`]. When every slot is taken, a new connection closes the
    /// connections idle longest (no request in flight for at least [`SHED_MIN_IDLE`]) to
    /// make room; when none is idle, further connections wait in the kernel's accept backlog
    /// (and are refused by the kernel once it is full) until one closes.
    pub max_connections: usize,
    /// Long-polls (`?wait=`) waiting at once. Beyond it, a long-poll is answered at once as if
    /// its wait had ended (`304` or `204` when nothing is newer).
    pub max_long_polls: usize,
    /// Snapshot and delta bodies (larger than [`FEED_WRITE_CHUNK`]) being written at once;
    /// further answers wait for a turn once their long-poll has ended, so that thousands of
    /// long-polls woken by one publication do not crowd out other requests.
    pub max_feed_writes: usize,
    /// After a shutdown signal, time in-flight requests get before their connections are
    /// dropped, ms.
    pub shutdown_grace_ms: u64,
    /// Longest request target (path and query), bytes; answered `414 uri_too_long`.
    pub max_uri_bytes: usize,
    /// Largest request head (request line and headers), bytes; answered
    /// `431 headers_too_large`.
    pub max_header_bytes: usize,
    /// Most header fields in one request; answered `431 headers_too_large`.
    pub max_headers: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_long_polls: DEFAULT_MAX_LONG_POLLS,
            max_feed_writes: DEFAULT_MAX_FEED_WRITES,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

impl ConnLimits {
    /// The header read timeout as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The body read timeout as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The shutdown grace period as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Check the ranges: every timeout and cap at least 1, header limits no larger than
    /// hyper's buffer (else hyper would answer first, without our JSON body).
    pub fn validate(&self) -> Result<(), LimitsError> {
        let positive = [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("max_long_polls", self.max_long_polls as u64),
            ("max_feed_writes", self.max_feed_writes as u64),
            ("max_uri_bytes", self.max_uri_bytes as u64),
            ("max_header_bytes", self.max_header_bytes as u64),
            ("max_headers", self.max_headers as u64),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(LimitsError {
                    field,
                    why: "must be at least 1",
                });
            }
        }
        if self.max_header_bytes > HYPER_MAX_BUF_BYTES || self.max_uri_bytes > HYPER_MAX_BUF_BYTES {
            return Err(LimitsError {
                field: "max_header_bytes",
                why: "must be at most 65536 (with max_uri_bytes)",
            });
        }
        if self.max_headers > HYPER_MAX_HEADERS {
            return Err(LimitsError {
                field: "max_headers",
                why: "must be at most 128",
            });
        }
        Ok(())
    }
}

/// A connection limit out of range.
#[derive(Debug, thiserror::Error)]
#[error("connection limit `{field}` {why}")]
pub struct LimitsError {
    /// The key.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Counters of the listener and the admin audit log, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Connections accepted since start.
    pub accepted_total: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Accept errors since start (each is logged).
    pub accept_errors_total: AtomicU64,
    /// Connections dropped because the shutdown grace period ran out.
    pub dropped_at_shutdown_total: AtomicU64,
    /// Long-polls answered at once because [`ConnLimits::max_long_polls`] were waiting.
    pub long_polls_shed_total: AtomicU64,
    /// Request bodies that took longer than [`ConnLimits::body_read_timeout_ms`].
    pub body_timeouts_total: AtomicU64,
    /// Failed admin authentications.
    pub admin_auth_failures_total: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub connections_shed_total: AtomicU64,
    /// The connection cap in force: [`ConnLimits::max_connections`] after the clamp to the
    /// descriptor limit.
    pub max: AtomicU64,
}

/// The connection cap in force: `configured`, clamped to the descriptor limit `nofile` minus
/// [`DESCRIPTOR_RESERVE`] (or a quarter of `nofile`, when fewer; at least 1). `None` is no
/// limit.
pub fn effective_max_connections(configured: usize, nofile: Option<u64>) -> usize {
    match nofile {
        Some(n) => {
            let reserve = DESCRIPTOR_RESERVE.min(n / 4);
            let room = usize::try_from(n.saturating_sub(reserve)).unwrap_or(usize::MAX);
            configured.min(room).max(1)
        }
        None => configured,
    }
}

/// A snapshot or delta body written under a permit of [`ConnLimits::max_feed_writes`]: the
/// permit is taken when the connection first asks for the body (after any long-poll wait)
/// and released when the last slice is handed over; the body goes out in
/// [`FEED_WRITE_CHUNK`] slices of one shared buffer, nothing copied.
pub(crate) struct GatedBody {
    rest: Bytes,
    gate: Option<PollSemaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl GatedBody {
    /// `bytes`, written under a permit of `gate` when larger than one slice.
    pub(crate) fn new(bytes: Bytes, gate: &Arc<Semaphore>) -> Self {
        let gate = (bytes.len() > FEED_WRITE_CHUNK).then(|| PollSemaphore::new(Arc::clone(gate)));
        Self {
            rest: bytes,
            gate,
            permit: None,
        }
    }
}

impl http_body::Body for GatedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.rest.is_empty() {
            this.permit = None;
            return Poll::Ready(None);
        }
        if this.permit.is_none() {
            if let Some(gate) = &mut this.gate {
                match gate.poll_acquire(cx) {
                    Poll::Pending => return Poll::Pending,
                    // Closed: never done to this semaphore; write without a turn.
                    Poll::Ready(p) => this.permit = p,
                }
                this.gate = None;
            }
        }
        let n = this.rest.len().min(FEED_WRITE_CHUNK);
        let chunk = this.rest.split_to(n);
        if this.rest.is_empty() {
            this.permit = None;
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// The length of `req`'s request target (path and query) and of its head as sent: the
/// request line, then `name: value\r\n` per field. What the head limits are checked against.
pub fn head_sizes<B>(req: &axum::http::Request<B>) -> (usize, usize) {
    let target = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |p| p.as_str().len());
    let head = req.method().as_str().len()
        + target
        + 12
        + req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    (target, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_is_refused() {
        ConnLimits::default().validate().unwrap();
        let l: ConnLimits = serde_json::from_str(r#"{"max_connections": 10}"#).unwrap();
        assert_eq!(l.max_connections, 10);
        assert_eq!(l.header_read_timeout_ms, DEFAULT_HEADER_READ_TIMEOUT_MS);
        let zero = ConnLimits {
            max_long_polls: 0,
            ..ConnLimits::default()
        };
        assert_eq!(zero.validate().unwrap_err().field, "max_long_polls");
        let huge = ConnLimits {
            max_header_bytes: 1 << 20,
            ..ConnLimits::default()
        };
        assert!(huge.validate().is_err());
    }

    #[test]
    fn the_cap_is_clamped_to_the_descriptor_limit() {
        assert_eq!(effective_max_connections(4096, None), 4096);
        assert_eq!(effective_max_connections(4096, Some(1 << 20)), 4096);
        assert_eq!(effective_max_connections(4096, Some(1024)), 960);
        assert_eq!(effective_max_connections(4, Some(1024)), 4);
        assert_eq!(effective_max_connections(4096, Some(48)), 36);
        assert_eq!(effective_max_connections(4096, Some(1)), 1);
    }

    use http_body::Body as _;

    /// The next frame's data, `None` at the end.
    async fn next(b: &mut GatedBody) -> Option<Bytes> {
        std::future::poll_fn(|cx| Pin::new(&mut *b).poll_frame(cx))
            .await
            .map(|f| f.unwrap().into_data().unwrap())
    }

    /// Whether `b` cannot give its next frame now.
    async fn blocked(b: &mut GatedBody) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *b).poll_frame(cx).is_pending())).await
    }

    async fn all(b: &mut GatedBody) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(d) = next(b).await {
            out.extend_from_slice(&d);
        }
        out
    }

    #[tokio::test]
    async fn a_gated_body_waits_for_a_turn_and_returns_it_after_its_last_slice() {
        let gate = Arc::new(Semaphore::new(1));
        let big = Bytes::from(vec![7u8; 3 * FEED_WRITE_CHUNK + 5]);
        let mut a = GatedBody::new(big.clone(), &gate);
        let mut b = GatedBody::new(big.clone(), &gate);
        assert_eq!(a.size_hint().exact(), Some(big.len() as u64));
        let first = next(&mut a).await.unwrap();
        assert_eq!(first.len(), FEED_WRITE_CHUNK);
        assert_eq!(gate.available_permits(), 0);
        // `b` has no turn while `a` is being written.
        assert!(
            blocked(&mut b).await,
            "a second body was written without a turn"
        );
        let mut rest = first.to_vec();
        rest.extend(all(&mut a).await);
        assert_eq!(rest, big.to_vec());
        assert!(a.is_end_stream());
        // `a` gave its turn back with its last slice: `b` is written now.
        let b_all = tokio::time::timeout(Duration::from_secs(5), all(&mut b)).await;
        assert_eq!(b_all.expect("the turn was not given back"), big.to_vec());
        assert_eq!(gate.available_permits(), 1);
        // A small body takes no turn, even with none left.
        let _held = Arc::clone(&gate).try_acquire_owned().unwrap();
        let mut small = GatedBody::new(Bytes::from_static(b"tiny"), &gate);
        assert_eq!(all(&mut small).await, b"tiny".to_vec());
    }
}
