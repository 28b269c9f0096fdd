//! Emergency calls through the running edge, over real UDP sockets on loopback: the agent's
//! INVITE is never challenged, leaves with the leased callback number and the trunk's
//! emergency headers, fails over fast, and a PSAP's call back to the leased number reaches the
//! agent (also after a restart), or the fallback.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::smtp::{Relay, wait_received};
use common::ua::{header, parse_request, uas_response, udp_recv, udp_recv_until};
use common::{Edge, Opts, TRUNK_IP, TempDir};
use tokio::net::UdpSocket;

/// Two direct-offer carriers: `carrier` owns the agents' numbers and wants `esnet.1`;
/// `backup` wants the number in E.164 form. A two-number callback pool, a short failover.
const PLAN: &str = r#"
[[trunk]]
name = "carrier"
kind = "direct-offer"
uri = "sip:127.0.0.2:PRIMARY;transport=udp"
numbers = ["+15550100000-+15550100999"]
emergency = { resource_priority = "esnet.1" }
probe = false

[[trunk]]
name = "backup"
kind = "direct-offer"
uri = "sip:127.0.0.2:SECONDARY;transport=udp"
emergency = { resource_priority = "esnet.0", request_uri = "e164" }
probe = false

[[route]]
pattern = '^\+1[2-9]\d{9}$'
trunks = ["carrier"]

[[inbound]]
did = "+15550100123"
to = "agent:alice"

[emergency]
country = { US = ["911", "933"], PR = ["911", "933"], GB = ["999", "112"] }
callback_pool = ["+15550100900-+15550100901"]
site_number = "+15550100999"
callback_fallback = "agent:bob"
failover_after = "400ms"
"#;

const AGENTS: &str = r#"
[[agent]]
id = "alice"
password = "secret"
caller_id = ["+15550100123"]
capacity = 1
mailbox = "alice@example.com"
emergency_contacts = "security@example.com;manager@example.com"
location = { country = "US", address = "1 Main St, Springfield, IL 62701" }

[[agent]]
id = "bob"
password = "secret"
"#;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

async fn start(data: Option<std::path::PathBuf>, ports: Option<(u16, u16)>) -> Edge {
    start_mailing(data, ports, None).await
}

/// [`start`], with the notification mail going to an SMTP relay on `smtp_port`.
async fn start_mailing(
    data: Option<std::path::PathBuf>,
    ports: Option<(u16, u16)>,
    smtp_port: Option<u16>,
) -> Edge {
    let opts = Opts {
        plan: Some(PLAN.into()),
        seed: Some(AGENTS.into()),
        data,
        trunk_ports: ports,
        ..Opts::default()
    };
    Edge::start_opts(opts, |c| {
        if let Some(port) = smtp_port {
            c.smtp.url = format!("smtp://127.0.0.1:{port}");
        }
    })
    .await
}

