//! The dump page and the two read-only endpoints it uses: first the endpoints as scripts call
//! them, then the page itself in a real headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::webdriver::Browser;
use crate::support::{
    big_table_db, eventually, http, lock_articles, normalize_restrict_key, pg_dump_children, Reply,
    Server, TestDb, REFERENCE_SCHEMA,
};

const SECRET: &str = "page-secret";

/// The reference schema, some rows, a view, a sequence, a function and a second schema.
fn catalog_schema() -> String {
    format!(
        "{REFERENCE_SCHEMA}
         INSERT INTO authors (name) SELECT 'author ' || g FROM generate_series(1, 50) g;
         INSERT INTO articles (author_id, title, body)
             SELECT 1 + g % 50, 'title ' || g, E'line one\\nline two ' || g
             FROM generate_series(1, 200) g;
         ANALYZE;
         CREATE VIEW public.article_titles AS SELECT id, title FROM articles;
         CREATE SCHEMA \"Sales\";
         CREATE TABLE \"Sales\".\"Orders\" (id int PRIMARY KEY, total numeric);
         CREATE SEQUENCE \"Sales\".order_numbers;
         CREATE FUNCTION \"Sales\".add(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b';"
    )
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(http().get(server.url(path)), headers).await
}

async fn post(server: &Server, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    send(http().post(server.url(path)).body(body.to_owned()), headers).await
}

