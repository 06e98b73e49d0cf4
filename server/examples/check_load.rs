//! Load and latency of `revbloom authz` checks, from a separate process over loopback: the
//! HTTP check endpoint (NGINX `auth_request` / Traefik `forwardAuth` target) or Envoy's
//! ext_authz gRPC API.
//!
//! ```text
//! cargo build --release -p revbloom-server --example check_load
//! # HTTP: N keep-alive connections, each sending GETs with the token's Authorization header
//! CHECK_LOAD_TOKEN=eyJ... target/release/examples/check_load http --url http://127.0.0.1:9190/check
//! # gRPC: N clients (one HTTP/2 connection each) sending CheckRequests as Envoy does
//! target/release/examples/check_load grpc --url http://127.0.0.1:8762 --token-file token.jwt
//! # gRPC against a sidecar started in this process (HS256 token, one revoked jti)
//! target/release/examples/check_load grpc --demo
//! ```
//!
//! Options: `--connections N` (1–1024, default 8), `--secs N` (1–300, default 10),
//! `--requests N` (stop after N in all), `--no-token`. Reports requests/s, p50/p90/p99/max
//! latency and a count per status. The token comes from `--token-file` or `CHECK_LOAD_TOKEN`,
//! never the command line. Targets must be loopback addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use hyper_util::rt::TokioIo;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// The HTTP check endpoint.
    Http,
    /// Envoy's ext_authz gRPC API.
    Grpc,
}

/// Load and latency of `revbloom authz` checks over loopback.
#[derive(clap::Parser)]
#[command(name = "check_load")]
struct Args {
    /// What to load.
    mode: Mode,
    /// The target: the check URL (http) or the gRPC server (grpc, `http://HOST:PORT`).
    #[arg(long, required_unless_present = "demo")]
    url: Option<String>,
    /// gRPC only: start a sidecar in this process (HS256 key, a fresh snapshot) and load it.
    #[arg(long, conflicts_with = "url")]
    demo: bool,
    /// File holding the bearer token (else CHECK_LOAD_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Send no Authorization header.
    #[arg(long, conflicts_with = "token_file")]
    no_token: bool,
    /// Concurrent connections (gRPC: clients, one connection each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: u64,
    /// Longest run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    secs: u64,
    /// Stop after this many requests in all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    requests: Option<u64>,
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    statuses: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, started: Instant, status: String) {
        let us = started.elapsed().as_micros();
        self.micros.push(u32::try_from(us).unwrap_or(u32::MAX));
        *self.statuses.entry(status).or_default() += 1;
    }
}

/// Requests still to send in all; `None` if unlimited. Each worker takes one before sending.
struct Budget {
    left: Option<AtomicU64>,
    deadline: Instant,
}

impl Budget {
    fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match &self.left {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

fn loopback(url: &str) -> Result<(SocketAddr, String, String), String> {
    let u = url::Url::parse(url).map_err(|e| format!("--url {url:?}: {e}"))?;
    if u.scheme() != "http" {
        return Err(format!("--url {url:?}: only http:// is supported"));
    }
    let addrs = u
        .socket_addrs(|| Some(80))
        .map_err(|e| format!("--url {url:?}: {e}"))?;
    let addr = *addrs
        .first()
        .ok_or_else(|| format!("--url {url:?}: no address"))?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!("--url {url:?}: only loopback targets are allowed"));
    }
    let host = u.host_str().unwrap_or("localhost").to_owned();
    let mut path = u.path().to_owned();
    if let Some(q) = u.query() {
        path = format!("{path}?{q}");
    }
    Ok((addr, host, path))
}

fn token(args: &Args) -> Result<Option<String>, String> {
    if args.no_token {
        return Ok(None);
    }
    let raw = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file {}: {e}", path.display()))?,
        None => std::env::var("CHECK_LOAD_TOKEN")
            .map_err(|_| "give --token-file, CHECK_LOAD_TOKEN or --no-token".to_owned())?,
    };
    Ok(Some(format!("Bearer {}", raw.trim())))
}

async fn http_worker(
    addr: SocketAddr,
    host: Arc<str>,
    path: Arc<str>,
    authorization: Option<Arc<str>>,
    budget: Arc<Budget>,
) -> Result<Tally, String> {
    use http_body_util::BodyExt;
    let mut tally = Tally::default();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    while budget.take() {
        let mut req = hyper::Request::get(&*path).header("host", &*host);
        if let Some(a) = &authorization {
            req = req.header("authorization", &**a);
        }
        let req = req.body(String::new()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let status = match send.send_request(req).await {
            Ok(res) => {
                let status = res.status().as_u16().to_string();
                // Drain the body so the connection can carry the next request.
                res.into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("body: {e}"))?;
                status
            }
            Err(e) => return Err(format!("request: {e}")),
        };
        tally.record(started, status);
    }
    Ok(tally)
}

