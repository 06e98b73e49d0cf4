//! `revbloom check-store`: verify a publisher's store while the publisher is stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use revbloom_server::config::{DEFAULT_DATA, ENV_DATA};
use revbloom_server::store::{check_store, StoreError};

/// Arguments of `revbloom check-store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The publisher's data folder [default: ./revbloom-data].
    #[arg(long, value_name = "DIR", env = ENV_DATA)]
    pub data: Option<PathBuf>,
}

/// Check the store; one line on stdout when sound (exit 0), one on stderr when not (exit 1).
pub fn run(args: Args) -> Result<ExitCode> {
    let dir = args.data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
    match check_store(&dir) {
        Ok((revocations, cutoffs)) => {
            let path = dir.join(revbloom_server::store::STORE_FILE);
            super::print(&format!(
                "ok: {} is sound ({revocations} revocations, {cutoffs} cutoffs)\n",
                path.display()
            ))
        }
        Err(e @ StoreError::Damaged { .. }) => {
            eprintln!("damaged: {e}");
            Ok(ExitCode::from(super::EXIT_ERROR))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(super::EXIT_ERROR))
        }
    }
}
