//! The verifier's sync client: keeps a [`SnapshotHandle`] current from a publisher URL
//! (long-poll + deltas, falling back to full snapshots) or from a snapshot file, with backoff
//! on errors, and keeps the last good snapshot in a local file so a restarted verifier starts
//! from it even when the publisher is unreachable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), revbloom::sync::SyncError> {
//! use std::time::Duration;
//! use revbloom::{SnapshotHandle, StalenessPolicy};
//! use revbloom::sync::{SyncClient, SyncConfig};
//!
//! let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
//! use revbloom::snapshot::{read_verifying_key, OpenOptions, SealKey};
//!
//! // The publisher's DATA/signing.pub and DATA/verifier.key, copied to the verifier.
//! let public = read_verifying_key("/etc/revbloom/signing.pub".as_ref()).unwrap();
//! let seal = SealKey::from_file("/etc/revbloom/verifier.key".as_ref()).unwrap();
//! let config = SyncConfig::url("http://127.0.0.1:8750")
//!     .open_options(OpenOptions::new().verifying_key(public))
//!     .seal_key(seal)
//!     .cache_file("/var/lib/app/revbloom.rbs");
//! let client = SyncClient::start(config, handle.clone())?;
//! // ... hand `handle` to the verifier; `client.generation()`, `client.age(now)` for metrics.
//! # Ok(()) }
//! ```
//!
//! Static mirrors: `SyncConfig::mirrors(["https://cdn.example.com/revbloom"])` follows the
//! signed manifest a publisher writes into an object store (any HTTP server or CDN in front of
//! it serves as a mirror), and `SyncConfig::url(publisher).mirror(base)` tries mirrors before
//! the publisher. See [`SyncConfig::mirror`] and the [`manifest`] module.
//!
//! An in-memory-only gateway filter forgets every revocation on restart; this one does not:
//! the cache file is replaced atomically after every new generation, and loaded (and
//! validated, signature included when configured) before the first request is served. The
//! handle's staleness policy still applies to a cached snapshot that has grown old.
//!
//! Trust: a client syncing over the network refuses to start without a verifying key
//! ([`SyncError::NoVerifyingKey`]) unless told [`SyncConfig::allow_unsigned`]: whoever can
//! answer its requests could otherwise un-revoke every token. Sealed snapshots and deltas
//! are unsealed with the keys given to [`SyncConfig::seal_key`]; plaintext ones are still
//! accepted under the same signature rules. The cache file holds the unsealed snapshot: keep
//! it where only the verifier can read it.

mod jwks;
pub mod manifest;
mod mirror;
mod poll;
pub mod tls;

pub use jwks::{
    JwksClient, JwksClientError, JwksConfig, JwksIssuerStatus, JwksStats, DEFAULT_MAX_JWKS_BYTES,
};
pub use tls::{ClientTls, ClientTlsError};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::snapshot::{OpenOptions, SealKey};
use crate::swap::{SnapshotHandle, SwapError};

/// Where snapshots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A publisher's base URL (`http://host:port`): `GET /v1/deltas` long-polls, falling back to
    /// `GET /v1/snapshot`.
    Url(String),
    /// A snapshot file (e.g. written by the publisher's `snapshot_dir` or a CDN sync), reloaded
    /// when its modification time or size changes.
    File(PathBuf),
    /// Static mirrors only, tried in order: base URLs of any HTTP(S) server or CDN in front of
    /// the object store the publisher writes to with `--publish-to` (see
    /// [`SyncConfig::mirrors`]).
    Mirrors(Vec<String>),
}

/// How the client syncs. Built like a sentence: `SyncConfig::url(u).cache_file(p)`.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    source: Source,
    cache_file: Option<PathBuf>,
    options: OpenOptions,
    wait: Duration,
    file_poll: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    tls: ClientTls,
    seal_keys: Vec<SealKey>,
    allow_unsigned: bool,
    /// Mirrors tried before the publisher of a [`Source::Url`].
    mirrors: Vec<String>,
    mirror_poll: Duration,
}

