//! Check cost at 100k and 1M revocations and a 0.1 % target, side by side with the anchors.
//!
//! `cargo bench --bench check` (add `-- --quick` for a fast pass;
//! `-- 'check_.*throughput'` runs only the head-to-head throughput groups).
//!
//! Fairness rules, all structures in one run:
//! - every structure is given the same 36-byte UUID-like `jti` and hashes it itself with the
//!   same seeded xxh3 (64-bit; the exact hash set keeps a 128-bit xxh3 fingerprint), the seed
//!   read at run time as any deployed filter holds it (`common::h64`): with a compile-time
//!   seed the compiler folds it into xxh3's secret and the anchors' hash costs about 35 fewer
//!   instructions than revbloom's, whose seed comes from the snapshot; revbloom additionally
//!   picks the expiry bucket from `exp` (a multiply and a ring lookup), which the anchors do
//!   not have to do;
//! - keys are looked up in a random order over the whole key set (present: every inserted key
//!   once, shuffled; absent: 1M keys never inserted), present and absent reported apart;
//! - `xxh3-only` is the floor every structure pays, and `revbloom-prehashed`
//!   (`Window::check_hash`) is the filter alone, so hash and probe cost can be split;
//! - `revbloom` checks the publisher's `Window`; `revbloom-snapshot` the verifier's
//!   `SnapshotView` of the same window encoded and opened owned (`open_owned` copies the file
//!   to line-aligned `AlignedBytes`, as an mmap is page-aligned, so each block is one cache
//!   line); `revbloom-snapshot-unaligned` the same file in a plain `Vec<u8>` (16 bytes off a
//!   line: every block spans two); `revbloom-snapshot-scalar` the aligned view with the
//!   portable probe forced, the code a CPU without AVX2 (or NEON) runs;
//! - `check_100k_0.1pct` and `check_1M_0.1pct` are the head-to-head groups (100k: the filters
//!   fit in L2, the cost is instructions; 1M: L3);
//! - `throughput` issues independent checks back to back; `latency` runs one check at a time
//!   (an `lfence` after each, see `common::fence`), so one lookup's full latency is measured;
//! - the `storage` group compares the cache-line-aligned blocks revbloom uses with the same
//!   bits held in a `BitVec<u64>` (read through its raw words, or bit by bit).
//!
//! Times are the bench thread's CPU time (`common::ThreadCpu`): on the shared 2-core machine
//! wall time also counts other processes' scheduler slices.
//!
//! The setup prints each structure's bits per entry and measured false-positive rate.

mod common;

use std::hint::black_box;
use std::time::Duration;

