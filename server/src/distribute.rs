//! Static distribution through object storage (`--publish-to URL`): every published
//! generation goes into a bucket (S3, GCS, Azure Blob, or a local folder) as immutable
//! objects named by generation and content hash, then a small signed manifest naming the
//! latest generation and the delta chain is written last. Any static HTTP server or CDN in
//! front of the bucket is then a mirror verifiers sync from
//! ([`revbloom::sync::SyncConfig::mirror`]); the publisher serves none of that traffic.
//!
//! Layout under the destination prefix:
//!
//! ```text
//! manifest.rbm                              signed, short Cache-Control, replaced each time
//! snapshots/<gen>-<sha256>.rbs              immutable (create-if-absent), long Cache-Control
//! deltas/<parent>-<gen>-<sha256>.rbd        immutable (create-if-absent), long Cache-Control
//! ```
//!
//! Order makes readers safe without any locking: an object is complete before the manifest
//! that names it exists, and objects are never rewritten, so a reader holding any manifest
//! finds what it names (until the sweep removes objects no manifest has named for
//! [`ObjectPublisher::sweep_grace`]). The manifest is replaced with a compare-and-swap where
//! the store supports it (`If-Match` on its ETag), and never over a manifest of a newer
//! generation ([`DistributeError::Superseded`]): a builder that lost its lease cannot roll the
//! bucket back.
//!
//! Credentials come from the environment as `object_store` reads them (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`); [`Destination::parse_with`] adds explicit options on top.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use ed25519_dalek::SigningKey;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use revbloom::snapshot::OpenOptions;
use revbloom::sync::manifest::{
    sha256_hex, DeltaRef, Manifest, ManifestError, ObjectRef, MANIFEST_FILE,
};
use thiserror::Error;

/// `Cache-Control` of the manifest unless configured otherwise: short, so a CDN passes a new
/// generation on within seconds.
pub const DEFAULT_MANIFEST_CACHE_CONTROL: &str = "public, max-age=5";
/// `Cache-Control` of snapshot and delta objects: they never change.
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Which kind of store a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `file:///path`: a local folder (serve it with any static HTTP server).
    File,
    /// `s3://bucket/prefix` (and S3-compatible stores through `AWS_ENDPOINT`).
    S3,
    /// `gs://bucket/prefix`.
    Gcs,
    /// `az://container/prefix`.
    Azure,
}

