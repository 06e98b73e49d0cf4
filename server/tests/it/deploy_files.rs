//! The shipped example configurations cannot drift from the code: `deploy/revbloom.json` is
//! read by the real loader and equals the defaults except the keys documented here, it holds
//! every key the defaults serialize to, `deploy/revbloom.jsonc` (the commented copy) says the
//! same with a comment on every key, and the defaults printed in docs/API.md are the defaults.
//! `deploy/nginx/revbloom-authz.conf` passes the real `nginx -t` (its addresses substituted;
//! `authz_nginx.rs` runs it end to end). (`scripts/check_deploy.sh` lints the Dockerfile,
//! compose file and systemd unit.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use revbloom_server::ServerConfig;
use serde_json::Value;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// What `deploy/revbloom.json` is expected to hold: the defaults, except where a deployment
/// differs. Each exception says why; a new one belongs here and in `revbloom.jsonc`.
fn expected_example() -> ServerConfig {
    ServerConfig {
        // Where the systemd unit's StateDirectory and the image's volume both are; the
        // default, `revbloom-data`, is relative to the working directory.
        data_dir: PathBuf::from("/var/lib/revbloom"),
        ..ServerConfig::default()
    }
}

/// Every key path of a JSON object, nested objects as `outer.inner`. Arrays and scalars are
/// leaves.
fn key_paths(v: &Value) -> BTreeSet<String> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
        if let Value::Object(map) = v {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                walk(&path, child, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", v, &mut out);
    out
}

/// The keys of the defaults missing from `v`, and the keys of `v` the defaults lack.
fn key_drift(v: &Value) -> (Vec<String>, Vec<String>) {
    let defaults = serde_json::to_value(ServerConfig::default()).unwrap();
    let want = key_paths(&defaults);
    let have = key_paths(v);
    (
        want.difference(&have).cloned().collect(),
        have.difference(&want).cloned().collect(),
    )
}

/// `revbloom.jsonc` without its comments: only whole-line `//` comments are allowed, so the
/// file stays plain JSON once they are dropped.
fn strip_line_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_config_loads_and_is_the_defaults_but_the_documented_keys() {
    let path = repo_file("deploy/revbloom.json");
    let c = ServerConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    c.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c,
        expected_example(),
        "deploy/revbloom.json differs from the defaults in an undocumented key; update it (and \
         revbloom.jsonc), or add the difference to expected_example with its reason"
    );
    // Control: the comparison sees a changed value.
    let mut other = c.clone();
    other.connections.max_connections += 1;
    assert_ne!(other, expected_example());
}

#[test]
fn example_config_holds_every_key_of_the_defaults() {
    let raw: Value = serde_json::from_str(&read("deploy/revbloom.json")).unwrap();
    let (missing, unknown) = key_drift(&raw);
    assert!(
        missing.is_empty(),
        "deploy/revbloom.json and revbloom.jsonc lack these keys of ServerConfig; add them with \
         their defaults: {missing:?}"
    );
    assert!(unknown.is_empty(), "keys ServerConfig lacks: {unknown:?}");
    // Control: the check notices a key taken out of a nested object, and a new top-level one.
    let mut cut = raw.clone();
    cut["window"].as_object_mut().unwrap().remove("fp_rate");
    cut.as_object_mut().unwrap().remove("admin_token");
    cut["tls_cert"] = Value::Null;
    let (missing, unknown) = key_drift(&cut);
    assert_eq!(missing, ["admin_token", "window.fp_rate"]);
    assert_eq!(unknown, ["tls_cert"]);
}

#[test]
fn commented_example_says_the_same_with_a_comment_on_every_key() {
    let text = read("deploy/revbloom.jsonc");
    let plain: Value = serde_json::from_str(&strip_line_comments(&text)).unwrap_or_else(|e| {
        panic!("deploy/revbloom.jsonc is not JSON once its // lines are dropped (comments go on lines of their own): {e}")
    });
    let shipped: Value = serde_json::from_str(&read("deploy/revbloom.json")).unwrap();
    assert_eq!(
        plain, shipped,
        "deploy/revbloom.jsonc and deploy/revbloom.json must hold the same keys and values"
    );
    // The loader takes it too (minus comments), so its values are in range.
    let c: ServerConfig = serde_json::from_value(plain).unwrap();
    c.validate().unwrap();

    let mut previous = "";
    let mut keys = 0;
    for line in text.lines().map(str::trim) {
        if line.starts_with('"') && line.contains("\":") {
            keys += 1;
            assert!(
                previous.starts_with("//"),
                "deploy/revbloom.jsonc: no comment above {line}"
            );
        }
        previous = line;
    }
    let every = key_paths(&serde_json::to_value(ServerConfig::default()).unwrap()).len();
    assert_eq!(keys, every, "one line per key, nested ones included");
}

