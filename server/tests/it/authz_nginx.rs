//! `revbloom authz` behind a real NGINX (`auth_request`), end to end: a publisher, the sidecar
//! binary following it, an upstream that echoes the `X-Auth-Sub` it receives, and NGINX run
//! with the shipped `deploy/nginx/revbloom-authz.conf` (its addresses substituted).
//!
//! A valid token reaches the upstream with its `sub`; a revoked one and a cut-off session get
//! NGINX's 401 carrying the sidecar's challenge; garbage `Authorization` headers never pass;
//! a slow or silent client is cut off by the check listener; and once the publisher is gone
//! and the snapshot is older than `--max-age`, NGINX answers 503 — never 200 — and `/readyz`
//! says why.
//!
//! NGINX is required: the test fails (it never skips) when it is not installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{client, config, now, start, temp_dir, TOKEN};

const SECRET: &str = "authz-nginx-test-secret-0123456789";
/// The sidecar's `--max-age`; the publisher republishes every second, far inside it.
const MAX_AGE_SECS: u64 = 5;
/// Far above anything here should take: a revocation reaches the sidecar in about a second,
/// staleness in `MAX_AGE_SECS` plus a second.
const DEADLINE: Duration = Duration::from_secs(20);

/// The NGINX binary: on PATH, else Debian's /usr/sbin/nginx.
pub fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .expect(
            "NGINX is not installed: this test runs the real proxy. Install the `nginx` package \
             (apt-get install nginx; .ci/run does it) and run the tests again",
        )
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sidecar: its process, the stdout it prints its addresses on (kept open), and its URLs.
pub struct Authz {
    _proc: Proc,
    _stdout: BufReader<ChildStdout>,
    /// The check listener's base URL.
    pub check: String,
    /// The admin listener's base URL.
    pub admin: String,
    /// The gRPC listener's URL, when started with `--grpc-listen`.
    pub grpc: Option<String>,
}

