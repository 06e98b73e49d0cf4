//! An axum gateway that verifies bearer tokens against revocation snapshots, kept current by
//! `revbloom::sync::SyncClient` from a file or from a publisher.
//!
//! ```text
//! cargo run --release --example gateway --features tower,sync -- --help
//! # follow a local publisher, with its keys from its data folder, and write a test token:
//! gateway --publisher http://127.0.0.1:8750 --publisher-data revbloom-data --dev-token demo.jwt
//! curl -H "Authorization: Bearer $(cat demo.jwt)" http://127.0.0.1:3000/whoami
//! ```
//!
//! With `--snapshot` the file is polled every second and swapped in when it changes; with
//! `--publisher` the client long-polls for deltas (a full snapshot when needed) and keeps a
//! local copy, so a restarted gateway remembers every revocation even while the publisher is
//! down. A snapshot that fails validation (or is older than the current generation) is refused,
//! logged with the reason, and the last good one stays in force. Without an exact source (no
//! `--exact-url` and no `--publisher`), a token the filter matches is refused: nearly always
//! it is revoked, but about 0.1% of good tokens collide with a revoked one and are refused too.
//!
//! `GET /whoami` answers the validated claims as JSON; `GET /healthz` (liveness) the snapshot
//! generation; `GET /readyz` 200 once a verified snapshot within `--max-age` is loaded, else
//! 503 with `{"ready": false, "reason": "no_snapshot" | "snapshot_stale", ...}` and the sync
//! client's last error; `GET /metrics` the sync counters (`revbloom_sync_failures_total` by
//! reason) and the snapshot's generation and age, in the Prometheus text format.
//! With `--jwks ISS=URL` (repeatable) tokens are RS256, ES256 or EdDSA tokens of those issuers,
//! keys fetched from each issuer's JWKS URL and kept current (`Cache-Control`, and a
//! rate-limited refetch when a token names an unknown `kid`); `--audience` applies to each.
//! `/readyz` then also waits for every issuer's keys, and `/metrics` counts the JWKS fetches.
//! Every flag can also be set in the environment (`REVBLOOM_GATEWAY_*`, see `--help`); the
//! log level follows `RUST_LOG` (default `info`).

use std::error::Error;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use clap::{CommandFactory, Parser, ValueEnum};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use revbloom::snapshot::SealKey;
use revbloom::sync::{ClientTls, JwksClient, JwksConfig, SyncClient, SyncConfig, SyncStats};
use revbloom::tower::BearerLayer;
use revbloom::verify::{CachedSource, HttpExactSource, Issuer, Issuers, Verifier};
use revbloom::{OpenOptions, SnapshotHandle, StalenessPolicy};
use serde_json::{json, Value};

