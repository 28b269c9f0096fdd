//! Forked calls with several 2xx (RFC 3261 §13.2.2.4, RFC 6026) against real peers: a
//! scripted carrier on the trunk's address (SIP over UDP, RTP echoed from another socket) and
//! "browsers" registered over WebSocket whose WebRTC is str0m ([`common::webrtc`]).
//!
//! - A carrier's call to alice's DID rings two browsers of hers, both answer 200 (each 200
//!   with a plain answer): the first 2xx is the call. The carrier's BYE of the other dialog (the losing fork) ends none of the
//!   call's accounting: alice (capacity 1) still refuses a new call with 486, no call-history
//!   row is written, and the first browser keeps the media; the call's own BYE then ends all
//!   of it (the row comes, alice takes calls again, no leg is left).
//! - A browser's call that the carrier forks downstream of the edge: one branch, two early
//!   dialogs (reliable 183s with To-tags `f-a` and `f-b`, each with its own RTP address). The
//!   browser gets the leg's one WebRTC answer in each (the same ICE and DTLS session) and
//!   PRACKs both; the last answer (`f-b`, a silent peer) has the early media until `f-a`'s
//!   200, which repeats no SDP (RFC 3262: the answer was in its reliable 183): then `f-a`'s
//!   address is the leg's, audio goes both ways through `f-a`'s RTP echo, and nothing more
//!   reaches `f-b`.
//! - A PSAP callback's early dialog that fails (issue 7 with the emergency rules): the PSAP
//!   calls the leased callback number with an offer, alice's browser answers in a 183 (early
//!   media both ways through the edge), then declines (480): the PSAP gets the 480 (no
//!   fallback configured), the browser's leg closes, alice's presence is as before, and the
//!   lease still routes: the PSAP's second call rings her again, and its CANCEL during the
//!   early media gets 200 and a 487 and closes the leg too.
//! - alice's 933 call forked by the carrier into two 200s (RFC 6026): the first (`t-1`, an
//!   RTP echo) is the call; the second (`t-2`, a silent peer) does not move the leg, and the
//!   browser's BYE of its dialog leaves the emergency state alone: alice stays in DND and the
//!   media goes on through `t-1`, with nothing reaching `t-2`. The call's BYE ends the DND.
//! - Glare on an emergency call (RFC 3261 §14.1, RFC 3311 §5.2): alice's 933 call is
//!   answered, then her browser's re-INVITE and the carrier's cross; each side answers the
//!   other's with 491, which passes through the edge both ways. The edge ends nothing, the
//!   media goes on, and the browser's retry is rewritten and answered as usual.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use std::sync::atomic::Ordering;

use common::anchored::{
    AGENTS, CALL_NUMBER, DID, PLAN, carrier_request, carrier_sdp, echo_fork, refuse_emergency_call,
    route, silent_fork, start, target,
};
use common::ua::{header, parse_request, uas_response, udp_recv_until};
use common::webrtc::{
    CONTACT, CONTACT_2, INSTANCE_2, Phone, assert_audio_both_ways, body, browser_rtc, make_offer,
    media_metrics, register_alice, register_alice_as, ws_call, ws_in_dialog, ws_recv_until,
    ws_response, ws_response_as, ws_send,
};
use common::{Edge, Opts, TRUNK_IP};
use lifeline::media::sdp::Sdp;
use tokio::net::UdpSocket;

