//! The embedded backend: one redb file in the data folder, written by one publisher.
//!
//! Writes go through a single writer thread that practises group commit (see [`super`]);
//! redb's default `Durability::Immediate` commit ends in `fdatasync`, so concurrent
//! revocations share one fsync.
//!
//! Reads (exact lookups, rebuilding the window on start) use redb read transactions directly;
//! they see the last committed state and never wait for the writer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use revbloom::bounds::Bounds;
use revbloom::cutoff::{JTI_CLAIM, MAX_SNAPSHOT_CLAIMS};
use revbloom::hash::normalize_issuer;

use super::{Committed, Cutoff, Lookup, Pruned, Revocation, RevokeOutcome, StoreError, StoreFault};

/// `(iss or "", jti, exp)`. An absent issuer (a revocation for every issuer) is stored as the
/// empty string, which the API refuses as an explicit issuer, so the two never meet. `exp` is part of the key: a jti
/// revoked twice with two different `exp` values keeps both, because the window buckets by
/// `exp` and we cannot know which one the real token carries — dropping either could make a
/// revoked token read as clear after a restart.
const REVOCATIONS: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("revocations");
/// `(iss or "", claim, value) -> before`.
const CUTOFFS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("cutoffs");
/// Named counters: [`GENERATION_KEY`] and [`PRUNED_BEFORE_KEY`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Every claim a cutoff was ever stored for (at most
/// [`MAX_SNAPSHOT_CLAIMS`](revbloom::cutoff::MAX_SNAPSHOT_CLAIMS)): snapshots list them so
/// verifiers check each one, and the list never shrinks, so a publisher's window can always
/// take the claims of the cutoffs it is sent.
const CUTOFF_CLAIMS: TableDefinition<&str, ()> = TableDefinition::new("cutoff_claims");
const GENERATION_KEY: &str = "generation";
/// The prune watermark: every revocation with an `exp` below it may have been deleted.
const PRUNED_BEFORE_KEY: &str = "pruned_before";

/// File name of the store inside the data folder.
pub const STORE_FILE: &str = "revbloom.redb";
/// Marker written (mode 0600) once a data folder holds a store: from then on a missing or empty
/// store is an accident to report, not a fresh start.
pub const INIT_MARKER: &str = "initialized";

/// First and longest wait between attempts to reopen the store after an I/O error.
const REOPEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Most requests folded into one transaction. Bounds the latency one commit adds to the
/// requests queued behind it, and the memory a group holds.
const MAX_GROUP: usize = 1024;

/// Convert any redb error type through the umbrella `redb::Error`.
fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::from(e.into())
}

enum Op {
    /// Revocations with `exp`, and revocations without (`jti` cutoffs).
    Revoke(Vec<Revocation>, Vec<Cutoff>),
    Cutoff(Cutoff),
    SetGeneration(u64),
    Prune {
        now: u64,
        bounds: Bounds,
    },
}

enum Reply {
    Revoke(RevokeOutcome),
    /// A cutoff on a claim beyond the cap on distinct claims was refused.
    TooManyClaims(String),
    Cutoff(bool),
    Done,
    Pruned(Pruned),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// `(device, inode)` of a file: what tells the open file from whatever is at its path now.
type FileId = (u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|m| (m.len(), 0))
    }
}

/// State shared by every [`RedbStore`] handle and the writer thread.
struct Shared {
    path: PathBuf,
    /// `None` while the writer is reopening the file after an I/O error.
    db: RwLock<Option<Arc<Database>>>,
    /// Identity of the file opened, compared with the path's on every commit.
    id: Mutex<Option<FileId>>,
    /// The error that broke writes, until a reopen succeeds.
    broken: Mutex<Option<Arc<redb::Error>>>,
    replaced: AtomicBool,
    commits: AtomicU64,
}

impl Shared {
    fn replaced(&self) -> bool {
        if self.replaced.load(Ordering::Relaxed) {
            return true;
        }
        let opened = *self.id.lock().unwrap_or_else(|p| p.into_inner());
        let gone = opened.is_some() && file_id(&self.path) != opened;
        if gone && !self.replaced.swap(true, Ordering::Relaxed) {
            self.keep_history_marker();
        }
        gone
    }

    /// The store file left its path. If the data folder went with it (`rm -rf DATA`, a disk
    /// no longer mounted), its initialization marker went too, and a restart would begin a
    /// new, empty history without a word. Put the marker back (and only the marker), so that
    /// a restart is refused with [`StoreError::Missing`] until `--init` or a restore.
    fn keep_history_marker(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let marker = dir.join(INIT_MARKER);
        if marker.exists() || self.path.exists() {
            return;
        }
        let kept = create_private_dir(dir)
            .and_then(|()| {
                revbloom::sync::write_file_atomically(&marker, b"revbloom data folder\n")
            })
            .and_then(|()| set_private_file(&marker));
        match kept {
            Ok(()) => tracing::error!(
                marker = %marker.display(),
                "the store was deleted with its data folder under the running publisher; kept \
                 the folder's marker so that a restart refuses to begin a new history without --init"
            ),
            Err(e) => tracing::error!(
                marker = %marker.display(),
                error = %e,
                "the store was deleted with its data folder, and its marker could not be kept: \
                 a restart will begin a new, empty history"
            ),
        }
    }

    fn unavailable(&self) -> StoreError {
        if self.replaced() {
            return StoreError::Replaced {
                path: self.path.clone(),
            };
        }
        let cause = self
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        StoreError::Unavailable {
            path: self.path.clone(),
            source: cause.unwrap_or_else(|| Arc::new(redb::Error::DatabaseClosed)),
        }
    }
}

