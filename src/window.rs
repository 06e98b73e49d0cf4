//! The time-bucketed ring of blocked Bloom filters.
//!
//! Revocations are bucketed by the token's `exp`: bucket `b` holds expiry times in
//! `[b * width, (b + 1) * width)`. The ring holds the buckets from the oldest one whose span has
//! not ended more than `leeway` ago up to the one holding `now + horizon + leeway`; a check
//! probes exactly one of them (or the overflow bucket), so its cost does not depend on how many
//! buckets or revocations there are.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use thiserror::Error;

use crate::bloom::probe::{BlockRef, Probe};
use crate::bloom::{self, Block, Bloom};
use crate::config::{BucketDivisor, Geometry, WindowConfig};
use crate::error::ConfigError;
use crate::hash::{KeyHash, KeyHasher};
use crate::snapshot::SnapshotView;

/// The answer of a revocation check. A verifier treats every variant but [`Verdict::Clear`] as
/// "do not accept on the filter's word alone".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Definitely not revoked: no revocation of this key with this expiry bucket was inserted.
    Clear,
    /// The filter matched: the key may be revoked. Ask an exact source before rejecting, so a
    /// false positive never rejects a good token.
    MaybeRevoked,
    /// The token's `exp` lies before the oldest live bucket. The filter has forgotten that span
    /// (the token is past its expiry plus leeway) and cannot vouch for it: reject the token.
    Expired,
}

/// What [`Window::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// The revocation was added.
    Inserted,
    /// The same key hash was already revoked in the same bucket; nothing changed.
    Duplicate,
    /// The token expired before the oldest live bucket: nothing to store, and
    /// [`Window::check`] already answers [`Verdict::Expired`] for it.
    Expired,
    /// ([`Window::restore_hash`] only.) The key was recorded, but its bits were already set:
    /// the filter answered positive for it before, so no bit, count or journal record changed.
    Covered,
}

/// Why [`Window::from_snapshot`] cannot take a snapshot's layout. Nothing is wrong with the
/// snapshot: the publisher builds a fresh window and publishes a full snapshot instead.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum LayoutMismatch {
    /// The window configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The snapshot is of another format version than the one this crate writes.
    #[error("the snapshot has format version {found}, this crate writes {expected}; publish a full snapshot")]
    Version {
        /// The snapshot's format version.
        found: u16,
        /// The version [`encode`](crate::snapshot::encode) writes.
        expected: u16,
    },
    /// The snapshot's directory has another number of buckets than this configuration.
    #[error("the snapshot has {found} buckets, this configuration {expected} (overflow bucket included); publish a full snapshot")]
    Buckets {
        /// Directory entries in the snapshot.
        found: u64,
        /// Ring buckets of the configuration, plus the overflow bucket.
        expected: u64,
    },
    /// The snapshot's layout id is not the one this configuration gives its buckets: the
    /// bucket width, horizon, leeway, false-positive rate or token bounds differ.
    #[error("the snapshot's layout id {snapshot:#018x} is not what this configuration gives its buckets ({window:#018x}): the bucket width, horizon, leeway, fp_rate or token bounds differ; publish a full snapshot")]
    Layout {
        /// The snapshot's layout id.
        snapshot: u64,
        /// The layout id of the window built from it.
        window: u64,
    },
}

/// Which bucket a figure or a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BucketId {
    /// The bucket that never rotates: tokens without `exp`, and revocations whose `exp` is
    /// beyond the ring's far end until the ring reaches them.
    Overflow,
    /// The expiry bucket with this absolute number (`exp / bucket_width`).
    Expiry(u64),
}

/// Figures for one bucket, for dashboards and `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketStats {
    /// Which bucket.
    pub id: BucketId,
    /// For expiry buckets, the `exp` range `[start, end)` in unix seconds.
    pub exp_range: Option<(u64, u64)>,
    /// Distinct revocations held.
    pub entries: u64,
    /// Size of the bit array.
    pub bits: u64,
    /// Fraction of bits set.
    pub fill_ratio: f64,
    /// False-positive rate of the current bit pattern for a random absent key.
    pub estimated_fp: f64,
}

/// A set of already-random 64-bit hashes needs no further hashing.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashSet64 = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// One slot's filter plus what it needs to be rebuilt larger: the key hashes it holds.
#[derive(Debug, Clone)]
struct Slot<S> {
    bloom: Bloom,
    /// Keys the bucket takes before it grows: what its bit array was sized for, or what its
    /// whole blocks hold at the target rate if that is more.
    capacity: u64,
    /// Keys whose bits are set in the current bit array: the count snapshots carry. Equal to
    /// `entries.len()` after every public call, except in a window built from a snapshot,
    /// where it starts at the snapshot's count and `restore_hash` adds keys to `entries`
    /// without counting those the bits already cover; every rebuild resets it to
    /// `entries.len()`.
    loaded: u64,
    entries: S,
}

/// A time-bucketed, rotating set of revoked keys with one blocked Bloom filter per expiry
/// bucket. See the [crate docs](crate) for an example.
///
/// The window keeps each bucket's key hashes next to its bits, so a bucket that outgrows its
/// size is rebuilt larger from them, and snapshots can be sized to their content. Verifiers do
/// not hold a window: they check a `SnapshotView` of the encoded bits.
#[derive(Debug, Clone)]
pub struct Window {
    config: WindowConfig,
    geo: Geometry,
    /// `exp / width` without a divide on the check path.
    div: BucketDivisor,
    hasher: KeyHasher,
    ring: Vec<Slot<HashSet64>>,
    /// Slot holding bucket number `oldest`.
    head: usize,
    /// Absolute number of the oldest live bucket; never decreases.
    oldest: u64,
    overflow: Slot<HashSet<(u64, Option<u64>)>>,
    filter_bytes: u64,
    layout_epoch: u64,
    /// New insertions since the last [`Window::take_journal`], when journaling is on. Cleared
    /// whenever the layout epoch moves, since a delta can no longer use them.
    journal: Option<Vec<(BucketId, KeyHash)>>,
    /// The layout epoch at the last `take_journal` (or when journaling was enabled).
    journal_epoch: u64,
    /// Issuer assumed for tokens without `iss` (normalised), carried into snapshots.
    default_iss: Option<std::sync::Arc<str>>,
    /// The claims cutoffs exist for (sorted, unique), carried into snapshots so verifiers
    /// check each of them.
    cutoff_claims: Vec<Box<str>>,
    /// The block probe this CPU runs, chosen once at construction.
    probe: Probe,
}

