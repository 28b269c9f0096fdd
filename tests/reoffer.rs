//! Offer/answer inside anchored calls (issue 7), against real peers: SIPp as the carrier
//! (`-rtp_echo` returns every RTP packet) and a "browser" registered over WebSocket whose
//! WebRTC is str0m ([`common::webrtc`]: ICE, DTLS-SRTP, PCMU every 20 ms over real UDP to the
//! edge's WebRTC port, new offers and answers taken while its media runs).
//!
//! - The carrier calls the browser with SDP, then holds (re-INVITE, sendonly), resumes,
//!   refreshes the session by UPDATE with the same SDP, and by re-INVITE without SDP (RFC 6337
//!   §5). Each offer reaches the browser as a WebRTC offer on the same ICE/DTLS session with
//!   the carrier's direction; SIPp checks every plain answer, and the edge's plain offer in
//!   the 200 of the re-INVITE without SDP; audio flows both ways after the resume and after
//!   the last refresh.
//! - The browser calls the carrier, holds, resumes, and sends a re-INVITE without SDP: the
//!   carrier offers in its 200 (PCMA first), the browser gets the leg's WebRTC offer in it and
//!   answers in its ACK, and SIPp checks the edge's plain answer (PCMU, the call's codec) in
//!   the ACK; audio both ways afterwards.
//! - 100rel (RFC 3262): a carrier's INVITE without SDP answered by the browser in a reliable
//!   183: the edge's plain offer goes in that 183 and the carrier's answer comes in the PRACK,
//!   which reaches the browser without SDP; the 200 carries none. An early offer answered
//!   in a reliable 183: the carrier gets the plain answer there and a 200 without SDP. And
//!   the mirror image: a browser's INVITE without SDP that the carrier answers in a reliable
//!   183 gets the edge's WebRTC offer in it, and answers in its PRACK.
//! - A carrier re-offer without the call's codec is refused with 488 by the edge and changes
//!   nothing; an ordinary call whose browser answers a re-offer with nothing usable ends with
//!   a BYE both ways and `Reason: SIP;cause=488`. A PSAP callback is neither refused nor
//!   ended for those: what the edge cannot rewrite passes as it came.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::anchored::{CALL_NUMBER, DID, refuse_emergency_call, sipp_uac, start};
use common::sipp::Sipp;
use common::ua::{header, parse_request, uas_response, udp_recv_until};
use common::webrtc::{
    CONTACT, Phone, Ws, assert_audio_both_ways, assert_same_session, attribute, body, browser_rtc,
    make_offer, media_metrics, register_alice, ws_call, ws_in_dialog, ws_recv_until, ws_response,
    ws_response_with, ws_send,
};
use common::{Edge, TRUNK_IP, TempDir, ports};
use lifeline::media::sdp::{Direction, Sdp};
use str0m::media::Direction as RtcDirection;
use tokio::net::UdpSocket;