/// A cheap, cloneable handle to the store. Writes are queued to the group-commit writer;
/// reads run on the caller's thread (they are short and never block on the writer).
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Job>,
    /// The issuer assumed for lookups without `iss` (normalised).
    default_iss: Option<Arc<str>>,
}

/// Owns the writer thread. [`RedbWriter::join`] waits until every [`RedbStore`] handle is
/// dropped and the last queued write is committed: call it on shutdown.
pub struct RedbWriter {
    thread: Option<JoinHandle<()>>,
}

impl RedbWriter {
    /// Wait for the writer thread to drain its queue and exit. It exits once every [`RedbStore`]
    /// handle is gone, so drop them first.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            // A panic in the writer would already have failed every waiter with `Closed`.
            let _ = t.join();
        }
    }
}

/// Create `dir` (mode 0700) if missing; tighten an existing folder that group or others can
/// read, write or enter to 0700, with a warning: it holds the admin token and every revoked
/// `jti`. A folder owned by someone else is left alone (chmod would fail) and only warned of.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        match std::fs::metadata(dir) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                let mode = m.permissions().mode() & 0o777;
                match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
                    Ok(()) => tracing::warn!(
                        dir = %dir.display(),
                        "the data folder was mode {mode:o}; tightened to 700"
                    ),
                    Err(e) => tracing::warn!(
                        dir = %dir.display(),
                        error = %e,
                        "the data folder is mode {mode:o} and could not be tightened to 700"
                    ),
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(_) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir),
        }
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

fn set_private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Allow the next [`RedbStore::open`] of `data_dir` to start a new, empty history: remove the
/// initialization marker, but only when the store file is missing or empty. An existing store
/// is never discarded by this; returns whether the marker was removed.
pub fn allow_new_history(data_dir: &Path) -> std::io::Result<bool> {
    let path = data_dir.join(STORE_FILE);
    let empty = match std::fs::metadata(&path) {
        Ok(m) => m.len() == 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e),
    };
    if !empty {
        return Ok(false);
    }
    match std::fs::remove_file(data_dir.join(INIT_MARKER)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The text of a caught panic's payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "redb panicked".to_owned())
}

/// Open `path` with its integrity verified (every page checksum of the committed trees) and
/// the tables created. redb may panic on pages altered outside it, so the panic is caught here
/// and reported as [`StoreError::Damaged`]: nothing of a corrupt file escapes as a crash.
fn open_checked(path: &Path) -> Result<Database, StoreError> {
    let damaged = |detail: String, source: Option<Box<redb::Error>>| StoreError::Damaged {
        path: path.to_path_buf(),
        detail,
        source,
    };
    let started = std::time::Instant::now();
    let attempt = catch_unwind(AssertUnwindSafe(|| -> Result<Database, redb::Error> {
        // The integrity check takes redb's repair path on every open (it rebuilds the
        // allocator state from the verified trees rather than trusting the recorded one), so
        // its repair callback runs after a clean shutdown too and says nothing about one.
        let mut builder = Database::builder();
        builder.set_check_integrity_on_open(true);
        let db = builder.create(path)?;
        // Create the tables up front so readers never meet "table does not exist".
        let w = db.begin_write()?;
        {
            w.open_table(REVOCATIONS)?;
            w.open_table(CUTOFFS)?;
            w.open_table(META)?;
            normalize_stored_issuers(&w)?;
            record_cutoff_claims(&w)?;
        }
        w.commit()?;
        Ok(db)
    }));
    match attempt {
        Ok(Ok(db)) => {
            tracing::info!(
                path = %path.display(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "store opened, every page checksum verified"
            );
            Ok(db)
        }
        Ok(Err(e @ redb::Error::Corrupted(_))) => Err(damaged(e.to_string(), Some(Box::new(e)))),
        Ok(Err(e)) => Err(StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        }),
        Err(p) => Err(damaged(panic_text(p.as_ref()), None)),
    }
}

/// Check the store of `data_dir` as `revbloom check-store` does: open it read-write with every
/// page checksum verified (redb repairs an unclean shutdown on the way), count its rows, and
/// close it. Must not run while a publisher uses the folder (redb refuses a second open).
pub fn check_store(data_dir: &Path) -> Result<(u64, u64), StoreError> {
    let path = data_dir.join(STORE_FILE);
    match std::fs::metadata(&path) {
        Err(_) => return Err(StoreError::Missing { path }),
        Ok(m) if m.len() == 0 => return Err(StoreError::Emptied { path }),
        Ok(_) => {}
    }
    let db = open_checked(&path)?;
    let counted = catch_unwind(AssertUnwindSafe(|| -> Result<(u64, u64), redb::Error> {
        let r = db.begin_read()?;
        let mut rev = 0;
        for item in r.open_table(REVOCATIONS)?.iter()? {
            item?;
            rev += 1;
        }
        let mut cut = 0;
        for item in r.open_table(CUTOFFS)?.iter()? {
            item?;
            cut += 1;
        }
        Ok((rev, cut))
    }));
    match counted {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(StoreError::Damaged {
            path,
            detail: e.to_string(),
            source: Some(Box::new(e)),
        }),
        Err(p) => Err(StoreError::Damaged {
            path,
            detail: panic_text(p.as_ref()),
            source: None,
        }),
    }
}

