//! Identity-provider settings (`"identity_providers"` in the configuration): the issuers whose
//! OIDC Back-Channel Logout tokens and RFC 7009 revocation requests the publisher accepts, and
//! the OAuth clients allowed to call `POST /v1/oauth/revoke`.
//!
//! Nothing here is on by default: without issuers both endpoints answer 404 with a JSON body
//! naming the keys to set. Client secrets come from files or the environment, never from the
//! configuration file's neighbours on a command line.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest `client_id` accepted in the configuration, bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 256;
/// Shortest client secret accepted, bytes: a guessable secret would let anyone revoke.
pub const MIN_CLIENT_SECRET_BYTES: usize = 16;

/// One trusted identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` its tokens carry, exactly (case and trailing `/` included), e.g.
    /// `https://keycloak.example.com/realms/acme`.
    pub issuer: String,
    /// Where its signing keys are published, e.g.
    /// `https://keycloak.example.com/realms/acme/protocol/openid-connect/certs`. `https://`
    /// only, except on loopback addresses.
    pub jwks_url: String,
    /// The audiences a logout token of this issuer must name (at least one): the `client_id`
    /// under which the identity provider knows this publisher.
    pub audiences: Vec<String>,
}

/// How OIDC Back-Channel Logout tokens are judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackchannelSettings {
    /// Oldest `iat` accepted, seconds before now (default 300). It is also how long a `jti`
    /// stays in the replay cache.
    pub max_token_age_secs: u64,
    /// How far the identity provider's clock may be ahead of ours (`iat` in the future) or
    /// behind it (`exp` past), seconds (default 60).
    pub clock_skew_secs: u64,
    /// Most `(iss, jti)` pairs the replay cache holds (default 100000). When it is full the
    /// pair closest to leaving it anyway is dropped (counted): a replay can then at worst end
    /// the same session again, while refusing new logouts would leave sessions alive.
    pub replay_cache_size: usize,
    /// Besides a `sid` cutoff, also cut off the token's `sub` when the logout token carries
    /// both (default `false`: a logout token with a `sid` ends that session only, as the
    /// specification intends). Turn on when the access tokens verifiers check carry no `sid`.
    pub cut_sub_with_sid: bool,
}

impl Default for BackchannelSettings {
    fn default() -> Self {
        Self {
            max_token_age_secs: 300,
            clock_skew_secs: 60,
            replay_cache_size: 100_000,
            cut_sub_with_sid: false,
        }
    }
}

/// One OAuth client allowed to call `POST /v1/oauth/revoke` (HTTP Basic authentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationClient {
    /// The client's id.
    pub client_id: String,
    /// File holding the client's secret (surrounding whitespace ignored).
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client's secret (instead of a file).
    pub client_secret_env: Option<String>,
}

/// `"identity_providers"`: trusted issuers, logout-token rules and revocation clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdpSettings {
    /// The issuers whose logout tokens and revocation requests are accepted.
    pub issuers: Vec<TrustedIssuer>,
    /// Rules for `POST /v1/backchannel-logout`.
    pub backchannel_logout: BackchannelSettings,
    /// Clients of `POST /v1/oauth/revoke` (none: that endpoint is off).
    pub revocation_clients: Vec<RevocationClient>,
    /// PEM file of the CA certificates trusted for `https://` JWKS URLs (absent: the system's
    /// store).
    pub jwks_ca_file: Option<PathBuf>,
}

