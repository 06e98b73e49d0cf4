//! Each staleness policy does what docs/DESIGN.md says, for a stale state, a missing state
//! and a failing exact source.

use std::sync::Arc;
use std::time::Duration;

use crate::support::tokens::*;
use arc_swap::ArcSwapOption;
use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use revbloom::tower::BearerLayer;
use revbloom::verify::{
    Checked, ExactError, ExactFailurePolicy, ExactQuery, ExactSource, MemoryExactSource,
    MemoryState, RevokedBy, StalenessPolicy, Unavailable, Verifier, VerifyError,
};
use serde_json::Value;
use tower::{Layer, ServiceExt};

const MAX_AGE: Duration = Duration::from_secs(60);

struct Down;
impl ExactSource for Down {
    fn is_revoked(&self, _: &ExactQuery<'_>) -> Result<bool, ExactError> {
        Err(ExactError::unreachable("connection refused"))
    }
}

/// A state created `age` seconds ago revoking "in-filter" and cutting off sub "mallory".
fn aged_state(age: u64) -> Arc<MemoryState> {
    let t = now();
    let mut s = state(&[("in-filter", t + 600)], &[("sub", "mallory", t)]);
    s.created_at = t - age;
    Arc::new(s)
}

struct Setup {
    cell: Arc<ArcSwapOption<MemoryState>>,
    exact: Arc<MemoryExactSource>,
    verifier: Arc<Verifier>,
}

fn setup(policy: StalenessPolicy, with_exact: bool, state: Option<Arc<MemoryState>>) -> Setup {
    let cell = Arc::new(ArcSwapOption::new(state));
    let exact = Arc::new(MemoryExactSource::new());
    let t = now();
    exact.revoke(None, "in-filter", Some(t + 600));
    // Revoked after the (stale) state was built: only the exact source knows.
    exact.revoke(None, "only-exact", Some(t + 600));
    let mut b = Verifier::builder(hs256_key(), hs256_validation())
        .state(Arc::clone(&cell))
        .staleness(Some(MAX_AGE), policy);
    if with_exact {
        b = b.exact_source(Arc::clone(&exact));
    }
    Setup {
        cell,
        exact,
        verifier: Arc::new(b.build().unwrap()),
    }
}

fn v(s: &Setup, jti: &str, sub: &str) -> Result<Checked, VerifyError> {
    s.verifier
        .verify::<Value>(&hs256(&claims(jti, sub, 5)))
        .map(|v| v.checked)
}

#[test]
fn fail_closed_refuses_stale_and_missing_state_until_fresh_state_arrives() {
    let s = setup(StalenessPolicy::FailClosed, true, Some(aged_state(61)));
    assert!(matches!(
        v(&s, "good", "alice"),
        Err(VerifyError::Unavailable(Unavailable::Stale {
            max_age_secs: 60,
            ..
        }))
    ));
    s.cell.store(None);
    assert!(matches!(
        v(&s, "good", "alice"),
        Err(VerifyError::Unavailable(Unavailable::NoSnapshot))
    ));
    s.cell.store(Some(aged_state(0)));
    assert!(matches!(v(&s, "good", "alice"), Ok(Checked::Filter { .. })));
    assert!(matches!(
        v(&s, "in-filter", "alice"),
        Err(VerifyError::Revoked { by: RevokedBy::Jti })
    ));
    assert_eq!(s.exact.calls(), 1);
    assert_eq!(s.verifier.stats().unavailable, 2);
}

#[test]
fn fail_closed_refuses_a_positive_when_the_exact_source_is_down() {
    let verifier = Verifier::builder(hs256_key(), hs256_validation())
        .state(aged_state(0))
        .exact_source(Down)
        .build()
        .unwrap();
    let r = verifier.verify::<Value>(&hs256(&claims("in-filter", "alice", 5)));
    assert!(matches!(
        r,
        Err(VerifyError::Unavailable(Unavailable::ExactSource(
            ExactError::Unreachable(_)
        )))
    ));
    // A token the filter clears never needs the source.
    assert!(verifier
        .verify::<Value>(&hs256(&claims("good", "alice", 5)))
        .is_ok());
}

