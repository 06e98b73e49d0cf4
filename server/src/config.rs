//! Publisher configuration: a JSON file, overridden by the environment, overridden by
//! command-line flags. `revbloom serve` reads `REVBLOOM_LISTEN` and `REVBLOOM_DATA` as the
//! fallbacks of its `--listen` and `--data` flags; the admin token comes only from the file,
//! `REVBLOOM_ADMIN_TOKEN` ([`admin_token_from_env`]) or the generated token file.
//!
//! Every field has a documented default (see `docs/API.md`), so an empty file — or none — is
//! a valid configuration: `revbloom serve` starts with no set-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use revbloom::bounds::{
    Bounds, DEFAULT_MAX_CLOCK_SKEW_SECS, DEFAULT_MAX_TOKEN_LIFETIME_SECS, MAX_JTI_BYTES,
};
use revbloom::hash::normalize_issuer;
use revbloom::WindowConfig;

mod idp;
pub use idp::{
    BackchannelSettings, ClientSecretError, IdpSettings, RevocationClient, TrustedIssuer,
    MAX_CLIENT_ID_BYTES, MIN_CLIENT_SECRET_BYTES,
};

/// Environment variable that sets the admin bearer token.
pub const ENV_ADMIN_TOKEN: &str = "REVBLOOM_ADMIN_TOKEN";
/// Environment variable that sets the listen address (read by `revbloom serve --listen`).
pub const ENV_LISTEN: &str = "REVBLOOM_LISTEN";
/// Environment variable that sets the data folder (read by `revbloom serve --data`).
pub const ENV_DATA: &str = "REVBLOOM_DATA";
/// Environment variable that names a shared store (read by `revbloom serve --store`).
pub const ENV_STORE: &str = "REVBLOOM_STORE";
/// Environment variable that names an object store to publish to (read by
/// `revbloom serve --publish-to`).
pub const ENV_PUBLISH_TO: &str = "REVBLOOM_PUBLISH_TO";
/// Default listen address: loopback only, so a fresh start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";
/// Default data folder, relative to the working directory.
pub const DEFAULT_DATA: &str = "revbloom-data";

/// Errors loading or validating the configuration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid JSON for [`ServerConfig`] (unknown keys are refused).
    #[error("config file {path} is invalid: {source}; see docs/API.md for the keys")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said, with line and column.
        source: serde_json::Error,
    },
    /// The window parameters do not make a valid window.
    #[error("config field window is invalid: {source}")]
    Window {
        /// What the window refused.
        source: revbloom::ConfigError,
    },
    /// A connection limit is out of range.
    #[error("config field connections is invalid: {source}")]
    Connections {
        /// Which limit, and why.
        source: crate::limits::LimitsError,
    },
    /// No admin token is configured and the token file cannot be used.
    #[error("no admin token configured and the token file {path} is unusable: {source}")]
    AdminTokenFile {
        /// `DATA/admin-token`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A field is out of range.
    #[error("config field {field} is invalid: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// Why, and what is accepted.
        message: String,
    },
}

/// Errors parsing a duration (see [`parse_duration`]).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing but whitespace was given.
    #[error("no duration given; write one like 30s, 500ms, 15m, 1h or 2d")]
    Empty,
    /// The text starts with `-`: a wait or a window span cannot be negative.
    #[error("`{input}` is negative; a duration is zero or more, like 30s or 15m")]
    Negative {
        /// The text as given.
        input: String,
    },
    /// The number does not fit: more than about 584 billion years, or finer than 1 ns.
    #[error("`{input}` is out of range: too long, or finer than a nanosecond")]
    Overflow {
        /// The text as given.
        input: String,
    },
    /// Not a number followed by a unit.
    #[error("`{input}` is not a duration like 30s, 500ms, 15m, 1h or 2d: {source}")]
    Invalid {
        /// The text as given.
        input: String,
        /// What the parser found wrong.
        source: humantime::DurationError,
    },
}

