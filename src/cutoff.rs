//! Claim cutoffs: "every token whose claim `C` equals `V` and was issued before `T` is revoked".
//!
//! Logout-everywhere and password changes cut off a `sub`; OIDC back-channel logout cuts off a
//! `sid`. Unlike jti revocations these are kept exactly, as a small map from a keyed 64-bit
//! fingerprint of `(iss, claim, value)` to the cutoff time `T`, checked against the token's
//! `iat`. A token issued at or after `T` (the user logged in again) passes without any lookup.

use std::collections::HashMap;

use crate::hash::KeyHasher;

/// The claim cut off when none is named.
pub const DEFAULT_CLAIM: &str = "sub";

/// The claim a revocation without `exp` is kept under: a cutoff on the token's own `jti`
/// revokes that one token whatever its `exp` (see `docs/DESIGN.md`, "Revoking by `jti` alone").
pub const JTI_CLAIM: &str = "jti";

/// Most distinct claims one snapshot can hold cutoffs for (the snapshot lists them, and a
/// verifier checks every one a token carries).
pub const MAX_SNAPSHOT_CLAIMS: usize = 8;

/// Longest cutoff claim name, in bytes.
pub const MAX_CLAIM_NAME_BYTES: usize = 64;

/// Why a claim cannot hold cutoffs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimNameError {
    /// The name is empty or longer than [`MAX_CLAIM_NAME_BYTES`].
    #[error(
        "claim name of {len} bytes: a cutoff claim name has 1 to {MAX_CLAIM_NAME_BYTES} bytes"
    )]
    Length {
        /// The name's length in bytes.
        len: usize,
    },
    /// A snapshot already lists [`MAX_SNAPSHOT_CLAIMS`] other claims.
    #[error(
        "cutoffs exist for {MAX_SNAPSHOT_CLAIMS} claims already; a snapshot lists at most \
         {MAX_SNAPSHOT_CLAIMS}, so cutoffs on {name:?} are refused until those of another claim \
         expire"
    )]
    TooMany {
        /// The claim refused.
        name: String,
    },
}

/// Bytes of one cutoff record in a sorted table: fingerprint, then cutoff time, both `u64`
/// little-endian.
pub const RECORD_BYTES: usize = 16;

/// Domain separation, so a cutoff fingerprint and a jti hash never share a seed derivation.
const CUTOFF_DOMAIN: u64 = 0x6375_746f_6666_2e31; // "cutoff.1"

/// The keyed fingerprint of one `(iss, claim, value)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CutoffKey(pub u64);

impl CutoffKey {
    /// Fingerprint `claim = value` (for tokens of issuer `iss`, when issuers are configured)
    /// under the window's hasher.
    pub fn new(
        hasher: &KeyHasher,
        iss: Option<&[u8]>,
        claim: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Self {
        let base = match iss {
            Some(iss) => hasher.issuer(iss),
            None => *hasher,
        };
        let claim_space = KeyHasher::new(base.seed() ^ CUTOFF_DOMAIN).issuer(claim);
        CutoffKey(claim_space.hash(value).0)
    }
}

/// Whether a cutoff at `before` revokes a token issued at `iat`. A token without `iat` cannot
/// prove it was issued after the cutoff, so it is revoked.
#[inline]
pub fn revokes(before: u64, iat: Option<u64>) -> bool {
    match iat {
        Some(iat) => iat < before,
        None => true,
    }
}

/// The builder-side set of cutoffs (publisher, CLI).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutoffSet {
    map: HashMap<CutoffKey, u64>,
}

