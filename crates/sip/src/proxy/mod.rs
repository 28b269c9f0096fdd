//! The rules of a stateful proxy (RFC 3261 §16) as pure functions over messages.
//!
//! Nothing here sends, waits or keeps transactions: the edge's driver runs the transaction
//! layer and calls these rules at the points RFC 3261 §16 names, in this order.
//!
//! # A request
//!
//! ```text
//! fix_top_via(&mut req, source)            §18.2.1, RFC 3581: received / rport
//! validate(&req, &local)?                  §16.3: scheme, Max-Forwards, loops, Proxy-Require
//!   -> Verdict::AnswerOptions              (Max-Forwards 0 on an OPTIONS to us: answer it)
//!   -> Verdict::Forward(admitted)
//! preprocess_routes(&mut req, &local)?     §16.4: strict-router fix-up, pop our Route(s)
//! (targets: registrar, dialplan — §16.5, the edge's)
//! ctx = ResponseContext::new(Arc::clone(&req), tag_of)   §16.7 (req in an Arc from here on)
//! for each target:
//!   fork = ctx.add_branch()
//!   prepared = prepare(&req, &admitted, Some(target))?      §16.6 steps 1-3, 6, 7, 9
//!   out = local.outbound_for(prepared.next_hop())           (or the flow to use)
//!   copy = prepared.finish(out, fork, Some(&RecordRoute { inbound, params }))   steps 4, 8
//! ```
//!
//! Any [`Reject`] becomes the response with [`Reject::response`]. An ACK for a 2xx and every
//! in-dialog request take the same path with no target (`None`: the Request-URI and the Route
//! set decide) and no Record-Route; the ACK's own top Via gives it its own branch.
//!
//! # A response
//!
//! ```text
//! pop_via(&mut resp, &local)?              §16.7 step 3 (a foreign top Via: drop, §18.1.2)
//!   -> Upstream::Forward { branch, .. }    ctx.on_response(branch.index(), resp)
//!   -> Upstream::Local { .. }              the answer to a CANCEL we sent: absorb
//! Outcome { forward, cancel, branch_ended }
//!   forward: send on the server transaction; cancel: cancel_for(copy of that branch, reason)
//!   branch_ended + may_try_next(status): failover to the next target, or ctx.close()
//! ```
//!
//! Non-INVITE requests follow RFC 4320 §4 (no 408, no provisional but 100 upstream).
//! Timeouts and transport errors of a branch are [`ResponseContext::on_timeout`] (408, §16.8)
//! and [`ResponseContext::on_transport_error`] (503, §16.9). A CANCEL received for the request
//! is answered 200 by the caller (§16.10) and [`ResponseContext::cancel`] lists the branches to
//! cancel with [`cancel_for`].
//!
//! # Modules
//!
//! - `local`: [`LocalIdentity`], [`ListenAddr`], [`Transport`], [`NextHop`] (RFC 3263 §4).
//! - `validate`: [`validate`], [`Branch`] and its loop hash, [`fix_top_via`].
//! - `route`: [`preprocess_routes`].
//! - `forward`: [`prepare`], [`Prepared::finish`], [`cancel_for`].
//! - `response`: [`pop_via`], [`reply_to`], [`ResponseContext`], [`may_try_next`].
//! - `edit`: in-place edits of one element of a header (the top Via, the last Route) that
//!   keep every other header byte for byte; they use the header table's crate-private fields.

mod edit;
mod forward;
mod local;
mod response;
mod route;
mod validate;

use std::borrow::Cow;
use std::fmt;

use crate::header::HeaderName;
use crate::message::{Request, Response};
use crate::method::Method;

pub use forward::{Prepared, RecordRoute, cancel_branch, cancel_for, prepare};
pub use local::{HopHost, ListenAddr, LocalIdentity, NextHop, Resolve, Transport};
pub use response::{
    Dropped, Outcome, ReplyTo, ResponseContext, Upstream, may_try_next, pop_via, reply_to,
    retry_after,
};
pub use route::{Preprocessed, preprocess_routes};
pub use validate::{
    Admitted, BRANCH_PREFIX, Branch, DEFAULT_MAX_FORWARDS, Verdict, fix_top_via, validate,
};

/// Why the proxy refuses a request, with the response it answers. Every variant is the
/// request's fault: another target would not help.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reject {
    /// A Request-URI scheme the proxy does not route (RFC 3261 §16.3 step 2): 416.
    UnsupportedUriScheme,
    /// A Request-URI or target that is not a valid URI: 400.
    BadRequestUri,
    /// Max-Forwards reached 0 (RFC 3261 §16.3 step 3): 483.
    TooManyHops,
    /// The request came back unchanged through this proxy (RFC 3261 §16.3 step 4): 482.
    LoopDetected,
    /// Proxy-Require options this proxy does not implement (RFC 3261 §16.3 step 5): 420 with
    /// them in Unsupported.
    BadExtension(Vec<String>),
    /// A header the proxy rules read is malformed (Via, Route, Max-Forwards...): 400 `Bad <name>`.
    Malformed(HeaderName),
    /// A Route or target asks for a transport lifeline does not speak, or for `sips:` over
    /// UDP (RFC 3263 §4.1): 400.
    UnsupportedTransport,
}

impl Reject {
    pub fn status(&self) -> u16 {
        match self {
            Reject::UnsupportedUriScheme => 416,
            Reject::TooManyHops => 483,
            Reject::LoopDetected => 482,
            Reject::BadExtension(_) => 420,
            Reject::BadRequestUri | Reject::Malformed(_) | Reject::UnsupportedTransport => 400,
        }
    }

    pub fn reason(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Reject::UnsupportedUriScheme => "Unsupported URI Scheme",
            Reject::BadRequestUri => "Bad Request-URI",
            Reject::TooManyHops => "Too Many Hops",
            Reject::LoopDetected => "Loop Detected",
            Reject::BadExtension(_) => "Bad Extension",
            Reject::Malformed(name) => return Cow::Owned(format!("Bad {name}")),
            Reject::UnsupportedTransport => "Unsupported Transport",
        })
    }

    /// The response to `request` (RFC 3261 §8.2.6) with the given To tag, and Unsupported for
    /// a 420. `None` for an ACK, which is never answered (§17.2.3).
    pub fn response(&self, request: &Request, to_tag: &str) -> Option<Response> {
        if *request.method() == Method::Ack {
            return None;
        }
        let mut r = Response::for_request(request, self.status(), &self.reason());
        r.set_to_tag(to_tag);
        if let Reject::BadExtension(tags) = self {
            edit::insert_after_last(r.headers_mut(), &[], HeaderName::Unsupported, tags.join(", "));
        }
        Some(r)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for Reject {}
