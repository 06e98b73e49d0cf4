//! Snapshot costs at 1M revocations and 0.1 %: opening (with and without the checksum, with
//! the signature), applying a 1,000-revocation delta, and `SnapshotView::check` next to
//! `Window::check` in one group. Sealed files: sealing (publisher), unsealing and opening
//! (verifier), and the check on a view opened from a sealed file next to a plain one.
//!
//! `cargo bench --bench snapshot`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use revbloom::delta::{encode_delta, DeltaView};
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::{CutoffSet, Verdict, Window, WindowConfig};

const N: usize = 1_000_000;
const DELTA: usize = 1_000;
const NOW: u64 = 1_767_225_600;
const SEED: u64 = 0x5eed_5eed;

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 36-byte UUID-like jti and an exp spread over the next 24 hours.
fn query(state: &mut u64) -> ([u8; 36], u64) {
    let mut jti = [b'-'; 36];
    let (a, b) = (splitmix(state), splitmix(state));
    for (i, c) in jti.iter_mut().enumerate() {
        let nib = if i < 16 {
            a >> (4 * i)
        } else {
            b >> (4 * (i - 16))
        } & 15;
        if ![8, 13, 18, 23].contains(&i) {
            *c = b"0123456789abcdef"[nib as usize];
        }
    }
    (jti, NOW + 60 + splitmix(state) % (24 * 3600 - 120))
}

