//! The message codec on arbitrary bytes, as a datagram and as a stream frame.
//!
//! Invariants checked on every input:
//! - parsing never panics (neither do the typed views, nor the error path);
//! - a message that parsed prints back to the bytes it came from: a prefix of the input (after
//!   the blank lines RFC 3261 §7.5 lets a sender put first; a datagram loses what lies past
//!   Content-Length), or, when the input had no empty line closing its header section, the
//!   header lines read plus the CRLF that closes them;
//! - the printed bytes parse again to the same start line, headers (names and values), Call-ID,
//!   CSeq and body, and printing converges;
//! - a proxy pass on a request (push a Via, decrement or add Max-Forwards, push a Record-Route,
//!   pop the first Route) prints a message that parses, with our Via on top and the rest kept.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::header::typed::{Contact, NameAddr, Reason, ResourcePriority, Warning, tokens};
use sip::{Framing, HeaderName, Headers, Message, Uri, multipart};

fuzz_target!(|data: &[u8]| {
    for framing in [Framing::Datagram, Framing::Stream] {
        one(data, framing);
    }
});

fn one(data: &[u8], framing: Framing) {
    let msg = match Message::parse(Bytes::copy_from_slice(data), framing) {
        Ok(m) => m,
        Err(e) => {
            // The error path builds responses from what survived: exercise it too.
            let _ = (e.status(), e.reason(), e.to_string(), e.is_answerable());
            if let Some(partial) = &e.partial {
                views(partial.headers(), partial.body());
                let _ = partial.uri().map(|u| uri_views(&u));
                let _ = partial.to_bytes();
                let _ = sip::Response::for_request(partial, 400, &e.reason()).to_bytes();
            }
            return;
        }
    };
    views(msg.headers(), msg.body());
    if let Message::Request(r) = &msg {
        let uri = r.uri().expect("a parsed request has a valid Request-URI");
        uri_views(&uri);
        assert_eq!(Uri::parse(r.uri_str()).ok(), Some(uri));
        let resp = sip::Response::for_request(r, 200, "OK").to_bytes();
        Message::parse(resp, Framing::Stream).expect("a response built for a request parses");
    }

    let printed = msg.to_bytes();
    let skip = data
        .iter()
        .position(|c| !matches!(c, b'\r' | b'\n'))
        .unwrap_or(data.len());
    let rest = &data[skip..];
    let verbatim = rest.starts_with(&printed);
    let closed = printed.ends_with(b"\r\n")
        && msg.body().is_empty()
        && rest.starts_with(&printed[..printed.len() - 2]);
    // A datagram whose last header line has no line ending prints that line in canonical
    // form (`Name: value` and a line ending) and the empty line after it; every line before
    // it is verbatim.
    let unterminated = msg.body().is_empty()
        && !rest.windows(2).any(|w| w == b"\n\n")
        && !rest.windows(3).any(|w| w == b"\n\r\n")
        && printed.ends_with(b"\r\n\r\n")
        && {
            let head = &printed[..printed.len() - 4];
            let before_last = head.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
            rest.starts_with(&head[..before_last])
        };
    assert!(
        verbatim || closed || unterminated,
        "print(parse(m)) is not m:\n  in:  {:?}\n  out: {:?}",
        Bytes::copy_from_slice(rest),
        printed
    );

    let again = Message::parse(printed.clone(), framing).expect("printed message must parse");
    same(&msg, &again);
    let printed2 = again.to_bytes();
    assert!(printed2.starts_with(&printed), "reprint lost bytes");
    let third = Message::parse(printed2.clone(), framing).expect("reprinted message must parse");
    assert_eq!(third.to_bytes(), printed2, "printing does not converge");

    // Regression: crates/sip/tests/fuzz_regressions/codec-push-after-unterminated-last-line.sip.
    if let Message::Request(_) = &msg {
        proxy_pass(msg, framing);
    }
}

/// Same start line, headers, body.
fn same(a: &Message, b: &Message) {
    match (a, b) {
        (Message::Request(x), Message::Request(y)) => {
            assert_eq!(x.method(), y.method());
            assert_eq!(x.uri_str(), y.uri_str());
        }
        (Message::Response(x), Message::Response(y)) => {
            assert_eq!(x.status(), y.status());
            assert_eq!(x.reason(), y.reason());
        }
        _ => panic!("request/response changed kind"),
    }
    let (ha, hb) = (a.headers(), b.headers());
    assert_eq!(ha.call_id().ok(), hb.call_id().ok());
    assert_eq!(ha.cseq().ok(), hb.cseq().ok());
    assert_eq!(a.body(), b.body());
    assert!(ha.iter().eq(hb.iter()), "headers changed");
}

