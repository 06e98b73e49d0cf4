//! The verifier: jsonwebtoken validation, then revocation by id, then claim cutoffs, then the
//! exact source for filter positives only.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::claims::{lend_cutoff_names, Captured, RevClaims, MAX_CUTOFF_CLAIMS};
use super::error::{RevokedBy, Unavailable, VerifyError};
use super::exact::{AsyncExactSource, ExactQuery, ExactSource};
use super::issuers::Issuers;
use super::state::{NoState, RevocationState, StateSource};
use crate::bounds::{Bounds, OutOfBounds};
use crate::cutoff::{revokes, same_claim, DEFAULT_CLAIM, JTI_CLAIM};
use crate::hash::normalize_issuer;
use crate::swap::StalenessPolicy;
use crate::window::Verdict;

mod trusted;

/// Default maximum age of revocation state before the staleness policy applies.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// A validated, unrevoked token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified<C> {
    /// The caller's claims.
    pub claims: C,
    /// The token header.
    pub header: Header,
    /// How revocation was ruled out.
    pub checked: Checked,
}

/// How a [`Verified`] token was found unrevoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checked {
    /// The filter cleared it (the common case: no remote call).
    Filter {
        /// Generation of the state that cleared it.
        generation: u64,
    },
    /// The filter matched (or was stale) and the exact source said "not revoked".
    ExactSource,
    /// No usable state or exact source, accepted under [`StalenessPolicy::FailOpen`].
    FailOpen,
    /// The verifier has no revocation state configured, or the token has no `jti` and
    /// `require_jti(false)` let it through (cutoffs still applied when state was present).
    NotApplicable,
}

/// Counters for dashboards and alarms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifierStats {
    /// Tokens the filter matched (or that went to the exact source because state was stale).
    pub filter_positives: u64,
    /// Calls to the exact source.
    pub exact_calls: u64,
    /// Exact source failures.
    pub exact_errors: u64,
    /// Tokens accepted without a full check under [`StalenessPolicy::FailOpen`].
    pub fail_open: u64,
    /// Tokens refused because state was unavailable.
    pub unavailable: u64,
}

#[derive(Default)]
struct Counters {
    filter_positives: AtomicU64,
    exact_calls: AtomicU64,
    exact_errors: AtomicU64,
    fail_open: AtomicU64,
    unavailable: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

enum Exact {
    None,
    Sync(Arc<dyn ExactSource>),
    Async(Arc<dyn AsyncExactSource>),
}

/// What to do when the exact source fails (unreachable, timeout, bad answer) while settling a
/// filter positive. Independent of the [`StalenessPolicy`]: a fresh filter that matched says
/// the token may well be revoked, so accepting it is never implied by anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExactFailurePolicy {
    /// Refuse the token as [`Unavailable::ExactSource`] (HTTP 503): the default.
    #[default]
    Refuse,
    /// Accept it (`Checked::FailOpen`, counted in [`VerifierStats::fail_open`]): an explicit
    /// choice of availability over safety, for deployments that alarm on the counter.
    Accept,
}

/// A [`Verifier`] that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// More cutoff claims than supported.
    #[error("at most {max} cutoff claims are supported, got {got}")]
    TooManyCutoffClaims {
        /// Claims configured.
        got: usize,
        /// The supported maximum.
        max: usize,
    },
}

/// The outcome of the local (CPU-only) part of a verification.
enum Local {
    Accept(Checked),
    Reject(VerifyError),
    Ask {
        generation: u64,
        /// The issuer the exact source is asked about (the token's, or the default).
        iss: Option<Box<str>>,
        /// The decision was made on stale state: a cached "not revoked" must not settle it.
        stale: bool,
    },
    /// The state swapped in since the decode lists a cutoff claim the decode did not
    /// capture: decode again.
    Retry,
}

/// A decoded token: header, the caller's claims, the revocation claims, and the cutoff claim
/// names the decode captured (the order of `RevClaims::cutoffs`).
type Decoded<C> = (Header, C, RevClaims, Rc<[Box<str>]>);

/// Decodes in a row before a verification gives up on a state that keeps changing its
/// cutoff claims ([`Unavailable::StateChanging`]).
const DECODE_ATTEMPTS: usize = 4;

