//! Byte layout of snapshot formats v1 and v2: offsets, sizes and the small helpers both the
//! writer and the reader use, so the two cannot drift apart. `docs/FORMAT.md` is the prose
//! version.

use xxhash_rust::xxh3::Xxh3Default;

/// The first eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"RVBLSNAP";

/// The snapshot format version this crate writes. It reads this one and version 1, and
/// refuses any other instead of guessing: a new layout gets a new
/// number (and new golden fixtures).
pub const FORMAT_VERSION: u16 = 2;
/// The first format version, still read: 160-byte header, keys issuer-qualified when the
/// verifier names an issuer, no deployment bounds beyond horizon and leeway.
pub const FORMAT_VERSION_1: u16 = 1;

/// Flag bit: an Ed25519 signature follows the checksum trailer.
pub const FLAG_SIGNED: u16 = 1 << 0;
/// Flag bit: the claim-cutoff table holds at least one record.
pub const FLAG_CUTOFFS: u16 = 1 << 1;
/// Flag bits a v1 reader understands; any other bit set is rejected (reserved for future
/// sections, which must be refused by readers that cannot honour them).
pub const KNOWN_FLAGS: u16 = FLAG_SIGNED | FLAG_CUTOFFS;

/// Bytes of the fixed header of a version 1 file.
pub const HEADER_BYTES_V1: usize = 160;
/// Bytes of the fixed header of a version 2 file.
pub const HEADER_BYTES: usize = 192;

/// Header bytes of a file of `version` (either known version).
pub const fn header_bytes(version: u16) -> usize {
    if version == FORMAT_VERSION_1 {
        HEADER_BYTES_V1
    } else {
        HEADER_BYTES
    }
}

/// Bytes of an extension record's head (type, flags, length).
pub const EXT_HEAD_BYTES: usize = 8;
/// Extension records are padded with zeros to a multiple of this.
pub const EXT_ALIGN: usize = 8;
/// Extension record flag: a reader that does not know the type must refuse the file.
pub const EXT_CRITICAL: u16 = 1 << 0;
/// Extension type 1: the issuer assumed for tokens without `iss` (UTF-8, normalised, critical).
pub const EXT_DEFAULT_ISS: u16 = 1;
/// Longest default issuer, in bytes.
pub const MAX_DEFAULT_ISS_BYTES: usize = 1024;
/// Extension type 2: the claims the cutoff table holds cutoffs for (critical).
pub const EXT_CUTOFF_CLAIMS: u16 = 2;
/// Bytes of one bucket directory entry.
pub const DIR_ENTRY_BYTES: usize = 32;
/// Alignment of every bit array, relative to the start of the file: one cache line.
pub const ALIGN: usize = 64;
/// Bytes of the checksum trailer (xxh3-64, little-endian).
pub const CHECKSUM_BYTES: usize = 8;
/// Bytes of the optional Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// The directory `number` of the overflow bucket, which has no expiry bucket number.
pub const OVERFLOW_NUMBER: u64 = u64::MAX;

/// Header field offsets (see `docs/FORMAT.md` for the table).
pub mod off {
    /// `[u8; 8]` magic.
    pub const MAGIC: usize = 0;
    /// `u16` format version.
    pub const VERSION: usize = 8;
    /// `u16` flags.
    pub const FLAGS: usize = 10;
    /// `u8` hash algorithm id.
    pub const HASH_ALG: usize = 12;
    /// 3 reserved zero bytes.
    pub const RESERVED_A: usize = 13;
    /// `u64` hash seed.
    pub const SEED: usize = 16;
    /// `u64` bucket width, seconds.
    pub const WIDTH: usize = 24;
    /// `u64` horizon, seconds.
    pub const HORIZON: usize = 32;
    /// `u64` leeway, seconds.
    pub const LEEWAY: usize = 40;
    /// `f64` target false-positive rate.
    pub const FP_RATE: usize = 48;
    /// `f64` load target, keys per block.
    pub const MAX_LOAD: usize = 56;
    /// `u64` generation.
    pub const GENERATION: usize = 64;
    /// `u64` parent generation.
    pub const PARENT: usize = 72;
    /// `u64` layout id (digest of seed, parameters and directory shape).
    pub const LAYOUT_ID: usize = 80;
    /// `u64` the publisher window's layout epoch (informative).
    pub const LAYOUT_EPOCH: usize = 88;
    /// `u64` created_at, unix seconds.
    pub const CREATED_AT: usize = 96;
    /// `u64` coverage, unix seconds.
    pub const COVERAGE: usize = 104;
    /// `u64` oldest live bucket number.
    pub const OLDEST: usize = 112;
    /// `u32` directory entries (overflow + ring).
    pub const BUCKET_COUNT: usize = 120;
    /// `u32` cutoff records.
    pub const CUTOFF_COUNT: usize = 124;
    /// `u64` offset of the cutoff table.
    pub const CUTOFF_OFFSET: usize = 128;
    /// `u64` offset of the checksum trailer.
    pub const TRAILER_OFFSET: usize = 136;
    /// 16 reserved zero bytes (version 1).
    pub const RESERVED_B: usize = 144;
    /// `u64` longest token lifetime, seconds (version 2).
    pub const MAX_TOKEN_LIFETIME: usize = 144;
    /// `u64` largest clock skew, seconds (version 2).
    pub const MAX_CLOCK_SKEW: usize = 152;
    /// `u64` offset of the extension section (version 2).
    pub const EXT_OFFSET: usize = 160;
    /// `u32` bytes of the extension section (version 2).
    pub const EXT_LEN: usize = 168;
    /// 20 reserved zero bytes (version 2).
    pub const RESERVED_C: usize = 172;
}

