//! The deployment's time bounds: the one place where the publisher and the verifier agree on
//! time.
//!
//! A revoked token slips through when the two sides disagree about how long a token may live,
//! how late after `exp` it is still accepted, or how far their clocks may drift. [`Bounds`]
//! holds those three numbers; they travel in every snapshot, and every rule that compares a
//! token's times or decides when the publisher may forget something is a method here, so the
//! two sides cannot compute them differently.
//!
//! ```
//! use revbloom::bounds::{Bounds, OutOfBounds};
//!
//! let b = Bounds { max_token_lifetime: 3600, leeway: 60, max_clock_skew: 5 };
//! let now = 1_767_225_600;
//! assert_eq!(b.admit(Some(now + 600), Some(now - 10), now, now), Ok(()));
//! // A token living longer than the deployment covers is refused, not trusted.
//! assert_eq!(
//!     b.admit(Some(now + 7200), Some(now), now, now),
//!     Err(OutOfBounds::LifetimeTooLong { exp: now + 7200, iat: Some(now), max: 3600 })
//! );
//! // The publisher keeps a revocation as long as any verifier may still accept its token.
//! assert_eq!(b.revocation_needed_until(now), now + 65);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// The system clock in unix seconds: what publisher, verifier and CLI read "now" from (0 if the
/// clock is before 1970, which no rule depends on).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Longest `jti` in bytes that a revocation may carry. A verifier refuses tokens with a longer
/// `jti` ([`OutOfBounds::JtiTooLong`]): a token the publisher could not revoke is never
/// accepted.
pub const MAX_JTI_BYTES: usize = 1024;

/// Default longest token lifetime a deployment covers: 30 days.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 30 * 86_400;

/// Default bound on the difference between any two clocks of a deployment: 5 s.
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: u64 = 5;

/// The time bounds a deployment's publisher and verifiers share (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Longest lifetime `exp − iat` of any token the deployment accepts.
    pub max_token_lifetime: u64,
    /// Verifiers accept a token until `exp + leeway` by their own clock.
    pub leeway: u64,
    /// The most any two clocks of the deployment (issuers, publisher, verifiers) differ by.
    pub max_clock_skew: u64,
}

/// Why a token lies outside what the revocation state covers. A verifier refuses such a token:
/// the state cannot vouch for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OutOfBounds {
    /// The token has no `exp`: its lifetime is unbounded, so no pruned cutoff can be ruled out.
    #[error("the token has no exp; revocation state covers only tokens that expire")]
    NoExpiry,
    /// The token has expired, by the verifier's clock or by the state's (`exp + leeway` is past).
    #[error("the token expired at {exp} (leeway {leeway} s)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The deployment's leeway.
        leeway: u64,
    },
    /// `exp − iat`, or `exp − now`, is beyond the deployment's longest token lifetime.
    #[error(
        "the token lives longer than the deployment's maximum of {max} s (exp {exp}, iat {iat:?})"
    )]
    LifetimeTooLong {
        /// The token's `exp`.
        exp: u64,
        /// The token's `iat`, if it has one.
        iat: Option<u64>,
        /// The deployment's longest token lifetime.
        max: u64,
    },
    /// The token carries a claim that cutoffs apply to (e.g. `sub`) but no `iat`: nothing
    /// bounds how long ago it was issued, so a cutoff that has since been pruned cannot be
    /// ruled out.
    #[error("the token has no iat, so no claim cutoff can be ruled out")]
    NoIssuedAt,
    /// The `jti` is longer than [`MAX_JTI_BYTES`]: no publisher could have stored its
    /// revocation.
    #[error("the jti is {len} bytes; at most {max} are covered", max = MAX_JTI_BYTES)]
    JtiTooLong {
        /// The `jti`'s length in bytes.
        len: usize,
    },
}

impl OutOfBounds {
    /// Whether this is [`OutOfBounds::Expired`].
    pub fn is_expired(&self) -> bool {
        matches!(self, OutOfBounds::Expired { .. })
    }
}

impl Bounds {
    /// Check a token's times against the bounds: `exp` and `iat` from the token, `now` by the
    /// verifier's clock, `created_at` of the state it is checked against (the publisher's
    /// clock; a verifier whose clock lags never accepts what the publisher already treats as
    /// expired and may have pruned).
    pub fn admit(
        &self,
        exp: Option<u64>,
        iat: Option<u64>,
        now: u64,
        created_at: u64,
    ) -> Result<(), OutOfBounds> {
        let Some(exp) = exp else {
            return Err(OutOfBounds::NoExpiry);
        };
        let last_valid = exp.saturating_add(self.leeway);
        if last_valid < now || last_valid.saturating_add(self.max_clock_skew) < created_at {
            return Err(OutOfBounds::Expired {
                exp,
                leeway: self.leeway,
            });
        }
        let too_long = OutOfBounds::LifetimeTooLong {
            exp,
            iat,
            max: self.max_token_lifetime,
        };
        // An issuer clock ahead by the skew mints `exp = its now + lifetime`.
        let latest_exp = now
            .saturating_add(self.max_token_lifetime)
            .saturating_add(self.max_clock_skew);
        if exp > latest_exp {
            return Err(too_long);
        }
        if let Some(iat) = iat {
            if exp.saturating_sub(iat) > self.max_token_lifetime {
                return Err(too_long);
            }
        }
        Ok(())
    }

