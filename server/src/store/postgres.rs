//! The shared backend: one PostgreSQL database behind any number of publisher replicas.
//!
//! Every replica writes through its own group-commit writer (one connection, one transaction
//! per group, `pg_notify` inside it so the builder wakes at commit). Lookups share one
//! pipelined connection. The builder's work that needs a transaction of its own (recording a
//! publication, pruning, scanning, tailing) runs on a second connection, and election and
//! notifications use dedicated connections opened by [`crate::replica`].
//!
//! Fencing lives in the database: a trigger on `revbloom_generations` refuses a row whose
//! `epoch` is not the current builder epoch in `revbloom_state` (SQLSTATE [`FENCED_SQLSTATE`]),
//! or whose generation is not above the last one, and raises the stored generation in the
//! same transaction. A builder whose epoch was superseded cannot publish, whatever it believes.
//!
//! New rows are found by transaction visibility, not by sequence order: each row carries the
//! 64-bit id of the transaction that wrote it (`xid`), and [`Tail`] keeps a frontier, the
//! `xmin` of the last snapshot it read with. Every transaction below the frontier had finished
//! when that snapshot was taken, so its rows were in it; anything still running had an id at
//! or above it and is read again next time. A transaction that took its id early and commits
//! late is therefore never skipped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::TryStreamExt;
use revbloom::sync::ClientTls;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Connection, IsolationLevel, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use revbloom::bounds::Bounds;
use revbloom::cutoff::{JTI_CLAIM, MAX_SNAPSHOT_CLAIMS};
use revbloom::hash::normalize_issuer;

use super::{Cutoff, Lookup, Pruned, Revocation, RevokeOutcome, StoreError, StoreFault};

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = 1;
/// SQLSTATE the fencing trigger raises for a superseded builder epoch.
pub const FENCED_SQLSTATE: &str = "RB001";
/// SQLSTATE the fencing trigger raises for a generation not above the last one.
pub const STALE_GENERATION_SQLSTATE: &str = "RB002";
/// Channel every write transaction notifies: wakes the builder's tail.
pub const WRITES_CHANNEL: &str = "revbloom_writes";
/// Channel every publication notifies (payload: the generation): wakes the followers.
pub const GENERATIONS_CHANNEL: &str = "revbloom_generations";
/// Session-level advisory lock the builder holds (`"revbloom"` in ASCII, plus one).
pub const BUILDER_LOCK: i64 = 0x7265_7662_6c6f_6f6e;
/// Transaction-level advisory lock serialising schema creation.
const SCHEMA_LOCK: i64 = 0x7265_7662_6c6f_6f6d;
/// Transaction-level advisory lock serialising admission of a new cutoff claim.
const CLAIMS_LOCK: i64 = 0x7265_7662_6c6f_6f6f;

/// Most requests folded into one transaction.
const MAX_GROUP: usize = 1024;
/// How long [`PgStore::counts_recent`] reuses an exact count: `count(*)` scans the tables, a
/// cost that grows with the store, and the gauges it feeds need no more.
pub const COUNTS_REFRESH: Duration = Duration::from_secs(10);
/// How long connecting may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between reconnection attempts of the writer.
const RECONNECT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(2));

/// Created in one transaction under [`SCHEMA_LOCK`], so replicas starting together do not race.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS revbloom_state (
    id int PRIMARY KEY CHECK (id = 1),
    schema_version int NOT NULL,
    seed bigint NOT NULL,
    epoch bigint NOT NULL DEFAULT 0,
    generation bigint NOT NULL DEFAULT 0,
    pruned_before bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revbloom_revocations (
    jti text NOT NULL,
    iss text NOT NULL,
    exp bigint NOT NULL,
    xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    PRIMARY KEY (jti, iss, exp)
);
CREATE INDEX IF NOT EXISTS revbloom_revocations_xid ON revbloom_revocations (xid);
CREATE INDEX IF NOT EXISTS revbloom_revocations_exp ON revbloom_revocations (exp);
CREATE TABLE IF NOT EXISTS revbloom_cutoffs (
    claim text NOT NULL,
    value text NOT NULL,
    iss text NOT NULL,
    before bigint NOT NULL,
    xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    PRIMARY KEY (claim, value, iss)
);
CREATE INDEX IF NOT EXISTS revbloom_cutoffs_xid ON revbloom_cutoffs (xid);
CREATE TABLE IF NOT EXISTS revbloom_cutoff_claims (claim text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS revbloom_generations (
    generation bigint PRIMARY KEY,
    parent bigint NOT NULL,
    epoch bigint NOT NULL,
    created_at bigint NOT NULL,
    entries bigint NOT NULL,
    snapshot bytea NOT NULL,
    delta bytea
);
-- Only the newest generation keeps its snapshot (followers serve it; older rows carry their
-- deltas, which is all a chain needs).
ALTER TABLE revbloom_generations ALTER COLUMN snapshot DROP NOT NULL;
CREATE OR REPLACE FUNCTION revbloom_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_epoch bigint;
    last_generation bigint;
BEGIN
    SELECT epoch, generation INTO current_epoch, last_generation
        FROM revbloom_state WHERE id = 1 FOR UPDATE;
    IF NEW.epoch IS DISTINCT FROM current_epoch THEN
        RAISE EXCEPTION 'revbloom: builder epoch % was superseded by epoch %', NEW.epoch, current_epoch
            USING ERRCODE = 'RB001';
    END IF;
    IF NEW.generation <= last_generation THEN
        RAISE EXCEPTION 'revbloom: generation % is not above the last published %', NEW.generation, last_generation
            USING ERRCODE = 'RB002';
    END IF;
    UPDATE revbloom_state SET generation = NEW.generation WHERE id = 1;
    RETURN NEW;
END
$$;
-- A publication is an INSERT; dropping an older row's snapshot updates no fenced column.
CREATE OR REPLACE TRIGGER revbloom_fence BEFORE INSERT OR UPDATE OF generation, epoch
    ON revbloom_generations FOR EACH ROW EXECUTE FUNCTION revbloom_fence();
"#;

/// One generation as the builder records it: its number, its place in the chain, the epoch it
/// was built under, and the bytes replicas hand out.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Generation number.
    pub generation: u64,
    /// The generation the delta applies to.
    pub parent: u64,
    /// The builder epoch (0 for the embedded store, which has no election).
    pub epoch: u64,
    /// `created_at` of the snapshot.
    pub created_at: u64,
    /// Revocations in the window.
    pub entries: u64,
    /// The snapshot as handed out.
    pub snapshot: Bytes,
    /// The delta from `parent`, as handed out, when the layout allowed one.
    pub delta: Option<Bytes>,
    /// How many of the newest generations to keep in the database (the delta ring's length).
    pub keep: usize,
}

