//! HTTPS for the clients of a publisher: the sync client, the HTTP exact source and the
//! `revbloom` command line all build their `reqwest` client from a [`ClientTls`].
//!
//! TLS is rustls on the *ring* provider, handed to reqwest as a finished configuration: the
//! crate never installs a process-wide default provider, and never asks for one. Two trust
//! choices exist:
//!
//! - [`ClientTls::system_roots`] (the default): the operating system's trust store, read by
//!   `rustls-platform-verifier` when the client is built (on Linux the distribution's CA bundle,
//!   found through `SSL_CERT_FILE` / `SSL_CERT_DIR` when set). A machine without any CA
//!   certificate still builds a client — plain `http://` keeps working — and every `https://`
//!   connection then fails with a message saying there is nothing to trust.
//! - [`ClientTls::ca_file`]: only the CA certificates of one PEM file, the way `curl --cacert`
//!   reads it. A publisher with a certificate from a private CA is trusted through that CA
//!   alone, so no public CA can vouch for a look-alike.
//!
//! A certificate that does not verify (unknown issuer, wrong host name, expired) fails the
//! request. reqwest's own message for it is only "error sending request"; the cause sits a few
//! [`source`](std::error::Error::source) steps down. [`error_chain`] writes the whole chain on
//! one line (`... client error (Connect): invalid peer certificate: UnknownIssuer`), and
//! [`certificate_error`] finds the certificate problem itself.

use std::error::Error;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use thiserror::Error;

/// Largest CA file read, bytes: a bundle of every public root is about 250 KiB.
pub const MAX_CA_FILE_BYTES: u64 = 4 << 20;

/// Which certificates a client trusts when it connects to a publisher over `https://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    ca_file: Option<PathBuf>,
}

/// A [`ClientTls`] that cannot be turned into a client: the CA file is unusable.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientTlsError {
    /// The CA file cannot be read.
    #[error("cannot read the CA file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CA file is larger than [`MAX_CA_FILE_BYTES`].
    #[error("the CA file {path} is larger than {MAX_CA_FILE_BYTES} bytes; give the PEM file of the CA that signed the publisher's certificate")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The CA file holds no PEM certificate, or a damaged one.
    #[error("the CA file {path} holds no usable PEM certificate (-----BEGIN CERTIFICATE-----): {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate of the CA file cannot be a trust anchor.
    #[error("the CA file {path} holds a certificate that cannot be trusted as a CA: {source}")]
    Anchor {
        /// The file.
        path: PathBuf,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// rustls refused the configuration (no protocol version in common with the provider).
    #[error("cannot set up TLS: {0}")]
    Config(#[source] rustls::Error),
}

impl ClientTls {
    /// Trust the operating system's certificate store (the default).
    pub fn system_roots() -> Self {
        Self::default()
    }

    /// Trust only the CA certificates in the PEM file at `path` (one or more
    /// `-----BEGIN CERTIFICATE-----` blocks); the system store is not consulted.
    pub fn ca_file(path: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: Some(path.into()),
        }
    }

    /// The CA file, when one is configured.
    pub fn ca_file_path(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The rustls client configuration: ring, TLS 1.2 and 1.3, and the trust chosen above.
    /// Reads the CA file (or the system store) now.
    pub fn rustls_config(&self) -> Result<ClientConfig, ClientTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(ClientTlsError::Config)?;
        let config = match &self.ca_file {
            Some(path) => builder
                .with_root_certificates(read_ca_file(path)?)
                .with_no_client_auth(),
            None => {
                let verifier: Arc<dyn ServerCertVerifier> =
                    match rustls_platform_verifier::Verifier::new(Arc::clone(&provider)) {
                        Ok(v) => Arc::new(v),
                        Err(e) => Arc::new(NothingTrusted {
                            why: e.to_string(),
                            provider,
                        }),
                    };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            }
        };
        Ok(config)
    }

    /// A `reqwest` client builder with this TLS configuration; add timeouts and build. Every
    /// reqwest client of this crate starts here: reqwest is built without a crypto provider
    /// of its own, and a builder that is not handed one cannot build.
    pub fn reqwest_builder(&self) -> Result<reqwest::ClientBuilder, ClientTlsError> {
        Ok(reqwest::Client::builder().tls_backend_preconfigured(self.rustls_config()?))
    }
}

/// The trust anchors of a PEM file: every certificate in it must parse and be usable.
fn read_ca_file(path: &Path) -> Result<RootCertStore, ClientTlsError> {
    let read = |source| ClientTlsError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read)?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(ClientTlsError::TooLarge {
            path: path.to_owned(),
        });
    }
    let pem = |source| ClientTlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        roots
            .add(cert.map_err(pem)?)
            .map_err(|source| ClientTlsError::Anchor {
                path: path.to_owned(),
                source,
            })?;
    }
    if roots.is_empty() {
        return Err(pem(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(roots)
}

/// The verifier of a machine whose trust store is empty or unreadable: every certificate is
/// refused, with the reason the store could not be loaded.
#[derive(Debug)]
struct NothingTrusted {
    why: String,
    provider: Arc<CryptoProvider>,
}

impl NothingTrusted {
    fn refuse(&self) -> rustls::Error {
        rustls::Error::General(format!(
            "no trusted CA certificates ({}); install the system CA bundle or give a CA file",
            self.why
        ))
    }
}

impl ServerCertVerifier for NothingTrusted {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(self.refuse())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(self.refuse())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(self.refuse())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `e` and its causes on one line, separated by `: `; a cause whose text the line already ends
/// with is not repeated (many errors print their cause in their own message too).
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// The certificate problem somewhere in `e`'s causes (unknown issuer, wrong name, expired), if
/// a TLS handshake failed over one. rustls's error travels inside `std::io::Error`s (reqwest's
/// connector wraps tokio-rustls's), which do not return it as a source; it is looked for
/// inside them too.
pub fn certificate_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a CertificateError> {
    let mut next = Some(e);
    while let Some(cause) = next {
        let mut inner: &(dyn Error + 'static) = cause;
        // Bounded: each step goes one wrapper in, and wrappers are finite.
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        if let Some(rustls::Error::InvalidCertificate(c)) = inner.downcast_ref::<rustls::Error>() {
            return Some(c);
        }
        next = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = ClientTls::ca_file(&missing).rustls_config().unwrap_err();
        assert!(matches!(e, ClientTlsError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = ClientTls::ca_file(&empty).rustls_config().unwrap_err();
        assert!(matches!(e, ClientTlsError::Pem { .. }), "{e}");
        assert!(e.to_string().contains("empty.pem"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = ClientTls::ca_file(&garbage).rustls_config().unwrap_err();
        assert!(matches!(e, ClientTlsError::Anchor { .. }), "{e}");
    }

    #[test]
    fn system_roots_always_build_a_client() {
        // With or without a CA bundle on the machine: plain HTTP must keep working.
        let client = ClientTls::system_roots().reqwest_builder().unwrap().build();
        assert!(client.is_ok());
    }

    #[test]
    fn a_certificate_error_is_found_inside_an_io_error() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // As reqwest hands it over: an io::Error around tokio-rustls's io::Error.
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert_eq!(
            certificate_error(&io),
            Some(&CertificateError::UnknownIssuer)
        );
        assert_eq!(error_chain(&io), "invalid peer certificate: UnknownIssuer");
        let plain = std::io::Error::other("refused");
        assert_eq!(certificate_error(&plain), None);
    }
}
