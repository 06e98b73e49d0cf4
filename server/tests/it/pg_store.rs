//! The PostgreSQL store against a real throwaway server: the same answers as the embedded
//! store, tailing that survives out-of-order commits, fencing enforced by the database, and
//! clear errors when the database is missing or goes away.

use std::time::{Duration, Instant};

use revbloom::bounds::Bounds;
use revbloom_server::store::{Cutoff, PgStore, Publication, Revocation, RevokeOutcome};
use revbloom_server::{Store, StoreError};

use crate::support::pg::{shared_keys, PgCluster};
use crate::support::{self, client, temp_dir, TOKEN};

fn rev(iss: Option<&str>, jti: &str, exp: u64) -> Revocation {
    Revocation {
        iss: iss.map(str::to_owned),
        jti: jti.into(),
        exp,
    }
}

fn publication(generation: u64, epoch: u64) -> Publication {
    Publication {
        generation,
        parent: generation - 1,
        epoch,
        created_at: 1,
        entries: 0,
        snapshot: vec![1, 2, 3].into(),
        delta: None,
        keep: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_answers_as_the_embedded_one() {
    let pg = PgCluster::start().await;
    let (store, writer) = Store::connect_postgres(&pg.url()).await.unwrap();
    // A second connect finds the schema in place (idempotent) and the same seed.
    let (again, again_writer) = Store::connect_postgres(&pg.url()).await.unwrap();
    assert_eq!(
        store.lineage_seed().await.unwrap(),
        again.lineage_seed().await.unwrap()
    );
    let store = store.with_default_issuer(Some("https://d/"));
    let o = store
        .revoke(vec![rev(None, "a", 100), rev(Some("https://i"), "a", 200)])
        .await
        .unwrap();
    assert_eq!(
        o,
        RevokeOutcome {
            new: 2,
            duplicates: 0
        }
    );
    // Duplicates within one request and across requests, as redb counts them.
    let o = store
        .revoke(vec![
            rev(None, "a", 50),
            rev(None, "a", 100),
            rev(None, "a", 50),
        ])
        .await
        .unwrap();
    assert_eq!(
        o,
        RevokeOutcome {
            new: 1,
            duplicates: 2
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
    assert_eq!(store.lookup(None, "a").await.unwrap(), Some(100));
    assert_eq!(
        store.lookup(Some("https://i/"), "a").await.unwrap(),
        Some(200)
    );
    assert_eq!(store.lookup(Some("https://j"), "b").await.unwrap(), None);
    // A revocation without exp is a jti cutoff.
    let jti_cut = Cutoff {
        iss: Some("https://d".into()),
        claim: revbloom::cutoff::JTI_CLAIM.into(),
        value: "c".into(),
        before: 77,
    };
    let o = store
        .revoke_with(vec![], vec![jti_cut.clone()])
        .await
        .unwrap();
    assert_eq!(
        o,
        RevokeOutcome {
            new: 1,
            duplicates: 0
        }
    );
    let o = store.revoke_with(vec![], vec![jti_cut]).await.unwrap();
    assert_eq!(
        o,
        RevokeOutcome {
            new: 0,
            duplicates: 1
        }
    );
    let l = store.lookup_covered(None, "c").await.unwrap();
    assert_eq!((l.exp, l.without_exp), (None, Some(77)));
    assert_eq!(store.counts().await.unwrap(), (3, 2));
    assert_eq!(
        store.cutoff_claims().await.unwrap(),
        vec!["jti".to_owned(), "sub".to_owned()]
    );
    let b = Bounds {
        max_token_lifetime: 100,
        leeway: 10,
        max_clock_skew: 5,
    };
    let p = store.prune(66, b).await.unwrap();
    assert_eq!((p.revocations, p.cutoffs), (1, 0));
    assert_eq!(store.pruned_before().await.unwrap(), 51);
    let mut scanned = Vec::new();
    store
        .scan(|r| scanned.push((r.jti, r.exp)), |_| {})
        .await
        .unwrap();
    scanned.sort();
    assert_eq!(scanned, vec![("a".to_owned(), 100), ("a".to_owned(), 200)]);
    assert!(store.commits() >= 4);
    drop((store, again));
    tokio::task::spawn_blocking(move || {
        writer.join();
        again_writer.join();
    })
    .await
    .unwrap();
}

/// Two replicas revoking the same keys at once, in opposite orders (a client retrying through
/// another replica): every request is acknowledged, none fails on a deadlock, and each key is
/// new for exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_writing_the_same_keys_at_once_all_succeed() {
    let pg = PgCluster::start().await;
    let (a, a_writer) = Store::connect_postgres(&pg.url()).await.unwrap();
    let (b, b_writer) = Store::connect_postgres(&pg.url()).await.unwrap();
    for round in 0..20 {
        let keys: Vec<Revocation> = (0..200)
            .map(|i| rev(None, &format!("r{round}-k{i}"), 1_000))
            .collect();
        let reversed: Vec<Revocation> = keys.iter().rev().cloned().collect();
        let (x, y) = tokio::join!(a.revoke(keys), b.revoke(reversed));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.new + y.new, 200, "round {round}: {x:?} {y:?}");
        assert_eq!(x.duplicates + y.duplicates, 200, "round {round}");
    }
    assert_eq!(a.counts().await.unwrap().0, 4_000);
    drop((a, b));
    tokio::task::spawn_blocking(move || {
        a_writer.join();
        b_writer.join();
    })
    .await
    .unwrap();
}

/// Transaction A takes its id first, B takes a later one and commits first, the tail reads,
/// then A commits: A's row must still come out of the tail. The control shows the trap is
/// real: A's id is below B's, so a tail that resumed after the highest id it had seen would
/// have skipped A for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_out_of_order_is_tailed() {
    let pg = PgCluster::start().await;
    let (store, writer) = PgStore::connect(&pg.url()).await.unwrap();
    let mut tail = store.tail_start().await.unwrap();
    let (revs, _) = store.tail(&mut tail).await.unwrap();
    assert!(revs.is_empty());
    let mut a = pg.client().await;
    let mut b = pg.client().await;
    let ta = a.transaction().await.unwrap();
    ta.execute(
        "INSERT INTO revbloom_revocations (jti, iss, exp) VALUES ('early-id', '', 100)",
        &[],
    )
    .await
    .unwrap();
    let tb = b.transaction().await.unwrap();
    tb.execute(
        "INSERT INTO revbloom_revocations (jti, iss, exp) VALUES ('late-id', '', 100)",
        &[],
    )
    .await
    .unwrap();
    tb.commit().await.unwrap();
    let (revs, _) = store.tail(&mut tail).await.unwrap();
    let jtis: Vec<&str> = revs.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(jtis, vec!["late-id"]);
    ta.commit().await.unwrap();
    let (revs, _) = store.tail(&mut tail).await.unwrap();
    let jtis: Vec<&str> = revs.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(jtis, vec!["early-id"], "the row committed late was skipped");
    // Nothing is delivered twice once both are done.
    let (revs, _) = store.tail(&mut tail).await.unwrap();
    assert!(revs.is_empty(), "{revs:?}");
    // Control: the late committer holds the lower transaction id.
    let rows = a
        .query(
            "SELECT jti, xid FROM revbloom_revocations ORDER BY xid",
            &[],
        )
        .await
        .unwrap();
    let order: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(order, vec!["early-id", "late-id"]);
    // A cutoff raised later moves to the raising transaction and is tailed again.
    store
        .cutoff(Cutoff {
            iss: None,
            claim: "sub".into(),
            value: "bob".into(),
            before: 5,
        })
        .await
        .unwrap();
    store
        .cutoff(Cutoff {
            iss: None,
            claim: "sub".into(),
            value: "bob".into(),
            before: 9,
        })
        .await
        .unwrap();
    let (_, cuts) = store.tail(&mut tail).await.unwrap();
    assert_eq!(cuts.iter().map(|c| c.before).max(), Some(9));
    drop(store);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
}

/// The database, not the builder's good faith, refuses a publication of a superseded epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_builder_epoch_cannot_publish() {
    let pg = PgCluster::start().await;
    let (store, writer) = PgStore::connect(&pg.url()).await.unwrap();
    let lock = pg.client().await;
    let (first, last) = store.take_epoch(&lock).await.unwrap();
    assert_eq!(last, 0);
    // Control: the current epoch publishes.
    store
        .record_publication(&publication(10, first))
        .await
        .unwrap();
    let (second, last) = store.take_epoch(&lock).await.unwrap();
    assert!(second > first);
    assert_eq!(last, 10);
    let e = store
        .record_publication(&publication(11, first))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Fenced { epoch, generation: 11 } if epoch == first),
        "{e}"
    );
    // Not even a hand-written insert gets past the trigger.
    let raw = lock
        .execute(
            "INSERT INTO revbloom_generations \
             (generation, parent, epoch, created_at, entries, snapshot) \
             VALUES (12, 11, $1, 1, 0, '\\x00')",
            &[&(first as i64)],
        )
        .await
        .unwrap_err();
    assert_eq!(
        raw.code().map(|c| c.code()),
        Some(revbloom_server::store::postgres::FENCED_SQLSTATE)
    );
    store
        .record_publication(&publication(11, second))
        .await
        .unwrap();
    // Generations only go up, whatever the epoch.
    let e = store
        .record_publication(&publication(11, second))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Database { .. }), "{e}");
    assert_eq!(store.generation().await.unwrap(), 11);
    // Only the newest `keep` generations stay; the follower query hands out the newest
    // snapshot only.
    for g in 12..=20 {
        store
            .record_publication(&publication(g, second))
            .await
            .unwrap();
    }
    let rows = store.generations_since(0).await.unwrap();
    let gens: Vec<u64> = rows.iter().map(|r| r.generation).collect();
    assert_eq!(gens, vec![17, 18, 19, 20]);
    assert!(rows[..3].iter().all(|r| r.snapshot.is_none()));
    assert!(rows[3].snapshot.is_some());
    // The table itself keeps only the newest snapshot: the rows behind it hold their deltas.
    let stored: i64 = lock
        .query_one(
            "SELECT count(*) FROM revbloom_generations WHERE snapshot IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "one snapshot in the table");
    assert_eq!(
        store.last_snapshot().await.unwrap().map(|(g, _)| g),
        Some(20)
    );
    // Dropping the older snapshots touches no fenced column: a stale epoch's row updates
    // fine, while its generation or epoch still cannot change.
    let raw = lock
        .execute(
            "UPDATE revbloom_generations SET epoch = $1 WHERE generation = 19",
            &[&(first as i64)],
        )
        .await
        .unwrap_err();
    assert_eq!(
        raw.code().map(|c| c.code()),
        Some(revbloom_server::store::postgres::FENCED_SQLSTATE)
    );
    drop(store);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
}

