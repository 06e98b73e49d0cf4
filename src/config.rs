//! Window configuration and its validation.

use std::time::Duration;

use crate::bloom;
use crate::error::ConfigError;

/// The smallest false-positive rate the eight-bit blocked layout is sized for.
pub const MIN_FP_RATE: f64 = 1e-6;
/// The most expiry buckets a ring may have.
pub const MAX_BUCKETS: u64 = 65_536;
/// The largest clock skew a window accepts: an hour. Clocks further apart than that are a
/// broken deployment, not skew.
pub const MAX_CLOCK_SKEW_SECS: u64 = 3600;

/// How a [`Window`](crate::Window) buckets and sizes revocations.
///
/// Built like a sentence from [`WindowConfig::default`] (1 h buckets over a 24 h horizon,
/// 10 000 revocations expected per bucket, 0.1 % false positives, 60 s leeway, 1 GiB cap):
///
/// ```
/// use std::time::Duration;
/// use revbloom::WindowConfig;
///
/// let config = WindowConfig::default()
///     .bucket_width(Duration::from_secs(15 * 60))
///     .horizon(Duration::from_secs(12 * 3600))
///     .expected_per_bucket(50_000)
///     .fp_rate(0.001);
/// assert!(config.validate().is_ok());
/// assert!(WindowConfig::default().fp_rate(1.5).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    bucket_width: Duration,
    horizon: Duration,
    expected_per_bucket: u64,
    fp_rate: f64,
    leeway: Duration,
    max_bytes: u64,
    max_token_lifetime: Duration,
    max_clock_skew: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            bucket_width: Duration::from_secs(3600),
            horizon: Duration::from_secs(24 * 3600),
            expected_per_bucket: 10_000,
            fp_rate: 0.001,
            leeway: Duration::from_secs(60),
            max_bytes: 1 << 30,
            max_token_lifetime: Duration::from_secs(crate::bounds::DEFAULT_MAX_TOKEN_LIFETIME_SECS),
            max_clock_skew: Duration::from_secs(crate::bounds::DEFAULT_MAX_CLOCK_SKEW_SECS),
        }
    }
}

