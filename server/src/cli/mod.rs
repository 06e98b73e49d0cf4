//! Argument definitions and dispatch for the `revbloom` binary.

mod authz;
mod build;
mod check;
mod check_store;
mod completions;
mod cutoff;
mod inspect;
mod keygen;
mod revoke;
mod serve;

use std::fs::File;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ed25519_dalek::VerifyingKey;
use memmap2::Mmap;
use revbloom::{OpenOptions, SnapshotView};

/// Exit code for a failure (unreadable file, bad input line, invalid or tampered snapshot).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `check --jti` when the verdict is not `clear` (maybe_revoked or expired).
pub const EXIT_NOT_CLEAR: u8 = 3;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `check --jti`: the verdict is clear)
  1  error: unreadable file, bad input line, invalid, corrupt or wrongly signed snapshot
  2  usage error (bad arguments)
  3  `check --jti`: the verdict is maybe_revoked or expired";

/// JWT revocation filters: build, inspect and check snapshot files; run the publisher.
#[derive(Debug, Parser)]
#[command(name = "revbloom", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a snapshot from JSON Lines revocations ({"jti": "...", "exp": 1767225600, "iss": "..."}).
    Build(build::Args),
    /// Show a snapshot's header, buckets, size and signature status.
    Inspect(inspect::Args),
    /// Check tokens against a snapshot (one --jti, or JSON Lines from --input).
    Check(check::Args),
    /// Make an Ed25519 signing key (PKCS#8 PEM, mode 0600) and its public key (SPKI PEM).
    Keygen(keygen::Args),
    /// Verify a stopped publisher's store (every page checksum); exit 0 if sound, 1 if not.
    CheckStore(check_store::Args),
    /// Run the publisher: durable revocation store, HTTP API, snapshots and deltas.
    #[command(after_help = serve::ENV_HELP)]
    Serve(serve::ServeArgs),
    /// Run the check server beside a proxy (NGINX auth_request, Traefik forwardAuth): every
    /// request to --listen is a check of its bearer token.
    #[command(after_help = authz::ENV_HELP)]
    Authz(Box<authz::AuthzArgs>),
    /// Revoke one token (by jti, with its exp when known) on a running publisher.
    #[command(after_help = revoke::ADMIN_ENV_HELP)]
    Revoke(revoke::RevokeArgs),
    /// Revoke every token of a subject or session issued before a time, on a running publisher.
    #[command(after_help = revoke::ADMIN_ENV_HELP)]
    Cutoff(cutoff::CutoffArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) of revbloom or of one subcommand, or write them all to a folder.
    Man(completions::ManArgs),
}

/// Log to stderr at `RUST_LOG` (default `info`), for the long-running commands.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Build(a) => build::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Check(a) => check::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::CheckStore(a) => check_store::run(a),
        Command::Serve(a) => serve::run(a).map(|()| ExitCode::SUCCESS),
        Command::Authz(a) => authz::run(*a).map(|()| ExitCode::SUCCESS),
        Command::Revoke(a) => revoke::run(a).map(|()| ExitCode::SUCCESS),
        Command::Cutoff(a) => cutoff::run(a).map(|()| ExitCode::SUCCESS),
        Command::Completions(a) => completions::run_completions(a),
        Command::Man(a) => completions::run_man(a),
    }
}

pub use revbloom::bounds::unix_now as now;
pub use revbloom_server::config::parse_duration;

/// A point in time on the command line, as unix seconds: `1767225600`, `now`, `+DURATION` or
/// `-DURATION` from now (`+1h`, `-90s`, `+2d 12h`), or an RFC 3339 UTC time
/// (`2026-12-24T18:00:00Z`). Every flag that takes a time (`--exp`, `--before`, `--now`)
/// reads it with this parser, so a bad value is a usage error naming the flag.
pub fn parse_time(s: &str) -> Result<u64, String> {
    parse_time_at(s, now())
}

/// [`parse_time`] with "now" given, for tests.
fn parse_time_at(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    let bad = |why: String| {
        format!("{s:?} is not a time: {why} (give unix seconds, `now`, `+1h`, `-90s` or 2026-12-24T18:00:00Z)")
    };
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('+') {
        let d = parse_duration(rel).map_err(|e| bad(e.to_string()))?;
        return now
            .checked_add(d.as_secs())
            .ok_or_else(|| bad("too far ahead".into()));
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d = parse_duration(rel).map_err(|e| bad(e.to_string()))?;
        return now
            .checked_sub(d.as_secs())
            .ok_or_else(|| bad("before 1970".into()));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return s.parse().map_err(|_| bad("too large".into()));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| bad(e.to_string()))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| bad("before 1970".into()))
}

