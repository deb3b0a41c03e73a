//! `xtask demo|load|bench`: what `scripts/demo`, `scripts/load` and `scripts/bench` run. Each
//! command says what it does at the top of its module; settings come from the environment, as
//! they did when these were shell scripts.

mod bench;
mod demo;
mod image;
mod load;
mod server;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: xtask demo|load|bench|image-test (run through scripts/demo, load, \
                     bench, test)";

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "demo" => demo::run(),
        "load" => load::run(),
        "bench" => bench::run(),
        "image-test" => image::run(std::env::args().nth(2)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{command}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The servers and pg_dumps of `scripts/postgres-matrix` (`server MAJOR BIN_DIR` and
/// `pg_dump MAJOR PATH` lines), fetched on first use; servers sorted by major.
struct Matrix {
    servers: Vec<(u32, PathBuf)>,
    pg_dumps: Vec<(u32, PathBuf)>,
}

fn matrix() -> Result<Matrix> {
    let script = xtask::cluster::workspace_root().join("scripts/postgres-matrix");
    let output = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed", script.display());
    }
    let mut matrix = Matrix {
        servers: Vec::new(),
        pg_dumps: Vec::new(),
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut words = line.splitn(3, ' ');
        let (Some(kind), Some(Ok(major)), Some(path)) =
            (words.next(), words.next().map(str::parse), words.next())
        else {
            bail!("bad line in the manifest of scripts/postgres-matrix: {line:?}");
        };
        match kind {
            "server" => matrix.servers.push((major, PathBuf::from(path))),
            "pg_dump" => matrix.pg_dumps.push((major, PathBuf::from(path))),
            _ => bail!("bad line in the manifest of scripts/postgres-matrix: {line:?}"),
        }
    }
    matrix.servers.sort();
    Ok(matrix)
}

/// Prints `==> what` on stderr.
fn step(what: &str) {
    eprintln!("==> {what}");
}

/// Builds pgdump-api in release (`--locked`) and returns the binary's path. xtask is built
/// with it, as `scripts/*` build them: built apart, the crates they share would be rebuilt
/// with each one's features in turn.
fn build_release() -> Result<PathBuf> {
    let root = xtask::cluster::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--locked", "--quiet"])
        .args(["-p", "pgdump-api", "-p", "xtask"])
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(target_dir().join("release/pgdump-api"))
}

/// `CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| xtask::cluster::workspace_root().join("target"))
}

/// A throwaway PostgreSQL cluster named `name` with these `settings`, from the PostgreSQL
/// the tests use; says where it listens.
fn start_cluster(name: &str, settings: &[&str]) -> Result<xtask::Cluster> {
    let pg_bin = xtask::cluster::bin_dir()?;
    let cluster = xtask::Cluster::start(&pg_bin, name, &random_hex()?, settings)?;
    step(&format!(
        "started a throwaway PostgreSQL ({}) on 127.0.0.1:{}",
        cluster.version(),
        cluster.port
    ));
    Ok(cluster)
}

/// 12 random bytes in hex: a password or an admin secret.
fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 12];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A whole positive number from the environment variable `name`, else `default`.
fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => match text.parse() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name} must be a positive integer, not {text:?}"),
        },
    }
}

/// The first `field: value` line of a `/proc` file whose field is `field`, e.g. `VmHWM` of
/// `/proc/PID/status` in kB.
fn proc_field(path: &str, field: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == field).then(|| value.trim().to_owned())
        })
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    proc_field(&format!("/proc/{pid}/status"), field)
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The CPU's model name.
fn cpu_model() -> String {
    proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into())
}

/// The number of cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
