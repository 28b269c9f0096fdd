//! TCP and TLS listeners (RFC 3261 §18.3, §26.2). Each accepted connection is served by
//! [`super::conn::run`]; TLS first completes a rustls handshake, bounded in time so that a
//! silent client holds nothing for long.

use std::time::Duration;

use sip::transaction::Transport;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::conn::{self, ConnCtx};

/// A TLS handshake that takes longer than this is abandoned (slow-loris protection).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the shutdown signal in `ctx` turns `true`; with `tls`, each
/// connection starts with a TLS handshake.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, ctx: ConnCtx) {
    let mut shutdown = ctx.shutdown.clone();
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn::run(stream, transport, peer, ctx, false, None).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => conn::run(s, transport, peer, ctx, false, None).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                }
            }
        });
    }
}
