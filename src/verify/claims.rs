//! One parse of the payload for both the caller's claims and the revocation claims.
//!
//! jsonwebtoken deserializes the payload into the caller's type `C`. Parsing it a second time
//! for `jti`, `iss`, `iat`, `exp` and the cutoff claims would cost as much as the revocation
//! check itself, so [`Captured<C>`] wraps the map the JSON parser hands to `C` and copies the
//! few entries the verifier needs on the way through; every other entry goes straight to `C`.
//!
//! The cutoff claim names are configured at run time but `Deserialize` has no context
//! parameter, so the verifier lends them through a thread-local just before decoding (the
//! decode runs synchronously on that thread).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use serde::de::value::{
    BorrowedStrDeserializer, MapAccessDeserializer, StrDeserializer, StringDeserializer,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::cutoff::same_claim;

/// Most claims a verifier can be configured to check cutoffs on, besides those the snapshot
/// lists. (The captured values are kept inline; a small bound keeps the per-token struct
/// small.)
pub const MAX_CUTOFF_CLAIMS: usize = 4;

/// Most claims captured in one decode: the configured ones and those a snapshot lists.
pub(crate) const MAX_CAPTURED: usize = MAX_CUTOFF_CLAIMS + crate::cutoff::MAX_SNAPSHOT_CLAIMS;

thread_local! {
    /// The cutoff claim names lent to the deserializer.
    static CUTOFF_NAMES: RefCell<Rc<[Box<str>]>> = RefCell::new(Rc::from(Vec::new()));
}

/// Make `names` the cutoff claims captured by the next decode on this thread, and return the
/// list lent. Cheap (a comparison of a few short strings) when the last decode on this thread
/// captured the same names.
pub(crate) fn lend_cutoff_names<'a>(
    names: impl Iterator<Item = &'a str> + Clone,
) -> Rc<[Box<str>]> {
    CUTOFF_NAMES.with_borrow_mut(|list| {
        let mut lent = names.clone();
        let same = list
            .iter()
            .all(|n| lent.next().is_some_and(|m| same_claim(n, m)))
            && lent.next().is_none();
        if !same {
            *list = names.map(Box::from).collect();
        }
        Rc::clone(list)
    })
}

/// The claims revocation needs, as found in the payload.
///
/// The captured texts (`jti`, `iss`, the cutoff claims) lie back to back in one buffer, so a
/// token costs one allocation however many claims it carries; they are only hashed and
/// compared, never handed out one by one.
#[derive(Debug, Default, Clone)]
pub(crate) struct RevClaims {
    /// Every captured text, back to back.
    text: String,
    jti: Option<Span>,
    iss: Option<Span>,
    /// `iss` was present but not a string (jsonwebtoken accepts an array).
    pub iss_not_string: bool,
    /// `iat`, if a non-negative number (fractions dropped).
    pub iat: Option<u64>,
    /// `exp`, if a non-negative number (fractions rounded, as jsonwebtoken does).
    pub exp: Option<u64>,
    /// Cutoff texts of the cutoff claims (strings, or numbers and booleans in canonical
    /// text), by index in the configured list.
    cutoffs: [Option<Span>; MAX_CAPTURED],
}

/// Where one captured text lies in [`RevClaims::text`] (32-bit offsets keep the struct,
/// which moves through the decode by value, small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// The captured texts would pass 4 GiB: the token is refused rather than a claim left out.
#[derive(Debug)]
struct TooLong;

/// Room for the texts of a typical token (a UUID `jti`, an issuer URL, three short claims)
/// in the buffer's first and only allocation.
const TEXT_CAPACITY: usize = 160;

impl RevClaims {
    /// `jti`, if a string.
    pub fn jti(&self) -> Option<&str> {
        self.get(self.jti)
    }

    /// `iss`, if a string.
    pub fn iss(&self) -> Option<&str> {
        self.get(self.iss)
    }

    /// The cutoff texts, by index in the list the decode captured.
    pub fn cutoffs(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        self.cutoffs.iter().map(|s| self.get(*s))
    }

    fn get(&self, span: Option<Span>) -> Option<&str> {
        let Span { start, end } = span?;
        let text = self.text.get(start as usize..end as usize);
        debug_assert!(text.is_some(), "every span is one this buffer handed out");
        text
    }

    /// Append `s` to the buffer and return where it lies.
    fn append(&mut self, s: &str) -> Result<Span, TooLong> {
        self.append_with(|t| t.push_str(s))
    }

