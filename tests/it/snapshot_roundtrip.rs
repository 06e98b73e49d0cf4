//! Round trip: random windows, inserts, advances and cutoffs, published as full snapshots and
//! deltas. Every view answers exactly as the window did, and an inserted key is never `Clear`.

use crate::support::NOW;
use std::time::Duration;

use proptest::prelude::*;
use revbloom::delta::{encode_delta, DeltaView};
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::{CutoffKey, CutoffSet, Verdict, Window, WindowConfig};

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, Exp),
    Advance(u64),
    Cutoff(u8, u32),
    Publish,
}

#[derive(Debug, Clone, Copy)]
enum Exp {
    None,
    Zero,
    Max,
    /// Seconds relative to the current time, in units of a tenth of a bucket.
    Rel(i32),
}

fn op() -> impl Strategy<Value = Op> {
    let exp = prop_oneof![
        1 => Just(Exp::None),
        1 => Just(Exp::Zero),
        1 => Just(Exp::Max),
        12 => (-30i32..150).prop_map(Exp::Rel),
    ];
    prop_oneof![
        10 => (any::<u16>(), exp).prop_map(|(k, e)| Op::Insert(k, e)),
        2 => prop_oneof![3 => 0u64..20, 1 => 20u64..400].prop_map(Op::Advance),
        1 => (any::<u8>(), any::<u32>()).prop_map(|(k, b)| Op::Cutoff(k, b)),
        3 => Just(Op::Publish),
    ]
}

fn config() -> impl Strategy<Value = WindowConfig> {
    (
        prop_oneof![Just(60u64), Just(600), Just(3600)],
        1u64..8,
        0u64..4,
        prop_oneof![Just(0.01), Just(0.001)],
        1u64..100,
    )
        .prop_map(|(w, h, l, fp, e)| {
            WindowConfig::default()
                .bucket_width(Duration::from_secs(w))
                .horizon(Duration::from_secs(w * h))
                .leeway(Duration::from_secs(w * l / 4))
                .fp_rate(fp)
                .expected_per_bucket(e)
        })
}

struct Published {
    bytes: Vec<u8>,
    meta: SnapshotMeta,
}

fn assert_same(view: &SnapshotView<&[u8]>, w: &Window, keys: &[(String, Option<u64>)], now: u64) {
    for (k, e) in keys {
        let v = view.check(k, *e);
        assert_eq!(v, w.check(k, *e), "key {k} exp {e:?}");
        assert_ne!(v, Verdict::Clear, "inserted key {k} exp {e:?} reads clear");
    }
    for i in 0..64u64 {
        let k = format!("absent-{i}");
        for e in [
            None,
            Some(now + i * 97),
            Some(now.saturating_sub(i * 500)),
            Some(i),
        ] {
            assert_eq!(view.check(&k, e), w.check(&k, e));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn snapshots_and_deltas_answer_like_the_window(
        config in config(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let width = config.bucket_width_secs();
        let mut now = NOW;
        let mut w = Window::with_seed(config, now, seed).unwrap();
        w.enable_journal();
        let mut cutoffs = CutoffSet::new();
        let mut new_cutoffs = Vec::new();
        let mut keys: Vec<(String, Option<u64>)> = Vec::new();
        let mut last: Option<Published> = None;
        for op in ops {
            match op {
                Op::Insert(k, e) => {
                    let exp = match e {
                        Exp::None => None,
                        Exp::Zero => Some(0),
                        Exp::Max => Some(u64::MAX),
                        Exp::Rel(r) => Some(now.saturating_add_signed(i64::from(r) * width as i64 / 10)),
                    };
                    let key = format!("jti-{k}");
                    if w.insert(&key, exp) != revbloom::InsertOutcome::Expired {
                        keys.push((key, exp));
                    }
                }
                Op::Advance(d) => {
                    now += d * width / 10;
                    w.advance(now);
                    // Keys whose bucket rotated out answer Expired now; keep only live ones.
                    keys.retain(|(k, e)| w.check(k, *e) != Verdict::Expired);
                }
                Op::Cutoff(k, b) => {
                    let key = CutoffKey(u64::from(k) * 0x9e37_79b9);
                    if cutoffs.insert(key, u64::from(b)) {
                        new_cutoffs.push((key, u64::from(b)));
                    }
                }
                Op::Publish => {
                    let meta = match &last {
                        None => SnapshotMeta::first(now),
                        Some(p) => p.meta.next(now),
                    };
                    let journal = w.take_journal();
                    let full = snapshot::encode_to_vec(&w, &cutoffs, &meta, None).unwrap();
                    let view = SnapshotView::open(&full[..], &OpenOptions::new()).unwrap();
                    assert_same(&view, &w, &keys, now);
                    for (key, before) in cutoffs.sorted() {
                        prop_assert_eq!(view.cutoff(key), Some(before));
                    }
                    if let (Some(prev), false) = (&last, journal.layout_changed) {
                        let mut delta = Vec::new();
                        encode_delta(&w, &journal, &new_cutoffs, &meta, None, &mut delta).unwrap();
                        prop_assert!(delta.len() <= 88 + 12 * journal.entries.len() + 16 * new_cutoffs.len());
                        let d = DeltaView::open(&delta, &OpenOptions::new()).unwrap();
                        let base = SnapshotView::open(&prev.bytes[..], &OpenOptions::new()).unwrap();
                        let applied = base.apply_delta(&d).unwrap();
                        prop_assert_eq!(applied.as_bytes(), &full[..]);
                    }
                    new_cutoffs.clear();
                    last = Some(Published { bytes: full, meta });
                }
            }
        }
    }
}