#[test]
fn api_docs_print_the_defaults() {
    let doc = read("docs/API.md");
    let section = doc
        .split("\n## Configuration")
        .nth(1)
        .expect("docs/API.md has a Configuration section");
    let block = section
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the Configuration section opens with a JSON block");
    let raw: Value = serde_json::from_str(block).unwrap();
    assert_eq!(key_drift(&raw), (vec![], vec![]), "docs/API.md keys");
    let c: ServerConfig = serde_json::from_value(raw).unwrap();
    assert_eq!(c, ServerConfig::default(), "docs/API.md values");
}

/// The deployment as the unit and the image run it: `serve --config deploy/revbloom.json` with
/// `REVBLOOM_LISTEN` and `REVBLOOM_DATA` set, which must win over the file's `listen` and
/// `data_dir` (the image listens on every interface, the unit pins its StateDirectory). The
/// health check's `GET /readyz` turns 200, and an admin command run with `--data` (as
/// `docker compose exec publisher revbloom revoke --data ...` is) finds the generated token.
#[tokio::test]
async fn example_config_serves_under_the_deployments_environment() {
    use crate::support::{client, spawn_serve, temp_dir};
    use std::process::Command;

    let data = temp_dir("deploy-example");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revbloom"));
    cmd.arg("serve")
        .arg("--config")
        .arg(repo_file("deploy/revbloom.json"))
        .env_remove("REVBLOOM_ADMIN_TOKEN")
        .env("REVBLOOM_LISTEN", "127.0.0.1:0")
        .env("REVBLOOM_DATA", &data);
    let (mut child, url) = spawn_serve(&mut cmd);
    assert!(
        !url.ends_with(":8750"),
        "REVBLOOM_LISTEN lost to the file: {url}"
    );

    let http = client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let ready = loop {
        let status = http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(ready, 200, "GET /readyz, the image's health check");
    assert!(
        data.join("admin-token").is_file(),
        "the token is generated into REVBLOOM_DATA, not the file's data_dir"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args([
            "revoke", "--server", &url, "--jti", "deploy-1", "--exp", "+3600",
        ])
        .arg("--data")
        .arg(&data)
        .env_remove("REVBLOOM_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let v = crate::support::lookup_as(&http, &url, "deploy-1", admin.trim()).await;
    assert_eq!(v["revoked"], true, "{v}");
    // Control: without the data folder there is no token, and the admin command says so.
    let out = Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args([
            "revoke", "--server", &url, "--jti", "deploy-2", "--exp", "+3600",
        ])
        .arg("--data")
        .arg(data.join("elsewhere"))
        .env_remove("REVBLOOM_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

/// `deploy/compose.ha.yaml` writes the replicas' configuration from a heredoc in its `init`
/// service: with the secrets substituted, that JSON is a configuration the real loader takes
/// (no unknown key, every range valid) for a shared store publishing to a bucket, and the
/// files it names are the ones `init` generates.
#[test]
fn scale_out_compose_writes_a_valid_replica_config() {
    let compose = read("deploy/compose.ha.yaml");
    let lines: Vec<&str> = compose.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end().ends_with("cat > revbloom.json <<EOF"))
        .expect("the init service writes revbloom.json from a heredoc");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.trim() == "EOF")
            .expect("the heredoc ends");
    let json: String = lines[start + 1..end]
        .join("\n")
        .replace("$$(cat /run/secrets/pg_password)", "pg-secret")
        .replace("$$(cat /run/secrets/minio_password)", "minio-secret")
        .replace("$$(cat admin-token)", "0123456789abcdef0123456789abcdef");
    assert!(!json.contains('$'), "an unsubstituted expansion: {json}");
    let dir = std::env::temp_dir().join(format!("revbloom-compose-ha-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("revbloom.json");
    std::fs::write(&file, &json).unwrap();
    let c = ServerConfig::from_file(&file).unwrap_or_else(|e| panic!("{e}\n{json}"));
    c.validate().unwrap();
    assert!(c.store.as_deref().unwrap().starts_with("postgres://"));
    let to = c.publish_to.as_ref().unwrap();
    assert!(to.url.starts_with("s3://"), "{}", to.url);
    revbloom_server::distribute::Destination::parse_with(&to.url, &to.options).unwrap();
    for generated in ["seal.key", "signing.key", "signing.pub", "admin-token"] {
        assert!(
            compose.contains(&format!("[ -f {generated} ]"))
                || compose.contains(&format!("--public {generated}")),
            "init does not generate {generated}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nginx_example_passes_nginx_t() {
    use crate::authz_nginx::{free_port, nginx_conf, nginx_test};
    let dir = crate::support::temp_dir("nginx-t");
    let conf = nginx_conf(&dir, free_port(), "127.0.0.1:8760", "127.0.0.1:8080");
    nginx_test(&dir, &conf);
    let _ = std::fs::remove_dir_all(&dir);
}
