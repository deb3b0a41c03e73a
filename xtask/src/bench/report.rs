//! The results: the criterion rows, the table, and the block written into BENCHMARKS.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use xtask::Cluster;

use super::{Settings, DATA_BODY, DATA_CLEAN_BODY, TINY_BODY, TINY_OPTS};
use crate::{cores, cpu_model, proc_field, step, target_dir};

/// Runs the criterion benches and returns one table row per benchmark of this run.
pub(super) fn criterion() -> Result<Vec<String>> {
    step("criterion: the cleaner and the option parser (cargo bench)");
    let dir = target_dir().join("criterion");
    std::fs::create_dir_all(&dir)?;
    let marker = dir.join(".bench-start");
    std::fs::write(&marker, "")?;
    let start = std::fs::metadata(&marker)?.modified()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["bench", "--locked", "--quiet", "-p", "pgdump-api"])
        .args(["--bench", "clean", "--bench", "opts", "--", "--noplot"])
        .stdout(std::io::stderr())
        .status()
        .context("cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed");
    }
    let mut found = Vec::new();
    benchmark_files(&dir, start, &mut found);
    found.sort();
    found.iter().map(|path| criterion_row(path)).collect()
}

/// The `new/benchmark.json` files under `dir` written since `start`.
pub(super) fn benchmark_files(dir: &Path, start: SystemTime, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            benchmark_files(&path, start, found);
        } else if path.ends_with("new/benchmark.json")
            && std::fs::metadata(&path)
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified >= start)
        {
            found.push(path);
        }
    }
}

/// A criterion benchmark's row: its id, and its median as throughput or time per iteration.
pub(super) fn criterion_row(benchmark: &Path) -> Result<String> {
    let read = |path: &Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        serde_json::from_str(&text).with_context(|| path.display().to_string())
    };
    let meta = read(benchmark)?;
    let estimates = read(&benchmark.with_file_name("estimates.json"))?;
    let id = meta["full_id"].as_str().context("full_id")?;
    let ns = estimates["median"]["point_estimate"]
        .as_f64()
        .context("median")?;
    Ok(match meta["throughput"]["Bytes"].as_f64() {
        Some(bytes) => format!(
            "`{id}` ({:.0} MB) | {:.0} MB/s | ≥ 1000 MB/s: {}",
            bytes / 1e6,
            bytes / ns * 1000.0,
            verdict(bytes / ns >= 1.0)
        ),
        None => format!("`{id}` | {:.2} µs per request | ", ns / 1000.0),
    })
}

/// What the measurements hold for the table.
pub(super) struct Figures {
    pub(super) data_bytes: u64,
    pub(super) clean_bytes: u64,
    /// Bytes on the wire of the data dump asked for with zstd, with gzip.
    pub(super) zstd_bytes: u64,
    pub(super) gzip_bytes: u64,
    /// The same dump through `gzip -6`, `zstd -1`, when installed.
    pub(super) gzip6_bytes: Option<u64>,
    pub(super) zstd1_bytes: Option<u64>,
    pub(super) catalog_bytes: u64,
    pub(super) peak_kib: f64,
    pub(super) tiny_peak_kib: f64,
    pub(super) medians: HashMap<&'static str, f64>,
}

pub(super) fn verdict(met: bool) -> &'static str {
    match met {
        true => "met",
        false => "**missed**",
    }
}

impl Figures {
    fn m(&self, series: &str) -> f64 {
        self.medians.get(series).copied().unwrap_or(f64::NAN)
    }

