//! The client's failures and exit statuses: what went wrong (the server said no, the network
//! failed, writing failed, a signal came), each told apart so that [`exit_status`] gives
//! scripts a distinct status per kind, and [`report`] prints the whole chain.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use reqwest::StatusCode;
use serde_json::Value;

/// A local failure: files, disks, anything that is neither the server's nor the network's.
pub(crate) const EXIT_LOCAL: u8 = 1;
/// A usage error; clap exits with it for bad flags.
// clap exits with it, not this crate: named so that the statuses are listed whole (and tested).
#[allow(dead_code)]
pub(crate) const EXIT_USAGE: u8 = 2;
/// The server answered with an error status.
pub(crate) const EXIT_REJECTED: u8 = 3;
/// The server could not be reached, or its response ended before it was complete.
pub(crate) const EXIT_TRANSPORT: u8 = 4;

/// The connection failed or the response was cut short.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub(crate) struct Transport {
    context: String,
    #[source]
    source: reqwest::Error,
}

impl Transport {
    /// Says what was being done when `source` happened.
    pub(crate) fn new(context: impl Into<String>, source: reqwest::Error) -> Transport {
        Transport {
            context: context.into(),
            source,
        }
    }
}

/// A signal stopped the client; the exit status is 128 + its number, as for a shell.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {name}")]
pub(crate) struct Interrupted {
    pub(crate) name: &'static str,
    pub(crate) number: u8,
}

/// The exit status for a failure: the first cause in the chain that is ours to classify.
pub(crate) fn exit_status(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(interrupted) = cause.downcast_ref::<Interrupted>() {
            return 128 + interrupted.number;
        }
        if cause.is::<Rejected>() {
            return EXIT_REJECTED;
        }
        if cause.is::<Transport>() || cause.is::<reqwest::Error>() {
            return EXIT_TRANSPORT;
        }
    }
    EXIT_LOCAL
}

/// Prints a failure with its whole chain of causes and turns it into the exit status.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    // Not eprintln!: a closed stderr must not turn into a panic.
    let _ = writeln!(io::stderr(), "pgdump-api: error: {err:#}");
    ExitCode::from(exit_status(&err))
}

/// Writing the dump failed on our side.
#[derive(Debug, thiserror::Error)]
#[error("could not write the dump")]
pub(crate) struct WriteFailed(#[source] pub io::Error);

/// The server answered with an error status: what it said, readably.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) status: StatusCode,
    pub(crate) code: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) internal: Option<String>,
    /// The body, when it is not a JSON error (a proxy's HTML page, say).
    pub(crate) other: Option<String>,
    pub(crate) location: Option<String>,
    /// The server's `x-request-id`, to find the request in its log.
    pub(crate) request_id: Option<String>,
}

