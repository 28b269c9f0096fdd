//! Transactions: RFC 3261 §17 with the RFC 6026 corrections, sans-IO.
//!
//! A [`TxnLayer`] holds every client and server transaction of one SIP element. It reads no
//! clock and touches no socket: the driver tells it what arrived and what time it is, and takes
//! out what to send, what to tell the transaction user (TU, here the proxy core), and when to
//! wake it next.
//!
//! # Run-loop contract
//!
//! After **every** input — [`TxnLayer::handle_request`], [`TxnLayer::handle_response`],
//! [`TxnLayer::handle_timeout`], [`TxnLayer::handle_transport_error`],
//! [`TxnLayer::handle_flow_error`] — and after every TU
//! command — [`TxnLayer::send_request`], [`TxnLayer::send_response`], [`TxnLayer::cancel`],
//! [`TxnLayer::send_stateless`] — the driver:
//!
//! 1. calls [`TxnLayer::poll_transmit`] until it returns `None`, sending each [`Transmit`]
//!    (a failed send is reported back with [`TxnLayer::handle_transport_error`] and the
//!    transmit's `txn`);
//! 2. calls [`TxnLayer::poll_event`] until it returns `None`, handing each [`Event`] to the
//!    TU (whose commands are inputs too: loop back to 1);
//! 3. sleeps until [`TxnLayer::poll_timeout`] (or until the next message arrives), then calls
//!    [`TxnLayer::handle_timeout`] with the current time.
//!
//! Time only moves through the `now` arguments, which must never go backwards. Tests drive
//! the layer on a virtual clock (`testkit::VirtualClock`) and never sleep.
//!
//! ```
//! # use std::time::Instant;
//! # use sip::transaction::{TxnLayer, Event};
//! # fn run(layer: &mut TxnLayer, now: Instant) -> Option<Instant> {
//! while let Some(t) = layer.poll_transmit() {
//!     // socket.send_to(&t.message, t.to.addr) ...
//! #   let _ = t;
//! }
//! while let Some(event) = layer.poll_event() {
//!     // the proxy core handles it, possibly calling layer.send_response(now, ...) ...
//! #   let _ = event;
//! }
//! layer.poll_timeout() // sleep until then, then layer.handle_timeout(Instant::now())
//! # }
//! ```
//!
//! # What the layer does for the TU
//!
//! - **Matching** (RFC 3261 §17.1.3, §17.2.3): responses by top-Via branch and CSeq method;
//!   requests by branch, sent-by and method (ACK counts as INVITE; a CANCEL is its own
//!   transaction, reported against the INVITE it matches), or, for RFC 2543 peers whose branch
//!   lacks the `z9hG4bK` cookie, by Request-URI, tags, Call-ID, CSeq and top Via.
//! - **Retransmissions**: requests over UDP (Timers A, E), non-2xx INVITE finals over UDP
//!   (Timer G); retransmitted requests are answered with the last response; retransmitted
//!   finals are absorbed (the INVITE client re-sends its ACK). Reliable transports skip the
//!   retransmission timers, and their absorb-states last zero seconds.
//! - **ACK for a non-2xx final** is sent by the INVITE client transaction
//!   ([`ack_for_non_2xx`]) and absorbed by the INVITE server transaction. The ACK for a 2xx
//!   is not part of the INVITE transaction: it reaches the TU as [`Event::Ack`].
//! - **CANCEL** ([`TxnLayer::cancel`], [`cancel_for`]) is held until a provisional response
//!   arrived, and the cancelled INVITE is given up 64*T1 after its CANCEL if no final comes
//!   (RFC 3261 §9.1; Timer B measures that wait).
//! - **RFC 6026**: the Accepted state on both sides (Timers L and M): every 2xx reaches the
//!   proxy, INVITE retransmissions after a 2xx are absorbed.
//! - **Timeouts** (Timers B, F, H) and transport errors are [`Event`]s; every transaction ends
//!   with [`Event::Terminated`] and is removed at once.
//!
//! The TU keeps its own obligations: answering every server transaction (a server
//! transaction lives until its final response), retransmitting its own 2xx as a UAS (RFC 3261
//! §13.3.1.4), and Timer C (RFC 3261 §16.6 step 11).
//!
//! # Layout
//!
//! - [`peer`] — [`Transport`], [`Peer`], [`FlowId`].
//! - [`timer`] — [`TimerConfig`], the named [`Timer`]s and the per-transaction table.
//! - `client`, `server` — the four state machines (states are enum variants owning their
//!   data).
//! - `key` — [`ClientKey`], [`ServerKey`], and the matching keys.
//! - [`build`] — the ACK and CANCEL builders.
//! - `event` — [`Transmit`], [`Event`], [`TxnError`], [`TxnState`].
//! - `layer` — [`TxnLayer`], its indexes and its timer index (a `BTreeSet` of
//!   `(deadline, key)`: `poll_timeout` is its first element).

pub mod build;
mod client;
mod event;
mod key;
mod layer;
pub mod peer;
mod server;
pub mod timer;

pub use build::{BuildError, ack_for_non_2xx, cancel_for};
pub use event::{CancelStatus, Event, Transmit, TxnError, TxnState};
pub use key::{ClientKey, ServerKey, TxnKey};
pub use layer::{TxnConfig, TxnLayer};
pub use peer::{FlowId, Peer, Transport};
pub use timer::{Timer, TimerConfig};
