//! TLS to PostgreSQL: a cluster with `ssl = on` and a certificate from a CA made here. With
//! `sslmode=require` every session is encrypted and the certificate is verified (a store whose
//! certificate the publisher cannot verify is refused at start with one line); without it the
//! connection is plain, even though the server offers TLS.

use revbloom::sync::ClientTls;
use revbloom_server::{run, Store};

use crate::support::ca::Ca;
use crate::support::pg::{shared_keys, PgCluster};
use crate::support::{self, temp_dir, TOKEN};

/// Whether `store`'s own sessions (a fresh one, as the builder lock and `LISTEN` get) run over
/// TLS, as the server sees them.
async fn encrypted(store: &Store) -> bool {
    let (client, conn) = store.postgres().unwrap().session().await.unwrap();
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_encrypts_and_verifies_the_database() {
    let pg = PgCluster::start().await;
    let dir = temp_dir("pg-tls");
    let ca = Ca::new(&dir, "pg-ca");
    let leaf = ca.leaf(&["127.0.0.1"], 1);
    pg.enable_tls(&leaf.cert_pem, &leaf.key_pem).await;
    let require = format!("{}?sslmode=require", pg.url());

    // Verified against the CA file: encrypted.
    let (store, _w) = Store::connect_postgres_with(&require, &ClientTls::ca_file(&ca.pem_path))
        .await
        .unwrap();
    assert!(encrypted(&store).await, "sslmode=require is encrypted");

    // The same server, offered TLS by default (`prefer`): plain, never a silent downgrade.
    let (plain, plain_writer) =
        Store::connect_postgres_with(&pg.url(), &ClientTls::ca_file(&ca.pem_path))
            .await
            .unwrap();
    assert!(!encrypted(&plain).await, "without sslmode=require: plain");
    drop((plain, plain_writer));

    // A certificate from a CA nobody trusts: refused, and the message says why.
    let other = Ca::new(&dir, "other-ca");
    let e = Store::connect_postgres_with(&require, &ClientTls::ca_file(&other.pem_path))
        .await
        .err()
        .expect("an unverifiable certificate is refused")
        .to_string();
    assert!(
        e.contains("TLS") && e.contains("UnknownIssuer") && e.contains("127.0.0.1"),
        "{e}"
    );
    // A certificate for another host name: refused.
    let wrong = ca.leaf(&["db.example.com"], 2);
    pg.enable_tls(&wrong.cert_pem, &wrong.key_pem).await;
    let e = Store::connect_postgres_with(&require, &ClientTls::ca_file(&ca.pem_path))
        .await
        .err()
        .expect("a certificate for another name is refused")
        .to_string();
    assert!(e.contains("not valid for name"), "{e}");
    pg.enable_tls(&leaf.cert_pem, &leaf.key_pem).await;

    // A CA file that is not one: refused before any connection, naming the file.
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = Store::connect_postgres_with(&require, &ClientTls::ca_file(&junk))
        .await
        .err()
        .expect("a junk CA file is refused")
        .to_string();
    assert!(e.contains("junk.pem"), "{e}");

    // The publisher end to end: `store_ca_file` in the configuration, every session over
    // TLS, and a revocation acknowledged and looked up through it.
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (seal, signing, _) = shared_keys(&data);
    let mut config = support::config(data.clone());
    config.store = Some(require.clone());
    config.store_ca_file = Some(ca.pem_path.clone());
    config.seal_key_file = Some(seal);
    config.signing_key = Some(signing);
    let srv = run::start(config.clone(), TOKEN.into()).await.unwrap();
    let exp = support::now() + 3600;
    let r = support::client()
        .post(format!("{}/v1/revocations", srv.url()))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"jti": "over-tls", "exp": exp}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Every revbloom session is encrypted once the plain store above has closed its own.
    let client = pg.client().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let counts = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name LIKE 'revbloom%'",
                &[],
            )
            .await
            .unwrap();
        let (tls, plain): (i64, i64) = (counts.get(0), counts.get(1));
        if plain == 0 {
            // The writer, the reader, the builder lock and LISTEN at least.
            assert!(tls >= 3, "{tls} encrypted sessions");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{plain} revbloom sessions stay unencrypted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    srv.shutdown();
    // Without the CA file the system's store is used, which does not know this CA.
    config.store_ca_file = None;
    let e = match run::start(config, TOKEN.into()).await {
        Ok(_) => panic!("started against an unverifiable database"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("UnknownIssuer") && !e.contains('\n'), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
