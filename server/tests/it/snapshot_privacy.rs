//! The outsider: someone who can download every snapshot and delta a publisher hands out
//! (`GET /v1/snapshot`, `GET /v1/deltas` are public, and copies may sit on a CDN) but holds no
//! verifier secret. They try to learn who was revoked by testing 100,000 guessed user ids
//! against the cutoff table, and guessed token ids against the filter, with the seed in the
//! header, and by asking the exact lookup. Against a default (sealing) publisher they find
//! nothing; the control runs the same attack against a publisher with `"seal": false` and
//! finds both planted cutoffs, so the attack itself works.

use std::path::Path;

use revbloom::snapshot::SnapshotError;
use revbloom::{CutoffKey, DeltaView, OpenOptions, SnapshotView, Verdict};
use serde_json::json;

use crate::support::{self, client, config, now, temp_dir, TOKEN};

/// Realistic user ids: `user-00000` … `user-99999`.
fn user(n: u32) -> String {
    format!("user-{n:05}")
}

/// UUID-shaped token ids.
fn jti(n: u32) -> String {
    format!("5f0c{n:04x}-1b2e-4c7d-9a3f-{:012x}", u64::from(n) * 7919)
}

const PLANTED_SNAPSHOT: u32 = 48_213;
const PLANTED_DELTA: u32 = 77_021;
const PLANTED_JTI: u32 = 31_337;

/// What the attack found in one file.
#[derive(Debug, Default)]
struct Found {
    /// Whether the library parsed the file at all.
    parsed: bool,
    /// User ids whose cutoff was found.
    users: Vec<String>,
    /// Token ids the filter says may be revoked.
    jtis: Vec<String>,
}

/// The attack on a snapshot: parse it with the library and no key (skipping the signature,
/// as an attacker would), then test every candidate against the cutoff table and the filter
/// with the header's seed.
fn attack_snapshot(bytes: &[u8]) -> Found {
    let options = OpenOptions::new().skip_signature_check();
    let view = match SnapshotView::open(bytes, &options) {
        Ok(v) => v,
        Err(e) => {
            assert!(matches!(e, SnapshotError::Sealed { .. }), "{e}");
            return Found::default();
        }
    };
    let hasher = view.hasher();
    let exp = now() + 3600;
    Found {
        parsed: true,
        users: (0..100_000)
            .map(user)
            .filter(|u| {
                view.cutoff(CutoffKey::new(&hasher, None, "sub", u))
                    .is_some()
            })
            .collect(),
        jtis: (0..100_000)
            .map(jti)
            .filter(|j| view.check(j, Some(exp)) != Verdict::Clear)
            .collect(),
    }
}

/// The attack on a delta chain: parse each delta with no key and test every candidate user
/// against its cutoff records under its seed.
fn attack_deltas(mut chain: &[u8]) -> Found {
    let options = OpenOptions::new().skip_signature_check();
    let mut found = Found::default();
    while !chain.is_empty() {
        let (delta, rest) = match DeltaView::open_prefix(chain, &options) {
            Ok(d) => d,
            Err(e) => {
                assert!(matches!(e, revbloom::DeltaError::Sealed { .. }), "{e}");
                return found;
            }
        };
        found.parsed = true;
        let hasher = revbloom::KeyHasher::new(delta.seed());
        let keys: std::collections::HashSet<CutoffKey> = delta.cutoffs().map(|(k, _)| k).collect();
        found.users.extend(
            (0..100_000)
                .map(user)
                .filter(|u| keys.contains(&CutoffKey::new(&hasher, None, "sub", u))),
        );
        chain = rest;
    }
    found
}

