//! `clean_output` against schemas built to mislead it: whatever a user who may create objects
//! puts in them, the cleaned dump replayed through a client that is not psql must rebuild
//! the same schema as psql restoring the raw dump.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::clean::{clean_dump, raw_dump, replay};
use crate::support::postgres::{cluster_of, Cluster};
use crate::support::{cluster, normalize_restrict_key, Server, TestDb, REFERENCE_SCHEMA};

/// The tag pg_dump makes for a body holding `$` and the first `len - 1` bytes of it.
fn pg_dump_tag(len: usize) -> String {
    "_XXXXXXX".chars().cycle().take(len).collect()
}

/// A function whose authorization check sits on a line starting with `--` inside a string
/// literal, behind a look-alike of its body's `len`-byte tag (same length, last byte
/// changed): a cleaner that takes the look-alike for the end of the body drops that line.
fn guarded_function(len: usize) -> String {
    let tag = pg_dump_tag(len);
    let lookalike = format!("${}Y$", &tag[..len - 1]);
    format!(
        "CREATE FUNCTION public.secret_{len}() RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  marker text;
  x text;
BEGIN
  marker := '{lookalike}';
  x := '
--'; IF current_user <> 'admin' THEN RAISE EXCEPTION 'denied'; END IF; x := '
';

  RETURN 'secret';
END
$fn$;
"
    )
}

/// Regression: the cleaner remembered 64 bytes of a dollar-quote tag and took any tag byte
/// after those as a match, so a look-alike closed a longer tag early and the body's lines
/// after it were cleaned as top-level code: the authorization check went.
#[tokio::test]
async fn long_dollar_tag_lookalike_does_not_close_body() {
    let schema: String = [65, 100, 1000].map(guarded_function).concat();
    let source = TestDb::with(&schema).await;
    let raw = raw_dump(&source, &["--schema-only"]);
    for len in [65, 100, 1000] {
        let tag = format!("${}$", pg_dump_tag(len));
        assert!(
            raw.contains(&format!("AS {tag}\n")),
            "pg_dump chose another tag:\n{raw}"
        );
    }

    let server = Server::builder(&source.url).start();
    let target = TestDb::new().await;
    let client = target.client().await;
    replay(&client, &clean_dump(&server, &["--schema-only"]).await).await;
    assert_eq!(raw_dump(&target, &["--schema-only"]), raw);
    for len in [65, 100, 1000] {
        let denied = client
            .query_one(&format!("SELECT public.secret_{len}()"), &[])
            .await
            .expect_err("the check must stay");
        assert!(format!("{denied:?}").contains("denied"), "{denied:?}");
    }
}

/// A tablespace for this test binary's cluster, in a directory the server owns beside its
/// data directory (removed with the cluster).
async fn tablespace(db: &TestDb) -> String {
    use std::os::unix::fs::MetadataExt;
    let client = db.client().await;
    let data: String = client
        .query_one("SELECT current_setting('data_directory')", &[])
        .await
        .unwrap()
        .get(0);
    let data = std::path::Path::new(&data);
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "ts_clean_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let dir = data.parent().unwrap().join(&name);
    std::fs::create_dir(&dir).unwrap();
    let owner = std::fs::metadata(data).unwrap();
    std::os::unix::fs::chown(&dir, Some(owner.uid()), Some(owner.gid())).unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLESPACE {name} LOCATION '{}'",
            dir.display()
        ))
        .await
        .unwrap();
    name
}

