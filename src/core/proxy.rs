//! The stateful proxy (RFC 3261 §16) on top of the transaction layer: the rules come from
//! `sip::proxy`, this module keeps the per-request state and talks to the transaction layer.
//!
//! For each proxied server transaction a [`Call`] holds the response context (§16.7), the
//! client transaction of every branch, and the targets still to try. Parallel targets (every
//! binding of an agent) are forked at once; serial targets (trunks, in failover order) are
//! tried one after the other when a branch ends with a status that allows it
//! (`sip::proxy::may_try_next`: 408, 5xx).
//!
//! # Reaching a target
//!
//! A registered binding that must be reached over its flow (RFC 5626: browsers, connection
//! transports) is sent to that flow. Otherwise the next hop of the URI decides: an IP address,
//! or a trunk's host name, whose addresses the core reads from a cache kept off the core
//! ([`super::resolve`]; one target per address). A name with no address ends the branch with
//! 503.
//!
//! In-dialog requests toward a browser carry its Contact (`*.invalid`) as Request-URI: the
//! edge finds the flow through the registration with that Contact.
//!
//! # Timer C (§16.6 step 11)
//!
//! Every INVITE branch has Timer C (three minutes, restarted by each provisional response);
//! when it fires, the branch is cancelled, which makes it end with 487 (or 408 from Timer B).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip::proxy::{
    self, HopHost, ListenAddr, NextHop, RecordRoute, Reject, ResponseContext, Upstream, Verdict,
};
use sip::transaction::{ClientKey, Peer, ServerKey};
use sip::{FastMap, HeaderName, Method, Request, Response};

use super::emergency::EmergencyCall;
use super::{Core, auth, stateless_tag};
use crate::admin::metrics::Dir;
use crate::routing::{Dialplan, InboundTarget, normalise};

/// Timer C: more than three minutes (RFC 3261 §16.6 step 11).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// Where one branch goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The Request-URI of the branch (`None`: keep the request's, for routed requests).
    pub uri: Option<String>,
    /// A flow (or address) the branch must use, whatever the URI says.
    pub peer: Option<Peer>,
    /// An emergency call's trunk (an index into its dialplan's trunks): the branch's request
    /// and Request-URI are built for that trunk ([`super::emergency::outgoing`]).
    pub trunk: Option<usize>,
    /// The agent a registered binding belongs to (for counting the agent's calls).
    pub agent: Option<String>,
    /// The resolved address of the trunk host name the branch goes to (one target per
    /// address, [`super::resolve`]); `None`: the next hop's own address.
    pub addr: Option<std::net::IpAddr>,
    /// The port at `addr` when an SRV record gave it; `None`: the next hop's port.
    pub port: Option<u16>,
    /// The transport toward `addr` when DNS chose it (a NAPTR record, RFC 3263 §4.1);
    /// `None`: the next hop's.
    pub transport: Option<sip::transaction::Transport>,
}

impl Target {
    /// A registered binding: its Contact, over its flow when it must be reached that way
    /// (RFC 5626), and the agent it belongs to.
    pub fn binding(b: &crate::registrar::Binding) -> Target {
        Target {
            uri: Some(b.contact.clone()),
            peer: b.via_flow.then_some(b.source),
            trunk: None,
            agent: Some(b.aor.clone()),
            addr: None,
            port: None,
            transport: None,
        }
    }

    /// A Request-URI (toward a trunk), the next hop resolved from it.
    pub fn uri(uri: String) -> Target {
        Target {
            uri: Some(uri),
            peer: None,
            trunk: None,
            agent: None,
            addr: None,
            port: None,
            transport: None,
        }
    }
}

