//! Shared fixtures of the benches: deterministic keys, query sets, the filters under test,
//! and the measurement loops. Each bench uses part of it, so unused items are allowed here.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::Bencher;
use revbloom::{KeyHash, Verdict, Window, WindowConfig};
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed};

/// 2026-01-01T00:00:00Z: the clock of every bench window.
pub const NOW: u64 = 1_767_225_600;
/// Hash seed shared by every structure, so they all see the same 64-bit hash of a key.
pub const SEED: u64 = 0x5eed_5eed;
/// Token lifetimes spread over the default 24 h horizon.
pub const HORIZON: u64 = 24 * 3600;
/// Queries per query set: enough that a pass over them is not an L1/L2-resident loop.
pub const QUERIES: usize = 1 << 20;
/// Absent keys are drawn from indices at and above this, present keys below it.
const ABSENT_BASE: u64 = 1 << 40;

/// Split-block (Parquet) filter bits per key for a target rate:
/// the smallest whole number of bits per key whose measured rate is at most the target, as
/// `examples/space_report.rs` measures it: 11 bits for 1 %, 17 for 0.1 %, 27 for 0.01 %.
pub fn sbbf_bits_per_key(fp: f64) -> usize {
    if fp >= 0.01 {
        11
    } else if fp >= 0.001 {
        17
    } else {
        27
    }
}

pub fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `jti` of token number `i`: a 36-byte lowercase UUID-like string, as most issuers mint.
pub fn jti(i: u64) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = i ^ 0x0123_4567_89ab_cdef;
    let (a, b) = (splitmix(&mut s), splitmix(&mut s));
    let mut out = [b'-'; 36];
    let mut n = 0;
    for (pos, c) in out.iter_mut().enumerate() {
        if matches!(pos, 8 | 13 | 18 | 23) {
            continue;
        }
        let word = if n < 16 { a } else { b };
        *c = HEX[((word >> (4 * (n % 16))) & 15) as usize];
        n += 1;
    }
    out
}

/// The `exp` of token number `i`: uniform over the 24 h ahead (a minute's margin each side).
pub fn exp_of(i: u64) -> u64 {
    let mut s = i ^ 0xfeed_f00d;
    NOW + 60 + splitmix(&mut s) % (HORIZON - 120)
}

/// One token to check: its `jti` bytes and `exp`, as a verifier has them after decoding.
///
/// Benches pass `q.jti.as_slice()`, a borrowed slice like the `&str` a verifier has, never the
/// array by value: `Window::check(q.jti, ..)` would copy the 36 bytes to the stack, and xxh3's
/// overlapping reads of that fresh copy stall on store-to-load forwarding (measured: ~3x the
/// check's cost), a cost of the bench's calling convention, not of the filter.
#[derive(Clone, Copy)]
pub struct Query {
    pub jti: [u8; 36],
    pub exp: u64,
}

pub fn query(i: u64) -> Query {
    Query {
        jti: jti(i),
        exp: exp_of(i),
    }
}

/// Queries for keys present in a set of `n`: every key once in random order when `n` is at
/// most [`QUERIES`], else [`QUERIES`] keys drawn uniformly from the whole set. Either way the
/// probes land uniformly over the whole filter.
pub fn present_queries(n: u64, seed: u64) -> Vec<Query> {
    indices(n, seed).into_iter().map(query).collect()
}

/// Key indices for a set of `n`: `0..n` shuffled when `n` is at most [`QUERIES`], else
/// [`QUERIES`] draws uniform over the whole set.
pub fn indices(n: u64, seed: u64) -> Vec<u64> {
    let mut s = seed;
    if n as usize <= QUERIES {
        let mut idx: Vec<u64> = (0..n).collect();
        for i in (1..idx.len()).rev() {
            let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
            idx.swap(i, j);
        }
        idx
    } else {
        (0..QUERIES).map(|_| splitmix(&mut s) % n).collect()
    }
}

