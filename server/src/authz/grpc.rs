//! Envoy's external authorization gRPC API (`envoy.service.auth.v3.Authorization/Check`)
//! over the shared [`Checker`].
//!
//! The bearer token comes from the request's `Authorization` header as Envoy forwards it
//! (`attributes.request.http.headers`, or `header_map` when Envoy sends raw headers) and is
//! decided by [`Checker::check_headers`], exactly as the HTTP check endpoint decides it. With
//! [`GrpcOptions::trust_jwt_authn`] set, claims that Envoy's `jwt_authn` filter verified and
//! put in the request's metadata are checked for revocation only; without them the header is
//! verified as usual, so nothing is ever allowed unchecked.
//!
//! Every decision is an answer (`CheckResponse`), never a gRPC error: Envoy turns a gRPC error
//! into its own 403 (or lets the request through with `failure_mode_allow`), while a
//! `denied_response` carries our status and RFC 6750 challenge to the client. Only a request
//! that cannot be read at all (oversized, not protobuf) gets a gRPC error from tonic.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::header::{HeaderName, AUTHORIZATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as EnvoyHeader, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value as PbValue};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use revbloom::bearer::BearerProblem;
use serde_json::{Map, Number, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;
use tonic::{Code, Request, Response};
use tower::util::MapResponseLayer;

use super::check::{Checker, Decision};
use crate::limits::ACCEPT_ERROR_BACKOFF;

/// The metadata namespace Envoy's `jwt_authn` filter writes `payload_in_metadata` into.
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// Default for [`GrpcOptions::max_message_bytes`]: a `CheckRequest` without the body (Envoy's
/// `with_request_body` off) is a few KiB of headers and attributes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default for [`GrpcOptions::max_connections`]: Envoy keeps a few HTTP/2 connections per
/// worker and multiplexes checks over them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default for [`GrpcOptions::max_concurrent_streams`] (per connection).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Default for [`GrpcOptions::request_timeout`]: Envoy's own ext_authz timeout is 200 ms;
/// this only bounds a check nobody waits for any more.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`GrpcOptions::keepalive_interval`].
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default for [`GrpcOptions::keepalive_timeout`].
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`GrpcOptions::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// HTTP/2 header list limit: gRPC request metadata is a handful of short headers.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Deepest nesting of the trusted claims converted from protobuf (a JWT payload is rarely
/// more than three levels deep; prost itself stops at 100).
pub const MAX_CLAIMS_DEPTH: usize = 32;
/// `Retry-After` of a 503 when revocation state is unavailable, in seconds.
const RETRY_AFTER_SECS: &str = "5";

/// How the gRPC front end listens and what it trusts.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// Largest `CheckRequest` accepted, in bytes (encoded protobuf); a larger one is refused
    /// with `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Trust the claims Envoy's `jwt_authn` filter verified: the `payload_in_metadata` name
    /// under [`JWT_AUTHN_NAMESPACE`] in `metadata_context` (set
    /// `metadata_context_namespaces: [envoy.filters.http.jwt_authn]` on the ext_authz filter).
    /// Those claims are checked for revocation only (no signature, `iss` or `aud` check);
    /// a request without them has its `Authorization` header verified in full. Only set
    /// this when the sidecar is reachable by that Envoy alone: whoever can call it can
    /// present any claims.
    pub trust_jwt_authn: Option<String>,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Concurrent checks per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Longest one check may take before it is cancelled (tonic answers `CANCELLED`).
    pub request_timeout: Duration,
    /// HTTP/2 PING interval on idle connections, to find dead peers.
    pub keepalive_interval: Duration,
    /// How long an unanswered PING keeps the connection open.
    pub keepalive_timeout: Duration,
    /// After shutdown is asked for, how long open connections may finish their checks.
    pub shutdown_grace: Duration,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            trust_jwt_authn: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// The gRPC server failed.
#[derive(Debug, thiserror::Error)]
#[error("ext_authz gRPC server: {0}")]
pub struct GrpcError(#[from] tonic::transport::Error);

/// Serve `envoy.service.auth.v3.Authorization` on `listener` until `shutdown` is cancelled,
/// then let open connections finish for at most [`GrpcOptions::shutdown_grace`].
pub async fn serve(
    listener: TcpListener,
    checker: Checker,
    options: GrpcOptions,
    shutdown: CancellationToken,
) -> Result<(), GrpcError> {
    let service = AuthorizationServer::new(AuthzService::new(checker, &options))
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let serving = Server::builder()
        .layer(MapResponseLayer::new(size_limit_is_resource_exhausted))
        .max_concurrent_streams(options.max_concurrent_streams)
        .timeout(options.request_timeout)
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(options.keepalive_timeout))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .add_service(service)
        .serve_with_incoming_shutdown(
            incoming(listener, options.max_connections),
            shutdown.clone().cancelled_owned(),
        );
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(options.shutdown_grace).await;
    };
    tokio::select! {
        done = serving => done.map_err(GrpcError::from),
        () = grace => {
            tracing::warn!("ext_authz gRPC: connections still open after the shutdown grace; closing");
            Ok(())
        }
    }
}

