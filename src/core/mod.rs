//! The core: one task that owns the transaction layer and every table the SIP rules need,
//! fed with parsed messages by the transports and driving them in return.
//!
//! # Run loop
//!
//! Transports parse on their own tasks and hand whole messages to the core through a bounded
//! queue ([`CoreHandle::deliver`]). The core runs alone on a thread and a runtime of its own
//! (`app::thread_runtimes`); the UDP sockets have another ([`crate::transport::udp`]), and
//! stream transports run on the main runtime's workers, in parallel. A malformed request is
//! answered `400` right there ([`reject_malformed`]) and never reaches the core. The core then
//! follows the sans-IO contract of `sip::transaction`: after every input it drains
//! `poll_transmit` (each message goes out without awaiting: queued for the UDP thread, which
//! gets what one pass of the loop sent as one batch, or put on a flow's queue) and
//! `poll_event` (the rules below), and sleeps until `poll_timeout`.
//!
//! # Rules
//!
//! - OPTIONS to the edge (or to an unregistered user of it): `200`, a keep-alive probe.
//! - REGISTER to the edge: digest authentication ([`auth`]), then the registrar
//!   ([`crate::registrar`]).
//! - SUBSCRIBE and PUBLISH for `presence` to an agent of the edge: the edge is the presence
//!   server ([`presence`]), never a proxy for them.
//! - Everything else is proxied ([`proxy`]): in-dialog requests by their route set; initial
//!   requests from a trunk by the inbound rules, from a trusted network or an authenticated
//!   agent (407 otherwise) to an agent of the edge or to trunks by the dialplan.
//! - Trunks are probed with OPTIONS ([`probe`]); routing skips those that stopped answering,
//!   and those whose host name has no address ([`resolve`]).
//! - A connection that closes takes its registrations and transactions with it.
//! - Shutdown waits (up to a grace period) for server transactions still unanswered, then for
//!   the last registrations snapshot and call-history rows to be written.
//! - Off the core's thread: the registrations snapshot ([`crate::registrar::snapshot`]) and
//!   the call history ([`history`]), each written by a thread of its own.

pub mod auth;
pub mod busy;
pub mod emergency;
pub mod history;
mod media;
mod net;
pub mod presence;
pub mod probe;
pub mod proxy;
mod resolve;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::transaction::{Event, FlowId, Peer, ServerKey, TxnConfig, TxnKey, TxnLayer};
use sip::{FastSet, HeaderName, Message, Method, ParseError, Request, Response};
use tokio::sync::{mpsc, watch};

use crate::admin::metrics::{Dir, Metrics};
use crate::agents::LiveRoster;
use crate::presence::PresenceBook;
use crate::registrar::snapshot::{self, Snapshots};
use crate::registrar::{Location, Policy};
use crate::routing::Dialplans;
use auth::Auth;
use proxy::ProxyState;
use sip::proxy::LocalIdentity;

pub use net::Net;

/// Inputs the core takes from its queue in one go before draining.
const BATCH: usize = 64;

/// Messages waiting for the core before new ones are shed (the sender is told and drops).
pub const QUEUE_DEPTH: usize = 16_384;

/// The priority lane's depth: emergency messages waiting ahead of everything else. When it is
/// full (a flood of fake emergency calls) they wait in the ordinary queue.
pub const URGENT_DEPTH: usize = 4_096;

/// What the transports tell the core.
// Nearly every input is a message: boxing it would cost an allocation per message to save
// queue space on the rare small variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input {
    /// A parsed message and where it came from.
    Message { from: Peer, message: Message },
    /// A connection closed.
    FlowClosed(FlowId),
    /// A message for this transaction could not be sent (connect failed, queue full).
    SendFailed(TxnKey),
    /// The admin API asks for the live registrations.
    Registrations(tokio::sync::oneshot::Sender<Vec<RegistrationView>>),
    /// The store work of an emergency call is done (callback lease).
    EmergencyPrepared { key: ServerKey, prepared: emergency::Prepared },
    /// An anchored call's media stopped for `[media] timeout`, or its browser went away.
    MediaEnded(crate::media::anchor::LegId),
    /// An agent's presence changed, or a PUBLISH was stored ([`presence`]).
    Presence(presence::PresenceInput),
}

