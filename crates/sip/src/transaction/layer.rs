//! [`TxnLayer`]: every transaction of one SIP element, their matching indexes and one timer
//! index over all of them.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::build;
use super::client::{Class, ClientCore, ClientMachine, ClientTxn};
use super::event::{CancelStatus, Ctx, Event, Transmit, TxnError, TxnState};
use super::key::{ClientIndex, ClientKey, ClientMatch, RequestId, ServerKey, ServerMatch, TxnKey};
use super::peer::{FlowId, Peer};
use super::server::{ServerCore, ServerTxn};
use super::timer::TimerConfig;
use crate::FastMap;
use crate::message::{Request, Response};
use crate::method::Method;

/// How the layer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnConfig {
    pub timers: TimerConfig,
    /// Send 100 (Trying) as soon as an INVITE server transaction is created (RFC 3261 §17.2.1,
    /// §16.2: a proxy cannot promise a response within 200 ms). Default `true`.
    pub send_trying: bool,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig { timers: TimerConfig::default(), send_trying: true }
    }
}

/// The output context of a transition, borrowing the layer's queues next to a borrowed
/// transaction (a macro, so that the borrows stay field by field).
macro_rules! ctx {
    ($layer:ident, $now:expr) => {
        Ctx {
            now: $now,
            timers: &$layer.config.timers,
            transmits: &mut $layer.transmits,
            events: &mut $layer.events,
        }
    };
}

/// Timers one transaction may fire within one call: a bound that no RFC path comes near, so
/// that no configuration can make a call spin.
const MAX_FIRINGS_PER_CALL: usize = 16;

