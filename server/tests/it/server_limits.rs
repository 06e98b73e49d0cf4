//! The listener's bounds over a real socket: slow and idle clients are closed, connections over
//! the cap wait, slow bodies and oversized heads are answered in JSON, a shutdown ends within
//! its grace period and releases the store, and the admin token never comes from argv.
//!
//! Every wait is bounded by a `timeout` well above the limit under test; assertions are about
//! what happens (closed, answered, refused), never about how fast the scheduler was.

use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use revbloom_server::limits::ConnLimits;
use revbloom_server::{run, Running, Store};

use crate::support::{client, config, now, temp_dir, TOKEN};

/// A generous bound for things that must happen "soon" once a limit of about a second is hit.
const SOON: Duration = Duration::from_secs(8);

async fn start(limits: ConnLimits) -> (Running, std::path::PathBuf) {
    let dir = temp_dir("limits");
    let running = run::start_with_limits(config(dir.clone()), TOKEN.into(), limits)
        .await
        .unwrap();
    (running, dir)
}

/// Read until the peer closes (or resets) the connection; what was read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Send `raw` on a fresh connection and read one response head and body, up to the close.
async fn raw(addr: std::net::SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let bytes = timeout(SOON, read_to_close(&mut s))
        .await
        .expect("no close");
    parse(&bytes)
}

/// Status and body of a `Connection: close` HTTP/1.1 response.
fn parse(bytes: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(bytes);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn json_error(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {body:?}");
    });
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v["error"].as_str().unwrap_or_default().to_owned()
}

fn fast_timeouts() -> ConnLimits {
    ConnLimits {
        header_read_timeout_ms: 1000,
        body_read_timeout_ms: 1000,
        ..ConnLimits::default()
    }
}