/// Errors of static distribution. Each names the destination; the publisher keeps serving
/// over HTTP whatever happens here.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DistributeError {
    /// The `--publish-to` URL is not one this build can write to.
    #[error("--publish-to {url}: {reason}")]
    Url {
        /// The URL as given (without credentials).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store client could not be built (missing bucket name, bad option, unusable
    /// folder).
    #[error("--publish-to {url}: cannot set up the object store: {source}")]
    Setup {
        /// The destination.
        url: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The credentials may not write (HTTP 403, or a folder that is not writable).
    #[error("--publish-to {url}: permission denied writing {path}; grant the publisher's credentials write access (s3:PutObject, s3:GetObject, s3:DeleteObject, s3:ListBucket or the equivalent) to the bucket and prefix")]
    PermissionDenied {
        /// The destination.
        url: String,
        /// The object being written.
        path: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// No credentials, or credentials the store does not accept (HTTP 401, bad signature).
    #[error("--publish-to {url}: the store refused the credentials writing {path}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the GOOGLE_/AZURE_ equivalents) in the publisher's environment")]
    Unauthenticated {
        /// The destination.
        url: String,
        /// The object being written.
        path: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The bucket (or container, or folder) does not exist.
    #[error(
        "--publish-to {url}: the bucket or folder does not exist (writing {path}); create it first"
    )]
    NoBucket {
        /// The destination.
        url: String,
        /// The object being written.
        path: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Any other store failure (network, throttling, server error); retried with the next
    /// generation.
    #[error("--publish-to {url}: {op} {path} failed: {source}")]
    Store {
        /// The destination.
        url: String,
        /// What was being done.
        op: &'static str,
        /// The object.
        path: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The bucket's manifest already names a newer generation: another publisher writes
    /// there. Nothing was replaced.
    #[error("--publish-to {url}: the manifest there names generation {current}, newer than {ours}; another publisher writes to this destination, not overwriting it")]
    Superseded {
        /// The destination.
        url: String,
        /// The generation the manifest in the store names.
        current: u64,
        /// The generation this publisher offered.
        ours: u64,
    },
    /// The manifest could not be encoded.
    #[error("--publish-to {url}: {source}")]
    Manifest {
        /// The destination.
        url: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
}

/// A parsed `--publish-to` destination: the store client and the prefix inside it.
#[derive(Debug, Clone)]
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    backend: Backend,
    display: String,
}

impl Destination {
    /// Parse `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///absolute/folder` (created if missing), with credentials and options from the
    /// environment as `object_store` reads them (`AWS_ACCESS_KEY_ID`, `AWS_REGION`,
    /// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`,
    /// ...). No request is made: see [`ObjectPublisher::check_writable`].
    pub fn parse(url: &str) -> Result<Destination, DistributeError> {
        Self::parse_with(url, std::iter::empty::<(String, String)>())
    }

    /// [`Destination::parse`] with `object_store` configuration keys set on top of the
    /// environment (e.g. `("aws_endpoint", "http://127.0.0.1:9000")`,
    /// `("aws_allow_http", "true")`). Unknown keys are an error.
    pub fn parse_with<I, K, V>(url: &str, options: I) -> Result<Destination, DistributeError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        // object_store's HTTP client is reqwest without a crypto provider of its own (aws-lc-rs
        // would need cmake), and building one without a process default panics: ring is the
        // process default, as for every other client here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let parsed = url::Url::parse(url).map_err(|e| DistributeError::Url {
            url: redact(url),
            reason: format!("not a URL ({e}); expected s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///folder"),
        })?;
        let display = redact(url);
        let setup = |source| DistributeError::Setup {
            url: display.clone(),
            source: Box::new(source),
        };
        let bad_key = |key: &str| DistributeError::Url {
            url: display.clone(),
            reason: format!("unknown object store option {key:?}"),
        };
        let prefix_of = |u: &url::Url| {
            ObjectPath::parse(u.path().trim_matches('/')).map_err(|e| DistributeError::Url {
                url: display.clone(),
                reason: format!("the prefix is not a valid object path: {e}"),
            })
        };
        let (store, prefix, backend): (Arc<dyn ObjectStore>, ObjectPath, Backend) = match parsed
            .scheme()
        {
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| DistributeError::Url {
                    url: display.clone(),
                    reason:
                        "a file:// destination needs an absolute local path (file:///srv/revbloom)"
                            .into(),
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| {
                    setup(object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })
                })?;
                let fs =
                    object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(setup)?;
                (Arc::new(fs), ObjectPath::default(), Backend::File)
            }
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
                for (k, v) in options {
                    let key = k.as_ref().to_ascii_lowercase();
                    let key = key.parse().map_err(|_| bad_key(&key))?;
                    b = b.with_config(key, v);
                }
                (
                    Arc::new(b.build().map_err(setup)?),
                    prefix_of(&parsed)?,
                    Backend::S3,
                )
            }
            "gs" => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
                for (k, v) in options {
                    let key = k.as_ref().to_ascii_lowercase();
                    let key = key.parse().map_err(|_| bad_key(&key))?;
                    b = b.with_config(key, v);
                }
                (
                    Arc::new(b.build().map_err(setup)?),
                    prefix_of(&parsed)?,
                    Backend::Gcs,
                )
            }
            "az" | "azure" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
                for (k, v) in options {
                    let key = k.as_ref().to_ascii_lowercase();
                    let key = key.parse().map_err(|_| bad_key(&key))?;
                    b = b.with_config(key, v);
                }
                (
                    Arc::new(b.build().map_err(setup)?),
                    prefix_of(&parsed)?,
                    Backend::Azure,
                )
            }
            other => {
                return Err(DistributeError::Url {
                    url: display,
                    reason: format!(
                        "unsupported scheme {other:?}; use s3://, gs://, az:// or file://"
                    ),
                })
            }
        };
        Ok(Destination {
            store,
            prefix,
            backend,
            display,
        })
    }

    /// The kind of store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The destination as it is shown in logs and errors (no credentials).
    pub fn display(&self) -> &str {
        &self.display
    }

    fn path(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }
}

