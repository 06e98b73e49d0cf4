//! Deltas: the step from snapshot generation N to N+1 of the same layout, as the new keyed
//! hashes with their bucket, new claim cutoffs and the new header times (`docs/FORMAT.md`).
//!
//! Bloom bits only ever get set between rotations, so N+1 is N with some bits OR-ed in. A
//! delta names the layout it applies to (seed, parameters, bucket sizes) by its layout id and
//! its parent generation, and is refused by any other snapshot. Applying one copies the
//! snapshot, so readers of N keep checking undisturbed while N+1 is built (copy-and-swap).

use std::io::Write;

use ed25519_dalek::{Signature, Signer, SigningKey};
use thiserror::Error;
use xxhash_rust::xxh3::Xxh3Default;

use crate::bloom::{self, BLOCK_BYTES};
use crate::cutoff::{CutoffKey, RECORD_BYTES};
use crate::hash::KeyHash;
use crate::snapshot::format::{self as f, off};
use crate::snapshot::{
    AlignedBytes, EncodeError, OpenOptions, SnapshotError, SnapshotMeta, SnapshotView,
};
use crate::window::{BucketId, Journal, Window};

/// The first eight bytes of every delta.
pub const DELTA_MAGIC: [u8; 8] = *b"RVBLDLTA";
/// The delta format version this crate writes; it also reads version 1. A delta applies only
/// to a snapshot of the same format version.
pub const DELTA_VERSION: u16 = 2;
/// Flag bit (version 2): the signature of the snapshot the delta produces follows the cutoff
/// records, so applying the delta yields the publisher's signed snapshot, byte for byte.
pub(crate) const FLAG_RESULT_SIGNED: u16 = 1 << 1;
/// Bytes of the fixed delta header.
pub(crate) const DELTA_HEADER_BYTES: usize = 80;
/// Bytes of one revocation record: directory index `u32`, key hash `u64`.
pub(crate) const DELTA_RECORD_BYTES: usize = 12;

mod doff {
    pub const VERSION: usize = 8;
    pub const FLAGS: usize = 10;
    pub const RESERVED_A: usize = 12;
    pub const SEED: usize = 16;
    pub const LAYOUT_ID: usize = 24;
    pub const PARENT: usize = 32;
    pub const GENERATION: usize = 40;
    pub const CREATED_AT: usize = 48;
    pub const COVERAGE: usize = 56;
    pub const RECORDS: usize = 64;
    pub const CUTOFFS: usize = 68;
    pub const RESERVED_B: usize = 72;
}

