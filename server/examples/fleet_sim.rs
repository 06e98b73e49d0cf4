//! A fleet of verifiers long-polling one publisher, in one process: how fresh every verifier
//! is, what it costs the publisher, and how many bytes go out.
//!
//! ```text
//! cargo build --release -p revbloom-server --bin revbloom --example fleet_sim
//! target/release/examples/fleet_sim --verifiers 1000 --rate 10000 --secs 20
//! target/release/examples/fleet_sim --verifiers 1000 --rate 10000 --coalesce-ms 20
//! target/release/examples/fleet_sim --verifiers 1000 --rate 1000 --mirror DIR
//! ```
//!
//! The simulator starts `revbloom serve` (next to this binary, on a temp data folder, embedded
//! store unless `--store`), or uses `--server URL --data DIR --pid PID`. A writer posts
//! revocations at a fixed rate (`--rate`, in batches every `--batch-ms`), and records when
//! each batch is acknowledged (durable).
//!
//! Each verifier long-polls `GET /v1/deltas?since=N&wait=30s` as `revbloom::sync` does
//! (`GET /v1/snapshot` first and on `410`), on its own connection. `--real K` of them are the
//! library's own [`revbloom::sync::SyncClient`] (unseal, verify, apply every delta); the others
//! are minimal clients that do the same requests and take the body, without applying it: a
//! thousand copy-and-verify applies per generation would measure this machine's two cores,
//! not the publisher (each verifier applies its own deltas on its own machine; the `--real`
//! ones show what that adds).
//!
//! A monitor client applies every delta of the chain one generation at a time and checks the
//! revocations not yet seen: the first generation that holds a revocation is its generation.
//! Freshness of a revocation = from its acknowledgement to the moment every verifier holds
//! that generation (or a later one). Reported over the revocations acknowledged in the
//! measured span: p50/p99/max, with the split acknowledgement → first verifier (publication,
//! incl. the coalescing window) and first → last verifier (fan-out).
//!
//! With `--mirror DIR` the verifiers read the static mirror the publisher writes with
//! `--publish-to file://DIR`, served by a minimal HTTP server inside this process, polling
//! the manifest every `--mirror-poll-ms`.
//!
//! Publisher CPU is utime+stime of its process over the measured span; bytes are the bodies
//! the verifiers received. Bounded in time and to 127.0.0.1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use revbloom::snapshot::{is_sealed, read_verifying_key, unseal_prefix, AlignedBytes, SealKey};
use revbloom::swap::ReplaceOutcome;
use revbloom::sync::{SyncClient, SyncConfig};
use revbloom::{DeltaView, OpenOptions, SnapshotHandle, SnapshotView, StalenessPolicy, Verdict};
use tokio_util::sync::CancellationToken;

/// A fleet of verifiers long-polling one publisher (or reading a static mirror).
#[derive(clap::Parser)]
#[command(name = "fleet_sim")]
struct Args {
    /// An existing publisher [default: spawn target/release/revbloom serve on a temp folder].
    #[arg(long, value_name = "URL", requires_all = ["data", "pid"])]
    server: Option<String>,
    /// Data folder of --server (its verifier.key, signing.pub and admin-token are read), or
    /// of the spawned publisher.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Process id of --server, for its CPU time.
    #[arg(long)]
    pid: Option<u32>,
    /// `coalesce_ms` of the spawned publisher [default: its default].
    #[arg(long)]
    coalesce_ms: Option<u64>,
    /// More configuration of the spawned publisher, a JSON object merged into its config
    /// file (e.g. `{"window": {"expected_per_bucket": 400000}}` to size the buckets up front).
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// `--store` of the spawned publisher (e.g. postgres://…) [default: embedded].
    #[arg(long)]
    store: Option<String>,
    /// Verifiers (1–4000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=4000))]
    verifiers: u64,
    /// How many of the verifiers are the library's SyncClient (the rest minimal clients).
    #[arg(long, default_value_t = 0)]
    real: u64,
    /// Revocations per second (0: idle, the refresh timer only).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// The writer posts one batch every this many ms.
    #[arg(long, default_value_t = 10)]
    batch_ms: u64,
    /// Measured span, seconds (1–300).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    secs: u64,
    /// Writing before the measured span, seconds.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Long-poll wait of each request, seconds.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Read the static mirror in DIR (the publisher's `--publish-to file://DIR`) instead of
    /// long-polling the publisher.
    #[arg(long, value_name = "DIR")]
    mirror: Option<PathBuf>,
    /// Manifest poll interval of mirror readers, ms.
    #[arg(long, default_value_t = 1000)]
    mirror_poll_ms: u64,
}

