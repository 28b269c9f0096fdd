//! The edge as presence server: the pure rules and tables behind SUBSCRIBE, NOTIFY and
//! PUBLISH for the `presence` event package (RFC 3856, RFC 6665, RFC 3903). No I/O and no
//! clock: the core (`core::presence`) passes `now` in and sends what these build.
//!
//! # Subscriptions (RFC 3856, RFC 6665)
//!
//! An authenticated agent may watch any agent of the edge, itself included (colleagues in a
//! contact centre see each other; there is no per-watcher policy). Each accepted SUBSCRIBE
//! creates a dialog (RFC 6665 §4.1.2.1; the edge is the notifier and the UAS, RFC 3261
//! §12.1.1): our To-tag, the subscriber's Contact as remote target, its Record-Route as
//! route set, our own CSeq for NOTIFYs. A [`Subscription`] holds all of it, and where its
//! NOTIFYs go ([`notify_peer`]): the connection the SUBSCRIBE came over on connection
//! transports (a browser's `*.invalid` Contact can be reached no other way, like the
//! registrar's bindings, RFC 5626), otherwise the route set or the Contact, and the source
//! address as a last resort.
//!
//! - Expires: absent means [`DEFAULT_EXPIRES`] (RFC 3856 §6.4); below [`MIN_EXPIRES`] (and not
//!   0) is `423` with `Min-Expires`; above [`MAX_EXPIRES`] is cut to it. `0` unsubscribes (or
//!   fetches once): `200`, then a final NOTIFY with `Subscription-State: terminated`.
//! - One NOTIFY at a time per subscription: a change while one is in flight is sent when it
//!   is answered, with the state then ([`Subscription::dirty`]).
//! - A subscription ends when it expires (final NOTIFY `terminated;reason=timeout`), when
//!   its agent is deleted (`terminated;reason=noresource`), when a NOTIFY fails (any final
//!   response other than 2xx, a timeout or a transport error: RFC 6665 §4.2.2 lets the
//!   notifier remove it; the subscriber subscribes again), and when the connection it came
//!   over closes (no NOTIFY can reach it).
//!
//! # Publications (RFC 3903)
//!
//! An agent publishes only its own presence (another agent's AOR: `403`). Each accepted
//! PUBLISH gets a fresh entity-tag (`SIP-ETag`) and an expiry; `SIP-If-Match` names the
//! publication a refresh, modification or removal applies to (unknown or expired: `412`).
//!
//! - The state a publication carries is written through the same path as the admin API's
//!   `PUT .../presence` (`PresenceBook::set_by_agent`), so the emergency rules hold: a state
//!   the agent publishes during an emergency call is the agent's manual change, and it wins
//!   over the restore at the end of the call.
//! - A modification that carries the same state as the publication already did is a refresh
//!   with a body (some clients send the whole document each time): it writes nothing, so a
//!   periodic re-publication cannot undo a DND the edge forced or a state set through the
//!   admin API since.
//! - **An expired or removed publication leaves the presence as it was last set**: presence
//!   is the agent's working state, kept in the store, not a soft state of the softphone.
//!   Going offline is a state like any other (publish `closed`, or the admin API).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::header::typed::{MediaType, NameAddr, parse_number};
use sip::proxy::{HopHost, NextHop};
use sip::transaction::{ClientKey, FlowId, Peer};
use sip::{HeaderName, Method, Request, Uri};

use crate::store::PresenceState;

/// The only event package the edge serves.
pub const EVENT: &str = "presence";

/// Expires of a SUBSCRIBE or PUBLISH without one (RFC 3856 §6.4; RFC 3903 §1 leaves it to
/// the package, presence uses an hour).
pub const DEFAULT_EXPIRES: u32 = 3600;

/// Shortest subscription or publication accepted (seconds); shorter ones get `423`.
pub const MIN_EXPIRES: u32 = 60;

/// Longest subscription or publication granted (seconds); longer ones are cut to this.
pub const MAX_EXPIRES: u32 = 3600;