/// The insertions a delta needs, taken with [`Window::take_journal`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Journal {
    /// Each new, distinct insertion since the previous take, in insertion order: the bucket it
    /// went to and its key hash. Empty when `layout_changed`.
    pub entries: Vec<(BucketId, KeyHash)>,
    /// Whether the layout epoch moved since the previous take (rotation, growth, refit): the
    /// bits can no longer be described as "the previous bits plus `entries`", so the publisher
    /// must ship a full snapshot instead of a delta.
    pub layout_changed: bool,
}

impl Window {
    /// A window for `config` at unix time `now`, with a random hash seed.
    pub fn new(config: WindowConfig, now: u64) -> Result<Self, ConfigError> {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(ConfigError::Seed)?;
        Self::with_seed(config, now, u64::from_le_bytes(seed))
    }

    /// A window with a chosen hash seed: for reproducible tests and fixtures. In production
    /// use [`Window::new`]; a predictable seed lets an attacker aim keys at one block.
    pub fn with_seed(config: WindowConfig, now: u64, seed: u64) -> Result<Self, ConfigError> {
        let geo = config.validate()?;
        let oldest = oldest_at(&geo, now);
        let initial_capacity = initial_capacity(&geo, &config);
        let fresh = || Slot {
            bloom: Bloom::with_blocks(geo.initial_blocks),
            capacity: initial_capacity,
            loaded: 0,
            entries: HashSet64::default(),
        };
        let ring: Vec<_> = (0..geo.buckets).map(|_| fresh()).collect();
        let overflow = Slot {
            bloom: Bloom::with_blocks(geo.initial_blocks),
            capacity: initial_capacity,
            loaded: 0,
            entries: HashSet::new(),
        };
        let filter_bytes = u64::from(geo.initial_blocks)
            * (u64::from(geo.buckets) + 1)
            * bloom::BLOCK_BYTES as u64;
        Ok(Self {
            config,
            geo,
            div: BucketDivisor::new(geo.width),
            hasher: KeyHasher::new(seed),
            ring,
            head: 0,
            oldest,
            overflow,
            filter_bytes,
            layout_epoch: 0,
            journal: None,
            journal_epoch: 0,
            default_iss: None,
            cutoff_claims: Vec::new(),
            probe: Probe::detect(),
        })
    }

    /// A window with exactly the layout of `view`: its hash seed, oldest bucket, every
    /// bucket's bits and block count, its entry counts, layout epoch, default issuer and
    /// cutoff claims. A snapshot encoded from it is `view`'s filter byte for byte, so a
    /// publisher taking over a lineage (another replica of a shared store) can continue it
    /// with a delta: re-add the revocations it knows with [`Window::restore_hash`], and the
    /// journal then holds exactly those `view` does not answer positive for.
    ///
    /// The window holds no keys yet (only bits): a bucket grows, as any does, once its entry
    /// count reaches what its blocks hold at the configured load, and then rebuilds from the
    /// keys restored into it. Each bucket's capacity is what its blocks hold at that load.
    ///
    /// Fails when `config` does not give `view`'s layout ([`LayoutMismatch`]): the publisher
    /// then starts a fresh window and publishes a full snapshot.
    pub fn from_snapshot<B: AsRef<[u8]>>(
        config: WindowConfig,
        view: &SnapshotView<B>,
    ) -> Result<Self, LayoutMismatch> {
        if view.format_version() != crate::snapshot::FORMAT_VERSION {
            return Err(LayoutMismatch::Version {
                found: view.format_version(),
                expected: crate::snapshot::FORMAT_VERSION,
            });
        }
        let mut w = Self::with_seed(config, 0, view.hasher().seed())?;
        let expected = u64::from(w.geo.buckets) + 1;
        if view.bucket_count() as u64 != expected {
            return Err(LayoutMismatch::Buckets {
                found: view.bucket_count() as u64,
                expected,
            });
        }
        let max_load = w.geo.max_load;
        let bytes = view.as_bytes();
        let slot_of = |index: usize| -> Option<Slot<()>> {
            let (_, entries, blocks, offset) = view.bucket_ref(index)?;
            let end = offset.checked_add(blocks as usize * bloom::BLOCK_BYTES)?;
            let bits = bytes.get(offset..end)?;
            let blocks: Vec<Block> = bits
                .chunks_exact(bloom::BLOCK_BYTES)
                .filter_map(|c| <&[u8; bloom::BLOCK_BYTES]>::try_from(c).ok())
                .map(|c| Block(bloom::words_of(c)))
                .collect();
            let capacity = bloom::entries_for(blocks.len() as u64, max_load);
            Some(Slot {
                bloom: Bloom::from_blocks(blocks),
                capacity,
                loaded: entries,
                entries: (),
            })
        };
        let mut filter_bytes = 0u64;
        for index in 0..view.bucket_count() {
            // `open` validated the directory, so every entry is there; a missing one would
            // leave the fresh slot, and the layout check below refuses the result.
            let Some(s) = slot_of(index) else { continue };
            filter_bytes += bloom_bytes(&s.bloom);
            if index == 0 {
                w.overflow = Slot {
                    bloom: s.bloom,
                    capacity: s.capacity,
                    loaded: s.loaded,
                    entries: HashSet::new(),
                };
            } else if let Some(slot) = w.ring.get_mut(index - 1) {
                *slot = Slot {
                    bloom: s.bloom,
                    capacity: s.capacity,
                    loaded: s.loaded,
                    entries: HashSet64::default(),
                };
            }
        }
        w.filter_bytes = filter_bytes;
        w.head = 0;
        w.oldest = view.oldest_bucket();
        w.layout_epoch = view.layout_epoch();
        w.journal_epoch = view.layout_epoch();
        w.default_iss = view.default_issuer().map(std::sync::Arc::from);
        w.cutoff_claims = view.cutoff_claims().to_vec();
        let window = crate::snapshot::layout_id(&w);
        if window != view.layout_id() {
            return Err(LayoutMismatch::Layout {
                snapshot: view.layout_id(),
                window,
            });
        }
        Ok(w)
    }

