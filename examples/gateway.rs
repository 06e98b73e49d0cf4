//! An axum gateway that verifies bearer tokens against revocation snapshots, kept current by
//! `revbloom::sync::SyncClient` from a file or from a publisher.
//!
//! ```text
//! cargo run --release --example gateway -- --snapshot PATH --hs256-secret SECRET --listen ADDR
//! cargo run --release --example gateway -- --publisher URL --hs256-secret SECRET --listen ADDR
//!     [--cache PATH]                   with --publisher: last good snapshot kept here (default
//!                                      gateway-snapshot.rbs) and loaded first on start
//!     [--es256-public-key PEM_FILE]    verify ES256 tokens instead of HS256
//!     [--issuer ISS] [--audience AUD]  require these claims (revocations are then keyed on iss)
//!     [--exact-url URL]                ask this publisher's lookup endpoint on filter positives
//!                                      (defaults to --publisher when that is given)
//!     [--snapshot-public-key PEM_FILE] require snapshots signed by this Ed25519 key (the
//!                                      publisher's DATA/signing.pub; required with --publisher
//!                                      unless --allow-unsigned)
//!     [--seal-key FILE]                the publisher's seal key (DATA/verifier.key): unseals
//!                                      snapshots and deltas, and authorises exact lookups
//!     [--allow-unsigned]               accept unsigned snapshots from --publisher
//!     [--max-age SECS] [--policy fail-closed|exact-source|fail-open]
//! curl -H "Authorization: Bearer $TOKEN" http://ADDR/whoami
//! ```
//!
//! With `--snapshot` the file is polled every second and swapped in when it changes; with
//! `--publisher` the client long-polls for deltas (a full snapshot when needed) and keeps a
//! local copy, so a restarted gateway remembers every revocation even while the publisher is
//! down. A snapshot that fails validation (or is older than the current generation) is refused
//! and the last good one stays in force. Without an exact source (no `--exact-url` and no
//! `--publisher`), a token the filter matches is refused: nearly always
//! it is revoked, but about 0.1% of good tokens collide with a revoked one and are refused too.
//! `GET /whoami` answers the validated claims as JSON; `GET /healthz` the snapshot generation.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use revbloom::sync::{SyncClient, SyncConfig};
use revbloom::tower::BearerLayer;
use revbloom::verify::{CachedSource, HttpExactSource, Verifier};
use revbloom::{OpenOptions, SnapshotHandle, StalenessPolicy};
use serde_json::{json, Value};

#[derive(Default)]
struct Args {
    snapshot: Option<PathBuf>,
    publisher: Option<String>,
    cache: Option<PathBuf>,
    hs256_secret: Option<String>,
    es256_public_key: Option<PathBuf>,
    listen: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    exact_url: Option<String>,
    snapshot_public_key: Option<PathBuf>,
    seal_key: Option<PathBuf>,
    allow_unsigned: bool,
    max_age: Option<u64>,
    policy: Option<String>,
}

