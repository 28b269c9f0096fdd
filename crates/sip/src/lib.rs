//! Sans-IO SIP for lifeline.
//!
//! This crate turns bytes into SIP messages and back, and decides what the SIP rules say should
//! happen next; it never touches a socket or reads a clock. The edge (`src/` of the root
//! package) owns the sockets and the clock: it feeds this crate with `handle_*(now, ...)` calls
//! and drains it with `poll_*` calls after every input (the quinn-proto / str0m model).
//!
//! # Layout
//!
//! - [`message`]: requests and responses — parsing (RFC 3261 §7, §18.3), typed access, printing
//!   byte for byte where untouched.
//! - [`header`]: header names (long and compact forms) and typed views ([`header::typed`]).
//! - [`uri`]: `sip:`, `sips:`, `tel:`, `urn:` URIs, IPv4 and IPv6 hosts (RFC 3261 §19.1,
//!   RFC 3966, RFC 5031, RFC 5118).
//! - [`framing`]: finding whole messages in a byte stream (TCP, TLS, WebSocket), keep-alives
//!   (RFC 5626 §3.5.1).
//! - [`multipart`]: multipart bodies (RFC 5621), e.g. SDP with a PIDF-LO.
//! - [`error`]: why a message was refused, with the status and reason phrase to answer.
//! - [`digest`]: HTTP digest authentication for SIP (RFC 7616, RFC 8760, RFC 3261 §22).
//! - [`method`]: request methods.
//! - [`transaction`]: client and server transactions with named timers (RFC 3261 §17,
//!   RFC 6026).
//! - [`transport`]: the transports SIP names (UDP, TCP, TLS, SCTP, WS, WSS).
//! - [`proxy`]: the proxy rules of RFC 3261 §16 as pure functions.
//!
//! # Contracts
//!
//! - No panics on any input: every parser returns an error for malformed bytes (fuzzed in
//!   `fuzz/`).
//! - Parsing allocates the header index once per message, never once per header; typed views
//!   borrow from the message.

pub mod digest;
pub mod error;
pub mod framing;
pub mod header;
pub mod message;
pub mod method;
pub mod multipart;
pub mod proxy;
mod text;
pub mod transaction;
pub mod transport;
pub mod uri;

pub use error::{HeaderError, Invalid, MessageKind, ParseError};
pub use header::{HeaderName, Headers};
pub use message::{Framing, Message, Request, Response};
pub use method::Method;
pub use uri::{Host, Uri};

/// The hash map of the per-message paths (transactions, their indexes, the proxy's calls).
///
/// std's SipHash is built to resist chosen-key floods at a cost of a few per cent of a busy
/// proxy's time; foldhash, seeded at random per process, is several times faster and still
/// keeps a remote sender from predicting bucket collisions (keys such as Via branches come
/// from the network).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The set counterpart of [`FastMap`].
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
