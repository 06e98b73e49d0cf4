//! Connection flood against a `revbloom serve` child process: slowloris, idle or long-polling
//! connections held open (each one reconnects as soon as the server closes it, as an attacker
//! would) while `/healthz` and revocation POSTs are timed; then SIGTERM, timed against the
//! shutdown grace period.
//!
//! ```text
//! cargo build --release -p revbloom-server --bin revbloom --example conn_flood
//! target/release/examples/conn_flood --mode slowloris --count 3000
//! target/release/examples/conn_flood --mode slowloris --count 6000      # above the 4096 cap
//! target/release/examples/conn_flood --mode idle --count 1100 --nofile 1024
//! target/release/examples/conn_flood --mode longpoll --count 3000 --max-long-polls 4096
//! ```
//!
//! Options: `--mode slowloris|idle|longpoll`, `--count N` flood connections, `--secs N` of
//! sampling (default 15, longer than the 10 s header timeout so the flood's own churn is
//! measured), `--nofile N` the server's `RLIMIT_NOFILE` (set between fork and exec),
//! `--max-long-polls N` the server's long-poll cap (default: the server's default).
//!
//! Every figure says how many connections were really open: the server's own
//! `revbloom_connections_open` gauge, read from `/metrics` during the sampling, and the
//! flood's count of connections it held. Latencies are timed on two clients: `fresh` opens a
//! new connection per request (it waits for `accept` like any new client), `kept` reuses one
//! keep-alive connection opened before the flood. The server is spawned from
//! `target/release/revbloom` on a temp data folder, removed at the end; loopback only.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "conn-flood-admin-token-0123456789";

/// What the flood's connections do.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Mode {
    /// Send a request head one byte at a time, never finishing it.
    Slowloris,
    /// Connect and send nothing.
    Idle,
    /// Hold snapshot long-polls open.
    #[value(name = "longpoll")]
    LongPoll,
}

/// Flood the publisher with connections and measure how it keeps serving others.
#[derive(clap::Parser)]
#[command(name = "conn_flood")]
struct Args {
    /// What the flood's connections do.
    #[arg(long, value_enum, default_value = "slowloris")]
    mode: Mode,
    /// How many flood connections.
    #[arg(long, default_value_t = 3000)]
    count: usize,
    /// How long to run, in seconds (1–300).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    secs: u64,
    /// Lower the server's RLIMIT_NOFILE to this.
    #[arg(long)]
    nofile: Option<u64>,
    /// The server's `connections.max_long_polls`.
    #[arg(long)]
    max_long_polls: Option<usize>,
}

/// Spawn `revbloom serve` next to this example's binary, with `RLIMIT_NOFILE` lowered to
/// `nofile` when given; stderr (the log) goes to `DATA/../serve.log`.
fn spawn_server(dir: &std::path::Path, args: &Args) -> Result<(Child, String), String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("revbloom"))
        .ok_or("cannot locate the revbloom binary")?;
    let mut conn = serde_json::json!({});
    if let Some(n) = args.max_long_polls {
        conn["max_long_polls"] = n.into();
    }
    let config = serde_json::json!({"connections": conn});
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("serve.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .arg("--data")
        .arg(dir.join("data"))
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(n) = args.nofile {
        // SAFETY: only `setrlimit`, async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e}; build it with --bin revbloom",
            bin.display()
        )
    })?;
    let mut line = String::new();
    let out = child.stdout.take().ok_or("no stdout")?;
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .trim()
        .strip_prefix("revbloom: listening on ")
        .ok_or(format!("unexpected server output {line:?}"))?
        .to_string();
    Ok((child, url))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, mut d: Vec<Duration>, failed: u64) {
    d.sort_unstable();
    println!(
        "{what:<26} n={:<6} failed={failed:<4} p50={:>8.2} ms  p99={:>8.2} ms  max={:>9.2} ms",
        d.len(),
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.99)),
        ms(d.last().copied().unwrap_or_default()),
    );
}

