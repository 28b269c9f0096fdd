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
//!   offer from its own WebRTC leg; each browser's answer gives the plain side a plain answer
//!   on the call's RTP port in that browser's dialog, and the 2xx's browser has the call's
//!   media (see Forking). Other targets get the plain offer unchanged.
//! - The first answer fixes the call's voice codec: later plain offers from the edge
//!   hold only it and telephone-event (the leg relays one codec, it does not transcode).
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
//! - An unreliable 18x never carries the edge's offer: its SDP is taken out, and an answer in
//!   it is kept for the 2xx. A retransmitted 2xx carries the same SDP every time.
//! - **100rel** (RFC 3262): the first reliable 18x (`Require: 100rel` and an RSeq) of each
//!   early dialog carries the edge's offer instead, and that dialog's PRACK the answer, which
//!   is taken out of the PRACK and used as the ACK's would be (a PRACK without a usable one
//!   ends the call at the ACK, as below). The 2xx of that dialog then carries no SDP (RFC 3261
//!   §13.2.1), and its ACK is not looked at. With an early offer, an answer in a reliable 18x
//!   is final in its dialog: a 2xx without SDP stays without, and SDP in the 2xx (a repeat) is
//!   taken out. A browser that calls without SDP has one leg, so one offer: only the first
//!   early dialog's reliable 18x carries it (see Not done).
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
//!
//! # Forking (a browser is called on several devices)
//!
//! Each browser branch has a leg of its own from the start. Each browser's answer (in a 18x
//! or its 2xx) is taken by its own leg, and the plain side gets, in that branch's early
//! dialog, the edge's description made from that browser's answer (its codec and direction;
//! the call's RTP port, the same in every dialog, RFC 3261 §13.2.1): an answer with an early
//! offer, the edge's offer in the first reliable 18x with a delayed one, answered in that
//! dialog's PRACK. The call's RTP port is relayed to one leg at a time: the first browser to
//! answer has the early media; the branch whose 2xx wins takes the port (its leg is attached,
//! the other legs close as the proxy cancels their branches), and the plain side's answer or
//! offer in that 2xx is that branch's. So the 2xx's dialog always has its own browser's media.
//! The first 2xx is the call's: another fork's 2xx that comes after it (forwarded too, RFC
//! 6026) gets the call's plain description, and the caller's BYE of that dialog leaves the
//! call's media alone. A first 2xx from a target the anchor is not in (no leg: not a browser,
//! or no WebRTC offer could be made for it) leaves the call unanchored.
//!
//! # A carrier forks the browser's call (several early dialogs behind one branch)
//!
//! A trunk may answer the edge's one INVITE branch from several To-tags: a forking proxy
//! downstream (RFC 3261 §16.7), each 18x with a new To-tag an early dialog of its own
//! (§12.1, §13.2.2.4). The browser made one offer and has one leg:
//!
//! - Each early dialog's answer gets that leg's WebRTC answer (the same ICE credentials,
//!   fingerprint and codec in every dialog: each dialog has an answer to the one offer, RFC
//!   3264 §5, and a browser's one peer connection can take only one DTLS session for it).
//! - Each dialog's plain answer is remembered by its To-tag. Before the 2xx the leg's plain
//!   address is the latest answer's (the fork that answered last has the early media, as
//!   pjsip's `follow_early_media_fork` and rtpengine, where the last answer is the offer's
//!   reverse side), and the leg latches to the first RTP from there (symmetric RTP,
//!   src/media/anchor.rs: once latched, another source's packets are dropped).
//! - The call's 2xx decides: its dialog's address (from its SDP, or from that dialog's 18x
//!   when the 2xx repeats no answer, RFC 3262 §5) becomes the leg's, latching again if it
//!   moved, and the other dialogs are forgotten. Their forks are released by the forking
//!   proxy (CANCEL, §16.7 step 10); a second 2xx (RFC 6026) reaches the browser with the
//!   leg's answer but does not move the leg, the browser's stack ACKs and BYEs it
//!   (§13.2.2.4), and that BYE leaves the call's media, capacity, history and emergency
//!   state alone (src/core/busy.rs).
//!
//! For comparison, rtpengine separates forks by `via-branch` only when the proxy forked
//! itself (one offer per branch); answers with several To-tags on one branch are not told
//! apart there and the last answer wins (sipwise/rtpengine issues 502, 1330). The edge does
//! the same for early media and then gives the 2xx's fork the call.
//!
//! # Early dialogs (RFC 3262 §5 offer in a PRACK, RFC 3311 UPDATE before the 2xx)
//!
//! Once a dialog's first offer/answer is done (an answer in a reliable 18x, or the PRACK's
//! answer to the edge's offer), a new offer in a PRACK (its answer in the PRACK's 2xx) or in
//! an UPDATE from either side is an exchange like those inside the dialog below, on that
//! early dialog's own leg (forking) with the codec its browser chose. When one fails (no
//! usable answer), the message that lacked it goes on without SDP and an ordinary call ends
//! at the ACK of that dialog's 2xx (nothing can be sent a BYE before it; the call may also
//! fail or be answered by another fork); an emergency call or PSAP callback never is, what
//! the edge cannot rewrite passes as it came. A PRACK or UPDATE without SDP offers nothing.
//! An UPDATE with SDP in an early dialog whose reliable 18x carried the edge's delayed offer,
//! before the PRACK answered it, gets 491 from the edge (RFC 3311 §5.2: offers may not
//! cross); in an emergency call or PSAP callback it passes as it came.
//!
//! # Inside the dialog (RFC 3261 §14 re-INVITE, RFC 3311 UPDATE, RFC 6337 §5)
//!
//! Each new offer, or re-INVITE without SDP, is an exchange of its own, told by the
//! requester's side and its CSeq; a 2xx retransmitted (or its ACK) gets the same rewriting.
//! The leg stays the same WebRTC session throughout (src/media/anchor.rs: same ICE
//! credentials, fingerprint and mid, `actpass` in the edge's offers, RFC 8842 §5.2):
//!
//! - **The browser offers** (hold, resume; re-INVITE or UPDATE): the plain side is offered
//!   the call's codec on the call's port with the browser's direction; its answer gives the
//!   leg its RTP address, and the leg answers the browser's offer (str0m) in the 2xx.
//! - **The plain side offers** (a carrier's hold, resume, session refresh with the same
//!   SDP): the browser gets a new offer of its leg with the plain side's direction (an
//!   unchanged one is offered all the same); its answer in the 2xx completes the leg, and the
//!   plain side gets the edge's plain answer with the browser's direction. A refused offer
//!   (3xx-6xx) leaves the leg as it was.
//! - **A re-INVITE without SDP from the plain side**: it reaches the browser as it is; the
//!   browser's offer in its 2xx is answered by the leg, and that answer goes in the ACK; the
//!   plain side gets the edge's plain offer (the call's codec, the browser's direction) in
//!   the 2xx, and its answer in the ACK is taken for the leg and replaced by the leg's.
//! - **A re-INVITE without SDP from the browser**: the plain side's offer in its 2xx (which
//!   must hold the call's codec) gives the leg its address, and the browser gets a new offer
//!   of its leg in the 2xx; the browser's answer in its ACK completes the leg, and the plain
//!   side's ACK carries the edge's plain answer instead.
//! - **Plain to plain** (`anchor = "always"`): offers and answers are readdressed to the
//!   port that faces each side, wherever they are (request, 2xx, ACK); both sides' RTCP
//!   addresses (RFC 3605 `a=rtcp` or the port above RTP) follow.
//! - A new offer without the call's codec (the edge does not transcode) is refused by the
//!   edge with 488 and a `Warning: 305`; the session goes on as it was (RFC 3261 §14.2). In
//!   an emergency call or PSAP callback it passes as it is instead.
//! - **No usable answer** (or, without SDP in the request, no usable offer in the 2xx):
//!   an ordinary call ends with a BYE both ways and `Reason: SIP;cause=488` at the ACK (after
//!   the 2xx for an UPDATE); the message that lacked it goes on without SDP. An emergency
//!   call or PSAP callback stays up: what the edge cannot rewrite passes as it came.
//!
//! # RTCP
//!
//! A WebRTC leg's plain side has the port above its RTP port too (RFC 3550 §11), which the
//! edge's plain descriptions imply (no `a=rtcp`, no `a=rtcp-mux`): the engine binds it
//! (`Media::reserve_leg`), and the anchor relays RTCP between it and the browser's SRTCP, or
//! reports to the browser itself when the plain side sends none (src/media/anchor.rs). The
//! plain side's `a=rtcp` is not read for a WebRTC leg: its RTCP goes to the port above its RTP
//! port until its own RTCP arrives (latching). A plain pair relays RTCP, see
//! src/media/engine.rs.
//!
//! # Not done
//!
//! - An offer or UPDATE in an early dialog whose first offer/answer is not done (RFC 3264
//!   forbids it while an offer is outstanding) passes unchanged, as does a PRACK with SDP
//!   when the reliable 18x it acknowledges carried no offer of the edge's and its dialog has
//!   no leg yet (no answer in it).
//! - A carrier forking downstream (see above): with a delayed offer only the first dialog's
//!   reliable 18x carries the edge's WebRTC offer. A fork whose answer chose another codec
//!   than the leg's (fixed by the first answer) is not refused or transcoded. After the 2xx
//!   moves the leg to its fork, a losing fork still sending (before its CANCEL lands) may be
//!   latched first: latching does not yet prefer the announced address.
//! - Early media in a forked call is that of the first browser to answer: another branch's
//!   browser has ICE and DTLS up but no relayed media until its 2xx wins.
//! - The plain side's RTCP does not keep a leg alive for `[media] timeout` (a long hold with
//!   RTCP only ends like silence would).
//! - The edge never asks for an ICE restart (a browser's is followed by str0m), and never
//!   changes a leg's codec: a plain side that moves to another codec gets 488.
//! - The direction of a plain answer to a browser's new offer does not reach the browser:
//!   the leg answers from its own state (str0m mirrors the offer).

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
use crate::media::engine::{Media, PlainPeer, Reservation};
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
    /// The last offer/answer inside the dialog (re-INVITE, UPDATE), until the next one.
    exchange: Option<Exchange>,
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
    /// Delayed offer with 100rel (RFC 3262): the early dialogs whose first reliable
    /// provisional response carried the edge's offer, so that its answer comes in their
    /// PRACK, not in the ACK.
    early: Vec<EarlyOffer>,
    /// Early offer: the To-tags of the early dialogs whose answer went in a reliable
    /// provisional response, so that their 2xx without SDP stays without (RFC 3261 §13.2.1:
    /// no second answer).
    answered_reliably: Vec<String>,
    /// The browser calls: the plain RTP address each early dialog's answer named, by the
    /// callee's tag (a carrier forking downstream of the edge: several To-tags on the one
    /// branch). The call's 2xx gives the leg its dialog's address, whether or not it
    /// repeats the answer ([`fork_answered`]).
    plain_dialogs: Vec<(String, std::net::SocketAddr)>,
    /// A browser is called: each browser branch that answered, with its own description for
    /// the plain side (forking, RFC 3261 §13.2.1: each early dialog has its answer). The one
    /// in `leg` has the call's port; the 2xx's branch takes it ([`promote`]).
    answers: Vec<BranchAnswer>,
    /// Early dialogs (by the callee's tag) whose offer/answer in a PRACK or UPDATE failed:
    /// an ordinary call ends at the ACK of their 2xx.
    broken_early: Vec<String>,
    /// The 2xx could not carry what the other side needs (no answer to give, or nothing to
    /// offer): the call ends at the ACK.
    broken: bool,
}