/// How a request is to be proxied.
#[derive(Debug)]
pub enum Routing {
    /// All targets at once (forking to every binding of an agent).
    Parallel(Vec<Target>),
    /// One after the other, the next when a branch ends with 408 or 5xx (trunk failover).
    Serial(VecDeque<Target>),
    /// Answer locally.
    Answer(u16, &'static str),
    /// Answer with this response (a challenge).
    Respond(Box<Response>),
    /// A PSAP callback: every binding of the leasing agent at once, then the fallback targets
    /// one after the other, moving on after any failure.
    Psap { first: Vec<Target>, fallback: VecDeque<Target> },
}

/// A proxied request: its response context and branches.
#[derive(Debug)]
pub struct Call {
    /// The request as received; let go of once the final response went up, unless the call is
    /// an emergency call (an INVITE's record lives on for the 32 s a 2xx may still come, and
    /// needs only the fields below).
    request: Option<Arc<Request>>,
    method: Method,
    call_id: Box<str>,
    /// The request was sent within a dialog (a re-INVITE).
    in_dialog: bool,
    admitted: proxy::Admitted,
    ctx: ResponseContext,
    /// The listen address the request arrived on (for Record-Route).
    inbound: ListenAddr,
    /// The client transaction of each branch, by fork index (`None`: could not be sent).
    branches: Vec<Option<ClientKey>>,
    remaining: VecDeque<Target>,
    record_route: bool,
    /// The emergency call this INVITE makes ([`super::emergency`]).
    emergency: Option<Box<EmergencyCall>>,
    /// A PSAP callback: `Priority: psap-callback` toward the agent.
    psap: bool,
    /// The next target is tried after any failure, not only 408 and 5xx (emergency calls and
    /// PSAP callbacks).
    failover_any: bool,
    /// The connection the request came over (stream transports).
    from_flow: Option<sip::transaction::FlowId>,
    /// Where the request came from (its flow on stream transports).
    source: Peer,
    /// The agent who made the call (authenticated), and the agent each branch rings (by fork
    /// index): who is on the call once it is answered.
    caller: Option<String>,
    branch_agents: Vec<Option<String>>,
    /// A header the edge changed on the way out (an emergency call's From, the callback
    /// number; or the agent's To on a request from the trunk's side) and its value as
    /// received: the responses get it back.
    restore: Option<(HeaderName, bytes::Bytes)>,
    /// The call is counted as answered ([`super::busy::CallsOf`]): a 2xx retransmitted after
    /// the BYE (its transaction lives on for Timer M) must not count the agents busy again.
    counted: bool,
}

/// Proxy state kept by the core.
#[derive(Debug, Default)]
pub struct ProxyState {
    /// Boxed: a call's record is large and lives as long as its transactions (32 s after a
    /// 2xx); unboxed, every growth of the map would copy them all.
    calls: FastMap<ServerKey, Box<Call>>,
    by_client: FastMap<ClientKey, (ServerKey, u32)>,
    /// Timer C deadlines: the live one per branch, and an ordered index (entries whose
    /// deadline no longer matches `timer_c` are stale and skipped).
    timer_c: FastMap<ClientKey, Instant>,
    timer_c_index: BTreeSet<(Instant, ClientKey)>,
    /// Emergency branches waiting for a provisional response, until `failover_after`.
    failover: HashMap<ClientKey, Instant>,
    /// Emergency calls waiting for the store, until they leave anyway. Kept apart from `calls`
    /// (a few entries, not every call in progress): the core asks for the next deadline on
    /// every turn of its loop.
    waits: HashMap<ServerKey, Instant>,
}

impl ProxyState {
    /// The next Timer C, failover or emergency store-wait deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timer_c_index
            .first()
            .map(|(t, _)| *t)
            .into_iter()
            .chain(self.failover.values().copied())
            .chain(self.waits.values().copied())
            .min()
    }

    /// The emergency part of call `key`.
    pub(super) fn emergency_mut(&mut self, key: ServerKey) -> Option<&mut EmergencyCall> {
        self.calls.get_mut(&key)?.emergency.as_deref_mut()
    }

    /// The dialog record of the emergency call of `key` (its Call-ID with it), for when it is
    /// answered.
    pub(super) fn emergency_dialog(
        &self,
        key: ServerKey,
    ) -> Option<(String, super::emergency::EmergencyDialog)> {
        let call = self.calls.get(&key)?;
        let em = call.emergency.as_ref()?;
        let headers = call.request.as_ref()?.headers();
        let call_id = call.call_id.to_string();
        let from_tag = headers.from_tag().ok().flatten().map(str::to_owned);
        Some((
            call_id,
            super::emergency::EmergencyDialog {
                agent: em.caller.agent.clone(),
                flow: call.from_flow,
                callback: em.callback.clone(),
                from_tag,
                agent_from: em.original_from.clone(),
            },
        ))
    }

    /// Emergency calls still waiting for the store at `now`.
    pub(super) fn due_emergency_waits(&self, now: Instant) -> Vec<ServerKey> {
        if self.waits.is_empty() {
            return Vec::new();
        }
        self.waits.iter().filter(|(_, at)| **at <= now).map(|(k, _)| *k).collect()
    }

    /// Emergency call `key` waits for the store until `until`.
    pub(super) fn wait_for_store(&mut self, key: ServerKey, until: Instant) {
        self.waits.insert(key, until);
    }

    /// Emergency call `key` no longer waits.
    pub(super) fn stop_waiting(&mut self, key: ServerKey) {
        self.waits.remove(&key);
    }

    fn arm_timer_c(&mut self, key: ClientKey, at: Instant) {
        self.timer_c.insert(key, at);
        self.timer_c_index.insert((at, key));
    }

    fn disarm_timer_c(&mut self, key: ClientKey) {
        if let Some(at) = self.timer_c.remove(&key) {
            self.timer_c_index.remove(&(at, key));
        }
    }

    /// Proxied requests still waiting for their final response (shutdown waits for them; a
    /// call whose final went up only lingers for late 2xx retransmissions).
    pub fn unanswered(&self) -> usize {
        self.calls.values().filter(|c| !c.ctx.final_sent()).count()
    }
}

impl Core {
    /// The listen address a message from `from` arrived on, or the one to send to it from.
    pub(super) fn local_addr_for(&self, peer: &Peer) -> Option<ListenAddr> {
        let hop = NextHop {
            transport: peer.transport,
            host: HopHost::Ip(peer.addr.ip()),
            port: peer.addr.port(),
            resolve: proxy::Resolve::Nothing,
        };
        self.local.outbound_for(&hop).cloned()
    }

    /// Where to send toward `hop`, and from which listen address: an IP address, or a name's
    /// first cached address ([`super::resolve`]).
    pub(super) fn resolve_hop(&self, hop: &NextHop) -> Option<(Peer, ListenAddr)> {
        self.resolve_hop_at(hop, None, None, None)
    }

