//! The publisher's metrics, kept in a `prometheus-client` [`Registry`] and served by
//! `GET /metrics` in the Prometheus text exposition format 0.0.4.
//!
//! Counters are registered without their `_total` suffix: the encoder appends it, so the
//! exposed names (`revbloom_revocations_total`, ...) are the ones `docs/API.md` lists. Help
//! texts carry no final period for the same reason: the registry adds one.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::limits::ConnCounters;

/// `Content-Type` of [`Metrics::render`]'s output (Prometheus text format 0.0.4, UTF-8).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histogram buckets. Long-polls land in the top ones.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
];

/// The routes we label metrics with; anything else is `other`, so a scanner probing random
/// paths cannot grow the label set.
pub const ROUTES: [&str; 11] = [
    "/v1/revocations",
    "/v1/revocations/{jti}",
    "/v1/cutoffs",
    "/v1/backchannel-logout",
    "/v1/oauth/revoke",
    "/v1/snapshot",
    "/v1/deltas",
    "/healthz",
    "/readyz",
    "/metrics",
    "other",
];

/// Every reason `GET /readyz` can give, and the `reason` labels of
/// `revbloom_not_ready_reason`: a fixed set, so the series never grow.
pub const NOT_READY_REASONS: [&str; 5] = [
    "store_write_failing",
    "store_replaced",
    "publish_failing",
    "snapshot_stale",
    "upload_failing",
];

/// Every `outcome` of `revbloom_backchannel_logouts_total`: `accepted`, or the check that
/// refused the logout token. A fixed set, so the series never grow.
pub const LOGOUT_OUTCOMES: [&str; 18] = [
    "accepted",
    "malformed_request",
    "malformed_token",
    "typ",
    "unknown_issuer",
    "signature",
    "audience",
    "expired",
    "iat_too_old",
    "iat_in_future",
    "events",
    "nonce",
    "no_subject",
    "no_jti",
    "replayed",
    "claims",
    "keys_unavailable",
    "store_error",
];

/// Every `outcome` of `revbloom_oauth_revocations_total` (`POST /v1/oauth/revoke`).
pub const OAUTH_REVOKE_OUTCOMES: [&str; 9] = [
    "revoked",
    "ignored_expired",
    "ignored_foreign_issuer",
    "ignored_invalid",
    "unsupported_token_type",
    "invalid_client",
    "invalid_request",
    "keys_unavailable",
    "store_error",
];

/// Labels of the identity-provider outcome counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Labels of `revbloom_not_ready_reason`; the value is one of [`NOT_READY_REASONS`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Names and help of the listener's counters, in the order of [`Metrics::mirror_connections`].
const CONNECTION_COUNTERS: [(&str, &str); 7] = [
    ("revbloom_connections_accepted", "Connections accepted"),
    (
        "revbloom_accept_errors",
        "Errors accepting a connection (each is logged)",
    ),
    (
        "revbloom_connections_dropped_at_shutdown",
        "Connections dropped when the shutdown grace period ran out",
    ),
    (
        "revbloom_long_polls_shed",
        "Long-polls answered at once because the long-poll cap was reached",
    ),
    (
        "revbloom_body_timeouts",
        "Request bodies not received within the body read timeout",
    ),
    (
        "revbloom_admin_auth_failures",
        "Failed admin authentications",
    ),
    (
        "revbloom_connections_shed",
        "Idle connections closed to make room for a new one when every slot was taken",
    ),
];

/// The label index of a matched route path.
pub fn route_index(path: Option<&str>) -> usize {
    let last = ROUTES.len() - 1;
    path.and_then(|p| ROUTES.iter().position(|r| *r == p))
        .unwrap_or(last)
}

/// A registered counter that call sites update as an [`AtomicU64`]: `fetch_add` for events
/// counted here, `store` for a total mirrored from the store. The registry reads the same
/// atomic, so an update is one relaxed atomic operation and never takes a lock.
#[derive(Debug, Clone, Default)]
pub struct CounterU64(Counter<u64, AtomicU64>);

impl Deref for CounterU64 {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        self.0.inner()
    }
}

/// A registered gauge that call sites set with `store` (see [`CounterU64`]).
#[derive(Debug, Clone, Default)]
pub struct GaugeU64(Gauge<u64, AtomicU64>);

impl Deref for GaugeU64 {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        self.0.inner()
    }
}

/// Labels of `revbloom_http_requests_total`. Every value comes from a fixed set ([`ROUTES`],
/// four methods, the statuses the handlers return), which bounds the number of series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