/// Parse a duration: a bare number of seconds (`90`), or numbers with units as
/// `humantime` reads them (`500ms`, `30s`, `15m`, `1h`, `2d`, `1h 30m`, `1.5s`). Surrounding
/// whitespace is ignored.
///
/// The command line's spans and the API's long-poll `wait` share this parser, so both accept
/// the same forms. A bare number is seconds (`?wait=5`, `--leeway 90`), a form `humantime`
/// alone refuses for want of a unit.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative { input: s.into() });
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| DurationError::Overflow { input: s.into() });
    }
    humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => DurationError::Overflow { input: s.into() },
        source => DurationError::Invalid {
            input: s.into(),
            source,
        },
    })
}

/// Where and how generations are published to an object store (`"publish_to"` in the
/// configuration, `--publish-to URL` on the command line); see [`crate::distribute`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishTo {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///absolute/folder`. Credentials come from the environment (`AWS_*`,
    /// `GOOGLE_*`, `AZURE_*`) or `options`.
    pub url: String,
    /// `object_store` configuration keys set on top of the environment, e.g.
    /// `{"aws_endpoint": "http://127.0.0.1:9000", "aws_allow_http": "true"}`.
    pub options: std::collections::BTreeMap<String, String>,
    /// `max-age` of the manifest's `Cache-Control`, seconds (default 5): the longest a CDN
    /// may hold back a new generation.
    pub manifest_max_age_secs: u64,
    /// The most deltas one manifest lists before a full snapshot is uploaded (default 64).
    pub max_chain: usize,
    /// How long an object no manifest names is kept before it is deleted, seconds (default
    /// 600); must exceed the manifest's lifetime in caches plus a download.
    pub sweep_grace_secs: u64,
}

impl Default for PublishTo {
    fn default() -> Self {
        Self {
            url: String::new(),
            options: Default::default(),
            manifest_max_age_secs: 5,
            max_chain: 64,
            sweep_grace_secs: 600,
        }
    }
}

