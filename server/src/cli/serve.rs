//! `revbloom serve`: run the publisher until ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use revbloom_server::config::{resolve_admin_token, TokenSource};
use revbloom_server::{run, ServerConfig};

/// Arguments of `revbloom serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// JSON config file (every key optional; see docs/API.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8750; env REVBLOOM_LISTEN].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data folder for the store and the generated admin token [default: ./revbloom-data;
    /// env REVBLOOM_DATA].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Build the effective configuration: file, then environment, then flags.
pub fn load_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    config.apply_env()?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.data {
        config.data_dir = d.clone();
    }
    config.validate()?;
    Ok(config)
}

/// Run the publisher until ctrl-c or SIGTERM; in-flight revocations finish and are durable
/// before this returns.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = load_config(&args)?;
    let (token, source) = resolve_admin_token(&config)?;
    match source {
        TokenSource::Configured => eprintln!("revbloom: admin token from configuration"),
        TokenSource::File(p) => eprintln!("revbloom: admin token in {}", p.display()),
        TokenSource::Generated(p) => eprintln!(
            "revbloom: generated an admin token; it is in {} (readable by you only)",
            p.display()
        ),
        _ => {}
    }
    let data = config.data_dir.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = run::start(config, token).await?;
        // Scripts and tests read this line to learn the port when listening on port 0.
        println!("revbloom: listening on http://{}", running.local_addr());
        eprintln!("revbloom: data in {}", data.display());
        run::shutdown_signal().await;
        eprintln!("revbloom: shutting down; finishing in-flight requests");
        running.shutdown();
        running.wait().await?;
        anyhow::Ok(())
    })
}
