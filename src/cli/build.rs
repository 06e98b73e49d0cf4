//! `revbloom build`: JSON Lines revocations in, a fitted (optionally signed) snapshot out.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressStyle};
use revbloom::snapshot::{self, SnapshotMeta};
use revbloom::{CutoffSet, InsertOutcome, Window, WindowConfig};
use serde::Deserialize;

use super::{now, parse_duration};

/// Inputs larger than this get a progress bar (on a terminal).
const PROGRESS_BYTES: u64 = 16 << 20;

/// Arguments of `build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON Lines file, one revocation per line: {"jti": "...", "exp": 1767225600, "iss": "..."}
    /// (`exp` and `iss` optional; other fields are ignored). `-` reads stdin.
    #[arg(long)]
    input: PathBuf,
    /// Snapshot file to write (atomically: temp file, fsync, rename).
    #[arg(long)]
    out: PathBuf,
    /// Target false-positive rate of every bucket.
    #[arg(long, default_value_t = 0.001)]
    fp_rate: f64,
    /// Span of token expiry times per bucket (e.g. 15m, 1h).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    bucket_width: Duration,
    /// Longest token lifetime covered; a multiple of the bucket width.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    horizon: Duration,
    /// Clock skew tolerated between issuer, publisher and verifiers.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    leeway: Duration,
    /// Sign the snapshot with this Ed25519 private key (PKCS#8 PEM, from `revbloom keygen`).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Generation number to write (the first publication is 1).
    #[arg(long, default_value_t = 1)]
    generation: u64,
    /// Build as of this unix time instead of now (reproducible builds, tests).
    #[arg(long)]
    now: Option<u64>,
    /// Fixed hash seed, for reproducible test files only: a predictable seed lets an attacker
    /// aim keys at one block, so production builds draw a random one.
    #[arg(long, hide = true)]
    seed: Option<u64>,
}

#[derive(Deserialize)]
struct Line {
    jti: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iss: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let now = args.now.unwrap_or_else(now);
    let signing_key = match &args.signing_key {
        Some(p) => Some(read_signing_key(p)?),
        None => None,
    };
    let config = WindowConfig::default()
        .bucket_width(args.bucket_width)
        .horizon(args.horizon)
        .leeway(args.leeway)
        .fp_rate(args.fp_rate)
        // Buckets grow as needed and are fitted to their counts at the end; the cap only
        // guards against absurd inputs.
        .expected_per_bucket(1024)
        .max_bytes(8 << 30);
    let window = match args.seed {
        Some(seed) => Window::with_seed(config, now, seed),
        None => Window::new(config, now),
    };
    let mut window = window.context("invalid window settings")?;

    let (reader, size): (Box<dyn BufRead>, u64) = if args.input.as_os_str() == "-" {
        (Box::new(BufReader::new(std::io::stdin().lock())), 0)
    } else {
        let f =
            File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(BufReader::with_capacity(1 << 20, f)), size)
    };
    let bar = if size > PROGRESS_BYTES {
        let bar = ProgressBar::new(size);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };

    let (mut inserted, mut expired, mut duplicate) = (0u64, 0u64, 0u64);
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line =
            line.with_context(|| format!("{}: line {line_no}: read error", args.input.display()))?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let rec: Line = serde_json::from_str(&line).map_err(|e| {
            anyhow!(
                "{}: line {line_no}: {e} (expected {{\"jti\": \"...\", \"exp\": <unix seconds>, \"iss\": \"...\"}})",
                args.input.display()
            )
        })?;
        let hash = match &rec.iss {
            Some(iss) => window.hasher().hash_issued(iss, &rec.jti),
            None => window.hasher().hash(&rec.jti),
        };
        match window.insert_hash(hash, rec.exp) {
            InsertOutcome::Inserted => inserted += 1,
            InsertOutcome::Expired => expired += 1,
            _ => duplicate += 1,
        }
    }
    bar.finish_and_clear();
    window.fit_to_entries(0.0);

    let meta = SnapshotMeta {
        generation: args.generation,
        parent: args.generation.saturating_sub(1),
        created_at: now,
        coverage: now,
    };
    let written = write_atomically(&args.out, |w| {
        snapshot::encode(&window, &CutoffSet::new(), &meta, signing_key.as_ref(), w)
    })?;
    let entries = window.entries();
    let bpe = if entries > 0 {
        format!("{:.2}", written as f64 * 8.0 / entries as f64)
    } else {
        "-".into()
    };
    eprintln!(
        "wrote {}: {inserted} revocations ({duplicate} duplicates, {expired} already expired skipped), {written} bytes, {bpe} bits/entry{}",
        args.out.display(),
        if signing_key.is_some() { ", signed" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow!(
            "{} is not an Ed25519 private key in PKCS#8 PEM form ({e}); make one with `revbloom keygen`",
            path.display()
        )
    })
}

/// Write `out` through a temp file in the same directory, fsync it, rename it into place and
/// fsync the directory: readers (and an mmap) only ever see a complete file.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<u64>,
) -> Result<u64> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", out.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<u64> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, &file);
        let n = write(&mut w).with_context(|| format!("writing {}", tmp.display()))?;
        w.flush()?;
        drop(w);
        file.sync_all()?;
        std::fs::rename(&tmp, out)
            .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Ok(d) = File::open(&dir) {
        // Persist the rename itself; not every platform can fsync a directory.
        let _ = d.sync_all();
    }
    result
}