    /// The results table, in markdown.
    pub(super) fn table(&self, settings: &Settings) -> String {
        let mbps = |bytes: u64, us: f64| format!("{:.0} MB/s", bytes as f64 / us);
        let secs = |us: f64| format!("{:.2} s", us / 1e6);
        let ms = |us: f64| format!("{:.1} ms", us / 1e3);
        let mib = |kib: f64| format!("{:.1} MiB", kib / 1024.0);
        let (d_raw, d_pipe, d_api, d_cln) = (
            self.m("data_raw"),
            self.m("data_pipe"),
            self.m("data_api"),
            self.m("data_api_clean"),
        );
        let (t_raw, t_api, t_cln) = (
            self.m("ttfb_raw"),
            self.m("ttfb_api"),
            self.m("ttfb_api_clean"),
        );
        let (c_raw, c_api, c_cln) = (
            self.m("catalog_raw"),
            self.m("catalog_api"),
            self.m("catalog_api_clean"),
        );
        let (s_raw, s_api) = (self.m("tiny_raw"), self.m("tiny_api"));
        let (p_raw, p_api) = (self.m("concurrent_raw"), self.m("concurrent_api"));
        let data = self.data_bytes;
        let mut rows = vec![
            "| measurement | pg_dump alone | through pgdump-api | result | target |".to_owned(),
            "|---|---|---|---|---|".to_owned(),
        ];
        rows.push(format!(
            "| data dump, `clean_output` off ({:.0} MB, one table) | {} ({}) | {} ({}) | {:.3}× raw | ≥ 0.95×: {} |",
            data as f64 / 1e6, mbps(data, d_raw), secs(d_raw), mbps(data, d_api), secs(d_api),
            d_raw / d_api, verdict(d_raw / d_api >= 0.95)
        ));
        rows.push(format!(
            "| data dump, `clean_output` on ({:.0} MB out) | {} ({}) | {} ({}) | {:.3}× raw | ≥ 0.90×: {} |",
            self.clean_bytes as f64 / 1e6, mbps(data, d_raw), secs(d_raw), mbps(data, d_cln),
            secs(d_cln), d_raw / d_cln, verdict(d_raw / d_cln >= 0.90)
        ));
        let (d_zst, d_gz) = (self.m("data_api_zstd"), self.m("data_api_gzip"));
        let mb = |bytes: u64| format!("{:.0} MB", bytes as f64 / 1e6);
        // Against gzip -6's size; without gzip, only the throughput counts.
        let vs_gzip6 = |bytes: u64| match self.gzip6_bytes {
            Some(gzip6) => (
                format!(
                    ", {:+.1}% vs `gzip -6`",
                    (bytes as f64 / gzip6 as f64 - 1.0) * 100.0
                ),
                bytes as f64 / gzip6 as f64,
            ),
            None => (String::new(), 1.0),
        };
        let (zstd_vs, zstd_size) = vs_gzip6(self.zstd_bytes);
        rows.push(format!(
            "| data dump, `Accept-Encoding: zstd` ({} on the wire{zstd_vs}) | {} ({}) | {} ({}) | {:.3}× raw | ≥ 0.95×, ≤ `gzip -6`'s size: {} |",
            mb(self.zstd_bytes), mbps(data, d_raw), secs(d_raw), mbps(data, d_zst), secs(d_zst),
            d_raw / d_zst, verdict(d_raw / d_zst >= 0.95 && zstd_size <= 1.0)
        ));
        let (gzip_vs, gzip_size) = vs_gzip6(self.gzip_bytes);
        rows.push(format!(
            "| data dump, `Accept-Encoding: gzip` ({} on the wire{gzip_vs}) | {} ({}) | {} ({}) | {:.3}× raw | ≥ 0.80×, ≤ `gzip -6` + 15%: {} |",
            mb(self.gzip_bytes), mbps(data, d_raw), secs(d_raw), mbps(data, d_gz), secs(d_gz),
            d_raw / d_gz, verdict(d_raw / d_gz >= 0.80 && gzip_size <= 1.15)
        ));
        let cli = |size: Option<u64>| size.map_or("not installed".to_owned(), mb);
        rows.push(format!(
            "| for reference: the same dump through `gzip -6` / `zstd -1` | {} / {} | | | |",
            cli(self.gzip6_bytes),
            cli(self.zstd1_bytes)
        ));
        rows.push(format!(
            "| for reference: the data dump into a pipe read to its end | {} ({}) | | {:.3}× raw | |",
            mbps(data, d_pipe), secs(d_pipe), d_raw / d_pipe
        ));
        rows.push(format!(
            "| server peak RSS (VmHWM) during the data dump | | {} (tiny dumps: {}) | | ≤ 32 MiB: {} |",
            mib(self.peak_kib), mib(self.tiny_peak_kib), verdict(self.peak_kib <= 32.0 * 1024.0)
        ));
        rows.push(format!(
            "| time to first byte of the data dump, `clean_output` off / on | {} | {} / {} | {:+.1} / {:+.1} ms | ≤ +5 ms: {} |",
            ms(t_raw), ms(t_api), ms(t_cln), (t_api - t_raw) / 1e3, (t_cln - t_raw) / 1e3,
            verdict(t_api - t_raw <= 5000.0 && t_cln - t_raw <= 5000.0)
        ));
        rows.push(format!(
            "| large catalog schema dump ({} tables, {:.0} MB), `clean_output` off / on | {} | {} / {} | {:.3}× / {:.3}× raw | |",
            settings.tables, self.catalog_bytes as f64 / 1e6, secs(c_raw), secs(c_api),
            secs(c_cln), c_raw / c_api, c_raw / c_cln
        ));
        rows.push(format!(
            "| tiny schema dump (`hasura migrate create`), median latency | {} | {} | {:+.1} ms | ≤ +10 ms: {} |",
            ms(s_raw), ms(s_api), (s_api - s_raw) / 1e3, verdict(s_api - s_raw <= 10000.0)
        ));
        rows.push(format!(
            "| {} concurrent tiny schema dumps, total | {} | {} | {:.3}× raw | |",
            settings.concurrency,
            ms(p_raw),
            ms(p_api),
            p_raw / p_api
        ));
        let (sc_raw, sc_api) = (self.m("tiny_raw_cluster"), self.m("tiny_api_cluster"));
        let (pc_raw, pc_api) = (
            self.m("concurrent_raw_cluster"),
            self.m("concurrent_api_cluster"),
        );
        rows.push(format!(
            "| tiny schema dump, cluster-wide limit on (never reached), median latency | {} | {} | {:+.1} ms (limit off: {:+.1} ms) | |",
            ms(sc_raw), ms(sc_api), (sc_api - sc_raw) / 1e3, (s_api - s_raw) / 1e3
        ));
        rows.push(format!(
            "| {} concurrent tiny schema dumps, cluster-wide limit on, total | {} | {} | {:.3}× raw (limit off: {:.3}×) | |",
            settings.concurrency, ms(pc_raw), ms(pc_api), pc_raw / pc_api, p_raw / p_api
        ));
        rows.join("\n")
    }
}

