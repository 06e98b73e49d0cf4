//! Encoding a [`Window`] and its claim cutoffs as a snapshot file.

use std::io::{self, Write};

use ed25519_dalek::{Signer, SigningKey};
use xxhash_rust::xxh3::Xxh3Default;

use super::format::{self as f, off, LayoutDigest};
use super::{EncodeError, SnapshotMeta};
use crate::bloom::BLOCK_BYTES;
use crate::cutoff::CutoffSet;
use crate::window::{BucketId, Window};

/// A writer that hashes what passes through it, so the checksum costs no second pass.
struct Hashing<W> {
    inner: W,
    hasher: Xxh3Default,
    written: u64,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
}

/// Write a snapshot of `window` and `cutoffs` as generation `meta` to `out`, signed with
/// `signing_key` when one is given. Returns the bytes written.
///
/// Unsigned snapshots stream straight to `out` with the checksum computed on the way (wrap a
/// file in a `BufWriter`). A signed snapshot is assembled in memory first: Ed25519 hashes the
/// message twice (nonce, then challenge), so it cannot sign a stream in one pass.
///
/// Fails with [`EncodeError::Meta`] when `meta` is not a valid generation step (see
/// [`SnapshotMeta`]), [`EncodeError::TooLarge`] or [`EncodeError::DefaultIssuerTooLong`] when
/// the window does not fit the format, and [`EncodeError::Io`] when `out` fails.
pub fn encode(
    window: &Window,
    cutoffs: &CutoffSet,
    meta: &SnapshotMeta,
    signing_key: Option<&SigningKey>,
    out: impl Write,
) -> Result<u64, EncodeError> {
    meta.validate()?;
    match signing_key {
        None => encode_body(window, cutoffs, meta, false, out),
        Some(key) => {
            let mut buf = Vec::with_capacity(estimated_len(window, cutoffs));
            encode_body(window, cutoffs, meta, true, &mut buf)?;
            let sig = key.sign(&buf).to_bytes();
            let mut out = out;
            out.write_all(&buf)?;
            out.write_all(&sig)?;
            Ok(buf.len() as u64 + sig.len() as u64)
        }
    }
}

/// [`encode`] into a new `Vec<u8>`.
pub fn encode_to_vec(
    window: &Window,
    cutoffs: &CutoffSet,
    meta: &SnapshotMeta,
    signing_key: Option<&SigningKey>,
) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(estimated_len(window, cutoffs) + f::SIGNATURE_BYTES);
    encode(window, cutoffs, meta, signing_key, &mut buf)?;
    Ok(buf)
}

fn estimated_len(window: &Window, cutoffs: &CutoffSet) -> usize {
    let buckets = window.geometry().buckets as usize + 1;
    f::HEADER_BYTES
        + buckets * f::DIR_ENTRY_BYTES
        + f::ALIGN
        + window.filter_bytes() as usize
        + cutoffs.len() * crate::cutoff::RECORD_BYTES
        + f::extensions(window.default_issuer(), window.cutoff_claims()).len()
        + f::CHECKSUM_BYTES
}

fn too_big(what: &'static str) -> EncodeError {
    EncodeError::TooLarge {
        what,
        format: "snapshot",
    }
}

