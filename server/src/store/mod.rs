//! The publisher's durable store: revocations keyed by `(iss, jti, exp)`, claim cutoffs keyed by
//! `(iss, claim, value)`, the prune watermark and the generation counter.
//!
//! Two backends sit behind one [`Store`] handle, so the HTTP layer and the publisher never know
//! which one they talk to:
//!
//! - [`redb`] (the default): one embedded file in the data folder, one publisher.
//! - [`postgres`] (`--store postgres://…`): one shared database behind any number of replicas;
//!   one of them, elected through the database, builds the snapshots (see [`crate::replica`]).
//!
//! Both practise **group commit**: a single writer takes every request waiting in its
//! channel, applies them all in one transaction, commits once, and only then answers each
//! waiter. No caller hears "ok" before its data is durable, and a request's changes are never
//! split across transactions, so a batch is all-or-nothing.
//!
//! The handle is an enum rather than a trait object: the redb reads are synchronous and cheap
//! while the PostgreSQL ones are network round trips, `scan` takes closures (generic methods
//! are not object safe), and async trait methods would need boxing on every call. Dispatch is
//! one `match` per call.

pub mod postgres;
pub mod redb;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::mpsc;

use revbloom::bounds::Bounds;

pub use self::postgres::{PgStore, PgWriter, Publication};
pub use self::redb::{
    allow_new_history, check_store, create_private_dir, RedbStore, RedbWriter, INIT_MARKER,
    STORE_FILE,
};

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The token's issuer (normalised); `None` revokes the `jti` of every issuer.
    pub iss: Option<String>,
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp` (unix seconds): the revocation matters until then.
    pub exp: u64,
}

/// One claim cutoff: tokens whose `claim` equals `value` issued before `before` are revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutoff {
    /// The issuer the cutoff applies to (normalised); `None` applies to every issuer.
    pub iss: Option<String>,
    /// The claim name, e.g. `sub` or `sid`.
    pub claim: String,
    /// The claim value cut off.
    pub value: String,
    /// Tokens with `iat` before this (unix seconds) are revoked.
    pub before: u64,
}

/// Something the writer committed, forwarded to the publisher so it can update its window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Committed {
    /// Revocations now durable (every one of a request, duplicates included).
    Revocations(Vec<Revocation>),
    /// A cutoff now durable.
    Cutoff(Cutoff),
}

/// What a revocation request changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevokeOutcome {
    /// Revocations stored for the first time (a new `(iss, jti, exp)`).
    pub new: usize,
    /// Revocations already stored with the same `(iss, jti, exp)`.
    pub duplicates: usize,
}

/// The answer of an exact lookup, read from one consistent snapshot of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookup {
    /// The latest stored `exp` of a matching revocation; `None` if none.
    pub exp: Option<u64>,
    /// The `before` of a matching revocation made without `exp` (a cutoff on the `jti`):
    /// tokens with this `jti` issued before it are revoked, whatever their `exp`.
    pub without_exp: Option<u64>,
    /// The prune watermark: revocations of tokens with `exp` below it may have been deleted,
    /// so "not revoked" says nothing about such a token (0 if never pruned).
    pub pruned_before: u64,
}

/// How many entries a prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Revocations no verifier can need any more
    /// ([`Bounds::revocation_needed_until`] is past).
    pub revocations: u64,
    /// Cutoffs that no live token can match any more ([`Bounds::cutoff_needed_until`] is
    /// past).
    pub cutoffs: u64,
}

/// Errors of the durable store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data folder or database file could not be opened or created.
    #[error("could not open the store at {path}: {source}; check the data folder exists, is writable, and no other revbloom process uses it")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb or the OS said.
        source: ::redb::Error,
    },
    /// The writer thread could not be started.
    #[error("could not start the store's writer thread: {0}; check the process's thread and memory limits")]
    WriterThread(#[source] std::io::Error),
    /// A read or write transaction failed. Nothing of the failed write was acknowledged.
    /// Shared: one failed group commit fails every request of the group.
    #[error("store transaction failed: {0}; the write was not applied, retry it")]
    Transaction(#[source] Arc<::redb::Error>),
    /// The writer thread answered a request with a reply of another kind: a bug in revbloom.
    #[error("the store's writer answered a {request} request with another kind of reply; this is a bug in revbloom, please report it")]
    UnexpectedReply {
        /// The request that got the wrong kind of reply.
        request: &'static str,
    },
    /// The store file failed its integrity check, or redb panicked reading it.
    #[error("the store {path} is damaged ({detail}); restore it from a backup, or move it away and start with `revbloom serve --init` for a new, empty history; `revbloom check-store` checks a copy")]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What the check or the panic said.
        detail: String,
        /// redb's error, when it reported one (a panic has none).
        #[source]
        source: Option<Box<::redb::Error>>,
    },
    /// Cutoffs exist for the most distinct claims a snapshot can list, and this one is new.
    #[error("cutoffs were stored for {max} distinct claims already, the most a snapshot lists; a cutoff on claim {claim:?} is refused (use one of the claims already in use)", max = revbloom::cutoff::MAX_SNAPSHOT_CLAIMS)]
    TooManyClaims {
        /// The claim refused.
        claim: String,
    },
    /// The data folder was initialized but its store file is gone.
    #[error("the store {path} is missing although its data folder was initialized; restore it from a backup, or start with `revbloom serve --init` for a new, empty history")]
    Missing {
        /// The database file.
        path: PathBuf,
    },
    /// The data folder was initialized but its store file is empty.
    #[error("the store {path} is empty although its data folder was initialized; restore it from a backup, or start with `revbloom serve --init` for a new, empty history")]
    Emptied {
        /// The database file.
        path: PathBuf,
    },
    /// Writes are failing (the store hit an I/O error and is being reopened). Nothing of the
    /// write was applied.
    #[error("the store {path} is unavailable after an I/O error ({source}); the write was not applied, retry shortly")]
    Unavailable {
        /// The database file.
        path: PathBuf,
        /// The error that broke the store.
        #[source]
        source: Arc<::redb::Error>,
    },
    /// The store file was deleted or replaced while the publisher had it open. Nothing written
    /// since is acknowledged; the publisher stays not ready until restarted.
    #[error("the store {path} was deleted or replaced while in use; the write was not applied; restore the file and restart revbloom")]
    Replaced {
        /// The database file.
        path: PathBuf,
    },
    /// The PostgreSQL store could not be reached or set up at start.
    #[error("cannot use the PostgreSQL store {url} (check that the server runs, that the URL's host, port, database, user and password are right, and with sslmode=require that its certificate is trusted for that host): {}", revbloom::sync::tls::error_chain(&**source))]
    Connect {
        /// The store URL, without its password.
        url: String,
        /// What the driver said.
        #[source]
        source: Arc<tokio_postgres::Error>,
    },
    /// The TLS settings for the PostgreSQL store are unusable (its CA file, say).
    #[error("cannot set up TLS for the PostgreSQL store {url}: {source}")]
    Tls {
        /// The store URL, without its password.
        url: String,
        /// What is wrong.
        #[source]
        source: Arc<revbloom::sync::ClientTlsError>,
    },
    /// The PostgreSQL schema was created by a newer revbloom.
    #[error("the PostgreSQL store {url} has schema version {found}, newer than the {supported} this revbloom understands; upgrade revbloom on every replica")]
    Schema {
        /// The store URL, without its password.
        url: String,
        /// The version found in the database.
        found: i32,
        /// The version this build writes.
        supported: i32,
    },
    /// A PostgreSQL statement failed or the connection is down. Nothing of the failed write
    /// was acknowledged; the replica reconnects by itself.
    #[error("the PostgreSQL store {url} is unavailable; the write was not applied, retry shortly: {}", revbloom::sync::tls::error_chain(&**source))]
    Database {
        /// The store URL, without its password.
        url: String,
        /// What the driver said.
        #[source]
        source: Arc<tokio_postgres::Error>,
    },
    /// A publication was refused by the database because another replica became the builder
    /// (its leader epoch is newer): this replica stops building.
    #[error("the publication of generation {generation} was refused: builder epoch {epoch} was superseded by another replica; this replica stops building and follows")]
    Fenced {
        /// The epoch this replica built under.
        epoch: u64,
        /// The generation refused.
        generation: u64,
    },
    /// No random seed could be drawn for a new PostgreSQL store.
    #[error("could not draw a random hash seed for the new store: {0}; check the system's random source")]
    Seed(#[source] std::io::Error),
    /// The writer thread has stopped (the server is shutting down).
    #[error(
        "the store is shutting down and accepts no more writes; retry against the restarted server"
    )]
    Closed,
}

impl From<::redb::Error> for StoreError {
    fn from(e: ::redb::Error) -> Self {
        StoreError::Transaction(Arc::new(e))
    }
}

/// Why the store cannot take writes now (see [`Store::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFault {
    /// A write hit an I/O error; the writer is reopening the file with backoff.
    WriteFailing,
    /// The file at the store's path is not the one open (deleted or replaced underneath).
    Replaced,
}