/// A delta that cannot be read or cannot be applied to this snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// The input ends before the delta does.
    #[error("delta truncated: needs {needed} bytes, the input has {len}")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        len: u64,
    },
    /// A header field or record is malformed.
    #[error("invalid delta {field} at offset {offset}: expected {expected}, found {found}")]
    Field {
        /// The field.
        field: &'static str,
        /// Offset within the delta.
        offset: u64,
        /// What a valid value looks like.
        expected: &'static str,
        /// The value found.
        found: u64,
    },
    /// The checksum does not match.
    #[error("delta checksum mismatch at offset {offset}: trailer {expected:#018x}, content {found:#018x}; fetch it again")]
    Checksum {
        /// Offset of the trailer.
        offset: u64,
        /// Stored checksum.
        expected: u64,
        /// Checksum of the content.
        found: u64,
    },
    /// A signature was required but the delta is unsigned.
    #[error("delta is not signed, but a signature is required")]
    Unsigned,
    /// The signature does not verify (or no key was configured to verify a required one).
    #[error("delta signature does not verify under the configured key")]
    Signature,
    /// The delta is signed but no verifying key was configured, and the caller did not opt
    /// out of the check ([`OpenOptions::skip_signature_check`]).
    #[error("the delta is signed, but no verifying key is configured to check it; configure the publisher's public key (e.g. DATA/signing.pub)")]
    SignatureNotChecked,
    /// The delta is a sealed envelope: unseal it first ([`crate::snapshot::unseal_prefix`]).
    #[error("the delta is sealed with seal key id {key_id}; pass that seal key (--seal-key, SyncConfig::seal_key; the publisher's DATA/verifier.key)")]
    Sealed {
        /// The id of the key that opens it.
        key_id: crate::snapshot::SealKeyId,
    },
    /// The delta follows another generation.
    #[error("delta applies to generation {delta_parent}, the snapshot is generation {snapshot}; fetch the deltas since {snapshot} or a full snapshot")]
    Parent {
        /// The snapshot's generation.
        snapshot: u64,
        /// The delta's parent.
        delta_parent: u64,
    },
    /// The delta was made for another layout (rotation, resize, other seed).
    #[error("delta is for layout {delta:#018x}, the snapshot has layout {snapshot:#018x} (seed {}); fetch a full snapshot", if *seed_matches { "matches" } else { "differs" })]
    Layout {
        /// The snapshot's layout id.
        snapshot: u64,
        /// The delta's layout id.
        delta: u64,
        /// Whether at least the hash seeds agree.
        seed_matches: bool,
    },
    /// A record names a bucket the snapshot does not have, or one with no bits.
    #[error("delta record {index} targets bucket {bucket}, which the snapshot cannot take (it has {buckets} buckets; empty ones need a full snapshot)")]
    Bucket {
        /// Record index.
        index: u64,
        /// Directory index named.
        bucket: u64,
        /// Directory entries in the snapshot.
        buckets: u64,
    },
    /// The delta's format version is not the snapshot's.
    #[error("delta format version {delta} does not apply to a snapshot of format version {snapshot}; fetch a full snapshot")]
    Version {
        /// The snapshot's format version.
        snapshot: u16,
        /// The delta's format version.
        delta: u16,
    },
    /// The result would not fit the snapshot format.
    #[error("applying the delta gives an invalid snapshot: {0}")]
    Result(#[from] SnapshotError),
}

/// A validated delta over borrowed bytes.
#[derive(Debug, Clone, Copy)]
pub struct DeltaView<'a> {
    bytes: &'a [u8],
    seed: u64,
    layout_id: u64,
    parent: u64,
    generation: u64,
    created_at: u64,
    coverage: u64,
    records: &'a [u8],
    cutoffs: &'a [u8],
    version: u16,
    /// Signature of the resulting snapshot, when the delta carries one.
    result_signature: Option<&'a [u8]>,
}

fn dfield(field: &'static str, at: usize, expected: &'static str, found: u64) -> DeltaError {
    DeltaError::Field {
        field,
        offset: at as u64,
        expected,
        found,
    }
}

impl<'a> DeltaView<'a> {
    /// Validate `bytes` as exactly one delta.
    pub fn open(bytes: &'a [u8], options: &OpenOptions) -> Result<Self, DeltaError> {
        let (view, rest) = Self::open_prefix(bytes, options)?;
        if !rest.is_empty() {
            return Err(dfield(
                "length",
                view.bytes.len(),
                "no bytes after the delta",
                rest.len() as u64,
            ));
        }
        Ok(view)
    }

