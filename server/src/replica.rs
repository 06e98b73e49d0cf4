//! Publisher replicas on a shared PostgreSQL store: every replica accepts writes and serves
//! lookups, snapshots, deltas and long-polls; exactly one at a time, the **builder**, turns
//! committed rows into generations.
//!
//! - **Election.** Each replica keeps a dedicated connection (never a pooled one) and tries
//!   `pg_try_advisory_lock` on it; the session that holds the lock is the builder. The session
//!   runs with `idle_session_timeout` = [`LEASE`] and the builder touches it every third of
//!   that, so a builder that stops running (SIGSTOP, a hung host) loses its session, and with
//!   it the lock, within the lease; a killed one loses it at once.
//! - **Fencing.** On winning, the builder bumps the epoch in `revbloom_state` and stamps every
//!   publication with it; the database refuses a publication of any older epoch (see
//!   [`crate::store::postgres`]). A builder that resumes after its successor took over cannot
//!   publish over it.
//! - **Lineage.** The hash seed and the generation counter live in the database: a new builder
//!   rebuilds the window from the store with the same seed and the last generation's layout,
//!   and continues above the last generation with a delta from it (a full snapshot when that
//!   layout cannot carry the store's contents; see [`Publisher::start_on`]).
//! - **Tailing.** The builder reads rows committed by every replica by transaction visibility
//!   ([`PgStore::tail`]), woken by `NOTIFY` and polling every [`TAIL_POLL`] behind it.
//! - **Following.** Every replica (the builder included) reads new generations from the
//!   database into its [`Hub`], woken by `NOTIFY` and polling every [`FOLLOW_POLL`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};
use tokio_util::sync::CancellationToken;

use super::config::{resolve_publisher_keys, ServerConfig};
use super::metrics::Metrics;
use super::publish::{new_hub, Hub, HubFeed, PublishError, Published, Publisher};
use super::store::postgres::{BUILDER_LOCK, GENERATIONS_CHANNEL, WRITES_CHANNEL};
use super::store::{Committed, PgStore, Store, StoreError};

/// How long a builder may stop talking to the database before its session, and with it the
/// builder lock, is ended by the server.
pub const LEASE: Duration = Duration::from_secs(3);
/// How often a candidate tries to take the builder lock.
pub const CANDIDATE_POLL: Duration = Duration::from_millis(200);
/// The builder's fallback poll for new rows (a `NOTIFY` usually wakes it first).
pub const TAIL_POLL: Duration = Duration::from_millis(250);
/// A replica's fallback poll for new generations (a `NOTIFY` usually wakes it first).
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// How long start waits for a first generation (published here or by another replica).
const FIRST_GENERATION_WAIT: Duration = Duration::from_secs(15);
/// First and longest wait between reconnection attempts of the dedicated connections.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// A running replica: the hub its HTTP API serves from, and its background tasks.
pub struct Replica {
    /// What the HTTP API serves.
    pub hub: Hub,
    /// Election, tailing, following and notification tasks; they end on shutdown.
    pub task: JoinHandle<()>,
}

/// Wake-ups from `LISTEN`.
#[derive(Clone, Default)]
struct Wakes {
    writes: Arc<Notify>,
    generations: Arc<Notify>,
}

