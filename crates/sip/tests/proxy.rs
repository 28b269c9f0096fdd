//! The proxy rules of RFC 3261 §16, scenario by scenario (RFC 3261 §16.12.1 examples, RFC 5658
//! double Record-Route, a JsSIP call over WSS toward a UDP trunk byte for byte).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use sip::header::typed::Via;
use sip::proxy::{
    self, Admitted, Branch, Dropped, HopHost, ListenAddr, LocalIdentity, NextHop, Outcome,
    RecordRoute, Reject, ReplyTo, Resolve, ResponseContext, Transport, Upstream, Verdict,
};
use sip::{Framing, HeaderName, Message, Method, Request, Response};

// --- helpers ---------------------------------------------------------------------------------

fn request(s: &str) -> Request {
    match Message::parse(Bytes::copy_from_slice(s.as_bytes()), Framing::Datagram) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn response(s: &str) -> Response {
    match Message::parse(Bytes::copy_from_slice(s.as_bytes()), Framing::Datagram) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).expect("SIP text is UTF-8 here")
}

fn wss() -> ListenAddr {
    ListenAddr::new(Transport::Wss, "edge.example.com", 443).expect("valid host")
}

fn udp() -> ListenAddr {
    ListenAddr::new(Transport::Udp, "203.0.113.5", 5060).expect("valid host")
}

fn tcp() -> ListenAddr {
    ListenAddr::new(Transport::Tcp, "203.0.113.5", 5060).expect("valid host")
}

fn udp6() -> ListenAddr {
    ListenAddr::new(Transport::Udp, "2001:db8::5", 5060).expect("valid host")
}

/// The edge: browsers on WSS, trunks on UDP/TCP (v4 and v6), serving `edge.example.com`.
fn edge() -> LocalIdentity {
    LocalIdentity::new(vec![wss(), udp(), tcp(), udp6()])
        .with_domain("edge.example.com")
        .expect("valid domain")
        .with_proxy_option("sec-agree")
}

fn admit(req: &Request, local: &LocalIdentity) -> Admitted {
    match proxy::validate(req, local) {
        Ok(Verdict::Forward(a)) => a,
        other => panic!("not admitted: {other:?}"),
    }
}

fn header(req: &Request, name: HeaderName) -> Vec<String> {
    req.headers().get_all(name).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

/// Forwards `req` (already preprocessed) to `target` from `outbound`, fork 0.
fn forward(
    req: &Request,
    local: &LocalIdentity,
    target: Option<&str>,
    rr: Option<&RecordRoute<'_>>,
) -> (Request, NextHop) {
    let admitted = admit(req, local);
    let prepared = proxy::prepare(req, &admitted, target).expect("prepared");
    let hop = prepared.next_hop().clone();
    let out = local.outbound_for(&hop).expect("an address for the hop").clone();
    (prepared.finish(&out, 0, rr), hop)
}

fn simple(method: &str, uri: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1\r\n\
{extra}\
From: <sip:carol@example.org>;tag=f1\r\n\
To: <sip:bob@example.org>\r\n\
Call-ID: loop-1@192.0.2.10\r\n\
CSeq: 7 {method}\r\n\
Content-Length: 0\r\n\
\r\n"
    )
}

// --- §16.3 step 3: Max-Forwards --------------------------------------------------------------