impl SyncConfig {
    /// Sync from a publisher at `base` (e.g. `http://127.0.0.1:8750`).
    pub fn url(base: impl Into<String>) -> Self {
        Self::new(Source::Url(base.into().trim_end_matches('/').to_owned()))
    }

    /// Sync from static mirrors only (the publisher is not reachable from here), tried in
    /// order: each `base` is the URL of the folder holding the manifest (`manifest.rbm`), e.g.
    /// `https://cdn.example.com/revbloom`. See [`SyncConfig::mirror`].
    pub fn mirrors<I, S>(bases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Source::Mirrors(bases.into_iter().map(trim_base).collect()))
    }

    /// Add a static mirror: the base URL of an HTTP(S) server or CDN in front of the object
    /// store the publisher writes to (`--publish-to`). Mirrors are tried in the order they
    /// were added, and the publisher of a [`SyncConfig::url`] source last. Each round reads
    /// the mirror's signed manifest (`<base>/manifest.rbm`), then fetches the deltas from the
    /// generation held or the full snapshot; a mirror that fails, serves a manifest older than
    /// the generation held, or has nothing newer while the snapshot held is past half its
    /// `max_age`, hands over to the next source. A manifest older than the snapshot held never
    /// replaces it ([`SyncFailure::Behind`]): the snapshot held ages, and turns stale as
    /// without any source. Ignored by a [`SyncConfig::file`] source.
    pub fn mirror(mut self, base: impl Into<String>) -> Self {
        let base = trim_base(base);
        match &mut self.source {
            Source::Mirrors(list) => list.push(base),
            _ => self.mirrors.push(base),
        }
        self
    }

    /// How often mirrors are asked for a new manifest when the last round found nothing new
    /// (default 2 s). Mirrors cannot long-poll; the publisher's manifest `Cache-Control`
    /// lifetime adds to this delay behind a CDN.
    pub fn mirror_poll_interval(mut self, every: Duration) -> Self {
        self.mirror_poll = every;
        self
    }

    /// The mirrors, in the order they are tried.
    pub fn mirror_urls(&self) -> &[String] {
        match &self.source {
            Source::Mirrors(list) => list,
            _ => &self.mirrors,
        }
    }

    /// Sync from a snapshot file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::new(Source::File(path.into()))
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            cache_file: None,
            options: OpenOptions::default(),
            wait: Duration::from_secs(30),
            file_poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            tls: ClientTls::default(),
            seal_keys: Vec::new(),
            allow_unsigned: false,
            mirrors: Vec::new(),
            mirror_poll: Duration::from_secs(2),
        }
    }

    /// Unseal sealed snapshots and deltas with `key` (the publisher's `DATA/verifier.key`).
    /// Call it once per key while the publisher rotates; plaintext files are still accepted.
    pub fn seal_key(mut self, key: SealKey) -> Self {
        if !self.seal_keys.contains(&key) {
            self.seal_keys.push(key);
        }
        self
    }

    /// Accept files without checking a signature when no verifying key is configured
    /// (default `false`): an unsigned file, or a signed one whose signature is then not
    /// checked. Without it, [`SyncClient::start`] refuses a network source that has no
    /// verifying key ([`SyncError::NoVerifyingKey`]). Only for a publisher reached over a
    /// link nobody else can answer on.
    pub fn allow_unsigned(mut self, allow: bool) -> Self {
        self.allow_unsigned = allow;
        self
    }

    /// The options snapshots and deltas are opened with: [`SyncConfig::open_options`] plus
    /// the seal keys, and the signature check skipped under [`SyncConfig::allow_unsigned`].
    pub fn effective_options(&self) -> OpenOptions {
        let mut o = self.options.clone();
        for k in &self.seal_keys {
            o = o.seal_key(k.clone());
        }
        if self.allow_unsigned && !o.has_verifying_key() {
            o = o.skip_signature_check();
        }
        o
    }

    /// Keep the last good snapshot in `path` (atomically replaced) and start from it.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// How snapshots and deltas are validated (verifying key, required signature).
    pub fn open_options(mut self, options: OpenOptions) -> Self {
        self.options = options;
        self
    }

    /// Long-poll wait per request (default 30 s; the publisher caps it at its own limit).
    pub fn long_poll(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How often a file source is checked for changes (default 1 s).
    pub fn file_poll_interval(mut self, every: Duration) -> Self {
        self.file_poll = every;
        self
    }

    /// Backoff after errors (defaults 200 ms, 30 s): the first retry waits between `min` and
    /// `2·min`, each later one about twice as long, never more than `max` (then between
    /// `max/2` and `max`). The random part keeps verifiers restarted together from retrying in
    /// lockstep. A success starts the next run of failures again from `min`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// For an `https://` publisher, trust only the CA certificates in the PEM file at `path`
    /// instead of the system's store (see [`ClientTls::ca_file`]).
    pub fn ca_file(self, path: impl Into<PathBuf>) -> Self {
        self.tls(ClientTls::ca_file(path))
    }

    /// Which certificates an `https://` publisher is checked against (default: the system's
    /// store).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// The source.
    pub fn source(&self) -> &Source {
        &self.source
    }
}

