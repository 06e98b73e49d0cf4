//! The uploader: when `publish_to` names an object store, every generation this process
//! builds goes there ([`crate::distribute`]), after the store has recorded it and as the
//! HTTP feed hands it out.
//!
//! The uploader follows the [`Hub`] like a long-polling verifier: it wakes on each new
//! generation, takes the delta chain from the generation it uploaded last, and publishes
//! both to the bucket. Only the builder uploads: with a shared store, followers serve what
//! the builder published and leave the bucket to it, and a replica that becomes the builder
//! first reads the bucket's manifest, so the chain its predecessor left goes on with a delta.
//! A generation the hub skipped (two built between wake-ups) costs nothing: the chain from
//! the last uploaded one covers both. A failed upload is retried until it succeeds or a
//! newer generation replaces it; meanwhile `/readyz` says `upload_failing`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::distribute::{DistributeError, GenerationObjects, ObjectPublisher};
use crate::metrics::Metrics;
use crate::publish::{DeltaChain, Hub};

/// Upload every generation `hub` receives while this process is the builder, until
/// `shutdown`. Failures are retried after `retry`; they are logged and counted in
/// `metrics` (`revbloom_upload_errors_total`, `revbloom_upload_failing`).
pub fn spawn(
    hub: Hub,
    mut objects: ObjectPublisher,
    metrics: Arc<Metrics>,
    retry: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = hub.subscribe();
        // The generation the bucket's manifest names, as far as this uploader knows.
        let mut uploaded: Option<u64> = None;
        let mut was_builder = false;
        let mut retry_pending = false;
        loop {
            let builder = hub.is_builder();
            if builder && !was_builder {
                uploaded = match objects.resume().await {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the bucket's manifest failed; the next generation goes up as a full snapshot");
                        None
                    }
                };
            }
            if !builder {
                // Followers upload nothing; a past failure says nothing about now.
                metrics.upload_failing.store(0, Relaxed);
                retry_pending = false;
            }
            was_builder = builder;
            let cur = rx.borrow_and_update().clone();
            if builder && cur.generation != 0 && uploaded.is_none_or(|u| u < cur.generation) {
                let delta = uploaded.and_then(|u| match hub.deltas_since(u, &cur) {
                    DeltaChain::Chain { bytes, .. } => Some(bytes),
                    DeltaChain::UpToDate | DeltaChain::Gone => None,
                });
                let g = GenerationObjects {
                    generation: cur.generation,
                    parent: uploaded.unwrap_or(0),
                    created_at: cur.created_at,
                    snapshot: cur.snapshot.clone(),
                    delta,
                };
                retry_pending = false;
                // Cancelling an upload half-way is safe: the manifest is written last.
                let result = tokio::select! {
                    r = objects.publish(&g) => r,
                    _ = shutdown.cancelled() => return,
                };
                match result {
                    Ok(up) => {
                        uploaded = Some(up.generation);
                        metrics.upload_generation.store(up.generation, Relaxed);
                        metrics.upload_failing.store(0, Relaxed);
                        tracing::debug!(
                            generation = up.generation,
                            snapshot = up.snapshot,
                            chain = up.chain,
                            "uploaded"
                        );
                    }
                    Err(DistributeError::Superseded { current, ours, .. }) => {
                        // Another builder is ahead: nothing to retry, and the chain this one
                        // knew is no longer the bucket's.
                        tracing::warn!(current, ours, destination = %objects.destination().display(), "the bucket names a newer generation; not overwriting it");
                        metrics.upload_errors_total.fetch_add(1, Relaxed);
                        uploaded = None;
                        was_builder = false;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, generation = cur.generation, "uploading a generation to the object store failed; retrying");
                        metrics.upload_errors_total.fetch_add(1, Relaxed);
                        metrics.upload_failing.store(1, Relaxed);
                        retry_pending = true;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(retry), if retry_pending => {}
            }
        }
    })
}
