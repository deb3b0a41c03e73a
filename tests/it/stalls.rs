//! Requests that stall — a client that stops reading, a pg_dump waiting on a lock — and how
//! they end: pg_dump stopped so that its database session ends too, its slot freed, within
//! the time limit or the send timeout.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    big_table_db, dump_json, http, lock_articles, pg_dump_children, pg_dump_sessions, send_raw,
    sessions_waiting_on_a_lock, spawn_dump, Server, TestDb, REFERENCE_SCHEMA,
};

/// How long pg_dump may take to go after its request ended: its grace after SIGTERM and more.
const MARGIN: Duration = Duration::from_secs(10);

/// Waits until `server` runs no pg_dump and `db` has no pg_dump session, for at most `limit`;
/// returns how long that took.
async fn no_pg_dump_left(server: &Server, db: &TestDb, limit: Duration) -> Duration {
    let admin = db.client().await;
    let started = Instant::now();
    loop {
        let children = pg_dump_children(server.pid()).len();
        let sessions = pg_dump_sessions(&admin, db).await;
        if children == 0 && sessions == 0 {
            return started.elapsed();
        }
        if started.elapsed() >= limit {
            let rows = admin
                .query(
                    "SELECT format('%s %s %s %s %s: %s', pid, client_port, backend_start, state, \
                     wait_event, query) \
                     FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pg_dump'",
                    &[&db.name],
                )
                .await
                .unwrap();
            let left: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            panic!(
                "after {:?}: {children} pg_dump processes and {sessions} pg_dump sessions left: \
                 {left:#?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that asks for a big dump, reads its first 4 KiB and then reads no more.
fn stalled_reader(server: &Server) -> TcpStream {
    let mut stream = send_raw(server, r#"{"opts":["--data-only"]}"#);
    let mut head = vec![0u8; 4096];
    let mut got = 0;
    while got < head.len() {
        let n = stream.read(&mut head[got..]).unwrap();
        assert!(n > 0, "the response ended early");
        got += n;
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads what is left of a response cut off by the server: it must not end like a complete
/// chunked body.
fn assert_cut_off(mut stream: TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                let keep = tail.len().saturating_sub(16);
                tail.drain(..keep);
            }
        }
    }
    assert!(!tail.ends_with(b"0\r\n\r\n"), "the response ended normally");
}

/// A schema dump, which needs a free slot: it must finish promptly.
async fn next_request_runs(server: &Server) {
    let reply = tokio::time::timeout(
        MARGIN,
        dump_json(server, json!({"opts": ["--schema-only"]})),
    )
    .await
    .expect("the next request got no slot");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

async fn metrics(server: &Server) -> String {
    let response = http().get(server.url("/v1/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Waits until the metrics count one failure for `reason`.
async fn failure_counted(server: &Server, reason: &str) {
    let series = format!("pgdump_dumps_failed_total{{source=\"default\",reason=\"{reason}\"}} 1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(server).await;
        if text.lines().any(|line| line == series) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} not in\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stalled_reader_is_dropped_after_the_send_timeout() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url)
        .args(["--send-timeout", "2", "--pg-dump-max-concurrent", "1"])
        .args(["--enabled-apis", "pgdump,metrics"])
        .start();
    let stalled = stalled_reader(&server);
    let took = no_pg_dump_left(&server, &db, Duration::from_secs(2) + MARGIN).await;
    assert!(
        took >= Duration::from_secs(1),
        "stopped after only {took:?}"
    );
    next_request_runs(&server).await;
    assert_cut_off(stalled);
    failure_counted(&server, "send_timeout").await;
    let logs = server.wait_http_logs(1).await;
    let detail = &logs[0]["detail"];
    assert_eq!(detail["complete"], false, "{detail}");
    assert!(
        detail["error"]
            .as_str()
            .unwrap_or_default()
            .contains("send timeout"),
        "{detail}"
    );
}

#[tokio::test]
async fn stalled_reader_is_stopped_at_the_time_limit() {
    let db = big_table_db().await;
    // The send timeout stays at its default, far beyond the time limit.
    let server = Server::builder(&db.url)
        .args(["--pg-dump-timeout", "2", "--pg-dump-max-concurrent", "1"])
        .args(["--enabled-apis", "pgdump,metrics"])
        .start();
    let started = Instant::now();
    let stalled = stalled_reader(&server);
    no_pg_dump_left(&server, &db, Duration::from_secs(2) + MARGIN).await;
    next_request_runs(&server).await;
    assert_cut_off(stalled);
    assert!(
        started.elapsed() < Duration::from_secs(2) + MARGIN * 2,
        "the stalled response was not ended at the time limit"
    );
    failure_counted(&server, "timeout").await;
    let logs = server.wait_http_logs(2).await;
    let stalled_log = logs
        .iter()
        .find(|log| log["detail"]["complete"] == false)
        .expect("the stalled request's log line");
    let error = stalled_log["detail"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("time limit"), "{stalled_log}");
}

#[tokio::test]
async fn clients_leaving_pg_dumps_that_wait_on_a_lock_leave_no_session() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .args(["--pg-dump-max-concurrent", "4"])
        .start();
    let admin = db.client().await;
    let lock = lock_articles(&db).await;
    let clients: Vec<_> = (0..6)
        .map(|_| send_raw(&server, r#"{"opts":["--schema-only"]}"#))
        .collect();
    sessions_waiting_on_a_lock(&admin, &db, 4).await;
    drop(clients);
    no_pg_dump_left(&server, &db, MARGIN).await;
    // Still locked: the sessions ended because pg_dump was stopped, not because it finished.
    assert!(!lock.is_closed());
    drop(lock);
    next_request_runs(&server).await;
}

#[tokio::test]
async fn time_limit_on_a_lock_wait_leaves_no_session() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .args(["--pg-dump-timeout", "1"])
        .start();
    let lock = lock_articles(&db).await;
    let requests: Vec<_> = (0..3).map(|_| spawn_dump(&server)).collect();
    for request in requests {
        assert_eq!(request.await.unwrap().0, 504);
    }
    no_pg_dump_left(&server, &db, MARGIN).await;
    assert!(!lock.is_closed());
}

#[tokio::test]
async fn shutdown_leaves_no_pg_dump_session() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .args(["--graceful-shutdown-timeout", "1"])
        .start();
    let admin = db.client().await;
    let lock = lock_articles(&db).await;
    let _client = send_raw(&server, r#"{"opts":["--schema-only"]}"#);
    sessions_waiting_on_a_lock(&admin, &db, 1).await;
    let status = server.terminate();
    assert!(status.success(), "{status}");
    // The server stopped its pg_dump so that the session ends too (the backend takes a moment
    // to notice).
    let deadline = Instant::now() + Duration::from_secs(3);
    while pg_dump_sessions(&admin, &db).await > 0 {
        assert!(
            Instant::now() < deadline,
            "pg_dump's session outlived the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!lock.is_closed());
}
