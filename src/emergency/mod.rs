//! Emergency calls made by agents (DESIGN.md; issue 6).
//!
//! - [`notify`]: the emergency-call notification e-mail: its data, the editable template, and
//!   queueing it in the store's outbox.
//! - [`mailer`]: the worker that delivers the outbox through the site's SMTP relay.

pub mod mailer;
pub mod notify;