const TOKEN: &str = "fleet-sim-admin-token-0123456789";

/// Spawn `revbloom serve` next to this example's binary.
fn spawn_server(args: &Args, data: &Path) -> Result<(Child, String), String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("revbloom"))
        .ok_or("cannot locate the revbloom binary")?;
    std::fs::create_dir_all(data).map_err(|e| e.to_string())?;
    let mut config = serde_json::json!({});
    if let Some(extra) = &args.config {
        config = serde_json::from_str(extra).map_err(|e| format!("--config: {e}"))?;
    }
    if let Some(c) = args.coalesce_ms {
        config["coalesce_ms"] = c.into();
    }
    let config_path = data.with_extension("json");
    std::fs::write(&config_path, config.to_string()).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--config")
        .arg(&config_path)
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    if let Some(s) = &args.store {
        cmd.args(["--store", s]);
    }
    if let Some(m) = &args.mirror {
        cmd.arg("--publish-to")
            .arg(format!("file://{}", m.display()));
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

/// utime + stime of `pid`, seconds (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What one verifier saw: when it came to hold which generation, and the body bytes.
#[derive(Default)]
struct History {
    held: Vec<(Instant, u64)>,
    bytes: u64,
    snapshots: u64,
    errors: u64,
}

/// The revocations posted, and what the monitor learned about them.
#[derive(Default)]
struct Ledger {
    /// (jti, exp, sent, acknowledged, first generation holding it).
    entries: Vec<Entry>,
    /// Indices of entries no generation has been found to hold yet.
    pending: Vec<usize>,
    errors: u64,
}

struct Entry {
    jti: String,
    exp: u64,
    acked: Option<Instant>,
    generation: Option<u64>,
    /// When the monitor found it (the first client to hold it, roughly).
    found: Option<Instant>,
}

fn header_generation(res: &reqwest::Response) -> Option<u64> {
    res.headers()
        .get(revbloom::wire::GENERATION_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// One minimal verifier: the requests of `revbloom::sync`'s URL source, bodies taken whole and
/// not applied.
async fn minimal_verifier(
    http: reqwest::Client,
    base: String,
    wait: Duration,
    history: Arc<Mutex<History>>,
    stop: CancellationToken,
) {
    let mut current: Option<u64> = None;
    let record = |g: u64, bytes: usize, snapshot: bool| {
        let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
        h.held.push((Instant::now(), g));
        h.bytes += bytes as u64;
        h.snapshots += u64::from(snapshot);
    };
    loop {
        let url = match current {
            None => revbloom::wire::snapshot_url(&base, Duration::ZERO),
            Some(g) => revbloom::wire::deltas_url(&base, g, wait),
        };
        let step = async {
            let res = http.get(&url).send().await?;
            let status = res.status().as_u16();
            let g = header_generation(&res);
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, g, body.len()))
        };
        let out = tokio::select! {
            o = step => o,
            _ = stop.cancelled() => return,
        };
        match out {
            Ok((200, Some(g), len)) => {
                record(g, len, current.is_none());
                current = Some(g);
            }
            Ok((204 | 304, _, _)) => {}
            Ok((410, _, _)) => current = None,
            _ => {
                history.lock().unwrap_or_else(|p| p.into_inner()).errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One verifier reading a static mirror: every `poll` (when the last look found nothing new)
/// the signed manifest, then the objects its plan names, as `revbloom::sync`'s mirror source
/// does; the objects are taken whole and not applied.
async fn mirror_verifier(
    http: reqwest::Client,
    base: String,
    options: OpenOptions,
    poll: Duration,
    offset: Duration,
    history: Arc<Mutex<History>>,
    stop: CancellationToken,
) {
    use revbloom::sync::manifest::{Manifest, Plan, MANIFEST_FILE};
    // Verifiers started together would poll in lockstep; spread them over one interval.
    tokio::select! {
        _ = tokio::time::sleep(offset) => {}
        _ = stop.cancelled() => return,
    }
    let mut held: Option<u64> = None;
    loop {
        let round = async {
            let get = |path: String| {
                let http = http.clone();
                let url = format!("{base}/{path}");
                async move {
                    let res = http.get(&url).send().await.map_err(|e| e.to_string())?;
                    if !res.status().is_success() {
                        return Err(format!("{url}: {}", res.status()));
                    }
                    res.bytes().await.map_err(|e| e.to_string())
                }
            };
            let bytes = get(MANIFEST_FILE.to_owned()).await?;
            let mut total = bytes.len();
            let manifest = Manifest::decode(&bytes, &options).map_err(|e| e.to_string())?;
            let objects: Vec<String> = match manifest.plan(held) {
                Plan::UpToDate => Vec::new(),
                Plan::Deltas(d) => d.iter().map(|d| d.path.clone()).collect(),
                Plan::Full(s, d) => std::iter::once(s.path.clone())
                    .chain(d.iter().map(|d| d.path.clone()))
                    .collect(),
            };
            let changed = !objects.is_empty();
            for path in objects {
                total += get(path).await?.len();
            }
            Ok::<_, String>((changed.then_some(manifest.generation), total))
        };
        let out = tokio::select! {
            o = round => o,
            _ = stop.cancelled() => return,
        };
        let changed = match out {
            Ok((generation, bytes)) => {
                let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
                h.bytes += bytes as u64;
                if let Some(g) = generation {
                    h.snapshots += u64::from(held.is_none());
                    h.held.push((Instant::now(), g));
                    held = Some(g);
                }
                generation.is_some()
            }
            Err(e) => {
                let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
                if h.errors == 0 {
                    eprintln!("mirror verifier: {e}");
                }
                h.errors += 1;
                false
            }
        };
        if !changed {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// A minimal static file server for `dir` on 127.0.0.1: what a CDN in front of the bucket
/// does, without caching.
async fn serve_dir(dir: PathBuf) -> Result<String, String> {
    use axum::http::{StatusCode, Uri};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let dir = dir.clone();
        async move {
            let rel = uri.path().trim_start_matches('/');
            if rel.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(StatusCode::NOT_FOUND);
            }
            tokio::fs::read(dir.join(rel))
                .await
                .map(axum::body::Bytes::from)
                .map_err(|_| StatusCode::NOT_FOUND)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// The monitor: applies each delta of every chain in turn and finds, for each revocation
/// posted, the first generation that holds it. Also records when it held each generation.
async fn monitor(
    http: reqwest::Client,
    base: String,
    options: OpenOptions,
    ledger: Arc<Mutex<Ledger>>,
    history: Arc<Mutex<History>>,
    stop: CancellationToken,
) {
    let handle: SnapshotHandle<AlignedBytes> =
        SnapshotHandle::new(StalenessPolicy::FailOpen, Duration::from_secs(3600));
    let scan = |handle: &SnapshotHandle<AlignedBytes>, g: u64| {
        let Some(view) = handle.current() else {
            return;
        };
        let now = Instant::now();
        let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
        let Ledger {
            entries, pending, ..
        } = &mut *l;
        pending.retain(|&i| {
            let e = &mut entries[i];
            if view.check(&e.jti, Some(e.exp)) == Verdict::MaybeRevoked {
                e.generation = Some(g);
                e.found = Some(now);
                false
            } else {
                true
            }
        });
        history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .held
            .push((now, g));
    };
    loop {
        let url = match handle.generation() {
            None => revbloom::wire::snapshot_url(&base, Duration::ZERO),
            Some(g) => revbloom::wire::deltas_url(&base, g, Duration::from_secs(30)),
        };
        let step = async {
            let res = http.get(&url).send().await?;
            let status = res.status().as_u16();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let out = tokio::select! {
            o = step => o,
            _ = stop.cancelled() => return,
        };
        match out {
            Ok((200, body)) if handle.generation().is_none() => {
                match SnapshotView::open_owned(body.to_vec(), &options) {
                    Ok(view) => {
                        let g = view.generation();
                        if handle.replace(view).is_ok() {
                            scan(&handle, g);
                        }
                    }
                    Err(e) => eprintln!("monitor: snapshot refused: {e}"),
                }
            }
            Ok((200, body)) => {
                let mut chain: &[u8] = &body;
                while !chain.is_empty() {
                    let opened = if is_sealed(chain) {
                        unseal_prefix(chain, options.seal_keys())
                            .map_err(|e| e.to_string())
                            .and_then(|(inner, rest)| {
                                let d =
                                    DeltaView::open(&inner, &options).map_err(|e| e.to_string())?;
                                let r = handle.apply_delta(&d).map_err(|e| e.to_string())?;
                                Ok((r, d.generation(), rest))
                            })
                    } else {
                        DeltaView::open_prefix(chain, &options)
                            .map_err(|e| e.to_string())
                            .and_then(|(d, rest)| {
                                let r = handle.apply_delta(&d).map_err(|e| e.to_string())?;
                                Ok((r, d.generation(), rest))
                            })
                    };
                    match opened {
                        Ok((r, g, rest)) => {
                            if let ReplaceOutcome::Replaced { .. } = r {
                                scan(&handle, g);
                            }
                            chain = rest;
                        }
                        Err(e) => {
                            eprintln!("monitor: delta refused: {e}");
                            break;
                        }
                    }
                }
            }
            Ok((204 | 304, _)) => {}
            Ok((410, _)) => {
                // A new layout: start again from the full snapshot (revocations found there
                // are given that generation, possibly later than the first that held them).
                match http
                    .get(revbloom::wire::snapshot_url(&base, Duration::ZERO))
                    .send()
                    .await
                {
                    Ok(res) => match res.bytes().await {
                        Ok(b) => match SnapshotView::open_owned(b.to_vec(), &options) {
                            Ok(view) => {
                                let g = view.generation();
                                match handle.replace(view) {
                                    Ok(_) => scan(&handle, g),
                                    Err(e) => eprintln!("monitor: snapshot {g} refused: {e}"),
                                }
                            }
                            Err(e) => eprintln!("monitor: snapshot refused: {e}"),
                        },
                        Err(e) => eprintln!("monitor: {e}"),
                    },
                    Err(e) => eprintln!("monitor: {e}"),
                }
            }
            Ok((status, _)) => {
                eprintln!("monitor: status {status}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                eprintln!("monitor: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The writer: `rate` revocations a second in batches every `batch`, each batch its own
/// request; the acknowledgement time of each revocation is recorded.
async fn writer(
    http: reqwest::Client,
    base: String,
    rate: u64,
    batch: Duration,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
) {
    if rate == 0 {
        return;
    }
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let run = std::process::id();
    let mut tick = tokio::time::interval(batch);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if due <= sent {
            continue;
        }
        let n = (due - sent).min(1000);
        let ids: Vec<usize> = {
            let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            (0..n)
                .map(|k| {
                    let i = l.entries.len();
                    l.entries.push(Entry {
                        jti: format!("fs-{run}-{}", sent + k),
                        exp,
                        acked: None,
                        generation: None,
                        found: None,
                    });
                    l.pending.push(i);
                    i
                })
                .collect()
        };
        sent += n;
        let body = {
            let l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            let items: Vec<serde_json::Value> = ids
                .iter()
                .map(|&i| serde_json::json!({"jti": l.entries[i].jti, "exp": exp}))
                .collect();
            serde_json::Value::Array(items).to_string()
        };
        let (http, base, ledger) = (http.clone(), base.clone(), ledger.clone());
        inflight.spawn(async move {
            let res = http
                .post(format!("{base}/v1/revocations"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let now = Instant::now();
            let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            match res {
                Ok(r) if r.status().is_success() => {
                    for i in ids {
                        l.entries[i].acked = Some(now);
                    }
                }
                _ => l.errors += 1,
            }
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// For each generation, the first instant every history in `fleet` held it or a later one
/// (`None` if some verifier never did).
fn all_hold(fleet: &[&History], generations: &[u64]) -> HashMap<u64, Option<Instant>> {
    let mut out = HashMap::new();
    for &g in generations {
        let mut worst: Option<Instant> = None;
        let mut missing = false;
        for h in fleet {
            // Generations only grow along a history.
            let i = h.held.partition_point(|(_, held)| *held < g);
            match h.held.get(i) {
                Some((t, _)) => worst = Some(worst.map_or(*t, |w| w.max(*t))),
                None => missing = true,
            }
        }
        out.insert(g, if missing { None } else { worst });
    }
    out
}

fn summary(label: &str, v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "{label}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(v, 0.5),
        pct(v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = <Args as clap::Parser>::parse();
    let temp = std::env::temp_dir().join(format!("revbloom-fleet-{}", std::process::id()));
    let data = args.data.clone().unwrap_or_else(|| temp.join("data"));
    let mut spawned = None;
    let (base, pid) = match (&args.server, args.pid) {
        (Some(s), Some(pid)) => (s.clone(), pid.to_string()),
        _ => {
            let (child, url) = spawn_server(&args, &data)?;
            let pid = child.id().to_string();
            spawned = Some(child);
            (url, pid)
        }
    };
    if !base.starts_with("http://127.0.0.1") {
        return Err("the simulator only targets loopback servers".into());
    }
    let seal = SealKey::from_file(&data.join("verifier.key")).map_err(|e| e.to_string())?;
    let verifying = read_verifying_key(&data.join("signing.pub")).map_err(|e| e.to_string())?;
    let options = OpenOptions::default()
        .verifying_key(verifying)
        .seal_key(seal.clone());
    let wait = Duration::from_secs(args.wait);
    let http = revbloom::sync::ClientTls::system_roots()
        .reqwest_builder()
        .map_err(|e| e.to_string())?
        .no_proxy()
        .pool_max_idle_per_host(8192)
        .timeout(wait + Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let writer_http = revbloom::sync::ClientTls::system_roots()
        .reqwest_builder()
        .map_err(|e| e.to_string())?
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;

    let stop = CancellationToken::new();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let monitor_history = Arc::new(Mutex::new(History::default()));
    tokio::spawn(monitor(
        http.clone(),
        base.clone(),
        options.clone(),
        ledger.clone(),
        monitor_history.clone(),
        stop.clone(),
    ));

    let minimal = args.verifiers.saturating_sub(args.real);
    let mirror_base = match &args.mirror {
        Some(dir) => {
            // The publisher writes the first manifest shortly after it starts.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !dir.join(revbloom::sync::manifest::MANIFEST_FILE).exists() {
                if Instant::now() > deadline {
                    return Err(format!("no manifest in {} after 30 s", dir.display()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(serve_dir(dir.clone()).await?)
        }
        None => None,
    };
    let mut histories = Vec::new();
    let poll = Duration::from_millis(args.mirror_poll_ms.max(1));
    for i in 0..minimal {
        let h = Arc::new(Mutex::new(History::default()));
        histories.push(h.clone());
        match &mirror_base {
            Some(m) => {
                tokio::spawn(mirror_verifier(
                    http.clone(),
                    m.clone(),
                    options.clone(),
                    poll,
                    poll.mul_f64(i as f64 / minimal as f64),
                    h,
                    stop.clone(),
                ));
            }
            None => {
                tokio::spawn(minimal_verifier(
                    http.clone(),
                    base.clone(),
                    wait,
                    h,
                    stop.clone(),
                ));
            }
        }
    }
    let mut real = Vec::new();
    for _ in 0..args.real.min(args.verifiers) {
        let config = match &mirror_base {
            Some(m) => SyncConfig::mirrors([m.clone()]).mirror_poll_interval(poll),
            None => SyncConfig::url(base.clone()).long_poll(wait),
        }
        .seal_key(seal.clone())
        .open_options(OpenOptions::default().verifying_key(verifying));
        let handle = SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(3600));
        let client = SyncClient::start(config, handle).map_err(|e| e.to_string())?;
        let h = Arc::new(Mutex::new(History::default()));
        let mut rx = client.subscribe();
        let (hh, st) = (h.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = st.cancelled() => return,
                }
                if let Some(g) = *rx.borrow_and_update() {
                    hh.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .held
                        .push((Instant::now(), g));
                }
            }
        });
        real.push((client, h));
    }
    // Every verifier holds a snapshot before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = histories
            .iter()
            .chain(real.iter().map(|(_, h)| h))
            .all(|h| !h.lock().unwrap_or_else(|p| p.into_inner()).held.is_empty());
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err("verifiers did not all get a first snapshot within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "fleet_sim: {} verifiers ({} real SyncClients){}, {} revocations/s in batches every {} ms, \
         coalesce_ms {}, {} s (+{} s warm-up) against {base}; load {}",
        args.verifiers,
        args.real.min(args.verifiers),
        mirror_base.as_ref().map_or(String::new(), |m| format!(
            " reading the mirror {m} every {} ms",
            args.mirror_poll_ms
        )),
        args.rate,
        args.batch_ms,
        args.coalesce_ms
            .map_or("default".to_owned(), |c| c.to_string()),
        args.secs,
        args.warmup,
        loadavg()
    );
    let write_stop = CancellationToken::new();
    let w = tokio::spawn(writer(
        writer_http,
        base.clone(),
        args.rate,
        Duration::from_millis(args.batch_ms.max(1)),
        ledger.clone(),
        write_stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let bytes_at = |hs: &[Arc<Mutex<History>>]| -> u64 {
        hs.iter()
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    };
    let t0 = Instant::now();
    let snapshots_at = |hs: &[Arc<Mutex<History>>]| -> u64 {
        hs.iter()
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).snapshots)
            .sum()
    };
    let snaps0 = snapshots_at(&histories);
    let (cpu0, self0, bytes0) = (cpu_secs(&pid), cpu_secs("self"), bytes_at(&histories));
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    let t1 = Instant::now();
    let (cpu1, self1, bytes1) = (cpu_secs(&pid), cpu_secs("self"), bytes_at(&histories));
    let snaps_in_span = snapshots_at(&histories) - snaps0;
    write_stop.cancel();
    let _ = w.await;
    let load_end = loadavg();
    // Let every verifier catch up with the last revocations before the clients stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let span = (t1 - t0).as_secs_f64();
    let l = ledger.lock().unwrap_or_else(|p| p.into_inner());
    let measured: Vec<&Entry> = l
        .entries
        .iter()
        .filter(|e| e.acked.is_some_and(|a| a >= t0 && a < t1))
        .collect();
    let hs: Vec<std::sync::MutexGuard<'_, History>> = histories
        .iter()
        .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()))
        .collect();
    let rs: Vec<std::sync::MutexGuard<'_, History>> = real
        .iter()
        .map(|(_, h)| h.lock().unwrap_or_else(|p| p.into_inner()))
        .collect();
    let mut gens: Vec<u64> = measured.iter().filter_map(|e| e.generation).collect();
    gens.sort_unstable();
    gens.dedup();
    let minimal_fleet: Vec<&History> = hs.iter().map(|h| &**h).collect();
    let real_fleet: Vec<&History> = rs.iter().map(|h| &**h).collect();
    let all_min = all_hold(&minimal_fleet, &gens);
    let all_real = all_hold(&real_fleet, &gens);
    let (mut fresh, mut fresh_real, mut publish, mut fanout) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut unassigned, mut never) = (0u64, 0u64);
    let ms = |a: Instant, b: Instant| {
        if b >= a {
            (b - a).as_secs_f64() * 1e3
        } else {
            -((a - b).as_secs_f64() * 1e3)
        }
    };
    for e in &measured {
        let (Some(acked), Some(g)) = (e.acked, e.generation) else {
            unassigned += 1;
            continue;
        };
        if let Some(found) = e.found {
            publish.push(ms(acked, found));
        }
        match all_min.get(&g).copied().flatten() {
            Some(t) => {
                fresh.push(ms(acked, t));
                if let Some(found) = e.found {
                    fanout.push(ms(found, t));
                }
            }
            None if !minimal_fleet.is_empty() => never += 1,
            None => {}
        }
        if let Some(Some(t)) = all_real.get(&g) {
            fresh_real.push(ms(acked, *t));
        }
    }
    let publisher_cpu = cpu1 - cpu0;
    let sim_cpu = self1 - self0;
    let bytes = bytes1 - bytes0;
    let monitor_gens = {
        let m = monitor_history.lock().unwrap_or_else(|p| p.into_inner());
        m.held.iter().filter(|(t, _)| *t >= t0 && *t < t1).count()
    };
    let errors: u64 = hs.iter().map(|h| h.errors).sum();
    println!(
        "revocations acknowledged in the span: {} ({:.0}/s), write errors {}, generations {} ({:.1}/s)",
        measured.len(),
        measured.len() as f64 / span,
        l.errors,
        monitor_gens,
        monitor_gens as f64 / span
    );
    println!(
        "publisher cpu {:.2} s over {:.1} s = {:.0}% of one core; simulator cpu {:.0}% of one core",
        publisher_cpu,
        span,
        publisher_cpu / span * 100.0,
        sim_cpu / span * 100.0
    );
    println!(
        "bytes to {} minimal verifiers: {:.1} MB ({:.2} MB/s, {:.0} B per verifier per revocation); \
         full snapshots fetched in the span {} (a new layout: every verifier refetches), verifier errors {}",
        minimal_fleet.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / span,
        if measured.is_empty() || minimal_fleet.is_empty() {
            0.0
        } else {
            bytes as f64 / measured.len() as f64 / minimal_fleet.len() as f64
        },
        snaps_in_span,
        errors
    );
    println!(
        "freshness (ack → every verifier holds it), over {} revocations: {}",
        fresh.len(),
        summary("all", &mut fresh)
    );
    println!(
        "  {}",
        summary("ack → monitor holds it (publication)", &mut publish)
    );
    println!(
        "  {}",
        summary("monitor → last verifier (fan-out)", &mut fanout)
    );
    if !real_fleet.is_empty() {
        println!(
            "  {} real SyncClients: {}",
            real_fleet.len(),
            summary("ack → every one applied it", &mut fresh_real)
        );
    }
    if unassigned + never > 0 {
        println!(
            "  not found in any generation: {unassigned}; a verifier never got there: {never}"
        );
    }
    println!("load at the end of the span: {load_end}");
    drop(hs);
    drop(rs);
    drop(l);
    for (c, _) in real {
        c.stop();
    }
    if let Some(mut child) = spawned {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(())
}
