//! The publisher's integration tests, one binary: the HTTP API over a socket where the test is
//! about the socket, the `revbloom` binary (CLI, crash, serve), the sync client end to end,
//! and the seams between publisher and verifier. Handler-level tests live next to the
//! handlers and run through `Router::oneshot`.

mod audit_false_negatives;
mod authz_grpc;
mod authz_idp;
mod authz_nginx;
mod cli_completions;
mod cli_snapshot;
mod cli_usage;
mod deploy_files;
mod distribute_objects;
mod exact_lookup;
mod idp_backchannel;
mod idp_revoke;
mod pg_continuation;
mod pg_failover;
mod pg_store;
mod pg_tls;
mod publisher_sizing;
mod seams_model;
mod server_api;
mod server_backoff;
mod server_cli;
mod server_crash;
mod server_e2e;
mod server_limits;
mod server_ready;
mod server_tls;
mod snapshot_privacy;
mod store_deleted;
mod store_faults;
mod support;
