//! Sources from Hasura's own metadata database: `hdb_catalog.hdb_metadata` as Hasura creates
//! it, a v3 document with every URL form, followed live while the server runs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::postgres::{connect, PASSWORD};
use crate::support::{
    cluster, lock_articles, pg_dump_children, pg_dump_sessions, pgdump_api, post_dump, Reply,
    Server, TestDb, REFERENCE_SCHEMA,
};

const SECRET: &str = "meta-admin-secret";

/// Hasura's `initialise.sql` for the table that holds the metadata.
const HDB_METADATA: &str = "
CREATE SCHEMA IF NOT EXISTS hdb_catalog;
CREATE TABLE hdb_catalog.hdb_metadata (
  id INTEGER PRIMARY KEY,
  metadata JSON NOT NULL,
  resource_version INTEGER NOT NULL DEFAULT 1 UNIQUE
);";

/// A database holding Hasura's metadata table.
async fn metadata_db() -> TestDb {
    TestDb::with(HDB_METADATA).await
}

/// A source database with a table named after it, to tell dumps apart.
async fn source_db(table: &str) -> TestDb {
    TestDb::with(&format!("CREATE TABLE {table} (id int);")).await
}

/// A v3 metadata document of `(name, kind, database_url)`.
fn document(sources: &[(&str, &str, Value)]) -> Value {
    let sources: Vec<_> = sources
        .iter()
        .map(|(name, kind, url)| {
            json!({"name": name, "kind": kind, "tables": [], "configuration": {
                "connection_info": {"database_url": url, "isolation_level": "read-committed",
                                    "use_prepared_statements": false}}})
        })
        .collect();
    json!({"version": 3, "sources": sources})
}

/// Stores `metadata` as Hasura does: a new row, or the row updated with its version bumped.
async fn store(db: &TestDb, metadata: &Value) {
    db.client()
        .await
        .execute(
            "INSERT INTO hdb_catalog.hdb_metadata(id, metadata) VALUES (1, $1::text::json)
             ON CONFLICT (id) DO UPDATE SET metadata = $1::text::json,
               resource_version = hdb_catalog.hdb_metadata.resource_version + 1",
            &[&metadata.to_string()],
        )
        .await
        .unwrap();
}

fn url_of(db: &TestDb) -> Value {
    Value::String(db.url.clone())
}

/// Dumps the schema of `source` as admin.
async fn dump(server: &Server, source: &str) -> Reply {
    let body = json!({"opts": ["--schema-only"], "source": source}).to_string();
    post_dump(server, body, &[("x-hasura-admin-secret", SECRET)]).await
}