#[test]
fn exact_source_policy_sends_every_jti_to_the_source_when_stale() {
    let s = setup(StalenessPolicy::ExactSource, true, Some(aged_state(61)));
    assert_eq!(v(&s, "good", "alice").unwrap(), Checked::ExactSource);
    assert!(matches!(
        v(&s, "only-exact", "alice"),
        Err(VerifyError::Revoked { by: RevokedBy::Jti })
    ));
    // The stale state's cutoffs still apply, without asking the source.
    let before = s.exact.calls();
    assert!(matches!(
        v(&s, "other", "mallory"),
        Err(VerifyError::Revoked {
            by: RevokedBy::Cutoff { .. }
        })
    ));
    assert_eq!(s.exact.calls(), before);
    // With no state at all, the source still answers.
    s.cell.store(None);
    assert_eq!(v(&s, "good", "alice").unwrap(), Checked::ExactSource);
    assert_eq!(s.exact.calls(), 3);
    // Fresh state: back to the filter, no calls for clear tokens.
    s.cell.store(Some(aged_state(0)));
    assert!(matches!(v(&s, "good", "alice"), Ok(Checked::Filter { .. })));
    assert_eq!(s.exact.calls(), 3);
}

#[test]
fn exact_source_policy_without_a_source_fails_closed() {
    let s = setup(StalenessPolicy::ExactSource, false, Some(aged_state(61)));
    assert!(matches!(
        v(&s, "good", "alice"),
        Err(VerifyError::Unavailable(Unavailable::Stale { .. }))
    ));
}

#[test]
fn fail_open_keeps_using_the_stale_filter_and_counts_it() {
    let s = setup(StalenessPolicy::FailOpen, true, Some(aged_state(61)));
    assert!(matches!(v(&s, "good", "alice"), Ok(Checked::Filter { .. })));
    // What the stale filter knows is still enforced...
    assert!(matches!(
        v(&s, "in-filter", "alice"),
        Err(VerifyError::Revoked { by: RevokedBy::Jti })
    ));
    assert!(v(&s, "other", "mallory").is_err());
    // ...what it does not know is missed: the price of failing open.
    assert!(v(&s, "only-exact", "alice").is_ok());
    assert_eq!(s.verifier.stats().fail_open, 4);
    // No state at all: accepted unchecked, and counted.
    s.cell.store(None);
    assert_eq!(v(&s, "good", "alice").unwrap(), Checked::FailOpen);
    assert_eq!(s.verifier.stats().fail_open, 5);
}

/// A fresh filter positive with the exact source down is refused whatever the staleness
/// policy: failing open on staleness is no licence to accept what the filter says may be
/// revoked. Accepting it takes its own, explicit policy.
#[test]
fn exact_source_down_refuses_a_fresh_positive_even_under_fail_open() {
    let build = |policy: Option<ExactFailurePolicy>| {
        let b = Verifier::builder(hs256_key(), hs256_validation())
            .state(aged_state(0))
            .exact_source(Down)
            .staleness(Some(MAX_AGE), StalenessPolicy::FailOpen);
        match policy {
            Some(p) => b.exact_failure(p),
            None => b,
        }
        .build()
        .unwrap()
    };
    let token = hs256(&claims("in-filter", "alice", 5));
    let verifier = build(None);
    assert!(matches!(
        verifier.verify::<Value>(&token),
        Err(VerifyError::Unavailable(Unavailable::ExactSource(_)))
    ));
    assert_eq!(verifier.stats().exact_errors, 1);
    let verifier = build(Some(ExactFailurePolicy::Accept));
    let r = verifier.verify::<Value>(&token);
    assert_eq!(r.unwrap().checked, Checked::FailOpen);
}

#[tokio::test]
async fn unavailable_is_503_with_retry_after_and_no_challenge() {
    let s = setup(StalenessPolicy::FailClosed, true, None);
    let svc = BearerLayer::<Value>::new(Arc::clone(&s.verifier)).layer(tower::service_fn(
        |_req: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        },
    ));
    let mut req = Request::new(String::new());
    let token = hs256(&claims("good", "alice", 5));
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers().get(RETRY_AFTER).unwrap(), "5");
    assert!(res.body().is_empty());
}
