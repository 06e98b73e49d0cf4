//! Cutoffs the snapshot lists are checked without verifier configuration, and a revocation
//! made without `exp` (a cutoff on the `jti`) revokes the token whatever its `exp`.

use std::sync::Arc;

use revbloom::cutoff::JTI_CLAIM;
use revbloom::delta::{self, DeltaView};
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::{RevokedBy, Verifier, VerifyError};
use revbloom::{CutoffKey, CutoffSet, Decision, SnapshotHandle, StalenessPolicy, Verdict};
use serde_json::{json, Value};

use crate::support::tokens::{hs256, hs256_key, hs256_validation, now, window};

/// A snapshot with a `sid` cutoff on "sess-9" and the `jti` "no-exp-1" revoked without
/// `exp`, both at `before`; nothing in the filter.
fn snapshot(before: u64) -> SnapshotView<Vec<u8>> {
    let mut w = window();
    let mut set = CutoffSet::new();
    for (claim, value) in [("sid", "sess-9"), (JTI_CLAIM, "no-exp-1")] {
        w.add_cutoff_claim(claim).unwrap();
        set.insert(CutoffKey::new(w.hasher(), None, claim, value), before);
    }
    let bytes = snapshot::encode_to_vec(&w, &set, &SnapshotMeta::first(now()), None).unwrap();
    SnapshotView::open(bytes, &OpenOptions::new()).unwrap()
}

/// A verifier with default cutoff settings (only `sub` configured).
fn verifier(view: SnapshotView<Vec<u8>>) -> Verifier {
    Verifier::builder(hs256_key(), hs256_validation())
        .state(Arc::new(view))
        .build()
        .unwrap()
}

fn verdict(v: &Verifier, claims: Value) -> Result<(), VerifyError> {
    v.verify::<Value>(&hs256(&claims)).map(|_| ())
}

#[test]
fn listed_claims_are_checked_by_default() {
    let t = now();
    let view = snapshot(t);
    let listed: Vec<&str> = view.cutoff_claims().iter().map(|c| &**c).collect();
    assert_eq!(listed, ["jti", "sid"]);
    let v = verifier(view);
    // Control: the same token with another session passes.
    verdict(
        &v,
        json!({"jti": "a", "sid": "sess-1", "iat": t - 5, "exp": t + 600}),
    )
    .unwrap();
    let cut = verdict(
        &v,
        json!({"jti": "b", "sid": "sess-9", "iat": t - 5, "exp": t + 600}),
    );
    assert!(
        matches!(&cut, Err(VerifyError::Revoked { by: RevokedBy::Cutoff { claim } }) if claim == "sid"),
        "{cut:?}"
    );
    // Logged in again after the cutoff: passes.
    verdict(
        &v,
        json!({"jti": "c", "sid": "sess-9", "iat": t, "exp": t + 600}),
    )
    .unwrap();
}

#[test]
fn a_jti_revoked_without_exp_is_rejected_whatever_its_exp() {
    let t = now();
    let v = verifier(snapshot(t + 1));
    for exp in [t + 1, t + 61, t + 3599, t + 3600 * 7, t + 86_400 * 29] {
        let r = verdict(&v, json!({"jti": "no-exp-1", "iat": t - 5, "exp": exp}));
        assert!(
            matches!(r, Err(VerifyError::Revoked { by: RevokedBy::Jti })),
            "exp {exp}: {r:?}"
        );
        // Control: another jti with the same times passes.
        verdict(&v, json!({"jti": "no-exp-2", "iat": t - 5, "exp": exp})).unwrap();
    }
    // Without `iat` the token cannot show it was issued after the revocation.
    let r = verdict(&v, json!({"jti": "no-exp-1", "exp": t + 600}));
    assert!(matches!(r, Err(VerifyError::Revoked { .. })), "{r:?}");
    // A jti cutoff does not need `iat` on other tokens: the `NoIssuedAt` rule is for claims
    // a lost cutoff could have covered, and a jti names one token.
    verdict(&v, json!({"jti": "no-exp-3", "exp": t + 600})).unwrap();
}

#[test]
fn the_handle_decides_jti_cutoffs_without_iat() {
    let t = now();
    let handle = SnapshotHandle::new(
        StalenessPolicy::FailClosed,
        std::time::Duration::from_secs(300),
    );
    handle.replace(snapshot(t)).unwrap();
    for exp in [None, Some(t + 60), Some(t + 86_400)] {
        assert_eq!(
            handle.decide("no-exp-1", exp, t),
            Decision::Verdict(Verdict::MaybeRevoked),
            "exp {exp:?}"
        );
        assert_eq!(
            handle.decide("no-exp-2", exp, t),
            Decision::Verdict(Verdict::Clear)
        );
    }
}

#[test]
fn a_new_cutoff_claim_is_a_layout_change_no_delta_bridges() {
    let t = now();
    let mut w = window();
    w.enable_journal();
    let base =
        snapshot::encode_to_vec(&w, &CutoffSet::new(), &SnapshotMeta::first(t), None).unwrap();
    let base = SnapshotView::open(base, &OpenOptions::new()).unwrap();
    let _ = w.take_journal();
    // The first `sid` cutoff: the window's claim list grows, so the journal says the layout
    // changed and the delta encoder refuses, and a delta forced from the new layout does not
    // apply to the old one.
    assert!(w.add_cutoff_claim("sid").unwrap());
    assert!(!w.add_cutoff_claim("sid").unwrap());
    let key = CutoffKey::new(w.hasher(), None, "sid", "sess-9");
    let journal = w.take_journal();
    assert!(journal.layout_changed);
    let meta = SnapshotMeta::first(t).next(t + 1);
    let mut out = Vec::new();
    assert!(delta::encode_delta(&w, &journal, &[(key, t)], &meta, None, &mut out).is_err());
    let forced = revbloom::Journal {
        entries: Vec::new(),
        layout_changed: false,
    };
    let mut out = Vec::new();
    delta::encode_delta(&w, &forced, &[(key, t)], &meta, None, &mut out).unwrap();
    let d = DeltaView::open(&out, &OpenOptions::new()).unwrap();
    assert!(base.apply_delta(&d).is_err());
}