/// Polls until `check` holds of a dump of `source`, for at most `within`.
async fn until(server: &Server, source: &str, within: Duration, check: impl Fn(&Reply) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let reply = dump(server, source).await;
        if check(&reply) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{source}: still {} {} after {within:?}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a log line mentions `needle`, for at most `within`.
async fn until_logged(server: &Server, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while log_lines(server, needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} logged after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dumped(reply: &Reply, table: &str) -> bool {
    reply.status == 200
        && reply
            .text()
            .contains(&format!("CREATE TABLE public.{table}"))
}

/// The log lines of `server` that mention `needle`.
fn log_lines(server: &Server, needle: &str) -> Vec<String> {
    server
        .logs()
        .into_iter()
        .filter(|line| line.contains(needle))
        .collect()
}

#[tokio::test]
async fn every_url_form_in_hasuras_metadata_is_dumped() {
    let meta = metadata_db().await;
    let dbs = [
        source_db("in_string").await,
        source_db("in_env").await,
        source_db("in_params").await,
        source_db("in_file").await,
        source_db("in_template").await,
        source_db("in_pg").await,
        source_db("in_citus").await,
    ];
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("db-url");
    // A rotated password holding `@` and `/`, unencoded, as Hasura accepts it from a file.
    let client = connect(&cluster().url("postgres")).await;
    client
        .batch_execute("CREATE ROLE rotated LOGIN SUPERUSER PASSWORD 'Fx7@q/Lm3'")
        .await
        .ok();
    std::fs::write(
        &file,
        format!(
            "postgres://rotated:Fx7@q/Lm3@127.0.0.1:{}/{}\n",
            cluster().port,
            dbs[3].name
        ),
    )
    .unwrap();
    let port = cluster().port;
    let metadata = document(&[
        ("str", "postgres", url_of(&dbs[0])),
        ("env", "postgres", json!({"from_env": "PG_DATABASE_URL"})),
        (
            "params",
            "postgres",
            json!({"connection_parameters": {"host": "127.0.0.1", "port": port,
                "username": "postgres", "password": PASSWORD, "database": dbs[2].name}}),
        ),
        ("file", "postgres", json!({"dynamic_from_file": file})),
        (
            "template",
            "postgres",
            json!(format!(
                "postgres://postgres:{{{{PG_PW}}}}@127.0.0.1:{port}/{}",
                dbs[4].name
            )),
        ),
        ("short", "pg", url_of(&dbs[5])),
        ("citus", "citus", url_of(&dbs[6])),
        ("unset", "postgres", json!({"from_env": "NOT_SET_ANYWHERE"})),
        (
            "mssql",
            "mssql",
            json!("Driver={ODBC Driver 18 for SQL Server};"),
        ),
    ]);
    store(&meta, &metadata).await;
    let server = Server::builder_bare()
        .secret(SECRET)
        .env("HASURA_GRAPHQL_METADATA_DATABASE_URL", &meta.url)
        .env("PG_DATABASE_URL", &dbs[1].url)
        .env("PG_PW", PASSWORD)
        .env(
            "HASURA_GRAPHQL_DYNAMIC_SECRETS_ALLOWED_PATH_PREFIX",
            &secrets.path().display().to_string(),
        )
        .start();

    for (source, table) in [
        ("str", "in_string"),
        ("env", "in_env"),
        ("params", "in_params"),
        ("file", "in_file"),
        ("template", "in_template"),
        ("short", "in_pg"),
        ("citus", "in_citus"),
    ] {
        let reply = dump(&server, source).await;
        assert!(
            dumped(&reply, table),
            "{source}: {} {}",
            reply.status,
            reply.text()
        );
    }
    let unset = dump(&server, "unset").await;
    assert_eq!(unset.status, 500, "{}", unset.text());
    assert!(
        unset.text().contains("NOT_SET_ANYWHERE"),
        "{}",
        unset.text()
    );
    let mssql = dump(&server, "mssql").await;
    assert_eq!(
        (mssql.status, mssql.json()["code"].as_str()),
        (400, Some("not-supported"))
    );
    // No `default`: neither the metadata nor the database URL names one.
    assert_eq!(dump(&server, "default").await.status, 400);

    // Each source is named in the log with its kind and where its URL came from.
    for (source, from) in [
        ("env", "from_env PG_DATABASE_URL"),
        ("params", "connection_parameters"),
        ("file", "dynamic_from_file"),
        ("template", "database_url template of PG_PW"),
        ("short", "database_url string"),
    ] {
        let lines = log_lines(&server, &format!("\"source\":\"{source}\""));
        assert!(
            lines.iter().any(|line| line.contains(from)),
            "{source}: {lines:?}"
        );
    }
    assert!(!log_lines(&server, "NOT_SET_ANYWHERE").is_empty());
    let logs = server.logs().join("\n");
    for secret in [PASSWORD, "Fx7@q/Lm3", "Fx7%40q"] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
    client
        .batch_execute("DROP ROLE IF EXISTS rotated")
        .await
        .ok();
}

#[tokio::test]
async fn changes_to_the_metadata_are_followed_without_a_restart() {
    let meta = metadata_db().await;
    let busy = TestDb::with(REFERENCE_SCHEMA).await;
    let (b1, b2) = (source_db("first_b").await, source_db("second_b").await);
    let admin = connect(&cluster().url("postgres")).await;
    store(&meta, &document(&[("a", "postgres", url_of(&busy))])).await;
    let server = Server::builder_bare()
        .secret(SECRET)
        .args(["--enabled-apis", "pgdump,metrics"])
        .env("HASURA_GRAPHQL_METADATA_DATABASE_URL", &meta.url)
        .start();
    assert!(dumped(&dump(&server, "a").await, "articles"));

    // A dump of `a` that stays in flight through every change below.
    let lock = lock_articles(&busy).await;
    let in_flight = tokio::spawn({
        let url = server.url("/v1alpha1/pg_dump");
        async move {
            let response = crate::support::http()
                .post(url)
                .header("x-hasura-admin-secret", SECRET)
                .body(r#"{"opts": ["--schema-only"], "source": "a"}"#)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await)
        }
    });
    tokio::time::timeout(Duration::from_secs(30), async {
        while pg_dump_sessions(&admin, &busy).await == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("pg_dump connected");
    // Nothing from the metadata's connection strings is on a command line (`ps`).
    for pid in pg_dump_children(server.pid())
        .into_iter()
        .chain([server.pid()])
    {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains(PASSWORD), "{pid}: {cmdline}");
    }

    let within = Duration::from_secs(3);
    // Added.
    store(
        &meta,
        &document(&[
            ("a", "postgres", url_of(&busy)),
            ("b", "postgres", url_of(&b1)),
        ]),
    )
    .await;
    until(&server, "b", within, |reply| dumped(reply, "first_b")).await;
    // Removed (a dump of `a` would wait for the lock: the log tells when it is gone).
    store(&meta, &document(&[("b", "postgres", url_of(&b1))])).await;
    until_logged(&server, "source removed", within).await;
    let gone = dump(&server, "a").await;
    assert_eq!(
        (gone.status, gone.json()["code"].as_str()),
        (400, Some("not-found"))
    );
    // Changed URL.
    store(&meta, &document(&[("b", "postgres", url_of(&b2))])).await;
    until(&server, "b", within, |reply| dumped(reply, "second_b")).await;
    // Not a metadata document: the last good sources stay.
    store(&meta, &json!({"version": 3, "sources": "oops"})).await;
    crate::support::eventually("the invalid document logged", || {
        !log_lines(&server, "not a valid document").is_empty()
    })
    .await;
    assert!(dumped(&dump(&server, "b").await, "second_b"));
    // An invalid source keeps its last good definition; the others change.
    store(
        &meta,
        &document(&[
            ("b", "postgres", json!([1])),
            ("c", "postgres", url_of(&b1)),
        ]),
    )
    .await;
    until(&server, "c", within, |reply| dumped(reply, "first_b")).await;
    assert!(dumped(&dump(&server, "b").await, "second_b"));
    assert!(log_lines(&server, "invalid source")
        .iter()
        .any(|l| l.contains("\"source\":\"b\"")));
    // Restored.
    store(&meta, &document(&[("b", "postgres", url_of(&b1))])).await;
    until(&server, "b", within, |reply| dumped(reply, "first_b")).await;
    until(&server, "c", within, |reply| reply.status == 400).await;

    // The dump of the removed source went on to its end.
    drop(lock);
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), in_flight)
        .await
        .expect("the in-flight dump ended")
        .unwrap();
    let body = body.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("CREATE TABLE public.articles"), "{body}");
    assert!(body.contains("PostgreSQL database dump complete"), "{body}");

    let metrics = crate::support::http()
        .get(server.url("/v1/metrics"))
        .header("x-hasura-admin-secret", SECRET)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pgdump_metadata_resource_version 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgdump_metadata_refreshes_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgdump_metadata_refresh_failures_total{reason=\"invalid\"} 2"),
        "{metrics}"
    );
    let changes = log_lines(&server, "\"type\":\"schema-sync\"");
    for change in ["source added", "source removed", "source changed"] {
        assert!(
            changes.iter().any(|l| l.contains(change)),
            "{change}: {changes:?}"
        );
    }
}