const USAGE: &str =
    "usage: gateway (--snapshot PATH | --publisher URL [--cache PATH]) \
(--hs256-secret SECRET | --es256-public-key PEM) [--listen ADDR] [--issuer ISS] [--audience AUD] [--exact-url URL] [--snapshot-public-key PEM] [--seal-key FILE] [--allow-unsigned] \
[--max-age SECS] [--policy fail-closed|exact-source|fail-open]";

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--snapshot" => a.snapshot = Some(value()?.into()),
            "--publisher" => a.publisher = Some(value()?),
            "--cache" => a.cache = Some(value()?.into()),
            "--hs256-secret" => a.hs256_secret = Some(value()?),
            "--es256-public-key" => a.es256_public_key = Some(value()?.into()),
            "--listen" => a.listen = Some(value()?),
            "--issuer" => a.issuer = Some(value()?),
            "--audience" => a.audience = Some(value()?),
            "--exact-url" => a.exact_url = Some(value()?),
            "--snapshot-public-key" => a.snapshot_public_key = Some(value()?.into()),
            "--seal-key" => a.seal_key = Some(value()?.into()),
            "--allow-unsigned" => a.allow_unsigned = true,
            "--max-age" => a.max_age = Some(value()?.parse()?),
            "--policy" => a.policy = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The application, not the library, picks the JWT crypto provider; harmless when only
    // rust_crypto is compiled in, required if feature unification also enables aws_lc_rs.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();

    let args = parse_args()?;
    let sync = match (&args.snapshot, &args.publisher) {
        (Some(path), None) => SyncConfig::file(path),
        (None, Some(url)) => SyncConfig::url(url).cache_file(
            args.cache
                .clone()
                .unwrap_or_else(|| PathBuf::from("gateway-snapshot.rbs")),
        ),
        _ => return Err(format!("give exactly one of --snapshot, --publisher\n{USAGE}").into()),
    };
    let (key, mut validation) = match (&args.hs256_secret, &args.es256_public_key) {
        (Some(secret), None) => (
            DecodingKey::from_secret(secret.as_bytes()),
            Validation::new(Algorithm::HS256),
        ),
        (None, Some(pem)) => (
            DecodingKey::from_ec_pem(&std::fs::read(pem)?)?,
            Validation::new(Algorithm::ES256),
        ),
        _ => {
            return Err(
                format!("give exactly one of --hs256-secret, --es256-public-key\n{USAGE}").into(),
            )
        }
    };
    if let Some(iss) = &args.issuer {
        validation.set_issuer(&[iss]);
    }
    match &args.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let policy = match args.policy.as_deref().unwrap_or("fail-closed") {
        "fail-closed" => StalenessPolicy::FailClosed,
        "exact-source" => StalenessPolicy::ExactSource,
        "fail-open" => StalenessPolicy::FailOpen,
        other => return Err(format!("unknown policy {other}\n{USAGE}").into()),
    };
    let mut open = OpenOptions::new();
    if let Some(pem) = &args.snapshot_public_key {
        open = open.verifying_key(revbloom::snapshot::read_verifying_key(pem)?);
    }
    let seal = match &args.seal_key {
        Some(path) => Some(revbloom::snapshot::SealKey::from_file(path)?),
        None => None,
    };
    let mut sync = sync.allow_unsigned(args.allow_unsigned);
    if let Some(seal) = &seal {
        sync = sync.seal_key(seal.clone());
    }

    let handle: SnapshotHandle =
        SnapshotHandle::new(policy, Duration::from_secs(args.max_age.unwrap_or(300)));
    let mut builder = Verifier::builder(key, validation).state(handle.clone());
    if let Some(url) = args.exact_url.as_ref().or(args.publisher.as_ref()) {
        let mut source = HttpExactSource::new(url)?;
        if let Some(seal) = &seal {
            // The read token derived from the seal key: the lookup refuses anyone else.
            source = source.seal_key(seal);
        }
        builder = builder.async_exact_source(CachedSource::new(source));
    } else {
        eprintln!("no exact source: tokens the filter matches are refused (including ~0.1% false positives)");
    }
    let verifier = Arc::new(builder.build()?);

    // Keeps the handle current until the process ends; errors back off and are retried, and
    // the last good snapshot stays in force meanwhile.
    let _sync = SyncClient::start(sync.open_options(open), handle.clone())?;
    if let Some(iss) = args.issuer.clone() {
        // Once the first snapshot is in, say if this gateway's issuer and the publisher's
        // default issuer disagree in a way that would keep revocations from matching.
        let mut loaded = _sync.subscribe();
        let first = handle.clone();
        tokio::spawn(async move {
            if loaded.wait_for(Option::is_some).await.is_ok() {
                if let Some(view) = first.current() {
                    for w in revbloom::verify::issuer_warnings(&iss, &*view) {
                        eprintln!("warning: {w}");
                    }
                }
            }
        });
    }

    let health = handle.clone();
    let app = Router::new()
        .route(
            "/whoami",
            get(|Extension(claims): Extension<Value>| async { Json(claims) }),
        )
        .layer(BearerLayer::<Value>::new(Arc::clone(&verifier)))
        // Added after the layer, so it needs no token.
        .route(
            "/healthz",
            get(move || {
                let h = health.clone();
                async move { Json(json!({"generation": h.generation()})) }
            }),
        );
    let listen = args.listen.as_deref().unwrap_or("127.0.0.1:3000");
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("gateway listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
