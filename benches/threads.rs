//! Check throughput with 1 and 2 threads sharing one read-only window.
//!
//! `cargo bench --bench threads`
//!
//! One criterion iteration = every thread doing a fixed batch of checks over its own part of
//! a random query order; the time is the wall time from releasing all threads at a barrier to
//! the last one finishing (spawning is outside the timed span). Throughput is set to
//! `threads x batch` elements, so criterion's elements/s compare directly: scaling ratio =
//! (2-thread elements/s) / (1-thread elements/s) = 2 x t1 / t2.

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use revbloom::Window;

const N: u64 = 1_000_000;
const BATCH: usize = 1 << 16;

fn run(window: &Window, qs: &[Query], threads: usize, iters: u64) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let start = std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                let mut i = t * qs.len() / threads;
                let mut hits = 0u64;
                barrier.wait();
                for _ in 0..iters {
                    for _ in 0..BATCH {
                        let q = black_box(&qs[i]);
                        hits += u64::from(maybe(window.check(q.jti.as_slice(), Some(q.exp))));
                        i += 1;
                        if i == qs.len() {
                            i = 0;
                        }
                    }
                }
                black_box(hits);
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

fn bench_threads(c: &mut Criterion) {
    let window = window(N, 0.001);
    let present = present_queries(N, 21);
    let absent = absent_queries(N, 22);
    for (pa, qs) in [("present", &present), ("absent", &absent)] {
        let mut g = c.benchmark_group(format!("threads_1M_0.1pct/{pa}"));
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        g.sample_size(20);
        for threads in [1usize, 2] {
            g.throughput(Throughput::Elements((threads * BATCH) as u64));
            g.bench_function(BenchmarkId::new("revbloom", threads), |b| {
                b.iter_custom(|iters| run(&window, qs, threads, iters))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(20_000);
    targets = bench_threads
}
criterion_main!(benches);