impl IdpSettings {
    /// Check what the types cannot express; `Err((key, why))`.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let mut seen = std::collections::HashSet::new();
        for i in &self.issuers {
            if i.issuer.is_empty() {
                return Err((
                    "identity_providers.issuers[].issuer",
                    "must not be empty".into(),
                ));
            }
            if !seen.insert(i.issuer.as_str()) {
                return Err((
                    "identity_providers.issuers[].issuer",
                    format!("{:?} is listed twice", i.issuer),
                ));
            }
            check_jwks_url(&i.jwks_url).map_err(|why| {
                (
                    "identity_providers.issuers[].jwks_url",
                    format!("{:?} for issuer {:?}: {why}", i.jwks_url, i.issuer),
                )
            })?;
            if i.audiences.is_empty() || i.audiences.iter().any(String::is_empty) {
                return Err((
                    "identity_providers.issuers[].audiences",
                    format!(
                        "issuer {:?} needs at least one non-empty audience: the client_id the \
                         identity provider puts in the logout tokens it sends here",
                        i.issuer
                    ),
                ));
            }
        }
        let b = &self.backchannel_logout;
        if !(1..=86_400).contains(&b.max_token_age_secs) {
            return Err((
                "identity_providers.backchannel_logout.max_token_age_secs",
                "must lie in 1..=86400".into(),
            ));
        }
        if b.clock_skew_secs > 3_600 {
            return Err((
                "identity_providers.backchannel_logout.clock_skew_secs",
                "must lie in 0..=3600".into(),
            ));
        }
        if !(1..=10_000_000).contains(&b.replay_cache_size) {
            return Err((
                "identity_providers.backchannel_logout.replay_cache_size",
                "must lie in 1..=10000000".into(),
            ));
        }
        if !self.revocation_clients.is_empty() && self.issuers.is_empty() {
            return Err((
                "identity_providers.revocation_clients",
                "are set but no issuer is: list the issuers whose tokens may be revoked in \
                 identity_providers.issuers"
                    .into(),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for c in &self.revocation_clients {
            if c.client_id.is_empty()
                || c.client_id.len() > MAX_CLIENT_ID_BYTES
                || c.client_id.chars().any(char::is_control)
            {
                return Err((
                    "identity_providers.revocation_clients[].client_id",
                    format!("must be 1 to {MAX_CLIENT_ID_BYTES} bytes without control characters"),
                ));
            }
            if !ids.insert(c.client_id.as_str()) {
                return Err((
                    "identity_providers.revocation_clients[].client_id",
                    format!("{:?} is listed twice", c.client_id),
                ));
            }
            if c.client_secret_file.is_some() == c.client_secret_env.is_some() {
                return Err((
                    "identity_providers.revocation_clients[]",
                    format!(
                        "client {:?} needs exactly one of client_secret_file or \
                         client_secret_env (a secret is never written in the configuration)",
                        c.client_id
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Why a JWKS URL cannot be fetched, if it cannot: an absolute `https://` URL (or `http://`
/// on a loopback address, as the JWKS client allows).
fn check_jwks_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if !loopback {
                return Err(
                    "must be https:// (plain http:// only on a loopback address): \
                            whoever answers it can sign logout tokens"
                        .into(),
                );
            }
        }
        other => return Err(format!("scheme {other}: must be https://")),
    }
    if url.host().is_none() {
        return Err("has no host".into());
    }
    Ok(())
}

/// Errors reading a revocation client's secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientSecretError {
    /// The secret file cannot be read.
    #[error("identity_providers.revocation_clients: cannot read the secret file {path} of client {client_id:?}: {source}")]
    Read {
        /// The client.
        client_id: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The environment variable is unset or not UTF-8.
    #[error("identity_providers.revocation_clients: the environment variable {var} (secret of client {client_id:?}) is not set")]
    Env {
        /// The client.
        client_id: String,
        /// The variable.
        var: String,
    },
    /// The secret is too short.
    #[error("identity_providers.revocation_clients: the secret of client {client_id:?} is {len} bytes; at least {MIN_CLIENT_SECRET_BYTES} are required")]
    TooShort {
        /// The client.
        client_id: String,
        /// Its length.
        len: usize,
    },
}

impl RevocationClient {
    /// The client's secret, read now from its file or environment variable.
    pub fn secret(&self) -> Result<String, ClientSecretError> {
        let secret = match (&self.client_secret_file, &self.client_secret_env) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|source| ClientSecretError::Read {
                    client_id: self.client_id.clone(),
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| ClientSecretError::Env {
                    client_id: self.client_id.clone(),
                    var: var.clone(),
                })?
                .trim()
                .to_owned(),
            // `validate` requires one of the two; an empty secret is refused below.
            (None, None) => String::new(),
        };
        if secret.len() < MIN_CLIENT_SECRET_BYTES {
            return Err(ClientSecretError::TooShort {
                client_id: self.client_id.clone(),
                len: secret.len(),
            });
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(url: &str) -> TrustedIssuer {
        TrustedIssuer {
            issuer: "https://idp/realms/a".into(),
            jwks_url: url.into(),
            audiences: vec!["revbloom".into()],
        }
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let ok = IdpSettings {
            issuers: vec![issuer("https://idp/certs")],
            ..IdpSettings::default()
        };
        assert!(ok.validate().is_ok());
        for (url, why) in [
            ("not a url", "not a URL"),
            ("ftp://idp/certs", "scheme ftp"),
            ("http://idp.example.com/certs", "https://"),
        ] {
            let s = IdpSettings {
                issuers: vec![issuer(url)],
                ..IdpSettings::default()
            };
            let (key, msg) = s.validate().unwrap_err();
            assert_eq!(key, "identity_providers.issuers[].jwks_url");
            assert!(msg.contains(why), "{url}: {msg}");
        }
        assert!(IdpSettings {
            issuers: vec![issuer("http://127.0.0.1:9/certs")],
            ..IdpSettings::default()
        }
        .validate()
        .is_ok());
        let mut no_aud = ok.clone();
        no_aud.issuers[0].audiences.clear();
        assert!(no_aud.validate().unwrap_err().1.contains("audience"));
        let mut twice = ok.clone();
        twice.issuers.push(issuer("https://idp/certs"));
        assert!(twice.validate().unwrap_err().1.contains("twice"));
        let mut client = ok.clone();
        client.revocation_clients.push(RevocationClient {
            client_id: "c".into(),
            client_secret_file: None,
            client_secret_env: None,
        });
        assert!(client.validate().unwrap_err().1.contains("exactly one"));
        let orphan = IdpSettings {
            revocation_clients: vec![RevocationClient {
                client_id: "c".into(),
                client_secret_file: Some("/x".into()),
                client_secret_env: None,
            }],
            ..IdpSettings::default()
        };
        assert!(orphan.validate().unwrap_err().1.contains("no issuer"));
    }

    #[test]
    fn secrets_come_from_files_and_are_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "short\n").unwrap();
        let c = RevocationClient {
            client_id: "c".into(),
            client_secret_file: Some(f.clone()),
            client_secret_env: None,
        };
        assert!(matches!(
            c.secret(),
            Err(ClientSecretError::TooShort { len: 5, .. })
        ));
        std::fs::write(&f, "0123456789abcdef-secret\n").unwrap();
        assert_eq!(c.secret().unwrap(), "0123456789abcdef-secret");
        let missing = RevocationClient {
            client_secret_file: Some(dir.path().join("nope")),
            ..c
        };
        let e = missing.secret().unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("\"c\""), "{e}");
    }
}