/// The receiving ends of the core's queues (see [`Core::channel`]).
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Input>,
    urgent: mpsc::Receiver<Input>,
}

/// A registration binding as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistrationView {
    pub aor: String,
    pub contact: String,
    pub expires_in: u64,
    pub transport: String,
    pub source: String,
    pub instance: Option<String>,
    pub via_flow: bool,
}

/// The transports' way into the core. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Input>,
    /// The priority lane: emergency calls, PSAP callbacks and their in-dialog requests.
    urgent: mpsc::Sender<Input>,
}

impl CoreHandle {
    /// Hands a message to the core; `false` when the core is saturated and the message was
    /// shed (the peer retransmits over UDP; on streams the transaction times out).
    pub fn deliver(&self, from: Peer, message: Message) -> bool {
        self.tx.try_send(Input::Message { from, message }).is_ok()
    }

    /// Hands an emergency message to the core ahead of everything queued (DESIGN.md: emergency
    /// calls bypass shedding); the ordinary queue takes it when the lane is full.
    pub fn deliver_urgent(&self, from: Peer, message: Message) -> bool {
        match self.urgent.try_send(Input::Message { from, message }) {
            Ok(()) => true,
            Err(
                mpsc::error::TrySendError::Full(input) | mpsc::error::TrySendError::Closed(input),
            ) => self.tx.try_send(input).is_ok(),
        }
    }

    /// How full the core's ordinary queue is, from 0.0 (empty) to 1.0 (full): the transports
    /// shed new calls early when it fills (see `transport::conn`).
    pub fn load(&self) -> f32 {
        let free = self.tx.capacity() as f32;
        1.0 - free / QUEUE_DEPTH as f32
    }

    /// Tells the core that a connection closed. Waits for room: this must not be lost.
    pub async fn flow_closed(&self, flow: FlowId) {
        let _ = self.tx.send(Input::FlowClosed(flow)).await;
    }

    /// The live registrations (for the admin API); `None` when the core is gone.
    pub async fn registrations(&self) -> Option<Vec<RegistrationView>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Input::Registrations(tx)).await.ok()?;
        rx.await.ok()
    }

    /// An anchored call's media stopped (timeout) or its browser went away.
    pub async fn media_ended(&self, leg: crate::media::anchor::LegId) {
        let _ = self.tx.send(Input::MediaEnded(leg)).await;
    }

    /// Tells the core that a send for `key` failed.
    pub async fn send_failed(&self, key: TxnKey) {
        let _ = self.tx.send(Input::SendFailed(key)).await;
    }
}

/// The answer to a malformed message: a `400` (or 505, 513) with the codec's precise reason
/// for a request that can be answered, nothing for a response or unreadable bytes.
pub fn reject_malformed(e: &ParseError, server: &str) -> Option<Bytes> {
    match &e.partial {
        Some(req) if e.is_answerable() && *req.method() != Method::Ack => {
            let mut r = Response::for_request(req, e.status(), &e.reason());
            r.set_to_tag(&stateless_tag(req));
            r.headers_mut().push(HeaderName::Server, server.to_owned());
            Some(r.to_bytes())
        }
        _ => None,
    }
}

/// A To tag that is the same for retransmissions of one request, so that stateless answers
/// are stable (RFC 3261 §8.2.6.2), derived from the Call-ID, the From tag and the top branch.
pub fn stateless_tag(req: &Request) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let headers = req.headers();
    headers.call_id().unwrap_or("").hash(&mut h);
    headers.from_tag().ok().flatten().hash(&mut h);
    headers.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
    format!("{:x}", h.finish())
}

