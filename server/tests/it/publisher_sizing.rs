//! Bucket sizing as verifiers see it: an empty store publishes a snapshot of a few KB, a
//! quiet publisher's first revocation travels as a delta, and a bucket that outgrows its room
//! brings a full snapshot that still holds every revocation.

use std::time::{Duration, Instant};

use crate::support::*;
use revbloom::Verdict;
use serde_json::json;

async fn generation(http: &reqwest::Client, base: &str) -> u64 {
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    r.json::<serde_json::Value>().await.unwrap()["generation"]
        .as_u64()
        .unwrap()
}

/// Wait until the publisher has published a generation after `after`.
async fn published_after(http: &reqwest::Client, base: &str, after: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let g = generation(http, base).await;
        if g > after {
            return g;
        }
        assert!(Instant::now() < end, "no generation after {after}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn revoke(http: &reqwest::Client, base: &str, items: serde_json::Value) {
    let r = http
        .post(format!("{base}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

#[tokio::test]
async fn an_empty_store_ships_kilobytes_and_room_follows_the_revocations() {
    let dir = temp_dir("sizing");
    let data = dir.join("data");
    let mut c = config(data.clone());
    // No floor: the sizing alone (the test support's default sets one).
    c.window.expected_per_bucket = 0;
    let running = start(c).await;
    let base = running.url();
    let http = client();

    let snapshot = fetch_snapshot(&http, &base).await;
    assert!(
        snapshot.len() < 16 * 1024,
        "an empty store's snapshot is {} bytes",
        snapshot.len()
    );
    let g0 = generation(&http, &base).await;

    // One revocation fits the block every bucket starts with: a delta.
    let exp = now() + 3 * 3600 + 1800;
    revoke(&http, &base, json!({"jti": "first", "exp": exp})).await;
    let g1 = published_after(&http, &base, g0).await;
    let r = http
        .get(format!("{base}/v1/deltas?since={g0}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the first revocation is a delta");

    // Hundreds into the same bucket outgrow it: the chain is gone, a full snapshot follows.
    let items: Vec<_> = (0..300)
        .map(|i| json!({"jti": format!("burst-{i}"), "exp": exp}))
        .collect();
    revoke(&http, &base, json!(items)).await;
    let g2 = published_after(&http, &base, g1).await;
    let r = http
        .get(format!("{base}/v1/deltas?since={g1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        410,
        "growth is a layout change (generation {g2})"
    );
    let bytes = fetch_snapshot(&http, &base).await;
    let view = open_published(&data, &bytes);
    assert_eq!(view.check("first", Some(exp)), Verdict::MaybeRevoked);
    for i in 0..300 {
        assert_eq!(
            view.check(format!("burst-{i}"), Some(exp)),
            Verdict::MaybeRevoked,
            "burst-{i}"
        );
    }
    // The refit after growth sized the bucket for what it holds: about 16 bits each, plus
    // the room the burst's rate calls for, not a doubling of a default size.
    assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());

    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
