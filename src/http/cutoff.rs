//! Cutting a connection off from outside hyper. When a client stops reading, hyper waits on
//! the socket and never polls the response body again, so nothing in the body can notice.
//! The socket is therefore wrapped: a write that makes no progress for the send timeout fails
//! with `TimedOut`, and so does any use of the socket once the request's dump was stopped by
//! its time limit ([`Cut::cut`]). hyper then ends the connection and drops the response
//! body, which stops the request's pg_dump.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Why a connection was cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reason {
    /// The client accepted no bytes for this long.
    SendTimeout(Duration),
    /// The request's dump was stopped: its message.
    Stopped(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::SendTimeout(after) => write!(
                f,
                "send timeout: the client accepted no bytes for {} s",
                after.as_secs()
            ),
            Reason::Stopped(message) => f.write_str(message),
        }
    }
}

/// A handle on a connection, as a request extension: to cut it off, or to learn why it was.
#[derive(Debug, Clone, Default)]
pub(super) struct Cut(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    reason: OnceLock<Reason>,
    /// The connection's task, woken to see the cut.
    waker: AtomicWaker,
}

impl Cut {
    /// Ends the connection: its socket fails from now on with `reason` (the first reason
    /// stays).
    pub(super) fn cut(&self, reason: Reason) {
        let _ = self.0.reason.set(reason);
        self.0.waker.wake();
    }

    /// Why the connection was cut off, if it was.
    pub(super) fn reason(&self) -> Option<&Reason> {
        self.0.reason.get()
    }
}

/// A socket that fails once the peer has accepted no bytes for `send_timeout`, or once cut.
pub(super) struct CutOff<IO> {
    io: IO,
    send_timeout: Duration,
    /// Runs out `send_timeout` after the current stall began; reused from stall to stall.
    timer: Pin<Box<Sleep>>,
    stalled: bool,
    cut: Cut,
}

impl<IO> CutOff<IO> {
    pub(super) fn new(io: IO, send_timeout: Duration) -> Self {
        CutOff {
            io,
            send_timeout,
            timer: Box::pin(tokio::time::sleep(send_timeout)),
            stalled: false,
            cut: Cut::default(),
        }
    }

    /// The handle to cut this connection off.
    pub(super) fn handle(&self) -> Cut {
        self.cut.clone()
    }

    /// An error once the connection was cut off.
    fn check(&self, cx: &mut Context<'_>) -> io::Result<()> {
        self.cut.0.waker.register(cx.waker());
        match self.cut.reason() {
            Some(reason) => Err(io::Error::new(io::ErrorKind::TimedOut, reason.to_string())),
            None => Ok(()),
        }
    }

    /// Passes a write's result on, turning a stall longer than the timeout into an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        if !self.stalled {
            self.stalled = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + self.send_timeout);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let reason = Reason::SendTimeout(self.send_timeout);
                let err = io::Error::new(io::ErrorKind::TimedOut, reason.to_string());
                self.cut.cut(reason);
                Poll::Ready(Err(err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for CutOff<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for CutOff<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SEND_TIMEOUT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_write_stalled_past_the_send_timeout_fails() {
        // A peer that reads nothing: the in-memory pipe fills up and writes stall.
        let (writer, _reader) = tokio::io::duplex(16);
        let mut io = CutOff::new(writer, SEND_TIMEOUT);
        let cut = io.handle();
        io.write_all(&[0; 16]).await.unwrap();
        let started = Instant::now();
        let err = io.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= SEND_TIMEOUT);
        assert!(started.elapsed() < SEND_TIMEOUT * 10);
        assert_eq!(cut.reason(), Some(&Reason::SendTimeout(SEND_TIMEOUT)));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (writer, mut reader) = tokio::io::duplex(16);
        let mut io = CutOff::new(writer, SEND_TIMEOUT);
        let slow = tokio::spawn(async move {
            let mut buf = [0; 16];
            let mut total = 0;
            while total < 160 {
                tokio::time::sleep(SEND_TIMEOUT / 3).await;
                total += reader.read(&mut buf).await.unwrap();
            }
        });
        // Writing takes three send timeouts, but never one without progress.
        io.write_all(&[0; 160]).await.unwrap();
        slow.await.unwrap();
        assert_eq!(io.handle().reason(), None);
    }

    #[tokio::test]
    async fn a_cut_wakes_a_stalled_write() {
        let (writer, _reader) = tokio::io::duplex(16);
        let mut io = CutOff::new(writer, Duration::from_secs(60));
        let cut = io.handle();
        io.write_all(&[0; 16]).await.unwrap();
        let write = tokio::spawn(async move { io.write_all(&[0; 16]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        cut.cut(Reason::Stopped("time limit".to_owned()));
        let err = tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("the write to end")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "time limit");
    }
}
