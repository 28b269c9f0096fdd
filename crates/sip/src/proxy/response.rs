//! Response processing (RFC 3261 §16.7): removing our Via, where a response goes next
//! (§18.2.2, RFC 3581 §4), and choosing the best final response across the branches of one
//! request (§16.7 steps 5–7, §16.8, §16.9).

use std::sync::Arc;

use crate::header::HeaderName;
use crate::header::typed::{Via, parse_number};
use crate::message::{Request, Response};
use crate::method::Method;

use super::edit;
use super::local::{HopHost, HostKey, LocalIdentity, NextHop, Resolve, Transport};
use super::validate::Branch;

/// Where a response goes once this proxy's Via is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Another Via remains: send the response on toward it, through the server transaction of
    /// the request (which knows the connection) — `reply_to` says where a stateless element
    /// would send it. `branch` names the client transaction the response belongs to.
    Forward { branch: Branch, reply_to: ReplyTo },
    /// Our Via was the only one: the response answers a request this proxy originated (a
    /// CANCEL it generated) and goes no further (RFC 3261 §16.7 step 3).
    Local { branch: Branch },
}

/// Where to send a response, from the Via of the request it answers (RFC 3261 §18.2.2,
/// RFC 3581 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// A reliable transport (TCP, TLS, WS, WSS): back on the connection the request arrived on.
    /// If that connection is gone, a new one to `fallback` (for WebSocket clients there is no
    /// such fallback: the browser accepts no connections).
    Connection { fallback: NextHop },
    /// UDP: to this address — `received` with the `rport` value or the sent-by port, else the
    /// sent-by itself (resolved per RFC 3263 §5 when it is a name).
    Address(NextHop),
}

/// Why a response was dropped instead of forwarded (RFC 3261 §18.1.2: silently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// No Via at all.
    NoVia,
    /// A Via this proxy cannot read (or a transport it does not know).
    MalformedVia,
    /// The top Via was not written by this proxy: wrong sent-by or a branch that is not ours.
    NotOurs,
}

/// Removes this proxy's Via from a response (RFC 3261 §16.7 step 3) after checking that it is
/// ours — our sent-by and a branch in our format ([`Branch`]); anything else is dropped
/// (§18.1.2) — and says where the response goes next.
pub fn pop_via(response: &mut Response, local: &LocalIdentity) -> Result<Upstream, Dropped> {
    let branch = {
        let top = response.headers().top_via().map_err(|e| match e {
            crate::HeaderError::Missing(_) => Dropped::NoVia,
            crate::HeaderError::Malformed(_) => Dropped::MalformedVia,
        })?;
        if !local.is_my_sent_by(&top) {
            return Err(Dropped::NotOurs);
        }
        top.branch().and_then(Branch::parse).ok_or(Dropped::NotOurs)?
    };
    response.headers_mut().pop_first_value(HeaderName::Via);
    // The new top Via, decoded once and kept for whoever asks next.
    match response.headers().top_via() {
        Err(crate::HeaderError::Missing(_)) => Ok(Upstream::Local { branch }),
        Err(_) => Err(Dropped::MalformedVia),
        Ok(via) => {
            Ok(Upstream::Forward { branch, reply_to: reply_to(&via).ok_or(Dropped::MalformedVia)? })
        }
    }
}

/// Where responses to the request whose top Via is `via` go (RFC 3261 §18.2.2, RFC 3581 §4):
/// reliable transports answer on the request's connection; otherwise `maddr` (with the
/// sent-by port), else `received` with the `rport` value (or the sent-by port, or the
/// transport's default), else the sent-by. `None` for a transport lifeline does not know.
pub fn reply_to(via: &Via<'_>) -> Option<ReplyTo> {
    let transport = Transport::from_via(via.transport)?;
    let sent_by_port = via.port.unwrap_or(transport.default_port());
    let rport = via.rport().flatten();
    let hop = if let Some(maddr) = via.maddr() {
        hop_to(transport, HostKey::parse(maddr).ok()?, sent_by_port, true)
    } else if let Some(received) = via.received() {
        NextHop {
            transport,
            host: HopHost::Ip(received.to_canonical()),
            port: rport.unwrap_or(sent_by_port),
            resolve: Resolve::Nothing,
        }
    } else {
        let port = rport.or(via.port);
        hop_to(transport, HostKey::of(&via.host), port.unwrap_or(sent_by_port), port.is_some())
    };
    Some(if transport.is_reliable() {
        ReplyTo::Connection { fallback: hop }
    } else {
        ReplyTo::Address(hop)
    })
}