    fn reject(&mut self, now: Instant, key: ServerKey, req: &Request, reject: &Reject) {
        match reject.response(req, &stateless_tag(req)) {
            Some(r) => self.respond(now, key, req, r),
            None => {
                self.unanswered.remove(&key);
            }
        }
    }

    /// Proxies a request that is not for the edge itself (RFC 3261 §16).
    pub(super) fn proxy_request(
        &mut self,
        now: Instant,
        key: ServerKey,
        from: Peer,
        mut req: Request,
    ) {
        self.initial_caller = None;
        self.pre_authenticated = None;
        if let Err(reject) = proxy::fix_top_via(&mut req, from.addr) {
            return self.reject(now, key, &req, &reject);
        }
        let admitted = match proxy::validate(&req, &self.local) {
            Ok(Verdict::Forward(a)) => a,
            Ok(Verdict::AnswerOptions) => return self.reply(now, key, &req, 200, "OK"),
            Err(reject) => return self.reject(now, key, &req, &reject),
        };
        // Our own Route values go (RFC 3261 §16.4); what reached us by a route set and what by
        // its Request-URI is told apart by the dialog (To-tag) below, not by the Route.
        if let Err(reject) = proxy::preprocess_routes(&mut req, &self.local) {
            return self.reject(now, key, &req, &reject);
        }
        let in_dialog = req.in_dialog();
        let mut emergency = None;
        let mut restore = None;
        if in_dialog && self.targets_me(&req) {
            return self.reply(now, key, &req, 481, "Call/Transaction Does Not Exist");
        }
        let routing = if in_dialog {
            restore = self.emergency_in_dialog(&mut req);
            if let Some(r) = self.media_in_dialog(&mut req) {
                // A new offer the media anchor cannot relay (src/core/media.rs).
                return self.respond(now, key, &req, r);
            }
            // A losing fork's BYE (another 2xx's dialog, RFC 3261 §13.2.2.4) ends nothing of
            // the call's (src/core/busy.rs).
            if *req.method() == Method::Bye && !self.calls_of.other_dialog_of(&req) {
                self.calls_of.ended(req.headers().call_id().unwrap_or_default());
                self.history.ended(now, req.headers().call_id().unwrap_or_default());
            }
            // Loose routing: the route set or the Request-URI decides (§16.4, §16.6 step 7).
            Routing::Serial(VecDeque::from([self.in_dialog_target(now, &req)]))
        } else {
            // An initial request is routed by the edge's own rules whatever Route it carries:
            // its Route to the edge is consumed above, and one beyond the edge is not followed
            // (an unauthenticated relay to any host otherwise; RFC 3261 §16.4 leaves the policy
            // to the proxy). Emergency trunks get their Route when their branch is built.
            if req.headers().contains(HeaderName::Route) {
                req.headers_mut().remove_all(HeaderName::Route);
            }
            let plan = self.dialplans.current();
            // Step 3: emergency classification, before authentication and the dialplan.
            let classified = match self.trunk_for_source(&plan, from.addr.ip()) {
                Some(_) => None,
                None => self.classify_emergency(now, &req, &from, &plan),
            };
            match classified {
                Some((recognised, caller)) => {
                    self.initial_caller = caller.agent.clone();
                    let (routing, mut call) = self.start_emergency(now, recognised, caller, plan);
                    call.original_from =
                        req.headers().get(HeaderName::From).map(bytes::Bytes::copy_from_slice);
                    // The agent's dialog knows its own From, not the callback number.
                    restore = call.original_from.clone().map(|f| (HeaderName::From, f));
                    call.softphone_location = req.headers().contains(HeaderName::Geolocation);
                    emergency = Some(call);
                    routing
                }
                None => self.route_initial(now, &req, &from),
            }
        };
        let psap = matches!(routing, Routing::Psap { .. });
        if !in_dialog && !psap && emergency.is_none() {
            self.history_begin(now, key, &req, &from, &routing);
        }
        // A browser's offer the media anchor cannot relay (issue 7); an emergency call or a
        // PSAP callback is passed on as it is rather than refused.
        if !in_dialog
            && !psap
            && emergency.is_none()
            && let Some(r) = self.media_refusal(&req)
        {
            return self.respond(now, key, &req, r);
        }
        // Overload: ordinary new calls past `max_dialogs` (requests still waiting for their
        // answer plus answered calls of agents) are refused at once, so that the calls in
        // progress and every emergency call keep the edge's time.
        if !in_dialog
            && !psap
            && emergency.is_none()
            && *req.method() == Method::Invite
            && self.unanswered.len() + self.calls_of.len() >= self.config.max_dialogs
        {
            let mut r = Response::for_request(&req, 503, "Service Unavailable");
            r.headers_mut().push(HeaderName::RetryAfter, "5");
            return self.respond(now, key, &req, r);
        }
        if psap || emergency.is_some() {
            self.config.urgent.insert(req.headers().call_id().unwrap_or_default(), now);
        }
        let failover_any = psap || emergency.is_some();
        let (first, remaining) = match routing {
            Routing::Answer(status, reason) => return self.reply(now, key, &req, status, reason),
            Routing::Respond(response) => return self.respond(now, key, &req, *response),
            Routing::Parallel(t) if t.is_empty() => {
                return self.reply(now, key, &req, 480, "Temporarily Unavailable");
            }
            Routing::Parallel(t) => (t, VecDeque::new()),
            Routing::Psap { first, mut fallback } if first.is_empty() => match fallback.pop_front()
            {
                Some(t) => (vec![t], fallback),
                None => return self.reply(now, key, &req, 480, "Temporarily Unavailable"),
            },
            Routing::Psap { first, fallback } => (first, fallback),
            // An emergency call's first trunk leaves once the store work is done.
            Routing::Serial(q) if emergency.is_some() => {
                if q.is_empty() {
                    let to_tag = stateless_tag(&req);
                    let r = self.unreachable_response(&req, &to_tag);
                    return self.respond(now, key, &req, r);
                }
                (Vec::new(), q)
            }
            Routing::Serial(mut q) => match q.pop_front() {
                Some(t) => (vec![t], q),
                None => return self.reply(now, key, &req, 404, "Not Found"),
            },
        };
        let Some(inbound) = self.local_addr_for(&from) else {
            tracing::warn!(%from, "no listen address for an incoming request");
            return self.reply(now, key, &req, 500, "Server Internal Error");
        };
        // Dialog-creating requests are record-routed so that the dialog stays on the edge
        // (both sides, RFC 5658, when the two legs use different transports).
        let record_route = !in_dialog
            && matches!(
                req.method(),
                Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
            );
        let req = Arc::new(req);
        let mut ctx = ResponseContext::new(Arc::clone(&req), stateless_tag);
        if failover_any {
            ctx.try_every_target();
        }
        let waiting = emergency.as_ref().map(|e| (e.wait_until, e.caller.agent.clone()));
        let call = Call {
            method: req.method().clone(),
            call_id: req.headers().call_id().unwrap_or_default().into(),
            in_dialog: req.in_dialog(),
            request: Some(req),
            admitted,
            ctx,
            inbound,
            branches: Vec::new(),
            remaining,
            record_route,
            emergency: emergency.map(Box::new),
            psap,
            failover_any,
            from_flow: from.flow,
            source: from,
            caller: self.initial_caller.take(),
            branch_agents: Vec::new(),
            restore,
            counted: false,
        };
        self.proxy.calls.insert(key, Box::new(call));
        if let Some((until, agent)) = waiting {
            // An emergency call: its first trunk waits for the store work of a known agent
            // (lease, notification); an unknown caller has none and leaves at once.
            match agent {
                Some(agent) => {
                    self.proxy.wait_for_store(key, until);
                    self.dnd.begin(&agent);
                    if let Some(em) = self.proxy.calls.get(&key).and_then(|c| c.emergency.as_ref())
                    {
                        self.prepare_emergency(key, em);
                    }
                }
                None => self.release_emergency(now, key),
            }
            return;
        }
        for target in first {
            self.fork(now, key, target);
        }
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        if call.remaining.is_empty() && !call.ctx.is_closed() {
            let outcome = call.ctx.close();
            self.apply(now, key, outcome);
        }
    }

