//! `revbloom authz`: a check server beside a proxy. Envoy's external authorization gRPC API
//! and an HTTP endpoint for NGINX `auth_request` and Traefik `forwardAuth` share one
//! [`Checker`]; revocation state follows a publisher or mirrors through the sync client.

pub mod check;
pub mod grpc;

pub use check::{Checker, Decision, ForwardClaim};
pub use grpc::GrpcOptions;
