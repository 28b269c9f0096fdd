//! Connections the edge opens itself (toward trunks over TCP or TLS), in the background: the
//! core hands over the first message and learns of a failure through `Input::SendFailed`.
//! TLS connections verify the trunk's certificate ([`super::tls_client`]); a failed handshake
//! is a failed connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip::transaction::{Transport, TxnKey};
use tokio::net::TcpStream;

use super::conn::{self, ConnCtx};
use super::tls_client::TlsClient;

/// How long a connection attempt may take before the transaction hears of a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens outbound connections.
#[derive(Debug, Clone)]
pub struct Connector {
    ctx: ConnCtx,
    /// TLS toward trunks (`None`: TCP only).
    tls: Option<TlsClient>,
}

impl Connector {
    pub fn new(ctx: ConnCtx) -> Connector {
        Connector { ctx, tls: None }
    }

    /// The same, able to open TLS connections too.
    pub fn with_tls(self, tls: TlsClient) -> Connector {
        Connector { tls: Some(tls), ..self }
    }

    /// Whether connections over `transport` can be opened.
    pub fn opens(&self, transport: Transport) -> bool {
        match transport {
            Transport::Tcp => true,
            Transport::Tls => self.tls.is_some(),
            _ => false,
        }
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
        let tls = self.tls.clone().filter(|_| transport == Transport::Tls);
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => stream,
                failure => {
                    tracing::debug!(%addr, ?failure, "connect failed");
                    if let Some(key) = txn {
                        ctx.core.send_failed(key).await;
                    }
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let Some(tls) = tls else {
                return conn::run(stream, transport, addr, ctx, true, Some(first)).await;
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, handshake(&tls, addr, stream)).await {
                Ok(Ok(stream)) => conn::run(stream, transport, addr, ctx, true, Some(first)).await,
                failure => {
                    let error = match failure {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::warn!(%addr, %error, "tls connection toward a trunk failed");
                    if let Some(key) = txn {
                        ctx.core.send_failed(key).await;
                    }
                }
            }
        });
    }
}

/// The client side of a TLS handshake toward `addr` ([`super::tls_client`] picks the name and
/// the trust anchors).
async fn handshake(
    tls: &TlsClient,
    addr: SocketAddr,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let (name, config) = tls.identity(addr).await.map_err(std::io::Error::other)?;
    tracing::debug!(%addr, server_name = ?name, "tls handshake toward a trunk");
    tokio_rustls::TlsConnector::from(config).connect(name, stream).await
}
