//! The publisher's lookup endpoint as an exact source (feature `sync`).
//!
//! Contract (see `docs/API.md`): `GET {base}/v1/revocations/{jti}` with `?iss=ISS` when the
//! token names an issuer, both with every byte outside RFC 3986 *unreserved* percent-encoded
//! (so the publisher decodes exactly the token's bytes: tab, CR, LF, `/`, `?`, `#`, `%`,
//! non-ASCII); `200` with `{"revoked": true|false, "pruned_before": W, ...}`. "Not revoked" for
//! a token with `exp < W` is [`ExactError::NotCovered`]: the publisher may have forgotten its
//! revocation. Anything else is an error, which the verifier handles by its exact-failure
//! policy (fail closed by default).

use crate::wire::{LookupAnswer, ISS, JTI, REVOCATIONS};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Client, StatusCode, Url};
use thiserror::Error;

use super::exact::{covered, AsyncExactSource, ExactError, ExactFuture, ExactQuery};
use crate::sync::tls::{certificate_error, error_chain, ClientTls, ClientTlsError};

/// Largest response body read from the lookup endpoint; the answer is a few dozen bytes.
const MAX_BODY: usize = 64 * 1024;

/// Every byte except RFC 3986 unreserved (`A-Z a-z 0-9 - . _ ~`) is percent-encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An [`HttpExactSource`] that cannot be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HttpExactSourceError {
    /// The base URL does not parse.
    #[error("invalid publisher URL {url:?}: {source}; expected e.g. http://127.0.0.1:8080")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it does not parse.
        source: url::ParseError,
    },
    /// The base URL cannot take path segments (e.g. `mailto:`).
    #[error(
        "invalid publisher URL {url:?}: it cannot take a path; expected e.g. http://127.0.0.1:8080"
    )]
    NotABase {
        /// The URL given.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The TLS configuration is unusable (the CA file cannot be read or holds no CA).
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
}

/// Why a lookup answer was refused: the cause of [`ExactError::BadResponse`].
#[derive(Debug, Error)]
enum BadAnswer {
    #[error("lookup answered HTTP {0}")]
    Status(u16),
    #[error("lookup answer longer than {MAX_BODY} bytes")]
    TooLong,
    #[error("lookup answer is not valid: {0}")]
    Json(#[source] serde_json::Error),
}

/// Asks a publisher whether a token id is revoked (async; never blocks the runtime).
///
/// Put it behind a [`CachedSource`](super::CachedSource). `http://` and `https://`: an
/// `https://` publisher's certificate is checked against the system's trust store
/// ([`HttpExactSource::new`]) or a CA file ([`HttpExactSource::with_ca_file`]). A refused
/// certificate makes every lookup [`ExactError::Unreachable`], with the reason (e.g.
/// `invalid peer certificate: UnknownIssuer`) among its causes and in a `warn` log line.
#[derive(Debug, Clone)]
pub struct HttpExactSource {
    base: Url,
    client: Client,
    bearer: Option<Bearer>,
}

/// The lookup's bearer token; `Debug` does not show it.
#[derive(Clone)]
struct Bearer(String);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(..)")
    }
}

impl HttpExactSource {
    /// A source for the publisher at `base_url` with a 2 s request timeout (1 s to
    /// connect), ignoring proxy environment variables; an `https://` publisher is checked
    /// against the system's trust store.
    pub fn new(base_url: &str) -> Result<Self, HttpExactSourceError> {
        Self::with_tls(base_url, &ClientTls::system_roots())
    }

    /// [`HttpExactSource::new`] trusting only the CA certificates in the PEM file `ca_file`.
    pub fn with_ca_file(
        base_url: &str,
        ca_file: impl Into<std::path::PathBuf>,
    ) -> Result<Self, HttpExactSourceError> {
        Self::with_tls(base_url, &ClientTls::ca_file(ca_file))
    }

