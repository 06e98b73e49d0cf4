//! `revbloom authz`: the check server beside a proxy (NGINX `auth_request`, Traefik
//! `forwardAuth`, Envoy ext_authz), until ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::ValueEnum;
use jsonwebtoken::{Algorithm, DecodingKey};
use revbloom::snapshot::SealKey;
use revbloom::sync::{ClientTls, JwksConfig};
use revbloom::{OpenOptions, StalenessPolicy};
use revbloom_server::authz::config::{parse_forward_claim, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN};
use revbloom_server::authz::{
    self, AuthzConfig, ForwardClaim, GrpcOptions, RevocationSource, TokenKeys,
};
use revbloom_server::limits::{
    ConnLimits, DEFAULT_HEADER_READ_TIMEOUT_MS, DEFAULT_SHUTDOWN_GRACE_MS,
};

/// Environment variable holding the HS256 secret itself (there is no flag: every local user
/// can read a command line).
pub const ENV_HS256_SECRET: &str = "REVBLOOM_AUTHZ_HS256_SECRET";

/// The environment `authz` reads besides its flags' `[env: ...]`, shown after its `--help`.
pub const ENV_HELP: &str = "\
Environment:
  REVBLOOM_AUTHZ_HS256_SECRET  the HS256 secret itself, instead of --hs256-secret-file; never
                               a flag, since every local user can read a command line
  RUST_LOG                     log filter, e.g. `info` (the default)

Answers on the check listener (every path and method is a check):
  200  allow (empty body; --forward-claim headers added)
  401  deny, with an RFC 6750 WWW-Authenticate (invalid_token; invalid_request for a
       malformed Authorization header, since NGINX auth_request turns a 400 into a 500)
  503  fail closed: no fresh snapshot, or the issuer's keys are not loaded (Retry-After)";

