//! The UDP listener: one datagram is one message (RFC 3261 §18.3).

use std::sync::Arc;

use bytes::Bytes;
use sip::Framing;
use tokio::net::UdpSocket;

use crate::core::{Core, Outcome};

/// Receives datagrams until `shutdown` resolves.
pub async fn serve(
    socket: UdpSocket,
    core: Arc<Core>,
    max_message: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // One byte more than the limit tells an oversized datagram from one that just fits.
    let mut buf = vec![0u8; max_message + 1];
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            () = &mut shutdown => return,
        };
        let (n, from) = match received {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on Linux.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        if n > max_message {
            tracing::debug!(%from, bytes = n, "oversized datagram dropped");
            continue;
        }
        let outcome = core.handle(Bytes::copy_from_slice(&buf[..n]), Framing::Datagram);
        if let Outcome::Reply(bytes) = outcome
            && let Err(e) = socket.send_to(&bytes, from).await
        {
            tracing::debug!(%from, error = %e, "udp send failed");
        }
    }
}
