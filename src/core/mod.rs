//! The core: what the edge does with each message.
//!
//! This first slice is stateless: it answers OPTIONS (a keep-alive probe for trunks and load
//! balancers), refuses malformed requests with the precise 400 reason the codec gives, drops
//! malformed responses, and answers every other request `501 Not Implemented` until the
//! registrar and the stateful proxy land (issue 5). ACK is never answered (RFC 3261 §17).

use bytes::Bytes;
use sip::{Framing, HeaderName, Message, Method, ParseError, Request, Response};

/// What the core decided for one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back over the flow the message came on.
    Reply(Bytes),
    /// Nothing to send.
    Drop,
}

/// The message handler shared by every transport.
#[derive(Debug, Clone)]
pub struct Core {
    server: Bytes,
}

impl Core {
    pub fn new(node_name: &str) -> Core {
        Core {
            server: format!("lifeline/{} ({node_name})", env!("CARGO_PKG_VERSION")).into(),
        }
    }

    /// Handles one whole message received as `framing`.
    pub fn handle(&self, bytes: Bytes, framing: Framing) -> Outcome {
        match Message::parse(bytes, framing) {
            Ok(Message::Request(req)) => self.request(&req),
            // No transactions yet: responses have nowhere to go.
            Ok(Message::Response(_)) => Outcome::Drop,
            Err(e) => self.invalid(e),
        }
    }

    fn request(&self, req: &Request) -> Outcome {
        match req.method() {
            Method::Ack => Outcome::Drop,
            Method::Options => {
                let mut r = self.response(req, 200, "OK");
                let h = r.headers_mut();
                h.push(HeaderName::Allow, "INVITE, ACK, BYE, CANCEL, OPTIONS");
                h.push(HeaderName::Accept, "application/sdp");
                Outcome::Reply(r.to_bytes())
            }
            _ => Outcome::Reply(self.response(req, 501, "Not Implemented").to_bytes()),
        }
    }

    fn invalid(&self, e: ParseError) -> Outcome {
        tracing::debug!(error = %e, "malformed message");
        match &e.partial {
            Some(req) if e.kind == sip::MessageKind::Request && *req.method() != Method::Ack => {
                Outcome::Reply(self.response(req, e.status(), &e.reason()).to_bytes())
            }
            _ => Outcome::Drop,
        }
    }

    fn response(&self, req: &Request, status: u16, reason: &str) -> Response {
        let mut r = Response::for_request(req, status, reason);
        if status > 100 {
            r.set_to_tag(&to_tag(req));
        }
        r.headers_mut()
            .push(HeaderName::Server, self.server.clone());
        r
    }
}

/// A To tag that is the same for retransmissions of one request (so a stateless answer is
/// stable, RFC 3261 §8.2.6.2), derived from the Call-ID, the From tag and the top branch.
fn to_tag(req: &Request) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let headers = req.headers();
    headers.call_id().unwrap_or("").hash(&mut h);
    headers.from().ok().and_then(|f| f.tag()).hash(&mut h);
    headers.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
    format!("{:x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1\r\n\
From: <sip:probe@127.0.0.1>;tag=p1\r\n\
To: <sip:edge@127.0.0.1>\r\n\
Call-ID: probe-1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

    fn reply(out: Outcome) -> Response {
        let Outcome::Reply(bytes) = out else {
            panic!("no reply")
        };
        match Message::parse(bytes, Framing::Stream) {
            Ok(Message::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn options_gets_200_with_a_stable_to_tag() {
        let core = Core::new("test");
        let a = reply(core.handle(Bytes::from_static(OPTIONS), Framing::Datagram));
        let b = reply(core.handle(Bytes::from_static(OPTIONS), Framing::Datagram));
        assert_eq!(a.status(), 200);
        assert_eq!(
            a.headers().to().unwrap().tag(),
            b.headers().to().unwrap().tag()
        );
        assert!(a.headers().to().unwrap().tag().is_some());
    }

    #[test]
    fn malformed_request_gets_the_precise_400() {
        let core = Core::new("test");
        let broken = String::from_utf8(OPTIONS.to_vec())
            .unwrap()
            .replace("Call-ID: probe-1\r\n", "");
        let Outcome::Reply(bytes) = core.handle(Bytes::from(broken), Framing::Datagram) else {
            panic!("no reply")
        };
        // The answer carries what the request had (no Call-ID to copy), so read it as text.
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(
            text.starts_with("SIP/2.0 400 Missing Call-ID\r\n"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 OPTIONS\r\n"), "{text}");
    }

    #[test]
    fn responses_and_garbage_are_dropped() {
        let core = Core::new("test");
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            core.handle(Bytes::from_static(resp), Framing::Datagram),
            Outcome::Drop
        );
        assert_eq!(
            core.handle(Bytes::from_static(b"\x00\xff garbage"), Framing::Datagram),
            Outcome::Drop
        );
    }
}
