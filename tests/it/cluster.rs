//! The cluster-wide limit (`--pg-dump-max-concurrent-cluster`): several real replicas on
//! loopback, one real database holding the slots as advisory locks; and readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::postgres::connect;
use crate::support::{
    cluster, dump_json, eventually, http, lock_articles, pg_dump_children, pg_dump_sessions,
    send_raw, spawn_dump, Server, TestDb, REFERENCE_SCHEMA,
};

/// A replica of `db` with `local` pg_dumps per source and `cluster` across replicas.
fn replica(db: &TestDb, local: u32, cluster: u32, more: &[&str]) -> Server {
    Server::builder(&db.url)
        .args(["--pg-dump-max-concurrent", &local.to_string()])
        .args(["--pg-dump-max-concurrent-cluster", &cluster.to_string()])
        .args(["--enabled-apis", "pgdump,metrics"])
        .args(more.iter().copied())
        .start()
}

async fn metrics(server: &Server) -> String {
    let response = http().get(server.url("/v1/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of `series` (a full name with labels), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls the sum of `series` over `servers` until it is `expected`.
async fn until_metric_sum(servers: &[&Server], series: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 0.0;
    while Instant::now() < deadline {
        last = 0.0;
        for server in servers {
            last += metric(&metrics(server).await, series);
        }
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} stayed at {last}, not {expected}");
}

const WAITING: &str = "pgdump_cluster_waiting{source=\"default\"}";
const WAITS: &str = "pgdump_cluster_waits_total{source=\"default\"}";

/// Samples the pg_dump sessions of `db` until stopped; the most seen at once.
fn sample_pg_dump_sessions(db: &TestDb) -> (Arc<AtomicBool>, tokio::task::JoinHandle<i64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let admin_url = cluster().url("postgres");
    let name = db.name.clone();
    let stopped = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let admin = connect(&admin_url).await;
        let mut most = 0;
        while !stopped.load(Ordering::SeqCst) {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND application_name = 'pg_dump'",
                    &[&name],
                )
                .await
                .unwrap();
            most = most.max(row.get::<_, i64>(0));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        most
    });
    (stop, task)
}

#[tokio::test]
async fn three_replicas_never_run_more_pg_dumps_than_the_cluster_limit() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let replicas: Vec<Server> = (0..3).map(|_| replica(&db, 4, 2, &[])).collect();
    let all: Vec<&Server> = replicas.iter().collect();
    let admin = connect(&cluster().url("postgres")).await;
    let lock = lock_articles(&db).await;
    let (stop, sampler) = sample_pg_dump_sessions(&db);
    let requests: Vec<_> = (0..12).map(|i| spawn_dump(&replicas[i % 3])).collect();
    // Two run (held back by the lock); the other ten hold a local slot and wait.
    until_metric_sum(&all, WAITING, 10.0).await;
    until_metric_sum(&all, "pgdump_cluster_slots_held{source=\"default\"}", 2.0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg_dump_sessions(&admin, &db).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the two pg_dumps never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(lock);
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("CREATE TABLE public.articles"));
    }
    stop.store(true, Ordering::SeqCst);
    let most = sampler.await.unwrap();
    assert_eq!(most, 2, "pg_dump sessions seen at once");
    until_metric_sum(&all, "pgdump_cluster_slots_held{source=\"default\"}", 0.0).await;
    until_metric_sum(&all, WAITING, 0.0).await;
    let mut waits = 0.0;
    for server in &all {
        let text = metrics(server).await;
        waits += metric(&text, "pgdump_cluster_waits_total{source=\"default\"}");
        assert!(text.contains("pgdump_cluster_wait_seconds_count{source=\"default\"} 4"));
    }
    // Ten found both slots taken; one that queued behind another on its replica counts as
    // a wait even when a slot was free by its turn.
    assert!((10.0..=12.0).contains(&waits), "{waits} waits");
    // Released (after the pg_dump exited, so a moment after the gauge fell).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slots: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = database \
                 WHERE locktype = 'advisory' AND classid = 1885824112 AND d.datname = $1",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        if slots == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{slots} slots left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_replica_frees_its_slot_for_another_replica() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let doomed = replica(&db, 4, 1, &[]);
    let survivor = replica(&db, 4, 1, &[]);
    let lock = lock_articles(&db).await;
    let _orphaned = spawn_dump(&doomed);
    eventually("the doomed replica's pg_dump", || {
        pg_dump_children(doomed.pid()).len() == 1
    })
    .await;
    let waiting = spawn_dump(&survivor);
    until_metric_sum(&[&survivor], WAITING, 1.0).await;
    assert!(pg_dump_children(survivor.pid()).is_empty());
    let killed = Instant::now();
    drop(doomed); // SIGKILL
    eventually("the survivor's pg_dump", || {
        pg_dump_children(survivor.pid()).len() == 1
    })
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        killed.elapsed()
    );
    drop(lock);
    let (status, _, body) = waiting.await.unwrap();
    assert_eq!(status, 200, "{body}");
    // The slot is free again for the next one.
    let reply = dump_json(&survivor, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Ends the `pgdump-api cluster slot` sessions on `db` that hold a slot (`holding`) or not.
async fn terminate_slot_sessions(db: &TestDb, holding: bool) -> i64 {
    let admin = connect(&cluster().url("postgres")).await;
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity a \
         WHERE datname = $1 AND application_name = 'pgdump-api cluster slot' \
         AND {} EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid \
                        AND locktype = 'advisory' AND classid = 1885824112)",
        if holding { "" } else { "NOT" }
    );
    admin.query_one(&sql, &[&db.name]).await.unwrap().get(0)
}

