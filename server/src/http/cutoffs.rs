//! Claim cutoffs: `POST /v1/cutoffs` (admin), "every token whose claim equals this value and
//! was issued before `before` is revoked".

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::{check_string, issuer, store_error, Admin, ApiError, AppState};
use crate::store::Cutoff;
use revbloom::bounds::unix_now;
use revbloom::cutoff::DEFAULT_CLAIM;
use revbloom::wire::{self, CutoffItem};

/// Longest claim name accepted (`sub`, `sid`, `client_id`, ...).
pub const MAX_CLAIM_BYTES: usize = 64;
/// How far in the future a cutoff's `before` may lie: the clock-skew allowance. A cutoff far
/// in the future would lock the user out of every new login until then.
pub const MAX_BEFORE_AHEAD_SECS: u64 = 300;

/// The cutoff route.
pub(super) fn router() -> Router<AppState> {
    Router::new().route(wire::CUTOFFS, post(cutoff))
}

async fn cutoff(
    State(st): State<AppState>,
    _: Admin,
    body: Result<Json<CutoffItem>, JsonRejection>,
) -> Result<Response, ApiError> {
    let st = &st.inner;
    let Json(item) = body?;
    let l = &st.limits;
    check_string("value", &item.value, l.max_string_bytes, "value_too_long")?;
    let claim = item.claim.unwrap_or_else(|| DEFAULT_CLAIM.to_owned());
    check_string("claim", &claim, MAX_CLAIM_BYTES, "claim_too_long")?;
    let iss = issuer(item.iss, l.max_string_bytes)?;
    let now = unix_now();
    let before = item
        .before
        .unwrap_or_else(|| st.bounds.default_cutoff_before(now));
    let latest = now
        .saturating_add(MAX_BEFORE_AHEAD_SECS)
        .max(st.bounds.default_cutoff_before(now));
    if before > latest {
        return Err(ApiError::bad(
            "before_in_future",
            format!("before {before} is in the future (now {now}); it would revoke logins that have not happened yet"),
        ));
    }
    let c = Cutoff {
        iss,
        claim,
        value: item.value,
        before,
    };
    let (claim, value, iss) = (c.claim.clone(), c.value.clone(), c.iss.clone());
    match st.store.cutoff(c).await {
        Ok(changed) => {
            st.metrics.cutoffs_total.fetch_add(1, Relaxed);
            Ok(Json(wire::CutoffReply {
                before,
                changed,
                claim,
                iss,
                value,
            })
            .into_response())
        }
        Err(e) => Err(store_error(st, e)),
    }
}