async fn send(mut request: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Reply {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

const ADMIN: &[(&str, &str)] = &[("x-hasura-admin-secret", SECRET)];

#[tokio::test]
async fn sources_lists_every_source_with_its_server_and_pg_dump() {
    let db = TestDb::new().await;
    let sources = tempfile::NamedTempFile::new().unwrap();
    let document = json!({"sources": [
        {"name": "default", "kind": "postgres",
         "configuration": {"connection_info": {"database_url": db.url}}},
        {"name": "warehouse", "kind": "mssql",
         "configuration": {"connection_info": {"connection_string": "x"}}},
    ]});
    std::fs::write(sources.path(), document.to_string()).unwrap();
    let server = Server::builder_with_sources(sources.path())
        .secret(SECRET)
        .start();

    let reply = get(&server, "/v1alpha1/pg_dump/sources", ADMIN).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let listed = reply.json()["sources"].clone();
    let default = &listed[0];
    assert_eq!(default["name"], "default");
    assert_eq!(default["kind"], "postgres");
    let server_version = default["server_version"].as_str().unwrap();
    let pg_dump = default["pg_dump"].as_str().unwrap();
    assert_eq!(
        server_version.split('.').next(),
        pg_dump.split('.').next(),
        "the pg_dump of the server's major: {default}"
    );
    assert_eq!(listed[1]["name"], "warehouse");
    assert_eq!(listed[1]["kind"], "mssql");
    assert_eq!(listed[1]["dumpable"], false);
    assert_eq!(default["dumpable"], true);
    assert!(listed[1]["pg_dump"].is_null());

    // The version is what a dump's header then names.
    let dump = post(
        &server,
        "/v1alpha1/pg_dump",
        r#"{"opts": ["--schema-only"]}"#,
        ADMIN,
    )
    .await;
    assert_eq!(dump.header("x-pg-dump-version").as_deref(), Some(pg_dump));
}

#[tokio::test]
async fn catalog_lists_schemas_and_their_objects_with_sizes() {
    let db = TestDb::with(&catalog_schema()).await;
    let server = Server::builder(&db.url).secret(SECRET).start();

    let reply = post(
        &server,
        "/v1alpha1/pg_dump/catalog",
        r#"{"source": "default"}"#,
        ADMIN,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let catalog = reply.json();
    assert_eq!(catalog["source"], "default");
    let schemas: Vec<&str> = catalog["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(schemas, ["Sales", "hdb_catalog", "public"]);
    let public = &catalog["schemas"][2];
    let articles = public["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "articles")
        .expect("articles listed");
    assert_eq!(articles["kind"], "table");
    assert_eq!(articles["rows"], 200, "the estimate after ANALYZE");
    assert!(articles["bytes"].as_u64().unwrap() > 8192);
    assert_eq!(public["views"][0]["name"], "article_titles");
    assert!(public["views"][0].get("bytes").is_none());
    let sequences: Vec<&str> = public["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sequences, ["articles_id_seq", "authors_id_seq"]);
    let sales = &catalog["schemas"][0];
    assert_eq!(sales["tables"][0]["name"], "Orders");
    assert_eq!(sales["sequences"][0]["name"], "order_numbers");
    assert_eq!(
        sales["functions"][0],
        json!({"name": "add", "arguments": "a integer, b integer", "kind": "function"})
    );

    // No body field: the default source.
    let reply = post(&server, "/v1alpha1/pg_dump/catalog", "{}", ADMIN).await;
    assert_eq!(reply.json()["source"], "default");
}

#[tokio::test]
async fn catalog_and_sources_are_admin_only_and_answer_errors_in_the_api_format() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let catalog = "/v1alpha1/pg_dump/catalog";
    let user = &[("x-hasura-admin-secret", SECRET), ("x-hasura-role", "user")];
    let cases: Vec<(Reply, u16, &str)> = vec![
        (
            get(&server, "/v1alpha1/pg_dump/sources", &[]).await,
            401,
            "access-denied",
        ),
        (
            get(
                &server,
                "/v1alpha1/pg_dump/sources",
                &[("x-hasura-admin-secret", "wrong")],
            )
            .await,
            401,
            "access-denied",
        ),
        (
            get(&server, "/v1alpha1/pg_dump/sources", user).await,
            400,
            "access-denied",
        ),
        (
            post(&server, catalog, "{}", user).await,
            400,
            "access-denied",
        ),
        (
            post(&server, catalog, "{", ADMIN).await,
            400,
            "invalid-json",
        ),
        (
            post(&server, catalog, r#"{"source": 1}"#, ADMIN).await,
            400,
            "parse-failed",
        ),
        (
            post(&server, catalog, r#"{"source": "nope"}"#, ADMIN).await,
            400,
            "not-found",
        ),
        (
            get(&server, catalog, ADMIN).await,
            405,
            "method-not-allowed",
        ),
    ];
    for (reply, status, code) in cases {
        assert_eq!(reply.status, status, "{}", reply.text());
        assert_eq!(reply.json()["code"], code, "{}", reply.text());
    }
}

#[tokio::test]
async fn catalog_of_an_unreachable_database_is_a_postgres_error() {
    let db = TestDb::new().await;
    let sources = tempfile::NamedTempFile::new().unwrap();
    let unreachable = "postgres://nobody@127.0.0.1:1/none";
    let document = json!({"sources": [
        {"name": "default", "configuration": {"connection_info": {"database_url": db.url}}},
        {"name": "gone", "configuration": {"connection_info": {"database_url": unreachable}}},
    ]});
    std::fs::write(sources.path(), document.to_string()).unwrap();
    let server = Server::builder_with_sources(sources.path())
        .secret(SECRET)
        .start();
    let reply = post(
        &server,
        "/v1alpha1/pg_dump/catalog",
        r#"{"source": "gone"}"#,
        ADMIN,
    )
    .await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["code"], "postgres-error");
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("could not connect to the database"));
    // The server keeps serving.
    let ok = post(&server, "/v1alpha1/pg_dump/catalog", "{}", ADMIN).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn catalog_requests_leave_no_session_behind() {
    let db = TestDb::with(&catalog_schema()).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    for _ in 0..3 {
        let reply = post(&server, "/v1alpha1/pg_dump/catalog", "{}", ADMIN).await;
        assert_eq!(reply.status, 200);
    }
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgdump-api' \
                 AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} catalog sessions left open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_content_security_policy() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    // The page itself needs no credential: it holds none, and asks for one.
    let page = get(&server, "/pgdump/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = page.text();
    // Every script is a file of this server's: none inline, none from elsewhere.
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        assert!(tag.contains("src=\"page.js\""), "{tag}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    for asset in ["/pgdump/page.js", "/pgdump/page.css"] {
        let reply = get(&server, asset, &[]).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(reply.header("content-security-policy").is_some());
        assert!(
            !reply.text().contains("https://"),
            "{asset} calls elsewhere"
        );
    }
    let bare = http().get(server.url("/pgdump")).send().await.unwrap();
    assert_eq!(bare.url().path(), "/pgdump/", "redirected to the page");
}

#[tokio::test]
async fn the_page_and_its_endpoints_are_absent_when_pgdump_is_disabled() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .args(["--enabled-apis", "metrics"])
        .start();
    for path in ["/pgdump/", "/v1alpha1/pg_dump/sources"] {
        let reply = get(&server, path, &[]).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["code"], "not-found");
    }
}

// ---- in a real browser ------------------------------------------------------------------

/// Where the page's screenshots go: `target/screenshots/` (the README shows copies of them
/// from `docs/screenshots/`).
fn screenshot(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../screenshots")
        .join(name)
}

/// The page's JavaScript `text` through a shell, as a user pasting it would run it.
fn run_in_shell(command: &str, dir: &Path, secret: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_pgdump-api"))
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path)
        .env("HASURA_GRAPHQL_ADMIN_SECRET", secret)
        .output()
        .expect("run sh")
}

/// The single file a command wrote into `dir`.
fn only_file(dir: &Path) -> Vec<u8> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read(&files[0]).unwrap()
}

async fn sign_in(browser: &Browser, server: &Server, secret: &str) {
    browser.open(&server.url("/pgdump/")).await;
    browser
        .wait_for(
            "the sign-in form",
            "return document.readyState === 'complete'",
        )
        .await;
    browser.type_into("#credential", secret).await;
    browser.click("#signin-button").await;
}

/// Signed in with the admin secret, the catalog shown, and downloads held in the page (the
/// file picker that writes to disk as the dump arrives needs a person).
async fn signed_in(browser: &Browser, server: &Server) {
    sign_in(browser, server, SECRET).await;
    browser
        .wait_for(
            "the catalog",
            "return document.querySelectorAll('#catalog .relation-box').length",
        )
        .await;
    browser
        .eval(
            "document.getElementById('stream-to-disk').checked = false",
            json!([]),
        )
        .await;
}

/// Waits until `server` runs no pg_dump.
async fn no_pg_dump_left(server: &Server) {
    eventually("pg_dump to stop", || {
        pg_dump_children(server.pid()).is_empty()
    })
    .await;
}

#[tokio::test]
async fn in_a_browser_sign_in_pick_two_tables_preview_and_download() {
    let db = TestDb::with(&catalog_schema()).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let browser = Browser::start(1280, 800).await;

    // A wrong secret: the 401's own message, and no way further.
    sign_in(&browser, &server, "wrong").await;
    let error = browser
        .wait_for(
            "the error",
            "const e = document.getElementById('error'); return !e.hidden && e.innerText",
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("401") && error.contains("invalid \"x-hasura-admin-secret\""),
        "{error}"
    );
    let stored = browser
        .eval(
            "return sessionStorage.getItem('pgdump-api.credential')",
            json!([]),
        )
        .await;
    assert!(stored.is_null(), "a refused secret is not kept");
    browser.screenshot(&screenshot("page-error.png")).await;

    // The right one: sources and the catalog.
    signed_in(&browser, &server).await;
    let info = browser
        .eval(
            "return document.getElementById('source-info').innerText",
            json!([]),
        )
        .await;
    assert!(info.as_str().unwrap().contains("pg_dump"), "{info}");
    let url_has_secret = browser.eval("return location.href", json!([])).await;
    assert!(!url_has_secret.as_str().unwrap().contains(SECRET));

    // Every control has a label a screen reader can read.
    let unlabelled = browser
        .eval(
            "return [...document.querySelectorAll('input, select, textarea')]
               .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
               .map(e => e.id || e.outerHTML)",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]));

    // Two tables, found with the search box.
    browser.type_into("#filter", "auth").await;
    browser
        .click("input.relation-box[data-schema='public'][data-name='authors']")
        .await;
    browser.type_into("#filter", "").await;
    browser
        .eval(
            "document.getElementById('filter').dispatchEvent(new Event('input'))",
            json!([]),
        )
        .await;
    browser
        .click("input.relation-box[data-schema='Sales'][data-name='Orders']")
        .await;
    browser.click("input[name='rows'][value='inserts']").await;
    browser.click("#clean").await;
    browser.eval("window.scrollTo(0, 0)", json!([])).await;
    browser.screenshot(&screenshot("page-signed-in.png")).await;

    // Preview.
    browser.click("#preview-button").await;
    let preview = browser
        .wait_for(
            "the preview",
            "const s = document.getElementById('preview-section');
             return !s.hidden && document.getElementById('preview').textContent",
        )
        .await;
    let preview = preview.as_str().unwrap();
    assert!(preview.contains("CREATE TABLE public.authors"), "{preview}");
    assert!(
        preview.contains("CREATE TABLE \"Sales\".\"Orders\""),
        "{preview}"
    );
    assert!(preview.contains("INSERT INTO public.authors"), "{preview}");
    assert!(
        !preview.contains("CREATE TABLE public.articles"),
        "{preview}"
    );
    assert!(!preview.contains("\\restrict"), "clean output: {preview}");
    browser.screenshot(&screenshot("page-preview.png")).await;

    // Download.
    browser.click("#download-button").await;
    let progress = browser
        .wait_for(
            "the download",
            "const p = document.getElementById('progress').innerText;
             return p.startsWith('Done') && p",
        )
        .await;
    assert!(progress.as_str().unwrap().contains("saved as default-"));
    let downloaded = std::fs::read(browser.downloaded().await).unwrap();

    // The same request as curl and as `pgdump-api dump`, from the page's own "copy as".
    for (button, label) in [("#copy-curl", "curl"), ("#copy-cli", "pgdump-api dump")] {
        browser.click(button).await;
        let command = browser
            .wait_for(
                "the command",
                "return document.getElementById('command').value",
            )
            .await;
        let command = command.as_str().unwrap().to_owned();
        assert!(!command.contains(SECRET), "{command}");
        let dir = tempfile::tempdir().unwrap();
        let output = run_in_shell(&command, dir.path(), SECRET);
        assert!(
            output.status.success(),
            "{label}: {command}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let got = only_file(dir.path());
        assert_eq!(
            normalize_restrict_key(&String::from_utf8(got).unwrap()),
            normalize_restrict_key(&String::from_utf8(downloaded.clone()).unwrap()),
            "{label} and the page's download differ"
        );
    }

    // Readable on a phone: nothing wider than the screen.
    browser.resize(390, 844).await;
    let overflow = browser
        .eval(
            "return document.documentElement.scrollWidth - window.innerWidth",
            json!([]),
        )
        .await;
    assert!(overflow.as_i64().unwrap() <= 0, "{overflow} px too wide");
    browser.screenshot(&screenshot("page-phone.png")).await;
}

#[tokio::test]
async fn in_a_browser_cancel_stops_pg_dump() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let browser = Browser::start(1280, 800).await;
    signed_in(&browser, &server).await;

    // pg_dump waits on the lock, so the download is under way until cancelled.
    let lock = lock_articles(&db).await;
    browser.click("#download-button").await;
    eventually("pg_dump to start", || {
        !pg_dump_children(server.pid()).is_empty()
    })
    .await;
    browser.click("#cancel-button").await;
    let progress = browser
        .wait_for(
            "the cancellation",
            "const p = document.getElementById('progress').innerText;
             return p.startsWith('Cancelled') && p",
        )
        .await;
    assert!(progress.as_str().unwrap().contains("stopped pg_dump"));
    no_pg_dump_left(&server).await;
    drop(lock);
    assert!(std::fs::read_dir(&browser.downloads)
        .unwrap()
        .next()
        .is_none());
    let value: Value = browser
        .eval(
            "return document.getElementById('download-button').disabled",
            json!([]),
        )
        .await;
    assert_eq!(value, json!(false), "ready for the next download");
}

#[tokio::test]
async fn in_a_browser_preview_of_a_large_dump_shows_64_kib_and_stops_pg_dump() {
    let db = big_table_db().await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let browser = Browser::start(1280, 800).await;
    signed_in(&browser, &server).await;
    browser.click("#preview-button").await;
    let note = browser
        .wait_for(
            "the preview",
            "const s = document.getElementById('preview-section');
             return !s.hidden && document.getElementById('preview-note').innerText",
        )
        .await;
    assert!(
        note.as_str().unwrap().starts_with("The first 64 KiB"),
        "{note}"
    );
    let shown = browser
        .eval(
            "return document.getElementById('preview').textContent.length",
            json!([]),
        )
        .await;
    let shown = shown.as_u64().unwrap();
    assert!((65_000..=65_536).contains(&shown), "{shown} characters");
    // The rest of the ~62 MB dump is not made: pg_dump stops with the preview.
    no_pg_dump_left(&server).await;
}

#[tokio::test]
async fn catalog_answers_while_a_migration_holds_a_table_lock() {
    let db = TestDb::with(&catalog_schema()).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let _lock = lock_articles(&db).await;
    let started = Instant::now();
    let reply = post(&server, "/v1alpha1/pg_dump/catalog", "{}", ADMIN).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let public = &reply.json()["schemas"][2];
    let articles = public["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "articles")
        .expect("articles listed");
    assert!(articles["bytes"].as_u64().unwrap() > 8192, "{articles}");
}

#[tokio::test]
async fn concurrent_catalog_requests_hold_few_database_sessions() {
    let db = TestDb::with(&catalog_schema()).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let url = server.url("/v1alpha1/pg_dump/catalog");
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let request = http()
                .post(&url)
                .header("x-hasura-admin-secret", SECRET)
                .body("{}");
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let client = db.client().await;
    let mut most = 0;
    while !requests.iter().all(|request| request.is_finished()) {
        let sessions: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgdump-api' \
                 AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        most = most.max(sessions);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    // Four reads at once; a session whose client has just closed it stays in pg_stat_activity
    // until its backend has exited, which may overlap the next read's session by a moment.
    assert!(most <= 5, "{most} catalog sessions at once");
}