/// The block between the markers: the table, the run's settings, the machine and the method.
pub(super) fn report(
    settings: &Settings,
    summary: &str,
    criterion_table: &str,
    cluster: &Cluster,
    load_before: &str,
) -> String {
    let Settings {
        data_mb,
        tables,
        rounds,
        tiny_rounds,
        concurrency: n,
        ..
    } = settings;
    let now = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let commit = if commit.is_empty() {
        "unknown".into()
    } else {
        commit
    };
    let out = settings
        .out_file
        .as_deref()
        .unwrap_or(Path::new("BENCHMARKS.md"));
    let clean = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--", "."])
        .arg(format!(":(exclude){}", out.display()))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let changes = if clean { "" } else { "+changes" };
    let nice = settings.nice.unwrap_or(0);
    let criterion = match criterion_table.is_empty() {
        true => String::new(),
        false => format!("\n{criterion_table}"),
    };
    let memory = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|value| value.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("? GiB".into(), |kib| format!("{:.0} GiB", kib / 1048576.0));
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|name| name.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown OS".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let postgres = cluster
        .version()
        .replace("postgres (PostgreSQL) ", "PostgreSQL ");
    let pg_dump =
        xtask::cluster::version_of(&cluster.pg_dump()).replace("pg_dump (PostgreSQL) ", "");
    let rustc = command_output("rustc", &["--version"]);
    let rustc: Vec<&str> = rustc.split_whitespace().take(2).collect();
    let rustc = rustc.join(" ");
    let load_end = load_average();
    let cpu = cpu_model();
    let cores = cores();
    let tiny = TINY_OPTS.join(" ");
    format!(
        r#"<!-- bench:begin — written by scripts/bench; edit outside these markers -->
## Latest run

{now}, commit `{commit}{changes}`,
`BENCH_DATA_MB={data_mb} BENCH_TABLES={tables} BENCH_ROUNDS={rounds} BENCH_TINY_ROUNDS={tiny_rounds} BENCH_CONCURRENCY={n} scripts/bench`.
Medians of {rounds} alternating rounds ({tiny_rounds} for the tiny dump and the first byte), everything
measured at niceness {nice}.
A ratio is pg_dump's time divided by pgdump-api's: 1.000× means the server adds nothing.

{summary}
{criterion}
Machine: {cpu}, {cores} cores,
{memory} memory, {os}, Linux {kernel}.
Load average (1, 5, 15 min) {load_before} before the run, {load_end} at its end: the benchmark
itself keeps one to two cores busy; more means other work was sharing the machine.
{postgres}, pg_dump {pg_dump},
{rustc}. PostgreSQL, pg_dump, pgdump-api and the client (the benchmark itself,
`xtask/src/bench.rs`) all run on this one machine, over TCP on 127.0.0.1.

The method (`$PG` is PostgreSQL's bin directory, `$DB` a database URL without the password,
which is in pg_dump's environment as `PGPASSWORD`; `$API` is `http://127.0.0.1:PORT/v1alpha1/pg_dump`
of `pgdump-api serve --server-host 127.0.0.1 --server-port 0 --pg-dump-path $PG/pg_dump`,
with the database URL, an admin secret and `HASURA_GRAPHQL_PG_DUMP_MAX_CONCURRENT={n}`
in its environment, so that the concurrent dumps all run at once, as the raw ones do). The
benchmark starts each pg_dump itself, as the server does, and times it from spawn to exit; it
sends each request from an in-process HTTP client (a new connection each, no compression
unless asked for) and times it from sending to the body's end:

```sh
# data dump (and, with --schema-only, the large catalog)
$PG/pg_dump --encoding=utf8 --data-only -f /dev/null $DB
$PG/pg_dump --encoding=utf8 --data-only $DB      # stdout a pipe the benchmark reads to its end
POST $API  X-Hasura-Admin-Secret: $SECRET  '{DATA_BODY}'
POST $API  X-Hasura-Admin-Secret: $SECRET  '{DATA_CLEAN_BODY}'
POST $API  X-Hasura-Admin-Secret: $SECRET  Accept-Encoding: zstd  '{DATA_BODY}'   # counted, not decoded
POST $API  X-Hasura-Admin-Secret: $SECRET  Accept-Encoding: gzip  '{DATA_BODY}'
$PG/pg_dump --encoding=utf8 --data-only $DB | gzip -6 | wc -c    # and zstd -1: sizes only
# peak memory: 5 written to /proc/$SERVER/clear_refs before each request, VmHWM of /proc/$SERVER/status after
# time to first byte: from spawning pg_dump to the first byte read from its stdout; from
# sending the request to the first chunk of the body; both readers leave after it
# tiny schema: wall time of the pg_dump process; of the request to its body's end
$PG/pg_dump --encoding=utf8 {tiny} -f /dev/null $DB
POST $API  ...  '{TINY_BODY}'
# concurrent: {n} of those pg_dump processes started at once, then waited for; and {n} of
# those requests sent at once from one client, each read to its end
```
<!-- bench:end -->"#
    )
}

/// Replaces the block between the markers of `path` by `report` (keeping the rest), or
/// writes a new file holding it.
pub(super) fn splice(path: &Path, report: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let has = |marker: &str| old.lines().any(|line| line.starts_with(marker));
    let new = if has("<!-- bench:begin") && has("<!-- bench:end") {
        let mut out = String::new();
        let mut skip = false;
        for line in old.lines() {
            if line.starts_with("<!-- bench:begin") {
                out.push_str(report);
                out.push('\n');
                skip = true;
            } else if line.starts_with("<!-- bench:end") {
                skip = false;
            } else if !skip {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    } else {
        format!("# Benchmarks\n\n{report}\n")
    };
    std::fs::write(path, new).with_context(|| path.display().to_string())
}

/// The 1, 5 and 15 minute load averages.
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}
