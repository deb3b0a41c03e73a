//! The pg_dump chosen from a cached server version that has gone stale (the server was
//! upgraded behind the same address): pg_dump refuses the newer server, the version is learnt
//! again and the dump retried once, with the matching pg_dump. Two real clusters of the
//! matrix (14 and 17) sit behind one address, a TCP relay that sends each connection to one
//! of them, telling the server's version probe (`application_name=pgdump-api`) from pg_dump.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::matrix::matrix;
use crate::support::postgres::{cluster_of, connect, Cluster};
use crate::support::{dump_json, eventually, http, Server, TestDb};

/// One address for two clusters: where the version probe's connections go, and where
/// everything else (pg_dump) goes, each changeable at any time.
struct Relay {
    port: u16,
    probe_to: Arc<AtomicU16>,
    others_to: Arc<AtomicU16>,
    probes: Arc<AtomicUsize>,
    pg_dumps: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(probe_to: u16, others_to: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            port: listener.local_addr().unwrap().port(),
            probe_to: Arc::new(AtomicU16::new(probe_to)),
            others_to: Arc::new(AtomicU16::new(others_to)),
            probes: Arc::default(),
            pg_dumps: Arc::default(),
        };
        let (probe_to, others_to) = (relay.probe_to.clone(), relay.others_to.clone());
        let (probes, pg_dumps) = (relay.probes.clone(), relay.pg_dumps.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let targets = (probe_to.clone(), others_to.clone());
                let counts = (probes.clone(), pg_dumps.clone());
                tokio::spawn(async move {
                    let _ = relay_one(client, targets, counts).await;
                });
            }
        });
        relay
    }

    /// Sends every later connection to `port`.
    fn all_to(&self, port: u16) {
        self.probe_to.store(port, Ordering::SeqCst);
        self.others_to.store(port, Ordering::SeqCst);
    }
}

/// Reads the client's startup packet (refusing TLS and GSS encryption, so that it is
/// readable), connects to the target it calls for, and relays both ways.
async fn relay_one(
    mut client: TcpStream,
    (probe_to, others_to): (Arc<AtomicU16>, Arc<AtomicU16>),
    (probes, pg_dumps): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) -> std::io::Result<()> {
    const SSL_REQUEST: u32 = 80877103;
    const GSSENC_REQUEST: u32 = 80877104;
    let packet = loop {
        let len = client.read_u32().await?;
        let mut rest = vec![0; len as usize - 4];
        client.read_exact(&mut rest).await?;
        let code = u32::from_be_bytes(rest[..4].try_into().unwrap());
        if len == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
            client.write_all(b"N").await?;
            continue;
        }
        let mut packet = len.to_be_bytes().to_vec();
        packet.extend(rest);
        break packet;
    };
    let is_probe = packet
        .windows(b"application_name\0pgdump-api\0".len())
        .any(|window| window == b"application_name\0pgdump-api\0");
    let port = match is_probe {
        true => {
            probes.fetch_add(1, Ordering::SeqCst);
            probe_to.load(Ordering::SeqCst)
        }
        false => {
            pg_dumps.fetch_add(1, Ordering::SeqCst);
            others_to.load(Ordering::SeqCst)
        }
    };
    let mut server = TcpStream::connect(("127.0.0.1", port)).await?;
    server.write_all(&packet).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// The clusters of PostgreSQL 14 and 17 with a database of the same name on each (the one
/// on 17 holding a table), and the pg_dumps 14 and 17.
async fn old_and_new() -> (
    &'static Cluster,
    &'static Cluster,
    TestDb,
    Vec<std::path::PathBuf>,
) {
    let matrix = matrix();
    let find = |list: &[(u32, std::path::PathBuf)], major| {
        list.iter().find(|(m, _)| *m == major).unwrap().1.clone()
    };
    let old = cluster_of(&find(&matrix.servers, 14));
    let new = cluster_of(&find(&matrix.servers, 17));
    let db = TestDb::new_on(new).await;
    db.client()
        .await
        .batch_execute("CREATE TABLE upgraded (id int PRIMARY KEY);")
        .await
        .unwrap();
    connect(&old.url("postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE {}", db.name))
        .await
        .unwrap();
    let pg_dumps = vec![find(&matrix.pg_dumps, 14), find(&matrix.pg_dumps, 17)];
    (old, new, db, pg_dumps)
}

/// Starts pgdump-api on the relay and waits until it has learnt (and cached) PostgreSQL 14.
async fn server_caching_14(relay: &Relay, db: &TestDb, pg_dumps: &[std::path::PathBuf]) -> Server {
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{}/{}",
        crate::support::postgres::PASSWORD,
        relay.port,
        db.name
    );
    let mut server = Server::builder(&url).args(["--enabled-apis", "pgdump,metrics"]);
    for pg_dump in pg_dumps {
        server = server.pg_dump(pg_dump);
    }
    let server = server.start();
    eventually("the server version learnt at startup", || {
        server
            .logs()
            .iter()
            .any(|line| line.contains("source ready") && line.contains("\"14."))
    })
    .await;
    server
}

async fn metrics(server: &Server) -> String {
    let response = http().get(server.url("/v1/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn drop_database(cluster: &Cluster, name: &str) {
    connect(&cluster.url("postgres"))
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn stale_cached_version_is_learnt_again_and_the_dump_retried() {
    let (old, new, db, pg_dumps) = old_and_new().await;
    let relay = Relay::start(old.port, old.port).await;
    let server = server_caching_14(&relay, &db, &pg_dumps).await;
    // The server behind the address is upgraded.
    relay.all_to(new.port);

    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("CREATE TABLE public.upgraded"));
    let used = reply.header("x-pg-dump-version").unwrap();
    assert!(used.starts_with("17."), "{used}");
    // pg_dump 14 refused the server, the version was probed again, pg_dump 17 ran.
    assert_eq!(relay.pg_dumps.load(Ordering::SeqCst), 2);
    assert_eq!(relay.probes.load(Ordering::SeqCst), 2);
    let text = metrics(&server).await;
    assert!(
        text.contains("pgdump_dumps_succeeded_total{source=\"default\"} 1"),
        "{text}"
    );
    assert!(!text.contains("pgdump_dumps_failed_total"), "{text}");
    drop_database(old, &db.name).await;
}

#[tokio::test]
async fn a_second_version_mismatch_is_not_retried() {
    let (old, new, db, pg_dumps) = old_and_new().await;
    // The probe keeps seeing PostgreSQL 14, pg_dump always reaches 17.
    let relay = Relay::start(old.port, new.port).await;
    let server = server_caching_14(&relay, &db, &pg_dumps).await;

    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["code"], "pg-dump-version-mismatch");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("the server runs PostgreSQL 17."),
        "{message}"
    );
    assert!(message.contains("install pg_dump 17 or newer"), "{message}");
    // One retry, not more: pg_dump 14 ran twice, the version was probed twice.
    assert_eq!(relay.pg_dumps.load(Ordering::SeqCst), 2);
    assert_eq!(relay.probes.load(Ordering::SeqCst), 2);
    let text = metrics(&server).await;
    let failed = "pgdump_dumps_failed_total{source=\"default\",reason=\"version_mismatch\"} 1";
    assert!(text.contains(failed), "{text}");
    drop_database(old, &db.name).await;
}
