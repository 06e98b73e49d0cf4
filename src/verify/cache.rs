//! [`CachedSource`]: a bounded cache in front of any exact source (feature `cache`).

use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;
use quick_cache::Equivalent;

use super::exact::{AsyncExactSource, ExactError, ExactFuture, ExactQuery, ExactSource};

/// Limits of a [`CachedSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most answers held, approximately: the cache is split into shards that each hold their
    /// share rounded up, so the total can exceed this by fewer answers than there are shards
    /// (up to 62 there is a single shard and the bound is exact). A full shard evicts by
    /// quick_cache's S3-FIFO-like policy, not by expiry: answers hit again stay, answers
    /// seen once go first. An expired answer is dropped when it is next looked up; one never
    /// looked up again ages out like any other answer that is no longer hit.
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

/// The cached token id. `Hash` must agree with [`KeyRef`]'s: both derive it over the same
/// field order, and `Option<Box<str>>` hashes like `Option<&str>`.
#[derive(Debug, Hash, PartialEq, Eq)]
struct Key {
    iss: Option<Box<str>>,
    jti: Box<str>,
}

/// A borrowed [`Key`], so a lookup allocates nothing.
#[derive(Hash)]
struct KeyRef<'a> {
    iss: Option<&'a str>,
    jti: &'a str,
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.jti == &*key.jti && self.iss == key.iss.as_deref()
    }
}

impl<'a> KeyRef<'a> {
    fn of(q: &ExactQuery<'a>) -> Self {
        Self {
            iss: q.iss,
            jti: q.jti,
        }
    }

    fn owned(&self) -> Key {
        Key {
            iss: self.iss.map(Box::from),
            jti: Box::from(self.jti),
        }
    }
}

/// An exact source with a bounded answer cache in front.
///
/// Two kinds of token reach the exact source again and again: a good token that happens to be
/// a filter false positive (every request of that client), and a revoked token being retried.
/// Both answers are cached, with lifetimes chosen so the cache never makes the verifier more
/// permissive than the filter already is:
///
/// - "revoked" is kept until the token's `exp` (a revocation is never lifted), or `max_ttl`
///   for a token without `exp`;
/// - "not revoked" is kept until the token's `exp`, at most `negative_ttl`, and only while the
///   revocation state's generation is unchanged: a revocation published after the answer
///   arrives with a new generation, which retires the answer. A query made while the state is
///   stale never uses it;
/// - errors are not cached, but put the source in back-off for `error_backoff` so a dead
///   source is not hammered; during back-off a miss fails with [`ExactError::BackingOff`].
///
/// The answers live in a [`quick_cache`] concurrent cache bounded by
/// [`CacheConfig::capacity`]; lookups take a shard's read lock and allocate nothing.
///
/// Implements [`ExactSource`] when the inner source does, and [`AsyncExactSource`] when the
/// inner source does; no lock is held across an await.
#[derive(Debug)]
pub struct CachedSource<S> {
    inner: S,
    config: CacheConfig,
    answers: Cache<Key, Entry>,
    /// Unix second until which misses fail fast after a source error.
    backoff_until: AtomicU64,
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
            answers: Cache::new(config.capacity),
            backoff_until: AtomicU64::new(0),
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

    /// Number of cached answers, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether the cache holds no answer.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    fn lookup(&self, q: &ExactQuery<'_>) -> Lookup {
        let key = KeyRef::of(q);
        if let Some(e) = self.answers.get(&key) {
            if q.now >= e.until {
                // Of no use to any later query either (time only moves on): free the slot.
                // `remove_if` so an answer recorded since the `get` is not the one removed.
                self.answers.remove_if(&key, |e| q.now >= e.until);
            } else {
                // A "not revoked" holds only for the generation it was given under, and never
                // when the state is stale: revocations made since then have not reached the
                // filter, so the source must be asked again.
                let negative_ok = !q.stale && e.generation == q.generation;
                if e.revoked || negative_ok {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Lookup::Hit(e.revoked);
                }
            }
        }
        if q.now < self.backoff_until.load(Ordering::Relaxed) {
            return Lookup::BackingOff;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss
    }