/// The call-history rows of answered calls (`GET /api/calls`; the refused calls' rows are
/// not looked at).
async fn answered_rows(edge: &Edge) -> Vec<serde_json::Value> {
    let (status, body) = edge.api("GET", "/api/calls", None).await;
    assert_eq!(status, 200, "{body}");
    let rows = body.as_array().cloned().unwrap_or_default();
    rows.into_iter().filter(|r| r["result"] != "busy").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_losing_fork_s_bye_ends_none_of_the_call_s_capacity_history_or_media() {
    let edge = start("35800-35899").await;
    let mut ws1 = register_alice(&edge).await;
    let mut ws2 = register_alice_as(&edge, CONTACT_2, INSTANCE_2).await;
    let carrier = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let me = carrier.local_addr().unwrap();
    let (echo_port, echoing) = echo_fork().await;
    let sdp = carrier_sdp(echo_port);
    let request = |line: &str, cseq: u32, route: &str, to_tag: &str, body: &str| {
        carrier_request(me, "losing-fork", line, cseq, route, to_tag, body)
    };
    let invite = request(&format!("INVITE sip:{DID}@127.0.0.1"), 1, "", "", &sdp);
    carrier.send_to(invite.as_bytes(), edge.udp).await.unwrap();

    // Both browsers answer 200; the carrier gets both (RFC 6026), the first is the call.
    let invite1 = ws_recv_until(&mut ws1, "INVITE ").await;
    let invite2 = ws_recv_until(&mut ws2, "INVITE ").await;
    let (mut rtc1, sock1) = browser_rtc().await;
    let answer1 = common::webrtc::answer_offer(&mut rtc1, body(&invite1));
    let phone1 = Phone::start(rtc1, sock1);
    let (mut rtc2, _sock2) = browser_rtc().await;
    let answer2 = common::webrtc::answer_offer(&mut rtc2, body(&invite2));
    ws_send(&mut ws1, ws_response_as(&invite1, 200, "", Some(&answer1), "b-1", CONTACT)).await;
    let ok1 = udp_recv_until(&carrier, "SIP/2.0 200").await;
    ws_send(&mut ws2, ws_response_as(&invite2, 200, "", Some(&answer2), "b-2", CONTACT_2)).await;
    let ok2 = udp_recv_until(&carrier, "SIP/2.0 200").await;
    for ok in [&ok1, &ok2] {
        assert!(!Sdp::parse(body(ok)).unwrap().is_webrtc(), "a plain answer: {ok}");
    }
    assert!(header(&ok1, "To")[0].ends_with("tag=b-1"), "{ok1}");
    assert!(header(&ok2, "To")[0].ends_with("tag=b-2"), "{ok2}");
    for (ok, tag) in [(&ok1, ";tag=b-1"), (&ok2, ";tag=b-2")] {
        let ack = request(&format!("ACK {}", target(ok)), 1, &route(ok), tag, "");
        carrier.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    }
    ws_recv_until(&mut ws1, "ACK ").await;
    ws_recv_until(&mut ws2, "ACK ").await;

    // The carrier, the UAC of RFC 3261 §13.2.2.4, ends the losing fork's dialog.
    let bye2 = request(&format!("BYE {}", target(&ok2)), 2, &route(&ok2), ";tag=b-2", "");
    carrier.send_to(bye2.as_bytes(), edge.udp).await.unwrap();
    let bye = ws_recv_until(&mut ws2, "BYE ").await;
    ws_send(&mut ws2, ws_response_as(&bye, 200, "", None, "b-2", CONTACT_2)).await;
    udp_recv_until(&carrier, "SIP/2.0 200").await;

    // alice is still on the call: capacity 1 refuses another call to her DID.
    let call2 = |call: &str| {
        let invite =
            carrier_request(me, call, &format!("INVITE sip:{DID}@127.0.0.1"), 1, "", "", &sdp);
        let carrier = &carrier;
        let edge = &edge;
        async move { carrier.send_to(invite.as_bytes(), edge.udp).await.unwrap() }
    };
    call2("second").await;
    let busy = tokio::time::timeout(Duration::from_secs(5), udp_recv_until(&carrier, "SIP/2.0 "))
        .await
        .expect("an answer to the second call");
    let busy = if busy.starts_with("SIP/2.0 100") {
        tokio::time::timeout(Duration::from_secs(5), udp_recv_until(&carrier, "SIP/2.0 "))
            .await
            .expect("a final answer to the second call")
    } else {
        busy
    };
    assert!(busy.starts_with("SIP/2.0 486"), "alice is still busy with the call: {busy}");
    // No history row yet (a row is written when the call ends), and the media goes on.
    assert_audio_both_ways(&phone1, "the call after the losing fork's BYE").await;
    assert!(answered_rows(&edge).await.is_empty(), "the call has not ended");
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 1);

    // The call's own BYE ends it all.
    let bye1 = request(&format!("BYE {}", target(&ok1)), 3, &route(&ok1), ";tag=b-1", "");
    carrier.send_to(bye1.as_bytes(), edge.udp).await.unwrap();
    let bye = ws_recv_until(&mut ws1, "BYE ").await;
    ws_send(&mut ws1, ws_response_as(&bye, 200, "", None, "b-1", CONTACT)).await;
    udp_recv_until(&carrier, "SIP/2.0 200").await;
    phone1.stop().await;
    echoing.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = answered_rows(&edge).await;
        if !rows.is_empty() || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows.len(), 1, "one row for the call: {rows:#?}");
    assert_eq!(rows[0]["result"], "answered", "{rows:#?}");
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);

    // alice takes calls again: the next call rings her.
    call2("third").await;
    let ringing = ws_recv_until(&mut ws1, "INVITE ").await;
    ws_send(&mut ws1, ws_response(&ringing, 486, None)).await;
    udp_recv_until(&carrier, "SIP/2.0 486").await;
    edge.stop().await;
}

