//! Readiness tells the truth about publishing. Each fault is real: the snapshot copy's folder
//! (`snapshot_dir`) is removed under a running publisher, so every publish fails at its copy
//! step, as it would with the folder's disk unmounted or gone. `/readyz` must then say
//! `publish_failing` at once and `snapshot_stale` once the newest generation is older than
//! twice the refresh interval, `/metrics` must say the same, writes must still be
//! acknowledged (the store is fine), and when the folder is back everything acknowledged must
//! be published and the publisher ready again.
//!
//! Also: the whole data folder deleted underneath a running publisher (`rm -rf DATA`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// A deadline far above the 1 s refresh these tests use.
const SOON: Duration = Duration::from_secs(20);

async fn readyz(http: &reqwest::Client, url: &str) -> (u16, Vec<String>) {
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ready"], status == 200, "{v}");
    let reasons = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    (status, reasons)
}

/// The value of `revbloom_not_ready_reason{reason="…"}` in `/metrics`.
async fn reason_metric(http: &reqwest::Client, url: &str, reason: &str) -> u64 {
    let series = format!("revbloom_not_ready_reason{{reason=\"{reason}\"}}");
    metric(http, url, &series).await
}

/// Poll `/readyz` until `want` holds for its reasons; the reasons then.
async fn until_reasons(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    want: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let t = Instant::now();
    loop {
        let (_, reasons) = readyz(http, url).await;
        if want(&reasons) {
            return reasons;
        }
        assert!(
            t.elapsed() < SOON,
            "{what}: still {reasons:?} after {SOON:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn revoke(http: &reqwest::Client, url: &str, jti: &str) -> (u16, Value) {
    let r = http
        .post(format!("{url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&json!({"jti": jti, "exp": now() + 3600}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_publishes_are_publish_failing_then_snapshot_stale_and_both_clear() {
    let base = temp_dir("ready");
    let copies = base.join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let mut c = config(base.join("data"));
    c.refresh_secs = 1;
    c.snapshot_dir = Some(copies.clone());
    let running = start(c).await;
    let (http, url) = (client(), format!("http://{}", running.local_addr()));
    // Control: a healthy publisher is ready and its reason gauges are 0.
    let (status, reasons) = readyz(&http, &url).await;
    assert_eq!((status, reasons.len()), (200, 0), "{reasons:?}");
    assert_eq!(reason_metric(&http, &url, "publish_failing").await, 0);
    assert_eq!(reason_metric(&http, &url, "snapshot_stale").await, 0);
    // Refreshes keep it ready: wait past twice the refresh interval.
    let t = Instant::now();
    let g0 = running.hub().current().generation;
    while running.hub().current().generation < g0 + 3 {
        assert!(t.elapsed() < SOON, "no refresh publishes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readyz(&http, &url).await, (200, vec![]));

    // The fault: the copy's folder is gone; every publish fails at its copy step.
    std::fs::remove_dir_all(&copies).unwrap();
    until_reasons(&http, &url, "publish failure", |r| {
        r.contains(&"publish_failing".to_owned())
    })
    .await;
    assert_eq!(reason_metric(&http, &url, "publish_failing").await, 1);
    // The store still takes writes: acknowledged, durable, not yet published.
    let (status, v) = revoke(&http, &url, "during-the-fault").await;
    assert_eq!(status, 200, "{v}");
    let stuck = running.hub().current().generation;
    let reasons = until_reasons(&http, &url, "staleness", |r| {
        r.contains(&"snapshot_stale".to_owned())
    })
    .await;
    assert!(
        reasons.contains(&"publish_failing".to_owned()),
        "{reasons:?}"
    );
    assert_eq!(reason_metric(&http, &url, "snapshot_stale").await, 1);
    assert_eq!(metric(&http, &url, "revbloom_ready").await, 0);
    assert_eq!(
        running.hub().current().generation,
        stuck,
        "a generation was published while its copy could not be written"
    );
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The folder is back: the next retry publishes everything acknowledged.
    std::fs::create_dir_all(&copies).unwrap();
    until_reasons(&http, &url, "recovery", |r| r.is_empty()).await;
    assert_eq!(reason_metric(&http, &url, "publish_failing").await, 0);
    assert_eq!(reason_metric(&http, &url, "snapshot_stale").await, 0);
    let bytes = std::fs::read(copies.join(revbloom_server::publish::SNAPSHOT_FILE)).unwrap();
    let view = crate::support::open_published(&base.join("data"), &bytes);
    assert!(view.generation() > stuck);
    assert_eq!(
        view.check(b"during-the-fault", Some(now() + 3600)),
        revbloom::Verdict::MaybeRevoked
    );
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(&base);
}
