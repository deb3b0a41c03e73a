//! `scripts/bench`: pgdump-api against its physical limit, pg_dump itself, on a throwaway
//! PostgreSQL. Every comparison runs the same pg_dump binary with the same options, raw and
//! through the server, alternating (raw, api, raw, api, …) and reporting medians, so that the
//! noise of a shared machine hits both sides alike. Prints one table and writes it, with the
//! machine and the exact method, into BENCHMARKS.md (between the bench:begin/end markers; the
//! text around them is kept).
//!
//! Both sides are started and timed by this process: pg_dump is spawned here as the server
//! spawns it, and the requests come from an in-process HTTP client (a new connection each,
//! no compression unless the row names it; compressed answers are counted, not decoded), so
//! neither side pays a launcher's start-up that the other does not.
//!
//! Settings (environment):
//!   BENCH_DATA_MB       size of the data dump in MB (default 1000)
//!   BENCH_TABLES        tables in the large catalog (default 5000)
//!   BENCH_ROUNDS        alternating rounds for the large dumps (default 7, at least 3)
//!   BENCH_TINY_ROUNDS   rounds for the tiny schema dump and time to first byte (default 30)
//!   BENCH_CONCURRENCY   concurrent tiny dumps (default 16)
//!   BENCH_CRITERION     1 (default) also runs the criterion benches (benches/clean.rs, opts.rs)
//!   BENCH_OUT           where to write the table (default BENCHMARKS.md; empty: nowhere)
//!   BENCH_FRONT…        front mode against its upstream: see front.rs
//!   BENCH_NICE          niceness of everything measured (default -10 as root, else unchanged):
//!                       both sides get the same priority over whatever else the machine runs

mod databases;
mod front;
mod report;
mod sides;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::runtime::Runtime;
use xtask::Cluster;

use crate::server::Server;
use crate::{build_release, env_number, random_hex, start_cluster, step};
use databases::create_databases;
use report::{criterion, load_average, splice, Figures};
use sides::{compressed_size, dump_size};

/// How many bytes two dumps that differ only in their restrict key can differ by.
const RESTRICT_KEYS_DIFFER: u64 = 2 * 64;
const DATA_BODY: &str = r#"{"opts": ["--data-only"]}"#;
const DATA_CLEAN_BODY: &str = r#"{"opts": ["--data-only"], "clean_output": true}"#;
const SCHEMA_BODY: &str = r#"{"opts": ["--schema-only"]}"#;
const SCHEMA_CLEAN_BODY: &str = r#"{"opts": ["--schema-only"], "clean_output": true}"#;
const TINY_OPTS: &[&str] = &[
    "--no-owner",
    "--no-privileges",
    "--schema-only",
    "--schema=public",
];
const TINY_BODY: &str =
    r#"{"opts": ["-O", "-x", "--schema-only", "--schema", "public"], "clean_output": true}"#;

/// The run's settings.
struct Settings {
    data_mb: u64,
    tables: u64,
    rounds: u64,
    tiny_rounds: u64,
    concurrency: u64,
    criterion: bool,
    out_file: Option<PathBuf>,
    nice: Option<i32>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let rounds = env_number("BENCH_ROUNDS", 7)?;
        if rounds < 3 {
            bail!("BENCH_ROUNDS must be at least 3");
        }
        let nice = match std::env::var("BENCH_NICE") {
            Ok(text) if text.is_empty() => None,
            Ok(text) => Some(text.parse().context("BENCH_NICE must be a niceness")?),
            Err(_) => xtask::cluster::is_root().then_some(-10),
        };
        Ok(Settings {
            data_mb: env_number("BENCH_DATA_MB", 1000)?,
            tables: env_number("BENCH_TABLES", 5000)?,
            rounds,
            tiny_rounds: env_number("BENCH_TINY_ROUNDS", 30)?,
            concurrency: env_number("BENCH_CONCURRENCY", 16)?,
            criterion: std::env::var("BENCH_CRITERION").map_or(true, |value| value == "1"),
            out_file: match std::env::var_os("BENCH_OUT") {
                None => Some(PathBuf::from("BENCHMARKS.md")),
                Some(path) if path.is_empty() => None,
                Some(path) => Some(PathBuf::from(path)),
            },
            nice,
        })
    }
}

