//! A sequence of messages, as a peer would send them on one connection.
//!
//! TODO: drive the transaction layer (`sip::transaction`) from this target once it lands: feed
//! each parsed message to the transaction layer with a virtual `now` taken from the input, fire
//! the timers it asks for, and check that it never panics and never answers a retransmission
//! twice. For now the target only frames and parses the messages.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::framing::{self, Frame};
use sip::{Framing, Message};

/// The limit the edge uses by default for one message.
const MAX_MESSAGE: usize = 65_535;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut messages = Vec::new();
    while let Ok(frame) = framing::check(rest, MAX_MESSAGE) {
        let len = match frame {
            Frame::Incomplete => break,
            Frame::KeepAlive { len, .. } => len,
            Frame::Message { len } => {
                if let Ok(m) = Message::parse(Bytes::copy_from_slice(&rest[..len]), Framing::Stream)
                {
                    messages.push(m);
                }
                len
            }
        };
        rest = &rest[len..];
    }
    for m in &messages {
        let _ = (
            m.headers().top_via(),
            m.headers().cseq(),
            m.headers().call_id(),
        );
    }
});
