//! `revbloom revoke`: revoke one token on a running publisher. Also holds the small admin
//! client `revbloom cutoff` shares.

use revbloom::wire::{self, RevokeItem};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use revbloom::sync::tls::{certificate_error, error_chain, ClientTls};
use revbloom_server::config::{
    admin_token_from_env, ADMIN_TOKEN_FILE, DEFAULT_DATA, ENV_ADMIN_TOKEN, ENV_DATA,
};

/// Environment variable read by `--ca-file`.
pub const ENV_CA_FILE: &str = "REVBLOOM_CA_FILE";
/// Environment variable read by `--token-file`.
pub const ENV_ADMIN_TOKEN_FILE: &str = "REVBLOOM_ADMIN_TOKEN_FILE";

/// The environment the admin commands read besides their flags' `[env: ...]`, shown after
/// their `--help`.
pub const ADMIN_ENV_HELP: &str = "\
Environment:
  REVBLOOM_ADMIN_TOKEN  the admin token itself (read when --token-file is not given; a token
                        is never taken from the command line, which every local user can read)";

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
    /// File holding the admin token [default: the token in $REVBLOOM_ADMIN_TOKEN, else
    /// DATA/admin-token].
    #[arg(long, value_name = "FILE", env = ENV_ADMIN_TOKEN_FILE)]
    pub token_file: Option<PathBuf>,
    /// Data folder of a local publisher, to read its generated admin token from.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA, env = ENV_DATA)]
    pub data: PathBuf,
}

impl ServerArgs {
    /// The admin token: from `--token-file`, else `REVBLOOM_ADMIN_TOKEN`, else the data
    /// folder's token file. Never from argv, which every local user can read.
    fn token(&self) -> anyhow::Result<String> {
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

/// The refusal of an admin token given on the command line (`cutoff --token`).
pub fn refuse_admin_token_on_argv() -> anyhow::Error {
    anyhow::anyhow!(
        "--token is refused: a command line is visible to every local user (ps); use \
         --token-file FILE, set {ENV_ADMIN_TOKEN}, or pass --data DIR of the server"
    )
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
    #[arg(long, required_unless_present = "token")]
    pub jti: Option<String>,
    /// The token's `exp`, when known exactly: unix seconds, `+DURATION` from now (`+1h`) or
    /// an RFC 3339 time. Without it every token with this `jti` is revoked whatever its `exp`,
    /// until the longest token lifetime has passed.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, value_parser = super::parse_time)]
    pub exp: Option<u64>,
    /// The token's issuer; without it the jti is revoked for every issuer.
    #[arg(long)]
    pub iss: Option<String>,
    /// Revoke this token (a JWT): its `jti`, `exp` and `iss` are read from its payload. `-`
    /// reads it from stdin and `@FILE` from FILE, which keeps it out of `ps`. The signature is
    /// NOT checked: revoking needs the admin token already, and a forged token only revokes
    /// the jti it names. (The admin token itself is never taken from the command line.)
    #[arg(
        long,
        alias = "jwt",
        value_name = "JWT|-|@FILE",
        allow_hyphen_values = true
    )]
    pub token: Option<String>,
    /// The publisher.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The revocation a JWT asks for: `jti`, `exp` and `iss` from its payload (the second
/// base64url part), signature unchecked. The error says what is wrong in one line.
pub fn item_from_jwt(token: &str) -> Result<RevokeItem, String> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    match parts.len() {
        3 => {}
        5 => {
            return Err(
                "this is an encrypted token (JWE): its claims cannot be read; pass --jti and --exp"
                    .into(),
            )
        }
        n => {
            return Err(format!(
                "not a JWT: {n} dot-separated parts, expected 3 (header.payload.signature)"
            ))
        }
    }
    let bytes = base64url_decode(parts[1]).ok_or("the payload is not base64url")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let claims = claims
        .as_object()
        .ok_or("the payload is not a JSON object")?;
    let jti = match claims.get("jti") {
        Some(serde_json::Value::String(j)) if !j.is_empty() => j.clone(),
        Some(_) => return Err("its jti claim is not a non-empty string".into()),
        None => return Err("the token has no jti claim: revoke its subject or session with `revbloom cutoff` instead".into()),
    };
    let exp = match claims.get("exp") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(n.clone()),
        Some(_) => return Err("its exp claim is not a number".into()),
    };
    let iss = match claims.get("iss") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(i)) => Some(i.clone()),
        Some(_) => return Err("its iss claim is not a string".into()),
    };
    Ok(RevokeItem { jti, exp, iss })
}

/// Decode unpadded (or padded) base64url; `None` on any other character.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // One leftover character (6 bits) cannot end a base64 string.
    (bits < 6).then_some(out)
}

