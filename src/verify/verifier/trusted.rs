//! Claims a trusted party already verified: the revocation half of a verification.
//!
//! A proxy in front of the verifier (Envoy's `jwt_authn` filter, for one) may check the
//! signature, `iss` and `aud` itself and pass the verified payload on. Decoding the token a
//! second time would only repeat its work; what it cannot know is whether the token was
//! revoked. [`Verifier::check_trusted_claims_async`] runs everything
//! [`Verifier::verify_async`] runs after the signature check, on the same code path.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Keys, Local, Verified, Verifier, DECODE_ATTEMPTS};
use crate::verify::claims::{Captured, RevClaims};
use crate::verify::error::{Unavailable, VerifyError};

/// A NumericDate claim (`exp`, `nbf`) as jsonwebtoken reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numeric {
    Absent,
    /// Present but not a non-negative number below `u64::MAX`.
    Malformed,
    /// Whole seconds, a fraction rounded to the nearest second.
    Secs(u64),
}

fn numeric(v: Option<&Value>) -> Numeric {
    let Some(v) = v else {
        return Numeric::Absent;
    };
    // As jsonwebtoken's `numeric_type`: unsigned integers as they are, floats rounded,
    // negative integers, strings, null and the rest malformed.
    if let Some(n) = v.as_u64() {
        return Numeric::Secs(n);
    }
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                Numeric::Secs(f.round() as u64)
            }
            _ => Numeric::Malformed,
        },
        _ => Numeric::Malformed,
    }
}

impl Verifier {
    /// Check claims that **a trusted party has already verified** for revocation, without a
    /// token to decode.
    ///
    /// # Only for verified claims
    ///
    /// This does **not** check a signature, and does not check `iss` or `aud` against the
    /// configured issuers and audiences: whoever hands the claims in vouches for them. Call it
    /// only with claims that arrive over a channel an attacker cannot write to, such as the
    /// `payload_in_metadata` that Envoy's `jwt_authn` filter puts in the ext_authz request's
    /// metadata after verifying the token. Never call it with claims taken from a request
    /// header or body, or from a token that has not been verified: anyone could then present
    /// any claims they like.
    ///
    /// # What it checks
    ///
    /// Everything [`verify_async`](Self::verify_async) checks after the signature, in the
    /// same order and with the same answers: the required claims and `exp`/`nbf` with the
    /// leeway of the configured validation (for [`Issuers`](super::super::Issuers), that of the
    /// claims' `iss` when configured, else jsonwebtoken's defaults: `exp` required, 60 s of
    /// leeway), `jti` when required, the bounds the state vouches within, issuer keying, the
    /// filter, every cutoff claim the state lists and those configured, and the exact source
    /// on filter positives. A fractional `exp` is rounded to the nearest second, as in a
    /// token.
    ///
    /// The returned [`Verified::header`] is `Header::default()`: the trusted party passes no
    /// header on.
    pub async fn check_trusted_claims_async(
        &self,
        claims: &Value,
    ) -> Result<Verified<Value>, VerifyError> {
        let Value::Object(map) = claims else {
            return Err(VerifyError::Invalid(ErrorKind::InvalidToken));
        };
        self.check_trusted_times(map)?;
        let (claims, rev, local) = self.capture_and_check(claims)?;
        let checked = self.settle_async(&rev, local).await?;
        Ok(Verified {
            claims,
            header: Header::default(),
            checked,
        })
    }

    /// The claims and revocation claims from one pass over `claims`, then the local checks;
    /// again if the state swapped in meanwhile lists a cutoff claim the pass did not capture.
    fn capture_and_check(&self, claims: &Value) -> Result<(Value, RevClaims, Local), VerifyError> {
        for _ in 0..DECODE_ATTEMPTS {
            let names = self.lend_names();
            let captured = Captured::<Value>::deserialize(claims)
                .map_err(|e| VerifyError::Invalid(ErrorKind::Json(Arc::new(e))))?;
            match self.local(&captured.rev, &names) {
                Local::Retry => continue,
                local => return Ok((captured.claims, captured.rev, local)),
            }
        }
        Err(self.unavailable(Unavailable::StateChanging))
    }

    /// What jsonwebtoken checks of the claims after the signature, minus the values of
    /// `iss`, `aud` and `sub` (the trusted party's part): required claims present, `exp`
    /// and `nbf` well formed and within the leeway.
    fn check_trusted_times(&self, map: &Map<String, Value>) -> Result<(), VerifyError> {
        let fallback;
        let validation = match &self.keys {
            Keys::Static { validation, .. } => validation,
            Keys::Issuers(issuers) => {
                match map
                    .get("iss")
                    .and_then(Value::as_str)
                    .and_then(|iss| issuers.validation_of(iss))
                {
                    Some(v) => v,
                    None => {
                        fallback = Validation::new(Algorithm::RS256);
                        &fallback
                    }
                }
            }
        };
        check_times(map, validation, crate::bounds::unix_now())
    }
}