fn proxy_pass(mut msg: Message, framing: Framing) {
    let before = msg.clone();
    let h = msg.headers_mut();
    let max_forwards = h.max_forwards().expect("checked by parse");
    h.prepend(
        HeaderName::Via,
        Bytes::from_static(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz;rport"),
    );
    let mf = max_forwards.unwrap_or(70).saturating_sub(1);
    h.set(HeaderName::MaxForwards, mf.to_string());
    h.prepend(
        HeaderName::RecordRoute,
        Bytes::from_static(b"<sip:192.0.2.1;lr>"),
    );
    let routes_before = h.name_addrs(HeaderName::Route).count();
    let popped = h.pop_first_value(HeaderName::Route);
    // Not the converse: an empty `Route:` header has no name-addr but is popped (as `""`).
    assert!(popped.is_some() || routes_before == 0);
    let out = msg.to_bytes();
    let again = match Message::parse(out.clone(), framing) {
        Ok(m) => m,
        Err(e) => {
            panic!("proxied request does not parse ({e}):\n  in:  {before:?}\n  out: {out:?}")
        }
    };
    let h = again.headers();
    assert_eq!(
        h.top_via().expect("our Via").branch(),
        Some("z9hG4bKfuzz"),
        "{out:?}"
    );
    assert_eq!(h.max_forwards().ok(), Some(Some(mf)), "{out:?}");
    assert_eq!(h.call_id().ok(), before.headers().call_id().ok());
    assert_eq!(h.cseq().ok(), before.headers().cseq().ok());
    assert_eq!(again.body(), before.body());
    assert_eq!(
        h.vias().count(),
        before.headers().vias().count() + 1,
        "{out:?}"
    );
}

fn views(h: &Headers, body: &Bytes) {
    if let Ok(v) = h.top_via() {
        let _ = (v.branch(), v.received(), v.rport(), v.maddr());
        let _ = v.has_rfc3261_branch();
        let _ = v.params.iter().count();
    }
    for v in h.vias().flatten() {
        let _ = (v.host.ip(), v.port, v.transport);
    }
    for na in [h.from(), h.to()].into_iter().flatten() {
        name_addr(&na);
    }
    let _ = h.call_id();
    let _ = h.cseq();
    let _ = h.max_forwards();
    let _ = h.content_length();
    if let Ok(Some(ct)) = h.content_type() {
        let _ = ct.params.iter().count();
        if let Some(boundary) = ct.boundary() {
            if let Ok(parts) = multipart::parse(body, boundary) {
                for p in parts {
                    let _ = (p.content_type(), p.content_id());
                }
            }
        }
    }
    for name in [
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Contact,
        HeaderName::Path,
        HeaderName::PAssertedIdentity,
        HeaderName::Geolocation,
    ] {
        for na in h.name_addrs(name).flatten() {
            name_addr(&na);
        }
    }
    for raw in h.get_all(HeaderName::Contact) {
        if let Ok(t) = std::str::from_utf8(raw) {
            for c in Contact::parse_list(t).flatten() {
                if let Contact::Addr(na) = c {
                    let _ = (na.expires(), na.q_millis(), na.sip_instance(), na.reg_id());
                }
            }
        }
    }
    let text = |name| h.get(name).and_then(|v| std::str::from_utf8(v).ok());
    if let Some(t) = text(HeaderName::Supported) {
        let _ = tokens(t).count();
    }
    if let Some(t) = text(HeaderName::ResourcePriority) {
        let _ = ResourcePriority::parse_list(t).count();
    }
    if let Some(t) = text(HeaderName::Reason) {
        let _ = Reason::parse(t).map(|r| (r.cause(), r.text().map(|c| c.len())));
    }
    if let Some(t) = text(HeaderName::Warning) {
        let _ = Warning::parse(t);
    }
    let _ = h.get_named("X-Fuzz");
    let _ = h.get_named("v");
    let _ = h.count(HeaderName::Via);
}

fn name_addr(na: &NameAddr<'_>) {
    let _ = (na.tag(), na.display_unquoted());
    let _ = na.params.iter().count();
    uri_views(&na.uri);
}

fn uri_views(u: &Uri<'_>) {
    let _ = (u.as_str(), u.user());
    match u {
        Uri::Sip(s) => {
            let _ = (
                s.user_decoded(),
                s.transport(),
                s.is_loose_router(),
                s.host.ip(),
            );
            let _ = s.params.iter().count();
        }
        Uri::Tel(t) => {
            let _ = (t.is_global(), t.params.iter().count());
        }
        Uri::Urn(n) => {
            let _ = n.service();
        }
        Uri::Other { .. } => {}
    }
}
