//! The open-time cutoff index (presence filter and radix directory) against an exact model:
//! full snapshots and chains of deltas that add and raise cutoffs, with fingerprints drawn
//! uniformly, clustered in a few radix slots, and at the ends of the range. After every
//! open and every delta application each cutoff in the model is found with its exact time
//! (no false negative, ever) and each probe without one is answered `None`, exactly as the
//! plain binary search of the table answers.

use crate::support::NOW;

use proptest::prelude::*;
use revbloom::cutoff::{find_in_table, ClaimHasher, CutoffIndex};
use revbloom::delta::{encode_delta, DeltaView};
use revbloom::snapshot::{self, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::{CutoffKey, CutoffSet, Window, WindowConfig};

/// Fingerprints of several shapes: uniform (real keyed hashes), sharing their top bits (one
/// radix slot, the scan-or-search boundary), small (slot 0), near `u64::MAX` (the last slot).
fn fingerprint() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => any::<u64>(),
        2 => (0u64..64).prop_map(|i| 0x7300_0000_0000_0000 | i.wrapping_mul(0x9e37_79b9)),
        1 => 0u64..40,
        1 => (0u64..40).prop_map(|i| u64::MAX - i),
    ]
}

/// One publish: cutoffs added or raised since the previous one.
fn round() -> impl Strategy<Value = Vec<(u64, u32)>> {
    proptest::collection::vec((fingerprint(), any::<u32>()), 0..40)
}

/// Every model cutoff is found with its time, and every probe answers as the binary search
/// of the table does (and `None` when the model has no cutoff for it).
fn assert_matches(
    view: &SnapshotView<AlignedBytes>,
    model: &CutoffSet,
    probes: &[u64],
) -> Result<(), TestCaseError> {
    for (key, before) in model.sorted() {
        prop_assert_eq!(view.cutoff(key), Some(before), "model key {:#x}", key.0);
        prop_assert!(view.cutoff_index().may_contain(key));
    }
    for &p in probes {
        let key = CutoffKey(p);
        prop_assert_eq!(view.cutoff(key), model.get(key), "probe {:#x}", p);
        prop_assert_eq!(view.cutoff(key), find_in_table(view.cutoff_table(), key));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn deltas_never_hide_a_cutoff_from_the_index(
        seed in any::<u64>(),
        rounds in proptest::collection::vec(round(), 1..8),
        probes in proptest::collection::vec(fingerprint(), 64),
    ) {
        let mut w = Window::with_seed(WindowConfig::default(), NOW, seed).unwrap();
        w.enable_journal();
        w.insert("jti-1", Some(NOW + 60));
        let mut model = CutoffSet::new();
        let mut meta = SnapshotMeta::first(NOW);
        let first = snapshot::encode_to_vec(&w, &model, &meta, None).unwrap();
        w.take_journal();
        let mut view = SnapshotView::open_owned(first, &OpenOptions::new()).unwrap();
        assert_matches(&view, &model, &probes)?;
        for (i, added) in rounds.into_iter().enumerate() {
            let mut new_cutoffs = Vec::new();
            for (fp, before) in added {
                let key = CutoffKey(fp);
                if model.insert(key, u64::from(before)) {
                    new_cutoffs.push((key, u64::from(before)));
                }
            }
            w.insert(format!("jti-r{i}"), Some(NOW + 120));
            let journal = w.take_journal();
            let next = meta.next(NOW + 1 + i as u64);
            let mut delta = Vec::new();
            encode_delta(&w, &journal, &new_cutoffs, &next, None, &mut delta).unwrap();
            let d = DeltaView::open(&delta, &OpenOptions::new()).unwrap();
            view = view.apply_delta(&d).unwrap();
            assert_matches(&view, &model, &probes)?;
            // The applied view and a freshly encoded full snapshot agree byte for byte, so
            // their indexes are the same too.
            let full = snapshot::encode_to_vec(&w, &model, &next, None).unwrap();
            prop_assert_eq!(view.as_bytes(), &full[..]);
            meta = next;
        }
    }
}

#[test]
fn present_cutoffs_of_real_claims_are_found_at_scale() {
    // 50k fingerprints of real claim values; a third then raised, 5k added by a delta.
    let mut w = Window::with_seed(WindowConfig::default(), NOW, 42).unwrap();
    w.enable_journal();
    w.set_cutoff_claims(&["sid", "sub"]).unwrap();
    let sub = ClaimHasher::new(w.hasher(), None, "sub");
    let sid = ClaimHasher::new(w.hasher(), Some(b"https://idp"), "sid");
    let mut model = CutoffSet::new();
    for i in 0..50_000u64 {
        model.insert(sub.key(format!("user-{i}")), NOW - i);
    }
    let meta = SnapshotMeta::first(NOW);
    let bytes = snapshot::encode_to_vec(&w, &model, &meta, None).unwrap();
    w.take_journal();
    let view = SnapshotView::open(bytes, &OpenOptions::new()).unwrap();
    let mut added = Vec::new();
    for i in 0..5_000u64 {
        let k = sid.key(format!("session-{i}"));
        model.insert(k, NOW + 5);
        added.push((k, NOW + 5));
    }
    for i in (0..50_000u64).step_by(3) {
        let k = sub.key(format!("user-{i}"));
        model.insert(k, NOW + 10);
        added.push((k, NOW + 10));
    }
    let next = meta.next(NOW + 1);
    let mut delta = Vec::new();
    let journal = w.take_journal();
    encode_delta(&w, &journal, &added, &next, None, &mut delta).unwrap();
    let view = view
        .apply_delta(&DeltaView::open(&delta, &OpenOptions::new()).unwrap())
        .unwrap();
    let mut passed = 0u32;
    for (key, before) in model.sorted() {
        assert_eq!(view.cutoff(key), Some(before));
    }
    for i in 0..100_000u64 {
        let absent = sub.key(format!("someone-else-{i}"));
        assert_eq!(view.cutoff(absent), None);
        passed += u32::from(view.cutoff_index().may_contain(absent));
    }
    // ~1 % of absent keys get past the filter (model 0.99 %); 2 % fails a broken filter.
    assert!(
        passed < 1_500,
        "{passed} of 100000 absent keys passed the filter"
    );
    assert!(
        passed > 500,
        "{passed}: the filter is fuller or emptier than designed"
    );
}

#[test]
fn a_disordered_table_is_refused_at_open_and_by_the_index() {
    let mut w = Window::with_seed(WindowConfig::default(), NOW, 3).unwrap();
    w.insert("j", Some(NOW + 60));
    let mut model = CutoffSet::new();
    for k in [10u64, 20, 30] {
        model.insert(CutoffKey(k), NOW);
    }
    let mut bytes = snapshot::encode_to_vec(&w, &model, &SnapshotMeta::first(NOW), None).unwrap();
    // FORMAT.md §1.2: the cutoff table's offset is the u64 at header offset 128.
    let at = u64::from_le_bytes(bytes[128..136].try_into().unwrap()) as usize;
    // Swap the first two fingerprints: a checksum-skipping open must still refuse.
    bytes[at..at + 8].copy_from_slice(&20u64.to_le_bytes());
    bytes[at + 16..at + 24].copy_from_slice(&10u64.to_le_bytes());
    let e = SnapshotView::open(&bytes[..], &OpenOptions::new().verify_checksum(false)).unwrap_err();
    assert!(
        matches!(e, revbloom::SnapshotError::CutoffOrder { index: 1, .. }),
        "{e}"
    );
    assert!(CutoffIndex::build(&bytes[at..at + 48]).is_err());
}
