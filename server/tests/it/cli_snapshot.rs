//! The `revbloom` binary end to end: keygen, build, inspect, check, and its error paths.

use crate::support::{temp_dir, NOW};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_revbloom");

fn tmpdir(name: &str) -> PathBuf {
    temp_dir(&format!("cli-{name}"))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_input(dir: &Path, n: u64) {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"jti\":\"tok-{i}\",\"exp\":{}}}\n",
            NOW + 60 + i % 80_000
        ));
    }
    s.push_str("{\"jti\":\"no-exp\"}\n");
    s.push_str("{\"jti\":\"issued\",\"exp\":1767229200,\"iss\":\"https://idp\"}\n");
    std::fs::write(dir.join("in.jsonl"), s).unwrap();
}

fn build(dir: &Path, extra: &[&str]) -> Output {
    let now = NOW.to_string();
    let mut args = vec![
        "build", "--input", "in.jsonl", "--out", "s.snap", "--now", &now,
    ];
    args.extend_from_slice(extra);
    run(dir, &args)
}

#[test]
fn build_inspect_check_round_trip() {
    let dir = tmpdir("round-trip");
    write_input(&dir, 20_000);
    // A fixed seed: the file, and so whether an absent key is a false positive, is the same
    // in every run.
    let b = build(&dir, &["--seed", "7"]);
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(!dir.join(".s.snap.tmp").exists());

    let i = run(&dir, &["inspect", "s.snap", "--json"]);
    assert!(i.status.success(), "{}", stderr(&i));
    let v: serde_json::Value = serde_json::from_str(&stdout(&i)).unwrap();
    // Without --generation: the build time in milliseconds (here --now), so a rebuild is newer.
    assert_eq!(v["generation"], NOW * 1000);
    // The line without exp is a cutoff on its jti, not a filter entry.
    assert_eq!(v["entries"], 20_001);
    assert_eq!(
        (&v["cutoffs"], &v["cutoff_claims"]),
        (&json!(1), &json!(["jti"]))
    );
    let size = v["size_bytes"].as_u64().unwrap();
    assert_eq!(size, std::fs::metadata(dir.join("s.snap")).unwrap().len());
    let bpe = v["bits_per_entry"].as_f64().unwrap();
    assert!(bpe > 14.0 && bpe < 18.0, "{bpe}");
    assert_eq!(v["signature"], "unsigned");
    let table = run(&dir, &["inspect", "s.snap"]);
    assert!(stdout(&table).contains(&format!("generation     {}", NOW * 1000)));

    let exp = (NOW + 60 + 7).to_string();
    let c = run(&dir, &["check", "s.snap", "--jti", "tok-7", "--exp", &exp]);
    assert_eq!(c.status.code(), Some(3));
    assert_eq!(
        stdout(&c).trim(),
        r#"{"jti":"tok-7","verdict":"maybe_revoked"}"#
    );
    let c = run(&dir, &["check", "s.snap", "--jti", "never", "--exp", &exp]);
    assert_eq!(
        c.status.code(),
        Some(0),
        "with seed 7 this absent key is not a false positive"
    );
    let c = run(
        &dir,
        &["check", "s.snap", "--jti", "issued", "--exp", "1767229200"],
    );
    assert_eq!(c.status.code(), Some(3));

    let queries = format!(
        "{{\"jti\":\"tok-1\",\"exp\":{}}}\n{{\"jti\":\"absent\",\"exp\":{}}}\n{{\"jti\":\"tok-2\",\"exp\":5}}\n{{\"jti\":\"no-exp\"}}\n{{\"jti\":\"no-exp\",\"exp\":{}}}\n{{\"jti\":\"no-exp\",\"exp\":{}}}\n",
        NOW + 61,
        NOW + 61,
        NOW + 61,
        NOW + 20 * 3600
    );
    std::fs::write(dir.join("q.jsonl"), queries).unwrap();
    let c = run(&dir, &["check", "s.snap", "--input", "q.jsonl"]);
    assert!(c.status.success(), "{}", stderr(&c));
    let lines: Vec<serde_json::Value> = stdout(&c)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["jti"].as_str().unwrap(), l["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("tok-1", "maybe_revoked"),
            ("absent", "clear"),
            ("tok-2", "expired"),
            ("no-exp", "maybe_revoked"),
            ("no-exp", "maybe_revoked"),
            ("no-exp", "maybe_revoked")
        ]
    );
}