    /// Append `v`'s text (a number) to the buffer and return where it lies.
    fn append_display(&mut self, v: impl fmt::Display) -> Result<Span, TooLong> {
        use std::fmt::Write as _;
        // Writing to a `String` only fails if `v`'s `Display` does; numbers' never do.
        self.append_with(|t| {
            let _ = write!(t, "{v}");
        })
    }

    fn append_with(&mut self, write: impl FnOnce(&mut String)) -> Result<Span, TooLong> {
        if self.text.capacity() == 0 {
            self.text.reserve(TEXT_CAPACITY);
        }
        let start = self.text.len();
        write(&mut self.text);
        let offset = |n: usize| u32::try_from(n).map_err(|_| TooLong);
        Ok(Span {
            start: offset(start)?,
            end: offset(self.text.len())?,
        })
    }
}

impl PartialEq for RevClaims {
    fn eq(&self, other: &Self) -> bool {
        self.jti() == other.jti()
            && self.iss() == other.iss()
            && self.iss_not_string == other.iss_not_string
            && self.iat == other.iat
            && self.exp == other.exp
            && self.cutoffs().eq(other.cutoffs())
    }
}

/// The caller's claims and the revocation claims from one parse.
pub(crate) struct Captured<C> {
    pub claims: C,
    pub rev: RevClaims,
}

impl<'de, C: Deserialize<'de>> Deserialize<'de> for Captured<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CapturedVisitor(PhantomData))
    }
}

struct CapturedVisitor<C>(PhantomData<C>);

impl<'de, C: Deserialize<'de>> Visitor<'de> for CapturedVisitor<C> {
    type Value = Captured<C>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        // A stable copy of the list for this parse, even if `C` itself decodes a token.
        let names = CUTOFF_NAMES.with_borrow(Rc::clone);
        let mut tee = Tee {
            inner: map,
            names,
            rev: RevClaims::default(),
            pending: Pending::default(),
            seen: 0,
        };
        let claims = C::deserialize(MapAccessDeserializer::new(&mut tee))?;
        // `C` may stop before the end (a custom visitor); the rest must still be seen.
        while tee.next_key::<IgnoredAny>()?.is_some() {
            tee.next_value::<IgnoredAny>()?;
        }
        Ok(Captured {
            claims,
            rev: tee.rev,
        })
    }
}

/// What the current entry is copied into.
#[derive(Default, Clone, Copy)]
struct Pending {
    fixed: Option<Fixed>,
    cutoff: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fixed {
    Jti = 0,
    Iss = 1,
    Iat = 2,
    Exp = 3,
}

struct Tee<A> {
    inner: A,
    names: Rc<[Box<str>]>,
    rev: RevClaims,
    pending: Pending,
    /// Bits of captured claims already seen: 0..4 fixed, 4.. cutoffs.
    seen: u32,
}

impl<A> Tee<A> {
    fn classify(&self, key: &str) -> Pending {
        let fixed = match key {
            "jti" => Some(Fixed::Jti),
            "iss" => Some(Fixed::Iss),
            "iat" => Some(Fixed::Iat),
            "exp" => Some(Fixed::Exp),
            _ => None,
        };
        let cutoff = self
            .names
            .iter()
            .take(MAX_CAPTURED)
            .position(|n| same_claim(n, key));
        Pending { fixed, cutoff }
    }

