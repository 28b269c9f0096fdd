//! Emergency calls made by agents (DESIGN.md; issue 6): what makes a call an emergency call,
//! which trunks it is offered to and in what order, and what the dialplan check warns about.
//!
//! - [`dialstring`]: recognising an emergency dialstring (per location country, with outside-line
//!   prefixes) or an RFC 5031 `urn:service:sos` URI. This runs before authentication and
//!   before the dialplan's routes: no dialplan file can shadow it.
//! - [`trunks`]: the trunk candidates for a recognised call (explicit direct-routing route,
//!   then direct-offer trunks with the caller-ID owner first, then catch-all direct-routing
//!   routes), the ambiguity rule for emergency routes, and the warnings `lifeline check`
//!   prints.
//!
//! - [`notify`]: the emergency-call notification e-mail: its data, the editable template, and
//!   queueing it in the store's outbox.
//! - [`mailer`]: the worker that delivers the outbox through the site's SMTP relay.
//!
//! The edge's side of the call (callback lease, headers toward the trunk, failover timer,
//! PSAP callback routing) is in `crate::core::emergency`.

pub mod dialstring;
pub mod mailer;
pub mod notify;
pub mod trunks;

pub use dialstring::{Recognised, recognise};
pub use trunks::{Candidate, Why, candidates, check_ambiguity, warnings};