    /// [`HttpExactSource::new`] with the certificate trust `tls`.
    pub fn with_tls(base_url: &str, tls: &ClientTls) -> Result<Self, HttpExactSourceError> {
        let client = tls
            .reqwest_builder()?
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1))
            .no_proxy()
            .build()
            .map_err(HttpExactSourceError::Client)?;
        Self::with_client(base_url, client)
    }

    /// A source using a caller-configured client (timeouts, TLS, proxies). With this crate's
    /// reqwest (no crypto provider of its own), start from
    /// [`ClientTls::reqwest_builder`](crate::sync::ClientTls::reqwest_builder), or install a
    /// process-wide rustls provider before building the client.
    pub fn with_client(base_url: &str, client: Client) -> Result<Self, HttpExactSourceError> {
        let base = Url::parse(base_url).map_err(|source| HttpExactSourceError::InvalidUrl {
            url: base_url.to_owned(),
            source,
        })?;
        if base.cannot_be_a_base() {
            return Err(HttpExactSourceError::NotABase {
                url: base_url.to_owned(),
            });
        }
        Ok(Self {
            base,
            client,
            bearer: None,
        })
    }

    /// Send `Authorization: Bearer <token>` with every lookup. The publisher's lookup takes
    /// the read token (see [`HttpExactSource::seal_key`]) or the admin token.
    pub fn bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(Bearer(token.into()));
        self
    }

    /// Send the read token derived from the publisher's seal key
    /// ([`SealKey::read_token`](crate::snapshot::SealKey::read_token)): the verifier's one
    /// secret (`DATA/verifier.key`) unseals snapshots and authorises lookups.
    pub fn seal_key(self, key: &crate::snapshot::SealKey) -> Self {
        self.bearer(key.read_token())
    }

    /// The lookup URL for one query. Encoded here byte by byte rather than through `url`'s
    /// segment API, which drops tab, CR and LF: the publisher must decode exactly `jti`.
    ///
    /// The `jti`s `.` and `..` go in the query (`/v1/revocations?jti=..`): as a path segment
    /// (even as `%2E`) every URL parser resolves them as dot segments.
    pub fn lookup_url(&self, iss: Option<&str>, jti: &str) -> Url {
        let mut url = self.base.clone();
        let base = self.base.path().trim_end_matches('/');
        let mut query = Vec::new();
        if jti == "." || jti == ".." {
            url.set_path(&format!("{base}{REVOCATIONS}"));
            query.push(format!(
                "{JTI}={}",
                utf8_percent_encode(jti, NOT_UNRESERVED)
            ));
        } else {
            // Neither setter re-encodes `%`, and nothing else is left to encode.
            url.set_path(&format!(
                "{base}{REVOCATIONS}/{}",
                utf8_percent_encode(jti, NOT_UNRESERVED)
            ));
        }
        if let Some(iss) = iss {
            query.push(format!(
                "{ISS}={}",
                utf8_percent_encode(iss, NOT_UNRESERVED)
            ));
        }
        url.set_query((!query.is_empty()).then(|| query.join("&")).as_deref());
        url.set_fragment(None);
        url
    }

    async fn ask(&self, q: &ExactQuery<'_>) -> Result<bool, ExactError> {
        let url = self.lookup_url(q.iss, q.jti);
        let mut req = self.client.get(url);
        if let Some(Bearer(token)) = &self.bearer {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(classify)?;
        if resp.status() != StatusCode::OK {
            return Err(ExactError::bad_response(BadAnswer::Status(
                resp.status().as_u16(),
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ExactError::bad_response(BadAnswer::TooLong));
            }
            body.extend_from_slice(&chunk);
        }
        let answer = serde_json::from_slice::<LookupAnswer>(&body)
            .map_err(|e| ExactError::bad_response(BadAnswer::Json(e)))?;
        covered(answer.revoked, q.exp, answer.pruned_before)
    }
}

fn classify(e: reqwest::Error) -> ExactError {
    if e.is_timeout() {
        ExactError::Timeout
    } else {
        if certificate_error(&e).is_some() {
            // The error's own text is "error sending request"; without this line a
            // misconfigured trust store looks like a publisher that is down. A cache in front
            // backs off after a failure, which bounds how often this is logged.
            tracing::warn!(error = %error_chain(&e), "exact source: the publisher's certificate was refused");
        }
        ExactError::unreachable(e)
    }
}

impl AsyncExactSource for HttpExactSource {
    fn is_revoked_async<'a>(&'a self, query: &'a ExactQuery<'a>) -> ExactFuture<'a> {
        Box::pin(self.ask(query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_percent_encoded() {
        let s = HttpExactSource::new("http://127.0.0.1:9/base/").unwrap();
        assert_eq!(
            s.lookup_url(Some("https://iss/x?y"), "a/b c").as_str(),
            "http://127.0.0.1:9/base/v1/revocations/a%2Fb%20c?iss=https%3A%2F%2Fiss%2Fx%3Fy"
        );
        // Bytes the url crate's segment API drops or leaves alone are encoded too.
        assert_eq!(
            s.lookup_url(Some("i+ é"), "\t\r\n?#%+;=é~._-").as_str(),
            "http://127.0.0.1:9/base/v1/revocations/%09%0D%0A%3F%23%25%2B%3B%3D%C3%A9~._-\
             ?iss=i%2B%20%C3%A9"
        );
        assert_eq!(
            s.lookup_url(None, ".").as_str(),
            "http://127.0.0.1:9/base/v1/revocations?jti=."
        );
        assert_eq!(
            s.lookup_url(Some("i"), "..").as_str(),
            "http://127.0.0.1:9/base/v1/revocations?jti=..&iss=i"
        );
        assert_eq!(
            s.lookup_url(None, "...").as_str(),
            "http://127.0.0.1:9/base/v1/revocations/..."
        );
        let s = HttpExactSource::new("http://h:1").unwrap();
        assert_eq!(
            s.lookup_url(None, "j").as_str(),
            "http://h:1/v1/revocations/j"
        );
        let s = HttpExactSource::new("http://h:1/p?x=1#f").unwrap();
        assert_eq!(
            s.lookup_url(None, "j").as_str(),
            "http://h:1/p/v1/revocations/j"
        );
        assert!(matches!(
            HttpExactSource::new("mailto:x@y"),
            Err(HttpExactSourceError::NotABase { .. })
        ));
        assert!(matches!(
            HttpExactSource::new("not a url"),
            Err(HttpExactSourceError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn causes_stay_reachable() {
        use std::error::Error as _;
        let e = HttpExactSource::new("not a url").unwrap_err();
        assert!(e.source().is_some_and(|c| c.is::<url::ParseError>()));
        let e = ExactError::bad_response(BadAnswer::Json(
            serde_json::from_slice::<LookupAnswer>(b"{").err().unwrap(),
        ));
        let answer = e.source().expect("the bad answer is the source");
        assert!(matches!(answer.downcast_ref(), Some(BadAnswer::Json(_))));
        assert!(answer.source().is_some_and(|c| c.is::<serde_json::Error>()));
    }

    #[test]
    fn not_revoked_before_the_watermark_is_not_covered() {
        let a = |revoked, pruned_before| (revoked, pruned_before);
        let covered = |exp, (revoked, pruned_before)| covered(revoked, exp, pruned_before);
        assert!(matches!(covered(Some(5), a(false, 0)), Ok(false)));
        assert!(matches!(covered(None, a(false, 0)), Ok(false)));
        assert!(matches!(covered(Some(100), a(false, 100)), Ok(false)));
        assert!(matches!(covered(Some(1), a(true, 100)), Ok(true)));
        assert!(matches!(
            covered(Some(99), a(false, 100)),
            Err(ExactError::NotCovered {
                exp: Some(99),
                pruned_before: 100
            })
        ));
        assert!(matches!(
            covered(None, a(false, 100)),
            Err(ExactError::NotCovered {
                exp: None,
                pruned_before: 100
            })
        ));
    }
}
