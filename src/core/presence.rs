//! The edge as presence server (RFC 3856 SUBSCRIBE/NOTIFY, RFC 3903 PUBLISH) inside the core:
//! the rules and tables are in [`crate::presence::sip`], the documents in
//! [`crate::presence::pidf`]; this module answers the requests, sends the NOTIFYs over the
//! transaction layer and keeps the core non-blocking.
//!
//! # Which requests
//!
//! A SUBSCRIBE or PUBLISH outside a dialog whose Request-URI names a user of the edge's
//! domain (or of its address) and that carries no Route beyond the edge's own is answered
//! here, never proxied to the agent's devices; so is a SUBSCRIBE inside one of our
//! subscription dialogs. Any event package but `presence` gets `489` with
//! `Allow-Events: presence`. Requests outside a dialog need digest credentials like every
//! request from an agent (`407`); in-dialog refreshes are matched by their dialog identifiers
//! (RFC 6665 §4.1.2.2), as the proxy matches in-dialog requests.
//!
//! # Changes made elsewhere
//!
//! The [`PresenceBook`] tells its watchers which agent changed, whoever made the change
//! (admin API, PUBLISH, emergency DND and restore). A small task forwards those ids into the
//! core's ordinary queue ([`PresenceInput::Changed`]); the core then NOTIFYs the agent's
//! subscribers with the state the book holds. The forwarder holds the queue weakly: it never
//! keeps a stopping core alive.
//!
//! # Store writes
//!
//! A PUBLISH that changes the state is written on a blocking thread
//! (`PresenceBook::set_by_agent`, the admin API's path); the answer waits for the commit and
//! comes back as [`PresenceInput::Stored`]. A refresh, a removal and a re-publication of the
//! same state are answered at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sip::proxy;
use sip::transaction::{ClientKey, FlowId, Peer, ServerKey};
use sip::{HeaderName, Method, Request, Response, Uri};
use tokio::sync::mpsc;

use super::auth::{self, Auth};
use super::{Core, CoreHandle, Input, stateless_tag};
use crate::admin::metrics::Dir;
use crate::presence::PresenceBook;
use crate::presence::sip::{
    self as rules, Publication, Publications, Refusal, SubId, SubState, Subscription, Subscriptions,
};
use crate::store::AgentId;

/// How often expired publications are forgotten (memory only: expiry changes no presence).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Presence news for the core.
#[derive(Debug)]
pub enum PresenceInput {
    /// The agent's state changed (module docs).
    Changed(AgentId),
    /// A PUBLISH's state was written (or not): answer it.
    Stored(Box<Stored>),
}

/// A PUBLISH whose state went to the store.
#[derive(Debug)]
pub struct Stored {
    key: ServerKey,
    request: Request,
    /// The new entity-tag, and the one it replaces (a modification).
    etag: String,
    replaces: Option<String>,
    publication: Publication,
    expires: u32,
    result: Result<(), String>,
}

/// The presence server's state in the core.
#[derive(Debug)]
pub struct PresenceServer {
    subs: Subscriptions,
    pubs: Publications,
    /// The core's ordinary queue, for store results (weak: module docs).
    inbox: mpsc::WeakSender<Input>,
    /// Numbers NOTIFY branches.
    sequence: u64,
    /// When expired publications are next forgotten.
    sweep_at: Option<Instant>,
    /// The final NOTIFY owed to a subscription whose NOTIFY is in flight, by subscription.
    ending: std::collections::HashMap<SubId, SubState>,
}

impl PresenceServer {
    /// The server's state, and the task that forwards the book's changes into the core.
    pub fn new(book: &Arc<PresenceBook>, handle: &CoreHandle) -> PresenceServer {
        let inbox = handle.tx.downgrade();
        let mut changes = book.watch();
        let forward = inbox.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    while let Some(agent) = changes.recv().await {
                        let Some(tx) = forward.upgrade() else { break };
                        if tx.send(Input::Presence(PresenceInput::Changed(agent))).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(_) => tracing::warn!("no runtime: presence changes will not be notified"),
        }
        PresenceServer {
            subs: Subscriptions::default(),
            pubs: Publications::default(),
            inbox,
            sequence: 0,
            sweep_at: None,
            ending: std::collections::HashMap::new(),
        }
    }

