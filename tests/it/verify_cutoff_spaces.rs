//! A snapshot view derives each listed claim's fingerprint space once, at open, under no issuer
//! and under its default issuer, and the verifier takes spaces from it. Its decisions must
//! equal those of fingerprinting every `(iss, claim, value)` afresh with `CutoffKey::new`:
//! across states of different seeds, and tokens of the default issuer, of another issuer and
//! of none (which the default issuer stands for).

use std::sync::Arc;

use proptest::prelude::*;
use revbloom::cutoff::ClaimHasher;
use revbloom::cutoff::JTI_CLAIM;
use revbloom::snapshot::{self, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::{RevokedBy, Verifier, VerifyError};
use revbloom::{CutoffKey, CutoffSet, Window, WindowConfig};
use serde_json::{json, Map, Value};

use crate::support::tokens::{hs256, hs256_key, hs256_validation, now};

const CLAIMS: [&str; 4] = [JTI_CLAIM, "sub", "sid", "client_id"];
/// The first is the snapshot's default issuer.
const ISSUERS: [&str; 2] = ["https://a", "https://b"];

/// A cutoff: claim index, issuer index (`None`: every issuer), value, revokes (cut at `t`)
/// or not (cut before the token's `iat`).
type Cut = (usize, Option<usize>, u8, bool);

/// A token: issuer index, then a value (or none) per claim of [`CLAIMS`].
type Tok = (Option<usize>, [Option<u8>; 4]);

fn state(seed: u64, cuts: &[Cut], t: u64) -> (SnapshotView<AlignedBytes>, CutoffSet) {
    let mut w = Window::with_seed(WindowConfig::default(), t, seed).unwrap();
    w.set_cutoff_claims(&CLAIMS).unwrap();
    w.set_default_issuer(Some(ISSUERS[0]));
    let mut set = CutoffSet::new();
    for &(c, iss, v, revokes) in cuts {
        let key = CutoffKey::new(
            w.hasher(),
            iss.map(|i| ISSUERS[i].as_bytes()),
            CLAIMS[c],
            format!("v{v}"),
        );
        set.insert(key, if revokes { t } else { t - 100 });
    }
    let bytes = snapshot::encode_to_vec(&w, &set, &SnapshotMeta::first(t), None).unwrap();
    let view = SnapshotView::open_owned(bytes, &OpenOptions::new()).unwrap();
    (view, set)
}

/// What fingerprinting afresh says: the first claim (`jti`, then the configured order) with
/// a cutoff after the token's `iat` under its issuer (the default issuer for a token without
/// one) or under none.
fn model(set: &CutoffSet, seed: u64, tok: &Tok, iat: u64) -> Option<RevokedBy> {
    let h = revbloom::hash::KeyHasher::new(seed);
    let iss = Some(ISSUERS[tok.0.unwrap_or(0)]);
    for (c, value) in tok.1.iter().enumerate() {
        let Some(v) = value else { continue };
        let v = format!("v{v}");
        let scopes = [iss.map(str::as_bytes), None];
        let scopes = if iss.is_some() {
            &scopes[..]
        } else {
            &scopes[1..]
        };
        for &scope in scopes {
            if set
                .get(CutoffKey::new(&h, scope, CLAIMS[c], &v))
                .is_some_and(|before| iat < before)
            {
                return Some(if c == 0 {
                    RevokedBy::Jti
                } else {
                    RevokedBy::Cutoff {
                        claim: CLAIMS[c].to_owned(),
                    }
                });
            }
        }
    }
    None
}

fn token(tok: &Tok, n: usize, t: u64) -> String {
    let mut m = Map::new();
    // A unique `jti` when none is drawn: every token needs one.
    let jti = tok.1[0].map_or_else(|| format!("unique-{n}"), |v| format!("v{v}"));
    m.insert("jti".into(), json!(jti));
    for (c, value) in tok.1.iter().enumerate().skip(1) {
        if let Some(v) = value {
            m.insert(CLAIMS[c].into(), json!(format!("v{v}")));
        }
    }
    if let Some(i) = tok.0 {
        m.insert("iss".into(), json!(ISSUERS[i]));
    }
    m.insert("iat".into(), json!(t - 50));
    m.insert("exp".into(), json!(t + 600));
    hs256(&Value::Object(m))
}

fn cut() -> impl Strategy<Value = Cut> {
    (
        0..4usize,
        prop::option::of(0..2usize),
        0..4u8,
        any::<bool>(),
    )
}

fn tok() -> impl Strategy<Value = Tok> {
    (
        prop::option::of(0..2usize),
        prop::array::uniform4(prop::option::of(0..4u8)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn spaces_derived_at_open_decide_as_fresh_fingerprints(
        cuts_a in prop::collection::vec(cut(), 0..12),
        cuts_b in prop::collection::vec(cut(), 0..12),
        toks in prop::collection::vec((any::<bool>(), tok()), 1..24),
    ) {
        let t = now();
        let (seed_a, seed_b) = (11, 12);
        let (state_a, set_a) = state(seed_a, &cuts_a, t);
        let (state_b, set_b) = state(seed_b, &cuts_b, t);
        let build = |s: SnapshotView<AlignedBytes>| {
            Verifier::builder(hs256_key(), hs256_validation())
                .state(Arc::new(s))
                .cutoff_claims(&["sub", "sid", "client_id"])
                .build()
                .unwrap()
        };
        let (va, vb) = (build(state_a), build(state_b));
        for (n, (on_b, tk)) in toks.iter().enumerate() {
            let (v, set, seed) = if *on_b { (&vb, &set_b, seed_b) } else { (&va, &set_a, seed_a) };
            // A drawn `jti` of the unique kind cannot match a cutoff value.
            let expected = model(set, seed, tk, t - 50);
            let got = v.verify::<Value>(&token(tk, n, t));
            match expected {
                None => prop_assert!(got.is_ok(), "token {n}: {got:?}"),
                Some(by) => prop_assert!(
                    matches!(&got, Err(VerifyError::Revoked { by: b }) if *b == by),
                    "token {n}: expected {by:?}, got {got:?}"
                ),
            }
        }
    }
}

#[test]
fn a_cutoff_under_one_issuer_spares_the_other() {
    // Control for the spaces: the same claim value cut off under the default issuer revokes
    // tokens of that issuer and tokens without `iss` (the default stands for them), and
    // spares another issuer's.
    let t = now();
    let (s, _) = state(5, &[(1, Some(0), 1, true)], t);
    let v = Verifier::builder(hs256_key(), hs256_validation())
        .state(Arc::new(s))
        .build()
        .unwrap();
    for n in 0..4 {
        let a = v.verify::<Value>(&token(&(Some(0), [None, Some(1), None, None]), n, t));
        assert!(matches!(a, Err(VerifyError::Revoked { .. })), "{a:?}");
        let none = v.verify::<Value>(&token(&(None, [None, Some(1), None, None]), n, t));
        assert!(matches!(none, Err(VerifyError::Revoked { .. })), "{none:?}");
        let b = v.verify::<Value>(&token(&(Some(1), [None, Some(1), None, None]), n, t));
        assert!(b.is_ok(), "{b:?}");
    }
}

#[test]
fn the_view_hands_out_the_spaces_it_would_derive() {
    let (view, _) = state(9, &[], now());
    let h = view.hasher();
    for claim in CLAIMS.iter().chain(&["unlisted"]) {
        for iss in [None, Some(ISSUERS[0]), Some(ISSUERS[1])] {
            let want = ClaimHasher::new(&h, iss.map(str::as_bytes), claim);
            assert_eq!(view.claim_hasher(iss, claim), want, "{claim} {iss:?}");
        }
    }
}
