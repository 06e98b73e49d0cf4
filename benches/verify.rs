//! `Verifier::verify` next to plain `jsonwebtoken::decode`, with and without the revocation
//! check, HS256 and ES256, in one run.
//!
//! `cargo bench --bench verify --no-default-features --features verify`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use revbloom::cutoff::{CutoffKey, CutoffSet};
use revbloom::snapshot::{self, AlignedBytes, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::Verifier;
use revbloom::{SnapshotHandle, StalenessPolicy, Window, WindowConfig};
use serde::Deserialize;
use serde_json::json;

/// A typical application claim set.
#[allow(dead_code)]
#[derive(Deserialize)]
struct Claims {
    sub: String,
    jti: String,
    iat: u64,
    exp: u64,
    scope: String,
}

const REVOKED: u64 = 100_000;

/// A snapshot with 100k revoked ids and `cutoff_count` subject cutoffs, none of them the
/// bench token's.
fn snapshot_view_with(now: u64, cutoff_count: u32) -> SnapshotView<AlignedBytes> {
    let config = WindowConfig::default().expected_per_bucket(REVOKED / 24);
    let mut w = Window::new(config, now).unwrap();
    for i in 0..REVOKED {
        w.insert(format!("revoked-{i}"), Some(now + 60 + (i % 86_000)));
    }
    let mut cutoffs = CutoffSet::new();
    for i in 0..cutoff_count {
        cutoffs.insert(
            CutoffKey::new(w.hasher(), None, "sub", format!("user-{i}")),
            now,
        );
    }
    w.fit_to_entries(0.1);
    let bytes = snapshot::encode_to_vec(&w, &cutoffs, &SnapshotMeta::first(now), None).unwrap();
    SnapshotView::open_owned(bytes, &OpenOptions::new()).unwrap()
}

/// The decision of issue item 3: 1M revoked ids and 100k cutoffs spread over `sub`, `sid`
/// and `client_id`, none of them the bench token's.
fn decision_view(now: u64) -> SnapshotView<AlignedBytes> {
    const MANY: u64 = 1_000_000;
    let config = WindowConfig::default().expected_per_bucket(MANY / 24);
    let mut w = Window::new(config, now).unwrap();
    for i in 0..MANY {
        w.insert(format!("revoked-{i}"), Some(now + 60 + (i % 86_000)));
    }
    w.set_cutoff_claims(&["client_id", "sid", "sub"]).unwrap();
    let mut cutoffs = CutoffSet::new();
    for i in 0..100_000u32 {
        let claim = ["sub", "sid", "client_id"][i as usize % 3];
        cutoffs.insert(
            CutoffKey::new(w.hasher(), None, claim, format!("value-{i}")),
            now,
        );
    }
    w.fit_to_entries(0.1);
    let bytes = snapshot::encode_to_vec(&w, &cutoffs, &SnapshotMeta::first(now), None).unwrap();
    SnapshotView::open_owned(bytes, &OpenOptions::new()).unwrap()
}

fn snapshot_view(now: u64) -> SnapshotView<AlignedBytes> {
    snapshot_view_with(now, 10_000)
}

fn bench_alg(c: &mut Criterion, name: &str, token: &str, key: DecodingKey, alg: Algorithm) {
    let now = jsonwebtoken::get_current_timestamp();
    let validation = Validation::new(alg);
    let plain = Verifier::builder(key.clone(), validation.clone())
        .build()
        .unwrap();
    let checked = Verifier::builder(key.clone(), validation.clone())
        .state(snapshot_view(now))
        .build()
        .unwrap();
    // The same snapshot behind the hot-swap handle a gateway uses.
    let handle = SnapshotHandle::with_snapshot(
        snapshot_view(now),
        StalenessPolicy::FailClosed,
        Duration::from_secs(300),
    );
    let handled = Verifier::builder(key.clone(), validation.clone())
        .state(handle)
        .build()
        .unwrap();
    assert!(handled.verify::<Claims>(token).is_ok());
    // Revocation by id only: a deployment that has no claim cutoffs.
    let jti_only = Verifier::builder(key.clone(), validation.clone())
        .state(snapshot_view_with(now, 0))
        .build()
        .unwrap();
    assert!(plain.verify::<Claims>(token).is_ok());
    assert!(checked.verify::<Claims>(token).is_ok());

    let mut g = c.benchmark_group(format!("verify/{name}"));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| jsonwebtoken::decode::<Claims>(black_box(token), &key, &validation).unwrap())
    });
    g.bench_function("verifier_no_revocation", |b| {
        b.iter(|| plain.verify::<Claims>(black_box(token)).unwrap())
    });
    g.bench_function("verifier_with_revocation", |b| {
        b.iter(|| checked.verify::<Claims>(black_box(token)).unwrap())
    });
    g.bench_function("verifier_with_revocation_handle", |b| {
        b.iter(|| handled.verify::<Claims>(black_box(token)).unwrap())
    });
    g.finish();

    // This VM is shared and its load drifts by more than the effect being measured, so the
    // overhead figures come from paired rounds: A then B for a few hundred microseconds each,
    // many times over, reporting the median of the per-round ratios B/A.
    let decode = || {
        jsonwebtoken::decode::<Claims>(black_box(token), &key, &validation).unwrap();
    };
    let no_rev = || {
        plain.verify::<Claims>(black_box(token)).unwrap();
    };
    let with_rev = || {
        checked.verify::<Claims>(black_box(token)).unwrap();
    };
    let with_handle = || {
        handled.verify::<Claims>(black_box(token)).unwrap();
    };
    let with_jti_only = || {
        jti_only.verify::<Claims>(black_box(token)).unwrap();
    };
    let per_round = if name == "hs256" { 200 } else { 4 };
    let rounds = if name == "hs256" { 1500 } else { 150 };
    for (label, a, b) in [
        (
            "verifier_no_revocation / jsonwebtoken_decode",
            &decode as &dyn Fn(),
            &no_rev as &dyn Fn(),
        ),
        (
            "verifier_with_revocation / verifier_no_revocation",
            &no_rev,
            &with_rev,
        ),
        (
            "verifier_with_revocation / jsonwebtoken_decode",
            &decode,
            &with_rev,
        ),
        (
            "verifier_with_revocation_handle / verifier_with_revocation",
            &with_rev,
            &with_handle,
        ),
        (
            "verifier_with_revocation_no_cutoffs / verifier_no_revocation",
            &no_rev,
            &with_jti_only,
        ),
    ] {
        let r = paired_ratio(a, b, per_round, rounds);
        println!("paired {name}: {label} = {r:.4} (median of {rounds} rounds)");
    }
    if name == "hs256" {
        paired_decision(&key, &validation, token);
    }
}

