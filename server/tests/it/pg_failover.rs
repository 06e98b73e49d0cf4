//! Three `revbloom serve` replicas on one PostgreSQL database, writers posting through all of
//! them, the builder SIGKILLed at random moments (and, in the second test, SIGSTOPped):
//! nothing acknowledged is lost, a new builder publishes within 5 s, generations only go up,
//! the seed never changes, and a resumed stale builder cannot publish over its successor.
//!
//! Heavy: run in release, e.g.
//! `cargo test --release -p revbloom-server --test it pg_failover -- --nocapture`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use revbloom::snapshot::{read_verifying_key, SealKey};
use revbloom::{OpenOptions, SnapshotView, Verdict};

use crate::pg_store::write_config;
use crate::support::pg::{shared_keys, PgCluster};
use crate::support::{client, now, temp_dir, TOKEN};

/// One `revbloom serve` process.
pub(crate) struct Replica {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway database and the shared configuration and keys of its replicas.
pub(crate) struct Cluster {
    pub(crate) pg: PgCluster,
    pub(crate) dir: PathBuf,
    config: PathBuf,
    pub(crate) options: OpenOptions,
    spawned: usize,
}

impl Cluster {
    pub(crate) async fn start() -> Cluster {
        let pg = PgCluster::start().await;
        let dir = temp_dir("pg-failover");
        let (seal, signing, public) = shared_keys(&dir);
        let config = write_config(&dir, &seal, &signing);
        // Keep every generation in the database, so the whole history can be checked.
        let mut body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        body["delta_ring"] = serde_json::json!(100_000);
        std::fs::write(&config, body.to_string()).unwrap();
        let options = OpenOptions::new()
            .verifying_key(read_verifying_key(&public).unwrap())
            .seal_key(SealKey::from_file(&seal).unwrap());
        Cluster {
            pg,
            dir,
            config,
            options,
            spawned: 0,
        }
    }

