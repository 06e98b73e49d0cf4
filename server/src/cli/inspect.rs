//! `revbloom inspect`: what a snapshot holds, for people (table) and scripts (`--json`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use revbloom::snapshot::SignatureStatus;
use revbloom::BucketId;
use serde_json::json;

use super::{now, open_options, open_snapshot};

/// Whether the file starts with the sealed-envelope magic (an unreadable file is not).
fn is_sealed_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| revbloom::snapshot::is_sealed(&head))
}

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file.
    snapshot: PathBuf,
    /// Verify the signature with this Ed25519 public key (SPKI PEM); an unsigned or wrongly
    /// signed file is then an error.
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// Unseal a sealed file with this seal key (64 hex digits; the publisher's
    /// DATA/verifier.key).
    #[arg(long, value_name = "FILE", env = super::ENV_SEAL_KEY_FILE)]
    seal_key: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn signature_name(s: SignatureStatus) -> &'static str {
    match s {
        SignatureStatus::Unsigned => "unsigned",
        SignatureStatus::Verified => "verified",
        SignatureStatus::NotVerified => "signed, not verified (pass --public-key)",
        _ => "unknown",
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Showing a file is not trusting it: without --public-key a signed file is shown as
    // "signed, not verified" rather than refused.
    let mut options = open_options(args.public_key.as_deref(), args.seal_key.as_deref())?;
    if args.public_key.is_none() {
        options = options.skip_signature_check();
    }
    // After the open, which refuses pipes and devices (reading one could block).
    let view = open_snapshot(&args.snapshot, &options)?;
    let sealed = is_sealed_file(&args.snapshot);
    let now = now();
    let (width, horizon, leeway) = view.window_params();
    let stats: Vec<_> = view.bucket_stats().collect();
    if args.json {
        let buckets: Vec<_> = stats
            .iter()
            .map(|b| {
                json!({
                    "bucket": match b.id { BucketId::Overflow => json!("overflow"), BucketId::Expiry(n) => json!(n) },
                    "exp_range": b.exp_range.map(|(s, e)| [s, e]),
                    "entries": b.entries,
                    "bits": b.bits,
                    "fill_ratio": b.fill_ratio,
                    "estimated_fp": b.estimated_fp,
                })
            })
            .collect();
        let out = json!({
            "format_version": view.format_version(),
            "generation": view.generation(),
            "parent": view.parent(),
            "created_at": view.created_at(),
            "coverage": view.coverage(),
            "age_seconds": view.age(now),
            "layout_id": format!("{:016x}", view.layout_id()),
            "bucket_width": width,
            "horizon": horizon,
            "leeway": leeway,
            "max_token_lifetime": view.bounds().max_token_lifetime,
            "max_clock_skew": view.bounds().max_clock_skew,
            "default_issuer": view.default_issuer(),
            "target_fp_rate": view.target_fp_rate(),
            "oldest_bucket": view.oldest_bucket(),
            "entries": view.entries(),
            "cutoffs": view.cutoffs().count(),
            "cutoff_claims": view.cutoff_claims(),
            "size_bytes": view.size_bytes(),
            "bits_per_entry": view.bits_per_entry(),
            "sealed": sealed,
            "signature": match view.signature_status() {
                SignatureStatus::Unsigned => "unsigned",
                SignatureStatus::Verified => "verified",
                _ => "not_verified",
            },
            "buckets": buckets,
        });
        return super::print(&format!("{out}\n"));
    }
    let mut text = String::new();
    writeln!(text, "snapshot       {}", args.snapshot.display())?;
    writeln!(
        text,
        "sealed         {}",
        if sealed {
            "yes (unsealed with --seal-key)"
        } else {
            "no (plaintext)"
        }
    )?;
    writeln!(text, "format         v{}", view.format_version())?;
    writeln!(
        text,
        "generation     {} (parent {})",
        view.generation(),
        view.parent()
    )?;
    writeln!(
        text,
        "created_at     {} (age {} s)",
        view.created_at(),
        view.age(now)
    )?;
    writeln!(text, "coverage       {}", view.coverage())?;
    writeln!(
        text,
        "window         {width} s buckets, {horizon} s horizon, {leeway} s leeway, target fp {}",
        view.target_fp_rate()
    )?;
    let b = view.bounds();
    writeln!(
        text,
        "bounds         tokens live at most {} s, clocks within {} s{}",
        b.max_token_lifetime,
        b.max_clock_skew,
        if view.format_version() == 1 {
            " (version 1: implied)"
        } else {
            ""
        }
    )?;
    writeln!(
        text,
        "default iss    {}",
        view.default_issuer().unwrap_or("(none)")
    )?;
    writeln!(text, "entries        {}", view.entries())?;
    writeln!(text, "cutoffs        {}", view.cutoffs().count())?;
    if !view.cutoff_claims().is_empty() {
        writeln!(text, "cutoff claims  {}", view.cutoff_claims().join(", "))?;
    }
    writeln!(text, "size           {} bytes", view.size_bytes())?;
    match view.bits_per_entry() {
        Some(b) => writeln!(text, "bits/entry     {b:.2} (whole file)")?,
        None => writeln!(text, "bits/entry     - (empty)")?,
    }
    writeln!(
        text,
        "signature      {}",
        signature_name(view.signature_status())
    )?;
    text.push('\n');
    writeln!(
        text,
        "{:<12} {:>23} {:>10} {:>10} {:>7} {:>10}",
        "bucket", "exp range", "entries", "bits", "fill", "est. fp"
    )?;
    for b in stats.iter().filter(|b| b.entries > 0 || b.bits > 0) {
        let name = match b.id {
            BucketId::Overflow => "overflow".to_string(),
            BucketId::Expiry(n) => n.to_string(),
        };
        let range = b
            .exp_range
            .map(|(s, e)| format!("{s}..{e}"))
            .unwrap_or_else(|| "no exp / far".into());
        writeln!(
            text,
            "{name:<12} {range:>23} {:>10} {:>10} {:>6.1}% {:>10.2e}",
            b.entries,
            b.bits,
            b.fill_ratio * 100.0,
            b.estimated_fp
        )?;
    }
    let empty = stats
        .iter()
        .filter(|b| b.entries == 0 && b.bits == 0)
        .count();
    if empty > 0 {
        writeln!(text, "({empty} empty buckets not shown)")?;
    }
    super::print(&text)
}
