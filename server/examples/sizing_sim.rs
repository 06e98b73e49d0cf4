//! What the publisher's bucket sizing ships: bits per revocation of its full snapshots, and how
//! often verifiers must fetch one, for an inflow of revocations.
//!
//! ```text
//! cargo run --release -p revbloom-server --example sizing_sim
//! ```
//!
//! A simulated clock drives the publisher's own sizing ([`revbloom_server::sizing`]) over a
//! default window (1 h buckets, 24 h horizon, 0.1 %): revocations arrive at a `steady` rate; at
//! a `daily` one that swings ±50 % over a day (the reported hours are its steepest climb); or
//! at a steady rate whose shape changes (`shift`: from the first reported hour on, half the
//! revoked tokens are 1–2 h tokens of a new client, their `exp` 1–2 h ahead); a
//! generation is published every second, and every layout change (a rotation, a bucket
//! outgrowing its room) makes a full snapshot that refits the buckets, as `revbloom serve`
//! does. Two shapes of `exp` are simulated: `uniform` (a revoked token's `exp` anywhere in the
//! next 24 h) and `recent` (tokens revoked soon after issue: `exp` about 24 h ahead, an
//! exponential 2 h earlier on average). After 30 simulated hours (the ring in steady state)
//! it reports, over the last 6 hours: revocations held, bits per revocation of the full
//! snapshots (mean and worst), full snapshots per hour and their megabytes per hour (what
//! each verifier fetches besides deltas), and the same without the sizing (every bucket refit
//! to its entries + 25 %, the flat rule).

use revbloom::cutoff::CutoffSet;
use revbloom::snapshot::{encode_to_vec, SnapshotMeta};
use revbloom::{Window, WindowConfig};
use revbloom_server::sizing::{self, Inflow};

/// A bucket boundary (a multiple of 3600).
const START: u64 = 1_800_000_000;
const HOURS: u64 = 30;
const REPORT_HOURS: u64 = 6;

/// A small deterministic generator (splitmix64): the simulation is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Uniform,
    Recent,
}

#[derive(Clone, Copy, PartialEq)]
enum Rate {
    Steady,
    Daily,
    Shift,
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Inflow,
    Flat25,
}

struct Outcome {
    held: u64,
    mean_bits: f64,
    worst_bits: f64,
    full_per_hour: f64,
    /// Bytes of full snapshots a verifier fetches per hour, in MB.
    full_mb_per_hour: f64,
}

