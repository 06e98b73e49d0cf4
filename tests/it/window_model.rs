//! No false negatives, ever: random sequences of insert / check / advance against an exact
//! model. An inserted key is `MaybeRevoked` while its bucket lives and `Expired` once the window
//! has moved past it; never `Clear`.

use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;
use revbloom::{InsertOutcome, Verdict, Window, WindowConfig};

#[derive(Debug, Clone)]
enum Exp {
    None,
    Zero,
    Max,
    /// now + offset (may be negative: already expired)
    Rel(i64),
    /// exactly on a bucket boundary near now, plus `adj` in {-1, 0, 1}
    Boundary(i64, i8),
    /// far beyond the horizon: now + horizon * k
    Far(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, Exp),
    Advance(Step),
}

#[derive(Debug, Clone)]
enum Step {
    Secs(u32),
    Buckets(u16),
    Days(u16),
    Back(u32),
    ToMax,
}

fn exp_strategy() -> impl Strategy<Value = Exp> {
    prop_oneof![
        1 => Just(Exp::None),
        1 => Just(Exp::Zero),
        1 => Just(Exp::Max),
        6 => (-100_000i64..200_000).prop_map(Exp::Rel),
        4 => ((-3i64..40), (-1i8..=1)).prop_map(|(b, a)| Exp::Boundary(b, a)),
        2 => (1u8..5).prop_map(Exp::Far),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u16..64, exp_strategy()).prop_map(|(k, e)| Op::Insert(k, e)),
        2 => prop_oneof![
            4 => (0u32..5_000).prop_map(Step::Secs),
            3 => (0u16..30).prop_map(Step::Buckets),
            1 => (1u16..400).prop_map(Step::Days),
            2 => (0u32..200_000).prop_map(Step::Back),
            1 => Just(Step::ToMax),
        ]
        .prop_map(Op::Advance),
    ]
}

fn config_strategy() -> impl Strategy<Value = WindowConfig> {
    (
        prop_oneof![Just(1u64), Just(7), Just(60), Just(3600)],
        1u64..30,
        prop_oneof![Just(0u64), Just(1), Just(59), Just(600)],
        prop_oneof![Just(1u64), Just(2), Just(10), Just(200)],
        prop_oneof![Just(0.3f64), Just(0.01), Just(0.001)],
        prop_oneof![Just(u64::MAX), Just(0u64)],
    )
        .prop_map(|(width, spans, leeway, expected, fp, cap)| {
            let horizon = width * spans;
            let base = WindowConfig::default()
                .bucket_width(Duration::from_secs(width))
                .horizon(Duration::from_secs(horizon))
                .leeway(Duration::from_secs(leeway.min(horizon)))
                .expected_per_bucket(expected)
                .fp_rate(fp);
            // cap 0 means: as small as this config allows, so growth saturates at once.
            let cap = if cap == 0 {
                let g = base.clone().validate().expect("valid");
                (u64::from(g.buckets) + 1) * u64::from(g.initial_blocks) * 64
            } else {
                cap
            };
            base.max_bytes(cap)
        })
}

fn resolve(e: &Exp, now: u64, width: u64, horizon: u64) -> Option<u64> {
    match *e {
        Exp::None => None,
        Exp::Zero => Some(0),
        Exp::Max => Some(u64::MAX),
        Exp::Rel(d) => Some(now.saturating_add_signed(d)),
        Exp::Boundary(b, a) => {
            let base = (now / width).saturating_add_signed(b).saturating_mul(width);
            Some(base.saturating_add_signed(i64::from(a)))
        }
        Exp::Far(k) => Some(now.saturating_add(horizon.saturating_mul(u64::from(k) + 1))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn inserted_keys_are_never_clear(
        config in config_strategy(),
        start in prop_oneof![Just(0u64), Just(59u64), 1_700_000_000u64..1_800_000_000, Just(u64::MAX - 100_000)],
        seed in any::<u64>(),
        ops in prop::collection::vec(op_strategy(), 1..60),
    ) {
        let width = config.bucket_width_secs();
        let horizon = config.horizon_secs();
        let leeway = config.leeway_secs();
        let mut w = Window::with_seed(config, start, seed).expect("valid config");
        let mut now = start;
        // The model: the exact set of revoked (key, exp), and the oldest live bucket, which
        // only moves forward.
        let mut revoked: HashSet<(u16, Option<u64>)> = HashSet::new();
        // The ring's buckets all have numbers below the largest an exp can name, so the oldest
        // bucket is clamped at u64::MAX / width - buckets (only absurd clocks reach it).
        let buckets = (horizon + 2 * leeway).div_ceil(width) + 1;
        let oldest_at = |now: u64| (now.saturating_sub(leeway) / width).min((u64::MAX / width).saturating_sub(buckets));
        let mut model_oldest = oldest_at(start);

        for op in ops {
            match op {
                Op::Insert(k, e) => {
                    let exp = resolve(&e, now, width, horizon);
                    let outcome = w.insert(k.to_le_bytes(), exp);
                    let expired = matches!(exp, Some(x) if x / width < model_oldest);
                    if expired {
                        prop_assert_eq!(outcome, InsertOutcome::Expired);
                    } else {
                        prop_assert_ne!(outcome, InsertOutcome::Expired);
                        revoked.insert((k, exp));
                    }
                }
                Op::Advance(step) => {
                    now = match step {
                        Step::Secs(s) => now.saturating_add(u64::from(s)),
                        Step::Buckets(b) => (now / width).saturating_add(u64::from(b)).saturating_mul(width),
                        Step::Days(d) => now.saturating_add(u64::from(d) * 86_400),
                        Step::Back(s) => now.saturating_sub(u64::from(s)),
                        Step::ToMax => u64::MAX,
                    };
                    w.advance(now);
                    model_oldest = model_oldest.max(oldest_at(now));
                }
            }
            prop_assert_eq!(w.oldest_bucket(), model_oldest);
            for &(k, exp) in &revoked {
                let expect = match exp {
                    Some(x) if x / width < model_oldest => Verdict::Expired,
                    _ => Verdict::MaybeRevoked,
                };
                prop_assert_eq!(w.check(k.to_le_bytes(), exp), expect, "key {} exp {:?} now {}", k, exp, now);
            }
        }
        // The window stores one entry per (key, expiry bucket).
        let live: HashSet<(u16, Option<u64>)> = revoked
            .iter()
            .filter(|(_, e)| !matches!(e, Some(x) if x / width < model_oldest))
            .map(|&(k, e)| (k, e.map(|x| x / width)))
            .collect();
        prop_assert_eq!(w.entries() as usize, live.len());
        // Bucket numbers must stay representable at any clock (this walks every bucket).
        let stats = w.bucket_stats();
        prop_assert_eq!(stats.iter().map(|b| b.entries).sum::<u64>(), w.entries());
    }
}
