//! Static distribution through object storage, end to end with real components: an
//! in-process publisher configured with `publish_to` a `file://` folder or a real S3 server
//! (moto), a plain static HTTP server in front of each as the mirror, and verifiers that know
//! only the mirror (never the publisher's address).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use object_store::{ObjectStore, ObjectStoreExt};
use revbloom::snapshot::read_signing_key;
use revbloom::sync::manifest::{Manifest, MANIFEST_FILE};
use revbloom::sync::{SyncClient, SyncConfig, SyncFailure};
use revbloom::{Decision, SnapshotHandle, StalenessPolicy, Verdict};
use revbloom_server::config::PublishTo;
use revbloom_server::distribute::{
    Destination, DistributeError, GenerationObjects, ObjectPublisher,
};
use revbloom_server::{run, Running};
use serde_json::json;

use crate::support::s3::{Moto, BUCKET};
use crate::support::{client, config, start, temp_dir, verifier_options, TOKEN};

/// What the mirror does with the manifest.
#[derive(Clone)]
enum Mode {
    /// Serve the store as it is.
    Normal,
    /// 404 for the manifest (withheld).
    Withhold,
    /// These bytes for the manifest (an old one, or a tampered one).
    Manifest(Bytes),
    /// Flip a byte of every snapshot and delta object.
    TamperObjects,
}

/// Where the mirror reads from.
#[derive(Clone)]
enum Backing {
    Dir(PathBuf),
    Store(Arc<dyn ObjectStore>),
}

#[derive(Clone)]
struct Mirror {
    backing: Backing,
    mode: Arc<Mutex<Mode>>,
}

async fn serve_object(State(m): State<Mirror>, UrlPath(path): UrlPath<String>) -> Response {
    let mode = m.mode.lock().unwrap().clone();
    if path == MANIFEST_FILE {
        match &mode {
            Mode::Withhold => return StatusCode::NOT_FOUND.into_response(),
            Mode::Manifest(b) => return b.clone().into_response(),
            _ => {}
        }
    }
    let bytes = match &m.backing {
        Backing::Dir(d) => std::fs::read(d.join(&path)).ok().map(Bytes::from),
        Backing::Store(s) => match s.get(&object_store::path::Path::from(path.as_str())).await {
            Ok(r) => r.bytes().await.ok(),
            Err(_) => None,
        },
    };
    let Some(bytes) = bytes else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if matches!(mode, Mode::TamperObjects) && path != MANIFEST_FILE {
        let mut v = bytes.to_vec();
        let i = v.len() / 2;
        v[i] ^= 1;
        return v.into_response();
    }
    bytes.into_response()
}

/// A plain static HTTP server over `backing` on 127.0.0.1:0; returns its base URL.
async fn start_mirror(backing: Backing) -> (String, Arc<Mutex<Mode>>) {
    let mode = Arc::new(Mutex::new(Mode::Normal));
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::get(serve_object))
        .with_state(Mirror {
            backing,
            mode: Arc::clone(&mode),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), mode)
}