/// An early dialog whose first reliable provisional response carried the edge's delayed
/// offer (RFC 3262 §5).
#[derive(Debug)]
struct EarlyOffer {
    /// The callee's tag: the dialog.
    tag: String,
    /// Its PRACK came.
    answered: bool,
    /// And its answer was usable.
    usable: bool,
}

/// A browser branch's answer to the edge's offer (a browser is called).
#[derive(Debug)]
struct BranchAnswer {
    index: u32,
    /// The browser's tag (its early dialog), when its response had one.
    tag: Option<String>,
    leg: LegId,
    /// The plain side's description in this branch's responses: the call's port, this
    /// browser's codec and direction.
    to_plain: String,
    payloads: Vec<(u8, Codec)>,
}

#[derive(Debug)]
struct PairPorts {
    caller_port: Reservation,
    caller: PlainPeer,
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

/// An offer/answer inside the dialog: a re-INVITE (RFC 3261 §14) or an UPDATE (RFC 3311),
/// from the request to its 2xx, and to the ACK for a re-INVITE. Its responses and its ACK are
/// told by the requester's side and the request's CSeq (each side numbers its own requests).
#[derive(Debug)]
struct Exchange {
    from_caller: bool,
    cseq: u32,
    method: Method,
    /// The leg of the dialog (an early dialog of a forked call has its own).
    leg: LegId,
    /// The callee's tag: the dialog.
    dialog: Option<String>,
    flow: Flow,
    /// What the 2xx carries once rewritten, `None` before it came: a retransmitted 2xx
    /// carries the same.
    in_2xx: Option<Body>,
    /// What the ACK carries once rewritten, `None` before it came.
    in_ack: Option<Body>,
    /// No usable answer: an ordinary call ends (at the ACK, or after an UPDATE's 2xx).
    broken: bool,
    /// An emergency call or PSAP callback whose new offer the edge could not rewrite: its
    /// messages pass as they come.
    unanchored: bool,
}

/// What becomes of the SDP of a message of an [`Exchange`].
#[derive(Debug, Clone)]
enum Body {
    /// It passes as it came.
    Unchanged,
    /// It goes (nothing usable to give the other side).
    Without,
    /// This description replaces it, or is put in a body without one.
    With(String),
}

/// Who offers in an [`Exchange`], and where the answer comes from.
#[derive(Debug)]
enum Flow {
    /// Plain to plain: side 0 (the caller) or 1 offered in the request.
    PairOffer(usize),
    /// Plain to plain, a re-INVITE without SDP from side 0 or 1: the other side offers in the
    /// 2xx, and the requester answers in the ACK.
    PairLate(usize),
    /// The browser offered (`offer`): the plain side was offered plain RTP (these payloads),
    /// and its answer makes the leg answer the browser.
    BrowserOffer { offer: String, payloads: Vec<(u8, Codec)> },
    /// The plain side offered (RTP toward `rtp`, these payloads answerable): the browser got
    /// the leg's new offer, and its answer makes the edge's plain answer.
    PlainOffer { rtp: Option<std::net::SocketAddr>, payloads: Vec<(u8, Codec)> },
    /// The plain side's re-INVITE without SDP: the browser offers in its 2xx, and the leg's
    /// answer goes in the ACK (`answer`); the plain side gets the edge's plain offer in the
    /// 2xx and answers in its ACK.
    PlainLate { answer: Option<String> },
    /// The browser's re-INVITE without SDP: the plain side offers in its 2xx (RTP toward
    /// `rtp`, these payloads answerable) and the browser gets the leg's new offer in it; the
    /// browser answers in its ACK, and the plain side gets the edge's plain answer in it.
    BrowserLate { rtp: Option<std::net::SocketAddr>, payloads: Vec<(u8, Codec)> },
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

/// A browser's answer to the edge's offer on branch `index` (its tag `tag`): its leg takes
/// the call's port if no other branch has it yet, and the plain side's description for this
/// branch is made with this browser's codec. A branch answers once: later responses repeat
/// its description. `None` when the answer was refused.
fn take_browser_answer(
    media: &Arc<Media>,
    s: &mut Session,
    index: u32,
    tag: Option<String>,
    text: &str,
    answer: &Sdp,
) -> Option<String> {
    if let Some(b) = s.answers.iter_mut().find(|b| b.index == index) {
        if b.tag.is_none() {
            b.tag = tag;
        }
        return Some(b.to_plain.clone());
    }
    let &(_, leg) = s.branch_legs.iter().find(|(i, _)| *i == index)?;
    let first = s.leg.is_none();
    let accepted = if first {
        media.browser_answered(leg, text, &s.port)
    } else {
        // Another branch's browser has the call's port (forking): this leg takes its answer
        // and gets the port if its 2xx wins ([`promote`]).
        media.reoffer_answered(leg, text)
    };
    if let Err(e) = accepted {
        tracing::warn!(error = %e, "the browser's answer was refused");
        return None;
    }
    let mut payloads: Vec<(u8, Codec)> = answer.voice().into_iter().collect();
    payloads.extend(answer.telephone_event().map(|pt| (pt, Codec::TelephoneEvent)));
    let to_plain = sdp::plain(s.session_id, s.version, s.port.addr, &payloads, answer.direction);
    if first {
        s.leg = Some(leg);
        s.to_plain = Some(to_plain.clone());
        s.plain_payloads = payloads.clone();
    }
    s.answers.push(BranchAnswer { index, tag, leg, to_plain: to_plain.clone(), payloads });
    Some(to_plain)
}

/// The 2xx of branch `index` (a browser is called): its browser's leg becomes the call's and
/// takes the call's port from the branch that had it in the early dialogs, which closes (the
/// proxy cancels that branch). Nothing changes when it has it already, or never answered.
fn promote(media: &Arc<Media>, s: &mut Session, index: u32) {
    let Some(b) = s.answers.iter().find(|b| b.index == index) else { return };
    if s.leg == Some(b.leg) {
        return;
    }
    tracing::info!(branch = index, "another fork's 2xx: its browser's leg takes the call's port");
    if let Some(old) = s.leg {
        media.close(old);
    }
    media.attach_port(b.leg, &s.port);
    s.leg = Some(b.leg);
    s.to_plain = Some(b.to_plain.clone());
    s.plain_payloads = b.payloads.clone();
}

/// The leg of the dialog whose callee has tag `tag`. A browser is called: its branch's, once
/// its browser answered (none before: another branch's leg is not this dialog's); otherwise
/// the call's.
fn dialog_leg(s: &Session, tag: Option<&str>) -> Option<LegId> {
    if s.answers.is_empty() {
        return s.leg;
    }
    s.answers.iter().find(|b| tag.is_some() && b.tag.as_deref() == tag).map(|b| b.leg)
}

/// Whether `req` belongs to a dialog of the call other than the one its 2xx (the first)
/// set up: another fork's, which the caller ends at once.
fn other_fork(s: &Session, req: &Request) -> bool {
    let Some(callee) = &s.callee else { return false };
    let h = req.headers();
    let from = h.from().ok().and_then(|f| f.tag().map(str::to_owned));
    let to = h.to().ok().and_then(|t| t.tag().map(str::to_owned));
    let dialog = if from.as_deref() == Some(s.caller.tag.as_str()) { to } else { from };
    dialog.is_some_and(|d| d != callee.tag)
}

/// The browser calls, and a response of the plain side in the early dialog `tag` (a carrier
/// may fork downstream: several To-tags on the one branch, see the module docs): its answer's
/// RTP address is that dialog's; the call's 2xx (`the_call_s`) gives the leg its own
/// dialog's address, from its SDP or, when it repeats none (the answer went in a reliable
/// 18x), from its dialog's 18x, so that the winning fork has the media whichever fork
/// answered last before it.
fn fork_answered(
    media: &Arc<Media>,
    s: &mut Session,
    tag: Option<&str>,
    the_call_s: bool,
    response: &Response,
) {
    let Some(tag) = tag else { return };
    let named = response_sdp(response)
        .and_then(|t| Sdp::parse(&t).ok())
        .and_then(|answer| answer.rtp_address());
    if let Some(addr) = named {
        match s.plain_dialogs.iter_mut().find(|(t, _)| t == tag) {
            Some((_, a)) => *a = addr,
            None => s.plain_dialogs.push((tag.to_owned(), addr)),
        }
    }
    if !the_call_s {
        return;
    }
    let addr = s.plain_dialogs.iter().find(|(t, _)| t == tag).map(|(_, a)| *a);
    if let (Some(leg), Some(addr)) = (s.leg, addr) {
        if s.plain_dialogs.len() > 1 {
            tracing::info!("a forked early dialog's 2xx: its fork has the call's media");
        }
        media.set_trunk(leg, addr);
    }
    // The other forks' dialogs end with the 2xx (their branches are cancelled downstream,
    // or the browser ends a second 2xx's dialog): only the call's address is kept.
    s.plain_dialogs.retain(|(t, _)| t == tag);
}

/// The payloads the plain side was given in the dialog whose callee has tag `tag`.
fn dialog_payloads<'a>(s: &'a Session, tag: Option<&str>) -> &'a [(u8, Codec)] {
    s.answers
        .iter()
        .find(|b| tag.is_some() && b.tag.as_deref() == tag)
        .map_or(&s.plain_payloads, |b| &b.payloads)
}

