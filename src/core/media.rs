//! SDP rewriting for anchored calls (issue 7): where the proxy meets [`crate::media`].
//!
//! # Which calls
//!
//! With `[media] anchor = "webrtc"`, a call is anchored when one side is a browser (its SDP is
//! DTLS-SRTP, [`Sdp::is_webrtc`]; or the target is a binding over WS/WSS) and the other side
//! speaks plain RTP. Two browsers talk peer to peer; two plain-RTP peers never touch the edge,
//! unless `anchor = "always"`: then their SDP is readdressed to two ports of the edge
//! ([`sdp::readdress`], codecs untouched) and [`Media::pair`] relays between them, with
//! in-dialog offers from either side readdressed the same way.
//!
//! # Offer/answer (RFC 3264)
//!
//! - **Browser calls out** (its INVITE carries a WebRTC offer): every branch toward a
//!   plain-RTP target gets a plain offer on the call's RTP port with the codecs the browser
//!   offered that the edge relays (PCMU, PCMA, telephone-event with the browser's payload type).
//!   The plain side's answer (in a 18x or the 2xx) makes the edge answer the browser itself
//!   (str0m, ICE-lite) with the voice codec the plain side chose; later responses repeat that
//!   answer. A browser offer without PCMU or PCMA is refused with 488 and a `Warning: 305`
//!   (RFC 3261 §20.43) before anything is forwarded.
//! - **A browser is called** (a plain offer toward a WS/WSS binding): each such branch gets an
//!   offer from its own WebRTC leg; the first browser answer wins and the plain side gets a
//!   plain answer on the call's RTP port. Other targets get the plain offer unchanged.
//! - **In the dialog**: a new offer from the browser (re-INVITE or UPDATE: hold, resume) is
//!   answered by its leg and passed on as a plain offer with the same direction; the plain
//!   side's answer only moves the RTP address. A new offer from the plain side (session
//!   refresh, hold by the carrier) goes to the browser as the leg's last description and the
//!   plain side gets the edge's plain answer back; the browser's answer is absorbed.
//! - The call's media ends with its dialog: a BYE either way, a final failure, or the media
//!   timeout (`[media] timeout`), which ends the dialog with a BYE both ways carrying
//!   `Reason: SIP;cause=408;text="media timeout"` (RFC 3326).
//!
//! # Delayed offer (RFC 3261 §13.2.1: an INVITE without SDP)
//!
//! The edge makes both offers itself, so that each side answers something it can use:
//!
//! - **Plain side calls a browser** (a carrier's DID call, a group call, a PSAP callback):
//!   each browser branch is offered WebRTC from a leg of its own (PCMU, PCMA,
//!   telephone-event at 101). The browser's answer (in its 2xx, or a 18x before it) sets the
//!   leg up, and the 2xx toward the plain side carries the edge's plain OFFER on the call's
//!   RTP port with the codec the browser chose and telephone-event. The plain side's ANSWER
//!   comes in its ACK: it gives the leg its RTP address, and is taken out of the ACK (the
//!   browser's offer/answer is done).
//! - **A browser calls without SDP** (a SIP client on WS/WSS): the plain side is offered
//!   [`sdp::PLAIN_OFFER`] on the call's port; its answer (18x or 2xx) makes the edge offer
//!   the browser WebRTC in the 2xx with the codec the plain side chose, and the browser's
//!   answer in its ACK sets the leg up and is taken out of the ACK. Without SDP from a
//!   client that is not on WS/WSS nothing is known about its media: the call passes
//!   unanchored, as with `anchor = "always"` between plain peers.
//! - A 18x never carries the edge's offer (it is not reliable, RFC 3262 is not used): its SDP
//!   is taken out, and an answer in it is kept for the 2xx. A retransmitted 2xx carries the
//!   same SDP every time.
//! - **The call ends at the ACK** (a BYE both ways, `Reason: SIP;cause=488`) when the ACK has
//!   no usable answer (none, not plain RTP or not WebRTC as offered, the stream refused,
//!   another codec), or when the 2xx gave the edge nothing to offer (a browser's 2xx without
//!   an answer). The same holds for a browser's early offer answered by a plain 2xx without
//!   SDP and no answer before it (illegal, RFC 3261 §13.2.1); with an answer in a 18x
//!   before it, the 2xx gets that answer.
//! - **Emergency calls and PSAP callbacks** are never ended for media reasons: a 2xx the
//!   edge cannot complete passes as it came (unanchored, as without the anchor), and an
//!   unusable answer in the ACK leaves the call up with its leg, which latches onto the
//!   plain side's first RTP packet (symmetric RTP).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use sip::transaction::{Peer, Transport};
use sip::{HeaderName, Method, Request, Response};

use super::Core;
use super::proxy::Target;
use crate::media::anchor::LegId;
use crate::media::engine::{Media, Reservation};
use crate::media::sdp::{self, Codec, Sdp};