/// A recorded generation read back by a follower. `snapshot` is filled for the newest only.
#[derive(Debug, Clone)]
pub struct GenerationRow {
    /// Generation number.
    pub generation: u64,
    /// Its parent.
    pub parent: u64,
    /// The epoch it was built under.
    pub epoch: u64,
    /// `created_at` of the snapshot.
    pub created_at: u64,
    /// Revocations in the window.
    pub entries: u64,
    /// The snapshot bytes (newest row only).
    pub snapshot: Option<Bytes>,
    /// The delta from `parent`, if any.
    pub delta: Option<Bytes>,
}

/// The builder's position in the stream of committed rows (see the module docs).
#[derive(Debug, Clone)]
pub struct Tail {
    frontier: i64,
    /// Transactions at or above the frontier whose rows were already delivered.
    done: BTreeSet<i64>,
}

impl Tail {
    /// The frontier: every transaction below it is known to be finished and read.
    pub fn frontier(&self) -> i64 {
        self.frontier
    }
}

enum Op {
    Revoke(Vec<Revocation>, Vec<Cutoff>),
    Cutoff(Cutoff),
}

enum Reply {
    Revoke(RevokeOutcome),
    TooManyClaims(String),
    Cutoff(bool),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

struct Shared {
    /// The URL without its password: for messages.
    url: String,
    config: Config,
    /// TLS for every connection when the URL says `sslmode=require`.
    tls: MakeRustlsConnect,
    /// The pipelined connection for lookups and small reads.
    reader: Mutex<Option<Arc<Client>>>,
    /// Serialises reconnecting the reader.
    reader_connect: tokio::sync::Mutex<()>,
    /// The connection for the builder's own transactions.
    work: tokio::sync::Mutex<Option<WorkConn>>,
    /// Set while the writer cannot reach the database.
    broken: AtomicBool,
    commits: AtomicU64,
    /// The last exact counts and when they were taken (see [`PgStore::counts_recent`]).
    counted: Mutex<Option<(std::time::Instant, (u64, u64))>>,
}

/// A cheap, cloneable handle to the PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Job>,
    default_iss: Option<Arc<str>>,
}

/// Owns the writer task; [`PgWriter::join`] waits until it has answered its last request.
pub struct PgWriter {
    done: std::sync::mpsc::Receiver<()>,
}

impl PgWriter {
    /// Wait for the writer to drain its queue and exit (once every [`PgStore`] handle is
    /// dropped). Blocks the calling thread: call it off the runtime's workers.
    pub fn join(self) {
        // The sender is dropped when the task ends, whichever way it ends.
        let _ = self.done.recv();
    }
}

/// `url` with its password replaced by `***`, for messages and logs. Handles the URL form
/// (`postgres://user:secret@host/db`) and the key-value form (`password=secret`).
pub fn redact_url(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .map(|r| ("postgres://", r))
        .or_else(|| {
            url.strip_prefix("postgresql://")
                .map(|r| ("postgresql://", r))
        })
    {
        let (scheme, rest) = rest;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let tail = redact_params(tail);
        if let Some(at) = authority.rfind('@') {
            let (userinfo, host) = authority.split_at(at);
            if let Some(colon) = userinfo.find(':') {
                return format!("{scheme}{}:***{host}{tail}", &userinfo[..colon]);
            }
        }
        return format!("{scheme}{authority}{tail}");
    }
    // Key-value form: hide the value of `password=`.
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A URL's query with the value of `password=` hidden.
fn redact_params(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let query = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}?{query}")
}