/// Most live subscriptions the edge keeps; more get `503` (a bound on memory, not a policy).
pub const MAX_SUBSCRIPTIONS: usize = 50_000;

/// Most live publications the edge keeps; more get `503`.
pub const MAX_PUBLICATIONS: usize = 50_000;

// ---------------------------------------------------------------------------------------------
// Request checks

/// Why a presence request is refused, and the answer it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `489 Bad Event` with `Allow-Events: presence` (RFC 6665 §8.3.1).
    BadEvent,
    /// `406 Not Acceptable` with `Accept: application/pidf+xml`: a SUBSCRIBE whose Accept
    /// excludes PIDF (RFC 3856 §6.7).
    NotAcceptable,
    /// `415 Unsupported Media Type` with `Accept: application/pidf+xml`: a PUBLISH body
    /// that is not PIDF.
    UnsupportedMediaType,
    /// `423 Interval Too Brief` with `Min-Expires` (RFC 6665 §4.2.1.1, RFC 3903 §6).
    IntervalTooBrief,
    /// `400` with this reason.
    Bad(&'static str),
}

impl Refusal {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::BadEvent => (489, "Bad Event"),
            Refusal::NotAcceptable => (406, "Not Acceptable"),
            Refusal::UnsupportedMediaType => (415, "Unsupported Media Type"),
            Refusal::IntervalTooBrief => (423, "Interval Too Brief"),
            Refusal::Bad(reason) => (400, reason),
        }
    }

    /// The headers that go with the status.
    pub fn headers(&self) -> Vec<(HeaderName, String)> {
        match self {
            Refusal::BadEvent => vec![(HeaderName::AllowEvents, EVENT.to_owned())],
            Refusal::NotAcceptable | Refusal::UnsupportedMediaType => {
                vec![(HeaderName::Accept, super::pidf::CONTENT_TYPE.to_owned())]
            }
            Refusal::IntervalTooBrief => vec![(HeaderName::MinExpires, MIN_EXPIRES.to_string())],
            Refusal::Bad(_) => Vec::new(),
        }
    }
}

/// The `Event` header of a presence request, as received (with its `id` parameter, which
/// NOTIFYs echo, RFC 6665 §8.2.1); `489` for any other package or none.
pub fn event(req: &Request) -> Result<String, Refusal> {
    let raw = req.headers().get(HeaderName::Event).ok_or(Refusal::BadEvent)?;
    let text = std::str::from_utf8(raw).map_err(|_| Refusal::BadEvent)?.trim();
    let package = text.split(';').next().unwrap_or("").trim();
    if package.eq_ignore_ascii_case(EVENT) { Ok(text.to_owned()) } else { Err(Refusal::BadEvent) }
}

/// Whether a SUBSCRIBE's `Accept` allows PIDF (no Accept means PIDF, RFC 3856 §6.7).
pub fn accepts_pidf(req: &Request) -> bool {
    let mut any = false;
    for value in req.headers().get_all(HeaderName::Accept) {
        let Ok(text) = std::str::from_utf8(value) else { continue };
        for item in sip::header::typed::tokens(text) {
            any = true;
            if let Ok(mt) = MediaType::parse(item)
                && (mt.is("application", "pidf+xml")
                    || mt.is("application", "*")
                    || mt.is("*", "*"))
            {
                return true;
            }
        }
    }
    !any
}

/// The interval a request asks for, bounded (module docs): `Ok(0)` for 0.
pub fn expires(req: &Request) -> Result<u32, Refusal> {
    let asked = match req.headers().get(HeaderName::Expires) {
        None => DEFAULT_EXPIRES,
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|t| parse_number(t).ok())
            .ok_or(Refusal::Bad("Bad Expires"))?,
    };
    match asked {
        0 => Ok(0),
        n if n < MIN_EXPIRES => Err(Refusal::IntervalTooBrief),
        n => Ok(n.min(MAX_EXPIRES)),
    }
}

/// The user part of a SIP Request-URI (the agent a request is about).
pub fn target_user(req: &Request) -> Option<String> {
    match req.uri().ok()? {
        Uri::Sip(u) => u.user_decoded().and_then(|d| String::from_utf8(d.into_owned()).ok()),
        _ => None,
    }
}

