//! An owned snapshot buffer whose first byte starts a cache line.
//!
//! A snapshot's bit arrays sit at 64-byte-aligned offsets in the file, so a block is one cache
//! line exactly when the buffer itself starts on a line. A `Vec<u8>` gives no such promise:
//! the allocator aligns to 16 bytes, and with a buffer 16 bytes off a line every block spans
//! two lines and a check touches both. An mmap is page-aligned; this type does the same for
//! bytes held in memory (`benches/check.rs` measures the view over both, side by side).

use crate::bloom::{Block, BLOCK_BYTES, WORDS};

/// Bytes in memory aligned to 64, for [`SnapshotView`](super::SnapshotView)s that own their
/// file: [`SnapshotView::open_owned`](super::SnapshotView::open_owned) and
/// [`SnapshotView::apply_delta`](super::SnapshotView::apply_delta) produce views over it.
///
/// ```
/// use revbloom::snapshot::AlignedBytes;
///
/// let bytes = AlignedBytes::copy_from(b"revbloom");
/// assert_eq!(bytes.as_ref(), b"revbloom");
/// assert_eq!(bytes.as_ref().as_ptr() as usize % 64, 0);
/// ```
#[derive(Clone, Default)]
pub struct AlignedBytes {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBytes {
    /// A copy of `bytes`, starting on a cache line.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut blocks = vec![Block::default(); bytes.len().div_ceil(BLOCK_BYTES)];
        for (block, chunk) in blocks.iter_mut().zip(bytes.chunks(BLOCK_BYTES)) {
            let mut line = [0u8; BLOCK_BYTES];
            line[..chunk.len()].copy_from_slice(chunk);
            // Native-endian words hold the bytes in memory in their original order, which is
            // all `as_ref` relies on; the snapshot reader decodes its little-endian fields
            // from those bytes on any host.
            for (word, b) in block.0.iter_mut().zip(line.chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                *word = u64::from_ne_bytes(w);
            }
        }
        Self {
            blocks,
            len: bytes.len(),
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for AlignedBytes {
    #[inline(always)]
    fn as_ref(&self) -> &[u8] {
        debug_assert!(self.len <= self.blocks.len() * BLOCK_BYTES);
        debug_assert_eq!(std::mem::size_of::<Block>(), WORDS * 8);
        // SAFETY: `Block` is `repr(C)` over `[u64; 8]`: 64 bytes, no padding, every byte
        // initialized, so the vector's buffer is `blocks.len() * 64` initialized bytes. `len`
        // never exceeds that (`copy_from` sets it to the input length and allocates
        // `ceil(len / 64)` blocks; nothing else writes either field). `u8` has alignment 1,
        // and the returned slice borrows `self`, so the buffer can be neither freed nor
        // mutated while it lives.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len)
        }
    }
}

impl From<&[u8]> for AlignedBytes {
    fn from(bytes: &[u8]) -> Self {
        Self::copy_from(bytes)
    }
}

impl From<Vec<u8>> for AlignedBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::copy_from(&bytes)
    }
}

impl PartialEq for AlignedBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for AlignedBytes {}

impl std::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBytes")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_round_trips_aligned() {
        // Empty, shorter than a line, exactly one, one past, and several lines with a tail:
        // the bytes read back unchanged and start on a line. (Run under Miri in CI.)
        for len in [0usize, 1, 7, 63, 64, 65, 200, 1000] {
            let src: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let a = AlignedBytes::copy_from(&src);
            assert_eq!(a.as_ref(), &src[..], "len {len}");
            assert_eq!(a.len(), len);
            assert_eq!(a.is_empty(), len == 0);
            if len > 0 {
                assert_eq!(a.as_ref().as_ptr() as usize % BLOCK_BYTES, 0);
            }
            let b = a.clone();
            assert_eq!(b, a);
            assert_eq!(b.as_ref().as_ptr() as usize % BLOCK_BYTES, 0);
            assert_eq!(AlignedBytes::from(src.clone()), a);
        }
    }
}
