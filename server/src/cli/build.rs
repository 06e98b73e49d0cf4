//! `revbloom build`: JSON Lines revocations in, a fitted (optionally signed) snapshot out.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use revbloom::bounds::{canonical_exp, Bounds, MAX_JTI_BYTES};
use revbloom::cutoff::JTI_CLAIM;
use revbloom::hash::normalize_issuer;
use revbloom::snapshot::{self, SnapshotMeta};
use revbloom::sync::write_file_atomically_with;
use revbloom::{CutoffKey, CutoffSet, InsertOutcome, Window, WindowConfig};
use revbloom_server::config::Limits;
use serde::{Deserialize, Deserializer};

use super::{now, parse_duration};

/// Inputs larger than this get a progress bar (on a terminal).
const PROGRESS_BYTES: u64 = 16 << 20;

/// Arguments of `build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON Lines file, one revocation per line: {"jti": "...", "exp": 1767225600, "iss": "..."}
    /// (`exp` and `iss` optional, `exp` rounded to whole seconds; any other field is an
    /// error). `-` reads stdin.
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
    /// Verifiers accept a token until its exp plus this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    leeway: Duration,
    /// Longest lifetime (exp − iat) of any token the deployment accepts.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    max_token_lifetime: Duration,
    /// Most any two clocks of the deployment (issuers, publisher, verifiers) differ by.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    max_clock_skew: Duration,
    /// Issuer verifiers assume for tokens without an `iss` claim.
    #[arg(long)]
    default_iss: Option<String>,
    /// Sign the snapshot with this Ed25519 private key (PKCS#8 PEM, from `revbloom keygen`).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Seal the snapshot with this seal key (64 hex digits, from `revbloom keygen --seal-key`
    /// or a publisher's DATA/verifier.key): without the key the file reveals nothing of who
    /// was revoked.
    #[arg(long, value_name = "FILE", env = super::ENV_SEAL_KEY_FILE)]
    seal_key: Option<PathBuf>,
    /// Generation number to write. Default: the build time in unix milliseconds, so a rebuilt
    /// file is newer than every earlier build and a running verifier takes it (verifiers refuse
    /// a generation not above the one they hold).
    #[arg(long)]
    generation: Option<u64>,
    /// Build as of this time instead of now: unix seconds or an RFC 3339 time (reproducible
    /// builds, tests).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, value_parser = super::parse_time)]
    now: Option<u64>,
    /// Fixed hash seed, for reproducible test files only: a predictable seed lets an attacker
    /// aim keys at one block, so production builds draw a random one.
    #[arg(long, hide = true)]
    seed: Option<u64>,
}

/// One input line. Unknown fields are refused: a misspelt `"Exp"` silently dropped would
/// put the revocation where no token's check looks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    jti: String,
    /// Absent: every token with this `jti` issued before the build is revoked whatever its
    /// `exp` (a cutoff on the `jti`). `null` is refused (a lost value, not a choice).
    #[serde(default, deserialize_with = "present_number")]
    exp: Option<serde_json::Number>,
    /// The token's issuer. Filters are keyed on the `jti` alone; a line without `exp` is a
    /// cutoff under this issuer (every issuer without it).
    #[serde(default)]
    iss: Option<String>,
}

fn present_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Number>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        Some(n) => Ok(Some(n)),
        None => Err(serde::de::Error::custom(
            "exp is null; give the token's exp in unix seconds, or leave the field out",
        )),
    }
}

/// What to do with one line's `exp` at build time `now`.
#[derive(Debug, PartialEq, Eq)]
enum Placed {
    /// Insert with this canonical exp (`None`: any exp).
    Insert(Option<u64>),
    /// Every verifier already refuses this token as expired: nothing to insert.
    Expired,
}

