//! The block probe on the check path: the same eight bits as [`block_contains`], tested with
//! whichever instructions the running CPU has.
//!
//! A [`Probe`] is chosen once (at [`Probe::detect`], which a view or window calls when it is
//! built) and then answers every check: AVX2 on x86-64 CPUs that have it (eight products in
//! one multiply, masks shifted into place per lane, two 256-bit loads, one test), NEON on
//! aarch64 (part of the base ISA there), and the portable scalar code everywhere else. Every
//! path sets and tests exactly the bits of [`masks`](super::masks), so the snapshot layout
//! does not depend on the CPU; a proptest holds the paths to identical verdicts.
//!
//! Building with `RUSTFLAGS="--cfg revbloom_force_scalar"` makes [`Probe::detect`] return the
//! scalar probe, so a test run can cover the scalar path end to end on a SIMD-capable machine.
//!
//! Its `unsafe` code is calling a function compiled for a CPU feature (sound because a
//! [`Probe`] naming that feature exists only after the feature was detected) and the vector
//! loads of one 64-byte block (sound because they read through a reference to exactly 64
//! bytes). The window and the snapshot view call their own whole-check AVX2 functions on the
//! same ground; `snapshot::AlignedBytes` holds the crate's one other `unsafe` block.
#![allow(unsafe_code)]

#[cfg(any(test, target_arch = "x86_64", target_arch = "aarch64"))]
use super::SALT;
use super::{block_contains, words_of, BLOCK_BYTES, WORDS};
use crate::hash::KeyHash;

/// A block to probe, as the filter holds it: words in memory (a [`Bloom`](super::Bloom)) or
/// little-endian bytes in place (a snapshot).
#[derive(Clone, Copy)]
pub enum BlockRef<'a> {
    /// Eight native-endian words (the in-memory filter).
    Words(&'a [u64; WORDS]),
    /// Sixty-four little-endian bytes (the snapshot layout).
    Bytes(&'a [u8; BLOCK_BYTES]),
}

impl BlockRef<'_> {
    /// The first of the block's 64 bytes.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    fn as_ptr(self) -> *const u8 {
        match self {
            BlockRef::Words(w) => w.as_ptr().cast(),
            BlockRef::Bytes(b) => b.as_ptr(),
        }
    }

    /// The block's words, for the scalar probe.
    #[inline(always)]
    fn words(self) -> [u64; WORDS] {
        match self {
            BlockRef::Words(w) => *w,
            BlockRef::Bytes(b) => words_of(b),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Forcing the scalar probe leaves the SIMD variants unconstructed but still compiled.
#[cfg_attr(revbloom_force_scalar, allow(dead_code))]
enum Kind {
    Scalar,
    /// Constructed only by [`Probe::detect`] after `avx2` was detected at run time.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// NEON is part of the aarch64 base ISA; a little-endian host is required for the
    /// in-place byte layout to read as words.
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    Neon,
}

/// How this process tests a block: the fastest instructions the CPU has, or the scalar code.
///
/// All probes give the same verdict for the same block and hash.
///
/// ```
/// use revbloom::bloom::{block_insert, probe::{BlockRef, Probe}};
/// use revbloom::KeyHash;
///
/// let mut block = [0u64; 8];
/// block_insert(&mut block, KeyHash(42));
/// for probe in [Probe::detect(), Probe::scalar()] {
///     assert!(probe.contains(BlockRef::Words(&block), KeyHash(42)));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe(Kind);

impl Default for Probe {
    fn default() -> Self {
        Self::detect()
    }
}

impl Probe {
    /// The fastest probe this CPU runs (the scalar one when built with
    /// `--cfg revbloom_force_scalar`).
    pub fn detect() -> Self {
        #[cfg(revbloom_force_scalar)]
        {
            Self::scalar()
        }
        #[cfg(all(not(revbloom_force_scalar), target_arch = "x86_64"))]
        {
            if std::is_x86_feature_detected!("avx2") {
                return Probe(Kind::Avx2);
            }
            Self::scalar()
        }
        #[cfg(all(
            not(revbloom_force_scalar),
            target_arch = "aarch64",
            target_endian = "little"
        ))]
        {
            Probe(Kind::Neon)
        }
        #[cfg(all(
            not(revbloom_force_scalar),
            not(target_arch = "x86_64"),
            not(all(target_arch = "aarch64", target_endian = "little"))
        ))]
        {
            Self::scalar()
        }
    }

    /// The portable probe, on any CPU.
    pub const fn scalar() -> Self {
        Probe(Kind::Scalar)
    }

    /// Whether this is the AVX2 probe (only after AVX2 was detected at run time).
    #[inline(always)]
    pub fn is_avx2(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.0 == Kind::Avx2
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The instructions this probe uses: `"avx2"`, `"neon"` or `"scalar"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Kind::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => "avx2",
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Kind::Neon => "neon",
        }
    }

    /// Whether every probe bit of `hash` is set in `block`: [`block_contains`] on its words.
    #[inline(always)]
    pub fn contains(self, block: BlockRef<'_>, hash: KeyHash) -> bool {
        match self.0 {
            Kind::Scalar => block_contains(&block.words(), hash),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kind::Avx2` is only constructed by `detect` after
            // `is_x86_feature_detected!("avx2")` returned true, so the CPU runs AVX2 code; the
            // pointer comes from a reference to 64 readable bytes (`BlockRef`), all it reads.
            Kind::Avx2 => unsafe { avx2::contains(block.as_ptr(), hash.0 as u32) },
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            // SAFETY: NEON is mandatory on aarch64; the pointer comes from a reference to 64
            // readable bytes (`BlockRef`), all it reads.
            Kind::Neon => unsafe { neon::contains(block.as_ptr(), hash.0 as u32) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::SALT;
    use std::arch::x86_64::{
        __m256i, _mm256_andnot_si256, _mm256_castsi256_si128, _mm256_cvtepu32_epi64,
        _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_mullo_epi32, _mm256_or_si256,
        _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_setr_epi32, _mm256_sllv_epi64,
        _mm256_srli_epi32, _mm256_testz_si256,
    };

    /// The eight one-bit masks: lane `i` of the pair is `1 << ((low * SALT[i]) >> 26)`, words
    /// 0-3 in the first vector and 4-7 in the second. The eight 32-bit products and shifts
    /// take one instruction each; the bit numbers are then widened to 64-bit lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn masks(low: u32) -> (__m256i, __m256i) {
        let salt = _mm256_setr_epi32(
            SALT[0] as i32,
            SALT[1] as i32,
            SALT[2] as i32,
            SALT[3] as i32,
            SALT[4] as i32,
            SALT[5] as i32,
            SALT[6] as i32,
            SALT[7] as i32,
        );
        let bit = _mm256_srli_epi32::<26>(_mm256_mullo_epi32(_mm256_set1_epi32(low as i32), salt));
        let one = _mm256_set1_epi64x(1);
        (
            _mm256_sllv_epi64(one, _mm256_cvtepu32_epi64(_mm256_castsi256_si128(bit))),
            _mm256_sllv_epi64(
                one,
                _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(bit)),
            ),
        )
    }

    /// Whether all eight probe bits of `low` are set in the 64 bytes at `block`.
    ///
    /// # Safety
    /// The CPU supports AVX2, and `block` is valid for reading 64 bytes (any alignment).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn contains(block: *const u8, low: u32) -> bool {
        let (m0, m1) = masks(low);
        // SAFETY: the caller guarantees 64 readable bytes at `block`; loadu has no alignment
        // requirement.
        let (w0, w1) = unsafe {
            (
                _mm256_loadu_si256(block.cast::<__m256i>()),
                _mm256_loadu_si256(block.add(32).cast::<__m256i>()),
            )
        };
        let missing = _mm256_or_si256(_mm256_andnot_si256(w0, m0), _mm256_andnot_si256(w1, m1));
        _mm256_testz_si256(missing, missing) != 0
    }
}

