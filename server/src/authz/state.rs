//! The sidecar's live state: the snapshot handle kept current by the sync client, the JWKS
//! client keeping issuers' keys current, and the verifier over both. Readiness is read from
//! here, so `/readyz` and the check answer from the same facts.

use std::sync::Arc;

use jsonwebtoken::Validation;
use revbloom::sync::{JwksClient, JwksClientError, SyncClient, SyncConfig, SyncError, SyncStats};
use revbloom::verify::{
    BuildError, CachedSource, HttpExactSource, HttpExactSourceError, Issuer, Issuers, IssuersError,
    Verifier,
};
use revbloom::SnapshotHandle;
use serde_json::{json, Value};
use thiserror::Error;

use super::config::{AuthzConfig, RevocationSource, TokenKeys};

/// Why the sidecar could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthzError {
    /// The verifier's configuration is inconsistent.
    #[error("cannot build the verifier: {0}")]
    Verifier(#[from] BuildError),
    /// A `--jwks` issuer is unusable (a duplicate, a bad URL).
    #[error("bad JWKS issuers: {0}")]
    Issuers(#[from] IssuersError),
    /// The JWKS client could not start (an unusable CA file, a plain-http URL not allowed).
    #[error("cannot fetch JWKS: {0}")]
    Jwks(#[from] JwksClientError),
    /// The sync client could not start (an unusable CA file, a missing verifying key).
    #[error("cannot follow revocations: {0}")]
    Sync(#[from] SyncError),
    /// The exact source URL is unusable.
    #[error("bad exact source: {0}")]
    ExactSource(#[from] HttpExactSourceError),
    /// A connection limit is out of range.
    #[error(transparent)]
    Limits(#[from] crate::limits::LimitsError),
    /// A front end failed while serving (see [`ExtraServer`](super::run::ExtraServer)).
    #[error("serving failed: {0}")]
    Server(#[source] std::io::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why `/readyz` says not ready; also the `reason` labels of `revbloom_authz_not_ready`.
pub const NOT_READY_REASONS: [&str; 3] = ["no_snapshot", "snapshot_stale", "jwks_not_loaded"];

/// The verifier and what keeps it current. Dropping it stops the background syncs.
pub struct AuthzState {
    handle: SnapshotHandle,
    verifier: Arc<Verifier>,
    sync: SyncClient,
    stats: Arc<SyncStats>,
    jwks: Option<JwksClient>,
}

impl std::fmt::Debug for AuthzState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzState")
            .field("generation", &self.handle.generation())
            .finish_non_exhaustive()
    }
}

impl AuthzState {
    /// Build the verifier of `config` and start following its revocation source (the cache
    /// file first) and its JWKS issuers, on the current tokio runtime. Returns at once: the
    /// state may still lack a snapshot or keys, which checks and `/readyz` then say.
    pub fn start(config: &AuthzConfig) -> Result<Self, AuthzError> {
        let handle = SnapshotHandle::new(config.policy, config.max_age);
        let (builder, issuers) = match &config.keys {
            TokenKeys::Static { key, algorithm } => {
                let mut validation = Validation::new(*algorithm);
                if let Some(iss) = &config.issuer {
                    validation.set_issuer(&[iss]);
                }
                match &config.audience {
                    Some(aud) => validation.set_audience(&[aud]),
                    None => validation.validate_aud = false,
                }
                (Verifier::builder(key.clone(), validation), None)
            }
            TokenKeys::Jwks(list) => {
                let issuers = Arc::new(jwks_issuers(list, config.audience.as_deref())?);
                (Verifier::with_issuers(Arc::clone(&issuers)), Some(issuers))
            }
        };
        let mut builder = builder.state(handle.clone());
        let publisher = match &config.source {
            RevocationSource::Publisher { url, .. } => Some(url),
            _ => None,
        };
        if let Some(url) = config.exact_url.as_ref().or(publisher) {
            let mut source = HttpExactSource::new(url)?;
            if let Some(seal) = &config.seal {
                // The read token derived from the seal key: the lookup refuses anyone else.
                source = source.bearer(seal.read_token());
            }
            builder = builder.async_exact_source(CachedSource::new(source));
        } else {
            tracing::warn!("no exact source: tokens the filter matches are refused (including ~0.1% false positives)");
        }
        let verifier = Arc::new(builder.build()?);

        let jwks = match &issuers {
            Some(issuers) => Some(JwksClient::start(Arc::clone(issuers), config.jwks.clone())?),
            None => None,
        };
        let mut sync = match &config.source {
            RevocationSource::File(path) => SyncConfig::file(path),
            RevocationSource::Publisher { url, mirrors } => mirrors
                .iter()
                .fold(SyncConfig::url(url), |c, m| c.mirror(m)),
            RevocationSource::Mirrors(mirrors) => SyncConfig::mirrors(mirrors),
        };
        if let (Some(cache), false) = (
            &config.cache,
            matches!(config.source, RevocationSource::File(_)),
        ) {
            sync = sync.cache_file(cache.clone());
        }
        let mut sync = sync
            .allow_unsigned(config.allow_unsigned)
            .open_options(config.open.clone());
        if let Some(seal) = &config.seal {
            sync = sync.seal_key(seal.clone());
        }
        let sync = SyncClient::start(sync, handle.clone())?;
        let stats = sync.shared_stats();
        warn_on_issuer_mismatch(&sync, &handle, config, issuers.as_deref());
        Ok(Self {
            handle,
            verifier,
            sync,
            stats,
            jwks,
        })
    }

    /// The verifier every front end checks with.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The snapshot handle the sync client keeps current.
    pub fn handle(&self) -> &SnapshotHandle {
        &self.handle
    }

    /// The sync client's counters.
    pub fn sync_stats(&self) -> &SyncStats {
        &self.stats
    }

    /// The JWKS client, when issuers come from JWKS URLs.
    pub fn jwks(&self) -> Option<&JwksClient> {
        self.jwks.as_ref()
    }

    /// Why the sidecar cannot do its job at `now` (members of [`NOT_READY_REASONS`]; empty
    /// when ready): no verified snapshot, one older than the maximum age, or an issuer whose
    /// keys have never loaded.
    pub fn not_ready_reasons(&self, now: u64) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        match self.handle.generation() {
            None => reasons.push("no_snapshot"),
            Some(_) if self.handle.is_stale(now) => reasons.push("snapshot_stale"),
            Some(_) => {}
        }
        if !self.jwks_missing().is_empty() {
            reasons.push("jwks_not_loaded");
        }
        reasons
    }

    /// The readiness answer's body at `now`, with `reasons` from
    /// [`AuthzState::not_ready_reasons`].
    pub fn readiness_body(&self, now: u64, reasons: &[&str]) -> Value {
        let missing: Vec<Value> = self
            .jwks_missing()
            .into_iter()
            .map(|s| json!({"iss": s.iss, "last_error": s.last_error}))
            .collect();
        json!({
            "ready": reasons.is_empty(),
            "reasons": reasons,
            "generation": self.handle.generation(),
            "snapshot_age_secs": self.handle.age(now),
            "max_age_secs": self.handle.max_age().as_secs(),
            "last_sync_error": self.stats.last_error(),
            "jwks_not_loaded": missing,
        })
    }

    fn jwks_missing(&self) -> Vec<revbloom::sync::JwksIssuerStatus> {
        self.jwks
            .as_ref()
            .map_or_else(Vec::new, JwksClient::without_keys)
    }

    /// Stop following the source (also done on drop).
    pub fn stop(self) {
        self.sync.stop();
    }
}

/// The issuers of `--jwks ISS=URL`, each with `audience` (any audience without one).
fn jwks_issuers(
    list: &[(String, String)],
    audience: Option<&str>,
) -> Result<Issuers, IssuersError> {
    let issuers = list.iter().map(|(iss, url)| {
        let issuer = Issuer::new(iss, url);
        match audience {
            Some(aud) => issuer.audience(aud),
            None => {
                tracing::warn!(
                    iss,
                    "no --audience: tokens of this issuer for any audience are accepted"
                );
                issuer.any_audience()
            }
        }
    });
    Issuers::new(issuers.collect::<Vec<_>>())
}

/// Once the first snapshot is in, log when the accepted issuers and the publisher's default
/// issuer disagree in a way that would keep revocations from matching.
fn warn_on_issuer_mismatch(
    sync: &SyncClient,
    handle: &SnapshotHandle,
    config: &AuthzConfig,
    issuers: Option<&Issuers>,
) {
    let mut loaded = sync.subscribe();
    let first = handle.clone();
    let accepted: Vec<String> = match issuers {
        Some(issuers) => issuers.iter().map(|i| i.iss().to_owned()).collect(),
        None => config.issuer.iter().cloned().collect(),
    };
    tokio::spawn(async move {
        if loaded.wait_for(Option::is_some).await.is_ok() {
            if let Some(view) = first.current() {
                tracing::info!(generation = view.generation(), "first snapshot loaded");
                for iss in &accepted {
                    for w in revbloom::verify::issuer_warnings(iss, &*view) {
                        tracing::warn!("{w}");
                    }
                }
            }
        }
    });
}
