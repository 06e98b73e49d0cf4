//! Tower middleware that verifies `Authorization: Bearer` tokens (feature `tower`).
//!
//! [`BearerLayer`] depends only on `tower-layer`, `tower-service` and `http`, so it fits any
//! tower stack without pinning an axum version. A request with a valid, unrevoked token goes
//! on with the token's claims (type `C`) in its extensions; anything else is answered here,
//! per RFC 6750, with an empty body (no internal detail leaks):
//!
//! | situation | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no `Authorization`, or another scheme | 401 | `Bearer` |
//! | malformed `Authorization` (not UTF-8, `Bearer` with no token, bad characters, too long, repeated) | 400 | `Bearer error="invalid_request", ...` |
//! | invalid, expired, revoked token, or no `jti` | 401 | `Bearer error="invalid_token", error_description="..."` |
//! | revocation state unavailable (fail-closed), or no key set of the token's issuer loaded yet | 503 | none; `Retry-After: 5` |
//!
//! The token is checked with [`Verifier::verify_async`]: CPU-only and microseconds, except on
//! a filter positive, where the exact source is awaited — the runtime is never blocked.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::get, Extension, Json, Router};
//! use jsonwebtoken::{Algorithm, DecodingKey, Validation};
//! use revbloom::tower::BearerLayer;
//! use revbloom::verify::{MemoryState, Verifier};
//!
//! # async fn run(state: MemoryState) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder(DecodingKey::from_secret(b"secret"), Validation::new(Algorithm::HS256))
//!     .state(state) // or a hot-swap snapshot handle
//!     .build()?;
//! let app = Router::new()
//!     .route("/whoami", get(|Extension(claims): Extension<serde_json::Value>| async { Json(claims) }))
//!     .layer(BearerLayer::<serde_json::Value>::new(Arc::new(verifier)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use crate::bearer::BearerProblem as HeaderProblem;
use crate::verify::{Verifier, VerifyError};

/// Longest `Authorization` header accepted, in bytes; longer ones get 400 before any parsing.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// A [`Layer`] that verifies bearer tokens with a shared [`Verifier`] and hands the claims
/// (deserialized as `C`) to the inner service as a request extension.
pub struct BearerLayer<C = serde_json::Value> {
    verifier: Arc<Verifier>,
    max_header_bytes: usize,
    _claims: PhantomData<fn() -> C>,
}

impl<C> BearerLayer<C> {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self {
            verifier,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            _claims: PhantomData,
        }
    }

    /// Refuse `Authorization` headers longer than `bytes` (default
    /// [`DEFAULT_MAX_HEADER_BYTES`]).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }
}

impl<C> Clone for BearerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            verifier: Arc::clone(&self.verifier),
            max_header_bytes: self.max_header_bytes,
            _claims: PhantomData,
        }
    }
}

impl<S, C> Layer<S> for BearerLayer<C> {
    type Service = Bearer<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Bearer {
            inner,
            verifier: Arc::clone(&self.verifier),
            max_header_bytes: self.max_header_bytes,
            _claims: PhantomData,
        }
    }
}

/// The service [`BearerLayer`] wraps around an inner service.
pub struct Bearer<S, C = serde_json::Value> {
    inner: S,
    verifier: Arc<Verifier>,
    max_header_bytes: usize,
    _claims: PhantomData<fn() -> C>,
}

impl<S: Clone, C> Clone for Bearer<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            verifier: Arc::clone(&self.verifier),
            max_header_bytes: self.max_header_bytes,
            _claims: PhantomData,
        }
    }
}

/// The token from the request's `Authorization` header ([`crate::bearer::bearer_token`]).
fn bearer_token<B>(req: &Request<B>, max: usize) -> Result<String, HeaderProblem> {
    crate::bearer::bearer_token(req.headers(), max).map(str::to_owned)
}

fn challenge(error: &str, description: &str) -> HeaderValue {
    // Descriptions are fixed ASCII strings without quotes or backslashes, so no escaping.
    let text = format!("Bearer error=\"{error}\", error_description=\"{description}\"");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn reject<B: Default>(status: StatusCode, www_authenticate: Option<HeaderValue>) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = status;
    if let Some(v) = www_authenticate {
        res.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    res
}

fn header_rejection<B: Default>(problem: HeaderProblem) -> Response<B> {
    match problem {
        HeaderProblem::Missing => reject(
            StatusCode::UNAUTHORIZED,
            Some(HeaderValue::from_static("Bearer")),
        ),
        HeaderProblem::Malformed(why) => reject(
            StatusCode::BAD_REQUEST,
            Some(challenge("invalid_request", why)),
        ),
    }
}

/// The response for a token the verifier refused.
pub fn error_response<B: Default>(err: &VerifyError) -> Response<B> {
    match err {
        VerifyError::Unavailable(_) | VerifyError::KeysUnavailable { .. } => {
            let mut res = reject(StatusCode::SERVICE_UNAVAILABLE, None);
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            res
        }
        other => reject(
            StatusCode::UNAUTHORIZED,
            Some(challenge("invalid_token", other.public_description())),
        ),
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, C, ReqB, ResB> Service<Request<ReqB>> for Bearer<S, C>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let token = match bearer_token(&req, self.max_header_bytes) {
            Ok(t) => t,
            Err(p) => return Box::pin(std::future::ready(Ok(header_rejection(p)))),
        };
        // The service that was polled ready is the one that must be called; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = Arc::clone(&self.verifier);
        Box::pin(async move {
            match verifier.verify_async::<C>(&token).await {
                Ok(v) => {
                    req.extensions_mut().insert(v.claims);
                    inner.call(req).await
                }
                Err(e) => Ok(error_response(&e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;

    fn req(values: &[&[u8]]) -> Request<()> {
        let mut r = Request::new(());
        for v in values {
            r.headers_mut()
                .append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        r
    }

    #[test]
    fn header_parsing() {
        let t = |v: &[&[u8]]| bearer_token(&req(v), 64);
        assert_eq!(
            t(&[b"Bearer abc.def-_~+/=="]),
            Ok("abc.def-_~+/==".to_owned())
        );
        assert_eq!(t(&[b"bearer   abc "]), Ok("abc".to_owned()));
        assert_eq!(t(&[]), Err(HeaderProblem::Missing));
        assert!(matches!(t(&[b""]), Err(HeaderProblem::Malformed(_))));
        assert!(matches!(t(&[b"  "]), Err(HeaderProblem::Malformed(_))));
        assert_eq!(t(&[b"Basic abc"]), Err(HeaderProblem::Missing));
        assert!(matches!(t(&[b"Bearer"]), Err(HeaderProblem::Malformed(_))));
        assert!(matches!(t(&[b"Bearer "]), Err(HeaderProblem::Malformed(_))));
        assert!(matches!(
            t(&[b"Bearer a b"]),
            Err(HeaderProblem::Malformed(_))
        ));
        assert!(matches!(
            t(&[b"Bearer ==="]),
            Err(HeaderProblem::Malformed(_))
        ));
        assert!(matches!(
            t(&[b"Bearer \xff\xfe"]),
            Err(HeaderProblem::Malformed(_))
        ));
        assert!(matches!(
            t(&[&[b'a'; 65]]),
            Err(HeaderProblem::Malformed(_))
        ));
        assert!(matches!(
            t(&[b"Bearer a", b"Bearer b"]),
            Err(HeaderProblem::Malformed(_))
        ));
    }
}
