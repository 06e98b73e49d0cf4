//! Claims a trusted party verified (`Verifier::check_trusted_claims_async`) get every
//! revocation check a token gets, with the same answers as `verify_async` on a token carrying
//! the same claims.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use proptest::prelude::*;
use revbloom::cutoff::JTI_CLAIM;
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::{Checked, MemoryExactSource, RevokedBy, Verifier, VerifyError};
use revbloom::{CutoffKey, CutoffSet};
use serde_json::{json, Value};

use crate::support::tokens::{hs256, hs256_key, hs256_validation, now, window};

/// Revoked by id (in the filter): "r-1" and "r-2" with `exp` `t + 600`.
const REVOKED: [&str; 2] = ["r-1", "r-2"];

/// A snapshot made at `t`: `REVOKED` in the filter (exp `t + 600`), a `sid` cutoff on
/// "sess-9" and a `sub` cutoff on "mallory" at `t - 100`, and "no-exp" revoked without `exp`
/// (a `jti` cutoff) at `t - 100`.
fn snapshot(t: u64) -> SnapshotView<Vec<u8>> {
    let mut w = window();
    for jti in REVOKED {
        w.insert(jti, Some(t + 600));
    }
    let mut set = CutoffSet::new();
    for (claim, value) in [("sid", "sess-9"), ("sub", "mallory"), (JTI_CLAIM, "no-exp")] {
        w.add_cutoff_claim(claim).unwrap();
        set.insert(CutoffKey::new(w.hasher(), None, claim, value), t - 100);
    }
    let bytes = snapshot::encode_to_vec(&w, &set, &SnapshotMeta::first(t), None).unwrap();
    SnapshotView::open(bytes, &OpenOptions::new()).unwrap()
}

