//! One pg_dump run: spawn it without a shell, wait for its first bytes (or its exit), then
//! stream its stdout chunk by chunk, through the cleaner when asked. stderr is drained
//! concurrently into a capped buffer so pg_dump never blocks on it.
//!
//! Each pg_dump has a supervisor task that owns the process and stops it when its output is
//! dropped (client gone, send timeout), when its time limit passes — whether or not anyone
//! reads its output — and when the server shuts down. Stopping is SIGTERM first: pg_dump's
//! own handler then cancels its query, so that a backend waiting on a lock ends too (a killed
//! pg_dump would leave it waiting); SIGKILL follows after [`STOP_GRACE`]. As a cancel can
//! come too early to cancel anything, backends from PostgreSQL 14 on are also told to check
//! that pg_dump is still there ([`CONNECTION_CHECK`]). Whatever must last as long as pg_dump
//! (its concurrency slot, its service file) is dropped only once the process has been reaped.

use std::any::Any;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, Fuse};
use futures_util::{Stream, StreamExt};
use rustix::process::{kill_process, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clean::Cleaner;
use crate::conninfo::ConnInfo;

/// How much of pg_dump's stderr is kept; the rest is counted and dropped.
const STDERR_CAP: usize = 64 * 1024;
/// Read size for pg_dump's stdout: the pipe's default capacity.
const CHUNK: usize = 64 * 1024;
/// How long pg_dump gets after SIGTERM (to cancel its query and exit) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Something kept until pg_dump has exited and been reaped, e.g. its concurrency slot.
pub type Hold = Arc<dyn Any + Send + Sync>;

/// Makes pg_dump's backend check every second, while running a query, that pg_dump is still
/// there, and end if it is not.
const CONNECTION_CHECK: &str = "-c client_connection_check_interval=1000";

/// What to run: which pg_dump, with which validated arguments, against what.
pub struct Job<'a> {
    pub pg_dump: &'a Path,
    pub args: &'a [String],
    pub conn: &'a ConnInfo,
    /// Whether the output goes through the cleaner.
    pub clean: bool,
    /// The server's version, when known.
    pub server: Option<super::Version>,
}

/// Why a dump produced no output.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// pg_dump could not be started at all.
    #[error("internal exception while executing pg_dump")]
    Spawn { detail: String },
    /// pg_dump exited non-zero before writing anything.
    #[error("error while executing pg_dump")]
    Failed { stderr: String },
    /// pg_dump found nothing matching a `--schema`/`--table`/… pattern.
    #[error("{message}")]
    NoMatch { message: String, stderr: String },
    /// pg_dump ran past the time limit and was stopped.
    #[error("pg_dump ran past the time limit of {} s and was stopped", limit.as_secs())]
    TimedOut { limit: Duration },
}

impl DumpError {
    /// Operator detail: pg_dump's stderr or the OS error.
    pub fn internal(&self) -> Option<String> {
        match self {
            DumpError::Spawn { detail } => Some(detail.clone()),
            DumpError::Failed { stderr } | DumpError::NoMatch { stderr, .. } => {
                Some(stderr.clone())
            }
            DumpError::TimedOut { .. } => None,
        }
    }
}

/// Why pg_dump was stopped rather than left to exit by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its output was dropped: the request ended.
    Dropped,
    /// The time limit passed.
    TimeLimit,
    /// The server is shutting down.
    Shutdown,
}

/// How a pg_dump ended, as its supervisor saw it.
#[derive(Debug)]
struct Exit {
    status: Result<ExitStatus, String>,
    stopped: Option<Stop>,
}

/// The pg_dump processes of a server: starts them, and stops them all at shutdown.
#[derive(Debug)]
pub struct Processes {
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
    pub async fn stop_all(&self) {
        self.shutdown.send_replace(true);
        self.shutdown.closed().await;
    }

    /// Starts `job`'s pg_dump and returns its output once the first bytes are there (or
    /// pg_dump exited successfully with none). `hold` is kept until pg_dump has exited. Past
    /// `time_limit` pg_dump is stopped: before the first bytes that is
    /// [`DumpError::TimedOut`], after them the stream ends with a `TimedOut` error.
    pub async fn start(
        &self,
        job: Job<'_>,
        time_limit: Option<Duration>,
        hold: Hold,
    ) -> Result<Output, DumpError> {
        let Job {
            pg_dump,
            args,
            conn,
            clean,
            server,
        } = job;
        // After `stop_all`, a request that just got a freed slot must not start another.
        if *self.shutdown.borrow() {
            return Err(DumpError::Failed {
                stderr: "pg_dump was not started: the server is shutting down".to_owned(),
            });
        }
        let mut command = Command::new(pg_dump);
        command
            .arg("--encoding=utf8")
            .args(args)
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
        if server.is_some_and(|server| server.major >= 14) {
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
        let mut child = command.spawn().map_err(|err| DumpError::Spawn {
            detail: format!("could not start {}: {err}", pg_dump.display()),
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
            _hold: (hold, service_file),
        }));
        let mut run = Running {
            stdout,
            stderr: Some(tokio::spawn(read_capped(stderr))),
            cleaner: clean.then(Cleaner::new),
            conn: conn.clone(),
            time_limit,
            exit: exit.clone(),
            _stop: stop,
        };
        let first = match run.read().await {
            Ok(Some(chunk)) => Some(chunk),
            Ok(None) => {
                run.finish().await?;
                None
            }
            Err(err) => {
                return Err(DumpError::Spawn {
                    detail: format!("could not read pg_dump's output: {err}"),
                })
            }
        };
        let stream = futures_util::stream::unfold(State::Started { run, first }, State::next);
        Ok(Output {
            // Fused: the compression layer may poll again after the end.
            stream: stream.boxed().fuse(),
            exit,
        })
    }
}