    /// Validate the delta at the start of `bytes` and return it with the bytes after it: the
    /// publisher serves a chain N→N+1→… as concatenated deltas.
    pub fn open_prefix(
        bytes: &'a [u8],
        options: &OpenOptions,
    ) -> Result<(Self, &'a [u8]), DeltaError> {
        let len = bytes.len();
        let truncated = |needed: usize| DeltaError::Truncated {
            needed: needed as u64,
            len: len as u64,
        };
        if let Some(key_id) = crate::snapshot::sealed_key_id(bytes) {
            return Err(DeltaError::Sealed { key_id });
        }
        let h = bytes
            .get(..DELTA_HEADER_BYTES)
            .ok_or(truncated(DELTA_HEADER_BYTES))?;
        let u64h = |at| f::u64_at(h, at).unwrap_or(0);
        if h[..8] != DELTA_MAGIC {
            return Err(dfield("magic", 0, "\"RVBLDLTA\"", u64h(0)));
        }
        let version = f::u16_at(h, doff::VERSION).unwrap_or(0);
        if version != DELTA_VERSION && version != 1 {
            return Err(dfield("version", doff::VERSION, "1 or 2", version.into()));
        }
        let flags = f::u16_at(h, doff::FLAGS).unwrap_or(0);
        let known = if version == 1 {
            f::FLAG_SIGNED
        } else {
            f::FLAG_SIGNED | FLAG_RESULT_SIGNED
        };
        if flags & !known != 0 {
            return Err(dfield(
                "flags",
                doff::FLAGS,
                "only bit 0 (signed) and, in version 2, bit 1 (result signed)",
                flags.into(),
            ));
        }
        let result_signed = flags & FLAG_RESULT_SIGNED != 0;
        if f::u32_at(h, doff::RESERVED_A) != Some(0) {
            return Err(dfield("reserved bytes 12..16", doff::RESERVED_A, "0", 1));
        }
        if u64h(doff::RESERVED_B) != 0 {
            return Err(dfield(
                "reserved bytes 72..80",
                doff::RESERVED_B,
                "0",
                u64h(doff::RESERVED_B),
            ));
        }
        let (parent, generation) = (u64h(doff::PARENT), u64h(doff::GENERATION));
        if generation <= parent {
            return Err(dfield(
                "generation",
                doff::GENERATION,
                "> parent generation",
                generation,
            ));
        }
        let nrec = u64::from(f::u32_at(h, doff::RECORDS).unwrap_or(0));
        let ncut = u64::from(f::u32_at(h, doff::CUTOFFS).unwrap_or(0));
        let signed = flags & f::FLAG_SIGNED != 0;
        // In u64, u32 counts of small records cannot overflow; the total is then checked
        // against the input length before any of it is used as an index.
        let tail = (f::CHECKSUM_BYTES + if signed { f::SIGNATURE_BYTES } else { 0 }) as u64;
        let result_sig_len = if result_signed { f::SIGNATURE_BYTES } else { 0 };
        let needed = DELTA_HEADER_BYTES as u64
            + nrec * DELTA_RECORD_BYTES as u64
            + ncut * RECORD_BYTES as u64
            + result_sig_len as u64
            + tail;
        if needed > len as u64 {
            return Err(DeltaError::Truncated {
                needed,
                len: len as u64,
            });
        }
        // All three are <= needed <= len, so they fit a usize.
        let rec_end = DELTA_HEADER_BYTES + nrec as usize * DELTA_RECORD_BYTES;
        let cut_end = rec_end + ncut as usize * RECORD_BYTES;
        let trailer = cut_end + result_sig_len;
        let end = needed as usize;
        let ncut = ncut as usize;
        let records = &bytes[DELTA_HEADER_BYTES..rec_end];
        let cutoffs = &bytes[rec_end..cut_end];
        let result_signature = result_signed.then(|| &bytes[cut_end..trailer]);
        let mut prev = (0u32, 0u64);
        for (i, r) in records.chunks_exact(DELTA_RECORD_BYTES).enumerate() {
            let rec = (f::u32_at(r, 0).unwrap_or(0), f::u64_at(r, 4).unwrap_or(0));
            if i > 0 && rec < prev {
                return Err(dfield(
                    "record order",
                    DELTA_HEADER_BYTES + i * DELTA_RECORD_BYTES,
                    "records sorted by (bucket, hash)",
                    i as u64,
                ));
            }
            prev = rec;
        }
        for i in 1..ncut {
            if f::u64_at(cutoffs, i * RECORD_BYTES) <= f::u64_at(cutoffs, (i - 1) * RECORD_BYTES) {
                return Err(dfield(
                    "cutoff order",
                    rec_end + i * RECORD_BYTES,
                    "fingerprints strictly increasing",
                    i as u64,
                ));
            }
        }
        if options.verify_checksum {
            let stored = f::u64_at(bytes, trailer).unwrap_or(0);
            let actual = f::checksum(&bytes[..trailer]);
            if stored != actual {
                return Err(DeltaError::Checksum {
                    offset: trailer as u64,
                    expected: stored,
                    found: actual,
                });
            }
        }
        let signed_len = trailer + f::CHECKSUM_BYTES;
        match (signed, &options.verifying_key) {
            (false, _) if options.require_signature => return Err(DeltaError::Unsigned),
            (true, None) if options.require_signature => return Err(DeltaError::Signature),
            (true, None) if !options.skip_signature_check => {
                return Err(DeltaError::SignatureNotChecked)
            }
            (true, Some(key)) => {
                let sig = Signature::from_slice(&bytes[signed_len..end])
                    .map_err(|_| DeltaError::Signature)?;
                key.verify_strict(&bytes[..signed_len], &sig)
                    .map_err(|_| DeltaError::Signature)?;
            }
            _ => {}
        }
        let view = DeltaView {
            bytes: &bytes[..end],
            seed: u64h(doff::SEED),
            layout_id: u64h(doff::LAYOUT_ID),
            parent,
            generation,
            created_at: u64h(doff::CREATED_AT),
            coverage: u64h(doff::COVERAGE),
            records,
            cutoffs,
            version,
            result_signature,
        };
        Ok((view, &bytes[end..]))
    }