/// The response of the carrier (at `port` of the trunk's address) to `req` in its dialog `tag`, with `extra` header lines and SDP.
fn carrier_response(
    port: u16,
    req: &str,
    status: u16,
    reason: &str,
    tag: &str,
    extra: &str,
    sdp: &str,
) -> String {
    let me = format!("<sip:carrier@{TRUNK_IP}:{port}>");
    let r = uas_response(&parse_request(req), status, reason, tag, &me);
    let (head, _) = r.split_once("\r\n\r\n").unwrap();
    let head: String = head
        .split("\r\n")
        .filter(|l| !l.starts_with("Content-Length"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let ct = if sdp.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    format!("{head}{extra}{ct}Content-Length: {}\r\n\r\n{sdp}", sdp.len())
}

/// The browser's PRACK of the reliable 183 `progress` (RSeq 1 of its dialog).
fn prack(progress: &str, cseq: u32) -> String {
    let prack = ws_in_dialog(progress, "PRACK", cseq, None);
    let (line, rest) = prack.split_once("\r\n").unwrap();
    format!("{line}\r\nRAck: 1 2 INVITE\r\n{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_forking_a_browser_s_call_gives_the_200_s_fork_the_media_and_not_the_last_183_s()
{
    let edge = start("35900-35999").await;
    let mut ws = register_alice(&edge).await;
    let port = edge.trunk_ports.0;
    let carrier = UdpSocket::bind((TRUNK_IP, port)).await.unwrap();
    // Fork f-a echoes RTP; fork f-b only counts what reaches it.
    let (port_a, echoing) = echo_fork().await;
    let (port_b, at_b, counting) = silent_fork().await;

    let (mut rtc, sock) = browser_rtc().await;
    let (offer, pending, mid) = make_offer(&mut rtc);
    ws_call(&mut ws, "fork-early", CALL_NUMBER, Some(&offer)).await;
    let invite = udp_recv_until(&carrier, "INVITE ").await;
    assert!(!Sdp::parse(body(&invite)).unwrap().is_webrtc(), "a plain offer: {invite}");
    let reliable = "Require: 100rel\r\nRSeq: 1\r\n";

    // f-a's reliable 183: the leg's WebRTC answer; the browser PRACKs it.
    let p183 = "Session Progress";
    let a183 = carrier_response(port, &invite, 183, p183, "f-a", reliable, &carrier_sdp(port_a));
    carrier.send_to(a183.as_bytes(), edge.udp).await.unwrap();
    let progress_a = ws_recv_until(&mut ws, "SIP/2.0 183").await;
    assert!(header(&progress_a, "To")[0].ends_with("tag=f-a"), "{progress_a}");
    let answer = body(&progress_a).to_owned();
    assert!(Sdp::parse(&answer).unwrap().is_webrtc(), "{progress_a}");
    let phone = Phone::start_pending(rtc, sock, pending, mid);
    phone.accept_answer(&answer).await.unwrap();
    ws_send(&mut ws, prack(&progress_a, 3)).await;
    let prack_a = udp_recv_until(&carrier, "PRACK ").await;
    let ok = carrier_response(port, &prack_a, 200, "OK", "f-a", "", "");
    carrier.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "SIP/2.0 200").await;

    // f-b's reliable 183 in its own early dialog: the same leg's answer (one WebRTC session
    // for the browser's one offer); its RTP address is now the early media's.
    let b183 = carrier_response(port, &invite, 183, p183, "f-b", reliable, &carrier_sdp(port_b));
    carrier.send_to(b183.as_bytes(), edge.udp).await.unwrap();
    let progress_b = ws_recv_until(&mut ws, "SIP/2.0 183").await;
    assert!(header(&progress_b, "To")[0].ends_with("tag=f-b"), "{progress_b}");
    let fingerprint =
        |sdp: &str| sdp.lines().find(|l| l.starts_with("a=fingerprint:")).map(str::to_owned);
    assert_eq!(fingerprint(body(&progress_b)), fingerprint(&answer), "{progress_b}");
    ws_send(&mut ws, prack(&progress_b, 4)).await;
    let prack_b = udp_recv_until(&carrier, "PRACK ").await;
    let ok = carrier_response(port, &prack_b, 200, "OK", "f-b", "", "");
    carrier.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "SIP/2.0 200").await;

    // f-a answers 200 without SDP: f-a's fork has the call's media.
    let ok = carrier_response(port, &invite, 200, "OK", "f-a", "", "");
    carrier.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert_eq!(header(&ok, "CSeq"), ["2 INVITE"], "{ok}");
    assert!(body(&ok).is_empty(), "the answer was in the reliable 183: {ok}");
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 2, None)).await;
    udp_recv_until(&carrier, "ACK ").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = at_b.load(Ordering::Relaxed);
    assert_audio_both_ways(&phone, "the 200's fork").await;
    assert_eq!(at_b.load(Ordering::Relaxed), before, "nothing reaches the losing fork");

    ws_send(&mut ws, ws_in_dialog(&ok, "BYE", 5, None)).await;
    let bye = udp_recv_until(&carrier, "BYE ").await;
    let ok = carrier_response(port, &bye, 200, "OK", "f-a", "", "");
    carrier.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "SIP/2.0 200").await;
    phone.stop().await;
    echoing.abort();
    counting.abort();
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);
    edge.stop().await;
}