/// Arguments of `revbloom authz`.
#[derive(Debug, clap::Args)]
pub struct AuthzArgs {
    /// The check listener: every path and method is a check.
    #[arg(long, value_name = "ADDR", env = "REVBLOOM_AUTHZ_LISTEN", default_value = DEFAULT_LISTEN, value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// The admin listener: /healthz, /readyz, /metrics (never on the check listener, where a
    /// 200 would mean "allow").
    #[arg(long, value_name = "ADDR", env = "REVBLOOM_AUTHZ_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN, value_parser = listen_addr)]
    pub admin_listen: SocketAddr,
    /// Also answer Envoy's external authorization gRPC API
    /// (envoy.service.auth.v3.Authorization/Check) here, e.g. 127.0.0.1:8762.
    #[arg(long, value_name = "ADDR", env = "REVBLOOM_AUTHZ_GRPC_LISTEN", value_parser = listen_addr)]
    pub grpc_listen: Option<SocketAddr>,
    /// gRPC: trust the claims Envoy's jwt_authn filter verified and put in its dynamic
    /// metadata under this payload_in_metadata name; they are checked for revocation only.
    /// Requests without them are verified in full. Only when no one but that Envoy can reach
    /// the gRPC listener.
    #[arg(
        long,
        value_name = "NAME",
        env = "REVBLOOM_AUTHZ_TRUST_JWT_AUTHN",
        requires = "grpc_listen"
    )]
    pub trust_jwt_authn: Option<String>,
    /// gRPC: largest CheckRequest accepted (bytes); larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "BYTES", env = "REVBLOOM_AUTHZ_GRPC_MAX_MESSAGE_BYTES", default_value_t = revbloom_server::authz::grpc::DEFAULT_MAX_MESSAGE_BYTES)]
    pub grpc_max_message_bytes: usize,
    /// Follow this publisher (long-poll + deltas); it is also the exact source.
    #[arg(long, value_name = "URL", env = "REVBLOOM_AUTHZ_PUBLISHER", conflicts_with = "snapshot", required_unless_present_any = ["snapshot", "mirror"])]
    pub publisher: Option<String>,
    /// Read snapshots and deltas from this static mirror of the publisher's --publish-to
    /// bucket (the folder URL holding manifest.rbm); repeat or comma-separate for several,
    /// tried in order and before --publisher. Without --publisher, give --exact-url.
    #[arg(
        long,
        value_name = "URL",
        env = "REVBLOOM_AUTHZ_MIRRORS",
        value_delimiter = ',',
        conflicts_with = "snapshot"
    )]
    pub mirror: Vec<String>,
    /// Load this snapshot file instead, reloaded when it changes.
    #[arg(long, value_name = "PATH", env = "REVBLOOM_AUTHZ_SNAPSHOT")]
    pub snapshot: Option<PathBuf>,
    /// The publisher's data folder (local set-up): its signing.pub verifies snapshots, its
    /// verifier.key unseals them and yields the read token for exact lookups.
    #[arg(long, value_name = "DIR", env = "REVBLOOM_AUTHZ_PUBLISHER_DATA")]
    pub publisher_data: Option<PathBuf>,
    /// With --publisher or --mirror: the last good snapshot is kept here and loaded first on
    /// start.
    #[arg(
        long,
        value_name = "PATH",
        env = "REVBLOOM_AUTHZ_CACHE",
        default_value = "authz-snapshot.rbs"
    )]
    pub cache: PathBuf,
    /// Require snapshots signed by this Ed25519 key (the publisher's DATA/signing.pub)
    /// [default: DIR/signing.pub of --publisher-data].
    #[arg(
        long,
        value_name = "PEM_FILE",
        env = "REVBLOOM_AUTHZ_SNAPSHOT_PUBLIC_KEY"
    )]
    pub snapshot_public_key: Option<PathBuf>,
    /// The publisher's seal key (DATA/verifier.key) [default: DIR/verifier.key of
    /// --publisher-data].
    #[arg(long, value_name = "FILE", env = "REVBLOOM_AUTHZ_SEAL_KEY")]
    pub seal_key: Option<PathBuf>,
    /// Accept unsigned snapshots (only on a link nobody else can answer on).
    #[arg(long, env = "REVBLOOM_AUTHZ_ALLOW_UNSIGNED")]
    pub allow_unsigned: bool,
    /// File holding the HS256 secret that signs tokens (trailing newline trimmed).
    #[arg(long, value_name = "FILE", env = "REVBLOOM_AUTHZ_HS256_SECRET_FILE", conflicts_with_all = ["es256_public_key", "eddsa_public_key", "jwks"])]
    pub hs256_secret_file: Option<PathBuf>,
    /// Verify ES256 tokens with this public key (PEM).
    #[arg(long, value_name = "PEM_FILE", env = "REVBLOOM_AUTHZ_ES256_PUBLIC_KEY", conflicts_with_all = ["eddsa_public_key", "jwks"])]
    pub es256_public_key: Option<PathBuf>,
    /// Verify EdDSA (Ed25519) tokens with this public key (PEM).
    #[arg(
        long,
        value_name = "PEM_FILE",
        env = "REVBLOOM_AUTHZ_EDDSA_PUBLIC_KEY",
        conflicts_with = "jwks"
    )]
    pub eddsa_public_key: Option<PathBuf>,
    /// Accept tokens of issuer ISS, keys from its JWKS at URL (repeatable; RS256, ES256,
    /// EdDSA).
    #[arg(
        long,
        value_name = "ISS=URL",
        env = "REVBLOOM_AUTHZ_JWKS",
        value_delimiter = ' ',
        conflicts_with = "issuer"
    )]
    pub jwks: Vec<String>,
    /// Fetch plain http:// JWKS URLs on other hosts than loopback.
    #[arg(long, env = "REVBLOOM_AUTHZ_JWKS_ALLOW_HTTP")]
    pub jwks_allow_http: bool,
    /// Trust only this PEM file's CA certificates for https:// JWKS URLs [default: the
    /// system store].
    #[arg(long, value_name = "PEM_FILE", env = "REVBLOOM_AUTHZ_JWKS_CA_FILE")]
    pub jwks_ca_file: Option<PathBuf>,
    /// Require this `iss` with a static key (revocations are then keyed on it).
    #[arg(long, value_name = "ISS", env = "REVBLOOM_AUTHZ_ISSUER")]
    pub issuer: Option<String>,
    /// Require this `aud` (of every --jwks issuer too).
    #[arg(long, value_name = "AUD", env = "REVBLOOM_AUTHZ_AUDIENCE")]
    pub audience: Option<String>,
    /// Ask this publisher's lookup endpoint on filter positives [default: --publisher].
    #[arg(long, value_name = "URL", env = "REVBLOOM_AUTHZ_EXACT_URL")]
    pub exact_url: Option<String>,
    /// A snapshot older than this is stale (`90s`, `5m`; a bare number is seconds).
    #[arg(long, value_name = "DURATION", env = "REVBLOOM_AUTHZ_MAX_AGE", default_value = "5m", value_parser = duration)]
    pub max_age: Duration,
    /// What checks do while the snapshot is stale or missing.
    #[arg(long, value_enum, env = "REVBLOOM_AUTHZ_POLICY", default_value_t = Policy::FailClosed)]
    pub policy: Policy,
    /// Copy claim CLAIM of an allowed token into header HEADER of the answer (repeatable,
    /// e.g. sub=x-auth-sub).
    #[arg(long, value_name = "CLAIM=HEADER", env = "REVBLOOM_AUTHZ_FORWARD_CLAIMS", value_delimiter = ',', value_parser = parse_forward_claim)]
    pub forward_claim: Vec<ForwardClaim>,
    /// Time a client has to send a request head; also how long a keep-alive connection may
    /// stay idle.
    #[arg(long, value_name = "DURATION", env = "REVBLOOM_AUTHZ_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Connections served at once on the check listener (idle ones are closed to make room).
    #[arg(long, value_name = "N", env = "REVBLOOM_AUTHZ_MAX_CONNECTIONS", default_value_t = revbloom_server::limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// After SIGTERM, time in-flight checks get before their connections are dropped.
    #[arg(long, value_name = "DURATION", env = "REVBLOOM_AUTHZ_SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
    pub shutdown_grace: Duration,
}

