//! The sync client names and counts every snapshot it does not take: a missing file, bytes
//! that are not a snapshot, an older generation (rollback), a missing signature, and the
//! moment the snapshot held goes stale. A refused file is refused once, not at every retry,
//! and the last good snapshot stays in force throughout.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use revbloom::cutoff::CutoffSet;
use revbloom::snapshot::{encode_to_vec, OpenOptions, SnapshotMeta};
use revbloom::sync::{write_file_atomically, SyncClient, SyncConfig, SyncFailure, SyncStats};
use revbloom::{SnapshotHandle, StalenessPolicy, Window, WindowConfig};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A snapshot of generation `generation` created `age` seconds ago, signed with `key` if any.
fn snapshot(generation: u64, age: u64, key: Option<&SigningKey>) -> Vec<u8> {
    let created = now() - age;
    let mut window = Window::new(WindowConfig::default().expected_per_bucket(16), created)
        .expect("default window");
    window.insert("revoked", Some(created + 600));
    let meta = SnapshotMeta {
        generation,
        parent: generation - 1,
        created_at: created,
        coverage: created,
    };
    encode_to_vec(&window, &CutoffSet::new(), &meta, key).expect("encode")
}

/// Poll `cond` every 10 ms until it holds; panic with `what` after 20 s.
async fn until(what: &str, stats: &SyncStats, cond: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; last error {:?}",
            stats.last_error()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn client(path: &Path, options: OpenOptions) -> SyncClient {
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(300));
    let config = SyncConfig::file(path)
        .file_poll_interval(Duration::from_millis(20))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .open_options(options);
    SyncClient::start(config, handle).expect("start")
}

#[tokio::test]
async fn every_refusal_is_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.snap");
    let sync = client(&path, OpenOptions::new());
    let stats = sync.shared_stats();
    let n = |k: SyncFailure| stats.failures(k);

    // No file: counted as missing, and the client starts stale (no snapshot).
    until("a missing file", &stats, || n(SyncFailure::Missing) >= 1).await;
    until("the stale start", &stats, || n(SyncFailure::Stale) == 1).await;
    assert!(stats
        .last_error()
        .is_some_and(|e| e.contains("revocations.snap")));
    assert_eq!(sync.generation(), None);

    write_file_atomically(&path, &snapshot(10, 0, None)).unwrap();
    until("generation 10", &stats, || sync.generation() == Some(10)).await;

    // Garbage: refused as invalid, once, and generation 10 stays.
    write_file_atomically(&path, b"not a snapshot at all").unwrap();
    until("the invalid file", &stats, || n(SyncFailure::Invalid) == 1).await;
    // The next rounds find the file unchanged, do not read it again and clear the error.
    until("a round after the refusal", &stats, || {
        stats.last_error().is_none()
    })
    .await;
    assert_eq!(
        n(SyncFailure::Invalid),
        1,
        "an unchanged file is not read again"
    );
    assert_eq!(sync.generation(), Some(10));
    write_file_atomically(&path, &snapshot(11, 0, None)).unwrap();
    until("generation 11", &stats, || sync.generation() == Some(11)).await;

    // An older generation: a rollback, refused once.
    write_file_atomically(&path, &snapshot(9, 0, None)).unwrap();
    until("the rollback", &stats, || n(SyncFailure::Rollback) == 1).await;
    assert_eq!(sync.generation(), Some(11));
    until("a round after the refusal", &stats, || {
        stats.last_error().is_none()
    })
    .await;
    assert_eq!(n(SyncFailure::Rollback), 1);

    // A newer generation created long ago: taken, and the client notes it is stale.
    write_file_atomically(&path, &snapshot(12, 3600, None)).unwrap();
    until("generation 12", &stats, || sync.generation() == Some(12)).await;
    until("stale again", &stats, || n(SyncFailure::Stale) == 2).await;

    // Control: kinds that did not happen stay at zero.
    for kind in [
        SyncFailure::Signature,
        SyncFailure::Seal,
        SyncFailure::Delta,
        SyncFailure::Unreachable,
        SyncFailure::Status,
    ] {
        assert_eq!(n(kind), 0, "{kind}");
    }
    let listed: Vec<_> = stats.failure_counts().map(|(k, _)| k.as_str()).collect();
    assert_eq!(listed.len(), SyncFailure::ALL.len());
    assert!(listed.contains(&"rollback") && listed.contains(&"stale"));
}

#[tokio::test]
async fn an_unsigned_file_is_refused_where_a_signature_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revocations.snap");
    let key = SigningKey::from_bytes(&[7; 32]);
    let options = OpenOptions::new().verifying_key(key.verifying_key());
    write_file_atomically(&path, &snapshot(5, 0, None)).unwrap();
    let sync = client(&path, options);
    let stats = sync.shared_stats();
    until("the unsigned file", &stats, || {
        stats.failures(SyncFailure::Signature) == 1
    })
    .await;
    assert_eq!(sync.generation(), None);
    // The same snapshot signed is taken.
    write_file_atomically(&path, &snapshot(6, 0, Some(&key))).unwrap();
    until("generation 6", &stats, || sync.generation() == Some(6)).await;
    assert_eq!(stats.failures(SyncFailure::Signature), 1);
}
