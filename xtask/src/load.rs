//! `scripts/load`: a load test on loopback. Builds release, starts a throwaway PostgreSQL with
//! a small schema and `pgdump-api serve` on a free 127.0.0.1 port, then drives it with wrk for
//! `LOAD_SECONDS` (default 30) — real dumps and rejected requests (bad JSON, wrong secret,
//! forbidden option) at once, each kind from its own wrk process with a bounded number of
//! connections (`LOAD_DUMP_CONNECTIONS`, `LOAD_REJECT_CONNECTIONS`, 4 each; `LOAD_KINDS` to
//! run only some) — and prints requests/s and latency percentiles by kind, and the server's
//! memory. `scripts/load.lua` checks every answer (status and body). Fails on a wrong answer,
//! a socket error or a pg_dump left running; removes everything on exit.
//!
//! wrk comes from Debian's package, installed with apt-get (as root) when missing.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::server::{Options, Server};
use crate::{
    build_release, cores, cpu_model, env_number, random_hex, start_cluster, status_kib, step,
};

/// A schema a little richer than the demo's, with some data for the data-only dumps.
const SCHEMA: &str = r#"
CREATE SCHEMA hdb_catalog;
CREATE TABLE public.authors (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.articles (
    id serial PRIMARY KEY,
    author_id integer NOT NULL REFERENCES authors(id),
    title text NOT NULL,
    body text NOT NULL,
    published_at timestamptz
);
CREATE INDEX ON public.articles (author_id);
CREATE VIEW public.recent AS SELECT id, title FROM public.articles WHERE published_at > now() - interval '7 days';
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
INSERT INTO authors (name) SELECT 'author ' || i FROM generate_series(1, 50) AS i;
INSERT INTO articles (author_id, title, body, published_at)
    SELECT 1 + i % 50, 'title ' || i, repeat(E'line\n', 1 + i % 5), now() - i * interval '1 hour'
    FROM generate_series(1, 500) AS i;
"#;

/// The kinds of request (`load.lua`'s names), each with its label and expected answer.
const KINDS: &[(&str, &str, &str)] = &[
    ("dump", "dump (schema, data, custom, gzip)", "200 SQL"),
    ("bad_json", "bad JSON", "400"),
    ("wrong_secret", "wrong secret", "401"),
    (
        "forbidden_option",
        "forbidden option (-f, -d, -Fd, …)",
        "400",
    ),
];

/// One wrk process and where its output goes.
struct Wrk {
    kind: &'static (&'static str, &'static str, &'static str),
    connections: u64,
    child: Child,
    output: tempfile::NamedTempFile,
}