/// The flood's own view: connections it holds now, and how many times it had to reconnect.
#[derive(Default)]
struct Flood {
    held: AtomicU64,
    connects: AtomicU64,
    stop: AtomicBool,
}

/// One slowloris or idle connection, reopened whenever the server closes it.
async fn hold(addr: std::net::SocketAddr, mode: Mode, flood: Arc<Flood>) {
    while !flood.stop.load(Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        flood.connects.fetch_add(1, Relaxed);
        flood.held.fetch_add(1, Relaxed);
        let (mut rd, mut wr) = s.split();
        let closed = async {
            let mut buf = [0u8; 512];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let drip = async {
            if mode == Mode::Slowloris {
                if wr
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if wr.write_all(b"X-a: b\r\n").await.is_err() {
                        return;
                    }
                }
            } else {
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            () = closed => {}
            () = drip => {}
        }
        flood.held.fetch_sub(1, Relaxed);
    }
}

/// One snapshot long-poll on its own connection, raw HTTP/1.1: returns (status, body bytes,
/// when the whole answer had arrived).
async fn long_poll(
    addr: std::net::SocketAddr,
    generation: u64,
    sent: Arc<AtomicU64>,
) -> Option<(u16, usize, Instant)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "GET /v1/snapshot?wait=60s HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"{generation}\"\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    sent.fetch_add(1, Relaxed);
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let done = Instant::now();
    let text = String::from_utf8_lossy(&out[..out.len().min(64)]);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| out.len() - p - 4);
    Some((status, body, done))
}

/// Timed requests and the server's open-connection gauge.
#[derive(Default)]
struct Samples {
    health_fresh: Vec<Duration>,
    health_kept: Vec<Duration>,
    post_fresh: Vec<Duration>,
    post_kept: Vec<Duration>,
    /// (start, healthz, POST) of every fresh round, to pick out a window.
    timeline: Vec<(Instant, Duration, Duration)>,
    /// Failed requests of the fresh and the kept client.
    failed: [u64; 2],
    open_min: u64,
    open_max: u64,
}

fn exp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600
}

/// The first error of a timed fresh request, printed once.
static FIRST_ERROR: std::sync::Once = std::sync::Once::new();

async fn timed(req: reqwest::RequestBuilder) -> Option<Duration> {
    let t = Instant::now();
    let res = match req.timeout(Duration::from_secs(30)).send().await {
        Ok(r) => r,
        Err(e) => {
            FIRST_ERROR.call_once(|| {
                eprintln!(
                    "first failed fresh request after {:.2?}: {e:?}",
                    t.elapsed()
                )
            });
            return None;
        }
    };
    let ok = res.status().is_success();
    res.bytes().await.ok()?;
    ok.then(|| t.elapsed())
}

/// One keep-alive connection, opened before the flood and used for every request in turn
/// (a pooling client may open a second connection when the first has not yet been returned
/// to its pool, and that one would wait for `accept` like a fresh one).
#[derive(Clone)]
struct Kept(Arc<tokio::sync::Mutex<TcpStream>>);

impl Kept {
    async fn connect(addr: std::net::SocketAddr) -> Option<Kept> {
        let s = TcpStream::connect(addr).await.ok()?;
        s.set_nodelay(true).ok()?;
        Some(Kept(Arc::new(tokio::sync::Mutex::new(s))))
    }

    /// `method path` with an optional JSON body: (status, head, body).
    async fn send(
        &self,
        method: &str,
        path: &str,
        json: Option<String>,
    ) -> Option<(u16, String, Vec<u8>)> {
        let mut s = self.0.lock().await;
        let body = json.unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some((status, head, buf[end + 4..end + 4 + len].to_vec()));
            }
        }
    }

    async fn timed(&self, method: &str, path: &str, json: Option<String>) -> Option<Duration> {
        let t = Instant::now();
        let (status, _, _) = self.send(method, path, json).await?;
        (200..300).contains(&status).then(|| t.elapsed())
    }
}

