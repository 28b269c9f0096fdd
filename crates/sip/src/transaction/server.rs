//! Server transactions: the INVITE server (RFC 3261 §17.2.1 with RFC 6026 §8.7) and the
//! non-INVITE server (RFC 3261 §17.2.2).
//!
//! As on the client side, states are enum variants holding what they need (the response to
//! send again), and transitions consume them. Responses go back to the peer the request came
//! from: on a connection transport its connection (RFC 3261 §18.2.2), on UDP its source
//! address and port, as RFC 3581 `rport` does (the edge serves clients behind NAT).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::Class;
use super::event::{Ctx, Event, TxnError, TxnState};
use super::key::{RequestId, ServerKey, TxnKey};
use super::peer::Peer;
use super::timer::{Timer, TimerTable};
use crate::message::{Request, Response};
use crate::method::Method;

/// What every server transaction has, whatever its state.
#[derive(Debug)]
pub(crate) struct ServerCore {
    pub(crate) key: ServerKey,
    /// How requests find this transaction (kept to remove it from the index).
    pub(crate) id: RequestId,
    /// The method of the request that created it.
    pub(crate) method: Method,
    pub(crate) from: Peer,
    /// The To tag of the last response sent: an RFC 2543 ACK carries it (§17.2.3).
    pub(crate) response_to_tag: Option<Box<str>>,
    pub(crate) timers: TimerTable,
    /// The deadline this transaction has in the layer's timer index.
    pub(crate) scheduled: Option<Instant>,
}

impl ServerCore {
    pub(crate) fn new(key: ServerKey, id: RequestId, method: Method, from: Peer) -> ServerCore {
        ServerCore {
            key,
            id,
            method,
            from,
            response_to_tag: None,
            timers: TimerTable::default(),
            scheduled: None,
        }
    }

    fn reliable(&self) -> bool {
        self.from.is_reliable()
    }

    fn send(&self, ctx: &mut Ctx<'_>, message: Bytes) {
        ctx.transmit(self.from, message, TxnKey::Server(self.key));
    }

    fn start(&mut self, ctx: &Ctx<'_>, timer: Timer) {
        let d = ctx.timers.duration(timer, self.reliable());
        self.timers.set_after(timer, ctx.now, d);
    }

    fn start_in(&mut self, ctx: &Ctx<'_>, timer: Timer, d: Duration) {
        self.timers.set_after(timer, ctx.now, d);
    }

    fn report_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        ctx.event(Event::TransportError { key: TxnKey::Server(self.key) });
    }
}

/// The INVITE server transaction (RFC 6026 Figure 7, replacing RFC 3261 Figure 7).
#[derive(Debug)]
pub(crate) enum InviteServer {
    /// Waiting for the TU's final response; a retransmitted INVITE gets the `last`
    /// provisional again.
    Proceeding {
        last: Option<Bytes>,
    },
    /// A non-2xx final was sent: resent on UDP every `interval` (Timer G, doubling up to T2)
    /// and for every retransmitted INVITE, until the ACK or Timer H.
    Completed {
        response: Bytes,
        interval: Duration,
    },
    /// The ACK came: absorbing its retransmissions until Timer I.
    Confirmed,
    /// A 2xx was sent (RFC 6026 §8.7): INVITE retransmissions are absorbed, further 2xx from
    /// the TU are sent, ACKs go to the TU, until Timer L.
    Accepted,
    Terminated,
}

impl InviteServer {
    /// Enters Proceeding; sends 100 (Trying) at once when asked to (RFC 3261 §17.2.1: unless
    /// the TU answers within 200 ms, which a proxy waiting on routing cannot promise).
    pub(crate) fn start(
        core: &mut ServerCore,
        ctx: &mut Ctx<'_>,
        request: &Request,
        send_trying: bool,
    ) -> InviteServer {
        let last = send_trying.then(|| Response::for_request(request, 100, "Trying").to_bytes());
        if let Some(trying) = &last {
            core.send(ctx, trying.clone());
        }
        InviteServer::Proceeding { last }
    }

    /// A retransmission of the INVITE.
    pub(crate) fn on_request(self, core: &mut ServerCore, ctx: &mut Ctx<'_>) -> InviteServer {
        match self {
            InviteServer::Proceeding { last } => {
                if let Some(last) = &last {
                    core.send(ctx, last.clone());
                }
                InviteServer::Proceeding { last }
            }
            InviteServer::Completed { response, interval } => {
                core.send(ctx, response.clone());
                InviteServer::Completed { response, interval }
            }
            // Confirmed and Accepted absorb it (RFC 6026 §8.7).
            state => state,
        }
    }

    /// An ACK matched this transaction.
    pub(crate) fn on_ack(
        self,
        core: &mut ServerCore,
        ctx: &mut Ctx<'_>,
        from: Peer,
        ack: Request,
    ) -> InviteServer {
        match self {
            InviteServer::Completed { .. } => {
                core.timers.stop(Timer::G);
                core.timers.stop(Timer::H);
                core.start(ctx, Timer::I);
                InviteServer::Confirmed
            }
            InviteServer::Accepted => {
                ctx.event(Event::Ack { invite: Some(core.key), from, request: ack });
                InviteServer::Accepted
            }
            // Confirmed absorbs retransmitted ACKs; an ACK before any final is bogus.
            state => state,
        }
    }