#[tokio::test]
async fn lost_slot_sessions_are_reopened_or_reported() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let holder = replica(&db, 4, 1, &[]);
    let waiter = replica(&db, 4, 1, &[]);
    let lock = lock_articles(&db).await;
    let running = spawn_dump(&holder);
    eventually("the holder's pg_dump", || {
        pg_dump_children(holder.pid()).len() == 1
    })
    .await;
    let waiting = spawn_dump(&waiter);
    // Counted once its session found the slot taken.
    until_metric_sum(&[&waiter], WAITS, 1.0).await;
    // The waiting session ends (as in a database restart): the request waits on a new one.
    assert_eq!(terminate_slot_sessions(&db, false).await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiter
        .logs()
        .iter()
        .any(|line| line.contains("opening another"))
    {
        assert!(
            Instant::now() < deadline,
            "the waiting session was not reopened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&metrics(&waiter).await, WAITING), 1.0);
    assert!(pg_dump_children(waiter.pid()).is_empty());
    // The holding session ends: the slot is free, and the holder's log says so.
    assert_eq!(terminate_slot_sessions(&db, true).await, 1);
    eventually("the waiter's pg_dump", || {
        pg_dump_children(waiter.pid()).len() == 1
    })
    .await;
    assert!(holder
        .logs()
        .iter()
        .any(|line| line.contains("lost the session holding a cluster-wide pg_dump slot")));
    drop(lock);
    assert_eq!(running.await.unwrap().0, 200);
    assert_eq!(waiting.await.unwrap().0, 200);
}

#[tokio::test]
async fn clients_that_leave_the_cluster_wait_start_no_pg_dump() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let holder = replica(&db, 4, 1, &[]);
    let other = replica(&db, 4, 1, &[]);
    let lock = lock_articles(&db).await;
    let running = spawn_dump(&holder);
    eventually("the holder's pg_dump", || {
        pg_dump_children(holder.pid()).len() == 1
    })
    .await;
    let leavers: Vec<_> = (0..3)
        .map(|_| send_raw(&other, r#"{"opts":["--schema-only"]}"#))
        .collect();
    until_metric_sum(&[&other], WAITING, 3.0).await;
    drop(leavers);
    until_metric_sum(&[&other], WAITING, 0.0).await;
    until_metric_sum(
        &[&other],
        "pgdump_dumps_failed_total{source=\"default\",reason=\"client_gone\"}",
        3.0,
    )
    .await;
    drop(lock);
    assert_eq!(running.await.unwrap().0, 200);
    // Had a leaver been given the slot, its pg_dump would start now.
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        assert!(pg_dump_children(other.pid()).is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics(&other).await;
    assert!(!text.contains("pgdump_pg_dump_runs_total{"), "{text}");
    let reply = dump_json(&other, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn the_time_limit_and_the_queue_cover_the_cluster_wait() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let holder = replica(&db, 4, 1, &[]);
    let other = replica(
        &db,
        1,
        1,
        &["--pg-dump-max-queue", "1", "--pg-dump-timeout", "2"],
    );
    let lock = lock_articles(&db).await;
    let running = spawn_dump(&holder);
    eventually("the holder's pg_dump", || {
        pg_dump_children(holder.pid()).len() == 1
    })
    .await;
    let started = Instant::now();
    let timed_out = spawn_dump(&other);
    until_metric_sum(&[&other], WAITING, 1.0).await;
    // The waiting request holds the replica's one local slot: one more may queue, then 503.
    let queued = spawn_dump(&other);
    until_metric_sum(&[&other], "pgdump_dumps_queued{source=\"default\"}", 1.0).await;
    let (status, retry, body) = spawn_dump(&other).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("5"));
    let (status, _, body) = timed_out.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "timeout");
    assert_eq!(
        body["error"],
        "no cluster-wide pg_dump slot of source \"default\" came free within the time limit of 2 s"
    );
    assert_eq!(queued.await.unwrap().0, 504);
    assert!(pg_dump_children(other.pid()).is_empty());
    drop(lock);
    assert_eq!(running.await.unwrap().0, 200);
}

#[tokio::test]
async fn a_database_that_refuses_advisory_locks_is_a_clear_error() {
    let db = TestDb::new().await;
    let role = format!("nolocks_{}", db.name);
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'pw-nolocks';
             REVOKE EXECUTE ON FUNCTION pg_try_advisory_lock(int, int) FROM PUBLIC;"
        ))
        .await
        .unwrap();
    let url = format!(
        "postgres://{role}:pw-nolocks@127.0.0.1:{}/{}",
        cluster().port,
        db.name
    );
    let server = Server::builder(&url)
        .args(["--pg-dump-max-concurrent-cluster", "2"])
        .args(["--enabled-apis", "pgdump,metrics"])
        .start();
    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["code"], "unexpected");
    assert_eq!(
        body["error"],
        "source \"default\" cannot hold the cluster-wide pg_dump limit \
         (--pg-dump-max-concurrent-cluster), which needs PostgreSQL advisory locks: \
         ERROR: permission denied for function pg_try_advisory_lock; connect to the database \
         directly (not through a pooler in transaction or statement mode), or set the limit to 0"
    );
    assert!(pg_dump_children(server.pid()).is_empty());
    let text = metrics(&server).await;
    assert_eq!(
        metric(
            &text,
            "pgdump_dumps_failed_total{source=\"default\",reason=\"cluster_limit\"}"
        ),
        1.0
    );
    // The server keeps serving; with the limit off the same source dumps.
    drop(server);
    let server = Server::builder(&url).start();
    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    drop(server);
    drop(db);
    let _ = connect(&cluster().url("postgres"))
        .await
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

#[tokio::test]
async fn healthz_is_ready_only_with_a_source_and_a_pg_dump() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let pg_dump = dir.path().join("pg_dump");
    std::fs::copy(cluster().pg_dump(), &pg_dump).unwrap();
    let server = Server::builder(&db.url).pg_dump(&pg_dump).start();
    let health = || async {
        let response = http().get(server.url("/healthz")).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(health().await, (200, "OK".to_owned()));
    std::fs::remove_file(&pg_dump).unwrap();
    let (status, body) = health().await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "unavailable");
    assert_eq!(
        body["error"],
        format!(
            "not ready: no pg_dump binary is there any more: {}",
            pg_dump.display()
        )
    );
    // Only sources of other kinds: nothing to dump.
    let file = dir.path().join("databases.yaml");
    std::fs::write(
        &file,
        "- name: warehouse\n  kind: bigquery\n  configuration: {}\n",
    )
    .unwrap();
    let server = Server::builder_with_sources(&file).start();
    let response = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "not ready: no PostgreSQL source is loaded");
}
