//! Storage faults on the real binary: the file size limit (RLIMIT_FSIZE, set on the running
//! publisher with prlimit, SIGXFSZ ignored) makes every write that grows the store fail with
//! EFBIG, as a full disk would. Writes must then get 503 and `/readyz` say why; once the limit
//! is raised the store must heal by itself, and every revocation acknowledged before, during
//! and after must be in the published snapshot. Also: a damaged store and an emptied store
//! are refused at start with one line and exit 1, and `check-store` says so.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use revbloom::Verdict;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_revbloom");

/// A `revbloom serve` child, killed when dropped.
type Server = ServeChild;

fn spawn(data: &std::path::Path) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN);
    // SAFETY: `signal` is async-signal-safe, and between fork and exec nothing else runs. An
    // ignored disposition survives exec, so the publisher gets EFBIG instead of being killed.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let (child, url) = spawn_serve(&mut cmd);
    Server { child, url }
}

/// Set the soft file size limit of process `pid` (the hard limit stays unlimited).
fn set_fsize(pid: u32, soft: u64) {
    let lim = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: libc::RLIM64_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit64 for the call's duration; the old value is not read.
    let rc = unsafe {
        libc::prlimit64(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

async fn revoke(http: &reqwest::Client, url: &str, jtis: &[String], exp: u64) -> u16 {
    let items: Vec<Value> = jtis.iter().map(|j| json!({"jti": j, "exp": exp})).collect();
    http.post(format!("{url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&json!(items))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get(http: &reqwest::Client, url: &str, path: &str) -> (u16, Value) {
    let r = http.get(format!("{url}{path}")).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_writes_heals_and_publishes_everything_acknowledged() {
    let data = temp_dir("fsize");
    let server = spawn(&data);
    let (http, url) = (client(), server.url.clone());
    let exp = now() + 7200;
    let mut acked: Vec<String> = Vec::new();
    let batch = |tag: &str, n: usize| -> Vec<String> {
        (0..50)
            .map(|k| format!("{tag}-{n}-{k}-{}", "x".repeat(80)))
            .collect()
    };
    let first = batch("before", 0);
    assert_eq!(revoke(&http, &url, &first, exp).await, 200);
    acked.extend(first);

    // The store may not grow any more: the next writes that need new pages fail.
    let size = std::fs::metadata(data.join("revbloom.redb")).unwrap().len();
    set_fsize(server.child.id(), size);
    let mut refused = false;
    for n in 1..400 {
        let jtis = batch("full", n);
        match revoke(&http, &url, &jtis, exp).await {
            200 => acked.extend(jtis),
            503 => {
                refused = true;
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(refused, "the store never filled up");
    // Still broken: refused again, and not ready for the stated reason; alive all along.
    assert_eq!(revoke(&http, &url, &batch("still", 0), exp).await, 503);
    let (s, v) = get(&http, &url, "/readyz").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["ready"], false);
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("store_write_failing")),
        "{v}"
    );
    assert_eq!(get(&http, &url, "/healthz").await.0, 200);
    let (_, metrics) = {
        let r = http.get(format!("{url}/metrics")).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert!(metrics.contains("\nrevbloom_ready 0\n"), "{metrics}");
    assert!(metrics.contains("revbloom_not_ready_reason{reason=\"store_write_failing\"} 1\n"));

    // Space is back: the store reopens by itself and writes succeed again.
    set_fsize(server.child.id(), libc::RLIM64_INFINITY);
    let t0 = Instant::now();
    let after = batch("after", 0);
    loop {
        match revoke(&http, &url, &after, exp).await {
            200 => break,
            503 => {}
            s => panic!("unexpected status {s}"),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the store never healed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acked.extend(after);

    // Every acknowledged revocation reaches a published snapshot, and readiness comes back.
    let t0 = Instant::now();
    loop {
        let bytes = fetch_snapshot(&http, &url).await;
        let view = open_published(&data, &bytes);
        let missing = acked
            .iter()
            .filter(|j| view.check(j.as_bytes(), Some(exp)) != Verdict::MaybeRevoked)
            .count();
        let (ready, v) = get(&http, &url, "/readyz").await;
        if missing == 0 && ready == 200 {
            assert_eq!(v["ready"], true);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{missing} of {} acknowledged revocations unpublished; readyz {ready} {v}",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the store itself has them (exact lookups read the reopened file).
    for j in acked.iter().step_by(37) {
        assert_eq!(lookup(&http, &url, j).await["revoked"], true, "{j}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// Run `revbloom ARGS` to completion; (exit code, stdout, stderr).
fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_emptied_stores_are_refused_at_start_with_what_to_do() {
    let data = temp_dir("refuse");
    {
        let server = spawn(&data);
        let jtis: Vec<String> = (0..200).map(|k| format!("j{k}")).collect();
        assert_eq!(
            revoke(&client(), &server.url, &jtis, now() + 7200).await,
            200
        );
    }
    let d = data.as_os_str();
    let (code, out, _) = run(&["check-store".as_ref(), "--data".as_ref(), d]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ok: ") && out.contains("200 revocations"),
        "{out}"
    );

    // Scribble over the middle of the file, where the tree pages are.
    let store = data.join("revbloom.redb");
    let mut bytes = std::fs::read(&store).unwrap();
    let mid = bytes.len() / 2;
    bytes[4096..mid].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&store, &bytes).unwrap();
    let (code, _, err) = run(&["check-store".as_ref(), "--data".as_ref(), d]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("damaged: "), "{err}");
    let serve = |extra: &[&str]| {
        let mut a: Vec<&std::ffi::OsStr> = vec!["serve".as_ref(), "--listen".as_ref()];
        a.extend(["127.0.0.1:0".as_ref(), "--data".as_ref(), d]);
        a.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
        run(&a)
    };
    let (code, _, err) = serve(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("revbloom.redb") && err.contains("backup") && err.contains("check-store"),
        "{err}"
    );

    // Emptied: refused, also with --init? No: --init starts over only when the store is
    // empty or missing, which it now is.
    std::fs::write(&store, b"").unwrap();
    let (code, _, err) = serve(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("empty") && err.contains("--init"), "{err}");
    let (code, _, err) = run(&["check-store".as_ref(), "--data".as_ref(), d]);
    assert_eq!(code, 1, "{err}");
    let server = {
        // `--init` is accepted and the publisher starts on a new, empty history.
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--init", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("revbloom: listening on "), "{line:?}");
        Server {
            child,
            url: String::new(),
        }
    };
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_replaced_underneath_is_not_ready_and_refuses_writes() {
    let data = temp_dir("replaced");
    let running = start(config(data.clone())).await;
    let (http, url) = (client(), format!("http://{}", running.local_addr()));
    let exp = now() + 7200;
    assert_eq!(revoke(&http, &url, &["a".into()], exp).await, 200);
    let (s, v) = get(&http, &url, "/readyz").await;
    assert_eq!((s, v["ready"].clone()), (200, json!(true)), "{v}");
    // A restore over the running publisher's file: not the file it has open.
    let store = data.join("revbloom.redb");
    std::fs::copy(&store, data.join("restored")).unwrap();
    std::fs::rename(data.join("restored"), &store).unwrap();
    assert_eq!(revoke(&http, &url, &["b".into()], exp).await, 503);
    let (s, v) = get(&http, &url, "/readyz").await;
    assert_eq!(s, 503, "{v}");
    // `publish_failing` may join it: the publisher's generation write is refused too.
    let reasons = v["reasons"].as_array().unwrap();
    assert!(reasons.contains(&json!("store_replaced")), "{v}");
    running.shutdown();
    let _ = running.wait().await;
    let _ = std::fs::remove_dir_all(&data);
}
