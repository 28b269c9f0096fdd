//! One connection (TCP, TLS; inbound or opened by the edge): framing, keep-alives, parse, and
//! a writer that drains the flow's queue. Reading and writing run apart, so a peer that stops
//! reading never blocks what the edge reads from it, and the core never waits on a socket.
//!
//! # Timeouts
//!
//! A peer must not hold a connection (a task, a buffer, a descriptor) by being slow
//! ("slow-loris"). Two clocks bound every inbound connection ([`Timeouts`], `[limits]
//! message_timeout_secs` and `idle_timeout_secs`):
//!
//! - **message**: once the first byte of a message is buffered, the whole message must arrive
//!   within this time; and a connection just accepted must bring its first message or
//!   keep-alive within it. A client trickling one byte every few seconds, or connecting and
//!   saying nothing, is closed at this deadline however often bytes come.
//! - **idle**: between messages, a connection that sends nothing for this long is closed.
//!
//! Connections the edge opened itself are not held to the first-message rule (the edge speaks
//! first there; the peer may have nothing to say for a while). Either close counts in
//! `lifeline_sip_slow_connections_closed_total`. WebSocket connections
//! ([`crate::web::ws`]) follow the same two rules per WebSocket message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sip::framing::{self, Frame};
use sip::transaction::{Peer, Transport};
use sip::{Framing, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::flows::Flows;
use super::limit::{Limiter, Verdict};
use crate::admin::Metrics;
use crate::core::{CoreHandle, reject_malformed};

/// The two clocks of a stream connection (module docs, "Timeouts").
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From a message's first byte to its last; from accept to the first message.
    pub message: Duration,
    /// Silence between messages.
    pub idle: Duration,
}

impl Default for Timeouts {
    /// The defaults of `[limits]`: 10 s per message, 300 s idle (RFC 5626 clients ping every
    /// 30 s or so; registrations refresh well within this).
    fn default() -> Timeouts {
        Timeouts { message: Duration::from_secs(10), idle: Duration::from_secs(300) }
    }
}

/// The core's queue at this fill: new calls are answered 503 by the transport.
const SHED_REFUSE: f32 = 0.25;
/// ...and at this fill dropped without an answer (a flood: answering costs too).
const SHED_DROP: f32 = 0.75;

/// What every connection needs.
#[derive(Debug, Clone)]
pub struct ConnCtx {
    pub flows: Arc<Flows>,
    pub core: CoreHandle,
    pub max_message: usize,
    /// How slow a peer may be (module docs, "Timeouts").
    pub timeouts: Timeouts,
    /// The `Server` header of stateless error answers.
    pub server: Arc<str>,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<Limiter>,
}

impl ConnCtx {
    /// Takes one whole message received from `from`: parses it, answers what cannot go on
    /// (a malformed request, a source over its rate), and hands the rest to the core. Returns
    /// the bytes to send back on the same flow, if any.
    pub fn receive(&self, from: Peer, bytes: Bytes, framing: Framing) -> Option<Bytes> {
        match Message::parse(bytes, framing) {
            Ok(Message::Request(req)) => {
                if self.limiter.is_urgent(&req) {
                    // Emergency calls, PSAP callbacks and their dialogs: no rate limit, no
                    // shedding, the core's priority lane.
                    if !self.core.deliver_urgent(from, Message::Request(req)) {
                        self.metrics.shed();
                    }
                    return None;
                }
                // Overload: when the core's queue fills, new calls are refused here, before the
                // core spends anything on them (503 with Retry-After), and dropped when it is
                // nearly full; requests within dialogs and every response still go through, so
                // that calls in progress can finish.
                let new_call = !req.in_dialog()
                    && !matches!(req.method(), sip::Method::Ack | sip::Method::Cancel);
                if new_call {
                    let load = self.core.load();
                    if load >= SHED_DROP {
                        self.metrics.shed();
                        return None;
                    }
                    if load >= SHED_REFUSE {
                        self.metrics.shed();
                        return over_limit(&req, &self.server);
                    }
                }
                {
                    match self.limiter.check(from.addr.ip(), std::time::Instant::now()) {
                        Verdict::Pass => {}
                        Verdict::Drop => {
                            self.metrics.shed();
                            return None;
                        }
                        Verdict::Refuse => {
                            self.metrics.shed();
                            return over_limit(&req, &self.server);
                        }
                    }
                }
                self.deliver(from, Message::Request(req))
            }
            Ok(Message::Response(r)) if self.limiter.is_urgent_response(&r) => {
                if !self.core.deliver_urgent(from, Message::Response(r)) {
                    self.metrics.shed();
                }
                None
            }
            Ok(message) => self.deliver(from, message),
            Err(e) => {
                self.metrics.malformed();
                tracing::debug!(peer = %from, error = %e, "malformed message");
                reject_malformed(&e, &self.server)
            }
        }
    }

