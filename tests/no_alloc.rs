//! `check` never allocates: a counting global allocator sees zero allocations across a million
//! checks of present, absent, expired, overflow and exp-less keys.

mod alloc_support;

use alloc_support::count_allocations;
use revbloom::{Verdict, Window, WindowConfig};

#[test]
fn a_million_checks_allocate_nothing() {
    let now = 1_767_225_600u64;
    let mut w = Window::with_seed(WindowConfig::default(), now, 42).expect("valid config");
    for i in 0..50_000u64 {
        w.insert(i.to_le_bytes(), Some(now + (i % 86_400)));
    }
    w.insert("no-exp", None);
    w.insert("far", Some(now + 400 * 86_400));

    let exps = [
        Some(now + 10),
        Some(now + 86_000),
        Some(0),
        Some(u64::MAX),
        None,
        Some(now - 7200),
    ];
    let ((counts, v), allocations) = count_allocations(|| {
        let mut counts = [0u64; 3];
        for i in 0..1_000_000u64 {
            let key = (i * 7).to_le_bytes();
            let v = w.check(key, exps[(i % 6) as usize]);
            counts[match v {
                Verdict::Clear => 0,
                Verdict::MaybeRevoked => 1,
                _ => 2,
            }] += 1;
        }
        let h = w.hasher().hash("no-exp");
        (counts, w.check_hash(h, None))
    });

    assert_eq!(allocations, 0, "check allocated");
    assert_eq!(v, Verdict::MaybeRevoked);
    // Sanity: the loop really exercised present, absent and expired paths.
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}