impl RedbStore {
    /// Open (or create) `data_dir/revbloom.redb` and start the writer thread. Every commit is
    /// forwarded to `on_commit` when given, so the publisher sees exactly what is durable.
    ///
    /// The folder is created mode 0700 and the file is made 0600. A store that redb cannot
    /// verify is refused ([`StoreError::Damaged`]); in a folder already initialized (see
    /// [`INIT_MARKER`]), a missing or empty store is refused ([`StoreError::Missing`],
    /// [`StoreError::Emptied`]) rather than silently started anew (see
    /// [`allow_new_history`]).
    pub fn open(
        data_dir: &Path,
        on_commit: Option<mpsc::UnboundedSender<Committed>>,
    ) -> Result<(RedbStore, RedbWriter), StoreError> {
        let path = data_dir.join(STORE_FILE);
        let io_err = |e: std::io::Error| StoreError::Open {
            path: path.clone(),
            source: redb::Error::Io(e),
        };
        create_private_dir(data_dir).map_err(io_err)?;
        let marker = data_dir.join(INIT_MARKER);
        let initialized = marker.exists();
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && initialized => {
                return Err(StoreError::Missing { path });
            }
            Ok(m) if m.len() == 0 && initialized => return Err(StoreError::Emptied { path }),
            _ => {}
        }
        let db = open_checked(&path)?;
        set_private_file(&path).map_err(io_err)?;
        if !initialized {
            revbloom::sync::write_file_atomically(&marker, b"revbloom data folder\n")
                .map_err(io_err)?;
            set_private_file(&marker).map_err(io_err)?;
        }
        let shared = Arc::new(Shared {
            id: Mutex::new(file_id(&path)),
            path,
            db: RwLock::new(Some(Arc::new(db))),
            broken: Mutex::new(None),
            replaced: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        });
        // Bounded, so a flood of writers waits for the disk instead of growing a queue.
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        let writer_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("revbloom-store-writer".into())
            .spawn(move || {
                writer_loop(&writer_shared, rx, on_commit);
                // A deletion no commit or probe noticed is still noticed at shutdown.
                writer_shared.replaced();
            })
            .map_err(StoreError::WriterThread)?;
        Ok((
            RedbStore {
                shared,
                tx,
                default_iss: None,
            },
            RedbWriter {
                thread: Some(thread),
            },
        ))
    }

    /// The open database, or the error that explains why there is none right now.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let guard = self.shared.db.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(db) if !self.shared.replaced.load(Ordering::Relaxed) => Ok(Arc::clone(db)),
            _ => Err(self.shared.unavailable()),
        }
    }

    /// Why writes cannot succeed now, if they cannot: the writer is recovering from an I/O
    /// error, or the file at the store's path is no longer the one open (checked now).
    pub fn fault(&self) -> Option<StoreFault> {
        if self.shared.replaced() {
            Some(StoreFault::Replaced)
        } else if self
            .shared
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            Some(StoreFault::WriteFailing)
        } else {
            None
        }
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// This handle with `iss` (normalised; empty means none) as the issuer assumed by
    /// [`RedbStore::lookup`] for queries that name none: the deployment's `default_iss`.
    pub fn with_default_issuer(mut self, iss: Option<&str>) -> Self {
        self.default_iss = iss
            .map(normalize_issuer)
            .filter(|i| !i.is_empty())
            .map(Arc::from);
        self
    }

    async fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Durably store `revocations` in one transaction; returns once committed to disk.
    pub async fn revoke(&self, revocations: Vec<Revocation>) -> Result<RevokeOutcome, StoreError> {
        self.revoke_with(revocations, Vec::new()).await
    }

    /// Durably store `revocations` and `jti_cutoffs` (revocations made without `exp`, as
    /// cutoffs on claim [`JTI_CLAIM`](revbloom::cutoff::JTI_CLAIM)) in one transaction;
    /// returns once committed to disk. A `jti` cutoff already stored counts as a duplicate.
    pub async fn revoke_with(
        &self,
        revocations: Vec<Revocation>,
        jti_cutoffs: Vec<Cutoff>,
    ) -> Result<RevokeOutcome, StoreError> {
        match self.submit(Op::Revoke(revocations, jti_cutoffs)).await? {
            Reply::Revoke(o) => Ok(o),
            Reply::TooManyClaims(claim) => Err(StoreError::TooManyClaims { claim }),
            _ => Err(StoreError::UnexpectedReply { request: "revoke" }),
        }
    }

    /// Durably store a cutoff; returns whether it changed anything (a later cutoff for the
    /// same key already stored makes it a no-op).
    pub async fn cutoff(&self, cutoff: Cutoff) -> Result<bool, StoreError> {
        match self.submit(Op::Cutoff(cutoff)).await? {
            Reply::Cutoff(changed) => Ok(changed),
            Reply::TooManyClaims(claim) => Err(StoreError::TooManyClaims { claim }),
            _ => Err(StoreError::UnexpectedReply { request: "cutoff" }),
        }
    }

    /// Durably record that `generation` has been (or is about to be) published, so a restart
    /// continues above it. Never lowers the stored value.
    pub async fn set_generation(&self, generation: u64) -> Result<(), StoreError> {
        self.submit(Op::SetGeneration(generation)).await.map(|_| ())
    }

    /// Delete revocations and cutoffs no verifier can need at publisher time `now`
    /// ([`Bounds::revocation_needed_until`], [`Bounds::cutoff_needed_until`] before `now`),
    /// and raise the prune watermark to [`Bounds::earliest_useful_exp`]`(now)` in the same
    /// transaction.
    pub async fn prune(&self, now: u64, bounds: Bounds) -> Result<Pruned, StoreError> {
        let op = Op::Prune { now, bounds };
        match self.submit(op).await? {
            Reply::Pruned(p) => Ok(p),
            _ => Err(StoreError::UnexpectedReply { request: "prune" }),
        }
    }

    /// Write transactions committed since open: with group commit, far fewer than the
    /// requests acknowledged under concurrency.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The latest stored `exp` of a revocation of `jti` for a token of issuer `iss`, if
    /// revoked: see [`RedbStore::lookup_covered`].
    pub fn lookup(&self, iss: Option<&str>, jti: &str) -> Result<Option<u64>, StoreError> {
        self.lookup_covered(iss, jti).map(|l| l.exp)
    }

    /// Whether a token with `jti` and issuer `iss` is revoked, with the prune watermark, from
    /// one read transaction. The token's issuer is `iss` (normalised) or, when absent, the
    /// default issuer; it is revoked by a revocation for that issuer or by one for every
    /// issuer (stored without `iss`).
    pub fn lookup_covered(&self, iss: Option<&str>, jti: &str) -> Result<Lookup, StoreError> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(REVOCATIONS).map_err(db_err)?;
        let effective = iss
            .map(normalize_issuer)
            .filter(|i| !i.is_empty())
            .or(self.default_iss.as_deref());
        let latest = |iss: &str| -> Result<Option<u64>, StoreError> {
            let mut range = t
                .range((iss, jti, 0)..=(iss, jti, u64::MAX))
                .map_err(db_err)?;
            match range.next_back() {
                Some(item) => Ok(Some(item.map_err(db_err)?.0.value().2)),
                None => Ok(None),
            }
        };
        let mut exp = latest("")?;
        if let Some(iss) = effective {
            exp = exp.max(latest(iss)?);
        }
        // A revocation made without `exp` is a cutoff on the `jti`.
        let cut = r.open_table(CUTOFFS).map_err(db_err)?;
        let jti_cutoff = |iss: &str| -> Result<Option<u64>, StoreError> {
            Ok(cut
                .get((iss, JTI_CLAIM, jti))
                .map_err(db_err)?
                .map(|g| g.value()))
        };
        let mut without_exp = jti_cutoff("")?;
        if let Some(iss) = effective {
            without_exp = without_exp.max(jti_cutoff(iss)?);
        }
        let meta = r.open_table(META).map_err(db_err)?;
        let pruned_before = meta
            .get(PRUNED_BEFORE_KEY)
            .map_err(db_err)?
            .map(|g| g.value())
            .unwrap_or(0);
        Ok(Lookup {
            exp,
            without_exp,
            pruned_before,
        })
    }

    /// Every claim cutoffs were stored for, sorted.
    pub fn cutoff_claims(&self) -> Result<Vec<String>, StoreError> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(CUTOFF_CLAIMS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            out.push(item.map_err(db_err)?.0.value().to_owned());
        }
        Ok(out)
    }

    /// The prune watermark (0 if the store was never pruned): see [`Lookup::pruned_before`].
    pub fn pruned_before(&self) -> Result<u64, StoreError> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(META).map_err(db_err)?;
        let got = t.get(PRUNED_BEFORE_KEY).map_err(db_err)?;
        Ok(got.map(|g| g.value()).unwrap_or(0))
    }

    /// The last generation recorded with [`RedbStore::set_generation`] (0 on a new store).
    pub fn generation(&self) -> Result<u64, StoreError> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(META).map_err(db_err)?;
        let got = t.get(GENERATION_KEY).map_err(db_err)?;
        Ok(got.map(|g| g.value()).unwrap_or(0))
    }

    /// Numbers of stored revocations and cutoffs.
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let rev = r.open_table(REVOCATIONS).map_err(db_err)?.len();
        let cut = r.open_table(CUTOFFS).map_err(db_err)?.len();
        Ok((rev.map_err(db_err)?, cut.map_err(db_err)?))
    }

    /// Call `f` with every stored revocation and then `g` with every cutoff, from one
    /// consistent read snapshot: how the publisher rebuilds its window on start.
    pub fn scan(
        &self,
        mut f: impl FnMut(Revocation),
        mut g: impl FnMut(Cutoff),
    ) -> Result<(), StoreError> {
        let r = self.db()?.begin_read().map_err(db_err)?;
        let t = r.open_table(REVOCATIONS).map_err(db_err)?;
        for item in t.iter().map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            let (iss, jti, exp) = k.value();
            f(Revocation {
                iss: (!iss.is_empty()).then(|| iss.to_owned()),
                jti: jti.to_owned(),
                exp,
            });
        }
        let t = r.open_table(CUTOFFS).map_err(db_err)?;
        for item in t.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (iss, claim, value) = k.value();
            g(Cutoff {
                iss: (!iss.is_empty()).then(|| iss.to_owned()),
                claim: claim.to_owned(),
                value: value.to_owned(),
                before: v.value(),
            });
        }
        Ok(())
    }
}

