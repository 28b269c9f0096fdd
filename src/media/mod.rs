//! Media anchoring: the browser's WebRTC leg (ICE, DTLS-SRTP) terminated at the edge and
//! relayed as plain RTP toward a trunk, and back (issue 7).
//!
//! # Layout
//!
//! - [`rtp`]: plain RTP headers (RFC 3550 §5.1), checked then parsed; no I/O.
//! - [`anchor`]: [`anchor::Anchor`], sans-IO like `crates/sip`: every WebRTC leg is a str0m
//!   [`str0m::Rtc`] (ICE-lite answerer, RTP mode, DTLS 1.2, aws-lc-rs, PCMU + telephone-event)
//!   behind ONE UDP address, demultiplexed with `Rtc::accepts`; each leg relays to a plain RTP
//!   address on the trunk side, with symmetric RTP latching. Datagrams and `now` go in
//!   (`handle_*`), datagrams to send come out ([`anchor::Anchor::poll_transmit`]).
//!
//! # Status
//!
//! Not wired into the proxy yet: nothing in the SIP path calls it, no socket is bound for it,
//! SDP toward the trunk is not rewritten (the owner of `src/core` wires it). What exists is
//! proven by unit tests against a second str0m peer acting as the browser, in memory.

pub mod anchor;
pub mod rtp;
