//! End to end: publisher over HTTP → sync client → verifier decisions; then the verifier
//! restarted with the publisher down still rejects from its cached copy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use revbloom::cutoff::revokes;
use revbloom::sync::{SyncClient, SyncConfig};
use revbloom::{CutoffKey, SnapshotHandle, StalenessPolicy, Verdict};
use serde_json::{json, Value};

/// A token as the verifier sees it after signature validation.
struct Token {
    jti: String,
    sub: String,
    iat: u64,
    exp: u64,
}

/// A minimal verifier over the synced handle: cutoff by `sub`, then the filter, then the
/// publisher's exact lookup on a positive. Anything it cannot vouch for is rejected (fail
/// closed). Counts exact lookups.
struct Verifier {
    handle: SnapshotHandle,
    http: reqwest::Client,
    base: String,
    /// The lookup's credential, derived from the publisher's seal key.
    read_token: String,
    lookups: AtomicU64,
}

impl Verifier {
    async fn rejects(&self, t: &Token) -> bool {
        let Some(view) = self.handle.current() else {
            return true;
        };
        let key = CutoffKey::new(&view.hasher(), None, "sub", &t.sub);
        if view
            .cutoff(key)
            .is_some_and(|before| revokes(before, Some(t.iat)))
        {
            return true;
        }
        match view.check(&t.jti, Some(t.exp)) {
            Verdict::Clear => false,
            Verdict::MaybeRevoked => {
                self.lookups.fetch_add(1, Ordering::Relaxed);
                let url = format!("{}/v1/revocations/{}", self.base, t.jti);
                match self
                    .http
                    .get(url)
                    .bearer_auth(&self.read_token)
                    .send()
                    .await
                {
                    Ok(r) => match r.json::<Value>().await {
                        Ok(v) => v["revoked"] != false,
                        Err(_) => true,
                    },
                    // Exact source down: fail closed.
                    Err(_) => true,
                }
            }
            _ => true,
        }
    }
}