fn encode_body(
    window: &Window,
    cutoffs: &CutoffSet,
    meta: &SnapshotMeta,
    signed: bool,
    out: impl Write,
) -> Result<u64, EncodeError> {
    let buckets: Vec<(u64, u64, u32)> = window
        .buckets()
        .map(|(id, bloom, entries)| {
            let number = match id {
                BucketId::Overflow => f::OVERFLOW_NUMBER,
                BucketId::Expiry(b) => b,
            };
            (number, entries, bloom.nblocks())
        })
        .collect();
    let table = cutoffs.sorted();
    if let Some(iss) = window
        .default_issuer()
        .filter(|i| i.len() > f::MAX_DEFAULT_ISS_BYTES)
    {
        return Err(EncodeError::DefaultIssuerTooLong {
            len: iss.len(),
            max: f::MAX_DEFAULT_ISS_BYTES,
        });
    }
    let ext = f::extensions(window.default_issuer(), window.cutoff_claims());
    let ext_len = u32::try_from(ext.len()).map_err(|_| too_big("extension section"))?;
    let count = u32::try_from(buckets.len()).map_err(|_| too_big("bucket count"))?;
    let cutoff_count = u32::try_from(table.len()).map_err(|_| too_big("cutoff count"))?;

    let dir_end = f::HEADER_BYTES + buckets.len() * f::DIR_ENTRY_BYTES;
    let bits_start = f::align_up(dir_end).ok_or_else(|| too_big("directory"))?;
    let bits_len: u64 = buckets
        .iter()
        .map(|b| u64::from(b.2) * BLOCK_BYTES as u64)
        .sum();
    let cutoff_offset = bits_start as u64 + bits_len;
    let ext_offset = cutoff_offset + table.len() as u64 * crate::cutoff::RECORD_BYTES as u64;
    let trailer_offset = ext_offset + ext.len() as u64;
    let bounds = window.bounds();

    let config = window.config();
    let mut flags = 0u16;
    if signed {
        flags |= f::FLAG_SIGNED;
    }
    if !table.is_empty() {
        flags |= f::FLAG_CUTOFFS;
    }
    let mut h = [0u8; f::HEADER_BYTES];
    h[off::MAGIC..off::MAGIC + 8].copy_from_slice(&f::MAGIC);
    h[off::VERSION..off::VERSION + 2].copy_from_slice(&f::FORMAT_VERSION.to_le_bytes());
    h[off::FLAGS..off::FLAGS + 2].copy_from_slice(&flags.to_le_bytes());
    h[off::HASH_ALG] = f::HashAlgorithm::Xxh3_64 as u8;
    let words: [(usize, u64); 18] = [
        (off::SEED, window.hasher().seed()),
        (off::WIDTH, config.bucket_width_secs()),
        (off::HORIZON, config.horizon_secs()),
        (off::LEEWAY, config.leeway_secs()),
        (off::FP_RATE, config.target_fp_rate().to_bits()),
        (off::MAX_LOAD, window.geometry().max_load.to_bits()),
        (off::GENERATION, meta.generation),
        (off::PARENT, meta.parent),
        (off::LAYOUT_ID, 0), // filled below
        (off::LAYOUT_EPOCH, window.layout_epoch()),
        (off::CREATED_AT, meta.created_at),
        (off::COVERAGE, meta.coverage),
        (off::OLDEST, window.oldest_bucket()),
        (off::CUTOFF_OFFSET, cutoff_offset),
        (off::TRAILER_OFFSET, trailer_offset),
        (off::MAX_TOKEN_LIFETIME, bounds.max_token_lifetime),
        (off::MAX_CLOCK_SKEW, bounds.max_clock_skew),
        (off::EXT_OFFSET, ext_offset),
    ];
    for (at, v) in words {
        f::put_u64(&mut h, at, v);
    }
    h[off::BUCKET_COUNT..off::BUCKET_COUNT + 4].copy_from_slice(&count.to_le_bytes());
    h[off::CUTOFF_COUNT..off::CUTOFF_COUNT + 4].copy_from_slice(&cutoff_count.to_le_bytes());
    h[off::EXT_LEN..off::EXT_LEN + 4].copy_from_slice(&ext_len.to_le_bytes());
    f::put_u64(&mut h, off::LAYOUT_ID, layout_id(window));

    let mut w = Hashing {
        inner: out,
        hasher: Xxh3Default::new(),
        written: 0,
    };
    w.put(&h)?;
    let mut offset = bits_start as u64;
    for &(number, entries, blocks) in &buckets {
        let mut e = [0u8; f::DIR_ENTRY_BYTES];
        f::put_u64(&mut e, f::dir::NUMBER, number);
        f::put_u64(&mut e, f::dir::ENTRIES, entries);
        e[f::dir::BLOCKS..f::dir::BLOCKS + 4].copy_from_slice(&blocks.to_le_bytes());
        f::put_u64(&mut e, f::dir::OFFSET, offset);
        w.put(&e)?;
        offset += u64::from(blocks) * BLOCK_BYTES as u64;
    }
    w.put(&[0u8; f::ALIGN][..bits_start - dir_end])?;

    // Blocks go out in 64 KiB batches: one write per block would dominate on unbuffered sinks.
    let mut batch = Vec::with_capacity(1 << 16);
    for (_, bloom, _) in window.buckets() {
        for block in bloom.blocks() {
            for word in block.0 {
                batch.extend_from_slice(&word.to_le_bytes());
            }
            if batch.len() >= 1 << 16 {
                w.put(&batch)?;
                batch.clear();
            }
        }
    }
    w.put(&batch)?;
    batch.clear();
    for (key, before) in table {
        batch.extend_from_slice(&key.0.to_le_bytes());
        batch.extend_from_slice(&before.to_le_bytes());
    }
    w.put(&batch)?;
    w.put(&ext)?;
    debug_assert_eq!(w.written, trailer_offset);
    let sum = w.hasher.digest();
    w.inner.write_all(&sum.to_le_bytes())?;
    Ok(w.written + f::CHECKSUM_BYTES as u64)
}

/// The layout id a snapshot of `window` would carry right now: an xxh3 digest of every
/// parameter a delta cannot change (seed, geometry, bounds, extensions, bucket directory; see
/// `docs/FORMAT.md`). Deltas name their base layout by it.
pub fn layout_id(window: &Window) -> u64 {
    let config = window.config();
    let mut params = [0u8; off::GENERATION - off::SEED];
    let fields = [
        window.hasher().seed(),
        config.bucket_width_secs(),
        config.horizon_secs(),
        config.leeway_secs(),
        config.target_fp_rate().to_bits(),
        window.geometry().max_load.to_bits(),
    ];
    for (i, v) in fields.iter().enumerate() {
        f::put_u64(&mut params, i * 8, *v);
    }
    let b = window.bounds();
    let mut bounds = [0u8; 16];
    f::put_u64(&mut bounds, 0, b.max_token_lifetime);
    f::put_u64(&mut bounds, 8, b.max_clock_skew);
    let ext = f::extensions(window.default_issuer(), window.cutoff_claims());
    let mut layout = LayoutDigest::new_v2(&params, &bounds, &ext, window.oldest_bucket());
    for (id, bloom, _) in window.buckets() {
        let number = match id {
            BucketId::Overflow => f::OVERFLOW_NUMBER,
            BucketId::Expiry(b) => b,
        };
        layout.bucket(number, bloom.nblocks());
    }
    layout.finish()
}