async fn grpc_worker(
    url: Arc<str>,
    authorization: Option<Arc<str>>,
    budget: Arc<Budget>,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut client = AuthorizationClient::connect(url.to_string())
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let mut headers = std::collections::HashMap::from([
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), "/api/items".to_owned()),
        (":authority".to_owned(), "app.example".to_owned()),
        ("user-agent".to_owned(), "check_load".to_owned()),
    ]);
    if let Some(a) = &authorization {
        headers.insert("authorization".to_owned(), a.to_string());
    }
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/items".into(),
                    host: "app.example".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    };
    while budget.take() {
        let started = Instant::now();
        let status = match client.check(request.clone()).await {
            Ok(res) => {
                let res = res.into_inner();
                let code = tonic::Code::from(res.status.map_or(0, |s| s.code));
                match res.http_response {
                    Some(HttpResponse::DeniedResponse(d)) => {
                        let http = d.status.map_or(0, |s| s.code);
                        format!("{code:?}/{http}")
                    }
                    _ => format!("{code:?}"),
                }
            }
            Err(status) => format!("grpc error {:?}", status.code()),
        };
        tally.record(started, status);
    }
    Ok(tally)
}

fn report(mode: &str, tallies: Vec<Tally>, elapsed: Duration, connections: u64) {
    let mut micros: Vec<u32> = Vec::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for t in tallies {
        micros.extend(t.micros);
        for (k, v) in t.statuses {
            *statuses.entry(k).or_default() += v;
        }
    }
    micros.sort_unstable();
    let n = micros.len();
    let pct = |p: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        f64::from(micros[i]) / 1000.0
    };
    let secs = elapsed.as_secs_f64();
    println!(
        "{mode}: {n} requests in {secs:.2} s over {connections} connections: {:.0} requests/s",
        n as f64 / secs.max(1e-9)
    );
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        micros.last().map_or(0.0, |m| f64::from(*m) / 1000.0)
    );
    for (status, count) in statuses {
        println!("  {status}: {count}");
    }
}

/// A sidecar in this process for `--demo`: an HS256 verifier over a fresh snapshot with one
/// revoked jti; returns its URL and a token it accepts.
async fn demo() -> Result<(String, String), String> {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
    use revbloom::{CutoffSet, SnapshotHandle, StalenessPolicy, Window, WindowConfig};
    use revbloom_server::authz::{grpc, Checker, ForwardClaim, GrpcOptions};
    const SECRET: &[u8] = b"check-load-demo-secret-0123456789";
    let now = jsonwebtoken::get_current_timestamp();
    let mut w = Window::new(WindowConfig::default(), now).map_err(|e| e.to_string())?;
    w.insert("revoked-1", Some(now + 600));
    let bytes = snapshot::encode_to_vec(&w, &CutoffSet::new(), &SnapshotMeta::first(now), None)
        .map_err(|e| e.to_string())?;
    let view = SnapshotView::open(bytes, &OpenOptions::new()).map_err(|e| e.to_string())?;
    let handle =
        SnapshotHandle::<Vec<u8>>::new(StalenessPolicy::FailClosed, Duration::from_secs(3600));
    handle.replace(view).map_err(|e| e.to_string())?;
    let verifier = revbloom::verify::Verifier::builder(
        DecodingKey::from_secret(SECRET),
        Validation::new(Algorithm::HS256),
    )
    .state(handle)
    .build()
    .map_err(|e| e.to_string())?;
    let checker = Checker::new(
        Arc::new(verifier),
        vec![ForwardClaim {
            claim: "sub".into(),
            header: axum::http::HeaderName::from_static("x-auth-sub"),
        }],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(grpc::serve(listener, checker, GrpcOptions::default(), stop));
    let claims =
        serde_json::json!({"jti": "demo-1", "sub": "alice", "iat": now, "exp": now + 3600});
    let token = jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .map_err(|e| e.to_string())?;
    Ok((format!("http://{addr}"), token))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Args = clap::Parser::parse();
    let (url, authorization) = if args.demo {
        if args.mode != Mode::Grpc {
            return Err("--demo starts a gRPC sidecar: use it with `grpc`".into());
        }
        let (url, token) = demo().await?;
        (url, (!args.no_token).then(|| format!("Bearer {token}")))
    } else {
        let url = args.url.clone().ok_or("--url is required")?;
        (url, token(&args)?)
    };
    let (addr, host, path) = loopback(&url)?;
    let budget = Arc::new(Budget {
        left: args.requests.map(AtomicU64::new),
        deadline: Instant::now() + Duration::from_secs(args.secs),
    });
    let authorization: Option<Arc<str>> = authorization.map(Arc::from);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let budget = Arc::clone(&budget);
        let authorization = authorization.clone();
        tasks.push(match args.mode {
            Mode::Http => tokio::spawn(http_worker(
                addr,
                Arc::from(host.as_str()),
                Arc::from(path.as_str()),
                authorization,
                budget,
            )),
            Mode::Grpc => tokio::spawn(grpc_worker(Arc::from(url.as_str()), authorization, budget)),
        });
    }
    let mut tallies = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(tally)) => tallies.push(tally),
            Ok(Err(e)) => eprintln!("worker stopped: {e}"),
            Err(e) => eprintln!("worker failed: {e}"),
        }
    }
    let mode = match args.mode {
        Mode::Http => "http",
        Mode::Grpc => "grpc",
    };
    report(mode, tallies, started.elapsed(), args.connections);
    Ok(())
}