/// Whether `s` names a PostgreSQL store.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Shared {
    fn db_err(&self, e: tokio_postgres::Error) -> StoreError {
        StoreError::Database {
            url: self.url.clone(),
            source: Arc::new(e),
        }
    }

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        connect_client(&self.config, &self.tls).await
    }

    /// The shared reader connection, reconnected if it died.
    async fn reader(&self) -> Result<Arc<Client>, StoreError> {
        if let Some(c) = self.live_reader() {
            return Ok(c);
        }
        let _guard = self.reader_connect.lock().await;
        if let Some(c) = self.live_reader() {
            return Ok(c);
        }
        let c = Arc::new(self.connect().await.map_err(|e| self.db_err(e))?);
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&c));
        Ok(c)
    }

    fn live_reader(&self) -> Option<Arc<Client>> {
        let guard = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// Run `f` with the work connection (reconnected if it died).
    async fn with_work<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        self.with_work_conn(async |w: &mut WorkConn| f(&mut w.client).await)
            .await
    }

    /// Run `f` with the work connection and its statements (reconnected if it died).
    async fn with_work_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut WorkConn) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut guard = self.work.lock().await;
        if guard.as_ref().is_none_or(|w| w.client.is_closed()) {
            let client = self.connect().await.map_err(|e| self.db_err(e))?;
            *guard = Some(WorkConn { client, tail: None });
        }
        let Some(work) = guard.as_mut() else {
            return Err(StoreError::Closed);
        };
        let out = f(work).await;
        if work.client.is_closed() {
            *guard = None;
        }
        out.map_err(|e| self.db_err(e))
    }
}

/// The connection for the builder's own transactions, with the statements of
/// [`PgStore::tail`] once prepared on it.
struct WorkConn {
    client: Client,
    tail: Option<[Statement; 3]>,
}

