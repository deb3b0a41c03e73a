//! How a dump fails: [`DumpError`] before its output started (the request then gets an error
//! response), [`StreamError`] after (the response is aborted), and the reading of pg_dump's
//! exit status and stderr that tells a caller's mistake from pg_dump's.

use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use crate::server_version::Version;

/// Why a dump produced no output.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DumpError {
    /// No installed pg_dump can dump the server.
    #[error("{}", version_mismatch_message(server, installed))]
    VersionMismatch {
        /// The server's version, as the probe or pg_dump reported it.
        server: String,
        installed: Vec<Version>,
    },
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
    pub(crate) fn internal(&self) -> Option<String> {
        match self {
            DumpError::Spawn { detail } => Some(detail.clone()),
            DumpError::Failed { stderr } | DumpError::NoMatch { stderr, .. } => {
                Some(stderr.clone())
            }
            DumpError::TimedOut { .. } | DumpError::VersionMismatch { .. } => None,
        }
    }
}

fn version_mismatch_message(server: &str, installed: &[Version]) -> String {
    let installed: Vec<String> = installed.iter().map(Version::to_string).collect();
    let major = server.split('.').next().unwrap_or(server);
    format!(
        "no installed pg_dump can dump this server: the server runs PostgreSQL {server}, \
         the installed pg_dump versions are {}; install pg_dump {major} or newer",
        installed.join(", ")
    )
}

/// Why a dump's output ended early, after it had started.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// pg_dump failed, or was stopped by its time limit or the shutdown.
    Dump(DumpError),
    /// pg_dump's output could not be read.
    Read(io::Error),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Dump(err @ DumpError::TimedOut { .. }) => write!(f, "{err}"),
            StreamError::Dump(err) => {
                let detail = err.internal().unwrap_or_default();
                write!(f, "{err} after output had started: {}", detail.trim())
            }
            StreamError::Read(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<StreamError> for io::Error {
    /// The body's error: hyper aborts the response with it.
    fn from(err: StreamError) -> io::Error {
        match err {
            StreamError::Read(err) => err,
            err => io::Error::other(err),
        }
    }
}

/// Turns pg_dump's exit into a result, picking out the "no matching …" failures that are the
/// caller's mistake rather than the server's, and the launcher's failure to start pg_dump.
pub(super) fn exit_result(status: ExitStatus, stderr: &str) -> Result<(), DumpError> {
    if status.success() {
        return Ok(());
    }
    if let Some(detail) = crate::launcher::failure(status, stderr) {
        return Err(DumpError::Spawn { detail });
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

/// When pg_dump refused the server as newer than itself: the server's version as pg_dump
/// reported it (`pg_dump: detail: server version: 17.2; pg_dump version: 15.18`).
pub(super) fn refused_server_version(stderr: &str) -> Option<String> {
    if !stderr.contains("server version mismatch") {
        return None;
    }
    let reported = stderr.split("server version: ").nth(1).and_then(|rest| {
        rest.split(|c: char| c == ';' || c.is_whitespace())
            .next()
            .filter(|version| !version.is_empty())
    });
    Some(reported.unwrap_or("unknown").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn no_matching_pattern_is_the_callers_error() {
        let stderr = "pg_dump: error: no matching tables were found for pattern \"nope\"\n";
        let err = exit_result(ExitStatus::from_raw(1 << 8), stderr).unwrap_err();
        assert!(matches!(&err, DumpError::NoMatch { message, .. }
            if message == "pg_dump: error: no matching tables were found for pattern \"nope\""));
    }

    #[test]
    fn other_failures_carry_stderr() {
        let err = exit_result(ExitStatus::from_raw(1 << 8), "pg_dump: error: boom\n").unwrap_err();
        assert_eq!(err.internal().as_deref(), Some("pg_dump: error: boom\n"));
        assert!(exit_result(ExitStatus::from_raw(0), "warning").is_ok());
    }

    #[test]
    fn version_mismatch_names_the_server_version() {
        let stderr = "pg_dump: error: aborting because of server version mismatch\n\
                      pg_dump: detail: server version: 17.2; pg_dump version: 15.18\n";
        assert_eq!(refused_server_version(stderr).as_deref(), Some("17.2"));
        assert_eq!(refused_server_version("pg_dump: error: boom"), None);
    }

    #[test]
    fn a_failure_after_the_start_says_so_but_a_time_limit_speaks_for_itself() {
        let failed = StreamError::Dump(DumpError::Failed {
            stderr: "pg_dump: error: boom\n".to_owned(),
        });
        assert_eq!(
            io::Error::from(failed).to_string(),
            "error while executing pg_dump after output had started: pg_dump: error: boom"
        );
        let limit = Duration::from_secs(3);
        let timed_out = StreamError::Dump(DumpError::TimedOut { limit });
        assert_eq!(
            io::Error::from(timed_out).to_string(),
            "pg_dump ran past the time limit of 3 s and was stopped"
        );
    }
}