    fn deliver(&self, from: Peer, message: Message) -> Option<Bytes> {
        if !self.core.deliver(from, message) {
            self.metrics.shed();
            // At most one line a second: logging every shed message would deepen the overload.
            static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let second = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if LAST.swap(second, std::sync::atomic::Ordering::Relaxed) != second {
                tracing::warn!(peer = %from, "core saturated: messages shed (lifeline_sip_shed_total counts them)");
            }
        }
        None
    }
}

/// `503 Service Unavailable` with `Retry-After: 1` for a source over its rate (none for ACK).
fn over_limit(req: &sip::Request, server: &str) -> Option<Bytes> {
    if *req.method() == sip::Method::Ack {
        return None;
    }
    let mut r = sip::Response::for_request(req, 503, "Service Unavailable");
    r.set_to_tag(&crate::core::stateless_tag(req));
    r.headers_mut().push(sip::HeaderName::RetryAfter, "1");
    r.headers_mut().push(sip::HeaderName::Server, server.to_owned());
    Some(r.to_bytes())
}

/// Serves one connection until it closes, errs, idles out or the edge shuts down. `first` is
/// queued before anything else (the request that made the edge open this connection).
pub async fn run<S>(
    stream: S,
    transport: Transport,
    peer: SocketAddr,
    ctx: ConnCtx,
    outbound: bool,
    first: Option<Bytes>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (id, mut queue) = ctx.flows.open(transport, peer, outbound);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    if let Some(first) = first {
        let _ = ctx.flows.send(id, first);
    }
    let from = Peer::stream(transport, peer, Some(id));
    let result = read_loop(&mut rd, from, &ctx, !outbound).await;
    if let Err(e) = result {
        tracing::debug!(%peer, flow = %id, error = %e, "connection closed");
    }
    ctx.flows.close(id);
    writer.abort();
    ctx.core.flow_closed(id).await;
}

/// Reads, frames and delivers until the peer closes, errs, is too slow (module docs,
/// "Timeouts") or the edge shuts down. With `first_message_due`, the message clock runs from
/// the start (an inbound connection must speak first).
async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut R,
    from: Peer,
    ctx: &ConnCtx,
    first_message_due: bool,
) -> std::io::Result<()> {
    let Some(id) = from.flow else { return Ok(()) };
    let mut buf = BytesMut::with_capacity(4096);
    let mut shutdown = ctx.shutdown.clone();
    // When the message being received (or awaited, on a new connection) started.
    let mut started = first_message_due.then(tokio::time::Instant::now);
    loop {
        // Take every whole message already buffered.
        loop {
            match framing::check(&buf, ctx.max_message) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive { len, ping }) => {
                    let _ = buf.split_to(len);
                    started = None;
                    if ping {
                        // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF.
                        let _ = ctx.flows.send(id, Bytes::from_static(b"\r\n"));
                    }
                }
                Ok(Frame::Message { len }) => {
                    let bytes = buf.split_to(len).freeze();
                    started = None;
                    if let Some(answer) = ctx.receive(from, bytes, Framing::Stream) {
                        let _ = ctx.flows.send(id, answer);
                    }
                }
                // The stream cannot be resynchronised after a framing error.
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
        }
        let now = tokio::time::Instant::now();
        if started.is_none() && !buf.is_empty() {
            started = Some(now);
        }
        let deadline = match started {
            Some(t) => t + ctx.timeouts.message,
            None => now + ctx.timeouts.idle,
        };
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)) => r,
            _ = shutdown.changed() => return Ok(()),
        };
        match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                ctx.metrics.slow_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let why = if started.is_some() { "message incomplete in time" } else { "idle" };
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why));
            }
        }
    }
}