/// What validation should say about a request.
#[derive(Debug)]
enum Expect {
    /// Forwarded with this Max-Forwards.
    Forward(&'static str),
    /// Refused with this status.
    Reject(u16),
    /// Answered by the proxy itself.
    AnswerOptions,
}

#[test]
fn max_forwards_table() {
    use Expect::*;
    let local = edge();
    #[rustfmt::skip]
    let cases = [
        ("INVITE", "sip:bob@example.org", "", Forward("70")),
        ("INVITE", "sip:bob@example.org", "Max-Forwards: 5\r\n", Forward("4")),
        ("INVITE", "sip:bob@example.org", "Max-Forwards: 1\r\n", Forward("0")),
        ("INVITE", "sip:bob@example.org", "Max-Forwards: 0\r\n", Reject(483)),
        ("OPTIONS", "sip:bob@example.org", "Max-Forwards: 0\r\n", Reject(483)),
        // Addressed to the proxy: by address (the port defaults to 5060), or by served domain.
        ("OPTIONS", "sip:203.0.113.5", "Max-Forwards: 0\r\n", AnswerOptions),
        ("OPTIONS", "sip:edge.example.com", "Max-Forwards: 0\r\n", AnswerOptions),
        // A user at our domain is not the proxy.
        ("OPTIONS", "sip:alice@edge.example.com", "Max-Forwards: 0\r\n", Reject(483)),
        ("OPTIONS", "sip:203.0.113.5", "Max-Forwards: 3\r\n", Forward("2")),
    ];
    for (method, uri, mf, expected) in cases {
        let req = request(&simple(method, uri, mf));
        let verdict = proxy::validate(&req, &local);
        match expected {
            AnswerOptions => assert_eq!(verdict, Ok(Verdict::AnswerOptions), "{method} {uri} {mf}"),
            Reject(status) => {
                let reject = verdict.unwrap_err();
                assert_eq!(reject.status(), status, "{method} {uri} {mf}");
                let resp = reject.response(&req, "px1").unwrap();
                assert_eq!((resp.status(), resp.reason()), (483, "Too Many Hops"));
                assert_eq!(resp.headers().to().unwrap().tag(), Some("px1"));
            }
            Forward(outgoing) => {
                let Ok(Verdict::Forward(admitted)) = verdict else {
                    panic!("{method} {uri} {mf}: {verdict:?}")
                };
                let prepared = proxy::prepare(&req, &admitted, None).unwrap();
                assert_eq!(
                    header(prepared.request(), HeaderName::MaxForwards),
                    [outgoing],
                    "{method} {uri} {mf}"
                );
            }
        }
    }
}

// --- §16.3 step 4: loops and spirals ---------------------------------------------------------

/// The request as it arrives back at the proxy after `hops` other proxies, each adding a Via
/// whose branch is new for every request it relays (as a real proxy's is).
fn come_back(forwarded: &Request, hops: &[&str]) -> Request {
    let mut back = request(&text(&forwarded.to_bytes()));
    for h in hops {
        let tag = h.replace([':', '.'], "-");
        let below =
            back.headers().top_via().ok().and_then(|v| v.branch()).unwrap_or("").replace('.', "-");
        back.headers_mut()
            .prepend(HeaderName::Via, format!("SIP/2.0/UDP {h};branch=z9hG4bK-{tag}-{below}"));
    }
    back
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop() {
    let local = edge();
    let req = request(&simple("INVITE", "sip:bob@example.org", "Max-Forwards: 70\r\n"));
    // Forwarded as it is (say example.org resolves back to us).
    let (f1, _) = forward(&req, &local, None, None);
    for hops in [&[][..], &["198.51.100.9:5060"], &["198.51.100.9", "198.51.100.10"]] {
        let back = come_back(&f1, hops);
        assert_eq!(proxy::validate(&back, &local), Err(Reject::LoopDetected), "{hops:?}");
        let resp = Reject::LoopDetected.response(&back, "t").unwrap();
        assert_eq!((resp.status(), resp.reason()), (482, "Loop Detected"));
    }
}

#[test]
fn a_retargeted_request_spirals_then_loops_if_it_comes_back_again() {
    let local = edge();
    let req = request(&simple("INVITE", "sip:alice@edge.example.com", "Max-Forwards: 70\r\n"));
    let first = admit(&req, &local);
    assert!(!first.spiral);
    // To an application server, which sends it back with a new Request-URI: a spiral.
    let (to_app, _) = forward(&req, &local, Some("sip:app@192.0.2.50:5060"), None);
    let mut retargeted = come_back(&to_app, &["192.0.2.50:5060"]);
    retargeted.set_uri("sip:alice-desk@edge.example.com").unwrap();
    let second = admit(&retargeted, &local);
    assert!(second.spiral);
    assert_ne!(first.branch(0), second.branch(0));

    // The same copy back unchanged: the Request-URI is not the one the first pass saw, so it
    // is still a spiral...
    let back = come_back(&to_app, &["192.0.2.50:5060"]);
    let again = admit(&back, &local);
    assert!(again.spiral);
    // ...forwarded the same way once more, it comes back identical: a loop.
    let prepared = proxy::prepare(&back, &again, Some("sip:app@192.0.2.50:5060")).unwrap();
    let f2 = prepared.finish(&udp(), 0, None);
    let back2 = come_back(&f2, &["192.0.2.50:5060"]);
    assert_eq!(proxy::validate(&back2, &local), Err(Reject::LoopDetected));
}

#[test]
fn a_changed_route_set_or_proxy_authorization_is_a_spiral() {
    let local = edge();
    let req = request(&simple("INVITE", "sip:bob@example.org", ""));
    let (f1, _) = forward(&req, &local, None, None);
    let mut with_route = come_back(&f1, &["198.51.100.9"]);
    with_route.headers_mut().push(HeaderName::Route, "<sip:198.51.100.30;lr>");
    assert!(admit(&with_route, &local).spiral);
    let mut with_auth = come_back(&f1, &["198.51.100.9"]);
    with_auth.headers_mut().push(HeaderName::ProxyAuthorization, "Digest username=\"carol\"");
    assert!(admit(&with_auth, &local).spiral);
    // Another node's Via with a branch of our format is not ours.
    let other =
        LocalIdentity::new(vec![ListenAddr::new(Transport::Udp, "198.51.100.99", 5060).unwrap()]);
    assert!(!admit(&come_back(&f1, &[]), &other).spiral);
}

#[test]
fn branches_are_unique_per_transaction_and_fork() {
    let local = edge();
    let invite = request(&simple("INVITE", "sip:bob@example.org", ""));
    let a = admit(&invite, &local);
    assert_ne!(a.branch(0), a.branch(1));
    assert!(a.branch(0).same_request(&a.branch(1)));
    assert_eq!(a.branch(1).index(), 1);
    // The ACK of a 2xx shares Call-ID, tags, CSeq number and Request-URI but not its top Via.
    let ack = request(&simple("ACK", "sip:bob@example.org", "").replace("z9hG4bKc1", "z9hG4bKc2"));
    assert!(!admit(&ack, &local).branch(0).same_request(&a.branch(0)));
    let s = a.branch(0).to_string();
    assert!(s.starts_with("z9hG4bKlf") && s.ends_with(".0"), "{s}");
    assert_eq!(Branch::parse(&s), Some(a.branch(0)));
}

// --- §16.3 steps 2 and 5: URI scheme, Proxy-Require ------------------------------------------

#[test]
fn uri_schemes() {
    let local = edge();
    for (uri, ok) in [
        ("sip:bob@example.org", true),
        ("sips:bob@example.org", true),
        ("tel:+15550100123", true),
        ("urn:service:sos", true),
        ("http://example.org/bob", false),
    ] {
        let req = request(&simple("INVITE", uri, ""));
        match proxy::validate(&req, &local) {
            Ok(Verdict::Forward(_)) => assert!(ok, "{uri}"),
            Err(r) => {
                assert!(!ok, "{uri}");
                assert_eq!((r.status(), &*r.reason()), (416, "Unsupported URI Scheme"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn proxy_require() {
    let local = edge();
    let req = request(&simple(
        "INVITE",
        "sip:bob@example.org",
        "Proxy-Require: sec-agree, foo\r\nProxy-Require: BAR\r\n",
    ));
    let reject = proxy::validate(&req, &local).unwrap_err();
    assert_eq!(reject, Reject::BadExtension(vec!["foo".into(), "BAR".into()]));
    let resp = reject.response(&req, "t9").unwrap();
    assert_eq!((resp.status(), resp.reason()), (420, "Bad Extension"));
    assert_eq!(resp.headers().get(HeaderName::Unsupported), Some(&b"foo, BAR"[..]));
    // Understood options pass; ACK and CANCEL are not checked (and ACK is never answered).
    let ok = request(&simple("INVITE", "sip:bob@example.org", "Proxy-Require: SEC-AGREE\r\n"));
    admit(&ok, &local);
    let cancel = request(&simple("CANCEL", "sip:bob@example.org", "Proxy-Require: foo\r\n"));
    admit(&cancel, &local);
    let ack = request(&simple("ACK", "sip:bob@example.org", "Max-Forwards: 0\r\n"));
    let reject = proxy::validate(&ack, &local).unwrap_err();
    assert_eq!(reject, Reject::TooManyHops);
    assert!(reject.response(&ack, "t").is_none());
}

#[test]
fn reject_statuses() {
    let cases = [
        (Reject::UnsupportedUriScheme, 416, "Unsupported URI Scheme"),
        (Reject::BadRequestUri, 400, "Bad Request-URI"),
        (Reject::TooManyHops, 483, "Too Many Hops"),
        (Reject::LoopDetected, 482, "Loop Detected"),
        (Reject::BadExtension(vec!["x".into()]), 420, "Bad Extension"),
        (Reject::Malformed(HeaderName::Route), 400, "Bad Route"),
        (Reject::UnsupportedTransport, 400, "Unsupported Transport"),
    ];
    for (r, status, reason) in cases {
        assert_eq!((r.status(), &*r.reason()), (status, reason));
        assert_eq!(r.to_string(), format!("{status} {reason}"));
    }
}

// --- §18.2.1 and RFC 3581: the incoming top Via ----------------------------------------------

#[test]
fn fix_top_via_table() {
    let src4: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let src6: SocketAddr = "[2001:db8::9]:5070".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:198.51.100.7]:40000".parse().unwrap();
    let cases: &[(&str, SocketAddr, &str)] = &[
        // Sent-by is the source address: untouched.
        (
            "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1",
            src4,
            "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1",
        ),
        (
            "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1",
            mapped,
            "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1",
        ),
        // Another address, or a name: received.
        (
            "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1",
            src4,
            "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;received=198.51.100.7",
        ),
        (
            "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK1",
            src4,
            "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK1;received=198.51.100.7",
        ),
        // rport asked for: filled in, and received even when equal (RFC 3581 §4).
        (
            "Via: SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK1",
            src4,
            "Via: SIP/2.0/UDP 10.0.0.2:5060;rport=40000;branch=z9hG4bK1;received=198.51.100.7",
        ),
        (
            "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport",
            src4,
            "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.7",
        ),
        // A stale received is replaced in place.
        (
            "Via: SIP/2.0/UDP 10.0.0.2;received=10.9.9.9;branch=z9hG4bK1",
            src4,
            "Via: SIP/2.0/UDP 10.0.0.2;received=198.51.100.7;branch=z9hG4bK1",
        ),
        // IPv6: the received value is written without brackets (RFC 3261 §20.42, RFC 5118).
        (
            "Via: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK1",
            src6,
            "Via: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK1;received=2001:db8::9",
        ),
        (
            "Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK1",
            src6,
            "Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK1",
        ),
        // Compact form with two elements on one line: only the first changes; the name stays
        // as written.
        (
            "v: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK0",
            src4,
            "v: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK1;received=198.51.100.7, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK0",
        ),
    ];
    for (via, source, expected) in cases {
        let raw = format!(
            "OPTIONS sip:bob@example.org SIP/2.0\r\n{via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.org>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let mut req = request(&raw);
        proxy::fix_top_via(&mut req, *source).unwrap();
        let out = text(&req.to_bytes());
        assert_eq!(out.lines().nth(1), Some(*expected), "{via} from {source}");
        if via == expected {
            assert_eq!(out, raw, "untouched Via must stay byte for byte");
        }
    }
}

// --- §16.4: route preprocessing --------------------------------------------------------------

fn in_dialog(method: &str, uri: &str, routes: &[&str]) -> Request {
    let routes: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    request(&format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKdlg\r\n\
{routes}\
Max-Forwards: 70\r\n\
From: <sip:callee@domain.com>;tag=b1\r\n\
To: <sip:caller@example.com>;tag=a1\r\n\
Call-ID: dlg-1\r\n\
CSeq: 2 {method}\r\n\
Content-Length: 0\r\n\
\r\n"
    ))
}

#[test]
fn loose_routing_pops_our_route() {
    let local = edge();
    let mut req = in_dialog(
        "BYE",
        "sip:caller@192.0.2.30",
        &["<sip:203.0.113.5;lr>", "<sip:p1.example.net;lr>"],
    );
    let pre = proxy::preprocess_routes(&mut req, &local).unwrap();
    assert_eq!(pre.popped, ["sip:203.0.113.5;lr"]);
    assert_eq!(pre.strict_fixup, None);
    assert!(pre.was_routed());
    assert_eq!(header(&req, HeaderName::Route), ["<sip:p1.example.net;lr>"]);
    let (_, hop) = forward(&req, &local, None, None);
    assert_eq!(hop.host, HopHost::Name("p1.example.net".into()));
    assert_eq!(hop.resolve, Resolve::Service);

    // Not ours on top: nothing happens.
    let mut req = in_dialog("BYE", "sip:caller@192.0.2.30", &["<sip:p1.example.net;lr>"]);
    let before = req.to_bytes();
    let pre = proxy::preprocess_routes(&mut req, &local).unwrap();
    assert!(!pre.was_routed());
    assert_eq!(req.to_bytes(), before);

    // Our address on another port is not us.
    let mut req = in_dialog("BYE", "sip:caller@192.0.2.30", &["<sip:203.0.113.5:5070;lr>"]);
    assert!(!proxy::preprocess_routes(&mut req, &local).unwrap().was_routed());
}

#[test]
fn double_record_route_pops_both() {
    let local = edge();
    for routes in [
        // One header per value, or both in one header, with a third hop after.
        &[
            "<sip:203.0.113.5:5060;transport=udp;r2=on;lr;ftag=x>",
            "<sip:edge.example.com:443;transport=ws;r2=on;lr;ftag=x>",
            "<sip:p9.example.net;lr>",
        ][..],
        &[
            "<sip:203.0.113.5:5060;transport=udp;r2=on;lr;ftag=x>, <sip:edge.example.com:443;transport=ws;r2=on;lr;ftag=x>, <sip:p9.example.net;lr>",
        ],
    ] {
        let mut req = in_dialog("BYE", "sip:k3l8v2x1@df7jal23ls0d.invalid;transport=ws", routes);
        let pre = proxy::preprocess_routes(&mut req, &local).unwrap();
        assert_eq!(
            pre.popped,
            [
                "sip:203.0.113.5:5060;transport=udp;r2=on;lr;ftag=x",
                "sip:edge.example.com:443;transport=ws;r2=on;lr;ftag=x"
            ]
        );
        assert_eq!(header(&req, HeaderName::Route), ["<sip:p9.example.net;lr>"]);
    }
    // A third value of ours is a separate visit and stays.
    let mut req = in_dialog(
        "BYE",
        "sip:x@192.0.2.1",
        &["<sip:203.0.113.5;lr>", "<sip:203.0.113.5;lr>", "<sip:203.0.113.5;lr>"],
    );
    assert_eq!(proxy::preprocess_routes(&mut req, &local).unwrap().popped.len(), 2);
    assert_eq!(header(&req, HeaderName::Route), ["<sip:203.0.113.5;lr>"]);
}

#[test]
fn preloaded_route_to_our_own_host_is_not_a_strict_fixup() {
    let local = edge();
    // An initial request (no To tag) to the proxy's own address with a preloaded Route.
    let mut req = request(&simple("OPTIONS", "sip:203.0.113.5", "Route: <sip:203.0.113.5;lr>\r\n"));
    let pre = proxy::preprocess_routes(&mut req, &local).unwrap();
    assert_eq!(pre.strict_fixup, None);
    assert_eq!(pre.popped, ["sip:203.0.113.5;lr"]);
    assert_eq!(req.uri_str(), "sip:203.0.113.5");
    assert!(local.is_addressed_to_me(&req));
}

#[test]
fn only_our_record_route_form_triggers_the_strict_fixup() {
    let local = edge();
    let ours = [
        "<sip:203.0.113.5:5060;transport=udp;r2=on;lr>",
        "<sip:edge.example.com:443;transport=ws;r2=on;lr>",
    ];
    // A UA whose Contact names this host (user part, no `lr`): a remote target, not ours.
    for uri in ["sip:alice@edge.example.com", "sip:203.0.113.5", "sip:alice@203.0.113.5;lr"] {
        let mut req = in_dialog("BYE", uri, &ours);
        let pre = proxy::preprocess_routes(&mut req, &local).unwrap();
        assert_eq!(pre.strict_fixup, None, "{uri}");
        assert_eq!(pre.popped.len(), 2, "{uri}");
        assert_eq!(req.uri_str(), uri);
    }
    // Our own value, as a strict router copies it.
    let mut req = in_dialog(
        "BYE",
        "sip:203.0.113.5:5060;transport=udp;r2=on;lr",
        &["<sip:caller@192.0.2.30>"],
    );
    let pre = proxy::preprocess_routes(&mut req, &local).unwrap();
    assert!(pre.strict_fixup.is_some());
    assert_eq!(req.uri_str(), "sip:caller@192.0.2.30");
}

/// RFC 3261 §16.12.1.1: the basic trapezoid, U1 -> P1 -> P2 -> U2, both proxies
/// record-routing. Our Record-Route values carry port and transport, which the RFC's omit.
#[test]
fn rfc3261_16_12_1_1_basic_trapezoid() {
    let p1 =
        LocalIdentity::new(vec![ListenAddr::new(Transport::Udp, "p1.example.com", 5060).unwrap()]);
    let p2 =
        LocalIdentity::new(vec![ListenAddr::new(Transport::Udp, "p2.domain.com", 5060).unwrap()]);
    let p1_addr = &p1.addresses()[0];
    let p2_addr = &p2.addresses()[0];

    let invite = request(
        "INVITE sip:callee@domain.com SIP/2.0\r\n\
Via: SIP/2.0/UDP u1.example.com;branch=z9hG4bKu1\r\n\
Max-Forwards: 70\r\n\
From: <sip:caller@example.com>;tag=a1\r\n\
To: <sip:callee@domain.com>\r\n\
Call-ID: trapezoid\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:caller@u1.example.com\r\n\
Content-Length: 0\r\n\r\n",
    );
    // P1, the outbound proxy: Request-URI unchanged, one Record-Route.
    let a1 = admit(&invite, &p1);
    let prepared = proxy::prepare(&invite, &a1, None).unwrap();
    assert_eq!(prepared.next_hop().host, HopHost::Name("domain.com".into()));
    let rr1 = RecordRoute { inbound: p1_addr, params: None };
    let at_p2 = prepared.finish(p1_addr, 0, Some(&rr1));
    assert_eq!(at_p2.uri_str(), "sip:callee@domain.com");
    assert_eq!(
        header(&at_p2, HeaderName::RecordRoute),
        ["<sip:p1.example.com:5060;transport=udp;lr>"]
    );
    // P2, responsible for domain.com, retargets to the registered contact.
    let a2 = admit(&at_p2, &p2);
    let rr2 = RecordRoute { inbound: p2_addr, params: None };
    let at_u2 = proxy::prepare(&at_p2, &a2, Some("sip:callee@u2.domain.com")).unwrap().finish(
        p2_addr,
        0,
        Some(&rr2),
    );
    assert_eq!(at_u2.uri_str(), "sip:callee@u2.domain.com");
    assert_eq!(
        header(&at_u2, HeaderName::RecordRoute),
        ["<sip:p2.domain.com:5060;transport=udp;lr>", "<sip:p1.example.com:5060;transport=udp;lr>"]
    );
    assert_eq!(header(&at_u2, HeaderName::Via).len(), 3);

    // U2 answers; its route set is the Record-Route list in order. Its BYE:
    let mut bye = in_dialog(
        "BYE",
        "sip:caller@u1.example.com",
        &[
            "<sip:p2.domain.com:5060;transport=udp;lr>",
            "<sip:p1.example.com:5060;transport=udp;lr>",
        ],
    );
    proxy::preprocess_routes(&mut bye, &p2).unwrap();
    assert_eq!(header(&bye, HeaderName::Route), ["<sip:p1.example.com:5060;transport=udp;lr>"]);
    let (at_p1, hop) = forward(&bye, &p2, None, None);
    assert_eq!(hop.host, HopHost::Name("p1.example.com".into()));
    let mut at_p1 = request(&text(&at_p1.to_bytes()));
    proxy::preprocess_routes(&mut at_p1, &p1).unwrap();
    assert!(header(&at_p1, HeaderName::Route).is_empty());
    let (to_u1, hop) = forward(&at_p1, &p1, None, None);
    assert_eq!(to_u1.uri_str(), "sip:caller@u1.example.com");
    assert_eq!(hop.host, HopHost::Name("u1.example.com".into()));
}

/// RFC 3261 §16.12.1.2: traversing a strict-routing proxy P3. We are P2 (loose).
#[test]
fn rfc3261_16_12_1_2_strict_router() {
    let p2 =
        LocalIdentity::new(vec![ListenAddr::new(Transport::Udp, "p2.example.com", 5060).unwrap()]);

    // U1's BYE after P1: P2 pops itself; the next Route, P3, lacks `lr`: P2 puts it in the
    // Request-URI and the Request-URI at the end of the Route set (§16.6 step 6).
    let mut bye = in_dialog(
        "BYE",
        "sip:callee@u2.domain.com",
        &["<sip:p2.example.com;lr>,<sip:p3.middle.com>"],
    );
    proxy::preprocess_routes(&mut bye, &p2).unwrap();
    let admitted = admit(&bye, &p2);
    let prepared = proxy::prepare(&bye, &admitted, None).unwrap();
    assert!(prepared.strict_next_hop());
    assert_eq!(prepared.next_hop().host, HopHost::Name("p3.middle.com".into()));
    let out = prepared.finish(&p2.addresses()[0], 0, None);
    assert_eq!(out.uri_str(), "sip:p3.middle.com");
    assert_eq!(header(&out, HeaderName::Route), ["<sip:callee@u2.domain.com>"]);

    // U2's BYE the other way: P3 strict-routes, so P2 receives its own Record-Route value as
    // the Request-URI and the remote target as the last Route (§16.4).
    let mut bye = in_dialog(
        "BYE",
        "sip:p2.example.com;lr",
        &["<sip:p1.example.com;lr>,<sip:caller@u1.example.com>"],
    );
    let pre = proxy::preprocess_routes(&mut bye, &p2).unwrap();
    assert_eq!(pre.strict_fixup.as_deref(), Some("sip:p2.example.com;lr"));
    assert!(pre.popped.is_empty());
    assert_eq!(bye.uri_str(), "sip:caller@u1.example.com");
    assert_eq!(header(&bye, HeaderName::Route), ["<sip:p1.example.com;lr>"]);
    let (out, hop) = forward(&bye, &p2, None, None);
    assert_eq!(hop.host, HopHost::Name("p1.example.com".into()));
    let wire = text(&out.to_bytes());
    assert!(wire.starts_with("BYE sip:caller@u1.example.com SIP/2.0\r\n"), "{wire}");
    assert!(wire.contains("\r\nRoute: <sip:p1.example.com;lr>\r\n"), "{wire}");

    // Strict fix-up where the Route set was one value per header, and it was the only one.
    let mut bye = in_dialog("BYE", "sip:p2.example.com;lr", &["<sip:caller@u1.example.com>"]);
    proxy::preprocess_routes(&mut bye, &p2).unwrap();
    assert_eq!(bye.uri_str(), "sip:caller@u1.example.com");
    assert!(header(&bye, HeaderName::Route).is_empty());
}

/// RFC 3261 §16.12.1.3 solves a proxy between two address spaces by rewriting Record-Route in
/// the response; RFC 5658 recommends double Record-Route instead, which lifeline uses. The
/// first hop of each side comes out the same as in the RFC's example.
#[test]
fn rfc3261_16_12_1_3_two_namespaces_by_double_record_route() {
    let left = ListenAddr::new(Transport::Udp, "gateway.leftprivatespace.com", 5060).unwrap();
    let right = ListenAddr::new(Transport::Udp, "gateway.rightprivatespace.com", 5060).unwrap();
    let p1 = LocalIdentity::new(vec![left.clone(), right.clone()]);
    let invite = request(
        "INVITE sip:callee@gateway.leftprivatespace.com SIP/2.0\r\n\
Via: SIP/2.0/UDP u1.leftprivatespace.com;branch=z9hG4bKl1\r\n\
Max-Forwards: 70\r\n\
From: <sip:caller@leftprivatespace.com>;tag=a1\r\n\
To: <sip:callee@rightprivatespace.com>\r\n\
Call-ID: namespaces\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@u1.leftprivatespace.com>\r\n\
Content-Length: 0\r\n\r\n",
    );
    let admitted = admit(&invite, &p1);
    let out = proxy::prepare(&invite, &admitted, Some("sip:callee@rightprivatespace.com"))
        .unwrap()
        .finish(&right, 0, Some(&RecordRoute { inbound: &left, params: None }));
    let rr = header(&out, HeaderName::RecordRoute);
    assert_eq!(
        rr,
        [
            "<sip:gateway.rightprivatespace.com:5060;transport=udp;r2=on;lr>",
            "<sip:gateway.leftprivatespace.com:5060;transport=udp;r2=on;lr>"
        ]
    );
    // U1 (UAC) uses the list reversed: its first hop is the left side, as in the RFC.
    let uac_routes: Vec<&str> = rr.iter().rev().map(String::as_str).collect();
    assert!(uac_routes[0].contains("gateway.leftprivatespace.com"));
    let mut bye = in_dialog("BYE", "sip:callee@u2.rightprivatespace.com", &uac_routes);
    assert_eq!(proxy::preprocess_routes(&mut bye, &p1).unwrap().popped.len(), 2);
    let (out, hop) = forward(&bye, &p1, None, None);
    assert_eq!(out.uri_str(), "sip:callee@u2.rightprivatespace.com");
    assert!(header(&out, HeaderName::Route).is_empty());
    assert_eq!(hop.host, HopHost::Name("u2.rightprivatespace.com".into()));
    // U2 (UAS) uses it in order: first hop the right side.
    let uas_routes: Vec<&str> = rr.iter().map(String::as_str).collect();
    let mut bye = in_dialog("BYE", "sip:caller@u1.leftprivatespace.com", &uas_routes);
    assert_eq!(proxy::preprocess_routes(&mut bye, &p1).unwrap().popped.len(), 2);
}

// --- §16.6: Record-Route, next hop, Via --------------------------------------------------------

#[test]
fn record_route_single_sips_and_params() {
    let local = edge();
    let req = request(&simple("INVITE", "sip:bob@198.51.100.20", ""));
    let udp = udp();
    let rr = RecordRoute { inbound: &udp, params: Some("ftag=f1;did=7") };
    let (out, _) = forward(&req, &local, None, Some(&rr));
    assert_eq!(
        header(&out, HeaderName::RecordRoute),
        ["<sip:203.0.113.5:5060;transport=udp;lr;ftag=f1;did=7>"]
    );

    // sips Request-URI: sips Record-Route (§16.6 step 4), TLS next hop.
    let tls = ListenAddr::new(Transport::Tls, "203.0.113.5", 5061).unwrap();
    let local = LocalIdentity::new(vec![tls.clone()]);
    let req = request(&simple("INVITE", "sips:bob@198.51.100.20", ""));
    let rr = RecordRoute { inbound: &tls, params: None };
    let (out, hop) = forward(&req, &local, None, Some(&rr));
    assert_eq!(header(&out, HeaderName::RecordRoute), ["<sips:203.0.113.5:5061;transport=tls;lr>"]);
    assert_eq!((hop.transport, hop.port), (Transport::Tls, 5061));

    // A sips top Route makes it sips too, with or without a display name; a `<` inside a
    // quoted display name is not where the URI starts.
    let local = LocalIdentity::new(vec![tls.clone(), udp.clone()]);
    for (route, secure) in [
        ("Route: <SIPS:p1.example.org;lr>\r\n", true),
        ("Route: \"a<sips:x\" <sip:p1.example.org;lr>\r\n", false),
        ("Route: \"edge\" <sips:p1.example.org;lr>, <sip:p2.example.org;lr>\r\n", true),
    ] {
        let req = request(&simple("INVITE", "sip:bob@198.51.100.20", route));
        let (out, _) = forward(&req, &local, None, Some(&rr));
        let scheme = if secure { "<sips:" } else { "<sip:" };
        let value = header(&out, HeaderName::RecordRoute);
        assert!(value[0].starts_with(scheme), "{route}: {value:?}");
    }

    // Existing Record-Route values stay below ours.
    let local = edge();
    let req = request(&simple(
        "INVITE",
        "sip:bob@198.51.100.20",
        "Record-Route: <sip:p0.example.org;lr>\r\n",
    ));
    let (out, _) = forward(&req, &local, None, Some(&RecordRoute { inbound: &udp, params: None }));
    assert_eq!(
        header(&out, HeaderName::RecordRoute),
        ["<sip:203.0.113.5:5060;transport=udp;lr>", "<sip:p0.example.org;lr>"]
    );
}

#[test]
fn next_hop_from_route_or_request_uri() {
    let local = edge();
    let hop = |uri: &str, route: &str| -> Result<NextHop, Reject> {
        let extra = if route.is_empty() { String::new() } else { format!("Route: {route}\r\n") };
        let req = request(&simple("INVITE", uri, &extra));
        let admitted = admit(&req, &local);
        proxy::prepare(&req, &admitted, None).map(|p| p.next_hop().clone())
    };
    let ip = |s: &str| HopHost::Ip(s.parse::<IpAddr>().unwrap());
    let name = |s: &str| HopHost::Name(s.into());
    #[rustfmt::skip]
    let cases: &[(&str, &str, Transport, HopHost, u16, Resolve)] = &[
        ("sip:bob@198.51.100.20", "", Transport::Udp, ip("198.51.100.20"), 5060, Resolve::Nothing),
        ("sip:bob@[2001:db8::1]:5070", "", Transport::Udp, ip("2001:db8::1"), 5070, Resolve::Nothing),
        ("sip:bob@[2001:db8::1]:5070;transport=tcp", "", Transport::Tcp, ip("2001:db8::1"), 5070, Resolve::Nothing),
        ("sip:bob@example.org", "", Transport::Udp, name("example.org"), 5060, Resolve::Service),
        ("sip:bob@Example.ORG:5080", "", Transport::Udp, name("example.org"), 5080, Resolve::Address),
        ("sip:bob@example.org;transport=TLS", "", Transport::Tls, name("example.org"), 5061, Resolve::Service),
        ("sips:bob@example.org", "", Transport::Tls, name("example.org"), 5061, Resolve::Service),
        ("sips:bob@example.org;transport=tcp", "", Transport::Tls, name("example.org"), 5061, Resolve::Service),
        ("sip:bob@x.invalid;transport=ws", "", Transport::Ws, name("x.invalid"), 80, Resolve::Service),
        ("sips:bob@x.invalid;transport=ws", "", Transport::Wss, name("x.invalid"), 443, Resolve::Service),
        ("sip:bob@example.org;maddr=192.0.2.99", "", Transport::Udp, ip("192.0.2.99"), 5060, Resolve::Nothing),
        // A loose Route decides, whatever the Request-URI.
        ("sip:bob@example.org", "<sip:[2001:db8::7]:5090;transport=tcp;lr>", Transport::Tcp, ip("2001:db8::7"), 5090, Resolve::Nothing),
        ("tel:+15550100123", "<sip:trunk.example.net;lr>", Transport::Udp, name("trunk.example.net"), 5060, Resolve::Service),
        // A strict Route becomes the Request-URI and the next hop.
        ("sip:bob@example.org", "<sip:198.51.100.40:5062>", Transport::Udp, ip("198.51.100.40"), 5062, Resolve::Nothing),
    ];
    for (uri, route, transport, host, port, resolve) in cases {
        let got = hop(uri, route).unwrap();
        assert_eq!(
            got,
            NextHop { transport: *transport, host: host.clone(), port: *port, resolve: *resolve },
            "{uri} {route}"
        );
    }
    assert_eq!(
        hop("sip:bob@[2001:db8::1]:5070", "").unwrap().socket_addr(),
        Some("[2001:db8::1]:5070".parse().unwrap())
    );
    assert_eq!(hop("sip:bob@example.org", "").unwrap().socket_addr(), None);
    // What cannot be reached.
    assert_eq!(hop("sip:bob@example.org;transport=foo", ""), Err(Reject::UnsupportedTransport));
    assert_eq!(hop("sips:bob@example.org;transport=udp", ""), Err(Reject::UnsupportedTransport));
    assert_eq!(hop("tel:+15550100123", ""), Err(Reject::UnsupportedUriScheme));
    assert_eq!(hop("urn:service:sos", ""), Err(Reject::UnsupportedUriScheme));
    assert_eq!(hop("sip:bob@example.org", "<tel:+1555>"), Err(Reject::UnsupportedUriScheme));
}

#[test]
fn outbound_address_follows_transport_and_family() {
    let local = edge();
    let hop = |t: Transport, host: &str| NextHop {
        transport: t,
        host: HopHost::Ip(host.parse().unwrap()),
        port: 5060,
        resolve: Resolve::Nothing,
    };
    assert_eq!(local.outbound_for(&hop(Transport::Udp, "198.51.100.20")), Some(&udp()));
    assert_eq!(local.outbound_for(&hop(Transport::Udp, "2001:db8::20")), Some(&udp6()));
    assert_eq!(local.outbound_for(&hop(Transport::Tcp, "198.51.100.20")), Some(&tcp()));
    assert_eq!(local.outbound_for(&hop(Transport::Tls, "198.51.100.20")), None);
}

#[test]
fn via_push_and_target() {
    let local = edge();
    let req = request(&simple("INVITE", "sip:bob@edge.example.com", "Max-Forwards: 70\r\n"));
    let admitted = admit(&req, &local);
    let prepared = proxy::prepare(
        &req,
        &admitted,
        Some("sip:bob@[2001:db8::20]:5070;transport=udp;method=INVITE?X-Foo=bar"),
    )
    .unwrap();
    let out = prepared.finish(&udp6(), 2, None);
    assert_eq!(out.uri_str(), "sip:bob@[2001:db8::20]:5070;transport=udp");
    let vias = header(&out, HeaderName::Via);
    assert_eq!(
        vias,
        [
            format!("SIP/2.0/UDP [2001:db8::5]:5060;branch={}", admitted.branch(2)),
            "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1".to_owned()
        ]
    );
    let top = out.headers().top_via().unwrap();
    assert!(local.is_my_sent_by(&top));
    assert_eq!(Branch::parse(top.branch().unwrap()).unwrap().index(), 2);
    assert!(out.headers().get(HeaderName::RecordRoute).is_none());
}

#[test]
fn content_length_added_when_missing() {
    let local = edge();
    let req = request(
        "MESSAGE sip:bob@198.51.100.20 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKm\r\n\
From: <sip:a@b>;tag=1\r\n\
To: <sip:bob@198.51.100.20>\r\n\
Call-ID: m1\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
\r\n\
hello",
    );
    let (out, _) = forward(&req, &local, None, None);
    assert_eq!(header(&out, HeaderName::ContentLength), ["5"]);
    assert!(text(&out.to_bytes()).ends_with("Content-Length: 5\r\n\r\nhello"));
}

// --- §16.7: responses ------------------------------------------------------------------------

fn resp_with_vias(status: &str, vias: &[&str]) -> Response {
    let vias: String = vias.iter().map(|v| format!("Via: {v}\r\n")).collect();
    response(&format!(
        "SIP/2.0 {status}\r\n{vias}From: <sip:carol@example.org>;tag=f1\r\nTo: <sip:bob@example.org>;tag=t1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ))
}

#[test]
fn response_via_pop_and_reply_address() {
    let local = edge();
    let ours = format!(
        "SIP/2.0/UDP 203.0.113.5:5060;branch={}",
        admit(&request(&simple("INVITE", "sip:bob@example.org", "")), &local).branch(3)
    );
    let ip = |s: &str| HopHost::Ip(s.parse::<IpAddr>().unwrap());
    let cases: &[(&str, ReplyTo)] = &[
        (
            "SIP/2.0/UDP 192.0.2.10:5062;rport=40000;received=198.51.100.7;branch=z9hG4bK1",
            ReplyTo::Address(NextHop {
                transport: Transport::Udp,
                host: ip("198.51.100.7"),
                port: 40000,
                resolve: Resolve::Nothing,
            }),
        ),
        (
            "SIP/2.0/UDP 192.0.2.10:5062;received=198.51.100.7;branch=z9hG4bK1",
            ReplyTo::Address(NextHop {
                transport: Transport::Udp,
                host: ip("198.51.100.7"),
                port: 5062,
                resolve: Resolve::Nothing,
            }),
        ),
        (
            "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1",
            ReplyTo::Address(NextHop {
                transport: Transport::Udp,
                host: ip("192.0.2.10"),
                port: 5060,
                resolve: Resolve::Nothing,
            }),
        ),
        (
            "SIP/2.0/UDP [2001:db8::9]:5070;received=2001:db8::10;branch=z9hG4bK1",
            ReplyTo::Address(NextHop {
                transport: Transport::Udp,
                host: ip("2001:db8::10"),
                port: 5070,
                resolve: Resolve::Nothing,
            }),
        ),
        (
            "SIP/2.0/UDP pbx.example.org;branch=z9hG4bK1",
            ReplyTo::Address(NextHop {
                transport: Transport::Udp,
                host: HopHost::Name("pbx.example.org".into()),
                port: 5060,
                resolve: Resolve::Service,
            }),
        ),
        (
            "SIP/2.0/UDP 10.0.0.1;maddr=224.2.0.1;branch=z9hG4bK1",
            ReplyTo::Address(NextHop {
                transport: Transport::Udp,
                host: ip("224.2.0.1"),
                port: 5060,
                resolve: Resolve::Nothing,
            }),
        ),
        (
            "SIP/2.0/TCP 192.0.2.10:5062;received=198.51.100.7;branch=z9hG4bK1",
            ReplyTo::Connection {
                fallback: NextHop {
                    transport: Transport::Tcp,
                    host: ip("198.51.100.7"),
                    port: 5062,
                    resolve: Resolve::Nothing,
                },
            },
        ),
        (
            "SIP/2.0/WSS df7jal23ls0d.invalid;received=192.0.2.77;branch=z9hG4bK1",
            ReplyTo::Connection {
                fallback: NextHop {
                    transport: Transport::Wss,
                    host: ip("192.0.2.77"),
                    port: 443,
                    resolve: Resolve::Nothing,
                },
            },
        ),
    ];
    for (upstream_via, expected) in cases {
        let mut resp = resp_with_vias("180 Ringing", &[&ours, upstream_via]);
        let Upstream::Forward { branch, reply_to } = proxy::pop_via(&mut resp, &local).unwrap()
        else {
            panic!("not forwarded")
        };
        assert_eq!(branch.index(), 3);
        assert_eq!(&reply_to, expected, "{upstream_via}");
        assert_eq!(header_resp(&resp, HeaderName::Via), [*upstream_via]);
        let via = Via::parse(upstream_via).unwrap();
        assert_eq!(proxy::reply_to(&via).as_ref(), Some(expected));
    }

    // Our Via alone: the answer to a request we originated.
    let mut resp = resp_with_vias("200 OK", &[&ours]);
    assert!(matches!(proxy::pop_via(&mut resp, &local), Ok(Upstream::Local { .. })));
    // Foreign Vias are dropped, and the response is left as it was.
    for top in [
        "SIP/2.0/UDP 198.51.100.99:5060;branch=z9hG4bKlf0123456789abcdeffedcba9876.0",
        "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKsomeoneelse",
        "SIP/2.0/UDP 203.0.113.5:5070;branch=z9hG4bKlf0123456789abcdeffedcba9876.0",
    ] {
        let mut resp = resp_with_vias("200 OK", &[top, "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1"]);
        let before = resp.to_bytes();
        assert_eq!(proxy::pop_via(&mut resp, &local), Err(Dropped::NotOurs), "{top}");
        assert_eq!(resp.to_bytes(), before);
    }
}

fn header_resp(r: &Response, name: HeaderName) -> Vec<String> {
    r.headers().get_all(name).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

// --- §16.7 steps 5-7: the response context -----------------------------------------------------

fn original_invite() -> Request {
    request(&simple("INVITE", "sip:bob@edge.example.com", "Max-Forwards: 70\r\n"))
}

/// A final or provisional response from a branch (our Via already popped).
fn branch_resp(status: &str, extra: &str) -> Response {
    response(&format!(
        "SIP/2.0 {status}\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1\r\n\
From: <sip:carol@example.org>;tag=f1\r\n\
To: <sip:bob@example.org>;tag=downstream\r\n\
Call-ID: loop-1@192.0.2.10\r\n\
CSeq: 7 INVITE\r\n\
{extra}\
Content-Length: 0\r\n\
\r\n"
    ))
}

enum Ev<'a> {
    Resp(&'a str, &'a str),
    Timeout,
    TransportError,
}

/// Parallel fork to `events.len()` branches; events arrive in order, branch i gets event i.
/// Returns the final response and the cancel lists seen.
fn fork(events: &[Ev<'_>]) -> (Response, Vec<Vec<u32>>) {
    let mut ctx = ResponseContext::new(original_invite().into(), |_| "px".to_owned());
    for _ in events {
        ctx.add_branch().expect("an open context");
    }
    assert!(ctx.close().forward.is_none());
    let mut cancels = Vec::new();
    let mut last = None;
    for (n, ev) in events.iter().enumerate() {
        let i = u32::try_from(n).expect("few branches");
        let out: Outcome = match ev {
            Ev::Resp(status, extra) => ctx.on_response(i, branch_resp(status, extra)),
            Ev::Timeout => ctx.on_timeout(i),
            Ev::TransportError => ctx.on_transport_error(i),
        };
        cancels.push(out.cancel);
        if let Some(r) = out.forward {
            assert!(last.is_none(), "two finals");
            assert_eq!(n, events.len() - 1, "final before every branch ended");
            last = Some(r);
        }
    }
    (last.expect("a final response"), cancels)
}

#[test]
fn best_response_selection() {
    use Ev::*;
    #[rustfmt::skip]
    let cases: &[(&[Ev<'_>], u16, &str)] = &[
        // 6xx wins over everything, 4xx included.
        (&[Resp("404 Not Found", ""), Resp("603 Decline", "")], 603, "Decline"),
        (&[Resp("603 Decline", ""), Resp("486 Busy Here", "")], 603, "Decline"),
        // Lowest class: 4xx over 5xx, 3xx over 4xx.
        (&[Resp("500 Server Internal Error", ""), Resp("486 Busy Here", "")], 486, "Busy Here"),
        (&[Resp("486 Busy Here", ""), Resp("302 Moved Temporarily", "")], 302, "Moved Temporarily"),
        // Inside 4xx: the ones that let the client resubmit, then the lowest, 408 last.
        (&[Resp("404 Not Found", ""), Resp("484 Address Incomplete", "")], 484, "Address Incomplete"),
        (&[Resp("486 Busy Here", ""), Resp("480 Temporarily Unavailable", "")], 480, "Temporarily Unavailable"),
        (&[Resp("408 Request Timeout", ""), Resp("486 Busy Here", "")], 486, "Busy Here"),
        (&[Timeout, Resp("486 Busy Here", "")], 486, "Busy Here"),
        // 503 never goes up: 500 instead (§16.7 step 6); another 5xx is preferred to it.
        (&[Resp("503 Service Unavailable", "Retry-After: 30\r\n")], 500, "Server Internal Error"),
        (&[Resp("503 Service Unavailable", ""), Resp("502 Bad Gateway", "")], 502, "Bad Gateway"),
        (&[TransportError], 500, "Server Internal Error"),
        (&[TransportError, Resp("503 Service Unavailable", "")], 500, "Server Internal Error"),
        // Nothing but timeouts: 408.
        (&[Timeout, Timeout], 408, "Request Timeout"),
    ];
    for (events, status, reason) in cases {
        let (resp, _) = fork(events);
        assert_eq!((resp.status(), resp.reason()), (*status, *reason));
        let generated = matches!(*status, 408 | 500)
            && !events
                .iter()
                .any(|e| matches!(e, Resp(s, _) if s.starts_with(&status.to_string())));
        let tag = resp.headers().to().unwrap().tag().map(str::to_owned);
        if generated {
            // Made up by the proxy: from the request, with the proxy's To tag.
            assert_eq!(tag.as_deref(), Some("px"), "{status}");
            assert_eq!(
                header_resp(&resp, HeaderName::Via),
                ["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1"]
            );
        } else {
            assert_eq!(tag.as_deref(), Some("downstream"), "{status}");
        }
    }
    // A 6xx arriving after the context was closed still cancels the pending branches.
    let (_, cancels) = fork(&[Resp("603 Decline", ""), Resp("486 Busy Here", "")]);
    assert_eq!(cancels, [vec![1], vec![]]);
}

#[test]
fn six_hundred_cancels_the_others_and_closes_the_context() {
    let mut ctx = ResponseContext::new(original_invite().into(), |_| "px".to_owned());
    let (a, b, c) =
        (ctx.add_branch().unwrap(), ctx.add_branch().unwrap(), ctx.add_branch().unwrap());
    assert!(ctx.on_response(a, branch_resp("180 Ringing", "")).forward.is_some());
    assert!(ctx.has_provisional(a));
    assert!(!ctx.has_provisional(b));
    let out = ctx.on_response(b, branch_resp("600 Busy Everywhere", ""));
    assert_eq!(out.cancel, [a, c]);
    assert_eq!(out.branch_ended, Some(600));
    assert!(out.forward.is_none(), "waits for the cancelled branches (§16.7 step 6)");
    assert!(ctx.add_branch().is_none(), "no new branch after a 6xx (§16.7 step 5)");
    assert!(ctx.on_response(a, branch_resp("487 Request Terminated", "")).forward.is_none());
    let out = ctx.on_timeout(c);
    assert_eq!(out.forward.unwrap().status(), 600);
    assert!(ctx.final_sent());
}

#[test]
fn challenges_from_every_branch_are_aggregated() {
    use Ev::*;
    let (resp, _) = fork(&[
        Resp(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"a.example\", nonce=\"n1\", algorithm=MD5\r\n",
        ),
        Resp("404 Not Found", ""),
        Resp(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Digest realm=\"p.example\", nonce=\"n2\"\r\n",
        ),
        Resp(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"b.example\", nonce=\"n3\", algorithm=MD5\r\nWWW-Authenticate: Digest realm=\"b.example\", nonce=\"n4\", algorithm=SHA-256\r\n",
        ),
    ]);
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header_resp(&resp, HeaderName::WwwAuthenticate),
        [
            "Digest realm=\"a.example\", nonce=\"n1\", algorithm=MD5",
            "Digest realm=\"b.example\", nonce=\"n3\", algorithm=MD5",
            "Digest realm=\"b.example\", nonce=\"n4\", algorithm=SHA-256",
        ]
    );
    assert_eq!(
        header_resp(&resp, HeaderName::ProxyAuthenticate),
        ["Digest realm=\"p.example\", nonce=\"n2\""]
    );
    // The added challenges sit with the chosen response's own, before Content-Length.
    let wire = text(&resp.to_bytes());
    assert!(wire.ends_with("SHA-256\r\nContent-Length: 0\r\n\r\n"), "{wire}");
}

#[test]
fn two_hundred_goes_up_at_once_and_cancels_the_rest() {
    let mut ctx = ResponseContext::new(original_invite().into(), |_| "px".to_owned());
    let (a, b, c) =
        (ctx.add_branch().unwrap(), ctx.add_branch().unwrap(), ctx.add_branch().unwrap());
    assert!(ctx.on_response(a, branch_resp("100 Trying", "")).forward.is_none());
    let ringing = ctx.on_response(a, branch_resp("180 Ringing", ""));
    assert_eq!(ringing.forward.unwrap().status(), 180);
    assert!(ctx.on_response(c, branch_resp("486 Busy Here", "")).forward.is_none());
    let ok = ctx.on_response(b, branch_resp("200 OK", ""));
    assert_eq!(ok.forward.unwrap().status(), 200);
    assert_eq!(ok.cancel, [a]);
    assert!(ctx.add_branch().is_none());
    // After the final response: a late 180 and a 487 are absorbed, another 2xx still goes up.
    assert!(ctx.on_response(a, branch_resp("180 Ringing", "")).forward.is_none());
    assert_eq!(ctx.on_response(a, branch_resp("200 OK", "")).forward.unwrap().status(), 200);
    assert!(ctx.on_response(9, branch_resp("200 OK", "")).forward.is_none());
}

#[test]
fn serial_failover_keeps_the_context_open() {
    let mut ctx = ResponseContext::new(original_invite().into(), |_| "px".to_owned());
    let first = ctx.add_branch().unwrap();
    let out =
        ctx.on_response(first, branch_resp("503 Service Unavailable", "Retry-After: 120\r\n"));
    assert!(out.forward.is_none());
    assert_eq!(out.branch_ended, Some(503));
    assert!(proxy::may_try_next(503));
    assert_eq!(
        proxy::retry_after(&branch_resp(
            "503 Service Unavailable",
            "Retry-After: 120 (maintenance);duration=10\r\n"
        )),
        Some(120)
    );
    let second = ctx.add_branch().unwrap();
    let out = ctx.on_timeout(second);
    assert_eq!(out.branch_ended, Some(408));
    assert!(proxy::may_try_next(408));
    let third = ctx.add_branch().unwrap();
    let out = ctx.on_response(third, branch_resp("486 Busy Here", ""));
    assert!(!proxy::may_try_next(486));
    assert!(out.forward.is_none());
    let out = ctx.close();
    assert_eq!(out.forward.unwrap().status(), 486);

    // No target at all: 408 (§16.7 step 6).
    let mut ctx = ResponseContext::new(original_invite().into(), |_| "px".to_owned());
    assert_eq!(ctx.close().forward.unwrap().status(), 408);
}

#[test]
fn non_invite_follows_rfc_4320() {
    let message = request(&simple("MESSAGE", "sip:bob@edge.example.com", ""));
    // Every branch timed out: no 408 goes up (RFC 4320 §4.2); the context is over.
    let mut ctx = ResponseContext::new(message.clone().into(), |_| "px".to_owned());
    let a = ctx.add_branch().unwrap();
    let b = ctx.add_branch().unwrap();
    ctx.close();
    assert!(
        ctx.on_response(a, branch_resp("180 Ringing", "")).forward.is_none(),
        "no provisional but 100 to a non-INVITE (RFC 4320 §4.1)"
    );
    assert!(ctx.on_timeout(a).forward.is_none());
    assert!(ctx.on_timeout(b).forward.is_none());
    assert!(ctx.final_sent());
    // A real answer among the timeouts goes up.
    let mut ctx = ResponseContext::new(message.clone().into(), |_| "px".to_owned());
    let a = ctx.add_branch().unwrap();
    let b = ctx.add_branch().unwrap();
    ctx.close();
    ctx.on_timeout(a);
    let out = ctx.on_response(b, branch_resp("404 Not Found", ""));
    assert_eq!(out.forward.unwrap().status(), 404);
    // A 2xx goes up at once; a second one does not (only INVITE 2xx keep going).
    let mut ctx = ResponseContext::new(message.clone().into(), |_| "px".to_owned());
    let a = ctx.add_branch().unwrap();
    let b = ctx.add_branch().unwrap();
    assert_eq!(ctx.on_response(a, branch_resp("202 Accepted", "")).forward.unwrap().status(), 202);
    assert!(ctx.on_response(b, branch_resp("200 OK", "")).forward.is_none());
}

#[test]
fn cancel_received_terminates_every_branch() {
    let mut ctx = ResponseContext::new(original_invite().into(), |_| "px".to_owned());
    let a = ctx.add_branch().unwrap();
    let b = ctx.add_branch().unwrap();
    ctx.on_response(a, branch_resp("180 Ringing", ""));
    assert_eq!(ctx.cancel(), [a, b]);
    assert!(ctx.on_response(a, branch_resp("487 Request Terminated", "")).forward.is_none());
    let out = ctx.on_response(b, branch_resp("487 Request Terminated", ""));
    assert_eq!(out.forward.unwrap().status(), 487);
}

// --- §16.10: CANCEL ----------------------------------------------------------------------------

#[test]
fn cancel_carries_the_branch_of_the_invite_it_cancels() {
    let local = edge();
    let invite = request(&simple(
        "INVITE",
        "sip:bob@edge.example.com",
        "Max-Forwards: 70\r\nRoute: <sip:203.0.113.5;lr>\r\nRoute: <sip:p9.example.net;lr>\r\n",
    ));
    let mut invite = invite;
    let admitted = admit(&invite, &local);
    proxy::preprocess_routes(&mut invite, &local).unwrap();
    let copies: Vec<Request> = ["sip:bob@198.51.100.21", "sip:bob@198.51.100.22"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            proxy::prepare(&invite, &admitted, Some(t)).unwrap().finish(&udp(), i as u32, None)
        })
        .collect();
    for (i, copy) in copies.iter().enumerate() {
        let cancel =
            proxy::cancel_for(copy, Some("SIP;cause=200;text=\"Call completed elsewhere\""))
                .unwrap();
        assert_eq!(cancel.method(), &Method::Cancel);
        assert_eq!(proxy::cancel_branch(&cancel), proxy::cancel_branch(copy));
        assert_eq!(
            proxy::cancel_branch(copy).map(str::to_owned),
            Some(admitted.branch(i as u32).to_string())
        );
        assert_eq!(
            text(&cancel.to_bytes()),
            format!(
                "CANCEL sip:bob@198.51.100.2{n} SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.5:5060;branch={branch}\r\n\
Route: <sip:p9.example.net;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:carol@example.org>;tag=f1\r\n\
To: <sip:bob@example.org>\r\n\
Call-ID: loop-1@192.0.2.10\r\n\
CSeq: 7 CANCEL\r\n\
Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n\
Content-Length: 0\r\n\
\r\n",
                n = i + 1,
                branch = admitted.branch(i as u32)
            )
        );
    }
}

// --- The whole path: JsSIP over WSS to a UDP trunk and back ------------------------------------

const SDP_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtpmap:111 opus/48000/2\r\n";

const SDP_ANSWER: &str = "v=0\r\n\
o=trunk 1 1 IN IP4 198.51.100.20\r\n\
s=-\r\n\
c=IN IP4 198.51.100.20\r\n\
t=0 0\r\n\
m=audio 31000 RTP/AVP 0\r\n";

/// The headers of JsSIP 3.x's INVITE after the Via, as it writes them.
fn jssip_tail() -> String {
    format!(
        "To: <sip:+15550100777@edge.example.com>\r\n\
From: \"Alice\" <sip:alice@edge.example.com>;tag=9ic2iqd2mf\r\n\
Call-ID: t4mh6rb81i0pl2d5vqig\r\n\
CSeq: 5521 INVITE\r\n\
Contact: <sip:k3l8v2x1@df7jal23ls0d.invalid;transport=ws;ob>\r\n\
Content-Type: application/sdp\r\n\
Session-Expires: 90\r\n\
Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n\
Supported: timer,ice,replaces,outbound\r\n\
User-Agent: JsSIP 3.10.0\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP_OFFER}",
        SDP_OFFER.len()
    )
}

#[test]
fn jssip_over_wss_to_a_udp_trunk_and_back() {
    let local = edge();
    let (wss, udp) = (wss(), udp());
    let browser: SocketAddr = "192.0.2.77:51234".parse().unwrap();
    let raw = format!(
        "INVITE sip:+15550100777@edge.example.com SIP/2.0\r\n\
Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK4125891\r\n\
Max-Forwards: 69\r\n\
{}",
        jssip_tail()
    );
    let mut invite = match Message::parse(Bytes::from(raw.clone()), Framing::Stream).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    };

    // The request pipeline.
    proxy::fix_top_via(&mut invite, browser).unwrap();
    let Verdict::Forward(admitted) = proxy::validate(&invite, &local).unwrap() else {
        panic!("not admitted")
    };
    assert_eq!(admitted.max_forwards, 68);
    assert!(!admitted.spiral);
    let pre = proxy::preprocess_routes(&mut invite, &local).unwrap();
    assert!(!pre.was_routed());
    let mut ctx = ResponseContext::new(invite.clone().into(), |_| "edge-tag".to_owned());
    let fork = ctx.add_branch().unwrap();
    let prepared = proxy::prepare(
        &invite,
        &admitted,
        Some("sip:+15550100777@198.51.100.20:5060;transport=udp"),
    )
    .unwrap();
    assert_eq!(
        prepared.next_hop(),
        &NextHop {
            transport: Transport::Udp,
            host: HopHost::Ip("198.51.100.20".parse().unwrap()),
            port: 5060,
            resolve: Resolve::Nothing
        }
    );
    let outbound = local.outbound_for(prepared.next_hop()).unwrap().clone();
    assert_eq!(outbound, udp);
    let rr = RecordRoute { inbound: &wss, params: Some("ftag=9ic2iqd2mf") };
    let to_trunk = prepared.finish(&outbound, fork, Some(&rr));
    let branch = admitted.branch(0);

    // New request line; both Record-Route values at the top (outbound side first), then our
    // Via above the browser's (which gained `received`), Max-Forwards one less; everything
    // else byte for byte.
    let expected = format!(
        "INVITE sip:+15550100777@198.51.100.20:5060;transport=udp SIP/2.0\r\n\
Record-Route: <sip:203.0.113.5:5060;transport=udp;r2=on;lr;ftag=9ic2iqd2mf>\r\n\
Record-Route: <sip:edge.example.com:443;transport=ws;r2=on;lr;ftag=9ic2iqd2mf>\r\n\
Via: SIP/2.0/UDP 203.0.113.5:5060;branch={branch}\r\n\
Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK4125891;received=192.0.2.77\r\n\
Max-Forwards: 68\r\n\
{}",
        jssip_tail()
    );
    assert_eq!(text(&to_trunk.to_bytes()), expected);

    // The trunk answers; the 200 echoes Via and Record-Route.
    let ok = format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 203.0.113.5:5060;branch={branch}\r\n\
Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK4125891;received=192.0.2.77\r\n\
Record-Route: <sip:203.0.113.5:5060;transport=udp;r2=on;lr;ftag=9ic2iqd2mf>\r\n\
Record-Route: <sip:edge.example.com:443;transport=ws;r2=on;lr;ftag=9ic2iqd2mf>\r\n\
From: \"Alice\" <sip:alice@edge.example.com>;tag=9ic2iqd2mf\r\n\
To: <sip:+15550100777@edge.example.com>;tag=as5f2c1a9e\r\n\
Call-ID: t4mh6rb81i0pl2d5vqig\r\n\
CSeq: 5521 INVITE\r\n\
Contact: <sip:+15550100777@198.51.100.20:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP_ANSWER}",
        SDP_ANSWER.len()
    );
    let mut from_trunk = response(&ok);
    let Upstream::Forward { branch: got, reply_to } =
        proxy::pop_via(&mut from_trunk, &local).unwrap()
    else {
        panic!("not forwarded")
    };
    assert_eq!(got, branch);
    assert_eq!(
        reply_to,
        ReplyTo::Connection {
            fallback: NextHop {
                transport: Transport::Wss,
                host: HopHost::Ip("192.0.2.77".parse().unwrap()),
                port: 443,
                resolve: Resolve::Nothing
            }
        }
    );
    let out = ctx.on_response(got.index(), from_trunk);
    assert!(out.cancel.is_empty());
    let to_browser = out.forward.unwrap();
    // What reaches the UAC: the 200 without our Via, byte for byte otherwise.
    let first_via = format!("Via: SIP/2.0/UDP 203.0.113.5:5060;branch={branch}\r\n");
    assert_eq!(text(&to_browser.to_bytes()), ok.replacen(&first_via, "", 1));

    // The route sets: the trunk (UAS) uses the Record-Route list in order, the browser (UAC)
    // reversed. Each reaches first the side of the edge it can reach.
    let rr_list = header_resp(&to_browser, HeaderName::RecordRoute);
    let uas_routes: Vec<&str> = rr_list.iter().map(String::as_str).collect();
    let uac_routes: Vec<&str> = rr_list.iter().rev().map(String::as_str).collect();
    assert!(uas_routes[0].starts_with("<sip:203.0.113.5:5060;transport=udp"));
    assert!(uac_routes[0].starts_with("<sip:edge.example.com:443;transport=ws"));

    // The browser's ACK for the 2xx: a new request, routed end to end with its own branch.
    let routes: String = uac_routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let ack_raw = format!(
        "ACK sip:+15550100777@198.51.100.20:5060 SIP/2.0\r\n\
{routes}\
Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK9914411\r\n\
Max-Forwards: 69\r\n\
To: <sip:+15550100777@edge.example.com>;tag=as5f2c1a9e\r\n\
From: \"Alice\" <sip:alice@edge.example.com>;tag=9ic2iqd2mf\r\n\
Call-ID: t4mh6rb81i0pl2d5vqig\r\n\
CSeq: 5521 ACK\r\n\
Content-Length: 0\r\n\
\r\n"
    );
    let mut ack = request(&ack_raw);
    proxy::fix_top_via(&mut ack, browser).unwrap();
    let Verdict::Forward(ack_admitted) = proxy::validate(&ack, &local).unwrap() else { panic!() };
    let pre = proxy::preprocess_routes(&mut ack, &local).unwrap();
    assert_eq!(pre.popped.len(), 2);
    assert!(pre.ours().all(|u| u.contains("ftag=9ic2iqd2mf")));
    let prepared = proxy::prepare(&ack, &ack_admitted, None).unwrap();
    assert_eq!(prepared.next_hop().socket_addr(), Some("198.51.100.20:5060".parse().unwrap()));
    let ack_out = prepared.finish(&udp, 0, None);
    let ack_branch = ack_admitted.branch(0);
    assert!(!ack_branch.same_request(&branch));
    assert_eq!(
        text(&ack_out.to_bytes()),
        format!(
            "ACK sip:+15550100777@198.51.100.20:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.5:5060;branch={ack_branch}\r\n\
Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK9914411;received=192.0.2.77\r\n\
Max-Forwards: 68\r\n\
To: <sip:+15550100777@edge.example.com>;tag=as5f2c1a9e\r\n\
From: \"Alice\" <sip:alice@edge.example.com>;tag=9ic2iqd2mf\r\n\
Call-ID: t4mh6rb81i0pl2d5vqig\r\n\
CSeq: 5521 ACK\r\n\
Content-Length: 0\r\n\
\r\n"
        )
    );

    // The trunk's BYE: both values popped, the Request-URI (the browser's Contact) is the next
    // hop — the edge sends it on the browser's flow, found by the `ftag`/`ob` it recorded.
    let mut bye = request(&format!(
        "BYE sip:k3l8v2x1@df7jal23ls0d.invalid;transport=ws;ob SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK-trunk-bye\r\n\
Route: {}, {}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15550100777@edge.example.com>;tag=as5f2c1a9e\r\n\
To: \"Alice\" <sip:alice@edge.example.com>;tag=9ic2iqd2mf\r\n\
Call-ID: t4mh6rb81i0pl2d5vqig\r\n\
CSeq: 102 BYE\r\n\
Content-Length: 0\r\n\
\r\n",
        uas_routes[0], uas_routes[1]
    ));
    proxy::fix_top_via(&mut bye, "198.51.100.20:5060".parse().unwrap()).unwrap();
    let Verdict::Forward(bye_admitted) = proxy::validate(&bye, &local).unwrap() else { panic!() };
    assert_eq!(proxy::preprocess_routes(&mut bye, &local).unwrap().popped.len(), 2);
    assert!(bye.headers().get(HeaderName::Route).is_none());
    let prepared = proxy::prepare(&bye, &bye_admitted, None).unwrap();
    assert_eq!(
        prepared.next_hop(),
        &NextHop {
            transport: Transport::Ws,
            host: HopHost::Name("df7jal23ls0d.invalid".into()),
            port: 80,
            resolve: Resolve::Service
        }
    );
    let bye_out = prepared.finish(&wss, 0, None);
    let wire = text(&bye_out.to_bytes());
    assert!(
        wire.starts_with(&format!(
            "BYE sip:k3l8v2x1@df7jal23ls0d.invalid;transport=ws;ob SIP/2.0\r\n\
Via: SIP/2.0/WSS edge.example.com:443;branch={}\r\n\
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK-trunk-bye\r\n\
Max-Forwards: 69\r\n",
            bye_admitted.branch(0)
        )),
        "{wire}"
    );
}

// --- Never panic ---------------------------------------------------------------------------------

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// SIP-flavoured text: what breaks URI, Via and Route parsers.
    const SIPISH: &str = "[a-zA-Z0-9:@;=.,<>\\[\\]\"?+ %-]{0,48}";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn requests_never_panic(
            ruri in prop_oneof![
                Just("bob@example.org".to_owned()),
                Just("203.0.113.5".to_owned()),
                Just("alice@[2001:db8::1]:5070;transport=tcp".to_owned()),
                SIPISH,
            ],
            route in prop_oneof![
                Just(String::new()),
                Just("<sip:203.0.113.5;lr>".to_owned()),
                Just("<sip:203.0.113.5;lr>, <sip:edge.example.com:443;transport=ws;lr>".to_owned()),
                Just("<sip:p3.middle.com>".to_owned()),
                Just("<sip:p1.example.net;lr>,<sip:x@192.0.2.9>".to_owned()),
                SIPISH,
            ],
            via in prop_oneof![Just("10.0.0.1:5062;rport;branch=z9hG4bK1".to_owned()), SIPISH],
            to_tag in prop::option::of("[a-z0-9]{1,6}"),
            mf in prop::option::of(0u32..300),
            target in prop_oneof![
                Just("sip:x@198.51.100.1;method=INVITE?a=b".to_owned()),
                Just("tel:+15550100".to_owned()),
                SIPISH,
            ],
            rr_params in SIPISH,
        ) {
            let local = edge();
            let raw = format!(
                "INVITE sip:{ruri} SIP/2.0\r\n\
    Via: SIP/2.0/UDP {via}\r\n\
    {route}\
    {mf}\
    From: <sip:a@example.org>;tag=f\r\n\
    To: <sip:b@example.org>{to_tag}\r\n\
    Call-ID: p\r\n\
    CSeq: 1 INVITE\r\n\
    Content-Length: 0\r\n\r\n",
                mf = mf.map(|n| format!("Max-Forwards: {n}\r\n")).unwrap_or_default(),
                route = if route.is_empty() { route } else { format!("Route: {route}\r\n") },
                to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default(),
            );
            let Ok(Message::Request(mut req)) = Message::parse(Bytes::from(raw), Framing::Datagram)
            else {
                return Ok(());
            };
            let _ = proxy::fix_top_via(&mut req, "192.0.2.1:5060".parse().unwrap());
            let admitted = match proxy::validate(&req, &local) {
                Ok(Verdict::Forward(a)) => a,
                Ok(Verdict::AnswerOptions) => return Ok(()),
                Err(r) => {
                    let _ = r.response(&req, "t");
                    return Ok(());
                }
            };
            if proxy::preprocess_routes(&mut req, &local).is_err() {
                return Ok(());
            }
            let mut ctx = ResponseContext::new(req.clone().into(), |_| "t".to_owned());
            for t in [None, Some(target.as_str()), Some("sip:x@198.51.100.1")] {
                let Ok(prepared) = proxy::prepare(&req, &admitted, t) else { continue };
                let out = local.outbound_for(prepared.next_hop()).cloned().unwrap_or_else(udp);
                let inbound = wss();
                let rr = RecordRoute { inbound: &inbound, params: Some(rr_params.as_str()) };
                let fork = ctx.add_branch().unwrap_or(0);
                let copy = prepared.finish(&out, fork, Some(&rr));
                let bytes = copy.to_bytes();
                // What we send parses again, our Via and Record-Route included.
                prop_assert!(Message::parse(bytes, Framing::Stream).is_ok());
                prop_assert!(copy.headers().top_via().is_ok());
                prop_assert!(copy.headers().name_addrs(HeaderName::RecordRoute).all(|r| r.is_ok()));
                let _ = proxy::cancel_for(&copy, Some("SIP;cause=487"));
            }
            let _ = ctx.close();
        }

        #[test]
        fn responses_never_panic(
            top in SIPISH,
            next in SIPISH,
            status in 100u16..700,
            challenge in SIPISH,
        ) {
            let local = edge();
            let raw = format!(
                "SIP/2.0 {status} X\r\n\
    Via: SIP/2.0/UDP {top}\r\n\
    Via: SIP/2.0/UDP {next}\r\n\
    WWW-Authenticate: {challenge}\r\n\
    From: <sip:a@example.org>;tag=f\r\n\
    To: <sip:b@example.org>;tag=t\r\n\
    Call-ID: p\r\n\
    CSeq: 1 INVITE\r\n\
    Content-Length: 0\r\n\r\n"
            );
            let Ok(Message::Response(mut resp)) = Message::parse(Bytes::from(raw), Framing::Datagram)
            else {
                return Ok(());
            };
            let _ = proxy::pop_via(&mut resp, &local);
            let _ = proxy::retry_after(&resp);
            let invite = original_invite();
            let mut ctx = ResponseContext::new(invite.clone().into(), |_| "t".to_owned());
            let a = ctx.add_branch().unwrap();
            let b = ctx.add_branch().unwrap();
            let _ = ctx.on_response(a, resp.clone());
            let _ = ctx.on_response(b, resp);
            let _ = ctx.on_timeout(b);
            let _ = ctx.close();
        }
    }
}