    /// When the next subscription expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.subs.next_deadline()
    }
}

impl Core {
    /// Whether the edge answers `req` as presence server (module docs).
    pub(super) fn is_presence_request(&self, req: &Request) -> bool {
        if !matches!(req.method(), Method::Subscribe | Method::Publish) {
            return false;
        }
        let h = req.headers();
        if req.in_dialog() {
            return *req.method() == Method::Subscribe && self.subscription_of(req).is_some();
        }
        let only_our_routes = h
            .name_addrs(HeaderName::Route)
            .all(|r| matches!(r, Ok(n) if matches!(n.uri, Uri::Sip(ref u) if self.local.is_me(u))));
        only_our_routes
            && matches!(req.uri(), Ok(Uri::Sip(u))
                if u.user.is_some() && (self.local.serves(&u) || self.local.is_me(&u)))
    }

    /// Answers a SUBSCRIBE or PUBLISH [`Core::is_presence_request`] accepted.
    pub(super) fn presence_request(
        &mut self,
        now: Instant,
        key: ServerKey,
        from: Peer,
        mut req: Request,
    ) {
        if let Err(reject) = proxy::fix_top_via(&mut req, from.addr) {
            if let Some(r) = reject.response(&req, &stateless_tag(&req)) {
                self.respond(now, key, &req, r);
            }
            return;
        }
        match req.method() {
            Method::Subscribe => self.subscribe(now, key, from, req),
            _ => self.publish(now, key, req),
        }
    }

    pub(super) fn presence_input(&mut self, now: Instant, input: PresenceInput) {
        match input {
            PresenceInput::Changed(agent) => self.presence_changed(now, agent.as_str()),
            PresenceInput::Stored(stored) => self.published(now, *stored),
        }
    }

    /// Subscriptions expired by `now`: their final NOTIFY.
    pub(super) fn fire_presence(&mut self, now: Instant) {
        for id in self.presence_server.subs.due(now) {
            // Off the expiry index at once, so that a NOTIFY in flight cannot make it due
            // again on every turn.
            self.presence_server.subs.set_expiry(id, now + Duration::from_secs(86_400 * 365));
            tracing::debug!("presence subscription expired");
            self.notify(now, id, SubState::Terminated(Some("timeout")));
        }
    }

    /// A connection closed: its subscriptions end (no NOTIFY can reach them).
    pub(super) fn presence_flow_closed(&mut self, flow: FlowId) {
        let gone = self.presence_server.subs.remove_flow(flow);
        if gone > 0 {
            tracing::debug!(%flow, subscriptions = gone, "presence subscriptions ended with their connection");
        }
    }

    /// A response or failure (`None`) on a client transaction: `true` when it was a NOTIFY's.
    pub(super) fn notify_result(
        &mut self,
        now: Instant,
        key: ClientKey,
        status: Option<u16>,
    ) -> bool {
        if !self.presence_server.subs.owns(key) {
            return false;
        }
        if status.is_some_and(|s| s < 200) {
            return true;
        }
        let Some(id) = self.presence_server.subs.answered(key) else { return true };
        match status {
            Some(s) if (200..300).contains(&s) => {
                if let Some(end) = self.presence_server.ending.remove(&id) {
                    self.notify(now, id, end);
                } else if self.presence_server.subs.get(id).is_some_and(|s| s.dirty) {
                    self.notify(now, id, SubState::Active);
                }
            }
            _ => {
                tracing::debug!(?status, "NOTIFY failed: presence subscription ended");
                self.end_subscription(id);
            }
        }
        true
    }

    // --- SUBSCRIBE ---------------------------------------------------------------------------

