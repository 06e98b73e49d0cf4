//! Crash test: the real `revbloom serve` binary is SIGKILLed at a random moment while clients
//! revoke in a loop, then restarted on the same data folder; every revocation that was
//! acknowledged with a 2xx must be there. Zero lost, over 20 rounds.
#![cfg(unix)]

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

const ROUNDS: usize = 20;
const CLIENTS: usize = 6;

/// Start `revbloom serve` on an ephemeral port over `data`; returns the child and its URL.
fn spawn_server(data: &std::path::Path) -> (Child, String) {
    spawn_serve(
        Command::new(env!("CARGO_BIN_EXE_revbloom"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("REVBLOOM_ADMIN_TOKEN", TOKEN),
    )
}

/// A tiny xorshift, so the kill moments differ per run without a dependency.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_revocation_survives_sigkill() {
    let data = temp_dir("crash");
    let http = client();
    let exp = now() + 7200;
    let mut rng = now() ^ u64::from(std::process::id()) | 1;
    // Acknowledged jtis of all rounds so far.
    let mut acked_all: Vec<String> = Vec::new();
    let mut last_round: Vec<String> = Vec::new();
    let started = Instant::now();

    for round in 0..ROUNDS {
        let (mut child, url) = spawn_server(&data);

        // Everything acknowledged before the last kill must be there after the restart (the
        // final check below covers the earlier rounds again).
        for jti in &last_round {
            let v = lookup(&http, &url, jti).await;
            assert_eq!(
                v["revoked"], true,
                "round {round}: acknowledged {jti} was lost"
            );
        }

        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (http, url, acked) = (http.clone(), url.clone(), Arc::clone(&acked));
            clients.push(tokio::spawn(async move {
                for seq in 0u64.. {
                    // Every third request is a batch of 4: acknowledged means all 4 are stored.
                    let ids: Vec<String> = if seq % 3 == 0 {
                        (0..4)
                            .map(|k| format!("r{round}-c{c}-s{seq}-{k}"))
                            .collect()
                    } else {
                        vec![format!("r{round}-c{c}-s{seq}")]
                    };
                    let items: Vec<Value> =
                        ids.iter().map(|j| json!({"jti": j, "exp": exp})).collect();
                    let body = if ids.len() == 1 {
                        items[0].clone()
                    } else {
                        json!(items)
                    };
                    let res = http
                        .post(format!("{url}/v1/revocations"))
                        .bearer_auth(TOKEN)
                        .json(&body)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().extend(ids),
                        Ok(r) => panic!("unexpected refusal {}", r.status()),
                        // The server died under us: this one was never acknowledged.
                        Err(_) => break,
                    }
                }
            }));
        }
        let delay = 20 + next_rand(&mut rng) % 300;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for c in clients {
            c.await.unwrap();
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        eprintln!(
            "round {round}: killed after {delay} ms, {} acknowledged",
            acked.len()
        );
        acked_all.extend(acked.iter().cloned());
        last_round = acked;
    }

    // Final restart: all of it, from every round.
    let (mut child, url) = spawn_server(&data);
    let mut missing = 0;
    for jti in &acked_all {
        let v = lookup(&http, &url, jti).await;
        if v["revoked"] != true {
            missing += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "{} acknowledged revocations over {ROUNDS} SIGKILLs, {missing} lost, {:.1} s",
        acked_all.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(!acked_all.is_empty(), "no revocation was ever acknowledged");
    assert_eq!(missing, 0);
    let _ = std::fs::remove_dir_all(&data);
}

/// SIGTERM while clients revoke: the server exits cleanly (status 0) after finishing in-flight
/// requests, and every acknowledged revocation is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_graceful_and_loses_nothing() {
    let data = temp_dir("sigterm");
    let http = client();
    let exp = now() + 7200;
    let (mut child, url) = spawn_server(&data);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, acked) = (http.clone(), url.clone(), Arc::clone(&acked));
        clients.push(tokio::spawn(async move {
            for seq in 0u64.. {
                let jti = format!("term-c{c}-s{seq}");
                let res = http
                    .post(format!("{url}/v1/revocations"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"jti": jti, "exp": exp}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(jti),
                    _ => break,
                }
            }
        }));
    }
    // A long-poll in flight must not hold up the shutdown.
    let poll = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            http.get(format!("{url}/v1/snapshot?wait=60s"))
                .header("if-none-match", "\"999999\"")
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    eprintln!("exited {exit:?} {:?} after SIGTERM", t0.elapsed());
    assert!(
        exit.success(),
        "revbloom serve did not exit cleanly on SIGTERM: {exit:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    for c in clients {
        c.await.unwrap();
    }
    let _ = poll.await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(!acked.is_empty());
    let (mut child, url) = spawn_server(&data);
    for jti in &acked {
        let v = lookup(&http, &url, jti).await;
        assert_eq!(v["revoked"], true, "acknowledged {jti} lost over SIGTERM");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
