//! Starting one pg_dump: its command line (explicit arguments, no shell; the password and
//! other secrets in its environment or a private service file, never in its arguments), its
//! supervisor, and its output. [`Processes`] knows every supervisor, to stop them all at
//! shutdown. pg_dump is started through the [`Launcher`], so that it dies with the server even
//! when the server is killed with SIGKILL.
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
use crate::launcher::Launcher;

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
    /// What starts pg_dump so that it dies with the server; without it, pg_dump is started
    /// directly.
    launcher: Option<Launcher>,
}

impl Default for Processes {
    fn default() -> Self {
        Processes {
            shutdown: watch::Sender::new(false),
            launcher: None,
        }
    }
}

impl Processes {
    /// Starts every pg_dump through `launcher`, if any.
    pub(super) fn launch_through(&mut self, launcher: Option<Launcher>) {
        self.launcher = launcher;
    }

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
        let service_file = match job.conn.ssl_password() {
            Some(ssl_password) => {
                Some(service_file(ssl_password).map_err(|err| DumpError::Spawn {
                    detail: format!("could not write pg_dump's service file: {err}"),
                })?)
            }
            None => None,
        };
        // Spawned right here, on the thread that polls this request: a runtime worker (or
        // the thread in `block_on`), which lives as long as the server. Never move this into
        // `spawn_blocking` (or after a `block_in_place`): the launcher's death signal fires
        // when the thread that forked it ends, and a blocking-pool thread ends after 10 s
        // idle — it would kill a pg_dump still waiting on a lock. `deathsig.rs` in the
        // integration tests holds a dump longer than that.
        let spawned = match &self.launcher {
            Some(launcher) => {
                let mut launched = launcher.command(job.pg_dump);
                configure(&mut launched, &job, service_file.as_ref());
                launched.spawn().or_else(|err| {
                    tracing::warn!(target: "pg-dump", error = %err,
                        "could not start pg_dump through the launcher; starting it directly");
                    direct(&job, service_file.as_ref()).spawn()
                })
            }
            None => direct(&job, service_file.as_ref()).spawn(),
        };
        let mut child = spawned.map_err(|err| DumpError::Spawn {
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

/// pg_dump started directly, for `job`.
fn direct(job: &Job<'_>, service_file: Option<&tempfile::NamedTempFile>) -> Command {
    let mut command = Command::new(job.pg_dump);
    configure(&mut command, job, service_file);
    command
}

/// Adds pg_dump's arguments, streams and environment for `job` to `command` (pg_dump itself,
/// or the launcher that becomes it), with `service_file` if it needs one.
fn configure(command: &mut Command, job: &Job<'_>, service_file: Option<&tempfile::NamedTempFile>) {
    let conn = job.conn;
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
    if let Some(file) = service_file {
        command
            .env("PGSERVICEFILE", file.path())
            .env("PGSERVICE", SERVICE_NAME);
    }
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