pub(crate) fn run() -> Result<()> {
    let seconds = env_number("LOAD_SECONDS", 30)?;
    let dump_connections = env_number("LOAD_DUMP_CONNECTIONS", 4)?;
    let reject_connections = env_number("LOAD_REJECT_CONNECTIONS", 4)?;
    let names = std::env::var("LOAD_KINDS")
        .unwrap_or_else(|_| "dump bad_json wrong_secret forbidden_option".into());
    let kinds = names
        .split_whitespace()
        .map(|name| {
            KINDS
                .iter()
                .find(|kind| kind.0 == name)
                .with_context(|| format!("LOAD_KINDS: unknown kind {name}"))
        })
        .collect::<Result<Vec<_>>>()?;

    ensure_wrk()?;
    step("building pgdump-api (release)");
    let bin = build_release()?;
    let cluster = start_cluster("load", &[])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = cluster.connect("postgres").await?;
        client.batch_execute(SCHEMA).await.context("schema")
    })?;
    drop(runtime);

    step("starting pgdump-api on 127.0.0.1, a free port");
    let admin_secret = random_hex()?;
    let server = Server::start(
        &bin,
        &Options {
            database_url: &cluster.url("postgres"),
            admin_secret: &admin_secret,
            pg_dump: &cluster.pg_dump(),
            port: 0,
            env: &[],
            echo: false,
        },
    )?;
    let url = server.url("");
    let rss_start = status_kib(server.pid(), "VmRSS");

    let names: Vec<&str> = kinds.iter().map(|kind| kind.0).collect();
    step(&format!(
        "wrk for {seconds}s against {url}: {}",
        names.join(" ")
    ));
    let script = xtask::cluster::workspace_root().join("scripts/load.lua");
    let mut wrks = Vec::new();
    for kind in kinds {
        let connections = match kind.0 {
            "dump" => dump_connections,
            _ => reject_connections,
        };
        wrks.push(start_wrk(
            kind,
            connections,
            seconds,
            &script,
            &url,
            &admin_secret,
        )?);
    }

    // While wrk runs: the most pg_dump processes alive at once.
    let mut peak_dumps = 0;
    while wrks
        .iter_mut()
        .any(|wrk| matches!(wrk.child.try_wait(), Ok(None)))
    {
        peak_dumps = peak_dumps.max(children_of(server.pid()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut failed = false;
    let mut results = Vec::new();
    for wrk in &mut wrks {
        failed |= !wrk.child.wait()?.success();
        let output = std::fs::read_to_string(wrk.output.path())?;
        match output.lines().find_map(|line| line.strip_prefix("RESULT ")) {
            Some(line) => results.push((wrk.kind, wrk.connections, parse_result(line))),
            None => {
                eprint!("{output}");
                failed = true;
            }
        }
    }

    // Every pg_dump must have ended with its request.
    let mut left = children_of(server.pid());
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = children_of(server.pid());
    }
    let hwm = status_kib(server.pid(), "VmHWM");
    let rss_end = status_kib(server.pid(), "VmRSS");
    if failed {
        bail!("wrk failed");
    }

    let version = cluster.version();
    let pg_version = version.split_whitespace().nth(2).unwrap_or("?");
    println!();
    println!(
        "Load test: `scripts/load`, {seconds} s on loopback, {} cores ({}) shared by",
        cores(),
        cpu_model()
    );
    println!("pgdump-api, PostgreSQL {pg_version} and wrk; these kinds at once:");
    println!();
    println!("| kind | expected | connections | requests | requests/s | p50 | p90 | p99 | max | unexpected answers | socket errors |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (mut total_requests, mut total_rps, mut total_connections, mut bad_answers) =
        (0u64, 0f64, 0u64, 0u64);
    for ((_, label, expected), connections, result) in &results {
        let get = |key: &str| result.get(key).map_or("?", String::as_str);
        let number = |key: &str| get(key).parse::<u64>().unwrap_or(0);
        let requests = number("requests");
        let unexpected = number("unexpected");
        let errors = number("socket_errors") + number("timeouts");
        total_requests += requests;
        total_rps += get("rps").parse::<f64>().unwrap_or(0.0);
        total_connections += connections;
        bad_answers += unexpected + errors;
        println!(
            "| {label} | {expected} | {connections} | {requests} | {} | {} ms | {} ms | {} ms | {} ms | {unexpected} | {errors} |",
            get("rps"),
            get("p50_ms"),
            get("p90_ms"),
            get("p99_ms"),
            get("max_ms"),
        );
    }
    println!("| **all** | | {total_connections} | {total_requests} | {total_rps:.1} | | | | | | |");
    println!();
    println!(
        "Server memory: {} RSS after start, {} peak (VmHWM), {} at",
        mib(rss_start),
        mib(hwm),
        mib(rss_end)
    );
    println!(
        "the end. pg_dump processes: at most {peak_dumps} at once (sampled), {left} left after the run."
    );
    if bad_answers != 0 || left != 0 {
        bail!("FAILED: unexpected answers, socket errors or pg_dump processes left over");
    }
    Ok(())
}

/// Installs wrk with apt-get when it is missing (and says so), as root only.
fn ensure_wrk() -> Result<()> {
    if on_path("wrk") {
        return Ok(());
    }
    if !xtask::cluster::is_root() || !on_path("apt-get") {
        bail!("scripts/load needs wrk: apt-get install wrk");
    }
    step("wrk is missing: installing it (Debian package wrk, with apt-get)");
    let quiet = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
        Ok(())
    };
    quiet(&["update", "-qq"])?;
    quiet(&["install", "-y", "-qq", "wrk"])
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn start_wrk(
    kind: &'static (&'static str, &'static str, &'static str),
    connections: u64,
    seconds: u64,
    script: &Path,
    url: &str,
    admin_secret: &str,
) -> Result<Wrk> {
    let output = tempfile::NamedTempFile::new()?;
    // wrk stops after -d; timeout is the backstop.
    let child = Command::new("timeout")
        .args(["--kill-after=5", &(seconds + 30).to_string(), "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .args([url, "--", kind.0])
        .env("LOAD_ADMIN_SECRET", admin_secret)
        .stdin(Stdio::null())
        .stdout(output.reopen()?)
        .stderr(output.reopen()?)
        .spawn()
        .context("wrk")?;
    Ok(Wrk {
        kind,
        connections,
        child,
        output,
    })
}

/// `key=value key=value …` of load.lua's `RESULT` line.
fn parse_result(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The processes whose parent is `parent` (the server's are its pg_dumps).
fn children_of(parent: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            // pid (comm) state ppid …: comm may hold spaces and parentheses.
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .count()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
