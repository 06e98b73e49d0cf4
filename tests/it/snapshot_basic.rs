//! Snapshot encode/open basics: verdicts match the window, sizes, signatures, deltas, errors.

use crate::support::NOW;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use revbloom::delta::{encode_delta, DeltaError, DeltaView};
use revbloom::snapshot::{
    self, OpenOptions, SignatureStatus, SnapshotError, SnapshotMeta, SnapshotView,
};
use revbloom::{CutoffKey, CutoffSet, Verdict, Window, WindowConfig};

fn window(n: u64) -> Window {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(24 * 3600))
        .expected_per_bucket(1000);
    let mut w = Window::with_seed(config, NOW, 42).unwrap();
    for i in 0..n {
        w.insert(format!("jti-{i}"), Some(NOW + (i * 7919) % (30 * 3600)));
    }
    w.insert("no-exp", None);
    w
}

#[test]
fn verdicts_match_window() {
    let w = window(5000);
    let mut cutoffs = CutoffSet::new();
    cutoffs.insert(CutoffKey(7), NOW);
    cutoffs.insert(CutoffKey(3), NOW - 5);
    let bytes = snapshot::encode_to_vec(&w, &cutoffs, &SnapshotMeta::first(NOW), None).unwrap();
    let v = SnapshotView::open(&bytes[..], &OpenOptions::new()).unwrap();
    assert_eq!(v.entries(), w.entries());
    assert_eq!(v.cutoff(CutoffKey(7)), Some(NOW));
    assert_eq!(v.cutoff(CutoffKey(3)), Some(NOW - 5));
    assert_eq!(v.cutoff(CutoffKey(4)), None);
    assert_eq!(v.signature_status(), SignatureStatus::Unsigned);
    for i in 0..20_000u64 {
        let exp = Some(NOW + (i * 7919) % (30 * 3600));
        let k = format!("jti-{i}");
        assert_eq!(v.check(&k, exp), w.check(&k, exp), "{k}");
        if i < 5000 {
            assert_eq!(v.check(&k, exp), Verdict::MaybeRevoked);
        }
    }
    for exp in [
        None,
        Some(0),
        Some(u64::MAX),
        Some(NOW - 7200),
        Some(NOW + 100 * 3600),
    ] {
        assert_eq!(v.check("no-exp", exp), w.check("no-exp", exp));
    }
}

#[test]
fn fitted_snapshot_is_at_most_16_bits_per_entry_plus_header() {
    let mut w = window(100_000);
    w.fit_to_entries(0.0);
    let bytes =
        snapshot::encode_to_vec(&w, &CutoffSet::new(), &SnapshotMeta::first(NOW), None).unwrap();
    let v = SnapshotView::open(&bytes[..], &OpenOptions::new()).unwrap();
    // Fixed part: header, directory, alignment padding, trailer; each bucket rounds up to one
    // block at most.
    let fixed = 160 + 32 * v.bucket_count() as u64 + 64 + 8 + 64 * v.bucket_count() as u64;
    let entries = w.entries();
    assert!(
        (bytes.len() as u64) <= entries * 16 / 8 + fixed,
        "{} bytes for {entries} entries",
        bytes.len()
    );
}

#[test]
fn signed_snapshot_verifies_and_rejects_wrong_key_or_stripped_signature() {
    let w = window(100);
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let meta = SnapshotMeta::first(NOW);
    let bytes = snapshot::encode_to_vec(&w, &CutoffSet::new(), &meta, Some(&key)).unwrap();
    let ok = SnapshotView::open(
        &bytes[..],
        &OpenOptions::new().verifying_key(key.verifying_key()),
    )
    .unwrap();
    assert_eq!(ok.signature_status(), SignatureStatus::Verified);
    // Signed but no key: refused unless the caller explicitly opts out of the check.
    assert_eq!(
        SnapshotView::open(&bytes[..], &OpenOptions::new()).unwrap_err(),
        SnapshotError::SignatureNotChecked
    );
    let unverified =
        SnapshotView::open(&bytes[..], &OpenOptions::new().skip_signature_check()).unwrap();
    assert_eq!(unverified.signature_status(), SignatureStatus::NotVerified);
    let wrong = SnapshotView::open(
        &bytes[..],
        &OpenOptions::new().verifying_key(other.verifying_key()),
    );
    assert_eq!(wrong.unwrap_err(), SnapshotError::Signature);
    let unsigned = snapshot::encode_to_vec(&w, &CutoffSet::new(), &meta, None).unwrap();
    let stripped = SnapshotView::open(
        &unsigned[..],
        &OpenOptions::new().verifying_key(key.verifying_key()),
    );
    assert_eq!(stripped.unwrap_err(), SnapshotError::Unsigned);
}