impl WindowConfig {
    /// The span of token expiry times one bucket covers (whole seconds, non-zero).
    pub fn bucket_width(mut self, width: Duration) -> Self {
        self.bucket_width = width;
        self
    }
    /// The longest token lifetime covered; a multiple of the bucket width. Revocations whose
    /// `exp` lies further ahead are kept in the overflow bucket until the ring reaches them.
    pub fn horizon(mut self, horizon: Duration) -> Self {
        self.horizon = horizon;
        self
    }
    /// Revocations expected per bucket; each bucket starts sized for this and grows past it.
    pub fn expected_per_bucket(mut self, n: u64) -> Self {
        self.expected_per_bucket = n;
        self
    }
    /// Target false-positive rate of every bucket, in `[MIN_FP_RATE, 1)`.
    pub fn fp_rate(mut self, rate: f64) -> Self {
        self.fp_rate = rate;
        self
    }
    /// How long after `exp` verifiers still accept a token (whole seconds; verifiers clamp
    /// their own leeway to it). A bucket is dropped only once its whole span ended more than
    /// `leeway` ago.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
    /// Cap on the filter bytes of the window; buckets do not grow past it (their
    /// false-positive rate rises instead, never their false-negative rate).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The longest lifetime (`exp − iat`) of any token the deployment accepts (whole seconds,
    /// non-zero; default 30 days). Verifiers refuse longer-lived tokens, and the publisher keeps
    /// claim cutoffs this long. Independent of the horizon, which only sizes the ring.
    pub fn max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = lifetime;
        self
    }
    /// The most any two clocks of the deployment (issuers, publisher, verifiers) may differ by
    /// (whole seconds; default 5 s).
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }
    /// The time bounds this configuration gives a deployment.
    pub fn bounds(&self) -> crate::bounds::Bounds {
        crate::bounds::Bounds {
            max_token_lifetime: self.max_token_lifetime.as_secs(),
            leeway: self.leeway.as_secs(),
            max_clock_skew: self.max_clock_skew.as_secs(),
        }
    }

    /// Bucket width in seconds.
    pub fn bucket_width_secs(&self) -> u64 {
        self.bucket_width.as_secs()
    }
    /// Horizon in seconds.
    pub fn horizon_secs(&self) -> u64 {
        self.horizon.as_secs()
    }
    /// Leeway in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway.as_secs()
    }
    /// Revocations expected per bucket.
    pub fn expected(&self) -> u64 {
        self.expected_per_bucket
    }
    /// Target false-positive rate.
    pub fn target_fp_rate(&self) -> f64 {
        self.fp_rate
    }
    /// Cap on filter bytes.
    pub fn max_bytes_cap(&self) -> u64 {
        self.max_bytes
    }

    /// Check every field; on success, the derived geometry a window is built from.
    pub fn validate(&self) -> Result<Geometry, ConfigError> {
        let whole = |d: Duration| d.subsec_nanos() == 0;
        if !whole(self.bucket_width) || self.bucket_width.as_secs() == 0 {
            return Err(ConfigError::BucketWidth {
                got_ms: self.bucket_width.as_millis(),
            });
        }
        let width = self.bucket_width.as_secs();
        let horizon = self.horizon.as_secs();
        if !whole(self.horizon) || horizon == 0 || !horizon.is_multiple_of(width) {
            return Err(ConfigError::Horizon {
                got_ms: self.horizon.as_millis(),
                width_s: width,
            });
        }
        let leeway = self.leeway.as_secs();
        if !whole(self.leeway) || leeway > horizon {
            return Err(ConfigError::Leeway {
                got_ms: self.leeway.as_millis(),
                horizon_s: horizon,
            });
        }
        if !whole(self.max_token_lifetime) || self.max_token_lifetime.is_zero() {
            return Err(ConfigError::MaxTokenLifetime {
                got_ms: self.max_token_lifetime.as_millis(),
            });
        }
        if !whole(self.max_clock_skew) || self.max_clock_skew.as_secs() > MAX_CLOCK_SKEW_SECS {
            return Err(ConfigError::MaxClockSkew {
                got_ms: self.max_clock_skew.as_millis(),
                max_s: MAX_CLOCK_SKEW_SECS,
            });
        }
        if self.fp_rate.is_nan() || self.fp_rate < MIN_FP_RATE || self.fp_rate >= 1.0 {
            return Err(ConfigError::FpRate {
                got: self.fp_rate,
                min: MIN_FP_RATE,
            });
        }
        if self.expected_per_bucket == 0 {
            return Err(ConfigError::ExpectedPerBucket);
        }
        // The ring must hold every bucket from the oldest live one, floor((now - leeway) / w),
        // to the one holding now + horizon + leeway: at most ceil((h + 2l) / w) + 1 buckets.
        let span = horizon.saturating_add(leeway.saturating_mul(2));
        let buckets = span.div_ceil(width).saturating_add(1);
        if buckets > MAX_BUCKETS {
            return Err(ConfigError::TooManyBuckets {
                buckets,
                max: MAX_BUCKETS,
            });
        }
        let max_load = bloom::max_load_for(self.fp_rate);
        let initial_blocks = bloom::blocks_for(self.expected_per_bucket, max_load);
        // Ring buckets plus the overflow bucket, each at its initial size.
        let needed = initial_blocks
            .saturating_mul(buckets + 1)
            .saturating_mul(bloom::BLOCK_BYTES as u64);
        if needed > self.max_bytes || initial_blocks > u64::from(u32::MAX) {
            return Err(ConfigError::TooLarge {
                needed,
                max_bytes: self.max_bytes,
            });
        }
        Ok(Geometry {
            width,
            horizon,
            leeway,
            buckets: buckets as u32,
            max_load,
            initial_blocks: initial_blocks as u32,
        })
    }
}