    /// Add a revocation the filter may already hold, as when re-adding a store's revocations
    /// to a window built with [`Window::from_snapshot`]. When the filter already answers
    /// positive for it, only its key is recorded (for a later resize) and the outcome is
    /// [`InsertOutcome::Covered`]: no bit, entry count or journal record changes, since a
    /// holder of the filter's snapshot already finds it. Otherwise it is
    /// [`Window::insert_hash`].
    pub fn restore_hash(&mut self, hash: KeyHash, exp: Option<u64>) -> InsertOutcome {
        let probe = self.probe;
        match self.locate(exp) {
            None => InsertOutcome::Expired,
            Some(Location::Ring(slot)) => match self.ring.get_mut(slot) {
                Some(s) if s.entries.contains(&hash.0) => InsertOutcome::Duplicate,
                Some(s) if s.bloom.contains_with(probe, hash) => {
                    s.entries.insert(hash.0);
                    InsertOutcome::Covered
                }
                _ => self.insert_hash(hash, exp),
            },
            Some(Location::Overflow(bucket)) => {
                let o = &mut self.overflow;
                if o.entries.contains(&(hash.0, bucket)) {
                    InsertOutcome::Duplicate
                } else if o.bloom.contains_with(probe, hash) {
                    o.entries.insert((hash.0, bucket));
                    InsertOutcome::Covered
                } else {
                    self.insert_hash(hash, exp)
                }
            }
        }
    }

    /// Set the issuer assumed for tokens without an `iss` claim (normalised with
    /// [`normalize_issuer`](crate::hash::normalize_issuer); an empty result means none). It
    /// travels in snapshots, so verifiers apply exactly the publisher's choice.
    pub fn set_default_issuer(&mut self, iss: Option<&str>) {
        self.default_iss = iss
            .map(crate::hash::normalize_issuer)
            .filter(|i| !i.is_empty())
            .map(std::sync::Arc::from);
    }

    /// The issuer assumed for tokens without `iss`, if any.
    pub fn default_issuer(&self) -> Option<&str> {
        self.default_iss.as_deref()
    }

    /// Record that cutoffs exist for `claim`, so snapshots list it and verifiers check it on
    /// every token that carries it. Returns whether the list changed; a change moves the
    /// layout epoch (the list is part of the layout, so no delta can bridge it). Call it
    /// before publishing the first cutoff on a claim.
    pub fn add_cutoff_claim(&mut self, claim: &str) -> Result<bool, crate::cutoff::ClaimNameError> {
        use crate::cutoff::{ClaimNameError, MAX_CLAIM_NAME_BYTES, MAX_SNAPSHOT_CLAIMS};
        if claim.is_empty() || claim.len() > MAX_CLAIM_NAME_BYTES {
            return Err(ClaimNameError::Length { len: claim.len() });
        }
        let Err(at) = self.cutoff_claims.binary_search_by(|c| (**c).cmp(claim)) else {
            return Ok(false);
        };
        if self.cutoff_claims.len() >= MAX_SNAPSHOT_CLAIMS {
            return Err(ClaimNameError::TooMany {
                name: claim.to_owned(),
            });
        }
        self.cutoff_claims.insert(at, Box::from(claim));
        self.bump_epoch();
        Ok(true)
    }

    /// Replace the list of claims cutoffs exist for (a publisher rebasing its lineage drops
    /// claims whose cutoffs all expired). Moves the layout epoch when the list changes.
    pub fn set_cutoff_claims<S: AsRef<str>>(
        &mut self,
        claims: &[S],
    ) -> Result<(), crate::cutoff::ClaimNameError> {
        use crate::cutoff::{ClaimNameError, MAX_CLAIM_NAME_BYTES, MAX_SNAPSHOT_CLAIMS};
        let mut list: Vec<Box<str>> = Vec::with_capacity(claims.len());
        for c in claims {
            let c = c.as_ref();
            if c.is_empty() || c.len() > MAX_CLAIM_NAME_BYTES {
                return Err(ClaimNameError::Length { len: c.len() });
            }
            list.push(Box::from(c));
        }
        list.sort();
        list.dedup();
        if list.len() > MAX_SNAPSHOT_CLAIMS {
            let name = list.get(MAX_SNAPSHOT_CLAIMS).map(|c| c.to_string());
            return Err(ClaimNameError::TooMany {
                name: name.unwrap_or_default(),
            });
        }
        if list != self.cutoff_claims {
            self.cutoff_claims = list;
            self.bump_epoch();
        }
        Ok(())
    }