    /// Forks the next serial target of call `key`, and closes the context after the last.
    pub(super) fn next_target(&mut self, now: Instant, key: ServerKey) {
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        let Some(next) = call.remaining.pop_front() else {
            if !call.ctx.is_closed() {
                let outcome = call.ctx.close();
                self.apply(now, key, outcome);
            }
            return;
        };
        self.fork(now, key, next);
        if let Some(call) = self.proxy.calls.get_mut(&key)
            && call.remaining.is_empty()
            && !call.ctx.is_closed()
        {
            let outcome = call.ctx.close();
            self.apply(now, key, outcome);
        }
    }

    /// Adds a branch toward `target` and starts its client transaction.
    fn fork(&mut self, now: Instant, key: ServerKey, target: Target) {
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        let Some(index) = call.ctx.add_branch() else { return };
        let source = call.source;
        call.branch_agents.push(target.agent.clone());
        self.history_forked(key, index, &target);
        let sent = self.branch_request(key, index, &target).map(|(peer, mut request)| {
            // An anchored call's SDP for this branch (src/core/media.rs).
            self.media_branch(index, &target, source, peer, &mut request);
            self.txn.send_request(now, peer, request)
        });
        let failed = match sent {
            Ok(sent) => match sent {
                Ok(client) => {
                    let Some(call) = self.proxy.calls.get_mut(&key) else { return };
                    call.branches.push(Some(client));
                    let method = call.method.clone();
                    let failover_after = call
                        .emergency
                        .as_ref()
                        .filter(|_| target.trunk.is_some())
                        .map(|e| e.plan.emergency.failover_after);
                    self.proxy.by_client.insert(client, (key, index));
                    if method == Method::Invite {
                        self.proxy.arm_timer_c(client, now + TIMER_C);
                    }
                    if let Some(after) = failover_after {
                        self.proxy.failover.insert(client, now + after);
                    }
                    self.config.metrics.request(Dir::Out, &method);
                    return;
                }
                Err(e) => format!("{e}"),
            },
            Err(why) => why,
        };
        tracing::debug!(reason = %failed, "branch not sent");
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        // Keep the branch numbering aligned with `branches` (indexes are fork numbers).
        call.branches.push(None);
        let outcome = call.ctx.on_transport_error(index);
        self.apply(now, key, outcome);
    }