    fn capture(&mut self, v: &Scalar<'_>) -> Result<(), TooLong> {
        let p = self.pending;
        let rev = &mut self.rev;
        if let Some(f) = p.fixed {
            match f {
                Fixed::Jti => rev.jti = v.as_str().map(|s| rev.append(s)).transpose()?,
                Fixed::Iss => {
                    rev.iss = v.as_str().map(|s| rev.append(s)).transpose()?;
                    rev.iss_not_string = rev.iss.is_none();
                }
                Fixed::Iat => rev.iat = v.as_secs(),
                Fixed::Exp => rev.exp = v.as_exp(),
            }
        }
        if let Some(i) = p.cutoff {
            let span = v.claim_text(rev)?;
            if let Some(slot) = rev.cutoffs.get_mut(i) {
                *slot = span;
            }
        }
        Ok(())
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Tee<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(Key(key)) = self.inner.next_key::<Key<'de>>()? else {
            return Ok(None);
        };
        self.pending = self.classify(&key);
        let mut bits = 0u32;
        if let Some(f) = self.pending.fixed {
            bits |= 1 << (f as u32);
        }
        if let Some(i) = self.pending.cutoff {
            bits |= 1 << (4 + i as u32);
        }
        if self.seen & bits != 0 {
            // Two values for one claim: the validator and we might read different ones.
            return Err(de::Error::custom(format_args!("duplicate claim `{key}`")));
        }
        self.seen |= bits;
        match key {
            Cow::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::new(k)).map(Some),
            Cow::Owned(k) => seed.deserialize(StrDeserializer::new(&k)).map(Some),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        if self.pending.fixed.is_none() && self.pending.cutoff.is_none() {
            return self.inner.next_value_seed(seed);
        }
        let v: Scalar<'de> = self.inner.next_value()?;
        // Copy first, then move the value on to `C`.
        self.capture(&v)
            .map_err(|TooLong| de::Error::custom("captured claims longer than 4 GiB"))?;
        self.pending = Pending::default();
        v.replay(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The value of a captured claim, kept so it can be handed on to `C` unchanged.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    Other(serde_json::Value),
}

impl Scalar<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `exp` as jsonwebtoken validates it: a fraction rounds to the nearest second
    /// ([`canonical_exp`](crate::bounds::canonical_exp)), so the bucket probed is the one the
    /// publisher filed the revocation in.
    fn as_exp(&self) -> Option<u64> {
        match *self {
            Scalar::F64(f) => crate::bounds::canonical_exp(f),
            _ => self.as_secs(),
        }
    }

    /// The text a cutoff on this claim value is keyed by, appended to `rev`'s buffer: a string
    /// as is, a number in its canonical decimal form (`42` and `42.0` are `"42"`, as an
    /// operator types it), a boolean as `true`/`false`. Objects, arrays and null have no
    /// cutoff text.
    fn claim_text(&self, rev: &mut RevClaims) -> Result<Option<Span>, TooLong> {
        let span = match self {
            Scalar::Str(s) => rev.append(s),
            Scalar::U64(n) => rev.append_display(n),
            Scalar::I64(n) => rev.append_display(n),
            Scalar::F64(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                rev.append_display(*f as i64)
            }
            Scalar::F64(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => rev.append_display(n),
                None => return Ok(None),
            },
            Scalar::Bool(b) => rev.append(if *b { "true" } else { "false" }),
            _ => return Ok(None),
        };
        span.map(Some)
    }

    /// A NumericDate as whole seconds, fractions dropped (`iat`: an earlier issue time can only
    /// make a cutoff revoke more); negative, non-finite or non-numeric gives `None`.
    fn as_secs(&self) -> Option<u64> {
        match *self {
            Scalar::U64(n) => Some(n),
            Scalar::I64(n) => u64::try_from(n).ok(),
            // `as` saturates at u64::MAX for huge values, which is what an expiry wants.
            Scalar::F64(f) if f.is_finite() && f >= 0.0 => Some(f as u64),
            _ => None,
        }
    }
}

impl<'de> Scalar<'de> {
    fn replay<V: DeserializeSeed<'de>, E: de::Error>(self, seed: V) -> Result<V::Value, E> {
        seed.deserialize(Replay(self, PhantomData))
    }
}

/// Hands a captured value on to `C` as the JSON parser would have: `Option` fields see
/// `Some`/`None`, strings can name enum variants, everything else goes through `any`.
struct Replay<'de, E>(Scalar<'de>, PhantomData<E>);

