//! The publisher's lookup endpoint as an exact source (feature `sync`).
//!
//! Contract (see `docs/API.md`): `GET {base}/v1/revocations/{jti}` with `?iss=ISS` when
//! revocations are keyed on the issuer, both percent-encoded; `200` with
//! `{"revoked": true|false, ...}`. Anything else is an error, which the verifier handles by
//! its staleness policy (fail closed by default).

use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use thiserror::Error;

use super::exact::{AsyncExactSource, ExactError, ExactFuture, ExactQuery};

/// Largest response body read from the lookup endpoint; the answer is a few dozen bytes.
const MAX_BODY: usize = 64 * 1024;

/// An [`HttpExactSource`] that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HttpExactSourceError {
    /// The base URL does not parse or cannot take path segments.
    #[error("invalid publisher URL {url:?}: {reason}; expected e.g. http://127.0.0.1:8080")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// Asks a publisher whether a token id is revoked (async; never blocks the runtime).
///
/// Put it behind a [`CachedSource`](super::CachedSource). Plain `http://` only: the crate
/// enables no TLS backend; reach a remote publisher through a local TLS-terminating proxy or
/// pass your own `reqwest::Client` built with TLS to [`HttpExactSource::with_client`].
#[derive(Debug, Clone)]
pub struct HttpExactSource {
    base: Url,
    client: Client,
}

#[derive(Deserialize)]
struct Answer {
    revoked: bool,
}

impl HttpExactSource {
    /// A source for the publisher at `base_url` with a 2 s request timeout (1 s to
    /// connect), ignoring proxy environment variables.
    pub fn new(base_url: &str) -> Result<Self, HttpExactSourceError> {
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1))
            .no_proxy()
            .build()
            .map_err(|e| HttpExactSourceError::Client(e.to_string()))?;
        Self::with_client(base_url, client)
    }

    /// A source using a caller-configured client (timeouts, TLS, proxies).
    pub fn with_client(base_url: &str, client: Client) -> Result<Self, HttpExactSourceError> {
        let invalid = |reason: String| HttpExactSourceError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(invalid("it cannot take a path".to_owned()));
        }
        Ok(Self { base, client })
    }

    /// The lookup URL for one query.
    pub fn lookup_url(&self, iss: Option<&str>, jti: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            // push() percent-encodes, so a jti with '/' or '?' stays one segment.
            segs.pop_if_empty().extend(["v1", "revocations", jti]);
        }
        url.set_query(None);
        if let Some(iss) = iss {
            url.query_pairs_mut().append_pair("iss", iss);
        }
        url
    }

    async fn ask(&self, q: &ExactQuery<'_>) -> Result<bool, ExactError> {
        let url = self.lookup_url(q.iss, q.jti);
        let mut resp = self.client.get(url).send().await.map_err(classify)?;
        if resp.status() != StatusCode::OK {
            return Err(ExactError::BadResponse(format!(
                "lookup answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ExactError::BadResponse(format!(
                    "lookup answer longer than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<Answer>(&body)
            .map(|a| a.revoked)
            .map_err(|e| ExactError::BadResponse(format!("lookup answer is not valid: {e}")))
    }
}

fn classify(e: reqwest::Error) -> ExactError {
    if e.is_timeout() {
        ExactError::Timeout
    } else {
        ExactError::Unreachable(e.to_string())
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
        let s = HttpExactSource::new("http://h:1").unwrap();
        assert_eq!(
            s.lookup_url(None, "j").as_str(),
            "http://h:1/v1/revocations/j"
        );
        assert!(HttpExactSource::new("mailto:x@y").is_err());
        assert!(HttpExactSource::new("not a url").is_err());
    }
}
