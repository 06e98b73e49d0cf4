//! The decision the sidecar makes for one request, shared by the HTTP check endpoint and the
//! Envoy ext_authz gRPC service: each front end turns a [`Decision`] into its own wire form.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::http::header::HeaderName;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use revbloom::bearer::{bearer_token, BearerProblem};
use revbloom::verify::{Verified, Verifier, VerifyError};
use serde_json::Value;

/// Longest `Authorization` header the sidecar reads, in bytes.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;

/// One claim copied into a header of the allow response (`sub` → `x-auth-sub`).
#[derive(Debug, Clone)]
pub struct ForwardClaim {
    /// The claim's name in the token.
    pub claim: String,
    /// The header that carries its value upstream.
    pub header: HeaderName,
}

/// What the sidecar answers for one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Decision {
    /// Let the request through, adding these headers to it upstream.
    Allow {
        /// The forwarded claims, as header name and value.
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Refuse the request: `status` (400 or 401) with an RFC 6750 challenge.
    Deny {
        /// 401 for a missing, invalid, expired or revoked token; 400 for a malformed
        /// `Authorization` header.
        status: StatusCode,
        /// The `WWW-Authenticate` value (`Bearer`, or `Bearer error="…", error_description="…"`).
        www_authenticate: HeaderValue,
        /// Why, for logs and metrics (fixed text, safe to show).
        reason: &'static str,
    },
    /// Revocation state (or the issuer's keys) is not available and the policy is to fail
    /// closed: the proxy answers 503 and the client may retry.
    Unavailable {
        /// Why, for logs and metrics (fixed text, safe to show).
        reason: &'static str,
    },
}

impl Decision {
    /// Whether the request may go on.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// How many decisions of each outcome a [`Checker`] made, over every front end that shares it
/// (for `revbloom_authz_decisions_total{outcome=…}`).
#[derive(Debug, Default)]
pub struct DecisionCounts {
    /// Requests let through.
    pub allow: AtomicU64,
    /// Requests refused (400/401).
    pub deny: AtomicU64,
    /// Requests answered 503 because revocation state or keys were unavailable.
    pub unavailable: AtomicU64,
}

impl DecisionCounts {
    fn record(&self, d: &Decision) {
        let c = match d {
            Decision::Allow { .. } => &self.allow,
            Decision::Deny { .. } => &self.deny,
            Decision::Unavailable { .. } => &self.unavailable,
        };
        c.fetch_add(1, Relaxed);
    }
}

/// Checks requests with a shared [`Verifier`] (JWT validation, the revocation filter, claim
/// cutoffs and the exact source) and decides. Every decision made through
/// [`Checker::check_headers`], [`Checker::check_token`] or [`Checker::decide`] is counted in
/// [`Checker::counts`].
#[derive(Debug, Clone)]
pub struct Checker {
    verifier: Arc<Verifier>,
    forward: Arc<[ForwardClaim]>,
    counts: Arc<DecisionCounts>,
}

impl Checker {
    /// A checker verifying with `verifier`, copying `forward` claims into allow headers.
    pub fn new(verifier: Arc<Verifier>, forward: Vec<ForwardClaim>) -> Self {
        Self {
            verifier,
            forward: forward.into(),
            counts: Arc::default(),
        }
    }

    /// The decisions made so far, by outcome.
    pub fn counts(&self) -> &Arc<DecisionCounts> {
        &self.counts
    }

    /// The verifier (its counters feed the metrics).
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Decide from request headers: the bearer token of `Authorization` (RFC 6750 §2.1).
    pub async fn check_headers(&self, headers: &HeaderMap) -> Decision {
        match bearer_token(headers, MAX_AUTHORIZATION_BYTES) {
            Ok(token) => self.check_token(token).await,
            Err(problem) => {
                let d = Self::header_problem(problem);
                self.counts.record(&d);
                d
            }
        }
    }

    /// Decide for one bearer token.
    pub async fn check_token(&self, token: &str) -> Decision {
        let result = self.verifier.verify_async::<Value>(token).await;
        self.decide(result)
    }

    /// Decide for claims a trusted proxy already verified (Envoy's `jwt_authn` metadata):
    /// revocation checks only, see [`Verifier::check_trusted_claims_async`]. Never call it
    /// with claims from the request itself.
    pub async fn check_trusted_claims(&self, claims: &Value) -> Decision {
        let result = self.verifier.check_trusted_claims_async(claims).await;
        self.decide(result)
    }

    /// Every header an allow decision may set (one per forwarded claim).
    pub fn forwarded_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.forward.iter().map(|f| &f.header)
    }

    /// The decision for a verification result.
    pub fn decide(&self, result: Result<Verified<Value>, VerifyError>) -> Decision {
        let d = self.decision(result);
        self.counts.record(&d);
        d
    }

    fn decision(&self, result: Result<Verified<Value>, VerifyError>) -> Decision {
        match result {
            Ok(v) => Decision::Allow {
                headers: self.forwarded(&v.claims),
            },
            Err(e @ (VerifyError::Unavailable(_) | VerifyError::KeysUnavailable { .. })) => {
                Decision::Unavailable {
                    reason: e.public_description(),
                }
            }
            Err(e) => Decision::Deny {
                status: StatusCode::UNAUTHORIZED,
                www_authenticate: challenge("invalid_token", e.public_description()),
                reason: e.public_description(),
            },
        }
    }

    /// The decision for an `Authorization` header that yields no token: 401 with a plain
    /// `Bearer` challenge when there are no bearer credentials, 400 `invalid_request` when they
    /// are malformed (RFC 6750 §3.1). Not counted: [`Checker::check_headers`] counts it.
    pub fn header_problem(problem: BearerProblem) -> Decision {
        match problem {
            BearerProblem::Malformed(why) => Decision::Deny {
                status: StatusCode::BAD_REQUEST,
                www_authenticate: challenge("invalid_request", why),
                reason: why,
            },
            _ => Decision::Deny {
                status: StatusCode::UNAUTHORIZED,
                www_authenticate: HeaderValue::from_static("Bearer"),
                reason: "no bearer token",
            },
        }
    }

    /// The allow headers for `claims`: each forwarded claim that is a string, number or
    /// boolean and makes a valid header value; others are left out.
    fn forwarded(&self, claims: &Value) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(self.forward.len());
        for f in self.forward.iter() {
            let text = match claims.get(&f.claim) {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => continue,
            };
            if let Ok(v) = HeaderValue::from_str(&text) {
                out.push((f.header.clone(), v));
            }
        }
        out
    }
}

/// An RFC 6750 challenge. `description` is fixed ASCII text without quotes or backslashes.
fn challenge(error: &str, description: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "Bearer error=\"{error}\", error_description=\"{description}\""
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}
