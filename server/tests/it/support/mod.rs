//! Helpers shared by the publisher's integration tests: temp data folders, in-process
//! publishers, HTTP clients, and the audit scenarios' spec.

pub mod audit;
pub mod ca;
pub mod idp;
pub mod pg;
pub mod s3;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::VerifyingKey;
use revbloom::snapshot::AlignedBytes;
use revbloom::snapshot::{read_verifying_key, SealKey};
use revbloom::{OpenOptions, SnapshotView};
use revbloom_server::{run, Running, ServerConfig};

/// The admin token the in-process servers use.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// 2026-01-01T00:00:00Z, the fixed clock of tests that do not run against the real one.
pub const NOW: u64 = 1_767_225_600;

/// A fresh, empty temp folder unique to this process and call.
pub fn temp_dir(name: &str) -> PathBuf {
    temp_dir_in(&std::env::temp_dir(), name)
}

/// A fresh, empty folder under `base`, unique to this process and call.
pub fn temp_dir_in(base: &std::path::Path, name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = base.join(format!("revbloom-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config on an ephemeral loopback port over `data`, publishing quickly.
pub fn config(data: PathBuf) -> ServerConfig {
    let mut c = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data,
        coalesce_ms: 20,
        ..ServerConfig::default()
    };
    c.window.expected_per_bucket = 1000;
    c
}

/// The publisher's current snapshot, as `GET /v1/snapshot` hands it out (sealed).
pub async fn fetch_snapshot(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = http.get(format!("{url}/v1/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

/// Start an in-process publisher.
pub async fn start(c: ServerConfig) -> Running {
    run::start(c, TOKEN.to_string()).await.unwrap()
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A reqwest client that ignores proxy settings. (reqwest is built without a crypto provider
/// of its own: every client starts from [`revbloom::sync::ClientTls`].)
pub fn client() -> reqwest::Client {
    revbloom::sync::ClientTls::system_roots()
        .reqwest_builder()
        .unwrap()
        .no_proxy()
        .build()
        .unwrap()
}

/// The keys a publisher with data folder `data` generated: its seal key
/// (`DATA/verifier.key`) and its signing key's public half (`DATA/signing.pub`).
pub fn publisher_keys(data: &std::path::Path) -> (SealKey, VerifyingKey) {
    let seal = SealKey::from_file(&data.join("verifier.key")).expect("DATA/verifier.key");
    let public = read_verifying_key(&data.join("signing.pub")).expect("DATA/signing.pub");
    (seal, public)
}

/// What a verifier of the publisher with data folder `data` opens its files with: its
/// signature verified, its envelopes unsealed.
pub fn verifier_options(data: &std::path::Path) -> OpenOptions {
    let (seal, public) = publisher_keys(data);
    OpenOptions::new().verifying_key(public).seal_key(seal)
}

/// Open a snapshot a publisher with data folder `data` handed out.
pub fn open_published(data: &std::path::Path, bytes: &[u8]) -> SnapshotView<AlignedBytes> {
    SnapshotView::open_owned(bytes.to_vec(), &verifier_options(data)).expect("a valid snapshot")
}

/// The deltas of a chain a publisher with data folder `data` handed out, unsealed: each one
/// a plaintext delta file.
pub fn unseal_chain(data: &std::path::Path, mut chain: &[u8]) -> Vec<Vec<u8>> {
    let (seal, _) = publisher_keys(data);
    let mut out = Vec::new();
    while !chain.is_empty() {
        let (inner, rest) = revbloom::snapshot::unseal_prefix(chain, std::slice::from_ref(&seal))
            .expect("a sealed delta");
        out.push(inner);
        chain = rest;
    }
    out
}

/// `GET {url}/v1/revocations/{jti}` (the exact lookup, with the admin token [`TOKEN`]), as
/// JSON.
pub async fn lookup(http: &reqwest::Client, url: &str, jti: &str) -> serde_json::Value {
    lookup_issued(http, url, jti, None).await
}

/// The exact lookup of `jti` with bearer `token` (the read token or an admin token).
pub async fn lookup_as(
    http: &reqwest::Client,
    url: &str,
    jti: &str,
    token: &str,
) -> serde_json::Value {
    lookup_issued_as(http, url, jti, None, token).await
}

fn lookup_url(url: &str, jti: &str, iss: Option<&str>) -> reqwest::Url {
    let mut url = reqwest::Url::parse(url).unwrap();
    url.path_segments_mut()
        .unwrap()
        .push("v1")
        .push("revocations")
        .push(jti);
    if let Some(iss) = iss {
        url.query_pairs_mut().append_pair("iss", iss);
    }
    url
}

/// The exact lookup of `jti` (percent-encoded as one path segment) for issuer `iss`, with the
/// admin token [`TOKEN`], as JSON.
pub async fn lookup_issued(
    http: &reqwest::Client,
    url: &str,
    jti: &str,
    iss: Option<&str>,
) -> serde_json::Value {
    lookup_issued_as(http, url, jti, iss, TOKEN).await
}

/// [`lookup_issued`] with bearer `token`.
pub async fn lookup_issued_as(
    http: &reqwest::Client,
    url: &str,
    jti: &str,
    iss: Option<&str>,
    token: &str,
) -> serde_json::Value {
    http.get(lookup_url(url, jti, iss))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The whole text of `GET {url}/metrics`.
pub async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(format!("{url}/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// The value of the series `series` (name and labels, e.g.
/// `revbloom_not_ready_reason{reason="snapshot_stale"}`) in `GET {url}/metrics`.
pub async fn metric(http: &reqwest::Client, url: &str, series: &str) -> u64 {
    let text = metrics_text(http, url).await;
    let key = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// A `revbloom serve` child process and its URL, killed when dropped.
pub struct ServeChild {
    /// The process.
    pub child: std::process::Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `cmd` (a `revbloom serve ...` command) with stdout piped, stderr discarded and
/// `RUST_LOG=warn`, and return it with the URL from its first line,
/// `revbloom: listening on URL`. A process that prints anything else is killed and the test
/// fails with that line.
pub fn spawn_serve(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn revbloom serve");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    match line.trim().strip_prefix("revbloom: listening on ") {
        Some(url) => {
            let url = url.to_string();
            (child, url)
        }
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not start: {line:?}");
        }
    }
}