    /// The TU sends a response.
    pub(crate) fn on_tu_response(
        self,
        core: &mut ServerCore,
        ctx: &mut Ctx<'_>,
        class: Class,
        wire: Bytes,
    ) -> (InviteServer, Result<(), TxnError>) {
        use InviteServer::*;
        match (self, class) {
            (Proceeding { .. }, Class::Provisional) => {
                core.send(ctx, wire.clone());
                (Proceeding { last: Some(wire) }, Ok(()))
            }
            (Proceeding { .. }, Class::Success) => {
                core.send(ctx, wire);
                core.start(ctx, Timer::L);
                (Accepted, Ok(()))
            }
            (Proceeding { .. }, Class::Failure) => {
                core.send(ctx, wire.clone());
                let interval = ctx.timers.first_interval();
                if !core.reliable() {
                    core.start_in(ctx, Timer::G, interval);
                }
                core.start(ctx, Timer::H);
                (Completed { response: wire, interval }, Ok(()))
            }
            // The TU core retransmits its 2xx, or another 2xx (RFC 6026 §8.7).
            (Accepted, Class::Success) => {
                core.send(ctx, wire);
                (Accepted, Ok(()))
            }
            (state, _) => (state, Err(TxnError::FinalAlreadySent)),
        }
    }

    pub(crate) fn on_timer(
        self,
        core: &mut ServerCore,
        ctx: &mut Ctx<'_>,
        timer: Timer,
    ) -> InviteServer {
        use InviteServer::*;
        match (self, timer) {
            (Completed { response, interval }, Timer::G) => {
                core.send(ctx, response.clone());
                let interval = ctx.timers.double_capped(interval);
                core.start_in(ctx, Timer::G, interval);
                Completed { response, interval }
            }
            (Completed { .. }, Timer::H) => {
                core.timers.stop_all();
                ctx.event(Event::Timeout { key: TxnKey::Server(core.key), timer: Timer::H });
                Terminated
            }
            (Confirmed, Timer::I) | (Accepted, Timer::L) => Terminated,
            (state, _) => state,
        }
    }

    pub(crate) fn on_transport_error(self, core: &mut ServerCore, ctx: &mut Ctx<'_>) -> Self {
        match self {
            InviteServer::Proceeding { .. } | InviteServer::Completed { .. } => {
                core.timers.stop_all();
                core.report_transport_error(ctx);
                InviteServer::Terminated
            }
            // A 2xx that could not be sent must not end the transaction: the TU is told and
            // the state stays (RFC 6026 §8.8).
            InviteServer::Accepted => {
                core.report_transport_error(ctx);
                InviteServer::Accepted
            }
            state => state,
        }
    }

    pub(crate) fn state(&self) -> Option<TxnState> {
        Some(match self {
            InviteServer::Proceeding { .. } => TxnState::Proceeding,
            InviteServer::Completed { .. } => TxnState::Completed,
            InviteServer::Confirmed => TxnState::Confirmed,
            InviteServer::Accepted => TxnState::Accepted,
            InviteServer::Terminated => return None,
        })
    }

    /// Whether the TU has sent a final response.
    pub(crate) fn is_final(&self) -> bool {
        !matches!(self, InviteServer::Proceeding { .. })
    }
}

/// The non-INVITE server transaction (RFC 3261 Figure 8).
#[derive(Debug)]
pub(crate) enum NonInviteServer {
    /// Nothing answered yet: retransmissions are absorbed.
    Trying,
    /// A provisional was sent: a retransmission gets the `last` one again.
    Proceeding {
        last: Bytes,
    },
    /// The final was sent: a retransmission gets it again, until Timer J.
    Completed {
        response: Bytes,
    },
    Terminated,
}

impl NonInviteServer {
    /// A retransmission of the request.
    pub(crate) fn on_request(self, core: &mut ServerCore, ctx: &mut Ctx<'_>) -> NonInviteServer {
        match self {
            NonInviteServer::Proceeding { last } => {
                core.send(ctx, last.clone());
                NonInviteServer::Proceeding { last }
            }
            NonInviteServer::Completed { response } => {
                core.send(ctx, response.clone());
                NonInviteServer::Completed { response }
            }
            state => state,
        }
    }

    pub(crate) fn on_tu_response(
        self,
        core: &mut ServerCore,
        ctx: &mut Ctx<'_>,
        class: Class,
        wire: Bytes,
    ) -> (NonInviteServer, Result<(), TxnError>) {
        use NonInviteServer::*;
        match (self, class) {
            (Trying | Proceeding { .. }, Class::Provisional) => {
                core.send(ctx, wire.clone());
                (Proceeding { last: wire }, Ok(()))
            }
            (Trying | Proceeding { .. }, Class::Success | Class::Failure) => {
                core.send(ctx, wire.clone());
                core.start(ctx, Timer::J);
                (Completed { response: wire }, Ok(()))
            }
            (state, _) => (state, Err(TxnError::FinalAlreadySent)),
        }
    }

