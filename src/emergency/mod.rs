//! Emergency calls made by agents (DESIGN.md; issue 6).
//!
//! - [`notify`]: the emergency-call notification e-mail: its data, the editable template, and
//!   queueing it in the store's outbox.

pub mod notify;
