//! The publisher's HTTP protocol, in one place: paths, query parameters, header names and the
//! JSON bodies. The publisher, the sync client, the HTTP exact source and the CLI all use these
//! definitions, so renaming a field breaks the build rather than a deployment. `docs/API.md`
//! is the prose version.
//!
//! Request bodies refuse unknown fields (a misspelt `"Exp"` is an error, not ignored); reply
//! bodies accept them, so a newer publisher can add fields without breaking older clients.
//! Reply fields are declared in alphabetical order: that is the order they go out in, as
//! `docs/API.md` shows them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `POST` revocations (admin); `GET ?jti=&iss=` is the query form of the exact lookup.
pub const REVOCATIONS: &str = "/v1/revocations";
/// `GET` the exact lookup of one `jti` (the route pattern; clients build it with
/// [`REVOCATIONS`] and a percent-encoded segment).
pub const REVOCATION: &str = "/v1/revocations/{jti}";
/// `POST` claim cutoffs (admin).
pub const CUTOFFS: &str = "/v1/cutoffs";
/// `GET` the current snapshot (`?wait=` long-poll, `If-None-Match` with the generation).
pub const SNAPSHOT: &str = "/v1/snapshot";
/// `GET` the delta chain since a generation (`?since=N&wait=`).
pub const DELTAS: &str = "/v1/deltas";
/// `GET` liveness and the current generation.
pub const HEALTHZ: &str = "/healthz";
/// `GET` Prometheus metrics.
pub const METRICS: &str = "/metrics";

/// Query parameter: the generation a client holds ([`DELTAS`]).
pub const SINCE: &str = "since";
/// Query parameter: how long to long-poll (`30s`, `500ms`, `2m` or bare seconds).
pub const WAIT: &str = "wait";
/// Query parameter: the issuer of the exact lookup.
pub const ISS: &str = "iss";
/// Query parameter: the `jti` of the query form of the exact lookup.
pub const JTI: &str = "jti";

/// Response header carrying the generation of a snapshot or of the last delta of a chain.
pub const GENERATION_HEADER: &str = "x-revbloom-generation";

/// The entity tag of a generation, as `ETag` carries it and `If-None-Match` names it.
pub fn etag(generation: u64) -> String {
    format!("\"{generation}\"")
}

/// A wait in the form the publisher parses: whole milliseconds.
pub fn wait_param(wait: Duration) -> String {
    format!("{}ms", wait.as_millis())
}

/// The URL of the delta chain since `since` for a publisher at `base` (no trailing `/`).
pub fn deltas_url(base: &str, since: u64, wait: Duration) -> String {
    format!("{base}{DELTAS}?{SINCE}={since}&{WAIT}={}", wait_param(wait))
}

/// The URL of the snapshot for a publisher at `base` (no trailing `/`).
pub fn snapshot_url(base: &str, wait: Duration) -> String {
    format!("{base}{SNAPSHOT}?{WAIT}={}", wait_param(wait))
}

/// One revocation as posted to [`REVOCATIONS`] (a batch is a JSON array of these).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeItem {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, unix seconds; a fractional value is rounded to the nearest second,
    /// as verifiers read it. Absent (or `null`): every token with this `jti` issued until now
    /// is revoked whatever its `exp`, until the longest token lifetime has passed (see
    /// `docs/API.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<serde_json::Number>,
    /// The token's issuer; without it the revocation applies to the `jti` of every issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// The answer to a revocation: sent only once every item is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeReply {
    /// Items accepted.
    pub accepted: usize,
    /// Of those, repeats of stored revocations.
    pub duplicates: usize,
    /// Of those, revocations not stored before.
    pub new: usize,
}

/// A claim cutoff as posted to [`CUTOFFS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoffItem {
    /// The claim value, e.g. a user id.
    pub value: String,
    /// The claim (default `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Tokens issued before this unix time are revoked (default: now + clock skew + 1, so
    /// every token any issuer clock has stamped up to the current second is revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// The issuer; without it the cutoff applies to tokens of every issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// The answer to a cutoff: what was stored, once durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoffReply {
    /// The cutoff time.
    pub before: u64,
    /// Whether it changed anything (a later cutoff for the same key makes it a no-op).
    pub changed: bool,
    /// The claim.
    pub claim: String,
    /// The issuer (normalised), or none for every issuer.
    pub iss: Option<String>,
    /// The claim value.
    pub value: String,
}

/// The exact lookup's answer ([`REVOCATION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupAnswer {
    /// The latest `exp` of a matching revocation.
    pub exp: Option<u64>,
    /// The issuer the lookup used (normalised; the default issuer when none was given).
    pub iss: Option<String>,
    /// The `jti` asked about, as the publisher decoded it.
    pub jti: String,
    /// The prune watermark: "not revoked" says nothing about a token expiring before it
    /// (0, or absent from publishers that never prune: nothing forgotten).
    #[serde(default)]
    pub pruned_before: u64,
    /// Whether a revocation of this `jti` applies to the issuer asked about.
    pub revoked: bool,
    /// When the `jti` was revoked without an `exp`: tokens with this `jti` issued before this
    /// time (unix seconds) are revoked whatever their `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_before: Option<u64>,
}

/// Every error body: a stable code (see `docs/API.md`) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `exp_in_past`.
    pub error: String,
    /// What went wrong and what to do.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tags() {
        let wait = Duration::from_secs(30);
        assert_eq!(
            deltas_url("http://h:1", 7, wait),
            "http://h:1/v1/deltas?since=7&wait=30000ms"
        );
        assert_eq!(
            snapshot_url("http://h:1/p", Duration::ZERO),
            "http://h:1/p/v1/snapshot?wait=0ms"
        );
        assert_eq!(etag(12), "\"12\"");
    }

    #[test]
    fn requests_refuse_unknown_fields_replies_do_not() {
        let bad = serde_json::from_str::<RevokeItem>(r#"{"jti":"a","Exp":1}"#);
        assert!(bad.is_err());
        let answer: LookupAnswer = serde_json::from_str(
            r#"{"revoked":false,"jti":"a","iss":null,"exp":null,"added_later":1}"#,
        )
        .unwrap();
        assert_eq!(answer.pruned_before, 0);
    }
}
