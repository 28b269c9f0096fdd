//! Test-only support for lifeline: a virtual clock, an emulated lossy network and builders for
//! the text of typical SIP messages. Nothing here ships in the edge.
//!
//! # Driving sans-IO endpoints without sleeping
//!
//! lifeline's protocol code (`sip::transaction::TxnLayer` and friends) takes time as an
//! argument and hands out what to send. A test wires two such endpoints together through a
//! [`Netem`] and moves a [`VirtualClock`] from one event to the next:
//!
//! 1. After every input, drain each endpoint: its transmits go into the netem with
//!    [`Netem::send`]`(now, from, to, bytes)`, its events go to the test's scripted TU.
//! 2. The next instant anything can happen is the minimum of every endpoint's
//!    `poll_timeout()` and [`Netem::next_delivery`]. Move the clock there with
//!    [`VirtualClock::advance_to`] (never backwards, never by sleeping).
//! 3. Deliver every datagram due ([`Netem::poll_deliver`]) to the endpoint owning its
//!    destination address, and call `handle_timeout(now)` on the endpoints whose deadline has
//!    come. Go to 1.
//!
//! Time only moves when the test says so, so assertions can name exact instants
//! (`start + 500 ms`), and a lossy run is reproducible from its seed: the netem draws every
//! random decision from a [`Rng`] seeded by the test.
//!
//! # Layout
//!
//! - [`clock`] — [`VirtualClock`].
//! - [`rng`] — [`Rng`], a SplitMix64 generator (deterministic, no dependencies).
//! - [`netem`] — [`Netem`], [`NetemConfig`], [`Datagram`], [`NetemStats`] (after str0m's
//!   `crates/netem`).
//! - [`msg`] — the text of SIP requests and responses for tests ([`msg::RequestText`],
//!   [`msg::response_to`], [`msg::Ids`]).

pub mod clock;
pub mod msg;
pub mod netem;
pub mod rng;

pub use clock::VirtualClock;
pub use netem::{Datagram, Netem, NetemConfig, NetemStats};
pub use rng::Rng;