/// Where a verifier's keys come from.
// One per verifier: its size does not matter, and boxing the static key would add a pointer
// chase to every verification with it.
#[allow(clippy::large_enum_variant)]
enum Keys {
    /// One key and one validation for every token.
    Static {
        key: DecodingKey,
        validation: Validation,
    },
    /// The token's issuer picks a validation and its `kid` a key of that issuer's set.
    Issuers(Arc<Issuers>),
}

/// Builds a [`Verifier`]; see [`Verifier::builder`] and [`Verifier::with_issuers`].
pub struct VerifierBuilder {
    keys: Keys,
    state: Arc<dyn StateSource>,
    has_state: bool,
    exact: Exact,
    staleness: Option<(Option<u64>, StalenessPolicy)>,
    exact_failure: ExactFailurePolicy,
    require_jti: Option<bool>,
    key_on_issuer: Option<bool>,
    cutoff_claims: Vec<Box<str>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl VerifierBuilder {
    /// Where revocation state comes from: a hot-swap handle, an `ArcSwap`, a fixed
    /// [`MemoryState`](super::MemoryState).
    pub fn state(mut self, state: impl StateSource + 'static) -> Self {
        self.state = Arc::new(state);
        self.has_state = true;
        self
    }

    /// A blocking exact source, asked on filter positives by [`Verifier::verify`] (and inline
    /// by [`Verifier::verify_async`], so it must not block there).
    pub fn exact_source(mut self, source: impl ExactSource + 'static) -> Self {
        self.exact = Exact::Sync(Arc::new(source));
        self
    }

    /// An asynchronous exact source, asked on filter positives by
    /// [`Verifier::verify_async`]. The synchronous [`Verifier::verify`] cannot use it and
    /// answers [`Unavailable::ExactSourceIsAsync`] when it would need it.
    pub fn async_exact_source(mut self, source: impl AsyncExactSource + 'static) -> Self {
        self.exact = Exact::Async(Arc::new(source));
        self
    }

    /// Maximum age of revocation state (`None`: never stale) and what to do beyond it, and
    /// when the exact source fails. Default: the state source's own setting (a
    /// [`SnapshotHandle`](crate::swap::SnapshotHandle) carries one), else
    /// [`DEFAULT_MAX_AGE`] with [`StalenessPolicy::FailClosed`].
    pub fn staleness(mut self, max_age: Option<Duration>, policy: StalenessPolicy) -> Self {
        self.staleness = Some((max_age.map(|d| d.as_secs()), policy));
        self
    }

    /// What to do when the exact source fails on a filter positive. Default:
    /// [`ExactFailurePolicy::Refuse`].
    pub fn exact_failure(mut self, policy: ExactFailurePolicy) -> Self {
        self.exact_failure = policy;
        self
    }

    /// Refuse tokens without a string `jti` ([`VerifyError::MissingJti`]). Default: on when a
    /// state source is configured.
    pub fn require_jti(mut self, yes: bool) -> Self {
        self.require_jti = Some(yes);
        self
    }

    /// Require an `iss` claim. Default: on when the `Validation` names issuers. Revocations
    /// and cutoffs are matched on the token's issuer whenever it has one (and on the
    /// snapshot's default issuer when it has none), and issuer-less revocations and cutoffs
    /// apply to every issuer, so this only decides whether a token without `iss` is refused.
    pub fn key_on_issuer(mut self, yes: bool) -> Self {
        self.key_on_issuer = Some(yes);
        self
    }

    /// Claims checked against claim cutoffs besides those the state lists (a snapshot lists
    /// every claim its publisher stored cutoffs for, and each one a token carries is checked
    /// without configuration). Default: `["sub"]`; at most [`MAX_CUTOFF_CLAIMS`].
    pub fn cutoff_claims<S: AsRef<str>>(mut self, claims: &[S]) -> Self {
        self.cutoff_claims = claims.iter().map(|c| Box::from(c.as_ref())).collect();
        self
    }

    /// The clock for staleness and cache lifetimes, unix seconds (tests pin it).
    /// jsonwebtoken's own `exp`/`nbf` checks keep using the system clock.
    pub fn clock(mut self, now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(now);
        self
    }

    /// The verifier.
    pub fn build(mut self) -> Result<Verifier, BuildError> {
        if self.cutoff_claims.len() > MAX_CUTOFF_CLAIMS {
            return Err(BuildError::TooManyCutoffClaims {
                got: self.cutoff_claims.len(),
                max: MAX_CUTOFF_CLAIMS,
            });
        }
        // Every token of a JWKS issuer has an `iss` (the issuer is chosen by it).
        let issuer_keyed = self.key_on_issuer.unwrap_or(match &self.keys {
            Keys::Static { validation, .. } => validation.iss.is_some(),
            Keys::Issuers(_) => true,
        });
        let (max_age, policy) = self
            .staleness
            .or_else(|| {
                self.state
                    .staleness()
                    .map(|(age, policy)| (age.map(|d| d.as_secs()), policy))
            })
            .unwrap_or((Some(DEFAULT_MAX_AGE.as_secs()), StalenessPolicy::FailClosed));
        if let (true, Keys::Static { validation, .. }) = (issuer_keyed, &mut self.keys) {
            validation.required_spec_claims.insert("iss".to_owned());
        }
        Ok(Verifier {
            keys: self.keys,
            state: self.state,
            exact: self.exact,
            policy,
            max_age,
            exact_failure: self.exact_failure,
            require_jti: self.require_jti.unwrap_or(self.has_state),
            has_state: self.has_state,
            issuer_keyed,
            cutoff_claims: self.cutoff_claims.into_boxed_slice(),
            clock: self.clock,
            counters: Counters::default(),
        })
    }
}

/// Verifies JWTs and checks them against revocation state. Cheap to share (`Arc`), safe to
/// call from many threads.
///
/// A verification decodes and validates with jsonwebtoken (signature, `exp`, `nbf`, `iss`,
/// `aud` as the `Validation` says), then — against one consistent view of the state — checks
/// the token id in the filter and the configured claims against cutoffs, and asks the exact
/// source only when the filter matched. See the [module docs](super) for an example.
pub struct Verifier {
    keys: Keys,
    state: Arc<dyn StateSource>,
    exact: Exact,
    policy: StalenessPolicy,
    max_age: Option<u64>,
    exact_failure: ExactFailurePolicy,
    require_jti: bool,
    has_state: bool,
    issuer_keyed: bool,
    cutoff_claims: Box<[Box<str>]>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    counters: Counters,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Verifier");
        match &self.keys {
            Keys::Static { validation, .. } => d.field("algorithms", &validation.algorithms),
            Keys::Issuers(issuers) => d.field("issuers", issuers),
        };
        d.field("policy", &self.policy)
            .field("max_age", &self.max_age)
            .field("exact_failure", &self.exact_failure)
            .field("require_jti", &self.require_jti)
            .field("issuer_keyed", &self.issuer_keyed)
            .field("cutoff_claims", &self.cutoff_claims)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Start building a verifier for tokens signed with `key` and validated by `validation`.
    /// Without a state source it only validates.
    pub fn builder(key: DecodingKey, validation: Validation) -> VerifierBuilder {
        Self::keyed(Keys::Static { key, validation })
    }

