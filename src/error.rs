//! Error types of the core engine.

use thiserror::Error;

/// A [`WindowConfig`](crate::WindowConfig) that cannot be used, with the field at fault.
///
/// Every variant names the field and says what a valid value looks like, so the
/// `Display` text can be shown to an operator as is.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `bucket_width` was zero or not a whole number of seconds.
    #[error("bucket_width must be a whole, non-zero number of seconds (got {got_ms} ms)")]
    BucketWidth {
        /// The width that was given, in milliseconds.
        got_ms: u128,
    },
    /// `horizon` was zero, not a whole number of seconds, or not a multiple of `bucket_width`.
    #[error("horizon must be a non-zero multiple of bucket_width ({width_s} s); got {got_ms} ms")]
    Horizon {
        /// The horizon that was given, in milliseconds.
        got_ms: u128,
        /// The bucket width, in seconds.
        width_s: u64,
    },
    /// `leeway` was not a whole number of seconds, or longer than the horizon.
    #[error("leeway must be a whole number of seconds no longer than the horizon ({horizon_s} s); got {got_ms} ms")]
    Leeway {
        /// The leeway that was given, in milliseconds.
        got_ms: u128,
        /// The horizon, in seconds.
        horizon_s: u64,
    },
    /// `max_token_lifetime` was zero or not a whole number of seconds.
    #[error("max_token_lifetime must be a whole, non-zero number of seconds (got {got_ms} ms)")]
    MaxTokenLifetime {
        /// The lifetime that was given, in milliseconds.
        got_ms: u128,
    },
    /// `max_clock_skew` was not a whole number of seconds, or over the supported maximum.
    #[error("max_clock_skew must be a whole number of seconds, at most {max_s} (got {got_ms} ms)")]
    MaxClockSkew {
        /// The skew that was given, in milliseconds.
        got_ms: u128,
        /// The supported maximum, in seconds.
        max_s: u64,
    },
    /// `fp_rate` was not strictly between 0 and 1, or below the smallest supported rate.
    #[error("fp_rate must lie in [{min}, 1), exclusive of 1 (got {got})")]
    FpRate {
        /// The rate that was given.
        got: f64,
        /// The smallest rate this filter layout supports.
        min: f64,
    },
    /// `expected_per_bucket` was zero.
    #[error("expected_per_bucket must be at least 1")]
    ExpectedPerBucket,
    /// The window as configured would allocate more than `max_bytes`.
    #[error("the window would allocate {needed} bytes of filter, more than max_bytes = {max_bytes}; lower expected_per_bucket or the horizon, raise fp_rate, or raise max_bytes")]
    TooLarge {
        /// Bytes the configuration needs.
        needed: u64,
        /// The configured cap.
        max_bytes: u64,
    },
    /// The ring would need more buckets than supported (horizon / bucket_width too large).
    #[error("horizon / bucket_width gives {buckets} buckets; at most {max} are supported")]
    TooManyBuckets {
        /// Buckets the configuration needs.
        buckets: u64,
        /// The supported maximum.
        max: u64,
    },
    /// The operating system's random source failed while choosing a hash seed.
    #[error("could not draw a random hash seed from the operating system: {0}; check that the OS random source (getrandom(2), /dev/urandom) is available to this process")]
    Seed(#[source] getrandom::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_failure_keeps_its_cause() {
        use std::error::Error as _;
        let e = ConfigError::Seed(getrandom::Error::UNSUPPORTED);
        let cause = e.source().expect("the cause is the source");
        assert_eq!(
            cause.downcast_ref::<getrandom::Error>(),
            Some(&getrandom::Error::UNSUPPORTED)
        );
        assert!(!e.to_string().contains('\n'));
    }
}
