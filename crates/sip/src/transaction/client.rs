//! Client transactions: the INVITE client (RFC 3261 §17.1.1 with RFC 6026 §8.4) and the
//! non-INVITE client (RFC 3261 §17.1.2).
//!
//! Each machine is an enum whose variants are the states, named as in the RFC and holding what
//! that state needs; every transition consumes the state and returns the next one. The parts
//! every state shares (the request, its bytes, the peer, the timer table) live in
//! [`ClientCore`]. Once the final response has come the request is never sent or cancelled
//! again, so the core lets go of it (and of its bytes) then: an INVITE transaction lives on
//! for 32 s after its 2xx (Timer M), and at thousands of calls a second that memory is most of
//! what a call keeps.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::build;
use super::event::{Ctx, Event, TxnState};
use super::key::{ClientKey, ClientMatch, TxnKey};
use super::peer::Peer;
use super::timer::{Timer, TimerTable};
use crate::message::{Request, Response};
use crate::method::Method;

/// What every client transaction has, whatever its state.
#[derive(Debug)]
pub(crate) struct ClientCore {
    pub(crate) key: ClientKey,
    pub(crate) matcher: ClientMatch,
    pub(crate) to: Peer,
    /// The request as the TU gave it: ACK and CANCEL are built from it. `None` once a final
    /// response came ([`ClientCore::shed`]).
    pub(crate) request: Option<Box<Request>>,
    /// The request's wire form, sent again on every retransmission (empty once shed).
    wire: Bytes,
    /// The request is an INVITE.
    pub(crate) invite: bool,
    pub(crate) timers: TimerTable,
    /// The deadline this transaction has in the layer's timer index.
    pub(crate) scheduled: Option<Instant>,
    /// The CANCEL sent for this INVITE, so that a second `cancel` returns it.
    pub(crate) cancel: Option<ClientKey>,
}

impl ClientCore {
    pub(crate) fn new(key: ClientKey, matcher: ClientMatch, to: Peer, request: Request) -> Self {
        let wire = request.to_bytes();
        ClientCore {
            key,
            matcher,
            to,
            invite: *request.method() == Method::Invite,
            request: Some(Box::new(request)),
            wire,
            timers: TimerTable::default(),
            scheduled: None,
            cancel: None,
        }
    }

    fn reliable(&self) -> bool {
        self.to.is_reliable()
    }

    /// Lets go of the request and its bytes: the final response came, so nothing will be
    /// retransmitted, cancelled or acknowledged from them again (the ACK of a non-2xx is built
    /// before this and kept as bytes).
    fn shed(&mut self) {
        self.request = None;
        self.wire = Bytes::new();
    }

    fn send(&self, ctx: &mut Ctx<'_>, message: Bytes) {
        ctx.transmit(self.to, message, TxnKey::Client(self.key));
    }

    fn send_request(&self, ctx: &mut Ctx<'_>) {
        self.send(ctx, self.wire.clone());
    }

    /// Starts `timer` with its RFC duration for this transport.
    fn start(&mut self, ctx: &Ctx<'_>, timer: Timer) {
        let d = ctx.timers.duration(timer, self.reliable());
        self.timers.set_after(timer, ctx.now, d);
    }

    fn start_in(&mut self, ctx: &Ctx<'_>, timer: Timer, d: Duration) {
        self.timers.set_after(timer, ctx.now, d);
    }

    fn pass_up(&self, ctx: &mut Ctx<'_>, response: Response) {
        ctx.event(Event::Response { key: self.key, response });
    }
}

/// The status classes the machines tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Provisional,
    Success,
    Failure,
}

impl Class {
    /// `None` outside 100..=699.
    pub(crate) fn of(status: u16) -> Option<Class> {
        match status {
            100..=199 => Some(Class::Provisional),
            200..=299 => Some(Class::Success),
            300..=699 => Some(Class::Failure),
            _ => None,
        }
    }
}

/// A CANCEL asked for before any provisional response arrived (RFC 3261 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldCancel {
    pub(crate) reason: Option<Box<str>>,
}