/// The answer to the edge's delayed offer (in the ACK, or in the PRACK with 100rel) in the
/// dialog whose callee has tag `tag` sets its leg up: the browser's completes its leg, the
/// plain side's gives the leg its RTP address. `false` when there is none, or none the edge
/// can use.
fn late_answer(media: &Arc<Media>, s: &Session, tag: Option<&str>, text: Option<String>) -> bool {
    match (dialog_leg(s, tag), text) {
        (Some(leg), Some(text)) if s.browser_calls => {
            match media.browser_answered(leg, &text, &s.port) {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(error = %e, "the browser's answer to the edge's offer");
                    false
                }
            }
        }
        (Some(leg), Some(text)) => match Sdp::parse(&text) {
            Ok(answer) if answer.answers_plain(dialog_payloads(s, tag)) => {
                if let Some(addr) = answer.rtp_address() {
                    media.set_trunk(leg, addr);
                }
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// The 2xx of an [`Exchange`] (its SDP `text`, read as `sdp`): what it carries on, or why it
/// has nothing usable.
fn exchange_2xx(
    media: &Arc<Media>,
    s: &mut Session,
    leg: LegId,
    flow: &mut Flow,
    text: Option<String>,
    sdp: Option<Sdp>,
) -> Result<Body, &'static str> {
    match flow {
        Flow::PairOffer(side) => {
            // The other side answered: toward the offerer, from the port that faces it.
            let (Some(text), Some(sdp)) = (text, sdp) else { return Ok(Body::Unchanged) };
            media.set_pair_peer(leg, 1 - *side, plain_peer(&sdp));
            Ok(Body::With(sdp::readdress(&text, pair_port(s, *side))))
        }
        Flow::PairLate(side) => {
            // The other side offers, toward the requester.
            let (Some(text), Some(sdp)) = (text, sdp) else { return Err("no offer in the 2xx") };
            media.set_pair_peer(leg, 1 - *side, plain_peer(&sdp));
            Ok(Body::With(sdp::readdress(&text, pair_port(s, *side))))
        }
        Flow::BrowserOffer { offer, payloads } => {
            let answer = sdp.filter(|a| a.answers_plain(payloads));
            let Some(answer) = answer else { return Err("no usable plain answer") };
            if let Some(addr) = answer.rtp_address() {
                media.set_trunk(leg, addr);
            }
            media.reoffer(leg, offer).map(Body::With).map_err(|e| {
                tracing::info!(error = %e, "the browser's new offer");
                "the browser's new offer was refused"
            })
        }
        Flow::PlainOffer { rtp, payloads } => {
            let Some(text) = text else { return Err("no answer from the browser") };
            if let Err(e) = media.reoffer_answered(leg, &text) {
                tracing::info!(error = %e, "the browser's answer to the edge's new offer");
                return Err("the browser's answer was refused");
            }
            if let Some(addr) = *rtp {
                media.set_trunk(leg, addr);
            }
            let direction = sdp.map(|a| a.direction).unwrap_or_default();
            s.version += 1;
            Ok(Body::With(sdp::plain(s.session_id, s.version, s.port.addr, payloads, direction)))
        }
        Flow::PlainLate { answer } => {
            // The browser offers: the leg answers it (in the ACK), and the plain side is
            // offered the call's codecs with the browser's direction.
            let (Some(text), Some(offer)) = (text, sdp.filter(Sdp::is_webrtc)) else {
                return Err("no WebRTC offer in the browser's 2xx");
            };
            let webrtc = media.reoffer(leg, &text).map_err(|e| {
                tracing::info!(error = %e, "the browser's offer in its 2xx");
                "the browser's offer was refused"
            })?;
            *answer = Some(webrtc);
            s.version += 1;
            let plain = sdp::plain(
                s.session_id,
                s.version,
                s.port.addr,
                &s.plain_payloads,
                offer.direction,
            );
            Ok(Body::With(plain))
        }
        Flow::BrowserLate { rtp, payloads } => {
            // The plain side offers: the browser gets the leg's new offer with its direction.
            let offer = sdp.filter(|o| !o.is_webrtc()).ok_or("no plain offer in the 2xx")?;
            *payloads =
                answerable(&s.plain_payloads, &offer).ok_or("the call's codec is not offered")?;
            *rtp = offer.rtp_address();
            media.offer_again(leg, offer.direction).map(Body::With).map_err(|e| {
                tracing::info!(error = %e, "no new WebRTC offer");
                "no new WebRTC offer"
            })
        }
    }
}

/// The ACK of an [`Exchange`]'s 2xx (its SDP `text`, read as `sdp`): what it carries on, or
/// why its answer is unusable, with what it must carry on all the same.
fn exchange_ack(
    media: &Arc<Media>,
    s: &mut Session,
    leg: LegId,
    flow: &Flow,
    text: Option<String>,
    sdp: Option<Sdp>,
) -> Result<Body, (&'static str, Option<Body>)> {
    match flow {
        Flow::PairLate(side) => {
            // The requester answered: toward the side that offered in the 2xx.
            let (Some(text), Some(sdp)) = (text, sdp) else {
                return Err(("no answer in the ACK", None));
            };
            media.set_pair_peer(leg, *side, plain_peer(&sdp));
            Ok(Body::With(sdp::readdress(&text, pair_port(s, 1 - *side))))
        }
        Flow::PlainLate { answer: Some(webrtc) } => {
            let body = Body::With(webrtc.clone());
            match sdp.filter(|a| a.answers_plain(&s.plain_payloads)) {
                Some(answer) => {
                    if let Some(addr) = answer.rtp_address() {
                        media.set_trunk(leg, addr);
                    }
                    Ok(body)
                }
                None => Err(("no usable plain answer in the ACK", Some(body))),
            }
        }
        Flow::BrowserLate { rtp, payloads } => {
            let Some(text) = text else { return Err(("no answer in the browser's ACK", None)) };
            if let Err(e) = media.reoffer_answered(leg, &text) {
                tracing::info!(error = %e, "the browser's answer in its ACK");
                return Err(("the browser's answer was refused", None));
            }
            if let Some(addr) = *rtp {
                media.set_trunk(leg, addr);
            }
            let direction = sdp.map(|a| a.direction).unwrap_or_default();
            s.version += 1;
            Ok(Body::With(sdp::plain(s.session_id, s.version, s.port.addr, payloads, direction)))
        }
        // The offer and its answer were in the request and the 2xx.
        _ => Ok(Body::Unchanged),
    }
}

/// Where a plain peer receives RTP and RTCP, from its SDP.
fn plain_peer(sdp: &Sdp) -> PlainPeer {
    PlainPeer { rtp: sdp.rtp_address(), rtcp: sdp.rtcp_address() }
}

/// A plain-to-plain call's port that faces side 0 (the caller) or 1.
fn pair_port(s: &Session, side: usize) -> std::net::SocketAddr {
    match &s.pair {
        Some(pair) if side == 0 => pair.caller_port.addr,
        _ => s.port.addr,
    }
}

/// A PRACK (RFC 3262) of the reliable 18x that carried the edge's delayed offer in its early
/// dialog: its answer completes the dialog's leg like an ACK's, and is taken out of it. An
/// unusable one makes the dialog's ACK end the call (unless it is an emergency call).
/// Returns whether the PRACK was that one (otherwise its SDP, if any, is a new offer).
fn prack_answer(media: &Arc<Media>, s: &mut Session, req: &mut Request) -> bool {
    if !s.late {
        return false;
    }
    let tag = req.headers().to().ok().and_then(|t| t.tag().map(str::to_owned));
    let Some(tag) = tag else { return false };
    if !s.early.iter().any(|e| e.tag == tag && !e.answered) {
        return false;
    }
    let text = request_sdp(req);
    strip_request_sdp(req);
    let usable = late_answer(media, s, Some(&tag), text);
    if !usable {
        tracing::warn!("no usable answer in the PRACK");
    }
    if let Some(e) = s.early.iter_mut().find(|e| e.tag == tag) {
        e.answered = true;
        e.usable = usable;
    }
    true
}

/// A provisional response sent reliably (RFC 3262 §3: `Require: 100rel` and an RSeq).
fn reliable(r: &Response) -> bool {
    let h = r.headers();
    (101..200).contains(&r.status())
        && h.contains(HeaderName::RSeq)
        && h.get_all(HeaderName::Require).any(|v| {
            std::str::from_utf8(v).is_ok_and(|v| {
                sip::header::typed::tokens(v).any(|t| t.eq_ignore_ascii_case("100rel"))
            })
        })
}

/// What the plain side's answer chose of the payloads it was `offered`: the voice codec the
/// call uses (the answer's first one offered), and telephone-event if both have it. Later
/// offers to the plain side hold only these (the leg relays one voice codec).
fn chosen(offered: &[(u8, Codec)], answer: &Sdp) -> Vec<(u8, Codec)> {
    let voice = answer
        .relayable()
        .map(|(_, c)| c)
        .find(|c| *c != Codec::TelephoneEvent && offered.iter().any(|(_, o)| o == c));
    let events = answer.telephone_event().is_some();
    offered
        .iter()
        .copied()
        .filter(|(_, c)| Some(*c) == voice || (*c == Codec::TelephoneEvent && events))
        .collect()
}

/// The payloads of ours (`(pt, codec)` the plain side knows) that a new plain offer still
/// has, by codec; `None` without the voice codec the call uses (the edge does not transcode).
fn answerable(ours: &[(u8, Codec)], offer: &Sdp) -> Option<Vec<(u8, Codec)>> {
    let offered: Vec<Codec> = offer.relayable().map(|(_, c)| c).collect();
    let kept: Vec<(u8, Codec)> =
        ours.iter().copied().filter(|(_, c)| offered.contains(c)).collect();
    kept.iter().any(|(_, c)| *c != Codec::TelephoneEvent).then_some(kept)
}

fn put_body_in_response(r: &mut Response, body: &Body) {
    match body {
        Body::Unchanged => {}
        Body::Without => strip_response_sdp(r),
        Body::With(text) => {
            put_response_sdp(r, text);
        }
    }
}

fn put_body_in_request(req: &mut Request, body: &Body) {
    match body {
        Body::Unchanged => {}
        Body::Without => strip_request_sdp(req),
        Body::With(text) => {
            put_request_sdp(req, text);
        }
    }
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
        exchange: None,
        late: false,
        ack_tag: None,
        settled: false,
        early: Vec::new(),
        answered_reliably: Vec::new(),
        plain_dialogs: Vec::new(),
        answers: Vec::new(),
        broken_early: Vec::new(),
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
            // A plain pair relays RTCP too, on the ports above (see the engine's docs).
            // A WebRTC leg's plain side gets its RTCP port too, which reads and drops.
            let reserve = || if pair { media.reserve_with_rtcp() } else { media.reserve_leg() };
            let ports = reserve().and_then(|p| {
                let caller = if pair { Some(reserve()?) } else { None };
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
                .map(|caller_port| PairPorts { caller_port, caller: plain_peer(&offer) });
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
            let port = match media.reserve_leg() {
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
    ///
    /// Returns the Call-ID of a call the edge must end once the response is forwarded
    /// ([`Core::media_bad_answer`]): an UPDATE's new offer without a usable answer.
    pub(super) fn media_response(
        &mut self,
        method: &Method,
        call_id: &str,
        in_dialog: bool,
        index: u32,
        response: &mut Response,
    ) -> Option<String> {
        let media = self.media()?.clone();
        if !matches!(method, Method::Invite | Method::Update | Method::Prack) {
            return None;
        }
        if in_dialog {
            return self.media_exchange_response(&media, call_id, response);
        }
        let s = self.media_calls.by_call.get_mut(call_id)?;
        let status = response.status();
        if !(101..300).contains(&status) {
            return None;
        }
        let tag = to_tag(response);
        let is_2xx = (200..300).contains(&status);
        let browsers_called = !s.browser_calls && s.pair.is_none();
        if is_2xx && s.callee.is_none() {
            if browsers_called && !s.branch_legs.iter().any(|(i, _)| *i == index) {
                // A target the anchor is not in (not a browser, or no WebRTC offer for it)
                // answered first: the call's media does not touch the edge.
                tracing::info!("the 2xx of a branch without a leg: the call goes unanchored");
                self.media_end(call_id);
                return None;
            }
            s.callee = answered_end(s, index, response);
        }
        // The call's 2xx (the first, or a retransmission of it): another fork's 2xx, also
        // forwarded (RFC 6026), is for a dialog the caller ends at once.
        let the_call_s = is_2xx && s.callee.as_ref().is_some_and(|c| Some(&c.tag) == tag.as_ref());
        if s.browser_calls && s.pair.is_none() {
            fork_answered(&media, s, tag.as_deref(), the_call_s, response);
        }
        if s.late {
            let urgent = self.config.urgent.contains(call_id);
            self.media_late_response(&media, call_id, index, urgent, the_call_s, response);
            return None;
        }
        if the_call_s && browsers_called {
            // Forking: the 2xx's browser has the call's media.
            promote(&media, s, index);
        }
        let answered_reliably = tag.as_ref().is_some_and(|t| s.answered_reliably.contains(t));
        let Some(text) = response_sdp(response) else {
            // A 2xx without SDP to an offer is illegal (RFC 3261 §13.2.1) unless a reliable
            // 18x of its dialog answered; an answer from an unreliable 18x is repeated in it.
            if !is_2xx || s.pair.is_some() || answered_reliably {
                return None;
            }
            let ready = if s.browser_calls {
                s.to_browser.clone()
            } else {
                s.answers.iter().find(|b| b.index == index).map(|b| b.to_plain.clone())
            };
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
            return None;
        };
        if answered_reliably && is_2xx {
            // The answer went in a reliable 18x: this one can only repeat it, and the other
            // side has it (RFC 3261 §13.2.1).
            strip_response_sdp(response);
            return None;
        }
        let Ok(answer) = Sdp::parse(&text) else { return None };
        if reliable(response)
            && let Some(tag) = &tag
            && !answered_reliably
        {
            // RFC 3262: this answer is final in its dialog; a 2xx without SDP gets none.
            s.answered_reliably.push(tag.clone());
        }
        if let Some(pair) = &s.pair {
            // Plain to plain: the callee answered the caller's offer.
            match s.leg {
                Some(id) => media.set_pair_peer(id, 1, plain_peer(&answer)),
                None => {
                    let callee = plain_peer(&answer);
                    let id = media.pair(&pair.caller_port, pair.caller, &s.port, callee);
                    s.leg = Some(id);
                    self.media_calls.by_leg.insert(id, call_id.to_owned());
                }
            }
            let Some(pair) = &s.pair else { return None };
            set_response_sdp(response, &sdp::readdress(&text, pair.caller_port.addr));
            return None;
        }
        if s.browser_calls {
            // The plain side answered the browser's call.
            if let Some(webrtc) = &s.to_browser {
                // Another fork's 2xx after the call's (RFC 6026) is a dialog the browser ends
                // at once: its address is not the call's.
                if let (Some(leg), Some(addr), false) =
                    (s.leg, answer.rtp_address(), is_2xx && s.callee.is_some() && !the_call_s)
                {
                    media.set_trunk(leg, addr);
                }
                let webrtc = webrtc.clone();
                set_response_sdp(response, &webrtc);
                return None;
            }
            let offer = s.browser_offer.as_deref()?;
            let voices: Vec<Codec> = answer.voice().map(|(_, c)| c).into_iter().collect();
            let events = answer.telephone_event();
            match media.answer_browser(&s.port, offer, answer.rtp_address(), &voices, events) {
                Ok((leg, webrtc)) => {
                    s.plain_payloads = chosen(&s.plain_payloads, &answer);
                    s.leg = Some(leg);
                    self.media_calls.by_leg.insert(leg, call_id.to_owned());
                    set_response_sdp(response, &webrtc);
                    s.to_browser = Some(webrtc);
                }
                Err(e) => tracing::warn!(error = %e, "the browser's offer could not be answered"),
            }
        } else {
            // A browser answered a plain offer: each branch its own answer (forking).
            let plain = match take_browser_answer(&media, s, index, tag, &text, &answer) {
                Some(plain) => plain,
                // Another fork's 2xx after the call's (RFC 6026): its leg closed with the
                // final response, and the plain side, which ends that dialog at once, gets the
                // call's description rather than a browser's.
                None if is_2xx && !the_call_s => s.to_plain.clone()?,
                None => return None,
            };
            if the_call_s {
                promote(&media, s, index);
            }
            set_response_sdp(response, &plain);
        }
        None
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
        the_call_s: bool,
        response: &mut Response,
    ) {
        let Some(s) = self.media_calls.by_call.get_mut(call_id) else { return };
        let text = response_sdp(response);
        let answer = text.as_deref().and_then(|t| Sdp::parse(t).ok());
        let ready = if s.browser_calls {
            // The plain side answered: the browser is offered its codec.
            let other_2xx =
                (200..300).contains(&response.status()) && s.callee.is_some() && !the_call_s;
            match (&answer, s.leg) {
                (Some(answer), Some(leg)) => {
                    // Not another fork's 2xx after the call's (RFC 6026).
                    if let (Some(addr), false) = (answer.rtp_address(), other_2xx) {
                        media.set_trunk(leg, addr);
                    }
                }
                (Some(answer), None) if answer.answers_plain(&s.plain_payloads) => {
                    let voices: Vec<Codec> = answer.voice().map(|(_, c)| c).into_iter().collect();
                    let events = answer.telephone_event();
                    match media.offer_browser(answer.rtp_address(), &voices, events) {
                        Ok((leg, webrtc)) => {
                            s.plain_payloads = chosen(&s.plain_payloads, answer);
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
            // A browser answered: the plain side is offered its codec, in each early dialog
            // its own browser's (forking).
            let taken = match (&text, &answer) {
                (Some(text), Some(answer)) => {
                    take_browser_answer(media, s, index, to_tag(response), text, answer)
                }
                _ => s.answers.iter().find(|b| b.index == index).map(|b| b.to_plain.clone()),
            };
            if the_call_s {
                promote(media, s, index);
            }
            taken
        };
        let tag = to_tag(response);
        if !(200..300).contains(&response.status()) {
            // The first reliable one of each early dialog carries the offer, and its PRACK
            // will carry the answer (RFC 3262 §5); otherwise the offer waits for the 2xx (RFC
            // 3261 §13.2.1).
            let offered = tag.as_ref().is_some_and(|t| s.early.iter().any(|e| e.tag == *t));
            // A browser that called has one leg, hence one offer to answer: only the first
            // early dialog gets it (a carrier forking downstream is not followed).
            let once = s.browser_calls && !s.early.is_empty();
            match (&ready, tag) {
                (Some(offer), Some(tag))
                    if !offered
                        && !once
                        && reliable(response)
                        && put_response_sdp(response, offer) =>
                {
                    s.early.push(EarlyOffer { tag, answered: false, usable: false });
                }
                _ => strip_response_sdp(response),
            }
            return;
        }
        // The first 2xx is the call's (the plain side ACKs and ends any other fork's, and a
        // retransmission has the same tag).
        let ours = s.ack_tag.is_none() || s.ack_tag == tag;
        if ours {
            s.ack_tag = tag.clone();
        }
        if tag.as_ref().is_some_and(|t| s.early.iter().any(|e| e.tag == *t)) {
            // The offer went in a reliable 18x and its answer in the PRACK: the 2xx carries
            // no second offer (RFC 3261 §13.2.1).
            strip_response_sdp(response);
            return;
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
        let h = req.headers();
        let from_caller = h.from().ok().and_then(|f| f.tag()) == Some(s.caller.tag.as_str());
        let cseq = h.cseq().ok()?.seq;
        if s.exchange.as_ref().is_some_and(|x| {
            x.method == Method::Invite && x.cseq == cseq && x.from_caller == from_caller
        }) {
            // The ACK of a re-INVITE's 2xx.
            return self.media_exchange_ack(&media, &call_id, req).then_some(call_id);
        }
        let tag = req.headers().to().ok()?.tag()?.to_owned();
        if s.broken_early.contains(&tag) && s.callee.as_ref().is_some_and(|c| c.tag == tag) {
            // An offer/answer of its early dialog failed (a PRACK's or an UPDATE's).
            if std::mem::replace(&mut s.settled, true) || self.config.urgent.contains(&call_id) {
                return None;
            }
            tracing::warn!("an early offer/answer failed: the call ends at its ACK");
            return Some(call_id);
        }
        if !s.late && !s.broken {
            return None;
        }
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
        // With 100rel the answer came in the PRACK.
        let usable = !s.broken
            && match s.early.iter().find(|e| e.tag == tag) {
                Some(e) if e.answered => e.usable,
                _ => late_answer(&media, s, Some(&tag), text),
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
        let live = s.leg;
        s.answers.retain(|b| Some(b.leg) == live);
    }

    /// An in-dialog request: a BYE ends the media; a new offer (re-INVITE, UPDATE) or a
    /// re-INVITE without SDP starts an [`Exchange`]; a PRACK may bring the answer to the edge's
    /// offer in a reliable 18x (see the module docs). Returns the response refusing a new offer
    /// the edge cannot relay (488: the session goes on as it was, RFC 3261 §14.2).
    pub(super) fn media_in_dialog(&mut self, req: &mut Request) -> Option<Response> {
        if self.media_calls.is_empty() {
            return None;
        }
        let media = self.media()?.clone();
        let call_id = req.headers().call_id().unwrap_or_default().to_owned();
        if *req.method() == Method::Bye {
            if self.media_calls.by_call.get(&call_id).is_some_and(|s| other_fork(s, req)) {
                // The caller ends a dialog another fork's 2xx set up (RFC 6026): not the call's.
                return None;
            }
            self.media_end(&call_id);
            return None;
        }
        let urgent = self.config.urgent.contains(&call_id);
        let s = self.media_calls.by_call.get_mut(&call_id)?;
        let h = req.headers();
        let from_tag = h.from().ok().and_then(|f| f.tag());
        let cseq = h.cseq().ok().map(|c| c.seq);
        if let (Some(tag), Some(cseq)) = (from_tag, cseq) {
            match s.cseqs.iter_mut().find(|(t, _)| t == tag) {
                Some((_, seen)) => *seen = (*seen).max(cseq),
                None => s.cseqs.push((tag.to_owned(), cseq)),
            }
        }
        let from_caller = from_tag == Some(s.caller.tag.as_str());
        // The dialog: the callee's tag (early dialogs of a forked call each have their own).
        let to_tag = h.to().ok().and_then(|t| t.tag());
        let dialog = if from_caller { to_tag } else { from_tag }.map(str::to_owned);
        let method = req.method().clone();
        if method == Method::Prack && prack_answer(&media, s, req) {
            return None;
        }
        if !matches!(method, Method::Invite | Method::Update | Method::Prack) {
            return None;
        }
        // Inside the call, or in an early dialog once its answer came (RFC 3262 §5: a new
        // offer in a PRACK; RFC 3311 §5.1: in an UPDATE).
        let (Some(leg), Some(cseq)) = (dialog_leg(s, dialog.as_deref()), cseq) else {
            return None;
        };
        let payloads = dialog_payloads(s, dialog.as_deref()).to_vec();
        let text = request_sdp(req);
        let offer_pending = |d: &String| s.early.iter().any(|e| e.tag == *d && !e.answered);
        if method == Method::Update && text.is_some() && dialog.as_ref().is_some_and(offer_pending)
        {
            // The edge's delayed offer in this early dialog still waits for its answer (in the
            // PRACK): no second offer may cross it (RFC 3311 §5.2).
            if urgent {
                tracing::warn!("an UPDATE crossing the edge's offer passes as is (emergency)");
                return None;
            }
            tracing::info!("an UPDATE crossing the edge's unanswered offer: 491");
            return Some(Response::for_request(req, 491, "Request Pending"));
        }
        let offer = match text.as_deref().map(Sdp::parse) {
            // An UPDATE without SDP refreshes the target, and offers nothing; a PRACK without
            // SDP only acknowledges.
            None if method != Method::Invite => return None,
            None => None,
            Some(Ok(offer)) => Some(offer),
            Some(Err(e)) => {
                tracing::info!(error = %e, "an in-dialog offer the anchor cannot read passes");
                return None;
            }
        };
        let browser_sent = s.pair.is_none() && from_caller == s.browser_calls;
        let flow = match (offer, text) {
            (None, _) if s.pair.is_some() => Flow::PairLate(usize::from(!from_caller)),
            (None, _) if browser_sent => Flow::BrowserLate { rtp: None, payloads: Vec::new() },
            (None, _) => Flow::PlainLate { answer: None },
            (Some(offer), Some(text)) if s.pair.is_some() => {
                let side = usize::from(!from_caller);
                media.set_pair_peer(leg, side, plain_peer(&offer));
                // Toward the other side, from the port that faces it.
                let toward = match &s.pair {
                    Some(pair) if !from_caller => pair.caller_port.addr,
                    _ => s.port.addr,
                };
                set_request_sdp(req, &sdp::readdress(&text, toward));
                Flow::PairOffer(side)
            }
            (Some(offer), Some(text)) => {
                let usable =
                    offer.is_webrtc() == browser_sent && answerable(&payloads, &offer).is_some();
                if !usable {
                    if urgent || offer.is_webrtc() != browser_sent {
                        tracing::warn!("an in-dialog offer the anchor cannot relay passes as is");
                        return None;
                    }
                    tracing::info!("an in-dialog offer without the call's codec: 488");
                    return Some(self.refuse_offer(req));
                }
                if browser_sent {
                    // The plain side is offered the call's codecs with the browser's
                    // direction; the leg answers the browser once the plain side answered.
                    s.version += 1;
                    let plain = sdp::plain(
                        s.session_id,
                        s.version,
                        s.port.addr,
                        &payloads,
                        offer.direction,
                    );
                    set_request_sdp(req, &plain);
                    Flow::BrowserOffer { offer: text, payloads }
                } else {
                    // The browser is offered the same session again with the plain side's
                    // direction (hold, resume, a session refresh).
                    let payloads = answerable(&payloads, &offer).unwrap_or_default();
                    match media.offer_again(leg, offer.direction) {
                        Ok(webrtc) => set_request_sdp(req, &webrtc),
                        Err(e) => {
                            tracing::warn!(error = %e, "no new WebRTC offer: the offer passes");
                            return None;
                        }
                    }
                    Flow::PlainOffer { rtp: offer.rtp_address(), payloads }
                }
            }
            (Some(_), None) => return None,
        };
        s.exchange = Some(Exchange {
            from_caller,
            cseq,
            method,
            leg,
            dialog,
            flow,
            in_2xx: None,
            in_ack: None,
            broken: false,
            unanchored: false,
        });
        None
    }

    /// The 488 refusing an in-dialog offer without the call's codec (the edge does not
    /// transcode), with a `Warning: 305` (RFC 3261 §20.43).
    fn refuse_offer(&self, req: &Request) -> Response {
        let mut r = Response::for_request(req, 488, "Not Acceptable Here");
        let host = self.config.registrar.domain.clone();
        r.headers_mut().push(
            HeaderName::Warning,
            format!("305 {host} \"Incompatible media format: the call's codec is not offered\""),
        );
        r
    }

    /// A response to an in-dialog request of an anchored call: the 2xx of an [`Exchange`]
    /// carries the answer to its offer, or (a re-INVITE without SDP) the other side's offer,
    /// each rewritten for the side it goes to; a refusal leaves the media as it was. Returns
    /// the Call-ID of a call to end (an UPDATE's offer without a usable answer).
    fn media_exchange_response(
        &mut self,
        media: &Arc<Media>,
        call_id: &str,
        response: &mut Response,
    ) -> Option<String> {
        let urgent = self.config.urgent.contains(call_id);
        let s = self.media_calls.by_call.get_mut(call_id)?;
        let h = response.headers();
        let cseq = h.cseq().ok()?;
        let from_caller = h.from().ok().and_then(|f| f.tag()) == Some(s.caller.tag.as_str());
        let x = s.exchange.as_ref()?;
        if x.cseq != cseq.seq || x.method != cseq.method || x.from_caller != from_caller {
            return None;
        }
        let status = response.status();
        if status < 200 {
            return None;
        }
        let mut x = s.exchange.take()?;
        let leg = x.leg;
        if status >= 300 {
            // A refused offer changes nothing (RFC 3261 §14.1).
            if matches!(x.flow, Flow::PlainOffer { .. }) {
                media.withdraw_offer(leg);
            }
            return None;
        }
        if let Some(body) = &x.in_2xx {
            // A retransmission of the 2xx.
            put_body_in_response(response, body);
            s.exchange = Some(x);
            return None;
        }
        let text = response_sdp(response);
        let sdp = text.as_deref().and_then(|t| Sdp::parse(t).ok());
        let body = match exchange_2xx(media, s, leg, &mut x.flow, text, sdp) {
            Ok(body) => body,
            Err(why) if urgent => {
                tracing::warn!(why, "an emergency call's new offer passes unanchored");
                x.unanchored = true;
                Body::Unchanged
            }
            Err(why) => {
                tracing::warn!(why, "an offer inside the dialog failed: the call ends");
                x.broken = true;
                Body::Without
            }
        };
        put_body_in_response(response, &body);
        x.in_2xx = Some(body);
        let mut end = x.broken && matches!(x.method, Method::Update | Method::Prack);
        if let Some(dialog) = x.dialog.clone()
            && s.callee.is_none()
        {
            // An early dialog (RFC 3262 §5, RFC 3311 §5.1): nothing to send a BYE to yet; the
            // call ends at the ACK of its 2xx, if that dialog is the one answered.
            s.broken_early.retain(|t| *t != dialog);
            if end {
                s.broken_early.push(dialog);
            }
            end = false;
        }
        s.exchange = Some(x);
        end.then(|| call_id.to_owned())
    }

    /// The ACK of a re-INVITE's 2xx: an answer to an offer in the 2xx (delayed offer) is
    /// rewritten for the side that offered. Returns whether the call must end (no usable
    /// answer in an ordinary call).
    fn media_exchange_ack(&mut self, media: &Arc<Media>, call_id: &str, req: &mut Request) -> bool {
        let urgent = self.config.urgent.contains(call_id);
        let Some(s) = self.media_calls.by_call.get_mut(call_id) else { return false };
        let Some(mut x) = s.exchange.take() else { return false };
        let leg = x.leg;
        if let Some(body) = &x.in_ack {
            // The ACK of a retransmitted 2xx.
            put_body_in_request(req, body);
            s.exchange = Some(x);
            return false;
        }
        let text = request_sdp(req);
        let sdp = text.as_deref().and_then(|t| Sdp::parse(t).ok());
        let body = if x.unanchored || x.in_2xx.is_none() {
            Body::Unchanged
        } else {
            match exchange_ack(media, s, leg, &x.flow, text, sdp) {
                Ok(body) => body,
                // The browser still needs the leg's answer to its offer (`fallback`).
                Err((why, fallback)) if urgent => {
                    tracing::warn!(why, "an emergency call's answer in the ACK: it stays up");
                    fallback.unwrap_or_else(|| {
                        x.unanchored = true;
                        Body::Unchanged
                    })
                }
                Err((why, fallback)) => {
                    tracing::warn!(why, "no usable answer in a re-INVITE's ACK: the call ends");
                    x.broken = true;
                    fallback.unwrap_or(Body::Without)
                }
            }
        };
        put_body_in_request(req, &body);
        x.in_ack = Some(body);
        let end = x.broken && !urgent;
        s.exchange = Some(x);
        end
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

#[cfg(test)]
mod tests {
    // Test code: a panic is a failed test.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sdp(m: &str) -> Sdp {
        Sdp::parse(&format!("c=IN IP4 192.0.2.1\r\n{m}\r\na=rtpmap:101 telephone-event/8000\r\n"))
            .unwrap()
    }

    const OFFERED: [(u8, Codec); 3] =
        [(0, Codec::Pcmu), (8, Codec::Pcma), (101, Codec::TelephoneEvent)];

    #[test]
    fn the_answer_fixes_the_call_s_codec() {
        // The answer's first voice codec that was offered, with events when both have them.
        assert_eq!(
            chosen(&OFFERED, &sdp("m=audio 4000 RTP/AVP 8 0 101")),
            vec![(8, Codec::Pcma), (101, Codec::TelephoneEvent)]
        );
        assert_eq!(chosen(&OFFERED, &sdp("m=audio 4000 RTP/AVP 0")), vec![(0, Codec::Pcmu)]);
    }

    #[test]
    fn a_new_plain_offer_is_answerable_only_with_the_call_s_codec() {
        let ours = [(0, Codec::Pcmu), (101, Codec::TelephoneEvent)];
        assert_eq!(answerable(&ours, &sdp("m=audio 4000 RTP/AVP 8 0 101")), Some(ours.to_vec()));
        assert_eq!(
            answerable(&ours, &sdp("m=audio 4000 RTP/AVP 0")),
            Some(vec![(0, Codec::Pcmu)]),
            "no events offered: none answered"
        );
        assert_eq!(answerable(&ours, &sdp("m=audio 4000 RTP/AVP 8 101")), None);
    }

    #[test]
    fn a_provisional_response_is_reliable_with_require_100rel_and_an_rseq() {
        let parse = |text: &str| match sip::Message::parse(
            Bytes::from(text.to_owned()),
            sip::Framing::Datagram,
        ) {
            Ok(sip::Message::Response(r)) => r,
            other => panic!("{other:?}"),
        };
        let response = |status: &str, extra: &str| {
            parse(&format!(
                "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
                 From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\n\
                 CSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
            ))
        };
        assert!(reliable(&response("183 Session Progress", "Require: 100rel\r\nRSeq: 1\r\n")));
        assert!(reliable(&response("180 Ringing", "Require: timer, 100REL\r\nRSeq: 7\r\n")));
        assert!(!reliable(&response("183 Session Progress", "RSeq: 1\r\n")));
        assert!(!reliable(&response("183 Session Progress", "Require: 100rel\r\n")));
        assert!(!reliable(&response("200 OK", "Require: 100rel\r\nRSeq: 1\r\n")));
    }
}
