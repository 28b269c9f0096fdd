//! The media anchor in the SIP path, black box over UDP: a "browser" (a real str0m offer, sent
//! from a trusted address so that no challenge gets in the way) calls a trunk played by a
//! socket on 127.0.0.2. What the trunk and the browser see is checked message by message:
//! the plain offer, the edge's own WebRTC answer with the codec the trunk chose, a hold from
//! the trunk (a WebRTC re-offer of the same session), a hold from the browser, and the media
//! timeout ending the dialog with a BYE both ways. With `anchor = "always"`: RTP both ways
//! between two plain peers, RTCP on the ports above RTP's and multiplexed (counted apart from
//! RTP), and a re-INVITE without SDP moving the media. Real audio through the anchor is tests/browser.rs's
//! (headless Chromium).

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ua::{header, parse_request, uas_response, udp_recv_until};
use common::{Edge, Opts};
use lifeline::media::sdp::{Codec, Direction, Sdp};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction as RtcDirection, MediaKind};
use str0m::{Rtc, RtcConfig};
use tokio::net::UdpSocket;

/// One trunk on 127.0.0.2 for US numbers; 127.0.0.4 is trusted (never challenged).
const PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
probe = false

[[route]]
pattern = '^\+1[2-9]\d{9}$'
trunks = ["carrier"]

[[trusted]]
cidr = "127.0.0.4/32"
"#;

const BROWSER_IP: &str = "127.0.0.4";
const NUMBER: &str = "+12025550199";

/// A browser's offer: what str0m (the browser side of tests in src/media) writes for PCMU,
/// PCMA and telephone-event, optionally without the G.711 codecs.
fn browser_offer(g711: bool) -> String {
    browser(g711).1
}

/// [`browser_offer`] with the browser's str0m that made it, and the offer pending in it.
fn browser(g711: bool) -> (Rtc, String, SdpPendingOffer) {
    let mut config = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_opus(true, false);
    if g711 {
        config = config.enable_pcmu(true, false).enable_pcma(true, false);
    }
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(
        str0m::Candidate::host(format!("{BROWSER_IP}:50000").parse().unwrap(), "udp").unwrap(),
    );
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, RtcDirection::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    (rtc, offer.to_sdp_string(), pending)
}