/// Waits (up to 5 s) until `agent`'s presence is `state`: the DND of an emergency call is
/// applied off the core's thread.
async fn presence_becomes(edge: &Edge, agent: &str, state: &str) -> serde_json::Value {
    let path = format!("/api/agents/{agent}/presence");
    for _ in 0..100 {
        let (status, body) = edge.api("GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        if body["state"] == state {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{agent}'s presence never became {state}");
}

/// Registers `user` from `sock` over UDP with digest authentication.
async fn register(edge: &Edge, sock: &UdpSocket, user: &str) {
    use sip::digest::{Challenge, respond};
    let me = sock.local_addr().unwrap();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:localhost SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKreg{user}{cseq};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@localhost>\r\n\
From: <sip:{user}@localhost>;tag=reg{user}\r\n\
Call-ID: reg-{user}-{me}\r\n\
CSeq: {cseq} REGISTER\r\n\
{auth}Contact: <sip:{user}@{me}>;expires=600\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    sock.send_to(register(1, "").as_bytes(), edge.udp).await.unwrap();
    let reply = udp_recv_until(sock, "SIP/2.0 401").await;
    let challenge = Challenge::parse(header(&reply, "WWW-Authenticate")[0]).unwrap();
    let auth = respond(&challenge, user, "secret", "REGISTER", "sip:localhost", "c1", 1);
    sock.send_to(register(2, &format!("Authorization: {auth}\r\n")).as_bytes(), edge.udp)
        .await
        .unwrap();
    let reply = udp_recv_until(sock, "SIP/2.0 ").await;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
}

/// An INVITE without credentials from `from` to `ruri`, with an SDP offer.
fn invite(from: SocketAddr, user: &str, ruri: &str, call: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bK{call};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Agent\" <sip:{user}@localhost>;tag=f-{call}\r\n\
To: <{ruri}>\r\n\
Call-ID: {call}@agent\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:{user}@{from}>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// An INVITE from the PSAP's carrier to `did`.
fn psap_invite(from: SocketAddr, did: &str, call: &str) -> String {
    format!(
        "INVITE sip:{did}@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {from};branch=z9hG4bK{call}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12175550911@{from}>;tag=psap-{call}\r\n\
To: <sip:{did}@127.0.0.1>\r\n\
Call-ID: {call}@psap\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:psap@{from}>\r\n\
Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn a_registered_agent_s_911_leaves_with_the_leased_number_and_comes_back_to_her() {
    let mail = TempDir::new("emergency-mail");
    let (relay, smtp_port) = Relay::start_any(&mail.0).await;
    let edge = start_mailing(None, None, Some(smtp_port)).await;
    let carrier = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bob = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    register(&edge, &alice, "alice").await;
    register(&edge, &bob, "bob").await;
    let (status, _) = edge
        .api("PUT", "/api/agents/alice/presence", Some(serde_json::json!({ "state": "away" })))
        .await;
    assert_eq!(status, 200);

    // No credentials, but a live registration on this flow: never challenged.
    let me = alice.local_addr().unwrap();
    alice
        .send_to(invite(me, "alice", "sip:911@localhost", "e1").as_bytes(), edge.udp)
        .await
        .unwrap();
    let first = udp_recv(&alice).await;
    assert!(first.starts_with("SIP/2.0 100 Trying\r\n"), "{first}");

    let at_carrier = udp_recv_until(&carrier, "INVITE ").await;
    let port = edge.trunk_ports.0;

    // Her emergency contacts are told at once (queued before the INVITE left), one mail each,
    // sent as her mailbox through the relay.
    let mails = wait_received(&mail.0, 2, Duration::from_secs(10)).await;
    let mut to: Vec<String> =
        mails.iter().map(|m| m["rcpt_tos"][0].as_str().unwrap().to_owned()).collect();
    to.sort();
    assert_eq!(to, ["manager@example.com", "security@example.com"]);
    for m in &mails {
        assert!(m["from"].as_str().unwrap().contains("alice@example.com"), "{m}");
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("911") && text.contains("+15550100900"), "{text}");
        assert!(!m["subject"].as_str().unwrap().to_lowercase().contains("test"), "{m}");
    }
    assert!(
        at_carrier
            .starts_with(&format!("INVITE sip:911@127.0.0.2:{port};transport=udp SIP/2.0\r\n")),
        "911 stays 911 and goes to the carrier owning alice's number: {at_carrier}"
    );
    assert_eq!(header(&at_carrier, "From"), ["<sip:+15550100900@localhost;user=phone>;tag=f-e1"]);
    assert_eq!(
        header(&at_carrier, "P-Asserted-Identity"),
        ["<sip:+15550100900@localhost;user=phone>"]
    );
    assert_eq!(header(&at_carrier, "Priority"), ["emergency"]);
    assert_eq!(header(&at_carrier, "Resource-Priority"), ["esnet.1"]);
    // The softphone sent no location: the provisioned address goes as a civic PIDF-LO
    // (RFC 4119, RFC 5139) beside the unchanged SDP, referenced by Geolocation (RFC 6442).
    assert!(header(&at_carrier, "Content-Type")[0].starts_with("multipart/mixed"), "{at_carrier}");
    let geo = header(&at_carrier, "Geolocation");
    assert!(geo.len() == 1 && geo[0].starts_with("<cid:"), "{at_carrier}");
    assert!(at_carrier.contains(SDP), "the offer passes unchanged: {at_carrier}");
    assert!(at_carrier.contains("Springfield") && at_carrier.contains(">Manual<"), "{at_carrier}");
    // The dialog is marked so that its BYE takes the priority lane past rate limits.
    let marker = lifeline::core::emergency::route_marker();
    assert!(header(&at_carrier, "Record-Route").iter().any(|r| r.contains(marker)), "{at_carrier}");

    // The carrier answers: alice sees her own From again.
    let inv = parse_request(&at_carrier);
    let invite_ok = uas_response(&inv, 200, "OK", "c1", &format!("<sip:911@127.0.0.2:{port}>"));
    carrier.send_to(invite_ok.as_bytes(), edge.udp).await.unwrap();
    let answer = udp_recv_until(&alice, "SIP/2.0 200").await;
    assert_eq!(header(&answer, "From"), ["\"Agent\" <sip:alice@localhost>;tag=f-e1"], "{answer}");
    // She was away; the call forces DND and saves "away" to come back to.
    let dnd = presence_becomes(&edge, "alice", "dnd").await;
    assert_eq!(dnd["previous"], "away", "{dnd}");

    // She hangs up (BYE along the route set): her presence is "away" again.
    let routes: Vec<&str> = header(&answer, "Record-Route").into_iter().rev().collect();
    let bye = format!(
        "BYE sip:911@127.0.0.2:{port} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKbye1;rport\r\n\
Max-Forwards: 70\r\n\
Route: {}\r\n\
From: \"Agent\" <sip:alice@localhost>;tag=f-e1\r\n\
To: <sip:911@localhost>;tag=c1\r\n\
Call-ID: e1@agent\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n",
        routes.join(", ")
    );
    alice.send_to(bye.as_bytes(), edge.udp).await.unwrap();
    let at_carrier = udp_recv_until(&carrier, "BYE ").await;
    // Her in-dialog requests show the carrier the same From as the INVITE did.
    assert_eq!(header(&at_carrier, "From"), ["<sip:+15550100900@localhost;user=phone>;tag=f-e1"]);
    let ok = uas_response(&parse_request(&at_carrier), 200, "OK", "c1", "<sip:c@127.0.0.2>");
    carrier.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let bye_ok = udp_recv_until(&alice, "SIP/2.0 200").await;
    assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");
    assert_eq!(header(&bye_ok, "From"), ["\"Agent\" <sip:alice@localhost>;tag=f-e1"], "{bye_ok}");
    presence_becomes(&edge, "alice", "away").await;

    // Her ACK comes late, after the BYE (reordered on the way): it still shows the carrier
    // the callback number, not her own address.
    let ack = format!(
        "ACK sip:911@127.0.0.2:{port} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKack1;rport\r\n\
Max-Forwards: 70\r\n\
Route: {}\r\n\
From: \"Agent\" <sip:alice@localhost>;tag=f-e1\r\n\
To: <sip:911@localhost>;tag=c1\r\n\
Call-ID: e1@agent\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n",
        routes.join(", ")
    );
    alice.send_to(ack.as_bytes(), edge.udp).await.unwrap();
    let at_carrier = udp_recv_until(&carrier, "ACK ").await;
    assert_eq!(header(&at_carrier, "From"), ["<sip:+15550100900@localhost;user=phone>;tag=f-e1"]);
    // The carrier's 200 to the INVITE comes again after the BYE (it had not seen the ACK
    // yet): it still reaches her, and her ACK of it the carrier.
    carrier.send_to(invite_ok.as_bytes(), edge.udp).await.unwrap();
    let again = udp_recv_until(&alice, "SIP/2.0 200").await;
    assert!(again.contains("CSeq: 1 INVITE"), "{again}");
    alice.send_to(ack.replace("z9hG4bKack1", "z9hG4bKack2").as_bytes(), edge.udp).await.unwrap();
    let at_carrier = udp_recv_until(&carrier, "ACK ").await;
    assert_eq!(header(&at_carrier, "From"), ["<sip:+15550100900@localhost;user=phone>;tag=f-e1"]);
    // The call is over: her presence stays as it came back.
    assert_eq!(presence_becomes(&edge, "alice", "away").await["state"], "away");

    // A second emergency call renews the same lease and stays up.
    alice
        .send_to(invite(me, "alice", "sip:911@localhost", "e2").as_bytes(), edge.udp)
        .await
        .unwrap();
    let at_carrier = udp_recv_until(&carrier, "INVITE ").await;
    assert_eq!(header(&at_carrier, "From"), ["<sip:+15550100900@localhost;user=phone>;tag=f-e2"]);
    let ok = uas_response(
        &parse_request(&at_carrier),
        200,
        "OK",
        "c2",
        &format!("<sip:911@127.0.0.2:{port}>"),
    );
    carrier.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(&alice, "SIP/2.0 200").await;
    presence_becomes(&edge, "alice", "dnd").await;

    // The lease is listed for the operator.
    let (status, leases) = edge.api("GET", "/api/callbacks", None).await;
    assert_eq!(status, 200);
    assert_eq!(leases[0]["did"], "+15550100900", "{leases}");
    assert_eq!(leases[0]["agent"], "alice", "{leases}");
    assert!(leases[0]["expires_at"].as_str().unwrap().ends_with('Z'), "{leases}");

    // The PSAP calls the callback number back: alice rings, with RFC 7090's priority,
    // although she is on a call.
    let from = carrier.local_addr().unwrap();
    carrier.send_to(psap_invite(from, "+15550100900", "cb1").as_bytes(), edge.udp).await.unwrap();
    let at_alice = udp_recv_until(&alice, "INVITE ").await;
    assert!(at_alice.starts_with(&format!("INVITE sip:alice@{me} SIP/2.0\r\n")), "{at_alice}");
    assert_eq!(header(&at_alice, "Priority"), ["psap-callback"]);

    // A call to the other pool number (never leased) goes to the fallback: bob.
    carrier.send_to(psap_invite(from, "+15550100901", "cb2").as_bytes(), edge.udp).await.unwrap();
    let at_bob = udp_recv_until(&bob, "INVITE ").await;
    assert!(at_bob.contains("Call-ID: cb2@psap\r\n"), "{at_bob}");

    // A crash mid-call: the lease was written before the INVITE left, so after a restart the
    // PSAP's call still reaches alice (once her softphone has registered again), and the DND
    // the call forced goes back to what it was.
    let ports = edge.trunk_ports;
    let data = edge.kill().await;
    drop(carrier);
    let edge = start_mailing(Some(data), Some(ports), Some(smtp_port)).await;
    let carrier = UdpSocket::bind((TRUNK_IP, ports.0)).await.unwrap();
    register(&edge, &alice, "alice").await;
    presence_becomes(&edge, "alice", "away").await;
    let from = carrier.local_addr().unwrap();
    carrier.send_to(psap_invite(from, "+15550100900", "cb3").as_bytes(), edge.udp).await.unwrap();
    let at_alice = udp_recv_until(&alice, "INVITE ").await;
    assert!(at_alice.contains("Call-ID: cb3@psap\r\n"), "{at_alice}");
    assert_eq!(header(&at_alice, "Priority"), ["psap-callback"]);
    edge.stop().await;
    relay.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_933_is_routed_with_the_site_number_and_fails_over_fast() {
    let edge = start(None, None).await;
    let carrier = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let backup = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.1)).await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = stranger.local_addr().unwrap();
    stranger
        .send_to(
            invite(me, "mallory", "tel:933", "u1")
                .replace("INVITE tel:933", "INVITE sip:933@localhost")
                .as_bytes(),
            edge.udp,
        )
        .await
        .unwrap();
    assert!(udp_recv(&stranger).await.starts_with("SIP/2.0 100 Trying\r\n"), "never 407");

    // The carrier stays silent: after failover_after the backup gets the call, in E.164 form.
    let at_carrier = udp_recv_until(&carrier, "INVITE ").await;
    assert!(at_carrier.starts_with("INVITE sip:933@"), "933 stays 933: {at_carrier}");
    assert_eq!(header(&at_carrier, "From"), ["<sip:+15550100999@localhost;user=phone>;tag=f-u1"]);
    let started = std::time::Instant::now();
    let at_backup = udp_recv_until(&backup, "INVITE ").await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "failover took {waited:?}");
    let port = edge.trunk_ports.1;
    assert!(
        at_backup
            .starts_with(&format!("INVITE sip:+1933@127.0.0.2:{port};transport=udp SIP/2.0\r\n")),
        "{at_backup}"
    );
    assert_eq!(header(&at_backup, "Resource-Priority"), ["esnet.0"]);

    // The backup refuses globally: every trunk had its chance, the caller hears the refusal.
    let inv = parse_request(&at_backup);
    let no = uas_response(&inv, 603, "Decline", "b1", "<sip:b@127.0.0.2>");
    backup.send_to(no.as_bytes(), edge.udp).await.unwrap();
    let answer = udp_recv_until(&stranger, "SIP/2.0 6").await;
    assert!(answer.starts_with("SIP/2.0 603 Decline\r\n"), "{answer}");
    edge.stop().await;
}

