//! Media anchoring: the browser's WebRTC leg (ICE, DTLS-SRTP) terminated at the edge and
//! relayed as plain RTP toward a trunk, and back (issue 7).
//!
//! # Layout
//!
//! - [`rtp`]: plain RTP headers (RFC 3550 §5.1), checked then parsed; no I/O.
//! - [`sdp`]: the plain-RTP side's SDP (RFC 8866), read and written; no I/O.
//! - [`anchor`]: [`anchor::Anchor`], sans-IO like `crates/sip`: every WebRTC leg is a str0m
//!   [`str0m::Rtc`] (ICE-lite, RTP mode, DTLS 1.2, aws-lc-rs, PCMU/PCMA + telephone-event)
//!   behind ONE UDP address, demultiplexed with `Rtc::accepts`; each leg relays to a plain RTP
//!   address on the trunk side, with symmetric RTP latching. Datagrams and `now` go in
//!   (`handle_*`), datagrams to send come out ([`anchor::Anchor::poll_transmit`]).
//! - [`srtp`]: the relayed audio's SRTP (RFC 3711, RFC 7714) done by the anchor once a leg's
//!   DTLS is up, with the keys its DTLS exported (RFC 5764 §4.2); str0m keeps ICE, DTLS and
//!   RTCP.
//! - [`engine`]: [`engine::Media`], the anchor on tokio sockets and timers, called by the core
//!   while it rewrites SDP (`crate::core::media`).
//!
//! # What is anchored (`[media] anchor`)
//!
//! `webrtc` (the default): a call with a browser (DTLS-SRTP) on one side and plain RTP on the
//! other. The edge answers the browser itself and offers the plain side its own RTP port with
//! the codecs both can use (PCMU, PCMA; telephone-event passed through with the payload type
//! the browser chose). Calls between two browsers go peer to peer, and between two plain-RTP
//! peers media never touches the edge. `never`: SDP passes unchanged.

pub mod anchor;
pub mod engine;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod srtp;