fn with_body(head: String, body: &str) -> String {
    format!("{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

/// The trunk's 200 to `req` with an SDP answer.
fn answer_with(req: &sip::Request, sdp: &str, port: u16) -> String {
    let mut r = sip::Response::for_request(req, 200, "OK");
    r.set_to_tag("t-1");
    for rr in req.headers().get_all(sip::HeaderName::RecordRoute) {
        r.headers_mut().push(sip::HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
    }
    r.headers_mut().push(sip::HeaderName::Contact, format!("<sip:carrier@127.0.0.2:{port}>"));
    r.set_body(Some("application/sdp"), bytes::Bytes::from(sdp.to_owned()));
    String::from_utf8(r.to_bytes().to_vec()).unwrap()
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

async fn start(timeout: Duration) -> Edge {
    let opts = Opts { plan: Some(PLAN.into()), ..Opts::default() };
    Edge::start_opts(opts, |c| {
        c.limits.max_message_bytes = 65535;
        c.media.timeout = timeout;
        c.media.rtp_ports = "31000-31999".parse().unwrap();
    })
    .await
}

/// The browser's INVITE, the trunk's view of it, and the trunk's 200 with a PCMA answer as
/// the browser sees it. Returns (browser socket, trunk socket, the browser's offer, INVITE at
/// the trunk, 200 at the browser, the browser's str0m with the edge's answer applied).
async fn answered_call(
    edge: &Edge,
    call: &str,
) -> (UdpSocket, UdpSocket, String, String, String, Rtc) {
    let browser = UdpSocket::bind((BROWSER_IP, 0)).await.unwrap();
    let trunk = UdpSocket::bind(("127.0.0.2", edge.trunk_ports.0)).await.unwrap();
    let me = browser.local_addr().unwrap();
    let (mut rtc, offer, pending) = self::browser(true);
    let invite = with_body(
        format!(
            "INVITE sip:{NUMBER}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bK{call};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=b-{call}\r\n\
To: <sip:{NUMBER}@localhost>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@{me}>\r\n"
        ),
        &offer,
    );
    browser.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let req = parse_request(&at_trunk);
    let plain = Sdp::parse(body(&at_trunk)).unwrap();
    let trunk_rtp: SocketAddr = "127.0.0.2:42000".parse().unwrap();
    let answer =
        lifeline::media::sdp::plain(9, 1, trunk_rtp, &[(8, Codec::Pcma)], Direction::SendRecv);
    let ok = answer_with(&req, &answer, edge.trunk_ports.0);
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let at_browser = udp_recv_until(&browser, "SIP/2.0 200").await;
    assert!(plain.rtp_address().is_some());
    let answer = SdpAnswer::from_sdp_string(body(&at_browser)).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    (browser, trunk, offer, at_trunk, at_browser, rtc)
}

#[tokio::test]
async fn a_browser_call_to_a_plain_trunk_is_anchored_held_both_ways_and_ended_by_the_media_timeout()
{
    let edge = start(Duration::from_secs(3)).await;
    let (browser, trunk, offer, at_trunk, at_browser, mut rtc) = answered_call(&edge, "m1").await;

    // The trunk was offered plain RTP on one of the edge's ports, the browser's relayable
    // codecs in its order (PCMU, PCMA, no Opus), nothing of WebRTC.
    let plain = Sdp::parse(body(&at_trunk)).unwrap();
    assert!(!plain.is_webrtc(), "{at_trunk}");
    let port = plain.rtp_address().unwrap();
    assert_eq!(port.ip().to_string(), "127.0.0.1");
    assert!((31000..=31999).contains(&port.port()) && port.port().is_multiple_of(2), "{port}");
    let codecs: Vec<Codec> = plain.relayable().map(|(_, c)| c).collect();
    assert_eq!(codecs, vec![Codec::Pcmu, Codec::Pcma], "{at_trunk}");
    assert!(!body(&at_trunk).contains("opus") && !body(&at_trunk).contains("fingerprint"));

    // The browser got the edge's own answer: ICE-lite, DTLS, the trunk's codec only.
    let webrtc = body(&at_browser);
    assert!(webrtc.contains("a=ice-lite"), "{at_browser}");
    assert!(webrtc.contains("a=fingerprint:sha-256 "), "{webrtc}");
    assert!(webrtc.contains("a=setup:passive"), "{webrtc}");
    assert!(webrtc.contains("UDP/TLS/RTP/SAVPF 8"), "PCMA, as the trunk chose: {webrtc}");
    assert!(!webrtc.contains("PCMU"), "{webrtc}");
    let answer = Sdp::parse(webrtc).unwrap();
    assert!(answer.is_webrtc());

    // ACK, end to end.
    let me = browser.local_addr().unwrap();
    let carrier = format!("sip:carrier@127.0.0.2:{}", edge.trunk_ports.0);
    let rr: Vec<&str> = header(&at_browser, "Record-Route");
    let route = rr.iter().rev().map(|r| format!("Route: {r}\r\n")).collect::<String>();
    let ack = format!(
        "ACK {carrier} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKm1ack;rport\r\n\
{route}Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=b-m1\r\n\
To: <sip:{NUMBER}@localhost>;tag=t-1\r\n\
Call-ID: m1\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
    );
    browser.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(&trunk, "ACK ").await;

    // Garbage on the trunk side of the call's port, and on the WebRTC port (STUN-shaped,
    // DTLS-shaped and RTP-shaped junk), is dropped; nothing breaks.
    let junk = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let webrtc = edge.webrtc.unwrap();
    for _ in 0..20 {
        junk.send_to(b"\x00\x01not rtp at all", port).await.unwrap();
        for first in [0x00u8, 0x16, 0x80, 0xff] {
            let mut d = vec![first; 64];
            d[1] = 0x01;
            junk.send_to(&d, webrtc).await.unwrap();
        }
    }

    // The trunk holds (re-INVITE, plain sendonly): the browser is offered the same WebRTC
    // session again (ICE credentials, fingerprint; RFC 8842's actpass) with the trunk's
    // direction, and the trunk gets the edge's plain answer with the browser's (recvonly),
    // same port. The browser holds (re-INVITE, sendonly): the trunk is offered plain sendonly
    // on the same port, and the browser gets the leg's answer (recvonly) when the trunk
    // answers.
    let trunk_me = trunk.local_addr().unwrap();
    let trunk_route: String =
        header(&at_trunk, "Record-Route").iter().map(|r| format!("Route: {r}\r\n")).collect();
    let trunk_hold = lifeline::media::sdp::plain(
        9,
        3,
        "127.0.0.2:42000".parse().unwrap(),
        &[(8, Codec::Pcma)],
        Direction::SendOnly,
    );
    let reinvite = with_body(
        format!(
            "INVITE sip:alice@{me} SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_me};branch=z9hG4bKt1hold\r\n\
{trunk_route}Max-Forwards: 70\r\n\
From: <sip:{NUMBER}@localhost>;tag=t-1\r\n\
To: <sip:alice@localhost>;tag=b-m1\r\n\
Call-ID: m1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <{carrier}>\r\n"
        ),
        &trunk_hold,
    );
    trunk.send_to(reinvite.as_bytes(), edge.udp).await.unwrap();
    let at_browser2 = udp_recv_until(&browser, "INVITE ").await;
    let reoffer = body(&at_browser2);
    assert!(reoffer.contains("a=ice-lite") && reoffer.contains("a=setup:actpass"), "{reoffer}");
    let same = |name: &str| {
        let line = |sdp: &str| sdp.lines().find(|l| l.starts_with(name)).unwrap().to_owned();
        assert_eq!(line(reoffer), line(body(&at_browser)), "{name}");
    };
    same("a=ice-ufrag:");
    same("a=ice-pwd:");
    same("a=fingerprint:");
    let reoffer_sdp = Sdp::parse(reoffer).unwrap();
    assert!(reoffer_sdp.is_webrtc());
    assert_eq!(reoffer_sdp.direction, Direction::SendOnly, "{reoffer}");
    let answer = rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(reoffer).unwrap())
        .unwrap()
        .to_sdp_string();
    let mut r = sip::Response::for_request(&parse_request(&at_browser2), 200, "OK");
    r.headers_mut().push(sip::HeaderName::Contact, format!("<sip:alice@{me}>"));
    r.set_body(Some("application/sdp"), bytes::Bytes::from(answer));
    browser.send_to(&r.to_bytes(), edge.udp).await.unwrap();
    let trunk_ok = udp_recv_until(&trunk, "SIP/2.0 200").await;
    let plain_answer = Sdp::parse(body(&trunk_ok)).unwrap();
    assert!(!plain_answer.is_webrtc(), "{trunk_ok}");
    assert_eq!(plain_answer.direction, Direction::RecvOnly, "{trunk_ok}");
    assert_eq!(plain_answer.rtp_address(), Some(port), "{trunk_ok}");

    // The same offer (ICE credentials, fingerprint, mid) with the new direction, as a
    // browser's re-offer is.
    let hold = offer.replace("a=sendrecv", "a=sendonly");
    let reinvite = with_body(
        format!(
            "INVITE {carrier} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKm1hold;rport\r\n\
{route}Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=b-m1\r\n\
To: <sip:{NUMBER}@localhost>;tag=t-1\r\n\
Call-ID: m1\r\n\
CSeq: 2 INVITE\r\n\
Contact: <sip:alice@{me}>\r\n"
        ),
        &hold,
    );
    browser.send_to(reinvite.as_bytes(), edge.udp).await.unwrap();
    let held = udp_recv_until(&trunk, "INVITE ").await;
    let held_sdp = Sdp::parse(body(&held)).unwrap();
    assert!(!held_sdp.is_webrtc(), "{held}");
    assert_eq!(held_sdp.direction, Direction::SendOnly, "{held}");
    assert_eq!(held_sdp.rtp_address(), Some(port), "the same port: {held}");
    let answer = lifeline::media::sdp::plain(
        9,
        2,
        "127.0.0.2:42000".parse().unwrap(),
        &[(8, Codec::Pcma)],
        Direction::RecvOnly,
    );
    let ok = answer_with(&parse_request(&held), &answer, edge.trunk_ports.0);
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let held_ok = udp_recv_until(&browser, "SIP/2.0 200").await;
    assert!(header(&held_ok, "CSeq")[0].starts_with("2 "), "{held_ok}");
    let webrtc = body(&held_ok);
    assert!(webrtc.contains("a=ice-lite") && webrtc.contains("a=recvonly"), "{webrtc}");

    // Nothing flows (no ICE, no RTP): after the media timeout the edge ends the dialog with
    // a BYE both ways, each in that side's own terms.
    let started = Instant::now();
    let bye_trunk = udp_recv_timeout(&trunk, "BYE ", Duration::from_secs(8)).await;
    let bye_browser = udp_recv_timeout(&browser, "BYE ", Duration::from_secs(8)).await;
    assert!(started.elapsed() < Duration::from_secs(8));
    for bye in [&bye_trunk, &bye_browser] {
        assert_eq!(header(bye, "Reason"), vec!["SIP;cause=408;text=\"media timeout\""], "{bye}");
        assert_eq!(header(bye, "Call-ID"), vec!["m1"]);
    }
    // Toward the trunk: From is the caller's, To the trunk's with its tag, CSeq above 2.
    assert!(bye_trunk.starts_with(&format!("BYE {carrier} SIP/2.0\r\n")), "{bye_trunk}");
    assert!(header(&bye_trunk, "From")[0].ends_with("tag=b-m1"), "{bye_trunk}");
    assert!(header(&bye_trunk, "To")[0].ends_with("tag=t-1"), "{bye_trunk}");
    assert_eq!(header(&bye_trunk, "CSeq"), vec!["3 BYE"]);
    // Toward the browser: the other way round, to its Contact.
    assert!(bye_browser.starts_with(&format!("BYE sip:alice@{me} SIP/2.0\r\n")), "{bye_browser}");
    assert!(header(&bye_browser, "From")[0].ends_with("tag=t-1"), "{bye_browser}");
    assert!(header(&bye_browser, "To")[0].ends_with("tag=b-m1"), "{bye_browser}");
    for (sock, bye) in [(&trunk, &bye_trunk), (&browser, &bye_browser)] {
        let ok = uas_response(&parse_request(bye), 200, "OK", "x", "<sip:x@127.0.0.9>");
        sock.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    }

    // The metrics counted the timeout and the garbage; the leg is gone.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = edge.metrics().await;
    assert!(text.contains("lifeline_media_timeouts_total 1\n"), "{text}");
    assert!(text.contains("lifeline_media_legs 0\n"), "{text}");
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lifeline_media_dropped_total ")?.parse().ok())
        .unwrap();
    assert!(dropped >= 20, "{dropped} datagrams dropped");
    let stray: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lifeline_media_stray_total ")?.parse().ok())
        .unwrap();
    assert!(stray >= 80, "{stray} stray datagrams on the WebRTC port");
    edge.stop().await;
}

#[tokio::test]
async fn a_browser_offer_without_g711_gets_488_with_a_warning_and_reaches_no_trunk() {
    let edge = start(Duration::from_secs(30)).await;
    let browser = UdpSocket::bind((BROWSER_IP, 0)).await.unwrap();
    let trunk = UdpSocket::bind(("127.0.0.2", edge.trunk_ports.0)).await.unwrap();
    let me = browser.local_addr().unwrap();
    let invite = with_body(
        format!(
            "INVITE sip:{NUMBER}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKopus;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@localhost>;tag=b-opus\r\n\
To: <sip:{NUMBER}@localhost>\r\n\
Call-ID: opus\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@{me}>\r\n"
        ),
        &browser_offer(false),
    );
    browser.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(&browser, "SIP/2.0 4").await;
    assert!(reply.starts_with("SIP/2.0 488 "), "{reply}");
    let warning = header(&reply, "Warning");
    assert!(warning.len() == 1 && warning[0].starts_with("305 "), "{reply}");
    let mut buf = [0u8; 4096];
    let nothing = tokio::time::timeout(Duration::from_millis(500), trunk.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "the trunk got something");
    edge.stop().await;
}

/// [`udp_recv_until`] with a longer wait than its 3 s.
async fn udp_recv_timeout(sock: &UdpSocket, prefix: &str, limit: Duration) -> String {
    tokio::time::timeout(limit, async {
        loop {
            let mut buf = vec![0; 65536];
            let (n, _) = sock.recv_from(&mut buf).await.unwrap();
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with(prefix) {
                return m;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {prefix} within {limit:?}"))
}

#[tokio::test]
async fn with_anchor_always_plain_rtp_between_two_plain_peers_goes_through_the_edge_both_ways() {
    let opts = Opts { plan: Some(PLAN.into()), ..Opts::default() };
    let edge = Edge::start_opts(opts, |c| {
        c.media.anchor = lifeline::config::Anchoring::Always;
        c.media.rtp_ports = "32000-32999".parse().unwrap();
    })
    .await;
    let phone = UdpSocket::bind((BROWSER_IP, 0)).await.unwrap();
    let phone_rtp = UdpSocket::bind((BROWSER_IP, 0)).await.unwrap();
    let trunk = UdpSocket::bind(("127.0.0.2", edge.trunk_ports.0)).await.unwrap();
    let trunk_rtp = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let me = phone.local_addr().unwrap();
    // A codec the edge does not know (G.729) passes through untouched.
    let offer = "v=0\r\no=phone 1 1 IN IP4 127.0.0.4\r\ns=-\r\nc=IN IP4 127.0.0.4\r\nt=0 0\r\n\
        m=audio PORT RTP/AVP 18 0\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\n"
        .replace("PORT", &phone_rtp.local_addr().unwrap().port().to_string());
    let invite = with_body(
        format!(
            "INVITE sip:{NUMBER}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKp1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:desk@localhost>;tag=p-1\r\n\
To: <sip:{NUMBER}@localhost>\r\n\
Call-ID: p1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:desk@{me}>\r\n"
        ),
        &offer,
    );
    phone.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let toward_trunk = Sdp::parse(body(&at_trunk)).unwrap();
    let edge_b = toward_trunk.rtp_address().unwrap();
    assert_eq!(edge_b.ip().to_string(), "127.0.0.1", "{at_trunk}");
    assert!((32000..=32999).contains(&edge_b.port()), "{at_trunk}");
    assert!(body(&at_trunk).contains("a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no"));
    let answer = lifeline::media::sdp::plain(
        5,
        1,
        trunk_rtp.local_addr().unwrap(),
        &[(0, Codec::Pcmu)],
        Direction::SendRecv,
    );
    let ok = answer_with(&parse_request(&at_trunk), &answer, edge.trunk_ports.0);
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let at_phone = udp_recv_until(&phone, "SIP/2.0 200").await;
    let edge_a = Sdp::parse(body(&at_phone)).unwrap().rtp_address().unwrap();
    assert_ne!(edge_a, edge_b, "one port per side");
    assert_eq!(edge_a.ip().to_string(), "127.0.0.1");

    // RTP both ways, through the edge's two ports.
    let rtp = |seq: u8| {
        let mut p = vec![0x80, 0x00, 0x00, seq, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(&[0xff; 160]);
        p
    };
    let mut buf = [0u8; 2048];
    for seq in 0..5u8 {
        phone_rtp.send_to(&rtp(seq), edge_a).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), trunk_rtp.recv_from(&mut buf))
            .await
            .expect("RTP reached the trunk")
            .unwrap();
        assert_eq!((&buf[..n], from), (&rtp(seq)[..], edge_b));
        trunk_rtp.send_to(&rtp(100 + seq), edge_b).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), phone_rtp.recv_from(&mut buf))
            .await
            .expect("RTP came back to the phone")
            .unwrap();
        assert_eq!((&buf[..n], from), (&rtp(100 + seq)[..], edge_a));
    }
    // A stranger on the phone's side is not relayed once the phone latched.
    let stranger = UdpSocket::bind((BROWSER_IP, 0)).await.unwrap();
    stranger.send_to(&rtp(50), edge_a).await.unwrap();
    let nothing =
        tokio::time::timeout(Duration::from_millis(300), trunk_rtp.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "a stranger's packet was relayed");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = edge.metrics().await;
    assert!(text.contains("lifeline_media_packets_total{dir=\"plain_to_callee\"} 5\n"), "{text}");
    assert!(text.contains("lifeline_media_packets_total{dir=\"plain_to_caller\"} 5\n"), "{text}");
    assert!(text.contains("lifeline_media_legs 1\n"), "{text}");

    // The BYE ends the relay.
    let rr: Vec<&str> = header(&at_phone, "Record-Route");
    let route = rr.iter().rev().map(|r| format!("Route: {r}\r\n")).collect::<String>();
    let carrier = format!("sip:carrier@127.0.0.2:{}", edge.trunk_ports.0);
    let bye = format!(
        "BYE {carrier} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKp1bye;rport\r\n\
{route}Max-Forwards: 70\r\n\
From: <sip:desk@localhost>;tag=p-1\r\n\
To: <sip:{NUMBER}@localhost>;tag=t-1\r\n\
Call-ID: p1\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    phone.send_to(bye.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(&trunk, "BYE ").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = edge.metrics().await;
    assert!(text.contains("lifeline_media_legs 0\n"), "{text}");
    edge.stop().await;
}

/// Two UDP sockets on `ip` whose ports follow each other (RTP, and RTCP above it).
async fn rtp_and_rtcp(ip: &str) -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = UdpSocket::bind((ip, 0)).await.unwrap();
        let port = rtp.local_addr().unwrap().port();
        if let Some(next) = port.checked_add(1)
            && let Ok(rtcp) = UdpSocket::bind((ip, next)).await
        {
            return (rtp, rtcp);
        }
    }
}

#[tokio::test]
async fn with_anchor_always_rtcp_goes_through_and_a_re_invite_without_sdp_moves_the_media() {
    let opts = Opts { plan: Some(PLAN.into()), ..Opts::default() };
    let edge = Edge::start_opts(opts, |c| {
        c.media.anchor = lifeline::config::Anchoring::Always;
        c.media.rtp_ports = "35000-35199".parse().unwrap();
    })
    .await;
    let phone = UdpSocket::bind((BROWSER_IP, 0)).await.unwrap();
    let (phone_rtp, phone_rtcp) = rtp_and_rtcp(BROWSER_IP).await;
    let trunk = UdpSocket::bind(("127.0.0.2", edge.trunk_ports.0)).await.unwrap();
    let trunk_rtp = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    // The trunk's RTCP is elsewhere, as its a=rtcp says (RFC 3605).
    let trunk_rtcp = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let me = phone.local_addr().unwrap();
    // The phone's RTCP is on its RTP port + 1, the default (no a=rtcp).
    let offer = lifeline::media::sdp::plain(
        1,
        1,
        phone_rtp.local_addr().unwrap(),
        &[(0, Codec::Pcmu)],
        Direction::SendRecv,
    );
    let invite = with_body(
        format!(
            "INVITE sip:{NUMBER}@localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKrtcp1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:desk@localhost>;tag=p-2\r\n\
To: <sip:{NUMBER}@localhost>\r\n\
Call-ID: rtcp1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:desk@{me}>\r\n"
        ),
        &offer,
    );
    phone.send_to(invite.as_bytes(), edge.udp).await.unwrap();
    let at_trunk = udp_recv_until(&trunk, "INVITE ").await;
    let edge_b = Sdp::parse(body(&at_trunk)).unwrap().rtp_address().unwrap();
    assert!(!body(&at_trunk).contains("a=rtcp"), "{at_trunk}");
    let answer = format!(
        "{}a=rtcp:{}\r\n",
        lifeline::media::sdp::plain(
            5,
            1,
            trunk_rtp.local_addr().unwrap(),
            &[(0, Codec::Pcmu)],
            Direction::SendRecv
        ),
        trunk_rtcp.local_addr().unwrap().port()
    );
    let ok = answer_with(&parse_request(&at_trunk), &answer, edge.trunk_ports.0);
    trunk.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let at_phone = udp_recv_until(&phone, "SIP/2.0 200").await;
    // The trunk's a=rtcp does not reach the phone: the edge's RTCP port is its default.
    assert!(!body(&at_phone).contains("a=rtcp"), "{at_phone}");
    let edge_a = Sdp::parse(body(&at_phone)).unwrap().rtp_address().unwrap();
    let above = |a: SocketAddr| SocketAddr::new(a.ip(), a.port() + 1);

    let mut buf = [0u8; 2048];
    let recv = |sock: &UdpSocket| {
        let sock = sock.local_addr().unwrap();
        move |r: Result<Result<(usize, SocketAddr), std::io::Error>, _>| {
            r.unwrap_or_else(|_| panic!("nothing reached {sock}")).unwrap()
        }
    };
    // A sender report (RFC 3550 §6.4.1, no report block) from the phone's RTCP port...
    let mut sr = vec![0x80, 200, 0, 6, 1, 2, 3, 4];
    sr.extend_from_slice(&[7; 20]);
    phone_rtcp.send_to(&sr, above(edge_a)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), trunk_rtcp.recv_from(&mut buf)).await;
    let (n, from) = recv(&trunk_rtcp)(got);
    assert_eq!((&buf[..n], from), (&sr[..], above(edge_b)), "to the trunk's a=rtcp port");
    // ... and a receiver report back, to the phone's default RTCP port.
    let rr = [0x80, 201, 0, 1, 9, 9, 9, 9];
    trunk_rtcp.send_to(&rr, above(edge_b)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), phone_rtcp.recv_from(&mut buf)).await;
    let (n, from) = recv(&phone_rtcp)(got);
    assert_eq!((&buf[..n], from), (&rr[..], above(edge_a)));

    // RTCP multiplexed on the RTP port (RFC 5761), an 8-byte empty receiver report included,
    // goes along with the RTP.
    phone_rtp.send_to(&rr, edge_a).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), trunk_rtp.recv_from(&mut buf)).await;
    let (n, from) = recv(&trunk_rtp)(got);
    assert_eq!((&buf[..n], from), (&rr[..], edge_b));

    // The trunk's re-INVITE without SDP (a session refresh, RFC 6337 §5): the phone offers
    // new ports in its 200 and the trunk answers new ones in its ACK; each sees only the
    // edge's ports, and media follows the new addresses.
    let (phone_rtp2, _phone_rtcp2) = rtp_and_rtcp(BROWSER_IP).await;
    let trunk_rtp2 = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let trunk_me = trunk.local_addr().unwrap();
    let route: String =
        header(&at_trunk, "Record-Route").iter().map(|r| format!("Route: {r}\r\n")).collect();
    let in_dialog = |method: &str, branch: &str, sdp: Option<&str>| {
        let head = format!(
            "{method} sip:desk@{me} SIP/2.0\r\n\
Via: SIP/2.0/UDP {trunk_me};branch=z9hG4bK{branch}\r\n\
{route}Max-Forwards: 70\r\n\
From: <sip:{NUMBER}@localhost>;tag=t-1\r\n\
To: <sip:desk@localhost>;tag=p-2\r\n\
Call-ID: rtcp1\r\n\
CSeq: 2 {method}\r\n\
Contact: <sip:carrier@127.0.0.2:{}>\r\n",
            edge.trunk_ports.0
        );
        match sdp {
            Some(sdp) => with_body(head, sdp),
            None => format!("{head}Content-Length: 0\r\n\r\n"),
        }
    };
    trunk.send_to(in_dialog("INVITE", "refresh", None).as_bytes(), edge.udp).await.unwrap();
    let at_phone = udp_recv_until(&phone, "INVITE ").await;
    assert!(body(&at_phone).is_empty(), "{at_phone}");
    let offer2 = lifeline::media::sdp::plain(
        1,
        2,
        phone_rtp2.local_addr().unwrap(),
        &[(0, Codec::Pcmu)],
        Direction::SendRecv,
    );
    let mut ok = sip::Response::for_request(&parse_request(&at_phone), 200, "OK");
    ok.headers_mut().push(sip::HeaderName::Contact, format!("<sip:desk@{me}>"));
    ok.set_body(Some("application/sdp"), bytes::Bytes::from(offer2));
    phone.send_to(&ok.to_bytes(), edge.udp).await.unwrap();
    let ok_at_trunk = udp_recv_until(&trunk, "SIP/2.0 200").await;
    let offered = Sdp::parse(body(&ok_at_trunk)).unwrap();
    assert_eq!(offered.rtp_address(), Some(edge_b), "the trunk's side of the edge: {ok_at_trunk}");
    let answer2 = lifeline::media::sdp::plain(
        5,
        2,
        trunk_rtp2.local_addr().unwrap(),
        &[(0, Codec::Pcmu)],
        Direction::SendRecv,
    );
    let ack = in_dialog("ACK", "refreshack", Some(&answer2));
    trunk.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    let ack_at_phone = udp_recv_until(&phone, "ACK ").await;
    let answered = Sdp::parse(body(&ack_at_phone)).unwrap();
    assert_eq!(
        answered.rtp_address(),
        Some(edge_a),
        "the phone's side of the edge: {ack_at_phone}"
    );
    let rtp = {
        let mut p = vec![0x80, 0x00, 0x00, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(&[0xff; 160]);
        p
    };
    phone_rtp2.send_to(&rtp, edge_a).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), trunk_rtp2.recv_from(&mut buf)).await;
    let (n, from) = recv(&trunk_rtp2)(got);
    assert_eq!((&buf[..n], from), (&rtp[..], edge_b), "to the trunk's new address");
    trunk_rtp2.send_to(&rtp, edge_b).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), phone_rtp2.recv_from(&mut buf)).await;
    let (n, from) = recv(&phone_rtp2)(got);
    assert_eq!((&buf[..n], from), (&rtp[..], edge_a), "to the phone's new address");

    // The counters (refreshed every second) tell RTCP from RTP: the SR and the multiplexed RR
    // toward the trunk, the RR toward the phone; one RTP packet each way.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = edge.metrics().await;
    for line in [
        "lifeline_media_packets_total{dir=\"plain_to_callee\",kind=\"rtcp\"} 2\n",
        "lifeline_media_packets_total{dir=\"plain_to_caller\",kind=\"rtcp\"} 1\n",
        "lifeline_media_packets_total{dir=\"plain_to_callee\"} 1\n",
        "lifeline_media_packets_total{dir=\"plain_to_caller\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} {text}");
    }
    edge.stop().await;
}