/// What checks do while the snapshot is stale or missing.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Policy {
    /// Refuse (503).
    FailClosed,
    /// Ask the exact source for every token.
    ExactSource,
    /// Answer from the last snapshot (allow when there is none), counted in the metrics.
    FailOpen,
}

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    revbloom_server::config::resolve_listen(s)
}

fn duration(s: &str) -> Result<Duration, String> {
    revbloom_server::config::parse_duration(s).map_err(|e| e.to_string())
}

fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --hs256-secret-file {}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("--hs256-secret-file {} is empty", path.display());
    }
    Ok(secret.as_bytes().to_vec())
}

fn read_pem(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
}

/// The token keys of the command line: exactly one of the key flags, the secret variable, or
/// `--jwks`.
fn token_keys(args: &AuthzArgs) -> anyhow::Result<TokenKeys> {
    let env_secret = std::env::var(ENV_HS256_SECRET)
        .ok()
        .filter(|s| !s.is_empty());
    let mut given = Vec::new();
    if let Some(p) = &args.hs256_secret_file {
        given.push(TokenKeys::Static {
            key: DecodingKey::from_secret(&read_secret(p)?),
            algorithm: Algorithm::HS256,
        });
    } else if let Some(s) = &env_secret {
        given.push(TokenKeys::Static {
            key: DecodingKey::from_secret(s.as_bytes()),
            algorithm: Algorithm::HS256,
        });
    }
    if let Some(p) = &args.es256_public_key {
        let key =
            DecodingKey::from_ec_pem(&read_pem("--es256-public-key", p)?).with_context(|| {
                format!(
                    "--es256-public-key {}: not an EC public key in PEM",
                    p.display()
                )
            })?;
        given.push(TokenKeys::Static {
            key,
            algorithm: Algorithm::ES256,
        });
    }
    if let Some(p) = &args.eddsa_public_key {
        let key =
            DecodingKey::from_ed_pem(&read_pem("--eddsa-public-key", p)?).with_context(|| {
                format!(
                    "--eddsa-public-key {}: not an Ed25519 public key in PEM",
                    p.display()
                )
            })?;
        given.push(TokenKeys::Static {
            key,
            algorithm: Algorithm::EdDSA,
        });
    }
    if !args.jwks.is_empty() {
        let mut issuers = Vec::new();
        for spec in &args.jwks {
            let Some((iss, url)) = spec
                .split_once('=')
                .filter(|(i, u)| !i.is_empty() && !u.is_empty())
            else {
                bail!("--jwks {spec:?}: expected ISS=URL, e.g. https://idp.example.com=https://idp.example.com/.well-known/jwks.json");
            };
            issuers.push((iss.to_owned(), url.to_owned()));
        }
        given.push(TokenKeys::Jwks(issuers));
    }
    match given.len() {
        1 => Ok(given.remove(0)),
        0 => bail!("give one of --hs256-secret-file (or {ENV_HS256_SECRET}), --es256-public-key, --eddsa-public-key, --jwks"),
        _ => bail!("give only one of --hs256-secret-file (or {ENV_HS256_SECRET}), --es256-public-key, --eddsa-public-key, --jwks"),
    }
}

