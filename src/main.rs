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
            // `{:#}` prints the context chain on one line: "opening x: permission denied".
            eprintln!("revbloom: error: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
