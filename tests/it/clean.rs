//! `clean_output` end to end: cleaned dumps of tricky schemas and data, replayed through a
//! client that is not psql, must rebuild the database exactly.

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::json;
use tokio_postgres::Client;

use crate::support::{
    dump_json, normalize_restrict_key, pg_dump_directly, Server, TestDb, REFERENCE_SCHEMA,
};

/// Blank lines, `--` lines, dropped SET lines and psql meta-commands inside function bodies,
/// string literals, comments, views and identifiers.
const TRICKY_SCHEMA: &str = r#"
CREATE TABLE public.notes (
    id int PRIMARY KEY,
    body text,
    note text DEFAULT E'line one\n\n-- not a comment\nSET statement_timeout = 0;\n'
);
COMMENT ON TABLE public.notes IS E'A comment\n\n-- with a dash line\nSET lock_timeout = 0;\n\\restrict fake\n   \n';
CREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $body$
BEGIN

  -- a comment in the body
SET client_min_messages = warning;
CREATE SCHEMA public;
  RETURN 'x

-- y';
END;
$body$;
CREATE FUNCTION public.g() RETURNS text LANGUAGE sql AS $$ SELECT $a$

-- inner
\unrestrict abc
$a$ $$;
CREATE FUNCTION public.h() RETURNS trigger LANGUAGE plpgsql AS $_$
BEGIN
  EXECUTE 'SELECT $1';
  RETURN NEW;
END
$_$;
COMMENT ON FUNCTION public.h() IS '
CREATE TRIGGER "notify_hasura_x_INSERT" AFTER INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION "hdb_catalog"."notify_hasura_x_INSERT"();
';
CREATE VIEW public.v AS SELECT id, E'\n\n-- v\nSET row_security = off;\n' AS x FROM public.notes;
CREATE TABLE public."Weird
""Name"" -- x" ("col

-- y" text);
CREATE TABLE public.single (v text);
"#;

/// Values that look like what cleaning removes.
const TRICKY_DATA: &str = r#"
INSERT INTO public.notes (id, body) VALUES
  (1, ''), (2, E'multi\nline\n\nvalue'), (3, '-- starts with dashes'),
  (4, 'SET statement_timeout = 0;'), (5, E'\n'), (6, '   '), (7, E'\\restrict x'),
  (8, E'tab\there'), (9, NULL), (10, E'\\.'), (11, E'back\\slash'), (12, 'CREATE SCHEMA public;');
INSERT INTO public.single (v) VALUES
  (''), ('-- x'), ('SET statement_timeout = 0;'), ('   '), (E'\\restrict k'), (E'\n\n'),
  (E'-- a\n\n-- b'), ('CREATE SCHEMA public;'), (E'\r');
INSERT INTO public."Weird
""Name"" -- x" VALUES (E'\n-- z\n');
"#;

/// Runs cleaned SQL the way a migration tool that is not psql does: statements through the
/// simple query protocol, and `COPY … FROM stdin;` blocks through the COPY protocol.
pub(crate) async fn replay(client: &Client, sql: &str) {
    let mut batch = String::new();
    let mut lines = sql.split_inclusive('\n');
    while let Some(line) = lines.next() {
        if !line.starts_with("COPY ") {
            batch.push_str(line);
            continue;
        }
        if !batch.is_empty() {
            client
                .batch_execute(&batch)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{batch}"));
            batch.clear();
        }
        // A quoted table or column name may hold newlines: the statement ends at FROM stdin;
        let mut statement = line.to_owned();
        while !statement.trim_end().ends_with(" FROM stdin;") {
            statement.push_str(lines.next().expect("end of COPY statement"));
        }
        let mut data = String::new();
        for row in lines.by_ref() {
            if row.trim_end_matches('\n') == "\\." {
                break;
            }
            data.push_str(row);
        }
        let sink = client
            .copy_in::<_, Bytes>(statement.trim_end())
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from(data)).await.unwrap();
        sink.finish().await.unwrap();
    }
    if !batch.is_empty() {
        client
            .batch_execute(&batch)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{batch}"));
    }
}

/// A plain pg_dump of `db` for comparisons.
pub(crate) fn raw_dump(db: &TestDb, args: &[&str]) -> String {
    normalize_restrict_key(&String::from_utf8(pg_dump_directly(args, &db.url)).unwrap())
}

