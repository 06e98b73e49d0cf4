//! Where the verifier reads revocation state from.
//!
//! [`RevocationState`] is one consistent, read-only view: a snapshot, or an in-memory window
//! with its cutoffs. [`StateSource`] hands out the current view; a hot-swap handle replaces it
//! behind the verifier's back. A verification asks the source once and does all its work
//! against that one view, so a swap can never pair a key hashed under one snapshot's seed with
//! another snapshot's bits (which could turn a revoked token into a false "clear").

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::cutoff::{ClaimHasher, CutoffKey, CutoffSet};
use crate::hash::{KeyHash, KeyHasher};
use crate::swap::{SnapshotHandle, StalenessPolicy};
use crate::window::{Verdict, Window};

/// One consistent view of revocation state.
pub trait RevocationState: Send + Sync {
    /// The keyed hasher for `(iss, jti)` keys and cutoff fingerprints of this state.
    fn hasher(&self) -> KeyHasher;
    /// Check a key hashed with [`RevocationState::hasher`] for a token expiring at `exp`.
    fn check_hash(&self, hash: KeyHash, exp: Option<u64>) -> Verdict;
    /// The cutoff time for a claim fingerprint, if there is one.
    fn cutoff(&self, key: CutoffKey) -> Option<u64>;
    /// Whether any cutoff exists; lets the verifier skip fingerprinting claims when none do.
    fn has_cutoffs(&self) -> bool {
        true
    }
    /// The claims the state holds cutoffs for (the verifier checks each one a token carries,
    /// besides those it is configured with); `jti` among them means revocations made without
    /// `exp`. Empty when the state does not say.
    fn cutoff_claims(&self) -> &[Box<str>] {
        &[]
    }
    /// The fingerprint space of `claim` under issuer `iss`: a cutoff key is
    /// `claim_hasher(iss, claim).key(value)`, the same as `CutoffKey::new(&hasher, iss, claim,
    /// value)`. Deriving a space costs two xxh3 passes; a snapshot view answers the claims it
    /// lists, under no issuer and under its default issuer, from spaces derived once at open.
    fn claim_hasher(&self, iss: Option<&str>, claim: &str) -> ClaimHasher {
        ClaimHasher::new(&self.hasher(), iss.map(str::as_bytes), claim)
    }
    /// Generation number (monotonic per publisher lineage).
    fn generation(&self) -> u64;
    /// When the state was produced, unix seconds: what staleness is measured from.
    fn created_at(&self) -> u64;
    /// The deployment's time bounds the state vouches within.
    fn bounds(&self) -> crate::bounds::Bounds;
    /// The issuer assumed for tokens without `iss`, if the publisher names one.
    fn default_issuer(&self) -> Option<&str> {
        None
    }
    /// Whether the filter is keyed on the `jti` alone (otherwise also on `(iss, jti)` for
    /// revocations that named an issuer: version 1 snapshots).
    fn keys_on_jti_alone(&self) -> bool {
        true
    }
    /// The filter's verdict for a token's `jti`, issued by `iss`, expiring at `exp`: the one
    /// place that knows how a revocation is keyed. Version 2 states key every revocation on
    /// the `jti` alone; a version 1 file keyed a revocation that named an issuer on
    /// `(iss, jti)`, so when the `jti` alone is clear the issued key is checked too.
    fn check_token(&self, jti: &str, iss: Option<&str>, exp: Option<u64>) -> Verdict {
        let hasher = self.hasher();
        let verdict = self.check_hash(hasher.hash(jti), exp);
        match iss {
            Some(iss) if verdict == Verdict::Clear && !self.keys_on_jti_alone() => {
                self.check_hash(hasher.hash_issued(iss, jti), exp)
            }
            _ => verdict,
        }
    }
}

/// Hands out the current [`RevocationState`].
///
/// The callback form lets a lock-free handle lend its current view without reference
/// counting; `None` means no state has been loaded yet.
pub trait StateSource: Send + Sync {
    /// Call `f` with the current state (or `None`).
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>));

    /// The source's own staleness setting (maximum age, policy), if it carries one; the
    /// verifier uses it unless configured otherwise.
    fn staleness(&self) -> Option<(Option<Duration>, StalenessPolicy)> {
        None
    }
}

/// An in-memory revocation state: a [`Window`] and its [`CutoffSet`]. For tests, for a
/// publisher that verifies its own tokens, and for applications that build state in process.
#[derive(Debug, Clone)]
pub struct MemoryState {
    /// The revoked token ids.
    pub window: Window,
    /// The claim cutoffs, fingerprinted with the window's hasher.
    pub cutoffs: CutoffSet,
    /// Generation number reported to caches and metrics.
    pub generation: u64,
    /// Creation time, unix seconds (for staleness).
    pub created_at: u64,
}