/// Every client and server transaction of a SIP element. See the [module docs](super) for the
/// run-loop contract.
#[derive(Debug)]
pub struct TxnLayer {
    config: TxnConfig,
    /// The next key number; keys are never reused.
    next_id: u64,
    /// Boxed: a transaction is a few hundred bytes and lives 32 s after its final response
    /// (RFC 6026 Timers L and M, Timer J/K), so at a few thousand calls/s these maps hold
    /// hundreds of thousands of entries; growing them then moves 16-byte slots, not the
    /// transactions (inline values made every rehash copy hundreds of megabytes).
    clients: FastMap<ClientKey, Box<ClientTxn>>,
    servers: FastMap<ServerKey, Box<ServerTxn>>,
    /// Responses find their client transaction here (§17.1.3).
    client_index: ClientIndex,
    /// Requests with an RFC 3261 branch find their server transaction here (§17.2.3).
    branch_index: FastMap<ServerMatch, ServerKey>,
    /// RFC 2543 requests: the candidates sharing the legacy identity (an INVITE and its
    /// CANCEL); method and To tag decide among them.
    legacy_index: FastMap<ServerMatch, Vec<ServerKey>>,
    /// The next deadline of every transaction that has one: `poll_timeout` is the first.
    deadlines: BTreeSet<(Instant, TxnKey)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// What a received request looks for.
#[derive(Debug, Clone, Copy)]
enum Find<'a> {
    /// Its own transaction (a retransmission): same method.
    Own(&'a Method),
    /// The INVITE an ACK acknowledges.
    AckTarget,
    /// The INVITE a CANCEL cancels.
    CancelTarget,
}

impl Default for TxnLayer {
    fn default() -> TxnLayer {
        TxnLayer::new(TxnConfig::default())
    }
}

impl TxnLayer {
    pub fn new(config: TxnConfig) -> TxnLayer {
        TxnLayer {
            config,
            next_id: 1,
            clients: FastMap::default(),
            servers: FastMap::default(),
            client_index: ClientIndex::default(),
            branch_index: FastMap::default(),
            legacy_index: FastMap::default(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    // --- inputs from the network -------------------------------------------------------------

    /// A request arrived from `from`. Retransmissions are absorbed (answered with the last
    /// response where the RFC says so); a new request creates a server transaction and is
    /// reported as [`Event::Request`] or [`Event::Cancel`]; an ACK is absorbed by the INVITE
    /// transaction it acknowledges or reported as [`Event::Ack`].
    pub fn handle_request(&mut self, now: Instant, from: Peer, request: Request) {
        // The parser guarantees what matching reads; a locally built request without it
        // cannot be answered and is dropped.
        let Some(id) = RequestId::of(&request) else {
            return;
        };
        let method = request.method().clone();
        if method == Method::Ack {
            match self.find_server(&id, Find::AckTarget) {
                Some(key) => {
                    if let Some(txn) = self.servers.get_mut(&key) {
                        let mut ctx = ctx!(self, now);
                        txn.on_ack(&mut ctx, from, request);
                    }
                    self.settle(now, TxnKey::Server(key));
                }
                None => self.events.push_back(Event::Ack { invite: None, from, request }),
            }
            return;
        }
        if let Some(key) = self.find_server(&id, Find::Own(&method)) {
            if let Some(txn) = self.servers.get_mut(&key) {
                let mut ctx = ctx!(self, now);
                txn.on_request(&mut ctx);
            }
            self.settle(now, TxnKey::Server(key));
            return;
        }

        // A new transaction.
        let key = ServerKey(self.next_id());
        let cancelled =
            if method == Method::Cancel { self.find_server(&id, Find::CancelTarget) } else { None };
        match &id.key {
            k @ ServerMatch::Branch { .. } => {
                self.branch_index.insert(k.clone(), key);
            }
            k @ ServerMatch::Legacy(_) => self.legacy_index.entry(k.clone()).or_default().push(key),
        }
        let core = ServerCore::new(key, id, method.clone(), from);
        let mut ctx = ctx!(self, now);
        let txn = ServerTxn::start(core, &mut ctx, &request, self.config.send_trying);
        self.servers.insert(key, Box::new(txn));
        self.events.push_back(if method == Method::Cancel {
            Event::Cancel { key, invite: cancelled, from, request }
        } else {
            Event::Request { key, from, request }
        });
        self.settle(now, TxnKey::Server(key));
    }

    /// A response arrived from `from`. It goes to its client transaction, which decides what
    /// reaches the TU ([`Event::Response`]); one that matches none is an
    /// [`Event::StrayResponse`]. A status outside 100..=699 is dropped.
    pub fn handle_response(&mut self, now: Instant, from: Peer, response: Response) {
        let Some(class) = Class::of(response.status()) else {
            return;
        };
        let key = ClientMatch::of_response(&response)
            .and_then(|(branch, method)| self.client_index.get(branch, &method));
        let Some(txn) = key.and_then(|k| self.clients.get_mut(&k)) else {
            self.events.push_back(Event::StrayResponse { from, response });
            return;
        };
        let key = txn.core.key;
        let mut ctx = ctx!(self, now);
        let due = txn.on_response(&mut ctx, class, response);
        self.settle(now, TxnKey::Client(key));
        if let Some(held) = due
            && let Ok(cancel) = self.start_cancel(now, key, held.reason.as_deref())
        {
            self.events.push_back(Event::CancelSent { invite: key, cancel });
        }
    }

    /// Fires every timer due at `now`. Call it when [`TxnLayer::poll_timeout`] is reached
    /// (calling it early or late is harmless: only due timers fire).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, key));
            match key {
                TxnKey::Client(k) => {
                    if let Some(t) = self.clients.get_mut(&k) {
                        t.core.scheduled = None;
                    }
                }
                TxnKey::Server(k) => {
                    if let Some(t) = self.servers.get_mut(&k) {
                        t.core.scheduled = None;
                    }
                }
            }
            self.settle(now, key);
        }
    }

    /// The transport could not send a message of transaction `key` (an ICMP error, a refused
    /// or broken connection). The transaction reports [`Event::TransportError`] and, except an
    /// INVITE server transaction in Accepted (RFC 6026 §8.8), terminates. An unknown key is
    /// ignored.
    pub fn handle_transport_error(&mut self, now: Instant, key: TxnKey) {
        let mut ctx = ctx!(self, now);
        match key {
            TxnKey::Client(k) => match self.clients.get_mut(&k) {
                Some(txn) => txn.on_transport_error(&mut ctx),
                None => return,
            },
            TxnKey::Server(k) => match self.servers.get_mut(&k) {
                Some(txn) => txn.on_transport_error(&mut ctx),
                None => return,
            },
        }
        self.settle(now, key);
    }

    /// Connection `flow` is gone and cannot be reopened (a WebSocket or an inbound TLS
    /// connection from a client behind NAT): every transaction that sends on it is handled as
    /// in [`TxnLayer::handle_transport_error`], in key order. A connection the driver can
    /// reopen (to a trunk's sent-by address, RFC 3261 §18.2.2) is not reported here.
    pub fn handle_flow_error(&mut self, now: Instant, flow: FlowId) {
        let clients = self
            .clients
            .values()
            .filter(|t| t.core.to.flow == Some(flow))
            .map(|t| TxnKey::Client(t.core.key));
        let servers = self
            .servers
            .values()
            .filter(|t| t.core.from.flow == Some(flow))
            .map(|t| TxnKey::Server(t.core.key));
        let mut keys: Vec<TxnKey> = clients.chain(servers).collect();
        keys.sort_unstable();
        for key in keys {
            self.handle_transport_error(now, key);
        }
    }

    // --- commands from the TU ----------------------------------------------------------------

    /// Starts a client transaction that sends `request` to `to`. The request carries its top
    /// Via with the branch the TU built; the branch and the method identify the transaction
    /// (§17.1.3). ACK is refused: see [`TxnError::AckIsNotATransaction`].
    pub fn send_request(
        &mut self,
        now: Instant,
        to: Peer,
        request: Request,
    ) -> Result<ClientKey, TxnError> {
        if *request.method() == Method::Ack {
            return Err(TxnError::AckIsNotATransaction);
        }
        let matcher = ClientMatch::of_request(&request).ok_or(TxnError::MissingBranch)?;
        match request.headers().cseq() {
            Ok(cseq) if cseq.method == *request.method() => {}
            _ => return Err(TxnError::BadCSeq),
        }
        let key = ClientKey(self.next_id);
        if !self.client_index.insert(&matcher, key) {
            return Err(TxnError::DuplicateBranch);
        }
        self.next_id += 1;
        let core = ClientCore::new(key, matcher, to, request);
        let mut ctx = ctx!(self, now);
        let txn = ClientTxn::start(core, &mut ctx);
        self.clients.insert(key, Box::new(txn));
        self.settle(now, TxnKey::Client(key));
        Ok(key)
    }

    /// Sends a response on server transaction `key`: provisional or final. After a non-2xx
    /// final nothing more may be sent; after a 2xx to an INVITE only further 2xx (the UAS
    /// core's retransmissions or another fork's answer, RFC 6026 §8.7).
    pub fn send_response(
        &mut self,
        now: Instant,
        key: ServerKey,
        response: Response,
    ) -> Result<(), TxnError> {
        let class = Class::of(response.status()).ok_or(TxnError::BadStatus)?;
        let txn = self.servers.get_mut(&key).ok_or(TxnError::NoTransaction)?;
        let mut ctx = ctx!(self, now);
        let result = txn.on_tu_response(&mut ctx, class, &response);
        self.settle(now, TxnKey::Server(key));
        result
    }

    /// Cancels INVITE client transaction `invite` (RFC 3261 §9.1): builds the CANCEL from the
    /// INVITE and sends it in its own non-INVITE client transaction, whose responses arrive as
    /// [`Event::Response`] on the returned key. Before any provisional response the CANCEL is
    /// held ([`CancelStatus::Held`]). Asking twice returns the first CANCEL.
    pub fn cancel(&mut self, now: Instant, invite: ClientKey) -> Result<CancelStatus, TxnError> {
        self.cancel_inner(now, invite, None)
    }

    /// [`TxnLayer::cancel`] with a Reason header (RFC 3326), e.g.
    /// `SIP;cause=200;text="Call completed elsewhere"` when another fork answered.
    pub fn cancel_with_reason(
        &mut self,
        now: Instant,
        invite: ClientKey,
        reason: &str,
    ) -> Result<CancelStatus, TxnError> {
        self.cancel_inner(now, invite, Some(reason))
    }

    /// Queues a message that belongs to no transaction: the ACK for a 2xx, or a response the
    /// proxy relays statelessly.
    pub fn send_stateless(&mut self, to: Peer, message: Bytes) {
        self.transmits.push_back(Transmit { to, message, txn: None });
    }

    // --- outputs -------------------------------------------------------------------------------

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`TxnLayer::handle_timeout`] must be called next: the earliest deadline of all
    /// transactions (`None` without any).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    // --- inspection ----------------------------------------------------------------------------

