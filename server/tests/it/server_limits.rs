//! The listener's bounds over a real socket: slow and idle clients are closed, idle connections
//! make room for new ones when the cap is reached, connections with requests in flight never
//! do, slow bodies and oversized heads are answered in JSON, a shutdown ends within
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

use crate::support::{client, config, metrics_text, now, temp_dir, TOKEN};

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

/// Connections with a request in flight are never closed to make room: with every slot held
/// by a long-poll, a new connection waits (in the backlog, or accepted and unserved) until
/// one ends by itself.
#[tokio::test]
async fn connections_over_the_cap_wait_while_every_slot_has_a_request_in_flight() {
    let (running, dir) = start(ConnLimits {
        max_connections: 2,
        ..ConnLimits::default()
    })
    .await;
    let addr = running.local_addr();
    let poll = b"GET /v1/snapshot?wait=3s HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\
                 Connection: close\r\n\r\n";
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(poll).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(poll).await.unwrap();
    let counters = running.counters();
    let t = Instant::now();
    while counters.open.load(Relaxed) < 2 {
        assert!(
            t.elapsed() < SOON,
            "the first two connections were not accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Fifteen times the idle age at which an idle connection would have been shed.
    let mut buf = [0u8; 64];
    let early = timeout(Duration::from_millis(1500), c.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served: {early:?}");
    assert_eq!(counters.open.load(Relaxed), 2);
    assert_eq!(counters.connections_shed_total.load(Relaxed), 0);
    // The long-polls end with their wait, answered in full; then the newcomer is served.
    for s in [&mut a, &mut b] {
        let (status, _) = parse(&timeout(SOON, read_to_close(s)).await.expect("long-poll"));
        assert_eq!(status, 304);
    }
    let answered = timeout(SOON, read_to_close(&mut c))
        .await
        .expect("the waiting connection was never served");
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    assert_eq!(counters.connections_shed_total.load(Relaxed), 0);
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Send `GET /healthz` on `s` (kept alive) and read its whole answer.
async fn keep_alive_healthz(s: &mut TcpStream) {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
        let n = timeout(SOON, s.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
}

/// Whether the server closed `s` within `wait` (`false`: still open).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(timeout(wait, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

/// With every slot taken, each newcomer closes the connection idle longest — one that never
/// sent a byte, one with a partial head, one idle between keep-alive requests — and is served
/// long before any header timeout would free a slot; the long-poll in flight is never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_shed_oldest_first_to_make_room() {
    let (running, dir) = start(ConnLimits {
        max_connections: 4,
        ..ConnLimits::default()
    })
    .await;
    let addr = running.local_addr();
    let counters = std::sync::Arc::clone(running.counters());
    // In flight: a snapshot long-poll that only a publication ends.
    let generation = running.hub().current().generation;
    let mut poll = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/snapshot?wait=30s HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"{generation}\"\r\n\
         Connection: close\r\n\r\n"
    );
    poll.write_all(req.as_bytes()).await.unwrap();
    // Idle, oldest first: after a keep-alive request, silent, a head never finished.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    keep_alive_healthz(&mut kept).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    while counters.open.load(Relaxed) < 3 {
        assert!(t.elapsed() < SOON, "connections not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    while counters.open.load(Relaxed) < 4 {
        assert!(t.elapsed() < SOON, "connections not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters.max.load(Relaxed), 4);
    // Three newcomers that stay connected: each needs a slot someone else holds. The header
    // timeout (10 s) would free none within the bound below.
    let mut newcomers = Vec::new();
    for (i, victim) in [&mut kept, &mut silent, &mut partial]
        .into_iter()
        .enumerate()
    {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        keep_alive_healthz(&mut s).await;
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "newcomer {i} waited {:?}",
            t.elapsed()
        );
        assert!(
            closed_within(victim, SOON).await,
            "idle connection {i} not shed"
        );
        assert_eq!(counters.connections_shed_total.load(Relaxed), i as u64 + 1);
        newcomers.push(s);
    }
    assert_eq!(counters.open.load(Relaxed), 4);
    // The long-poll is still waiting: a revocation wakes it with the new snapshot.
    assert!(!closed_within(&mut poll, Duration::from_millis(200)).await);
    let body = format!(r#"{{"jti":"wake","exp":{}}}"#, now() + 600);
    let post = format!(
        "POST /v1/revocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let last = newcomers.last_mut().unwrap();
    last.write_all(post.as_bytes()).await.unwrap();
    let (status, _) = parse(&timeout(SOON, read_to_close(last)).await.expect("POST"));
    assert_eq!(status, 200);
    let woken = timeout(SOON, read_to_close(&mut poll))
        .await
        .expect("the long-poll was not woken");
    assert!(
        woken.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &woken[..woken.len().min(200)]
    );
    // The gauge and the counter are in /metrics.
    let metrics = metrics_text(&client(), &format!("http://{addr}")).await;
    assert!(
        metrics.contains("\nrevbloom_connections_max 4\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nrevbloom_connections_shed_total "),
        "{metrics}"
    );
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
    assert!(store.lookup(None, "before-term").await.unwrap().is_some());
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

/// A CA and a certificate for 127.0.0.1 it signed, as files in `dir`: (CA PEM, cert, key).
fn tls_files(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Over TLS, a newcomer finding every slot taken closes an idle TLS connection, and a
/// connection stuck in its handshake once that has run a second; the handshake and header
/// timeouts (30 s) would free neither within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_and_stalled_handshakes_are_shed_to_make_room() {
    let dir = temp_dir("limits-tls");
    let (ca, cert, key) = tls_files(&dir);
    let mut cfg = config(dir.join("data"));
    cfg.tls = Some(
        serde_json::from_value(serde_json::json!({
            "cert_file": cert, "key_file": key, "handshake_timeout_ms": 30_000
        }))
        .unwrap(),
    );
    let limits = ConnLimits {
        max_connections: 2,
        header_read_timeout_ms: 30_000,
        ..ConnLimits::default()
    };
    let running = run::start_with_limits(cfg, TOKEN.into(), limits)
        .await
        .unwrap();
    let addr = running.local_addr();
    let counters = std::sync::Arc::clone(running.counters());
    let config = revbloom::sync::ClientTls::ca_file(&ca)
        .rustls_config()
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    // A TLS connection that sends `req`; with `answer`, reads the answer to its end.
    let tls_request = |req: &'static str, answer: bool| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut s = connector.connect(name, tcp).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while answer && !got.ends_with(b"}") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            assert!(!answer || got.starts_with(b"HTTP/1.1 200"), "{got:?}");
            s
        }
    };
    const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    const POLL: &str = "GET /v1/snapshot?wait=30s HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n";
    // A TCP connection that never starts its handshake, then an idle keep-alive TLS one.
    let t0 = Instant::now();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let mut idle = timeout(SOON, tls_request(HEALTHZ, true))
        .await
        .expect("first TLS client");
    assert_eq!(counters.open.load(Relaxed), 2);
    // A newcomer with a long-poll: the idle TLS connection makes room (idle 100 ms; the
    // stalled handshake is not sheddable before it has run 1 s).
    let mut poll = timeout(Duration::from_secs(3), tls_request(POLL, false))
        .await
        .expect("handshake of the first newcomer not done within 3 s");
    let mut buf = [0u8; 64];
    let closed = timeout(SOON, idle.read(&mut buf))
        .await
        .expect("idle TLS not shed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    // The next newcomer: only the stalled handshake can make room, once it has run 1 s.
    let _b = timeout(Duration::from_secs(3), tls_request(HEALTHZ, true))
        .await
        .expect("second newcomer not served within 3 s");
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(
        closed_within(&mut stalled, SOON).await,
        "stalled handshake not shed"
    );
    // The TLS long-poll in flight was not closed.
    let open = timeout(Duration::from_millis(200), poll.read(&mut buf)).await;
    assert!(open.is_err(), "the long-poll was closed: {open:?}");
    assert_eq!(counters.connections_shed_total.load(Relaxed), 2);
    running.shutdown();
    running.wait().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
