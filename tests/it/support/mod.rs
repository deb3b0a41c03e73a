//! Test harness: a real PostgreSQL, the real server binary, and small helpers around them.

pub mod postgres;
pub mod server;
pub mod webdriver;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;

pub use postgres::{cluster, TestDb};
pub use server::Server;

/// The reference case's schema: two tables and a Hasura event trigger on one of them.
pub const REFERENCE_SCHEMA: &str = r#"
CREATE SCHEMA hdb_catalog;
CREATE TABLE public.authors (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.articles (
    id serial PRIMARY KEY,
    author_id integer NOT NULL REFERENCES authors(id),
    title text NOT NULL,
    body text NOT NULL
);
CREATE FUNCTION hdb_catalog."notify_hasura_articles_INSERT"() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;
CREATE FUNCTION hdb_catalog."notify_hasura_articles_UPDATE"() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;
CREATE FUNCTION hdb_catalog."notify_hasura_articles_DELETE"() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END; $$;
CREATE TRIGGER "notify_hasura_articles_INSERT" AFTER INSERT ON public.articles
    FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_articles_INSERT"();
CREATE TRIGGER "notify_hasura_articles_UPDATE" AFTER UPDATE ON public.articles
    FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_articles_UPDATE"();
CREATE TRIGGER "notify_hasura_articles_DELETE" AFTER DELETE ON public.articles
    FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_articles_DELETE"();
"#;

/// The binary, with none of the test process's own `HASURA_GRAPHQL_*` settings: a developer's
/// environment must not change what a test sees.
pub fn pgdump_api() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgdump-api"));
    without_hasura_env(&mut command);
    command
}

/// Keeps the test process's own `HASURA_GRAPHQL_*` settings from `command`.
pub fn without_hasura_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HASURA_GRAPHQL_") {
            command.env_remove(key);
        }
    }
}

/// Holds an exclusive lock on `articles` (of [`REFERENCE_SCHEMA`]) until the returned client
/// is dropped: a pg_dump of it waits, without output, for as long as the test wants.
pub async fn lock_articles(db: &TestDb) -> tokio_postgres::Client {
    let client = db.client().await;
    client
        .batch_execute("BEGIN; LOCK TABLE articles IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();
    client
}

/// A database with a ~62 MB table, too big to sit in socket buffers.
pub async fn big_table_db() -> TestDb {
    TestDb::with(
        "CREATE TABLE big (id int, payload text);
         INSERT INTO big SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 60000) g;",
    )
    .await
}

/// Sends a dump request on a raw socket, so the test decides when the client goes away.
pub fn send_raw(server: &Server, body: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST /v1alpha1/pg_dump HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

/// Reads a streamed response to its end: `Err` when it was cut off instead of ending.
pub async fn drain(response: &mut reqwest::Response) -> Result<(), reqwest::Error> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), response.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(err)) => return Err(err),
            Err(_) => panic!("response neither ended nor failed"),
        }
    }
}

/// An HTTP client that neither retries nor decompresses on its own.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .no_zstd()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

/// A finished response: status, headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    }
}

/// POSTs `body` to the dump endpoint with `headers` and reads the whole answer.
pub async fn post_dump(
    server: &Server,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = http().post(server.url("/v1alpha1/pg_dump")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// POSTs a JSON body as admin (no secret configured).
pub async fn dump_json(server: &Server, body: Value) -> Reply {
    post_dump(server, body.to_string(), &[]).await
}

/// Runs pg_dump directly with `args` against `url`, as a user would.
pub fn pg_dump_directly(args: &[&str], url: &str) -> Vec<u8> {
    let output = Command::new(cluster().pg_dump())
        .args(args)
        .arg(url)
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Replaces the random key of `\restrict KEY` / `\unrestrict KEY` lines by `KEY`.
pub fn normalize_restrict_key(sql: &str) -> String {
    sql.lines()
        .map(|line| {
            for meta in ["\\restrict ", "\\unrestrict "] {
                if line.starts_with(meta) {
                    return format!("{meta}KEY");
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pids of pg_dump processes whose parent is `parent`.
pub fn pg_dump_children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) =
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat
            .split_once(") ")
            .and_then(|(head, rest)| Some((head.split_once(" (")?.1, rest)))
        else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm == "pg_dump" && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Polls `check` every 50 ms for up to 30 s; panics with `what` if it never holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The pg_dump sessions connected to `db`.
pub async fn pg_dump_sessions(admin: &tokio_postgres::Client, db: &TestDb) -> i64 {
    let rows = admin
        .query(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'pg_dump'",
            &[&db.name],
        )
        .await
        .unwrap();
    rows[0].get(0)
}

/// Starts a schema dump in the background; resolves to (status, Retry-After, body).
pub fn spawn_dump(server: &Server) -> tokio::task::JoinHandle<(u16, Option<String>, String)> {
    let url = server.url("/v1alpha1/pg_dump");
    tokio::spawn(async move {
        let response = http()
            .post(url)
            .body(r#"{"opts":["--schema-only"]}"#)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry, response.text().await.unwrap_or_default())
    })
}

/// Waits until `count` pg_dump sessions of `db` wait for a lock.
pub async fn sessions_waiting_on_a_lock(admin: &tokio_postgres::Client, db: &TestDb, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = admin
            .query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'pg_dump' AND wait_event_type = 'Lock'",
                &[&db.name],
            )
            .await
            .unwrap();
        if rows[0].get::<_, i64>(0) == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} pg_dump sessions never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves `app` on a loopback port, on a thread of its own (starting the server under test
/// blocks the test's runtime); its base URL.
pub async fn serve_app(app: axum::Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}
