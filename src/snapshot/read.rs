//! Reading a snapshot in place: [`SnapshotView`] validates once, then checks against the bytes.

use super::bytes::AlignedBytes;
use super::error::SnapshotError;
use super::format::{self as f, off, HashAlgorithm, LayoutDigest};
use super::options::{verify_signature, OpenOptions, SignatureStatus};
use crate::bloom::probe::{BlockRef, Probe};
use crate::bloom::{self, BLOCK_BYTES, WORDS};
use crate::bounds::Bounds;
use crate::config::{BucketDivisor, MAX_BUCKETS, MAX_CLOCK_SKEW_SECS, MIN_FP_RATE};
use crate::cutoff::{same_claim, ClaimHasher, CutoffIndex, CutoffKey, RECORD_BYTES};
use crate::hash::{KeyHash, KeyHasher};
use crate::window::{BucketId, BucketStats, Verdict};

/// Where one bucket's bits live in the input (validated at open).
#[derive(Debug, Clone, Copy)]
struct BucketRef {
    number: u64,
    entries: u64,
    offset: usize,
    blocks: u32,
}

/// A validated snapshot over any byte container: `Vec<u8>`, `&[u8]`, a memory map. The bit
/// arrays are read in place, never copied.
///
/// `open` checks every field before use; after that [`SnapshotView::check`] gives exactly the
/// verdicts of the [`Window`](crate::Window) it was encoded from, in constant time, without
/// allocating.
#[derive(Clone)]
pub struct SnapshotView<B> {
    bytes: B,
    hasher: KeyHasher,
    width: u64,
    /// `exp / width` without a divide on the check path.
    div: BucketDivisor,
    horizon: u64,
    leeway: u64,
    fp_rate: f64,
    max_load: f64,
    oldest: u64,
    ring_len: u64,
    generation: u64,
    parent: u64,
    layout_id: u64,
    layout_epoch: u64,
    created_at: u64,
    coverage: u64,
    version: u16,
    header_len: usize,
    bounds: Bounds,
    /// Byte range of the default issuer in the input, if the file names one.
    default_iss: Option<(usize, usize)>,
    /// The claims the cutoff table holds cutoffs for (extension type 2), sorted.
    cutoff_claims: Box<[Box<str>]>,
    /// Each listed claim's fingerprint space under no issuer and under the default issuer,
    /// derived at open (see [`SnapshotView::claim_hasher`]).
    claim_spaces: Box<[(ClaimHasher, Option<ClaimHasher>)]>,
    dir: Vec<BucketRef>,
    cutoffs: (usize, usize),
    /// Presence filter and radix directory over the cutoff table, built at open.
    cutoff_index: CutoffIndex,
    trailer: usize,
    signature: SignatureStatus,
    /// The block probe this CPU runs, chosen once at open.
    probe: Probe,
}

fn truncated(what: &'static str, needed: usize, len: usize) -> SnapshotError {
    SnapshotError::Truncated {
        what,
        needed: needed as u64,
        len: len as u64,
    }
}

fn field(field: &'static str, at: usize, expected: &'static str, found: u64) -> SnapshotError {
    SnapshotError::Field {
        field,
        offset: at as u64,
        expected,
        found,
    }
}

fn zero(bytes: &[u8], from: usize, to: usize, name: &'static str) -> Result<(), SnapshotError> {
    match bytes.get(from..to) {
        Some(s) => match s.iter().position(|&b| b != 0) {
            None => Ok(()),
            Some(i) => Err(SnapshotError::Reserved {
                field: name,
                offset: (from + i) as u64,
            }),
        },
        None => Err(truncated(name, to, bytes.len())),
    }
}

impl SnapshotView<AlignedBytes> {
    /// [`SnapshotView::open`] over a copy of `bytes` that starts on a cache line
    /// ([`AlignedBytes`]), so that each bit-array block is one line: a `Vec<u8>` is only
    /// 16-byte aligned, and a check over it touches two lines. A sealed file is unsealed with
    /// the options' seal keys ([`OpenOptions::seal_key`]) first; a plaintext file is opened as
    /// it is. Either way the view holds the plaintext snapshot, so checks cost the same.
    pub fn open_owned(bytes: Vec<u8>, options: &OpenOptions) -> Result<Self, SnapshotError> {
        if super::seal::is_sealed(&bytes) {
            let inner = super::seal::unseal(&bytes, &options.seal_keys)?;
            Self::open(AlignedBytes::copy_from(&inner), options)
        } else {
            Self::open(AlignedBytes::copy_from(&bytes), options)
        }
    }
}