/// The sidecar's configuration from the command line, key files read.
pub fn load_config(args: AuthzArgs) -> anyhow::Result<AuthzConfig> {
    let source = match (&args.snapshot, &args.publisher) {
        (Some(path), None) if args.mirror.is_empty() => RevocationSource::File(path.clone()),
        (None, Some(url)) => RevocationSource::Publisher {
            url: url.clone(),
            mirrors: args.mirror.clone(),
        },
        (None, None) if !args.mirror.is_empty() => RevocationSource::Mirrors(args.mirror.clone()),
        _ => bail!("give exactly one of --snapshot, --publisher, --mirror"),
    };
    let keys = token_keys(&args)?;
    // Explicit key flags win over the data folder's files.
    let data_file = |name: &str| args.publisher_data.as_ref().map(|d| d.join(name));
    let public_key = args
        .snapshot_public_key
        .clone()
        .or_else(|| data_file("signing.pub"));
    let mut open = OpenOptions::new();
    if let Some(pem) = &public_key {
        let key = revbloom::snapshot::read_verifying_key(pem)
            .with_context(|| format!("snapshot public key {}", pem.display()))?;
        open = open.verifying_key(key);
    }
    let seal = match args.seal_key.clone().or_else(|| data_file("verifier.key")) {
        Some(path) => Some(
            SealKey::from_file(&path).with_context(|| format!("seal key {}", path.display()))?,
        ),
        None => None,
    };
    let mut jwks = JwksConfig::default().allow_http(args.jwks_allow_http);
    if let Some(ca) = &args.jwks_ca_file {
        jwks = jwks.tls(ClientTls::ca_file(ca));
    }
    let conn = ConnLimits {
        header_read_timeout_ms: millis(args.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT_MS),
        max_connections: args.max_connections,
        shutdown_grace_ms: millis(args.shutdown_grace, DEFAULT_SHUTDOWN_GRACE_MS),
        ..ConnLimits::default()
    };
    conn.validate().map_err(|e| {
        anyhow::anyhow!("{e} (--header-read-timeout and --max-connections must be at least 1)")
    })?;
    let grpc = GrpcOptions {
        max_message_bytes: args.grpc_max_message_bytes,
        trust_jwt_authn: args.trust_jwt_authn,
        shutdown_grace: args.shutdown_grace,
        ..GrpcOptions::default()
    };
    Ok(AuthzConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        grpc_listen: args.grpc_listen,
        grpc,
        cache: (!matches!(source, RevocationSource::File(_))).then(|| args.cache.clone()),
        source,
        keys,
        issuer: args.issuer,
        audience: args.audience,
        exact_url: args.exact_url,
        open,
        seal,
        allow_unsigned: args.allow_unsigned,
        max_age: args.max_age,
        policy: match args.policy {
            Policy::FailClosed => StalenessPolicy::FailClosed,
            Policy::ExactSource => StalenessPolicy::ExactSource,
            Policy::FailOpen => StalenessPolicy::FailOpen,
        },
        forward: args.forward_claim,
        jwks,
        conn,
    })
}

fn millis(d: Duration, default: u64) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(default)
}

/// Run the sidecar until ctrl-c or SIGTERM.
pub fn run(args: AuthzArgs) -> anyhow::Result<()> {
    super::init_logging();
    // The application picks the JWT crypto provider (only rust_crypto is compiled in).
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let config = load_config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = authz::start(config).await?;
        // Scripts and tests read these lines to learn the ports when listening on port 0.
        println!("revbloom: authz checks on http://{}", running.check_addr());
        println!("revbloom: authz admin on http://{}", running.admin_addr());
        if let Some(addr) = running.grpc_addr() {
            println!("revbloom: authz ext_authz gRPC on http://{addr}");
        }
        let stop = running.shutdown_token();
        tokio::select! {
            () = revbloom_server::run::shutdown_signal() => {
                eprintln!("revbloom: shutting down; finishing in-flight checks");
            }
            // A front end failed and shut the sidecar down.
            () = stop.cancelled() => {}
        }
        running.shutdown();
        running.wait().await?;
        anyhow::Ok(())
    })
}
