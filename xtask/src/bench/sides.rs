//! The two sides of every comparison: pg_dump run here as the server runs it, and the same
//! dump asked of the server; each timed, in microseconds.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;
use xtask::Cluster;

use super::{median, micros, Bench};
use crate::server::{Options, Server};
use crate::status_kib;

impl Bench<'_> {
    pub(super) fn start_server(&mut self, db: &str) -> Result<()> {
        self.server = None;
        self.db = db.to_owned();
        self.server = Some(Server::start(
            &self.bin,
            &Options {
                database_url: &self.cluster.url(db),
                admin_secret: &self.secret,
                pg_dump: &self.cluster.pg_dump(),
                port: 0,
                env: &[
                    (
                        "HASURA_GRAPHQL_PG_DUMP_MAX_CONCURRENT",
                        self.concurrency.to_string(),
                    ),
                    (
                        "HASURA_GRAPHQL_PG_DUMP_MAX_CONCURRENT_CLUSTER",
                        self.cluster_slots.to_string(),
                    ),
                ],
                echo: false,
            },
        )?);
        Ok(())
    }

    pub(super) fn server(&self) -> &Server {
        self.server.as_ref().expect("a server runs")
    }

    /// pg_dump as the server runs it (it adds --encoding=utf8), the password in its
    /// environment as the server passes it.
    pub(super) fn pg_dump(&self, args: &[&str]) -> Command {
        pg_dump_command(self.cluster, &self.db, args)
    }

    /// One pg_dump run, output discarded: microseconds.
    pub(super) fn raw(&self, args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        let status = self
            .pg_dump(args)
            .args(["-f", "/dev/null"])
            .status()
            .context("pg_dump")?;
        let us = micros(t0);
        if !status.success() {
            bail!("pg_dump {args:?} failed");
        }
        Ok(us)
    }

    /// pg_dump into a pipe read to its end, the cheapest streaming reader: what any server
    /// that relays pg_dump's stdout pays at least, for reference.
    pub(super) fn raw_pipe(&self, args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        let mut child = self.pg_dump(args).stdout(Stdio::piped()).spawn()?;
        let mut stdout = child.stdout.take().context("stdout")?;
        let mut buffer = vec![0; 64 * 1024];
        while stdout.read(&mut buffer)? > 0 {}
        let status = child.wait()?;
        let us = micros(t0);
        if !status.success() {
            bail!("pg_dump {args:?} failed");
        }
        Ok(us)
    }

    /// Microseconds from starting pg_dump to its first byte on a pipe (pg_dump's stdio
    /// buffering is the same as under the server); then the reader leaves.
    pub(super) fn raw_ttfb(&self, args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        let mut child = self
            .pg_dump(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdout = child.stdout.take().context("stdout")?;
        let read = stdout.read(&mut [0; 1]);
        let us = micros(t0);
        drop(stdout);
        let _ = child.kill();
        let _ = child.wait();
        if read? != 1 {
            bail!("pg_dump {args:?} wrote nothing");
        }
        Ok(us)
    }

    /// N pg_dumps at once, each started like `raw`: microseconds for all.
    pub(super) fn raw_concurrent(&self, args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        let children = (0..self.concurrency)
            .map(|_| self.pg_dump(args).args(["-f", "/dev/null"]).spawn())
            .collect::<Result<Vec<_>, _>>()?;
        for mut child in children {
            if !child.wait()?.success() {
                bail!("pg_dump {args:?} failed");
            }
        }
        Ok(micros(t0))
    }

    /// One request read to its end: microseconds and bytes.
    pub(super) fn api(&self, body: &'static str) -> Result<(f64, u64)> {
        let request = self.request(body);
        self.runtime.block_on(async move {
            let t0 = Instant::now();
            let (bytes, _) = read_response(request, false).await?;
            Ok((micros(t0), bytes))
        })
    }

    /// One request asking for `coding`, read to its end without decoding: microseconds and
    /// the bytes on the wire.
    pub(super) fn api_encoded(&self, body: &'static str, coding: &str) -> Result<(f64, u64)> {
        let request = self.request(body).header("accept-encoding", coding);
        let coding = coding.to_owned();
        self.runtime.block_on(async move {
            let t0 = Instant::now();
            let response = request.send().await.context("request")?;
            let sent = response
                .headers()
                .get("content-encoding")
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
            if sent.as_deref() != Some(coding.as_str()) {
                bail!("asked for {coding}, got content-encoding {sent:?}");
            }
            let (bytes, _) = read_body(response, false).await?;
            Ok((micros(t0), bytes))
        })
    }

    /// Microseconds to the first byte of a dump's body; the client leaves after it.
    pub(super) fn api_ttfb(&self, body: &'static str) -> Result<f64> {
        let request = self.request(body);
        self.runtime.block_on(async move {
            let t0 = Instant::now();
            let (_, first) = read_response(request, true).await?;
            let first = first.context("an empty body")?;
            Ok(first.duration_since(t0).as_secs_f64() * 1e6)
        })
    }

    /// N requests at once, each read to its end: microseconds for all.
    pub(super) fn api_concurrent(&self, body: &'static str) -> Result<f64> {
        let requests: Vec<_> = (0..self.concurrency).map(|_| self.request(body)).collect();
        self.runtime.block_on(async move {
            let t0 = Instant::now();
            let mut set = JoinSet::new();
            for request in requests {
                set.spawn(read_response(request, false));
            }
            while let Some(done) = set.join_next().await {
                done??;
            }
            Ok(micros(t0))
        })
    }

    pub(super) fn request(&self, body: &'static str) -> reqwest::RequestBuilder {
        self.http
            .post(self.server().url("/v1alpha1/pg_dump"))
            .header("X-Hasura-Admin-Secret", &self.secret)
            .body(body)
    }

    /// Resets the server's peak resident memory (Linux ≥ 4.0).
    pub(super) fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.server().pid()), "5");
    }

    pub(super) fn peak_kib(&self) -> f64 {
        status_kib(self.server().pid(), "VmHWM") as f64
    }

    pub(super) fn record_peak(&mut self) {
        let kib = self.peak_kib();
        self.record("peak", kib);
    }

    pub(super) fn record(&mut self, series: &'static str, value: f64) {
        self.results.entry(series).or_default().push(value);
    }

    pub(super) fn last(&self, series: &str) -> f64 {
        self.results
            .get(series)
            .and_then(|values| values.last().copied())
            .unwrap_or(0.0)
    }

    /// Prints the spread of some series to the terminal.
    pub(super) fn spread(&self, series: &[&str]) {
        for name in series {
            let mut values = self.results.get(name).cloned().unwrap_or_default();
            values.sort_by(f64::total_cmp);
            eprintln!(
                "    {name:<18} median {:8.1} ms   min {:8.1}   max {:8.1}   (n={})",
                median(&values) / 1e3,
                values.first().unwrap_or(&0.0) / 1e3,
                values.last().unwrap_or(&0.0) / 1e3,
                values.len()
            );
        }
    }
}

