//! Shared by the `transaction*` tests: one `TxnLayer` on a virtual clock, with the test playing
//! the peer, and message helpers. (Each test file uses part of it.)
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use sip::transaction::{Event, FlowId, Peer, Transmit, Transport, TxnConfig, TxnLayer};
use sip::{Framing, Message, Request, Response};
use testkit::VirtualClock;

/// The remote UA or proxy the test plays.
pub const REMOTE: &str = "192.0.2.10:5060";

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn udp(addr: &str) -> Peer {
    Peer::udp(addr.parse().unwrap())
}

pub fn tcp(addr: &str, flow: u64) -> Peer {
    Peer::stream(Transport::Tcp, addr.parse().unwrap(), Some(FlowId(flow)))
}

pub fn request(text: &str) -> Request {
    match Message::parse(Bytes::copy_from_slice(text.as_bytes()), Framing::Datagram) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}\n{text}"),
    }
}

pub fn response(text: &str) -> Response {
    match Message::parse(Bytes::copy_from_slice(text.as_bytes()), Framing::Datagram) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}\n{text}"),
    }
}

/// Parses bytes the layer sent.
pub fn parse_sent(bytes: &Bytes) -> Message {
    Message::parse(bytes.clone(), Framing::Datagram).expect("the layer sends valid messages")
}

pub fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The start line of a message the layer sent (`INVITE sip:...`, `SIP/2.0 180 Ringing`).
pub fn first_line(bytes: &Bytes) -> String {
    text(bytes).lines().next().unwrap_or("").to_owned()
}

/// One layer on a virtual clock; the test plays the other side. Every output is logged with
/// the virtual time (since start) it came out at.
pub struct One {
    pub clock: VirtualClock,
    pub layer: TxnLayer,
    pub sent: Vec<(Duration, Transmit)>,
    pub events: Vec<(Duration, Event)>,
}

impl One {
    pub fn new() -> One {
        One::with(TxnConfig::default())
    }

    pub fn with(config: TxnConfig) -> One {
        One {
            clock: VirtualClock::new(),
            layer: TxnLayer::new(config),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn now(&self) -> std::time::Instant {
        self.clock.now()
    }

    /// Drains the layer's outputs into the logs (the run-loop contract).
    pub fn pump(&mut self) {
        let at = self.clock.elapsed();
        while let Some(t) = self.layer.poll_transmit() {
            self.sent.push((at, t));
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push((at, e));
        }
    }

    /// Moves the clock to `d` after the start, stopping at every deadline the layer names on
    /// the way, exactly then.
    pub fn run_until(&mut self, d: Duration) {
        let end = self.clock.at(d);
        self.pump();
        while let Some(t) = self.layer.poll_timeout() {
            if t > end {
                break;
            }
            assert!(t >= self.clock.now(), "a deadline in the past was left unfired");
            self.clock.advance_to(t);
            self.layer.handle_timeout(t);
            self.pump();
            assert!(
                self.layer.poll_timeout().is_none_or(|n| n > t),
                "handle_timeout left a due timer"
            );
        }
        self.clock.advance_to(end);
    }

    /// Feeds a request from `from` at the current time.
    pub fn recv_request(&mut self, from: Peer, text: &str) {
        self.layer.handle_request(self.clock.now(), from, request(text));
        self.pump();
    }

    /// Feeds a response from `from` at the current time.
    pub fn recv_response(&mut self, from: Peer, text: &str) {
        self.layer.handle_response(self.clock.now(), from, response(text));
        self.pump();
    }

    /// Takes the transmit log: (time, start line).
    pub fn take_sent(&mut self) -> Vec<(Duration, String)> {
        std::mem::take(&mut self.sent)
            .into_iter()
            .map(|(at, t)| (at, first_line(&t.message)))
            .collect()
    }

    /// Takes the transmit log with whole transmits.
    pub fn take_transmits(&mut self) -> Vec<(Duration, Transmit)> {
        std::mem::take(&mut self.sent)
    }

    pub fn take_events(&mut self) -> Vec<(Duration, Event)> {
        std::mem::take(&mut self.events)
    }
}

/// Shortens an event for assertions: `"Response 180 client#1"`, `"Timeout Timer B client#1"`.
pub fn describe(e: &Event) -> String {
    match e {
        Event::Request { key, request, .. } => format!("Request {} {key}", request.method()),
        Event::Cancel { key, invite, .. } => match invite {
            Some(i) => format!("Cancel {key} of {i}"),
            None => format!("Cancel {key} unmatched"),
        },
        Event::Ack { invite, .. } => match invite {
            Some(i) => format!("Ack of {i}"),
            None => "Ack".to_owned(),
        },
        Event::Response { key, response } => format!("Response {} {key}", response.status()),
        Event::StrayResponse { response, .. } => format!("Stray {}", response.status()),
        Event::CancelSent { invite, cancel } => format!("CancelSent {cancel} for {invite}"),
        Event::Timeout { key, timer } => format!("Timeout {} {key}", timer.name()),
        Event::TransportError { key } => format!("TransportError {key}"),
        Event::Terminated { key } => format!("Terminated {key}"),
    }
}

/// The event log as (time, description).
pub fn described(events: &[(Duration, Event)]) -> Vec<(Duration, String)> {
    events.iter().map(|(at, e)| (*at, describe(e))).collect()
}
