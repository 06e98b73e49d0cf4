//! Hot swap of snapshots for verifiers, with rollback protection and a staleness policy.
//!
//! A [`SnapshotHandle`] is shared by every request handler (clone it: it is an `Arc`). Reads
//! are lock-free (`arc-swap`): a check loads the current snapshot, which stays alive for the
//! length of the check even if a newer one is swapped in meanwhile. Writers (a poller, a file
//! watcher) are serialised by a mutex so "compare generations, then swap" is atomic.
//!
//! Whoever can swap the snapshot can un-revoke every token, so `replace` refuses an older
//! generation, and bytes that fail validation never replace the last good snapshot. A snapshot
//! older than `max_age` (or none at all) is *stale*; [`StalenessPolicy`] says what a check
//! then yields, and [`SnapshotHandle::decide`] applies it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use thiserror::Error;

use crate::delta::{DeltaError, DeltaView};
use crate::snapshot::{AlignedBytes, OpenOptions, SnapshotError, SnapshotView};
use crate::window::Verdict;

/// What checks yield while the snapshot is stale (older than `max_age`) or missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StalenessPolicy {
    /// Refuse: revocation state is unavailable, reject the request (HTTP 503). The default, as
    /// the OAuth Token Status List draft recommends: a stale filter may miss revocations.
    #[default]
    FailClosed,
    /// Ask the exact source for every token, as if every check were a filter positive.
    ExactSource,
    /// Keep answering from the last snapshot (accept when there is none), and let the caller
    /// raise a loud metric: availability over safety, an explicit operator choice.
    FailOpen,
}

/// The effective answer for one check once freshness and the policy are taken into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The snapshot is fresh: act on its verdict.
    Verdict(Verdict),
    /// Stale or missing under [`StalenessPolicy::ExactSource`]: ask the exact source.
    AskExactSource,
    /// Stale or missing under [`StalenessPolicy::FailClosed`]: revocation state unavailable.
    Unavailable,
    /// Stale or missing under [`StalenessPolicy::FailOpen`]: the stale snapshot's verdict
    /// (`None` when there is no snapshot at all). Act on it, and count it.
    FailOpen(Option<Verdict>),
}

impl Decision {
    /// Whether the decision was made on a stale or missing snapshot.
    pub fn is_stale(&self) -> bool {
        !matches!(self, Decision::Verdict(_))
    }
}

/// What [`SnapshotHandle::replace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplaceOutcome {
    /// The new snapshot is current.
    Replaced {
        /// Generation replaced (`None` if there was none).
        from: Option<u64>,
        /// Generation now current.
        to: u64,
    },
    /// The same generation was already current; nothing changed.
    Unchanged,
}

/// Why a snapshot was not swapped in. The previous snapshot stays current in every case.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SwapError {
    /// The offered snapshot is older than the current one (possible rollback attack).
    #[error("refusing snapshot generation {offered}: generation {current} is already current (rollback)")]
    Rollback {
        /// Current generation.
        current: u64,
        /// Offered generation.
        offered: u64,
    },
    /// The new bytes are not a valid snapshot.
    #[error("new snapshot rejected, keeping the previous one: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The delta could not be applied.
    #[error("delta rejected, keeping the previous snapshot: {0}")]
    Delta(#[from] DeltaError),
    /// A delta arrived but there is no snapshot to apply it to.
    #[error("no snapshot to apply a delta to; fetch a full snapshot")]
    NoSnapshot,
}

struct Inner<B> {
    current: ArcSwapOption<SnapshotView<B>>,
    writer: Mutex<()>,
    policy: StalenessPolicy,
    max_age: Duration,
}