impl PublishTo {
    /// Publish to `url` with the default settings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.url.is_empty() {
            return Err((
                "publish_to.url",
                "must name the object store (s3://bucket/prefix, file:///folder, ...)".into(),
            ));
        }
        if !(1..=86_400).contains(&self.manifest_max_age_secs) {
            return Err((
                "publish_to.manifest_max_age_secs",
                "must lie in 1..=86400".into(),
            ));
        }
        if !(1..=revbloom::sync::manifest::MAX_MANIFEST_DELTAS).contains(&self.max_chain) {
            return Err((
                "publish_to.max_chain",
                format!(
                    "must lie in 1..={}",
                    revbloom::sync::manifest::MAX_MANIFEST_DELTAS
                ),
            ));
        }
        if self.sweep_grace_secs <= self.manifest_max_age_secs.saturating_add(30) {
            return Err((
                "publish_to.sweep_grace_secs",
                "must exceed manifest_max_age_secs by more than 30 s: a reader of the \
                 previous manifest must still find its objects"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Window parameters of the published filter (see [`WindowConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowSettings {
    /// Bucket width in seconds (default 3600).
    pub bucket_width_secs: u64,
    /// Longest token lifetime covered, seconds (default 86400).
    pub horizon_secs: u64,
    /// Least capacity of every bucket, in revocations (default 0). The publisher sizes each
    /// bucket for what it holds plus the arrivals it measures there (see
    /// [`sizing`](crate::sizing)); a floor is only worth setting before a known burst, so that
    /// its first revocations still travel as deltas.
    pub expected_per_bucket: u64,
    /// Target false-positive rate (default 0.001).
    pub fp_rate: f64,
    /// Verifiers accept a token until its `exp` plus this many seconds (default 60).
    pub leeway_secs: u64,
    /// Longest lifetime `exp − iat` of any token the deployment accepts, seconds (default 30
    /// days). Verifiers refuse longer-lived tokens; cutoffs are kept this long.
    pub max_token_lifetime_secs: u64,
    /// Most any two clocks of the deployment (issuers, publisher, verifiers) differ by,
    /// seconds (default 5).
    pub max_clock_skew_secs: u64,
}

impl Default for WindowSettings {
    fn default() -> Self {
        Self {
            bucket_width_secs: 3600,
            horizon_secs: 86_400,
            expected_per_bucket: 0,
            fp_rate: 0.001,
            leeway_secs: 60,
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            max_clock_skew_secs: DEFAULT_MAX_CLOCK_SKEW_SECS,
        }
    }
}

impl WindowSettings {
    /// The core [`WindowConfig`] these settings describe.
    pub fn to_window_config(&self) -> WindowConfig {
        WindowConfig::default()
            .bucket_width(Duration::from_secs(self.bucket_width_secs))
            .horizon(Duration::from_secs(self.horizon_secs))
            // The core needs a start size; the publisher refits every bucket before it
            // publishes anything.
            .expected_per_bucket(self.expected_per_bucket.max(1))
            .fp_rate(self.fp_rate)
            .leeway(Duration::from_secs(self.leeway_secs))
            .max_token_lifetime(Duration::from_secs(self.max_token_lifetime_secs))
            .max_clock_skew(Duration::from_secs(self.max_clock_skew_secs))
    }

    /// The deployment's time bounds these settings describe.
    pub fn bounds(&self) -> Bounds {
        self.to_window_config().bounds()
    }
}

/// Input limits of the HTTP API. Requests over a limit get a 4xx naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// Most revocations in one batch (default 1000).
    pub max_batch: usize,
    /// Longest `jti`, in bytes (default and minimum [`MAX_JTI_BYTES`], 1024: verifiers refuse
    /// tokens with a longer `jti`, and any shorter limit would leave tokens they accept
    /// unrevocable).
    pub max_jti_bytes: usize,
    /// Longest `iss`, claim value or claim name, in bytes (default 1024).
    pub max_string_bytes: usize,
    /// How far in the future `exp` may lie, seconds (default 400 days): a revocation for a
    /// token that lives longer than that is a mistake, not a token.
    pub max_exp_ahead_secs: u64,
    /// Longest long-poll wait, seconds (default 60).
    pub max_wait_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_batch: 1000,
            max_jti_bytes: MAX_JTI_BYTES,
            max_string_bytes: 1024,
            max_exp_ahead_secs: 400 * 86_400,
            max_wait_secs: 60,
        }
    }
}

/// Resolve a listen address `host:port`: an IP address (`127.0.0.1:8750`, `[::1]:8750`) or a
/// name (`localhost:8750`), which takes the first address the system resolver gives.
pub fn resolve_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let not = |why: String| {
        format!("{s:?} is not a host:port like 127.0.0.1:8750 or localhost:8750: {why}")
    };
    if s.rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(not("it needs a host and a port number".into()));
    }
    let mut addrs = s.to_socket_addrs().map_err(|e| not(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| not("the name resolves to no address".into()))
}

fn deserialize_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    resolve_listen(&s).map_err(serde::de::Error::custom)
}

/// The whole publisher configuration. Serialized as JSON; every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8750`): `host:port`, the host an address or
    /// a name (`localhost:8750`, resolved once at start, first address).
    #[serde(deserialize_with = "deserialize_listen")]
    pub listen: SocketAddr,
    /// Data folder holding the store and the generated admin token (default `revbloom-data`).
    pub data_dir: PathBuf,
    /// A shared PostgreSQL store, `postgres://user:password@host:port/database` (absent: the
    /// embedded redb store in `data_dir`). Any number of publishers may name the same
    /// database; one of them builds the snapshots, every one serves them.
    pub store: Option<String>,
    /// PEM file of the CA certificates trusted for the store's TLS (a URL with
    /// `sslmode=require`), instead of the system's store (absent: the system's store).
    pub store_ca_file: Option<PathBuf>,
    /// Admin bearer token. When absent (and `REVBLOOM_ADMIN_TOKEN` unset) one is generated on
    /// first start and kept in `data_dir/admin-token`, readable by the owner only.
    pub admin_token: Option<String>,
    /// Issuer assumed for *tokens* without an `iss` claim (trailing `/` removed). It travels in
    /// every snapshot, and the exact lookup uses it for queries without `iss`. Revocations and
    /// cutoffs without `iss` apply to every issuer whatever this is.
    pub default_iss: Option<String>,
    /// Ed25519 private key (PKCS#8 PEM) to sign snapshots with. When absent (and `sign` is
    /// not `false`), `data_dir/signing.key` is used, generated on first start together with
    /// its public key `data_dir/signing.pub` for verifiers.
    pub signing_key: Option<PathBuf>,
    /// Sign snapshots and deltas (default `true`). `false` publishes unsigned files, which
    /// verifiers syncing over the network refuse unless told to accept them; a warning is
    /// logged at start.
    pub sign: bool,
    /// The seal key file (64 hex digits) shared with verifiers: it seals every snapshot and
    /// delta the publisher hands out, and the read token of the exact lookup derives from
    /// it. When absent, `data_dir/verifier.key` is used, generated on first start.
    pub seal_key_file: Option<PathBuf>,
    /// Seal snapshots and deltas (default `true`). `false` hands them out in plaintext, so
    /// anyone who can fetch one can test guessed user ids and token ids against it; a warning
    /// is logged at start. The exact lookup still needs the read token.
    pub seal: bool,
    /// Folder to write a copy of every snapshot to (`snapshot.rbs`, atomically replaced), for
    /// distribution by a static file server or CDN.
    pub snapshot_dir: Option<PathBuf>,
    /// An object store to publish every generation to, as immutable snapshot and delta
    /// objects plus a signed manifest, for verifiers that sync from mirrors (absent: none).
    pub publish_to: Option<PublishTo>,
    /// Least time between two generations triggered by revocations, ms (default 250).
    pub coalesce_ms: u64,
    /// A generation is published at least this often even without changes, so `created_at`
    /// stays fresh for verifiers' staleness checks, seconds (default 30).
    pub refresh_secs: u64,
    /// How often expired entries are pruned from the store, seconds (default 300).
    pub prune_secs: u64,
    /// Deltas kept for `GET /v1/deltas` (default 256).
    pub delta_ring: usize,
    /// The filter's window.
    pub window: WindowSettings,
    /// API input limits.
    pub limits: Limits,
    /// Connection limits of the listener: timeouts, caps, shutdown grace.
    pub connections: crate::limits::ConnLimits,
    /// Serve HTTPS with this certificate and key instead of plain HTTP (absent: plain HTTP).
    pub tls: Option<crate::tls::TlsSettings>,
    /// Identity providers whose OIDC Back-Channel Logout tokens and RFC 7009 revocation
    /// requests are accepted (absent or without issuers: those endpoints answer 404).
    pub identity_providers: IdpSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8750)),
            data_dir: PathBuf::from(DEFAULT_DATA),
            store: None,
            store_ca_file: None,
            admin_token: None,
            default_iss: None,
            signing_key: None,
            sign: true,
            seal_key_file: None,
            seal: true,
            snapshot_dir: None,
            publish_to: None,
            coalesce_ms: 250,
            refresh_secs: 30,
            prune_secs: 300,
            delta_ring: 256,
            window: WindowSettings::default(),
            limits: Limits::default(),
            connections: crate::limits::ConnLimits::default(),
            tls: None,
            identity_providers: IdpSettings::default(),
        }
    }
}

