//! Sealed envelopes: a whole snapshot or delta file encrypted and authenticated with
//! XChaCha20-Poly1305 under a [`SealKey`] that the publisher and its verifiers share, so that
//! a copy that leaves the fleet (a CDN, a public `GET /v1/snapshot`) tells an outsider nothing
//! about who was revoked: without the key the hash seed, the Bloom bits and the cutoff table
//! are ciphertext. The layout is in `docs/FORMAT.md` ("Sealed envelope").
//!
//! Sealing happens once per published file; a verifier unseals once per file it receives and
//! then opens the plaintext as usual, so the check itself runs on the same in-memory layout
//! and costs the same.
//!
//! ```
//! use revbloom::snapshot::{self, OpenOptions, SealKey, SnapshotMeta, SnapshotView};
//! use revbloom::{CutoffSet, Verdict, Window, WindowConfig};
//!
//! let now = 1_767_225_600;
//! let mut window = Window::new(WindowConfig::default(), now)?;
//! window.insert("token-42", Some(now + 600));
//! let plain = snapshot::encode_to_vec(&window, &CutoffSet::new(), &SnapshotMeta::first(now), None)?;
//!
//! let key = SealKey::generate()?;
//! let sealed = snapshot::seal(&key, &plain)?;
//! // Without the key the file cannot even be parsed.
//! assert!(matches!(
//!     SnapshotView::open(&sealed[..], &OpenOptions::new()),
//!     Err(snapshot::SnapshotError::Sealed { .. })
//! ));
//! // With it, the verifier opens the very bytes the publisher encoded.
//! let view = SnapshotView::open_owned(sealed, &OpenOptions::new().seal_key(key))?;
//! assert_eq!(view.check("token-42", Some(now + 600)), Verdict::MaybeRevoked);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::error::SnapshotError;

/// The first eight bytes of a sealed envelope (distinct from the snapshot's `RVBLSNAP` and the
/// delta's `RVBLDLTA`).
pub const SEAL_MAGIC: [u8; 8] = *b"RVBLSEAL";
/// The envelope version this crate writes and reads.
pub const SEAL_VERSION: u16 = 1;
/// Algorithm id of XChaCha20-Poly1305 (the only one).
pub const SEAL_ALG_XCHACHA20_POLY1305: u8 = 1;
/// Bytes of the envelope header, which is also the AEAD's associated data.
pub const SEAL_HEADER_BYTES: usize = 56;
/// Bytes of the Poly1305 tag at the end of the ciphertext.
pub const SEAL_TAG_BYTES: usize = 16;
/// Bytes of a seal key.
pub const SEAL_KEY_BYTES: usize = 32;

/// Domain-separation prefix of the key id: `SHA-256(KEY_ID_DOMAIN || key)[..8]`.
const KEY_ID_DOMAIN: &[u8] = b"revbloom seal key id v1";
/// Domain-separation prefix of the read token: `hex(SHA-256(READ_TOKEN_DOMAIN || key))`.
const READ_TOKEN_DOMAIN: &[u8] = b"revbloom read token v1";

mod off {
    pub const VERSION: usize = 8;
    pub const ALG: usize = 10;
    pub const RESERVED: usize = 11;
    pub const KEY_ID: usize = 16;
    pub const NONCE: usize = 24;
    pub const LENGTH: usize = 48;
}

/// The public, one-way name of a [`SealKey`]: the first eight bytes of
/// `SHA-256("revbloom seal key id v1" || key)`. Envelopes carry it so a reader can tell which
/// of its keys (rotation) opens a file, or that it holds none; it reveals nothing of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealKeyId(pub [u8; 8]);

impl fmt::Display for SealKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SealKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKeyId({self})")
    }
}

/// The secret that seals snapshots and deltas, shared by a publisher and its verifiers. Its
/// file form is 64 hex digits and an optional newline (`revbloom keygen --seal-key FILE`, or the
/// publisher's generated `DATA/verifier.key`). `Debug` shows only its [`SealKeyId`].
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; SEAL_KEY_BYTES]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// A seal key file that cannot be used, or a seal that failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealKeyError {
    /// The file could not be read.
    #[error("cannot read seal key file {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not 64 hex digits.
    #[error("{} is not a seal key: expected 64 hex digits and an optional newline (make one with `revbloom keygen --seal-key FILE`)", path.display())]
    Format {
        /// The key file (empty for text given directly).
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("the operating system's random source failed: {0}")]
    Random(#[source] getrandom::Error),
}

