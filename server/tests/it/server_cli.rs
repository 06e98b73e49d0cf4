//! `revbloom serve` with no admin token configured generates one (0600) and `revbloom revoke` /
//! `revbloom cutoff` use it from the data folder; a wrong token fails loudly.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

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
    let (mut child, url) = spawn_serve(
        Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data", data_s])
            .env_remove("REVBLOOM_ADMIN_TOKEN"),
    );

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

    let wrong = dir.join("wrong-token");
    std::fs::write(&wrong, "wrong-token-wrong-token\n").unwrap();
    let out = revbloom(&[
        "revoke",
        "--jti",
        "cli-2",
        "--exp",
        "+3600",
        "--server",
        &url,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_token"));
    let out = revbloom(&[
        "revoke", "--jti", "cli-3", "--exp", "soon", "--server", &url, "--data", data_s,
    ]);
    assert!(!out.status.success());

    // A verifier asks with the read token derived from the generated DATA/verifier.key.
    let read = publisher_keys(&data).0.read_token();
    let v = lookup_as(&client(), &url, "cli-1", &read).await;
    assert_eq!(v["revoked"], true);
    let v = lookup_as(&client(), &url, "cli-2", &read).await;
    assert_eq!(v["revoked"], false);
    #[cfg(unix)]
    for (f, want) in [
        ("verifier.key", 0o600),
        ("signing.key", 0o600),
        ("signing.pub", 0o644),
    ] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, want, "{f}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `revbloom serve ARGS` with only `vars` of the revbloom variables set; its base URL.
fn serve(args: &[&str], vars: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revbloom"));
    cmd.arg("serve").args(args);
    for v in ["REVBLOOM_ADMIN_TOKEN", "REVBLOOM_LISTEN", "REVBLOOM_DATA"] {
        cmd.env_remove(v);
    }
    spawn_serve(cmd.envs(vars.iter().copied()))
}

/// Precedence of `serve`'s settings: a flag beats its environment variable, which beats the
/// config file. The file names port 1 so a setting that lost would show in the URL.
#[tokio::test]
async fn serve_settings_flag_then_env_then_file() {
    let dir = temp_dir("cli-env");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let file = path("revbloom.json");
    let config = serde_json::json!({
        "listen": "127.0.0.1:1",
        "data_dir": path("file-data"),
        "admin_token": "file-admin-token-0123456789",
    });
    std::fs::write(&file, config.to_string()).unwrap();

    // Environment over file, for the address, the folder and the token.
    let env_data = path("env-data");
    let vars = [
        ("REVBLOOM_LISTEN", "127.0.0.1:0"),
        ("REVBLOOM_DATA", env_data.as_str()),
        ("REVBLOOM_ADMIN_TOKEN", TOKEN),
    ];
    let (mut child, url) = serve(&["--config", &file], &vars);
    assert!(!url.ends_with(":1"), "{url}");
    let res = client()
        .post(format!("{url}/v1/revocations"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"jti": "env-1", "exp": now() + 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the environment's token was not the one in use"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(std::path::Path::new(&env_data).is_dir());
    assert!(!dir.join("file-data").exists());

    // Flags over environment.
    let vars = [
        ("REVBLOOM_LISTEN", "127.0.0.1:1"),
        ("REVBLOOM_DATA", env_data.as_str()),
        ("REVBLOOM_ADMIN_TOKEN", TOKEN),
    ];
    let flag_data = path("flag-data");
    let args = [
        "--config",
        &file,
        "--listen",
        "127.0.0.1:0",
        "--data",
        &flag_data,
    ];
    let (mut child, url) = serve(&args, &vars);
    assert!(!url.ends_with(":1"), "{url}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(std::path::Path::new(&flag_data).is_dir());

    // A bad address from the environment is a usage error that names the variable.
    let out = Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args(["serve", "--data", &flag_data])
        .env("REVBLOOM_LISTEN", "localhost")
        .env_remove("REVBLOOM_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("REVBLOOM_LISTEN"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--publish-to` (and `REVBLOOM_PUBLISH_TO`, and the file's `publish_to`): the flag beats the
/// variable, which beats the file; the bucket gets a manifest; a destination that cannot be
/// used stops `serve` with exit 1 and one line that names it and says why.
#[tokio::test]
async fn serve_publish_to_flag_env_file_and_bad_destinations() {
    let dir = temp_dir("cli-publish-to");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let file = path("revbloom.json");
    let config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "admin_token": TOKEN,
        "publish_to": {"url": format!("file://{}", path("file-bucket")), "manifest_max_age_secs": 2},
    });
    std::fs::write(&file, config.to_string()).unwrap();
    let data = path("data");
    let env_bucket = format!("file://{}", path("env-bucket"));
    let flag_bucket = format!("file://{}", path("flag-bucket"));
    let manifest = |bucket: &str| dir.join(bucket).join("manifest.rbm");
    let wait_for = |p: std::path::PathBuf| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !p.is_file() {
            assert!(std::time::Instant::now() < deadline, "no {}", p.display());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    for (args, vars, bucket) in [
        (vec![], vec![], "file-bucket"),
        (
            vec![],
            vec![("REVBLOOM_PUBLISH_TO", env_bucket.as_str())],
            "env-bucket",
        ),
        (
            vec!["--publish-to", flag_bucket.as_str()],
            vec![("REVBLOOM_PUBLISH_TO", env_bucket.as_str())],
            "flag-bucket",
        ),
    ] {
        let _ = std::fs::remove_dir_all(dir.join("env-bucket"));
        let mut all = vec!["--config", file.as_str(), "--data", data.as_str()];
        all.extend(args);
        let (mut child, _url) = serve(&all, &vars);
        wait_for(manifest(bucket));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    for (url, needle) in [
        ("ftp://example.com/x", "unsupported scheme"),
        ("file://relative/folder", "absolute"),
        ("/proc/revbloom-bucket", "not a URL"),
        ("file:///proc/revbloom-bucket", "/proc/revbloom-bucket"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .args(["serve", "--data", &data, "--listen", "127.0.0.1:0"])
            .args(["--publish-to", url])
            .env("REVBLOOM_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains(needle), "{url}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