/// The stream of a connection to the database (TLS or not, as negotiated).
pub type PgStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Connect within [`CONNECT_TIMEOUT`], over TLS when the URL asks for it; the connection is
/// driven by a task of its own.
async fn connect_client(
    config: &Config,
    tls: &MakeRustlsConnect,
) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "a PostgreSQL connection closed");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Parse `url`, connect, create the schema if missing (idempotent, serialised between
    /// replicas by an advisory lock), and start the group-commit writer. The first connection
    /// failing is [`StoreError::Connect`], naming the URL without its password.
    pub async fn connect(url: &str) -> Result<(PgStore, PgWriter), StoreError> {
        Self::connect_with(url, &ClientTls::system_roots()).await
    }

    /// [`PgStore::connect`] trusting `tls` for the database's certificate. TLS is used when
    /// the URL says `sslmode=require`, and the certificate is then always verified (host name
    /// and chain), which is stricter than libpq's `require`. Without it the connection is
    /// plain: `sslmode=prefer`, the driver's default, is taken as `disable`, since a
    /// connection that falls back to plaintext when TLS fails protects nothing.
    pub async fn connect_with(
        url: &str,
        tls: &ClientTls,
    ) -> Result<(PgStore, PgWriter), StoreError> {
        let shown = redact_url(url);
        let mut config: Config = url.parse().map_err(|e| StoreError::Connect {
            url: shown.clone(),
            source: Arc::new(e),
        })?;
        if config.get_ssl_mode() == SslMode::Prefer {
            config.ssl_mode(SslMode::Disable);
        }
        let tls = tls.rustls_config().map_err(|e| StoreError::Tls {
            url: shown.clone(),
            source: Arc::new(e),
        })?;
        let tls = MakeRustlsConnect::new(tls);
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("revbloom");
        let connect_err = |e| StoreError::Connect {
            url: shown.clone(),
            source: Arc::new(e),
        };
        let mut client = connect_client(&config, &tls).await.map_err(connect_err)?;
        create_schema(&mut client, &shown).await?;
        let shared = Arc::new(Shared {
            url: shown,
            config,
            tls,
            reader: Mutex::new(Some(Arc::new(client))),
            reader_connect: tokio::sync::Mutex::new(()),
            work: tokio::sync::Mutex::new(None),
            broken: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            counted: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        let (done_tx, done) = std::sync::mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        tokio::spawn(async move {
            writer_loop(&writer_shared, rx).await;
            drop(done_tx);
        });
        Ok((
            PgStore {
                shared,
                tx,
                default_iss: None,
            },
            PgWriter { done },
        ))
    }

    /// The store URL without its password.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The parsed connection settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A new connection of its own, with the store's settings and TLS, and its driver: for
    /// sessions the caller drives itself (the builder lock and `LISTEN` of
    /// [`crate::replica`]).
    pub async fn session(
        &self,
    ) -> Result<(Client, Connection<Socket, PgStream>), tokio_postgres::Error> {
        self.shared.config.connect(self.shared.tls.clone()).await
    }

    /// See [`Store::with_default_issuer`](super::Store::with_default_issuer).
    pub fn with_default_issuer(mut self, iss: Option<&str>) -> Self {
        self.default_iss = iss
            .map(normalize_issuer)
            .filter(|i| !i.is_empty())
            .map(Arc::from);
        self
    }

    /// `Some(WriteFailing)` while the writer cannot reach the database.
    pub fn fault(&self) -> Option<StoreFault> {
        self.shared
            .broken
            .load(Ordering::Relaxed)
            .then_some(StoreFault::WriteFailing)
    }

    /// Group transactions committed by this replica's writer.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    async fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// See [`Store::revoke_with`](super::Store::revoke_with).
    pub async fn revoke_with(
        &self,
        revocations: Vec<Revocation>,
        jti_cutoffs: Vec<Cutoff>,
    ) -> Result<RevokeOutcome, StoreError> {
        match self.submit(Op::Revoke(revocations, jti_cutoffs)).await? {
            Reply::Revoke(o) => Ok(o),
            Reply::TooManyClaims(claim) => Err(StoreError::TooManyClaims { claim }),
            Reply::Cutoff(_) => Err(StoreError::UnexpectedReply { request: "revoke" }),
        }
    }

    /// See [`Store::cutoff`](super::Store::cutoff).
    pub async fn cutoff(&self, cutoff: Cutoff) -> Result<bool, StoreError> {
        match self.submit(Op::Cutoff(cutoff)).await? {
            Reply::Cutoff(changed) => Ok(changed),
            Reply::TooManyClaims(claim) => Err(StoreError::TooManyClaims { claim }),
            Reply::Revoke(_) => Err(StoreError::UnexpectedReply { request: "cutoff" }),
        }
    }

    /// Raise the stored generation to at least `generation` (outside any publication).
    pub async fn raise_generation(&self, generation: u64) -> Result<(), StoreError> {
        let c = self.shared.reader().await?;
        c.execute(
            "UPDATE revbloom_state SET generation = greatest(generation, $1) WHERE id = 1",
            &[&i64_of(generation)],
        )
        .await
        .map_err(|e| self.shared.db_err(e))?;
        Ok(())
    }

    /// Record `p` (refused by the database unless `p.epoch` is the current builder epoch and
    /// the generation is above the last one), drop generations older than the newest
    /// `p.keep`, and notify the followers, in one transaction.
    pub async fn record_publication(&self, p: &Publication) -> Result<(), StoreError> {
        let res = self
            .shared
            .with_work(async |c: &mut Client| {
                let tx = c.transaction().await?;
                tx.execute(
                    "INSERT INTO revbloom_generations \
                     (generation, parent, epoch, created_at, entries, snapshot, delta) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &i64_of(p.generation),
                        &i64_of(p.parent),
                        &i64_of(p.epoch),
                        &i64_of(p.created_at),
                        &i64_of(p.entries),
                        &p.snapshot.as_ref(),
                        &p.delta.as_deref(),
                    ],
                )
                .await?;
                // Followers serve the newest snapshot only; the rows behind it keep their
                // deltas. Without this the table held `keep` full snapshots (hundreds of MB
                // at a million revocations).
                tx.execute(
                    "UPDATE revbloom_generations SET snapshot = NULL \
                     WHERE generation < $1 AND snapshot IS NOT NULL",
                    &[&i64_of(p.generation)],
                )
                .await?;
                let keep = i64::try_from(p.keep.max(1)).unwrap_or(i64::MAX);
                tx.execute(
                    "DELETE FROM revbloom_generations WHERE generation NOT IN \
                     (SELECT generation FROM revbloom_generations \
                      ORDER BY generation DESC LIMIT $1::bigint)",
                    &[&keep],
                )
                .await?;
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&GENERATIONS_CHANNEL, &p.generation.to_string()],
                )
                .await?;
                tx.commit().await
            })
            .await;
        match res {
            Err(StoreError::Database { source, .. })
                if source.code().map(|c| c.code()) == Some(FENCED_SQLSTATE) =>
            {
                Err(StoreError::Fenced {
                    epoch: p.epoch,
                    generation: p.generation,
                })
            }
            other => other,
        }
    }

    /// Take the builder role's epoch: bump the epoch (every publication of an older epoch is
    /// refused from now on) and return it with the last published generation. Runs on the
    /// caller's connection, the one holding the builder lock.
    pub async fn take_epoch(&self, client: &Client) -> Result<(u64, u64), StoreError> {
        let row = client
            .query_one(
                "UPDATE revbloom_state SET epoch = epoch + 1 WHERE id = 1 \
                 RETURNING epoch, generation",
                &[],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        Ok((u64_of(row.get(0)), u64_of(row.get(1))))
    }

    /// The hash seed of this store's lineage, chosen when the schema was created.
    pub async fn seed(&self) -> Result<u64, StoreError> {
        let c = self.shared.reader().await?;
        let row = c
            .query_one("SELECT seed FROM revbloom_state WHERE id = 1", &[])
            .await
            .map_err(|e| self.shared.db_err(e))?;
        let seed: i64 = row.get(0);
        Ok(seed as u64)
    }

    /// See [`Store::prune`](super::Store::prune).
    pub async fn prune(&self, now: u64, bounds: Bounds) -> Result<Pruned, StoreError> {
        let rev_before = i64_of(bounds.earliest_useful_exp(now));
        let cut_before = i64_of(now.saturating_sub(bounds.cutoff_needed_until(0)));
        self.shared
            .with_work(async |c: &mut Client| {
                let tx = c.transaction().await?;
                let revocations = tx
                    .execute(
                        "DELETE FROM revbloom_revocations WHERE exp < $1",
                        &[&rev_before],
                    )
                    .await?;
                let cutoffs = tx
                    .execute(
                        "DELETE FROM revbloom_cutoffs WHERE before < $1",
                        &[&cut_before],
                    )
                    .await?;
                tx.execute(
                    "UPDATE revbloom_state SET pruned_before = greatest(pruned_before, $1) \
                     WHERE id = 1",
                    &[&rev_before],
                )
                .await?;
                tx.commit().await?;
                Ok(Pruned {
                    revocations,
                    cutoffs,
                })
            })
            .await
    }

    /// See [`Store::lookup_covered`](super::Store::lookup_covered).
    pub async fn lookup_covered(&self, iss: Option<&str>, jti: &str) -> Result<Lookup, StoreError> {
        let effective = iss
            .map(normalize_issuer)
            .filter(|i| !i.is_empty())
            .or(self.default_iss.as_deref());
        let issuers: Vec<&str> = std::iter::once("").chain(effective).collect();
        let c = self.shared.reader().await?;
        let row = c
            .query_one(
                "SELECT (SELECT max(exp) FROM revbloom_revocations \
                         WHERE jti = $1 AND iss = ANY($2)), \
                        (SELECT max(before) FROM revbloom_cutoffs \
                         WHERE claim = $3 AND value = $1 AND iss = ANY($2)), \
                        (SELECT pruned_before FROM revbloom_state WHERE id = 1)",
                &[&jti, &issuers, &JTI_CLAIM],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        let exp: Option<i64> = row.get(0);
        let without_exp: Option<i64> = row.get(1);
        let pruned: i64 = row.get(2);
        Ok(Lookup {
            exp: exp.map(u64_of),
            without_exp: without_exp.map(u64_of),
            pruned_before: u64_of(pruned),
        })
    }

    /// Every claim cutoffs were stored for, sorted.
    pub async fn cutoff_claims(&self) -> Result<Vec<String>, StoreError> {
        let c = self.shared.reader().await?;
        let rows = c
            .query(
                "SELECT claim FROM revbloom_cutoff_claims ORDER BY claim",
                &[],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn state_value(&self, column: &str) -> Result<u64, StoreError> {
        let c = self.shared.reader().await?;
        let row = c
            .query_one(
                &format!("SELECT {column} FROM revbloom_state WHERE id = 1"),
                &[],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        Ok(u64_of(row.get(0)))
    }

    /// The prune watermark.
    pub async fn pruned_before(&self) -> Result<u64, StoreError> {
        self.state_value("pruned_before").await
    }

    /// The last published generation (0 on a new store).
    pub async fn generation(&self) -> Result<u64, StoreError> {
        self.state_value("generation").await
    }

    /// The current builder epoch (0 before any builder was elected).
    pub async fn epoch(&self) -> Result<u64, StoreError> {
        self.state_value("epoch").await
    }

    /// Numbers of stored revocations and cutoffs.
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        let c = self.shared.reader().await?;
        let row = c
            .query_one(
                "SELECT (SELECT count(*) FROM revbloom_revocations), \
                        (SELECT count(*) FROM revbloom_cutoffs)",
                &[],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        Ok((u64_of(row.get(0)), u64_of(row.get(1))))
    }

    /// [`PgStore::counts`] at most every [`COUNTS_REFRESH`], the last result in between
    /// (see [`Store::counts_for_metrics`](super::Store::counts_for_metrics)).
    pub async fn counts_recent(&self) -> Result<(u64, u64), StoreError> {
        let cached = *self
            .shared
            .counted
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, counts)) = cached.filter(|(at, _)| at.elapsed() < COUNTS_REFRESH) {
            return Ok(counts);
        }
        let counts = self.counts().await?;
        *self
            .shared
            .counted
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), counts));
        Ok(counts)
    }

    /// See [`Store::scan`](super::Store::scan): one repeatable-read snapshot, streamed.
    pub async fn scan(
        &self,
        mut f: impl FnMut(Revocation),
        mut g: impl FnMut(Cutoff),
    ) -> Result<(), StoreError> {
        self.shared
            .with_work(async |c: &mut Client| {
                let tx = c
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let none: [&(dyn ToSql + Sync); 0] = [];
                let rows = tx
                    .query_raw("SELECT iss, jti, exp FROM revbloom_revocations", none)
                    .await?;
                let mut rows = pin!(rows);
                while let Some(row) = rows.try_next().await? {
                    f(revocation_of(row.get(0), row.get(1), row.get(2)));
                }
                let rows = tx
                    .query_raw(
                        "SELECT iss, claim, value, before FROM revbloom_cutoffs",
                        none,
                    )
                    .await?;
                let mut rows = pin!(rows);
                while let Some(row) = rows.try_next().await? {
                    g(cutoff_of(row.get(0), row.get(1), row.get(2), row.get(3)));
                }
                tx.commit().await
            })
            .await
    }

    /// A tail starting at the current frontier: everything committed before now is below it
    /// or will be read by the first [`PgStore::tail`]. Take it before scanning the store.
    pub async fn tail_start(&self) -> Result<Tail, StoreError> {
        let c = self.shared.reader().await?;
        let row = c
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                &[],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        Ok(Tail {
            frontier: row.get(0),
            done: BTreeSet::new(),
        })
    }

    /// Rows committed since the last call (at least once each: a row may come twice, which
    /// the window absorbs), and the tail moved forward. See the module docs for why no row
    /// committed out of order is skipped.
    pub async fn tail(
        &self,
        tail: &mut Tail,
    ) -> Result<(Vec<Revocation>, Vec<Cutoff>), StoreError> {
        let (frontier, done) = (tail.frontier, tail.done.iter().copied().collect::<Vec<_>>());
        let (xmin, revs, cuts) = self
            .shared
            .with_work_conn(async |w: &mut WorkConn| {
                let [snapshot_xmin, new_revs, new_cuts] = match &w.tail {
                    Some(s) => s.clone(),
                    None => {
                        let c = &w.client;
                        let (a, b, d) = futures_util::future::try_join3(
                            c.prepare(
                                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                            ),
                            c.prepare(
                                "SELECT iss, jti, exp, xid FROM revbloom_revocations \
                                 WHERE xid >= $1 AND NOT (xid = ANY($2))",
                            ),
                            c.prepare(
                                "SELECT iss, claim, value, before, xid FROM revbloom_cutoffs \
                                 WHERE xid >= $1 AND NOT (xid = ANY($2))",
                            ),
                        )
                        .await?;
                        w.tail.insert([a, b, d]).clone()
                    }
                };
                // One read-only repeatable-read transaction, sent as one pipeline: the xmin
                // is the one the rows were read at. The statements are prepared, so each goes
                // out whole when first polled, in order, and the `COMMIT` cannot overtake
                // them.
                let c = &w.client;
                let (begin, xmin, revs, cuts, commit) = futures_util::future::join5(
                    c.batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
                    c.query_one(&snapshot_xmin, &[]),
                    c.query(&new_revs, &[&frontier, &done]),
                    c.query(&new_cuts, &[&frontier, &done]),
                    c.batch_execute("COMMIT"),
                )
                .await;
                begin?;
                let xmin: i64 = xmin?.get(0);
                let (revs, cuts) = (revs?, cuts?);
                commit?;
                Ok((xmin, revs, cuts))
            })
            .await?;
        let mut seen = HashSet::new();
        let revocations = revs
            .iter()
            .map(|r| {
                seen.insert(r.get::<_, i64>(3));
                revocation_of(r.get(0), r.get(1), r.get(2))
            })
            .collect();
        let cutoffs = cuts
            .iter()
            .map(|r| {
                seen.insert(r.get::<_, i64>(4));
                cutoff_of(r.get(0), r.get(1), r.get(2), r.get(3))
            })
            .collect();
        tail.done.extend(seen);
        tail.frontier = tail.frontier.max(xmin);
        let frontier = tail.frontier;
        tail.done.retain(|x| *x >= frontier);
        Ok((revocations, cutoffs))
    }

    /// The newest recorded generation and its snapshot bytes (as handed out: sealed unless
    /// sealing is off), if any: what a new builder continues the lineage from.
    pub async fn last_snapshot(&self) -> Result<Option<(u64, Bytes)>, StoreError> {
        let c = self.shared.reader().await?;
        let row = c
            .query_opt(
                "SELECT generation, snapshot FROM revbloom_generations \
                 ORDER BY generation DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        // The newest row keeps its snapshot; a row without one (written otherwise) is no base.
        Ok(row.and_then(|r| {
            let snapshot = r.get::<_, Option<Vec<u8>>>(1)?;
            Some((u64_of(r.get(0)), Bytes::from(snapshot)))
        }))
    }

    /// Generations recorded above `after`, oldest first; the newest carries its snapshot.
    pub async fn generations_since(&self, after: u64) -> Result<Vec<GenerationRow>, StoreError> {
        let c = self.shared.reader().await?;
        let rows = c
            .query(
                "SELECT generation, parent, epoch, created_at, entries, delta, \
                 CASE WHEN generation = (SELECT max(generation) FROM revbloom_generations) \
                      THEN snapshot END \
                 FROM revbloom_generations WHERE generation > $1 ORDER BY generation",
                &[&i64_of(after)],
            )
            .await
            .map_err(|e| self.shared.db_err(e))?;
        Ok(rows
            .iter()
            .map(|r| GenerationRow {
                generation: u64_of(r.get(0)),
                parent: u64_of(r.get(1)),
                epoch: u64_of(r.get(2)),
                created_at: u64_of(r.get(3)),
                entries: u64_of(r.get(4)),
                delta: r.get::<_, Option<Vec<u8>>>(5).map(Bytes::from),
                snapshot: r.get::<_, Option<Vec<u8>>>(6).map(Bytes::from),
            })
            .collect())
    }
}

