//! Offers and answers in the early dialogs of anchored calls (issue 7), against real peers:
//! SIPp as the carrier (`-rtp_echo` returns every RTP packet) and "browsers" registered over
//! WebSocket whose WebRTC is str0m ([`common::webrtc`]: ICE, DTLS-SRTP, PCMU every 20 ms over
//! real UDP to the edge's WebRTC port).
//!
//! - A new offer in a PRACK (RFC 3262 §5) and its answer in the PRACK's 200, and UPDATEs
//!   with SDP in the early dialog (RFC 3311), both ways: the carrier calls the browser (early
//!   offer, answered in a reliable 183), holds in the PRACK of the browser's reliable 180
//!   without SDP, resumes by UPDATE, and the browser sends an UPDATE of its own; the browser
//!   calls the carrier, holds in the PRACK of the carrier's reliable 183, and the carrier
//!   resumes by UPDATE. Each offer reaches the other side rewritten (WebRTC of the same
//!   session toward the browser, plain RTP on the edge's port toward SIPp, which checks every
//!   one), and audio flows both ways once answered.
//! - A carrier's UPDATE with an offer sent before its PRACK answered the edge's delayed offer
//!   in the browser's reliable 183 gets 491 from the edge (RFC 3311 §5.2) and never reaches
//!   the browser; the call goes on.
//! - A PRACK's offer answered with nothing usable: an ordinary call ends at the ACK of its
//!   200 (a BYE both ways, `Reason: SIP;cause=488`); an emergency call (933) stays up, the
//!   answer passing as it came.
//! - The plain side's RTCP port (RFC 3550 §11: the port above RTP, which the edge's SDP
//!   implies) is bound by the edge for the call, reads what comes (dropped before the leg is
//!   connected; no ICMP port unreachable), and is released with the call. Once the browser is
//!   connected, RTCP goes through it both ways: the browser's (SRTCP) reaches the carrier's
//!   RTCP port in the clear, the carrier's reaches the browser as SRTCP, and before the
//!   carrier sends any, the anchor's own sender reports reach the browser.
//! - Forking with 100rel: a carrier's call rings two browsers of alice's, each answers in a
//!   reliable 183 of its own early dialog, each 183 carries the plain answer (early offer)
//!   or the plain offer answered in its PRACK (delayed offer) made from its own browser's,
//!   the first browser has the early media, and the second browser's 200 gets the call's
//!   media (audio both ways with it, the first browser's leg closed). The same for a PSAP
//!   callback.
//! - Two forks answering 200 at once: see tests/forks.rs.
//! - alice's plain-RTP desk phone (SIPp, registered next to her browser) answering after the
//!   browser's early media: its own answer reaches the carrier as it came (the call is not
//!   anchored), and the edge ends nothing.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::anchored::{
    CALL_NUMBER, DID, carrier_request, carrier_sdp, refuse_emergency_call, route, sipp_uac, start,
    target,
};
use common::sipp::Sipp;
use common::ua::{header, parse_request, uas_response, udp_recv_until};
use common::webrtc::{
    CONTACT, CONTACT_2, INSTANCE_2, Phone, Ws, assert_audio_both_ways, assert_same_session,
    attribute, body, browser_rtc, make_offer, media_metrics, register_alice, register_alice_as,
    ws_call, ws_callee_request, ws_in_dialog, ws_recv_until, ws_response, ws_response_as,
    ws_response_with, ws_send,
};
use common::{Edge, TRUNK_IP, TempDir, ports};
use lifeline::media::sdp::{Direction, Sdp};
use str0m::media::Direction as RtcDirection;
use tokio::net::UdpSocket;

