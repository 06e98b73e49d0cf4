//! Issue 9: one black-box regression test per case of the audit that found revoked tokens
//! accepted ("What must be true when done", item 1). Each test drives the real pieces: an
//! in-process publisher (`revbloom_server::run::start`) revoked through its admin API over
//! HTTP, the real sync client into a `SnapshotHandle`, and the real `Verifier` behind the tower
//! `BearerLayer` (built like `examples/gateway.rs`), with HS256 tokens signed here. After the
//! revocation, each test waits (bounded) until the gateway holds a generation that contains it,
//! then asserts the token is refused (401 or 503, never 200) and that a control token is
//! handled as `/work/spec-issue9.md` says.
//!
//! Names the issue-9 design introduces are used only in `audit_support/spec.rs`.
//!
//! Time-dependent cases use windows of a few seconds, the verifier's pinned clock, or the
//! publisher's store driven at a pinned time; none sleeps for a length that decides the outcome.
// `revbloom build` (case 6) is the binary, which needs the `cli` feature (server + tower).

use std::sync::Arc;
use std::time::Duration;

use crate::support::audit::spec;
use crate::support::audit::*;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use revbloom::verify::{AsyncExactSource, ExactQuery, HttpExactSource};
use revbloom::{OpenOptions, SnapshotHandle, StalenessPolicy};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Case 1: cutoffs pruned while longer-lived tokens are still valid.
// ---------------------------------------------------------------------------------------------

