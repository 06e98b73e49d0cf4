//! `SnapshotView::check` and `cutoff` never allocate: a counting global allocator sees zero
//! allocations across a million checks of present, absent, expired, overflow and exp-less keys.

mod alloc_support;

use alloc_support::count_allocations;
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::{CutoffKey, CutoffSet, Verdict, Window, WindowConfig};

#[test]
fn a_million_view_checks_allocate_nothing() {
    let now = 1_767_225_600u64;
    let mut w = Window::with_seed(WindowConfig::default(), now, 1).unwrap();
    let keys: Vec<[u8; 8]> = (0..1000u64).map(|i| i.to_le_bytes()).collect();
    for (i, k) in keys.iter().enumerate() {
        w.insert(k, Some(now + i as u64 * 80));
    }
    w.insert(b"none", None);
    let mut cutoffs = CutoffSet::new();
    cutoffs.insert(CutoffKey(5), now);
    let bytes = snapshot::encode_to_vec(&w, &cutoffs, &SnapshotMeta::first(now), None).unwrap();
    let view = SnapshotView::open(&bytes[..], &OpenOptions::new()).unwrap();

    let (maybe, allocations) = count_allocations(|| {
        let mut maybe = 0u64;
        for i in 0..1_000_000u64 {
            let k = &keys[(i % 1000) as usize];
            let exp = match i % 5 {
                0 => None,
                1 => Some(0),
                2 => Some(u64::MAX),
                _ => Some(now + (i % 1000) * 80),
            };
            if view.check(k, exp) == Verdict::MaybeRevoked {
                maybe += 1;
            }
            if view.cutoff(CutoffKey(i % 7)).is_some() {
                maybe += 1;
            }
        }
        maybe
    });
    assert_eq!(allocations, 0);
    assert!(maybe > 0);
}