    /// Start a replica; its log goes to `DIR/replica-N.log`.
    pub(crate) fn spawn(&mut self) -> Replica {
        self.spawned += 1;
        let n = self.spawned;
        let data = self.dir.join(format!("data-{n}"));
        let log = std::fs::File::create(self.dir.join(format!("replica-{n}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&self.config)
            .args(["--store", &self.pg.url()])
            .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let Some(url) = line.trim().strip_prefix("revbloom: listening on ") else {
            let _ = child.kill();
            panic!(
                "replica {n} did not start: {line:?}; log in {}",
                self.dir.display()
            );
        };
        Replica {
            url: url.to_owned(),
            child,
        }
    }

    /// (epoch, generation) in the database.
    pub(crate) async fn state(&self, db: &tokio_postgres::Client) -> (i64, i64) {
        let row = db
            .query_one(
                "SELECT epoch, generation FROM revbloom_state WHERE id = 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }
}

pub(crate) async fn healthz(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = http
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// The index of the one replica that reports itself builder, waiting up to `within`.
pub(crate) async fn builder(
    http: &reqwest::Client,
    replicas: &[Replica],
    within: Duration,
) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut builders = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            if let Some(h) = healthz(http, &r.url).await {
                if h["role"] == "builder" {
                    builders.push(i);
                }
            }
        }
        if builders.len() == 1 {
            return builders[0];
        }
        assert!(Instant::now() < deadline, "builders: {builders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Post revocations through every replica in turn until `stop`; acknowledged `jti`s are
/// pushed to `acked`.
async fn writer(
    w: usize,
    urls: Arc<RwLock<Vec<String>>>,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    let mut k = 0u64;
    let exp = now() + 3600;
    while !stop.load(Ordering::Relaxed) {
        let url = {
            let urls = urls.read().unwrap();
            urls[(w + k as usize) % urls.len()].clone()
        };
        let jti = format!("w{w}-{k}");
        k += 1;
        let r = http
            .post(format!("{url}/v1/revocations"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"jti": jti, "exp": exp}))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if matches!(&r, Ok(r) if r.status() == 200) {
            acked.lock().unwrap().push(jti);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Poll every replica's generation; each process's sequence must never go down.
async fn observer(
    urls: Arc<RwLock<Vec<String>>>,
    seen: Arc<Mutex<Vec<(String, u64)>>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    while !stop.load(Ordering::Relaxed) {
        let list = urls.read().unwrap().clone();
        for url in list {
            if let Some(h) = healthz(&http, &url).await {
                if let Some(g) = h["generation"].as_u64() {
                    seen.lock().unwrap().push((url, g));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Every acknowledged jti checks `MaybeRevoked` in the snapshot `url` serves (waiting for
/// the builder to publish them, up to 20 s); returns the snapshot's seed.
async fn filter_holds(http: &reqwest::Client, url: &str, acked: &[String], o: &OpenOptions) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let exp = now() + 3600;
    loop {
        let bytes = http
            .get(format!("{url}/v1/snapshot"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let view = SnapshotView::open_owned(bytes.to_vec(), o).expect("a valid snapshot");
        let missing = acked
            .iter()
            .filter(|j| view.check(j.as_bytes(), Some(exp)) != Verdict::MaybeRevoked)
            .count();
        if missing == 0 {
            return view.hasher().seed();
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged revocations missing from {url}'s filter at generation {}",
            view.generation()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_killed_ten_times_loses_nothing() {
    let mut cluster = Cluster::start().await;
    let db = cluster.pg.client().await;
    let http = client();
    let mut replicas: Vec<Replica> = (0..3).map(|_| cluster.spawn()).collect();
    let urls = Arc::new(RwLock::new(
        replicas.iter().map(|r| r.url.clone()).collect::<Vec<_>>(),
    ));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..3 {
        tasks.push(tokio::spawn(writer(
            w,
            Arc::clone(&urls),
            Arc::clone(&acked),
            Arc::clone(&stop),
        )));
    }
    tasks.push(tokio::spawn(observer(
        Arc::clone(&urls),
        Arc::clone(&seen),
        Arc::clone(&stop),
    )));
    let first_seed = filter_holds(&http, &replicas[0].url, &[], &cluster.options).await;
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ now();
    let mut takeovers = Vec::new();
    for round in 0..10 {
        let b = builder(&http, &replicas, Duration::from_secs(10)).await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(200 + rng % 800)).await;
        let (epoch_before, _) = cluster.state(&db).await;
        replicas[b].child.kill().unwrap(); // SIGKILL
        let killed = Instant::now();
        let _ = replicas[b].child.wait();
        // The successor has published once a generation of a newer epoch is in the database.
        let deadline = killed + Duration::from_secs(10);
        loop {
            let row = db
                .query_one(
                    "SELECT count(*) FROM revbloom_generations WHERE epoch > $1",
                    &[&epoch_before],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no new builder published"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        takeovers.push(killed.elapsed());
        replicas[b] = cluster.spawn();
        urls.write().unwrap()[b] = replicas[b].url.clone();
    }
    // A last stretch of writes with the final builder, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "too few writes landed: {}", acked.len());
    // Durable: each acknowledged revocation is in the store, through every replica.
    for (i, jti) in acked.iter().enumerate() {
        let r = &replicas[i % replicas.len()];
        let found = crate::support::lookup(&http, &r.url, jti).await;
        assert_eq!(found["revoked"], true, "{jti} lost: {found}");
    }
    // Published: each one is in the filter every replica serves, under one seed.
    for r in &replicas {
        let seed = filter_holds(&http, &r.url, &acked, &cluster.options).await;
        assert_eq!(seed, first_seed, "the seed changed");
    }
    // Generations: each replica process's sequence never went down; the database's history
    // is strictly increasing with epochs that never go back.
    let seen = seen.lock().unwrap().clone();
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    for (url, g) in seen {
        let prev = last.insert(url.clone(), g).unwrap_or(0);
        assert!(g >= prev, "{url} went from generation {prev} to {g}");
    }
    let rows = db
        .query(
            "SELECT generation, epoch FROM revbloom_generations ORDER BY generation",
            &[],
        )
        .await
        .unwrap();
    let epochs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    let distinct = {
        let mut e = epochs.clone();
        e.dedup();
        e.len()
    };
    assert!(distinct >= 11, "{distinct} builders published");
    // How many successors continued their predecessor's layout (first generation a delta):
    // under this load a bucket can outgrow its blocks, which takes a full snapshot anyway.
    let continued = db
        .query_one(
            "SELECT count(*) FROM revbloom_generations g WHERE g.delta IS NOT NULL AND \
             g.generation = (SELECT min(generation) FROM revbloom_generations f \
                             WHERE f.epoch = g.epoch) AND \
             g.epoch > (SELECT min(epoch) FROM revbloom_generations)",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    println!("{continued} of {distinct} builders' first generations were deltas (the first builder's never is)");
    takeovers.sort();
    let (p50, p99) = (percentile(&takeovers, 0.5), percentile(&takeovers, 0.99));
    println!(
        "SIGKILL -> new builder published: p50 {p50:?}, p99 {p99:?}, max {:?} over {} rounds; {} acknowledged revocations, none lost",
        takeovers[takeovers.len() - 1],
        takeovers.len(),
        acked.len()
    );
    assert!(p99 < Duration::from_secs(5), "takeover p99 {p99:?}");
    let _ = std::fs::remove_dir_all(&cluster.dir);
}

/// SIGSTOP the builder past its lease; another replica takes over; SIGCONT the old one: it
/// cannot publish over its successor (the database refuses its epoch), and it steps down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_builder_cannot_publish_over_its_successor() {
    let mut cluster = Cluster::start().await;
    let db = cluster.pg.client().await;
    let http = client();
    let replicas: Vec<Replica> = (0..2).map(|_| cluster.spawn()).collect();
    let b = builder(&http, &replicas, Duration::from_secs(10)).await;
    let other = 1 - b;
    let (stale_epoch, _) = cluster.state(&db).await;
    signal("STOP", &replicas[b]);
    let stopped = Instant::now();
    // The successor takes over once the lease ends the stopped builder's session.
    let deadline = stopped + Duration::from_secs(15);
    loop {
        let (epoch, _) = cluster.state(&db).await;
        if epoch > stale_epoch
            && healthz(&http, &replicas[other].url)
                .await
                .map(|h| h["role"] == "builder")
                == Some(true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no successor while the builder is stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("successor elected {:?} after SIGSTOP", stopped.elapsed());
    let (_, successor_first) = cluster.state(&db).await;
    // Give the stale builder work to publish, then wake it.
    post(&http, &replicas[other].url, "while-stopped").await;
    signal("CONT", &replicas[b]);
    // It wakes with pending timers and a revocation to publish; it must step down instead.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = healthz(&http, &replicas[b].url).await;
        if h.as_ref().map(|h| h["role"] == "follower") == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed builder never stepped down: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post(&http, &replicas[b].url, "after-resume").await;
    // Both replicas end up serving the successor's generations with both revocations.
    for r in &replicas {
        filter_holds(
            &http,
            &r.url,
            &["while-stopped".to_owned(), "after-resume".to_owned()],
            &cluster.options,
        )
        .await;
    }
    let stale_after = db
        .query_one(
            "SELECT count(*) FROM revbloom_generations WHERE epoch <= $1 AND generation > $2",
            &[&stale_epoch, &successor_first],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        stale_after, 0,
        "the stale builder published over its successor"
    );
    let log = std::fs::read_to_string(cluster.dir.join(format!("replica-{}.log", b + 1)))
        .unwrap_or_default();
    let stepped_down = log.contains("superseded") || log.contains("standing down");
    assert!(
        stepped_down,
        "no step-down in the stale builder's log:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&cluster.dir);
}

pub(crate) fn signal(sig: &str, r: &Replica) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &r.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn post(http: &reqwest::Client, url: &str, jti: &str) {
    let r = http
        .post(format!("{url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"jti": jti, "exp": now() + 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{jti}");
}
