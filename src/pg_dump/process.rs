//! One pg_dump run: spawn it without a shell, wait for its first bytes (or its exit), then
//! stream its stdout chunk by chunk, through the cleaner when asked. stderr is drained
//! concurrently into a capped buffer so pg_dump never blocks on it. The child is killed when
//! the stream is dropped (client gone, server shutting down), so no pg_dump outlives its
//! request.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clean::Cleaner;
use crate::conninfo::ConnInfo;

/// How much of pg_dump's stderr is kept; the rest is counted and dropped.
const STDERR_CAP: usize = 64 * 1024;
/// Read size for pg_dump's stdout: the pipe's default capacity.
const CHUNK: usize = 64 * 1024;

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
    /// pg_dump ran past the time limit and was killed.
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

/// Starts `pg_dump` with the validated `args` against `conn`, and returns its output once the
/// first bytes are there (or pg_dump exited successfully with none). Past `time_limit` pg_dump
/// is killed: before the first bytes that is [`DumpError::TimedOut`], after them the stream
/// ends with an error.
pub async fn start(
    pg_dump: &Path,
    args: &[String],
    conn: &ConnInfo,
    clean: bool,
    time_limit: Option<Duration>,
) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static, DumpError> {
    let mut command = Command::new(pg_dump);
    command
        .arg("--encoding=utf8")
        .args(args)
        .arg(conn.public())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(password) = conn.password() {
        command.env("PGPASSWORD", OsStr::from_bytes(password));
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
    let mut run = Running {
        child,
        stdout,
        stderr: Some(tokio::spawn(read_capped(stderr))),
        cleaner: clean.then(Cleaner::new),
        conn: conn.clone(),
        limit: time_limit.map(|limit| (limit, Instant::now() + limit)),
        _service_file: service_file,
    };
    let first = match run.read().await {
        Ok(Some(chunk)) => Some(chunk),
        Ok(None) => {
            run.finish().await?;
            None
        }
        Err(err) if err.kind() == io::ErrorKind::TimedOut => {
            return Err(DumpError::TimedOut {
                limit: time_limit.unwrap_or_default(),
            })
        }
        Err(err) => {
            return Err(DumpError::Spawn {
                detail: format!("could not read pg_dump's output: {err}"),
            })
        }
    };
    // Fused: the compression layer may poll again after the end.
    Ok(futures_util::stream::unfold(State::Started { run, first }, State::next).fuse())
}

/// A running pg_dump and what its output goes through.
struct Running {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    cleaner: Option<Cleaner>,
    conn: ConnInfo,
    /// The time limit and when it runs out.
    limit: Option<(Duration, Instant)>,
    /// Removed when the run ends.
    _service_file: Option<tempfile::NamedTempFile>,
}

impl Running {
    /// The next raw chunk of stdout, `None` at its end; a `TimedOut` error past the limit.
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let read = self.stdout.read_buf(&mut buf);
        let n = match self.limit {
            Some((limit, deadline)) => {
                tokio::time::timeout_at(deadline, read)
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "pg_dump ran past the time limit of {} s and was stopped",
                                limit.as_secs()
                            ),
                        )
                    })??
            }
            None => read.await?,
        };
        Ok((n > 0).then(|| buf.freeze()))
    }

    /// Waits for pg_dump's exit after its stdout ended; a failure carries its stderr.
    async fn finish(&mut self) -> Result<(), DumpError> {
        let status = self.child.wait().await.map_err(|err| DumpError::Spawn {
            detail: format!("could not wait for pg_dump: {err}"),
        })?;
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        classify(status, &self.conn.redact(&stderr))
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
    async fn stderr_is_capped() {
        let big = vec![b'x'; STDERR_CAP + 10];
        let text = read_capped(&big[..]).await;
        assert!(text.starts_with(&"x".repeat(STDERR_CAP)));
        assert!(text.ends_with("[10 more bytes of stderr dropped]"));
    }
}
