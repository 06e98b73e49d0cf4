//! Property tests: whatever a correctly signed token carries in its payload (odd types,
//! duplicates, nesting), and whatever bytes arrive as a token, verification returns a result
//! and never panics; duplicated revocation claims are always refused.

use crate::support::tokens::*;
use proptest::prelude::*;
use revbloom::verify::{Verifier, VerifyError};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

/// A payload as an ordered list of entries, duplicates allowed.
struct Entries(Vec<(String, Value)>);

impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("jti".to_owned()),
        Just("iss".to_owned()),
        Just("iat".to_owned()),
        Just("sub".to_owned()),
        Just("sid".to_owned()),
        "[a-z]{1,4}",
    ]
}

fn verifier() -> Verifier {
    let t = now();
    Verifier::builder(hs256_key(), hs256_validation())
        .state(state(&[("j", t + 600)], &[("sub", "s", t)]))
        .cutoff_claims(&["sub", "sid"])
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_signed_payload_gets_an_answer(entries in prop::collection::vec((key(), value()), 0..8)) {
        let v = verifier();
        let mut entries = entries;
        entries.push(("exp".to_owned(), json!(now() + 600)));
        let duplicated = ["jti", "iss", "iat", "sub", "sid"]
            .iter()
            .any(|k| entries.iter().filter(|(e, _)| e == k).count() > 1);
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &Entries(entries),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let r = v.verify::<Value>(&token);
        if duplicated {
            prop_assert!(matches!(r, Err(VerifyError::Invalid(_))), "{r:?}");
        }
    }

    #[test]
    fn any_text_as_a_token_gets_an_answer(token in ".{0,300}") {
        let v = verifier();
        prop_assert!(v.verify::<Value>(&token).is_err());
    }
}
