//! Any jti a token can carry reaches the real publisher's lookup byte for byte: the source
//! percent-encodes every byte outside RFC 3986 unreserved, and the publisher decodes it back.
use std::cell::RefCell;
use std::collections::HashSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use revbloom::verify::{AsyncExactSource, ExactError, ExactQuery, HttpExactSource};
use serde_json::json;

use crate::support;

/// Arbitrary strings, and strings made of the bytes URLs mangle most.
fn jtis() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\t\r\n/?#%+ .~&=;:@\\\\a-zé€😀\u{0}]{1,12}",
        Just(".".to_owned()),
        Just("..".to_owned()),
    ]
    .prop_filter("the API refuses an empty jti", |j| {
        !j.is_empty() && j.len() <= revbloom::bounds::MAX_JTI_BYTES
    })
}

/// The same length in chars, one char different.
fn one_char_off(jti: &str) -> String {
    let mut chars: Vec<char> = jti.chars().collect();
    chars[0] = if chars[0] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

async fn ask(source: &HttpExactSource, jti: &str, exp: u64, now: u64) -> Result<bool, ExactError> {
    let query = ExactQuery {
        iss: None,
        jti,
        exp: Some(exp),
        generation: 1,
        now,
        stale: false,
    };
    source.is_revoked_async(&query).await
}

#[test]
fn any_jti_round_trips_through_the_lookup() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = support::temp_dir("http-any-jti");
    let srv = rt.block_on(support::start(support::config(data.clone())));
    let base = format!("http://{}", srv.local_addr());
    let (seal, _) = support::publisher_keys(&data);
    let source = HttpExactSource::new(&base).unwrap().seal_key(&seal);
    let http = support::client();
    let now = support::now();
    let exp = now + 3600;
    let revoked = RefCell::new(HashSet::new());
    let source = &source;
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let result = runner.run(&jtis(), |jti| {
        rt.block_on(async {
            let res = http
                .post(format!("{base}/v1/revocations"))
                .bearer_auth(support::TOKEN)
                .json(&json!({"jti": jti, "exp": exp}))
                .send()
                .await
                .unwrap();
            prop_assert_eq!(res.status().as_u16(), 200, "{:?}", res.text().await);
            revoked.borrow_mut().insert(jti.clone());
            let got = ask(source, &jti, exp, now).await;
            prop_assert!(matches!(got, Ok(true)), "jti {:?}: {:?}", jti, got);
            let other = one_char_off(&jti);
            if !revoked.borrow().contains(&other) {
                let got = ask(source, &other, exp, now).await;
                prop_assert!(matches!(got, Ok(false)), "jti {:?}: {:?}", other, got);
            }
            Ok(())
        })
    });
    // Once the publisher has pruned (its first tick), "not revoked" for a token older than
    // its watermark vouches for nothing.
    let old = rt.block_on(async {
        for _ in 0..100 {
            match ask(source, "never-revoked", now - 1000, now).await {
                Ok(false) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                other => return other,
            }
        }
        Ok(false)
    });
    srv.shutdown();
    rt.block_on(srv.wait()).unwrap();
    result.unwrap();
    assert!(
        matches!(old, Err(ExactError::NotCovered { exp: Some(e), pruned_before })
            if e == now - 1000 && pruned_before >= now - 65),
        "{old:?}"
    );
}
