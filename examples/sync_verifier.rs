//! A plain synchronous verifier: no async runtime, no server.
//!
//! With no arguments it runs a self-contained demo: revokes one token id and one subject,
//! writes a snapshot to memory as a publisher would, opens it as a verifier would, and checks
//! a few tokens. With arguments it checks one token against a snapshot file:
//!
//! ```text
//! cargo run --example sync_verifier --features verify
//! cargo run --example sync_verifier --features verify -- SNAPSHOT HS256_SECRET TOKEN
//! ```
//!
//! A publisher's snapshot is sealed and signed: point `REVBLOOM_SEAL_KEY_FILE` at its
//! `DATA/verifier.key` and `REVBLOOM_PUBLIC_KEY_FILE` at its `DATA/signing.pub`.

use std::error::Error;

use jsonwebtoken::{
    encode, get_current_timestamp, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use revbloom::cutoff::{CutoffKey, CutoffSet};
use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
use revbloom::verify::{MemoryExactSource, Verifier};
use revbloom::{Window, WindowConfig};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [path, secret, token] = args.as_slice() {
        return check_file(path, secret, token);
    }
    const USAGE: &str = "usage: sync_verifier [SNAPSHOT HS256_SECRET TOKEN]\n\n\
        Without arguments: a self-contained demo. With them: check TOKEN against SNAPSHOT.\n\
        Environment: REVBLOOM_SEAL_KEY_FILE (a sealed snapshot's key), \
        REVBLOOM_PUBLIC_KEY_FILE (a signed snapshot's public key).";
    if matches!(args.as_slice(), [a] if a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    if !args.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    demo()
}

/// Check one token against a snapshot file. Without an exact source a filter positive is
/// refused (it is almost always a real revocation; 0.1% of clear tokens collide).
fn check_file(path: &str, secret: &str, token: &str) -> Result<(), Box<dyn Error>> {
    // A sealed file needs the publisher's seal key, a signed one its public key.
    let mut options = OpenOptions::new();
    if let Ok(key) = std::env::var("REVBLOOM_SEAL_KEY_FILE") {
        options = options.seal_key(revbloom::snapshot::SealKey::from_file(key.as_ref())?);
    }
    if let Ok(key) = std::env::var("REVBLOOM_PUBLIC_KEY_FILE") {
        options = options.verifying_key(revbloom::snapshot::read_verifying_key(key.as_ref())?);
    }
    let view = SnapshotView::open_owned(std::fs::read(path)?, &options)?;
    println!(
        "snapshot generation {} created at {}",
        view.generation(),
        view.created_at()
    );
    let verifier = Verifier::builder(
        DecodingKey::from_secret(secret.as_bytes()),
        Validation::new(Algorithm::HS256),
    )
    .state(view)
    .staleness(None, Default::default()) // a file on disk: judge its age yourself
    .build()?;
    match verifier.verify::<Value>(token) {
        Ok(v) => println!("accepted ({:?}): {}", v.checked, v.claims),
        Err(e) => println!("refused: {e}"),
    }
    Ok(())
}

fn demo() -> Result<(), Box<dyn Error>> {
    let secret = b"demo-secret";
    let now = get_current_timestamp();
    let exp = now + 900;

    // Publisher side: revoke a token id and cut off every older token of "mallory".
    let mut window = Window::new(WindowConfig::default(), now)?;
    window.insert("stolen-token", Some(exp));
    let mut cutoffs = CutoffSet::new();
    cutoffs.insert(CutoffKey::new(window.hasher(), None, "sub", "mallory"), now);
    window.fit_to_entries(0.5);
    let bytes = snapshot::encode_to_vec(&window, &cutoffs, &SnapshotMeta::first(now), None)?;
    let exact = MemoryExactSource::new();
    exact.revoke(None, "stolen-token", Some(exp));

    // Verifier side.
    let view = SnapshotView::open(bytes, &OpenOptions::new())?;
    let verifier = Verifier::builder(
        DecodingKey::from_secret(secret),
        Validation::new(Algorithm::HS256),
    )
    .state(view)
    .exact_source(exact)
    .build()?;

    let sign = |claims: Value| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
    };
    let tokens = [
        (
            "alice, fresh token",
            json!({"jti": "t1", "sub": "alice", "iat": now, "exp": exp}),
        ),
        (
            "a revoked token id",
            json!({"jti": "stolen-token", "sub": "alice", "iat": now, "exp": exp}),
        ),
        (
            "mallory, before the cutoff",
            json!({"jti": "t2", "sub": "mallory", "iat": now - 60, "exp": exp}),
        ),
        (
            "mallory, logged in again",
            json!({"jti": "t3", "sub": "mallory", "iat": now, "exp": exp}),
        ),
    ];
    for (what, claims) in tokens {
        match verifier.verify::<Value>(&sign(claims)?) {
            Ok(v) => println!("{what:>28}: accepted ({:?})", v.checked),
            Err(e) => println!("{what:>28}: refused: {e}"),
        }
    }
    println!("exact source calls: {}", verifier.stats().exact_calls);
    Ok(())
}
