//! A real S3-compatible server for the object-store tests: moto's standalone server
//! (`pip install 'moto[server]'`), started on 127.0.0.1 with a port of its own choosing, with
//! IAM enforced: one bucket, a writer with full S3 access and a reader that may only get and
//! list. `.ci/run` installs it; a machine without it fails these tests with the command to
//! run, never skips them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket the server is set up with.
pub const BUCKET: &str = "revbloom";

/// Where `.ci/run` installs moto; `REVBLOOM_MOTO_SERVER` names another `moto_server`.
fn default_venv() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/revbloom/moto-venv")
}

const INSTALL: &str = "python3 -m venv ~/.cache/revbloom/moto-venv && ~/.cache/revbloom/moto-venv/bin/pip install 'moto[server]'";

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("REVBLOOM_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let p = default_venv().join("bin/moto_server");
    assert!(
        p.exists(),
        "the object-store tests need moto's S3 server and found none at {} (REVBLOOM_MOTO_SERVER unset); install it with: {INSTALL}",
        p.display()
    );
    p
}

/// Creates the bucket and the two IAM users while authentication is still off (exactly
/// `SETUP_ACTIONS` requests), printing their keys as JSON.
const SETUP: &str = r#"
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
s3 = boto3.client("s3", **kw)
iam = boto3.client("iam", **kw)
s3.create_bucket(Bucket=sys.argv[2])
out = {}
for name, actions in [("writer", ["s3:*"]), ("reader", ["s3:GetObject", "s3:ListBucket"])]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    out[name] = [k["AccessKeyId"], k["SecretAccessKey"]]
print(json.dumps(out))
"#;
const SETUP_ACTIONS: u32 = 7;

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Access key id and secret of the user that may write.
    pub writer: (String, String),
    /// Access key id and secret of the user that may only read.
    pub reader: (String, String),
}

impl Moto {
    /// Start the server and set up the bucket and users; panics with the install command if
    /// moto is missing.
    pub fn start() -> Moto {
        let server = moto_server();
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_ACTIONS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install it with: {INSTALL}",
                    server.display()
                )
            });
        // Werkzeug prints the address it bound (port 0: the kernel's choice) on stderr.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(at) = line.find("http://127.0.0.1:") {
                        let addr = line[at..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_owned();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{} did not report its address within 60 s",
                    server.display()
                );
            }
        };
        let python = server.with_file_name("python3");
        let deadline = Instant::now() + Duration::from_secs(60);
        let keys = loop {
            let out = Command::new(&python)
                .args(["-c", SETUP, &endpoint, BUCKET])
                .output()
                .expect("run moto's python for the setup");
            if out.status.success() {
                break out.stdout;
            }
            // The very first requests can race the server's start; the setup is idempotent
            // only until it succeeded once, so retry on connection errors alone.
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if !err.contains("Could not connect") || Instant::now() > deadline {
                let _ = child.kill();
                panic!("setting up moto failed: {err}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let keys: serde_json::Value = serde_json::from_slice(&keys).expect("setup prints JSON");
        let pair = |who: &str| {
            (
                keys[who][0].as_str().unwrap().to_owned(),
                keys[who][1].as_str().unwrap().to_owned(),
            )
        };
        Moto {
            writer: pair("writer"),
            reader: pair("reader"),
            child,
            endpoint,
        }
    }

    /// `object_store` options for the bucket with the given keys.
    pub fn options(&self, (id, secret): &(String, String)) -> Vec<(String, String)> {
        vec![
            ("aws_endpoint".into(), self.endpoint.clone()),
            ("aws_allow_http".into(), "true".into()),
            ("aws_region".into(), "us-east-1".into()),
            ("aws_access_key_id".into(), id.clone()),
            ("aws_secret_access_key".into(), secret.clone()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
