//! The names of the seam rules these tests exercise (bounds in the server config, the verifier's
//! refusals, the exact-source failure policy) are used only in this file, so a change of API
//! touches the audit tests here and nowhere else.
//!
//! - server config `window.max_token_lifetime_secs` / `window.max_clock_skew_secs`;
//! - `VerifyError::OutOfBounds`;
//! - `ExactFailurePolicy` and `VerifierBuilder::exact_failure`;
//! - `ExactError::NotCovered`;
//! - `pruned_before` in the lookup JSON;
//! - the store's prune as the publisher calls it (its signature may change with the
//!   prune watermark).

use std::path::Path;

use revbloom::verify::{ExactError, ExactFailurePolicy, VerifierBuilder, VerifyError};
use revbloom_server::{ServerConfig, Store};
use serde_json::Value;

/// `config` with the deployment bounds the spec adds to the publisher config
/// (`window.max_token_lifetime_secs`, `window.max_clock_skew_secs`).
pub fn with_bounds(
    config: ServerConfig,
    max_token_lifetime_secs: u64,
    max_clock_skew_secs: u64,
) -> ServerConfig {
    let mut v = serde_json::to_value(&config).unwrap();
    v["window"]["max_token_lifetime_secs"] = max_token_lifetime_secs.into();
    v["window"]["max_clock_skew_secs"] = max_clock_skew_secs.into();
    serde_json::from_value(v).expect(
        "SPEC: the publisher config must accept window.max_token_lifetime_secs and \
         window.max_clock_skew_secs",
    )
}

/// Whether the verifier refused a token as outside what the snapshot covers.
pub fn is_out_of_bounds(e: &VerifyError) -> bool {
    matches!(e, VerifyError::OutOfBounds { .. })
}

/// The explicit form of the default exact-failure policy: refuse a filter positive the exact
/// source cannot confirm.
pub fn exact_failure_refuse(b: VerifierBuilder) -> VerifierBuilder {
    b.exact_failure(ExactFailurePolicy::Refuse)
}

/// Whether the exact source said it cannot vouch for the token (pruned past its `exp`).
pub fn is_not_covered(e: &ExactError) -> bool {
    matches!(e, ExactError::NotCovered { .. })
}

/// The lookup answer's prune watermark.
pub fn pruned_before(lookup: &Value) -> Option<u64> {
    lookup["pruned_before"].as_u64()
}

/// Prune the publisher's store in `data_dir` exactly as the publisher does at (its clock's)
/// `now`, with its configured window; the publisher must be stopped.
pub async fn prune_store_as_publisher_at(data_dir: &Path, config: &ServerConfig, now: u64) {
    let (store, writer) = Store::open(data_dir, None).unwrap();
    store.prune(now, config.window.bounds()).await.unwrap();
    drop(store);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
}
