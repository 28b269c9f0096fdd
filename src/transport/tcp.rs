//! TCP and TLS listeners: messages framed by Content-Length (RFC 3261 §18.3), RFC 5626
//! keep-alives, a size limit and an idle timeout so that a slow or silent peer holds nothing
//! for long. TLS (RFC 3261 §26.2) is TCP with a rustls handshake first, bounded in time.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sip::Framing;
use sip::framing::{self, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::core::{Core, Outcome};

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A TLS handshake that takes longer than this is abandoned (slow-loris protection).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` changes to `true`; with `tls`, each connection starts
/// with a TLS handshake.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
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
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let result = match tls {
                        None => connection(stream, core, max_message, shutdown).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(tls)) => connection(tls, core, max_message, shutdown).await,
                                Ok(Err(e)) => Err(e),
                                Err(_) => Err(std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "tls handshake timed out",
                                )),
                            }
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection closed");
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

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
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
