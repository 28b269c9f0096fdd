//! The web listener (`[web] listen`): SIP over WebSocket at `/ws` (RFC 7118), and the
//! reference softphone page at `/` ([`assets`], embedded from `web/` at build time), with
//! `/softphone.json` telling it the SIP domain. Plain HTTP, or HTTPS/wss when `[tls]` is
//! configured (browsers allow the microphone and the location only on HTTPS or on
//! `localhost`/`127.0.0.1`).
//!
//! Cross-site WebSocket hijacking is refused: an upgrade whose `Origin` is neither this
//! listener's own origin nor in `[web] allowed_origins` gets 403. An upgrade without `Origin`
//! comes from a non-browser client (SIPp, baresip) and is accepted; digest authentication
//! applies either way (DESIGN.md, "Decisions").

pub mod assets;
pub mod deadline;
mod tls_listener;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::transport::conn::ConnCtx;
use deadline::{Armed, Timed};

pub use tls_listener::TlsListener;

/// What the web handlers share.
#[derive(Debug, Clone)]
pub struct WebState {
    /// The core, the flow table and the limits, as for any connection.
    pub conn: ConnCtx,
    /// Extra origins allowed to open `/ws`, exactly as configured (`https://host:port`).
    pub allowed_origins: Arc<[String]>,
    /// Whether this listener serves HTTPS (its own origin is then `https://...`).
    pub secure: bool,
    /// `[sip] domain`, which the softphone registers under.
    pub domain: Arc<str>,
}

/// The peer address of an HTTP connection, over TCP or TLS, and the handle that lifts its
/// HTTP-stage deadline ([`deadline`]) when it becomes a WebSocket.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub SocketAddr, pub Armed);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Timed<TcpListener>>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Timed<TcpListener>>) -> ClientAddr {
        ClientAddr(*stream.remote_addr(), stream.io().armed())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Timed<TlsListener>>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Timed<TlsListener>>) -> ClientAddr {
        ClientAddr(*stream.remote_addr(), stream.io().armed())
    }
}

/// The routes of the web listener.
pub fn router(state: WebState) -> Router {
    let mut router =
        Router::new().route("/ws", get(ws::upgrade)).route("/softphone.json", get(assets::config));
    for asset in assets::ASSETS {
        router = router.route(asset.path, get(move || async move { assets::serve(asset) }));
    }
    router.with_state(state)
}

/// Serves the web listener until `shutdown` resolves; with `tls`, as HTTPS/wss.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: WebState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    // Slow HTTP clients: see [`deadline`].
    let budget = state.conn.timeouts.message;
    let app = router(state);
    let result = match tls {
        None => {
            axum::serve(
                Timed::new(listener, budget),
                app.into_make_service_with_connect_info::<ClientAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        Some(acceptor) => {
            axum::serve(
                Timed::new(TlsListener::new(listener, acceptor), budget),
                app.into_make_service_with_connect_info::<ClientAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "web listener stopped");
    }
}