const RELIABLE: &str = "Require: 100rel\r\nRSeq: 1\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_s_offers_in_its_prack_and_early_updates_both_ways_are_rewritten_through_the_anchor()
 {
    let edge = start("35000-35099").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("early-offers-carrier");
    let carrier = sipp_uac(&edge, dir.path(), "early_offers_uac.xml", DID, 2500);

    // The early offer, answered in a reliable 183 (SIPp checks the plain answer there).
    let invite = ws_recv_until(&mut ws, "INVITE ").await;
    let first = body(&invite).to_owned();
    assert!(Sdp::parse(&first).unwrap().is_webrtc(), "{invite}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, &first);
    let phone = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_response_with(&invite, 183, RELIABLE, Some(&answer))).await;

    let prack = ws_recv_until(&mut ws, "PRACK ").await;
    assert_eq!(header(&prack, "RAck"), ["1 1 INVITE"], "{prack}");
    assert!(body(&prack).is_empty(), "{prack}");
    ws_send(&mut ws, ws_response(&prack, 200, None)).await;

    // A reliable 180 without SDP, whose PRACK holds (RFC 3262 §5): the browser gets a WebRTC
    // offer of its session, sendonly as the carrier's, and answers in the PRACK's 200 (SIPp
    // checks the plain recvonly).
    let ringing = "Require: 100rel\r\nRSeq: 2\r\n";
    ws_send(&mut ws, ws_response_as(&invite, 180, ringing, None, "b-tag", CONTACT)).await;
    let prack = ws_recv_until(&mut ws, "PRACK ").await;
    assert_eq!(header(&prack, "RAck"), ["2 1 INVITE"], "{prack}");
    assert_same_session(body(&prack), &first, Direction::SendOnly);
    let held = phone.accept_offer(body(&prack)).await;
    assert_eq!(Sdp::parse(&held).unwrap().direction, Direction::RecvOnly, "{held}");
    ws_send(&mut ws, ws_response(&prack, 200, Some(&held))).await;

    // Its UPDATE in the early dialog resumes (RFC 3311): sendrecv, answered in the 200.
    let update = ws_recv_until(&mut ws, "UPDATE ").await;
    assert_same_session(body(&update), &first, Direction::SendRecv);
    let resumed = phone.accept_offer(body(&update)).await;
    ws_send(&mut ws, ws_response(&update, 200, Some(&resumed))).await;
    assert_audio_both_ways(&phone, "early media after the carrier's UPDATE").await;

    // The browser's own UPDATE in the early dialog: SIPp gets the edge's plain offer and
    // answers; the browser gets the leg's WebRTC answer.
    let offer = phone.offer(RtcDirection::SendRecv).await;
    ws_send(&mut ws, ws_callee_request(&invite, "UPDATE", 1, Some(&offer))).await;
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert_eq!(header(&ok, "CSeq"), ["1 UPDATE"], "{ok}");
    let answer = body(&ok);
    assert!(Sdp::parse(answer).unwrap().is_webrtc() && answer.contains("a=ice-lite"), "{ok}");
    assert_eq!(Sdp::parse(answer).unwrap().direction, Direction::SendRecv, "{answer}");
    phone.accept_answer(answer).await.unwrap();

    // The 200 without SDP (the answer went reliably); SIPp checks it stays without.
    ws_send(&mut ws, ws_response(&invite, 200, None)).await;
    let ack = ws_recv_until(&mut ws, "ACK ").await;
    assert!(body(&ack).is_empty(), "{ack}");
    assert_audio_both_ways(&phone, "the call").await;
    let bye = ws_recv_until(&mut ws, "BYE ").await;
    assert!(header(&bye, "Reason").is_empty(), "the carrier hung up, not the edge: {bye}");
    ws_send(&mut ws, uas_response(&parse_request(&bye), 200, "OK", "b-tag", CONTACT)).await;
    phone.stop().await;
    carrier.passes().await;
    let (to_plain, to_browser, legs) = media_metrics(&edge).await;
    assert!(to_plain > 60 && to_browser > 60, "{to_plain} / {to_browser} packets relayed");
    assert_eq!(legs, 0, "the leg closed with the call");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_s_offer_in_its_prack_and_the_carrier_s_early_update_are_rewritten_through_the_anchor()
 {
    let edge = start("35100-35199").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("early-offers-browser");
    let media = ports::reserve_media().to_string();
    let carrier = Sipp::build("early_offers_uas.xml", dir.path(), "early_offers_uas.xml")
        .local(TRUNK_IP, edge.trunk_ports.0)
        .args(&["-mp", &media, "-rtp_echo"])
        .listening()
        .await;
    let (mut rtc, sock) = browser_rtc().await;
    let (offer, pending, mid) = make_offer(&mut rtc);
    ws_call(&mut ws, "early1", CALL_NUMBER, Some(&offer)).await;

    // The carrier's reliable 183 brings the leg's WebRTC answer.
    let progress = ws_recv_until(&mut ws, "SIP/2.0 183").await;
    assert_eq!(header(&progress, "Require"), ["100rel"], "{progress}");
    let first = body(&progress).to_owned();
    let phone = Phone::start_pending(rtc, sock, pending, mid);
    phone.accept_answer(&first).await.unwrap();

    // The browser's PRACK holds (RFC 3262 §5): SIPp checks the edge's plain sendonly offer
    // and answers recvonly in the PRACK's 200, which brings the leg's WebRTC answer.
    let hold = phone.offer(RtcDirection::SendOnly).await;
    let prack = ws_in_dialog(&progress, "PRACK", 3, Some(&hold));
    let (line, rest) = prack.split_once("\r\n").unwrap();
    ws_send(&mut ws, format!("{line}\r\nRAck: 1 2 INVITE\r\n{rest}")).await;
    let prack_ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert_eq!(header(&prack_ok, "CSeq"), ["3 PRACK"], "{prack_ok}");
    let answer = body(&prack_ok);
    assert!(Sdp::parse(answer).unwrap().is_webrtc() && answer.contains("a=ice-lite"), "{answer}");
    assert_eq!(Sdp::parse(answer).unwrap().direction, Direction::RecvOnly, "{answer}");
    phone.accept_answer(answer).await.unwrap();

    // The carrier's UPDATE in the early dialog resumes: a WebRTC offer of the same session,
    // sendrecv; SIPp checks the plain answer in the 200.
    let update = ws_recv_until(&mut ws, "UPDATE ").await;
    assert_same_session(body(&update), &first, Direction::SendRecv);
    let resumed = phone.accept_offer(body(&update)).await;
    ws_send(&mut ws, ws_response(&update, 200, Some(&resumed))).await;

    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert_eq!(header(&ok, "CSeq"), ["2 INVITE"], "{ok}");
    assert!(body(&ok).is_empty(), "the offer/answer was done in the 183: {ok}");
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 2, None)).await;
    assert_audio_both_ways(&phone, "the call").await;
    ws_send(&mut ws, ws_in_dialog(&ok, "BYE", 4, None)).await;
    ws_recv_until(&mut ws, "SIP/2.0 200").await;
    phone.stop().await;
    carrier.passes().await;
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);
    edge.stop().await;
}