    fn record(&self, q: &ExactQuery<'_>, answer: &Result<bool, ExactError>) {
        let revoked = match answer {
            Ok(r) => *r,
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.backoff_until.store(
                    q.now.saturating_add(self.config.error_backoff),
                    Ordering::Relaxed,
                );
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
        let entry = Entry {
            revoked,
            until,
            generation: q.generation,
        };
        self.answers.insert(KeyRef::of(q).owned(), entry);
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

    #[test]
    fn bounded_exactly_up_to_62() {
        // Up to 62 the cache is one shard (see `CacheConfig::capacity`).
        for capacity in 1..=62 {
            let c = CachedSource::with_config(
                MemoryExactSource::new(),
                CacheConfig {
                    capacity,
                    ..CacheConfig::default()
                },
            );
            for i in 0..3 * capacity + 10 {
                let jti = format!("j{i}");
                assert!(matches!(
                    c.is_revoked(&q(&jti, Some(1_000), 1, 10)),
                    Ok(false)
                ));
            }
            assert!(c.len() <= capacity, "{} answers for {capacity}", c.len());
        }
    }

    fn q_iss<'a>(iss: Option<&'a str>, jti: &'a str, now: u64) -> ExactQuery<'a> {
        ExactQuery {
            iss,
            ..q(jti, Some(1_000), 1, now)
        }
    }

    #[test]
    fn issuer_is_part_of_the_key() {
        let src = MemoryExactSource::new();
        src.revoke(Some("https://a.example"), "t", Some(1_000));
        let c = CachedSource::new(src);
        let a = Some("https://a.example");
        let b = Some("https://b.example");
        for _ in 0..3 {
            assert!(matches!(c.is_revoked(&q_iss(a, "t", 10)), Ok(true)));
            assert!(matches!(c.is_revoked(&q_iss(b, "t", 10)), Ok(false)));
            assert!(matches!(c.is_revoked(&q_iss(None, "t", 10)), Ok(false)));
        }
        // One call per distinct (iss, jti); every repeat is a hit.
        assert_eq!(c.inner().calls(), 3);
        assert_eq!(c.stats().hits, 6);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn stale_queries_skip_negatives_but_keep_revocations() {
        let src = MemoryExactSource::new();
        src.revoke(None, "bad", Some(1_000));
        let c = CachedSource::new(src);
        assert!(matches!(
            c.is_revoked(&q("bad", Some(1_000), 1, 10)),
            Ok(true)
        ));
        assert!(matches!(
            c.is_revoked(&q("good", Some(1_000), 1, 10)),
            Ok(false)
        ));
        assert_eq!(c.inner().calls(), 2);
        let stale = |jti| ExactQuery {
            stale: true,
            ..q(jti, Some(1_000), 1, 10)
        };
        assert!(matches!(c.is_revoked(&stale("bad")), Ok(true)));
        assert_eq!(c.inner().calls(), 2);
        for _ in 0..3 {
            assert!(matches!(c.is_revoked(&stale("good")), Ok(false)));
        }
        assert_eq!(c.inner().calls(), 5);
    }

    #[test]
    fn revoked_without_exp_lives_max_ttl() {
        let src = MemoryExactSource::new();
        src.revoke(None, "bad", None);
        let c = CachedSource::with_config(
            src,
            CacheConfig {
                max_ttl: 100,
                ..CacheConfig::default()
            },
        );
        assert!(matches!(c.is_revoked(&q("bad", None, 1, 10)), Ok(true)));
        assert!(matches!(c.is_revoked(&q("bad", None, 9, 109)), Ok(true)));
        assert_eq!(c.inner().calls(), 1);
        assert!(matches!(c.is_revoked(&q("bad", None, 9, 110)), Ok(true)));
        assert_eq!(c.inner().calls(), 2);
    }

    #[test]
    fn answers_past_their_lifetime_are_not_kept() {
        let src = MemoryExactSource::new();
        src.revoke(None, "bad", Some(20));
        let c = CachedSource::new(src);
        // Already expired: nothing to cache.
        assert!(matches!(c.is_revoked(&q("old", Some(5), 1, 10)), Ok(false)));
        assert!(c.is_empty());
        assert!(matches!(c.is_revoked(&q("bad", Some(20), 1, 10)), Ok(true)));
        assert_eq!(c.len(), 1);
        // Looked up after its lifetime: asked again, and the fresh answer is not cacheable
        // either, so the slot is freed.
        assert!(matches!(c.is_revoked(&q("bad", Some(20), 1, 21)), Ok(true)));
        assert_eq!(c.inner().calls(), 3);
        assert!(c.is_empty());
    }

    #[test]
    fn zero_capacity_still_caches_one_answer() {
        let c = CachedSource::with_config(
            MemoryExactSource::new(),
            CacheConfig {
                capacity: 0,
                ..CacheConfig::default()
            },
        );
        for _ in 0..3 {
            assert!(matches!(
                c.is_revoked(&q("a", Some(1_000), 1, 10)),
                Ok(false)
            ));
        }
        assert_eq!(c.inner().calls(), 1);
        assert!(matches!(
            c.is_revoked(&q("b", Some(1_000), 1, 10)),
            Ok(false)
        ));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn bounded_size_across_shards() {
        // A power of two, so every shard count divides it and the bound is exact on any
        // machine.
        let capacity = 1024;
        let c = CachedSource::with_config(
            MemoryExactSource::new(),
            CacheConfig {
                capacity,
                ..CacheConfig::default()
            },
        );
        for i in 0..10 * capacity {
            let jti = format!("j{i}");
            assert!(matches!(
                c.is_revoked(&q(&jti, Some(1_000), 1, 10)),
                Ok(false)
            ));
        }
        assert!(c.len() <= capacity, "{} answers held", c.len());
        assert!(c.len() >= capacity / 2, "{} answers held", c.len());
    }

    #[test]
    fn an_answer_hit_again_survives_a_stream_of_one_off_tokens() {
        let src = MemoryExactSource::new();
        src.revoke(None, "retried", Some(1_000));
        let c = CachedSource::with_config(
            src,
            CacheConfig {
                capacity: 32,
                ..CacheConfig::default()
            },
        );
        for i in 0..2_000 {
            if i % 8 == 0 {
                assert!(matches!(
                    c.is_revoked(&q("retried", Some(1_000), 1, 10)),
                    Ok(true)
                ));
            }
            let jti = format!("once{i}");
            assert!(matches!(
                c.is_revoked(&q(&jti, Some(1_000), 1, 10)),
                Ok(false)
            ));
        }
        // Asked once for the revoked token, once for each one-off token.
        assert_eq!(c.inner().calls(), 1 + 2_000);
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
