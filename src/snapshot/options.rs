//! How a snapshot (or delta) is opened: checksum and signature settings, and the signature
//! check itself.

use ed25519_dalek::{Signature, VerifyingKey};

use super::error::SnapshotError;

/// How [`SnapshotView::open`](super::SnapshotView::open) validates. The default verifies the checksum and accepts
/// unsigned files; set a verifying key on every verifier that can be reached by an attacker's
/// bytes.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub(crate) verifying_key: Option<VerifyingKey>,
    pub(crate) require_signature: bool,
    pub(crate) verify_checksum: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// Verify the checksum; no signature key.
    pub fn new() -> Self {
        Self {
            verifying_key: None,
            require_signature: false,
            verify_checksum: true,
        }
    }

    /// Verify signatures with `key`, and (unless relaxed with [`OpenOptions::require_signature`])
    /// refuse unsigned files: otherwise stripping the signature would bypass it.
    pub fn verifying_key(mut self, key: VerifyingKey) -> Self {
        self.verifying_key = Some(key);
        self.require_signature = true;
        self
    }

    /// Whether an unsigned file is an error.
    pub fn require_signature(mut self, required: bool) -> Self {
        self.require_signature = required;
        self
    }

    /// Whether to verify the checksum trailer (default `true`). Turning it off skips one pass
    /// over the file; structure is still validated, so a bad file gives wrong answers at worst
    /// for its own bits, never a panic. Only for bytes already verified (e.g. a file this
    /// process wrote) or covered by a verified signature.
    pub fn verify_checksum(mut self, verify: bool) -> Self {
        self.verify_checksum = verify;
        self
    }
}

/// What is known about a view's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureStatus {
    /// The file carries no signature.
    Unsigned,
    /// Signed, and the signature verified under the configured key.
    Verified,
    /// Signed, but no key was configured, so it was not checked.
    NotVerified,
}

pub(crate) fn verify_signature(
    b: &[u8],
    signed_len: usize,
    signed: bool,
    options: &OpenOptions,
) -> Result<SignatureStatus, SnapshotError> {
    if !signed {
        return if options.require_signature {
            Err(SnapshotError::Unsigned)
        } else {
            Ok(SignatureStatus::Unsigned)
        };
    }
    let Some(key) = &options.verifying_key else {
        return if options.require_signature {
            Err(SnapshotError::Signature)
        } else {
            Ok(SignatureStatus::NotVerified)
        };
    };
    let (message, sig) = (b.get(..signed_len), b.get(signed_len..));
    let sig = sig
        .and_then(|s| Signature::from_slice(s).ok())
        .ok_or(SnapshotError::Signature)?;
    let message = message.ok_or(SnapshotError::Signature)?;
    key.verify_strict(message, &sig)
        .map_err(|_| SnapshotError::Signature)?;
    Ok(SignatureStatus::Verified)
}
