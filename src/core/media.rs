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
    target.peer.is_some_and(|p: Peer| matches!(p.transport, Transport::Ws | Transport::Wss))
}

/// The codecs of the plain offer made for a browser's offer (its order), `None` without a
/// voice codec the edge relays.
fn plain_payloads(browser: &Sdp) -> Option<Vec<(u8, Codec)>> {
    browser.voice()?;
    Some(browser.relayable().collect())
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
        if !browser_target && !media.always() && !looks_webrtc(req.body()) {
            // The common case, plain RTP toward a plain peer: nothing to read or copy.
            return;
        }
        let Some(text) = request_sdp(req) else { return };
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
            let pair = caller_port
                .map(|caller_port| PairPorts { caller_port, caller_rtp: offer.rtp_address() });
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
            let session = Session {
                caller,
                callee: None,
                branches: Vec::new(),
                cseqs: vec![(tag, cseq)],
                pair,
                port,
                session_id: media.session_id(),
                version: 1,
                browser_calls: offer.is_webrtc(),
                browser_offer: offer.is_webrtc().then(|| text.clone()),
                plain_payloads: Vec::new(),
                leg: None,
                branch_legs: Vec::new(),
                to_browser: None,
                to_plain: None,
                pending: None,
            };
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
        let Some(text) = response_sdp(response) else { return };
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
            if let Some(plain) = &s.to_plain {
                let plain = plain.clone();
                set_response_sdp(response, &plain);
                return;
            }
            let Some(&(_, leg)) = s.branch_legs.iter().find(|(i, _)| *i == index) else { return };
            if let Err(e) = media.browser_answered(leg, &text, &s.port) {
                tracing::warn!(error = %e, "the browser's answer was refused");
                return;
            }
            s.leg = Some(leg);
            let mut payloads: Vec<(u8, Codec)> = answer.voice().into_iter().collect();
            payloads.extend(answer.telephone_event().map(|pt| (pt, Codec::TelephoneEvent)));
            let plain =
                sdp::plain(s.session_id, s.version, s.port.addr, &payloads, answer.direction);
            s.plain_payloads = payloads;
            set_response_sdp(response, &plain);
            s.to_plain = Some(plain);
        }
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
        let Some(s) = self.media_calls.by_call.get(&call_id) else { return };
        let cseq_after = |tag: &str| s.cseqs.iter().find(|(t, _)| t == tag).map_or(0, |(_, c)| *c);
        let mut byes = Vec::new();
        if let Some(callee) = &s.callee {
            // Toward the callee, requests follow the caller's CSeq, and the other way round.
            byes.push((callee.clone(), cseq_after(&s.caller.tag) + 1));
            byes.push((s.caller.clone(), cseq_after(&callee.tag) + 1));
        }
        tracing::warn!(%leg, "media timeout: the call ends");
        self.config.metrics.media.timeouts.fetch_add(1, Ordering::Relaxed);
        for (end, cseq) in byes {
            self.send_bye(now, &call_id, &end, cseq);
        }
        self.config.urgent.remove(&call_id);
        if let Some(dialog) = self.emergency_dialogs.remove(&call_id)
            && let Some(agent) = dialog.agent
        {
            self.dnd.end(&agent);
        }
        self.calls_of.ended(&call_id);
        self.history.dropped(now, &call_id);
        self.media_end(&call_id);
    }

    /// A BYE from the edge to one side of a dialog.
    fn send_bye(&mut self, now: Instant, call_id: &str, end: &DialogEnd, cseq: u32) {
        let Some(out) = self.local_addr_for(&end.peer) else { return };
        let Ok(mut req) = Request::new(Method::Bye, &end.contact) else {
            tracing::info!("media timeout: no usable Contact for a BYE");
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
        h.push(HeaderName::Reason, "SIP;cause=408;text=\"media timeout\"");
        h.push(HeaderName::ContentLength, "0");
        self.config.metrics.request(crate::admin::metrics::Dir::Out, &Method::Bye);
        if let Err(e) = self.txn.send_request(now, end.peer, req) {
            tracing::debug!(error = %e, "media timeout BYE not sent");
        }
    }

    /// Whether `leg` is its call's live leg (not a branch that lost the fork).
    pub(super) fn media_leg_is_live(&self, leg: LegId) -> bool {
        self.media_call_of(leg)
            .and_then(|c| self.media_calls.by_call.get(&c))
            .is_some_and(|s| s.leg == Some(leg))
    }
}