impl Rejected {
    /// Picks `code`, `error` and `internal` out of a Hasura-shaped JSON error.
    pub(crate) fn from_body(status: StatusCode, body: &[u8], location: Option<String>) -> Rejected {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| -> Option<String> {
            match json.as_ref()?.get(name)? {
                Value::Null => None,
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            }
        };
        let (code, error, internal) = (field("code"), field("error"), field("internal"));
        let other = (code.is_none() && error.is_none())
            .then(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let mut end = text.len().min(500);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].to_owned()
            })
            .filter(|text| !text.is_empty());
        Rejected {
            status,
            code,
            error,
            internal,
            other,
            location,
            request_id: None,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server rejected the request: HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, ", code {code:?}")?;
        }
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        if let Some(other) = &self.other {
            write!(f, ": {other}")?;
        }
        if let Some(location) = self
            .location
            .as_ref()
            .filter(|_| self.status.is_redirection())
        {
            write!(f, " (redirected to {location})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        // Shown when it adds to `error` (pg_dump's stderr often is the error itself).
        let internal = self.internal.as_deref().map(str::trim_end);
        if let Some(internal) = internal.filter(|i| Some(*i) != self.error.as_deref()) {
            write!(f, "\ninternal: {internal}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// Whether writing to stdout failed because its reader went away.
pub(crate) fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<WriteFailed>()
            .is_some_and(|failed| failed.0.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    fn transport_error() -> reqwest::Error {
        // Any reqwest::Error will do; building a request from a bad URL is one at hand.
        reqwest::Client::new().get("not a url").build().unwrap_err()
    }

    #[test]
    fn exit_statuses_tell_failures_apart() {
        let rejected = Rejected::from_body(StatusCode::UNAUTHORIZED, b"{}", None);
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (anyhow!("local"), EXIT_LOCAL),
            (
                anyhow::Error::new(io::Error::other("disk full")).context("writing"),
                EXIT_LOCAL,
            ),
            (
                anyhow::Error::new(WriteFailed(io::Error::other("x"))),
                EXIT_LOCAL,
            ),
            (anyhow::Error::new(rejected).context("dump"), EXIT_REJECTED),
            (
                anyhow::Error::new(Transport::new("cut short", transport_error())).context("dump"),
                EXIT_TRANSPORT,
            ),
            (anyhow::Error::new(transport_error()), EXIT_TRANSPORT),
            (
                anyhow::Error::new(Interrupted {
                    name: "SIGINT",
                    number: 2,
                }),
                130,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(exit_status(&err), status, "{err:#}");
        }
        // Each kind of failure has its own status, none of them success, and a usage error's
        // is the one clap exits with.
        let statuses = [EXIT_LOCAL, EXIT_USAGE, EXIT_REJECTED, EXIT_TRANSPORT, 130];
        for (i, status) in statuses.iter().enumerate() {
            assert_ne!(*status, 0);
            assert!(!statuses[i + 1..].contains(status), "{status} twice");
        }
        let usage = clap::Command::new("x")
            .try_get_matches_from(["x", "--no-such-flag"])
            .unwrap_err();
        assert_eq!(usage.exit_code(), i32::from(EXIT_USAGE));
    }

    #[test]
    fn only_a_broken_pipe_on_our_output_is_a_closed_pipe() {
        let closed = anyhow::Error::new(WriteFailed(io::ErrorKind::BrokenPipe.into()));
        assert!(is_closed_pipe(&closed));
        let full = anyhow::Error::new(WriteFailed(io::ErrorKind::StorageFull.into()));
        assert!(!is_closed_pipe(&full));
        let transport = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_closed_pipe(&transport));
    }

    #[test]
    fn hasura_errors_read_well() {
        let body = br#"{"error":"error while executing pg_dump","path":"$","code":"unexpected","internal":"pg_dump: error: boom\n"}"#;
        let rejected = Rejected::from_body(StatusCode::INTERNAL_SERVER_ERROR, body, None);
        assert_eq!(
            rejected.to_string(),
            "the server rejected the request: HTTP 500 Internal Server Error, code \"unexpected\": \
             error while executing pg_dump\ninternal: pg_dump: error: boom"
        );
        // pg_dump's stderr that only repeats the error is not shown twice.
        let body = br#"{"error":"pg_dump: error: no match","path":"$","code":"not-found","internal":"pg_dump: error: no match\n"}"#;
        let rejected = Rejected::from_body(StatusCode::BAD_REQUEST, body, None);
        assert!(!rejected.to_string().contains("internal"), "{rejected}");
        let rejected =
            Rejected::from_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>\n", None);
        assert_eq!(
            rejected.to_string(),
            "the server rejected the request: HTTP 502 Bad Gateway: <html>bad gateway</html>"
        );
        let rejected = Rejected::from_body(
            StatusCode::MOVED_PERMANENTLY,
            b"",
            Some("https://h/".into()),
        );
        assert_eq!(
            rejected.to_string(),
            "the server rejected the request: HTTP 301 Moved Permanently (redirected to https://h/)"
        );
        let body = br#"{"error":"no","code":"access-denied"}"#;
        let mut rejected = Rejected::from_body(StatusCode::UNAUTHORIZED, body, None);
        rejected.request_id = Some("r-1".into());
        assert_eq!(
            rejected.to_string(),
            "the server rejected the request: HTTP 401 Unauthorized, code \"access-denied\": no \
             [request id r-1]"
        );
    }
}