/// Absent key number `j` of stream `seed`: never inserted by any bench.
pub fn absent_query(seed: u64, j: u64) -> Query {
    query(ABSENT_BASE + (seed << 32) + j)
}

/// Keys never inserted, as many as [`present_queries`] gives for a set of `n` (so present and
/// absent runs stream query arrays of the same size: at 10k entries both stay in L2).
pub fn absent_queries(n: u64, seed: u64) -> Vec<Query> {
    let count = (n as usize).min(QUERIES) as u64;
    (0..count).map(|j| absent_query(seed, j)).collect()
}

/// [`SEED`] as every structure holds it: read at run time. A deployment's seed is data (a
/// snapshot header field, a config value), and xxh3 with a compile-time seed lets the compiler
/// fold the seed into its secret, saving the anchors instructions no real filter saves.
static RUNTIME_SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(SEED);

#[inline(always)]
fn seed() -> u64 {
    RUNTIME_SEED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The 64-bit xxh3 every structure is fed, under the run-time [`SEED`].
#[inline(always)]
pub fn h64(jti: &[u8]) -> u64 {
    xxh3_64_with_seed(jti, seed())
}

/// The hash-set anchor's 128-bit fingerprint (false positives ~ n / 2^128: an exact set).
#[inline(always)]
pub fn h128(jti: &[u8]) -> u128 {
    xxh3_128_with_seed(jti, seed())
}

/// A window over `n` revocations at target `fp`, sized to its content (`fit_to_entries(0.0)`),
/// as a snapshot builder ships it. Inserts prebuilt hashes, so 10M entries take seconds.
pub fn window(n: u64, fp: f64) -> Window {
    let config = WindowConfig::default()
        .expected_per_bucket((n / 24).max(1))
        .fp_rate(fp)
        .max_bytes(1 << 34);
    let mut w = Window::with_seed(config, NOW, SEED).expect("valid bench config");
    for i in 0..n {
        w.insert_hash(KeyHash(h64(&jti(i))), Some(exp_of(i)));
    }
    w.fit_to_entries(0.0);
    w
}

/// The comparison structures, filled with the same `n` keys.
pub struct Anchors {
    pub sbbf: sbbf_rs_safe::Filter,
    pub fast: fastbloom::BloomFilter,
    /// `None` when not requested (it does not depend on the target rate).
    pub fuse: Option<xorf::BinaryFuse8>,
    pub set: Option<hashbrown::HashSet<u128>>,
}

pub fn anchors(n: u64, fp: f64, exact_too: bool) -> Anchors {
    let mut sbbf = sbbf_rs_safe::Filter::new(sbbf_bits_per_key(fp), n as usize);
    let mut fast = fastbloom::BloomFilter::with_false_pos(fp).expected_items(n as usize);
    let mut hashes = Vec::with_capacity(if exact_too { n as usize } else { 0 });
    let mut set = exact_too.then(|| hashbrown::HashSet::with_capacity(n as usize));
    for i in 0..n {
        let k = jti(i);
        let h = h64(&k);
        sbbf.insert_hash(h);
        fast.insert_hash(h);
        if let Some(set) = set.as_mut() {
            set.insert(h128(&k));
            hashes.push(h);
        }
    }
    let fuse = exact_too.then(|| {
        // BinaryFuse8 panics on duplicate keys in debug builds; 64-bit hashes of 10M keys
        // collide with probability ~3e-6, but dedupe anyway.
        hashes.sort_unstable();
        hashes.dedup();
        xorf::BinaryFuse8::try_from(&hashes).expect("fuse filter builds")
    });
    Anchors {
        sbbf,
        fast,
        fuse,
        set,
    }
}

/// Throughput: checks issued back to back over `qs` in order (the order is random over the
/// key set). Independent checks overlap in the CPU's out-of-order window, as a server's
/// request threads' checks would.
#[inline(always)]
pub fn throughput<M: Measurement, T, F: FnMut(&T) -> bool>(
    b: &mut Bencher<'_, M>,
    qs: &[T],
    mut f: F,
) {
    let mut i = 0usize;
    b.iter(|| {
        let q = &qs[i];
        i += 1;
        if i == qs.len() {
            i = 0;
        }
        f(black_box(q))
    })
}

/// Wait until every earlier instruction has completed before starting the next one (x86
/// `lfence`), so the next check cannot overlap this one. A data dependency on the previous
/// answer alone is not enough: where a structure computes its answer with a branch (early
/// exits), branch prediction breaks the chain and checks overlap again.
#[inline(always)]
#[allow(unused_unsafe)]
pub fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: lfence has no memory-safety preconditions; SSE2 is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_lfence()
    };
}

