//! `GET /metrics` of the sidecar's admin listener, in the Prometheus text format 0.0.4.
//!
//! Every value lives in an atomic owned by what it counts (the checker, the verifier, the
//! sync and JWKS clients, the listener), so the scrape builds a fresh `prometheus-client`
//! registry from them: nothing is counted twice and nothing needs a lock on the check path.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use revbloom::bounds::unix_now;

use super::check::DecisionCounts;
use super::state::{AuthzState, NOT_READY_REASONS};
use crate::limits::ConnCounters;

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// A gauge that may be unknown (NaN).
fn gauge_f64(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, AtomicU64> = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// The metrics text: decisions by outcome, verifier, sync and JWKS counters, the snapshot's
/// generation and age, readiness, and the check listener's connections. Names are documented
/// in `docs/API.md` (section `revbloom authz`).
pub fn render(
    state: &AuthzState,
    decisions: &DecisionCounts,
    check_conns: &ConnCounters,
) -> Result<String, fmt::Error> {
    let mut r = Registry::default();
    let by_outcome = Family::<Outcome, Counter>::default();
    for (outcome, n) in [
        ("allow", &decisions.allow),
        ("deny", &decisions.deny),
        ("unavailable", &decisions.unavailable),
    ] {
        by_outcome
            .get_or_create(&Outcome { outcome })
            .inc_by(n.load(Relaxed));
    }
    r.register(
        "revbloom_authz_decisions",
        "Checks answered, by outcome (allow, deny, unavailable)",
        by_outcome,
    );

    let v = state.verifier().stats();
    for (name, help, value) in [
        (
            "revbloom_verifier_filter_positives",
            "Tokens the filter matched or that went to the exact source while state was stale",
            v.filter_positives,
        ),
        (
            "revbloom_verifier_exact_calls",
            "Calls to the exact source",
            v.exact_calls,
        ),
        (
            "revbloom_verifier_exact_errors",
            "Exact source failures",
            v.exact_errors,
        ),
        (
            "revbloom_verifier_fail_open",
            "Tokens accepted without a full check under the fail-open policy",
            v.fail_open,
        ),
        (
            "revbloom_verifier_unavailable",
            "Tokens refused because revocation state was unavailable",
            v.unavailable,
        ),
    ] {
        counter(&mut r, name, help, value);
    }

    let s = state.sync_stats();
    counter(
        &mut r,
        "revbloom_sync_snapshots",
        "Full snapshots taken (from the source or the cache file)",
        s.snapshots.load(Relaxed),
    );
    counter(
        &mut r,
        "revbloom_sync_deltas",
        "Deltas applied",
        s.deltas.load(Relaxed),
    );
    let failures = Family::<Reason, Counter>::default();
    for (kind, n) in s.failure_counts() {
        failures
            .get_or_create(&Reason {
                reason: kind.as_str(),
            })
            .inc_by(n);
    }
    r.register(
        "revbloom_sync_failures",
        "Snapshots and deltas not taken, and failed syncs, by reason",
        failures,
    );
    if let Some(j) = state.jwks() {
        let js = j.stats();
        counter(
            &mut r,
            "revbloom_jwks_fetches",
            "JWKS fetches started",
            js.fetches,
        );
        counter(
            &mut r,
            "revbloom_jwks_fetch_failures",
            "JWKS fetches that failed (the last good keys stay in force)",
            js.failures,
        );
        counter(
            &mut r,
            "revbloom_jwks_unknown_key_rate_limited",
            "Unknown-kid refetches held back by the refetch interval",
            js.rate_limited,
        );
    }

    let now = unix_now();
    let h = state.handle();
    let nan_if_none = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
    gauge_f64(
        &mut r,
        "revbloom_snapshot_generation",
        "Generation of the snapshot in force (NaN: none)",
        nan_if_none(h.generation()),
    );
    gauge_f64(
        &mut r,
        "revbloom_snapshot_age_seconds",
        "Age of the snapshot in force (NaN: none)",
        nan_if_none(h.age(now)),
    );
    gauge(
        &mut r,
        "revbloom_snapshot_stale",
        "1 while checks follow the staleness policy (no snapshot, or older than the maximum age)",
        u64::from(h.is_stale(now)),
    );
    let reasons = state.not_ready_reasons(now);
    gauge(
        &mut r,
        "revbloom_authz_ready",
        "1 when /readyz answers 200",
        u64::from(reasons.is_empty()),
    );
    let not_ready = Family::<Reason, Gauge>::default();
    for reason in NOT_READY_REASONS {
        not_ready
            .get_or_create(&Reason { reason })
            .set(i64::from(reasons.contains(&reason)));
    }
    r.register(
        "revbloom_authz_not_ready_reason",
        "1 for each reason /readyz gives now",
        not_ready,
    );

    counter(
        &mut r,
        "revbloom_authz_connections_accepted",
        "Connections accepted on the check listener",
        check_conns.accepted_total.load(Relaxed),
    );
    counter(
        &mut r,
        "revbloom_authz_connections_shed",
        "Idle check-listener connections closed to make room for a new one",
        check_conns.connections_shed_total.load(Relaxed),
    );
    gauge(
        &mut r,
        "revbloom_authz_connections_open",
        "Connections open on the check listener",
        check_conns.open.load(Relaxed),
    );

    let mut out = String::with_capacity(4096);
    prometheus_text::encode(&mut out, &r)?;
    Ok(out)
}
