//! A deadline on the HTTP stage of web connections (slow-loris protection).
//!
//! The HTTP server underneath axum has no header timeout here: a client could open the web
//! listener and send nothing, or trickle a request line forever, and hold a task and a
//! descriptor. [`Timed`] wraps the listener so that every connection it accepts carries a
//! [`Deadline`]: once `[limits] message_timeout_secs` has passed since the connection was
//! handed over (after the TLS handshake, which has its own bound), reads fail with
//! `TimedOut` and the HTTP server closes the connection.
//!
//! A connection upgraded to a WebSocket is disarmed ([`Armed::disarm`], by the `/ws` handler)
//! and from then on follows the WebSocket clocks of [`super::ws`]. Plain HTTP connections
//! (the softphone page and its assets, all small) live at most that long; browsers open a new
//! one when they need it. Writes are never cut.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Whether a connection's deadline still applies; shared between its [`Deadline`] and the
/// handler that may upgrade it.
#[derive(Debug, Clone, Default)]
pub struct Armed(Arc<AtomicBool>);

impl Armed {
    /// The deadline no longer applies (the connection became a WebSocket).
    pub fn disarm(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    fn is_armed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A stream whose reads fail once its deadline passes, unless disarmed.
#[derive(Debug)]
pub struct Deadline<S> {
    io: S,
    sleep: Pin<Box<Sleep>>,
    armed: Armed,
}

impl<S> Deadline<S> {
    pub fn new(io: S, budget: Duration) -> Deadline<S> {
        Deadline {
            io,
            sleep: Box::pin(tokio::time::sleep(budget)),
            armed: Armed(Arc::new(AtomicBool::new(true))),
        }
    }

    /// The handle that disarms this connection's deadline.
    pub fn armed(&self) -> Armed {
        self.armed.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Polling the timer registers the wake-up: a silent client is cut at the deadline, not
        // at its next byte.
        if this.armed.is_armed() && this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "http request not complete in time",
            )));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A listener whose connections carry a [`Deadline`] of `budget`.
#[derive(Debug)]
pub struct Timed<L> {
    inner: L,
    budget: Duration,
}

impl<L> Timed<L> {
    pub fn new(inner: L, budget: Duration) -> Timed<L> {
        Timed { inner, budget }
    }
}

impl<L> axum::serve::Listener for Timed<L>
where
    L: axum::serve::Listener,
    L::Io: Unpin,
{
    type Io = Deadline<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (Deadline::new(io, self.budget), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_fail_at_the_deadline_unless_disarmed() {
        let budget = Duration::from_millis(200);
        let (client, server) = tokio::io::duplex(64);
        let mut d = Deadline::new(server, budget);
        let mut buf = [0; 8];
        let started = tokio::time::Instant::now();
        let err = d.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= budget);

        let (mut client2, server2) = tokio::io::duplex(64);
        let mut d2 = Deadline::new(server2, budget);
        d2.armed().disarm();
        tokio::time::sleep(budget * 2).await;
        client2.write_all(b"hi").await.unwrap();
        assert_eq!(d2.read(&mut buf).await.unwrap(), 2);
        drop(client);
    }
}