/// The value of header `name` in a response head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

async fn open_gauge(kept: &Kept) -> Option<u64> {
    metric(kept, "revbloom_connections_open").await
}

/// The value of the series `name` (no labels) in the server's `/metrics`.
async fn metric(kept: &Kept, name: &str) -> Option<u64> {
    let (_, _, body) = kept.send("GET", "/metrics", None).await?;
    let prefix = format!("{name} ");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
}

/// The server's connection cap in force and the idle connections it shed so far, read on a
/// new connection.
async fn print_cap(url: &str, fresh: &reqwest::Client) {
    let text = async {
        let res = fresh
            .get(format!("{url}/metrics"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .ok()?;
        res.text().await.ok()
    };
    let text = text.await.unwrap_or_default();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "server: connection cap {} (revbloom_connections_max), {} idle connections shed so far",
        value("revbloom_connections_max"),
        value("revbloom_connections_shed_total"),
    );
}

/// Sample until `until` returns true (checked between requests) or `secs` pass: `/healthz`
/// then a POST, in a loop on each client; the two loops run concurrently, so a fresh
/// connection stuck waiting for `accept` does not stop the kept-alive samples. The gauge is
/// read every 250 ms on the kept-alive connection.
async fn sample(
    url: &str,
    fresh: &reqwest::Client,
    kept: &Kept,
    secs: Duration,
    until: impl Fn() -> bool,
) -> Samples {
    let start = Instant::now();
    let go = || start.elapsed() < secs && !until();
    let round = |client: &reqwest::Client, tag: &'static str, i: u64| {
        let client = client.clone();
        let url = url.to_owned();
        async move {
            let at = Instant::now();
            let h = timed(client.get(format!("{url}/healthz"))).await;
            let body = serde_json::json!({"jti": format!("flood-{tag}-{i}"), "exp": exp()});
            let p = timed(
                client
                    .post(format!("{url}/v1/revocations"))
                    .bearer_auth(TOKEN)
                    .json(&body),
            )
            .await;
            (at, h, p)
        }
    };
    let fresh_loop = async {
        let mut out = Vec::new();
        let mut i = 0;
        while go() {
            i += 1;
            out.push(round(fresh, "f", i).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out
    };
    let kept_loop = async {
        let (mut out, mut open) = (Vec::new(), Vec::new());
        let mut next_gauge = start;
        let mut i = 0;
        while go() {
            i += 1;
            let at = Instant::now();
            let h = kept.timed("GET", "/healthz", None).await;
            let body = serde_json::json!({"jti": format!("flood-k-{i}"), "exp": exp()});
            let p = kept
                .timed("POST", "/v1/revocations", Some(body.to_string()))
                .await;
            out.push((at, h, p));
            if Instant::now() >= next_gauge {
                next_gauge += Duration::from_millis(250);
                open.extend(open_gauge(kept).await);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (out, open)
    };
    let (fresh_rounds, (kept_rounds, open)) = tokio::join!(fresh_loop, kept_loop);
    let mut s = Samples {
        open_min: open.iter().copied().min().unwrap_or(0),
        open_max: open.iter().copied().max().unwrap_or(0),
        ..Samples::default()
    };
    let [fresh_failed, kept_failed] = &mut s.failed;
    for (rounds, health, post, failed) in [
        (
            &fresh_rounds,
            &mut s.health_fresh,
            &mut s.post_fresh,
            fresh_failed,
        ),
        (
            &kept_rounds,
            &mut s.health_kept,
            &mut s.post_kept,
            kept_failed,
        ),
    ] {
        for (_, h, p) in rounds {
            match h {
                Some(d) => health.push(*d),
                None => *failed += 1,
            }
            match p {
                Some(d) => post.push(*d),
                None => *failed += 1,
            }
        }
    }
    for (at, h, p) in fresh_rounds {
        if let (Some(h), Some(p)) = (h, p) {
            s.timeline.push((at, h, p));
        }
    }
    s
}

fn print_samples(s: Samples, flood: &Flood) {
    println!(
        "server's open connections while sampling: min {} max {} (includes the 2 sampling clients' own); \
         flood holds {} now, {} connects in all",
        s.open_min,
        s.open_max,
        flood.held.load(Relaxed),
        flood.connects.load(Relaxed)
    );
    let [fresh, kept] = s.failed;
    report("GET /healthz (fresh conn)", s.health_fresh, fresh);
    report("POST revocation (fresh)", s.post_fresh, 0);
    report("GET /healthz (kept-alive)", s.health_kept, kept);
    report("POST revocation (kept)", s.post_kept, 0);
}

fn count_lines(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

/// SIGTERM the server and time its exit.
fn terminate(child: &mut Child) -> Result<(Duration, String), String> {
    let t = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok((t.elapsed(), status.to_string()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the server did not exit within 60 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = <Args as clap::Parser>::parse();
    let dir = std::env::temp_dir().join(format!("revbloom-conn-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (mut child, url) = spawn_server(&dir, &args)?;
    let result = run(&args, &url, &mut child, &dir).await;
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    args: &Args,
    url: &str,
    child: &mut Child,
    dir: &std::path::Path,
) -> Result<(), String> {
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| format!("{url}: {e}"))?;
    let e = |e: reqwest::Error| e.to_string();
    let fresh = revbloom::sync::ClientTls::system_roots()
        .reqwest_builder()
        .map_err(|e| e.to_string())?
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(e)?;
    // The kept-alive connection, opened before the flood.
    let kept = Kept::connect(addr).await.ok_or("cannot connect")?;
    kept.timed("GET", "/healthz", None)
        .await
        .ok_or("the server does not answer /healthz")?;
    println!(
        "mode {:?}, {} flood connections, server RLIMIT_NOFILE {}, {} s of sampling",
        args.mode,
        args.count,
        args.nofile.map_or("inherited".into(), |n| n.to_string()),
        args.secs
    );
    let flood = Arc::new(Flood::default());
    if args.mode == Mode::LongPoll {
        return run_long_polls(args, url, addr, child, &fresh, &kept).await;
    }
    // The flood runs on its own runtime thread: thousands of reconnecting flood tasks in the
    // timed clients' run queue would delay the timed clients themselves (they stand for
    // clients on other machines), and the server would be blamed for it.
    let flood_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    for _ in 0..args.count {
        flood_rt.spawn(hold(addr, args.mode, Arc::clone(&flood)));
    }
    // Until every flood connection is connected (or 20 s: above the cap some never are).
    let target = args.count as u64;
    // The kept connection stays in use meanwhile: an idle one would be the first the server
    // closes to make room.
    while flood.held.load(Relaxed) < target && t.elapsed() < Duration::from_secs(20) {
        kept.timed("GET", "/healthz", None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "flood: {} of {} connected after {:.2?} (connected = the kernel completed the handshake)",
        flood.held.load(Relaxed),
        args.count,
        t.elapsed()
    );
    let s = sample(url, &fresh, &kept, Duration::from_secs(args.secs), || false).await;
    print_samples(s, &flood);
    print_cap(url, &fresh).await;
    let log = dir.join("serve.log");
    println!(
        "accept errors in the server log so far: {} lines",
        count_lines(&log, "accept failed")
    );
    let gauge = open_gauge(&kept).await.unwrap_or(0);
    drop(kept);
    let (took, status) = tokio::task::block_in_place(|| terminate(child))?;
    flood.stop.store(true, Relaxed);
    flood_rt.shutdown_background();
    println!(
        "SIGTERM with {gauge} connections open: exited in {:.2?} ({status}; grace 10 s)",
        took
    );
    Ok(())
}

async fn run_long_polls(
    args: &Args,
    url: &str,
    addr: std::net::SocketAddr,
    child: &mut Child,
    fresh: &reqwest::Client,
    kept: &Kept,
) -> Result<(), String> {
    let (_, head, body) = kept
        .send("GET", "/v1/snapshot", None)
        .await
        .ok_or("GET /v1/snapshot failed")?;
    let generation: u64 = header(&head, revbloom::wire::GENERATION_HEADER)
        .and_then(|v| v.parse().ok())
        .ok_or("no generation header")?;
    let size = body.len();
    let sent = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    // On their own runtime thread, as the flood of the other modes.
    let poll_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let polls: Vec<_> = (0..args.count)
        .map(|_| poll_rt.spawn(long_poll(addr, generation, Arc::clone(&sent))))
        .collect();
    while sent.load(Relaxed) < args.count as u64 && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the server read every request (the gauge counts connections, not waiting polls).
    let mut open = 0;
    while t.elapsed() < Duration::from_secs(20) {
        open = open_gauge(kept).await.unwrap_or(0);
        if open > args.count as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = polls.iter().filter(|p| p.is_finished()).count();
    println!(
        "{} long-polls sent in {:.2?}; server's open connections {open}; {early} already answered \
         (shed by the cap: 304 at once); snapshot {size} bytes",
        sent.load(Relaxed),
        t.elapsed()
    );
    // One publication wakes them all: a revocation, then timed requests until all are answered.
    let woken = Arc::new(AtomicU64::new(early as u64));
    let done_at = Arc::new(Mutex::new(Vec::new()));
    let total = args.count as u64;
    for p in polls {
        let woken = Arc::clone(&woken);
        let done_at = Arc::clone(&done_at);
        tokio::spawn(async move {
            if let Ok(Some(r)) = p.await {
                if let Ok(mut v) = done_at.lock() {
                    v.push(r);
                }
            }
            woken.fetch_add(1, Relaxed);
        });
    }
    let trigger = Instant::now();
    let wake = serde_json::json!({"jti": "wake-them-all", "exp": exp()});
    let revoke = kept
        .timed("POST", "/v1/revocations", Some(wake.to_string()))
        .await
        .ok_or("the waking revocation failed")?;
    let w = Arc::clone(&woken);
    let s = sample(
        url,
        fresh,
        kept,
        Duration::from_secs(args.secs),
        move || w.load(Relaxed) >= total,
    )
    .await;
    let answers = done_at.lock().map(|v| v.clone()).unwrap_or_default();
    let full: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    let last = full.iter().map(|a| a.2).max().unwrap_or(trigger);
    let first = full.iter().map(|a| a.2).min().unwrap_or(trigger);
    let bytes: usize = full.iter().map(|a| a.1).sum();
    println!(
        "waking revocation acknowledged in {:.2} ms; {} long-polls answered 200 with the new \
         snapshot ({} MB in all), {} answered otherwise; first {:.0} ms, last {:.0} ms after the \
         revocation was sent",
        ms(revoke),
        full.len(),
        bytes / 1_000_000,
        answers.len() - full.len(),
        ms(first.saturating_duration_since(trigger)),
        ms(last.saturating_duration_since(trigger))
    );
    let in_wake: Vec<_> = s.timeline.iter().filter(|t| t.0 <= last).collect();
    println!(
        "requests started while long-polls were being answered: {}",
        in_wake.len()
    );
    report(
        "  GET /healthz (fresh)",
        in_wake.iter().map(|t| t.1).collect(),
        0,
    );
    report(
        "  POST revocation (fresh)",
        in_wake.iter().map(|t| t.2).collect(),
        0,
    );
    println!("the whole sampling, from the waking revocation:");
    let flood = Flood::default();
    print_samples(s, &flood);
    print_cap(url, fresh).await;
    let (took, status) = tokio::task::block_in_place(|| terminate(child))?;
    println!("SIGTERM after the wake: exited in {took:.2?} ({status})");
    poll_rt.shutdown_background();
    Ok(())
}