/// Horizon 2 s, leeway 1 s: today the publisher prunes a `sub` cutoff at
/// `before + horizon + leeway`, while a 900 s token issued before it is still valid. With the
/// deployment's longest token lifetime explicit (1 h here), the cutoff must keep applying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case1_cutoff_outlives_the_horizon_for_long_lived_tokens() {
    let dir = temp_dir("c1");
    let mut c = config(dir.join("data"));
    c.window.bucket_width_secs = 1;
    c.window.horizon_secs = 2;
    c.window.leeway_secs = 1;
    c.prune_secs = 1;
    let c = spec::with_bounds(c, 3600, 1);
    let p = Publisher::start(c).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));

    let t = now();
    let before = t;
    let old = token(&json!({"jti": "c1-old", "sub": "alice", "iat": t - 1, "exp": t + 900}));
    let bob = token(&json!({"jti": "c1-bob", "sub": "bob", "iat": t - 1, "exp": t + 900}));
    let (s, v, g) = p.cutoff(json!({"value": "alice", "before": before})).await;
    assert_eq!(s, 200, "{v}");
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    f.refused(
        "alice's 900 s token right after the cutoff",
        gw.status(&old).await,
    );
    f.passes("control: bob's token", gw.status(&bob).await);

    // Past before + horizon + leeway (+ a prune period): today the cutoff is gone by then.
    let due = before + 2 + 1 + 3;
    wait_until("a generation created after the old prune point", || {
        gw.handle.current().is_some_and(|v| v.created_at() >= due)
    })
    .await;
    f.refused(
        "alice's 900 s token after before + horizon + leeway",
        gw.status(&old).await,
    );
    let fresh = token(&json!({"jti": "c1-new", "sub": "alice", "iat": now(), "exp": now() + 900}));
    f.passes(
        "control: alice's token issued after the cutoff",
        gw.status(&fresh).await,
    );
    f.passes("control: bob's token, later", gw.status(&bob).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 2: a signed deployment restarted with the publisher down must serve from its copy.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case2_signed_local_copy_serves_after_restart_with_publisher_down() {
    let dir = temp_dir("c2");
    let sk = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let pem = sk
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let key_file = dir.join("signing.pem");
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let mut c = config(dir.join("data"));
    c.signing_key = Some(key_file);
    let p = Publisher::start(c).await;
    let open = || {
        OpenOptions::new()
            .verifying_key(sk.verifying_key())
            .require_signature(true)
    };
    let cache = dir.join("gateway-snapshot.rbs");
    let mut o = GatewayOpts::new(&p.base);
    o.open = open();
    o.cache = Some(cache.clone());
    let mut gw = Gateway::start(&p.base, o);

    let t = now();
    let exp = t + 600;
    let revoked = token(&json!({"jti": "c2-revoked", "sub": "bob", "iat": t - 10, "exp": exp}));
    let cut = token(&json!({"jti": "c2-cut", "sub": "mallory", "iat": t - 10, "exp": exp}));
    let good = token(&json!({"jti": "c2-good", "sub": "bob", "iat": t - 10, "exp": exp}));
    // Several generations, so the client goes through deltas as in production.
    let (s, _, _) = p.revoke(rev("c2-revoked", exp)).await;
    assert_eq!(s, 200);
    let (s, _, g) = p.cutoff(json!({"value": "mallory", "before": t})).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    f.refused("revoked jti, publisher up", gw.status(&revoked).await);
    f.refused("cutoff-revoked token, publisher up", gw.status(&cut).await);
    f.passes("control: good token, publisher up", gw.status(&good).await);
    let deltas = gw
        .sync
        .as_ref()
        .unwrap()
        .stats()
        .deltas
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("deltas applied before the restart: {deltas}");
    wait_until("the cache file holding the generation", || {
        std::fs::read(&cache).is_ok_and(|b| {
            revbloom::SnapshotView::open(&b[..], &open()).is_ok_and(|v| v.generation() >= g)
        })
    })
    .await;
    gw.stop_sync();
    drop(gw);
    let base = p.base.clone();
    p.stop().await;

    // Restart the gateway, once per staleness policy, with the publisher down.
    for policy in [
        StalenessPolicy::FailClosed,
        StalenessPolicy::ExactSource,
        StalenessPolicy::FailOpen,
    ] {
        let mut o = GatewayOpts::new(&base);
        o.open = open();
        o.cache = Some(cache.clone());
        o.policy = policy;
        let gw = Gateway::start(&base, o);
        f.check(
            &format!("{policy:?}: signed cache loaded on start"),
            gw.handle.generation().is_some_and(|h| h >= g),
            gw.handle.generation(),
        );
        f.refused(
            &format!("{policy:?}: revoked jti after restart"),
            gw.status(&revoked).await,
        );
        f.refused(
            &format!("{policy:?}: cutoff-revoked token after restart"),
            gw.status(&cut).await,
        );
        f.passes(
            &format!("{policy:?}: control good token after restart"),
            gw.status(&good).await,
        );
    }
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 3: tab, CR, LF in a jti reach the exact source as another jti.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case3_control_characters_in_jti_reach_the_exact_source_intact() {
    let dir = temp_dir("c3");
    let p = Publisher::start(config(dir.join("data"))).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let exp = t + 600;
    let jtis = ["c3\ttab", "c3\rcr", "c3\nlf", "c3 \t\r\n%2F/?#é"];
    let mut g = 0;
    for jti in jtis {
        let (s, v, gg) = p.revoke(rev(jti, exp)).await;
        assert_eq!(s, 200, "{v}");
        g = gg;
    }
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    for jti in jtis {
        let tok = token(&json!({"jti": jti, "sub": "bob", "iat": t, "exp": exp}));
        f.refused(&format!("revoked jti {jti:?}"), gw.status(&tok).await);
    }
    for jti in ["c3tab", "c3cr", "c3lf"] {
        let tok = token(&json!({"jti": jti, "sub": "bob", "iat": t, "exp": exp}));
        f.passes(
            &format!("control: unrevoked jti {jti:?}"),
            gw.status(&tok).await,
        );
    }
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 4: issuer keying — one key, one meaning.
// ---------------------------------------------------------------------------------------------

/// 4a. Publisher `default_iss` = the token's `iss`, gateway without `--issuer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case4a_default_iss_publisher_and_issuerless_gateway() {
    let dir = temp_dir("c4a");
    let mut c = config(dir.join("data"));
    c.default_iss = Some(ISS.into());
    let p = Publisher::start(c).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let exp = t + 600;
    let (s, _, g) = p.revoke(rev("c4a", exp)).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    let lk = p.lookup("c4a", None).await;
    f.check("lookup says revoked", lk["revoked"] == true, &lk);
    let tok = token(&json!({"jti": "c4a", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.refused(
        "revoked token with iss = default_iss",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c4a-ok", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.passes("control: unrevoked token", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 4b. A revocation without `iss`, a gateway with `--issuer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case4b_issuerless_revocation_and_issuer_gateway() {
    let dir = temp_dir("c4b");
    let p = Publisher::start(config(dir.join("data"))).await;
    let mut o = GatewayOpts::new(&p.base);
    o.issuer = Some(ISS.into());
    let gw = Gateway::start(&p.base, o);
    let t = now();
    let exp = t + 600;
    let (s, _, g) = p.revoke(rev("c4b", exp)).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    let tok = token(&json!({"jti": "c4b", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.refused(
        "revoked (no iss) token at an --issuer gateway",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c4b-ok", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.passes("control: unrevoked token", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 4c. `default_iss` added after revocations exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case4c_default_iss_added_later_hides_nothing() {
    let dir = temp_dir("c4c");
    let p = Publisher::start(config(dir.join("data"))).await;
    let t = now();
    let exp = t + 600;
    let (s, _, _) = p.revoke(rev("c4c", exp)).await;
    assert_eq!(s, 200);
    let mut c = p.stop().await;
    c.default_iss = Some(ISS.into());
    let p = Publisher::start(c).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    gw.wait_generation(p.generation()).await;
    let mut f = Findings::default();
    let tok = token(&json!({"jti": "c4c", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.refused(
        "token revoked before default_iss was set",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c4c-ok", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.passes("control: unrevoked token", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 4d. Issuers differing by a trailing slash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case4d_trailing_slash_issuers_are_one_issuer() {
    let dir = temp_dir("c4d");
    let p = Publisher::start(config(dir.join("data"))).await;
    let mut o = GatewayOpts::new(&p.base);
    o.issuer = Some(ISS.into());
    let gw = Gateway::start(&p.base, o);
    let t = now();
    let exp = t + 600;
    let slash = format!("{ISS}/");
    let (s, _, g) = p
        .revoke(json!({"jti": "c4d", "exp": exp, "iss": slash}))
        .await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    let tok = token(&json!({"jti": "c4d", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.refused(
        "token revoked under iss with a trailing slash",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c4d-ok", "iss": ISS, "sub": "bob", "iat": t, "exp": exp}));
    f.passes("control: unrevoked token", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 4e. Cutoffs behave the same: an issuer-less cutoff at an `--issuer` gateway, and a cutoff
/// under a `default_iss` publisher at a gateway without `--issuer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case4e_cutoffs_follow_the_same_issuer_rules() {
    let dir = temp_dir("c4e");
    let t = now();
    let exp = t + 600;
    let mut f = Findings::default();

    let p = Publisher::start(config(dir.join("data1"))).await;
    let mut o = GatewayOpts::new(&p.base);
    o.issuer = Some(ISS.into());
    let gw = Gateway::start(&p.base, o);
    let (s, _, g) = p.cutoff(json!({"value": "alice", "before": t})).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    let tok = token(&json!({"jti": "c4e-1", "iss": ISS, "sub": "alice", "iat": t - 5, "exp": exp}));
    f.refused(
        "issuer-less cutoff at an --issuer gateway",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c4e-1ok", "iss": ISS, "sub": "bob", "iat": t - 5, "exp": exp}));
    f.passes("control: other sub", gw.status(&ok).await);
    drop(gw);
    p.stop().await;

    let mut c = config(dir.join("data2"));
    c.default_iss = Some(ISS.into());
    let p = Publisher::start(c).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let (s, _, g) = p.cutoff(json!({"value": "alice", "before": t})).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    let tok = token(&json!({"jti": "c4e-2", "iss": ISS, "sub": "alice", "iat": t - 5, "exp": exp}));
    f.refused(
        "default_iss cutoff at a gateway without --issuer",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c4e-2ok", "iss": ISS, "sub": "bob", "iat": t - 5, "exp": exp}));
    f.passes("control: other sub", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 5: leeway mismatch between the store's pruning and the verifier.
// ---------------------------------------------------------------------------------------------

/// Window leeway 1 s, a token expiring 2 s from now: once the store has pruned the revocation
/// (`exp + leeway` passed), today's verifier still accepts the token under jsonwebtoken's own
/// 60 s leeway and the exact lookup answers "not revoked". The verifier's leeway must be
/// clamped to the snapshot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case5_verifier_leeway_is_clamped_to_the_snapshots() {
    let dir = temp_dir("c5");
    let mut c = config(dir.join("data"));
    c.window.leeway_secs = 1;
    c.prune_secs = 1;
    let c = spec::with_bounds(c, 30 * 86_400, 1);
    let p = Publisher::start(c).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let exp = t + 2;
    let tok = token(&json!({"jti": "c5", "sub": "bob", "iat": t, "exp": exp}));
    let (s, v, g) = p.revoke(rev("c5", exp)).await;
    assert_eq!(s, 200, "{v}");
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    f.refused("revoked token before exp", gw.status(&tok).await);
    // Until the store has forgotten it (today), or past exp + leeway + skew + 2 prune periods.
    let deadline = exp + 1 + 1 + 3;
    let t0 = std::time::Instant::now();
    loop {
        let lk = p.lookup("c5", None).await;
        if lk["revoked"] == false || now() > deadline {
            eprintln!("lookup at {}: {lk}", now());
            break;
        }
        assert!(t0.elapsed() < WAIT, "neither pruned nor past the deadline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.refused(
        &format!("revoked token at exp+{}", now() - exp),
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c5-ok", "sub": "bob", "iat": now(), "exp": now() + 600}));
    f.passes("control: unrevoked fresh token", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 6: `revbloom build` must refuse lines that can never match.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case6_build_refuses_lines_that_can_never_match() {
    let dir = temp_dir("c6");
    let t = now();
    let lines = [
        (
            "\"Exp\"",
            json!({"jti": "c6-a", "Exp": t + 600}).to_string(),
        ),
        (
            "\"exp\": null",
            json!({"jti": "c6-b", "exp": null}).to_string(),
        ),
        (
            "millisecond exp",
            json!({"jti": "c6-c", "exp": (t + 600) * 1000}).to_string(),
        ),
    ];
    let mut f = Findings::default();
    for (i, (what, line)) in lines.iter().enumerate() {
        let input = dir.join(format!("in-{i}.jsonl"));
        let good = json!({"jti": "c6-good", "exp": t + 600}).to_string();
        std::fs::write(&input, format!("{good}\n{line}\n")).unwrap();
        let out = dir.join(format!("out-{i}.rbs"));
        let r = std::process::Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .arg("build")
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        let stdout = String::from_utf8_lossy(&r.stdout);
        f.check(
            &format!("build with a {what} line is refused, naming line 2"),
            !r.status.success() && stderr.contains("line 2"),
            (
                r.status.code(),
                stdout.trim().to_owned(),
                stderr.trim().to_owned(),
            ),
        );
        if r.status.success() {
            // What the refusal prevents: a verifier loading this file accepts the token.
            let handle: SnapshotHandle =
                SnapshotHandle::new(StalenessPolicy::FailClosed, Duration::from_secs(300));
            let bytes = std::fs::read(&out).unwrap();
            handle.replace_bytes(bytes, &OpenOptions::new()).unwrap();
            let jti = format!("c6-{}", ["a", "b", "c"][i]);
            // The token itself expires at t + 600 (seconds).
            let v = handle.current().unwrap();
            eprintln!(
                "  the built snapshot says for the token {jti}: {:?}",
                v.check(&jti, Some(t + 600))
            );
        }
    }
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 7: cutoff values and clocks.
// ---------------------------------------------------------------------------------------------

/// 7a. A cutoff on `"42"` catches a token whose `sub` is the number 42.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case7a_cutoff_value_matches_a_numeric_claim() {
    let dir = temp_dir("c7a");
    let p = Publisher::start(config(dir.join("data"))).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let (s, _, g) = p.cutoff(json!({"value": "42", "before": t})).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    let num = token(&json!({"jti": "c7a-n", "sub": 42, "iat": t - 5, "exp": t + 600}));
    f.refused("sub 42 (number), cutoff on \"42\"", gw.status(&num).await);
    let text = token(&json!({"jti": "c7a-s", "sub": "42", "iat": t - 5, "exp": t + 600}));
    f.refused(
        "sub \"42\" (string), cutoff on \"42\"",
        gw.status(&text).await,
    );
    let other = token(&json!({"jti": "c7a-o", "sub": 43, "iat": t - 5, "exp": t + 600}));
    f.passes("control: sub 43", gw.status(&other).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 7b. An issuer clock 3 s ahead (within the default 5 s skew bound): a token minted just
/// before "log out now" carries `iat = now + 3`; the default `before` must cover it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case7b_default_cutoff_covers_an_issuer_clock_ahead() {
    let dir = temp_dir("c7b");
    let p = Publisher::start(config(dir.join("data"))).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let ahead = token(&json!({"jti": "c7b", "sub": "alice", "iat": t + 3, "exp": t + 600}));
    let (s, v, g) = p.cutoff(json!({"value": "alice"})).await;
    assert_eq!(s, 200, "{v}");
    eprintln!("cutoff answer: {v}");
    gw.wait_generation(g).await;
    let mut f = Findings::default();
    f.refused(
        "token minted before the logout by a clock 3 s ahead",
        gw.status(&ahead).await,
    );
    let bob = token(&json!({"jti": "c7b-bob", "sub": "bob", "iat": t + 3, "exp": t + 600}));
    f.passes(
        "control: bob's token from the same issuer",
        gw.status(&bob).await,
    );
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 8: the exact source down on a fresh filter positive.
// ---------------------------------------------------------------------------------------------

/// Staleness policy `FailOpen`, fresh state, the exact source (the publisher, the gateway's
/// default) down: a filter positive must be refused by default (`ExactFailurePolicy::Refuse`),
/// whatever the staleness policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case8_exact_source_down_refuses_filter_positives_by_default() {
    let dir = temp_dir("c8");
    let p = Publisher::start(config(dir.join("data"))).await;
    let mut o = GatewayOpts::new(&p.base);
    o.policy = StalenessPolicy::FailOpen;
    let gw = Gateway::start(&p.base, o);
    let mut o = GatewayOpts::new(&p.base);
    o.policy = StalenessPolicy::FailOpen;
    o.tweak = Some(spec::exact_failure_refuse);
    let gw_explicit = Gateway::start(&p.base, o);
    let t = now();
    let exp = t + 600;
    let (s, _, _) = p.revoke(rev("c8-up", exp)).await;
    assert_eq!(s, 200);
    let (s, _, g) = p.revoke(rev("c8", exp)).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    gw_explicit.wait_generation(g).await;
    let mut f = Findings::default();
    // Another revoked token while the publisher is up: the one asked about after the outage
    // must not have a cached "revoked" answer.
    let up = token(&json!({"jti": "c8-up", "sub": "bob", "iat": t, "exp": exp}));
    let tok = token(&json!({"jti": "c8", "sub": "bob", "iat": t, "exp": exp}));
    let ok = token(&json!({"jti": "c8-ok", "sub": "bob", "iat": t, "exp": exp}));
    f.refused("another revoked token, publisher up", gw.status(&up).await);
    p.stop().await;
    f.refused(
        "revoked token, exact source down (default policy)",
        gw.status(&tok).await,
    );
    f.refused(
        "revoked token, exact source down (explicit Refuse)",
        gw_explicit.status(&tok).await,
    );
    f.passes(
        "control: filter-clear token, exact source down",
        gw.status(&ok).await,
    );
    cleanup(&dir);
    f.finish();
}

// ---------------------------------------------------------------------------------------------
// Case 9: the smaller ones.
// ---------------------------------------------------------------------------------------------

/// 9a. Under `ExactSource` with stale state, a cached "not revoked" must not outlive a
/// revocation. The gateway's sync is cut (that is why its state is stale); its clock is pinned
/// 120 s ahead of the state so it is stale by a 60 s max age, and does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case9a_cached_not_revoked_is_not_used_on_stale_state() {
    let dir = temp_dir("c9a");
    let p = Publisher::start(config(dir.join("data"))).await;
    let pinned = now() + 120;
    let mut o = GatewayOpts::new(&p.base);
    o.clock = Some(Arc::new(move || pinned));
    o.staleness = Some((Some(Duration::from_secs(60)), StalenessPolicy::ExactSource));
    let mut gw = Gateway::start(&p.base, o);
    gw.wait_generation(p.generation()).await;
    let t = now();
    let exp = t + 600;
    let tok = token(&json!({"jti": "c9a", "sub": "bob", "iat": t, "exp": exp}));
    let mut f = Findings::default();
    f.passes(
        "control: the token before its revocation (stale state, exact source asked)",
        gw.status(&tok).await,
    );
    gw.stop_sync();
    let (s, _, _) = p.revoke(rev("c9a", exp)).await;
    assert_eq!(s, 200);
    let lk = p.lookup("c9a", None).await;
    assert_eq!(lk["revoked"], true, "{lk}");
    f.refused(
        "revoked token, within the negative cache's lifetime",
        gw.status(&tok).await,
    );
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 9b. A fractional `exp`: jsonwebtoken rounds it; the revocation must land in the bucket the
/// verifier probes (bucket width 1 s, so any rounding disagreement misses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case9b_fractional_exp_lands_in_the_probed_bucket() {
    let dir = temp_dir("c9b");
    let mut c = config(dir.join("data"));
    c.window.bucket_width_secs = 1;
    c.window.horizon_secs = 600;
    c.window.expected_per_bucket = 4;
    let p = Publisher::start(c).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let exp = t as f64 + 100.7;
    let mut f = Findings::default();
    // As jsonwebtoken reads the token: exp rounded.
    let (s, v, g) = p.revoke(rev("c9b-int", exp.round() as u64)).await;
    assert_eq!(s, 200, "{v}");
    gw.wait_generation(g).await;
    let tok = token(&json!({"jti": "c9b-int", "sub": "bob", "iat": t, "exp": exp}));
    f.refused(
        "token with exp x.7, revoked with round(exp)",
        gw.status(&tok).await,
    );
    // As the token says it: the fractional value itself.
    let (s, v, g) = p.revoke(json!({"jti": "c9b-frac", "exp": exp})).await;
    f.check("the API accepts a fractional exp", s == 200, (s, &v));
    if s == 200 {
        gw.wait_generation(g).await;
    }
    let tok = token(&json!({"jti": "c9b-frac", "sub": "bob", "iat": t, "exp": exp}));
    f.refused(
        "token with exp x.7, revoked with the fractional exp",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c9b-ok", "sub": "bob", "iat": t, "exp": exp}));
    f.passes(
        "control: unrevoked token with a fractional exp",
        gw.status(&ok).await,
    );
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 9c. The publisher's clock jumps forward past the horizon and prunes; a verifier that still
/// holds the revocation in its snapshot asks the exact source, which must not vouch
/// ("not revoked") for what it pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case9c_forward_clock_jump_does_not_unrevoke() {
    let dir = temp_dir("c9c");
    let p = Publisher::start(config(dir.join("data"))).await;
    let mut gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let exp = t + 600;
    let (s, _, _) = p.revoke(rev("c9c-pre", exp)).await;
    assert_eq!(s, 200);
    let (s, _, g) = p.revoke(rev("c9c", exp)).await;
    assert_eq!(s, 200);
    gw.wait_generation(g).await;
    // Checked before the jump with another revoked token, so the one checked after it has no
    // cached "revoked" answer in the gateway.
    let pre = token(&json!({"jti": "c9c-pre", "sub": "bob", "iat": t, "exp": exp}));
    let tok = token(&json!({"jti": "c9c", "sub": "bob", "iat": t, "exp": exp}));
    let mut f = Findings::default();
    f.refused(
        "another revoked token before the jump",
        gw.status(&pre).await,
    );
    // The gateway keeps the snapshot it has (a correct verifier still honors it).
    gw.stop_sync();
    let c = p.stop().await;
    // The publisher's clock jumps two horizons ahead and it prunes at that time.
    let jumped = t + 2 * c.window.horizon_secs;
    spec::prune_store_as_publisher_at(&c.data_dir, &c, jumped).await;
    let p = Publisher::start(c).await;
    let lk = p.lookup("c9c", None).await;
    f.check(
        "lookup after the jump reports a prune watermark past exp",
        spec::pruned_before(&lk).is_some_and(|w| w > exp),
        &lk,
    );
    let (seal, _) = crate::support::publisher_keys(&dir.join("data"));
    let source = HttpExactSource::new(&p.base).unwrap().seal_key(&seal);
    let q = ExactQuery {
        iss: None,
        jti: "c9c",
        exp: Some(exp),
        generation: g,
        now: now(),
        stale: false,
    };
    let answer = source.is_revoked_async(&q).await;
    f.check(
        "the exact source answers NotCovered or revoked",
        match &answer {
            Ok(r) => *r,
            Err(e) => spec::is_not_covered(e),
        },
        &answer,
    );
    f.refused(
        "revoked token after the publisher's clock jumped",
        gw.status(&tok).await,
    );
    let ok = token(&json!({"jti": "c9c-ok", "sub": "bob", "iat": t, "exp": exp}));
    f.passes("control: unrevoked token", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 9d. A `jti` over 256 bytes (up to `MAX_JTI_BYTES`) can be revoked; longer ones, which no
/// publisher can store, are refused by the verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case9d_long_jti_can_be_revoked_and_longer_ones_are_refused() {
    let dir = temp_dir("c9d");
    let p = Publisher::start(config(dir.join("data"))).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let exp = t + 600;
    let long = "L".repeat(300);
    let mut f = Findings::default();
    let (s, v, g) = p.revoke(rev(&long, exp)).await;
    f.check("a 300-byte jti can be revoked", s == 200, (s, &v));
    let max = "M".repeat(revbloom::bounds::MAX_JTI_BYTES);
    let (s2, v2, g2) = p.revoke(rev(&max, exp)).await;
    f.check("a MAX_JTI_BYTES jti can be revoked", s2 == 200, (s2, &v2));
    gw.wait_generation(g.max(g2)).await;
    let tok = token(&json!({"jti": long, "sub": "bob", "iat": t, "exp": exp}));
    f.refused("revoked 300-byte jti", gw.status(&tok).await);
    let tok = token(&json!({"jti": max, "sub": "bob", "iat": t, "exp": exp}));
    f.refused("revoked MAX_JTI_BYTES jti", gw.status(&tok).await);
    let over = "O".repeat(revbloom::bounds::MAX_JTI_BYTES + 1);
    let tok = token(&json!({"jti": over, "sub": "bob", "iat": t, "exp": exp}));
    f.refused(
        "a jti longer than MAX_JTI_BYTES (unrevokable)",
        gw.status(&tok).await,
    );
    let e = gw.verifier.verify_async::<Value>(&tok).await;
    f.check(
        "... refused as OutOfBounds",
        e.as_ref().is_err_and(spec::is_out_of_bounds),
        e.as_ref().map(|_| ()),
    );
    let ok = token(&json!({"jti": "P".repeat(300), "sub": "bob", "iat": t, "exp": exp}));
    f.passes("control: unrevoked 300-byte jti", gw.status(&ok).await);
    p.stop().await;
    cleanup(&dir);
    f.finish();
}

/// 9e. A token expired but inside the leeway (verifiers still accept it) can be revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case9e_token_inside_the_leeway_can_be_revoked() {
    let dir = temp_dir("c9e");
    let p = Publisher::start(config(dir.join("data"))).await;
    let gw = Gateway::start(&p.base, GatewayOpts::new(&p.base));
    let t = now();
    let exp = t - 2;
    let tok = token(&json!({"jti": "c9e", "sub": "bob", "iat": t - 600, "exp": exp}));
    let mut f = Findings::default();
    let (s, v, g) = p.revoke(rev("c9e", exp)).await;
    f.check(
        "revoking a token 2 s past exp (leeway 60 s) is accepted",
        s == 200,
        (s, &v),
    );
    gw.wait_generation(g).await;
    f.refused("revoked token inside the leeway", gw.status(&tok).await);
    let ok = token(&json!({"jti": "c9e-ok", "sub": "bob", "iat": t - 600, "exp": exp}));
    f.passes(
        "control: unrevoked token inside the leeway",
        gw.status(&ok).await,
    );
    p.stop().await;
    cleanup(&dir);
    f.finish();
}