    /// Live transactions, client and server.
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of a live transaction; `None` once it has terminated.
    pub fn state(&self, key: impl Into<TxnKey>) -> Option<TxnState> {
        match key.into() {
            TxnKey::Client(k) => self.clients.get(&k)?.state(),
            TxnKey::Server(k) => self.servers.get(&k)?.state(),
        }
    }

    /// The request of a live client transaction, as it was sent; `None` once its final
    /// response came (the transaction no longer keeps it).
    pub fn client_request(&self, key: ClientKey) -> Option<&Request> {
        self.clients.get(&key)?.core.request.as_deref()
    }

    /// Whether INVITE server transaction `key` has sent its final response (a CANCEL then has
    /// no effect but still gets its 200, RFC 3261 §9.2).
    pub fn is_answered(&self, key: ServerKey) -> bool {
        self.servers.get(&key).is_some_and(|t| t.is_invite_final())
    }

    // --- internals -----------------------------------------------------------------------------

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn find_server(&self, id: &RequestId, find: Find<'_>) -> Option<ServerKey> {
        match &id.key {
            ServerMatch::Branch { .. } => {
                match find {
                    // The id already counts ACK as INVITE.
                    Find::Own(_) | Find::AckTarget => self.branch_index.get(&id.key).copied(),
                    Find::CancelTarget => self.branch_index.get(&id.invite_key()).copied(),
                }
            }
            legacy @ ServerMatch::Legacy(_) => {
                let candidates = self.legacy_index.get(legacy)?;
                candidates.iter().copied().find(|k| {
                    let Some(txn) = self.servers.get(k) else {
                        return false;
                    };
                    let core = &txn.core;
                    match find {
                        Find::Own(m) => core.method == *m && core.id.to_tag == id.to_tag,
                        // The ACK carries the To tag of the response (§17.2.3).
                        Find::AckTarget => {
                            core.method == Method::Invite
                                && (core.response_to_tag.is_none()
                                    || core.response_to_tag == id.to_tag
                                    || core.id.to_tag == id.to_tag)
                        }
                        Find::CancelTarget => {
                            core.method == Method::Invite && core.id.to_tag == id.to_tag
                        }
                    }
                })
            }
        }
    }