/// The token of the decision measurements: `jti`, `sub`, `sid` and `client_id`, none of them
/// revoked or cut off.
fn decision_token(now: u64) -> String {
    encode(
        &Header::default(),
        &json!({
            "sub": "user-4242424", "sid": "session-8b1c0e", "client_id": "orders-web",
            "jti": "0b8f6c1e-3d7a-4c55-9a51-2f7b9c4e8d10",
            "iat": now, "exp": now + 3600, "scope": "read:orders write:orders"
        }),
        &EncodingKey::from_secret(b"bench-secret-32-bytes-long......"),
    )
    .unwrap()
}

/// The whole decision on the verifier's own path: `jti` plus `sub`, `sid` and `client_id`
/// against 1M revocations and 100k cutoffs, paired with the same verifier minus revocation
/// state, both verifying the same HS256 token. Prints the ratio (the overhead in wall time)
/// and the difference per verification in nanoseconds (the decision's cost), each the
/// median over rounds, and the 10th percentile of the difference.
fn paired_decision(key: &DecodingKey, validation: &Validation, _token: &str) {
    let now = jsonwebtoken::get_current_timestamp();
    let token = decision_token(now);
    let plain = Verifier::builder(key.clone(), validation.clone())
        .build()
        .unwrap();
    let decided = Verifier::builder(key.clone(), validation.clone())
        .state(decision_view(now))
        .build()
        .unwrap();
    assert!(matches!(
        decided.verify::<Claims>(&token).unwrap().checked,
        revbloom::verify::Checked::Filter { .. }
    ));
    let a = || {
        plain.verify::<Claims>(black_box(&token)).unwrap();
    };
    let b = || {
        decided.verify::<Claims>(black_box(&token)).unwrap();
    };
    let (per_round, rounds) = (200u32, 1500usize);
    let time = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        for _ in 0..per_round {
            f();
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(per_round)
    };
    let mut pairs: Vec<(f64, f64)> = (0..rounds)
        .map(|i| {
            if i % 2 == 0 {
                let ta = time(&a);
                (ta, time(&b))
            } else {
                let tb = time(&b);
                (time(&a), tb)
            }
        })
        .collect();
    let mut ratios: Vec<f64> = pairs.iter().map(|(a, b)| b / a).collect();
    ratios.sort_by(f64::total_cmp);
    let mut diffs: Vec<f64> = pairs.iter().map(|(a, b)| b - a).collect();
    diffs.sort_by(f64::total_cmp);
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mid = rounds / 2;
    println!(
        "paired hs256 decision (1M revocations, 100k cutoffs, jti+sub+sid+client_id): \
         verify+decision / verify = {:.4} (median of {rounds} rounds); decision = {:.1} ns \
         median, {:.1} ns p10 of per-round differences; verify alone {:.0} ns median",
        ratios[mid],
        diffs[mid],
        diffs[rounds / 10],
        pairs[mid].0
    );
}

