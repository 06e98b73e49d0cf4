//! The publisher's HTTP API: happy paths, every bad input, auth, long-poll, deltas.

use std::time::Duration;

use crate::support::*;
use revbloom::{DeltaView, OpenOptions, SnapshotView, Verdict};
use serde_json::{json, Value};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: client(),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: impl Into<String>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.into());
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET with the admin token, which the exact lookup takes (as it takes the read token);
    /// the snapshot feed needs none and ignores it.
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

fn assert_error(got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "body: {}", got.1);
    assert_eq!(got.1["error"], code, "body: {}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn revoke_lookup_and_snapshot() {
    let data = temp_dir("api-happy");
    let srv = start(config(data.clone())).await;
    let api = Api::new(srv.local_addr());
    let exp = now() + 3600;

    let (s, v) = api
        .post(
            "/v1/revocations",
            Some(TOKEN),
            &json!({"jti": "t1", "exp": exp}).to_string(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], 1);
    let batch = json!([{"jti": "t2", "exp": exp}, {"jti": "t3", "exp": exp, "iss": "https://idp"}, {"jti": "t1", "exp": exp}]);
    let (s, v) = api
        .post("/v1/revocations", Some(TOKEN), &batch.to_string())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["accepted"].as_u64(),
            v["new"].as_u64(),
            v["duplicates"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );

    let (s, mut v) = api.get_json("/v1/revocations/t1").await;
    assert_eq!(s, 200);
    // The watermark depends on when the first prune ran; its rules have their own test.
    assert!(v["pruned_before"].is_u64(), "{v}");
    v.as_object_mut().unwrap().remove("pruned_before");
    assert_eq!(
        v,
        json!({"revoked": true, "jti": "t1", "iss": null, "exp": exp})
    );
    let (_, v) = api
        .get_json("/v1/revocations/t3?iss=https%3A%2F%2Fidp")
        .await;
    assert_eq!(v["revoked"], true);
    assert_eq!(v["iss"], "https://idp");
    let (_, v) = api.get_json("/v1/revocations/t3").await;
    assert_eq!(v["revoked"], false);
    assert_eq!(v["exp"], Value::Null);
    let (_, v) = api.get_json("/v1/revocations/a%20b%2Fc").await;
    assert_eq!(
        (v["revoked"].clone(), v["jti"].clone()),
        (json!(false), json!("a b/c"))
    );

    let asked_at = revbloom_server::publish::unix_now();
    let (s, v) = api
        .post(
            "/v1/cutoffs",
            Some(TOKEN),
            &json!({"value": "alice"}).to_string(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["claim"], "sub");
    // The default cutoff covers tokens issued in the very second of the request by an issuer
    // clock up to the skew (5 s) ahead.
    let before = v["before"].as_u64().unwrap();
    assert!(before > asked_at + 5, "before {before} <= {asked_at} + 5");
    assert!(before <= revbloom_server::publish::unix_now() + 6);

    // Wait for a generation holding all of it (long-poll on the one we have).
    let (bytes, etag) = snapshot_until(&api, &data, |view| {
        view.check("t2", Some(exp)) == Verdict::MaybeRevoked
            && view.check("t3", Some(exp)) == Verdict::MaybeRevoked
            && view.cutoffs().count() == 1
    })
    .await;
    let view = open_published(&data, &bytes);
    assert_eq!(view.check("t1", Some(exp)), Verdict::MaybeRevoked);
    assert_eq!(view.check("t2", Some(exp)), Verdict::MaybeRevoked);
    assert_eq!(view.cutoffs().count(), 1);
    assert_eq!(format!("\"{}\"", view.generation()), etag);

    // Same generation: 304 at once without wait, and after the wait with one.
    let res = api
        .http
        .get(format!("{}/v1/snapshot", api.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);

    // Long-poll wakes on a new generation well before its wait ends.
    let http = api.http.clone();
    let url = format!("{}/v1/snapshot?wait=60s", api.base);
    let et = etag.clone();
    let poll = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let r = http
            .get(url)
            .header("if-none-match", et)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.post(
        "/v1/revocations",
        Some(TOKEN),
        &json!({"jti": "t4", "exp": exp}).to_string(),
    )
    .await;
    let (status, took) = poll.await.unwrap();
    assert_eq!(status, 200);
    // Liveness, not speed: it woke on the new generation, not at the end of its 60 s wait.
    assert!(
        took < Duration::from_secs(30),
        "long-poll did not wake: {took:?}"
    );

    // Deltas from the generation we held lead to the current one, and apply.
    let gen: u64 = etag.trim_matches('"').parse().unwrap();
    let res = api.get(&format!("/v1/deltas?since={gen}")).await;
    let status = res.status().as_u16();
    let cur = api.get("/v1/snapshot").await.bytes().await.unwrap();
    let cur = open_published(&data, &cur);
    if status == 200 {
        // One sealed envelope per delta; each holds one signed delta.
        let chain = res.bytes().await.unwrap();
        let mut at = open_published(&data, &bytes);
        let options = verifier_options(&data);
        for delta in unseal_chain(&data, &chain) {
            let d = DeltaView::open(&delta, &options).unwrap();
            at = at.apply_delta(&d).unwrap();
        }
        assert_eq!(at.generation(), cur.generation());
        assert_eq!(at.check("t4", Some(exp)), Verdict::MaybeRevoked);
    } else {
        // A layout change (bucket growth, rotation) since: the client takes a full snapshot.
        assert_eq!(status, 410);
    }
    let res = api
        .get(&format!("/v1/deltas?since={}", cur.generation()))
        .await;
    assert!(matches!(res.status().as_u16(), 204 | 200));
    assert_error(
        api.get_json("/v1/deltas?since=999999").await,
        410,
        "delta_chain_gone",
    );

    let (s, v) = api.get_json("/healthz").await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "ok");
    let text = api.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("revbloom_revocations_total 5"), "{text}");
    assert!(
        text.contains("revbloom_http_request_duration_seconds_bucket{route=\"/v1/revocations\"")
    );

    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test]