/// Media state of the anchored calls, by Call-ID.
#[derive(Debug, Default)]
pub(super) struct MediaCalls {
    by_call: HashMap<String, Session>,
    by_leg: HashMap<LegId, String>,
}

impl MediaCalls {
    pub(super) fn is_empty(&self) -> bool {
        self.by_call.is_empty()
    }
}

/// One anchored call.
#[derive(Debug)]
struct Session {
    /// The plain side's RTP port.
    port: Reservation,
    /// The `o=` line of the descriptions the edge writes toward the plain side.
    session_id: u64,
    version: u64,
    /// The browser is the caller (its offer waits in `browser_offer` for the plain answer).
    browser_calls: bool,
    browser_offer: Option<String>,
    /// What the plain side was offered (browser calls) or answered (browser called).
    plain_payloads: Vec<(u8, Codec)>,
    /// The leg, once it exists.
    leg: Option<LegId>,
    /// A browser is called: a leg per browser branch (by fork index) until one answers.
    branch_legs: Vec<(u32, LegId)>,
    /// The last description the browser got, repeated in later responses.
    to_browser: Option<String>,
    /// The last description the plain side got.
    to_plain: Option<String>,
    /// An in-dialog offer is being passed on: from the browser (its answer is ready here), or
    /// from the plain side (`None` inside: the browser's answer is absorbed).
    pending: Option<Pending>,
    /// The caller's side of the dialog, and the callee's once answered: where the edge sends
    /// a BYE when the media times out.
    caller: DialogEnd,
    callee: Option<DialogEnd>,
    /// Each INVITE branch: where it went and the From it carried (an emergency call's
    /// callback number), until one answers.
    branches: Vec<(u32, Peer, Bytes)>,
    /// The highest CSeq seen from each side, by From-tag (a BYE from the edge goes above).
    cseqs: Vec<(String, u32)>,
    /// Plain to plain (`[media] anchor = "always"`): the caller-facing port and the caller's
    /// RTP address; `port` faces the callee. The pair itself is `leg` once answered.
    pair: Option<PairPorts>,
    /// Delayed offer (RFC 3261 §13.2.1): the INVITE had no SDP, the edge made the offers and
    /// the side answering last does so in its ACK (see the module docs).
    late: bool,
    /// The To-tag of the 2xx whose ACK settles the call: it brings the answer (`late`) or
    /// ends the call (`broken`). The ACK of another fork's 2xx is not this one.
    ack_tag: Option<String>,
    /// That ACK went through (the ACK of a retransmitted 2xx changes nothing).
    settled: bool,
    /// The 2xx could not carry what the other side needs (no answer to give, or nothing to
    /// offer): the call ends at the ACK.
    broken: bool,
}

#[derive(Debug)]
struct PairPorts {
    caller_port: Reservation,
    caller_rtp: Option<std::net::SocketAddr>,
}

/// One side of an anchored dialog, as a BYE from the edge toward it needs it.
#[derive(Debug, Clone)]
struct DialogEnd {
    /// Where its requests came from, or where its branch went (its flow for a browser).
    peer: Peer,
    /// Its Contact: the BYE's Request-URI.
    contact: String,
    /// From and To of a request toward it.
    from: Bytes,
    to: Bytes,
    /// Its own From-tag: the CSeq of requests toward it follow the other side's.
    tag: String,
}

#[derive(Debug)]
enum Pending {
    /// Plain to plain: side 0 (the caller) or 1 (the callee) re-offered.
    PairFrom(usize),
    /// The browser re-offered; the leg's answer, for the plain side's response.
    FromBrowser(String),
    /// The plain side re-offered; it gets the edge's plain answer.
    FromPlain,
}

fn request_sdp(req: &Request) -> Option<String> {
    sdp::of_body(req.headers().get(HeaderName::ContentType), req.body())
}

fn response_sdp(r: &Response) -> Option<String> {
    sdp::of_body(r.headers().get(HeaderName::ContentType), r.body())
}

fn set_request_sdp(req: &mut Request, text: &str) {
    let ct = req.headers().get(HeaderName::ContentType);
    if let Some((ct, body)) = sdp::replace_in_body(ct, req.body(), text) {
        req.set_body(Some(&ct), body);
    }
}

fn set_response_sdp(r: &mut Response, text: &str) {
    let ct = r.headers().get(HeaderName::ContentType);
    if let Some((ct, body)) = sdp::replace_in_body(ct, r.body(), text) {
        r.set_body(Some(&ct), body);
    }
}

/// Puts `text` in a body that may have no SDP yet (a delayed offer); `false` when the body
/// cannot take it.
fn put_response_sdp(r: &mut Response, text: &str) -> bool {
    let ct = r.headers().get(HeaderName::ContentType);
    let Some((ct, body)) = sdp::put_in_body(ct, r.body(), text) else { return false };
    r.set_body(Some(&ct), body);
    true
}

fn put_request_sdp(req: &mut Request, text: &str) -> bool {
    let ct = req.headers().get(HeaderName::ContentType);
    let Some((ct, body)) = sdp::put_in_body(ct, req.body(), text) else { return false };
    req.set_body(Some(&ct), body);
    true
}

