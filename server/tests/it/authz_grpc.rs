//! The ext_authz gRPC front end of `revbloom authz`, over a real socket: a tonic server on
//! 127.0.0.1 and a client speaking Envoy's protobufs (`envoy-types`), deciding with a real
//! `Verifier` over a real snapshot (revoked `jti`s in the filter, a `sid` cutoff).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value as PbValue};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::Verifier;
use revbloom::{CutoffKey, CutoffSet, SnapshotHandle, StalenessPolicy, Window, WindowConfig};
use revbloom_server::authz::grpc::{self, GrpcOptions, JWT_AUTHN_NAMESPACE};
use revbloom_server::authz::{Checker, ForwardClaim};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

const SECRET: &[u8] = b"authz-grpc-test-secret-0123456789";
/// The `payload_in_metadata` name the tests configure.
const PAYLOAD: &str = "jwt_payload";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// A snapshot made now: "revoked-1" revoked (exp `t + 600`), and a `sid` cutoff on "sess-9"
/// at `t - 100`.
fn snapshot(t: u64) -> SnapshotView<Vec<u8>> {
    let mut w = Window::with_seed(WindowConfig::default(), t, 0x6270_6300).unwrap();
    w.insert("revoked-1", Some(t + 600));
    w.add_cutoff_claim("sid").unwrap();
    let mut cutoffs = CutoffSet::new();
    cutoffs.insert(CutoffKey::new(w.hasher(), None, "sid", "sess-9"), t - 100);
    let bytes = snapshot::encode_to_vec(&w, &cutoffs, &SnapshotMeta::first(t), None).unwrap();
    SnapshotView::open(bytes, &OpenOptions::new()).unwrap()
}

/// A checker over `handle`, forwarding `sub` as `x-auth-sub`.
fn checker(handle: SnapshotHandle<Vec<u8>>) -> Checker {
    let verifier = Verifier::builder(
        DecodingKey::from_secret(SECRET),
        Validation::new(Algorithm::HS256),
    )
    .state(handle)
    .build()
    .unwrap();
    Checker::new(
        Arc::new(verifier),
        vec![ForwardClaim {
            claim: "sub".into(),
            header: HeaderName::from_static("x-auth-sub"),
        }],
    )
}

fn loaded_handle() -> SnapshotHandle<Vec<u8>> {
    let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(300));
    handle.replace(snapshot(now())).unwrap();
    handle
}

struct Sidecar {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), grpc::GrpcError>>,
}

impl Sidecar {
    async fn start(checker: Checker, options: GrpcOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(grpc::serve(listener, checker, options, stop.clone()));
        Self { addr, stop, task }
    }

    async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Stop it and see it return within its grace.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

/// Bound every test: a hung server fails the test instead of hanging the suite.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test finished in time");
}

pub(crate) fn request(http: HttpRequest, metadata: Option<Metadata>) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(http),
            }),
            metadata_context: metadata,
            ..Default::default()
        }),
    }
}

/// A request whose `headers` hold `authorization` (as Envoy sends it, lowercased).
pub(crate) fn with_auth(value: Option<&str>) -> CheckRequest {
    let mut headers = HashMap::from([
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), "/api".to_owned()),
        ("x-auth-sub".to_owned(), "smuggled".to_owned()),
    ]);
    if let Some(v) = value {
        headers.insert("authorization".to_owned(), v.to_owned());
    }
    request(
        HttpRequest {
            method: "GET".into(),
            path: "/api".into(),
            headers,
            ..Default::default()
        },
        None,
    )
}

fn bearer(claims: &Value) -> CheckRequest {
    with_auth(Some(&format!("Bearer {}", sign(claims))))
}

fn good_claims(jti: &str) -> Value {
    let t = now();
    json!({"jti": jti, "sub": "alice", "sid": "sess-1", "iat": t - 5, "exp": t + 600})
}

/// Claims as Envoy's `jwt_authn` puts them in metadata: a protobuf Struct, numbers as doubles.
fn pb_struct(v: &Value) -> Struct {
    fn val(v: &Value) -> PbValue {
        let kind = match v {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(a) => Kind::ListValue(envoy_types::pb::google::protobuf::ListValue {
                values: a.iter().map(val).collect(),
            }),
            Value::Object(_) => Kind::StructValue(pb_struct(v)),
        };
        PbValue { kind: Some(kind) }
    }
    let Value::Object(map) = v else {
        panic!("claims are an object")
    };
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), val(v))).collect(),
    }
}

