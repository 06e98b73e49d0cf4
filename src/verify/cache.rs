//! A bounded cache in front of any exact source.
//!
//! Two kinds of token reach the exact source again and again: a good token that happens to be
//! a filter false positive (every request of that client), and a revoked token being retried.
//! Both answers are cached, with lifetimes chosen so the cache never makes the verifier more
//! permissive than the filter already is:
//!
//! - "revoked" is kept until the token's `exp` (a revocation is never lifted);
//! - "not revoked" is kept until the token's `exp`, at most `negative_ttl`, and only while the
//!   revocation state's generation is unchanged: a revocation published after the answer
//!   arrives with a new generation, which retires the answer;
//! - errors are not cached, but put the source in back-off for `error_backoff` so a dead
//!   source is not hammered; during back-off a miss fails with [`ExactError::BackingOff`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::exact::{AsyncExactSource, ExactError, ExactFuture, ExactQuery, ExactSource};

/// Limits of a [`CachedSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most answers held; beyond it expired entries are purged, then an arbitrary one evicted.
    pub capacity: usize,
    /// Longest a "not revoked" answer is trusted, in seconds.
    pub negative_ttl: u64,
    /// Longest a "revoked" answer for a token without `exp` is kept, in seconds.
    pub max_ttl: u64,
    /// After a source error, how long misses fail fast instead of asking again, in seconds.
    pub error_backoff: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            negative_ttl: 5,
            max_ttl: 3600,
            error_backoff: 1,
        }
    }
}

/// Counters of a [`CachedSource`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Queries answered from the cache.
    pub hits: u64,
    /// Queries passed to the inner source.
    pub misses: u64,
    /// Inner source failures.
    pub errors: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    revoked: bool,
    /// Unix second from which the entry is no longer used.
    until: u64,
    generation: u64,
}

type Key = (Option<Box<str>>, Box<str>);

#[derive(Debug, Default)]
struct State {
    map: HashMap<Key, Entry>,
    backoff_until: u64,
    last_purge: u64,
}

/// An exact source with a bounded answer cache in front (see the [module docs](self)).
///
/// Implements [`ExactSource`] when the inner source does, and [`AsyncExactSource`] when the
/// inner source does; the lock is never held across an await.
#[derive(Debug)]
pub struct CachedSource<S> {
    inner: S,
    config: CacheConfig,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

enum Lookup {
    Hit(bool),
    BackingOff,
    Miss,
}

impl<S> CachedSource<S> {
    /// Cache `inner` with the default limits.
    pub fn new(inner: S) -> Self {
        Self::with_config(inner, CacheConfig::default())
    }