/// [`block_contains`] on a block of a [`Bloom`](super::Bloom), for code compiled with AVX2
/// (the window's whole check runs in one such function, so this inlines into it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn avx2_contains_words(block: &[u64; WORDS], hash: KeyHash) -> bool {
    // SAFETY: AVX2 is enabled in this function (the caller runs AVX2 code), and the pointer
    // comes from a reference to exactly 64 readable bytes, all `contains` reads.
    unsafe { avx2::contains(block.as_ptr().cast(), hash.0 as u32) }
}

/// [`block_contains`] on a block in the snapshot layout, for code compiled with AVX2 (the
/// snapshot view's whole check runs in one such function, so this inlines into it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn avx2_contains(block: &[u8; BLOCK_BYTES], hash: KeyHash) -> bool {
    // SAFETY: AVX2 is enabled in this function (the caller runs AVX2 code), and the pointer
    // comes from a reference to exactly 64 readable bytes, all `contains` reads.
    unsafe { avx2::contains(block.as_ptr(), hash.0 as u32) }
}

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod neon {
    use super::SALT;
    use std::arch::aarch64::{
        uint64x2_t, vandq_u64, vbicq_u64, vcreate_u32, vdup_n_u32, vdupq_n_u64, vld1q_u8,
        vmaxvq_u32, vmull_u32, vorrq_u64, vreinterpretq_s64_u64, vreinterpretq_u32_u64,
        vreinterpretq_u64_u8, vshlq_u64, vshrq_n_u64,
    };

    /// Whether all eight probe bits of `low` are set in the 64 bytes at `block`.
    ///
    /// # Safety
    /// `block` is valid for reading 64 bytes (any alignment); NEON is part of aarch64.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn contains(block: *const u8, low: u32) -> bool {
        let h = vdup_n_u32(low);
        let one = vdupq_n_u64(1);
        let six_bits = vdupq_n_u64(63);
        let mut missing = vdupq_n_u64(0);
        for pair in 0..4 {
            let salts =
                vcreate_u32(u64::from(SALT[2 * pair]) | (u64::from(SALT[2 * pair + 1]) << 32));
            // 64-bit products; the 32-bit product's top six bits are bits 26..32.
            let bit = vandq_u64(vshrq_n_u64::<26>(vmull_u32(h, salts)), six_bits);
            let mask = vshlq_u64(one, vreinterpretq_s64_u64(bit));
            // SAFETY: the caller guarantees 64 readable bytes at `block`; this reads bytes
            // 16*pair .. 16*pair + 16 as u8 lanes (no alignment requirement).
            let w: uint64x2_t = vreinterpretq_u64_u8(unsafe { vld1q_u8(block.add(16 * pair)) });
            missing = vorrq_u64(missing, vbicq_u64(mask, w));
        }
        vmaxvq_u32(vreinterpretq_u32_u64(missing)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bloom::{block_insert, masks};
    use proptest::prelude::*;

    fn probes() -> Vec<Probe> {
        let mut v = vec![Probe::scalar()];
        if Probe::detect() != Probe::scalar() {
            v.push(Probe::detect());
        }
        v
    }

    /// The reference verdict, from the layout's definition.
    fn reference(block: &[u64; WORDS], hash: KeyHash) -> bool {
        let low = hash.0 as u32;
        (0..WORDS).all(|i| block[i] >> (low.wrapping_mul(SALT[i]) >> 26) & 1 == 1)
    }

    fn bytes_of(block: &[u64; WORDS]) -> [u8; BLOCK_BYTES] {
        let mut b = [0u8; BLOCK_BYTES];
        for (i, w) in block.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    fn agree(block: &[u64; WORDS], hash: KeyHash) {
        let want = reference(block, hash);
        let bytes = bytes_of(block);
        for p in probes() {
            assert_eq!(
                p.contains(BlockRef::Words(block), hash),
                want,
                "{p:?} words"
            );
            assert_eq!(
                p.contains(BlockRef::Bytes(&bytes), hash),
                want,
                "{p:?} bytes"
            );
        }
    }

    #[test]
    fn every_single_missing_bit_is_seen() {
        // For a few hashes: all eight bits set passes; clearing any one of them fails, on every
        // probe and in either word, so no lane is left untested.
        for h in [0u64, 1, 42, u64::MAX, 0x0123_4567_89ab_cdef, 0x8000_0000] {
            let hash = KeyHash(h);
            let mut block = [0u64; WORDS];
            block_insert(&mut block, hash);
            agree(&block, hash);
            assert!(reference(&block, hash));
            let m = masks(hash);
            for i in 0..WORDS {
                let mut holed = block;
                holed[i] &= !m[i];
                assert!(!reference(&holed, hash));
                agree(&holed, hash);
            }
        }
    }

    #[test]
    fn unaligned_bytes_read_the_same() {
        // A snapshot buffer need not be 64-byte aligned in memory: probe at every offset.
        let hash = KeyHash(0xdead_beef_cafe_f00d);
        let mut block = [0u64; WORDS];
        block_insert(&mut block, hash);
        let bytes = bytes_of(&block);
        let mut buf = [0u8; BLOCK_BYTES + 64];
        for off in 0..64 {
            buf.fill(0);
            buf[off..off + BLOCK_BYTES].copy_from_slice(&bytes);
            let b: &[u8; BLOCK_BYTES] = buf[off..off + BLOCK_BYTES].try_into().unwrap();
            for p in probes() {
                assert!(p.contains(BlockRef::Bytes(b), hash), "{p:?} at {off}");
            }
        }
    }

    #[test]
    fn detect_names_what_it_runs() {
        let p = Probe::detect();
        assert!(["scalar", "avx2", "neon"].contains(&p.name()));
        #[cfg(revbloom_force_scalar)]
        assert_eq!(p, Probe::scalar());
    }

    proptest! {
        // Miri runs these cases slowly; a few dozen still walk every branch.
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 24 } else { 4096 }))]

        /// Random blocks of any density and random hashes: every probe gives the reference
        /// verdict, from words and from bytes.
        #[test]
        fn probes_agree_on_random_blocks(
            words in proptest::array::uniform8(any::<u64>()),
            extra in proptest::collection::vec(proptest::array::uniform8(any::<u64>()), 0..5),
            h in any::<u64>(),
        ) {
            // OR-ing more random words in gives blocks from half full to nearly full, where
            // positives actually happen.
            let mut block = words;
            for more in extra {
                for (w, m) in block.iter_mut().zip(more) {
                    *w |= m;
                }
            }
            agree(&block, KeyHash(h));
            // And the block after inserting the hash must pass everywhere.
            block_insert(&mut block, KeyHash(h));
            agree(&block, KeyHash(h));
        }
    }
}