/// Division by the bucket width without a hardware divide on the check path.
///
/// A 64-bit `div` is the slowest instruction of a check. For `exp < 2^32` (every date until
/// 2106) and a width in `[2, 2^32)` the bucket is `(M * exp) >> 64` with `M = ceil(2^64 / w)`:
/// exact for all 32-bit dividends (Lemire, Kaser & Kurz, "Faster remainder by direct
/// computation", 2019, theorem 1). Anything else takes the plain division; the branch is always
/// predicted.
///
/// ```
/// let d = revbloom::BucketDivisor::new(3600);
/// for exp in [0, 3599, 3600, 1_767_225_600, u64::from(u32::MAX), u64::MAX] {
///     assert_eq!(d.bucket(exp), exp / 3600);
/// }
/// // Widths without a multiply (1, and 2^32 or more) divide.
/// for w in [1, 1 << 32, u64::MAX] {
///     for exp in [0, 1, 1_767_225_600, u64::MAX] {
///         assert_eq!(revbloom::BucketDivisor::new(w).bucket(exp), exp / w);
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketDivisor {
    width: u64,
    /// `ceil(2^64 / width)`, or 0 when the fast path does not apply (width 1 or >= 2^32).
    magic: u64,
    /// The largest `exp` the multiply answers exactly: `u32::MAX` with a magic, else 0 (and
    /// `0 * magic >> 64 == 0 == 0 / width`), so one compare picks the path.
    fast_max: u64,
}

impl BucketDivisor {
    /// A divisor for `width` seconds (`width` must be non-zero; a zero width divides as 1).
    pub const fn new(width: u64) -> Self {
        let width = if width == 0 { 1 } else { width };
        let magic = if width > 1 && width <= u32::MAX as u64 {
            u64::MAX / width + 1
        } else {
            0
        };
        let fast_max = if magic != 0 { u32::MAX as u64 } else { 0 };
        Self {
            width,
            magic,
            fast_max,
        }
    }

    /// The width in seconds.
    pub const fn width(&self) -> u64 {
        self.width
    }

    /// `exp / width`.
    #[inline(always)]
    pub fn bucket(&self, exp: u64) -> u64 {
        if exp <= self.fast_max {
            ((u128::from(self.magic) * u128::from(exp)) >> 64) as u64
        } else {
            exp / self.width
        }
    }
}

/// What a valid [`WindowConfig`] works out to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Bucket width in seconds.
    pub width: u64,
    /// Horizon in seconds.
    pub horizon: u64,
    /// Leeway in seconds.
    pub leeway: u64,
    /// Buckets in the ring (the overflow bucket not counted).
    pub buckets: u32,
    /// Mean keys per block at which a bucket meets the target rate.
    pub max_load: f64,
    /// Blocks a fresh bucket starts with.
    pub initial_blocks: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn rejects_each_bad_field_by_name() {
        let c = WindowConfig::default;
        let e = |c: WindowConfig| c.validate().unwrap_err().to_string();
        assert!(e(c().bucket_width(secs(0))).contains("bucket_width"));
        assert!(e(c().bucket_width(Duration::from_millis(1500))).contains("bucket_width"));
        assert!(e(c().horizon(secs(5400))).contains("horizon"));
        assert!(e(c().horizon(secs(0))).contains("horizon"));
        assert!(e(c().fp_rate(0.0)).contains("fp_rate"));
        assert!(e(c().fp_rate(1.0)).contains("fp_rate"));
        assert!(e(c().fp_rate(f64::NAN)).contains("fp_rate"));
        assert!(e(c().expected_per_bucket(0)).contains("expected_per_bucket"));
        assert!(e(c().leeway(secs(100 * 3600))).contains("leeway"));
        assert!(e(c().expected_per_bucket(u64::MAX)).contains("max_bytes"));
        assert!(e(c().bucket_width(secs(1)).horizon(secs(1 << 40))).contains("buckets"));
    }

    #[test]
    fn fast_bucket_division_is_exact() {
        let widths = [
            1u64,
            2,
            3,
            7,
            60,
            3600,
            86_400,
            1 << 31,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for &w in &widths {
            let d = BucketDivisor::new(w);
            let edges = [
                0u64,
                1,
                w - 1,
                w,
                w.saturating_add(1),
                u64::from(u32::MAX) - 1,
                u64::from(u32::MAX),
                1 << 32,
                u64::MAX,
            ];
            for e in edges {
                assert_eq!(d.bucket(e), e / w, "w {w} exp {e}");
            }
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let e = x & u64::from(u32::MAX);
                assert_eq!(d.bucket(e), e / w, "w {w} exp {e}");
                assert_eq!(d.bucket(x), x / w, "w {w} exp {x}");
            }
        }
    }

    #[test]
    fn default_geometry() {
        let g = WindowConfig::default().validate().unwrap();
        // 24 h horizon + 2 x 60 s leeway over 1 h buckets: 25 spans, plus one.
        assert_eq!(g.buckets, 26);
        assert!(g.initial_blocks >= 1);
    }
}
