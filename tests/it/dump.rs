//! Successful dumps: the reference case, raw output equal to pg_dump's own, formats, gzip.

use std::io::Read;

use serde_json::json;

use crate::support::{
    dump_json, normalize_restrict_key, pg_dump_directly, post_dump, Server, TestDb,
    REFERENCE_SCHEMA,
};

const REFERENCE_REQUEST: &str =
    r#"{"opts":["-O","-x","--schema-only","--schema","public"],"clean_output":true}"#;

#[tokio::test]
async fn reference_case() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).secret("s3cret").start();
    let admin = [
        ("x-hasura-admin-secret", "s3cret"),
        ("x-hasura-role", "admin"),
    ];
    let reply = post_dump(&server, REFERENCE_REQUEST, &admin).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/sql; charset=utf-8")
    );
    let sql = reply.text();
    assert!(
        sql.starts_with("SET check_function_bodies = false;\n"),
        "{sql}"
    );
    for line in sql.lines() {
        assert!(!line.trim().is_empty(), "blank line in {sql}");
        assert!(!line.starts_with("--"), "comment in {sql}");
        assert!(!line.starts_with('\\'), "meta-command in {sql}");
        assert!(!line.contains("notify_hasura"), "trigger in {sql}");
    }
    insta::assert_snapshot!("reference_case", sql);

    let user = [
        ("x-hasura-admin-secret", "s3cret"),
        ("x-hasura-role", "user"),
    ];
    let reply = post_dump(&server, REFERENCE_REQUEST, &user).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["code"], "access-denied");
}

#[tokio::test]
async fn raw_output_is_pg_dumps_own() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO authors (name) VALUES ('Ann'), (''), (E'multi\nline');
             INSERT INTO articles (author_id, title, body) VALUES (1, '-- not a comment', E'\n\nSET lock_timeout = 0;\n');",
        )
        .await
        .unwrap();
    let server = Server::builder(&db.url).start();
    for opts in [
        vec![],
        vec!["--schema-only"],
        vec!["--data-only", "--column-inserts"],
        vec!["-O", "-x", "--schema", "public"],
    ] {
        let reply = dump_json(&server, json!({ "opts": opts })).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let mut args = vec!["--encoding=utf8"];
        args.extend(&opts);
        let direct = pg_dump_directly(&args, &db.url);
        assert_eq!(
            normalize_restrict_key(&reply.text()),
            normalize_restrict_key(&String::from_utf8(direct).unwrap()),
            "opts {opts:?}"
        );
    }
}

#[tokio::test]
async fn custom_and_tar_formats_are_binary() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let reply = dump_json(&server, json!({"opts": ["-Fc", "-Z", "6"]})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert!(reply.body.starts_with(b"PGDMP"));
    let reply = dump_json(&server, json!({"opts": ["--format=tar"]})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    let reply = dump_json(&server, json!({"opts": ["-Fc"], "clean_output": true})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["path"], "$.opts[0]");
}

#[tokio::test]
async fn gzip_when_the_client_accepts_it() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let body = json!({"opts": ["--schema-only"]}).to_string();
    let plain = post_dump(&server, body.clone(), &[]).await;
    let zipped = post_dump(&server, body, &[("accept-encoding", "gzip")]).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding").as_deref(), Some("gzip"));
    let mut unzipped = String::new();
    gunzip(&zipped.body, &mut unzipped);
    assert_eq!(
        normalize_restrict_key(&unzipped),
        normalize_restrict_key(&plain.text())
    );
}

/// Decompresses with the system's gzip, to keep the test's dependencies lean.
fn gunzip(data: &[u8], out: &mut String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    child.stdout.take().unwrap().read_to_string(out).unwrap();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).start();
    let reply = post_dump(
        &server,
        r#"{"opts":["-s"]}"#,
        &[("x-request-id", "abc-123")],
    )
    .await;
    assert_eq!(reply.header("x-request-id").as_deref(), Some("abc-123"));
    let reply = post_dump(&server, r#"{"opts":["-s"]}"#, &[]).await;
    let generated = reply.header("x-request-id").unwrap();
    assert_eq!(uuid_version(&generated), Some('4'), "{generated}");
}

fn uuid_version(id: &str) -> Option<char> {
    let parts: Vec<&str> = id.split('-').collect();
    (parts.len() == 5 && id.len() == 36).then(|| parts[2].chars().next())?
}

#[tokio::test]
async fn empty_secret_header_is_ignored_without_a_secret() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let reply = post_dump(&server, REFERENCE_REQUEST, &[("x-hasura-admin-secret", "")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}