/// The INVITE client transaction (RFC 3261 Figure 5 as changed by RFC 6026 Figure 5).
#[derive(Debug)]
pub(crate) enum InviteClient {
    /// Waiting for any response; on UDP retransmitting every `interval` (Timer A), giving up
    /// at Timer B. A CANCEL asked for now waits here for the first provisional.
    Calling {
        interval: Duration,
        held_cancel: Option<HeldCancel>,
    },
    /// A provisional response came: waiting for the final one. No retransmission and no
    /// timeout here (the proxy's Timer C bounds this state, RFC 3261 §16.6 step 11) until a
    /// CANCEL is sent: then Timer B runs again (RFC 3261 §9.1).
    Proceeding,
    /// A 2xx came: every further 2xx is passed up until Timer M (RFC 6026 §8.4).
    Accepted,
    /// A non-2xx final came and was ACKed: the ACK is sent again for each retransmission of
    /// the final, until Timer D.
    Completed {
        ack: Option<Bytes>,
    },
    Terminated,
}

impl InviteClient {
    /// Sends the INVITE and enters Calling (RFC 3261 §17.1.1.2).
    pub(crate) fn start(core: &mut ClientCore, ctx: &mut Ctx<'_>) -> InviteClient {
        core.send_request(ctx);
        let interval = ctx.timers.first_interval();
        if !core.reliable() {
            core.start_in(ctx, Timer::A, interval);
        }
        core.start(ctx, Timer::B);
        InviteClient::Calling { interval, held_cancel: None }
    }

    /// A response matched this transaction. Returns the held CANCEL when its provisional has
    /// come, for the layer to send.
    pub(crate) fn on_response(
        self,
        core: &mut ClientCore,
        ctx: &mut Ctx<'_>,
        class: Class,
        response: Response,
    ) -> (InviteClient, Option<HeldCancel>) {
        use InviteClient::*;
        match (self, class) {
            (Calling { held_cancel, .. }, Class::Provisional) => {
                core.timers.stop(Timer::A);
                core.timers.stop(Timer::B);
                core.pass_up(ctx, response);
                (Proceeding, held_cancel)
            }
            (Proceeding, Class::Provisional) => {
                core.pass_up(ctx, response);
                (Proceeding, None)
            }
            (Calling { .. } | Proceeding, Class::Success) => {
                core.timers.stop(Timer::A);
                core.timers.stop(Timer::B);
                core.pass_up(ctx, response);
                core.start(ctx, Timer::M);
                (Accepted, None)
            }
            (Calling { .. } | Proceeding, Class::Failure) => {
                core.timers.stop(Timer::A);
                core.timers.stop(Timer::B);
                // The parser guarantees the headers the ACK copies; a locally built response
                // without them is passed up unacknowledged rather than dropped.
                let ack = core
                    .request
                    .as_ref()
                    .and_then(|r| build::ack_for_non_2xx(r, &response).ok())
                    .map(|a| a.to_bytes());
                if let Some(ack) = &ack {
                    core.send(ctx, ack.clone());
                }
                core.pass_up(ctx, response);
                core.start(ctx, Timer::D);
                (Completed { ack }, None)
            }
            (Accepted, Class::Success) => {
                core.pass_up(ctx, response);
                (Accepted, None)
            }
            (Completed { ack }, Class::Failure) => {
                // A retransmitted final: ACK again, do not bother the TU (§17.1.1.2).
                if let Some(ack) = &ack {
                    core.send(ctx, ack.clone());
                }
                (Completed { ack }, None)
            }
            // Late provisionals, or a final of the other class after one was received.
            (state, _) => (state, None),
        }
    }

    pub(crate) fn on_timer(
        self,
        core: &mut ClientCore,
        ctx: &mut Ctx<'_>,
        timer: Timer,
    ) -> InviteClient {
        use InviteClient::*;
        match (self, timer) {
            (Calling { interval, held_cancel }, Timer::A) => {
                core.send_request(ctx);
                let interval = ctx.timers.double(interval);
                core.start_in(ctx, Timer::A, interval);
                Calling { interval, held_cancel }
            }
            (Calling { .. }, Timer::B) => {
                core.timers.stop_all();
                ctx.event(Event::Timeout { key: TxnKey::Client(core.key), timer: Timer::B });
                Terminated
            }
            // A CANCEL went out and no final came within 64*T1 (RFC 3261 §9.1).
            (Proceeding, Timer::B) => {
                core.timers.stop_all();
                ctx.event(Event::Timeout { key: TxnKey::Client(core.key), timer: Timer::B });
                Terminated
            }
            (Completed { .. }, Timer::D) | (Accepted, Timer::M) => Terminated,
            (state, _) => state,
        }
    }