/// Labels of `revbloom_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// A fresh latency histogram with [`BUCKETS`]; a plain `fn` so [`Family`] can hold it.
fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The publisher's metrics: the handles call sites update, and the registry that renders
/// them. Scalar updates are lock-free; recording a request takes the two families' read locks
/// (a write lock only the first time a label set is seen) and the histogram's own lock.
pub struct Metrics {
    /// Revocations acknowledged (durable), duplicates included.
    pub revocations_total: CounterU64,
    /// Cutoffs acknowledged.
    pub cutoffs_total: CounterU64,
    /// Store transactions that failed.
    pub store_errors_total: CounterU64,
    /// Store write transactions committed (refreshed on publish); revocations_total divided
    /// by this is the group-commit batching factor.
    pub store_commits_total: CounterU64,
    /// Revocations currently in the store (refreshed on publish).
    pub revocations_stored: GaugeU64,
    /// Cutoffs currently in the store (refreshed on publish).
    pub cutoffs_stored: GaugeU64,
    /// Current generation.
    pub generation: GaugeU64,
    /// Bytes of the current snapshot.
    pub snapshot_bytes: GaugeU64,
    /// Entries in the published window.
    pub window_entries: GaugeU64,
    /// Snapshots published since start.
    pub publishes_total: CounterU64,
    /// Failed snapshot publications (encoding, copy to the snapshot folder).
    pub publish_errors_total: CounterU64,
    /// 1 when `GET /readyz` would answer 200, else 0 (refreshed by `/readyz` and `/metrics`).
    pub ready: GaugeU64,
    /// The generation the object store's manifest names, as this process last wrote it
    /// (0 without `publish_to`, or before the first upload).
    pub upload_generation: GaugeU64,
    /// Uploads to the object store that failed.
    pub upload_errors_total: CounterU64,
    /// 1 while the last upload to the object store failed, else 0.
    pub upload_failing: GaugeU64,
    /// TLS certificate pairs swapped in by the reload task.
    pub tls_reloads_total: CounterU64,
    /// Changed TLS certificate or key files that could not be loaded (the old pair stays).
    pub tls_reload_failures_total: CounterU64,
    /// TLS handshakes that failed (not TLS, bad ClientHello, no common parameters).
    pub tls_handshake_failures_total: CounterU64,
    /// TLS handshakes not completed within the handshake timeout.
    pub tls_handshake_timeouts_total: CounterU64,
    /// Logout-token `(iss, jti)` pairs dropped from a full replay cache before their time.
    pub logout_replay_evictions_total: CounterU64,
    /// The listener's counters ([`ConnCounters`]), mirrored on each render.
    connections: [CounterU64; 7],
    connections_open: GaugeU64,
    connections_max: GaugeU64,
    not_ready: Family<ReasonLabels, Gauge>,
    logouts: Family<OutcomeLabels, Counter>,
    oauth_revocations: Family<OutcomeLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let m = Self {
            revocations_total: CounterU64::default(),
            cutoffs_total: CounterU64::default(),
            store_errors_total: CounterU64::default(),
            store_commits_total: CounterU64::default(),
            revocations_stored: GaugeU64::default(),
            cutoffs_stored: GaugeU64::default(),
            generation: GaugeU64::default(),
            snapshot_bytes: GaugeU64::default(),
            window_entries: GaugeU64::default(),
            publishes_total: CounterU64::default(),
            publish_errors_total: CounterU64::default(),
            ready: GaugeU64::default(),
            upload_generation: GaugeU64::default(),
            upload_errors_total: CounterU64::default(),
            upload_failing: GaugeU64::default(),
            tls_reloads_total: CounterU64::default(),
            tls_reload_failures_total: CounterU64::default(),
            tls_handshake_failures_total: CounterU64::default(),
            tls_handshake_timeouts_total: CounterU64::default(),
            logout_replay_evictions_total: CounterU64::default(),
            connections: Default::default(),
            connections_open: GaugeU64::default(),
            connections_max: GaugeU64::default(),
            not_ready: Family::default(),
            logouts: Family::default(),
            oauth_revocations: Family::default(),
            requests: Family::default(),
            latency,
            registry: Registry::default(),
        };
        m.registered()
    }
}

