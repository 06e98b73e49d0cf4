//! Why a snapshot was refused: what is wrong, and where.

use thiserror::Error;

/// A snapshot that cannot be used. Every variant says which field or byte range is at fault
/// and what was expected, so the message can go to an operator as is; none of them leaves a
/// partly validated view behind.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The input ends before a structure it must contain.
    #[error("snapshot truncated: {what} needs {needed} bytes, the input has {len}; fetch the file again")]
    Truncated {
        /// The structure that did not fit.
        what: &'static str,
        /// Bytes needed from the start of the file.
        needed: u64,
        /// Bytes available.
        len: u64,
    },
    /// The first eight bytes are not the snapshot magic.
    #[error("not a revbloom snapshot: magic {found:02x?} at offset 0, expected \"RVBLSNAP\"")]
    Magic {
        /// The bytes found.
        found: [u8; 8],
    },
    /// A format version this reader does not know.
    #[error("snapshot format version {found} is not supported (this reader reads version {expected}); upgrade revbloom or rebuild the snapshot")]
    Version {
        /// The version this reader supports.
        expected: u16,
        /// The version in the file.
        found: u16,
    },
    /// Flag bits this reader does not know are set (a newer writer's sections).
    #[error("snapshot flags 0x{flags:04x} at offset 10 set reserved bits 0x{unknown:04x}; this reader cannot honour them")]
    Flags {
        /// All flags.
        flags: u16,
        /// The unknown bits.
        unknown: u16,
    },
    /// An unknown hash algorithm id.
    #[error("unknown hash algorithm id {found} at offset 12 (1 = xxh3-64)")]
    HashAlgorithm {
        /// The id found.
        found: u8,
    },
    /// Reserved bytes are not zero.
    #[error("reserved bytes of {field} at offset {offset} must be zero")]
    Reserved {
        /// Which reserved field.
        field: &'static str,
        /// File offset of the first non-zero byte.
        offset: u64,
    },
    /// A header or directory field holds a value outside its valid range.
    #[error("invalid {field} at offset {offset}: expected {expected}, found {found}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its file offset.
        offset: u64,
        /// What a valid value looks like.
        expected: &'static str,
        /// The value found (floats as their bit pattern).
        found: u64,
    },
    /// A section does not start where the layout puts it.
    #[error("{field} at offset {offset} is {found}, expected {expected}: sections must follow each other as docs/FORMAT.md lays out")]
    Offset {
        /// The offset field.
        field: &'static str,
        /// File offset of the field.
        offset: u64,
        /// Where the section must start.
        expected: u64,
        /// Where the file says it starts.
        found: u64,
    },
    /// The file is longer or shorter than its header says.
    #[error("snapshot length is {found} bytes, the header implies {expected}")]
    Length {
        /// Length implied by the header.
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// The layout id does not match the parameters and directory.
    #[error("layout id at offset 80 is {found:#018x}, the parameters and directory give {expected:#018x}")]
    LayoutId {
        /// Digest computed from the file.
        expected: u64,
        /// Value stored in the header.
        found: u64,
    },
    /// The claim-cutoff table is not strictly sorted by fingerprint.
    #[error(
        "cutoff record {index} at offset {offset} is not strictly greater than its predecessor"
    )]
    CutoffOrder {
        /// Index of the out-of-order record.
        index: u64,
        /// Its file offset.
        offset: u64,
    },
    /// The checksum trailer does not match the bytes before it.
    #[error("checksum mismatch at offset {offset}: trailer says {expected:#018x}, content hashes to {found:#018x}; the file is corrupt, fetch it again")]
    Checksum {
        /// Offset of the trailer.
        offset: u64,
        /// Checksum stored in the trailer.
        expected: u64,
        /// Checksum of the content.
        found: u64,
    },
    /// A signature was required but the file is unsigned.
    #[error("snapshot is not signed, but a signature is required; configure the publisher's signing key")]
    Unsigned,
    /// The signature does not verify under the configured key.
    #[error("snapshot signature does not verify under the configured key: wrong key, or the file was altered")]
    Signature,
    /// The file is signed but no verifying key was configured, and the caller did not opt out
    /// of the check ([`OpenOptions::skip_signature_check`](super::OpenOptions::skip_signature_check)).
    #[error("the file is signed, but no verifying key is configured to check it; configure the publisher's public key (e.g. DATA/signing.pub)")]
    SignatureNotChecked,
    /// The file is a sealed envelope and no seal key was given.
    #[error("the file is sealed with seal key id {key_id}; pass that seal key (--seal-key, SyncConfig::seal_key, OpenOptions::seal_key; the publisher's DATA/verifier.key)")]
    Sealed {
        /// The id of the key that opens it.
        key_id: super::SealKeyId,
    },
    /// The file is sealed under a key none of the given seal keys is.
    #[error("the file is sealed with seal key id {key_id}, which is none of the configured seal keys; add the publisher's current key (DATA/verifier.key)")]
    UnknownSealKey {
        /// The id of the key that opens it.
        key_id: super::SealKeyId,
    },
    /// The envelope does not authenticate under the key its id names: altered, or damaged.
    #[error("the sealed file does not authenticate under seal key id {key_id}: it was altered or damaged; fetch it again")]
    Unseal {
        /// The id of the key tried.
        key_id: super::SealKeyId,
    },
}

