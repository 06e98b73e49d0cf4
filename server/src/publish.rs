//! Snapshot production: the in-memory [`Window`] and [`CutoffSet`] built from the store, a new
//! generation whenever revocations arrive (coalesced) and on a refresh timer, deltas between
//! generations of one layout, and the [`Hub`] the HTTP API serves them from.
//!
//! Everything handed out (`GET /v1/snapshot`, `GET /v1/deltas`, the `snapshot_dir` copy) is
//! sealed with the seal key unless the configuration says `"seal": false`: each snapshot and
//! each delta is sealed once, when it is made, and every request is answered from those bytes.
//!
//! With the embedded store every start is a new *lineage*: the window is rebuilt from the
//! store with a fresh random hash seed, and deltas only chain generations of that lineage.
//! With a shared store the lineage (seed, layout) continues across builders: see
//! [`Publisher::start_on`]. A generation is recorded in the store before anyone can see it,
//! so numbers stay monotonic across restarts.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use axum::body::Bytes;
use ed25519_dalek::SigningKey;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::config::{resolve_publisher_keys, KeyError, KeySource, ServerConfig};
use super::metrics::Metrics;
use super::sizing::{self, Inflow};
use super::store::{Committed, Cutoff, Publication, Revocation, Store, StoreError};
use revbloom::bounds::Bounds;
use revbloom::delta::{encode_delta, encode_signed_delta};
use revbloom::snapshot::{
    encode_to_vec, seal, AlignedBytes, EncodeError, SealError, SealKey, SnapshotMeta,
};
use revbloom::{
    ConfigError, CutoffKey, CutoffSet, InsertOutcome, KeyHasher, OpenOptions, SnapshotView, Window,
};

/// File name of the snapshot copy written to the configured snapshot folder.
pub const SNAPSHOT_FILE: &str = "snapshot.rbs";

pub use revbloom::bounds::unix_now;