fn revocation_of(iss: String, jti: String, exp: i64) -> Revocation {
    Revocation {
        iss: (!iss.is_empty()).then_some(iss),
        jti,
        exp: u64_of(exp),
    }
}

fn cutoff_of(iss: String, claim: String, value: String, before: i64) -> Cutoff {
    Cutoff {
        iss: (!iss.is_empty()).then_some(iss),
        claim,
        value,
        before: u64_of(before),
    }
}

/// Create the schema if missing and check its version; a new store gets a random seed.
async fn create_schema(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let err = |e| StoreError::Connect {
        url: url.to_owned(),
        source: Arc::new(e),
    };
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| StoreError::Seed(std::io::Error::other(e)))?;
    let seed = i64::from_le_bytes(seed);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(err)?;
    tx.batch_execute(SCHEMA).await.map_err(err)?;
    tx.execute(
        "INSERT INTO revbloom_state (id, schema_version, seed) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
        &[&SCHEMA_VERSION, &seed],
    )
    .await
    .map_err(err)?;
    let found: i32 = tx
        .query_one(
            "SELECT schema_version FROM revbloom_state WHERE id = 1",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    tx.commit().await.map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Schema {
            url: url.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The group-commit loop (see [`super`]). While the database is unreachable every request is
/// answered at once with [`StoreError::Database`] and a reconnect is tried with backoff, also
/// when no request arrives, so readiness recovers by itself.
async fn writer_loop(shared: &Shared, mut rx: mpsc::Receiver<Job>) {
    let mut client: Option<WriterConn> = None;
    let mut backoff = RECONNECT_BACKOFF.0;
    loop {
        let broken = shared.broken.load(Ordering::Relaxed);
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(j) => Some(j),
                None => return,
            },
            _ = tokio::time::sleep(backoff), if broken => None,
        };
        if client.as_ref().is_none_or(|c| c.client.is_closed()) {
            match WriterConn::open(shared).await {
                Ok(c) => {
                    client = Some(c);
                    backoff = RECONNECT_BACKOFF.0;
                    if shared.broken.swap(false, Ordering::Relaxed) {
                        tracing::info!(url = %shared.url, "the PostgreSQL store is reachable again");
                    }
                }
                Err(e) => {
                    if !shared.broken.swap(true, Ordering::Relaxed) {
                        tracing::error!(url = %shared.url, error = %e, "the PostgreSQL store is unreachable; writes are refused until it returns");
                    }
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
                    let e = Arc::new(e);
                    let mut jobs: Vec<Job> = first.into_iter().collect();
                    while let Ok(j) = rx.try_recv() {
                        jobs.push(j);
                    }
                    for job in jobs {
                        let _ = job.reply.send(Err(StoreError::Database {
                            url: shared.url.clone(),
                            source: Arc::clone(&e),
                        }));
                    }
                    continue;
                }
            }
        }
        let Some(first) = first else {
            continue;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let Some(c) = client.as_mut() else {
            continue;
        };
        let ops: Vec<&Op> = jobs.iter().map(|j| &j.op).collect();
        let mut attempt = apply(c, &ops).await;
        // Cutoffs are upserted in request order, so two replicas' groups can still deadlock
        // on them; PostgreSQL aborts one, which is retried whole (nothing of it was applied).
        for _ in 0..RETRIES {
            match &attempt {
                Err(e) if is_retryable(e) => attempt = apply(c, &ops).await,
                _ => break,
            }
        }
        match attempt {
            Ok(replies) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let _ = job.reply.send(Ok(reply));
                }
            }
            Err(e) => {
                // A commit whose outcome is unknown (the connection died during it) is not
                // acknowledged; the caller retries, and revocations are idempotent.
                if c.client.is_closed() {
                    client = None;
                    shared.broken.store(true, Ordering::Relaxed);
                    tracing::error!(url = %shared.url, error = %e, "lost the PostgreSQL store; reconnecting");
                }
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Database {
                        url: shared.url.clone(),
                        source: Arc::clone(&e),
                    }));
                }
            }
        }
    }
}