/// Record the claims of stored cutoffs in the claims table (a store written before it
/// existed). A no-op when every claim is recorded.
fn record_cutoff_claims(w: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let cut = w.open_table(CUTOFFS)?;
    let mut claims = w.open_table(CUTOFF_CLAIMS)?;
    let mut seen = std::collections::BTreeSet::new();
    for item in cut.iter()? {
        let (k, _) = item?;
        seen.insert(k.value().1.to_owned());
    }
    for claim in seen {
        claims.insert(claim.as_str(), ())?;
    }
    Ok(())
}

/// Rewrite rows whose issuer is not in normal form (a store written before issuers were
/// normalised): lookups normalise the issuer they are asked about, so a row kept under
/// `https://idp/` would never be found again while the filter still matches its token. A
/// cutoff merged into an existing row keeps the later `before`. A no-op on a normalised store.
fn normalize_stored_issuers(w: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let mut rev = w.open_table(REVOCATIONS)?;
    let mut stale = Vec::new();
    for item in rev.iter()? {
        let (k, _) = item?;
        let (iss, jti, exp) = k.value();
        if normalize_issuer(iss) != iss {
            stale.push((iss.to_owned(), jti.to_owned(), exp));
        }
    }
    for (iss, jti, exp) in stale {
        rev.remove((iss.as_str(), jti.as_str(), exp))?;
        rev.insert((normalize_issuer(&iss), jti.as_str(), exp), ())?;
    }
    let mut cut = w.open_table(CUTOFFS)?;
    let mut stale = Vec::new();
    for item in cut.iter()? {
        let (k, v) = item?;
        let (iss, claim, value) = k.value();
        if normalize_issuer(iss) != iss {
            stale.push((
                iss.to_owned(),
                claim.to_owned(),
                value.to_owned(),
                v.value(),
            ));
        }
    }
    for (iss, claim, value, before) in stale {
        cut.remove((iss.as_str(), claim.as_str(), value.as_str()))?;
        let key = (normalize_issuer(&iss), claim.as_str(), value.as_str());
        let kept = cut.get(key)?.map(|v| v.value()).unwrap_or(0);
        cut.insert(key, before.max(kept))?;
    }
    Ok(())
}

