//! The server around the endpoint: the request log, configuration and startup errors,
//! shutdown. (The public routes are tested in-process, in `src/http/tests.rs`.)

use std::process::Command;

use serde_json::json;

use crate::support::postgres::PASSWORD;
use crate::support::{dump_json, http, post_dump, Server, TestDb, REFERENCE_SCHEMA};

#[tokio::test]
async fn one_http_log_line_per_request_without_secrets_or_content() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    db.client()
        .await
        .batch_execute("INSERT INTO authors (name) VALUES ('Very Private Person');")
        .await
        .unwrap();
    let server = Server::builder(&db.url).secret("the-admin-secret").start();
    let admin = [
        ("x-hasura-admin-secret", "the-admin-secret"),
        ("x-request-id", "req-1"),
    ];
    let ok = post_dump(&server, r#"{"opts":["--data-only"]}"#, &admin).await;
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("Very Private Person"));
    let denied = post_dump(
        &server,
        r#"{"opts":[]}"#,
        &[("x-hasura-admin-secret", "nope")],
    )
    .await;
    assert_eq!(denied.status, 401);
    let logs = server.wait_http_logs(2).await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    let ok_log = logs
        .iter()
        .find(|l| l["detail"]["request_id"] == "req-1")
        .unwrap();
    let detail = &ok_log["detail"];
    assert_eq!(detail["status"], 200);
    assert_eq!(detail["method"], "POST");
    assert_eq!(detail["url"], "/v1alpha1/pg_dump");
    assert_eq!(detail["complete"], true);
    assert_eq!(detail["bytes"], ok.body.len());
    assert!(detail["duration_ms"].is_number() && detail["response_ms"].is_number());
    let denied_log = logs.iter().find(|l| l["detail"]["status"] == 401).unwrap();
    assert_eq!(denied_log["detail"]["code"], "access-denied");
    for line in server.logs() {
        for secret in ["the-admin-secret", "nope", PASSWORD, "Very Private Person"] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
    }
}

/// Runs `serve` expecting it to stop at startup: whether it exited successfully, and its
/// stderr. A server that is still running after a few seconds started, which counts as
/// success; it is killed.
fn run_serve(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    use std::io::Read;
    let mut command = crate::support::pgdump_api();
    command
        .arg("serve")
        .args(["--server-host", "127.0.0.1", "--server-port", "0"])
        .args(args)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (ok, stderr)
}