/// A gateway that verifies bearer tokens (HS256, ES256, or from JWKS issuers) and refuses
/// revoked ones, from
/// revocation snapshots kept current by a publisher (`revbloom serve`) or a file.
#[derive(Debug, Parser)]
#[command(name = "gateway")]
struct Args {
    /// Follow this publisher (long-poll + deltas); it is also the exact source.
    #[arg(
        long,
        value_name = "URL",
        env = "REVBLOOM_GATEWAY_PUBLISHER",
        conflicts_with = "snapshot",
        required_unless_present_any = ["snapshot", "mirror"]
    )]
    publisher: Option<String>,
    /// Read snapshots and deltas from this static mirror of the publisher's `--publish-to`
    /// bucket (the URL of the folder holding `manifest.rbm`); repeat or comma-separate for
    /// several, tried in order and before --publisher. Without --publisher, give
    /// --exact-url for lookups.
    #[arg(
        long,
        value_name = "URL",
        env = "REVBLOOM_GATEWAY_MIRRORS",
        value_delimiter = ',',
        conflicts_with = "snapshot"
    )]
    mirror: Vec<String>,
    /// Load this snapshot file instead, reloaded when it changes.
    #[arg(long, value_name = "PATH", env = "REVBLOOM_GATEWAY_SNAPSHOT")]
    snapshot: Option<PathBuf>,
    /// The publisher's data folder (local set-up): its `signing.pub` verifies snapshots, its
    /// `verifier.key` unseals them and yields the read token for exact lookups.
    #[arg(long, value_name = "DIR", env = "REVBLOOM_GATEWAY_PUBLISHER_DATA")]
    publisher_data: Option<PathBuf>,
    /// With --publisher: the last good snapshot is kept here and loaded first on start.
    #[arg(
        long,
        value_name = "PATH",
        env = "REVBLOOM_GATEWAY_CACHE",
        default_value = "gateway-snapshot.rbs"
    )]
    cache: PathBuf,
    /// File holding the HS256 secret that signs tokens (its bytes, trailing newline trimmed).
    #[arg(long, value_name = "FILE", env = "REVBLOOM_GATEWAY_HS256_SECRET_FILE", conflicts_with_all = ["hs256_secret", "es256_public_key"])]
    hs256_secret_file: Option<PathBuf>,
    /// The HS256 secret itself (visible to every local user in `ps`: prefer
    /// --hs256-secret-file).
    #[arg(
        long,
        value_name = "SECRET",
        env = "REVBLOOM_GATEWAY_HS256_SECRET",
        hide_env_values = true,
        conflicts_with = "es256_public_key"
    )]
    hs256_secret: Option<String>,
    /// Verify ES256 tokens with this public key (PEM) instead of HS256.
    #[arg(
        long,
        value_name = "PEM_FILE",
        env = "REVBLOOM_GATEWAY_ES256_PUBLIC_KEY"
    )]
    es256_public_key: Option<PathBuf>,
    /// Development: write a signed HS256 test token (random jti, sub, sid; valid 1 h) to FILE
    /// and print its jti. Without an HS256 secret, a random one is generated into
    /// `gateway-dev-secret` (reuse it with --hs256-secret-file).
    #[arg(
        long,
        value_name = "FILE",
        env = "REVBLOOM_GATEWAY_DEV_TOKEN",
        conflicts_with = "es256_public_key"
    )]
    dev_token: Option<PathBuf>,
    /// Accept tokens of issuer ISS, keys from its JWKS at URL (repeatable; RS256, ES256,
    /// EdDSA). Instead of --hs256-secret-file / --es256-public-key.
    #[arg(
        long,
        value_name = "ISS=URL",
        env = "REVBLOOM_GATEWAY_JWKS",
        value_delimiter = ' ',
        conflicts_with_all = ["hs256_secret_file", "hs256_secret", "es256_public_key", "dev_token", "issuer"]
    )]
    jwks: Vec<String>,
    /// Fetch plain http:// JWKS URLs on other hosts than loopback (whoever answers them can
    /// sign tokens this gateway accepts).
    #[arg(long, env = "REVBLOOM_GATEWAY_JWKS_ALLOW_HTTP")]
    jwks_allow_http: bool,
    /// Trust only the CA certificates of this PEM file for https:// JWKS URLs [default: the
    /// system store].
    #[arg(long, value_name = "PEM_FILE", env = "REVBLOOM_GATEWAY_JWKS_CA_FILE")]
    jwks_ca_file: Option<PathBuf>,
    /// Listen address.
    #[arg(
        long,
        value_name = "ADDR",
        env = "REVBLOOM_GATEWAY_LISTEN",
        default_value = "127.0.0.1:3000"
    )]
    listen: String,
    /// Require this `iss` (revocations are then keyed on it).
    #[arg(long, value_name = "ISS", env = "REVBLOOM_GATEWAY_ISSUER")]
    issuer: Option<String>,
    /// Require this `aud` (of every --jwks issuer too).
    #[arg(long, value_name = "AUD", env = "REVBLOOM_GATEWAY_AUDIENCE")]
    audience: Option<String>,
    /// Ask this publisher's lookup endpoint on filter positives [default: --publisher].
    #[arg(long, value_name = "URL", env = "REVBLOOM_GATEWAY_EXACT_URL")]
    exact_url: Option<String>,
    /// Require snapshots signed by this Ed25519 key (the publisher's DATA/signing.pub)
    /// [default: DIR/signing.pub of --publisher-data]. Required with --publisher unless
    /// --allow-unsigned.
    #[arg(
        long,
        value_name = "PEM_FILE",
        env = "REVBLOOM_GATEWAY_SNAPSHOT_PUBLIC_KEY"
    )]
    snapshot_public_key: Option<PathBuf>,
    /// The publisher's seal key (DATA/verifier.key): unseals snapshots and deltas, and
    /// authorises exact lookups [default: DIR/verifier.key of --publisher-data].
    #[arg(long, value_name = "FILE", env = "REVBLOOM_GATEWAY_SEAL_KEY")]
    seal_key: Option<PathBuf>,
    /// Accept unsigned snapshots from --publisher (only on a link nobody else can answer on).
    #[arg(long, env = "REVBLOOM_GATEWAY_ALLOW_UNSIGNED")]
    allow_unsigned: bool,
    /// A snapshot older than this is stale (`90s`, `5m`, `1h`; a bare number is seconds).
    /// A file made by `revbloom build` is as old as its build: rebuild it more often than
    /// this, or raise it.
    #[arg(
        long,
        value_name = "DURATION",
        env = "REVBLOOM_GATEWAY_MAX_AGE",
        default_value = "5m",
        value_parser = parse_duration
    )]
    max_age: Duration,
    /// What checks do while the snapshot is stale or missing.
    #[arg(long, value_enum, env = "REVBLOOM_GATEWAY_POLICY", default_value_t = Policy::FailClosed)]
    policy: Policy,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    /// Refuse (503).
    FailClosed,
    /// Ask the exact source for every token.
    ExactSource,
    /// Answer from the last snapshot (accept when there is none).
    FailOpen,
}