async fn revoke(http: &reqwest::Client, base: &str, jti: &str, exp: u64) {
    let r = http
        .post(format!("{base}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&json!({"jti": jti, "exp": exp}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_syncs_rejects_exactly_the_revoked_and_survives_restart() {
    let dir = temp_dir("e2e");
    let srv = start(config(dir.join("data"))).await;
    let base = format!("http://{}", srv.local_addr());
    let http = client();
    let cache = dir.join("verifier-cache.rbs");
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
    let sync = SyncClient::start(
        SyncConfig::url(&base)
            .open_options(verifier_options(&dir.join("data")))
            .cache_file(&cache)
            .long_poll(Duration::from_secs(10)),
        handle.clone(),
    )
    .unwrap();
    let mut gens = sync.subscribe();
    tokio::time::timeout(Duration::from_secs(10), gens.wait_for(|g| g.is_some()))
        .await
        .unwrap()
        .unwrap();

    let now = now();
    let exp = now + 3600;
    let verifier = Verifier {
        handle: handle.clone(),
        http: http.clone(),
        base: base.clone(),
        read_token: publisher_keys(&dir.join("data")).0.read_token(),
        lookups: AtomicU64::new(0),
    };

    // Revoke tokens one by one and time how long until the verifier rejects each.
    let mut latencies = Vec::new();
    for i in 0..5 {
        let jti = format!("revoked-{i}");
        revoke(&http, &base, &jti, exp).await;
        let t0 = Instant::now();
        loop {
            let v = handle.current().unwrap();
            if v.check(&jti, Some(exp)) == Verdict::MaybeRevoked {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{jti} never reached the verifier"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t0.elapsed());
    }
    eprintln!("revoke returned -> verifier rejects: {latencies:?}");
    eprintln!(
        "max {:?} (target < 1 s with long-poll)",
        latencies.iter().max().unwrap()
    );

    // Logout everywhere for alice, effective a few seconds ago.
    let before = now - 5;
    let r = http
        .post(format!("{base}/v1/cutoffs"))
        .bearer_auth(TOKEN)
        .json(&json!({"value": "alice", "before": before}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t0 = Instant::now();
    loop {
        let v = handle.current().unwrap();
        if v.cutoff(CutoffKey::new(&v.hasher(), None, "sub", "alice"))
            .is_some()
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "cutoff never reached the verifier"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("cutoff returned -> verifier rejects: {:?}", t0.elapsed());

    let tok = |jti: &str, sub: &str, iat: u64| Token {
        jti: jti.into(),
        sub: sub.into(),
        iat,
        exp,
    };
    for i in 0..5 {
        assert!(
            verifier
                .rejects(&tok(&format!("revoked-{i}"), "bob", now))
                .await
        );
    }
    let mut good = 0;
    for i in 0..2000 {
        if !verifier
            .rejects(&tok(&format!("fine-{i}"), "bob", now))
            .await
        {
            good += 1;
        }
    }
    assert_eq!(good, 2000, "a token that was never revoked was rejected");
    assert!(
        verifier
            .rejects(&tok("alice-old", "alice", before - 100))
            .await
    );
    let lookups = verifier.lookups.load(Ordering::Relaxed);
    assert!(!verifier.rejects(&tok("alice-new", "alice", before)).await);
    assert!(
        !verifier
            .rejects(&tok("alice-newer", "alice", now + 1))
            .await
    );
    assert_eq!(
        verifier.lookups.load(Ordering::Relaxed),
        lookups,
        "alice's new tokens must pass without an exact lookup"
    );
    eprintln!(
        "exact lookups for 2005 checks: {lookups} (5 revoked + false positives); sync stats: {} snapshots, {} deltas, {} errors",
        sync.stats().snapshots.load(Ordering::Relaxed),
        sync.stats().deltas.load(Ordering::Relaxed),
        sync.stats().errors.load(Ordering::Relaxed),
    );

    // Six generations in one layout epoch: at most one (an hourly rotation) can need a full
    // snapshot, so the delta path must have carried some of them.
    assert!(
        sync.stats().deltas.load(Ordering::Relaxed) > 0,
        "no delta was ever applied"
    );

    // Give the cache writer a moment to hold the latest generation, then take the publisher
    // down and restart the verifier from scratch.
    let last = handle.generation().unwrap();
    let t0 = Instant::now();
    loop {
        let cached = std::fs::read(&cache).unwrap_or_default();
        let ok = revbloom::SnapshotView::open_owned(cached, &verifier_options(&dir.join("data")))
            .is_ok_and(|v| v.generation() >= last);
        if ok {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "cache never written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(sync);
    srv.shutdown();
    srv.wait().await.unwrap();

    let handle2 = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
    let sync2 = SyncClient::start(
        SyncConfig::url(&base)
            .open_options(verifier_options(&dir.join("data")))
            .cache_file(&cache)
            .backoff(Duration::from_millis(50), Duration::from_millis(200)),
        handle2.clone(),
    )
    .unwrap();
    assert!(
        handle2.generation().is_some_and(|g| g >= last),
        "cache not loaded"
    );
    let verifier2 = Verifier {
        handle: handle2,
        http,
        base,
        read_token: publisher_keys(&dir.join("data")).0.read_token(),
        lookups: AtomicU64::new(0),
    };
    for i in 0..5 {
        assert!(
            verifier2
                .rejects(&tok(&format!("revoked-{i}"), "bob", now))
                .await
        );
    }
    assert!(
        verifier2
            .rejects(&tok("alice-old", "alice", before - 1))
            .await
    );
    assert!(!verifier2.rejects(&tok("alice-new", "alice", before)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sync2.stats().errors.load(Ordering::Relaxed) > 0,
        "publisher is down: sync must report errors"
    );
    assert!(sync2.stats().last_error().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn file_source_follows_the_publishers_snapshot_folder() {
    let dir = temp_dir("e2e-file");
    let mut c = config(dir.join("data"));
    c.snapshot_dir = Some(dir.join("public"));
    std::fs::create_dir_all(dir.join("public")).unwrap();
    let srv = start(c).await;
    let base = format!("http://{}", srv.local_addr());
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
    let sync = SyncClient::start(
        SyncConfig::file(dir.join("public").join("snapshot.rbs"))
            .open_options(verifier_options(&dir.join("data")))
            .file_poll_interval(Duration::from_millis(20)),
        handle.clone(),
    )
    .unwrap();
    let exp = now() + 600;
    revoke(&client(), &base, "file-jti", exp).await;
    let t0 = Instant::now();
    while handle
        .current()
        .is_none_or(|v| v.check("file-jti", Some(exp)) != Verdict::MaybeRevoked)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "file source never caught up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(sync.generation().is_some());
    assert!(sync.age(now() + 1).is_some());
    srv.shutdown();
    srv.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A publisher restart starts a new lineage (new seed): the client's delta request gets
/// `410 Gone`, it falls back to a full snapshot, and keeps seeing old and new revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_follows_a_publisher_restart_through_410() {
    let dir = temp_dir("e2e-restart");
    let c = config(dir.join("data"));
    let srv = start(c.clone()).await;
    let addr = srv.local_addr();
    let base = format!("http://{addr}");
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
    let sync = SyncClient::start(
        SyncConfig::url(&base)
            .open_options(verifier_options(&dir.join("data")))
            .long_poll(Duration::from_secs(5))
            .backoff(Duration::from_millis(20), Duration::from_millis(100)),
        handle.clone(),
    )
    .unwrap();
    let exp = now() + 600;
    let wait_for = |jti: &'static str| {
        let handle = handle.clone();
        async move {
            let t0 = Instant::now();
            while handle
                .current()
                .is_none_or(|v| v.check(jti, Some(exp)) != Verdict::MaybeRevoked)
            {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "{jti} never arrived"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    revoke(&client(), &base, "before-restart", exp).await;
    wait_for("before-restart").await;
    let gen_before = handle.generation().unwrap();
    let fulls_before = sync.stats().snapshots.load(Ordering::Relaxed);
    srv.shutdown();
    srv.wait().await.unwrap();

    let mut c2 = c;
    c2.listen = addr; // same address, so the client's URL stays valid
    let srv = start(c2).await;
    revoke(&client(), &base, "after-restart", exp).await;
    wait_for("after-restart").await;
    let v = handle.current().unwrap();
    assert!(v.generation() > gen_before);
    assert_eq!(v.check("before-restart", Some(exp)), Verdict::MaybeRevoked);
    assert!(
        sync.stats().snapshots.load(Ordering::Relaxed) > fulls_before,
        "a new lineage needs a full snapshot"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cutoff pruned from the publisher (its tokens have all expired) while verifiers still hold
/// it: the next generations reach the verifiers without a refused delta. Signed deltas carry
/// the signature of the publisher's full snapshot, which no longer lists the pruned cutoff,
/// while a verifier's copy built by applying a delta still would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_cutoff_does_not_break_the_delta_chain() {
    let dir = temp_dir("e2e-prune-cutoff");
    let data = dir.join("data");
    let mut c = config(data.clone());
    c.prune_secs = 1;
    // A cutoff is needed until `before` + lifetime + leeway + skew: 8 s here.
    c.window.max_token_lifetime_secs = 5;
    c.window.leeway_secs = 1;
    c.window.max_clock_skew_secs = 1;
    let srv = start(c).await;
    let base = srv.url();
    let http = client();
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
    let options = verifier_options(&data);
    let sync = SyncClient::start(
        SyncConfig::url(&base)
            .open_options(options.clone())
            .long_poll(Duration::from_secs(2))
            .backoff(Duration::from_millis(20), Duration::from_millis(200)),
        handle.clone(),
    )
    .unwrap();
    let stats = sync.shared_stats();
    let caught_up = |what: &'static str| {
        let (handle, hub) = (handle.clone(), srv.hub().clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while handle.generation() != Some(hub.current().generation) {
                assert!(Instant::now() < deadline, "never caught up: {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    caught_up("the first generation").await;
    // A cutoff whose tokens all expire within seconds: prunable soon after.
    let r = http
        .post(format!("{base}/v1/cutoffs"))
        .bearer_auth(TOKEN)
        .json(&json!({"value": "long-gone", "before": now() - 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let held = |h: &SnapshotHandle| {
        let v = h.current().unwrap();
        v.cutoff(CutoffKey::new(&v.hasher(), None, "sub", "long-gone"))
            .is_some()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !held(&handle) {
        assert!(
            Instant::now() < deadline,
            "the cutoff never reached the verifier"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Pruned from the store (and the publisher) within a few prune rounds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut round = 0;
    loop {
        round += 1;
        revoke(&http, &base, &format!("after-prune-{round}"), now() + 600).await;
        caught_up("a revocation after the prune").await;
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("\nrevbloom_cutoffs_stored 0\n") {
            break;
        }
        assert!(Instant::now() < deadline, "the cutoff was never pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And once more, after the prune is certainly behind the publisher.
    revoke(&http, &base, "last", now() + 600).await;
    caught_up("the last revocation").await;
    let failures: Vec<_> = stats.failure_counts().filter(|(_, n)| *n > 0).collect();
    assert!(failures.is_empty(), "refused on the way: {failures:?}");
    // The verifier's copy is still the publisher's signed file: it reopens verified (what a
    // restart from the cache file does).
    let copy = handle.current().unwrap();
    let reopened = revbloom::SnapshotView::open_owned(copy.as_bytes().to_vec(), &options)
        .expect("the verifier's copy reopens under the publisher's key");
    assert_eq!(
        reopened.signature_status(),
        revbloom::snapshot::SignatureStatus::Verified
    );
    assert!(!held(&handle), "the pruned cutoff left the verifier too");
    drop(sync);
    srv.shutdown();
}