/// The browser answers `req` 200 with its phone's answer to the offer in it.
async fn answer_in_200(ws: &mut Ws, phone: &Phone, req: &str) -> String {
    let answer = phone.accept_offer(body(req)).await;
    ws_send(ws, ws_response(req, 200, Some(&answer))).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_s_hold_resume_and_refreshes_reach_the_browser_as_webrtc_offers_of_its_session() {
    let edge = start("34000-34099").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("reoffer-carrier");
    let carrier = sipp_uac(&edge, dir.path(), "reoffer_uac.xml", DID, 0);

    // The early offer: the browser gets the edge's WebRTC offer and answers it.
    let invite = ws_recv_until(&mut ws, "INVITE ").await;
    let first = body(&invite).to_owned();
    assert!(Sdp::parse(&first).unwrap().is_webrtc(), "{invite}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, &first);
    let phone = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_response(&invite, 200, Some(&answer))).await;
    ws_recv_until(&mut ws, "ACK ").await;

    // Hold: a WebRTC re-offer of the same session, sendonly as the carrier's; the browser
    // answers recvonly (SIPp checks the plain recvonly it gets).
    let hold = ws_recv_until(&mut ws, "INVITE ").await;
    assert_same_session(body(&hold), &first, Direction::SendOnly);
    let answer = answer_in_200(&mut ws, &phone, &hold).await;
    assert_eq!(Sdp::parse(&answer).unwrap().direction, Direction::RecvOnly);
    let ack = ws_recv_until(&mut ws, "ACK ").await;
    assert!(body(&ack).is_empty(), "{ack}");

    // Resume: sendrecv again, and audio both ways.
    let resume = ws_recv_until(&mut ws, "INVITE ").await;
    assert_same_session(body(&resume), &first, Direction::SendRecv);
    answer_in_200(&mut ws, &phone, &resume).await;
    ws_recv_until(&mut ws, "ACK ").await;
    assert_audio_both_ways(&phone, "after the resume").await;

    // A session refresh by UPDATE with the same SDP: a re-offer all the same.
    let update = ws_recv_until(&mut ws, "UPDATE ").await;
    assert_same_session(body(&update), &first, Direction::SendRecv);
    answer_in_200(&mut ws, &phone, &update).await;

    // A session refresh by re-INVITE without SDP: it reaches the browser without SDP, the
    // browser offers in its 200, and the leg's WebRTC answer comes in the ACK (SIPp checks
    // the edge's plain offer in its 200 and answers in its ACK).
    let refresh = ws_recv_until(&mut ws, "INVITE ").await;
    assert!(body(&refresh).is_empty(), "{refresh}");
    let offer = phone.offer(RtcDirection::SendRecv).await;
    ws_send(&mut ws, ws_response(&refresh, 200, Some(&offer))).await;
    let ack = ws_recv_until(&mut ws, "ACK ").await;
    let answer = body(&ack);
    assert!(Sdp::parse(answer).unwrap().is_webrtc() && answer.contains("a=ice-lite"), "{ack}");
    // The DTLS roles stay as they are (RFC 8842 §5.3): no actpass in an answer.
    assert!(!answer.contains("a=setup:actpass"), "{answer}");
    phone.accept_answer(answer).await.unwrap();
    assert_audio_both_ways(&phone, "after the re-INVITE without SDP").await;

    let bye = ws_recv_until(&mut ws, "BYE ").await;
    assert!(header(&bye, "Reason").is_empty(), "the carrier hung up, not the edge: {bye}");
    ws_send(&mut ws, uas_response(&parse_request(&bye), 200, "OK", "b-tag", CONTACT)).await;
    let heard = phone.stop().await;
    carrier.passes().await;
    assert!(heard.connected, "{heard:?}");
    let (to_plain, to_browser, legs) = media_metrics(&edge).await;
    assert!(to_plain > 100 && to_browser > 100, "{to_plain} / {to_browser} packets relayed");
    assert_eq!(legs, 0, "the leg closed with the call");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_s_hold_resume_and_re_invite_without_sdp_reach_the_carrier_as_plain_rtp() {
    let edge = start("34100-34199").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("reoffer-browser");
    let media = ports::reserve_media().to_string();
    let carrier = Sipp::build("reoffer_uas.xml", dir.path(), "reoffer_uas.xml")
        .local(TRUNK_IP, edge.trunk_ports.0)
        .args(&["-mp", &media, "-rtp_echo"])
        .listening()
        .await;
    let (mut rtc, sock) = browser_rtc().await;
    let (offer, pending, mid) = make_offer(&mut rtc);
    ws_call(&mut ws, "bro1", CALL_NUMBER, Some(&offer)).await;
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    let first = body(&ok).to_owned();
    let phone = Phone::start_pending(rtc, sock, pending, mid);
    phone.accept_answer(&first).await.unwrap();
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 2, None)).await;
    assert_audio_both_ways(&phone, "the call").await;

    // Hold and resume from the browser: the leg answers each (SIPp checks the plain offers).
    let mut cseq = 3;
    for (direction, answered) in [
        (RtcDirection::SendOnly, Direction::RecvOnly),
        (RtcDirection::SendRecv, Direction::SendRecv),
    ] {
        let offer = phone.offer(direction).await;
        ws_send(&mut ws, ws_in_dialog(&ok, "INVITE", cseq, Some(&offer))).await;
        let reply = ws_recv_until(&mut ws, "SIP/2.0 200").await;
        let answer = body(&reply);
        assert!(answer.contains("a=ice-lite"), "the leg's WebRTC answer: {reply}");
        assert_eq!(Sdp::parse(answer).unwrap().direction, answered, "{answer}");
        phone.accept_answer(answer).await.unwrap();
        ws_send(&mut ws, ws_in_dialog(&ok, "ACK", cseq, None)).await;
        cseq += 1;
    }
    assert_audio_both_ways(&phone, "after the resume").await;

    // A re-INVITE without SDP: the carrier offers in its 200 (PCMA first); the browser gets
    // the leg's WebRTC offer of the same session in it and answers in its ACK (SIPp checks
    // the edge's plain answer there: PCMU, the call's codec).
    ws_send(&mut ws, ws_in_dialog(&ok, "INVITE", cseq, None)).await;
    let reply = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    let offer = body(&reply).to_owned();
    assert_eq!(attribute(&offer, "ice-ufrag"), attribute(&first, "ice-ufrag"), "{offer}");
    assert_eq!(attribute(&offer, "fingerprint"), attribute(&first, "fingerprint"));
    assert!(offer.contains("a=setup:actpass") && offer.contains("a=sendrecv"), "{offer}");
    let answer = phone.accept_offer(&offer).await;
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", cseq, Some(&answer))).await;
    assert_audio_both_ways(&phone, "after the re-INVITE without SDP").await;

    ws_send(&mut ws, ws_in_dialog(&ok, "BYE", cseq + 1, None)).await;
    ws_recv_until(&mut ws, "SIP/2.0 200").await;
    let heard = phone.stop().await;
    carrier.passes().await;
    assert!(heard.connected, "{heard:?}");
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);
    edge.stop().await;
}