    /// The generation this delta applies to.
    pub fn parent(&self) -> u64 {
        self.parent
    }
    /// The generation it produces.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// The new generation's `created_at`.
    pub fn created_at(&self) -> u64 {
        self.created_at
    }
    /// The new generation's coverage time.
    pub fn coverage(&self) -> u64 {
        self.coverage
    }
    /// Layout id of the snapshot it applies to.
    pub fn layout_id(&self) -> u64 {
        self.layout_id
    }
    /// Hash seed of the snapshot it applies to.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Number of revocation records.
    /// The delta's format version (1 or 2).
    pub fn version(&self) -> u16 {
        self.version
    }
    /// Whether the delta carries the signature of the snapshot it produces.
    pub fn has_result_signature(&self) -> bool {
        self.result_signature.is_some()
    }
    /// Distinct revocations (records) the delta adds.
    pub fn revocations(&self) -> usize {
        self.records.len() / DELTA_RECORD_BYTES
    }
    /// The delta's bytes (exactly one delta).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Every record: directory index (0 = overflow, 1 + i = i-th ring bucket from the oldest)
    /// and key hash.
    pub fn records(&self) -> impl Iterator<Item = (u32, KeyHash)> + 'a {
        self.records.chunks_exact(DELTA_RECORD_BYTES).map(|r| {
            (
                f::u32_at(r, 0).unwrap_or(0),
                KeyHash(f::u64_at(r, 4).unwrap_or(0)),
            )
        })
    }
    /// The new or raised cutoffs, in fingerprint order.
    pub fn cutoffs(&self) -> impl Iterator<Item = (CutoffKey, u64)> + 'a {
        cutoff_records(self.cutoffs)
    }
}

fn cutoff_records(table: &[u8]) -> impl Iterator<Item = (CutoffKey, u64)> + '_ {
    table.chunks_exact(RECORD_BYTES).map(|r| {
        (
            CutoffKey(f::u64_at(r, 0).unwrap_or(0)),
            f::u64_at(r, 8).unwrap_or(0),
        )
    })
}

/// Write the delta from the snapshot last encoded from `window` (generation `meta.parent`) to
/// generation `meta.generation`: the `journal` taken from the window since then, plus the
/// cutoffs added or raised meanwhile. Returns the bytes written.
///
/// Fails with [`EncodeError::LayoutChanged`] when the journal's layout changed (ship a full
/// snapshot), [`EncodeError::Meta`] when `meta` is not a valid step,
/// [`EncodeError::OutsideRing`] when an entry names a bucket the window no longer has, and
/// [`EncodeError::Io`] when `out` fails.
pub fn encode_delta(
    window: &Window,
    journal: &Journal,
    new_cutoffs: &[(CutoffKey, u64)],
    meta: &SnapshotMeta,
    signing_key: Option<&SigningKey>,
    out: impl Write,
) -> Result<u64, EncodeError> {
    encode_delta_inner(window, journal, new_cutoffs, meta, signing_key, None, out)
}

