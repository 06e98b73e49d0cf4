//! The JWKS client: keeps each [`Issuers`] issuer's keys current from its JWKS URL.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use revbloom::sync::{JwksClient, JwksConfig};
//! use revbloom::verify::{Issuer, Issuers, Verifier};
//!
//! let issuers = Arc::new(Issuers::new([
//!     Issuer::new("https://idp-a.example.com", "https://idp-a.example.com/jwks.json").audience("orders"),
//!     Issuer::new("https://idp-b.example.com", "https://idp-b.example.com/keys").audiences(["orders", "admin"]),
//! ])?);
//! let jwks = JwksClient::start(Arc::clone(&issuers), JwksConfig::default())?;
//! jwks.wait_loaded(Duration::from_secs(10)).await?; // or serve at once: 503 until loaded
//! let verifier = Verifier::with_issuers(issuers).build()?;
//! # Ok(()) }
//! ```
//!
//! - Each issuer's set is fetched at start, then again before its `Cache-Control: max-age`
//!   runs out (at nine tenths of it), the age clamped to [1 min, 24 h] and 10 min when the
//!   answer has none (`no-cache` / `no-store` count as the minimum).
//! - A token naming a key the set does not hold asks for a fetch, but an issuer is fetched on
//!   such demand at most once per [`JwksConfig::refetch_interval`] (default 10 s), counting
//!   every fetch: a flood of tokens with random `kid`s costs the identity provider one request
//!   per interval. A demand the interval refuses is remembered and served when it ends.
//! - A fetch that fails (unreachable, timeout, a status other than 200, a body over
//!   [`JwksConfig::max_bytes`], a document with no usable key) keeps the last good set, is
//!   logged and counted, and is retried with backoff (1 s doubling to 1 min).
//! - Verification never waits on the network for a key the set holds.
//!
//! Trust: whoever answers the JWKS URL can sign tokens this service accepts. Only `https://`
//! URLs are fetched (certificates checked against the system store or a CA file), except
//! loopback addresses, unless [`JwksConfig::allow_http`]. Redirects are not followed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use reqwest::{StatusCode, Url};
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::tls::{error_chain, ClientTls, ClientTlsError};
use crate::verify::{Issuers, JwksError, KeyRefresh, RefreshFuture};

/// Largest JWKS document read, bytes (a set of a dozen RSA keys is about 10 KiB).
pub const DEFAULT_MAX_JWKS_BYTES: usize = 1 << 20;

/// How the JWKS client fetches. Built like a sentence: `JwksConfig::default().refetch_interval(d)`.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    tls: ClientTls,
    timeout: Duration,
    connect_timeout: Duration,
    max_bytes: usize,
    default_max_age: Duration,
    min_max_age: Duration,
    max_max_age: Duration,
    refetch_interval: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    allow_http: bool,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            tls: ClientTls::default(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_bytes: DEFAULT_MAX_JWKS_BYTES,
            default_max_age: Duration::from_secs(600),
            min_max_age: Duration::from_secs(60),
            max_max_age: Duration::from_secs(24 * 3600),
            refetch_interval: Duration::from_secs(10),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            allow_http: false,
        }
    }
}

impl JwksConfig {
    /// Certificate trust for `https://` JWKS URLs (default: the system store).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = tls;
        self
    }

    /// Whole-request timeout (default 5 s) and connect timeout (default 2 s).
    pub fn timeouts(mut self, request: Duration, connect: Duration) -> Self {
        self.timeout = request;
        self.connect_timeout = connect;
        self
    }

    /// Largest document accepted (default [`DEFAULT_MAX_JWKS_BYTES`]).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long a set is kept without a `max-age` (default 10 min), and the bounds every
    /// `max-age` is clamped to (default 1 min to 24 h).
    pub fn max_age(mut self, default: Duration, min: Duration, max: Duration) -> Self {
        self.min_max_age = min;
        self.max_max_age = max.max(min);
        self.default_max_age = default.clamp(self.min_max_age, self.max_max_age);
        self
    }

    /// Least time between two fetches of one issuer asked for by unknown keys (default 10 s).
    pub fn refetch_interval(mut self, every: Duration) -> Self {
        self.refetch_interval = every;
        self
    }

    /// Waits between retries after failed fetches: exponential from `min` to `max`, with
    /// jitter (default 1 s to 1 min).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Fetch plain `http://` URLs on any host (default: only on loopback addresses). Whoever
    /// can answer them can sign tokens this service accepts.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }
}