/// jsonwebtoken's claim validation of required claims and times, at `now`.
fn check_times(map: &Map<String, Value>, v: &Validation, now: u64) -> Result<(), VerifyError> {
    let invalid = |kind| Err(VerifyError::Invalid(kind));
    let exp = numeric(map.get("exp"));
    let nbf = numeric(map.get("nbf"));
    for claim in &v.required_spec_claims {
        let present = match claim.as_str() {
            "exp" => matches!(exp, Numeric::Secs(_)),
            "nbf" => matches!(nbf, Numeric::Secs(_)),
            "sub" => matches!(map.get("sub"), Some(Value::String(_))),
            "iss" | "aud" => {
                matches!(
                    map.get(claim.as_str()),
                    Some(Value::String(_) | Value::Array(_))
                )
            }
            _ => continue,
        };
        if !present {
            return invalid(ErrorKind::MissingRequiredClaim(claim.clone()));
        }
    }
    if !(v.validate_exp || v.validate_nbf) {
        return Ok(());
    }
    if v.validate_exp && exp == Numeric::Malformed {
        return invalid(ErrorKind::InvalidClaimFormat("exp".to_owned()));
    }
    if v.validate_nbf && nbf == Numeric::Malformed {
        return invalid(ErrorKind::InvalidClaimFormat("nbf".to_owned()));
    }
    if let Numeric::Secs(exp) = exp {
        let early = v.reject_tokens_expiring_in_less_than;
        if exp < early {
            return invalid(ErrorKind::InvalidToken);
        }
        if v.validate_exp && exp - early < now.saturating_sub(v.leeway) {
            return Err(VerifyError::Expired);
        }
    }
    if let Numeric::Secs(nbf) = nbf {
        if v.validate_nbf && nbf > now.saturating_add(v.leeway) {
            return invalid(ErrorKind::ImmatureSignature);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn times(claims: Value, v: &Validation, now: u64) -> Result<(), VerifyError> {
        check_times(claims.as_object().unwrap(), v, now)
    }

    #[test]
    fn numeric_dates_read_as_jsonwebtoken_reads_them() {
        assert_eq!(numeric(None), Numeric::Absent);
        assert_eq!(numeric(Some(&json!(5))), Numeric::Secs(5));
        assert_eq!(numeric(Some(&json!(5.5))), Numeric::Secs(6));
        assert_eq!(numeric(Some(&json!(5.4))), Numeric::Secs(5));
        assert_eq!(numeric(Some(&json!(-1))), Numeric::Malformed);
        assert_eq!(numeric(Some(&json!(-0.5))), Numeric::Malformed);
        assert_eq!(numeric(Some(&json!("5"))), Numeric::Malformed);
        assert_eq!(numeric(Some(&Value::Null)), Numeric::Malformed);
        assert_eq!(numeric(Some(&json!(1e30))), Numeric::Malformed);
    }

    #[test]
    fn times_follow_the_validation() {
        let v = Validation::new(Algorithm::HS256);
        let now = 1_000_000;
        assert!(times(json!({"exp": now + 1}), &v, now).is_ok());
        // Within the 60 s leeway, then past it.
        assert!(times(json!({"exp": now - 60}), &v, now).is_ok());
        assert!(matches!(
            times(json!({"exp": now - 61}), &v, now),
            Err(VerifyError::Expired)
        ));
        assert!(matches!(
            times(json!({}), &v, now),
            Err(VerifyError::Invalid(ErrorKind::MissingRequiredClaim(c))) if c == "exp"
        ));
        assert!(matches!(
            times(json!({"exp": "soon"}), &v, now),
            Err(VerifyError::Invalid(ErrorKind::MissingRequiredClaim(_)))
        ));
        let mut nbf = v.clone();
        nbf.validate_nbf = true;
        assert!(matches!(
            times(json!({"exp": now + 10, "nbf": now + 61}), &nbf, now),
            Err(VerifyError::Invalid(ErrorKind::ImmatureSignature))
        ));
        assert!(times(json!({"exp": now + 10, "nbf": now + 60}), &nbf, now).is_ok());
        let mut iss = v.clone();
        iss.required_spec_claims.insert("iss".to_owned());
        assert!(times(json!({"exp": now + 10}), &iss, now).is_err());
        assert!(times(json!({"exp": now + 10, "iss": "i"}), &iss, now).is_ok());
    }
}
