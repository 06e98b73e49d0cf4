//! Claim-cutoff lookups at 10k and 1M cutoffs: the open-time index (`SnapshotView::cutoff`:
//! presence filter, then radix slot) beside the plain binary search of the sorted table it
//! replaced (`cutoff::find_in_table`, kept as the baseline), for claims with and without a
//! cutoff; what the index costs at open; and the whole decision of item 3 (a `jti` check plus
//! `sub`, `sid` and `client_id` against 1M revocations and 100k cutoffs).
//!
//! `cargo bench --bench cutoffs` (add `-- --quick` for a fast pass).
//!
//! Rules, as in `benches/check.rs`: keys are looked up in random order over the whole set
//! (present: table keys shuffled; absent: keys never inserted), independent lookups back to
//! back (throughput), query arrays as large as the set (up to 1M) so a pass is not an
//! L1-resident loop. `prehashed` benches take the 64-bit fingerprint as given; `fingerprint+`
//! benches start from the claim value's bytes with the claim's `ClaimHasher` derived once,
//! as a verifier can per snapshot and claim.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{cycle, cycle_from, indices, rounds, Variant, NOW, QUERIES};
use criterion::{criterion_group, BenchmarkId, Criterion};
use revbloom::cutoff::{self, revokes, ClaimHasher, CutoffIndex, CutoffKey, CutoffSet};
use revbloom::snapshot::{self, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::{Verdict, Window, WindowConfig};

/// A claim value as a verifier has it after decoding: 16 bytes, e.g. `u-00000000001234`.
type Value = [u8; 16];

fn value(prefix: u8, i: u64) -> Value {
    let mut v = [b'0'; 16];
    v[0] = prefix;
    v[1] = b'-';
    let mut x = i;
    for c in v[2..].iter_mut().rev() {
        *c = b'0' + (x % 10) as u8;
        x /= 10;
    }
    v
}

/// Value `i` of a present key, and of a key never inserted (a disjoint range).
fn present_value(i: u64) -> Value {
    value(b'u', i)
}
fn absent_value(i: u64) -> Value {
    value(b'u', 1 << 40 | i)
}

/// A snapshot with a few revocations and `n` `sub` cutoffs (values `present_value(0..n)`).
fn snapshot_with_cutoffs(n: u64) -> (SnapshotView<AlignedBytes>, ClaimHasher) {
    let mut w = Window::with_seed(WindowConfig::default(), NOW, common::SEED).expect("config");
    w.insert("some-jti", Some(NOW + 600));
    w.set_cutoff_claims(&["sub"]).expect("claim");
    let claim = ClaimHasher::new(w.hasher(), None, "sub");
    let mut set = CutoffSet::new();
    for i in 0..n {
        set.insert(claim.key(present_value(i)), NOW - 60);
    }
    let bytes = snapshot::encode_to_vec(&w, &set, &SnapshotMeta::first(NOW), None).expect("encode");
    let view = SnapshotView::open_owned(bytes, &OpenOptions::new()).expect("open");
    (view, claim)
}

fn bench_lookup(c: &mut Criterion) {
    for (label, n) in [("10k", 10_000u64), ("1M", 1_000_000)] {
        let (view, claim) = snapshot_with_cutoffs(n);
        let table = view.cutoff_table();
        let present_v: Vec<Value> = indices(n, 1).into_iter().map(present_value).collect();
        let absent_v: Vec<Value> = indices(n, 2).into_iter().map(absent_value).collect();
        let present: Vec<CutoffKey> = present_v.iter().map(|v| claim.key(v)).collect();
        let absent: Vec<CutoffKey> = absent_v.iter().map(|v| claim.key(v)).collect();
        assert!(present.iter().all(|k| view.cutoff(*k) == Some(NOW - 60)));
        let passed = absent
            .iter()
            .filter(|k| view.cutoff_index().may_contain(**k))
            .count();
        assert!(absent.iter().all(|k| view.cutoff(*k).is_none()));
        println!(
            "cutoffs/{label}: table {} KiB, index {} KiB, absent keys past the presence filter {:.3} %",
            table.len() / 1024,
            view.cutoff_index().heap_bytes() / 1024,
            100.0 * passed as f64 / absent.len() as f64
        );

        // The binary search streams through the 16 MB table at 1M and would evict the
        // index between rounds: baseline and index take turns only among themselves.
        let mut baseline: Vec<Variant<'_>> = Vec::new();
        let mut indexed: Vec<Variant<'_>> = Vec::new();
        for (kind, keys) in [("absent", &absent), ("present", &present)] {
            baseline.push((
                format!("binary_search/{kind}"),
                cycle(keys, |k| cutoff::find_in_table(table, *k).is_some()),
            ));
            indexed.push((
                format!("indexed/{kind}"),
                cycle(keys, |k| view.cutoff(*k).is_some()),
            ));
        }
        for (kind, values) in [("absent", &absent_v), ("present", &present_v)] {
            // Half a list away from `indexed/{kind}`, which looks up the same keys.
            indexed.push((
                format!("fingerprint+indexed/{kind}"),
                cycle_from(values, values.len() / 2, |v| {
                    view.cutoff(claim.key(v)).is_some()
                }),
            ));
        }
        rounds(&format!("cutoffs/{label} baseline"), &mut baseline);
        rounds(&format!("cutoffs/{label} index"), &mut indexed);
        drop((baseline, indexed));

        let mut g = c.benchmark_group(format!("cutoffs/{label}"));
        g.measurement_time(Duration::from_secs(3));
        for (kind, keys) in [("absent", &absent), ("present", &present)] {
            g.bench_function(BenchmarkId::new("binary_search", kind), |b| {
                common::throughput(b, keys, |k| cutoff::find_in_table(table, *k).is_some())
            });
            g.bench_function(BenchmarkId::new("indexed", kind), |b| {
                common::throughput(b, keys, |k| view.cutoff(*k).is_some())
            });
        }
        for (kind, values) in [("absent", &absent_v), ("present", &present_v)] {
            g.bench_function(BenchmarkId::new("fingerprint+binary_search", kind), |b| {
                common::throughput(b, values, |v| {
                    cutoff::find_in_table(table, claim.key(v)).is_some()
                })
            });
            g.bench_function(BenchmarkId::new("fingerprint+indexed", kind), |b| {
                common::throughput(b, values, |v| view.cutoff(claim.key(v)).is_some())
            });
        }
        g.finish();
    }
}

/// What the index costs when a snapshot is opened: the index alone, and a whole open (with
/// and without the checksum) of a file holding 1M cutoffs.
fn bench_open(c: &mut Criterion) {
    let (view, _) = snapshot_with_cutoffs(1_000_000);
    let bytes = view.as_bytes().to_vec();
    let table = view.cutoff_table().to_vec();
    println!(
        "open/1M cutoffs: file {} KiB, index {} KiB",
        bytes.len() / 1024,
        view.cutoff_index().heap_bytes() / 1024
    );
    let mut g = c.benchmark_group("cutoffs/open_1M");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    // What open did with the table before the index: check the order, nothing else.
    g.bench_function("order_check_only", |b| {
        b.iter(|| {
            let t = black_box(&table);
            let fp = |i: usize| u64::from_le_bytes(t[i * 16..i * 16 + 8].try_into().unwrap());
            (1..t.len() / 16).all(|i| fp(i - 1) < fp(i))
        })
    });
    g.bench_function("index_build", |b| {
        b.iter(|| CutoffIndex::build(black_box(&table)).is_ok())
    });
    g.bench_function("open_checksum", |b| {
        b.iter(|| SnapshotView::open(black_box(&bytes[..]), &OpenOptions::new()).is_ok())
    });
    g.bench_function("open_no_checksum", |b| {
        b.iter(|| {
            SnapshotView::open(
                black_box(&bytes[..]),
                &OpenOptions::new().verify_checksum(false),
            )
            .is_ok()
        })
    });
    g.finish();
}

/// One token as a verifier has it after decoding.
struct Token {
    jti: [u8; 36],
    exp: u64,
    iat: u64,
    sub: Value,
    sid: Value,
    client_id: Value,
}

/// The whole decision: 1M revocations at 0.1 %, 100k cutoffs spread over `sub`, `sid` and
/// `client_id`; a token carrying all three is checked by `jti` and each claim. Tokens are
/// clean (no revocation, no cutoff: the common case), or from a user whose `sub` was cut off
/// before the token was issued (present cutoff, token passes).
fn bench_decision(c: &mut Criterion) {
    const REVOKED: u64 = 1_000_000;
    const CUTOFFS: u64 = 100_000;
    let mut w = common::window(REVOKED, 0.001);
    w.set_cutoff_claims(&["client_id", "sid", "sub"])
        .expect("claims");
    let h = *w.hasher();
    let claims = [
        ClaimHasher::new(&h, None, "sub"),
        ClaimHasher::new(&h, None, "sid"),
        ClaimHasher::new(&h, None, "client_id"),
    ];
    let mut set = CutoffSet::new();
    for i in 0..CUTOFFS {
        set.insert(claims[(i % 3) as usize].key(value(b'v', i)), NOW - 60);
    }
    let bytes = snapshot::encode_to_vec(&w, &set, &SnapshotMeta::first(NOW), None).expect("encode");
    let view = SnapshotView::open_owned(bytes, &OpenOptions::new()).expect("open");
    drop(w);

    let token = |i: u64, cut: bool| Token {
        jti: common::jti(1 << 40 | i),
        exp: common::exp_of(i),
        iat: NOW - 30,
        // A cut-off user's `sub` is one of the sub cutoffs (indices = 0 mod 3).
        sub: if cut {
            value(b'v', (i % (CUTOFFS / 3)) * 3)
        } else {
            value(b's', i)
        },
        sid: value(b'i', i),
        client_id: value(b'c', i % 1000),
    };
    let clean: Vec<Token> = indices(QUERIES as u64, 5)
        .into_iter()
        .map(|i| token(i, false))
        .collect();
    let relogged: Vec<Token> = indices(QUERIES as u64, 6)
        .into_iter()
        .map(|i| token(i, true))
        .collect();

    // Derived once per snapshot, as a verifier can (a new snapshot may bring a new seed).
    let decide = |t: &Token| -> bool {
        let hasher = view.hasher();
        if view.check_hash(hasher.hash(t.jti.as_slice()), Some(t.exp)) != Verdict::Clear {
            return false;
        }
        let values = [&t.sub, &t.sid, &t.client_id];
        for (claim, v) in claims.iter().zip(values) {
            if view
                .cutoff(claim.key(v))
                .is_some_and(|before| revokes(before, Some(t.iat)))
            {
                return false;
            }
        }
        true
    };
    let accepted = clean.iter().filter(|t| decide(t)).count();
    let relogged_accepted = relogged.iter().filter(|t| decide(t)).count();
    // Only filter false positives (~0.1 %) may stop a token here: the cutoffs predate `iat`.
    assert!(relogged_accepted * 100 > relogged.len() * 99);
    println!(
        "decision: {accepted} of {} clean tokens clear ({} filter false positives), {relogged_accepted} of {} re-logged-in tokens clear",
        clean.len(),
        clean.len() - accepted,
        relogged.len()
    );

    // The same decision deriving each claim's space per lookup (`CutoffKey::new`: three xxh3
    // passes instead of one): the cost the view's per-snapshot claim spaces save the verifier.
    let decide_derive_each = |t: &Token| -> bool {
        let hasher = view.hasher();
        if view.check_hash(hasher.hash(t.jti.as_slice()), Some(t.exp)) != Verdict::Clear {
            return false;
        }
        let values = [
            ("sub", &t.sub),
            ("sid", &t.sid),
            ("client_id", &t.client_id),
        ];
        !values.iter().any(|(claim, v)| {
            view.cutoff(CutoffKey::new(&hasher, None, claim, v))
                .is_some_and(|before| revokes(before, Some(t.iat)))
        })
    };
    let jti_only = |t: &Token| {
        view.check_hash(view.hasher().hash(t.jti.as_slice()), Some(t.exp)) == Verdict::Clear
    };
    rounds(
        "cutoffs/decision_1M_revocations_100k_cutoffs",
        &mut [
            (
                "jti+sub+sid+client_id/clean".to_string(),
                cycle(&clean, decide),
            ),
            (
                "jti+sub+sid+client_id/sub_cut_before_iat".to_string(),
                cycle(&relogged, decide),
            ),
            (
                "jti+sub+sid+client_id/clean/derive_each".to_string(),
                cycle_from(&clean, clean.len() / 3, decide_derive_each),
            ),
            (
                "jti_only/clean".to_string(),
                cycle_from(&clean, clean.len() * 2 / 3, jti_only),
            ),
        ],
    );

    let mut g = c.benchmark_group("cutoffs/decision_1M_revocations_100k_cutoffs");
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("jti+sub+sid+client_id/clean", |b| {
        common::throughput(b, &clean, |t| decide(t))
    });
    g.bench_function("jti+sub+sid+client_id/sub_cut_before_iat", |b| {
        common::throughput(b, &relogged, |t| decide(t))
    });
    g.bench_function("jti+sub+sid+client_id/clean/derive_each", |b| {
        common::throughput(b, &clean, decide_derive_each)
    });
    g.bench_function("jti_only/clean", |b| {
        common::throughput(b, &clean, jti_only)
    });
    g.finish();
}

criterion_group!(benches, bench_lookup, bench_open, bench_decision);

/// Instruction counts do not drift with the machine's load: the binary can also run one
/// lookup variant in a plain loop for `valgrind --tool=cachegrind` (docs/BENCHMARKS.md),
/// `REVBLOOM_CUTOFFS_LOOP=<indexed|binary_search|loop>:<absent|present>:<cutoffs>:<iterations>`.
/// Subtract a `loop` run (the same loop without a lookup) of as many iterations.
fn instruction_loop(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [how, kind, n, iters] = parts[..] else {
        panic!(
            "REVBLOOM_CUTOFFS_LOOP=<indexed|binary_search|loop>:<absent|present>:<cutoffs>:<iterations>"
        );
    };
    let (n, iters): (u64, usize) = (
        n.parse().expect("cutoffs"),
        iters.parse().expect("iterations"),
    );
    let (view, claim) = snapshot_with_cutoffs(n);
    let make = if kind == "present" {
        present_value
    } else {
        absent_value
    };
    let keys: Vec<CutoffKey> = indices(n, 1)
        .into_iter()
        .map(|i| claim.key(make(i)))
        .collect();
    let table = view.cutoff_table();
    let count = |lookup: &dyn Fn(CutoffKey) -> bool| {
        let mut found = 0usize;
        for k in keys.iter().cycle().take(iters) {
            found += usize::from(lookup(black_box(*k)));
        }
        found
    };
    black_box(match how {
        "indexed" => count(&|k| view.cutoff(k).is_some()),
        "binary_search" => count(&|k| cutoff::find_in_table(table, k).is_some()),
        // The loop alone, to subtract.
        _ => count(&|k| k.0 & 1 == 0),
    });
}

fn main() {
    if let Ok(spec) = std::env::var("REVBLOOM_CUTOFFS_LOOP") {
        instruction_loop(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
