//! The signed manifest of a static mirror: which generation is the latest, which immutable
//! snapshot object it starts from and which delta objects lead from there to it. The
//! publisher writes it last into an object store (`revbloom-server`'s `distribute` module);
//! the sync client reads it from any static HTTP server or CDN in front of that store
//! ([`SyncConfig::mirror`](super::SyncConfig::mirror)). `docs/FORMAT.md` specifies every byte.
//!
//! The file is an envelope: a 16-byte header, a UTF-8 JSON payload, and an Ed25519 signature
//! over header and payload. The signature covers the exact bytes, so no JSON canonical form
//! is needed: a verifier in any language checks the signature, then parses the JSON.
//!
//! ```
//! use revbloom::snapshot::OpenOptions;
//! use revbloom::sync::manifest::{sha256_hex, Manifest, ObjectRef};
//!
//! let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let snapshot = b"snapshot bytes";
//! let hash = sha256_hex(snapshot);
//! let manifest = Manifest {
//!     generation: 42,
//!     created_at: 1_700_000_000,
//!     snapshot: ObjectRef {
//!         generation: 42,
//!         path: Manifest::snapshot_path(42, &hash),
//!         size: snapshot.len() as u64,
//!         sha256: hash,
//!     },
//!     deltas: vec![],
//! };
//! let bytes = manifest.encode(Some(&key)).unwrap();
//! let options = OpenOptions::new().verifying_key(key.verifying_key());
//! assert_eq!(Manifest::decode(&bytes, &options).unwrap(), manifest);
//! // One flipped byte anywhere and the manifest is refused.
//! let mut tampered = bytes.clone();
//! tampered[20] ^= 1;
//! assert!(Manifest::decode(&tampered, &options).is_err());
//! ```

use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::snapshot::{OpenOptions, SignatureStatus};

/// The manifest's name under the destination prefix (and under a mirror's base URL).
pub const MANIFEST_FILE: &str = "manifest.rbm";
/// The first eight bytes of a manifest file.
pub const MANIFEST_MAGIC: [u8; 8] = *b"RVBLMANI";
/// The envelope version this library writes and reads.
pub const MANIFEST_VERSION: u16 = 1;
/// Header length: magic, version, flags, payload length.
pub const MANIFEST_HEADER_LEN: usize = 16;
/// Length of the trailing Ed25519 signature of a signed manifest.
pub const MANIFEST_SIGNATURE_LEN: usize = 64;
/// The largest JSON payload accepted (and written).
pub const MAX_MANIFEST_PAYLOAD: usize = 1 << 20;
/// The most delta objects one manifest may list.
pub const MAX_MANIFEST_DELTAS: usize = 4096;
/// The largest object size a manifest may announce (1 GiB): a reader never buffers more.
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;
/// Flag bit 0: the envelope ends with a signature.
const FLAG_SIGNED: u16 = 1;

/// One immutable snapshot object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The generation of the snapshot it holds.
    pub generation: u64,
    /// Path relative to the manifest's folder (`snapshots/<gen>-<sha256>.rbs`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256: String,
}

/// One immutable delta object, from `parent` to `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaRef {
    /// The generation the delta applies to.
    pub parent: u64,
    /// The generation it produces.
    pub generation: u64,
    /// Path relative to the manifest's folder (`deltas/<parent>-<gen>-<sha256>.rbd`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the object's bytes, lowercase hex.
    pub sha256: String,
}

/// The manifest's content (the JSON payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The latest generation.
    pub generation: u64,
    /// `created_at` of the latest generation (unix seconds).
    pub created_at: u64,
    /// The full snapshot the chain starts from.
    pub snapshot: ObjectRef,
    /// The deltas from `snapshot.generation` to `generation`, in order.
    pub deltas: Vec<DeltaRef>,
}

/// What a reader must fetch to reach a manifest's generation from the one it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<'a> {
    /// The generation held is the manifest's, or newer: nothing to fetch.
    UpToDate,
    /// The deltas from the generation held onward.
    Deltas(&'a [DeltaRef]),
    /// The full snapshot, then every delta.
    Full(&'a ObjectRef, &'a [DeltaRef]),
}