/// Latency: one check at a time, each completing before the next starts ([`fence`], plus the
/// next index depending on the previous answer through a zero the compiler cannot see): the
/// time of one lookup from start to end, as a request that does one check sees it.
#[inline(always)]
pub fn latency<M: Measurement, F: FnMut(&Query) -> bool>(
    b: &mut Bencher<'_, M>,
    qs: &[Query],
    mut f: F,
) {
    let zero = black_box(0usize);
    let mut i = 0usize;
    b.iter(|| {
        let r = f(black_box(&qs[i]));
        fence();
        i += 1 + (usize::from(r) & zero);
        if i >= qs.len() {
            i = 0;
        }
        r
    })
}

/// `Verdict::MaybeRevoked` as a bool for the loops.
#[inline(always)]
pub fn maybe(v: Verdict) -> bool {
    v == Verdict::MaybeRevoked
}

/// `(address, length)` of a slice, for cache flushing in the cold benches.
pub fn region<T>(s: &[T]) -> (usize, usize) {
    (s.as_ptr() as usize, std::mem::size_of_val(s))
}

/// The memory of a window's filter bits, bucket by bucket.
pub fn window_regions(w: &Window) -> Vec<(usize, usize)> {
    w.buckets()
        .map(|(_, bloom, _)| region(bloom.blocks()))
        .collect()
}

/// Measure `f` over `iters` checks taken from `qs`, flushing `regions` from every cache level
/// before each batch of `batch` checks; only the checks are timed. A batch touches at most
/// `batch` of the filter's lines, so nearly every check in it misses all caches.
pub fn cold<F: FnMut(&Query) -> bool>(
    iters: u64,
    qs: &[Query],
    regions: &[(usize, usize)],
    batch: u64,
    dependent: bool,
    f: F,
) -> Duration {
    cold_with(wall_clock, iters, qs, regions, batch, dependent, f)
}

/// [`cold`] timed by `clock` (e.g. [`thread_cpu`]).
pub fn cold_with<F: FnMut(&Query) -> bool>(
    clock: fn() -> Duration,
    iters: u64,
    qs: &[Query],
    regions: &[(usize, usize)],
    batch: u64,
    dependent: bool,
    mut f: F,
) -> Duration {
    let zero = black_box(0usize);
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    let mut i = 0usize;
    while done < iters {
        let k = batch.min(iters - done);
        flush(regions);
        let t = clock();
        for _ in 0..k {
            let r = f(black_box(&qs[i]));
            if dependent {
                fence();
                i += usize::from(r) & zero;
            }
            i += 1;
            if i >= qs.len() {
                i = 0;
            }
            black_box(r);
        }
        total += clock().saturating_sub(t);
        done += k;
    }
    total
}

/// Evict every cache line of the given `(address, length)` ranges from all cache levels.
#[cfg(target_arch = "x86_64")]
pub fn flush(regions: &[(usize, usize)]) {
    use std::arch::x86_64::{_mm_clflush, _mm_mfence};
    for &(start, len) in regions {
        let mut p = start & !63;
        while p < start + len {
            // SAFETY: `p` lies within (or on the cache line of) a live allocation the caller
            // borrows for the whole measurement; clflush only writes back and invalidates.
            unsafe { _mm_clflush(p as *const u8) };
            p += 64;
        }
    }
    // SAFETY: a fence has no memory-safety preconditions.
    unsafe { _mm_mfence() };
}