fn trim_base(base: impl Into<String>) -> String {
    base.into().trim_end_matches('/').to_owned()
}

/// Errors of the sync client. Each one leaves the handle's current snapshot in place.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The publisher could not be reached, or the HTTP client could not be built.
    #[error("fetching from the publisher failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The publisher answered with a status the sync protocol does not expect.
    #[error("fetching from the publisher failed: GET {url}: unexpected status {status}; check the URL points at a revbloom publisher")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status it answered.
        status: u16,
    },
    /// A snapshot or delta was refused (invalid, wrong signature, rollback).
    #[error(transparent)]
    Swap(#[from] SwapError),
    /// Reading the source file or writing the cache file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS configuration is unusable (the CA file cannot be read or holds no CA).
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
    /// A network source without a verifying key, and [`SyncConfig::allow_unsigned`] not set.
    #[error("refusing to sync from {url} without a verifying key: whoever answers there could un-revoke every token; configure the publisher's public key (DATA/signing.pub) with OpenOptions::verifying_key, or set SyncConfig::allow_unsigned(true) for a link nobody else can answer on")]
    NoVerifyingKey {
        /// The publisher URL.
        url: String,
    },
    /// A mirror's manifest was refused (not a manifest, bad signature, broken chain).
    #[error("manifest {url} refused: {source}")]
    Manifest {
        /// The manifest URL.
        url: String,
        /// Why.
        #[source]
        source: manifest::ManifestError,
    },
    /// An object a signed manifest names does not match it (size or SHA-256): the mirror
    /// serves altered or mixed-up files.
    #[error("object {url} does not match the signed manifest ({what}); the mirror serves altered files, keeping the snapshot held")]
    Object {
        /// The object URL.
        url: String,
        /// What differs.
        what: String,
    },
    /// A mirror's manifest names an older generation than the one held: a lagging cache or
    /// a replayed manifest. The snapshot held is kept and ages as if no source answered.
    #[error("mirror {url} is behind: its manifest names generation {offered}, generation {held} is held; keeping it")]
    Behind {
        /// The manifest URL.
        url: String,
        /// The manifest's generation.
        offered: u64,
        /// The generation held.
        held: u64,
    },
    /// `start` was called outside a tokio runtime.
    #[error("SyncClient::start needs a tokio runtime (call it from async code or inside Runtime::enter)")]
    NoRuntime,
}

