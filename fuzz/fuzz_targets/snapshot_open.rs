//! The snapshot reader on arbitrary bytes: an error or a valid view, never a panic; and a view
//! that opens answers checks and statistics without panicking.
//!
//! The checksum is skipped on a second open so that mutations get past it and exercise the
//! structural validation and the check path (a fuzzer almost never forges an xxh3 checksum).
#![no_main]

use libfuzzer_sys::fuzz_target;
use revbloom::{CutoffKey, OpenOptions, SnapshotView};

fuzz_target!(|data: &[u8]| {
    let _ = SnapshotView::open(data, &OpenOptions::new());
    // The sealed-envelope parser: header validation and the AEAD on arbitrary bytes.
    let key = revbloom::snapshot::SealKey::from_bytes([7; 32]);
    let _ = revbloom::snapshot::unseal(data, std::slice::from_ref(&key));
    let lax = OpenOptions::new().verify_checksum(false).skip_signature_check();
    if let Ok(view) = SnapshotView::open(data, &lax) {
        let (width, _, _) = view.window_params();
        let base = view.oldest_bucket().saturating_mul(width);
        for (i, exp) in [None, Some(0), Some(u64::MAX), Some(base), Some(base.saturating_add(width * 3))]
            .into_iter()
            .enumerate()
        {
            let _ = view.check(i.to_le_bytes(), exp);
        }
        let _ = view.cutoff(CutoffKey(data.len() as u64));
        let _ = view.bucket_stats().count();
        let _ = view.bits_per_entry();
    }
});