/// Retries of a group aborted by a deadlock or a serialization failure.
const RETRIES: usize = 3;

/// A transaction PostgreSQL aborted to break a deadlock or a serialization conflict.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// Whether cutoffs on `claim` may be stored (in use already, or fewer than
/// [`MAX_SNAPSHOT_CLAIMS`] claims are; then it is recorded). `admitted` caches answers
/// within one transaction.
async fn claim_admitted(
    tx: &tokio_postgres::Transaction<'_>,
    claim: &str,
    admitted: &mut HashMap<String, bool>,
) -> Result<bool, tokio_postgres::Error> {
    if let Some(a) = admitted.get(claim) {
        return Ok(*a);
    }
    let mut ok = claim_exists(tx, claim).await?;
    if !ok {
        // Replicas admitting different new claims at once must not pass the cap together.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIMS_LOCK])
            .await?;
        let max = i64::try_from(MAX_SNAPSHOT_CLAIMS).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO revbloom_cutoff_claims (claim) SELECT $1 \
             WHERE (SELECT count(*) FROM revbloom_cutoff_claims) < $2 ON CONFLICT DO NOTHING",
            &[&claim, &max],
        )
        .await?;
        ok = claim_exists(tx, claim).await?;
    }
    admitted.insert(claim.to_owned(), ok);
    Ok(ok)
}