/// Settings the core needs from the configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The `Server` header value.
    pub server: String,
    pub registrar: Policy,
    pub metrics: Arc<Metrics>,
    /// The agents (who may authenticate) and groups; swapped by the admin API.
    pub roster: Arc<LiveRoster>,
    /// Every agent's presence: group calls ring only those available.
    pub presence: Arc<PresenceBook>,
    /// The edge's addresses and domain, as the proxy rules see them.
    pub local: LocalIdentity,
    /// The dialplan in force (reloaded aside and swapped).
    pub dialplans: Arc<Dialplans>,
    /// Durable state: callback leases (written on a blocking thread, never on the core's).
    pub store: Arc<dyn crate::store::Store>,
    /// How emergency notifications are queued and who delivers them.
    pub notify: emergency::NotifyConfig,
    /// The Call-IDs the transports put in the priority lane (shared with the limiter).
    pub urgent: Arc<emergency::UrgentCalls>,
    /// `[limits] max_dialogs`: requests waiting for their answer plus answered calls of agents
    /// before new ordinary calls get 503 (emergency calls and PSAP callbacks never do).
    pub max_dialogs: usize,
    /// The digest algorithms challenges offer, in order (`[sip] digest_algorithms`).
    pub digest: Vec<sip::digest::Algorithm>,
    /// The media anchor (`None`: `[media] anchor = "never"`, or its socket could not bind).
    pub media: Option<Arc<crate::media::engine::Media>>,
    /// Trunk host names and their addresses, kept current off the core
    /// ([`crate::transport::dns`]; read by [`resolve`]).
    pub trunk_hosts: Arc<crate::transport::dns::TrunkHosts>,
}

/// The core's state: the transaction layer and the tables of the SIP rules.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    txn: TxnLayer,
    location: Location,
    auth: Auth,
    net: Net,
    /// Who the edge is (listen addresses, domain), for the proxy rules.
    local: LocalIdentity,
    proxy: ProxyState,
    dialplans: Arc<Dialplans>,
    probes: probe::Probes,
    /// When the gauges in the metrics are next refreshed.
    gauges_at: Option<Instant>,
    /// Server transactions still waiting for the core's final response: shutdown waits for
    /// these (those already answered only absorb retransmissions).
    unanswered: FastSet<ServerKey>,
    /// Callback leases by DID, for PSAP callbacks.
    leases: std::collections::HashMap<String, emergency::LeaseEntry>,
    /// The core's own queue, for work done aside (the store) to report back.
    inbox: mpsc::Sender<Input>,
    /// Emergency DND on and off, in order, off the core's thread.
    dnd: emergency::DndWorker,
    /// Answered emergency calls by Call-ID: the agent (whose DND ends with the dialog) and
    /// the connection the call came over.
    emergency_dialogs: std::collections::HashMap<String, emergency::EmergencyDialog>,
    /// Answered calls per agent (capacity).
    calls_of: busy::CallsOf,
    /// Anchored calls: their RTP ports and WebRTC legs ([`media`]).
    media_calls: media::MediaCalls,
    /// The agent an initial request was authenticated as, for the call being set up.
    initial_caller: Option<String>,
    /// Credentials already verified by the emergency classification of a request that turned
    /// out not to be an emergency call (a nonce count may be used once).
    pre_authenticated: Option<String>,
    /// When the location table is next copied to the store, and the thread that writes it.
    snapshots: Snapshots,
    /// Ordinary calls followed until they end, and the thread that writes their rows.
    history: history::History,
    /// Presence subscriptions and publications ([`presence`]).
    presence_server: presence::PresenceServer,
}

