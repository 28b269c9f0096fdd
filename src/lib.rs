//! lifeline: a carrier-facing SIP edge for contact-centre browser softphones, built around
//! emergency calls made by agents.
//!
//! # Layout
//!
//! - [`cli`]: `lifeline run|check|version`, argument parsing and exit codes.
//! - [`config`]: typed configuration (today: the embedded development defaults).
//! - [`app`]: builds the edge from a configuration and sockets bound outside; runs it until
//!   shutdown.
//! - [`transport`]: UDP and TCP listeners.
//! - [`core`]: what the edge does with each message (today: stateless OPTIONS and errors).
//! - [`store`]: durable state (agents, groups, presence, callback leases, notification outbox,
//!   call history, registration snapshot, templates) behind the `Store` trait; SQLite.
//!
//! The SIP protocol itself (codec, framing, transactions, proxy rules, digest) lives in the
//! sans-IO crate `sip` (`crates/sip`); this crate is the only place with sockets and clocks.
//! `../shared/DESIGN.md` has the full architecture.

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod store;
pub mod transport;
