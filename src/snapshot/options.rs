//! How a snapshot (or delta) is opened: checksum and signature settings, and the signature
//! check itself.

use ed25519_dalek::{Signature, VerifyingKey};

use super::error::SnapshotError;
use super::seal::SealKey;

/// How [`SnapshotView::open`](super::SnapshotView::open) validates. The default verifies the
/// checksum, accepts unsigned files and refuses signed ones ([`SnapshotError::SignatureNotChecked`]):
/// a signed file means its publisher meant it to be verified, so a reader without the key is
/// misconfigured. Set a verifying key on every verifier that can be reached by an attacker's
/// bytes, and the seal keys ([`OpenOptions::seal_key`]) of a publisher that seals.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub(crate) verifying_key: Option<VerifyingKey>,
    pub(crate) require_signature: bool,
    pub(crate) verify_checksum: bool,
    pub(crate) skip_signature_check: bool,
    pub(crate) seal_keys: Vec<SealKey>,
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
            skip_signature_check: false,
            seal_keys: Vec::new(),
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

    /// Accept a signed file without checking its signature when no verifying key is set
    /// ([`SignatureStatus::NotVerified`]) instead of refusing it. For tools that show what a
    /// file holds (`revbloom inspect`), never for a verifier: it trusts whoever made the file.
    pub fn skip_signature_check(mut self) -> Self {
        self.skip_signature_check = true;
        self
    }

    /// Add a seal key: sealed files named with its id are unsealed with it (see
    /// [`SnapshotView::open_owned`](super::SnapshotView::open_owned)). Call it once per key
    /// while a publisher rotates. Plaintext files are still accepted, under the same signature
    /// rules, so verifiers can get the key before their publisher starts sealing.
    pub fn seal_key(mut self, key: SealKey) -> Self {
        if !self.seal_keys.contains(&key) {
            self.seal_keys.push(key);
        }
        self
    }

    /// The seal keys given with [`OpenOptions::seal_key`].
    pub fn seal_keys(&self) -> &[SealKey] {
        &self.seal_keys
    }

    /// Whether a verifying key is set.
    pub fn has_verifying_key(&self) -> bool {
        self.verifying_key.is_some()
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
    /// Signed, but not checked: no key was configured and the caller asked for
    /// [`OpenOptions::skip_signature_check`].
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
        } else if options.skip_signature_check {
            Ok(SignatureStatus::NotVerified)
        } else {
            Err(SnapshotError::SignatureNotChecked)
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