#[tokio::test]
async fn the_plain_side_s_rtcp_port_is_the_edge_s_for_the_call_and_reads_what_comes() {
    let edge = start("35200-35299").await;
    let mut ws = register_alice(&edge).await;
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let (mut rtc, _sock) = browser_rtc().await;
    let (offer, _pending, _) = make_offer(&mut rtc);
    ws_call(&mut ws, "rtcp1", CALL_NUMBER, Some(&offer)).await;
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let plain = Sdp::parse(body(&at_trunk)).unwrap();
    assert!(!plain.is_webrtc() && plain.rtcp.is_none() && !plain.rtcp_mux, "{at_trunk}");
    let rtp = plain.rtp_address().unwrap();
    assert_eq!(rtp.port() % 2, 0, "RTP on an even port (RFC 3550 §11): {at_trunk}");
    let rtcp = plain.rtcp_address().unwrap();
    assert_eq!(rtcp.port(), rtp.port() + 1);

    // The port above RTP is the edge's: taken, and what the carrier sends there is read (an
    // unread port would answer ICMP port unreachable, which a connected socket reports).
    assert!(std::net::UdpSocket::bind(rtcp).is_err(), "{rtcp} is bound by the edge");
    let reporter = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    reporter.connect(rtcp).await.unwrap();
    // An empty RTCP receiver report (RFC 3550 §6.4.2).
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 7];
    for _ in 0..3 {
        reporter.send(&rr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(300), reporter.recv(&mut buf)).await;
    assert!(read.is_err(), "nothing comes back, not even a port unreachable: {read:?}");

    // The carrier refuses the call: the port goes with it.
    let busy = uas_response(&parse_request(&at_trunk), 486, "Busy Here", "t-1", "<sip:c@x>");
    trunk.send_to(busy.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "SIP/2.0 486").await;
    let mut released = false;
    for _ in 0..50 {
        if std::net::UdpSocket::bind(rtcp).is_ok() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released, "{rtcp} released with the call");
    edge.stop().await;
}

