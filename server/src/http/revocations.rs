//! Revocations: `POST /v1/revocations` (admin) and the exact lookup
//! `GET /v1/revocations/{jti}` (or `?jti=`), which verifiers ask on filter positives with the
//! read token ([`Reader`]): without it the lookup would tell anyone whether a `jti` is revoked.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::extract::Reader;
use super::{check_string, issuer, store_error, Admin, ApiError, AppState, Inner};
use crate::store::{Cutoff, Revocation};
use revbloom::bounds::{canonical_exp, unix_now};
use revbloom::cutoff::JTI_CLAIM;
use revbloom::wire::{self, RevokeItem};

/// The revocation routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(wire::REVOCATIONS, post(revoke).get(lookup_by_query))
        .route(wire::REVOCATION, get(lookup))
}

/// A revocation body: one object, or an array of them (a batch, answered item by item).
enum Posted {
    One(RevokeItem),
    Batch(Vec<RevokeItem>),
}

impl<'de> Deserialize<'de> for Posted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Posted;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a revocation object or an array of them")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Posted, A::Error> {
                RevokeItem::deserialize(MapAccessDeserializer::new(map)).map(Posted::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Posted, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(Posted::Batch)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON `exp` as the integer verifiers compare ([`canonical_exp`]).
fn exp_seconds(exp: &serde_json::Number) -> Result<u64, ApiError> {
    exp.as_u64()
        .or_else(|| exp.as_f64().and_then(canonical_exp))
        .ok_or_else(|| {
            ApiError::bad(
                "invalid_body",
                format!("exp {exp} is not a unix time in seconds (a non-negative number)"),
            )
        })
}

/// One item of a revocation request, checked: with `exp` a revocation, without one a cutoff
/// on the `jti`.
enum Checked {
    WithExp(Revocation),
    WithoutExp(Cutoff),
}

fn to_revocation(st: &Inner, item: RevokeItem, now: u64) -> Result<Checked, ApiError> {
    let l = &st.limits;
    check_string("jti", &item.jti, l.max_jti_bytes, "jti_too_long")?;
    let iss = issuer(item.iss, l.max_string_bytes)?;
    let Some(exp) = item.exp else {
        return Ok(Checked::WithoutExp(Cutoff {
            iss,
            claim: JTI_CLAIM.to_owned(),
            value: item.jti,
            before: st.bounds.default_cutoff_before(now),
        }));
    };
    let exp = exp_seconds(&exp)?;
    let earliest = st.bounds.earliest_useful_exp(now);
    if exp < earliest {
        return Err(ApiError::bad(
            "exp_in_past",
            format!(
                "exp {exp} is before {earliest} (now {now} minus leeway and clock skew): \
                 verifiers already refuse this token as expired, so it needs no revocation"
            ),
        ));
    }
    if exp.saturating_sub(now) > l.max_exp_ahead_secs {
        return Err(ApiError::bad(
            "exp_too_far",
            format!(
                "exp {exp} is more than {} s ahead; is it in milliseconds? exp is unix seconds",
                l.max_exp_ahead_secs
            ),
        ));
    }
    Ok(Checked::WithExp(Revocation {
        iss,
        jti: item.jti,
        exp,
    }))
}

async fn revoke(
    State(st): State<AppState>,
    _: Admin,
    body: Result<Json<Posted>, JsonRejection>,
) -> Result<Response, ApiError> {
    let st = &st.inner;
    let (items, batch) = match body?.0 {
        Posted::One(item) => (vec![item], false),
        Posted::Batch(items) => (items, true),
    };
    if items.is_empty() {
        return Err(ApiError::bad(
            "empty_batch",
            "the batch holds no revocations",
        ));
    }
    if items.len() > st.limits.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "the batch holds {} revocations; at most {} are accepted per request",
                items.len(),
                st.limits.max_batch
            ),
        ));
    }
    let now = unix_now();
    let revs = items
        .into_iter()
        .enumerate()
        .map(|(i, it)| to_revocation(st, it, now).map_err(|e| if batch { e.in_item(i) } else { e }))
        .collect::<Result<Vec<_>, _>>()?;
    let n = revs.len();
    let (mut with_exp, mut without_exp) = (Vec::new(), Vec::new());
    for r in revs {
        match r {
            Checked::WithExp(r) => with_exp.push(r),
            Checked::WithoutExp(c) => without_exp.push(c),
        }
    }
    match st.store.revoke_with(with_exp, without_exp).await {
        Ok(o) => {
            st.metrics.revocations_total.fetch_add(n as u64, Relaxed);
            Ok(Json(wire::RevokeReply {
                accepted: n,
                duplicates: o.duplicates,
                new: o.new,
            })
            .into_response())
        }
        Err(e) => Err(store_error(st, e)),
    }
}

/// Query of the exact lookup.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    iss: Option<String>,
}

/// Query of the exact lookup with the `jti` in the query: the form for the `jti`s `.` and
/// `..`, which URL clients resolve away as dot segments in a path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupByQuery {
    jti: String,
    iss: Option<String>,
}

async fn lookup(
    _: Reader,
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (Path(jti), Query(q)) = (path?, query?);
    answer_lookup(&st.inner, jti, q.iss).await
}

async fn lookup_by_query(
    _: Reader,
    State(st): State<AppState>,
    query: Result<Query<LookupByQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    answer_lookup(&st.inner, q.jti, q.iss).await
}

async fn answer_lookup(st: &Inner, jti: String, iss: Option<String>) -> Result<Response, ApiError> {
    check_string("jti", &jti, st.limits.max_jti_bytes, "jti_too_long")?;
    let iss = issuer(iss, st.limits.max_string_bytes)?;
    let found = st
        .store
        .lookup_covered(iss.as_deref(), &jti)
        .await
        .map_err(|e| {
            st.metrics.store_errors_total.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "store read failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store could not be read; retry",
            )
        })?;
    let body = wire::LookupAnswer {
        exp: found.exp,
        iss,
        jti,
        pruned_before: found.pruned_before,
        revoked: found.exp.is_some() || found.without_exp.is_some(),
        revoked_before: found.without_exp,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}
