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