/// Sends `request`, checks for 200, and reads the body to its end (or, with `first_only`, to
/// its first chunk). Returns the bytes read and, with `first_only`, when the first arrived.
pub(super) async fn read_response(
    request: reqwest::RequestBuilder,
    first_only: bool,
) -> Result<(u64, Option<Instant>)> {
    let response = request.send().await.context("request")?;
    read_body(response, first_only).await
}

/// Checks for 200 and reads the body as [`read_response`] does.
async fn read_body(
    mut response: reqwest::Response,
    first_only: bool,
) -> Result<(u64, Option<Instant>)> {
    if response.status() != 200 {
        bail!("HTTP {}: {}", response.status(), response.text().await?);
    }
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await.context("response body")? {
        bytes += chunk.len() as u64;
        if first_only && !chunk.is_empty() {
            return Ok((bytes, Some(Instant::now())));
        }
    }
    Ok((bytes, None))
}

pub(super) fn pg_dump_command(cluster: &Cluster, db: &str, args: &[&str]) -> Command {
    let mut command = Command::new(cluster.pg_dump());
    command
        .env("PGPASSWORD", cluster.password())
        .arg("--encoding=utf8")
        .args(args)
        .arg(cluster.url_without_password(db));
    command
}

/// The size of a dump of `db` with `args`, in bytes.
pub(super) fn dump_size(cluster: &Cluster, db: &str, args: &[&str]) -> Result<u64> {
    let mut child = pg_dump_command(cluster, db, args)
        .stdout(Stdio::piped())
        .spawn()
        .context("pg_dump")?;
    let size = std::io::copy(
        &mut child.stdout.take().context("stdout")?,
        &mut std::io::sink(),
    )?;
    if !child.wait()?.success() {
        bail!("pg_dump {args:?} failed");
    }
    Ok(size)
}

/// The size of a dump of `db` with `args` through `program level` (`gzip -6`, `zstd -1`), or
/// `None` when the program is not installed.
pub(super) fn compressed_size(
    cluster: &Cluster,
    db: &str,
    args: &[&str],
    program: &str,
    level: &str,
) -> Result<Option<u64>> {
    let compressor = Command::new(program)
        .args([level, "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut compressor) = compressor else {
        return Ok(None);
    };
    let mut input = compressor.stdin.take().context("stdin")?;
    let mut pg_dump = pg_dump_command(cluster, db, args)
        .stdout(Stdio::piped())
        .spawn()
        .context("pg_dump")?;
    let mut dump = pg_dump.stdout.take().context("stdout")?;
    let feeder = std::thread::spawn(move || std::io::copy(&mut dump, &mut input));
    let size = std::io::copy(
        &mut compressor.stdout.take().context("stdout")?,
        &mut std::io::sink(),
    )?;
    feeder.join().expect("feeder")?;
    if !pg_dump.wait()?.success() || !compressor.wait()?.success() {
        bail!("pg_dump {args:?} | {program} {level} failed");
    }
    Ok(Some(size))
}
