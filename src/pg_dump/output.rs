//! A running pg_dump's output: its stdout read chunk by chunk, through the cleaner when
//! asked, and at its end its exit status turned into a result. stderr is drained concurrently
//! into a capped buffer so pg_dump never blocks on it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, Fuse};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::ChildStdout;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::error::{exit_result, DumpError, StreamError};
use super::supervise::{Exit, Stop};
use crate::clean::Cleaner;
use crate::conninfo::ConnInfo;

/// How much of pg_dump's stderr is kept; the rest is counted and dropped.
const STDERR_CAP: usize = 64 * 1024;
/// Read size for pg_dump's stdout: the pipe's default capacity.
const CHUNK: usize = 64 * 1024;

/// A running dump's output: pg_dump's stdout, cleaned when asked. Dropping it stops pg_dump.
pub(crate) struct Output {
    stream: Fuse<BoxStream<'static, Result<Bytes, StreamError>>>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Output {
    /// Waits for `run`'s first bytes (or its successful exit without any) and returns the
    /// output from there.
    pub(super) async fn start(mut run: Running) -> Result<Output, DumpError> {
        let exit = run.exit.clone();
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

    /// Why pg_dump was stopped, once it has exited; `None` while it runs or when it exited
    /// by itself.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        self.exit.borrow().as_ref().and_then(|exit| exit.stopped)
    }

    /// Resolves once pg_dump has exited, with why it was stopped, if it was.
    pub(crate) fn exited(
        &self,
    ) -> impl std::future::Future<Output = Option<Stop>> + Send + 'static {
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
    type Item = Result<Bytes, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.poll_next_unpin(cx)
    }
}

/// A running pg_dump's pipes and what its output goes through.
pub(super) struct Running {
    pub(super) stdout: ChildStdout,
    pub(super) stderr: Option<JoinHandle<String>>,
    pub(super) cleaner: Option<Cleaner>,
    pub(super) conn: ConnInfo,
    pub(super) time_limit: Option<Duration>,
    pub(super) exit: watch::Receiver<Option<Exit>>,
    /// Dropping it tells the supervisor to stop pg_dump.
    pub(super) _stop: oneshot::Sender<()>,
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
            (_, Ok(status)) => exit_result(status, &self.conn.redact(&stderr)),
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
    async fn next(self) -> Option<(Result<Bytes, StreamError>, State)> {
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
                        Err(err) => Some((Err(StreamError::Dump(err)), State::Done)),
                    };
                }
                Err(err) => return Some((Err(StreamError::Read(err)), State::Done)),
            }
        }
    }
}

/// Drains `stream` to its end, keeping at most [`STDERR_CAP`] bytes.
pub(super) async fn read_capped(mut stream: impl AsyncRead + Unpin) -> String {
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

    #[tokio::test]
    async fn stderr_is_capped() {
        let big = vec![b'x'; STDERR_CAP + 10];
        let text = read_capped(&big[..]).await;
        assert!(text.starts_with(&"x".repeat(STDERR_CAP)));
        assert!(text.ends_with("[10 more bytes of stderr dropped]"));
    }
}