/// The token `--token` names: the value itself, stdin for `-`, or the contents of FILE for
/// `@FILE`.
fn read_jwt(arg: &str, stdin: impl std::io::Read) -> Result<String, String> {
    let text = match arg {
        "-" => {
            let mut t = String::new();
            // A JWT is a few KiB; more than 1 MiB on stdin is not one.
            std::io::Read::read_to_string(&mut std::io::Read::take(stdin, 1 << 20), &mut t)
                .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
            t
        }
        _ => match arg.strip_prefix('@') {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
            }
            None => arg.to_owned(),
        },
    };
    let t = text.trim().to_owned();
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(t)
}

/// The item `--token ARG` asks to revoke, or the one-line reason it cannot.
fn item_from_arg(arg: &str, stdin: impl std::io::Read) -> Result<RevokeItem, String> {
    let token = read_jwt(arg, stdin)?;
    item_from_jwt(&token).map_err(|e| {
        if token.contains('.') {
            e
        } else {
            // Not even dotted: most likely the admin token, given where it does not belong.
            format!(
                "{e}. --token takes the JWT to revoke; the admin token is never taken from \
                 the command line: use --token-file FILE, set {ENV_ADMIN_TOKEN}, or pass --data DIR"
            )
        }
    })
}

/// Revoke the token; prints the publisher's answer once the revocation is durable. A bad
/// `--token` is a usage error (one line, exit status 2).
pub fn run(args: RevokeArgs) -> anyhow::Result<()> {
    let body = match (&args.token, args.jti) {
        (Some(_), Some(_)) => {
            bail!(
                "give --jti or --token (the JWT to revoke), not both; the admin token is never \
                 taken from the command line: use --token-file FILE, set {ENV_ADMIN_TOKEN}, or \
                 pass --data DIR of the server"
            )
        }
        (Some(arg), None) => {
            if args.exp.is_some() || args.iss.is_some() {
                bail!("--exp and --iss are read from the token given with --token; omit them");
            }
            match item_from_arg(arg, std::io::stdin().lock()) {
                Ok(item) => item,
                Err(e) => clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    format!("--token: {e}\n"),
                )
                .exit(),
            }
        }
        (None, Some(jti)) => RevokeItem {
            jti,
            exp: args.exp.map(Into::into),
            iss: args.iss,
        },
        // clap's `required_unless_present` makes one of them present.
        (None, None) => bail!("give --jti or --token"),
    };
    args.server.post(wire::REVOCATIONS, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        // Base64url without padding, as JWTs carry it (the test's own tiny encoder).
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = payload.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        format!("eyJhbGciOiJIUzI1NiJ9.{out}.c2ln")
    }

    #[test]
    fn claims_come_from_the_payload() {
        let item = item_from_jwt(&jwt(
            r#"{"jti":"a-b","exp":1767229200,"iss":"https://idp","sub":"u"}"#,
        ))
        .unwrap();
        assert_eq!(item.jti, "a-b");
        assert_eq!(
            item.exp.map(|n| n.to_string()).as_deref(),
            Some("1767229200")
        );
        assert_eq!(item.iss.as_deref(), Some("https://idp"));
        // Every payload length modulo 3 decodes, and a token without exp or iss revokes the
        // jti whatever its exp, for every issuer.
        for jti in ["x", "xy", "xyz"] {
            let item = item_from_jwt(&jwt(&format!(r#"{{"jti":"{jti}"}}"#))).unwrap();
            assert_eq!((item.jti.as_str(), item.exp, item.iss), (jti, None, None));
        }
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        for (token, reason) in [
            ("abc".to_owned(), "not a JWT"),
            ("a.b.c.d.e".to_owned(), "encrypted"),
            ("a.!!!.c".to_owned(), "not base64url"),
            (jwt("[1]"), "not a JSON object"),
            (jwt(r#"{"sub":"u"}"#), "no jti"),
            (
                jwt(r#"{"jti":"j","exp":"soon"}"#),
                "exp claim is not a number",
            ),
        ] {
            let e = item_from_jwt(&token).unwrap_err();
            assert!(e.contains(reason), "{token}: {e}");
        }
    }

    #[test]
    fn the_token_comes_from_the_argument_stdin_or_a_file() {
        let t = jwt(r#"{"jti":"j1","exp":1767229200,"iss":"https://idp"}"#);
        assert_eq!(item_from_arg(&t, &b""[..]).unwrap().jti, "j1");
        let piped = format!("{t}\n");
        assert_eq!(item_from_arg("-", piped.as_bytes()).unwrap().jti, "j1");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, &piped).unwrap();
        let at = format!("@{}", f.display());
        assert_eq!(item_from_arg(&at, &b""[..]).unwrap().jti, "j1");
        assert!(item_from_arg("-", &b"  \n"[..])
            .unwrap_err()
            .contains("empty"));
        // An admin token where the JWT belongs is refused with the right pointers.
        let e = item_from_arg("0123456789abcdef0123456789abcdef", &b""[..]).unwrap_err();
        assert!(
            e.contains("--token-file") && e.contains("REVBLOOM_ADMIN_TOKEN"),
            "{e}"
        );
    }
}
