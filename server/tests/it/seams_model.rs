//! Model test across the publisher/verifier seams: a generated deployment (bucket width,
//! horizon, leeway, clock skew, longest token lifetime, default issuer), a generated token
//! (issuer spelling, lifetime, fractional `exp`, numeric or string `sub`, clocks of issuer and
//! verifier offset within the skew) and a generated revocation of that token (by `jti` with its
//! `exp` or without one, or a `sub`/`sid` cutoff; with or without `iss`), run through the publisher's own pieces — the
//! redb store (keys, issuer rules, pruning and its watermark), the window and cutoff set built
//! from it with the publisher's key functions, the encoded snapshot — and the real `Verifier`
//! with its default cutoff settings (it checks the claims the snapshot lists) and the store as
//! its exact source, at a generated later time. The one assertion: the
//! revoked token is **never accepted**.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use revbloom::bounds::canonical_exp;
use revbloom::cutoff::JTI_CLAIM;
use revbloom::hash::normalize_issuer;
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::{covered, ExactError, ExactQuery, ExactSource, Verifier, VerifyError};
use revbloom::{CutoffSet, Window, WindowConfig};
use revbloom_server::publish::{cutoff_key, key_hash};
use revbloom_server::store::{Cutoff, RedbStore as Store, Revocation};
use serde_json::{json, Value};

const T0: u64 = 1_767_225_600;
const SECRET: &[u8] = b"seams-model-secret";
const ISSUERS: [&str; 3] = [
    "https://idp.example",
    "https://idp.example/",
    "https://other",
];

#[derive(Debug, Clone)]
enum Action {
    /// Revoke the token's jti, naming an issuer (index into ISSUERS) or none.
    Jti { iss: Option<usize> },
    /// Revoke the token's jti without its `exp` (the caller does not know it).
    JtiWithoutExp { iss: Option<usize> },
    /// Cut off the token's `sub` (or `sid`) at the API's default `before`.
    Cutoff { iss: Option<usize>, sid: bool },
}

#[derive(Debug, Clone)]
struct Case {
    width: u64,
    horizon_buckets: u64,
    leeway: u64,
    skew: u64,
    lifetime: u64,
    default_iss: Option<usize>,
    token_iss: Option<usize>,
    token_lifetime: u64,
    exp_frac: f64,
    has_iat: bool,
    numeric_sub: bool,
    issuer_offset: i64,
    verifier_offset: i64,
    revoke_after: u64,
    check_after: u64,
    action: Action,
}

/// An issuer for a revocation: mostly none (every issuer), else one of the spellings.
fn issuer() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![2 => Just(None), 1 => (0usize..3).prop_map(Some)]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1u64..=30, 1u64..=6, 0u64..=8, 0u64..=5, 1u64..=400),
        (
            proptest::option::of(0usize..3),
            proptest::option::of(0usize..3),
            // Per mille of the deployment's lifetime: mostly within it, sometimes beyond.
            1u64..=1300,
            prop_oneof![Just(0.0), Just(0.4), Just(0.5), Just(0.7)],
            proptest::bool::weighted(0.85),
            any::<bool>(),
        ),
        // Revocation and check times, per mille of the token's lifetime plus the leeway.
        (-5i64..=5, -5i64..=5, 0u64..=1000, 0u64..=1200),
        prop_oneof![
            issuer().prop_map(|iss| Action::Jti { iss }),
            issuer().prop_map(|iss| Action::JtiWithoutExp { iss }),
            (issuer(), any::<bool>()).prop_map(|(iss, sid)| Action::Cutoff { iss, sid }),
        ],
    )
        .prop_map(
            |(
                (width, horizon_buckets, leeway, skew, lifetime),
                (default_iss, token_iss, lifetime_pm, exp_frac, has_iat, numeric_sub),
                (io, vo, revoke_pm, check_pm),
                action,
            )| {
                let clamp = |o: i64| o.clamp(-(skew as i64), skew as i64);
                let token_lifetime = (lifetime * lifetime_pm / 1000).max(1);
                let span = token_lifetime + leeway + skew;
                let revoke_after = span * revoke_pm / 1000;
                let check_after = span * check_pm / 1000;
                Case {
                    width,
                    horizon_buckets,
                    leeway: leeway.min(width * horizon_buckets),
                    skew,
                    lifetime,
                    default_iss,
                    token_iss,
                    token_lifetime,
                    exp_frac,
                    has_iat,
                    numeric_sub,
                    issuer_offset: clamp(io),
                    verifier_offset: clamp(vo),
                    revoke_after,
                    check_after,
                    action,
                }
            },
        )
}