/// Two UDP sockets on `ip` whose ports follow each other (RTP, and RTCP above it).
async fn rtp_and_rtcp(ip: &str) -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = UdpSocket::bind((ip, 0)).await.unwrap();
        let port = rtp.local_addr().unwrap().port();
        if port % 2 == 0
            && let Ok(rtcp) = UdpSocket::bind((ip, port + 1)).await
        {
            return (rtp, rtcp);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_leg_relays_rtcp_both_ways_and_reports_to_the_browser_itself() {
    use lifeline::media::rtcp;
    let edge = start("35900-35999").await;
    let mut ws = register_alice(&edge).await;
    // The carrier: SIP from a scripted UDP peer, RTP echoed back, RTCP on the port above.
    let carrier = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let me = carrier.local_addr().unwrap();
    let (echo, carrier_rtcp) = rtp_and_rtcp(TRUNK_IP).await;
    let echo_port = echo.local_addr().unwrap().port();
    let echoing = common::anchored::echo(echo);
    let request = |line: &str, cseq: u32, route: &str, to_tag: &str, body: &str| {
        carrier_request(me, "rtcp2", line, cseq, route, to_tag, body)
    };
    let invite =
        request(&format!("INVITE sip:{DID}@127.0.0.1"), 1, "", "", &carrier_sdp(echo_port));
    carrier.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    let at_browser = ws_recv_until(&mut ws, "INVITE ").await;
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, body(&at_browser));
    let phone = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_response_as(&at_browser, 200, "", Some(&answer), "b-1", CONTACT)).await;
    let ok = udp_recv_until(&carrier, "SIP/2.0 200").await;
    let edge_rtcp = Sdp::parse(body(&ok)).unwrap().rtcp_address().unwrap();
    let ack = request(&format!("ACK {}", target(&ok)), 1, &route(&ok), ";tag=b-1", "");
    carrier.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "ACK ").await;
    assert_audio_both_ways(&phone, "the call").await;

    // The browser's RTCP (str0m reports every 5 s) reaches the carrier's RTCP port from the
    // edge's, as plain RTCP.
    let mut buf = [0u8; 1500];
    let got = tokio::time::timeout(Duration::from_secs(8), carrier_rtcp.recv_from(&mut buf)).await;
    let (n, from) = got.expect("the browser's RTCP at the carrier").unwrap();
    assert_eq!(from, edge_rtcp);
    let packets = rtcp::packets(&buf[..n]).expect("valid plain RTCP");
    assert!(matches!(packets[0].kind, rtcp::SR | rtcp::RR), "{packets:?}");

    // The carrier sent no RTCP yet: the anchor's own sender reports reach the browser, with
    // the packets it relayed.
    let mut heard = phone.heard().await;
    for _ in 0..80 {
        if heard.sender_reports > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        heard = phone.heard().await;
    }
    assert!(heard.sender_reports > 0 && heard.last_sr_packets > 30, "{heard:?}");

    // The carrier's sender report, from its RTCP port: the browser reads it, as SRTCP.
    let mut sr = Vec::new();
    let info = rtcp::SenderInfo { ntp: 1 << 40, rtp: 1, packets: 4242, octets: 4242 * 160 };
    rtcp::write_report(0x0c0f_fee0, Some(info), None, "carrier", &mut sr);
    carrier_rtcp.send_to(&sr, edge_rtcp).await.unwrap();
    for _ in 0..30 {
        if phone.heard().await.last_sr_packets == 4242 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(phone.heard().await.last_sr_packets, 4242, "the carrier's SR at the browser");

    let bye = request(&format!("BYE {}", target(&ok)), 2, &route(&ok), ";tag=b-1", "");
    carrier.send_to(bye.as_bytes(), edge.udp).await.unwrap();
    let bye = ws_recv_until(&mut ws, "BYE ").await;
    ws_send(&mut ws, ws_response_as(&bye, 200, "", None, "b-1", CONTACT)).await;
    phone.stop().await;
    echoing.abort();
    edge.stop().await;
}