    /// The copy of the request for one branch, and where to send it.
    fn branch_request(
        &self,
        key: ServerKey,
        index: u32,
        target: &Target,
    ) -> Result<(Peer, Request), String> {
        let call = self.proxy.calls.get(&key).ok_or("no call")?;
        let request = call.request.as_ref().ok_or("call already answered")?;
        let prepared = match (&call.emergency, target.trunk) {
            (Some(em), Some(i)) => {
                let trunk = em.plan.trunks.get(i).ok_or("no such trunk")?;
                let (request, uri) =
                    super::emergency::outgoing(request, em, trunk, &self.config.registrar.domain);
                proxy::prepare(&request, &call.admitted, Some(&uri))
            }
            _ if call.psap && target.trunk.is_none() && target.uri.is_some() => {
                let mut request = Request::clone(request);
                request.headers_mut().remove_all(HeaderName::Priority);
                request.headers_mut().push(HeaderName::Priority, "psap-callback");
                proxy::prepare(&request, &call.admitted, target.uri.as_deref())
            }
            _ => proxy::prepare(request, &call.admitted, target.uri.as_deref()),
        }
        .map_err(|r| r.reason().into_owned())?;
        let (peer, out) = match target.peer {
            Some(peer) => {
                let out = self.local_addr_for(&peer).ok_or("no listen address for the flow")?;
                (peer, out)
            }
            None => self
                .resolve_hop_at(prepared.next_hop(), target.addr, target.port, target.transport)
                .ok_or("next hop is a name with no address, or has no listen address")?,
        };
        // Emergency calls and PSAP callbacks mark their dialog's route (`;em`), so that the
        // transports put its in-dialog requests in the core's priority lane.
        let marker = super::emergency::route_marker();
        let params = (call.emergency.is_some() || call.psap).then_some(marker);
        let rr = call.record_route.then_some(RecordRoute { inbound: &call.inbound, params });
        Ok((peer, prepared.finish(&out, index, rr.as_ref())))
    }

    /// Acts on what the response context decided.
    fn apply(&mut self, now: Instant, key: ServerKey, mut outcome: proxy::Outcome) {
        if let Some(response) = &outcome.forward
            && response.status() >= 300
            && let Some(call) = self.proxy.calls.get(&key)
            && call.emergency.as_ref().is_some_and(|e| !e.reached)
            && let Some(request) = &call.request
        {
            let tag = stateless_tag(request);
            outcome.forward = Some(self.unreachable_response(request, &tag));
        }
        if let Some(response) = outcome.forward {
            let is_final = response.status() >= 200;
            if is_final {
                self.emergency_answered(key, response.status());
                self.history_final(now, key, response.status());
                if !self.media_calls.is_empty()
                    && let Some(call) = self.proxy.calls.get(&key)
                    && call.method == Method::Invite
                    && !call.in_dialog
                {
                    let call_id = call.call_id.to_string();
                    self.media_final(&call_id, response.status());
                }
                if response.status() >= 300
                    && let Some(call) = self.proxy.calls.get(&key)
                    && call.psap
                {
                    self.config.urgent.end(&call.call_id, now);
                }
            }
            self.config.metrics.response(Dir::Out, response.status());
            if let Err(e) = self.txn.send_response(now, key, response) {
                tracing::debug!(error = %e, "response not forwarded");
            }
            if is_final {
                self.unanswered.remove(&key);
                // No target will be tried any more; an INVITE's record lives on for 32 s.
                if let Some(call) = self.proxy.calls.get_mut(&key) {
                    call.remaining = VecDeque::new();
                    if call.emergency.is_none() {
                        call.request = None;
                    }
                }
            }
        }
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        let to_cancel: Vec<ClientKey> = outcome
            .cancel
            .iter()
            .filter_map(|i| call.branches.get(*i as usize).copied().flatten())
            .collect();
        for client in to_cancel {
            self.cancel_branch(now, client);
        }
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        if let Some(status) = outcome.branch_ended
            && !call.ctx.is_closed()
        {
            let may_fail_over = proxy::may_try_next(status) || call.failover_any;
            if may_fail_over && !call.remaining.is_empty() && call.ctx.pending().is_empty() {
                tracing::info!(status, "failing over to the next target");
                if call.emergency.is_some() {
                    crate::admin::metrics::EmergencyMetrics::inc(
                        &self.config.metrics.emergency.failovers,
                    );
                }
                self.next_target(now, key);
            } else if call.ctx.pending().is_empty() {
                call.remaining.clear();
                let outcome = call.ctx.close();
                self.apply(now, key, outcome);
            }
        }
        self.maybe_forget(key);
    }

    fn cancel_branch(&mut self, now: Instant, client: ClientKey) {
        self.proxy.disarm_timer_c(client);
        if let Err(e) = self.txn.cancel(now, client) {
            tracing::debug!(error = %e, "cancel not sent");
        }
    }