/// Errors producing a generation.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The window configuration is invalid.
    #[error("invalid window configuration: {0}")]
    Config(#[from] ConfigError),
    /// The store failed (reading on rebuild, or recording the generation).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Encoding a snapshot or delta failed.
    #[error("could not encode generation {generation}: {source}")]
    Encode {
        /// The generation being encoded.
        generation: u64,
        /// The encoder's error.
        source: EncodeError,
    },
    /// A cutoff's claim cannot be listed in the snapshot; publishing stops (verifiers go
    /// stale and fail closed) rather than ship a cutoff verifiers might not check.
    #[error("cutoff claims cannot be published: {0}")]
    CutoffClaims(#[source] revbloom::cutoff::ClaimNameError),
    /// The seal or signing key could not be read or generated.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Sealing a snapshot or delta failed.
    #[error("could not seal generation {generation}: {source}")]
    Seal {
        /// The generation being sealed.
        generation: u64,
        /// Why.
        source: SealError,
    },
    /// Writing the snapshot copy to the snapshot folder failed.
    #[error("could not write the snapshot copy to {path}: {source}; check the folder exists and is writable")]
    Copy {
        /// The target file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One published generation: what `GET /v1/snapshot` serves.
#[derive(Debug)]
pub struct Published {
    /// Generation number.
    pub generation: u64,
    /// `created_at` written into the snapshot.
    pub created_at: u64,
    /// The snapshot as handed out: sealed unless sealing is off.
    pub snapshot: Bytes,
    /// Revocations in the window.
    pub entries: u64,
}

/// One delta file from `parent` to `generation`.
#[derive(Debug, Clone)]
struct DeltaFile {
    parent: u64,
    generation: u64,
    bytes: Bytes,
}

/// What `GET /v1/deltas?since=N` can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaChain {
    /// `N` is the current generation: nothing to send.
    UpToDate,
    /// The concatenated deltas `N → … → current`, and the generation they end at.
    Chain {
        /// Concatenated delta files.
        bytes: Bytes,
        /// The generation the chain ends at.
        generation: u64,
    },
    /// No chain from `N`: too old, from another lineage, a layout change happened since, or
    /// the chain would be larger than a full snapshot. Fetch the snapshot instead.
    Gone,
}

/// The bounded ring of recent deltas. Reset whenever the layout changes, so it only ever
/// holds one unbroken chain.
#[derive(Debug)]
struct DeltaRing {
    capacity: usize,
    items: VecDeque<DeltaFile>,
}

impl DeltaRing {
    fn push(&mut self, d: DeltaFile) {
        if self
            .items
            .back()
            .is_some_and(|last| last.generation != d.parent)
        {
            self.items.clear();
        }
        if self.items.len() >= self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(d);
    }

    fn chain(&self, since: u64, current: &Published) -> DeltaChain {
        if since == current.generation {
            return DeltaChain::UpToDate;
        }
        let Some(start) = self.items.iter().position(|d| d.parent == since) else {
            return DeltaChain::Gone;
        };
        let mut out = Vec::new();
        let mut at = since;
        for d in self.items.iter().skip(start) {
            if d.generation > current.generation {
                break;
            }
            out.extend_from_slice(&d.bytes);
            at = d.generation;
            // A chain larger than the snapshot costs the client more than a rebase.
            if out.len() > current.snapshot.len() {
                return DeltaChain::Gone;
            }
        }
        if at != current.generation {
            return DeltaChain::Gone;
        }
        DeltaChain::Chain {
            bytes: Bytes::from(out),
            generation: at,
        }
    }
}

/// The read side of the publisher, shared by every HTTP handler: the current generation (a
/// `watch` channel, which is what long-polls wait on) and the delta ring.
#[derive(Clone)]
pub struct Hub {
    current: watch::Receiver<Arc<Published>>,
    ring: Arc<RwLock<DeltaRing>>,
    /// Set while the last attempt to publish failed.
    failing: Arc<AtomicBool>,
    refresh: Duration,
    read_token: Arc<str>,
    sealed: bool,
    /// Whether this process builds the generations (always, with the embedded store).
    builder: Arc<AtomicBool>,
}

impl Hub {
    /// The bearer token verifiers send to the exact lookup: derived from the seal key
    /// ([`SealKey::read_token`]).
    pub fn read_token(&self) -> &str {
        &self.read_token
    }

    /// Whether this process builds the generations it serves (with a shared store, one
    /// replica does; the others follow).
    pub fn is_builder(&self) -> bool {
        self.builder.load(Ordering::Relaxed)
    }

    /// Whether snapshots and deltas are sealed.
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Published> {
        Arc::clone(&self.current.borrow())
    }

    /// A receiver that wakes when a new generation is published.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.current.clone()
    }

    /// Whether the last attempt to publish a generation failed (cleared by the next success).
    pub fn publish_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// The refresh interval: a generation is published at least this often.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// The delta chain from generation `since` to `current`.
    pub fn deltas_since(&self, since: u64, current: &Published) -> DeltaChain {
        match self.ring.read() {
            Ok(ring) => ring.chain(since, current),
            Err(_) => DeltaChain::Gone,
        }
    }
}

/// The write side of a [`Hub`]: where generations enter it, from the local publisher or, on a
/// replica of a shared store, from the database. A generation not above the current one is
/// ignored, so two sources may offer the same generation.
#[derive(Clone)]
pub struct HubFeed {
    tx: Arc<watch::Sender<Arc<Published>>>,
    ring: Arc<RwLock<DeltaRing>>,
    failing: Arc<AtomicBool>,
    builder: Arc<AtomicBool>,
}

impl HubFeed {
    /// Make `published` the current generation, with its delta from `parent` (a generation
    /// without one resets the delta ring). Returns whether it was taken.
    pub fn offer(&self, published: Published, parent: u64, delta: Option<Bytes>) -> bool {
        let Ok(mut ring) = self.ring.write() else {
            return false;
        };
        let current = self.tx.borrow().generation;
        if published.generation <= current {
            return false;
        }
        match delta {
            Some(bytes) => ring.push(DeltaFile {
                parent,
                generation: published.generation,
                bytes,
            }),
            None => ring.items.clear(),
        }
        self.tx.send_replace(Arc::new(published));
        true
    }

    /// Add the delta of a generation above the current one without making it current: the
    /// links of a chain whose newest generation is offered next.
    pub fn offer_delta(&self, parent: u64, generation: u64, delta: Option<Bytes>) {
        let Ok(mut ring) = self.ring.write() else {
            return;
        };
        if generation <= self.tx.borrow().generation {
            return;
        }
        match delta {
            Some(bytes) => ring.push(DeltaFile {
                parent,
                generation,
                bytes,
            }),
            None => ring.items.clear(),
        }
    }

    /// Record whether this process builds the generations it serves.
    pub fn set_builder(&self, builder: bool) {
        self.builder.store(builder, Ordering::Relaxed);
        if !builder {
            // A follower publishes nothing: a failure of its past builder role (the refusal
            // that ended it, say) says nothing about whether it can do its job now.
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    /// The generation the hub holds now (0 before the first).
    pub fn generation(&self) -> u64 {
        self.tx.borrow().generation
    }
}

/// A hub with no generation yet (generation 0) and the feed that fills it. `read_token` and
/// `sealed` come from the publisher keys ([`resolve_publisher_keys`]).
pub fn new_hub(config: &ServerConfig, read_token: &str, sealed: bool) -> (Hub, HubFeed) {
    let placeholder = Arc::new(Published {
        generation: 0,
        created_at: 0,
        snapshot: Bytes::new(),
        entries: 0,
    });
    let (tx, rx) = watch::channel(placeholder);
    let ring = Arc::new(RwLock::new(DeltaRing {
        capacity: config.delta_ring,
        items: VecDeque::new(),
    }));
    let failing = Arc::new(AtomicBool::new(false));
    let builder = Arc::new(AtomicBool::new(false));
    let hub = Hub {
        builder: Arc::clone(&builder),
        current: rx,
        ring: Arc::clone(&ring),
        failing: Arc::clone(&failing),
        refresh: Duration::from_secs(config.refresh_secs),
        read_token: read_token.into(),
        sealed,
    };
    let feed = HubFeed {
        tx: Arc::new(tx),
        ring,
        failing,
        builder,
    };
    (hub, feed)
}

/// Owns the window and produces generations. Runs as one task ([`Publisher::run`]).
pub struct Publisher {
    window: Window,
    cutoffs: CutoffSet,
    /// Cutoffs added or raised since the last generation: the next delta's cutoff records.
    new_cutoffs: Vec<(CutoffKey, u64)>,
    /// Set when a cutoff's claim could not be listed: every publish fails from then on.
    unpublishable: Option<revbloom::cutoff::ClaimNameError>,
    last: SnapshotMeta,
    /// Set when a generation failed half-way: the journal it took is lost, so the next
    /// generation must not be offered as a delta.
    chain_broken: bool,
    /// The parent of the first generation when it continues another builder's last one (its
    /// number is above the store's and the clock floor, not necessarily right after it).
    first_parent: Option<u64>,
    store: Store,
    /// The builder epoch every publication carries (0 with the embedded store).
    epoch: u64,
    /// How many generations the shared store keeps (the delta ring's length).
    keep: usize,
    signing_key: Option<SigningKey>,
    /// Seals what is handed out; `None` when the configuration turns sealing off.
    seal_key: Option<SealKey>,
    snapshot_dir: Option<PathBuf>,
    feed: HubFeed,
    failing: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    coalesce: Duration,
    refresh: Duration,
    prune_every: Duration,
    bounds: Bounds,
    /// Where revocations arrive: sizes the buckets at every full snapshot.
    inflow: Inflow,
    /// `window.expected_per_bucket`: the least capacity of a bucket.
    min_capacity: u64,
}

impl Publisher {
    /// Rebuild the window and cutoffs from `store` (new random seed: a new lineage), publish
    /// the first generation of this lineage, and return the publisher and its [`Hub`].
    ///
    /// The keys are [`resolve_publisher_keys`]' (generated into the data folder when the
    /// configuration names none); `signing_key`, when given, takes precedence over the
    /// configured one. `"seal": false` or `"sign": false` is logged as a warning.
    pub async fn start(
        store: Store,
        config: &ServerConfig,
        signing_key: Option<SigningKey>,
        metrics: Arc<Metrics>,
    ) -> Result<(Publisher, Hub), PublishError> {
        let keys = resolve_publisher_keys(&mut config.clone())?;
        let (hub, feed) = new_hub(config, &keys.seal.read_token(), config.seal);
        feed.set_builder(true);
        let publisher = Self::start_on(store, config, signing_key, metrics, feed, 0).await?;
        Ok((publisher, hub))
    }

    /// [`Publisher::start`] feeding an existing hub, publishing under builder `epoch`: how a
    /// replica of a shared store becomes the builder. The window takes the store's lineage
    /// seed when it keeps one, and the first generation continues above the store's last.
    ///
    /// When the store also keeps the last generation's snapshot (PostgreSQL) and this
    /// configuration gives its layout, the window starts from that snapshot's bits and layout
    /// and the first generation is a delta from it: it carries the stored revocations and
    /// cutoffs the snapshot does not already answer for, so verifiers holding it keep
    /// applying deltas. When the layout cannot take the store's contents (a bucket outgrew
    /// its blocks, the cutoff claims or the default issuer changed, other window parameters)
    /// the first generation is a full snapshot, as on a store without one; the reason is
    /// logged at info.
    pub async fn start_on(
        store: Store,
        config: &ServerConfig,
        signing_key: Option<SigningKey>,
        metrics: Arc<Metrics>,
        feed: HubFeed,
        epoch: u64,
    ) -> Result<Publisher, PublishError> {
        let keys = resolve_publisher_keys(&mut config.clone())?;
        let signing_key = signing_key.or(keys.signing);
        if keys.signing_source == KeySource::Off {
            tracing::warn!(
                "signing is off (\"sign\": false): snapshots and deltas are unsigned, and \
                 whoever can alter them on the way can un-revoke tokens"
            );
        }
        if !config.seal {
            tracing::warn!(
                "sealing is off (\"seal\": false): snapshots and deltas are handed out in \
                 plaintext, and anyone who fetches one can test guessed user ids and token ids \
                 against it"
            );
        }
        let now = unix_now();
        let seed = store.lineage_seed().await?;
        // With a shared store, the last generation's snapshot is what verifiers hold: continue
        // its layout, so the first generation is a delta from it.
        let base = match seed {
            Some(seed) => continuation_base(&store, &keys.seal, seed, config).await,
            None => None,
        };
        let seal_key = config.seal.then_some(keys.seal);
        let (base, window) = match base {
            Some((base, window)) => (Some(base), Some(window)),
            None => (None, None),
        };
        let (mut window, mut cutoffs) = match (window, &base) {
            (Some(window), Some(base)) => {
                let mut cutoffs = CutoffSet::new();
                for (key, before) in base.view.cutoffs() {
                    cutoffs.insert(key, before);
                }
                (window, cutoffs)
            }
            _ => {
                let window = match seed {
                    Some(seed) => Window::with_seed(config.window.to_window_config(), now, seed)?,
                    None => Window::new(config.window.to_window_config(), now)?,
                };
                (window, CutoffSet::new())
            }
        };
        window.set_default_issuer(config.default_issuer());
        let continuing = base.is_some();
        if continuing {
            // Journal the revocations the base snapshot misses: they are the first delta.
            window.enable_journal();
        }
        let mut new_cutoffs = Vec::new();
        let mut covered = 0u64;
        let hasher = *window.hasher();
        let mut claims = store.cutoff_claims().await?;
        if let Some(base) = &base {
            // Claims the base lists stay listed: dropping one is a layout change.
            for c in base.view.cutoff_claims() {
                if !claims.iter().any(|k| **k == **c) {
                    claims.push(c.to_string());
                }
            }
        }
        // Straight from the read transaction into the window: no copy of the store in memory.
        store
            .scan(
                |r| {
                    let hash = key_hash(&hasher, &r);
                    if continuing {
                        let outcome = window.restore_hash(hash, Some(r.exp));
                        covered += u64::from(outcome == InsertOutcome::Covered);
                    } else {
                        window.insert_hash(hash, Some(r.exp));
                    }
                },
                |c| {
                    if !claims.contains(&c.claim) {
                        claims.push(c.claim.clone());
                    }
                    let key = cutoff_key(&hasher, &c);
                    // New or later than the base's: the delta carries it.
                    if cutoffs.insert(key, c.before) && continuing {
                        new_cutoffs.push((key, c.before));
                    }
                },
            )
            .await?;
        window
            .set_cutoff_claims(&claims)
            .map_err(PublishError::CutoffClaims)?;
        let continues_from = base.and_then(|base| {
            let layout = revbloom::snapshot::layout_id(&window);
            let why = if layout != base.view.layout_id() {
                if window.default_issuer() != base.view.default_issuer() {
                    Some("the default issuer differs")
                } else {
                    Some("the list of cutoff claims grew")
                }
            } else if window.layout_epoch() != base.view.layout_epoch() {
                Some("a bucket outgrew its blocks")
            } else {
                None
            };
            match why {
                None => {
                    tracing::info!(
                        generation = base.generation,
                        covered,
                        "continuing the last generation's layout: the first generation is a \
                         delta from it"
                    );
                    Some(base)
                }
                Some(why) => {
                    tracing::info!(
                        generation = base.generation,
                        reason = why,
                        "the first generation is a full snapshot: the last generation's layout \
                         cannot take the store's contents"
                    );
                    None
                }
            }
        });
        if continues_from.is_none() {
            new_cutoffs.clear();
        }
        // A first publication that is a full snapshot refits every bucket to what the store
        // holds (at least one block each): nothing is known yet of where revocations arrive.
        let inflow = Inflow::new(&window, now);
        window.enable_journal();
        // The clock is a floor: a publisher whose data folder was lost and started again with
        // `--init` still continues above every generation it published before, so verifiers
        // take the new history instead of refusing it as a rollback.
        let previous = store
            .generation()
            .await?
            .max(generation_floor().saturating_sub(1));
        let first = SnapshotMeta {
            generation: previous.saturating_add(1),
            parent: previous,
            created_at: now,
            coverage: now,
        };
        // created_at never goes back from the generation continued.
        let created_at = continues_from
            .as_ref()
            .map_or(now, |b| now.max(b.view.created_at()));
        let mut publisher = Publisher {
            window,
            cutoffs,
            new_cutoffs,
            unpublishable: None,
            // A synthetic "previous" so the first publish produces `first`.
            last: SnapshotMeta {
                generation: previous,
                parent: previous.saturating_sub(1),
                created_at,
                coverage: created_at,
            },
            first_parent: continues_from.as_ref().map(|b| b.generation),
            chain_broken: continues_from.is_none(),
            store,
            epoch,
            keep: config.delta_ring.saturating_add(1),
            signing_key,
            seal_key,
            snapshot_dir: config.snapshot_dir.clone(),
            failing: Arc::clone(&feed.failing),
            feed,
            metrics,
            coalesce: Duration::from_millis(config.coalesce_ms),
            refresh: Duration::from_secs(config.refresh_secs),
            prune_every: Duration::from_secs(config.prune_secs),
            bounds: config.window.bounds(),
            inflow,
            min_capacity: config.window.expected_per_bucket,
        };
        publisher.publish(first.created_at).await?;
        Ok(publisher)
    }

    /// Add durable changes to the window; returns whether anything changed.
    fn apply(&mut self, c: Committed) -> bool {
        let hasher = *self.window.hasher();
        match c {
            Committed::Revocations(list) => {
                let now = unix_now();
                for r in &list {
                    self.window.insert_hash(key_hash(&hasher, r), Some(r.exp));
                    self.inflow.record(now, Some(r.exp), 1);
                }
                !list.is_empty()
            }
            Committed::Cutoff(c) => {
                // The store admits at most as many claims as a snapshot lists, and the window
                // started from the store's list, so this cannot fail; if it ever did, the
                // cutoff would be published without its claim listed, which verifiers that
                // rely on the list would miss: stop publishing instead.
                if let Err(e) = self.window.add_cutoff_claim(&c.claim) {
                    tracing::error!(error = %e, claim = %c.claim, "cutoff claim not publishable");
                    self.unpublishable = Some(e);
                }
                let key = cutoff_key(&hasher, &c);
                if self.cutoffs.insert(key, c.before) {
                    self.new_cutoffs.push((key, c.before));
                }
                true
            }
        }
    }

    /// Produce the next generation at unix time `now`: advance the window, encode the snapshot
    /// (and the delta from the previous generation when the layout allows), record the
    /// generation durably, write the optional copy, then make it visible.
    pub async fn publish(&mut self, now: u64) -> Result<(), PublishError> {
        let result = self.try_publish(now).await;
        self.failing.store(result.is_err(), Ordering::Relaxed);
        if result.is_err() {
            self.chain_broken = true;
            self.metrics
                .publish_errors_total
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn try_publish(&mut self, now: u64) -> Result<(), PublishError> {
        if let Some(e) = &self.unpublishable {
            return Err(PublishError::CutoffClaims(e.clone()));
        }
        self.window.advance(now);
        let mut journal = self.window.take_journal();
        if self.chain_broken || journal.layout_changed {
            // This generation is a full snapshot anyway, so it is the moment to rebase: size
            // every bucket to what it holds (a bucket that doubled in a burst shrinks back to
            // what the burst needs if it goes on), with room for the arrivals expected there
            // until the next rotation, so that they still travel as deltas. The refit is itself a layout change, absorbed by this full
            // snapshot.
            sizing::refit(&mut self.window, &mut self.inflow, now, self.min_capacity);
            journal = self.window.take_journal();
            journal.layout_changed = true;
        }
        // created_at never goes backwards, even if the clock does.
        let now = now.max(self.last.created_at);
        let mut meta = self.last.next(now);
        if let Some(parent) = self.first_parent {
            meta.parent = parent;
        }
        let key = self.signing_key.as_ref();
        let encode_err = |source| PublishError::Encode {
            generation: meta.generation,
            source,
        };
        let snapshot =
            encode_to_vec(&self.window, &self.cutoffs, &meta, key).map_err(encode_err)?;
        let delta = if self.chain_broken || journal.layout_changed {
            None
        } else {
            let mut buf = Vec::new();
            match key {
                // Signed deployments ship the full snapshot's signature in the delta, so a
                // verifier's copy built from deltas is the publisher's signed file.
                Some(key) => encode_signed_delta(
                    &self.window,
                    &journal,
                    &self.new_cutoffs,
                    &meta,
                    key,
                    &snapshot,
                    &mut buf,
                ),
                None => encode_delta(
                    &self.window,
                    &journal,
                    &self.new_cutoffs,
                    &meta,
                    None,
                    &mut buf,
                ),
            }
            .map_err(encode_err)?;
            Some(buf)
        };
        // Sealed once here; every request, long-poll waiter and the copy share these bytes.
        let (snapshot, delta) = match &self.seal_key {
            Some(k) => {
                let seal_err = |source| PublishError::Seal {
                    generation: meta.generation,
                    source,
                };
                let d = delta.map(|d| seal(k, &d)).transpose().map_err(seal_err)?;
                (seal(k, &snapshot).map_err(seal_err)?, d)
            }
            None => (snapshot, delta),
        };
        // Durable before visible: a restart must never reuse a number a verifier has seen. With
        // a shared store the record carries the bytes (the other replicas serve them) and the
        // database refuses it if another replica took over the builder role.
        let snapshot = Bytes::from(snapshot);
        let delta = delta.map(Bytes::from);
        self.store
            .record_publication(&Publication {
                generation: meta.generation,
                parent: meta.parent,
                epoch: self.epoch,
                created_at: meta.created_at,
                entries: self.window.entries(),
                snapshot: snapshot.clone(),
                delta: delta.clone(),
                keep: self.keep,
            })
            .await?;
        if let Some(dir) = self.snapshot_dir.clone() {
            let bytes = snapshot.clone();
            let path = dir.join(SNAPSHOT_FILE);
            let res = tokio::task::spawn_blocking(move || write_atomically(&dir, &bytes)).await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(PublishError::Copy { path, source }),
                Err(e) => {
                    let source = std::io::Error::other(e);
                    return Err(PublishError::Copy { path, source });
                }
            }
        }
        let published = Published {
            generation: meta.generation,
            created_at: meta.created_at,
            snapshot,
            entries: self.window.entries(),
        };
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.generation.store(meta.generation, Relaxed);
        self.metrics
            .snapshot_bytes
            .store(published.snapshot.len() as u64, Relaxed);
        self.metrics
            .window_entries
            .store(published.entries, Relaxed);
        self.metrics.publishes_total.fetch_add(1, Relaxed);
        self.metrics
            .store_commits_total
            .store(self.store.commits(), Relaxed);
        self.feed.offer(published, meta.parent, delta);
        // After the offer: the gauges never delay a generation's visibility.
        if let Ok((r, c)) = self.store.counts_for_metrics().await {
            self.metrics.revocations_stored.store(r, Relaxed);
            self.metrics.cutoffs_stored.store(c, Relaxed);
        }
        self.last = meta;
        self.first_parent = None;
        self.new_cutoffs.clear();
        self.chain_broken = false;
        Ok(())
    }

    /// The publishing loop: apply commits as they arrive, publish at most every `coalesce`
    /// while changes are pending and at least every `refresh` regardless, prune the store
    /// periodically; return when `shutdown` is cancelled or the commit channel closes.
    pub async fn run(
        mut self,
        mut commits: mpsc::UnboundedReceiver<Committed>,
        shutdown: CancellationToken,
    ) {
        let mut dirty = false;
        // Publishing failed last time: retry at the coalesce pace, not only at the next
        // refresh, so acknowledged revocations go out soon after the store heals.
        let mut retry = false;
        let mut last_publish = Instant::now();
        let mut next_prune = Instant::now();
        loop {
            let deadline = if dirty || retry {
                last_publish + self.coalesce
            } else {
                last_publish + self.refresh
            };
            tokio::select! {
                c = commits.recv() => match c {
                    Some(c) => {
                        dirty |= self.apply(c);
                        while let Ok(c) = commits.try_recv() {
                            dirty |= self.apply(c);
                        }
                    }
                    None => break,
                },
                _ = sleep_until(deadline) => {
                    let now = unix_now();
                    if Instant::now() >= next_prune {
                        next_prune = Instant::now() + self.prune_every;
                        self.prune(now).await;
                    }
                    retry = match self.publish(now).await {
                        Ok(()) => false,
                        Err(e @ PublishError::Store(StoreError::Fenced { .. })) => {
                            tracing::warn!(error = %e, "no longer the builder");
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "publishing a generation failed; retrying");
                            true
                        }
                    };
                    // Changes already applied are in the retry; a failure waits `coalesce`
                    // before the next attempt rather than spinning.
                    dirty = false;
                    last_publish = Instant::now();
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    async fn prune(&mut self, now: u64) {
        match self.store.prune(now, self.bounds).await {
            Ok(p) if p.revocations + p.cutoffs > 0 => {
                tracing::info!(
                    revocations = p.revocations,
                    cutoffs = p.cutoffs,
                    "pruned expired entries"
                );
            }
            Ok(_) => {}
            Err(e) => {
                self.metrics
                    .store_errors_total
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "pruning the store failed");
            }
        }
        if prune_cutoffs(&mut self.cutoffs, now, &self.bounds) > 0 {
            // Deltas only add cutoffs: a verifier's copy built from the next delta would
            // still list the pruned ones, while the signature it carries is over the full
            // snapshot that does not. The next generation is a full snapshot instead.
            self.chain_broken = true;
        }
    }
}

/// The last published generation a new builder continues.
struct Base {
    generation: u64,
    view: SnapshotView<AlignedBytes>,
}

/// The store's last published generation, when a new builder can continue its layout: it is
/// readable (unsealed with the shared seal key), of this lineage's `seed`, and of the layout
/// `config` gives. Returns it with a window of its layout holding no keys yet
/// ([`Window::from_snapshot`]); `None` (logged at info with the reason) means a full snapshot
/// first.
async fn continuation_base(
    store: &Store,
    seal: &SealKey,
    seed: u64,
    config: &ServerConfig,
) -> Option<(Base, Window)> {
    let (generation, bytes) = match store.last_snapshot().await {
        Ok(Some(last)) => last,
        Ok(None) => return None,
        Err(e) => {
            tracing::info!(error = %e, "the last generation could not be read; the first generation is a full snapshot");
            return None;
        }
    };
    let why = |reason: &dyn std::fmt::Display| {
        tracing::info!(
            generation,
            reason = %reason,
            "the first generation is a full snapshot: the last generation's layout cannot be continued"
        );
    };
    // The store holds what was handed out; its signature was made by a builder of this store.
    let options = OpenOptions::new()
        .seal_key(seal.clone())
        .skip_signature_check();
    let view = match SnapshotView::open_owned(bytes.to_vec(), &options) {
        Ok(v) => v,
        Err(e) => {
            why(&e);
            return None;
        }
    };
    if view.hasher().seed() != seed {
        why(&"its hash seed is not the store's lineage seed");
        return None;
    }
    if view.generation() != generation {
        why(&"its snapshot is of another generation than its row");
        return None;
    }
    match Window::from_snapshot(config.window.to_window_config(), &view) {
        Ok(window) => Some((Base { generation, view }, window)),
        Err(e) => {
            why(&e);
            None
        }
    }
}

/// The lowest generation a publisher starting now may publish: unix time in milliseconds. A
/// publisher publishes at most a few generations a second (the coalescing window is 250 ms by
/// default), far fewer than 1000, so its generations stay below this floor and a restarted
/// publisher (whatever its store says) never goes back.
pub fn generation_floor() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Drop the cutoffs no verifier can need at publisher time `now`: the store's rule, keep while
/// [`Bounds::cutoff_needed_until`]`(before) >= now`.
fn prune_cutoffs(set: &mut CutoffSet, now: u64, bounds: &Bounds) -> usize {
    // `cutoff_needed_until(before)` is `before + cutoff_needed_until(0)` (saturating), which
    // is the lifetime `CutoffSet::prune` keeps a cutoff for.
    set.prune(now, bounds.cutoff_needed_until(0))
}

/// The filter key of a revocation: the `jti` alone, whatever its issuer. Verifiers probe the
/// token's `jti` alone too, so the key never depends on an issuer one side may not know; a
/// cross-issuer collision only costs an exact lookup, which does compare issuers.
pub fn key_hash(hasher: &KeyHasher, r: &Revocation) -> revbloom::KeyHash {
    hasher.hash(&r.jti)
}

/// The cutoff table key of a cutoff.
pub fn cutoff_key(hasher: &KeyHasher, c: &Cutoff) -> CutoffKey {
    CutoffKey::new(
        hasher,
        c.iss.as_deref().map(str::as_bytes),
        &c.claim,
        &c.value,
    )
}

/// Replace `dir/SNAPSHOT_FILE` with `bytes` atomically (see
/// [`write_file_atomically`](revbloom::sync::write_file_atomically)).
pub fn write_atomically(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    revbloom::sync::write_file_atomically(&dir.join(SNAPSHOT_FILE), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(generation: u64, len: usize) -> Published {
        Published {
            generation,
            created_at: 0,
            snapshot: Bytes::from(vec![0u8; len]),
            entries: 0,
        }
    }

    fn delta(parent: u64, generation: u64) -> DeltaFile {
        DeltaFile {
            parent,
            generation,
            bytes: Bytes::from(vec![generation as u8; 4]),
        }
    }

    #[test]
    fn revocations_are_keyed_on_the_jti_alone() {
        let h = KeyHasher::new(7);
        let r = |iss: Option<&str>| Revocation {
            iss: iss.map(str::to_owned),
            jti: "j".into(),
            exp: 1,
        };
        assert_eq!(key_hash(&h, &r(Some("https://idp"))), h.hash("j"));
        assert_eq!(key_hash(&h, &r(None)), h.hash("j"));
    }

    #[test]
    fn cutoff_set_prunes_by_the_store_rule() {
        let b = Bounds {
            max_token_lifetime: 100,
            leeway: 10,
            max_clock_skew: 5,
        };
        let mut set = CutoffSet::new();
        set.insert(CutoffKey(1), 1_000);
        let needed = b.cutoff_needed_until(1_000);
        assert_eq!(prune_cutoffs(&mut set, needed, &b), 0);
        assert_eq!(prune_cutoffs(&mut set, needed + 1, &b), 1);
    }

    #[test]
    fn ring_serves_unbroken_chains_only() {
        let mut ring = DeltaRing {
            capacity: 3,
            items: VecDeque::new(),
        };
        for g in 2..=5 {
            ring.push(delta(g - 1, g));
        }
        let cur = published(5, 1000);
        assert_eq!(ring.chain(5, &cur), DeltaChain::UpToDate);
        assert_eq!(
            ring.chain(3, &cur),
            DeltaChain::Chain {
                bytes: Bytes::from(vec![4, 4, 4, 4, 5, 5, 5, 5]),
                generation: 5
            }
        );
        // Generation 2 fell out of the ring (capacity 3): 1 -> 2 is gone.
        assert_eq!(ring.chain(1, &cur), DeltaChain::Gone);
        assert_eq!(ring.chain(9, &cur), DeltaChain::Gone);
        // Bigger than the snapshot: rebase instead.
        assert_eq!(ring.chain(2, &published(5, 7)), DeltaChain::Gone);
        // A gap resets the ring.
        ring.push(delta(7, 8));
        assert_eq!(ring.chain(4, &published(8, 1000)), DeltaChain::Gone);
    }
}