impl<B: AsRef<[u8]>> SnapshotView<B> {
    /// Validate `bytes` as a snapshot and view it. A sealed envelope is refused with
    /// [`SnapshotError::Sealed`] (or [`SnapshotError::UnknownSealKey`] when the options hold
    /// other seal keys): unsealing needs a new buffer, see [`SnapshotView::open_owned`].
    /// Never panics; allocates only the bucket directory index, whose size is checked against
    /// the input length first.
    pub fn open(bytes: B, options: &OpenOptions) -> Result<Self, SnapshotError> {
        let b = bytes.as_ref();
        let len = b.len();
        if let Some(key_id) = super::seal::sealed_key_id(b) {
            return Err(
                if options.seal_keys.iter().any(|k| k.key_id() == key_id)
                    || options.seal_keys.is_empty()
                {
                    SnapshotError::Sealed { key_id }
                } else {
                    SnapshotError::UnknownSealKey { key_id }
                },
            );
        }
        let head = b
            .get(..f::HEADER_BYTES_V1)
            .ok_or_else(|| truncated("header", f::HEADER_BYTES_V1, len))?;
        let u64h = |at: usize| f::u64_at(head, at).unwrap_or(0);
        let u32h = |at: usize| f::u32_at(head, at).unwrap_or(0);

        let mut magic = [0u8; 8];
        magic.copy_from_slice(&head[..8]);
        if magic != f::MAGIC {
            return Err(SnapshotError::Magic { found: magic });
        }
        let version = f::u16_at(head, off::VERSION).unwrap_or(0);
        if version != f::FORMAT_VERSION && version != f::FORMAT_VERSION_1 {
            return Err(SnapshotError::Version {
                expected: f::FORMAT_VERSION,
                found: version,
            });
        }
        let header_len = f::header_bytes(version);
        let head = b
            .get(..header_len)
            .ok_or_else(|| truncated("header", header_len, len))?;
        let flags = f::u16_at(head, off::FLAGS).unwrap_or(0);
        if flags & !f::KNOWN_FLAGS != 0 {
            return Err(SnapshotError::Flags {
                flags,
                unknown: flags & !f::KNOWN_FLAGS,
            });
        }
        let alg = head[off::HASH_ALG];
        match HashAlgorithm::try_from(alg) {
            Ok(HashAlgorithm::Xxh3_64) => {}
            Err(found) => return Err(SnapshotError::HashAlgorithm { found }),
        }
        zero(
            head,
            off::RESERVED_A,
            off::SEED,
            "reserved header bytes 13..16",
        )?;
        if version == f::FORMAT_VERSION_1 {
            zero(
                head,
                off::RESERVED_B,
                f::HEADER_BYTES_V1,
                "reserved header bytes 144..160",
            )?;
        } else {
            zero(
                head,
                off::RESERVED_C,
                f::HEADER_BYTES,
                "reserved header bytes 172..192",
            )?;
        }

        let (width, horizon, leeway) = (u64h(off::WIDTH), u64h(off::HORIZON), u64h(off::LEEWAY));
        if width == 0 {
            return Err(field("bucket width", off::WIDTH, "> 0", width));
        }
        if horizon == 0 || horizon % width != 0 {
            return Err(field(
                "horizon",
                off::HORIZON,
                "a non-zero multiple of the bucket width",
                horizon,
            ));
        }
        if leeway > horizon {
            return Err(field("leeway", off::LEEWAY, "<= horizon", leeway));
        }
        let bounds = if version == f::FORMAT_VERSION_1 {
            // Version 1 files predate explicit bounds: the ring's horizon is the longest
            // lifetime they can vouch for, and clocks are taken to agree.
            Bounds {
                max_token_lifetime: horizon,
                leeway,
                max_clock_skew: 0,
            }
        } else {
            let lifetime = u64h(off::MAX_TOKEN_LIFETIME);
            if lifetime == 0 {
                return Err(field(
                    "max token lifetime",
                    off::MAX_TOKEN_LIFETIME,
                    "> 0",
                    lifetime,
                ));
            }
            let skew = u64h(off::MAX_CLOCK_SKEW);
            if skew > MAX_CLOCK_SKEW_SECS {
                return Err(field(
                    "max clock skew",
                    off::MAX_CLOCK_SKEW,
                    "at most 3600 seconds",
                    skew,
                ));
            }
            Bounds {
                max_token_lifetime: lifetime,
                leeway,
                max_clock_skew: skew,
            }
        };
        let fp_rate = f64::from_bits(u64h(off::FP_RATE));
        if !(MIN_FP_RATE..1.0).contains(&fp_rate) {
            return Err(field(
                "fp rate",
                off::FP_RATE,
                "an f64 in [1e-6, 1)",
                fp_rate.to_bits(),
            ));
        }
        let max_load = f64::from_bits(u64h(off::MAX_LOAD));
        if !(max_load > 0.0 && max_load <= bloom::BLOCK_BITS as f64) {
            return Err(field(
                "load target",
                off::MAX_LOAD,
                "an f64 in (0, 512]",
                max_load.to_bits(),
            ));
        }
        let (generation, parent) = (u64h(off::GENERATION), u64h(off::PARENT));
        if generation == 0 {
            return Err(field("generation", off::GENERATION, ">= 1", generation));
        }
        if parent >= generation {
            return Err(field(
                "parent generation",
                off::PARENT,
                "< generation",
                parent,
            ));
        }
        let ring_len = f::ring_len(width, horizon, leeway)
            .filter(|&n| n <= MAX_BUCKETS)
            .ok_or_else(|| field("horizon", off::HORIZON, "at most 65536 buckets", horizon))?;
        let count = u32h(off::BUCKET_COUNT);
        if u64::from(count) != ring_len + 1 {
            return Err(field(
                "bucket count",
                off::BUCKET_COUNT,
                "ring length + 1 from the window parameters",
                count.into(),
            ));
        }
        let oldest = u64h(off::OLDEST);
        if oldest
            .checked_add(ring_len)
            .is_none_or(|end| end == f::OVERFLOW_NUMBER)
        {
            return Err(field(
                "oldest bucket",
                off::OLDEST,
                "a bucket number leaving room for the ring",
                oldest,
            ));
        }

        // Directory: its size is bounded by the input length before anything is allocated.
        let count = count as usize;
        let dir_end = header_len + count * f::DIR_ENTRY_BYTES; // count <= 65537: no overflow
        if dir_end > len {
            return Err(truncated("bucket directory", dir_end, len));
        }
        let bits_start =
            f::align_up(dir_end).ok_or_else(|| truncated("bit arrays", usize::MAX, len))?;
        zero(b, dir_end, bits_start, "padding before the bit arrays")?;
        let mut dir = Vec::with_capacity(count);
        let mut entries_shape = Vec::with_capacity(count);
        let mut next = bits_start;
        for i in 0..count {
            let at = header_len + i * f::DIR_ENTRY_BYTES;
            let e = &b[at..at + f::DIR_ENTRY_BYTES];
            let number = f::u64_at(e, f::dir::NUMBER).unwrap_or(0);
            let want = if i == 0 {
                f::OVERFLOW_NUMBER
            } else {
                oldest + (i as u64 - 1)
            };
            if number != want {
                return Err(field(
                    "bucket number",
                    at,
                    "overflow (u64::MAX) first, then oldest, oldest+1, ...",
                    number,
                ));
            }
            zero(
                b,
                at + f::dir::RESERVED,
                at + f::dir::OFFSET,
                "directory entry reserved bytes",
            )?;
            let blocks = f::u32_at(e, f::dir::BLOCKS).unwrap_or(0);
            let offset = f::u64_at(e, f::dir::OFFSET).unwrap_or(0);
            if offset != next as u64 {
                return Err(SnapshotError::Offset {
                    field: "bucket bit array offset",
                    offset: (at + f::dir::OFFSET) as u64,
                    expected: next as u64,
                    found: offset,
                });
            }
            // u64 arithmetic cannot overflow here (u32 blocks x 64 + a usize offset).
            let needed = next as u64 + u64::from(blocks) * BLOCK_BYTES as u64;
            if needed > len as u64 {
                return Err(SnapshotError::Truncated {
                    what: "bucket bit array",
                    needed,
                    len: len as u64,
                });
            }
            let end = needed as usize; // <= len
            entries_shape.push((number, blocks));
            dir.push(BucketRef {
                number,
                entries: f::u64_at(e, f::dir::ENTRIES).unwrap_or(0),
                offset: next,
                blocks,
            });
            next = end;
        }

        let cutoff_offset = u64h(off::CUTOFF_OFFSET);
        if cutoff_offset != next as u64 {
            return Err(SnapshotError::Offset {
                field: "cutoff table offset",
                offset: off::CUTOFF_OFFSET as u64,
                expected: next as u64,
                found: cutoff_offset,
            });
        }
        let cutoff_count = u32h(off::CUTOFF_COUNT);
        if (cutoff_count > 0) != (flags & f::FLAG_CUTOFFS != 0) {
            return Err(field(
                "cutoff count",
                off::CUTOFF_COUNT,
                "non-zero exactly when the cutoff flag is set",
                cutoff_count.into(),
            ));
        }
        // In u64 a u32 count of 16-byte records past a usize offset cannot overflow.
        let needed = next as u64 + u64::from(cutoff_count) * RECORD_BYTES as u64;
        if needed > len as u64 {
            return Err(SnapshotError::Truncated {
                what: "cutoff table",
                needed,
                len: len as u64,
            });
        }
        let cutoff_end = needed as usize; // <= len
        let (trailer, default_iss, cutoff_claims, ext) = if version == f::FORMAT_VERSION_1 {
            (cutoff_end, None, Vec::new(), &b[cutoff_end..cutoff_end])
        } else {
            let e = read_extensions(b, head, cutoff_end)?;
            (e.end, e.default_iss, e.cutoff_claims, e.bytes)
        };
        let trailer_field = u64h(off::TRAILER_OFFSET);
        if trailer_field != trailer as u64 {
            return Err(SnapshotError::Offset {
                field: "checksum trailer offset",
                offset: off::TRAILER_OFFSET as u64,
                expected: trailer as u64,
                found: trailer_field,
            });
        }
        let signed = flags & f::FLAG_SIGNED != 0;
        let expected_len =
            trailer + f::CHECKSUM_BYTES + if signed { f::SIGNATURE_BYTES } else { 0 };
        if len != expected_len {
            return Err(SnapshotError::Length {
                expected: expected_len as u64,
                found: len as u64,
            });
        }
        // One pass checks the table's order and builds its in-memory index, whose size
        // (about 2.3 bytes per 16-byte record) the input length bounds.
        let cutoff_index =
            CutoffIndex::build(&b[next..cutoff_end]).map_err(|i| SnapshotError::CutoffOrder {
                index: i as u64,
                offset: (next + i * RECORD_BYTES) as u64,
            })?;
        let params = &head[off::SEED..off::GENERATION];
        let mut layout = if version == f::FORMAT_VERSION_1 {
            LayoutDigest::new(params, oldest)
        } else {
            LayoutDigest::new_v2(
                params,
                &head[off::MAX_TOKEN_LIFETIME..off::EXT_OFFSET],
                ext,
                oldest,
            )
        };
        for (number, blocks) in entries_shape {
            layout.bucket(number, blocks);
        }
        let layout_id = u64h(off::LAYOUT_ID);
        if layout.finish() != layout_id {
            return Err(SnapshotError::LayoutId {
                expected: layout.finish(),
                found: layout_id,
            });
        }
        if options.verify_checksum {
            let stored = f::u64_at(b, trailer).unwrap_or(0);
            let actual = f::checksum(&b[..trailer]);
            if stored != actual {
                return Err(SnapshotError::Checksum {
                    offset: trailer as u64,
                    expected: stored,
                    found: actual,
                });
            }
        }
        let signature = verify_signature(b, trailer + f::CHECKSUM_BYTES, signed, options)?;
        // At most MAX_SNAPSHOT_CLAIMS claims, two derivations each.
        let hasher = KeyHasher::new(u64h(off::SEED));
        let default_iss_bytes = default_iss.and_then(|(s, e)| b.get(s..e));
        let claim_spaces = cutoff_claims
            .iter()
            .map(|c| {
                (
                    ClaimHasher::new(&hasher, None, &**c),
                    default_iss_bytes.map(|d| ClaimHasher::new(&hasher, Some(d), &**c)),
                )
            })
            .collect();

        Ok(SnapshotView {
            hasher,
            width,
            div: BucketDivisor::new(width),
            horizon,
            leeway,
            fp_rate,
            max_load,
            oldest,
            ring_len,
            generation,
            parent,
            layout_id,
            layout_epoch: u64h(off::LAYOUT_EPOCH),
            created_at: u64h(off::CREATED_AT),
            coverage: u64h(off::COVERAGE),
            version,
            header_len,
            bounds,
            default_iss,
            claim_spaces,
            cutoff_claims: cutoff_claims.into_boxed_slice(),
            dir,
            cutoffs: (next, cutoff_end),
            cutoff_index,
            trailer,
            signature,
            probe: Probe::detect(),
            bytes,
        })
    }

