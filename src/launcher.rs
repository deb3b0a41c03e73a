//! The launcher that ties a pg_dump's life to the server's: the server starts pg_dump through
//! its own binary (`pgdump-api __exec-pg-dump --parent PID -- PG_DUMP ARGS…`, a hidden
//! subcommand), which asks the kernel for SIGTERM when its parent dies (`PR_SET_PDEATHSIG`;
//! pg_dump answers SIGTERM by cancelling its query, so its session ends at once even while it
//! waits on a lock, on servers older than 14 too), checks that its parent is still the
//! server, and then execs pg_dump in its own place: same pid, arguments, environment and
//! standard streams. A server killed with SIGKILL (the OOM killer, `kill -9`, a hard stop)
//! thus leaves no pg_dump behind to hold a session and wait on locks; the graceful stops stay
//! with `pg_dump::supervise`.
//!
//! The signal fires when the *thread* that started the child ends, not the process: pg_dump
//! must be spawned from a thread that lives as long as the server (see
//! `pg_dump::process`).
//!
//! [`Launcher`] is the server's side, [`main`] the launcher's.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};

use rustix::process::{getppid, set_parent_process_death_signal, Pid, Signal};

/// The hidden subcommand that runs pg_dump.
pub const SUBCOMMAND: &str = "__exec-pg-dump";

/// This process's own executable image, as the kernel shows it to the process that opens it.
const OWN_IMAGE: &str = "/proc/self/exe";
/// What the launcher's own failures start with on stderr.
const PREFIX: &str = "pgdump-api launcher: ";
/// The launcher's status when pg_dump could not be executed (as a shell's 127).
const EXEC_FAILED: u8 = 127;
/// The launcher's status when its parent was already gone: pg_dump was not run.
const PARENT_GONE: u8 = 125;

/// The hidden `__exec-pg-dump` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// The server's pid: pg_dump runs only while it is the launcher's parent.
    #[arg(long, value_name = "PID")]
    parent: u32,
    /// pg_dump and its arguments.
    #[arg(last = true, required = true, value_name = "PG_DUMP")]
    command: Vec<OsString>,
}

/// The launcher: dies with its parent, then becomes pg_dump. Returns only on failure.
pub fn main(args: LaunchArgs) -> ExitCode {
    let Some((program, rest)) = args.command.split_first() else {
        return fail(EXEC_FAILED, "no program to run");
    };
    if let Err(err) = set_parent_process_death_signal(Some(Signal::TERM)) {
        return fail(
            EXEC_FAILED,
            &format!("could not ask to be stopped when the server dies: {err}"),
        );
    }
    // The parent may have died before the request above: then the launcher already belongs
    // to init (or a subreaper), and no signal will ever come.
    let parent = u32::try_from(Pid::as_raw(getppid())).ok();
    if parent != Some(args.parent) {
        return fail(
            PARENT_GONE,
            &format!(
                "the server (pid {}) is gone; {} was not started",
                args.parent,
                Path::new(program).display()
            ),
        );
    }
    // exec keeps the pid (the server's supervisor signals it), the environment (the
    // password), the standard streams and the death signal (pg_dump is not set-user-ID).
    let err = std::process::Command::new(program).args(rest).exec();
    fail(
        EXEC_FAILED,
        &format!("could not start {}: {err}", Path::new(program).display()),
    )
}

/// Prints `why` on one line of stderr, where the server reads it, and exits with `status`.
fn fail(status: u8, why: &str) -> ExitCode {
    eprintln!("{PREFIX}{why}");
    ExitCode::from(status)
}

/// When a launched pg_dump's exit is the launcher's failure rather than pg_dump's: why.
pub(crate) fn failure(status: ExitStatus, stderr: &str) -> Option<String> {
    let code = u8::try_from(status.code()?).ok()?;
    if code != EXEC_FAILED && code != PARENT_GONE {
        return None;
    }
    let line = stderr.lines().find_map(|line| line.strip_prefix(PREFIX))?;
    Some(line.to_owned())
}

/// The server's side: this program's own path, learnt once at startup.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    exe: PathBuf,
}

impl Launcher {
    /// This program, to launch pg_dump through; `None` (with a warning) when its path cannot
    /// be learnt (e.g. `/proc` is not mounted): pg_dump is then started directly.
    ///
    /// `/proc/self/exe`, executed by the freshly started child, is this very image even once
    /// the file at its path has been replaced (an upgrade renamed over it) or removed; the path
    /// `current_exe` reads from it would name whatever file is there now.
    pub(crate) fn resolve() -> Option<Launcher> {
        let own_image = Path::new(OWN_IMAGE);
        if own_image.exists() {
            return Some(Launcher {
                exe: own_image.to_owned(),
            });
        }
        match std::env::current_exe() {
            Ok(exe) => Some(Launcher { exe }),
            Err(err) => {
                tracing::warn!(target: "startup", error = %err,
                    "could not learn this program's path: pg_dump is started directly, and a \
                     pg_dump may outlive a server killed with SIGKILL");
                None
            }
        }
    }

    /// The command that runs `pg_dump` through the launcher, for this process; pg_dump's
    /// arguments go after it.
    pub(crate) fn command(&self, pg_dump: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .arg(SUBCOMMAND)
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--")
            .arg(pg_dump);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn only_the_launchers_own_failures_are_its_own() {
        let status = |code: u8| ExitStatus::from_raw(i32::from(code) << 8);
        let stderr = "pgdump-api launcher: could not start /x/pg_dump: No such file\n";
        assert_eq!(
            failure(status(EXEC_FAILED), stderr).as_deref(),
            Some("could not start /x/pg_dump: No such file")
        );
        assert!(failure(status(PARENT_GONE), stderr).is_some());
        // pg_dump's own failures, whatever they print.
        assert_eq!(failure(status(1), stderr), None);
        assert_eq!(failure(status(EXEC_FAILED), "pg_dump: error: x\n"), None);
        assert_eq!(failure(ExitStatus::from_raw(9), stderr), None);
    }
}
