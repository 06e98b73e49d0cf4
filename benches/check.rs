//! Check throughput at 1M revocations and 0.1 % target, side by side with the anchors.
//!
//! `cargo bench --bench check`
//!
//! Every structure hashes the same 36-byte UUID-like `jti` with xxh3 (the hash-set anchor keeps
//! a 128-bit xxh3 fingerprint). Keys are looked up in a fixed random order over the whole key
//! set, present and absent keys separately, so the figures measure the filter, not the L1 cache.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use revbloom::{Verdict, Window, WindowConfig};
use xorf::Filter as _;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64_with_seed};

const N: usize = 1_000_000;
const NOW: u64 = 1_767_225_600;
const SEED: u64 = 0x5eed_5eed;

struct Query {
    jti: [u8; 36],
    exp: u64,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uuid_like(state: &mut u64) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (a, b) = (splitmix(state), splitmix(state));
    let mut out = [b'-'; 36];
    let mut nibbles = (0..16)
        .map(|i| (a >> (4 * i)) & 15)
        .chain((0..16).map(|i| (b >> (4 * i)) & 15));
    for (i, c) in out.iter_mut().enumerate() {
        if ![8, 13, 18, 23].contains(&i) {
            *c = HEX[nibbles.next().unwrap_or(0) as usize];
        }
    }
    out
}

fn queries(n: usize, state: &mut u64) -> Vec<Query> {
    (0..n)
        .map(|_| Query {
            jti: uuid_like(state),
            exp: NOW + 60 + splitmix(state) % (24 * 3600 - 120),
        })
        .collect()
}

fn shuffled(mut v: Vec<Query>, state: &mut u64) -> Vec<Query> {
    for i in (1..v.len()).rev() {
        let j = (splitmix(state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn bench_check(c: &mut Criterion) {
    let mut state = 7u64;
    let present = queries(N, &mut state);
    let absent = queries(N, &mut state);

    let config = WindowConfig::default()
        .expected_per_bucket((N / 24) as u64)
        .fp_rate(0.001);
    let mut window = Window::with_seed(config, NOW, SEED).expect("valid config");
    let mut sbbf = sbbf_rs_safe::Filter::new(16, N);
    let mut fast = fastbloom::BloomFilter::with_false_pos(0.001).expected_items(N);
    let mut set: hashbrown::HashSet<u128> = hashbrown::HashSet::with_capacity(N);
    let mut hashes = Vec::with_capacity(N);
    for q in &present {
        window.insert(q.jti, Some(q.exp));
        let h = xxh3_64_with_seed(&q.jti, SEED);
        sbbf.insert_hash(h);
        fast.insert_hash(h);
        set.insert(xxh3_128(&q.jti));
        hashes.push(h);
    }
    window.fit_to_entries(0.0);
    let fuse = xorf::BinaryFuse8::try_from(&hashes).expect("fuse filter builds");

    let present = shuffled(present, &mut state);
    let absent = shuffled(absent, &mut state);
    let fp = absent
        .iter()
        .filter(|q| window.check(q.jti, Some(q.exp)) == Verdict::MaybeRevoked)
        .count();
    eprintln!(
        "revbloom: {:.2} bits/entry, measured fp {:.4} %",
        window.bits_per_entry().unwrap_or(0.0),
        100.0 * fp as f64 / N as f64
    );

    for (label, qs) in [("present", &present), ("absent", &absent)] {
        let mut g = c.benchmark_group(format!("check_1M_0.1pct/{label}"));
        g.throughput(Throughput::Elements(1));
        g.measurement_time(Duration::from_secs(3));
        let mut i = 0usize;
        g.bench_function("revbloom", |b| {
            b.iter(|| {
                let q = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(window.check(black_box(&q.jti), Some(q.exp)))
            })
        });
        g.bench_function("sbbf-rs-safe", |b| {
            b.iter(|| {
                let q = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(sbbf.contains_hash(xxh3_64_with_seed(black_box(&q.jti), SEED)))
            })
        });
        g.bench_function("fastbloom", |b| {
            b.iter(|| {
                let q = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(fast.contains_hash(xxh3_64_with_seed(black_box(&q.jti), SEED)))
            })
        });
        g.bench_function("xorf-BinaryFuse8", |b| {
            b.iter(|| {
                let q = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(fuse.contains(&xxh3_64_with_seed(black_box(&q.jti), SEED)))
            })
        });
        g.bench_function("hashbrown-fingerprint-set", |b| {
            b.iter(|| {
                let q = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(set.contains(&xxh3_128(black_box(&q.jti))))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