#[tokio::test]
async fn no_trunk_reachable_is_a_fast_503_that_says_so() {
    let edge = start(None, None).await;
    // Both carriers are bound but mute.
    let _carrier = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let _backup = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.1)).await.unwrap();
    let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    register(&edge, &alice, "alice").await;
    let me = alice.local_addr().unwrap();
    alice
        .send_to(invite(me, "alice", "sip:9911@localhost", "n1").as_bytes(), edge.udp)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = udp_recv_until(&alice, "SIP/2.0 5").await;
    assert!(started.elapsed() < Duration::from_secs(3), "not Timer B: {:?}", started.elapsed());
    assert!(answer.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{answer}");
    assert!(header(&answer, "Warning")[0].contains("No emergency trunk reachable"), "{answer}");
    assert!(header(&answer, "Reason")[0].starts_with("SIP;cause=503"), "{answer}");
    // However the call ends, DND ends with it: a failed call too.
    let back = presence_becomes(&edge, "alice", "available").await;
    assert_eq!(back["previous"], serde_json::Value::Null, "{back}");
    edge.stop().await;
}

#[tokio::test]
async fn an_agent_at_capacity_gets_no_ordinary_call_but_the_psap_still_reaches_her() {
    let edge = start(None, None).await;
    let carrier = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    register(&edge, &alice, "alice").await;
    let me = alice.local_addr().unwrap();
    let port = edge.trunk_ports.0;

    // Her 911 call is answered: with a capacity of 1 she is now busy.
    alice
        .send_to(invite(me, "alice", "sip:911@localhost", "k1").as_bytes(), edge.udp)
        .await
        .unwrap();
    let at_carrier = udp_recv_until(&carrier, "INVITE ").await;
    let ok = uas_response(
        &parse_request(&at_carrier),
        200,
        "OK",
        "k1",
        &format!("<sip:911@127.0.0.2:{port}>"),
    );
    carrier.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(&alice, "SIP/2.0 200").await;

    // An ordinary call to her DID is refused busy...
    let from = carrier.local_addr().unwrap();
    carrier.send_to(psap_invite(from, "+15550100123", "busy1").as_bytes(), edge.udp).await.unwrap();
    let busy = udp_recv_until(&carrier, "SIP/2.0 4").await;
    assert!(busy.starts_with("SIP/2.0 486 Busy Here\r\n"), "{busy}");

    // ...but the PSAP's call to her callback number rings her, past capacity and DND.
    carrier.send_to(psap_invite(from, "+15550100900", "cb9").as_bytes(), edge.udp).await.unwrap();
    let at_alice = udp_recv_until(&alice, "INVITE ").await;
    assert!(at_alice.contains("Call-ID: cb9@psap\r\n"), "{at_alice}");
    edge.stop().await;
}