/// Without clflush, evict by streaming through a buffer three times the largest L3 we expect.
#[cfg(not(target_arch = "x86_64"))]
pub fn flush(_regions: &[(usize, usize)]) {
    use std::sync::OnceLock;
    static BUF: OnceLock<Vec<u64>> = OnceLock::new();
    let buf = BUF.get_or_init(|| vec![1u64; 96 << 20]);
    black_box(buf.iter().step_by(8).fold(0u64, |a, &x| a.wrapping_add(x)));
}

/// Wall time since the first call, as a [`Duration`] clock for [`cold_with`].
pub fn wall_clock() -> Duration {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

/// CPU time the calling thread has run (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, nanosecond
/// resolution on Linux); wall time where that clock fails.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return wall_clock();
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion measurement by the benchmark thread's CPU time ([`thread_cpu`]) instead of wall
/// time. On a shared machine, wall time also counts the slices the scheduler gives other
/// processes while the loop is runnable; CPU time counts only the loop's own (cache and
/// frequency effects of neighbours remain). Equal to wall time on an idle machine.
pub struct ThreadCpu(WallTime);

impl ThreadCpu {
    pub fn new() -> Self {
        Self(WallTime)
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

/// A variant for [`rounds`]: its name and one lookup per call (it keeps its own cursor).
pub type Variant<'a> = (String, Box<dyn FnMut() -> bool + 'a>);

/// A cursor cycling over `keys`, calling `f` on the next one.
pub fn cycle<'a, T, F: Fn(&T) -> bool + 'a>(keys: &'a [T], f: F) -> Box<dyn FnMut() -> bool + 'a> {
    cycle_from(keys, 0, f)
}

/// [`cycle`] starting at `keys[start % len]`.
pub fn cycle_from<'a, T, F: Fn(&T) -> bool + 'a>(
    keys: &'a [T],
    start: usize,
    f: F,
) -> Box<dyn FnMut() -> bool + 'a> {
    let mut i = start % keys.len().max(1);
    Box::new(move || {
        let k = &keys[i];
        i += 1;
        if i == keys.len() {
            i = 0;
        }
        f(black_box(k))
    })
}

/// This machine's two cores are shared, so wall time per lookup swings with other work. Here
/// the variants take turns in short rounds (4,096 lookups, tens of microseconds: most rounds
/// run within one scheduler slice), many times over; printed per variant are the 10th
/// percentile and the median of the rounds' ns per lookup (each includes one dynamic call,
/// the same for every variant). The 10th percentile is the cost on
/// a core of one's own; the median includes the machine's load as criterion's figures do.
///
/// Variants that look up the same keys in the same structure must not walk them in lockstep:
/// the first of them in a round would load the cache lines the others then find warm. Start
/// such variants apart with [`cycle_from`].
pub fn rounds(title: &str, variants: &mut [Variant<'_>]) {
    const PER_ROUND: u32 = 4096;
    const ROUNDS: usize = 600;
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); variants.len()];
    for r in 0..ROUNDS {
        for j in 0..variants.len() {
            // Rotate the order so no variant always runs right after the same other one.
            let v = (j + r) % variants.len();
            let f = &mut variants[v].1;
            let start = std::time::Instant::now();
            for _ in 0..PER_ROUND {
                black_box(f());
            }
            times[v].push(start.elapsed().as_nanos() as f64 / f64::from(PER_ROUND));
        }
    }
    println!("rounds {title}: ns per lookup, p10 / median of {ROUNDS} rounds of {PER_ROUND}");
    for (v, t) in variants.iter().zip(&mut times) {
        t.sort_by(f64::total_cmp);
        println!(
            "  {:<44} {:>8.2} / {:>8.2}",
            v.0,
            t[ROUNDS / 10],
            t[ROUNDS / 2]
        );
    }
}
