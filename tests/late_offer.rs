//! Delayed offer through the media anchor (RFC 3261 §13.2.1: an INVITE without SDP, the offer
//! in the 2xx, the answer in the ACK), against real peers: SIPp as the carrier and the PSAP
//! (`-rtp_echo` returns every RTP packet), and a "browser" registered over WebSocket whose
//! WebRTC is str0m (ICE, DTLS-SRTP, PCMU both ways over real UDP to the edge's WebRTC port;
//! [`common::webrtc`], shared with tests/reoffer.rs, which covers offers inside the call).
//!
//! - A carrier's DID call without SDP: the browser is offered WebRTC by the edge, the carrier
//!   gets the edge's plain offer in the 200 (SIPp checks it) and answers in its ACK; audio
//!   goes browser -> edge -> SIPp -> edge -> browser.
//! - The same call with an ACK that answers nothing: the edge ends it, a BYE both ways with
//!   `Reason: SIP;cause=488`.
//! - A PSAP callback without SDP (the number leased by the agent's 933 call, itself an INVITE
//!   without SDP): audio both ways; and one whose ACK answers nothing stays up until the PSAP
//!   hangs up.
//! - The browser calls out without SDP: the carrier (SIPp) is offered plain RTP, the browser
//!   gets the edge's WebRTC offer in the 200 and answers in its ACK; audio both ways.
//! - A carrier answering a browser's offer with a 200 without SDP: the call ends at the ACK.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::anchored::{CALL_NUMBER, DID, refuse_emergency_call, sipp_uac, start};
use common::sipp::Sipp;
use common::ua::{header, parse_request, uas_response, udp_recv_until};
use common::webrtc::{
    CONTACT, Heard, Phone, Ws, answer_offer, body, browser_rtc, make_offer, media_metrics,
    register_alice, ws_call, ws_in_dialog, ws_invite, ws_recv_until, ws_response, ws_send,
};
use common::{Edge, TRUNK_IP, TempDir, ports};
use lifeline::media::sdp::Sdp;
use tokio::net::UdpSocket;