#[test]
fn an_unreachable_database_is_one_line_without_the_password() {
    let data = temp_dir("pg-unreachable");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (seal, signing, _) = shared_keys(&data);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env(
            "REVBLOOM_STORE",
            format!("postgres://rb:hunter2@127.0.0.1:{port}/revbloom"),
        )
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "off")
        .args(["--config"])
        .arg(write_config(&data, &seal, &signing))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("revbloom: error:"))
        .collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains(&format!("postgres://rb:***@127.0.0.1:{port}/revbloom")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // A URL that is not PostgreSQL's is refused before anything starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "mysql://x/y",
            "--data",
        ])
        .arg(&data)
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres://"));
    let _ = std::fs::remove_dir_all(&data);
}

/// A config file naming the shared keys.
pub fn write_config(
    dir: &std::path::Path,
    seal: &std::path::Path,
    signing: &std::path::Path,
) -> std::path::PathBuf {
    let path = dir.join("revbloom.json");
    let body = serde_json::json!({
        "seal_key_file": seal,
        "signing_key": signing,
        "coalesce_ms": 50,
    });
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

/// The database goes away under a running replica: writes answer 503 `store_unavailable`,
/// readiness says so, and once the database is back the replica recovers by itself, with
/// every acknowledged revocation in the store and in the published filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_refuses_writes_and_recovers() {
    let mut pg = PgCluster::start().await;
    let data = temp_dir("pg-lost");
    let (seal, signing, _) = shared_keys(&data);
    let mut config = support::config(data.clone());
    config.store = Some(pg.url());
    config.seal_key_file = Some(seal);
    config.signing_key = Some(signing);
    let running = support::start(config).await;
    let url = running.url();
    let http = client();
    let post = |jti: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(format!("{url}/v1/revocations"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"jti": jti, "exp": support::now() + 3600}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(post("before".into()).await.status(), 200);
    pg.stop();
    let r = post("during".into()).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    pg.restart().await;
    // Recovers by itself: writes are accepted again within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acknowledged = vec!["before".to_owned()];
    let mut i = 0;
    loop {
        let jti = format!("after-{i}");
        i += 1;
        if post(jti.clone()).await.status() == 200 {
            acknowledged.push(jti);
            break;
        }
        assert!(Instant::now() < deadline, "the replica did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready again: {}",
            ready.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for jti in &acknowledged {
        let found = support::lookup(&http, &url, jti).await;
        assert_eq!(found["revoked"], true, "{jti}: {found}");
    }
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
