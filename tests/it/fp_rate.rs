//! Statistical check of the false-positive rate and the space it costs.
//!
//! N keys go into one bucket; 1M keys never inserted are checked. The measured rate must be at
//! most 1.1x the target, both for a bucket sized by configuration and for one fitted to its
//! entries (what a snapshot ships). Heavy in debug builds: `.ci/run` runs it with `--release`.

use crate::support::NOW;
use std::time::Duration;

use revbloom::{Verdict, Window, WindowConfig};

const EXP: u64 = NOW + 1800;
const PROBES: u64 = 1_000_000;

fn key(i: u64, absent: bool) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = u8::from(absent);
    k[1..].copy_from_slice(&i.to_le_bytes());
    k
}

fn measured_rate(w: &Window) -> f64 {
    let mut fp = 0u64;
    for i in 0..PROBES {
        if w.check(key(i, true), Some(EXP)) == Verdict::MaybeRevoked {
            fp += 1;
        }
    }
    fp as f64 / PROBES as f64
}

fn run(target: f64, n: u64, seed: u64) -> (f64, f64, f64) {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(24 * 3600))
        .expected_per_bucket(n)
        .fp_rate(target);
    let mut w = Window::with_seed(config, NOW, seed).expect("valid config");
    for i in 0..n {
        w.insert(key(i, false), Some(EXP));
    }
    for i in (0..n).step_by(97) {
        assert_eq!(w.check(key(i, false), Some(EXP)), Verdict::MaybeRevoked);
    }
    let configured = measured_rate(&w);
    w.fit_to_entries(0.0);
    let fitted = measured_rate(&w);
    let bits = w.bits_per_entry().expect("entries");
    (configured, fitted, bits)
}

#[test]
fn measured_false_positive_rate_meets_target() {
    for (target, ns) in [
        (0.01, &[10_000u64, 100_000, 1_000_000][..]),
        (0.001, &[10_000u64, 100_000, 1_000_000][..]),
    ] {
        for &n in ns {
            let (configured, fitted, bits) = run(target, n, n ^ 0x5eed);
            println!(
                "target {target}: n {n}: configured {configured:.5}, fitted {fitted:.5}, {bits:.2} bits/entry"
            );
            assert!(
                configured <= 1.1 * target,
                "n {n}: {configured} > 1.1 x {target}"
            );
            assert!(fitted <= 1.1 * target, "n {n}: {fitted} > 1.1 x {target}");
            if target == 0.001 {
                assert!(bits <= 16.0, "n {n}: {bits} bits per entry");
            }
        }
    }
}
