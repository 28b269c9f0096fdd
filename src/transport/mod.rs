//! Transports: UDP and TCP listeners (TLS and WebSocket arrive with issue 5).
//!
//! A transport turns bytes into whole messages (a datagram on UDP; [`sip::framing::check`] on
//! streams), hands them to the [`crate::core::Core`] and sends its answer back over the same
//! flow: the source ip:port on UDP, the connection on TCP (DESIGN.md, "Decisions").

pub mod tcp;
pub mod tls;
pub mod udp;