pub(crate) async fn clean_dump(server: &Server, opts: &[&str]) -> String {
    let reply = dump_json(server, json!({"opts": opts, "clean_output": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// The header is gone: no banner, no session SETs, no `\restrict`. (The same lines inside
/// literals and bodies must stay, so only the top of the dump is checked here; the replays
/// prove the rest.)
fn assert_clean(sql: &str) {
    let first = sql.lines().next().unwrap_or_default();
    assert!(
        first == "SET check_function_bodies = false;" || first.starts_with("INSERT INTO "),
        "{sql}"
    );
    assert!(sql.ends_with('\n'));
}

#[tokio::test]
async fn schema_then_column_inserts_replay_exactly() {
    let source = TestDb::with(&format!("{TRICKY_SCHEMA}{TRICKY_DATA}")).await;
    let server = Server::builder(&source.url).start();
    let target = TestDb::new().await;
    let client = target.client().await;

    let schema = clean_dump(&server, &["-O", "-x", "--schema-only"]).await;
    assert_clean(&schema);
    // The only `\restrict` line left is the one inside the table's comment.
    let restrict: Vec<&str> = schema
        .lines()
        .filter(|l| l.starts_with("\\restrict"))
        .collect();
    assert_eq!(restrict, ["\\restrict fake"], "{schema}");
    client.batch_execute(&schema).await.unwrap();
    assert_eq!(
        raw_dump(&target, &["--schema-only"]),
        raw_dump(&source, &["--schema-only"])
    );

    let data = clean_dump(&server, &["--data-only", "--column-inserts"]).await;
    assert_clean(&data);
    client.batch_execute(&data).await.unwrap();
    assert_eq!(raw_dump(&target, &[]), raw_dump(&source, &[]));
}

#[tokio::test]
async fn copy_data_replays_exactly() {
    let source = TestDb::with(&format!("{TRICKY_SCHEMA}{TRICKY_DATA}")).await;
    let server = Server::builder(&source.url).start();
    let target = TestDb::new().await;
    let client = target.client().await;

    let schema = clean_dump(&server, &["--schema-only"]).await;
    replay(&client, &schema).await;
    let data = clean_dump(&server, &["--data-only"]).await;
    assert!(data.contains(" FROM stdin;\n"), "{data}");
    // The empty-string row of `single` is an empty COPY line: kept.
    assert!(data.contains("FROM stdin;\n\n"), "{data}");
    replay(&client, &data).await;
    assert_eq!(raw_dump(&target, &[]), raw_dump(&source, &[]));

    // Schema and data in one cleaned dump replay the same way.
    let fresh = TestDb::new().await;
    replay(&fresh.client().await, &clean_dump(&server, &[]).await).await;
    assert_eq!(raw_dump(&fresh, &[]), raw_dump(&source, &[]));
}

/// Hasura's own cleaning: every line tested, wherever it is.
fn reference_clean(sql: &str) -> String {
    const DROPPED: [&str; 14] = [
        "SET statement_timeout = 0;",
        "SET lock_timeout = 0;",
        "SET idle_in_transaction_session_timeout = 0;",
        "SET client_encoding = 'UTF8';",
        "SET standard_conforming_strings = on;",
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "SET xmloption = content;",
        "SET client_min_messages = warning;",
        "SET row_security = off;",
        "SET default_tablespace = '';",
        "SET default_with_oids = false;",
        "SET default_table_access_method = heap;",
        "CREATE SCHEMA public;",
        "COMMENT ON SCHEMA public IS 'standard public schema';",
    ];
    let trigger = regex::Regex::new(
        r#"^CREATE TRIGGER "?notify_hasura_.+"? AFTER [[:alnum:]]+ ON .+ FOR EACH ROW EXECUTE (FUNCTION|PROCEDURE) "?hdb_catalog"?\."?notify_hasura_.+"?\(\);$"#,
    )
    .unwrap();
    sql.lines()
        .filter(|line| {
            !(line.trim().is_empty()
                || line.starts_with("--")
                || DROPPED.contains(line)
                || trigger.is_match(line))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[tokio::test]
async fn same_as_the_reference_where_it_was_right() {
    let source = TestDb::with(REFERENCE_SCHEMA).await;
    source
        .client()
        .await
        .batch_execute("INSERT INTO authors (name) VALUES ('Ann'), ('Bob');")
        .await
        .unwrap();
    let server = Server::builder(&source.url).start();
    for opts in [
        vec!["-O", "-x", "--schema-only", "--schema", "public"],
        vec!["-O", "-x"],
        vec!["--data-only", "--column-inserts"],
    ] {
        let raw = dump_json(&server, json!({ "opts": opts })).await.text();
        let expected: String = reference_clean(&raw)
            .lines()
            .filter(|line| {
                (!line.starts_with('\\') || *line == "\\.")
                    && *line != "SET transaction_timeout = 0;"
            })
            .map(|line| format!("{line}\n"))
            .collect();
        // Same pg_dump run twice: only the restrict key differs, and both drop it.
        let cleaned = clean_dump(&server, &opts).await;
        assert_eq!(cleaned, expected, "opts {opts:?}");
    }
}