/// Median over `rounds` of (time of `per_round` calls of `b`) / (same for `a`), alternating.
fn paired_ratio(a: &dyn Fn(), b: &dyn Fn(), per_round: u32, rounds: usize) -> f64 {
    let time = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        for _ in 0..per_round {
            f();
        }
        start.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|i| {
            // Alternate which goes first so neither always runs on a warmer cache.
            if i % 2 == 0 {
                let ta = time(a);
                time(b) / ta
            } else {
                let tb = time(b);
                tb / time(a)
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn claims(now: u64) -> serde_json::Value {
    json!({
        "sub": "user-4242424", "jti": "0b8f6c1e-3d7a-4c55-9a51-2f7b9c4e8d10",
        "iat": now, "exp": now + 3600, "scope": "read:orders write:orders"
    })
}

fn hs256(c: &mut Criterion) {
    let now = jsonwebtoken::get_current_timestamp();
    let secret = b"bench-secret-32-bytes-long......";
    let token = encode(
        &Header::default(),
        &claims(now),
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    bench_alg(
        c,
        "hs256",
        &token,
        DecodingKey::from_secret(secret),
        Algorithm::HS256,
    );
}

fn es256(c: &mut Criterion) {
    let now = jsonwebtoken::get_current_timestamp();
    let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public = sk
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let ek = EncodingKey::from_ec_pem(private.as_bytes()).unwrap();
    let token = encode(&Header::new(Algorithm::ES256), &claims(now), &ek).unwrap();
    let dk = DecodingKey::from_ec_pem(public.as_bytes()).unwrap();
    bench_alg(c, "es256", &token, dk, Algorithm::ES256);
}

/// The pieces of the revocation check on their own.
fn parts(c: &mut Criterion) {
    let now = jsonwebtoken::get_current_timestamp();
    let view = snapshot_view(now);
    let h = view.hasher();
    let jti = "0b8f6c1e-3d7a-4c55-9a51-2f7b9c4e8d10";
    let mut g = c.benchmark_group("verify/parts");
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("hash_jti+check", |b| {
        b.iter(|| view.check_hash(h.hash(black_box(jti)), Some(now + 3600)))
    });
    g.bench_function("cutoff_key+lookup", |b| {
        b.iter(|| view.cutoff(CutoffKey::new(&h, None, "sub", black_box("user-4242424"))))
    });
    g.bench_function("issuer_hasher", |b| {
        b.iter(|| h.issuer(black_box("https://auth.example.com/")))
    });
    g.finish();
}

criterion_group!(benches, hs256, es256, parts);

/// Instruction counts do not drift with the machine's load, so the bench binary can also
/// run one variant in a plain loop for `valgrind --tool=cachegrind` (see docs/BENCHMARKS.md):
/// `REVBLOOM_VERIFY_LOOP=<decode|plain|jti|full|decision-plain|decision>:<iterations>`.
/// Subtract a 0-iteration run to remove the setup.
fn instruction_loop(spec: &str) {
    let (which, n) = spec
        .split_once(':')
        .expect("REVBLOOM_VERIFY_LOOP=variant:iterations");
    let n: u32 = n.parse().expect("iterations");
    let now = jsonwebtoken::get_current_timestamp();
    let secret = b"bench-secret-32-bytes-long......";
    let token = if which.starts_with("decision") {
        decision_token(now)
    } else {
        encode(
            &Header::default(),
            &claims(now),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let key = DecodingKey::from_secret(secret);
    let validation = Validation::new(Algorithm::HS256);
    let builder = Verifier::builder(key.clone(), validation.clone());
    let verifier = match which {
        "decode" | "plain" | "decision-plain" => builder.build().unwrap(),
        "decision" => builder.state(decision_view(now)).build().unwrap(),
        "jti" => builder.state(snapshot_view_with(now, 0)).build().unwrap(),
        "full" => builder.state(snapshot_view(now)).build().unwrap(),
        other => panic!("unknown variant {other}"),
    };
    for _ in 0..n {
        if which == "decode" {
            black_box(
                jsonwebtoken::decode::<Claims>(black_box(&token), &key, &validation).unwrap(),
            );
        } else {
            black_box(verifier.verify::<Claims>(black_box(&token)).unwrap());
        }
    }
}

fn main() {
    // `REVBLOOM_VERIFY_DECISION=1`: only the paired decision measurement.
    if std::env::var_os("REVBLOOM_VERIFY_DECISION").is_some() {
        let secret = b"bench-secret-32-bytes-long......";
        paired_decision(
            &DecodingKey::from_secret(secret),
            &Validation::new(Algorithm::HS256),
            "",
        );
        return;
    }
    if let Ok(spec) = std::env::var("REVBLOOM_VERIFY_LOOP") {
        instruction_loop(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
