//! `revbloom check`: verdicts for one token or a JSON Lines stream of them.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use revbloom::verify::RevocationState;
use revbloom::{SnapshotView, Verdict};
use serde::Deserialize;
use serde_json::json;

use super::{open_options, open_snapshot, EXIT_NOT_CLEAR};

/// Arguments of `check`: one of `--jti` or `--input`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("query").args(["jti", "input"]).required(true))]
pub struct Args {
    /// The snapshot file.
    snapshot: PathBuf,
    /// Check one token id (exit code 3 when the verdict is not clear).
    #[arg(long, conflicts_with = "input")]
    jti: Option<String>,
    /// The token's `exp` (unix seconds, `+1h`, or an RFC 3339 time); omit for tokens without
    /// one.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, requires = "jti", value_parser = super::parse_time)]
    exp: Option<u64>,
    /// The token's issuer (only version 1 snapshots key revocations on (iss, jti)).
    #[arg(long, requires = "jti")]
    iss: Option<String>,
    /// JSON Lines of {"jti": ..., "exp": ..., "iss": ...}; one verdict line out per line in,
    /// same order. `-` reads stdin.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Require and verify the signature with this Ed25519 public key (SPKI PEM).
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// Unseal a sealed file with this seal key (64 hex digits; the publisher's
    /// DATA/verifier.key).
    #[arg(long, value_name = "FILE", env = super::ENV_SEAL_KEY_FILE)]
    seal_key: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Query {
    jti: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iss: Option<String>,
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Clear => "clear",
        Verdict::MaybeRevoked => "maybe_revoked",
        Verdict::Expired => "expired",
        _ => "unknown",
    }
}

fn check<B: AsRef<[u8]> + Send + Sync>(
    view: &SnapshotView<B>,
    jti: &str,
    exp: Option<u64>,
    iss: Option<&str>,
) -> Verdict {
    match RevocationState::check_token(view, jti, iss, exp) {
        // A revocation made without `exp` (a cutoff on the jti) revokes it whatever its exp;
        // without the token's `iat` it cannot be ruled out.
        Verdict::Clear if view.has_jti_cutoff(jti.as_bytes()) => Verdict::MaybeRevoked,
        v => v,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let options = open_options(args.public_key.as_deref(), args.seal_key.as_deref())?;
    let view = open_snapshot(&args.snapshot, &options)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if let Some(jti) = &args.jti {
        let v = check(&view, jti, args.exp, args.iss.as_deref());
        writeln!(out, "{}", json!({"jti": jti, "verdict": verdict_name(v)}))?;
        out.flush()?;
        return Ok(if v == Verdict::Clear {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_NOT_CLEAR)
        });
    }
    let Some(input) = &args.input else {
        bail!("give --jti or --input");
    };
    let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            File::open(input).with_context(|| format!("opening {}", input.display()))?,
        ))
    };
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line =
            line.with_context(|| format!("{}: line {line_no}: read error", input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let q: Query = serde_json::from_str(&line).map_err(|e| {
            anyhow!(
                "{}: line {line_no}: {e} (expected {{\"jti\": \"...\", \"exp\": <unix seconds>}})",
                input.display()
            )
        })?;
        let v = check(&view, &q.jti, q.exp, q.iss.as_deref());
        writeln!(out, "{}", json!({"jti": q.jti, "verdict": verdict_name(v)}))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
