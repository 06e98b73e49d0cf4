//! The exact revocation source: the authoritative answer behind a filter positive.
//!
//! A Bloom positive only says "maybe". The verifier asks an [`ExactSource`] (blocking allowed,
//! for synchronous programs) or an [`AsyncExactSource`] (for tokio services, never blocks the
//! runtime) — and only then: a token the filter clears never reaches the source. Put a
//! `CachedSource` (feature `cache`) in front of a remote source so a hot false positive or a
//! revoked token being retried does not hammer it.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::bounds::Bounds;
use crate::hash::normalize_issuer;

/// One question to an exact source: is this token id revoked?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactQuery<'a> {
    /// The token's issuer, when revocations are keyed on `(iss, jti)`.
    pub iss: Option<&'a str>,
    /// The token id.
    pub jti: &'a str,
    /// The token's `exp`: a cached answer must not outlive it.
    pub exp: Option<u64>,
    /// Generation of the revocation state whose filter matched (0 when there is none). A
    /// cached "not revoked" is only trusted while this stays the same.
    pub generation: u64,
    /// The verifier's clock, unix seconds.
    pub now: u64,
    /// The revocation state was stale when the question was asked: new revocations may not
    /// have reached it, so a cached "not revoked" must not answer.
    pub stale: bool,
}

/// An exact source could not answer.
///
/// A cause (the source client's own error: HTTP, database, I/O) is kept behind an `Arc`, so
/// the error stays `Clone` and one failure can be handed to every waiter; `source()` returns
/// the cause itself, so it can be downcast to the client's error type. `Clone` but not
/// `PartialEq`: those causes have no equality; match on the variant instead
/// (`matches!(e, ExactError::Timeout)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExactError {
    /// The source could not be reached (connection refused, DNS, I/O).
    Unreachable(Arc<dyn Error + Send + Sync>),
    /// The source did not answer in time.
    Timeout,
    /// The source answered something that is not a valid answer.
    BadResponse(Arc<dyn Error + Send + Sync>),
    /// A recent failure put the source in back-off; it was not asked.
    BackingOff,
    /// The source answered "not revoked", but it has pruned revocations of tokens expiring
    /// before `pruned_before` and this token's `exp` is earlier (or absent): it may have
    /// forgotten this token's revocation, so the answer vouches for nothing. Such a token is
    /// past every verifier's leeway by the publisher's clock; treat it as expired.
    NotCovered {
        /// The token's `exp`, if it has one.
        exp: Option<u64>,
        /// The source's prune watermark: revocations of tokens with an earlier `exp` may be
        /// gone.
        pruned_before: u64,
    },
}

// Written out rather than derived: thiserror would make the `Arc` the source, which hides the
// cause's type from `downcast_ref`.
impl fmt::Display for ExactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExactError::Unreachable(cause) => write!(f, "exact source unreachable: {cause}"),
            ExactError::Timeout => f.write_str("exact source timed out"),
            ExactError::BadResponse(cause) => {
                write!(f, "exact source gave an invalid answer: {cause}")
            }
            ExactError::BackingOff => {
                f.write_str("exact source is backing off after a recent failure")
            }
            ExactError::NotCovered { exp, pruned_before } => write!(
                f,
                "exact source no longer covers this token (exp {exp:?} before its prune watermark {pruned_before})"
            ),
        }
    }
}

impl Error for ExactError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ExactError::Unreachable(cause) | ExactError::BadResponse(cause) => Some(&**cause),
            _ => None,
        }
    }
}

impl ExactError {
    /// [`ExactError::Unreachable`] caused by `cause`: the client's own error, or a message
    /// (`ExactError::unreachable("connection refused")`).
    pub fn unreachable(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        ExactError::Unreachable(Arc::from(cause.into()))
    }

    /// [`ExactError::BadResponse`] caused by `cause`: the decoder's error, or a message.
    pub fn bad_response(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        ExactError::BadResponse(Arc::from(cause.into()))
    }
}

/// Settle an exact source's answer against its prune watermark: "revoked" stands, and "not
/// revoked" counts only for a token the source still remembers, one whose `exp` is at or after
/// `pruned_before` (a token without `exp` is never covered once the source pruned; 0 means it
/// never did). Otherwise [`ExactError::NotCovered`].
pub fn covered(revoked: bool, exp: Option<u64>, pruned_before: u64) -> Result<bool, ExactError> {
    if revoked || pruned_before == 0 {
        return Ok(revoked);
    }
    match exp {
        Some(e) if e >= pruned_before => Ok(false),
        _ => Err(ExactError::NotCovered { exp, pruned_before }),
    }
}

/// A blocking exact source, for synchronous verifiers (and for non-blocking in-memory sources
/// under [`Verifier::verify_async`](super::Verifier::verify_async), which calls it inline).
pub trait ExactSource: Send + Sync {
    /// Whether the token is revoked. Called only on filter positives.
    fn is_revoked(&self, query: &ExactQuery<'_>) -> Result<bool, ExactError>;
}

/// The future an [`AsyncExactSource`] returns; boxed so the trait stays object safe.
pub type ExactFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, ExactError>> + Send + 'a>>;

/// An asynchronous exact source, for services on an async runtime. Implementations must not
/// block the thread that polls them (use the runtime's I/O, or its `spawn_blocking`).
pub trait AsyncExactSource: Send + Sync {
    /// Whether the token is revoked. Called only on filter positives.
    fn is_revoked_async<'a>(&'a self, query: &'a ExactQuery<'a>) -> ExactFuture<'a>;
}

