//! Load test for the publisher, from a separate process over loopback.
//!
//! ```text
//! cargo build --release -p revbloom-server --bin revbloom --example load
//! target/release/examples/load                      # spawns target/release/revbloom serve
//! target/release/examples/load --server http://127.0.0.1:8750 --token-file revbloom-data/admin-token
//! ```
//!
//! Options: `--secs N` (default 10), `--clients N` concurrent revokers (default 64),
//! `--fetchers N` concurrent snapshot fetchers (default 4). Every revocation is a separate
//! `POST /v1/revocations` acknowledged only once durable (fsynced), so revocations/s is the
//! durable rate. Bounded in time and to 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Load test for the publisher: concurrent revokers and snapshot fetchers over loopback.
#[derive(clap::Parser)]
#[command(name = "load")]
struct Args {
    /// An existing publisher [default: spawn target/release/revbloom serve on a temp folder].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// File holding the admin token of --server (else REVBLOOM_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// How long to run, in seconds (1–120).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    secs: u64,
    /// Concurrent revokers (1–1024).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Concurrent snapshot fetchers.
    #[arg(long, default_value_t = 4)]
    fetchers: usize,
    /// Process id of --server, to report its CPU time over the run (a spawned server's is
    /// reported anyway).
    #[arg(long)]
    pid: Option<u32>,
}

/// utime + stime of process `pid` ("self" for this one), seconds (Linux, USER_HZ = 100).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((tick(11)? + tick(12)?) / 100.0)
}

/// Spawn `revbloom serve` next to this example's binary on a temp data folder.
fn spawn_server(token: &str) -> Result<(Child, String, std::path::PathBuf), String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("revbloom"))
        .ok_or("cannot locate the revbloom binary")?;
    let data = std::env::temp_dir().join(format!("revbloom-load-{}", std::process::id()));
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("REVBLOOM_ADMIN_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
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
    Ok((child, url, data))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut lat: Vec<Duration>, secs: f64, errors: u64) {
    lat.sort_unstable();
    println!(
        "{name:>12}: {:>7} ok, {errors} errors, {:>9.0}/s, p50 {:>7.2} ms, p99 {:>7.2} ms, max {:>7.2} ms",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = <Args as clap::Parser>::parse();
    let token = match (&args.token_file, std::env::var("REVBLOOM_ADMIN_TOKEN")) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file {}: {e}", path.display()))?
            .trim()
            .to_owned(),
        (None, Ok(t)) => t,
        (None, Err(_)) if args.server.is_some() => {
            return Err("--server needs --token-file FILE or REVBLOOM_ADMIN_TOKEN".into())
        }
        (None, Err(_)) => "load-test-admin-token-0123456789".into(),
    };
    let mut spawned = None;
    let url = match &args.server {
        Some(s) => s.clone(),
        None => {
            let (child, url, data) = spawn_server(&token)?;
            spawned = Some((child, data));
            url
        }
    };
    if !url.starts_with("http://127.0.0.1") && !url.starts_with("http://localhost") {
        return Err("the load test only targets loopback servers".into());
    }
    let http = revbloom::sync::ClientTls::system_roots()
        .reqwest_builder()
        .map_err(|e| e.to_string())?
        .no_proxy()
        .pool_max_idle_per_host(2048)
        .build()
        .map_err(|e| e.to_string())?;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        + 3600;
    let stop = Arc::new(AtomicBool::new(false));
    let run = Duration::from_secs(args.secs);
    println!(
        "revbloom load: {} revokers, {} snapshot fetchers, {} s against {url}",
        args.clients, args.fetchers, args.secs
    );

    let mut revokers = Vec::new();
    for c in 0..args.clients {
        let (http, url, token, stop) = (http.clone(), url.clone(), token.clone(), stop.clone());
        revokers.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!(r#"{{"jti":"load-{c}-{seq}","exp":{exp}}}"#);
                seq += 1;
                let t = Instant::now();
                let res = http
                    .post(format!("{url}/v1/revocations"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut fetchers = Vec::new();
    for _ in 0..args.fetchers {
        let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
        fetchers.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut bytes) = (Vec::new(), 0u64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match http.get(format!("{url}/v1/snapshot")).send().await {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(b) => {
                            bytes = b.len();
                            lat.push(t.elapsed());
                        }
                        Err(_) => errors += 1,
                    },
                    _ => errors += 1,
                }
            }
            (lat, errors, bytes)
        }));
    }
    let server_pid = args
        .pid
        .or(spawned.as_ref().map(|(c, _): &(Child, _)| c.id()))
        .map(|p| p.to_string());
    let cpu_at = || (server_pid.as_deref().and_then(cpu_secs), cpu_secs("self"));
    let started = Instant::now();
    let cpu0 = cpu_at();
    tokio::time::sleep(run).await;
    let cpu1 = cpu_at();
    stop.store(true, Ordering::Relaxed);
    let (mut rl, mut re) = (Vec::new(), 0);
    for r in revokers {
        let (l, e) = r.await.map_err(|e| e.to_string())?;
        rl.extend(l);
        re += e;
    }
    let (mut fl, mut fe, mut fb) = (Vec::new(), 0, 0);
    for f in fetchers {
        let (l, e, b) = f.await.map_err(|e| e.to_string())?;
        fl.extend(l);
        fe += e;
        fb = fb.max(b);
    }
    let secs = started.elapsed().as_secs_f64();
    report("revocations", rl, secs, re);
    report("snapshots", fl, secs, fe);
    println!("snapshot size: {fb} bytes");
    let share = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.0}%", (b - a) / secs * 100.0),
        _ => "n/a".to_owned(),
    };
    println!(
        "cpu over the run (100% = one core): server {}, load generator {}; load average {}",
        share(cpu0.0, cpu1.0),
        share(cpu0.1, cpu1.1),
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    if let Ok(m) = http.get(format!("{url}/metrics")).send().await {
        if let Ok(text) = m.text().await {
            for line in text.lines().filter(|l| {
                [
                    "revbloom_generation ",
                    "revbloom_revocations_total ",
                    "revbloom_store_commits_total ",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            }) {
                println!("server: {line}");
            }
        }
    }
    if let Some((mut child, data)) = spawned {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(data);
    }
    Ok(())
}
