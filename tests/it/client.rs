//! The client commands end to end: the real binary as a user runs it, against the real server
//! and PostgreSQL. What is written replays through a client that is not psql; what fails
//! leaves no file behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    dump_json, normalize_restrict_key, pg_dump_directly, post_dump, Server, TestDb,
};

const SECRET: &str = "client-s3cret";

/// Names pg_dump's patterns get wrong, twins that a pattern would also match, and values that
/// look like what `clean_output` removes.
const NAMES_SCHEMA: &str = r#"
CREATE TABLE public."MyTable" (id int PRIMARY KEY, body text);
CREATE TABLE public.mytable (id int PRIMARY KEY, body text);
CREATE TABLE public."my.table" (id int PRIMARY KEY, body text);
CREATE TABLE public."a*" (id int PRIMARY KEY);
CREATE TABLE public.ab (id int PRIMARY KEY);
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Orders" (id serial PRIMARY KEY, note text, total numeric(10, 2));
CREATE SCHEMA "my.schema";
CREATE TABLE "my.schema"."Odd""Name" (id int PRIMARY KEY, v text);
CREATE FUNCTION public.shout(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN

  -- a comment in the body
  RETURN upper(t);
END;
$$;
CREATE VIEW public.loud AS SELECT id, public.shout(body) AS body FROM public."MyTable";
"#;

const NAMES_DATA: &str = r#"
INSERT INTO public."MyTable" VALUES
  (1, E'line one\n\n-- not a comment\nSET lock_timeout = 0;\n'), (2, ''), (3, NULL),
  (4, E'\\restrict x'), (5, E'  \n');
INSERT INTO public.mytable VALUES (1, 'lower-case twin');
INSERT INTO public."my.table" VALUES (1, 'dotted');
INSERT INTO public."a*" VALUES (1);
INSERT INTO public.ab VALUES (1), (2);
INSERT INTO "Sales"."Orders" (note, total) VALUES (E'two\nlines', 9.99), ('-- dashes', 0);
INSERT INTO "my.schema"."Odd""Name" VALUES (1, E'odd\n\nvalue');
"#;

/// The client binary, with no HASURA_GRAPHQL_* settings from the test's environment.
fn client(args: &[&str]) -> Command {
    let mut command = crate::support::pgdump_api();
    command.args(args).stdin(Stdio::null());
    command
}

/// Runs a command to its end; `expect` checks the status and shows everything when it fails.
struct Run {
    command: String,
    output: Output,
}

impl Run {
    fn new(mut command: Command) -> Run {
        let text = format!("{command:?}");
        let output = command.output().expect("run pgdump-api");
        Run {
            command: text,
            output,
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "{}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

fn endpoint(server: &Server) -> String {
    format!("http://{}", server.addr)
}

/// `--endpoint URL --admin-secret SECRET`.
fn connect(server: &Server) -> Vec<String> {
    ["--endpoint", &endpoint(server), "--admin-secret", SECRET]
        .map(String::from)
        .to_vec()
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

fn raw_dump(db: &TestDb, args: &[&str]) -> String {
    normalize_restrict_key(&String::from_utf8(pg_dump_directly(args, &db.url)).unwrap())
}

/// Checks that `path` is `root/<prefix>/<13-digit ms timestamp>_<rest>`.
fn assert_versioned(path: &Path, root: &Path, prefix: &str, rest: &str) {
    let relative = path.strip_prefix(root).unwrap().to_str().unwrap();
    let versioned = relative
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{relative} not under {prefix}"));
    let (version, tail) = versioned.split_once('_').unwrap();
    assert_eq!(version.len(), 13, "{relative}");
    assert!(version.bytes().all(|b| b.is_ascii_digit()), "{relative}");
    assert_eq!(tail, rest, "{relative}");
}

#[tokio::test]
async fn migrate_and_seed_rebuild_the_database() {
    let source = TestDb::with(&format!("{NAMES_SCHEMA}{NAMES_DATA}")).await;
    let server = Server::builder(&source.url).secret(SECRET).start();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("config.yaml"), "version: 3\n").unwrap();
    let inside = project.path().join("metadata");
    std::fs::create_dir(&inside).unwrap();

    // Run from a subdirectory: the project is found by its config.yaml, as the Hasura CLI does.
    let mut migrate = client(&["migrate", "create", "init", "--from-server"]);
    migrate
        .args(connect(&server))
        .args([
            "--schema",
            "public",
            "--schema",
            "Sales",
            "--schema",
            "my.schema",
        ])
        .current_dir(&inside);
    let run = Run::new(migrate);
    run.expect(0);
    let up = PathBuf::from(run.stdout().trim_end());
    assert_versioned(&up, project.path(), "migrations/default/", "init/up.sql");
    let up_sql = std::fs::read_to_string(&up).unwrap();

    // What the Hasura CLI asks for, with the names quoted: the same SQL.
    let reply = post_dump(
        &server,
        json!({
            "opts": ["-O", "-x", "--schema-only", "--schema", "public",
                     "--schema", "\"Sales\"", "--schema", "\"my.schema\""],
            "clean_output": true,
            "source": "default",
        })
        .to_string(),
        &[("x-hasura-admin-secret", SECRET)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up_sql, reply.text());
    assert!(up_sql.contains("CREATE SCHEMA \"my.schema\";"), "{up_sql}");

    let target = TestDb::new().await;
    let replica = target.client().await;
    replica.batch_execute(&up_sql).await.unwrap();
    assert_eq!(
        raw_dump(&target, &["--schema-only"]),
        raw_dump(&source, &["--schema-only"])
    );

    let mut seed = client(&["seed", "create", "rows", "--from-table", "MyTable"]);
    seed.args(["--from-table", "Sales.Orders", r#""my.schema"."Odd""Name""#])
        .args(["--from-table", "public.my.table", "a*"])
        .args(connect(&server))
        .arg("--project")
        .arg(project.path());
    let run = Run::new(seed);
    run.expect(0);
    let seed_path = PathBuf::from(run.stdout().trim_end());
    assert_versioned(&seed_path, project.path(), "seeds/default/", "rows.sql");
    let seed_sql = std::fs::read_to_string(&seed_path).unwrap();
    assert!(!seed_sql.contains("twin"), "{seed_sql}");
    assert!(!seed_sql.contains("public.ab "), "{seed_sql}");
    replica.batch_execute(&seed_sql).await.unwrap();
    // Every row of the asked-for tables, multi-line values intact; the twins stay empty.
    let asked = [
        "--data-only",
        "--exclude-table-data=public.mytable",
        "--exclude-table-data=public.ab",
    ];
    assert_eq!(raw_dump(&target, &asked), raw_dump(&source, &asked));
    for twin in ["public.mytable", "public.ab"] {
        let rows: i64 = replica
            .query_one(&format!("SELECT count(*) FROM {twin}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "{twin}");
    }

    assert_eq!(
        tree(project.path()),
        [
            "config.yaml".to_owned(),
            "metadata".to_owned(),
            "migrations".to_owned(),
            "migrations/default".to_owned(),
            up.parent()
                .unwrap()
                .strip_prefix(project.path())
                .unwrap()
                .display()
                .to_string(),
            up.strip_prefix(project.path())
                .unwrap()
                .display()
                .to_string(),
            "seeds".to_owned(),
            "seeds/default".to_owned(),
            seed_path
                .strip_prefix(project.path())
                .unwrap()
                .display()
                .to_string(),
        ]
    );
}

#[tokio::test]
async fn failures_are_readable_and_leave_no_file() {
    let db = TestDb::with(NAMES_SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump.sql");

    let mut wrong = client(&["dump", "-o", out.to_str().unwrap()]);
    wrong.args(["--endpoint", &endpoint(&server), "--admin-secret", "wrong"]);
    let run = Run::new(wrong);
    run.expect(3);
    let stderr = run.stderr();
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("access-denied"), "{stderr}");
    assert!(
        stderr.contains("invalid \"x-hasura-admin-secret\""),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the secret is not echoed: {stderr}"
    );

    let mut migrate = client(&["migrate", "create", "init", "--from-server"]);
    migrate.args(["--endpoint", &endpoint(&server), "--admin-secret", "wrong"]);
    migrate.arg("--project").arg(dir.path());
    Run::new(migrate).expect(3);

    // A table that does not exist: pg_dump's own message, and no seed file.
    let mut seed = client(&["seed", "create", "s", "--from-table", "MyTable", "mytable2"]);
    seed.args(connect(&server)).arg("--project").arg(dir.path());
    let run = Run::new(seed);
    run.expect(3);
    let stderr = run.stderr();
    assert!(stderr.contains("not-found"), "{stderr}");
    assert!(
        stderr.contains(r#"no matching tables were found for pattern ""mytable2"""#),
        "{stderr}"
    );

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut unreachable = client(&["dump", "-o", out.to_str().unwrap()]);
    unreachable.args(["--endpoint", &format!("http://127.0.0.1:{port}")]);
    let run = Run::new(unreachable);
    run.expect(4);
    assert!(run.stderr().contains("could not reach"), "{}", run.stderr());

    // Usage errors are clap's, before any request.
    Run::new(client(&["seed", "create", "s", "--from-table", "\"open"])).expect(2);
    Run::new(client(&["dump", "--endpoint", "ftp://localhost:8080"])).expect(2);
    Run::new(client(&["migrate", "create", "a/b", "--from-server"])).expect(2);
    Run::new(client(&["dump", "-H", "no colon"])).expect(2);

    assert_eq!(
        tree(dir.path()),
        ["migrations", "migrations/default", "seeds", "seeds/default"]
    );
}

/// 60 MB of rows that gzip cannot shrink much, so that a stopped client holds the server
/// back mid-stream whatever the socket buffers.
async fn big_db() -> TestDb {
    TestDb::with(
        "CREATE TABLE big (id int, payload text);
         INSERT INTO big SELECT g, (SELECT string_agg(md5(g::text || '/' || i), '') FROM generate_series(1, 32) i)
         FROM generate_series(1, 60000) g;",
    )
    .await
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until a partial file with some bytes sits in `dir`, then stops the client there.
fn stop_mid_dump(child: &mut Child, dir: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| {
                path.to_string_lossy().ends_with(".partial")
                    && path.metadata().is_ok_and(|meta| meta.len() > 0)
            });
        if let Some(partial) = partial {
            signal(child, "STOP");
            return partial;
        }
        assert!(child.try_wait().unwrap().is_none(), "client ended early");
        assert!(Instant::now() < deadline, "no partial file appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait(child: Child) -> (ExitStatus, String) {
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn server_killed_mid_dump_leaves_no_file() {
    let db = big_db().await;
    let server = Server::builder(&db.url).start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.sql");
    let mut dump = client(&["dump", "-o", out.to_str().unwrap(), "--endpoint"]);
    dump.arg(endpoint(&server)).stderr(Stdio::piped());
    let mut child = dump.spawn().unwrap();

    stop_mid_dump(&mut child, dir.path());
    drop(server); // SIGKILL
    signal(&child, "CONT");
    let (status, stderr) = wait(child);
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("before the dump was complete"), "{stderr}");
    assert_eq!(tree(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn dump_replaces_the_file_only_when_complete() {
    let db = big_db().await;
    let server = Server::builder(&db.url).start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.sql");
    std::fs::write(&out, "old\n").unwrap();
    let mut dump = client(&["dump", "-o", out.to_str().unwrap(), "--endpoint"]);
    dump.arg(endpoint(&server)).args(["--", "--data-only"]);
    let mut child = dump.spawn().unwrap();

    let partial = stop_mid_dump(&mut child, dir.path());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\n");
    signal(&child, "CONT");
    let (status, stderr) = wait(child);
    assert!(status.success(), "{stderr}");
    assert!(!partial.exists());
    assert_eq!(tree(dir.path()), ["big.sql"]);
    assert_eq!(
        normalize_restrict_key(&std::fs::read_to_string(&out).unwrap()),
        raw_dump(&db, &["--encoding=utf8", "--data-only"])
    );
}

#[tokio::test]
async fn dump_to_a_closed_pipe_is_not_an_error() {
    let db = big_db().await;
    let server = Server::builder(&db.url).start();
    let mut dump = client(&["dump", "--endpoint", &endpoint(&server)]);
    dump.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = dump.spawn().unwrap();
    // Like `| head -c 100`: read a little, then go.
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 100];
    std::io::Read::read_exact(&mut stdout, &mut head).unwrap();
    drop(stdout);
    let (status, stderr) = wait(child);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr, "");
    assert!(head.starts_with(b"--\n-- PostgreSQL database dump"));
    // The client stopped at the closed pipe, mid-dump, rather than reading on.
    let logs = server.wait_http_logs(1).await;
    assert_eq!(logs[0]["detail"]["complete"], false, "{:?}", logs[0]);
}

#[tokio::test]
async fn dump_accepts_gzip_and_passes_options() {
    let db = TestDb::with(
        "CREATE TABLE t (id int, body text);
         INSERT INTO t SELECT g, repeat('compressible ', 100) FROM generate_series(1, 2000) g;",
    )
    .await;
    let server = Server::builder(&db.url).start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.sql");
    let mut dump = client(&["dump", "--clean", "--source", "default", "-q", "-o"]);
    dump.arg(&out)
        .args(["--endpoint", &endpoint(&server)])
        .args([
            "-H",
            "X-Request-Id: gzip-test",
            "--",
            "--data-only",
            "-t",
            "t",
        ]);
    let run = Run::new(dump);
    run.expect(0);
    assert_eq!(run.stdout(), "");
    assert_eq!(run.stderr(), "");
    let written = std::fs::read_to_string(&out).unwrap();
    let plain = dump_json(
        &server,
        json!({"opts": ["--data-only", "-t", "t"], "clean_output": true}),
    )
    .await;
    assert_eq!(written, plain.text());

    let logs = server.wait_http_logs(2).await;
    let log = logs
        .iter()
        .find(|log| log["detail"]["request_id"] == "gzip-test")
        .unwrap_or_else(|| panic!("{logs:?}"));
    assert_eq!(log["detail"]["complete"], true, "{log}");
    let sent = log["detail"]["bytes"].as_u64().unwrap();
    assert!(
        sent * 10 < written.len() as u64,
        "{sent} bytes sent for {} written: not compressed",
        written.len()
    );
}