#[tokio::test]
async fn slowloris_and_silent_connections_are_closed_after_the_header_timeout() {
    let (running, dir) = start(fast_timeouts()).await;
    let addr = running.local_addr();
    // A head dripped one byte every 200 ms never completes: the writer would go on for 40 s.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = slow.split();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let drip = async {
        for b in head {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 256];
        // Whatever hyper writes (possibly nothing), the read side ends.
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let t = Instant::now();
    tokio::select! {
        () = closed => {}
        () = drip => panic!("the slow head was read to the end"),
        () = tokio::time::sleep(SOON) => panic!("slowloris connection still open after {SOON:?}"),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
    // A connection that never sends anything, and one idle after a keep-alive request.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    timeout(SOON, read_to_close(&mut silent))
        .await
        .expect("silent connection still open");
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = timeout(SOON, read_to_close(&mut idle))
        .await
        .expect("idle keep-alive connection still open");
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn connections_over_the_cap_wait_in_the_backlog_until_one_closes() {
    let (running, dir) = start(ConnLimits {
        max_connections: 2,
        ..ConnLimits::default()
    })
    .await;
    let addr = running.local_addr();
    let a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    let open = &running.counters().open;
    let t = Instant::now();
    while open.load(Relaxed) < 2 {
        assert!(
            t.elapsed() < SOON,
            "the first two connections were not accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The kernel completes the handshake (backlog), but nobody reads the request.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = timeout(Duration::from_millis(500), c.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served: {early:?}");
    assert_eq!(open.load(Relaxed), 2);
    drop(a);
    let answered = timeout(SOON, read_to_close(&mut c))
        .await
        .expect("the waiting connection was never served");
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// The listen backlog holds a burst of connections over the cap: with `TcpListener::bind`'s
/// 128, the kernel drops the handshakes beyond it, and those clients' connects time out
/// instead of waiting for a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_cap_waits_in_a_backlog_larger_than_128() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let burst = 600.min(somaxconn.saturating_sub(8));
    assert!(
        burst > 256,
        "net.core.somaxconn {somaxconn} is too small for this test"
    );
    let (running, dir) = start(ConnLimits {
        max_connections: 1,
        ..ConnLimits::default()
    })
    .await;
    let addr = running.local_addr();
    let _held = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    while running.counters().open.load(Relaxed) < 1 {
        assert!(t.elapsed() < SOON, "the first connection was not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing more is accepted now; every connect must still complete (the kernel's part).
    let connects: Vec<_> = (0..burst)
        .map(|_| {
            tokio::spawn(async move {
                timeout(Duration::from_secs(5), TcpStream::connect(addr))
                    .await
                    .ok()
                    .and_then(Result::ok)
            })
        })
        .collect();
    let mut waiting = Vec::new();
    for c in connects {
        waiting.extend(c.await.unwrap());
    }
    assert_eq!(
        waiting.len(),
        burst,
        "only {} of {burst} connects completed",
        waiting.len()
    );
    assert_eq!(running.counters().open.load(Relaxed), 1);
    drop(waiting);
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_slow_body_is_answered_408_in_json() {
    let (running, dir) = start(fast_timeouts()).await;
    let mut s = TcpStream::connect(running.local_addr()).await.unwrap();
    let head = format!(
        "POST /v1/revocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"jti\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes; the connection stays open from our side.
    let bytes = timeout(SOON, read_to_close(&mut s))
        .await
        .expect("slow body still waited for");
    let (status, body) = parse(&bytes);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(json_error(&body), "body_timeout");
    assert_eq!(running.counters().body_timeouts_total.load(Relaxed), 1);
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn oversized_heads_are_answered_in_json_and_hyper_keeps_only_gross_cases() {
    let (running, dir) = start(ConnLimits::default()).await;
    let addr = running.local_addr();
    let long_uri = format!(
        "GET /v1/revocations/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let (status, body) = raw(addr, long_uri.as_bytes()).await;
    assert_eq!((status, json_error(&body).as_str()), (414, "uri_too_long"));
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(20_000)
    );
    let (status, body) = raw(addr, big_header.as_bytes()).await;
    assert_eq!(
        (status, json_error(&body).as_str()),
        (431, "headers_too_large")
    );
    // 100 fields: over our 64, within hyper's 128 (hyper's own default of 100 would answer
    // first, without a body).
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (status, body) = raw(addr, many.as_bytes()).await;
    assert_eq!(
        (status, json_error(&body).as_str()),
        (431, "headers_too_large")
    );
    // What stays hyper's (docs/API.md, Limits): a head over its 64 KiB buffer, and a request
    // line that is not HTTP. Refused and closed, without a JSON body.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nX-Huge: {}\r\n\r\n",
        "c".repeat(70_000)
    );
    let (status, _) = raw(addr, huge.as_bytes()).await;
    assert_eq!(status, 431);
    let (status, _) = raw(addr, b"HELLO\x01 there\r\n\r\n").await;
    assert_eq!(status, 400);
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn duplicate_authorization_headers_are_refused_by_the_publisher() {
    let (running, dir) = start(ConnLimits::default()).await;
    let exp = now() + 600;
    let body = format!(r#"{{"jti":"dup-auth","exp":{exp}}}"#);
    let req = format!(
        "POST /v1/revocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, reply) = raw(running.local_addr(), req.as_bytes()).await;
    assert_eq!(
        (status, json_error(&reply).as_str()),
        (401, "invalid_token")
    );
    assert_eq!(
        running.counters().admin_auth_failures_total.load(Relaxed),
        1
    );
    let url = format!("http://{}", running.local_addr());
    let v = crate::support::lookup(&client(), &url, "dup-auth").await;
    assert_eq!(v["revoked"], false);
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn shutdown_drops_stuck_connections_after_the_grace_period_and_releases_the_store() {
    let (running, dir) = start(ConnLimits {
        shutdown_grace_ms: 1000,
        ..ConnLimits::default()
    })
    .await;
    let addr = running.local_addr();
    let url = format!("http://{addr}");
    let exp = now() + 600;
    let res = client()
        .post(format!("{url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"jti": "before-term", "exp": exp}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A request whose body stalls (the 30 s body timeout would hold shutdown that long), and
    // slow heads (10 s header timeout).
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/revocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    stuck.write_all(head.as_bytes()).await.unwrap();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nX-").await.unwrap();
        slow.push(s);
    }
    let t = Instant::now();
    while running.counters().open.load(Relaxed) < 21 {
        assert!(t.elapsed() < SOON, "connections not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counters = std::sync::Arc::clone(running.counters());
    running.shutdown();
    let t = Instant::now();
    timeout(SOON, running.wait())
        .await
        .expect("shutdown outlived its grace period")
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert!(counters.dropped_at_shutdown_total.load(Relaxed) >= 1);
    assert_eq!(counters.open.load(Relaxed), 0);
    // The store is closed (redb holds a lock while open) and the acknowledged write is in it.
    let (store, writer) = Store::open(&dir, None).expect("store still held after shutdown");
    assert!(store.lookup(None, "before-term").unwrap().is_some());
    drop(store);
    writer.join();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_the_admin_token_from_a_file_and_refuses_it_on_argv() {
    let (running, dir) = start(ConnLimits::default()).await;
    let url = format!("http://{}", running.local_addr());
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let revoke = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .args([
                "revoke", "--jti", "cli-tok", "--exp", "+600", "--server", &url,
            ])
            .args(["--data", dir.join("no-data").to_str().unwrap()])
            .args(extra)
            .env_remove("REVBLOOM_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(|| revoke(&["--token", TOKEN]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--token-file") && err.contains("REVBLOOM_ADMIN_TOKEN"),
        "{err}"
    );
    let v = crate::support::lookup(&client(), &url, "cli-tok").await;
    assert_eq!(v["revoked"], false);
    let out =
        tokio::task::block_in_place(|| revoke(&["--token-file", token_file.to_str().unwrap()]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = crate::support::lookup(&client(), &url, "cli-tok").await;
    assert_eq!(v["revoked"], true);
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// The in-suite version of `examples/conn_flood.rs`: 300 slowloris and 300 idle connections
/// held while `/healthz` and revocations are served, then a shutdown within its grace period.
/// The latency bound here is a sanity bound (a server blocked by the flood would take the
/// header timeout, 10 s); the example prints the real percentiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_and_idle_connections_does_not_block_service_or_shutdown() {
    let (running, dir) = start(ConnLimits {
        shutdown_grace_ms: 2000,
        ..ConnLimits::default()
    })
    .await;
    let addr = running.local_addr();
    let url = format!("http://{addr}");
    let mut held = Vec::new();
    for i in 0..600 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                .await
                .unwrap();
        }
        held.push(s);
    }
    let http = client();
    let exp = now() + 600;
    let mut worst = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        let res = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let res = http
            .post(format!("{url}/v1/revocations"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"jti": format!("flood-{i}"), "exp": exp}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        worst.push(t.elapsed());
    }
    worst.sort();
    let p99 = worst[worst.len() * 99 / 100];
    eprintln!("healthz+revoke p99 under 600 held connections: {p99:?}");
    assert!(p99 < Duration::from_secs(2), "{worst:?}");
    let t = Instant::now();
    running.shutdown();
    timeout(SOON, running.wait())
        .await
        .expect("shutdown outlived its grace period")
        .unwrap();
    eprintln!("shutdown with 600 held connections: {:?}", t.elapsed());
    drop(held);
    let _ = std::fs::remove_dir_all(dir);
}