#[test]
fn delta_reproduces_the_next_full_snapshot_byte_for_byte() {
    let mut w = window(2000);
    w.fit_to_entries(0.5);
    w.enable_journal();
    let mut cutoffs = CutoffSet::new();
    cutoffs.insert(CutoffKey(10), NOW - 100);
    let m1 = SnapshotMeta::first(NOW);
    let s1 = snapshot::encode_to_vec(&w, &cutoffs, &m1, None).unwrap();
    assert!(!w.take_journal().layout_changed);

    for i in 0..50u64 {
        w.insert(format!("new-{i}"), Some(NOW + i * 600));
    }
    w.insert("new-none", None);
    w.insert("jti-1", Some(NOW + 7919)); // duplicate: not journaled
    cutoffs.insert(CutoffKey(5), NOW);
    cutoffs.insert(CutoffKey(10), NOW); // raised
    let j = w.take_journal();
    assert!(!j.layout_changed);
    assert_eq!(j.entries.len(), 51);
    let m2 = m1.next(NOW + 30);
    let mut delta = Vec::new();
    let n = encode_delta(
        &w,
        &j,
        &[(CutoffKey(5), NOW), (CutoffKey(10), NOW)],
        &m2,
        None,
        &mut delta,
    )
    .unwrap();
    assert_eq!(n as usize, delta.len());
    assert!(delta.len() <= 80 + 8 + 51 * 12 + 2 * 16);
    let s2 = snapshot::encode_to_vec(&w, &cutoffs, &m2, None).unwrap();

    let v1 = SnapshotView::open(&s1[..], &OpenOptions::new()).unwrap();
    let d = DeltaView::open(&delta, &OpenOptions::new()).unwrap();
    let applied = v1.apply_delta(&d).unwrap();
    assert_eq!(applied.as_bytes(), &s2[..]);
    assert_eq!(
        applied.check("new-3", Some(NOW + 1800)),
        Verdict::MaybeRevoked
    );

    // Applying to the wrong parent is refused.
    let v2 = SnapshotView::open(&s2[..], &OpenOptions::new()).unwrap();
    assert!(matches!(v2.apply_delta(&d), Err(DeltaError::Parent { .. })));
}

#[test]
fn rotation_invalidates_the_journal() {
    let mut w = window(10);
    w.enable_journal();
    w.take_journal();
    w.insert("a", Some(NOW + 100));
    w.advance(NOW + 2 * 3600);
    let j = w.take_journal();
    assert!(j.layout_changed);
    assert!(j.entries.is_empty());
    let mut out = Vec::new();
    let meta = SnapshotMeta::first(NOW).next(NOW + 1);
    assert!(encode_delta(&w, &j, &[], &meta, None, &mut out).is_err());
}

#[test]
fn signed_deltas_chain_and_apply_in_order() {
    let mut w = window(500);
    w.fit_to_entries(1.0);
    w.enable_journal();
    let key = SigningKey::from_bytes(&[1u8; 32]);
    let vk = key.verifying_key();
    let m1 = SnapshotMeta::first(NOW);
    let s1 = snapshot::encode_to_vec(&w, &CutoffSet::new(), &m1, Some(&key)).unwrap();
    w.take_journal();
    let mut chain = Vec::new();
    let mut meta = m1;
    for step in 0..3u64 {
        w.insert(format!("chain-{step}"), Some(NOW + 100));
        let j = w.take_journal();
        assert!(!j.layout_changed);
        meta = meta.next(NOW + step + 1);
        encode_delta(&w, &j, &[], &meta, Some(&key), &mut chain).unwrap();
    }
    let signed = OpenOptions::new().verifying_key(vk);
    let mut view = SnapshotView::open_owned(s1, &signed).unwrap();
    let mut rest = &chain[..];
    while !rest.is_empty() {
        let (d, tail) = DeltaView::open_prefix(rest, &signed).unwrap();
        view = view.apply_delta(&d).unwrap();
        rest = tail;
    }
    assert_eq!(view.generation(), 4);
    assert_eq!(view.parent(), 3);
    for step in 0..3u64 {
        assert_eq!(
            view.check(format!("chain-{step}"), Some(NOW + 100)),
            Verdict::MaybeRevoked
        );
    }
    // A wrong key, or an unsigned delta where a signature is required, is refused.
    let other =
        OpenOptions::new().verifying_key(SigningKey::from_bytes(&[2u8; 32]).verifying_key());
    assert_eq!(
        DeltaView::open_prefix(&chain, &other).unwrap_err(),
        DeltaError::Signature
    );
    let mut unsigned = Vec::new();
    let j = revbloom::Journal::default();
    encode_delta(&w, &j, &[], &meta.next(NOW + 9), None, &mut unsigned).unwrap();
    assert_eq!(
        DeltaView::open(&unsigned, &signed).unwrap_err(),
        DeltaError::Unsigned
    );
    // Applying a delta twice, or out of order, is a parent mismatch.
    let (first, _) = DeltaView::open_prefix(&chain, &signed).unwrap();
    assert!(matches!(
        view.apply_delta(&first),
        Err(DeltaError::Parent {
            snapshot: 4,
            delta_parent: 1
        })
    ));
}