    /// Drops a call once its final response went up and nothing more can go up: for an INVITE,
    /// once no branch can answer any more (a 2xx retransmitted or from another fork is
    /// forwarded until its transaction ends, RFC 6026); for any other request at once (late
    /// answers of its branches are absorbed by their transactions or dropped).
    fn maybe_forget(&mut self, key: ServerKey) {
        let done = self.proxy.calls.get(&key).is_some_and(|c| {
            c.ctx.final_sent()
                && (c.method != Method::Invite
                    || c.branches.iter().flatten().all(|b| !self.proxy.by_client.contains_key(b)))
        });
        if done {
            self.proxy.calls.remove(&key);
        }
    }

    /// A response on a branch's client transaction.
    pub(super) fn branch_response(
        &mut self,
        now: Instant,
        client: ClientKey,
        mut response: Response,
    ) {
        let Some(&(key, index)) = self.proxy.by_client.get(&client) else { return };
        match proxy::pop_via(&mut response, &self.local) {
            Ok(Upstream::Forward { .. }) => {}
            Ok(Upstream::Local { .. }) | Err(_) => return,
        }
        let status = response.status();
        self.proxy.failover.remove(&client);
        if let Some(call) = self.proxy.calls.get_mut(&key)
            && let Some(em) = call.emergency.as_mut()
        {
            em.reached = true;
        }
        if let Some(call) = self.proxy.calls.get(&key)
            && let Some((name, value)) = &call.restore
        {
            response.headers_mut().set(*name, value.clone());
        }
        if (101..200).contains(&status) && self.proxy.timer_c.contains_key(&client) {
            self.proxy.disarm_timer_c(client);
            self.proxy.arm_timer_c(client, now + TIMER_C);
        } else if status >= 200 {
            self.proxy.disarm_timer_c(client);
        }
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        if (200..300).contains(&status) && call.method == Method::Invite {
            if !std::mem::replace(&mut call.counted, true) {
                let agents: Vec<String> = call
                    .caller
                    .iter()
                    .chain(call.branch_agents.get(index as usize).into_iter().flatten())
                    .cloned()
                    .collect();
                let tag = response.headers().to_tag().ok().flatten().filter(|_| !call.in_dialog);
                self.calls_of.answered(call.call_id.to_string(), agents, tag, now);
            }
            self.history_answered(now, key, index);
        }
        let mut hang_up = None;
        if !self.media_calls.is_empty()
            && let Some(call) = self.proxy.calls.get(&key)
        {
            let method = call.method.clone();
            let in_dialog = call.in_dialog;
            let call_id = call.call_id.to_string();
            hang_up = self.media_response(&method, &call_id, in_dialog, index, &mut response);
        }
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        let outcome = call.ctx.on_response(index, response);
        self.apply(now, key, outcome);
        if let Some(call_id) = hang_up {
            self.media_bad_answer(now, &call_id);
        }
    }

    /// A branch timed out (Timer B/F: 408) or could not be sent (503).
    pub(super) fn branch_failed(&mut self, now: Instant, client: ClientKey, timeout: bool) {
        let Some(&(key, index)) = self.proxy.by_client.get(&client) else { return };
        self.proxy.disarm_timer_c(client);
        self.proxy.failover.remove(&client);
        let Some(call) = self.proxy.calls.get_mut(&key) else { return };
        let outcome =
            if timeout { call.ctx.on_timeout(index) } else { call.ctx.on_transport_error(index) };
        self.apply(now, key, outcome);
    }

    /// A client transaction ended: forget it, and the call when it was the last.
    pub(super) fn branch_terminated(&mut self, client: ClientKey) {
        self.proxy.disarm_timer_c(client);
        self.proxy.failover.remove(&client);
        if let Some((key, _)) = self.proxy.by_client.remove(&client) {
            self.maybe_forget(key);
        }
    }

    /// A CANCEL for a request being proxied (§16.10): no more targets, cancel every branch.
    pub(super) fn cancel_call(&mut self, now: Instant, invite: ServerKey) {
        let Some(call) = self.proxy.calls.get_mut(&invite) else { return };
        call.remaining.clear();
        if call.branches.is_empty()
            && !call.ctx.final_sent()
            && let Some(request) = call.request.clone()
        {
            // Cancelled while an emergency INVITE waited for the store: nothing left yet.
            self.emergency_answered(invite, 487);
            self.proxy.calls.remove(&invite);
            return self.reply(now, invite, &request, 487, "Request Terminated");
        }
        let pending: Vec<ClientKey> = call
            .ctx
            .cancel()
            .iter()
            .filter_map(|i| call.branches.get(*i as usize).copied().flatten())
            .collect();
        let outcome =
            if call.ctx.is_closed() { proxy::Outcome::default() } else { call.ctx.close() };
        for client in pending {
            self.cancel_branch(now, client);
        }
        self.apply(now, invite, outcome);
    }

    /// Timer C fired for the branches due by `now`: cancel them.
    pub(super) fn fire_timer_c(&mut self, now: Instant) {
        while let Some(&(at, client)) = self.proxy.timer_c_index.first() {
            if at > now {
                break;
            }
            self.proxy.timer_c_index.remove(&(at, client));
            if self.proxy.timer_c.get(&client) == Some(&at) {
                self.proxy.timer_c.remove(&client);
                tracing::info!("Timer C fired: cancelling the branch");
                if let Err(e) = self.txn.cancel(now, client) {
                    tracing::debug!(error = %e, "Timer C cancel not sent");
                }
            }
        }
    }

