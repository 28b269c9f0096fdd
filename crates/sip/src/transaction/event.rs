//! What the transaction layer hands out: datagrams and stream messages to send
//! ([`Transmit`]), news for the transaction user ([`Event`]), and the errors of TU commands.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use bytes::Bytes;

use super::build::BuildError;
use super::key::{ClientKey, ServerKey, TxnKey};
use super::peer::Peer;
use super::timer::{Timer, TimerConfig};
use crate::message::{Request, Response};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    /// The whole message, ready for a datagram or a stream (WebSocket: one frame).
    pub message: Bytes,
    /// The transaction that sent it, so that a failed send can be reported with
    /// [`TxnLayer::handle_transport_error`](super::TxnLayer::handle_transport_error); `None` for
    /// messages sent outside any transaction.
    pub txn: Option<TxnKey>,
}

/// News for the transaction user (the proxy core).
#[derive(Debug, Clone)]
pub enum Event {
    /// A new request created a server transaction. The TU answers it with
    /// [`TxnLayer::send_response`](super::TxnLayer::send_response); retransmissions of the
    /// request are absorbed from now on.
    Request { key: ServerKey, from: Peer, request: Request },
    /// A new CANCEL created its own non-INVITE server transaction `key`. `invite` is the live
    /// INVITE server transaction it matches (RFC 3261 §9.2): the TU answers 200 on `key` and,
    /// if the INVITE has no final response yet, cancels its branches and answers 487 on
    /// `invite` (§16.10). With `invite` `None` nothing matched: the TU answers 481 on `key`.
    Cancel { key: ServerKey, invite: Option<ServerKey>, from: Peer, request: Request },
    /// An ACK that no transaction absorbed: the ACK for a 2xx, which is a transaction of its
    /// own (RFC 3261 §17), passed up for the proxy to forward. `invite` is set when it matched
    /// an INVITE server transaction in Accepted (RFC 6026 §8.7).
    Ack { invite: Option<ServerKey>, from: Peer, request: Request },
    /// A response on a client transaction: every provisional, the one non-2xx final (its
    /// retransmissions are absorbed and ACKed by the transaction), and every 2xx, including
    /// retransmissions and 2xx from other forks while in Accepted (RFC 6026 §8.4): a proxy
    /// forwards each 2xx.
    Response { key: ClientKey, response: Response },
    /// A response that matches no client transaction (RFC 3261 §18.1.2, §16.7; RFC 6026 §8.3
    /// says a proxy must not forward it, except that a stray 2xx to an INVITE may still be
    /// one the proxy should relay): for the TU to judge.
    StrayResponse { from: Peer, response: Response },
    /// A CANCEL held back until the INVITE saw a provisional response (RFC 3261 §9.1) has been
    /// sent as client transaction `cancel`.
    CancelSent { invite: ClientKey, cancel: ClientKey },
    /// A transaction gave up: Timer B (INVITE client, no response; or no final within 64*T1
    /// of its CANCEL, RFC 3261 §9.1), Timer F (non-INVITE
    /// client, no final response; the TU acts as if a 408 came, §16.7 step 2) or Timer H
    /// (INVITE server, no ACK for a non-2xx final).
    Timeout { key: TxnKey, timer: Timer },
    /// The transport could not deliver the transaction's message (reported by the driver
    /// through [`TxnLayer::handle_transport_error`](super::TxnLayer::handle_transport_error)).
    /// A client transaction is then terminated (the proxy treats it as a 503, §16.7 step 2).
    TransportError { key: TxnKey },
    /// The transaction is gone; the TU can drop what it keeps about it. Always the last event
    /// of a transaction.
    Terminated { key: TxnKey },
}

/// Why a TU command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnError {
    /// No such transaction: it never existed or has terminated.
    NoTransaction,
    /// The request has no top Via with a `branch` parameter; the TU builds the branch
    /// (RFC 3261 §8.1.1.7, §16.6 step 8).
    MissingBranch,
    /// The CSeq header is missing, malformed, or names another method than the request line.
    BadCSeq,
    /// An ACK is not sent in a client transaction: the ACK for a non-2xx final is sent by the
    /// INVITE client transaction itself, and the ACK for a 2xx is its own transaction for the
    /// TU to send with [`TxnLayer::send_stateless`](super::TxnLayer::send_stateless).
    AckIsNotATransaction,
    /// A client transaction with this branch and method is already live.
    DuplicateBranch,
    /// The status code is outside 100..=699.
    BadStatus,
    /// The server transaction has sent its final response; only another 2xx may follow an
    /// INVITE's 2xx (RFC 6026 §8.7).
    FinalAlreadySent,
    /// The transaction is not an INVITE client transaction.
    NotInvite,
    /// The INVITE already received a final response: a CANCEL would have no effect
    /// (RFC 3261 §9.1).
    AlreadyFinal,
    /// The CANCEL could not be built from the INVITE.
    Build(BuildError),
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnError::NoTransaction => f.write_str("no such transaction"),
            TxnError::MissingBranch => f.write_str("request has no top Via branch"),
            TxnError::BadCSeq => f.write_str("request CSeq is missing or does not match"),
            TxnError::AckIsNotATransaction => f.write_str("ACK is not sent in a transaction"),
            TxnError::DuplicateBranch => f.write_str("a transaction with this branch is live"),
            TxnError::BadStatus => f.write_str("status code outside 100..=699"),
            TxnError::FinalAlreadySent => f.write_str("final response already sent"),
            TxnError::NotInvite => f.write_str("not an INVITE client transaction"),
            TxnError::AlreadyFinal => f.write_str("INVITE already has a final response"),
            TxnError::Build(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TxnError {}

/// What [`TxnLayer::cancel`](super::TxnLayer::cancel) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStatus {
    /// The CANCEL is on its way as this client transaction.
    Sent(ClientKey),
    /// No provisional response has arrived yet: the CANCEL is held and goes out with the
    /// first one ([`Event::CancelSent`]), or is dropped if a final response comes first
    /// (RFC 3261 §9.1).
    Held,
}

/// The state of a live transaction, for the TU and for tests (the state machines themselves
/// are private: only the layer drives them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// INVITE client: request sent, nothing heard.
    Calling,
    /// Non-INVITE client: request sent, nothing heard. Non-INVITE server: request received,
    /// nothing answered.
    Trying,
    /// A provisional response was received (client) or sent (server), or an INVITE server
    /// transaction awaits its final response.
    Proceeding,
    /// A 2xx to an INVITE went through (RFC 6026).
    Accepted,
    /// The final response was received (client) or sent (server).
    Completed,
    /// INVITE server: the ACK for the non-2xx final arrived.
    Confirmed,
}

/// Where a transition leaves its effects: the layer's output queues.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) timers: &'a TimerConfig,
    pub(crate) transmits: &'a mut VecDeque<Transmit>,
    pub(crate) events: &'a mut VecDeque<Event>,
}

impl Ctx<'_> {
    pub(crate) fn transmit(&mut self, to: Peer, message: Bytes, txn: TxnKey) {
        self.transmits.push_back(Transmit { to, message, txn: Some(txn) });
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }
}