impl MemoryState {
    /// A state from its parts.
    pub fn new(window: Window, cutoffs: CutoffSet, generation: u64, created_at: u64) -> Self {
        Self {
            window,
            cutoffs,
            generation,
            created_at,
        }
    }
}

impl RevocationState for MemoryState {
    fn hasher(&self) -> KeyHasher {
        *self.window.hasher()
    }
    fn check_hash(&self, hash: KeyHash, exp: Option<u64>) -> Verdict {
        self.window.check_hash(hash, exp)
    }
    fn cutoff(&self, key: CutoffKey) -> Option<u64> {
        self.cutoffs.get(key)
    }
    fn has_cutoffs(&self) -> bool {
        !self.cutoffs.is_empty()
    }
    fn cutoff_claims(&self) -> &[Box<str>] {
        self.window.cutoff_claims()
    }
    fn generation(&self) -> u64 {
        self.generation
    }
    fn created_at(&self) -> u64 {
        self.created_at
    }
    fn bounds(&self) -> crate::bounds::Bounds {
        self.window.bounds()
    }
    fn default_issuer(&self) -> Option<&str> {
        self.window.default_issuer()
    }
}

impl StateSource for MemoryState {
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>)) {
        f(Some(self))
    }
}

/// Swappable state: `store` a new `Arc<T>` and the next verification sees it.
impl<T: RevocationState + 'static> StateSource for ArcSwap<T> {
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>)) {
        let guard = self.load();
        f(Some(&**guard))
    }
}

/// Swappable state that may be absent (nothing loaded yet).
impl<T: RevocationState + 'static> StateSource for ArcSwapOption<T> {
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>)) {
        let guard = self.load();
        match &*guard {
            Some(s) => f(Some(&**s)),
            None => f(None),
        }
    }
}

impl<T: StateSource + ?Sized> StateSource for Arc<T> {
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>)) {
        (**self).with_current(f)
    }
    fn staleness(&self) -> Option<(Option<Duration>, StalenessPolicy)> {
        (**self).staleness()
    }
}

/// No revocation state at all: every token is unchecked. Useful to measure validation alone,
/// or with [`StalenessPolicy::FailOpen`](super::StalenessPolicy::FailOpen) during bring-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoState;

impl StateSource for NoState {
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>)) {
        f(None)
    }
}

/// A validated snapshot is a revocation state; keep it in an `ArcSwapOption` (or the
/// snapshot module's hot-swap handle) to replace it while verifiers run.
impl<B: AsRef<[u8]> + Send + Sync> RevocationState for crate::snapshot::SnapshotView<B> {
    fn hasher(&self) -> KeyHasher {
        crate::snapshot::SnapshotView::hasher(self)
    }
    fn check_hash(&self, hash: KeyHash, exp: Option<u64>) -> Verdict {
        crate::snapshot::SnapshotView::check_hash(self, hash, exp)
    }
    fn cutoff(&self, key: CutoffKey) -> Option<u64> {
        crate::snapshot::SnapshotView::cutoff(self, key)
    }
    fn has_cutoffs(&self) -> bool {
        !self.cutoff_table().is_empty()
    }
    fn cutoff_claims(&self) -> &[Box<str>] {
        crate::snapshot::SnapshotView::cutoff_claims(self)
    }
    fn claim_hasher(&self, iss: Option<&str>, claim: &str) -> ClaimHasher {
        crate::snapshot::SnapshotView::claim_hasher(self, iss, claim)
    }
    fn generation(&self) -> u64 {
        crate::snapshot::SnapshotView::generation(self)
    }
    fn created_at(&self) -> u64 {
        crate::snapshot::SnapshotView::created_at(self)
    }
    fn bounds(&self) -> crate::bounds::Bounds {
        crate::snapshot::SnapshotView::bounds(self)
    }
    fn default_issuer(&self) -> Option<&str> {
        crate::snapshot::SnapshotView::default_issuer(self)
    }
    fn keys_on_jti_alone(&self) -> bool {
        crate::snapshot::SnapshotView::keys_on_jti_alone(self)
    }
}

impl<B: AsRef<[u8]> + Send + Sync> StateSource for crate::snapshot::SnapshotView<B> {
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>)) {
        f(Some(self))
    }
}

/// The hot-swap handle: each verification works on the snapshot current when it started
/// (kept alive by the handle's `Arc` even if a newer one is swapped in meanwhile), and the
/// handle's maximum age and policy become the verifier's.
impl<B: AsRef<[u8]> + Send + Sync + 'static> StateSource for SnapshotHandle<B> {
    fn with_current(&self, f: &mut dyn FnMut(Option<&dyn RevocationState>)) {
        match self.current() {
            Some(view) => f(Some(&*view)),
            None => f(None),
        }
    }
    fn staleness(&self) -> Option<(Option<Duration>, StalenessPolicy)> {
        Some((Some(self.max_age()), self.policy()))
    }
}
