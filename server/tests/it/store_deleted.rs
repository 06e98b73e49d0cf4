//! The whole data folder deleted underneath a running publisher (`rm -rf DATA`): nothing is
//! acknowledged into the deleted file, `/readyz` says `store_replaced`, and a restart is
//! refused with one line until `--init`, which begins a new history whose generations continue
//! above the old ones (the clock is their floor), so a verifier that followed the old history
//! takes it.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use revbloom::{SnapshotHandle, StalenessPolicy};
use serde_json::{json, Value};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_revbloom");

/// A `revbloom serve` child, killed when dropped.
type Server = ServeChild;

fn serve(data: &std::path::Path, init: bool) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN);
    if init {
        cmd.arg("--init");
    }
    cmd
}

fn start_serve(data: &std::path::Path, init: bool) -> Server {
    let (child, url) = spawn_serve(&mut serve(data, init));
    Server { child, url }
}

/// SIGTERM `child` and wait for it, at most 30 s.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn snapshot(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = http.get(format!("{url}/v1/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

async fn revoke(http: &reqwest::Client, url: &str, jti: &str) -> (u16, Value) {
    let r = http
        .post(format!("{url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&json!({"jti": jti, "exp": now() + 3600}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_deleted_underneath_is_detected_and_a_restart_needs_init() {
    let base = temp_dir("deleted");
    let data = base.join("data");
    let http = client();
    let mut server = start_serve(&data, false);
    let url = server.url.clone();
    assert_eq!(revoke(&http, &url, "old-history").await.0, 200);
    // A verifier following this history, at its newest generation.
    let t = Instant::now();
    let old = loop {
        let bytes = snapshot(&http, &url).await;
        let view = crate::support::open_published(&data, &bytes);
        if view.check(b"old-history", Some(now() + 3600)) == revbloom::Verdict::MaybeRevoked {
            break view;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let old_generation = old.generation();
    let verifier =
        SnapshotHandle::with_snapshot(old, StalenessPolicy::FailClosed, Duration::from_secs(3600));

    std::fs::remove_dir_all(&data).unwrap();
    // Nothing is acknowledged into the deleted file.
    let (status, v) = revoke(&http, &url, "into-the-void").await;
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"].as_str().is_some() && v["message"].as_str().is_some(),
        "{v}"
    );
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("store_replaced")),
        "{v}"
    );
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The folder's marker is back, and nothing else: no new, empty store.
    assert!(data.join(revbloom_server::store::INIT_MARKER).exists());
    assert!(!data.join(revbloom_server::store::STORE_FILE).exists());
    assert!(terminate(&mut server.child).success());

    // A restart without --init is refused with one line; it must not start serving.
    let mut child = serve(&data, false)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a restart over the deleted history kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    // One error line (after the line saying where the admin token came from), and nothing
    // was served.
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("revbloom: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("missing") && errors[0].contains("--init"),
        "{err}"
    );
    assert_eq!(err.lines().last(), Some(errors[0]), "{err}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(!out.contains("listening"), "{out}");

    // --init begins a new history: the old revocation gone, but generations continue above
    // the old ones (the clock is their floor), so a verifier of the old history takes it
    // instead of refusing it as a rollback and going stale.
    let fresh = start_serve(&data, true);
    let bytes = snapshot(&http, &fresh.url).await;
    // The keys in the data folder went with it: the new history has new ones (a deployment
    // that names its key files in the configuration keeps them).
    let view = crate::support::open_published(&data, &bytes);
    assert!(
        view.generation() > old_generation,
        "{} <= {old_generation}",
        view.generation()
    );
    assert_eq!(
        lookup(&http, &fresh.url, "old-history").await["revoked"],
        false
    );
    let taken = verifier.replace(view);
    assert!(taken.is_ok(), "{taken:?}");
    drop(fresh);
    let _ = std::fs::remove_dir_all(&base);
}