/// `jwt_authn` metadata holding `claims` under [`PAYLOAD`].
fn jwt_authn(claims: &Value) -> Metadata {
    let payload = PbValue {
        kind: Some(Kind::StructValue(pb_struct(claims))),
    };
    let ns = Struct {
        fields: HashMap::from([(PAYLOAD.to_owned(), payload)]),
    };
    Metadata {
        filter_metadata: HashMap::from([(JWT_AUTHN_NAMESPACE.to_owned(), ns)]),
        ..Default::default()
    }
}

fn with_metadata(mut req: CheckRequest, claims: &Value) -> CheckRequest {
    if let Some(a) = req.attributes.as_mut() {
        a.metadata_context = Some(jwt_authn(claims));
    }
    req
}

pub(crate) async fn check(
    client: &mut AuthorizationClient<Channel>,
    req: CheckRequest,
) -> CheckResponse {
    client.check(req).await.expect("an answer").into_inner()
}

pub(crate) fn code(r: &CheckResponse) -> i32 {
    r.status.as_ref().map_or(0, |s| s.code)
}

/// The allow headers as (name, value), and the headers to remove.
fn allowed(r: &CheckResponse) -> (Vec<(String, String)>, Vec<String>) {
    assert_eq!(code(r), Code::Ok as i32, "{r:?}");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("no ok response: {r:?}")
    };
    let set = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    (set, ok.headers_to_remove.clone())
}

/// The denied HTTP status, a header of it, and its JSON body.
fn denied(r: &CheckResponse, grpc: Code) -> (i32, HashMap<String, String>, Value) {
    assert_eq!(code(r), grpc as i32, "{r:?}");
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("no denied response: {r:?}")
    };
    let headers = d
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    let body = serde_json::from_str(&d.body).expect("a JSON body");
    (d.status.as_ref().map_or(0, |s| s.code), headers, body)
}

