//! lifeline: a carrier-facing SIP edge for contact-centre browser softphones, built around
//! emergency calls made by agents.
//!
//! # Layout
//!
//! - [`cli`]: `lifeline run|check|version`, argument parsing and exit codes.
//!
//! The SIP protocol itself (codec, framing, transactions, proxy rules, digest) lives in the
//! sans-IO crate `sip` (`crates/sip`); this crate is the only place with sockets and clocks.
//! `../shared/DESIGN.md` has the full architecture.

pub mod cli;