/// A duration as `revbloom` reads one: a bare number of seconds, or `humantime` units.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 90s, 5m or 1h: {e}"))
}

/// Where `--dev-token` writes a generated HS256 secret.
const DEV_SECRET_FILE: &str = "gateway-dev-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> Result<String, Box<dyn Error>> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Write `contents` to `path`, readable by the owner only.
fn write_private(path: &Path, contents: &str) -> Result<(), Box<dyn Error>> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

fn read_secret(path: &Path) -> Result<Vec<u8>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --hs256-secret-file {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(format!("--hs256-secret-file {} is empty", path.display()).into());
    }
    Ok(secret.as_bytes().to_vec())
}

/// Sign a test token with `secret` into `path`; returns its jti.
fn write_dev_token(path: &Path, secret: &[u8], args: &Args) -> Result<String, Box<dyn Error>> {
    let iat = now();
    let jti = random_hex(16)?;
    let mut claims = json!({
        "jti": jti,
        "sub": format!("dev-user-{}", random_hex(4)?),
        "sid": format!("dev-session-{}", random_hex(8)?),
        "iat": iat,
        "exp": iat + 3600,
    });
    if let Some(iss) = &args.issuer {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = &args.audience {
        claims["aud"] = json!(aud);
    }
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?;
    write_private(path, &format!("{token}\n"))?;
    Ok(jti)
}

fn usage_error(msg: impl std::fmt::Display) -> ! {
    Args::command()
        .error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // The application, not the library, picks the JWT crypto provider; harmless when only
    // rust_crypto is compiled in, required if feature unification also enables aws_lc_rs.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();

    let sync = match (&args.snapshot, &args.publisher) {
        (Some(path), None) => SyncConfig::file(path),
        (None, Some(url)) => args
            .mirror
            .iter()
            .fold(SyncConfig::url(url), |c, m| c.mirror(m))
            .cache_file(args.cache.clone()),
        (None, None) if !args.mirror.is_empty() => {
            SyncConfig::mirrors(&args.mirror).cache_file(args.cache.clone())
        }
        _ => usage_error("give exactly one of --snapshot, --publisher, --mirror"),
    };

    let secret: Option<Vec<u8>> = match (&args.hs256_secret_file, &args.hs256_secret) {
        (Some(path), _) => Some(read_secret(path)?),
        (None, Some(s)) => Some(s.as_bytes().to_vec()),
        (None, None) if args.dev_token.is_some() && args.es256_public_key.is_none() => {
            let s = random_hex(32)?;
            write_private(Path::new(DEV_SECRET_FILE), &format!("{s}\n"))?;
            tracing::info!(
                file = DEV_SECRET_FILE,
                "generated a random HS256 secret for --dev-token"
            );
            Some(s.into_bytes())
        }
        (None, None) => None,
    };
    let keys = if args.jwks.is_empty() {
        let (key, mut validation) = match (&secret, &args.es256_public_key) {
            (Some(secret), None) => (
                DecodingKey::from_secret(secret),
                Validation::new(Algorithm::HS256),
            ),
            (None, Some(pem)) => (
                DecodingKey::from_ec_pem(&std::fs::read(pem)?)?,
                Validation::new(Algorithm::ES256),
            ),
            _ => usage_error(
                "give one of --hs256-secret-file, --es256-public-key, --jwks (or --dev-token for a generated secret)",
            ),
        };
        if let Some(iss) = &args.issuer {
            validation.set_issuer(&[iss]);
        }
        match &args.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Keys::Static(key, Box::new(validation))
    } else {
        Keys::Jwks(Arc::new(jwks_issuers(&args)?))
    };
    if let (Some(path), Some(secret)) = (&args.dev_token, &secret) {
        let jti = write_dev_token(path, secret, &args)?;
        println!("dev token written to {} (jti {jti})", path.display());
    }
    let policy = match args.policy {
        Policy::FailClosed => StalenessPolicy::FailClosed,
        Policy::ExactSource => StalenessPolicy::ExactSource,
        Policy::FailOpen => StalenessPolicy::FailOpen,
    };

    // Explicit key flags win over the data folder's files.
    let data_file = |name: &str| args.publisher_data.as_ref().map(|d| d.join(name));
    let public_key = args
        .snapshot_public_key
        .clone()
        .or_else(|| data_file("signing.pub"));
    let seal_path = args.seal_key.clone().or_else(|| data_file("verifier.key"));
    let mut open = OpenOptions::new();
    if let Some(pem) = &public_key {
        let key = revbloom::snapshot::read_verifying_key(pem)
            .map_err(|e| format!("{}: {e}", pem.display()))?;
        open = open.verifying_key(key);
    }
    let seal = match &seal_path {
        Some(path) => {
            Some(SealKey::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let mut sync = sync.allow_unsigned(args.allow_unsigned);
    if let Some(seal) = &seal {
        sync = sync.seal_key(seal.clone());
    }

    let handle: SnapshotHandle = SnapshotHandle::new(policy, args.max_age);
    let mut builder = match &keys {
        Keys::Static(key, validation) => {
            Verifier::builder(key.clone(), Validation::clone(validation))
        }
        Keys::Jwks(issuers) => Verifier::with_issuers(Arc::clone(issuers)),
    }
    .state(handle.clone());
    if let Some(url) = args.exact_url.as_ref().or(args.publisher.as_ref()) {
        let mut source = HttpExactSource::new(url)?;
        if let Some(seal) = &seal {
            // The read token derived from the seal key: the lookup refuses anyone else.
            source = source.bearer(seal.read_token());
        }
        builder = builder.async_exact_source(CachedSource::new(source));
    } else {
        tracing::warn!("no exact source: tokens the filter matches are refused (including ~0.1% false positives)");
    }
    let verifier = Arc::new(builder.build()?);
    // Fetches every issuer's keys in the background and keeps them current; tokens of an
    // issuer are answered 503 until its first key set is loaded.
    let jwks = match &keys {
        Keys::Jwks(issuers) => {
            let mut config = JwksConfig::default().allow_http(args.jwks_allow_http);
            if let Some(ca) = &args.jwks_ca_file {
                config = config.tls(ClientTls::ca_file(ca));
            }
            let client =
                JwksClient::start(Arc::clone(issuers), config).map_err(|e| e.to_string())?;
            Some(Arc::new(client))
        }
        Keys::Static(..) => None,
    };

    // Keeps the handle current until the process ends; errors back off and are retried
    // (each logged with its reason), and the last good snapshot stays in force meanwhile.
    let sync = SyncClient::start(sync.open_options(open), handle.clone())?;
    let mut loaded = sync.subscribe();
    let first = handle.clone();
    let accepted: Vec<String> = match &keys {
        Keys::Static(..) => args.issuer.iter().cloned().collect(),
        Keys::Jwks(issuers) => issuers.iter().map(|i| i.iss().to_owned()).collect(),
    };
    tokio::spawn(async move {
        if loaded.wait_for(Option::is_some).await.is_ok() {
            if let Some(view) = first.current() {
                tracing::info!(generation = view.generation(), "first snapshot loaded");
                // Say if this gateway's issuers and the publisher's default issuer disagree in
                // a way that would keep revocations from matching.
                for iss in &accepted {
                    for w in revbloom::verify::issuer_warnings(iss, &*view) {
                        tracing::warn!("{w}");
                    }
                }
            }
        }
    });

    let health = handle.clone();
    let ready = handle.clone();
    let ready_stats = sync.shared_stats();
    let metrics_stats = sync.shared_stats();
    let metrics_handle = handle.clone();
    let (ready_jwks, metrics_jwks) = (jwks.clone(), jwks.clone());
    let app = Router::new()
        .route(
            "/whoami",
            get(|Extension(claims): Extension<Value>| async { Json(claims) }),
        )
        .layer(BearerLayer::<Value>::new(Arc::clone(&verifier)))
        // Added after the layer, so they need no token.
        .route(
            "/healthz",
            get(move || {
                let h = health.clone();
                async move { Json(json!({"generation": h.generation()})) }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let (h, s, j) = (ready.clone(), Arc::clone(&ready_stats), ready_jwks.clone());
                async move { readiness(&h, &s, j.as_deref()) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let (h, s, j) = (
                    metrics_handle.clone(),
                    Arc::clone(&metrics_stats),
                    metrics_jwks.clone(),
                );
                async move { metrics(&h, &s, j.as_deref()) }
            }),
        );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!("gateway listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    drop(sync);
    drop(jwks);
    Ok(())
}

/// Where the verifier's keys come from.
enum Keys {
    /// One key (--hs256-secret-file, --es256-public-key).
    Static(DecodingKey, Box<Validation>),
    /// Issuers by JWKS URL (--jwks).
    Jwks(Arc<Issuers>),
}

/// The issuers of `--jwks ISS=URL`, each with the `--audience` (any audience without one).
fn jwks_issuers(args: &Args) -> Result<Issuers, Box<dyn Error>> {
    let mut issuers = Vec::new();
    for spec in &args.jwks {
        let Some((iss, url)) = spec
            .split_once('=')
            .filter(|(i, u)| !i.is_empty() && !u.is_empty())
        else {
            usage_error(format!(
                "--jwks {spec:?}: expected ISS=URL, e.g. https://idp.example.com=https://idp.example.com/.well-known/jwks.json"
            ));
        };
        let issuer = Issuer::new(iss, url);
        issuers.push(match &args.audience {
            Some(aud) => issuer.audience(aud),
            None => {
                tracing::warn!(
                    iss,
                    "no --audience: tokens of this issuer for any audience are accepted"
                );
                issuer.any_audience()
            }
        });
    }
    Ok(Issuers::new(issuers)?)
}

/// 200 once a verified snapshot within `max_age` is current; 503 with the reason otherwise,
/// and the sync client's last error (a missing file, a refused rollback, …) when there is one.
fn readiness(
    handle: &SnapshotHandle,
    stats: &SyncStats,
    jwks: Option<&JwksClient>,
) -> (StatusCode, Json<Value>) {
    let now = now();
    let generation = handle.generation();
    let age = handle.age(now);
    let jwks_missing: Vec<_> = jwks
        .map(|j| j.status())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.keys == 0)
        .map(|s| json!({"iss": s.iss, "last_error": s.last_error}))
        .collect();
    let reason = match generation {
        None => Some("no_snapshot"),
        Some(_) if handle.is_stale(now) => Some("snapshot_stale"),
        Some(_) if !jwks_missing.is_empty() => Some("jwks_not_loaded"),
        Some(_) => None,
    };
    match reason {
        None => (
            StatusCode::OK,
            Json(json!({"ready": true, "generation": generation, "age": age})),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ready": false,
                "reason": reason,
                "generation": generation,
                "age": age,
                "max_age": handle.max_age().as_secs(),
                "last_sync_error": stats.last_error(),
                "jwks_not_loaded": jwks_missing,
            })),
        ),
    }
}

/// The sync client's counters and the snapshot's state in the Prometheus text format.
fn metrics(
    handle: &SnapshotHandle,
    stats: &SyncStats,
    jwks: Option<&JwksClient>,
) -> impl axum::response::IntoResponse {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        );
    };
    counter(
        "revbloom_sync_snapshots_total",
        "Full snapshots taken.",
        stats.snapshots.load(Relaxed),
    );
    counter(
        "revbloom_sync_deltas_total",
        "Deltas applied.",
        stats.deltas.load(Relaxed),
    );
    if let Some(j) = jwks {
        let s = j.stats();
        counter(
            "revbloom_jwks_fetches_total",
            "JWKS fetches started.",
            s.fetches,
        );
        counter(
            "revbloom_jwks_fetch_failures_total",
            "JWKS fetches that failed (the last good keys stay in force).",
            s.failures,
        );
        counter(
            "revbloom_jwks_unknown_key_rate_limited_total",
            "Unknown-kid refetches held back by the refetch interval.",
            s.rate_limited,
        );
    }
    out.push_str(
        "# HELP revbloom_sync_failures_total Snapshots and deltas not taken, and failed syncs, by reason.\n\
         # TYPE revbloom_sync_failures_total counter\n",
    );
    for (kind, n) in stats.failure_counts() {
        let _ = writeln!(out, "revbloom_sync_failures_total{{reason=\"{kind}\"}} {n}");
    }
    let now = now();
    let gauge = |out: &mut String, name: &str, help: &str, value: Option<u64>| {
        let value = value.map_or("NaN".to_owned(), |v| v.to_string());
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        );
    };
    gauge(
        &mut out,
        "revbloom_snapshot_generation",
        "Generation of the snapshot in force (NaN: none).",
        handle.generation(),
    );
    gauge(
        &mut out,
        "revbloom_snapshot_age_seconds",
        "Age of the snapshot in force (NaN: none).",
        handle.age(now),
    );
    gauge(
        &mut out,
        "revbloom_snapshot_stale",
        "1 while checks follow the staleness policy (no snapshot, or older than max_age).",
        Some(u64::from(handle.is_stale(now))),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