    fn subscription_of(&self, req: &Request) -> Option<SubId> {
        let h = req.headers();
        let call_id = h.call_id().ok()?;
        let remote = h.from().ok()?.tag()?.to_owned();
        let local = h.to().ok()?.tag()?.to_owned();
        self.presence_server.subs.find_dialog(call_id, &remote, &local)
    }

    fn subscribe(&mut self, now: Instant, key: ServerKey, from: Peer, req: Request) {
        let event = match rules::event(&req) {
            Ok(e) => e,
            Err(r) => return self.refuse(now, key, &req, &r),
        };
        if let Some(id) = self.subscription_of(&req) {
            return self.resubscribe(now, key, from, req, id, &event);
        }
        let Some(_watcher) = self.authenticate(now, key, &req) else { return };
        let agent = match rules::target_user(&req) {
            Some(a) if self.config.presence.presence(&a).is_some() => a,
            _ => return self.reply(now, key, &req, 404, "Not Found"),
        };
        if !rules::accepts_pidf(&req) {
            return self.refuse(now, key, &req, &Refusal::NotAcceptable);
        }
        let h = req.headers();
        let contact = h
            .get(HeaderName::Contact)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|t| sip::header::typed::Contact::parse_list(t).next())
            .and_then(Result::ok);
        let remote_target = match contact {
            Some(sip::header::typed::Contact::Addr(a)) => a.uri_raw.to_owned(),
            _ => return self.refuse(now, key, &req, &Refusal::Bad("Missing Contact")),
        };
        let expires = match rules::expires(&req) {
            Ok(e) => e,
            Err(r) => return self.refuse(now, key, &req, &r),
        };
        if self.presence_server.subs.len() >= rules::MAX_SUBSCRIPTIONS {
            tracing::warn!("presence subscriptions at their limit: refused");
            return self.reply(now, key, &req, 503, "Service Unavailable");
        }
        let Some(out) = self.local_addr_for(&from) else {
            return self.reply(now, key, &req, 500, "Server Internal Error");
        };
        let text = |name| h.get(name).and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned);
        let (Some(to), Some(from_value), Ok(call_id), Ok(cseq), Some(remote_tag)) = (
            text(HeaderName::To),
            text(HeaderName::From),
            h.call_id(),
            h.cseq(),
            h.from().ok().and_then(|f| f.tag().map(str::to_owned)),
        ) else {
            return self.refuse(now, key, &req, &Refusal::Bad("Missing From Tag"));
        };
        let route_set: Vec<String> = h
            .get_all(HeaderName::RecordRoute)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(sip::header::typed::tokens)
            .map(str::to_owned)
            .collect();
        let sub = Subscription {
            entity: format!("sip:{agent}@{}", self.config.registrar.domain),
            agent,
            call_id: call_id.to_owned(),
            local_tag: stateless_tag(&req),
            remote_tag,
            local_uri: to,
            remote_uri: from_value,
            peer: rules::notify_peer(from, &remote_target, &route_set),
            remote_target,
            route_set,
            event,
            contact: format!("<sip:{};transport={}>", out.host_port(), out.transport().uri_param()),
            local_cseq: 0,
            remote_cseq: cseq.seq,
            expires_at: rules::deadline(now, expires),
            in_flight: None,
            dirty: false,
            last_sent: None,
        };
        let response = self.subscribe_ok(&req, &sub, expires);
        self.respond(now, key, &req, response);
        tracing::debug!(agent = %sub.agent, expires, "presence subscription");
        let id = self.presence_server.subs.insert(sub);
        let state = if expires == 0 { SubState::Terminated(None) } else { SubState::Active };
        self.notify(now, id, state);
    }

    /// A SUBSCRIBE in one of our dialogs: a refresh or an unsubscribe (RFC 6665 §4.2.1.2,
    /// §4.2.1.4).
    fn resubscribe(
        &mut self,
        now: Instant,
        key: ServerKey,
        from: Peer,
        req: Request,
        id: SubId,
        event: &str,
    ) {
        let Some(sub) = self.presence_server.subs.get(id) else {
            return self.reply(now, key, &req, 481, "Subscription Does Not Exist");
        };
        if !sub.event.eq_ignore_ascii_case(event) {
            return self.refuse(now, key, &req, &Refusal::BadEvent);
        }
        let cseq = match req.headers().cseq() {
            Ok(c) => c.seq,
            Err(_) => return self.refuse(now, key, &req, &Refusal::Bad("Bad CSeq")),
        };
        if cseq <= sub.remote_cseq {
            // RFC 3261 §12.2.2: out of order.
            return self.reply(now, key, &req, 500, "Server Internal Error");
        }
        let expires = match rules::expires(&req) {
            Ok(e) => e,
            Err(r) => return self.refuse(now, key, &req, &r),
        };
        let target = req
            .headers()
            .get(HeaderName::Contact)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|t| sip::header::typed::Contact::parse_list(t).next())
            .and_then(Result::ok)
            .and_then(|c| match c {
                sip::header::typed::Contact::Addr(a) => Some(a.uri_raw.to_owned()),
                sip::header::typed::Contact::Star => None,
            });
        let Some(sub) = self.presence_server.subs.get_mut(id) else { return };
        sub.remote_cseq = cseq;
        if let Some(t) = target {
            // A target refresh (RFC 6665 §4.1.2.2).
            sub.remote_target = t;
        }
        if from.flow.is_some() || sub.peer.flow.is_none() {
            sub.peer = rules::notify_peer(from, &sub.remote_target, &sub.route_set);
        }
        let sub = sub.clone();
        let response = self.subscribe_ok(&req, &sub, expires);
        self.respond(now, key, &req, response);
        if expires == 0 {
            self.presence_server.subs.set_expiry(id, now + Duration::from_secs(86_400 * 365));
            self.notify(now, id, SubState::Terminated(None));
        } else {
            self.presence_server.subs.set_expiry(id, rules::deadline(now, expires));
            self.notify(now, id, SubState::Active);
        }
    }

    /// The `200` to a SUBSCRIBE: Expires granted, our Contact, the Record-Route copied
    /// (RFC 3261 §12.1.1).
    fn subscribe_ok(&self, req: &Request, sub: &Subscription, expires: u32) -> Response {
        let mut r = Response::for_request(req, 200, "OK");
        let h = r.headers_mut();
        for rr in req.headers().get_all(HeaderName::RecordRoute) {
            h.push(HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
        }
        h.push(HeaderName::Contact, sub.contact.clone());
        h.push(HeaderName::Expires, expires.to_string());
        r
    }

    /// Sends the NOTIFY of subscription `id` with the agent's state now (module docs of
    /// [`rules`]); a terminated state removes the subscription once sent.
    fn notify(&mut self, now: Instant, id: SubId, mut sub_state: SubState) {
        let srv = &mut self.presence_server;
        let Some(sub) = srv.subs.get_mut(id) else { return };
        if sub.in_flight.is_some() {
            match sub_state {
                SubState::Active => sub.dirty = true,
                end => {
                    srv.ending.insert(id, end);
                }
            }
            return;
        }
        let state = self.config.presence.presence(&sub.agent).map(|p| p.state);
        if state.is_none() && sub_state == SubState::Active {
            sub_state = SubState::Terminated(Some("noresource"));
        }
        sub.local_cseq += 1;
        srv.sequence += 1;
        let branch = format!("z9hG4bKpn{}x{:x}", sub.local_tag, srv.sequence);
        let peer = sub.peer;
        let Some(out) = self.local_addr_for(&peer) else {
            tracing::debug!(%peer, "no listen address toward a subscriber: subscription ended");
            return self.end_subscription(id);
        };
        let Some(sub) = self.presence_server.subs.get_mut(id) else { return };
        let request = match rules::notify_request(
            sub,
            state.as_ref(),
            sub_state,
            now,
            (out.transport().as_str(), out.host_port()),
            &branch,
        ) {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!("subscriber Contact is not a URI: subscription ended");
                return self.end_subscription(id);
            }
        };
        sub.last_sent = state;
        match self.txn.send_request(now, peer, request) {
            Ok(client) => {
                self.presence_server.subs.sent(id, client);
                self.config.metrics.request(Dir::Out, &Method::Notify);
            }
            Err(e) => {
                tracing::debug!(error = %e, "NOTIFY not sent: subscription ended");
                return self.end_subscription(id);
            }
        }
        if matches!(sub_state, SubState::Terminated(_)) {
            // The answer to a final NOTIFY changes nothing: forget the dialog now.
            self.end_subscription(id);
        }
    }

    fn end_subscription(&mut self, id: SubId) {
        self.presence_server.subs.remove(id);
        self.presence_server.ending.remove(&id);
    }

    /// `agent`'s state changed: NOTIFY every subscription whose last NOTIFY said otherwise.
    fn presence_changed(&mut self, now: Instant, agent: &str) {
        let state = self.config.presence.presence(agent).map(|p| p.state);
        for id in self.presence_server.subs.of_agent(agent) {
            let Some(sub) = self.presence_server.subs.get(id) else { continue };
            match &state {
                None => self.notify(now, id, SubState::Terminated(Some("noresource"))),
                Some(s) if sub.last_sent.as_ref() != Some(s) || sub.in_flight.is_some() => {
                    self.notify(now, id, SubState::Active);
                }
                Some(_) => {}
            }
        }
    }

    // --- PUBLISH -----------------------------------------------------------------------------

    fn publish(&mut self, now: Instant, key: ServerKey, req: Request) {
        if let Err(r) = rules::event(&req) {
            return self.refuse(now, key, &req, &r);
        }
        let Some(publisher) = self.authenticate(now, key, &req) else { return };
        let agent = match rules::target_user(&req) {
            Some(a) if a == publisher => a,
            Some(a) if self.config.presence.presence(&a).is_some() => {
                return self.reply(now, key, &req, 403, "Forbidden");
            }
            _ => return self.reply(now, key, &req, 404, "Not Found"),
        };
        let expires = match rules::expires(&req) {
            Ok(e) => e,
            Err(r) => return self.refuse(now, key, &req, &r),
        };
        let state = match rules::published_state(&req) {
            Ok(s) => s,
            Err(r) => return self.refuse(now, key, &req, &r),
        };
        let srv = &mut self.presence_server;
        if srv.sweep_at.is_none_or(|t| now >= t) {
            srv.sweep_at = Some(now + SWEEP_EVERY);
            srv.pubs.expire(now);
        }
        let if_match = req
            .headers()
            .get(HeaderName::SipIfMatch)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|t| t.trim().to_owned());
        let etag = new_etag();
        match (if_match, state) {
            (Some(old), state) => {
                let Some(current) = srv.pubs.live(&old, &agent, now).cloned() else {
                    return self.reply(now, key, &req, 412, "Conditional Request Failed");
                };
                if expires == 0 {
                    // Removal (RFC 3903 §6 step 6): the presence stays as last set.
                    srv.pubs.remove(&old);
                    return self.publish_ok(now, key, &req, &old, 0);
                }
                match state {
                    Some(s) if s != current.state => {
                        let publication = Publication {
                            agent,
                            state: s,
                            expires_at: rules::deadline(now, expires),
                        };
                        self.store_publication(key, req, etag, Some(old), publication, expires);
                    }
                    // A refresh, with or without the same body: nothing to write.
                    _ => {
                        srv.pubs.remove(&old);
                        let publication =
                            Publication { expires_at: rules::deadline(now, expires), ..current };
                        srv.pubs.insert(etag.clone(), publication);
                        self.publish_ok(now, key, &req, &etag, expires);
                    }
                }
            }
            (None, None) => self.refuse(now, key, &req, &Refusal::Bad("Missing PIDF Body")),
            (None, Some(s)) => {
                if srv.pubs.len() >= rules::MAX_PUBLICATIONS {
                    tracing::warn!("presence publications at their limit: refused");
                    return self.reply(now, key, &req, 503, "Service Unavailable");
                }
                let publication =
                    Publication { agent, state: s, expires_at: rules::deadline(now, expires) };
                self.store_publication(key, req, etag, None, publication, expires);
            }
        }
    }

    /// Writes a published state on a blocking thread; the answer follows in
    /// [`Core::published`].
    fn store_publication(
        &mut self,
        key: ServerKey,
        request: Request,
        etag: String,
        replaces: Option<String>,
        publication: Publication,
        expires: u32,
    ) {
        let book = self.config.presence.clone();
        let inbox = self.presence_server.inbox.clone();
        let Ok(agent) = publication.agent.parse::<AgentId>() else {
            // Authenticated agents have valid ids; nothing to write for another.
            return;
        };
        tokio::task::spawn_blocking(move || {
            let result = book
                .set_by_agent(&agent, publication.state.clone())
                .map(|_| ())
                .map_err(|e| e.to_string());
            let stored = Stored { key, request, etag, replaces, publication, expires, result };
            if let Some(tx) = inbox.upgrade() {
                let _ = tx.blocking_send(Input::Presence(PresenceInput::Stored(Box::new(stored))));
            }
        });
    }

    /// A published state was written (or not): the answer.
    fn published(&mut self, now: Instant, stored: Stored) {
        let Stored { key, request, etag, replaces, publication, expires, result } = stored;
        if let Err(e) = result {
            tracing::error!(agent = %publication.agent, error = %e, "published presence not stored");
            return self.reply(now, key, &request, 500, "Presence Not Stored");
        }
        tracing::debug!(agent = %publication.agent, state = %publication.state, "presence published");
        let srv = &mut self.presence_server;
        if let Some(old) = replaces {
            srv.pubs.remove(&old);
        }
        if expires > 0 {
            srv.pubs.insert(etag.clone(), publication);
        }
        self.publish_ok(now, key, &request, &etag, expires);
    }

    /// The `200` to a PUBLISH (RFC 3903 §6 step 8).
    fn publish_ok(
        &mut self,
        now: Instant,
        key: ServerKey,
        req: &Request,
        etag: &str,
        expires: u32,
    ) {
        let mut r = Response::for_request(req, 200, "OK");
        r.headers_mut().push(HeaderName::SipEtag, etag.to_owned());
        r.headers_mut().push(HeaderName::Expires, expires.to_string());
        self.respond(now, key, req, r);
    }

    // --- shared ------------------------------------------------------------------------------

    /// The agent whose credentials `req` carries; otherwise the request is answered (407,
    /// 400, 403) and `None`.
    fn authenticate(&mut self, now: Instant, key: ServerKey, req: &Request) -> Option<String> {
        match self.auth.check(req) {
            auth::Outcome::Agent(agent) => Some(agent),
            auth::Outcome::Challenge(challenges) => {
                let mut r = Response::for_request(req, 407, "Proxy Authentication Required");
                for c in challenges {
                    r.headers_mut().push(Auth::challenge_header(req), c);
                }
                self.respond(now, key, req, r);
                None
            }
            auth::Outcome::Bad(reason) => {
                self.reply(now, key, req, 400, reason);
                None
            }
            auth::Outcome::Forbidden => {
                self.reply(now, key, req, 403, "Forbidden");
                None
            }
        }
    }

    fn refuse(&mut self, now: Instant, key: ServerKey, req: &Request, refusal: &Refusal) {
        let (status, reason) = refusal.status();
        let mut r = Response::for_request(req, status, reason);
        for (name, value) in refusal.headers() {
            r.headers_mut().push(name, value);
        }
        self.respond(now, key, req, r);
    }
}

/// A fresh entity-tag: 64 random bits in hex.
fn new_etag() -> String {
    let mut b = [0u8; 8];
    auth::fill_random(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
