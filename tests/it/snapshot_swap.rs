//! The hot-swap handle: staleness policies, and readers checking while deltas are applied and
//! snapshots swapped — a revocation applied before a check began is never `Clear`.

use crate::support::NOW;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use revbloom::delta::{encode_delta, DeltaView};
use revbloom::snapshot::{self, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::swap::{Decision, ReplaceOutcome, SnapshotHandle, StalenessPolicy, SwapError};
use revbloom::{CutoffSet, Verdict, Window, WindowConfig};

fn view_at(created_at: u64, generation: u64) -> SnapshotView<AlignedBytes> {
    let mut w = Window::with_seed(WindowConfig::default().expected_per_bucket(8), NOW, 5).unwrap();
    w.insert("revoked", Some(NOW + 60));
    let meta = SnapshotMeta {
        generation,
        parent: generation - 1,
        created_at,
        coverage: created_at,
    };
    let bytes = snapshot::encode_to_vec(&w, &CutoffSet::new(), &meta, None).unwrap();
    SnapshotView::open_owned(bytes, &OpenOptions::new()).unwrap()
}

#[test]
fn each_staleness_policy_decides_as_documented() {
    let max_age = Duration::from_secs(300);
    let fresh = NOW + 10;
    let stale = NOW + 301;
    for policy in [
        StalenessPolicy::FailClosed,
        StalenessPolicy::ExactSource,
        StalenessPolicy::FailOpen,
    ] {
        let empty: SnapshotHandle = SnapshotHandle::new(policy, max_age);
        let h = SnapshotHandle::with_snapshot(view_at(NOW, 1), policy, max_age);
        assert_eq!(
            h.decide("revoked", Some(NOW + 60), fresh),
            Decision::Verdict(Verdict::MaybeRevoked)
        );
        assert_eq!(
            h.decide("other", Some(NOW + 60), fresh),
            Decision::Verdict(Verdict::Clear)
        );
        assert_eq!(h.age(stale), Some(301));
        assert!(h.is_stale(stale) && !h.is_stale(fresh) && empty.is_stale(fresh));
        let (stale_d, missing_d) = (
            h.decide("other", Some(NOW + 60), stale),
            empty.decide("other", None, fresh),
        );
        match policy {
            StalenessPolicy::FailClosed => {
                assert_eq!(
                    (stale_d, missing_d),
                    (Decision::Unavailable, Decision::Unavailable)
                );
            }
            StalenessPolicy::ExactSource => {
                assert_eq!(
                    (stale_d, missing_d),
                    (Decision::AskExactSource, Decision::AskExactSource)
                );
            }
            StalenessPolicy::FailOpen => {
                assert_eq!(stale_d, Decision::FailOpen(Some(Verdict::Clear)));
                assert_eq!(missing_d, Decision::FailOpen(None));
                let revoked = h.decide("revoked", Some(NOW + 60), stale);
                assert_eq!(revoked, Decision::FailOpen(Some(Verdict::MaybeRevoked)));
            }
            _ => unreachable!(),
        }
        assert!(stale_d.is_stale() && missing_d.is_stale());
    }
    assert_eq!(StalenessPolicy::default(), StalenessPolicy::FailClosed);
}

#[test]
fn replace_refuses_rollback_and_ignores_the_same_generation() {
    let h = SnapshotHandle::new(StalenessPolicy::default(), Duration::from_secs(60));
    assert_eq!(
        h.replace(view_at(NOW, 3)).unwrap(),
        ReplaceOutcome::Replaced { from: None, to: 3 }
    );
    assert_eq!(
        h.replace(view_at(NOW, 3)).unwrap(),
        ReplaceOutcome::Unchanged
    );
    assert_eq!(
        h.replace(view_at(NOW, 2)),
        Err(SwapError::Rollback {
            current: 3,
            offered: 2
        })
    );
    assert_eq!(
        h.replace(view_at(NOW + 1, 4)).unwrap(),
        ReplaceOutcome::Replaced {
            from: Some(3),
            to: 4
        }
    );
    assert_eq!(h.clone().generation(), Some(4));
}

/// Sets the flag when dropped, so reader threads stop even when the writer panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Waits until every reader's `progress` is at least `at_least`. Readers take one loop
/// iteration (microseconds) to report, so the timeout only trips for a reader that never runs;
/// a reader that panicked is joined and its panic resumed here.
fn wait_for_readers(
    readers: &mut Vec<std::thread::JoinHandle<u64>>,
    progress: &[AtomicU64],
    at_least: u64,
) {
    const NEVER_RAN: Duration = Duration::from_secs(120);
    let deadline = Instant::now() + NEVER_RAN;
    while let Some(t) = progress
        .iter()
        .position(|p| p.load(Ordering::Acquire) < at_least)
    {
        if let Some(r) = readers.iter().position(|r| r.is_finished()) {
            if let Err(panic) = readers.remove(r).join() {
                std::panic::resume_unwind(panic);
            }
            panic!("reader {r} stopped before the writer finished");
        }
        assert!(
            Instant::now() < deadline,
            "reader {t} made no check in {NEVER_RAN:?} (progress {} < {at_least}): it never ran",
            progress[t].load(Ordering::Acquire)
        );
        std::thread::yield_now();
    }
}

#[test]
fn readers_never_see_an_applied_revocation_as_clear() {
    const ROUNDS: u64 = 120;
    const PER_ROUND: u64 = 16;
    const READERS: usize = 2;
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(600))
        .horizon(Duration::from_secs(6 * 3600))
        .expected_per_bucket(4096);
    let mut now = NOW;
    let mut w = Window::with_seed(config, now, 77).unwrap();
    w.enable_journal();
    let cutoffs = CutoffSet::new();
    let mut meta = SnapshotMeta::first(now);
    let first = snapshot::encode_to_vec(&w, &cutoffs, &meta, None).unwrap();
    w.take_journal();
    let handle = SnapshotHandle::with_snapshot(
        SnapshotView::open_owned(first, &OpenOptions::new()).unwrap(),
        StalenessPolicy::FailClosed,
        Duration::from_secs(u64::from(u32::MAX)),
    );
    let key = |round: u64, i: u64| (format!("r{round}-{i}"), NOW + 3 * 3600 + i * 60);
    // Rounds whose revocations are visible through the handle.
    let applied = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(done.clone());
    // Per reader: 0 until it runs, then 1 + the `applied` value its last finished check read.
    let progress: Arc<[AtomicU64; READERS]> = Arc::new(Default::default());
    let mut readers: Vec<_> = (0..READERS)
        .map(|t| {
            let (handle, applied, done, progress) = (
                handle.clone(),
                applied.clone(),
                done.clone(),
                progress.clone(),
            );
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_u64 + t as u64;
                let mut checks = 0u64;
                let mut last = 0;
                progress[t].store(1, Ordering::Release);
                while !done.load(Ordering::Acquire) {
                    let visible = applied.load(Ordering::Acquire);
                    if visible == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // The first check after an apply is of the round just applied.
                    let round = if visible == last {
                        1 + x % visible
                    } else {
                        visible
                    };
                    let (jti, exp) = key(round, (x >> 32) % PER_ROUND);
                    let d = handle.decide(&jti, Some(exp), NOW);
                    assert_eq!(
                        d,
                        Decision::Verdict(Verdict::MaybeRevoked),
                        "{jti} after round {visible}"
                    );
                    checks += 1;
                    last = visible;
                    progress[t].store(visible + 1, Ordering::Release);
                }
                checks
            })
        })
        .collect();

    for round in 1..=ROUNDS {
        for i in 0..PER_ROUND {
            let (jti, exp) = key(round, i);
            w.insert(jti, Some(exp));
        }
        let next = meta.next(now);
        let journal = w.take_journal();
        // Every reader is running and has checked what is applied so far before this apply.
        wait_for_readers(&mut readers, &progress[..], round);
        if round % 10 == 0 {
            // A full snapshot after a rotation, swapped in whole.
            now += 600;
            w.advance(now);
            w.take_journal();
            let full = snapshot::encode_to_vec(&w, &cutoffs, &next, None).unwrap();
            handle.replace_bytes(full, &OpenOptions::new()).unwrap();
        } else {
            assert!(!journal.layout_changed);
            let mut delta = Vec::new();
            encode_delta(&w, &journal, &[], &next, None, &mut delta).unwrap();
            let d = DeltaView::open(&delta, &OpenOptions::new()).unwrap();
            handle.apply_delta(&d).unwrap();
        }
        meta = next;
        assert_eq!(handle.generation(), Some(meta.generation));
        applied.store(round, Ordering::Release);
    }
    wait_for_readers(&mut readers, &progress[..], ROUNDS + 1);
    done.store(true, Ordering::Release);
    for (t, r) in readers.into_iter().enumerate() {
        // A check after each of the ROUNDS applies, at least.
        let checks = r.join().unwrap();
        assert!(checks >= ROUNDS, "reader {t}: {checks} checks");
    }
}
