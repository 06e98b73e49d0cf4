//! The verifier over the hot-swap snapshot handle: swaps are seen by the next verification,
//! rollbacks are not, and the handle's staleness policy becomes the verifier's.

use std::sync::Arc;
use std::time::Duration;

use crate::support::tokens::*;
use revbloom::snapshot::{self, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::{MemoryExactSource, RevokedBy, Unavailable, Verifier, VerifyError};
use revbloom::{CutoffKey, CutoffSet, SnapshotHandle, StalenessPolicy};
use serde_json::Value;

fn snap(meta: SnapshotMeta, revoked: &[&str], cut_subs: &[&str]) -> SnapshotView<AlignedBytes> {
    let t = now();
    let mut w = window();
    for jti in revoked {
        w.insert(jti, Some(t + 600));
    }
    let mut cutoffs = CutoffSet::new();
    for sub in cut_subs {
        cutoffs.insert(CutoffKey::new(w.hasher(), None, "sub", sub), t);
    }
    let bytes = snapshot::encode_to_vec(&w, &cutoffs, &meta, None).unwrap();
    SnapshotView::open_owned(bytes, &OpenOptions::new()).unwrap()
}

#[test]
fn swaps_are_seen_rollbacks_are_not_and_the_handle_policy_applies() {
    let t = now();
    let handle: SnapshotHandle =
        SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(60));
    let exact = Arc::new(MemoryExactSource::new());
    exact.revoke(None, "j-2", Some(t + 600));
    let verifier = Verifier::builder(hs256_key(), hs256_validation())
        .state(handle.clone())
        .exact_source(Arc::clone(&exact))
        .build()
        .unwrap();
    let v = |jti: &str, sub: &str| verifier.verify::<Value>(&hs256(&claims(jti, sub, 5)));

    // No snapshot yet: the handle's fail-closed policy.
    assert!(matches!(
        v("j-1", "alice"),
        Err(VerifyError::Unavailable(Unavailable::NoSnapshot))
    ));

    let gen1 = SnapshotMeta::first(t);
    handle.replace(snap(gen1, &[], &[])).unwrap();
    assert!(v("j-2", "alice").is_ok());

    let gen2 = gen1.next(t);
    handle.replace(snap(gen2, &["j-2"], &["alice"])).unwrap();
    assert!(matches!(
        v("j-2", "bob"),
        Err(VerifyError::Revoked { by: RevokedBy::Jti })
    ));
    assert!(matches!(
        v("j-3", "alice"),
        Err(VerifyError::Revoked {
            by: RevokedBy::Cutoff { .. }
        })
    ));

    // An older generation is refused; the revocations stay in force.
    assert!(handle.replace(snap(gen1, &[], &[])).is_err());
    assert!(v("j-2", "bob").is_err());

    // A stale snapshot under the handle's policy.
    let mut old = gen2.next(t);
    old.created_at = t - 120;
    handle.replace(snap(old, &[], &[])).unwrap();
    assert!(matches!(
        v("j-4", "bob"),
        Err(VerifyError::Unavailable(Unavailable::Stale { .. }))
    ));
    // Two verifications of the revoked j-2 reached the exact source; nothing else did.
    assert_eq!(exact.calls(), 2);
}

#[test]
fn explicit_staleness_overrides_the_handle() {
    let handle: SnapshotHandle =
        SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(60));
    let verifier = Verifier::builder(hs256_key(), hs256_validation())
        .state(handle)
        .staleness(None, StalenessPolicy::FailOpen)
        .build()
        .unwrap();
    assert!(verifier
        .verify::<Value>(&hs256(&claims("j-1", "alice", 5)))
        .is_ok());
    assert_eq!(verifier.stats().fail_open, 1);
}
