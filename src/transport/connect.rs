//! Connections the edge opens itself (toward trunks over TCP), in the background: the core
//! hands over the first message and learns of a failure through `Input::SendFailed`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip::transaction::{Transport, TxnKey};
use tokio::net::TcpStream;

use super::conn::{self, ConnCtx};

/// How long a connection attempt may take before the transaction hears of a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens outbound connections.
#[derive(Debug, Clone)]
pub struct Connector {
    ctx: ConnCtx,
}

impl Connector {
    pub fn new(ctx: ConnCtx) -> Connector {
        Connector { ctx }
    }

    /// Connects to `addr` and sends `first` on the new connection, which then serves like any
    /// other (responses come back on it, and it is reused for later requests to `addr`).
    pub fn connect_and_send(
        &self,
        transport: Transport,
        addr: SocketAddr,
        first: Bytes,
        txn: Option<TxnKey>,
    ) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    conn::run(stream, transport, addr, ctx, true, Some(first)).await;
                }
                failure => {
                    tracing::debug!(%addr, ?failure, "connect failed");
                    if let Some(key) = txn {
                        ctx.core.send_failed(key).await;
                    }
                }
            }
        });
    }
}
