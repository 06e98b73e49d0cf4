//! Golden fixtures in `tests/data/`: the current code must still read every version with the
//! expected verdicts, and re-encoding the same inputs must give the current version's bytes, so
//! a format change cannot slip in unnoticed. Fixtures are never edited: a new format version
//! adds new files (the `v1-*` files were written by the version 1 encoder and are only read).
//!
//! Regenerate (only when deliberately adding a fixture):
//! `REVBLOOM_REGEN_FIXTURES=1 cargo test --test snapshot_fixtures`

use crate::support::NOW;
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use revbloom::delta::{encode_delta, encode_signed_delta, DeltaView};
use revbloom::snapshot::{self, OpenOptions, SignatureStatus, SnapshotMeta, SnapshotView};
use revbloom::{CutoffKey, CutoffSet, Verdict, Window, WindowConfig};

const SEED: u64 = 0x0123_4567_89ab_cdef;
const KEY_SEED: [u8; 32] = [0x42; 32];

const REVOKED: &[(&str, Option<u64>)] = &[
    ("jti-alpha", Some(NOW + 600)),
    ("jti-beta", Some(NOW + 5 * 3600)),
    ("jti-gamma", Some(NOW + 23 * 3600)),
    ("jti-far", Some(NOW + 40 * 3600)), // beyond the horizon: overflow bucket
    ("jti-noexp", None),
];
const DELTA_REVOKED: &[(&str, Option<u64>)] = &[
    ("jti-delta-1", Some(NOW + 1200)), // fitted empty buckets have no bits,
    ("jti-delta-2", Some(NOW + 5 * 3600 + 60)), // buckets that already hold entries:
    ("jti-delta-3", None),             // and filling one would change the layout
];
const ABSENT: &[(&str, Option<u64>)] = &[
    ("jti-absent-1", Some(NOW + 600)),
    ("jti-absent-2", Some(NOW + 5 * 3600)),
    ("jti-absent-3", None),
];

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

struct Fixtures {
    unsigned: Vec<u8>,
    signed: Vec<u8>,
    delta: Vec<u8>,
    signed_delta: Vec<u8>,
    /// The publisher's signed snapshot of generation 2 (not a fixture: what the signed delta
    /// must reproduce).
    signed_gen2: Vec<u8>,
}

const DEFAULT_ISS: &str = "https://idp.example";

fn cutoff_key(w: &Window, sub: &str) -> CutoffKey {
    CutoffKey::new(w.hasher(), None, "sub", sub)
}

/// The deterministic inputs every fixture is built from.
fn build() -> Fixtures {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(24 * 3600))
        .expected_per_bucket(64)
        .fp_rate(0.001)
        .max_token_lifetime(Duration::from_secs(7 * 86_400))
        .max_clock_skew(Duration::from_secs(5));
    let mut w = Window::with_seed(config, NOW, SEED).unwrap();
    w.set_default_issuer(Some("https://idp.example/"));
    for (jti, exp) in REVOKED {
        w.insert(jti, *exp);
    }
    w.fit_to_entries(1.0);
    w.enable_journal();
    let mut cutoffs = CutoffSet::new();
    cutoffs.insert(cutoff_key(&w, "alice"), NOW - 60);
    let meta = SnapshotMeta::first(NOW);
    let key = SigningKey::from_bytes(&KEY_SEED);
    let unsigned = snapshot::encode_to_vec(&w, &cutoffs, &meta, None).unwrap();
    let signed = snapshot::encode_to_vec(&w, &cutoffs, &meta, Some(&key)).unwrap();
    w.take_journal();
    for (jti, exp) in DELTA_REVOKED {
        w.insert(jti, *exp);
    }
    let journal = w.take_journal();
    assert!(
        !journal.layout_changed,
        "fixture delta must not change the layout"
    );
    let bob = (cutoff_key(&w, "bob"), NOW);
    let next = meta.next(NOW + 60);
    let mut delta = Vec::new();
    encode_delta(&w, &journal, &[bob], &next, None, &mut delta).unwrap();
    cutoffs.insert(bob.0, bob.1);
    let signed_gen2 = snapshot::encode_to_vec(&w, &cutoffs, &next, Some(&key)).unwrap();
    let mut signed_delta = Vec::new();
    encode_signed_delta(
        &w,
        &journal,
        &[bob],
        &next,
        &key,
        &signed_gen2,
        &mut signed_delta,
    )
    .unwrap();
    Fixtures {
        unsigned,
        signed,
        delta,
        signed_delta,
        signed_gen2,
    }
}

