//! Connection flood against an in-process publisher: slowloris and idle connections held open
//! while `/healthz` and revocation POSTs are timed, then a shutdown timed against its grace
//! period.
//!
//! ```text
//! cargo run --release -p revbloom-server --example conn_flood -- --count 3000 --samples 500
//! ```
//!
//! `--count N` slowloris connections (each sends a request head one byte every 2 s) and as
//! many idle ones (connected, silent); `--samples N` timed requests of each kind. Loopback
//! only; the data folder is a temp folder removed at the end. Needs `ulimit -n` above twice
//! the count plus a few hundred.

use std::time::{Duration, Instant};

use revbloom_server::limits::ConnLimits;
use revbloom_server::{run, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TOKEN: &str = "conn-flood-admin-token-0123456789";

fn arg(name: &str, default: usize) -> Result<usize, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or(format!("{name} needs a number")),
        None => Ok(default),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{what:<22} n={:<5} p50={:>8.2?} p99={:>8.2?} max={:>8.2?}",
        d.len(),
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        d[d.len() - 1]
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count = arg("--count", 300)?;
    let samples = arg("--samples", 200)?.max(1);
    let dir = std::env::temp_dir().join(format!("revbloom-conn-flood-{}", std::process::id()));
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.clone(),
        ..ServerConfig::default()
    };
    config.window.expected_per_bucket = 1000;
    let limits = ConnLimits::default();
    let grace = limits.shutdown_grace();
    let running = run::start_with_limits(config, TOKEN.into(), limits).await?;
    let addr = running.local_addr();
    let url = format!("http://{addr}");

    let t = Instant::now();
    let mut held = Vec::with_capacity(2 * count);
    for _ in 0..count {
        held.push(TcpStream::connect(addr).await?);
    }
    let mut slow = Vec::with_capacity(count);
    for _ in 0..count {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
        slow.push(s);
    }
    let drip = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            for s in &mut slow {
                let _ = s.write_all(b"X").await;
            }
        }
    });
    println!(
        "{count} idle + {count} slowloris connections opened in {:.2?}",
        t.elapsed()
    );

    let http = revbloom::sync::ClientTls::system_roots()
        .reqwest_builder()?
        .no_proxy()
        .build()?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 600;
    let (mut health, mut revoke) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let t = Instant::now();
        let res = http.get(format!("{url}/healthz")).send().await?;
        res.bytes().await?;
        health.push(t.elapsed());
        let t = Instant::now();
        let res = http
            .post(format!("{url}/v1/revocations"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"jti": format!("flood-{i}"), "exp": exp}))
            .send()
            .await?;
        if !res.status().is_success() {
            return Err(format!("revocation refused: {}", res.status()).into());
        }
        res.bytes().await?;
        revoke.push(t.elapsed());
    }
    report("GET /healthz", health);
    report("POST /v1/revocations", revoke);
    println!(
        "connections open during the run: {}",
        running
            .counters()
            .open
            .load(std::sync::atomic::Ordering::Relaxed)
    );

    let t = Instant::now();
    running.shutdown();
    running.wait().await?;
    println!(
        "shutdown with {} connections held: {:.2?} (grace {grace:?})",
        2 * count,
        t.elapsed()
    );
    drip.abort();
    drop(held);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
