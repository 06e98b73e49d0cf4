//! Request extractors: the admin and read credentials, checked before any body is read, and
//! the audit log of failed attempts.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use revbloom::bearer::bearer_token;
use revbloom::tower::DEFAULT_MAX_HEADER_BYTES;

/// Proof that the request carries the admin token: take it as a handler argument and the
/// handler runs only for admins. Parsed by the same defensive bearer parser as the tower layer
/// (one header, bounded, `b64token`), compared in constant time (for equal lengths; a length
/// mismatch is refused without comparing, which reveals only the length of a 32+ byte random
/// token). Every refusal is counted and logged with the peer address, at most one line per
/// [`AUTH_LOG_INTERVAL`].
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let admin = st.inner.admin_token.as_bytes();
        let why = Refusals {
            missing: "this endpoint needs `Authorization: Bearer <admin token>`",
            wrong: "the admin token is wrong",
        };
        authenticate(parts, st, &[admin], why, "admin").map(|()| Admin)
    }
}

/// Proof that the request carries the read token ([`Hub::read_token`], derived from the seal
/// key that verifiers hold) or the admin token: the exact lookup takes it, so that nobody
/// without a verifier's secret can ask whether a given `jti` is revoked. Checked, counted
/// and logged like [`Admin`].
///
/// [`Hub::read_token`]: crate::publish::Hub::read_token
#[derive(Debug, Clone, Copy)]
pub struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let read = st.inner.hub.read_token().as_bytes();
        let admin = st.inner.admin_token.as_bytes();
        let why = Refusals {
            missing: "this endpoint needs `Authorization: Bearer <read token>`, the read token \
                      derived from the seal key DATA/verifier.key (see docs/API.md), or the admin \
                      token",
            wrong: "the token is neither the read token (derived from the seal key, \
                    DATA/verifier.key) nor the admin token",
        };
        authenticate(parts, st, &[read, admin], why, "read").map(|()| Reader)
    }
}

/// The messages of a refusal: no token at all, or a token that is not one of those accepted.
struct Refusals {
    missing: &'static str,
    wrong: &'static str,
}

/// Accept the request if its bearer token equals one of `tokens` (each compared in constant
/// time, all of them always compared); otherwise count, log (rate-limited) and refuse.
fn authenticate(
    parts: &Parts,
    st: &AppState,
    tokens: &[&[u8]],
    why: Refusals,
    what: &'static str,
) -> Result<(), ApiError> {
    let refused = match bearer_token(&parts.headers, DEFAULT_MAX_HEADER_BYTES) {
        Ok(token) => {
            let ok = tokens.iter().fold(subtle::Choice::from(0), |acc, t| {
                acc | token.as_bytes().ct_eq(t)
            });
            if bool::from(ok) {
                return Ok(());
            }
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", why.wrong)
        }
        Err(revbloom::bearer::BearerProblem::Missing) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing_token", why.missing)
        }
        Err(p) => ApiError::from(p),
    };
    st.inner
        .counters
        .admin_auth_failures_total
        .fetch_add(1, Relaxed);
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    if let Some(suppressed) = st.inner.auth_log.admit(Instant::now()) {
        let peer = peer.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        tracing::warn!(
            %peer,
            path = parts.uri.path(),
            code = refused.code(),
            suppressed,
            "{what} authentication failed"
        );
    }
    Err(refused)
}

/// Least time between two log lines about failed admin authentication: a client guessing
/// tokens must not be able to flood the log (or the disk under it).
pub const AUTH_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Rate limit of the failed-authentication log: one line per [`AUTH_LOG_INTERVAL`], carrying
/// how many failures were not logged since the previous line.
#[derive(Debug, Default)]
pub(crate) struct AuthLog {
    /// When the last line was written, and failures not logged since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl AuthLog {
    /// A failure at `now`: `Some(suppressed)` when a line is to be written (with the count of
    /// failures not logged before it), `None` when this one is suppressed.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while logging; the counts are
        // still usable.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, suppressed) = &mut *g;
        match last {
            Some(t) if now.saturating_duration_since(*t) < AUTH_LOG_INTERVAL => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_auth_log_is_one_line_per_interval_with_the_suppressed_count() {
        let log = AuthLog::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(log.admit(t0), Some(0));
        // A burst inside the interval is counted, not logged.
        for n in 1..=500 {
            assert_eq!(log.admit(ms(n)), None);
        }
        assert_eq!(log.admit(ms(999)), None);
        // The next line reports the burst.
        assert_eq!(log.admit(ms(1000)), Some(501));
        assert_eq!(log.admit(ms(1500)), None);
        assert_eq!(log.admit(ms(5000)), Some(1));
        assert_eq!(log.admit(ms(6000)), Some(0));
    }
}
