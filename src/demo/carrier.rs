//! The demo carrier's signalling: one task driving a sans-IO [`TxnLayer`] (as the core does)
//! over one UDP socket, with the calls it has in progress.
//!
//! - **UAS** for what the edge sends to the trunk: OPTIONS probes get 200; an INVITE gets 100
//!   (from the transaction layer), 180 at once, then 200 with an SDP answer after
//!   [`ANSWER_AFTER`]; the 2xx is retransmitted until the ACK comes (RFC 3261 §13.3.1.4: T1
//!   doubling to T2, BYE after 64*T1 without one). CANCEL before the answer: 200, and 487 to
//!   the INVITE (§9.2). re-INVITE and UPDATE with an offer: 200 with the same description
//!   (its version goes up only if the direction changed, RFC 3264 §8). BYE: 200. An INVITE
//!   without an offer gets the offer in the 200 and the answer is taken from the ACK.
//! - **UAC** for the PSAP's call back ([`Command::PsapCallback`]): an INVITE with an SDP offer
//!   to the edge, from the carrier's address (so the edge takes it for the trunk); the 2xx is
//!   ACKed (again for each retransmission), a call not answered within [`NO_ANSWER`] is
//!   CANCELled, an answered one is hung up after the time the command gave.
//! - Every call is hung up by the carrier after [`MAX_CALL`] at the latest. A request for a dialog it does
//!   not know gets 481; a method it does not speak gets 405 with Allow.
//! - In-dialog requests go to the address the dialog was set up with (the edge, which
//!   record-routes every dialog), along the route set (RFC 3261 §12.2.1.1).
//! - Unparseable datagrams are dropped; nothing from the network can make this task panic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::header::typed::NameAddr;
use sip::transaction::{ClientKey, Event, Peer, ServerKey, TxnConfig, TxnKey, TxnLayer};
use sip::{Framing, HeaderName, Message, Method, Request, Response};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::DemoError;
use super::media::{Media, Params};
use super::sdp::{self, Codecs, Direction, Sdp};

/// How long the carrier rings before it answers.
pub const ANSWER_AFTER: Duration = Duration::from_secs(1);

/// A call the carrier placed is cancelled when nobody answered by then.
pub const NO_ANSWER: Duration = Duration::from_secs(60);

/// Every call is hung up by the carrier after this long.
pub const MAX_CALL: Duration = Duration::from_secs(300);

/// RFC 3261 §17.1.1.1 T1 and T2: the 2xx retransmission interval starts at T1 and doubles up
/// to T2.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// The methods the carrier answers (Allow, RFC 3261 §20.5).
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";

/// What the rest of the edge asks of the carrier.
#[derive(Debug)]
pub(super) enum Command {
    /// Call `did` (E.164) at the edge as the PSAP, hanging up `hang_up_after` the answer; the
    /// reply is the Call-ID once the INVITE is on its way.
    PsapCallback {
        did: String,
        hang_up_after: Duration,
        reply: oneshot::Sender<Result<String, DemoError>>,
    },
}

/// Where a call is.
#[derive(Debug)]
enum Phase {
    /// UAS: 180 sent; the 200 goes at `answer_at`.
    Ringing { key: ServerKey, invite: Box<Request>, answer_at: Instant },
    /// UAS: 2xx sent (to an INVITE or re-INVITE), retransmitted until the ACK.
    AwaitAck { ok: Bytes, next: Instant, interval: Duration, give_up: Instant },
    /// UAC: INVITE sent, no final response yet.
    Calling { key: ClientKey, cancel_at: Instant },
    /// Confirmed.
    Up,
    /// BYE sent; the call goes when it is answered or times out.
    Ending,
}

/// One call (a dialog, RFC 3261 §12) and its media.
#[derive(Debug)]
struct Call {
    call_id: String,
    /// The carrier placed it (the PSAP's call back).
    psap: bool,
    phase: Phase,
    /// Our To (UAS) or From (UAC), with our tag.
    local: String,
    /// Our tag, to check in-dialog requests against.
    tag: String,
    /// The other side's From (UAS) or To (UAC), with its tag once known.
    remote: String,
    /// The Request-URI of our in-dialog requests: the other side's Contact.
    target: String,
    /// Route values of our in-dialog requests, in order.
    route: Vec<String>,
    /// The edge: where every request of this dialog goes.
    peer: Peer,
    /// The CSeq number of our next request.
    cseq: u32,
    /// The CSeq number of our INVITE (UAC), which the ACK repeats.
    invite_cseq: u32,
    /// How long after the answer the carrier hangs up.
    longest: Duration,
    /// The ACK for our INVITE's 2xx, sent again for each retransmitted 2xx.
    ack: Option<Bytes>,
    /// `None` once the call is ending.
    media: Option<Media>,
    sdp: SdpState,
    ends_at: Instant,
}

/// Our side of the offer/answer exchange.
#[derive(Debug)]
struct SdpState {
    session: u64,
    version: u64,
    codecs: Codecs,
    telephone_event: Option<u8>,
    /// The direction we wrote last.
    direction: Direction,
    /// The description we sent last (its version goes up when it changes).
    last: Option<String>,
}

