//! `revbloom keygen`: an Ed25519 key pair for signing snapshots, or (`--seal-key FILE`) a
//! seal key.

use std::fs::OpenOptions as FileOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the private key (PKCS#8 PEM, created with mode 0600).
    #[arg(long, default_value = "revbloom-signing.pem")]
    private: PathBuf,
    /// Where to write the public key (SPKI PEM) that verifiers are configured with.
    #[arg(long, default_value = "revbloom-verifying.pem")]
    public: PathBuf,
    /// Write a seal key (64 hex digits, mode 0600) to FILE instead of a signing key pair: the
    /// secret a publisher seals snapshots with and its verifiers unseal them with.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["private", "public"])]
    seal_key: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(path) = &args.seal_key {
        let key = revbloom::snapshot::SealKey::generate()?;
        let mut f = create(path, args.force, true)?;
        f.write_all(key.to_file_text().as_bytes())?;
        f.sync_all()?;
        eprintln!(
            "wrote seal key {} (key id {}; keep it secret, give it to the publisher and its verifiers)",
            path.display(),
            key.key_id()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("drawing a random key: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the private key: {e}"))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;

    let mut f = create(&args.private, args.force, true)?;
    f.write_all(private.as_bytes())?;
    f.sync_all()?;
    let mut p = create(&args.public, args.force, false)?;
    p.write_all(public.as_bytes())?;
    p.sync_all()?;
    eprintln!(
        "wrote private key {} (keep it secret) and public key {} (give it to verifiers)",
        args.private.display(),
        args.public.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Create `path` for writing: a new file, or with `force` an existing one truncated. A
/// `private` file is created 0600 from the start (no window in which the key is readable by
/// others), and kept 0600 when `force` reuses a file with wider permissions.
fn create(path: &std::path::Path, force: bool, private: bool) -> Result<std::fs::File> {
    let mut opts = FileOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts
        .open(path)
        .with_context(|| format!("creating {} (use --force to overwrite)", path.display()))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(f)
}
