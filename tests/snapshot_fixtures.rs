//! Golden fixtures in `tests/data/`: the current code must still read them with the expected
//! verdicts, and re-encoding the same inputs must give the same bytes, so a format change
//! cannot slip in unnoticed. Fixtures are never edited: a new format version adds new files.
//!
//! Regenerate (only when deliberately adding a fixture):
//! `REVBLOOM_REGEN_FIXTURES=1 cargo test --test snapshot_fixtures`

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use revbloom::delta::{encode_delta, DeltaView};
use revbloom::snapshot::{self, OpenOptions, SignatureStatus, SnapshotMeta, SnapshotView};
use revbloom::{CutoffKey, CutoffSet, Verdict, Window, WindowConfig};

const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
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
}

fn cutoff_key(w: &Window, sub: &str) -> CutoffKey {
    CutoffKey::new(w.hasher(), None, "sub", sub)
}

/// The deterministic inputs every fixture is built from.
fn build() -> Fixtures {
    let config = WindowConfig::default()
        .bucket_width(Duration::from_secs(3600))
        .horizon(Duration::from_secs(24 * 3600))
        .expected_per_bucket(64)
        .fp_rate(0.001);
    let mut w = Window::with_seed(config, NOW, SEED).unwrap();
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
    let mut delta = Vec::new();
    encode_delta(&w, &journal, &[bob], &meta.next(NOW + 60), None, &mut delta).unwrap();
    Fixtures {
        unsigned,
        signed,
        delta,
    }
}

/// A fixture's file name and how to get its bytes from the built fixtures.
type FixtureFile = (&'static str, fn(&Fixtures) -> &Vec<u8>);

fn files() -> [FixtureFile; 3] {
    [
        ("v1-small-unsigned.snap", |f| &f.unsigned),
        ("v1-small-signed.snap", |f| &f.signed),
        ("v1-small-gen1-to-gen2.delta", |f| &f.delta),
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
fn fixtures_decode_with_expected_verdicts() {
    let unsigned = std::fs::read(data("v1-small-unsigned.snap")).unwrap();
    let v = SnapshotView::open(&unsigned[..], &OpenOptions::new()).unwrap();
    assert_eq!(v.signature_status(), SignatureStatus::Unsigned);
    check_base(&v);

    let signed = std::fs::read(data("v1-small-signed.snap")).unwrap();
    let vk = SigningKey::from_bytes(&KEY_SEED).verifying_key();
    let s = SnapshotView::open(&signed[..], &OpenOptions::new().verifying_key(vk)).unwrap();
    assert_eq!(s.signature_status(), SignatureStatus::Verified);
    check_base(&s);

    let delta = std::fs::read(data("v1-small-gen1-to-gen2.delta")).unwrap();
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