    /// The claims cutoffs exist for, sorted.
    pub fn cutoff_claims(&self) -> &[Box<str>] {
        &self.cutoff_claims
    }

    /// The deployment's time bounds (from the configuration).
    pub fn bounds(&self) -> crate::bounds::Bounds {
        self.config.bounds()
    }

    /// The configuration.
    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// The derived geometry (ring length, per-block load target).
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The keyed hasher; hash a key once and use the `_hash` methods to reuse it.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Absolute number of the oldest live bucket (`exp / bucket_width`).
    pub fn oldest_bucket(&self) -> u64 {
        self.oldest
    }

    /// Bumped whenever bit positions can no longer be expressed as "the previous bits plus new
    /// insertions": on rotation, on a bucket growing, on [`Window::fit_to_entries`]. Deltas can
    /// only bridge generations of one layout epoch.
    pub fn layout_epoch(&self) -> u64 {
        self.layout_epoch
    }

    /// Where `exp` belongs right now.
    #[inline(always)]
    fn locate(&self, exp: Option<u64>) -> Option<Location> {
        let Some(exp) = exp else {
            return Some(Location::Overflow(None));
        };
        let b = self.div.bucket(exp);
        if b < self.oldest {
            return None;
        }
        let d = b - self.oldest;
        let n = self.ring.len() as u64;
        if d >= n {
            return Some(Location::Overflow(Some(b)));
        }
        // d < n, so one conditional subtraction wraps the slot; no division.
        let mut slot = self.head + d as usize;
        if slot >= self.ring.len() {
            slot -= self.ring.len();
        }
        Some(Location::Ring(slot))
    }

    /// Check a token's `jti` with its `exp` (unix seconds; `None` if the token has none).
    ///
    /// Constant time, no allocation, never panics.
    #[inline]
    pub fn check(&self, key: impl AsRef<[u8]>, exp: Option<u64>) -> Verdict {
        self.check_hash(self.hasher.hash(key), exp)
    }

    /// [`Window::check`] for a key already hashed with [`Window::hasher`].
    #[inline(always)]
    pub fn check_hash(&self, hash: KeyHash, exp: Option<u64>) -> Verdict {
        #[cfg(target_arch = "x86_64")]
        if self.probe.is_avx2() {
            // SAFETY: a window holds the AVX2 probe only when `Probe::detect` found AVX2 on
            // this CPU, so the AVX2 code runs on a CPU that has it.
            #[allow(unsafe_code)]
            return unsafe { self.check_hash_avx2(hash, exp) };
        }
        self.check_hash_with(hash, exp, |block, hash| {
            self.probe.contains(BlockRef::Words(block), hash)
        })
    }