#[tokio::test]
async fn a_new_source_is_found_before_the_next_poll() {
    let meta = metadata_db().await;
    let db = source_db("found_at_once").await;
    store(&meta, &document(&[])).await;
    let server = Server::builder_bare()
        .secret(SECRET)
        .args(["--schema-sync-poll-interval", "600000"])
        .env("HASURA_GRAPHQL_METADATA_DATABASE_URL", &meta.url)
        .start();
    assert_eq!(dump(&server, "late").await.status, 400);
    store(&meta, &document(&[("late", "postgres", url_of(&db))])).await;
    let reply = dump(&server, "late").await;
    assert!(
        dumped(&reply, "found_at_once"),
        "{} {}",
        reply.status,
        reply.text()
    );
}

#[tokio::test]
async fn dumps_of_known_sources_go_on_when_the_metadata_database_stops() {
    let meta_cluster = xtask::Cluster::start(&cluster().bin_dir, "meta", PASSWORD, &[])
        .unwrap_or_else(|err| panic!("{err:#}"));
    meta_cluster
        .create_database("hasura", HDB_METADATA)
        .await
        .unwrap();
    let meta_client = meta_cluster.connect("hasura").await.unwrap();
    let db = source_db("kept").await;
    let metadata = document(&[("kept", "postgres", url_of(&db))]);
    meta_client
        .execute(
            "INSERT INTO hdb_catalog.hdb_metadata(id, metadata) VALUES (1, $1::text::json)",
            &[&metadata.to_string()],
        )
        .await
        .unwrap();
    drop(meta_client);
    let server = Server::builder_bare()
        .secret(SECRET)
        .args(["--schema-sync-poll-interval", "100"])
        .env(
            "HASURA_GRAPHQL_METADATA_DATABASE_URL",
            &meta_cluster.url("hasura"),
        )
        .start();
    assert!(dumped(&dump(&server, "kept").await, "kept"));

    meta_cluster.stop();
    crate::support::eventually("the outage logged", || {
        !log_lines(&server, "unreachable").is_empty()
    })
    .await;
    for _ in 0..3 {
        assert!(dumped(&dump(&server, "kept").await, "kept"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Unknown names are answered at once, not after another attempt to connect.
    let started = Instant::now();
    assert_eq!(dump(&server, "unknown").await.status, 400);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Logged once per outage, not once per poll.
    assert_eq!(
        log_lines(&server, "unreachable").len(),
        1,
        "{:?}",
        server.logs()
    );
    assert!(!server.logs().join("\n").contains(PASSWORD));
}

#[tokio::test]
async fn an_unreachable_metadata_database_at_startup_serves_the_database_url() {
    let db = source_db("from_database_url").await;
    let port = xtask::cluster::free_port().unwrap();
    let server = Server::builder(&db.url)
        .secret(SECRET)
        .env(
            "HASURA_GRAPHQL_METADATA_DATABASE_URL",
            &format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/hasura"),
        )
        .start();
    assert!(dumped(&dump(&server, "default").await, "from_database_url"));
    assert!(!log_lines(&server, "unreachable").is_empty());
    assert!(!server.logs().join("\n").contains(PASSWORD));
}

#[tokio::test]
async fn the_database_urls_database_is_read_when_it_holds_the_metadata() {
    let hasura = metadata_db().await;
    hasura
        .client()
        .await
        .batch_execute("CREATE TABLE in_default (id int);")
        .await
        .unwrap();
    let other = source_db("in_other").await;
    let metadata = document(&[
        (
            "default",
            "postgres",
            json!({"from_env": "HASURA_GRAPHQL_DATABASE_URL"}),
        ),
        ("other", "postgres", json!({"from_env": "PG_OTHER_URL"})),
    ]);
    store(&hasura, &metadata).await;
    let server = Server::builder(&hasura.url)
        .secret(SECRET)
        .env("PG_OTHER_URL", &other.url)
        .start();
    assert!(dumped(&dump(&server, "other").await, "in_other"));
    assert!(dumped(&dump(&server, "default").await, "in_default"));
}

#[tokio::test]
async fn a_name_in_both_the_sources_file_and_the_metadata_is_a_startup_error() {
    let meta = metadata_db().await;
    let db = source_db("twice").await;
    store(&meta, &document(&[("twice", "postgres", url_of(&db))])).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("databases.yaml");
    std::fs::write(
        &file,
        format!("- name: twice\n  kind: postgres\n  configuration:\n    connection_info:\n      database_url: {}\n", db.url),
    )
    .unwrap();
    let output = pgdump_api()
        .args(["serve", "--server-port", "0", "--pg-dump-path"])
        .arg(cluster().pg_dump())
        .arg("--sources-file")
        .arg(&file)
        .env("HASURA_GRAPHQL_METADATA_DATABASE_URL", &meta.url)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"twice\""), "{stderr}");
    assert!(stderr.contains("databases.yaml"), "{stderr}");
    assert!(stderr.contains("Hasura's metadata"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test]
async fn a_database_url_without_metadata_keeps_no_session_open() {
    let db = source_db("plain").await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    assert!(dumped(&dump(&server, "default").await, "plain"));
    let admin = connect(&cluster().url("postgres")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = admin
            .query(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'pgdump-api'",
                &[&db.name],
            )
            .await
            .unwrap();
        if rows[0].get::<_, i64>(0) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "pgdump-api keeps a session open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_metadata_database_that_comes_up_later_is_read() {
    let fallback = source_db("until_then").await;
    let db = source_db("came_later").await;
    let name = format!("hasura_later_{}", std::process::id());
    let server = Server::builder(&fallback.url)
        .secret(SECRET)
        .env(
            "HASURA_GRAPHQL_METADATA_DATABASE_URL",
            &cluster().url(&name),
        )
        .start();
    assert!(dumped(&dump(&server, "default").await, "until_then"));
    cluster()
        .create_database(&name, HDB_METADATA)
        .await
        .unwrap();
    let client = cluster().connect(&name).await.unwrap();
    let metadata = document(&[("later", "postgres", url_of(&db))]);
    client
        .execute(
            "INSERT INTO hdb_catalog.hdb_metadata(id, metadata) VALUES (1, $1::text::json)",
            &[&metadata.to_string()],
        )
        .await
        .unwrap();
    drop(client);
    until(&server, "later", Duration::from_secs(20), |reply| {
        dumped(reply, "came_later")
    })
    .await;
    assert!(!log_lines(&server, "reachable again").is_empty());
    drop(server);
    let drop_it = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    let admin = connect(&cluster().url("postgres")).await;
    admin.batch_execute(&drop_it).await.ok();
}