/// Read a verifying key from an SPKI PEM file.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    Ok(revbloom::snapshot::read_verifying_key(path)?)
}

/// Environment variable naming the seal key file of `build`, `inspect` and `check`.
pub const ENV_SEAL_KEY_FILE: &str = "REVBLOOM_SEAL_KEY_FILE";

/// A snapshot file's bytes: mapped in place, or unsealed into memory.
pub enum FileBytes {
    /// A plaintext file, mapped.
    Map(Mmap),
    /// The plaintext of a sealed file.
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            FileBytes::Map(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// Open options from the command line's key files: with `public_key` the signature is
/// required and verified; with `seal_key` sealed files are unsealed.
pub fn open_options(public_key: Option<&Path>, seal_key: Option<&Path>) -> Result<OpenOptions> {
    let mut options = OpenOptions::new();
    if let Some(p) = public_key {
        options = options.verifying_key(read_public_key(p)?);
    }
    if let Some(p) = seal_key {
        options = options.seal_key(revbloom::snapshot::SealKey::from_file(p)?);
    }
    Ok(options)
}

/// Map a snapshot file (unsealing it with the options' seal keys when it is sealed) and
/// validate it under `options`.
pub fn open_snapshot(path: &Path, options: &OpenOptions) -> Result<SnapshotView<FileBytes>> {
    // A snapshot is read whole, in place: a pipe or a device has no size to map, and opening a
    // FIFO for reading would block until some writer appears.
    let meta = std::fs::metadata(path).with_context(|| format!("opening {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{}: not a regular file; a snapshot is read whole, so save it to a file first",
            path.display()
        );
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the map is read-only and private to this process. Snapshot files are published
    // by atomic rename (never rewritten in place), so the mapped bytes do not change under
    // us; a truncation by another process could still fault, which is why the publisher and
    // `build` only ever rename complete files into place.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
    let bytes = if revbloom::snapshot::is_sealed(&map) {
        match revbloom::snapshot::unseal(&map, options.seal_keys()) {
            Ok(inner) => FileBytes::Owned(inner),
            Err(e) => bail!("{}: {e}", path.display()),
        }
    } else {
        FileBytes::Map(map)
    };
    if bytes.as_ref().starts_with(&revbloom::delta::DELTA_MAGIC) {
        let header_only = OpenOptions::new().skip_signature_check();
        let what = match revbloom::DeltaView::open(bytes.as_ref(), &header_only) {
            Ok(d) => format!(
                "a delta from generation {} to {} ({} revocations)",
                d.parent(),
                d.generation(),
                d.revocations()
            ),
            Err(e) => format!("a delta file ({e})"),
        };
        bail!(
            "{}: this is {what}, not a snapshot; verifiers apply deltas to the snapshot of their parent generation",
            path.display()
        );
    }
    match SnapshotView::open(bytes, options) {
        Ok(v) => Ok(v),
        Err(e) => bail!("{}: {e}", path.display()),
    }
}

/// Write `text` to stdout. A closed pipe (`revbloom inspect x | head`) is not an error.
pub fn print(text: &str) -> Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time_at;

    #[test]
    fn times_are_absolute_relative_or_rfc3339() {
        let now = 1_800_000_000;
        for (input, want) in [
            ("1767225600", 1_767_225_600),
            (" now ", now),
            ("+3600", now + 3600),
            ("+1h", now + 3600),
            ("+1h 30m", now + 5400),
            ("-90s", now - 90),
            ("2026-01-01T00:00:00Z", 1_767_225_600),
            ("2026-01-01 00:00:00", 1_767_225_600),
        ] {
            assert_eq!(parse_time_at(input, now), Ok(want), "{input}");
        }
        for (input, why) in [
            ("", "not a time"),
            ("soon", "not a time"),
            ("+", "not a time"),
            ("+1 fortnight", "not a time"),
            ("-60y", "before 1970"),
            ("99999999999999999999999", "too large"),
            ("1.5", "not a time"),
        ] {
            let e = parse_time_at(input, now).unwrap_err();
            assert!(
                e.contains(why) && e.contains("unix seconds"),
                "{input}: {e}"
            );
        }
    }
}