fn spawn_authz(publisher: &str, data: &Path, dir: &Path) -> Authz {
    let secret = dir.join("hs256.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let mut args: Vec<std::ffi::OsString> = vec!["--hs256-secret-file".into(), secret.into()];
    args.extend(["--max-age".into(), format!("{MAX_AGE_SECS}s").into()]);
    spawn_authz_with(publisher, data, dir, args)
}

/// `revbloom authz` on random loopback ports following `publisher` (keys from its data folder
/// `data`), its cache in `dir`, forwarding `sub` as `x-auth-sub`, with `extra` arguments (the
/// token keys at least).
pub fn spawn_authz_with(
    publisher: &str,
    data: &Path,
    dir: &Path,
    extra: Vec<std::ffi::OsString>,
) -> Authz {
    let grpc = extra.iter().any(|a| a == "--grpc-listen");
    let mut child = Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args([
            "authz",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--publisher")
        .arg(publisher)
        .arg("--publisher-data")
        .arg(data)
        .arg("--cache")
        .arg(dir.join("authz-snapshot.rbs"))
        .args(["--forward-claim", "sub=x-auth-sub"])
        .args(["--header-read-timeout", "2s"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("REVBLOOM_AUTHZ_HS256_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn revbloom authz");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let proc = Proc(child);
    let mut line = |prefix: &str| {
        let mut l = String::new();
        let _ = stdout.read_line(&mut l);
        l.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("revbloom authz did not start: {l:?}"))
            .to_owned()
    };
    let check = line("revbloom: authz checks on ");
    let admin = line("revbloom: authz admin on ");
    let grpc = grpc.then(|| line("revbloom: authz ext_authz gRPC on "));
    Authz {
        _proc: proc,
        _stdout: stdout,
        check,
        admin,
        grpc,
    }
}

/// An upstream that answers `sub=<X-Auth-Sub it received>` on every path.
async fn spawn_upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let sub = headers
            .get_all("x-auth-sub")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(",");
        format!("sub={sub}")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `deploy/nginx/revbloom-authz.conf` with its three addresses replaced, inside a minimal
/// `nginx.conf` whose pid, logs and temp paths are all under `dir`.
pub fn nginx_conf(dir: &Path, listen: u16, authz: &str, upstream: &str) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/revbloom-authz.conf");
    let mut site = std::fs::read_to_string(&shipped).unwrap();
    for (from, to) in [
        ("server 127.0.0.1:8760;", format!("server {authz};")),
        ("server 127.0.0.1:8080;", format!("server {upstream};")),
        (
            "listen 127.0.0.1:8000;",
            format!("listen 127.0.0.1:{listen};"),
        ),
    ] {
        assert_eq!(
            site.matches(from).count(),
            1,
            "deploy/nginx/revbloom-authz.conf should hold `{from}` once (the test substitutes it)"
        );
        site = site.replace(from, &to);
    }
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("site.conf"), site).unwrap();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  \
         proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  \
         uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
         include {d}/site.conf;\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// `nginx` with its prefix, configuration and error log in `dir`.
fn nginx_command(dir: &Path, conf: &Path) -> Command {
    let mut c = Command::new(nginx_binary());
    c.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"));
    c
}

/// `nginx -t` on `conf`; fails the test with NGINX's message when it refuses it.
pub fn nginx_test(dir: &Path, conf: &Path) {
    let out = nginx_command(dir, conf)
        .arg("-t")
        .output()
        .expect("run nginx -t");
    assert!(
        out.status.success(),
        "nginx -t refused the configuration:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run NGINX on `conf` (after `nginx -t`) until it accepts connections on `port`.
fn spawn_nginx(dir: &Path, conf: &Path, port: u16) -> Proc {
    nginx_test(dir, conf);
    let mut cmd = nginx_command(dir, conf);
    let proc = Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx"),
    );
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        assert!(t.elapsed() < DEADLINE, "nginx never listened:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    proc
}

fn token(jti: &str, sub: &str, sid: &str) -> String {
    let t = now();
    let claims = json!({"jti": jti, "sub": sub, "sid": sid, "iat": t - 2, "exp": t + 600});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// NGINX's answer to `GET /app` with `authorization` (raw bytes) if any: status,
/// `WWW-Authenticate`, body.
async fn get(
    http: &reqwest::Client,
    base: &str,
    authorization: Option<&[u8]>,
) -> (StatusCode, String, String) {
    let mut req = http.get(format!("{base}/app"));
    if let Some(a) = authorization {
        req = req.header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(a).unwrap(),
        );
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(" | ");
    (status, www, res.text().await.unwrap_or_default())
}

fn bearer(t: &str) -> Vec<u8> {
    format!("Bearer {t}").into_bytes()
}

/// Poll until `want` holds for NGINX's answer to `authorization`; that answer.
async fn until(
    http: &reqwest::Client,
    base: &str,
    authorization: &[u8],
    what: &str,
    want: impl Fn(StatusCode) -> bool,
) -> (StatusCode, String, String) {
    let t = Instant::now();
    loop {
        let r = get(http, base, Some(authorization)).await;
        if want(r.0) {
            return r;
        }
        assert!(
            t.elapsed() < DEADLINE,
            "{what}: still {r:?} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(http: &reqwest::Client, admin: &str) -> (StatusCode, Value) {
    let r = http.get(format!("{admin}/readyz")).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Whether the check listener closes a connection that sent `sent` and then nothing, within
/// `limit` (its header read timeout is 2 s).
fn closed_within(addr: &str, sent: &[u8], limit: Duration) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(sent).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    let t = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) if t.elapsed() < limit => return true,
            // hyper may answer a timed-out head with 408 before closing.
            Ok(_) => continue,
            _ => return false,
        }
    }
}

/// The status line the check listener answers to the raw `request`.
fn raw_status(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    // The listener may answer and close before it has read everything.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_allows_denies_and_fails_closed_through_revbloom_authz() {
    let dir = temp_dir("authz-nginx");
    let data = dir.join("publisher");
    let mut c = config(data.clone());
    c.refresh_secs = 1;
    let publisher = start(c).await;
    let pub_url = publisher.url();
    let upstream = spawn_upstream().await;
    let authz = spawn_authz(&pub_url, &data, &dir);
    let authz_addr = authz.check.trim_start_matches("http://").to_owned();
    let port = free_port();
    let conf = nginx_conf(&dir.join("nginx"), port, &authz_addr, &upstream.to_string());
    let _nginx = spawn_nginx(&dir.join("nginx"), &conf, port);
    let base = format!("http://127.0.0.1:{port}");
    let http = client();

    let t = Instant::now();
    while readyz(&http, &authz.admin).await.0 != StatusCode::OK {
        assert!(t.elapsed() < DEADLINE, "the sidecar never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A valid token reaches the upstream, which sees the sidecar's X-Auth-Sub and not the
    // client's.
    let alice = bearer(&token("j-alice", "alice", "s-alice"));
    let (status, _, body) = get(&http, &base, Some(&alice)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "sub=alice"));
    let forged = http
        .get(format!("{base}/app"))
        .header("authorization", alice.clone())
        .header("x-auth-sub", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.text().await.unwrap(), "sub=alice");

    // No token: NGINX's 401 with the sidecar's plain challenge.
    let (status, www, _) = get(&http, &base, None).await;
    assert_eq!((status, www.as_str()), (StatusCode::UNAUTHORIZED, "Bearer"));
    // The sidecar's health paths, reached through the proxy, are checks like any other.
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Garbage Authorization headers never pass.
    let long = bearer(&"a".repeat(20_000));
    let garbage: [(&[u8], &str); 8] = [
        (b"abc", "Bearer"),
        (b"Basic dXNlcjpwYXNz", "Bearer"),
        (b"Bearer", "invalid_request"),
        (b"Bearer tok%en", "invalid_request"),
        (b"Bearer a b", "invalid_request"),
        (b"Bearer \xff\xfe", "invalid_request"),
        (b"Bearer not-a-jwt", "invalid_token"),
        (b"Bearer e30.e30.e30", "invalid_token"),
    ];
    for (auth, challenge) in garbage {
        let (status, www, _) = get(&http, &base, Some(auth)).await;
        let shown = String::from_utf8_lossy(auth);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{shown}: {www}");
        assert!(www.contains(challenge), "{shown}: {www:?}");
        assert!(
            !www.contains(" | "),
            "{shown}: one challenge expected: {www:?}"
        );
    }
    // Longer than NGINX's header buffers: NGINX itself refuses it.
    let (status, _, _) = get(&http, &base, Some(&long)).await;
    assert!(status.is_client_error(), "{status}");

    // Revoked through the publisher's admin API: NGINX says 401 with the sidecar's
    // invalid_token challenge within the deadline.
    let bob_jti = "j-bob";
    let bob = bearer(&token(bob_jti, "bob", "s-bob"));
    assert_eq!(get(&http, &base, Some(&bob)).await.0, StatusCode::OK);
    let r = http
        .post(format!("{pub_url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&json!({"jti": bob_jti, "exp": now() + 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, www, _) = until(&http, &base, &bob, "revoked token", |s| s != StatusCode::OK).await;
    assert!(
        www.contains("error=\"invalid_token\"") && www.contains("revoked"),
        "{www:?}"
    );
    assert_eq!(
        get(&http, &base, Some(&bob)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A session cut off (OIDC logout of one `sid`): its tokens are refused, others are not.
    let carol = bearer(&token("j-carol", "carol", "s-carol"));
    let dave = bearer(&token("j-dave", "dave", "s-dave"));
    assert_eq!(get(&http, &base, Some(&carol)).await.0, StatusCode::OK);
    let r = http
        .post(format!("{pub_url}/v1/cutoffs"))
        .bearer_auth(TOKEN)
        .json(&json!({"claim": "sid", "value": "s-carol", "before": now()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (status, www, _) = until(&http, &base, &carol, "cut-off session", |s| {
        s != StatusCode::OK
    })
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www.contains("revoked"), "{www:?}");
    assert_eq!(get(&http, &base, Some(&dave)).await.0, StatusCode::OK);

    // Slow and silent clients on the check listener are cut off by the header read timeout.
    assert!(
        closed_within(
            &authz_addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthoriz",
            Duration::from_secs(10)
        ),
        "a half-sent head kept its connection"
    );
    assert!(
        closed_within(&authz_addr, b"", Duration::from_secs(10)),
        "a silent connection was kept"
    );
    // Oversized heads straight at the check listener, a valid token included: never allowed.
    let valid = token("j-alice", "alice", "s-alice");
    for (what, extra) in [
        (
            "a 100 KiB header",
            format!("Cookie: {}\r\n", "c".repeat(100 * 1024)),
        ),
        (
            "200 headers",
            (0..200)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>(),
        ),
    ] {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {valid}\r\n{extra}Connection: close\r\n\r\n"
        );
        let line = raw_status(&authz_addr, req.as_bytes());
        assert!(
            !line.contains(" 200 ") && !line.contains(" 204 "),
            "{what}: {line:?}"
        );
    }
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {valid}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(&authz_addr, ok.as_bytes()), "HTTP/1.1 200 OK");
    // The sidecar is still healthy.
    assert_eq!(get(&http, &base, Some(&alice)).await.0, StatusCode::OK);

    // The publisher goes away: once the snapshot is older than --max-age, NGINX answers 503
    // with Retry-After — never 200 — and /readyz says the snapshot is stale.
    publisher.shutdown();
    publisher.wait().await.unwrap();
    let gone = Instant::now();
    let (status, _, _) = until(&http, &base, &alice, "stale snapshot", |s| {
        s != StatusCode::OK
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        gone.elapsed() < Duration::from_secs(MAX_AGE_SECS + 5),
        "stale only after {:?}",
        gone.elapsed()
    );
    for _ in 0..5 {
        let r = http
            .get(format!("{base}/app"))
            .header("authorization", alice.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "5");
        assert_eq!(
            get(&http, &base, Some(&bob)).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let (status, v) = readyz(&http, &authz.admin).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["reasons"], json!(["snapshot_stale"]), "{v}");
    assert!(v["last_sync_error"].is_string(), "{v}");

    // The metrics counted every outcome.
    let text = http
        .get(format!("{}/metrics", authz.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["allow", "deny", "unavailable"] {
        let series = format!("revbloom_authz_decisions_total{{outcome=\"{outcome}\"}} ");
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(n > 0, "{series}{n}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
