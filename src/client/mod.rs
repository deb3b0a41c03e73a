//! The command-line client: `pgdump-api dump`, `migrate create --from-server` and `seed
//! create --from-table`, for any server that speaks the PG Dump API (pgdump-api or Hasura).
//!
//! [`args`] holds the flags, [`names`] turns plain names into exact pg_dump patterns,
//! [`request`] sends the request and streams the answer, [`output`] writes it atomically and
//! [`progress`] shows how it goes. A dump that was cut short never looks complete: files are
//! written beside their final path and renamed only when the response ended complete; every
//! failure, and Ctrl-C, SIGTERM or SIGHUP, removes what was written. [`applied`] marks a new
//! migration applied on a server that has Hasura's metadata API.
//!
//! [`error`] holds the kinds of failure and the exit status of each, so that scripts can
//! tell them apart.

mod applied;
pub mod args;
pub mod error;
mod names;
mod output;
mod progress;
mod request;

use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

use args::{ConnectArgs, DumpArgs, MigrateArgs, MigrateCommand, SeedArgs, SeedCommand};
use error::{is_closed_pipe, Interrupted};
use names::SchemaName;
use output::{AtomicDir, AtomicFile};
use progress::Progress;
use request::{copy_body, DumpRequest, Endpoint};

/// `pgdump-api dump`: the dump to a file, atomically, or to stdout.
pub fn dump(args: DumpArgs) -> anyhow::Result<()> {
    run(async move {
        let endpoint = Endpoint::new(&args.connect)?;
        let request = DumpRequest {
            opts: args.pg_dump_opts,
            clean_output: args.clean,
            source: args.source,
        };
        let quiet = args.connect.quiet;
        match args.output.filter(|path| path != Path::new("-")) {
            Some(path) => {
                let mut file = AtomicFile::create(&path)?;
                fetch(&endpoint, &request, &mut file, Progress::new(quiet, false)).await?;
                file.commit()
            }
            None => {
                let mut stdout = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
                let progress = Progress::new(quiet, true);
                match fetch(&endpoint, &request, &mut stdout, progress).await {
                    // Whoever reads our output has all they want (`| head`): not a failure.
                    Err(err) if is_closed_pipe(&err) => Ok(()),
                    result => result,
                }
            }
        }
    })
}

/// `pgdump-api migrate …`.
pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let MigrateCommand::Create(args) = args.command;
    run(async move {
        let schemas = match args.schemas.is_empty() {
            true => vec![SchemaName("public".to_owned())],
            false => args.schemas,
        };
        // The Hasura CLI's request, with exact names, and --strict-names so that a schema
        // that does not exist fails the migration instead of being left out of it.
        let mut opts = strings(&["-O", "-x", "--schema-only", "--strict-names"]);
        for schema in &schemas {
            opts.extend(["--schema".to_owned(), schema.pattern()]);
        }
        let request = DumpRequest {
            opts,
            clean_output: true,
            source: Some(args.database_name.clone()),
        };
        let endpoint = Endpoint::new(&args.connect)?;
        let version = timestamp_ms();
        let dir = project_dir(args.project)?
            .join("migrations")
            .join(&args.database_name)
            .join(format!("{version}_{}", args.name));
        let staging = AtomicDir::create(&dir)?;
        let mut file = AtomicFile::create(&staging.staged("up.sql"))?;
        fetch(&endpoint, &request, &mut file, progress(&args.connect)).await?;
        file.commit()?;
        let dir = staging.commit()?;
        print_path(&dir.join("up.sql"))?;
        let quiet = args.connect.quiet;
        applied::mark_applied(&endpoint, &args.database_name, version, quiet).await;
        Ok(())
    })
}

/// `pgdump-api seed …`.
pub fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let SeedCommand::Create(args) = args.command;
    run(async move {
        // The Hasura CLI's request, with exact names, and --strict-names so that a table that
        // does not exist fails the seed instead of being left out of it.
        let mut opts = strings(&[
            "--no-owner",
            "--no-acl",
            "--data-only",
            "--column-inserts",
            "--strict-names",
        ]);
        for table in &args.tables {
            opts.extend(["--table".to_owned(), table.pattern()]);
        }
        let request = DumpRequest {
            opts,
            clean_output: true,
            source: Some(args.database_name.clone()),
        };
        let endpoint = Endpoint::new(&args.connect)?;
        let dir = project_dir(args.project)?
            .join("seeds")
            .join(&args.database_name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        let path = dir.join(format!("{}_{}.sql", timestamp_ms(), args.name));
        let mut file = AtomicFile::create(&path)?;
        fetch(&endpoint, &request, &mut file, progress(&args.connect)).await?;
        file.commit()?;
        print_path(&path)
    })
}

/// Sends the request and streams a successful answer into `out`.
async fn fetch(
    endpoint: &Endpoint,
    request: &DumpRequest,
    out: &mut impl Write,
    progress: Progress,
) -> anyhow::Result<()> {
    let response = endpoint.pg_dump(request).await?;
    copy_body(response, out, &progress).await?;
    progress.clear();
    Ok(())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn progress(connect: &ConnectArgs) -> Progress {
    Progress::new(connect.quiet, false)
}

/// Runs a command on a small runtime. A signal that would end the process drops the
/// command's future instead, so that its temporary files are removed before we exit.
fn run(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async {
        let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
        let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
        let mut hangup = listen(SignalKind::hangup(), "SIGHUP")?;
        let interrupted = |name, number| Err(Interrupted { name, number }.into());
        tokio::select! {
            result = command => result,
            _ = interrupt.recv() => interrupted("SIGINT", 2),
            _ = terminate.recv() => interrupted("SIGTERM", 15),
            _ = hangup.recv() => interrupted("SIGHUP", 1),
        }
    })
}

fn listen(kind: SignalKind, name: &str) -> anyhow::Result<Signal> {
    signal(kind).with_context(|| format!("could not handle {name}"))
}

/// The Hasura project: `--project`, else the nearest directory up from here holding
/// `config.yaml` (as the Hasura CLI looks for it), else the current directory.
fn project_dir(project: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(project) = project {
        return Ok(project);
    }
    let cwd = std::env::current_dir().context("could not read the current directory")?;
    Ok(cwd
        .ancestors()
        .find(|dir| dir.join("config.yaml").is_file())
        .unwrap_or(&cwd)
        .to_owned())
}

/// Milliseconds since the Unix epoch: the version of a Hasura migration or seed.
fn timestamp_ms() -> u128 {
    version_at(SystemTime::now())
}

/// The version of a migration or seed made at `time`.
fn version_at(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or(0)
}

fn print_path(path: &Path) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{}", path.display()) {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            Err(err).context("could not print the path")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_named_by_milliseconds() {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(1_718_000_000_123);
        assert_eq!(version_at(time), 1_718_000_000_123);
        let later = time + std::time::Duration::from_micros(999);
        assert_eq!(version_at(later), 1_718_000_000_123);
    }
}
