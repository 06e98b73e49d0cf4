//! Syncing from static mirrors: read the signed manifest a publisher wrote into its object
//! store (`revbloom serve --publish-to`), then fetch the immutable delta objects from the
//! generation held, or the full snapshot and its deltas. Mirrors are tried in order, the
//! publisher of a URL source last.
//!
//! Trust rests on the manifest's signature and on the hashes it carries: every object is
//! checked against its size and SHA-256 before it is parsed, and then opened under the same
//! signature and seal rules as one fetched from the publisher. A mirror cannot roll a verifier
//! back: a manifest older than the generation held is reported ([`SyncError::Behind`]) and
//! never applied, so the snapshot held ages and turns stale as if the mirror were down.

use std::sync::atomic::Ordering::Relaxed;

use super::manifest::{
    Manifest, Plan, MANIFEST_FILE, MANIFEST_HEADER_LEN, MANIFEST_SIGNATURE_LEN,
    MAX_MANIFEST_PAYLOAD,
};
use super::poll::{apply_chain, for_each_delta, url_step};
use super::{Source, SyncConfig, SyncError, SyncStats};
use crate::bounds::unix_now;
use crate::snapshot::SnapshotView;
use crate::swap::{ReplaceOutcome, SnapshotHandle, SwapError};

/// One round over the sources: the first that brings a newer generation ends it. A source
/// with nothing newer ends it too, unless the snapshot held is past half its `max_age` (then
/// the next source may know more). Errors of sources passed over are logged and counted here;
/// the round fails only when no source answered, with the last error.
pub(super) async fn round(
    client: &reqwest::Client,
    config: &SyncConfig,
    handle: &SnapshotHandle,
    stats: &SyncStats,
    force_full: &mut bool,
) -> Result<bool, SyncError> {
    let mut last: Option<SyncError> = None;
    let mut answered = false;
    let pass_over = |e: SyncError, last: &mut Option<SyncError>| {
        if let Some(prev) = last.replace(e) {
            report(&prev, stats);
        }
    };
    for base in config.mirror_urls() {
        match from_mirror(client, base, config, handle, stats, force_full).await {
            Ok(true) => {
                if let Some(prev) = last.take() {
                    report(&prev, stats);
                }
                return Ok(true);
            }
            Ok(false) => {
                answered = true;
                if !lagging(handle) {
                    if let Some(prev) = last.take() {
                        report(&prev, stats);
                    }
                    return Ok(false);
                }
            }
            Err(e) => pass_over(e, &mut last),
        }
    }
    if let Source::Url(base) = &config.source {
        match url_step(client, base, config, handle, stats, force_full).await {
            Ok(changed) => {
                if let Some(prev) = last.take() {
                    report(&prev, stats);
                }
                return Ok(changed);
            }
            Err(e) => pass_over(e, &mut last),
        }
    }
    match last {
        Some(e) if !answered => Err(e),
        Some(e) => {
            report(&e, stats);
            Ok(false)
        }
        None => Ok(false),
    }
}

/// Whether the snapshot held is past half its `max_age` (or there is none): time to ask the
/// next source even if this one has nothing newer.
fn lagging(handle: &SnapshotHandle) -> bool {
    match handle.age(unix_now()) {
        Some(age) => age.saturating_mul(2) > handle.max_age().as_secs(),
        None => true,
    }
}

fn report(e: &SyncError, stats: &SyncStats) {
    let error = super::tls::error_chain(e);
    tracing::warn!(%error, reason = %e.failure(), "revocation sync: source passed over; trying the next one");
    stats.record_error(e);
}

/// Sync from one mirror; returns whether the handle changed.
async fn from_mirror(
    client: &reqwest::Client,
    base: &str,
    config: &SyncConfig,
    handle: &SnapshotHandle,
    stats: &SyncStats,
    force_full: &mut bool,
) -> Result<bool, SyncError> {
    let url = format!("{base}/{MANIFEST_FILE}");
    let limit = (MANIFEST_HEADER_LEN + MAX_MANIFEST_PAYLOAD + MANIFEST_SIGNATURE_LEN) as u64;
    let bytes = get_limited(client, &url, limit).await?;
    let manifest =
        Manifest::decode(&bytes, &config.options).map_err(|source| SyncError::Manifest {
            url: url.clone(),
            source,
        })?;
    let held = handle.generation();
    if let Some(held) = held.filter(|&h| h > manifest.generation) {
        return Err(SyncError::Behind {
            url,
            offered: manifest.generation,
            held,
        });
    }
    let plan = match manifest.plan(held) {
        Plan::Deltas(_) if *force_full => Plan::Full(&manifest.snapshot, &manifest.deltas),
        plan => plan,
    };
    match plan {
        Plan::UpToDate => Ok(false),
        Plan::Deltas(deltas) => {
            let mut changed = false;
            for d in deltas {
                let bytes = get_object(client, base, &d.path, d.size, &d.sha256).await?;
                match apply_chain(handle, &bytes, config, stats) {
                    Ok(c) => changed |= c,
                    Err(e) => {
                        // The chain did not fit what is held: a full snapshot next time.
                        *force_full = true;
                        return Err(e);
                    }
                }
            }
            Ok(changed)
        }
        Plan::Full(snapshot, deltas) => {
            let s = &snapshot;
            let bytes = get_object(client, base, &s.path, s.size, &s.sha256).await?;
            let mut view =
                SnapshotView::open_owned(bytes, &config.options).map_err(SwapError::from)?;
            // The chain is applied to a private copy and swapped in once, at its end: readers
            // go from the generation held straight to the manifest's, and a snapshot older
            // than the one held is never offered to the handle on its own.
            for d in deltas {
                let bytes = get_object(client, base, &d.path, d.size, &d.sha256).await?;
                for_each_delta(&bytes, config, |delta| {
                    if delta.generation() > view.generation() {
                        view = view.apply_delta(delta).map_err(SwapError::from)?;
                        stats.deltas.fetch_add(1, Relaxed);
                    }
                    Ok(())
                })?;
            }
            *force_full = false;
            match handle.replace(view)? {
                ReplaceOutcome::Replaced { .. } => {
                    stats.snapshots.fetch_add(1, Relaxed);
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }
}

/// GET an object the manifest names and check it is exactly what the manifest says.
async fn get_object(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    size: u64,
    sha256: &str,
) -> Result<Vec<u8>, SyncError> {
    let url = format!("{base}/{path}");
    let bytes = get_limited(client, &url, size).await?;
    let object = |what: String| SyncError::Object {
        url: url.clone(),
        what,
    };
    if bytes.len() as u64 != size {
        return Err(object(format!(
            "{} bytes, the manifest says {size}",
            bytes.len()
        )));
    }
    let got = super::manifest::sha256_hex(&bytes);
    if got != sha256 {
        return Err(object(format!("SHA-256 {got}, the manifest says {sha256}")));
    }
    Ok(bytes)
}

/// GET `url` and read at most `limit` bytes of its body: a mirror cannot make the client
/// buffer more than the signed manifest announced. A body past the limit is an error.
async fn get_limited(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, SyncError> {
    let mut res = client.get(url).send().await?;
    let status = res.status().as_u16();
    if status != 200 {
        return Err(SyncError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let too_big = || SyncError::Object {
        url: url.to_owned(),
        what: format!("more than the {limit} bytes expected"),
    };
    if res.content_length().is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let mut out = Vec::with_capacity(usize::try_from(limit.min(1 << 20)).unwrap_or(0));
    while let Some(chunk) = res.chunk().await? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
