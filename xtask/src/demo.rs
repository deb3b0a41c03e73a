//! `scripts/demo`: try pgdump-api in one command. Builds it, starts a throwaway PostgreSQL
//! holding a small sample schema, serves the PG Dump API on 127.0.0.1:8080 (`PORT=…` to
//! change) with a fresh admin secret, shows one call and its output, and removes everything
//! on Ctrl-C.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use xtask::Cluster;

use crate::server::{Options, Server};
use crate::{build_release, random_hex, start_cluster};

/// The sample schema: two tables, a Hasura event trigger (which `clean_output` drops) and a
/// function whose body keeps its blank lines and comments.
const SCHEMA: &str = r#"
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
CREATE TRIGGER "notify_hasura_articles_INSERT" AFTER INSERT ON public.articles
    FOR EACH ROW EXECUTE FUNCTION hdb_catalog."notify_hasura_articles_INSERT"();
CREATE FUNCTION public.greet(who text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN

    -- blank lines and comments in bodies survive clean_output
    RETURN 'hello, ' || who;
END;
$$;
INSERT INTO authors (name) VALUES ('Ada'), ('Grace');
INSERT INTO articles (author_id, title, body) VALUES (1, 'Notes', E'first line\n\n-- not a comment');
"#;

const REQUEST: &str =
    r#"{"opts":["-O","-x","--schema-only","--schema","public"],"clean_output":true}"#;

pub(crate) fn run() -> Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => 8080,
    };
    println!("==> building pgdump-api (release; the first build takes several minutes)");
    let bin = build_release()?;
    let cluster = start_cluster("demo", &[])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(serve(&cluster, &bin, port));
    println!();
    println!("==> stopping");
    cluster.stop();
    result
}

async fn serve(cluster: &Cluster, bin: &std::path::Path, port: u16) -> Result<()> {
    cluster
        .connect("postgres")
        .await?
        .batch_execute(SCHEMA)
        .await
        .context("sample schema")?;
    let admin_secret = random_hex()?;
    println!("==> starting pgdump-api on 127.0.0.1:{port} (logs below are its JSON log lines)");
    let mut server = Server::start(
        bin,
        &Options {
            database_url: &cluster.url("postgres"),
            admin_secret: &admin_secret,
            pg_dump: &cluster.pg_dump(),
            port,
            env: &[],
            echo: true,
        },
    )
    .with_context(|| format!("on port {port} (PORT=… picks another)"))?;
    let url = server.url("/v1alpha1/pg_dump");
    let page = server.url("/pgdump/");
    println!(
        "
==> pgdump-api is serving the PG Dump API.
    admin secret: {admin_secret}
    dump page:    {page}  (sign in with the admin secret)

    curl {url} \\
      -H 'X-Hasura-Admin-Secret: {admin_secret}' \\
      -d '{REQUEST}'
"
    );
    let response = reqwest::Client::new()
        .post(&url)
        .header("X-Hasura-Admin-Secret", &admin_secret)
        .body(REQUEST)
        .send()
        .await
        .context("the sample request")?;
    print!("{}", response.text().await.context("the sample dump")?);
    println!();
    println!(
        "==> try other options (e.g. \"opts\":[\"--data-only\",\"--column-inserts\"]); Ctrl-C stops and cleans up"
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if server.exited() {
                    bail!("pgdump-api stopped");
                }
            }
        }
    }
}
