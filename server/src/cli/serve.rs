//! `revbloom serve`: run the publisher until ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use revbloom_server::config::PublishTo;
use revbloom_server::config::{
    resolve_admin_token, resolve_publisher_keys, KeySource, TokenSource, ENV_DATA, ENV_LISTEN,
    ENV_PUBLISH_TO, ENV_STORE,
};
use revbloom_server::tls::TlsSettings;
use revbloom_server::{run, ServerConfig};

/// The environment `serve` reads besides its flags' `[env: ...]`, shown after its `--help`.
pub const ENV_HELP: &str = "\
Environment:
  REVBLOOM_ADMIN_TOKEN  the admin token (else `admin_token` in the config file, else
                        DATA/admin-token, generated on first start); never a flag, since every
                        local user can read a command line
  RUST_LOG              log filter, e.g. `info` (the default) or `revbloom_server=debug`";

/// Environment variable read by `--tls-cert`.
pub const ENV_TLS_CERT: &str = "REVBLOOM_TLS_CERT";
/// Environment variable read by `--tls-key`.
pub const ENV_TLS_KEY: &str = "REVBLOOM_TLS_KEY";

/// Arguments of `revbloom serve`. `--listen` and `--data` fall back to their environment
/// variables, then to the config file, then to the defaults. The admin token has no flag
/// (see [`revbloom_server::config::admin_token_from_env`]).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// JSON config file (every key optional; see docs/API.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8750, or `listen` in the config file].
    #[arg(long, value_name = "ADDR", env = ENV_LISTEN, value_parser = listen_addr)]
    pub listen: Option<SocketAddr>,
    /// Data folder for the store and the generated admin token [default: ./revbloom-data, or
    /// `data_dir` in the config file].
    #[arg(long, value_name = "DIR", env = ENV_DATA)]
    pub data: Option<PathBuf>,
    /// A shared PostgreSQL store, `postgres://USER@HOST:PORT/DB`, for several publishers
    /// behind one database [default: `store` in the config file, else the embedded store in
    /// the data folder]. Put a password in the environment variable or the config file, not
    /// on the command line.
    #[arg(long, value_name = "URL", env = ENV_STORE, hide_env_values = true)]
    pub store: Option<String>,
    /// Also publish every generation to an object store, for verifiers that sync from
    /// mirrors: `s3://BUCKET/PREFIX`, `gs://…`, `az://…` or `file:///FOLDER`; credentials
    /// from the environment (`AWS_*`, …) [default: `publish_to.url` in the config file].
    #[arg(long, value_name = "URL", env = ENV_PUBLISH_TO, hide_env_values = true)]
    pub publish_to: Option<String>,
    /// Serve HTTPS: PEM file with the certificate (then its intermediates); needs --tls-key.
    /// Reloaded when it changes [default: `tls.cert_file` in the config file].
    #[arg(long, value_name = "FILE", env = ENV_TLS_CERT, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key; needs --tls-cert [default: `tls.key_file`
    /// in the config file].
    #[arg(long, value_name = "FILE", env = ENV_TLS_KEY, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Start a new, empty history when the store of an initialized data folder is missing or
    /// empty (after a lost disk, say). Never discards an existing store.
    #[arg(long)]
    pub init: bool,
}

/// `--listen`'s value: `host:port`, the host a name (`localhost:8750`) or an address. The
/// message names the variable too: clap reports a bad value from the environment under the
/// flag's name, which the user may never have typed.
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    revbloom_server::config::resolve_listen(s)
        .map_err(|e| format!("{e} (from --listen or {ENV_LISTEN})"))
}

/// Build the effective configuration: the file, then `REVBLOOM_ADMIN_TOKEN`, then `--listen`,
/// `--data` and `--tls-cert`/`--tls-key` (each a flag or, failing that, its environment
/// variable, as clap read them).
pub fn load_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    config.apply_env();
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.data {
        config.data_dir = d.clone();
    }
    if let Some(s) = &args.store {
        config.store = Some(s.clone());
    }
    if let Some(url) = &args.publish_to {
        // The flag names the store; the file's other `publish_to` keys still apply.
        config
            .publish_to
            .get_or_insert_with(|| PublishTo::new(url.clone()))
            .url = url.clone();
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        // The flags name the files; the file's other `tls` keys (intervals) still apply.
        let tls = config
            .tls
            .get_or_insert_with(|| TlsSettings::new(cert, key));
        tls.cert_file = cert.clone();
        tls.key_file = key.clone();
    }
    config.validate()?;
    Ok(config)
}

