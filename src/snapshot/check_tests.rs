//! The check paths of a view agree with the window it was encoded from: the AVX2 whole-check
//! function (on CPUs that have it), the scalar probe forced, over line-aligned bytes
//! ([`AlignedBytes`]) and over bytes deliberately off a line. Small enough for Miri, which CI
//! runs on it with and without AVX2 enabled.

use super::{encode_to_vec, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use crate::bloom::probe::Probe;
use crate::{CutoffSet, Verdict, Window, WindowConfig};
use std::time::Duration;

const NOW: u64 = 1_767_225_600;

#[test]
fn every_check_path_gives_the_window_verdict() {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(4 * 3600))
        .expected_per_bucket(8)
        .fp_rate(0.2);
    let mut w = Window::with_seed(config, NOW, 0x5eed).expect("valid config");
    let exp_of = |k: u32| match k % 4 {
        0 => None,
        1 => Some(NOW + 60 + u64::from(k) * 97 % (4 * 3600 - 120)),
        2 => Some(NOW + 30 * 3600 + u64::from(k)),
        _ => Some(NOW + 3600 + u64::from(k)),
    };
    for k in (0..60u32).step_by(2) {
        w.insert(k.to_le_bytes(), exp_of(k));
    }
    w.fit_to_entries(0.0);
    let bytes =
        encode_to_vec(&w, &CutoffSet::new(), &SnapshotMeta::first(NOW), None).expect("encode");
    let opts = OpenOptions::new();
    let aligned = SnapshotView::open(AlignedBytes::copy_from(&bytes), &opts).expect("open");
    assert_eq!(aligned.as_bytes().as_ptr() as usize % 64, 0);
    // The same file 8 bytes past a line: every block straddles two lines.
    let shifted = AlignedBytes::copy_from(&[&[0u8; 8][..], &bytes].concat());
    let off = SnapshotView::open(&shifted.as_ref()[8..], &opts).expect("open");
    let scalar = aligned.clone().with_probe(Probe::scalar());
    let mut positives = 0;
    for k in 0..120u32 {
        let key = k.to_le_bytes();
        for exp in [exp_of(k), Some(NOW - 7200), None] {
            let want = w.check(key, exp);
            positives += usize::from(want == Verdict::MaybeRevoked);
            assert_eq!(aligned.check(key, exp), want, "aligned {k} {exp:?}");
            assert_eq!(off.check(key, exp), want, "off a line {k} {exp:?}");
            assert_eq!(scalar.check(key, exp), want, "scalar {k} {exp:?}");
        }
    }
    // Every inserted key answers "maybe", and absent keys do too at a 20 % target: both
    // verdicts were compared.
    assert!(positives > 30, "{positives}");
}
