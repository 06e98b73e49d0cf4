//! A failover costs verifiers no full snapshot: two `revbloom serve` replicas on one
//! PostgreSQL database, a sync client following the replica that is not the builder, the
//! builder SIGKILLed. The successor's first generation is a delta from its predecessor's last
//! one, and the verifier reaches the successor's generations through deltas alone, with every
//! acknowledged revocation positive in its view. Three failovers, a fresh verifier for each;
//! before each kill the builder is stopped and revocations and cutoffs are written through the
//! other replica, so the successor's first delta must carry what its predecessor never
//! published.
//!
//! `cargo test --release -p revbloom-server --test it pg_continuation -- --nocapture`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use revbloom::snapshot::SignatureStatus;
use revbloom::sync::{SyncClient, SyncConfig, SyncFailure};
use revbloom::{SnapshotHandle, SnapshotView, StalenessPolicy, Verdict};

use crate::pg_failover::{builder, signal, Cluster, Replica};
use crate::support::{client, now, TOKEN};

/// The window rotates when `now - leeway` crosses a bucket boundary (the defaults: 3600 s
/// buckets, 60 s leeway), and a rotation brings a full snapshot by design. Wait until the next
/// rotation is at least `margin` away, so the test measures failovers alone.
async fn clear_of_rotation(margin: u64) {
    let (width, leeway) = (3600, 60);
    let left = width - now().saturating_sub(leeway) % width;
    if left < margin {
        println!("waiting {left} s for the window to rotate first");
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

async fn revoke(http: &reqwest::Client, url: &str, jti: &str, exp: u64) {
    let r = http
        .post(format!("{url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"jti": jti, "exp": exp}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{jti}");
}

async fn cutoff(http: &reqwest::Client, url: &str, value: &str, before: u64) {
    let r = http
        .post(format!("{url}/v1/cutoffs"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"value": value, "before": before}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "cutoff {value}");
}

/// Wait (up to 20 s) until the verifier holds at least generation `at_least`, answers
/// positive for every revocation in `acked` and holds every `sub` cutoff in `cutoffs` (at
/// its `before` or later).
async fn verifier_holds(
    handle: &SnapshotHandle,
    acked: &[(String, u64)],
    cutoffs: &[(String, u64)],
    at_least: u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(view) = handle.current() {
            let sub = view.claim_hasher(None, "sub");
            let clear: Vec<&str> = acked
                .iter()
                .filter(|(j, exp)| view.check(j.as_bytes(), Some(*exp)) == Verdict::Clear)
                .map(|(j, _)| j.as_str())
                .chain(
                    cutoffs
                        .iter()
                        .filter(|(v, before)| view.cutoff(sub.key(v)) < Some(*before))
                        .map(|(v, _)| v.as_str()),
                )
                .collect();
            if view.generation() >= at_least && clear.is_empty() {
                return view.generation();
            }
            assert!(
                Instant::now() < deadline,
                "verifier at generation {} (waiting for {at_least}); clear: {clear:?}",
                view.generation()
            );
        } else {
            assert!(Instant::now() < deadline, "the verifier never loaded");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_reaches_verifiers_as_deltas() {
    clear_of_rotation(90).await;
    let mut cluster = Cluster::start().await;
    let db = cluster.pg.client().await;
    let http = client();
    let mut replicas: Vec<Replica> = (0..2).map(|_| cluster.spawn()).collect();
    let mut acked: Vec<(String, u64)> = Vec::new();
    // A first cutoff lists the claim, so later ones do not change the layout.
    let mut cutoffs = vec![("setup".to_owned(), now())];
    cutoff(&http, &replicas[0].url, "setup", cutoffs[0].1).await;
    let mut full_per_failover = Vec::new();
    for round in 0..3 {
        let b = builder(&http, &replicas, Duration::from_secs(10)).await;
        let source = 1 - b;
        // A verifier following the replica that survives: one full snapshot to start.
        let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
        let sync = SyncClient::start(
            SyncConfig::url(&replicas[source].url)
                .open_options(cluster.options.clone())
                .long_poll(Duration::from_secs(1))
                .backoff(Duration::from_millis(50), Duration::from_millis(200)),
            handle.clone(),
        )
        .unwrap();
        // Started: it holds everything acknowledged so far (in round 0 the setup cutoff,
        // whose generation may still be on its way when the client starts: it then arrives
        // as a second full snapshot, since listing a claim changes the layout).
        verifier_holds(&handle, &acked, &cutoffs, 0).await;
        let snapshots_at_start = sync.stats().snapshots.load(Relaxed);
        let base = now();
        // Revocations into several buckets, through both replicas, before the failover.
        for i in 0..12u64 {
            let jti = format!("r{round}-before-{i}");
            let exp = base + 1800 + (i % 6) * 3600;
            revoke(&http, &replicas[(i % 2) as usize].url, &jti, exp).await;
            acked.push((jti, exp));
        }
        let (_, last_before) = cluster.state(&db).await;
        verifier_holds(&handle, &acked, &cutoffs, last_before as u64).await;
        let stats = sync.stats();
        let snapshots_before = stats.snapshots.load(Relaxed);
        let deltas_before = stats.deltas.load(Relaxed);
        assert_eq!(
            snapshots_before, snapshots_at_start,
            "round {round}: revocations before the failover arrived as deltas"
        );

        // Stop the builder, then write through the other replica: these rows are committed
        // but never published by this builder.
        signal("STOP", &replicas[b]);
        let (epoch_before, _) = cluster.state(&db).await;
        let base = now();
        for i in 0..6u64 {
            let jti = format!("r{round}-gap-{i}");
            let exp = base + 1800 + (i % 6) * 3600;
            revoke(&http, &replicas[source].url, &jti, exp).await;
            acked.push((jti, exp));
        }
        let value = format!("r{round}-gap");
        cutoff(&http, &replicas[source].url, &value, base).await;
        cutoffs.push((value, base));
        // A later cutoff for a value the last snapshot already holds.
        cutoff(&http, &replicas[source].url, "setup", base + 1 + round).await;
        cutoffs[0].1 = base + 1 + round;
        replicas[b].child.kill().unwrap(); // SIGKILL
        let _ = replicas[b].child.wait();
        // The successor's first generation: a newer epoch's lowest one.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (first, parent, has_delta, prev_last) = loop {
            let row = db
                .query_opt(
                    "SELECT generation, parent, delta IS NOT NULL, \
                     (SELECT max(generation) FROM revbloom_generations WHERE epoch <= $1) \
                     FROM revbloom_generations WHERE epoch > $1 ORDER BY generation LIMIT 1",
                    &[&epoch_before],
                )
                .await
                .unwrap();
            if let Some(r) = row {
                break (
                    r.get::<_, i64>(0) as u64,
                    r.get::<_, i64>(1) as u64,
                    r.get::<_, bool>(2),
                    r.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
                );
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no new builder published"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // More revocations, after the takeover, through the new builder.
        let base = now();
        for i in 0..12u64 {
            let jti = format!("r{round}-after-{i}");
            let exp = base + 1800 + (i % 6) * 3600;
            revoke(&http, &replicas[source].url, &jti, exp).await;
            acked.push((jti, exp));
        }
        let (_, last_after) = cluster.state(&db).await;
        let reached = verifier_holds(&handle, &acked, &cutoffs, last_after as u64).await;
        // The copy built from deltas is the publisher's signed snapshot, byte for byte.
        let copy = handle.current().unwrap();
        let reopened = SnapshotView::open(copy.as_bytes(), &cluster.options)
            .expect("the verifier's copy reopens under the publisher's key");
        assert_eq!(reopened.signature_status(), SignatureStatus::Verified);
        let full = stats.snapshots.load(Relaxed) - snapshots_before;
        let deltas = stats.deltas.load(Relaxed) - deltas_before;
        println!(
            "round {round}: generation {prev_last} -> successor's first {first} (parent {parent}, \
             delta stored: {has_delta}); verifier reached {reached} with {deltas} deltas and \
             {full} full snapshots"
        );
        full_per_failover.push(full);
        assert!(
            has_delta,
            "round {round}: the successor's first generation has no delta"
        );
        assert_eq!(
            parent, prev_last,
            "round {round}: it does not follow the last generation"
        );
        assert_eq!(
            full, 0,
            "round {round}: the verifier downloaded a full snapshot across the failover"
        );
        assert!(deltas > 0, "round {round}: no delta applied");
        assert_eq!(
            stats.failures(SyncFailure::Rollback),
            0,
            "round {round}: rollback refused"
        );
        assert_eq!(
            stats.errors.load(Relaxed),
            0,
            "round {round}: sync errors: {:?}",
            stats.last_error()
        );
        sync.stop();
        replicas[b] = cluster.spawn();
    }
    println!("full snapshot downloads per failover: {full_per_failover:?}");
    let _ = std::fs::remove_dir_all(&cluster.dir);
}
