//! [`Dumper`], the one way to run pg_dump for a request: it picks the pg_dump for the
//! source's server (the same major, else the nearest newer; the newest when the server's
//! version cannot be learnt), starts it, retries once when pg_dump finds the cached version
//! stale, and returns the started output or a typed [`DumpError`].

use std::sync::Arc;
use std::time::Duration;

use super::binaries::{PgDump, Toolbox};
use super::error::{refused_server_version, DumpError};
use super::output::Output;
use super::process::{Job, Processes};
use super::restrict::RestrictKeys;
use super::supervise::Hold;
use crate::launcher::Launcher;
use crate::server_version::ServerVersions;
use crate::server_version::Version;
use crate::sources::Source;

/// Runs pg_dump for requests: the installed binaries, the servers' versions, the processes.
#[derive(Debug)]
pub(crate) struct Dumper {
    toolbox: Toolbox,
    versions: ServerVersions,
    processes: Processes,
    time_limit: Option<Duration>,
    restrict_keys: RestrictKeys,
}

/// A dump whose output has started.
pub(crate) struct Started {
    /// The version of the pg_dump that runs.
    pub pg_dump: Version,
    pub output: Output,
}

impl Dumper {
    /// A dumper running `toolbox`'s binaries, each stopped past `time_limit`, if any, with
    /// a plain dump's `--restrict-key` from `restrict_keys` when the request gives none.
    pub(crate) fn new(
        toolbox: Toolbox,
        time_limit: Option<Duration>,
        restrict_keys: RestrictKeys,
    ) -> Dumper {
        Dumper {
            toolbox,
            versions: ServerVersions::default(),
            processes: Processes::default(),
            time_limit,
            restrict_keys,
        }
    }

    /// Starts every pg_dump through `launcher` (so that it dies with the server), or directly
    /// when there is none.
    pub(crate) fn launch_through(&mut self, launcher: Option<Launcher>) {
        self.processes.launch_through(launcher);
    }

    /// The installed binaries.
    pub(crate) fn toolbox(&self) -> &Toolbox {
        &self.toolbox
    }

    /// How long a pg_dump may run.
    pub(crate) fn time_limit(&self) -> Option<Duration> {
        self.time_limit
    }

    /// The server version of `source`, cached or learnt now.
    pub(crate) async fn server_version(&self, source: &Source) -> Result<Version, String> {
        self.versions.get(&source.name, &source.conn).await
    }

    /// Stops every pg_dump still running and waits until each has been reaped.
    pub(crate) async fn stop_all(&self) {
        self.processes.stop_all().await;
    }

    /// Runs the pg_dump that matches `source`'s server with `args`, its output cleaned when
    /// `clean` says so; `hold` is kept until that pg_dump has exited. When pg_dump refuses
    /// the server as newer than itself, the cached version was stale (the server was
    /// upgraded): it is learnt again and the dump retried once — nothing has been sent yet.
    pub(crate) async fn start(
        &self,
        source: &Source,
        args: &[String],
        clean: bool,
        hold: Hold,
    ) -> Result<Started, DumpError> {
        let mut retried = false;
        loop {
            let (binary, server) = self.choose(source).await?;
            let restrict_key = match wants_restrict_key(args) {
                true => self.restrict_keys.for_source(&source.name, binary.version),
                false => None,
            };
            let job = Job {
                pg_dump: &binary.path,
                args,
                conn: &source.conn,
                clean,
                server,
                restrict_key: restrict_key.as_deref(),
            };
            let stderr = match self
                .processes
                .start(job, self.time_limit, Arc::clone(&hold))
                .await
            {
                Ok(output) => {
                    return Ok(Started {
                        pg_dump: binary.version,
                        output,
                    })
                }
                Err(DumpError::Failed { stderr }) => stderr,
                Err(err) => return Err(err),
            };
            let Some(server) = refused_server_version(&stderr) else {
                return Err(DumpError::Failed { stderr });
            };
            self.versions.forget(&source.name);
            if retried {
                return Err(DumpError::VersionMismatch {
                    server,
                    installed: self.toolbox.versions(),
                });
            }
            retried = true;
        }
    }

    /// The installed pg_dump for the source's server version, and that version. When the
    /// version cannot be learnt (e.g. the server is unreachable), the newest pg_dump runs and
    /// reports the problem in its own words.
    async fn choose(&self, source: &Source) -> Result<(&PgDump, Option<Version>), DumpError> {
        let choice = self.choice(source).await;
        if let Err(why) = &choice.server {
            tracing::warn!(target: "pg-dump", source = %source.name, error = %why,
                "could not learn the server version; running the newest pg_dump");
        }
        match (choice.server, choice.pg_dump) {
            (server, Some(pg_dump)) => Ok((pg_dump, server.ok())),
            (Ok(server), None) => Err(DumpError::VersionMismatch {
                server: server.to_string(),
                installed: self.toolbox.versions(),
            }),
            (Err(_), None) => Err(DumpError::Spawn {
                detail: "no pg_dump binary is configured".to_owned(),
            }),
        }
    }

    /// The pg_dump a dump of `source` would run (`None`: none fits), and the server's version
    /// it was chosen for, or why that is unknown (then it is the newest pg_dump).
    pub(crate) async fn choice(&self, source: &Source) -> Choice<'_> {
        match self.server_version(source).await {
            Ok(server) => Choice {
                pg_dump: self.toolbox.for_server(server),
                server: Ok(server),
            },
            Err(why) => Choice {
                pg_dump: self.toolbox.newest(),
                server: Err(why),
            },
        }
    }
}

/// Which pg_dump would dump a source: see [`Dumper::choice`].
pub(crate) struct Choice<'a> {
    pub server: Result<Version, String>,
    pub pg_dump: Option<&'a PgDump>,
}

/// Whether the derived `--restrict-key` goes with `args` (canonical, validated options): a
/// plain dump (pg_dump takes the key for no other format) whose caller chose no key.
fn wants_restrict_key(args: &[String]) -> bool {
    let plain = args
        .iter()
        .rev()
        .find_map(|arg| arg.strip_prefix("--format="))
        .is_none_or(|format| format == "plain");
    plain && !args.iter().any(|arg| arg.starts_with("--restrict-key="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_key_and_other_formats_go_without_the_derived_key() {
        let args = |list: &[&str]| list.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>();
        assert!(wants_restrict_key(&args(&["--schema-only"])));
        assert!(wants_restrict_key(&args(&[
            "--format=custom",
            "--format=plain"
        ])));
        assert!(!wants_restrict_key(&args(&["--format=custom"])));
        assert!(!wants_restrict_key(&args(&[
            "--format=plain",
            "--format=tar"
        ])));
        assert!(!wants_restrict_key(&args(&["--restrict-key=mine"])));
    }
}
