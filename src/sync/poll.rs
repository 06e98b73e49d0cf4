//! The sync loop: long-poll deltas from a publisher (full snapshot on 410 or any delta
//! trouble), or watch a file; back off on errors; save every new generation to the cache file.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;

use super::{write_file_atomically, Source, SyncConfig, SyncError, SyncStats};
use crate::delta::DeltaView;
use crate::snapshot::{self, SnapshotView};
use crate::swap::{ReplaceOutcome, SnapshotHandle, SwapError};
use crate::wire;

use crate::bounds::unix_now;

/// Whether a sync step changed the handle.
type Changed = bool;

/// The HTTP client of a URL source (`None` for a file source), with the configured TLS trust.
pub(super) fn http_client(config: &SyncConfig) -> Result<Option<reqwest::Client>, SyncError> {
    if matches!(config.source, Source::File(_)) {
        return Ok(None);
    }
    let client = config
        .tls
        .reqwest_builder()?
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        // The long-poll itself plus room for a large snapshot body.
        .timeout(config.wait.saturating_add(Duration::from_secs(30)))
        .build()?;
    Ok(Some(client))
}

pub(super) async fn run(
    config: SyncConfig,
    client: Option<reqwest::Client>,
    handle: SnapshotHandle,
    stats: Arc<SyncStats>,
    generations: watch::Sender<Option<u64>>,
) {
    let mut delays = retry_delays(&config);
    let mut file_seen: Option<(SystemTime, u64)> = None;
    // After a delta failure, go straight to a full snapshot once.
    let mut force_full = false;
    // Whether the last look found the snapshot stale: the transition is logged and counted
    // once, not every round.
    let mut stale = false;
    loop {
        let mirrored = !config.mirror_urls().is_empty();
        let step = match (&config.source, &client) {
            (Source::Url(_) | Source::Mirrors(_), Some(client)) if mirrored => {
                super::mirror::round(client, &config, &handle, &stats, &mut force_full).await
            }
            (Source::Url(base), Some(client)) => {
                url_step(client, base, &config, &handle, &stats, &mut force_full).await
            }
            (Source::File(path), _) => file_step(path, &config, &handle, &stats, &mut file_seen),
            (Source::Url(_) | Source::Mirrors(_), _) => return,
        };
        match step {
            Ok(changed) => {
                stats.record_success(unix_now());
                // The next failure is the first of a new run: back to the shortest delay.
                delays = retry_delays(&config);
                if changed {
                    generations.send_replace(handle.generation());
                    if let Some(cache) = &config.cache_file {
                        save_cache(&handle, cache, &stats).await;
                    }
                }
                if matches!(config.source, Source::File(_)) {
                    tokio::time::sleep(config.file_poll).await;
                } else if mirrored && !changed {
                    tokio::time::sleep(config.mirror_poll).await;
                }
            }
            Err(e) => {
                // `retry_delays` never ends; the fallback only satisfies the type.
                let delay = delays.next().unwrap_or(config.max_backoff);
                // The whole chain: reqwest's own message hides a refused certificate.
                let error = super::tls::error_chain(&e);
                let reason = e.failure();
                let generation = handle.generation();
                tracing::warn!(%error, %reason, ?generation, retry_in_ms = delay.as_millis() as u64, "revocation sync failed; keeping the snapshot held");
                stats.record_error(&e);
                note_staleness(&handle, &stats, &mut stale);
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        note_staleness(&handle, &stats, &mut stale);
    }
}

/// Log and count the moment the snapshot held becomes stale (older than `max_age`, or none
/// at all), and the moment it is fresh again. Checks on a stale snapshot follow the handle's
/// staleness policy, so an operator must hear of it.
fn note_staleness(handle: &SnapshotHandle, stats: &SyncStats, stale: &mut bool) {
    let now_stale = handle.is_stale(unix_now());
    if now_stale == *stale {
        return;
    }
    *stale = now_stale;
    if now_stale {
        stats.record_stale();
        match handle.age(unix_now()) {
            Some(age) => tracing::warn!(
                age_secs = age,
                max_age_secs = handle.max_age().as_secs(),
                policy = ?handle.policy(),
                reason = %super::SyncFailure::Stale,
                "the snapshot held is stale; checks follow the staleness policy"
            ),
            None => tracing::warn!(
                policy = ?handle.policy(),
                reason = %super::SyncFailure::Stale,
                "no snapshot loaded yet; checks follow the staleness policy"
            ),
        }
    } else {
        tracing::info!(generation = ?handle.generation(), "the snapshot is fresh again");
    }
}

/// The waits after consecutive failures: exponential from `min_backoff`, never above
/// `max_backoff`, with jitter so many verifiers restarted together do not retry in lockstep.
/// Endless, as the loop retries for as long as it runs.
fn retry_delays(config: &SyncConfig) -> impl Iterator<Item = Duration> {
    let min = config.min_backoff;
    let max = config.max_backoff.max(min);
    // backon's jitter adds up to the base delay again, so the base stops doubling at half the
    // ceiling: at the cap the waits still spread over [max/2, max) instead of all being max.
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay((max / 2).max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        // When min is above max/2, base plus jitter can pass max.
        .map(move |d| d.clamp(min, max))
}

pub(super) async fn url_step(
    client: &reqwest::Client,
    base: &str,
    config: &SyncConfig,
    handle: &SnapshotHandle,
    stats: &SyncStats,
    force_full: &mut bool,
) -> Result<Changed, SyncError> {
    let Some(current) = handle.generation().filter(|_| !*force_full) else {
        *force_full = false;
        return fetch_full(client, base, handle, config, stats, None, config.wait).await;
    };
    let url = wire::deltas_url(base, current, config.wait);
    let res = client.get(&url).send().await?;
    match res.status().as_u16() {
        204 | 304 => Ok(false),
        200 => {
            let chain = res.bytes().await?;
            match apply_chain(handle, &chain, config, stats) {
                Ok(changed) => Ok(changed),
                Err(e) => {
                    // The chain did not fit what we hold: resync from a full snapshot.
                    *force_full = true;
                    Err(e)
                }
            }
        }
        410 => {
            fetch_full(
                client,
                base,
                handle,
                config,
                stats,
                Some(current),
                Duration::ZERO,
            )
            .await
        }
        status => Err(SyncError::Status { url, status }),
    }
}

pub(super) fn apply_chain(
    handle: &SnapshotHandle,
    chain: &[u8],
    config: &SyncConfig,
    stats: &SyncStats,
) -> Result<Changed, SyncError> {
    let mut changed = false;
    for_each_delta(chain, config, |delta| {
        if let ReplaceOutcome::Replaced { .. } = handle.apply_delta(delta)? {
            stats.deltas.fetch_add(1, Relaxed);
            changed = true;
        }
        Ok(())
    })?;
    Ok(changed)
}

/// Open each delta of a chain of delta files (each sealed or not) in turn.
pub(super) fn for_each_delta(
    mut chain: &[u8],
    config: &SyncConfig,
    mut f: impl FnMut(&DeltaView<'_>) -> Result<(), SyncError>,
) -> Result<(), SyncError> {
    while !chain.is_empty() {
        // A sealing publisher serves a chain of envelopes, one per delta.
        let (inner, rest) = if snapshot::is_sealed(chain) {
            let (inner, rest) = snapshot::unseal_prefix(chain, config.options.seal_keys())
                .map_err(|e| SyncError::Swap(e.into()))?;
            (Some(inner), rest)
        } else {
            (None, chain)
        };
        let (delta, rest) = match &inner {
            Some(inner) => (
                DeltaView::open(inner, &config.options).map_err(|e| SyncError::Swap(e.into()))?,
                rest,
            ),
            None => DeltaView::open_prefix(chain, &config.options)
                .map_err(|e| SyncError::Swap(e.into()))?,
        };
        f(&delta)?;
        chain = rest;
    }
    Ok(())
}

async fn fetch_full(
    client: &reqwest::Client,
    base: &str,
    handle: &SnapshotHandle,
    config: &SyncConfig,
    stats: &SyncStats,
    known: Option<u64>,
    wait: Duration,
) -> Result<Changed, SyncError> {
    let url = wire::snapshot_url(base, wait);
    let mut req = client.get(&url);
    if let Some(g) = known {
        req = req.header(reqwest::header::IF_NONE_MATCH, wire::etag(g));
    }
    let res = req.send().await?;
    match res.status().as_u16() {
        304 => Ok(false),
        200 => {
            let bytes = res.bytes().await?;
            let view = SnapshotView::open_owned(bytes.to_vec(), &config.options)
                .map_err(SwapError::from)?;
            match handle.replace(view)? {
                ReplaceOutcome::Replaced { .. } => {
                    stats.snapshots.fetch_add(1, Relaxed);
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        status => Err(SyncError::Status { url, status }),
    }
}

fn file_step(
    path: &Path,
    config: &SyncConfig,
    handle: &SnapshotHandle,
    stats: &SyncStats,
    seen: &mut Option<(SystemTime, u64)>,
) -> Result<Changed, SyncError> {
    let io = |what, source| SyncError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| io("cannot stat the snapshot file", e))?;
    let stamp = (meta.modified().unwrap_or(UNIX_EPOCH), meta.len());
    if *seen == Some(stamp) {
        return Ok(false);
    }
    let bytes = std::fs::read(path).map_err(|e| io("cannot read the snapshot file", e))?;
    // A file refused for what it holds (invalid, unsigned, a rollback) is refused once: it is
    // read again when it changes, not at every retry, so the refusal is logged once too.
    *seen = Some(stamp);
    let view = SnapshotView::open_owned(bytes, &config.options).map_err(SwapError::from)?;
    let outcome = handle.replace(view)?;
    match outcome {
        ReplaceOutcome::Replaced { .. } => {
            stats.snapshots.fetch_add(1, Relaxed);
            Ok(true)
        }
        _ => Ok(false),
    }
}

async fn save_cache(handle: &SnapshotHandle, cache: &Path, stats: &SyncStats) {
    let Some(view) = handle.current() else {
        return;
    };
    let path = cache.to_owned();
    let res =
        tokio::task::spawn_blocking(move || write_file_atomically(&path, view.as_bytes())).await;
    let err = match res {
        Ok(Ok(())) => return,
        Ok(Err(source)) => SyncError::Io {
            what: "cannot write the cache file",
            path: cache.to_owned(),
            source,
        },
        Err(e) => SyncError::Io {
            what: "cannot write the cache file",
            path: cache.to_owned(),
            source: std::io::Error::other(e),
        },
    };
    tracing::warn!(error = %err, "the last good snapshot was not saved");
    stats.record_error(&err);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_within_bounds() {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        for (min, max) in [
            (ms(200), secs(30)),
            (ms(1), ms(1)),
            (secs(1), ms(1_500)),
            (ms(10), secs(1)),
        ] {
            let config = SyncConfig::url("http://127.0.0.1:1").backoff(min, max);
            for _ in 0..100 {
                let delays: Vec<Duration> = retry_delays(&config).take(40).collect();
                assert_eq!(delays.len(), 40, "the delays never run out");
                for d in &delays {
                    assert!(min <= *d && *d <= max, "{d:?} outside [{min:?}, {max:?}]");
                }
                assert!(delays[0] <= 2 * min);
                // Past the doubling, jitter spreads the waits over the upper half.
                for d in &delays[20..] {
                    assert!(*d >= (max / 2).max(min), "{d:?} below the cap's range");
                }
            }
        }

        // The defaults: 200 ms doubles to 12.8 s in six steps, each wait at least the last
        // (jitter keeps wait k below 2^(k+1)·min, where wait k+1 starts), then the base
        // holds at 15 s and the waits stay in [15 s, 30 s].
        let config = SyncConfig::url("http://127.0.0.1:1");
        for _ in 0..100 {
            let delays: Vec<Duration> = retry_delays(&config).take(20).collect();
            assert!(delays[0] < ms(400));
            for w in delays[..7].windows(2) {
                assert!(w[0] <= w[1], "{delays:?}");
            }
            assert!(delays[6] >= ms(12_700), "{delays:?}");
            for d in &delays[7..] {
                assert!(secs(15) <= *d && *d <= secs(30), "{delays:?}");
            }
        }
        // Jitter is still applied at the cap.
        let capped: std::collections::HashSet<Duration> =
            retry_delays(&config).skip(10).take(20).collect();
        assert!(capped.len() > 1);
    }

    #[test]
    fn http_failures_keep_their_cause() {
        use std::error::Error as _;
        let client = crate::sync::ClientTls::default()
            .reqwest_builder()
            .unwrap()
            .build()
            .unwrap();
        let e = client.get("not a url").build().unwrap_err();
        let e = SyncError::from(e);
        assert!(e
            .source()
            .is_some_and(|c| c.downcast_ref::<reqwest::Error>().is_some()));
    }
}
