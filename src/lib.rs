//! lifeline: a carrier-facing SIP edge for contact-centre browser softphones, built around
//! emergency calls made by agents.
//!
//! # Layout
//!
//! - [`admin`]: the admin listener: JSON API (bearer token), `/live`, `/ready`, `/metrics`.
//! - [`cli`]: `lifeline run|check|version`, argument parsing and exit codes.
//! - [`config`]: typed configuration (`lifeline.toml` over the embedded defaults).
//! - [`agents`]: the roster (agents, groups, their HA1s) read from the store, swapped live.
//! - [`app`]: builds the edge from a configuration and sockets bound outside; runs it until
//!   shutdown.
//! - [`transport`]: UDP, TCP and TLS listeners, outbound connections, flows, rate limits.
//! - [`emergency`]: emergency calls made by agents: dialstrings, trunk choice, the caller's
//!   location (PIDF-LO, RFC 6442) and country, the notification e-mail and its delivery.
//! - [`demo`]: demo mode (no configuration file): a simulated carrier and PSAP on loopback,
//!   and demo agents.
//! - [`core`]: the single task that owns the transaction layer: registrar, authentication,
//!   stateful proxy, trunk probes.
//! - [`presence`]: agents' presence (memory, written through to the store); DND for an
//!   emergency call and its restore.
//! - [`registrar`]: REGISTER rules (RFC 3261 §10.3, RFC 5626 flows) and the location table.
//! - [`routing`]: the dialplan (trunks, routes, inbound DIDs, trusted networks), reloadable.
//! - [`store`]: durable state (agents, groups, presence, callback leases, notification outbox,
//!   call history, registration snapshot, templates) behind the `Store` trait; SQLite.
//! - [`web`]: the web listener: SIP over WebSocket at `/ws` (RFC 7118), the softphone page.
//!
//! The SIP protocol itself (codec, framing, transactions, proxy rules, digest) lives in the
//! sans-IO crate `sip` (`crates/sip`); this crate is the only place with sockets and clocks.
//! `../shared/DESIGN.md` has the full architecture.

pub mod admin;
pub mod agents;
pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;
pub mod emergency;
pub mod media;
pub mod presence;
pub mod registrar;
pub mod routing;
pub mod store;
pub mod transport;
pub mod web;
