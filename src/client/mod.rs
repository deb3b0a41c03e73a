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
mod project;
mod request;

use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

use args::{ConnectArgs, DumpArgs, MigrateArgs, MigrateCommand, SeedArgs, SeedCommand};
use error::{is_closed_pipe, Interrupted};
use names::SchemaName;
use output::{AtomicDir, AtomicFile};
use progress::Progress;
use project::{Layout, Settings};
use request::{copy_body, DumpRequest, Endpoint};

/// `pgdump-api dump`: the dump to a file, atomically, or to stdout.
pub fn dump(args: DumpArgs) -> anyhow::Result<()> {
    run(async move {
        let settings = Settings::resolve(&args.connect)?;
        let endpoint = Endpoint::new(&settings, &args.connect)?;
        let request = DumpRequest {
            opts: args.pg_dump_opts,
            clean_output: args.clean,
            source: args.source,
        };
        let quiet = args.connect.quiet;
        match args.output.filter(|path| path != Path::new("-")) {
            Some(path) => {
                let started = Instant::now();
                let mut file = AtomicFile::create(&path)?;
                let bytes =
                    fetch(&endpoint, &request, &mut file, Progress::new(quiet, false)).await?;
                file.commit()?;
                if !quiet {
                    summary(&path, bytes, started);
                }
                Ok(())
            }
            None => {
                let mut stdout = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
                let progress = Progress::new(quiet, true);
                match fetch(&endpoint, &request, &mut stdout, progress).await {
                    // Whoever reads our output has all they want (`| head`): not a failure.
                    Err(err) if is_closed_pipe(&err) => Ok(()),
                    result => result.map(drop),
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
            false => args.schemas.into_iter().flatten().collect(),
        };
        // The Hasura CLI's request, with exact names, and --strict-names so that a schema
        // that does not exist fails the migration instead of being left out of it.
        let mut opts = strings(&["-O", "-x", "--schema-only", "--strict-names"]);
        for schema in &schemas {
            opts.extend(["--schema".to_owned(), schema.pattern()]);
        }
        let settings = Settings::resolve(&args.connect)?;
        let request = DumpRequest {
            opts,
            clean_output: true,
            source: source(settings.layout()?, &args.database_name),
        };
        let endpoint = Endpoint::new(&settings, &args.connect)?;
        let version = timestamp_ms();
        let name = format!("{version}_{}", args.name);
        let dir = settings.migration_dir(&args.database_name, &name)?;
        let staging = AtomicDir::create(&dir)?;
        let mut file = AtomicFile::create(&staging.staged("up.sql"))?;
        fetch(&endpoint, &request, &mut file, progress(&args.connect)).await?;
        file.commit()?;
        let dir = staging.commit()?;
        print_path(&dir.join("up.sql"))?;
        let quiet = args.connect.quiet;
        match settings.layout()? {
            Layout::V3 => {
                applied::mark_applied(&endpoint, &args.database_name, version, quiet).await
            }
            // A config v2 CLI keeps its applied migrations in hdb_catalog.schema_migrations,
            // which only it writes.
            Layout::V2 => eprintln!(
                "config v2 project: mark migration {version} applied with \
                 hasura migrate apply --skip-execution --version {version}"
            ),
        }
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
        let settings = Settings::resolve(&args.connect)?;
        let request = DumpRequest {
            opts,
            clean_output: true,
            source: source(settings.layout()?, &args.database_name),
        };
        let endpoint = Endpoint::new(&settings, &args.connect)?;
        let dir = settings.seeds_dir(&args.database_name)?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        let path = dir.join(format!("{}_{}.sql", timestamp_ms(), args.name));
        let mut file = AtomicFile::create(&path)?;
        fetch(&endpoint, &request, &mut file, progress(&args.connect)).await?;
        file.commit()?;
        print_path(&path)
    })
}

/// Sends the request and streams a successful answer into `out`; returns its size.
async fn fetch(
    endpoint: &Endpoint,
    request: &DumpRequest,
    out: &mut impl Write,
    progress: Progress,
) -> anyhow::Result<u64> {
    let response = endpoint.pg_dump(request).await?;
    let bytes = copy_body(response, out, &progress).await?;
    progress.clear();
    Ok(bytes)
}

/// The request's `source`: the database name, except in a config v2 project, whose one
/// database the Hasura CLI never names (a server before sources would not know the field).
fn source(layout: Layout, database: &str) -> Option<String> {
    match layout {
        Layout::V2 if database == "default" => None,
        _ => Some(database.to_owned()),
    }
}

/// `dump -o`'s last line: what was written, how big, how long it took.
fn summary(path: &Path, bytes: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    let _ = writeln!(
        io::stderr(),
        "pgdump-api: wrote {} ({bytes} bytes) in {seconds:.1} s",
        path.display()
    );
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