impl ServerConfig {
    /// Read a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read(path).map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ConfigFileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Take the admin token from `REVBLOOM_ADMIN_TOKEN` when it is set (see
    /// [`admin_token_from_env`]). `REVBLOOM_LISTEN` and `REVBLOOM_DATA` are read by the
    /// command line's `--listen` and `--data`, which rank above the file and below the flags.
    pub fn apply_env(&mut self) {
        if let Some(t) = admin_token_from_env() {
            self.admin_token = Some(t);
        }
    }

    /// Check ranges the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        let field = |field, message: String| Err(ConfigFileError::Field { field, message });
        if let Err(source) = self.window.to_window_config().validate() {
            return Err(ConfigFileError::Window { source });
        }
        if let Err(source) = self.connections.validate() {
            return Err(ConfigFileError::Connections { source });
        }
        if let Some(Err((key, why))) = self.tls.as_ref().map(|t| t.validate()) {
            return field(key, why.into());
        }
        if let Some(Err((key, why))) = self.publish_to.as_ref().map(|p| p.validate()) {
            return field(key, why);
        }
        if let Err((key, why)) = self.identity_providers.validate() {
            return field(key, why);
        }
        if let Some(t) = &self.admin_token {
            if t.len() < 16 {
                return field(
                    "admin_token",
                    "must be at least 16 characters; leave it unset to have one generated".into(),
                );
            }
            if !revbloom::bearer::is_b64token(t) {
                return field(
                    "admin_token",
                    "may hold only letters, digits and - . _ ~ + / (then = padding): a bearer \
                     token (RFC 6750) cannot carry anything else"
                        .into(),
                );
            }
        }
        if !self.sign && self.signing_key.is_some() {
            return field(
                "sign",
                "is false but signing_key names a key; remove one of the two".into(),
            );
        }
        if self.store.is_none() && self.store_ca_file.is_some() {
            return field(
                "store_ca_file",
                "is set but no store is: it applies to a PostgreSQL store (store, --store)".into(),
            );
        }
        if let Some(url) = &self.store {
            if !crate::store::postgres::is_postgres_url(url) {
                return field(
                    "store",
                    "must be a postgres:// (or postgresql://) URL; leave it unset for the \
                     embedded store in the data folder"
                        .into(),
                );
            }
            // Replicas hand out each other's bytes: they must seal and sign with one key.
            if self.seal && self.seal_key_file.is_none() {
                return field(
                    "seal_key_file",
                    "is required with a shared store: every replica must seal with the same key \
                     (make one with `revbloom keygen --seal-key FILE`), or set \"seal\": false"
                        .into(),
                );
            }
            if self.sign && self.signing_key.is_none() {
                return field(
                    "signing_key",
                    "is required with a shared store: every replica must sign with the same key \
                     (make one with `revbloom keygen`), or set \"sign\": false"
                        .into(),
                );
            }
        }
        if matches!(&self.default_iss, Some(i) if normalize_issuer(i).is_empty()) {
            return field(
                "default_iss",
                "must not be empty (nor only `/`); leave it unset".into(),
            );
        }
        // Upper bounds keep every timer arithmetic far from overflow, and catch unit mix-ups.
        if !(1..=60_000).contains(&self.coalesce_ms) {
            return field("coalesce_ms", "must lie in 1..=60000".into());
        }
        if !(1..=86_400).contains(&self.refresh_secs) {
            return field("refresh_secs", "must lie in 1..=86400".into());
        }
        if !(1..=604_800).contains(&self.prune_secs) {
            return field("prune_secs", "must lie in 1..=604800".into());
        }
        if !(1..=3_600).contains(&self.limits.max_wait_secs) {
            return field("limits.max_wait_secs", "must lie in 1..=3600".into());
        }
        if self.delta_ring == 0 {
            return field("delta_ring", "must be at least 1".into());
        }
        let l = &self.limits;
        if l.max_body_bytes < 1024 || l.max_batch == 0 {
            return field(
                "limits",
                "max_body_bytes >= 1024 and max_batch >= 1 are required".into(),
            );
        }
        if l.max_jti_bytes < MAX_JTI_BYTES {
            return field(
                "limits.max_jti_bytes",
                format!(
                    "must be at least {MAX_JTI_BYTES}: verifiers accept tokens with a jti that long, \
                     and a lower limit would leave them unrevocable"
                ),
            );
        }
        Ok(())
    }

    /// The configured default issuer, normalised; `None` when unset.
    pub fn default_issuer(&self) -> Option<&str> {
        self.default_iss
            .as_deref()
            .map(normalize_issuer)
            .filter(|i| !i.is_empty())
    }
}

