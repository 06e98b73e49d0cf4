//! `revbloom revoke`: revoke one token on a running publisher. Also holds the small admin
//! client `revbloom cutoff` shares.

use revbloom::wire::{self, RevokeItem};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use revbloom::sync::tls::{certificate_error, error_chain, ClientTls};
use revbloom_server::config::{
    admin_token_from_env, ADMIN_TOKEN_FILE, DEFAULT_DATA, ENV_ADMIN_TOKEN,
};

/// Environment variable read by `--ca-file`.
pub const ENV_CA_FILE: &str = "REVBLOOM_CA_FILE";

/// Where and how to reach the publisher's admin API.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Publisher base URL (`http://` or `https://`).
    #[arg(long, env = "REVBLOOM_SERVER", default_value = "http://127.0.0.1:8750")]
    pub server: String,
    /// For an `https://` publisher: trust only the CA certificates in this PEM file [default:
    /// the system's trust store].
    #[arg(long, value_name = "FILE", env = ENV_CA_FILE)]
    pub ca_file: Option<PathBuf>,
    /// File holding the admin token [else env REVBLOOM_ADMIN_TOKEN; else DATA/admin-token].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Refused: a token on the command line is visible to every local user (`ps`).
    #[arg(long, hide = true, value_name = "VALUE")]
    pub token: Option<String>,
    /// Data folder of a local publisher, to read its generated admin token from.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
}

impl ServerArgs {
    /// The admin token: from `--token-file`, else `REVBLOOM_ADMIN_TOKEN`, else the data
    /// folder's token file. Never from argv, which every local user can read.
    fn token(&self) -> anyhow::Result<String> {
        if self.token.is_some() {
            bail!(
                "--token is refused: a command line is visible to every local user (ps); \
                 use --token-file FILE, set {ENV_ADMIN_TOKEN}, or pass --data DIR of the server"
            );
        }
        if let Some(path) = &self.token_file {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --token-file {}", path.display()))?;
            return non_empty(t, path);
        }
        if let Some(t) = admin_token_from_env() {
            return Ok(t);
        }
        let path = self.data.join(ADMIN_TOKEN_FILE);
        let t = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no admin token: pass --token-file FILE, set {ENV_ADMIN_TOKEN}, or run next to the server's data folder ({} not readable)",
                path.display()
            )
        })?;
        non_empty(t, &path)
    }

    /// POST `body` as JSON to `path` with the admin token; print the JSON answer.
    pub fn post(&self, path: &str, body: &impl serde::Serialize) -> anyhow::Result<()> {
        let token = self.token()?;
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let tls = match &self.ca_file {
            Some(path) => ClientTls::ca_file(path),
            None => ClientTls::system_roots(),
        };
        let (status, text) = runtime.block_on(async {
            let client = tls
                .reqwest_builder()
                .context("--ca-file")?
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()?;
            let res = match client
                .post(&url)
                .bearer_auth(&token)
                .json(body)
                .send()
                .await
            {
                Ok(res) => res,
                Err(e) => {
                    let hint = match (certificate_error(&e), &self.ca_file) {
                        (None, _) => "",
                        (Some(_), None) => {
                            "; the publisher's certificate is not trusted: pass --ca-file with \
                             the CA that signed it"
                        }
                        (Some(_), Some(_)) => {
                            "; the publisher's certificate is not trusted: check that --ca-file \
                             holds the CA that signed it and that the URL's host is a name in it"
                        }
                    };
                    // The whole chain: reqwest's own message hides the certificate problem.
                    bail!(
                        "cannot reach the publisher at {url}: {}{hint}",
                        error_chain(&e)
                    );
                }
            };
            let status = res.status();
            anyhow::Ok((status, res.text().await?))
        })?;
        if !status.is_success() {
            bail!("the publisher refused ({status}): {text}");
        }
        println!("{text}");
        Ok(())
    }
}

/// The token read from `path`, without surrounding whitespace; an empty file is an error
/// rather than an empty bearer token the server would refuse with a less helpful message.
fn non_empty(t: String, path: &std::path::Path) -> anyhow::Result<String> {
    let t = t.trim();
    if t.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(t.to_owned())
}

/// Arguments of `revbloom revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token's `jti`.
    #[arg(long)]
    pub jti: String,
    /// The token's `exp`, when known exactly: unix seconds, or `+DURATION` from now (`+3600`,
    /// `+1h`). Without it every token with this `jti` is revoked whatever its `exp`, until the
    /// longest token lifetime has passed.
    #[arg(long)]
    pub exp: Option<String>,
    /// The token's issuer; without it the jti is revoked for every issuer.
    #[arg(long)]
    pub iss: Option<String>,
    /// The publisher.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Parse `exp`: absolute unix seconds, or `+DURATION` relative to now (`+3600`, `+1h`).
pub fn parse_exp(s: &str) -> anyhow::Result<u64> {
    let bad = || format!("--exp {s:?} must be unix seconds or +DURATION (e.g. +3600, +1h)");
    match s.strip_prefix('+') {
        Some(rel) => {
            let rel = revbloom_server::config::parse_duration(rel).with_context(bad)?;
            Ok(super::now().saturating_add(rel.as_secs()))
        }
        None => s.parse().with_context(bad),
    }
}

/// Revoke the token; prints the publisher's answer once the revocation is durable.
pub fn run(args: RevokeArgs) -> anyhow::Result<()> {
    let body = RevokeItem {
        jti: args.jti,
        exp: args
            .exp
            .as_deref()
            .map(parse_exp)
            .transpose()?
            .map(Into::into),
        iss: args.iss,
    };
    args.server.post(wire::REVOCATIONS, &body)
}