/// A PUBLISH body's state: `None` without a body; `415` for another type; `400` with the
/// reader's reason for a bad document.
pub fn published_state(req: &Request) -> Result<Option<PresenceState>, Refusal> {
    if req.body().is_empty() {
        return Ok(None);
    }
    match req.headers().content_type() {
        Ok(Some(ct)) if ct.is("application", "pidf+xml") => {}
        Ok(_) => return Err(Refusal::UnsupportedMediaType),
        Err(_) => return Err(Refusal::Bad("Bad Content-Type")),
    }
    super::pidf::parse(req.body()).map(Some).map_err(|e| Refusal::Bad(e.reason()))
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

/// A subscription's number in the [`Subscriptions`] table.
pub type SubId = u64;

/// One subscription: a dialog where the edge is the notifier.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The agent watched.
    pub agent: String,
    /// The presentity URI written as the PIDF `entity` (`sip:agent@domain`).
    pub entity: String,
    pub call_id: String,
    /// Our tag (the To tag of our 200, the From tag of our NOTIFYs).
    pub local_tag: String,
    /// The subscriber's From tag.
    pub remote_tag: String,
    /// The SUBSCRIBE's To, without a tag: the From of our NOTIFYs (with `local_tag`).
    pub local_uri: String,
    /// The SUBSCRIBE's From, with its tag: the To of our NOTIFYs.
    pub remote_uri: String,
    /// The subscriber's Contact URI: the Request-URI of our NOTIFYs.
    pub remote_target: String,
    /// The SUBSCRIBE's Record-Route values, in order: the Route of our NOTIFYs.
    pub route_set: Vec<String>,
    /// The Event header as received.
    pub event: String,
    /// Our Contact (`<sip:host:port;transport=...>`).
    pub contact: String,
    /// The last CSeq of ours, and the highest of the subscriber's.
    pub local_cseq: u32,
    pub remote_cseq: u32,
    pub expires_at: Instant,
    /// Where NOTIFYs go.
    pub peer: Peer,
    /// The NOTIFY waiting for its answer.
    pub in_flight: Option<ClientKey>,
    /// The state changed while a NOTIFY was in flight: send again once it is answered.
    pub dirty: bool,
    /// The state the last NOTIFY carried.
    pub last_sent: Option<PresenceState>,
}

impl Subscription {
    /// Seconds left at `now` (at least 1 while live: `expires=0` would read as terminated).
    pub fn remaining(&self, now: Instant) -> u64 {
        self.expires_at.saturating_duration_since(now).as_secs().max(1)
    }
}

/// What a NOTIFY says about the subscription (RFC 6665 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    Active,
    /// Ended by the edge with this reason (`timeout`, `noresource`), or by the subscriber
    /// (`None`: unsubscribed or a fetch).
    Terminated(Option<&'static str>),
}