    /// Start building a verifier for tokens of several issuers, each with its keys (from its
    /// JWKS), audiences and algorithms; see [`Issuers`]. The token's `iss` picks the issuer,
    /// its `kid` the key. A token naming a key the set does not hold asks the issuers'
    /// refresher (the JWKS client) for a rate-limited fetch: [`Verifier::verify_async`] awaits
    /// that fetch when one starts, [`Verifier::verify`] never waits and answers
    /// [`VerifyError::UnknownKey`].
    pub fn with_issuers(issuers: Arc<Issuers>) -> VerifierBuilder {
        Self::keyed(Keys::Issuers(issuers))
    }

    fn keyed(keys: Keys) -> VerifierBuilder {
        VerifierBuilder {
            keys,
            state: Arc::new(NoState),
            has_state: false,
            exact: Exact::None,
            staleness: None,
            exact_failure: ExactFailurePolicy::Refuse,
            require_jti: None,
            key_on_issuer: None,
            cutoff_claims: vec![Box::from(DEFAULT_CLAIM)],
            clock: Arc::new(crate::bounds::unix_now),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> VerifierStats {
        let c = &self.counters;
        VerifierStats {
            filter_positives: c.filter_positives.load(Ordering::Relaxed),
            exact_calls: c.exact_calls.load(Ordering::Relaxed),
            exact_errors: c.exact_errors.load(Ordering::Relaxed),
            fail_open: c.fail_open.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
        }
    }

    /// Verify a token, blocking on the exact source if the filter matches. A token of an
    /// [`Issuers`] issuer naming a key its set does not hold starts a refresh of the keys in
    /// the background and is refused ([`VerifyError::UnknownKey`]) without waiting for it.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<Verified<C>, VerifyError> {
        let (header, claims, rev, local) = match self.decode_and_check::<C>(token) {
            Ok(done) => done,
            Err(e) => {
                if let (Keys::Issuers(issuers), Some(iss)) = (&self.keys, Issuers::refreshable(&e))
                {
                    // Started now, never awaited here: the future only waits for the fetch.
                    drop(issuers.unknown_key(iss));
                }
                return Err(e);
            }
        };
        let checked = match local {
            Local::Accept(c) => c,
            Local::Reject(e) => return Err(e),
            Local::Retry => return Err(self.unavailable(Unavailable::StateChanging)),
            Local::Ask {
                generation,
                iss,
                stale,
            } => {
                let Some(q) = self.query(&rev, generation, iss.as_deref(), stale) else {
                    return Err(VerifyError::MissingJti);
                };
                let answer = match &self.exact {
                    Exact::Sync(s) => {
                        bump(&self.counters.exact_calls);
                        s.is_revoked(&q)
                    }
                    Exact::Async(_) => {
                        return Err(self.unavailable(Unavailable::ExactSourceIsAsync));
                    }
                    Exact::None => return Err(self.no_exact_source()),
                };
                self.conclude(answer)?
            }
        };
        Ok(Verified {
            claims,
            header,
            checked,
        })
    }

    /// Verify a token; the exact source (only on filter positives) is awaited, never blocked
    /// on. Everything before it is CPU-only and takes microseconds. A token of an [`Issuers`]
    /// issuer naming a key its set does not hold awaits one refresh of the issuer's keys when
    /// the refresher's rate limit lets one start (or one is running), then is decoded again;
    /// otherwise it is refused at once ([`VerifyError::UnknownKey`]).
    pub async fn verify_async<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<Verified<C>, VerifyError> {
        let (header, claims, rev, local) = match self.decode_and_check::<C>(token) {
            Ok(done) => done,
            Err(e) => match (&self.keys, Issuers::refreshable(&e)) {
                (Keys::Issuers(issuers), Some(iss)) => {
                    issuers.unknown_key(iss).await;
                    self.decode_and_check::<C>(token)?
                }
                _ => return Err(e),
            },
        };
        let checked = self.settle_async(&rev, local).await?;
        Ok(Verified {
            claims,
            header,
            checked,
        })
    }

    /// The end of an asynchronous verification: the local outcome, or the exact source's
    /// answer (awaited) when the filter matched.
    async fn settle_async(&self, rev: &RevClaims, local: Local) -> Result<Checked, VerifyError> {
        Ok(match local {
            Local::Accept(c) => c,
            Local::Reject(e) => return Err(e),
            Local::Retry => return Err(self.unavailable(Unavailable::StateChanging)),
            Local::Ask {
                generation,
                iss,
                stale,
            } => {
                let Some(q) = self.query(rev, generation, iss.as_deref(), stale) else {
                    return Err(VerifyError::MissingJti);
                };
                let answer = match &self.exact {
                    Exact::Sync(s) => {
                        bump(&self.counters.exact_calls);
                        s.is_revoked(&q)
                    }
                    Exact::Async(s) => {
                        bump(&self.counters.exact_calls);
                        s.is_revoked_async(&q).await
                    }
                    Exact::None => return Err(self.no_exact_source()),
                };
                self.conclude(answer)?
            }
        })
    }

    /// Decode, then the local checks; decode again if the state swapped in meanwhile lists
    /// a cutoff claim the decode did not capture.
    fn decode_and_check<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<(Header, C, RevClaims, Local), VerifyError> {
        for _ in 0..DECODE_ATTEMPTS {
            let (header, claims, rev, names) = self.decode::<C>(token)?;
            match self.local(&rev, &names) {
                Local::Retry => continue,
                local => return Ok((header, claims, rev, local)),
            }
        }
        Err(self.unavailable(Unavailable::StateChanging))
    }

    /// The claims a decode captures for cutoffs: the configured ones, then those the state
    /// lists that are not configured (`jti` is always captured).
    fn wanted_names<'a>(
        &'a self,
        state: Option<&'a dyn RevocationState>,
    ) -> impl Iterator<Item = &'a str> + Clone + 'a {
        let configured = self.cutoff_claims.iter().map(|c| &**c);
        let listed = state.map_or(&[][..], |s| s.cutoff_claims());
        configured.chain(listed.iter().map(|c| &**c).filter(move |c| {
            !same_claim(c, JTI_CLAIM) && !self.cutoff_claims.iter().any(|k| same_claim(k, c))
        }))
    }