fn verifier(t: u64) -> Verifier {
    Verifier::builder(hs256_key(), hs256_validation())
        .state(Arc::new(snapshot(t)))
        .build()
        .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn trusted(v: &Verifier, claims: &Value) -> Result<Checked, VerifyError> {
    block_on(v.check_trusted_claims_async(claims)).map(|ok| ok.checked)
}

fn normal(v: &Verifier, claims: &Value) -> Result<Checked, VerifyError> {
    block_on(v.verify_async::<Value>(&hs256(claims))).map(|ok| ok.checked)
}

#[test]
fn good_claims_are_accepted_and_returned() {
    let t = now();
    let v = verifier(t);
    let claims = json!({"jti": "ok-1", "sub": "alice", "sid": "sess-1", "iat": t - 5,
                        "exp": t + 600, "roles": ["a"]});
    let ok = block_on(v.check_trusted_claims_async(&claims)).unwrap();
    assert_eq!(ok.claims, claims);
    assert!(
        matches!(ok.checked, Checked::Filter { .. }),
        "{:?}",
        ok.checked
    );
    // Envoy hands NumericDates over as doubles, fractions included.
    let float = json!({"jti": "ok-2", "iat": (t - 5) as f64, "exp": (t + 600) as f64 + 0.25});
    trusted(&v, &float).unwrap();
}

#[test]
fn revoked_jti_and_cut_off_claims_are_refused() {
    let t = now();
    let v = verifier(t);
    for jti in REVOKED {
        let r = trusted(&v, &json!({"jti": jti, "iat": t - 5, "exp": t + 600}));
        assert!(
            matches!(r, Err(VerifyError::Revoked { .. })),
            "{jti}: {r:?}"
        );
        // The same bucket through a fractional `exp` that rounds to it.
        let r = trusted(
            &v,
            &json!({"jti": jti, "iat": t - 5, "exp": (t + 600) as f64 - 0.4}),
        );
        assert!(
            matches!(r, Err(VerifyError::Revoked { .. })),
            "{jti}: {r:?}"
        );
    }
    for (claim, value) in [("sid", "sess-9"), ("sub", "mallory")] {
        let mut c = json!({"jti": "c-1", "iat": t - 200, "exp": t + 600});
        c[claim] = json!(value);
        let r = trusted(&v, &c);
        assert!(
            matches!(&r, Err(VerifyError::Revoked { by: RevokedBy::Cutoff { claim: got } }) if got == claim),
            "{claim}: {r:?}"
        );
        // Issued after the cutoff (logged in again): accepted.
        c["iat"] = json!(t - 5);
        trusted(&v, &c).unwrap();
        // Without `iat` it cannot show that.
        c.as_object_mut().unwrap().remove("iat");
        assert!(trusted(&v, &c).is_err());
    }
    let r = trusted(&v, &json!({"jti": "no-exp", "iat": t - 200, "exp": t + 60}));
    assert!(
        matches!(r, Err(VerifyError::Revoked { by: RevokedBy::Jti })),
        "{r:?}"
    );
}

#[test]
fn exp_and_jti_rules_are_those_of_a_token() {
    let t = now();
    let v = verifier(t);
    let r = trusted(&v, &json!({"jti": "e-1", "iat": t - 7200, "exp": t - 3600}));
    assert!(matches!(r, Err(VerifyError::Expired)), "{r:?}");
    let r = trusted(&v, &json!({"jti": "e-2", "iat": t - 5}));
    assert!(
        matches!(&r, Err(VerifyError::Invalid(ErrorKind::MissingRequiredClaim(c))) if c == "exp"),
        "{r:?}"
    );
    assert!(matches!(
        normal(&v, &json!({"jti": "e-2", "iat": t - 5})),
        Err(VerifyError::Invalid(ErrorKind::MissingRequiredClaim(_)))
    ));
    let r = trusted(&v, &json!({"iat": t - 5, "exp": t + 600}));
    assert!(matches!(r, Err(VerifyError::MissingJti)), "{r:?}");
    let r = trusted(&v, &json!({"jti": "x".repeat(10_000), "exp": t + 600}));
    assert!(matches!(r, Err(VerifyError::OutOfBounds(_))), "{r:?}");
    for not_claims in [json!(null), json!("claims"), json!([1, 2])] {
        assert!(trusted(&v, &not_claims).is_err());
    }
    // No state at all: fail closed, as for a token.
    let bare = Verifier::builder(hs256_key(), hs256_validation())
        .state(revbloom::SnapshotHandle::<Vec<u8>>::new(
            revbloom::StalenessPolicy::FailClosed,
            std::time::Duration::from_secs(300),
        ))
        .build()
        .unwrap();
    let r = trusted(&bare, &json!({"jti": "n-1", "iat": t - 5, "exp": t + 600}));
    assert!(matches!(r, Err(VerifyError::Unavailable(_))), "{r:?}");
}

#[test]
fn the_exact_source_settles_filter_positives() {
    let t = now();
    let exact = Arc::new(MemoryExactSource::new());
    exact.revoke(None, "r-1", Some(t + 600));
    let v = Verifier::builder(hs256_key(), hs256_validation())
        .state(Arc::new(snapshot(t)))
        .async_exact_source(Arc::clone(&exact))
        .build()
        .unwrap();
    let r = trusted(&v, &json!({"jti": "r-1", "iat": t - 5, "exp": t + 600}));
    assert!(
        matches!(r, Err(VerifyError::Revoked { by: RevokedBy::Jti })),
        "{r:?}"
    );
    // "r-2" is in the filter but not in the source (a false positive, as far as the source
    // knows): accepted on the source's word.
    let r = trusted(&v, &json!({"jti": "r-2", "iat": t - 5, "exp": t + 600}));
    assert!(matches!(r, Ok(Checked::ExactSource)), "{r:?}");
    assert_eq!(exact.calls(), 2);
    // A clear token never reaches the source.
    trusted(&v, &json!({"jti": "c-9", "iat": t - 5, "exp": t + 600})).unwrap();
    assert_eq!(exact.calls(), 2);
}

/// Claims drawn from small sets that hit every rule: revoked and clear ids, cut-off and
/// clear claims, `iat` before and after the cutoffs or absent, `exp` past, near, fractional,
/// beyond the bounds or absent.
fn arb_claims(t: u64) -> impl Strategy<Value = Value> {
    let jti = prop::sample::select(vec![
        None,
        Some("r-1"),
        Some("r-2"),
        Some("no-exp"),
        Some("c-1"),
        Some("c-2"),
    ]);
    let sid = prop::sample::select(vec![None, Some("sess-9"), Some("sess-1")]);
    let sub = prop::sample::select(vec![None, Some("mallory"), Some("alice")]);
    let iat = prop::sample::select(vec![None, Some(-200i64), Some(-5), Some(30)]);
    let exp = prop::sample::select(vec![
        None,
        Some(-3600.0f64),
        Some(-30.0),
        Some(600.0),
        Some(599.7),
        Some(600.4),
        Some(86_400.0 * 400.0),
    ]);
    (jti, sid, sub, iat, exp).prop_map(move |(jti, sid, sub, iat, exp)| {
        let mut c = serde_json::Map::new();
        if let Some(j) = jti {
            c.insert("jti".into(), json!(j));
        }
        if let Some(s) = sid {
            c.insert("sid".into(), json!(s));
        }
        if let Some(s) = sub {
            c.insert("sub".into(), json!(s));
        }
        if let Some(d) = iat {
            c.insert("iat".into(), json!(t as i64 + d));
        }
        if let Some(d) = exp {
            let e = t as f64 + d;
            // Whole seconds as integers, as a token usually has them.
            let v = if e.fract() == 0.0 {
                json!(e as u64)
            } else {
                json!(e)
            };
            c.insert("exp".into(), v);
        }
        Value::Object(c)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Same state, same claims: the trusted path answers exactly as the token path does, so
    /// it never accepts what a token with these claims would be refused for.
    #[test]
    fn trusted_claims_answer_as_tokens_do(claims in arb_claims(now())) {
        let t = now();
        let v = verifier(t);
        let a = trusted(&v, &claims);
        let b = normal(&v, &claims);
        let same = match (&a, &b) {
            (Ok(x), Ok(y)) => std::mem::discriminant(x) == std::mem::discriminant(y),
            (Err(x), Err(y)) => format!("{x:?}") == format!("{y:?}"),
            _ => false,
        };
        prop_assert!(same, "claims {claims}: trusted {a:?}, token {b:?}");
    }
}