    fn cancel_inner(
        &mut self,
        now: Instant,
        invite: ClientKey,
        reason: Option<&str>,
    ) -> Result<CancelStatus, TxnError> {
        let txn = self.clients.get_mut(&invite).ok_or(TxnError::NoTransaction)?;
        let ClientMachine::Invite(machine) = &mut txn.machine else {
            return Err(TxnError::NotInvite);
        };
        if let Some(cancel) = txn.core.cancel {
            return Ok(CancelStatus::Sent(cancel));
        }
        match machine.hold_cancel(reason) {
            Ok(true) => Ok(CancelStatus::Held),
            Ok(false) => self.start_cancel(now, invite, reason).map(CancelStatus::Sent),
            Err(()) => Err(TxnError::AlreadyFinal),
        }
    }

    /// Builds and sends the CANCEL of `invite` now.
    fn start_cancel(
        &mut self,
        now: Instant,
        invite: ClientKey,
        reason: Option<&str>,
    ) -> Result<ClientKey, TxnError> {
        let txn = self.clients.get(&invite).ok_or(TxnError::NoTransaction)?;
        let invite_request = txn.core.request.as_deref().ok_or(TxnError::AlreadyFinal)?;
        let request = build::cancel_for(invite_request, reason).map_err(TxnError::Build)?;
        let to = txn.core.to;
        let cancel = self.send_request(now, to, request)?;
        if let Some(txn) = self.clients.get_mut(&invite) {
            txn.core.cancel = Some(cancel);
            if let ClientMachine::Invite(machine) = &txn.machine {
                let ctx = ctx!(self, now);
                machine.on_cancel_sent(&mut txn.core, &ctx);
            }
        }
        self.settle(now, TxnKey::Client(invite));
        Ok(cancel)
    }