/// Capacity counts a call from its 2xx to its BYE: the callee's 2xx retransmitted after the
/// BYE (its INVITE transaction lives on for Timer M) must not count her busy again.
#[tokio::test]
async fn a_2xx_retransmitted_after_the_bye_leaves_the_agent_free() {
    let edge = start(None, None).await;
    let carrier = UdpSocket::bind((TRUNK_IP, edge.trunk_ports.0)).await.unwrap();
    let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    register(&edge, &alice, "alice").await;
    let me = alice.local_addr().unwrap();
    let from = carrier.local_addr().unwrap();

    // A call to her DID; she answers (capacity 1: she is busy now).
    carrier.send_to(psap_invite(from, "+15550100123", "d1").as_bytes(), edge.udp).await.unwrap();
    let at_alice = udp_recv_until(&alice, "INVITE ").await;
    let inv = parse_request(&at_alice);
    let ok = uas_response(&inv, 200, "OK", "a1", &format!("<sip:alice@{me}>"));
    alice.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(&carrier, "SIP/2.0 200").await;

    // She hangs up along the route set; the carrier answers the BYE.
    let routes = header(&at_alice, "Record-Route").join(", ");
    let bye = format!(
        "BYE sip:psap@{from} SIP/2.0\r\n\
Via: SIP/2.0/UDP {me};branch=z9hG4bKbyeA;rport\r\n\
Max-Forwards: 70\r\n\
Route: {routes}\r\n\
From: <sip:+15550100123@127.0.0.1>;tag=a1\r\n\
To: <sip:+12175550911@{from}>;tag=psap-d1\r\n\
Call-ID: d1@psap\r\n\
CSeq: 1 BYE\r\n\
Content-Length: 0\r\n\r\n"
    );
    alice.send_to(bye.as_bytes(), edge.udp).await.unwrap();
    let at_carrier = udp_recv_until(&carrier, "BYE ").await;
    let bye_ok = uas_response(&parse_request(&at_carrier), 200, "OK", "psap-d1", "<sip:c@x>");
    carrier.send_to(bye_ok.as_bytes(), edge.udp).await.unwrap();
    udp_recv_until(&alice, "SIP/2.0 200").await;

    // Her 2xx to the INVITE comes again (she had not seen the ACK): relayed, nothing more.
    alice.send_to(ok.as_bytes(), edge.udp).await.unwrap();
    let again = udp_recv_until(&carrier, "SIP/2.0 200").await;
    assert!(again.contains("CSeq: 1 INVITE"), "{again}");

    // She is free: the next call to her DID rings her instead of 486.
    carrier.send_to(psap_invite(from, "+15550100123", "d2").as_bytes(), edge.udp).await.unwrap();
    let next = udp_recv_until(&alice, "INVITE ").await;
    assert!(next.contains("Call-ID: d2@psap\r\n"), "{next}");
    edge.stop().await;
}