/// A shared, hot-swappable snapshot with a staleness policy. Cheap to clone; reads never
/// block.
pub struct SnapshotHandle<B = AlignedBytes> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for SnapshotHandle<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: AsRef<[u8]>> SnapshotHandle<B> {
    /// A handle with no snapshot yet: every check is stale until one arrives.
    pub fn new(policy: StalenessPolicy, max_age: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: ArcSwapOption::empty(),
                writer: Mutex::new(()),
                policy,
                max_age,
            }),
        }
    }

    /// A handle starting from `view`.
    pub fn with_snapshot(
        view: SnapshotView<B>,
        policy: StalenessPolicy,
        max_age: Duration,
    ) -> Self {
        let h = Self::new(policy, max_age);
        h.inner.current.store(Some(Arc::new(view)));
        h
    }

    /// The current snapshot, if any. Holding the `Arc` keeps that generation alive.
    pub fn current(&self) -> Option<Arc<SnapshotView<B>>> {
        self.inner.current.load_full()
    }

    /// The current generation, if any.
    pub fn generation(&self) -> Option<u64> {
        self.inner.current.load().as_ref().map(|v| v.generation())
    }

    /// Seconds since the current snapshot's `created_at` at unix time `now` (`None` without a
    /// snapshot).
    pub fn age(&self, now: u64) -> Option<u64> {
        self.inner.current.load().as_ref().map(|v| v.age(now))
    }

    /// Whether checks at `now` are stale: no snapshot, or one older than `max_age`.
    pub fn is_stale(&self, now: u64) -> bool {
        self.age(now)
            .is_none_or(|age| age > self.inner.max_age.as_secs())
    }

    /// The configured policy.
    pub fn policy(&self) -> StalenessPolicy {
        self.inner.policy
    }

    /// The configured maximum age.
    pub fn max_age(&self) -> Duration {
        self.inner.max_age
    }

    /// Swap in `view` unless it is older than the current snapshot. An equal generation is a
    /// no-op (the same publication fetched twice).
    pub fn replace(&self, view: SnapshotView<B>) -> Result<ReplaceOutcome, SwapError> {
        let _writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.replace_locked(view)
    }

    fn replace_locked(&self, view: SnapshotView<B>) -> Result<ReplaceOutcome, SwapError> {
        let from = self.generation();
        let to = view.generation();
        match from {
            Some(current) if to < current => Err(SwapError::Rollback {
                current,
                offered: to,
            }),
            Some(current) if to == current => Ok(ReplaceOutcome::Unchanged),
            _ => {
                self.inner.current.store(Some(Arc::new(view)));
                Ok(ReplaceOutcome::Replaced { from, to })
            }
        }
    }

    /// Validate `bytes` and swap them in; on any error the previous snapshot stays current.
    pub fn replace_bytes(
        &self,
        bytes: impl Into<B>,
        options: &OpenOptions,
    ) -> Result<ReplaceOutcome, SwapError> {
        let view = SnapshotView::open(bytes.into(), options)?;
        self.replace(view)
    }

    /// The decision for a token's `jti` and `exp` at unix time `now`, under the policy: the
    /// filter, and the cutoffs on the `jti` itself (revocations made without `exp`, which
    /// revoke whatever the token's `exp`; a cutoff found answers
    /// [`Verdict::MaybeRevoked`] since the token's `iat` is not known here).
    pub fn decide(&self, jti: impl AsRef<[u8]>, exp: Option<u64>, now: u64) -> Decision {
        let jti = jti.as_ref();
        self.decide_with(now, |view| match view.check(jti, exp) {
            Verdict::Clear if view.has_jti_cutoff(jti) => Verdict::MaybeRevoked,
            verdict => verdict,
        })
    }

    /// The decision for a check the caller performs on the current snapshot (for issuer-
    /// qualified keys or cutoffs), under the policy. `check` runs on the stale snapshot only
    /// under [`StalenessPolicy::FailOpen`].
    pub fn decide_with(
        &self,
        now: u64,
        check: impl FnOnce(&SnapshotView<B>) -> Verdict,
    ) -> Decision {
        let guard = self.inner.current.load();
        let fresh = guard
            .as_ref()
            .filter(|v| v.age(now) <= self.inner.max_age.as_secs());
        if let Some(view) = fresh {
            return Decision::Verdict(check(view));
        }
        match self.inner.policy {
            StalenessPolicy::FailClosed => Decision::Unavailable,
            StalenessPolicy::ExactSource => Decision::AskExactSource,
            StalenessPolicy::FailOpen => Decision::FailOpen(guard.as_ref().map(|v| check(v))),
        }
    }
}

impl SnapshotHandle<AlignedBytes> {
    /// Apply `delta` to the current snapshot and swap the result in. Readers keep using the
    /// previous generation until the swap; on any error it stays current. A delta for the
    /// current or an older generation (already applied) is a no-op.
    pub fn apply_delta(&self, delta: &DeltaView<'_>) -> Result<ReplaceOutcome, SwapError> {
        let _writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current().ok_or(SwapError::NoSnapshot)?;
        if delta.generation() <= current.generation() {
            return Ok(ReplaceOutcome::Unchanged);
        }
        let next = current.apply_delta(delta)?;
        self.replace_locked(next)
    }
}

impl<B: AsRef<[u8]>> std::fmt::Debug for SnapshotHandle<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotHandle")
            .field("generation", &self.generation())
            .field("policy", &self.inner.policy)
            .field("max_age", &self.inner.max_age)
            .finish()
    }
}