/// Start a replica on `store` (a PostgreSQL store): listen for notifications, follow the
/// generations in the database, and stand for builder. Returns once the hub holds a first
/// generation, or after a bounded wait (readiness then reports the snapshot stale).
pub async fn start(
    store: Store,
    config: &ServerConfig,
    signing_key: Option<SigningKey>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<Replica, PublishError> {
    let Some(pg) = store.postgres().cloned() else {
        return Err(PublishError::Store(StoreError::UnexpectedReply {
            request: "replica start on an embedded store",
        }));
    };
    let keys = resolve_publisher_keys(&mut config.clone())?;
    let (hub, feed) = new_hub(config, &keys.seal.read_token(), config.seal);
    let wakes = Wakes::default();
    let listen = tokio::spawn(listen(pg.clone(), wakes.clone(), shutdown.clone()));
    let follow = tokio::spawn(follow(
        pg.clone(),
        feed.clone(),
        Arc::clone(&wakes.generations),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let elect = tokio::spawn(elect(
        Candidate {
            store,
            pg,
            config: config.clone(),
            signing_key,
            metrics,
            feed,
            wake: Arc::clone(&wakes.writes),
        },
        shutdown.clone(),
    ));
    let mut current = hub.subscribe();
    let first = tokio::time::timeout(FIRST_GENERATION_WAIT, async {
        while current.borrow_and_update().generation == 0 {
            if current.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    if first.is_err() {
        tracing::warn!(
            "no generation was published within {FIRST_GENERATION_WAIT:?}; serving as not ready until the builder publishes"
        );
    }
    let task = tokio::spawn(async move {
        let _ = tokio::join!(listen, follow, elect);
    });
    Ok(Replica { hub, task })
}

/// `LISTEN` on a dedicated connection, forwarding each notification as a wake-up. After a
/// (re)connection both sides are woken: what was notified while disconnected is lost.
async fn listen(pg: PgStore, wakes: Wakes, shutdown: CancellationToken) {
    let mut backoff = BACKOFF.0;
    loop {
        let connected = pg.session().await;
        let (client, mut conn) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN connection failed; polling meanwhile");
                if pause(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = tx.send(n.channel() == WRITES_CHANNEL);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let listening = client
            .batch_execute(&format!(
                "LISTEN {WRITES_CHANNEL}; LISTEN {GENERATIONS_CHANNEL}"
            ))
            .await;
        if listening.is_ok() {
            backoff = BACKOFF.0;
            wakes.writes.notify_one();
            wakes.generations.notify_one();
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(true) => wakes.writes.notify_one(),
                        Some(false) => wakes.generations.notify_one(),
                        None => break,
                    },
                    _ = shutdown.cancelled() => {
                        driver.abort();
                        return;
                    }
                }
            }
        }
        driver.abort();
        drop(client);
        if pause(backoff, &shutdown).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Sleep `d` unless shut down first; returns whether shutdown came.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Copy generations recorded in the database into the hub.
async fn follow(
    pg: PgStore,
    feed: HubFeed,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        match pg.generations_since(feed.generation()).await {
            Ok(rows) => {
                failing = false;
                let mut rows = rows.into_iter().peekable();
                while let Some(row) = rows.next() {
                    match (rows.peek().is_none(), row.snapshot) {
                        (true, Some(snapshot)) => {
                            let generation = row.generation;
                            let published = Published {
                                generation,
                                created_at: row.created_at,
                                snapshot,
                                entries: row.entries,
                            };
                            if feed.offer(published, row.parent, row.delta) {
                                metrics.generation.store(generation, Ordering::Relaxed);
                            }
                        }
                        _ => feed.offer_delta(row.parent, row.generation, row.delta),
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "reading new generations failed; retrying");
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// What a replica needs to become the builder.
struct Candidate {
    store: Store,
    pg: PgStore,
    config: ServerConfig,
    signing_key: Option<SigningKey>,
    metrics: Arc<Metrics>,
    feed: HubFeed,
    wake: Arc<Notify>,
}

/// Stand for builder until shutdown: take the lock when free, build while it is held, and
/// stand again after losing it.
async fn elect(c: Candidate, shutdown: CancellationToken) {
    let mut backoff = BACKOFF.0;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let (client, lost) = match dedicated(&c.pg).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "election connection failed");
                if pause(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        backoff = BACKOFF.0;
        let won = loop {
            match client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&BUILDER_LOCK])
                .await
            {
                Ok(row) if row.get::<_, bool>(0) => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
            tokio::select! {
                _ = tokio::time::sleep(CANDIDATE_POLL) => {}
                _ = lost.cancelled() => break false,
                _ = shutdown.cancelled() => return,
            }
        };
        if won {
            if let Err(e) = build(&c, &client, &lost, &shutdown).await {
                tracing::error!(error = %e, "building failed; standing for builder again");
                if pause(backoff, &shutdown).await {
                    return;
                }
            }
        }
        // Ends the session, and with it the lock if still held.
        drop(client);
    }
}

/// A dedicated session for the builder lock, ended by the server after [`LEASE`] of silence,
/// and a token cancelled when the session ends.
async fn dedicated(pg: &PgStore) -> Result<(Client, CancellationToken), tokio_postgres::Error> {
    let (client, conn) = pg.session().await?;
    let lost = CancellationToken::new();
    let on_end = lost.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "the election session ended");
        }
        on_end.cancel();
    });
    client
        .batch_execute("SET application_name = 'revbloom-election'")
        .await?;
    let lease = format!("SET idle_session_timeout = {}", LEASE.as_millis());
    if let Err(e) = client.batch_execute(&lease).await {
        // PostgreSQL before 14: a builder that stops running keeps the lock until the
        // server's TCP keepalive ends its session; fencing still refuses it once it resumes.
        tracing::warn!(error = %e, "idle_session_timeout unavailable; the builder lease falls back to TCP keepalive");
    }
    Ok((client, lost))
}

/// Be the builder while the lock's session lives: take a new epoch, rebuild the window from
/// the store, then tail and publish until the session ends, the database fences this epoch,
/// or shutdown.
async fn build(
    c: &Candidate,
    client: &Client,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), PublishError> {
    let (epoch, last) = c.pg.take_epoch(client).await?;
    tracing::info!(epoch, last_generation = last, "this replica is the builder");
    // The lease runs from now on, through the rebuild too: a large store takes longer to scan
    // than the lease, and a silent session would be ended under a builder still starting.
    let heartbeat = async {
        loop {
            tokio::time::sleep(LEASE / 3).await;
            if client.simple_query("SELECT 1").await.is_err() {
                return;
            }
        }
    };
    tokio::pin!(heartbeat);
    let starting = async {
        // Before the scan: every row the scan misses is at or above this frontier.
        let tail = c.pg.tail_start().await?;
        let publisher = Publisher::start_on(
            c.store.clone(),
            &c.config,
            c.signing_key.clone(),
            Arc::clone(&c.metrics),
            c.feed.clone(),
            epoch,
        )
        .await?;
        Ok::<_, PublishError>((tail, publisher))
    };
    let (tail, publisher) = tokio::select! {
        started = starting => started?,
        _ = &mut heartbeat => {
            tracing::warn!(epoch, "the builder session failed while starting; standing down");
            return Ok(());
        }
        _ = lost.cancelled() => {
            tracing::warn!(epoch, "the builder session ended while starting; standing down");
            return Ok(());
        }
        _ = shutdown.cancelled() => return Ok(()),
    };
    let stop = shutdown.child_token();
    c.feed.set_builder(true);
    let (commit_tx, commit_rx) = mpsc::unbounded_channel();
    let tailer = tokio::spawn(tail_rows(
        c.pg.clone(),
        tail,
        commit_tx,
        Arc::clone(&c.wake),
        stop.clone(),
    ));
    tokio::select! {
        _ = publisher.run(commit_rx, stop.clone()) => {}
        _ = &mut heartbeat => tracing::warn!(epoch, "the builder session failed; standing down"),
        _ = lost.cancelled() => tracing::warn!(epoch, "the builder session ended; standing down"),
    }
    c.feed.set_builder(false);
    stop.cancel();
    let _ = tailer.await;
    Ok(())
}

/// Feed rows committed by any replica to the publisher.
async fn tail_rows(
    pg: PgStore,
    mut tail: super::store::postgres::Tail,
    tx: mpsc::UnboundedSender<Committed>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        match pg.tail(&mut tail).await {
            Ok((revocations, cutoffs)) => {
                failing = false;
                if !revocations.is_empty() && tx.send(Committed::Revocations(revocations)).is_err()
                {
                    return;
                }
                for c in cutoffs {
                    if tx.send(Committed::Cutoff(c)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "tailing new rows failed; retrying");
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(TAIL_POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}