async fn claim_exists(
    tx: &tokio_postgres::Transaction<'_>,
    claim: &str,
) -> Result<bool, tokio_postgres::Error> {
    tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM revbloom_cutoff_claims WHERE claim = $1)",
        &[&claim],
    )
    .await
    .map(|r| r.get::<_, bool>(0))
}

/// Store `c` unless a later cutoff for its key is stored: (whether a row existed, whether it
/// changed).
async fn raise_cutoff(
    tx: &tokio_postgres::Transaction<'_>,
    c: &Cutoff,
) -> Result<(bool, bool), tokio_postgres::Error> {
    let iss = c.iss.as_deref().unwrap_or("");
    let row = tx
        .query_one(
            "WITH old AS (SELECT before FROM revbloom_cutoffs \
                          WHERE claim = $1 AND value = $2 AND iss = $3), \
                  up AS (INSERT INTO revbloom_cutoffs (claim, value, iss, before) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (claim, value, iss) DO UPDATE \
                         SET before = EXCLUDED.before, \
                             xid = pg_current_xact_id()::text::bigint \
                         WHERE revbloom_cutoffs.before < EXCLUDED.before \
                         RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM old), EXISTS (SELECT 1 FROM up)",
            &[&c.claim, &c.value, &iss, &i64_of(c.before)],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The writer's connection with its statements prepared once.
struct WriterConn {
    client: Client,
    insert: Statement,
    notify: Statement,
}

/// Insert a group's revocations (sorted, deduplicated); returns the keys that were new.
const INSERT_REVOCATIONS: &str = "INSERT INTO revbloom_revocations (jti, iss, exp) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) \
     ON CONFLICT DO NOTHING RETURNING jti, iss, exp";

impl WriterConn {
    async fn open(shared: &Shared) -> Result<WriterConn, tokio_postgres::Error> {
        let client = shared.connect().await?;
        let (insert, notify) = futures_util::future::try_join(
            client.prepare(INSERT_REVOCATIONS),
            client.prepare("SELECT pg_notify($1, '')"),
        )
        .await?;
        Ok(WriterConn {
            client,
            insert,
            notify,
        })
    }
}

/// The revocations of a group in one lock order for every replica (sorted, duplicates
/// dropped): two groups naming the same keys (a client retrying through another replica)
/// then queue behind each other instead of deadlocking.
fn group_rows<'a>(
    lists: impl Iterator<Item = &'a Vec<Revocation>>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<i64>) {
    let mut rows: Vec<(&str, &str, i64)> = lists
        .flatten()
        .map(|r| {
            (
                r.jti.as_str(),
                r.iss.as_deref().unwrap_or(""),
                i64_of(r.exp),
            )
        })
        .collect();
    rows.sort_unstable();
    rows.dedup();
    (
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        rows.iter().map(|r| r.2).collect(),
    )
}

/// Count each request's revocations as new or duplicate: a key inserted by this group is new
/// for the first request (in order) that named it and a duplicate for every later one, as if
/// the requests had run one after another.
fn settle(
    ops: &[&Op],
    replies: &mut [Option<Reply>],
    mut inserted: HashSet<(String, String, i64)>,
) {
    for (op, reply) in ops.iter().zip(replies.iter_mut()) {
        if let (Op::Revoke(list, _), Some(Reply::Revoke(outcome))) = (op, reply.as_mut()) {
            for r in list {
                let key = (
                    r.jti.clone(),
                    r.iss.clone().unwrap_or_default(),
                    i64_of(r.exp),
                );
                if inserted.remove(&key) {
                    outcome.new += 1;
                } else {
                    outcome.duplicates += 1;
                }
            }
        }
    }
}

/// Apply a group in one transaction; the replies in the order of `ops`.
async fn apply(conn: &mut WriterConn, ops: &[&Op]) -> Result<Vec<Reply>, tokio_postgres::Error> {
    let only_revocations = ops
        .iter()
        .all(|op| matches!(op, Op::Revoke(_, cutoffs) if cutoffs.is_empty()));
    if only_revocations {
        return apply_revocations(conn, ops).await;
    }
    let WriterConn {
        client,
        insert,
        notify,
    } = conn;
    let tx = client.transaction().await?;
    let mut admitted = HashMap::new();
    let mut replies: Vec<Option<Reply>> = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Revoke(_, jti_cutoffs) => {
                if !jti_cutoffs.is_empty() && !claim_admitted(&tx, JTI_CLAIM, &mut admitted).await?
                {
                    replies.push(Some(Reply::TooManyClaims(JTI_CLAIM.to_owned())));
                    continue;
                }
                let mut outcome = RevokeOutcome::default();
                for c in jti_cutoffs {
                    match raise_cutoff(&tx, c).await? {
                        (true, _) => outcome.duplicates += 1,
                        (false, _) => outcome.new += 1,
                    }
                }
                replies.push(Some(Reply::Revoke(outcome)));
            }
            Op::Cutoff(c) => {
                if !claim_admitted(&tx, &c.claim, &mut admitted).await? {
                    replies.push(Some(Reply::TooManyClaims(c.claim.clone())));
                    continue;
                }
                let (_, changed) = raise_cutoff(&tx, c).await?;
                replies.push(Some(Reply::Cutoff(changed)));
            }
        }
    }
    // Revocations of every admitted request go in with one statement.
    let admitted_lists = ops
        .iter()
        .zip(&replies)
        .filter_map(|(op, reply)| match (op, reply) {
            (Op::Revoke(list, _), Some(Reply::Revoke(_))) => Some(list),
            _ => None,
        });
    let (jtis, isss, exps) = group_rows(admitted_lists);
    let mut inserted: HashSet<(String, String, i64)> = HashSet::new();
    if !jtis.is_empty() {
        let rows = tx.query(&*insert, &[&jtis, &isss, &exps]).await?;
        inserted = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    }
    tx.execute(&*notify, &[&WRITES_CHANNEL]).await?;
    tx.commit().await?;
    settle(ops, &mut replies, inserted);
    Ok(replies.into_iter().flatten().collect())
}