#[test]
fn signed_build_verifies_and_wrong_key_fails() {
    let dir = tmpdir("signed");
    write_input(&dir, 100);
    let k = run(&dir, &["keygen"]);
    assert!(k.status.success(), "{}", stderr(&k));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("revbloom-signing.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !run(&dir, &["keygen"]).status.success(),
        "keygen must not overwrite"
    );
    let other = run(
        &dir,
        &["keygen", "--private", "o.pem", "--public", "o.pub.pem"],
    );
    assert!(other.status.success());

    assert!(build(&dir, &["--signing-key", "revbloom-signing.pem"])
        .status
        .success());
    let i = run(
        &dir,
        &[
            "inspect",
            "s.snap",
            "--json",
            "--public-key",
            "revbloom-verifying.pem",
        ],
    );
    assert!(i.status.success(), "{}", stderr(&i));
    assert!(stdout(&i).contains(r#""signature":"verified""#));
    let bad = run(&dir, &["inspect", "s.snap", "--public-key", "o.pub.pem"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("signature"), "{}", stderr(&bad));
    // Inspecting shows a signed file without a key as such; checking tokens against it
    // without the key is refused.
    let i = run(&dir, &["inspect", "s.snap"]);
    assert!(i.status.success(), "{}", stderr(&i));
    assert!(
        stdout(&i).contains("signed, not verified"),
        "{}",
        stdout(&i)
    );
    let c = run(&dir, &["check", "s.snap", "--jti", "x"]);
    assert_eq!(c.status.code(), Some(1));
    assert!(stderr(&c).contains("no verifying key"), "{}", stderr(&c));
}

#[test]
fn sealed_build_needs_the_seal_key_to_inspect_or_check() {
    let dir = tmpdir("sealed");
    write_input(&dir, 100);
    let k = run(&dir, &["keygen", "--seal-key", "verifier.key"]);
    assert!(k.status.success(), "{}", stderr(&k));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("verifier.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key = revbloom::snapshot::SealKey::from_file(&dir.join("verifier.key")).unwrap();
    assert!(stderr(&k).contains(&key.key_id().to_string()));
    let b = build(&dir, &["--seal-key", "verifier.key"]);
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(stderr(&b).contains("sealed"), "{}", stderr(&b));
    let bytes = std::fs::read(dir.join("s.snap")).unwrap();
    assert!(revbloom::snapshot::is_sealed(&bytes));

    // Without the key: not "bad magic", but which key it needs.
    let i = run(&dir, &["inspect", "s.snap"]);
    assert_eq!(i.status.code(), Some(1));
    let err = stderr(&i);
    assert!(
        err.contains(&format!("sealed with seal key id {}", key.key_id()))
            && err.contains("--seal-key"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // With it (flag or environment variable).
    let i = run(
        &dir,
        &["inspect", "s.snap", "--json", "--seal-key", "verifier.key"],
    );
    assert!(i.status.success(), "{}", stderr(&i));
    assert!(stdout(&i).contains(r#""sealed":true"#), "{}", stdout(&i));
    let exp = (NOW + 60 + 7).to_string();
    let c = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "s.snap", "--jti", "tok-7", "--exp", &exp])
        .env("REVBLOOM_SEAL_KEY_FILE", "verifier.key")
        .output()
        .unwrap();
    assert_eq!(c.status.code(), Some(3), "{}", stderr(&c));
    // Another key: named as unknown; a flipped byte: refused as altered.
    assert!(run(&dir, &["keygen", "--seal-key", "other.key"])
        .status
        .success());
    let c = run(
        &dir,
        &["check", "s.snap", "--jti", "x", "--seal-key", "other.key"],
    );
    assert_eq!(c.status.code(), Some(1));
    assert!(
        stderr(&c).contains("none of the configured seal keys"),
        "{}",
        stderr(&c)
    );
    let mut t = bytes.clone();
    let at = t.len() / 2;
    t[at] ^= 1;
    std::fs::write(dir.join("t.snap"), t).unwrap();
    let c = run(
        &dir,
        &[
            "check",
            "t.snap",
            "--jti",
            "x",
            "--seal-key",
            "verifier.key",
        ],
    );
    assert_eq!(c.status.code(), Some(1));
    assert!(stderr(&c).contains("altered"), "{}", stderr(&c));
}

#[test]
fn errors_are_one_line_with_nonzero_exit() {
    let dir = tmpdir("errors");
    std::fs::write(
        dir.join("in.jsonl"),
        "{\"jti\":\"a\",\"exp\":1767229200}\n{\"jti\": 5}\n",
    )
    .unwrap();
    let b = build(&dir, &[]);
    assert_eq!(b.status.code(), Some(1));
    let err = stderr(&b);
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!dir.join("s.snap").exists(), "no partial output");

    write_input(&dir, 10);
    assert!(build(&dir, &[]).status.success());
    let mut bytes = std::fs::read(dir.join("s.snap")).unwrap();
    // The last filter byte, before the 16-byte cutoff record of the line without exp, the
    // 16-byte extension section listing `jti` and the 8-byte trailer: only the checksum can
    // notice a flip there.
    let last_bit_byte = bytes.len() - 8 - 16 - 16 - 1;
    bytes[last_bit_byte] ^= 1;
    std::fs::write(dir.join("bad.snap"), bytes).unwrap();
    let c = run(&dir, &["check", "bad.snap", "--jti", "x"]);
    assert_eq!(c.status.code(), Some(1));
    assert!(stderr(&c).contains("checksum"), "{}", stderr(&c));
    assert_eq!(stderr(&c).trim_end().lines().count(), 1);

    let missing = run(&dir, &["inspect", "nope.snap"]);
    assert_eq!(missing.status.code(), Some(1));
    let usage = run(
        &dir,
        &[
            "build",
            "--input",
            "in.jsonl",
            "--out",
            "x",
            "--horizon",
            "5x",
        ],
    );
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn build_refuses_lines_that_cannot_mean_what_they_say() {
    let dir = tmpdir("build-lines");
    let refused = |name: &str, line: String, wanted: &[&str]| {
        std::fs::write(
            dir.join("in.jsonl"),
            format!("{{\"jti\":\"ok\",\"exp\":{}}}\n{line}\n", NOW + 600),
        )
        .unwrap();
        let b = build(&dir, &[]);
        assert_eq!(b.status.code(), Some(1), "{name}: {}", stderr(&b));
        let err = stderr(&b);
        assert!(err.contains("line 2"), "{name}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{name}: {err}");
        }
        assert!(!dir.join("s.snap").exists(), "{name}: no output");
    };
    // A misspelt field would otherwise drop the exp and file the jti under "any exp".
    refused(
        "Exp",
        format!("{{\"jti\":\"a\",\"Exp\":{}}}", NOW + 600),
        &["Exp"],
    );
    refused("null", "{\"jti\":\"a\",\"exp\":null}".into(), &["null"]);
    refused(
        "millis",
        format!("{{\"jti\":\"a\",\"exp\":{}}}", (NOW + 600) * 1000),
        &["exp_too_far", "milliseconds"],
    );
    refused(
        "long jti",
        format!("{{\"jti\":\"{}\",\"exp\":{}}}", "j".repeat(1025), NOW + 600),
        &["1024"],
    );

    // Fractional exp lands where a verifier rounding it looks; a token every verifier already
    // refuses as expired is skipped, not inserted.
    std::fs::write(
        dir.join("in.jsonl"),
        format!(
            "{{\"jti\":\"frac\",\"exp\":{}.6}}\n{{\"jti\":\"late\",\"exp\":{}}}\n{{\"jti\":\"gone\",\"exp\":{}}}\n",
            NOW + 100,
            NOW - 60,
            NOW - 66
        ),
    )
    .unwrap();
    let b = build(&dir, &[]);
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(
        stderr(&b).contains("wrote s.snap: 2 revocations"),
        "{}",
        stderr(&b)
    );
    assert!(
        stderr(&b).contains("1 already expired skipped"),
        "{}",
        stderr(&b)
    );
    let exp = (NOW + 101).to_string();
    let c = run(&dir, &["check", "s.snap", "--jti", "frac", "--exp", &exp]);
    assert_eq!(c.status.code(), Some(3), "{}", stdout(&c));
}

/// `inspect` names what it was given instead of failing on it: a delta is called a delta (not
/// a truncated snapshot), and a FIFO is refused at once instead of blocking for a writer.
#[test]
fn inspect_names_deltas_and_refuses_pipes_without_blocking() {
    let dir = tmpdir("not-a-snapshot");
    let delta =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/v2-small-gen1-to-gen2.delta");
    let out = run(&dir, &["inspect", delta.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("this is a delta from generation 1 to 2"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let fifo = dir.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // With no writer, opening the FIFO for reading would block forever; `run` would hang.
    let out = run(&dir, &["inspect", "pipe"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}