/// The carrier: socket, transaction layer, calls.
#[derive(Debug)]
pub(super) struct Carrier {
    socket: UdpSocket,
    /// The carrier's SIP address (Via, Contact; RTP is bound on its IP).
    me: SocketAddr,
    /// The edge's UDP listener: where the PSAP's calls go.
    edge: SocketAddr,
    txn: TxnLayer,
    /// By Call-ID.
    calls: HashMap<String, Call>,
    /// Our client transactions (INVITE, BYE) and the Call-ID they belong to.
    clients: HashMap<ClientKey, String>,
}

impl Carrier {
    pub(super) fn new(socket: UdpSocket, edge: SocketAddr) -> std::io::Result<Carrier> {
        let me = socket.local_addr()?;
        Ok(Carrier {
            socket,
            me,
            edge,
            txn: TxnLayer::new(TxnConfig::default()),
            calls: HashMap::new(),
            clients: HashMap::new(),
        })
    }

    /// Serves until `stop` turns true; then hangs up what is up and returns.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 65536];
        loop {
            self.flush().await;
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let stopping = async {
                // The guard `wait_for` returns is not Send: dropped here, not held across awaits.
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                got = self.socket.recv_from(&mut buf) => match got {
                    Ok((n, from)) => self.datagram(&buf[..n], from),
                    Err(e) => tracing::debug!(error = %e, "demo carrier: receive failed"),
                },
                Some(command) = commands.recv() => self.command(command),
                () = sleep => {}
                () = stopping => {
                    let now = Instant::now();
                    let up: Vec<String> = self
                        .calls
                        .iter()
                        .filter(|(_, c)| matches!(c.phase, Phase::Up | Phase::AwaitAck { .. }))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in up {
                        self.bye(now, &id);
                    }
                    self.flush().await;
                    return;
                }
            }
            let now = Instant::now();
            self.txn.handle_timeout(now);
            self.timers(now);
        }
    }

    /// Sends what the transaction layer has queued and hands its events to the calls, until
    /// both queues are empty (the run-loop contract of `sip::transaction`).
    async fn flush(&mut self) {
        loop {
            let mut idle = true;
            while let Some(t) = self.txn.poll_transmit() {
                idle = false;
                if let Err(e) = self.socket.send_to(&t.message, t.to.addr).await {
                    tracing::debug!(error = %e, to = %t.to.addr, "demo carrier: send failed");
                    if let Some(key) = t.txn {
                        self.txn.handle_transport_error(Instant::now(), key);
                    }
                }
            }
            while let Some(event) = self.txn.poll_event() {
                idle = false;
                self.event(Instant::now(), event);
            }
            if idle {
                return;
            }
        }
    }

    /// The earliest time something must happen: a transaction timer or a call's own.
    fn next_deadline(&self) -> Option<Instant> {
        let calls = self.calls.values().filter_map(|c| match &c.phase {
            Phase::Ringing { answer_at, .. } => Some(*answer_at),
            Phase::AwaitAck { next, .. } => Some(*next),
            Phase::Calling { cancel_at, .. } => Some(*cancel_at),
            Phase::Up => Some(c.ends_at),
            Phase::Ending => None,
        });
        calls.chain(self.txn.poll_timeout()).min()
    }

    fn datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        // Keep-alives (RFC 5626 §3.5.1) and stray bytes.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let now = Instant::now();
        match Message::parse(Bytes::copy_from_slice(bytes), Framing::Datagram) {
            Ok(Message::Request(r)) => self.txn.handle_request(now, Peer::udp(from), r),
            Ok(Message::Response(r)) => self.txn.handle_response(now, Peer::udp(from), r),
            Err(e) => tracing::debug!(%from, error = %e, "demo carrier: unparseable datagram"),
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::PsapCallback { did, hang_up_after, reply } => {
                let result = self.place(Instant::now(), &did, hang_up_after.min(MAX_CALL));
                let _ = reply.send(result);
            }
        }
    }

    fn event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Request { key, from, request } => self.request(now, key, from, request),
            Event::Cancel { key, invite, request, .. } => self.cancel(now, key, invite, &request),
            Event::Ack { request, .. } => self.ack(&request),
            Event::Response { key, response } => self.response(now, Some(key), &response),
            Event::StrayResponse { response, .. } => self.response(now, None, &response),
            Event::Timeout { key: TxnKey::Client(key), .. }
            | Event::TransportError { key: TxnKey::Client(key) } => {
                // Our INVITE or BYE got no answer: the call is over.
                if let Some(id) = self.clients.remove(&key) {
                    tracing::info!(call_id = %id, "demo carrier: no answer from the edge; call dropped");
                    self.calls.remove(&id);
                }
            }
            Event::Terminated { key: TxnKey::Client(key) } => {
                self.clients.remove(&key);
            }
            Event::Timeout { .. }
            | Event::TransportError { .. }
            | Event::Terminated { .. }
            | Event::CancelSent { .. } => {}
        }
    }

    // --- requests from the edge ----------------------------------------------------------------

    fn request(&mut self, now: Instant, key: ServerKey, from: Peer, req: Request) {
        let call_id = req.headers().call_id().unwrap_or_default().to_owned();
        let to_tag = req.headers().to().ok().and_then(|t| t.tag().map(str::to_owned));
        let in_dialog = to_tag.is_some();
        let known = self.calls.get(&call_id).filter(|c| Some(&c.tag) == to_tag.as_ref());
        match req.method() {
            Method::Options => {
                let mut r = Response::for_request(&req, 200, "OK");
                let h = r.headers_mut();
                h.push(HeaderName::Allow, ALLOW);
                h.push(HeaderName::Accept, "application/sdp");
                self.respond(now, key, r);
            }
            Method::Invite if !in_dialog => self.invite(now, key, from, req, call_id),
            Method::Invite | Method::Update if known.is_some() => {
                self.reoffer(now, key, &req, &call_id);
            }
            Method::Bye if known.is_some() => {
                self.respond(now, key, Response::for_request(&req, 200, "OK"));
                if let Some(call) = self.calls.remove(&call_id) {
                    tracing::info!(call_id = %call_id, psap = call.psap, "demo carrier: the other side hung up");
                }
            }
            Method::Info if known.is_some() => {
                self.respond(now, key, Response::for_request(&req, 200, "OK"));
            }
            Method::Invite | Method::Update | Method::Bye | Method::Info => {
                let r = Response::for_request(&req, 481, "Call/Transaction Does Not Exist");
                self.respond(now, key, r);
            }
            _ => {
                let mut r = Response::for_request(&req, 405, "Method Not Allowed");
                r.headers_mut().push(HeaderName::Allow, ALLOW);
                self.respond(now, key, r);
            }
        }
    }

    /// A new call from the edge: 180 now, 200 after [`ANSWER_AFTER`].
    fn invite(&mut self, now: Instant, key: ServerKey, from: Peer, req: Request, call_id: String) {
        if self.calls.contains_key(&call_id) {
            let r = Response::for_request(&req, 482, "Loop Detected");
            return self.respond(now, key, r);
        }
        let offer = offer_of(&req);
        let (codecs, telephone_event, direction, remote) = match &offer {
            Some(audio) => match Codecs::of(audio) {
                Some(codecs) => (
                    codecs,
                    audio.telephone_event(),
                    audio.direction.reversed(),
                    audio.rtp_address(),
                ),
                None => {
                    let mut r = Response::for_request(&req, 488, "Not Acceptable Here");
                    r.set_to_tag(&token(8));
                    r.headers_mut().push(
                        HeaderName::Warning,
                        "304 lifeline-demo \"plain RTP (RTP/AVP) with PCMU or PCMA only\"",
                    );
                    tracing::info!(call_id = %call_id, profile = %audio.profile, "demo carrier: offer refused (488)");
                    return self.respond(now, key, r);
                }
            },
            None => (Codecs::offered(), Some(sdp::TELEPHONE_EVENT), Direction::SendRecv, None),
        };
        let params = Params { remote, voice: codecs.voice, send: sends(direction) };
        let media = match self.media(params) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "demo carrier: no RTP port");
                let r = Response::for_request(&req, 500, "Server Internal Error");
                return self.respond(now, key, r);
            }
        };
        let tag = token(8);
        let to = req.headers().get(HeaderName::To).map(lossy).unwrap_or_default();
        let remote = req.headers().get(HeaderName::From).map(lossy).unwrap_or_default();
        let target = contact_uri(req.headers()).unwrap_or_else(|| req.uri_str().to_owned());
        let route = name_addrs(req.headers(), HeaderName::RecordRoute);
        let emergency = req
            .headers()
            .get_named("Priority")
            .is_some_and(|p| p.eq_ignore_ascii_case(b"emergency"));
        tracing::info!(call_id = %call_id, emergency, "demo carrier: incoming call, ringing");
        let ringing = self.dialog_response(&req, 180, "Ringing", &tag, None);
        self.respond(now, key, ringing);
        self.calls.insert(
            call_id.clone(),
            Call {
                call_id,
                psap: false,
                phase: Phase::Ringing { key, invite: Box::new(req), answer_at: now + ANSWER_AFTER },
                local: format!("{to};tag={tag}"),
                tag,
                remote,
                target,
                route,
                peer: from,
                cseq: 1,
                invite_cseq: 0,
                longest: MAX_CALL,
                ack: None,
                media: Some(media),
                sdp: SdpState {
                    session: u64::from(random_u32()),
                    version: 1,
                    codecs,
                    telephone_event,
                    direction,
                    last: None,
                },
                ends_at: now + MAX_CALL,
            },
        );
    }

    /// The ringing call `id` is answered: 200 with our description.
    fn answer(&mut self, now: Instant, id: &str) {
        let Some(call) = self.calls.get_mut(id) else { return };
        let Phase::Ringing { key, invite, .. } = std::mem::replace(&mut call.phase, Phase::Up)
        else {
            return;
        };
        let Some(local) = call.media.as_ref().map(|m| m.local) else { return };
        let body = call.sdp.describe(local);
        let tag = call.tag.clone();
        let ok = self.dialog_response(&invite, 200, "OK", &tag, Some(body));
        let bytes = ok.to_bytes();
        self.respond(now, key, ok);
        if let Some(call) = self.calls.get_mut(id) {
            call.phase =
                Phase::AwaitAck { ok: bytes, next: now + T1, interval: T1, give_up: now + 64 * T1 };
            call.ends_at = now + call.longest;
        }
        tracing::info!(call_id = %id, "demo carrier: answered (echo)");
    }

    /// A re-INVITE or UPDATE in a dialog: the same description back, the media following the
    /// new offer.
    fn reoffer(&mut self, now: Instant, key: ServerKey, req: &Request, id: &str) {
        let offer = offer_of(req);
        let Some(call) = self.calls.get_mut(id) else { return };
        if let Some(audio) = &offer {
            let Some(codecs) = Codecs::of(audio) else {
                let r = Response::for_request(req, 488, "Not Acceptable Here");
                return self.respond(now, key, r);
            };
            call.sdp.codecs = codecs;
            call.sdp.telephone_event = audio.telephone_event().or(call.sdp.telephone_event);
            call.sdp.direction = audio.direction.reversed();
            if let Some(m) = &call.media {
                m.update(Params {
                    remote: audio.rtp_address(),
                    voice: call.sdp.codecs.voice,
                    send: sends(call.sdp.direction),
                });
            }
        } else if *req.method() == Method::Invite {
            // No offer: ours goes in the 200, the answer comes in the ACK.
            call.sdp.direction = Direction::SendRecv;
        }
        let body = match (&call.media, offer.is_some() || *req.method() == Method::Invite) {
            (Some(m), true) => Some(call.sdp.describe(m.local)),
            _ => None,
        };
        let tag = call.tag.clone();
        let ok = self.dialog_response(req, 200, "OK", &tag, body);
        let bytes = ok.to_bytes();
        self.respond(now, key, ok);
        if *req.method() == Method::Invite
            && let Some(call) = self.calls.get_mut(id)
        {
            call.phase =
                Phase::AwaitAck { ok: bytes, next: now + T1, interval: T1, give_up: now + 64 * T1 };
        }
    }

    fn cancel(&mut self, now: Instant, key: ServerKey, invite: Option<ServerKey>, req: &Request) {
        let ringing = invite.and_then(|ik| {
            self.calls
                .iter()
                .find(|(_, c)| matches!(&c.phase, Phase::Ringing { key, .. } if *key == ik))
                .map(|(id, _)| id.clone())
        });
        if invite.is_none() {
            let r = Response::for_request(req, 481, "Call/Transaction Does Not Exist");
            return self.respond(now, key, r);
        }
        // RFC 3261 §9.2: the CANCEL is answered 200 whether or not it still changes anything.
        self.respond(now, key, Response::for_request(req, 200, "OK"));
        let Some(id) = ringing else { return };
        if let Some(call) = self.calls.remove(&id)
            && let Phase::Ringing { key: ik, invite, .. } = call.phase
        {
            let r = self.dialog_response(&invite, 487, "Request Terminated", &call.tag, None);
            self.respond(now, ik, r);
            tracing::info!(call_id = %id, "demo carrier: cancelled before the answer");
        }
    }

    /// The ACK for our 2xx: the call is up; an answer in it (to our offer) sets the media.
    fn ack(&mut self, req: &Request) {
        let Some(id) = req.headers().call_id().ok() else { return };
        let Some(call) = self.calls.get_mut(id) else { return };
        if matches!(call.phase, Phase::AwaitAck { .. }) {
            call.phase = Phase::Up;
        }
        if let Some(audio) = offer_of(req)
            && let Some(m) = &call.media
        {
            let codecs = Codecs::of(&audio).map_or(call.sdp.codecs.voice, |c| c.voice);
            m.update(Params {
                remote: audio.rtp_address(),
                voice: codecs,
                send: audio.direction.receives(),
            });
        }
    }

    // --- the PSAP's call back --------------------------------------------------------------------

    /// Places the PSAP's call to `did` at the edge; it hangs up `longest` after the answer.
    fn place(&mut self, now: Instant, did: &str, longest: Duration) -> Result<String, DemoError> {
        let codecs = Codecs::offered();
        let params = Params { remote: None, voice: codecs.voice, send: true };
        let media = self.media(params).map_err(DemoError::Media)?;
        let (me, edge) = (self.me, self.edge);
        let call_id = format!("{}@{}", token(12), me.ip());
        let tag = token(8);
        let local = format!("\"Demo PSAP\" <sip:psap@{me}>;tag={tag}");
        let remote = format!("<sip:{did}@{edge}>");
        let target = format!("sip:{did}@{edge}");
        let mut sdp = SdpState {
            session: u64::from(random_u32()),
            version: 1,
            codecs,
            telephone_event: Some(sdp::TELEPHONE_EVENT),
            direction: Direction::SendRecv,
            last: None,
        };
        let body = sdp.describe(media.local);
        let mut req =
            Request::new(Method::Invite, &target).map_err(|e| DemoError::Sip(e.to_string()))?;
        let h = req.headers_mut();
        h.push(HeaderName::Via, format!("SIP/2.0/UDP {me};branch=z9hG4bK{};rport", token(10)));
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, local.clone());
        h.push(HeaderName::To, remote.clone());
        h.push(HeaderName::CallId, call_id.clone());
        h.push(HeaderName::CSeq, "1 INVITE");
        h.push(HeaderName::Contact, format!("<sip:psap@{me}>"));
        h.push(HeaderName::Allow, ALLOW);
        req.set_body(Some("application/sdp"), Bytes::from(body));
        let peer = Peer::udp(edge);
        let key =
            self.txn.send_request(now, peer, req).map_err(|e| DemoError::Sip(e.to_string()))?;
        self.clients.insert(key, call_id.clone());
        self.calls.insert(
            call_id.clone(),
            Call {
                call_id: call_id.clone(),
                psap: true,
                phase: Phase::Calling { key, cancel_at: now + NO_ANSWER },
                local,
                tag,
                remote,
                target,
                route: Vec::new(),
                peer,
                cseq: 2,
                invite_cseq: 1,
                longest,
                ack: None,
                media: Some(media),
                sdp,
                ends_at: now + MAX_CALL,
            },
        );
        tracing::info!(call_id = %call_id, "demo carrier: PSAP callback placed");
        Ok(call_id)
    }

    /// A response to one of our requests (`key`), or a stray one (a 2xx retransmitted after
    /// our INVITE transaction ended).
    fn response(&mut self, now: Instant, key: Option<ClientKey>, res: &Response) {
        let id = match key {
            Some(k) => self.clients.get(&k).cloned(),
            None => res.headers().call_id().ok().map(str::to_owned),
        };
        let Some(id) = id else { return };
        let is_invite = res.headers().cseq().is_ok_and(|c| c.method == Method::Invite);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let status = res.status();
        if !is_invite {
            // Our BYE was answered: the call is over.
            if status >= 200 && matches!(call.phase, Phase::Ending) {
                self.calls.remove(&id);
            }
            return;
        }
        match (&call.phase, status) {
            (_, 100..=199) => {}
            (Phase::Calling { .. }, 200..=299) => {
                call.remote = res.headers().get(HeaderName::To).map(lossy).unwrap_or_default();
                if let Some(t) = contact_uri(res.headers()) {
                    call.target = t;
                }
                call.route = name_addrs(res.headers(), HeaderName::RecordRoute);
                call.route.reverse();
                if let Some(audio) = offer_of_response(res)
                    && let Some(m) = &call.media
                {
                    let voice = Codecs::of(&audio).map_or(call.sdp.codecs.voice, |c| c.voice);
                    m.update(Params {
                        remote: audio.rtp_address(),
                        voice,
                        send: audio.direction.receives(),
                    });
                }
                let ack = build_request(self.me, call, Method::Ack, call.invite_cseq)
                    .map(|r| r.to_bytes());
                call.ack = ack.clone();
                call.phase = Phase::Up;
                call.ends_at = now + call.longest;
                if let Some(ack) = ack {
                    self.txn.send_stateless(call.peer, ack);
                }
                tracing::info!(call_id = %id, "demo carrier: PSAP callback answered (echo)");
            }
            (Phase::Calling { .. }, _) => {
                // The transaction layer ACKs a failure; the call is over.
                tracing::info!(call_id = %id, status, "demo carrier: PSAP callback not answered");
                self.calls.remove(&id);
            }
            (_, 200..=299) => {
                // A retransmitted 2xx: our ACK was lost (RFC 3261 §13.2.2.4).
                if let Some(ack) = call.ack.clone() {
                    self.txn.send_stateless(call.peer, ack);
                }
            }
            _ => {}
        }
    }

    // --- timers and hanging up ---------------------------------------------------------------

    fn timers(&mut self, now: Instant) {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| match &c.phase {
                Phase::Ringing { answer_at, .. } => *answer_at <= now,
                Phase::AwaitAck { next, .. } => *next <= now,
                Phase::Calling { cancel_at, .. } => *cancel_at <= now,
                Phase::Up => c.ends_at <= now,
                Phase::Ending => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(call) = self.calls.get_mut(&id) else { continue };
            match &mut call.phase {
                Phase::Ringing { .. } => self.answer(now, &id),
                Phase::AwaitAck { give_up, .. } if *give_up <= now => {
                    tracing::info!(call_id = %id, "demo carrier: no ACK for the 2xx; hanging up");
                    self.bye(now, &id);
                }
                Phase::AwaitAck { ok, next, interval, .. } => {
                    *interval = (*interval * 2).min(T2);
                    *next = now + *interval;
                    let (ok, peer) = (ok.clone(), call.peer);
                    self.txn.send_stateless(peer, ok);
                }
                Phase::Calling { key, cancel_at } => {
                    let key = *key;
                    *cancel_at = now + MAX_CALL;
                    tracing::info!(call_id = %id, "demo carrier: PSAP callback not answered in time; cancelling");
                    if let Err(e) = self.txn.cancel(now, key) {
                        tracing::debug!(error = %e, "demo carrier: cancel failed");
                        self.calls.remove(&id);
                    }
                }
                Phase::Up => {
                    tracing::info!(call_id = %id, "demo carrier: longest call reached; hanging up");
                    self.bye(now, &id);
                }
                Phase::Ending => {}
            }
        }
    }

    /// Hangs up call `id` with a BYE.
    fn bye(&mut self, now: Instant, id: &str) {
        let Some(call) = self.calls.get_mut(id) else { return };
        let cseq = call.cseq;
        call.cseq += 1;
        call.phase = Phase::Ending;
        call.media = None;
        let Some(req) = build_request(self.me, call, Method::Bye, cseq) else {
            self.calls.remove(id);
            return;
        };
        let peer = call.peer;
        match self.txn.send_request(now, peer, req) {
            Ok(key) => {
                self.clients.insert(key, id.to_owned());
            }
            Err(e) => {
                tracing::debug!(error = %e, "demo carrier: BYE not sent");
                self.calls.remove(id);
            }
        }
    }

    // --- helpers -------------------------------------------------------------------------------

    fn respond(&mut self, now: Instant, key: ServerKey, response: Response) {
        if let Err(e) = self.txn.send_response(now, key, response) {
            tracing::debug!(error = %e, "demo carrier: response not sent");
        }
    }

    /// A response that is part of the dialog: our tag, our Contact, the request's
    /// Record-Route (RFC 3261 §12.1.1), and a body when given.
    fn dialog_response(
        &self,
        req: &Request,
        status: u16,
        reason: &str,
        tag: &str,
        sdp: Option<String>,
    ) -> Response {
        let mut r = Response::for_request(req, status, reason);
        r.set_to_tag(tag);
        let h = r.headers_mut();
        if (101..300).contains(&status) {
            for rr in req.headers().get_all(HeaderName::RecordRoute) {
                h.push(HeaderName::RecordRoute, Bytes::copy_from_slice(rr));
            }
            h.push(HeaderName::Contact, format!("<sip:demo@{}>", self.me));
            h.push(HeaderName::Allow, ALLOW);
        }
        if let Some(body) = sdp {
            r.set_body(Some("application/sdp"), Bytes::from(body));
        }
        r
    }

    /// A media leg on a free port of the carrier's IP.
    fn media(&self, params: Params) -> std::io::Result<Media> {
        let socket = std::net::UdpSocket::bind((self.me.ip(), 0))?;
        socket.set_nonblocking(true)?;
        Media::start(UdpSocket::from_std(socket)?, params)
    }
}

