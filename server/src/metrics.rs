//! Prometheus text-format metrics, written by hand: a few counters, gauges and one latency
//! histogram per route do not justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets. Long-polls land in the top ones.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
];

/// The routes we label metrics with; anything else is `other`, so a scanner probing random
/// paths cannot grow the label set.
pub const ROUTES: [&str; 8] = [
    "/v1/revocations",
    "/v1/revocations/{jti}",
    "/v1/cutoffs",
    "/v1/snapshot",
    "/v1/deltas",
    "/healthz",
    "/metrics",
    "other",
];

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// The publisher's metrics. All updates are lock-free except the per-status request counts.
#[derive(Default)]
pub struct Metrics {
    /// Revocations acknowledged (durable), duplicates included.
    pub revocations_total: AtomicU64,
    /// Cutoffs acknowledged.
    pub cutoffs_total: AtomicU64,
    /// Store transactions that failed.
    pub store_errors_total: AtomicU64,
    /// Store write transactions committed (refreshed on publish); revocations_total divided
    /// by this is the group-commit batching factor.
    pub store_commits_total: AtomicU64,
    /// Revocations currently in the store (refreshed on publish).
    pub revocations_stored: AtomicU64,
    /// Cutoffs currently in the store (refreshed on publish).
    pub cutoffs_stored: AtomicU64,
    /// Current generation.
    pub generation: AtomicU64,
    /// Bytes of the current snapshot.
    pub snapshot_bytes: AtomicU64,
    /// Entries in the published window.
    pub window_entries: AtomicU64,
    /// Snapshots published since start.
    pub publishes_total: AtomicU64,
    /// Failed snapshot publications (encoding, copy to the snapshot folder).
    pub publish_errors_total: AtomicU64,
    latency: [Histogram; ROUTES.len()],
    requests: Mutex<BTreeMap<(usize, &'static str, u16), u64>>,
}

/// The label index of a matched route path.
pub fn route_index(path: Option<&str>) -> usize {
    let last = ROUTES.len() - 1;
    path.and_then(|p| ROUTES.iter().position(|r| *r == p))
        .unwrap_or(last)
}

impl Metrics {
    /// Record one finished request.
    pub fn observe(&self, route: usize, method: &'static str, status: u16, took: Duration) {
        if let Some(h) = self.latency.get(route) {
            let secs = took.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    if let Some(c) = h.counts.get(i) {
                        c.fetch_add(1, Relaxed);
                    }
                }
            }
            h.count.fetch_add(1, Relaxed);
            h.sum_micros
                .fetch_add(took.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
        }
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, method, status)).or_insert(0) += 1;
        }
    }

    /// The metrics in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let scalars: [(&str, &str, &str, &AtomicU64); 11] = [
            (
                "revbloom_revocations_total",
                "counter",
                "Revocations acknowledged as durable.",
                &self.revocations_total,
            ),
            (
                "revbloom_cutoffs_total",
                "counter",
                "Claim cutoffs acknowledged as durable.",
                &self.cutoffs_total,
            ),
            (
                "revbloom_store_errors_total",
                "counter",
                "Store transactions that failed.",
                &self.store_errors_total,
            ),
            (
                "revbloom_store_commits_total",
                "counter",
                "Store write transactions committed (each one fsync).",
                &self.store_commits_total,
            ),
            (
                "revbloom_revocations_stored",
                "gauge",
                "Revocations held in the store.",
                &self.revocations_stored,
            ),
            (
                "revbloom_cutoffs_stored",
                "gauge",
                "Claim cutoffs held in the store.",
                &self.cutoffs_stored,
            ),
            (
                "revbloom_generation",
                "gauge",
                "Generation of the current snapshot.",
                &self.generation,
            ),
            (
                "revbloom_snapshot_bytes",
                "gauge",
                "Size of the current snapshot.",
                &self.snapshot_bytes,
            ),
            (
                "revbloom_window_entries",
                "gauge",
                "Revocations in the published filter.",
                &self.window_entries,
            ),
            (
                "revbloom_publishes_total",
                "counter",
                "Snapshot generations published.",
                &self.publishes_total,
            ),
            (
                "revbloom_publish_errors_total",
                "counter",
                "Failed snapshot publications.",
                &self.publish_errors_total,
            ),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP revbloom_http_requests_total HTTP requests by route, method and status.\n\
             # TYPE revbloom_http_requests_total counter"
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), n) in m.iter() {
                let route = ROUTES.get(*route).copied().unwrap_or("other");
                let _ = writeln!(
                    out,
                    "revbloom_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let name = "revbloom_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency by route.\n# TYPE {name} histogram"
        );
        for (route, h) in ROUTES.iter().zip(&self.latency) {
            let count = h.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            for (bound, c) in BUCKETS.iter().zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    c.load(Relaxed)
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_histogram_and_counters() {
        let m = Metrics::default();
        m.revocations_total.fetch_add(3, Relaxed);
        let r = route_index(Some("/v1/snapshot"));
        m.observe(r, "GET", 200, Duration::from_millis(2));
        m.observe(r, "GET", 304, Duration::from_secs(10));
        m.observe(route_index(Some("/nope")), "GET", 404, Duration::ZERO);
        let text = m.render();
        assert!(text.contains("revbloom_revocations_total 3"));
        assert!(text.contains(
            "revbloom_http_request_duration_seconds_bucket{route=\"/v1/snapshot\",le=\"0.0025\"} 1"
        ));
        assert!(text.contains(
            "revbloom_http_request_duration_seconds_bucket{route=\"/v1/snapshot\",le=\"30\"} 2"
        ));
        assert!(text.contains("route=\"other\",method=\"GET\",status=\"404\"} 1"));
    }
}