    /// The CANCEL of this INVITE was sent: if no final response comes within 64*T1, the
    /// INVITE is considered cancelled and the transaction destroyed (RFC 3261 §9.1). Timer B
    /// measures that wait.
    pub(crate) fn on_cancel_sent(&self, core: &mut ClientCore, ctx: &Ctx<'_>) {
        if matches!(self, InviteClient::Proceeding) {
            core.start(ctx, Timer::B);
        }
    }

    /// The transport could not deliver the INVITE or the ACK (RFC 3261 §17.1.1.2, Figure 5).
    pub(crate) fn on_transport_error(self, core: &mut ClientCore, ctx: &mut Ctx<'_>) -> Self {
        match self {
            InviteClient::Calling { .. }
            | InviteClient::Proceeding
            | InviteClient::Completed { .. } => {
                core.timers.stop_all();
                ctx.event(Event::TransportError { key: TxnKey::Client(core.key) });
                InviteClient::Terminated
            }
            // Nothing is sent in Accepted.
            state => state,
        }
    }

    /// Holds a CANCEL until the first provisional (RFC 3261 §9.1). `Ok(true)`: held now or
    /// already; `Ok(false)`: a provisional came, send it now; `Err`: too late.
    pub(crate) fn hold_cancel(&mut self, reason: Option<&str>) -> Result<bool, ()> {
        match self {
            InviteClient::Calling { held_cancel, .. } => {
                if held_cancel.is_none() {
                    *held_cancel = Some(HeldCancel { reason: reason.map(Box::from) });
                }
                Ok(true)
            }
            InviteClient::Proceeding => Ok(false),
            _ => Err(()),
        }
    }

    pub(crate) fn state(&self) -> Option<TxnState> {
        Some(match self {
            InviteClient::Calling { .. } => TxnState::Calling,
            InviteClient::Proceeding => TxnState::Proceeding,
            InviteClient::Accepted => TxnState::Accepted,
            InviteClient::Completed { .. } => TxnState::Completed,
            InviteClient::Terminated => return None,
        })
    }
}

/// The non-INVITE client transaction (RFC 3261 Figure 6).
#[derive(Debug)]
pub(crate) enum NonInviteClient {
    /// Waiting for any response; on UDP retransmitting every `interval` (Timer E, doubling up
    /// to T2), giving up at Timer F.
    Trying {
        interval: Duration,
    },
    /// A provisional came: retransmitting every T2 (Timer E) until the final or Timer F.
    Proceeding,
    /// The final came: absorbing its retransmissions until Timer K.
    Completed,
    Terminated,
}

impl NonInviteClient {
    /// Sends the request and enters Trying (RFC 3261 §17.1.2.2).
    pub(crate) fn start(core: &mut ClientCore, ctx: &mut Ctx<'_>) -> NonInviteClient {
        core.send_request(ctx);
        let interval = ctx.timers.first_interval();
        if !core.reliable() {
            core.start_in(ctx, Timer::E, interval);
        }
        core.start(ctx, Timer::F);
        NonInviteClient::Trying { interval }
    }

    pub(crate) fn on_response(
        self,
        core: &mut ClientCore,
        ctx: &mut Ctx<'_>,
        class: Class,
        response: Response,
    ) -> NonInviteClient {
        use NonInviteClient::*;
        match (self, class) {
            (Trying { .. } | Proceeding, Class::Provisional) => {
                // Timer E keeps its deadline; from its next firing on it runs at T2.
                core.pass_up(ctx, response);
                Proceeding
            }
            (Trying { .. } | Proceeding, Class::Success | Class::Failure) => {
                core.timers.stop(Timer::E);
                core.timers.stop(Timer::F);
                core.pass_up(ctx, response);
                core.start(ctx, Timer::K);
                Completed
            }
            // Retransmitted responses are absorbed in Completed.
            (state, _) => state,
        }
    }