/// A call from SIPp (`scenario`, 100rel, to `service`) forked to alice's two browsers
/// (`ws1`, `ws2`): each answers in a reliable 183 of its own early dialog and takes the PRACK
/// (which reaches it without SDP: an answer to the edge's plain offer is the edge's); the first
/// has early media; the second answers 200 and has the call's media, the first is cancelled.
/// Returns the INVITEs the browsers got.
async fn forked_call(
    edge: &Edge,
    ws1: &mut Ws,
    ws2: &mut Ws,
    dir: &Path,
    scenario: &str,
    service: &str,
) -> (String, String) {
    let carrier = sipp_uac(edge, dir, scenario, service, 7000);

    // Both browsers ring, each offered WebRTC from a leg of its own.
    let invite1 = ws_recv_until(ws1, "INVITE ").await;
    let invite2 = ws_recv_until(ws2, "INVITE ").await;
    let (offer1, offer2) = (body(&invite1).to_owned(), body(&invite2).to_owned());
    assert_ne!(attribute(&offer1, "ice-ufrag"), attribute(&offer2, "ice-ufrag"));
    let (mut rtc1, sock1) = browser_rtc().await;
    let answer1 = common::webrtc::answer_offer(&mut rtc1, &offer1);
    let phone1 = Phone::start(rtc1, sock1);
    let (mut rtc2, sock2) = browser_rtc().await;
    let answer2 = common::webrtc::answer_offer(&mut rtc2, &offer2);
    let phone2 = Phone::start(rtc2, sock2);

    // Each answers in a reliable 183 of its own early dialog; SIPp checks each carries the
    // edge's plain SDP, and PRACKs each in its dialog.
    ws_send(ws1, ws_response_as(&invite1, 183, RELIABLE, Some(&answer1), "b-1", CONTACT)).await;
    let prack1 = ws_recv_until(ws1, "PRACK ").await;
    assert!(body(&prack1).is_empty(), "{prack1}");
    ws_send(ws1, ws_response_as(&prack1, 200, "", None, "b-1", CONTACT)).await;
    assert_audio_both_ways(&phone1, "early media with the first browser").await;
    ws_send(ws2, ws_response_as(&invite2, 183, RELIABLE, Some(&answer2), "b-2", CONTACT_2)).await;
    let prack2 = ws_recv_until(ws2, "PRACK ").await;
    assert!(body(&prack2).is_empty(), "{prack2}");
    ws_send(ws2, ws_response_as(&prack2, 200, "", None, "b-2", CONTACT_2)).await;

    // The second browser takes the call: the first is cancelled, and the media is the
    // second's.
    ws_send(ws2, ws_response_as(&invite2, 200, "", None, "b-2", CONTACT_2)).await;
    let cancel = ws_recv_until(ws1, "CANCEL ").await;
    ws_send(ws1, ws_response_as(&cancel, 200, "", None, "b-1", CONTACT)).await;
    ws_send(ws1, ws_response_as(&invite1, 487, "", None, "b-1", CONTACT)).await;
    let ack = ws_recv_until(ws2, "ACK ").await;
    assert!(body(&ack).is_empty(), "{ack}");
    assert_audio_both_ways(&phone2, "the call with the second browser").await;
    let (_, _, legs) = media_metrics(edge).await;
    assert_eq!(legs, 1, "the first browser's leg closed");
    let bye = ws_recv_until(ws2, "BYE ").await;
    assert!(header(&bye, "Reason").is_empty(), "SIPp hung up, not the edge: {bye}");
    ws_send(ws2, ws_response_as(&bye, 200, "", None, "b-2", CONTACT_2)).await;
    phone1.stop().await;
    phone2.stop().await;
    assert_eq!(carrier_183s(&carrier), ["b-1", "b-2"], "a reliable 183 in each early dialog");
    carrier.passes().await;
    let (_, _, legs) = media_metrics(edge).await;
    assert_eq!(legs, 0);
    (invite1, invite2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_100rel_each_forked_early_dialog_has_its_own_answer_and_the_200_s_browser_the_media() {
    let edge = start("35300-35399").await;
    let mut ws1 = register_alice(&edge).await;
    let mut ws2 = register_alice_as(&edge, CONTACT_2, INSTANCE_2).await;
    let dir = TempDir::new("early-offers-fork");
    // An early offer: each 183 carries the edge's plain answer.
    forked_call(&edge, &mut ws1, &mut ws2, dir.path(), "fork_prack_uac.xml", DID).await;
    // A delayed offer: each 183 carries the edge's plain offer, answered in its PRACK.
    forked_call(&edge, &mut ws1, &mut ws2, dir.path(), "fork_prack_late_uac.xml", DID).await;
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psap_callback_forked_with_100rel_gets_the_answering_browser_s_media() {
    let edge = start("35400-35499").await;
    let mut ws1 = register_alice(&edge).await;
    let mut ws2 = register_alice_as(&edge, CONTACT_2, INSTANCE_2).await;
    let dir = TempDir::new("early-offers-psap");
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    // alice's 933 call leases a callback number; the carrier is busy.
    ws_send(&mut ws1, common::webrtc::ws_invite("em1", "933", 1, "", None)).await;
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let did = refuse_emergency_call(&edge, &mut ws1, &trunk, &at_trunk).await;
    drop(trunk);

    // The PSAP calls back (delayed offer, 100rel): both browsers ring with RFC 7090's
    // priority, and the one that answers has the media.
    let (invite1, invite2) =
        forked_call(&edge, &mut ws1, &mut ws2, dir.path(), "fork_prack_late_uac.xml", &did).await;
    assert_eq!(header(&invite1, "Priority"), ["psap-callback"], "{invite1}");
    assert_eq!(header(&invite2, "Priority"), ["psap-callback"], "{invite2}");
    edge.stop().await;
}

/// The To-tags of the 183s SIPp received.
fn carrier_183s(carrier: &Sipp) -> Vec<String> {
    let mut tags: Vec<String> = carrier
        .received()
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 183"))
        .map(|m| header(m, "To")[0].split("tag=").nth(1).unwrap_or_default().to_owned())
        .collect();
    tags.dedup();
    tags
}

/// alice calls `number` from the browser with an offer (`cseq`: the INVITE's, 2 after the
/// challenge of an ordinary call); the carrier (`trunk`, a scripted UDP peer) answers it in a
/// reliable 183; the browser's PRACK makes a new offer, which the carrier answers with
/// nothing usable (a refused stream) in the PRACK's 200; then it answers the INVITE 200
/// without SDP and the browser acknowledges. Returns the PRACK's 200 as the browser got it,
/// and the BYE the carrier got from the edge within 1.5 s, if any.
async fn unusable_answer_in_the_prack_200(
    edge: &Edge,
    ws: &mut Ws,
    trunk: &UdpSocket,
    number: &str,
    cseq: u32,
) -> (String, Option<String>) {
    let call = format!("bad-{number}");
    let (mut rtc, _sock) = browser_rtc().await;
    let (offer, pending, _) = make_offer(&mut rtc);
    if cseq == 1 {
        ws_send(ws, common::webrtc::ws_invite(&call, number, 1, "", Some(&offer))).await;
    } else {
        ws_call(ws, &call, number, Some(&offer)).await;
    }
    let at_trunk = udp_recv_until(trunk, "INVITE ").await;
    let invite = parse_request(&at_trunk);
    let trunk_contact = format!("<sip:carrier@127.0.0.2:{}>", edge.trunk_ports.0);
    let plain = "v=0\r\no=- 7 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                 m=audio 42000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    let respond = |status: u16, reason: &str, extra: &[(&str, &str)], sdp: Option<&str>| {
        let mut r = sip::Response::for_request(&invite, status, reason);
        r.set_to_tag("t-1");
        for rr in invite.headers().get_all(sip::HeaderName::RecordRoute) {
            r.headers_mut().push(sip::HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
        }
        r.headers_mut().push(sip::HeaderName::Contact, trunk_contact.clone());
        for (name, value) in extra {
            let name = sip::HeaderName::from_bytes(name.as_bytes());
            r.headers_mut().push(name, value.to_string());
        }
        if let Some(sdp) = sdp {
            r.set_body(Some("application/sdp"), bytes::Bytes::from(sdp.to_owned()));
        }
        r.to_bytes()
    };
    let progress =
        respond(183, "Session Progress", &[("Require", "100rel"), ("RSeq", "1")], Some(plain));
    trunk.send_to(&progress, edge.udp).await.unwrap();
    let progress = ws_recv_until(ws, "SIP/2.0 183").await;
    rtc.sdp_api()
        .accept_answer(pending, str0m::change::SdpAnswer::from_sdp_string(body(&progress)).unwrap())
        .unwrap();

    // The browser's PRACK holds; the carrier gets the edge's plain offer and refuses the
    // stream in its answer.
    let mut change = rtc.sdp_api();
    let mid = rtc_mid(body(&progress));
    change.set_direction(mid, RtcDirection::SendOnly);
    let (hold, _) = change.apply().unwrap();
    let prack = ws_in_dialog(&progress, "PRACK", cseq + 1, Some(&hold.to_sdp_string()));
    let (line, rest) = prack.split_once("\r\n").unwrap();
    ws_send(ws, format!("{line}\r\nRAck: 1 {cseq} INVITE\r\n{rest}")).await;
    let at_trunk = udp_recv_until(trunk, "PRACK ").await;
    assert!(body(&at_trunk).contains("RTP/AVP 0\r\n"), "the edge's plain offer: {at_trunk}");
    assert!(body(&at_trunk).contains("a=sendonly"), "{at_trunk}");
    let refused = "v=0\r\no=- 7 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                   m=audio 0 RTP/AVP 0\r\n";
    let mut prack_ok = sip::Response::for_request(&parse_request(&at_trunk), 200, "OK");
    prack_ok.set_body(Some("application/sdp"), bytes::Bytes::from_static(refused.as_bytes()));
    trunk.send_to(&prack_ok.to_bytes(), edge.udp).await.unwrap();
    let prack_ok = ws_recv_until(ws, "SIP/2.0 200").await;

    // The INVITE's 200, without SDP (the answer went reliably), and the browser's ACK.
    trunk.send_to(&respond(200, "OK", &[], None), edge.udp).await.unwrap();
    let ok = ws_recv_until(ws, "SIP/2.0 200").await;
    assert_eq!(header(&ok, "CSeq"), [format!("{cseq} INVITE")], "{ok}");
    ws_send(ws, ws_in_dialog(&ok, "ACK", cseq, None)).await;
    udp_recv_until(trunk, "ACK ").await;
    let bye = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            let bye = udp_recv_until(trunk, "BYE ").await;
            if header(&bye, "Call-ID") == [call.as_str()] {
                return bye;
            }
        }
    });
    (prack_ok, bye.await.ok())
}