/// A [`JwksClient`] that cannot start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JwksClientError {
    /// Not called from within a tokio runtime.
    #[error("the JWKS client must be started from within a tokio runtime")]
    NoRuntime,
    /// A JWKS URL does not parse.
    #[error("issuer {iss:?}: invalid JWKS URL {url:?}: {source}")]
    InvalidUrl {
        /// The issuer.
        iss: String,
        /// The URL.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// A JWKS URL is neither `https://` nor `http://` on a loopback address.
    #[error("issuer {iss:?}: JWKS URL {url:?} is not https:// (whoever answers it can sign tokens); use https, or allow plain http explicitly (JwksConfig::allow_http)")]
    InsecureUrl {
        /// The issuer.
        iss: String,
        /// The URL.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The TLS configuration is unusable.
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
    /// [`JwksClient::wait_loaded`] ran out of time.
    #[error("no key set loaded in time for issuers {issuers:?}; check their JWKS URLs (the log has each failed fetch)")]
    NotLoaded {
        /// The issuers still without keys.
        issuers: Vec<String>,
    },
}

/// Why a fetch failed; the issuer keeps its keys.
#[derive(Debug, Error)]
enum FetchError {
    #[error("request failed: {0}")]
    Http(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// Counters of a [`JwksClient`], over every issuer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksStats {
    /// Fetches started (scheduled and asked for).
    pub fetches: u64,
    /// Fetches that failed (the issuer kept its keys).
    pub failures: u64,
    /// Unknown-key demands that started a fetch or joined one running.
    pub demanded: u64,
    /// Unknown-key demands the refetch interval held back.
    pub rate_limited: u64,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    failures: AtomicU64,
    demanded: AtomicU64,
    rate_limited: AtomicU64,
}

/// The state of one issuer shared between its task and the verifiers' demands.
struct Demand {
    last_start: Option<Instant>,
    in_flight: bool,
    pending: bool,
    last_error: Option<String>,
    loaded_at: Option<Instant>,
    /// When the fetch that produced the current set started: a key the issuer published
    /// before then is in the set.
    loaded_from: Option<Instant>,
}

struct Issuer {
    url: Url,
    demand: Mutex<Demand>,
    wake: Notify,
    /// Counts finished fetches; demands wait for it to move.
    done: watch::Sender<u64>,
}

impl Issuer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Demand> {
        self.demand.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Shared {
    issuers: HashMap<Box<str>, Issuer>,
    counters: Counters,
    interval: Duration,
    /// Longest a demand waits for its fetch.
    wait: Duration,
}

impl KeyRefresh for Shared {
    fn unknown_key(&self, iss: &str) -> RefreshFuture {
        let Some(issuer) = self.issuers.get(iss) else {
            return Box::pin(std::future::ready(()));
        };
        let mut rx = issuer.done.subscribe();
        let wait = {
            let mut d = issuer.lock();
            let allowed = d.last_start.is_none_or(|t| t.elapsed() >= self.interval);
            if d.in_flight || allowed {
                if !d.in_flight {
                    d.pending = true;
                    issuer.wake.notify_one();
                }
                self.counters.demanded.fetch_add(1, Relaxed);
                true
            } else {
                // Served when the interval ends; this token is not kept waiting that long.
                if !d.pending {
                    d.pending = true;
                    issuer.wake.notify_one();
                }
                self.counters.rate_limited.fetch_add(1, Relaxed);
                false
            }
        };
        let limit = self.wait;
        Box::pin(async move {
            if wait {
                let _ = tokio::time::timeout(limit, rx.changed()).await;
            }
        })
    }
}

/// What one issuer's status looks like, for health checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksIssuerStatus {
    /// The issuer.
    pub iss: String,
    /// Usable keys in its current set (0: none loaded).
    pub keys: usize,
    /// Time since its set was last loaded.
    pub age: Option<Duration>,
    /// Why the last fetch failed, when it did.
    pub last_error: Option<String>,
}

/// A running JWKS client. Dropping it stops fetching (the issuers keep their keys).
pub struct JwksClient {
    issuers: Arc<Issuers>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for JwksClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksClient")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

impl JwksClient {
    /// Start fetching the keys of every issuer with a JWKS URL, in the background on the
    /// current tokio runtime, and install the client as the issuers' refresher. Returns at
    /// once; tokens of an issuer are refused with
    /// [`VerifyError::KeysUnavailable`](crate::verify::VerifyError::KeysUnavailable) until its
    /// first set is loaded (see [`JwksClient::wait_loaded`]).
    pub fn start(issuers: Arc<Issuers>, config: JwksConfig) -> Result<Self, JwksClientError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| JwksClientError::NoRuntime)?;
        let mut urls = HashMap::new();
        for issuer in issuers.iter() {
            let Some(raw) = issuer.jwks_url() else {
                continue;
            };
            let url = Url::parse(raw).map_err(|source| JwksClientError::InvalidUrl {
                iss: issuer.iss().to_owned(),
                url: raw.to_owned(),
                source,
            })?;
            if !acceptable(&url, config.allow_http) {
                return Err(JwksClientError::InsecureUrl {
                    iss: issuer.iss().to_owned(),
                    url: raw.to_owned(),
                });
            }
            urls.insert(Box::from(issuer.iss()), url);
        }
        let client = config
            .tls
            .reqwest_builder()?
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(JwksClientError::Client)?;
        let shared = Arc::new(Shared {
            issuers: urls
                .into_iter()
                .map(|(iss, url)| {
                    let issuer = Issuer {
                        url,
                        demand: Mutex::new(Demand {
                            last_start: None,
                            in_flight: false,
                            pending: false,
                            last_error: None,
                            loaded_at: None,
                            loaded_from: None,
                        }),
                        wake: Notify::new(),
                        done: watch::channel(0).0,
                    };
                    (iss, issuer)
                })
                .collect(),
            counters: Counters::default(),
            interval: config.refetch_interval,
            wait: config.timeout.saturating_add(Duration::from_secs(1)),
        });
        let tasks = shared
            .issuers
            .keys()
            .map(|iss| {
                runtime.spawn(run(
                    iss.clone(),
                    Arc::clone(&issuers),
                    Arc::clone(&shared),
                    client.clone(),
                    config.clone(),
                ))
            })
            .collect();
        issuers.set_refresh(Some(Arc::clone(&shared) as Arc<dyn KeyRefresh>));
        Ok(Self {
            issuers,
            shared,
            tasks,
        })
    }

    /// Wait until every issuer has a key set, at most `timeout`.
    pub async fn wait_loaded(&self, timeout: Duration) -> Result<(), JwksClientError> {
        let deadline = Instant::now() + timeout;
        for (iss, issuer) in &self.shared.issuers {
            let mut rx = issuer.done.subscribe();
            while self.issuers.key_set(iss).is_none() {
                if tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        let missing: Vec<String> = self
            .issuers
            .iter()
            .filter(|i| self.issuers.key_set(i.iss()).is_none())
            .map(|i| i.iss().to_owned())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(JwksClientError::NotLoaded { issuers: missing })
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JwksStats {
        let c = &self.shared.counters;
        JwksStats {
            fetches: c.fetches.load(Relaxed),
            failures: c.failures.load(Relaxed),
            demanded: c.demanded.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
        }
    }

    /// Each fetched issuer's keys, age and last error.
    pub fn status(&self) -> Vec<JwksIssuerStatus> {
        let mut out: Vec<_> = self
            .shared
            .issuers
            .iter()
            .map(|(iss, issuer)| {
                let d = issuer.lock();
                JwksIssuerStatus {
                    iss: iss.to_string(),
                    keys: self.issuers.key_set(iss).map_or(0, |s| s.len()),
                    age: d.loaded_at.map(|t| t.elapsed()),
                    last_error: d.last_error.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.iss.cmp(&b.iss));
        out
    }

    /// Whether `iss`'s current key set comes from a fetch that started at or after `since`,
    /// so holds every key the issuer published before `since`. An unknown `kid` is proof of
    /// an invalid token only then: before, the key may be one published since the last
    /// fetch. `false` for an issuer this client does not fetch.
    pub fn keys_fetched_since(&self, iss: &str, since: std::time::Instant) -> bool {
        self.shared.issuers.get(iss).is_some_and(|issuer| {
            issuer
                .lock()
                .loaded_from
                .is_some_and(|t| t.into_std() >= since)
        })
    }

    /// The issuers none of whose keys have loaded yet (their tokens cannot be verified), with
    /// the last fetch error; in [`status`](Self::status)'s order.
    pub fn without_keys(&self) -> Vec<JwksIssuerStatus> {
        let mut status = self.status();
        status.retain(|s| s.keys == 0);
        status
    }
}

impl Drop for JwksClient {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let me: Arc<dyn KeyRefresh> = Arc::clone(&self.shared) as Arc<dyn KeyRefresh>;
        self.issuers.remove_refresh(&me);
    }
}

/// `https://`, or `http://` on loopback (or anywhere when allowed).
fn acceptable(url: &Url, allow_http: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" if allow_http => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// The keys' lifetime from `Cache-Control`: `max-age`, 0 for `no-cache`/`no-store`, `None`
/// without either.
fn cache_max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                if let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok()) {
                    found = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    found
}

/// One fetch: the document and its lifetime.
async fn fetch(
    client: &reqwest::Client,
    url: &Url,
    max_bytes: usize,
) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
    let http = |e: reqwest::Error| FetchError::Http(error_chain(&e));
    let mut resp = client
        .get(url.clone())
        .header(ACCEPT, "application/jwk-set+json, application/json")
        .send()
        .await
        .map_err(http)?;
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Status(resp.status().as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let max_age = cache_max_age(resp.headers());
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

fn retry_delays(config: &JwksConfig) -> impl Iterator<Item = Duration> {
    let (min, max) = (config.min_backoff, config.max_backoff);
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay((max / 2).max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |d| d.clamp(min, max))
}

/// One issuer's loop: fetch, then sleep until the set is due or a demand the interval
/// allows arrives.
async fn run(
    iss: Box<str>,
    issuers: Arc<Issuers>,
    shared: Arc<Shared>,
    client: reqwest::Client,
    config: JwksConfig,
) {
    let Some(me) = shared.issuers.get(&iss) else {
        return;
    };
    let mut delays = retry_delays(&config);
    loop {
        let started = Instant::now();
        {
            let mut d = me.lock();
            d.last_start = Some(started);
            d.in_flight = true;
            d.pending = false;
        }
        shared.counters.fetches.fetch_add(1, Relaxed);
        let outcome = match fetch(&client, &me.url, config.max_bytes).await {
            Ok((body, max_age)) => issuers
                .set_jwks(&iss, &body)
                .map(|set| (set, max_age))
                .map_err(FetchError::from),
            Err(e) => Err(e),
        };
        let next = match outcome {
            Ok((set, max_age)) => {
                delays = retry_delays(&config);
                let lifetime = max_age
                    .unwrap_or(config.default_max_age)
                    .clamp(config.min_max_age, config.max_max_age);
                let kids: Vec<&str> = set.keys().filter_map(|(kid, _)| kid).collect();
                tracing::debug!(iss = %iss, keys = set.len(), skipped = set.skipped(), ?kids, lifetime = ?lifetime, "JWKS loaded");
                let mut d = me.lock();
                d.last_error = None;
                d.loaded_at = Some(Instant::now());
                d.loaded_from = Some(started);
                Instant::now() + lifetime - lifetime / 10
            }
            Err(e) => {
                shared.counters.failures.fetch_add(1, Relaxed);
                let kept = issuers.key_set(&iss).is_some();
                tracing::warn!(iss = %iss, url = %me.url, error = %e, kept_last_keys = kept, "JWKS fetch failed");
                me.lock().last_error = Some(e.to_string());
                Instant::now() + delays.next().unwrap_or(config.max_backoff)
            }
        };
        me.lock().in_flight = false;
        me.done.send_modify(|n| *n += 1);
        // Sleep until the set is due, or a pending demand once the interval allows it.
        loop {
            let wake_at = {
                let d = me.lock();
                match (d.pending, d.last_start) {
                    (true, Some(t)) => next.min(t + shared.interval),
                    (true, None) => Instant::now(),
                    (false, _) => next,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => break,
                () = me.wake.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cache_control_is_read() {
        let s = Duration::from_secs;
        assert_eq!(cache_max_age(&headers(&[])), None);
        assert_eq!(
            cache_max_age(&headers(&["public, max-age=3600"])),
            Some(s(3600))
        );
        assert_eq!(
            cache_max_age(&headers(&["public", "Max-Age=\"120\""])),
            Some(s(120))
        );
        assert_eq!(
            cache_max_age(&headers(&["max-age=60, no-cache"])),
            Some(s(0))
        );
        assert_eq!(cache_max_age(&headers(&["max-age=soon"])), None);
        assert_eq!(cache_max_age(&headers(&["s-maxage=10"])), None);
    }

    #[test]
    fn only_https_or_loopback_http() {
        let ok = |u: &str, allow| acceptable(&Url::parse(u).unwrap(), allow);
        assert!(ok("https://idp.example.com/jwks", false));
        assert!(ok("http://127.0.0.1:8080/jwks", false));
        assert!(ok("http://[::1]:8080/jwks", false));
        assert!(ok("http://localhost/jwks", false));
        assert!(!ok("http://idp.example.com/jwks", false));
        assert!(ok("http://idp.example.com/jwks", true));
        assert!(!ok("file:///etc/jwks.json", true));
    }
}