/// Why a sync step failed: the label of [`SyncStats::failures`] and of the `reason` field of
/// the client's log lines. Every snapshot or delta the client does not take is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncFailure {
    /// A generation not newer than the one held (a rollback, or a rebuilt file that kept its
    /// generation number).
    Rollback,
    /// No signature where one is required, or one that does not verify.
    Signature,
    /// A sealed file without a matching seal key, or one that does not decrypt.
    Seal,
    /// Bytes that are not a valid snapshot (truncated, bad checksum, unknown version, …).
    Invalid,
    /// A delta that does not fit the snapshot held (wrong parent, layout) or is invalid; the
    /// client fetches a full snapshot next.
    Delta,
    /// The snapshot file does not exist.
    Missing,
    /// Any other file error (reading the source or writing the cache file).
    Io,
    /// The publisher could not be reached (connect, TLS, timeout, body).
    Unreachable,
    /// The publisher answered with an unexpected HTTP status.
    Status,
    /// The snapshot held became older than `max_age` (counted once per transition).
    Stale,
    /// A mirror served a manifest older than the generation held (never applied).
    Behind,
}

impl SyncFailure {
    /// Every kind, in the order of [`SyncStats::failures`].
    pub const ALL: [SyncFailure; 11] = [
        SyncFailure::Rollback,
        SyncFailure::Signature,
        SyncFailure::Seal,
        SyncFailure::Invalid,
        SyncFailure::Delta,
        SyncFailure::Missing,
        SyncFailure::Io,
        SyncFailure::Unreachable,
        SyncFailure::Status,
        SyncFailure::Stale,
        SyncFailure::Behind,
    ];

    /// The label: `rollback`, `signature`, `seal`, `invalid`, `delta`, `missing`, `io`,
    /// `unreachable`, `status`, `stale`, `behind`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncFailure::Rollback => "rollback",
            SyncFailure::Signature => "signature",
            SyncFailure::Seal => "seal",
            SyncFailure::Invalid => "invalid",
            SyncFailure::Delta => "delta",
            SyncFailure::Missing => "missing",
            SyncFailure::Io => "io",
            SyncFailure::Unreachable => "unreachable",
            SyncFailure::Status => "status",
            SyncFailure::Stale => "stale",
            SyncFailure::Behind => "behind",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SyncError {
    /// What kind of failure this is (the label it is counted under).
    pub fn failure(&self) -> SyncFailure {
        use crate::snapshot::SnapshotError as S;
        fn snapshot(e: &S) -> SyncFailure {
            match e {
                S::Unsigned | S::Signature | S::SignatureNotChecked => SyncFailure::Signature,
                S::Sealed { .. } | S::UnknownSealKey { .. } | S::Unseal { .. } => SyncFailure::Seal,
                _ => SyncFailure::Invalid,
            }
        }
        match self {
            SyncError::Http(_) => SyncFailure::Unreachable,
            SyncError::Status { .. } => SyncFailure::Status,
            SyncError::Swap(SwapError::Rollback { .. }) => SyncFailure::Rollback,
            SyncError::Swap(SwapError::Snapshot(e)) => snapshot(e),
            SyncError::Swap(SwapError::Delta(crate::delta::DeltaError::Result(e))) => snapshot(e),
            SyncError::Swap(SwapError::Delta(
                crate::delta::DeltaError::Unsigned
                | crate::delta::DeltaError::Signature
                | crate::delta::DeltaError::SignatureNotChecked,
            )) => SyncFailure::Signature,
            SyncError::Swap(SwapError::Delta(crate::delta::DeltaError::Sealed { .. })) => {
                SyncFailure::Seal
            }
            SyncError::Swap(_) => SyncFailure::Delta,
            SyncError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                SyncFailure::Missing
            }
            SyncError::Io { .. } => SyncFailure::Io,
            SyncError::Manifest { source, .. } => match source {
                manifest::ManifestError::Unsigned
                | manifest::ManifestError::Signature
                | manifest::ManifestError::SignatureNotChecked => SyncFailure::Signature,
                _ => SyncFailure::Invalid,
            },
            SyncError::Object { .. } => SyncFailure::Invalid,
            SyncError::Behind { .. } => SyncFailure::Behind,
            SyncError::Tls(_) | SyncError::NoVerifyingKey { .. } | SyncError::NoRuntime => {
                SyncFailure::Invalid
            }
        }
    }
}