    /// Lend the cutoff claim names the next parse on this thread captures (see
    /// [`lend_cutoff_names`]): the configured ones and those the current state lists.
    fn lend_names(&self) -> Rc<[Box<str>]> {
        let mut names = None;
        self.state.with_current(&mut |state| {
            names = Some(lend_cutoff_names(self.wanted_names(state)));
        });
        match names {
            Some(n) => n,
            None => lend_cutoff_names(self.wanted_names(None)),
        }
    }

    fn decode<C: DeserializeOwned>(&self, token: &str) -> Result<Decoded<C>, VerifyError> {
        let names = self.lend_names();
        let decoded = match &self.keys {
            Keys::Static { key, validation } => {
                jsonwebtoken::decode::<Captured<C>>(token, key, validation)
            }
            Keys::Issuers(issuers) => {
                let chosen = issuers.choose(token)?;
                jsonwebtoken::decode::<Captured<C>>(token, chosen.key(), chosen.validation)
            }
        };
        match decoded {
            Ok(data) => Ok((data.header, data.claims.claims, data.claims.rev, names)),
            Err(e) => Err(match e.into_kind() {
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                kind => VerifyError::Invalid(kind),
            }),
        }
    }

    fn query<'a>(
        &self,
        rev: &'a RevClaims,
        generation: u64,
        iss: Option<&'a str>,
        stale: bool,
    ) -> Option<ExactQuery<'a>> {
        Some(ExactQuery {
            iss,
            jti: rev.jti()?,
            exp: rev.exp,
            generation,
            now: (self.clock)(),
            stale,
        })
    }

    fn unavailable(&self, why: Unavailable) -> VerifyError {
        bump(&self.counters.unavailable);
        VerifyError::Unavailable(why)
    }

    /// A filter positive with no exact source to rule out a false positive: the filter's
    /// word stands (no false negatives, ever).
    fn no_exact_source(&self) -> VerifyError {
        VerifyError::Revoked {
            by: RevokedBy::JtiUnconfirmed,
        }
    }

    fn conclude(
        &self,
        answer: Result<bool, super::exact::ExactError>,
    ) -> Result<Checked, VerifyError> {
        match answer {
            Ok(false) => Ok(Checked::ExactSource),
            Ok(true) => Err(VerifyError::Revoked { by: RevokedBy::Jti }),
            // The source may already have forgotten this token: it is past the publisher's
            // prune watermark, i.e. expired by the publisher's clock.
            Err(super::exact::ExactError::NotCovered { .. }) => Err(VerifyError::Expired),
            Err(e) => {
                bump(&self.counters.exact_errors);
                if self.exact_failure == ExactFailurePolicy::Accept {
                    bump(&self.counters.fail_open);
                    Ok(Checked::FailOpen)
                } else {
                    Err(self.unavailable(Unavailable::ExactSource(e)))
                }
            }
        }
    }

    /// The CPU-only part: staleness, bounds, filter, cutoffs, against one view of the state.
    fn local(&self, rev: &RevClaims, names: &[Box<str>]) -> Local {
        if self.require_jti && rev.jti().is_none() {
            return Local::Reject(VerifyError::MissingJti);
        }
        if !self.has_state {
            return Local::Accept(Checked::NotApplicable);
        }
        if let Some(jti) = rev.jti() {
            if let Err(e) = Bounds::admit_jti(jti) {
                return Local::Reject(VerifyError::OutOfBounds(e));
            }
        }
        // An array of issuers names no single issuer whose revocations apply.
        if rev.iss_not_string {
            return Local::Reject(VerifyError::Invalid(ErrorKind::InvalidIssuer));
        }
        if self.issuer_keyed && rev.iss().is_none() {
            return Local::Reject(VerifyError::Invalid(ErrorKind::MissingRequiredClaim(
                "iss".to_owned(),
            )));
        }
        let mut out = Local::Accept(Checked::NotApplicable);
        self.state.with_current(&mut |state| {
            out = self.decide(state, rev, names);
        });
        out
    }

    fn decide(
        &self,
        state: Option<&dyn RevocationState>,
        rev: &RevClaims,
        names: &[Box<str>],
    ) -> Local {
        if let Some(s) = state {
            let captured =
                |c: &str| same_claim(c, JTI_CLAIM) || names.iter().any(|n| same_claim(n, c));
            if !s.cutoff_claims().iter().all(|c| captured(c)) {
                return Local::Retry;
            }
        }
        let now = (self.clock)();
        let stale = match (state, self.max_age) {
            (None, _) => Some(Unavailable::NoSnapshot),
            (Some(s), Some(max)) => {
                let age = now.saturating_sub(s.created_at());
                (age > max).then_some(Unavailable::Stale {
                    age_secs: age,
                    max_age_secs: max,
                })
            }
            (Some(_), None) => None,
        };
        // The bounds the state vouches within: a token outside them is refused whatever the
        // filter says, so nothing the publisher may already have pruned is ever accepted.
        if let Some(s) = state {
            match s.bounds().admit(rev.exp, rev.iat, now, s.created_at()) {
                Ok(()) => {}
                Err(e) if e.is_expired() => return Local::Reject(VerifyError::Expired),
                Err(e) => return Local::Reject(VerifyError::OutOfBounds(e)),
            }
        }
        let token_iss = rev.iss();
        let is_stale = stale.is_some();
        if let Some(why) = stale {
            match self.policy {
                StalenessPolicy::FailOpen => {
                    bump(&self.counters.fail_open);
                    if state.is_none() {
                        return Local::Accept(Checked::FailOpen);
                    }
                }
                StalenessPolicy::ExactSource if !matches!(self.exact, Exact::None) => {
                    if let Some(s) = state {
                        if let Some(e) = self.cutoff_match(s, rev, token_iss, names) {
                            return Local::Reject(e);
                        }
                    }
                    if rev.jti().is_none() {
                        return Local::Accept(Checked::NotApplicable);
                    }
                    bump(&self.counters.filter_positives);
                    return Local::Ask {
                        generation: state.map_or(0, |s| s.generation()),
                        iss: effective_issuer(state, token_iss).map(Box::from),
                        stale: true,
                    };
                }
                _ => return Local::Reject(self.unavailable(why)),
            }
        }
        let Some(s) = state else {
            return Local::Accept(Checked::FailOpen);
        };
        let mut positive = false;
        if let Some(jti) = rev.jti() {
            match s.check_token(jti, token_iss, rev.exp) {
                Verdict::Clear => {}
                Verdict::Expired => return Local::Reject(VerifyError::Expired),
                // MaybeRevoked, and any verdict added later: not clear on the filter's word.
                _ => positive = true,
            }
        }
        if let Some(e) = self.cutoff_match(s, rev, token_iss, names) {
            return Local::Reject(e);
        }
        if positive {
            bump(&self.counters.filter_positives);
            return Local::Ask {
                generation: s.generation(),
                iss: effective_issuer(Some(s), token_iss).map(Box::from),
                stale: is_stale,
            };
        }
        if rev.jti().is_none() {
            return Local::Accept(Checked::NotApplicable);
        }
        Local::Accept(Checked::Filter {
            generation: s.generation(),
        })
    }

    /// The first cutoff that revokes the token. Each claim is looked up under the token's
    /// issuer (or the state's default issuer when it has none) and under no issuer, since an
    /// issuer-less cutoff applies to every issuer.
    fn cutoff_match(
        &self,
        s: &dyn RevocationState,
        rev: &RevClaims,
        token_iss: Option<&str>,
        names: &[Box<str>],
    ) -> Option<VerifyError> {
        // Without `iat` a token cannot show it was issued after a cutoff that the publisher
        // has since pruned; one that carries a cutoff claim is refused unless a cutoff still
        // in the table already revokes it (that answer is the more useful one).
        let unbounded = (rev.iat.is_none() && rev.cutoffs().any(|c| c.is_some()))
            .then_some(VerifyError::OutOfBounds(OutOfBounds::NoIssuedAt));
        if !s.has_cutoffs() {
            return unbounded;
        }
        // Version 1 files fingerprinted the issuer as the publisher received it.
        let iss = if s.keys_on_jti_alone() {
            effective_issuer(Some(s), token_iss)
        } else {
            token_iss
        };
        // A revocation made without `exp` is a cutoff on the token's own `jti`: it revokes the
        // token whatever its `exp`, and with no `iat` too (a `jti` names one token).
        let jti_cutoffs = s.cutoff_claims().iter().any(|c| same_claim(c, JTI_CLAIM));
        let jti = rev.jti().filter(|_| jti_cutoffs);
        let own = jti.map(|j| (JTI_CLAIM, j));
        let claimed = names
            .iter()
            .zip(rev.cutoffs())
            .filter_map(|(name, value)| Some((&**name, value?)));
        for (name, value) in own.into_iter().chain(claimed) {
            let scopes = [iss, None];
            let scopes = if iss.is_some() {
                &scopes[..]
            } else {
                &scopes[1..]
            };
            for &scope in scopes {
                // The state derives each listed claim's space once per snapshot.
                let key = s.claim_hasher(scope, name).key(value.as_bytes());
                if s.cutoff(key).is_some_and(|before| revokes(before, rev.iat)) {
                    let by = if own.is_some_and(|(_, j)| std::ptr::eq(j, value)) {
                        RevokedBy::Jti
                    } else {
                        RevokedBy::Cutoff {
                            claim: name.to_string(),
                        }
                    };
                    return Some(VerifyError::Revoked { by });
                }
            }
        }
        unbounded
    }
}