/// The PSAP's INVITE (or its CANCEL, or the ACK of its failure with `to_tag`) to the callback
/// number `did` in call `call`, from `me`, with `sdp` if any.
fn psap_request(
    me: std::net::SocketAddr,
    method: &str,
    did: &str,
    call: &str,
    to_tag: &str,
    sdp: &str,
) -> String {
    let ct = if sdp.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    format!(
        "{method} sip:{did}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+12175550911@{me}>;tag=psap-{call}\r\n\
         To: <sip:{did}@127.0.0.1>{to_tag}\r\nCall-ID: {call}@psap\r\nCSeq: 1 {method}\r\n\
         Contact: <sip:psap@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The `;tag=...` of a response's To.
fn to_tag_of(r: &str) -> String {
    let to = header(r, "To")[0];
    format!(";tag={}", to.split(";tag=").nth(1).unwrap())
}

async fn presence(edge: &Edge) -> serde_json::Value {
    let (status, body) = edge.api("GET", "/api/agents/alice/presence", None).await;
    assert_eq!(status, 200, "{body}");
    body["state"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psap_callback_s_early_dialog_that_fails_or_is_cancelled_leaves_nothing_behind() {
    // No `callback_fallback`: the agent's failure is the PSAP's answer.
    let plan = PLAN.replace("callback_fallback = \"agent:alice\"\n", "");
    assert!(!plan.contains("callback_fallback"));
    let opts = Opts { plan: Some(plan), seed: Some(AGENTS.into()), ..Opts::default() };
    let edge = Edge::start_opts(opts, |c| {
        c.limits.max_message_bytes = 65535;
        c.media.rtp_ports = "36000-36099".parse().unwrap();
    })
    .await;
    let mut ws = register_alice(&edge).await;
    let before = presence(&edge).await;

    // alice's 933 call leases a callback number; the carrier is busy.
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    ws_send(&mut ws, common::webrtc::ws_invite("em1", "933", 1, "", None)).await;
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let did = refuse_emergency_call(&edge, &mut ws, &trunk, &at_trunk).await;
    drop(trunk);

    let psap = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let me = psap.local_addr().unwrap();
    let (echo_port, echoing) = echo_fork().await;
    let sdp = carrier_sdp(echo_port);

    // The PSAP calls back; alice's browser answers in a 183: early media both ways.
    let ring = |call: &'static str| {
        let invite = psap_request(me, "INVITE", &did, call, "", &sdp);
        let (psap, edge) = (&psap, &edge);
        async move { psap.send_to(invite.as_bytes(), edge.udp).await.unwrap() }
    };
    ring("cb1").await;
    let invite = ws_recv_until(&mut ws, "INVITE ").await;
    assert_eq!(header(&invite, "Priority"), ["psap-callback"], "{invite}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, body(&invite));
    let phone = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_response(&invite, 183, Some(&answer))).await;
    let progress = udp_recv_until(&psap, "SIP/2.0 183").await;
    assert!(!Sdp::parse(body(&progress)).unwrap().is_webrtc(), "a plain answer: {progress}");
    assert_audio_both_ways(&phone, "the callback's early media").await;
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 1);

    // The browser declines: the PSAP gets its 480, the leg closes.
    ws_send(&mut ws, ws_response(&invite, 480, None)).await;
    ws_recv_until(&mut ws, "ACK ").await;
    let failed = udp_recv_until(&psap, "SIP/2.0 4").await;
    assert!(failed.starts_with("SIP/2.0 480"), "the agent's failure: {failed}");
    let ack = psap_request(me, "ACK", &did, "cb1", &to_tag_of(&failed), "");
    psap.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    phone.stop().await;
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0, "the failed early dialog's leg closed");
    assert_eq!(presence(&edge).await, before, "alice's presence is as before");
    let (status, leases) = edge.api("GET", "/api/callbacks", None).await;
    assert_eq!(status, 200, "{leases}");
    assert_eq!(leases[0]["did"], did.as_str(), "the lease stays for the PSAP: {leases}");

    // The PSAP calls again: the lease still routes to alice; it cancels during early media.
    ring("cb2").await;
    let invite = ws_recv_until(&mut ws, "INVITE ").await;
    assert_eq!(header(&invite, "Priority"), ["psap-callback"], "{invite}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, body(&invite));
    let phone = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_response(&invite, 183, Some(&answer))).await;
    udp_recv_until(&psap, "SIP/2.0 183").await;
    assert_audio_both_ways(&phone, "the second callback's early media").await;
    let cancel = psap_request(me, "CANCEL", &did, "cb2", "", "");
    psap.send_to(cancel.as_bytes(), edge.udp).await.unwrap();
    let cancel = ws_recv_until(&mut ws, "CANCEL ").await;
    ws_send(&mut ws, ws_response(&cancel, 200, None)).await;
    ws_send(&mut ws, ws_response(&invite, 487, None)).await;
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let r = udp_recv_until(&psap, "SIP/2.0 ").await;
        if !r.starts_with("SIP/2.0 1") {
            finals.push(r);
        }
    }
    let cancel_ok = finals.iter().find(|r| header(r, "CSeq") == ["1 CANCEL"]).expect("CANCEL 200");
    assert!(cancel_ok.starts_with("SIP/2.0 200"), "{cancel_ok}");
    let terminated = finals.iter().find(|r| header(r, "CSeq") == ["1 INVITE"]).expect("a final");
    assert!(terminated.starts_with("SIP/2.0 487"), "{terminated}");
    let ack = psap_request(me, "ACK", &did, "cb2", &to_tag_of(terminated), "");
    psap.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    phone.stop().await;
    echoing.abort();
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0, "the cancelled early dialog's leg closed");
    assert_eq!(presence(&edge).await, before, "alice's presence is as before");
    edge.stop().await;
}