/// Many kinds of objects, in and out of a tablespace and a second table access method, in an
/// order that makes pg_dump change and restore its session settings mid-dump; bodies,
/// defaults, comments and data that hold what cleaning removes between statements.
fn varied_schema(ts: &str) -> String {
    format!(
        r#"
CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler;
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'it''s -- fine');
CREATE DOMAIN app.posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN app.note AS text
    DEFAULT E'line\n\n-- dash\nSET default_tablespace = '''';\n' CHECK (VALUE <> '');
CREATE TYPE app.pair AS (a integer, b text);
CREATE TYPE app.floatrange AS RANGE (subtype = float8);
CREATE COLLATION app.c2 (provider = libc, locale = 'C');
CREATE SEQUENCE app.counter START 100;
CREATE TABLE app.fast_first (id integer PRIMARY KEY USING INDEX TABLESPACE {ts}, v text)
    TABLESPACE {ts};
CREATE TABLE app.plain_after (id integer PRIMARY KEY, v text COLLATE app.c2 DEFAULT E'a\n\n-- b\n',
    CONSTRAINT v_check CHECK (v <> E'\n\n'));
CREATE TABLE app.other_am (id app.posint, m app.mood) USING heap2;
CREATE TABLE app.plain_again (id serial, n app.note, p app.pair, r app.floatrange,
    g integer GENERATED ALWAYS AS (id * 2) STORED);
CREATE TABLE app.both_kinds (id integer) USING heap2 TABLESPACE {ts};
CREATE TABLE app.last_plain (id integer, body text);
CREATE TABLE app."Odd
Name -- x" ("col

-- y" text) TABLESPACE {ts};
CREATE INDEX fast_idx ON app.plain_after (v) TABLESPACE {ts};
CREATE INDEX plain_idx ON app.last_plain (id);
CREATE TABLE app.events (id integer, at date, payload text) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') TABLESPACE {ts};
CREATE TABLE app.events_2025 PARTITION OF app.events
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_other PARTITION OF app.events DEFAULT USING heap2;
CREATE FUNCTION app.body_fn() RETURNS text LANGUAGE plpgsql AS $f$
BEGIN

  -- a comment line
SET default_tablespace = '';
  RETURN '$_XXXXXXX$ and $$ and
SET default_table_access_method = heap;

-- not a comment
\unrestrict x';
END
$f$;
CREATE FUNCTION app.with_settings() RETURNS integer LANGUAGE sql
    SET search_path = app SET default_tablespace = '' AS 'SELECT 1';
CREATE PROCEDURE app.proc(x integer) LANGUAGE plpgsql AS $$ BEGIN PERFORM x; END $$;
CREATE FUNCTION app.trig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t_when BEFORE UPDATE ON app.plain_after FOR EACH ROW
    WHEN (OLD.v IS DISTINCT FROM NEW.v AND NEW.v <> E'x\n\n-- y') EXECUTE FUNCTION app.trig();
CREATE TRIGGER notify_hasura_decoy AFTER INSERT ON app.last_plain FOR EACH ROW
    WHEN (NEW.body <> ' FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x')
    EXECUTE FUNCTION app.trig();
CREATE VIEW app.v AS SELECT id, v || E'\n\n-- v' AS w FROM app.plain_after;
CREATE MATERIALIZED VIEW app.mv TABLESPACE {ts} AS SELECT id FROM app.fast_first;
CREATE MATERIALIZED VIEW app.mv_plain AS SELECT id FROM app.last_plain;
COMMENT ON TABLE app.fast_first IS E'multi\n\n-- line\nSET default_table_access_method = heap;\n';
COMMENT ON FUNCTION app.body_fn() IS E'\nSET default_tablespace = '''';\n';
CREATE AGGREGATE app.my_sum(integer) (sfunc = int4pl, stype = integer);
CREATE RULE r_ins AS ON INSERT TO app.v DO INSTEAD
    INSERT INTO app.plain_after (id, v) VALUES (NEW.id, NEW.w);
ALTER TABLE app.last_plain ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON app.last_plain USING (body <> E'-- secret\n');
CREATE STATISTICS app.st ON id, body FROM app.last_plain;
CREATE TABLE public.in_public (id integer) TABLESPACE {ts};
CREATE TABLE public.plain_public (id integer);

INSERT INTO app.fast_first VALUES (1, ''), (2, E'\n\n'), (3, '-- x'), (4, E'\\.');
INSERT INTO app.plain_after VALUES (1, ''), (2, E'a\n\nSET default_tablespace = '''';');
INSERT INTO app.other_am VALUES (1, 'ok'), (2, 'it''s -- fine');
INSERT INTO app.plain_again (n, p, r) VALUES ('x', ROW(1, ''), '[1,2)'), (DEFAULT, NULL, NULL);
INSERT INTO app.events VALUES (1, '2024-05-01', ''), (2, '2025-05-01', E'\\.'), (3, '2030-01-01', E'\n');
INSERT INTO app.last_plain VALUES (1, ''), (2, NULL), (3, E'\r');
INSERT INTO app."Odd
Name -- x" VALUES (''), (E'\n-- z\n');
SELECT setval('app.counter', 150);
SELECT lo_from_bytea(0, 'large object -- data');
REFRESH MATERIALIZED VIEW app.mv;
"#
    )
}

/// A plain dump of `db` by `cluster`'s own pg_dump, restrict key normalised.
fn dump_of(cluster: &Cluster, db: &TestDb, args: &[&str]) -> String {
    let output = Command::new(cluster.pg_dump())
        .args(args)
        .arg(&db.url)
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    normalize_restrict_key(&String::from_utf8(output.stdout).unwrap())
}

/// Restores a raw dump with `cluster`'s psql, as pg_dump's output is meant to be restored.
fn psql_restore(cluster: &Cluster, db: &TestDb, sql: &str) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(sql.as_bytes()).unwrap();
    let output = Command::new(cluster.bin_dir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(file.path())
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds [`varied_schema`] on `cluster`, restores its raw dump with psql into one database
/// and replays its cleaned dump (by the server, through its pg_dump of that major) through
/// tokio-postgres into another: both must dump the same as the source.
async fn varied_schema_round_trip(cluster: &'static Cluster) {
    let source = TestDb::new_on(cluster).await;
    let ts = tablespace(&source).await;
    source
        .client()
        .await
        .batch_execute(&varied_schema(&ts))
        .await
        .unwrap();
    let raw = dump_of(cluster, &source, &[]);
    for change in [
        format!("SET default_tablespace = {ts};"),
        "SET default_table_access_method = heap2;".to_owned(),
    ] {
        assert!(raw.contains(&format!("\n{change}\n")), "{raw}");
    }

    let restored = TestDb::new_on(cluster).await;
    psql_restore(cluster, &restored, &raw);
    let expected = dump_of(cluster, &restored, &[]);
    assert_eq!(expected, raw, "psql's restore differs from the source");

    let server = Server::builder(&source.url)
        .pg_dump(cluster.pg_dump())
        .start();
    let replayed = TestDb::new_on(cluster).await;
    replay(&replayed.client().await, &clean_dump(&server, &[]).await).await;
    assert_eq!(dump_of(cluster, &replayed, &[]), expected);
}

/// Regression: rule 3 dropped pg_dump's `SET default_tablespace = '';` and
/// `SET default_table_access_method = heap;` after objects in another tablespace or access
/// method, so every later table was created there too. A cleaned dump of a varied schema,
/// replayed through a client that is not psql, must give the same database as psql restoring
/// the raw dump.
#[tokio::test]
async fn setting_reset_after_a_kept_change_is_kept() {
    varied_schema_round_trip(cluster()).await;
}

/// The same round trip on every server of the version matrix that comes with its own
/// pg_dump and psql (14 to 18): each pg_dump writes its settings its own way.
#[tokio::test]
async fn varied_schema_replays_like_psql_restores_on_servers_14_to_18() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-matrix");
    let output = Command::new(&script)
        .output()
        .expect("run scripts/postgres-matrix");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut servers: Vec<(u32, PathBuf)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut words = line.splitn(3, ' ');
            let (Some("server"), Some(major), Some(bin)) =
                (words.next(), words.next(), words.next())
            else {
                return None;
            };
            Some((major.parse().ok()?, PathBuf::from(bin)))
        })
        .filter(|(major, bin)| *major >= 14 && bin.join("psql").is_file())
        .collect();
    servers.sort();
    let majors: Vec<u32> = servers.iter().map(|(major, _)| *major).collect();
    assert_eq!(majors, (14..=18).collect::<Vec<_>>());
    let clusters: Vec<&'static Cluster> = std::thread::scope(|scope| {
        let started: Vec<_> = servers
            .iter()
            .map(|(_, bin)| scope.spawn(move || cluster_of(bin)))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for cluster in clusters {
        varied_schema_round_trip(cluster).await;
    }
}

/// Regression: rule 4 (Hasura's pattern) matched words inside a trigger's `WHEN (…)` string
/// literal, so a trigger that only looks like Hasura's by name was dropped from the cleaned
/// dump. Only Hasura's own triggers go now.
#[tokio::test]
async fn hasura_pattern_in_a_when_literal_keeps_the_trigger() {
    let source = TestDb::with(&format!(
        "{REFERENCE_SCHEMA}
CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER notify_hasura_audit AFTER INSERT ON public.articles FOR EACH ROW
    WHEN (NEW.title <> ' FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x')
    EXECUTE FUNCTION public.audit();
CREATE TRIGGER notify_hasura_named AFTER INSERT ON public.articles FOR EACH ROW
    EXECUTE FUNCTION public.audit();
"
    ))
    .await;
    let server = Server::builder(&source.url).start();
    let cleaned = clean_dump(&server, &["--schema-only"]).await;
    assert!(
        !cleaned.contains("CREATE TRIGGER \"notify_hasura_articles_"),
        "{cleaned}"
    );

    let target = TestDb::new().await;
    replay(&target.client().await, &cleaned).await;
    // The same schema as the source's without Hasura's own triggers.
    let client = source.client().await;
    for op in ["INSERT", "UPDATE", "DELETE"] {
        let drop = format!("DROP TRIGGER \"notify_hasura_articles_{op}\" ON public.articles");
        client.batch_execute(&drop).await.unwrap();
    }
    let expected = raw_dump(&source, &["--schema-only"]);
    assert!(
        expected.contains("CREATE TRIGGER notify_hasura_audit "),
        "{expected}"
    );
    assert_eq!(raw_dump(&target, &["--schema-only"]), expected);
}
