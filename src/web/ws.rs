//! SIP over WebSocket (RFC 7118): the `sip` subprotocol, one SIP message per WebSocket
//! message, and the Origin check that keeps other sites' pages off `/ws`.
//!
//! Slow peers (see [`crate::transport::conn`], "Timeouts"): after the upgrade, the first
//! WebSocket message must arrive within the message timeout; after that, each message within
//! the idle timeout of the previous one. The WebSocket layer hands over whole messages only,
//! so a client trickling one message's frames is bounded by these same deadlines (the idle one
//! once it has spoken).

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sip::Framing;
use sip::transaction::{Peer, Transport};

use super::{ClientAddr, WebState};

/// The WebSocket subprotocol of RFC 7118 §4.
pub const SUBPROTOCOL: &str = "sip";

/// Whether a browser page from `origin` may open `/ws` on a listener reached as `host`.
///
/// No `Origin` means a non-browser client: allowed. Otherwise the origin must be this
/// listener's own (`http[s]://` + the Host header) or one of `allowed` (exact, case-insensitive
/// on scheme and host as RFC 6454 §6.1 serialises them).
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    secure: bool,
    allowed: &[String],
) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim().trim_end_matches('/');
    if let Some(host) = host {
        let scheme = if secure { "https" } else { "http" };
        if origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")) {
            return true;
        }
    }
    allowed.iter().any(|a| a.trim().trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// `GET /ws`: checks Origin and the `sip` subprotocol, then upgrades.
pub async fn upgrade(
    State(state): State<WebState>,
    ConnectInfo(ClientAddr(peer, armed)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let text = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    if !origin_allowed(
        text(header::ORIGIN),
        text(header::HOST),
        state.secure,
        &state.allowed_origins,
    ) {
        tracing::warn!(%peer, origin = text(header::ORIGIN).unwrap_or(""), "websocket origin refused");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let offers_sip = text(header::SEC_WEBSOCKET_PROTOCOL)
        .is_some_and(|p| p.split(',').any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL)));
    if !offers_sip {
        // RFC 7118 §4: the client must offer "sip"; completing the handshake without it
        // would leave both sides guessing what the messages are.
        return (StatusCode::BAD_REQUEST, "the sip subprotocol is required (RFC 7118)\n")
            .into_response();
    }
    ws.protocols([SUBPROTOCOL]).max_message_size(state.conn.max_message).on_upgrade(move |socket| {
        // A WebSocket now: its own clocks apply, not the HTTP stage's deadline.
        armed.disarm();
        connection(socket, state, peer)
    })
}

async fn connection(socket: WebSocket, state: WebState, peer: std::net::SocketAddr) {
    use futures_util::{SinkExt, StreamExt};

    let transport = if state.secure { Transport::Wss } else { Transport::Ws };
    let ctx = &state.conn;
    let (id, mut queue) = ctx.flows.open(transport, peer, false);
    tracing::debug!(%peer, flow = %id, "websocket connected");
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            // SIP is text; a body that is not UTF-8 goes as a binary message (RFC 7118 §5).
            let msg = match std::str::from_utf8(&bytes) {
                Ok(text) => WsMessage::Text(text.into()),
                Err(_) => WsMessage::Binary(bytes),
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let from = Peer::stream(transport, peer, Some(id));
    let mut shutdown = ctx.shutdown.clone();
    let mut wait = ctx.timeouts.message;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(wait, stream.next()) => m,
            _ = shutdown.changed() => break,
        };
        wait = ctx.timeouts.idle;
        let data = match msg {
            Err(_) => {
                ctx.metrics.slow_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(%peer, flow = %id, "websocket too slow: closed");
                break;
            }
            Ok(Some(Ok(WsMessage::Text(t)))) => Bytes::from(t),
            Ok(Some(Ok(WsMessage::Binary(b)))) => b,
            // axum answers pings itself.
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
            _ => break,
        };
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            // A keep-alive some clients send as a message of line breaks.
            continue;
        }
        // RFC 7118 §5: one SIP message per WebSocket message, framed like a datagram.
        if let Some(answer) = ctx.receive(from, data, Framing::Datagram) {
            let _ = ctx.flows.send(id, answer);
        }
    }
    ctx.flows.close(id);
    writer.abort();
    ctx.core.flow_closed(id).await;
    tracing::debug!(%peer, flow = %id, "websocket closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let allowed = vec!["https://agents.example.com".to_owned()];
        // Non-browser clients send no Origin.
        assert!(origin_allowed(None, Some("edge:8080"), false, &allowed));
        // Same origin.
        assert!(origin_allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            false,
            &allowed
        ));
        assert!(origin_allowed(
            Some("https://edge.example.com"),
            Some("edge.example.com"),
            true,
            &allowed
        ));
        // The scheme must match the listener's.
        assert!(!origin_allowed(
            Some("http://edge.example.com"),
            Some("edge.example.com"),
            true,
            &allowed
        ));
        // Configured origins, exactly.
        assert!(origin_allowed(Some("https://AGENTS.example.com/"), Some("edge"), true, &allowed));
        assert!(!origin_allowed(
            Some("https://agents.example.com.evil.net"),
            Some("edge"),
            true,
            &allowed
        ));
        assert!(!origin_allowed(Some("https://evil.example.net"), Some("edge"), true, &allowed));
        assert!(!origin_allowed(Some("null"), Some("edge"), true, &allowed));
    }
}
