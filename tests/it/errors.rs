//! The error rows of SPEC §2 that need a real server or PostgreSQL: pg_dump's failures, and
//! bodies over a real socket. The rows decided before any database is reached are tested
//! in-process, in `src/http/tests.rs`.

use serde_json::{json, Value};

use crate::support::{dump_json, post_dump, Reply, Server, TestDb, REFERENCE_SCHEMA};

const SECRET: &str = "t0p-secret";

fn assert_error(reply: &Reply, status: u16, expected: Value) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(reply.json(), expected);
    // Keys in the wire order: error, path, code, internal.
    let keys: Vec<String> = reply.json().as_object().unwrap().keys().cloned().collect();
    let order = ["error", "path", "code", "internal"];
    assert_eq!(keys, order[..keys.len()], "{}", reply.text());
}

fn error(error: &str, path: &str, code: &str) -> Value {
    json!({"error": error, "path": path, "code": code})
}

/// The legacy secret header dumps, and no secret reaches the log. (Every authentication
/// error row is tested in-process, in `src/http/tests.rs`.)
#[tokio::test]
async fn legacy_secret_header_dumps_and_secrets_stay_out_of_the_log() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let body = r#"{"opts":["--schema-only"]}"#;
    for wrong in ["wrong", "t0p-secre"] {
        let reply = post_dump(&server, body, &[("x-hasura-admin-secret", wrong)]).await;
        assert_eq!(reply.status, 401, "{}", reply.text());
    }
    let ok = post_dump(&server, body, &[("x-hasura-access-key", SECRET)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    server.wait_http_logs(3).await;
    assert!(server.logs().iter().all(|line| !line.contains(SECRET)));
}

#[tokio::test]
async fn rejected_file_option_leaves_no_file() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.sql");
    for opts in [
        json!(["-f", target]),
        json!([format!("--file={}", target.display())]),
        json!([format!("-f{}", target.display())]),
        json!(["-sf", target]),
        json!(["--fi", target]),
    ] {
        let reply = dump_json(&server, json!({ "opts": opts })).await;
        assert_eq!(reply.status, 400, "{opts}: {}", reply.text());
        assert_eq!(reply.json()["code"], "invalid-params");
        assert!(!target.exists(), "{opts} wrote {}", target.display());
    }
}

#[tokio::test]
async fn pg_dump_failure_is_a_500_with_stderr_for_admins() {
    let db = TestDb::new().await;
    let missing = db.url.replace(&db.name, "no_such_database");
    let server = Server::builder(&missing).start();
    let reply = dump_json(&server, json!({"opts": []})).await;
    assert_eq!(reply.status, 500);
    let json = reply.json();
    assert_eq!(json["error"], "error while executing pg_dump");
    assert_eq!(json["code"], "unexpected");
    let internal = json["internal"].as_str().expect("internal for admins");
    assert!(internal.contains("no_such_database"), "{internal}");
    assert!(!internal.contains(crate::support::postgres::PASSWORD));

    let quiet = Server::builder(&missing)
        .args(["--admin-internal-errors", "false"])
        .start();
    let reply = dump_json(&quiet, json!({"opts": []})).await;
    assert_error(
        &reply,
        500,
        error("error while executing pg_dump", "$", "unexpected"),
    );

    let dev = Server::builder(&missing)
        .args(["--admin-internal-errors", "false", "--dev-mode"])
        .start();
    let reply = dump_json(&dev, json!({"opts": []})).await;
    assert!(reply.json()["internal"].is_string(), "{}", reply.text());
}

#[tokio::test]
async fn pg_dump_that_cannot_start_is_an_internal_exception() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("pg_dump");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} \"$@\"\n",
            crate::support::cluster().pg_dump().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let server = Server::builder(&db.url).pg_dump(&wrapper).start();
    std::fs::remove_file(&wrapper).unwrap();
    let reply = dump_json(&server, json!({"opts": []})).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["error"], "internal exception while executing pg_dump");
    assert_eq!(json["code"], "unexpected");
    assert!(json["internal"]
        .as_str()
        .unwrap()
        .contains("could not start"));
}

#[tokio::test]
async fn no_matching_table_is_the_callers_error() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let reply = dump_json(&server, json!({"opts": ["--table", "nope"]})).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["code"], "not-found");
    // pg_dump names the pattern only with --strict-names.
    let message = json["error"].as_str().unwrap();
    assert!(
        message.starts_with("pg_dump: error: no matching tables were found"),
        "{message}"
    );
    let reply = dump_json(&server, json!({"opts": ["--schema", "nope"]})).await;
    assert_eq!(reply.json()["code"], "not-found", "{}", reply.text());
}

#[tokio::test]
async fn oversized_body_is_413() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).start();
    let big = format!(r#"{{"opts":[],"pad":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let reply = post_dump(&server, big, &[]).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["code"], "payload-too-large");
    // A client that waits for 100 Continue is answered before it sends the body.
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(
        &mut raw,
        b"POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = std::io::Read::read(&mut raw, &mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // A chunked body of unknown length is cut off at the limit too.
    let chunks =
        futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let reply = post_dump(&server, reqwest::Body::wrap_stream(chunks), &[]).await;
    assert_eq!(reply.status, 413);
    // The server keeps serving.
    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200);
}