/// A URL without user info or query (where keys could hide).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '@']).next().unwrap_or_default().to_owned(),
    }
}

/// One published generation, as the publisher hands it out (sealed unless sealing is off).
#[derive(Debug, Clone)]
pub struct GenerationObjects {
    /// The generation.
    pub generation: u64,
    /// Its parent (what the delta applies to).
    pub parent: u64,
    /// `created_at` of the generation.
    pub created_at: u64,
    /// The full snapshot file.
    pub snapshot: Bytes,
    /// The delta file `parent → generation` (or a chain of them, concatenated as
    /// `GET /v1/deltas` answers), when the layout allowed one.
    pub delta: Option<Bytes>,
}

/// What one [`ObjectPublisher::publish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The generation the manifest now names.
    pub generation: u64,
    /// Whether a full snapshot object was written (a rebase of the chain).
    pub snapshot: bool,
    /// Whether a delta object was written.
    pub delta: bool,
    /// Deltas listed in the manifest.
    pub chain: usize,
    /// Objects the sweep removed.
    pub swept: usize,
}

/// Writes generations to a [`Destination`]: immutable objects first, the signed manifest
/// last. One per destination; call [`ObjectPublisher::publish`] after each generation is
/// stored, in generation order.
#[derive(Debug)]
pub struct ObjectPublisher {
    dest: Destination,
    signing_key: Option<SigningKey>,
    manifest_cache_control: String,
    max_chain: usize,
    sweep_every: Duration,
    sweep_grace: Duration,
    /// The manifest last written, with the total size of its delta objects.
    current: Option<(Manifest, u64)>,
    last_sweep: Option<tokio::time::Instant>,
    /// Whether the store takes `PutMode::Create`, `PutMode::Update`, attributes; learnt from
    /// `NotImplemented` answers.
    create_ok: bool,
    update_ok: bool,
    attributes_ok: bool,
}

impl ObjectPublisher {
    /// A publisher to `dest`, signing manifests with `signing_key` (the key that signs
    /// snapshots; `None` writes unsigned manifests, which verifiers with a key refuse).
    pub fn new(dest: Destination, signing_key: Option<SigningKey>) -> ObjectPublisher {
        let attributes_ok = dest.backend != Backend::File;
        ObjectPublisher {
            dest,
            signing_key,
            manifest_cache_control: DEFAULT_MANIFEST_CACHE_CONTROL.into(),
            max_chain: 64,
            sweep_every: Duration::from_secs(60),
            sweep_grace: Duration::from_secs(600),
            current: None,
            last_sweep: None,
            create_ok: true,
            update_ok: true,
            attributes_ok,
        }
    }

    /// `Cache-Control` of the manifest (default [`DEFAULT_MANIFEST_CACHE_CONTROL`]): the
    /// longest a CDN may delay a new generation. Not applied to `file://` (the HTTP server in
    /// front decides).
    pub fn manifest_cache_control(mut self, value: impl Into<String>) -> Self {
        self.manifest_cache_control = value.into();
        self
    }

    /// The most deltas one manifest lists before the next generation is written as a full
    /// snapshot (default 64). A rebase also happens when the deltas together outgrow the
    /// snapshot, and whenever the publisher made no delta (a layout change, a new lineage).
    pub fn max_chain(mut self, n: usize) -> Self {
        self.max_chain = n.clamp(1, revbloom::sync::manifest::MAX_MANIFEST_DELTAS);
        self
    }

    /// How long an object no manifest names is kept before the sweep deletes it (default
    /// 10 min). Must exceed the manifest's cache lifetime plus a verifier's download time, so
    /// a reader of the previous manifest still finds its objects.
    pub fn sweep_grace(mut self, grace: Duration) -> Self {
        self.sweep_grace = grace;
        self
    }

