//! The `revbloom` command line: build, inspect and check snapshot files, make signing keys.
//!
//! Each subcommand lives in `src/cli/<name>.rs`; this file only parses and reports errors as
//! one readable line on stderr, with the exit codes documented in `revbloom --help`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("revbloom: error: {}", one_line(&e));
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

/// The error and its causes on one line: "opening x: permission denied". The library's errors
/// name their cause in their own message (what a log line shows) and also return it as
/// `source()`, so a cause the line already ends with is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