impl<'de, E: de::Error> Deserializer<'de> for Replay<'de, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Scalar::Str(Cow::Borrowed(s)) => visitor.visit_borrowed_str(s),
            Scalar::Str(Cow::Owned(s)) => visitor.visit_string(s),
            Scalar::U64(n) => visitor.visit_u64(n),
            Scalar::I64(n) => visitor.visit_i64(n),
            Scalar::F64(n) => visitor.visit_f64(n),
            Scalar::Bool(b) => visitor.visit_bool(b),
            Scalar::Null => visitor.visit_unit(),
            Scalar::Other(v) => v.deserialize_any(visitor).map_err(E::custom),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Scalar::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        match self.0 {
            Scalar::Str(Cow::Borrowed(s)) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
            Scalar::Str(Cow::Owned(s)) => visitor.visit_enum(StringDeserializer::new(s)),
            Scalar::Other(v) => v
                .deserialize_enum(name, variants, visitor)
                .map_err(E::custom),
            other => Replay(other, PhantomData).deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a claim value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Scalar<'de>, M::Error> {
                serde_json::Value::deserialize(MapAccessDeserializer::new(m)).map(Scalar::Other)
            }
            fn visit_seq<S: de::SeqAccess<'de>>(self, s: S) -> Result<Scalar<'de>, S::Error> {
                serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(s))
                    .map(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Sid {
        Alpha,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct User {
        sub: String,
        sid: Option<Sid>,
        iat: Option<f64>,
        jti: Option<String>,
        #[serde(default)]
        roles: Vec<String>,
        exp: f64,
    }

    fn parse<C: serde::de::DeserializeOwned>(json: &str, names: &[&str]) -> (C, RevClaims) {
        lend_cutoff_names(names.iter().copied());
        let c: Captured<C> = serde_json::from_str(json).unwrap();
        (c.claims, c.rev)
    }

    #[test]
    fn one_parse_feeds_both() {
        let json = r#"{"sub":"alice","jti":"j-1","roles":["a","b"],"exp":1.5e9,"iat":1400000000.7,
                      "iss":"https://i","sid":"alph\u0061","nested":{"x":[1,2]}}"#;
        let (u, rev): (User, _) = parse(json, &["sub", "sid"]);
        assert_eq!(u.sid, Some(Sid::Alpha));
        assert_eq!(u.iat, Some(1_400_000_000.7));
        assert_eq!(u.sub, "alice");
        assert_eq!(u.jti.as_deref(), Some("j-1"));
        assert_eq!(u.roles, vec!["a", "b"]);
        assert_eq!(u.exp, 1.5e9);
        assert_eq!(rev.jti(), Some("j-1"));
        assert_eq!(rev.iss(), Some("https://i"));
        assert_eq!(rev.exp, Some(1_500_000_000));
        assert_eq!(rev.iat, Some(1_400_000_000));
        let cutoffs: Vec<_> = rev.cutoffs().take(3).collect();
        assert_eq!(cutoffs, [Some("alice"), Some("alpha"), None]);
    }

    #[test]
    fn odd_shapes_are_not_captured_as_strings() {
        let json = r#"{"jti":7,"iss":["a","b"],"iat":-5,"exp":"soon","sub":null}"#;
        let (v, rev): (serde_json::Value, _) = parse(json, &["sub"]);
        assert_eq!(v["iss"], serde_json::json!(["a", "b"]));
        assert_eq!(v["sub"], serde_json::Value::Null);
        assert_eq!(rev.jti(), None);
        assert!(rev.iss_not_string);
        assert_eq!(rev.iat, None);
        assert_eq!(rev.exp, None);
        assert_eq!(rev.cutoffs().next(), Some(None));
    }

    #[test]
    fn every_captured_text_is_read_back_from_the_shared_buffer() {
        // Past the buffer's first capacity, numbers in canonical text, a boolean, and a claim
        // that is both a fixed and a cutoff claim.
        let long = "x".repeat(3 * TEXT_CAPACITY);
        let json = format!(
            r#"{{"jti":"j-9","iss":"{long}","sub":42.0,"sid":-7,"client_id":1.5,"act":true,
                "amr":["pwd"],"sub2":"\u00e9t\u00e9"}}"#
        );
        let names = ["sub", "sid", "client_id", "act", "amr", "sub2", "jti"];
        let (_, rev): (serde_json::Value, _) = parse(&json, &names);
        assert_eq!(rev.jti(), Some("j-9"));
        assert_eq!(rev.iss(), Some(long.as_str()));
        let cutoffs: Vec<_> = rev.cutoffs().take(names.len()).collect();
        assert_eq!(
            cutoffs,
            [
                Some("42"),
                Some("-7"),
                Some("1.5"),
                Some("true"),
                None,
                Some("\u{e9}t\u{e9}"),
                Some("j-9")
            ]
        );
    }

    #[test]
    fn duplicate_captured_claims_are_rejected() {
        lend_cutoff_names(["sub"].into_iter());
        for json in [
            r#"{"jti":"a","jti":"b"}"#,
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"jti":"a","j\u0074i":"b"}"#,
        ] {
            assert!(serde_json::from_str::<Captured<IgnoredAny>>(json).is_err());
        }
        assert!(serde_json::from_str::<Captured<IgnoredAny>>("[1]").is_err());
        assert!(serde_json::from_str::<Captured<IgnoredAny>>(r#"{"a":1,"a":2}"#).is_ok());
    }
}
