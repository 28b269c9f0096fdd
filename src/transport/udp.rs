//! The UDP listener: one datagram is one message (RFC 3261 §18.3); the flow is the source
//! ip:port.

use std::sync::Arc;

use bytes::Bytes;
use sip::Framing;
use sip::transaction::Peer;
use tokio::net::UdpSocket;

use super::conn::ConnCtx;

/// Receives datagrams until the shutdown signal in `ctx` turns `true`.
pub async fn serve(socket: Arc<UdpSocket>, ctx: ConnCtx) {
    // One byte more than the limit tells an oversized datagram from one that just fits.
    let mut buf = vec![0u8; ctx.max_message + 1];
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.changed() => return,
        };
        let (n, from) = match received {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on Linux.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        if n > ctx.max_message {
            tracing::debug!(%from, bytes = n, "oversized datagram dropped");
            continue;
        }
        if buf[..n].iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            // A keep-alive (CRLF, RFC 5626 §3.5.1 over UDP uses STUN; some clients send CRLF).
            continue;
        }
        if let Some(answer) =
            ctx.receive(Peer::udp(from), Bytes::copy_from_slice(&buf[..n]), Framing::Datagram)
        {
            let _ = socket.try_send_to(&answer, from);
        }
    }
}