impl<T: ExactSource + ?Sized> ExactSource for std::sync::Arc<T> {
    fn is_revoked(&self, query: &ExactQuery<'_>) -> Result<bool, ExactError> {
        (**self).is_revoked(query)
    }
}

impl<T: AsyncExactSource + ?Sized> AsyncExactSource for std::sync::Arc<T> {
    fn is_revoked_async<'a>(&'a self, query: &'a ExactQuery<'a>) -> ExactFuture<'a> {
        (**self).is_revoked_async(query)
    }
}

type MemoryKey = (Option<Box<str>>, Box<str>);

/// An in-process exact source: a set of revoked `(iss, jti)` with their `exp`. It never
/// blocks for long (one read lock), so it serves both the blocking and the async path.
///
/// Issuers are normalised ([`normalize_issuer`]); a revocation without an issuer revokes the
/// `jti` for every issuer, as in the publisher's store.
///
/// Useful on the publisher itself, in tests, and for applications that keep their own list.
#[derive(Debug, Default)]
pub struct MemoryExactSource {
    revoked: RwLock<HashMap<MemoryKey, Option<u64>>>,
    calls: AtomicU64,
}

impl MemoryExactSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a revocation of `jti` of issuer `iss` (of every issuer when `None`) until `exp`.
    pub fn revoke(&self, iss: Option<&str>, jti: &str, exp: Option<u64>) {
        let key = (iss.map(normalize_issuer).map(Box::from), Box::from(jti));
        // A poisoned lock only means another thread panicked mid-insert; the map is still a
        // valid map, so keep serving it rather than lose revocations.
        let mut map = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        // Restated with another exp: keep the later one, which covers the token longer.
        let slot = map.entry(key).or_insert(exp);
        *slot = match (*slot, exp) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    /// Drop revocations no verifier of a deployment with `bounds` can need at time `now`
    /// ([`Bounds::revocation_needed_until`] is past); those without `exp` are kept.
    pub fn prune(&self, now: u64, bounds: &Bounds) {
        let mut map = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, exp| exp.is_none_or(|e| bounds.revocation_needed_until(e) >= now));
    }

    /// How many times the source has been asked (for tests and metrics).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Number of revocations held.
    pub fn len(&self) -> usize {
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no revocation is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lookup(&self, q: &ExactQuery<'_>) -> bool {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let map = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        // Borrowed lookup without allocating would need a custom key type; positives are
        // rare (filter false positives and revoked tokens), so one allocation is fine.
        let jti: Box<str> = Box::from(q.jti);
        let every: MemoryKey = (None, jti);
        if map.contains_key(&every) {
            return true;
        }
        let iss = q.iss.map(normalize_issuer).map(Box::from);
        iss.is_some() && map.contains_key(&(iss, every.1))
    }
}

impl ExactSource for MemoryExactSource {
    fn is_revoked(&self, query: &ExactQuery<'_>) -> Result<bool, ExactError> {
        Ok(self.lookup(query))
    }
}

impl AsyncExactSource for MemoryExactSource {
    fn is_revoked_async<'a>(&'a self, query: &'a ExactQuery<'a>) -> ExactFuture<'a> {
        let answer = self.lookup(query);
        Box::pin(std::future::ready(Ok(answer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>(iss: Option<&'a str>, jti: &'a str) -> ExactQuery<'a> {
        ExactQuery {
            iss,
            jti,
            exp: Some(100),
            generation: 1,
            now: 10,
            stale: false,
        }
    }

    #[test]
    fn memory_source_keys_on_issuer_and_counts() {
        let s = MemoryExactSource::new();
        s.revoke(Some("a"), "j1", Some(100));
        let revoked = |iss, jti| ExactSource::is_revoked(&s, &q(iss, jti)).unwrap();
        assert!(revoked(Some("a"), "j1"));
        assert!(!revoked(Some("b"), "j1"));
        assert!(!revoked(None, "j1"));
        assert!(revoked(Some("a/"), "j1"));
        assert_eq!(s.calls(), 4);
    }

    #[test]
    fn memory_source_issuerless_revocations_match_every_issuer() {
        let s = MemoryExactSource::new();
        s.revoke(None, "j", Some(100));
        let revoked = |iss, jti| ExactSource::is_revoked(&s, &q(iss, jti)).unwrap();
        assert!(revoked(Some("a"), "j"));
        assert!(revoked(Some("b"), "j"));
        assert!(revoked(None, "j"));
        assert!(!revoked(None, "k"));
    }

    #[test]
    fn memory_source_prunes_when_no_verifier_can_need_it() {
        let b = Bounds {
            max_token_lifetime: 1000,
            leeway: 60,
            max_clock_skew: 5,
        };
        let s = MemoryExactSource::new();
        s.revoke(Some("a"), "j1", Some(100));
        s.revoke(None, "j2", None);
        // A verifier may accept the token until exp + leeway by a clock lagging by the skew.
        s.prune(165, &b);
        assert_eq!(s.len(), 2);
        s.prune(166, &b);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn causes_stay_reachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = ExactError::unreachable(io);
        let cause = e.source().expect("the cause is the source");
        let io = cause
            .downcast_ref::<std::io::Error>()
            .expect("downcasts to the cause");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(e.to_string(), "exact source unreachable: refused");
        let copy = e.clone();
        assert!(matches!(copy, ExactError::Unreachable(_)));
        assert!(ExactError::bad_response("not JSON").source().is_some());
    }
}