impl CutoffSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a cutoff; a later cutoff for the same key replaces an earlier one (it revokes a
    /// superset), an earlier one is ignored. Returns whether the set changed.
    pub fn insert(&mut self, key: CutoffKey, before: u64) -> bool {
        match self.map.get_mut(&key) {
            Some(b) if *b >= before => false,
            Some(b) => {
                *b = before;
                true
            }
            None => {
                self.map.insert(key, before);
                true
            }
        }
    }

    /// The cutoff time for `key`, if any.
    pub fn get(&self, key: CutoffKey) -> Option<u64> {
        self.map.get(&key).copied()
    }

    /// Drop cutoffs that can no longer affect a live token: every token issued before
    /// `before` expired by `before + lifetime`, where `lifetime` is the window's horizon plus
    /// leeway. Returns how many were dropped.
    pub fn prune(&mut self, now: u64, lifetime: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, b| b.saturating_add(lifetime) >= now);
        before - self.map.len()
    }

    /// Number of cutoffs.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All cutoffs sorted by fingerprint: the order of the snapshot's cutoff table.
    pub fn sorted(&self) -> Vec<(CutoffKey, u64)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, b)| (*k, *b)).collect();
        v.sort_unstable();
        v
    }
}

/// Look `key` up in a table of [`RECORD_BYTES`]-byte records sorted by fingerprint (the
/// snapshot layout), by binary search: no allocation, `O(log n)`. A table whose length is not
/// a whole number of records is searched over its whole records only.
pub fn find_in_table(table: &[u8], key: CutoffKey) -> Option<u64> {
    let n = table.len() / RECORD_BYTES;
    let read = |i: usize, off: usize| -> Option<u64> {
        let start = i.checked_mul(RECORD_BYTES)?.checked_add(off)?;
        let bytes = table.get(start..start.checked_add(8)?)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        Some(u64::from_le_bytes(b))
    };
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let fp = read(mid, 0)?;
        match fp.cmp(&key.0) {
            std::cmp::Ordering::Equal => return read(mid, 8),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_issuer_claim_and_value() {
        let h = KeyHasher::new(9);
        let k = |iss: Option<&[u8]>, c: &str, v: &str| CutoffKey::new(&h, iss, c, v);
        assert_ne!(k(None, "sub", "alice"), k(None, "sid", "alice"));
        assert_ne!(k(None, "sub", "alice"), k(Some(b"iss"), "sub", "alice"));
        assert_ne!(k(None, "sub", "alice"), k(None, "sub", "bob"));
        assert_ne!(k(None, "su", "balice"), k(None, "sub", "alice"));
        assert_ne!(k(None, "sub", "alice").0, h.hash("alice").0);
    }

    #[test]
    fn later_cutoff_wins_and_iat_decides() {
        let mut s = CutoffSet::new();
        let key = CutoffKey(1);
        assert!(s.insert(key, 100));
        assert!(!s.insert(key, 50));
        assert!(s.insert(key, 200));
        assert_eq!(s.get(key), Some(200));
        assert!(revokes(200, Some(199)));
        assert!(!revokes(200, Some(200)));
        assert!(revokes(200, None));
    }

    #[test]
    fn prune_keeps_cutoffs_that_can_still_matter() {
        let mut s = CutoffSet::new();
        s.insert(CutoffKey(1), 1_000);
        s.insert(CutoffKey(2), 5_000);
        assert_eq!(s.prune(2_000, 1_000), 0);
        assert_eq!(s.prune(2_001, 1_000), 1);
        assert_eq!(s.get(CutoffKey(2)), Some(5_000));
    }

    #[test]
    fn sorted_table_lookup() {
        let mut s = CutoffSet::new();
        for i in 0..100u64 {
            s.insert(CutoffKey(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), i + 1);
        }
        let mut table = Vec::new();
        for (k, b) in s.sorted() {
            table.extend_from_slice(&k.0.to_le_bytes());
            table.extend_from_slice(&b.to_le_bytes());
        }
        for i in 0..100u64 {
            let k = CutoffKey(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(find_in_table(&table, k), Some(i + 1));
        }
        assert_eq!(find_in_table(&table, CutoffKey(12345)), None);
        assert_eq!(
            find_in_table(&table[..table.len() - 3], CutoffKey(12345)),
            None
        );
        assert_eq!(find_in_table(&[], CutoffKey(1)), None);
    }
}
