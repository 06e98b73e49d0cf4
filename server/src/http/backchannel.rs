//! `POST /v1/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0 (§2.5–2.8). An
//! identity provider posts a signed logout token; once it is validated as §2.6 requires, the
//! session it names (`sid`), or the user when it names no session (`sub`), is cut off for
//! that issuer, durably, before the 200.
//!
//! Every refusal is a 400 `invalid_request` whose description says which check failed, and
//! changes nothing; a store failure is a 503, never a 200.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use super::idp::{ok_no_store, read_form, IdpState, OAuthError};
use super::{ApiError, AppState, Inner};
use crate::store::Cutoff;
use revbloom::bounds::unix_now;
use revbloom::hash::normalize_issuer;
use revbloom::verify::VerifyError;

/// The route.
pub const BACKCHANNEL_LOGOUT: &str = "/v1/backchannel-logout";
/// The member of `events` that makes a JWT a logout token (§2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The back-channel logout route.
pub(super) fn router() -> Router<AppState> {
    Router::new().route(BACKCHANNEL_LOGOUT, post(logout))
}

/// A refusal: the `reason` label of `revbloom_backchannel_logouts_total` and the answer.
struct Refused {
    reason: &'static str,
    error: OAuthError,
}

fn refuse(reason: &'static str, description: impl Into<String>) -> Refused {
    Refused {
        reason,
        error: OAuthError::invalid_request(description),
    }
}

async fn logout(State(st): State<AppState>, req: Request) -> Response {
    let st = &st.inner;
    let Some(idp) = st.idp.as_deref() else {
        return not_configured();
    };
    let (parts, body) = req.into_parts();
    let outcome = match read_form(&parts.headers, body).await {
        Err(error) => Err(Refused {
            reason: "malformed_request",
            error,
        }),
        Ok(form) => match form.get("logout_token") {
            None => Err(refuse(
                "malformed_request",
                "the form has no logout_token parameter",
            )),
            Some(token) => accept(st, idp, token).await,
        },
    };
    match outcome {
        Ok(()) => {
            st.metrics.logout("accepted");
            ok_no_store()
        }
        Err(r) => {
            st.metrics.logout(r.reason);
            tracing::info!(
                reason = r.reason,
                why = %r.error.description,
                "back-channel logout refused"
            );
            axum::response::IntoResponse::into_response(r.error)
        }
    }
}

/// 404 naming what to configure.
pub(super) fn not_configured() -> Response {
    axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_configured",
        "no identity provider is configured: list trusted issuers (issuer, jwks_url, \
         audiences) in identity_providers.issuers of the config file; see docs/API.md",
    ))
}

/// The claims §2.6 judges, read from the verified payload.
struct Logout {
    iss: String,
    jti: String,
    sid: Option<String>,
    sub: Option<String>,
}

/// Validate `token` (§2.6), then store its cutoffs. `Err` changes nothing.
async fn accept(st: &Inner, idp: &IdpState, token: &str) -> Result<(), Refused> {
    let now = unix_now();
    let logout = validate(st, idp, token, now).await?;
    if idp.replay.seen(&logout.iss, &logout.jti, now) {
        return Err(refuse(
            "replayed",
            "this logout token (iss, jti) was already received",
        ));
    }
    let iss = normalize_issuer(&logout.iss).to_owned();
    let before = st.bounds.default_cutoff_before(now);
    let mut cutoffs = Vec::new();
    if let Some(sid) = &logout.sid {
        cutoffs.push(("sid", sid.clone()));
    }
    if let Some(sub) = &logout.sub {
        if logout.sid.is_none() || idp.backchannel.cut_sub_with_sid {
            cutoffs.push(("sub", sub.clone()));
        }
    }
    for (claim, value) in cutoffs {
        let c = Cutoff {
            iss: Some(iss.clone()),
            claim: claim.to_owned(),
            value,
            before,
        };
        if let Err(e) = st.store.cutoff(c).await {
            // Nothing is remembered of the token, so the identity provider's retry is judged
            // afresh and stores what this attempt did not.
            let api = super::store_error(st, e);
            return Err(Refused {
                reason: "store_error",
                error: OAuthError::new(
                    api.status(),
                    "temporarily_unavailable",
                    "the logout could not be stored and was NOT applied; retry",
                ),
            });
        }
        st.metrics.cutoffs_total.fetch_add(1, Relaxed);
    }
    let evicted = idp
        .replay
        .insert(&logout.iss, &logout.jti, now, idp.replay_ttl_secs());
    st.metrics
        .logout_replay_evictions_total
        .fetch_add(evicted as u64, Relaxed);
    tracing::info!(
        iss = %logout.iss,
        sid = logout.sid.is_some(),
        sub = logout.sub.is_some(),
        before,
        "back-channel logout stored"
    );
    Ok(())
}

