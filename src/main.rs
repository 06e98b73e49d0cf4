//! The `revbloom` command line.
//!
//! NOTE for the integrator: on branch `pub` this only wires the publisher's subcommands
//! (`serve`, `revoke`, `cutoff`); merge them into snap's dispatcher as three more arms.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// JWT revocation engine: publisher and tools.
#[derive(Debug, Parser)]
#[command(name = "revbloom", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the publisher: durable revocation store, HTTP API, snapshots and deltas.
    Serve(cli::serve::ServeArgs),
    /// Revoke one token (by jti and exp) on a running publisher.
    Revoke(cli::revoke::RevokeArgs),
    /// Revoke every token of a subject or session issued before a time.
    Cutoff(cli::cutoff::CutoffArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => cli::serve::run(a),
        Command::Revoke(a) => cli::revoke::run(a),
        Command::Cutoff(a) => cli::cutoff::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revbloom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
