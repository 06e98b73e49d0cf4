//! TLS on the publisher's listener: rustls on the *ring* provider, the certificate and key
//! read from PEM files and reloaded when they change.
//!
//! ring rather than aws-lc-rs: ring builds with the C compiler alone, where aws-lc-sys wants
//! CMake (and on some targets NASM or bindgen) — tools a build machine may not have. Both
//! offer the same TLS 1.2/1.3 cipher suites through rustls.
//!
//! Reload: [`ReloadingCert`] answers every handshake with the current [`CertifiedKey`], held in
//! an [`ArcSwap`]. [`watch`] looks at both files every [`TlsSettings::reload_interval_ms`]
//! (modification time, size, inode) and, when either changed, reads the pair again; the new
//! pair replaces the old one only if both files parse and the key belongs to the certificate.
//! A bad pair is logged and counted, and the old one keeps being served. Connections already
//! open keep the certificate they were made with.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Default for [`TlsSettings::reload_interval_ms`]: the files are looked at every 5 s.
pub const DEFAULT_RELOAD_INTERVAL_MS: u64 = 5_000;
/// Default for [`TlsSettings::handshake_timeout_ms`]: 10 s to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Largest certificate or key file read, bytes.
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// The listener's TLS settings (config key `tls`). `cert_file` and `key_file` are required;
/// the other keys are optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file with the server certificate first, then any intermediate certificates.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// How often the two files are checked for changes, ms (default 5000).
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
    /// Time a client has to complete the TLS handshake once its connection is accepted, ms
    /// (default 10000). A connection that sends no ClientHello is closed when it runs out;
    /// it holds a connection slot until then.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    DEFAULT_RELOAD_INTERVAL_MS
}

fn default_handshake_timeout_ms() -> u64 {
    DEFAULT_HANDSHAKE_TIMEOUT_MS
}

impl TlsSettings {
    /// Settings for `cert_file` and `key_file` with the default intervals.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            reload_interval_ms: DEFAULT_RELOAD_INTERVAL_MS,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
        }
    }

    /// The reload interval as a duration.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }

    /// The handshake timeout as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// Check the ranges: the reload interval in 100 ms ..= 1 h, the handshake timeout in
    /// 1 ms ..= 10 min. Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(100..=3_600_000).contains(&self.reload_interval_ms) {
            return Err(("tls.reload_interval_ms", "must lie in 100..=3600000"));
        }
        if !(1..=600_000).contains(&self.handshake_timeout_ms) {
            return Err(("tls.handshake_timeout_ms", "must lie in 1..=600000"));
        }
        Ok(())
    }
}

/// A certificate or key file that cannot be served.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is larger than [`MAX_PEM_FILE_BYTES`].
    #[error(
        "the TLS {what} file {path} is larger than {MAX_PEM_FILE_BYTES} bytes; give a PEM file"
    )]
    TooLarge {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A file holds no PEM item of the kind expected, or a damaged one.
    #[error("the TLS {what} file {path} holds no usable PEM {expected}: {source}")]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        expected: &'static str,
        /// What the PEM reader found wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The key is not one rustls can sign with, or does not belong to the certificate.
    #[error("the TLS key file {key} cannot serve the certificate in {cert}: {source}")]
    Key {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// Why rustls refused the pair.
        source: rustls::Error,
    },
    /// rustls refused the server configuration.
    #[error("cannot set up TLS: {0}")]
    Config(#[source] rustls::Error),
}

/// The crypto provider of the listener.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read a PEM file whole, refusing more than [`MAX_PEM_FILE_BYTES`].
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsError::TooLarge {
            what,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Read the certificate chain and key named by `settings` and check that they belong
/// together.
pub fn load_certified_key(settings: &TlsSettings) -> Result<CertifiedKey, TlsError> {
    let (cert_path, key_path) = (&settings.cert_file, &settings.key_file);
    let pem_err = |what, path: &Path, expected, source| TlsError::Pem {
        what,
        path: path.to_owned(),
        expected,
        source,
    };
    let cert_pem = read_pem("certificate", cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("certificate", cert_path, "certificate", e))?;
    if chain.is_empty() {
        return Err(pem_err(
            "certificate",
            cert_path,
            "certificate",
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    let key_pem = read_pem("key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_err("key", key_path, "private key", e))?;
    let key_err = |source| TlsError::Key {
        key: key_path.clone(),
        cert: cert_path.clone(),
        source,
    };
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(key_err)?;
    // `from_der` lets a key whose public half it cannot derive pass unchecked; a pair that
    // cannot be checked is refused here, so a reload never swaps in an unverified pair.
    certified.keys_match().map_err(key_err)?;
    Ok(certified)
}

/// The certificate resolver of the listener: every handshake gets the current pair.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingCert {
    /// A resolver serving `first`.
    pub fn new(first: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(first),
        }
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Serve `next` to new handshakes.
    pub fn replace(&self, next: CertifiedKey) {
        self.current.store(Arc::new(next));
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's TLS: the rustls configuration and the resolver the reload task updates.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// What the acceptor is built from.
    pub config: Arc<rustls::ServerConfig>,
    /// The resolver inside `config`.
    pub certs: Arc<ReloadingCert>,
    /// The settings it was made from.
    pub settings: TlsSettings,
}

impl ServerTls {
    /// Load the pair named by `settings` and build the server configuration (TLS 1.2 and 1.3,
    /// ALPN `http/1.1`, no client certificates).
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let certs = Arc::new(ReloadingCert::new(load_certified_key(settings)?));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            certs,
            settings: settings.clone(),
        })
    }

    /// A tokio-rustls acceptor for this configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// What identifies one version of a file without reading it: modification time, size and,
/// on Unix, device and inode (a file renamed into place has a new inode, even with the same
/// time and size).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    #[cfg(unix)]
    ino: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        ino: {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        },
    })
}

/// Watch the certificate and key files until `stop`, swapping in each new pair that loads
/// (see the module docs). Counts reloads and failures in `metrics`.
pub async fn watch(tls: ServerTls, metrics: Arc<Metrics>, stop: CancellationToken) {
    let (cert, key) = (&tls.settings.cert_file, &tls.settings.key_file);
    let mut seen = (stamp(cert), stamp(key));
    let mut tick = tokio::time::interval(tls.settings.reload_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = (stamp(cert), stamp(key));
        if now == seen {
            continue;
        }
        // Remembered whatever the outcome: a bad pair is reported once, and read again when
        // either file changes once more (e.g. the key written after the certificate).
        seen = now;
        let settings = tls.settings.clone();
        let loaded = tokio::task::spawn_blocking(move || load_certified_key(&settings)).await;
        match loaded {
            Ok(Ok(next)) => {
                tls.certs.replace(next);
                metrics.tls_reloads_total.fetch_add(1, Relaxed);
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Ok(Err(e)) => {
                metrics.tls_reload_failures_total.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "TLS certificate not reloaded; still serving the previous one");
            }
            Err(e) => {
                metrics.tls_reload_failures_total.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "TLS certificate not reloaded; still serving the previous one");
            }
        }
    }
}