/// Check a line's `exp` as the publisher's API does: rounded like verifiers read it, refused
/// when more than `max_ahead` seconds ahead (milliseconds), skipped when no verifier can still
/// accept the token.
fn place(
    exp: Option<&serde_json::Number>,
    now: u64,
    bounds: &Bounds,
    max_ahead: u64,
) -> Result<Placed> {
    let Some(n) = exp else {
        return Ok(Placed::Insert(None));
    };
    let Some(exp) = n.as_u64().or_else(|| n.as_f64().and_then(canonical_exp)) else {
        bail!("exp {n} is not a unix time in seconds (a non-negative number)");
    };
    if exp.saturating_sub(now) > max_ahead {
        bail!(
            "exp_too_far: exp {exp} is more than {max_ahead} s ahead of {now}; is it in milliseconds? exp is unix seconds"
        );
    }
    if exp < bounds.earliest_useful_exp(now) {
        return Ok(Placed::Expired);
    }
    Ok(Placed::Insert(Some(exp)))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let now = args.now.unwrap_or_else(now);
    let signing_key = match &args.signing_key {
        Some(p) => Some(snapshot::read_signing_key(p)?),
        None => None,
    };
    let seal_key = match &args.seal_key {
        Some(p) => Some(snapshot::SealKey::from_file(p)?),
        None => None,
    };
    let config = WindowConfig::default()
        .bucket_width(args.bucket_width)
        .horizon(args.horizon)
        .leeway(args.leeway)
        .max_token_lifetime(args.max_token_lifetime)
        .max_clock_skew(args.max_clock_skew)
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
    window.set_default_issuer(args.default_iss.as_deref());
    let bounds = window.bounds();
    let max_ahead = Limits::default().max_exp_ahead_secs;

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
    let mut cutoffs = CutoffSet::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line =
            line.with_context(|| format!("{}: line {line_no}: read error", args.input.display()))?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}: line {line_no}", args.input.display());
        let rec: Line = serde_json::from_str(&line).map_err(|e| {
            anyhow!(
                "{}: {e} (expected {{\"jti\": \"...\", \"exp\": <unix seconds>, \"iss\": \"...\"}})",
                at()
            )
        })?;
        if rec.jti.is_empty() || rec.jti.len() > MAX_JTI_BYTES {
            bail!(
                "{}: jti is {} bytes; 1 to {MAX_JTI_BYTES} are accepted (verifiers refuse longer ones)",
                at(),
                rec.jti.len()
            );
        }
        let exp = match place(rec.exp.as_ref(), now, &bounds, max_ahead).with_context(at)? {
            Placed::Insert(exp) => exp,
            Placed::Expired => {
                expired += 1;
                continue;
            }
        };
        let Some(exp) = exp else {
            let iss = rec
                .iss
                .as_deref()
                .map(normalize_issuer)
                .filter(|i| !i.is_empty());
            window
                .add_cutoff_claim(JTI_CLAIM)
                .context("listing the jti cutoffs")?;
            let key = CutoffKey::new(window.hasher(), iss.map(str::as_bytes), JTI_CLAIM, &rec.jti);
            if cutoffs.insert(key, bounds.default_cutoff_before(now)) {
                inserted += 1;
            } else {
                duplicate += 1;
            }
            continue;
        };
        // The jti alone, whatever the issuer: what verifiers probe.
        let hash = window.hasher().hash(&rec.jti);
        match window.insert_hash(hash, Some(exp)) {
            InsertOutcome::Inserted => inserted += 1,
            InsertOutcome::Expired => expired += 1,
            _ => duplicate += 1,
        }
    }
    bar.finish_and_clear();
    window.fit_to_entries(0.0);

    // With `--now` the build is reproducible: its default generation derives from it.
    let generation = args.generation.unwrap_or_else(|| match args.now {
        Some(now) => now.saturating_mul(1000),
        None => revbloom_server::publish::generation_floor(),
    });
    let meta = SnapshotMeta {
        generation,
        parent: generation.saturating_sub(1),
        created_at: now,
        coverage: now,
    };
    let written = match &seal_key {
        Some(key) => {
            let plain = snapshot::encode_to_vec(&window, &cutoffs, &meta, signing_key.as_ref())?;
            let sealed = snapshot::seal(key, &plain)?;
            write_atomically(&args.out, |w| {
                std::io::Write::write_all(w, &sealed)?;
                Ok(sealed.len() as u64)
            })?
        }
        None => write_atomically(&args.out, |w| {
            snapshot::encode(&window, &cutoffs, &meta, signing_key.as_ref(), w)
                .map_err(std::io::Error::other)
        })?,
    };
    let entries = window.entries() + cutoffs.len() as u64;
    let bpe = if entries > 0 {
        format!("{:.2}", written as f64 * 8.0 / entries as f64)
    } else {
        "-".into()
    };
    eprintln!(
        "wrote {}: {inserted} revocations ({duplicate} duplicates, {expired} already expired skipped), {written} bytes, {bpe} bits/entry{}",
        args.out.display(),
        match (signing_key.is_some(), seal_key.is_some()) {
            (true, true) => ", signed, sealed",
            (true, false) => ", signed",
            (false, true) => ", sealed",
            (false, false) => "",
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Write `out` atomically ([`write_file_atomically_with`]) through a 1 MiB buffer: readers
/// (and an mmap) only ever see a complete file.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<u64>,
) -> Result<u64> {
    write_file_atomically_with(out, |file| {
        let mut w = BufWriter::with_capacity(1 << 20, &*file);
        let n = write(&mut w)?;
        w.flush()?;
        Ok(n)
    })
    .with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        max_token_lifetime: 1000,
        leeway: 60,
        max_clock_skew: 5,
    };

    fn n(v: serde_json::Value) -> serde_json::Number {
        match v {
            serde_json::Value::Number(n) => n,
            _ => unreachable!(),
        }
    }

    #[test]
    fn exp_is_rounded_bounded_and_skipped_when_useless() {
        let now = 10_000;
        let p = |v: serde_json::Value| place(Some(&n(v)), now, &B, 500);
        assert_eq!(
            p(serde_json::json!(10_100.5)).unwrap(),
            Placed::Insert(Some(10_101))
        );
        assert_eq!(
            p(serde_json::json!(10_500)).unwrap(),
            Placed::Insert(Some(10_500))
        );
        let far = p(serde_json::json!(10_501)).unwrap_err().to_string();
        assert!(
            far.contains("exp_too_far") && far.contains("milliseconds"),
            "{far}"
        );
        // Verifiers accept until exp + leeway by a clock up to the skew behind.
        assert_eq!(
            p(serde_json::json!(9_935)).unwrap(),
            Placed::Insert(Some(9_935))
        );
        assert_eq!(p(serde_json::json!(9_934)).unwrap(), Placed::Expired);
        assert!(p(serde_json::json!(-1)).is_err());
        assert_eq!(place(None, now, &B, 500).unwrap(), Placed::Insert(None));
    }

    #[test]
    fn lines_refuse_unknown_fields_and_null_exp() {
        assert!(serde_json::from_str::<Line>(r#"{"jti": "a", "Exp": 1}"#).is_err());
        let null = serde_json::from_str::<Line>(r#"{"jti": "a", "exp": null}"#);
        assert!(null.is_err_and(|e| e.to_string().contains("null")));
        let l: Line = serde_json::from_str(r#"{"jti": "a", "exp": 1.5, "iss": "i"}"#).unwrap();
        assert_eq!(l.exp.and_then(|e| e.as_f64()), Some(1.5));
        assert!(serde_json::from_str::<Line>(r#"{"jti": "a"}"#).is_ok_and(|l| l.exp.is_none()));
    }

    fn parse(spans: &[&str]) -> Result<Args, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let argv = [
            "revbloom", "build", "--input", "in.jsonl", "--out", "out.rbs",
        ];
        let m = crate::cli::Cli::command().try_get_matches_from(argv.iter().chain(spans))?;
        match crate::cli::Cli::from_arg_matches(&m)?.command {
            crate::cli::Command::Build(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn spans_take_units_or_bare_seconds() {
        let a = parse(&[]).unwrap();
        let secs = |d: Duration| d.as_secs();
        assert_eq!(
            [
                a.bucket_width,
                a.horizon,
                a.leeway,
                a.max_token_lifetime,
                a.max_clock_skew
            ]
            .map(secs),
            [3600, 86_400, 60, 30 * 86_400, 5]
        );
        let a = parse(&[
            "--bucket-width",
            "15m",
            "--horizon",
            "2d",
            "--leeway",
            "90",
            "--max-token-lifetime",
            "1h 30m",
        ])
        .unwrap();
        assert_eq!(
            [a.bucket_width, a.horizon, a.leeway, a.max_token_lifetime].map(secs),
            [900, 172_800, 90, 5400]
        );
        for bad in ["-1h", "1 fortnight", "", "99999999999999999999999"] {
            // `--flag=VALUE`: clap would take a separate `-1h` for a flag.
            let e = parse(&[&format!("--horizon={bad}")]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
        }
        let e = parse(&["--leeway=-5s"]).unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
    }
}
