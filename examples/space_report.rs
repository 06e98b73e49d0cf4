//! Space and accuracy: bits per entry against the bounds, and measured false-positive rates.
//!
//! `cargo run --release --example space_report` prints a table and writes
//! `docs/space_report.csv` (read by `scripts/plot_benchmarks.py`). About half a minute.
//!
//! For each target rate (1 %, 0.1 %, 0.01 %) it fills a window with 1M revocations spread over
//! 24 h of `exp`, shrinks it to its content (`fit_to_entries(0.0)`, what a snapshot builder
//! ships) and checks 10M keys never inserted, each with a random `exp`. The same keys go into
//! the anchors: the split-block filter at a few bits-per-key settings (to show which setting
//! reaches the target), fastbloom sized for the target, xorf's BinaryFuse8/16 (fixed rates) and
//! a hash set of 128-bit fingerprints. Bounds: `log2(1/ε)` (no structure can do better) and
//! `1.44·log2(1/ε)` (an optimal unblocked Bloom filter).

#[path = "../benches/common/mod.rs"]
mod common;

use std::fmt::Write as _;

use common::*;
use xorf::Filter as _;

const N: u64 = 1_000_000;
const ABSENT: u64 = 10_000_000;

struct Row {
    structure: String,
    target: f64,
    bits: f64,
    measured: f64,
    model: Option<f64>,
}

fn measured(f: impl Fn(&Query) -> bool) -> f64 {
    let hits = (0..ABSENT).filter(|&j| f(&absent_query(77, j))).count();
    hits as f64 / ABSENT as f64
}

fn main() -> std::io::Result<()> {
    // No options: `--help` says what the example does, anything else is a usage error.
    if let Some(arg) = std::env::args().nth(1) {
        let usage = "usage: space_report (no options; see the top of examples/space_report.rs)";
        if arg == "--help" || arg == "-h" {
            println!("{usage}");
            return Ok(());
        }
        eprintln!("space_report: unexpected argument {arg:?}\n{usage}");
        std::process::exit(2);
    }
    let mut rows = Vec::new();
    let hashes: Vec<u64> = {
        let mut h: Vec<u64> = (0..N).map(|i| h64(&jti(i))).collect();
        h.sort_unstable();
        h.dedup();
        h
    };
    for (fp, sbbf_bits) in [
        (0.01, [10usize, 11, 12]),
        (0.001, [16, 17, 18]),
        (0.0001, [25, 26, 27]),
    ] {
        let w = window(N, fp);
        let entries = w.entries() as f64;
        let model = w
            .bucket_stats()
            .iter()
            .map(|b| b.estimated_fp * b.entries as f64)
            .sum::<f64>()
            / entries;
        rows.push(Row {
            structure: "revbloom".into(),
            target: fp,
            bits: w.bits_per_entry().unwrap_or(0.0),
            measured: measured(|q| maybe(w.check(q.jti, Some(q.exp)))),
            model: Some(model),
        });
        drop(w);
        for bits in sbbf_bits {
            let mut f = sbbf_rs_safe::Filter::new(bits, N as usize);
            for &h in &hashes {
                f.insert_hash(h);
            }
            rows.push(Row {
                structure: format!("sbbf-rs-safe ({bits} bits/key)"),
                target: fp,
                bits: f.as_bytes().len() as f64 * 8.0 / N as f64,
                measured: measured(|q| f.contains_hash(h64(&q.jti))),
                model: None,
            });
        }
        let mut f = fastbloom::BloomFilter::with_false_pos(fp).expected_items(N as usize);
        for &h in &hashes {
            f.insert_hash(h);
        }
        rows.push(Row {
            structure: "fastbloom".into(),
            target: fp,
            bits: f.num_bits() as f64 / N as f64,
            measured: measured(|q| f.contains_hash(h64(&q.jti))),
            model: None,
        });
    }
    let f8 = xorf::BinaryFuse8::try_from(&hashes).expect("fuse8 builds");
    rows.push(Row {
        structure: "xorf-BinaryFuse8".into(),
        target: 1.0 / 256.0,
        bits: f8.len() as f64 * 8.0 / N as f64,
        measured: measured(|q| f8.contains(&h64(&q.jti))),
        model: None,
    });
    let f16 = xorf::BinaryFuse16::try_from(&hashes).expect("fuse16 builds");
    rows.push(Row {
        structure: "xorf-BinaryFuse16".into(),
        target: 1.0 / 65536.0,
        bits: f16.len() as f64 * 16.0 / N as f64,
        measured: measured(|q| f16.contains(&h64(&q.jti))),
        model: None,
    });
    let mut set = hashbrown::HashSet::with_capacity(N as usize);
    for i in 0..N {
        set.insert(h128(&jti(i)));
    }
    rows.push(Row {
        structure: "hashbrown-fingerprint-set".into(),
        target: 0.0,
        bits: set.allocation_size() as f64 * 8.0 / N as f64,
        measured: measured(|q| set.contains(&h128(&q.jti))),
        model: None,
    });

    let mut csv = String::from(
        "structure,target_fp,entries,bits_per_entry,measured_fp,absent_checked,model_fp,\
         log2_bound_bits,bloom_bound_bits\n",
    );
    println!(
        "{:<30} {:>9} {:>10} {:>12} {:>10} {:>9} {:>9}",
        "structure", "target %", "bits/entry", "measured %", "model %", "log2(1/e)", "1.44x"
    );
    for r in &rows {
        let (lb, bb) = if r.target > 0.0 {
            let l = (1.0 / r.target).log2();
            (l, 1.44 * l)
        } else {
            (f64::NAN, f64::NAN)
        };
        println!(
            "{:<30} {:>9.4} {:>10.2} {:>12.4} {:>10} {:>9.2} {:>9.2}",
            r.structure,
            100.0 * r.target,
            r.bits,
            100.0 * r.measured,
            r.model.map_or("-".into(), |m| format!("{:.4}", 100.0 * m)),
            lb,
            bb
        );
        let _ = writeln!(
            csv,
            "{},{},{},{:.4},{:.6e},{},{},{:.4},{:.4}",
            r.structure,
            r.target,
            N,
            r.bits,
            r.measured,
            ABSENT,
            r.model.map_or(String::new(), |m| format!("{m:.6e}")),
            lb,
            bb
        );
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/space_report.csv");
    std::fs::create_dir_all(out.parent().expect("docs dir"))?;
    std::fs::write(&out, csv)?;
    println!("wrote {}", out.display());
    Ok(())
}
