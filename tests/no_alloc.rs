//! `check` never allocates: a counting global allocator sees zero allocations across a million
//! checks of present, absent, expired, overflow and exp-less keys.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use revbloom::{Verdict, Window, WindowConfig};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY (of the impl as a whole): every call is forwarded unchanged to the system allocator;
// the counter is only bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    let mut counts = [0u64; 3];
    COUNTING.with(|c| c.set(true));
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
    let v = w.check_hash(h, None);
    COUNTING.with(|c| c.set(false));

    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "check allocated");
    assert_eq!(v, Verdict::MaybeRevoked);
    // Sanity: the loop really exercised present, absent and expired paths.
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}