/// tonic answers a request over [`GrpcOptions::max_message_bytes`] with `OUT_OF_RANGE`;
/// gRPC's own servers (and its status code guide) say `RESOURCE_EXHAUSTED`, which is what
/// clients and dashboards look for. The check handler itself never fails (every decision is
/// an answer with status OK at the gRPC level), so an `OUT_OF_RANGE` from this server can
/// only be that limit.
fn size_limit_is_resource_exhausted(
    mut response: axum::http::Response<tonic::body::Body>,
) -> axum::http::Response<tonic::body::Body> {
    let status = HeaderName::from_static("grpc-status");
    let out_of_range = (Code::OutOfRange as i32).to_string();
    if response
        .headers()
        .get(&status)
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
    {
        let exhausted = (Code::ResourceExhausted as i32).to_string();
        if let Ok(v) = HeaderValue::from_str(&exhausted) {
            response.headers_mut().insert(status, v);
        }
    }
    response
}

/// The `Authorization` service.
#[derive(Debug, Clone)]
pub struct AuthzService {
    checker: Checker,
    trust_jwt_authn: Option<Arc<str>>,
}

impl AuthzService {
    /// A service deciding with `checker`, trusting `jwt_authn` metadata as `options` says.
    pub fn new(checker: Checker, options: &GrpcOptions) -> Self {
        Self {
            checker,
            trust_jwt_authn: options.trust_jwt_authn.as_deref().map(Arc::from),
        }
    }

    /// The decision for one `CheckRequest`.
    pub async fn decide(&self, request: &CheckRequest) -> Decision {
        let attributes = request.attributes.as_ref();
        let Some(http) = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            return Checker::header_problem(BearerProblem::Malformed(
                "the check request has no HTTP request attributes",
            ));
        };
        if let Some(name) = &self.trust_jwt_authn {
            let trusted = attributes
                .and_then(|a| a.metadata_context.as_ref())
                .and_then(|m| m.filter_metadata.get(JWT_AUTHN_NAMESPACE))
                .and_then(|s| s.fields.get(&**name))
                .and_then(|v| match &v.kind {
                    Some(Kind::StructValue(s)) => struct_to_json(s, 0),
                    _ => None,
                });
            // Absent or unreadable: verify the header instead (never allow unchecked).
            if let Some(claims) = trusted {
                return self.checker.check_trusted_claims(&claims).await;
            }
        }
        let mut headers = HeaderMap::new();
        let from_map = http.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        let raw = http.header_map.as_ref().map(|m| {
            m.headers.iter().map(|h| {
                let value = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    &h.raw_value[..]
                };
                (h.key.as_str(), value)
            })
        });
        let entries: Box<dyn Iterator<Item = (&str, &[u8])>> = match raw {
            Some(raw) if http.headers.is_empty() => Box::new(raw),
            _ => Box::new(from_map),
        };
        // Only `Authorization` decides. Every spelling of it is kept, so a request naming it
        // twice is refused as the HTTP endpoint refuses it rather than one copy picked.
        for (key, value) in entries {
            if !key.eq_ignore_ascii_case(AUTHORIZATION.as_str()) {
                continue;
            }
            match HeaderValue::from_bytes(value) {
                Ok(v) => {
                    headers.append(AUTHORIZATION, v);
                }
                Err(_) => {
                    return Checker::header_problem(BearerProblem::Malformed(
                        "the Authorization header is not a valid header value",
                    ))
                }
            }
        }
        self.checker.check_headers(&headers).await
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, tonic::Status> {
        let decision = self.decide(request.get_ref()).await;
        Ok(Response::new(check_response(
            decision,
            self.checker.forwarded_headers(),
        )))
    }
}

