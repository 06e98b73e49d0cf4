//! Fill a window with a million revocations, check a million tokens, print what happened.
//!
//! `cargo run --release --example quickstart`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use revbloom::{Verdict, Window, WindowConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No options: `--help` says what the example does, anything else is a usage error.
    if let Some(arg) = std::env::args().nth(1) {
        let usage = "usage: quickstart (no options; see the top of examples/quickstart.rs)";
        if arg == "--help" || arg == "-h" {
            println!("{usage}");
            return Ok(());
        }
        eprintln!("quickstart: unexpected argument {arg:?}\n{usage}");
        std::process::exit(2);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let revoked = 1_000_000u64;
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(24 * 3600))
        // Each hour bucket gets about revoked / 24; 10 % headroom keeps it from doubling.
        .expected_per_bucket(revoked / 24 * 11 / 10)
        .fp_rate(0.001);
    let mut window = Window::new(config, now)?;

    // Revoked tokens expire uniformly over the next 24 hours.
    let exp_of = |i: u64| now + 60 + (i.wrapping_mul(2_654_435_761) % (24 * 3600 - 120));
    let t = Instant::now();
    for i in 0..revoked {
        window.insert(format!("revoked-{i}"), Some(exp_of(i)));
    }
    let insert_time = t.elapsed();

    // Half the checked tokens are revoked ones, half are good tokens never revoked.
    let checks = 1_000_000u64;
    let queries: Vec<(String, u64)> = (0..checks)
        .map(|i| {
            if i % 2 == 0 {
                (format!("revoked-{}", i / 2), exp_of(i / 2))
            } else {
                (format!("good-{i}"), exp_of(i))
            }
        })
        .collect();
    let mut counts = [0u64; 3];
    let (mut missed, mut false_positives) = (0u64, 0u64);
    let t = Instant::now();
    for (i, (jti, exp)) in queries.iter().enumerate() {
        let v = window.check(jti, Some(*exp));
        counts[match v {
            Verdict::Clear => 0,
            Verdict::MaybeRevoked => 1,
            _ => 2,
        }] += 1;
        let is_revoked = i % 2 == 0;
        missed += u64::from(is_revoked && v == Verdict::Clear);
        false_positives += u64::from(!is_revoked && v == Verdict::MaybeRevoked);
    }
    let check_time = t.elapsed();

    let good = checks / 2;
    println!(
        "window: {} buckets of {} s, target false-positive rate {}",
        window.geometry().buckets,
        window.config().bucket_width_secs(),
        window.config().target_fp_rate()
    );
    println!(
        "inserted {revoked} revocations in {:.0} ms ({:.0} ns each)",
        insert_time.as_secs_f64() * 1e3,
        insert_time.as_nanos() as f64 / revoked as f64
    );
    println!("checked {checks} tokens in {:.0} ms ({:.1} ns each, wall clock incl. loop; see `cargo bench` for the real figure)", check_time.as_secs_f64() * 1e3, check_time.as_nanos() as f64 / checks as f64);
    println!(
        "verdicts: clear {}, maybe_revoked {}, expired {}",
        counts[0], counts[1], counts[2]
    );
    println!("revoked tokens reported clear: {missed} (must be 0)");
    println!(
        "false positives: {false_positives} of {good} good tokens = {:.4} % (target {:.4} %)",
        100.0 * false_positives as f64 / good as f64,
        100.0 * window.config().target_fp_rate()
    );
    println!(
        "filter: {:.1} MiB, {:.2} bits per revocation; window memory incl. kept hashes {:.1} MiB",
        window.filter_bytes() as f64 / (1 << 20) as f64,
        window.bits_per_entry().unwrap_or(0.0),
        window.memory_bytes() as f64 / (1 << 20) as f64
    );
    window.fit_to_entries(0.0);
    println!(
        "fitted to entries (what a snapshot ships): {:.2} bits per revocation",
        window.bits_per_entry().unwrap_or(0.0)
    );
    if missed > 0 {
        return Err("false negative".into());
    }
    Ok(())
}
