//! `revbloom revoke`: revoke one token on a running publisher. Also holds the small admin
//! client `revbloom cutoff` shares.

use revbloom::wire::{self, RevokeItem};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use revbloom_server::config::{
    admin_token_from_env, ADMIN_TOKEN_FILE, DEFAULT_DATA, ENV_ADMIN_TOKEN,
};

/// Where and how to reach the publisher's admin API.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Publisher base URL.
    #[arg(long, env = "REVBLOOM_SERVER", default_value = "http://127.0.0.1:8750")]
    pub server: String,
    /// Admin token [env REVBLOOM_ADMIN_TOKEN; else read from DATA/admin-token].
    #[arg(long)]
    pub token: Option<String>,
    /// Data folder of a local publisher, to read its generated admin token from.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        if let Some(t) = admin_token_from_env() {
            return Ok(t);
        }
        let path = self.data.join(ADMIN_TOKEN_FILE);
        let t = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no admin token: pass --token, set {ENV_ADMIN_TOKEN}, or run next to the server's data folder ({} not readable)",
                path.display()
            )
        })?;
        Ok(t.trim().to_owned())
    }

    /// POST `body` as JSON to `path` with the admin token; print the JSON answer.
    pub fn post(&self, path: &str, body: &impl serde::Serialize) -> anyhow::Result<()> {
        let token = self.token()?;
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (status, text) = runtime.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()?;
            let res = client
                .post(&url)
                .bearer_auth(&token)
                .json(body)
                .send()
                .await
                .with_context(|| format!("cannot reach the publisher at {url}"))?;
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

/// Arguments of `revbloom revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token's `jti`.
    #[arg(long)]
    pub jti: String,
    /// The token's `exp`: unix seconds, or `+SECS` from now.
    #[arg(long)]
    pub exp: String,
    /// The token's issuer; without it the jti is revoked for every issuer.
    #[arg(long)]
    pub iss: Option<String>,
    /// The publisher.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Parse `exp`: absolute unix seconds, or `+SECS` relative to now.
pub fn parse_exp(s: &str) -> anyhow::Result<u64> {
    let bad = || format!("--exp {s:?} must be unix seconds or +SECS");
    match s.strip_prefix('+') {
        Some(rel) => {
            let rel: u64 = rel.parse().with_context(bad)?;
            Ok(super::now().saturating_add(rel))
        }
        None => s.parse().with_context(bad),
    }
}

/// Revoke the token; prints the publisher's answer once the revocation is durable.
pub fn run(args: RevokeArgs) -> anyhow::Result<()> {
    let body = RevokeItem {
        jti: args.jti,
        exp: parse_exp(&args.exp)?.into(),
        iss: args.iss,
    };
    args.server.post(wire::REVOCATIONS, &body)
}
