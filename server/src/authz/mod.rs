//! `revbloom authz`: a check server beside a proxy. Envoy's external authorization gRPC API
//! and an HTTP endpoint for NGINX `auth_request` and Traefik `forwardAuth` share one
//! [`Checker`]; revocation state follows a publisher or mirrors through the sync client.
//!
//! [`config`] says what it runs with, [`state`] keeps the verifier's snapshot and keys current,
//! [`check`] decides one request, [`http`] answers decisions and serves the admin endpoints,
//! [`grpc`] answers Envoy's `Authorization/Check`,
//! [`run`] binds and serves (with a seam for an extra front end, [`run::ExtraServer`]). See
//! `docs/API.md` (section *revbloom authz*) and `docs/DESIGN.md` (*Sidecar*).

pub mod check;
pub mod config;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod run;
pub mod state;

pub use check::{Checker, Decision, DecisionCounts, ForwardClaim};
pub use config::{AuthzConfig, RevocationSource, TokenKeys};
pub use grpc::GrpcOptions;
pub use run::{start, start_with, ExtraServer, RunningAuthz};
pub use state::{AuthzError, AuthzState};

#[cfg(test)]
mod tests;
