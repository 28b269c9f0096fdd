//! The TCP listener: messages framed by Content-Length (RFC 3261 §18.3), RFC 5626 keep-alives,
//! a size limit and an idle timeout so that a slow or silent peer holds nothing for long.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sip::Framing;
use sip::framing::{self, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::core::{Core, Outcome};

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Accepts connections until `shutdown` changes to `true`.
pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    max_message: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let core = core.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, core, max_message, shutdown).await {
                        tracing::debug!(%peer, error = %e, "tcp connection closed");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    core: Arc<Core>,
    max_message: usize,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Take every whole message already buffered.
        loop {
            match framing::check(&buf, max_message) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive { len, ping }) => {
                    let _ = buf.split_to(len);
                    if ping {
                        stream.write_all(b"\r\n").await?;
                    }
                }
                Ok(Frame::Message { len }) => {
                    let message = buf.split_to(len).freeze();
                    if let Outcome::Reply(bytes) = core.handle(message, Framing::Stream) {
                        stream.write_all(&bytes).await?;
                    }
                }
                Err(e) => {
                    // The stream cannot be resynchronised after a framing error.
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, stream.read_buf(&mut buf)) => r,
            _ = shutdown.changed() => return Ok(()),
        };
        match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle")),
        }
    }
}