async fn auth_is_required_and_checked() {
    let srv = start(config(temp_dir("api-auth"))).await;
    let api = Api::new(srv.local_addr());
    let body = json!({"jti": "x", "exp": now() + 60}).to_string();
    for path in ["/v1/revocations", "/v1/cutoffs"] {
        let body = if path == "/v1/cutoffs" {
            r#"{"value":"u"}"#
        } else {
            &body
        };
        assert_error(
            api.post(path, None, body.to_string()).await,
            401,
            "missing_token",
        );
        assert_error(
            api.post(path, Some("wrong-token"), body).await,
            401,
            "invalid_token",
        );
        assert_error(
            api.post(path, Some(""), body.to_string()).await,
            401,
            "invalid_token",
        );
        let res = api
            .http
            .post(format!("{}{path}", api.base))
            .header("authorization", format!("Basic {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
    // Nothing was written by the refused requests.
    let (_, v) = api.get_json("/v1/revocations/x").await;
    assert_eq!(v["revoked"], false);
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_writes_nothing() {
    let mut c = config(temp_dir("api-bad"));
    c.limits.max_body_bytes = 64 * 1024;
    c.limits.max_batch = 10;
    let srv = start(c).await;
    let api = Api::new(srv.local_addr());
    let t = Some(TOKEN);
    let exp = now() + 3600;
    let rev = |b: &str| api.post("/v1/revocations", t, b.to_string());

    assert_error(rev("{").await, 400, "malformed_json");
    assert_error(rev("").await, 400, "malformed_json");
    assert_error(
        rev(&format!(r#"{{"jti": "a", "exp": {exp}, "zzz": 1}}"#)).await,
        400,
        "invalid_body",
    );
    assert_error(
        rev(&format!(r#"{{"jti": 5, "exp": {exp}}}"#)).await,
        400,
        "invalid_body",
    );
    assert_error(rev(r#"{"jti": "a", "exp": -5}"#).await, 400, "invalid_body");
    assert_error(rev(r#"{"jti": "a", "exp": 1.5}"#).await, 400, "exp_in_past");
    assert_error(
        rev(r#"{"jti": "a", "exp": "1"}"#).await,
        400,
        "invalid_body",
    );
    assert_error(
        rev(&format!(r#"{{"jti": "", "exp": {exp}}}"#)).await,
        400,
        "empty_field",
    );
    let long = "j".repeat(1025);
    assert_error(
        rev(&json!({"jti": long, "exp": exp}).to_string()).await,
        400,
        "jti_too_long",
    );
    assert_error(
        rev(&json!({"jti": "a", "exp": exp, "iss": ""}).to_string()).await,
        400,
        "empty_field",
    );
    assert_error(
        rev(&json!({"jti": "a", "exp": exp, "iss": "//"}).to_string()).await,
        400,
        "empty_field",
    );
    // Leeway 60 + skew 5: verifiers refuse a token whose exp is more than 65 s past.
    let got = rev(&json!({"jti": "a", "exp": now() - 200}).to_string()).await;
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("verifiers already refuse"),
        "{}",
        got.1
    );
    assert_error(got, 400, "exp_in_past");
    assert_error(
        rev(&json!({"jti": "a", "exp": exp * 1000}).to_string()).await,
        400,
        "exp_too_far",
    );
    assert_error(
        rev(&json!({"jti": "a", "exp": u64::MAX}).to_string()).await,
        400,
        "exp_too_far",
    );
    assert_error(rev("[]").await, 400, "empty_batch");
    let big: Vec<Value> = (0..11)
        .map(|i| json!({"jti": format!("b{i}"), "exp": exp}))
        .collect();
    assert_error(rev(&json!(big).to_string()).await, 413, "batch_too_large");
    // One bad item spoils the whole batch: nothing of it is written.
    let mixed = json!([{"jti": "good1", "exp": exp}, {"jti": "bad", "exp": 3}]);
    let got = rev(&mixed.to_string()).await;
    assert_error(got.clone(), 400, "exp_in_past");
    assert!(got.1["message"].as_str().unwrap().starts_with("item 1"));
    let huge = format!(r#"{{"jti": "{}", "exp": {exp}}}"#, "x".repeat(100_000));
    assert_error(rev(&huge).await, 413, "body_too_large");
    let res = api
        .http
        .post(format!("{}/v1/revocations", api.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "text/plain")
        .body(json!({"jti": "a", "exp": exp}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unsupported_media_type"
    );

    let cut = |b: &str| api.post("/v1/cutoffs", t, b.to_string());
    assert_error(cut("nope").await, 400, "malformed_json");
    assert_error(cut("{}").await, 400, "invalid_body");
    assert_error(
        cut(r#"{"value": "u", "sub": "x"}"#).await,
        400,
        "invalid_body",
    );
    assert_error(cut(r#"{"value": ""}"#).await, 400, "empty_field");
    assert_error(
        cut(r#"{"value": "u", "claim": ""}"#).await,
        400,
        "empty_field",
    );
    assert_error(
        cut(&json!({"value": "u", "claim": "c".repeat(65)}).to_string()).await,
        400,
        "claim_too_long",
    );
    assert_error(
        cut(&json!({"value": "v".repeat(2000)}).to_string()).await,
        400,
        "value_too_long",
    );
    assert_error(
        cut(&json!({"value": "u", "before": now() + 86_400}).to_string()).await,
        400,
        "before_in_future",
    );

    assert_error(
        api.get_json(&format!("/v1/revocations/{}", "j".repeat(1025)))
            .await,
        400,
        "jti_too_long",
    );
    assert_error(
        api.get_json("/v1/revocations/a?bogus=1").await,
        400,
        "invalid_query",
    );
    assert_error(
        api.get_json("/v1/revocations/a?iss=").await,
        400,
        "empty_field",
    );
    assert_error(
        api.get_json("/v1/revocations/a?iss=%2F").await,
        400,
        "empty_field",
    );
    assert_error(
        api.get_json("/v1/revocations/%FF%FE").await,
        400,
        "invalid_jti",
    );

    assert_error(
        api.get_json("/v1/snapshot?wait=forever").await,
        400,
        "invalid_wait",
    );
    assert_error(api.get_json("/v1/snapshot?x=1").await, 400, "invalid_query");
    assert_error(api.get_json("/v1/deltas").await, 400, "invalid_query");
    assert_error(
        api.get_json("/v1/deltas?since=abc").await,
        400,
        "invalid_query",
    );
    assert_error(
        api.get_json("/v1/deltas?since=1&wait=-1s").await,
        400,
        "invalid_wait",
    );
    // A wait beyond `limits.max_wait_secs` is capped, not refused; generation 0 is never
    // current, so this answers at once.
    let (s, v) = api.get_json("/v1/deltas?since=0&wait=3h").await;
    assert_ne!(s, 400, "{v}");
    assert_error(api.get_json("/v1/nope").await, 404, "not_found");
    let res = api
        .http
        .delete(format!("{}/v1/snapshot", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);

    // None of the refused revocations or cutoffs reached the store.
    for jti in ["a", "good1", "bad", "b0"] {
        let (_, v) = api.get_json(&format!("/v1/revocations/{jti}")).await;
        assert_eq!(v["revoked"], false, "{jti}");
    }
    let text = api.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("revbloom_revocations_total 0"));
    assert!(text.contains("revbloom_cutoffs_total 0"));
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test]
async fn generations_stay_monotonic_across_restarts_and_snapshots_are_signed() {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    let dir = temp_dir("api-restart");
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let key_path = dir.join("signing.pem");
    std::fs::write(
        &key_path,
        sk.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let mut c = config(dir.join("data"));
    c.signing_key = Some(key_path);
    // The configured signing key is used (none is generated); the seal key is generated.
    let seal = || {
        let path = dir.join("data/verifier.key");
        revbloom::snapshot::SealKey::from_file(&path).unwrap()
    };
    let signed = || {
        OpenOptions::default()
            .verifying_key(sk.verifying_key())
            .require_signature(true)
            .seal_key(seal())
    };

    let mut last = 0;
    for round in 0..3 {
        let srv = start(c.clone()).await;
        let api = Api::new(srv.local_addr());
        let exp = now() + 600;
        api.post(
            "/v1/revocations",
            Some(TOKEN),
            json!({"jti": format!("r{round}"), "exp": exp}).to_string(),
        )
        .await;
        let bytes = api.get("/v1/snapshot").await.bytes().await.unwrap();
        assert!(!dir.join("data/signing.key").exists() && !dir.join("data/signing.pub").exists());
        let view = SnapshotView::open_owned(bytes.to_vec(), &signed()).unwrap();
        assert!(
            view.generation() > last,
            "generation went from {last} to {}",
            view.generation()
        );
        last = view.generation();
        if round > 0 {
            // The window was rebuilt from the store, under this lineage's new seed.
            let prev = format!("r{}", round - 1);
            assert_eq!(
                view.check(&prev, Some(exp)),
                revbloom::Verdict::MaybeRevoked
            );
        }
        // Unsigned expectations do not matter; a wrong key is refused.
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        let wrong = OpenOptions::default().verifying_key(other).seal_key(seal());
        assert!(SnapshotView::open_owned(bytes.to_vec(), &wrong).is_err());
        srv.shutdown();
        srv.wait().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn issuers_times_and_lengths_follow_the_deployment_bounds() {
    let data = temp_dir("api-bounds");
    let mut c = config(data.clone());
    c.default_iss = Some("https://default/".into());
    let srv = start(c).await;
    let api = Api::new(srv.local_addr());
    let t = Some(TOKEN);
    let n = now();
    let rev = |b: Value| api.post("/v1/revocations", t, b.to_string());

    // A token a verifier may still accept (exp + leeway 60 + skew 5 not past) is revocable.
    let (s, v) = rev(json!({"jti": "late", "exp": n - 30})).await;
    assert_eq!(s, 200, "{v}");
    // Fractional exp: rounded as verifiers round it.
    let (s, v) = rev(json!({"jti": "frac", "exp": (n + 600) as f64 + 0.5})).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api.get_json("/v1/revocations/frac").await;
    assert_eq!(v["exp"], n + 601);
    // The longest jti a verifier accepts can be revoked and looked up.
    let long = "L".repeat(revbloom::bounds::MAX_JTI_BYTES);
    let (s, v) = rev(json!({"jti": long, "exp": n + 600})).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api.get_json(&format!("/v1/revocations/{long}")).await;
    assert_eq!(v["revoked"], true);

    // Without iss: stored for every issuer, not for the default issuer.
    rev(json!({"jti": "every", "exp": n + 600})).await;
    rev(json!({"jti": "of-a", "exp": n + 600, "iss": "https://a/"})).await;
    rev(json!({"jti": "of-d", "exp": n + 600, "iss": "https://default"})).await;
    let revoked = |q: &'static str| {
        let api = &api;
        async move { api.get_json(&format!("/v1/revocations/{q}")).await.1["revoked"].clone() }
    };
    assert_eq!(revoked("every").await, true);
    assert_eq!(revoked("every?iss=https%3A%2F%2Fz").await, true);
    assert_eq!(revoked("of-a?iss=https%3A%2F%2Fa").await, true);
    assert_eq!(revoked("of-a?iss=https%3A%2F%2Fa%2F").await, true);
    assert_eq!(revoked("of-a").await, false);
    assert_eq!(revoked("of-a?iss=https%3A%2F%2Fz").await, false);
    // A query without iss is a token of the default issuer.
    assert_eq!(revoked("of-d").await, true);
    assert_eq!(revoked("of-d?iss=https%3A%2F%2Fa").await, false);
    let (_, v) = api
        .get_json("/v1/revocations/of-a?iss=https%3A%2F%2Fa%2F")
        .await;
    assert_eq!(v["iss"], "https://a");

    // Cutoffs: without iss stay issuer-less; a given issuer is normalised.
    let (s, v) = api
        .post("/v1/cutoffs", t, json!({"value": "u"}).to_string())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["iss"], Value::Null);
    let (_, v) = api
        .post(
            "/v1/cutoffs",
            t,
            json!({"value": "u", "iss": "https://a//"}).to_string(),
        )
        .await;
    assert_eq!(v["iss"], "https://a");

    // The snapshot carries the default issuer and keys revocations on the jti alone.
    // Both were acknowledged before this point, possibly in two generations: wait for one
    // that holds both (bounded far beyond the 20 ms coalescing, so only a lost revocation
    // fails here).
    let mut held_both = false;
    for _ in 0..400 {
        let bytes = api.get("/v1/snapshot").await.bytes().await.unwrap();
        let v = open_published(&data, &bytes);
        let held = |jti| v.check(jti, Some(n + 600)) == Verdict::MaybeRevoked;
        if held("of-a") && held("of-d") {
            held_both = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        held_both,
        "of-a and of-d never reached the filter keyed on the jti alone"
    );

    // The publisher prunes on its first tick and says from where on it has forgotten.
    let mut watermark = 0;
    for _ in 0..400 {
        watermark = api.get_json("/v1/revocations/x").await.1["pruned_before"]
            .as_u64()
            .unwrap();
        if watermark > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (n - 65..=now() - 65).contains(&watermark),
        "watermark {watermark}, now {n}"
    );
    // Pruning at now forgets nothing a verifier can still accept: "late" (exp now - 30) stays.
    assert_eq!(revoked("late").await, true);
    srv.shutdown();
    srv.wait().await.unwrap();
}

/// Waits for a snapshot of the publisher with data folder `data` that satisfies `done`
/// (long-polling on the current one); returns its bytes and `ETag`.
async fn snapshot_until(
    api: &Api,
    data: &std::path::Path,
    done: impl Fn(&SnapshotView<revbloom::snapshot::AlignedBytes>) -> bool,
) -> (Vec<u8>, String) {
    let res = api.get("/v1/snapshot").await;
    let mut etag = res.headers()["etag"].to_str().unwrap().to_string();
    let mut bytes = res.bytes().await.unwrap().to_vec();
    for _ in 0..50 {
        if done(&open_published(data, &bytes)) {
            return (bytes, etag);
        }
        let res = api
            .http
            .get(format!("{}/v1/snapshot?wait=2s", api.base))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            etag = res.headers()["etag"].to_str().unwrap().to_string();
            bytes = res.bytes().await.unwrap().to_vec();
        }
    }
    panic!("no snapshot satisfied the condition");
}

#[tokio::test]
async fn a_jti_revoked_without_exp_is_listed_looked_up_and_counted() {
    let data = temp_dir("api-noexp");
    let srv = start(config(data.clone())).await;
    let api = Api::new(srv.local_addr());
    let t = Some(TOKEN);
    let rev = |b: Value| api.post("/v1/revocations", t, b.to_string());
    let (s, v) = rev(json!({"jti": "sess-7f3a"})).await;
    assert_eq!((s, v["new"].as_u64()), (200, Some(1)), "{v}");
    // `null` is the same as absent; the repeat is a duplicate.
    let (s, v) = rev(json!({"jti": "sess-7f3a", "exp": null})).await;
    assert_eq!((s, v["duplicates"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) =
        rev(json!([{"jti": "sess-2", "iss": "https://idp/"}, {"jti": "t9", "exp": now() + 600}]))
            .await;
    assert_eq!((s, v["new"].as_u64()), (200, Some(2)), "{v}");

    let (_, v) = api.get_json("/v1/revocations/sess-7f3a").await;
    assert_eq!(
        (&v["revoked"], &v["exp"]),
        (&json!(true), &Value::Null),
        "{v}"
    );
    assert!(
        v["revoked_before"].as_u64().is_some_and(|b| b > now()),
        "{v}"
    );
    // Issuer-qualified: found for that issuer only.
    let (_, v) = api
        .get_json("/v1/revocations/sess-2?iss=https%3A%2F%2Fidp")
        .await;
    assert_eq!(v["revoked"], true, "{v}");
    let (_, v) = api.get_json("/v1/revocations/sess-2").await;
    assert_eq!(v["revoked"], false, "{v}");
    // Control: an unknown jti.
    let (_, v) = api.get_json("/v1/revocations/sess-other").await;
    assert_eq!(
        (&v["revoked"], v.get("revoked_before")),
        (&json!(false), None),
        "{v}"
    );

    // The snapshot lists `jti` and answers for the jti whatever the exp, or none.
    let (bytes, _) = snapshot_until(&api, &data, |v| v.has_jti_cutoff(b"sess-7f3a")).await;
    let view = open_published(&data, &bytes);
    assert!(view.cutoff_claims().iter().any(|c| &**c == "jti"));
    assert!(!view.has_jti_cutoff(b"sess-other"));
}

#[tokio::test]
async fn cutoffs_on_more_than_eight_claims_are_refused_with_409() {
    let data = temp_dir("api-claims");
    let srv = start(config(data.clone())).await;
    let api = Api::new(srv.local_addr());
    let cut = |claim: &str| {
        api.post(
            "/v1/cutoffs",
            Some(TOKEN),
            json!({"claim": claim, "value": "v"}).to_string(),
        )
    };
    for i in 0..7 {
        let (s, v) = cut(&format!("c{i}")).await;
        assert_eq!(s, 200, "{v}");
    }
    // The eighth claim is `jti`, by a revocation without exp.
    let (s, v) = api
        .post(
            "/v1/revocations",
            Some(TOKEN),
            json!({"jti": "x"}).to_string(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_error(cut("c7").await, 409, "too_many_cutoff_claims");
    // Claims in use still take cutoffs, and the refusal wrote nothing.
    assert_eq!(cut("c0").await.0, 200);
    let (bytes, _) = snapshot_until(&api, &data, |v| v.cutoff_claims().len() == 8).await;
    let view = open_published(&data, &bytes);
    assert!(!view.cutoff_claims().iter().any(|c| &**c == "c7"));
}
