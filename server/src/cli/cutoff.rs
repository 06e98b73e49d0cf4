//! `revbloom cutoff`: revoke every token of a subject (or session, or other claim) issued
//! before a time, on a running publisher.

use anyhow::bail;
use revbloom::wire::{self, CutoffItem};

use super::revoke::ServerArgs;

/// Arguments of `revbloom cutoff`. One of `--sub` or `--value` is required.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("whose").args(["sub", "value"]).required(true))]
pub struct CutoffArgs {
    /// The subject whose tokens are cut off (shorthand for `--claim sub --value S`).
    #[arg(long, conflicts_with_all = ["claim", "value"])]
    pub sub: Option<String>,
    /// The claim to match, e.g. `sid` for one session.
    #[arg(long, requires = "value")]
    pub claim: Option<String>,
    /// The claim value to match.
    #[arg(long)]
    pub value: Option<String>,
    /// Tokens issued before this time are revoked: unix seconds, `now`, `-DURATION` (`-1h`) or
    /// an RFC 3339 time [default: the server's current second + its max clock skew + 1, so
    /// every token any issuer clock has stamped so far is revoked].
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, value_parser = super::parse_time)]
    pub before: Option<u64>,
    /// The issuer; without it the cutoff applies to tokens of every issuer.
    #[arg(long)]
    pub iss: Option<String>,
    /// Refused: a token on the command line is visible to every local user (`ps`).
    #[arg(long, hide = true, value_name = "VALUE")]
    pub token: Option<String>,
    /// The publisher.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Store the cutoff; prints the publisher's answer once it is durable.
pub fn run(args: CutoffArgs) -> anyhow::Result<()> {
    if args.token.is_some() {
        return Err(super::revoke::refuse_admin_token_on_argv());
    }
    let (claim, value) = match (args.sub, args.claim, args.value) {
        (Some(sub), None, None) => ("sub".to_owned(), sub),
        (None, claim, Some(value)) => (claim.unwrap_or_else(|| "sub".into()), value),
        // clap's argument group and `conflicts_with_all` leave only the two forms above.
        _ => bail!("give --sub S, or --value V with an optional --claim C"),
    };
    let body = CutoffItem {
        value,
        claim: Some(claim),
        before: args.before,
        iss: args.iss,
    };
    args.server.post(wire::CUTOFFS, &body)
}