fn hop_to(transport: Transport, host: HostKey, port: u16, explicit_port: bool) -> NextHop {
    let (host, resolve) = match host {
        HostKey::Ip(ip) => (HopHost::Ip(ip), Resolve::Nothing),
        HostKey::Name(n) if explicit_port => (HopHost::Name(n), Resolve::Address),
        HostKey::Name(n) => (HopHost::Name(n), Resolve::Service),
    };
    NextHop { transport, host, port, resolve }
}

/// Whether a branch that ended with final status `status` should be retried on the next
/// target (failover, done by the edge), lifeline's policy:
///
/// - **408** and the synthetic 408 of a timeout (RFC 3261 §16.8): nobody answered.
/// - **5xx**, 503 included, with or without Retry-After: the server failed, not the request;
///   RFC 3263 §4.3 says to try the next server on a 503. Retry-After says how long *that*
///   server should be left alone (see [`retry_after`]), not that the request is hopeless.
///   A transport error counts as a 503 (§16.9).
/// - Never 3xx (the caller may recurse on the Contacts instead, §16.7 step 4), other 4xx (the
///   request itself is refused: 404, 486, 403...) or 6xx (a global answer: no other target may
///   be tried, §16.7 step 5).
pub fn may_try_next(status: u16) -> bool {
    status == 408 || (500..600).contains(&status)
}

/// The Retry-After delay of a response in seconds (RFC 3261 §20.33), for marking a failed
/// server as unavailable.
pub fn retry_after(response: &Response) -> Option<u32> {
    let raw = std::str::from_utf8(response.headers().get(HeaderName::RetryAfter)?).ok()?;
    let delta = raw.split(['(', ';']).next()?;
    parse_number(delta).ok()
}

/// What the caller does after feeding an event to a [`ResponseContext`].
#[derive(Debug, Default)]
pub struct Outcome {
    /// A response to send upstream on the server transaction now.
    pub forward: Option<Response>,
    /// Branches whose client transactions must be cancelled now ([`super::cancel_for`]): the
    /// pending ones, once a 2xx was forwarded (§16.7 step 10) or a 6xx arrived (§16.7 step 5).
    /// A branch without a provisional response yet ([`ResponseContext::has_provisional`]) gets
    /// its CANCEL only once one arrives (RFC 3261 §9.1).
    pub cancel: Vec<u32>,
    /// The final status this event ended a branch with (responses of 300 and above, timeouts as
    /// 408, transport errors as 503): with [`may_try_next`], the caller's failover decision.
    pub branch_ended: Option<u16>,
}

/// One per branch of a call. Small: a context lives as long as its call's transactions (32 s
/// after a 2xx), and a 2xx, the common answer, is forwarded at once and not kept.
#[derive(Debug)]
enum Slot {
    Pending { provisional: bool },
    Done(Final),
}

#[derive(Debug)]
struct Final {
    status: u16,
    /// `None` for a response the proxy made up for a branch (a timeout or a transport error)
    /// and for a 2xx (forwarded at once, never chosen again).
    response: Option<Box<Response>>,
}