    /// Cache `inner` with the given limits (a capacity of 0 is raised to 1).
    pub fn with_config(inner: S, mut config: CacheConfig) -> Self {
        config.capacity = config.capacity.max(1);
        Self {
            inner,
            config,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Hit, miss and error counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Number of cached answers.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache holds no answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain map; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(q: &ExactQuery<'_>) -> Key {
        (q.iss.map(Box::from), Box::from(q.jti))
    }

    fn lookup(&self, q: &ExactQuery<'_>) -> Lookup {
        let st = self.lock();
        if let Some(e) = st.map.get(&Self::key(q)) {
            // A "not revoked" holds only for the generation it was given under, and never
            // when the state is stale: revocations made since then have not reached the
            // filter, so the source must be asked again.
            let negative_ok = !q.stale && e.generation == q.generation;
            if q.now < e.until && (e.revoked || negative_ok) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(e.revoked);
            }
        }
        if q.now < st.backoff_until {
            return Lookup::BackingOff;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss
    }

    fn record(&self, q: &ExactQuery<'_>, answer: &Result<bool, ExactError>) {
        let mut st = self.lock();
        let revoked = match answer {
            Ok(r) => *r,
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                st.backoff_until = q.now.saturating_add(self.config.error_backoff);
                return;
            }
        };
        let ttl = if revoked {
            self.config.max_ttl
        } else {
            self.config.negative_ttl
        };
        let mut until = q.now.saturating_add(ttl);
        if let Some(exp) = q.exp {
            // Never outlive the token: after exp it is rejected as expired anyway.
            until = until.min(exp.saturating_add(1));
            if revoked {
                until = exp.saturating_add(1);
            }
        }
        if until <= q.now {
            return;
        }
        if st.map.len() >= self.config.capacity {
            if st.last_purge != q.now {
                // Purging is O(capacity): at most once per second.
                st.last_purge = q.now;
                let now = q.now;
                st.map.retain(|_, e| now < e.until);
            }
            if st.map.len() >= self.config.capacity {
                // Arbitrary victim: the map's iteration order is randomized per process.
                if let Some(victim) = st.map.keys().next().cloned() {
                    st.map.remove(&victim);
                }
            }
        }
        let entry = Entry {
            revoked,
            until,
            generation: q.generation,
        };
        st.map.insert(Self::key(q), entry);
    }
}

impl<S: ExactSource> ExactSource for CachedSource<S> {
    fn is_revoked(&self, query: &ExactQuery<'_>) -> Result<bool, ExactError> {
        match self.lookup(query) {
            Lookup::Hit(r) => Ok(r),
            Lookup::BackingOff => Err(ExactError::BackingOff),
            Lookup::Miss => {
                let answer = self.inner.is_revoked(query);
                self.record(query, &answer);
                answer
            }
        }
    }
}

impl<S: AsyncExactSource> AsyncExactSource for CachedSource<S> {
    fn is_revoked_async<'a>(&'a self, query: &'a ExactQuery<'a>) -> ExactFuture<'a> {
        Box::pin(async move {
            match self.lookup(query) {
                Lookup::Hit(r) => Ok(r),
                Lookup::BackingOff => Err(ExactError::BackingOff),
                Lookup::Miss => {
                    let answer = self.inner.is_revoked_async(query).await;
                    self.record(query, &answer);
                    answer
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::exact::MemoryExactSource;

    fn q(jti: &str, exp: Option<u64>, generation: u64, now: u64) -> ExactQuery<'_> {
        ExactQuery {
            iss: None,
            jti,
            exp,
            generation,
            now,
            stale: false,
        }
    }

    #[test]
    fn revoked_answers_live_until_exp_negatives_until_generation_or_ttl() {
        let src = MemoryExactSource::new();
        src.revoke(None, "bad", Some(1_000));
        let c = CachedSource::new(src);
        for _ in 0..10 {
            assert!(matches!(
                c.is_revoked(&q("bad", Some(1_000), 1, 100)),
                Ok(true)
            ));
            assert!(matches!(
                c.is_revoked(&q("good", Some(1_000), 1, 100)),
                Ok(false)
            ));
        }
        assert_eq!(c.inner().calls(), 2);
        // The revoked answer survives a new generation; the negative one does not.
        assert!(matches!(
            c.is_revoked(&q("bad", Some(1_000), 2, 100)),
            Ok(true)
        ));
        assert!(matches!(
            c.is_revoked(&q("good", Some(1_000), 2, 100)),
            Ok(false)
        ));
        assert_eq!(c.inner().calls(), 3);
        // Negative TTL (5 s) elapses.
        assert!(matches!(
            c.is_revoked(&q("good", Some(1_000), 2, 106)),
            Ok(false)
        ));
        assert_eq!(c.inner().calls(), 4);
        // Past exp nothing is served from the cache.
        assert!(matches!(
            c.is_revoked(&q("bad", Some(1_000), 2, 1_001)),
            Ok(true)
        ));
        assert_eq!(c.inner().calls(), 5);
        assert_eq!(c.stats().hits, 20 - 2 + 1);
    }

    #[test]
    fn bounded_size() {
        let c = CachedSource::with_config(
            MemoryExactSource::new(),
            CacheConfig {
                capacity: 8,
                ..CacheConfig::default()
            },
        );
        for i in 0..100 {
            let jti = format!("j{i}");
            assert!(matches!(
                c.is_revoked(&q(&jti, Some(1_000), 1, 10)),
                Ok(false)
            ));
        }
        assert!(c.len() <= 8);
    }

    struct Down(AtomicU64);
    impl ExactSource for Down {
        fn is_revoked(&self, _: &ExactQuery<'_>) -> Result<bool, ExactError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(ExactError::Timeout)
        }
    }

    #[test]
    fn errors_back_off_instead_of_hammering() {
        let c = CachedSource::new(Down(AtomicU64::new(0)));
        assert!(matches!(
            c.is_revoked(&q("x", Some(1_000), 1, 10)),
            Err(ExactError::Timeout)
        ));
        for _ in 0..50 {
            assert!(matches!(
                c.is_revoked(&q("x", Some(1_000), 1, 10)),
                Err(ExactError::BackingOff)
            ));
        }
        assert_eq!(c.inner().0.load(Ordering::Relaxed), 1);
        assert!(matches!(
            c.is_revoked(&q("x", Some(1_000), 1, 11)),
            Err(ExactError::Timeout)
        ));
        assert_eq!(c.inner().0.load(Ordering::Relaxed), 2);
    }
}