impl SdpState {
    /// Our description on `local`; its version goes up when it differs from the last one.
    fn describe(&mut self, local: SocketAddr) -> String {
        let write = |v| {
            sdp::write(local, self.session, v, &self.codecs, self.direction, self.telephone_event)
        };
        let mut body = write(self.version);
        if self.last.as_ref().is_some_and(|l| *l != body) {
            self.version += 1;
            body = write(self.version);
        }
        self.last = Some(body.clone());
        body
    }
}

/// Whether we send media in a session where we wrote `direction`.
fn sends(direction: Direction) -> bool {
    matches!(direction, Direction::SendRecv | Direction::SendOnly)
}

/// The audio stream offered (or answered) in a request's body.
fn offer_of(req: &Request) -> Option<Sdp> {
    sdp::of_body(req.headers().get(HeaderName::ContentType), req.body())
}

fn offer_of_response(res: &Response) -> Option<Sdp> {
    sdp::of_body(res.headers().get(HeaderName::ContentType), res.body())
}

/// The URI of the first Contact.
fn contact_uri(h: &sip::Headers) -> Option<String> {
    let raw = std::str::from_utf8(h.get(HeaderName::Contact)?).ok()?;
    let first = NameAddr::parse_list(raw).next()?.ok()?;
    Some(first.uri_raw.to_owned())
}

