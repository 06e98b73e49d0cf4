//! Why a token was refused.

use thiserror::Error;

use super::exact::ExactError;

/// Why [`Verifier::verify`](super::Verifier::verify) refused a token.
///
/// The variants separate what a caller answers differently: an invalid or expired token is the
/// client's problem (HTTP 401), a revoked one too but worth saying so, and unavailable
/// revocation state is ours (HTTP 503, retry later).
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token failed decoding or validation (shape, signature, algorithm, `nbf`, `iss`,
    /// `aud`, required claims). The reason is jsonwebtoken's.
    #[error("the token is invalid: {0:?}")]
    Invalid(jsonwebtoken::errors::ErrorKind),
    /// The token is past its `exp` (plus leeway), or older than anything the revocation
    /// window still covers.
    #[error("the token has expired")]
    Expired,
    /// The token has been revoked.
    #[error("the token has been revoked ({by})")]
    Revoked {
        /// Which revocation matched.
        by: RevokedBy,
    },
    /// Revocation state could not be consulted and the staleness policy says to refuse
    /// rather than guess. Retry later; the token itself may be fine.
    #[error("revocation state is unavailable: {0}")]
    Unavailable(#[source] Unavailable),
    /// The token lies outside what the revocation state covers (no `exp`, a lifetime longer
    /// than the deployment's maximum, a `jti` too long to have been revoked): the state cannot
    /// vouch for it, so it is refused.
    #[error("the token is outside what revocation covers: {0}")]
    OutOfBounds(#[source] crate::bounds::OutOfBounds),
    /// The token has no `jti` (or a `jti` that is not a string) and the verifier requires
    /// revocation by token id. Issue tokens with a `jti`, or build the verifier with
    /// `require_jti(false)` if such tokens should only be subject to claim cutoffs.
    #[error("the token has no string jti claim, and revocation by token id is required")]
    MissingJti,
    /// The token's `iss` is not one of the configured [`Issuers`](super::Issuers) (matched
    /// exactly, case and trailing slash included). Add the issuer, or check what the identity
    /// provider puts in `iss`.
    #[error(
        "the token's issuer is not a configured issuer; add it, or check the token's iss claim"
    )]
    UnknownIssuer,
    /// The token names a key (`kid`) its issuer's key set does not hold, or has no `kid` and
    /// the set holds no key for its algorithm. A refresh of the issuer's keys has been asked
    /// for (rate limited); a token signed with a key the issuer has just published passes once
    /// it is fetched, a forged one never does.
    #[error("issuer {iss:?} has no key {kid:?} for this token; its keys are fetched again at most once per refresh interval")]
    UnknownKey {
        /// The issuer whose key set was searched.
        iss: String,
        /// The token's `kid` (at most 128 bytes of it), if any.
        kid: Option<String>,
    },
    /// The token has no `kid` and its issuer publishes several keys for its algorithm. Have
    /// the identity provider put `kid` in its tokens' headers.
    #[error("the token has no kid and issuer {iss:?} publishes several keys for its algorithm; issue tokens with a kid")]
    AmbiguousKey {
        /// The issuer.
        iss: String,
    },
    /// No key set of the token's issuer has been loaded yet (its JWKS URL has not answered
    /// since start). Ours, not the client's (HTTP 503): check that the JWKS URL is reachable
    /// (the JWKS client logs every failed fetch with its reason); retry later.
    #[error("no key set has been loaded yet for issuer {iss:?}; check that its JWKS URL is reachable, then retry")]
    KeysUnavailable {
        /// The issuer.
        iss: String,
    },
}

impl VerifyError {
    /// A short, fixed description that is safe to show to the client (no internal detail):
    /// what RFC 6750's `error_description` carries.
    pub fn public_description(&self) -> &'static str {
        match self {
            VerifyError::Invalid(_) => "the access token is invalid",
            VerifyError::Expired => "the access token expired",
            VerifyError::Revoked { .. } => "the access token has been revoked",
            VerifyError::Unavailable(_) => "token revocation state is temporarily unavailable",
            VerifyError::MissingJti => "the access token has no jti claim",
            VerifyError::OutOfBounds(_) => {
                "the access token's lifetime is outside what this service accepts"
            }
            VerifyError::UnknownIssuer => "the access token's issuer is not accepted",
            VerifyError::UnknownKey { .. } => "the access token's signing key is unknown",
            VerifyError::AmbiguousKey { .. } => "the access token has no key id",
            VerifyError::KeysUnavailable { .. } => {
                "the token issuer's signing keys are temporarily unavailable"
            }
        }
    }
}

/// Which revocation matched a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RevokedBy {
    /// The token's `jti` (with its `iss`, when issuer keying is on) is revoked: the filter
    /// matched and the exact source confirmed it.
    #[error("token id revoked")]
    Jti,
    /// The filter matched the token's `jti` and no exact source is configured to rule out a
    /// false positive, so the verifier refuses it. Configure an exact source to accept the
    /// rare good token that collides with a revoked one.
    #[error("token id matched the revocation filter; no exact source configured to confirm")]
    JtiUnconfirmed,
    /// A claim cutoff matched: the token's `claim` has a value whose tokens issued before
    /// some time are revoked, and this token was issued before it (or has no `iat`).
    #[error("claim cutoff on `{claim}`")]
    Cutoff {
        /// The claim name, e.g. `sub` or `sid`.
        claim: String,
    },
}

/// Why revocation state was unavailable.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// No revocation state has been loaded yet (no snapshot), and the policy does not allow
    /// accepting tokens without it.
    #[error("no revocation snapshot is loaded")]
    NoSnapshot,
    /// The loaded snapshot is older than the configured maximum age and the policy is
    /// fail-closed.
    #[error("the revocation snapshot is {age_secs} s old, more than the allowed {max_age_secs} s")]
    Stale {
        /// Age of the snapshot (now minus its `created_at`), in seconds.
        age_secs: u64,
        /// The configured maximum age, in seconds.
        max_age_secs: u64,
    },
    /// The exact source failed; the policy says to refuse rather than accept unchecked.
    #[error("the exact revocation source failed: {0}")]
    ExactSource(#[source] ExactError),
    /// Only an asynchronous exact source is configured, but the synchronous `verify` reached
    /// a point where it must be asked. Call `verify_async`, or configure a synchronous source.
    #[error("the exact source is asynchronous only; call verify_async")]
    ExactSourceIsAsync,
    /// The revocation state changed the claims it holds cutoffs for while the token was
    /// being checked, several times in a row; retry.
    #[error("the revocation state kept changing its cutoff claims during the check; retry")]
    StateChanging,
}
