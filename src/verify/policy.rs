//! What the verifier does when its revocation state is stale or missing.

/// What to do when the revocation state is older than the configured maximum age, missing
/// altogether, or when the exact source fails.
///
/// Fail-closed is the default, as the OAuth Token Status List draft recommends: whoever can
/// stop snapshot updates must not thereby un-revoke tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StalenessPolicy {
    /// Refuse every token with [`Unavailable`](super::VerifyError::Unavailable) (HTTP 503)
    /// until fresh state arrives; a failing exact source refuses the token it was asked about.
    #[default]
    FailClosed,
    /// Send every token's `jti` to the exact source instead of trusting the stale filter
    /// (claim cutoffs of the stale state still apply; cutoffs issued since it was built are
    /// not seen). Without an exact source, or when it fails, refuse as fail-closed does.
    ExactSource,
    /// Keep using the stale state (or, with none, accept without a revocation check), and
    /// accept when the exact source fails. Counted in
    /// [`VerifierStats::fail_open`](super::VerifierStats::fail_open) so it can be alarmed on.
    FailOpen,
}
