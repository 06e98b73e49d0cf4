//! The delta reader and `apply_delta` on arbitrary bytes against a fixed base snapshot (the
//! golden fixture): an error or a valid result, never a panic. An applied result must reopen
//! as a valid snapshot with its checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revbloom::{DeltaView, OpenOptions, SnapshotView};

static BASE: &[u8] = include_bytes!("../../tests/data/v1-small-unsigned.snap");

fuzz_target!(|data: &[u8]| {
    let Ok(base) = SnapshotView::open(BASE, &OpenOptions::new()) else {
        return;
    };
    let _ = DeltaView::open(data, &OpenOptions::new());
    // Without the checksum (and with the signature of signed deltas unchecked: no key here),
    // mutations reach record validation and apply.
    let lax = OpenOptions::new().verify_checksum(false).skip_signature_check();
    let mut rest = data;
    let mut current = None;
    while let Ok((delta, tail)) = DeltaView::open_prefix(rest, &lax) {
        let next = match &current {
            None => base.apply_delta(&delta),
            Some(v) => SnapshotView::apply_delta(v, &delta),
        };
        if let Ok(next) = next {
            let reopened =
                SnapshotView::open(next.as_bytes(), &OpenOptions::new().skip_signature_check());
            assert!(reopened.is_ok(), "applied delta gives an invalid snapshot: {reopened:?}");
            current = Some(next);
        }
        if tail.len() == rest.len() {
            break;
        }
        rest = tail;
    }
});
