//! Descriptor exhaustion on the real binary: a `revbloom serve` started with a low
//! `RLIMIT_NOFILE` clamps its connection cap below it and is flooded past it. A connection
//! opened before the flood must keep being served, idle flood connections are shed to make
//! room, the log must not fill with accept errors (an EMFILE is backed off), and once the
//! flood closes the publisher must accept and answer new connections again.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{temp_dir, TOKEN};

/// The descriptor limit of the publisher under test: its runtime, store and listener need
/// about a dozen, so a few dozen connections exhaust it.
const NOFILE: u64 = 48;
/// Flood connections: well past the limit.
const FLOOD: usize = 150;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `revbloom serve` with `RLIMIT_NOFILE` = [`NOFILE`] and its log (stderr, `RUST_LOG=warn`)
/// written to `log`.
fn spawn_limited(data: &std::path::Path, log: &std::path::Path) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revbloom"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(Stdio::piped());
    // SAFETY: only setrlimit, async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    match line.trim().strip_prefix("revbloom: listening on ") {
        Some(url) => Server {
            url: url.to_owned(),
            child,
        },
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("revbloom serve did not start: {line:?}");
        }
    }
}

/// One `GET path` on an open keep-alive connection: the status, or `None` if the connection
/// fails or answers nothing within `within`.
fn get_on(s: &mut TcpStream, path: &str, within: Duration) -> Option<u16> {
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text.split(' ').nth(1)?.parse().ok();
            }
        }
    }
}

fn count(log: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.lines().filter(|l| l.contains(needle)).count())
        .unwrap_or(0)
}

#[test]
fn out_of_descriptors_backs_off_keeps_serving_and_recovers() {
    let dir = temp_dir("backoff");
    let log = dir.join("serve.log");
    let server = spawn_limited(&dir.join("data"), &log);
    let addr: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();

    // A client connected before the flood.
    let mut kept = TcpStream::connect(addr).unwrap();
    assert_eq!(
        get_on(&mut kept, "/healthz", Duration::from_secs(5)),
        Some(200)
    );

    // The flood: connections the kernel completes (backlog) but the server cannot accept
    // once its descriptors run out.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(addr).unwrap());
    }
    let t0 = Instant::now();
    // The cap is clamped below the descriptor limit, so the flood meets the cap (and idle
    // connections are shed to make room) rather than EMFILE; any EMFILE left is backed off.
    assert_eq!(
        count(&log, "connection cap clamped"),
        1,
        "the clamp to RLIMIT_NOFILE {NOFILE} was not logged"
    );
    // Out of descriptors, the connection already open is still served, repeatedly. (Its idle
    // timer is 10 s; each request restarts it.)
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            get_on(&mut kept, "/healthz", Duration::from_secs(5)),
            Some(200),
            "the kept-alive connection stopped being served while accept failed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The backoff: one error line per 500 ms pause at most, not a line per retry. A spinning
    // accept loop would log thousands of lines per second.
    let lines = count(&log, "accept failed");
    let allowed = (t0.elapsed().as_secs_f64() / 0.5).ceil() as usize + 2;
    assert!(
        lines <= allowed,
        "{lines} accept-error lines in {:?}: no backoff",
        t0.elapsed()
    );

    // The flood leaves: the server accepts the backlog (each reads EOF and closes) and new
    // clients again.
    drop(flood);
    let t1 = Instant::now();
    let fresh = loop {
        let attempt = TcpStream::connect(addr)
            .ok()
            .and_then(|mut s| get_on(&mut s, "/healthz", Duration::from_secs(2)));
        if attempt == Some(200) {
            break t1.elapsed();
        }
        assert!(
            t1.elapsed() < Duration::from_secs(15),
            "no new connection served after the flood closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("new connections served again {fresh:?} after the flood closed");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let errors = value("revbloom_accept_errors_total");
    assert_eq!(
        value("revbloom_connections_max"),
        NOFILE - NOFILE / 4,
        "{metrics}"
    );
    let shed = value("revbloom_connections_shed_total");
    assert!(
        shed >= 1,
        "no idle connection shed for the flood: {metrics}"
    );
    // Every EMFILE either sheds idle connections before its retry, or pauses 500 ms.
    assert!(
        errors <= allowed as u64 + 4 + shed,
        "{errors} accept errors counted, {shed} connections shed"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