/// Errors after which redb answers every call with `PreviousIo` until the file is reopened.
fn breaks_the_handle(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

/// The group-commit loop: block for one job, sweep up whatever else is queued, apply all in
/// one transaction, commit (fsync), then answer every waiter and notify the publisher.
///
/// After an I/O error the handle is dropped (redb would fail every later call) and the file is
/// reopened, integrity-checked, with exponential backoff; meanwhile every write is refused with
/// [`StoreError::Unavailable`]. A file replaced underneath is never reopened: that needs an
/// operator, so writes are refused with [`StoreError::Replaced`] until restart.
fn writer_loop(
    shared: &Shared,
    mut rx: mpsc::Receiver<Job>,
    on_commit: Option<mpsc::UnboundedSender<Committed>>,
) {
    let mut backoff = REOPEN_BACKOFF.0;
    let mut next_reopen = Instant::now();
    loop {
        let current = shared.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(db) = current else {
            // Broken: answer whatever is queued at once, and try to reopen when it is time.
            loop {
                match rx.try_recv() {
                    Ok(job) => {
                        let _ = job.reply.send(Err(shared.unavailable()));
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if now >= next_reopen && !shared.replaced() {
                match reopen(shared) {
                    Ok(()) => {
                        backoff = REOPEN_BACKOFF.0;
                        tracing::info!(path = %shared.path.display(), "the store is writable again");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "reopening the store failed");
                        next_reopen = now + backoff;
                        backoff = (backoff * 2).min(REOPEN_BACKOFF.1);
                    }
                }
            }
            // Polled, not blocked on: a reopen is due even when no write arrives.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let Some(first) = rx.blocking_recv() else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Committing into a file that is no longer at the path would be lost at restart.
        if shared.replaced() {
            refuse(jobs, shared);
            continue;
        }
        let ops: Vec<&Op> = jobs.iter().map(|j| &j.op).collect();
        match apply(&db, &ops) {
            // Checked again after the commit: a replacement during it is not acknowledged.
            Ok(_) if shared.replaced() => refuse(jobs, shared),
            Ok((replies, committed)) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                if let Some(sink) = &on_commit {
                    for c in committed {
                        // The publisher gone means shutdown; the data is durable regardless.
                        let _ = sink.send(c);
                    }
                }
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let _ = job.reply.send(Ok(reply));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                if breaks_the_handle(&e) {
                    tracing::error!(error = %e, path = %shared.path.display(), "store I/O error; reopening the store");
                    *shared.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&e));
                    *shared.db.write().unwrap_or_else(|p| p.into_inner()) = None;
                    next_reopen = Instant::now() + backoff;
                }
                for job in jobs {
                    let err = if breaks_the_handle(&e) {
                        shared.unavailable()
                    } else {
                        StoreError::Transaction(Arc::clone(&e))
                    };
                    let _ = job.reply.send(Err(err));
                }
            }
        }
    }
}

fn refuse(jobs: Vec<Job>, shared: &Shared) {
    for job in jobs {
        let _ = job.reply.send(Err(StoreError::Replaced {
            path: shared.path.clone(),
        }));
    }
}

/// Open the store file again after an I/O error, if it is still the file first opened.
fn reopen(shared: &Shared) -> Result<(), StoreError> {
    let opened = *shared.id.lock().unwrap_or_else(|p| p.into_inner());
    if file_id(&shared.path) != opened {
        if !shared.replaced.swap(true, Ordering::Relaxed) {
            shared.keep_history_marker();
        }
        return Err(StoreError::Replaced {
            path: shared.path.clone(),
        });
    }
    // Fails with `DatabaseAlreadyOpen` while a reader still holds the old handle: retried.
    let db = open_checked(&shared.path)?;
    *shared.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
    *shared.broken.lock().unwrap_or_else(|p| p.into_inner()) = None;
    Ok(())
}

type Applied = (Vec<Reply>, Vec<Committed>);

/// RedbStore `c` unless a later cutoff for its key is stored: (whether a row existed, whether it
/// changed).
fn raise_cutoff(
    cut: &mut redb::Table<'_, (&str, &str, &str), u64>,
    c: &Cutoff,
) -> Result<(bool, bool), redb::Error> {
    let key = (
        c.iss.as_deref().unwrap_or(""),
        c.claim.as_str(),
        c.value.as_str(),
    );
    let old = cut.get(key)?.map(|g| g.value());
    let changed = !matches!(old, Some(old) if old >= c.before);
    if changed {
        cut.insert(key, c.before)?;
    }
    Ok((old.is_some(), changed))
}

/// Whether cutoffs on `claim` may be stored: it is in use already, or fewer than
/// [`MAX_SNAPSHOT_CLAIMS`] claims are (then it is recorded).
fn claim_admitted(
    claims: &mut redb::Table<'_, &str, ()>,
    claim: &str,
) -> Result<bool, redb::Error> {
    if claims.get(claim)?.is_some() {
        return Ok(true);
    }
    if claims.len()? >= MAX_SNAPSHOT_CLAIMS as u64 {
        return Ok(false);
    }
    claims.insert(claim, ())?;
    Ok(true)
}

fn apply(db: &Database, ops: &[&Op]) -> Result<Applied, redb::Error> {
    let w = db.begin_write()?;
    let mut replies = Vec::with_capacity(ops.len());
    let mut committed = Vec::new();
    {
        let mut rev = w.open_table(REVOCATIONS)?;
        let mut cut = w.open_table(CUTOFFS)?;
        let mut meta = w.open_table(META)?;
        let mut claims = w.open_table(CUTOFF_CLAIMS)?;
        for op in ops {
            match op {
                Op::Revoke(list, jti_cutoffs) => {
                    if !jti_cutoffs.is_empty() && !claim_admitted(&mut claims, JTI_CLAIM)? {
                        replies.push(Reply::TooManyClaims(JTI_CLAIM.to_owned()));
                        continue;
                    }
                    let mut outcome = RevokeOutcome::default();
                    for r in list {
                        let key = (r.iss.as_deref().unwrap_or(""), r.jti.as_str(), r.exp);
                        // Insert and look at what it replaced: one B-tree descent.
                        if rev.insert(key, ())?.is_some() {
                            outcome.duplicates += 1;
                        } else {
                            outcome.new += 1;
                        }
                    }
                    for c in jti_cutoffs {
                        match raise_cutoff(&mut cut, c)? {
                            (true, changed) => {
                                outcome.duplicates += 1;
                                if changed {
                                    committed.push(Committed::Cutoff(c.clone()));
                                }
                            }
                            (false, _) => {
                                outcome.new += 1;
                                committed.push(Committed::Cutoff(c.clone()));
                            }
                        }
                    }
                    // All of them, duplicates too (inserting twice into the window is a no-op).
                    committed.push(Committed::Revocations(list.clone()));
                    replies.push(Reply::Revoke(outcome));
                }
                Op::Cutoff(c) => {
                    if !claim_admitted(&mut claims, &c.claim)? {
                        replies.push(Reply::TooManyClaims(c.claim.clone()));
                        continue;
                    }
                    let (_, changed) = raise_cutoff(&mut cut, c)?;
                    if changed {
                        committed.push(Committed::Cutoff(c.clone()));
                    }
                    replies.push(Reply::Cutoff(changed));
                }
                Op::SetGeneration(g) => {
                    let old = meta.get(GENERATION_KEY)?.map(|v| v.value()).unwrap_or(0);
                    if *g > old {
                        meta.insert(GENERATION_KEY, *g)?;
                    }
                    replies.push(Reply::Done);
                }
                Op::Prune { now, bounds } => {
                    let (r0, c0) = (rev.len()?, cut.len()?);
                    rev.retain(|(_, _, exp), ()| bounds.revocation_needed_until(exp) >= *now)?;
                    cut.retain(|_, before| bounds.cutoff_needed_until(before) >= *now)?;
                    // Every revocation with exp below this may now be gone; lookups say so.
                    let watermark = bounds.earliest_useful_exp(*now);
                    let old = meta.get(PRUNED_BEFORE_KEY)?.map(|v| v.value()).unwrap_or(0);
                    if watermark > old {
                        meta.insert(PRUNED_BEFORE_KEY, watermark)?;
                    }
                    replies.push(Reply::Pruned(Pruned {
                        revocations: r0.saturating_sub(rev.len()?),
                        cutoffs: c0.saturating_sub(cut.len()?),
                    }));
                }
            }
        }
    }
    // Durability::Immediate (the default): returns only after the data and the new header
    // are fsynced.
    w.commit()?;
    Ok((replies, committed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_failure_keeps_its_cause() {
        use std::error::Error as _;
        // A regular file where the data folder should be: create_dir_all fails.
        let file = std::env::temp_dir().join(format!("revbloom-store-file-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let e = RedbStore::open(&file, None)
            .err()
            .expect("a file is not a data folder");
        let _ = std::fs::remove_file(&file);
        assert!(matches!(e, StoreError::Open { .. }), "{e}");
        let cause = e.source().expect("the cause is the source");
        assert!(matches!(
            cause.downcast_ref::<redb::Error>(),
            Some(redb::Error::Io(_))
        ));
        // A transaction error shared by a group stays reachable through its Arc.
        let e = StoreError::from(redb::Error::TransactionInProgress);
        assert!(e
            .source()
            .is_some_and(|c| c.to_string().contains("ransaction")));
    }

    fn rev(iss: Option<&str>, jti: &str, exp: u64) -> Revocation {
        Revocation {
            iss: iss.map(str::to_owned),
            jti: jti.into(),
            exp,
        }
    }

    #[tokio::test]
    async fn revocations_survive_reopen_and_prune_drops_expired() {
        let dir = std::env::temp_dir().join(format!("revbloom-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let (store, writer) = RedbStore::open(&dir, None).unwrap();
            let o = store
                .revoke(vec![rev(None, "a", 100), rev(Some("i"), "a", 200)])
                .await
                .unwrap();
            assert_eq!(
                o,
                RevokeOutcome {
                    new: 2,
                    duplicates: 0
                }
            );
            // The same jti restated with an earlier exp is kept too: the filter buckets by exp.
            let o = store
                .revoke(vec![rev(None, "a", 50), rev(None, "a", 100)])
                .await
                .unwrap();
            assert_eq!(
                o,
                RevokeOutcome {
                    new: 1,
                    duplicates: 1
                }
            );
            assert!(store
                .cutoff(Cutoff {
                    iss: None,
                    claim: "sub".into(),
                    value: "alice".into(),
                    before: 10,
                })
                .await
                .unwrap());
            store.set_generation(7).await.unwrap();
            store.set_generation(3).await.unwrap();
            drop(store);
            writer.join();
        }
        let (store, writer) = RedbStore::open(&dir, None).unwrap();
        assert_eq!(store.lookup(None, "a").unwrap(), Some(100));
        assert_eq!(store.lookup(Some("i"), "a").unwrap(), Some(200));
        // The revocation without iss holds for every issuer.
        assert_eq!(store.lookup(Some("j"), "a").unwrap(), Some(100));
        assert_eq!(store.lookup(Some("j"), "b").unwrap(), None);
        assert_eq!(store.generation().unwrap(), 7);
        assert_eq!(store.counts().unwrap(), (3, 1));
        let mut scanned = Vec::new();
        store
            .scan(|r| scanned.push((r.iss, r.jti, r.exp)), |_| {})
            .unwrap();
        scanned.sort();
        assert_eq!(
            scanned,
            vec![
                (None, "a".to_owned(), 50),
                (None, "a".to_owned(), 100),
                (Some("i".to_owned()), "a".to_owned(), 200)
            ]
        );
        assert_eq!(store.pruned_before().unwrap(), 0);
        // Revocations are needed until exp + 10 + 5; the cutoff until before + 100 + 10 + 5.
        let b = Bounds {
            max_token_lifetime: 100,
            leeway: 10,
            max_clock_skew: 5,
        };
        assert_eq!(store.prune(65, b).await.unwrap(), Pruned::default());
        let p = store.prune(66, b).await.unwrap();
        assert_eq!(
            p,
            Pruned {
                revocations: 1,
                cutoffs: 0
            }
        );
        assert_eq!(store.pruned_before().unwrap(), 51);
        assert_eq!(store.lookup(None, "a").unwrap(), Some(100));
        let p = store.prune(150, b).await.unwrap();
        assert_eq!(
            p,
            Pruned {
                revocations: 1,
                cutoffs: 1
            }
        );
        assert_eq!(store.lookup(None, "a").unwrap(), None);
        // The watermark never goes down, and survives a reopen.
        store.prune(120, b).await.unwrap();
        assert_eq!(
            store.lookup_covered(None, "a").unwrap(),
            Lookup {
                exp: None,
                without_exp: None,
                pruned_before: 135
            }
        );
        drop(store);
        writer.join();
        let (store, writer) = RedbStore::open(&dir, None).unwrap();
        assert_eq!(store.pruned_before().unwrap(), 135);
        drop(store);
        writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store written before issuers were normalised is normalised when it opens, so the
    /// lookup (which normalises the issuer it is asked about) still finds every row.
    #[tokio::test]
    async fn unnormalised_issuers_from_an_older_store_are_found() {
        let dir = std::env::temp_dir().join(format!("revbloom-store-norm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            let db = Database::create(dir.join("revbloom.redb")).unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut rev = w.open_table(REVOCATIONS).unwrap();
                rev.insert(("https://a/", "j", 100), ()).unwrap();
                let mut cut = w.open_table(CUTOFFS).unwrap();
                cut.insert(("https://a//", "sub", "eve"), 50).unwrap();
                cut.insert(("https://a", "sub", "eve"), 40).unwrap();
            }
            w.commit().unwrap();
        }
        let (store, writer) = RedbStore::open(&dir, None).unwrap();
        assert_eq!(store.lookup(Some("https://a"), "j").unwrap(), Some(100));
        let mut cutoffs = Vec::new();
        store.scan(|_| {}, |c| cutoffs.push(c)).unwrap();
        assert_eq!(cutoffs.len(), 1);
        assert_eq!(
            (cutoffs[0].iss.as_deref(), cutoffs[0].before),
            (Some("https://a"), 50)
        );
        drop(store);
        writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn issuerless_revocations_match_every_issuer_and_default_applies() {
        let dir = std::env::temp_dir().join(format!("revbloom-store-iss-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, writer) = RedbStore::open(&dir, None).unwrap();
        let store = store.with_default_issuer(Some("https://d/"));
        store
            .revoke(vec![
                rev(None, "all", 100),
                rev(Some("https://a"), "all", 300),
                rev(Some("https://a"), "only-a", 200),
                rev(Some("https://d"), "only-d", 200),
            ])
            .await
            .unwrap();
        // Without iss: revoked for every issuer, whatever the token says.
        assert_eq!(store.lookup(Some("https://z"), "all").unwrap(), Some(100));
        assert_eq!(store.lookup(None, "all").unwrap(), Some(100));
        // Both rows match: the later exp is the answer.
        assert_eq!(store.lookup(Some("https://a/"), "all").unwrap(), Some(300));
        assert_eq!(
            store.lookup(Some("https://a"), "only-a").unwrap(),
            Some(200)
        );
        assert_eq!(store.lookup(Some("https://b"), "only-a").unwrap(), None);
        assert_eq!(store.lookup(None, "only-a").unwrap(), None);
        // A query without iss is a token of the default issuer.
        assert_eq!(store.lookup(None, "only-d").unwrap(), Some(200));
        assert_eq!(
            store.lookup(Some("https://d//"), "only-d").unwrap(),
            Some(200)
        );
        assert_eq!(store.lookup(Some("https://a"), "only-d").unwrap(), None);
        drop(store);
        writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn concurrent_writers_share_commits_and_all_land() {
        let dir = std::env::temp_dir().join(format!("revbloom-store-cc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (store, writer) = RedbStore::open(&dir, Some(tx)).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.revoke(vec![rev(None, &format!("j{i}"), 1_000 + i)]).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().new, 1);
        }
        let mut seen = 0;
        while let Ok(Committed::Revocations(v)) = rx.try_recv() {
            seen += v.len();
        }
        assert_eq!(seen, 200);
        assert_eq!(store.counts().unwrap().0, 200);
        // The 200 requests were queued while the writer was busy with the first commit, so
        // they shared transactions (and fsyncs) instead of taking one each.
        assert!(
            store.commits() < 50,
            "{} commits for 200 requests",
            store.commits()
        );
        drop(store);
        writer.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_initialized_folder_refuses_a_missing_or_emptied_store_until_init() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (store, writer) = RedbStore::open(&dir, None).unwrap();
        store.revoke(vec![rev(None, "a", 100)]).await.unwrap();
        drop(store);
        writer.join();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(STORE_FILE)), 0o600);
            assert_eq!(mode(&dir.join(INIT_MARKER)), 0o600);
            // A folder opened up by hand is tightened again.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let (store, writer) = RedbStore::open(&dir, None).unwrap();
            drop(store);
            writer.join();
            assert_eq!(mode(&dir), 0o700);
        }
        // An existing store is never given up by --init.
        assert!(!allow_new_history(&dir).unwrap());
        std::fs::File::create(dir.join(STORE_FILE)).unwrap();
        let e = RedbStore::open(&dir, None)
            .err()
            .expect("emptied store refused");
        assert!(matches!(e, StoreError::Emptied { .. }), "{e}");
        assert!(e.to_string().contains("--init"), "{e}");
        std::fs::remove_file(dir.join(STORE_FILE)).unwrap();
        let e = RedbStore::open(&dir, None)
            .err()
            .expect("missing store refused");
        assert!(matches!(e, StoreError::Missing { .. }), "{e}");
        assert!(e.to_string().contains(STORE_FILE), "{e}");
        assert!(allow_new_history(&dir).unwrap());
        let (store, writer) = RedbStore::open(&dir, None).unwrap();
        assert_eq!(store.counts().unwrap(), (0, 0));
        drop(store);
        writer.join();
    }

    #[tokio::test]
    async fn a_store_replaced_underneath_is_reported_and_never_acknowledged() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, writer) = RedbStore::open(tmp.path(), None).unwrap();
        store.revoke(vec![rev(None, "a", 100)]).await.unwrap();
        assert_eq!(store.fault(), None);
        let path = tmp.path().join(STORE_FILE);
        let copy = tmp.path().join("copy");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::rename(&copy, &path).unwrap();
        assert_eq!(store.fault(), Some(StoreFault::Replaced));
        let e = store.revoke(vec![rev(None, "b", 100)]).await.unwrap_err();
        assert!(matches!(e, StoreError::Replaced { .. }), "{e}");
        assert!(matches!(
            store.lookup(None, "a"),
            Err(StoreError::Replaced { .. })
        ));
        drop(store);
        writer.join();
    }

    /// Bytes flipped at 40 offsets (fixed seed) of a real store: each open either refuses
    /// with `Damaged` or opens with every acknowledged revocation present; no panic escapes.
    #[tokio::test]
    async fn flipped_bytes_are_refused_or_lose_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good");
        let jtis: Vec<String> = (0..300).map(|i| format!("jti-{i:04}")).collect();
        {
            let (store, writer) = RedbStore::open(&good, None).unwrap();
            for chunk in jtis.chunks(50) {
                let list = chunk
                    .iter()
                    .map(|j| rev(Some("https://i"), j, 5_000))
                    .collect();
                store.revoke(list).await.unwrap();
            }
            drop(store);
            writer.join();
        }
        let bytes = std::fs::read(good.join(STORE_FILE)).unwrap();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let (mut refused, mut opened) = (0, 0);
        for round in 0..40 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Half the flips in the first pages (headers, roots), half anywhere.
            let span = if round % 2 == 0 {
                8192.min(bytes.len())
            } else {
                bytes.len()
            };
            let at = (seed % span as u64) as usize;
            let mut damaged = bytes.clone();
            damaged[at] ^= 1 << (seed >> 61);
            let dir = tmp.path().join(format!("flip-{round}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(STORE_FILE), &damaged).unwrap();
            std::fs::write(dir.join(INIT_MARKER), b"").unwrap();
            let outcome = catch_unwind(AssertUnwindSafe(|| match RedbStore::open(&dir, None) {
                Err(StoreError::Damaged { .. }) => None,
                Err(e) => panic!("offset {at}: refused, but not as damaged: {e}"),
                Ok((store, writer)) => {
                    let missing: Vec<&String> = jtis
                        .iter()
                        .filter(|j| !matches!(store.lookup(Some("https://i"), j), Ok(Some(5_000))))
                        .collect();
                    drop(store);
                    writer.join();
                    Some(missing.len())
                }
            }));
            match outcome {
                Ok(None) => refused += 1,
                Ok(Some(0)) => opened += 1,
                Ok(Some(n)) => panic!("offset {at}: opened but {n} revocations are gone"),
                Err(p) => panic!("offset {at}: a panic escaped: {}", panic_text(p.as_ref())),
            }
        }
        assert_eq!(refused + opened, 40);
        assert!(refused > 0, "no flip was detected: the check does not run");
    }
}
