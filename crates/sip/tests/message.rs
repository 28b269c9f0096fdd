//! Parsing, typed access and printing of whole messages.

use bytes::Bytes;
use sip::header::typed::Contact;
use sip::{Framing, HeaderName, Invalid, Message, MessageKind, Method, Response, Uri};

const INVITE: &str = "INVITE sip:+15550100123@edge.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---abc;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Carrier\" <sip:+12025550199@192.0.2.10>;tag=abc123\r\n\
To: <sip:+15550100123@edge.example.com>\r\n\
Call-ID: 1-2-3@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+12025550199@192.0.2.10:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\ns=-\r\n";

fn parse(s: &str, framing: Framing) -> Result<Message, sip::ParseError> {
    Message::parse(Bytes::copy_from_slice(s.as_bytes()), framing)
}

fn request(s: &str) -> sip::Request {
    match parse(s, Framing::Datagram) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn invalid(s: &str, framing: Framing) -> sip::ParseError {
    parse(s, framing).expect_err("should be refused")
}

#[test]
fn invite_fields() {
    let r = request(INVITE);
    assert_eq!(r.method(), &Method::Invite);
    assert!(matches!(r.uri().unwrap(), Uri::Sip(u) if u.user == Some("+15550100123")));
    let h = r.headers();
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK-524287-1---abc"));
    assert_eq!(h.from().unwrap().tag(), Some("abc123"));
    assert_eq!(h.to().unwrap().tag(), None);
    assert_eq!((h.from_tag().unwrap(), h.to_tag().unwrap()), (Some("abc123"), None));
    assert_eq!(h.call_id().unwrap(), "1-2-3@192.0.2.10");
    assert_eq!(h.cseq().unwrap().seq, 1);
    assert_eq!(h.max_forwards().unwrap(), Some(70));
    assert_eq!(h.content_length().unwrap(), Some(10));
    assert!(h.content_type().unwrap().unwrap().is("application", "sdp"));
    assert_eq!(&r.body()[..], b"v=0\r\ns=-\r\n");
    assert_eq!(r.to_bytes(), INVITE.as_bytes());
}

#[test]
fn compact_forms_folding_and_odd_whitespace_print_verbatim() {
    let raw = "REGISTER sip:edge.example.com SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.4;branch=z9hG4bKx\r\n\
f:<sip:alice@edge.example.com>;tag=1\r\n\
t : <sip:alice@edge.example.com>\r\n\
i:\tcid-1\r\n\
CSEQ: 2\r\n REGISTER\r\n\
m: <sip:alice@192.0.2.4;transport=tcp>;expires=60,\r\n\t<sip:alice@198.51.100.7>;q=0.5\r\n\
k: path, outbound\r\n\
l: 0\r\n\
\r\n";
    let r = request(raw);
    assert_eq!(r.headers().cseq().unwrap().method, Method::Register);
    assert_eq!(r.headers().call_id().unwrap(), "cid-1");
    let contacts: Vec<_> = Contact::parse_list(
        std::str::from_utf8(r.headers().get(HeaderName::Contact).unwrap()).unwrap(),
    )
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(r.to_bytes(), raw.as_bytes());
}

#[test]
fn ipv6_and_response() {
    let raw = "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3;received=[2001:db8::9:255]\r\n\
From: <sip:user@[2001:db8::10]>;tag=81x2\r\n\
To: <sip:user@[2001:db8::20]>;tag=9a\r\n\
Call-ID: SSG9559905523997077@hlau_4100\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
    let Ok(Message::Response(r)) = parse(raw, Framing::Stream) else { panic!() };
    assert_eq!(r.status(), 180);
    assert_eq!(r.reason(), "Ringing");
    let via = r.headers().top_via().unwrap();
    assert_eq!(via.received(), Some("2001:db8::9:255".parse().unwrap()));
    assert_eq!(r.to_bytes(), raw.as_bytes());
}

#[test]
fn mandatory_headers_named_in_the_reason() {
    let without = |name: &str| {
        INVITE.split_inclusive("\r\n").filter(|l| !l.starts_with(name)).collect::<String>()
    };
    for (name, reason) in [
        ("Call-ID", "Missing Call-ID"),
        ("CSeq", "Missing CSeq"),
        ("From", "Missing From"),
        ("To", "Missing To"),
        ("Via", "Missing Via"),
    ] {
        let e = invalid(&without(name), Framing::Datagram);
        assert_eq!(e.kind, MessageKind::Request);
        assert_eq!(e.status(), 400, "{name}");
        assert_eq!(e.reason(), reason);
        assert_eq!(e.is_answerable(), name != "Via", "{name}");
    }
    // Max-Forwards may be absent: a proxy adds it.
    let r = request(&without("Max-Forwards"));
    assert_eq!(r.headers().max_forwards().unwrap(), None);
}

#[test]
fn content_length_rules() {
    // Datagram: bytes past Content-Length are dropped; a shorter body is an error.
    let extra = format!("{INVITE}garbage");
    assert_eq!(&request(&extra).body()[..], b"v=0\r\ns=-\r\n");
    let short = INVITE.replace("Content-Length: 10", "Content-Length: 50");
    assert_eq!(invalid(&short, Framing::Datagram).invalid, Invalid::BadContentLength);
    // Datagram without Content-Length: the body is the rest.
    let none = INVITE.replace("Content-Length: 10\r\n", "");
    assert_eq!(request(&none).body().len(), 10);
    // Stream: Content-Length is mandatory.
    assert_eq!(invalid(&none, Framing::Stream).invalid, Invalid::MissingContentLength);
    let negative = INVITE.replace("Content-Length: 10", "Content-Length: -10");
    assert_eq!(invalid(&negative, Framing::Datagram).reason(), "Bad Content-Length");
}

#[test]
fn cseq_method_must_match() {
    let bad = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    let e = invalid(&bad, Framing::Datagram);
    assert_eq!(e.invalid, Invalid::CSeqMethodMismatch);
    assert!(e.is_answerable());
}

#[test]
fn start_line_errors() {
    let v = INVITE.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
    let e = invalid(&v, Framing::Datagram);
    assert_eq!(e.status(), 505);
    assert!(e.is_answerable());
    let uri = INVITE.replace("sip:+15550100123@edge.example.com;user=phone", "<sip:x@y>");
    assert_eq!(invalid(&uri, Framing::Datagram).reason(), "Bad Request-URI");
    let spaces = INVITE.replace("INVITE sip:", "INVITE  sip:");
    assert_eq!(invalid(&spaces, Framing::Datagram).status(), 400);
    let bad_resp = "SIP/2.0 99 Nope\r\n\r\n";
    let e = invalid(bad_resp, Framing::Datagram);
    assert_eq!(e.kind, MessageKind::Response);
    assert!(!e.is_answerable());
    assert_eq!(invalid("\r\n\r\n", Framing::Datagram).invalid, Invalid::Empty);
    assert_eq!(invalid("hello", Framing::Datagram).kind, MessageKind::Unknown);
    assert_eq!(invalid("hello\r\n\r\n", Framing::Datagram).kind, MessageKind::Request);
}

#[test]
fn duplicates_and_bad_values() {
    let dup = INVITE.replace("Call-ID: 1-2-3@192.0.2.10\r\n", "Call-ID: a\r\nCall-ID: b\r\n");
    assert_eq!(invalid(&dup, Framing::Datagram).reason(), "Duplicate Call-ID");
    let mf = INVITE.replace("Max-Forwards: 70", "Max-Forwards: 300");
    assert_eq!(invalid(&mf, Framing::Datagram).reason(), "Bad Max-Forwards");
    let from = INVITE.replace("From: \"Carrier\"", "From: \"Carrier");
    assert_eq!(invalid(&from, Framing::Datagram).reason(), "Bad From");
    let via = INVITE.replace("SIP/2.0/UDP 192.0.2.10:5060", "SIP/2.0/UDP");
    let e = invalid(&via, Framing::Datagram);
    assert_eq!(e.reason(), "Bad Via");
    // Answered over the flow it came on, even though its Via is unusable.
    assert!(e.is_answerable());
    let line = INVITE.replace("Max-Forwards: 70", "Max-Forwards 70");
    assert_eq!(invalid(&line, Framing::Datagram).reason(), "Bad Header Line");
}

#[test]
fn build_a_response_and_edit_headers() {
    let r = request(INVITE);
    let mut resp = Response::for_request(&r, 486, "Busy Here");
    resp.set_to_tag("edge1");
    let bytes = resp.to_bytes();
    let Ok(Message::Response(parsed)) = Message::parse(bytes, Framing::Stream) else { panic!() };
    assert_eq!(parsed.status(), 486);
    assert_eq!(parsed.headers().to().unwrap().tag(), Some("edge1"));
    assert_eq!(parsed.headers().call_id().unwrap(), "1-2-3@192.0.2.10");
    assert_eq!(parsed.headers().cseq().unwrap().method, Method::Invite);

    let mut fwd = request(INVITE);
    let h = fwd.headers_mut();
    h.prepend(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge");
    h.set(HeaderName::MaxForwards, "69");
    h.prepend(HeaderName::RecordRoute, "<sip:127.0.0.1;lr>");
    let text = String::from_utf8(fwd.to_bytes().to_vec()).unwrap();
    assert!(text.starts_with(
        "INVITE sip:+15550100123@edge.example.com;user=phone SIP/2.0\r\n\
Record-Route: <sip:127.0.0.1;lr>\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---abc;rport\r\n\
Max-Forwards: 69\r\n"
    ));
    assert_eq!(fwd.headers().vias().count(), 2);
    let popped = fwd.headers_mut().pop_first_value(HeaderName::Via).unwrap();
    assert_eq!(&popped[..], b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge");
}

#[test]
fn pop_from_a_combined_header() {
    let raw = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRoute: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n",
    );
    let mut r = request(&raw);
    let first = r.headers_mut().pop_first_value(HeaderName::Route).unwrap();
    assert_eq!(&first[..], b"<sip:p1.example.com;lr>");
    assert_eq!(r.headers().get(HeaderName::Route).unwrap(), b"<sip:p2.example.com;lr>");
    r.headers_mut().pop_first_value(HeaderName::Route).unwrap();
    assert!(!r.headers().contains(HeaderName::Route));
}

/// The tag-only reading of From/To agrees with the full one on every form a name-addr takes.
#[test]
fn tags_read_without_decoding_the_uri_agree_with_the_full_parse() {
    for value in [
        "<sip:a@example.com>;tag=x1",
        "\"Alice; \\\"A\\\"\" <sip:a@example.com;transport=tcp>;tag=x2;other",
        "Alice <sips:a@[2001:db8::1]:5061>;foo=bar;tag=x3",
        "sip:a@example.com;tag=x4",
        "<sip:a@example.com;tag=not-a-header-param>",
        "<tel:+15550100>",
        "<urn:service:sos>;tag=x5",
    ] {
        let full = sip::header::typed::NameAddr::parse(value).unwrap();
        let fast = sip::header::typed::NameAddr::tag_of(value).unwrap();
        assert_eq!(fast, full.tag(), "{value}");
    }
    assert!(sip::header::typed::NameAddr::tag_of("<sip:a@example.com").is_err());
}

/// The top Via is decoded once and kept until the header section changes: every change that
/// moves the top Via is seen by the next `top_via`.
#[test]
fn the_kept_top_via_follows_every_change() {
    let mut r = request(INVITE);
    let first = r.headers().top_via().unwrap().branch().map(str::to_owned);
    assert_eq!(first.as_deref(), Some("z9hG4bK-524287-1---abc"));
    assert_eq!(r.headers().top_via().unwrap(), r.headers().vias().next().unwrap().unwrap());
    r.headers_mut().prepend(HeaderName::Via, "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKnew");
    let top = r.headers().top_via().unwrap();
    assert_eq!((top.branch(), top.port, top.transport), (Some("z9hG4bKnew"), Some(5070), "TCP"));
    assert_eq!(top, r.headers().vias().next().unwrap().unwrap());
    r.headers_mut().pop_first_value(HeaderName::Via);
    assert_eq!(r.headers().top_via().unwrap().branch(), first.as_deref());
    r.headers_mut().set(HeaderName::Via, "SIP/2.0/UDP host.example;branch=z9hG4bKset");
    assert_eq!(r.headers().top_via().unwrap().branch(), Some("z9hG4bKset"));
    r.headers_mut().remove_all(HeaderName::Via);
    assert!(r.headers().top_via().is_err());
}

/// The To tag and the Request-URI are decoded once and kept, like the top Via: a change is
/// seen by the next call, a clone keeps what it decoded.
#[test]
fn the_kept_to_tag_and_request_uri_follow_every_change() {
    let mut r = request(INVITE);
    assert_eq!(r.headers().to_tag().unwrap(), None);
    assert!(!r.in_dialog());
    r.headers_mut().set(HeaderName::To, "Bob <sip:bob@example.com>;tag=t1");
    assert_eq!(r.headers().to_tag().unwrap(), Some("t1"));
    assert!(r.in_dialog());
    let copy = r.clone();
    r.headers_mut().set(HeaderName::To, "<sip:bob@example.com>;x=y;tag=second");
    assert_eq!(r.headers().to_tag().unwrap(), Some("second"));
    assert_eq!(copy.headers().to_tag().unwrap(), Some("t1"));
    // Changes to other headers keep what was decoded, and it stays right.
    r.headers_mut().prepend(HeaderName::RecordRoute, "<sip:proxy.example;lr>");
    r.headers_mut().push(HeaderName::Route, "<sip:next.example;lr>");
    r.headers_mut().remove_all(HeaderName::Route);
    assert_eq!(r.headers().to_tag().unwrap(), Some("second"));
    assert_eq!(r.headers().top_via().unwrap(), r.headers().vias().next().unwrap().unwrap());
    r.headers_mut().set(HeaderName::To, "<sip:bob@example.com>");
    assert!(!r.in_dialog());

    let first = r.uri().unwrap();
    assert_eq!(first, r.uri().unwrap());
    assert_eq!(first.as_str(), r.uri_str());
    r.set_uri("sips:+15550100@[2001:db8::7]:5061;user=phone").unwrap();
    let set = r.uri().unwrap();
    let sip = set.as_sip().unwrap();
    assert_eq!((sip.secure, sip.user, sip.port), (true, Some("+15550100"), Some(5061)));
    assert_eq!(sip.params.get("user"), Some(Some("phone")));
    r.set_uri("tel:933").unwrap();
    assert_eq!(r.uri().unwrap().user(), Some("933"));
}

/// Popping the first element of a combined Via leaves the rest as it was, without copying.
#[test]
fn popping_a_combined_via_keeps_the_rest() {
    let raw = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bKa ,  SIP/2.0/TCP b.example;branch=z9hG4bKb\r\n",
    );
    let mut r = request(&raw);
    // The message's own Via comes first.
    r.headers_mut().pop_first_value(HeaderName::Via).unwrap();
    let first = r.headers_mut().pop_first_value(HeaderName::Via).unwrap();
    assert_eq!(&first[..], b"SIP/2.0/UDP a.example;branch=z9hG4bKa");
    assert_eq!(r.headers().top_via().unwrap().branch(), Some("z9hG4bKb"));
    // The rest prints as its own value.
    let wire = String::from_utf8(r.to_bytes().to_vec()).unwrap();
    assert!(wire.contains("\r\nVia: SIP/2.0/TCP b.example;branch=z9hG4bKb\r\n"), "{wire}");
    assert!(!wire.contains("a.example"), "{wire}");
    let second = r.headers_mut().pop_first_value(HeaderName::Via).unwrap();
    assert_eq!(&second[..], b"SIP/2.0/TCP b.example;branch=z9hG4bKb");
    assert!(r.headers().top_via().is_err());
}