/// A fixture's file name and how to get its bytes from the built fixtures.
type FixtureFile = (&'static str, fn(&Fixtures) -> &Vec<u8>);

fn files() -> [FixtureFile; 4] {
    [
        ("v2-small-unsigned.snap", |f| &f.unsigned),
        ("v2-small-signed.snap", |f| &f.signed),
        ("v2-small-gen1-to-gen2.delta", |f| &f.delta),
        ("v2-small-gen1-to-gen2-signed.delta", |f| &f.signed_delta),
    ]
}

#[test]
fn reencoding_the_same_inputs_gives_the_fixture_bytes() {
    let built = build();
    let regen = std::env::var("REVBLOOM_REGEN_FIXTURES").is_ok_and(|v| v == "1");
    for (name, get) in files() {
        if regen {
            std::fs::write(data(name), get(&built)).unwrap();
        }
        let stored = std::fs::read(data(name)).unwrap();
        assert!(
            &stored == get(&built),
            "{name}: the encoder no longer produces the golden bytes; a format change needs a new version and new fixtures"
        );
    }
}

fn check_base(v: &SnapshotView<&[u8]>) {
    for (jti, exp) in REVOKED {
        assert_eq!(v.check(jti, *exp), Verdict::MaybeRevoked, "{jti}");
    }
    for (jti, exp) in ABSENT {
        assert_eq!(v.check(jti, *exp), Verdict::Clear, "{jti}");
    }
    assert_eq!(v.check("jti-alpha", Some(NOW - 3 * 3600)), Verdict::Expired);
    assert_eq!(v.generation(), 1);
    assert_eq!(v.created_at(), NOW);
    assert_eq!(v.entries(), REVOKED.len() as u64);
    let alice = CutoffKey::new(&v.hasher(), None, "sub", "alice");
    assert_eq!(v.cutoff(alice), Some(NOW - 60));
}

#[test]
fn v1_fixtures_decode_with_expected_verdicts() {
    fixtures_decode_with_expected_verdicts("v1");
}

#[test]
fn v2_fixtures_decode_with_expected_verdicts_and_bounds() {
    fixtures_decode_with_expected_verdicts("v2");
    let bytes = std::fs::read(data("v2-small-unsigned.snap")).unwrap();
    let v = SnapshotView::open(&bytes[..], &OpenOptions::new()).unwrap();
    assert_eq!(v.format_version(), 2);
    assert!(v.keys_on_jti_alone());
    assert_eq!(v.default_issuer(), Some(DEFAULT_ISS));
    let b = v.bounds();
    assert_eq!(
        (b.max_token_lifetime, b.leeway, b.max_clock_skew),
        (7 * 86_400, 60, 5)
    );
}

#[test]
fn v1_files_take_their_bounds_from_the_window() {
    let bytes = std::fs::read(data("v1-small-unsigned.snap")).unwrap();
    let v = SnapshotView::open(&bytes[..], &OpenOptions::new()).unwrap();
    assert_eq!(v.format_version(), 1);
    assert!(!v.keys_on_jti_alone());
    assert_eq!(v.default_issuer(), None);
    let b = v.bounds();
    assert_eq!(
        (b.max_token_lifetime, b.leeway, b.max_clock_skew),
        (24 * 3600, 60, 0)
    );
}

/// A signed delta carries the signature of the snapshot it produces: applying it to the signed
/// base gives the publisher's own signed generation, byte for byte, which reopens under the
/// publisher's key (a verifier's local copy stays verifiable).
#[test]
fn signed_delta_reproduces_the_signed_snapshot() {
    let built = build();
    let vk = SigningKey::from_bytes(&KEY_SEED).verifying_key();
    let strict = OpenOptions::new().verifying_key(vk);
    let base = SnapshotView::open(&built.signed[..], &strict).unwrap();
    let d = DeltaView::open(&built.signed_delta, &strict).unwrap();
    assert!(d.has_result_signature());
    let next = base.apply_delta(&d).unwrap();
    assert_eq!(next.as_bytes(), &built.signed_gen2[..]);
    let reopened = SnapshotView::open(next.as_bytes(), &strict).unwrap();
    assert_eq!(reopened.signature_status(), SignatureStatus::Verified);
    assert_eq!(reopened.generation(), 2);
    // The unsigned base gives the same signed bytes: only the delta's contents matter.
    let unsigned_base = SnapshotView::open(&built.unsigned[..], &OpenOptions::new()).unwrap();
    assert_eq!(
        unsigned_base.apply_delta(&d).unwrap().as_bytes(),
        &built.signed_gen2[..]
    );
    // A tampered result signature leaves a file that no longer verifies.
    let mut bad = built.signed_delta.clone();
    let sig_at = bad.len() - 8 - 64 - 64;
    bad[sig_at] ^= 1;
    let sum_at = bad.len() - 64 - 8;
    let sum = xxhash_rust::xxh3::xxh3_64(&bad[..sum_at]); // the checksum trailer
    bad[sum_at..sum_at + 8].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(
        DeltaView::open(&bad, &OpenOptions::new()).unwrap_err(),
        revbloom::DeltaError::SignatureNotChecked
    );
    let d = DeltaView::open(&bad, &OpenOptions::new().skip_signature_check()).unwrap();
    let forged = base.apply_delta(&d).unwrap();
    assert!(SnapshotView::open(forged.as_bytes(), &strict).is_err());
}

fn fixtures_decode_with_expected_verdicts(version: &str) {
    let file = |kind: &str| data(&format!("{version}-small-{kind}"));
    let unsigned = std::fs::read(file("unsigned.snap")).unwrap();
    let v = SnapshotView::open(&unsigned[..], &OpenOptions::new()).unwrap();
    assert_eq!(v.signature_status(), SignatureStatus::Unsigned);
    check_base(&v);

    let signed = std::fs::read(file("signed.snap")).unwrap();
    let vk = SigningKey::from_bytes(&KEY_SEED).verifying_key();
    let s = SnapshotView::open(&signed[..], &OpenOptions::new().verifying_key(vk)).unwrap();
    assert_eq!(s.signature_status(), SignatureStatus::Verified);
    check_base(&s);

    let delta = std::fs::read(file("gen1-to-gen2.delta")).unwrap();
    let d = DeltaView::open(&delta, &OpenOptions::new()).unwrap();
    assert_eq!((d.parent(), d.generation(), d.revocations()), (1, 2, 3));
    for base in [&v, &s] {
        let next = base.apply_delta(&d).unwrap();
        assert_eq!(next.generation(), 2);
        assert_eq!(next.signature_status(), SignatureStatus::Unsigned);
        for (jti, exp) in REVOKED.iter().chain(DELTA_REVOKED) {
            assert_eq!(next.check(jti, *exp), Verdict::MaybeRevoked, "{jti}");
        }
        for (jti, exp) in ABSENT {
            assert_eq!(next.check(jti, *exp), Verdict::Clear, "{jti}");
        }
        let bob = CutoffKey::new(&next.hasher(), None, "sub", "bob");
        assert_eq!(next.cutoff(bob), Some(NOW));
    }
}

/// The sealed fixture is `v2-small-unsigned.snap` sealed under the key of 32 bytes `0x42`
/// (FORMAT.md §6); the spec-only Python reader unseals the same file.
#[test]
fn sealed_fixture_unseals_to_the_unsigned_snapshot() {
    use revbloom::snapshot::{SealKey, SnapshotError};
    let sealed = std::fs::read(data("v2-small-unsigned.sealed")).unwrap();
    let key = SealKey::from_bytes([0x42; 32]);
    let plain = std::fs::read(data("v2-small-unsigned.snap")).unwrap();
    assert_eq!(snapshot::sealed_key_id(&sealed), Some(key.key_id()));
    assert_eq!(
        snapshot::unseal(&sealed, &[SealKey::from_bytes([0; 32]), key.clone()]).unwrap(),
        plain
    );
    assert_eq!(
        SnapshotView::open(&sealed[..], &OpenOptions::new()).unwrap_err(),
        SnapshotError::Sealed {
            key_id: key.key_id()
        }
    );
    let view = SnapshotView::open_owned(sealed, &OpenOptions::new().seal_key(key)).unwrap();
    assert_eq!(view.as_bytes(), &plain[..]);
}