/// The admin token in `REVBLOOM_ADMIN_TOKEN`, if set (and valid UTF-8).
///
/// This is the one place the process reads it, for the server and the admin commands alike.
/// The token has no command-line flag on `serve`: arguments are visible to every local user
/// (`ps`, `/proc/PID/cmdline`) and land in shell history, while the environment and a 0600
/// file are readable by the owner only.
pub fn admin_token_from_env() -> Option<String> {
    std::env::var(ENV_ADMIN_TOKEN).ok()
}

/// File in the data folder holding a generated admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Where the admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// From the config file or `REVBLOOM_ADMIN_TOKEN`.
    Configured,
    /// Read from the token file a previous start generated.
    File(PathBuf),
    /// Generated now and written to this file (mode 0600).
    Generated(PathBuf),
}

/// The admin token to use: the configured one, else the one in `data_dir/admin-token`, else a
/// new random one written there readable by the owner only. There is never an open admin API.
pub fn resolve_admin_token(
    config: &ServerConfig,
) -> Result<(String, TokenSource), ConfigFileError> {
    if let Some(t) = &config.admin_token {
        return Ok((t.clone(), TokenSource::Configured));
    }
    let path = config.data_dir.join(ADMIN_TOKEN_FILE);
    let io_err = |source: std::io::Error| ConfigFileError::AdminTokenFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 16 && revbloom::bearer::is_b64token(t.trim()) => {
            return Ok((t.trim().to_owned(), TokenSource::File(path)))
        }
        Ok(_) => {
            return Err(io_err(std::io::Error::other(
                "it holds fewer than 16 characters, or characters a bearer token cannot carry; \
                 delete it to have a new token generated",
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    crate::store::create_private_dir(&config.data_dir).map_err(io_err)?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| io_err(std::io::Error::other(e)))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created 0600 from the start: no window in which another user could read it.
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(io_err)?;
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes()).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    Ok((token, TokenSource::Generated(path)))
}

/// File in the data folder holding the generated seal key (give a copy to every verifier).
pub const SEAL_KEY_FILE: &str = "verifier.key";
/// File in the data folder holding the generated signing key (PKCS#8 PEM, mode 0600).
pub const SIGNING_KEY_FILE: &str = "signing.key";
/// File in the data folder holding the generated signing key's public half (SPKI PEM), for
/// verifiers.
pub const SIGNING_PUB_FILE: &str = "signing.pub";

/// Where a publisher key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// Named by the configuration.
    Configured(PathBuf),
    /// Read from the data folder, generated by an earlier start.
    File(PathBuf),
    /// Generated now into this file (mode 0600).
    Generated(PathBuf),
    /// Turned off by the configuration (`"sign": false`).
    Off,
}

/// The publisher's keys, as [`resolve_publisher_keys`] found or made them.
#[derive(Debug)]
pub struct PublisherKeys {
    /// The seal key (always present: the read token derives from it even when `seal` is off).
    pub seal: revbloom::snapshot::SealKey,
    /// Where the seal key came from.
    pub seal_source: KeySource,
    /// The signing key, unless signing is off.
    pub signing: Option<ed25519_dalek::SigningKey>,
    /// Where the signing key came from.
    pub signing_source: KeySource,
}

/// Errors finding or generating the publisher's keys.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A seal key file that cannot be used.
    #[error("seal key: {0}")]
    Seal(#[from] revbloom::snapshot::SealKeyError),
    /// A signing key file that cannot be used.
    #[error("signing key: {0}")]
    Signing(#[from] revbloom::snapshot::KeyFileError),
    /// A key could not be generated or written.
    #[error("cannot create {path}: {source}; check the data folder is writable")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Find the publisher's seal and signing keys: the files the configuration names, else the
/// data folder's `verifier.key` and `signing.key` (with `signing.pub`), generated (mode 0600)
/// when missing. Fills `config.seal_key_file` and `config.signing_key` with the paths used,
/// so calling it again reads the same files. A missing generated key is made anew: verifiers
/// holding the old one then refuse the new files loudly (unknown seal key id, bad signature)
/// until they get the new one; they never accept something unchecked.
pub fn resolve_publisher_keys(config: &mut ServerConfig) -> Result<PublisherKeys, KeyError> {
    use revbloom::snapshot::{read_signing_key, SealKey};
    let create = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| KeyError::Create { path, source }
    };
    let (seal, seal_source) = match &config.seal_key_file {
        Some(p) => (SealKey::from_file(p)?, KeySource::Configured(p.clone())),
        None => {
            let path = config.data_dir.join(SEAL_KEY_FILE);
            config.seal_key_file = Some(path.clone());
            if path.exists() {
                (SealKey::from_file(&path)?, KeySource::File(path))
            } else {
                crate::store::create_private_dir(&config.data_dir).map_err(create(&path))?;
                let key = SealKey::generate()?;
                write_private_new(&path, key.to_file_text().as_bytes()).map_err(create(&path))?;
                (key, KeySource::Generated(path))
            }
        }
    };
    let (signing, signing_source) = if !config.sign {
        (None, KeySource::Off)
    } else {
        match &config.signing_key {
            Some(p) => (Some(read_signing_key(p)?), KeySource::Configured(p.clone())),
            None => {
                let path = config.data_dir.join(SIGNING_KEY_FILE);
                if path.exists() {
                    (Some(read_signing_key(&path)?), KeySource::File(path))
                } else {
                    crate::store::create_private_dir(&config.data_dir).map_err(create(&path))?;
                    let key = generate_signing_key(&config.data_dir).map_err(create(&path))?;
                    (Some(key), KeySource::Generated(path))
                }
            }
        }
    };
    if let KeySource::File(p) | KeySource::Generated(p) = &signing_source {
        config.signing_key = Some(p.clone());
    }
    Ok(PublisherKeys {
        seal,
        seal_source,
        signing,
        signing_source,
    })
}

/// Generate `dir/signing.key` (0600) and `dir/signing.pub` (0644, for verifiers).
fn generate_signing_key(dir: &Path) -> std::io::Result<ed25519_dalek::SigningKey> {
    use ed25519_dalek::pkcs8::spki::EncodePublicKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(Default::default())
        .map_err(std::io::Error::other)?;
    let public = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(std::io::Error::other)?;
    // The public half first: a crash between the two leaves no private key without it.
    revbloom::sync::write_file_atomically(&dir.join(SIGNING_PUB_FILE), public.as_bytes())?;
    write_private_new(&dir.join(SIGNING_KEY_FILE), private.as_bytes())?;
    Ok(key)
}

/// Create `path` (which must not exist) mode 0600 from the start, write `bytes`, fsync.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ServerConfig {
            data_dir: dir.path().join("data"),
            ..ServerConfig::default()
        };
        let k1 = resolve_publisher_keys(&mut c).unwrap();
        assert!(matches!(k1.seal_source, KeySource::Generated(_)));
        assert!(matches!(k1.signing_source, KeySource::Generated(_)));
        assert_eq!(c.seal_key_file, Some(c.data_dir.join(SEAL_KEY_FILE)));
        assert_eq!(c.signing_key, Some(c.data_dir.join(SIGNING_KEY_FILE)));
        #[cfg(unix)]
        for (f, want) in [
            (SEAL_KEY_FILE, 0o600),
            (SIGNING_KEY_FILE, 0o600),
            (SIGNING_PUB_FILE, 0o644),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(c.data_dir.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, want, "{f}");
        }
        let public = revbloom::snapshot::read_verifying_key(&c.data_dir.join(SIGNING_PUB_FILE));
        let signing = k1.signing.clone().unwrap();
        assert_eq!(public.unwrap(), signing.verifying_key());
        // A second start reads the same files.
        let mut again = ServerConfig {
            data_dir: c.data_dir.clone(),
            ..ServerConfig::default()
        };
        let k2 = resolve_publisher_keys(&mut again).unwrap();
        assert_eq!(k2.seal, k1.seal);
        assert_eq!(k2.signing, k1.signing);
        assert!(matches!(k2.seal_source, KeySource::File(_)));
        // Signing off: no signing key, none generated.
        let mut off = ServerConfig {
            data_dir: dir.path().join("off"),
            sign: false,
            ..ServerConfig::default()
        };
        let k3 = resolve_publisher_keys(&mut off).unwrap();
        assert!(k3.signing.is_none() && k3.signing_source == KeySource::Off);
        assert!(!off.data_dir.join(SIGNING_KEY_FILE).exists());
        // A damaged key file is refused, never replaced.
        std::fs::write(c.data_dir.join(SEAL_KEY_FILE), "not a key").unwrap();
        let mut bad = ServerConfig {
            data_dir: c.data_dir.clone(),
            ..ServerConfig::default()
        };
        let e = resolve_publisher_keys(&mut bad).unwrap_err().to_string();
        assert!(e.contains("verifier.key"), "{e}");
        let c: ServerConfig =
            serde_json::from_str(r#"{"sign": false, "signing_key": "/k.pem"}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("sign"));
    }

    #[test]
    fn empty_file_is_the_default() {
        let c: ServerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, ServerConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn durations_take_units_or_bare_seconds() {
        let ok = [
            ("90", Duration::from_secs(90)),
            (" 5 ", Duration::from_secs(5)),
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("1h", Duration::from_secs(3600)),
            ("2d", Duration::from_secs(2 * 86_400)),
            ("30d", Duration::from_secs(30 * 86_400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        for s in ["-1", "-1s", " -5m"] {
            assert!(
                matches!(parse_duration(s), Err(DurationError::Negative { .. })),
                "{s}"
            );
        }
        for s in ["99999999999999999999999", "99999999999999999999999s"] {
            assert!(
                matches!(parse_duration(s), Err(DurationError::Overflow { .. })),
                "{s}"
            );
        }
        for s in ["forever", "5x", "s", "1.5", "0x10"] {
            let e = parse_duration(s).unwrap_err();
            assert!(matches!(e, DurationError::Invalid { .. }), "{s}: {e:?}");
            assert!(e.to_string().contains("like 30s"), "{e}");
        }
        let e = parse_duration("-1s").unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_refused() {
        assert!(serde_json::from_str::<ServerConfig>(r#"{"listn": "x"}"#).is_err());
        let c: ServerConfig = serde_json::from_str(r#"{"window": {"fp_rate": 2.0}}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("window"));
        let c: ServerConfig = serde_json::from_str(r#"{"admin_token": "short"}"#).unwrap();
        assert!(c.validate().is_err());
        // Long enough, but no Authorization header could carry it.
        let c: ServerConfig =
            serde_json::from_str(r#"{"admin_token": "sixteen chars ok!"}"#).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("admin_token"), "{e}");
        let c: ServerConfig =
            serde_json::from_str(r#"{"admin_token": "a-valid_token.0123456789=="}"#).unwrap();
        assert!(c.validate().is_ok());
        let c: ServerConfig =
            serde_json::from_str(r#"{"limits": {"max_jti_bytes": 256}}"#).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("limits.max_jti_bytes"), "{e}");
        let c: ServerConfig = serde_json::from_str(r#"{"default_iss": "//"}"#).unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn time_bounds_and_default_issuer_reach_the_window() {
        let c: ServerConfig = serde_json::from_str(
            r#"{"default_iss": "https://idp/",
                "window": {"leeway_secs": 30, "max_token_lifetime_secs": 7200,
                           "max_clock_skew_secs": 2}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.window.bounds(),
            Bounds {
                max_token_lifetime: 7200,
                leeway: 30,
                max_clock_skew: 2
            }
        );
        assert_eq!(c.default_issuer(), Some("https://idp"));
        let d = ServerConfig::default();
        assert_eq!(d.limits.max_jti_bytes, MAX_JTI_BYTES);
        assert_eq!(
            d.window.bounds(),
            Bounds {
                max_token_lifetime: 30 * 86_400,
                leeway: 60,
                max_clock_skew: 5
            }
        );
    }

    #[test]
    fn token_is_generated_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("revbloom-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = ServerConfig {
            data_dir: dir.clone(),
            ..ServerConfig::default()
        };
        let (t1, s1) = resolve_admin_token(&c).unwrap();
        assert!(matches!(s1, TokenSource::Generated(_)));
        assert_eq!(t1.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(ADMIN_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (t2, s2) = resolve_admin_token(&c).unwrap();
        assert_eq!(t1, t2);
        assert!(matches!(s2, TokenSource::File(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
