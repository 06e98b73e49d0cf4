//! Connection-level limits of the publisher's listener: how long a client may take to send a
//! request, how many connections and long-polls are served at once, and how long a shutdown
//! waits for in-flight requests. Each default is a `pub const` so documentation and tests
//! name the same number; [`ConnLimits`] deserializes with every key optional.
//!
//! The counters in [`ConnCounters`] are plain atomics read by the `/metrics` renderer and the
//! tests, so the listener does not depend on the metrics registry.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for [`ConnLimits::header_read_timeout_ms`]: 10 s to send a request head, which is
/// also how long a keep-alive connection may stay idle between requests.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default for [`ConnLimits::body_read_timeout_ms`]: 30 s to send a whole request body.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Default for [`ConnLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default for [`ConnLimits::max_long_polls`].
pub const DEFAULT_MAX_LONG_POLLS: usize = 2048;
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
    /// Connections served at once. Further connections wait in the kernel's accept backlog
    /// (and are refused by the kernel once it is full) until one closes.
    pub max_connections: usize,
    /// Long-polls (`?wait=`) waiting at once. Beyond it, a long-poll is answered at once as if
    /// its wait had ended (`304` or `204` when nothing is newer).
    pub max_long_polls: usize,
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
}