#[test]
fn startup_errors_are_clear() {
    let (ok, stderr) = run_serve(
        &[
            "--database-url",
            "postgres://x/y",
            "--enabled-apis",
            "pgdump,nope",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("metadata, graphql, pgdump, developer, config, metrics"),
        "{stderr}"
    );
    let pg_dump = crate::support::cluster().pg_dump();
    let (ok, stderr) = run_serve(&["--pg-dump-path", pg_dump.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("HASURA_GRAPHQL_DATABASE_URL"), "{stderr}");
    let (ok, stderr) = run_serve(
        &[
            "--database-url",
            "postgres://x/y",
            "--pg-dump-path",
            "/nonexistent/pg_dump",
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/pg_dump"), "{stderr}");
}

/// Settings that would open the server by accident stop it at startup, naming the setting
/// and no secret.
#[test]
fn settings_that_open_the_server_by_accident_stop_startup() {
    let pg_dump = crate::support::cluster().pg_dump();
    let pg_dump = pg_dump.to_str().unwrap();
    let url = (
        "HASURA_GRAPHQL_DATABASE_URL",
        "postgres://u:pw@127.0.0.1:1/db",
    );
    let cases: [(&[(&str, &str)], &str); 5] = [
        // The compose slip: `HASURA_GRAPHQL_ADMIN_SECRET: ${SECRET}` with SECRET unset.
        (
            &[url, ("HASURA_GRAPHQL_ADMIN_SECRET", "")],
            "is set but empty",
        ),
        (
            &[url, ("HASURA_GRAPHQL_ACCESS_KEY", "")],
            "is set but empty",
        ),
        (
            &[
                url,
                ("HASURA_GRAPHQL_ADMIN_SECRET", "s3cret"),
                ("HASURA_GRAPHQL_UNAUTHORIZED_ROLE", "admin"),
            ],
            "must not be admin",
        ),
        (
            &[url, ("HASURA_GRAPHQL_UNAUTHORIZED_ROLE", "anonymous")],
            "requires --admin-secret",
        ),
        // A password holding an unencoded `/`: libpq would read `Wk4@…` as the database name.
        (
            &[(
                "HASURA_GRAPHQL_DATABASE_URL",
                "postgres://u:Zq9/Wk4@127.0.0.1:1/db",
            )],
            "must be percent-encoded",
        ),
    ];
    for (envs, expected) in cases {
        let (ok, stderr) = run_serve(&["--pg-dump-path", pg_dump], envs);
        assert!(!ok, "{envs:?} started");
        assert!(stderr.contains(expected), "{envs:?}: {stderr}");
        for secret in ["s3cret", "Zq9", "Wk4"] {
            assert!(!stderr.contains(secret), "{envs:?}: {stderr}");
        }
    }
}

#[tokio::test]
async fn flags_win_over_environment() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url)
        .env("HASURA_GRAPHQL_ENABLED_APIS", "metadata")
        .env("HASURA_GRAPHQL_ADMIN_SECRET", "from-env")
        .args(["--enabled-apis", "pgdump"])
        .start();
    let reply = post_dump(
        &server,
        r#"{"opts":["-s"]}"#,
        &[("x-hasura-admin-secret", "from-env")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let server = Server::builder(&db.url)
        .env("HASURA_GRAPHQL_ENABLED_APIS", "metadata")
        .start();
    let reply = dump_json(&server, json!({"opts": ["-s"]})).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn sigterm_lets_the_running_dump_finish() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let lock = crate::support::lock_articles(&db).await;
    let url = server.url("/v1alpha1/pg_dump");
    let request = tokio::spawn(async move {
        let response = http()
            .post(url)
            .body(r#"{"opts":["-s"]}"#)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    crate::support::eventually("pg_dump to start", || {
        !crate::support::pg_dump_children(server.pid()).is_empty()
    })
    .await;
    let pid = server.pid();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.batch_execute("COMMIT;").await.unwrap();
    let (status, body) = request.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("CREATE TABLE public.articles"));
    let exit = server.terminate();
    assert!(exit.success(), "{exit}");
}

#[tokio::test]
async fn sources_file_from_a_hasura_project() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let cluster = crate::support::cluster();
    let yaml = format!(
        r#"- name: default
  kind: postgres
  configuration:
    connection_info:
      database_url:
        connection_parameters:
          host: 127.0.0.1
          port: {port}
          username: postgres
          password: {PASSWORD}
          database: {name}
      isolation_level: read-committed
      use_prepared_statements: true
  tables: "!include default/tables/tables.yaml"
- name: warehouse
  kind: bigquery
  configuration:
    service_account:
      from_env: BIGQUERY_SERVICE_ACCOUNT
"#,
        port = cluster.port,
        name = db.name
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("databases.yaml");
    std::fs::write(&file, yaml).unwrap();
    let server = Server::builder_with_sources(&file).start();
    let reply = dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("CREATE TABLE public.authors"));
    let reply = dump_json(&server, json!({"opts": [], "source": "warehouse"})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({
            "error": "source \"warehouse\" is of kind \"bigquery\": only postgres sources can be dumped",
            "path": "$",
            "code": "not-supported"
        })
    );

    // A reference to an unset variable stops the server at startup, naming what is wrong.
    std::fs::write(
        &file,
        "- name: default\n  kind: postgres\n  configuration:\n    connection_info:\n      database_url:\n        from_env: NO_SUCH_VARIABLE\n",
    )
    .unwrap();
    let pg_dump = crate::support::cluster().pg_dump();
    let (ok, stderr) = run_serve(
        &[
            "--sources-file",
            file.to_str().unwrap(),
            "--pg-dump-path",
            pg_dump.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    for part in ["databases.yaml", "\"default\"", "NO_SUCH_VARIABLE"] {
        assert!(stderr.contains(part), "{part} not in {stderr}");
    }
}

#[tokio::test]
async fn open_access_on_every_interface_is_warned_about() {
    let db = TestDb::new().await;
    let warning = "no admin secret is set";
    let everywhere = Server::builder(&db.url).host("*").start();
    assert!(
        everywhere.logs().iter().any(|line| line.contains(warning)),
        "{:?}",
        everywhere.logs()
    );
    let reply = dump_json(&everywhere, json!({"opts": ["-s"]})).await;
    assert_eq!(reply.status, 200);
    let loopback = Server::builder(&db.url).start();
    assert!(loopback.logs().iter().all(|line| !line.contains(warning)));
    let secured = Server::builder(&db.url).host("*").secret("s").start();
    assert!(secured.logs().iter().all(|line| !line.contains(warning)));
}