    pub(crate) fn on_timer(self, timer: Timer) -> NonInviteServer {
        match (self, timer) {
            (NonInviteServer::Completed { .. }, Timer::J) => NonInviteServer::Terminated,
            (state, _) => state,
        }
    }

    pub(crate) fn on_transport_error(self, core: &mut ServerCore, ctx: &mut Ctx<'_>) -> Self {
        match self {
            NonInviteServer::Terminated => NonInviteServer::Terminated,
            _ => {
                core.timers.stop_all();
                core.report_transport_error(ctx);
                NonInviteServer::Terminated
            }
        }
    }

    pub(crate) fn state(&self) -> Option<TxnState> {
        Some(match self {
            NonInviteServer::Trying => TxnState::Trying,
            NonInviteServer::Proceeding { .. } => TxnState::Proceeding,
            NonInviteServer::Completed { .. } => TxnState::Completed,
            NonInviteServer::Terminated => return None,
        })
    }
}

/// One server transaction: its core and its machine.
#[derive(Debug)]
pub(crate) struct ServerTxn {
    pub(crate) core: ServerCore,
    pub(crate) machine: ServerMachine,
}

#[derive(Debug)]
pub(crate) enum ServerMachine {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

impl ServerTxn {
    /// Creates the transaction for a new request (the layer reports it to the TU).
    pub(crate) fn start(
        mut core: ServerCore,
        ctx: &mut Ctx<'_>,
        request: &Request,
        send_trying: bool,
    ) -> ServerTxn {
        let machine = if core.method == Method::Invite {
            ServerMachine::Invite(InviteServer::start(&mut core, ctx, request, send_trying))
        } else {
            ServerMachine::NonInvite(NonInviteServer::Trying)
        };
        ServerTxn { core, machine }
    }

    fn take_machine(&mut self) -> ServerMachine {
        std::mem::replace(&mut self.machine, ServerMachine::NonInvite(NonInviteServer::Terminated))
    }

    pub(crate) fn on_request(&mut self, ctx: &mut Ctx<'_>) {
        self.machine = match self.take_machine() {
            ServerMachine::Invite(s) => ServerMachine::Invite(s.on_request(&mut self.core, ctx)),
            ServerMachine::NonInvite(s) => {
                ServerMachine::NonInvite(s.on_request(&mut self.core, ctx))
            }
        };
    }

    pub(crate) fn on_ack(&mut self, ctx: &mut Ctx<'_>, from: Peer, ack: Request) {
        self.machine = match self.take_machine() {
            ServerMachine::Invite(s) => {
                ServerMachine::Invite(s.on_ack(&mut self.core, ctx, from, ack))
            }
            // ACK is only ever matched to an INVITE transaction.
            other => other,
        };
    }

    pub(crate) fn on_tu_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        class: Class,
        response: &Response,
    ) -> Result<(), TxnError> {
        let wire = response.to_bytes();
        let to_tag = response.headers().to_tag().ok().flatten().map(Box::from);
        let (next, result) = match self.take_machine() {
            ServerMachine::Invite(s) => {
                let (s, r) = s.on_tu_response(&mut self.core, ctx, class, wire);
                (ServerMachine::Invite(s), r)
            }
            ServerMachine::NonInvite(s) => {
                let (s, r) = s.on_tu_response(&mut self.core, ctx, class, wire);
                (ServerMachine::NonInvite(s), r)
            }
        };
        self.machine = next;
        if result.is_ok() && to_tag.is_some() {
            self.core.response_to_tag = to_tag;
        }
        result
    }

    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) {
        self.machine = match self.take_machine() {
            ServerMachine::Invite(s) => {
                ServerMachine::Invite(s.on_timer(&mut self.core, ctx, timer))
            }
            ServerMachine::NonInvite(s) => ServerMachine::NonInvite(s.on_timer(timer)),
        };
    }

    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        self.machine = match self.take_machine() {
            ServerMachine::Invite(s) => {
                ServerMachine::Invite(s.on_transport_error(&mut self.core, ctx))
            }
            ServerMachine::NonInvite(s) => {
                ServerMachine::NonInvite(s.on_transport_error(&mut self.core, ctx))
            }
        };
    }

    pub(crate) fn state(&self) -> Option<TxnState> {
        match &self.machine {
            ServerMachine::Invite(s) => s.state(),
            ServerMachine::NonInvite(s) => s.state(),
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state().is_none()
    }

    /// For a CANCEL: whether this INVITE has its final response already.
    pub(crate) fn is_invite_final(&self) -> bool {
        match &self.machine {
            ServerMachine::Invite(s) => s.is_final(),
            ServerMachine::NonInvite(_) => false,
        }
    }
}