    /// After anything touched transaction `key`: fires its timers that are due (a zero
    /// duration, e.g. Timer K on TCP, takes effect at once), then either removes it
    /// (terminated) or moves its entry in the timer index to its new earliest deadline.
    fn settle(&mut self, now: Instant, key: TxnKey) {
        let mut ctx = ctx!(self, now);
        let (terminated, scheduled, next) = match key {
            TxnKey::Client(k) => {
                let Some(txn) = self.clients.get_mut(&k) else {
                    return;
                };
                for _ in 0..MAX_FIRINGS_PER_CALL {
                    let Some(timer) = txn.core.timers.pop_expired(now) else {
                        break;
                    };
                    txn.on_timer(&mut ctx, timer);
                }
                let next = txn.core.timers.next_timeout();
                let scheduled = std::mem::replace(&mut txn.core.scheduled, next);
                (txn.is_terminated(), scheduled, next)
            }
            TxnKey::Server(k) => {
                let Some(txn) = self.servers.get_mut(&k) else {
                    return;
                };
                for _ in 0..MAX_FIRINGS_PER_CALL {
                    let Some(timer) = txn.core.timers.pop_expired(now) else {
                        break;
                    };
                    txn.on_timer(&mut ctx, timer);
                }
                let next = txn.core.timers.next_timeout();
                let scheduled = std::mem::replace(&mut txn.core.scheduled, next);
                (txn.is_terminated(), scheduled, next)
            }
        };
        if terminated {
            if let Some(at) = scheduled {
                self.deadlines.remove(&(at, key));
            }
            self.remove(key);
            return;
        }
        if scheduled != next {
            if let Some(at) = scheduled {
                self.deadlines.remove(&(at, key));
            }
            if let Some(at) = next {
                self.deadlines.insert((at, key));
            }
        }
    }