/// A manifest that cannot be written or is refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not a manifest file: wrong magic, truncated, or the length field disagrees with the
    /// file's size.
    #[error("not a revbloom manifest ({0}); check the mirror URL points at the folder the publisher writes to")]
    Malformed(&'static str),
    /// An envelope version this reader does not know.
    #[error("manifest version {got} is not supported (this reader knows version {expected}); upgrade the verifier")]
    Version {
        /// The version this reader knows.
        expected: u16,
        /// The version found.
        got: u16,
    },
    /// Reserved flag bits set.
    #[error("manifest flags {0:#06x} have unknown bits set; upgrade the verifier")]
    Flags(u16),
    /// No signature, and the options require one.
    #[error("manifest is unsigned but a signature is required; configure the publisher to sign (\"sign\": true)")]
    Unsigned,
    /// The signature does not verify under the configured key.
    #[error("manifest signature does not verify: it was altered, or the verifying key is not the publisher's")]
    Signature,
    /// Signed, but no verifying key was configured to check it.
    #[error("manifest is signed but no verifying key is configured; configure the publisher's public key (DATA/signing.pub)")]
    SignatureNotChecked,
    /// The JSON payload does not parse.
    #[error("manifest payload is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// The payload parses but breaks a rule (chain order, paths, sizes, hashes).
    #[error("manifest is inconsistent: {0}")]
    Invalid(String),
}

impl Manifest {
    /// The conventional name of a snapshot object.
    pub fn snapshot_path(generation: u64, sha256_hex: &str) -> String {
        format!("snapshots/{generation}-{sha256_hex}.rbs")
    }

    /// The conventional name of a delta object.
    pub fn delta_path(parent: u64, generation: u64, sha256_hex: &str) -> String {
        format!("deltas/{parent}-{generation}-{sha256_hex}.rbd")
    }

    /// Check the rules a reader relies on: the chain starts at the snapshot, each delta's
    /// parent is the previous generation, generations increase, it ends at `generation`;
    /// paths are relative and plain; sizes are bounded; hashes are 64 lowercase hex digits.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError::Invalid(m));
        if self.deltas.len() > MAX_MANIFEST_DELTAS {
            return bad(format!(
                "{} deltas listed, at most {MAX_MANIFEST_DELTAS} allowed",
                self.deltas.len()
            ));
        }
        object_rules(
            &self.snapshot.path,
            self.snapshot.size,
            &self.snapshot.sha256,
        )?;
        let mut at = self.snapshot.generation;
        for d in &self.deltas {
            object_rules(&d.path, d.size, &d.sha256)?;
            if d.parent != at || d.generation <= d.parent {
                return bad(format!(
                    "delta {} -> {} does not continue the chain at {at}",
                    d.parent, d.generation
                ));
            }
            at = d.generation;
        }
        if at != self.generation {
            return bad(format!(
                "the chain ends at {at}, the manifest names generation {}",
                self.generation
            ));
        }
        Ok(())
    }

    /// The objects to fetch for a reader holding generation `held`.
    pub fn plan(&self, held: Option<u64>) -> Plan<'_> {
        match held {
            Some(h) if h >= self.generation => Plan::UpToDate,
            Some(h) if h == self.snapshot.generation => Plan::Deltas(&self.deltas),
            Some(h) => match self.deltas.iter().position(|d| d.parent == h) {
                Some(i) => Plan::Deltas(&self.deltas[i..]),
                None => Plan::Full(&self.snapshot, &self.deltas),
            },
            None => Plan::Full(&self.snapshot, &self.deltas),
        }
    }

    /// The envelope: header, JSON payload, and the signature when `key` is given.
    pub fn encode(&self, key: Option<&SigningKey>) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        let payload = serde_json::to_vec(self)?;
        if payload.len() > MAX_MANIFEST_PAYLOAD {
            return Err(ManifestError::Invalid(format!(
                "payload of {} bytes, at most {MAX_MANIFEST_PAYLOAD} allowed",
                payload.len()
            )));
        }
        let mut out =
            Vec::with_capacity(MANIFEST_HEADER_LEN + payload.len() + MANIFEST_SIGNATURE_LEN);
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        let flags = if key.is_some() { FLAG_SIGNED } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        // Bounded by MAX_MANIFEST_PAYLOAD above, so it fits.
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        if let Some(key) = key {
            let sig = key.sign(&out);
            out.extend_from_slice(&sig.to_bytes());
        }
        Ok(out)
    }

    /// Read an envelope: check the header, the signature under `options` (the same rules as
    /// snapshots: a verifying key requires a valid signature, no key refuses a signed file
    /// unless told to skip the check), parse the payload and [`validate`](Manifest::validate)
    /// it.
    pub fn decode(bytes: &[u8], options: &OpenOptions) -> Result<Manifest, ManifestError> {
        Ok(Self::decode_with_status(bytes, options)?.0)
    }

    /// [`Manifest::decode`], also saying what was known of the signature.
    pub fn decode_with_status(
        bytes: &[u8],
        options: &OpenOptions,
    ) -> Result<(Manifest, SignatureStatus), ManifestError> {
        let header = bytes
            .get(..MANIFEST_HEADER_LEN)
            .ok_or(ManifestError::Malformed("shorter than its header"))?;
        if header[..8] != MANIFEST_MAGIC {
            return Err(ManifestError::Malformed("wrong magic"));
        }
        let version = u16::from_le_bytes([header[8], header[9]]);
        if version != MANIFEST_VERSION {
            return Err(ManifestError::Version {
                expected: MANIFEST_VERSION,
                got: version,
            });
        }
        let flags = u16::from_le_bytes([header[10], header[11]]);
        if flags & !FLAG_SIGNED != 0 {
            return Err(ManifestError::Flags(flags));
        }
        let signed = flags & FLAG_SIGNED != 0;
        let len = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
        if len > MAX_MANIFEST_PAYLOAD {
            return Err(ManifestError::Malformed("payload length above the limit"));
        }
        let signed_len = MANIFEST_HEADER_LEN + len;
        let expected = signed_len + if signed { MANIFEST_SIGNATURE_LEN } else { 0 };
        if bytes.len() != expected {
            return Err(ManifestError::Malformed(
                "the file size disagrees with its length field",
            ));
        }
        let status = check_signature(bytes, signed_len, signed, options)?;
        let payload = bytes
            .get(MANIFEST_HEADER_LEN..signed_len)
            .ok_or(ManifestError::Malformed("truncated payload"))?;
        let manifest: Manifest = serde_json::from_slice(payload)?;
        manifest.validate()?;
        Ok((manifest, status))
    }
}