/// Directory entry field offsets, relative to the entry.
pub mod dir {
    /// `u64` expiry bucket number ([`super::OVERFLOW_NUMBER`] for the overflow bucket).
    pub const NUMBER: usize = 0;
    /// `u64` distinct revocations held.
    pub const ENTRIES: usize = 8;
    /// `u32` 64-byte blocks.
    pub const BLOCKS: usize = 16;
    /// `u32` reserved zero.
    pub const RESERVED: usize = 20;
    /// `u64` offset of the bit array from the start of the file.
    pub const OFFSET: usize = 24;
}

/// Hash algorithms a snapshot can declare for its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// xxh3-64 with the header's seed ([`crate::KeyHasher`]).
    Xxh3_64 = 1,
}

impl TryFrom<u8> for HashAlgorithm {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(HashAlgorithm::Xxh3_64),
            other => Err(other),
        }
    }
}

/// Round `n` up to a multiple of [`ALIGN`] (`None` on overflow).
pub fn align_up(n: usize) -> Option<usize> {
    n.checked_add(ALIGN - 1).map(|v| v & !(ALIGN - 1))
}

/// The ring length a window with these parameters has: `ceil((horizon + 2 leeway) / width) + 1`,
/// as in [`crate::WindowConfig::validate`]. `None` if the arithmetic overflows or width is 0.
pub fn ring_len(width: u64, horizon: u64, leeway: u64) -> Option<u64> {
    let span = horizon.checked_add(leeway.checked_mul(2)?)?;
    if width == 0 {
        return None;
    }
    span.div_ceil(width).checked_add(1)
}

/// Digest identifying a layout: the 48 parameter bytes at offsets 16..64 (seed, width, horizon,
/// leeway, fp rate, load target), in version 2 also the bounds (offsets 144..160) and the
/// extension section, then the oldest bucket number and each directory entry's
/// `(number, blocks)`. Two snapshots with equal layout ids put every key's bits at the same
/// byte positions and share every parameter a delta cannot change, which is what lets a delta
/// be applied to one of them.
pub struct LayoutDigest(Xxh3Default);

impl LayoutDigest {
    /// Version 1: start from the parameter bytes and the oldest bucket.
    pub fn new(params: &[u8], oldest: u64) -> Self {
        let mut h = Xxh3Default::new();
        h.update(b"revbloom.layout.1");
        h.update(params);
        h.update(&oldest.to_le_bytes());
        LayoutDigest(h)
    }
    /// Version 2: the parameter bytes, the bounds bytes (144..160), the extension section and
    /// the oldest bucket.
    pub fn new_v2(params: &[u8], bounds: &[u8], extensions: &[u8], oldest: u64) -> Self {
        let mut h = Xxh3Default::new();
        h.update(b"revbloom.layout.2");
        h.update(params);
        h.update(bounds);
        h.update(&(extensions.len() as u64).to_le_bytes());
        h.update(extensions);
        h.update(&oldest.to_le_bytes());
        LayoutDigest(h)
    }
    /// Add one directory entry's shape.
    pub fn bucket(&mut self, number: u64, blocks: u32) {
        self.0.update(&number.to_le_bytes());
        self.0.update(&blocks.to_le_bytes());
    }
    /// The layout id.
    pub fn finish(&self) -> u64 {
        self.0.digest()
    }
}

/// Read a little-endian `u64` at `at`, or `None` past the end.
#[inline]
pub fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let s = bytes.get(at..at.checked_add(8)?)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(s);
    Some(u64::from_le_bytes(b))
}

/// Read a little-endian `u32` at `at`, or `None` past the end.
#[inline]
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let s = bytes.get(at..at.checked_add(4)?)?;
    let mut b = [0u8; 4];
    b.copy_from_slice(s);
    Some(u32::from_le_bytes(b))
}

/// Read a little-endian `u16` at `at`, or `None` past the end.
#[inline]
pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let s = bytes.get(at..at.checked_add(2)?)?;
    let mut b = [0u8; 2];
    b.copy_from_slice(s);
    Some(u16::from_le_bytes(b))
}

/// Overwrite the little-endian `u64` at `at` (no-op past the end; callers write into buffers
/// whose size they computed).
#[inline]
pub fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    if let Some(s) = at.checked_add(8).and_then(|end| bytes.get_mut(at..end)) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// The extension section: a critical record of type [`EXT_DEFAULT_ISS`] holding
/// `default_iss`, then one of type [`EXT_CUTOFF_CLAIMS`] listing `cutoff_claims` (each a `u8`
/// length and the name; the caller passes them sorted, unique, 1 to
/// [`MAX_CLAIM_NAME_BYTES`](crate::cutoff::MAX_CLAIM_NAME_BYTES) bytes each), each record
/// zero-padded to [`EXT_ALIGN`]; a record is left out when it would be empty.
pub fn extensions<S: AsRef<str>>(default_iss: Option<&str>, cutoff_claims: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut record = |ty: u16, value: &[u8]| {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&EXT_CRITICAL.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(EXT_ALIGN) * EXT_ALIGN, 0);
    };
    if let Some(iss) = default_iss {
        record(EXT_DEFAULT_ISS, iss.as_bytes());
    }
    if !cutoff_claims.is_empty() {
        let mut value = Vec::new();
        for name in cutoff_claims {
            let name = name.as_ref().as_bytes();
            value.push(name.len() as u8);
            value.extend_from_slice(name);
        }
        record(EXT_CUTOFF_CLAIMS, &value);
    }
    out
}

/// xxh3-64 (seed 0) of `bytes`: the checksum trailer.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
