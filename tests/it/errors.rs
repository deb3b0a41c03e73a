//! Every error row of SPEC §2, with its exact status and body, against the real binary.

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

#[tokio::test]
async fn disabled_pgdump_api_is_not_found() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .args(["--enabled-apis", "metadata,graphql"])
        .start();
    let reply = post_dump(&server, "not even json", &[]).await;
    assert_error(
        &reply,
        404,
        error("resource does not exist", "$", "not-found"),
    );
    assert!(server
        .logs()
        .iter()
        .all(|line| !line.contains("not even json")));
}

#[tokio::test]
async fn authentication_errors() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let body = r#"{"opts":["--schema-only"]}"#;
    let invalid = error(
        "invalid \"x-hasura-admin-secret\"/\"x-hasura-access-key\"",
        "$",
        "access-denied",
    );
    for headers in [
        [("x-hasura-admin-secret", "wrong")],
        [("x-hasura-admin-secret", "")],
        [("x-hasura-access-key", "t0p-secre")],
    ] {
        assert_error(
            &post_dump(&server, body, &headers).await,
            401,
            invalid.clone(),
        );
    }
    let required = error(
        "\"x-hasura-admin-secret\"/\"x-hasura-access-key\" required, but not found",
        "$",
        "access-denied",
    );
    assert_error(&post_dump(&server, body, &[]).await, 401, required);
    // The legacy header still works, and the secret never reaches the log.
    let ok = post_dump(&server, body, &[("x-hasura-access-key", SECRET)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    server.wait_http_logs(5).await;
    assert!(server.logs().iter().all(|line| !line.contains(SECRET)));
}

#[tokio::test]
async fn unauthorized_role_is_not_admin() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .secret(SECRET)
        .args(["--unauthorized-role", "anonymous"])
        .start();
    let reply = post_dump(&server, r#"{"opts":[]}"#, &[]).await;
    assert_error(
        &reply,
        400,
        error(
            "You have to be an admin to access this endpoint",
            "$",
            "access-denied",
        ),
    );
}

#[tokio::test]
async fn body_errors_in_request_order() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).start();
    let cases = [
        ("{", "invalid-json", "$"),
        (r#"{"opts":[]} trailing"#, "invalid-json", "$"),
        ("[1,2]", "parse-failed", "$"),
        ("{}", "parse-failed", "$"),
        (r#"{"opts":"-s"}"#, "parse-failed", "$.opts"),
        (r#"{"opts":["-s",{}]}"#, "parse-failed", "$.opts[1]"),
        (
            r#"{"opts":[],"clean_output":"true"}"#,
            "parse-failed",
            "$.clean_output",
        ),
        (r#"{"opts":[],"source":1}"#, "parse-failed", "$.source"),
        (r#"{"opts":[],"source":""}"#, "parse-failed", "$.source"),
    ];
    for (body, code, path) in cases {
        let reply = post_dump(&server, body, &[]).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let json = reply.json();
        assert_eq!(
            (json["code"].as_str(), json["path"].as_str()),
            (Some(code), Some(path)),
            "{body}: {json}"
        );
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_error(
        &post_dump(&server, "{}", &[]).await,
        400,
        error("key \"opts\" not found", "$", "parse-failed"),
    );
    assert_error(
        &post_dump(&server, r#"{"opts":[],"source":""}"#, &[]).await,
        400,
        error("empty string not allowed", "$.source", "parse-failed"),
    );
}

#[tokio::test]
async fn non_admin_role_is_refused_after_parsing() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let headers = [("x-hasura-admin-secret", SECRET), ("x-hasura-role", "user")];
    let reply = post_dump(&server, r#"{"opts":["-O"]}"#, &headers).await;
    assert_error(
        &reply,
        400,
        error(
            "You have to be an admin to access this endpoint",
            "$",
            "access-denied",
        ),
    );
    // A body that does not parse is reported before the role is looked at.
    let reply = post_dump(&server, "{}", &headers).await;
    assert_eq!(reply.json()["code"], "parse-failed");
}

#[tokio::test]
async fn unknown_source_is_not_found() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).start();
    let reply = dump_json(&server, json!({"opts": [], "source": "analytics"})).await;
    assert_error(
        &reply,
        400,
        error("source \"analytics\" not found", "$", "not-found"),
    );
}

#[tokio::test]
async fn rejected_options_name_the_option_and_its_index() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).start();
    let cases: [(&[&str], usize, &str); 8] = [
        (&["-O", "-f", "/tmp/x.sql"], 1, "-f"),
        (&["--schema-only", "--file=/tmp/x.sql"], 1, "--file"),
        (&["-Fd"], 0, "-F"),
        (&["-j", "4"], 0, "-j"),
        (&["-h", "evil.example"], 0, "-h"),
        (&["--role=postgres"], 0, "--role"),
        (&["otherdb"], 0, "otherdb"),
        (&["--no-such-option"], 0, "--no-such-option"),
    ];
    for (opts, index, named) in cases {
        let reply = dump_json(&server, json!({ "opts": opts })).await;
        assert_eq!(reply.status, 400, "{opts:?}");
        let json = reply.json();
        assert_eq!(json["code"], "invalid-params", "{json}");
        assert_eq!(json["path"], format!("$.opts[{index}]"), "{json}");
        assert!(
            json["error"].as_str().unwrap().contains(named),
            "{opts:?}: {json}"
        );
    }
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
async fn other_methods_are_405_with_allow() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).start();
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = crate::support::http()
            .request(method.clone(), server.url("/v1alpha1/pg_dump"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
        let json: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(json["code"], "method-not-allowed");
    }
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
