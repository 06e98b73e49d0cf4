//! What teams do instead, per request, next to revbloom in the same run.
//!
//! `cargo bench --bench anchors`
//!
//! - `anchors/<present|absent>/redis-SISMEMBER`: a denylist set of 1M `jti`s in a Redis
//!   server on loopback, one `SISMEMBER` round trip per check; `redis-EXISTS` is the other
//!   common shape, one key per revoked `jti` with a TTL until its `exp`. The bench starts its
//!   own `redis-server` (`--save '' --appendonly no`) on a free loopback port and speaks RESP
//!   over a plain `TcpStream` (no client crate: nothing but the round trip is measured). When
//!   `redis-server` is not installed it prints why it skipped and carries on.
//! - `anchors/token-version-row/sqlite-*`: the "token version in the user row" approach: a
//!   `users` table of 1M rows with a unique index on `sub`, one prepared `SELECT` per request
//!   (the token is accepted when its `ver` claim equals the row's). `sqlite-file` is an on-disk
//!   database (WAL) read through SQLite's page cache and the OS page cache, `sqlite-memory`
//!   the best case of an in-memory database.
//! - `anchors/<present|absent>/revbloom` (throughput) and `revbloom-latency` (one lookup at a
//!   time): the same 1M keys at 0.1 %.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: u64 = 1_000_000;
const SET: &[u8] = b"revoked-jtis";