    pub(crate) fn on_timer(
        self,
        core: &mut ClientCore,
        ctx: &mut Ctx<'_>,
        timer: Timer,
    ) -> NonInviteClient {
        use NonInviteClient::*;
        match (self, timer) {
            (Trying { interval }, Timer::E) => {
                core.send_request(ctx);
                let interval = ctx.timers.double_capped(interval);
                core.start_in(ctx, Timer::E, interval);
                Trying { interval }
            }
            (Proceeding, Timer::E) => {
                core.send_request(ctx);
                let t2 = ctx.timers.longest_interval();
                core.start_in(ctx, Timer::E, t2);
                Proceeding
            }
            (Trying { .. } | Proceeding, Timer::F) => {
                core.timers.stop_all();
                ctx.event(Event::Timeout { key: TxnKey::Client(core.key), timer: Timer::F });
                Terminated
            }
            (Completed, Timer::K) => Terminated,
            (state, _) => state,
        }
    }

    pub(crate) fn on_transport_error(self, core: &mut ClientCore, ctx: &mut Ctx<'_>) -> Self {
        match self {
            NonInviteClient::Trying { .. } | NonInviteClient::Proceeding => {
                core.timers.stop_all();
                ctx.event(Event::TransportError { key: TxnKey::Client(core.key) });
                NonInviteClient::Terminated
            }
            state => state,
        }
    }

    pub(crate) fn state(&self) -> Option<TxnState> {
        Some(match self {
            NonInviteClient::Trying { .. } => TxnState::Trying,
            NonInviteClient::Proceeding => TxnState::Proceeding,
            NonInviteClient::Completed => TxnState::Completed,
            NonInviteClient::Terminated => return None,
        })
    }
}

/// One client transaction: its core and its machine.
#[derive(Debug)]
pub(crate) struct ClientTxn {
    pub(crate) core: ClientCore,
    pub(crate) machine: ClientMachine,
}

#[derive(Debug)]
pub(crate) enum ClientMachine {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

impl ClientTxn {
    /// Creates the transaction and sends its request.
    pub(crate) fn start(mut core: ClientCore, ctx: &mut Ctx<'_>) -> ClientTxn {
        let machine = if core.invite {
            ClientMachine::Invite(InviteClient::start(&mut core, ctx))
        } else {
            ClientMachine::NonInvite(NonInviteClient::start(&mut core, ctx))
        };
        ClientTxn { core, machine }
    }

    /// Moves the state out for a transition; the caller moves the next one in.
    fn take_machine(&mut self) -> ClientMachine {
        std::mem::replace(&mut self.machine, ClientMachine::Invite(InviteClient::Terminated))
    }

    /// A response matched: returns a held CANCEL that is now due.
    pub(crate) fn on_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        class: Class,
        response: Response,
    ) -> Option<HeldCancel> {
        let (next, due) = match self.take_machine() {
            ClientMachine::Invite(s) => {
                let (s, due) = s.on_response(&mut self.core, ctx, class, response);
                (ClientMachine::Invite(s), due)
            }
            ClientMachine::NonInvite(s) => (
                ClientMachine::NonInvite(s.on_response(&mut self.core, ctx, class, response)),
                None,
            ),
        };
        self.machine = next;
        if !self.awaits_final() {
            self.core.shed();
        }
        due
    }

    /// Whether the final response has yet to come (the request may still be retransmitted or
    /// cancelled).
    fn awaits_final(&self) -> bool {
        matches!(
            self.machine,
            ClientMachine::Invite(InviteClient::Calling { .. } | InviteClient::Proceeding)
                | ClientMachine::NonInvite(
                    NonInviteClient::Trying { .. } | NonInviteClient::Proceeding
                )
        )
    }

    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) {
        self.machine = match self.take_machine() {
            ClientMachine::Invite(s) => {
                ClientMachine::Invite(s.on_timer(&mut self.core, ctx, timer))
            }
            ClientMachine::NonInvite(s) => {
                ClientMachine::NonInvite(s.on_timer(&mut self.core, ctx, timer))
            }
        };
    }

    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        self.machine = match self.take_machine() {
            ClientMachine::Invite(s) => {
                ClientMachine::Invite(s.on_transport_error(&mut self.core, ctx))
            }
            ClientMachine::NonInvite(s) => {
                ClientMachine::NonInvite(s.on_transport_error(&mut self.core, ctx))
            }
        };
    }

    pub(crate) fn state(&self) -> Option<TxnState> {
        match &self.machine {
            ClientMachine::Invite(s) => s.state(),
            ClientMachine::NonInvite(s) => s.state(),
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state().is_none()
    }
}
