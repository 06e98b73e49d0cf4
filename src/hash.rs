//! Keyed hashing of revocation keys.
//!
//! A key is a token's `jti`, optionally qualified by its issuer. It is hashed once with xxh3
//! seeded by the window's secret seed; everything downstream (bucket block, probe bits, delta
//! records) is derived from that one 64-bit [`KeyHash`], so the raw key is never needed twice.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The 64-bit keyed hash of one revocation key. Everything a filter does with a key it does
/// with this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub u64);

/// Hashes keys with xxh3 under a secret 64-bit seed.
///
/// The seed is chosen at random when a window is created and is stored in its snapshots;
/// without it an attacker cannot aim keys at one block. Issuer-qualified keys hash the `jti`
/// under a seed derived from the issuer, so `("a", "bc")` and `("ab", "c")` never meet and two
/// issuers' `jti` spaces are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    /// A hasher with the given seed.
    pub const fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The seed (stored in snapshot headers).
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// Hash a bare `jti`.
    #[inline]
    pub fn hash(&self, jti: impl AsRef<[u8]>) -> KeyHash {
        KeyHash(xxh3_64_with_seed(jti.as_ref(), self.seed))
    }

    /// Hash a `jti` qualified by its issuer (`iss`). Use this whenever tokens of more than one
    /// issuer reach the same filter.
    #[inline]
    pub fn hash_issued(&self, iss: impl AsRef<[u8]>, jti: impl AsRef<[u8]>) -> KeyHash {
        self.issuer(iss).hash(jti)
    }

    /// A hasher for one issuer's keys: `self.issuer(iss).hash(jti) == self.hash_issued(iss, jti)`.
    /// Compute it once per configured issuer to hash each token's `jti` only once.
    #[inline]
    pub fn issuer(&self, iss: impl AsRef<[u8]>) -> KeyHasher {
        // The issuer's hash under our seed becomes the seed for its jti space. Mixing with a
        // constant keeps the issuer-derived seed distinct from the bare seed itself.
        let derived = xxh3_64_with_seed(iss.as_ref(), self.seed) ^ 0x9e37_79b9_7f4a_7c15;
        KeyHasher { seed: derived }
    }
}

/// The form of an issuer identifier that keys revocations and cutoffs: trailing `/`
/// characters removed, so `https://idp.example/` and `https://idp.example` are one issuer on
/// both sides. (Merging them can only make more tokens revoked, never fewer.)
pub fn normalize_issuer(iss: &str) -> &str {
    iss.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_lose_trailing_slashes() {
        assert_eq!(normalize_issuer("https://idp/"), "https://idp");
        assert_eq!(normalize_issuer("https://idp//"), "https://idp");
        assert_eq!(normalize_issuer("https://idp"), "https://idp");
        assert_eq!(normalize_issuer("/"), "");
    }

    #[test]
    fn issuer_qualification_separates_jti_spaces() {
        let h = KeyHasher::new(7);
        assert_ne!(h.hash_issued("a", "bc"), h.hash_issued("ab", "c"));
        assert_ne!(h.hash_issued("a", "x"), h.hash("x"));
        assert_eq!(h.issuer("iss").hash("j"), h.hash_issued("iss", "j"));
    }

    #[test]
    fn seed_changes_hash() {
        assert_ne!(KeyHasher::new(1).hash("jti"), KeyHasher::new(2).hash("jti"));
    }
}