#[tokio::test]
async fn another_country_s_emergency_number_is_an_ordinary_call_authenticated_once() {
    use sip::digest::{Challenge, respond};
    // alice is in the US: 999 (GB's) is an ordinary number for her. Her credentials are checked
    // once (the emergency check saw them first; a second check would be a replay: 403).
    let edge = start(None, None).await;
    let alice = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    register(&edge, &alice, "alice").await;
    let me = alice.local_addr().unwrap();
    alice
        .send_to(invite(me, "alice", "sip:999@localhost", "gb1").as_bytes(), edge.udp)
        .await
        .unwrap();
    let challenge = udp_recv_until(&alice, "SIP/2.0 407").await;
    let ch = Challenge::parse(header(&challenge, "Proxy-Authenticate")[0]).unwrap();
    let auth = respond(&ch, "alice", "secret", "INVITE", "sip:999@localhost", "cn", 1);
    let again = invite(me, "alice", "sip:999@localhost", "gb2").replace(
        "CSeq: 1 INVITE\r\n",
        &format!("CSeq: 1 INVITE\r\nProxy-Authorization: {auth}\r\n"),
    );
    alice.send_to(again.as_bytes(), edge.udp).await.unwrap();
    let answer = udp_recv_until(&alice, "SIP/2.0 4").await;
    assert!(answer.starts_with("SIP/2.0 404 No Route\r\n"), "{answer}");
    edge.stop().await;
}