/// [`encode_delta`] for a signed deployment: the delta is signed with `signing_key` and also
/// carries the signature of `result`, the publisher's signed full snapshot of
/// `meta.generation` (what [`encode`](crate::snapshot::encode) wrote with the same key).
/// Applying the delta then gives exactly `result`, signature included, so a verifier's copy
/// stays a signed file that reopens under the publisher's key.
///
/// Fails as [`encode_delta`] does, and with [`EncodeError::ResultMismatch`] when `result` is
/// not a signed snapshot of `meta.generation` with this window's layout.
pub fn encode_signed_delta(
    window: &Window,
    journal: &Journal,
    new_cutoffs: &[(CutoffKey, u64)],
    meta: &SnapshotMeta,
    signing_key: &SigningKey,
    result: &[u8],
    out: impl Write,
) -> Result<u64, EncodeError> {
    let flags = f::u16_at(result, off::FLAGS).unwrap_or(0);
    let matches = f::u16_at(result, off::VERSION) == Some(f::FORMAT_VERSION)
        && flags & f::FLAG_SIGNED != 0
        && f::u64_at(result, off::GENERATION) == Some(meta.generation)
        && f::u64_at(result, off::LAYOUT_ID) == Some(crate::snapshot::layout_id(window));
    let sig = result
        .len()
        .checked_sub(f::SIGNATURE_BYTES)
        .and_then(|at| result.get(at..))
        .and_then(|s| <[u8; 64]>::try_from(s).ok());
    match sig {
        Some(sig) if matches => encode_delta_inner(
            window,
            journal,
            new_cutoffs,
            meta,
            Some(signing_key),
            Some(sig),
            out,
        ),
        _ => Err(EncodeError::ResultMismatch),
    }
}

fn encode_delta_inner(
    window: &Window,
    journal: &Journal,
    new_cutoffs: &[(CutoffKey, u64)],
    meta: &SnapshotMeta,
    signing_key: Option<&SigningKey>,
    result_signature: Option<[u8; 64]>,
    mut out: impl Write,
) -> Result<u64, EncodeError> {
    meta.validate()?;
    if journal.layout_changed {
        return Err(EncodeError::LayoutChanged);
    }
    let ring = u64::from(window.geometry().buckets);
    let oldest = window.oldest_bucket();
    let mut records = Vec::with_capacity(journal.entries.len());
    for &(id, hash) in &journal.entries {
        let index = match id {
            BucketId::Overflow => 0,
            BucketId::Expiry(b) if b >= oldest && b - oldest < ring => (b - oldest + 1) as u32,
            BucketId::Expiry(bucket) => {
                return Err(EncodeError::OutsideRing {
                    bucket,
                    oldest,
                    buckets: ring,
                })
            }
        };
        records.push((index, hash.0));
    }
    records.sort_unstable();
    let mut cutoffs = new_cutoffs.to_vec();
    // For a repeated key the latest cutoff wins, as in CutoffSet::insert.
    cutoffs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    cutoffs.dedup_by_key(|c| c.0);
    let too_large = |what| EncodeError::TooLarge {
        what,
        format: "delta",
    };
    let nrec = u32::try_from(records.len()).map_err(|_| too_large("record count"))?;
    let ncut = u32::try_from(cutoffs.len()).map_err(|_| too_large("cutoff count"))?;

    let mut buf = Vec::with_capacity(
        DELTA_HEADER_BYTES + records.len() * DELTA_RECORD_BYTES + cutoffs.len() * RECORD_BYTES + 72,
    );
    buf.extend_from_slice(&DELTA_MAGIC);
    buf.extend_from_slice(&DELTA_VERSION.to_le_bytes());
    let mut flags: u16 = if signing_key.is_some() {
        f::FLAG_SIGNED
    } else {
        0
    };
    if result_signature.is_some() {
        flags |= FLAG_RESULT_SIGNED;
    }
    buf.extend_from_slice(&flags.to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    for v in [
        window.hasher().seed(),
        crate::snapshot::layout_id(window),
        meta.parent,
        meta.generation,
        meta.created_at,
        meta.coverage,
    ] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&nrec.to_le_bytes());
    buf.extend_from_slice(&ncut.to_le_bytes());
    buf.extend_from_slice(&[0u8; 8]);
    for (index, hash) in records {
        buf.extend_from_slice(&index.to_le_bytes());
        buf.extend_from_slice(&hash.to_le_bytes());
    }
    for (key, before) in cutoffs {
        buf.extend_from_slice(&key.0.to_le_bytes());
        buf.extend_from_slice(&before.to_le_bytes());
    }
    if let Some(sig) = result_signature {
        buf.extend_from_slice(&sig);
    }
    let sum = f::checksum(&buf);
    buf.extend_from_slice(&sum.to_le_bytes());
    if let Some(key) = signing_key {
        let sig = key.sign(&buf).to_bytes();
        buf.extend_from_slice(&sig);
    }
    out.write_all(&buf)?;
    Ok(buf.len() as u64)
}