/// The snapshot rules (see [`OpenOptions`]) applied to the manifest's signature.
fn check_signature(
    bytes: &[u8],
    signed_len: usize,
    signed: bool,
    options: &OpenOptions,
) -> Result<SignatureStatus, ManifestError> {
    if !signed {
        return if options.require_signature {
            Err(ManifestError::Unsigned)
        } else {
            Ok(SignatureStatus::Unsigned)
        };
    }
    let Some(key) = &options.verifying_key else {
        return if options.require_signature {
            Err(ManifestError::Signature)
        } else if options.skip_signature_check {
            Ok(SignatureStatus::NotVerified)
        } else {
            Err(ManifestError::SignatureNotChecked)
        };
    };
    let (message, sig) = (bytes.get(..signed_len), bytes.get(signed_len..));
    let sig = sig
        .and_then(|s| Signature::from_slice(s).ok())
        .ok_or(ManifestError::Signature)?;
    let message = message.ok_or(ManifestError::Signature)?;
    key.verify_strict(message, &sig)
        .map_err(|_| ManifestError::Signature)?;
    Ok(SignatureStatus::Verified)
}

fn object_rules(path: &str, size: u64, sha256: &str) -> Result<(), ManifestError> {
    let plain = !path.is_empty()
        && path.len() <= 512
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if !plain {
        return Err(ManifestError::Invalid(format!(
            "object path {path:?} is not a plain relative path"
        )));
    }
    if size > MAX_OBJECT_SIZE {
        return Err(ManifestError::Invalid(format!(
            "object {path} announces {size} bytes, at most {MAX_OBJECT_SIZE} allowed"
        )));
    }
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ManifestError::Invalid(format!(
            "object {path}: sha256 must be 64 lowercase hex digits"
        )));
    }
    Ok(())
}