    /// The verdict for a token's `jti` and `exp`: exactly what the encoded window answered.
    /// Constant time, no allocation, never panics.
    #[inline]
    pub fn check(&self, jti: impl AsRef<[u8]>, exp: Option<u64>) -> Verdict {
        self.check_hash(self.hasher.hash(jti), exp)
    }

    /// [`SnapshotView::check`] for a key already hashed with [`SnapshotView::hasher`].
    #[inline(always)]
    pub fn check_hash(&self, hash: KeyHash, exp: Option<u64>) -> Verdict {
        #[cfg(target_arch = "x86_64")]
        if self.probe.is_avx2() {
            // SAFETY: a view holds the AVX2 probe only when `Probe::detect` found AVX2 on this
            // CPU (or the caller passed `Probe::detect()`'s result to `with_probe`), so the
            // AVX2 code runs on a CPU that has it.
            #[allow(unsafe_code)]
            return unsafe { self.check_hash_avx2(hash, exp) };
        }
        self.check_hash_with(hash, exp, |block, hash| {
            self.probe.contains(BlockRef::Bytes(block), hash)
        })
    }

    /// The whole check compiled with AVX2: bucket choice, block address and probe in one
    /// function, so the probe inlines instead of costing a call per check.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn check_hash_avx2(&self, hash: KeyHash, exp: Option<u64>) -> Verdict {
        // The closure inherits this function's target features, so the probe inlines.
        self.check_hash_with(hash, exp, |block, hash| {
            bloom::probe::avx2_contains(block, hash)
        })
    }

    /// The check, with `contains` testing the chosen block.
    #[inline(always)]
    fn check_hash_with(
        &self,
        hash: KeyHash,
        exp: Option<u64>,
        contains: impl Fn(&[u8; BLOCK_BYTES], KeyHash) -> bool,
    ) -> Verdict {
        let index = match exp {
            None => 0,
            Some(exp) => {
                let b = self.div.bucket(exp);
                // One compare for the common case, a ring bucket: below `oldest` the
                // difference wraps past `ring_len`.
                let d = b.wrapping_sub(self.oldest);
                if d < self.ring_len {
                    // d < ring_len <= 65536: fits any usize.
                    1 + d as usize
                } else if b < self.oldest {
                    return Verdict::Expired;
                } else {
                    0
                }
            }
        };
        // Open validated every directory entry and bit array, so the fallbacks below are
        // unreachable; they answer "maybe" so that even then nothing revoked reads as clear.
        let Some(bucket) = self.dir.get(index) else {
            return Verdict::MaybeRevoked;
        };
        if bucket.blocks == 0 {
            return Verdict::Clear;
        }
        let start = bucket.offset + bloom::block_index(hash, bucket.blocks) * BLOCK_BYTES;
        let block = self
            .bytes
            .as_ref()
            .get(start..start + BLOCK_BYTES)
            .and_then(|s| <&[u8; BLOCK_BYTES]>::try_from(s).ok());
        match block {
            Some(block) if !contains(block, hash) => Verdict::Clear,
            _ => Verdict::MaybeRevoked,
        }
    }

    /// The block probe checks run with ([`Probe::detect`] at open).
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// This view checking with `probe` instead: every probe gives the same verdicts, so this
    /// only serves to compare them (tests, benches) or to pin the portable code.
    pub fn with_probe(mut self, probe: Probe) -> Self {
        self.probe = probe;
        self
    }

    /// The cutoff time for a claim fingerprint, if the snapshot has one. No allocation: a
    /// key without a cutoff is answered by the open-time presence filter from one word in
    /// about 99 % of cases; any other key by a search of the few records of its radix slot.
    #[inline]
    pub fn cutoff(&self, key: CutoffKey) -> Option<u64> {
        self.cutoff_index.find(self.cutoff_table(), key)
    }

    /// The open-time index over the cutoff table (presence filter and radix directory).
    pub fn cutoff_index(&self) -> &CutoffIndex {
        &self.cutoff_index
    }

    /// The raw cutoff table: sorted, unique [`RECORD_BYTES`]-byte records.
    pub fn cutoff_table(&self) -> &[u8] {
        self.bytes
            .as_ref()
            .get(self.cutoffs.0..self.cutoffs.1)
            .unwrap_or(&[])
    }

    /// Every cutoff, in fingerprint order.
    pub fn cutoffs(&self) -> impl Iterator<Item = (CutoffKey, u64)> + '_ {
        self.cutoff_table().chunks_exact(RECORD_BYTES).map(|r| {
            let fp = f::u64_at(r, 0).unwrap_or(0);
            (CutoffKey(fp), f::u64_at(r, 8).unwrap_or(0))
        })
    }

    /// The format version of the file (1 or 2).
    pub fn format_version(&self) -> u16 {
        self.version
    }
    /// Whether the filter is keyed on the `jti` alone, whatever the issuer (version 2). In a
    /// version 1 file a revocation with an issuer was keyed on `(iss, jti)`; check both keys.
    pub fn keys_on_jti_alone(&self) -> bool {
        self.version != f::FORMAT_VERSION_1
    }
    /// The deployment's time bounds this snapshot vouches within.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
    /// The issuer the publisher assumes for tokens without `iss`, if it names one.
    pub fn default_issuer(&self) -> Option<&str> {
        let (start, end) = self.default_iss?;
        std::str::from_utf8(self.bytes.as_ref().get(start..end)?).ok()
    }
    /// The claims the publisher holds cutoffs for, sorted (`jti` among them when a
    /// revocation was made without `exp`). A verifier checks each one a token carries.
    /// Empty in version 1 files and when the publisher names none.
    pub fn cutoff_claims(&self) -> &[Box<str>] {
        &self.cutoff_claims
    }
    /// The fingerprint space of `claim` under issuer `iss`
    /// (`ClaimHasher::new(&self.hasher(), iss, claim)`): for the claims the snapshot lists,
    /// under no issuer and under its default issuer, the space derived at open; otherwise
    /// derived now (two xxh3 passes).
    #[inline]
    pub fn claim_hasher(&self, iss: Option<&str>, claim: &str) -> ClaimHasher {
        if let Some(i) = self.cutoff_claims.iter().position(|c| same_claim(c, claim)) {
            if let Some(&(none, default)) = self.claim_spaces.get(i) {
                match (iss, default) {
                    (None, _) => return none,
                    (Some(iss), Some(d)) if Some(iss) == self.default_issuer() => return d,
                    _ => {}
                }
            }
        }
        ClaimHasher::new(&self.hasher, iss.map(str::as_bytes), claim)
    }
    /// Whether a cutoff on the `jti` itself exists (a revocation made without `exp`), under
    /// no issuer or under the default issuer.
    pub fn has_jti_cutoff(&self, jti: &[u8]) -> bool {
        use crate::cutoff::JTI_CLAIM;
        if !self.cutoff_claims.iter().any(|c| same_claim(c, JTI_CLAIM)) {
            return false;
        }
        let hasher = self.hasher();
        let scopes = [self.default_issuer().map(str::as_bytes), None];
        scopes.iter().any(|scope| {
            self.cutoff(crate::cutoff::CutoffKey::new(
                &hasher, *scope, JTI_CLAIM, jti,
            ))
            .is_some()
        })
    }
    /// Byte offset of directory entry `index` in the file.
    pub(crate) fn dir_entry_offset(&self, index: usize) -> usize {
        self.header_len + index * f::DIR_ENTRY_BYTES
    }
    /// The extension section's bytes (empty in version 1).
    pub(crate) fn extension_bytes(&self) -> &[u8] {
        self.bytes
            .as_ref()
            .get(self.cutoffs.1..self.trailer)
            .unwrap_or(&[])
    }

    /// The keyed hasher the snapshot's keys were hashed with.
    pub fn hasher(&self) -> KeyHasher {
        self.hasher
    }
    /// Generation number (monotonic per publisher).
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// The generation this one was derived from (0 for the first).
    pub fn parent(&self) -> u64 {
        self.parent
    }
    /// When the publisher produced this generation (unix seconds).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }
    /// The time up to which the publisher's revocations are included (unix seconds).
    pub fn coverage(&self) -> u64 {
        self.coverage
    }
    /// Seconds since `created_at` at unix time `now` (0 if `now` is earlier).
    pub fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.created_at)
    }
    /// Digest of the layout (seed, parameters, oldest bucket, bucket sizes): deltas name the
    /// layout they apply to by it.
    pub fn layout_id(&self) -> u64 {
        self.layout_id
    }
    /// The publisher window's layout epoch when this was written (informative).
    pub fn layout_epoch(&self) -> u64 {
        self.layout_epoch
    }
    /// Bucket width, horizon and leeway in seconds.
    pub fn window_params(&self) -> (u64, u64, u64) {
        (self.width, self.horizon, self.leeway)
    }
    /// Target false-positive rate the publisher sized for.
    pub fn target_fp_rate(&self) -> f64 {
        self.fp_rate
    }
    /// Load target (keys per block) the publisher sized for.
    pub fn max_load(&self) -> f64 {
        self.max_load
    }
    /// Absolute number of the oldest live expiry bucket.
    pub fn oldest_bucket(&self) -> u64 {
        self.oldest
    }
    /// Whether the file is signed and whether that was verified.
    pub fn signature_status(&self) -> SignatureStatus {
        self.signature
    }
    /// Distinct revocations held, over all buckets.
    pub fn entries(&self) -> u64 {
        self.dir
            .iter()
            .fold(0u64, |acc, b| acc.saturating_add(b.entries))
    }
    /// Size of the file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.bytes.as_ref().len() as u64
    }
    /// Whole-file bits per revocation held (`None` when empty): the figure the format promises
    /// to keep at most 16 at 0.1 % plus a fixed header.
    pub fn bits_per_entry(&self) -> Option<f64> {
        let n = self.entries();
        (n > 0).then(|| self.size_bytes() as f64 * 8.0 / n as f64)
    }
    /// Bytes after the cutoff table: checksum trailer plus signature, if any.
    pub(crate) fn trailer_tail(&self) -> usize {
        self.bytes.as_ref().len().saturating_sub(self.trailer)
    }

    /// Offset of the checksum trailer; bytes before it are covered by the checksum.
    pub fn trailer_offset(&self) -> usize {
        self.trailer
    }
    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }
    /// Give the bytes back.
    pub fn into_bytes(self) -> B {
        self.bytes
    }

    /// Number of directory entries (overflow bucket plus ring).
    pub fn bucket_count(&self) -> usize {
        self.dir.len()
    }

    /// Directory entry `index`: bucket, entries, blocks and its bit array's byte offset.
    pub(crate) fn bucket_ref(&self, index: usize) -> Option<(BucketId, u64, u32, usize)> {
        let b = self.dir.get(index)?;
        let id = if index == 0 {
            BucketId::Overflow
        } else {
            BucketId::Expiry(b.number)
        };
        Some((id, b.entries, b.blocks, b.offset))
    }

    /// Figures for every bucket in directory order (overflow first, then oldest to newest),
    /// computed from the bits: one pass over the file.
    pub fn bucket_stats(&self) -> impl Iterator<Item = BucketStats> + '_ {
        (0..self.dir.len()).filter_map(move |i| {
            let (id, entries, blocks, offset) = self.bucket_ref(i)?;
            let end = offset + blocks as usize * BLOCK_BYTES;
            let bits = self.bytes.as_ref().get(offset..end)?;
            let words = || {
                bits.chunks_exact(BLOCK_BYTES).map(|c| {
                    let mut a = [0u8; BLOCK_BYTES];
                    a.copy_from_slice(c);
                    bloom::words_of(&a)
                })
            };
            let ones: u64 = words()
                .map(|w: [u64; WORDS]| w.iter().map(|x| u64::from(x.count_ones())).sum::<u64>())
                .sum();
            let nbits = u64::from(blocks) * bloom::BLOCK_BITS as u64;
            Some(BucketStats {
                id,
                exp_range: match id {
                    BucketId::Overflow => None,
                    BucketId::Expiry(b) => {
                        let start = b.saturating_mul(self.width);
                        Some((start, start.saturating_add(self.width)))
                    }
                },
                entries,
                bits: nbits,
                fill_ratio: if nbits == 0 {
                    0.0
                } else {
                    ones as f64 / nbits as f64
                },
                estimated_fp: bloom::estimated_fp_of(words()),
            })
        })
    }
}

