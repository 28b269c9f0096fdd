//! The presence server's pure rules: request checks, where NOTIFYs go, what they say, and
//! the tables' bookkeeping.

use std::net::SocketAddr;

use super::*;
use sip::transaction::Transport;

fn request(extra: &str) -> Request {
    let text = format!(
        "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
From: <sip:bob@example.com>;tag=f1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 SUBSCRIBE\r\n\
{extra}Content-Length: 0\r\n\r\n"
    );
    match sip::Message::parse(Bytes::from(text), sip::Framing::Datagram) {
        Ok(sip::Message::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

fn publish(content_type: &str, body: &str) -> Request {
    let text = format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 PUBLISH\r\n\
Event: presence\r\n\
Content-Type: {content_type}\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match sip::Message::parse(Bytes::from(text), sip::Framing::Datagram) {
        Ok(sip::Message::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_presence_package_is_served() {
    assert_eq!(event(&request("Event: presence\r\n")), Ok("presence".to_owned()));
    assert_eq!(event(&request("Event: Presence;id=7\r\n")), Ok("Presence;id=7".to_owned()));
    assert_eq!(event(&request("o: presence\r\n")), Ok("presence".to_owned()), "compact form");
    for bad in ["Event: dialog\r\n", "Event: message-summary\r\n", "Event: presence.winfo\r\n", ""]
    {
        assert_eq!(event(&request(bad)), Err(Refusal::BadEvent), "{bad:?}");
    }
    assert_eq!(Refusal::BadEvent.status(), (489, "Bad Event"));
    assert_eq!(Refusal::BadEvent.headers(), [(HeaderName::AllowEvents, "presence".to_owned())]);
}

#[test]
fn accept_must_allow_pidf() {
    assert!(accepts_pidf(&request("")), "no Accept: PIDF");
    assert!(accepts_pidf(&request("Accept: application/pidf+xml\r\n")));
    assert!(accepts_pidf(&request(
        "Accept: application/xpidf+xml, application/PIDF+xml;q=0.9, multipart/related\r\n"
    )));
    assert!(accepts_pidf(&request("Accept: */*\r\n")));
    assert!(!accepts_pidf(&request("Accept: application/xpidf+xml\r\n")));
    assert!(!accepts_pidf(&request("Accept: text/plain\r\n")));
}

#[test]
fn expires_is_bounded() {
    assert_eq!(expires(&request("")), Ok(DEFAULT_EXPIRES));
    assert_eq!(expires(&request("Expires: 0\r\n")), Ok(0));
    assert_eq!(expires(&request("Expires: 600\r\n")), Ok(600));
    assert_eq!(expires(&request("Expires: 86400\r\n")), Ok(MAX_EXPIRES));
    assert_eq!(expires(&request("Expires: 10\r\n")), Err(Refusal::IntervalTooBrief));
    assert_eq!(expires(&request("Expires: soon\r\n")), Err(Refusal::Bad("Bad Expires")));
    assert_eq!(
        Refusal::IntervalTooBrief.headers(),
        [(HeaderName::MinExpires, MIN_EXPIRES.to_string())]
    );
}

#[test]
fn a_publish_body_must_be_pidf() {
    let pidf = crate::presence::pidf::to_pidf("sip:alice@example.com", &PresenceState::Away);
    assert_eq!(
        published_state(&publish("application/pidf+xml", &pidf)),
        Ok(Some(PresenceState::Away))
    );
    assert_eq!(published_state(&publish("text/plain", "away")), Err(Refusal::UnsupportedMediaType));
    assert_eq!(
        published_state(&publish("application/pidf+xml", "<nope")),
        Err(Refusal::Bad("Malformed PIDF Document"))
    );
    assert_eq!(target_user(&publish("text/plain", "")), Some("alice".to_owned()));
}

fn peer_udp(a: &str) -> Peer {
    Peer::udp(a.parse::<SocketAddr>().unwrap())
}

#[test]
fn notifies_go_over_the_flow_or_to_the_contact() {
    let ws = Peer::stream(Transport::Ws, "127.0.0.1:40000".parse().unwrap(), Some(FlowId(7)));
    // A browser: its flow, whatever the Contact says.
    assert_eq!(notify_peer(ws, "sip:x@abc.invalid;transport=ws", &[]), ws);
    // UDP with an IP Contact: the Contact.
    let from = peer_udp("192.0.2.1:5060");
    assert_eq!(notify_peer(from, "sip:bob@192.0.2.9:5070", &[]), peer_udp("192.0.2.9:5070"));
    // UDP with a name or an outbound Contact: the source address.
    assert_eq!(notify_peer(from, "sip:bob@phone.example.com", &[]), from);
    assert_eq!(notify_peer(from, "sip:bob@192.0.2.9:5070;ob", &[]), from);
    // A route set: its first hop.
    let routes = ["<sip:192.0.2.50:5080;lr>".to_owned()];
    assert_eq!(notify_peer(from, "sip:bob@192.0.2.9", &routes), peer_udp("192.0.2.50:5080"));
    // A TCP Contact without a flow: a new connection.
    let tcp = notify_peer(from, "sip:bob@192.0.2.9:5070;transport=tcp", &[]);
    assert_eq!((tcp.transport, tcp.flow), (Transport::Tcp, None));
}

fn subscription(now: Instant, agent: &str, call: &str) -> Subscription {
    Subscription {
        agent: agent.to_owned(),
        entity: format!("sip:{agent}@example.com"),
        call_id: call.to_owned(),
        local_tag: "ours".to_owned(),
        remote_tag: "theirs".to_owned(),
        local_uri: format!("<sip:{agent}@example.com>"),
        remote_uri: "<sip:bob@example.com>;tag=theirs".to_owned(),
        remote_target: "sip:bob@192.0.2.9:5070".to_owned(),
        route_set: vec!["<sip:192.0.2.50;lr>".to_owned()],
        event: "presence;id=3".to_owned(),
        contact: "<sip:192.0.2.100:5060;transport=udp>".to_owned(),
        local_cseq: 4,
        remote_cseq: 1,
        expires_at: now + Duration::from_secs(600),
        peer: peer_udp("192.0.2.9:5070"),
        in_flight: None,
        dirty: false,
        last_sent: None,
    }
}

#[test]
fn a_notify_is_an_in_dialog_request_with_the_pidf() {
    let now = Instant::now();
    let sub = subscription(now, "alice", "c1");
    let n = notify_request(
        &sub,
        Some(&PresenceState::Dnd),
        SubState::Active,
        now,
        ("UDP", "192.0.2.100:5060"),
        "z9hG4bKn1",
    )
    .unwrap();
    let text = String::from_utf8(n.to_bytes().to_vec()).unwrap();
    assert!(text.starts_with("NOTIFY sip:bob@192.0.2.9:5070 SIP/2.0\r\n"), "{text}");
    for line in [
        "Via: SIP/2.0/UDP 192.0.2.100:5060;branch=z9hG4bKn1",
        "Route: <sip:192.0.2.50;lr>",
        "From: <sip:alice@example.com>;tag=ours",
        "To: <sip:bob@example.com>;tag=theirs",
        "Call-ID: c1",
        "CSeq: 4 NOTIFY",
        "Contact: <sip:192.0.2.100:5060;transport=udp>",
        "Event: presence;id=3",
        "Subscription-State: active;expires=600",
        "Content-Type: application/pidf+xml",
    ] {
        assert!(text.contains(&format!("{line}\r\n")), "{line}\n{text}");
    }
    assert!(text.contains("<dm:note>dnd</dm:note>"), "{text}");
    // It parses as a request of its own (what the subscriber sees).
    assert!(sip::Message::parse(n.to_bytes(), sip::Framing::Datagram).is_ok());

    let end = notify_request(
        &sub,
        None,
        SubState::Terminated(Some("noresource")),
        now,
        ("UDP", "h:1"),
        "b",
    )
    .unwrap();
    let text = String::from_utf8(end.to_bytes().to_vec()).unwrap();
    assert!(text.contains("Subscription-State: terminated;reason=noresource\r\n"), "{text}");
    assert!(text.contains("Content-Length: 0\r\n") && !text.contains("Content-Type"), "{text}");
}

/// A real client key: one from a transaction layer that sent a request.
fn client_key(layer: &mut sip::transaction::TxnLayer, n: u32) -> ClientKey {
    let mut req = Request::new(Method::Options, "sip:192.0.2.9").unwrap();
    let h = req.headers_mut();
    h.push(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.100;branch=z9hG4bKk{n}"));
    h.push(HeaderName::From, "<sip:a@x>;tag=1");
    h.push(HeaderName::To, "<sip:b@x>");
    h.push(HeaderName::CallId, format!("k{n}"));
    h.push(HeaderName::CSeq, "1 OPTIONS");
    layer.send_request(Instant::now(), peer_udp("192.0.2.9:5060"), req).unwrap()
}

#[test]
fn the_subscription_table_keeps_its_indexes() {
    let now = Instant::now();
    let mut layer = sip::transaction::TxnLayer::new(sip::transaction::TxnConfig::default());
    let mut t = Subscriptions::default();
    let a = t.insert(subscription(now, "alice", "c1"));
    let mut second = subscription(now, "alice", "c2");
    second.expires_at = now + Duration::from_secs(60);
    second.peer = Peer::stream(Transport::Ws, "127.0.0.1:4".parse().unwrap(), Some(FlowId(9)));
    let b = t.insert(second);
    let c = t.insert(subscription(now, "bob", "c3"));
    assert_eq!(t.len(), 3);
    assert_eq!(t.find_dialog("c1", "theirs", "ours"), Some(a));
    assert_eq!(t.find_dialog("c1", "theirs", "other"), None);
    assert_eq!(t.of_agent("alice"), [a, b]);
    assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(60)));
    assert_eq!(t.due(now + Duration::from_secs(61)), [b]);

    // A refresh moves the expiry.
    t.set_expiry(b, now + Duration::from_secs(900));
    assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(600)));
    assert!(t.due(now + Duration::from_secs(61)).is_empty());

    // A NOTIFY in flight, answered.
    let key = client_key(&mut layer, 1);
    t.sent(a, key);
    assert!(t.owns(key));
    assert_eq!(t.answered(key), Some(a));
    assert!(!t.owns(key));
    assert_eq!(t.get(a).unwrap().in_flight, None);

    // A connection closing takes its subscriptions.
    assert_eq!(t.remove_flow(FlowId(9)), 1);
    assert_eq!(t.of_agent("alice"), [a]);
    // Removal forgets a NOTIFY in flight.
    let key = client_key(&mut layer, 2);
    t.sent(c, key);
    assert!(t.remove(c).is_some());
    assert!(!t.owns(key));
    assert!(t.of_agent("bob").is_empty());
    assert_eq!(t.len(), 1);
}

#[test]
fn publications_are_found_by_agent_and_etag_while_live() {
    let now = Instant::now();
    let mut p = Publications::default();
    let publication = Publication {
        agent: "alice".to_owned(),
        state: PresenceState::Busy,
        expires_at: now + Duration::from_secs(60),
    };
    p.insert("e1".to_owned(), publication.clone());
    assert_eq!(p.live("e1", "alice", now), Some(&publication));
    assert_eq!(p.live("e1", "bob", now), None, "another agent's etag");
    assert_eq!(p.live("e2", "alice", now), None);
    assert_eq!(p.live("e1", "alice", now + Duration::from_secs(60)), None, "expired");
    assert_eq!(p.expire(now + Duration::from_secs(61)), 1);
    assert!(p.is_empty());
}