/// A call from SIPp (`scenario`, calling `service`) that alice answers from the browser; her
/// media runs until the BYE, which she answers. Returns the INVITE she got and what her media
/// heard.
async fn answer_sipp_call(
    edge: &Edge,
    ws: &mut Ws,
    dir: &Path,
    scenario: &str,
    service: &str,
    pause_ms: u32,
) -> (String, String, Heard) {
    let carrier = sipp_uac(edge, dir, scenario, service, pause_ms);
    let invite = ws_recv_until(ws, "INVITE ").await;
    let offer = body(&invite);
    assert!(offer.contains("UDP/TLS/RTP/SAVPF"), "a WebRTC offer from the edge: {invite}");
    assert!(offer.contains("a=ice-lite") && offer.contains("a=fingerprint:"), "{offer}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = answer_offer(&mut rtc, offer);
    let media = Phone::start(rtc, sock);
    ws_send(ws, ws_response(&invite, 200, Some(&answer))).await;
    let ack = ws_recv_until(ws, "ACK ").await;
    assert_eq!(header(&ack, "Content-Length"), ["0"], "the carrier's answer is the edge's: {ack}");
    assert!(header(&ack, "Content-Type").is_empty(), "{ack}");
    let bye = ws_recv_until(ws, "BYE ").await;
    ws_send(ws, uas_response(&parse_request(&bye), 200, "OK", "b-tag", CONTACT)).await;
    let heard = media.stop().await;
    carrier.passes().await;
    (invite, bye, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_s_invite_without_sdp_reaches_a_browser_agent_with_audio_both_ways() {
    let edge = start("33000-33099").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("late-offer-did");

    // SIPp checks the edge's offer in the 200 (plain RTP/AVP on 127.0.0.1, PCMU and
    // telephone-event 101) and answers it in the ACK; alice's ACK carries nothing.
    let (_, bye, heard) =
        answer_sipp_call(&edge, &mut ws, dir.path(), "late_offer_uac.xml", DID, 4000).await;
    assert!(header(&bye, "Reason").is_empty(), "the carrier hung up, not the edge: {bye}");
    assert!(heard.connected, "ICE and DTLS with the edge");
    assert!(heard.sent > 100, "{heard:?}");
    assert!(heard.received > 100, "SIPp's echo came back through the edge: {heard:?}");
    let (to_plain, to_browser, legs) = media_metrics(&edge).await;
    assert!(to_plain > 100 && to_browser > 100, "{to_plain} / {to_browser} packets relayed");
    assert_eq!(legs, 0, "the leg closed with the call");

    // The same call whose ACK answers nothing: the edge ends it at once, a BYE both ways
    // with a 488 Reason (SIPp checks its own).
    let carrier = sipp_uac(&edge, dir.path(), "late_offer_uac_no_answer.xml", DID, 0);
    let invite = ws_recv_until(&mut ws, "INVITE ").await;
    let (mut rtc, _sock) = browser_rtc().await;
    let answer = answer_offer(&mut rtc, body(&invite));
    ws_send(&mut ws, ws_response(&invite, 200, Some(&answer))).await;
    let ack = ws_recv_until(&mut ws, "ACK ").await;
    assert_eq!(header(&ack, "Content-Length"), ["0"], "{ack}");
    let bye = ws_recv_until(&mut ws, "BYE ").await;
    assert_eq!(header(&bye, "Reason"), ["SIP;cause=488;text=\"no usable SDP answer\""], "{bye}");
    assert!(bye.starts_with("BYE sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws "), "{bye}");
    ws_send(&mut ws, uas_response(&parse_request(&bye), 200, "OK", "b-tag", CONTACT)).await;
    carrier.passes().await;
    let (_, _, legs) = media_metrics(&edge).await;
    assert_eq!(legs, 0);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psap_callback_without_sdp_is_anchored_and_never_ended_for_want_of_an_answer() {
    let edge = start("33100-33199").await;
    let mut ws = register_alice(&edge).await;
    let dir = TempDir::new("late-offer-psap");
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();

    // alice dials 933 from a client that sends no SDP: the carrier gets the edge's plain
    // offer (G.711 and telephone-event) and the leased callback number; it is busy.
    ws_send(&mut ws, ws_invite("em1", "933", 1, "", None)).await;
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    // The agent's location rides along as a PIDF-LO (RFC 6442): the SDP is one part.
    let ct = header(&at_trunk, "Content-Type")[0];
    let bytes = bytes::Bytes::from(body(&at_trunk).to_owned());
    let offer = lifeline::media::sdp::of_body(Some(ct.as_bytes()), &bytes).unwrap();
    let plain = Sdp::parse(&offer).unwrap();
    assert!(!plain.is_webrtc(), "{at_trunk}");
    assert!(offer.contains(" RTP/AVP 0 8 101\r\n"), "{at_trunk}");
    assert_eq!(plain.rtp_address().unwrap().ip().to_string(), "127.0.0.1");
    assert_eq!(header(&at_trunk, "Priority"), ["emergency"]);
    let did = refuse_emergency_call(&edge, &mut ws, &trunk, &at_trunk).await;

    // The PSAP calls back without SDP: alice rings with RFC 7090's priority, audio flows.
    let (invite, bye, heard) =
        answer_sipp_call(&edge, &mut ws, dir.path(), "late_offer_uac.xml", &did, 3000).await;
    assert_eq!(header(&invite, "Priority"), ["psap-callback"], "{invite}");
    assert!(header(&bye, "Reason").is_empty(), "the PSAP hung up, not the edge: {bye}");
    assert!(heard.connected && heard.received > 60, "{heard:?}");
    let (to_plain, to_browser, _) = media_metrics(&edge).await;
    assert!(to_plain > 60 && to_browser > 60, "{to_plain} / {to_browser} packets relayed");

    // A PSAP whose ACK answers nothing: the callback stays up (SIPp fails on a BYE from the
    // edge) until the PSAP hangs up.
    let (_, bye, _) =
        answer_sipp_call(&edge, &mut ws, dir.path(), "late_offer_psap_no_answer.xml", &did, 2500)
            .await;
    assert!(header(&bye, "Reason").is_empty(), "{bye}");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calling_out_without_sdp_is_offered_webrtc_in_the_200_and_answers_in_the_ack() {
    let edge = start("33200-33299").await;
    let mut ws = register_alice(&edge).await;
    // The carrier answers the edge's plain offer with PCMU on its media port and echoes.
    let dir = TempDir::new("late-offer-out");
    let media = ports::reserve_media().to_string();
    let carrier = Sipp::build("rtp_trunk_uas.xml", dir.path(), "rtp_trunk_uas.xml")
        .local(TRUNK_IP, edge.trunk_ports.0)
        .args(&["-mp", &media, "-rtp_echo"])
        .listening()
        .await;
    ws_call(&mut ws, "out1", CALL_NUMBER, None).await;
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    let offer = body(&ok);
    assert!(offer.contains("UDP/TLS/RTP/SAVPF 0\r\n"), "WebRTC, the carrier's PCMU: {ok}");
    assert!(offer.contains("a=ice-lite") && offer.contains("a=setup:actpass"), "{offer}");
    let (mut rtc, sock) = browser_rtc().await;
    let answer = answer_offer(&mut rtc, offer);
    let media = Phone::start(rtc, sock);
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 2, Some(&answer))).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws_send(&mut ws, ws_in_dialog(&ok, "BYE", 3, None)).await;
    ws_recv_until(&mut ws, "SIP/2.0 200").await;
    let heard = media.stop().await;
    carrier.passes().await;
    assert!(heard.connected && heard.received > 60, "{heard:?}");
    let (to_plain, to_browser, legs) = media_metrics(&edge).await;
    assert!(to_plain > 60 && to_browser > 60, "{to_plain} / {to_browser} packets relayed");
    assert_eq!(legs, 0);
    edge.stop().await;
}

#[tokio::test]
async fn a_carrier_s_200_without_sdp_to_a_browser_offer_ends_the_call_at_the_ack() {
    let edge = start("33300-33399").await;
    let mut ws = register_alice(&edge).await;
    let trunk = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let (mut rtc, _sock) = browser_rtc().await;
    let (offer, _pending, _) = make_offer(&mut rtc);
    ws_call(&mut ws, "nosdp", CALL_NUMBER, Some(&offer)).await;
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    assert!(body(&at_trunk).contains(" RTP/AVP "), "{at_trunk}");
    let trunk_contact = format!("<sip:carrier@127.0.0.2:{}>", edge.trunk_ports.0);
    let ok = uas_response(&parse_request(&at_trunk), 200, "OK", "t-1", &trunk_contact);
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let ok = ws_recv_until(&mut ws, "SIP/2.0 200").await;
    assert!(body(&ok).is_empty(), "{ok}");
    // The browser acknowledges; the edge ends the call both ways.
    ws_send(&mut ws, ws_in_dialog(&ok, "ACK", 2, None)).await;
    udp_recv_until(&trunk, "ACK ").await;
    let bye = udp_recv_until(&trunk, "BYE ").await;
    assert_eq!(header(&bye, "Reason"), ["SIP;cause=488;text=\"no usable SDP answer\""], "{bye}");
    assert!(bye.starts_with(&format!("BYE sip:carrier@127.0.0.2:{} ", edge.trunk_ports.0)));
    let bye_browser = ws_recv_until(&mut ws, "BYE ").await;
    assert_eq!(header(&bye_browser, "Reason"), header(&bye, "Reason"), "{bye_browser}");
    edge.stop().await;
}