/// What a supervisor owns.
struct Supervised {
    child: Child,
    /// Resolves when the output is dropped.
    dropped: oneshot::Receiver<()>,
    deadline: Option<Instant>,
    shutdown: watch::Receiver<bool>,
    exited: watch::Sender<Option<Exit>>,
    /// Dropped after pg_dump has been reaped.
    _hold: (Hold, Option<tempfile::NamedTempFile>),
}

/// Waits for pg_dump's exit, or stops it, then reports how it ended.
async fn supervise(mut run: Supervised) {
    let time_limit = async {
        match run.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        status = run.child.wait() => {
            let status = status.map_err(|err| format!("could not wait for pg_dump: {err}"));
            run.exited.send_replace(Some(Exit { status, stopped: None }));
            return;
        }
        _ = &mut run.dropped => Stop::Dropped,
        () = time_limit => Stop::TimeLimit,
        _ = run.shutdown.wait_for(|shutting_down| *shutting_down) => Stop::Shutdown,
    };
    let status = terminate(&mut run.child, STOP_GRACE)
        .await
        .map_err(|err| format!("could not stop pg_dump: {err}"));
    run.exited.send_replace(Some(Exit {
        status,
        stopped: Some(stop),
    }));
}

/// SIGTERM, so that pg_dump cancels its query and its session ends; SIGKILL if it is still
/// there after `grace`. Returns once it has been reaped.
async fn terminate(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    // Not reaped yet (only this task waits for it), so the pid is still pg_dump's.
    if let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32)) {
        // It may have exited already: then only the reaping is left.
        let _ = kill_process(pid, Signal::TERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(target: "pg-dump", grace_ms = grace.as_millis() as u64,
                "pg_dump did not exit after SIGTERM: killing it");
            child.start_kill()?;
            child.wait().await
        }
    }
}

/// A running dump's output: pg_dump's stdout, cleaned when asked. Dropping it stops pg_dump.
pub struct Output {
    stream: Fuse<BoxStream<'static, io::Result<Bytes>>>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Output {
    /// Why pg_dump was stopped, once it has exited; `None` while it runs or when it exited
    /// by itself.
    pub fn stopped(&self) -> Option<Stop> {
        self.exit.borrow().as_ref().and_then(|exit| exit.stopped)
    }

    /// Resolves once pg_dump has exited, with why it was stopped, if it was.
    pub fn exited(&self) -> impl std::future::Future<Output = Option<Stop>> + Send + 'static {
        let mut exit = self.exit.clone();
        async move {
            match exit.wait_for(Option::is_some).await {
                Ok(exit) => exit.as_ref().and_then(|exit| exit.stopped),
                Err(_) => Some(Stop::Shutdown),
            }
        }
    }
}

impl Stream for Output {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.poll_next_unpin(cx)
    }
}

/// A running pg_dump's pipes and what its output goes through.
struct Running {
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    cleaner: Option<Cleaner>,
    conn: ConnInfo,
    time_limit: Option<Duration>,
    exit: watch::Receiver<Option<Exit>>,
    /// Dropping it tells the supervisor to stop pg_dump.
    _stop: oneshot::Sender<()>,
}

impl Running {
    /// The next raw chunk of stdout, `None` at its end (pg_dump exited or was stopped).
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let n = self.stdout.read_buf(&mut buf).await?;
        Ok((n > 0).then(|| buf.freeze()))
    }

    /// Waits for pg_dump's exit after its stdout ended; a failure carries its stderr.
    async fn finish(&mut self) -> Result<(), DumpError> {
        let (status, stopped) = match self.exit.wait_for(Option::is_some).await {
            Ok(exit) => match exit.as_ref() {
                Some(exit) => (exit.status.clone(), exit.stopped),
                None => unreachable!("waited for an exit"),
            },
            Err(_) => (Err("pg_dump's supervisor ended".to_owned()), None),
        };
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        match (stopped, status) {
            (Some(Stop::TimeLimit), _) => Err(DumpError::TimedOut {
                limit: self.time_limit.unwrap_or_default(),
            }),
            (_, Err(detail)) => Err(DumpError::Spawn { detail }),
            (Some(Stop::Shutdown), Ok(_)) => Err(DumpError::Failed {
                stderr: format!(
                    "pg_dump was stopped: the server is shutting down\n{}",
                    self.conn.redact(&stderr)
                ),
            }),
            (_, Ok(status)) => classify(status, &self.conn.redact(&stderr)),
        }
    }

    /// Passes a raw chunk through the cleaner, if any.
    fn filter(&mut self, chunk: Bytes) -> Bytes {
        match &mut self.cleaner {
            Some(cleaner) => {
                let mut out = Vec::with_capacity(chunk.len());
                cleaner.feed(&chunk, &mut out);
                Bytes::from(out)
            }
            None => chunk,
        }
    }

    /// What the cleaner still holds at the end of the output.
    fn flush(&mut self) -> Bytes {
        let mut out = Vec::new();
        if let Some(cleaner) = &mut self.cleaner {
            cleaner.finish(&mut out);
        }
        Bytes::from(out)
    }
}