impl<B: AsRef<[u8]>> std::fmt::Debug for SnapshotView<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotView")
            .field("generation", &self.generation)
            .field("parent", &self.parent)
            .field("created_at", &self.created_at)
            .field("buckets", &self.dir.len())
            .field("size_bytes", &self.size_bytes())
            .field("signature", &self.signature)
            .finish()
    }
}

/// A validated extension section.
struct Extensions<'b> {
    /// Offset of the checksum trailer, right after the section.
    end: usize,
    /// Byte range of the default issuer's value.
    default_iss: Option<(usize, usize)>,
    /// The cutoff claims (type 2), sorted.
    cutoff_claims: Vec<Box<str>>,
    /// The section's bytes (they enter the layout id).
    bytes: &'b [u8],
}

/// Validate a version 2 extension section starting at `at` (right after the cutoff table).
/// Records are `type u16, flags u16, len u32, value`, zero-padded to 8 bytes, types strictly
/// increasing; an unknown critical type is refused.
fn read_extensions<'b>(
    b: &'b [u8],
    head: &[u8],
    at: usize,
) -> Result<Extensions<'b>, SnapshotError> {
    let len = b.len();
    let ext_offset = f::u64_at(head, off::EXT_OFFSET).unwrap_or(0);
    if ext_offset != at as u64 {
        return Err(SnapshotError::Offset {
            field: "extension section offset",
            offset: off::EXT_OFFSET as u64,
            expected: at as u64,
            found: ext_offset,
        });
    }
    let ext_len = f::u32_at(head, off::EXT_LEN).unwrap_or(0) as usize;
    if !ext_len.is_multiple_of(f::EXT_ALIGN) {
        return Err(field(
            "extension section length",
            off::EXT_LEN,
            "a multiple of 8",
            ext_len as u64,
        ));
    }
    let end = at
        .checked_add(ext_len)
        .filter(|&e| e <= len)
        .ok_or_else(|| truncated("extension section", at.saturating_add(ext_len), len))?;
    let section = &b[at..end];
    let mut pos = 0usize;
    let mut last_type = 0u16;
    let mut default_iss = None;
    let mut cutoff_claims = Vec::new();
    while pos < section.len() {
        let rec_at = at + pos;
        let (Some(ty), Some(flags), Some(vlen)) = (
            f::u16_at(section, pos),
            f::u16_at(section, pos + 2),
            f::u32_at(section, pos + 4),
        ) else {
            return Err(truncated(
                "extension record",
                rec_at + f::EXT_HEAD_BYTES,
                end,
            ));
        };
        if ty <= last_type {
            return Err(field(
                "extension type",
                rec_at,
                "types strictly increasing, from 1",
                ty.into(),
            ));
        }
        if flags & !f::EXT_CRITICAL != 0 {
            return Err(SnapshotError::Reserved {
                field: "extension record flags",
                offset: (rec_at + 2) as u64,
            });
        }
        let vstart = pos + f::EXT_HEAD_BYTES;
        let vend = vstart
            .checked_add(vlen as usize)
            .filter(|&e| e <= section.len())
            .ok_or_else(|| truncated("extension value", at + vstart + vlen as usize, end))?;
        let padded = vend.div_ceil(f::EXT_ALIGN) * f::EXT_ALIGN;
        if padded > section.len() {
            return Err(truncated("extension padding", at + padded, end));
        }
        zero(section, vend, padded, "extension padding").map_err(|e| match e {
            SnapshotError::Reserved { field, offset } => SnapshotError::Reserved {
                field,
                offset: offset + at as u64,
            },
            other => other,
        })?;
        match ty {
            f::EXT_DEFAULT_ISS => {
                let value = &section[vstart..vend];
                let valid = std::str::from_utf8(value).ok().filter(|s| {
                    !s.is_empty()
                        && s.len() <= f::MAX_DEFAULT_ISS_BYTES
                        && crate::hash::normalize_issuer(s) == *s
                });
                if valid.is_none() || flags & f::EXT_CRITICAL == 0 {
                    return Err(field(
                        "default issuer",
                        rec_at,
                        "critical, non-empty normalised UTF-8 of at most 1024 bytes",
                        vlen.into(),
                    ));
                }
                default_iss = Some((at + vstart, at + vend));
            }
            f::EXT_CUTOFF_CLAIMS => {
                cutoff_claims = read_cutoff_claims(&section[vstart..vend]).ok_or_else(|| {
                    field(
                        "cutoff claims",
                        rec_at,
                        "critical; 1 to 8 names, each a u8 length of 1 to 64 and that many \
                         bytes of UTF-8, strictly increasing, filling the value",
                        vlen.into(),
                    )
                })?;
                if flags & f::EXT_CRITICAL == 0 {
                    return Err(field(
                        "cutoff claims",
                        rec_at,
                        "a critical record",
                        flags.into(),
                    ));
                }
            }
            unknown if flags & f::EXT_CRITICAL != 0 => {
                return Err(field(
                    "extension type",
                    rec_at,
                    "a type this reader knows (the record is critical)",
                    unknown.into(),
                ));
            }
            _ => {}
        }
        last_type = ty;
        pos = padded;
    }
    Ok(Extensions {
        end,
        default_iss,
        cutoff_claims,
        bytes: section,
    })
}

/// The names of a cutoff-claims record (extension type 2), or `None` if it breaks a rule.
fn read_cutoff_claims(mut value: &[u8]) -> Option<Vec<Box<str>>> {
    use crate::cutoff::{MAX_CLAIM_NAME_BYTES, MAX_SNAPSHOT_CLAIMS};
    let mut names: Vec<Box<str>> = Vec::new();
    while let Some((&n, rest)) = value.split_first() {
        let n = usize::from(n);
        if n == 0 || n > MAX_CLAIM_NAME_BYTES || names.len() == MAX_SNAPSHOT_CLAIMS {
            return None;
        }
        let name = std::str::from_utf8(rest.get(..n)?).ok()?;
        if names.last().is_some_and(|last| **last >= *name) {
            return None;
        }
        names.push(Box::from(name));
        value = rest.get(n..)?;
    }
    (!names.is_empty()).then_some(names)
}