async fn post(http: &reqwest::Client, url: &str, path: &str, body: serde_json::Value) {
    let res = http
        .post(format!("{url}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
}

/// Plant two cutoffs (one in the first snapshot, one arriving as a delta) and revoked
/// tokens on a publisher, then download what an outsider can: the snapshot and the deltas.
async fn publish_and_download(data: &Path, seal: bool) -> (String, Vec<u8>, Vec<u8>) {
    let mut c = config(data.to_path_buf());
    c.seal = seal;
    let running = support::start(c).await;
    let url = format!("http://{}", running.local_addr());
    let http = client();
    let exp = now() + 3600;
    for chunk in 0..2 {
        let batch: Vec<_> = (chunk * 1000..(chunk + 1) * 1000)
            .map(|n| json!({"jti": jti(n * 50 + 7), "exp": exp}))
            .collect();
        post(&http, &url, "/v1/revocations", json!(batch)).await;
    }
    post(
        &http,
        &url,
        "/v1/revocations",
        json!({"jti": jti(PLANTED_JTI), "exp": exp}),
    )
    .await;
    post(
        &http,
        &url,
        "/v1/cutoffs",
        json!({"value": user(PLANTED_SNAPSHOT)}),
    )
    .await;
    // Wait for a generation that holds them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (gen, snapshot) = loop {
        let res = http.get(format!("{url}/v1/snapshot")).send().await.unwrap();
        let gen: u64 = res.headers()["x-revbloom-generation"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = res.bytes().await.unwrap().to_vec();
        let view = support::open_published(data, &bytes);
        if view.entries() >= 2001 && view.cutoffs().count() == 1 {
            break (gen, bytes);
        }
        assert!(std::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    post(
        &http,
        &url,
        "/v1/cutoffs",
        json!({"value": user(PLANTED_DELTA)}),
    )
    .await;
    let deltas = loop {
        let res = http
            .get(format!("{url}/v1/deltas?since={gen}&wait=10s"))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            break res.bytes().await.unwrap().to_vec();
        }
        assert!(std::time::Instant::now() < deadline, "no delta");
    };
    running.shutdown();
    running.wait().await.unwrap();
    (url, snapshot, deltas)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsider_with_every_file_finds_no_planted_cutoff() {
    let dir = temp_dir("privacy");

    // CONTROL: the same attack on a publisher that does not seal finds both planted users
    // (and the planted token), so the attack is real and the test can fail.
    let plain = dir.join("plain");
    let (_, snapshot, deltas) = publish_and_download(&plain, false).await;
    let found = attack_snapshot(&snapshot);
    assert!(found.parsed);
    assert_eq!(found.users, vec![user(PLANTED_SNAPSHOT)]);
    assert!(
        found.jtis.contains(&jti(PLANTED_JTI)),
        "{:?}",
        found.jtis.len()
    );
    let found = attack_deltas(&deltas);
    assert!(found.parsed);
    assert_eq!(found.users, vec![user(PLANTED_DELTA)]);

    // The default publisher: the files cannot even be parsed without the seal key, the
    // candidates hit nothing, and no planted id appears in the bytes.
    let sealed = dir.join("sealed");
    let (_, snapshot, deltas) = publish_and_download(&sealed, true).await;
    let found = attack_snapshot(&snapshot);
    assert!(!found.parsed && found.users.is_empty() && found.jtis.is_empty());
    let found = attack_deltas(&deltas);
    assert!(!found.parsed && found.users.is_empty());
    for id in [
        user(PLANTED_SNAPSHOT),
        user(PLANTED_DELTA),
        jti(PLANTED_JTI),
    ] {
        for bytes in [&snapshot, &deltas] {
            assert!(!bytes.windows(id.len()).any(|w| w == id.as_bytes()));
        }
    }
    // Nor can the body after the envelope header be read as a snapshot (it is ciphertext).
    let body = &snapshot[revbloom::snapshot::SEAL_HEADER_BYTES..];
    assert!(SnapshotView::open(body, &OpenOptions::new().skip_signature_check()).is_err());
    // The verifier, holding DATA/verifier.key and DATA/signing.pub, sees everything.
    let view = support::open_published(&sealed, &snapshot);
    let hasher = view.hasher();
    let key = CutoffKey::new(&hasher, None, "sub", user(PLANTED_SNAPSHOT));
    assert!(view.cutoff(key).is_some());
    let chain = support::unseal_chain(&sealed, &deltas);
    let options = support::verifier_options(&sealed);
    let delta = DeltaView::open(&chain[0], &options).unwrap();
    let key = CutoffKey::new(&hasher, None, "sub", user(PLANTED_DELTA));
    assert!(delta.cutoffs().any(|(k, _)| k == key));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exact_lookup_answers_only_the_read_token_or_the_admin_token() {
    let dir = temp_dir("privacy-lookup");
    let data = dir.join("data");
    let running = support::start(config(data.clone())).await;
    let url = format!("http://{}", running.local_addr());
    let http = client();
    let exp = now() + 3600;
    post(
        &http,
        &url,
        "/v1/revocations",
        json!({"jti": jti(PLANTED_JTI), "exp": exp}),
    )
    .await;
    let lookup = format!("{url}/v1/revocations/{}", jti(PLANTED_JTI));
    // No credential, a wrong one, or the query form without one: 401, our JSON, no answer.
    for req in [
        http.get(&lookup),
        http.get(&lookup).bearer_auth("0".repeat(64)),
        http.get(format!("{url}/v1/revocations?jti={}", jti(PLANTED_JTI))),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["error"].is_string() && body.get("revoked").is_none(),
            "{body}"
        );
    }
    // The read token derived from the seal key a verifier holds gets the answer.
    let (seal, _) = support::publisher_keys(&data);
    let v = support::lookup_as(&http, &url, &jti(PLANTED_JTI), &seal.read_token()).await;
    assert_eq!(v["revoked"], true, "{v}");
    let v = support::lookup_as(&http, &url, &jti(1), &seal.read_token()).await;
    assert_eq!(v["revoked"], false, "{v}");
    // So does the admin token.
    let v = support::lookup_as(&http, &url, &jti(PLANTED_JTI), TOKEN).await;
    assert_eq!(v["revoked"], true, "{v}");
    // And the library's HTTP source sends it when given the seal key.
    use revbloom::verify::{AsyncExactSource, ExactQuery, HttpExactSource};
    let q = ExactQuery {
        iss: None,
        jti: &jti(PLANTED_JTI),
        exp: Some(exp),
        generation: 0,
        now: now(),
        stale: false,
    };
    let source = HttpExactSource::new(&url).unwrap();
    assert!(source.is_revoked_async(&q).await.is_err());
    let source = source.seal_key(&seal);
    assert!(source.is_revoked_async(&q).await.unwrap());
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
