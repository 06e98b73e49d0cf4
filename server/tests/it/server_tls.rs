//! TLS on every link: `revbloom serve` with a certificate from a CA made here (rcgen), reached
//! by the CLI, the sync client, the HTTP exact source and raw rustls connections. Each "works
//! with the CA" has its control: the same without the CA (or with the wrong name) fails, and
//! says it is the certificate.
//!
//! The tests touch only `/healthz`, `/metrics`, the admin `POST`s with the admin token, the
//! exact lookup and the sync endpoints with default options.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use revbloom::sync::tls::{certificate_error, ClientTls};
use revbloom::sync::{SyncClient, SyncConfig, SyncError};
use revbloom::verify::{AsyncExactSource, ExactError, ExactQuery, HttpExactSource};
use revbloom::{SnapshotHandle, StalenessPolicy, Verdict};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::CertificateError;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::ca::{Ca, Leaf};
use crate::support::*;

/// Replace `path` with `text` by rename, as a certificate manager does.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A `revbloom serve` child process, killed when dropped.
struct Served {
    child: Child,
    url: String,
    addr: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `revbloom serve` over TLS with `leaf` (files in `dir`), reloading every 100 ms, with
/// the handshake timeout `handshake_ms` and a 30 s header timeout (so a connection closed
/// sooner was closed by the handshake bound).
fn serve_tls(dir: &Path, ca: &Ca, leaf: &Leaf, handshake_ms: u64) -> Served {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let config = dir.join("revbloom.json");
    let body = json!({
        "admin_token": TOKEN,
        "coalesce_ms": 20,
        "window": {"expected_per_bucket": 1000},
        "connections": {"header_read_timeout_ms": 30_000},
        "tls": {"cert_file": "/nonexistent/overridden-by-the-flag.crt", "key_file": "/nonexistent/k",
                "reload_interval_ms": 100, "handshake_timeout_ms": handshake_ms},
    });
    std::fs::write(&config, body.to_string()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revbloom"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    for v in [
        "REVBLOOM_ADMIN_TOKEN",
        "REVBLOOM_LISTEN",
        "REVBLOOM_DATA",
        "REVBLOOM_TLS_CERT",
        "REVBLOOM_TLS_KEY",
    ] {
        cmd.env_remove(v);
    }
    let (child, url) = spawn_serve(&mut cmd);
    let addr = url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not an https URL: {url}"))
        .parse()
        .unwrap();
    Served {
        child,
        url,
        addr,
        cert,
        key,
        ca: ca.pem_path.clone(),
    }
}

/// Run `revbloom ARGS` with the admin token in the environment.
fn revbloom(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revbloom"));
    cmd.args(args)
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
        .env_remove("REVBLOOM_SERVER")
        .env_remove("REVBLOOM_CA_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A reqwest client trusting `ca`.
fn https_client(ca: &Path) -> reqwest::Client {
    ClientTls::ca_file(ca)
        .reqwest_builder()
        .unwrap()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The certificate a new TLS connection to `addr` is served, trusting `ca`.
async fn served_certificate(addr: SocketAddr, ca: &Path) -> CertificateDer<'static> {
    let config = ClientTls::ca_file(ca).rustls_config().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake within 10 s")
        .expect("handshake succeeds");
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    certs[0].clone().into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (a) and (b): the CLI revokes over https with `--ca-file` (and `REVBLOOM_CA_FILE`), and
/// without the CA it fails with one line naming the certificate problem.
#[tokio::test]
async fn cli_talks_https_with_the_ca_file_and_refuses_an_unknown_issuer() {
    let dir = temp_dir("tls-cli");
    let ca = Ca::new(&dir, "ca");
    let srv = serve_tls(&dir, &ca, &ca.leaf(&["localhost", "127.0.0.1"], 1), 2_000);
    let ca_path = srv.ca.to_str().unwrap();

    let out = revbloom(
        &[
            "revoke",
            "--jti",
            "tls-1",
            "--exp",
            "+3600",
            "--server",
            &srv.url,
            "--ca-file",
            ca_path,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accepted"], 1, "{v}");

    // The variable stands for the flag; `cutoff` shares the client.
    let out = revbloom(
        &["cutoff", "--sub", "alice", "--server", &srv.url],
        &[("REVBLOOM_CA_FILE", &srv.ca)],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Control: the system's trust store does not know the test CA.
    let out = revbloom(
        &[
            "revoke", "--jti", "tls-2", "--exp", "+3600", "--server", &srv.url,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    assert!(err.contains("--ca-file"), "the line says what to do: {err}");

    // A CA file that is not one: refused before any connection, naming the file.
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "hello\n").unwrap();
    let out = revbloom(
        &[
            "revoke",
            "--jti",
            "tls-3",
            "--exp",
            "+3600",
            "--server",
            &srv.url,
            "--ca-file",
            bogus.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bogus.pem"), "{}", stderr(&out));

    // Only the first revocation arrived.
    let http = https_client(&srv.ca);
    let v = lookup(&http, &srv.url, "tls-1").await;
    assert_eq!(v["revoked"], true, "{v}");
    let v = lookup(&http, &srv.url, "tls-2").await;
    assert_eq!(v["revoked"], false, "{v}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// (c) and (d): the sync client and the HTTP exact source over https with the CA file; without
/// it the sync client never loads a snapshot and says why, and the exact source is
/// unreachable for the same reason. A wrong host name is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_client_and_exact_source_trust_the_ca_file_only() {
    let dir = temp_dir("tls-sync");
    let ca = Ca::new(&dir, "ca");
    let srv = serve_tls(&dir, &ca, &ca.leaf(&["localhost", "127.0.0.1"], 1), 2_000);
    let http = https_client(&srv.ca);
    let exp = now() + 3600;
    let r = http
        .post(format!("{}/v1/revocations", srv.url))
        .bearer_auth(TOKEN)
        .json(&json!({"jti": "synced-1", "exp": exp}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
    // The publisher's keys: snapshots are signed and sealed, lookups need the read token.
    let data = dir.join("data");
    let keys = crate::support::verifier_options(&data);
    let read_token = crate::support::publisher_keys(&data).0.read_token();
    let sync = SyncClient::start(
        SyncConfig::url(&srv.url)
            .ca_file(&srv.ca)
            .open_options(keys.clone())
            .long_poll(Duration::from_secs(2)),
        handle.clone(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = handle
            .current()
            .is_some_and(|v| v.check("synced-1", Some(exp)) == Verdict::MaybeRevoked);
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation never reached the sync client; last error: {:?}",
            sync.stats().last_error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        handle.current().unwrap().check("other", Some(exp)),
        Verdict::Clear
    );

    // Control: the system's store does not know the test CA.
    let untrusting = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(120));
    let refused = SyncClient::start(
        SyncConfig::url(&srv.url)
            .open_options(keys.clone())
            .backoff(Duration::from_millis(20), Duration::from_millis(100)),
        untrusting.clone(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        if let Some(e) = refused.stats().last_error() {
            break e;
        }
        assert!(Instant::now() < deadline, "no error recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        last.contains("invalid peer certificate: UnknownIssuer"),
        "{last}"
    );
    assert_eq!(untrusting.generation(), None);
    assert_eq!(
        refused
            .stats()
            .snapshots
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // An unusable CA file fails `start` instead of leaving a client that never syncs.
    let e = SyncClient::start(
        SyncConfig::url(&srv.url)
            .open_options(keys.clone())
            .ca_file(dir.join("no-such-ca.pem")),
        untrusting.clone(),
    )
    .err()
    .expect("start refuses a missing CA file");
    assert!(matches!(e, SyncError::Tls(_)), "{e}");
    assert!(e.to_string().contains("no-such-ca.pem"), "{e}");

    // The exact source.
    let query = |jti| ExactQuery {
        iss: None,
        jti,
        exp: Some(exp),
        generation: 1,
        now: now(),
        stale: false,
    };
    let exact = HttpExactSource::with_ca_file(&srv.url, &srv.ca)
        .unwrap()
        .bearer(read_token.clone());
    assert!(exact.is_revoked_async(&query("synced-1")).await.unwrap());
    assert!(!exact
        .is_revoked_async(&query("never-revoked"))
        .await
        .unwrap());
    let untrusted = HttpExactSource::new(&srv.url).unwrap().bearer(read_token);
    let e = untrusted
        .is_revoked_async(&query("synced-1"))
        .await
        .unwrap_err();
    assert!(matches!(e, ExactError::Unreachable(_)), "{e}");

    assert_eq!(
        certificate_error(&e),
        Some(&CertificateError::UnknownIssuer),
        "{e}"
    );

    // Right CA, wrong name: the certificate names localhost and 127.0.0.1 only.
    let wrong_name = ClientTls::ca_file(&srv.ca)
        .reqwest_builder()
        .unwrap()
        .no_proxy()
        .resolve("wrong.example", srv.addr)
        .build()
        .unwrap();
    let e = wrong_name
        .get(format!("https://wrong.example:{}/healthz", srv.addr.port()))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            certificate_error(&e),
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{}",
        revbloom::sync::tls::error_chain(&e)
    );
    // And the right name through the same route works.
    let r = http
        .get(format!("https://localhost:{}/healthz", srv.addr.port()))
        .send()
        .await;
    // `localhost` may resolve to ::1 first, where nothing listens; the certificate is what is
    // checked here, so only a certificate error would fail the test.
    if let Err(e) = &r {
        assert!(certificate_error(e).is_none(), "{e}");
    }
    drop(sync);
    drop(refused);
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// (e): a new pair written over the files is served to new connections within a deadline; a
/// garbage certificate, and a certificate whose key is not in the key file, are refused,
/// counted, and the previous pair stays served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_and_a_bad_pair_keeps_the_old_one() {
    let dir = temp_dir("tls-reload");
    let ca = Ca::new(&dir, "ca");
    let first = ca.leaf(&["localhost", "127.0.0.1"], 1);
    let srv = serve_tls(&dir, &ca, &first, 2_000);
    let http = https_client(&srv.ca);
    assert_eq!(served_certificate(srv.addr, &srv.ca).await, first.der);

    let second = ca.leaf(&["127.0.0.1", "reloaded.test"], 2);
    assert_ne!(second.der, first.der);
    replace_file(&srv.key, &second.key_pem);
    replace_file(&srv.cert, &second.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(srv.addr, &srv.ca).await != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&http, &srv.url, "revbloom_tls_reloads_total").await >= 1);

    // Garbage over the certificate: refused, the second pair stays.
    let failures = metric(&http, &srv.url, "revbloom_tls_reload_failures_total").await;
    replace_file(&srv.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&http, &srv.url, "revbloom_tls_reload_failures_total").await <= failures {
        assert!(Instant::now() < deadline, "the garbage was never looked at");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_certificate(srv.addr, &srv.ca).await, second.der);

    // A valid certificate for another key: refused too.
    let failures = metric(&http, &srv.url, "revbloom_tls_reload_failures_total").await;
    let third = ca.leaf(&["127.0.0.1"], 3);
    replace_file(&srv.cert, &third.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&http, &srv.url, "revbloom_tls_reload_failures_total").await <= failures {
        assert!(
            Instant::now() < deadline,
            "the mismatched pair was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_certificate(srv.addr, &srv.ca).await, second.der);

    // Its key arrives: now the pair matches and is served.
    replace_file(&srv.key, &third.key_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(srv.addr, &srv.ca).await != third.der {
        assert!(
            Instant::now() < deadline,
            "the third certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// (f): a connection that never sends a ClientHello is closed by the handshake timeout (the
/// header timeout is 30 s), a plain-HTTP request to the TLS port is closed without an HTTP
/// answer, neither holds up other clients, and `/healthz` over TLS still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_bounded_and_failures_do_not_stop_the_listener() {
    let dir = temp_dir("tls-handshake");
    let ca = Ca::new(&dir, "ca");
    let srv = serve_tls(&dir, &ca, &ca.leaf(&["127.0.0.1"], 1), 1_500);
    let http = https_client(&srv.ca);

    let t0 = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    // While that connection sits in its handshake, others are served at once.
    let r = http
        .get(format!("{}/healthz", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t0.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        t0.elapsed()
    );
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the silent connection is closed well before the 30 s header timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1_400),
        "closed too soon: {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    let mut plain = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("closed within the handshake bound")
        .ok();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // A client that does not trust the certificate: its handshake fails, nothing else does.
    let untrusted = ClientTls::system_roots()
        .reqwest_builder()
        .unwrap()
        .no_proxy()
        .build()
        .unwrap();
    assert!(untrusted
        .get(format!("{}/healthz", srv.url))
        .send()
        .await
        .is_err());

    let r = http
        .get(format!("{}/healthz", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert!(metric(&http, &srv.url, "revbloom_tls_handshake_timeouts_total").await >= 1);
    assert!(metric(&http, &srv.url, "revbloom_tls_handshake_failures_total").await >= 2);
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad or missing certificate or key at start: one line naming the file, exit 1.
#[test]
fn serve_refuses_unusable_certificate_files_naming_them() {
    let dir = temp_dir("tls-start");
    let ca = Ca::new(&dir, "ca");
    let leaf = ca.leaf(&["127.0.0.1"], 1);
    let other = ca.leaf(&["127.0.0.1"], 2);
    let cert = dir.join("good.crt");
    let key = dir.join("good.key");
    let other_key = dir.join("other.key");
    let garbage = dir.join("garbage.crt");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&other_key, &other.key_pem).unwrap();
    std::fs::write(&garbage, "not pem\n").unwrap();
    let missing = dir.join("missing.crt");
    let cases: [(&Path, &Path, &str); 4] = [
        (&missing, &key, "missing.crt"),
        (&garbage, &key, "garbage.crt"),
        (&cert, &cert, "good.crt"),
        (&cert, &other_key, "other.key"),
    ];
    for (c, k, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.join("data"))
            .arg("--tls-cert")
            .arg(c)
            .arg("--tls-key")
            .arg(k)
            .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{named}: {err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("revbloom: error:"))
            .unwrap_or_else(|| panic!("{named}: {err}"));
        assert!(line.contains(named), "{line}");
        assert!(out.stdout.is_empty(), "never listened: {:?}", out.stdout);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
