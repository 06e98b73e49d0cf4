//! How check cost grows with the number of revocations, warm and cold.
//!
//! `cargo bench --bench scaling` (about 6 minutes on 2 cores; `-- --quick` about 4).
//!
//! - `scaling/<fp>/throughput/present|absent`, ids `<structure>/<entries>`: 10k, 100k, 1M and
//!   10M entries at 1 % and 0.1 %, keys in random order over the whole key set (see
//!   `common::present_queries`). At 1 % only revbloom and the split-block filter run (the
//!   other anchors run at 0.1 %; xorf and the exact set do not depend on the target).
//!   `scaling/0.1pct/latency/absent`: one lookup at a time (see `common::latency`).
//! - `scaling_cold/0.1pct/...` (10M entries): every cache line of the structure under test is flushed from
//!   every cache level (`clflush`) before each batch of checks, and only the checks are timed;
//!   a batch touches at most 1/16 of the structure's lines, so nearly every check misses to
//!   DRAM. Why not a working set larger than L3: the 260 MB L3 would need several GB of filters
//!   on a shared 24 GB machine; touching a buffer larger than L3 between samples costs tens of
//!   milliseconds per batch and, with a non-inclusive L3, does not guarantee eviction. clflush
//!   evicts exactly the lines that matter, for microseconds to milliseconds per batch. The hash
//!   set is left out here (its table memory is not exposed).

mod common;

use std::time::Duration;

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use revbloom::Window;
use xorf::Filter as _;

const SIZES: [u64; 4] = [10_000, 100_000, 1_000_000, 10_000_000];

struct Built {
    n: u64,
    window: Window,
    a: Anchors,
    present: Vec<Query>,
    absent: Vec<Query>,
}

fn label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n => format!("{}k", n / 1_000),
    }
}

fn build(fp: f64) -> Vec<Built> {
    SIZES
        .iter()
        .map(|&n| Built {
            n,
            window: window(n, fp),
            a: anchors(n, fp, fp <= 0.001),
            present: present_queries(n, n ^ 11),
            absent: absent_queries(n, 3),
        })
        .collect()
}

fn bench_warm(c: &mut Criterion) {
    for (fp, fp_label) in [(0.01, "1pct"), (0.001, "0.1pct")] {
        let built = build(fp);
        let runs: &[(&str, bool, &str)] = if fp <= 0.001 {
            &[
                ("throughput", false, "present"),
                ("throughput", false, "absent"),
                ("latency", true, "absent"),
            ]
        } else {
            &[
                ("throughput", false, "present"),
                ("throughput", false, "absent"),
            ]
        };
        for &(mode, dependent, pa) in runs {
            {
                let mut g = c.benchmark_group(format!("scaling/{fp_label}/{mode}/{pa}"));
                g.throughput(Throughput::Elements(1));
                g.warm_up_time(Duration::from_millis(300));
                g.measurement_time(Duration::from_millis(1200));
                g.sample_size(20);
                macro_rules! run {
                    ($name:expr, $bt:expr, $f:expr) => {{
                        let qs = if pa == "present" {
                            &$bt.present
                        } else {
                            &$bt.absent
                        };
                        g.bench_with_input(BenchmarkId::new($name, label($bt.n)), qs, |b, qs| {
                            if dependent {
                                latency(b, qs, $f)
                            } else {
                                throughput(b, qs, $f)
                            }
                        });
                    }};
                }
                for bt in &built {
                    run!("revbloom", bt, |q: &Query| maybe(
                        bt.window.check(q.jti.as_slice(), Some(q.exp))
                    ));
                    run!("sbbf-rs-safe", bt, |q: &Query| bt
                        .a
                        .sbbf
                        .contains_hash(h64(&q.jti)));
                    if let (Some(fuse), Some(set)) = (&bt.a.fuse, &bt.a.set) {
                        run!("fastbloom", bt, |q: &Query| bt
                            .a
                            .fast
                            .contains_hash(h64(&q.jti)));
                        run!("xorf-BinaryFuse8", bt, |q: &Query| fuse
                            .contains(&h64(&q.jti)));
                        run!("hashbrown-fingerprint-set", bt, |q: &Query| set
                            .contains(&h128(&q.jti)));
                    }
                }
                g.finish();
            }
        }
    }
}

fn bench_cold(c: &mut Criterion) {
    {
        let n = 10_000_000u64;
        let bt = Built {
            n,
            window: window(n, 0.001),
            a: anchors(n, 0.001, true),
            present: present_queries(n, n ^ 12),
            absent: absent_queries(n, 4),
        };
        let fuse = bt.a.fuse.as_ref().expect("built");
        for (mode, dependent) in [("throughput", false), ("latency", true)] {
            for pa in ["present", "absent"] {
                let qs = if pa == "present" {
                    &bt.present
                } else {
                    &bt.absent
                };
                let mut g = c.benchmark_group(format!("scaling_cold/0.1pct/{mode}/{pa}"));
                g.throughput(Throughput::Elements(1));
                g.warm_up_time(Duration::from_millis(300));
                g.measurement_time(Duration::from_secs(1));
                g.sample_size(15);
                macro_rules! run {
                    ($name:expr, $regions:expr, $f:expr) => {{
                        let regions: Vec<(usize, usize)> = $regions;
                        let lines: usize = regions.iter().map(|r| r.1 / 64).sum();
                        let batch = (lines as u64 / 16).max(64);
                        g.bench_function(BenchmarkId::new($name, label(n)), |b| {
                            b.iter_custom(|iters| cold(iters, qs, &regions, batch, dependent, $f))
                        });
                    }};
                }
                run!("revbloom", window_regions(&bt.window), |q: &Query| maybe(
                    bt.window.check(q.jti.as_slice(), Some(q.exp))
                ));
                run!(
                    "sbbf-rs-safe",
                    vec![region(bt.a.sbbf.as_bytes())],
                    |q: &Query| bt.a.sbbf.contains_hash(h64(&q.jti))
                );
                run!(
                    "fastbloom",
                    vec![region(bt.a.fast.as_slice())],
                    |q: &Query| bt.a.fast.contains_hash(h64(&q.jti))
                );
                run!(
                    "xorf-BinaryFuse8",
                    vec![region(&fuse.fingerprints[..])],
                    |q: &Query| fuse.contains(&h64(&q.jti))
                );
                g.finish();
            }
        }
    }
}

criterion_group! {
    name = benches;
    // 20k bootstrap resamples instead of 100k: the medians do not move, the analysis of ~90
    // benchmarks gets minutes shorter.
    config = Criterion::default().nresamples(20_000);
    targets = bench_warm, bench_cold
}
criterion_main!(benches);