/// The `CheckResponse` for a decision. `forwarded` are every header the checker may add on
/// allow: those a decision does not set are removed from the request, so a client cannot
/// smuggle its own `x-auth-sub` past a token without that claim.
pub fn check_response<'a>(
    decision: Decision,
    forwarded: impl Iterator<Item = &'a HeaderName>,
) -> CheckResponse {
    let (code, http) = match decision {
        Decision::Allow { headers } => {
            let headers_to_remove = forwarded
                .filter(|name| !headers.iter().any(|(set, _)| set == *name))
                .map(|name| name.as_str().to_owned())
                .collect();
            let headers = headers
                .iter()
                .map(|(name, value)| {
                    header_option(
                        name.as_str(),
                        value,
                        HeaderAppendAction::OverwriteIfExistsOrAdd,
                    )
                })
                .collect();
            #[allow(deprecated)] // `dynamic_metadata` here is deprecated; leave it empty.
            let ok = OkHttpResponse {
                headers,
                headers_to_remove,
                ..Default::default()
            };
            (Code::Ok, HttpResponse::OkResponse(ok))
        }
        Decision::Deny {
            status,
            www_authenticate,
            reason,
        } => {
            let error = if status == StatusCode::BAD_REQUEST {
                "invalid_request"
            } else if www_authenticate.as_bytes().len() > "Bearer".len() {
                "invalid_token"
            } else {
                "unauthorized"
            };
            let denied = denied(
                status,
                vec![(
                    "www-authenticate",
                    www_authenticate.to_str().unwrap_or("Bearer"),
                )],
                error,
                reason,
            );
            (Code::Unauthenticated, HttpResponse::DeniedResponse(denied))
        }
        Decision::Unavailable { reason } => {
            let denied = denied(
                StatusCode::SERVICE_UNAVAILABLE,
                vec![("retry-after", RETRY_AFTER_SECS)],
                "temporarily_unavailable",
                reason,
            );
            (Code::Unavailable, HttpResponse::DeniedResponse(denied))
        }
    };
    CheckResponse {
        status: Some(RpcStatus {
            code: code as i32,
            message: String::new(),
            details: Vec::new(),
        }),
        http_response: Some(http),
        dynamic_metadata: None,
    }
}

fn denied(
    status: StatusCode,
    headers: Vec<(&str, &str)>,
    error: &str,
    description: &str,
) -> DeniedHttpResponse {
    let mut headers: Vec<HeaderValueOption> = headers
        .into_iter()
        .map(|(k, v)| envoy_header(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    headers.push(envoy_header(
        "content-type",
        "application/json",
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    ));
    let body = serde_json::json!({"error": error, "error_description": description});
    DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(status.as_u16()),
        }),
        headers,
        body: body.to_string(),
    }
}

fn header_option(name: &str, value: &HeaderValue, action: HeaderAppendAction) -> HeaderValueOption {
    match value.to_str() {
        Ok(text) => envoy_header(name, text, action),
        // Claims that are not visible ASCII go as raw bytes (Envoy takes one or the other).
        Err(_) => {
            let mut option = envoy_header(name, "", action);
            if let Some(h) = option.header.as_mut() {
                h.raw_value = value.as_bytes().to_vec();
            }
            option
        }
    }
}

