//! `revbloom --help` and every `revbloom COMMAND --help` succeed, and the completion scripts and
//! man pages cover every subcommand. The list of subcommands is read from `revbloom --help`, so
//! a new subcommand is covered without touching this file.

use std::process::{Command, Output};

fn revbloom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_revbloom"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = revbloom(args);
    assert!(
        out.status.success(),
        "revbloom {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `revbloom --help` lists under `Commands:`, without clap's `help`.
fn subcommands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let names: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists Commands:")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    // Control against a parser that finds nothing: the ones every build has.
    for known in ["build", "serve", "check-store", "completions", "man"] {
        assert!(names.iter().any(|n| n == known), "{known} in {names:?}");
    }
    names
}

#[test]
fn help_of_every_subcommand_succeeds() {
    for cmd in subcommands() {
        let help = stdout_of(&[&cmd, "--help"]);
        assert!(help.contains("Usage: revbloom "), "{cmd}: {help}");
    }
    // Control: an unknown subcommand is a usage error (2), not a success.
    let out = revbloom(&["no-such-command", "--help"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn completion_scripts_name_every_subcommand() {
    let commands = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for cmd in &commands {
            assert!(
                script.contains(cmd.as_str()),
                "{shell} completion lacks {cmd}"
            );
        }
    }
    // The flags of a subcommand are completed too.
    assert!(stdout_of(&["completions", "bash"]).contains("--listen"));
    let out = revbloom(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unsupported shell is a usage error"
    );
}

#[test]
fn man_pages_cover_every_subcommand() {
    let commands = subcommands();
    let top = stdout_of(&["man"]);
    assert!(
        top.starts_with(".ie") || top.contains(".TH revbloom"),
        "{top}"
    );
    for cmd in &commands {
        // clap_mangen escapes `-` as `\-` in roff.
        let roff_name = cmd.replace('-', "\\-");
        assert!(
            top.contains(&format!("revbloom\\-{roff_name}(1)")),
            "revbloom(1) does not list {cmd}"
        );
        let page = stdout_of(&["man", cmd]);
        assert!(
            page.contains(&format!(".TH revbloom-{cmd} 1  \"revbloom ")),
            "revbloom man {cmd}: {}",
            page.lines().take(3).collect::<Vec<_>>().join("\n")
        );
    }
    let serve = stdout_of(&["man", "serve"]);
    assert!(
        serve.contains("REVBLOOM_LISTEN"),
        "the page shows the env fallbacks"
    );

    let out = revbloom(&["man", "no-such-command"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no subcommand `no-such-command`") && err.contains("serve"),
        "{err}"
    );

    // --out-dir writes one file per page and prints their paths.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let listed = stdout_of(&["man", "--out-dir", out_dir.to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut want: Vec<String> = commands
        .iter()
        .map(|c| format!("revbloom-{c}.1"))
        .chain(["revbloom.1".to_string()])
        .collect();
    want.sort();
    assert_eq!(files, want);
    assert_eq!(listed.lines().count(), want.len(), "{listed}");
}
