//! Key files: a publisher's Ed25519 signing key (PKCS#8 PEM) and the verifying key its
//! verifiers are given (SPKI PEM), as `revbloom keygen` writes them. One loader for each, used
//! by the publisher, the CLI and verifiers alike. Messages name the file; the cause is the
//! error's `source()`, so a reporter that prints the chain shows it once.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::DecodePublicKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use thiserror::Error;

/// A key file that cannot be used, with the file and the cause.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an Ed25519 private key in PKCS#8 PEM form.
    #[error("{} is not an Ed25519 private key in PKCS#8 PEM form (make one with `revbloom keygen`)", path.display())]
    SigningKey {
        /// The key file.
        path: PathBuf,
        /// What the decoder found wrong.
        #[source]
        source: ed25519_dalek::pkcs8::Error,
    },
    /// The file is not an Ed25519 public key in SPKI PEM form.
    #[error("{} is not an Ed25519 public key in SPKI PEM form (make one with `revbloom keygen`)", path.display())]
    VerifyingKey {
        /// The key file.
        path: PathBuf,
        /// What the decoder found wrong.
        #[source]
        source: ed25519_dalek::pkcs8::spki::Error,
    },
}

fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a publisher's signing key from a PKCS#8 PEM file.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    SigningKey::from_pkcs8_pem(&read(path)?).map_err(|source| KeyFileError::SigningKey {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a verifying key from an SPKI PEM file.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    VerifyingKey::from_public_key_pem(&read(path)?).map_err(|source| KeyFileError::VerifyingKey {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::spki::EncodePublicKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use std::error::Error as _;

    #[test]
    fn round_trip_and_causes() {
        let dir = std::env::temp_dir().join(format!("revbloom-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let (private, public) = (dir.join("k.pem"), dir.join("k.pub.pem"));
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        std::fs::write(&private, pem.as_bytes()).unwrap();
        let pem = key.verifying_key().to_public_key_pem(Default::default());
        std::fs::write(&public, pem.unwrap()).unwrap();
        assert_eq!(read_signing_key(&private).unwrap(), key);
        assert_eq!(read_verifying_key(&public).unwrap(), key.verifying_key());
        // Each mix-up names the file and keeps the decoder's cause.
        let e = read_signing_key(&public).unwrap_err();
        assert!(matches!(e, KeyFileError::SigningKey { .. }) && e.source().is_some());
        let e = read_verifying_key(&private).unwrap_err();
        assert!(matches!(e, KeyFileError::VerifyingKey { .. }) && e.source().is_some());
        let e = read_signing_key(&dir.join("missing")).unwrap_err();
        assert!(matches!(e, KeyFileError::Read { .. }) && e.to_string().contains("missing"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