fn simulate(per_hour: u64, shape: Shape, rate: Rate, policy: Policy) -> Outcome {
    let config = WindowConfig::default().expected_per_bucket(1);
    let mut window = Window::with_seed(config, START, 42).expect("default window");
    let mut inflow = Inflow::new(&window, START);
    let mut rng = Rng(per_hour ^ 0x5eed);
    let horizon: u64 = 24 * 3600;
    let mut meta = SnapshotMeta::first(START);
    let mut fulls = 0u64;
    let mut bits = Vec::new();
    let mut full_bytes = 0u64;
    let refit = |w: &mut Window, inflow: &mut Inflow, now: u64| match policy {
        Policy::Inflow => sizing::refit(w, inflow, now, 0),
        Policy::Flat25 => w.refit(0.25, 0),
    };
    refit(&mut window, &mut inflow, START);
    window.enable_journal();
    let mut carry = 0.0;
    let mut key = 0u64;
    for now in START..START + HOURS * 3600 {
        // Poisson-ish arrivals: the mean rate, with the fractional part carried over.
        // `daily`: the rate swings ±50 % over a day; the reported hours (24–30) are its
        // steepest climb, from the mean to 1.5 × the mean.
        let swing = if rate == Rate::Daily {
            1.0 + 0.5 * (std::f64::consts::TAU * (now - START) as f64 / 86_400.0).sin()
        } else {
            1.0
        };
        carry += per_hour as f64 * swing / 3600.0;
        let n = carry as u64;
        carry -= n as f64;
        let shifted = rate == Rate::Shift && now >= START + (HOURS - REPORT_HOURS) * 3600;
        for _ in 0..n {
            let ahead = match shape {
                _ if shifted && rng.unit() < 0.5 => 3600 + (rng.unit() * 3600.0) as u64,
                Shape::Uniform => 60 + (rng.unit() * (horizon - 120) as f64) as u64,
                Shape::Recent => {
                    let age = (-(1.0 - rng.unit()).ln() * 7200.0) as u64;
                    horizon.saturating_sub(age).max(60)
                }
            };
            let exp = now + ahead;
            key += 1;
            window.insert(key.to_le_bytes(), Some(exp));
            inflow.record(now, Some(exp), 1);
        }
        window.advance(now);
        let journal = window.take_journal();
        if journal.layout_changed {
            refit(&mut window, &mut inflow, now);
            let _ = window.take_journal();
            meta = meta.next(now);
            if now >= START + (HOURS - REPORT_HOURS) * 3600 {
                fulls += 1;
                let size = encode_to_vec(&window, &CutoffSet::new(), &meta, None)
                    .map_or(0, |b| b.len() as u64);
                bits.push(size as f64 * 8.0 / window.entries().max(1) as f64);
                full_bytes += size;
            }
        }
    }
    Outcome {
        held: window.entries(),
        mean_bits: bits.iter().sum::<f64>() / bits.len().max(1) as f64,
        worst_bits: bits.iter().copied().fold(0.0, f64::max),
        full_per_hour: fulls as f64 / REPORT_HOURS as f64,
        full_mb_per_hour: full_bytes as f64 / 1e6 / REPORT_HOURS as f64,
    }
}

fn main() {
    if let Some(arg) = std::env::args().nth(1) {
        let usage = "usage: sizing_sim (no options; see the top of server/examples/sizing_sim.rs)";
        if arg == "--help" || arg == "-h" {
            println!("{usage}");
            return;
        }
        eprintln!("sizing_sim: unexpected argument {arg:?}\n{usage}");
        std::process::exit(2);
    }
    println!(
        "{:>9} {:>8} {:>7} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "per hour",
        "exp",
        "rate",
        "held",
        "bits mean",
        "bits worst",
        "full/h",
        "MB/h",
        "flat bits",
        "flat f/h",
        "flat MB/h"
    );
    for (per_hour, shape, rate) in [
        (1_000, Shape::Uniform, Rate::Steady),
        (10_000, Shape::Uniform, Rate::Steady),
        (83_000, Shape::Uniform, Rate::Steady),
        (100_000, Shape::Uniform, Rate::Steady),
        (1_000, Shape::Recent, Rate::Steady),
        (10_000, Shape::Recent, Rate::Steady),
        (43_000, Shape::Recent, Rate::Steady),
        (100_000, Shape::Recent, Rate::Steady),
        (83_000, Shape::Uniform, Rate::Daily),
        (43_000, Shape::Recent, Rate::Daily),
        (83_000, Shape::Uniform, Rate::Shift),
        (43_000, Shape::Recent, Rate::Shift),
    ] {
        let ours = simulate(per_hour, shape, rate, Policy::Inflow);
        let flat = simulate(per_hour, shape, rate, Policy::Flat25);
        println!(
            "{:>9} {:>8} {:>7} {:>10} {:>10.2} {:>10.2} {:>9.2} {:>9.2} {:>10.2} {:>9.2} {:>9.2}",
            per_hour,
            if shape == Shape::Uniform {
                "uniform"
            } else {
                "recent"
            },
            match rate {
                Rate::Steady => "steady",
                Rate::Daily => "daily",
                Rate::Shift => "shift",
            },
            ours.held,
            ours.mean_bits,
            ours.worst_bits,
            ours.full_per_hour,
            ours.full_mb_per_hour,
            flat.mean_bits,
            flat.full_per_hour,
            flat.full_mb_per_hour
        );
    }
}
