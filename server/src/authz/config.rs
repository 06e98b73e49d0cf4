//! What `revbloom authz` runs with: listeners, where revocation state comes from, how tokens
//! are verified, what the allow answer forwards. Key and token material arrives already read
//! (the command line reads files and the environment, never argv), so this type holds no path
//! that the runner would still have to open.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use revbloom::snapshot::SealKey;
use revbloom::sync::JwksConfig;
use revbloom::{OpenOptions, StalenessPolicy};

use super::check::ForwardClaim;
use crate::limits::ConnLimits;

/// Default check listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8760";
/// Default admin listener (`/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8761";
/// Default snapshot age beyond which the staleness policy applies.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Where revocation snapshots come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RevocationSource {
    /// A publisher (`revbloom serve`), long-polled for deltas, with static mirrors tried
    /// first when given. The publisher is also the default exact source.
    Publisher {
        /// Its base URL.
        url: String,
        /// Mirrors of its `--publish-to` bucket, tried in order before it.
        mirrors: Vec<String>,
    },
    /// Static mirrors only (the folder URLs holding `manifest.rbm`).
    Mirrors(Vec<String>),
    /// A snapshot file, reloaded when it changes.
    File(PathBuf),
}

/// How tokens are verified.
pub enum TokenKeys {
    /// One static key (HS256 secret, ES256 or EdDSA public key) and its algorithm; `iss`
    /// checked against [`AuthzConfig::issuer`] when set.
    Static {
        /// The key.
        key: DecodingKey,
        /// The only algorithm accepted.
        algorithm: Algorithm,
    },
    /// Issuers by JWKS URL, `(iss, url)`; each gets [`AuthzConfig::audience`].
    Jwks(Vec<(String, String)>),
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never the key itself: an HS256 secret would end up in a log.
            TokenKeys::Static { algorithm, .. } => f
                .debug_struct("Static")
                .field("algorithm", algorithm)
                .finish_non_exhaustive(),
            TokenKeys::Jwks(issuers) => f.debug_tuple("Jwks").field(issuers).finish(),
        }
    }
}

/// Everything `revbloom authz` runs with.
#[derive(Debug)]
pub struct AuthzConfig {
    /// The check listener: every path and method is a check.
    pub listen: SocketAddr,
    /// The admin listener: `/healthz`, `/readyz`, `/metrics`.
    pub admin_listen: SocketAddr,
    /// The Envoy ext_authz gRPC listener (`envoy.service.auth.v3.Authorization/Check`), if any.
    pub grpc_listen: Option<SocketAddr>,
    /// How the gRPC front end is bounded and what it trusts (Envoy `jwt_authn` claims).
    pub grpc: super::grpc::GrpcOptions,
    /// Where snapshots come from.
    pub source: RevocationSource,
    /// With a publisher or mirrors: the last good snapshot is kept here and loaded first on
    /// start, so a restart remembers every revocation while the source is down.
    pub cache: Option<PathBuf>,
    /// How tokens are verified.
    pub keys: TokenKeys,
    /// Require this `iss` (static keys only; revocations are then keyed on it).
    pub issuer: Option<String>,
    /// Require this `aud` (of every JWKS issuer too); `None` accepts any audience.
    pub audience: Option<String>,
    /// The publisher lookup endpoint asked on filter positives [default: the publisher of
    /// [`RevocationSource::Publisher`]]. Without any, filter positives are refused.
    pub exact_url: Option<String>,
    /// Snapshot validation: the Ed25519 key snapshots must be signed with.
    pub open: OpenOptions,
    /// The publisher's seal key: unseals snapshots and deltas, and yields the read token of
    /// exact lookups.
    pub seal: Option<SealKey>,
    /// Accept unsigned snapshots from the publisher.
    pub allow_unsigned: bool,
    /// A snapshot older than this is stale.
    pub max_age: Duration,
    /// What checks do while the snapshot is stale or missing.
    pub policy: StalenessPolicy,
    /// Claims copied into headers of the allow answer.
    pub forward: Vec<ForwardClaim>,
    /// How JWKS URLs are fetched.
    pub jwks: JwksConfig,
    /// Bounds of both listeners (header read timeout, connection cap, shutdown grace).
    pub conn: ConnLimits,
}

/// Parse `CLAIM=HEADER` (`sub=x-auth-sub`) into a [`ForwardClaim`].
pub fn parse_forward_claim(spec: &str) -> Result<ForwardClaim, String> {
    let Some((claim, header)) = spec.split_once('=') else {
        return Err(format!(
            "{spec:?}: expected CLAIM=HEADER, e.g. sub=x-auth-sub"
        ));
    };
    let (claim, header) = (claim.trim(), header.trim());
    if claim.is_empty() {
        return Err(format!("{spec:?}: the claim name is empty"));
    }
    let header = axum::http::HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| format!("{spec:?}: {header:?} is not a header name"))?;
    // These carry the decision or the connection itself: forwarding a token's claim into one
    // would let a token holder shape the proxy's answer.
    const RESERVED: [&str; 6] = [
        "www-authenticate",
        "content-length",
        "transfer-encoding",
        "connection",
        "authorization",
        "host",
    ];
    if RESERVED.contains(&header.as_str()) {
        return Err(format!(
            "{spec:?}: {header} cannot carry a claim; pick a header of your own, e.g. x-auth-sub"
        ));
    }
    Ok(ForwardClaim {
        claim: claim.to_owned(),
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_claims_parse_and_refuse_reserved_headers() {
        let f = parse_forward_claim("sub=X-Auth-Sub").unwrap();
        assert_eq!((f.claim.as_str(), f.header.as_str()), ("sub", "x-auth-sub"));
        for bad in [
            "sub",
            "=x",
            "sub=",
            "sub=a b",
            "sub=www-authenticate",
            "sub=Host",
        ] {
            assert!(parse_forward_claim(bad).is_err(), "{bad}");
        }
    }
}
