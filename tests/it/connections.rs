//! The connection level: who may make the server read a body, how many connections it
//! keeps, what it does at its open-files limit, and how a dump is labelled for the client
//! that receives it.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;

use crate::support::{dump_json, post_dump, Server, TestDb, REFERENCE_SCHEMA};
const SECRET: &str = "conn-s3cret";

/// The server's peak resident memory so far, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Sends a request head and a 1 MiB body with a wrong secret; returns the status line, if
/// any came back before the connection ended.
async fn unauthenticated_megabyte(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: t\r\nx-hasura-admin-secret: wrong\r\n\
         Content-Length: {}\r\n\r\n",
        1024 * 1024
    );
    let chunk = vec![b' '; 64 * 1024];
    let (mut reader, mut writer) = stream.split();
    let send = async {
        let _ = writer.write_all(head.as_bytes()).await;
        for _ in 0..16 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    let receive = async {
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
        answer
    };
    let ((), answer) = tokio::join!(send, receive);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn unauthenticated_senders_do_not_grow_server_memory() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let before = peak_rss_kb(server.pid());
    let senders: Vec<_> = (0..200)
        .map(|_| tokio::spawn(unauthenticated_megabyte(server.addr)))
        .collect();
    let mut answered = 0;
    for sender in senders {
        if let Some(status) = sender.await.unwrap() {
            assert!(status.starts_with("HTTP/1.1 401"), "{status}");
            answered += 1;
        }
    }
    let grown_mb = (peak_rss_kb(server.pid()) - before) / 1024;
    eprintln!("answered {answered} of 200; peak RSS grew by {grown_mb} MB");
    assert!(grown_mb < 64, "peak RSS grew by {grown_mb} MB");
    let reply = post_dump(
        &server,
        r#"{"opts":["-s"]}"#,
        &[("x-hasura-admin-secret", SECRET)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn bad_secret_is_401_whatever_the_body() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let big = format!(r#"{{"opts":[],"pad":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    for body in [big, "not json".to_owned()] {
        let reply = post_dump(&server, body, &[("x-hasura-admin-secret", "wrong")]).await;
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert_eq!(reply.json()["code"], "access-denied");
    }
}

/// Opens `count` connections that send nothing (every third sends half a request head), as
/// many as the kernel lets through while the server may be refusing or closing them.
fn idle_connections(
    server: &Server,
    count: usize,
    half_sent_every: usize,
) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    (0..count)
        .filter_map(|i| {
            let mut stream =
                std::net::TcpStream::connect_timeout(&server.addr, Duration::from_millis(500))
                    .ok()?;
            if i % half_sent_every == 0 {
                let _ = stream.write_all(b"POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: t\r\n");
            }
            Some(stream)
        })
        .collect()
}

/// At a 256 open-files limit, 400 idle and header-less connections, then a real dump.
async fn dump_past_idle_connections(extra_args: &[&str], half_sent_every: usize) -> Server {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .secret(SECRET)
        .launcher(["prlimit", "--nofile=256:256"])
        // Long enough that no idle connection times out during the test.
        .args(["--request-header-timeout", "300"])
        .args(extra_args.iter().copied())
        .start();
    let idle = idle_connections(&server, 400, half_sent_every);
    assert!(idle.len() > 256, "only {} connections opened", idle.len());
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        post_dump(
            &server,
            r#"{"opts":["-s"]}"#,
            &[("x-hasura-admin-secret", SECRET)],
        ),
    )
    .await
    .expect("the dump was not answered within 20 s");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("CREATE TABLE public.articles"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the dump took {:?}",
        started.elapsed()
    );
    drop(idle);
    server
}

/// Log lines of the server that mention `text`.
fn log_lines_with(server: &Server, text: &str) -> usize {
    server
        .logs()
        .iter()
        .filter(|line| line.contains(text))
        .count()
}

#[tokio::test]
async fn idle_connections_at_the_open_files_limit_do_not_block_a_dump() {
    let server = dump_past_idle_connections(&[], 3).await;
    assert_eq!(log_lines_with(&server, "accept failed"), 0);
    assert_eq!(
        log_lines_with(&server, "closing idle connections"),
        1,
        "{:#?}",
        server.logs()
    );
}

/// Connections that sent half their request headers are idle too, and closed in batches: one
/// by one, each taking its grace to go, they kept a new request waiting for seconds.
#[tokio::test]
async fn half_sent_headers_do_not_hold_back_a_dump() {
    dump_past_idle_connections(&[], 1).await;
}

#[tokio::test]
async fn running_out_of_file_descriptors_closes_idle_connections_and_logs_once() {
    let server = dump_past_idle_connections(&["--max-connections", "100000"], 3).await;
    assert!(
        log_lines_with(&server, "accept failed") < 3,
        "{:#?}",
        server.logs()
    );
    assert_eq!(
        log_lines_with(&server, "closing idle connections"),
        1,
        "{:#?}",
        server.logs()
    );
    assert_eq!(log_lines_with(&server, "lowering the connection limit"), 1);
}

#[tokio::test]
async fn uncompressed_dump_is_labelled_sql() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    for opts in [
        json!(["-Z", "0"]),
        json!(["-Z0"]),
        json!(["--compress=0"]),
        json!(["-Z", "9", "-Z", "0"]),
    ] {
        let mut opts = opts.as_array().unwrap().clone();
        opts.push(json!("--schema-only"));
        let reply = dump_json(&server, json!({ "opts": opts })).await;
        assert_eq!(reply.status, 200, "{opts:?}: {}", reply.text());
        assert!(
            reply.text().contains("CREATE TABLE public.articles"),
            "{opts:?}"
        );
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/sql; charset=utf-8"),
            "{opts:?}"
        );
    }
}

/// Sends `request` on a raw socket and reads until the server closes the connection.
fn raw_exchange(server: &Server, request: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the server closes the connection");
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn http_10_dump_says_it_cannot_show_truncation_and_closes() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let body = r#"{"opts":["--schema-only"]}"#;
    for extra in ["", "Connection: keep-alive\r\n"] {
        let request = format!(
            "POST /v1alpha1/pg_dump HTTP/1.0\r\nHost: t\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (head, dump) = raw_exchange(&server, &request);
        assert!(head.starts_with("http/1.0 200"), "{head}");
        // Without `keep-alive` added for a client that asked for it.
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\nwarning: 199 pgdump-api \"http/1.0"),
            "{head}"
        );
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(dump.contains("CREATE TABLE public.articles"), "{dump}");
        assert!(dump.contains("PostgreSQL database dump complete"), "{dump}");
    }
    // HTTP/1.1 keeps its chunked encoding and no warning.
    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("warning"), None);
    assert_eq!(
        reply.header("transfer-encoding").as_deref(),
        Some("chunked")
    );
}