/// The output stream's states.
enum State {
    Started { run: Running, first: Option<Bytes> },
    Streaming(Running),
    Done,
}

impl State {
    async fn next(self) -> Option<(io::Result<Bytes>, State)> {
        let mut run = match self {
            State::Started { mut run, first } => {
                let Some(first) = first else {
                    // pg_dump already exited successfully without output.
                    let tail = run.flush();
                    return (!tail.is_empty()).then_some((Ok(tail), State::Done));
                };
                let out = run.filter(first);
                if !out.is_empty() {
                    return Some((Ok(out), State::Streaming(run)));
                }
                run
            }
            State::Streaming(run) => run,
            State::Done => return None,
        };
        loop {
            match run.read().await {
                Ok(Some(chunk)) => {
                    let out = run.filter(chunk);
                    if !out.is_empty() {
                        return Some((Ok(out), State::Streaming(run)));
                    }
                }
                Ok(None) => {
                    return match run.finish().await {
                        Ok(()) => {
                            let tail = run.flush();
                            (!tail.is_empty()).then_some((Ok(tail), State::Done))
                        }
                        Err(err) => Some((Err(after_start(err)), State::Done)),
                    };
                }
                Err(err) => return Some((Err(err), State::Done)),
            }
        }
    }
}

/// A failure after the response started: the body errs, so the response is aborted.
fn after_start(err: DumpError) -> io::Error {
    if let DumpError::TimedOut { .. } = err {
        return io::Error::new(io::ErrorKind::TimedOut, err.to_string());
    }
    let detail = err.internal().unwrap_or_default();
    io::Error::other(format!("{err} after output had started: {}", detail.trim()))
}

/// Turns pg_dump's exit into a result, picking out the "no matching …" failures that are the
/// caller's mistake rather than the server's.
fn classify(status: ExitStatus, stderr: &str) -> Result<(), DumpError> {
    if status.success() {
        return Ok(());
    }
    let no_match = stderr
        .lines()
        .find(|line| line.contains("no matching ") && line.contains(" were found"));
    Err(match no_match {
        Some(line) => DumpError::NoMatch {
            message: line.trim().to_owned(),
            stderr: stderr.to_owned(),
        },
        None if stderr.trim().is_empty() => DumpError::Failed {
            stderr: format!("pg_dump {status}"),
        },
        None => DumpError::Failed {
            stderr: stderr.to_owned(),
        },
    })
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

/// Drains `stream` to its end, keeping at most [`STDERR_CAP`] bytes.
async fn read_capped(mut stream: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = STDERR_CAP.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
                dropped += n - room;
            }
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        text.push_str(&format!("\n[{dropped} more bytes of stderr dropped]"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn no_matching_pattern_is_the_callers_error() {
        let stderr = "pg_dump: error: no matching tables were found for pattern \"nope\"\n";
        let err = classify(ExitStatus::from_raw(1 << 8), stderr).unwrap_err();
        assert!(matches!(&err, DumpError::NoMatch { message, .. }
            if message == "pg_dump: error: no matching tables were found for pattern \"nope\""));
    }

    #[test]
    fn other_failures_carry_stderr() {
        let err = classify(ExitStatus::from_raw(1 << 8), "pg_dump: error: boom\n").unwrap_err();
        assert_eq!(err.internal().as_deref(), Some("pg_dump: error: boom\n"));
        assert!(classify(ExitStatus::from_raw(0), "warning").is_ok());
    }

    #[tokio::test]
    async fn stopping_is_sigterm_then_sigkill_after_the_grace() {
        let grace = Duration::from_millis(300);
        let mut polite = Command::new("sleep").arg("30").spawn().unwrap();
        let status = terminate(&mut polite, grace).await.unwrap();
        assert_eq!(status.signal(), Some(15));
        // SIGTERM ignored (the disposition survives exec): killed once the grace is over.
        let mut stubborn = Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 30"])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let status = terminate(&mut stubborn, grace).await.unwrap();
        assert_eq!(status.signal(), Some(9));
        assert!(started.elapsed() >= grace);
    }

    #[tokio::test]
    async fn stderr_is_capped() {
        let big = vec![b'x'; STDERR_CAP + 10];
        let text = read_capped(&big[..]).await;
        assert!(text.starts_with(&"x".repeat(STDERR_CAP)));
        assert!(text.ends_with("[10 more bytes of stderr dropped]"));
    }
}