/// §2.6, steps 1–10 (less the replay check, which the caller makes).
async fn validate(st: &Inner, idp: &IdpState, token: &str, now: u64) -> Result<Logout, Refused> {
    let token = token.trim();
    match token.split('.').count() {
        3 => {}
        5 => {
            return Err(refuse(
                "malformed_token",
                "the logout token is encrypted (JWE); only signed tokens are accepted",
            ))
        }
        _ => {
            return Err(refuse(
                "malformed_token",
                "the logout token is not a JWS compact serialization (header.payload.signature)",
            ))
        }
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        refuse(
            "malformed_token",
            "the logout token's header is not valid or names an algorithm that is not accepted \
             (RS256, ES256, EdDSA; never none)",
        )
    })?;
    // Explicit typing is recommended, not required (§2.4), and identity providers still send
    // `JWT` (Keycloak before `logout+jwt`, others today); what keeps an ID token from passing
    // as a logout token is the `events` member and the absence of `nonce`, checked below.
    // Another explicit type (`at+jwt`, `secevent+jwt`, …) names a different kind of token.
    if let Some(typ) = &header.typ {
        let t = typ.to_ascii_lowercase();
        let t = t.strip_prefix("application/").unwrap_or(&t);
        if t != "logout+jwt" && t != "jwt" {
            return Err(refuse(
                "typ",
                format!("the logout token's typ is {typ:?}; logout+jwt, JWT or none is accepted"),
            ));
        }
    }
    let b = &idp.backchannel;
    let decoded = idp
        .decode::<Map<String, Value>>(token, |v| {
            // `exp` is optional in a logout token (checked, with the skew, when present).
            v.required_spec_claims.remove("exp");
        })
        .await;
    let claims = match decoded {
        Ok(d) => d.claims,
        Err(e) => return Err(verify_refusal(e)),
    };
    let string = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(refuse(
            "claims",
            format!("the {name} claim is not a non-empty string"),
        )),
    };
    // `iss` was matched exactly against a trusted issuer by the decode.
    let iss = string("iss")?.ok_or_else(|| refuse("claims", "the token has no iss claim"))?;
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| refuse("claims", "the iat claim is not a unix time"))?,
        Some(_) => return Err(refuse("claims", "the iat claim is not a number")),
        None => return Err(refuse("claims", "the token has no iat claim")),
    };
    if iat > now.saturating_add(b.clock_skew_secs) {
        return Err(refuse(
            "iat_in_future",
            format!(
                "iat {iat} is more than {} s ahead of this server's clock ({now})",
                b.clock_skew_secs
            ),
        ));
    }
    let oldest = now
        .saturating_sub(b.max_token_age_secs)
        .saturating_sub(b.clock_skew_secs);
    if iat < oldest {
        return Err(refuse(
            "iat_too_old",
            format!(
                "iat {iat} is older than {} s (now {now}); logout tokens are accepted only \
                 fresh",
                b.max_token_age_secs
            ),
        ));
    }
    match claims.get("events") {
        Some(Value::Object(events)) => match events.get(LOGOUT_EVENT) {
            Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(refuse(
                    "events",
                    format!("the events member {LOGOUT_EVENT} is not a JSON object"),
                ))
            }
            None => {
                return Err(refuse(
                    "events",
                    format!("the events claim has no member {LOGOUT_EVENT}"),
                ))
            }
        },
        Some(_) => return Err(refuse("events", "the events claim is not a JSON object")),
        None => return Err(refuse("events", "the token has no events claim")),
    }
    if claims.contains_key("nonce") {
        return Err(refuse(
            "nonce",
            "the token has a nonce claim, which a logout token must not have",
        ));
    }
    let (sid, sub) = (string("sid")?, string("sub")?);
    if sid.is_none() && sub.is_none() {
        return Err(refuse(
            "no_subject",
            "the token has neither a sid nor a sub claim",
        ));
    }
    let max = st.limits.max_string_bytes;
    if [&sid, &sub].into_iter().flatten().any(|v| v.len() > max) {
        return Err(refuse("claims", format!("sid or sub is over {max} bytes")));
    }
    let jti = string("jti")?.ok_or_else(|| refuse("no_jti", "the token has no jti claim"))?;
    if jti.len() > st.limits.max_jti_bytes {
        return Err(refuse("claims", "the jti claim is too long"));
    }
    Ok(Logout { iss, jti, sid, sub })
}

/// The refusal for a token the signature or standard-claim checks refused.
fn verify_refusal(e: VerifyError) -> Refused {
    match e {
        VerifyError::UnknownIssuer => refuse(
            "unknown_issuer",
            "the token's iss is not a trusted issuer of this publisher",
        ),
        VerifyError::Expired => refuse("expired", "the token's exp has passed"),
        VerifyError::KeysUnavailable { iss } => Refused {
            reason: "keys_unavailable",
            error: IdpState::keys_unavailable(&iss),
        },
        VerifyError::UnknownKey { .. } | VerifyError::AmbiguousKey { .. } => refuse(
            "signature",
            "the token's signing key (kid) is not one its issuer publishes",
        ),
        VerifyError::Invalid(kind) => match kind {
            ErrorKind::InvalidSignature => refuse("signature", "the token's signature is invalid"),
            ErrorKind::InvalidAudience => refuse(
                "audience",
                "the token's aud does not name an audience configured for its issuer",
            ),
            ErrorKind::MissingRequiredClaim(c) => {
                refuse("claims", format!("the token has no {c} claim"))
            }
            ErrorKind::InvalidIssuer => refuse("unknown_issuer", "the token's iss is invalid"),
            ErrorKind::InvalidAlgorithm => refuse(
                "signature",
                "the token's alg is not one its issuer's keys are published for",
            ),
            _ => refuse("malformed_token", "the logout token cannot be decoded"),
        },
        _ => refuse("malformed_token", "the logout token is invalid"),
    }
}