/// A `redis-server` this bench started; killed (by its own handle) when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Result<RedisServer, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                "redis-server not installed (Debian: apt-get install redis-server)".to_string()
            }
            _ => format!("cannot start redis-server: {e}"),
        })?;
    let server = RedisServer { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = Resp::connect(server.port) {
            if matches!(c.call(&[b"PING"]), Ok(Reply::Simple(ref s)) if s == "PONG") {
                return Ok(server);
            }
        }
        if Instant::now() > deadline {
            return Err("redis-server did not answer PING within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

/// The smallest RESP2 client that does the job: requests as arrays of bulk strings, replies
/// of the three kinds the commands used here return.
struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Resp {
    fn connect(port: u16) -> io::Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            out: Vec::with_capacity(256),
            line: Vec::with_capacity(64),
        })
    }

    fn push(&mut self, args: &[&[u8]]) {
        write!(self.out, "*{}\r\n", args.len()).expect("vec write");
        for a in args {
            write!(self.out, "${}\r\n", a.len()).expect("vec write");
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn read(&mut self) -> io::Result<Reply> {
        self.line.clear();
        self.reader.read_until(b'\n', &mut self.line)?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed RESP reply");
        let body = self
            .line
            .strip_suffix(b"\r\n")
            .filter(|b| !b.is_empty())
            .ok_or_else(bad)?;
        let text = std::str::from_utf8(&body[1..]).map_err(|_| bad())?;
        match body[0] {
            b'+' => Ok(Reply::Simple(text.to_string())),
            b'-' => Err(io::Error::other(format!("redis error: {text}"))),
            b':' => text.parse().map(Reply::Int).map_err(|_| bad()),
            b'$' => {
                let len: i64 = text.parse().map_err(|_| bad())?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut data = vec![0u8; len as usize + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len as usize);
                Ok(Reply::Bulk(Some(data)))
            }
            _ => Err(bad()),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.push(args);
        self.flush()?;
        self.read()
    }

    /// `1` or `0` from an integer reply.
    fn call_bool(&mut self, args: &[&[u8]]) -> bool {
        match self.call(args) {
            Ok(Reply::Int(i)) => i == 1,
            other => panic!("redis round trip failed mid-measurement: {other:?}"),
        }
    }
}

/// Load the denylist both ways: one set, and one key with a TTL per revoked `jti`.
fn load_redis(c: &mut Resp) -> io::Result<()> {
    c.call(&[b"FLUSHALL"])?;
    let mut i = 0u64;
    while i < N {
        let end = (i + 10_000).min(N);
        let keys: Vec<[u8; 36]> = (i..end).map(jti).collect();
        let mut sadd: Vec<&[u8]> = vec![b"SADD", SET];
        sadd.extend(keys.iter().map(|k| &k[..]));
        c.push(&sadd);
        let names: Vec<Vec<u8>> = keys.iter().map(|k| [b"rv:", &k[..]].concat()).collect();
        let ttls: Vec<String> = (i..end).map(|j| (exp_of(j) - NOW).to_string()).collect();
        for (name, ttl) in names.iter().zip(&ttls) {
            c.push(&[b"SET", name, b"1", b"EX", ttl.as_bytes()]);
        }
        c.flush()?;
        for _ in 0..=(end - i) {
            c.read()?;
        }
        i = end;
    }
    match c.call(&[b"SCARD", SET])? {
        Reply::Int(n) if n as u64 == N => Ok(()),
        r => Err(io::Error::other(format!("SCARD gave {r:?}, want {N}"))),
    }
}

fn user_table(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, sub TEXT NOT NULL, \
         token_version INTEGER NOT NULL); CREATE UNIQUE INDEX users_sub ON users(sub);",
    )?;
    conn.execute_batch("BEGIN")?;
    {
        let mut ins = conn.prepare("INSERT INTO users (sub, token_version) VALUES (?1, ?2)")?;
        for i in 0..N {
            let sub = jti(i);
            ins.execute((std::str::from_utf8(&sub).expect("ascii"), (i % 7) as i64))?;
        }
    }
    conn.execute_batch("COMMIT")
}

fn bench_anchors(c: &mut Criterion) {
    let window = window(N, 0.001);
    let present = present_queries(N, 31);
    let absent = absent_queries(N, 32);

    let redis = start_redis().and_then(|server| {
        let mut conn = Resp::connect(server.port).map_err(|e| e.to_string())?;
        load_redis(&mut conn).map_err(|e| format!("loading redis failed: {e}"))?;
        Ok((server, conn))
    });
    let mut redis = match redis {
        Ok(r) => Some(r),
        Err(why) => {
            eprintln!("anchors/redis: skipped: {why}");
            None
        }
    };

    for (pa, qs) in [("present", &present), ("absent", &absent)] {
        let mut g = c.benchmark_group(format!("anchors/{pa}"));
        g.throughput(Throughput::Elements(1));
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(20);
        g.bench_function("revbloom", |b| {
            throughput(b, qs, |q| {
                maybe(window.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        g.bench_function("revbloom-latency", |b| {
            latency(b, qs, |q| {
                maybe(window.check(q.jti.as_slice(), Some(q.exp)))
            })
        });
        if let Some((_, conn)) = redis.as_mut() {
            g.bench_function("redis-SISMEMBER", |b| {
                throughput(b, qs, |q| conn.call_bool(&[b"SISMEMBER", SET, &q.jti]))
            });
            g.bench_function("redis-EXISTS", |b| {
                let mut name = *b"rv:000000000000000000000000000000000000";
                throughput(b, qs, |q| {
                    name[3..].copy_from_slice(&q.jti);
                    conn.call_bool(&[b"EXISTS", &name])
                })
            });
        }
        g.finish();
    }
    drop(redis);

    let path = std::env::temp_dir().join(format!("revbloom-bench-{}.sqlite", std::process::id()));
    let file = rusqlite::Connection::open(&path).and_then(|c| {
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        user_table(&c)?;
        Ok(c)
    });
    let memory = rusqlite::Connection::open_in_memory().and_then(|c| {
        user_table(&c)?;
        Ok(c)
    });
    let mut g = c.benchmark_group("anchors/token-version-row");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    for (name, conn) in [("sqlite-file", &file), ("sqlite-memory", &memory)] {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("anchors/{name}: skipped: {e}");
                continue;
            }
        };
        let mut stmt = conn
            .prepare("SELECT token_version FROM users WHERE sub = ?1")
            .expect("statement prepares");
        g.bench_function(name, |b| {
            throughput(b, &present, |q| {
                let sub = std::str::from_utf8(&q.jti).expect("ascii");
                let ver: i64 = stmt
                    .query_row([sub], |r| r.get(0))
                    .expect("every user has a row");
                // The token carries `ver`; accept when it equals the row's.
                ver == 3
            })
        });
    }
    g.finish();
    drop(file);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(20_000);
    targets = bench_anchors
}
criterion_main!(benches);
