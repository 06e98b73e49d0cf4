//! Every block probe gives the same verdicts end to end: the publisher's `Window`, its
//! snapshot read in place with the probe this CPU runs (AVX2, NEON), with the portable scalar
//! probe forced, and opened owned (copied to line-aligned `AlignedBytes`). Random revocations
//! and queries over every kind of `exp` (none, expired, in the ring, beyond the horizon), at a
//! target rate high enough that absent keys hit set bits and some come back `MaybeRevoked`:
//! the comparison covers positives as well as clears. CI also runs this file built with
//! `--cfg revbloom_force_scalar`.

use crate::support::NOW;
use std::time::Duration;

use proptest::prelude::*;
use revbloom::bloom::probe::Probe;
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::{CutoffSet, Verdict, Window, WindowConfig};

const HORIZON: u64 = 6 * 3600;

fn exp_strategy() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        (0..HORIZON).prop_map(|d| Some(NOW + d)),
        (1..7200u64).prop_map(|d| Some(NOW - d)),
        (HORIZON..HORIZON * 10).prop_map(|d| Some(NOW + d)),
    ]
}

/// Window, snapshot view, scalar-forced view, and every query's verdict from each.
fn verdicts(
    fp: f64,
    revoked: &[(u32, Option<u64>)],
    queries: &[(u32, Option<u64>)],
) -> Vec<[Verdict; 4]> {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(HORIZON))
        .expected_per_bucket(16)
        .fp_rate(fp);
    let mut w = Window::with_seed(config, NOW, 0x00c0_ffee).expect("valid config");
    for &(k, exp) in revoked {
        w.insert(k.to_le_bytes(), exp);
    }
    w.fit_to_entries(0.0);
    let bytes = snapshot::encode_to_vec(&w, &CutoffSet::new(), &SnapshotMeta::first(NOW), None)
        .expect("encode");
    let view = SnapshotView::open(&bytes[..], &OpenOptions::new()).expect("open");
    let owned = SnapshotView::open_owned(bytes.clone(), &OpenOptions::new()).expect("open");
    let scalar = view.clone().with_probe(Probe::scalar());
    assert_eq!(scalar.probe(), Probe::scalar());
    queries
        .iter()
        .map(|&(k, exp)| {
            let key = k.to_le_bytes();
            [
                w.check(key, exp),
                view.check(key, exp),
                scalar.check(key, exp),
                owned.check(key, exp),
            ]
        })
        .collect()
}

#[test]
fn absent_positives_occur_and_agree() {
    // A control for the proptest below: at a 20 % target, absent keys do come back
    // `MaybeRevoked`, so agreement is tested on positives, not only on clears.
    let revoked: Vec<_> = (0..2_000u32).map(|k| (k, Some(NOW + 600))).collect();
    let queries: Vec<_> = (1_000_000..1_002_000u32)
        .map(|k| (k, Some(NOW + 600)))
        .collect();
    let v = verdicts(0.2, &revoked, &queries);
    let positives = v.iter().filter(|r| r[0] == Verdict::MaybeRevoked).count();
    assert!(positives > 100 && positives < 1_000, "{positives}");
    for r in &v {
        assert_eq!(r[0], r[1]);
        assert_eq!(r[0], r[2]);
        assert_eq!(r[0], r[3]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_probe_gives_the_window_verdict(
        fp in prop_oneof![Just(0.001), Just(0.01), Just(0.2)],
        revoked in prop::collection::vec((0..5_000u32, exp_strategy()), 0..600),
        absent in prop::collection::vec((5_000..u32::MAX, exp_strategy()), 0..400),
    ) {
        let queries: Vec<_> = revoked.iter().copied().chain(absent).collect();
        let v = verdicts(fp, &revoked, &queries);
        for (r, q) in v.iter().zip(&queries) {
            prop_assert_eq!(r[0], r[1], "view vs window for {:?}", q);
            prop_assert_eq!(r[0], r[2], "scalar view vs window for {:?}", q);
            prop_assert_eq!(r[0], r[3], "aligned owned view vs window for {:?}", q);
        }
        // No false negative on any path.
        for (r, q) in v.iter().zip(&revoked) {
            prop_assert_ne!(r[0], Verdict::Clear, "revoked {:?}", q);
        }
    }
}