/// SHA-256 of `bytes` as 64 lowercase hex digits (how manifests name content).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(generation: u64, bytes: &[u8]) -> ObjectRef {
        let h = sha256_hex(bytes);
        ObjectRef {
            generation,
            path: Manifest::snapshot_path(generation, &h),
            size: bytes.len() as u64,
            sha256: h,
        }
    }

    fn delta(parent: u64, generation: u64) -> DeltaRef {
        let h = sha256_hex(&generation.to_le_bytes());
        DeltaRef {
            parent,
            generation,
            path: Manifest::delta_path(parent, generation, &h),
            size: 8,
            sha256: h,
        }
    }

    fn chain() -> Manifest {
        Manifest {
            generation: 13,
            created_at: 5,
            snapshot: object(10, b"s"),
            deltas: vec![delta(10, 11), delta(11, 13)],
        }
    }

    #[test]
    fn plans_follow_the_chain_or_fall_back_to_the_snapshot() {
        let m = chain();
        assert_eq!(m.plan(Some(13)), Plan::UpToDate);
        assert_eq!(m.plan(Some(99)), Plan::UpToDate);
        assert_eq!(m.plan(Some(10)), Plan::Deltas(&m.deltas[..]));
        assert_eq!(m.plan(Some(11)), Plan::Deltas(&m.deltas[1..]));
        // 12 is not on the chain, 9 is before it, None holds nothing.
        for held in [Some(12), Some(9), None] {
            assert_eq!(m.plan(held), Plan::Full(&m.snapshot, &m.deltas[..]));
        }
    }

    #[test]
    fn broken_chains_and_odd_paths_are_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        assert!(chain().encode(Some(&key)).is_ok());
        let mut m = chain();
        m.deltas[1].parent = 12;
        assert!(matches!(m.encode(None), Err(ManifestError::Invalid(_))));
        let mut m = chain();
        m.generation = 14;
        assert!(m.validate().is_err());
        for path in ["../x", "/abs", "a//b", "https://evil/x", "a/./b", ""] {
            let mut m = chain();
            m.snapshot.path = path.into();
            assert!(m.validate().is_err(), "{path}");
        }
        let mut m = chain();
        m.snapshot.sha256 = m.snapshot.sha256.to_uppercase();
        assert!(m.validate().is_err());
        let mut m = chain();
        m.deltas[0].size = MAX_OBJECT_SIZE + 1;
        assert!(m.validate().is_err());
    }

    #[test]
    fn envelope_rules() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let verify = OpenOptions::new().verifying_key(key.verifying_key());
        let signed = chain().encode(Some(&key)).unwrap();
        let unsigned = chain().encode(None).unwrap();
        assert_eq!(Manifest::decode(&signed, &verify).unwrap(), chain());
        // A key requires a signature; no key refuses a signed file unless told to skip.
        assert!(matches!(
            Manifest::decode(&unsigned, &verify),
            Err(ManifestError::Unsigned)
        ));
        assert!(matches!(
            Manifest::decode(&signed, &OpenOptions::new()),
            Err(ManifestError::SignatureNotChecked)
        ));
        let (_, status) =
            Manifest::decode_with_status(&signed, &OpenOptions::new().skip_signature_check())
                .unwrap();
        assert_eq!(status, SignatureStatus::NotVerified);
        assert!(Manifest::decode(&unsigned, &OpenOptions::new()).is_ok());
        // Another key.
        let other =
            OpenOptions::new().verifying_key(SigningKey::from_bytes(&[4; 32]).verifying_key());
        assert!(matches!(
            Manifest::decode(&signed, &other),
            Err(ManifestError::Signature)
        ));
        // Every single-bit flip is refused, and nothing panics on any truncation.
        for i in 0..signed.len() {
            let mut t = signed.clone();
            t[i] ^= 0x10;
            assert!(Manifest::decode(&t, &verify).is_err(), "byte {i}");
        }
        for n in 0..signed.len() {
            assert!(Manifest::decode(&signed[..n], &verify).is_err());
        }
        // Stripping the signature (flag cleared, bytes cut) is refused under a key.
        let mut stripped = signed[..signed.len() - 64].to_vec();
        stripped[10] = 0;
        assert!(matches!(
            Manifest::decode(&stripped, &verify),
            Err(ManifestError::Unsigned)
        ));
        let mut v2 = signed.clone();
        v2[8] = 2;
        assert!(matches!(
            Manifest::decode(&v2, &verify),
            Err(ManifestError::Version { got: 2, .. })
        ));
    }

    #[test]
    fn sha256_hex_is_the_standard_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