    /// The whole check compiled with AVX2, so the probe inlines (see `SnapshotView`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn check_hash_avx2(&self, hash: KeyHash, exp: Option<u64>) -> Verdict {
        // The closure inherits this function's target features, so the probe inlines.
        self.check_hash_with(hash, exp, |block, hash| {
            bloom::probe::avx2_contains_words(block, hash)
        })
    }

    /// The check, with `contains` testing the chosen block.
    #[inline(always)]
    fn check_hash_with(
        &self,
        hash: KeyHash,
        exp: Option<u64>,
        contains: impl Fn(&[u64; bloom::WORDS], KeyHash) -> bool,
    ) -> Verdict {
        let bloom = match self.locate(exp) {
            None => return Verdict::Expired,
            Some(Location::Overflow(_)) => &self.overflow.bloom,
            Some(Location::Ring(slot)) => match self.ring.get(slot) {
                Some(s) => &s.bloom,
                // Unreachable by construction; answering "maybe" keeps it fail-safe.
                None => return Verdict::MaybeRevoked,
            },
        };
        match bloom.block_of(hash) {
            Some(block) if contains(block, hash) => Verdict::MaybeRevoked,
            _ => Verdict::Clear,
        }
    }

    /// Revoke a token's `jti` until its `exp`.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, exp: Option<u64>) -> InsertOutcome {
        let hash = self.hasher.hash(key);
        self.insert_hash(hash, exp)
    }

    /// [`Window::insert`] for a key already hashed with [`Window::hasher`].
    pub fn insert_hash(&mut self, hash: KeyHash, exp: Option<u64>) -> InsertOutcome {
        match self.locate(exp) {
            None => InsertOutcome::Expired,
            Some(Location::Ring(slot)) => self.insert_ring(slot, hash),
            Some(Location::Overflow(bucket)) => {
                if !self.overflow.entries.insert((hash.0, bucket)) {
                    return InsertOutcome::Duplicate;
                }
                let growth = self.growth_for(
                    self.overflow.capacity,
                    self.overflow.loaded,
                    self.overflow.bloom.nblocks(),
                );
                if let Some((capacity, blocks)) = growth {
                    self.rebuild_overflow(capacity, blocks);
                } else {
                    self.overflow.bloom.insert(hash);
                    self.overflow.loaded += 1;
                }
                // A rebuild includes the new entry, since it was added to `entries` first.
                self.record(BucketId::Overflow, hash);
                InsertOutcome::Inserted
            }
        }
    }

    fn insert_ring(&mut self, slot: usize, hash: KeyHash) -> InsertOutcome {
        let Some(s) = self.ring.get(slot) else {
            return InsertOutcome::Duplicate;
        };
        if s.entries.contains(&hash.0) {
            return InsertOutcome::Duplicate;
        }
        let growth = self.growth_for(s.capacity, s.loaded, s.bloom.nblocks());
        let filter_bytes = &mut self.filter_bytes;
        let Some(s) = self.ring.get_mut(slot) else {
            return InsertOutcome::Duplicate;
        };
        s.entries.insert(hash.0);
        match growth {
            Some((capacity, blocks)) => {
                *filter_bytes = filter_bytes.saturating_sub(bloom_bytes(&s.bloom))
                    + u64::from(blocks) * bloom::BLOCK_BYTES as u64;
                s.bloom = Bloom::with_blocks(blocks);
                for &h in &s.entries {
                    s.bloom.insert(KeyHash(h));
                }
                s.capacity = capacity;
                s.loaded = s.entries.len() as u64;
                self.bump_epoch();
            }
            None => {
                s.bloom.insert(hash);
                s.loaded += 1;
            }
        }
        let n = self.ring.len();
        // The slot's distance from the head is its bucket's distance from `oldest`.
        let d = (slot + n - self.head) % n;
        self.record(BucketId::Expiry(self.oldest + d as u64), hash);
        InsertOutcome::Inserted
    }

    /// Move to a new layout epoch; journaled insertions of the old one are useless to a delta.
    fn bump_epoch(&mut self) {
        self.layout_epoch += 1;
        if let Some(j) = &mut self.journal {
            j.clear();
        }
    }

    /// Journal one new insertion, unless the journal is off or already invalidated.
    fn record(&mut self, bucket: BucketId, hash: KeyHash) {
        if self.layout_epoch != self.journal_epoch {
            return;
        }
        if let Some(j) = &mut self.journal {
            j.push((bucket, hash));
        }
    }

    /// Start recording new insertions for deltas (see [`Window::take_journal`]). Off by default
    /// so a window nobody publishes deltas from does not keep a second copy of its hashes.
    pub fn enable_journal(&mut self) {
        if self.journal.is_none() {
            self.journal = Some(Vec::new());
            self.journal_epoch = self.layout_epoch;
        }
    }

    /// The insertions since the previous call (or since [`Window::enable_journal`]), and
    /// whether the layout changed meanwhile; starts a new journal. Take it right after encoding
    /// a snapshot, so the next take describes exactly the step to the next generation.
    /// Returns an empty, unchanged journal when journaling is off.
    pub fn take_journal(&mut self) -> Journal {
        let layout_changed = self.layout_epoch != self.journal_epoch;
        self.journal_epoch = self.layout_epoch;
        let entries = match &mut self.journal {
            Some(j) if !layout_changed => std::mem::take(j),
            Some(j) => {
                j.clear();
                Vec::new()
            }
            None => Vec::new(),
        };
        Journal {
            entries,
            layout_changed,
        }
    }

    /// If a slot at `loaded` keys of `capacity` must grow to take one more, its new capacity
    /// and block count. Growth doubles, within `max_bytes`; a slot that cannot grow saturates
    /// (more false positives, never a false negative). A slot of zero blocks always gets one
    /// block, so no key is ever dropped.
    fn growth_for(&self, capacity: u64, loaded: u64, nblocks: u32) -> Option<(u64, u32)> {
        if loaded < capacity && nblocks > 0 {
            return None;
        }
        let want = capacity
            .saturating_mul(2)
            .max(loaded.saturating_add(1))
            .max(self.config.expected());
        let mut blocks = bloom::blocks_for(want, self.geo.max_load).min(u64::from(u32::MAX));
        let current = u64::from(nblocks) * bloom::BLOCK_BYTES as u64;
        let after = self.filter_bytes.saturating_sub(current) + blocks * bloom::BLOCK_BYTES as u64;
        if after > self.config.max_bytes_cap() {
            if nblocks > 0 {
                return None;
            }
            blocks = 1;
        }
        Some((
            want.max(bloom::entries_for(blocks, self.geo.max_load)),
            blocks as u32,
        ))
    }

    fn rebuild_overflow(&mut self, capacity: u64, blocks: u32) {
        self.filter_bytes = self
            .filter_bytes
            .saturating_sub(bloom_bytes(&self.overflow.bloom))
            + u64::from(blocks) * bloom::BLOCK_BYTES as u64;
        let mut b = Bloom::with_blocks(blocks);
        for &(h, _) in &self.overflow.entries {
            b.insert(KeyHash(h));
        }
        self.overflow.bloom = b;
        self.overflow.capacity = capacity;
        self.overflow.loaded = self.overflow.entries.len() as u64;
        self.bump_epoch();
    }

    /// Move the window to unix time `now`: drop buckets whose span ended more than `leeway`
    /// ago, reuse them for the far end, and move overflow revocations the ring now reaches into
    /// their buckets. A `now` at or before the current position changes nothing: a dropped
    /// bucket is never re-opened, even when the clock goes back. Cost is bounded by the ring
    /// length plus the overflow size, however far `now` jumps.
    pub fn advance(&mut self, now: u64) {
        let target = oldest_at(&self.geo, now);
        if target <= self.oldest {
            return;
        }
        let n = self.ring.len();
        let shift = target - self.oldest;
        let reuse = if shift >= n as u64 { n } else { shift as usize };
        for j in 0..reuse {
            let slot = (self.head + j) % n;
            self.reset_slot(slot);
        }
        self.head = (self.head + (shift % n as u64) as usize) % n;
        self.oldest = target;
        self.bump_epoch();

        // Re-bucket overflow entries the ring now covers; forget those already expired.
        // Same test as `locate`, so an entry leaves exactly when checks stop looking for it in
        // the overflow bucket (written as a difference: `oldest + n` can saturate).
        let leaving: Vec<(u64, Option<u64>)> = self
            .overflow
            .entries
            .iter()
            .filter(
                |(_, b)| matches!(b, Some(b) if *b < self.oldest || *b - self.oldest < n as u64),
            )
            .copied()
            .collect();
        if leaving.is_empty() {
            return;
        }
        for e in &leaving {
            self.overflow.entries.remove(e);
        }
        for (h, b) in leaving {
            if let Some(Location::Ring(slot)) = self.locate(b.map(|b| b * self.geo.width)) {
                self.insert_ring(slot, KeyHash(h));
            }
        }
        let (capacity, blocks) = (self.overflow.capacity, self.overflow.bloom.nblocks());
        self.rebuild_overflow(capacity, blocks);
    }

    fn reset_slot(&mut self, slot: usize) {
        let initial = self.geo.initial_blocks;
        let expected = initial_capacity(&self.geo, &self.config);
        let Some(s) = self.ring.get_mut(slot) else {
            return;
        };
        if s.bloom.nblocks() == initial {
            s.bloom.clear();
        } else {
            self.filter_bytes = self.filter_bytes.saturating_sub(bloom_bytes(&s.bloom))
                + u64::from(initial) * bloom::BLOCK_BYTES as u64;
            s.bloom = Bloom::with_blocks(initial);
        }
        s.entries = HashSet64::default();
        s.capacity = expected;
        s.loaded = 0;
    }

    /// Resize every bucket to what its entries need, with `headroom` (e.g. `0.25`) for entries
    /// still to come; `0.0` gives the smallest filter (a one-shot build). Empty buckets shrink
    /// to zero blocks and grow again on their first insert. Bumps the layout epoch.
    pub fn fit_to_entries(&mut self, headroom: f64) {
        self.refit(headroom, 0);
    }

    /// Like [`Window::fit_to_entries`], but no bucket is sized for fewer than `min_capacity`
    /// entries: buckets that grew in a burst shrink back to what they hold (plus headroom)
    /// while quiet buckets keep room for their first revocations to travel as deltas.
    pub fn refit(&mut self, headroom: f64, min_capacity: u64) {
        let headroom = if headroom.is_finite() && headroom > 0.0 {
            headroom
        } else {
            0.0
        };
        self.refit_with(|_, entries| {
            let capacity = ((entries as f64) * (1.0 + headroom)).ceil() as u64;
            capacity.max(min_capacity)
        });
    }

    /// Resize every bucket to the capacity `capacity(bucket, entries)` returns for it (never
    /// fewer than the entries it holds): a publisher gives each bucket room for the
    /// revocations it expects there before its next full snapshot. The bucket gets the whole
    /// blocks that capacity needs at the target rate, and takes as many revocations as they
    /// hold before it grows (a little more than asked, for free). A bucket sized for zero
    /// entries gets no blocks and grows on its first insert. Bumps the layout epoch.
    pub fn refit_with(&mut self, mut capacity: impl FnMut(BucketId, u64) -> u64) {
        let max_load = self.geo.max_load;
        let mut size = |id: BucketId, entries: u64| {
            let capacity = capacity(id, entries).max(entries);
            let blocks = bloom::blocks_for(capacity, max_load).min(u64::from(u32::MAX));
            // Whole blocks hold more than asked for: that room costs no bits, so it is counted
            // before the bucket grows (and a full snapshot replaces deltas).
            let capacity = capacity.max(bloom::entries_for(blocks, max_load));
            (capacity, blocks as u32)
        };
        let n = self.ring.len();
        let mut bytes = 0u64;
        for d in 0..n {
            let id = BucketId::Expiry(self.oldest + d as u64);
            let Some(s) = self.ring.get_mut((self.head + d) % n) else {
                continue;
            };
            let (capacity, blocks) = size(id, s.entries.len() as u64);
            s.bloom = Bloom::with_blocks(blocks);
            for &h in &s.entries {
                s.bloom.insert(KeyHash(h));
            }
            s.capacity = capacity;
            s.loaded = s.entries.len() as u64;
            bytes += bloom_bytes(&s.bloom);
        }
        let (capacity, blocks) = size(BucketId::Overflow, self.overflow.entries.len() as u64);
        // rebuild_overflow swaps the overflow's old bytes for its new ones.
        self.filter_bytes = bytes + bloom_bytes(&self.overflow.bloom);
        self.rebuild_overflow(capacity, blocks);
    }

    /// Distinct revocations held (all buckets).
    pub fn entries(&self) -> u64 {
        self.ring
            .iter()
            .map(|s| s.entries.len() as u64)
            .sum::<u64>()
            + self.overflow.entries.len() as u64
    }

    /// Bytes of Bloom filter bits: what a snapshot ships.
    pub fn filter_bytes(&self) -> u64 {
        self.filter_bytes
    }

    /// Filter bits per revocation held (`None` when empty).
    pub fn bits_per_entry(&self) -> Option<f64> {
        let n = self.entries();
        (n > 0).then(|| self.filter_bytes as f64 * 8.0 / n as f64)
    }

    /// Approximate heap bytes held: filter bits plus the key hashes kept for resizing.
    pub fn memory_bytes(&self) -> u64 {
        let ring_sets: u64 = self
            .ring
            .iter()
            .map(|s| s.entries.capacity() as u64 * 9)
            .sum();
        let overflow_set = self.overflow.entries.capacity() as u64 * 25;
        self.filter_bytes
            + ring_sets
            + overflow_set
            + (self.ring.capacity() * std::mem::size_of::<Slot<HashSet64>>()) as u64
    }

    /// Figures for every bucket: the overflow bucket first, then the ring from oldest to
    /// newest.
    pub fn bucket_stats(&self) -> Vec<BucketStats> {
        self.buckets()
            .map(|(id, bloom, entries)| BucketStats {
                id,
                exp_range: match id {
                    BucketId::Overflow => None,
                    BucketId::Expiry(b) => {
                        let start = b.saturating_mul(self.geo.width);
                        Some((start, start.saturating_add(self.geo.width)))
                    }
                },
                entries,
                bits: bloom.bits(),
                fill_ratio: bloom.fill_ratio(),
                estimated_fp: bloom.estimated_fp(),
            })
            .collect()
    }

    /// Every bucket's id, filter and entry count, in directory order: the overflow bucket,
    /// then the ring from oldest to newest. The count is that of the revocations whose bits
    /// the filter holds: the distinct revocations in the bucket, except in a window built
    /// with [`Window::from_snapshot`], where it is the snapshot's count plus the revocations
    /// added since that were not already [`InsertOutcome::Covered`] (what a holder of the
    /// snapshot counts after applying the delta), until the bucket is next rebuilt.
    pub fn buckets(&self) -> impl Iterator<Item = (BucketId, &Bloom, u64)> + '_ {
        let n = self.ring.len();
        let overflow = std::iter::once((
            BucketId::Overflow,
            &self.overflow.bloom,
            self.overflow.loaded,
        ));
        overflow.chain((0..n).filter_map(move |d| {
            let s = self.ring.get((self.head + d) % n)?;
            Some((BucketId::Expiry(self.oldest + d as u64), &s.bloom, s.loaded))
        }))
    }
}