fn bench_snapshot(c: &mut Criterion) {
    let mut state = 11u64;
    let present: Vec<_> = (0..N).map(|_| query(&mut state)).collect();
    let absent: Vec<_> = (0..N).map(|_| query(&mut state)).collect();
    let config = WindowConfig::default()
        .expected_per_bucket((N / 24) as u64)
        .fp_rate(0.001);
    let mut window = Window::with_seed(config, NOW, SEED).expect("valid config");
    for (jti, exp) in &present {
        window.insert(jti, Some(*exp));
    }
    // 1 % headroom, so the 1,000 revocations of the delta fit without a resize.
    window.fit_to_entries(0.01);
    window.enable_journal();
    let meta = SnapshotMeta::first(NOW);
    let cutoffs = CutoffSet::new();
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let unsigned = snapshot::encode_to_vec(&window, &cutoffs, &meta, None).expect("encode");
    let signed = snapshot::encode_to_vec(&window, &cutoffs, &meta, Some(&key)).expect("encode");
    window.take_journal();
    for _ in 0..DELTA {
        let (jti, exp) = query(&mut state);
        window.insert(jti, Some(exp));
    }
    let journal = window.take_journal();
    assert!(!journal.layout_changed, "delta bench needs headroom");
    let mut delta = Vec::new();
    encode_delta(
        &window,
        &journal,
        &[],
        &meta.next(NOW + 1),
        None,
        &mut delta,
    )
    .expect("delta");
    eprintln!(
        "snapshot: {} bytes for {N} entries ({:.2} bits/entry); delta: {} bytes for {} revocations ({:.1} bytes each)",
        unsigned.len(),
        unsigned.len() as f64 * 8.0 / N as f64,
        delta.len(),
        journal.entries.len(),
        delta.len() as f64 / journal.entries.len() as f64
    );

    let mut g = c.benchmark_group("snapshot_open_1M");
    g.throughput(Throughput::Bytes(unsigned.len() as u64));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("checksum", |b| {
        b.iter(|| {
            SnapshotView::open(black_box(&unsigned[..]), &OpenOptions::new())
                .map(|v| v.generation())
        })
    });
    let unchecked = OpenOptions::new().verify_checksum(false);
    g.bench_function("no_checksum", |b| {
        b.iter(|| SnapshotView::open(black_box(&unsigned[..]), &unchecked).map(|v| v.generation()))
    });
    let verify = OpenOptions::new().verifying_key(key.verifying_key());
    g.bench_function("checksum_and_signature", |b| {
        b.iter(|| SnapshotView::open(black_box(&signed[..]), &verify).map(|v| v.generation()))
    });
    // What a verifier of a default (sealing) publisher does per snapshot: unseal into a new
    // buffer, then validate checksum and signature.
    let seal_key = snapshot::SealKey::from_bytes([5u8; 32]);
    let sealed = snapshot::seal(&seal_key, &signed).expect("seal");
    let verify_sealed = verify.clone().seal_key(seal_key.clone());
    g.bench_function("unseal_checksum_and_signature", |b| {
        b.iter(|| {
            SnapshotView::open_owned(black_box(sealed.clone()), &verify_sealed)
                .map(|v| v.generation())
        })
    });
    g.bench_function("unseal_only", |b| {
        b.iter(|| snapshot::unseal(black_box(&sealed), std::slice::from_ref(&seal_key)))
    });
    // The `sealed.clone()` above is part of what a verifier pays for an owned buffer from the
    // network anyway; measured alone so it can be told apart.
    g.bench_function("copy_only", |b| b.iter(|| black_box(&sealed).clone()));
    g.bench_function("seal_only", |b| {
        b.iter(|| snapshot::seal(&seal_key, black_box(&signed)))
    });
    g.finish();

    let base = SnapshotView::open(&unsigned[..], &OpenOptions::new()).expect("open");
    let d = DeltaView::open(&delta, &OpenOptions::new()).expect("delta opens");
    let mut g = c.benchmark_group("delta_apply_1M");
    g.throughput(Throughput::Elements(DELTA as u64));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("open_and_apply_1000", |b| {
        b.iter(|| {
            let d = DeltaView::open(black_box(&delta), &OpenOptions::new()).expect("delta");
            base.apply_delta(&d).map(|v| v.generation())
        })
    });
    g.bench_function("apply_1000", |b| {
        b.iter(|| base.apply_delta(black_box(&d)).map(|v| v.generation()))
    });
    g.finish();

    let view = SnapshotView::open(&signed[..], &verify).expect("open");
    let unsealed_view = SnapshotView::open_owned(sealed.clone(), &verify_sealed).expect("open");
    assert_eq!(unsealed_view.as_bytes(), &signed[..]);
    // Random order over the whole key set, read sequentially: shuffling the queries
    // themselves (not an index array) keeps the query stream out of the measurement.
    let shuffle = |v: &[([u8; 36], u64)], state: &mut u64| {
        let mut v = v.to_vec();
        for i in (1..v.len()).rev() {
            v.swap(i, (splitmix(state) % (i as u64 + 1)) as usize);
        }
        v
    };
    let present_shuffled = shuffle(&present, &mut state);
    let absent_shuffled = shuffle(&absent, &mut state);
    for (label, qs) in [("present", &present_shuffled), ("absent", &absent_shuffled)] {
        let mut g = c.benchmark_group(format!("snapshot_check_1M/{label}"));
        g.throughput(Throughput::Elements(1));
        g.measurement_time(Duration::from_secs(3));
        let mut i = 0usize;
        g.bench_function("SnapshotView::check", |b| {
            b.iter(|| {
                let (jti, exp) = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(view.check(black_box(jti), Some(*exp)))
            })
        });
        g.bench_function("SnapshotView::check (from a sealed file)", |b| {
            b.iter(|| {
                let (jti, exp) = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(unsealed_view.check(black_box(jti), Some(*exp)))
            })
        });
        g.bench_function("Window::check", |b| {
            b.iter(|| {
                let (jti, exp) = &qs[i];
                i = if i + 1 == N { 0 } else { i + 1 };
                black_box(window.check(black_box(jti), Some(*exp)))
            })
        });
        g.finish();
    }
    // The two must agree on every key, not only be equally fast.
    let disagree = absent
        .iter()
        .filter(|(jti, exp)| view.check(jti, Some(*exp)) != window.check(jti, Some(*exp)))
        .count();
    let fp = absent
        .iter()
        .filter(|(jti, exp)| view.check(jti, Some(*exp)) == Verdict::MaybeRevoked)
        .count();
    eprintln!(
        "view vs window disagreements: {disagree} (the window has the delta's 1,000 more); measured fp {:.4} %",
        100.0 * fp as f64 / N as f64
    );
}

criterion_group!(benches, bench_snapshot);
criterion_main!(benches);