/// Takes the SDP out of a response (a 18x must not carry the edge's delayed offer, and a
/// description the other side cannot use must not reach it).
fn strip_response_sdp(r: &mut Response) {
    let ct = r.headers().get(HeaderName::ContentType);
    if let Some((ct, body)) = sdp::remove_from_body(ct, r.body()) {
        r.set_body(ct.as_deref(), body);
    }
}

fn strip_request_sdp(req: &mut Request) {
    let ct = req.headers().get(HeaderName::ContentType);
    if let Some((ct, body)) = sdp::remove_from_body(ct, req.body()) {
        req.set_body(ct.as_deref(), body);
    }
}

fn to_tag(r: &Response) -> Option<String> {
    r.headers().to().ok()?.tag().map(str::to_owned)
}

/// The Reason of the BYEs that end a call whose offer/answer failed (RFC 3326).
const BAD_ANSWER: &str = "SIP;cause=488;text=\"no usable SDP answer\"";

/// The Reason of the BYEs that end a call whose media stopped (RFC 3326).
const MEDIA_TIMEOUT: &str = "SIP;cause=408;text=\"media timeout\"";

/// A SIP client reached over WebSocket: a browser.
fn is_ws(peer: Peer) -> bool {
    matches!(peer.transport, Transport::Ws | Transport::Wss)
}

/// The callee's side of a dialog from its 2xx on branch `index`; the caller's side learns its
/// From (the callee's To) at the same time.
fn answered_end(s: &mut Session, index: u32, response: &Response) -> Option<DialogEnd> {
    let (_, peer, from) = s.branches.iter().find(|(i, _, _)| *i == index)?.clone();
    let h = response.headers();
    let to = h.get(HeaderName::To).map(Bytes::copy_from_slice)?;
    let contact = h.name_addrs(HeaderName::Contact).next()?.ok()?.uri_raw.to_owned();
    let tag = h.to().ok()?.tag()?.to_owned();
    s.caller.from = to.clone();
    s.branches.clear();
    Some(DialogEnd { peer, contact, from, to, tag })
}

/// Whether a body may hold a browser's description: a secure RTP profile (`.../SAVP`,
/// `.../SAVPF`). A cheap scan that lets plain-RTP calls skip SDP parsing; [`Sdp::is_webrtc`]
/// decides.
fn looks_webrtc(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"SAVP").is_some()
        || memchr::memmem::find(body, b"fingerprint").is_some()
}

/// A target reached over WebSocket: a browser.
fn is_browser(target: &Target) -> bool {
    target.peer.is_some_and(is_ws)
}

/// The voice codecs the edge offers a browser when the offer is its own.
const BROWSER_VOICES: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

/// The telephone-event payload type of the edge's own offers (as in [`sdp::PLAIN_OFFER`]).
const EVENTS_PT: u8 = 101;

/// The codecs of the plain offer made for a browser's offer (its order), `None` without a
/// voice codec the edge relays.
fn plain_payloads(browser: &Sdp) -> Option<Vec<(u8, Codec)>> {
    browser.voice()?;
    Some(browser.relayable().collect())
}

/// A browser's answer to the edge's offer on branch `index`: its leg takes the call's port,
/// and the plain side's description (`to_plain`) is made with the browser's codec. `false`
/// when the answer was refused.
fn take_browser_answer(
    media: &Arc<Media>,
    s: &mut Session,
    index: u32,
    text: &str,
    answer: &Sdp,
) -> bool {
    let Some(&(_, leg)) = s.branch_legs.iter().find(|(i, _)| *i == index) else { return false };
    if let Err(e) = media.browser_answered(leg, text, &s.port) {
        tracing::warn!(error = %e, "the browser's answer was refused");
        return false;
    }
    s.leg = Some(leg);
    let mut payloads: Vec<(u8, Codec)> = answer.voice().into_iter().collect();
    payloads.extend(answer.telephone_event().map(|pt| (pt, Codec::TelephoneEvent)));
    s.to_plain =
        Some(sdp::plain(s.session_id, s.version, s.port.addr, &payloads, answer.direction));
    s.plain_payloads = payloads;
    true
}

/// A new anchored call for the initial INVITE `req` from `source`, its plain side on `port`.
fn new_session(media: &Media, req: &Request, source: Peer, port: Reservation) -> Session {
    let h = req.headers();
    let contact = h
        .name_addrs(HeaderName::Contact)
        .next()
        .and_then(Result::ok)
        .map(|c| c.uri_raw.to_owned())
        .unwrap_or_default();
    let tag = h.from().ok().and_then(|f| f.tag().map(str::to_owned)).unwrap_or_default();
    let caller = DialogEnd {
        peer: source,
        contact,
        from: Bytes::new(),
        to: h.get(HeaderName::From).map(Bytes::copy_from_slice).unwrap_or_default(),
        tag: tag.clone(),
    };
    let cseq = h.cseq().map(|c| c.seq).unwrap_or(1);
    Session {
        caller,
        callee: None,
        branches: Vec::new(),
        cseqs: vec![(tag, cseq)],
        pair: None,
        port,
        session_id: media.session_id(),
        version: 1,
        browser_calls: false,
        browser_offer: None,
        plain_payloads: Vec::new(),
        leg: None,
        branch_legs: Vec::new(),
        to_browser: None,
        to_plain: None,
        pending: None,
        late: false,
        ack_tag: None,
        settled: false,
        broken: false,
    }
}