/// Counters of a running client.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Full snapshots swapped in (from the source or the cache file).
    pub snapshots: AtomicU64,
    /// Deltas applied.
    pub deltas: AtomicU64,
    /// Errors (each followed by a backoff); the sum of [`SyncStats::failures`] but `stale`.
    pub errors: AtomicU64,
    /// Unix time of the last successful contact with the source (0 if none).
    pub last_success: AtomicU64,
    failures: [AtomicU64; SyncFailure::ALL.len()],
    last_error: Mutex<Option<String>>,
}

impl SyncStats {
    /// How many failures of `kind` since the client started.
    pub fn failures(&self, kind: SyncFailure) -> u64 {
        self.failures[kind.index()].load(Relaxed)
    }

    /// Every failure kind with its count, in [`SyncFailure::ALL`] order (for a metrics
    /// endpoint: `revbloom_sync_failures_total{reason="rollback"} 0`, …).
    pub fn failure_counts(&self) -> impl Iterator<Item = (SyncFailure, u64)> + '_ {
        SyncFailure::ALL.iter().map(|&k| (k, self.failures(k)))
    }

    fn record_stale(&self) {
        self.failures[SyncFailure::Stale.index()].fetch_add(1, Relaxed);
    }

    /// The most recent error with its causes (see [`tls::error_chain`]: a refused certificate
    /// reads `... invalid peer certificate: UnknownIssuer`), if any since the last success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn record_error(&self, e: &SyncError) {
        self.errors.fetch_add(1, Relaxed);
        self.failures[e.failure().index()].fetch_add(1, Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(tls::error_chain(e));
        }
    }

    fn record_success(&self, now: u64) {
        self.last_success.store(now, Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = None;
        }
    }
}

/// A running sync client. Dropping it stops the background task.
pub struct SyncClient {
    handle: SnapshotHandle,
    stats: Arc<SyncStats>,
    generations: watch::Receiver<Option<u64>>,
    task: JoinHandle<()>,
}