    /// How often the sweep lists the bucket (default 60 s; zero: after every manifest).
    pub fn sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
        self
    }

    /// The destination.
    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// Continue from the manifest in the store (read and verified with this publisher's
    /// key): the next [`ObjectPublisher::publish`] whose parent is that manifest's
    /// generation extends its delta chain instead of uploading a full snapshot. How a
    /// replica that becomes the builder picks up the chain of the builder before it.
    /// Returns the manifest's generation; `None` (and a full snapshot next) when there is
    /// none or it cannot be read.
    pub async fn resume(&mut self) -> Result<Option<u64>, DistributeError> {
        let path = self.dest.path(MANIFEST_FILE);
        self.current = None;
        let body = match self.dest.store.get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| self.err("GET", &path, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("GET", &path, e)),
        };
        let own = match &self.signing_key {
            Some(k) => OpenOptions::new().verifying_key(k.verifying_key()),
            None => OpenOptions::new().skip_signature_check(),
        };
        match Manifest::decode(&body, &own) {
            Ok(m) => {
                let generation = m.generation;
                let bytes = m.deltas.iter().map(|d| d.size).sum();
                self.current = Some((m, bytes));
                Ok(Some(generation))
            }
            Err(e) => {
                tracing::warn!(destination = %self.dest.display, error = %e, "the manifest in the store cannot be read; the next generation goes up as a full snapshot");
                Ok(None)
            }
        }
    }

    /// Write and delete a probe object (`.revbloom-write-check`), so a destination the
    /// credentials cannot write to fails at start with [`DistributeError::PermissionDenied`]
    /// (or `Unauthenticated`, `NoBucket`) rather than at the first generation.
    pub async fn check_writable(&self) -> Result<(), DistributeError> {
        let path = self.dest.path(".revbloom-write-check");
        self.dest
            .store
            .put(&path, PutPayload::from_static(b"revbloom write check\n"))
            .await
            .map_err(|e| self.err("PUT", &path, e))?;
        self.dest
            .store
            .delete(&path)
            .await
            .map_err(|e| self.err("DELETE", &path, e))?;
        Ok(())
    }

    fn err(
        &self,
        op: &'static str,
        path: &ObjectPath,
        source: object_store::Error,
    ) -> DistributeError {
        let url = self.dest.display.clone();
        let path = path.to_string();
        match source {
            object_store::Error::PermissionDenied { .. } => DistributeError::PermissionDenied {
                url,
                path,
                source: Box::new(source),
            },
            object_store::Error::Unauthenticated { .. } => DistributeError::Unauthenticated {
                url,
                path,
                source: Box::new(source),
            },
            object_store::Error::NotFound { .. } if op != "GET" && op != "DELETE" => {
                DistributeError::NoBucket {
                    url,
                    path,
                    source: Box::new(source),
                }
            }
            // A local folder the process may not write: the OS error under a generic wrapper.
            ref e if io_kind(e) == Some(std::io::ErrorKind::PermissionDenied) => {
                DistributeError::PermissionDenied {
                    url,
                    path,
                    source: Box::new(source),
                }
            }
            source => DistributeError::Store {
                url,
                op,
                path,
                source: Box::new(source),
            },
        }
    }

    /// Publish `g`: write its delta object (or, on a rebase, its snapshot object) if absent,
    /// then the signed manifest naming it. Call after the generation is stored, in generation
    /// order. On error nothing a reader can see changed (the manifest is written last), and
    /// the next call starts from the manifest last written: a generation that failed only
    /// costs a full snapshot upload next time.
    pub async fn publish(&mut self, g: &GenerationObjects) -> Result<Uploaded, DistributeError> {
        let continues = match (&self.current, &g.delta) {
            (Some((m, bytes)), Some(d)) => {
                m.generation == g.parent
                    && m.deltas.len() < self.max_chain
                    && bytes.saturating_add(d.len() as u64) <= g.snapshot.len() as u64
            }
            _ => false,
        };
        let current = self.current.clone();
        let (manifest, delta_bytes, wrote_snapshot) = match (continues, &current, &g.delta) {
            (true, Some((m, bytes)), Some(d)) => {
                let hash = sha256_hex(d);
                let path = Manifest::delta_path(g.parent, g.generation, &hash);
                self.put_immutable(&path, d.clone()).await?;
                let mut next = m.clone();
                next.deltas.push(DeltaRef {
                    parent: g.parent,
                    generation: g.generation,
                    path,
                    size: d.len() as u64,
                    sha256: hash,
                });
                next.generation = g.generation;
                next.created_at = g.created_at;
                (next, bytes + d.len() as u64, false)
            }
            _ => {
                let hash = sha256_hex(&g.snapshot);
                let path = Manifest::snapshot_path(g.generation, &hash);
                self.put_immutable(&path, g.snapshot.clone()).await?;
                let next = Manifest {
                    generation: g.generation,
                    created_at: g.created_at,
                    snapshot: ObjectRef {
                        generation: g.generation,
                        path,
                        size: g.snapshot.len() as u64,
                        sha256: hash,
                    },
                    deltas: Vec::new(),
                };
                (next, 0, true)
            }
        };
        self.put_manifest(&manifest).await?;
        let chain = manifest.deltas.len();
        self.current = Some((manifest, delta_bytes));
        let swept = self.maybe_sweep().await;
        Ok(Uploaded {
            generation: g.generation,
            snapshot: wrote_snapshot,
            delta: !wrote_snapshot,
            chain,
            swept,
        })
    }

    fn attributes(&self, cache_control: &str) -> Attributes {
        let mut a = Attributes::new();
        if self.attributes_ok {
            a.insert(Attribute::CacheControl, cache_control.to_owned().into());
            a.insert(
                Attribute::ContentType,
                "application/octet-stream".to_owned().into(),
            );
        }
        a
    }

    /// Create `relative` with `bytes` unless it exists. Names carry the content hash, so an
    /// existing object holds these bytes (a retry after a lost answer, or a restart).
    async fn put_immutable(&mut self, relative: &str, bytes: Bytes) -> Result<(), DistributeError> {
        let path = self.dest.path(relative);
        loop {
            let opts = PutOptions {
                mode: if self.create_ok {
                    PutMode::Create
                } else {
                    PutMode::Overwrite
                },
                attributes: self.attributes(IMMUTABLE_CACHE_CONTROL),
                ..PutOptions::default()
            };
            match self
                .dest
                .store
                .put_opts(&path, PutPayload::from_bytes(bytes.clone()), opts)
                .await
            {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => return Ok(()),
                Err(e) if self.learn_unsupported(&e, true) => continue,
                Err(e) => return Err(self.err("PUT", &path, e)),
            }
        }
    }

    /// A `NotImplemented`/`NotSupported` answer: drop the feature it is about and retry.
    fn learn_unsupported(&mut self, e: &object_store::Error, create: bool) -> bool {
        if !matches!(
            e,
            object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
        ) {
            return false;
        }
        let what = e.to_string();
        if self.attributes_ok && what.contains("attributes") {
            self.attributes_ok = false;
        } else if create && self.create_ok {
            self.create_ok = false;
        } else if !create && self.update_ok {
            self.update_ok = false;
        } else {
            return false;
        }
        tracing::info!(destination = %self.dest.display, %what, "the object store lacks a feature; writing without it");
        true
    }

    /// Replace the manifest unless the one in the store is newer: read it (verified with our
    /// own key), then write conditionally on its version.
    async fn put_manifest(&mut self, m: &Manifest) -> Result<(), DistributeError> {
        let bytes =
            m.encode(self.signing_key.as_ref())
                .map_err(|source| DistributeError::Manifest {
                    url: self.dest.display.clone(),
                    source,
                })?;
        let path = self.dest.path(MANIFEST_FILE);
        let own = match &self.signing_key {
            Some(k) => OpenOptions::new().verifying_key(k.verifying_key()),
            None => OpenOptions::new().skip_signature_check(),
        };
        for _ in 0..8 {
            let existing = match self.dest.store.get(&path).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    let body = r.bytes().await.map_err(|e| self.err("GET", &path, e))?;
                    Some((version, body))
                }
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(self.err("GET", &path, e)),
            };
            if let Some((_, body)) = &existing {
                // A manifest we cannot read (another key, damaged) is replaced, and said so.
                match Manifest::decode(body, &own) {
                    Ok(theirs) if theirs.generation == m.generation && body[..] == bytes[..] => {
                        return Ok(())
                    }
                    // Newer, or the same generation with other content: not ours to replace.
                    Ok(theirs) if theirs.generation >= m.generation => {
                        return Err(DistributeError::Superseded {
                            url: self.dest.display.clone(),
                            current: theirs.generation,
                            ours: m.generation,
                        })
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(destination = %self.dest.display, error = %e, "replacing a manifest this publisher cannot read")
                    }
                }
            }
            let mode = match existing {
                Some((v, _)) if self.update_ok && (v.e_tag.is_some() || v.version.is_some()) => {
                    PutMode::Update(v)
                }
                None if self.create_ok => PutMode::Create,
                _ => PutMode::Overwrite,
            };
            let opts = PutOptions {
                mode: mode.clone(),
                attributes: self.attributes(&self.manifest_cache_control),
                ..PutOptions::default()
            };
            match self
                .dest
                .store
                .put_opts(&path, PutPayload::from(bytes.clone()), opts)
                .await
            {
                Ok(_) => return Ok(()),
                // Someone wrote in between: read again and decide again.
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => continue,
                Err(e) if self.learn_unsupported(&e, matches!(mode, PutMode::Create)) => continue,
                Err(e) => return Err(self.err("PUT", &path, e)),
            }
        }
        Err(DistributeError::Store {
            url: self.dest.display.clone(),
            op: "PUT",
            path: path.to_string(),
            source: Box::new(object_store::Error::Generic {
                store: "manifest",
                source: "the manifest kept changing under us (8 attempts)".into(),
            }),
        })
    }

    /// Delete objects the current manifest does not name and that are older than the grace
    /// period; at most every `sweep_every`. Failures are logged, never fatal.
    async fn maybe_sweep(&mut self) -> usize {
        let now = tokio::time::Instant::now();
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < self.sweep_every)
        {
            return 0;
        }
        self.last_sweep = Some(now);
        let Some((m, _)) = &self.current else {
            return 0;
        };
        let keep: HashSet<ObjectPath> = std::iter::once(&m.snapshot.path)
            .chain(m.deltas.iter().map(|d| &d.path))
            .map(|p| self.dest.path(p))
            .collect();
        // Unix seconds before which an object no manifest names may go.
        let before =
            i64::try_from(revbloom::bounds::unix_now().saturating_sub(self.sweep_grace.as_secs()))
                .unwrap_or(i64::MAX);
        let mut swept = 0;
        for folder in ["snapshots", "deltas"] {
            let prefix = self.dest.path(folder);
            let listing = match self.dest.store.list_with_delimiter(Some(&prefix)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(destination = %self.dest.display, error = %e, "listing old objects failed; will retry");
                    continue;
                }
            };
            for o in listing.objects {
                if keep.contains(&o.location) || o.last_modified.timestamp() > before {
                    continue;
                }
                match self.dest.store.delete(&o.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => swept += 1,
                    Err(e) => {
                        tracing::warn!(destination = %self.dest.display, object = %o.location, error = %e, "deleting an old object failed")
                    }
                }
            }
        }
        swept
    }
}