impl Core {
    fn media(&self) -> Option<&Arc<Media>> {
        self.config.media.as_ref()
    }

    /// An initial INVITE whose WebRTC offer the edge could not relay: the 488 to answer.
    pub(super) fn media_refusal(&self, req: &Request) -> Option<Response> {
        self.media()?;
        if *req.method() != Method::Invite || !looks_webrtc(req.body()) {
            return None;
        }
        let offer = Sdp::parse(&request_sdp(req)?).ok()?;
        if !offer.is_webrtc() || offer.voice().is_some() {
            return None;
        }
        let mut r = Response::for_request(req, 488, "Not Acceptable Here");
        let host = self.config.registrar.domain.clone();
        r.headers_mut().push(
            HeaderName::Warning,
            format!("305 {host} \"Incompatible media format: the edge relays PCMU or PCMA\""),
        );
        Some(r)
    }

    /// Rewrites the SDP of an initial INVITE's branch toward `target` (fork index `index`),
    /// sent to `peer`; the INVITE came from `source`.
    pub(super) fn media_branch(
        &mut self,
        index: u32,
        target: &Target,
        source: Peer,
        peer: Peer,
        req: &mut Request,
    ) {
        let Some(media) = self.media().cloned() else { return };
        let initial = !req.in_dialog();
        if *req.method() != Method::Invite || !initial {
            return;
        }
        let browser_target = is_browser(target);
        let browser_source = is_ws(source);
        if !browser_target && !browser_source && !media.always() && !looks_webrtc(req.body()) {
            // The common case, plain RTP toward a plain peer: nothing to read or copy.
            return;
        }
        let Some(text) = request_sdp(req) else {
            if browser_target != browser_source {
                self.media_late_branch(&media, index, browser_target, source, peer, req);
            }
            return;
        };
        let offer = match Sdp::parse(&text) {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(error = %e, "an offer the anchor cannot read passes unchanged");
                return;
            }
        };
        let call_id = req.headers().call_id().unwrap_or_default().to_owned();
        let pair = !offer.is_webrtc() && !browser_target && media.always();
        if offer.is_webrtc() == browser_target && !pair {
            // Browser to browser, or plain to plain: not anchored.
            return;
        }
        if !self.media_calls.by_call.contains_key(&call_id) {
            let ports = media.reserve().and_then(|p| {
                let caller = if pair { Some(media.reserve()?) } else { None };
                Ok((p, caller))
            });
            let (port, caller_port) = match ports {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "no RTP port for an anchored call");
                    return;
                }
            };
            let mut session = new_session(&media, req, source, port);
            session.pair = caller_port
                .map(|caller_port| PairPorts { caller_port, caller_rtp: offer.rtp_address() });
            session.browser_calls = offer.is_webrtc();
            session.browser_offer = offer.is_webrtc().then(|| text.clone());
            self.media_calls.by_call.insert(call_id.clone(), session);
        }
        let Some(s) = self.media_calls.by_call.get_mut(&call_id) else { return };
        let from = req.headers().get(HeaderName::From).map(Bytes::copy_from_slice);
        s.branches.push((index, peer, from.unwrap_or_default()));
        if s.pair.is_some() {
            set_request_sdp(req, &sdp::readdress(&text, s.port.addr));
        } else if offer.is_webrtc() {
            // The browser calls a plain-RTP target.
            let Some(payloads) = plain_payloads(&offer) else { return };
            let plain =
                sdp::plain(s.session_id, s.version, s.port.addr, &payloads, offer.direction);
            s.plain_payloads = payloads;
            set_request_sdp(req, &plain);
            s.to_plain = Some(plain);
        } else {
            // A plain offer toward a browser: a leg of its own for this branch.
            let voices: Vec<Codec> =
                offer.relayable().map(|(_, c)| c).filter(|c| *c != Codec::TelephoneEvent).collect();
            match media.offer_browser(offer.rtp_address(), &voices, offer.telephone_event()) {
                Ok((leg, webrtc)) => {
                    s.branch_legs.push((index, leg));
                    self.media_calls.by_leg.insert(leg, call_id);
                    set_request_sdp(req, &webrtc);
                }
                Err(e) => tracing::info!(error = %e, "no WebRTC offer for a browser branch"),
            }
        }
    }

    /// A branch of an INVITE without SDP between a browser and a plain-RTP side (delayed
    /// offer, see the module docs): the edge's own offer goes in it. Anything that fails
    /// leaves the INVITE as it came (unanchored).
    fn media_late_branch(
        &mut self,
        media: &Arc<Media>,
        index: u32,
        browser_target: bool,
        source: Peer,
        peer: Peer,
        req: &mut Request,
    ) {
        let call_id = req.headers().call_id().unwrap_or_default().to_owned();
        if !self.media_calls.by_call.contains_key(&call_id) {
            let port = match media.reserve() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "no RTP port for an anchored call");
                    return;
                }
            };
            let mut session = new_session(media, req, source, port);
            session.late = true;
            session.browser_calls = !browser_target;
            self.media_calls.by_call.insert(call_id.clone(), session);
        }
        let Some(s) = self.media_calls.by_call.get_mut(&call_id) else { return };
        if !s.late {
            return;
        }
        let from = req.headers().get(HeaderName::From).map(Bytes::copy_from_slice);
        s.branches.push((index, peer, from.unwrap_or_default()));
        if browser_target {
            // The plain side's address and codec come with its answer, in the ACK.
            match media.offer_browser(None, &BROWSER_VOICES, Some(EVENTS_PT)) {
                Ok((leg, webrtc)) => {
                    if put_request_sdp(req, &webrtc) {
                        s.branch_legs.push((index, leg));
                        self.media_calls.by_leg.insert(leg, call_id);
                    } else {
                        tracing::info!("a body that cannot take SDP: the branch goes unanchored");
                        media.close(leg);
                    }
                }
                Err(e) => tracing::info!(error = %e, "no WebRTC offer for a browser branch"),
            }
        } else {
            let plain = sdp::plain(
                s.session_id,
                s.version,
                s.port.addr,
                &sdp::PLAIN_OFFER,
                sdp::Direction::SendRecv,
            );
            if put_request_sdp(req, &plain) {
                s.plain_payloads = sdp::PLAIN_OFFER.to_vec();
                s.to_plain = Some(plain);
            } else {
                tracing::info!("a body that cannot take SDP: the branch goes unanchored");
            }
        }
    }

    /// Rewrites the SDP of a response on branch `index` of a `method` request of `call_id`
    /// (`in_dialog`: the request had a To-tag).
    pub(super) fn media_response(
        &mut self,
        method: &Method,
        call_id: &str,
        in_dialog: bool,
        index: u32,
        response: &mut Response,
    ) {
        let Some(media) = self.media().cloned() else { return };
        if !matches!(method, Method::Invite | Method::Update) {
            return;
        }
        let Some(s) = self.media_calls.by_call.get_mut(call_id) else { return };
        let status = response.status();
        if !(101..300).contains(&status) {
            if status >= 300 {
                // A refused re-offer leaves the media as it was.
                s.pending = None;
            }
            return;
        }
        if !in_dialog && (200..300).contains(&status) && s.callee.is_none() {
            s.callee = answered_end(s, index, response);
        }
        if !in_dialog && s.late {
            let urgent = self.config.urgent.contains(call_id);
            return self.media_late_response(&media, call_id, index, urgent, response);
        }
        let Some(text) = response_sdp(response) else {
            // A 2xx without SDP to an offer is illegal (RFC 3261 §13.2.1) unless a reliable
            // 18x answered; an answer from an unreliable 18x is repeated in it.
            if in_dialog || !(200..300).contains(&status) || s.pair.is_some() {
                return;
            }
            let ready = if s.browser_calls { s.to_browser.clone() } else { s.to_plain.clone() };
            match ready {
                Some(answer) => {
                    put_response_sdp(response, &answer);
                }
                None if self.config.urgent.contains(call_id) => {
                    tracing::warn!("an emergency call answered without SDP: it goes unanchored");
                    self.media_end(call_id);
                }
                None if s.ack_tag.is_none() => {
                    tracing::warn!(
                        "a 2xx without an answer to the offer: the call ends at its ACK"
                    );
                    s.broken = true;
                    s.ack_tag = to_tag(response);
                }
                // A retransmission, or another fork's 2xx: the first one decides.
                None => {}
            }
            return;
        };
        let Ok(answer) = Sdp::parse(&text) else { return };
        if let Some(pair) = &s.pair {
            // Plain to plain: the answer comes from the side that did not offer.
            let offered_by = match s.pending.take() {
                Some(Pending::PairFrom(side)) if in_dialog => side,
                _ if in_dialog => return,
                _ => 0,
            };
            let answerer = 1 - offered_by;
            match (s.leg, answer.rtp_address()) {
                (Some(id), Some(addr)) => media.set_pair_peer(id, answerer, addr),
                (None, callee) if !in_dialog => {
                    let id = media.pair(&pair.caller_port, pair.caller_rtp, &s.port, callee);
                    s.leg = Some(id);
                    self.media_calls.by_leg.insert(id, call_id.to_owned());
                }
                _ => {}
            }
            let Some(pair) = &s.pair else { return };
            let toward = if offered_by == 0 { &pair.caller_port } else { &s.port };
            set_response_sdp(response, &sdp::readdress(&text, toward.addr));
            return;
        }
        if in_dialog {
            match s.pending.take() {
                Some(Pending::FromBrowser(webrtc)) => {
                    if let (Some(leg), Some(addr)) = (s.leg, answer.rtp_address()) {
                        media.set_trunk(leg, addr);
                    }
                    set_response_sdp(response, &webrtc);
                    s.to_browser = Some(webrtc);
                }
                Some(Pending::FromPlain) => {
                    let plain = s.to_plain.clone().unwrap_or_default();
                    set_response_sdp(response, &plain);
                }
                Some(Pending::PairFrom(_)) | None => {}
            }
            return;
        }
        if s.browser_calls {
            // The plain side answered the browser's call.
            if let Some(webrtc) = &s.to_browser {
                if let (Some(leg), Some(addr)) = (s.leg, answer.rtp_address()) {
                    media.set_trunk(leg, addr);
                }
                let webrtc = webrtc.clone();
                set_response_sdp(response, &webrtc);
                return;
            }
            let Some(offer) = s.browser_offer.as_deref() else { return };
            let voices: Vec<Codec> = answer.voice().map(|(_, c)| c).into_iter().collect();
            let events = answer.telephone_event();
            match media.answer_browser(&s.port, offer, answer.rtp_address(), &voices, events) {
                Ok((leg, webrtc)) => {
                    s.leg = Some(leg);
                    self.media_calls.by_leg.insert(leg, call_id.to_owned());
                    set_response_sdp(response, &webrtc);
                    s.to_browser = Some(webrtc);
                }
                Err(e) => tracing::warn!(error = %e, "the browser's offer could not be answered"),
            }
        } else {
            // A browser answered a plain offer.
            if s.to_plain.is_none() && !take_browser_answer(&media, s, index, &text, &answer) {
                return;
            }
            if let Some(plain) = s.to_plain.clone() {
                set_response_sdp(response, &plain);
            }
        }
    }

    /// A response to an initial INVITE without SDP (a delayed offer, see the module docs):
    /// the answer to the edge's offer to this side makes the edge's offer to the other side,
    /// which goes in the 2xx (never in a 18x). `urgent`: an emergency call or PSAP callback,
    /// which goes unanchored rather than end.
    fn media_late_response(
        &mut self,
        media: &Arc<Media>,
        call_id: &str,
        index: u32,
        urgent: bool,
        response: &mut Response,
    ) {
        let Some(s) = self.media_calls.by_call.get_mut(call_id) else { return };
        let text = response_sdp(response);
        let answer = text.as_deref().and_then(|t| Sdp::parse(t).ok());
        let ready = if s.browser_calls {
            // The plain side answered: the browser is offered its codec.
            match (&answer, s.leg) {
                (Some(answer), Some(leg)) => {
                    if let Some(addr) = answer.rtp_address() {
                        media.set_trunk(leg, addr);
                    }
                }
                (Some(answer), None) if answer.answers_plain(&s.plain_payloads) => {
                    let voices: Vec<Codec> = answer.voice().map(|(_, c)| c).into_iter().collect();
                    let events = answer.telephone_event();
                    match media.offer_browser(answer.rtp_address(), &voices, events) {
                        Ok((leg, webrtc)) => {
                            s.leg = Some(leg);
                            self.media_calls.by_leg.insert(leg, call_id.to_owned());
                            s.to_browser = Some(webrtc);
                        }
                        Err(e) => tracing::warn!(error = %e, "no WebRTC offer for the browser"),
                    }
                }
                (Some(_), None) => {
                    tracing::warn!("the plain answer to the edge's offer is unusable")
                }
                (None, _) => {}
            }
            s.to_browser.clone()
        } else {
            // A browser answered: the plain side is offered its codec.
            if s.to_plain.is_none()
                && let (Some(text), Some(answer)) = (&text, &answer)
            {
                take_browser_answer(media, s, index, text, answer);
            }
            s.to_plain.clone()
        };
        if !(200..300).contains(&response.status()) {
            // Not reliable: the offer waits for the 2xx (RFC 3261 §13.2.1).
            strip_response_sdp(response);
            return;
        }
        // The first 2xx is the call's (the plain side ACKs and ends any other fork's, and a
        // retransmission has the same tag).
        let tag = to_tag(response);
        let ours = s.ack_tag.is_none() || s.ack_tag == tag;
        if ours {
            s.ack_tag = tag;
        }
        match ready {
            Some(offer) if put_response_sdp(response, &offer) => {}
            _ if !ours => strip_response_sdp(response),
            _ if urgent => {
                tracing::warn!("an emergency call's delayed offer failed: it goes unanchored");
                self.media_end(call_id);
            }
            _ => {
                tracing::warn!("nothing to offer in the 2xx: the call ends at its ACK");
                strip_response_sdp(response);
                s.broken = true;
            }
        }
    }

    /// An ACK for a 2xx of an anchored call: an answer to the edge's delayed offer is taken
    /// out of it and completes the leg. Returns the Call-ID of a call the edge must end once
    /// the ACK is forwarded ([`Core::media_bad_answer`]): no usable answer, or a `broken` 2xx
    /// (see the module docs).
    pub(super) fn media_ack(&mut self, req: &mut Request) -> Option<String> {
        if self.media_calls.is_empty() {
            return None;
        }
        let media = self.media()?.clone();
        let call_id = req.headers().call_id().ok()?.to_owned();
        let s = self.media_calls.by_call.get_mut(&call_id)?;
        if !s.late && !s.broken {
            return None;
        }
        let tag = req.headers().to().ok()?.tag()?.to_owned();
        if s.ack_tag.as_deref() != Some(tag.as_str()) {
            return None;
        }
        let text = request_sdp(req);
        if s.late {
            // The answer is the edge's; the other side's offer/answer is complete.
            strip_request_sdp(req);
        }
        if std::mem::replace(&mut s.settled, true) {
            return None;
        }
        let usable = !s.broken
            && match (s.leg, text) {
                (Some(leg), Some(text)) if s.browser_calls => {
                    match media.browser_answered(leg, &text, &s.port) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::info!(error = %e, "the browser's answer in the ACK");
                            false
                        }
                    }
                }
                (Some(leg), Some(text)) => match Sdp::parse(&text) {
                    Ok(answer) if answer.answers_plain(&s.plain_payloads) => {
                        if let Some(addr) = answer.rtp_address() {
                            media.set_trunk(leg, addr);
                        }
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
        if usable {
            return None;
        }
        if self.config.urgent.contains(&call_id) {
            tracing::warn!("no usable answer in an emergency call's ACK: it stays up");
            return None;
        }
        tracing::warn!("no usable answer in the ACK: the call ends");
        Some(call_id)
    }

    /// The call whose ACK brought no usable answer ends: a BYE both ways (RFC 3326 Reason
    /// with 488).
    pub(super) fn media_bad_answer(&mut self, now: Instant, call_id: &str) {
        self.media_hang_up(now, call_id, BAD_ANSWER);
    }

    /// A final response went up for the INVITE of `call_id`: the legs that lost the fork close,
    /// and a failed call's media ends.
    pub(super) fn media_final(&mut self, call_id: &str, status: u16) {
        if status >= 300 {
            return self.media_end(call_id);
        }
        let Some(media) = self.media().cloned() else { return };
        let Some(s) = self.media_calls.by_call.get_mut(call_id) else { return };
        for (_, leg) in std::mem::take(&mut s.branch_legs) {
            if Some(leg) != s.leg {
                media.close(leg);
                self.media_calls.by_leg.remove(&leg);
            }
        }
    }

    /// An in-dialog request: a BYE ends the media; a new offer is rewritten (see the module
    /// docs).
    pub(super) fn media_in_dialog(&mut self, req: &mut Request) {
        let Some(media) = self.media().cloned() else { return };
        if self.media_calls.is_empty() {
            return;
        }
        let call_id = req.headers().call_id().unwrap_or_default().to_owned();
        if *req.method() == Method::Bye {
            return self.media_end(&call_id);
        }
        let Some(s) = self.media_calls.by_call.get_mut(&call_id) else { return };
        let h = req.headers();
        let from_tag = h.from().ok().and_then(|f| f.tag());
        if let (Some(tag), Ok(cseq)) = (from_tag, h.cseq()) {
            match s.cseqs.iter_mut().find(|(t, _)| t == tag) {
                Some((_, seen)) => *seen = (*seen).max(cseq.seq),
                None => s.cseqs.push((tag.to_owned(), cseq.seq)),
            }
        }
        let from_caller = from_tag == Some(s.caller.tag.as_str());
        if !matches!(req.method(), Method::Invite | Method::Update) {
            return;
        }
        let Some(text) = request_sdp(req) else { return };
        let Ok(offer) = Sdp::parse(&text) else { return };
        let Some(leg) = s.leg else { return };
        if let Some(pair) = &s.pair {
            let side = usize::from(!from_caller);
            if let Some(addr) = offer.rtp_address() {
                media.set_pair_peer(leg, side, addr);
            }
            // Toward the other side, from the port that faces it.
            let toward = if from_caller { &s.port } else { &pair.caller_port };
            set_request_sdp(req, &sdp::readdress(&text, toward.addr));
            s.pending = Some(Pending::PairFrom(side));
            return;
        }
        if offer.is_webrtc() {
            match media.reoffer(leg, &text) {
                Ok(answer) => {
                    s.version += 1;
                    let plain = sdp::plain(
                        s.session_id,
                        s.version,
                        s.port.addr,
                        &s.plain_payloads,
                        offer.direction,
                    );
                    set_request_sdp(req, &plain);
                    s.to_plain = Some(plain);
                    s.pending = Some(Pending::FromBrowser(answer));
                }
                Err(e) => tracing::info!(error = %e, "a browser's new offer was refused"),
            }
        } else {
            if let Some(addr) = offer.rtp_address() {
                media.set_trunk(leg, addr);
            }
            // The plain side's new offer: the browser gets its leg's description again, and
            // the plain side the edge's answer, mirroring its direction.
            if let Some(webrtc) = s.to_browser.clone() {
                s.version += 1;
                let plain = sdp::plain(
                    s.session_id,
                    s.version,
                    s.port.addr,
                    &s.plain_payloads,
                    offer.direction.reversed(),
                );
                s.to_plain = Some(plain);
                s.pending = Some(Pending::FromPlain);
                set_request_sdp(req, &webrtc);
            }
        }
    }

    /// The call's media ends: its legs close and its RTP port is released.
    pub(super) fn media_end(&mut self, call_id: &str) {
        let Some(s) = self.media_calls.by_call.remove(call_id) else { return };
        let Some(media) = self.media().cloned() else { return };
        for leg in s.leg.iter().chain(s.branch_legs.iter().map(|(_, l)| l)) {
            media.close(*leg);
            self.media_calls.by_leg.remove(leg);
        }
    }

    /// The Call-ID of the call a leg belongs to.
    pub(super) fn media_call_of(&self, leg: LegId) -> Option<String> {
        self.media_calls.by_leg.get(&leg).cloned()
    }

    /// A leg's media stopped for `[media] timeout`, or its browser went away: the dialog ends
    /// with a BYE toward both sides (RFC 3326 Reason), and with it the call's DND, capacity
    /// count and priority.
    pub(super) fn media_ended(&mut self, now: Instant, leg: LegId) {
        if !self.media_leg_is_live(leg) {
            // A branch that lost the fork, or a call already over.
            if let Some(media) = self.media() {
                media.close(leg);
            }
            self.media_calls.by_leg.remove(&leg);
            return;
        }
        let Some(call_id) = self.media_call_of(leg) else { return };
        if !self.media_calls.by_call.contains_key(&call_id) {
            return;
        }
        tracing::warn!(%leg, "media timeout: the call ends");
        self.config.metrics.media.timeouts.fetch_add(1, Ordering::Relaxed);
        self.media_hang_up(now, &call_id, MEDIA_TIMEOUT);
    }

    /// The edge ends an anchored call: a BYE toward both sides of the dialog carrying
    /// `reason` (RFC 3326), and with it the call's DND, capacity count and priority.
    fn media_hang_up(&mut self, now: Instant, call_id: &str, reason: &str) {
        let Some(s) = self.media_calls.by_call.get(call_id) else { return };
        let cseq_after = |tag: &str| s.cseqs.iter().find(|(t, _)| t == tag).map_or(0, |(_, c)| *c);
        let mut byes = Vec::new();
        if let Some(callee) = &s.callee {
            // Toward the callee, requests follow the caller's CSeq, and the other way round.
            byes.push((callee.clone(), cseq_after(&s.caller.tag) + 1));
            byes.push((s.caller.clone(), cseq_after(&callee.tag) + 1));
        }
        for (end, cseq) in byes {
            self.send_bye(now, call_id, &end, cseq, reason);
        }
        self.config.urgent.end(call_id, now);
        if let Some(dialog) = self.emergency_dialogs.remove(call_id)
            && let Some(agent) = dialog.agent
        {
            self.dnd.end(&agent);
        }
        self.calls_of.ended(call_id);
        self.history.dropped(now, call_id);
        self.media_end(call_id);
    }

    /// A BYE from the edge to one side of a dialog.
    fn send_bye(&mut self, now: Instant, call_id: &str, end: &DialogEnd, cseq: u32, reason: &str) {
        let Some(out) = self.local_addr_for(&end.peer) else { return };
        let Ok(mut req) = Request::new(Method::Bye, &end.contact) else {
            tracing::info!("no usable Contact for the edge's BYE");
            return;
        };
        let mut branch = [0u8; 8];
        super::auth::fill_random(&mut branch);
        let branch: String = branch.iter().map(|b| format!("{b:02x}")).collect();
        let h = req.headers_mut();
        h.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch=z9hG4bKmt{branch}",
                end.peer.transport.as_str(),
                out.host_port()
            ),
        );
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, end.from.clone());
        h.push(HeaderName::To, end.to.clone());
        h.push(HeaderName::CallId, call_id.to_owned());
        h.push(HeaderName::CSeq, format!("{cseq} BYE"));
        h.push(HeaderName::Reason, reason.to_owned());
        h.push(HeaderName::ContentLength, "0");
        self.config.metrics.request(crate::admin::metrics::Dir::Out, &Method::Bye);
        if let Err(e) = self.txn.send_request(now, end.peer, req) {
            tracing::debug!(error = %e, "the edge's BYE not sent");
        }
    }

    /// Whether `leg` is its call's live leg (not a branch that lost the fork).
    pub(super) fn media_leg_is_live(&self, leg: LegId) -> bool {
        self.media_call_of(leg)
            .and_then(|c| self.media_calls.by_call.get(&c))
            .is_some_and(|s| s.leg == Some(leg))
    }
}