/// [`apply`] for a group of revocations only (no cutoff, so no claim to admit): `BEGIN`, the
/// insert, the notification and `COMMIT` go out in one pipeline, one round trip to the
/// database. The group is acknowledged only when every one of them succeeded: a failed
/// statement aborts the transaction, and the `COMMIT` behind it then only ends it (PostgreSQL
/// answers it as a rollback), so nothing is reported durable that was not committed.
async fn apply_revocations(
    conn: &mut WriterConn,
    ops: &[&Op],
) -> Result<Vec<Reply>, tokio_postgres::Error> {
    let (jtis, isss, exps) = group_rows(ops.iter().filter_map(|op| match op {
        Op::Revoke(list, _) => Some(list),
        Op::Cutoff(_) => None,
    }));
    let c = &conn.client;
    // Each request goes out when its future is first polled, and `join4` polls in order.
    let (begin, rows, notified, commit) = futures_util::future::join4(
        c.batch_execute("BEGIN"),
        c.query(&conn.insert, &[&jtis, &isss, &exps]),
        c.execute(&conn.notify, &[&WRITES_CHANNEL]),
        c.batch_execute("COMMIT"),
    )
    .await;
    begin?;
    let rows = rows?;
    notified?;
    commit?;
    let inserted = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut replies: Vec<Option<Reply>> = ops
        .iter()
        .map(|_| Some(Reply::Revoke(RevokeOutcome::default())))
        .collect();
    settle(ops, &mut replies, inserted);
    Ok(replies.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://rb:s3cret@db.example:5432/revbloom?sslmode=disable"),
            "postgres://rb:***@db.example:5432/revbloom?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://rb@db/revbloom?password=s3cret&x=1"),
            "postgresql://rb@db/revbloom?password=***&x=1"
        );
        assert_eq!(
            redact_url("host=db user=rb password=s3cret dbname=r"),
            "host=db user=rb password=*** dbname=r"
        );
        assert_eq!(redact_url("postgres://db/r"), "postgres://db/r");
    }
}