impl SyncClient {
    /// Load the cache file (if configured and valid) into `handle`, then start syncing in the
    /// background on the current tokio runtime. Returns at once; the handle may still be empty
    /// (stale) until the first fetch succeeds. An unusable CA file is an error here, not a
    /// client that never syncs.
    ///
    /// Refuses a URL source without a verifying key unless [`SyncConfig::allow_unsigned`]
    /// ([`SyncError::NoVerifyingKey`], also logged).
    pub fn start(mut config: SyncConfig, handle: SnapshotHandle) -> Result<SyncClient, SyncError> {
        let network = match &config.source {
            Source::Url(url) => Some(url.clone()),
            Source::Mirrors(list) => Some(list.join(", ")),
            Source::File(_) => None,
        };
        if let Some(url) = network {
            if !config.options.has_verifying_key() && !config.allow_unsigned {
                let e = SyncError::NoVerifyingKey { url };
                tracing::error!(error = %e, "revocation sync not started");
                return Err(e);
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SyncError::NoRuntime)?;
        let http = poll::http_client(&config)?;
        config.options = config.effective_options();
        let stats = Arc::new(SyncStats::default());
        if let Some(cache) = &config.cache_file {
            match std::fs::read(cache) {
                Ok(bytes) => {
                    match crate::snapshot::SnapshotView::open_owned(bytes, &config.options)
                        .map_err(SwapError::from)
                        .and_then(|view| handle.replace(view))
                    {
                        Ok(_) => {
                            stats.snapshots.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            // A corrupt or foreign cache is ignored, never trusted.
                            let e = SyncError::Swap(e);
                            tracing::warn!(error = %e, reason = %e.failure(), path = %cache.display(), "ignoring the cached snapshot");
                            stats.record_error(&e);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    let e = SyncError::Io {
                        what: "cannot read the cache file",
                        path: cache.clone(),
                        source,
                    };
                    tracing::warn!(error = %e, reason = %e.failure(), "starting without the cached snapshot");
                    stats.record_error(&e);
                }
            }
        }
        let (tx, rx) = watch::channel(handle.generation());
        let task = runtime.spawn(poll::run(
            config,
            http,
            handle.clone(),
            Arc::clone(&stats),
            tx,
        ));
        Ok(SyncClient {
            handle,
            stats,
            generations: rx,
            task,
        })
    }

    /// The handle being kept current.
    pub fn handle(&self) -> &SnapshotHandle {
        &self.handle
    }

    /// The current generation, if any snapshot is loaded.
    pub fn generation(&self) -> Option<u64> {
        self.handle.generation()
    }

    /// Seconds since the current snapshot was created, at unix time `now`.
    pub fn age(&self, now: u64) -> Option<u64> {
        self.handle.age(now)
    }

    /// Counters (snapshots, deltas, errors, last success).
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// The counters as a shared handle, for a metrics or readiness endpoint that lives apart
    /// from the client.
    pub fn shared_stats(&self) -> Arc<SyncStats> {
        Arc::clone(&self.stats)
    }

    /// A receiver that changes whenever a new generation is swapped in.
    pub fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.generations.clone()
    }

    /// Stop syncing (the handle keeps its current snapshot).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replace `path` with `bytes` so a reader sees the old file or the new one, never a torn one
/// (see [`write_file_atomically_with`]).
pub fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    write_file_atomically_with(path, |f| f.write_all(bytes))
}

/// Replace `path` with what `write` puts into a file: a temp file in the same folder
/// (`tempfile`, removed if anything fails), fsync it, rename it over `path`, fsync the folder
/// (the rename is durable only once the directory entry is). The file is created mode 0644:
/// snapshot copies are meant to be served. Returns what `write` returned.
pub fn write_file_atomically_with<T>(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshot".into());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir)?;
    let out = write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(out)
}

#[cfg(test)]
mod atomic_write_tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_nothing_behind_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.rbs");
        write_file_atomically(&path, b"first").unwrap();
        write_file_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        let failed = write_file_atomically_with(&path, |f| {
            use std::io::Write;
            f.write_all(b"torn")?;
            Err::<(), _>(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("copy.rbs")]);
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;
    use crate::swap::StalenessPolicy;

    #[test]
    fn a_network_source_needs_a_verifying_key_unless_told_otherwise() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let handle = || SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(60));
        let e = SyncClient::start(SyncConfig::url("http://127.0.0.1:1"), handle())
            .err()
            .unwrap();
        assert!(matches!(e, SyncError::NoVerifyingKey { .. }), "{e}");
        assert!(e.to_string().contains("allow_unsigned"), "{e}");
        // A seal key is not a signature key: still refused.
        let sealed_only = SyncConfig::url("http://127.0.0.1:1")
            .seal_key(crate::snapshot::SealKey::from_bytes([1; 32]));
        assert!(SyncClient::start(sealed_only, handle()).is_err());
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let signed = SyncConfig::url("http://127.0.0.1:1")
            .open_options(OpenOptions::new().verifying_key(key));
        assert!(SyncClient::start(signed, handle()).is_ok());
        let unsigned = SyncConfig::url("http://127.0.0.1:1").allow_unsigned(true);
        assert!(unsigned.effective_options().skip_signature_check);
        assert!(SyncClient::start(unsigned, handle()).is_ok());
        // A local file keeps working without a key.
        assert!(SyncClient::start(SyncConfig::file("/nonexistent"), handle()).is_ok());
    }
}