/// The response context of one proxied request (RFC 3261 §16.7): the branches (client
/// transactions) forwarded for it and what they answered, and the choice of what goes back
/// upstream. Branches are numbered from 0 in the order they are added; the number is the fork
/// index of their [`Branch`].
///
/// - Provisional responses other than 100 and every 2xx are forwarded at once (§16.7 step 5;
///   for INVITE, 2xx keep being forwarded after a final response was sent).
/// - Other final responses are kept. When the context is closed (no more targets: [`close`],
///   or a 6xx arrived) and no branch is pending, the best one is sent (§16.7 step 6):
///   - any 6xx (the lowest code);
///   - else the lowest class; in 4xx, 401, 407, 415, 420, 484 first (they let the client
///     resubmit, §16.7 step 6), then the lowest code, 408 last; in 5xx the lowest code, 503
///     last; in 3xx the lowest code;
///   - a chosen 503 goes up as 500 (§16.7 step 6: a 503 would say this proxy is unavailable);
///   - a chosen 401 or 407 gets every WWW-Authenticate and Proxy-Authenticate of all other
///     401 and 407 responses (§16.7 step 7);
///   - no final response at all, or only timeouts: 408 (§16.7 step 6, §16.8).
///
///   Responses the proxy makes up (408, 500) are built from the request with the To tag
///   derived by the function given to [`ResponseContext::new`].
/// - Non-INVITE requests follow RFC 4320 §4: no provisional response other than 100 goes up,
///   and no 408 either — when 408 would be chosen, nothing is sent and the client's own
///   transaction times out.
/// - Serial failover: a branch ending while the context is open sends nothing; the caller looks
///   at [`Outcome::branch_ended`] and either adds a branch for the next target or closes.
///
/// [`close`]: ResponseContext::close
#[derive(Debug)]
pub struct ResponseContext {
    /// The request as received, for the responses the proxy makes up; let go of (with the
    /// kept final responses) once the final response is chosen: the context outlives it by
    /// the 32 s an INVITE's 2xx may be retransmitted. Shared with the caller, who usually
    /// keeps the request too (to fork it), so that it is not copied.
    request: Option<Arc<Request>>,
    /// Derives the To tag of a response the proxy makes up from the request; called only when
    /// one is made (most calls never need it).
    to_tag: fn(&Request) -> String,
    invite: bool,
    branches: Vec<Slot>,
    /// No branch may be added any more.
    closed: bool,
    /// The pending branches were handed out for cancelling (6xx, 2xx, CANCEL received): later
    /// events do not list them again.
    cancelling: bool,
    /// The server transaction has its final response (or, RFC 4320, will get none).
    done: bool,
    /// A 6xx does not end the search ([`ResponseContext::try_every_target`]).
    try_all: bool,
}

impl ResponseContext {
    /// A context for `request` as received (its Vias are the ones the responses go back to).
    /// `to_tag` gives the tag for responses the proxy makes up itself (the same for every
    /// retransmission of the request: RFC 3261 §8.2.6.2).
    pub fn new(request: Arc<Request>, to_tag: fn(&Request) -> String) -> ResponseContext {
        ResponseContext {
            invite: *request.method() == Method::Invite,
            request: Some(request),
            to_tag,
            branches: Vec::new(),
            closed: false,
            cancelling: false,
            done: false,
            try_all: false,
        }
    }

    /// Every target gets its chance: a 6xx from one branch neither closes the context nor
    /// cancels the others, and the caller may go on with the next target. This departs from
    /// RFC 3261 §16.7 step 5 on purpose, for emergency calls: a trunk that declines a 911 call
    /// globally must not keep the next trunk from taking it. The best response is still chosen
    /// as usual when the context closes (a 6xx first).
    pub fn try_every_target(&mut self) {
        self.try_all = true;
    }

    /// Opens a branch and returns its fork index (for [`super::Admitted::branch`] and
    /// [`super::Prepared::finish`]). `None` once no branch may be added: after [`close`], a
    /// 6xx (§16.7 step 5) or a final response sent upstream.
    ///
    /// [`close`]: ResponseContext::close
    pub fn add_branch(&mut self) -> Option<u32> {
        if self.closed || self.done {
            return None;
        }
        let index = u32::try_from(self.branches.len()).ok()?;
        self.branches.push(Slot::Pending { provisional: false });
        Some(index)
    }