    /// Check a `jti`'s length ([`MAX_JTI_BYTES`]).
    pub fn admit_jti(jti: &str) -> Result<(), OutOfBounds> {
        if jti.len() > MAX_JTI_BYTES {
            return Err(OutOfBounds::JtiTooLong { len: jti.len() });
        }
        Ok(())
    }

    /// The last publisher time at which a revocation of a token expiring at `exp` may still be
    /// needed: a verifier whose clock lags by the skew accepts the token until its own
    /// `exp + leeway`. Prune only after this.
    pub fn revocation_needed_until(&self, exp: u64) -> u64 {
        exp.saturating_add(self.leeway)
            .saturating_add(self.max_clock_skew)
    }

    /// The earliest `exp` a revocation made at publisher time `now` can still matter for.
    pub fn earliest_useful_exp(&self, now: u64) -> u64 {
        now.saturating_sub(self.leeway)
            .saturating_sub(self.max_clock_skew)
    }

    /// The last publisher time at which a cutoff at `before` may still be needed: a token
    /// issued before it lives at most `max_token_lifetime` and is accepted until
    /// `exp + leeway` by a clock that may lag by the skew.
    pub fn cutoff_needed_until(&self, before: u64) -> u64 {
        before
            .saturating_add(self.max_token_lifetime)
            .saturating_add(self.leeway)
            .saturating_add(self.max_clock_skew)
    }

    /// The default cutoff time for "now" at publisher time `now`: one second past the latest
    /// `iat` any issuer clock (ahead by at most the skew) can have stamped so far.
    pub fn default_cutoff_before(&self, now: u64) -> u64 {
        now.saturating_add(self.max_clock_skew).saturating_add(1)
    }
}

/// The integer a fractional `exp` stands for: rounded to the nearest second, as jsonwebtoken
/// validates it. Publisher and verifier both use this, so a revocation lands in the bucket the
/// verifier probes. `None` for negative, non-finite or out-of-range values.
pub fn canonical_exp(exp: f64) -> Option<u64> {
    if exp.is_finite() && exp >= 0.0 && exp < u64::MAX as f64 {
        Some(exp.round() as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        max_token_lifetime: 1000,
        leeway: 60,
        max_clock_skew: 5,
    };

    #[test]
    fn expiry_uses_the_later_of_both_clocks() {
        assert_eq!(B.admit(Some(100), None, 160, 0), Ok(()));
        assert!(B.admit(Some(100), None, 161, 0).unwrap_err().is_expired());
        // Verifier clock lags, but the state was made after exp + leeway + skew.
        assert_eq!(B.admit(Some(100), None, 100, 165), Ok(()));
        assert!(B.admit(Some(100), None, 100, 166).unwrap_err().is_expired());
    }

    #[test]
    fn lifetime_bounds() {
        assert_eq!(B.admit(None, None, 0, 0), Err(OutOfBounds::NoExpiry));
        assert_eq!(B.admit(Some(2000), Some(1000), 1000, 0), Ok(()));
        assert!(B.admit(Some(2001), Some(1000), 1000, 0).is_err());
        assert_eq!(B.admit(Some(2005), None, 1000, 0), Ok(()));
        assert!(B.admit(Some(2006), None, 1000, 0).is_err());
        assert_eq!(B.admit(Some(u64::MAX), None, u64::MAX, 0), Ok(()));
    }

    #[test]
    fn pruning_waits_for_every_verifier() {
        assert_eq!(B.revocation_needed_until(100), 165);
        assert_eq!(B.earliest_useful_exp(165), 100);
        assert_eq!(B.cutoff_needed_until(100), 1165);
        assert_eq!(B.default_cutoff_before(100), 106);
        assert_eq!(B.revocation_needed_until(u64::MAX), u64::MAX);
    }

    #[test]
    fn fractional_exp_rounds_like_jsonwebtoken() {
        assert_eq!(canonical_exp(99.5), Some(100));
        assert_eq!(canonical_exp(99.4), Some(99));
        assert_eq!(canonical_exp(-1.0), None);
        assert_eq!(canonical_exp(f64::NAN), None);
    }

    #[test]
    fn jti_length() {
        assert!(Bounds::admit_jti(&"a".repeat(MAX_JTI_BYTES)).is_ok());
        assert!(Bounds::admit_jti(&"a".repeat(MAX_JTI_BYTES + 1)).is_err());
    }
}