/// The live subscriptions, indexed by dialog, agent, expiry, flow and NOTIFY in flight.
#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: HashMap<SubId, Subscription>,
    next_id: SubId,
    /// (Call-ID, remote tag, local tag) -> subscription.
    by_dialog: HashMap<(String, String, String), SubId>,
    by_agent: HashMap<String, Vec<SubId>>,
    expiry: BTreeSet<(Instant, SubId)>,
    /// The NOTIFY client transactions in flight.
    by_client: HashMap<ClientKey, SubId>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Adds a subscription; its id.
    pub fn insert(&mut self, sub: Subscription) -> SubId {
        self.next_id += 1;
        let id = self.next_id;
        self.by_dialog
            .insert((sub.call_id.clone(), sub.remote_tag.clone(), sub.local_tag.clone()), id);
        self.by_agent.entry(sub.agent.clone()).or_default().push(id);
        self.expiry.insert((sub.expires_at, id));
        self.subs.insert(id, sub);
        id
    }

    pub fn get(&self, id: SubId) -> Option<&Subscription> {
        self.subs.get(&id)
    }

    pub fn get_mut(&mut self, id: SubId) -> Option<&mut Subscription> {
        self.subs.get_mut(&id)
    }

    /// The subscription of an in-dialog request: its Call-ID, From tag and To tag.
    pub fn find_dialog(&self, call_id: &str, remote_tag: &str, local_tag: &str) -> Option<SubId> {
        self.by_dialog
            .get(&(call_id.to_owned(), remote_tag.to_owned(), local_tag.to_owned()))
            .copied()
    }

    /// The subscriptions watching `agent`.
    pub fn of_agent(&self, agent: &str) -> Vec<SubId> {
        self.by_agent.get(agent).cloned().unwrap_or_default()
    }

    /// A refresh: the new expiry.
    pub fn set_expiry(&mut self, id: SubId, at: Instant) {
        if let Some(sub) = self.subs.get_mut(&id) {
            self.expiry.remove(&(sub.expires_at, id));
            sub.expires_at = at;
            self.expiry.insert((at, id));
        }
    }

    /// Removes a subscription (and forgets its NOTIFY in flight: a late answer is ignored).
    pub fn remove(&mut self, id: SubId) -> Option<Subscription> {
        let sub = self.subs.remove(&id)?;
        self.by_dialog.remove(&(
            sub.call_id.clone(),
            sub.remote_tag.clone(),
            sub.local_tag.clone(),
        ));
        if let Some(list) = self.by_agent.get_mut(&sub.agent) {
            list.retain(|s| *s != id);
            if list.is_empty() {
                self.by_agent.remove(&sub.agent);
            }
        }
        self.expiry.remove(&(sub.expires_at, id));
        if let Some(k) = sub.in_flight {
            self.by_client.remove(&k);
        }
        Some(sub)
    }

    /// The earliest expiry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// The subscriptions expired at `now`.
    pub fn due(&self, now: Instant) -> Vec<SubId> {
        self.expiry.iter().take_while(|(t, _)| *t <= now).map(|(_, id)| *id).collect()
    }

    /// Removes every subscription whose NOTIFYs go over `flow`; how many went.
    pub fn remove_flow(&mut self, flow: FlowId) -> usize {
        let gone: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.peer.flow == Some(flow))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.remove(*id);
        }
        gone.len()
    }

    /// A NOTIFY of subscription `id` left as client transaction `key`.
    pub fn sent(&mut self, id: SubId, key: ClientKey) {
        if let Some(sub) = self.subs.get_mut(&id) {
            sub.in_flight = Some(key);
            sub.dirty = false;
            self.by_client.insert(key, id);
        }
    }

    /// Whether `key` is a NOTIFY of ours (in flight, or of a subscription since removed: the
    /// caller then ignores it).
    pub fn owns(&self, key: ClientKey) -> bool {
        self.by_client.contains_key(&key)
    }

    /// The NOTIFY `key` got its final answer (or failed): its subscription, no longer waiting.
    pub fn answered(&mut self, key: ClientKey) -> Option<SubId> {
        let id = self.by_client.remove(&key)?;
        if let Some(sub) = self.subs.get_mut(&id) {
            sub.in_flight = None;
        }
        Some(id)
    }
}

/// Where the NOTIFYs of a subscription go (module docs): the SUBSCRIBE's connection on
/// connection transports; on UDP a `*.invalid` or `ob` Contact (RFC 5626) is reached at the
/// source address, otherwise the first route or the Contact when it is an IP address, else
/// the source address.
pub fn notify_peer(from: Peer, remote_target: &str, route_set: &[String]) -> Peer {
    if from.transport.is_reliable() && from.flow.is_some() {
        return from;
    }
    let first_route = route_set.first().and_then(|r| {
        NameAddr::parse(r).ok().and_then(|n| match n.uri {
            Uri::Sip(u) => NextHop::for_uri(&u).ok(),
            _ => None,
        })
    });
    let contact = match Uri::parse(remote_target) {
        Ok(Uri::Sip(u)) => {
            let invalid = u.host_raw.to_ascii_lowercase().ends_with(".invalid");
            if invalid || u.params.contains("ob") { None } else { NextHop::for_uri(&u).ok() }
        }
        _ => None,
    };
    let hop = if route_set.is_empty() { contact } else { first_route };
    match hop {
        Some(NextHop { transport, host: HopHost::Ip(ip), port, .. }) => {
            let addr = std::net::SocketAddr::new(ip, port);
            if transport == sip::transaction::Transport::Udp {
                Peer::udp(addr)
            } else {
                Peer::stream(transport, addr, None)
            }
        }
        _ => from,
    }
}

