//! The supervisor of one pg_dump: a task that owns the process and stops it when its output
//! is dropped (client gone, send timeout), when its time limit passes — whether or not anyone
//! reads its output — and when the server shuts down. Stopping is SIGTERM first: pg_dump's
//! own handler then cancels its query, so that a backend waiting on a lock ends too (a killed
//! pg_dump would leave it waiting); SIGKILL follows after [`STOP_GRACE`]. Whatever must last
//! as long as pg_dump (its concurrency slot, its service file) is dropped only once the
//! process has been reaped.

use std::any::Any;
use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};
use tokio::process::Child;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// How long pg_dump gets after SIGTERM (to cancel its query and exit) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Something kept until pg_dump has exited and been reaped, e.g. its concurrency slot.
pub(crate) type Hold = Arc<dyn Any + Send + Sync>;

/// Why pg_dump was stopped rather than left to exit by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Its output was dropped: the request ended.
    Dropped,
    /// The time limit passed.
    TimeLimit,
    /// The server is shutting down.
    Shutdown,
}

/// How a pg_dump ended, as its supervisor saw it.
#[derive(Debug)]
pub(super) struct Exit {
    pub(super) status: Result<ExitStatus, String>,
    pub(super) stopped: Option<Stop>,
}

/// What a supervisor owns.
pub(super) struct Supervised {
    pub(super) child: Child,
    /// Resolves when the output is dropped.
    pub(super) dropped: oneshot::Receiver<()>,
    pub(super) deadline: Option<Instant>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) exited: watch::Sender<Option<Exit>>,
    /// Dropped after pg_dump has been reaped.
    pub(super) hold: (Hold, Option<tempfile::NamedTempFile>),
}

/// Waits for pg_dump's exit, or stops it, then reports how it ended.
pub(super) async fn supervise(mut run: Supervised) {
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
    // Only now, with pg_dump reaped, do its slot and service file go.
    drop(run.hold);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use tokio::process::Command;

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
}
