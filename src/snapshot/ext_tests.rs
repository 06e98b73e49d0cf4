//! The extension-section rules, on the v2 golden fixture re-sealed around hand-made records:
//! only these tests need to rewrite offsets, the layout id and the checksum, so they live
//! where the format's internals are visible.

use super::format::{self as f, off, LayoutDigest};
use super::{OpenOptions, SnapshotView};

/// The golden fixtures' default issuer.
const DEFAULT_ISS: &str = "https://idp.example";

/// The v2 unsigned fixture with its extension section replaced by `ext`, re-sealed (layout id,
/// offsets, checksum recomputed) so that only the extension rules can reject it.
fn with_extensions(ext: &[u8]) -> Vec<u8> {
    let base = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/v2-small-unsigned.snap"
    ))
    .unwrap();
    let ext_offset = f::u64_at(&base, off::EXT_OFFSET).unwrap() as usize;
    let mut out = base[..ext_offset].to_vec();
    out.extend_from_slice(ext);
    out[off::EXT_LEN..off::EXT_LEN + 4].copy_from_slice(&(ext.len() as u32).to_le_bytes());
    let trailer = out.len() as u64;
    f::put_u64(&mut out, off::TRAILER_OFFSET, trailer);
    let mut layout = LayoutDigest::new_v2(
        &out[off::SEED..off::GENERATION],
        &out[off::MAX_TOKEN_LIFETIME..off::EXT_OFFSET],
        ext,
        f::u64_at(&out, off::OLDEST).unwrap(),
    );
    let count = f::u32_at(&out, off::BUCKET_COUNT).unwrap() as usize;
    for i in 0..count {
        let at = f::HEADER_BYTES + i * f::DIR_ENTRY_BYTES;
        layout.bucket(
            f::u64_at(&out, at + f::dir::NUMBER).unwrap(),
            f::u32_at(&out, at + f::dir::BLOCKS).unwrap(),
        );
    }
    f::put_u64(&mut out, off::LAYOUT_ID, layout.finish());
    let sum = f::checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn record(ty: u16, flags: u16, value: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&ty.to_le_bytes());
    r.extend_from_slice(&flags.to_le_bytes());
    r.extend_from_slice(&(value.len() as u32).to_le_bytes());
    r.extend_from_slice(value);
    r.resize(r.len().div_ceil(8) * 8, 0);
    r
}

#[test]
fn extension_records_follow_their_rules() {
    let open = |ext: &[u8]| SnapshotView::open(with_extensions(ext), &OpenOptions::new());
    let iss = record(1, 1, DEFAULT_ISS.as_bytes());
    // The re-sealing itself is faithful: the fixture's own section opens.
    assert_eq!(open(&iss).unwrap().default_issuer(), Some(DEFAULT_ISS));
    assert_eq!(open(&[]).unwrap().default_issuer(), None);
    // An unknown record a reader may skip is skipped; an unknown critical one is refused.
    let skippable = [iss.clone(), record(7, 0, b"later")].concat();
    assert_eq!(
        open(&skippable).unwrap().default_issuer(),
        Some(DEFAULT_ISS)
    );
    assert!(open(&[iss.clone(), record(7, 1, b"later")].concat()).is_err());
    // Types strictly increasing; reserved flag bits refused.
    assert!(open(&[record(7, 0, b""), iss.clone()].concat()).is_err());
    assert!(open(&[iss.clone(), iss.clone()].concat()).is_err());
    assert!(open(&record(1, 1 | 2, DEFAULT_ISS.as_bytes())).is_err());
    // The default issuer must be critical, normalised, non-empty UTF-8.
    assert!(open(&record(1, 0, DEFAULT_ISS.as_bytes())).is_err());
    assert!(open(&record(1, 1, b"https://idp.example/")).is_err());
    assert!(open(&record(1, 1, b"")).is_err());
    assert!(open(&record(1, 1, &[0xff, 0xfe])).is_err());
    // Lengths that run past the section, and non-zero padding.
    let mut long = record(1, 1, DEFAULT_ISS.as_bytes());
    long[4..8].copy_from_slice(&1000u32.to_le_bytes());
    assert!(open(&long).is_err());
    let mut padded = record(1, 1, b"https://i");
    *padded.last_mut().unwrap() = 1;
    assert!(open(&padded).is_err());
    assert!(open(&[0u8; 4]).is_err());
}

/// A cutoff-claims value: each name as a `u8` length and its bytes.
fn names(list: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for n in list {
        v.push(n.len() as u8);
        v.extend_from_slice(n.as_bytes());
    }
    v
}

#[test]
fn cutoff_claims_records_follow_their_rules() {
    let open = |ext: &[u8]| SnapshotView::open(with_extensions(ext), &OpenOptions::new());
    let iss = record(1, 1, DEFAULT_ISS.as_bytes());
    let with = |value: &[u8], flags: u16| [iss.clone(), record(2, flags, value)].concat();
    let view = open(&with(&names(&["jti", "sid", "sub"]), 1)).unwrap();
    let listed: Vec<&str> = view.cutoff_claims().iter().map(|c| &**c).collect();
    assert_eq!(listed, ["jti", "sid", "sub"]);
    // What the writer produces for the same list is byte for byte what the reader accepts.
    assert_eq!(
        f::extensions(Some(DEFAULT_ISS), &["jti", "sid", "sub"]),
        with(&names(&["jti", "sid", "sub"]), 1)
    );
    assert!(open(&iss).unwrap().cutoff_claims().is_empty());
    let long = "x".repeat(64);
    assert!(open(&with(&names(&[&long]), 1)).is_ok());
    let nine = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for (why, ext) in [
        ("not critical", with(&names(&["sub"]), 0)),
        ("unsorted", with(&names(&["sub", "sid"]), 1)),
        ("repeated", with(&names(&["sub", "sub"]), 1)),
        ("empty", with(&[], 1)),
        ("empty name", with(&[0], 1)),
        ("name past the value", with(&[4, b's', b'u', b'b'], 1)),
        ("name over 64 bytes", with(&names(&[&"x".repeat(65)]), 1)),
        ("not UTF-8", with(&[2, 0xff, 0xfe], 1)),
        ("nine names", with(&names(&nine), 1)),
    ] {
        assert!(open(&ext).is_err(), "{why} accepted");
    }
    assert!(open(&with(&names(&nine[..8]), 1)).is_ok());
}