    /// No more targets: from now on the best response goes upstream as soon as no branch is
    /// pending — at once if none is.
    pub fn close(&mut self) -> Outcome {
        self.closed = true;
        Outcome { forward: self.finish_if_done(), ..Outcome::default() }
    }

    /// The caller received a CANCEL for the request, or gave up on it (RFC 3261 §16.10): the
    /// context closes and returns the pending branches to cancel. Their 487s then complete it.
    pub fn cancel(&mut self) -> Vec<u32> {
        self.closed = true;
        self.take_pending_for_cancel(None)
    }

    /// The branches still waiting for a final response.
    pub fn pending(&self) -> Vec<u32> {
        self.branches
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Pending { .. }))
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect()
    }

    /// Whether branch `index` is pending and has had a provisional response: a CANCEL may only
    /// be sent then (RFC 3261 §9.1).
    pub fn has_provisional(&self, index: u32) -> bool {
        matches!(self.slot(index), Some(Slot::Pending { provisional: true }))
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the server transaction got its final response (or, for a non-INVITE that only
    /// timed out, will get none: RFC 4320).
    pub fn final_sent(&self) -> bool {
        self.done
    }

    /// A response arrived on branch `index` (after [`super::pop_via`]: `branch.index()`).
    pub fn on_response(&mut self, index: u32, response: Response) -> Outcome {
        let status = response.status();
        let (invite, done) = (self.invite, self.done);
        let Some(slot) = self.slot_mut(index) else {
            return Outcome::default();
        };
        match status {
            // Not a status a peer can send (the parser accepts 100..=699 only).
            0..=99 | 700.. => Outcome::default(),
            // §16.7 step 5: a stateful proxy never forwards 100.
            100 => Outcome::default(),
            101..=199 => match slot {
                Slot::Pending { provisional } => {
                    *provisional = true;
                    // RFC 4320 §4.1: no provisional but 100 to a non-INVITE.
                    Outcome { forward: (invite && !done).then_some(response), ..Outcome::default() }
                }
                Slot::Done(_) => Outcome::default(),
            },
            200..=299 => {
                *slot = Slot::Done(Final { status, response: None });
                if done {
                    // Further 2xx to an INVITE (other forks answered too) go up as well;
                    // the UAC acknowledges and hangs them up.
                    return Outcome { forward: invite.then_some(response), ..Outcome::default() };
                }
                self.done = true;
                self.closed = true;
                self.shed();
                Outcome {
                    forward: Some(response),
                    cancel: self.take_pending_for_cancel(None),
                    branch_ended: None,
                }
            }
            _ => {
                if !matches!(slot, Slot::Pending { .. }) {
                    return Outcome::default();
                }
                *slot = Slot::Done(Final { status, response: Some(Box::new(response)) });
                self.ended(index, status)
            }
        }
    }

    /// Branch `index` timed out without a final response (Timer B/F, or Timer C without a
    /// provisional response): it counts as a 408 (RFC 3261 §16.8).
    pub fn on_timeout(&mut self, index: u32) -> Outcome {
        self.synthetic(index, 408)
    }

    /// The request could not be sent on branch `index`: it counts as a 503 (RFC 3261 §16.9).
    pub fn on_transport_error(&mut self, index: u32) -> Outcome {
        self.synthetic(index, 503)
    }

    fn slot(&self, index: u32) -> Option<&Slot> {
        self.branches.get(usize::try_from(index).ok()?)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot> {
        self.branches.get_mut(usize::try_from(index).ok()?)
    }

    fn synthetic(&mut self, index: u32, status: u16) -> Outcome {
        match self.slot_mut(index) {
            Some(slot @ Slot::Pending { .. }) => {
                *slot = Slot::Done(Final { status, response: None });
                self.ended(index, status)
            }
            _ => Outcome::default(),
        }
    }

    fn ended(&mut self, index: u32, status: u16) -> Outcome {
        let mut out = Outcome { branch_ended: Some(status), ..Outcome::default() };
        if self.done {
            return out;
        }
        if status >= 600 && !self.try_all {
            self.closed = true;
            out.cancel = self.take_pending_for_cancel(Some(index));
        }
        out.forward = self.finish_if_done();
        out
    }

    /// The pending branches (but `except`), once: later calls return nothing.
    fn take_pending_for_cancel(&mut self, except: Option<u32>) -> Vec<u32> {
        if std::mem::replace(&mut self.cancelling, true) {
            return Vec::new();
        }
        self.pending().into_iter().filter(|i| Some(*i) != except).collect()
    }

    fn finish_if_done(&mut self) -> Option<Response> {
        if self.done || !self.closed || !self.pending().is_empty() {
            return None;
        }
        self.done = true;
        let best = self.request.as_ref().map(|request| self.best(request));
        self.shed();
        // RFC 4320 §4.2: never a 408 to a non-INVITE request.
        best.filter(|best| self.invite || best.status() != 408)
    }

    /// Lets go of what only choosing the final response needed.
    fn shed(&mut self) {
        self.request = None;
        for slot in &mut self.branches {
            if let Slot::Done(f) = slot {
                f.response = None;
            }
        }
    }

    /// The best final response of the context (RFC 3261 §16.7 steps 6 and 7; see the type
    /// docs), for `request`.
    fn best(&self, request: &Request) -> Response {
        let finals: Vec<&Final> = self
            .branches
            .iter()
            .filter_map(|s| match s {
                Slot::Done(f) if f.status >= 300 => Some(f),
                _ => None,
            })
            .collect();
        let Some(chosen) = finals.iter().min_by_key(|f| rank(f.status)) else {
            return self.generated(request, 408, "Request Timeout");
        };
        let response = match (&chosen.response, chosen.status) {
            (_, 503) => return self.generated(request, 500, "Server Internal Error"),
            (None, 408) => return self.generated(request, 408, "Request Timeout"),
            (None, status) => return self.generated(request, status, "Server Internal Error"),
            (Some(r), _) => r,
        };
        let mut response = Response::clone(response);
        if matches!(chosen.status, 401 | 407) {
            let challenges = [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate];
            for other in &finals {
                if std::ptr::eq(*other, *chosen) || !matches!(other.status, 401 | 407) {
                    continue;
                }
                let Some(r) = &other.response else { continue };
                for (name, _, value) in r.headers().iter() {
                    if challenges.contains(&name) {
                        edit::insert_after_last(
                            response.headers_mut(),
                            &challenges,
                            name,
                            bytes::Bytes::copy_from_slice(value),
                        );
                    }
                }
            }
        }
        response
    }

    fn generated(&self, request: &Request, status: u16, reason: &str) -> Response {
        let mut r = Response::for_request(request, status, reason);
        r.set_to_tag(&(self.to_tag)(request));
        r
    }
}

/// Orders final responses for §16.7 step 6: smaller is better. 6xx before everything; then by
/// class; inside a class the preferred codes, then the lowest code, with 408 and 503 last.
fn rank(status: u16) -> (u8, u16, u16) {
    let class = if status >= 600 { 0 } else { u8::try_from(status / 100).unwrap_or(9) };
    let preference = match status {
        401 => 0,
        407 => 1,
        415 => 2,
        420 => 3,
        484 => 4,
        408 | 503 => 20,
        _ => 10,
    };
    (class, preference, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking() {
        let mut codes = [503, 486, 408, 401, 404, 500, 302, 603, 407, 480];
        codes.sort_by_key(|c| rank(*c));
        assert_eq!(codes, [603, 302, 401, 407, 404, 480, 486, 408, 500, 503]);
    }

    #[test]
    fn failover_policy() {
        for s in [408, 500, 502, 503, 504, 580] {
            assert!(may_try_next(s), "{s}");
        }
        for s in [200, 302, 403, 404, 480, 486, 487, 600, 603] {
            assert!(!may_try_next(s), "{s}");
        }
    }
}