    /// Emergency branches without a provisional response by `failover_after`: the trunk is
    /// given up (its INVITE cancelled once it answers, RFC 3261 §9.1) and the next one tried.
    pub(super) fn fire_failover(&mut self, now: Instant) {
        if self.proxy.failover.is_empty() {
            return;
        }
        let due: Vec<ClientKey> =
            self.proxy.failover.iter().filter(|(_, at)| **at <= now).map(|(k, _)| *k).collect();
        for client in due {
            self.proxy.failover.remove(&client);
            let Some(&(key, index)) = self.proxy.by_client.get(&client) else { continue };
            tracing::warn!("emergency trunk sent no provisional response in time: trying the next");
            self.cancel_branch(now, client);
            let Some(call) = self.proxy.calls.get_mut(&key) else { continue };
            let outcome = call.ctx.on_timeout(index);
            self.apply(now, key, outcome);
        }
    }

    /// Forwards an ACK for a 2xx (a request of its own, outside any transaction, §16.6).
    pub(super) fn forward_ack(&mut self, now: Instant, from: Peer, mut req: Request) {
        if proxy::fix_top_via(&mut req, from.addr).is_err() {
            return;
        }
        let Ok(Verdict::Forward(admitted)) = proxy::validate(&req, &self.local) else { return };
        if proxy::preprocess_routes(&mut req, &self.local).is_err() || self.targets_me(&req) {
            // An ACK to ourselves acknowledges a final response nobody keeps state for.
            return;
        }
        self.emergency_in_dialog(&mut req);
        // The answer to the edge's delayed offer comes out of the ACK (src/core/media.rs).
        let hang_up = self.media_ack(&mut req);
        let target = self.in_dialog_target(now, &req);
        let Ok(prepared) = proxy::prepare(&req, &admitted, None) else { return };
        let (peer, out) = match target.peer {
            Some(p) => match self.local_addr_for(&p) {
                Some(out) => (p, out),
                None => return,
            },
            None => {
                let Some(hop) = self.resolve_hop(prepared.next_hop()) else { return };
                hop
            }
        };
        self.config.metrics.request(Dir::Out, &Method::Ack);
        self.txn.send_stateless(peer, prepared.finish(&out, 0, None).to_bytes());
        if let Some(call_id) = hang_up {
            self.media_bad_answer(now, &call_id);
        }
    }

    /// Forwards a response no client transaction claimed (a late 2xx retransmission).
    pub(super) fn forward_stray(&mut self, mut response: Response) {
        let Ok(Upstream::Forward { reply_to, .. }) = proxy::pop_via(&mut response, &self.local)
        else {
            return;
        };
        let hop = match reply_to {
            proxy::ReplyTo::Address(hop) | proxy::ReplyTo::Connection { fallback: hop } => hop,
        };
        // On a connection transport, the connection the request came in on is reused when the
        // edge opened it; otherwise the response is lost with it (RFC 3261 §18.2.2).
        let Some((peer, _)) = self.resolve_hop(&hop) else { return };
        self.txn.send_stateless(peer, response.to_bytes());
    }

    /// Whether `req` would go to the edge itself: no Route left and a Request-URI naming one of
    /// its listen addresses. Forwarding it would loop (a 482 from ourselves): an ACK for a 503
    /// the transports sent statelessly (overload) has the INVITE's Request-URI, and a client
    /// that learnt no Contact sends its BYE there too.
    fn targets_me(&self, req: &Request) -> bool {
        !req.headers().contains(HeaderName::Route)
            && matches!(req.uri(), Ok(sip::Uri::Sip(u)) if self.local.is_me(&u))
    }

    /// Where an in-dialog (or pre-routed) request goes: its route set or Request-URI, over
    /// the registered flow when the Request-URI is a browser's Contact.
    fn in_dialog_target(&self, now: Instant, req: &Request) -> Target {
        let routed = req.headers().contains(HeaderName::Route);
        let peer = if routed { None } else { self.location.flow_for_contact(now, req.uri_str()) };
        Target {
            uri: None,
            peer,
            trunk: None,
            agent: None,
            addr: None,
            port: None,
            transport: None,
        }
    }

    /// Where an initial request goes (RFC 3261 §16.5), after the caller is known: a request
    /// from a trunk is inbound (the `[[inbound]]` rules); one from a `[[trusted]]` network or
    /// an authenticated agent is outbound (an agent of this edge, else the `[[route]]` rules).
    /// Anyone else is challenged (407).
    fn route_initial(&mut self, now: Instant, req: &Request, from: &Peer) -> Routing {
        let plan = self.dialplans.current();
        let ip = from.addr.ip();
        if self.trunk_for_source(&plan, ip).is_some() {
            return self.route_inbound(now, req, &plan);
        }
        if let Some(agent) = self.pre_authenticated.take() {
            self.initial_caller = Some(agent);
        } else if !plan.is_trusted(ip) {
            match self.auth.check(req) {
                auth::Outcome::Agent(agent) => self.initial_caller = Some(agent),
                auth::Outcome::Challenge(challenges) => {
                    let mut r = Response::for_request(req, 407, "Proxy Authentication Required");
                    for c in challenges {
                        r.headers_mut().push(auth::Auth::challenge_header(req), c);
                    }
                    return Routing::Respond(Box::new(r));
                }
                auth::Outcome::Bad(reason) => return Routing::Answer(400, reason),
                auth::Outcome::Forbidden => return Routing::Answer(403, "Forbidden"),
            }
        }
        self.route_outbound(now, req, &plan)
    }