/// Every element of every `name` header, as `<uri>` (Record-Route into a route set).
fn name_addrs(h: &sip::Headers, name: HeaderName) -> Vec<String> {
    h.get_all(name)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(NameAddr::parse_list)
        .filter_map(Result::ok)
        .map(|n| format!("<{}>", n.uri_raw))
        .collect()
}

/// An in-dialog request of `call` (RFC 3261 §12.2.1.1): the Request-URI is the other side's
/// Contact, the route set goes in Route.
fn build_request(me: SocketAddr, call: &Call, method: Method, cseq: u32) -> Option<Request> {
    let mut req = Request::new(method.clone(), &call.target).ok()?;
    let h = req.headers_mut();
    h.push(HeaderName::Via, format!("SIP/2.0/UDP {me};branch=z9hG4bK{};rport", token(10)));
    h.push(HeaderName::MaxForwards, "70");
    for r in &call.route {
        h.push(HeaderName::Route, r.clone());
    }
    h.push(HeaderName::From, call.local.clone());
    h.push(HeaderName::To, call.remote.clone());
    h.push(HeaderName::CallId, call.call_id.clone());
    h.push(HeaderName::CSeq, format!("{cseq} {}", method.as_str()));
    h.push(HeaderName::ContentLength, "0");
    Some(req)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Random hex: tags, branches, Call-IDs (RFC 3261 §19.3 wants them unguessable enough).
fn token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = crate::transport::tls::provider().secure_random.fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = crate::transport::tls::provider().secure_random.fill(&mut b);
    u32::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The carrier on 127.0.0.1, and a socket playing the edge.
    struct Rig {
        edge: UdpSocket,
        carrier: SocketAddr,
        handle: super::super::DemoHandle,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn rig() -> Rig {
        let edge = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let demo = super::super::Demo::bind_at("127.0.0.1:0").await;
        let carrier = demo.carrier_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let (handle, run) = demo.spawn(edge.local_addr().unwrap(), stopped).unwrap();
        let task = tokio::spawn(run);
        Rig { edge, carrier, handle, stop, task }
    }

    impl Rig {
        async fn send(&self, msg: &str) {
            self.edge.send_to(msg.as_bytes(), self.carrier).await.unwrap();
        }

        /// The next message that starts with `prefix`, skipping others.
        async fn until(&self, prefix: &str) -> String {
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, _) =
                    tokio::time::timeout(Duration::from_secs(3), self.edge.recv_from(&mut buf))
                        .await
                        .unwrap_or_else(|_| panic!("nothing starting with {prefix:?}"))
                        .unwrap();
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.starts_with(prefix) {
                    return m;
                }
            }
        }

        /// Nothing arrives for `d`.
        async fn quiet(&self, d: Duration) -> Option<String> {
            let mut buf = vec![0u8; 65536];
            let got = tokio::time::timeout(d, self.edge.recv_from(&mut buf)).await.ok()?;
            got.ok().map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
        }

        async fn stop(self) {
            let _ = self.stop.send(true);
            tokio::time::timeout(Duration::from_secs(2), self.task).await.unwrap().unwrap();
        }
    }

    fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    /// A request from the edge with `body` as application/sdp (none when empty).
    fn request(
        method: &str,
        branch: &str,
        call: &str,
        to_tag: &str,
        cseq: u32,
        body: &str,
    ) -> String {
        let to_tag = if to_tag.is_empty() { String::new() } else { format!(";tag={to_tag}") };
        let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        format!(
            "{method} sip:+15551234567@127.0.0.2:5090 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=a1\r\n\
To: <sip:+15551234567@localhost>{to_tag}\r\n\
Call-ID: {call}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@127.0.0.1:5060>\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn tag_of(msg: &str) -> String {
        let to = header(msg, "To").unwrap();
        to.split(";tag=").nth(1).unwrap().to_owned()
    }

    #[tokio::test]
    async fn probes_garbage_and_unknown_requests() {
        let rig = rig().await;
        for junk in ["", "\r\n\r\n", "INVITE", "SIP/2.0 200 OK\r\n\r\n", "\u{0}\u{1}garbage"] {
            rig.send(junk).await;
        }
        rig.send(&request("OPTIONS", "o1", "o1", "", 1, "")).await;
        let ok = rig.until("SIP/2.0 ").await;
        assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
        assert!(header(&ok, "Allow").unwrap().contains("INVITE"), "{ok}");
        rig.send(&request("MESSAGE", "m1", "m1", "", 1, "")).await;
        assert!(rig.until("SIP/2.0 ").await.starts_with("SIP/2.0 405 "));
        rig.send(&request("BYE", "b1", "nobody", "x", 2, "")).await;
        assert!(rig.until("SIP/2.0 ").await.starts_with("SIP/2.0 481 "));
        // A browser's offer reaching it unanchored: refused, saying why.
        let srtp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        rig.send(&request("INVITE", "i1", "srtp", "", 1, srtp)).await;
        let refused = rig.until("SIP/2.0 4").await;
        assert!(refused.starts_with("SIP/2.0 488 "), "{refused}");
        assert!(header(&refused, "Warning").unwrap().contains("RTP/AVP"), "{refused}");
        rig.stop().await;
    }

    #[tokio::test]
    async fn answers_retransmits_until_ack_takes_reinvites_and_hangs_up_on_bye() {
        let rig = rig().await;
        rig.send(&request("INVITE", "i1", "c1", "", 1, OFFER)).await;
        assert!(rig.until("SIP/2.0 100 ").await.contains("CSeq: 1 INVITE"));
        let ringing = rig.until("SIP/2.0 180 ").await;
        assert_eq!(header(&ringing, "Record-Route"), Some("<sip:127.0.0.1:5060;lr>"));
        let tag = tag_of(&ringing);
        let ok = rig.until("SIP/2.0 200 ").await;
        assert_eq!(tag_of(&ok), tag);
        assert!(ok.contains("m=audio ") && ok.contains(" RTP/AVP 8 0 101\r\n"), "{ok}");
        assert!(ok.contains("a=sendrecv\r\n") && ok.contains("c=IN IP4 127.0.0.1\r\n"), "{ok}");
        // No ACK yet: the 200 comes again (RFC 3261 §13.3.1.4).
        let again = rig.until("SIP/2.0 200 ").await;
        assert_eq!(again, ok);
        rig.send(&request("ACK", "a1", "c1", &tag, 1, "")).await;
        assert_eq!(rig.quiet(Duration::from_millis(1200)).await, None, "retransmissions stop");

        // A re-INVITE putting the call on hold: the same description, recvonly, next version.
        let hold = OFFER.replace("101\r\n", "101\r\na=sendonly\r\n");
        rig.send(&request("INVITE", "i2", "c1", &tag, 2, &hold)).await;
        let held = rig.until("SIP/2.0 200 ").await;
        assert!(held.contains("a=recvonly\r\n"), "{held}");
        let version = |m: &str| m.lines().find(|l| l.starts_with("o=")).unwrap().to_owned();
        assert_ne!(version(&held), version(&ok), "the description changed: a new o= version");
        rig.send(&request("ACK", "a2", "c1", &tag, 2, "")).await;

        rig.send(&request("BYE", "b1", "c1", &tag, 3, "")).await;
        assert!(rig.until("SIP/2.0 ").await.starts_with("SIP/2.0 200 OK"));
        rig.send(&request("BYE", "b2", "c1", &tag, 4, "")).await;
        assert!(rig.until("SIP/2.0 ").await.starts_with("SIP/2.0 481 "), "the call is gone");
        rig.stop().await;
    }

    #[tokio::test]
    async fn a_cancel_before_the_answer_gets_487_and_a_late_offer_is_answered_in_the_ack() {
        let rig = rig().await;
        rig.send(&request("INVITE", "i1", "c1", "", 1, OFFER)).await;
        rig.until("SIP/2.0 180 ").await;
        let cancel = request("CANCEL", "i1", "c1", "", 1, "");
        rig.send(&cancel).await;
        assert!(rig.until("SIP/2.0 200 ").await.contains("CSeq: 1 CANCEL"));
        let terminated = rig.until("SIP/2.0 487 ").await;
        assert!(terminated.contains("CSeq: 1 INVITE"), "{terminated}");
        assert_eq!(
            rig.quiet(Duration::from_millis(1500)).await.filter(|m| m.starts_with("SIP/2.0 200")),
            None
        );

        // No offer in the INVITE: the 200 offers, the ACK answers.
        rig.send(&request("INVITE", "i2", "c2", "", 1, "")).await;
        let ok = rig.until("SIP/2.0 200 ").await;
        assert!(ok.contains("m=audio ") && ok.contains("RTP/AVP 0 8 101"), "{ok}");
        let tag = tag_of(&ok);
        rig.send(&request("ACK", "a2", "c2", &tag, 1, OFFER)).await;
        assert_eq!(rig.quiet(Duration::from_millis(1200)).await, None);
        rig.stop().await;
    }

    #[tokio::test]
    async fn the_psap_call_is_acked_for_every_2xx_and_ends_with_the_agent_s_bye() {
        let rig = rig().await;
        let call_id = rig.handle.psap_callback("+15550100900", MAX_CALL).await.unwrap();
        let invite = rig.until("INVITE ").await;
        let edge = rig.edge.local_addr().unwrap();
        assert!(
            invite.starts_with(&format!("INVITE sip:+15550100900@{edge} SIP/2.0\r\n")),
            "{invite}"
        );
        assert_eq!(header(&invite, "Call-ID"), Some(call_id.as_str()));
        assert!(invite.contains("m=audio ") && invite.contains("RTP/AVP 0 8 101"), "{invite}");
        let req = match Message::parse(Bytes::from(invite.clone()), Framing::Datagram).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        };
        let mut ok = Response::for_request(&req, 200, "OK");
        ok.set_to_tag("agent");
        ok.headers_mut().push(HeaderName::RecordRoute, "<sip:127.0.0.1:5060;lr;em=x>");
        ok.headers_mut().push(HeaderName::Contact, "<sip:alice@127.0.0.1:40000>");
        ok.set_body(Some("application/sdp"), Bytes::from(OFFER));
        rig.edge.send_to(&ok.to_bytes(), rig.carrier).await.unwrap();
        let ack = rig.until("ACK ").await;
        assert!(ack.starts_with("ACK sip:alice@127.0.0.1:40000 SIP/2.0\r\n"), "{ack}");
        assert_eq!(header(&ack, "Route"), Some("<sip:127.0.0.1:5060;lr;em=x>"));
        assert!(ack.contains("CSeq: 1 ACK\r\n") && ack.contains(";tag=agent"), "{ack}");
        // The 2xx again (the ACK was lost): ACKed again.
        rig.edge.send_to(&ok.to_bytes(), rig.carrier).await.unwrap();
        assert_eq!(rig.until("ACK ").await, ack);
        // The agent hangs up.
        let from = header(&invite, "From").unwrap();
        let bye = format!(
            "BYE sip:psap@{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbye\r\n\
Max-Forwards: 70\r\nFrom: {}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            rig.carrier,
            header(&ack, "To").unwrap(),
        );
        rig.send(&bye).await;
        assert!(rig.until("SIP/2.0 ").await.starts_with("SIP/2.0 200 OK"));
        rig.stop().await;
    }
}