/// A carrier's call (SIPp `scenario`, 100rel) that the browser answers in a reliable 183 with
/// its answer to the edge's offer, then in a 200 (repeating that answer: the edge must keep
/// it from the carrier). Returns what the browser got: the INVITE and the PRACK.
async fn answer_reliably(edge: &Edge, ws: &mut Ws, dir: &Path, scenario: &str) -> (String, String) {
    let carrier = sipp_uac(edge, dir, scenario, DID, 2500);
    let invite = ws_recv_until(ws, "INVITE ").await;
    assert!(Sdp::parse(body(&invite)).unwrap().is_webrtc(), "the edge's offer: {invite}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, body(&invite));
    let phone = Phone::start(rtc, sock);
    let reliable = "Require: 100rel\r\nRSeq: 1\r\n";
    ws_send(ws, ws_response_with(&invite, 183, reliable, Some(&answer))).await;
    let prack = ws_recv_until(ws, "PRACK ").await;
    ws_send(ws, ws_response(&prack, 200, None)).await;
    ws_send(ws, ws_response(&invite, 200, Some(&answer))).await;
    let ack = ws_recv_until(ws, "ACK ").await;
    assert!(body(&ack).is_empty(), "{ack}");
    assert_audio_both_ways(&phone, scenario).await;
    let bye = ws_recv_until(ws, "BYE ").await;
    ws_send(ws, uas_response(&parse_request(&bye), 200, "OK", "b-tag", CONTACT)).await;
    phone.stop().await;
    carrier.passes().await;
    (invite, prack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_100rel_the_edge_s_offer_rides_a_reliable_183_and_its_answer_the_prack() {
    let edge = start("34200-34299").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("reoffer-prack");

    // Delayed offer: SIPp checks the edge's plain offer in the 183 and answers in the PRACK,
    // which the browser gets without SDP (its own offer/answer was the INVITE and the 183).
    let (_, prack) = answer_reliably(&edge, &mut ws, dir.path(), "prack_late_uac.xml").await;
    assert!(body(&prack).is_empty() && header(&prack, "Content-Type").is_empty(), "{prack}");
    assert_eq!(header(&prack, "RAck"), ["1 1 INVITE"], "{prack}");

    // Early offer: SIPp checks the edge's plain answer in the 183, and a 200 without SDP.
    let (invite, prack) = answer_reliably(&edge, &mut ws, dir.path(), "prack_early_uac.xml").await;
    assert!(header(&invite, "Supported")[0].contains("100rel"), "{invite}");
    assert!(body(&prack).is_empty(), "{prack}");
    let (to_plain, to_browser, legs) = media_metrics(&edge).await;
    assert!(to_plain > 60 && to_browser > 60, "{to_plain} / {to_browser} packets relayed");
    assert_eq!(legs, 0);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calling_without_sdp_is_offered_webrtc_in_a_reliable_183_and_answers_in_the_prack()
 {
    let edge = start("34400-34499").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("reoffer-prack-out");
    let media = ports::reserve_media().to_string();
    // The carrier answers the edge's plain offer in a reliable 183, and checks that the
    // PRACK carries no SDP.
    let carrier = Sipp::build("prack_uas.xml", dir.path(), "prack_uas.xml")
        .local(TRUNK_IP, edge.trunk_ports.0)
        .args(&["-mp", &media, "-rtp_echo"])
        .listening()
        .await;
    ws_call(&mut ws, "rel1", CALL_NUMBER, None).await;
    let progress = ws_recv_until(&mut ws, "SIP/2.0 183").await;
    assert_eq!(header(&progress, "Require"), ["100rel"], "{progress}");
    let offer = body(&progress);
    assert!(Sdp::parse(offer).unwrap().is_webrtc(), "the edge's WebRTC offer: {progress}");
    assert!(offer.contains("a=setup:actpass") && offer.contains("UDP/TLS/RTP/SAVPF 0"), "{offer}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, offer);
    let phone = Phone::start(rtc, sock);
    let prack = ws_in_dialog(&progress, "PRACK", 3, Some(&answer));
    let (first, rest) = prack.split_once("\r\n").unwrap();
    ws_send(&mut ws, format!("{first}\r\nRAck: 1 2 INVITE\r\n{rest}")).await;
    let prack_ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert_eq!(header(&prack_ok, "CSeq"), ["3 PRACK"], "{prack_ok}");
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert_eq!(header(&ok, "CSeq"), ["2 INVITE"], "{ok}");
    assert!(body(&ok).is_empty(), "the offer/answer was done in the 183 and PRACK: {ok}");
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 2, None)).await;
    assert_audio_both_ways(&phone, "the call").await;
    ws_send(&mut ws, ws_in_dialog(&ok, "BYE", 4, None)).await;
    ws_recv_until(&mut ws, "SIP/2.0 200").await;
    phone.stop().await;
    carrier.passes().await;
    edge.stop().await;
}

#[tokio::test]
async fn a_re_offer_the_anchor_cannot_relay_is_refused_and_an_unusable_answer_ends_the_call() {
    let edge = start("34300-34399").await;
    let mut ws = register_alice(&edge).await;
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let (mut rtc, _sock) = browser_rtc().await;
    let (offer, pending, _) = make_offer(&mut rtc);
    ws_call(&mut ws, "bad1", CALL_NUMBER, Some(&offer)).await;
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let trunk_contact = format!("<sip:carrier@127.0.0.2:{}>", edge.trunk_ports.0);
    let plain = |version: u32, pt: &str, direction: &str| {
        format!(
            "v=0\r\no=- 7 {version} IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio 42000 RTP/AVP {pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a={direction}\r\n"
        )
    };
    let mut ok = sip::Response::for_request(&parse_request(&at_trunk), 200, "OK");
    ok.set_to_tag("t-1");
    for rr in parse_request(&at_trunk).headers().get_all(sip::HeaderName::RecordRoute) {
        ok.headers_mut().push(sip::HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
    }
    ok.headers_mut().push(sip::HeaderName::Contact, trunk_contact.clone());
    ok.set_body(Some("application/sdp"), bytes::Bytes::from(plain(1, "0", "sendrecv")));
    trunk.send_to(&ok.to_bytes(), edge.udp).await.unwrap();
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    rtc.sdp_api()
        .accept_answer(pending, str0m::change::SdpAnswer::from_sdp_string(body(&ok)).unwrap())
        .unwrap();
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 2, None)).await;
    udp_recv_until(&trunk, "ACK ").await;

    // The carrier re-offers PCMA only: the call's codec is PCMU and the edge does not
    // transcode, so it answers 488 itself (RFC 3261 §14.2) and the browser sees nothing.
    let trunk_me = trunk.local_addr().unwrap();
    let route: String =
        header(&at_trunk, "Record-Route").iter().map(|r| format!("Route: {r}\r\n")).collect();
    let reinvite = |cseq: u32, sdp: &str| {
        format!(
            "INVITE sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_me};branch=z9hG4bKbad{cseq}\r\n\
{route}Max-Forwards: 70\r\n\
From: <sip:{CALL_NUMBER}@localhost>;tag=t-1\r\n\
To: <sip:alice@localhost>;tag=a-bad1\r\n\
Call-ID: bad1\r\n\
CSeq: {cseq} INVITE\r\n\
Contact: {trunk_contact}\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    trunk.send_to(reinvite(1, &plain(2, "8", "sendrecv")).as_bytes(), edge.udp).await.unwrap();
    let refused = udp_recv_until(&trunk, "SIP/2.0 4").await;
    assert!(refused.starts_with("SIP/2.0 488 "), "{refused}");
    assert!(header(&refused, "Warning")[0].starts_with("305 "), "{refused}");

    // A hold the browser answers with nothing usable: the carrier gets no answer in its 200,
    // and the edge ends the call at its ACK, a BYE both ways with a 488 Reason.
    trunk.send_to(reinvite(2, &plain(3, "0", "sendonly")).as_bytes(), edge.udp).await.unwrap();
    let hold = ws_recv_until(&mut ws, "INVITE ").await;
    assert!(hold.contains("a=sendonly") && hold.contains("a=ice-lite"), "{hold}");
    ws_send(&mut ws, ws_response(&hold, 200, Some("v=0\r\nm=audio 9 RTP/AVP 0\r\n"))).await;
    let held = udp_recv_until(&trunk, "SIP/2.0 200").await;
    assert!(body(&held).is_empty(), "{held}");
    let ack = format!(
        "ACK sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_me};branch=z9hG4bKbadack\r\n\
{route}Max-Forwards: 70\r\n\
From: <sip:{CALL_NUMBER}@localhost>;tag=t-1\r\n\
To: <sip:alice@localhost>;tag=a-bad1\r\n\
Call-ID: bad1\r\n\
CSeq: 2 ACK\r\n\
Content-Length: 0\r\n\r\n"
    );
    trunk.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "ACK ").await;
    let bye = udp_recv_until(&trunk, "BYE ").await;
    assert_eq!(header(&bye, "Reason"), ["SIP;cause=488;text=\"no usable SDP answer\""], "{bye}");
    let bye_browser = ws_recv_until(&mut ws, "BYE ").await;
    assert_eq!(header(&bye_browser, "Reason"), header(&bye, "Reason"), "{bye_browser}");
    edge.stop().await;
}

#[tokio::test]
async fn a_psap_callback_s_re_offers_are_never_refused_nor_is_the_call_ended_for_them() {
    let edge = start("34500-34599").await;
    let mut ws = register_alice(&edge).await;
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();

    // alice's 933 call leases a callback number; the carrier is busy.
    ws_send(&mut ws, common::webrtc::ws_invite("em1", "933", 1, "", None)).await;
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let did = refuse_emergency_call(&edge, &mut ws, &trunk, &at_trunk).await;

    // The PSAP calls back with an early offer; alice answers from the browser.
    let psap = trunk;
    let psap_me = psap.local_addr().unwrap();
    let plain = |version: u32, pt: &str, direction: &str| {
        format!(
            "v=0\r\no=- 7 {version} IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio 42000 RTP/AVP {pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a={direction}\r\n"
        )
    };
    let request = |line: &str, cseq: u32, route: &str, to_tag: &str, sdp: &str| {
        format!(
            "{line} SIP/2.0\r\n\
Via: SIP/2.0/UDP {psap_me};branch=z9hG4bKpsap{cseq}{}\r\n\
{route}Max-Forwards: 70\r\n\
From: <sip:+12025550911@127.0.0.2>;tag=psap-1\r\n\
To: <sip:{did}@localhost>{to_tag}\r\n\
Call-ID: psap1\r\n\
CSeq: {cseq} {}\r\n\
Contact: <sip:psap@{psap_me}>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
            line.split(' ').next().unwrap(),
            line.split(' ').next().unwrap(),
            sdp.len()
        )
    };
    let invite =
        request(&format!("INVITE sip:{did}@127.0.0.1"), 1, "", "", &plain(1, "0", "sendrecv"));
    psap.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    let at_browser = ws_recv_until(&mut ws, "INVITE ").await;
    assert_eq!(header(&at_browser, "Priority"), ["psap-callback"], "{at_browser}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = common::webrtc::answer_offer(&mut rtc, body(&at_browser));
    let phone = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_response(&at_browser, 200, Some(&answer))).await;
    let ok = udp_recv_until(&psap, "SIP/2.0 200").await;
    assert!(!Sdp::parse(body(&ok)).unwrap().is_webrtc(), "{ok}");
    let route: String =
        header(&ok, "Record-Route").iter().rev().map(|r| format!("Route: {r}\r\n")).collect();
    let target = "INVITE sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws";
    let ack_line = "ACK sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws";
    let ack = request(ack_line, 1, &route, ";tag=b-tag", "");
    psap.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    ws_recv_until(&mut ws, "ACK ").await;

    // A re-offer without the call's codec (PCMA only): not refused by the edge; it reaches
    // the browser as it came, and the browser's own refusal goes back.
    psap.send_to(
        request(target, 2, &route, ";tag=b-tag", &plain(2, "8", "sendrecv")).as_bytes(),
        edge.udp,
    )
    .await
    .unwrap();
    let reinvite = ws_recv_until(&mut ws, "INVITE ").await;
    assert!(body(&reinvite).contains("RTP/AVP 8\r\n"), "passed as it came: {reinvite}");
    ws_send(&mut ws, ws_response(&reinvite, 488, None)).await;
    let refused = udp_recv_until(&psap, "SIP/2.0 488").await;
    assert!(header(&refused, "Warning").is_empty(), "the browser's 488, not the edge's: {refused}");

    // A hold the browser answers with nothing usable: the answer passes as it came, and the
    // callback stays up (no BYE either way).
    psap.send_to(
        request(target, 3, &route, ";tag=b-tag", &plain(3, "0", "sendonly")).as_bytes(),
        edge.udp,
    )
    .await
    .unwrap();
    let hold = ws_recv_until(&mut ws, "INVITE ").await;
    assert!(hold.contains("a=ice-lite") && hold.contains("a=sendonly"), "{hold}");
    let garbage = "v=0\r\nm=audio 9 RTP/AVP 0\r\n";
    ws_send(&mut ws, ws_response(&hold, 200, Some(garbage))).await;
    let held = udp_recv_until(&psap, "SIP/2.0 200").await;
    assert_eq!(body(&held), garbage, "{held}");
    psap.send_to(request(ack_line, 3, &route, ";tag=b-tag", "").as_bytes(), edge.udp)
        .await
        .unwrap();
    ws_recv_until(&mut ws, "ACK ").await;
    let mut buf = [0u8; 4096];
    let quiet = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            let (n, _) = psap.recv_from(&mut buf).await.unwrap();
            if buf[..n].starts_with(b"BYE ") {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the edge ended a PSAP callback");
    phone.stop().await;
    edge.stop().await;
}