    /// The user part of the Request-URI (a SIP URI's user, a `tel:` number), decoded.
    fn dialled(req: &Request) -> Option<String> {
        match req.uri().ok()? {
            sip::Uri::Sip(u) => {
                u.user_decoded().and_then(|d| String::from_utf8(d.into_owned()).ok())
            }
            sip::Uri::Tel(t) => Some(t.number.to_owned()),
            _ => None,
        }
    }

    fn addressed_to_us(&self, req: &Request) -> bool {
        matches!(req.uri(), Ok(sip::Uri::Sip(u)) if self.local.serves(&u) || self.local.is_me(&u))
    }

    /// A call from a trunk: the DID decides (exact, then patterns); an agent named directly in
    /// the Request-URI is reached too.
    fn route_inbound(&self, now: Instant, req: &Request, plan: &Dialplan) -> Routing {
        let Some(user) = Self::dialled(req) else { return Routing::Answer(404, "Not Found") };
        let did = normalise(&user, None);
        if *req.method() == Method::Invite
            && let Some(routing) = self.route_psap(now, &did, plan)
        {
            return routing;
        }
        match plan.inbound(&did) {
            Some(InboundTarget::Agent(agent)) => self.route_agent(now, agent),
            Some(InboundTarget::Group(group)) => self.route_group(now, group),
            Some(InboundTarget::Trunk(name)) => match plan.trunk(name) {
                Some(t) => {
                    let targets =
                        self.trunk_targets(t, Target::uri(t.request_uri(&did, req.encoded_len())));
                    if targets.is_empty() {
                        return Routing::Answer(503, "Service Unavailable");
                    }
                    Routing::Serial(targets.into())
                }
                None => Routing::Answer(404, "Not Found"),
            },
            Some(InboundTarget::Number(_)) | None if self.addressed_to_us(req) => {
                self.route_agent(now, &user)
            }
            Some(InboundTarget::Number(_)) | None => Routing::Answer(404, "Not Found"),
        }
    }

    /// A call from an agent or a trusted network: another agent of this edge, else the first
    /// matching route's trunks in failover order.
    fn route_outbound(&self, now: Instant, req: &Request, plan: &Dialplan) -> Routing {
        let Some(user) = Self::dialled(req) else {
            return Routing::Answer(416, "Unsupported URI Scheme");
        };
        if self.addressed_to_us(req) && self.config.roster.current().directory.contains(&user) {
            return self.route_agent(now, &user);
        }
        let number = normalise(&user, None);
        let Some((_, trunks)) = plan.outbound(&number) else {
            return Routing::Answer(404, "No Route");
        };
        let len = req.encoded_len();
        // Each trunk's targets from one read of the DNS cache; trunks whose host name has no
        // address cannot be reached: skipped (super::resolve). Trunks that fail their probes
        // are skipped, unless that would leave none.
        let reachable: Vec<_> = trunks
            .into_iter()
            .filter_map(|t| {
                let base = Target::uri(t.request_uri(&number, len));
                Some((self.probes.is_up(&t.name), self.reachable_targets(t, base)?))
            })
            .collect();
        let any_up = reachable.iter().any(|(up, _)| *up);
        let targets: VecDeque<Target> = reachable
            .into_iter()
            .filter(|(up, _)| *up || !any_up)
            .flat_map(|(_, targets)| targets)
            .collect();
        if targets.is_empty() {
            return Routing::Answer(503, "Service Unavailable");
        }
        Routing::Serial(targets)
    }

    /// Every binding of every member of `group` who is available and below capacity, in
    /// parallel; nobody: 480.
    fn route_group(&self, now: Instant, group: &str) -> Routing {
        let targets: Vec<Target> = self
            .config
            .roster
            .current()
            .members(group)
            .iter()
            .filter(|m| self.config.presence.is_available(m) && self.has_room(m))
            .flat_map(|m| self.location.lookup(now, m))
            .map(Target::binding)
            .collect();
        if targets.is_empty() {
            Routing::Answer(480, "Temporarily Unavailable")
        } else {
            Routing::Parallel(targets)
        }
    }

    /// Whether `agent` takes another ordinary call: fewer answered calls than its capacity.
    fn has_room(&self, agent: &str) -> bool {
        let capacity = self.config.roster.current().agents.get(agent).map_or(1, |a| a.capacity);
        self.calls_of.count(agent) < capacity
    }

    /// Every binding of `agent`, in parallel; `486` when the agent is at capacity.
    fn route_agent(&self, now: Instant, agent: &str) -> Routing {
        if !self.has_room(agent) {
            return Routing::Answer(486, "Busy Here");
        }
        let bindings = self.location.lookup(now, agent);
        if bindings.is_empty() {
            return if self.config.roster.current().directory.contains(agent) {
                Routing::Answer(480, "Temporarily Unavailable")
            } else {
                Routing::Answer(404, "Not Found")
            };
        }
        Routing::Parallel(bindings.into_iter().map(Target::binding).collect())
    }
}