    /// Drops a terminated transaction and its index entries, and tells the TU.
    fn remove(&mut self, key: TxnKey) {
        match key {
            TxnKey::Client(k) => {
                let Some(txn) = self.clients.remove(&k) else {
                    return;
                };
                self.client_index.remove(&txn.core.matcher, k);
            }
            TxnKey::Server(k) => {
                let Some(txn) = self.servers.remove(&k) else {
                    return;
                };
                let m = &txn.core.id.key;
                match m {
                    ServerMatch::Branch { .. } => {
                        if self.branch_index.get(m) == Some(&k) {
                            self.branch_index.remove(m);
                        }
                    }
                    ServerMatch::Legacy(_) => {
                        if let Some(list) = self.legacy_index.get_mut(m) {
                            list.retain(|x| *x != k);
                            if list.is_empty() {
                                self.legacy_index.remove(m);
                            }
                        }
                    }
                }
            }
        }
        self.events.push_back(Event::Terminated { key });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use testkit::msg::{Ids, RequestText};
    use testkit::{Rng, VirtualClock};

    use super::*;
    use crate::message::{Framing, Message};
    use crate::transaction::peer::Transport;

    impl TxnLayer {
        /// The minimum over every transaction's table, the slow way.
        fn brute_force_timeout(&self) -> Option<Instant> {
            let c = self.clients.values().map(|t| t.core.timers.next_timeout());
            let s = self.servers.values().map(|t| t.core.timers.next_timeout());
            c.chain(s).flatten().min()
        }

        fn check_invariants(&self) {
            assert_eq!(self.poll_timeout(), self.brute_force_timeout());
            let mut with_deadline = 0;
            for t in self.clients.values() {
                assert_eq!(t.core.scheduled, t.core.timers.next_timeout());
                with_deadline += usize::from(t.core.scheduled.is_some());
                assert!(!t.is_terminated());
            }
            for t in self.servers.values() {
                assert_eq!(t.core.scheduled, t.core.timers.next_timeout());
                with_deadline += usize::from(t.core.scheduled.is_some());
                assert!(!t.is_terminated());
            }
            assert_eq!(self.deadlines.len(), with_deadline);
            assert_eq!(self.client_index.len(), self.clients.len());
            let legacy: usize = self.legacy_index.values().map(Vec::len).sum();
            assert_eq!(self.branch_index.len() + legacy, self.servers.len());
        }
    }

    fn parse_request(text: &str) -> Request {
        match Message::parse(Bytes::copy_from_slice(text.as_bytes()), Framing::Datagram) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn peer(rng: &mut Rng) -> Peer {
        let addr = "192.0.2.9:5060".parse().unwrap();
        if rng.chance(0.7) {
            Peer::udp(addr)
        } else {
            Peer::stream(Transport::Tcp, addr, Some(FlowId(rng.below(4))))
        }
    }

    fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize])
    }