impl Metrics {
    /// `self` with every metric registered, in the order `/metrics` lists them. Registering
    /// stores a clone of each handle: both share one value.
    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        let counters = [
            (
                "revbloom_revocations",
                "Revocations acknowledged as durable",
                &self.revocations_total,
            ),
            (
                "revbloom_cutoffs",
                "Claim cutoffs acknowledged as durable",
                &self.cutoffs_total,
            ),
            (
                "revbloom_store_errors",
                "Store transactions that failed",
                &self.store_errors_total,
            ),
            (
                "revbloom_store_commits",
                "Store write transactions committed (each one fsync)",
                &self.store_commits_total,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.0.clone());
        }
        let gauges = [
            (
                "revbloom_revocations_stored",
                "Revocations held in the store",
                &self.revocations_stored,
            ),
            (
                "revbloom_cutoffs_stored",
                "Claim cutoffs held in the store",
                &self.cutoffs_stored,
            ),
            (
                "revbloom_generation",
                "Generation of the current snapshot",
                &self.generation,
            ),
            (
                "revbloom_snapshot_bytes",
                "Size of the current snapshot",
                &self.snapshot_bytes,
            ),
            (
                "revbloom_window_entries",
                "Revocations in the published filter",
                &self.window_entries,
            ),
        ];
        for (name, help, g) in gauges {
            r.register(name, help, g.0.clone());
        }
        r.register(
            "revbloom_publishes",
            "Snapshot generations published",
            self.publishes_total.0.clone(),
        );
        r.register(
            "revbloom_publish_errors",
            "Failed snapshot publications",
            self.publish_errors_total.0.clone(),
        );
        r.register(
            "revbloom_upload_generation",
            "Generation the object store's manifest names (publish_to), as last written here",
            self.upload_generation.0.clone(),
        );
        r.register(
            "revbloom_upload_errors",
            "Uploads to the object store (publish_to) that failed",
            self.upload_errors_total.0.clone(),
        );
        r.register(
            "revbloom_upload_failing",
            "1 while the last upload to the object store failed, else 0",
            self.upload_failing.0.clone(),
        );
        for (name, help, c) in CONNECTION_COUNTERS
            .iter()
            .zip(&self.connections)
            .map(|((n, h), c)| (n, h, c))
        {
            r.register(*name, *help, c.0.clone());
        }
        r.register(
            "revbloom_connections_open",
            "Connections open now",
            self.connections_open.0.clone(),
        );
        r.register(
            "revbloom_connections_max",
            "Connection cap in force (the configured cap, clamped to the descriptor limit)",
            self.connections_max.0.clone(),
        );
        let tls = [
            (
                "revbloom_tls_reloads",
                "TLS certificate pairs reloaded from their files",
                &self.tls_reloads_total,
            ),
            (
                "revbloom_tls_reload_failures",
                "Changed TLS certificate or key files that could not be loaded",
                &self.tls_reload_failures_total,
            ),
            (
                "revbloom_tls_handshake_failures",
                "TLS handshakes that failed",
                &self.tls_handshake_failures_total,
            ),
            (
                "revbloom_tls_handshake_timeouts",
                "TLS handshakes not completed within the handshake timeout",
                &self.tls_handshake_timeouts_total,
            ),
        ];
        for (name, help, c) in tls {
            r.register(name, help, c.0.clone());
        }
        r.register(
            "revbloom_ready",
            "1 when the publisher is ready (GET /readyz answers 200), else 0",
            self.ready.0.clone(),
        );
        r.register(
            "revbloom_not_ready_reason",
            "1 for each reason the publisher is not ready now, else 0",
            self.not_ready.clone(),
        );
        for reason in NOT_READY_REASONS {
            self.not_ready
                .get_or_create(&ReasonLabels { reason })
                .set(0);
        }
        r.register(
            "revbloom_backchannel_logouts",
            "Back-channel logout requests by outcome: accepted, or the check that refused them",
            self.logouts.clone(),
        );
        r.register(
            "revbloom_logout_replay_evictions",
            "Logout token ids dropped from a full replay cache before their time",
            self.logout_replay_evictions_total.0.clone(),
        );
        r.register(
            "revbloom_oauth_revocations",
            "RFC 7009 revocation requests by outcome",
            self.oauth_revocations.clone(),
        );
        for outcome in LOGOUT_OUTCOMES {
            self.logouts
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(0);
        }
        for outcome in OAUTH_REVOKE_OUTCOMES {
            self.oauth_revocations
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(0);
        }
        r.register(
            "revbloom_http_requests",
            "HTTP requests by route, method and status",
            self.requests.clone(),
        );
        r.register(
            "revbloom_http_request_duration_seconds",
            "HTTP request latency by route",
            self.latency.clone(),
        );
        self
    }

    /// Copy the listener's counters into the registry (before a render).
    pub fn mirror_connections(&self, c: &ConnCounters) {
        use std::sync::atomic::Ordering::Relaxed;
        let values = [
            &c.accepted_total,
            &c.accept_errors_total,
            &c.dropped_at_shutdown_total,
            &c.long_polls_shed_total,
            &c.body_timeouts_total,
            &c.admin_auth_failures_total,
            &c.connections_shed_total,
        ];
        for (to, from) in self.connections.iter().zip(values) {
            to.store(from.load(Relaxed), Relaxed);
        }
        self.connections_open.store(c.open.load(Relaxed), Relaxed);
        self.connections_max.store(c.max.load(Relaxed), Relaxed);
    }

    /// Record the current readiness: `reasons` are the ones that hold now (members of
    /// [`NOT_READY_REASONS`]; anything else is ignored).
    pub fn set_readiness(&self, reasons: &[&str]) {
        use std::sync::atomic::Ordering::Relaxed;
        self.ready.store(u64::from(reasons.is_empty()), Relaxed);
        for reason in NOT_READY_REASONS {
            let on = reasons.contains(&reason);
            self.not_ready
                .get_or_create(&ReasonLabels { reason })
                .set(i64::from(on));
        }
    }

    /// Record one finished request. `route` is a [`route_index`]; an index out of range is
    /// counted as `other`.
    pub fn observe(&self, route: usize, method: &'static str, status: u16, took: Duration) {
        let route = ROUTES.get(route).copied().unwrap_or("other");
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// Count one back-channel logout request with `outcome` (one of [`LOGOUT_OUTCOMES`]).
    pub fn logout(&self, outcome: &'static str) {
        self.logouts.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Count one `POST /v1/oauth/revoke` request with `outcome` (one of
    /// [`OAUTH_REVOKE_OUTCOMES`]).
    pub fn oauth_revoke(&self, outcome: &'static str) {
        self.oauth_revocations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The metrics in Prometheus text exposition format 0.0.4 (serve with [`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    /// Every series name `docs/API.md` documents, as it must appear in the output.
    const DOCUMENTED: [(&str, &str); 34] = [
        ("revbloom_backchannel_logouts_total", "counter"),
        ("revbloom_logout_replay_evictions_total", "counter"),
        ("revbloom_oauth_revocations_total", "counter"),
        ("revbloom_revocations_total", "counter"),
        ("revbloom_cutoffs_total", "counter"),
        ("revbloom_store_errors_total", "counter"),
        ("revbloom_store_commits_total", "counter"),
        ("revbloom_revocations_stored", "gauge"),
        ("revbloom_cutoffs_stored", "gauge"),
        ("revbloom_generation", "gauge"),
        ("revbloom_snapshot_bytes", "gauge"),
        ("revbloom_window_entries", "gauge"),
        ("revbloom_publishes_total", "counter"),
        ("revbloom_publish_errors_total", "counter"),
        ("revbloom_upload_generation", "gauge"),
        ("revbloom_upload_errors_total", "counter"),
        ("revbloom_upload_failing", "gauge"),
        ("revbloom_ready", "gauge"),
        ("revbloom_not_ready_reason", "gauge"),
        ("revbloom_connections_accepted_total", "counter"),
        ("revbloom_connections_open", "gauge"),
        ("revbloom_connections_max", "gauge"),
        ("revbloom_connections_shed_total", "counter"),
        ("revbloom_accept_errors_total", "counter"),
        ("revbloom_connections_dropped_at_shutdown_total", "counter"),
        ("revbloom_long_polls_shed_total", "counter"),
        ("revbloom_body_timeouts_total", "counter"),
        ("revbloom_admin_auth_failures_total", "counter"),
        ("revbloom_tls_reloads_total", "counter"),
        ("revbloom_tls_reload_failures_total", "counter"),
        ("revbloom_tls_handshake_failures_total", "counter"),
        ("revbloom_tls_handshake_timeouts_total", "counter"),
        ("revbloom_http_requests_total", "counter"),
        ("revbloom_http_request_duration_seconds", "histogram"),
    ];

    #[test]
    fn mirrors_the_listener_counters() {
        let m = Metrics::default();
        let c = ConnCounters::default();
        c.accepted_total.store(9, Relaxed);
        c.open.store(3, Relaxed);
        c.admin_auth_failures_total.store(2, Relaxed);
        c.connections_shed_total.store(5, Relaxed);
        c.max.store(960, Relaxed);
        m.mirror_connections(&c);
        let text = m.render().unwrap();
        assert!(
            text.contains("\nrevbloom_connections_shed_total 5\n"),
            "{text}"
        );
        assert!(text.contains("\nrevbloom_connections_max 960\n"), "{text}");
        assert!(
            text.contains("\nrevbloom_connections_accepted_total 9\n"),
            "{text}"
        );
        assert!(text.contains("\nrevbloom_connections_open 3\n"), "{text}");
        assert!(
            text.contains("\nrevbloom_admin_auth_failures_total 2\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_cumulative_histogram_and_counters() {
        let m = Metrics::default();
        m.revocations_total.fetch_add(3, Relaxed);
        let r = route_index(Some("/v1/snapshot"));
        m.observe(r, "GET", 200, Duration::from_millis(2));
        m.observe(r, "GET", 304, Duration::from_secs(10));
        m.observe(route_index(Some("/nope")), "GET", 404, Duration::ZERO);
        let text = m.render().unwrap();
        assert!(text.contains("\nrevbloom_revocations_total 3\n"), "{text}");
        assert!(text.contains(
            "revbloom_http_request_duration_seconds_bucket{route=\"/v1/snapshot\",le=\"0.0025\"} 1\n"
        ), "{text}");
        assert!(text.contains(
            "revbloom_http_request_duration_seconds_bucket{route=\"/v1/snapshot\",le=\"30\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "revbloom_http_request_duration_seconds_bucket{route=\"/v1/snapshot\",le=\"+Inf\"} 2\n"
        ), "{text}");
        assert!(text
            .contains("revbloom_http_request_duration_seconds_count{route=\"/v1/snapshot\"} 2\n"));
        assert!(
            text.contains(
                "revbloom_http_requests_total{route=\"other\",method=\"GET\",status=\"404\"} 1\n"
            ),
            "{text}"
        );
        // A route out of range is `other` too, never a new label value.
        m.observe(ROUTES.len() + 5, "GET", 404, Duration::ZERO);
        let text = m.render().unwrap();
        assert!(text.contains("route=\"other\",method=\"GET\",status=\"404\"} 2\n"));
    }

    #[test]
    fn exposes_every_documented_name_once_with_its_type_and_help() {
        let m = Metrics::default();
        m.observe(0, "POST", 200, Duration::from_millis(1));
        m.generation.store(7, Relaxed);
        m.store_commits_total.store(4, Relaxed);
        let text = m.render().unwrap();
        for (name, kind) in DOCUMENTED {
            assert!(
                text.contains(&format!("\n# TYPE {name} {kind}\n")),
                "{name} {kind}: {text}"
            );
            let help = format!("# HELP {name} ");
            let line = text.lines().find(|l| l.starts_with(&help));
            let line = line.unwrap_or_else(|| panic!("no help for {name}: {text}"));
            assert!(line.ends_with('.') && !line.ends_with(".."), "{line}");
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
        // No doubled suffix, and no name the documentation does not list.
        assert!(!text.contains("_total_total"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let series = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(
                DOCUMENTED.iter().any(|(n, kind)| series == *n
                    || (*kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| series == format!("{n}{s}")))),
                "undocumented series {series}"
            );
        }
        assert!(text.contains("\nrevbloom_generation 7\n"));
        assert!(text.contains("\nrevbloom_store_commits_total 4\n"));
        assert!(
            !text.contains("# EOF"),
            "OpenMetrics output under a 0.0.4 content type"
        );
    }

    #[test]
    fn readiness_sets_the_gauge_and_exactly_the_given_reasons() {
        let m = Metrics::default();
        m.set_readiness(&[]);
        let text = m.render().unwrap();
        assert!(text.contains("\nrevbloom_ready 1\n"), "{text}");
        for r in NOT_READY_REASONS {
            assert!(text.contains(&format!("revbloom_not_ready_reason{{reason=\"{r}\"}} 0\n")));
        }
        m.set_readiness(&["snapshot_stale", "made_up"]);
        let text = m.render().unwrap();
        assert!(text.contains("\nrevbloom_ready 0\n"), "{text}");
        assert!(text.contains("revbloom_not_ready_reason{reason=\"snapshot_stale\"} 1\n"));
        assert!(text.contains("revbloom_not_ready_reason{reason=\"publish_failing\"} 0\n"));
        assert!(!text.contains("made_up"), "{text}");
    }

    #[test]
    fn histogram_buckets_are_the_documented_bounds() {
        let m = Metrics::default();
        m.observe(0, "GET", 200, Duration::from_secs(120));
        let text = m.render().unwrap();
        let les: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("revbloom_http_request_duration_seconds_bucket"))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        let expected: Vec<String> = BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()])
            .collect();
        assert_eq!(les, expected);
        let sum = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "revbloom_http_request_duration_seconds_sum{route=\"/v1/revocations\"} ",
                )
            })
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(sum, Some(120.0), "{text}");
    }
}
