//! Table tests of the registrar rules (RFC 3261 §10.3, RFC 5626).

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::transaction::{FlowId, Peer, Transport};
use sip::{Framing, HeaderName, Message, Request};

use super::*;

fn register(contact: &str, extra: &str, call_id: &str, cseq: u32) -> Request {
    let text = format!(
        "REGISTER sip:cc.example.com SIP/2.0\r\n\
Via: SIP/2.0/WSS k3vq8d0h2m1a.invalid;branch=z9hG4bK{cseq}{call_id}\r\n\
Max-Forwards: 70\r\n\
To: <sip:alice@cc.example.com>\r\n\
From: <sip:alice@cc.example.com>;tag=t1\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n\
{contact}{extra}\
Content-Length: 0\r\n\r\n"
    );
    match Message::parse(Bytes::from(text), Framing::Datagram) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

fn ws_peer(flow: u64) -> Peer {
    Peer::stream(Transport::Wss, "192.0.2.7:50000".parse().unwrap(), Some(FlowId(flow)))
}

fn udp_peer() -> Peer {
    Peer::udp("192.0.2.8:5060".parse().unwrap())
}

const JSSIP: &str = "Contact: <sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:6f1c2b9e-3d4a-4e8b-9c1f-2a7d5e0b8c43>\";expires=600\r\n";

fn contacts(r: &Response) -> Vec<String> {
    r.headers()
        .get_all(HeaderName::Contact)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn browser_registration_binds_to_its_flow() {
    let policy = Policy::new("cc.example.com");
    let mut loc = Location::new();
    let now = Instant::now();
    let ok =
        loc.register(now, &register(JSSIP, "", "c1", 1), ws_peer(7), "alice", &policy).unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(contacts(&ok), ["<sip:r2u7lq5c@k3vq8d0h2m1a.invalid;transport=ws>;expires=600"]);
    assert_eq!(ok.headers().get(HeaderName::Require), Some(&b"outbound"[..]));
    let b = loc.lookup(now, "alice");
    assert_eq!(b.len(), 1);
    assert!(b[0].via_flow);
    assert_eq!(b[0].source.flow, Some(FlowId(7)));
    assert_eq!(b[0].instance.as_deref(), Some("urn:uuid:6f1c2b9e-3d4a-4e8b-9c1f-2a7d5e0b8c43"));

    // The same instance and reg-id from a new connection replaces the binding (RFC 5626 §6).
    let again = register(&JSSIP.replace("r2u7lq5c", "zz99"), "", "c1", 2);
    loc.register(now, &again, ws_peer(8), "alice", &policy).unwrap();
    let b = loc.lookup(now, "alice");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source.flow, Some(FlowId(8)));

    // Its connection closing takes the binding with it.
    assert_eq!(loc.remove_flow(FlowId(7)), 0);
    assert_eq!(loc.remove_flow(FlowId(8)), 1);
    assert!(loc.lookup(now, "alice").is_empty());
}

#[test]
fn expiry_rules() {
    let policy = Policy::new("cc.example.com");
    let mut loc = Location::new();
    let now = Instant::now();
    let c = "Contact: <sip:alice@192.0.2.8:5060>\r\n";
    // No expiry asked: the default; Expires header applies when the contact has none.
    loc.register(now, &register(c, "", "a", 1), udp_peer(), "alice", &policy).unwrap();
    assert_eq!(loc.lookup(now, "alice")[0].remaining(now), 3600);
    loc.register(now, &register(c, "Expires: 120\r\n", "a", 2), udp_peer(), "alice", &policy)
        .unwrap();
    assert_eq!(loc.lookup(now, "alice")[0].remaining(now), 120);
    // Too short: 423 with Min-Expires.
    let short = register(c, "Expires: 10\r\n", "a", 3);
    let err = loc.register(now, &short, udp_peer(), "alice", &policy).unwrap_err();
    assert_eq!(err, RegisterError::IntervalTooBrief { min: 60 });
    let resp = err.response(&short);
    assert_eq!(resp.status(), 423);
    assert_eq!(resp.headers().get(HeaderName::MinExpires), Some(&b"60"[..]));
    // Too long: capped.
    loc.register(now, &register(c, "Expires: 999999\r\n", "a", 4), udp_peer(), "alice", &policy)
        .unwrap();
    assert_eq!(loc.lookup(now, "alice")[0].remaining(now), 7200);
    // A UDP contact with a reachable address is reached at that address.
    assert!(!loc.lookup(now, "alice")[0].via_flow);
    // Time passes: gone.
    assert!(loc.lookup(now + Duration::from_secs(7201), "alice").is_empty());
    assert_eq!(loc.expire(now + Duration::from_secs(7201)), 1);
    assert!(loc.is_empty());
}

#[test]
fn unregister_one_and_star() {
    let policy = Policy::new("cc.example.com");
    let mut loc = Location::new();
    let now = Instant::now();
    let two = "Contact: <sip:alice@192.0.2.8:5060>;q=0.5, <sip:alice@192.0.2.9:5060>;q=0.9\r\n";
    let ok = loc.register(now, &register(two, "", "b", 1), udp_peer(), "alice", &policy).unwrap();
    assert_eq!(contacts(&ok).len(), 2);
    // Best q first.
    assert_eq!(loc.lookup(now, "alice")[0].contact, "sip:alice@192.0.2.9:5060");
    // expires=0 on one contact removes it.
    let one = "Contact: <sip:alice@192.0.2.9:5060>;expires=0\r\n";
    loc.register(now, &register(one, "", "b", 2), udp_peer(), "alice", &policy).unwrap();
    assert_eq!(loc.lookup(now, "alice").len(), 1);
    // `*` with a non-zero expiry is refused; with Expires: 0 it clears everything.
    let star_bad = register("Contact: *\r\n", "", "b", 3);
    assert!(matches!(
        loc.register(now, &star_bad, udp_peer(), "alice", &policy),
        Err(RegisterError::BadContact(_))
    ));
    let star = register("Contact: *\r\n", "Expires: 0\r\n", "b", 4);
    let ok = loc.register(now, &star, udp_peer(), "alice", &policy).unwrap();
    assert!(contacts(&ok).is_empty());
    assert!(loc.lookup(now, "alice").is_empty());
}

#[test]
fn out_of_order_requests_change_nothing() {
    let policy = Policy::new("cc.example.com");
    let mut loc = Location::new();
    let now = Instant::now();
    let c = "Contact: <sip:alice@192.0.2.8:5060>\r\n";
    loc.register(now, &register(c, "Expires: 300\r\n", "x", 5), udp_peer(), "alice", &policy)
        .unwrap();
    // An older CSeq on the same Call-ID (a delayed retransmission) is ignored.
    let old = register(c, "Expires: 0\r\n", "x", 4);
    loc.register(now, &old, udp_peer(), "alice", &policy).unwrap();
    assert_eq!(loc.lookup(now, "alice").len(), 1);
}

#[test]
fn refusals() {
    let policy = Policy::new("cc.example.com");
    let mut loc = Location::new();
    let now = Instant::now();
    let c = "Contact: <sip:alice@192.0.2.8:5060>\r\n";
    // Another user may not register alice.
    let r = register(c, "", "f", 1);
    assert_eq!(
        loc.register(now, &r, udp_peer(), "bob", &policy).err(),
        Some(RegisterError::Forbidden)
    );
    // Another domain.
    let other = Policy::new("other.example.com");
    assert_eq!(
        loc.register(now, &r, udp_peer(), "alice", &other).err(),
        Some(RegisterError::NotOurDomain)
    );
    // An unknown Require option: 420 naming it.
    let req = register(c, "Require: frobnication\r\n", "f", 2);
    let err = loc.register(now, &req, udp_peer(), "alice", &policy).unwrap_err();
    assert_eq!(err.response(&req).status(), 420);
    assert_eq!(
        err.response(&req).headers().get(HeaderName::Unsupported),
        Some(&b"frobnication"[..])
    );
    // RFC 4475 regbadct: a Contact URI with headers outside <> is a 400.
    let bad =
        register("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n", "", "f", 3);
    assert!(matches!(
        loc.register(now, &bad, udp_peer(), "alice", &policy),
        Err(RegisterError::BadContact(_))
    ));
    // Too many bindings.
    let small = Policy { max_bindings: 1, ..Policy::new("cc.example.com") };
    loc.register(now, &register(c, "", "g", 1), udp_peer(), "alice", &small).unwrap();
    let second = register("Contact: <sip:alice@192.0.2.99>\r\n", "", "g", 2);
    assert_eq!(
        loc.register(now, &second, udp_peer(), "alice", &small).err(),
        Some(RegisterError::TooManyBindings)
    );
}
