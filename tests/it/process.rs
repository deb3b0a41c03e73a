//! pg_dump as a process: the password stays out of its argv, and it never outlives the
//! client that asked for it; a failure after the 200 aborts the response.

use std::io::Read;

use serde_json::json;

use crate::support::postgres::PASSWORD;
use crate::support::{
    big_table_db, eventually, lock_articles, pg_dump_children, send_raw, Server, TestDb,
    REFERENCE_SCHEMA,
};

#[tokio::test]
async fn password_is_not_in_pg_dumps_argv_and_disconnect_kills_it() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let url = format!("{}?sslmode=disable&sslpassword=Kp-Phrase9", db.url);
    let server = Server::builder(&url).start();
    let lock = lock_articles(&db).await;
    let stream = send_raw(&server, r#"{"opts":["--schema-only"]}"#);
    eventually("pg_dump to start", || {
        !pg_dump_children(server.pid()).is_empty()
    })
    .await;
    let pid = pg_dump_children(server.pid())[0];
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    assert!(
        argv.iter()
            .all(|arg| !arg.contains(PASSWORD) && !arg.contains("Kp-Phrase9")),
        "{argv:?}"
    );
    // The secrets are in pg_dump's own environment (readable only by its user).
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains(&format!("PGPASSWORD={PASSWORD}")));
    let service_file = environ
        .split('\0')
        .find_map(|var| var.strip_prefix("PGSERVICEFILE="))
        .expect("a service file for sslpassword")
        .to_owned();
    let metadata = std::fs::metadata(&service_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777,
        0o600
    );
    assert!(argv.contains(&"--encoding=utf8".to_owned()), "{argv:?}");
    assert!(argv.contains(&"--schema-only".to_owned()), "{argv:?}");
    assert_eq!(
        argv.iter().rfind(|a| !a.is_empty()).unwrap(),
        &format!(
            "{}?sslmode=disable",
            db.url.replace(&format!(":{PASSWORD}@"), "@")
        )
    );

    // The client leaves while pg_dump waits for the lock: pg_dump must go too.
    drop(stream);
    eventually("pg_dump to be killed", || {
        pg_dump_children(server.pid()).is_empty()
    })
    .await;
    drop(lock);
    let logs = server.wait_http_logs(1).await;
    assert_eq!(logs[0]["detail"]["complete"], false, "{:?}", logs[0]);
    assert!(server
        .logs()
        .iter()
        .all(|line| !line.contains(PASSWORD) && !line.contains("Kp-Phrase9")));
}

#[tokio::test]
async fn client_leaving_mid_stream_kills_pg_dump() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url).start();
    let mut stream = send_raw(&server, r#"{"opts":["--data-only"]}"#);
    let mut head = [0u8; 4096];
    let n = stream.read(&mut head).unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    assert_eq!(
        pg_dump_children(server.pid()).len(),
        1,
        "pg_dump still writing"
    );
    drop(stream);
    eventually("pg_dump to be killed", || {
        pg_dump_children(server.pid()).is_empty()
    })
    .await;
    // The server keeps serving.
    let reply = crate::support::dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn failure_after_the_first_bytes_aborts_the_response() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url).start();
    let mut response = crate::support::http()
        .post(server.url("/v1alpha1/pg_dump"))
        .body(r#"{"opts":["--data-only"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().expect("a first chunk");
    assert!(!first.is_empty());
    let pids = pg_dump_children(server.pid());
    assert_eq!(pids.len(), 1);
    std::process::Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    let outcome = crate::support::drain(&mut response).await;
    assert!(
        outcome.is_err(),
        "a truncated dump must not end like a complete one"
    );
    let logs = server.wait_http_logs(1).await;
    let detail = &logs[0]["detail"];
    assert_eq!(detail["complete"], false, "{detail}");
    assert_eq!(logs[0]["level"], "error", "{}", logs[0]);
    assert!(
        detail["error"].as_str().unwrap().contains("pg_dump"),
        "{detail}"
    );
}

/// Peak resident memory of a process, from `/proc/PID/status`.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn memory_stays_flat_while_streaming_a_large_dump() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url).start();
    for clean_output in [false, true] {
        let mut response = crate::support::http()
            .post(server.url("/v1alpha1/pg_dump"))
            .body(json!({"opts": ["--data-only"], "clean_output": clean_output}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut total = 0usize;
        while let Some(chunk) = response.chunk().await.unwrap() {
            total += chunk.len();
        }
        assert!(total > 60_000_000, "dump of {total} bytes");
    }
    // The reference buffers the whole dump (≥ 60 MB here); streaming keeps to a few MiB.
    let peak_mib = peak_rss_kib(server.pid()) / 1024;
    assert!(peak_mib < 32, "server peak RSS {peak_mib} MiB");
}
