//! The exact source is consulted only on filter positives: with many valid tokens and some
//! revoked ones, its calls equal the revoked tokens plus the filter's false positives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::support::tokens::*;
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
#[cfg(feature = "cache")]
use revbloom::verify::CachedSource;
use revbloom::verify::{
    ExactError, ExactQuery, ExactSource, MemoryExactSource, RevokedBy, Verifier, VerifyError,
};
use revbloom::{CutoffSet, Verdict, Window, WindowConfig};
use serde_json::{json, Value};

const VALID: usize = 100_000;
const REVOKED: usize = 1_000;

/// Counts every call that reaches the wrapped source.
struct Counting<S>(S, AtomicU64);

impl<S: ExactSource> ExactSource for Counting<S> {
    fn is_revoked(&self, q: &ExactQuery<'_>) -> Result<bool, ExactError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.is_revoked(q)
    }
}

/// A real HS256 token signed by jsonwebtoken (the dev profile optimizes sha2/hmac so 100k of
/// them stay cheap in a debug build); the verifier decodes, validates and checks each one
/// through its real code path.
fn token(jti: &str, exp: u64, iat: u64) -> String {
    hs256(&json!({"jti": jti, "sub": "user", "iat": iat, "exp": exp}))
}

#[test]
fn exact_source_calls_equal_revoked_plus_false_positives() {
    let t = now();
    let exp = t + 600;
    // A small, deliberately loaded filter (1% target, sized for the revoked set) so false
    // positives actually occur among 100k valid tokens.
    let config = WindowConfig::default()
        .expected_per_bucket(REVOKED as u64)
        .fp_rate(0.01);
    let mut window = Window::with_seed(config, t, SEED).unwrap();
    let exact = MemoryExactSource::new();
    for i in 0..REVOKED {
        let jti = format!("revoked-{i}");
        window.insert(&jti, Some(exp));
        exact.revoke(None, &jti, Some(exp));
    }
    window.fit_to_entries(0.0);
    let bytes =
        snapshot::encode_to_vec(&window, &CutoffSet::new(), &SnapshotMeta::first(t), None).unwrap();
    let view = SnapshotView::open(bytes, &OpenOptions::new()).unwrap();

    // The false positives the verifier must send to the exact source, computed from the
    // filter itself.
    let valid: Vec<String> = (0..VALID).map(|i| format!("valid-{i}")).collect();
    let false_positives = valid
        .iter()
        .filter(|j| view.check(j.as_str(), Some(exp)) == Verdict::MaybeRevoked)
        .count();
    let estimated: f64 = view
        .bucket_stats()
        .map(|b| b.estimated_fp)
        .fold(0.0, f64::max);
    let expected_fp = estimated * VALID as f64;
    // Within five standard deviations of the filter's own estimate (binomial).
    let slack = 5.0 * expected_fp.sqrt() + 5.0;
    assert!(
        (false_positives as f64 - expected_fp).abs() <= slack,
        "{false_positives} false positives, estimated {expected_fp:.1}"
    );
    assert!(
        false_positives > 0,
        "the test needs some false positives to mean anything"
    );

    let counting = Arc::new(Counting(exact, AtomicU64::new(0)));
    let verifier = Verifier::builder(hs256_key(), hs256_validation())
        .state(view)
        .exact_source(Arc::clone(&counting))
        .build()
        .unwrap();

    let mut rejected = 0;
    for jti in &valid {
        let v = verifier.verify::<Value>(&token(jti, exp, t));
        assert!(v.is_ok(), "{jti}: {v:?}");
    }
    for i in 0..REVOKED {
        match verifier.verify::<Value>(&token(&format!("revoked-{i}"), exp, t)) {
            Err(VerifyError::Revoked { by: RevokedBy::Jti }) => rejected += 1,
            other => panic!("revoked-{i}: {other:?}"),
        }
    }
    assert_eq!(rejected, REVOKED);
    let calls = counting.1.load(Ordering::Relaxed) as usize;
    assert_eq!(calls, REVOKED + false_positives);
    assert_eq!(verifier.stats().exact_calls as usize, calls);
    assert_eq!(verifier.stats().filter_positives as usize, calls);
}

#[cfg(feature = "cache")]
#[test]
fn a_cache_stops_retries_from_hammering_the_source() {
    let t = now();
    let exp = t + 600;
    let state = state(&[("revoked-1", exp)], &[]);
    let exact = MemoryExactSource::new();
    exact.revoke(None, "revoked-1", Some(exp));
    let cached = Arc::new(CachedSource::new(Counting(exact, AtomicU64::new(0))));
    let verifier = Verifier::builder(hs256_key(), hs256_validation())
        .state(state)
        .exact_source(Arc::clone(&cached))
        .build()
        .unwrap();
    let tok = token("revoked-1", exp, t);
    for _ in 0..50 {
        assert!(matches!(
            verifier.verify::<Value>(&tok),
            Err(VerifyError::Revoked { by: RevokedBy::Jti })
        ));
    }
    assert_eq!(cached.inner().1.load(Ordering::Relaxed), 1);
    assert_eq!(cached.stats().hits, 49);
}
