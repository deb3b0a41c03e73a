//! Parity with Hasura where it matters to its users' CI jobs, log pipelines and command
//! lines: byte-stable dumps (without a public restrict key), the http-log line's shape,
//! body errors in Hasura's words, and `graphql-engine`'s command line.

use serde_json::json;

use crate::support::{post_dump, Server, TestDb};

/// The key of a plain dump's `\restrict KEY` line.
fn restrict_key(sql: &str) -> String {
    sql.lines()
        .find_map(|line| line.strip_prefix("\\restrict "))
        .unwrap_or_else(|| panic!("no \\restrict line in:\n{sql}"))
        .to_owned()
}

async fn dump_with(server: &Server, secret: &str, opts: serde_json::Value) -> String {
    let body = json!({ "opts": opts }).to_string();
    let reply = post_dump(server, body, &[("x-hasura-admin-secret", secret)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test]
async fn raw_dumps_are_byte_identical_under_one_secret() {
    let db = TestDb::with("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);").await;
    let one = Server::builder(&db.url).secret("secret-one").start();
    let first = dump_with(&one, "secret-one", json!([])).await;
    let second = dump_with(&one, "secret-one", json!([])).await;
    assert_eq!(first, second, "two dumps of an unchanged database differ");
    let key = restrict_key(&first);
    assert!(
        key.bytes().all(|b| b.is_ascii_alphanumeric()) && key.len() >= 32,
        "{key}"
    );
    assert_ne!(key, "hasura", "a public key gives the restriction away");

    // Another deployment, another key; the same deployment restarted, the same key.
    let two = Server::builder(&db.url).secret("secret-two").start();
    let other = dump_with(&two, "secret-two", json!(["--schema-only"])).await;
    assert_ne!(restrict_key(&other), key);
    drop(one);
    let again = Server::builder(&db.url).secret("secret-one").start();
    assert_eq!(dump_with(&again, "secret-one", json!([])).await, first);

    // The caller's own key wins; other formats get none (pg_dump takes it for plain only).
    let mine = dump_with(&again, "secret-one", json!(["--restrict-key=Mine42"])).await;
    assert_eq!(restrict_key(&mine), "Mine42");
    let body = json!({"opts": ["-Fc"]}).to_string();
    let custom = post_dump(&again, body, &[("x-hasura-admin-secret", "secret-one")]).await;
    assert_eq!(custom.status, 200, "{}", custom.text());

    // The key is never logged.
    again.wait_http_logs(3).await;
    for server in [&again, &two] {
        let logs = server.logs().join("\n");
        assert!(
            !logs.contains(&key),
            "the restrict key is in the log:\n{logs}"
        );
    }
}

#[tokio::test]
async fn without_a_secret_pg_dump_chooses_a_random_key() {
    let db = TestDb::with("CREATE TABLE t (id int);").await;
    let server = Server::builder(&db.url).start();
    let first = dump_with(&server, "", json!(["--schema-only"])).await;
    let second = dump_with(&server, "", json!(["--schema-only"])).await;
    assert_ne!(restrict_key(&first), restrict_key(&second));
}

/// A log line read by the field paths a Hasura log pipeline uses.
#[tokio::test]
async fn http_log_has_hasuras_shape_and_a_dump_audit_record() {
    let db = TestDb::with("CREATE TABLE t (id int);").await;
    let server = Server::builder(&db.url).secret("s").start();
    let body = json!({"opts": ["--schema-only"], "clean_ouput": true}).to_string();
    let headers = [("x-hasura-admin-secret", "s"), ("x-request-id", "audit-1")];
    let reply = post_dump(&server, body, &headers).await;
    assert_eq!(reply.status, 200);
    let wrong = post_dump(&server, "{}", &[("x-hasura-admin-secret", "no")]).await;
    assert_eq!(wrong.status, 401);
    let logs = server.wait_http_logs(2).await;

    let line = logs
        .iter()
        .find(|log| {
            log["detail"]["operation"]["request_id"] == "audit-1"
                && log["detail"]["http_info"].is_object()
        })
        .unwrap_or_else(|| panic!("{logs:?}"));
    let timestamp = line["timestamp"].as_str().unwrap();
    assert!(
        timestamp.ends_with("+0000") && timestamp.len() == 28,
        "{timestamp}"
    );
    let info = &line["detail"]["http_info"];
    assert_eq!(info["status"], 200);
    assert_eq!(info["method"], "POST");
    assert_eq!(info["url"], "/v1alpha1/pg_dump");
    assert_eq!(info["ip"], "127.0.0.1");
    assert_eq!(info["http_version"], "HTTP/1.1");
    assert!(info["content_encoding"].is_null(), "{info}");
    let operation = &line["detail"]["operation"];
    let size = reply.body.len() as u64;
    assert_eq!(operation["response_size"], size);
    assert_eq!(operation["uncompressed_response_size"], size);
    assert!(operation["query_execution_time"].as_f64().unwrap() > 0.0);
    assert!(operation.get("error").is_none(), "{operation}");
    assert!(
        operation["request_read_time"].as_f64().unwrap() >= 0.0,
        "{operation}"
    );
    assert_eq!(operation["request_mode"], "non-graphql");
    assert_eq!(operation["user_vars"]["x-hasura-role"], "admin");
    let dump = &line["detail"]["dump"];
    assert_eq!(dump["source"], "default");
    assert_eq!(dump["opts"], json!(["--schema-only"]));
    assert_eq!(dump["role"], "admin");
    assert_eq!(dump["auth"], "admin-secret");
    assert_eq!(dump["completed"], true);
    assert_eq!(dump["outcome"], "complete");
    assert_eq!(dump["wire_bytes"], size);
    assert!(
        dump["pg_dump_version"].as_str().unwrap().starts_with("15."),
        "{dump}"
    );

    // The misspelt key is a warning, with the request id; the dump went ahead.
    let warning = server
        .logs()
        .into_iter()
        .find(|line| line.contains("clean_ouput"))
        .expect("a warning about clean_ouput");
    let warning: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(warning["level"], "warn");
    assert_eq!(warning["type"], "server");
    assert_eq!(warning["detail"]["request_id"], "audit-1");

    // A 401 is a warning, its error in Hasura's place.
    let denied = logs
        .iter()
        .find(|log| log["detail"]["http_info"]["status"] == 401)
        .unwrap_or_else(|| panic!("{logs:?}"));
    assert_eq!(denied["level"], "warn");
    assert_eq!(
        denied["detail"]["operation"]["error"]["code"],
        "access-denied"
    );
}

#[tokio::test]
async fn enabled_log_types_turn_http_log_off() {
    let db = TestDb::with("").await;
    let server = Server::builder(&db.url)
        .env("HASURA_GRAPHQL_ENABLED_LOG_TYPES", "startup")
        .start();
    let reply = crate::support::http()
        .get(server.url("/hasura/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.unwrap(), "OK");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(server.http_logs().is_empty(), "{:?}", server.http_logs());
}

/// Hasura reads the first of duplicate headers; so does the secret check here.
#[tokio::test]
async fn first_of_duplicate_secret_headers_wins() {
    let db = TestDb::with("CREATE TABLE t (id int);").await;
    let server = Server::builder(&db.url).secret("right").start();
    let send = |first: &'static str, second: &'static str| {
        let url = server.url("/v1alpha1/pg_dump");
        async move {
            crate::support::http()
                .post(url)
                .header("x-hasura-admin-secret", first)
                .header("x-hasura-admin-secret", second)
                .body(r#"{"opts":["--schema-only"]}"#)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send("right", "wrong").await, 200);
    assert_eq!(send("wrong", "right").await, 401);
}

/// `pgdump-api --admin-secret '' serve`, as `graphql-engine` takes options before `serve`;
/// the fatal error is a JSON line too.
#[test]
fn options_before_serve_and_fatal_errors_as_json_lines() {
    let output = crate::support::pgdump_api()
        .args(["--admin-secret", "", "serve"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("{err}: {stdout}"));
    assert_eq!(line["type"], "startup");
    assert_eq!(line["level"], "error");
    let info = line["detail"]["info"].as_str().unwrap();
    assert!(info.contains("is set but empty"), "{info}");
}

#[tokio::test]
async fn a_failed_probe_logs_postgresqls_words() {
    let db = TestDb::with("").await;
    let at = db.url.find('@').unwrap();
    let wrong = format!("postgres://postgres:wrong-password{}", &db.url[at..]);
    let server = Server::builder(&wrong).start();
    crate::support::eventually("the probe's warning", || {
        server
            .logs()
            .iter()
            .any(|line| line.contains("could not learn the server version"))
    })
    .await;
    let logs = server.logs().join("\n");
    assert!(
        logs.contains("FATAL: password authentication failed for user \\\"postgres\\\""),
        "{logs}"
    );
}

/// Body errors in the words of Hasura's parser, with Hasura's codes and paths.
#[tokio::test]
async fn body_errors_in_hasuras_words() {
    let db = TestDb::with("").await;
    let server = Server::builder(&db.url).start();
    for (body, code, path, error) in [
        ("", "invalid-json", "$", "Error in $: not enough input"),
        (
            "}{ x = 2",
            "invalid-json",
            "$",
            "Error in $: Failed reading: not a valid json value at '}{x=2'",
        ),
        (
            r#"{"opts":[]} x"#,
            "invalid-json",
            "$",
            "Error in $: endOfInput",
        ),
        (
            "[]",
            "parse-failed",
            "$",
            "parsing Object failed, expected Object, but encountered Array",
        ),
        (
            r#"{"opts":"-s"}"#,
            "parse-failed",
            "$.opts",
            "parsing [] failed, expected Array, but encountered String",
        ),
        (
            r#"{"opts":[1]}"#,
            "parse-failed",
            "$.opts[0]",
            "parsing String failed, expected String, but encountered Number",
        ),
    ] {
        let reply = post_dump(&server, body, &[]).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert_eq!(
            reply.json(),
            json!({"error": error, "path": path, "code": code}),
            "{body}"
        );
    }
}

/// A dump cut short says why in its audit record.
#[tokio::test]
async fn audit_record_says_why_a_dump_did_not_complete() {
    use std::io::Read;
    let db = crate::support::big_table_db().await;
    let server = Server::builder(&db.url).start();
    let mut stream = crate::support::send_raw(&server, r#"{"opts":["--data-only"]}"#);
    let mut first = [0u8; 4096];
    stream.read_exact(&mut first).unwrap();
    drop(stream);
    let logs = server.wait_http_logs(1).await;
    let dump = &logs[0]["detail"]["dump"];
    assert_eq!(dump["completed"], false, "{dump}");
    assert_eq!(dump["outcome"], "client_gone", "{dump}");
    assert_eq!(dump["auth"], "no-secret-configured", "{dump}");
    assert!(dump["uncompressed_bytes"].as_u64().unwrap() > 0, "{dump}");
}