impl<B: AsRef<[u8]>> SnapshotView<B> {
    /// The snapshot of generation `delta.generation()`: a copy of this one with the delta's
    /// bits OR-ed in, entry counts raised, cutoffs merged (a later cutoff wins), header times
    /// replaced and the checksum recomputed. The result is unsigned (this process cannot sign
    /// for the publisher) and valid by construction. `self` is untouched, so readers of it
    /// keep going while the new generation is built.
    pub fn apply_delta(
        &self,
        delta: &DeltaView<'_>,
    ) -> Result<SnapshotView<AlignedBytes>, DeltaError> {
        if delta.seed != self.hasher().seed() || delta.layout_id != self.layout_id() {
            return Err(DeltaError::Layout {
                snapshot: self.layout_id(),
                delta: delta.layout_id,
                seed_matches: delta.seed == self.hasher().seed(),
            });
        }
        if delta.version != self.format_version() {
            return Err(DeltaError::Version {
                snapshot: self.format_version(),
                delta: delta.version,
            });
        }
        if delta.parent != self.generation() {
            return Err(DeltaError::Parent {
                snapshot: self.generation(),
                delta_parent: delta.parent,
            });
        }
        let src = self.as_bytes();
        let ext = self.extension_bytes();
        let cutoff_start = src.len() - self.cutoff_table().len() - ext.len() - self.trailer_tail();
        let mut out = Vec::with_capacity(
            cutoff_start + self.cutoff_table().len() + delta.cutoffs.len() + f::CHECKSUM_BYTES,
        );
        out.extend_from_slice(src.get(..cutoff_start).unwrap_or(&[]));

        let buckets = self.bucket_count();
        for (i, (index, hash)) in delta.records().enumerate() {
            let bad = || DeltaError::Bucket {
                index: i as u64,
                bucket: u64::from(index),
                buckets: buckets as u64,
            };
            let (_, _, blocks, offset) = self.bucket_ref(index as usize).ok_or_else(bad)?;
            if blocks == 0 {
                return Err(bad());
            }
            let start = offset + bloom::block_index(hash, blocks) * BLOCK_BYTES;
            let block = out
                .get_mut(start..start + BLOCK_BYTES)
                .and_then(|s| <&mut [u8; BLOCK_BYTES]>::try_from(s).ok())
                .ok_or_else(bad)?;
            bloom::block_bytes_insert(block, hash);
            let at = self.dir_entry_offset(index as usize) + f::dir::ENTRIES;
            let entries = f::u64_at(&out, at).unwrap_or(0);
            f::put_u64(&mut out, at, entries.saturating_add(1));
        }

        // Merge two sorted, unique tables; on a shared key the later cutoff wins.
        let (mut a, mut b) = (self.cutoffs().peekable(), delta.cutoffs().peekable());
        let mut count = 0u64;
        loop {
            let next = match (a.peek().copied(), b.peek().copied()) {
                (None, None) => break,
                (Some(x), None) => {
                    a.next();
                    x
                }
                (None, Some(y)) => {
                    b.next();
                    y
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    a.next();
                    x
                }
                (Some(x), Some(y)) if y.0 < x.0 => {
                    b.next();
                    y
                }
                (Some(x), Some(y)) => {
                    a.next();
                    b.next();
                    (x.0, x.1.max(y.1))
                }
            };
            out.extend_from_slice(&next.0 .0.to_le_bytes());
            out.extend_from_slice(&next.1.to_le_bytes());
            count += 1;
        }
        let count = u32::try_from(count).map_err(|_| {
            DeltaError::Result(SnapshotError::Field {
                field: "cutoff count",
                offset: off::CUTOFF_COUNT as u64,
                expected: "at most u32::MAX records",
                found: count,
            })
        })?;
        let ext_offset = out.len() as u64;
        out.extend_from_slice(ext);
        let mut flags = f::u16_at(&out, off::FLAGS).unwrap_or(0) & !f::FLAG_SIGNED;
        if delta.result_signature.is_some() {
            flags |= f::FLAG_SIGNED;
        }
        if count > 0 {
            flags |= f::FLAG_CUTOFFS;
        } else {
            flags &= !f::FLAG_CUTOFFS;
        }
        if let Some(s) = out.get_mut(off::FLAGS..off::FLAGS + 2) {
            s.copy_from_slice(&flags.to_le_bytes());
        }
        if let Some(s) = out.get_mut(off::CUTOFF_COUNT..off::CUTOFF_COUNT + 4) {
            s.copy_from_slice(&count.to_le_bytes());
        }
        let trailer = out.len() as u64;
        for (at, v) in [
            (off::GENERATION, delta.generation),
            (off::PARENT, delta.parent),
            (off::CREATED_AT, delta.created_at),
            (off::COVERAGE, delta.coverage),
            (off::TRAILER_OFFSET, trailer),
        ] {
            f::put_u64(&mut out, at, v);
        }
        if self.format_version() != f::FORMAT_VERSION_1 {
            f::put_u64(&mut out, off::EXT_OFFSET, ext_offset);
        }
        let mut h = Xxh3Default::new();
        h.update(&out);
        out.extend_from_slice(&h.digest().to_le_bytes());
        if let Some(sig) = delta.result_signature {
            out.extend_from_slice(sig);
        }
        // Re-validate the structure (cheap: header, directory, cutoff order); the checksum was
        // just computed over these very bytes.
        // The delta's own signature was checked when it was opened; the result's signature
        // (when it carries one) is the one a verifier's snapshot would hold.
        // Copied once more into a line-aligned buffer, as `open_owned` does, so the next
        // generation checks as fast as a freshly opened one.
        Ok(SnapshotView::open(
            AlignedBytes::copy_from(&out),
            &OpenOptions::new()
                .verify_checksum(false)
                .skip_signature_check(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WindowConfig;

    /// A sink that refuses every write.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "disk full",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_keeps_its_cause() {
        use std::error::Error as _;
        let now = 1_767_225_600;
        let mut window = Window::with_seed(WindowConfig::default(), now, 7).unwrap();
        window.enable_journal();
        window.insert("t", Some(now + 60));
        let journal = window.take_journal();
        let meta = SnapshotMeta::first(now).next(now + 1);
        let e = encode_delta(&window, &journal, &[], &meta, None, Full).unwrap_err();
        assert!(matches!(e, EncodeError::Io(_)), "{e}");
        let cause = e.source().and_then(|c| c.downcast_ref::<std::io::Error>());
        assert_eq!(
            cause.map(|c| c.kind()),
            Some(std::io::ErrorKind::StorageFull)
        );
    }
}
