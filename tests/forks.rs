//! Forked calls with several 2xx (RFC 3261 §13.2.2.4, RFC 6026) against real peers: a
//! scripted carrier on the trunk's address (SIP over UDP, RTP echoed from another socket) and
//! "browsers" registered over WebSocket whose WebRTC is str0m ([`common::webrtc`]).
//!
//! - A carrier's call to alice's DID rings two browsers of hers, both answer 200: the first
//!   2xx is the call. The carrier's BYE of the other dialog (the losing fork) ends none of the
//!   call's accounting: alice (capacity 1) still refuses a new call with 486, no call-history
//!   row is written, and the first browser keeps the media; the call's own BYE then ends all
//!   of it (the row comes, alice takes calls again, no leg is left).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::anchored::{DID, start};
use common::ua::{header, udp_recv_until};
use common::webrtc::{
    CONTACT, Phone, body, browser_rtc, media_metrics, register_alice, register_alice_as,
    ws_recv_until, ws_response, ws_response_as, ws_send,
};
use common::{Edge, TRUNK_IP};
use tokio::net::UdpSocket;

const CONTACT_2: &str = "<sip:x9c4m2pq@p7d2w5k1n8b3.invalid;transport=ws>";
const INSTANCE_2: &str = "0b7d6c1e-9a2f-4c3b-8e5d-1f4a2b6c9d70";

async fn assert_audio_both_ways(phone: &Phone, when: &str) {
    for _ in 0..100 {
        if phone.heard().await.connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let heard = phone.heard_during(Duration::from_millis(1200)).await;
    assert!(heard.sent > 30, "{when}: the browser sends: {heard:?}");
    assert!(heard.received > 30, "{when}: the carrier's echo comes back: {heard:?}");
}

/// The carrier's offer: PCMU and telephone-event, RTP to 127.0.0.2:`port`.
fn carrier_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 9 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// A request of a scripted carrier at `me` calling alice's DID in call `call` (From-tag
/// `c-1`): `line` is its method and Request-URI, `to_tag` the To's `;tag=...` if any.
fn carrier_request(
    me: std::net::SocketAddr,
    call: &str,
    line: &str,
    cseq: u32,
    route: &str,
    to_tag: &str,
    body: &str,
) -> String {
    let method = line.split(' ').next().unwrap();
    let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    format!(
        "{line} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}{method}{cseq}{}\r\n\
         {route}Max-Forwards: 70\r\nFrom: <sip:+12025550100@127.0.0.2>;tag=c-1\r\n\
         To: <sip:{DID}@localhost>{to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:carrier@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        to_tag.trim_start_matches(";tag="),
        body.len()
    )
}

/// The remote target of a 2xx: its Contact's URI.
fn target(ok: &str) -> String {
    let contact = header(ok, "Contact")[0];
    contact.trim_start_matches('<').split('>').next().unwrap().to_owned()
}

/// The route set a UAC takes from a 2xx: its Record-Route reversed, as Route lines.
fn route(ok: &str) -> String {
    header(ok, "Record-Route").iter().rev().map(|r| format!("Route: {r}\r\n")).collect()
}

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
    let echo = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let echoing = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
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