pub(crate) fn run() -> Result<()> {
    std::env::set_current_dir(xtask::cluster::workspace_root())?;
    let settings = Settings::from_env()?;
    let load_before = load_average();
    step("building pgdump-api (release)");
    let bin = build_release()?;

    // From here on everything measured (PostgreSQL, pg_dump, the server, this process's
    // threads, created after this) inherits this.
    if let Some(nice) = settings.nice {
        let status = Command::new("renice")
            .args([
                "-n",
                &nice.to_string(),
                "-p",
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status()
            .context("renice")?;
        if !status.success() {
            bail!("could not renice to {nice}");
        }
    }

    // Micro-benchmarks first, while the machine is otherwise quiet.
    let criterion_rows = match settings.criterion {
        true => criterion()?,
        false => Vec::new(),
    };

    // One pg_dump locks every table of the large catalog.
    let cluster = start_cluster("bench", &["max_locks_per_transaction=256"])?;
    // One thread for the client, as a command-line client has: no hand-offs between threads
    // on each chunk of a dump.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(create_databases(&cluster, &settings))?;

    let mut bench = Bench {
        cluster: &cluster,
        bin,
        runtime,
        http: reqwest::Client::builder()
            .no_gzip()
            .no_zstd()
            .pool_max_idle_per_host(0)
            .build()?,
        secret: random_hex()?,
        concurrency: settings.concurrency,
        cluster_slots: 0,
        db: String::new(),
        server: None,
        results: HashMap::new(),
    };
    let figures = bench.measure(&settings)?;
    let bin = bench.bin.clone();
    let secret = bench.secret.clone();
    drop(bench);
    let mut summary = figures.table(&settings);
    if let Some(front_table) = front::run(&bin, &cluster, "bench_tiny", &secret)? {
        summary.push('\n');
        summary.push_str(&front_table);
    }
    let criterion_table = match criterion_rows.is_empty() {
        true => String::new(),
        false => {
            let mut table =
                "| criterion benchmark (one core) | median | target |\n|---|---|---|\n".to_owned();
            for row in &criterion_rows {
                table.push_str(&format!("| {row} |\n"));
            }
            table
        }
    };
    let report = report::report(
        &settings,
        &summary,
        &criterion_table,
        &cluster,
        &load_before,
    );
    println!("\n{summary}");
    if !criterion_table.is_empty() {
        println!("{criterion_table}");
    }
    if let Some(out_file) = &settings.out_file {
        splice(out_file, &report)?;
        println!("written to {}", out_file.display());
    }
    Ok(())
}

struct Bench<'a> {
    cluster: &'a Cluster,
    bin: PathBuf,
    runtime: Runtime,
    http: reqwest::Client,
    secret: String,
    concurrency: u64,
    /// The server's `--pg-dump-max-concurrent-cluster` (0: off).
    cluster_slots: u64,
    /// The database the server serves now.
    db: String,
    server: Option<Server>,
    /// Each series' values in microseconds (KiB for `peak`).
    results: HashMap<&'static str, Vec<f64>>,
}

impl Bench<'_> {
    fn measure(&mut self, settings: &Settings) -> Result<Figures> {
        let rounds = settings.rounds as usize;
        let tiny_rounds = settings.tiny_rounds;
        let pause = || std::thread::sleep(Duration::from_millis(100));

        // 1. The data dump.
        self.start_server("bench_data")?;
        step("data dump: sizing and warming up");
        let data_bytes = dump_size(self.cluster, &self.db, &["--data-only"])?;
        eprintln!("    {data_bytes} bytes");
        self.raw(&["--data-only"])?;
        self.api(DATA_BODY)?;
        step(&format!("data dump: pg_dump alone, into a pipe, and through pgdump-api with clean_output off and on ({rounds} rounds, alternating)"));
        let mut clean_bytes = 0;
        let (mut zstd_bytes, mut gzip_bytes) = (0, 0);
        for round in 0..rounds {
            // Each round starts with another variant, so no side always follows the same one.
            for variant in 0..6 {
                match (round + variant) % 6 {
                    0 => {
                        let us = self.raw(&["--data-only"])?;
                        self.record("data_raw", us);
                    }
                    1 => {
                        let us = self.raw_pipe(&["--data-only"])?;
                        self.record("data_pipe", us);
                    }
                    2 => {
                        self.reset_peak();
                        let (us, bytes) = self.api(DATA_BODY)?;
                        // The only difference allowed: the server passes pg_dump a restrict
                        // key derived from the admin secret (32 characters), where pg_dump
                        // alone picks a random one (64), in the \restrict and \unrestrict lines.
                        if bytes.abs_diff(data_bytes) > RESTRICT_KEYS_DIFFER {
                            bail!("the API sent {bytes} bytes, pg_dump writes {data_bytes}");
                        }
                        self.record("data_api", us);
                        self.record_peak();
                    }
                    3 => {
                        self.reset_peak();
                        let (us, bytes) = self.api(DATA_CLEAN_BODY)?;
                        clean_bytes = bytes;
                        self.record("data_api_clean", us);
                        self.record_peak();
                    }
                    4 => {
                        self.reset_peak();
                        let (us, bytes) = self.api_encoded(DATA_BODY, "zstd")?;
                        zstd_bytes = bytes;
                        self.record("data_api_zstd", us);
                        self.record_peak();
                    }
                    _ => {
                        self.reset_peak();
                        let (us, bytes) = self.api_encoded(DATA_BODY, "gzip")?;
                        gzip_bytes = bytes;
                        self.record("data_api_gzip", us);
                        self.record_peak();
                    }
                }
            }
            eprintln!(
                "    round {}: raw {:.0} µs, pipe {:.0} µs, api {:.0} µs, api+clean {:.0} µs, zstd {:.0} µs, gzip {:.0} µs, peak {} KiB",
                round + 1,
                self.last("data_raw"),
                self.last("data_pipe"),
                self.last("data_api"),
                self.last("data_api_clean"),
                self.last("data_api_zstd"),
                self.last("data_api_gzip"),
                self.last("peak"),
            );
        }
        step("data dump: sizes of the same dump through gzip -6 and zstd -1 (if installed)");
        let gzip6_bytes = compressed_size(self.cluster, &self.db, &["--data-only"], "gzip", "-6")?;
        let zstd1_bytes = compressed_size(self.cluster, &self.db, &["--data-only"], "zstd", "-1")?;
        eprintln!(
            "    gzip -6: {gzip6_bytes:?} bytes, zstd -1: {zstd1_bytes:?} bytes; through the API: gzip {gzip_bytes}, zstd {zstd_bytes}"
        );

        step(&format!(
            "time to first byte of the data dump ({tiny_rounds} rounds, alternating)"
        ));
        for _ in 0..tiny_rounds {
            let us = self.raw_ttfb(&["--data-only"])?;
            self.record("ttfb_raw", us);
            pause();
            let us = self.api_ttfb(DATA_BODY)?;
            self.record("ttfb_api", us);
            pause();
            let us = self.api_ttfb(DATA_CLEAN_BODY)?;
            self.record("ttfb_api_clean", us);
            pause();
        }
        self.spread(&["ttfb_raw", "ttfb_api", "ttfb_api_clean"]);

        // 2. The large catalog, schema only.
        self.start_server("bench_catalog")?;
        step("large catalog: warming up");
        let catalog_bytes = dump_size(self.cluster, &self.db, &["--schema-only"])?;
        eprintln!("    {catalog_bytes} bytes");
        step(&format!(
            "large catalog schema dump: pg_dump alone vs pgdump-api ({rounds} rounds, alternating)"
        ));
        for round in 0..rounds {
            for variant in 0..3 {
                match (round + variant) % 3 {
                    0 => {
                        let us = self.raw(&["--schema-only"])?;
                        self.record("catalog_raw", us);
                    }
                    1 => {
                        let (us, _) = self.api(SCHEMA_BODY)?;
                        self.record("catalog_api", us);
                    }
                    _ => {
                        let (us, _) = self.api(SCHEMA_CLEAN_BODY)?;
                        self.record("catalog_api_clean", us);
                    }
                }
            }
            eprintln!(
                "    round {}: raw {:.0} µs, api {:.0} µs, api+clean {:.0} µs",
                round + 1,
                self.last("catalog_raw"),
                self.last("catalog_api"),
                self.last("catalog_api_clean"),
            );
        }

        // 3. A tiny schema: what `hasura migrate create --from-server` asks for.
        self.start_server("bench_tiny")?;
        step(&format!(
            "tiny schema dump: latency ({tiny_rounds} rounds, alternating)"
        ));
        self.raw(TINY_OPTS)?;
        self.api(TINY_BODY)?;
        self.reset_peak();
        for _ in 0..tiny_rounds {
            let us = self.raw(TINY_OPTS)?;
            self.record("tiny_raw", us);
            let (us, _) = self.api(TINY_BODY)?;
            self.record("tiny_api", us);
        }
        let tiny_peak_kib = self.peak_kib();
        self.spread(&["tiny_raw", "tiny_api"]);

        let n = self.concurrency;
        step(&format!(
            "{n} concurrent tiny schema dumps ({rounds} rounds, alternating)"
        ));
        for _ in 0..rounds {
            let us = self.raw_concurrent(TINY_OPTS)?;
            self.record("concurrent_raw", us);
            let us = self.api_concurrent(TINY_BODY)?;
            self.record("concurrent_api", us);
        }
        self.spread(&["concurrent_raw", "concurrent_api"]);

        // 4. The same with the cluster-wide limit on, never reached: what taking a slot (an
        //    advisory lock on a session of its own) costs each dump.
        self.cluster_slots = self.concurrency;
        self.start_server("bench_tiny")?;
        step(&format!(
            "tiny schema dumps with the cluster-wide limit on ({} slots)",
            self.cluster_slots
        ));
        self.api(TINY_BODY)?;
        for _ in 0..tiny_rounds {
            let us = self.raw(TINY_OPTS)?;
            self.record("tiny_raw_cluster", us);
            let (us, _) = self.api(TINY_BODY)?;
            self.record("tiny_api_cluster", us);
        }
        for _ in 0..rounds {
            let us = self.raw_concurrent(TINY_OPTS)?;
            self.record("concurrent_raw_cluster", us);
            let us = self.api_concurrent(TINY_BODY)?;
            self.record("concurrent_api_cluster", us);
        }
        self.spread(&[
            "tiny_raw_cluster",
            "tiny_api_cluster",
            "concurrent_raw_cluster",
            "concurrent_api_cluster",
        ]);
        self.cluster_slots = 0;
        self.server = None;

        let medians = self
            .results
            .iter()
            .map(|(name, values)| (*name, median(values)))
            .collect();
        let peak_kib = self.results["peak"].iter().copied().fold(0.0, f64::max);
        Ok(Figures {
            data_bytes,
            clean_bytes,
            zstd_bytes,
            gzip_bytes,
            gzip6_bytes,
            zstd1_bytes,
            catalog_bytes,
            peak_kib,
            tiny_peak_kib,
            medians,
        })
    }
}

fn micros(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e6
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
