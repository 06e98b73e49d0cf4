//! Static distribution through object storage, end to end with real components: an
//! in-process publisher, its generations relayed into a `file://` folder and into a real S3
//! server (moto) by `ObjectPublisher`, a plain static HTTP server in front of each as the
//! mirror, and verifiers that know only the mirror (never the publisher's address).

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
use revbloom_server::distribute::{
    Destination, DistributeError, GenerationObjects, ObjectPublisher,
};
use revbloom_server::publish::DeltaChain;
use revbloom_server::{Hub, Running};
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

/// What the integrator's wiring does: every generation the publisher makes goes to the
/// object store, with the delta from the generation uploaded before it.
fn relay(hub: Hub, mut objects: ObjectPublisher) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = hub.subscribe();
        let mut prev: Option<u64> = None;
        loop {
            let cur = rx.borrow_and_update().clone();
            if cur.generation != 0 && Some(cur.generation) != prev {
                let delta = prev.and_then(|p| match hub.deltas_since(p, &cur) {
                    DeltaChain::Chain { bytes, .. } => Some(bytes),
                    _ => None,
                });
                let g = GenerationObjects {
                    generation: cur.generation,
                    parent: prev.unwrap_or(0),
                    created_at: cur.created_at,
                    snapshot: cur.snapshot.clone(),
                    delta,
                };
                objects.publish(&g).await.expect("upload a generation");
                prev = Some(cur.generation);
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
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

async fn publisher(name: &str) -> (Running, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let data = dir.join("data");
    let mut c = config(data.clone());
    // A generation every second even without revocations: what keeps mirror readers fresh.
    c.refresh_secs = 1;
    (start(c).await, data, dir)
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
    let dest = Destination::parse(&format!("file://{}", bucket.display())).unwrap();
    let key = read_signing_key(&data.join("signing.key")).unwrap();
    let objects = ObjectPublisher::new(dest, Some(key)).sweep_every(Duration::ZERO);
    objects.check_writable().await.unwrap();
    let _relay = relay(srv.hub().clone(), objects);
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

    let (srv, data, _dir) = publisher("dist-s3").await;
    let dest = Destination::parse_with(&url, moto.options(&moto.writer)).unwrap();
    let key = read_signing_key(&data.join("signing.key")).unwrap();
    let objects = ObjectPublisher::new(dest.clone(), Some(key.clone()));
    objects.check_writable().await.unwrap();
    let _relay = relay(srv.hub().clone(), objects);

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
    let dest = Destination::parse(&format!("file://{}", bucket.display())).unwrap();
    let key = read_signing_key(&data.join("signing.key")).unwrap();
    let _relay = relay(srv.hub().clone(), ObjectPublisher::new(dest, Some(key)));
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

/// The background uploader the publisher hands generations to: in order, deltas chained,
/// a rebase when a generation comes without a delta, and its status follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_uploader_chains_deltas_and_rebases() {
    let dir = temp_dir("dist-spawn");
    let bucket = dir.join("bucket");
    let dest = Destination::parse(&format!("file://{}", bucket.display())).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (uploads, task) = ObjectPublisher::new(dest, Some(key.clone()))
        .sweep_every(Duration::ZERO)
        .sweep_grace(Duration::ZERO)
        .spawn(16, Duration::from_millis(50), shutdown.clone());
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
        uploads.offer(g(generation, delta));
    }
    let status = Arc::clone(uploads.status());
    until("generation 12 uploaded", Duration::from_secs(10), || {
        status.generation.load(std::sync::atomic::Ordering::Relaxed) == 12
    })
    .await;
    let m = manifest();
    assert_eq!(
        (m.generation, m.snapshot.generation, m.deltas.len()),
        (12, 10, 2)
    );
    // No delta (a layout change): a full snapshot starts a new chain.
    uploads.offer(g(13, false));
    until("generation 13 uploaded", Duration::from_secs(10), || {
        status.generation.load(std::sync::atomic::Ordering::Relaxed) == 13
    })
    .await;
    let m = manifest();
    assert_eq!(
        (m.generation, m.snapshot.generation, m.deltas.len()),
        (13, 13, 0)
    );
    assert!(!status.failing.load(std::sync::atomic::Ordering::Relaxed));
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
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