#[derive(Debug, Clone, Copy)]
enum Location {
    /// In the overflow bucket, with the expiry bucket number it belongs to if it has one.
    Overflow(Option<u64>),
    Ring(usize),
}

/// The oldest live bucket at unix time `now`: `floor((now - leeway) / width)`, except that it
/// never exceeds `floor(u64::MAX / width) - buckets`, so every ring bucket number stays below
/// the largest bucket an `exp` can name. Only clocks hundreds of billions of years ahead reach
/// the clamp; there, the last buckets' revocations stay in the overflow bucket instead of
/// expiring, which errs on the side of remembering.
fn oldest_at(geo: &Geometry, now: u64) -> u64 {
    let max_oldest = (u64::MAX / geo.width).saturating_sub(u64::from(geo.buckets));
    (now.saturating_sub(geo.leeway) / geo.width).min(max_oldest)
}

/// What a fresh bucket takes before it grows: the configured expectation, or more when its
/// whole initial blocks hold more.
fn initial_capacity(geo: &Geometry, config: &WindowConfig) -> u64 {
    config.expected().max(bloom::entries_for(
        u64::from(geo.initial_blocks),
        geo.max_load,
    ))
}

fn bloom_bytes(b: &Bloom) -> u64 {
    u64::from(b.nblocks()) * bloom::BLOCK_BYTES as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{encode_delta, encode_signed_delta, DeltaView};
    use crate::snapshot::{encode_to_vec, OpenOptions, SnapshotMeta};
    use crate::CutoffSet;
    use proptest::prelude::*;
    use std::time::Duration;

    const NOW: u64 = 1_767_225_600;

    fn config() -> WindowConfig {
        WindowConfig::default()
            .bucket_width(Duration::from_secs(60))
            .horizon(Duration::from_secs(600))
            .expected_per_bucket(64)
    }

    fn open(bytes: Vec<u8>) -> SnapshotView<crate::snapshot::AlignedBytes> {
        SnapshotView::open_owned(bytes, &OpenOptions::new().skip_signature_check()).unwrap()
    }

    /// A key's `exp` from a small code: before the window (expired), in the ring, past its far
    /// end (overflow), or none (overflow).
    fn exp_of(code: u16) -> Option<u64> {
        match code % 8 {
            0 => None,
            1 => Some(NOW - 3_600),
            2 => Some(NOW + 3_600 + u64::from(code)),
            _ => Some(NOW + u64::from(code) % 660),
        }
    }

    #[test]
    fn a_window_from_a_snapshot_encodes_that_snapshot() {
        let mut old = Window::with_seed(config(), NOW, 9).unwrap();
        old.set_cutoff_claims(&["sid"]).unwrap();
        old.set_default_issuer(Some("https://idp"));
        for i in 0..50u16 {
            old.insert(format!("k{i}"), exp_of(i));
        }
        old.refit(0.5, 10);
        let meta = SnapshotMeta::first(NOW);
        let bytes = encode_to_vec(&old, &CutoffSet::new(), &meta, None).unwrap();
        let view = open(bytes.clone());
        let w = Window::from_snapshot(config(), &view).unwrap();
        let again = encode_to_vec(&w, &CutoffSet::new(), &meta, None).unwrap();
        assert_eq!(again, bytes);
        assert_eq!(w.layout_epoch(), old.layout_epoch());
        // Nothing was restored yet: the window holds bits, no keys.
        assert_eq!(w.entries(), 0);
        assert_eq!(w.check("k3", exp_of(3)), Verdict::MaybeRevoked);
    }

    #[test]
    fn another_configuration_is_refused() {
        let old = Window::with_seed(config(), NOW, 9).unwrap();
        let bytes = encode_to_vec(&old, &CutoffSet::new(), &SnapshotMeta::first(NOW), None);
        let view = open(bytes.unwrap());
        let wider = config().horizon(Duration::from_secs(1200));
        assert!(matches!(
            Window::from_snapshot(wider, &view),
            Err(LayoutMismatch::Buckets { .. })
        ));
        let looser = config().fp_rate(0.01);
        assert!(matches!(
            Window::from_snapshot(looser, &view),
            Err(LayoutMismatch::Layout { .. })
        ));
    }

    #[test]
    fn a_bucket_fills_its_whole_blocks_before_it_grows() {
        let mut w = Window::with_seed(config(), NOW, 5).unwrap();
        let exp = Some(NOW + 100);
        // Room for 40 asked: two blocks, which hold 65 at 0.1 %.
        w.refit_with(|id, _| {
            if matches!(id, BucketId::Expiry(_)) {
                40
            } else {
                0
            }
        });
        let held = bloom::entries_for(2, w.geometry().max_load);
        assert!(held > 40, "{held}");
        w.enable_journal();
        for i in 0..held {
            w.insert(format!("k{i}"), exp);
        }
        // Every one of them fitted: no layout change, so verifiers keep taking deltas, and the
        // bucket is still within the target rate's load.
        assert!(!w.take_journal().layout_changed);
        let bucket = BucketId::Expiry((NOW + 100) / w.geometry().width);
        let (_, bloom, n) = w.buckets().find(|(id, _, _)| *id == bucket).unwrap();
        assert_eq!((n, bloom.nblocks()), (held, 2));
        assert!(n as f64 / 2.0 <= w.geometry().max_load);
        // One more grows the bucket.
        w.insert("one more", exp);
        assert!(w.take_journal().layout_changed);
    }

    #[test]
    fn restore_journals_only_what_the_snapshot_misses() {
        let mut old = Window::with_seed(config(), NOW, 3).unwrap();
        old.insert("a", Some(NOW + 100));
        let view =
            open(encode_to_vec(&old, &CutoffSet::new(), &SnapshotMeta::first(NOW), None).unwrap());
        let mut w = Window::from_snapshot(config(), &view).unwrap();
        w.enable_journal();
        let h = *w.hasher();
        assert_eq!(
            w.restore_hash(h.hash("a"), Some(NOW + 100)),
            InsertOutcome::Covered
        );
        assert_eq!(
            w.restore_hash(h.hash("a"), Some(NOW + 100)),
            InsertOutcome::Duplicate
        );
        assert_eq!(
            w.restore_hash(h.hash("b"), Some(NOW + 100)),
            InsertOutcome::Inserted
        );
        // The control: "b" is what a holder of the old snapshot would miss.
        assert_eq!(view.check("b", Some(NOW + 100)), Verdict::Clear);
        let j = w.take_journal();
        assert!(!j.layout_changed);
        assert_eq!(j.entries.len(), 1);
        assert_eq!(j.entries[0].1, h.hash("b"));
        assert_eq!(w.entries(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

        /// The old builder's snapshot, a new builder continuing it from the store (part of the
        /// old keys, maybe pruned, plus new ones), the delta between them: applied to the old
        /// snapshot it gives the new builder's full snapshot byte for byte, and every restored
        /// key checks positive (or expired) in it. When the layout had to change (a bucket
        /// outgrew its blocks), the full snapshot holds every key instead.
        #[test]
        fn a_continued_lineage_bridges_with_a_delta(
            seed in any::<u64>(),
            old in proptest::collection::vec((any::<u32>(), any::<u16>()), 0..150),
            new in proptest::collection::vec((any::<u32>(), any::<u16>()), 0..150),
            kept in any::<u64>(),
            room in 0u64..200,
            signed in any::<bool>(),
            later in 0u64..90,
        ) {
            let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
            let signer = signed.then_some(&key);
            let mut w0 = Window::with_seed(config(), NOW, seed).unwrap();
            for &(k, code) in &old {
                w0.insert(format!("o{k}"), exp_of(code));
            }
            w0.refit(0.0, room);
            let m0 = SnapshotMeta::first(NOW);
            let v0 = open(encode_to_vec(&w0, &CutoffSet::new(), &m0, signer).unwrap());

            // The store: the old keys but those pruned meanwhile, and new ones.
            let store: Vec<(String, Option<u64>)> = old
                .iter()
                .enumerate()
                .filter(|(i, _)| (kept >> (i % 64)) & 1 == 1)
                .map(|(_, &(k, code))| (format!("o{k}"), exp_of(code)))
                .chain(new.iter().map(|&(k, code)| (format!("n{k}"), exp_of(code))))
                .collect();
            let mut w1 = Window::from_snapshot(config(), &v0).unwrap();
            w1.enable_journal();
            let h = *w1.hasher();
            for (k, exp) in &store {
                let before = v0.check(k, *exp);
                let outcome = w1.restore_hash(h.hash(k), *exp);
                // Only what the old snapshot answers clear can need a record (until a bucket
                // grows: it is rebuilt from the keys restored so far, without the old bits).
                if outcome == InsertOutcome::Inserted && w1.layout_epoch() == v0.layout_epoch() {
                    prop_assert_eq!(before, Verdict::Clear);
                }
            }
            w1.advance(NOW + later);
            let journal = w1.take_journal();
            let m1 = SnapshotMeta { generation: 1_000, parent: m0.generation, created_at: NOW + later, coverage: NOW + later };
            let full = encode_to_vec(&w1, &CutoffSet::new(), &m1, signer).unwrap();
            let result = if journal.layout_changed {
                open(full)
            } else {
                let mut delta = Vec::new();
                match signer {
                    Some(k) => encode_signed_delta(&w1, &journal, &[], &m1, k, &full, &mut delta),
                    None => encode_delta(&w1, &journal, &[], &m1, None, &mut delta),
                }
                .unwrap();
                let opts = if signed {
                    OpenOptions::new().verifying_key(key.verifying_key())
                } else {
                    OpenOptions::new()
                };
                let d = DeltaView::open(&delta, &opts).unwrap();
                let applied = v0.apply_delta(&d).unwrap();
                prop_assert_eq!(applied.as_bytes(), &full[..]);
                if signed {
                    // The copy reopens under the publisher's key.
                    let opts = OpenOptions::new().verifying_key(key.verifying_key()).require_signature(true);
                    prop_assert!(SnapshotView::open(applied.as_bytes(), &opts).is_ok());
                }
                applied
            };
            for (k, exp) in &store {
                prop_assert_ne!(result.check(k, *exp), Verdict::Clear, "{} {:?}", k, exp);
            }
        }
    }
}