/// The publisher's store as the verifier's exact source (what the lookup endpoint answers).
struct StoreSource(Store);

impl ExactSource for StoreSource {
    fn is_revoked(&self, q: &ExactQuery<'_>) -> Result<bool, ExactError> {
        let found = self
            .0
            .lookup_covered(q.iss, q.jti)
            .map_err(ExactError::unreachable)?;
        let revoked = found.exp.is_some() || found.without_exp.is_some();
        covered(revoked, q.exp, found.pruned_before)
    }
}

#[derive(Default)]
struct Tally {
    refused_revoked: AtomicU64,
    refused_other: AtomicU64,
    not_revocable: AtomicU64,
    untargeted: AtomicU64,
}

fn at(t: u64, offset: i64) -> u64 {
    t.saturating_add_signed(offset)
}

fn run(c: &Case, rt: &tokio::runtime::Runtime, tally: &Tally) -> Result<(), TestCaseError> {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(c.width))
        .horizon(Duration::from_secs(c.width * c.horizon_buckets))
        .leeway(Duration::from_secs(c.leeway))
        .max_clock_skew(Duration::from_secs(c.skew))
        .max_token_lifetime(Duration::from_secs(c.lifetime))
        .expected_per_bucket(16);
    let bounds = config.bounds();
    let default_iss = c.default_iss.map(|i| ISSUERS[i]);

    // The token, stamped by an issuer whose clock is `issuer_offset` off real time.
    let issued = T0;
    let iat = at(issued, c.issuer_offset);
    let exp_f = (iat + c.token_lifetime) as f64 + c.exp_frac;
    let jti = format!("jti-{}-{}", c.token_lifetime, c.revoke_after);
    let sub = json!(if c.numeric_sub {
        json!(4242)
    } else {
        json!("alice")
    });
    let mut claims = json!({"jti": jti, "exp": exp_f, "sub": sub, "sid": "session-1"});
    if c.has_iat {
        claims["iat"] = json!(iat);
    }
    if let Some(i) = c.token_iss {
        claims["iss"] = json!(ISSUERS[i]);
    }
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;

    // The operator revokes it through the publisher at real time `revoked` (publisher clock).
    let revoked = issued + c.revoke_after;
    let dir = tempdir();
    let (store, _writer) =
        Store::open(&dir, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let store = store.with_default_issuer(default_iss);
    let mut window = Window::with_seed(config.clone(), revoked, 7)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    window.set_default_issuer(default_iss);
    let mut cutoffs = CutoffSet::new();
    let norm = |i: Option<usize>| i.map(|i| normalize_issuer(ISSUERS[i]).to_owned());
    // A revocation that names an issuer targets the token only if that is the token's issuer
    // (its `iss`, or the default issuer when it has none); one without an issuer targets it
    // whatever its issuer.
    let effective = norm(c.token_iss).or_else(|| norm(c.default_iss));
    let action_iss = match &c.action {
        Action::Jti { iss } | Action::JtiWithoutExp { iss } | Action::Cutoff { iss, .. } => {
            norm(*iss)
        }
    };
    if action_iss.is_some() && action_iss != effective {
        tally.untargeted.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    match &c.action {
        Action::Jti { iss } => {
            let exp = canonical_exp(exp_f).unwrap_or(0);
            if exp < bounds.earliest_useful_exp(revoked) {
                // The API refuses it (`exp_in_past`): every verifier already refuses the token.
                tally.not_revocable.fetch_add(1, Ordering::Relaxed);
            } else {
                let r = Revocation {
                    iss: norm(*iss),
                    jti: jti.clone(),
                    exp,
                };
                window.insert_hash(key_hash(window.hasher(), &r), Some(r.exp));
                rt.block_on(store.revoke(vec![r]))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        Action::JtiWithoutExp { iss } => {
            // What the API stores for an item without `exp`, and the publisher's window.
            let cut = Cutoff {
                iss: norm(*iss),
                claim: JTI_CLAIM.to_owned(),
                value: jti.clone(),
                before: bounds.default_cutoff_before(revoked),
            };
            window
                .add_cutoff_claim(&cut.claim)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            cutoffs.insert(cutoff_key(window.hasher(), &cut), cut.before);
            rt.block_on(store.revoke_with(Vec::new(), vec![cut]))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        Action::Cutoff { iss, sid } => {
            let (claim, value) = if *sid {
                ("sid", "session-1".to_owned())
            } else if c.numeric_sub {
                ("sub", "4242".to_owned())
            } else {
                ("sub", "alice".to_owned())
            };
            let cut = Cutoff {
                iss: norm(*iss),
                claim: claim.to_owned(),
                value,
                before: bounds.default_cutoff_before(revoked),
            };
            window
                .add_cutoff_claim(&cut.claim)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            cutoffs.insert(cutoff_key(window.hasher(), &cut), cut.before);
            rt.block_on(store.cutoff(cut))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }

    // Later, the publisher prunes and publishes at `checked`; the verifier checks then, by a
    // clock `verifier_offset` off.
    let checked = revoked + c.check_after;
    rt.block_on(store.prune(checked, bounds))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    window.advance(checked);
    cutoffs.prune(checked, bounds.cutoff_needed_until(0));
    let bytes = snapshot::encode_to_vec(&window, &cutoffs, &SnapshotMeta::first(checked), None)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let view = SnapshotView::open(bytes, &OpenOptions::new())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;

    // jsonwebtoken's own `exp` check is off (it reads the system clock, and an unbounded
    // verifier leeway is the worst case): the snapshot's bounds must hold the line alone.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let now = at(checked, c.verifier_offset);
    let verifier = Verifier::builder(DecodingKey::from_secret(SECRET), validation)
        .state(Arc::new(view))
        .exact_source(StoreSource(store))
        .staleness(None, revbloom::StalenessPolicy::FailClosed)
        .clock(move || now)
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let result = verifier.verify::<Value>(&token);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(v) => Err(TestCaseError::fail(format!(
            "revoked token accepted ({:?}) at verifier time {now}",
            v.checked
        ))),
        Err(VerifyError::Revoked { .. }) => {
            tally.refused_revoked.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(_) => {
            tally.refused_other.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// A store folder per case, on tmpfs where there is one: fsync on a disk would dominate.
fn tempdir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    crate::support::temp_dir_in(&base, "seams")
}

#[test]
fn a_revoked_token_is_never_accepted_across_the_seams() {
    let cases = std::env::var("REVBLOOM_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tally = Tally::default();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |c| run(&c, &rt, &tally))
        .unwrap_or_else(|e| panic!("{e}"));
    let revoked = tally.refused_revoked.load(Ordering::Relaxed);
    let other = tally.refused_other.load(Ordering::Relaxed);
    eprintln!(
        "{cases} cases: refused as revoked {revoked}, refused otherwise (expired, out of bounds, \
         unavailable) {other}, not revocable (already expired everywhere) {}, revocation for \
         another issuer {}",
        tally.not_revocable.load(Ordering::Relaxed),
        tally.untargeted.load(Ordering::Relaxed)
    );
    // The model must exercise the filter and cutoffs, not only the bounds: about a quarter of
    // the cases do (binomial, sd ~1 % at 2000 cases), so an eighth is far from chance.
    assert!(
        revoked * 8 >= u64::from(cases),
        "too few cases reached a revocation check: {revoked} of {cases}"
    );
}