fn io_kind(e: &object_store::Error) -> Option<std::io::ErrorKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_refuse_clearly() {
        let dir = std::env::temp_dir().join(format!("revbloom-dest-{}", std::process::id()));
        let d = Destination::parse(&format!("file://{}", dir.display())).unwrap();
        assert_eq!(d.backend(), Backend::File);
        assert!(dir.is_dir(), "a file:// destination is created");
        let s3 = Destination::parse_with("s3://bucket/some/prefix", [("aws_region", "us-east-1")])
            .unwrap();
        assert_eq!(s3.backend(), Backend::S3);
        assert_eq!(
            s3.path("manifest.rbm").to_string(),
            "some/prefix/manifest.rbm"
        );
        assert_eq!(
            Destination::parse("gs://bucket/p")
                .map(|d| d.backend())
                .ok(),
            Some(Backend::Gcs)
        );
        for (url, needle) in [
            ("ftp://host/x", "unsupported scheme"),
            ("not a url", "expected s3://"),
            ("file://relative", "absolute"),
        ] {
            let e = Destination::parse(url).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
        let e = Destination::parse_with("s3://b/p", [("no_such_option", "1")]).unwrap_err();
        assert!(e.to_string().contains("no_such_option"), "{e}");
        assert_eq!(redact("s3://user:secret@b/p?x=1"), "s3://b/p");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