    /// Random traffic for a long virtual time: after every step the timer index agrees with a
    /// scan of every transaction, and at the end every transaction is gone.
    #[test]
    fn long_run_poll_timeout_is_the_minimum_and_terminated_are_removed() {
        let mut clock = VirtualClock::new();
        let mut layer = TxnLayer::default();
        let mut rng = Rng::new(2024);
        let mut ids = Ids::new();
        let mut clients: Vec<ClientKey> = Vec::new();
        let mut servers: Vec<(ServerKey, Request)> = Vec::new();
        let mut received: Vec<(Peer, Request)> = Vec::new();
        let mut terminated = 0usize;
        let mut peak = 0usize;

        let drain = |layer: &mut TxnLayer,
                     clients: &mut Vec<ClientKey>,
                     servers: &mut Vec<(ServerKey, Request)>,
                     terminated: &mut usize| {
            while layer.poll_transmit().is_some() {}
            while let Some(e) = layer.poll_event() {
                match e {
                    Event::Request { key, request, .. } | Event::Cancel { key, request, .. } => {
                        servers.push((key, request))
                    }
                    Event::CancelSent { cancel, .. } => clients.push(cancel),
                    Event::Terminated { key } => {
                        *terminated += 1;
                        match key {
                            TxnKey::Client(k) => clients.retain(|c| *c != k),
                            TxnKey::Server(k) => servers.retain(|(s, _)| *s != k),
                        }
                    }
                    _ => {}
                }
            }
            layer.check_invariants();
        };

        for _ in 0..6_000 {
            let now = clock.now();
            match rng.below(10) {
                0 | 1 => {
                    let method = if rng.chance(0.5) { "INVITE" } else { "OPTIONS" };
                    let text =
                        RequestText::fresh(&mut ids, method, "sip:x@y.example", "UDP", "h:5060")
                            .build();
                    let key =
                        layer.send_request(now, peer(&mut rng), parse_request(&text)).unwrap();
                    clients.push(key);
                }
                2 => {
                    if let Some(key) = pick(&mut rng, &clients) {
                        let status = [100, 180, 200, 486][rng.below(4) as usize];
                        if let Some(req) = layer.client_request(key) {
                            let r = Response::for_request(req, status, "x");
                            layer.handle_response(now, peer(&mut rng), r);
                        }
                    }
                }
                3 | 4 => {
                    let method = if rng.chance(0.5) { "INVITE" } else { "MESSAGE" };
                    let mut text = RequestText::fresh(&mut ids, method, "sip:a@b", "UDP", "u:1");
                    if rng.chance(0.2) {
                        // An RFC 2543 peer.
                        text = text.raw_via(&format!("SIP/2.0/UDP old{}:5060", rng.below(50)));
                        let t = text.build();
                        let t = t.replacen(";branch=z9hG4bK", ";x=", 1);
                        received.push((peer(&mut rng), parse_request(&t)));
                    } else {
                        received.push((peer(&mut rng), parse_request(&text.build())));
                    }
                    let (from, req) = received.last().unwrap().clone();
                    layer.handle_request(now, from, req);
                }
                5 => {
                    // A retransmission, an ACK or a CANCEL of something received before.
                    if !received.is_empty() {
                        // Mostly recent ones, some long gone.
                        let back = rng.below(received.len().min(300) as u64) as usize;
                        let (from, req) = received[received.len() - 1 - back].clone();
                        match rng.below(3) {
                            0 => layer.handle_request(now, from, req),
                            1 if *req.method() == Method::Invite => {
                                let resp = Response::for_request(&req, 486, "x");
                                if let Ok(ack) = build::ack_for_non_2xx(&req, &resp) {
                                    layer.handle_request(now, from, ack);
                                }
                            }
                            _ if *req.method() == Method::Invite => {
                                if let Ok(c) = build::cancel_for(&req, None) {
                                    layer.handle_request(now, from, c);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                6 => {
                    if !servers.is_empty() {
                        let i = rng.below(servers.len() as u64) as usize;
                        let (key, req) = servers[i].clone();
                        let status = [100, 180, 200, 487, 603][rng.below(5) as usize];
                        let _ =
                            layer.send_response(now, key, Response::for_request(&req, status, "x"));
                    }
                }
                7 => {
                    if let Some(key) = pick(&mut rng, &clients)
                        && let Ok(CancelStatus::Sent(c)) = layer.cancel(now, key)
                    {
                        clients.push(c);
                    }
                    if rng.chance(0.1) {
                        let key = match (pick(&mut rng, &clients), servers.first()) {
                            (Some(c), _) => TxnKey::Client(c),
                            (None, Some((s, _))) => TxnKey::Server(*s),
                            _ => continue,
                        };
                        layer.handle_transport_error(now, key);
                    }
                }
                _ => {
                    let step = rng.duration_between(Duration::ZERO, Duration::from_millis(900));
                    let target = now + step;
                    // Stop at every deadline on the way, exactly.
                    while let Some(t) = layer.poll_timeout().filter(|t| *t <= target) {
                        clock.advance_to(t);
                        layer.handle_timeout(t);
                        drain(&mut layer, &mut clients, &mut servers, &mut terminated);
                        assert!(layer.poll_timeout().is_none_or(|n| n > t));
                    }
                    clock.advance_to(target);
                }
            }
            drain(&mut layer, &mut clients, &mut servers, &mut terminated);
            peak = peak.max(layer.len());
        }

        // Wind down: every open transaction gets its final, then time runs out.
        let now = clock.now();
        for (key, req) in servers.clone() {
            let _ = layer.send_response(now, key, Response::for_request(&req, 500, "x"));
        }
        for key in clients.clone() {
            if let Some(req) = layer.client_request(key).cloned() {
                layer.handle_response(now, peer(&mut rng), Response::for_request(&req, 500, "x"));
            }
        }
        drain(&mut layer, &mut clients, &mut servers, &mut terminated);
        while let Some(t) = layer.poll_timeout() {
            clock.advance_to(t);
            layer.handle_timeout(t);
            drain(&mut layer, &mut clients, &mut servers, &mut terminated);
        }
        assert!(peak > 200, "peak {peak}");
        assert!(terminated > 2_000, "{terminated}");
        assert_eq!(layer.len(), 0, "clients {clients:?} servers {}", servers.len());
        assert!(layer.deadlines.is_empty());
        assert!(layer.client_index.is_empty());
        assert!(layer.branch_index.is_empty());
        assert!(layer.legacy_index.is_empty());
    }
}