/// The carrier's request in the dialog of the INVITE `invite` it received and answered with
/// tag `t-1` (RFC 3261 §12.1.1: the route set is the Record-Route in order, the Request-URI
/// the caller's Contact), from `me` listening at the trunk port `port`.
fn carrier_in_dialog(
    me: std::net::SocketAddr,
    port: u16,
    invite: &str,
    method: &str,
    cseq: u32,
    branch: &str,
    sdp: &str,
) -> String {
    let contact = header(invite, "Contact")[0];
    let uri = contact.trim_start_matches('<').split('>').next().unwrap();
    let route: String =
        header(invite, "Record-Route").iter().map(|r| format!("Route: {r}\r\n")).collect();
    let ct = if sdp.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}\r\n\
         {route}Max-Forwards: 70\r\nFrom: {};tag=t-1\r\nTo: {}\r\nCall-ID: {}\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:carrier@{TRUNK_IP}:{port}>\r\n\
         {ct}Content-Length: {}\r\n\r\n{sdp}",
        header(invite, "To")[0],
        header(invite, "From")[0],
        header(invite, "Call-ID")[0],
        sdp.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_re_invites_on_an_emergency_call_get_491_through_the_edge_and_the_call_goes_on() {
    let edge = start("36100-36199").await;
    let mut ws = register_alice(&edge).await;
    let port = edge.trunk_ports.0;
    let trunk = UdpSocket::bind((TRUNK_IP, port)).await.unwrap();
    let me = trunk.local_addr().unwrap();
    let (echo_port, echoing) = echo_fork().await;

    // alice's 933 call with a WebRTC offer; the carrier answers 200.
    let (mut rtc, sock) = browser_rtc().await;
    let (offer, pending, mid) = make_offer(&mut rtc);
    ws_send(&mut ws, common::webrtc::ws_invite("em-glare", "933", 1, "", Some(&offer))).await;
    let invite = udp_recv_until(&trunk, "INVITE ").await;
    // The body is multipart: the SDP and the location (RFC 6442).
    let sdp = body(&invite).split("v=0").nth(1).unwrap().split("\r\n--").next().unwrap();
    let sdp = format!("v=0{sdp}");
    assert!(!Sdp::parse(&sdp).unwrap().is_webrtc(), "a plain offer: {invite}");
    let ok = carrier_response(port, &invite, 200, "OK", "t-1", "", &carrier_sdp(echo_port));
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    let phone = Phone::start_pending(rtc, sock, pending, mid);
    phone.accept_answer(body(&ok)).await.unwrap();
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 1, None)).await;
    udp_recv_until(&trunk, "ACK ").await;
    assert_audio_both_ways(&phone, "the emergency call").await;

    // Glare: the browser's re-INVITE (its offer again) and the carrier's cross.
    ws_send(&mut ws, ws_in_dialog(&ok, "INVITE", 2, Some(&offer))).await;
    let re_browser = udp_recv_until(&trunk, "INVITE ").await;
    assert!(!Sdp::parse(body(&re_browser)).unwrap().is_webrtc(), "{re_browser}");
    let mut resumed = carrier_sdp(echo_port);
    resumed = resumed.replace("o=- 9 1 ", "o=- 9 2 ");
    let re_carrier = carrier_in_dialog(me, port, &invite, "INVITE", 1, "tre1", &resumed);
    trunk.send_to(re_carrier.as_bytes(), edge.udp).await.unwrap();
    let re_carrier = ws_recv_until(&mut ws, "INVITE ").await;
    assert!(Sdp::parse(body(&re_carrier)).unwrap().is_webrtc(), "{re_carrier}");

    // Each side refuses the other's with 491 (RFC 3261 §14.1); both pass through the edge.
    let pending = carrier_response(port, &re_browser, 491, "Request Pending", "t-1", "", "");
    trunk.send_to(pending.as_bytes(), edge.udp).await.unwrap();
    let at_browser = ws_recv_until(&mut ws, "SIP/2.0 491").await;
    assert_eq!(header(&at_browser, "CSeq"), ["2 INVITE"], "{at_browser}");
    let ack = ws_in_dialog(&ok, "ACK", 2, None).replace("z9hG4bKACK2x", "z9hG4bKINVITE2x");
    ws_send(&mut ws, ack).await;
    ws_send(&mut ws, ws_response(&re_carrier, 491, None)).await;
    let at_carrier = udp_recv_until(&trunk, "SIP/2.0 491").await;
    assert_eq!(header(&at_carrier, "CSeq"), ["1 INVITE"], "{at_carrier}");
    let ack = carrier_in_dialog(me, port, &invite, "ACK", 1, "tre1", "");
    trunk.send_to(ack.as_bytes(), edge.udp).await.unwrap();

    // Nothing ended: the media goes on, and no BYE comes either way.
    assert_audio_both_ways(&phone, "the emergency call after the 491s").await;
    let mut buf = [0u8; 65535];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), trunk.recv_from(&mut buf)).await
    {
        let m = String::from_utf8_lossy(&buf[..n]);
        assert!(m.starts_with("ACK "), "only the 491's ACK reaches the carrier: {m}");
    }
    while let Ok(m) =
        tokio::time::timeout(Duration::from_millis(300), common::webrtc::ws_recv(&mut ws)).await
    {
        assert!(m.starts_with("ACK "), "only the 491's ACK reaches the browser: {m}");
    }
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 1);

    // The browser's retry goes through, rewritten as usual.
    ws_send(&mut ws, ws_in_dialog(&ok, "INVITE", 3, Some(&offer))).await;
    let retry = udp_recv_until(&trunk, "INVITE ").await;
    assert!(!Sdp::parse(body(&retry)).unwrap().is_webrtc(), "{retry}");
    let ok3 = carrier_response(port, &retry, 200, "OK", "t-1", "", &resumed);
    trunk.send_to(ok3.as_bytes(), edge.udp).await.unwrap();
    let ok3 = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert_eq!(header(&ok3, "CSeq"), ["3 INVITE"], "{ok3}");
    assert!(Sdp::parse(body(&ok3)).unwrap().is_webrtc(), "the leg's answer: {ok3}");
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 3, None)).await;
    udp_recv_until(&trunk, "ACK ").await;
    assert_audio_both_ways(&phone, "the emergency call after the retry").await;

    ws_send(&mut ws, ws_in_dialog(&ok, "BYE", 4, None)).await;
    let bye = udp_recv_until(&trunk, "BYE ").await;
    let bye_ok = carrier_response(port, &bye, 200, "OK", "t-1", "", "");
    trunk.send_to(bye_ok.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "SIP/2.0 200").await;
    phone.stop().await;
    echoing.abort();
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);
    edge.stop().await;
}