impl Core {
    /// A core fed by `handle` (from [`Core::channel`]). Reads the live callback leases and the
    /// registrations snapshot from the store (once, at start, before any listener serves).
    pub fn new(config: CoreConfig, net: Net, handle: &CoreHandle) -> Core {
        let auth = Auth::new(&config.registrar.domain, &config.digest, config.roster.clone());
        let leases = emergency::load_leases(config.store.as_ref());
        let dnd = emergency::DndWorker::spawn(config.presence.clone());
        let location = snapshot::load(config.store.as_ref(), Instant::now());
        let snapshots = Snapshots::spawn(config.store.clone());
        let history = history::History::spawn(config.store.clone());
        let presence_server = presence::PresenceServer::new(&config.presence, handle);
        let local = config.local.clone();
        let dialplans = config.dialplans.clone();
        Core {
            config,
            txn: TxnLayer::new(TxnConfig::default()),
            location,
            auth,
            net,
            local,
            proxy: ProxyState::default(),
            dialplans,
            probes: probe::Probes::default(),
            gauges_at: None,
            unanswered: FastSet::default(),
            leases,
            // Work done aside reports back in the priority lane: today only emergency calls.
            inbox: handle.urgent.clone(),
            dnd,
            emergency_dialogs: std::collections::HashMap::new(),
            calls_of: busy::CallsOf::default(),
            media_calls: media::MediaCalls::default(),
            initial_caller: None,
            pre_authenticated: None,
            snapshots,
            history,
            presence_server,
        }
    }