async fn revoke(base: &str, jti: &str, exp: u64) {
    let r = client()
        .post(format!("{base}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&json!({"jti": jti, "exp": exp}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now() -> u64 {
    crate::support::now()
}

/// A publisher in `dir/data` with a generation every second even without revocations (what
/// keeps mirror readers fresh), publishing to `publish_to` (built from `dir`).
async fn publisher_to(
    name: &str,
    publish_to: impl FnOnce(&std::path::Path) -> PublishTo,
) -> (Running, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let data = dir.join("data");
    let mut c = config(data.clone());
    c.refresh_secs = 1;
    c.publish_to = Some(publish_to(&dir));
    (start(c).await, data, dir)
}

/// [`publisher_to`] the folder `dir/bucket`.
async fn publisher(name: &str) -> (Running, PathBuf, PathBuf) {
    publisher_to(name, |dir| {
        PublishTo::new(format!("file://{}", dir.join("bucket").display()))
    })
    .await
}

fn mirror_verifier(
    data: &std::path::Path,
    mirror: &str,
    max_age: u64,
) -> (SnapshotHandle, SyncClient) {
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(max_age));
    let sync = SyncClient::start(
        SyncConfig::mirrors([mirror])
            .open_options(verifier_options(data))
            .mirror_poll_interval(Duration::from_millis(50))
            .backoff(Duration::from_millis(20), Duration::from_millis(200)),
        handle.clone(),
    )
    .unwrap();
    (handle, sync)
}

fn decide(h: &SnapshotHandle, jti: &str, exp: u64) -> Decision {
    h.decide(jti, Some(exp), now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_over_a_folder_enforces_revocations_and_fails_closed_when_withheld() {
    let (srv, data, dir) = publisher("dist-file").await;
    let bucket = dir.join("bucket");
    let (mirror, mode) = start_mirror(Backing::Dir(bucket.clone())).await;
    let (handle, sync) = mirror_verifier(&data, &mirror, 3);
    let stats = sync.shared_stats();
    let exp = now() + 3600;

    until(
        "the first generation through the mirror",
        Duration::from_secs(20),
        || handle.generation().is_some(),
    )
    .await;
    let first = Bytes::from(std::fs::read(bucket.join(MANIFEST_FILE)).unwrap());
    let first_generation = Manifest::decode(&first, &verifier_options(&data))
        .unwrap()
        .generation;
    // Control: not revoked yet.
    assert_eq!(
        decide(&handle, "mirror-jti", exp),
        Decision::Verdict(Verdict::Clear)
    );
    let base = srv.url();
    revoke(&base, "mirror-jti", exp).await;
    let t = Instant::now();
    until(
        "the revocation enforced through the mirror",
        Duration::from_secs(20),
        || decide(&handle, "mirror-jti", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    eprintln!(
        "revoke -> enforced through a folder mirror: {:?}",
        t.elapsed()
    );
    assert!(
        stats.deltas.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "deltas are followed"
    );
    assert!(bucket.join(MANIFEST_FILE).is_file());
    assert!(std::fs::read_dir(bucket.join("snapshots")).unwrap().count() >= 1);

    // A tampered manifest: refused, the last good state kept.
    let good = Bytes::from(std::fs::read(bucket.join(MANIFEST_FILE)).unwrap());
    let mut bad = good.to_vec();
    bad[30] ^= 1;
    *mode.lock().unwrap() = Mode::Manifest(Bytes::from(bad));
    let held = handle.generation();
    let sig = stats.failures(SyncFailure::Signature);
    until(
        "the tampered manifest refused",
        Duration::from_secs(10),
        || stats.failures(SyncFailure::Signature) > sig,
    )
    .await;
    assert!(handle.generation() >= held);
    assert_eq!(
        decide(&handle, "mirror-jti", exp),
        Decision::Verdict(Verdict::MaybeRevoked)
    );

    // An old manifest (a lagging cache, a replay): never a rollback; the verifier keeps its
    // generation, goes stale and fails closed.
    let held = handle.generation().unwrap();
    assert!(held > first_generation);
    *mode.lock().unwrap() = Mode::Manifest(first.clone());
    until(
        "the old manifest reported as behind",
        Duration::from_secs(10),
        || stats.failures(SyncFailure::Behind) > 0,
    )
    .await;
    until(
        "stale behind an old manifest",
        Duration::from_secs(10),
        || decide(&handle, "mirror-jti", exp) == Decision::Unavailable,
    )
    .await;
    assert_eq!(
        handle.generation(),
        Some(held),
        "an old manifest never rolls back"
    );
    assert_eq!(
        decide(&handle, "anyone", exp),
        Decision::Unavailable,
        "fail closed"
    );

    // Back to normal: fresh again, the revocation still enforced.
    *mode.lock().unwrap() = Mode::Normal;
    until("fresh again", Duration::from_secs(10), || {
        decide(&handle, "mirror-jti", exp) == Decision::Verdict(Verdict::MaybeRevoked)
    })
    .await;

    // The manifest withheld: stale, fail closed.
    *mode.lock().unwrap() = Mode::Withhold;
    until("stale without a manifest", Duration::from_secs(10), || {
        decide(&handle, "anyone", exp) == Decision::Unavailable
    })
    .await;
    assert!(stats.failures(SyncFailure::Status) > 0);

    // Tampered objects: a new verifier gets nothing from them, then everything once they
    // are served as written.
    *mode.lock().unwrap() = Mode::TamperObjects;
    let (fresh, sync2) = mirror_verifier(&data, &mirror, 3);
    let stats2 = sync2.shared_stats();
    until("tampered objects refused", Duration::from_secs(10), || {
        stats2.failures(SyncFailure::Invalid) > 0
    })
    .await;
    assert_eq!(fresh.generation(), None);
    assert_eq!(decide(&fresh, "anyone", exp), Decision::Unavailable);
    *mode.lock().unwrap() = Mode::Normal;
    until(
        "the new verifier loads the real objects",
        Duration::from_secs(10),
        || decide(&fresh, "mirror-jti", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    drop((sync, sync2));
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket_conditional_writes_cache_control_mirror_and_permissions() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let url = format!("s3://{BUCKET}/revbloom");

    // Read-only credentials: a clear error at start and at publish.
    let ro = Destination::parse_with(&url, moto.options(&moto.reader)).unwrap();
    let e = ObjectPublisher::new(ro.clone(), None)
        .check_writable()
        .await
        .unwrap_err();
    assert!(
        matches!(e, DistributeError::PermissionDenied { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("permission denied") && msg.contains(&url),
        "{msg}"
    );

    // A publisher configured with them does not start, and says why.
    let dir = temp_dir("dist-s3-ro");
    let mut c = config(dir.join("data"));
    c.publish_to = Some(PublishTo {
        options: moto.options(&moto.reader).into_iter().collect(),
        ..PublishTo::new(&url)
    });
    let e = match run::start(c, TOKEN.to_string()).await {
        Ok(_) => panic!("a publisher started with a bucket it cannot write"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("permission denied") && e.contains(&url), "{e}");

    let (srv, data, _dir) = publisher_to("dist-s3", |_| PublishTo {
        options: moto.options(&moto.writer).into_iter().collect(),
        ..PublishTo::new(&url)
    })
    .await;
    let dest = Destination::parse_with(&url, moto.options(&moto.writer)).unwrap();
    let key = read_signing_key(&data.join("signing.key")).unwrap();

    // The mirror: a static HTTP front that reads the bucket with the reader's keys.
    let reader: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(&moto.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(&moto.reader.0)
            .with_secret_access_key(&moto.reader.1)
            .build()
            .unwrap(),
    );
    let prefixed: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(
        Arc::clone(&reader),
        "revbloom",
    ));
    let (mirror, _mode) = start_mirror(Backing::Store(prefixed)).await;
    let (handle, sync) = mirror_verifier(&data, &mirror, 30);
    until(
        "the first generation through the S3 mirror",
        Duration::from_secs(30),
        || handle.generation().is_some(),
    )
    .await;
    let exp = now() + 3600;
    assert_eq!(
        decide(&handle, "s3-jti", exp),
        Decision::Verdict(Verdict::Clear)
    );
    revoke(&srv.url(), "s3-jti", exp).await;
    let t = Instant::now();
    until(
        "the revocation enforced through the S3 mirror",
        Duration::from_secs(30),
        || decide(&handle, "s3-jti", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    eprintln!("revoke -> enforced through an S3 mirror: {:?}", t.elapsed());

    // Cache lifetimes as written: short on the manifest, immutable on the objects.
    let manifest_path = object_store::path::Path::from(format!("revbloom/{MANIFEST_FILE}"));
    let got = reader.get(&manifest_path).await.unwrap();
    let cc = got
        .attributes
        .get(&object_store::Attribute::CacheControl)
        .map(|v| v.to_string());
    assert_eq!(cc.as_deref(), Some("public, max-age=5"));
    let manifest = Manifest::decode(&got.bytes().await.unwrap(), &verifier_options(&data)).unwrap();
    let snap = object_store::path::Path::from(format!("revbloom/{}", manifest.snapshot.path));
    let got = reader.get(&snap).await.unwrap();
    let cc = got
        .attributes
        .get(&object_store::Attribute::CacheControl)
        .map(|v| v.to_string());
    assert!(
        cc.as_deref().is_some_and(|c| c.contains("immutable")),
        "{cc:?}"
    );

    // A second writer (a builder that lost its lease) cannot put an older generation over
    // the manifest: the store's manifest is newer, and it is left alone.
    let mut stale = ObjectPublisher::new(dest, Some(key));
    let old = GenerationObjects {
        generation: manifest.generation.saturating_sub(1).max(1),
        parent: 0,
        created_at: 1,
        snapshot: Bytes::from_static(b"not what verifiers get"),
        delta: None,
    };
    let e = stale.publish(&old).await.unwrap_err();
    assert!(matches!(e, DistributeError::Superseded { .. }), "{e:?}");
    let after = reader
        .get(&manifest_path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let after = Manifest::decode(&after, &verifier_options(&data)).unwrap();
    assert!(after.generation >= manifest.generation);
    drop(sync);
    srv.shutdown();
}

/// FORMAT.md §7 is enough to read a manifest in another language: its Python snippet, run
/// as written, verifies and parses what `ObjectPublisher` wrote, and refuses a flipped byte.
#[tokio::test]
async fn the_manifest_reads_in_python_from_the_spec_alone() {
    let dir = temp_dir("dist-python");
    let bucket = dir.join("bucket");
    let dest = Destination::parse(&format!("file://{}", bucket.display())).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let mut objects = ObjectPublisher::new(dest, Some(key.clone()));
    for (generation, delta) in [(7, None), (8, Some(&b"delta 7 to 8"[..]))] {
        let g = GenerationObjects {
            generation,
            parent: generation - 1,
            created_at: 1_767_225_600 + generation,
            snapshot: Bytes::from(vec![generation as u8; 4096]),
            delta: delta.map(Bytes::from_static),
        };
        objects.publish(&g).await.unwrap();
    }
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md")).unwrap();
    let start = spec
        .find("A Python reader needs")
        .expect("the Python reader in FORMAT.md §7");
    let code = &spec[start..];
    let code = &code[code.find("```python\n").unwrap() + 10..];
    let code = &code[..code.find("```").unwrap()];
    let driver = r#"
import sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
folder, key = sys.argv[1], Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[2]))
m = read_manifest(open(folder + "/manifest.rbm", "rb").read(), key)
check_object(m["snapshot"], open(folder + "/" + m["snapshot"]["path"], "rb").read())
for d in m["deltas"]:
    check_object(d, open(folder + "/" + d["path"], "rb").read())
print(m["generation"], m["snapshot"]["generation"], len(m["deltas"]))
"#;
    let program = format!("{code}{driver}");
    let public: String = key
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let run = || {
        std::process::Command::new("python3")
            .args(["-c", &program, bucket.to_str().unwrap(), &public])
            .output()
            .expect("python3 (with the cryptography package: Debian python3-cryptography) runs")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8 7 1");
    // Control: one flipped payload byte and the Python reader refuses it.
    let path = bucket.join(MANIFEST_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(!run().status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sources are tried in order: a dead mirror, one serving an old manifest and one withholding
/// it are passed over for the next mirror, and the publisher comes last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifiers_fall_back_across_mirrors_and_the_publisher() {
    let (srv, data, dir) = publisher("dist-fallback").await;
    let bucket = dir.join("bucket");
    let (good, _) = start_mirror(Backing::Dir(bucket.clone())).await;
    let (old, old_mode) = start_mirror(Backing::Dir(bucket.clone())).await;
    let (withheld, withheld_mode) = start_mirror(Backing::Dir(bucket.clone())).await;
    *withheld_mode.lock().unwrap() = Mode::Withhold;
    until("a first manifest", Duration::from_secs(20), || {
        bucket.join(MANIFEST_FILE).is_file()
    })
    .await;
    let first = Bytes::from(std::fs::read(bucket.join(MANIFEST_FILE)).unwrap());
    *old_mode.lock().unwrap() = Mode::Manifest(first);
    let exp = now() + 3600;
    revoke(&srv.url(), "fallback-jti", exp).await;

    // Mirrors only: dead, withheld, old, then the good one. The old mirror's manifest is the
    // first thing a verifier holding nothing can take; once the snapshot from it is past half
    // of max_age (2 s), the next mirror is asked too, and from then on the old one is behind.
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(4));
    let sync = SyncClient::start(
        SyncConfig::mirrors(["http://127.0.0.1:1", withheld.as_str()])
            .mirror(&old)
            .mirror(&good)
            .open_options(verifier_options(&data))
            .mirror_poll_interval(Duration::from_millis(50))
            .backoff(Duration::from_millis(20), Duration::from_millis(200)),
        handle.clone(),
    )
    .unwrap();
    let stats = sync.shared_stats();
    until(
        "the revocation through the last mirror",
        Duration::from_secs(20),
        || decide(&handle, "fallback-jti", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    until(
        "the old mirror passed over as behind",
        Duration::from_secs(20),
        || stats.failures(SyncFailure::Behind) > 0,
    )
    .await;
    assert!(stats.failures(SyncFailure::Unreachable) > 0);
    assert!(stats.failures(SyncFailure::Status) > 0);

    // A withheld mirror, then the publisher.
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(30));
    let sync2 = SyncClient::start(
        SyncConfig::url(srv.url())
            .mirror(&withheld)
            .open_options(verifier_options(&data))
            .long_poll(Duration::from_millis(200))
            .mirror_poll_interval(Duration::from_millis(50))
            .backoff(Duration::from_millis(20), Duration::from_millis(200)),
        handle.clone(),
    )
    .unwrap();
    until(
        "the revocation through the publisher",
        Duration::from_secs(20),
        || decide(&handle, "fallback-jti", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    assert!(
        sync2.stats().failures(SyncFailure::Status) > 0,
        "the mirror was tried first"
    );
    drop((sync, sync2));
    srv.shutdown();
}

/// `ObjectPublisher` on its own: deltas chained, a rebase when a generation comes without a
/// delta, and the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_chain_as_deltas_and_rebase_without_one() {
    let dir = temp_dir("dist-chain");
    let bucket = dir.join("bucket");
    let dest = Destination::parse(&format!("file://{}", bucket.display())).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let mut objects = ObjectPublisher::new(dest.clone(), Some(key.clone()))
        .sweep_every(Duration::ZERO)
        .sweep_grace(Duration::ZERO);
    let g = |generation: u64, delta: bool| GenerationObjects {
        generation,
        parent: generation - 1,
        created_at: generation,
        snapshot: Bytes::from(vec![generation as u8; 1024]),
        delta: delta.then(|| Bytes::from(vec![generation as u8; 16])),
    };
    let options = revbloom::OpenOptions::new().verifying_key(key.verifying_key());
    let manifest = || {
        Manifest::decode(
            &std::fs::read(bucket.join(MANIFEST_FILE)).unwrap(),
            &options,
        )
        .unwrap()
    };
    for (generation, delta) in [(10, false), (11, true), (12, true)] {
        objects.publish(&g(generation, delta)).await.unwrap();
    }
    let m = manifest();
    assert_eq!(
        (m.generation, m.snapshot.generation, m.deltas.len()),
        (12, 10, 2)
    );
    // Another process that takes over (a new builder) continues the chain it finds.
    let mut next = ObjectPublisher::new(dest, Some(key.clone()))
        .sweep_every(Duration::ZERO)
        .sweep_grace(Duration::ZERO);
    assert_eq!(next.resume().await.unwrap(), Some(12));
    let up = next.publish(&g(13, true)).await.unwrap();
    assert!(up.delta && !up.snapshot && up.chain == 3, "{up:?}");
    // No delta (a layout change): a full snapshot starts a new chain.
    next.publish(&g(14, false)).await.unwrap();
    let m = manifest();
    assert_eq!(
        (m.generation, m.snapshot.generation, m.deltas.len()),
        (14, 14, 0)
    );
    // With no grace, the sweep leaves only what the manifest names.
    let names = |sub: &str| -> Vec<String> {
        std::fs::read_dir(bucket.join(sub))
            .map(|d| {
                d.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names("snapshots"), vec![m.snapshot.path.clone()]);
    assert_eq!(names("deltas"), Vec::<String>::new());
    // The old writer, behind: refused, the newer manifest kept.
    let e = objects.publish(&g(13, true)).await.unwrap_err();
    assert!(matches!(e, DistributeError::Superseded { .. }), "{e:?}");
    assert_eq!(manifest().generation, 14);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bucket that stops taking writes after start: `/readyz` says `upload_failing`, the
/// metrics count the errors, and once it takes writes again the next generation goes up and
/// the publisher is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bucket_is_reported_and_healed() {
    let (srv, data, dir) = publisher("dist-heal").await;
    let bucket = dir.join("bucket");
    let http = client();
    let readyz = || async {
        let r = http
            .get(format!("{}/readyz", srv.url()))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    until("a first manifest", Duration::from_secs(20), || {
        bucket.join(MANIFEST_FILE).is_file()
    })
    .await;
    assert_eq!(readyz().await.0, StatusCode::OK);
    // Objects can no longer be created: `snapshots` and `deltas` are files, not folders.
    let aside = |sub: &str| bucket.join(format!("{sub}.aside"));
    for sub in ["snapshots", "deltas"] {
        if bucket.join(sub).exists() {
            std::fs::rename(bucket.join(sub), aside(sub)).unwrap();
        }
        std::fs::write(bucket.join(sub), b"in the way").unwrap();
    }
    let exp = now() + 3600;
    revoke(&srv.url(), "heal-jti", exp).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz().await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                body["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == "upload_failing"),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never reported: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = http
        .get(format!("{}/metrics", srv.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("revbloom_upload_failing 1"), "{metrics}");
    assert!(
        !metrics.contains("revbloom_upload_errors_total 0"),
        "errors counted"
    );
    // Healed: the next generation goes up (a full snapshot), and the publisher is ready.
    for sub in ["snapshots", "deltas"] {
        std::fs::remove_file(bucket.join(sub)).unwrap();
        if aside(sub).exists() {
            std::fs::rename(aside(sub), bucket.join(sub)).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz().await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "never healed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the bucket holds now carries the revocation made while it failed.
    let (mirror, _) = start_mirror(Backing::Dir(bucket.clone())).await;
    let (handle, sync) = mirror_verifier(&data, &mirror, 30);
    until(
        "the revocation through the healed bucket",
        Duration::from_secs(20),
        || decide(&handle, "heal-jti", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    drop(sync);
    srv.shutdown();
}

/// Two replicas on one PostgreSQL, both configured with the same bucket: only the builder
/// uploads; when it goes away the other becomes builder, continues the bucket's manifest and
/// delta chain, and a verifier that reads only the mirror keeps enforcing old and new
/// revocations with generations that only increase, without a full download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_builder_continues_the_bucket() {
    use crate::support::pg::{shared_keys, PgCluster};
    use std::sync::atomic::Ordering::Relaxed;
    let pg = PgCluster::start().await;
    let dir = temp_dir("dist-failover");
    let bucket = dir.join("bucket");
    let (seal, signing, _) = shared_keys(&dir);
    let replica = |name: &str| {
        let mut c = config(dir.join(name));
        c.refresh_secs = 1;
        c.store = Some(pg.url());
        c.seal_key_file = Some(seal.clone());
        c.signing_key = Some(signing.clone());
        c.publish_to = Some(PublishTo::new(format!("file://{}", bucket.display())));
        c
    };
    let a = start(replica("a")).await;
    until("a builds", Duration::from_secs(20), || a.hub().is_builder()).await;
    let b = start(replica("b")).await;
    until("b follows", Duration::from_secs(20), || {
        b.hub().current().generation != 0
    })
    .await;
    assert!(!b.hub().is_builder(), "one builder");
    let verifier_options = revbloom::OpenOptions::new()
        .verifying_key(read_signing_key(&signing).unwrap().verifying_key())
        .seal_key(revbloom::snapshot::SealKey::from_file(&seal).unwrap());
    let (mirror, _) = start_mirror(Backing::Dir(bucket.clone())).await;
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(30));
    let sync = SyncClient::start(
        SyncConfig::mirrors([mirror.as_str()])
            .open_options(verifier_options)
            .mirror_poll_interval(Duration::from_millis(50))
            .backoff(Duration::from_millis(20), Duration::from_millis(200)),
        handle.clone(),
    )
    .unwrap();
    let stats = sync.shared_stats();
    let exp = now() + 3600;
    // Written through the follower, built by the builder, read from the bucket.
    revoke(&b.url(), "before-failover", exp).await;
    until(
        "enforced through the mirror",
        Duration::from_secs(20),
        || decide(&handle, "before-failover", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    let held = handle.generation().unwrap();
    let snapshots = stats.snapshots.load(Relaxed);
    a.shutdown();
    until("b builds", Duration::from_secs(20), || b.hub().is_builder()).await;
    revoke(&b.url(), "after-failover", exp).await;
    until(
        "the new builder's revocation through the mirror",
        Duration::from_secs(20),
        || decide(&handle, "after-failover", exp) == Decision::Verdict(Verdict::MaybeRevoked),
    )
    .await;
    assert!(handle.generation().unwrap() > held);
    assert_eq!(
        decide(&handle, "before-failover", exp),
        Decision::Verdict(Verdict::MaybeRevoked)
    );
    assert_eq!(
        decide(&handle, "never-revoked", exp),
        Decision::Verdict(Verdict::Clear),
        "control"
    );
    assert_eq!(stats.failures(SyncFailure::Rollback), 0);
    // The new builder continued both the layout and the bucket's delta chain.
    assert_eq!(
        stats.snapshots.load(Relaxed) - snapshots,
        0,
        "full snapshots fetched from the mirror across the failover"
    );
    drop(sync);
    b.shutdown();
}