/// Run the publisher until ctrl-c or SIGTERM; in-flight revocations finish and are durable
/// before this returns.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    super::init_logging();
    let mut config = load_config(&args)?;
    if args.init
        && revbloom_server::store::allow_new_history(&config.data_dir)
            .with_context(|| format!("--init: cannot prepare {}", config.data_dir.display()))?
    {
        eprintln!(
            "revbloom: --init: starting a new, empty history in {}",
            config.data_dir.display()
        );
    }
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
    // Before the store opens: a data folder that cannot hold the keys is refused up front.
    let keys = resolve_publisher_keys(&mut config)?;
    let describe = |what: &str, source: &KeySource, give: &str| match source {
        KeySource::Configured(p) => eprintln!("revbloom: {what} from {}", p.display()),
        KeySource::File(p) => eprintln!("revbloom: {what} in {}", p.display()),
        KeySource::Generated(p) => eprintln!(
            "revbloom: generated the {what} in {} (readable by you only); {give}",
            p.display()
        ),
        _ => {}
    };
    describe(
        &format!("seal key (id {})", keys.seal.key_id()),
        &keys.seal_source,
        "give a copy to every verifier",
    );
    describe(
        "signing key",
        &keys.signing_source,
        "give verifiers its public key, signing.pub beside it",
    );
    // "seal": false and "sign": false are warned about by the publisher as it starts.
    let data = config.data_dir.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = run::start(config, token).await?;
        // Scripts and tests read this line to learn the port when listening on port 0.
        println!("revbloom: listening on {}", running.url());
        eprintln!("revbloom: data in {}", data.display());
        run::shutdown_signal().await;
        eprintln!("revbloom: shutting down; finishing in-flight requests");
        running.shutdown();
        running.wait().await?;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cli::{Cli, Command};

    /// Parse `revbloom serve ARGS` as clap would, minus the environment fallbacks: tests run in
    /// parallel in one process, and must neither depend on its environment nor change it.
    /// `server_cli.rs` checks the fallbacks on a child process.
    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let no_env = |a: clap::Arg| a.env(None);
        let cmd = Cli::command().mut_subcommand("serve", |c| {
            c.mut_arg("listen", no_env)
                .mut_arg("data", no_env)
                .mut_arg("tls_cert", no_env)
                .mut_arg("tls_key", no_env)
        });
        let argv = ["revbloom", "serve"].iter().chain(args);
        let cli = Cli::from_arg_matches(&cmd.try_get_matches_from(argv)?)?;
        match cli.command {
            Command::Serve(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn listen_and_data_fall_back_to_their_variables() {
        let cmd = Cli::command();
        let serve = cmd.find_subcommand("serve").unwrap();
        let env = |id: &str| {
            let arg = serve.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_env().map(OsStr::to_owned)
        };
        assert_eq!(env("listen").as_deref(), Some(OsStr::new(ENV_LISTEN)));
        assert_eq!(env("data").as_deref(), Some(OsStr::new(ENV_DATA)));
        assert_eq!(env("config"), None);
        // The token never has a flag, nor a variable clap would echo in `--help`.
        assert!(serve.get_arguments().all(|a| a.get_id() != "token"
            && a.get_env() != Some(OsStr::new(revbloom_server::config::ENV_ADMIN_TOKEN))));
        let help = serve.clone().render_help().to_string();
        assert!(help.contains("[env: REVBLOOM_LISTEN"), "{help}");
        assert!(help.contains("[env: REVBLOOM_DATA"), "{help}");
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revbloom.json");
        std::fs::write(
            &file,
            r#"{"listen": "127.0.0.1:9999", "data_dir": "/from/file"}"#,
        )
        .unwrap();
        let file = file.to_str().unwrap();

        let c = load_config(&serve(&[]).unwrap()).unwrap();
        assert_eq!(c.listen, ServerConfig::default().listen);
        assert_eq!(c.data_dir, ServerConfig::default().data_dir);

        let c = load_config(&serve(&["--config", file]).unwrap()).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));

        let args = serve(&["--config", file, "--listen", "[::1]:7777", "--data", "/d"]).unwrap();
        let c = load_config(&args).unwrap();
        assert_eq!(c.listen, "[::1]:7777".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/d"));
    }

    #[test]
    fn tls_flags_come_in_pairs_and_override_the_files_paths() {
        let e = serve(&["--tls-cert", "c.pem"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--tls-key"), "{e}");
        assert!(serve(&["--tls-key", "k.pem"]).is_err());

        let c = load_config(&serve(&[]).unwrap()).unwrap();
        assert_eq!(c.tls, None);
        let c =
            load_config(&serve(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap()).unwrap();
        assert_eq!(c.tls, Some(TlsSettings::new("c.pem", "k.pem")));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revbloom.json");
        std::fs::write(
            &file,
            r#"{"tls": {"cert_file": "/f/c.pem", "key_file": "/f/k.pem", "reload_interval_ms": 250}}"#,
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let c = load_config(&serve(&["--config", file]).unwrap()).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/f/c.pem"));
        assert_eq!(tls.reload_interval_ms, 250);
        let args = serve(&["--config", file, "--tls-cert", "c", "--tls-key", "k"]).unwrap();
        let tls = load_config(&args).unwrap().tls.unwrap();
        assert_eq!(
            (tls.cert_file, tls.key_file, tls.reload_interval_ms),
            ("c".into(), "k".into(), 250)
        );
        std::fs::write(
            dir.path().join("bad.json"),
            r#"{"tls": {"cert_file": "c", "key_file": "k", "handshake_timeout_ms": 0}}"#,
        )
        .unwrap();
        let bad = dir.path().join("bad.json");
        let e = load_config(&serve(&["--config", bad.to_str().unwrap()]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("tls.handshake_timeout_ms"), "{e}");
        // Without the key, a file's `tls` is refused by serde, naming the field.
        std::fs::write(&bad, r#"{"tls": {"cert_file": "c"}}"#).unwrap();
        let e = load_config(&serve(&["--config", bad.to_str().unwrap()]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
    }

    #[test]
    fn a_bad_address_is_a_usage_error_naming_flag_and_variable() {
        let e = serve(&["--listen", "localhost"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let msg = e.to_string();
        assert!(
            msg.contains("--listen") && msg.contains(ENV_LISTEN),
            "{msg}"
        );
    }
}
