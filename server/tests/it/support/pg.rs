//! A throwaway PostgreSQL cluster for the shared-store tests: `initdb` into a temp folder and
//! `postgres` on a random loopback port, stopped (and deleted) when dropped.
//!
//! The binaries are found on `PATH`, then under `/usr/lib/postgresql/<version>/bin` (Debian's
//! `postgresql` package); when neither has them the test fails and says what to install.
//! PostgreSQL refuses to run as root: under root the cluster runs as the `postgres` user
//! (Debian's package creates it), else as `nobody`.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running throwaway cluster.
pub struct PgCluster {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
}

/// The directory holding `initdb` and `postgres`, or a panic that says how to get them.
pub fn pg_bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                return dir;
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL binaries (initdb, postgres) not found on PATH nor under \
             /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql); \
             the shared-store tests need a real server"
        ),
    }
}

/// uid and gid of `name` from /etc/passwd.
fn passwd(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// `initdb` a new cluster (user `revbloom`, trust authentication on loopback) and start
    /// it; returns once it accepts queries.
    pub async fn start() -> PgCluster {
        let bin = pg_bin_dir();
        let dir = super::temp_dir("pg");
        let user = if is_root() {
            Some(
                passwd("postgres")
                    .or_else(|| passwd("nobody"))
                    .expect("a user to run postgres as"),
            )
        } else {
            None
        };
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        if let Some((uid, gid)) = user {
            chown(&dir, Some(uid), Some(gid)).unwrap();
            chown(&data, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args(["-U", "revbloom", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb, user);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = PgCluster {
            child: None,
            dir,
            port: free_port(),
            user,
        };
        c.launch().await;
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Start the server process on the cluster's port and wait until it answers.
    async fn launch(&mut self) {
        let mut cmd = Command::new(pg_bin_dir().join("postgres"));
        cmd.arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            // Durability against an OS crash is not what these tests are about.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut cmd, self.user);
        self.child = Some(cmd.spawn().expect("start postgres"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    if client.simple_query("SELECT 1").await.is_ok() {
                        return;
                    }
                }
                Err(_) if Instant::now() < deadline => {}
                Err(e) => panic!("postgres did not start within 30 s: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL of the cluster's `postgres` database as user `revbloom`.
    pub fn url(&self) -> String {
        format!("postgres://revbloom@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh connection (driven by a task of its own).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        tokio::spawn(conn);
        client
    }

    /// Turn TLS on with this certificate chain and key (PEM), by `ALTER SYSTEM` and a reload;
    /// plain connections keep working (the test cluster's `pg_hba.conf` takes both).
    pub async fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let cert = self.dir.join("server.crt");
        let key = self.dir.join("server.key");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        if let Some((uid, gid)) = self.user {
            chown(&cert, Some(uid), Some(gid)).unwrap();
            chown(&key, Some(uid), Some(gid)).unwrap();
        }
        let client = self.client().await;
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            client.simple_query(&sql).await.unwrap();
        }
        // The reload is asynchronous: wait until the server says TLS is on.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let row = client.query_one("SHOW ssl", &[]).await.unwrap();
            if row.get::<_, String>(0) == "on" {
                return;
            }
            assert!(Instant::now() < deadline, "ssl did not turn on");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop the server (fast shutdown: sessions are ended) and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Seal and signing keys in `dir`, shared by every replica of a test:
/// (`seal.key`, `signing.pem`, `signing.pub`).
pub fn shared_keys(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let seal = revbloom::snapshot::SealKey::generate().unwrap();
    let seal_path = dir.join("seal.key");
    std::fs::write(&seal_path, seal.to_file_text()).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let private = dir.join("signing.pem");
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let public = dir.join("signing.pub");
    std::fs::write(
        &public,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    for p in [&seal_path, &private] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (seal_path, private, public)
}
