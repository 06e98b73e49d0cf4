//! One command-line convention: usage errors exit 2 and name the argument, times and durations
//! read the same everywhere, `host:port` takes names, the admin commands read `REVBLOOM_DATA`,
//! an error is printed once, and logs carry colour codes only on a terminal.
#![cfg(unix)]

use std::process::{Command, Output, Stdio};

use crate::support::*;

/// `revbloom ARGS` with none of the revbloom variables of the test's environment.
fn revbloom(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revbloom"));
    cmd.args(args);
    for v in [
        "REVBLOOM_ADMIN_TOKEN",
        "REVBLOOM_ADMIN_TOKEN_FILE",
        "REVBLOOM_SERVER",
        "REVBLOOM_DATA",
        "REVBLOOM_LISTEN",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().copied()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn usage_errors_exit_2_and_name_the_argument() {
    for (args, names) in [
        (&["cutoff"][..], &["--sub", "--value"][..]),
        (&["check", "x.snap"], &["--jti", "--input"]),
        (&["revoke"], &["--jti"]),
        (
            &["revoke", "--jti", "a", "--exp", "soon"],
            &["--exp", "soon"],
        ),
        (
            &["revoke", "--jti", "a", "--exp", "+1 fortnight"],
            &["--exp"],
        ),
        (
            &["cutoff", "--sub", "a", "--before", "yesterday"],
            &["--before"],
        ),
        (
            &["check", "x.snap", "--jti", "a", "--exp", "later"],
            &["--exp"],
        ),
        (
            &["build", "--input", "-", "--out", "x", "--horizon", "a day"],
            &["--horizon"],
        ),
        (
            &["serve", "--listen", "localhost"],
            &["--listen", "host:port"],
        ),
        (
            &["serve", "--listen", "no-such-host.invalid:80"],
            &["--listen"],
        ),
    ] {
        let out = revbloom(args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for name in names {
            assert!(err.contains(name), "{args:?} does not name {name}: {err}");
        }
    }
    // Control: a well-formed command that fails at run time is an error (1), not a usage error.
    let out = revbloom(&["check", "/no/such/file.snap", "--jti", "a"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn an_error_is_one_line_printed_once() {
    let dir = temp_dir("cli-once");
    let token = dir.join("token");
    std::fs::write(&token, "an-admin-token-0123456789\n").unwrap();
    let token = token.to_str().unwrap();
    // A port just released refuses the connection; `-1h` and an RFC 3339 time parse.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for before in ["-1h", "2026-01-01T00:00:00Z", "now"] {
        let out = revbloom(
            &[
                "cutoff",
                "--sub",
                "a",
                "--before",
                before,
                "--server",
                &closed,
                "--token-file",
                token,
            ],
            &[],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("revbloom: error: cannot reach the publisher"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn admin_commands_read_the_environment() {
    let dir = temp_dir("cli-env-admin");
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    // A name, not an address: `localhost` resolves on every machine the tests run on.
    let (mut child, url) = spawn_serve(
        Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .args(["serve", "--listen", "localhost:0", "--data", data_s])
            .env_remove("REVBLOOM_ADMIN_TOKEN"),
    );
    assert!(
        url.starts_with("http://127.0.0.1:") || url.starts_with("http://[::1]:"),
        "{url}"
    );
    // REVBLOOM_SERVER and REVBLOOM_DATA instead of --server and --data.
    let vars = [("REVBLOOM_SERVER", url.as_str()), ("REVBLOOM_DATA", data_s)];
    let out = revbloom(&["revoke", "--jti", "env-1", "--exp", "+1h"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = revbloom(&["cutoff", "--claim", "sid", "--value", "s-1"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    // REVBLOOM_ADMIN_TOKEN_FILE instead of --token-file: a wrong token is refused.
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "wrong-token-wrong-token\n").unwrap();
    let out = revbloom(
        &["revoke", "--jti", "env-2"],
        &[
            ("REVBLOOM_SERVER", url.as_str()),
            ("REVBLOOM_ADMIN_TOKEN_FILE", wrong.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid_token"), "{}", stderr(&out));
    // Control: without the variables the commands look in ./revbloom-data, which is not there.
    let out = revbloom(&["revoke", "--jti", "env-3"], &[("REVBLOOM_SERVER", &url)]);
    assert_eq!(out.status.code(), Some(1));

    let read = publisher_keys(&data).0.read_token();
    assert_eq!(
        lookup_as(&client(), &url, "env-1", &read).await["revoked"],
        true
    );
    assert_eq!(
        lookup_as(&client(), &url, "env-2", &read).await["revoked"],
        false
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A log written to a pipe or a file carries no ANSI colour codes.
#[test]
fn no_colour_codes_off_a_terminal() {
    use std::io::{BufRead, Read};
    let dir = temp_dir("cli-colour");
    let mut child = Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .env_remove("REVBLOOM_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    // Once it listens it has logged its start (the connection cap, the store opened).
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("revbloom: listening on"), "{line}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
