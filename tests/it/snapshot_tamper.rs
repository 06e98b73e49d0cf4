//! Tampering: every single-bit flip and every truncation of a small snapshot (and of a delta)
//! is rejected, and a swap handle keeps serving the last good generation.

use crate::support::NOW;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use revbloom::delta::{encode_delta, DeltaView};
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::swap::{SnapshotHandle, StalenessPolicy, SwapError};
use revbloom::{CutoffKey, CutoffSet, Verdict, Window, WindowConfig};

struct Small {
    window: Window,
    cutoffs: CutoffSet,
}

fn small() -> Small {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(6 * 3600))
        .expected_per_bucket(16);
    let mut window = Window::with_seed(config, NOW, 99).unwrap();
    for i in 0..12u64 {
        window.insert(format!("t{i}"), Some(NOW + i * 1800));
    }
    window.insert("none", None);
    let mut cutoffs = CutoffSet::new();
    cutoffs.insert(CutoffKey(1), NOW);
    cutoffs.insert(CutoffKey(2), NOW);
    Small { window, cutoffs }
}

fn flips_and_truncations_fail(bytes: &[u8], open: impl Fn(&[u8]) -> bool) {
    assert!(open(bytes), "the untouched input must open");
    let mut copy = bytes.to_vec();
    for i in 0..bytes.len() * 8 {
        copy[i / 8] ^= 1 << (i % 8);
        assert!(
            !open(&copy),
            "flip of bit {} of byte {} accepted",
            i % 8,
            i / 8
        );
        copy[i / 8] ^= 1 << (i % 8);
    }
    for len in 0..bytes.len() {
        assert!(!open(&bytes[..len]), "truncation to {len} bytes accepted");
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(!open(&longer), "trailing byte accepted");
}

#[test]
fn every_bit_flip_and_truncation_of_an_unsigned_snapshot_is_rejected() {
    let s = small();
    let bytes =
        snapshot::encode_to_vec(&s.window, &s.cutoffs, &SnapshotMeta::first(NOW), None).unwrap();
    flips_and_truncations_fail(&bytes, |b| {
        SnapshotView::open(b, &OpenOptions::new()).is_ok()
    });
}

#[test]
fn every_bit_flip_and_truncation_of_a_signed_snapshot_is_rejected() {
    let s = small();
    let key = SigningKey::from_bytes(&[3u8; 32]);
    let bytes =
        snapshot::encode_to_vec(&s.window, &s.cutoffs, &SnapshotMeta::first(NOW), Some(&key))
            .unwrap();
    let opts = OpenOptions::new().verifying_key(key.verifying_key());
    flips_and_truncations_fail(&bytes, |b| SnapshotView::open(b, &opts).is_ok());
    // With the checksum off, the signature alone must catch every change.
    let unchecked = OpenOptions::new()
        .verifying_key(key.verifying_key())
        .verify_checksum(false);
    flips_and_truncations_fail(&bytes, |b| SnapshotView::open(b, &unchecked).is_ok());
}

#[test]
fn every_bit_flip_and_truncation_of_a_delta_is_rejected() {
    let mut s = small();
    s.window.enable_journal();
    s.window.take_journal();
    s.window.insert("t-new", Some(NOW + 60));
    let journal = s.window.take_journal();
    assert!(!journal.layout_changed);
    let mut delta = Vec::new();
    let meta = SnapshotMeta::first(NOW).next(NOW + 5);
    encode_delta(
        &s.window,
        &journal,
        &[(CutoffKey(9), NOW)],
        &meta,
        None,
        &mut delta,
    )
    .unwrap();
    flips_and_truncations_fail(&delta, |b| DeltaView::open(b, &OpenOptions::new()).is_ok());
}

#[test]
fn a_handle_keeps_serving_the_last_good_generation() {
    let mut s = small();
    let g1 = SnapshotMeta::first(NOW);
    let b1 = snapshot::encode_to_vec(&s.window, &s.cutoffs, &g1, None).unwrap();
    let handle = SnapshotHandle::with_snapshot(
        SnapshotView::open(b1.clone(), &OpenOptions::new()).unwrap(),
        StalenessPolicy::FailClosed,
        Duration::from_secs(300),
    );
    s.window.insert("t-late", Some(NOW + 60));
    let g2 = g1.next(NOW + 10);
    let b2 = snapshot::encode_to_vec(&s.window, &s.cutoffs, &g2, None).unwrap();

    let mut bad = b2.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    assert!(matches!(
        handle.replace_bytes(bad, &OpenOptions::new()),
        Err(SwapError::Snapshot(_))
    ));
    assert!(handle
        .replace_bytes(b2[..b2.len() - 1].to_vec(), &OpenOptions::new())
        .is_err());
    assert_eq!(handle.generation(), Some(1));
    assert_eq!(
        handle.current().unwrap().check("t3", Some(NOW + 3 * 1800)),
        Verdict::MaybeRevoked
    );

    handle.replace_bytes(b2, &OpenOptions::new()).unwrap();
    assert_eq!(handle.generation(), Some(2));
    // Rollback to generation 1 is refused and changes nothing.
    let err = handle.replace_bytes(b1, &OpenOptions::new()).unwrap_err();
    assert_eq!(
        err,
        SwapError::Rollback {
            current: 2,
            offered: 1
        }
    );
    assert_eq!(handle.generation(), Some(2));
    assert_eq!(
        handle.current().unwrap().check("t-late", Some(NOW + 60)),
        Verdict::MaybeRevoked
    );
}