/// A cheap, cloneable handle to the store, whichever backend holds it. Writes are queued to
/// the backend's group-commit writer and return once durable.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Redb(RedbStore),
    Postgres(PgStore),
}

/// Owns the store's writer. [`StoreWriter::join`] waits until every [`Store`] handle is
/// dropped and the last queued write is committed: call it on shutdown, off the async
/// runtime's worker threads (e.g. in `spawn_blocking`).
pub struct StoreWriter {
    inner: WriterKind,
}

enum WriterKind {
    Redb(RedbWriter),
    Postgres(PgWriter),
}

impl StoreWriter {
    /// Wait for the writer to drain its queue and exit. It exits once every [`Store`] handle
    /// is gone, so drop them first.
    pub fn join(self) {
        match self.inner {
            WriterKind::Redb(w) => w.join(),
            WriterKind::Postgres(w) => w.join(),
        }
    }
}

/// Dispatch one call to the backend.
macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.backend {
            Backend::Redb($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Open (or create) the redb store in `data_dir` and start its writer thread; see
    /// [`RedbStore::open`]. Every commit is forwarded to `on_commit` when given.
    pub fn open(
        data_dir: &Path,
        on_commit: Option<mpsc::UnboundedSender<Committed>>,
    ) -> Result<(Store, StoreWriter), StoreError> {
        let (s, w) = RedbStore::open(data_dir, on_commit)?;
        Ok((
            Store::from(s),
            StoreWriter {
                inner: WriterKind::Redb(w),
            },
        ))
    }

    /// Connect to the PostgreSQL store at `url`, create its schema if missing, and start the
    /// group-commit writer; see [`PgStore::connect`].
    pub async fn connect_postgres(url: &str) -> Result<(Store, StoreWriter), StoreError> {
        Self::connect_postgres_with(url, &revbloom::sync::ClientTls::system_roots()).await
    }

    /// [`Store::connect_postgres`] trusting `tls` for the database's certificate (used when
    /// the URL says `sslmode=require`; see [`PgStore::connect_with`]).
    pub async fn connect_postgres_with(
        url: &str,
        tls: &revbloom::sync::ClientTls,
    ) -> Result<(Store, StoreWriter), StoreError> {
        let (s, w) = PgStore::connect_with(url, tls).await?;
        Ok((
            Store::from(s),
            StoreWriter {
                inner: WriterKind::Postgres(w),
            },
        ))
    }

    /// The PostgreSQL backend, when this store is one.
    pub fn postgres(&self) -> Option<&PgStore> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Redb(_) => None,
        }
    }

    /// The redb file's path, when this store is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Redb(r) => Some(r.path()),
            Backend::Postgres(_) => None,
        }
    }

    /// This handle with `iss` (normalised; empty means none) as the issuer assumed by
    /// [`Store::lookup`] for queries that name none: the deployment's `default_iss`.
    pub fn with_default_issuer(self, iss: Option<&str>) -> Self {
        let backend = match self.backend {
            Backend::Redb(r) => Backend::Redb(r.with_default_issuer(iss)),
            Backend::Postgres(p) => Backend::Postgres(p.with_default_issuer(iss)),
        };
        Store { backend }
    }

    /// Why writes cannot succeed now, if they cannot.
    pub fn fault(&self) -> Option<StoreFault> {
        dispatch!(self, s => s.fault())
    }

    /// Write transactions committed since open: with group commit, far fewer than the
    /// requests acknowledged under concurrency.
    pub fn commits(&self) -> u64 {
        dispatch!(self, s => s.commits())
    }

    /// Durably store `revocations` in one transaction; returns once committed.
    pub async fn revoke(&self, revocations: Vec<Revocation>) -> Result<RevokeOutcome, StoreError> {
        self.revoke_with(revocations, Vec::new()).await
    }

    /// Durably store `revocations` and `jti_cutoffs` (revocations made without `exp`, as
    /// cutoffs on claim [`JTI_CLAIM`](revbloom::cutoff::JTI_CLAIM)) in one transaction;
    /// returns once committed. A `jti` cutoff already stored counts as a duplicate.
    pub async fn revoke_with(
        &self,
        revocations: Vec<Revocation>,
        jti_cutoffs: Vec<Cutoff>,
    ) -> Result<RevokeOutcome, StoreError> {
        dispatch!(self, s => s.revoke_with(revocations, jti_cutoffs).await)
    }

    /// Durably store a cutoff; returns whether it changed anything (a later cutoff for the
    /// same key already stored makes it a no-op).
    pub async fn cutoff(&self, cutoff: Cutoff) -> Result<bool, StoreError> {
        dispatch!(self, s => s.cutoff(cutoff).await)
    }

    /// Durably record that `generation` has been (or is about to be) published, so a restart
    /// continues above it. Never lowers the stored value.
    pub async fn set_generation(&self, generation: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.set_generation(generation).await,
            Backend::Postgres(s) => s.raise_generation(generation).await,
        }
    }

    /// Record a generation before anyone can see it. redb keeps its number; PostgreSQL keeps
    /// the number and the bytes (for the other replicas to serve), refused by the database
    /// unless `p.epoch` is still the builder's epoch ([`StoreError::Fenced`]).
    pub async fn record_publication(&self, p: &Publication) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.set_generation(p.generation).await,
            Backend::Postgres(s) => s.record_publication(p).await,
        }
    }

    /// The hash seed every builder of this store uses, when the store keeps one (PostgreSQL:
    /// a new builder continues with its predecessor's seed). `None`: draw a fresh one.
    pub async fn lineage_seed(&self) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Redb(_) => Ok(None),
            Backend::Postgres(s) => s.seed().await.map(Some),
        }
    }

    /// The last published generation and its snapshot as handed out (sealed unless sealing
    /// is off), when the store keeps it: PostgreSQL does, for a new builder to continue the
    /// lineage with a delta; redb does not (`None`), as every start there is a new lineage.
    pub async fn last_snapshot(&self) -> Result<Option<(u64, axum::body::Bytes)>, StoreError> {
        match &self.backend {
            Backend::Redb(_) => Ok(None),
            Backend::Postgres(s) => s.last_snapshot().await,
        }
    }

    /// Delete revocations and cutoffs no verifier can need at publisher time `now`, and raise
    /// the prune watermark to [`Bounds::earliest_useful_exp`]`(now)` in the same transaction.
    pub async fn prune(&self, now: u64, bounds: Bounds) -> Result<Pruned, StoreError> {
        dispatch!(self, s => s.prune(now, bounds).await)
    }

    /// The latest stored `exp` of a revocation of `jti` for a token of issuer `iss`, if
    /// revoked: see [`Store::lookup_covered`].
    pub async fn lookup(&self, iss: Option<&str>, jti: &str) -> Result<Option<u64>, StoreError> {
        self.lookup_covered(iss, jti).await.map(|l| l.exp)
    }

    /// Whether a token with `jti` and issuer `iss` is revoked, with the prune watermark, from
    /// one consistent read. The token's issuer is `iss` (normalised) or, when absent, the
    /// default issuer; it is revoked by a revocation for that issuer or by one for every
    /// issuer (stored without `iss`).
    pub async fn lookup_covered(&self, iss: Option<&str>, jti: &str) -> Result<Lookup, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.lookup_covered(iss, jti),
            Backend::Postgres(s) => s.lookup_covered(iss, jti).await,
        }
    }

    /// Every claim cutoffs were stored for, sorted.
    pub async fn cutoff_claims(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.cutoff_claims(),
            Backend::Postgres(s) => s.cutoff_claims().await,
        }
    }

    /// The prune watermark (0 if the store was never pruned): see [`Lookup::pruned_before`].
    pub async fn pruned_before(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.pruned_before(),
            Backend::Postgres(s) => s.pruned_before().await,
        }
    }

    /// The last generation recorded (0 on a new store).
    pub async fn generation(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.generation(),
            Backend::Postgres(s) => s.generation().await,
        }
    }

    /// Numbers of stored revocations and cutoffs.
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.counts(),
            Backend::Postgres(s) => s.counts().await,
        }
    }

    /// Numbers of stored revocations and cutoffs for the metrics gauges, at a cost that does
    /// not grow with the store: [`Store::counts`] with the embedded store (its tables know
    /// their length); with PostgreSQL, where counting scans the tables, an exact count at
    /// most every [`postgres::COUNTS_REFRESH`] and the last one in between.
    pub async fn counts_for_metrics(&self) -> Result<(u64, u64), StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.counts(),
            Backend::Postgres(s) => s.counts_recent().await,
        }
    }

    /// Call `f` with every stored revocation and then `g` with every cutoff, from one
    /// consistent read snapshot: how the publisher rebuilds its window on start.
    pub async fn scan(
        &self,
        f: impl FnMut(Revocation),
        g: impl FnMut(Cutoff),
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.scan(f, g),
            Backend::Postgres(s) => s.scan(f, g).await,
        }
    }
}

impl From<RedbStore> for Store {
    fn from(s: RedbStore) -> Self {
        Store {
            backend: Backend::Redb(s),
        }
    }
}

impl From<PgStore> for Store {
    fn from(s: PgStore) -> Self {
        Store {
            backend: Backend::Postgres(s),
        }
    }
}