/// The mid of the audio section of an SDP.
fn rtc_mid(sdp: &str) -> str0m::media::Mid {
    str0m::media::Mid::from(attribute(sdp, "mid"))
}

#[tokio::test]
async fn an_unusable_answer_in_a_prack_s_200_ends_an_ordinary_call_at_its_ack_never_an_emergency_call()
 {
    let edge = start("35500-35599").await;
    let mut ws = register_alice(&edge).await;
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();

    // An ordinary call: the browser gets the PRACK's 200 without SDP, and the edge ends the
    // call at the ACK, a BYE both ways with a 488 Reason.
    let (prack_ok, bye) =
        unusable_answer_in_the_prack_200(&edge, &mut ws, &trunk, CALL_NUMBER, 2).await;
    assert!(body(&prack_ok).is_empty(), "{prack_ok}");
    let bye = bye.expect("the edge ends the call");
    assert_eq!(header(&bye, "Reason"), ["SIP;cause=488;text=\"no usable SDP answer\""], "{bye}");
    let bye_browser = ws_recv_until(&mut ws, "BYE ").await;
    assert_eq!(header(&bye_browser, "Reason"), header(&bye, "Reason"), "{bye_browser}");
    let contact = format!("<sip:carrier@127.0.0.2:{}>", edge.trunk_ports.0);
    let bye_ok = uas_response(&parse_request(&bye), 200, "OK", "t-1", &contact);
    trunk.send_to(bye_ok.as_bytes(), edge.udp).await.unwrap();
    ws_send(&mut ws, uas_response(&parse_request(&bye_browser), 200, "OK", "b", CONTACT)).await;

    // An emergency call: the answer passes as it came, and the call stays up.
    let (prack_ok, bye) = unusable_answer_in_the_prack_200(&edge, &mut ws, &trunk, "933", 1).await;
    assert!(body(&prack_ok).contains("m=audio 0 RTP/AVP 0"), "passed as it came: {prack_ok}");
    assert!(bye.is_none(), "the edge ended an emergency call: {bye:?}");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_crossing_the_edge_s_offer_in_a_reliable_183_gets_491_and_the_call_goes_on() {
    let edge = start("35600-35699").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("early-offers-glare");
    // The carrier calls without SDP; the browser answers the edge's WebRTC offer in a reliable
    // 183, which carries the edge's plain offer; the carrier's UPDATE before its PRACK gets
    // 491 from the edge (SIPp checks it) and never reaches the browser.
    let carrier = sipp_uac(&edge, dir.path(), "prack_glare_uac.xml", DID, 2500);
    let invite = ws_recv_until(&mut ws, "INVITE ").await;
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, body(&invite));
    let phone = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_response_with(&invite, 183, RELIABLE, Some(&answer))).await;
    let next = common::webrtc::ws_recv(&mut ws).await;
    assert!(next.starts_with("PRACK "), "the UPDATE stopped at the edge: {next}");
    assert!(body(&next).is_empty(), "the carrier's answer is the edge's: {next}");
    ws_send(&mut ws, ws_response(&next, 200, None)).await;
    ws_send(&mut ws, ws_response(&invite, 200, None)).await;
    let ack = ws_recv_until(&mut ws, "ACK ").await;
    assert!(body(&ack).is_empty(), "{ack}");
    assert_audio_both_ways(&phone, "the call").await;
    let bye = ws_recv_until(&mut ws, "BYE ").await;
    assert!(header(&bye, "Reason").is_empty(), "the carrier hung up, not the edge: {bye}");
    ws_send(&mut ws, uas_response(&parse_request(&bye), 200, "OK", "b-tag", CONTACT)).await;
    phone.stop().await;
    carrier.passes().await;
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_phone_answering_after_a_browser_s_early_media_gets_the_call_unanchored() {
    let edge = start("35800-35899").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("early-offers-desk-phone");
    // alice's desk phone: plain RTP over UDP, registered with digest next to her browser; it
    // rings and answers 1.5 s later.
    let media = ports::reserve_media();
    let phone = Sipp::build("desk_phone_uas.xml", dir.path(), "desk_phone_uas.xml")
        .args(&["-mp", &media.to_string(), "-d", "1500"])
        .listening()
        .await;
    let register = Sipp::build("agent_register.xml", dir.path(), "agent_register.xml")
        .to(edge.udp)
        .service("alice")
        .auth("alice", "secret")
        .key("contact_port", &phone.port().to_string())
        .start();
    register.passes().await;
    let mut bindings = 0;
    for _ in 0..100 {
        let text = edge.metrics().await;
        bindings = text
            .lines()
            .find_map(|l| l.strip_prefix("lifeline_registrations ")?.trim().parse().ok())
            .unwrap_or(0);
        if bindings >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bindings, 2, "the browser and the desk phone");

    // The carrier calls; the browser sends early media (a 183 with its answer), which the
    // carrier gets as the edge's plain answer.
    let carrier = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let me = carrier.local_addr().unwrap();
    let request = |line: &str, cseq: u32, route: &str, to_tag: &str, body: &str| {
        carrier_request(me, "desk1", line, cseq, route, to_tag, body)
    };
    let offer = carrier_sdp(42000);
    carrier
        .send_to(
            request(&format!("INVITE sip:{DID}@127.0.0.1"), 1, "", "", &offer).as_bytes(),
            edge.udp,
        )
        .await
        .unwrap();
    let invite = ws_recv_until(&mut ws, "INVITE ").await;
    let (mut rtc, _sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, body(&invite));
    ws_send(&mut ws, ws_response(&invite, 183, Some(&answer))).await;
    let progress = udp_recv_until(&carrier, "SIP/2.0 183").await;
    let edge_port = Sdp::parse(body(&progress)).unwrap().rtp_address().unwrap();

    // The desk phone answers first: its own answer reaches the carrier as it came (the call's
    // media goes between them), and the browser is cancelled.
    let ok = udp_recv_until(&carrier, "SIP/2.0 200").await;
    let answered = Sdp::parse(body(&ok)).unwrap().rtp_address().unwrap();
    assert_eq!(answered.port(), media, "the desk phone's own RTP address: {ok}");
    assert_ne!(answered, edge_port, "{ok}");
    let cancel = ws_recv_until(&mut ws, "CANCEL ").await;
    ws_send(&mut ws, ws_response(&cancel, 200, None)).await;
    ws_send(&mut ws, ws_response_as(&invite, 487, "", None, "b-tag", CONTACT)).await;
    let to_tag = format!(";tag={}", header(&ok, "To")[0].split(";tag=").nth(1).unwrap());
    let ack = request(&format!("ACK {}", target(&ok)), 1, &route(&ok), &to_tag, "");
    carrier.send_to(ack.as_bytes(), edge.udp).await.unwrap();

    // No BYE from the edge (the browser's leg closing is not the call's end).
    let mut buf = [0u8; 4096];
    let quiet = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            let (n, _) = carrier.recv_from(&mut buf).await.unwrap();
            if buf[..n].starts_with(b"BYE ") {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the edge ended the desk phone's call");
    let bye = request(&format!("BYE {}", target(&ok)), 2, &route(&ok), &to_tag, "");
    carrier.send_to(bye.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(&carrier, "SIP/2.0 200").await;
    phone.passes().await;
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);
    edge.stop().await;
}