fn envoy_header(name: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)] // `append` is deprecated in favour of `append_action`.
    HeaderValueOption {
        header: Some(EnvoyHeader {
            key: name.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: action as i32,
        keep_empty_value: false,
    }
}

/// A protobuf `Struct` as JSON claims, `None` if nested deeper than [`MAX_CLAIMS_DEPTH`].
/// Protobuf numbers are doubles: whole ones within ±2^53 become JSON integers (Envoy hands
/// `exp: 1767225600` over as `1767225600.0`, and claims read as integers must stay
/// integers), others stay floats and are read as a token's would be (a fractional `exp`
/// rounds). NaN and infinities, which JSON cannot carry, become `null`.
pub fn struct_to_json(s: &Struct, depth: usize) -> Option<Value> {
    if depth > MAX_CLAIMS_DEPTH {
        return None;
    }
    let mut map = Map::with_capacity(s.fields.len());
    for (k, v) in &s.fields {
        map.insert(k.clone(), value_to_json(v, depth + 1)?);
    }
    Some(Value::Object(map))
}

fn value_to_json(v: &PbValue, depth: usize) -> Option<Value> {
    Some(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StructValue(s)) => struct_to_json(s, depth)?,
        Some(Kind::ListValue(l)) => {
            if depth > MAX_CLAIMS_DEPTH {
                return None;
            }
            let items: Option<Vec<Value>> = l
                .values
                .iter()
                .map(|x| value_to_json(x, depth + 1))
                .collect();
            Value::Array(items?)
        }
    })
}

/// 2^53: beyond it a double no longer holds every integer.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

fn number_to_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < EXACT_INTEGER {
        // In range and whole: the casts are exact.
        if n >= 0.0 {
            Value::Number(Number::from(n as u64))
        } else {
            Value::Number(Number::from(n as i64))
        }
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Accepted connections, at most `max` open at once: a connection holds a permit until it
/// closes, and the listener is not polled while none is free (further clients wait in the
/// kernel's backlog). Accept errors are logged and retried after a pause, never handed to
/// tonic, which would retry at once and spin on `EMFILE`.
fn incoming(
    listener: TcpListener,
    max: usize,
) -> impl futures_util::Stream<Item = Result<Conn, std::io::Error>> {
    let permits = Arc::new(Semaphore::new(max.max(1)));
    futures_util::stream::unfold((listener, permits), |(listener, permits)| async move {
        let permit = Arc::clone(&permits).acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((io, _)) => {
                    let _ = io.set_nodelay(true);
                    let conn = Conn {
                        io,
                        _permit: permit,
                    };
                    return Some((Ok(conn), (listener, permits)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ext_authz gRPC: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    })
}

/// A connection holding its place under the connection cap.
struct Conn {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::ListValue;

    fn num(n: f64) -> PbValue {
        PbValue {
            kind: Some(Kind::NumberValue(n)),
        }
    }

    #[test]
    fn numbers_become_what_a_token_would_carry() {
        assert_eq!(
            number_to_json(1_767_225_600.0),
            serde_json::json!(1_767_225_600u64)
        );
        assert_eq!(number_to_json(-5.0), serde_json::json!(-5));
        assert_eq!(number_to_json(1.5), serde_json::json!(1.5));
        assert_eq!(number_to_json(1e300), serde_json::json!(1e300));
        assert_eq!(number_to_json(f64::NAN), Value::Null);
        assert_eq!(number_to_json(f64::INFINITY), Value::Null);
        let big = EXACT_INTEGER * 4.0;
        assert_eq!(number_to_json(big), serde_json::json!(big));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = num(1.0);
        for _ in 0..(MAX_CLAIMS_DEPTH + 4) {
            v = PbValue {
                kind: Some(Kind::ListValue(ListValue { values: vec![v] })),
            };
        }
        let mut s = Struct::default();
        s.fields.insert("deep".into(), v);
        assert_eq!(struct_to_json(&s, 0), None);
        let mut shallow = Struct::default();
        shallow.fields.insert("exp".into(), num(10.0));
        assert_eq!(
            struct_to_json(&shallow, 0),
            Some(serde_json::json!({"exp": 10}))
        );
    }
}