/// The NOTIFY for `sub` (its CSeq already advanced), with a PIDF body of `state` (none on a
/// terminated subscription without a state), sent from the listen address `via` (`host:port`)
/// over `transport` with `branch`.
pub fn notify_request(
    sub: &Subscription,
    state: Option<&PresenceState>,
    sub_state: SubState,
    now: Instant,
    via: (&str, &str),
    branch: &str,
) -> Result<Request, sip::uri::UriError> {
    let mut req = Request::new(Method::Notify, &sub.remote_target)?;
    let (transport, sent_by) = via;
    let h = req.headers_mut();
    h.push(HeaderName::Via, format!("SIP/2.0/{transport} {sent_by};branch={branch}"));
    h.push(HeaderName::MaxForwards, "70");
    for route in &sub.route_set {
        h.push(HeaderName::Route, route.clone());
    }
    h.push(HeaderName::From, format!("{};tag={}", sub.local_uri, sub.local_tag));
    h.push(HeaderName::To, sub.remote_uri.clone());
    h.push(HeaderName::CallId, sub.call_id.clone());
    h.push(HeaderName::CSeq, format!("{} NOTIFY", sub.local_cseq));
    h.push(HeaderName::Contact, sub.contact.clone());
    h.push(HeaderName::Event, sub.event.clone());
    let value = match sub_state {
        SubState::Active => format!("active;expires={}", sub.remaining(now)),
        SubState::Terminated(Some(reason)) => format!("terminated;reason={reason}"),
        SubState::Terminated(None) => "terminated".to_owned(),
    };
    h.push(HeaderName::SubscriptionState, value);
    match state {
        Some(s) => {
            let body = super::pidf::to_pidf(&sub.entity, s);
            req.set_body(Some(super::pidf::CONTENT_TYPE), Bytes::from(body));
        }
        None => req.set_body(None, Bytes::new()),
    }
    Ok(req)
}

// ---------------------------------------------------------------------------------------------
// Publications

/// One live publication (RFC 3903 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub agent: String,
    /// The state its last body carried.
    pub state: PresenceState,
    pub expires_at: Instant,
}

/// The live publications by entity-tag.
#[derive(Debug, Default)]
pub struct Publications {
    by_etag: HashMap<String, Publication>,
}

impl Publications {
    pub fn len(&self) -> usize {
        self.by_etag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_etag.is_empty()
    }

    /// The live publication of `agent` named `etag`; `None` for an unknown, expired or
    /// another agent's entity-tag (all `412`).
    pub fn live(&self, etag: &str, agent: &str, now: Instant) -> Option<&Publication> {
        self.by_etag.get(etag).filter(|p| p.agent == agent && p.expires_at > now)
    }

    /// Stores a publication under a fresh `etag`, for `expires` seconds (0: gone at once).
    pub fn insert(&mut self, etag: String, publication: Publication) {
        self.by_etag.insert(etag, publication);
    }

    pub fn remove(&mut self, etag: &str) -> Option<Publication> {
        self.by_etag.remove(etag)
    }

    /// Forgets the expired publications; how many went. Expiry changes no presence (module
    /// docs), so this only frees memory.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.by_etag.len();
        self.by_etag.retain(|_, p| p.expires_at > now);
        before - self.by_etag.len()
    }
}

/// When a publication or subscription granted `secs` at `now` ends.
pub fn deadline(now: Instant, secs: u32) -> Instant {
    now + Duration::from_secs(u64::from(secs))
}

#[cfg(test)]
mod tests;