/// Why [`seal`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// No random nonce could be drawn.
    #[error("cannot seal: the operating system's random source failed: {0}")]
    Random(#[source] getrandom::Error),
    /// The input is larger than XChaCha20-Poly1305 can encrypt under one nonce (256 GiB).
    #[error("cannot seal: the file is {len} bytes, more than one envelope can hold")]
    TooLarge {
        /// The input's length.
        len: u64,
    },
}

impl SealKey {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; SEAL_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system.
    pub fn generate() -> Result<Self, SealKeyError> {
        let mut k = [0u8; SEAL_KEY_BYTES];
        getrandom::fill(&mut k).map_err(SealKeyError::Random)?;
        Ok(Self(k))
    }

    /// Parse the file form: 64 hex digits (either case), surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, SealKeyError> {
        parse_hex(text.trim()).ok_or(SealKeyError::Format {
            path: PathBuf::new(),
        })
    }

    /// Read a key file (64 hex digits and an optional newline).
    pub fn from_file(path: &Path) -> Result<Self, SealKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| SealKeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse_hex(text.trim()).ok_or_else(|| SealKeyError::Format {
            path: path.to_owned(),
        })
    }

    /// The file form: 64 lowercase hex digits and a newline. Write it to a file only the
    /// owner can read.
    pub fn to_file_text(&self) -> String {
        let mut s = hex(&self.0);
        s.push('\n');
        s
    }

    /// This key's public name, written into every envelope it seals.
    pub fn key_id(&self) -> SealKeyId {
        let d = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(self.0)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        SealKeyId(id)
    }

    /// The bearer token that authorises the publisher's exact lookup
    /// (`GET /v1/revocations/{jti}`): 64 lowercase hex digits of
    /// `SHA-256("revbloom read token v1" || key)`. Derived one way, so a verifier needs one
    /// secret, and the token (which travels in HTTP headers) does not give away the key.
    pub fn read_token(&self) -> String {
        let d = Sha256::new()
            .chain_update(READ_TOKEN_DOMAIN)
            .chain_update(self.0)
            .finalize();
        hex(&d)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<SealKey> {
    if s.len() != 2 * SEAL_KEY_BYTES || !s.is_ascii() {
        return None;
    }
    let mut k = [0u8; SEAL_KEY_BYTES];
    for (i, out) in k.iter_mut().enumerate() {
        *out = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(SealKey(k))
}

/// Whether `bytes` starts with the envelope magic.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(&SEAL_MAGIC)
}

/// The key id of a sealed envelope, read from its header without a key (`None` if `bytes` is
/// not an envelope or too short to hold one).
pub fn sealed_key_id(bytes: &[u8]) -> Option<SealKeyId> {
    if !is_sealed(bytes) {
        return None;
    }
    let id = bytes.get(off::KEY_ID..off::KEY_ID + 8)?;
    let mut out = [0u8; 8];
    out.copy_from_slice(id);
    Some(SealKeyId(out))
}

/// Seal `inner` (a complete snapshot or delta file) under `key` with a fresh random 24-byte
/// nonce. The output is `SEAL_HEADER_BYTES + inner.len() + SEAL_TAG_BYTES` bytes.
pub fn seal(key: &SealKey, inner: &[u8]) -> Result<Vec<u8>, SealError> {
    let too_large = SealError::TooLarge {
        len: inner.len() as u64,
    };
    // XChaCha20's 32-bit block counter bounds one message to 2^32 blocks of 64 bytes.
    if inner.len() as u64 > (1u64 << 38) - 64 {
        return Err(too_large);
    }
    let ct_len = u64::try_from(inner.len())
        .ok()
        .and_then(|n| n.checked_add(SEAL_TAG_BYTES as u64))
        .ok_or(too_large)?;
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(SealError::Random)?;
    let mut header = [0u8; SEAL_HEADER_BYTES];
    header[..8].copy_from_slice(&SEAL_MAGIC);
    header[off::VERSION..off::VERSION + 2].copy_from_slice(&SEAL_VERSION.to_le_bytes());
    header[off::ALG] = SEAL_ALG_XCHACHA20_POLY1305;
    header[off::KEY_ID..off::KEY_ID + 8].copy_from_slice(&key.key_id().0);
    header[off::NONCE..off::NONCE + 24].copy_from_slice(&nonce);
    header[off::LENGTH..off::LENGTH + 8].copy_from_slice(&ct_len.to_le_bytes());

    let mut out = Vec::with_capacity(SEAL_HEADER_BYTES + inner.len() + SEAL_TAG_BYTES);
    out.extend_from_slice(&header);
    out.extend_from_slice(inner);
    let nonce = XNonce::from(nonce);
    let tag = key
        .cipher()
        .encrypt_inout_detached(&nonce, &header, (&mut out[SEAL_HEADER_BYTES..]).into())
        // Only a message over the length checked above is refused.
        .map_err(|_| SealError::TooLarge {
            len: inner.len() as u64,
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

fn field(field: &'static str, offset: usize, expected: &'static str, found: u64) -> SnapshotError {
    SnapshotError::Field {
        field,
        offset: offset as u64,
        expected,
        found,
    }
}

/// The validated header of the envelope at the start of `bytes`: its key id, nonce and total
/// length (header, ciphertext and tag).
fn parse_header(bytes: &[u8]) -> Result<(SealKeyId, XNonce, usize), SnapshotError> {
    let len = bytes.len() as u64;
    let h = bytes
        .get(..SEAL_HEADER_BYTES)
        .ok_or(SnapshotError::Truncated {
            what: "sealed envelope header",
            needed: SEAL_HEADER_BYTES as u64,
            len,
        })?;
    if !is_sealed(h) {
        let mut found = [0u8; 8];
        found.copy_from_slice(&h[..8]);
        return Err(SnapshotError::Magic { found });
    }
    let u16_at = |at: usize| u16::from_le_bytes([h[at], h[at + 1]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let version = u16_at(off::VERSION);
    if version != SEAL_VERSION {
        return Err(field(
            "sealed envelope version",
            off::VERSION,
            "1",
            version.into(),
        ));
    }
    if h[off::ALG] != SEAL_ALG_XCHACHA20_POLY1305 {
        return Err(field(
            "sealed envelope algorithm",
            off::ALG,
            "1 (XChaCha20-Poly1305)",
            h[off::ALG].into(),
        ));
    }
    if let Some(i) = h[off::RESERVED..off::KEY_ID].iter().position(|&b| b != 0) {
        return Err(SnapshotError::Reserved {
            field: "sealed envelope reserved bytes",
            offset: (off::RESERVED + i) as u64,
        });
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[off::KEY_ID..off::KEY_ID + 8]);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&h[off::NONCE..off::NONCE + 24]);
    let ct_len = u64_at(off::LENGTH);
    if ct_len < SEAL_TAG_BYTES as u64 {
        return Err(field(
            "sealed envelope length",
            off::LENGTH,
            "at least 16 (the tag)",
            ct_len,
        ));
    }
    let total = ct_len
        .checked_add(SEAL_HEADER_BYTES as u64)
        .filter(|&t| t <= len)
        .ok_or(SnapshotError::Truncated {
            what: "sealed envelope",
            needed: ct_len.saturating_add(SEAL_HEADER_BYTES as u64),
            len,
        })?;
    // `total <= len`, which is a usize.
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    Ok((SealKeyId(id), XNonce::from(nonce), total))
}

/// Unseal the envelope at the start of `bytes` with whichever of `keys` it names; returns the
/// inner file and the bytes after the envelope (the next envelope of a delta chain).
///
/// Errors: [`SnapshotError::Sealed`] when `keys` is empty, [`SnapshotError::UnknownSealKey`]
/// when none of them is the one the envelope names, [`SnapshotError::Unseal`] when the
/// authentication fails (the file was altered, or a key with a colliding id), and
/// structural errors for a malformed header. Allocates the inner file only after the length
/// was checked against the input.
pub fn unseal_prefix<'a>(
    bytes: &'a [u8],
    keys: &[SealKey],
) -> Result<(Vec<u8>, &'a [u8]), SnapshotError> {
    let (key_id, nonce, total) = parse_header(bytes)?;
    if keys.is_empty() {
        return Err(SnapshotError::Sealed { key_id });
    }
    let key = keys
        .iter()
        .find(|k| k.key_id() == key_id)
        .ok_or(SnapshotError::UnknownSealKey { key_id })?;
    let (envelope, rest) = bytes.split_at(total);
    let (header, body) = envelope.split_at(SEAL_HEADER_BYTES);
    let (ct, tag) = body.split_at(body.len() - SEAL_TAG_BYTES);
    let mut inner = ct.to_vec();
    let tag =
        <&[u8; SEAL_TAG_BYTES]>::try_from(tag).map_err(|_| SnapshotError::Unseal { key_id })?;
    key.cipher()
        .decrypt_inout_detached(&nonce, header, inner.as_mut_slice().into(), &(*tag).into())
        .map_err(|_| SnapshotError::Unseal { key_id })?;
    Ok((inner, rest))
}

/// Unseal `bytes`, which must be exactly one envelope (see [`unseal_prefix`]).
pub fn unseal(bytes: &[u8], keys: &[SealKey]) -> Result<Vec<u8>, SnapshotError> {
    let (inner, rest) = unseal_prefix(bytes, keys)?;
    if !rest.is_empty() {
        return Err(SnapshotError::Length {
            expected: (bytes.len() - rest.len()) as u64,
            found: bytes.len() as u64,
        });
    }
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SealKey {
        SealKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_chains_and_refusals() {
        let (k1, k2) = (key(1), key(2));
        let a = seal(&k1, b"first file").unwrap();
        let b = seal(&k1, b"").unwrap();
        assert_eq!(a.len(), SEAL_HEADER_BYTES + 10 + SEAL_TAG_BYTES);
        assert_eq!(sealed_key_id(&a), Some(k1.key_id()));
        // Two seals of the same bytes differ (random nonce).
        assert_ne!(seal(&k1, b"first file").unwrap(), a);
        assert_eq!(
            unseal(&a, &[k2.clone(), k1.clone()]).unwrap(),
            b"first file"
        );
        let chain = [a.clone(), b.clone()].concat();
        let (first, rest) = unseal_prefix(&chain, std::slice::from_ref(&k1)).unwrap();
        assert_eq!((first.as_slice(), rest), (&b"first file"[..], &b[..]));
        assert_eq!(unseal(rest, std::slice::from_ref(&k1)).unwrap(), b"");
        assert!(matches!(
            unseal(&chain, std::slice::from_ref(&k1)),
            Err(SnapshotError::Length { .. })
        ));

        assert_eq!(
            unseal(&a, &[]).unwrap_err(),
            SnapshotError::Sealed {
                key_id: k1.key_id()
            }
        );
        assert_eq!(
            unseal(&a, std::slice::from_ref(&k2)).unwrap_err(),
            SnapshotError::UnknownSealKey {
                key_id: k1.key_id()
            }
        );
        // Every single-byte change is refused, none panics.
        for i in 0..a.len() {
            let mut t = a.clone();
            t[i] ^= 0x40;
            assert!(unseal(&t, std::slice::from_ref(&k1)).is_err(), "byte {i}");
        }
        for n in 0..a.len() {
            assert!(
                unseal(&a[..n], std::slice::from_ref(&k1)).is_err(),
                "len {n}"
            );
        }
        // A key whose id was forged onto the envelope still cannot open it.
        let mut forged = seal(&k2, b"x").unwrap();
        forged[off::KEY_ID..off::KEY_ID + 8].copy_from_slice(&k1.key_id().0);
        assert_eq!(
            unseal(&forged, std::slice::from_ref(&k1)).unwrap_err(),
            SnapshotError::Unseal {
                key_id: k1.key_id()
            }
        );
    }

    #[test]
    fn key_file_form_ids_tokens_and_debug() {
        let k = key(0xab);
        let text = k.to_file_text();
        assert_eq!(text, format!("{}\n", "ab".repeat(32)));
        assert_eq!(SealKey::from_hex(&text).unwrap(), k);
        assert_eq!(SealKey::from_hex(&"AB".repeat(32)).unwrap(), k);
        for bad in [
            "",
            "ab",
            &"zz".repeat(32),
            &"ab".repeat(33),
            &"é".repeat(32),
        ] {
            assert!(SealKey::from_hex(bad).is_err(), "{bad:?}");
        }
        assert_ne!(key(1).key_id(), key(2).key_id());
        let token = k.read_token();
        assert_eq!(token.len(), 64);
        assert!(!token.contains(&hex(&k.0)));
        let debug = format!("{k:?}");
        assert!(debug.contains(&k.key_id().to_string()), "{debug}");
        assert!(!debug.contains(&"ab".repeat(4)), "{debug}");
        // Fixed vectors, so another language's reader can check its derivations.
        let zero = SealKey::from_bytes([0; 32]);
        assert_eq!(zero.key_id().to_string(), KEY_ID_ZERO);
        assert_eq!(zero.read_token(), READ_TOKEN_ZERO);
    }

    const KEY_ID_ZERO: &str = "512152cee3a4c95c";
    const READ_TOKEN_ZERO: &str =
        "0c93aaeb22f7fa72a4f34461871c8a19a9e692d131288bceea2bf5719465eca0";
}
