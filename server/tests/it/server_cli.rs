//! `revbloom serve` with no admin token configured generates one (0600) and `revbloom revoke` /
//! `revbloom cutoff` use it from the data folder; a wrong token fails loudly.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::support::*;
use serde_json::Value;

fn revbloom(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args(args)
        .env_remove("REVBLOOM_ADMIN_TOKEN")
        .env_remove("REVBLOOM_SERVER")
        .output()
        .unwrap()
}

#[tokio::test]
async fn generated_token_and_admin_commands() {
    let dir = temp_dir("cli");
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data", data_s])
        .env_remove("REVBLOOM_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("revbloom: listening on ")
        .unwrap()
        .to_string();

    let token_file = data.join("admin-token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "admin token must be readable by its owner only"
    );

    let out = revbloom(&[
        "revoke", "--jti", "cli-1", "--exp", "+3600", "--server", &url, "--data", data_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accepted"], 1);

    let out = revbloom(&[
        "cutoff", "--sub", "alice", "--server", &url, "--data", data_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = revbloom(&[
        "cutoff", "--claim", "sid", "--value", "s-1", "--server", &url, "--data", data_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = revbloom(&[
        "revoke",
        "--jti",
        "cli-2",
        "--exp",
        "+3600",
        "--server",
        &url,
        "--token",
        "wrong-token-wrong-token",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_token"));
    let out = revbloom(&[
        "revoke", "--jti", "cli-3", "--exp", "soon", "--server", &url, "--data", data_s,
    ]);
    assert!(!out.status.success());

    let v = lookup(&client(), &url, "cli-1").await;
    assert_eq!(v["revoked"], true);
    let v = lookup(&client(), &url, "cli-2").await;
    assert_eq!(v["revoked"], false);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