/// `agent`'s presence, polled until it is `state` (set off the core's thread).
async fn presence_becomes(edge: &Edge, state: &str) {
    for _ in 0..100 {
        if presence(edge).await == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("alice's presence never became {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_call_s_losing_fork_neither_takes_the_media_nor_ends_the_dnd_with_its_bye() {
    let edge = start("36200-36299").await;
    let mut ws = register_alice(&edge).await;
    let before = presence(&edge).await;
    let port = edge.trunk_ports.0;
    let trunk = UdpSocket::bind((TRUNK_IP, port)).await.unwrap();
    let (echo_port, echoing) = echo_fork().await;
    let (silent_port, at_t2, counting) = silent_fork().await;

    // alice's 933 call; the carrier forks it and both forks answer 200.
    let (mut rtc, sock) = browser_rtc().await;
    let (offer, pending, mid) = make_offer(&mut rtc);
    ws_send(&mut ws, common::webrtc::ws_invite("em-fork", "933", 1, "", Some(&offer))).await;
    let invite = udp_recv_until(&trunk, "INVITE ").await;
    let ok = carrier_response(port, &invite, 200, "OK", "t-1", "", &carrier_sdp(echo_port));
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let ok1 = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    let ok = carrier_response(port, &invite, 200, "OK", "t-2", "", &carrier_sdp(silent_port));
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let ok2 = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert!(header(&ok2, "To")[0].ends_with("tag=t-2"), "{ok2}");
    let phone = Phone::start_pending(rtc, sock, pending, mid);
    phone.accept_answer(body(&ok1)).await.unwrap();
    ws_send(&mut ws, ws_in_dialog(&ok1, "ACK", 1, None)).await;
    ws_send(&mut ws, ws_in_dialog(&ok2, "ACK", 1, None)).await;
    udp_recv_until(&trunk, "ACK ").await;
    udp_recv_until(&trunk, "ACK ").await;
    presence_becomes(&edge, "dnd").await;

    // The browser ends the losing fork's dialog (RFC 3261 §13.2.2.4).
    ws_send(&mut ws, ws_in_dialog(&ok2, "BYE", 2, None)).await;
    let bye = udp_recv_until(&trunk, "BYE ").await;
    assert!(header(&bye, "To")[0].ends_with("tag=t-2"), "{bye}");
    let bye_ok = carrier_response(port, &bye, 200, "OK", "t-2", "", "");
    trunk.send_to(bye_ok.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "SIP/2.0 200").await;

    // The call goes on through t-1, alice still in DND.
    let sent_to_t2 = at_t2.load(Ordering::Relaxed);
    assert_audio_both_ways(&phone, "the emergency call after the losing fork's BYE").await;
    assert_eq!(at_t2.load(Ordering::Relaxed), sent_to_t2, "nothing reaches the losing fork");
    assert_eq!(presence(&edge).await, "dnd", "the emergency call is still up");
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 1);

    // The call's own BYE ends it.
    ws_send(&mut ws, ws_in_dialog(&ok1, "BYE", 3, None)).await;
    let bye = udp_recv_until(&trunk, "BYE ").await;
    let bye_ok = carrier_response(port, &bye, 200, "OK", "t-1", "", "");
    trunk.send_to(bye_ok.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "SIP/2.0 200").await;
    presence_becomes(&edge, before.as_str().unwrap()).await;
    phone.stop().await;
    echoing.abort();
    counting.abort();
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);
    edge.stop().await;
}
