//! Starting one pg_dump: its command line (explicit arguments, no shell; the password and
//! other secrets in its environment or a private service file, never in its arguments), its
//! supervisor, and its output. [`Processes`] knows every supervisor, to stop them all at
//! shutdown.
//!
//! As a cancel can come too early to cancel anything, backends from PostgreSQL 14 on are
//! also told to check that pg_dump is still there ([`CONNECTION_CHECK`]).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::error::DumpError;
use super::output::{read_capped, Output, Running};
use super::supervise::{supervise, Hold, Supervised};
use crate::clean::Cleaner;
use crate::conninfo::ConnInfo;

/// Makes pg_dump's backend check every second, while running a query, that pg_dump is still
/// there, and end if it is not.
const CONNECTION_CHECK: &str = "-c client_connection_check_interval=1000";

/// What to run: which pg_dump, with which validated arguments, against what.
pub(super) struct Job<'a> {
    pub pg_dump: &'a Path,
    pub args: &'a [String],
    pub conn: &'a ConnInfo,
    /// Whether the output goes through the cleaner.
    pub clean: bool,
    /// The server's version, when known.
    pub server: Option<crate::server_version::Version>,
    /// `--restrict-key`'s value, when the server chooses it (never logged).
    pub restrict_key: Option<&'a str>,
}

/// The pg_dump processes of a server: starts them, and stops them all at shutdown.
#[derive(Debug)]
pub(super) struct Processes {
    /// `true` once the server shuts down; every supervisor holds a receiver.
    shutdown: watch::Sender<bool>,
}

impl Default for Processes {
    fn default() -> Self {
        Processes {
            shutdown: watch::Sender::new(false),
        }
    }
}

impl Processes {
    /// Stops every pg_dump still running (SIGTERM, then SIGKILL after a grace) and waits
    /// until each has been reaped.
    pub(super) async fn stop_all(&self) {
        self.shutdown.send_replace(true);
        self.shutdown.closed().await;
    }

    /// Starts `job`'s pg_dump and returns its output once the first bytes are there (or
    /// pg_dump exited successfully with none). `hold` is kept until pg_dump has exited. Past
    /// `time_limit` pg_dump is stopped: before the first bytes that is
    /// [`DumpError::TimedOut`], after them the stream ends with that error.
    pub(super) async fn start(
        &self,
        job: Job<'_>,
        time_limit: Option<Duration>,
        hold: Hold,
    ) -> Result<Output, DumpError> {
        // After `stop_all`, a request that just got a freed slot must not start another.
        if *self.shutdown.borrow() {
            return Err(DumpError::Failed {
                stderr: "pg_dump was not started: the server is shutting down".to_owned(),
            });
        }
        let (mut command, service_file) = command(&job)?;
        let mut child = command.spawn().map_err(|err| DumpError::Spawn {
            detail: format!("could not start {}: {err}", job.pg_dump.display()),
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(DumpError::Spawn {
                detail: "pg_dump's pipes were not set up".to_owned(),
            });
        };
        let (stop, dropped) = oneshot::channel();
        let (exited, exit) = watch::channel(None);
        tokio::spawn(supervise(Supervised {
            child,
            dropped,
            deadline: time_limit.map(|limit| Instant::now() + limit),
            shutdown: self.shutdown.subscribe(),
            exited,
            hold: (hold, service_file),
        }));
        Output::start(Running {
            stdout,
            stderr: Some(tokio::spawn(read_capped(stderr))),
            cleaner: job.clean.then(Cleaner::new),
            conn: job.conn.clone(),
            time_limit,
            exit,
            _stop: stop,
        })
        .await
    }
}

/// pg_dump's command for `job`, and the service file it reads, if it needs one.
fn command(job: &Job<'_>) -> Result<(Command, Option<tempfile::NamedTempFile>), DumpError> {
    let conn = job.conn;
    let mut command = Command::new(job.pg_dump);
    command
        .arg("--encoding=utf8")
        .args(job.args)
        .args(job.restrict_key.map(|key| format!("--restrict-key={key}")))
        .arg(conn.public())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Only a backstop, should the supervisor itself be dropped (the runtime ending):
        // pg_dump is normally stopped by its supervisor, more gently.
        .kill_on_drop(true);
    if let Some(password) = conn.password() {
        command.env("PGPASSWORD", OsStr::from_bytes(password));
    }
    // A backend notices that its client is gone only when it next talks to it, so one
    // waiting on a lock outlives a pg_dump that died before its cancel request got there
    // (a cancel that arrives before the query is read is dropped). From PostgreSQL 14
    // on, the backend can be told to check; libpq reads PGOPTIONS unless the connection
    // string sets `options`.
    if job.server.is_some_and(|server| server.major >= 14) {
        let mut options = std::env::var_os("PGOPTIONS").unwrap_or_default();
        if !options.is_empty() {
            options.push(" ");
        }
        options.push(CONNECTION_CHECK);
        command.env("PGOPTIONS", options);
    }
    // sslpassword has no environment variable: it goes in a private service file, whose
    // values libpq uses for whatever the connection string leaves unset.
    let service_file = match conn.ssl_password() {
        Some(ssl_password) => {
            let file = service_file(ssl_password).map_err(|err| DumpError::Spawn {
                detail: format!("could not write pg_dump's service file: {err}"),
            })?;
            command
                .env("PGSERVICEFILE", file.path())
                .env("PGSERVICE", SERVICE_NAME);
            Some(file)
        }
        None => None,
    };
    Ok((command, service_file))
}

/// The service that carries secrets pg_dump cannot get from its environment.
const SERVICE_NAME: &str = "pgdump-api";

/// A temporary service file readable by this user only (tempfile creates it with mode 0600).
fn service_file(ssl_password: &str) -> io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("pgdump-api-service-")
        .tempfile()?;
    writeln!(file, "[{SERVICE_NAME}]\nsslpassword={ssl_password}")?;
    file.flush()?;
    Ok(file)
}