/// A [`SnapshotMeta`](super::SnapshotMeta) that is not a valid generation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MetaError {
    /// Generation 0 is reserved for "no snapshot yet".
    #[error("snapshot generation must be at least 1")]
    GenerationZero,
    /// The parent is not an earlier generation.
    #[error("snapshot parent generation {parent} must be less than its generation {generation}")]
    ParentNotBefore {
        /// The generation being written.
        generation: u64,
        /// The parent it names.
        parent: u64,
    },
}

/// Why a snapshot or delta could not be written. Every variant but [`EncodeError::Io`] is a
/// caller mistake or a size limit of the format, found before anything is written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The generation numbers are not a valid step.
    #[error("invalid generation step: {0}")]
    Meta(#[from] MetaError),
    /// The window's layout changed since the snapshot a delta would apply to.
    #[error(
        "the window's layout changed since the last snapshot: publish a full snapshot, not a delta"
    )]
    LayoutChanged,
    /// A journal entry names a bucket the window no longer has.
    #[error("journal entry for bucket {bucket} lies outside the window's ring (oldest bucket {oldest}, {buckets} buckets): publish a full snapshot, not a delta")]
    OutsideRing {
        /// The entry's bucket number.
        bucket: u64,
        /// The window's oldest bucket.
        oldest: u64,
        /// Buckets in the ring.
        buckets: u64,
    },
    /// A count or section does not fit its field in the file format.
    #[error("{what} does not fit the {format} format")]
    TooLarge {
        /// What overflowed, e.g. `bucket count`.
        what: &'static str,
        /// `snapshot` or `delta`.
        format: &'static str,
    },
    /// The window's default issuer is longer than a snapshot can carry.
    #[error("the default issuer is {len} bytes, more than the {max} a snapshot can carry; configure a shorter default_iss")]
    DefaultIssuerTooLong {
        /// Its length in bytes.
        len: usize,
        /// The format's limit in bytes.
        max: usize,
    },
    /// `encode_signed_delta` was given a `result` that is not the signed snapshot of the
    /// delta's generation and the window's layout.
    #[error("the result must be the signed snapshot of this generation and layout")]
    ResultMismatch,
    /// Writing the encoded bytes failed.
    #[error("could not write the encoded bytes: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{encode_to_vec, SnapshotMeta};
    use crate::{CutoffSet, Window, WindowConfig};

    #[test]
    fn an_invalid_generation_step_keeps_its_cause() {
        use std::error::Error as _;
        let now = 1_767_225_600;
        let window = Window::with_seed(WindowConfig::default(), now, 7).unwrap();
        let meta = SnapshotMeta {
            generation: 3,
            parent: 3,
            created_at: now,
            coverage: now,
        };
        let e = encode_to_vec(&window, &CutoffSet::new(), &meta, None).unwrap_err();
        assert!(matches!(e, EncodeError::Meta(_)), "{e}");
        assert_eq!(
            e.source().and_then(|c| c.downcast_ref::<MetaError>()),
            Some(&MetaError::ParentNotBefore {
                generation: 3,
                parent: 3
            })
        );
        let first = SnapshotMeta {
            generation: 0,
            ..meta
        };
        assert_eq!(first.validate(), Err(MetaError::GenerationZero));
    }
}