use bitvec::prelude::{BitVec, Lsb0};
use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use revbloom::bloom::probe::Probe;
use revbloom::bloom::{self, block_contains, block_index, masks, Bloom};
use revbloom::snapshot::{self, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::{CutoffSet, KeyHash, Window};
use xorf::Filter as _;

const N: u64 = 1_000_000;
const FP: f64 = 0.001;

/// A `BitVec<u64>` holding the same blocks as a [`Bloom`], probed through its raw words.
fn bitvec_words_contains(bv: &BitVec<u64, Lsb0>, nblocks: u32, h: KeyHash) -> bool {
    let b = block_index(h, nblocks);
    match bv
        .as_raw_slice()
        .get(b * 8..b * 8 + 8)
        .and_then(|w| <&[u64; 8]>::try_from(w).ok())
    {
        Some(block) => block_contains(block, h),
        None => false,
    }
}

/// The same, bit by bit through bitvec's indexing (what a natural `BitVec` user writes).
fn bitvec_bits_contains(bv: &BitVec<u64, Lsb0>, nblocks: u32, h: KeyHash) -> bool {
    let base = block_index(h, nblocks) * bloom::BLOCK_BITS;
    let m = masks(h);
    (0..bloom::WORDS).all(|i| {
        bv.get(base + i * 64 + m[i].trailing_zeros() as usize)
            .is_some_and(|b| *b)
    })
}

/// The salts of `revbloom::bloom` (private there), for the probe variant below.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// `1 << i` for every bit index of a word.
const ONE_BIT: [u64; 64] = {
    let mut t = [0u64; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = 1 << i;
        i += 1;
    }
    t
};

/// The same probe as `Bloom::contains` (same block, same eight bits), with each one-bit mask
/// read from a 64-entry table instead of shifted into place. Baseline x86-64 (SSE2) has no
/// per-lane variable 64-bit shift; this variant measured 17-20 % faster than the shifts, so
/// `bloom::masks` now uses the table when AVX2 is not enabled at compile time. Kept as the
/// side-by-side reference: `aligned-blocks` should match it on baseline builds and beat it
/// with `-C target-cpu=x86-64-v3`.
fn lut_contains(blocks: &[bloom::Block], h: KeyHash) -> bool {
    let Some(b) = blocks.get(block_index(h, blocks.len() as u32)) else {
        return false;
    };
    let low = h.0 as u32;
    let mut missing = 0u64;
    for i in 0..bloom::WORDS {
        missing |= ONE_BIT[(low.wrapping_mul(SALT[i]) >> 26) as usize] & !b.0[i];
    }
    missing == 0
}

/// The verifier's view of `window`: encoded to a snapshot and opened in place.
fn snapshot_of(window: &Window) -> SnapshotView<AlignedBytes> {
    let bytes = snapshot::encode_to_vec(window, &CutoffSet::new(), &SnapshotMeta::first(NOW), None)
        .expect("encode");
    SnapshotView::open_owned(bytes, &OpenOptions::new()).expect("open")
}

/// The head-to-head throughput groups at `n` entries: revbloom's window and snapshot view
/// next to the anchors, present and absent keys.
fn bench_head_to_head(c: &mut Criterion<ThreadCpu>, n: u64, size: &str) {
    let window = window(n, FP);
    // What a verifier holds: the file opened owned, copied to line-aligned `AlignedBytes`.
    let view = snapshot_of(&window);
    // The same file in a plain `Vec<u8>` (16 bytes off a line): the cost `AlignedBytes` saves.
    let unaligned =
        SnapshotView::open(view.as_bytes().to_vec(), &OpenOptions::new()).expect("open unaligned");
    let scalar = view.clone().with_probe(Probe::scalar());
    eprintln!(
        "check_{size}: snapshot probe {}, AlignedBytes address mod 64 = {}, Vec<u8> mod 64 = {}",
        view.probe().name(),
        view.as_bytes().as_ptr() as usize % 64,
        unaligned.as_bytes().as_ptr() as usize % 64
    );
    let a = anchors(n, FP, false);
    let present = present_queries(n, 1);
    let absent = absent_queries(n, 2);
    for (label, qs) in [("present", &present), ("absent", &absent)] {
        assert!(
            qs.iter().all(|q| {
                let want = window.check(q.jti.as_slice(), Some(q.exp));
                view.check(q.jti.as_slice(), Some(q.exp)) == want
                    && unaligned.check(q.jti.as_slice(), Some(q.exp)) == want
                    && scalar.check(q.jti.as_slice(), Some(q.exp)) == want
            }),
            "views and window must agree"
        );
        // Round-robin rounds first (see `common::rounds`): the 10th percentile is the
        // figure least disturbed by other work on the machine, and every structure sees the
        // same disturbance.
        let mut variants: Vec<Variant<'_>> = vec![
            (
                "xxh3-only".into(),
                cycle(qs, |q: &Query| black_box(h64(&q.jti)) & 1 == 1),
            ),
            (
                "revbloom".into(),
                cycle(qs, |q: &Query| {
                    maybe(window.check(q.jti.as_slice(), Some(q.exp)))
                }),
            ),
            (
                "revbloom-snapshot".into(),
                cycle(qs, |q: &Query| {
                    maybe(view.check(q.jti.as_slice(), Some(q.exp)))
                }),
            ),
            (
                "revbloom-snapshot-unaligned".into(),
                cycle(qs, |q: &Query| {
                    maybe(unaligned.check(q.jti.as_slice(), Some(q.exp)))
                }),
            ),
            (
                "revbloom-snapshot-scalar".into(),
                cycle(qs, |q: &Query| {
                    maybe(scalar.check(q.jti.as_slice(), Some(q.exp)))
                }),
            ),
            (
                "sbbf-rs-safe".into(),
                cycle(qs, |q: &Query| a.sbbf.contains_hash(h64(&q.jti))),
            ),
            (
                "fastbloom".into(),
                cycle(qs, |q: &Query| a.fast.contains_hash(h64(&q.jti))),
            ),
        ];
        rounds(
            &format!("check_{size}_0.1pct/throughput/{label}"),
            &mut variants,
        );
        drop(variants);

        let mut g = c.benchmark_group(format!("check_{size}_0.1pct/throughput/{label}"));
        g.throughput(Throughput::Elements(1));
        g.warm_up_time(Duration::from_millis(700));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(50);
        g.bench_function("xxh3-only", |b| {
            throughput(b, qs, |q: &Query| black_box(h64(&q.jti)) & 1 == 1)
        });
        g.bench_function("revbloom", |b| {
            throughput(b, qs, |q: &Query| {
                maybe(window.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        g.bench_function("revbloom-snapshot", |b| {
            throughput(b, qs, |q: &Query| {
                maybe(view.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        g.bench_function("revbloom-snapshot-unaligned", |b| {
            throughput(b, qs, |q: &Query| {
                maybe(unaligned.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        g.bench_function("revbloom-snapshot-scalar", |b| {
            throughput(b, qs, |q: &Query| {
                maybe(scalar.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        g.bench_function("sbbf-rs-safe", |b| {
            throughput(b, qs, |q: &Query| a.sbbf.contains_hash(h64(&q.jti)))
        });
        g.bench_function("fastbloom", |b| {
            throughput(b, qs, |q: &Query| a.fast.contains_hash(h64(&q.jti)))
        });
        g.finish();
    }
}

fn bench_check(c: &mut Criterion<ThreadCpu>) {
    bench_head_to_head(c, 100_000, "100k");
    bench_head_to_head(c, N, "1M");

    let window = window(N, FP);
    let view = snapshot_of(&window);
    let a = anchors(N, FP, true);
    let (fuse, set) = (
        a.fuse.as_ref().expect("built"),
        a.set.as_ref().expect("built"),
    );
    let present = present_queries(N, 1);
    let absent = absent_queries(N, 2);
    let prehashed = |qs: &[Query]| -> Vec<(KeyHash, u64)> {
        qs.iter().map(|q| (KeyHash(h64(&q.jti)), q.exp)).collect()
    };
    let (present_h, absent_h) = (prehashed(&present), prehashed(&absent));

    // One Bloom of the window's total size, and the same bits in a BitVec.
    let nblocks = bloom::blocks_for(N, bloom::max_load_for(FP)) as u32;
    let mut flat = Bloom::with_blocks(nblocks);
    for i in 0..N {
        flat.insert(KeyHash(h64(&jti(i))));
    }
    assert!(
        (0..N).step_by(97).all(|i| {
            let h = KeyHash(h64(&jti(i)));
            lut_contains(flat.blocks(), h) && flat.contains(h)
        }) && absent_h
            .iter()
            .all(|&(h, _)| lut_contains(flat.blocks(), h) == flat.contains(h)),
        "the table-mask probe must answer exactly like Bloom::contains"
    );
    let words: Vec<u64> = flat.blocks().iter().flat_map(|b| b.0).collect();
    let bv: BitVec<u64, Lsb0> = BitVec::from_vec(words);

    let fp_of = |f: &dyn Fn(&Query) -> bool| {
        100.0 * absent.iter().filter(|q| f(q)).count() as f64 / absent.len() as f64
    };
    eprintln!("structure                  bits/entry  measured fp %  (1M entries, target 0.1 %)");
    let rows: [(&str, f64, f64); 5] = [
        (
            "revbloom",
            window.bits_per_entry().unwrap_or(0.0),
            fp_of(&|q| maybe(window.check(q.jti.as_slice(), Some(q.exp)))),
        ),
        (
            "sbbf-rs-safe",
            a.sbbf.as_bytes().len() as f64 * 8.0 / N as f64,
            fp_of(&|q| a.sbbf.contains_hash(h64(&q.jti))),
        ),
        (
            "fastbloom",
            a.fast.num_bits() as f64 / N as f64,
            fp_of(&|q| a.fast.contains_hash(h64(&q.jti))),
        ),
        (
            "xorf-BinaryFuse8",
            fuse.len() as f64 * 8.0 / N as f64,
            fp_of(&|q| fuse.contains(&h64(&q.jti))),
        ),
        (
            "hashbrown-fingerprint-set",
            set.allocation_size() as f64 * 8.0 / N as f64,
            fp_of(&|q| set.contains(&h128(&q.jti))),
        ),
    ];
    for (name, bits, fp) in rows {
        eprintln!("{name:<26} {bits:>10.2}  {fp:>13.4}");
    }
    eprintln!(
        "bitvec storage base address mod 64 = {} (aligned blocks: {})",
        bv.as_raw_slice().as_ptr() as usize % 64,
        flat.blocks().as_ptr() as usize % 64
    );

    for (label, qs, hs) in [
        ("present", &present, &present_h),
        ("absent", &absent, &absent_h),
    ] {
        let mut g = c.benchmark_group(format!("check_1M_0.1pct/latency/{label}"));
        g.throughput(Throughput::Elements(1));
        g.warm_up_time(Duration::from_millis(700));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(50);
        g.bench_function("xxh3-only", |b| {
            latency(b, qs, |q: &Query| black_box(h64(&q.jti)) & 1 == 1)
        });
        g.bench_function("revbloom", |b| {
            latency(b, qs, |q: &Query| {
                maybe(window.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        g.bench_function("revbloom-snapshot", |b| {
            latency(b, qs, |q: &Query| {
                maybe(view.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        g.bench_function("sbbf-rs-safe", |b| {
            latency(b, qs, |q: &Query| a.sbbf.contains_hash(h64(&q.jti)))
        });
        g.bench_function("fastbloom", |b| {
            latency(b, qs, |q: &Query| a.fast.contains_hash(h64(&q.jti)))
        });
        g.bench_function("xorf-BinaryFuse8", |b| {
            latency(b, qs, |q: &Query| fuse.contains(&h64(&q.jti)))
        });
        g.bench_function("hashbrown-fingerprint-set", |b| {
            latency(b, qs, |q: &Query| set.contains(&h128(&q.jti)))
        });
        g.finish();
        // xorf and the exact set at throughput (the head-to-head groups leave them out).
        let mut g = c.benchmark_group(format!("check_1M_0.1pct/throughput/{label}"));
        g.throughput(Throughput::Elements(1));
        g.warm_up_time(Duration::from_millis(700));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(50);
        g.bench_function("revbloom-prehashed", |b| {
            let mut i = 0usize;
            b.iter(|| {
                let (h, exp) = hs[i];
                i += 1;
                if i >= hs.len() {
                    i = 0;
                }
                maybe(window.check_hash(black_box(h), Some(exp)))
            })
        });
        g.bench_function("xorf-BinaryFuse8", |b| {
            throughput(b, qs, |q: &Query| fuse.contains(&h64(&q.jti)))
        });
        g.bench_function("hashbrown-fingerprint-set", |b| {
            throughput(b, qs, |q: &Query| set.contains(&h128(&q.jti)))
        });
        g.finish();

        // Storage: the probe alone (prehashed, one flat filter of the window's total size).
        let mut g = c.benchmark_group(format!("storage_1M_0.1pct/{label}"));
        g.throughput(Throughput::Elements(1));
        g.warm_up_time(Duration::from_millis(700));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(50);
        macro_rules! probe {
            ($b:expr, $f:expr) => {{
                let f = $f;
                let mut i = 0usize;
                $b.iter(|| {
                    let h = hs[i].0;
                    i += 1;
                    if i == hs.len() {
                        i = 0;
                    }
                    f(black_box(h))
                })
            }};
        }
        g.bench_function("aligned-blocks", |b| {
            probe!(b, |h: KeyHash| flat.contains(h))
        });
        g.bench_function("aligned-blocks-lut-masks", |b| {
            probe!(b, |h: KeyHash| lut_contains(flat.blocks(), h))
        });
        g.bench_function("bitvec-raw-words", |b| {
            probe!(b, |h: KeyHash| bitvec_words_contains(&bv, nblocks, h))
        });
        g.bench_function("bitvec-bit-index", |b| {
            probe!(b, |h: KeyHash| bitvec_bits_contains(&bv, nblocks, h))
        });
        g.bench_function("xxh3+aligned-blocks", |b| {
            throughput(b, qs, |q: &Query| flat.contains(KeyHash(h64(&q.jti))))
        });
        g.bench_function("xxh3+window-check_hash", |b| {
            throughput(b, qs, |q: &Query| {
                maybe(window.check_hash(KeyHash(h64(&q.jti)), Some(q.exp)))
            })
        });
        g.bench_function("window-check_hash", |b| {
            let mut i = 0usize;
            b.iter(|| {
                let (h, exp) = hs[i];
                i += 1;
                if i == hs.len() {
                    i = 0;
                }
                window.check_hash(black_box(h), Some(exp))
            })
        });
        // The bucket choice alone: a hardware 64-bit divide against the multiply-shift
        // `BucketDivisor` the window and the snapshot reader use for 32-bit `exp`.
        let width = window.config().bucket_width_secs();
        let divisor = revbloom::BucketDivisor::new(width);
        g.bench_function("bucket-div-hardware", |b| {
            let mut i = 0usize;
            b.iter(|| {
                let exp = hs[i].1;
                i += 1;
                if i == hs.len() {
                    i = 0;
                }
                black_box(exp) / black_box(width)
            })
        });
        g.bench_function("bucket-div-multiply-shift", |b| {
            let mut i = 0usize;
            b.iter(|| {
                let exp = hs[i].1;
                i += 1;
                if i == hs.len() {
                    i = 0;
                }
                black_box(divisor).bucket(black_box(exp))
            })
        });
        // ... and one at a time, as a lone request sees it (the divide's latency, not its
        // pipelined throughput).
        g.bench_function("bucket-div-hardware-latency", |b| {
            let mut i = 0usize;
            b.iter(|| {
                let exp = hs[i].1;
                i += 1;
                if i == hs.len() {
                    i = 0;
                }
                let r = black_box(exp) / black_box(width);
                fence();
                r
            })
        });
        g.bench_function("bucket-div-multiply-shift-latency", |b| {
            let mut i = 0usize;
            b.iter(|| {
                let exp = hs[i].1;
                i += 1;
                if i == hs.len() {
                    i = 0;
                }
                let r = black_box(divisor).bucket(black_box(exp));
                fence();
                r
            })
        });
        g.finish();

        // The same two storages cold: every line flushed before each batch of checks, so a
        // block straddling two cache lines (the BitVec's 16-byte-aligned words) costs its
        // second miss here if anywhere.
        let regions_flat = vec![region(flat.blocks())];
        let regions_bv = vec![region(bv.as_raw_slice())];
        let batch = (nblocks as u64 / 16).max(64);
        for (mode, dependent) in [("throughput", false), ("latency", true)] {
            let mut g = c.benchmark_group(format!("storage_cold_1M_0.1pct/{mode}/{label}"));
            g.throughput(Throughput::Elements(1));
            g.warm_up_time(Duration::from_millis(300));
            g.measurement_time(Duration::from_secs(1));
            g.sample_size(15);
            g.bench_function("xxh3+aligned-blocks", |b| {
                b.iter_custom(|iters| {
                    cold_with(
                        thread_cpu,
                        iters,
                        qs,
                        &regions_flat,
                        batch,
                        dependent,
                        |q: &Query| flat.contains(KeyHash(h64(&q.jti))),
                    )
                })
            });
            g.bench_function("xxh3+bitvec-raw-words", |b| {
                b.iter_custom(|iters| {
                    cold_with(
                        thread_cpu,
                        iters,
                        qs,
                        &regions_bv,
                        batch,
                        dependent,
                        |q: &Query| bitvec_words_contains(&bv, nblocks, KeyHash(h64(&q.jti))),
                    )
                })
            });
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(20_000).with_measurement(ThreadCpu::new());
    targets = bench_check
}
criterion_main!(benches);