    /// Creates the queues into the core.
    pub fn channel() -> (CoreHandle, Inbox) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (urgent, urgent_rx) = mpsc::channel(URGENT_DEPTH);
        (CoreHandle { tx, urgent }, Inbox { rx, urgent: urgent_rx })
    }

    /// Runs until every [`CoreHandle`] is dropped, or `stop` turns `true` and the live
    /// transactions have finished (at most `grace` later).
    pub async fn run(mut self, inbox: Inbox, mut stop: watch::Receiver<bool>, grace: Duration) {
        let Inbox { mut rx, urgent: mut urgent_rx } = inbox;
        self.probe_trunks(Instant::now());
        self.drain(Instant::now());
        let mut give_up: Option<Instant> = None;
        loop {
            if let Some(limit) = give_up
                && ((self.unanswered.is_empty() && self.proxy.unanswered() == 0)
                    || Instant::now() >= limit)
            {
                tracing::info!(unanswered = self.unanswered.len(), "core stopped");
                break;
            }
            let deadline = [
                self.txn.poll_timeout(),
                self.proxy.next_deadline(),
                self.probes.next_deadline(),
                self.snapshots.next_deadline(),
                self.presence_server.next_deadline(),
                give_up,
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // The priority lane first, always (emergency calls are handled ahead of other
                // messages, issue 6 §7).
                biased;
                Some(input) = urgent_rx.recv() => {
                    let now = Instant::now();
                    self.input(now, input);
                    while let Ok(more) = urgent_rx.try_recv() {
                        self.input(now, more);
                    }
                }
                input = rx.recv() => match input {
                    Some(input) => {
                        let now = Instant::now();
                        self.input(now, input);
                        // Take what else is queued before draining once: under load this
                        // saves a wake-up and a drain per message. The layers queue their
                        // outputs in order, so nothing is reordered.
                        for _ in 0..BATCH {
                            if let Ok(more) = urgent_rx.try_recv() {
                                self.input(now, more);
                                continue;
                            }
                            match rx.try_recv() {
                                Ok(more) => self.input(now, more),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                () = sleep => {
                    let now = Instant::now();
                    self.txn.handle_timeout(now);
                    self.fire_timer_c(now);
                    self.fire_failover(now);
                    self.fire_emergency_waits(now);
                    self.fire_presence(now);
                    self.probe_trunks(now);
                }
                changed = stop.changed(), if give_up.is_none() => {
                    if changed.is_err() || *stop.borrow() {
                        give_up = Some(Instant::now() + grace);
                    }
                }
            }
            self.drain(Instant::now());
        }
        self.finish().await;
    }

    /// Writes what must outlive the process — the last registrations snapshot, the calls still
    /// up — and waits until it is written.
    async fn finish(self) {
        let now = Instant::now();
        let writers = [self.snapshots.finish(now, &self.location), self.history.finish(now)];
        let joined = tokio::task::spawn_blocking(move || {
            for w in writers.into_iter().flatten() {
                let _ = w.join();
            }
        });
        let _ = joined.await;
    }

    fn input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Message { from, message: Message::Request(r) } => {
                self.config.metrics.request(Dir::In, r.method());
                if self.is_for_me(now, &r) {
                    // REGISTER and OPTIONS for the edge are answered statelessly, as a
                    // registrar may be (RFC 3261 §10.3; Kamailio's sl_send_reply): a
                    // retransmission is simply processed again (the registrar ignores an old
                    // CSeq), and no transaction holds memory for 32 s per REGISTER.
                    let response = self.local_response(now, from, &r);
                    self.config.metrics.response(Dir::Out, response.status());
                    self.txn.send_stateless(from, response.to_bytes());
                } else {
                    self.txn.handle_request(now, from, r);
                }
            }
            Input::Message { from, message: Message::Response(r) } => {
                self.config.metrics.response(Dir::In, r.status());
                self.txn.handle_response(now, from, r);
            }
            Input::FlowClosed(flow) => {
                let gone = self.location.remove_flow(flow);
                if gone > 0 {
                    tracing::debug!(%flow, bindings = gone, "connection closed");
                }
                self.history.flow_closed(now, flow);
                self.txn.handle_flow_error(now, flow);
                self.emergency_flow_closed(flow);
                self.presence_flow_closed(flow);
            }
            Input::SendFailed(key) => self.txn.handle_transport_error(now, key),
            Input::Registrations(reply) => {
                let list = self
                    .location
                    .all(now)
                    .map(|b| RegistrationView {
                        aor: b.aor.clone(),
                        contact: b.contact.clone(),
                        expires_in: b.remaining(now),
                        transport: b.source.transport.as_str().to_owned(),
                        source: b.source.addr.to_string(),
                        instance: b.instance.clone(),
                        via_flow: b.via_flow,
                    })
                    .collect();
                let _ = reply.send(list);
            }
            Input::EmergencyPrepared { key, prepared } => {
                self.emergency_prepared(now, key, prepared);
            }
            Input::MediaEnded(leg) => self.media_ended(now, leg),
            Input::Presence(p) => self.presence_input(now, p),
        }
    }

    /// Sends what the layer wants sent and handles its events, until both are empty.
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(t) = self.txn.poll_transmit() {
                let txn = t.txn;
                if !self.net.send(t)
                    && let Some(key) = txn
                {
                    self.txn.handle_transport_error(now, key);
                }
            }
            let Some(event) = self.txn.poll_event() else {
                break;
            };
            self.event(now, event);
        }
        self.net.flush();
        // Gauges at most once a second: counting bindings walks the whole location table.
        if self.gauges_at.is_none_or(|t| now >= t) {
            self.gauges_at = Some(now + Duration::from_secs(1));
            let m = &self.config.metrics;
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            m.transactions.store(gauge(self.txn.len()), Ordering::Relaxed);
            m.registrations.store(gauge(self.location.len()), Ordering::Relaxed);
            self.calls_of.expire(now);
            self.history.expire(now);
            self.config.urgent.expire(now);
            m.answered_calls.store(gauge(self.calls_of.len()), Ordering::Relaxed);
        }
        self.snapshots.poll(now, &self.location);
    }

    fn event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Request { key, from, request } => self.request(now, key, from, request),
            Event::Cancel { key, invite, request, .. } => {
                // §16.10: the CANCEL is answered here; the branches are cancelled, and their
                // 487 goes up on the INVITE's transaction.
                match invite {
                    Some(invite) => {
                        self.history.cancelled(invite);
                        self.reply(now, key, &request, 200, "OK");
                        self.cancel_call(now, invite);
                    }
                    None => self.reply(now, key, &request, 481, "Call/Transaction Does Not Exist"),
                }
            }
            Event::Ack { invite: None, from, request } => self.forward_ack(now, from, request),
            // The ACK of a 2xx the edge itself sent: nothing to relay.
            Event::Ack { invite: Some(_), .. } => {}
            Event::Response { key, response } => {
                if !self.probe_result(key, Some(response.status()))
                    && !self.notify_result(now, key, Some(response.status()))
                {
                    self.branch_response(now, key, response);
                }
            }
            Event::StrayResponse { response, .. } => self.forward_stray(response),
            Event::Timeout { key: TxnKey::Client(key), .. } => {
                if !self.probe_result(key, None) && !self.notify_result(now, key, None) {
                    self.branch_failed(now, key, true);
                }
            }
            Event::TransportError { key: TxnKey::Client(key) } => {
                if !self.probe_result(key, None) && !self.notify_result(now, key, None) {
                    self.branch_failed(now, key, false);
                }
            }
            Event::CancelSent { .. } | Event::Timeout { .. } | Event::TransportError { .. } => {}
            Event::Terminated { key: TxnKey::Server(key) } => {
                self.unanswered.remove(&key);
            }
            Event::Terminated { key: TxnKey::Client(key) } => {
                self.probe_terminated(key);
                self.branch_terminated(key);
            }
        }
    }

    fn request(&mut self, now: Instant, key: ServerKey, from: Peer, request: Request) {
        if self.is_presence_request(&request) {
            return self.presence_request(now, key, from, request);
        }
        self.proxy_request(now, key, from, request);
    }

    /// Whether the edge answers `request` itself: a REGISTER to it, or an OPTIONS to it or to
    /// a user of it who is not registered (a keep-alive probe from a trunk or load balancer).
    fn is_for_me(&self, now: Instant, request: &Request) -> bool {
        match request.method() {
            Method::Register => self.local.is_addressed_to_me(request),
            Method::Options => match request.uri() {
                Ok(sip::Uri::Sip(u)) if self.local.is_me(&u) || self.local.serves(&u) => {
                    u.user.is_none_or(|user| self.location.lookup(now, user).is_empty())
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// The edge's own answer to a request [`Core::is_for_me`] accepted.
    fn local_response(&mut self, now: Instant, from: Peer, request: &Request) -> Response {
        let response = match request.method() {
            Method::Register => match self.auth.check(request) {
                auth::Outcome::Agent(user) => {
                    match self.location.register(now, request, from, &user, &self.config.registrar)
                    {
                        Ok(ok) => {
                            self.snapshots.changed(now);
                            ok
                        }
                        Err(e) => e.response(request),
                    }
                }
                auth::Outcome::Challenge(challenges) => {
                    let mut r = Response::for_request(request, 401, "Unauthorized");
                    for c in challenges {
                        r.headers_mut().push(Auth::challenge_header(request), c);
                    }
                    r
                }
                auth::Outcome::Bad(reason) => Response::for_request(request, 400, reason),
                auth::Outcome::Forbidden => Response::for_request(request, 403, "Forbidden"),
            },
            _ => Response::for_request(request, 200, "OK"),
        };
        self.finish_response(request, response)
    }

    /// The To tag, Server header and, for OPTIONS, the capabilities of an edge's response.
    fn finish_response(&self, req: &Request, mut response: Response) -> Response {
        if response.status() > 100 {
            response.set_to_tag(&stateless_tag(req));
        }
        response.headers_mut().push(HeaderName::Server, self.config.server.clone());
        if response.status() == 200 && *req.method() == Method::Options {
            let h = response.headers_mut();
            h.push(HeaderName::Allow, "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER");
            h.push(HeaderName::Accept, "application/sdp");
        }
        response
    }

    fn reply(&mut self, now: Instant, key: ServerKey, req: &Request, status: u16, reason: &str) {
        let response = Response::for_request(req, status, reason);
        self.respond(now, key, req, response);
    }

    fn respond(&mut self, now: Instant, key: ServerKey, req: &Request, response: Response) {
        let response = self.finish_response(req, response);
        let status = response.status();
        self.config.metrics.response(Dir::Out, status);
        if let Err(e) = self.txn.send_response(now, key, response) {
            tracing::debug!(error = %e, "response not sent");
        }
        if status >= 200 {
            self.unanswered.remove(&key);
            self.history_final(now, key, status);
        }
    }
}