/// What a verifier accepting tokens of `issuer` should tell its operator about the state it
/// checks against: an issuer that is matched in normalised form, or a publisher default issuer
/// that differs from it (revocations the publisher recorded under that default do not match
/// this verifier's tokens; issuer-less ones still do). Empty when nothing is amiss; log each
/// line at start.
pub fn issuer_warnings(issuer: &str, state: &dyn RevocationState) -> Vec<String> {
    let mut out = Vec::new();
    let normal = normalize_issuer(issuer);
    if normal != issuer {
        out.push(format!(
            "issuer {issuer:?} is matched against revocations as {normal:?} (trailing slashes removed)"
        ));
    }
    if let Some(default) = state.default_issuer() {
        if default != normal {
            out.push(format!(
                "the publisher's default issuer is {default:?}, but this verifier accepts tokens \
                 of {normal:?}: revocations recorded under {default:?} will not match them \
                 (revocations without an issuer still do)"
            ));
        }
    }
    out
}

/// The issuer revocations are matched on: the token's own (normalised), else the state's
/// default issuer.
fn effective_issuer<'a>(
    state: Option<&'a dyn RevocationState>,
    token_iss: Option<&'a str>,
) -> Option<&'a str> {
    match token_iss {
        Some(iss) => Some(normalize_issuer(iss)),
        None => state.and_then(|s| s.default_issuer()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::MemoryState;
    use crate::{CutoffSet, Window, WindowConfig};

    #[test]
    fn issuer_warnings_name_what_would_not_match() {
        let mut w = Window::with_seed(WindowConfig::default(), 1_000_000, 1).unwrap();
        let plain = MemoryState::new(w.clone(), CutoffSet::new(), 1, 1_000_000);
        assert!(issuer_warnings("https://idp", &plain).is_empty());
        assert_eq!(issuer_warnings("https://idp/", &plain).len(), 1);
        w.set_default_issuer(Some("https://idp/"));
        let with_default = MemoryState::new(w, CutoffSet::new(), 1, 1_000_000);
        assert_eq!(issuer_warnings("https://idp/", &with_default).len(), 1);
        let other = issuer_warnings("https://other", &with_default);
        assert_eq!(other.len(), 1);
        assert!(other[0].contains("https://idp"), "{other:?}");
    }
}