fn assert_invalid_token(r: &CheckResponse) {
    let (status, headers, body) = denied(r, Code::Unauthenticated);
    assert_eq!(status, 401, "{r:?}");
    let challenge = &headers["www-authenticate"];
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn valid_revoked_and_cut_off_tokens() {
    bounded(async {
        let sidecar = Sidecar::start(checker(loaded_handle()), GrpcOptions::default()).await;
        let mut client = sidecar.client().await;

        let ok = check(&mut client, bearer(&good_claims("good-1"))).await;
        let (set, removed) = allowed(&ok);
        assert_eq!(set, [("x-auth-sub".to_owned(), "alice".to_owned())]);
        assert!(removed.is_empty(), "{removed:?}");
        // Overwritten, not appended: the client's own x-auth-sub never reaches upstream.
        let Some(HttpResponse::OkResponse(o)) = &ok.http_response else {
            unreachable!()
        };
        assert_eq!(
            o.headers[0].append_action,
            2 /* OVERWRITE_IF_EXISTS_OR_ADD */
        );

        // No `sub` claim: the smuggled header is removed instead.
        let t = now();
        let no_sub = json!({"jti": "good-2", "iat": t - 5, "exp": t + 600});
        let (set, removed) = allowed(&check(&mut client, bearer(&no_sub)).await);
        assert!(set.is_empty());
        assert_eq!(removed, ["x-auth-sub"]);

        assert_invalid_token(&check(&mut client, bearer(&good_claims("revoked-1"))).await);

        let cut =
            json!({"jti": "c-1", "sub": "bob", "sid": "sess-9", "iat": t - 200, "exp": t + 600});
        assert_invalid_token(&check(&mut client, bearer(&cut)).await);
        // The same session logged in again after the cutoff: allowed.
        let again =
            json!({"jti": "c-2", "sub": "bob", "sid": "sess-9", "iat": t - 5, "exp": t + 600});
        allowed(&check(&mut client, bearer(&again)).await);

        let expired = json!({"jti": "e-1", "iat": t - 7200, "exp": t - 3600});
        assert_invalid_token(&check(&mut client, bearer(&expired)).await);
        sidecar.stop().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_authorization_is_refused_and_the_server_stays_healthy() {
    bounded(async {
        let sidecar = Sidecar::start(checker(loaded_handle()), GrpcOptions::default()).await;
        let mut client = sidecar.client().await;
        // (value, HTTP status, challenge has an error code)
        let cases: &[(Option<&str>, i32, bool)] = &[
            (None, 401, false),
            (Some("garbage"), 401, false),
            (Some("Basic dXNlcjpwYXNz"), 401, false),
            (Some("Bearer"), 400, true),
            (Some("Bearer a b"), 400, true),
            (Some("Bearer tok\"en"), 400, true),
            (Some("Bearer not-a-jwt"), 401, true),
            (Some("Bearer a.b.c"), 401, true),
            (Some(""), 400, true),
        ];
        for &(value, status, coded) in cases {
            let r = check(&mut client, with_auth(value)).await;
            let (got, headers, body) = denied(&r, Code::Unauthenticated);
            assert_eq!(got, status, "{value:?}: {r:?}");
            let challenge = &headers["www-authenticate"];
            assert_eq!(
                challenge.contains("error="),
                coded,
                "{value:?}: {challenge}"
            );
            assert!(body["error"].is_string(), "{value:?}: {body}");
            if status == 400 {
                assert_eq!(body["error"], "invalid_request");
            }
        }
        // Raw header values Envoy may send in `header_map`: a control character, bytes that
        // are not UTF-8, and the header twice.
        let raw = |values: Vec<Vec<u8>>| {
            let headers = values
                .into_iter()
                .map(|v| HeaderValue {
                    key: "authorization".into(),
                    value: String::new(),
                    raw_value: v,
                })
                .collect();
            request(
                HttpRequest {
                    header_map: Some(HeaderMap { headers }),
                    ..Default::default()
                },
                None,
            )
        };
        let token = format!("Bearer {}", sign(&good_claims("twice")));
        for values in [
            vec![b"Bearer a\nb".to_vec()],
            vec![b"Bearer \xff\xfe".to_vec()],
            vec![token.clone().into_bytes(), token.clone().into_bytes()],
        ] {
            let r = check(&mut client, raw(values.clone())).await;
            let (status, _, _) = denied(&r, Code::Unauthenticated);
            assert_eq!(status, 400, "{values:?}: {r:?}");
        }
        // Still answering, and still right.
        allowed(&check(&mut client, bearer(&good_claims("after-garbage"))).await);
        sidecar.stop().await;
    })
    .await;
}

#[tokio::test]
async fn header_map_only_requests_are_read() {
    bounded(async {
        let sidecar = Sidecar::start(checker(loaded_handle()), GrpcOptions::default()).await;
        let mut client = sidecar.client().await;
        let entry = |token: &str, raw: bool| {
            let v = format!("Bearer {token}");
            let (value, raw_value) = if raw {
                (String::new(), v.into_bytes())
            } else {
                (v, Vec::new())
            };
            request(
                HttpRequest {
                    header_map: Some(HeaderMap {
                        headers: vec![
                            HeaderValue {
                                key: ":path".into(),
                                value: "/".into(),
                                raw_value: Vec::new(),
                            },
                            HeaderValue {
                                key: "authorization".into(),
                                value,
                                raw_value,
                            },
                        ],
                    }),
                    ..Default::default()
                },
                None,
            )
        };
        for raw in [false, true] {
            let good = sign(&good_claims("hm-1"));
            let (set, _) = allowed(&check(&mut client, entry(&good, raw)).await);
            assert_eq!(set, [("x-auth-sub".to_owned(), "alice".to_owned())]);
            let revoked = sign(&good_claims("revoked-1"));
            assert_invalid_token(&check(&mut client, entry(&revoked, raw)).await);
        }
        sidecar.stop().await;
    })
    .await;
}

#[tokio::test]
async fn no_snapshot_fails_closed_and_missing_attributes_are_a_bad_request() {
    bounded(async {
        let empty =
            SnapshotHandle::<Vec<u8>>::new(StalenessPolicy::FailClosed, Duration::from_secs(300));
        let sidecar = Sidecar::start(checker(empty), GrpcOptions::default()).await;
        let mut client = sidecar.client().await;
        let r = check(&mut client, bearer(&good_claims("any"))).await;
        let (status, headers, body) = denied(&r, Code::Unavailable);
        assert_eq!(status, 503);
        assert!(headers.contains_key("retry-after"), "{headers:?}");
        assert_eq!(body["error"], "temporarily_unavailable");

        for req in [
            CheckRequest { attributes: None },
            CheckRequest {
                attributes: Some(AttributeContext::default()),
            },
        ] {
            let r = check(&mut client, req).await;
            let (status, _, body) = denied(&r, Code::Unauthenticated);
            assert_eq!(status, 400);
            assert_eq!(body["error"], "invalid_request");
        }
        sidecar.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_next_one_answered() {
    bounded(async {
        let options = GrpcOptions {
            max_message_bytes: 16 * 1024,
            ..GrpcOptions::default()
        };
        let sidecar = Sidecar::start(checker(loaded_handle()), options).await;
        let mut client = sidecar.client().await;
        let mut big = bearer(&good_claims("big"));
        if let Some(http) = big
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            http.headers
                .insert("x-filler".into(), "a".repeat(64 * 1024));
        }
        let err = client.check(big).await.expect_err("refused");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        // The same connection, and a new one, still get answers.
        allowed(&check(&mut client, bearer(&good_claims("small"))).await);
        let mut fresh = sidecar.client().await;
        allowed(&check(&mut fresh, bearer(&good_claims("small-2"))).await);
        sidecar.stop().await;
    })
    .await;
}

#[tokio::test]
async fn trusted_jwt_authn_metadata() {
    bounded(async {
        let t = now();
        let trusting = GrpcOptions {
            trust_jwt_authn: Some(PAYLOAD.into()),
            ..GrpcOptions::default()
        };
        let on = Sidecar::start(checker(loaded_handle()), trusting).await;
        let off = Sidecar::start(checker(loaded_handle()), GrpcOptions::default()).await;
        let mut on_client = on.client().await;
        let mut off_client = off.client().await;

        // Claims no key signed (Envoy vouches for them): allowed only when trusted. Numbers
        // arrive as doubles, `exp` with a fraction.
        let forged = json!({"jti": "forged-1", "sub": "eve", "iat": (t - 5) as f64,
                            "exp": (t + 600) as f64 + 0.5, "aud": ["x"], "nested": {"a": [1, 2]}});
        let req = with_metadata(with_auth(None), &forged);
        let (set, _) = allowed(&check(&mut on_client, req.clone()).await);
        assert_eq!(set, [("x-auth-sub".to_owned(), "eve".to_owned())]);
        let r = check(&mut off_client, req).await;
        let (status, _, _) = denied(&r, Code::Unauthenticated);
        assert_eq!(status, 401);
        // Trusted claims win over the header (the header is what Envoy verified them from).
        let req = with_metadata(with_auth(Some("Bearer not-a-jwt")), &forged);
        allowed(&check(&mut on_client, req).await);

        // Revocation still applies to trusted claims: a revoked jti, a cut-off sid, an
        // expired exp, a missing exp.
        let revoked = json!({"jti": "revoked-1", "sub": "eve", "iat": t - 5, "exp": t + 600});
        let cut = json!({"jti": "m-2", "sid": "sess-9", "iat": t - 200, "exp": t + 600});
        let expired = json!({"jti": "m-3", "iat": t - 7200, "exp": t - 3600});
        let no_exp = json!({"jti": "m-4", "iat": t - 5});
        for claims in [&revoked, &cut, &expired, &no_exp] {
            // Even with a valid token in the header: the metadata is what is checked.
            let req = with_metadata(bearer(&good_claims("header-ok")), claims);
            assert_invalid_token(&check(&mut on_client, req).await);
        }

        // No metadata: the header is verified in full.
        allowed(&check(&mut on_client, bearer(&good_claims("fallback-1"))).await);
        assert_invalid_token(&check(&mut on_client, bearer(&good_claims("revoked-1"))).await);
        let r = check(&mut on_client, with_auth(None)).await;
        assert_eq!(denied(&r, Code::Unauthenticated).0, 401);
        // Metadata of another name, or not a Struct: also the header.
        let mut other = with_auth(Some("Bearer not-a-jwt"));
        if let Some(a) = other.attributes.as_mut() {
            let mut md = jwt_authn(&forged);
            let ns = md.filter_metadata.get_mut(JWT_AUTHN_NAMESPACE).unwrap();
            let payload = ns.fields.remove(PAYLOAD).unwrap();
            ns.fields.insert("other_name".into(), payload);
            ns.fields.insert(
                PAYLOAD.into(),
                PbValue {
                    kind: Some(Kind::StringValue("not claims".into())),
                },
            );
            a.metadata_context = Some(md);
        }
        assert_invalid_token(&check(&mut on_client, other).await);
        on.stop().await;
        off.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    bounded(async {
        let sidecar = Sidecar::start(checker(loaded_handle()), GrpcOptions::default()).await;
        let addr = sidecar.addr;
        let mut client = sidecar.client().await;
        allowed(&check(&mut client, bearer(&good_claims("before-stop"))).await);
        drop(client);
        sidecar.stop().await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_place() {
    bounded(async {
        let options = GrpcOptions {
            max_connections: 1,
            ..GrpcOptions::default()
        };
        let sidecar = Sidecar::start(checker(loaded_handle()), options).await;
        let mut first = sidecar.client().await;
        allowed(&check(&mut first, bearer(&good_claims("first"))).await);
        let addr = sidecar.addr;
        let mut second = tokio::spawn(async move {
            let mut client = AuthorizationClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
            check(&mut client, bearer(&good_claims("second"))).await
        });
        // The second connection sits in the backlog while the first holds the only place
        // (a slow machine only makes this more certain).
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut second)
                .await
                .is_err(),
            "a connection over the cap was served"
        );
        drop(first);
        let answer = tokio::time::timeout(Duration::from_secs(20), second)
            .await
            .expect("served once the first connection closed")
            .unwrap();
        allowed(&answer);
        sidecar.stop().await;
    })
    .await;
}
